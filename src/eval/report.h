/*
 * report.h - evaluation reports: a terminal table, JSON for machines, and a
 * self-contained HTML page whose charts are inline SVG drawn here (eval
 * layer). The page has no scripts and no outside references, so it opens
 * offline and renders the same everywhere.
 *
 * Every section is optional: a NULL pointer (or a zero count) leaves it
 * out. The report borrows everything it points to; nothing is freed here.
 * Writers return 0 or SL_EIO when the stream reports an error.
 */
#ifndef SL_EVAL_REPORT_H
#define SL_EVAL_REPORT_H

#include <stdio.h>

#include "eval/failures.h"
#include "eval/frontier.h"
#include "eval/guarantee.h"
#include "eval/metrics.h"
#include "eval/replay.h"

struct sl_report_metric {
    const char *name;  /* "apgr.lr", "accuracy", ... (JSON key) */
    double value;      /* NaN is written as null / "-" */
    const char *label; /* optional human label for table and HTML */
};

/* One column of a side-by-side table: `sluice eval` has one per tier run
 * alone and one for the route, `sluice compare` one per run. Every target
 * lists the same metric names in the same order. */
struct sl_report_target {
    const char *name;
    const struct sl_report_metric *metrics;
    size_t n_metrics;
};

/* A further confusion matrix (another target's), drawn after the main one
 * as chart-confusion-1, chart-confusion-2, ... */
struct sl_report_cls {
    const char *name;
    const struct sl_class_report *cls;
};

struct sl_report {
    const char *title;
    const char *subtitle; /* data set, split, seed ... */
    const struct sl_report_metric *metrics;
    size_t n_metrics;
    const struct sl_router_curve *curves; /* quality against % large calls */
    size_t n_curves;
    const struct sl_frontier *frontier;
    const struct sl_reliability *reliability;
    const char *reliability_what; /* what the confidence is, for the caption */
    const struct sl_class_report *cls;
    const char *const *class_names; /* (cls->n_class) or NULL */
    const double *latency_ms;
    size_t n_latency;
    const struct sl_guarantee *guarantee;
    /* live evaluation (sluice eval / compare) */
    const struct sl_report_target *targets; /* table id "targets": metrics by row */
    size_t n_targets;
    const char *targets_title;              /* its heading; NULL = "Targets" */
    const struct sl_extract_report *fields; /* table id "fields": per-field P/R/F1 */
    const char *fields_what;
    const struct sl_report_cls *more_cls;   /* (n_more_cls) uses class_names too */
    size_t n_more_cls;
    const char *cls_what;      /* caption of the main confusion matrix (whose it is) */
    const char *latency_what;  /* caption of the latency histogram */
    const char *frontier_what; /* caption of the frontier (which tiers) */
    /* failure modes (failures.h): a terminal section, "failures" in the JSON,
     * section#failures in the HTML */
    const struct sl_failures *failures;
};

/* Writes s as a JSON string literal (quotes, escapes; NULL as ""). The
 * eval writers' one escaper. */
void sl_json_fputs(FILE *f, const char *s);

void sl_report_table(const struct sl_report *r, FILE *f);
int sl_report_json(const struct sl_report *r, FILE *f, struct sl_err *err);
int sl_report_html(const struct sl_report *r, FILE *f, struct sl_err *err);

#endif
