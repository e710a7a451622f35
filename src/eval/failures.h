/*
 * failures.h - where the small tier fails, from evaluation results (eval
 * layer): its most confident wrong answers and what the route did with
 * them, and its error rate by class, by input-length bucket and by each
 * metadata value.
 *
 * An example counts when the tier has a result with a known `correct`; a
 * result with an `error` counts as wrong. Slices are sorted by the tier's
 * error rate (highest first; ties: more examples first, then by name).
 *
 * For reports (src/eval/report.c): sl_failures_compute() once, then any of
 * sl_failures_print() (a terminal section), sl_failures_json() (one JSON
 * object, no trailing newline, to embed as a value) and
 * sl_failures_html() (a self-contained <section> fragment with its own
 * scoped styles, no scripts). Pure functions of their inputs; thread-safe.
 */
#ifndef SL_EVAL_FAILURES_H
#define SL_EVAL_FAILURES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/err.h"
#include "eval/results.h"

struct sl_failures_params {
    size_t top_n;         /* confident wrong answers listed (default 10) */
    size_t n_len_buckets; /* input-length quantile buckets (default 4) */
    size_t max_values;    /* a meta field (or the classes) with more distinct
                           * values than this is left out: an id, not a slice
                           * (default 50) */
    size_t min_count;     /* slices with fewer examples are left out (default 1) */
    bool by_class;        /* slice by the truth (default true; false for extraction,
                           * whose truths are whole objects) */
};

struct sl_failures_params sl_failures_default_params(void);

/* One confident wrong answer; strings borrowed from the results. */
struct sl_failure_case {
    size_t row;             /* results example index */
    double confidence;      /* the tier's (NaN when it gave none) */
    const char *id, *truth, *pred, *error;
    /* the route on the same example (route_present false: no route result) */
    bool route_present, route_escalated;
    int8_t route_correct;   /* 1, 0, -1 unknown */
    const char *route_decision, *route_backend;
};

struct sl_failure_slice {
    char field[64];      /* "class", "input_len", or the meta key */
    char value[128];     /* the class, "12-40" characters, or the meta value (cut to fit) */
    size_t n, n_wrong;   /* tier results in the slice, wrong among them */
    double error;        /* n_wrong / n */
    double route_error;  /* the route's error rate on the slice (NaN: no route results) */
    double escalated;    /* share the route escalated (NaN: no route results) */
};

struct sl_failures {
    char tier[64], route[64]; /* route[0] = 0: no route target */
    size_t n, n_wrong;        /* examples with a known tier result */
    double error;
    struct sl_failure_case *top; /* (n_top) owned, most confident first */
    size_t n_top;
    struct sl_failure_slice *slices; /* (n_slices) owned, sorted by error */
    size_t n_slices;
    size_t n_fields_skipped; /* fields left out for too many values */
};

/* tier: the target to study (the route's first tier). route: the target
 * whose decisions are shown (NULL: "route" when present). Errors:
 * SL_ENOTFOUND (no such target), SL_EINVAL (no example with a known
 * result for it), SL_ENOMEM. f is overwritten; free with sl_failures_free. */
int sl_failures_compute(struct sl_failures *f, const struct sl_results *r, const char *tier,
                        const char *route, const struct sl_failures_params *p, struct sl_err *err);
void sl_failures_free(struct sl_failures *f);

/* A terminal section (plain text, fixed-width columns). */
void sl_failures_print(const struct sl_failures *f, FILE *out);
/* {"tier":..., "route":..., "n":..., "error":..., "top":[...], "slices":[...]};
 * returns 0 or SL_EIO. */
int sl_failures_json(const struct sl_failures *f, FILE *out, struct sl_err *err);
/* <section class="sl-failures" id="failures">...</section> with the tables
 * #failures-top and #failures-slices (each only when it has rows), the
 * colours and rules of report.c's pages; returns 0 or SL_EIO. */
int sl_failures_html(const struct sl_failures *f, FILE *out, struct sl_err *err);

#endif
