/*
 * test_act.c - the gated FFN activation kernels (kernels.h silu_mul,
 * gelu_mul) of every path this CPU runs, the scalar references
 * sl_silu_mul_ref and sl_gelu_mul_ref included, against the functions
 * computed in double: odd lengths (the masked tails),
 * random values over the range a model's gate projection produces, values
 * at and past the exp clamp, zeros and NaN.
 *
 * Budget: |got - want| <= SL_TOL_ACT_REL (1 + |z|) |want| + SL_TOL_ACT_ABS
 * |x u|, with z the argument of exp (-x, or -2y): a float z is off by an
 * ulp or two of itself, and e^z carries that times |z|.
 * GELU is x sigmoid(2y) (y its tanh argument), the same function as
 * x (1 + tanh y) / 2 without the cancellation that zeroes the latter in
 * float below x = -5. The polynomial exp is within ~2 ulp of expf; one
 * division and one multiply add a rounding each. Measured worst case (SL_TEST_VERBOSE=1):
 * 1.4e-7 (times 1 + |z|) on every path. The absolute term covers outputs that underflow: SiLU
 * of x < -87 is x / (1 + e^88) at most (the clamp) where libm's is smaller
 * still, both far below anything a matmul after it can see. A wrong
 * polynomial coefficient or a lost tail lane gives 1e-3 or more.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/kernels.h"
#include "test.h"

#define SL_TOL_ACT_REL 2e-6
#define SL_TOL_ACT_ABS 1e-35

static const char *const paths[] = {"scalar", "avx2", "avx512"};
static int verbose;

static float frand(unsigned *s, float lo, float hi)
{
    *s = *s * 1103515245u + 12345u;
    return lo + (hi - lo) * (float)((*s >> 8) & 0xFFFFFF) / (float)0x1000000;
}

/* Fill x with n gate values: mostly random in [-span, span], with the
 * edge values spread through (so that they land in tails too). */
static void fill(float *x, float *u, int n, unsigned seed, float span)
{
    static const float edges[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 87.0f, -87.0f, 87.5f, -87.5f, 88.0f,
                                  -88.0f, 89.0f, -89.0f, 100.0f, -100.0f, 1e4f, -1e4f, 1e-7f, 5.5f};
    unsigned s = seed;
    for (int i = 0; i < n; i++) {
        x[i] = frand(&s, -span, span);
        u[i] = frand(&s, -3.0f, 3.0f);
        if (i % 5 == 3) x[i] = edges[(i / 5) % (sizeof edges / sizeof *edges)];
    }
}

static void check_path(const struct sl_kernels *k, int gelu)
{
    static const int lens[] = {1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 100, 4099};
    const char *name = gelu ? "gelu" : "silu";
    double worst = 0;
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
        const int n = lens[li];
        for (int round = 0; round < 3; round++) {
            const float span = round == 0 ? 8.0f : round == 1 ? 30.0f : 120.0f;
            float *x = malloc((size_t)n * sizeof *x), *u = malloc((size_t)n * sizeof *u);
            float *got = malloc((size_t)(n + 1) * sizeof *got);
            double *want = malloc((size_t)n * sizeof *want), *z = malloc((size_t)n * sizeof *z);
            T_TRUE(x && u && got && want && z);
            if (!x || !u || !got || !want || !z) return;
            fill(x, u, n, 77u * (unsigned)n + (unsigned)round, span);
            memcpy(got, x, (size_t)n * sizeof *x);
            got[n] = 12345.0f; /* a lane past the end must stay as it is */
            (gelu ? k->gelu_mul : k->silu_mul)(n, got, u);
            for (int i = 0; i < n; i++) {
                const double v = x[i], y = gelu ? 0.7978845608028654 * (v + 0.044715 * v * v * v) : 0.5 * v;
                z[i] = -2.0 * y;
                want[i] = v / (1.0 + exp(z[i])) * u[i];
            }
            T_TRUE(got[n] == 12345.0f);
            for (int i = 0; i < n; i++) {
                const double d = fabs(got[i] - want[i]);
                const double rel = SL_TOL_ACT_REL * (1.0 + fabs(z[i]));
                const double tol = rel * fabs(want[i]) + SL_TOL_ACT_ABS * fabs((double)x[i] * u[i]);
                t_checks++;
                if (!(d <= tol))
                    T_FAIL_AT("%s %s n=%d x=%.9g u=%.9g: %.9g vs %.9g", k->name, name, n, x[i], u[i], got[i],
                              want[i]);
                if (fabs(want[i]) > 1e-30) worst = fmax(worst, d / fabs(want[i]) / (1.0 + fabs(z[i])));
            }
            free(x);
            free(u);
            free(got);
            free(want);
            free(z);
        }
    }
    if (verbose) fprintf(stderr, "     %s %s: worst relative error %.2g\n", k->name, name, worst);
}

static void test_act_paths(void)
{
    for (size_t p = 0; p < sizeof paths / sizeof *paths; p++) {
        const struct sl_kernels *k = sl_kernels_get(paths[p]);
        if (!k) {
            fprintf(stderr, "     %s: this CPU cannot run it, skipped\n", paths[p]);
            continue;
        }
        T_TRUE(k->silu_mul && k->gelu_mul);
        check_path(k, 0);
        check_path(k, 1);
    }
}

static void test_act_nan(void)
{
    for (size_t p = 0; p < sizeof paths / sizeof *paths; p++) {
        const struct sl_kernels *k = sl_kernels_get(paths[p]);
        if (!k) continue;
        for (int gelu = 0; gelu < 2; gelu++) {
            float g[19], u[19];
            for (int i = 0; i < 19; i++) {
                g[i] = i % 3 ? (float)i : NAN;
                u[i] = 1.0f;
            }
            (gelu ? k->gelu_mul : k->silu_mul)(19, g, u);
            for (int i = 0; i < 19; i++) T_TRUE(i % 3 ? !isnan(g[i]) : isnan(g[i]));
        }
    }
}

int main(void)
{
    verbose = getenv("SL_TEST_VERBOSE") != NULL;
    T_RUN(test_act_paths);
    T_RUN(test_act_nan);
    return t_done();
}
