/*
 * test_eval_run.c - the live evaluation engine (src/eval/run.c) against a
 * scripted fake router: data files, metrics per target, concurrency,
 * interruption and resume, the half-written last line, --fail-under, and
 * the reports it feeds.
 *
 * The fake answers example i ("msg i") as follows, so every number below
 * can be worked out by hand:
 *   truth   "spam" when i % 3 == 0, else "ham"
 *   small   right unless i % 5 == 0; confidence 0.5 + 0.05 (i % 10);
 *           10 + i % 10 ms; cost 0.0001
 *   large   right unless i % 7 == 3; confidence 0.9; 100 ms; cost 0.01
 *   route   a cascade at 0.8: small's answer when its confidence >= 0.8,
 *           else large's (escalated; latency and cost of both)
 */
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "eval/failures.h"
#include "eval/run.h"
#include "test.h"

enum { N = 40, MAXN = 64 };

static const char *labels[2] = {"spam", "ham"};
static const char *tiers[2] = {"small", "large"};

struct fake {
    atomic_int calls[MAXN][3]; /* successful calls per (example, target: small, large, route) */
    atomic_int total;          /* every call */
    int fail_after;            /* calls after this many fail hard; 0 = never */
    int status_fail_mod;       /* route answers 502 when i % mod == 1; 0 = never */
    bool extract;
};

static const char *truth_of(int i)
{
    return i % 3 == 0 ? "spam" : "ham";
}

static double small_conf(int i)
{
    return 0.5 + 0.05 * (i % 10);
}

static bool small_right(int i)
{
    return i % 5 != 0;
}

static bool large_right(int i)
{
    return i % 7 != 3;
}

static const char *answer(int i, bool right)
{
    const char *t = truth_of(i);
    return right ? t : (!strcmp(t, "spam") ? "ham" : "spam");
}

/* extract: the expected object of i is {"n": i, "kind": truth}; small gets
 * "kind" wrong where it is wrong, large answers n as a real (i.0), which
 * must still match. */
static char *extract_answer(int i, bool small)
{
    char buf[128];
    bool right = small ? small_right(i) : large_right(i);
    if (small)
        snprintf(buf, sizeof buf, "{\"kind\": \"%s\", \"n\": %d}", answer(i, right), i);
    else if (right)
        snprintf(buf, sizeof buf, "{\"n\": %d.0, \"kind\": \"%s\"}", i, truth_of(i));
    else
        snprintf(buf, sizeof buf, "{\"n\": %d, \"kind\": \"%s\", \"extra\": true}", i, truth_of(i));
    return strdup(buf);
}

static void fill(struct sl_route_result *res, const struct fake *fk, int i, bool small,
                 const char *backend)
{
    res->status = 200;
    snprintf(res->backend, sizeof res->backend, "%s", backend);
    if (fk->extract) {
        res->content = extract_answer(i, small);
    } else {
        const char *a = answer(i, small ? small_right(i) : large_right(i));
        res->content = strdup(a);
        res->label = !strcmp(a, "spam") ? 0 : 1;
    }
    res->confidence = small ? small_conf(i) : 0.9;
    res->latency_ms = small ? 10 + i % 10 : 100;
    res->cost = small ? 0.0001 : 0.01;
    res->tokens_in = 50 + i;
    res->tokens_out = 1;
}

static int fake_call(void *user, const struct sl_route_req *req, struct sl_route_result *res,
                     struct sl_err *err)
{
    struct fake *fk = user;
    int i = -1;
    int n = atomic_fetch_add(&fk->total, 1) + 1;
    if (fk->fail_after && n > fk->fail_after) {
        res->status = 500;
        return sl_err_set(err, SL_EIO, "upstream exploded");
    }
    if (sscanf(req->input, "msg %d", &i) != 1 || i < 0 || i >= MAXN || !req->no_log)
        return sl_err_set(err, SL_EINVAL, "fake: bad request '%s'", req->input);
    int t = !req->force_tier ? 2 : !strcmp(req->force_tier, "small") ? 0 : 1;
    atomic_fetch_add(&fk->calls[i][t], 1);
    if (t < 2) {
        fill(res, fk, i, t == 0, req->force_tier);
        res->decision = "forced";
        return 0;
    }
    if (fk->status_fail_mod && i % fk->status_fail_mod == 1) {
        res->status = 502;
        res->error = strdup("every tier failed");
        res->decision = "failed";
        res->label = -1;
        res->confidence = -1;
        return 0;
    }
    bool keep = small_conf(i) >= 0.8;
    fill(res, fk, i, keep, keep ? "small" : "large");
    res->decision = keep ? "local" : "escalated";
    res->escalated = !keep;
    if (!keep) {
        res->latency_ms = 10 + i % 10 + 100;
        res->cost = 0.0001 + 0.01;
    }
    res->n_stages = keep ? 1 : 2;
    snprintf(res->stages[0].backend, SL_ROUTE_NAME_MAX, "small");
    res->stages[0].called = true;
    res->stages[0].accepted = keep;
    res->stages[0].confidence = small_conf(i);
    res->stages[0].threshold = 0.8;
    snprintf(res->stages[0].note, sizeof res->stages[0].note, "confidence %.2f", small_conf(i));
    if (!keep) {
        snprintf(res->stages[1].backend, SL_ROUTE_NAME_MAX, "large");
        res->stages[1].called = res->stages[1].accepted = true;
        res->stages[1].confidence = 0.9;
        res->stages[1].threshold = -1;
    }
    return 0;
}

static char *make_jsonl(int n, bool extract)
{
    size_t cap = (size_t)n * 160 + 1, o = 0;
    char *s = malloc(cap);
    for (int i = 0; i < n; i++) {
        if (extract)
            o += (size_t)snprintf(
                s + o, cap - o,
                "{\"id\": \"e%d\", \"input\": \"msg %d\", \"expected\": {\"n\": %d, "
                "\"kind\": \"%s\"}, \"source\": \"s%d\"}\n",
                i, i, i, truth_of(i), i % 2);
        else
            o += (size_t)snprintf(s + o, cap - o,
                                  "{\"id\": \"e%d\", \"input\": \"msg %d\", \"label\": \"%s\", "
                                  "\"meta\": {\"source\": \"s%d\"}}\n",
                                  i, i, truth_of(i), i % 2);
    }
    return s;
}

static struct sl_eval_route route_desc(bool extract)
{
    return (struct sl_eval_route){
        .route = "triage",
        .kind = extract ? SL_RREQ_EXTRACT : SL_RREQ_CLASSIFY,
        .task = "spam",
        .tiers = tiers,
        .n_tiers = 2,
        .labels = labels,
        .n_labels = 2,
        .threshold = 0.8,
    };
}

static void load(struct sl_eval_data *d, int n, bool extract)
{
    struct sl_err err = {0};
    char *s = make_jsonl(n, extract);
    T_OK(sl_eval_data_parse(d, s, strlen(s), false, extract ? SL_RREQ_EXTRACT : SL_RREQ_CLASSIFY,
                            NULL, &err),
         &err);
    free(s);
}

/* The results file's lines, sorted and joined (the order of lines depends
 * on the threads; the set must not). */
static char *sorted_lines(const char *path)
{
    size_t len = 0;
    char *buf = t_read_file(path, &len);
    if (!buf) return strdup("");
    char *lines[4096];
    size_t n = 0;
    for (char *p = strtok(buf, "\n"); p && n < 4096; p = strtok(NULL, "\n"))
        lines[n++] = p;
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(lines[j - 1], lines[j]) > 0; j--) {
            char *t = lines[j];
            lines[j] = lines[j - 1];
            lines[j - 1] = t;
        }
    char *out = malloc(len + 2);
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        o += (size_t)sprintf(out + o, "%s\n", lines[i]);
    out[o] = 0;
    free(buf);
    return out;
}

static size_t count_lines(const char *path)
{
    size_t len = 0, n = 0;
    char *buf = t_read_file(path, &len);
    for (size_t i = 0; buf && i < len; i++)
        n += buf[i] == '\n';
    free(buf);
    return n;
}

static struct sl_eval_params params(const char *path, int conc)
{
    struct sl_eval_params p = sl_eval_default_params();
    p.results_path = path;
    p.concurrency = conc;
    return p;
}

/* ------------------------------------------------------------------------ */

static void eval_data_reads_jsonl_and_csv(void)
{
    struct sl_eval_data d;
    struct sl_err err = {0};
    const char *jl = "{\"id\": 7, \"input\": \"hello\", \"label\": \"spam\", \"lang\": \"en\", "
                     "\"meta\": {\"source\": \"web\", \"n\": 3}}\n"
                     "\n"
                     "{\"input\": \"second\", \"label\": \"ham\", \"vip\": true}\r\n";
    T_OK(sl_eval_data_parse(&d, jl, strlen(jl), false, SL_RREQ_CLASSIFY, NULL, &err), &err);
    T_EQ_INT(d.n, 2);
    T_EQ_STR(d.v[0].id, "7");
    T_EQ_STR(d.v[0].input, "hello");
    T_EQ_STR(d.v[0].label, "spam");
    T_EQ_STR(d.v[0].meta, "{\"lang\":\"en\",\"n\":3,\"source\":\"web\"}");
    T_EQ_INT(d.v[0].n_kv, 3);
    T_EQ_STR(d.v[1].id, "2"); /* no id: the row number */
    T_EQ_INT(d.v[1].line, 3);
    T_EQ_STR(d.v[1].kv[0].key, "vip");
    T_EQ_STR(d.v[1].kv[0].value, "true");
    sl_eval_data_free(&d);

    const char *csv = "id,input,label,source\r\n"
                      "a,\"hi, \"\"you\"\"\",spam,web\r\n"
                      "b,\"two\nlines\",ham,mail\r\n";
    T_OK(sl_eval_data_parse(&d, csv, strlen(csv), true, SL_RREQ_CLASSIFY, NULL, &err), &err);
    T_EQ_INT(d.n, 2);
    T_EQ_STR(d.v[0].input, "hi, \"you\"");
    T_EQ_STR(d.v[1].input, "two\nlines");
    T_EQ_STR(d.v[1].meta, "{\"source\":\"mail\"}");
    sl_eval_data_free(&d);

    const char *bom = "\xef\xbb\xbfinput,label\nhi,spam\n"; /* spreadsheets write a BOM */
    T_OK(sl_eval_data_parse(&d, bom, strlen(bom), true, SL_RREQ_CLASSIFY, NULL, &err), &err);
    T_EQ_INT(d.n, 1);
    sl_eval_data_free(&d);

    const char *xcsv = "text,want\nbill me,\"{\"\"amount\"\": 5.0, \"\"who\"\": \"\"ann\"\"}\"\n";
    struct sl_eval_fields f = {.input = "text", .expected = "want"};
    T_OK(sl_eval_data_parse(&d, xcsv, strlen(xcsv), true, SL_RREQ_EXTRACT, &f, &err), &err);
    T_EQ_STR(d.v[0].expected, "{\"amount\":5,\"who\":\"ann\"}"); /* canonical: 5.0 -> 5, sorted */
    sl_eval_data_free(&d);

    /* bad input names the line */
    const char *bad1 = "{\"input\": \"x\", \"label\": \"spam\"}\nnot json\n";
    T_EQ_INT(sl_eval_data_parse(&d, bad1, strlen(bad1), false, SL_RREQ_CLASSIFY, NULL, &err),
             SL_EFORMAT);
    T_TRUE(strstr(err.msg, "line 2") != NULL);
    const char *bad2 = "{\"text\": \"x\", \"label\": \"spam\"}\n";
    T_EQ_INT(sl_eval_data_parse(&d, bad2, strlen(bad2), false, SL_RREQ_CLASSIFY, NULL, &err),
             SL_EFORMAT);
    T_TRUE(strstr(err.msg, "'input'") != NULL);
    const char *bad3 = "{\"id\":\"a\",\"input\":\"x\",\"label\":\"spam\"}\n{\"id\":\"a\",\"input\":"
                       "\"y\",\"label\":\"ham\"}\n";
    T_EQ_INT(sl_eval_data_parse(&d, bad3, strlen(bad3), false, SL_RREQ_CLASSIFY, NULL, &err),
             SL_EINVAL);
    T_TRUE(strstr(err.msg, "'a' appears twice") != NULL);
    const char *bad4 = "{\"input\": \"x\"}\n";
    T_EQ_INT(sl_eval_data_parse(&d, bad4, strlen(bad4), false, SL_RREQ_CLASSIFY, NULL, &err),
             SL_EFORMAT);
    T_TRUE(strstr(err.msg, "'label'") != NULL);
    const char *bad5 = "input,label\nx,spam,extra\n";
    T_EQ_INT(sl_eval_data_parse(&d, bad5, strlen(bad5), true, SL_RREQ_CLASSIFY, NULL, &err),
             SL_EFORMAT);
    T_TRUE(strstr(err.msg, "record 2") != NULL);
    const char *bad6 = "{\"input\": \"x\", \"expected\": [1]}\n";
    T_EQ_INT(sl_eval_data_parse(&d, bad6, strlen(bad6), false, SL_RREQ_EXTRACT, NULL, &err),
             SL_EFORMAT);
    T_EQ_INT(sl_eval_data_parse(&d, "", 0, false, SL_RREQ_CLASSIFY, NULL, &err), SL_EINVAL);
    T_EQ_INT(sl_eval_data_load(&d, t_tmp_path("absent.jsonl"), SL_RREQ_CLASSIFY, NULL, &err),
             SL_EIO);
}

static void eval_rejects_labels_outside_the_task(void)
{
    struct sl_eval_data d;
    struct sl_err err = {0};
    const char *jl = "{\"input\": \"msg 1\", \"label\": \"phishing\"}\n";
    T_OK(sl_eval_data_parse(&d, jl, strlen(jl), false, SL_RREQ_CLASSIFY, NULL, &err), &err);
    struct fake fk = {0};
    struct sl_eval_route rt = route_desc(false);
    struct sl_eval_params p = params(t_tmp_path("labels.jsonl"), 1);
    struct sl_eval_run run;
    T_EQ_INT(sl_eval_run(&run, &d, &rt, fake_call, &fk, &p, &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "'phishing' is not one of") != NULL);
    T_EQ_INT(atomic_load(&fk.total), 0); /* nothing was called */
    sl_eval_run_free(&run);
    sl_eval_data_free(&d);
}

static void eval_metrics_per_target_are_right(void)
{
    struct sl_eval_data d;
    struct sl_err err = {0};
    load(&d, N, false);
    static struct fake fk;
    memset(&fk, 0, sizeof fk);
    struct sl_eval_route rt = route_desc(false);
    struct sl_eval_params p = params(t_tmp_path("metrics.jsonl"), 4);
    struct sl_eval_run run;
    T_OK(sl_eval_run(&run, &d, &rt, fake_call, &fk, &p, &err), &err);
    T_EQ_INT(run.n_called, 3 * N);
    T_EQ_INT(run.n_pending, 0);
    T_EQ_INT(count_lines(p.results_path), 3 * N);
    struct sl_eval_report r;
    T_OK(sl_eval_report_compute(&r, &d, &rt, &run, &err), &err);

    /* by hand */
    int s_ok = 0, l_ok = 0, r_ok = 0, esc = 0;
    double r_cost = 0;
    int conf_n[2][2] = {{0}}; /* [truth][pred] of the route: 0 spam, 1 ham */
    for (int i = 0; i < N; i++) {
        bool keep = small_conf(i) >= 0.8, ok = keep ? small_right(i) : large_right(i);
        s_ok += small_right(i);
        l_ok += large_right(i);
        r_ok += ok;
        esc += !keep;
        r_cost += keep ? 0.0001 : 0.0101;
        int tr = i % 3 == 0 ? 0 : 1;
        conf_n[tr][ok ? tr : 1 - tr]++;
    }
    T_EQ_INT(r.n_targets, 3);
    T_EQ_STR(r.targets[0].name, "small");
    T_EQ_STR(r.targets[2].name, "route");
    T_NEAR(r.targets[0].quality, s_ok / (double)N, 1e-12);
    T_NEAR(r.targets[1].quality, l_ok / (double)N, 1e-12);
    T_NEAR(r.targets[2].quality, r_ok / (double)N, 1e-12);
    T_NEAR(r.targets[2].escalation_rate, esc / (double)N, 1e-12);
    T_NEAR(r.targets[0].escalation_rate, 0, 0);
    T_NEAR(r.targets[2].cost_per_1k, 1000 * r_cost / N, 1e-9);
    T_NEAR(r.targets[1].cost_per_1k, 10, 1e-9);
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++)
            T_EQ_INT(r.targets[2].cls.confusion[a * 2 + b], conf_n[a][b]);
    T_EQ_INT(r.targets[2].cls.n_class, 2); /* no missing prediction: no "(none)" class */
    /* small latencies are 10..19, four of each: p50 = 20th smallest, p95 = 38th */
    T_NEAR(r.targets[0].lat.p50, 14, 0);
    T_NEAR(r.targets[0].lat.p95, 19, 0);
    T_NEAR(r.targets[1].lat.p99, 100, 0);
    T_NEAR(r.targets[0].tokens_in_mean, 50 + (N - 1) / 2.0, 1e-9);
    /* ECE of the small tier from its own confidences */
    double cf[N];
    bool okb[N];
    for (int i = 0; i < N; i++) {
        cf[i] = small_conf(i);
        okb[i] = small_right(i);
    }
    struct sl_reliability rel;
    T_OK(sl_reliability_compute(&rel, cf, okb, N, &err), &err);
    T_NEAR(r.targets[0].rel.ece, rel.ece, 1e-12);
    T_EQ_INT(r.targets[0].n_conf, N);
    /* decisions of the route */
    size_t local = 0, escalated = 0;
    for (size_t k = 0; k < r.targets[2].n_decisions; k++) {
        if (!strcmp(r.targets[2].decisions[k].decision, "local"))
            local = r.targets[2].decisions[k].count;
        if (!strcmp(r.targets[2].decisions[k].decision, "escalated"))
            escalated = r.targets[2].decisions[k].count;
    }
    T_EQ_INT(local, N - esc);
    T_EQ_INT(escalated, esc);
    /* the frontier: tiers alone, and the cascade at the route's threshold
     * replays exactly what the route measured */
    T_TRUE(r.has_frontier);
    T_NEAR(r.frontier.small_only.quality, s_ok / (double)N, 1e-12);
    T_NEAR(r.frontier.large_only.quality, l_ok / (double)N, 1e-12);
    T_NEAR(r.frontier.large_only.cost, 0.01, 1e-12);
    T_NEAR(r.at_quality, r.targets[2].quality, 1e-12);
    T_NEAR(r.at_cost_per_1k, r.targets[2].cost_per_1k, 1e-9);
    T_NEAR(r.at_coverage, 1 - r.targets[2].escalation_rate, 1e-12);
    /* metrics by name */
    double v;
    T_OK(sl_eval_metric(&r, "accuracy", &v, &err), &err);
    T_NEAR(v, r_ok / (double)N, 1e-12);
    T_OK(sl_eval_metric(&r, "small.accuracy", &v, &err), &err);
    T_NEAR(v, s_ok / (double)N, 1e-12);
    T_OK(sl_eval_metric(&r, "large.p50_ms", &v, &err), &err);
    T_NEAR(v, 100, 0);
    T_OK(sl_eval_metric(&r, "frontier.large_cost_per_1k", &v, &err), &err);
    T_NEAR(v, 10, 1e-9);
    T_EQ_INT(sl_eval_metric(&r, "exact_match", &v, &err), SL_ENOTFOUND);

    /* the results lines carry what other tools read */
    size_t len;
    char *buf = t_read_file(p.results_path, &len);
    char *nl = strchr(buf, '\n');
    json_t *o = json_loadb(buf, (size_t)(nl - buf), 0, NULL);
    T_TRUE(json_is_object(o));
    const char *keys[] = {"id",        "target",     "truth",   "pred",      "confidence",
                          "correct",   "latency_ms", "cost",    "tokens_in", "tokens_out",
                          "escalated", "decision",   "backend", "status",    "input_len",
                          "meta",      "error"};
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
        T_TRUE(json_object_get(o, keys[k]) != NULL);
    /* lines come in completion order (concurrency 4): item eK carries sK%2 */
    const char *id = json_string_value(json_object_get(o, "id"));
    char want_source[8];
    snprintf(want_source, sizeof want_source, "s%d", id && id[0] == 'e' ? atoi(id + 1) % 2 : -1);
    T_EQ_STR(json_string_value(json_object_get(json_object_get(o, "meta"), "source")), want_source);
    json_decref(o);
    free(buf);
    sl_eval_report_free(&r);
    sl_eval_run_free(&run);
    sl_eval_data_free(&d);
}

static void eval_concurrency_gives_the_same_results(void)
{
    struct sl_eval_data d;
    struct sl_err err = {0};
    load(&d, N, false);
    static struct fake f1, f8;
    memset(&f1, 0, sizeof f1);
    memset(&f8, 0, sizeof f8);
    struct sl_eval_route rt = route_desc(false);
    char a[512], b[512];
    snprintf(a, sizeof a, "%s", t_tmp_path("conc1.jsonl"));
    snprintf(b, sizeof b, "%s", t_tmp_path("conc8.jsonl"));
    struct sl_eval_params p1 = params(a, 1), p8 = params(b, 8);
    struct sl_eval_run r1, r8;
    T_OK(sl_eval_run(&r1, &d, &rt, fake_call, &f1, &p1, &err), &err);
    T_OK(sl_eval_run(&r8, &d, &rt, fake_call, &f8, &p8, &err), &err);
    char *s1 = sorted_lines(a), *s8 = sorted_lines(b);
    T_TRUE(strlen(s1) > 0);
    T_EQ_STR(s1, s8);
    struct sl_eval_report q1, q8;
    T_OK(sl_eval_report_compute(&q1, &d, &rt, &r1, &err), &err);
    T_OK(sl_eval_report_compute(&q8, &d, &rt, &r8, &err), &err);
    for (size_t t = 0; t < 3; t++) {
        struct sl_report_metric m1[SL_EVAL_MAX_METRICS], m8[SL_EVAL_MAX_METRICS];
        size_t n1 = sl_eval_target_metrics(&q1, t, m1), n8 = sl_eval_target_metrics(&q8, t, m8);
        T_EQ_INT(n1, n8);
        for (size_t k = 0; k < n1; k++)
            T_NEAR(m1[k].value, m8[k].value, 0);
    }
    free(s1);
    free(s8);
    sl_eval_report_free(&q1);
    sl_eval_report_free(&q8);
    sl_eval_run_free(&r1);
    sl_eval_run_free(&r8);
    sl_eval_data_free(&d);
}

/* Every pair was called exactly once over both fakes. */
static void check_each_pair_once(const struct fake *a, const struct fake *b, int n)
{
    int bad = 0;
    for (int i = 0; i < n; i++)
        for (int t = 0; t < 3; t++)
            if (atomic_load(&a->calls[i][t]) + atomic_load(&b->calls[i][t]) != 1) bad++;
    T_EQ_INT(bad, 0);
}

static void eval_resumes_after_a_hard_failure_without_repeats(void)
{
    struct sl_eval_data d;
    struct sl_err err = {0};
    load(&d, N, false);
    static struct fake full, first, second;
    memset(&full, 0, sizeof full);
    memset(&first, 0, sizeof first);
    memset(&second, 0, sizeof second);
    struct sl_eval_route rt = route_desc(false);
    char ref[512], path[512];
    snprintf(ref, sizeof ref, "%s", t_tmp_path("ref.jsonl"));
    snprintf(path, sizeof path, "%s", t_tmp_path("resume.jsonl"));
    struct sl_eval_params pr = params(ref, 3), p = params(path, 3);
    struct sl_eval_run run;
    T_OK(sl_eval_run(&run, &d, &rt, fake_call, &full, &pr, &err), &err);
    sl_eval_run_free(&run);

    first.fail_after = 37; /* the upstream dies mid-run */
    T_EQ_INT(sl_eval_run(&run, &d, &rt, fake_call, &first, &p, &err), SL_EIO);
    T_TRUE(strstr(err.msg, "upstream exploded") != NULL);
    T_TRUE(strstr(err.msg, "example 'e") != NULL);
    size_t done_first = run.n_called;
    T_TRUE(done_first <= 37 && done_first > 0);
    T_EQ_INT(run.n_pending, 3 * N - done_first);
    T_EQ_INT(count_lines(path), done_first);
    sl_eval_run_free(&run);

    p.resume = true;
    T_OK(sl_eval_run(&run, &d, &rt, fake_call, &second, &p, &err), &err);
    T_EQ_INT(run.n_resumed, done_first);
    T_EQ_INT(run.n_called, 3 * N - done_first);
    T_EQ_INT(run.n_pending, 0);
    check_each_pair_once(&first, &second, N);
    char *a = sorted_lines(ref), *b = sorted_lines(path);
    T_EQ_STR(a, b);
    free(a);
    free(b);

    /* resuming a finished run calls nothing */
    static struct fake third;
    memset(&third, 0, sizeof third);
    sl_eval_run_free(&run);
    T_OK(sl_eval_run(&run, &d, &rt, fake_call, &third, &p, &err), &err);
    T_EQ_INT(atomic_load(&third.total), 0);
    T_EQ_INT(run.n_resumed, 3 * N);
    struct sl_eval_report r;
    T_OK(sl_eval_report_compute(&r, &d, &rt, &run, &err), &err);
    T_EQ_INT(r.targets[2].n, N);
    sl_eval_report_free(&r);
    sl_eval_run_free(&run);
    sl_eval_data_free(&d);
}

static void eval_limit_then_resume_covers_the_rest(void)
{
    struct sl_eval_data d;
    struct sl_err err = {0};
    load(&d, N, false);
    static struct fake first, second;
    memset(&first, 0, sizeof first);
    memset(&second, 0, sizeof second);
    struct sl_eval_route rt = route_desc(false);
    struct sl_eval_params p = params(t_tmp_path("limit.jsonl"), 2);
    p.limit = 7;
    struct sl_eval_run run;
    T_OK(sl_eval_run(&run, &d, &rt, fake_call, &first, &p, &err), &err);
    T_EQ_INT(run.n_examples, 7);
    T_EQ_INT(run.n_called, 21);
    sl_eval_run_free(&run);
    p.limit = 0;
    p.resume = true;
    T_OK(sl_eval_run(&run, &d, &rt, fake_call, &second, &p, &err), &err);
    T_EQ_INT(run.n_resumed, 21);
    T_EQ_INT(run.n_called, 3 * N - 21);
    check_each_pair_once(&first, &second, N);
    sl_eval_run_free(&run);
    sl_eval_data_free(&d);
}

static void eval_resume_cuts_a_half_written_last_line(void)
{
    struct sl_eval_data d;
    struct sl_err err = {0};
    load(&d, 10, false);
    static struct fake full, again;
    memset(&full, 0, sizeof full);
    memset(&again, 0, sizeof again);
    struct sl_eval_route rt = route_desc(false);
    char path[512];
    snprintf(path, sizeof path, "%s", t_tmp_path("cut.jsonl"));
    struct sl_eval_params p = params(path, 2);
    struct sl_eval_run run;
    T_OK(sl_eval_run(&run, &d, &rt, fake_call, &full, &p, &err), &err);
    sl_eval_run_free(&run);
    char *ref = sorted_lines(path);
    /* kill mid-write: the last line loses its end */
    size_t len;
    char *buf = t_read_file(path, &len);
    T_EQ_INT(truncate(path, (off_t)(len - 25)), 0);
    free(buf);
    T_EQ_INT(count_lines(path), 29);
    p.resume = true;
    T_OK(sl_eval_run(&run, &d, &rt, fake_call, &again, &p, &err), &err);
    T_EQ_INT(run.n_resumed, 29);
    T_EQ_INT(run.n_called, 1); /* only the pair whose line was cut */
    T_EQ_INT(atomic_load(&again.total), 1);
    char *now = sorted_lines(path);
    T_EQ_STR(now, ref);
    T_EQ_INT(count_lines(path), 30);
    free(now);
    sl_eval_run_free(&run);

    /* a pair written twice (an older file): the later line wins, the file
     * is compacted to one line per pair, nothing is called */
    buf = t_read_file(path, &len);
    char *nl = strchr(buf, '\n');
    FILE *f = fopen(path, "a");
    fwrite(buf, 1, (size_t)(nl - buf) + 1, f);
    fclose(f);
    free(buf);
    T_EQ_INT(count_lines(path), 31);
    T_OK(sl_eval_run(&run, &d, &rt, fake_call, &again, &p, &err), &err);
    T_EQ_INT(run.n_called, 0);
    T_EQ_INT(count_lines(path), 30);
    now = sorted_lines(path);
    T_EQ_STR(now, ref);
    free(now);
    sl_eval_run_free(&run);

    /* a corrupt complete line in the middle is an error, not silently dropped */
    f = fopen(path, "a");
    fputs("garbage\n{\"id\":\"e1\",\"target\":\"route\"}\n", f);
    fclose(f);
    T_EQ_INT(sl_eval_run(&run, &d, &rt, fake_call, &again, &p, &err), SL_EFORMAT);
    T_TRUE(strstr(err.msg, "line 31") != NULL);
    free(ref);
    sl_eval_run_free(&run);
    sl_eval_data_free(&d);
}

static void eval_failed_requests_count_wrong_and_can_be_retried(void)
{
    struct sl_eval_data d;
    struct sl_err err = {0};
    load(&d, N, false);
    static struct fake fk, retry;
    memset(&fk, 0, sizeof fk);
    memset(&retry, 0, sizeof retry);
    fk.status_fail_mod = 4; /* route fails on i = 1, 5, 9, ...: 10 examples */
    struct sl_eval_route rt = route_desc(false);
    struct sl_eval_params p = params(t_tmp_path("failed.jsonl"), 4);
    struct sl_eval_run run;
    T_OK(sl_eval_run(&run, &d, &rt, fake_call, &fk, &p, &err), &err);
    struct sl_eval_report r;
    T_OK(sl_eval_report_compute(&r, &d, &rt, &run, &err), &err);
    int r_ok = 0;
    for (int i = 0; i < N; i++)
        if (i % 4 != 1) r_ok += small_conf(i) >= 0.8 ? small_right(i) : large_right(i);
    T_EQ_INT(r.targets[2].n_failed, 10);
    T_NEAR(r.targets[2].quality, r_ok / (double)N, 1e-12);
    T_EQ_INT(r.targets[2].cls.n_class, 3); /* spam, ham, (none) */
    T_EQ_STR(r.class_names[2], "(none)");
    T_EQ_INT(r.targets[2].cls.confusion[0 * 3 + 2] + r.targets[2].cls.confusion[1 * 3 + 2], 10);
    T_EQ_INT(r.targets[2].n_conf, N - 10);
    sl_eval_report_free(&r);
    sl_eval_run_free(&run);
    char *txt = t_read_file(p.results_path, NULL);
    T_TRUE(txt && strstr(txt, "\"error\":\"every tier failed\"") != NULL);
    free(txt);
    /* --retry-errors: only the failed pairs run again; their old lines are
     * dropped, so the file still holds each pair once */
    p.resume = true;
    p.retry_errors = true;
    T_OK(sl_eval_run(&run, &d, &rt, fake_call, &retry, &p, &err), &err);
    T_EQ_INT(run.n_called, 10);
    T_EQ_INT(count_lines(p.results_path), 3 * N);
    T_OK(sl_eval_report_compute(&r, &d, &rt, &run, &err), &err);
    T_EQ_INT(r.targets[2].n_failed, 0);
    sl_eval_report_free(&r);
    sl_eval_run_free(&run);
    /* and read back once more: the later line of a pair wins */
    p.retry_errors = false;
    T_OK(sl_eval_run(&run, &d, &rt, fake_call, &retry, &p, &err), &err);
    T_EQ_INT(run.n_called, 0);
    T_OK(sl_eval_report_compute(&r, &d, &rt, &run, &err), &err);
    T_EQ_INT(r.targets[2].n_failed, 0);
    sl_eval_report_free(&r);
    sl_eval_run_free(&run);
    sl_eval_data_free(&d);
}

struct stopper {
    atomic_bool stop;
    size_t after;
};

static void stop_progress(void *ctx, size_t done, size_t total)
{
    struct stopper *s = ctx;
    (void)total;
    if (done >= s->after) atomic_store(&s->stop, true);
}

static void eval_stop_flag_leaves_pairs_for_resume(void)
{
    struct sl_eval_data d;
    struct sl_err err = {0};
    load(&d, N, false);
    static struct fake first, second;
    memset(&first, 0, sizeof first);
    memset(&second, 0, sizeof second);
    struct sl_eval_route rt = route_desc(false);
    struct stopper st = {.after = 11};
    atomic_init(&st.stop, false);
    struct sl_eval_params p = params(t_tmp_path("stop.jsonl"), 3);
    p.stop = &st.stop;
    p.progress = stop_progress;
    p.progress_ctx = &st;
    struct sl_eval_run run;
    T_OK(sl_eval_run(&run, &d, &rt, fake_call, &first, &p, &err), &err);
    T_TRUE(run.stopped);
    T_TRUE(run.n_called >= 11 && run.n_called < 3 * N);
    T_EQ_INT(run.n_pending, 3 * N - run.n_called);
    sl_eval_run_free(&run);
    atomic_store(&st.stop, false);
    st.after = 1000;
    p.resume = true;
    T_OK(sl_eval_run(&run, &d, &rt, fake_call, &second, &p, &err), &err);
    T_TRUE(!run.stopped);
    T_EQ_INT(run.n_pending, 0);
    check_each_pair_once(&first, &second, N);
    sl_eval_run_free(&run);
    sl_eval_data_free(&d);
}

static void eval_extract_metrics_per_field(void)
{
    struct sl_eval_data d;
    struct sl_err err = {0};
    load(&d, 20, true);
    static struct fake fk;
    memset(&fk, 0, sizeof fk);
    fk.extract = true;
    struct sl_eval_route rt = route_desc(true);
    struct sl_eval_params p = params(t_tmp_path("extract.jsonl"), 2);
    struct sl_eval_run run;
    T_OK(sl_eval_run(&run, &d, &rt, fake_call, &fk, &p, &err), &err);
    struct sl_eval_report r;
    T_OK(sl_eval_report_compute(&r, &d, &rt, &run, &err), &err);
    int s_ok = 0, l_ok = 0;
    for (int i = 0; i < 20; i++) {
        s_ok += small_right(i);
        l_ok += large_right(i);
    }
    T_NEAR(r.targets[0].quality, s_ok / 20.0, 1e-12);
    T_NEAR(r.targets[1].quality, l_ok / 20.0, 1e-12); /* n: 3.0 matched 3 */
    /* small: "n" always right, "kind" wrong on i % 5 == 0 (4 of 20) */
    const struct sl_extract_report *x = &r.targets[0].ext;
    T_EQ_INT(x->n_fields, 2);
    T_EQ_STR(x->fields[0].key, "kind");
    T_EQ_INT(x->fields[0].tp, 16);
    T_EQ_INT(x->fields[0].fp, 4);
    T_EQ_INT(x->fields[0].fn, 4);
    T_EQ_INT(x->fields[1].tp, 20);
    /* large: an extra field where wrong (i = 3, 10, 17) */
    const struct sl_extract_report *y = &r.targets[1].ext;
    T_EQ_INT(y->n_fields, 3);
    T_EQ_STR(y->fields[0].key, "extra");
    T_EQ_INT(y->fields[0].fp, 3);
    double v;
    T_OK(sl_eval_metric(&r, "large.exact_match", &v, &err), &err);
    T_NEAR(v, l_ok / 20.0, 1e-12);
    T_OK(sl_eval_metric(&r, "field_f1", &v, &err), &err);
    T_EQ_INT(sl_eval_metric(&r, "accuracy", &v, &err), SL_ENOTFOUND);
    /* the predicted object is in the line, and resuming reads it back */
    size_t len;
    char *buf = t_read_file(p.results_path, &len);
    T_TRUE(strstr(buf, "\"pred\":{") != NULL);
    free(buf);
    sl_eval_report_free(&r);
    sl_eval_run_free(&run);
    p.resume = true;
    T_OK(sl_eval_run(&run, &d, &rt, fake_call, &fk, &p, &err), &err);
    T_EQ_INT(run.n_called, 0);
    T_OK(sl_eval_report_compute(&r, &d, &rt, &run, &err), &err);
    T_NEAR(r.targets[1].quality, l_ok / 20.0, 1e-12);
    sl_eval_report_free(&r);
    sl_eval_run_free(&run);
    sl_eval_data_free(&d);
}

static void eval_fail_under_gates_on_named_metrics(void)
{
    struct sl_eval_data d;
    struct sl_err err = {0};
    load(&d, N, false);
    static struct fake fk;
    memset(&fk, 0, sizeof fk);
    struct sl_eval_route rt = route_desc(false);
    struct sl_eval_params p = params(t_tmp_path("gate.jsonl"), 2);
    p.tiers = false; /* the route only: tiers have no results */
    struct sl_eval_run run;
    T_OK(sl_eval_run(&run, &d, &rt, fake_call, &fk, &p, &err), &err);
    T_EQ_INT(run.n_called, N);
    struct sl_eval_report r;
    T_OK(sl_eval_report_compute(&r, &d, &rt, &run, &err), &err);
    T_TRUE(!r.has_frontier);
    char msg[256];
    double acc = r.targets[2].quality;
    char spec[64];
    snprintf(spec, sizeof spec, "accuracy=%.6f", acc - 0.01);
    T_EQ_INT(sl_eval_fail_under(&r, spec, msg, sizeof msg, &err), 0);
    snprintf(spec, sizeof spec, "accuracy=%.6f", acc + 0.01);
    T_EQ_INT(sl_eval_fail_under(&r, spec, msg, sizeof msg, &err), 1);
    T_TRUE(strstr(msg, "accuracy = ") == msg);
    T_TRUE(strstr(msg, "is under") != NULL);
    T_EQ_INT(sl_eval_fail_under(&r, "macro_f1=0.1", msg, sizeof msg, &err), 0);
    T_EQ_INT(sl_eval_fail_under(&r, "route.accuracy=0.1", msg, sizeof msg, &err), 0);
    /* a tier that was not run was not measured: the gate fails */
    T_EQ_INT(sl_eval_fail_under(&r, "small.accuracy=0.1", msg, sizeof msg, &err), 1);
    T_TRUE(strstr(msg, "not measured") != NULL);
    T_EQ_INT(sl_eval_fail_under(&r, "bogus=1", msg, sizeof msg, &err), SL_ENOTFOUND);
    T_TRUE(strstr(err.msg, "bogus") != NULL);
    T_EQ_INT(sl_eval_fail_under(&r, "accuracy", msg, sizeof msg, &err), SL_EINVAL);
    T_EQ_INT(sl_eval_fail_under(&r, "accuracy=high", msg, sizeof msg, &err), SL_EINVAL);
    T_EQ_INT(sl_eval_fail_under(&r, "=0.5", msg, sizeof msg, &err), SL_EINVAL);
    sl_eval_report_free(&r);
    sl_eval_run_free(&run);
    sl_eval_data_free(&d);
}

static void eval_reports_show_every_target(void)
{
    struct sl_eval_data d;
    struct sl_err err = {0};
    load(&d, N, false);
    static struct fake fk;
    memset(&fk, 0, sizeof fk);
    fk.status_fail_mod = 9;
    struct sl_eval_route rt = route_desc(false);
    struct sl_eval_params p = params(t_tmp_path("report.jsonl"), 2);
    struct sl_eval_run run;
    T_OK(sl_eval_run(&run, &d, &rt, fake_call, &fk, &p, &err), &err);
    struct sl_eval_report r;
    T_OK(sl_eval_report_compute(&r, &d, &rt, &run, &err), &err);
    struct sl_report_metric m[3][SL_EVAL_MAX_METRICS];
    struct sl_report_target tg[3];
    struct sl_report_cls more[2];
    for (size_t t = 0; t < 3; t++) {
        tg[t] =
            (struct sl_report_target){r.targets[t].name, m[t], sl_eval_target_metrics(&r, t, m[t])};
        if (t < 2) more[t] = (struct sl_report_cls){r.targets[t].name, &r.targets[t].cls};
    }
    struct sl_results res;
    struct sl_failures fails;
    struct sl_failures_params fp = sl_failures_default_params();
    T_OK(sl_eval_results(&res, &d, &rt, &run, &err), &err);
    T_OK(sl_failures_compute(&fails, &res, "small", NULL, &fp, &err), &err);
    struct sl_report rep = {
        .failures = &fails,
        .title = "eval <test>",
        .targets = tg,
        .n_targets = 3,
        .frontier = &r.frontier,
        .reliability = &r.targets[0].rel,
        .cls = &r.targets[2].cls,
        .class_names = r.class_names,
        .more_cls = more,
        .n_more_cls = 2,
        .latency_ms = r.targets[2].latency_ms,
        .n_latency = r.targets[2].n,
    };
    char *jb = NULL, *hb = NULL;
    size_t jl = 0, hl = 0;
    FILE *f = open_memstream(&jb, &jl);
    T_OK(sl_report_json(&rep, f, &err), &err);
    fclose(f);
    json_error_t je;
    json_t *o = json_loads(jb, 0, &je);
    T_TRUE(o != NULL);
    json_t *targets = json_object_get(o, "targets");
    T_EQ_INT(json_array_size(targets), 3);
    T_EQ_STR(json_string_value(json_object_get(json_array_get(targets, 2), "name")), "route");
    T_NEAR(json_number_value(
               json_object_get(json_object_get(json_array_get(targets, 2), "metrics"), "accuracy")),
           r.targets[2].quality, 1e-9);
    T_EQ_INT(json_array_size(json_object_get(json_object_get(o, "classification"), "labels")), 3);
    T_EQ_INT(json_array_size(json_object_get(o, "confusion_more")), 2);
    json_t *fo = json_object_get(o, "failures");
    T_EQ_STR(json_string_value(json_object_get(fo, "tier")), "small");
    T_EQ_INT(json_integer_value(json_object_get(fo, "n_wrong")), 8);
    T_EQ_INT(json_array_size(json_object_get(fo, "top")), 8); /* 10 asked, 8 wrong */
    /* the route failed (502) on i % 9 == 1: e1 is not wrong for small */
    json_t *top0 = json_array_get(json_object_get(fo, "top"), 0);
    T_EQ_STR(json_string_value(json_object_get(top0, "id")), "e5");
    json_decref(o);
    f = open_memstream(&hb, &hl);
    T_OK(sl_report_html(&rep, f, &err), &err);
    fclose(f);
    const char *ids[] = {"id=\"targets\"",           "id=\"chart-frontier\"",
                         "id=\"chart-reliability\"", "id=\"chart-confusion\"",
                         "id=\"chart-confusion-1\"", "id=\"chart-confusion-2\"",
                         "id=\"chart-latency\"",     "eval &lt;test&gt;",
                         "id=\"failures\"",          "id=\"failures-top\"",
                         "id=\"failures-slices\""};
    for (size_t k = 0; k < sizeof ids / sizeof *ids; k++)
        T_TRUE(strstr(hb, ids[k]) != NULL);
    T_TRUE(strstr(hb, "<script") == NULL &&
           strstr(hb, "http://") == strstr(hb, "http://www.w3.org"));
    free(jb);
    jb = NULL;
    f = open_memstream(&jb, &jl);
    sl_report_table(&rep, f);
    fclose(f);
    T_TRUE(strstr(jb, "cost per 1,000 requests") != NULL);
    T_TRUE(strstr(jb, "small") != NULL && strstr(jb, "route") != NULL);
    T_TRUE(strstr(jb, "Failure modes of 'small': 40 examples, 8 wrong (20.0%)") != NULL);
    T_TRUE(strstr(jb, "Most confident wrong answers") != NULL);
    free(jb);
    free(hb);
    sl_failures_free(&fails);
    sl_results_free(&res);
    sl_eval_report_free(&r);
    sl_eval_run_free(&run);
    sl_eval_data_free(&d);
}

/* The run as results, and the failure modes of the small tier worked out
 * by hand: small is wrong on i % 5 == 0 (8 of 40), with confidence 0.75
 * (i = 5, 15, 25, 35) or 0.5 (i = 0, 10, 20, 30); the route escalates
 * those (0.75 < 0.8) and large is right on all of them but i = 10
 * (10 % 7 == 3). Tied confidences keep the data's order. */
static void eval_failure_modes_of_the_run(void)
{
    struct sl_eval_data d;
    struct sl_err err = {0};
    load(&d, N, false);
    static struct fake fk;
    memset(&fk, 0, sizeof fk);
    struct sl_eval_route rt = route_desc(false);
    struct sl_eval_params p = params(t_tmp_path("fail.jsonl"), 3);
    struct sl_eval_run run;
    struct sl_results res;
    T_OK(sl_eval_run(&run, &d, &rt, fake_call, &fk, &p, &err), &err);
    sl_eval_run_free(&run);
    /* resumed with a limit: the file's later examples are not this run's */
    p.limit = N - 4;
    p.resume = true;
    T_OK(sl_eval_run(&run, &d, &rt, fake_call, &fk, &p, &err), &err);
    T_EQ_INT(run.n_called, 0);
    T_OK(sl_eval_results(&res, &d, &rt, &run, &err), &err);
    T_EQ_INT(res.n, N - 4);
    sl_results_free(&res);
    sl_eval_run_free(&run);
    p.limit = 0;
    T_OK(sl_eval_run(&run, &d, &rt, fake_call, &fk, &p, &err), &err);
    T_OK(sl_eval_results(&res, &d, &rt, &run, &err), &err);
    T_EQ_INT(res.n, N);
    T_EQ_INT(res.n_targets, 3);
    T_EQ_STR(res.id[0], "e0"); /* the data's order, not the file's */
    T_EQ_STR(res.id[N - 1], "e39");
    T_EQ_INT(res.input_len[12], 6); /* "msg 12" */
    int ts = sl_results_target(&res, "small"), tr = sl_results_target(&res, "route");
    T_TRUE(ts >= 0 && tr >= 0);
    T_EQ_INT(sl_results_cell(&res, 5, ts)->correct, 0);
    T_NEAR(sl_results_cell(&res, 5, ts)->confidence, 0.75, 1e-12);
    T_TRUE(sl_results_cell(&res, 5, tr)->escalated);
    T_EQ_STR(sl_results_cell(&res, 5, tr)->backend, "large");
    T_EQ_STR(sl_results_meta(&res, 3, sl_results_meta_key(&res, "source")), "s1");

    struct sl_failures f;
    struct sl_failures_params fp = sl_failures_default_params();
    fp.top_n = 5;
    T_OK(sl_failures_compute(&f, &res, "small", NULL, &fp, &err), &err);
    T_EQ_INT(f.n, N);
    T_EQ_INT(f.n_wrong, 8);
    T_EQ_STR(f.route, "route");
    T_EQ_INT(f.n_top, 5);
    const char *want[5] = {"e5", "e15", "e25", "e35", "e0"};
    for (int k = 0; k < 5; k++)
        T_EQ_STR(f.top[k].id, want[k]);
    T_NEAR(f.top[0].confidence, 0.75, 1e-12);
    T_TRUE(f.top[0].route_escalated);
    T_EQ_INT(f.top[0].route_correct, 1);
    T_EQ_STR(f.top[0].route_decision, "escalated");
    T_EQ_STR(f.top[4].pred, "ham"); /* e0 is spam */
    /* class slices: spam (i % 3 == 0) wrong on 0, 15, 30 of 14; ham on 5 of 26 */
    size_t seen = 0;
    for (size_t k = 0; k < f.n_slices; k++) {
        const struct sl_failure_slice *sl = &f.slices[k];
        if (!strcmp(sl->field, "class") && !strcmp(sl->value, "spam")) {
            T_EQ_INT(sl->n, 14);
            T_EQ_INT(sl->n_wrong, 3);
            seen++;
        }
        if (!strcmp(sl->field, "class") && !strcmp(sl->value, "ham")) {
            T_EQ_INT(sl->n, 26);
            T_EQ_INT(sl->n_wrong, 5);
            seen++;
        }
        if (!strcmp(sl->field, "source")) {
            T_EQ_INT(sl->n, 20);
            T_EQ_INT(sl->n_wrong, 4);
            seen++;
        }
    }
    T_EQ_INT(seen, 4);
    sl_failures_free(&f);
    sl_results_free(&res);
    sl_eval_run_free(&run);

    /* a run with nothing done has no results */
    p.resume = false;
    p.tiers = p.route = false;
    T_OK(sl_eval_run(&run, &d, &rt, fake_call, &fk, &p, &err), &err);
    T_EQ_INT(sl_eval_results(&res, &d, &rt, &run, &err), SL_EINVAL);
    sl_eval_run_free(&run);
    sl_eval_data_free(&d);
}

static void remove_tmp_files(void)
{
    const char *names[] = {"labels.jsonl", "metrics.jsonl", "conc1.jsonl",   "conc8.jsonl",
                           "ref.jsonl",    "resume.jsonl",  "limit.jsonl",   "cut.jsonl",
                           "failed.jsonl", "stop.jsonl",    "extract.jsonl", "gate.jsonl",
                           "report.jsonl", "fail.jsonl"};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++)
        remove(t_tmp_path(names[k]));
}

int main(void)
{
    T_RUN(eval_data_reads_jsonl_and_csv);
    T_RUN(eval_rejects_labels_outside_the_task);
    T_RUN(eval_metrics_per_target_are_right);
    T_RUN(eval_concurrency_gives_the_same_results);
    T_RUN(eval_resumes_after_a_hard_failure_without_repeats);
    T_RUN(eval_limit_then_resume_covers_the_rest);
    T_RUN(eval_resume_cuts_a_half_written_last_line);
    T_RUN(eval_failed_requests_count_wrong_and_can_be_retried);
    T_RUN(eval_stop_flag_leaves_pairs_for_resume);
    T_RUN(eval_extract_metrics_per_field);
    T_RUN(eval_fail_under_gates_on_named_metrics);
    T_RUN(eval_reports_show_every_target);
    T_RUN(eval_failure_modes_of_the_run);
    if (!t_failures) remove_tmp_files(); /* kept for a look when something failed */
    return t_done();
}
