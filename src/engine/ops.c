/*
 * ops.c - norms, matmul, RoPE, activations (engine layer). See ops.h.
 */
#include "ops.h"

#include <math.h>
#include <string.h>

#include "kernels.h"

void sl_op_rmsnorm(float *y, const float *x, const float *w, int n, float eps)
{
    double ss = 0; /* double: as llama.cpp's ggml_float sum */
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int i = 0; i < n; i++) y[i] = x[i] * scale * (w ? w[i] : 1.0f);
}

size_t sl_matmul_qbuf_size(const struct sl_tensor *w)
{
    const struct sl_type_traits *tr = sl_type_traits((uint32_t)w->type);
    return sl_row_size(tr->dot_type, w->ne[0]);
}

struct matmul_job {
    const struct sl_tensor *w;
    const uint8_t *q; /* T rows of activations in the dot type */
    size_t q_row;
    float *y;
    int T, R, rows_per_item;
    sl_vec_dot_fn dot;
};

/* Rows are handed out in chunks so each thread streams a contiguous range of
 * weights and reuses it for all T activation rows while it is in cache. */
static void matmul_item(void *ctx, int item, int thread)
{
    struct matmul_job *j = ctx;
    int r0 = item * j->rows_per_item;
    int r1 = SL_MIN(j->R, r0 + j->rows_per_item);
    int64_t n = j->w->ne[0];
    (void)thread;
    for (int r = r0; r < r1; r++) {
        const uint8_t *wr = (const uint8_t *)j->w->data + (size_t)r * j->w->row_size;
        for (int t = 0; t < j->T; t++) j->y[(size_t)t * j->R + r] = j->dot(n, wr, j->q + (size_t)t * j->q_row);
    }
}

struct quant_job {
    int type;
    const float *x;
    int64_t n;
    uint8_t *q;
    size_t q_row;
};

static void quant_item(void *ctx, int t, int thread)
{
    struct quant_job *j = ctx;
    (void)thread;
    sl_kernels()->quantize_row(j->type, j->x + (size_t)t * j->n, j->q + (size_t)t * j->q_row, j->n);
}

void sl_op_matmul(struct sl_pool *pool, const struct sl_tensor *w, const float *x, float *y, int T,
                  void *qbuf)
{
    const struct sl_type_traits *tr = sl_type_traits((uint32_t)w->type);
    int64_t n = w->ne[0];
    int R = (int)w->ne[1];
    struct matmul_job mj = {w, qbuf, sl_row_size(tr->dot_type, n), y, T, R, 0,
                            sl_kernels()->vec_dot[w->type]};
    if (tr->dot_type == SL_TYPE_F32) {
        mj.q = (const uint8_t *)x; /* use the activations as they are */
    } else {
        struct quant_job qj = {tr->dot_type, x, n, qbuf, mj.q_row};
        sl_pool_run(pool, quant_item, &qj, T);
    }
    int nth = sl_pool_n_threads(pool);
    /* ~4 chunks per thread for balance, at least 4 rows each */
    mj.rows_per_item = SL_MAX(4, R / (nth * 4));
    sl_pool_run(pool, matmul_item, &mj, (R + mj.rows_per_item - 1) / mj.rows_per_item);
}

void sl_op_get_row(const struct sl_tensor *w, int64_t r, float *out)
{
    sl_dequantize_row(w->type, (const uint8_t *)w->data + (size_t)r * w->row_size, out, w->ne[0]);
}

void sl_op_rope(float *x, int n_rot, int32_t pos, float base, float scale, int neox,
                const float *freq_div)
{
    int half = n_rot / 2;
    float theta_scale = powf(base, -2.0f / (float)n_rot);
    float theta = (float)pos * scale;
    for (int i = 0; i < half; i++) {
        float t = freq_div ? theta / freq_div[i] : theta;
        float c = cosf(t), s = sinf(t);
        int a = neox ? i : 2 * i;
        int b = neox ? i + half : 2 * i + 1;
        float x0 = x[a], x1 = x[b];
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
        theta *= theta_scale;
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

float sl_op_silu(float x)
{
    return x / (1.0f + expf(-x));
}

float sl_op_gelu(float x)
{
    const float c = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
}
