/*
 * cmd_eval.c - `sluice eval` and `sluice compare`: a route measured live on
 * labelled examples (tools layer).
 *
 * eval loads the config's models and router without listening
 * (sl_server_open), then src/eval/run.c calls sl_router_route for every
 * tier alone (force_tier) and for the route's policy, with the request log
 * off, writing OUT/results.jsonl as it goes (and OUT/run.json, what the run
 * is, checked on --resume). The report is a terminal table, and optionally
 * JSON and a self-contained HTML page; --fail-under gates CI.
 *
 * compare runs two routes (from two configs, or two routes of one) on the
 * same examples, the routes only, and prints them side by side with the
 * difference and a paired (McNemar) test.
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "config/config.h"
#include "router/router.h"
#include "server/server.h"
#include "eval/failures.h"
#include "eval/guarantee.h"
#include "eval/report.h"
#include "eval/run.h"

static const char *eval_usage =
    "usage: sluice eval CONFIG.yaml --route R --data FILE [options]\n"
    "Run every tier of route R alone and the route itself over labelled examples, live,\n"
    "and report per tier and for the route: accuracy, macro-F1, confusion (classify) or\n"
    "exact match and per-field P/R/F1 (extract), latency p50/p95/p99, cost per 1,000\n"
    "requests, escalation rate, ECE, and the cost/quality frontier of the cascade.\n"
    "\n"
    "  --route R            the route to evaluate (required)\n"
    "  --data FILE          examples: FILE.csv (header row) or JSONL (required); fields\n"
    "                       input, label (classify) or expected (extract: a JSON object),\n"
    "                       optional id; every other field is metadata\n"
    "  --task T             the classify/extract task (default: the route's `task`)\n"
    "  --concurrency N      requests in flight (default 4)\n"
    "  --out DIR            results.jsonl and run.json go here (default eval-<route>)\n"
    "  --resume             continue the run in --out: finished pairs are not called again\n"
    "  --retry-errors       with --resume: call again the pairs that failed\n"
    "  --limit N            only the first N examples\n"
    "  --route-only         do not run the tiers alone (no frontier)\n"
    "  --input-field F      name of the input field (default input)\n"
    "  --label-field F      name of the label field (default label)\n"
    "  --expected-field F   name of the expected-object field (default expected)\n"
    "  --id-field F         name of the id field (default id)\n"
    "  --json OUT.json      machine-readable report\n"
    "  --html OUT.html      self-contained HTML report (inline SVG charts, opens offline)\n"
    "  --failures N         failure modes: the first tier's N most confident wrong answers\n"
    "                       and its error by class, input length and metadata (default 10;\n"
    "                       0 leaves the section out)\n"
    "  --fail-under M=V     exit 1 if metric M is below V (repeatable): accuracy, macro_f1,\n"
    "                       exact_match, field_f1, ... of the route; TIER.M of a tier alone;\n"
    "                       frontier.M (names as in --json)\n";

static const char *compare_usage =
    "usage: sluice compare A.yaml [B.yaml] --route R [--route R2] --data FILE [options]\n"
    "Run two routes on the same examples and show them side by side: two configs with\n"
    "the same route (A.yaml B.yaml --route R), two routes of one config (A.yaml --route R\n"
    "--route R2), or both. Only the routes run (not their tiers alone).\n"
    "\n"
    "  --data FILE          examples, as for sluice eval (required)\n"
    "  --task T             the task (default: each route's `task`)\n"
    "  --concurrency N      requests in flight (default 4)\n"
    "  --out DIR            a/ and b/ results go here (default compare-<R>-<R2>)\n"
    "  --resume             continue both runs in --out\n"
    "  --limit N            only the first N examples\n"
    "  --input-field F, --label-field F, --expected-field F, --id-field F   as for eval\n"
    "  --json OUT.json      machine-readable comparison\n"
    "  --html OUT.html      the comparison as a self-contained HTML page\n";

/* ---- options shared by both commands ---------------------------------------- */

struct opts {
    struct cli_list routes;
    const char *data, *task, *out, *json, *html;
    const char *f_input, *f_label, *f_expected, *f_id;
    long long concurrency, limit, failures;
    bool resume, retry_errors, route_only;
    struct cli_list fail;
};

/* ---- SIGINT: stop starting requests, finish those in flight ----------------- */

static atomic_bool stop_flag;

static void on_sigint(int sig)
{
    (void)sig;
    atomic_store(&stop_flag, true);
}

static void on_progress(void *ctx, size_t done, size_t total)
{
    cli_progress((const char *)ctx, done, total);
}

static int route_call(void *user, const struct sl_route_req *req, struct sl_route_result *res,
                      struct sl_err *err)
{
    return sl_router_route(user, req, res, err);
}

/* ---- one side: a config, a route, its run and report ------------------------ */

struct side {
    const char *cfg_path, *route;
    char name[160]; /* column name in compare */
    struct sl_config cfg;
    bool cfg_init;
    const struct sl_route_config *rc;
    const struct sl_task_config *task;
    const char *tiers[SL_CONFIG_MAX_TIERS];
    struct sl_eval_route rt;
    struct sl_eval_data data;
    struct sl_eval_run run;
    struct sl_eval_report rep;
    bool have_rep;
    char dir[PATH_MAX], results[PATH_MAX + 32];
};

static void side_free(struct side *s)
{
    sl_eval_report_free(&s->rep);
    sl_eval_run_free(&s->run);
    sl_eval_data_free(&s->data);
    if (s->cfg_init) sl_config_free(&s->cfg);
}

static const char *kind_name(enum sl_route_req_kind k)
{
    return k == SL_RREQ_CLASSIFY ? "classify" : "extract";
}

/* Config, route, task, tiers and labels: what to evaluate. */
static int side_setup(struct side *s, const char *cfg_path, const char *route, const char *task_opt,
                      struct sl_err *err)
{
    s->cfg_path = cfg_path;
    s->route = route;
    int rc = sl_config_init(&s->cfg, err);
    if (rc) return rc;
    s->cfg_init = true;
    if ((rc = sl_config_load(&s->cfg, cfg_path, err))) return rc;
    if (!(s->rc = sl_config_route(&s->cfg, route))) {
        char list[256] = "";
        size_t o = 0;
        for (size_t i = 0; i < s->cfg.n_routes && o + 1 < sizeof list; i++) {
            int w =
                snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", s->cfg.routes[i].name);
            o += w > 0 ? (size_t)w : 0;
        }
        return sl_err_set(err, SL_ENOTFOUND, "%s has no route '%s' (routes: %s)", cfg_path, route,
                          s->cfg.n_routes ? list : "none");
    }
    const char *tname = task_opt ? task_opt : s->rc->task;
    if (!tname)
        return sl_err_set(err, SL_EINVAL,
                          "route '%s' names no task: set its `task` in %s or pass --task", route,
                          cfg_path);
    if (!(s->task = sl_config_task(&s->cfg, tname)))
        return sl_err_set(err, SL_ENOTFOUND, "%s has no task '%s'", cfg_path, tname);
    if (s->task->kind != SL_TASK_CLASSIFY && s->task->kind != SL_TASK_EXTRACT)
        return sl_err_set(err, SL_EUNSUPPORTED,
                          "task '%s' is a generate task: sluice eval measures classify and extract "
                          "tasks (labels or expected objects)",
                          tname);
    if (s->rc->n_tiers == 0) return sl_err_set(err, SL_EINVAL, "route '%s' has no tiers", route);
    for (size_t t = 0; t < s->rc->n_tiers; t++)
        s->tiers[t] = s->rc->tiers[t];
    s->rt = (struct sl_eval_route){
        .route = route,
        .kind = s->task->kind == SL_TASK_CLASSIFY ? SL_RREQ_CLASSIFY : SL_RREQ_EXTRACT,
        .task = tname,
        .tiers = s->tiers,
        .n_tiers = s->rc->n_tiers,
        .labels = (const char *const *)s->task->labels,
        .n_labels = s->task->n_labels,
        .threshold = s->rc->policy == SL_ROUTE_CASCADE ? sl_route_threshold(s->rc, tname) : NAN,
    };
    return 0;
}

static int make_dir(const char *dir, struct sl_err *err)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0777) != 0 && errno != EEXIST)
            return sl_err_set(err, SL_EIO, "cannot create directory '%s': %s", tmp,
                              strerror(errno));
        *p = '/';
    }
    if (mkdir(tmp, 0777) != 0 && errno != EEXIST)
        return sl_err_set(err, SL_EIO, "cannot create directory '%s': %s", tmp, strerror(errno));
    return 0;
}

/* OUT/run.json: what the results in OUT are. On resume the route, task,
 * tiers and data file must be the same as when the run began. */
static int run_manifest(const struct side *s, const char *data, bool resume, struct sl_err *err)
{
    char path[PATH_MAX + 16], abs_data[PATH_MAX];
    snprintf(path, sizeof path, "%s/run.json", s->dir);
    if (!realpath(data, abs_data)) snprintf(abs_data, sizeof abs_data, "%s", data);
    json_t *tiers = json_array();
    for (size_t t = 0; tiers && t < s->rt.n_tiers; t++)
        json_array_append_new(tiers, json_string(s->rt.tiers[t]));
    json_t *m = json_pack("{s:i, s:s, s:s, s:s, s:s, s:o, s:s}", "version", 1, "config",
                          s->cfg_path, "route", s->rt.route, "task", s->rt.task, "kind",
                          kind_name(s->rt.kind), "tiers", tiers, "data", abs_data);
    if (!m) return sl_err_set(err, SL_ENOMEM, "out of memory");
    int rc = 0;
    if (resume) {
        json_t *old = json_load_file(path, 0, NULL);
        if (old) {
            const char *keys[] = {"route", "task", "kind", "data"};
            for (size_t k = 0; k < 4 && !rc; k++) {
                const char *a = json_string_value(json_object_get(old, keys[k]));
                const char *b = json_string_value(json_object_get(m, keys[k]));
                if (!a || strcmp(a, b))
                    rc = sl_err_set(
                        err, SL_EINVAL,
                        "--resume: %s holds a run of %s '%s', not '%s'; use another --out", s->dir,
                        keys[k], a ? a : "?", b);
            }
            if (!rc && !json_equal(json_object_get(old, "tiers"), tiers))
                rc =
                    sl_err_set(err, SL_EINVAL,
                               "--resume: the route's tiers changed since the run in %s began; use "
                               "another --out",
                               s->dir);
            json_decref(old);
        }
    }
    if (!rc && json_dump_file(m, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0)
        rc = sl_err_set(err, SL_EIO, "cannot write '%s'", path);
    json_decref(m);
    return rc;
}

/* Runs one side: loads its models, calls the router, computes the report. */
static int side_run(struct side *s, const struct opts *o, bool tiers, struct sl_err *err)
{
    struct sl_eval_fields fl = {o->f_input, o->f_label, o->f_expected, o->f_id};
    int rc = sl_eval_data_load(&s->data, o->data, s->rt.kind, &fl, err);
    if (rc) return rc;
    if ((rc = make_dir(s->dir, err))) return rc;
    snprintf(s->results, sizeof s->results, "%s/results.jsonl", s->dir);
    if ((rc = run_manifest(s, o->data, o->resume, err))) return rc;

    struct sl_server *srv = NULL;
    if ((rc = sl_server_open(&srv, &s->cfg, stderr, false, err))) return rc;
    if (!srv->router || !sl_router_has_route(srv->router, s->route)) {
        sl_server_free(srv);
        return sl_err_set(err, SL_ENOTFOUND, "route '%s' was not built from %s", s->route,
                          s->cfg_path);
    }
    char label[200];
    snprintf(label, sizeof label, "eval %s", s->route);
    struct sl_eval_params p = sl_eval_default_params();
    p.results_path = s->results;
    p.concurrency = (int)o->concurrency;
    p.limit = (size_t)o->limit;
    p.resume = o->resume;
    p.retry_errors = o->retry_errors;
    p.tiers = tiers;
    p.stop = &stop_flag;
    p.progress = on_progress;
    p.progress_ctx = label;
    struct sigaction sa = {0}, old_sa;
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C ends the process at once */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_sa);
    rc = sl_eval_run(&s->run, &s->data, &s->rt, route_call, srv->router, &p, err);
    sigaction(SIGINT, &old_sa, NULL);
    sl_server_free(srv);
    if ((s->run.stopped || rc) && isatty(STDERR_FILENO)) fputc('\n', stderr); /* end the bar */
    if (s->run.stopped || (rc && s->run.n_called + s->run.n_resumed > 0))
        fprintf(stderr,
                "sluice: %zu of %zu requests done, %zu left; continue with --resume --out %s\n",
                s->run.n_called + s->run.n_resumed,
                s->run.n_called + s->run.n_resumed + s->run.n_pending, s->run.n_pending, s->dir);
    if (rc) return rc;
    if ((rc = sl_eval_report_compute(&s->rep, &s->data, &s->rt, &s->run, err))) return rc;
    s->have_rep = true;
    return 0;
}

/* Checks --fail-under specs against the metric names before any request
 * is made: a typo should not cost a whole run. */
static int check_fail_specs(const struct side *s, const struct cli_list *fail, const char *cmd)
{
    struct sl_eval_run empty = {.n_examples = 0, .n_targets = s->rt.n_tiers + 1};
    struct sl_eval_report r;
    struct sl_err err = {0};
    struct sl_eval_data none = {0};
    int rc = 0;
    if (sl_eval_report_compute(&r, &none, &s->rt, &empty, &err)) return cli_fail(&err, NULL);
    for (size_t i = 0; i < fail->n && !rc; i++) {
        char msg[256];
        int x = sl_eval_fail_under(&r, fail->v[i], msg, sizeof msg, &err);
        if (x < 0) rc = cli_usage(cmd, "%s", err.msg);
    }
    sl_eval_report_free(&r);
    return rc;
}

static int write_report(const char *path, const struct sl_report *rep, bool html,
                        struct sl_err *err)
{
    FILE *f = fopen(path, "w");
    if (!f) return sl_err_set(err, SL_EIO, "cannot write '%s'", path);
    int rc = html ? sl_report_html(rep, f, err) : sl_report_json(rep, f, err);
    if (fclose(f) != 0 && !rc) rc = sl_err_set(err, SL_EIO, "write error on '%s'", path);
    return rc;
}

static void print_decisions(const struct sl_eval_target_report *t, FILE *f)
{
    if (!t->n) return;
    fprintf(f, "%s decisions:", t->name);
    for (size_t k = 0; k < t->n_decisions; k++)
        fprintf(f, "%s %s %zu (%.1f%%)", k ? "," : "", t->decisions[k].decision,
                t->decisions[k].count, 100.0 * (double)t->decisions[k].count / (double)t->n);
    fputc('\n', f);
}

static int parse_common(const char *cmd, const char *usage, int argc, char **argv, struct opts *o,
                        const char **pos, int max_pos, int *n_pos)
{
    const struct cli_opt opts[] = {
        {NULL, "--route", CLI_LIST, &o->routes, 0, 0},
        {NULL, "--data", CLI_STR, &o->data, 0, 0},
        {NULL, "--task", CLI_STR, &o->task, 0, 0},
        {NULL, "--concurrency", CLI_INT, &o->concurrency, 1, SL_EVAL_MAX_CONCURRENCY},
        {NULL, "--out", CLI_STR, &o->out, 0, 0},
        {NULL, "--resume", CLI_FLAG, &o->resume, 0, 0},
        {NULL, "--retry-errors", CLI_FLAG, &o->retry_errors, 0, 0},
        {NULL, "--limit", CLI_INT, &o->limit, 1, 1e12},
        {NULL, "--route-only", CLI_FLAG, &o->route_only, 0, 0},
        {NULL, "--input-field", CLI_STR, &o->f_input, 0, 0},
        {NULL, "--label-field", CLI_STR, &o->f_label, 0, 0},
        {NULL, "--expected-field", CLI_STR, &o->f_expected, 0, 0},
        {NULL, "--id-field", CLI_STR, &o->f_id, 0, 0},
        {NULL, "--json", CLI_STR, &o->json, 0, 0},
        {NULL, "--html", CLI_STR, &o->html, 0, 0},
        {NULL, "--fail-under", CLI_LIST, &o->fail, 0, 0},
        {NULL, "--failures", CLI_INT, &o->failures, 0, 1e6},
    };
    o->concurrency = 4;
    o->failures = -1; /* not given */
    int rc =
        cli_parse(cmd, usage, argc, argv, opts, sizeof opts / sizeof *opts, pos, max_pos, n_pos);
    if (rc) return rc;
    if (!o->data) return cli_usage(cmd, "--data is required (a JSONL or CSV file of examples)");
    if (o->retry_errors && !o->resume) return cli_usage(cmd, "--retry-errors needs --resume");
    return 0;
}

/* ---- sluice eval ------------------------------------------------------------------ */

int cmd_eval(int argc, char **argv)
{
    struct opts o = {0};
    const char *pos[1];
    int n_pos = 0;
    int rc = parse_common("eval", eval_usage, argc, argv, &o, pos, 1, &n_pos);
    if (rc) return rc < 0 ? 0 : rc;
    if (n_pos != 1) return cli_usage("eval", "give one CONFIG.yaml");
    if (o.routes.n != 1) return cli_usage("eval", "give one --route");
    for (size_t i = 0; i < o.fail.n; i++)
        if (!strchr(o.fail.v[i], '='))
            return cli_usage("eval", "--fail-under '%s': want METRIC=NUMBER", o.fail.v[i]);

    struct side s = {0};
    struct sl_err err = {0};
    struct sl_results res = {0};
    struct sl_failures fails = {0};
    bool have_fails = false;
    int exit_code = CLI_EXIT_ERR;
    if (o.failures < 0) o.failures = 10;
    if (side_setup(&s, pos[0], o.routes.v[0], o.task, &err)) {
        cli_fail(&err, err.code == SL_EINVAL || err.code == SL_EFORMAT
                           ? "see 'sluice serve --config-help' for every key"
                           : NULL);
        goto out;
    }
    if ((rc = check_fail_specs(&s, &o.fail, "eval"))) {
        exit_code = rc;
        goto out;
    }
    if (o.out)
        snprintf(s.dir, sizeof s.dir, "%s", o.out);
    else
        snprintf(s.dir, sizeof s.dir, "eval-%.200s", s.route);
    if (side_run(&s, &o, !o.route_only, &err)) {
        cli_fail(&err,
                 err.code == SL_EFORMAT && strstr(err.msg, "results")
                     ? "the results file is damaged: fix the line or start again without --resume"
                     : NULL);
        goto out;
    }

    /* the report: one column per target */
    struct sl_eval_report *r = &s.rep;
    struct sl_report_metric m[SL_CONFIG_MAX_TIERS + 1][SL_EVAL_MAX_METRICS];
    struct sl_report_target tg[SL_CONFIG_MAX_TIERS + 1];
    struct sl_report_cls more[SL_CONFIG_MAX_TIERS];
    size_t nt = 0, n_more = 0;
    for (size_t t = 0; t < r->n_targets; t++) {
        if (!r->targets[t].n) continue; /* not run (--route-only) */
        tg[nt] = (struct sl_report_target){r->targets[t].name, m[nt],
                                           sl_eval_target_metrics(r, t, m[nt])};
        nt++;
        if (t + 1 < r->n_targets && r->kind == SL_RREQ_CLASSIFY)
            more[n_more++] = (struct sl_report_cls){r->targets[t].name, &r->targets[t].cls};
    }
    const struct sl_eval_target_report *route_t = &r->targets[r->n_targets - 1];
    const struct sl_eval_target_report *conf_t = r->targets[0].n_conf ? &r->targets[0] : route_t;
    struct sl_report_metric fm[16];
    size_t nfm = 0;
    fm[nfm++] = (struct sl_report_metric){"n_examples", (double)s.run.n_examples, "examples"};
    if (r->has_frontier) {
        static const struct {
            const char *name, *label;
        } fr[] = {
            {"frontier.small_quality", "first tier alone: quality"},
            {"frontier.small_cost_per_1k", "first tier alone: cost per 1,000"},
            {"frontier.large_quality", "last tier alone: quality"},
            {"frontier.large_cost_per_1k", "last tier alone: cost per 1,000"},
            {"frontier.aurc", "first tier: area under risk-coverage"},
            {"frontier.at_threshold_coverage", "cascade at threshold: kept on first tier"},
            {"frontier.at_threshold_quality", "cascade at threshold: quality"},
            {"frontier.at_threshold_cost_per_1k", "cascade at threshold: cost per 1,000"},
        };
        for (size_t k = 0; k < sizeof fr / sizeof *fr; k++) {
            double v;
            sl_eval_metric(r, fr[k].name, &v, NULL);
            if (k >= 5 && !isfinite(r->threshold)) continue;
            fm[nfm++] = (struct sl_report_metric){fr[k].name, v, fr[k].label};
        }
    }
    char title[256], sub[1024], fwhat[256], rwhat[256];
    snprintf(title, sizeof title, "sluice eval: route %s", s.route);
    snprintf(sub, sizeof sub, "%s, %zu examples; task %s (%s); tiers", o.data, s.run.n_examples,
             s.rt.task, kind_name(s.rt.kind));
    for (size_t t = 0; t < s.rt.n_tiers; t++)
        snprintf(sub + strlen(sub), sizeof sub - strlen(sub), "%s %s", t ? " \xe2\x86\x92" : "",
                 s.rt.tiers[t]);
    if (isfinite(s.rt.threshold))
        snprintf(sub + strlen(sub), sizeof sub - strlen(sub), "; cascade threshold %.4g",
                 s.rt.threshold);
    snprintf(sub + strlen(sub), sizeof sub - strlen(sub), "; config %s", s.cfg_path);
    snprintf(fwhat, sizeof fwhat,
             "First tier %s, last tier %s, over the %zu examples both answered.",
             r->small ? r->small : "", r->large ? r->large : "", r->frontier_n);
    snprintf(rwhat, sizeof rwhat, "Confidence of %s%s (%zu answers with a confidence).",
             conf_t->name,
             conf_t == route_t ? "" : " run alone: the number the cascade threshold reads",
             conf_t->n_conf);
    /* failure modes of the first tier (of the route with --route-only) */
    if (o.failures > 0) {
        int x = sl_eval_results(&res, &s.data, &s.rt, &s.run, &err);
        if (x == 0) {
            struct sl_failures_params fp = sl_failures_default_params();
            fp.top_n = (size_t)o.failures;
            fp.by_class = s.rt.kind == SL_RREQ_CLASSIFY;
            const char *tier = sl_results_target(&res, s.rt.tiers[0]) >= 0 ? s.rt.tiers[0]
                                                                            : SL_EVAL_ROUTE_TARGET;
            x = sl_failures_compute(&fails, &res, tier, NULL, &fp, &err);
            have_fails = x == 0;
        }
        if (x && x != SL_EINVAL) { /* SL_EINVAL: nothing finished with a known result */
            cli_fail(&err, NULL);
            goto out;
        }
    }
    struct sl_report rep = {
        .title = title,
        .subtitle = sub,
        .metrics = fm,
        .n_metrics = nfm,
        .targets = tg,
        .n_targets = nt,
        .targets_title = "Each tier alone and the route",
        .frontier = r->has_frontier ? &r->frontier : NULL,
        .frontier_what = fwhat,
        .reliability = conf_t->n_conf ? &conf_t->rel : NULL,
        .reliability_what = rwhat,
        .cls = r->kind == SL_RREQ_CLASSIFY && route_t->n ? &route_t->cls : NULL,
        .cls_what = "route",
        .class_names = r->class_names,
        .more_cls = more,
        .n_more_cls = n_more,
        .fields = r->kind == SL_RREQ_EXTRACT && route_t->n ? &route_t->ext : NULL,
        .fields_what = "route",
        .latency_ms = route_t->latency_ms,
        .n_latency = route_t->n,
        .latency_what = "The route: the whole routing of each request.",
        .failures = have_fails ? &fails : NULL,
    };
    sl_report_table(&rep, stdout);
    print_decisions(route_t, stdout);
    for (size_t t = 0; t < r->n_targets; t++) {
        if (!r->targets[t].n_failed) continue;
        const char *first = NULL;
        for (size_t i = 0; i < s.run.n_examples && !first; i++) {
            const struct sl_eval_record *rec = &s.run.rec[i * s.run.n_targets + t];
            if (rec->done && rec->failed) first = rec->error;
        }
        fprintf(stderr,
                "sluice eval: warning: %s: %zu of %zu requests failed (counted wrong); first: %s\n",
                r->targets[t].name, r->targets[t].n_failed, r->targets[t].n, first ? first : "?");
    }
    printf("results: %s (%zu called, %zu resumed)\n", s.results, s.run.n_called, s.run.n_resumed);
    if (o.html && write_report(o.html, &rep, true, &err)) {
        cli_fail(&err, NULL);
        goto out;
    }
    if (o.json && write_report(o.json, &rep, false, &err)) {
        cli_fail(&err, NULL);
        goto out;
    }
    if (s.run.n_pending) goto out; /* interrupted: the report is partial */
    exit_code = 0;
    for (size_t i = 0; i < o.fail.n; i++) {
        char msg[256];
        int x = sl_eval_fail_under(r, o.fail.v[i], msg, sizeof msg, &err);
        if (x == 1) {
            fprintf(stderr, "sluice eval: %s\n", msg);
            exit_code = CLI_EXIT_ERR;
        }
    }
out:
    sl_failures_free(&fails);
    sl_results_free(&res);
    side_free(&s);
    return exit_code;
}

/* ---- sluice compare ----------------------------------------------------------------- */

int cmd_compare(int argc, char **argv)
{
    struct opts o = {0};
    const char *pos[2];
    int n_pos = 0;
    int rc = parse_common("compare", compare_usage, argc, argv, &o, pos, 2, &n_pos);
    if (rc) return rc < 0 ? 0 : rc;
    if (n_pos < 1) return cli_usage("compare", "give A.yaml (and B.yaml, or a second --route)");
    if (o.routes.n < 1 || o.routes.n > 2) return cli_usage("compare", "give one or two --route");
    if (n_pos == 1 && o.routes.n != 2)
        return cli_usage("compare", "with one config, give two --route to compare");
    if (o.fail.n) return cli_usage("compare", "--fail-under is for sluice eval");
    if (o.failures >= 0) return cli_usage("compare", "--failures is for sluice eval");

    struct side s[2] = {0};
    struct sl_err err = {0};
    int exit_code = CLI_EXIT_ERR;
    char base[PATH_MAX - 8];
    const char *ra = o.routes.v[0], *rb = o.routes.n == 2 ? o.routes.v[1] : o.routes.v[0];
    if (o.out)
        snprintf(base, sizeof base, "%s", o.out);
    else
        snprintf(base, sizeof base, "compare-%.100s-%.100s", ra, rb);
    for (int k = 0; k < 2; k++) {
        const char *cfg = pos[n_pos == 2 ? k : 0], *route = k ? rb : ra;
        if (side_setup(&s[k], cfg, route, o.task, &err)) {
            cli_fail(&err, NULL);
            goto out;
        }
        snprintf(s[k].dir, sizeof s[k].dir, "%s/%c", base, k ? 'b' : 'a');
        if (n_pos == 2 && !strcmp(ra, rb))
            snprintf(s[k].name, sizeof s[k].name, "%s", cfg);
        else if (n_pos == 2)
            snprintf(s[k].name, sizeof s[k].name, "%s:%s", cfg, route);
        else
            snprintf(s[k].name, sizeof s[k].name, "%s", route);
    }
    if (s[0].rt.kind != s[1].rt.kind) {
        sl_err_set(&err, SL_EINVAL, "route '%s' runs a %s task and '%s' a %s task: not comparable",
                   ra, kind_name(s[0].rt.kind), rb, kind_name(s[1].rt.kind));
        cli_fail(&err, NULL);
        goto out;
    }
    for (int k = 0; k < 2; k++) {
        if (side_run(&s[k], &o, false, &err)) {
            cli_fail(&err, NULL);
            goto out;
        }
        if (s[k].run.n_pending) goto out; /* interrupted: resume both with --resume */
    }
    /* side by side: A, B, B - A */
    struct sl_report_metric m[3][SL_EVAL_MAX_METRICS];
    struct sl_report_target tg[3];
    size_t n0 = 0;
    for (int k = 0; k < 2; k++) {
        const struct sl_eval_report *r = &s[k].rep;
        n0 = sl_eval_target_metrics(r, r->n_targets - 1, m[k]);
        tg[k] = (struct sl_report_target){s[k].name, m[k], n0};
    }
    for (size_t i = 0; i < n0; i++)
        m[2][i] =
            (struct sl_report_metric){m[0][i].name, m[1][i].value - m[0][i].value, m[0][i].label};
    tg[2] = (struct sl_report_target){"B - A", m[2], n0};
    /* paired outcomes on the examples both answered, and McNemar's exact test */
    size_t both = 0, only_a = 0, only_b = 0, neither = 0;
    const struct sl_eval_run *ra_run = &s[0].run, *rb_run = &s[1].run;
    size_t ta = ra_run->n_targets - 1, tb = rb_run->n_targets - 1;
    size_t n = ra_run->n_examples < rb_run->n_examples ? ra_run->n_examples : rb_run->n_examples;
    for (size_t i = 0; i < n; i++) {
        const struct sl_eval_record *a = &ra_run->rec[i * ra_run->n_targets + ta];
        const struct sl_eval_record *b = &rb_run->rec[i * rb_run->n_targets + tb];
        if (!a->done || !b->done) continue;
        /* correctness as the report counts it: re-derived from each side's metrics */
        bool ca, cb;
        if (s[0].rt.kind == SL_RREQ_CLASSIFY) {
            ca = !a->failed && a->pred >= 0 &&
                 !strcmp(s[0].rt.labels[a->pred], s[0].data.v[i].label);
            cb = !b->failed && b->pred >= 0 &&
                 !strcmp(s[1].rt.labels[b->pred], s[1].data.v[i].label);
        } else {
            ca = !a->failed && a->pred_json && !strcmp(a->pred_json, s[0].data.v[i].expected);
            cb = !b->failed && b->pred_json && !strcmp(b->pred_json, s[1].data.v[i].expected);
        }
        both += ca && cb;
        only_a += ca && !cb;
        only_b += !ca && cb;
        neither += !ca && !cb;
    }
    size_t disc = only_a + only_b, lo = only_a < only_b ? only_a : only_b;
    double p = disc ? 2 * sl_binom_cdf(lo, disc, 0.5) : 1.0;
    if (p > 1) p = 1;
    struct sl_report_metric pm[] = {
        {"paired.both_right", (double)both, "both right"},
        {"paired.only_a_right", (double)only_a, "only A right"},
        {"paired.only_b_right", (double)only_b, "only B right"},
        {"paired.both_wrong", (double)neither, "both wrong"},
        {"paired.mcnemar_p", p, "McNemar exact p-value (A and B equally good)"},
    };
    char title[400], sub[1024];
    snprintf(title, sizeof title, "sluice compare: A = %s, B = %s", s[0].name, s[1].name);
    snprintf(sub, sizeof sub, "%s, %zu examples; task %s (%s)", o.data, n, s[0].rt.task,
             kind_name(s[0].rt.kind));
    struct sl_report rep = {
        .title = title,
        .subtitle = sub,
        .metrics = pm,
        .n_metrics = sizeof pm / sizeof *pm,
        .targets = tg,
        .n_targets = 3,
        .targets_title = "A and B side by side",
    };
    sl_report_table(&rep, stdout);
    printf("results: %s, %s\n", s[0].results, s[1].results);
    if (o.html && write_report(o.html, &rep, true, &err)) {
        cli_fail(&err, NULL);
        goto out;
    }
    if (o.json && write_report(o.json, &rep, false, &err)) {
        cli_fail(&err, NULL);
        goto out;
    }
    exit_code = s[0].run.n_pending || s[1].run.n_pending ? CLI_EXIT_ERR : 0;
out:
    side_free(&s[0]);
    side_free(&s[1]);
    return exit_code;
}
