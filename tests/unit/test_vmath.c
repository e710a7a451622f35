/*
 * test_vmath.c - the float vector-math kernels of every path this CPU runs
 * (kernels/vmath_*.c and their scalar references in kernels.c).
 *
 * The attention group kernels (attn_scores, attn_pv, exp_row) against
 * double: head sizes 1..300 (the masked tails; past 256 the AVX-512
 * scores fall back to the reference), groups of 1..13 heads (past the
 * register blocks of 6 and 3), 1..40 cells (16 at a time in the AVX-512
 * scores) picked out of order from a cache with strides past the rows,
 * accumulators left untouched outside their rows. Budgets: dot and pv are
 * float sums, 1e-6 relative to the sum of |terms| (measured 1.9e-7 and
 * 2.2e-7);
 * exp_row 2e-6 (1 + |x - mx|) per value, its sum 1e-5.
 *
 * The gated FFN activation kernels (kernels.h silu_mul,
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
#include "engine/quant.h"
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

#define SL_TOL_ATTN_DOT 1e-6
#define SL_TOL_EXP_SUM 1e-5

/* attn_scores against double: nv cells picked out of a cache of 50 (out of
 * order, repeated), key rows of stride d + 3, G heads of d values, scaled
 * by 1/8; and each head's maximum */
static void check_scores(const struct sl_kernels *kn, int nv, int d, int G, double *worst)
{
    enum { CELLS = 50, DMAX = 300, GMAX = 13, NV = 40 };
    static uint16_t k[CELLS * (DMAX + 3)];
    static float q[GMAX * DMAX], out[GMAX * NV + 1], mx[GMAX];
    static int32_t cells[NV];
    const size_t ks = (size_t)d + 3;
    unsigned s = 31u * (unsigned)d + 7u * (unsigned)nv + (unsigned)G;
    for (size_t i = 0; i < CELLS * ks; i++) k[i] = sl_fp32_to_fp16(frand(&s, -2.0f, 2.0f));
    for (int i = 0; i < G * d; i++) q[i] = frand(&s, -1.0f, 1.0f);
    for (int j = 0; j < nv; j++) cells[j] = (int32_t)((j * 29 + 3) % CELLS);
    out[G * nv] = 1234.5f;
    kn->attn_scores(nv, k, ks, cells, q, G, d, 0.125f, out, mx);
    T_TRUE(out[G * nv] == 1234.5f); /* nothing past the (G, nv) block */
    for (int g = 0; g < G; g++)
        for (int j = 0; j < nv; j++) {
            double want = 0, mag = 0;
            for (int i = 0; i < d; i++) {
                const double x = (double)sl_fp16_to_fp32(k[(size_t)cells[j] * ks + (size_t)i]) * q[g * d + i];
                want += x;
                mag += fabs(x);
            }
            T_NEAR(out[g * nv + j], 0.125 * want, SL_TOL_ATTN_DOT * 0.125 * mag);
            *worst = fmax(*worst, fabs(out[g * nv + j] - 0.125 * want) / (0.125 * mag));
        }
    for (int g = 0; g < G; g++) { /* the maximum of what it wrote */
        float m = -INFINITY;
        for (int j = 0; j < nv; j++) m = fmaxf(m, out[g * nv + j]);
        T_TRUE(mx[g] == m);
    }
}

/* attn_pv against double: nv cells picked out of a cache of 50 (out of
 * order, repeated), dv values of a row of stride dv + 3, G heads' weights
 * (G, nv), accumulators with a stride past dv that must stay untouched */
static void check_pv(const struct sl_kernels *kn, int nv, int dv, int G, double *worst)
{
    enum { CELLS = 50, DMAX = 300, GMAX = 13, AS = DMAX + 7 };
    static uint16_t v[CELLS * (DMAX + 3)];
    static float w[GMAX * 40], acc[GMAX * AS];
    static int32_t cells[40];
    const size_t vs = (size_t)dv + 3;
    unsigned s = 17u * (unsigned)nv + 5u * (unsigned)dv + (unsigned)G;
    for (size_t i = 0; i < CELLS * vs; i++) v[i] = sl_fp32_to_fp16(frand(&s, -2.0f, 2.0f));
    for (int k = 0; k < nv; k++) cells[k] = (int32_t)((k * 37 + 11) % CELLS);
    for (int i = 0; i < G * nv; i++) w[i] = frand(&s, 0.0f, 1.0f);
    for (int i = 0; i < GMAX * AS; i++) acc[i] = 1234.5f;
    kn->attn_pv(nv, v, vs, cells, w, G, dv, acc, AS);
    for (int g = 0; g < G; g++)
        for (int d = 0; d < AS; d++) {
            if (d >= dv) {
                T_TRUE(acc[g * AS + d] == 1234.5f);
                continue;
            }
            double want = 0, mag = 0;
            for (int k = 0; k < nv; k++) {
                const double x = (double)w[g * nv + k] * sl_fp16_to_fp32(v[(size_t)cells[k] * vs + (size_t)d]);
                want += x;
                mag += fabs(x);
            }
            T_NEAR(acc[g * AS + d], want, SL_TOL_ATTN_DOT * mag + 1e-30);
            if (mag > 0) *worst = fmax(*worst, fabs(acc[g * AS + d] - want) / mag);
        }
    for (int i = G * AS; i < GMAX * AS; i++) T_TRUE(acc[i] == 1234.5f); /* past the group */
}

static void check_exp_row(const struct sl_kernels *kn, int n)
{
    static float x[300], x0[300];
    unsigned s = 7u * (unsigned)n;
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) {
        x0[i] = x[i] = frand(&s, -90.0f, 5.0f);
        mx = fmaxf(mx, x[i]);
    }
    const float sum = kn->exp_row(n, x, mx);
    double want_sum = 0;
    for (int i = 0; i < n; i++) {
        const double e = exp((double)x0[i] - mx);
        want_sum += e;
        T_NEAR(x[i], e, SL_TOL_ACT_REL * (1.0 + fabs((double)x0[i] - mx)) * e + 1e-37);
    }
    T_NEAR(sum, want_sum, SL_TOL_EXP_SUM * want_sum);
}

static void test_attention_group_kernels(void)
{
    static const int ns[] = {1, 7, 16, 17, 33, 64, 80, 128, 300};
    static const int groups[] = {1, 2, 5, 6, 7, 13};
    static const int nvs[] = {1, 3, 16, 17, 40};
    double worst_dot = 0, worst_pv = 0;
    for (size_t p = 0; p < sizeof paths / sizeof *paths; p++) {
        const struct sl_kernels *kn = sl_kernels_get(paths[p]);
        if (!kn) continue;
        T_TRUE(kn->attn_scores && kn->attn_pv && kn->exp_row);
        for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++) {
            for (size_t gi = 0; gi < sizeof groups / sizeof *groups; gi++) {
                for (size_t vi = 0; vi < sizeof nvs / sizeof *nvs; vi++) {
                    check_scores(kn, nvs[vi], ns[ni], groups[gi], &worst_dot);
                    check_pv(kn, nvs[vi], ns[ni], groups[gi], &worst_pv);
                }
            }
            check_exp_row(kn, ns[ni]);
        }
    }
    if (verbose) fprintf(stderr, "     attention: scores worst %.2g, pv worst %.2g of the sum of |terms|\n", worst_dot,
                         worst_pv);
}

int main(void)
{
    verbose = getenv("SL_TEST_VERBOSE") != NULL;
    T_RUN(test_act_paths);
    T_RUN(test_act_nan);
    T_RUN(test_attention_group_kernels);
    return t_done();
}
