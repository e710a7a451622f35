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

#include "eval/frontier.h"
#include "eval/guarantee.h"
#include "eval/metrics.h"
#include "eval/replay.h"

struct sl_report_metric {
    const char *name;  /* "apgr.lr", "accuracy", ... (JSON key) */
    double value;      /* NaN is written as null / "-" */
    const char *label; /* optional human label for table and HTML */
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
};

void sl_report_table(const struct sl_report *r, FILE *f);
int sl_report_json(const struct sl_report *r, FILE *f, struct sl_err *err);
int sl_report_html(const struct sl_report *r, FILE *f, struct sl_err *err);

#endif
