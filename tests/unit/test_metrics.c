/*
 * test_metrics.c - classification, extraction, latency, cost and
 * calibration metrics on examples computed by hand (the arithmetic is in
 * the comments).
 */
#include "eval/metrics.h"
#include "test.h"

static void classify_matches_hand_computed_example(void)
{
    /* truth 0 0 1 1 2 2, pred 0 1 1 1 2 0
     * confusion rows (true) [1 1 0] [0 2 0] [1 0 1]; accuracy 4/6
     * class 0: P 1/2 R 1/2 F1 1/2; class 1: P 2/3 R 1 F1 0.8;
     * class 2: P 1 R 1/2 F1 2/3; macro-F1 (0.5 + 0.8 + 2/3) / 3 */
    const int truth[] = {0, 0, 1, 1, 2, 2}, pred[] = {0, 1, 1, 1, 2, 0};
    struct sl_class_report r;
    struct sl_err err = {0};
    T_OK(sl_class_report_compute(&r, truth, pred, 6, 3, &err), &err);
    T_NEAR(r.accuracy, 4.0 / 6, 1e-12);
    T_NEAR(r.precision[0], 0.5, 1e-12);
    T_NEAR(r.recall[0], 0.5, 1e-12);
    T_NEAR(r.f1[1], 0.8, 1e-12);
    T_NEAR(r.precision[1], 2.0 / 3, 1e-12);
    T_NEAR(r.recall[2], 0.5, 1e-12);
    T_NEAR(r.f1[2], 2.0 / 3, 1e-12);
    T_NEAR(r.macro_f1, (0.5 + 0.8 + 2.0 / 3) / 3, 1e-12);
    const uint64_t want[9] = {1, 1, 0, 0, 2, 0, 1, 0, 1};
    for (int i = 0; i < 9; i++) T_EQ_INT(r.confusion[i], want[i]);
    T_EQ_INT(r.support[2], 2);
    sl_class_report_free(&r);
}

static void classify_leaves_absent_classes_out_of_macro_f1(void)
{
    /* class 2 never occurs nor is predicted: macro over classes 0 and 1 */
    const int truth[] = {0, 1}, pred[] = {0, 0};
    struct sl_class_report r;
    T_OK(sl_class_report_compute(&r, truth, pred, 2, 3, NULL), &(struct sl_err){0});
    /* class 0: P 1/2 R 1 F1 2/3; class 1: 0 */
    T_NEAR(r.macro_f1, (2.0 / 3) / 2, 1e-12);
    T_EQ_INT(r.precision[1] == 0.0, 1);
    sl_class_report_free(&r);
}

static void classify_rejects_a_label_out_of_range(void)
{
    const int truth[] = {0, 3}, pred[] = {0, 0};
    struct sl_class_report r;
    struct sl_err err = {0};
    T_EQ_INT(sl_class_report_compute(&r, truth, pred, 2, 3, &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "example 1") != NULL);
    T_EQ_INT(sl_class_report_compute(&r, truth, pred, 2, 0, &err), SL_EINVAL);
}

static void extract_counts_fields_and_exact_match(void)
{
    /* ex1 {a:1, b:"x"} vs {a:1, b:"y"}: a tp, b fn + fp
     * ex2 {a:2} vs {a:2}: a tp, exact
     * ex3 {a:3, c:true} vs {a:3, d:null}: a tp, c fn, d fp
     * micro: tp 3 fp 2 fn 2 -> P = R = F1 = 0.6; exact 1/3 */
    const struct sl_field_kv e1[] = {{"a", "1"}, {"b", "\"x\""}}, p1[] = {{"b", "\"y\""}, {"a", "1"}};
    const struct sl_field_kv e2[] = {{"a", "2"}}, p2[] = {{"a", "2"}};
    const struct sl_field_kv e3[] = {{"a", "3"}, {"c", "true"}}, p3[] = {{"a", "3"}, {"d", "null"}};
    const struct sl_kv_map exp[] = {{e1, 2}, {e2, 1}, {e3, 2}}, pred[] = {{p1, 2}, {p2, 1}, {p3, 2}};
    struct sl_extract_report r;
    struct sl_err err = {0};
    T_OK(sl_extract_report_compute(&r, exp, pred, 3, &err), &err);
    T_NEAR(r.exact_match, 1.0 / 3, 1e-12);
    T_NEAR(r.precision, 0.6, 1e-12);
    T_NEAR(r.recall, 0.6, 1e-12);
    T_NEAR(r.f1, 0.6, 1e-12);
    T_EQ_INT(r.n_fields, 4);
    T_EQ_STR(r.fields[0].key, "a");
    T_NEAR(r.fields[0].f1, 1.0, 1e-12);
    T_EQ_STR(r.fields[1].key, "b");
    T_EQ_INT(r.fields[1].fp, 1);
    T_EQ_INT(r.fields[1].fn, 1);
    T_EQ_STR(r.fields[2].key, "c");
    T_EQ_INT(r.fields[2].fn, 1);
    T_NEAR(r.fields[2].recall, 0.0, 1e-12);
    T_EQ_STR(r.fields[3].key, "d");
    T_EQ_INT(r.fields[3].fp, 1);
    sl_extract_report_free(&r);
}

static void latency_percentiles_use_nearest_rank(void)
{
    double ms[100];
    for (int i = 0; i < 100; i++) ms[i] = 100 - i; /* 100 .. 1, unsorted */
    struct sl_latency_summary s;
    struct sl_err err = {0};
    T_OK(sl_latency_summarize(&s, ms, 100, &err), &err);
    T_NEAR(s.p50, 50, 0);
    T_NEAR(s.p95, 95, 0);
    T_NEAR(s.p99, 99, 0);
    T_NEAR(s.mean, 50.5, 1e-12);
    /* 10 samples: p50 = 5th, p95 = ceil(9.5) = 10th, p99 = 10th */
    T_OK(sl_latency_summarize(&s, ms + 90, 10, &err), &err);
    T_NEAR(s.p50, 5, 0);
    T_NEAR(s.p95, 10, 0);
    T_NEAR(s.p99, 10, 0);
    T_NEAR(s.min, 1, 0);
    T_EQ_INT(sl_latency_summarize(&s, ms, 0, &err), SL_EINVAL);
    double bad[2] = {1, NAN};
    T_EQ_INT(sl_latency_summarize(&s, bad, 2, &err), SL_EINVAL);
}

static void cost_and_escalation_rates(void)
{
    const double cost[] = {0.001, 0.002, 0.003};
    T_NEAR(sl_cost_per_1k(cost, 3), 2.0, 1e-12);
    const bool esc[] = {true, false, false, true};
    T_NEAR(sl_escalation_rate(esc, 4), 0.5, 0);
    T_NEAR(sl_cost_per_1k(cost, 0), 0, 0);
}

static void ece_matches_hand_computed_example(void)
{
    /* 0.05 -> bin 0: accuracy 0, confidence 0.05, weight 1/2
     * 0.95 -> bin 14: accuracy 1/2, confidence 0.95, weight 1/2
     * ECE = 0.5 * 0.05 + 0.5 * 0.45 = 0.25; MCE 0.45 */
    const double conf[] = {0.05, 0.05, 0.95, 0.95};
    const bool ok[] = {false, false, true, false};
    struct sl_reliability r;
    struct sl_err err = {0};
    T_OK(sl_reliability_compute(&r, conf, ok, 4, &err), &err);
    T_NEAR(r.ece, 0.25, 1e-12);
    T_NEAR(r.mce, 0.45, 1e-12);
    T_EQ_INT(r.count[0], 2);
    T_EQ_INT(r.count[14], 2);
    T_NEAR(r.accuracy[14], 0.5, 0);
    /* 1.0 falls in the last bin; a perfectly calibrated bin has no gap */
    const double one[] = {1.0, 1.0};
    const bool yes[] = {true, true};
    T_OK(sl_reliability_compute(&r, one, yes, 2, &err), &err);
    T_EQ_INT(r.count[14], 2);
    T_NEAR(r.ece, 0, 1e-12);
    const double bad[] = {1.5};
    T_EQ_INT(sl_reliability_compute(&r, bad, yes, 1, &err), SL_EINVAL);
}

int main(void)
{
    T_RUN(classify_matches_hand_computed_example);
    T_RUN(classify_leaves_absent_classes_out_of_macro_f1);
    T_RUN(classify_rejects_a_label_out_of_range);
    T_RUN(extract_counts_fields_and_exact_match);
    T_RUN(latency_percentiles_use_nearest_rank);
    T_RUN(cost_and_escalation_rates);
    T_RUN(ece_matches_hand_computed_example);
    return t_done();
}
