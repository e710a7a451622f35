/*
 * frontier.c - threshold sweep of a small -> large cascade: cost against
 * quality, the Pareto frontier, and the small tier's risk-coverage curve
 * (eval layer). See frontier.h.
 */
#include "eval/frontier.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct item {
    double conf;
    size_t i;
};

static int cmp_desc(const void *a, const void *b)
{
    const struct item *x = a, *y = b;
    if (x->conf != y->conf) return x->conf < y->conf ? 1 : -1;
    return (x->i > y->i) - (x->i < y->i);
}

static int cmp_cost(const void *a, const void *b)
{
    const struct sl_cascade_point *x = a, *y = b;
    if (x->cost != y->cost) return x->cost < y->cost ? -1 : 1;
    if (x->quality != y->quality) return x->quality > y->quality ? -1 : 1;
    return (x->threshold < y->threshold) - (x->threshold > y->threshold);
}

void sl_frontier_free(struct sl_frontier *f)
{
    if (!f) return;
    free(f->points);
    free(f->risk);
    memset(f, 0, sizeof *f);
}

/* Marks the points that no other point beats on both cost and quality.
 * pts ascending by cost (ties: best quality first). */
static void mark_pareto(struct sl_cascade_point *pts, size_t n, struct sl_cascade_point *extra,
                        size_t n_extra)
{
    double best = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        bool dominated = pts[i].quality <= best;
        for (size_t e = 0; e < n_extra && !dominated; e++)
            dominated = (extra[e].cost <= pts[i].cost && extra[e].quality > pts[i].quality) ||
                        (extra[e].cost < pts[i].cost && extra[e].quality >= pts[i].quality);
        pts[i].pareto = !dominated;
        if (pts[i].quality > best) best = pts[i].quality;
    }
    for (size_t e = 0; e < n_extra; e++) {
        bool dominated = false;
        for (size_t i = 0; i < n && !dominated; i++)
            dominated = (pts[i].cost <= extra[e].cost && pts[i].quality > extra[e].quality) ||
                        (pts[i].cost < extra[e].cost && pts[i].quality >= extra[e].quality);
        for (size_t o = 0; o < n_extra && !dominated; o++)
            dominated = o != e && ((extra[o].cost <= extra[e].cost && extra[o].quality > extra[e].quality) ||
                                   (extra[o].cost < extra[e].cost && extra[o].quality >= extra[e].quality));
        extra[e].pareto = !dominated;
    }
}

int sl_frontier_compute(struct sl_frontier *out, const double *conf, const uint8_t *small_ok,
                        const double *small_cost, const uint8_t *large_ok,
                        const double *large_cost, size_t n, struct sl_err *err)
{
    struct sl_frontier f = {0};
    struct item *it = NULL;
    int rc = SL_ENOMEM;
    memset(out, 0, sizeof *out);
    if (n == 0) return sl_err_set(err, SL_EINVAL, "%s: no examples", __func__);
    it = malloc(n * sizeof *it);
    f.points = malloc((n + 1) * sizeof *f.points);
    f.risk = malloc(n * sizeof *f.risk);
    if (!it || !f.points || !f.risk) {
        rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory for %zu examples", __func__, n);
        goto fail; /* allocation failure */
    }
    double dn = (double)n, cost_s = 0, cost_l = 0;
    uint64_t ok_s = 0, ok_l = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(conf[i])) {
            rc = sl_err_set(err, SL_EINVAL, "%s: confidence %zu is NaN", __func__, i);
            goto fail; /* bad input */
        }
        it[i].conf = conf[i];
        it[i].i = i;
        cost_s += small_cost[i];
        cost_l += large_cost[i];
        ok_s += small_ok[i] != 0;
        ok_l += large_ok[i] != 0;
    }
    qsort(it, n, sizeof *it, cmp_desc);
    f.n = n;
    f.small_only = (struct sl_cascade_point){INFINITY, 1.0, cost_s / dn, (double)ok_s / dn, false};
    f.small_only.threshold = -INFINITY;
    f.large_only = (struct sl_cascade_point){INFINITY, 0.0, cost_l / dn, (double)ok_l / dn, false};

    /* t = +inf: everything escalated through the small tier */
    double cost = cost_s + cost_l;
    int64_t ok = (int64_t)ok_l, wrong_acc = 0;
    f.points[f.n_points++] = (struct sl_cascade_point){INFINITY, 0.0, cost / dn, (double)ok / dn, false};
    double aurc = 0, prev_cov = 0;
    for (size_t j = 0; j < n;) {
        double t = it[j].conf;
        while (j < n && it[j].conf == t) {
            size_t i = it[j].i;
            cost -= large_cost[i];
            ok += (int64_t)(small_ok[i] != 0) - (int64_t)(large_ok[i] != 0);
            wrong_acc += small_ok[i] == 0;
            j++;
        }
        double cov = (double)j / dn;
        f.points[f.n_points++] = (struct sl_cascade_point){t, cov, cost / dn, (double)ok / dn, false};
        double risk = (double)wrong_acc / (double)j;
        f.risk[f.n_risk++] = (struct sl_risk_point){cov, risk, t};
        aurc += (cov - prev_cov) * risk;
        prev_cov = cov;
    }
    f.aurc = aurc;
    qsort(f.points, f.n_points, sizeof *f.points, cmp_cost);
    struct sl_cascade_point extra[2] = {f.small_only, f.large_only};
    mark_pareto(f.points, f.n_points, extra, 2);
    f.small_only.pareto = extra[0].pareto;
    f.large_only.pareto = extra[1].pareto;
    free(it);
    *out = f;
    return 0;
fail:
    free(it);
    sl_frontier_free(&f);
    return rc;
}
