/*
 * replay.c - recorded-answer data sets and router quality curves:
 * PGR, APGR, CPT and the cost saving at 95% of the large tier's quality
 * (eval layer). Definitions in replay.h and docs/eval.md.
 */
#include "eval/replay.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "eval/csv.h"

/* ==== deterministic helpers ============================================== */

uint64_t sl_eval_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double sl_eval_randu(uint64_t *state)
{
    return (double)(sl_eval_rand(state) >> 11) * (1.0 / 9007199254740992.0);
}

void sl_eval_permutation(size_t *perm, size_t n, uint64_t seed)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) perm[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(sl_eval_rand(&s) % i);
        size_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}

/* ==== loading ============================================================= */

void sl_replay_free(struct sl_replay_data *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->n; i++) free(d->prompt[i]);
    for (size_t i = 0; i < d->n_sources; i++) free(d->sources[i]);
    free(d->prompt);
    free(d->small_ok);
    free(d->large_ok);
    free(d->source);
    free(d->sources);
    memset(d, 0, sizeof *d);
}

/* 1/0 for a correctness cell, -1 if it is not one. */
static int parse_bool(const struct sl_csv_field *f)
{
    static const char *yes[] = {"True", "true", "TRUE", "1", "1.0"};
    static const char *no[] = {"False", "false", "FALSE", "0", "0.0"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        if (sl_csv_field_eq(f, yes[i])) return 1;
        if (sl_csv_field_eq(f, no[i])) return 0;
    }
    return -1;
}

static int grow(struct sl_replay_data *d)
{
    size_t nc = d->cap ? d->cap * 2 : 1024;
    char **p = realloc(d->prompt, nc * sizeof *p);
    if (!p) return SL_ENOMEM;
    d->prompt = p;
    uint8_t *s = realloc(d->small_ok, nc);
    if (!s) return SL_ENOMEM;
    d->small_ok = s;
    uint8_t *l = realloc(d->large_ok, nc);
    if (!l) return SL_ENOMEM;
    d->large_ok = l;
    uint32_t *src = realloc(d->source, nc * sizeof *src);
    if (!src) return SL_ENOMEM;
    d->source = src;
    d->cap = nc;
    return 0;
}

/* Prefixes the CSV reader's message (which names only the line) with the file. */
static int csv_error(int rc, const char *name, struct sl_err *err)
{
    if (err) {
        char inner[SL_ERR_MSG_LEN];
        snprintf(inner, sizeof inner, "%s", err->msg);
        sl_err_set(err, rc, "%.200s: %.300s", name, inner);
    }
    return rc;
}

int sl_replay_load_buf(struct sl_replay_data *d, const char *buf, size_t len, const char *name,
                       struct sl_err *err)
{
    struct sl_csv_field f[16];
    size_t pos = 0, nf = 0, row = 0;
    char tmp[128];
    int rc = sl_csv_next(buf, len, &pos, f, 16, &nf, err);
    if (rc < 0) return csv_error(rc, name, err);
    if (rc == 0 || nf < 3)
        return sl_err_set(err, SL_EFORMAT, "%s: %s: want a header 'prompt,<small>,<large>'",
                          __func__, name);
    if (!sl_csv_field_eq(&f[0], "prompt"))
        return sl_err_set(err, SL_EFORMAT, "%s: %s: first column is not 'prompt'", __func__, name);
    for (int t = 0; t < 2; t++) {
        if (sl_csv_field_copy(&f[1 + t], tmp, sizeof tmp) < 0)
            return sl_err_set(err, SL_EFORMAT, "%s: %s: tier name longer than %zu bytes", __func__,
                              name, sizeof tmp - 1);
        char *dst = t ? d->large_name : d->small_name;
        if (d->n_sources && strcmp(dst, tmp))
            return sl_err_set(err, SL_EFORMAT, "%s: %s: column %d is '%s', earlier files had '%s'",
                              __func__, name, 2 + t, tmp, dst);
        snprintf(dst, 128, "%s", tmp);
    }
    if (d->n_sources >= SL_REPLAY_MAX_FILES)
        return sl_err_set(err, SL_ERANGE, "%s: more than %d files", __func__, SL_REPLAY_MAX_FILES);
    char **ns = realloc(d->sources, (d->n_sources + 1) * sizeof *ns);
    if (!ns) return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    d->sources = ns;
    if (!(d->sources[d->n_sources] = strdup(name)))
        return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    uint32_t src = (uint32_t)d->n_sources++;
    while ((rc = sl_csv_next(buf, len, &pos, f, 16, &nf, err)) == 1) {
        row++;
        if (nf < 3)
            return sl_err_set(err, SL_EFORMAT, "%s: %s: record %zu has %zu fields (want >= 3)",
                              __func__, name, row, nf);
        int s = parse_bool(&f[1]), l = parse_bool(&f[2]);
        if (s < 0 || l < 0)
            return sl_err_set(err, SL_EFORMAT, "%s: %s: record %zu: correctness is not True/False",
                              __func__, name, row);
        if (d->n >= SL_REPLAY_MAX_ROWS)
            return sl_err_set(err, SL_ERANGE, "%s: more than %zu examples", __func__,
                              SL_REPLAY_MAX_ROWS);
        if (d->n == d->cap && grow(d))
            return sl_err_set(err, SL_ENOMEM, "%s: out of memory at %zu examples", __func__, d->n);
        size_t plen = sl_csv_field_len(&f[0]);
        char *p = malloc(plen + 1);
        if (!p) return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
        sl_csv_field_copy(&f[0], p, plen + 1);
        d->prompt[d->n] = p;
        d->small_ok[d->n] = (uint8_t)s;
        d->large_ok[d->n] = (uint8_t)l;
        d->source[d->n] = src;
        d->n++;
    }
    return rc < 0 ? csv_error(rc, name, err) : 0;
}

static int load_file(struct sl_replay_data *d, const char *path, const char *name,
                     struct sl_err *err)
{
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    int rc = 0;
    if (!fp) return sl_err_set(err, SL_EIO, "%s: cannot open '%s'", __func__, path);
    if (fseek(fp, 0, SEEK_END) != 0) {
        rc = sl_err_set(err, SL_EIO, "%s: cannot seek '%s'", __func__, path);
        goto out; /* not a regular file */
    }
    long sz = ftell(fp);
    if (sz < 0 || (size_t)sz > SL_REPLAY_MAX_FILE_BYTES) {
        rc = sl_err_set(err, SL_ERANGE, "%s: '%s' is larger than %zu bytes", __func__, path,
                        SL_REPLAY_MAX_FILE_BYTES);
        goto out; /* over the limit */
    }
    rewind(fp);
    buf = malloc((size_t)sz + 1);
    if (!buf) {
        rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory for '%s'", __func__, path);
        goto out; /* allocation failure */
    }
    if (fread(buf, 1, (size_t)sz, fp) != (size_t)sz) {
        rc = sl_err_set(err, SL_EIO, "%s: short read of '%s'", __func__, path);
        goto out; /* I/O error */
    }
    rc = sl_replay_load_buf(d, buf, (size_t)sz, name, err);
out:
    free(buf);
    fclose(fp);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int sl_replay_load(struct sl_replay_data *d, const char *path, struct sl_err *err)
{
    struct stat st;
    int rc = 0;
    memset(d, 0, sizeof *d);
    if (stat(path, &st) != 0) return sl_err_set(err, SL_EIO, "%s: no such file or directory '%s'", __func__, path);
    if (!S_ISDIR(st.st_mode)) {
        const char *base = strrchr(path, '/');
        rc = load_file(d, path, base ? base + 1 : path, err);
        if (rc) sl_replay_free(d);
        return rc;
    }
    DIR *dir = opendir(path);
    char **names = NULL;
    size_t n_names = 0;
    if (!dir) return sl_err_set(err, SL_EIO, "%s: cannot read directory '%s'", __func__, path);
    struct dirent *e;
    while ((e = readdir(dir))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".csv")) continue;
        if (n_names >= SL_REPLAY_MAX_FILES) {
            rc = sl_err_set(err, SL_ERANGE, "%s: more than %d CSV files in '%s'", __func__,
                            SL_REPLAY_MAX_FILES, path);
            goto out; /* too many files */
        }
        char **nn = realloc(names, (n_names + 1) * sizeof *nn);
        if (!nn || !(nn[n_names] = strdup(e->d_name))) {
            if (nn) names = nn;
            rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
            goto out; /* allocation failure */
        }
        names = nn;
        n_names++;
    }
    if (!n_names) {
        rc = sl_err_set(err, SL_ENOTFOUND, "%s: no .csv files in '%s'", __func__, path);
        goto out; /* empty directory */
    }
    qsort(names, n_names, sizeof *names, cmp_str);
    for (size_t i = 0; i < n_names && !rc; i++) {
        char full[4096];
        if ((size_t)snprintf(full, sizeof full, "%s/%s", path, names[i]) >= sizeof full) {
            rc = sl_err_set(err, SL_ERANGE, "%s: path too long in '%s'", __func__, path);
            break;
        }
        rc = load_file(d, full, names[i], err);
    }
out:
    closedir(dir);
    for (size_t i = 0; i < n_names; i++) free(names[i]);
    free(names);
    if (rc) sl_replay_free(d);
    return rc;
}

/* ==== router curves ======================================================= */

void sl_router_curve_free(struct sl_router_curve *c)
{
    if (!c) return;
    free(c->pts);
    c->pts = NULL;
    c->n_pts = 0;
}

double sl_router_curve_calls_for(const struct sl_router_curve *c, double q)
{
    const double tol = 1e-12;
    for (size_t i = 0; i < c->n_pts; i++) {
        if (c->pts[i].quality >= q - tol) {
            if (i == 0) return c->pts[0].calls;
            const struct sl_router_point *a = &c->pts[i - 1], *b = &c->pts[i];
            double dq = b->quality - a->quality;
            if (dq <= 0) return b->calls;
            double t = (q - a->quality) / dq;
            if (t < 0) t = 0;
            return a->calls + t * (b->calls - a->calls);
        }
    }
    return NAN;
}

/* apgr, cpt and saving from pts; q_small and q_large set. */
static void finish_curve(struct sl_router_curve *c)
{
    double gap = c->q_large - c->q_small, area = 0;
    for (size_t i = 0; i < c->n_pts; i++) {
        c->pts[i].pgr = gap > 0 ? (c->pts[i].quality - c->q_small) / gap : NAN;
        if (i) area += (c->pts[i].calls - c->pts[i - 1].calls) * 0.5 * (c->pts[i].pgr + c->pts[i - 1].pgr);
    }
    c->apgr = gap > 0 ? area : NAN;
    c->cpt50 = gap > 0 ? sl_router_curve_calls_for(c, c->q_small + 0.5 * gap) : NAN;
    c->cpt80 = gap > 0 ? sl_router_curve_calls_for(c, c->q_small + 0.8 * gap) : NAN;
    c->calls95 = sl_router_curve_calls_for(c, 0.95 * c->q_large);
    c->saving95 = 1 - c->calls95;
}

struct scored {
    double s;
    size_t i;
};

static int cmp_score_desc(const void *a, const void *b)
{
    const struct scored *x = a, *y = b;
    if (x->s != y->s) return x->s < y->s ? 1 : -1;
    return (x->i > y->i) - (x->i < y->i);
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* numpy's default (linear) quantile of an ascending array. */
static double quantile_sorted(const double *v, size_t n, double q)
{
    double h = (double)(n - 1) * q;
    size_t lo = (size_t)floor(h);
    if (lo + 1 >= n) return v[n - 1];
    return v[lo] + (h - (double)lo) * (v[lo + 1] - v[lo]);
}

/* RouteLLM's sampling: thresholds at the 0, 10, ..., 100% score quantiles,
 * large when score >= threshold (> for the last), trapezoids over the calls
 * actually made, normalized by the same span. */
static double apgr_q10(const double *scores, const uint8_t *small_ok, const uint8_t *large_ok,
                       size_t n, double q_small, double q_large, double *sorted)
{
    double calls[11], qual[11];
    for (size_t i = 0; i < n; i++) sorted[i] = scores[i];
    qsort(sorted, n, sizeof *sorted, cmp_dbl);
    for (int k = 0; k <= 10; k++) {
        double th = quantile_sorted(sorted, n, k / 10.0);
        size_t m = 0, ok = 0;
        for (size_t i = 0; i < n; i++) {
            bool big = k < 10 ? scores[i] >= th : scores[i] > th;
            m += big;
            ok += big ? large_ok[i] : small_ok[i];
        }
        calls[k] = (double)m / (double)n;
        qual[k] = (double)ok / (double)n;
    }
    /* ascending calls: thresholds ascend, so calls descend; reverse */
    double auc = 0, span = calls[0] - calls[10];
    for (int k = 10; k > 0; k--) auc += (calls[k - 1] - calls[k]) * 0.5 * (qual[k - 1] + qual[k]);
    double gap = q_large - q_small;
    if (!(gap > 0) || span <= 0) return NAN;
    return (auc - q_small * span) / (gap * span);
}

int sl_router_curve_compute(struct sl_router_curve *c, const char *name, const double *scores,
                            const uint8_t *small_ok, const uint8_t *large_ok, size_t n,
                            struct sl_err *err)
{
    struct scored *it = NULL;
    double *tmp = NULL;
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    if (n == 0) return sl_err_set(err, SL_EINVAL, "%s: no examples", __func__);
    it = malloc(n * sizeof *it);
    tmp = malloc(n * sizeof *tmp);
    c->pts = malloc((n + 1) * sizeof *c->pts);
    if (!it || !tmp || !c->pts) {
        free(it);
        free(tmp);
        sl_router_curve_free(c);
        return sl_err_set(err, SL_ENOMEM, "%s: out of memory for %zu examples", __func__, n);
    }
    int64_t ok = 0, ok_l = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(scores[i])) {
            free(it);
            free(tmp);
            sl_router_curve_free(c);
            return sl_err_set(err, SL_EINVAL, "%s: score %zu is NaN", __func__, i);
        }
        it[i].s = scores[i];
        it[i].i = i;
        ok += small_ok[i] != 0;
        ok_l += large_ok[i] != 0;
    }
    double dn = (double)n;
    c->n = n;
    c->q_small = (double)ok / dn;
    c->q_large = (double)ok_l / dn;
    qsort(it, n, sizeof *it, cmp_score_desc);
    c->pts[c->n_pts++] = (struct sl_router_point){0, c->q_small, 0};
    for (size_t j = 0; j < n;) {
        double s = it[j].s;
        while (j < n && it[j].s == s) {
            size_t i = it[j].i;
            ok += (int64_t)(large_ok[i] != 0) - (int64_t)(small_ok[i] != 0);
            j++;
        }
        c->pts[c->n_pts++] = (struct sl_router_point){(double)j / dn, (double)ok / dn, 0};
    }
    finish_curve(c);
    c->apgr_q10 = apgr_q10(scores, small_ok, large_ok, n, c->q_small, c->q_large, tmp);
    free(it);
    free(tmp);
    return 0;
}

int sl_router_curve_random(struct sl_router_curve *c, const uint8_t *small_ok,
                           const uint8_t *large_ok, size_t n, struct sl_err *err)
{
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "random");
    if (n == 0) return sl_err_set(err, SL_EINVAL, "%s: no examples", __func__);
    c->pts = malloc(2 * sizeof *c->pts);
    if (!c->pts) return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    size_t ok = 0, ok_l = 0;
    for (size_t i = 0; i < n; i++) {
        ok += small_ok[i] != 0;
        ok_l += large_ok[i] != 0;
    }
    c->n = n;
    c->q_small = (double)ok / (double)n;
    c->q_large = (double)ok_l / (double)n;
    c->pts[0] = (struct sl_router_point){0, c->q_small, 0};
    c->pts[1] = (struct sl_router_point){1, c->q_large, 0};
    c->n_pts = 2;
    finish_curve(c);
    c->apgr_q10 = c->apgr; /* the line is the same at any sampling */
    return 0;
}
