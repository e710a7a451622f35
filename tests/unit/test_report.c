/*
 * test_report.c - the terminal, JSON and HTML reports on a synthetic
 * evaluation with every section. With an argument DIR it also leaves
 * DIR/report_full.html for the browser test (tests/report).
 */
#include <jansson.h>

#include "eval/report.h"
#include "test.h"

enum { N = 400 };
static double conf[N], lat[N], cs[N], cl[N], score[N];
static uint8_t s_ok[N], l_ok[N], wrong[N];
static bool ok_b[N];
static int truth[N], pred[N];

/* results of a small tier and the route, for the failure-modes section */
static const char *results_jsonl =
    "{\"id\":\"a<1>\",\"target\":\"small\",\"truth\":\"billing\",\"pred\":\"other\","
    "\"confidence\":0.97,\"correct\":false,\"input_len\":12,\"meta\":{\"lang\":\"en\"}}\n"
    "{\"id\":\"a<1>\",\"target\":\"route\",\"correct\":true,\"escalated\":true,"
    "\"decision\":\"escalated\",\"backend\":\"large\"}\n"
    "{\"id\":\"b\",\"target\":\"small\",\"truth\":\"other\",\"pred\":\"other\","
    "\"confidence\":0.9,\"correct\":true,\"input_len\":40,\"meta\":{\"lang\":\"de\"}}\n"
    "{\"id\":\"c\",\"target\":\"small\",\"truth\":\"billing\",\"pred\":\"bug\","
    "\"confidence\":0.6,\"correct\":false,\"input_len\":80,\"meta\":{\"lang\":\"de\"}}\n";

struct fixture {
    struct sl_results res;
    struct sl_failures fails;
    struct sl_frontier fr;
    struct sl_reliability rel;
    struct sl_class_report cls;
    struct sl_router_curve curves[2];
    struct sl_guarantee g;
    struct sl_report_metric m[3];
    struct sl_report rep;
};

static const char *class_names[3] = {"billing", "bug <report>", "other"};

static void fixture_init(struct fixture *fx)
{
    uint64_t rng = 99;
    for (int i = 0; i < N; i++) {
        double hard = sl_eval_randu(&rng);
        conf[i] = 1 - 0.8 * hard;
        s_ok[i] = sl_eval_randu(&rng) > hard * 0.9;
        l_ok[i] = sl_eval_randu(&rng) > hard * 0.3;
        ok_b[i] = s_ok[i];
        wrong[i] = !s_ok[i];
        score[i] = hard + 0.2 * sl_eval_randu(&rng);
        lat[i] = 20 + 200 * hard * hard + 30 * sl_eval_randu(&rng);
        cs[i] = 0.0002;
        cl[i] = 0.01;
        truth[i] = i % 3;
        pred[i] = s_ok[i] ? truth[i] : (truth[i] + 1) % 3;
    }
    struct sl_err err = {0};
    double grid[20];
    for (int j = 0; j < 20; j++) grid[j] = 1 - (j + 1) * 0.04;
    T_OK(sl_frontier_compute(&fx->fr, conf, s_ok, cs, l_ok, cl, N, &err), &err);
    T_OK(sl_reliability_compute(&fx->rel, conf, ok_b, N, &err), &err);
    T_OK(sl_class_report_compute(&fx->cls, truth, pred, N, 3, &err), &err);
    T_OK(sl_router_curve_compute(&fx->curves[0], "lr", score, s_ok, l_ok, N, &err), &err);
    T_OK(sl_router_curve_random(&fx->curves[1], s_ok, l_ok, N, &err), &err);
    T_OK(sl_guarantee_max_risk(&fx->g, conf, wrong, N, grid, 20, 0.2, 0.1, &err), &err);
    struct sl_failures_params fp = sl_failures_default_params();
    T_OK(sl_results_load_buf(&fx->res, results_jsonl, strlen(results_jsonl), "fixture", &err),
         &err);
    T_OK(sl_failures_compute(&fx->fails, &fx->res, "small", NULL, &fp, &err), &err);
    fx->m[0] = (struct sl_report_metric){"accuracy", fx->cls.accuracy, "accuracy"};
    fx->m[1] = (struct sl_report_metric){"ece", fx->rel.ece, NULL};
    fx->m[2] = (struct sl_report_metric){"nan_metric", NAN, "not measured"};
    fx->rep = (struct sl_report){
        .title = "synthetic <evaluation> & report",
        .subtitle = "400 examples, seed 99",
        .metrics = fx->m,
        .n_metrics = 3,
        .curves = fx->curves,
        .n_curves = 2,
        .frontier = &fx->fr,
        .reliability = &fx->rel,
        .reliability_what = "Synthetic confidences.",
        .cls = &fx->cls,
        .class_names = class_names,
        .latency_ms = lat,
        .n_latency = N,
        .guarantee = &fx->g,
        .failures = &fx->fails,
    };
}

static void fixture_free(struct fixture *fx)
{
    sl_frontier_free(&fx->fr);
    sl_class_report_free(&fx->cls);
    sl_router_curve_free(&fx->curves[0]);
    sl_router_curve_free(&fx->curves[1]);
    sl_guarantee_free(&fx->g);
    sl_failures_free(&fx->fails);
    sl_results_free(&fx->res);
}

static size_t count(const char *s, const char *needle)
{
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p++) n++;
    return n;
}

static char *render(const struct sl_report *r, int which)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    struct sl_err err = {0};
    if (which == 0) sl_report_table(r, f);
    if (which == 1) T_OK(sl_report_json(r, f, &err), &err);
    if (which == 2) T_OK(sl_report_html(r, f, &err), &err);
    fclose(f);
    return buf;
}

static void html_is_self_contained_with_five_charts(void)
{
    struct fixture fx;
    fixture_init(&fx);
    char *h = render(&fx.rep, 2);
    T_EQ_INT(count(h, "<svg"), 5);
    T_EQ_INT(count(h, "</svg>"), 5);
    T_TRUE(strstr(h, "id=\"chart-router\"") && strstr(h, "id=\"chart-frontier\"") &&
           strstr(h, "id=\"chart-reliability\"") && strstr(h, "id=\"chart-confusion\"") &&
           strstr(h, "id=\"chart-latency\""));
    T_EQ_INT(count(h, "<script"), 0);
    /* no outside references: the only URLs are the five SVG namespace names */
    T_EQ_INT(count(h, "http://") + count(h, "https://"), 5);
    T_EQ_INT(count(h, "xmlns=\"http://www.w3.org/2000/svg\""), 5);
    T_TRUE(strstr(h, "synthetic &lt;evaluation&gt; &amp; report") != NULL);
    T_TRUE(strstr(h, "bug &lt;report&gt;") != NULL);
    T_TRUE(strstr(h, "</html>") != NULL);
    T_EQ_INT(count(h, "class=\"cell\""), 9);
    T_TRUE(fx.g.found);
    T_TRUE(strstr(h, "Accept the small tier when its confidence &ge;") != NULL);
    /* the failure modes, in a card of their own, escaped */
    T_EQ_INT(count(h, "<section class=\"sl-failures\" id=\"failures\">"), 1);
    T_TRUE(strstr(h, "<table id=\"failures-top\">") && strstr(h, "<table id=\"failures-slices\">"));
    T_TRUE(strstr(h, "a&lt;1&gt;") != NULL && strstr(h, "a<1>") == NULL);
    T_TRUE(strstr(h, "escalated -&gt; large, right") != NULL);
    free(h);
    fixture_free(&fx);
}

static void json_parses_and_carries_the_numbers(void)
{
    struct fixture fx;
    fixture_init(&fx);
    char *j = render(&fx.rep, 1);
    json_error_t je;
    json_t *root = json_loads(j, 0, &je);
    T_TRUE(root != NULL);
    if (!root) {
        fprintf(stderr, "json error line %d: %s\n", je.line, je.text);
        free(j);
        fixture_free(&fx);
        return;
    }
    json_t *routers = json_object_get(root, "routers");
    T_EQ_INT(json_array_size(routers), 2);
    T_NEAR(json_real_value(json_object_get(json_array_get(routers, 0), "apgr")), fx.curves[0].apgr, 1e-9);
    T_NEAR(json_real_value(json_object_get(json_array_get(routers, 1), "apgr")), 0.5, 1e-9);
    json_t *m = json_object_get(root, "metrics");
    T_TRUE(json_is_null(json_object_get(m, "nan_metric")));
    T_NEAR(json_real_value(json_object_get(m, "accuracy")), fx.cls.accuracy, 1e-9);
    T_EQ_INT(json_array_size(json_object_get(json_object_get(root, "reliability"), "bins")), 15);
    T_TRUE(json_is_object(json_object_get(root, "latency_ms")));
    json_t *fo = json_object_get(root, "failures");
    T_EQ_INT(json_integer_value(json_object_get(fo, "n_wrong")), 2);
    T_EQ_STR(json_string_value(json_object_get(json_array_get(json_object_get(fo, "top"), 0), "id")),
             "a<1>");
    T_TRUE(json_is_boolean(json_object_get(json_object_get(json_object_get(root, "frontier"),
                                                           "small_only"),
                                           "pareto")));
    json_decref(root);
    free(j);
    fixture_free(&fx);
}

static void table_lists_routers_and_metrics(void)
{
    struct fixture fx;
    fixture_init(&fx);
    char *t = render(&fx.rep, 0);
    T_TRUE(strstr(t, "APGR") != NULL);
    T_TRUE(strstr(t, "random       0.5000") != NULL);
    T_TRUE(strstr(t, "not measured") != NULL);
    T_TRUE(strstr(t, "ECE (15 bins)") != NULL);
    T_TRUE(strstr(t, "Failure modes of 'small': 3 examples, 2 wrong (66.7%)") != NULL);
    T_TRUE(strstr(t, "lang=de") != NULL);
    free(t);
    fixture_free(&fx);
}

static void empty_report_still_renders(void)
{
    struct sl_report r = {0};
    char *h = render(&r, 2);
    T_EQ_INT(count(h, "<svg"), 0);
    T_TRUE(strstr(h, "</html>") != NULL);
    free(h);
    char *j = render(&r, 1);
    json_t *root = json_loads(j, 0, NULL);
    T_TRUE(root != NULL);
    json_decref(root);
    free(j);
}

static void latency_chart_skips_nonfinite_samples(void)
{
    const double ms[4] = {12, NAN, INFINITY, 40};
    struct sl_report r = {.latency_ms = ms, .n_latency = 4};
    char *h = render(&r, 2);
    T_EQ_INT(count(h, "id=\"chart-latency\""), 1);
    T_EQ_INT(count(h, "class=\"bar\""), 30);
    free(h);
}

/* The Pareto line runs through the tiers alone when they are on it: here
 * the small tier is confidently wrong where the large one is right, so no
 * cascade threshold reaches large-only's quality, and large-only is the
 * frontier's top end (the line used to stop at the cascade points). */
static void frontier_line_reaches_the_tiers_alone(void)
{
    const double c[2] = {0.9, 0.1}, cs2[2] = {0.1, 0.1}, cl2[2] = {1, 1};
    const uint8_t so[2] = {0, 1}, lo[2] = {1, 1};
    struct sl_frontier fr;
    struct sl_err err = {0};
    T_OK(sl_frontier_compute(&fr, c, so, cs2, lo, cl2, 2, &err), &err);
    T_TRUE(fr.small_only.pareto && fr.large_only.pareto);
    struct sl_report r = {.frontier = &fr};
    char *h = render(&r, 2);
    const char *pl = strstr(h, "<polyline class=\"pareto\" fill=\"none\" points=\"");
    T_TRUE(pl != NULL);
    if (pl) {
        const char *end = strchr(pl + 45, '"');
        size_t pairs = 0;
        for (const char *q = pl + 45; end && q < end; q++) pairs += *q == ',';
        T_TRUE(pairs >= 2);
    }
    T_TRUE(count(h, "class=\"pareto-pt\"") >= 2);
    free(h);
    char *j = render(&r, 1);
    json_t *root = json_loads(j, 0, NULL);
    json_t *lo_j = json_object_get(json_object_get(root, "frontier"), "large_only");
    T_TRUE(json_is_true(json_object_get(lo_j, "pareto")));
    json_decref(root);
    free(j);
    sl_frontier_free(&fr);
}

int main(int argc, char **argv)
{
    T_RUN(html_is_self_contained_with_five_charts);
    T_RUN(json_parses_and_carries_the_numbers);
    T_RUN(table_lists_routers_and_metrics);
    T_RUN(empty_report_still_renders);
    T_RUN(latency_chart_skips_nonfinite_samples);
    T_RUN(frontier_line_reaches_the_tiers_alone);
    if (argc > 1) {
        /* leave a full report for the browser test */
        struct fixture fx;
        char path[4096];
        fixture_init(&fx);
        snprintf(path, sizeof path, "%s/report_full.html", argv[1]);
        FILE *f = fopen(path, "w");
        T_TRUE(f != NULL);
        if (f) {
            T_OK(sl_report_html(&fx.rep, f, NULL), &(struct sl_err){0});
            fclose(f);
        }
        fixture_free(&fx);
    }
    return t_done();
}
