/*
 * frontier.h - the cost/quality frontier of a two-tier cascade and the
 * risk-coverage curve of its small tier (eval layer).
 *
 * Per example i: conf[i] (small tier's confidence), small_ok[i] and
 * small_cost[i], large_ok[i] and large_cost[i]. A cascade with threshold t
 * keeps the small answer when conf >= t; otherwise it escalates and pays
 * small_cost + large_cost (the small tier already ran) and gets large_ok.
 * The sweep takes every distinct confidence as a threshold, plus +inf
 * (escalate everything). Pure; thread-safe; results owned by the caller.
 */
#ifndef SL_EVAL_FRONTIER_H
#define SL_EVAL_FRONTIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

struct sl_cascade_point {
    double threshold; /* accept when conf >= threshold; +INFINITY: none accepted */
    double coverage;  /* fraction answered by the small tier */
    double cost;      /* mean cost per request */
    double quality;   /* fraction correct */
    bool pareto;      /* on the Pareto frontier of all points (incl. small/large only) */
};

struct sl_risk_point {
    double coverage; /* fraction accepted, in descending confidence */
    double risk;     /* error rate among the accepted */
    double threshold;
};

struct sl_frontier {
    struct sl_cascade_point *points; /* (n_points) ascending cost */
    size_t n_points;
    struct sl_cascade_point small_only; /* every request on the small tier only */
    struct sl_cascade_point large_only; /* every request sent straight to the large tier */
    struct sl_risk_point *risk;         /* (n_risk) ascending coverage, one per distinct conf */
    size_t n_risk;
    double aurc;                        /* area under the risk-coverage curve (step-wise) */
    size_t n;
};

int sl_frontier_compute(struct sl_frontier *out, const double *conf, const uint8_t *small_ok,
                        const double *small_cost, const uint8_t *large_ok,
                        const double *large_cost, size_t n, struct sl_err *err);
void sl_frontier_free(struct sl_frontier *f);

#endif
