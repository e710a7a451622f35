/*
 * ops.c - norms, matmul, RoPE, activations (engine layer). See ops.h.
 */
#include "ops.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "kernels.h"

void sl_op_rmsnorm(float *y, const float *x, const float *w, int n, float eps)
{
    double ss = 0; /* double: as llama.cpp's ggml_float sum */
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int i = 0; i < n; i++) y[i] = x[i] * scale * (w ? w[i] : 1.0f);
}

/* The tile kernel for w's type on this CPU at T activation rows, or NULL
 * (vec_dot per pair). */
static const struct sl_mm *mm_for(const struct sl_tensor *w, int T)
{
    const struct sl_mm *mm = &sl_kernels()->mm[w->type];
    return mm->tile && T >= mm->min_t ? mm : NULL;
}

/* The panel kernel for w, if w was repacked (model.c) and still holds the
 * weights it was packed from, or NULL. */
static const struct sl_panel *panel_for(const struct sl_tensor *w)
{
    const struct sl_panel *pn = &sl_kernels()->panel[w->type];
    return w->panel && w->panel_src == w->data && pn->dot ? pn : NULL;
}

size_t sl_matmul_qbuf_size(const struct sl_tensor *w)
{
    const struct sl_type_traits *tr = sl_type_traits((uint32_t)w->type);
    const struct sl_mm *mm = mm_for(w, INT32_MAX);
    size_t sz = sl_row_size(tr->dot_type, w->ne[0]);
    if (mm) sz = SL_MAX(sz, mm->act_size(w->ne[0]));
    if (panel_for(w)) sz = SL_MAX(sz, panel_for(w)->act_size(w->ne[0]));
    return sz;
}

/*
 * The work of one matmul is a grid of items: weight rows in chunks of
 * rows_per_item (a multiple of 16 floats: two threads share at most the
 * boundary line of y, none if y is 64-byte aligned) times activation rows in
 * chunks of MM_TOKENS. Items
 * that share a token chunk are numbered together, so the threads walk the
 * rows of one chunk at a time while its activations sit in L2. Inside an
 * item, each tile of weight rows stays in L1 for every activation row of the
 * chunk.
 */
#define MM_TOKENS 64

struct matmul_job {
    const struct sl_tensor *w;
    const uint8_t *q; /* T rows of activations, packed (mm) or in the dot type */
    size_t q_row;
    /* how the activations get there: pack (panel or mm), else converted to
     * dot_type (F32: used as they are) */
    void (*pack)(const float *x, void *out, int64_t n);
    int dot_type;
    float *y;
    int T, R, rows_per_item, n_row_items;
    sl_vec_dot_fn dot;
    const struct sl_mm *mm;       /* NULL: one vec_dot per (row, token) */
    const struct sl_panel *panel; /* set: w->panel through this kernel (before mm) */
};

static void matmul_item(void *ctx, int item, int thread)
{
    struct matmul_job *j = ctx;
    const int r0 = (item % j->n_row_items) * j->rows_per_item;
    const int r1 = SL_MIN(j->R, r0 + j->rows_per_item);
    const int t0 = (item / j->n_row_items) * MM_TOKENS;
    const int t1 = SL_MIN(j->T, t0 + MM_TOKENS);
    const int64_t n = j->w->ne[0];
    const size_t rs = j->w->row_size;
    const uint8_t *w = j->w->data;
    (void)thread;
    if (j->panel) {
        /* r0 is a multiple of 16: whole panels, the last one maybe short */
        const struct sl_panel *pn = j->panel;
        const size_t psz = sl_panel_size(j->w->type, n);
        for (int r = r0; r < r1; r += SL_PANEL_ROWS) {
            const uint8_t *p = (const uint8_t *)j->w->panel + (size_t)(r / SL_PANEL_ROWS) * psz;
            for (int t = t0; t < t1; t += pn->tile_c)
                pn->dot(n, p, j->q + (size_t)t * j->q_row, j->q_row, SL_MIN(pn->tile_c, t1 - t),
                        SL_MIN(SL_PANEL_ROWS, r1 - r), j->y + (size_t)t * j->R + r, (size_t)j->R);
        }
        return;
    }
    if (j->mm) {
        /* one activation row (decode): one weight row per tile, so the
         * weights are a single sequential stream for the prefetchers
         * (four interleaved rows measured up to 2x slower from DRAM) */
        const struct sl_mm *mm = j->mm;
        const int tile_r = j->T == 1 ? 1 : mm->tile_r;
        for (int r = r0; r < r1; r += tile_r) {
            const int nr = SL_MIN(tile_r, r1 - r);
            for (int t = t0; t < t1; t += mm->tile_c)
                mm->tile(n, w + (size_t)r * rs, rs, nr, j->q + (size_t)t * j->q_row, j->q_row,
                         SL_MIN(mm->tile_c, t1 - t), j->y + (size_t)t * j->R + r, (size_t)j->R);
        }
        return;
    }
    for (int r = r0; r < r1; r++) {
        const uint8_t *wr = w + (size_t)r * rs;
        for (int t = t0; t < t1; t++) j->y[(size_t)t * j->R + r] = j->dot(n, wr, j->q + (size_t)t * j->q_row);
    }
}

struct quant_job {
    const struct matmul_job *mj;
    const float *x;
    uint8_t *q;
};

static void quant_item(void *ctx, int t, int thread)
{
    const struct quant_job *j = ctx;
    const int64_t n = j->mj->w->ne[0];
    const float *x = j->x + (size_t)t * n;
    uint8_t *q = j->q + (size_t)t * j->mj->q_row;
    (void)thread;
    if (j->mj->pack) j->mj->pack(x, q, n);
    else sl_kernels()->quantize_row(j->mj->dot_type, x, q, n);
}

/* The job of y (T, R) = x . w^T, with its activations going to qbuf, and
 * its items: ~4 row chunks per thread for balance (fewer when the token
 * chunks already give every thread work), rounded up to 16 rows. */
static struct matmul_job plan(const struct sl_tensor *w, float *y, int T, void *qbuf, int nth)
{
    const struct sl_type_traits *tr = sl_type_traits((uint32_t)w->type);
    const int64_t n = w->ne[0];
    const int R = (int)w->ne[1];
    const struct sl_panel *pn = panel_for(w);
    const struct sl_mm *mm = pn ? NULL : mm_for(w, T);
    struct matmul_job mj = {.w = w, .q = qbuf, .y = y, .T = T, .R = R, .dot = sl_kernels()->vec_dot[w->type],
                            .mm = mm, .panel = pn, .dot_type = tr->dot_type};
    mj.pack = pn ? pn->pack : mm ? mm->pack : NULL;
    mj.q_row = pn ? pn->act_size(n) : mm ? mm->act_size(n) : sl_row_size(tr->dot_type, n);
    const int n_tok_items = (T + MM_TOKENS - 1) / MM_TOKENS;
    const int want = SL_MAX(1, nth * 4 / n_tok_items);
    mj.rows_per_item = SL_MAX(16, (R / want + 15) / 16 * 16);
    mj.n_row_items = (R + mj.rows_per_item - 1) / mj.rows_per_item;
    return mj;
}

/* x as mj wants it: into its qbuf, or x itself for float dot products */
static void prepare(struct sl_pool *pool, struct matmul_job *mj, const float *x)
{
    if (!mj->pack && mj->dot_type == SL_TYPE_F32) {
        mj->q = (const uint8_t *)x;
        return;
    }
    struct quant_job qj = {mj, x, (uint8_t *)mj->q};
    sl_pool_run(pool, quant_item, &qj, mj->T);
}

static int n_items(const struct matmul_job *mj)
{
    return mj->n_row_items * ((mj->T + MM_TOKENS - 1) / MM_TOKENS);
}

void sl_op_matmul(struct sl_pool *pool, const struct sl_tensor *w, const float *x, float *y, int T,
                  void *qbuf)
{
    if (T <= 0) return; /* e.g. a batch where no entry wants logits */
    struct matmul_job mj = plan(w, y, T, qbuf, sl_pool_n_threads(pool));
    prepare(pool, &mj, x);
    sl_pool_run(pool, matmul_item, &mj, n_items(&mj));
}

struct matmul_set {
    struct matmul_job j[SL_MATMUL_SET_MAX];
    int first[SL_MATMUL_SET_MAX + 1]; /* item numbers of j[k]: [first[k], first[k + 1]) */
};

static void set_item(void *ctx, int item, int thread)
{
    const struct matmul_set *s = ctx;
    int k = 0;
    while (item >= s->first[k + 1]) k++;
    matmul_item((void *)&s->j[k], item - s->first[k], thread);
}

void sl_op_matmul_set(struct sl_pool *pool, int count, const struct sl_tensor *const *w, const float *x,
                      float *const *y, int T, void *qbuf)
{
    if (T <= 0 || count <= 0) return;
    struct matmul_set s;
    const int nth = sl_pool_n_threads(pool);
    bool shared = count <= SL_MATMUL_SET_MAX;
    for (int k = 0; shared && k < count; k++) {
        s.j[k] = plan(w[k], y[k], T, qbuf, nth);
        const struct matmul_job *a = &s.j[0], *b = &s.j[k];
        shared = a->w->ne[0] == b->w->ne[0] && a->pack == b->pack && a->q_row == b->q_row &&
                 (a->pack || a->dot_type == b->dot_type);
    }
    if (!shared) { /* the activations differ in form: one product at a time */
        for (int k = 0; k < count; k++) sl_op_matmul(pool, w[k], x, y[k], T, qbuf);
        return;
    }
    prepare(pool, &s.j[0], x);
    s.first[0] = 0;
    for (int k = 0; k < count; k++) {
        s.j[k].q = s.j[0].q;
        s.first[k + 1] = s.first[k] + n_items(&s.j[k]);
    }
    sl_pool_run(pool, set_item, &s, s.first[count]);
}

void sl_op_get_row(const struct sl_tensor *w, int64_t r, float *out)
{
    if (w->panel && w->panel_src == w->data) {
        /* from the repacked copy: the file's pages behind it were released
         * (model.c), and reading them back would map them again */
        uint8_t row[16384];
        const int64_t n = w->ne[0];
        const void *p = (const uint8_t *)w->panel + (size_t)(r / SL_PANEL_ROWS) * sl_panel_size(w->type, n);
        if (w->row_size <= sizeof row) {
            sl_panel_unpack_row(w->type, p, (int)(r % SL_PANEL_ROWS), n, row);
            sl_dequantize_row(w->type, row, out, n);
            return;
        }
    }
    sl_dequantize_row(w->type, (const uint8_t *)w->data + (size_t)r * w->row_size, out, w->ne[0]);
}

void sl_op_rope_angles(float *cs, int n_rot, int32_t pos, float base, float scale, const float *freq_div)
{
    int half = n_rot / 2;
    float theta_scale = powf(base, -2.0f / (float)n_rot);
    float theta = (float)pos * scale;
    for (int i = 0; i < half; i++) {
        float t = freq_div ? theta / freq_div[i] : theta;
        cs[2 * i] = cosf(t);
        cs[2 * i + 1] = sinf(t);
        theta *= theta_scale;
    }
}

void sl_op_rope_apply(float *x, int n_rot, const float *cs, int neox)
{
    int half = n_rot / 2;
    for (int i = 0; i < half; i++) {
        float c = cs[2 * i], s = cs[2 * i + 1];
        int a = neox ? i : 2 * i;
        int b = neox ? i + half : 2 * i + 1;
        float x0 = x[a], x1 = x[b];
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
    }
}

void sl_op_softmax(float *x, int n)
{
    float max = -INFINITY;
    for (int i = 0; i < n; i++)
        if (x[i] > max) max = x[i];
    double sum = 0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
}
