/*
 * head.c - classification heads on frozen embeddings (train layer).
 * See head.h. Forward and backward of each piece sit side by side, as in
 * llm.c's train_gpt2.c. Letters: B = examples in a step, E = embedding
 * width, Hd = hidden width, C = classes, N = rows of the first layer
 * (Hd for an MLP, C for a linear head).
 */
#include "head.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adamw.h"
#include "data.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/quant.h"
#include "engine/vocab.h"

/* ------------------------------------------------------------------------ */
/* the head object                                                           */
/* ------------------------------------------------------------------------ */

/* sl_head_init for an ensemble of k members (weights back to back). */
static int head_alloc(struct sl_head *h, int32_t n_in, int32_t n_hidden, const char *const *labels,
                      int32_t n_out, int32_t k, struct sl_err *err)
{
    memset(h, 0, sizeof *h);
    if (n_in <= 0 || n_hidden < 0 || n_out < 2 || n_in > (1 << 20) || n_hidden > (1 << 16) ||
        n_out > SL_DATA_MAX_LABELS || k < 1 || k > SL_HEAD_MAX_MEMBERS)
        return sl_err_set(err, SL_EINVAL, "head: bad shape: %d inputs, %d hidden, %d labels (>= 2), %d members",
                          n_in, n_hidden, n_out, k);
    h->n_in = n_in;
    h->n_hidden = n_hidden;
    h->n_out = n_out;
    h->n_members = k;
    size_t N = (size_t)(n_hidden ? n_hidden : n_out), K = (size_t)k;
    h->w1 = calloc(K * N * (size_t)n_in, sizeof(float));
    h->b1 = calloc(K * N, sizeof(float));
    h->labels = calloc((size_t)n_out, sizeof(char *));
    if (!h->w1 || !h->b1 || !h->labels) goto oom; /* allocation failure */
    if (n_hidden) {
        h->w2 = calloc(K * (size_t)n_out * (size_t)n_hidden, sizeof(float));
        h->b2 = calloc(K * (size_t)n_out, sizeof(float));
        if (!h->w2 || !h->b2) goto oom; /* allocation failure */
    }
    for (int32_t i = 0; i < n_out; i++)
        if (!(h->labels[i] = strdup(labels ? labels[i] : "?"))) goto oom; /* allocation failure */
    return 0;
oom:
    sl_head_free(h);
    return sl_err_set(err, SL_ENOMEM, "head: out of memory");
}

int sl_head_init(struct sl_head *h, int32_t n_in, int32_t n_hidden, const char *const *labels,
                 int32_t n_out, struct sl_err *err)
{
    return head_alloc(h, n_in, n_hidden, labels, n_out, 1, err);
}

int sl_head_init_for_model(struct sl_head *h, const struct sl_model *m, int32_t n_hidden,
                           const char *const *labels, int32_t n_out, int32_t n_ctx, struct sl_err *err)
{
    int rc = head_alloc(h, m->hp.n_embd, n_hidden, labels, n_out, 1, err);
    if (rc) return rc;
    h->source_hash = sl_head_model_hash(m);
    h->n_ctx = n_ctx;
    if (!(h->source_name = strdup(m->name ? m->name : ""))) {
        sl_head_free(h);
        return sl_err_set(err, SL_ENOMEM, "head: out of memory");
    }
    return 0;
}

/* Floats of one member's w1, b1, w2, b2. */
static void member_sizes(const struct sl_head *h, size_t sz[4])
{
    size_t N = (size_t)(h->n_hidden ? h->n_hidden : h->n_out);
    sz[0] = N * (size_t)h->n_in;
    sz[1] = N;
    sz[2] = h->n_hidden ? (size_t)h->n_out * (size_t)h->n_hidden : 0;
    sz[3] = h->n_hidden ? (size_t)h->n_out : 0;
}

int sl_head_ensemble(struct sl_head *out, const struct sl_head *members, int k, struct sl_err *err)
{
    const struct sl_head *h0 = &members[0];
    int rc;
    if (k < 1) return sl_err_set(err, SL_EINVAL, "head: an ensemble needs at least one member");
    for (int m = 0; m < k; m++) {
        const struct sl_head *h = &members[m];
        bool same = h->n_members == 1 && h->n_in == h0->n_in && h->n_hidden == h0->n_hidden &&
                    h->n_out == h0->n_out;
        for (int32_t c = 0; same && c < h->n_out; c++) same = !strcmp(h->labels[c], h0->labels[c]);
        if (!same)
            return sl_err_set(err, SL_EINVAL, "head: ensemble member %d differs from member 0 in shape or labels", m);
    }
    if ((rc = head_alloc(out, h0->n_in, h0->n_hidden, (const char *const *)h0->labels, h0->n_out, k, err)))
        return rc;
    size_t sz[4];
    member_sizes(h0, sz);
    for (int m = 0; m < k; m++) {
        memcpy(out->w1 + (size_t)m * sz[0], members[m].w1, sz[0] * sizeof(float));
        memcpy(out->b1 + (size_t)m * sz[1], members[m].b1, sz[1] * sizeof(float));
        if (sz[2]) {
            memcpy(out->w2 + (size_t)m * sz[2], members[m].w2, sz[2] * sizeof(float));
            memcpy(out->b2 + (size_t)m * sz[3], members[m].b2, sz[3] * sizeof(float));
        }
    }
    out->n_ctx = h0->n_ctx;
    out->source_hash = h0->source_hash;
    if (h0->source_name && !(out->source_name = strdup(h0->source_name))) {
        sl_head_free(out);
        return sl_err_set(err, SL_ENOMEM, "head: out of memory");
    }
    return 0;
}

void sl_head_free(struct sl_head *h)
{
    if (h->labels)
        for (int32_t i = 0; i < h->n_out; i++) free(h->labels[i]);
    free(h->labels);
    free(h->w1);
    free(h->b1);
    free(h->w2);
    free(h->b2);
    free(h->source_name);
    memset(h, 0, sizeof *h);
}

/* ------------------------------------------------------------------------ */
/* layers: forward and backward side by side                                 */
/* ------------------------------------------------------------------------ */

/* sum of a[k] * b[k]: eight partial sums (GCC/clang vector extension, so
 * any target vectorizes it and no add waits for the one before) */
typedef float v8f __attribute__((vector_size(32)));

static float dot8(const float *a, const float *b, int K)
{
    v8f acc = {0};
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        v8f x, y;
        memcpy(&x, a + k, sizeof x);
        memcpy(&y, b + k, sizeof y);
        acc += x * y;
    }
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; k < K; k++) s += a[k] * b[k];
    return s;
}

/* y[k] += a * x[k] */
static void axpy8(float *y, float a, const float *x, int K)
{
    const v8f av = {a, a, a, a, a, a, a, a};
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        v8f xv, yv;
        memcpy(&xv, x + k, sizeof xv);
        memcpy(&yv, y + k, sizeof yv);
        yv += av * xv;
        memcpy(y + k, &yv, sizeof yv);
    }
    for (; k < K; k++) y[k] += a * x[k];
}

/* out (B, N) = inp (B, K) . w^T + b,  w (N, K), b (N) */
static void linear_forward(float *out, const float *inp, const float *w, const float *b, int B, int K, int N)
{
    for (int i = 0; i < B; i++)
        for (int n = 0; n < N; n++)
            out[(size_t)i * N + n] = b[n] + dot8(w + (size_t)n * K, inp + (size_t)i * K, K);
}

/* dinp (B, K) += dout . w (dinp may be NULL); dw (N, K) += dout^T . inp; db (N) += sum dout */
static void linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *w, int B, int K, int N)
{
    for (int i = 0; i < B; i++)
        for (int n = 0; n < N; n++) {
            float d = dout[(size_t)i * N + n];
            if (d == 0.0f) continue;
            axpy8(dw + (size_t)n * K, d, inp + (size_t)i * K, K);
            if (dinp) axpy8(dinp + (size_t)i * K, d, w + (size_t)n * K, K);
            db[n] += d;
        }
}

static void relu_forward(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0 ? inp[i] : 0;
}

/* dinp = dout where inp > 0 */
static void relu_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) dinp[i] = inp[i] > 0 ? dout[i] : 0;
}

/* probs (B, C) = softmax(logits); returns the summed cross-entropy against
 * q (B, C) target distributions when given, else the summed -log p[y] */
static double softmax_xent_forward(float *probs, const float *logits, const int32_t *y, const float *q,
                                   int B, int C)
{
    double loss = 0;
    for (int i = 0; i < B; i++) {
        const float *l = logits + (size_t)i * C;
        float *p = probs + (size_t)i * C;
        float mx = l[0];
        for (int c = 1; c < C; c++) mx = l[c] > mx ? l[c] : mx;
        double s = 0;
        for (int c = 0; c < C; c++) s += (p[c] = expf(l[c] - mx));
        for (int c = 0; c < C; c++) p[c] = (float)(p[c] / s);
        if (q) {
            for (int c = 0; c < C; c++)
                if (q[(size_t)i * C + c] > 0)
                    loss -= (double)q[(size_t)i * C + c] * log(SL_MAX((double)p[c], 1e-30));
        } else if (y) {
            loss -= log(SL_MAX((double)p[y[i]], 1e-30));
        }
    }
    return loss;
}

/* dlogits (B, C) = (probs - target) * scale, target = q or onehot(y) (the
 * gradient of the cross-entropy when the target sums to 1) */
static void softmax_xent_backward(float *dlogits, const float *probs, const int32_t *y, const float *q,
                                  int B, int C, float scale)
{
    for (int i = 0; i < B; i++)
        for (int c = 0; c < C; c++) {
            size_t k = (size_t)i * C + c;
            float t = q ? q[k] : (c == y[i] ? 1.0f : 0.0f);
            dlogits[k] = (probs[k] - t) * scale;
        }
}

/* Scratch of one forward/backward over B examples. */
struct head_acts {
    float *h1;     /* (B, N) first layer output (pre-activation for an MLP) */
    float *a1;     /* (B, Hd) relu(h1) (MLP) */
    float *logits; /* (B, C) */
    float *probs;  /* (B, C) */
    float *dh1;    /* (B, N) */
    float *da1;    /* (B, Hd) */
};

/* logits of B examples x (B, E) -> a->probs; returns summed loss when y or q given */
static double head_forward(const struct sl_head *h, struct head_acts *a, const float *x,
                           const int32_t *y, const float *q, int B)
{
    int E = h->n_in, Hd = h->n_hidden, C = h->n_out;
    if (!Hd) {
        linear_forward(a->logits, x, h->w1, h->b1, B, E, C);
    } else {
        linear_forward(a->h1, x, h->w1, h->b1, B, E, Hd);
        relu_forward(a->a1, a->h1, (size_t)B * Hd);
        linear_forward(a->logits, a->a1, h->w2, h->b2, B, Hd, C);
    }
    return softmax_xent_forward(a->probs, a->logits, y, q, B, C);
}

/* gradients of the mean loss into g (same layout as h's weights) */
static void head_backward(const struct sl_head *h, struct sl_head *g, struct head_acts *a,
                          const float *x, const int32_t *y, const float *q, int B)
{
    int E = h->n_in, Hd = h->n_hidden, C = h->n_out;
    if (!Hd) {
        float *dlogits = a->dh1; /* (B, C): N = C for a linear head */
        softmax_xent_backward(dlogits, a->probs, y, q, B, C, 1.0f / (float)B);
        linear_backward(NULL, g->w1, g->b1, dlogits, x, h->w1, B, E, C);
        return;
    }
    float *dl = a->logits; /* logits are no longer needed: hold dlogits there */
    softmax_xent_backward(dl, a->probs, y, q, B, C, 1.0f / (float)B);
    memset(a->da1, 0, (size_t)B * Hd * sizeof(float));
    linear_backward(a->da1, g->w2, g->b2, dl, a->a1, h->w2, B, Hd, C);
    relu_backward(a->dh1, a->da1, a->h1, (size_t)B * Hd);
    linear_backward(NULL, g->w1, g->b1, a->dh1, x, h->w1, B, E, Hd);
}

static void acts_free(struct head_acts *a)
{
    free(a->h1);
    free(a->a1);
    free(a->logits);
    free(a->probs);
    free(a->dh1);
    free(a->da1);
}

static int acts_init(struct head_acts *a, const struct sl_head *h, int B)
{
    size_t N = (size_t)SL_MAX(h->n_hidden, h->n_out), Hd = (size_t)SL_MAX(h->n_hidden, 1);
    a->h1 = malloc((size_t)B * N * sizeof(float));
    a->a1 = malloc((size_t)B * Hd * sizeof(float));
    a->logits = malloc((size_t)B * (size_t)h->n_out * sizeof(float));
    a->probs = malloc((size_t)B * (size_t)h->n_out * sizeof(float));
    a->dh1 = malloc((size_t)B * N * sizeof(float));
    a->da1 = malloc((size_t)B * Hd * sizeof(float));
    if (a->h1 && a->a1 && a->logits && a->probs && a->dh1 && a->da1) return 0;
    acts_free(a);
    return SL_ENOMEM;
}

void sl_head_classify(const struct sl_head *h, const float *x, float *probs)
{
    int E = h->n_in, Hd = h->n_hidden, C = h->n_out, K = SL_MAX(h->n_members, 1);
    float stack[512], *logits = 2 * C <= 512 ? stack : malloc(2 * (size_t)C * sizeof(float));
    float *a1 = Hd ? malloc((size_t)Hd * sizeof(float)) : NULL;
    size_t sz[4];
    if (!logits || (Hd && !a1)) { /* no memory: uniform, never a crash */
        for (int c = 0; c < C; c++) probs[c] = 1.0f / (float)C;
        goto out;
    }
    float *p = K > 1 ? logits + C : probs; /* one member's probabilities */
    member_sizes(h, sz);
    for (int m = 0; m < K; m++) {
        const float *w1 = h->w1 + (size_t)m * sz[0], *b1 = h->b1 + (size_t)m * sz[1];
        if (!Hd) {
            linear_forward(logits, x, w1, b1, 1, E, C);
        } else {
            linear_forward(a1, x, w1, b1, 1, E, Hd);
            relu_forward(a1, a1, (size_t)Hd);
            linear_forward(logits, a1, h->w2 + (size_t)m * sz[2], h->b2 + (size_t)m * sz[3], 1, Hd, C);
        }
        softmax_xent_forward(p, logits, NULL, NULL, 1, C);
        if (K > 1)
            for (int c = 0; c < C; c++) probs[c] = (m ? probs[c] : 0.0f) + p[c] / (float)K;
    }
out:
    if (logits != stack) free(logits);
    free(a1);
}

void sl_head_eval(const struct sl_head *h, const float *x, const int32_t *y, const int32_t *idx,
                  size_t n, double *loss, double *acc)
{
    float *p = malloc((size_t)h->n_out * sizeof(float));
    double l = 0;
    size_t ok = 0;
    if (!p || n == 0) {
        free(p);
        *loss = NAN;
        *acc = NAN;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        int32_t e = idx ? idx[i] : (int32_t)i;
        sl_head_classify(h, x + (size_t)e * h->n_in, p);
        int best = 0;
        for (int c = 1; c < h->n_out; c++)
            if (p[c] > p[best]) best = c;
        ok += best == y[e];
        l -= log(SL_MAX((double)p[y[e]], 1e-30));
    }
    free(p);
    *loss = l / (double)n;
    *acc = (double)ok / (double)n;
}

/* ------------------------------------------------------------------------ */
/* training                                                                  */
/* ------------------------------------------------------------------------ */

struct sl_head_train_params sl_head_train_default_params(void)
{
    return (struct sl_head_train_params){.n_hidden = 0, .epochs = 50, .batch = 32, .lr = 3e-3f,
                                         .weight_decay = 1e-4f, .min_lr = 3e-4f, .warmup = 10,
                                         .patience = 5, .seed = 1};
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Copy all weights of src into dst (same shapes). */
static void head_copy_weights(struct sl_head *dst, const struct sl_head *src)
{
    size_t N = (size_t)(src->n_hidden ? src->n_hidden : src->n_out);
    memcpy(dst->w1, src->w1, N * (size_t)src->n_in * sizeof(float));
    memcpy(dst->b1, src->b1, N * sizeof(float));
    if (src->n_hidden) {
        memcpy(dst->w2, src->w2, (size_t)src->n_out * (size_t)src->n_hidden * sizeof(float));
        memcpy(dst->b2, src->b2, (size_t)src->n_out * sizeof(float));
    }
}

int sl_head_train(struct sl_head *h, const float *x, const int32_t *y, const int32_t *train_idx,
                  size_t n_train, const int32_t *val_idx, size_t n_val,
                  const struct sl_head_train_params *p, struct sl_head_train_result *res,
                  sl_train_progress_fn progress, void *user, struct sl_err *err)
{
    return sl_head_train_soft(h, x, y, NULL, train_idx, n_train, val_idx, n_val, p, res, progress, user, err);
}

double sl_head_loss_grad(const struct sl_head *h, const float *x, const int32_t *y, const float *q, int B,
                         struct sl_head *g)
{
    struct head_acts a = {0};
    if (B <= 0 || h->n_members > 1 || acts_init(&a, h, B)) return NAN;
    int N = h->n_hidden ? h->n_hidden : h->n_out;
    double loss = head_forward(h, &a, x, y, q, B) / B;
    memset(g->w1, 0, (size_t)N * (size_t)h->n_in * sizeof(float));
    memset(g->b1, 0, (size_t)N * sizeof(float));
    if (h->n_hidden) {
        memset(g->w2, 0, (size_t)h->n_out * (size_t)h->n_hidden * sizeof(float));
        memset(g->b2, 0, (size_t)h->n_out * sizeof(float));
    }
    head_backward(h, g, &a, x, y, q, B);
    acts_free(&a);
    return loss;
}

/* Mean cross-entropy of h against the soft targets q of the listed examples. */
static double eval_soft(const struct sl_head *h, const float *x, const float *q, const int32_t *idx, size_t n)
{
    float *p = malloc((size_t)h->n_out * sizeof(float));
    double l = 0;
    if (!p || n == 0) {
        free(p);
        return NAN;
    }
    for (size_t i = 0; i < n; i++) {
        const float *qe = q + (size_t)idx[i] * h->n_out;
        sl_head_classify(h, x + (size_t)idx[i] * h->n_in, p);
        for (int c = 0; c < h->n_out; c++)
            if (qe[c] > 0) l -= (double)qe[c] * log(SL_MAX((double)p[c], 1e-30));
    }
    free(p);
    return l / (double)n;
}

int sl_head_train_soft(struct sl_head *h, const float *x, const int32_t *y, const float *q,
                       const int32_t *train_idx, size_t n_train, const int32_t *val_idx, size_t n_val,
                       const struct sl_head_train_params *p, struct sl_head_train_result *res,
                       sl_train_progress_fn progress, void *user, struct sl_err *err)
{
    struct sl_head g = {0}, best = {0};
    struct head_acts a = {0};
    struct sl_adamw opt;
    float *xb = NULL, *qb = NULL;
    int32_t *yb = NULL, *order = NULL;
    int rc;
    const int E = h->n_in, B = SL_MAX(1, p->batch), C = h->n_out;
    double t0 = now_s();

    sl_adamw_init(&opt, NULL);
    memset(res, 0, sizeof *res);
    if (n_train == 0) return sl_err_set(err, SL_EINVAL, "head: no training examples");
    if (h->n_members > 1)
        return sl_err_set(err, SL_EINVAL, "head: train an ensemble one member at a time (sl_head_ensemble)");
    if ((rc = sl_head_init(&g, h->n_in, h->n_hidden, NULL, h->n_out, err))) goto fail; /* OOM */
    if ((rc = sl_head_init(&best, h->n_in, h->n_hidden, NULL, h->n_out, err))) goto fail; /* OOM */
    xb = malloc((size_t)B * E * sizeof(float));
    yb = malloc((size_t)B * sizeof(int32_t));
    qb = q ? malloc((size_t)B * (size_t)C * sizeof(float)) : NULL;
    order = malloc(n_train * sizeof(int32_t));
    if (!xb || !yb || !order || (q && !qb) || acts_init(&a, h, B)) {
        rc = sl_err_set(err, SL_ENOMEM, "head: out of memory");
        goto fail; /* allocation failure */
    }

    /* init: N(0, 1/sqrt(fan_in)) like PyTorch's default scale, zero biases */
    struct sl_rng rng;
    sl_rng_seed(&rng, p->seed);
    int N = h->n_hidden ? h->n_hidden : h->n_out;
    for (size_t i = 0; i < (size_t)N * E; i++) h->w1[i] = sl_rng_normal(&rng) / sqrtf((float)E);
    memset(h->b1, 0, (size_t)N * sizeof(float));
    if (h->n_hidden) {
        for (size_t i = 0; i < (size_t)h->n_out * h->n_hidden; i++)
            h->w2[i] = sl_rng_normal(&rng) / sqrtf((float)h->n_hidden);
        memset(h->b2, 0, (size_t)h->n_out * sizeof(float));
    }

    struct sl_adamw_params ap = sl_adamw_default_params();
    ap.lr = p->lr;
    ap.weight_decay = p->weight_decay;
    sl_adamw_init(&opt, &ap);
    if ((rc = sl_adamw_add(&opt, h->w1, g.w1, (size_t)N * E, true, err)) ||
        (rc = sl_adamw_add(&opt, h->b1, g.b1, (size_t)N, false, err)))
        goto fail; /* allocation failure */
    if (h->n_hidden && ((rc = sl_adamw_add(&opt, h->w2, g.w2, (size_t)h->n_out * h->n_hidden, true, err)) ||
                        (rc = sl_adamw_add(&opt, h->b2, g.b2, (size_t)h->n_out, false, err))))
        goto fail; /* allocation failure */

    int64_t steps_per_epoch = (int64_t)((n_train + (size_t)B - 1) / (size_t)B);
    struct sl_lr_sched sched = {SL_LR_COSINE, p->lr, p->min_lr, p->warmup, steps_per_epoch * p->epochs};
    struct sl_early_stop es;
    sl_early_stop_init(&es, p->patience, 1e-4);
    for (size_t i = 0; i < n_train; i++) order[i] = train_idx[i];
    int64_t step = 0;
    double val_loss = NAN, val_acc = NAN;

    for (int32_t ep = 0; ep < p->epochs; ep++) {
        sl_rng_shuffle(&rng, order, n_train);
        double ep_loss = 0;
        for (size_t s = 0; s < n_train; s += (size_t)B, step++) {
            int nb = (int)SL_MIN((size_t)B, n_train - s);
            for (int i = 0; i < nb; i++) {
                memcpy(xb + (size_t)i * E, x + (size_t)order[s + (size_t)i] * E, (size_t)E * sizeof(float));
                yb[i] = y[order[s + (size_t)i]];
                if (q) memcpy(qb + (size_t)i * C, q + (size_t)order[s + (size_t)i] * C, (size_t)C * sizeof(float));
            }
            /* forward, zero the gradients, backward, update */
            ep_loss += head_forward(h, &a, xb, yb, qb, nb);
            memset(g.w1, 0, (size_t)N * E * sizeof(float));
            memset(g.b1, 0, (size_t)N * sizeof(float));
            if (h->n_hidden) {
                memset(g.w2, 0, (size_t)h->n_out * h->n_hidden * sizeof(float));
                memset(g.b2, 0, (size_t)h->n_out * sizeof(float));
            }
            head_backward(h, &g, &a, xb, yb, qb, nb);
            float lr = sl_lr_at(&sched, step);
            sl_adamw_step(&opt, lr);
            if (progress) {
                double el = now_s() - t0;
                struct sl_train_progress pr = {"train", step + 1, sched.total, ep_loss / (double)(s + (size_t)nb),
                                               val_loss, val_acc,
                                               el > 0 ? (double)((size_t)step * B + (size_t)nb) / el : 0, lr};
                progress(user, &pr);
            }
        }
        ep_loss /= (double)n_train;
        if (n_val) {
            sl_head_eval(h, x, y, val_idx, n_val, &val_loss, &val_acc);
            if (q) val_loss = eval_soft(h, x, q, val_idx, n_val);
        }
        bool stop;
        double crit = n_val ? val_loss : ep_loss;
        res->epochs_run = ep + 1;
        if (sl_early_stop_update(&es, crit, ep, &stop)) {
            head_copy_weights(&best, h);
            res->best_epoch = ep + 1;
            res->train_loss = ep_loss;
            res->val_loss = val_loss;
            res->val_acc = val_acc;
        }
        if (stop) break;
    }
    head_copy_weights(h, &best);
    res->seconds = now_s() - t0;
    res->n_train = n_train;
    res->n_val = n_val;
    rc = 0;
fail:
    sl_adamw_free(&opt);
    sl_head_free(&g);
    sl_head_free(&best);
    acts_free(&a);
    free(xb);
    free(qb);
    free(yb);
    free(order);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* ensembles                                                                 */
/* ------------------------------------------------------------------------ */

struct ens_job {
    const struct sl_head *shape;
    const float *x, *q;
    const int32_t *y;
    size_t n;
    double val_frac;
    const struct sl_head_train_params *p;
    int k, next;
    struct sl_head *members;
    struct sl_head_train_result *res;
    int *rc;
    struct sl_err *errs;
    int64_t *done, *total; /* per member, for the summed progress */
    sl_train_progress_fn progress;
    void *user;
    pthread_mutex_t mu;
};

struct ens_member {
    struct ens_job *j;
    int m;
};

static void ens_progress(void *user, const struct sl_train_progress *pr)
{
    struct ens_member *em = user;
    struct ens_job *j = em->j;
    pthread_mutex_lock(&j->mu);
    j->done[em->m] = pr->done;
    j->total[em->m] = pr->total;
    struct sl_train_progress sum = *pr;
    sum.done = sum.total = 0;
    for (int m = 0; m < j->k; m++) {
        sum.done += j->done[m];
        /* a member not started yet counts as long as this one */
        sum.total += j->total[m] ? j->total[m] : pr->total;
    }
    j->progress(j->user, &sum);
    pthread_mutex_unlock(&j->mu);
}

static void ens_train_one(struct ens_job *j, int m)
{
    struct sl_head_train_params pm = *j->p;
    struct ens_member em = {j, m};
    int32_t *tr = NULL, *va = NULL;
    size_t ntr, nva;
    pm.seed = j->p->seed + (uint64_t)m;
    j->rc[m] = sl_split(j->n, j->val_frac, pm.seed, &tr, &ntr, &va, &nva, &j->errs[m]);
    if (!j->rc[m])
        j->rc[m] = sl_head_init(&j->members[m], j->shape->n_in, j->shape->n_hidden,
                                (const char *const *)j->shape->labels, j->shape->n_out, &j->errs[m]);
    if (!j->rc[m])
        j->rc[m] = sl_head_train_soft(&j->members[m], j->x, j->y, j->q, tr, ntr, va, nva, &pm, &j->res[m],
                                      j->progress ? ens_progress : NULL, &em, &j->errs[m]);
    free(tr);
    free(va);
}

static void *ens_worker(void *arg)
{
    struct ens_job *j = arg;
    for (;;) {
        pthread_mutex_lock(&j->mu);
        int m = j->next < j->k ? j->next++ : -1;
        pthread_mutex_unlock(&j->mu);
        if (m < 0) return NULL;
        ens_train_one(j, m);
    }
}

int sl_head_train_ensemble(struct sl_head *h, const float *x, const int32_t *y, const float *q, size_t n,
                           double val_frac, int k, int threads, const struct sl_head_train_params *p,
                           struct sl_head_train_result *res, sl_train_progress_fn progress, void *user,
                           struct sl_err *err)
{
    if (k < 1 || k > SL_HEAD_MAX_MEMBERS)
        return sl_err_set(err, SL_EINVAL, "head: %d ensemble members (1 to %d)", k, SL_HEAD_MAX_MEMBERS);
    struct ens_job j = {.shape = h, .x = x, .q = q, .y = y, .n = n, .val_frac = val_frac, .p = p, .k = k,
                        .progress = progress, .user = user};
    struct sl_head_train_result *own = res ? NULL : calloc((size_t)k, sizeof *own);
    j.members = calloc((size_t)k, sizeof *j.members);
    j.rc = calloc((size_t)k, sizeof *j.rc);
    j.errs = calloc((size_t)k, sizeof *j.errs);
    j.done = calloc((size_t)k, sizeof *j.done);
    j.total = calloc((size_t)k, sizeof *j.total);
    j.res = res ? res : own;
    pthread_t th[SL_HEAD_MAX_MEMBERS];
    int nth = 0, rc = 0;
    if (!j.members || !j.rc || !j.errs || !j.done || !j.total || !j.res) {
        rc = sl_err_set(err, SL_ENOMEM, "head: out of memory");
        goto out; /* allocation failure */
    }
    pthread_mutex_init(&j.mu, NULL);
    threads = SL_MAX(1, SL_MIN(threads, k));
    for (; nth < threads - 1; nth++) /* the calling thread is one of them */
        if (pthread_create(&th[nth], NULL, ens_worker, &j)) break;
    ens_worker(&j);
    for (int t = 0; t < nth; t++) pthread_join(th[t], NULL);
    pthread_mutex_destroy(&j.mu);
    for (int m = 0; m < k && !rc; m++)
        if (j.rc[m]) {
            if (err) *err = j.errs[m];
            rc = j.rc[m];
        }
    struct sl_head ens;
    if (!rc && !(rc = sl_head_ensemble(&ens, j.members, k, err))) {
        ens.n_ctx = h->n_ctx;
        ens.source_hash = h->source_hash;
        free(ens.source_name);
        ens.source_name = h->source_name; /* h's metadata moves over */
        h->source_name = NULL;
        sl_head_free(h);
        *h = ens;
    }
out:
    for (int m = 0; j.members && m < k; m++) sl_head_free(&j.members[m]);
    free(j.members);
    free(j.rc);
    free(j.errs);
    free(j.done);
    free(j.total);
    free(own);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* GGUF                                                                      */
/* ------------------------------------------------------------------------ */

int sl_head_save(const struct sl_head *h, const char *path, struct sl_err *err)
{
    struct sl_gguf_writer *w = sl_gguf_writer_init();
    char hash[17];
    int rc;
    if (!w) return sl_err_set(err, SL_ENOMEM, "head: out of memory");
    snprintf(hash, sizeof hash, "%016" PRIx64, h->source_hash);
    int N = h->n_hidden ? h->n_hidden : h->n_out;
    rc = sl_gguf_set_str(w, "general.architecture", SL_HEAD_ARCH) |
         sl_gguf_set_str(w, "general.name", "sluice classification head") |
         sl_gguf_set_u32(w, SL_HEAD_ARCH ".n_in", (uint32_t)h->n_in) |
         sl_gguf_set_u32(w, SL_HEAD_ARCH ".n_hidden", (uint32_t)h->n_hidden) |
         sl_gguf_set_u32(w, SL_HEAD_ARCH ".n_out", (uint32_t)h->n_out) |
         sl_gguf_set_arr_str(w, SL_HEAD_ARCH ".labels", (const char *const *)h->labels, NULL, (uint64_t)h->n_out) |
         sl_gguf_set_str(w, SL_HEAD_ARCH ".pooling", "mean") |
         sl_gguf_set_str(w, SL_HEAD_ARCH ".source.name", h->source_name ? h->source_name : "") |
         sl_gguf_set_str(w, SL_HEAD_ARCH ".source.hash", hash);
    if (h->n_ctx > 0) rc |= sl_gguf_set_u32(w, SL_HEAD_ARCH ".n_ctx", (uint32_t)h->n_ctx);
    const int64_t K = SL_MAX(h->n_members, 1);
    if (K > 1) rc |= sl_gguf_set_u32(w, SL_HEAD_ARCH ".n_members", (uint32_t)K);
    if (rc) {
        rc = sl_err_set(err, SL_ENOMEM, "head: out of memory");
        goto out; /* allocation failure */
    }
    /* one member: [E, N] and [N]; K members: [E, N, K] and [N, K] */
    const int d = K > 1;
    int64_t ne1[3] = {h->n_in, N, K}, nb1[2] = {N, K};
    if ((rc = sl_gguf_add_tensor(w, "head.w1", SL_TYPE_F32, 2 + d, ne1, h->w1, (size_t)(K * N * h->n_in) * 4, err)) ||
        (rc = sl_gguf_add_tensor(w, "head.b1", SL_TYPE_F32, 1 + d, nb1, h->b1, (size_t)(K * N) * 4, err)))
        goto out; /* writer error */
    if (h->n_hidden) {
        int64_t ne2[3] = {h->n_hidden, h->n_out, K}, nb2[2] = {h->n_out, K};
        if ((rc = sl_gguf_add_tensor(w, "head.w2", SL_TYPE_F32, 2 + d, ne2, h->w2,
                                     (size_t)(K * h->n_out * h->n_hidden) * 4, err)) ||
            (rc = sl_gguf_add_tensor(w, "head.b2", SL_TYPE_F32, 1 + d, nb2, h->b2, (size_t)(K * h->n_out) * 4, err)))
            goto out; /* writer error */
    }
    rc = sl_gguf_writer_write(w, path, err);
out:
    sl_gguf_writer_free(w);
    return rc;
}

/* Copy F32 tensor `name` of exactly (rows, cols) per member, k members
 * (rows = 0: a vector per member), into dst (NULL: only check the shape). */
static int load_f32(const struct sl_gguf *g, const char *path, const char *name, int64_t cols, int64_t rows,
                    int64_t k, float *dst, struct sl_err *err)
{
    const struct sl_gguf_tensor *t = sl_gguf_find_tensor(g, name);
    if (!t) return sl_err_set(err, SL_EFORMAT, "%s: head tensor '%s' is missing", path, name);
    /* a vector's members are its second dimension, a matrix's its third */
    int64_t want[4] = {cols, rows ? rows : k, rows ? k : 1, 1};
    if (t->type != SL_TYPE_F32 || t->ne[0] != want[0] || t->ne[1] != want[1] || t->ne[2] != want[2] ||
        t->ne[3] != 1)
        return sl_err_set(err, SL_EFORMAT, "%s: head tensor '%s' is not F32 [%lld, %lld, %lld]", path, name,
                          (long long)want[0], (long long)want[1], (long long)want[2]);
    if (dst) memcpy(dst, t->data, (size_t)(want[0] * want[1] * want[2]) * sizeof(float));
    return 0;
}

int sl_head_load_gguf(struct sl_head *h, const struct sl_gguf *g, const char *path, struct sl_err *err)
{
    struct sl_str *labels = NULL, s;
    char **lab = NULL;
    uint64_t nl = 0;
    uint32_t n_in, n_hidden, n_out;
    int rc;
    memset(h, 0, sizeof *h);
    if (sl_gguf_get_str(g, "general.architecture", &s, NULL) || !sl_str_eq(s, SL_HEAD_ARCH)) {
        rc = sl_err_set(err, SL_EFORMAT, "%s: not a classification head (general.architecture != \"%s\")",
                        path, SL_HEAD_ARCH);
        goto out; /* wrong kind of file */
    }
    if ((rc = sl_gguf_get_u32(g, SL_HEAD_ARCH ".n_in", &n_in, err)) ||
        (rc = sl_gguf_get_u32(g, SL_HEAD_ARCH ".n_hidden", &n_hidden, err)) ||
        (rc = sl_gguf_get_u32(g, SL_HEAD_ARCH ".n_out", &n_out, err)) ||
        (rc = sl_gguf_get_str_arr(g, SL_HEAD_ARCH ".labels", &labels, &nl, err))) {
        if (rc == SL_ENOTFOUND) rc = sl_err_set(err, SL_EFORMAT, "%s: head metadata is incomplete", path);
        goto out; /* bad metadata */
    }
    if (nl != n_out || n_in > (1u << 20) || n_hidden > (1u << 16) || n_out > SL_DATA_MAX_LABELS) {
        rc = sl_err_set(err, SL_EFORMAT, "%s: %llu labels for %u outputs, or sizes out of range", path,
                        (unsigned long long)nl, n_out);
        goto out; /* inconsistent */
    }
    lab = calloc(nl ? nl : 1, sizeof *lab);
    if (!lab) {
        rc = sl_err_set(err, SL_ENOMEM, "head: out of memory");
        goto out; /* allocation failure */
    }
    for (uint64_t i = 0; i < nl; i++)
        if (!(lab[i] = strndup(labels[i].ptr, labels[i].len))) {
            rc = sl_err_set(err, SL_ENOMEM, "head: out of memory");
            goto out; /* allocation failure */
        }
    uint32_t k = 1;
    if (sl_gguf_get_u32(g, SL_HEAD_ARCH ".n_members", &k, NULL) == 0 && (k < 1 || k > SL_HEAD_MAX_MEMBERS)) {
        rc = sl_err_set(err, SL_EFORMAT, "%s: %u ensemble members (1 to %d)", path, k, SL_HEAD_MAX_MEMBERS);
        goto out; /* out of range */
    }
    int N = n_hidden ? (int)n_hidden : (int)n_out;
    /* the shapes first, so that what is allocated is what the file holds */
    if ((rc = load_f32(g, path, "head.w1", n_in, N, k, NULL, err)) ||
        (n_hidden && (rc = load_f32(g, path, "head.w2", n_hidden, n_out, k, NULL, err))))
        goto out; /* bad tensor */
    if ((rc = head_alloc(h, (int32_t)n_in, (int32_t)n_hidden, (const char *const *)lab, (int32_t)n_out,
                         (int32_t)k, err)))
        goto out; /* bad sizes or OOM */
    if ((rc = load_f32(g, path, "head.w1", n_in, N, k, h->w1, err)) ||
        (rc = load_f32(g, path, "head.b1", N, 0, k, h->b1, err)))
        goto out; /* bad tensor */
    if (n_hidden && ((rc = load_f32(g, path, "head.w2", n_hidden, n_out, k, h->w2, err)) ||
                     (rc = load_f32(g, path, "head.b2", n_out, 0, k, h->b2, err))))
        goto out; /* bad tensor */
    if (sl_gguf_get_str(g, SL_HEAD_ARCH ".source.name", &s, NULL) == 0) h->source_name = strndup(s.ptr, s.len);
    uint32_t hn_ctx = 0;
    if (sl_gguf_get_u32(g, SL_HEAD_ARCH ".n_ctx", &hn_ctx, NULL) == 0 && hn_ctx <= (1u << 20))
        h->n_ctx = (int32_t)hn_ctx;
    if (sl_gguf_get_str(g, SL_HEAD_ARCH ".source.hash", &s, NULL) == 0 && s.len == 16) {
        char tmp[17];
        memcpy(tmp, s.ptr, 16);
        tmp[16] = 0;
        h->source_hash = strtoull(tmp, NULL, 16);
    }
out:
    if (rc) sl_head_free(h);
    if (lab)
        for (uint64_t i = 0; i < nl; i++) free(lab[i]);
    free(lab);
    free(labels);
    return rc;
}

int sl_head_load(struct sl_head *h, const char *path, struct sl_err *err)
{
    struct sl_gguf *g = NULL;
    int rc;
    memset(h, 0, sizeof *h);
    if ((rc = sl_gguf_open(&g, path, err))) return rc;
    rc = sl_head_load_gguf(h, g, path, err);
    sl_gguf_free(g);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* embeddings                                                                */
/* ------------------------------------------------------------------------ */

uint64_t sl_head_model_hash(const struct sl_model *m)
{
    return m->file_hash;
}


#define EMB_MAGIC "SLEMB001"

/* sl_embed_text for n texts into x (n, E), several texts per sl_decode: one
 * sequence each, as many as fit in n_batch tokens (and SL_KV_MAX_SEQ), so
 * that a short text does not pay a whole forward pass's fixed costs. Each
 * text's tokens attend only to its own sequence: the same vectors as one
 * text at a time, up to float summation order. */
static int embed_packed(struct sl_ctx *ctx, char *const *texts, size_t n, float *x, int32_t *n_used,
                        sl_train_progress_fn progress, void *user, struct sl_err *err)
{
    const struct sl_model *m = ctx->model;
    const size_t E = (size_t)m->hp.n_embd;
    const int cap = SL_MIN(SL_HEAD_MAX_TOKENS, ctx->params.n_batch);
    struct sl_batch b = {0};
    int32_t *toks = NULL;
    size_t nt = 0, i = 0, done = 0;
    int k = 0, rc = 0, cnt[SL_KV_MAX_SEQ];
    bool pending = false; /* toks holds text i, not yet in the batch */
    double t0 = now_s();
    if (!m->vocab) return sl_err_set(err, SL_EINVAL, "embed: the model has no tokenizer");
    if (!ctx->params.embeddings) return sl_err_set(err, SL_EINVAL, "embed: context without embeddings");
    if ((rc = sl_batch_init(&b, ctx->params.n_batch))) return sl_err_set(err, rc, "embed: out of memory");
    sl_kv_seq_rm(&ctx->kv, -1, 0, -1);
    while (done < n) {
        if (i < n && !pending) {
            free(toks);
            toks = NULL;
            if ((rc = sl_tokenize(m->vocab, texts[i], strlen(texts[i]), true, false, &toks, &nt, err))) break;
            nt = SL_MIN(nt, (size_t)cap);
            pending = true;
        }
        if (pending && (k == 0 || (b.n_tokens + (int)nt <= ctx->params.n_batch && k < SL_KV_MAX_SEQ))) {
            for (int t = 0; t < (int)nt; t++) sl_batch_add(&b, toks[t], t, k, true);
            if (n_used) n_used[i] = (int32_t)nt;
            cnt[k++] = (int)nt;
            i++;
            pending = false;
            if (i < n) continue;
        }
        /* the batch is full, or every text is in: run it and pool each sequence */
        if (b.n_tokens > 0 && (rc = sl_decode(ctx, &b, err))) break;
        for (int s = 0, off = 0; s < k; off += cnt[s++]) {
            float *o = x + (done + (size_t)s) * E;
            for (size_t e = 0; e < E; e++) { /* mean over tokens, summed in double; no token: zeros */
                double sum = 0;
                for (int t = 0; t < cnt[s]; t++) sum += sl_ctx_embd(ctx, off + t)[e];
                o[e] = cnt[s] ? (float)(sum / cnt[s]) : 0.0f;
            }
        }
        sl_kv_seq_rm(&ctx->kv, -1, 0, -1);
        sl_batch_clear(&b);
        done += (size_t)k;
        k = 0;
        if (progress) {
            double el = now_s() - t0;
            struct sl_train_progress pr = {"embed", (int64_t)done, (int64_t)n, NAN, NAN, NAN,
                                           el > 0 ? (double)done / el : 0, 0};
            progress(user, &pr);
        }
    }
    sl_kv_seq_rm(&ctx->kv, -1, 0, -1);
    free(toks);
    sl_batch_free(&b);
    return rc;
}

int sl_embed_text(struct sl_ctx *ctx, const char *text, float *out, int32_t *n_tokens, struct sl_err *err)
{
    char *one = (char *)text; /* embed_packed reads texts only */
    return embed_packed(ctx, &one, 1, out, n_tokens, NULL, NULL, err);
}

int sl_embed_texts(struct sl_ctx *ctx, char *const *texts, size_t n, const char *cache_dir,
                   float **out, sl_train_progress_fn progress, void *user, struct sl_err *err)
{
    const struct sl_model *m = ctx->model;
    const size_t E = (size_t)m->hp.n_embd;
    char path[4096] = "";
    float *x = NULL;
    int rc = 0;
    *out = NULL;
    uint64_t mh = sl_head_model_hash(m), dh = SL_FNV_INIT;
    for (size_t i = 0; i < n; i++) dh = sl_fnv1a(dh, texts[i], strlen(texts[i]) + 1);
    x = malloc(SL_MAX(n, (size_t)1) * E * sizeof(float));
    if (!x) return sl_err_set(err, SL_ENOMEM, "embed: out of memory for %zu x %zu floats", n, E);

    if (cache_dir) {
        snprintf(path, sizeof path, "%s/emb-%016" PRIx64 "-%016" PRIx64 ".bin", cache_dir, mh, dh);
        FILE *f = fopen(path, "rb");
        if (f) {
            char hdr[32];
            uint64_t hn = 0, he = 0;
            bool ok = fread(hdr, 1, 32, f) == 32 && memcmp(hdr, EMB_MAGIC, 8) == 0;
            if (ok) {
                memcpy(&hn, hdr + 8, 8);
                memcpy(&he, hdr + 16, 8);
                ok = hn == n && he == E && fread(x, sizeof(float), n * E, f) == n * E;
            }
            fclose(f);
            if (ok) {
                *out = x;
                return 0;
            }
        }
    }

    if ((rc = embed_packed(ctx, texts, n, x, NULL, progress, user, err))) goto fail; /* decode error */
    if (cache_dir) { /* best effort: a failed cache write is not an error */
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        FILE *f = fopen(tmp, "wb");
        if (f) {
            char hdr[32] = EMB_MAGIC;
            uint64_t hn = n, he = E;
            memcpy(hdr + 8, &hn, 8);
            memcpy(hdr + 16, &he, 8);
            memset(hdr + 24, 0, 8);
            bool ok = fwrite(hdr, 1, 32, f) == 32 && fwrite(x, sizeof(float), n * E, f) == n * E;
            ok = (fclose(f) == 0) && ok;
            if (ok) rename(tmp, path);
            else remove(tmp);
        }
    }
    *out = x;
    return 0;
fail:
    free(x);
    return rc;
}
