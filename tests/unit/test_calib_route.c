/*
 * test_calib_route.c - choosing a route threshold from results: the
 * guarantee holds over many random draws and splits, the budget form keeps
 * the cost under its bound, and the write-back edits a commented config in
 * place so that it loads with the new threshold.
 */
#include <math.h>
#include <sys/wait.h>

#include "config/config.h"
#include "eval/calib_route.h"
#include "eval/replay.h"
#include "test.h"

/* Synthetic tiers: confidence c ~ U(0, 1); the small tier is right with
 * probability c (calibrated), the large one with 0.9, independently;
 * costs 1 (small) and 10 (large) per request. Then
 *   risk(t) = P(small wrong, large right | c >= t) = 0.9 (1 - t) / 2
 *   cost(t) per 1,000 = 1000 + 10000 t. */
static void synth(struct sl_calib_data *d, size_t n, uint64_t seed)
{
    struct sl_err err = {0};
    T_OK(sl_calib_data_alloc(d, n, &err), &err);
    uint64_t s = seed * 7919 + 17;
    for (size_t i = 0; i < n; i++) {
        double c = sl_eval_randu(&s);
        d->conf[i] = c;
        d->small_ok[i] = sl_eval_randu(&s) < c;
        d->large_ok[i] = sl_eval_randu(&s) < 0.9;
        d->cost_small[i] = 1;
        d->cost_large[i] = 10;
    }
}

static double true_risk(double t)
{
    if (t <= 0) t = 0;
    return 0.9 * (1 - t) / 2;
}

static void calib_gap_guarantee_holds_over_random_splits(void)
{
    const int trials = 400;
    const double eps = 0.1, delta = 0.1;
    int found = 0, violated = 0, test_over = 0;
    double cov = 0;
    for (int k = 0; k < trials; k++) {
        struct sl_calib_data d;
        struct sl_calib_result r;
        struct sl_err err = {0};
        synth(&d, 4000, (uint64_t)k);
        struct sl_calib_params p = sl_calib_default_params();
        p.gap = eps;
        p.delta = delta;
        p.seed = (uint64_t)k + 1000;
        T_OK(sl_calib_run(&r, &d, &p, &err), &err);
        T_EQ_INT(r.n_design + r.n_cal + r.n_test, 4000);
        T_EQ_INT(r.n_test, 2000);
        if (r.found) {
            found++;
            cov += r.cal_coverage;
            violated += true_risk(r.threshold) > eps;
            test_over += r.test.loss_rate > eps;
            T_TRUE(r.bound <= eps);
            /* the gap to the large tier on the test split follows from the risk */
            T_TRUE(r.test.q_large - r.test.quality <= r.test.coverage * r.test.loss_rate + 1e-12);
        }
        sl_calib_result_free(&r);
        sl_calib_data_free(&d);
    }
    /* allowed: delta plus 3 binomial standard deviations */
    double limit = delta * trials + 3 * sqrt(trials * delta * (1 - delta));
    fprintf(stderr, "  gap: certified in %d of %d, true risk over eps in %d (limit %.0f), test "
                    "loss over eps in %d, mean coverage %.3f\n",
            found, trials, violated, limit, test_over, found ? cov / found : 0);
    T_TRUE(found > trials * 9 / 10);
    T_TRUE(violated <= limit);
    /* the best possible threshold solves risk(t) = eps: t = 7/9, coverage 0.222 */
    T_TRUE(found && cov / found > 0.12 && cov / found < 0.25);
}

static void calib_cost_budget_holds_over_random_splits(void)
{
    const int trials = 300;
    const double delta = 0.1, budget = 6000; /* per 1,000: t <= 0.5 */
    int found = 0, violated = 0;
    for (int k = 0; k < trials; k++) {
        struct sl_calib_data d;
        struct sl_calib_result r;
        struct sl_err err = {0};
        synth(&d, 3000, (uint64_t)k + 50000);
        struct sl_calib_params p = sl_calib_default_params();
        p.target = SL_CALIB_COST;
        p.max_cost_1k = budget;
        p.delta = delta;
        p.seed = (uint64_t)k;
        T_OK(sl_calib_run(&r, &d, &p, &err), &err);
        if (r.found) {
            found++;
            double t = r.threshold < 0 ? 0 : r.threshold;
            violated += 1000 + 10000 * t > budget;
            T_TRUE(r.bound <= budget + 1e-9);
            T_TRUE(t > 0.3); /* quality rises with t here: the cheapest is not chosen */
            T_NEAR(r.test.cost_1k, 1000 + 10000 * t, 650); /* test split: sd ~130 */
        }
        sl_calib_result_free(&r);
        sl_calib_data_free(&d);
    }
    double limit = delta * trials + 3 * sqrt(trials * delta * (1 - delta));
    fprintf(stderr, "  cost: certified in %d of %d, true cost over budget in %d (limit %.0f)\n",
            found, trials, violated, limit);
    T_TRUE(found > trials * 9 / 10);
    T_TRUE(violated <= limit);
}

static void calib_measures_the_chosen_threshold_on_the_test_split(void)
{
    struct sl_calib_data d;
    struct sl_err err = {0};
    T_OK(sl_calib_data_alloc(&d, 4, &err), &err);
    double conf[4] = {0.9, 0.8, 0.3, NAN};
    uint8_t s[4] = {1, 0, 1, 0}, l[4] = {1, 1, 0, 1};
    for (size_t i = 0; i < 4; i++) {
        d.conf[i] = conf[i];
        d.small_ok[i] = s[i];
        d.large_ok[i] = l[i];
        d.cost_small[i] = 1;
        d.cost_large[i] = 5;
    }
    size_t idx[4] = {0, 1, 2, 3};
    struct sl_calib_eval e;
    sl_calib_eval(&e, &d, idx, 4, 0.5);
    T_EQ_INT(e.n_accepted, 2);
    T_NEAR(e.coverage, 0.5, 0);
    T_NEAR(e.quality, 0.5, 1e-12);   /* 1 + 0 (kept), 0 + 1 (escalated) */
    T_NEAR(e.cost_1k, 3500, 1e-9);   /* 4 x 1 + 2 x 5 over 4 */
    T_NEAR(e.small_error, 0.5, 0);
    T_NEAR(e.loss_rate, 0.5, 0);
    T_NEAR(e.q_large, 0.75, 0);
    T_NEAR(e.cost_large_1k, 5000, 1e-9);
    sl_calib_eval(&e, &d, idx, 4, INFINITY);
    T_EQ_INT(e.n_accepted, 0);
    T_TRUE(isnan(e.small_error));
    struct sl_calib_result r;
    struct sl_calib_params p = sl_calib_default_params();
    T_OK(sl_calib_run(&r, &d, &p, &err), &err); /* 1 design, 1 calibration, 2 test */
    T_EQ_INT(r.n_design + r.n_cal + r.n_test, 4);
    sl_calib_result_free(&r);
    d.n = 2;
    T_EQ_INT(sl_calib_run(&r, &d, &p, &err), SL_EINVAL); /* too few for three parts */
    T_TRUE(strstr(err.msg, "too few") != NULL);
    d.n = 4;
    p.delta = 0;
    T_EQ_INT(sl_calib_run(&r, &d, &p, &err), SL_EINVAL);
    sl_calib_data_free(&d);
}

static void calib_data_from_results_joins_the_tiers(void)
{
    const char *t =
        "{\"id\":1,\"target\":\"small\",\"confidence\":0.9,\"correct\":true,\"cost\":0.1,\"meta\":{\"task\":\"a\"}}\n"
        "{\"id\":1,\"target\":\"large\",\"correct\":true,\"cost\":2}\n"
        "{\"id\":2,\"target\":\"small\",\"error\":\"timeout\",\"meta\":{\"task\":\"b\"}}\n"
        "{\"id\":2,\"target\":\"large\",\"correct\":false,\"cost\":3}\n"
        "{\"id\":3,\"target\":\"small\",\"confidence\":0.2,\"correct\":null,\"meta\":{\"task\":\"a\"}}\n"
        "{\"id\":3,\"target\":\"large\",\"correct\":true}\n";
    struct sl_results r;
    struct sl_calib_data d;
    struct sl_err err = {0};
    T_OK(sl_results_load_buf(&r, t, strlen(t), "t", &err), &err);
    T_OK(sl_calib_data_from_results(&d, &r, "small", "large", NULL, NULL, &err), &err);
    T_EQ_INT(d.n, 2);
    T_EQ_INT(d.n_skipped, 1);
    T_NEAR(d.conf[0], 0.9, 0);
    T_TRUE(isinf(d.conf[1]) && d.conf[1] < 0); /* errored: would have escalated */
    T_EQ_INT(d.small_ok[1], 0);
    T_NEAR(d.cost_large[1], 3, 0);
    T_EQ_INT(d.row[1], 1);
    sl_calib_data_free(&d);
    T_OK(sl_calib_data_from_results(&d, &r, "small", "large", "task", "a", &err), &err);
    T_EQ_INT(d.n, 1);
    sl_calib_data_free(&d);
    T_EQ_INT(sl_calib_data_from_results(&d, &r, "small", "gpt", NULL, NULL, &err), SL_ENOTFOUND);
    T_TRUE(strstr(err.msg, "'gpt'") != NULL);
    T_EQ_INT(sl_calib_data_from_results(&d, &r, "small", "large", "lang", "x", &err), SL_ENOTFOUND);
    sl_results_free(&r);
}

/* ---- write-back --------------------------------------------------------- */

static const char *cfg =
    "# sluice config for the triage demo\n"
    "models:\n"
    "  small:\n"
    "    path: small.gguf   # the local model\n"
    "tasks:\n"
    "  billing: {kind: classify, model: small, labels: [a, b]}\n"
    "  refund: {kind: classify, model: small, labels: [a, b]}\n"
    "backends:\n"
    "  small: {kind: local, model: small}\n"
    "  large:\n"
    "    kind: openai\n"
    "    base_url: \"http://127.0.0.1:9/v1\"\n"
    "    model: gpt-4o   # the expensive one\n"
    "routes:\n"
    "  # the main route\n"
    "  triage:\n"
    "    policy: cascade\n"
    "    tiers: [small, large]\n"
    "    threshold: 0.8   # hand-picked, to be calibrated\n"
    "\n"
    "  # a route without thresholds yet — note the non-ASCII dash\n"
    "  other:\n"
    "    tiers:\n"
    "      - small\n"
    "      - large\n"
    "# trailing comment\n";

static struct sl_calib_evidence evidence(const char *task)
{
    return (struct sl_calib_evidence){.method = "learn-then-test, clopper-pearson",
                                      .target = "within 2 points of large",
                                      .task = task,
                                      .delta = 0.1,
                                      .n_calibration = 1600,
                                      .upper_bound = 0.0191,
                                      .coverage = 0.62,
                                      .test_coverage = 0.6,
                                      .test_quality = 0.91,
                                      .test_cost_1k = 4.5,
                                      .date = "2026-11-24T01:00:00Z",
                                      .results = "out/results.jsonl"};
}

static void load_cfg(struct sl_config *c, const char *text)
{
    struct sl_err err = {0};
    T_OK(sl_config_init(c, &err), &err);
    T_OK(sl_config_parse(c, text, strlen(text), &err), &err);
}

static void calib_edit_keeps_comments_and_round_trips(void)
{
    struct sl_err err = {0};
    char *out = NULL, *out2 = NULL;
    size_t n = 0, n2 = 0;
    struct sl_calib_evidence ev = evidence(NULL);
    T_OK(sl_calib_edit_yaml(&out, &n, cfg, strlen(cfg), "triage", 0.734, &ev, &err), &err);
    if (!out) return;
    T_EQ_INT(strlen(out), n);
    /* everything that was there is still there, in order, except the value */
    T_TRUE(strstr(out, "# sluice config for the triage demo\n") == out);
    T_TRUE(strstr(out, "    threshold: 0.734   # hand-picked, to be calibrated\n") != NULL);
    T_TRUE(strstr(out, "  # a route without thresholds yet — note the non-ASCII dash\n  other:\n") != NULL);
    T_TRUE(strstr(out, "# trailing comment\n") != NULL);
    T_TRUE(strstr(out, "    calibration:") != NULL);
    T_TRUE(strstr(out, "      upper_bound: 0.0191\n") != NULL);
    T_TRUE(strstr(out, "      results: \"out/results.jsonl\"\n") != NULL);
    T_TRUE(strstr(out, "calibration:") < strstr(out, "  other:"));
    struct sl_config c;
    load_cfg(&c, out);
    const struct sl_route_config *r = sl_config_route(&c, "triage");
    T_TRUE(r != NULL);
    if (r) T_NEAR(r->threshold, 0.734, 0);
    sl_config_free(&c);

    /* again: the calibration block is replaced, not duplicated */
    ev.upper_bound = 0.0177;
    T_OK(sl_calib_edit_yaml(&out2, &n2, out, n, "triage", 0.7, &ev, &err), &err);
    if (out2) {
        const char *c1 = strstr(out2, "    calibration:");
        T_TRUE(c1 && !strstr(c1 + 1, "    calibration:"));
        if (!c1 || strstr(c1 + 1, "    calibration:")) fprintf(stderr, "%s", out2);
        T_TRUE(strstr(out2, "0.0191") == NULL && strstr(out2, "upper_bound: 0.0177") != NULL);
        T_TRUE(strstr(out2, "    threshold: 0.7   # hand-picked") != NULL);
        /* the rest is byte-identical to the first edit outside the changed lines */
        T_EQ_INT(n2, n - 2); /* "0.734" -> "0.7", "0.0191" -> "0.0177" */
        load_cfg(&c, out2);
        T_NEAR(sl_route_threshold(sl_config_route(&c, "triage"), NULL), 0.7, 0);
        sl_config_free(&c);
    }
    /* a per-task threshold goes in before the existing calibration: block */
    char *out3 = NULL;
    size_t n3 = 0;
    ev.task = "billing";
    T_OK(sl_calib_edit_yaml(&out3, &n3, out, n, "triage", 0.5, &ev, &err), &err);
    if (out3) {
        T_TRUE(strstr(out3, "calibrated\n    thresholds:\n      billing: 0.5\n    calibration:") != NULL);
        load_cfg(&c, out3);
        T_NEAR(sl_route_threshold(sl_config_route(&c, "triage"), "billing"), 0.5, 0);
        T_NEAR(sl_route_threshold(sl_config_route(&c, "triage"), NULL), 0.734, 0);
        sl_config_free(&c);
    }
    free(out);
    free(out2);
    free(out3);
}

static void calib_edit_adds_per_task_thresholds(void)
{
    struct sl_err err = {0};
    char *out = NULL, *out2 = NULL;
    size_t n = 0, n2 = 0;
    struct sl_calib_evidence ev = evidence("billing");
    /* the last route, at the end of the file, with a block list */
    T_OK(sl_calib_edit_yaml(&out, &n, cfg, strlen(cfg), "other", 0.5, &ev, &err), &err);
    if (!out) return;
    T_TRUE(strstr(out, "      - large\n    thresholds:\n      billing: 0.5\n    calibration:") != NULL);
    T_TRUE(strstr(out, "      task: \"billing\"\n") != NULL);
    struct sl_config c;
    load_cfg(&c, out);
    const struct sl_route_config *r = sl_config_route(&c, "other");
    T_TRUE(r != NULL);
    if (r) {
        T_NEAR(sl_route_threshold(r, "billing"), 0.5, 0);
        T_NEAR(sl_route_threshold(r, "other-task"), r->threshold, 0);
    }
    sl_config_free(&c);
    /* a second task joins the block mapping, the first is kept */
    ev.task = "refund";
    T_OK(sl_calib_edit_yaml(&out2, &n2, out, n, "other", 0.625, &ev, &err), &err);
    if (out2) {
        T_TRUE(strstr(out2, "      billing: 0.5\n      refund: 0.625\n") != NULL);
        load_cfg(&c, out2);
        r = sl_config_route(&c, "other");
        T_TRUE(r && sl_route_threshold(r, "billing") == 0.5 && sl_route_threshold(r, "refund") == 0.625);
        sl_config_free(&c);
    }
    free(out);
    free(out2);
    /* a flow mapping of thresholds grows inside its braces */
    const char *flow = "routes:\n  r:\n    thresholds: {a: 0.9}\n    tiers: [s, l]\n";
    T_OK(sl_calib_edit_yaml(&out, &n, flow, strlen(flow), "r", 0.25, &ev, &err), &err);
    if (out) T_TRUE(strstr(out, "    thresholds: {a: 0.9, refund: 0.25}\n    tiers: [s, l]\n") != NULL);
    free(out);
}

static void calib_edit_reports_what_it_cannot_edit(void)
{
    struct sl_err err = {0};
    char *out = NULL;
    size_t n = 0;
    struct sl_calib_evidence ev = evidence(NULL);
    T_EQ_INT(sl_calib_edit_yaml(&out, &n, cfg, strlen(cfg), "nope", 0.5, &ev, &err), SL_ENOTFOUND);
    T_TRUE(strstr(err.msg, "'nope'") != NULL);
    const char *flow = "routes:\n  r: {tiers: [a, b]}\n";
    T_EQ_INT(sl_calib_edit_yaml(&out, &n, flow, strlen(flow), "r", 0.5, &ev, &err), SL_EFORMAT);
    T_TRUE(strstr(err.msg, "block mapping") != NULL);
    const char *none = "models: {}\n";
    T_EQ_INT(sl_calib_edit_yaml(&out, &n, none, strlen(none), "r", 0.5, &ev, &err), SL_EFORMAT);
    const char *broken = "routes:\n  r: [\n";
    T_EQ_INT(sl_calib_edit_yaml(&out, &n, broken, strlen(broken), "r", 0.5, &ev, &err), SL_EFORMAT);
    T_TRUE(out == NULL);
}

static void calib_write_config_replaces_the_file_atomically(void)
{
    const char *path = t_tmp_path("calib_route.yaml");
    FILE *f = fopen(path, "w");
    T_TRUE(f != NULL);
    if (!f) return;
    fputs(cfg, f);
    fclose(f);
    struct sl_err err = {0};
    struct sl_calib_evidence ev = evidence(NULL);
    T_OK(sl_calib_write_config(path, "triage", 0.61234567, &ev, &err), &err);
    struct sl_config c;
    T_OK(sl_config_init(&c, &err), &err);
    T_OK(sl_config_load(&c, path, &err), &err);
    T_NEAR(sl_route_threshold(sl_config_route(&c, "triage"), NULL), sl_calib_written_value(0.61234567), 0);
    T_NEAR(sl_calib_written_value(0.61234567), 0.612346, 1e-12);
    sl_config_free(&c);
    /* a failed edit leaves the file as it was */
    size_t before_len = 0, after_len = 0;
    char *before = t_read_file(path, &before_len);
    T_EQ_INT(sl_calib_write_config(path, "nope", 0.5, &ev, &err), SL_ENOTFOUND);
    char *after = t_read_file(path, &after_len);
    T_TRUE(before && after && before_len == after_len && !memcmp(before, after, before_len));
    free(before);
    free(after);
    T_EQ_INT(sl_calib_write_config("/nonexistent/x.yaml", "triage", 0.5, &ev, &err), SL_EIO);
}

/* ---- the command -------------------------------------------------------- */

static int run_cli(const char *args, const char *out_path)
{
    char cmd[20000];
    snprintf(cmd, sizeof cmd, "%s calibrate %s >%s 2>&1", SL_TEST_BINARY, args, out_path);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void calib_cli_writes_the_threshold_into_the_config(void)
{
    char cfg_path[4096], res_path[4096], out_path[4096], args[16000];
    snprintf(cfg_path, sizeof cfg_path, "%s", t_tmp_path("calib_cli.yaml"));
    snprintf(res_path, sizeof res_path, "%s", t_tmp_path("calib_cli.jsonl"));
    snprintf(out_path, sizeof out_path, "%s", t_tmp_path("calib_cli.out"));
    FILE *f = fopen(cfg_path, "w"), *r = fopen(res_path, "w");
    T_TRUE(f && r);
    if (!f || !r) return;
    fputs(cfg, f);
    fclose(f);
    struct sl_calib_data d;
    synth(&d, 3000, 99);
    for (size_t i = 0; i < d.n; i++) {
        fprintf(r, "{\"id\":\"e%zu\",\"target\":\"small\",\"confidence\":%.6f,\"correct\":%s,\"cost\":0.001,"
                   "\"meta\":{\"task\":\"%s\"}}\n",
                i, d.conf[i], d.small_ok[i] ? "true" : "false", i % 2 ? "billing" : "refund");
        fprintf(r, "{\"id\":\"e%zu\",\"target\":\"large\",\"correct\":%s,\"cost\":0.02}\n", i,
                d.large_ok[i] ? "true" : "false");
    }
    fclose(r);
    sl_calib_data_free(&d);

    snprintf(args, sizeof args, "%s --route triage --results %s --target-gap 10 --write", cfg_path, res_path);
    T_EQ_INT(run_cli(args, out_path), 0);
    char *o = t_read_file(out_path, NULL);
    T_TRUE(o && strstr(o, "chosen threshold: ") && strstr(o, "held-out test split") &&
           strstr(o, "wrote routes.triage.threshold = "));
    double thr = o && strstr(o, "chosen threshold: ") ? strtod(strstr(o, "chosen threshold: ") + 18, NULL) : NAN;
    free(o);
    struct sl_config c;
    struct sl_err err = {0};
    T_OK(sl_config_init(&c, &err), &err);
    T_OK(sl_config_load(&c, cfg_path, &err), &err);
    const struct sl_route_config *rt = sl_config_route(&c, "triage");
    T_TRUE(rt != NULL);
    if (rt) T_NEAR(rt->threshold, thr, 0);
    T_TRUE(thr > 0.6 && thr < 0.95); /* risk(t) = 0.45 (1 - t) <= 0.1 needs t >= 0.78 */
    sl_config_free(&c);
    char *text = t_read_file(cfg_path, NULL);
    T_TRUE(text && strstr(text, "# hand-picked, to be calibrated") && strstr(text, "calibration:"));
    free(text);

    /* the per-task form, with the budget target */
    snprintf(args, sizeof args, "%s --route triage --results %s --max-cost 12 --task billing --write", cfg_path,
             res_path);
    T_EQ_INT(run_cli(args, out_path), 0);
    T_OK(sl_config_init(&c, &err), &err);
    T_OK(sl_config_load(&c, cfg_path, &err), &err);
    rt = sl_config_route(&c, "triage");
    T_TRUE(rt && rt->n_thresholds == 1 && sl_route_threshold(rt, "billing") < rt->threshold);
    sl_config_free(&c);

    /* usage errors exit 2, runtime errors 1, the old form still answers */
    snprintf(args, sizeof args, "%s --route triage --results %s", cfg_path, res_path);
    T_EQ_INT(run_cli(args, out_path), 2);
    snprintf(args, sizeof args, "%s --route nope --results %s --target-gap 5", cfg_path, res_path);
    T_EQ_INT(run_cli(args, out_path), 1);
    o = t_read_file(out_path, NULL);
    T_TRUE(o && strstr(o, "no route 'nope'"));
    free(o);
    snprintf(args, sizeof args, "%s --route triage --results %s --target-gap 5 --small gpt", cfg_path, res_path);
    T_EQ_INT(run_cli(args, out_path), 1);
    T_EQ_INT(run_cli("--labels a,b --input x.jsonl", out_path), 2);
    o = t_read_file(out_path, NULL);
    T_TRUE(o && strstr(o, "-m MODEL is required"));
    free(o);
}

int main(void)
{
    T_RUN(calib_gap_guarantee_holds_over_random_splits);
    T_RUN(calib_cost_budget_holds_over_random_splits);
    T_RUN(calib_measures_the_chosen_threshold_on_the_test_split);
    T_RUN(calib_data_from_results_joins_the_tiers);
    T_RUN(calib_edit_keeps_comments_and_round_trips);
    T_RUN(calib_edit_adds_per_task_thresholds);
    T_RUN(calib_edit_reports_what_it_cannot_edit);
    T_RUN(calib_write_config_replaces_the_file_atomically);
    T_RUN(calib_cli_writes_the_threshold_into_the_config);
    return t_done();
}
