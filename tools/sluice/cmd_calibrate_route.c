/*
 * cmd_calibrate_route.c - `sluice calibrate CONFIG.yaml --route R --results
 * FILE ...`: a cascade route's first-tier threshold from evaluation results,
 * with a guarantee, measured on a held-out split, optionally written back
 * into the config (tools layer; src/eval/calib_route.h does the work).
 *
 * `sluice calibrate` without a .yaml first argument is the older command
 * that fits a classification temperature (cmd_tasks.c); it hands over here
 * when the first argument is a config file.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "config/config.h"
#include "eval/calib_route.h"
#include "eval/failures.h"
#include "eval/report.h"
#include "eval/results.h"

static const char *route_usage =
    "usage: sluice calibrate CONFIG.yaml --route R --results FILE\n"
    "                        (--target-gap X | --max-cost C) [options]\n"
    "Choose the cascade threshold of a route's first tier from `sluice eval` results, with a\n"
    "statistical guarantee, and measure it on a held-out split (docs/eval.md).\n"
    "\n"
    "  --route R          the route (a routes: entry of CONFIG)\n"
    "  --results FILE     results.jsonl written by `sluice eval ... --out DIR`\n"
    "  --target-gap X     quality within X accuracy points of the large tier, at the lowest\n"
    "                     cost: with probability >= 1-delta the small tier's loss on accepted\n"
    "                     requests (wrong where the large tier is right) stays under X points\n"
    "  --max-cost C       the best quality whose cost per 1,000 requests stays under C (in the\n"
    "                     results' currency), with a Hoeffding bound at 1-delta\n"
    "  --delta D          allowed failure probability of the guarantee (default 0.1)\n"
    "  --calib-frac F     share of examples in the calibration part (default 0.5); the rest is\n"
    "                     the test split, never seen while choosing\n"
    "  --design-frac F    share of the calibration part that only places the candidate\n"
    "                     thresholds (default 0.2)\n"
    "  --grid N           candidate thresholds (default 50)\n"
    "  --seed S           the split (default 0)\n"
    "  --task T           calibrate the per-task threshold of task T (examples whose meta\n"
    "                     \"task\" is T); written as thresholds: {T: value}\n"
    "  --small NAME       results target of the first tier (default: the route's first tier)\n"
    "  --large NAME       results target of the large tier (default: the route's last tier)\n"
    "  --failures N       also print the first tier's failure modes (N confident mistakes)\n"
    "  --json OUT         write the choice and the measurements as JSON\n"
    "  --write            write the threshold and the evidence (calibration:) into CONFIG,\n"
    "                     keeping its comments and layout\n";

static void print_eval(const char *name, double quality, double cost_1k, double coverage)
{
    if (isnan(coverage))
        printf("  %-22s %8.2f%% %12.4g %10s\n", name, 100 * quality, cost_1k, "-");
    else
        printf("  %-22s %8.2f%% %12.4g %9.1f%%\n", name, 100 * quality, cost_1k, 100 * coverage);
}

static void json_num(FILE *f, const char *key, double v, bool comma)
{
    if (isnan(v) || isinf(v))
        fprintf(f, "\"%s\":null%s", key, comma ? "," : "");
    else
        fprintf(f, "\"%s\":%.9g%s", key, v, comma ? "," : "");
}

static int write_json(const char *path, const struct sl_calib_result *r, const struct sl_calib_params *p,
                      const char *route, const char *task, double written, struct sl_err *err)
{
    FILE *f = fopen(path, "w");
    if (!f) return sl_err_set(err, SL_EIO, "cannot write '%s'", path);
    fputs("{\"route\":", f);
    sl_json_fputs(f, route);
    fputs(",\"task\":", f);
    if (task)
        sl_json_fputs(f, task);
    else
        fputs("null", f);
    fputc(',', f);
    fprintf(f, "\"target\":\"%s\",", p->target == SL_CALIB_GAP ? "gap" : "max_cost");
    json_num(f, "target_value", p->target == SL_CALIB_GAP ? p->gap : p->max_cost_1k, true);
    json_num(f, "delta", p->delta, true);
    fprintf(f, "\"seed\":%llu,\"found\":%s,", (unsigned long long)p->seed, r->found ? "true" : "false");
    json_num(f, "threshold", r->found ? written : NAN, true);
    json_num(f, "upper_bound", r->bound, true);
    json_num(f, "cal_coverage", r->cal_coverage, true);
    fprintf(f, "\"n\":%zu,\"n_design\":%zu,\"n_cal\":%zu,\"n_test\":%zu,\"test\":{", r->n, r->n_design,
            r->n_cal, r->n_test);
    json_num(f, "coverage", r->test.coverage, true);
    json_num(f, "quality", r->test.quality, true);
    json_num(f, "cost_per_1k", r->test.cost_1k, true);
    json_num(f, "small_error_accepted", r->test.small_error, true);
    json_num(f, "loss_rate_accepted", r->test.loss_rate, true);
    json_num(f, "q_small", r->test.q_small, true);
    json_num(f, "q_large", r->test.q_large, true);
    json_num(f, "cost_small_per_1k", r->test.cost_small_1k, true);
    json_num(f, "cost_large_per_1k", r->test.cost_large_1k, false);
    fputs("}}\n", f);
    if (fclose(f) != 0) return sl_err_set(err, SL_EIO, "write error on '%s'", path);
    return 0;
}

int cmd_calibrate_route(int argc, char **argv)
{
    const char *cfg_path = NULL, *route = NULL, *results = NULL, *task = NULL, *small = NULL,
               *large = NULL, *json = NULL;
    double gap = NAN, max_cost = NAN;
    long long seed = 0, grid = 50, failures = 0;
    bool write = false;
    struct sl_calib_params p = sl_calib_default_params();
    const struct cli_opt opts[] = {
        {NULL, "--route", CLI_STR, &route, 0, 0},
        {NULL, "--results", CLI_STR, &results, 0, 0},
        {NULL, "--target-gap", CLI_FLOAT, &gap, 1e-6, 99.999},
        {NULL, "--max-cost", CLI_FLOAT, &max_cost, 1e-12, 1e15},
        {NULL, "--delta", CLI_FLOAT, &p.delta, 1e-6, 0.5},
        {NULL, "--calib-frac", CLI_FLOAT, &p.calib_frac, 0.05, 0.95},
        {NULL, "--design-frac", CLI_FLOAT, &p.design_frac, 0.05, 0.9},
        {NULL, "--grid", CLI_INT, &grid, 2, 10000},
        {NULL, "--seed", CLI_INT, &seed, 0, 9e15},
        {NULL, "--task", CLI_STR, &task, 0, 0},
        {NULL, "--small", CLI_STR, &small, 0, 0},
        {NULL, "--large", CLI_STR, &large, 0, 0},
        {NULL, "--failures", CLI_INT, &failures, 0, 10000},
        {NULL, "--json", CLI_STR, &json, 0, 0},
        {NULL, "--write", CLI_FLAG, &write, 0, 0},
    };
    const char *pos[1];
    int n_pos = 0;
    int rc = cli_parse("calibrate", route_usage, argc, argv, opts, sizeof opts / sizeof *opts, pos, 1, &n_pos);
    if (rc) return rc < 0 ? 0 : rc;
    if (n_pos != 1) return cli_usage("calibrate", "give the config file: sluice calibrate CONFIG.yaml --route R ...");
    cfg_path = pos[0];
    if (!route) return cli_usage("calibrate", "--route R is required with a config file");
    if (!results) return cli_usage("calibrate", "--results FILE is required (results.jsonl from `sluice eval`)");
    if (isnan(gap) == isnan(max_cost))
        return cli_usage("calibrate", "give exactly one target: --target-gap POINTS or --max-cost PER_1000");
    p.target = isnan(gap) ? SL_CALIB_COST : SL_CALIB_GAP;
    p.gap = isnan(gap) ? 0 : gap / 100;
    p.max_cost_1k = isnan(max_cost) ? 0 : max_cost;
    p.seed = (uint64_t)seed;
    p.n_grid = (size_t)grid;

    struct sl_err err = {0};
    struct sl_config c;
    struct sl_results res = {0};
    struct sl_calib_data d = {0};
    struct sl_calib_result r = {0};
    struct sl_failures fm = {0};
    int exit_code = CLI_EXIT_ERR;
    if (sl_config_init(&c, &err)) return cli_fail(&err, NULL);
    if (sl_config_load(&c, cfg_path, &err)) {
        cli_fail(&err, NULL);
        goto out;
    }
    const struct sl_route_config *rt = sl_config_route(&c, route);
    if (!rt) {
        sl_err_set(&err, SL_ENOTFOUND, "%s has no route '%s'", cfg_path, route);
        cli_fail(&err, NULL);
        goto out;
    }
    if (rt->n_tiers < 2 && (!small || !large)) {
        sl_err_set(&err, SL_EINVAL, "route '%s' has %zu tier(s); a cascade needs two", route, rt->n_tiers);
        cli_fail(&err, "or name the results targets with --small and --large");
        goto out;
    }
    if (rt->policy != SL_ROUTE_CASCADE)
        fprintf(stderr, "sluice calibrate: note: route '%s' is not a cascade; its threshold is "
                        "only read by cascade routes\n", route);
    if (!small) small = rt->tiers[0];
    if (!large) large = rt->tiers[rt->n_tiers - 1];
    if (sl_results_load(&res, results, &err) ||
        sl_calib_data_from_results(&d, &res, small, large, task ? "task" : NULL, task, &err)) {
        cli_fail(&err, task ? "--task keeps the examples whose meta \"task\" equals it" : NULL);
        goto out;
    }
    if (sl_calib_run(&r, &d, &p, &err)) {
        cli_fail(&err, NULL);
        goto out;
    }

    /* what was chosen, on what evidence */
    printf("route %s%s%s: first tier '%s', large tier '%s'; %zu examples", route, task ? ", task " : "",
           task ? task : "", small, large, d.n);
    if (d.n_skipped) printf(" (%zu left out: a tier missing or correctness unknown)", d.n_skipped);
    printf("\nsplit (seed %llu): %zu to place candidates, %zu to calibrate, %zu held out for test\n",
           (unsigned long long)p.seed, r.n_design, r.n_cal, r.n_test);
    double thr = r.threshold < 0 ? 0 : r.threshold; /* -inf: accept all; confidences are >= 0 */
    double written = sl_calib_written_value(thr);
    if (p.target == SL_CALIB_GAP) {
        printf("target: quality within %g points of '%s' at the lowest cost, delta %g\n", 100 * p.gap, large,
               p.delta);
        printf("candidates certified: %zu of %zu tested (fixed sequence, most confident first)\n",
               r.g.n_steps - (r.g.n_steps && !r.g.steps[r.g.n_steps - 1].certified), r.g.n_steps);
        if (r.found)
            printf("chosen threshold: %g   (loss rate on accepted calibration requests %.4f, "
                   "Clopper-Pearson upper bound %.4f <= %g with probability >= %g; coverage %.1f%%)\n",
                   written, r.g.risk, r.bound, p.gap, 1 - p.delta, 100 * r.cal_coverage);
    } else {
        printf("target: the best quality under %g per 1,000 requests, delta %g\n", p.max_cost_1k, p.delta);
        if (r.found)
            printf("chosen threshold: %g   (calibration cost %.4g per 1,000, Hoeffding upper bound %.4g "
                   "<= %g with probability >= %g; calibration quality %.2f%%, coverage %.1f%%)\n",
                   written, 1000 * r.b.cost_mean, r.bound, p.max_cost_1k, 1 - p.delta,
                   100 * r.b.accuracy, 100 * r.cal_coverage);
    }
    if (!r.found)
        printf("no threshold could be certified: the route should escalate everything "
               "(more calibration examples, a looser target or a larger delta may help)\n");
    printf("\nheld-out test split (%zu examples)      quality  cost / 1,000   kept small\n", r.test.n);
    print_eval(small, r.test.q_small, r.test.cost_small_1k, 1);
    print_eval(large, r.test.q_large, r.test.cost_large_1k, 0);
    char name[64];
    snprintf(name, sizeof name, "cascade @ %g", r.found ? written : INFINITY);
    print_eval(name, r.test.quality, r.test.cost_1k, r.test.coverage);
    printf("  gap to '%s': %.2f points; '%s' wrong on %s of the requests it kept\n", large,
           100 * (r.test.q_large - r.test.quality), small,
           isnan(r.test.small_error) ? "none" : (snprintf(name, sizeof name, "%.1f%%", 100 * r.test.small_error), name));

    if (failures > 0) {
        struct sl_failures_params fp = sl_failures_default_params();
        fp.top_n = (size_t)failures;
        if (sl_failures_compute(&fm, &res, small, NULL, &fp, &err)) {
            cli_fail(&err, NULL);
            goto out;
        }
        sl_failures_print(&fm, stdout);
    }
    if (json && write_json(json, &r, &p, route, task, written, &err)) {
        cli_fail(&err, NULL);
        goto out;
    }
    if (write) {
        if (!r.found) {
            sl_err_set(&err, SL_EINVAL, "nothing certified: %s not changed", cfg_path);
            cli_fail(&err, NULL);
            goto out;
        }
        char date[32], target[128], method[64];
        time_t now = time(NULL);
        struct tm tmv;
        gmtime_r(&now, &tmv);
        strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tmv);
        if (p.target == SL_CALIB_GAP) {
            snprintf(target, sizeof target, "quality within %g points of %s", 100 * p.gap, large);
            snprintf(method, sizeof method, "learn-then-test, clopper-pearson");
        } else {
            snprintf(target, sizeof target, "best quality under %g per 1000 requests", p.max_cost_1k);
            snprintf(method, sizeof method, "fixed-sequence, hoeffding cost bound");
        }
        struct sl_calib_evidence ev = {
            .method = method, .target = target, .task = task, .delta = p.delta,
            .n_calibration = r.n_cal, .upper_bound = r.bound, .coverage = r.cal_coverage,
            .test_coverage = r.test.coverage, .test_quality = r.test.quality,
            .test_cost_1k = r.test.cost_1k, .date = date, .results = results,
        };
        if (sl_calib_write_config(cfg_path, route, thr, &ev, &err)) {
            cli_fail(&err, NULL);
            goto out;
        }
        printf("\nwrote routes.%s.%s%s = %g and its calibration: evidence to %s\n", route,
               task ? "thresholds." : "threshold", task ? task : "", written, cfg_path);
    }
    exit_code = 0;
out:
    sl_failures_free(&fm);
    sl_calib_result_free(&r);
    sl_calib_data_free(&d);
    sl_results_free(&res);
    sl_config_free(&c);
    return exit_code;
}
