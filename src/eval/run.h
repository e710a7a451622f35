/*
 * run.h - live evaluation of a route on labelled examples: every tier alone
 * and the route's own policy, run concurrently, written to a resumable
 * results file, then aggregated per target (eval layer).
 *
 * The engine does not know HTTP or the router's insides: it calls a
 * function with the signature of sl_router_route for each (example,
 * target). Target k < n_tiers is tier k run alone (req.force_tier), target
 * n_tiers is the route itself (its policy); every request has no_log set.
 *
 *   sl_eval_data_load     examples from JSONL or CSV
 *   sl_eval_run           call, write one JSON line per finished pair
 *   sl_eval_report_compute  metrics per target and the cascade frontier
 *   sl_eval_metric / sl_eval_fail_under   metrics by name, CI gates
 *
 * The results file (one JSON object per line, format in docs/eval.md) is
 * also the resume log: with resume set, finished (id, target) pairs found
 * in it are not called again and new lines are appended; a half-written
 * last line (the process was killed mid-write) is cut off first.
 *
 *   N = examples, T = targets = n_tiers + 1, K = the task's labels
 */
#ifndef SL_EVAL_RUN_H
#define SL_EVAL_RUN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "eval/frontier.h"
#include "eval/metrics.h"
#include "eval/report.h"
#include "eval/results.h"
#include "router/router.h"

#define SL_EVAL_ROUTE_TARGET "route"             /* target name of the route's policy */
#define SL_EVAL_MAX_DATA_BYTES ((size_t)1 << 30) /* one examples or results file */
#define SL_EVAL_MAX_CONCURRENCY 256
#define SL_EVAL_MAX_DECISIONS 12 /* distinct decisions counted per target */

/* ---- examples ------------------------------------------------------------ */

struct sl_eval_example {
    char *id; /* unique; the id field as text, else the 1-based row number */
    char *input;
    char *label;    /* classify: the expected label */
    char *expected; /* extract: the expected object, canonical JSON (sorted keys, compact) */
    char *meta;     /* the metadata fields as a JSON object ("{}" when none) */
    struct sl_route_meta *kv; /* (n_kv) the metadata as text, sent as request metadata */
    size_t n_kv;
    char **kv_str; /* (2 * n_kv) owns the strings kv points to */
    size_t line;   /* JSONL line / CSV record number in the file, for messages */
};

struct sl_eval_data {
    struct sl_eval_example *v; /* (n) */
    size_t n;
};

/* Field (column) names; NULL members take the defaults. */
struct sl_eval_fields {
    const char *input;    /* default "input" */
    const char *label;    /* default "label" (classify) */
    const char *expected; /* default "expected" (extract: a JSON object, or its text in CSV) */
    const char *id;       /* default "id"; optional */
};

/* Reads a .csv file (header row; RFC 4180) or JSONL (anything else; one
 * object per line). kind is SL_RREQ_CLASSIFY or SL_RREQ_EXTRACT. Every
 * field that is not input/label/expected/id is metadata, and so are the
 * members of a JSONL "meta" object. Errors name the file and line. */
int sl_eval_data_load(struct sl_eval_data *out, const char *path, enum sl_route_req_kind kind,
                      const struct sl_eval_fields *fields, struct sl_err *err);
/* The same from memory; csv selects the format. */
int sl_eval_data_parse(struct sl_eval_data *out, const char *buf, size_t len, bool csv,
                       enum sl_route_req_kind kind, const struct sl_eval_fields *fields,
                       struct sl_err *err);
void sl_eval_data_free(struct sl_eval_data *d);

/* ---- the route ------------------------------------------------------------ */

struct sl_eval_route {
    const char *route;           /* route name (req.route) */
    enum sl_route_req_kind kind; /* SL_RREQ_CLASSIFY or SL_RREQ_EXTRACT */
    const char *task;            /* task name (req.task) */
    const char *const *tiers;    /* (n_tiers) backend names, small first */
    size_t n_tiers;
    const char *const *labels; /* classify: (n_labels) the task's labels */
    size_t n_labels;
    double threshold; /* the route's cascade threshold for the task; NaN = not a cascade */
};

/* sl_router_route, or a test's fake. res is freed with sl_route_result_free
 * after every call. A negative return is a hard failure: the run stops. */
typedef int (*sl_eval_call_fn)(void *user, const struct sl_route_req *req,
                               struct sl_route_result *res, struct sl_err *err);

/* ---- running ---------------------------------------------------------------- */

struct sl_eval_params {
    const char *results_path; /* the results file (required) */
    int concurrency;          /* worker threads (1..SL_EVAL_MAX_CONCURRENCY); default 4 */
    size_t limit;             /* only the first limit examples; 0 = all */
    bool resume;              /* keep results_path, skip what it has, append */
    bool retry_errors;        /* with resume: call again the pairs recorded as failed */
    bool tiers;               /* run every tier alone (default true) */
    bool route;               /* run the route's policy (default true) */
    atomic_bool *stop;        /* optional: once true, no new request starts */
    /* optional, called after each finished pair (under the run's lock) */
    void (*progress)(void *ctx, size_t done, size_t total);
    void *progress_ctx;
};

struct sl_eval_params sl_eval_default_params(void);

/* What one (example, target) gave. */
struct sl_eval_record {
    bool done;         /* filled (by this run or read back from the file) */
    bool failed;       /* the router answered status != 200 */
    int32_t pred;      /* classify: index into labels; -1 none (failed or matched no label) */
    char *pred_text;   /* classify: the label text; extract: the raw answer if not an object */
    char *pred_json;   /* extract: the predicted object, canonical JSON; NULL none */
    double confidence; /* < 0: none */
    bool escalated;
    int status;
    double latency_ms, cost;
    int64_t tokens_in, tokens_out; /* -1 unknown */
    char decision[24];
    char backend[SL_ROUTE_NAME_MAX];
    char *error; /* message when failed */
};

struct sl_eval_run {
    size_t n_examples;          /* N evaluated (the limit applied) */
    size_t n_targets;           /* T */
    struct sl_eval_record *rec; /* (N, T): rec[example * T + target] */
    size_t n_called;            /* requests this run made (each pair at most once) */
    size_t n_resumed;           /* pairs read back from the results file */
    size_t n_pending;           /* pairs not done (stopped early or a hard failure) */
    bool stopped;               /* *stop was set */
};

/* Runs every pending pair. Returns 0 (check out->n_pending: a stop leaves
 * pairs undone) or the negative code of a hard failure (the call's own, or
 * an I/O error on the results file); out is filled in both cases and freed
 * with sl_eval_run_free. */
int sl_eval_run(struct sl_eval_run *out, const struct sl_eval_data *d,
                const struct sl_eval_route *rt, sl_eval_call_fn call, void *user,
                const struct sl_eval_params *p, struct sl_err *err);
void sl_eval_run_free(struct sl_eval_run *r);

/* Name of target t: a tier's backend name or "route". */
const char *sl_eval_target_name(const struct sl_eval_route *rt, size_t t);

/* The run's finished pairs as results (results.h): what loading the
 * results file would give, for this run's examples only (not pairs of
 * examples past --limit that an older run left in the file). The input of
 * failures.c. SL_EINVAL when no pair is done; SL_ENOMEM. out is overwritten
 * and freed with sl_results_free. */
int sl_eval_results(struct sl_results *out, const struct sl_eval_data *d,
                    const struct sl_eval_route *rt, const struct sl_eval_run *run,
                    struct sl_err *err);

/* ---- aggregation ------------------------------------------------------------ */

struct sl_eval_target_report {
    const char *name; /* borrowed from the route description */
    size_t n;         /* pairs done */
    size_t n_failed;  /* of which the router failed (counted wrong) */
    size_t n_conf;    /* of which had a confidence (the reliability's N) */
    double quality;   /* classify: accuracy; extract: exact match (failures count wrong) */
    struct sl_class_report cls;   /* classify: K classes, + "(none)" when a prediction is missing */
    struct sl_extract_report ext; /* extract: per-field precision/recall/F1 */
    struct sl_latency_summary lat;
    struct sl_reliability rel; /* valid when n_conf > 0 */
    double *latency_ms;        /* (n) for the histogram */
    double cost_per_1k, escalation_rate;
    double tokens_in_mean, tokens_out_mean; /* over pairs that reported them; NaN none */
    struct {
        char decision[24]; /* "local", "escalated", "forced", "failed", ... */
        size_t count;
    } decisions[SL_EVAL_MAX_DECISIONS];
    size_t n_decisions;
};

struct sl_eval_report {
    enum sl_route_req_kind kind;
    struct sl_eval_target_report *targets; /* (n_targets) the tiers in order, then the route */
    size_t n_targets;
    const char **class_names; /* (n_class_names) the labels, then "(none)" */
    size_t n_class_names;
    /* two tiers or more: the cascade of the first (small) and last (large)
     * tier over the examples both answered, swept over every threshold */
    bool has_frontier;
    struct sl_frontier frontier;
    size_t frontier_n;
    const char *small, *large;
    /* the frontier at the route's threshold (NaN when the route has none) */
    double threshold, at_coverage, at_quality, at_cost_per_1k;
};

int sl_eval_report_compute(struct sl_eval_report *out, const struct sl_eval_data *d,
                           const struct sl_eval_route *rt, const struct sl_eval_run *run,
                           struct sl_err *err);
void sl_eval_report_free(struct sl_eval_report *r);

/* ---- metrics by name -------------------------------------------------------- */

#define SL_EVAL_MAX_METRICS 24

/* The metrics of target t as (name, value, label) rows, the same names in
 * the same order for every target of a kind: n, failed, accuracy |
 * exact_match, macro_f1 | field_precision, field_recall, field_f1, p50_ms,
 * p95_ms, p99_ms, mean_ms, cost_per_1k, escalation_rate, ece, tokens_in,
 * tokens_out. Returns the count (<= SL_EVAL_MAX_METRICS). Names point to
 * static strings. */
size_t sl_eval_target_metrics(const struct sl_eval_report *r, size_t t,
                              struct sl_report_metric *out);

/* The value of a metric: "accuracy" is the route's, "small.accuracy" tier
 * small's, "frontier.aurc" (and frontier.small_quality, large_quality,
 * small_cost_per_1k, large_cost_per_1k, at_threshold_quality,
 * at_threshold_cost_per_1k, at_threshold_coverage) the frontier's.
 * SL_ENOTFOUND when there is no such metric. */
int sl_eval_metric(const struct sl_eval_report *r, const char *name, double *out,
                   struct sl_err *err);

/* A --fail-under "METRIC=VALUE" gate: 0 when the metric is >= VALUE, 1
 * when it is under (or NaN) with a line for the user in msg, SL_EINVAL on a
 * malformed spec, SL_ENOTFOUND on an unknown metric. */
int sl_eval_fail_under(const struct sl_eval_report *r, const char *spec, char *msg, size_t cap,
                       struct sl_err *err);

#endif
