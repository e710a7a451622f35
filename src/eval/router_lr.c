/*
 * router_lr.c - L2-regularized logistic regression over hashed n-gram
 * features, trained with full-batch Adam (eval layer). The local-feature
 * `predict` router for replay benchmarks; see router_lr.h.
 */
#include "eval/router_lr.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct sl_lr_params sl_lr_default_params(void)
{
    return (struct sl_lr_params){.dim_bits = 18, .bigrams = true, .l2 = 1e-4, .lr = 0.05, .iters = 300};
}

void sl_lr_rows_free(struct sl_lr_rows *X)
{
    if (!X) return;
    free(X->row_ptr);
    free(X->idx);
    free(X->val);
    memset(X, 0, sizeof *X);
}

void sl_lr_free(struct sl_lr *m)
{
    if (!m) return;
    free(m->w);
    memset(m, 0, sizeof *m);
}

static bool is_word(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

static uint32_t fnv1a(const unsigned char *s, size_t n, uint32_t h)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c >= 'A' && c <= 'Z') c = (unsigned char)(c - 'A' + 'a');
        h = (h ^ c) * 16777619u;
    }
    return h;
}

struct feat {
    uint32_t idx;
    float val;
};

static int cmp_feat(const void *a, const void *b)
{
    uint32_t x = ((const struct feat *)a)->idx, y = ((const struct feat *)b)->idx;
    return (x > y) - (x < y);
}

/* Features of one text into f (cap entries); returns the count after
 * merging duplicates, or -1 when cap is too small. */
static long featurize_one(const char *text, const struct sl_lr_params *p, size_t dim,
                          struct feat *f, size_t cap)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t len = strlen(text), nf = 0, words = 0, digits = 0, qmarks = 0;
    uint32_t prev = 0;
    bool have_prev = false;
    size_t nhash = dim - SL_LR_N_DENSE;
    for (size_t i = 0; i < len;) {
        if (s[i] >= '0' && s[i] <= '9') digits++;
        if (s[i] == '?') qmarks++;
        if (!is_word(s[i])) {
            i++;
            continue;
        }
        size_t st = i;
        while (i < len && is_word(s[i])) {
            if (s[i] >= '0' && s[i] <= '9' && i != st) digits++;
            i++;
        }
        uint32_t h = fnv1a(s + st, i - st, 2166136261u);
        words++;
        if (nf + 2 > cap) return -1;
        f[nf++] = (struct feat){(uint32_t)(SL_LR_N_DENSE + h % nhash), 1};
        if (p->bigrams && have_prev) {
            uint32_t hb = fnv1a((const unsigned char *)"\x1f", 1, prev ^ (h * 0x9e3779b1u));
            f[nf++] = (struct feat){(uint32_t)(SL_LR_N_DENSE + hb % nhash), 1};
        }
        prev = h;
        have_prev = true;
    }
    /* merge duplicates (sorted) and normalize the hashed part */
    size_t m = 0;
    if (nf) {
        qsort(f, nf, sizeof *f, cmp_feat);
        for (size_t i = 1; i < nf; i++) {
            if (f[i].idx == f[m].idx)
                f[m].val += f[i].val;
            else
                f[++m] = f[i];
        }
        m++;
        double ss = 0;
        for (size_t i = 0; i < m; i++) ss += (double)f[i].val * f[i].val;
        float inv = (float)(1.0 / sqrt(ss));
        for (size_t i = 0; i < m; i++) f[i].val *= inv;
    }
    if (m + SL_LR_N_DENSE > cap) return -1;
    memmove(f + SL_LR_N_DENSE, f, m * sizeof *f);
    double q = (double)qmarks / 4.0;
    f[0] = (struct feat){0, (float)(log1p((double)len) / 8.0)};
    f[1] = (struct feat){1, (float)(log1p((double)words) / 6.0)};
    f[2] = (struct feat){2, len ? (float)((double)digits / (double)len) : 0.0f};
    f[3] = (struct feat){3, (float)(q > 1 ? 1 : q)};
    return (long)(m + SL_LR_N_DENSE);
}

int sl_lr_featurize(struct sl_lr_rows *X, const char *const *texts, size_t n,
                    const struct sl_lr_params *p, struct sl_err *err)
{
    struct feat *f = NULL;
    size_t fcap = 0, nnz = 0, cap = 0;
    int rc = SL_ENOMEM;
    memset(X, 0, sizeof *X);
    if (p->dim_bits < 4 || p->dim_bits > SL_LR_MAX_DIM_BITS)
        return sl_err_set(err, SL_EINVAL, "%s: dim_bits %d outside 4..%d", __func__, p->dim_bits,
                          SL_LR_MAX_DIM_BITS);
    X->dim = (size_t)1 << p->dim_bits;
    X->n_rows = n;
    X->row_ptr = malloc((n + 1) * sizeof *X->row_ptr);
    if (!X->row_ptr) goto fail; /* allocation failure */
    X->row_ptr[0] = 0;
    for (size_t r = 0; r < n; r++) {
        size_t need = 2 * strlen(texts[r]) + SL_LR_N_DENSE + 2; /* at most 2 features per byte */
        if (need > fcap) {
            struct feat *nfp = realloc(f, need * sizeof *nfp);
            if (!nfp) goto fail; /* allocation failure */
            f = nfp;
            fcap = need;
        }
        long k = featurize_one(texts[r], p, X->dim, f, fcap);
        if (SL_NEVER(k < 0)) {
            rc = sl_err_set(err, SL_ERANGE, "%s: feature buffer too small", __func__);
            goto out; /* can't happen: need bounds the count */
        }
        if (nnz + (size_t)k > cap) {
            size_t nc = cap ? cap * 2 : 4096;
            while (nc < nnz + (size_t)k) nc *= 2;
            uint32_t *ni = realloc(X->idx, nc * sizeof *ni);
            if (!ni) goto fail; /* allocation failure */
            X->idx = ni;
            float *nv = realloc(X->val, nc * sizeof *nv);
            if (!nv) goto fail; /* allocation failure */
            X->val = nv;
            cap = nc;
        }
        for (long j = 0; j < k; j++) {
            X->idx[nnz] = f[j].idx;
            X->val[nnz] = f[j].val;
            nnz++;
        }
        X->row_ptr[r + 1] = nnz;
    }
    free(f);
    return 0;
fail:
    rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory featurizing %zu texts", __func__, n);
out:
    free(f);
    sl_lr_rows_free(X);
    return rc;
}

static double sigmoid(double z)
{
    if (z >= 0) return 1 / (1 + exp(-z));
    double e = exp(z);
    return e / (1 + e);
}

static double dot_row(const double *w, const struct sl_lr_rows *X, size_t r)
{
    double z = 0;
    for (size_t k = X->row_ptr[r]; k < X->row_ptr[r + 1]; k++) z += w[X->idx[k]] * X->val[k];
    return z;
}

double sl_lr_predict(const struct sl_lr *m, const struct sl_lr_rows *X, size_t r)
{
    return sigmoid(dot_row(m->w, X, r) + m->b);
}

int sl_lr_train(struct sl_lr *m, const struct sl_lr_rows *X, const uint8_t *y, const size_t *use,
                size_t n_use, const struct sl_lr_params *p, struct sl_err *err)
{
    size_t dim = X->dim;
    double *g = NULL, *mom = NULL, *vel = NULL;
    memset(m, 0, sizeof *m);
    if (n_use == 0) return sl_err_set(err, SL_EINVAL, "%s: no training rows", __func__);
    m->dim = dim;
    m->w = calloc(dim, sizeof *m->w);
    g = calloc(dim + 1, sizeof *g);
    mom = calloc(dim + 1, sizeof *mom);
    vel = calloc(dim + 1, sizeof *vel);
    if (!m->w || !g || !mom || !vel) {
        free(g);
        free(mom);
        free(vel);
        sl_lr_free(m);
        return sl_err_set(err, SL_ENOMEM, "%s: out of memory for %zu weights", __func__, dim);
    }
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    double b1t = 1, b2t = 1, inv_n = 1.0 / (double)n_use;
    for (int it = 0; it < p->iters; it++) {
        /* gradient of the objective; loss for the record */
        double loss = 0;
        for (size_t j = 0; j < dim; j++) g[j] = p->l2 * m->w[j];
        g[dim] = 0;
        for (size_t u = 0; u < n_use; u++) {
            size_t r = use[u];
            double z = dot_row(m->w, X, r) + m->b;
            double yy = y[r] ? 1.0 : 0.0;
            /* logloss = log(1 + e^z) - y z, computed stably */
            loss += (z > 0 ? z + log1p(exp(-z)) : log1p(exp(z))) - yy * z;
            double d = (sigmoid(z) - yy) * inv_n;
            for (size_t k = X->row_ptr[r]; k < X->row_ptr[r + 1]; k++) g[X->idx[k]] += d * X->val[k];
            g[dim] += d;
        }
        double reg = 0;
        for (size_t j = 0; j < dim; j++) reg += m->w[j] * m->w[j];
        m->final_loss = loss * inv_n + 0.5 * p->l2 * reg;
        /* Adam step (bias-corrected) */
        b1t *= b1;
        b2t *= b2;
        for (size_t j = 0; j <= dim; j++) {
            mom[j] = b1 * mom[j] + (1 - b1) * g[j];
            vel[j] = b2 * vel[j] + (1 - b2) * g[j] * g[j];
            double step = p->lr * (mom[j] / (1 - b1t)) / (sqrt(vel[j] / (1 - b2t)) + eps);
            if (j < dim)
                m->w[j] -= step;
            else
                m->b -= step;
        }
        if (p->progress) p->progress(p->progress_ctx, it + 1, p->iters);
    }
    free(g);
    free(mom);
    free(vel);
    return 0;
}
