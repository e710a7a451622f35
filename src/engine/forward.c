/*
 * forward.c - the transformer forward pass over a batch (engine layer).
 *
 * One function, sl_decode(), reads top to bottom for every supported
 * family (llama, qwen2/3, phi3, gemma2/3): they share the pre-norm decoder
 * skeleton and differ only in optional steps (biases, q/k norms, fused
 * projections, post-norms, soft-capping, sliding windows), each a named line
 * below. Shapes use the letters of model.h.
 */
#include "forward.h"

#include <math.h>
#include <string.h>

#include "kernels.h"
#include "ops.h"

/* Most query heads per KV head (GQA group) attn_item handles; sl_ctx_init
 * refuses models with more. */
#define SL_ATTN_MAX_GROUP 256

/* ------------------------------------------------------------------------ */
/* batches                                                                   */
/* ------------------------------------------------------------------------ */

int sl_batch_init(struct sl_batch *b, int32_t cap)
{
    memset(b, 0, sizeof *b);
    if (cap <= 0) return SL_EINVAL;
    b->token = malloc((size_t)cap * sizeof *b->token);
    b->pos = malloc((size_t)cap * sizeof *b->pos);
    b->seq_id = malloc((size_t)cap * sizeof *b->seq_id);
    b->logits = malloc((size_t)cap * sizeof *b->logits);
    if (!b->token || !b->pos || !b->seq_id || !b->logits) {
        sl_batch_free(b);
        return SL_ENOMEM;
    }
    b->cap = cap;
    return 0;
}

void sl_batch_free(struct sl_batch *b)
{
    free(b->token);
    free(b->pos);
    free(b->seq_id);
    free(b->logits);
    memset(b, 0, sizeof *b);
}

void sl_batch_clear(struct sl_batch *b)
{
    b->n_tokens = 0;
}

int sl_batch_add(struct sl_batch *b, int32_t token, int32_t pos, int32_t seq, bool logits)
{
    if (b->n_tokens >= b->cap) return SL_ERANGE;
    int32_t i = b->n_tokens++;
    b->token[i] = token;
    b->pos[i] = pos;
    b->seq_id[i] = seq;
    b->logits[i] = logits;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* context                                                                   */
/* ------------------------------------------------------------------------ */

struct sl_ctx_params sl_ctx_default_params(void)
{
    return (struct sl_ctx_params){.n_ctx = 0, .n_batch = 512, .n_threads = 0, .kv_type = SL_TYPE_F16};
}

static size_t max_qbuf(const struct sl_model *m)
{
    size_t mx = sl_matmul_qbuf_size(&m->output);
    for (int il = 0; il < m->hp.n_layer; il++) {
        const struct sl_layer *L = &m->layers[il];
        const struct sl_tensor *ws[] = {&L->wq, &L->wk, &L->wv, &L->wqkv, &L->wo,
                                        &L->gate, &L->up, &L->gate_up, &L->down};
        for (size_t i = 0; i < sizeof ws / sizeof *ws; i++)
            if (ws[i]->data) mx = SL_MAX(mx, sl_matmul_qbuf_size(ws[i]));
    }
    return mx;
}

int sl_ctx_init(struct sl_ctx **out, const struct sl_model *m, const struct sl_ctx_params *p,
                struct sl_err *err)
{
    const struct sl_hparams *hp = &m->hp;
    struct sl_ctx *c = calloc(1, sizeof *c);
    int rc;
    *out = NULL;
    if (!c) return sl_err_set(err, SL_ENOMEM, "ctx: out of memory");
    c->model = m;
    c->params = p ? *p : sl_ctx_default_params();
    if (c->params.n_ctx <= 0) c->params.n_ctx = SL_MIN(hp->n_ctx_train, 4096);
    if (c->params.n_batch <= 0) c->params.n_batch = 512;
    c->params.n_batch = SL_MIN(c->params.n_batch, c->params.n_ctx);

    size_t T = (size_t)c->params.n_batch, C = (size_t)c->params.n_ctx;
    size_t E = (size_t)hp->n_embd, F = (size_t)hp->n_ff;
    size_t nq = (size_t)hp->n_head * (size_t)hp->head_dim, nk = (size_t)hp->n_head_kv * (size_t)hp->head_dim;
    size_t nv = (size_t)hp->n_head_kv * (size_t)hp->head_dim_v, no = (size_t)hp->n_head * (size_t)hp->head_dim_v;

    if (hp->n_head_kv <= 0 || hp->n_head % hp->n_head_kv || hp->n_head / hp->n_head_kv > SL_ATTN_MAX_GROUP) {
        rc = sl_err_set(err, SL_EINVAL, "ctx: %d heads over %d KV heads is not supported (groups of up to %d)",
                        hp->n_head, hp->n_head_kv, SL_ATTN_MAX_GROUP);
        goto fail; /* unsupported head layout */
    }
    c->pool = sl_pool_init(c->params.n_threads);
    if (!c->pool) {
        rc = sl_err_set(err, SL_ENOMEM, "ctx: cannot start threads");
        goto fail; /* thread start failure */
    }
    c->params.n_threads = sl_pool_n_threads(c->pool);
    if ((rc = sl_kv_init(&c->kv, c->params.n_ctx, hp->n_layer, hp->n_head_kv, (int32_t)nk, (int32_t)nv,
                          c->params.kv_type, err)))
        goto fail; /* KV allocation failure */

    /* Scratch for a batch of T entries, most of the memory a context adds
     * to the model and the KV cache ("Peak memory" in docs/performance.md):
     * the fused-projection buffers only for a model that has them (phi3) */
    bool fused_qkv = false, fused_ffn = false;
    for (int il = 0; il < hp->n_layer; il++) {
        fused_qkv |= m->layers[il].wqkv.data != NULL;
        fused_ffn |= m->layers[il].gate_up.data != NULL;
    }
    size_t nth = (size_t)c->params.n_threads;
    c->x = malloc(T * E * sizeof(float));
    c->xb = malloc(T * SL_MAX(E, no) * sizeof(float));
    c->xb2 = malloc(T * E * sizeof(float));
    c->q = malloc(T * nq * sizeof(float));
    c->k = malloc(T * nk * sizeof(float));
    c->v = malloc(T * nv * sizeof(float));
    c->qkv = fused_qkv ? malloc(T * (nq + nk + nv) * sizeof(float)) : NULL;
    c->att_out = c->xb; /* xb is free from the q/k/v projections to the output projection */
    c->hb = malloc(T * (fused_ffn ? 2 : 1) * F * sizeof(float));
    c->hb2 = malloc(T * F * sizeof(float));
    const size_t G = (size_t)(hp->n_head / hp->n_head_kv); /* query heads per KV head */
    c->scores = malloc(nth * G * C * sizeof(float));
    c->visible = malloc(nth * C * sizeof(int32_t));
    c->acc = malloc(nth * G * (size_t)hp->head_dim_v * sizeof(float));
    c->cells = malloc(T * sizeof(int32_t));
    c->rope_cs = malloc(T * (size_t)hp->n_rot * sizeof(float));
    c->qbuf = malloc(T * max_qbuf(m));
    if (!c->x || !c->xb || !c->xb2 || !c->q || !c->k || !c->v || (fused_qkv && !c->qkv) || !c->hb || !c->hb2 ||
        !c->scores || !c->visible || !c->acc || !c->cells || !c->rope_cs || !c->qbuf) {
        rc = sl_err_set(err, SL_ENOMEM, "ctx: out of memory for a batch of %zu", T);
        goto fail; /* allocation failure */
    }
    *out = c;
    return 0;
fail:
    sl_ctx_free(c);
    return rc;
}

void sl_ctx_free(struct sl_ctx *c)
{
    if (!c) return;
    sl_pool_free(c->pool);
    sl_kv_free(&c->kv);
    free(c->x);
    free(c->xb);
    free(c->xb2);
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->qkv);
    if (c->att_out != c->xb) free(c->att_out);
    free(c->hb);
    free(c->hb2);
    free(c->scores);
    free(c->visible);
    free(c->acc);
    free(c->cells);
    free(c->rope_cs);
    free(c->qbuf);
    free(c->logits);
    free(c->embd);
    free(c);
}

const float *sl_ctx_embd(const struct sl_ctx *c, int32_t i)
{
    if (!c->embd || i < 0 || i >= c->n_outputs) return NULL;
    return c->embd + (size_t)i * (size_t)c->model->hp.n_embd;
}

const float *sl_ctx_logits(const struct sl_ctx *c, int32_t i)
{
    if (!c->logits || i < 0 || i >= c->n_outputs) return NULL;
    return c->logits + (size_t)i * (size_t)c->model->hp.n_vocab;
}

/* ------------------------------------------------------------------------ */
/* attention                                                                 */
/* ------------------------------------------------------------------------ */

struct attn_job {
    struct sl_ctx *c;
    const struct sl_batch *b;
    const struct sl_layer *L;
    int il;
    int32_t n_kv; /* cells [0, n_kv) can be visible: the last one in use + 1 */
};

/* One past the last KV cell in use: attention need not look further. */
static int32_t kv_cells_in_use(const struct sl_kv *kv)
{
    int32_t n = kv->n_cells;
    while (n > 0 && kv->pos[n - 1] < 0) n--;
    return n;
}

/*
 * One (entry, KV head): softmax(q . K^T * scale) . V for each of the G
 * query heads that share the KV head (GQA), over the cells this entry's
 * sequence can see, causal and (on local layers) windowed. The visible
 * cells are listed once; in an fp16 cache the scores of 16 cells come out
 * of one block of converted key rows (attn_scores), each head's softmax
 * numerators go through one vector exp over its row of scores, and the
 * weighted sum of the value rows runs with the G heads' accumulators in
 * registers over every cell (attn_pv).
 */
static void attn_item(void *ctx, int item, int thread)
{
    struct attn_job *j = ctx;
    struct sl_ctx *c = j->c;
    const struct sl_hparams *hp = &c->model->hp;
    const struct sl_kv *kv = &c->kv;
    const int H = hp->n_head, D = hp->head_dim, Dv = hp->head_dim_v;
    const int G = H / hp->n_head_kv, n = j->n_kv;
    const int t = item / hp->n_head_kv, kvh = item % hp->n_head_kv;
    const int32_t p = j->b->pos[t];
    const uint64_t mask = 1ull << j->b->seq_id[t];
    const float *q = c->q + (size_t)t * H * D + (size_t)kvh * G * D; /* G heads of D */
    float *sc = c->scores + (size_t)thread * G * kv->n_cells;         /* (G, nv) */
    int32_t *vis = c->visible + (size_t)thread * kv->n_cells;         /* (nv) */
    float *acc = c->acc + (size_t)thread * G * Dv;                    /* (G, Dv) */
    const float cap = hp->attn_softcap;
    const bool f16 = kv->type != SL_TYPE_F32;
    const struct sl_kernels *kt = sl_kernels();
    float mx[SL_ATTN_MAX_GROUP], sum[SL_ATTN_MAX_GROUP];

    int32_t nv = 0;
    for (int32_t ci = 0; ci < n; ci++) {
        const int32_t cp = kv->pos[ci];
        if (cp >= 0 && (kv->seq[ci] & mask) && cp <= p && (!j->L->swa || p - cp < hp->n_swa)) vis[nv++] = ci;
    }
    if (f16) {
        kt->attn_scores(nv, sl_kv_k(kv, j->il, kvh, 0), (size_t)D, vis, q, G, D, hp->attn_scale, sc, mx);
    } else {
        for (int g = 0; g < G; g++) mx[g] = -INFINITY;
        for (int32_t k = 0; k < nv; k++) {
            const float *kf = sl_kv_k(kv, j->il, kvh, vis[k]);
            for (int g = 0; g < G; g++) {
                float d = 0;
                for (int i = 0; i < D; i++) d += q[(size_t)g * D + i] * kf[i];
                const float v = d * hp->attn_scale;
                sc[(size_t)g * nv + k] = v;
                if (v > mx[g]) mx[g] = v;
            }
        }
    }
    if (cap > 0) /* soft-capping (gemma2) */
        for (int g = 0; g < G; g++) {
            float *row = sc + (size_t)g * nv;
            mx[g] = -INFINITY;
            for (int32_t k = 0; k < nv; k++) {
                row[k] = cap * tanhf(row[k] / cap);
                if (row[k] > mx[g]) mx[g] = row[k];
            }
        }
    for (int g = 0; g < G; g++) sum[g] = nv > 0 ? kt->exp_row(nv, sc + (size_t)g * nv, mx[g]) : 0.0f;
    if (f16) {
        kt->attn_pv(nv, sl_kv_v(kv, j->il, kvh, 0), (size_t)Dv, vis, sc, G, Dv, acc, (size_t)Dv);
    } else {
        for (int i = 0; i < G * Dv; i++) acc[i] = 0;
        for (int32_t k = 0; k < nv; k++) {
            const float *vf = sl_kv_v(kv, j->il, kvh, vis[k]);
            for (int g = 0; g < G; g++)
                for (int d = 0; d < Dv; d++) acc[(size_t)g * Dv + d] += sc[(size_t)g * nv + k] * vf[d];
        }
    }
    for (int g = 0; g < G; g++) {
        float *o = c->att_out + (size_t)t * H * Dv + (size_t)(kvh * G + g) * Dv;
        const float inv = sum[g] > 0 ? 1.0f / sum[g] : 0.0f;
        for (int d = 0; d < Dv; d++) o[d] = acc[(size_t)g * Dv + d] * inv;
    }
}

/* ------------------------------------------------------------------------ */
/* the forward pass                                                          */
/* ------------------------------------------------------------------------ */

static void add_bias(float *y, const struct sl_tensor *b, int T, int n)
{
    if (!b->data) return;
    const float *bias = b->data;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < n; i++) y[(size_t)t * n + i] += bias[i];
}

static void norm_rows(float *y, const float *x, const struct sl_tensor *w, int T, int n, float eps)
{
    for (int t = 0; t < T; t++) sl_op_rmsnorm(y + (size_t)t * n, x + (size_t)t * n, w->data, n, eps);
}

/* Per-head RMS norm (qwen3, gemma3) of (T, heads*D). */
static void norm_heads(float *x, const struct sl_tensor *w, int T, int heads, int D, float eps)
{
    if (!w->data) return;
    for (int i = 0; i < T * heads; i++) sl_op_rmsnorm(x + (size_t)i * D, x + (size_t)i * D, w->data, D, eps);
}

/* cos/sin of every entry's position for L's RoPE (sl_op_rope_angles),
 * computed once per batch and (base, scale) and shared by every head and
 * layer: before, each head computed them again (~2% of one-thread decode) */
static const float *rope_angles(struct sl_ctx *c, const struct sl_layer *L, const struct sl_batch *b)
{
    const struct sl_hparams *hp = &c->model->hp;
    if (!c->rope_valid || c->rope_base != L->rope_base || c->rope_scale != L->rope_scale) {
        for (int t = 0; t < b->n_tokens; t++)
            sl_op_rope_angles(c->rope_cs + (size_t)t * hp->n_rot, hp->n_rot, b->pos[t], L->rope_base,
                              L->rope_scale, c->model->rope_freqs);
        c->rope_valid = true;
        c->rope_base = L->rope_base;
        c->rope_scale = L->rope_scale;
    }
    return c->rope_cs;
}

static void rope_heads(struct sl_ctx *c, const struct sl_layer *L, float *x, int heads, int D,
                       const struct sl_batch *b)
{
    const struct sl_hparams *hp = &c->model->hp;
    const float *cs = rope_angles(c, L, b);
    for (int t = 0; t < b->n_tokens; t++)
        for (int h = 0; h < heads; h++)
            sl_op_rope_apply(x + ((size_t)t * heads + h) * D, hp->n_rot, cs + (size_t)t * hp->n_rot,
                             hp->rope_type == SL_ROPE_NEOX);
}

static int check_batch(struct sl_ctx *c, const struct sl_batch *b, struct sl_err *err)
{
    const struct sl_hparams *hp = &c->model->hp;
    if (b->n_tokens <= 0 || b->n_tokens > c->params.n_batch)
        return sl_err_set(err, SL_EINVAL, "decode: batch of %d entries (1..%d allowed)", b->n_tokens,
                          c->params.n_batch);
    for (int t = 0; t < b->n_tokens; t++) {
        if (b->token[t] < 0 || b->token[t] >= hp->n_vocab)
            return sl_err_set(err, SL_EINVAL, "decode: token %d out of range (vocabulary of %d)",
                              b->token[t], hp->n_vocab);
        if (b->seq_id[t] < 0 || b->seq_id[t] >= SL_KV_MAX_SEQ)
            return sl_err_set(err, SL_EINVAL, "decode: sequence id %d out of range (0..%d)",
                              b->seq_id[t], SL_KV_MAX_SEQ - 1);
        if (b->pos[t] < 0)
            return sl_err_set(err, SL_EINVAL, "decode: negative position %d", b->pos[t]);
    }
    return 0;
}

/* Give every entry a KV cell; re-sent positions replace what was there. */
static int place_batch(struct sl_ctx *c, const struct sl_batch *b, struct sl_err *err)
{
    for (int t = 0; t < b->n_tokens; t++) {
        sl_kv_seq_rm(&c->kv, b->seq_id[t], b->pos[t], b->pos[t] + 1);
        c->cells[t] = sl_kv_alloc(&c->kv, b->seq_id[t], b->pos[t]);
        if (c->cells[t] < 0) {
            for (int u = 0; u < t; u++) sl_kv_seq_rm(&c->kv, b->seq_id[u], b->pos[u], b->pos[u] + 1);
            return sl_err_set(err, SL_ERANGE, "decode: KV cache full (%d cells); raise --ctx-size",
                              c->kv.n_cells);
        }
    }
    return 0;
}

/* Convert n floats to the cache's type at dst. */
static void kv_put(const struct sl_kv *kv, void *dst, const float *src, int n)
{
    if (kv->type == SL_TYPE_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
    } else {
        sl_kernels()->fp32_to_fp16_row(n, src, dst);
    }
}

static void store_kv(struct sl_ctx *c, int il, int T)
{
    struct sl_kv *kv = &c->kv;
    const int d = kv->n_embd_k / kv->n_head, dv = kv->n_embd_v / kv->n_head;
    for (int t = 0; t < T; t++) {
        for (int h = 0; h < kv->n_head; h++) {
            kv_put(kv, sl_kv_k(kv, il, h, c->cells[t]), c->k + (size_t)t * kv->n_embd_k + (size_t)h * d, d);
            kv_put(kv, sl_kv_v(kv, il, h, c->cells[t]), c->v + (size_t)t * kv->n_embd_v + (size_t)h * dv, dv);
        }
    }
}

static int reserve_outputs(struct sl_ctx *c, int32_t n, struct sl_err *err)
{
    const struct sl_hparams *hp = &c->model->hp;
    if (n <= c->cap_outputs) return 0;
    if (!c->params.no_logits) {
        float *l = realloc(c->logits, (size_t)n * (size_t)hp->n_vocab * sizeof(float));
        if (!l) return sl_err_set(err, SL_ENOMEM, "decode: out of memory for %d rows of logits", n);
        c->logits = l;
    }
    if (c->params.embeddings) {
        float *e = realloc(c->embd, (size_t)n * (size_t)hp->n_embd * sizeof(float));
        if (!e) return sl_err_set(err, SL_ENOMEM, "decode: out of memory for embeddings");
        c->embd = e;
    }
    c->cap_outputs = n;
    return 0;
}

int sl_decode(struct sl_ctx *c, const struct sl_batch *b, struct sl_err *err)
{
    const struct sl_model *m = c->model;
    const struct sl_hparams *hp = &m->hp;
    const int T = b->n_tokens, E = hp->n_embd, F = hp->n_ff, V = hp->n_vocab;
    const int H = hp->n_head, K = hp->n_head_kv, D = hp->head_dim, Dv = hp->head_dim_v;
    const int nq = H * D, nk = K * D, nv = K * Dv;
    struct sl_pool *pool = c->pool;
    int rc;

    if ((rc = check_batch(c, b, err))) return rc;
    int32_t n_out = 0;
    for (int t = 0; t < T; t++) n_out += b->logits[t] != 0;
    if ((rc = reserve_outputs(c, n_out, err))) return rc;
    if ((rc = place_batch(c, b, err))) return rc;

    c->rope_valid = false; /* new positions */

    /* attention looks at cells [0, n_kv) only */
    const int32_t n_kv = kv_cells_in_use(&c->kv);

    /* embed: x = tok_embd[token] * embd_scale */
    for (int t = 0; t < T; t++) {
        float *xt = c->x + (size_t)t * E;
        sl_op_get_row(&m->tok_embd, b->token[t], xt);
        if (hp->embd_scale != 1.0f)
            for (int i = 0; i < E; i++) xt[i] *= hp->embd_scale;
    }

    for (int il = 0; il < hp->n_layer; il++) {
        const struct sl_layer *L = &m->layers[il];

        /* attention norm */
        norm_rows(c->xb, c->x, &L->attn_norm, T, E, hp->norm_eps);

        /* q, k, v projections (+ biases), fused in phi3 */
        if (L->wqkv.data) {
            sl_op_matmul(pool, &L->wqkv, c->xb, c->qkv, T, c->qbuf);
            for (int t = 0; t < T; t++) {
                const float *r = c->qkv + (size_t)t * (nq + nk + nv);
                memcpy(c->q + (size_t)t * nq, r, (size_t)nq * sizeof(float));
                memcpy(c->k + (size_t)t * nk, r + nq, (size_t)nk * sizeof(float));
                memcpy(c->v + (size_t)t * nv, r + nq + nk, (size_t)nv * sizeof(float));
            }
        } else {
            const struct sl_tensor *w[] = {&L->wq, &L->wk, &L->wv};
            float *y[] = {c->q, c->k, c->v};
            sl_op_matmul_set(pool, 3, w, c->xb, y, T, c->qbuf);
        }
        add_bias(c->q, &L->bq, T, nq);
        add_bias(c->k, &L->bk, T, nk);
        add_bias(c->v, &L->bv, T, nv);

        /* per-head q/k norms (qwen3, gemma3) */
        norm_heads(c->q, &L->q_norm, T, H, D, hp->norm_eps);
        norm_heads(c->k, &L->k_norm, T, K, D, hp->norm_eps);

        /* rotary position embedding */
        rope_heads(c, L, c->q, H, D, b);
        rope_heads(c, L, c->k, K, D, b);

        /* write k, v into the cache, then attend */
        store_kv(c, il, T);
        struct attn_job aj = {c, b, L, il, n_kv};
        sl_pool_run(pool, attn_item, &aj, T * K);

        /* output projection (+ post-attention norm, gemma) and residual */
        sl_op_matmul(pool, &L->wo, c->att_out, c->xb2, T, c->qbuf);
        if (L->post_attn_norm.data) norm_rows(c->xb2, c->xb2, &L->post_attn_norm, T, E, hp->norm_eps);
        for (size_t i = 0; i < (size_t)T * E; i++) c->x[i] += c->xb2[i];

        /* ffn norm */
        norm_rows(c->xb, c->x, &L->ffn_norm, T, E, hp->norm_eps);

        /* gated ffn: down(act(gate x) * up x), gate/up fused in phi3 */
        if (L->gate_up.data) {
            sl_op_matmul(pool, &L->gate_up, c->xb, c->hb, T, c->qbuf);
            for (int t = 0; t < T; t++) { /* split rows [gate | up]; row t moves down, in place */
                memcpy(c->hb2 + (size_t)t * F, c->hb + (size_t)t * 2 * F + F, (size_t)F * sizeof(float));
                memmove(c->hb + (size_t)t * F, c->hb + (size_t)t * 2 * F, (size_t)F * sizeof(float));
            }
        } else {
            const struct sl_tensor *w[] = {&L->gate, &L->up};
            float *y[] = {c->hb, c->hb2};
            sl_op_matmul_set(pool, 2, w, c->xb, y, T, c->qbuf);
        }
        const struct sl_kernels *kn = sl_kernels();
        (hp->ffn_act == SL_FFN_GELU ? kn->gelu_mul : kn->silu_mul)((int64_t)T * F, c->hb, c->hb2);
        sl_op_matmul(pool, &L->down, c->hb, c->xb2, T, c->qbuf);

        /* post-ffn norm (gemma) and residual */
        if (L->post_ffn_norm.data) norm_rows(c->xb2, c->xb2, &L->post_ffn_norm, T, E, hp->norm_eps);
        for (size_t i = 0; i < (size_t)T * E; i++) c->x[i] += c->xb2[i];
    }

    /* final norm of the entries that want output, then the vocabulary head */
    int32_t o = 0;
    for (int t = 0; t < T; t++)
        if (b->logits[t]) {
            sl_op_rmsnorm(c->xb + (size_t)o * E, c->x + (size_t)t * E, m->output_norm.data, E, hp->norm_eps);
            o++;
        }
    if (c->params.embeddings) memcpy(c->embd, c->xb, (size_t)n_out * E * sizeof(float));
    if (!c->params.no_logits && n_out > 0) sl_op_matmul(pool, &m->output, c->xb, c->logits, n_out, c->qbuf);

    /* final logit soft-capping (gemma2) */
    if (hp->final_softcap > 0 && !c->params.no_logits) {
        float cap = hp->final_softcap;
        for (size_t i = 0; i < (size_t)n_out * V; i++) c->logits[i] = cap * tanhf(c->logits[i] / cap);
    }
    c->n_outputs = n_out;
    return 0;
}
