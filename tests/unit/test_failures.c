/*
 * test_failures.c - failure modes on a hand-made results set whose answers
 * are worked out by hand: the confident wrong answers in order, per-class,
 * per-meta and per-length error rates, and the three writers.
 */
#include <jansson.h>
#include <math.h>

#include "eval/failures.h"
#include "test.h"

/* 8 examples; e8's small result has unknown correctness (left out), e7's
 * small tier errored (counts as wrong). Small wrong: e1, e4, e6, e7. */
#define ROW(id, truth, pred, conf, ok, len, lang)                                              \
    "{\"id\":\"" id "\",\"target\":\"small\",\"truth\":\"" truth "\",\"pred\":" pred           \
    ",\"confidence\":" conf ",\"correct\":" ok ",\"input_len\":" len ",\"meta\":{\"lang\":\"" lang \
    "\",\"uid\":\"" id "\"}}\n"
#define RT(id, esc, backend, ok)                                                               \
    "{\"id\":\"" id "\",\"target\":\"route\",\"escalated\":" esc ",\"decision\":\"" esc         \
    "\",\"backend\":\"" backend "\",\"correct\":" ok "}\n"

static const char *data =
    ROW("e1", "spam", "\"ham\"", "0.95", "false", "10", "en")
    ROW("e2", "ham", "\"ham\"", "0.90", "true", "20", "en")
    ROW("e3", "spam", "\"spam\"", "0.80", "true", "30", "de")
    ROW("e4", "ham", "\"spam\"", "0.70", "false", "40", "de")
    ROW("e5", "spam", "\"spam\"", "0.60", "true", "50", "de")
    ROW("e6", "ham", "\"spam\"", "0.99", "false", "60", "fr")
    "{\"id\":\"e7\",\"target\":\"small\",\"truth\":\"ham\",\"pred\":null,\"confidence\":null,"
    "\"correct\":null,\"error\":\"timeout\",\"input_len\":70,\"meta\":{\"lang\":\"fr\",\"uid\":\"e7\"}}\n"
    ROW("e8", "spam", "\"spam\"", "0.50", "null", "80", "en")
    RT("e1", "false", "small", "false")
    RT("e2", "false", "small", "true")
    RT("e3", "false", "small", "true")
    RT("e4", "true", "large", "true")
    RT("e5", "true", "large", "true")
    RT("e6", "false", "small", "false")
    RT("e7", "true", "large", "true")
    RT("e8", "true", "large", "true");

static const struct sl_failure_slice *find(const struct sl_failures *f, const char *field,
                                           const char *value, size_t *pos)
{
    for (size_t i = 0; i < f->n_slices; i++)
        if (!strcmp(f->slices[i].field, field) && !strcmp(f->slices[i].value, value)) {
            *pos = i;
            return &f->slices[i];
        }
    return NULL;
}

static void load(struct sl_results *r, struct sl_failures *f, size_t max_values)
{
    struct sl_err err = {0};
    T_OK(sl_results_load_buf(r, data, strlen(data), "hand", &err), &err);
    struct sl_failures_params p = sl_failures_default_params();
    p.top_n = 3;
    p.n_len_buckets = 2;
    p.max_values = max_values;
    T_OK(sl_failures_compute(f, r, "small", NULL, &p, &err), &err);
}

static void failures_find_the_confident_mistakes_and_the_weak_slices(void)
{
    struct sl_results r;
    struct sl_failures f;
    load(&r, &f, 5); /* uid has 8 values: an id, left out */
    T_EQ_INT(f.n, 7);
    T_EQ_INT(f.n_wrong, 4);
    T_NEAR(f.error, 4.0 / 7, 1e-12);
    T_EQ_STR(f.route, "route");
    /* most confident wrong first, top 3 */
    T_EQ_INT(f.n_top, 3);
    T_EQ_STR(f.top[0].id, "e6");
    T_EQ_STR(f.top[1].id, "e1");
    T_EQ_STR(f.top[2].id, "e4");
    T_EQ_STR(f.top[0].truth, "ham");
    T_EQ_STR(f.top[0].pred, "spam");
    T_NEAR(f.top[0].confidence, 0.99, 0);
    T_TRUE(f.top[0].route_present && !f.top[0].route_escalated);
    T_EQ_INT(f.top[0].route_correct, 0);
    T_EQ_STR(f.top[2].route_backend, "large");
    T_EQ_INT(f.top[2].route_correct, 1);
    T_EQ_INT(f.n_fields_skipped, 1);

    /* the order: lang=fr 2/2, class=ham 3/4, input_len=41-70 2/3,
     * input_len=10-40 2/4, lang=en 1/2, class=spam 1/3, lang=de 1/3 */
    static const char *order[][2] = {{"lang", "fr"},      {"class", "ham"},  {"input_len", "41-70"},
                                     {"input_len", "10-40"}, {"lang", "en"}, {"class", "spam"},
                                     {"lang", "de"}};
    T_EQ_INT(f.n_slices, 7);
    for (size_t i = 0; i < 7 && i < f.n_slices; i++) {
        T_EQ_STR(f.slices[i].field, order[i][0]);
        T_EQ_STR(f.slices[i].value, order[i][1]);
    }
    size_t pos;
    const struct sl_failure_slice *s = find(&f, "lang", "fr", &pos);
    T_TRUE(s != NULL);
    if (s) {
        T_EQ_INT(s->n, 2);
        T_EQ_INT(s->n_wrong, 2);
        T_NEAR(s->route_error, 0.5, 1e-12);
        T_NEAR(s->escalated, 0.5, 1e-12);
    }
    s = find(&f, "class", "ham", &pos);
    T_TRUE(s && s->n == 4 && s->n_wrong == 3);
    s = find(&f, "input_len", "10-40", &pos);
    T_TRUE(s && s->n == 4 && s->n_wrong == 2);
    if (s) T_NEAR(s->route_error, 0.25, 1e-12);
    sl_failures_free(&f);
    sl_results_free(&r);
}

static void failures_writers_emit_valid_json_and_escaped_html(void)
{
    struct sl_results r;
    struct sl_failures f;
    struct sl_err err = {0};
    load(&r, &f, 50);
    T_EQ_INT(f.n_fields_skipped, 0); /* uid kept: 7 more slices */
    T_EQ_INT(f.n_slices, 14);
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    T_OK(sl_failures_json(&f, m, &err), &err);
    fclose(m);
    json_error_t je;
    json_t *v = json_loads(buf, 0, &je);
    T_TRUE(v != NULL);
    if (v) {
        T_EQ_INT(json_array_size(json_object_get(v, "top")), 3);
        T_EQ_INT(json_array_size(json_object_get(v, "slices")), 14);
        json_t *t0 = json_array_get(json_object_get(v, "top"), 0);
        T_EQ_STR(json_string_value(json_object_get(t0, "id")), "e6");
        T_TRUE(json_is_false(json_object_get(json_object_get(t0, "route"), "correct")));
        json_decref(v);
    } else {
        T_FAIL_AT("not JSON: %s: %s", je.text, buf);
    }
    free(buf);
    m = open_memstream(&buf, &len);
    T_OK(sl_failures_html(&f, m, &err), &err);
    fclose(m);
    T_TRUE(strstr(buf, "<section class=\"sl-failures\" id=\"failures\">") == buf);
    T_TRUE(strstr(buf, "<table id=\"failures-top\">") != NULL);
    T_TRUE(strstr(buf, "<table id=\"failures-slices\">") != NULL);
    T_TRUE(strstr(buf, "lang = fr") != NULL);
    T_TRUE(strstr(buf, "<script") == NULL);
    free(buf);
    m = open_memstream(&buf, &len);
    sl_failures_print(&f, m);
    fclose(m);
    T_TRUE(strstr(buf, "7 examples, 4 wrong (57.1%)") != NULL);
    T_TRUE(strstr(buf, "lang=fr") != NULL);
    free(buf);
    sl_failures_free(&f);
    sl_results_free(&r);
}

static void failures_html_escapes_what_the_data_says(void)
{
    const char *d = "{\"id\":\"<b>\",\"target\":\"t\",\"truth\":\"a&b\",\"pred\":\"\\\"x\",\"confidence\":1,"
                    "\"correct\":false}\n";
    struct sl_results r;
    struct sl_failures f;
    struct sl_err err = {0};
    struct sl_failures_params p = sl_failures_default_params();
    T_OK(sl_results_load_buf(&r, d, strlen(d), "esc", &err), &err);
    T_OK(sl_failures_compute(&f, &r, "t", NULL, &p, &err), &err);
    T_TRUE(f.route[0] == 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    T_OK(sl_failures_html(&f, m, &err), &err);
    fclose(m);
    T_TRUE(strstr(buf, "&lt;b&gt;") && strstr(buf, "a&amp;b") && strstr(buf, "&quot;x"));
    T_TRUE(strstr(buf, "<b>") == NULL);
    free(buf);
    sl_failures_free(&f);
    T_EQ_INT(sl_failures_compute(&f, &r, "nope", NULL, &p, &err), SL_ENOTFOUND);
    T_EQ_INT(sl_failures_compute(&f, &r, "t", "nope", &p, &err), SL_ENOTFOUND);
    sl_results_free(&r);
}

/* by_class off (extraction: the truths are whole objects): no class slices,
 * the rest unchanged. */
static void failures_without_class_slices(void)
{
    struct sl_results r;
    struct sl_failures f;
    struct sl_err err = {0};
    T_OK(sl_results_load_buf(&r, data, strlen(data), "hand", &err), &err);
    struct sl_failures_params p = sl_failures_default_params();
    T_TRUE(p.by_class);
    p.by_class = false;
    p.n_len_buckets = 2;
    T_OK(sl_failures_compute(&f, &r, "small", NULL, &p, &err), &err);
    size_t pos;
    T_TRUE(find(&f, "class", "spam", &pos) == NULL && find(&f, "class", "ham", &pos) == NULL);
    T_TRUE(find(&f, "lang", "fr", &pos) != NULL);
    T_EQ_INT(f.n_wrong, 4);
    sl_failures_free(&f);
    sl_results_free(&r);
}

int main(void)
{
    T_RUN(failures_find_the_confident_mistakes_and_the_weak_slices);
    T_RUN(failures_writers_emit_valid_json_and_escaped_html);
    T_RUN(failures_html_escapes_what_the_data_says);
    T_RUN(failures_without_class_slices);
    return t_done();
}
