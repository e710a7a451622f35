/*
 * predict.c - the learned router of a `predict` route (router layer): a
 * logistic regression over features computed locally, stored as GGUF.
 * Interface and ownership: predict.h; file format and features:
 * docs/router.md ("The predict file").
 *
 * Features of a text of L bytes, x = (D embedding | 1 length | H hashed):
 *   x[0 .. D)      the small model's embedding, L2-normalised (zeros when
 *                  the caller has none)
 *   x[D]           log1p(L) / 10
 *   x[D+1 .. D+1+H) counts of hashed n-grams, the vector L2-normalised:
 *                  word unigrams and bigrams (a word is a run of ASCII
 *                  letters/digits or bytes >= 0x80, ASCII lower-cased) and
 *                  character 3-grams of the lower-cased text with runs of
 *                  whitespace as one space and a space at both ends; each
 *                  hashed with 32-bit FNV-1a after a one-byte kind prefix
 *                  ('u', 'b' + first word + 0x1f, 'c'), bucket = hash % H.
 * Only the first SL_PREDICT_MAX_TEXT bytes give n-grams (the length feature
 * uses the whole length). score = sigmoid(bias + w . x).
 *
 * Scoring never builds the dense vector: it collects the n-gram buckets,
 * sorts and counts them, and sums w over the few non-zero entries.
 */
#include "router/predict.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/quant.h"

#define SL_PREDICT_MAX_TEXT (256u << 10) /* bytes of a text that give n-grams */
#define SL_PREDICT_MAX_EMBD (1 << 16)    /* embedding width a file may claim */
#define SL_PREDICT_MAX_HASH (1u << 24)   /* hashed buckets a file may claim */
#define SL_PREDICT_TYPE "router"

struct sl_predictor {
    int32_t embd_dim;
    uint32_t hash_dim;
    float *w; /* (embd_dim + 1 + hash_dim) */
    float bias;
};

/* ================================================================ features */

#define FNV_BASIS 2166136261u
#define FNV_PRIME 16777619u

static uint32_t fnv_byte(uint32_t h, unsigned char c)
{
    return (h ^ c) * FNV_PRIME;
}

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

static bool is_word(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Upper bound on the n-gram features of n bytes: words <= (n+1)/2
 * unigrams + as many bigrams, and n + 2 character 3-grams. */
static size_t max_feats(size_t n)
{
    return (n + 1) + (n + 2);
}

/* Appends the bucket of every n-gram of s[0..n) to out; returns the count. */
static size_t collect(uint32_t hash_dim, const unsigned char *s, size_t n, uint32_t *out)
{
    size_t k = 0;
    /* words: unigrams and bigrams */
    uint32_t prev = 0; /* hash state after 'b' + previous word + 0x1f */
    bool have_prev = false;
    for (size_t i = 0; i < n;) {
        if (!is_word(s[i])) {
            i++;
            continue;
        }
        uint32_t hu = fnv_byte(FNV_BASIS, 'u');
        uint32_t hb = prev, hn = fnv_byte(FNV_BASIS, 'b');
        for (; i < n && is_word(s[i]); i++) {
            unsigned char c = lower(s[i]);
            hu = fnv_byte(hu, c);
            hb = fnv_byte(hb, c);
            hn = fnv_byte(hn, c);
        }
        out[k++] = hu % hash_dim;
        if (have_prev) out[k++] = hb % hash_dim;
        prev = fnv_byte(hn, 0x1f);
        have_prev = true;
    }
    /* character 3-grams of " " + text (lower-cased, whitespace runs as one
     * space) + " " */
    unsigned char w[3] = {0, 0, 0};
    size_t nw = 0;
    bool last_space = false;
    for (size_t i = 0; i <= n + 1; i++) {
        unsigned char c;
        if (i == 0 || i == n + 1)
            c = ' ';
        else if (is_space(s[i - 1]))
            c = ' ';
        else
            c = lower(s[i - 1]);
        if (c == ' ' && last_space) continue;
        last_space = c == ' ';
        w[0] = w[1];
        w[1] = w[2];
        w[2] = c;
        if (++nw >= 3) {
            uint32_t h = fnv_byte(FNV_BASIS, 'c');
            h = fnv_byte(fnv_byte(fnv_byte(h, w[0]), w[1]), w[2]);
            out[k++] = h % hash_dim;
        }
    }
    return k;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The sorted buckets of a text, or NULL (no n-grams, or out of memory:
 * *ok false then). */
static uint32_t *buckets_of(uint32_t hash_dim, const char *text, size_t len, size_t *n, bool *ok)
{
    *n = 0;
    *ok = true;
    if (hash_dim == 0 || !text) return NULL;
    size_t m = len > SL_PREDICT_MAX_TEXT ? SL_PREDICT_MAX_TEXT : len;
    uint32_t *b = malloc(max_feats(m) * sizeof *b);
    if (!b) {
        *ok = false;
        return NULL;
    }
    *n = collect(hash_dim, (const unsigned char *)text, m, b);
    qsort(b, *n, sizeof *b, cmp_u32);
    return b;
}

static double length_feature(size_t len)
{
    return log1p((double)len) / 10.0;
}

static double embd_norm(int32_t embd_dim, const float *embd)
{
    double s = 0;
    for (int32_t i = 0; i < embd_dim; i++)
        s += (double)embd[i] * embd[i];
    return sqrt(s);
}

/* Sum over runs of equal buckets of count^2 (the squared norm). */
static double bucket_norm(const uint32_t *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && b[j] == b[i])
            j++;
        s += (double)(j - i) * (double)(j - i);
        i = j;
    }
    return sqrt(s);
}

void sl_predictor_featurize(int32_t embd_dim, uint32_t hash_dim, const char *text, size_t len,
                            const float *embd, float *out)
{
    size_t dim = (size_t)embd_dim + 1 + hash_dim;
    memset(out, 0, dim * sizeof *out);
    if (embd && embd_dim > 0) {
        double nr = embd_norm(embd_dim, embd);
        if (nr > 0)
            for (int32_t i = 0; i < embd_dim; i++)
                out[i] = (float)(embd[i] / nr);
    }
    out[embd_dim] = (float)length_feature(len);
    size_t n;
    bool ok;
    uint32_t *b = buckets_of(hash_dim, text, len, &n, &ok);
    double nr = bucket_norm(b, n);
    float *h = out + embd_dim + 1;
    for (size_t i = 0; i < n; i++)
        h[b[i]] += 1.0f;
    if (nr > 0)
        for (size_t i = 0; i < n;) {
            size_t j = i;
            while (j < n && b[j] == b[i])
                j++;
            h[b[i]] = (float)((double)(j - i) / nr);
            i = j;
        }
    free(b);
}

double sl_predictor_score(const struct sl_predictor *p, const char *text, size_t len,
                          const float *embd)
{
    double z = p->bias;
    if (embd && p->embd_dim > 0) {
        double nr = embd_norm(p->embd_dim, embd);
        if (nr > 0)
            for (int32_t i = 0; i < p->embd_dim; i++)
                z += (double)p->w[i] * (embd[i] / nr);
    }
    z += (double)p->w[p->embd_dim] * length_feature(len);
    size_t n;
    bool ok;
    uint32_t *b = buckets_of(p->hash_dim, text, len, &n, &ok);
    /* out of memory: the score from the embedding and length alone */
    double nr = bucket_norm(b, n);
    const float *wh = p->w + p->embd_dim + 1;
    if (nr > 0)
        for (size_t i = 0; i < n;) {
            size_t j = i;
            while (j < n && b[j] == b[i])
                j++;
            z += (double)wh[b[i]] * ((double)(j - i) / nr);
            i = j;
        }
    free(b);
    return 1.0 / (1.0 + exp(-z));
}

/* ================================================================ life cycle */

int32_t sl_predictor_embd_dim(const struct sl_predictor *p)
{
    return p->embd_dim;
}

void sl_predictor_free(struct sl_predictor *p)
{
    if (!p) return;
    free(p->w);
    free(p);
}

int sl_predictor_new_linear(struct sl_predictor **out, int32_t embd_dim, uint32_t hash_dim,
                            const float *w, float bias, struct sl_err *err)
{
    *out = NULL;
    if (embd_dim < 0 || embd_dim > SL_PREDICT_MAX_EMBD || hash_dim > SL_PREDICT_MAX_HASH)
        return sl_err_set(err, SL_ERANGE,
                          "%s: embd_dim %d (0..%d) or hash_dim %u (0..%u) out of range", __func__,
                          (int)embd_dim, SL_PREDICT_MAX_EMBD, hash_dim, SL_PREDICT_MAX_HASH);
    if (!isfinite(bias)) return sl_err_set(err, SL_EINVAL, "%s: bias is not finite", __func__);
    size_t dim = (size_t)embd_dim + 1 + hash_dim;
    struct sl_predictor *p = calloc(1, sizeof *p);
    if (p) p->w = calloc(dim, sizeof *p->w);
    if (!p || !p->w) {
        sl_predictor_free(p);
        return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    }
    if (w) {
        for (size_t i = 0; i < dim; i++)
            if (!isfinite(w[i])) {
                sl_predictor_free(p);
                return sl_err_set(err, SL_EINVAL, "%s: weight %zu is not finite", __func__, i);
            }
        memcpy(p->w, w, dim * sizeof *p->w);
    }
    p->embd_dim = embd_dim;
    p->hash_dim = hash_dim;
    p->bias = bias;
    *out = p;
    return 0;
}

/* ================================================================ GGUF */

int sl_predictor_save(const struct sl_predictor *p, const char *path, struct sl_err *err)
{
    struct sl_gguf_writer *w = sl_gguf_writer_init();
    if (!w) return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    int rc = sl_gguf_set_str(w, "general.type", SL_PREDICT_TYPE) |
             sl_gguf_set_str(w, "general.name", "sluice predict router") |
             sl_gguf_set_u32(w, "sluice.router.embd_dim", (uint32_t)p->embd_dim) |
             sl_gguf_set_u32(w, "sluice.router.hash_dim", p->hash_dim) |
             sl_gguf_set_f32(w, "sluice.router.bias", p->bias);
    if (rc) {
        rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
        goto out; /* allocation failure */
    }
    size_t dim = (size_t)p->embd_dim + 1 + p->hash_dim;
    int64_t ne[1] = {(int64_t)dim};
    if ((rc = sl_gguf_add_tensor(w, "router.weight", SL_TYPE_F32, 1, ne, p->w, dim * sizeof(float),
                                 err)))
        goto out; /* writer error */
    rc = sl_gguf_writer_write(w, path, err);
out:
    sl_gguf_writer_free(w);
    return rc;
}

int sl_predictor_load(struct sl_predictor **out, const char *path, struct sl_err *err)
{
    struct sl_gguf *g = NULL;
    struct sl_str s;
    uint32_t embd_dim = 0, hash_dim = 0;
    float bias = 0;
    int rc;
    *out = NULL;
    if ((rc = sl_gguf_open(&g, path, err))) return rc;
    if (sl_gguf_get_str(g, "general.type", &s, NULL) || !sl_str_eq(s, SL_PREDICT_TYPE)) {
        rc = sl_err_set(err, SL_EFORMAT,
                        "%s: not a router file (general.type is not \"%s\"; make one with "
                        "`sluice train-router`)",
                        path, SL_PREDICT_TYPE);
        goto out; /* wrong kind of file */
    }
    if ((rc = sl_gguf_get_u32(g, "sluice.router.embd_dim", &embd_dim, err)) ||
        (rc = sl_gguf_get_u32(g, "sluice.router.hash_dim", &hash_dim, err)) ||
        (rc = sl_gguf_get_f32(g, "sluice.router.bias", &bias, err))) {
        if (rc == SL_ENOTFOUND)
            rc = sl_err_set(err, SL_EFORMAT,
                            "%s: router metadata is incomplete (needs sluice.router.embd_dim, "
                            "hash_dim and bias)",
                            path);
        goto out; /* bad metadata */
    }
    if (embd_dim > SL_PREDICT_MAX_EMBD || hash_dim > SL_PREDICT_MAX_HASH) {
        rc = sl_err_set(err, SL_EFORMAT, "%s: embd_dim %u or hash_dim %u out of range (%d, %u)",
                        path, embd_dim, hash_dim, SL_PREDICT_MAX_EMBD, SL_PREDICT_MAX_HASH);
        goto out; /* sizes out of range */
    }
    size_t dim = (size_t)embd_dim + 1 + hash_dim;
    const struct sl_gguf_tensor *t = sl_gguf_find_tensor(g, "router.weight");
    if (!t) {
        rc = sl_err_set(err, SL_EFORMAT, "%s: tensor 'router.weight' is missing", path);
        goto out; /* no weights */
    }
    if (t->type != SL_TYPE_F32 || t->n_dims != 1 || t->ne[0] != (int64_t)dim ||
        t->size != dim * sizeof(float)) {
        rc = sl_err_set(err, SL_EFORMAT,
                        "%s: tensor 'router.weight' must be F32 [%zu] (embd_dim %u + 1 + "
                        "hash_dim %u), got %s%lld",
                        path, dim, embd_dim, hash_dim,
                        t->type != SL_TYPE_F32 ? "another type, " : "", (long long)t->ne[0]);
        goto out; /* wrong shape */
    }
    float *w = malloc(dim * sizeof *w);
    if (!w) {
        rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
        goto out; /* allocation failure */
    }
    memcpy(w, t->data, dim * sizeof *w); /* the mapping may not be aligned for float */
    rc = sl_predictor_new_linear(out, (int32_t)embd_dim, hash_dim, w, bias, err);
    free(w);
    if (rc && err) {
        char why[SL_ERR_MSG_LEN];
        snprintf(why, sizeof why, "%s", err->msg);
        sl_err_set(err, rc, "%s: %s", path, why);
    }
out:
    sl_gguf_free(g);
    return rc;
}
