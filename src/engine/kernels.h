/*
 * kernels.h - the dispatch table of hot kernels (engine layer).
 *
 * sl_kernels() returns the table for the best instruction set this CPU has
 * (chosen once, at first use; SLUICE_CPU=scalar|avx2|avx512 forces one, and
 * a path the CPU cannot run falls back to the best one with a warning on
 * stderr). Every entry has a scalar reference twin (sl_vec_dot_ref and
 * sl_quantize_row_ref in quant.c, the sl_*_ref attention and activation
 * helpers below), and
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

/*
 * Row panels: weights repacked at load (model.c) so that one contiguous
 * stream feeds SL_PANEL_ROWS rows at once. A panel holds rows 16p..16p+15
 * of a Q4_0, Q5_0 or Q8_0 weight (rows past the last one are zero; Q4_K
 * and Q6_K below) as one sequential stream of block pairs: the 16 fp16
 * scales (row order) of block 2j, those of block 2j + 1 (64 bytes), then
 * (Q5_0) the upper bytes of both blocks, then the quants of block 2j and of
 * block 2j + 1. A block's quants are, for every 4-value chunk k, 64
 * bytes = 4 bytes of each of the 16 rows, so one 512-bit load gives
 * int32 lane r the chunk of row r and one vpdpbusd against the four
 * activation bytes broadcast does 64 multiply-adds of 16 rows.
 *   Q4_0: chunk k < 4 holds qs[4k..4k+3] of each row (values 4k.. in the
 *         low nibbles, 16 + 4k.. in the high ones), 256 bytes per block;
 *   Q8_0: chunk k < 8 holds qs[4k..4k+3] ^ 0x80 (w + 128, unsigned), 512
 *         bytes per block;
 *   Q5_0: chunk k < 4 holds, for j < 4, lo & 7 | hi << 3 where lo and hi
 *         are the 5-bit values 4k + j and 16 + 4k + j (0..31), 256 bytes
 *         per block; between the scales and the quants each block's 64
 *         upper bytes: byte 4r + j holds lo >> 3 of chunk k of row r in
 *         bits 2k and 2k + 1.
 * Every load is 64-byte aligned, and for an even number of blocks a panel
 * is exactly the 16 rows' bytes in the file (an odd one adds one zero
 * block). The activations go as struct sl_q8s rows (quantized to Q8_0
 * bit-exactly, with the block sums the offsets need).
 *
 * Q4_K panels go super-block by super-block (2368 bytes for 16 rows, 2.8%
 * more than the file: the 6-bit scales are unpacked): the 16 d, the 16
 * dmin (fp16), the scales as bytes (16 per sub-block j, row order), the
 * mins likewise, then for each sub-block pair g 8 chunks of 64 bytes =
 * qs[32g + 4k .. 32g + 4k + 3] of the 16 rows (low nibbles sub-block 2g,
 * high ones 2g + 1). Q6_K panels (3392 bytes per super-block, +1%): the
 * 16 d padded to 64 bytes, the int8 scales (16 per sub-block j), then for
 * half h and chunk k in order 192 bytes: ql[64h + 4k ..], ql[64h + 32 +
 * 4k ..] and qh[32h + 4k ..] of the 16 rows. Their activations are plain
 * Q8_K rows.
 *
 * F16 and BF16 panels hold, for every value index k, the k-th value of the
 * 16 rows side by side: 32 bytes, row order (an odd n adds one zero
 * slice, so a panel is whole 64-byte lines and otherwise exactly the 16
 * rows' bytes). One 256-bit load and vcvtph2ps (BF16: a zero-extend and
 * a shift) give float lane r = value k of row r, the 16 rows' weights for
 * one FMA against activation value k broadcast; AVX2 takes the two
 * 128-bit halves (rows 0..7, 8..15). Their activations are float rows
 * that went through F16 (BF16) and back, as the matrix tiles'.
 *
 * dot(n, panel, a, a_stride, nc, nr, y, ldy) writes y[c * ldy + r] =
 * dot(row r of the panel, activation row c) for r < nr (<= 16) and c < nc
 * (<= tile_c); activation row c at a + c * a_stride. The scalar twin is
 * sl_vec_dot_ref(type) on the original rows and activations of the type's
 * dot type (tests/unit/test_kernels.c).
 */
#define SL_PANEL_ROWS 16

struct sl_q8s {
    int8_t qs[32]; /* Q8_0's quants */
    float d;       /* Q8_0's fp16 scale as float */
    int32_t sum;   /* sum of qs */
};

struct sl_panel {
    size_t (*act_size)(int64_t n);                      /* bytes of one packed activation row */
    void (*pack)(const float *x, void *out, int64_t n); /* n floats -> sl_q8s (K-quants: Q8_K) rows */
    void (*dot)(int64_t n, const void *panel, const void *a, size_t a_stride, int nc, int nr, float *y,
                size_t ldy);
    int tile_c; /* most activation rows per dot call */
};

/* Bytes of one panel of n values per row (a multiple of 64), or 0 if type
 * has no panel layout. */
size_t sl_panel_size(int type, int64_t n);

/* Repack rows [r0, r0 + nr) (nr <= 16) of a weight in file layout (rows
 * w_stride apart, w pointing at row r0) into one panel at out
 * (sl_panel_size bytes, 64-byte aligned); rows nr..15 become zero. */
void sl_panel_pack(int type, const void *w, size_t w_stride, int nr, int64_t n, void *out);

/* The inverse of sl_panel_pack for row r (< 16) of a panel: its n values
 * in the file's layout (sl_row_size(type, n) bytes at out). */
void sl_panel_unpack_row(int type, const void *panel, int r, int64_t n, void *out);

/* Bytes of a struct sl_q8s row of n values (n a multiple of 32). */
size_t sl_q8s_size(int64_t n);

/* nb Q8_0 blocks to struct sl_q8s. */
void sl_q8s_from_q8_0(const struct sl_block_q8_0 *x, int64_t nb, struct sl_q8s *out);

struct sl_kernels {
    const char *name; /* "scalar", "avx2", "avx512" */
    sl_vec_dot_fn vec_dot[SL_TYPE_COUNT];
    /* optional, per weight type: tile == NULL means sl_op_matmul calls
     * vec_dot once per (weight row, activation row) on dot-type rows */
    struct sl_mm mm[SL_TYPE_COUNT];
    /* convert n floats to type (a dot type: F16, BF16, Q8_0, Q8_1, Q8_K;
     * any other type goes to sl_quantize_row_ref) */
    void (*quantize_row)(int type, const float *x, void *out, int64_t n);
    /* optional, per weight type: dot == NULL means the table has no panel
     * kernel and model.c does not repack that type */
    struct sl_panel panel[SL_TYPE_COUNT];

    /* the fp16 KV cache's rows (forward.c store_kv) */
    void (*fp32_to_fp16_row)(int64_t n, const float *x, uint16_t *y); /* round to nearest even */

    /* the gated FFN (forward.c): g[i] = act(g[i]) * u[i] for i < n, act =
     * SiLU x / (1 + e^-x) or GELU's tanh approximation; the SIMD paths use
     * a polynomial exp (kernels/vmath_avx512.c) */
    void (*silu_mul)(int64_t n, float *g, const float *u);
    void (*gelu_mul)(int64_t n, float *g, const float *u);

    /* attention (forward.c attn_item) for the G query heads of one KV head
     * over the nv cells cells[0..nv) of the fp16 cache, the key (value)
     * row of cell c at k + c * k_stride (v + c * v_stride): the scores
     * out[g * nv + j] = scale * K(cells[j]) . q_g with q_g = q + g * d and
     * their maximum mx[g] (-inf for nv = 0); acc_g =
     * sum_j w[g * nv + j] * V(cells[j]) with acc_g = acc + g * acc_stride
     * (dv values); and the softmax numerators x[i] = e^(x[i] - mx) (every
     * x[i] <= mx, none -inf), returning their sum */
    void (*attn_scores)(int32_t nv, const uint16_t *k, size_t k_stride, const int32_t *cells, const float *q, int G,
                        int64_t d, float scale, float *out, float *mx);
    void (*attn_pv)(int32_t nv, const uint16_t *v, size_t v_stride, const int32_t *cells, const float *w, int G,
                    int64_t dv, float *acc, size_t acc_stride);
    float (*exp_row)(int64_t n, float *x, float mx);
    /* load time (model.c repack, through sl_panel_pack): a F16 or BF16
     * panel of nr rows (sl_panel_pack's contract); 16 x 16 transposes in
     * registers on the SIMD paths (kernels/pack_*.c), bit-identical to
     * sl_panel_pack_f16_ref */
    void (*pack_f16)(const void *w, size_t w_stride, int nr, int64_t n, void *out);
    /* optional, load time: a full panel (16 rows) of Q4_0 or Q8_0 (n a
     * multiple of 64), Q4_K or Q6_K; NULL means sl_panel_pack_ref's loops */
    void (*pack_q)(int type, const void *w, size_t w_stride, int64_t n, void *out);
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
void sl_fp32_to_fp16_row_ref(int64_t n, const float *x, uint16_t *y);

/* Scalar references: sl_panel_pack for every type (sl_panel_pack itself
 * goes through the table's pack_f16 and pack_q), and for F16 and BF16. */
void sl_panel_pack_ref(int type, const void *w, size_t w_stride, int nr, int64_t n, void *out);
void sl_panel_pack_f16_ref(const void *w, size_t w_stride, int nr, int64_t n, void *out);
void sl_silu_mul_ref(int64_t n, float *g, const float *u); /* libm expf */
void sl_gelu_mul_ref(int64_t n, float *g, const float *u); /* libm expf */
void sl_attn_scores_ref(int32_t nv, const uint16_t *k, size_t k_stride, const int32_t *cells, const float *q, int G,
                        int64_t d, float scale, float *out, float *mx);
void sl_attn_pv_ref(int32_t nv, const uint16_t *v, size_t v_stride, const int32_t *cells, const float *w, int G,
                    int64_t dv, float *acc, size_t acc_stride);
float sl_exp_row_ref(int64_t n, float *x, float mx); /* libm expf, summed in double */

#endif
