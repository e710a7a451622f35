/*
 * test_router_lr.c - the logistic-regression router: features, agreement
 * with a Newton solution of the same objective, determinism, and learning
 * a separable text task.
 */
#include "eval/router_lr.h"
#include "test.h"

/* Two dense features per row, built by hand. */
static void make_rows(struct sl_lr_rows *X, const double (*x)[2], size_t n)
{
    X->n_rows = n;
    X->dim = 2;
    X->row_ptr = malloc((n + 1) * sizeof *X->row_ptr);
    X->idx = malloc(2 * n * sizeof *X->idx);
    X->val = malloc(2 * n * sizeof *X->val);
    for (size_t r = 0; r <= n; r++) X->row_ptr[r] = 2 * r;
    for (size_t r = 0; r < n; r++) {
        X->idx[2 * r] = 0;
        X->idx[2 * r + 1] = 1;
        X->val[2 * r] = (float)x[r][0];
        X->val[2 * r + 1] = (float)x[r][1];
    }
}

/* Newton's method on mean logloss + l2/2 |w|^2 over (w0, w1, b): the
 * reference the Adam trainer must reach. */
static void newton(const double (*x)[2], const uint8_t *y, size_t n, double l2, double out[3])
{
    double th[3] = {0, 0, 0};
    for (int it = 0; it < 50; it++) {
        double g[3] = {l2 * th[0], l2 * th[1], 0};
        double h[3][3] = {{l2, 0, 0}, {0, l2, 0}, {0, 0, 0}};
        for (size_t i = 0; i < n; i++) {
            double f[3] = {x[i][0], x[i][1], 1};
            double z = th[0] * f[0] + th[1] * f[1] + th[2];
            double p = 1 / (1 + exp(-z)), w = p * (1 - p) / (double)n;
            for (int a = 0; a < 3; a++) {
                g[a] += (p - y[i]) * f[a] / (double)n;
                for (int b = 0; b < 3; b++) h[a][b] += w * f[a] * f[b];
            }
        }
        /* solve h d = g (3x3, Cramer's rule) */
        double det = h[0][0] * (h[1][1] * h[2][2] - h[1][2] * h[2][1]) -
                     h[0][1] * (h[1][0] * h[2][2] - h[1][2] * h[2][0]) +
                     h[0][2] * (h[1][0] * h[2][1] - h[1][1] * h[2][0]);
        for (int c = 0; c < 3; c++) {
            double m[3][3];
            memcpy(m, h, sizeof m);
            for (int r = 0; r < 3; r++) m[r][c] = g[r];
            double dc = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) -
                        m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
                        m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
            th[c] -= dc / det;
        }
    }
    memcpy(out, th, sizeof th);
}

static void adam_reaches_the_newton_optimum(void)
{
    /* a noisy, non-separable problem */
    static const double x[8][2] = {{0.1, 1.0}, {0.4, 0.2}, {0.9, 0.5}, {0.3, 0.8},
                                   {0.7, 0.1}, {0.2, 0.4}, {0.8, 0.9}, {0.6, 0.6}};
    static const uint8_t y[8] = {0, 0, 1, 1, 1, 0, 1, 0};
    const size_t use[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    struct sl_lr_rows X;
    make_rows(&X, x, 8);
    struct sl_lr_params p = sl_lr_default_params();
    p.l2 = 0.05;
    p.iters = 4000;
    p.lr = 0.02;
    struct sl_lr m;
    struct sl_err err = {0};
    T_OK(sl_lr_train(&m, &X, y, use, 8, &p, &err), &err);
    double ref[3];
    newton(x, y, 8, 0.05, ref);
    T_NEAR(m.w[0], ref[0], 2e-3);
    T_NEAR(m.w[1], ref[1], 2e-3);
    T_NEAR(m.b, ref[2], 2e-3);
    sl_lr_free(&m);
    sl_lr_rows_free(&X);
}

static void features_merge_repeats_and_normalize(void)
{
    const char *texts[] = {"Hello hello WORLD", "", "12 + 30 = ?"};
    struct sl_lr_params p = sl_lr_default_params();
    struct sl_lr_rows X;
    struct sl_err err = {0};
    T_OK(sl_lr_featurize(&X, texts, 3, &p, &err), &err);
    T_EQ_INT(X.dim, (size_t)1 << p.dim_bits);
    /* row 0: 4 dense + hello (x2, merged) + world + 2 bigrams (hello hello, hello world) */
    size_t n0 = X.row_ptr[1] - X.row_ptr[0];
    T_EQ_INT(n0, 4 + 4);
    double ss = 0;
    for (size_t k = X.row_ptr[0] + 4; k < X.row_ptr[1]; k++) ss += (double)X.val[k] * X.val[k];
    T_NEAR(ss, 1.0, 1e-6);
    T_NEAR(X.val[X.row_ptr[0]], log1p(17.0) / 8, 1e-6); /* bytes */
    T_NEAR(X.val[X.row_ptr[0] + 1], log1p(3.0) / 6, 1e-6); /* words */
    T_EQ_INT(X.row_ptr[2] - X.row_ptr[1], 4); /* empty text: dense slots only */
    size_t r2 = X.row_ptr[2];
    T_NEAR(X.val[r2 + 2], 4.0 / 11, 1e-6); /* 4 digits of 11 bytes */
    T_NEAR(X.val[r2 + 3], 0.25, 1e-6);     /* one '?' */
    sl_lr_rows_free(&X);
}

static void training_is_deterministic_and_learns_words(void)
{
    /* label 1 iff the text mentions a cat; the rest is shared noise */
    enum { N = 200 };
    static char buf[N][64];
    const char *texts[N];
    uint8_t y[N];
    size_t use[N];
    for (int i = 0; i < N; i++) {
        y[i] = i % 3 == 0;
        snprintf(buf[i], sizeof buf[i], "question %d about the %s and %s", i % 17,
                 y[i] ? "cat" : "dog", i % 2 ? "weather" : "news");
        texts[i] = buf[i];
        use[i] = (size_t)i;
    }
    struct sl_lr_params p = sl_lr_default_params();
    p.dim_bits = 12;
    p.iters = 100;
    struct sl_lr_rows X;
    struct sl_lr a, b;
    struct sl_err err = {0};
    T_OK(sl_lr_featurize(&X, texts, N, &p, &err), &err);
    T_OK(sl_lr_train(&a, &X, y, use, N / 2, &p, &err), &err);
    T_OK(sl_lr_train(&b, &X, y, use, N / 2, &p, &err), &err);
    T_EQ_INT(memcmp(a.w, b.w, a.dim * sizeof *a.w), 0);
    T_TRUE(a.b == b.b);
    int right = 0;
    for (size_t r = N / 2; r < N; r++) right += (sl_lr_predict(&a, &X, r) >= 0.5) == y[r];
    T_EQ_INT(right, N / 2); /* held-out half, all right */
    T_TRUE(a.final_loss < 0.2);
    sl_lr_free(&a);
    sl_lr_free(&b);
    sl_lr_rows_free(&X);
}

static void featurize_rejects_bad_dimension(void)
{
    const char *t[] = {"x"};
    struct sl_lr_params p = sl_lr_default_params();
    struct sl_lr_rows X;
    struct sl_err err = {0};
    p.dim_bits = 30;
    T_EQ_INT(sl_lr_featurize(&X, t, 1, &p, &err), SL_EINVAL);
}

int main(void)
{
    T_RUN(adam_reaches_the_newton_optimum);
    T_RUN(features_merge_repeats_and_normalize);
    T_RUN(training_is_deterministic_and_learns_words);
    T_RUN(featurize_rejects_bad_dimension);
    return t_done();
}
