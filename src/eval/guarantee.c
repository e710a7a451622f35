/*
 * guarantee.c - exact binomial bounds and Learn-then-Test threshold
 * selection for cascades (eval layer). See guarantee.h for the procedure
 * and docs/eval.md for why it holds.
 */
#include "eval/guarantee.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ==== special functions ================================================== */

/* Continued fraction of I_x(a, b) (Numerical Recipes form, evaluated with
 * the modified Lentz method); converges fast for x < (a + 1) / (a + b + 2). */
static double betacf(double a, double b, double x)
{
    const double tiny = 1e-300, eps = 1e-15;
    double qab = a + b, qap = a + 1, qam = a - 1;
    double c = 1, d = 1 - qab * x / qap;
    if (fabs(d) < tiny) d = tiny;
    d = 1 / d;
    double h = d;
    for (int m = 1; m <= 10000; m++) {
        double m2 = 2.0 * m;
        double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1 + aa * d;
        if (fabs(d) < tiny) d = tiny;
        c = 1 + aa / c;
        if (fabs(c) < tiny) c = tiny;
        d = 1 / d;
        h *= d * c;
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1 + aa * d;
        if (fabs(d) < tiny) d = tiny;
        c = 1 + aa / c;
        if (fabs(c) < tiny) c = tiny;
        d = 1 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1) < eps) break;
    }
    return h;
}

double sl_betainc(double a, double b, double x)
{
    if (!(a > 0) || !(b > 0) || !(x >= 0) || !(x <= 1)) return NAN;
    if (x == 0) return 0;
    if (x == 1) return 1;
    /* front factor x^a (1-x)^b / (a B(a, b)), in logs */
    double lbt = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x);
    if (x < (a + 1) / (a + b + 2)) return exp(lbt) * betacf(a, b, x) / a;
    return 1 - exp(lbt) * betacf(b, a, 1 - x) / b;
}

double sl_binom_cdf(uint64_t k, uint64_t n, double p)
{
    if (k >= n) return 1;
    if (p <= 0) return 1;
    if (p >= 1) return 0;
    /* P(X <= k) = I_{1-p}(n - k, k + 1) */
    return sl_betainc((double)(n - k), (double)k + 1, 1 - p);
}

double sl_clopper_pearson_upper(uint64_t k, uint64_t n, double delta)
{
    if (n == 0 || k >= n) return 1;
    /* binom_cdf(k, n, p) falls from 1 to 0 as p goes 0 -> 1: bisect for delta */
    double lo = 0, hi = 1;
    for (int it = 0; it < 200 && hi - lo > 1e-13; it++) {
        double mid = 0.5 * (lo + hi);
        if (sl_binom_cdf(k, n, mid) > delta)
            lo = mid;
        else
            hi = mid;
    }
    return hi;
}

/* ==== fixed-sequence testing ============================================= */

struct pair {
    double conf;
    size_t i;
};

/* Descending confidence; ties in index order so the result is deterministic. */
static int cmp_desc(const void *a, const void *b)
{
    const struct pair *x = a, *y = b;
    if (x->conf != y->conf) return x->conf < y->conf ? 1 : -1;
    return (x->i > y->i) - (x->i < y->i);
}

static int cmp_dbl_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

static int sorted_pairs(struct pair **out, const double *conf, size_t n, struct sl_err *err)
{
    struct pair *p = malloc((n ? n : 1) * sizeof *p);
    if (!p) return sl_err_set(err, SL_ENOMEM, "%s: out of memory for %zu examples", __func__, n);
    for (size_t i = 0; i < n; i++) {
        if (isnan(conf[i])) {
            free(p);
            return sl_err_set(err, SL_EINVAL, "%s: confidence %zu is NaN", __func__, i);
        }
        p[i].conf = conf[i];
        p[i].i = i;
    }
    qsort(p, n, sizeof *p, cmp_desc);
    *out = p;
    return 0;
}

void sl_guarantee_free(struct sl_guarantee *g)
{
    if (!g) return;
    free(g->steps);
    g->steps = NULL;
    g->n_steps = 0;
}

int sl_guarantee_grid(double *grid, size_t n_grid, const double *conf_design, size_t n)
{
    if (n == 0 || n_grid == 0) return SL_EINVAL;
    double *s = malloc(n * sizeof *s);
    if (!s) return SL_ENOMEM;
    for (size_t i = 0; i < n; i++) s[i] = conf_design[i];
    qsort(s, n, sizeof *s, cmp_dbl_desc);
    for (size_t j = 0; j < n_grid; j++) {
        /* coverage (j + 1) / n_grid of the design sample */
        size_t k = (size_t)ceil((double)(j + 1) / (double)n_grid * (double)n);
        if (k < 1) k = 1;
        if (k > n) k = n;
        grid[j] = s[k - 1];
    }
    free(s);
    return 0;
}

int sl_guarantee_max_risk(struct sl_guarantee *out, const double *conf, const uint8_t *loss,
                          size_t n, const double *grid, size_t n_grid, double epsilon,
                          double delta, struct sl_err *err)
{
    struct pair *p = NULL;
    struct sl_guarantee g = {0};
    memset(out, 0, sizeof *out);
    if (!(epsilon > 0 && epsilon < 1) || !(delta > 0 && delta < 1))
        return sl_err_set(err, SL_EINVAL, "%s: epsilon %g and delta %g must be in (0, 1)",
                          __func__, epsilon, delta);
    for (size_t j = 0; j < n_grid; j++)
        if (isnan(grid[j]) || (j && grid[j] > grid[j - 1]))
            return sl_err_set(err, SL_EINVAL, "%s: candidate %zu (%g) is NaN or out of descending order",
                              __func__, j, grid[j]);
    int rc = sorted_pairs(&p, conf, n, err);
    if (rc) return rc;
    g.steps = malloc((n_grid ? n_grid : 1) * sizeof *g.steps);
    if (!g.steps) {
        free(p);
        return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    }
    g.threshold = INFINITY;
    g.epsilon = epsilon;
    g.delta = delta;
    g.n_cal = n;
    uint64_t acc = 0, lost = 0;
    size_t j = 0;
    for (size_t c = 0; c < n_grid; c++) {
        double t = grid[c];
        if (c && t == grid[c - 1]) continue; /* the same hypothesis again */
        while (j < n && p[j].conf >= t) {
            acc++;
            lost += loss[p[j].i] != 0;
            j++;
        }
        struct sl_guarantee_step *s = &g.steps[g.n_steps++];
        s->threshold = t;
        s->n_accepted = acc;
        s->n_loss = lost;
        s->risk = acc ? (double)lost / (double)acc : NAN;
        s->ucb = NAN; /* the chosen one below; all of them with sl_guarantee_fill_ucb */
        s->p_value = acc ? sl_binom_cdf(lost, acc, epsilon) : 1.0;
        s->certified = s->p_value <= delta;
        if (!s->certified) break; /* fixed sequence: stop at the first failure */
        g.found = true;
        g.threshold = t;
        g.n_accepted = acc;
        g.n_loss = lost;
        g.risk = s->risk;
    }
    if (g.found) g.ucb = sl_clopper_pearson_upper(g.n_loss, g.n_accepted, delta);
    g.coverage = n ? (double)g.n_accepted / (double)n : 0;
    free(p);
    *out = g;
    return 0;
}

void sl_guarantee_fill_ucb(struct sl_guarantee *g)
{
    for (size_t i = 0; i < g->n_steps; i++)
        g->steps[i].ucb = sl_clopper_pearson_upper(g->steps[i].n_loss, g->steps[i].n_accepted, g->delta);
}

int sl_guarantee_budget(struct sl_budget_choice *out, const double *conf, const uint8_t *small_ok,
                        const uint8_t *large_ok, const double *cost_small,
                        const double *cost_large, size_t n, const double *grid, size_t n_grid,
                        double budget, double delta, struct sl_err *err)
{
    memset(out, 0, sizeof *out);
    out->threshold = INFINITY;
    if (n == 0) return sl_err_set(err, SL_EINVAL, "%s: no calibration examples", __func__);
    if (!(delta > 0 && delta < 1))
        return sl_err_set(err, SL_EINVAL, "%s: delta %g must be in (0, 1)", __func__, delta);
    for (size_t j = 1; j < n_grid; j++)
        if (!(grid[j] <= grid[j - 1]))
            return sl_err_set(err, SL_EINVAL, "%s: candidate %zu out of descending order", __func__, j);
    double cmax = 0;
    for (size_t i = 0; i < n; i++) {
        double c = cost_small[i] + cost_large[i];
        if (c > cmax) cmax = c;
    }
    double slack = cmax * sqrt(log(1 / delta) / (2.0 * (double)n));
    /* from the cheapest candidate (lowest threshold, the grid's end) up */
    for (size_t c = n_grid; c-- > 0;) {
        double t = grid[c], cost = 0;
        size_t ok = 0, acc = 0;
        for (size_t i = 0; i < n; i++) {
            bool a = conf[i] >= t;
            acc += a;
            cost += cost_small[i] + (a ? 0 : cost_large[i]);
            ok += a ? small_ok[i] != 0 : large_ok[i] != 0;
        }
        double mean = cost / (double)n, q = (double)ok / (double)n;
        if (mean + slack > budget) break; /* fixed sequence: stop at the first failure */
        if (!out->found || q > out->accuracy) {
            out->found = true;
            out->threshold = t;
            out->cost_mean = mean;
            out->cost_ucb = mean + slack;
            out->accuracy = q;
            out->coverage = (double)acc / (double)n;
        }
    }
    return 0;
}
