/*
 * test_results.c - results.jsonl loading: the join by id across targets,
 * field types, and clear errors on bad lines.
 */
#include <math.h>

#include "eval/results.h"
#include "test.h"

static const char *good =
    "{\"id\":\"a\",\"target\":\"small\",\"truth\":\"spam\",\"pred\":\"ham\",\"confidence\":0.9,"
    "\"correct\":false,\"latency_ms\":12.5,\"cost\":0.001,\"tokens_in\":40,\"tokens_out\":1,"
    "\"escalated\":false,\"decision\":\"small\",\"backend\":\"small\",\"input_len\":120,"
    "\"meta\":{\"lang\":\"en\",\"prio\":2},\"error\":null}\n"
    "\n"
    "{\"id\":7,\"target\":\"small\",\"truth\":{\"x\":1},\"pred\":{\"x\":2},\"confidence\":null,"
    "\"correct\":null,\"meta\":{\"lang\":\"de\"}}\n"
    "{\"id\":\"a\",\"target\":\"route\",\"pred\":\"spam\",\"confidence\":0.4,\"correct\":true,"
    "\"escalated\":true,\"decision\":\"escalate\",\"backend\":\"large\",\"cost\":0.02}\r\n"
    "{\"id\":7,\"target\":\"large\",\"correct\":false,\"error\":\"timeout\",\"new_field\":[1,2]}\n";

static void results_join_examples_by_id_across_targets(void)
{
    struct sl_results r;
    struct sl_err err = {0};
    T_OK(sl_results_load_buf(&r, good, strlen(good), "good", &err), &err);
    T_EQ_INT(r.n, 2);
    T_EQ_INT(r.n_targets, 3);
    T_EQ_STR(r.id[0], "a");
    T_EQ_STR(r.id[1], "7");
    T_EQ_STR(r.truth[0], "spam");
    T_EQ_STR(r.truth[1], "{\"x\":1}");
    T_EQ_INT(r.input_len[0], 120);
    T_EQ_INT(r.input_len[1], -1);
    int s = sl_results_target(&r, "small"), rt = sl_results_target(&r, "route"),
        l = sl_results_target(&r, "large");
    T_TRUE(s >= 0 && rt >= 0 && l >= 0);
    T_EQ_INT(sl_results_target(&r, "nope"), -1);
    const struct sl_result_cell *c = sl_results_cell(&r, 0, s);
    T_TRUE(c->present);
    T_EQ_INT(c->correct, 0);
    T_NEAR(c->confidence, 0.9, 0);
    T_NEAR(c->latency_ms, 12.5, 0);
    T_NEAR(c->cost, 0.001, 0);
    T_EQ_INT(c->tokens_in, 40);
    T_EQ_STR(c->pred, "ham");
    T_EQ_STR(c->backend, "small");
    T_TRUE(c->error == NULL);
    c = sl_results_cell(&r, 0, rt);
    T_TRUE(c->present && c->escalated && c->correct == 1);
    T_EQ_STR(c->decision, "escalate");
    T_TRUE(!sl_results_cell(&r, 0, l)->present); /* a missing pair */
    c = sl_results_cell(&r, 1, s);
    T_EQ_INT(c->correct, -1);
    T_TRUE(isnan(c->confidence));
    T_EQ_STR(c->pred, "{\"x\":2}");
    c = sl_results_cell(&r, 1, l);
    T_EQ_STR(c->error, "timeout");
    T_TRUE(isnan(c->cost));
    int lang = sl_results_meta_key(&r, "lang"), prio = sl_results_meta_key(&r, "prio");
    T_TRUE(lang >= 0 && prio >= 0);
    T_EQ_STR(sl_results_meta(&r, 0, lang), "en");
    T_EQ_STR(sl_results_meta(&r, 1, lang), "de");
    T_EQ_STR(sl_results_meta(&r, 0, prio), "2");
    T_TRUE(sl_results_meta(&r, 1, prio) == NULL);
    T_TRUE(sl_results_meta(&r, 1, -1) == NULL);
    sl_results_free(&r);
}

static void expect_error(const char *text, int code, const char *needle)
{
    struct sl_results r;
    struct sl_err err = {0};
    int rc = sl_results_load_buf(&r, text, strlen(text), "bad.jsonl", &err);
    T_EQ_INT(rc, code);
    if (!strstr(err.msg, needle)) T_FAIL_AT("message '%s' lacks '%s'", err.msg, needle);
    T_EQ_INT(r.n, 0);
}

static void results_reject_bad_lines_with_the_line_number(void)
{
    expect_error("{\"id\":1,\"target\":\"s\"}\nnot json\n", SL_EFORMAT, "line 2");
    expect_error("{\"target\":\"s\"}\n", SL_EFORMAT, "\"id\"");
    expect_error("{\"id\":1}\n", SL_EFORMAT, "\"target\"");
    expect_error("{\"id\":1,\"target\":\"s\"}\n{\"id\":1,\"target\":\"s\"}\n", SL_EFORMAT, "twice");
    expect_error("{\"id\":1,\"target\":\"s\",\"confidence\":\"high\"}\n", SL_EFORMAT, "confidence");
    expect_error("{\"id\":1,\"target\":\"s\",\"correct\":1}\n", SL_EFORMAT, "correct");
    expect_error("{\"id\":1,\"target\":\"s\",\"meta\":[1]}\n", SL_EFORMAT, "meta");
    expect_error("\n\n", SL_EFORMAT, "no results");
    expect_error("[1,2]\n", SL_EFORMAT, "line 1");
}

static void results_load_reads_a_file_and_reports_a_missing_one(void)
{
    const char *p = t_tmp_path("results_test.jsonl");
    FILE *f = fopen(p, "w");
    T_TRUE(f != NULL);
    if (!f) return;
    fputs(good, f);
    fclose(f);
    struct sl_results r;
    struct sl_err err = {0};
    T_OK(sl_results_load(&r, p, &err), &err);
    T_EQ_INT(r.n, 2);
    sl_results_free(&r);
    T_EQ_INT(sl_results_load(&r, "/nonexistent/results.jsonl", &err), SL_EIO);
    T_TRUE(strstr(err.msg, "/nonexistent/results.jsonl") != NULL);
}

int main(void)
{
    T_RUN(results_join_examples_by_id_across_targets);
    T_RUN(results_reject_bad_lines_with_the_line_number);
    T_RUN(results_load_reads_a_file_and_reports_a_missing_one);
    return t_done();
}
