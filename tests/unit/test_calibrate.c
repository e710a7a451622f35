/*
 * test_calibrate.c - temperature scaling and ECE (src/tasks/calibrate.c) on
 * synthetic scores with a known miscalibration: labels are drawn from
 * softmax(z), the classifier reports z * k, so the right temperature is k.
 */
#include <math.h>
#include <stdint.h>

#include "tasks/calibrate.h"
#include "tasks/classify.h"
#include "test.h"

static uint64_t rng = 88172645463325252ull;
static double uniform(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static double gauss(void)
{
    double u = uniform() + 1e-12, v = uniform();
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

/* n examples of k labels; scores = true logits * scale. */
static void make_set(float *scores, int32_t *truth, size_t n, size_t k, double scale)
{
    for (size_t i = 0; i < n; i++) {
        double z[16], sum = 0;
        for (size_t j = 0; j < k; j++) {
            z[j] = 1.5 * gauss();
            sum += exp(z[j]);
        }
        double u = uniform() * sum, c = 0;
        truth[i] = (int32_t)(k - 1);
        for (size_t j = 0; j < k; j++) {
            c += exp(z[j]);
            if (u < c) {
                truth[i] = (int32_t)j;
                break;
            }
        }
        for (size_t j = 0; j < k; j++) scores[i * k + j] = (float)(z[j] * scale);
    }
}

static void check_recovers(double scale)
{
    enum { N = 6000, K = 4 };
    static float s[N * K];
    static int32_t y[N];
    struct sl_err err = {0};
    struct sl_calib_report before, after;
    float t = 0;
    make_set(s, y, N, K, scale);
    /* fit on the first half, measure on the held-out second half */
    T_OK(sl_calib_fit_temperature(s, y, N / 2, K, &t, &err), &err);
    T_NEAR(t, scale, 0.12 * scale);
    T_OK(sl_calib_report(s + (N / 2) * K, y + N / 2, N / 2, K, 1.0f, &before, &err), &err);
    T_OK(sl_calib_report(s + (N / 2) * K, y + N / 2, N / 2, K, t, &after, &err), &err);
    T_TRUE(after.ece < before.ece);
    T_TRUE(after.ece < 0.05 && after.ece < before.ece / 3); /* sampling noise of 3000 examples */
    T_TRUE(after.nll < before.nll);
    T_NEAR(after.accuracy, before.accuracy, 1e-12); /* T never changes the argmax */
    fprintf(stderr, "  scale %.2f: T=%.3f, ECE %.4f -> %.4f, NLL %.4f -> %.4f\n", scale, t,
            before.ece, after.ece, before.nll, after.nll);
}

static void overconfident_scores_get_t_above_one(void) { check_recovers(3.0); }
static void underconfident_scores_get_t_below_one(void) { check_recovers(0.4); }

static void fit_is_deterministic(void)
{
    enum { N = 500, K = 3 };
    static float s[N * K];
    static int32_t y[N];
    struct sl_err err = {0};
    float t1, t2;
    make_set(s, y, N, K, 2.0);
    T_OK(sl_calib_fit_temperature(s, y, N, K, &t1, &err), &err);
    T_OK(sl_calib_fit_temperature(s, y, N, K, &t2, &err), &err);
    T_TRUE(t1 == t2);
}

static void ece_of_a_hand_made_set(void)
{
    /* two labels, scores chosen so the confidence is exactly 0.9 (bin 13):
       9 right and 1 wrong gives ECE 0; all right gives 0.1 */
    float s[20];
    int32_t y[10];
    double d = log(9.0);
    for (int i = 0; i < 10; i++) {
        s[2 * i] = (float)d;
        s[2 * i + 1] = 0;
        y[i] = i == 0 ? 1 : 0;
    }
    struct sl_calib_report r;
    struct sl_err err = {0};
    T_OK(sl_calib_report(s, y, 10, 2, 1.0f, &r, &err), &err);
    T_NEAR(r.ece, 0.0, 1e-6);
    T_EQ_INT(r.bins[13].n, 10);
    T_NEAR(r.accuracy, 0.9, 1e-12);
    y[0] = 0;
    T_OK(sl_calib_report(s, y, 10, 2, 1.0f, &r, &err), &err);
    T_NEAR(r.ece, 0.1, 1e-6);
    char buf[1024];
    T_TRUE(strstr(sl_calib_table(&r, buf, sizeof buf), "| 0.87-0.93 | 10 | 0.900 | 1.000 |") != NULL);
}

static void bad_input_is_an_error(void)
{
    float s[2] = {0, 1};
    int32_t y[1] = {2};
    float t;
    struct sl_err err = {0};
    struct sl_calib_report r;
    T_EQ_INT(sl_calib_fit_temperature(s, y, 1, 2, &t, &err), SL_EINVAL);
    y[0] = 0;
    T_EQ_INT(sl_calib_report(s, y, 1, 2, 0.0f, &r, &err), SL_EINVAL);
    T_EQ_INT(sl_calib_report(s, y, 0, 2, 1.0f, &r, &err), SL_EINVAL);
}

static void classify_softmax_agrees_with_the_report(void)
{
    float s[3] = {-0.5f, -1.5f, -0.7f}, p[3];
    int32_t y[1] = {0};
    struct sl_calib_report r;
    struct sl_err err = {0};
    int32_t best = sl_classify_softmax(s, 3, 2.0f, p, NULL, NULL);
    T_OK(sl_calib_report(s, y, 1, 3, 2.0f, &r, &err), &err);
    T_NEAR(r.nll, -log(p[0]), 1e-6);
    T_EQ_INT(best, 0);
}

int main(void)
{
    T_RUN(overconfident_scores_get_t_above_one);
    T_RUN(underconfident_scores_get_t_below_one);
    T_RUN(fit_is_deterministic);
    T_RUN(ece_of_a_hand_made_set);
    T_RUN(bad_input_is_an_error);
    T_RUN(classify_softmax_agrees_with_the_report);
    return t_done();
}
