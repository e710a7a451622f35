/*
 * test_ops.c - tests of engine/ops.c beyond the kernels:
 * - sl_op_matmul_set (q, k, v or gate, up in one pool job, activations
 *   converted once) gives bit for bit what one sl_op_matmul per weight
 *   gives, for weights that share the activations' form (Q4_0 panels,
 *   Q4_K with Q6_K, F16, F32 read directly) and weights that do not (Q5_0
 *   with Q6_K, and Q4_K beside Q4_0: the fallback), at 1, 5 and 70
 *   activation rows (70: two token chunks), on 1 and 3 threads;
 * - RoPE in two steps (sl_op_rope_angles + sl_op_rope_apply) against the
 *   rotation computed in double.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/pool.h"
#include "engine/kernels.h"
#include "engine/ops.h"
#include "engine/quant.h"
#include "test.h"

static float frand(unsigned *s, float lo, float hi)
{
    *s = *s * 1103515245u + 12345u;
    return lo + (hi - lo) * (float)((*s >> 8) & 0xFFFFFF) / (float)0x1000000;
}

/* A random weight of R rows of n values, repacked into panels when the
 * kernel table has them for its type (as model.c does at load). */
struct weight {
    struct sl_tensor t;
    uint8_t *data, *panels;
};

static void make_weight(struct weight *w, int type, int64_t n, int R, unsigned seed)
{
    const size_t rs = sl_row_size(type, n);
    float *row = malloc((size_t)n * sizeof *row);
    memset(w, 0, sizeof *w);
    w->data = malloc(rs * (size_t)R);
    T_TRUE(row && w->data);
    if (!row || !w->data) return;
    for (int r = 0; r < R; r++) {
        for (int64_t i = 0; i < n; i++) row[i] = frand(&seed, -1.0f, 1.0f);
        T_TRUE(sl_quantize_row_ref(type, row, w->data + (size_t)r * rs, n) == rs);
    }
    free(row);
    w->t = (struct sl_tensor){.data = w->data, .type = type, .ne = {n, R, 1, 1}, .row_size = rs};
    const size_t psz = sl_panel_size(type, n);
    if (!sl_kernels()->panel[type].dot || !psz) return;
    const int np = (R + SL_PANEL_ROWS - 1) / SL_PANEL_ROWS;
    w->panels = aligned_alloc(64, psz * (size_t)np);
    T_TRUE(w->panels != NULL);
    if (!w->panels) return;
    for (int p = 0; p < np; p++)
        sl_panel_pack(type, w->data + (size_t)p * SL_PANEL_ROWS * rs, rs, SL_MIN(SL_PANEL_ROWS, R - SL_PANEL_ROWS * p),
                      n, w->panels + (size_t)p * psz);
    w->t.panel = w->panels;
    w->t.panel_src = w->data;
}

static void check_set(struct sl_pool *pool, const int *types, int count, int64_t n, const int *rows)
{
    struct weight w[SL_MATMUL_SET_MAX];
    const struct sl_tensor *wt[SL_MATMUL_SET_MAX];
    float *ya[SL_MATMUL_SET_MAX], *yb[SL_MATMUL_SET_MAX];
    enum { TMAX = 70 };
    size_t qsz = 0;
    for (int k = 0; k < count; k++) {
        make_weight(&w[k], types[k], n, rows[k], 100u * (unsigned)k + (unsigned)types[k]);
        wt[k] = &w[k].t;
        qsz = SL_MAX(qsz, sl_matmul_qbuf_size(wt[k]));
        ya[k] = malloc((size_t)rows[k] * TMAX * sizeof(float));
        yb[k] = malloc((size_t)rows[k] * TMAX * sizeof(float));
    }
    float *x = malloc((size_t)n * TMAX * sizeof *x);
    void *qbuf = malloc(qsz * TMAX);
    unsigned s = 9;
    for (int64_t i = 0; x && i < n * TMAX; i++) x[i] = frand(&s, -2.0f, 2.0f);
    static const int Ts[] = {1, 5, TMAX};
    for (size_t ti = 0; x && qbuf && ti < sizeof Ts / sizeof *Ts; ti++) {
        const int T = Ts[ti];
        for (int k = 0; k < count; k++) {
            sl_op_matmul(pool, wt[k], x, ya[k], T, qbuf);
            memset(yb[k], 0xFF, (size_t)rows[k] * T * sizeof(float)); /* NaN: nothing left unwritten */
        }
        sl_op_matmul_set(pool, count, wt, x, yb, T, qbuf);
        for (int k = 0; k < count; k++) {
            t_checks++;
            if (memcmp(ya[k], yb[k], (size_t)rows[k] * T * sizeof(float)) != 0)
                T_FAIL_AT("set of %d, weight %d (%s, %d rows), T=%d, %d threads: differs from sl_op_matmul",
                          count, k, sl_type_traits((uint32_t)types[k])->name, rows[k], T, sl_pool_n_threads(pool));
        }
    }
    free(x);
    free(qbuf);
    for (int k = 0; k < count; k++) {
        free(w[k].data);
        free(w[k].panels);
        free(ya[k]);
        free(yb[k]);
    }
}

static void matmul_set_equals_one_matmul_per_weight(void)
{
    static const int nths[] = {1, 3};
    for (size_t p = 0; p < sizeof nths / sizeof *nths; p++) {
        struct sl_pool *pool = sl_pool_init(nths[p]);
        T_TRUE(pool != NULL);
        if (!pool) return;
        { /* q, k, v of a GQA model: a wide q, narrow k and v */
            const int types[] = {SL_TYPE_Q4_0, SL_TYPE_Q4_0, SL_TYPE_Q4_0}, rows[] = {96, 33, 33};
            check_set(pool, types, 3, 7 * 32, rows);
        }
        { /* a Q4_K_M mix: Q4_K q, k with a Q6_K v (both take Q8_K rows) */
            const int types[] = {SL_TYPE_Q4_K, SL_TYPE_Q4_K, SL_TYPE_Q6_K}, rows[] = {40, 17, 17};
            check_set(pool, types, 3, 512, rows);
        }
        { /* qwen's Q4_K_M: Q5_0 q, k with a Q6_K v: different forms */
            const int types[] = {SL_TYPE_Q5_0, SL_TYPE_Q5_0, SL_TYPE_Q6_K}, rows[] = {48, 16, 16};
            check_set(pool, types, 3, 256, rows);
        }
        { /* gate, up */
            const int types[] = {SL_TYPE_F16, SL_TYPE_F16}, rows[] = {70, 70};
            check_set(pool, types, 2, 101, rows);
        }
        {
            const int types[] = {SL_TYPE_F32, SL_TYPE_F32}, rows[] = {19, 64};
            check_set(pool, types, 2, 45, rows);
        }
        {
            const int types[] = {SL_TYPE_Q4_K, SL_TYPE_Q4_0}, rows[] = {31, 31};
            check_set(pool, types, 2, 256, rows);
        }
        sl_pool_free(pool);
    }
}

/* The two-step RoPE against the rotation computed in double, for both
 * pair layouts, with and without frequency divisors. */
static void test_rope_two_steps(void)
{
    enum { NR = 64, D = 80 };
    float freq[NR / 2];
    for (int i = 0; i < NR / 2; i++) freq[i] = 1.0f + 0.25f * (float)i;
    for (int neox = 0; neox < 2; neox++)
        for (int fd = 0; fd < 2; fd++)
            for (int pos = 0; pos < 3000; pos += 997) {
                float cs[NR], x[D], x0[D];
                unsigned s = (unsigned)(pos + 10 * neox + fd);
                for (int i = 0; i < D; i++) x0[i] = x[i] = frand(&s, -2.0f, 2.0f);
                sl_op_rope_angles(cs, NR, pos, 10000.0f, 0.5f, fd ? freq : NULL);
                sl_op_rope_apply(x, NR, cs, neox);
                for (int i = 0; i < NR / 2; i++) {
                    const double th = pos * 0.5 * pow(10000.0, -2.0 * i / NR) / (fd ? freq[i] : 1.0);
                    const int a = neox ? i : 2 * i, b = neox ? i + NR / 2 : 2 * i + 1;
                    /* the float angle drifts from the double one by ~1e-7 x theta */
                    const double tol = 1e-6 * (1.0 + th) * 4.0;
                    T_NEAR(x[a], x0[a] * cos(th) - x0[b] * sin(th), tol);
                    T_NEAR(x[b], x0[a] * sin(th) + x0[b] * cos(th), tol);
                }
                for (int i = NR; i < D; i++) T_TRUE(x[i] == x0[i]); /* past n_rot: untouched */
            }
}

int main(void)
{
    T_RUN(matmul_set_equals_one_matmul_per_weight);
    T_RUN(test_rope_two_steps);
    return t_done();
}
