/*
 * bench_dot.c - matrix-vector throughput of every vec_dot kernel, per type
 * and per dispatch path (scalar, avx2, avx512), single thread.
 *
 * For each weight type it fills a ROWS x COLS matrix (default 4096 x 4096)
 * with random blocks (valid fp16 scales), quantizes one random activation
 * row to the type's dot type, and times whole matrix-vector products (one
 * vec_dot per row) until --ms milliseconds have passed. It reports the
 * weight bytes streamed per second (GB/s = 1e9 bytes/s), the time of one
 * product, and the speed-up over the scalar path. Activation quantization
 * is not timed (it is once per product, O(COLS)).
 *
 * Where a path has a tile kernel for the type (kernels.h struct sl_mm), two
 * more rows follow: "tile T=1" (the same matrix-vector product through
 * 1-row tiles, as decode does, GB/s of weights) and "tile T=64" (a 64-row activation block
 * through 4x4 tiles, as prefill does; reported as GMAC/s, multiply-adds of
 * weights x activations per second, and ms per 64-row product).
 *
 * The numbers are rough: a shared machine, and a 4096 x 4096 quantized
 * matrix (9 to 64 MiB) may sit partly in the last-level cache. Use
 * --rows to go past it. Timing is never a test; see docs/internals/kernels.md.
 *
 *   bench_dot [--path scalar|avx2|avx512] [--type q4_k] [--rows N] [--cols N]
 *             [--ms N] [--json]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "engine/kernels.h"
#include "engine/quant.h"

static const int bench_types[] = {SL_TYPE_Q4_0, SL_TYPE_Q4_1, SL_TYPE_Q5_0, SL_TYPE_Q5_1, SL_TYPE_Q8_0,
                                  SL_TYPE_Q2_K, SL_TYPE_Q3_K, SL_TYPE_Q4_K, SL_TYPE_Q5_K, SL_TYPE_Q6_K,
                                  SL_TYPE_F16,  SL_TYPE_BF16, SL_TYPE_F32};
#define N_BENCH_TYPES (int)(sizeof bench_types / sizeof bench_types[0])

static const char *const path_names[] = {"scalar", "avx2", "avx512"};
#define N_PATHS 3

static uint64_t rng_state = 0x243F6A8885A308D3ull;

static uint64_t rng_u64(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static float rng_float(void) /* in [-1, 1) */
{
    return (float)((double)(rng_u64() >> 11) / 4503599627370496.0 - 1.0);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Random bytes, with the fp16 scale fields of every block set to small
 * finite values (the first bytes of the struct for most types, the last
 * for Q2_K, Q3_K and Q6_K). */
static void fill_weights(int type, void *w, int64_t rows, int64_t cols)
{
    const struct sl_type_traits *tr = sl_type_traits((uint32_t)type);
    const size_t row = sl_row_size(type, cols);
    if (!tr->is_quant) {
        float *x = malloc((size_t)cols * sizeof *x);
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t i = 0; i < cols; i++) x[i] = rng_float();
            sl_quantize_row_ref(type, x, (uint8_t *)w + (size_t)r * row, cols);
        }
        free(x);
        return;
    }
    uint8_t *b = w;
    const size_t total = (size_t)rows * row;
    for (size_t i = 0; i + 8 <= total; i += 8) {
        uint64_t u = rng_u64();
        memcpy(b + i, &u, 8);
    }
    const uint16_t d = sl_fp32_to_fp16(0.01f), m = sl_fp32_to_fp16(-0.02f);
    for (size_t off = 0; off + tr->type_size <= total; off += tr->type_size) {
        uint8_t *blk = b + off;
        switch (type) {
        case SL_TYPE_Q2_K: ((struct sl_block_q2_K *)blk)->d = d, ((struct sl_block_q2_K *)blk)->dmin = d; break;
        case SL_TYPE_Q3_K: ((struct sl_block_q3_K *)blk)->d = d; break;
        case SL_TYPE_Q6_K: ((struct sl_block_q6_K *)blk)->d = d; break;
        case SL_TYPE_Q4_1:
        case SL_TYPE_Q5_1:
        case SL_TYPE_Q4_K:
        case SL_TYPE_Q5_K: memcpy(blk, &d, 2), memcpy(blk + 2, &m, 2); break;
        default: memcpy(blk, &d, 2); break; /* Q4_0, Q5_0, Q8_0 */
        }
    }
}

struct result {
    double gbps, ms;
};

static struct result run_one(const struct sl_kernels *k, int type, const void *w, const void *a, int64_t rows,
                             int64_t cols, double min_s, float *y)
{
    const size_t row = sl_row_size(type, cols);
    const sl_vec_dot_fn dot = k->vec_dot[type];
    /* one warm-up product, then whole products until min_s has passed */
    for (int64_t r = 0; r < rows; r++) y[r] = dot(cols, (const uint8_t *)w + (size_t)r * row, a);
    int reps = 0;
    const double t0 = now_s();
    double t;
    do {
        for (int64_t r = 0; r < rows; r++) y[r] = dot(cols, (const uint8_t *)w + (size_t)r * row, a);
        reps++;
        t = now_s() - t0;
    } while (t < min_s);
    const double bytes = (double)row * (double)rows * reps;
    return (struct result){bytes / t / 1e9, 1e3 * t / reps};
}

/* Weights x T activation rows through the tile kernel, row tiles outside,
 * activation tiles inside (as ops.c). */
static struct result run_tile(const struct sl_kernels *k, int type, const void *w, const void *a, int64_t rows,
                              int64_t cols, int T, double min_s, float *y)
{
    const struct sl_mm *mm = &k->mm[type];
    const size_t row = sl_row_size(type, cols), arow = mm->act_size(cols);
    const int tile_r = T == 1 ? 1 : mm->tile_r; /* as ops.c: one weight stream at T = 1 */
    int reps = 0;
    double t0 = 0, t = 0;
    for (int pass = -1; pass < 0 || t < min_s; pass++) {
        if (pass == 0) t0 = now_s();
        for (int64_t r = 0; r < rows; r += tile_r) {
            const int nr = rows - r < tile_r ? (int)(rows - r) : tile_r;
            for (int c = 0; c < T; c += mm->tile_c)
                mm->tile(cols, (const uint8_t *)w + (size_t)r * row, row, nr, (const uint8_t *)a + (size_t)c * arow,
                         arow, T - c < mm->tile_c ? T - c : mm->tile_c, y + (size_t)c * rows + r, (size_t)rows);
        }
        if (pass >= 0) reps++;
        t = now_s() - t0;
        if (pass < 0) t = 0;
    }
    const double units = T == 1 ? (double)row * (double)rows : (double)rows * (double)cols * T;
    return (struct result){units * reps / t / 1e9, 1e3 * t / reps};
}

/* Weights repacked into 16-row panels x T activation rows through the
 * panel kernel (as ops.c: panels outside, activation tiles inside). */
static struct result run_panel(const struct sl_kernels *k, int type, const void *pw, const void *a, int64_t rows,
                               int64_t cols, int T, double min_s, float *y)
{
    const struct sl_panel *pn = &k->panel[type];
    const size_t psz = sl_panel_size(type, cols), arow = pn->act_size(cols);
    const int64_t np = (rows + SL_PANEL_ROWS - 1) / SL_PANEL_ROWS;
    int reps = 0;
    double t0 = 0, t = 0;
    for (int pass = -1; pass < 0 || t < min_s; pass++) {
        if (pass == 0) t0 = now_s();
        for (int64_t p = 0; p < np; p++) {
            const int64_t r = p * SL_PANEL_ROWS;
            const int nr = rows - r < SL_PANEL_ROWS ? (int)(rows - r) : SL_PANEL_ROWS;
            for (int c = 0; c < T; c += pn->tile_c)
                pn->dot(cols, (const uint8_t *)pw + (size_t)p * psz, (const uint8_t *)a + (size_t)c * arow, arow,
                        T - c < pn->tile_c ? T - c : pn->tile_c, nr, y + (size_t)c * rows + r, (size_t)rows);
        }
        if (pass >= 0) reps++;
        t = now_s() - t0;
        if (pass < 0) t = 0;
    }
    const size_t row = sl_row_size(type, cols);
    const double units = T == 1 ? (double)row * (double)rows : (double)rows * (double)cols * T;
    return (struct result){units * reps / t / 1e9, 1e3 * t / reps};
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_dot [--path scalar|avx2|avx512] [--type NAME] [--rows N] [--cols N] "
                    "[--ms N] [--json]\n");
}

int main(int argc, char **argv)
{
    const char *only_path = NULL;
    int only_type = -1, json = 0;
    int64_t rows = 4096, cols = 4096, ms = 200;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--json") == 0) {
            json = 1;
            continue;
        }
        if (!val) {
            usage();
            return 2;
        }
        i++;
        if (strcmp(arg, "--path") == 0) {
            only_path = val;
        } else if (strcmp(arg, "--type") == 0) {
            only_type = sl_type_from_name(val);
            const struct sl_type_traits *tr = only_type >= 0 ? sl_type_traits((uint32_t)only_type) : NULL;
            if (!tr || !tr->weight_ok) {
                fprintf(stderr, "bench_dot: '%s' is not a weight type\n", val);
                return 2;
            }
        } else if (strcmp(arg, "--rows") == 0 ? parse_i64(val, 1, 1 << 20, &rows) != 0
                   : strcmp(arg, "--cols") == 0 ? parse_i64(val, 256, 1 << 20, &cols) != 0 || cols % 256
                   : strcmp(arg, "--ms") == 0   ? parse_i64(val, 1, 600000, &ms) != 0
                                                : 1) {
            fprintf(stderr, "bench_dot: bad option %s %s (cols: a multiple of 256)\n", arg, val);
            usage();
            return 2;
        }
    }

    size_t max_row = 0;
    for (int t = 0; t < N_BENCH_TYPES; t++) {
        const size_t r = sl_row_size(bench_types[t], cols);
        if (r > max_row) max_row = r;
    }
    void *w = malloc(max_row * (size_t)rows);
    void *a = malloc((size_t)cols * 4);
    enum { TILE_T = 64 };
    void *pa = malloc((size_t)cols * 4 * TILE_T); /* packed activation rows (< 8 bytes per value) */
    float *x = malloc((size_t)cols * sizeof *x * TILE_T), *y = malloc((size_t)rows * sizeof *y * TILE_T);
    if (!w || !a || !pa || !x || !y) {
        fprintf(stderr, "bench_dot: out of memory for a %lld x %lld matrix\n", (long long)rows, (long long)cols);
        return 1;
    }
    for (int64_t i = 0; i < cols * TILE_T; i++) x[i] = rng_float();

    char date[32];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d", gmtime(&now));
    printf("bench_dot: %lld x %lld matrix-vector, 1 thread, >= %lld ms per cell, %s, default path %s\n\n",
           (long long)rows, (long long)cols, (long long)ms, date, sl_kernels()->name);
    printf("| type | path | GB/s | ms / product | vs scalar |\n|---|---|---:|---:|---:|\n");
    char js[16384];
    size_t jn = (size_t)snprintf(js, sizeof js, "{\"bench\":\"bench_dot\",\"date\":\"%s\",\"rows\":%lld,\"cols\":%lld,"
                                                "\"results\":[",
                                 date, (long long)rows, (long long)cols);
    int first = 1;
    for (int t = 0; t < N_BENCH_TYPES; t++) {
        const int type = bench_types[t];
        if (only_type >= 0 && type != only_type) continue;
        const struct sl_type_traits *tr = sl_type_traits((uint32_t)type);
        fill_weights(type, w, rows, cols);
        if (tr->dot_type == SL_TYPE_F32) memcpy(a, x, (size_t)cols * sizeof *x);
        else sl_quantize_row_ref(tr->dot_type, x, a, cols);
        double scalar_gbps = 0;
        for (int p = 0; p < N_PATHS; p++) {
            if (only_path && strcmp(only_path, path_names[p]) != 0) continue;
            const struct sl_kernels *k = sl_kernels_get(path_names[p]);
            if (!k) {
                printf("| %s | %s | - | - | (not on this CPU) |\n", tr->name, path_names[p]);
                continue;
            }
            const struct result r = run_one(k, type, w, a, rows, cols, (double)ms / 1e3, y);
            if (p == 0) scalar_gbps = r.gbps;
            char ratio[32] = "-";
            if (scalar_gbps > 0) snprintf(ratio, sizeof ratio, "%.1fx", r.gbps / scalar_gbps);
            printf("| %s | %s | %.2f | %.3f | %s |\n", tr->name, path_names[p], r.gbps, r.ms, ratio);
            fflush(stdout);
            if (jn < sizeof js)
                jn += (size_t)snprintf(js + jn, sizeof js - jn, "%s{\"type\":\"%s\",\"path\":\"%s\",\"gbps\":%.3f,\"ms\":%.4f}",
                                       first ? "" : ",", tr->name, path_names[p], r.gbps, r.ms);
            first = 0;
            if (k->panel[type].dot && k->mm[type].tile) {
                /* panels against 1-row tiles (decode) and 4x4 tiles (prefill),
                 * alternated AB_ROUNDS times in this process: medians and
                 * the ratio of medians, since the machine is shared */
                enum { AB_ROUNDS = 7 };
                const struct sl_panel *pn = &k->panel[type];
                const size_t psz = sl_panel_size(type, cols), arow = k->mm[type].act_size(cols);
                const int64_t np = (rows + SL_PANEL_ROWS - 1) / SL_PANEL_ROWS;
                /* huge pages where the kernel gives them, as model.c asks for */
                const size_t pw_size = (psz * (size_t)np + ((size_t)2 << 20) - 1) / ((size_t)2 << 20) * ((size_t)2 << 20);
                void *pw = aligned_alloc((size_t)2 << 20, pw_size);
#ifdef MADV_HUGEPAGE
                if (pw && getenv("BENCH_NO_THP") == NULL) (void)madvise(pw, pw_size, MADV_HUGEPAGE);
#endif
                void *pq = malloc(pn->act_size(cols) * TILE_T);
                for (int64_t pi = 0; pi < np; pi++) {
                    const int64_t r0 = pi * SL_PANEL_ROWS;
                    sl_panel_pack(type, (const uint8_t *)w + (size_t)r0 * sl_row_size(type, cols), sl_row_size(type, cols),
                                  rows - r0 < SL_PANEL_ROWS ? (int)(rows - r0) : SL_PANEL_ROWS, cols,
                                  (uint8_t *)pw + (size_t)pi * psz);
                }
                for (int c = 0; c < TILE_T; c++) {
                    pn->pack(x + (size_t)c * cols, (uint8_t *)pq + (size_t)c * pn->act_size(cols), cols);
                    k->mm[type].pack(x + (size_t)c * cols, (uint8_t *)pa + (size_t)c * arow, cols);
                }
                for (int T = 1; T <= TILE_T; T += TILE_T - 1) {
                    double vt[AB_ROUNDS], vp[AB_ROUNDS];
                    for (int i = 0; i < AB_ROUNDS; i++) {
                        vt[i] = run_tile(k, type, w, pa, rows, cols, T, (double)ms / 1e3 / AB_ROUNDS, y).gbps;
                        vp[i] = run_panel(k, type, pw, pq, rows, cols, T, (double)ms / 1e3 / AB_ROUNDS, y).gbps;
                    }
                    qsort(vt, AB_ROUNDS, sizeof *vt, cmp_double);
                    qsort(vp, AB_ROUNDS, sizeof *vp, cmp_double);
                    printf("| %s | %s panel T=%d | %.2f %s | A/B x%d | %.2fx of tile (median %.2f) |\n", tr->name,
                           path_names[p], T, vp[AB_ROUNDS / 2], T == 1 ? "GB/s" : "GMAC/s", AB_ROUNDS,
                           vp[AB_ROUNDS / 2] / vt[AB_ROUNDS / 2], vt[AB_ROUNDS / 2]);
                }
                free(pw);
                free(pq);
            }
            if (!k->mm[type].tile) continue;
            const size_t arow = k->mm[type].act_size(cols);
            for (int c = 0; c < TILE_T; c++) k->mm[type].pack(x + (size_t)c * cols, (uint8_t *)pa + (size_t)c * arow, cols);
            for (int T = 1; T <= TILE_T; T += TILE_T - 1) {
                const struct result rt = run_tile(k, type, w, pa, rows, cols, T, (double)ms / 1e3, y);
                if (T == 1) {
                    /* and the two alternated in this process: the ratio
                     * that decides the tile's min_t */
                    enum { AB = 7 };
                    double vr[AB], vt[AB];
                    for (int i = 0; i < AB; i++) {
                        vr[i] = run_one(k, type, w, a, rows, cols, (double)ms / 1e3 / AB, y).gbps;
                        vt[i] = run_tile(k, type, w, pa, rows, cols, 1, (double)ms / 1e3 / AB, y).gbps;
                    }
                    qsort(vr, AB, sizeof *vr, cmp_double);
                    qsort(vt, AB, sizeof *vt, cmp_double);
                    printf("| %s | %s tile T=1 | %.2f | %.3f | %.2fx of row dot (A/B x%d: %.2fx) |\n", tr->name,
                           path_names[p], rt.gbps, rt.ms, rt.gbps / r.gbps, AB, vt[AB / 2] / vr[AB / 2]);
                }
                else
                    printf("| %s | %s tile T=%d | %.1f GMAC/s | %.3f | |\n", tr->name, path_names[p], T, rt.gbps, rt.ms);
                if (jn < sizeof js)
                    jn += (size_t)snprintf(js + jn, sizeof js - jn,
                                           ",{\"type\":\"%s\",\"path\":\"%s\",\"tile_T\":%d,\"%s\":%.3f,\"ms\":%.4f}",
                                           tr->name, path_names[p], T, T == 1 ? "gbps" : "gmacs", rt.gbps, rt.ms);
            }
        }
    }
    if (json && jn < sizeof js) printf("\n%s]}\n", js);
    free(w);
    free(a);
    free(pa);
    free(x);
    free(y);
    return 0;
}
