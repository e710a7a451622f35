/*
 * cmd_replay.c - `sluice replay`: evaluate routers on recorded answers
 * (RouteLLM-style benchmarks) without calling any model (tools layer).
 *
 * The data set is split once by --seed into a training half (for the
 * local-feature logistic-regression router) and a held-out half on which
 * every router is measured: quality against % of large calls, APGR,
 * CPT(50%), CPT(80%) and the cost saving at 95% of the large tier's
 * quality. The held-out half is split again into calibration and test
 * quarters to pick a cascade threshold with a guarantee on the router's
 * probability, and the realised error on the test quarter is printed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eval/frontier.h"
#include "eval/guarantee.h"
#include "eval/metrics.h"
#include "eval/replay.h"
#include "eval/report.h"
#include "eval/router_lr.h"

static const char *replay_usage =
    "usage: sluice replay --data DIR-OR-CSV [options]\n"
    "Evaluate a router on recorded answers: each CSV row is a prompt and whether the small\n"
    "and the large model answered it correctly (RouteLLM's mmlu_responses/ or gsm8k CSV).\n"
    "\n"
    "  --data PATH          a CSV file, or a directory of *.csv files (required)\n"
    "  --router NAME        lr (default; logistic regression on hashed n-grams + length),\n"
    "                       random or oracle; random and oracle are always shown for reference\n"
    "  --seed S             split seed (default 0)\n"
    "  --test-frac F        held-out fraction (default 0.5)\n"
    "  --split-by-file      hold out whole files (e.g. whole MMLU subjects) instead of\n"
    "                       random examples: routers must generalize to unseen subjects\n"
    "  --l2 X               L2 weight of the lr router (default 1e-4)\n"
    "  --iters N            training iterations of the lr router (default 300)\n"
    "  --epsilon E          target error on accepted requests for the guarantee (default 0.25)\n"
    "  --delta D            allowed failure probability of the guarantee (default 0.1)\n"
    "  --price-small P      cost of a small-tier call in units of a large call (default 0.04)\n"
    "  --html OUT.html      self-contained HTML report (inline SVG charts)\n"
    "  --json OUT.json      machine-readable report\n"
    "  --fail-under M=V     exit 1 if metric M of the router is below V (repeatable),\n"
    "                       e.g. --fail-under apgr=0.55; names as in --json \"metrics\"\n";

static void on_progress(void *ctx, int done, int total)
{
    cli_progress((const char *)ctx, (uint64_t)done, (uint64_t)total);
}

struct run {
    struct sl_replay_data d;
    size_t *perm;
    size_t n_train, n_test;
    double *score;    /* (n) router score, higher = large */
    double *p_wrong;  /* (n) lr: P(small tier wrong), NaN for other routers */
    uint8_t *s_ok, *l_ok; /* (n_test) held-out copies */
    double *s_score;  /* (n_test) */
    double *conf;     /* (n_test) 1 - p_wrong */
    double *c_small, *c_large; /* (n_test) */
    bool *ok_b;
    int *truth, *pred;
    struct sl_lr_rows X;
    struct sl_lr model;
    struct sl_router_curve curves[3];
    size_t n_curves;
    struct sl_frontier fr;
    struct sl_reliability rel;
    struct sl_class_report cls;
    struct sl_guarantee g;
};

static void run_free(struct run *r)
{
    sl_replay_free(&r->d);
    free(r->perm);
    free(r->score);
    free(r->p_wrong);
    free(r->s_ok);
    free(r->l_ok);
    free(r->s_score);
    free(r->conf);
    free(r->c_small);
    free(r->c_large);
    free(r->ok_b);
    free(r->truth);
    free(r->pred);
    sl_lr_rows_free(&r->X);
    sl_lr_free(&r->model);
    for (size_t i = 0; i < r->n_curves; i++) sl_router_curve_free(&r->curves[i]);
    sl_frontier_free(&r->fr);
    sl_class_report_free(&r->cls);
    sl_guarantee_free(&r->g);
}

static int write_file(const char *path, const struct sl_report *rep, bool html, struct sl_err *err)
{
    FILE *f = fopen(path, "w");
    if (!f) return sl_err_set(err, SL_EIO, "replay: cannot write '%s'", path);
    int rc = html ? sl_report_html(rep, f, err) : sl_report_json(rep, f, err);
    if (fclose(f) != 0 && !rc) rc = sl_err_set(err, SL_EIO, "replay: write error on '%s'", path);
    return rc;
}

int cmd_replay(int argc, char **argv)
{
    const char *data = NULL, *router = "lr", *html = NULL, *json = NULL;
    long long seed = 0, iters = 300;
    double test_frac = 0.5, l2 = 1e-4, eps = 0.25, delta = 0.1, price_small = 0.04;
    struct cli_list fail = {0};
    bool by_file = false;
    const struct cli_opt opts[] = {
        {NULL, "--split-by-file", CLI_FLAG, &by_file, 0, 0},
        {NULL, "--data", CLI_STR, &data, 0, 0},
        {NULL, "--router", CLI_STR, &router, 0, 0},
        {NULL, "--seed", CLI_INT, &seed, 0, 9e15},
        {NULL, "--test-frac", CLI_FLOAT, &test_frac, 0.05, 0.95},
        {NULL, "--l2", CLI_FLOAT, &l2, 0, 100},
        {NULL, "--iters", CLI_INT, &iters, 1, 100000},
        {NULL, "--epsilon", CLI_FLOAT, &eps, 1e-6, 0.999999},
        {NULL, "--delta", CLI_FLOAT, &delta, 1e-6, 0.999999},
        {NULL, "--price-small", CLI_FLOAT, &price_small, 0, 1e6},
        {NULL, "--html", CLI_STR, &html, 0, 0},
        {NULL, "--json", CLI_STR, &json, 0, 0},
        {NULL, "--fail-under", CLI_LIST, &fail, 0, 0},
    };
    int rc = cli_parse("replay", replay_usage, argc, argv, opts, sizeof opts / sizeof *opts, NULL, 0, NULL);
    if (rc) return rc < 0 ? 0 : rc;
    if (!data) return cli_usage("replay", "--data is required (a CSV file or a directory of them)");
    bool lr = !strcmp(router, "lr");
    if (!lr && strcmp(router, "random") && strcmp(router, "oracle"))
        return cli_usage("replay", "--router '%s': want lr, random or oracle", router);
    for (size_t i = 0; i < fail.n; i++) {
        const char *eq = strchr(fail.v[i], '=');
        char *end;
        if (!eq || eq == fail.v[i] || (strtod(eq + 1, &end), end == eq + 1 || *end))
            return cli_usage("replay", "--fail-under '%s': want METRIC=NUMBER", fail.v[i]);
    }

    struct run r = {0};
    struct sl_err err = {0};
    int exit_code = CLI_EXIT_ERR;
    if (sl_replay_load(&r.d, data, &err)) {
        cli_fail(&err, "want CSV with a header 'prompt,<small model>,<large model>' and True/False cells");
        goto out;
    }
    size_t n = r.d.n;
    if (n < 8) {
        sl_err_set(&err, SL_EINVAL, "replay: only %zu examples in '%s'", n, data);
        cli_fail(&err, NULL);
        goto out;
    }
    r.perm = malloc(n * sizeof *r.perm);
    r.score = malloc(n * sizeof *r.score);
    r.p_wrong = malloc(n * sizeof *r.p_wrong);
    r.s_ok = malloc(n);
    r.l_ok = malloc(n);
    r.s_score = malloc(n * sizeof *r.s_score);
    r.conf = malloc(n * sizeof *r.conf);
    r.c_small = malloc(n * sizeof *r.c_small);
    r.c_large = malloc(n * sizeof *r.c_large);
    r.ok_b = malloc(n * sizeof *r.ok_b);
    r.truth = malloc(n * sizeof *r.truth);
    r.pred = malloc(n * sizeof *r.pred);
    if (!r.perm || !r.score || !r.p_wrong || !r.s_ok || !r.l_ok || !r.s_score || !r.conf ||
        !r.c_small || !r.c_large || !r.ok_b || !r.truth || !r.pred) {
        sl_err_set(&err, SL_ENOMEM, "replay: out of memory for %zu examples", n);
        cli_fail(&err, NULL);
        goto out;
    }
    sl_eval_permutation(r.perm, n, (uint64_t)seed);
    r.n_test = (size_t)llround((double)n * test_frac);
    if (by_file) {
        /* files in a seeded order; the last ones (about test_frac of the
         * examples) are held out whole; perm lists train rows, then test */
        size_t ns = r.d.n_sources, *fo = malloc(ns * sizeof *fo), o = 0;
        bool *held = calloc(ns, sizeof *held);
        if (!fo || !held) {
            free(fo);
            free(held);
            sl_err_set(&err, SL_ENOMEM, "replay: out of memory");
            cli_fail(&err, NULL);
            goto out;
        }
        sl_eval_permutation(fo, ns, (uint64_t)seed);
        size_t *cnt = calloc(ns, sizeof *cnt), tot = 0;
        for (size_t i = 0; cnt && i < n; i++) cnt[r.d.source[i]]++;
        for (size_t k = ns; cnt && k-- > 0 && tot < r.n_test;) {
            held[fo[k]] = true;
            tot += cnt[fo[k]];
        }
        free(cnt);
        for (size_t pass = 0; pass < 2; pass++)
            for (size_t i = 0; i < n; i++)
                if (held[r.d.source[i]] == (pass == 1)) r.perm[o++] = i;
        r.n_test = tot;
        free(fo);
        free(held);
        if (r.n_test == 0 || r.n_test == n) {
            sl_err_set(&err, SL_EINVAL, "replay: --split-by-file needs at least two files");
            cli_fail(&err, NULL);
            goto out;
        }
    }
    r.n_train = n - r.n_test;
    const size_t *train = r.perm, *test = r.perm + r.n_train;

    /* the routers' scores over all examples */
    for (size_t i = 0; i < n; i++) {
        r.p_wrong[i] = NAN;
        r.score[i] = (double)r.d.large_ok[i] - (double)r.d.small_ok[i]; /* oracle */
    }
    if (lr) {
        struct sl_lr_params p = sl_lr_default_params();
        p.l2 = l2;
        p.iters = (int)iters;
        p.progress = on_progress;
        p.progress_ctx = (void *)"training lr router";
        uint8_t *y = malloc(n);
        if (!y) {
            sl_err_set(&err, SL_ENOMEM, "replay: out of memory");
            cli_fail(&err, NULL);
            goto out;
        }
        for (size_t i = 0; i < n; i++) y[i] = !r.d.small_ok[i]; /* target: the small tier fails */
        if (sl_lr_featurize(&r.X, (const char *const *)r.d.prompt, n, &p, &err) ||
            sl_lr_train(&r.model, &r.X, y, train, r.n_train, &p, &err)) {
            free(y);
            cli_fail(&err, NULL);
            goto out;
        }
        free(y);
        for (size_t i = 0; i < n; i++) r.score[i] = r.p_wrong[i] = sl_lr_predict(&r.model, &r.X, i);
    }
    for (size_t k = 0; k < r.n_test; k++) {
        size_t i = test[k];
        r.s_ok[k] = r.d.small_ok[i];
        r.l_ok[k] = r.d.large_ok[i];
        r.s_score[k] = r.score[i];
    }

    /* curves on the held-out split: chosen router, random, oracle */
    if (strcmp(router, "random")) {
        if (sl_router_curve_compute(&r.curves[r.n_curves], router, r.s_score, r.s_ok, r.l_ok, r.n_test, &err)) {
            cli_fail(&err, NULL);
            goto out;
        }
        r.n_curves++;
    }
    if (sl_router_curve_random(&r.curves[r.n_curves], r.s_ok, r.l_ok, r.n_test, &err)) {
        cli_fail(&err, NULL);
        goto out;
    }
    r.n_curves++;
    if (lr) {
        for (size_t k = 0; k < r.n_test; k++)
            r.conf[k] = (double)r.l_ok[k] - (double)r.s_ok[k];
        if (sl_router_curve_compute(&r.curves[r.n_curves], "oracle", r.conf, r.s_ok, r.l_ok, r.n_test, &err)) {
            cli_fail(&err, NULL);
            goto out;
        }
        r.n_curves++;
    }
    const struct sl_router_curve *main_c = &r.curves[0];

    /* metrics for --json and --fail-under */
    struct sl_report_metric m[32];
    size_t nm = 0;
    m[nm++] = (struct sl_report_metric){"n_examples", (double)n, "examples"};
    m[nm++] = (struct sl_report_metric){"n_train", (double)r.n_train, "training split (lr router)"};
    m[nm++] = (struct sl_report_metric){"n_test", (double)r.n_test, "held-out split (all numbers below)"};
    m[nm++] = (struct sl_report_metric){"q_small", main_c->q_small, "small tier accuracy (held-out)"};
    m[nm++] = (struct sl_report_metric){"q_large", main_c->q_large, "large tier accuracy (held-out)"};
    m[nm++] = (struct sl_report_metric){"apgr", main_c->apgr, "APGR (exact curve)"};
    m[nm++] = (struct sl_report_metric){"apgr_q10", main_c->apgr_q10, "APGR (RouteLLM's 10 quantiles)"};
    m[nm++] = (struct sl_report_metric){"cpt50", main_c->cpt50, "CPT(50%): large calls to recover 50% of the gap"};
    m[nm++] = (struct sl_report_metric){"cpt80", main_c->cpt80, "CPT(80%)"};
    m[nm++] = (struct sl_report_metric){"calls95", main_c->calls95, "large calls at 95% of large-tier quality"};
    m[nm++] = (struct sl_report_metric){"saving95", main_c->saving95, "cost saving at 95% of large-tier quality"};

    /* lr extras: calibration of P(small right), its 2-class confusion, a
     * cascade frontier and a guaranteed threshold on a cal/test split */
    struct sl_report rep = {0};
    char title[256], sub[512];
    snprintf(title, sizeof title, "sluice replay: %s router", router);
    snprintf(sub, sizeof sub, "%s: %zu examples (%zu files), small = %s, large = %s; seed %lld, "
                              "held-out %zu%s",
             data, n, r.d.n_sources, r.d.small_name, r.d.large_name, seed, r.n_test,
             by_file ? " (whole files)" : "");
    rep.title = title;
    rep.subtitle = sub;
    rep.curves = r.curves;
    rep.n_curves = r.n_curves;
    static const char *cls_names[2] = {"small right", "small wrong"};
    double realized = NAN;
    if (lr) {
        for (size_t k = 0; k < r.n_test; k++) {
            double pw = r.p_wrong[test[k]];
            r.conf[k] = 1 - pw;
            r.ok_b[k] = r.s_ok[k];
            r.truth[k] = !r.s_ok[k];
            r.pred[k] = pw >= 0.5;
            r.c_small[k] = price_small;
            r.c_large[k] = 1.0;
        }
        if (sl_reliability_compute(&r.rel, r.conf, r.ok_b, r.n_test, &err) ||
            sl_class_report_compute(&r.cls, r.truth, r.pred, r.n_test, 2, &err) ||
            sl_frontier_compute(&r.fr, r.conf, r.s_ok, r.c_small, r.l_ok, r.c_large, r.n_test, &err)) {
            cli_fail(&err, NULL);
            goto out;
        }
        /* guarantee: first half of the held-out split calibrates, second tests */
        size_t n_cal = r.n_test / 2;
        uint8_t *loss = malloc(r.n_test);
        if (!loss) {
            sl_err_set(&err, SL_ENOMEM, "replay: out of memory");
            cli_fail(&err, NULL);
            goto out;
        }
        for (size_t k = 0; k < r.n_test; k++) loss[k] = !r.s_ok[k];
        /* candidate thresholds: 50 coverage quantiles of the training
         * split's confidences, fixed before the calibration quarter is read */
        double grid[50], *design = malloc(r.n_train * sizeof *design);
        if (!design) {
            free(loss);
            sl_err_set(&err, SL_ENOMEM, "replay: out of memory");
            cli_fail(&err, NULL);
            goto out;
        }
        for (size_t k = 0; k < r.n_train; k++) design[k] = 1 - r.p_wrong[train[k]];
        rc = sl_guarantee_grid(grid, 50, design, r.n_train);
        free(design);
        if (!rc) rc = sl_guarantee_max_risk(&r.g, r.conf, loss, n_cal, grid, 50, eps, delta, &err);
        if (!rc) sl_guarantee_fill_ucb(&r.g);
        if (!rc && r.g.found) {
            size_t acc = 0, bad = 0;
            for (size_t k = n_cal; k < r.n_test; k++)
                if (r.conf[k] >= r.g.threshold) {
                    acc++;
                    bad += loss[k];
                }
            realized = acc ? (double)bad / (double)acc : NAN;
            m[nm++] = (struct sl_report_metric){"guarantee.test_coverage",
                                                (double)acc / (double)(r.n_test - n_cal),
                                                "guarantee: coverage on the test quarter"};
        }
        free(loss);
        if (rc) {
            cli_fail(&err, NULL);
            goto out;
        }
        m[nm++] = (struct sl_report_metric){"ece", r.rel.ece, "ECE of the router's P(small right), 15 bins"};
        m[nm++] = (struct sl_report_metric){"router_accuracy", r.cls.accuracy, "router: accuracy predicting 'small wrong' at p >= 0.5"};
        m[nm++] = (struct sl_report_metric){"guarantee.threshold", r.g.threshold, "guarantee: threshold on P(small right)"};
        m[nm++] = (struct sl_report_metric){"guarantee.cal_coverage", r.g.coverage, "guarantee: coverage on the calibration quarter"};
        m[nm++] = (struct sl_report_metric){"guarantee.test_error", realized, "guarantee: realised error on accepted test requests"};
        rep.frontier = &r.fr;
        rep.reliability = &r.rel;
        rep.reliability_what = "Confidence here is the lr router's predicted probability that the "
                               "small tier answers correctly (held-out split).";
        rep.cls = &r.cls;
        rep.class_names = cls_names;
        rep.guarantee = &r.g;
    }
    rep.metrics = m;
    rep.n_metrics = nm;

    sl_report_table(&rep, stdout);
    if (html && write_file(html, &rep, true, &err)) {
        cli_fail(&err, NULL);
        goto out;
    }
    if (json && write_file(json, &rep, false, &err)) {
        cli_fail(&err, NULL);
        goto out;
    }
    exit_code = 0;
    for (size_t i = 0; i < fail.n; i++) {
        const char *eq = strchr(fail.v[i], '=');
        size_t kl = (size_t)(eq - fail.v[i]);
        double want = strtod(eq + 1, NULL);
        bool found = false;
        for (size_t k = 0; k < nm; k++) {
            if (strlen(m[k].name) != kl || strncmp(m[k].name, fail.v[i], kl)) continue;
            found = true;
            if (!(m[k].value >= want)) {
                fprintf(stderr, "sluice replay: %s = %.6g is under %.6g (--fail-under)\n", m[k].name,
                        m[k].value, want);
                exit_code = CLI_EXIT_ERR;
            }
        }
        if (!found) {
            exit_code = cli_usage("replay", "--fail-under: no metric '%.*s' (see --json)", (int)kl, fail.v[i]);
            break;
        }
    }
out:
    run_free(&r);
    return exit_code;
}
