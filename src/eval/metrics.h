/*
 * metrics.h - evaluation metrics over recorded outcomes (eval layer).
 *
 * Pure functions of their inputs: no I/O, no global state, deterministic.
 * Thread-safe. Structs returned through *out are owned by the caller and
 * freed with their _free function. Formulas are written out in docs/eval.md.
 *
 *   N = number of examples, K = number of classes, B = SL_ECE_BINS
 */
#ifndef SL_EVAL_METRICS_H
#define SL_EVAL_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/* ---- classification ---------------------------------------------------- */

struct sl_class_report {
    int n_class;        /* K */
    size_t n;           /* N */
    double accuracy;    /* correct / N */
    double macro_f1;    /* mean F1 over classes present in truth or predictions */
    double *precision;  /* (K) tp / (tp + fp); 0 when the class is never predicted */
    double *recall;     /* (K) tp / (tp + fn); 0 when the class never occurs */
    double *f1;         /* (K) 2PR / (P + R); 0 when P + R = 0 */
    uint64_t *support;  /* (K) examples whose true class is k */
    uint64_t *confusion; /* (K, K) row = true class, column = predicted class */
};

/* truth[i], pred[i] in [0, n_class); anything else is SL_EINVAL. */
int sl_class_report_compute(struct sl_class_report *out, const int *truth, const int *pred,
                            size_t n, int n_class, struct sl_err *err);
void sl_class_report_free(struct sl_class_report *r);

/* ---- extraction (JSON objects as parsed key -> value maps) ------------- */

/* One field of a parsed object; value is the canonical JSON text of the
 * value (the jansson layer above produces it with sorted keys, compact). */
struct sl_field_kv {
    const char *key;
    const char *value;
};

struct sl_kv_map {
    const struct sl_field_kv *kv;
    size_t n; /* keys are unique within a map */
};

struct sl_field_stats {
    char *key;           /* owned */
    uint64_t tp, fp, fn; /* tp: same value; fp: predicted but absent or different; fn: expected but absent or different */
    double precision, recall, f1;
};

struct sl_extract_report {
    size_t n;
    double exact_match;  /* predicted map equals expected map (same keys, same values) / N */
    double precision, recall, f1; /* micro-averaged over all fields */
    struct sl_field_stats *fields; /* (n_fields), sorted by key */
    size_t n_fields;
};

int sl_extract_report_compute(struct sl_extract_report *out, const struct sl_kv_map *expected,
                              const struct sl_kv_map *predicted, size_t n, struct sl_err *err);
void sl_extract_report_free(struct sl_extract_report *r);

/* ---- latency, cost, escalation ------------------------------------------ */

struct sl_latency_summary {
    size_t n;
    double mean, min, max;
    double p50, p95, p99; /* nearest rank: the ceil(p/100 * N)-th smallest sample */
};

/* Sorts a private copy of samples; SL_EINVAL when n == 0 or a sample is NaN. */
int sl_latency_summarize(struct sl_latency_summary *out, const double *ms, size_t n,
                         struct sl_err *err);

/* Nearest-rank percentile of an ascending array (p in [0, 100]). */
double sl_percentile_sorted(const double *sorted, size_t n, double p);

/* Total cost over N requests scaled to 1,000 requests: 1000 * sum / N. */
double sl_cost_per_1k(const double *cost, size_t n);

/* Fraction of requests with escalated[i] true. */
double sl_escalation_rate(const bool *escalated, size_t n);

/* ---- calibration --------------------------------------------------------- */

#define SL_ECE_BINS 15

struct sl_reliability {
    int n_bins;                  /* B, equal width on [0, 1] */
    uint64_t count[SL_ECE_BINS]; /* examples whose confidence falls in bin b */
    double mean_conf[SL_ECE_BINS]; /* mean confidence in bin b (0 if empty) */
    double accuracy[SL_ECE_BINS];  /* fraction correct in bin b (0 if empty) */
    double ece;                  /* sum_b count_b / N * |accuracy_b - mean_conf_b| */
    double mce;                  /* max over non-empty bins of the same gap */
    size_t n;
};

/* Bin b = [b/B, (b+1)/B), the last bin closed at 1. conf outside [0, 1] or
 * NaN is SL_EINVAL. */
int sl_reliability_compute(struct sl_reliability *out, const double *conf, const bool *correct,
                           size_t n, struct sl_err *err);

#endif
