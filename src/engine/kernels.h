/*
 * kernels.h - the dispatch table of hot kernels (engine layer).
 *
 * sl_kernels() returns the table for the best instruction set this CPU has
 * (chosen once, at first use; SLUICE_CPU=scalar|avx2|avx512 forces one, and
 * a path the CPU cannot run falls back to the best one with a warning on
 * stderr). Every entry has a scalar reference twin (sl_vec_dot_ref and
 * sl_quantize_row_ref in quant.c, the sl_*_ref attention helpers below), and
 * tests/unit/test_kernels.c walks every path against it. See
 * docs/internals/kernels.md for the paths, the error budgets and why the
 * fast paths may differ from the references at all.
 */
#ifndef SL_KERNELS_H
#define SL_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "quant.h"

/* Dot of n weights (a row of the table's type) with n activations already
 * converted to that type's dot type. The int8 activations (Q8_0, Q8_1, Q8_K
 * qs) must lie in -127..127, as every quantizer here writes them: the SIMD
 * paths multiply |w| by a sign-adjusted activation, and -(-128) overflows. */
typedef float (*sl_vec_dot_fn)(int64_t n, const void *w, const void *a);

/*
 * Matrix tiles (sl_op_matmul). For a weight type with a tile kernel, the
 * activation rows are first packed by `pack` (act_size(n) bytes per row of n
 * values, a layout private to the table), then
 *     tile(n, w, w_stride, nr, a, a_stride, nc, y, ldy)
 * writes y[c * ldy + r] = dot(weight row r, activation row c) for r < nr and
 * c < nc (nr <= tile_r, nc <= tile_c; weight row r at w + r * w_stride,
 * packed activation row c at a + c * a_stride). The weights are decoded once
 * per tile and used for every activation row in it. pack and tile touch
 * only their arguments (thread-safe on disjoint outputs).
 *
 * The scalar twin is sl_vec_dot_ref on the type's dot type: a packed row
 * holds exactly the quants and scales sl_quantize_row_ref(dot_type) writes,
 * only rearranged, so the two differ by float summation order alone
 * (tests/unit/test_kernels.c checks them with the vec_dot budgets).
 */
typedef void (*sl_mm_tile_fn)(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                              size_t a_stride, int nc, float *y, size_t ldy);

struct sl_mm {
    size_t (*act_size)(int64_t n);                       /* bytes of one packed row of n values */
    void (*pack)(const float *x, void *out, int64_t n); /* n floats -> one packed row */
    sl_mm_tile_fn tile;
    int tile_r, tile_c; /* largest tile: weight rows x activation rows */
    int min_t;          /* use tiles from this many activation rows on; below, vec_dot is as fast */
};

struct sl_kernels {
    const char *name; /* "scalar", "avx2", "avx512" */
    sl_vec_dot_fn vec_dot[SL_TYPE_COUNT];
    /* optional, per weight type: tile == NULL means sl_op_matmul calls
     * vec_dot once per (weight row, activation row) on dot-type rows */
    struct sl_mm mm[SL_TYPE_COUNT];
    /* convert n floats to type (a dot type: F16, BF16, Q8_0, Q8_1, Q8_K;
     * any other type goes to sl_quantize_row_ref) */
    void (*quantize_row)(int type, const float *x, void *out, int64_t n);

    /* attention over the fp16 KV cache (forward.c attn_item, store_kv) */
    float (*dot_f16_f32)(int64_t n, const uint16_t *k, const float *q); /* sum k[i] * q[i] */
    void (*axpy_f16)(int64_t n, float a, const uint16_t *v, float *acc); /* acc += a * v */
    void (*fp32_to_fp16_row)(int64_t n, const float *x, uint16_t *y);   /* round to nearest even */
};

/* The table for this process (see the header comment). Thread-safe. The
 * returned table lives for the whole process; every vec_dot entry of a
 * weight type is non-NULL. */
const struct sl_kernels *sl_kernels(void);

/* The table for one path by name ("scalar", "avx2", "avx512"), or NULL if
 * the name is unknown or this CPU cannot run it. Thread-safe. */
const struct sl_kernels *sl_kernels_get(const char *name);

/* The packed activation layout of the 32-value block tiles (AVX2 and
 * AVX-512 Q4_0, Q5_0 and Q8_0), "q8x4": four Q8_0 blocks per 256-byte group,
 * arranged so that block b fills 128-bit lane b of a 512-bit register:
 * lo[b] = quants 0..15 of block b, hi[b] = quants 16..31, d[b] = its scale
 * (the fp16 value as float) four times, off[b][i] = -k * (sum of
 * lo[b][4i..4i+3] and hi[b][4i..4i+3]) with k the weight type's offset
 * (Q4_0 8, Q5_0 16, Q8_0 128, or 0): the offset term of exactly the 8 values that
 * int32 lane i multiplies, so every lane holds an exact partial sum of
 * w * a and no two lanes cancel in float. A partial last group is
 * zero-filled. */
struct sl_q8x4 {
    int8_t lo[4][16];
    int8_t hi[4][16];
    float d[4][4];
    int32_t off[4][4];
};

/* Bytes of a q8x4 row of n values (n a multiple of 32). */
size_t sl_q8x4_size(int64_t n);

/* Rearrange nb Q8_0 blocks into ceil(nb / 4) q8x4 groups (see above). */
void sl_q8x4_from_q8_0(const struct sl_block_q8_0 *x, int64_t nb, int k, struct sl_q8x4 *out);

/* Scalar references of the attention helpers: float sums in index order,
 * exactly what forward.c computed before the table had these entries. */
float sl_dot_f16_f32_ref(int64_t n, const uint16_t *k, const float *q);
void sl_axpy_f16_ref(int64_t n, float a, const uint16_t *v, float *acc);
void sl_fp32_to_fp16_row_ref(int64_t n, const float *x, uint16_t *y);

#endif
