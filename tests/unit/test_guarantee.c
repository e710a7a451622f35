/*
 * test_guarantee.c - the incomplete beta function against known values,
 * Clopper-Pearson bounds, Learn-then-Test selection, and a simulation
 * showing the guarantee holds over many random calibration splits.
 */
#include <stdint.h>

#include "eval/guarantee.h"
#include "eval/replay.h" /* sl_eval_randu */
#include "test.h"

/* P(Bin(n, p) <= k) by direct summation in log space: an independent check. */
static double binom_cdf_sum(int k, int n, double p)
{
    double s = 0;
    for (int i = 0; i <= k; i++)
        s += exp(lgamma(n + 1.0) - lgamma(i + 1.0) - lgamma(n - i + 1.0) + i * log(p) +
                 (n - i) * log1p(-p));
    return s;
}

static void betainc_matches_known_values(void)
{
    T_NEAR(sl_betainc(2, 3, 0.5), 11.0 / 16, 1e-13);          /* P(Bin(4, .5) >= 2) */
    T_NEAR(sl_betainc(1, 1, 0.3), 0.3, 1e-13);                /* uniform */
    T_NEAR(sl_betainc(1, 5, 0.2), 1 - pow(0.8, 5), 1e-13);    /* 1 - (1-x)^b */
    T_NEAR(sl_betainc(3, 1, 0.9), 0.729, 1e-13);              /* x^a */
    T_NEAR(sl_betainc(0.5, 0.5, 0.25), 1.0 / 3, 1e-12);       /* (2/pi) asin(sqrt x) */
    T_NEAR(sl_betainc(0.5, 0.5, 0.5), 0.5, 1e-12);
    T_NEAR(sl_betainc(2.5, 3.5, 0.7) + sl_betainc(3.5, 2.5, 0.3), 1.0, 1e-12); /* symmetry */
    /* large arguments: I_0.4(50, 60) = P(Bin(109, 0.4) >= 50) */
    T_NEAR(sl_betainc(50, 60, 0.4), 1 - binom_cdf_sum(49, 109, 0.4), 1e-11);
    T_NEAR(sl_betainc(0, 1, 0.5) != sl_betainc(0, 1, 0.5), 1, 0); /* NaN on a <= 0 */
    T_NEAR(sl_betainc(2, 2, 0), 0, 0);
    T_NEAR(sl_betainc(2, 2, 1), 1, 0);
}

static void binom_cdf_matches_direct_summation(void)
{
    for (int k = 0; k <= 20; k += 3)
        T_NEAR(sl_binom_cdf((uint64_t)k, 20, 0.3), binom_cdf_sum(k, 20, 0.3), 1e-12);
    T_NEAR(sl_binom_cdf(40, 1000, 0.05), binom_cdf_sum(40, 1000, 0.05), 1e-10);
    T_NEAR(sl_binom_cdf(20, 20, 0.3), 1, 0);
}

static void clopper_pearson_matches_known_bounds(void)
{
    /* k = 0: the bound solves (1-p)^n = delta */
    T_NEAR(sl_clopper_pearson_upper(0, 10, 0.05), 1 - pow(0.05, 0.1), 1e-9);
    T_NEAR(sl_clopper_pearson_upper(0, 100, 0.1), 1 - pow(0.1, 0.01), 1e-9);
    /* general k: the bound is where the binomial cdf equals delta */
    double u = sl_clopper_pearson_upper(5, 20, 0.05);
    T_NEAR(binom_cdf_sum(5, 20, u), 0.05, 1e-9);
    T_NEAR(u, 0.4556, 5e-4); /* tables: one-sided 95% upper bound for 5/20 */
    T_NEAR(sl_clopper_pearson_upper(3, 3, 0.05), 1, 0);
    T_NEAR(sl_clopper_pearson_upper(0, 0, 0.05), 1, 0);
}

static void ltt_stops_at_the_first_failure(void)
{
    /* 300 confident examples with no loss, then 100 with 50% loss.
     * grid 0.95 (300 accepted, k 0), 0.5 (400 accepted, k 50 -> 12.5%),
     * 0.1 (again 400): with eps 0.05 the second fails and the walk stops. */
    double conf[400];
    uint8_t loss[400];
    for (int i = 0; i < 400; i++) {
        conf[i] = i < 300 ? 0.99 : 0.6;
        loss[i] = i >= 300 && (i & 1);
    }
    const double grid[] = {0.95, 0.5, 0.1};
    struct sl_guarantee g;
    struct sl_err err = {0};
    T_OK(sl_guarantee_max_risk(&g, conf, loss, 400, grid, 3, 0.05, 0.1, &err), &err);
    T_EQ_INT(g.found, 1);
    T_NEAR(g.threshold, 0.95, 0);
    T_EQ_INT(g.n_accepted, 300);
    T_NEAR(g.coverage, 0.75, 1e-12);
    T_EQ_INT(g.n_steps, 2);
    T_EQ_INT(g.steps[1].certified, 0);
    T_NEAR(g.ucb, 1 - pow(0.1, 1.0 / 300), 1e-9);
    sl_guarantee_fill_ucb(&g);
    T_TRUE(g.steps[1].ucb > 0.05);
    sl_guarantee_free(&g);
    /* a grid point with nothing accepted cannot be certified: stop there */
    const double top[] = {0.999, 0.95};
    T_OK(sl_guarantee_max_risk(&g, conf, loss, 400, top, 2, 0.05, 0.1, &err), &err);
    T_EQ_INT(g.found, 0);
    T_TRUE(isinf(g.threshold));
    sl_guarantee_free(&g);
    const double unsorted[] = {0.5, 0.9};
    T_EQ_INT(sl_guarantee_max_risk(&g, conf, loss, 400, unsorted, 2, 0.05, 0.1, &err), SL_EINVAL);
}

static void budget_picks_the_best_certified_threshold(void)
{
    /* 1000 examples, conf i/1000; small right when conf >= 0.5, large always
     * right; small costs 0, large 1. Accepting conf >= t costs t per request
     * and gives quality 1 - max(0, 0.5 - t)... best quality under budget
     * 0.6 with Hoeffding slack sqrt(ln 10 / 2000) = 0.0339 -> t = 0.5. */
    enum { N = 1000 };
    static double conf[N], cs[N], cl[N];
    static uint8_t s_ok[N], l_ok[N];
    for (int i = 0; i < N; i++) {
        conf[i] = (i + 0.5) / N;
        s_ok[i] = conf[i] >= 0.5;
        l_ok[i] = 1;
        cs[i] = 0;
        cl[i] = 1;
    }
    double grid[10];
    for (int j = 0; j < 10; j++) grid[j] = 0.9 - 0.1 * j; /* 0.9 .. 0.0 */
    struct sl_budget_choice b;
    struct sl_err err = {0};
    T_OK(sl_guarantee_budget(&b, conf, s_ok, l_ok, cs, cl, N, grid, 10, 0.6, 0.1, &err), &err);
    T_EQ_INT(b.found, 1);
    T_NEAR(b.threshold, 0.5, 1e-12);
    T_NEAR(b.accuracy, 1.0, 1e-12);
    T_NEAR(b.cost_mean, 0.5, 1e-12);
    T_TRUE(b.cost_ucb <= 0.6);
    /* a budget under the cheapest candidate's bound: nothing certified */
    T_OK(sl_guarantee_budget(&b, conf, s_ok, l_ok, cs, cl, N, grid, 10, 0.01, 0.1, &err), &err);
    T_EQ_INT(b.found, 0);
}

/* Synthetic miscalibrated tier: confidence c ~ U(0, 1) but P(correct | c) =
 * c^2 (overconfident). risk(t) = E[1 - c^2 | c >= t] = 1 - (1 + t + t^2) / 3. */
static double true_risk(double t)
{
    return 1 - (1 + t + t * t) / 3;
}

static void guarantee_holds_over_random_splits(void)
{
    enum { TRIALS = 1000, N_CAL = 3000, N_TEST = 3000, G = 50 };
    const double eps = 0.1, delta = 0.1;
    static double conf[N_CAL];
    static uint8_t loss[N_CAL];
    double grid[G];
    for (int j = 0; j < G; j++) grid[j] = 1 - (j + 1.0) / G; /* coverage quantiles of U(0,1) */
    int found = 0, true_violations = 0, test_violations = 0;
    double cov_sum = 0;
    uint64_t rng = 20261123;
    for (int t = 0; t < TRIALS; t++) {
        for (int i = 0; i < N_CAL; i++) {
            double c = sl_eval_randu(&rng);
            conf[i] = c;
            loss[i] = sl_eval_randu(&rng) >= c * c;
        }
        struct sl_guarantee g;
        struct sl_err err = {0};
        T_OK(sl_guarantee_max_risk(&g, conf, loss, N_CAL, grid, G, eps, delta, &err), &err);
        if (g.found) {
            found++;
            cov_sum += 1 - g.threshold;
            if (true_risk(g.threshold) > eps) true_violations++;
            /* a fresh test split from the same distribution */
            int acc = 0, bad = 0;
            for (int i = 0; i < N_TEST; i++) {
                double c = sl_eval_randu(&rng);
                int l = sl_eval_randu(&rng) >= c * c;
                if (c >= g.threshold) {
                    acc++;
                    bad += l;
                }
            }
            if (acc && (double)bad / acc > eps) test_violations++;
        }
        sl_guarantee_free(&g);
    }
    /* allowed: delta * TRIALS plus three binomial standard deviations */
    double limit = delta * TRIALS + 3 * sqrt(TRIALS * delta * (1 - delta));
    fprintf(stderr, "  %d/%d trials certified a threshold (mean coverage %.3f; best possible "
                    "%.3f); true risk > eps in %d, test error > eps in %d (limit %.0f)\n",
            found, TRIALS, found ? cov_sum / found : 0.0, 1 - 0.8964, true_violations,
            test_violations, limit);
    T_TRUE(found > TRIALS * 3 / 4); /* the top grid point sometimes fails: no power at 2% */
    T_TRUE(true_violations <= limit);
    T_TRUE(test_violations <= limit);
}

int main(void)
{
    T_RUN(betainc_matches_known_values);
    T_RUN(binom_cdf_matches_direct_summation);
    T_RUN(clopper_pearson_matches_known_bounds);
    T_RUN(ltt_stops_at_the_first_failure);
    T_RUN(budget_picks_the_best_certified_threshold);
    T_RUN(guarantee_holds_over_random_splits);
    return t_done();
}
