/*
 * data.c - RNG, labelled examples (CSV/JSONL), splits (train layer).
 * See data.h.
 */
#include "data.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/csv.h"

/* ------------------------------------------------------------------------ */
/* RNG                                                                       */
/* ------------------------------------------------------------------------ */

void sl_rng_seed(struct sl_rng *r, uint64_t seed)
{
    r->s = seed;
}

uint64_t sl_rng_u64(struct sl_rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float sl_rng_uniform(struct sl_rng *r)
{
    return (float)(sl_rng_u64(r) >> 40) / 16777216.0f;
}

float sl_rng_normal(struct sl_rng *r)
{
    double u1 = ((double)(sl_rng_u64(r) >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (double)(sl_rng_u64(r) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint32_t sl_rng_below(struct sl_rng *r, uint32_t n)
{
    return (uint32_t)(((sl_rng_u64(r) >> 32) * (uint64_t)n) >> 32);
}

void sl_rng_shuffle(struct sl_rng *r, int32_t *idx, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = sl_rng_below(r, (uint32_t)i);
        int32_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}

/* ------------------------------------------------------------------------ */
/* files                                                                     */
/* ------------------------------------------------------------------------ */

int sl_read_file(const char *path, char **out, size_t *len, struct sl_err *err)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    *out = NULL;
    if (!f) return sl_err_set(err, SL_EIO, "%s: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) goto io; /* not seekable */
    long sz = ftell(f);
    if (sz < 0 || (size_t)sz >= SL_DATA_MAX_FILE) {
        fclose(f);
        return sl_err_set(err, SL_ERANGE, "%s: file too large (limit %zu bytes)", path, SL_DATA_MAX_FILE);
    }
    rewind(f);
    buf = malloc((size_t)sz + 1);
    if (!buf) {
        fclose(f);
        return sl_err_set(err, SL_ENOMEM, "%s: out of memory for %ld bytes", path, sz);
    }
    if (fread(buf, 1, (size_t)sz, f) != (size_t)sz) goto io; /* short read */
    buf[sz] = 0;
    fclose(f);
    *out = buf;
    if (len) *len = (size_t)sz;
    return 0;
io:
    free(buf);
    fclose(f);
    return sl_err_set(err, SL_EIO, "%s: read failed", path);
}

/* ------------------------------------------------------------------------ */
/* labelled examples                                                         */
/* ------------------------------------------------------------------------ */

/* Raw (text, label string) pairs while reading, labels resolved after. */
struct pairs {
    size_t n, cap;
    char **text, **label;
};

static int pairs_add(struct pairs *p, char *text, char *label)
{
    if (p->n == p->cap) {
        size_t nc = p->cap ? 2 * p->cap : 256;
        char **t = realloc(p->text, nc * sizeof *t);
        if (!t) return SL_ENOMEM;
        p->text = t;
        char **l = realloc(p->label, nc * sizeof *l);
        if (!l) return SL_ENOMEM;
        p->label = l;
        p->cap = nc;
    }
    p->text[p->n] = text;
    p->label[p->n] = label;
    p->n++;
    return 0;
}

static const char *const text_names[] = {"text", "prompt", "input", NULL};
static const char *const label_names[] = {"label", "category", "intent", "completion", "output", NULL};

static char *field_dup(const struct sl_csv_field *f)
{
    size_t n = sl_csv_field_len(f);
    char *s = malloc(n + 1);
    if (s) sl_csv_field_copy(f, s, n + 1);
    return s;
}

static int read_csv(struct pairs *P, const char *path, const char *buf, size_t len, const char *tf,
                    const char *lf, struct sl_err *err)
{
    struct sl_csv_field f[64];
    size_t nf, pos = 0;
    int rc = sl_csv_next(buf, len, &pos, f, 64, &nf, err);
    if (rc <= 0) return rc ? rc : sl_err_set(err, SL_EFORMAT, "%s: empty CSV file", path);
    int ti = -1, li = -1;
    for (size_t i = 0; i < nf; i++) {
        for (int k = 0; ti < 0 && (tf ? k < 1 : text_names[k] != NULL); k++)
            if (sl_csv_field_eq(&f[i], tf ? tf : text_names[k])) ti = (int)i;
        for (int k = 0; li < 0 && (lf ? k < 1 : label_names[k] != NULL); k++)
            if (sl_csv_field_eq(&f[i], lf ? lf : label_names[k])) li = (int)i;
    }
    if (ti < 0 || li < 0)
        return sl_err_set(err, SL_EFORMAT, "%s: header has no %s column '%s'", path, ti < 0 ? "text" : "label",
                          ti < 0 ? (tf ? tf : "text") : (lf ? lf : "label"));
    for (size_t line = 2;; line++) {
        rc = sl_csv_next(buf, len, &pos, f, 64, &nf, err);
        if (rc == 0) break;
        if (rc < 0) return rc;
        if ((size_t)SL_MAX(ti, li) >= nf)
            return sl_err_set(err, SL_EFORMAT, "%s: record %zu has %zu fields", path, line, nf);
        if (P->n >= SL_DATA_MAX_EXAMPLES)
            return sl_err_set(err, SL_ERANGE, "%s: more than %d examples", path, SL_DATA_MAX_EXAMPLES);
        char *t = field_dup(&f[ti]), *l = field_dup(&f[li]);
        if (!t || !l || pairs_add(P, t, l)) {
            free(t);
            free(l);
            return sl_err_set(err, SL_ENOMEM, "%s: out of memory", path);
        }
    }
    return 0;
}

static const char *json_field(json_t *o, const char *want, const char *const *names)
{
    if (want) return json_string_value(json_object_get(o, want));
    for (int k = 0; names[k]; k++) {
        json_t *v = json_object_get(o, names[k]);
        if (json_is_string(v)) return json_string_value(v);
    }
    return NULL;
}

static int read_jsonl(struct pairs *P, const char *path, char *buf, size_t len, const char *tf,
                      const char *lf, struct sl_err *err)
{
    size_t line = 0;
    for (char *s = buf; s < buf + len;) {
        char *e = memchr(s, '\n', (size_t)(buf + len - s));
        size_t n = e ? (size_t)(e - s) : (size_t)(buf + len - s);
        line++;
        size_t k = 0;
        while (k < n && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r')) k++;
        if (k < n) {
            json_error_t je;
            json_t *o = json_loadb(s, n, 0, &je);
            if (!o || !json_is_object(o)) {
                json_decref(o);
                return sl_err_set(err, SL_EFORMAT, "%s:%zu: not a JSON object (%s)", path, line,
                                  o ? "other value" : je.text);
            }
            const char *t = json_field(o, tf, text_names), *l = json_field(o, lf, label_names);
            if (!t || !l) {
                json_decref(o);
                return sl_err_set(err, SL_EFORMAT, "%s:%zu: no string field '%s'", path, line,
                                  !t ? (tf ? tf : "text") : (lf ? lf : "label"));
            }
            if (P->n >= SL_DATA_MAX_EXAMPLES) {
                json_decref(o);
                return sl_err_set(err, SL_ERANGE, "%s: more than %d examples", path, SL_DATA_MAX_EXAMPLES);
            }
            char *td = strdup(t), *ld = strdup(l);
            json_decref(o);
            if (!td || !ld || pairs_add(P, td, ld)) {
                free(td);
                free(ld);
                return sl_err_set(err, SL_ENOMEM, "%s: out of memory", path);
            }
        }
        s += n + 1;
    }
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int find_label(char **labels, size_t n, const char *s)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(labels[mid], s);
        if (c == 0) return (int)mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

static bool is_csv(const char *path, const char *buf)
{
    size_t pl = strlen(path);
    if (pl >= 4 && !strcmp(path + pl - 4, ".csv")) return true;
    if (pl >= 6 && !strcmp(path + pl - 6, ".jsonl")) return false;
    const char *nl = strchr(buf, '\n');
    size_t n = nl ? (size_t)(nl - buf) : strlen(buf);
    return memchr(buf, '{', n) == NULL && memchr(buf, ',', n) != NULL;
}

int sl_examples_read(struct sl_examples *out, const char *path, const char *text_field,
                     const char *label_field, const char *const *labels, size_t n_labels,
                     struct sl_err *err)
{
    struct pairs P = {0};
    char *buf = NULL;
    size_t len;
    int rc;
    memset(out, 0, sizeof *out);
    if ((rc = sl_read_file(path, &buf, &len, err))) return rc;
    rc = is_csv(path, buf) ? read_csv(&P, path, buf, len, text_field, label_field, err)
                           : read_jsonl(&P, path, buf, len, text_field, label_field, err);
    if (rc) goto fail; /* parse error, message set */
    if (P.n == 0) {
        rc = sl_err_set(err, SL_EFORMAT, "%s: no examples", path);
        goto fail; /* empty file */
    }

    /* the label set: given, or the sorted distinct labels seen */
    size_t nl = 0;
    char **L = calloc(labels ? (n_labels ? n_labels : 1) : P.n, sizeof *L);
    if (!L) goto oom; /* allocation failure */
    out->labels = L;
    if (labels) {
        for (size_t i = 0; i < n_labels; i++, out->n_labels = nl)
            if (!(L[nl++] = strdup(labels[i]))) goto oom; /* allocation failure */
    } else {
        for (size_t i = 0; i < P.n; i++) L[nl++] = P.label[i];
    }
    qsort(L, nl, sizeof *L, cmp_str);
    if (!labels) { /* dedupe, then own copies */
        size_t w = 0;
        for (size_t i = 0; i < nl; i++)
            if (w == 0 || strcmp(L[w - 1], L[i]) != 0) L[w++] = L[i];
        nl = w;
        if (nl > SL_DATA_MAX_LABELS) {
            out->n_labels = 0;
            rc = sl_err_set(err, SL_ERANGE, "%s: more than %d labels", path, SL_DATA_MAX_LABELS);
            goto fail; /* too many labels */
        }
        for (size_t i = 0; i < nl; i++) {
            char *d = strdup(L[i]);
            if (!d) {
                for (size_t k = 0; k < i; k++) free(L[k]);
                out->n_labels = 0;
                goto oom; /* allocation failure */
            }
            L[i] = d;
        }
    }
    out->n_labels = nl;

    out->label = malloc(P.n * sizeof *out->label);
    if (!out->label) goto oom; /* allocation failure */
    for (size_t i = 0; i < P.n; i++) {
        int li = find_label(L, nl, P.label[i]);
        if (li < 0) {
            rc = sl_err_set(err, SL_EFORMAT, "%s: example %zu has label '%.64s', not one of the %zu labels",
                            path, i + 1, P.label[i], nl);
            goto fail; /* unknown label */
        }
        out->label[i] = li;
    }
    out->text = P.text;
    out->n = P.n;
    P.text = NULL;
    for (size_t i = 0; i < P.n; i++) free(P.label[i]);
    free(P.label);
    free(buf);
    return 0;
oom:
    rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", path);
fail:
    for (size_t i = 0; i < P.n; i++) {
        if (P.text) free(P.text[i]);
        free(P.label[i]);
    }
    free(P.text);
    free(P.label);
    free(buf);
    sl_examples_free(out);
    return rc;
}

void sl_examples_free(struct sl_examples *e)
{
    if (e->text)
        for (size_t i = 0; i < e->n; i++) free(e->text[i]);
    if (e->labels)
        for (size_t i = 0; i < e->n_labels; i++) free(e->labels[i]);
    free(e->text);
    free(e->label);
    free(e->labels);
    memset(e, 0, sizeof *e);
}

int sl_split(size_t n, double val_frac, uint64_t seed, int32_t **train, size_t *n_train,
             int32_t **val, size_t *n_val, struct sl_err *err)
{
    *train = *val = NULL;
    if (n == 0 || n > INT32_MAX || !(val_frac >= 0 && val_frac < 1))
        return sl_err_set(err, SL_EINVAL, "split: %zu examples, validation fraction %g", n, val_frac);
    size_t nv = (size_t)llround((double)n * val_frac);
    if (val_frac > 0 && nv == 0 && n >= 2) nv = 1;
    if (nv >= n) nv = n - 1;
    int32_t *idx = malloc(n * sizeof *idx);
    int32_t *v = malloc((nv ? nv : 1) * sizeof *v);
    if (!idx || !v) {
        free(idx);
        free(v);
        return sl_err_set(err, SL_ENOMEM, "split: out of memory");
    }
    for (size_t i = 0; i < n; i++) idx[i] = (int32_t)i;
    struct sl_rng r;
    sl_rng_seed(&r, seed ^ 0x5EED5EEDull);
    sl_rng_shuffle(&r, idx, n);
    memcpy(v, idx, nv * sizeof *v);
    memmove(idx, idx + nv, (n - nv) * sizeof *idx);
    *val = v;
    *n_val = nv;
    *train = idx;
    *n_train = n - nv;
    return 0;
}
