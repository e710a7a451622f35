/*
 * calib_route.h - choose a cascade route's first-tier threshold from
 * evaluation results, with a statistical guarantee, and write it back into
 * the config file (eval layer; `sluice calibrate CONFIG.yaml --route R`).
 *
 * The examples are split by a seed into a calibration part and a test part
 * that never meet. The calibration part is split again: a design share
 * (confidences only) places the candidate thresholds (sl_guarantee_grid),
 * the rest tests them (guarantee.h: Learn-then-Test, fixed sequence). Two
 * targets:
 *
 *   GAP   "quality within X of the large tier at the lowest cost": the loss
 *         of an accepted request is 1[small wrong and large right]; the
 *         lowest threshold whose Clopper-Pearson bound on that risk is
 *         <= X is chosen, so with probability >= 1 - delta the cascade
 *         loses at most X accuracy against sending everything to the large
 *         tier (docs/eval.md derives it).
 *   COST  "the best quality under C per 1,000 requests": candidates are
 *         certified while the Hoeffding upper bound on the cascade's cost
 *         stays <= C / 1000 per request (sl_guarantee_budget); the most
 *         accurate certified one wins.
 *
 * The chosen threshold is then measured on the test part: coverage, the
 * cascade's quality and cost, the small tier's error on what it kept.
 * Pure computation except sl_calib_write_config; thread-safe.
 */
#ifndef SL_EVAL_CALIB_ROUTE_H
#define SL_EVAL_CALIB_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "eval/guarantee.h"
#include "eval/results.h"

enum sl_calib_target {
    SL_CALIB_GAP = 0,  /* quality within gap of the large tier, lowest cost */
    SL_CALIB_COST = 1, /* best quality with cost per 1,000 <= max_cost_1k */
};

struct sl_calib_params {
    int target;         /* enum sl_calib_target */
    double gap;         /* GAP: allowed accuracy loss as a fraction (0.02 = 2 points) */
    double max_cost_1k; /* COST: budget per 1,000 requests, in the results' currency */
    double delta;       /* failure probability of the guarantee (default 0.1) */
    double calib_frac;  /* share of examples in the calibration part (default 0.5) */
    double design_frac; /* share of the calibration part that only places the grid (0.2) */
    size_t n_grid;      /* candidate thresholds (default 50) */
    uint64_t seed;      /* the split (default 0) */
};

struct sl_calib_params sl_calib_default_params(void);

/* Per-example inputs, (n) each, owned. conf is the first tier's confidence
 * (NaN or -INFINITY: never accepted); costs per request. */
struct sl_calib_data {
    size_t n;
    double *conf;
    uint8_t *small_ok, *large_ok;
    double *cost_small, *cost_large;
    size_t *row;      /* results row of each example (from_results), else NULL */
    size_t n_skipped; /* results examples left out: a tier missing or correctness unknown */
};

/* Builds the inputs from results: small and large are target names (the
 * route's first and last tiers). With meta_key/meta_value set, only the
 * examples whose meta[meta_key] equals meta_value are kept (a task). An
 * example is kept when both tiers have a result with a known `correct`;
 * a tier that errored counts as wrong with confidence -INFINITY (the
 * cascade would have escalated) and costs what it recorded (0 if none).
 * Errors: SL_ENOTFOUND (a target is not in the results), SL_EINVAL (no
 * usable example), SL_ENOMEM. */
int sl_calib_data_from_results(struct sl_calib_data *d, const struct sl_results *r,
                               const char *small, const char *large, const char *meta_key,
                               const char *meta_value, struct sl_err *err);
/* Allocates the arrays for n examples (zeroed); row stays NULL. */
int sl_calib_data_alloc(struct sl_calib_data *d, size_t n, struct sl_err *err);
void sl_calib_data_free(struct sl_calib_data *d);

/* What a threshold does on a set of examples. */
struct sl_calib_eval {
    size_t n, n_accepted;
    double coverage;    /* n_accepted / n */
    double quality;     /* cascade accuracy: small answer if accepted, else large */
    double cost_1k;     /* cascade cost per 1,000: small always, large when escalated */
    double small_error; /* small tier's error on accepted (NaN if none accepted) */
    double loss_rate;   /* 1[small wrong, large right] on accepted (NaN if none) */
    double q_small, q_large;             /* each tier alone */
    double cost_small_1k, cost_large_1k; /* each tier alone, per 1,000 */
};

/* Evaluates threshold t (accept when conf >= t) on examples idx[0..m). */
void sl_calib_eval(struct sl_calib_eval *e, const struct sl_calib_data *d, const size_t *idx,
                   size_t m, double t);

struct sl_calib_result {
    bool found;        /* false: nothing certified; the route should escalate everything */
    double threshold;  /* +INFINITY when !found */
    double bound;      /* GAP: Clopper-Pearson upper bound on the loss rate of accepted
                          calibration requests; COST: Hoeffding bound on cost per 1,000 */
    double cal_coverage;
    size_t n, n_design, n_cal, n_test;
    struct sl_guarantee g;     /* GAP: the tested candidates (owned) */
    struct sl_budget_choice b; /* COST */
    struct sl_calib_eval cal, test; /* at the chosen threshold */
};

/* Splits, chooses and measures. Errors: SL_EINVAL (bad parameters, too
 * few examples for three non-empty parts), SL_ENOMEM. */
int sl_calib_run(struct sl_calib_result *out, const struct sl_calib_data *d,
                 const struct sl_calib_params *p, struct sl_err *err);
void sl_calib_result_free(struct sl_calib_result *r);

/* ---- writing the threshold back into a config file -------------------- */

/* The evidence written under the route's `calibration:` mapping. */
struct sl_calib_evidence {
    const char *method;  /* e.g. "learn-then-test, clopper-pearson" */
    const char *target;  /* human form, e.g. "within 2 points of large" */
    const char *task;    /* NULL: the route's default threshold */
    double delta;
    size_t n_calibration;
    double upper_bound;
    double coverage;     /* on the calibration split */
    double test_coverage, test_quality, test_cost_1k;
    const char *date;    /* ISO 8601 UTC */
    const char *results; /* the results file */
};

/* Edits YAML text in place: under routes.<route>, sets `threshold:` (task
 * NULL) or `thresholds: {task: v}` to threshold, and replaces (or adds) the
 * `calibration:` mapping with the evidence. Everything else, comments
 * included, is kept byte for byte. *out (malloc'd, NUL-terminated) is the
 * new text. Errors: SL_EFORMAT (not YAML; no routes mapping; the route or
 * its thresholds in a form that cannot be edited, e.g. flow style),
 * SL_ENOTFOUND (no such route), SL_ENOMEM. */
int sl_calib_edit_yaml(char **out, size_t *out_len, const char *text, size_t len,
                       const char *route, double threshold, const struct sl_calib_evidence *ev,
                       struct sl_err *err);

/* Reads path, edits it as above, checks the result with sl_config_parse
 * (the route's threshold for the task must read back as written), and
 * replaces the file atomically (a temporary file in the same directory,
 * then rename). The file is unchanged on any error. */
int sl_calib_write_config(const char *path, const char *route, double threshold,
                          const struct sl_calib_evidence *ev, struct sl_err *err);

/* The threshold as it is written into the file ("%.6g"), so callers can
 * report exactly what the config will read. */
double sl_calib_written_value(double threshold);

#endif
