/*
 * test_kernels.c - tests of engine/kernels.c and the per-ISA kernel files.
 *
 * Every path the CPU can run ("scalar", "avx2", "avx512"; the others are
 * skipped with a message) is checked against the scalar references:
 * - vec_dot of every weight type on random blocks at odd sizes (1, 3, 7, 13
 *   blocks of 32; 1..5 super-blocks of 256; plus one 4096-value row), on
 *   extreme blocks (every byte 0x00, 0xFF, 0x80 or 0x7F against activations
 *   at +-127) that would show an int16 saturation, and on the weights of the
 *   llama.cpp-made files in ../shared/assets/conformance/models (skipped
 *   when absent), within a named budget relative to sum |w * a|;
 * - quantize_row bit for bit for Q8_0, Q8_1, Q8_K, F16 and BF16, on random
 *   rows and on rows built to hit rounding ties, zero blocks and repeated
 *   maxima (F16: NaN payloads may differ, NaN must stay NaN);
 * - the matrix tiles (struct sl_mm) of every type and path that has them,
 *   at every tile shape and at odd sizes (a partial last group of blocks),
 *   against sl_vec_dot_ref per (weight row, activation row), with the same
 *   budgets as vec_dot, on random and on extreme blocks;
 * - the row panels (struct sl_panel: weights repacked 16 rows at a time)
 *   of every type and path that has them (F16 and BF16 at odd row lengths
 *   too: 1, 7, 33, 4099 values), the same way, plus the layout's round
 *   trip, and sl_op_matmul / sl_op_get_row on a repacked tensor against
 *   the file layout;
 * - fp32_to_fp16_row (the KV cache's rows; the attention kernels are in
 *   test_vmath.c);
 * - the dispatcher: complete tables, and SLUICE_CPU forcing or refusing a
 *   path (run in a child process, since the choice is made once).
 *
 * Set SL_TEST_VERBOSE=1 to print the largest error measured per type and
 * path.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/pool.h"
#include "engine/gguf.h"
#include "engine/kernels.h"
#include "engine/model.h"
#include "engine/ops.h"
#include "engine/quant.h"
#include "test.h"

/*
 * Error budgets of the fast vec_dot against sl_vec_dot_ref, as
 * |fast - ref| / sum |w_i * a_i| (dequantized values, in double).
 *
 * The quantized types multiply in integers inside a block on every path, so
 * they differ only in how the float block results are summed (FMA against
 * multiply-then-add, lane order, (d_w d_a) sumi against (sumi d_w) d_a): a
 * few float roundings, ~6e-8 each relative to the block's magnitude. The
 * float rows sum float products in float lanes where the reference sums in
 * double. Measured worst case, random rows up to 4096 values and the
 * llama.cpp weights, every path: 1.0e-7 (F16, random), 9.9e-8 (Q5_K,
 * llama.cpp weights). The budgets are 10x that; a wrong nibble, bit or
 * scale gives 1e-2 or more (a swapped scale pair measured 0.09 to 0.45).
 */
#define SL_TOL_DOT_Q4_0 1e-6
#define SL_TOL_DOT_Q4_1 1e-6
#define SL_TOL_DOT_Q5_0 1e-6
#define SL_TOL_DOT_Q5_1 1e-6
#define SL_TOL_DOT_Q8_0 1e-6
#define SL_TOL_DOT_Q2_K 1e-6
#define SL_TOL_DOT_Q3_K 1e-6
#define SL_TOL_DOT_Q4_K 1e-6
#define SL_TOL_DOT_Q5_K 1e-6
#define SL_TOL_DOT_Q6_K 1e-6
#define SL_TOL_DOT_F32 1e-6
#define SL_TOL_DOT_F16 1e-6
#define SL_TOL_DOT_BF16 1e-6

static int verbose;

/* ------------------------------------------------------------------------ */
/* helpers                                                                   */
/* ------------------------------------------------------------------------ */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static void rng_seed(uint64_t s)
{
    rng_state = s * 0x9E3779B97F4A7C15ull + 1;
}

static uint64_t rng_u64(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static double rng_uniform(void) /* in (0, 1) */
{
    return ((double)(rng_u64() >> 11) + 0.5) / 9007199254740992.0;
}

static float rng_gauss(void)
{
    return (float)(sqrt(-2.0 * log(rng_uniform())) * cos(6.283185307179586 * rng_uniform()));
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static const char *tname(int type)
{
    const struct sl_type_traits *tr = sl_type_traits((uint32_t)type);
    return tr ? tr->name : "?";
}

static const char *const path_names[] = {"scalar", "avx2", "avx512"};
#define N_PATHS (int)(sizeof path_names / sizeof path_names[0])

/* The table for path p, or NULL after saying it is skipped. */
static const struct sl_kernels *path_or_skip(int p)
{
    const struct sl_kernels *k = sl_kernels_get(path_names[p]);
    if (!k) fprintf(stderr, "     path %s: this CPU cannot run it, skipped\n", path_names[p]);
    return k;
}

struct dot_case {
    int type;
    double tol; /* SL_TOL_DOT_* */
};

static const struct dot_case dot_cases[] = {
    {SL_TYPE_Q4_0, SL_TOL_DOT_Q4_0}, {SL_TYPE_Q4_1, SL_TOL_DOT_Q4_1}, {SL_TYPE_Q5_0, SL_TOL_DOT_Q5_0},
    {SL_TYPE_Q5_1, SL_TOL_DOT_Q5_1}, {SL_TYPE_Q8_0, SL_TOL_DOT_Q8_0}, {SL_TYPE_Q2_K, SL_TOL_DOT_Q2_K},
    {SL_TYPE_Q3_K, SL_TOL_DOT_Q3_K}, {SL_TYPE_Q4_K, SL_TOL_DOT_Q4_K}, {SL_TYPE_Q5_K, SL_TOL_DOT_Q5_K},
    {SL_TYPE_Q6_K, SL_TOL_DOT_Q6_K}, {SL_TYPE_F32, SL_TOL_DOT_F32},   {SL_TYPE_F16, SL_TOL_DOT_F16},
    {SL_TYPE_BF16, SL_TOL_DOT_BF16},
};
#define N_DOT (int)(sizeof dot_cases / sizeof dot_cases[0])

/* A random fp16 scale of magnitude ~[0.002, 0.02) and random sign. */
static uint16_t rand_scale(void)
{
    float v = (float)(0.002 + 0.018 * rng_uniform());
    return sl_fp32_to_fp16(rng_u64() & 1 ? -v : v);
}

/* Overwrite the fp16 scale fields of block b (random bytes otherwise). */
static void fix_scales(int type, uint8_t *b, uint16_t d, uint16_t m)
{
    switch (type) {
    case SL_TYPE_Q4_0: ((struct sl_block_q4_0 *)b)->d = d; break;
    case SL_TYPE_Q5_0: ((struct sl_block_q5_0 *)b)->d = d; break;
    case SL_TYPE_Q8_0: ((struct sl_block_q8_0 *)b)->d = d; break;
    case SL_TYPE_Q4_1: ((struct sl_block_q4_1 *)b)->d = d, ((struct sl_block_q4_1 *)b)->m = m; break;
    case SL_TYPE_Q5_1: ((struct sl_block_q5_1 *)b)->d = d, ((struct sl_block_q5_1 *)b)->m = m; break;
    case SL_TYPE_Q2_K: ((struct sl_block_q2_K *)b)->d = d, ((struct sl_block_q2_K *)b)->dmin = m; break;
    case SL_TYPE_Q3_K: ((struct sl_block_q3_K *)b)->d = d; break;
    case SL_TYPE_Q4_K: ((struct sl_block_q4_K *)b)->d = d, ((struct sl_block_q4_K *)b)->dmin = m; break;
    case SL_TYPE_Q5_K: ((struct sl_block_q5_K *)b)->d = d, ((struct sl_block_q5_K *)b)->dmin = m; break;
    case SL_TYPE_Q6_K: ((struct sl_block_q6_K *)b)->d = d; break;
    }
}

/* n weights of `type`: every byte from `fill` (-1: random) with sane fp16
 * scales; float types get Gaussian values. */
static void make_weights(int type, int64_t n, void *w, int fill)
{
    const struct sl_type_traits *tr = sl_type_traits((uint32_t)type);
    if (!tr->is_quant) {
        float *x = malloc((size_t)n * sizeof *x);
        for (int64_t i = 0; i < n; i++) x[i] = fill < 0 ? rng_gauss() : (fill & 1 ? -1.5f : 0.75f);
        sl_quantize_row_ref(type, x, w, n);
        free(x);
        return;
    }
    uint8_t *b = w;
    const size_t size = sl_row_size(type, n);
    for (size_t i = 0; i < size; i++) b[i] = fill < 0 ? (uint8_t)rng_u64() : (uint8_t)fill;
    for (int64_t k = 0; k < n / tr->blck; k++) {
        uint8_t *blk = b + (size_t)k * tr->type_size;
        if (fill < 0) fix_scales(type, blk, rand_scale(), rand_scale());
        else fix_scales(type, blk, sl_fp32_to_fp16(1.0f), sl_fp32_to_fp16(0.5f));
    }
}

/* n activations in the dot type of `type`: Gaussian, or every value `c`. */
static void make_acts(int type, int64_t n, void *a, int use_c, float c)
{
    const int dt = sl_type_traits((uint32_t)type)->dot_type;
    float *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++) x[i] = use_c ? c : rng_gauss();
    sl_quantize_row_ref(dt, x, a, n);
    free(x);
}

/* sum |w_i * a_i| over the dequantized rows, in double. */
static double dot_magnitude(int type, int64_t n, const void *w, const void *a)
{
    float *fw = malloc((size_t)n * sizeof *fw), *fa = malloc((size_t)n * sizeof *fa);
    sl_dequantize_row(type, w, fw, n);
    sl_dequantize_row(sl_type_traits((uint32_t)type)->dot_type, a, fa, n);
    double m = 0;
    for (int64_t i = 0; i < n; i++) m += fabs((double)fw[i] * fa[i]);
    free(fw);
    free(fa);
    return m;
}

/* Check one row; returns the relative error measured. */
static double check_dot(const struct sl_kernels *k, const struct dot_case *dc, int64_t n, const void *w,
                        const void *a, const char *what)
{
    const float ref = sl_vec_dot_ref(dc->type, n, w, a);
    const float got = k->vec_dot[dc->type](n, w, a);
    const double mag = dot_magnitude(dc->type, n, w, a);
    const double diff = fabs((double)got - ref);
    const double rel = mag > 0 ? diff / mag : diff;
    t_checks++;
    if (!(diff <= dc->tol * mag))
        T_FAIL_AT("%s %s n=%lld (%s): got %.9g, ref %.9g, |diff| / sum|w a| = %.3g > %.3g", k->name,
                  tname(dc->type), (long long)n, what, got, ref, rel, dc->tol);
    return rel;
}

/* ------------------------------------------------------------------------ */
/* dispatch                                                                  */
/* ------------------------------------------------------------------------ */

static void every_table_is_complete_and_named(void)
{
    const struct sl_kernels *def = sl_kernels();
    T_TRUE(def != NULL);
    T_TRUE(sl_kernels_get("scalar") != NULL);
    T_TRUE(sl_kernels_get("sse9") == NULL);
    T_TRUE(sl_kernels_get(NULL) == NULL);
    if (verbose) fprintf(stderr, "     default path: %s\n", def->name);
    for (int p = 0; p < N_PATHS; p++) {
        const struct sl_kernels *k = path_or_skip(p);
        if (!k) continue;
        T_EQ_STR(k->name, path_names[p]);
        for (int t = 0; t < SL_TYPE_COUNT; t++) {
            const struct sl_type_traits *tr = sl_type_traits((uint32_t)t);
            if (!tr || !tr->weight_ok) continue;
            t_checks++;
            if (!k->vec_dot[t]) T_FAIL_AT("path %s has no vec_dot for %s", k->name, tr->name);
        }
        T_TRUE(k->quantize_row && k->fp32_to_fp16_row);
    }
}

/* Run this test binary again with SLUICE_CPU set; it prints the path. */
static void run_child(const char *force, char *out, size_t cap)
{
    char self[4096], cmd[8192];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    out[0] = 0;
    if (len <= 0) return;
    self[len] = 0;
    snprintf(cmd, sizeof cmd, "SLUICE_CPU='%s' '%s' --print-path 2>&1", force, self);
    FILE *f = popen(cmd, "r");
    if (!f) return;
    size_t got = fread(out, 1, cap - 1, f);
    out[got] = 0;
    pclose(f);
}

static void sluice_cpu_forces_a_path_and_refuses_unknown_ones_with_a_warning(void)
{
    char out[4096];
    const char *best = sl_kernels_get("avx512") ? "avx512" : sl_kernels_get("avx2") ? "avx2" : "scalar";
    if (access("/proc/self/exe", X_OK) != 0) {
        t_skip("no /proc/self/exe to re-run this test binary");
        return;
    }
    run_child("scalar", out, sizeof out);
    T_EQ_STR(out, "path scalar\n");
    for (int p = 1; p < N_PATHS; p++) {
        run_child(path_names[p], out, sizeof out);
        if (sl_kernels_get(path_names[p])) {
            char want[64];
            snprintf(want, sizeof want, "path %s\n", path_names[p]);
            T_EQ_STR(out, want);
        } else {
            t_checks++;
            if (!strstr(out, "cannot run it") || !strstr(out, best))
                T_FAIL_AT("SLUICE_CPU=%s on a CPU without it: \"%s\"", path_names[p], out);
        }
    }
    run_child("sse9", out, sizeof out);
    t_checks++;
    char want[64];
    snprintf(want, sizeof want, "path %s\n", best);
    if (!strstr(out, "is not a kernel path") || !strstr(out, want) || strstr(out, want) == out)
        T_FAIL_AT("SLUICE_CPU=sse9: expected one warning then \"%s\", got \"%s\"", want, out);
}

/* ------------------------------------------------------------------------ */
/* vec_dot                                                                   */
/* ------------------------------------------------------------------------ */

static void vec_dot_matches_ref_on_every_path_and_type(void)
{
    static const int64_t blocks32[] = {1, 3, 7, 13, 128};
    static const int64_t blocks256[] = {1, 2, 3, 4, 5, 16};
    static const int64_t floats[] = {1, 3, 7, 13, 31, 33, 100, 4096, 4099};
    const size_t cap = 4099 * 8;
    void *w = malloc(cap), *a = malloc(cap);
    for (int p = 0; p < N_PATHS; p++) {
        const struct sl_kernels *k = path_or_skip(p);
        if (!k) continue;
        for (int c = 0; c < N_DOT; c++) {
            const struct dot_case *dc = &dot_cases[c];
            const struct sl_type_traits *tr = sl_type_traits((uint32_t)dc->type);
            const int64_t *sizes = !tr->is_quant ? floats : tr->blck == 32 ? blocks32 : blocks256;
            const int n_sizes = !tr->is_quant ? 9 : tr->blck == 32 ? 5 : 6;
            const int64_t unit = tr->is_quant ? tr->blck : 1;
            double worst = 0;
            rng_seed((uint64_t)(1000 * dc->type + 1));
            for (int s = 0; s < n_sizes; s++) {
                for (int rep = 0; rep < 8; rep++) {
                    const int64_t n = sizes[s] * unit;
                    make_weights(dc->type, n, w, -1);
                    make_acts(dc->type, n, a, 0, 0);
                    const double e = check_dot(k, dc, n, w, a, "random");
                    if (e > worst) worst = e;
                }
            }
            if (verbose)
                fprintf(stderr, "     %-6s %-5s worst |diff| / sum|w a| = %.3g (budget %.3g)\n", k->name,
                        tr->name, worst, dc->tol);
        }
    }
    free(w);
    free(a);
}

/* All-0xFF (etc.) weights against activations at +-127 give the largest
 * pair sums the multiply-add instructions ever see. */
static void vec_dot_survives_extreme_blocks_without_saturating(void)
{
    static const int fills[] = {0x00, 0xFF, 0x80, 0x7F, 0x0F, 0xF0};
    static const float acts[] = {1.0f, -1.0f};
    const int64_t n = 512;
    void *w = malloc((size_t)n * 8), *a = malloc((size_t)n * 8);
    for (int p = 0; p < N_PATHS; p++) {
        const struct sl_kernels *k = path_or_skip(p);
        if (!k) continue;
        for (int c = 0; c < N_DOT; c++) {
            const struct dot_case *dc = &dot_cases[c];
            for (size_t f = 0; f < sizeof fills / sizeof fills[0]; f++) {
                for (size_t s = 0; s < sizeof acts / sizeof acts[0]; s++) {
                    char what[64];
                    snprintf(what, sizeof what, "bytes 0x%02x, activations %+g", fills[f], acts[s]);
                    make_weights(dc->type, n, w, fills[f]);
                    make_acts(dc->type, n, a, 1, acts[s]);
                    check_dot(k, dc, n, w, a, what);
                }
            }
        }
    }
    free(w);
    free(a);
}

/* Matrix tiles: R weight rows x T activation rows, cut into tiles of every
 * shape up to tile_r x tile_c as sl_op_matmul does, each result against
 * sl_vec_dot_ref on the reference-quantized activations. fill >= 0: every
 * weight byte `fill` against activations all `c` (the extreme blocks). */
static double check_tiles(const struct sl_kernels *k, const struct dot_case *dc, int64_t n, int R, int T,
                          int fill, float c)
{
    const struct sl_mm *mm = &k->mm[dc->type];
    const int dt = sl_type_traits((uint32_t)dc->type)->dot_type;
    const size_t wrow = sl_row_size(dc->type, n), arow = sl_row_size(dt, n), prow = mm->act_size(n);
    uint8_t *w = malloc(wrow * (size_t)R), *a = malloc(arow * (size_t)T), *pa = malloc(prow * (size_t)T);
    float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)R * T * sizeof *y);
    double worst = 0;
    for (int r = 0; r < R; r++) make_weights(dc->type, n, w + (size_t)r * wrow, fill);
    for (int t = 0; t < T; t++) {
        for (int64_t i = 0; i < n; i++) x[i] = fill >= 0 ? c : rng_gauss();
        sl_quantize_row_ref(dt, x, a + (size_t)t * arow, n);
        mm->pack(x, pa + (size_t)t * prow, n);
    }
    for (int i = 0; i < R * T; i++) y[i] = NAN;
    /* tile shapes vary along the matrix: 1..tile_r rows, 1..tile_c tokens */
    for (int r = 0, nr = 1; r < R; r += nr, nr = nr % mm->tile_r + 1) {
        nr = SL_MIN(nr, R - r);
        for (int t = 0, nc = 1; t < T; t += nc, nc = nc % mm->tile_c + 1) {
            nc = SL_MIN(nc, T - t);
            mm->tile(n, w + (size_t)r * wrow, wrow, nr, pa + (size_t)t * prow, prow, nc, y + (size_t)t * R + r,
                     (size_t)R);
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) {
            const uint8_t *wr = w + (size_t)r * wrow, *at = a + (size_t)t * arow;
            const float ref = sl_vec_dot_ref(dc->type, n, wr, at), got = y[(size_t)t * R + r];
            const double mag = dot_magnitude(dc->type, n, wr, at);
            const double diff = fabs((double)got - ref), rel = mag > 0 ? diff / mag : diff;
            t_checks++;
            if (!(diff <= dc->tol * mag)) {
                T_FAIL_AT("%s %s tile n=%lld row %d of %d, act %d of %d%s: got %.9g, ref %.9g, "
                          "|diff| / sum|w a| = %.3g > %.3g",
                          k->name, tname(dc->type), (long long)n, r, R, t, T, fill >= 0 ? " (extreme)" : "", got,
                          ref, rel, dc->tol);
                r = R; /* one report per call */
                break;
            }
            if (rel > worst) worst = rel;
        }
    free(w);
    free(a);
    free(pa);
    free(x);
    free(y);
    return worst;
}

static void mm_tiles_match_ref_on_every_path_and_type(void)
{
    static const int64_t blocks32[] = {1, 3, 4, 7, 13, 28, 128};
    static const int64_t blocks256[] = {1, 2, 3, 5, 16};
    static const int64_t floats[] = {1, 7, 16, 33, 100, 896, 4099};
    static const int fills[] = {0x00, 0xFF, 0x80, 0x7F, 0x0F, 0xF0};
    int n_types = 0;
    for (int p = 0; p < N_PATHS; p++) {
        const struct sl_kernels *k = path_or_skip(p);
        if (!k) continue;
        for (int c = 0; c < N_DOT; c++) {
            const struct dot_case *dc = &dot_cases[c];
            const struct sl_type_traits *tr = sl_type_traits((uint32_t)dc->type);
            const struct sl_mm *mm = &k->mm[dc->type];
            if (!mm->tile) continue;
            n_types++;
            T_TRUE(mm->pack != NULL && mm->act_size != NULL && mm->tile_r >= 1 && mm->tile_c >= 1);
            const int64_t *sizes = !tr->is_quant ? floats : tr->blck == 32 ? blocks32 : blocks256;
            const int n_sizes = !tr->is_quant ? 7 : tr->blck == 32 ? 7 : 5;
            double worst = 0;
            rng_seed((uint64_t)(2000 * dc->type + 7));
            for (int s = 0; s < n_sizes; s++) {
                const double e = check_tiles(k, dc, sizes[s] * tr->blck, 11, 9, -1, 0);
                if (e > worst) worst = e;
            }
            for (size_t f = 0; f < sizeof fills / sizeof fills[0]; f++) {
                check_tiles(k, dc, 7 * tr->blck, 5, 3, fills[f], 1.0f);
                check_tiles(k, dc, 7 * tr->blck, 5, 3, fills[f], -1.0f);
            }
            if (verbose)
                fprintf(stderr, "     %-6s %-5s tiles %dx%d worst |diff| / sum|w a| = %.3g (budget %.3g)\n",
                        k->name, tr->name, mm->tile_r, mm->tile_c, worst, dc->tol);
        }
    }
    if (verbose) fprintf(stderr, "     %d (path, type) pairs with tiles\n", n_types);
}

/* R weight rows of type dc->type in panels of 16 against T activation rows
 * through the panel kernel (nc cycling 1..tile_c), against sl_vec_dot_ref
 * per pair on the reference-quantized activations of the dot type. y has
 * a gap of 3 columns per activation row that must stay untouched (a short
 * last panel writes only its rows). Returns the worst relative error. */
static double check_panels(const struct sl_kernels *k, const struct dot_case *dc, int64_t n, int R, int T, int fill,
                           float c)
{
    const struct sl_panel *pn = &k->panel[dc->type];
    const int dt = sl_type_traits((uint32_t)dc->type)->dot_type;
    const size_t wrow = sl_row_size(dc->type, n), arow = sl_row_size(dt, n), prow = pn->act_size(n);
    const size_t psz = sl_panel_size(dc->type, n), ldy = (size_t)R + 3;
    const int np = (R + SL_PANEL_ROWS - 1) / SL_PANEL_ROWS;
    uint8_t *w = malloc(wrow * (size_t)R), *a = malloc(arow * (size_t)T), *pa = malloc(prow * (size_t)T);
    uint8_t *pw = aligned_alloc(64, psz * (size_t)np);
    float *x = malloc((size_t)n * sizeof *x), *y = malloc(ldy * (size_t)T * sizeof *y);
    double worst = 0;
    T_TRUE(psz > 0 && psz % 64 == 0);
    if (sl_type_traits((uint32_t)dc->type)->blck == 32 && n / 32 % 2 == 0)
        T_TRUE(psz == SL_PANEL_ROWS * wrow); /* no padding for an even block count */
    if (dc->type == SL_TYPE_F16 || dc->type == SL_TYPE_BF16)
        T_TRUE(psz == SL_PANEL_ROWS * sl_row_size(dc->type, n + n % 2)); /* one zero slice for an odd n */
    for (int r = 0; r < R; r++) make_weights(dc->type, n, w + (size_t)r * wrow, fill);
    for (int p = 0; p < np; p++)
        sl_panel_pack(dc->type, w + (size_t)p * SL_PANEL_ROWS * wrow, wrow, SL_MIN(SL_PANEL_ROWS, R - p * SL_PANEL_ROWS),
                      n, pw + (size_t)p * psz);
    /* the layout round-trips: every row unpacks to its file bytes */
    uint8_t *back = malloc(wrow);
    for (int r = 0; r < R; r++) {
        sl_panel_unpack_row(dc->type, pw + (size_t)(r / SL_PANEL_ROWS) * psz, r % SL_PANEL_ROWS, n, back);
        T_TRUE(memcmp(back, w + (size_t)r * wrow, wrow) == 0);
    }
    free(back);
    for (int t = 0; t < T; t++) {
        for (int64_t i = 0; i < n; i++) x[i] = fill >= 0 ? c : rng_gauss();
        sl_quantize_row_ref(dt, x, a + (size_t)t * arow, n);
        pn->pack(x, pa + (size_t)t * prow, n);
    }
    for (size_t i = 0; i < ldy * (size_t)T; i++) y[i] = NAN;
    for (int p = 0; p < np; p++)
        for (int t = 0, nc = 1 + p % pn->tile_c; t < T; t += nc, nc = nc % pn->tile_c + 1) {
            nc = SL_MIN(nc, T - t);
            pn->dot(n, pw + (size_t)p * psz, pa + (size_t)t * prow, prow, nc, SL_MIN(SL_PANEL_ROWS, R - p * SL_PANEL_ROWS),
                    y + (size_t)t * ldy + (size_t)p * SL_PANEL_ROWS, ldy);
        }
    for (int t = 0; t < T; t++) {
        for (size_t g = (size_t)R; g < ldy; g++) T_TRUE(isnan(y[(size_t)t * ldy + g]));
        for (int r = 0; r < R; r++) {
            const uint8_t *wr = w + (size_t)r * wrow, *at = a + (size_t)t * arow;
            const float ref = sl_vec_dot_ref(dc->type, n, wr, at), got = y[(size_t)t * ldy + r];
            const double mag = dot_magnitude(dc->type, n, wr, at);
            const double diff = fabs((double)got - ref), rel = mag > 0 ? diff / mag : diff;
            t_checks++;
            if (!(diff <= dc->tol * mag)) {
                T_FAIL_AT("%s %s panel n=%lld row %d of %d, act %d of %d%s: got %.9g, ref %.9g, "
                          "|diff| / sum|w a| = %.3g > %.3g",
                          k->name, tname(dc->type), (long long)n, r, R, t, T, fill >= 0 ? " (extreme)" : "", got, ref,
                          rel, dc->tol);
                t = T; /* one report per call */
                break;
            }
            if (rel > worst) worst = rel;
        }
    }
    free(w);
    free(a);
    free(pa);
    free(pw);
    free(x);
    free(y);
    return worst;
}

static void panels_match_ref_on_every_path_and_type(void)
{
    static const int64_t blocks[] = {1, 2, 3, 7, 28, 129};
    static const int64_t supers[] = {1, 2, 3, 5};
    static const int64_t floats[] = {1, 2, 7, 16, 33, 100, 896, 4099};
    static const int rows[] = {1, 16, 37};
    static const int fills[] = {0x00, 0xFF, 0x80, 0x7F, 0x0F, 0xF0};
    int n_pairs = 0;
    T_EQ_INT(sl_panel_size(SL_TYPE_Q5_K, 256), 0); /* no panel layout */
    T_EQ_INT(sl_panel_size(SL_TYPE_Q4_K, 32), 0);  /* not whole super-blocks */
    T_EQ_INT(sl_panel_size(SL_TYPE_Q4_0, 48), 0);  /* not whole blocks */
    for (int p = 0; p < N_PATHS; p++) {
        const struct sl_kernels *k = path_or_skip(p);
        if (!k) continue;
        for (int c = 0; c < N_DOT; c++) {
            const struct dot_case *dc = &dot_cases[c];
            const struct sl_panel *pn = &k->panel[dc->type];
            if (!pn->dot) continue;
            n_pairs++;
            const int blck = sl_type_traits((uint32_t)dc->type)->blck;
            const int64_t *sizes = blck == 32 ? blocks : blck == 1 ? floats : supers;
            const size_t n_sizes = blck == 32  ? sizeof blocks / sizeof blocks[0]
                                   : blck == 1 ? sizeof floats / sizeof floats[0]
                                               : sizeof supers / sizeof supers[0];
            const int64_t n_extreme = blck == 32 ? 7 * 32 : blck == 1 ? 37 : 3 * blck;
            T_TRUE(pn->pack != NULL && pn->act_size != NULL && pn->tile_c >= 1);
            T_TRUE(sl_panel_size(dc->type, blck) > 0);
            double worst = 0;
            rng_seed((uint64_t)(3000 * dc->type + 11));
            for (size_t b = 0; b < n_sizes; b++)
                for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
                    const double e = check_panels(k, dc, sizes[b] * blck, rows[r], 9, -1, 0);
                    if (e > worst) worst = e;
                }
            for (size_t f = 0; f < sizeof fills / sizeof fills[0]; f++) {
                check_panels(k, dc, n_extreme, 19, 3, fills[f], 1.0f);
                check_panels(k, dc, n_extreme, 19, 3, fills[f], -1.0f);
            }
            if (verbose)
                fprintf(stderr, "     %-6s %-5s panels worst |diff| / sum|w a| = %.3g (budget %.3g)\n", k->name,
                        tname(dc->type), worst, dc->tol);
        }
    }
    if (verbose) fprintf(stderr, "     %d (path, type) pairs with panels\n", n_pairs);
}

/* The Q5_0 panel layout is the one kernels.h documents: for block 0 of
 * row r, lo = value 4k + j and hi = value 16 + 4k + j (k, j < 4) share
 * quant byte 64 + 2 * 64 + 64k + 4r + j as lo & 7 | hi << 3, and bits 2k,
 * 2k + 1 of upper byte 64 + 4r + j hold lo >> 3. The 5-bit values vary
 * with row and position, so a misplaced bit shows. */
static void q5_0_panel_puts_each_value_in_its_documented_bits(void)
{
    struct sl_block_q5_0 blk[SL_PANEL_ROWS];
    uint8_t val[SL_PANEL_ROWS][32];
    for (int r = 0; r < SL_PANEL_ROWS; r++) {
        uint32_t qh = 0;
        blk[r].d = sl_fp32_to_fp16(1.0f + (float)r);
        for (int v = 0; v < 32; v++) val[r][v] = (uint8_t)((7 * v + 5 * r + 3) % 32);
        for (int v = 0; v < 16; v++) {
            blk[r].qs[v] = (uint8_t)((val[r][v] & 0xF) | (val[r][16 + v] & 0xF) << 4);
            qh |= (uint32_t)(val[r][v] >> 4) << v | (uint32_t)(val[r][16 + v] >> 4) << (16 + v);
        }
        memcpy(blk[r].qh, &qh, 4);
    }
    const size_t psz = sl_panel_size(SL_TYPE_Q5_0, 32);
    T_EQ_INT(psz, 64 + 2 * (64 + 256)); /* one block, padded to a pair */
    uint8_t *pw = aligned_alloc(64, psz);
    if (!pw) return;
    sl_panel_pack(SL_TYPE_Q5_0, blk, sizeof blk[0], SL_PANEL_ROWS, 32, pw);
    for (int r = 0; r < SL_PANEL_ROWS; r++) {
        T_TRUE(memcmp(pw + 2 * r, &blk[r].d, 2) == 0);
        for (int k = 0; k < 4; k++)
            for (int j = 0; j < 4; j++) {
                const int lo = val[r][4 * k + j], hi = val[r][16 + 4 * k + j];
                T_EQ_INT(pw[64 + 2 * 64 + 64 * k + 4 * r + j], (lo & 7) | hi << 3);
                T_EQ_INT(pw[64 + 4 * r + j] >> (2 * k) & 3, lo >> 3);
            }
    }
    /* the second block of the pair reads as zero */
    for (size_t i = 32; i < 64; i++) T_EQ_INT(pw[i], 0);
    for (size_t i = 64 + 64; i < 64 + 128; i++) T_EQ_INT(pw[i], 0);
    for (size_t i = 64 + 128 + 256; i < psz; i++) T_EQ_INT(pw[i], 0);
    free(pw);
}

/* One call of a Q5_0 panel kernel with nc activation rows on a panel of
 * R rows: the first nc x R outputs against sl_vec_dot_ref, the rest of y
 * untouched. Returns nonzero after the first failure (one report). */
static int check_q5_0_call(const struct sl_kernels *k, int64_t n, const uint8_t *pw,
                           const uint8_t *pa, int nc, int R, const uint8_t *w, const uint8_t *a)
{
    const struct sl_panel *pn = &k->panel[SL_TYPE_Q5_0];
    const size_t wrow = sl_row_size(SL_TYPE_Q5_0, n), prow = pn->act_size(n);
    const size_t arow = sl_row_size(sl_type_traits(SL_TYPE_Q5_0)->dot_type, n);
    float y[4 * SL_PANEL_ROWS];
    for (size_t i = 0; i < sizeof y / sizeof y[0]; i++) y[i] = NAN;
    pn->dot(n, pw, pa, prow, nc, R, y, SL_PANEL_ROWS);
    for (int t = 0; t < 4; t++)
        for (int r = 0; r < SL_PANEL_ROWS; r++) {
            const float got = y[t * SL_PANEL_ROWS + r];
            t_checks++;
            if (t >= nc || r >= R) { /* past the rows and activations asked for */
                if (isnan(got)) continue;
                T_FAIL_AT("%s Q5_0 nc=%d R=%d wrote y[%d][%d]", k->name, nc, R, t, r);
                return 1;
            }
            const uint8_t *wr = w + (size_t)r * wrow, *at = a + (size_t)t * arow;
            const float ref = sl_vec_dot_ref(SL_TYPE_Q5_0, n, wr, at);
            const double mag = dot_magnitude(SL_TYPE_Q5_0, n, wr, at);
            if (fabs((double)got - ref) <= SL_TOL_DOT_Q5_0 * mag) continue;
            T_FAIL_AT("%s Q5_0 panel n=%lld nc=%d row %d of %d, act %d: got %.9g, ref %.9g",
                      k->name, (long long)n, nc, r, R, t, got, ref);
            return 1;
        }
    return 0;
}

/* Every activation-row count the Q5_0 panel kernel takes (nc = 1 ..
 * tile_c, each called on its own), on short panels (1, 7 and 15 rows)
 * and odd block counts, against sl_vec_dot_ref. On the scalar path there
 * is no panel kernel: the layout still round-trips there. */
static void q5_0_panels_match_ref_for_every_row_count(void)
{
    static const int64_t blocks[] = {1, 3, 5, 29};
    static const int rows[] = {1, 7, 15, 16};
    const int dt = sl_type_traits(SL_TYPE_Q5_0)->dot_type, T = 4;
    rng_seed(5005);
    for (size_t bi = 0; bi < sizeof blocks / sizeof blocks[0]; bi++)
        for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++) {
            const int64_t n = 32 * blocks[bi];
            const int R = rows[ri];
            const size_t wrow = sl_row_size(SL_TYPE_Q5_0, n), arow = sl_row_size(dt, n);
            uint8_t *w = malloc(wrow * (size_t)R), *a = malloc(arow * T), *back = malloc(wrow);
            uint8_t *pw = aligned_alloc(64, sl_panel_size(SL_TYPE_Q5_0, n));
            float *x = malloc((size_t)n * T * sizeof *x);
            for (int r = 0; r < R; r++) make_weights(SL_TYPE_Q5_0, n, w + (size_t)r * wrow, -1);
            for (int64_t i = 0; i < n * T; i++) x[i] = rng_gauss();
            for (int t = 0; t < T; t++)
                sl_quantize_row_ref(dt, x + (size_t)t * n, a + (size_t)t * arow, n);
            sl_panel_pack(SL_TYPE_Q5_0, w, wrow, R, n, pw);
            for (int r = 0; r < R; r++) {
                sl_panel_unpack_row(SL_TYPE_Q5_0, pw, r, n, back);
                T_TRUE(memcmp(back, w + (size_t)r * wrow, wrow) == 0);
            }
            for (int p = 0; p < N_PATHS; p++) {
                const struct sl_kernels *k = sl_kernels_get(path_names[p]);
                const struct sl_panel *pn = k ? &k->panel[SL_TYPE_Q5_0] : NULL;
                if (!pn || !pn->dot) continue;
                const size_t prow = pn->act_size(n);
                uint8_t *pa = malloc(prow * T);
                for (int t = 0; t < T; t++) pn->pack(x + (size_t)t * n, pa + (size_t)t * prow, n);
                for (int nc = 1; nc <= pn->tile_c && nc <= T; nc++)
                    if (check_q5_0_call(k, n, pw, pa, nc, R, w, a)) break;
                free(pa);
            }
            free(w);
            free(a);
            free(pw);
            free(back);
            free(x);
        }
}

/* An AVX2 machine repacks the same quantized types as an AVX-512 one:
 * the types with a panel layout (Q4_0, Q5_0, Q8_0, Q4_K, Q6_K: the last
 * is in every Q4_K_M file) have a panel kernel on both paths, so none of
 * them falls back to per-row dots on the more common CPU. */
static void avx2_has_a_panel_kernel_for_every_quantized_panel_layout(void)
{
    const int types[] = {SL_TYPE_Q4_0, SL_TYPE_Q5_0, SL_TYPE_Q8_0, SL_TYPE_Q4_K, SL_TYPE_Q6_K};
    const struct sl_kernels *k = sl_kernels_get("avx2");
    if (!k) {
        fprintf(stderr, "     path avx2: this CPU cannot run it, skipped\n");
        return;
    }
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        const int blck = sl_type_traits((uint32_t)types[i])->blck;
        t_checks++;
        if (!sl_panel_size(types[i], blck)) T_FAIL_AT("%s has no panel layout", tname(types[i]));
        if (!k->panel[types[i]].dot) T_FAIL_AT("the avx2 table has no %s panel kernel", tname(types[i]));
    }
}

/* sl_op_matmul on a repacked tensor gives what it gives on the file layout,
 * for one activation row (decode) and several (prefill), and ignores a
 * panel whose source is no longer the tensor's data (a LoRA merge);
 * sl_op_get_row reads the same values from the panels. */
static void matmul_uses_panels_only_while_they_match_the_weights(void)
{
    const struct sl_kernels *k = sl_kernels();
    const int types[] = {SL_TYPE_Q4_0, SL_TYPE_Q5_0, SL_TYPE_Q8_0, SL_TYPE_Q4_K, SL_TYPE_Q6_K, SL_TYPE_F16, SL_TYPE_BF16};
    struct sl_pool *pool = sl_pool_init(2);
    T_TRUE(pool != NULL);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0] && pool; ti++) {
        const int type = types[ti];
        if (!k->panel[type].dot) {
            if (verbose) fprintf(stderr, "     the %s table has no %s panel kernel\n", k->name, tname(type));
            continue;
        }
        const int blck = sl_type_traits((uint32_t)type)->blck;
        const int64_t n = blck == 256 ? 2 * 256 : blck == 32 ? 7 * 32 : 101;
        const int R = 53, T = 9, np = (R + 15) / 16;
        const size_t wrow = sl_row_size(type, n), psz = sl_panel_size(type, n);
        uint8_t *w = malloc(wrow * R), *pw = aligned_alloc(64, psz * np);
        float *x = malloc((size_t)n * T * sizeof *x), *y0 = malloc((size_t)R * T * sizeof *y0);
        float *y1 = malloc((size_t)R * T * sizeof *y1);
        rng_seed(77 + (uint64_t)type);
        for (int r = 0; r < R; r++) make_weights(type, n, w + (size_t)r * wrow, -1);
        for (int p = 0; p < np; p++) sl_panel_pack(type, w + (size_t)p * 16 * wrow, wrow, SL_MIN(16, R - 16 * p), n, pw + (size_t)p * psz);
        for (int64_t i = 0; i < n * T; i++) x[i] = rng_gauss();
        struct sl_tensor plain = {.data = w, .type = type, .ne = {n, R, 1, 1}, .row_size = wrow};
        struct sl_tensor packed = plain, stale = plain;
        packed.panel = pw;
        packed.panel_src = w;
        stale.panel = pw;
        stale.panel_src = w + 1; /* as after a merge replaced data */
        /* embedding lookups of a tied output read the panels */
        float *g0 = malloc((size_t)n * sizeof *g0), *g1 = malloc((size_t)n * sizeof *g1);
        for (int r = 0; r < R; r++) {
            sl_op_get_row(&plain, r, g0);
            sl_op_get_row(&packed, r, g1);
            T_TRUE(memcmp(g0, g1, (size_t)n * sizeof *g0) == 0);
        }
        free(g0);
        free(g1);
        void *qbuf = malloc(sl_matmul_qbuf_size(&packed) * T);
        for (int nt = 1; nt <= T; nt += T - 1) {
            sl_op_matmul(pool, &plain, x, y0, nt, qbuf);
            sl_op_matmul(pool, &packed, x, y1, nt, qbuf);
            /* same products, other summation order: compare against the
             * largest output (single outputs may cancel to near zero) */
            double worst = 0, big = 0;
            for (int i = 0; i < R * nt; i++) big = fmax(big, fabs((double)y0[i]));
            for (int i = 0; i < R * nt; i++) worst = fmax(worst, fabs((double)y1[i] - y0[i]) / big);
            if (!(worst < 1e-5))
                T_FAIL_AT("%s matmul through panels, T=%d: max |diff| / max |y| = %.3g", tname(type), nt, worst);
            memset(y1, 0, (size_t)R * T * sizeof *y1);
            sl_op_matmul(pool, &stale, x, y1, nt, qbuf);
            T_TRUE(memcmp(y0, y1, (size_t)R * nt * sizeof *y0) == 0); /* the file layout, bit for bit */
        }
        free(qbuf);
        free(w);
        free(pw);
        free(x);
        free(y0);
        free(y1);
    }
    sl_pool_free(pool);
}

/* Real scale and quant distributions: every 2-D tensor of the llama.cpp
 * files (first 64 rows) against Gaussian activations. */
static void vec_dot_matches_ref_on_llama_cpp_weights(void)
{
    static const char *const files[] = {"F32",  "F16",  "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0",
                                        "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q4_K_M"};
    static const char *const archs[] = {"llama", "qwen2"};
    double worst[N_PATHS][SL_TYPE_COUNT] = {{0}};
    int opened = 0;
    for (size_t ar = 0; ar < sizeof archs / sizeof archs[0]; ar++) {
        for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
            char rel[128];
            snprintf(rel, sizeof rel, "conformance/models/%s-s1-%s.gguf", archs[ar], files[f]);
            const char *path = t_asset(rel);
            struct sl_gguf *g = NULL;
            struct sl_err err = {0};
            if (!path || access(path, R_OK) != 0 || sl_gguf_open(&g, path, &err) != 0) continue;
            opened++;
            for (uint64_t i = 0; i < g->n_tensors; i++) {
                const struct sl_gguf_tensor *t = &g->tensors[i];
                const struct sl_type_traits *tr = sl_type_traits(t->type);
                if (t->n_dims != 2 || !tr || !tr->weight_ok) continue;
                const struct dot_case *dc = NULL;
                for (int c = 0; c < N_DOT; c++)
                    if (dot_cases[c].type == (int)t->type) dc = &dot_cases[c];
                if (!dc) continue;
                const int64_t n = t->ne[0];
                const size_t rs = sl_row_size((int)t->type, n);
                void *a = malloc((size_t)n * 4);
                char what[160];
                snprintf(what, sizeof what, "%s '%.*s'", rel, (int)t->name.len, t->name.ptr);
                rng_seed(i + 1);
                make_acts((int)t->type, n, a, 0, 0);
                for (int p = 0; p < N_PATHS; p++) {
                    const struct sl_kernels *k = sl_kernels_get(path_names[p]);
                    if (!k) continue;
                    for (int64_t r = 0; r < t->ne[1] && r < 64; r++) {
                        const double e = check_dot(k, dc, n, (const uint8_t *)t->data + (size_t)r * rs, a, what);
                        if (e > worst[p][t->type]) worst[p][t->type] = e;
                    }
                }
                free(a);
            }
            sl_gguf_free(g);
        }
    }
    if (!opened) t_skip("conformance/models not found (../shared/assets absent?)");
    for (int p = 0; verbose && p < N_PATHS; p++)
        for (int c = 0; c < N_DOT; c++)
            if (worst[p][dot_cases[c].type] > 0)
                fprintf(stderr, "     %-6s %-5s worst on llama.cpp weights %.3g\n", path_names[p],
                        tname(dot_cases[c].type), worst[p][dot_cases[c].type]);
}

/* ------------------------------------------------------------------------ */
/* quantize_row                                                              */
/* ------------------------------------------------------------------------ */

static int is_f16_nan(uint16_t h)
{
    return (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
}

/* Compare fast and reference output byte for byte (F16: NaN stays NaN). */
static void check_quantize(const struct sl_kernels *k, int type, const float *x, int64_t n,
                           const char *what)
{
    const size_t size = sl_row_size(type, n);
    uint8_t *want = malloc(size), *got = malloc(size);
    memset(want, 0xAA, size);
    memset(got, 0x55, size);
    sl_quantize_row_ref(type, x, want, n);
    k->quantize_row(type, x, got, n);
    t_checks++;
    for (size_t i = 0; i < size; i++) {
        if (got[i] == want[i]) continue;
        if (type == SL_TYPE_F16) {
            uint16_t hg, hw;
            memcpy(&hg, got + (i & ~(size_t)1), 2);
            memcpy(&hw, want + (i & ~(size_t)1), 2);
            if (is_f16_nan(hg) && is_f16_nan(hw)) continue;
        }
        T_FAIL_AT("%s quantize %s n=%lld (%s): byte %zu is 0x%02x, ref 0x%02x", k->name, tname(type),
                  (long long)n, what, i, got[i], want[i]);
        break;
    }
    free(want);
    free(got);
}

static void quantize_row_is_bit_exact_for_the_dot_types(void)
{
    static const int types[] = {SL_TYPE_Q8_0, SL_TYPE_Q8_1, SL_TYPE_Q8_K, SL_TYPE_F16, SL_TYPE_BF16};
    static const float scales[] = {1e-3f, 1.0f, 37.0f, 1e4f};
    const int64_t max_n = 5 * 256 + 16;
    float *x = malloc((size_t)max_n * sizeof *x);
    for (int p = 0; p < N_PATHS; p++) {
        const struct sl_kernels *k = path_or_skip(p);
        if (!k) continue;
        rng_seed(77);
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
            const int type = types[t];
            const int blck = sl_type_traits((uint32_t)type)->blck;
            for (int64_t nb = 1; nb <= 5; nb++) {
                /* floats go at odd lengths too, to reach the tails */
                const int64_t n = blck == 1 ? nb * 256 + 2 * nb - 1 : nb * (blck == 32 ? 8 : 1) * blck;
                for (size_t s = 0; s < sizeof scales / sizeof scales[0]; s++) {
                    for (int64_t i = 0; i < n; i++) x[i] = rng_gauss() * scales[s];
                    check_quantize(k, type, x, n, "Gaussian");
                }
                /* rounding ties: a block whose largest magnitude is 127
                 * (Q8_0/Q8_1: d = 1) and whose values sit on .5 */
                for (int64_t i = 0; i < n; i++) x[i] = (float)((i % 254) - 127) + (i % 3 ? 0.5f : 0.0f);
                for (int64_t b = 0; b < n; b += 32) x[b] = b % 64 ? 127.0f : -127.0f;
                check_quantize(k, type, x, n, "ties");
                /* zero blocks, and a maximum repeated with both signs */
                for (int64_t i = 0; i < n; i++) x[i] = (i / 32) % 2 ? 0.0f : rng_gauss();
                for (int64_t i = 5; i + 9 < n; i += 64) x[i] = 4.0f, x[i + 9] = -4.0f;
                check_quantize(k, type, x, n, "zeros and repeated maxima");
            }
            if (blck == 1) {
                /* every bit pattern class: subnormals, inf, NaN, ties */
                for (int64_t i = 0; i < max_n; i++) x[i] = from_bits((uint32_t)rng_u64());
                check_quantize(k, type, x, max_n - 3, "random bits");
                for (int64_t i = 0; i < max_n; i++) x[i] = from_bits(0x3f801000u + (uint32_t)(i << 12));
                check_quantize(k, type, x, max_n - 1, "f16 ties");
                for (int64_t i = 0; i < max_n; i++) x[i] = from_bits(0x3f808000u + (uint32_t)(i << 16));
                check_quantize(k, type, x, max_n, "bf16 ties");
                for (int64_t i = 0; i < max_n; i++) x[i] = from_bits(0x33000000u + (uint32_t)(i * 0x3001));
                check_quantize(k, type, x, max_n, "f16 subnormal range");
            }
        }
    }
    free(x);
}

/* ------------------------------------------------------------------------ */
/* fp32 -> fp16 rows                                                         */
/* ------------------------------------------------------------------------ */

static void fp32_to_fp16_row_matches_ref_on_every_path(void)
{
    static const int64_t sizes[] = {1, 3, 7, 13, 64, 80, 96, 128, 129, 256, 1000};
    const int64_t max_n = 1000;
    uint16_t *h_got = malloc((size_t)max_n * 2), *h_want = malloc((size_t)max_n * 2);
    float *q = malloc((size_t)max_n * 4);
    for (int p = 0; p < N_PATHS; p++) {
        const struct sl_kernels *k = path_or_skip(p);
        if (!k) continue;
        rng_seed(5);
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            const int64_t n = sizes[s];
            /* bit for bit (random finite bits and Gaussians) */
            for (int64_t i = 0; i < n; i++) {
                uint32_t u = (uint32_t)rng_u64();
                if ((u & 0x7f800000u) == 0x7f800000u) u &= ~0x00800000u; /* no NaN or inf */
                q[i] = i % 2 ? from_bits(u) : rng_gauss();
            }
            sl_fp32_to_fp16_row_ref(n, q, h_want);
            k->fp32_to_fp16_row(n, q, h_got);
            t_checks++;
            for (int64_t i = 0; i < n; i++)
                if (h_got[i] != h_want[i]) {
                    T_FAIL_AT("%s fp32_to_fp16_row n=%lld: [%lld] %g -> 0x%04x, ref 0x%04x", k->name,
                              (long long)n, (long long)i, q[i], h_got[i], h_want[i]);
                    break;
                }
        }
    }
    free(h_got);
    free(h_want);
    free(q);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--print-path") == 0) {
        printf("path %s\n", sl_kernels()->name);
        return 0;
    }
    const char *v = getenv("SL_TEST_VERBOSE");
    verbose = v && *v && *v != '0';
    T_RUN(every_table_is_complete_and_named);
    T_RUN(sluice_cpu_forces_a_path_and_refuses_unknown_ones_with_a_warning);
    T_RUN(vec_dot_matches_ref_on_every_path_and_type);
    T_RUN(vec_dot_survives_extreme_blocks_without_saturating);
    T_RUN(vec_dot_matches_ref_on_llama_cpp_weights);
    T_RUN(mm_tiles_match_ref_on_every_path_and_type);
    T_RUN(panels_match_ref_on_every_path_and_type);
    T_RUN(q5_0_panel_puts_each_value_in_its_documented_bits);
    T_RUN(q5_0_panels_match_ref_for_every_row_count);
    T_RUN(avx2_has_a_panel_kernel_for_every_quantized_panel_layout);
    T_RUN(matmul_uses_panels_only_while_they_match_the_weights);
    T_RUN(quantize_row_is_bit_exact_for_the_dot_types);
    T_RUN(fp32_to_fp16_row_matches_ref_on_every_path);
    return t_done();
}
