/*
 * test_replay.c - router curves, PGR/APGR/CPT on hand-computed cases, the
 * random baseline, the recorded-answer loader, and RouteLLM's MMLU data.
 */
#include "eval/replay.h"
#include "test.h"

/* small ok 1 0 0 1, large ok 1 1 1 0, scores 0.1 0.9 0.8 0.2
 * order by score: ex1 (+1), ex2 (+1), ex3 (-1), ex0 (0); q_small 1/2, q_large 3/4
 * curve (0, .5) (.25, .75) (.5, 1) (.75, .75) (1, .75); PGR 0 1 2 1 1
 * APGR = .25 (0+1)/2 + .25 (1+2)/2 + .25 (2+1)/2 + .25 (1+1)/2 = 1.125
 * CPT(50%): quality .625 at .125; CPT(80%): .7 at .2; 95% of .75 = .7125 at .2125 */
static void curve_matches_hand_computed_example(void)
{
    const double s[] = {0.1, 0.9, 0.8, 0.2};
    const uint8_t so[] = {1, 0, 0, 1}, lo[] = {1, 1, 1, 0};
    struct sl_router_curve c;
    struct sl_err err = {0};
    T_OK(sl_router_curve_compute(&c, "hand", s, so, lo, 4, &err), &err);
    T_EQ_STR(c.name, "hand");
    T_EQ_INT(c.n_pts, 5);
    const double q[] = {0.5, 0.75, 1.0, 0.75, 0.75};
    for (int i = 0; i < 5; i++) {
        T_NEAR(c.pts[i].calls, 0.25 * i, 1e-12);
        T_NEAR(c.pts[i].quality, q[i], 1e-12);
    }
    T_NEAR(c.apgr, 1.125, 1e-12);
    T_NEAR(c.cpt50, 0.125, 1e-12);
    T_NEAR(c.cpt80, 0.2, 1e-12);
    T_NEAR(c.calls95, 0.2125, 1e-12);
    T_NEAR(c.saving95, 0.7875, 1e-12);
    sl_router_curve_free(&c);
}

static void tied_scores_give_the_random_line(void)
{
    const double s[] = {1, 1, 1, 1, 1, 1};
    const uint8_t so[] = {1, 0, 0, 1, 0, 1}, lo[] = {1, 1, 1, 1, 0, 1};
    struct sl_router_curve c, r;
    T_OK(sl_router_curve_compute(&c, "flat", s, so, lo, 6, NULL), &(struct sl_err){0});
    T_OK(sl_router_curve_random(&r, so, lo, 6, NULL), &(struct sl_err){0});
    T_EQ_INT(c.n_pts, 2);
    T_NEAR(c.apgr, 0.5, 1e-12);
    T_NEAR(r.apgr, 0.5, 1e-12);
    T_NEAR(r.cpt50, 0.5, 1e-12);
    T_NEAR(r.cpt80, 0.8, 1e-12);
    /* q_small 1/2, q_large 5/6: 95% of 5/6 = .79167 -> (.79167 - .5) / (1/3) */
    T_NEAR(r.calls95, (0.95 * 5 / 6 - 0.5) * 3, 1e-12);
    sl_router_curve_free(&c);
    sl_router_curve_free(&r);
}

static void no_gap_gives_undefined_cpt(void)
{
    const double s[] = {0.3, 0.7};
    const uint8_t so[] = {1, 1}, lo[] = {1, 0};
    struct sl_router_curve c;
    T_OK(sl_router_curve_compute(&c, "x", s, so, lo, 2, NULL), &(struct sl_err){0});
    T_TRUE(isnan(c.cpt50));
    T_TRUE(isnan(c.apgr));
    T_NEAR(c.calls95, 0, 0); /* the small tier alone is already above 95% */
    sl_router_curve_free(&c);
}

static void quantile_apgr_tracks_the_exact_curve(void)
{
    /* a router with signal on 2000 synthetic examples: the 10-quantile
     * sampling of RouteLLM's script is within a few thousandths */
    enum { N = 2000 };
    static double s[N];
    static uint8_t so[N], lo[N];
    uint64_t rng = 7;
    for (int i = 0; i < N; i++) {
        double hard = sl_eval_randu(&rng);
        so[i] = sl_eval_randu(&rng) > hard * 0.8;
        lo[i] = sl_eval_randu(&rng) > hard * 0.3;
        s[i] = hard + 0.3 * sl_eval_randu(&rng);
    }
    struct sl_router_curve c;
    T_OK(sl_router_curve_compute(&c, "syn", s, so, lo, N, NULL), &(struct sl_err){0});
    T_TRUE(c.apgr > 0.55);
    T_NEAR(c.apgr_q10, c.apgr, 0.02);
    sl_router_curve_free(&c);
}

static void loader_reads_quoted_prompts_and_rejects_bad_cells(void)
{
    const char *csv = "prompt,weak/model,strong-model,extra\n"
                      "\"What is\n2+2?\",True,False,x\n"
                      "\"Say \"\"hi\"\"\",false,true,y\n";
    struct sl_replay_data d = {0};
    struct sl_err err = {0};
    T_OK(sl_replay_load_buf(&d, csv, strlen(csv), "a.csv", &err), &err);
    T_EQ_INT(d.n, 2);
    T_EQ_STR(d.prompt[0], "What is\n2+2?");
    T_EQ_STR(d.prompt[1], "Say \"hi\"");
    T_EQ_INT(d.small_ok[0], 1);
    T_EQ_INT(d.large_ok[0], 0);
    T_EQ_INT(d.large_ok[1], 1);
    T_EQ_STR(d.small_name, "weak/model");
    T_EQ_STR(d.large_name, "strong-model");
    /* a second file must name the same tiers */
    const char *other = "prompt,a,b\nq,True,True\n";
    T_EQ_INT(sl_replay_load_buf(&d, other, strlen(other), "b.csv", &err), SL_EFORMAT);
    T_TRUE(strstr(err.msg, "earlier files") != NULL);
    sl_replay_free(&d);

    const char *bad = "prompt,a,b\nq,maybe,True\n";
    struct sl_replay_data e = {0};
    T_EQ_INT(sl_replay_load_buf(&e, bad, strlen(bad), "c.csv", &err), SL_EFORMAT);
    T_TRUE(strstr(err.msg, "record 1") != NULL);
    sl_replay_free(&e);
    const char *nohdr = "question,a,b\n";
    T_EQ_INT(sl_replay_load_buf(&e, nohdr, strlen(nohdr), "d.csv", &err), SL_EFORMAT);
    sl_replay_free(&e);
    T_EQ_INT(sl_replay_load(&e, "/nonexistent/dir", &err), SL_EIO);
}

static void permutation_is_deterministic(void)
{
    size_t a[50], b[50];
    sl_eval_permutation(a, 50, 42);
    sl_eval_permutation(b, 50, 42);
    int same = 1, sum = 0;
    for (int i = 0; i < 50; i++) {
        same &= a[i] == b[i];
        sum += (int)a[i];
    }
    T_EQ_INT(same, 1);
    T_EQ_INT(sum, 49 * 50 / 2);
    sl_eval_permutation(b, 50, 43);
    same = 1;
    for (int i = 0; i < 50; i++) same &= a[i] == b[i];
    T_EQ_INT(same, 0);
}

static void routellm_mmlu_loads_with_both_tiers(void)
{
    const char *dir = t_asset("datasets/routellm/mmlu_responses");
    struct sl_replay_data d;
    struct sl_err err = {0};
    if (!dir || sl_replay_load(&d, dir, &err) == SL_EIO) {
        t_skip("../shared/assets/datasets/routellm absent");
        return;
    }
    T_OK(err.code, &err);
    T_EQ_INT(d.n, 14042);
    T_EQ_INT(d.n_sources, 57);
    T_EQ_STR(d.small_name, "mistralai/Mixtral-8x7B-Instruct-v0.1");
    T_EQ_STR(d.large_name, "gpt-4-1106-preview");
    size_t s = 0, l = 0;
    for (size_t i = 0; i < d.n; i++) {
        s += d.small_ok[i];
        l += d.large_ok[i];
    }
    fprintf(stderr, "  MMLU: Mixtral %.4f, GPT-4 %.4f over %zu questions\n", (double)s / d.n,
            (double)l / d.n, d.n);
    T_TRUE(s > d.n * 6 / 10 && s < d.n * 3 / 4);
    T_TRUE(l > d.n * 3 / 4 && l < d.n * 9 / 10);
    /* the oracle router recovers the whole gap with the fewest calls */
    double *sc = malloc(d.n * sizeof *sc);
    for (size_t i = 0; i < d.n; i++) sc[i] = (double)d.large_ok[i] - (double)d.small_ok[i];
    struct sl_router_curve c;
    T_OK(sl_router_curve_compute(&c, "oracle", sc, d.small_ok, d.large_ok, d.n, &err), &err);
    T_TRUE(c.apgr > 1.0);
    T_TRUE(c.cpt80 < 0.2);
    sl_router_curve_free(&c);
    free(sc);
    sl_replay_free(&d);
}

int main(void)
{
    T_RUN(curve_matches_hand_computed_example);
    T_RUN(tied_scores_give_the_random_line);
    T_RUN(no_gap_gives_undefined_cpt);
    T_RUN(quantile_apgr_tracks_the_exact_curve);
    T_RUN(loader_reads_quoted_prompts_and_rejects_bad_cells);
    T_RUN(permutation_is_deterministic);
    T_RUN(routellm_mmlu_loads_with_both_tiers);
    return t_done();
}
