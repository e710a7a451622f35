/*
 * test_frontier.c - the cascade threshold sweep, Pareto frontier and
 * risk-coverage curve on a four-example case worked out by hand.
 */
#include "eval/frontier.h"
#include "test.h"

/* conf 0.9 0.8 0.6 0.3; small ok 1 1 0 0; large ok 1 1 1 0; costs 1 and 10.
 * t = inf: cost 11, quality 3/4        t = 0.9: cost 34/4, quality 3/4
 * t = 0.8: cost 6, quality 3/4         t = 0.6: cost 3.5, quality 1/2
 * t = 0.3: cost 1, quality 1/2         small only (1, 1/2), large only (10, 3/4)
 * Pareto: (1, 1/2) both ways and (6, 3/4). Risk-coverage: 0, 0, 1/3, 1/2
 * at 1/4 .. 1; AURC = (0 + 0 + 1/3 + 1/2) / 4. */
static void frontier_matches_hand_computed_example(void)
{
    const double conf[] = {0.6, 0.9, 0.3, 0.8};
    const uint8_t s_ok[] = {0, 1, 0, 1}, l_ok[] = {1, 1, 0, 1};
    const double cs[] = {1, 1, 1, 1}, cl[] = {10, 10, 10, 10};
    struct sl_frontier f;
    struct sl_err err = {0};
    T_OK(sl_frontier_compute(&f, conf, s_ok, cs, l_ok, cl, 4, &err), &err);
    T_EQ_INT(f.n_points, 5);
    const double cost[] = {1, 3.5, 6, 8.5, 11}, qual[] = {0.5, 0.5, 0.75, 0.75, 0.75};
    const double thr[] = {0.3, 0.6, 0.8, 0.9, INFINITY};
    const bool pareto[] = {true, false, true, false, false};
    for (int i = 0; i < 5; i++) {
        T_NEAR(f.points[i].cost, cost[i], 1e-12);
        T_NEAR(f.points[i].quality, qual[i], 1e-12);
        T_TRUE(f.points[i].threshold == thr[i]);
        T_EQ_INT(f.points[i].pareto, pareto[i]);
    }
    T_NEAR(f.small_only.cost, 1, 0);
    T_NEAR(f.small_only.quality, 0.5, 0);
    T_EQ_INT(f.small_only.pareto, 1);
    T_NEAR(f.large_only.cost, 10, 0);
    T_EQ_INT(f.large_only.pareto, 0);
    T_EQ_INT(f.n_risk, 4);
    const double risk[] = {0, 0, 1.0 / 3, 0.5};
    for (int i = 0; i < 4; i++) {
        T_NEAR(f.risk[i].coverage, 0.25 * (i + 1), 1e-12);
        T_NEAR(f.risk[i].risk, risk[i], 1e-12);
    }
    T_NEAR(f.aurc, (1.0 / 3 + 0.5) / 4, 1e-12);
    sl_frontier_free(&f);
}

static void frontier_groups_tied_confidences(void)
{
    /* two examples share 0.5: one threshold accepts both */
    const double conf[] = {0.5, 0.5, 0.9};
    const uint8_t s_ok[] = {1, 0, 1}, l_ok[] = {1, 1, 1};
    const double cs[] = {0, 0, 0}, cl[] = {1, 1, 1};
    struct sl_frontier f;
    T_OK(sl_frontier_compute(&f, conf, s_ok, cs, l_ok, cl, 3, NULL), &(struct sl_err){0});
    T_EQ_INT(f.n_points, 3); /* inf, 0.9, 0.5 */
    T_EQ_INT(f.n_risk, 2);
    T_NEAR(f.risk[1].risk, 1.0 / 3, 1e-12);
    sl_frontier_free(&f);
}

static void frontier_rejects_nan_and_empty_input(void)
{
    const double conf[] = {NAN};
    const uint8_t ok[] = {1};
    const double c[] = {1};
    struct sl_frontier f;
    struct sl_err err = {0};
    T_EQ_INT(sl_frontier_compute(&f, conf, ok, c, ok, c, 1, &err), SL_EINVAL);
    T_EQ_INT(sl_frontier_compute(&f, conf, ok, c, ok, c, 0, &err), SL_EINVAL);
}

int main(void)
{
    T_RUN(frontier_matches_hand_computed_example);
    T_RUN(frontier_groups_tied_confidences);
    T_RUN(frontier_rejects_nan_and_empty_input);
    return t_done();
}
