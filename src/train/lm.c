/*
 * lm.c - forward and backward of a llama-architecture model, for training
 * (train layer). See lm.h for the letters and the model computed.
 *
 * Laid out as llm.c's train_gpt2.c: each layer kind has its _forward and
 * _backward next to each other, then sl_lm_forward() and sl_lm_backward()
 * read top to bottom, one named step per line. Matrix products run on the
 * thread pool, split so that every output element is written by one thread
 * in a fixed order: results do not depend on the number of threads.
 *
 * This file is generic over sl_real (float normally, double in the gradient
 * test); GGUF writing, data and the training loop are in lm_train.c.
 */
#include "lm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "engine/kernels.h"
#include "engine/model.h"
#include "engine/quant.h"

/* ------------------------------------------------------------------------ */
/* matmul: forward and backward on the pool                                  */
/* ------------------------------------------------------------------------ */

#define MM_ROWS 8 /* output rows per work item */

/* a . b over n values: the engine's F32 kernel (AVX2/AVX-512 when the CPU
 * has them) for float, a plain loop with 8 partial sums for double */
static inline sl_real dot(const sl_real *a, const sl_real *b, int n)
{
#ifdef SL_LM_REAL_IS_FLOAT
    return sl_kernels()->vec_dot[SL_TYPE_F32](n, a, b);
#else
    sl_real s[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) s[k] += a[i + k] * b[i + k];
    sl_real t = 0;
    for (; i < n; i++) t += a[i] * b[i];
    return t + ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
#endif
}

static inline void axpy(sl_real *y, sl_real a, const sl_real *x, int n)
{
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

/* dst (C, R) = src (R, C) transposed */
static void transpose(sl_real *dst, const sl_real *src, int R, int C)
{
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) dst[(size_t)c * R + r] = src[(size_t)r * C + c];
}

/* Every product below is out (R, M) [+]= scale * a (R, K) . b^T, b (M, K):
 * rows of `a` split over the pool, one dot product per output element. */
struct mm_job {
    sl_real *out;
    const sl_real *a, *b;
    int R, K, M;
    sl_real scale;
    bool acc; /* out += instead of out = */
};

static void mm_item(void *ctx, int item, int thread)
{
    struct mm_job *j = ctx;
    int r0 = item * MM_ROWS, r1 = SL_MIN(j->R, r0 + MM_ROWS);
    (void)thread;
    for (int m = 0; m < j->M; m++) {
        const sl_real *br = j->b + (size_t)m * j->K;
        for (int r = r0; r < r1; r++) {
            sl_real v = j->scale * dot(j->a + (size_t)r * j->K, br, j->K);
            sl_real *y = j->out + (size_t)r * j->M + m;
            *y = j->acc ? *y + v : v;
        }
    }
}

static void mm_run(struct sl_pool *pool, sl_real *out, const sl_real *a, const sl_real *b, int R, int K, int M,
                   sl_real scale, bool acc)
{
    struct mm_job j = {out, a, b, R, K, M, scale, acc};
    sl_pool_run(pool, mm_item, &j, (R + MM_ROWS - 1) / MM_ROWS);
}

/* out (N, OC) = [out +] scale * inp (N, C) . w^T, w (OC, C) */
static void matmul_forward(struct sl_pool *pool, sl_real *out, const sl_real *inp, const sl_real *w,
                           int N, int C, int OC, sl_real scale, bool acc)
{
    mm_run(pool, out, inp, w, N, C, OC, scale, acc);
}

/* dinp (N, C) += scale * dout . w          = dout (N, OC) . (w^T (C, OC))^T
 * dw (OC, C)  += scale * dout^T . inp      = dout^T (OC, N) . (inp^T (C, N))^T
 * Either output may be NULL (frozen weight, or an input needing no grad).
 * The transposes cost O(N (C + OC)) against O(N C OC) for the products.
 * Returns SL_ENOMEM when the scratch cannot be allocated. */
static int matmul_backward(struct sl_pool *pool, sl_real *dinp, sl_real *dw, const sl_real *dout,
                           const sl_real *inp, const sl_real *w, int N, int C, int OC, sl_real scale)
{
    size_t need = 0;
    if (dinp) need = SL_MAX(need, (size_t)C * OC);
    if (dw) need = SL_MAX(need, (size_t)N * (OC + C));
    sl_real *tmp = malloc(SL_MAX(need, (size_t)1) * sizeof(sl_real));
    if (!tmp) return SL_ENOMEM;
    if (dinp) {
        transpose(tmp, w, OC, C); /* (C, OC) */
        mm_run(pool, dinp, dout, tmp, N, OC, C, scale, true);
    }
    if (dw) {
        sl_real *doutT = tmp, *inpT = tmp + (size_t)N * OC;
        transpose(doutT, dout, N, OC); /* (OC, N) */
        transpose(inpT, inp, N, C);    /* (C, N) */
        mm_run(pool, dw, doutT, inpT, OC, N, C, scale, true);
    }
    free(tmp);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* embedding                                                                 */
/* ------------------------------------------------------------------------ */

/* out (N, E) = tok_embd[inp] */
static void embed_forward(sl_real *out, const int32_t *inp, const sl_real *tok_embd, int N, int E)
{
    for (int n = 0; n < N; n++) memcpy(out + (size_t)n * E, tok_embd + (size_t)inp[n] * E, (size_t)E * sizeof(sl_real));
}

/* dtok_embd[inp[n]] += dout[n] */
static void embed_backward(sl_real *dtok_embd, const sl_real *dout, const int32_t *inp, int N, int E)
{
    for (int n = 0; n < N; n++) axpy(dtok_embd + (size_t)inp[n] * E, 1, dout + (size_t)n * E, E);
}

/* ------------------------------------------------------------------------ */
/* RMSNorm                                                                   */
/* ------------------------------------------------------------------------ */

/* out (N, E) = inp * rstd * w, rstd (N) = 1/sqrt(mean(inp^2) + eps) (sum in
 * double, scale in float, as the engine's sl_op_rmsnorm) */
static void rmsnorm_forward(sl_real *out, sl_real *rstd, const sl_real *inp, const sl_real *w, int N, int E,
                            float eps)
{
    for (int n = 0; n < N; n++) {
        const sl_real *x = inp + (size_t)n * E;
        sl_real *y = out + (size_t)n * E;
        double ss = 0;
        for (int i = 0; i < E; i++) ss += (double)x[i] * x[i];
        sl_real s = (sl_real)1 / (sl_real)sqrt((sl_real)(ss / E) + (sl_real)eps);
        rstd[n] = s;
        for (int i = 0; i < E; i++) y[i] = x[i] * s * w[i];
    }
}

/* dinp += rstd * (g - x * rstd^2 * mean(g . x)), g = dout * w;  dw += dout * x * rstd */
static void rmsnorm_backward(sl_real *dinp, sl_real *dw, const sl_real *dout, const sl_real *inp,
                             const sl_real *w, const sl_real *rstd, int N, int E)
{
    for (int n = 0; n < N; n++) {
        const sl_real *x = inp + (size_t)n * E, *dy = dout + (size_t)n * E;
        sl_real *dx = dinp + (size_t)n * E, s = rstd[n];
        double gx = 0;
        for (int i = 0; i < E; i++) gx += (double)dy[i] * w[i] * x[i];
        sl_real c = (sl_real)(gx / E) * s * s * s;
        for (int i = 0; i < E; i++) {
            dx[i] += s * dy[i] * w[i] - c * x[i];
            if (dw) dw[i] += dy[i] * x[i] * s;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* RoPE (normal pairs (2i, 2i+1), as the engine for llama)                   */
/* ------------------------------------------------------------------------ */

/* cos/sin (T, D/2) for positions 0..T-1, computed in float exactly as
 * sl_op_rope does so that trainer and engine see the same angles. */
static void rope_table(float *cs, float *sn, int T, int D, float base, float scale, const float *freq_div)
{
    int half = D / 2;
    float theta_scale = powf(base, -2.0f / (float)D);
    for (int t = 0; t < T; t++) {
        float theta = (float)t * scale;
        for (int i = 0; i < half; i++) {
            float a = freq_div ? theta / freq_div[i] : theta;
            cs[t * half + i] = cosf(a);
            sn[t * half + i] = sinf(a);
            theta *= theta_scale;
        }
    }
}

/* x (N, heads*D) rotated in place; position of row n is n % T */
static void rope_forward(sl_real *x, const float *cs, const float *sn, int N, int T, int heads, int D)
{
    int half = D / 2;
    for (int n = 0; n < N; n++)
        for (int h = 0; h < heads; h++) {
            sl_real *v = x + ((size_t)n * heads + h) * D;
            const float *c = cs + (n % T) * half, *s = sn + (n % T) * half;
            for (int i = 0; i < half; i++) {
                sl_real x0 = v[2 * i], x1 = v[2 * i + 1];
                v[2 * i] = x0 * c[i] - x1 * s[i];
                v[2 * i + 1] = x0 * s[i] + x1 * c[i];
            }
        }
}

/* the rotation is orthogonal: the gradient rotates back by -angle */
static void rope_backward(sl_real *dx, const float *cs, const float *sn, int N, int T, int heads, int D)
{
    int half = D / 2;
    for (int n = 0; n < N; n++)
        for (int h = 0; h < heads; h++) {
            sl_real *v = dx + ((size_t)n * heads + h) * D;
            const float *c = cs + (n % T) * half, *s = sn + (n % T) * half;
            for (int i = 0; i < half; i++) {
                sl_real d0 = v[2 * i], d1 = v[2 * i + 1];
                v[2 * i] = d0 * c[i] + d1 * s[i];
                v[2 * i + 1] = -d0 * s[i] + d1 * c[i];
            }
        }
}

/* ------------------------------------------------------------------------ */
/* causal self-attention with GQA                                            */
/* ------------------------------------------------------------------------ */

struct attn_job {
    int B, T, H, K, D;
    sl_real scale;
    const sl_real *q, *k, *v; /* (N, H*D), (N, K*D), (N, K*D) */
    sl_real *att;             /* (B, H, T, T) probabilities */
    sl_real *out;             /* (N, H*D) */
    /* backward */
    const sl_real *dout;      /* (N, H*D) */
    sl_real *dq, *dk, *dv;    /* same shapes as q, k, v */
    sl_real *scratch;         /* (threads, T) */
};

/* one (b, h): att[t, :t+1] = softmax(q_t . k_:t * scale); out_t = att . v */
static void attn_fwd_item(void *ctx, int item, int thread)
{
    struct attn_job *j = ctx;
    int b = item / j->H, h = item % j->H, kh = h / (j->H / j->K), T = j->T, D = j->D;
    (void)thread;
    for (int t = 0; t < T; t++) {
        const sl_real *q = j->q + ((size_t)(b * T + t) * j->H + h) * D;
        sl_real *a = j->att + (((size_t)b * j->H + h) * T + t) * T;
        sl_real mx = -INFINITY;
        for (int t2 = 0; t2 <= t; t2++) {
            a[t2] = dot(q, j->k + ((size_t)(b * T + t2) * j->K + kh) * D, D) * j->scale;
            if (a[t2] > mx) mx = a[t2];
        }
        double sum = 0;
        for (int t2 = 0; t2 <= t; t2++) sum += (a[t2] = (sl_real)exp(a[t2] - mx));
        for (int t2 = 0; t2 <= t; t2++) a[t2] = (sl_real)(a[t2] / sum);
        for (int t2 = t + 1; t2 < T; t2++) a[t2] = 0;
        sl_real *o = j->out + ((size_t)(b * T + t) * j->H + h) * D;
        memset(o, 0, (size_t)D * sizeof(sl_real));
        for (int t2 = 0; t2 <= t; t2++) axpy(o, a[t2], j->v + ((size_t)(b * T + t2) * j->K + kh) * D, D);
    }
}

/* one (b, kv head), looping over the query heads that share it, so that
 * dk/dv rows are written by one thread only:
 *   dv_t2 += att[t,t2] dout_t        dp[t2] = dout_t . v_t2
 *   ds = att * (dp - sum(att * dp)) * scale
 *   dq_t += ds[t2] k_t2              dk_t2 += ds[t2] q_t */
static void attn_bwd_item(void *ctx, int item, int thread)
{
    struct attn_job *j = ctx;
    int b = item / j->K, kh = item % j->K, T = j->T, D = j->D, G = j->H / j->K;
    sl_real *dp = j->scratch + (size_t)thread * T;
    for (int h = kh * G; h < (kh + 1) * G; h++)
        for (int t = 0; t < T; t++) {
            const sl_real *a = j->att + (((size_t)b * j->H + h) * T + t) * T;
            const sl_real *dout = j->dout + ((size_t)(b * T + t) * j->H + h) * D;
            const sl_real *q = j->q + ((size_t)(b * T + t) * j->H + h) * D;
            sl_real *dq = j->dq + ((size_t)(b * T + t) * j->H + h) * D;
            double s = 0;
            for (int t2 = 0; t2 <= t; t2++) {
                size_t kv = ((size_t)(b * T + t2) * j->K + kh) * D;
                dp[t2] = dot(dout, j->v + kv, D);
                axpy(j->dv + kv, a[t2], dout, D);
                s += (double)a[t2] * dp[t2];
            }
            for (int t2 = 0; t2 <= t; t2++) {
                size_t kv = ((size_t)(b * T + t2) * j->K + kh) * D;
                sl_real ds = a[t2] * (dp[t2] - (sl_real)s) * j->scale;
                axpy(dq, ds, j->k + kv, D);
                axpy(j->dk + kv, ds, q, D);
            }
        }
}

/* ------------------------------------------------------------------------ */
/* SwiGLU                                                                    */
/* ------------------------------------------------------------------------ */

/* out = silu(g) * u */
static void swiglu_forward(sl_real *out, const sl_real *g, const sl_real *u, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sl_real sg = (sl_real)1 / ((sl_real)1 + (sl_real)exp(-g[i]));
        out[i] = g[i] * sg * u[i];
    }
}

/* dg = dout * u * silu'(g), silu'(g) = s (1 + g (1 - s));  du = dout * silu(g) */
static void swiglu_backward(sl_real *dg, sl_real *du, const sl_real *dout, const sl_real *g, const sl_real *u,
                            size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sl_real sg = (sl_real)1 / ((sl_real)1 + (sl_real)exp(-g[i]));
        dg[i] = dout[i] * u[i] * sg * ((sl_real)1 + g[i] * ((sl_real)1 - sg));
        du[i] = dout[i] * g[i] * sg;
    }
}

/* ------------------------------------------------------------------------ */
/* softmax cross-entropy                                                     */
/* ------------------------------------------------------------------------ */

struct xent_job {
    sl_real *logits; /* (N, V) -> probabilities */
    const int32_t *targets;
    double *losses;  /* (N) */
    int V;
};

static void xent_fwd_item(void *ctx, int n, int thread)
{
    struct xent_job *j = ctx;
    sl_real *l = j->logits + (size_t)n * j->V;
    sl_real mx = l[0];
    (void)thread;
    for (int i = 1; i < j->V; i++) mx = l[i] > mx ? l[i] : mx;
    double s = 0;
    for (int i = 0; i < j->V; i++) s += (l[i] = (sl_real)exp(l[i] - mx));
    for (int i = 0; i < j->V; i++) l[i] = (sl_real)(l[i] / s);
    int32_t y = j->targets[n];
    j->losses[n] = y >= 0 ? -log(SL_MAX((double)l[y], 1e-300)) : 0;
}

/* dlogits = (probs - onehot(y)) * scale for counted rows, 0 for ignored ones
 * (in place over the probabilities) */
static void xent_backward(sl_real *probs, const int32_t *targets, int N, int V, sl_real scale)
{
    for (int n = 0; n < N; n++) {
        sl_real *p = probs + (size_t)n * V;
        if (targets[n] < 0) {
            memset(p, 0, (size_t)V * sizeof(sl_real));
            continue;
        }
        for (int i = 0; i < V; i++) p[i] *= scale;
        p[targets[n]] -= scale;
    }
}

/* ------------------------------------------------------------------------ */
/* model, activations                                                        */
/* ------------------------------------------------------------------------ */

struct sl_lm_acts {
    int B, T, rank;
    sl_real *mem;
    sl_real *res;   /* (L+1, N, E) residual stream entering each layer; [L] = final */
    sl_real *ln1;   /* (L, N, E) */
    sl_real *rstd1; /* (L, N) */
    sl_real *q;     /* (L, N, H*D) after RoPE */
    sl_real *k;     /* (L, N, K*D) after RoPE */
    sl_real *v;     /* (L, N, K*D) */
    sl_real *att;   /* (L, B, H, T, T) */
    sl_real *atty;  /* (L, N, H*D) */
    sl_real *res2;  /* (L, N, E) residual after attention */
    sl_real *ln2;   /* (L, N, E) */
    sl_real *rstd2; /* (L, N) */
    sl_real *hg;    /* (L, N, F) gate pre-activation */
    sl_real *hu;    /* (L, N, F) up */
    sl_real *hh;    /* (L, N, F) silu(gate) * up */
    sl_real *lnf;   /* (N, E) */
    sl_real *rstdf; /* (N) */
    sl_real *lora_h[SL_LORA_N_TARGETS]; /* (L, N, r) A x per adapted projection */
    /* backward scratch */
    sl_real *dres;  /* (N, E) */
    sl_real *dln;   /* (N, E) */
    sl_real *dq, *dk, *dv, *datty; /* (N, H*D), (N, K*D), (N, K*D), (N, H*D) */
    sl_real *dhg, *dhu, *dhh;      /* (N, F) */
    sl_real *dlora; /* (N, r) */
    sl_real *attn_scratch; /* (threads, T) */
    double *losses; /* (N) */
    float *cos, *sin; /* (T, D/2) */
};

static size_t lm_sizes(const struct sl_lm_config *c, int32_t D, size_t *sz)
{
    size_t V = (size_t)c->n_vocab, E = (size_t)c->n_embd, L = (size_t)c->n_layer, F = (size_t)c->n_ff;
    size_t nq = (size_t)c->n_head * (size_t)D, nk = (size_t)c->n_head_kv * (size_t)D;
    size_t s[12] = {V * E, L * E, L * nq * E, L * nk * E, L * nk * E, L * E * nq, L * E,
                    L * F * E, L * F * E, L * E * F, E, c->tied ? 0 : V * E};
    size_t total = 0;
    for (int i = 0; i < 12; i++) total += (sz[i] = s[i]);
    return total;
}

static void lm_views(struct sl_lm_weights *w, sl_real *mem, const size_t *sz)
{
    sl_real **p[12] = {&w->tok_embd, &w->attn_norm, &w->wq, &w->wk, &w->wv, &w->wo, &w->ffn_norm,
                       &w->gate, &w->up, &w->down, &w->out_norm, &w->output};
    for (int i = 0; i < 12; i++) {
        *p[i] = sz[i] ? mem : NULL;
        mem += sz[i];
    }
}

int sl_lm_init(struct sl_lm *lm, const struct sl_lm_config *cfg, int n_threads, struct sl_err *err)
{
    memset(lm, 0, sizeof *lm);
    const struct sl_lm_config *c = cfg;
    if (c->n_vocab <= 0 || c->n_embd <= 0 || c->n_layer <= 0 || c->n_head <= 0 || c->n_head_kv <= 0 ||
        c->n_ff <= 0 || c->n_embd % c->n_head || c->n_head % c->n_head_kv || (c->n_embd / c->n_head) % 2)
        return sl_err_set(err, SL_EINVAL,
                          "lm: bad shape: vocab %d, embd %d, layers %d, heads %d/%d, ff %d "
                          "(heads must divide embd into an even head size)",
                          c->n_vocab, c->n_embd, c->n_layer, c->n_head, c->n_head_kv, c->n_ff);
    lm->cfg = *c;
    lm->head_dim = c->n_embd / c->n_head;
    lm->rope_scale = 1.0f;
    lm->train_base = true;
    size_t sz[12];
    lm->n_params = lm_sizes(c, lm->head_dim, sz);
    lm->params_mem = calloc(lm->n_params, sizeof(sl_real));
    lm->grads_mem = calloc(lm->n_params, sizeof(sl_real));
    lm->pool = sl_pool_init(n_threads);
    if (!lm->params_mem || !lm->grads_mem || !lm->pool) {
        sl_lm_free(lm);
        return sl_err_set(err, SL_ENOMEM, "lm: out of memory for %zu parameters", lm->n_params);
    }
    lm_views(&lm->w, lm->params_mem, sz);
    lm_views(&lm->g, lm->grads_mem, sz);
    return 0;
}

static void acts_free(struct sl_lm_acts *a)
{
    if (!a) return;
    free(a->mem);
    free(a->losses);
    free(a->cos);
    free(a->sin);
    free(a);
}

void sl_lm_free(struct sl_lm *lm)
{
    free(lm->params_mem);
    free(lm->grads_mem);
    free(lm->rope_freqs);
    free(lm->logits);
    acts_free(lm->acts);
    if (lm->pool) sl_pool_free(lm->pool);
    memset(lm, 0, sizeof *lm);
}

/* (Re)allocate activations for (B, T) and the attached adapter's rank. */
static int acts_ensure(struct sl_lm *lm, int B, int T, struct sl_err *err)
{
    int rank = lm->lora ? lm->lora->rank : 0;
    if (lm->acts && lm->acts->B == B && lm->acts->T == T && lm->acts->rank == rank) return 0;
    acts_free(lm->acts);
    free(lm->logits);
    lm->acts = NULL;
    lm->logits = NULL;
    const struct sl_lm_config *c = &lm->cfg;
    size_t N = (size_t)B * T, E = (size_t)c->n_embd, L = (size_t)c->n_layer, F = (size_t)c->n_ff;
    size_t nq = (size_t)c->n_head * lm->head_dim, nk = (size_t)c->n_head_kv * lm->head_dim;
    size_t nth = (size_t)sl_pool_n_threads(lm->pool), r = (size_t)rank;
    struct sl_lm_acts *a = calloc(1, sizeof *a);
    if (!a) return sl_err_set(err, SL_ENOMEM, "lm: out of memory");
    size_t sizes[] = {(L + 1) * N * E, L * N * E, L * N, L * N * nq, L * N * nk, L * N * nk,
                      L * (size_t)B * c->n_head * (size_t)T * T, L * N * nq, L * N * E, L * N * E, L * N,
                      L * N * F, L * N * F, L * N * F, N * E, N,
                      N * E, N * E, N * nq, N * nk, N * nk, N * nq, N * F, N * F, N * F, N * SL_MAX(r, 1),
                      nth * (size_t)T};
    sl_real **ptrs[] = {&a->res, &a->ln1, &a->rstd1, &a->q, &a->k, &a->v, &a->att, &a->atty, &a->res2,
                        &a->ln2, &a->rstd2, &a->hg, &a->hu, &a->hh, &a->lnf, &a->rstdf,
                        &a->dres, &a->dln, &a->dq, &a->dk, &a->dv, &a->datty, &a->dhg, &a->dhu, &a->dhh,
                        &a->dlora, &a->attn_scratch};
    size_t n_arr = sizeof sizes / sizeof *sizes, total = 0;
    for (size_t i = 0; i < n_arr; i++) total += sizes[i];
    if (rank)
        for (int t = 0; t < SL_LORA_N_TARGETS; t++)
            if (lm->lora->a[t]) total += L * N * r;
    a->mem = malloc(total * sizeof(sl_real));
    a->losses = malloc(N * sizeof(double));
    a->cos = malloc((size_t)T * (size_t)lm->head_dim / 2 * sizeof(float));
    a->sin = malloc((size_t)T * (size_t)lm->head_dim / 2 * sizeof(float));
    lm->logits = malloc(N * (size_t)c->n_vocab * sizeof(sl_real));
    if (!a->mem || !a->losses || !a->cos || !a->sin || !lm->logits) {
        acts_free(a);
        free(lm->logits);
        lm->logits = NULL;
        return sl_err_set(err, SL_ENOMEM, "lm: out of memory for activations of %d x %d tokens", B, T);
    }
    sl_real *p = a->mem;
    for (size_t i = 0; i < n_arr; i++) {
        *ptrs[i] = p;
        p += sizes[i];
    }
    if (rank)
        for (int t = 0; t < SL_LORA_N_TARGETS; t++)
            if (lm->lora->a[t]) {
                a->lora_h[t] = p;
                p += L * N * r;
            }
    a->B = B;
    a->T = T;
    a->rank = rank;
    rope_table(a->cos, a->sin, T, lm->head_dim, c->rope_base, lm->rope_scale, lm->rope_freqs);
    lm->acts = a;
    lm->B = B;
    lm->T = T;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* a projection with an optional LoRA term                                   */
/* ------------------------------------------------------------------------ */

/* Shapes of projection `t`: in and out widths. */
static void proj_dims(const struct sl_lm *lm, int t, int *in, int *out)
{
    int E = lm->cfg.n_embd, F = lm->cfg.n_ff, nq = lm->cfg.n_head * lm->head_dim;
    int nk = lm->cfg.n_head_kv * lm->head_dim;
    switch (t) {
    case SL_LORA_Q: *in = E, *out = nq; break;
    case SL_LORA_K: case SL_LORA_V: *in = E, *out = nk; break;
    case SL_LORA_O: *in = nq, *out = E; break;
    case SL_LORA_GATE: case SL_LORA_UP: *in = E, *out = F; break;
    default: *in = F, *out = E; break;
    }
}

/* out (N, OC) = inp . W^T + (alpha/r) * (inp . A^T) . B^T  for layer l */
static void proj_forward(struct sl_lm *lm, int t, int l, sl_real *out, const sl_real *inp, const sl_real *W, int N)
{
    int C, OC;
    proj_dims(lm, t, &C, &OC);
    matmul_forward(lm->pool, out, inp, W, N, C, OC, 1, false);
    const struct sl_lm_lora *lo = lm->lora;
    if (!lo || !lo->a[t]) return;
    int r = lo->rank;
    sl_real *h = lm->acts->lora_h[t] + (size_t)l * N * r;
    matmul_forward(lm->pool, h, inp, lo->a[t] + (size_t)l * r * C, N, C, r, 1, false);
    matmul_forward(lm->pool, out, h, lo->b[t] + (size_t)l * OC * r, N, r, OC, (sl_real)(lo->alpha / (float)r), true);
}

/* dinp += dout . W (+ LoRA path);  dW += dout^T inp when training the base */
static int proj_backward(struct sl_lm *lm, int t, int l, sl_real *dinp, sl_real *dW, const sl_real *dout,
                         const sl_real *inp, const sl_real *W, int N)
{
    int C, OC;
    proj_dims(lm, t, &C, &OC);
    int rc = matmul_backward(lm->pool, dinp, lm->train_base ? dW : NULL, dout, inp, W, N, C, OC, 1);
    const struct sl_lm_lora *lo = lm->lora;
    if (rc || !lo || !lo->a[t]) return rc;
    int r = lo->rank;
    sl_real s = (sl_real)(lo->alpha / (float)r);
    const sl_real *h = lm->acts->lora_h[t] + (size_t)l * N * r;
    const sl_real *A = lo->a[t] + (size_t)l * r * C, *Bm = lo->b[t] + (size_t)l * OC * r;
    sl_real *dh = lm->acts->dlora;
    memset(dh, 0, (size_t)N * r * sizeof(sl_real));
    /* h = inp A^T; out += s h B^T */
    rc = matmul_backward(lm->pool, dh, lo->db[t] + (size_t)l * OC * r, dout, h, Bm, N, r, OC, s);
    return rc ? rc : matmul_backward(lm->pool, dinp, lo->da[t] + (size_t)l * r * C, dh, inp, A, N, C, r, 1);
}

/* ------------------------------------------------------------------------ */
/* the forward pass                                                          */
/* ------------------------------------------------------------------------ */

double sl_lm_forward(struct sl_lm *lm, const int32_t *inputs, const int32_t *targets, int32_t B,
                     int32_t T, struct sl_err *err)
{
    const struct sl_lm_config *c = &lm->cfg;
    const int N = B * T, E = c->n_embd, F = c->n_ff, V = c->n_vocab, L = c->n_layer;
    const int H = c->n_head, K = c->n_head_kv, D = lm->head_dim, nq = H * D, nk = K * D;
    const struct sl_lm_weights *w = &lm->w;
    if (B <= 0 || T <= 0) {
        sl_err_set(err, SL_EINVAL, "lm: batch %d x %d", B, T);
        return NAN;
    }
    for (int n = 0; n < N; n++)
        if (inputs[n] < 0 || inputs[n] >= V) {
            sl_err_set(err, SL_EINVAL, "lm: token %d out of range (vocabulary of %d)", inputs[n], V);
            return NAN;
        }
    if (acts_ensure(lm, B, T, err)) return NAN;
    struct sl_lm_acts *a = lm->acts;

    /* embed: res[0] = tok_embd[inputs] */
    embed_forward(a->res, inputs, w->tok_embd, N, E);

    for (int l = 0; l < L; l++) {
        sl_real *x = a->res + (size_t)l * N * E, *x2 = a->res2 + (size_t)l * N * E;
        sl_real *ln1 = a->ln1 + (size_t)l * N * E, *ln2 = a->ln2 + (size_t)l * N * E;
        sl_real *q = a->q + (size_t)l * N * nq, *k = a->k + (size_t)l * N * nk, *v = a->v + (size_t)l * N * nk;
        sl_real *atty = a->atty + (size_t)l * N * nq, *att = a->att + (size_t)l * B * H * T * T;
        sl_real *hg = a->hg + (size_t)l * N * F, *hu = a->hu + (size_t)l * N * F, *hh = a->hh + (size_t)l * N * F;
        sl_real *xo = a->res + (size_t)(l + 1) * N * E;

        /* attention norm */
        rmsnorm_forward(ln1, a->rstd1 + (size_t)l * N, x, w->attn_norm + (size_t)l * E, N, E, c->norm_eps);
        /* q, k, v projections */
        proj_forward(lm, SL_LORA_Q, l, q, ln1, w->wq + (size_t)l * nq * E, N);
        proj_forward(lm, SL_LORA_K, l, k, ln1, w->wk + (size_t)l * nk * E, N);
        proj_forward(lm, SL_LORA_V, l, v, ln1, w->wv + (size_t)l * nk * E, N);
        /* rotary position embedding */
        rope_forward(q, a->cos, a->sin, N, T, H, D);
        rope_forward(k, a->cos, a->sin, N, T, K, D);
        /* causal attention */
        struct attn_job aj = {B, T, H, K, D, (sl_real)(1.0f / sqrtf((float)D)), q, k, v, att, atty,
                              NULL, NULL, NULL, NULL, NULL};
        sl_pool_run(lm->pool, attn_fwd_item, &aj, B * H);
        /* output projection and residual */
        proj_forward(lm, SL_LORA_O, l, x2, atty, w->wo + (size_t)l * E * nq, N);
        for (size_t i = 0; i < (size_t)N * E; i++) x2[i] += x[i];
        /* ffn norm */
        rmsnorm_forward(ln2, a->rstd2 + (size_t)l * N, x2, w->ffn_norm + (size_t)l * E, N, E, c->norm_eps);
        /* SwiGLU: down(silu(gate x) * up x) */
        proj_forward(lm, SL_LORA_GATE, l, hg, ln2, w->gate + (size_t)l * F * E, N);
        proj_forward(lm, SL_LORA_UP, l, hu, ln2, w->up + (size_t)l * F * E, N);
        swiglu_forward(hh, hg, hu, (size_t)N * F);
        proj_forward(lm, SL_LORA_DOWN, l, xo, hh, w->down + (size_t)l * E * F, N);
        /* residual */
        for (size_t i = 0; i < (size_t)N * E; i++) xo[i] += x2[i];
    }

    /* final norm and the vocabulary projection (tied: the embedding) */
    rmsnorm_forward(a->lnf, a->rstdf, a->res + (size_t)L * N * E, w->out_norm, N, E, c->norm_eps);
    matmul_forward(lm->pool, lm->logits, a->lnf, c->tied ? w->tok_embd : w->output, N, E, V, 1, false);
    if (!targets) return 0;

    /* softmax cross-entropy, mean over counted targets */
    struct xent_job xj = {lm->logits, targets, a->losses, V};
    sl_pool_run(lm->pool, xent_fwd_item, &xj, N);
    double loss = 0;
    int counted = 0;
    for (int n = 0; n < N; n++)
        if (targets[n] >= 0) {
            if (targets[n] >= V) {
                sl_err_set(err, SL_EINVAL, "lm: target %d out of range", targets[n]);
                return NAN;
            }
            loss += a->losses[n];
            counted++;
        }
    return counted ? loss / counted : NAN;
}

void sl_lm_zero_grad(struct sl_lm *lm)
{
    if (lm->train_base) memset(lm->grads_mem, 0, lm->n_params * sizeof(sl_real));
    if (lm->lora) {
        struct sl_lm_lora *lo = lm->lora;
        for (int t = 0; t < SL_LORA_N_TARGETS; t++)
            if (lo->a[t]) {
                int in, out;
                proj_dims(lm, t, &in, &out);
                memset(lo->da[t], 0, (size_t)lm->cfg.n_layer * lo->rank * in * sizeof(sl_real));
                memset(lo->db[t], 0, (size_t)lm->cfg.n_layer * out * lo->rank * sizeof(sl_real));
            }
    }
}

/* ------------------------------------------------------------------------ */
/* the backward pass: the forward's steps in reverse                         */
/* ------------------------------------------------------------------------ */

int sl_lm_backward(struct sl_lm *lm, const int32_t *inputs, const int32_t *targets)
{
    const struct sl_lm_config *c = &lm->cfg;
    struct sl_lm_acts *a = lm->acts;
    const int B = lm->B, T = lm->T, N = B * T, E = c->n_embd, F = c->n_ff, V = c->n_vocab, L = c->n_layer;
    const int H = c->n_head, K = c->n_head_kv, D = lm->head_dim, nq = H * D, nk = K * D;
    const struct sl_lm_weights *w = &lm->w;
    struct sl_lm_weights *g = lm->train_base ? &lm->g : NULL;
#define G(field, off) (g ? g->field + (off) : NULL)
    int counted = 0, rc = 0;
    for (int n = 0; n < N; n++) counted += targets[n] >= 0;
    if (!counted) return 0;

    /* cross-entropy: dlogits = (p - y) / counted, in place */
    xent_backward(lm->logits, targets, N, V, (sl_real)1 / (sl_real)counted);
    /* vocabulary projection and final norm */
    memset(a->dln, 0, (size_t)N * E * sizeof(sl_real));
    rc |= matmul_backward(lm->pool, a->dln, c->tied ? G(tok_embd, 0) : G(output, 0), lm->logits, a->lnf,
                    c->tied ? w->tok_embd : w->output, N, E, V, 1);
    memset(a->dres, 0, (size_t)N * E * sizeof(sl_real));
    rmsnorm_backward(a->dres, G(out_norm, 0), a->dln, a->res + (size_t)L * N * E, w->out_norm, a->rstdf, N, E);

    for (int l = L - 1; l >= 0; l--) {
        sl_real *x = a->res + (size_t)l * N * E, *x2 = a->res2 + (size_t)l * N * E;
        sl_real *ln1 = a->ln1 + (size_t)l * N * E, *ln2 = a->ln2 + (size_t)l * N * E;
        sl_real *q = a->q + (size_t)l * N * nq, *k = a->k + (size_t)l * N * nk, *v = a->v + (size_t)l * N * nk;
        sl_real *atty = a->atty + (size_t)l * N * nq, *att = a->att + (size_t)l * B * H * T * T;
        sl_real *hg = a->hg + (size_t)l * N * F, *hu = a->hu + (size_t)l * N * F, *hh = a->hh + (size_t)l * N * F;
        /* a->dres holds d(res[l+1]); the residual passes it on to res2 unchanged */

        /* SwiGLU down, gate/up, ffn norm: dres (as d res2) += ... */
        memset(a->dhh, 0, (size_t)N * F * sizeof(sl_real));
        rc |= proj_backward(lm, SL_LORA_DOWN, l, a->dhh, G(down, (size_t)l * E * F), a->dres, hh,
                      w->down + (size_t)l * E * F, N);
        swiglu_backward(a->dhg, a->dhu, a->dhh, hg, hu, (size_t)N * F);
        memset(a->dln, 0, (size_t)N * E * sizeof(sl_real));
        rc |= proj_backward(lm, SL_LORA_GATE, l, a->dln, G(gate, (size_t)l * F * E), a->dhg, ln2,
                      w->gate + (size_t)l * F * E, N);
        rc |= proj_backward(lm, SL_LORA_UP, l, a->dln, G(up, (size_t)l * F * E), a->dhu, ln2, w->up + (size_t)l * F * E, N);
        rmsnorm_backward(a->dres, G(ffn_norm, (size_t)l * E), a->dln, x2, w->ffn_norm + (size_t)l * E,
                         a->rstd2 + (size_t)l * N, N, E);

        /* output projection: d atty; the residual passes dres on to res[l] */
        memset(a->datty, 0, (size_t)N * nq * sizeof(sl_real));
        rc |= proj_backward(lm, SL_LORA_O, l, a->datty, G(wo, (size_t)l * E * nq), a->dres, atty,
                      w->wo + (size_t)l * E * nq, N);
        /* attention */
        memset(a->dq, 0, (size_t)N * nq * sizeof(sl_real));
        memset(a->dk, 0, (size_t)N * nk * sizeof(sl_real));
        memset(a->dv, 0, (size_t)N * nk * sizeof(sl_real));
        struct attn_job aj = {B, T, H, K, D, (sl_real)(1.0f / sqrtf((float)D)), q, k, v, att, NULL,
                              a->datty, a->dq, a->dk, a->dv, a->attn_scratch};
        sl_pool_run(lm->pool, attn_bwd_item, &aj, B * K);
        /* RoPE */
        rope_backward(a->dq, a->cos, a->sin, N, T, H, D);
        rope_backward(a->dk, a->cos, a->sin, N, T, K, D);
        /* q, k, v projections and the attention norm */
        memset(a->dln, 0, (size_t)N * E * sizeof(sl_real));
        rc |= proj_backward(lm, SL_LORA_Q, l, a->dln, G(wq, (size_t)l * nq * E), a->dq, ln1, w->wq + (size_t)l * nq * E, N);
        rc |= proj_backward(lm, SL_LORA_K, l, a->dln, G(wk, (size_t)l * nk * E), a->dk, ln1, w->wk + (size_t)l * nk * E, N);
        rc |= proj_backward(lm, SL_LORA_V, l, a->dln, G(wv, (size_t)l * nk * E), a->dv, ln1, w->wv + (size_t)l * nk * E, N);
        rmsnorm_backward(a->dres, G(attn_norm, (size_t)l * E), a->dln, x, w->attn_norm + (size_t)l * E,
                         a->rstd1 + (size_t)l * N, N, E);
    }

    /* embedding */
    if (g) embed_backward(g->tok_embd, a->dres, inputs, N, E);
#undef G
    return rc ? SL_ENOMEM : 0;
}

/* ------------------------------------------------------------------------ */
/* initialisation and loading                                                */
/* ------------------------------------------------------------------------ */

static void fill_normal(sl_real *p, size_t n, float std, struct sl_rng *r)
{
    for (size_t i = 0; i < n; i++) p[i] = (sl_real)(std * sl_rng_normal(r));
}

static void fill_const(sl_real *p, size_t n, float v)
{
    for (size_t i = 0; i < n; i++) p[i] = (sl_real)v;
}

void sl_lm_init_weights(struct sl_lm *lm, uint64_t seed)
{
    const struct sl_lm_config *c = &lm->cfg;
    size_t V = (size_t)c->n_vocab, E = (size_t)c->n_embd, L = (size_t)c->n_layer, F = (size_t)c->n_ff;
    size_t nq = (size_t)c->n_head * lm->head_dim, nk = (size_t)c->n_head_kv * lm->head_dim;
    float res_std = 0.02f / sqrtf(2.0f * (float)L); /* residual projections, as GPT-2/llm.c */
    struct sl_rng r;
    sl_rng_seed(&r, seed);
    struct sl_lm_weights *w = &lm->w;
    fill_normal(w->tok_embd, V * E, 0.02f, &r);
    fill_const(w->attn_norm, L * E, 1.0f);
    fill_normal(w->wq, L * nq * E, 0.02f, &r);
    fill_normal(w->wk, L * nk * E, 0.02f, &r);
    fill_normal(w->wv, L * nk * E, 0.02f, &r);
    fill_normal(w->wo, L * E * nq, res_std, &r);
    fill_const(w->ffn_norm, L * E, 1.0f);
    fill_normal(w->gate, L * F * E, 0.02f, &r);
    fill_normal(w->up, L * F * E, 0.02f, &r);
    fill_normal(w->down, L * E * F, res_std, &r);
    fill_const(w->out_norm, E, 1.0f);
    if (w->output) fill_normal(w->output, V * E, 0.02f, &r);
}

/* Dequantize a whole engine tensor into dst (rows * ne[0] values). */
static int copy_tensor(sl_real *dst, const struct sl_tensor *t, const char *what, struct sl_err *err)
{
    if (!t->data) return sl_err_set(err, SL_EFORMAT, "lm: tensor '%s' is missing", what);
    int64_t n = t->ne[0], rows = t->ne[1] > 0 ? t->ne[1] : 1;
    float *row = malloc((size_t)n * sizeof(float));
    if (!row) return sl_err_set(err, SL_ENOMEM, "lm: out of memory");
    for (int64_t r = 0; r < rows; r++) {
        sl_dequantize_row(t->type, (const uint8_t *)t->data + (size_t)r * t->row_size, row, n);
        for (int64_t i = 0; i < n; i++) dst[(size_t)r * (size_t)n + (size_t)i] = (sl_real)row[i];
    }
    free(row);
    return 0;
}

int sl_lm_from_model(struct sl_lm *lm, const struct sl_model *m, int n_threads, struct sl_err *err)
{
    const struct sl_hparams *hp = &m->hp;
    if (m->arch != SL_ARCH_LLAMA)
        return sl_err_set(err, SL_EUNSUPPORTED, "lm: training supports the llama architecture, not %s",
                          m->arch_name);
    if (hp->head_dim * hp->n_head != hp->n_embd || hp->head_dim_v != hp->head_dim || hp->n_rot != hp->head_dim)
        return sl_err_set(err, SL_EUNSUPPORTED, "lm: head size %d x %d heads != n_embd %d (or partial RoPE)",
                          hp->head_dim, hp->n_head, hp->n_embd);
    for (int l = 0; l < hp->n_layer; l++)
        if (m->layers[l].wqkv.data || m->layers[l].bq.data || m->layers[l].q_norm.data || m->layers[l].swa)
            return sl_err_set(err, SL_EUNSUPPORTED, "lm: layer %d has fused/biased/normed q-k-v or a window", l);
    struct sl_lm_config c = {hp->n_vocab, hp->n_embd, hp->n_layer, hp->n_head, hp->n_head_kv, hp->n_ff,
                             hp->n_ctx_train, hp->norm_eps, hp->rope_base, m->output.data == m->tok_embd.data};
    int rc = sl_lm_init(lm, &c, n_threads, err);
    if (rc) return rc;
    lm->rope_scale = hp->rope_scale;
    if (m->rope_freqs) {
        lm->rope_freqs = malloc((size_t)hp->n_rot / 2 * sizeof(float));
        if (!lm->rope_freqs) goto oom; /* allocation failure */
        memcpy(lm->rope_freqs, m->rope_freqs, (size_t)hp->n_rot / 2 * sizeof(float));
    }
    size_t E = (size_t)c.n_embd, F = (size_t)c.n_ff, nq = (size_t)c.n_head * lm->head_dim;
    size_t nk = (size_t)c.n_head_kv * lm->head_dim;
    struct sl_lm_weights *w = &lm->w;
    if ((rc = copy_tensor(w->tok_embd, &m->tok_embd, "token_embd", err))) goto fail;
    if ((rc = copy_tensor(w->out_norm, &m->output_norm, "output_norm", err))) goto fail;
    if (!c.tied && (rc = copy_tensor(w->output, &m->output, "output", err))) goto fail;
    for (int l = 0; l < c.n_layer; l++) {
        const struct sl_layer *Ly = &m->layers[l];
        if ((rc = copy_tensor(w->attn_norm + l * E, &Ly->attn_norm, "attn_norm", err)) ||
            (rc = copy_tensor(w->wq + l * nq * E, &Ly->wq, "attn_q", err)) ||
            (rc = copy_tensor(w->wk + l * nk * E, &Ly->wk, "attn_k", err)) ||
            (rc = copy_tensor(w->wv + l * nk * E, &Ly->wv, "attn_v", err)) ||
            (rc = copy_tensor(w->wo + l * E * nq, &Ly->wo, "attn_output", err)) ||
            (rc = copy_tensor(w->ffn_norm + l * E, &Ly->ffn_norm, "ffn_norm", err)) ||
            (rc = copy_tensor(w->gate + l * F * E, &Ly->gate, "ffn_gate", err)) ||
            (rc = copy_tensor(w->up + l * F * E, &Ly->up, "ffn_up", err)) ||
            (rc = copy_tensor(w->down + l * E * F, &Ly->down, "ffn_down", err)))
            goto fail; /* missing tensor or OOM */
    }
    return 0;
oom:
    rc = sl_err_set(err, SL_ENOMEM, "lm: out of memory");
fail:
    sl_lm_free(lm);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* LoRA adapters                                                             */
/* ------------------------------------------------------------------------ */

int sl_lm_lora_init(struct sl_lm_lora *lo, const struct sl_lm *lm, int32_t rank, float alpha,
                    uint32_t targets, uint64_t seed, struct sl_err *err)
{
    memset(lo, 0, sizeof *lo);
    if (rank <= 0 || rank > 4096 || !(targets & ((1u << SL_LORA_N_TARGETS) - 1)))
        return sl_err_set(err, SL_EINVAL, "lora: rank %d (1..4096) and at least one target", rank);
    size_t L = (size_t)lm->cfg.n_layer, total = 0;
    for (int t = 0; t < SL_LORA_N_TARGETS; t++)
        if (targets & (1u << t)) {
            int in, out;
            proj_dims(lm, t, &in, &out);
            total += L * (size_t)rank * (size_t)(in + out);
        }
    lo->mem = calloc(2 * total, sizeof(sl_real));
    if (!lo->mem) return sl_err_set(err, SL_ENOMEM, "lora: out of memory for %zu parameters", total);
    lo->rank = rank;
    lo->alpha = alpha;
    lo->targets = targets;
    lo->n_params = total;
    struct sl_rng r;
    sl_rng_seed(&r, seed);
    sl_real *p = lo->mem, *d = lo->mem + total;
    for (int t = 0; t < SL_LORA_N_TARGETS; t++) {
        if (!(targets & (1u << t))) continue;
        int in, out;
        proj_dims(lm, t, &in, &out);
        size_t na = L * (size_t)rank * in, nb = L * (size_t)out * rank;
        lo->a[t] = p, lo->da[t] = d;
        p += na, d += na;
        lo->b[t] = p, lo->db[t] = d;
        p += nb, d += nb;
        fill_normal(lo->a[t], na, 1.0f / sqrtf((float)in), &r); /* B = 0: the adapter starts as a no-op */
    }
    return 0;
}

void sl_lm_lora_free(struct sl_lm_lora *lo)
{
    free(lo->mem);
    memset(lo, 0, sizeof *lo);
}

int sl_lora_targets_parse(const char *s, uint32_t *out)
{
    static const char *const names[SL_LORA_N_TARGETS] = {"q", "k", "v", "o", "gate", "up", "down"};
    uint32_t m = 0;
    if (!strcmp(s, "attn")) {
        *out = 0xF;
        return 0;
    }
    if (!strcmp(s, "all")) {
        *out = (1u << SL_LORA_N_TARGETS) - 1;
        return 0;
    }
    while (*s) {
        size_t n = strcspn(s, ",");
        int found = -1;
        for (int t = 0; t < SL_LORA_N_TARGETS; t++)
            if (strlen(names[t]) == n && !strncmp(s, names[t], n)) found = t;
        if (found < 0) return SL_EINVAL;
        m |= 1u << found;
        s += n;
        if (*s == ',') s++;
    }
    if (!m) return SL_EINVAL;
    *out = m;
    return 0;
}

int sl_lm_lora_dims(const struct sl_lm *lm, int t, int *in, int *out)
{
    if (t < 0 || t >= SL_LORA_N_TARGETS) return SL_EINVAL;
    proj_dims(lm, t, in, out);
    return 0;
}
