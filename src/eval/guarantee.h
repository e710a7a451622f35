/*
 * guarantee.h - cascade thresholds chosen with a statistical guarantee
 * (eval layer).
 *
 * The small tier's answer is accepted when its confidence >= t. For a
 * 0/1 loss on accepted requests (by default "the small tier was wrong"),
 * risk(t) = E[loss | conf >= t]. sl_guarantee_max_risk() picks the lowest
 * threshold (the most traffic kept on the small tier) such that, with
 * probability >= 1 - delta over the draw of the calibration split,
 * risk(t) <= epsilon (Learn-then-Test, fixed-sequence testing):
 *
 *   - candidates: a grid of thresholds fixed before the calibration data
 *     is looked at (a constant grid, or quantiles of a separate design
 *     split, sl_guarantee_grid), tested from the highest down;
 *   - for each t the null H_t: risk(t) > epsilon has the exact binomial
 *     p-value P(Binomial(n_t, epsilon) <= k_t) (n_t accepted, k_t losses;
 *     1 when n_t = 0), rejected when p <= delta, which is the same as the
 *     one-sided Clopper-Pearson upper bound at 1 - delta being <= epsilon;
 *   - the walk stops at the first candidate not rejected; every threshold
 *     before it is certified, and the last (lowest) one is chosen.
 *
 * Fixed-sequence testing controls the family-wise error at delta with no
 * Bonferroni correction because the order is fixed in advance; the grid
 * must not be built from the calibration split itself (that would make the
 * hypotheses depend on the data they are tested on). docs/eval.md derives
 * the "within X points of the large tier" form.
 * Pure functions; thread-safe.
 */
#ifndef SL_EVAL_GUARANTEE_H
#define SL_EVAL_GUARANTEE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/* Regularized incomplete beta I_x(a, b), a, b > 0, x in [0, 1]
 * (continued fraction, modified Lentz). NaN on bad arguments. */
double sl_betainc(double a, double b, double x);

/* P(Binomial(n, p) <= k). */
double sl_binom_cdf(uint64_t k, uint64_t n, double p);

/* One-sided Clopper-Pearson upper bound on a binomial rate with k events in
 * n trials at confidence 1 - delta: the p with P(Bin(n, p) <= k) = delta.
 * 1 when n == 0 or k == n. */
double sl_clopper_pearson_upper(uint64_t k, uint64_t n, double delta);

/* One certified-or-not candidate threshold, in testing order. */
struct sl_guarantee_step {
    double threshold; /* accept when conf >= threshold */
    uint64_t n_accepted, n_loss;
    double risk;      /* n_loss / n_accepted on the calibration split */
    double ucb;       /* Clopper-Pearson upper bound at 1 - delta (NaN until
                         sl_guarantee_fill_ucb; the chosen one is in struct sl_guarantee) */
    double p_value;   /* P(Bin(n_accepted, epsilon) <= n_loss) */
    bool certified;
};

struct sl_guarantee {
    bool found;        /* false: no threshold certified; escalate everything */
    double threshold;  /* +INFINITY when !found */
    double epsilon, delta;
    uint64_t n_cal;
    uint64_t n_accepted, n_loss;
    double coverage;   /* n_accepted / n_cal at the chosen threshold */
    double risk, ucb;
    struct sl_guarantee_step *steps; /* (n_steps) owned; the certified prefix plus the first failure */
    size_t n_steps;
};

/* conf[i] = small tier's confidence, loss[i] = 1 if accepting the small
 * answer on example i is a failure; grid (n_grid) candidate thresholds in
 * descending order. epsilon in (0, 1), delta in (0, 1). */
int sl_guarantee_max_risk(struct sl_guarantee *out, const double *conf, const uint8_t *loss,
                          size_t n, const double *grid, size_t n_grid, double epsilon,
                          double delta, struct sl_err *err);

/* A descending grid from a design sample kept apart from calibration:
 * grid[j] = the confidence that accepts a fraction (j + 1) / n_grid of the
 * design sample. Returns 0, SL_EINVAL (empty) or SL_ENOMEM. */
int sl_guarantee_grid(double *grid, size_t n_grid, const double *conf_design, size_t n);
void sl_guarantee_free(struct sl_guarantee *g);
/* Computes steps[].ucb for the evidence table (a bisection per step). */
void sl_guarantee_fill_ucb(struct sl_guarantee *g);

/* Budget form: "the best quality whose cost per request stays under budget".
 * Cost per request of threshold t: cost_small[i] if accepted, else
 * cost_small[i] + cost_large[i] (a cascade runs the small tier first).
 * Candidates (grid, descending as above) are tested from the lowest
 * threshold (cheapest) up; a candidate is
 * certified while the Hoeffding upper bound mean + c_max sqrt(ln(1/delta) /
 * 2n) on its cost is <= budget (c_max = the largest per-request cost seen,
 * so the bound assumes costs in [0, c_max]); among the certified ones the
 * highest calibration accuracy wins (ties: the cheaper). */
struct sl_budget_choice {
    bool found;
    double threshold;
    double cost_mean, cost_ucb; /* per request */
    double accuracy;            /* cascade accuracy on the calibration split */
    double coverage;
};

int sl_guarantee_budget(struct sl_budget_choice *out, const double *conf, const uint8_t *small_ok,
                        const uint8_t *large_ok, const double *cost_small,
                        const double *cost_large, size_t n, const double *grid, size_t n_grid,
                        double budget, double delta, struct sl_err *err);

#endif
