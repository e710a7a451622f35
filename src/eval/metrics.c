/*
 * metrics.c - classification, extraction, latency, cost and calibration
 * metrics (eval layer). Everything here is a pure function of arrays the
 * caller owns; see metrics.h for the definitions and docs/eval.md for the
 * formulas.
 */
#include "eval/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ==== classification ===================================================== */

void sl_class_report_free(struct sl_class_report *r)
{
    if (!r) return;
    free(r->precision);
    free(r->recall);
    free(r->f1);
    free(r->support);
    free(r->confusion);
    memset(r, 0, sizeof *r);
}

int sl_class_report_compute(struct sl_class_report *out, const int *truth, const int *pred,
                            size_t n, int n_class, struct sl_err *err)
{
    struct sl_class_report r = {0};
    uint64_t *pred_count = NULL;
    int rc = SL_ENOMEM;
    memset(out, 0, sizeof *out);
    if (n_class <= 0 || n_class > 65536)
        return sl_err_set(err, SL_EINVAL, "%s: %d classes (want 1..65536)", __func__, n_class);
    size_t k = (size_t)n_class;
    r.n_class = n_class;
    r.n = n;
    r.precision = calloc(k, sizeof *r.precision);
    r.recall = calloc(k, sizeof *r.recall);
    r.f1 = calloc(k, sizeof *r.f1);
    r.support = calloc(k, sizeof *r.support);
    r.confusion = calloc(k * k, sizeof *r.confusion);
    pred_count = calloc(k, sizeof *pred_count);
    if (!r.precision || !r.recall || !r.f1 || !r.support || !r.confusion || !pred_count) {
        rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory for %d classes", __func__, n_class);
        goto fail; /* allocation failure */
    }
    uint64_t correct = 0;
    for (size_t i = 0; i < n; i++) {
        if (truth[i] < 0 || truth[i] >= n_class || pred[i] < 0 || pred[i] >= n_class) {
            rc = sl_err_set(err, SL_EINVAL, "%s: example %zu: class %d/%d outside 0..%d", __func__, i,
                       truth[i], pred[i], n_class - 1);
            goto fail; /* label out of range */
        }
        r.confusion[(size_t)truth[i] * k + (size_t)pred[i]]++;
        r.support[truth[i]]++;
        pred_count[pred[i]]++;
        correct += truth[i] == pred[i];
    }
    r.accuracy = n ? (double)correct / (double)n : 0.0;
    double f1_sum = 0;
    int present = 0;
    for (size_t c = 0; c < k; c++) {
        double tp = (double)r.confusion[c * k + c];
        r.precision[c] = pred_count[c] ? tp / (double)pred_count[c] : 0.0;
        r.recall[c] = r.support[c] ? tp / (double)r.support[c] : 0.0;
        double pr = r.precision[c] + r.recall[c];
        r.f1[c] = pr > 0 ? 2 * r.precision[c] * r.recall[c] / pr : 0.0;
        if (r.support[c] || pred_count[c]) {
            f1_sum += r.f1[c];
            present++;
        }
    }
    r.macro_f1 = present ? f1_sum / present : 0.0;
    free(pred_count);
    *out = r;
    return 0;
fail:
    free(pred_count);
    sl_class_report_free(&r);
    return rc;
}

/* ==== extraction ========================================================== */

void sl_extract_report_free(struct sl_extract_report *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n_fields; i++) free(r->fields[i].key);
    free(r->fields);
    memset(r, 0, sizeof *r);
}

static const char *map_get(const struct sl_kv_map *m, const char *key)
{
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->kv[i].key, key)) return m->kv[i].value;
    return NULL;
}

/* Index of key in r->fields, adding it if absent; -1 on allocation failure. */
static long field_index(struct sl_extract_report *r, size_t *cap, const char *key)
{
    for (size_t i = 0; i < r->n_fields; i++)
        if (!strcmp(r->fields[i].key, key)) return (long)i;
    if (r->n_fields == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        struct sl_field_stats *nf = realloc(r->fields, nc * sizeof *nf);
        if (!nf) return -1;
        r->fields = nf;
        *cap = nc;
    }
    struct sl_field_stats *f = &r->fields[r->n_fields];
    memset(f, 0, sizeof *f);
    f->key = strdup(key);
    if (!f->key) return -1;
    return (long)r->n_fields++;
}

static void prf(uint64_t tp, uint64_t fp, uint64_t fn, double *p, double *rc, double *f1)
{
    *p = tp + fp ? (double)tp / (double)(tp + fp) : 0.0;
    *rc = tp + fn ? (double)tp / (double)(tp + fn) : 0.0;
    *f1 = *p + *rc > 0 ? 2 * *p * *rc / (*p + *rc) : 0.0;
}

static int cmp_field(const void *a, const void *b)
{
    return strcmp(((const struct sl_field_stats *)a)->key, ((const struct sl_field_stats *)b)->key);
}

int sl_extract_report_compute(struct sl_extract_report *out, const struct sl_kv_map *expected,
                              const struct sl_kv_map *predicted, size_t n, struct sl_err *err)
{
    struct sl_extract_report r = {0};
    size_t cap = 0;
    uint64_t exact = 0, tp = 0, fp = 0, fn = 0;
    memset(out, 0, sizeof *out);
    r.n = n;
    for (size_t i = 0; i < n; i++) {
        const struct sl_kv_map *e = &expected[i], *p = &predicted[i];
        bool same = e->n == p->n;
        for (size_t j = 0; j < e->n; j++) {
            const char *pv = map_get(p, e->kv[j].key);
            long fi = field_index(&r, &cap, e->kv[j].key);
            if (fi < 0) goto oom; /* allocation failure */
            if (pv && !strcmp(pv, e->kv[j].value)) {
                r.fields[fi].tp++;
                tp++;
            } else {
                r.fields[fi].fn++;
                fn++;
                same = false;
            }
        }
        for (size_t j = 0; j < p->n; j++) {
            const char *ev = map_get(e, p->kv[j].key);
            if (ev && !strcmp(ev, p->kv[j].value)) continue; /* counted as tp above */
            long fi = field_index(&r, &cap, p->kv[j].key);
            if (fi < 0) goto oom; /* allocation failure */
            r.fields[fi].fp++;
            fp++;
            same = false;
        }
        exact += same;
    }
    r.exact_match = n ? (double)exact / (double)n : 0.0;
    prf(tp, fp, fn, &r.precision, &r.recall, &r.f1);
    for (size_t i = 0; i < r.n_fields; i++) {
        struct sl_field_stats *f = &r.fields[i];
        prf(f->tp, f->fp, f->fn, &f->precision, &f->recall, &f->f1);
    }
    if (r.n_fields) qsort(r.fields, r.n_fields, sizeof *r.fields, cmp_field);
    *out = r;
    return 0;
oom:
    sl_extract_report_free(&r);
    return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
}

/* ==== latency, cost, escalation ========================================== */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double sl_percentile_sorted(const double *sorted, size_t n, double p)
{
    if (n == 0) return NAN;
    double rank = ceil(p / 100.0 * (double)n);
    size_t r = rank < 1 ? 1 : (size_t)rank;
    if (r > n) r = n;
    return sorted[r - 1];
}

int sl_latency_summarize(struct sl_latency_summary *out, const double *ms, size_t n,
                         struct sl_err *err)
{
    memset(out, 0, sizeof *out);
    if (n == 0) return sl_err_set(err, SL_EINVAL, "%s: no latency samples", __func__);
    double *s = malloc(n * sizeof *s), sum = 0;
    if (!s) return sl_err_set(err, SL_ENOMEM, "%s: out of memory for %zu samples", __func__, n);
    for (size_t i = 0; i < n; i++) {
        if (isnan(ms[i])) {
            free(s);
            return sl_err_set(err, SL_EINVAL, "%s: sample %zu is NaN", __func__, i);
        }
        s[i] = ms[i];
        sum += ms[i];
    }
    qsort(s, n, sizeof *s, cmp_double);
    out->n = n;
    out->mean = sum / (double)n;
    out->min = s[0];
    out->max = s[n - 1];
    out->p50 = sl_percentile_sorted(s, n, 50);
    out->p95 = sl_percentile_sorted(s, n, 95);
    out->p99 = sl_percentile_sorted(s, n, 99);
    free(s);
    return 0;
}

double sl_cost_per_1k(const double *cost, size_t n)
{
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += cost[i];
    return n ? 1000.0 * sum / (double)n : 0.0;
}

double sl_escalation_rate(const bool *escalated, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += escalated[i];
    return n ? (double)k / (double)n : 0.0;
}

/* ==== calibration ========================================================= */

int sl_reliability_compute(struct sl_reliability *out, const double *conf, const bool *correct,
                           size_t n, struct sl_err *err)
{
    double sum_conf[SL_ECE_BINS] = {0};
    uint64_t hits[SL_ECE_BINS] = {0};
    memset(out, 0, sizeof *out);
    out->n_bins = SL_ECE_BINS;
    out->n = n;
    for (size_t i = 0; i < n; i++) {
        double c = conf[i];
        if (!(c >= 0.0 && c <= 1.0))
            return sl_err_set(err, SL_EINVAL, "%s: example %zu: confidence %g outside [0, 1]",
                              __func__, i, c);
        int b = (int)(c * SL_ECE_BINS);
        if (b >= SL_ECE_BINS) b = SL_ECE_BINS - 1;
        out->count[b]++;
        sum_conf[b] += c;
        hits[b] += correct[i];
    }
    for (int b = 0; b < SL_ECE_BINS; b++) {
        if (!out->count[b]) continue;
        out->mean_conf[b] = sum_conf[b] / (double)out->count[b];
        out->accuracy[b] = (double)hits[b] / (double)out->count[b];
        double gap = fabs(out->accuracy[b] - out->mean_conf[b]);
        out->ece += (double)out->count[b] / (double)n * gap;
        if (gap > out->mce) out->mce = gap;
    }
    return 0;
}
