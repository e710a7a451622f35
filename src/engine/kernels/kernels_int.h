/*
 * kernels_int.h - what the per-ISA kernel files share with the dispatcher
 * (engine layer, private to src/engine/kernels.c and src/engine/kernels/).
 *
 * Each ISA file is compiled with its own -m flags (CMakeLists.txt) and
 * exports one table. The dispatcher (kernels.c) hands a table out only when
 * the CPU has every feature its file was built for, and fills any NULL entry
 * from the scalar table, so an ISA file may leave a type out.
 */
#ifndef SL_KERNELS_INT_H
#define SL_KERNELS_INT_H

#include "../kernels.h"

/* dot_avx2.c: AVX2 + FMA + F16C. */
extern const struct sl_kernels sl_kernels_avx2;

/* dot_avx512.c: AVX-512 F, BW, VL, VNNI (plus AVX2, FMA, F16C). */
extern const struct sl_kernels sl_kernels_avx512;

/* vmath_avx2.c, vmath_avx512.c: the FFN activations (kernels.h silu_mul,
 * gelu_mul) and the attention's group kernels, with this vector exp: */
#define SL_EXP_LO (-87.3f) /* clamp: n = round(x log2 e) stays in [-126, 127] */
#define SL_EXP_HI 88.0f
#define SL_LOG2E 1.44269504088896341f
#define SL_LN2_HI 0.693359375f /* ln 2 = HI + LO, HI with few mantissa bits */
#define SL_LN2_LO (-2.12194440e-4f)
#define SL_EXP_P0 1.9875691500e-4f /* Cephes expf: e^r ~ 1 + r + r^2 P(r) */
#define SL_EXP_P1 1.3981999507e-3f
#define SL_EXP_P2 8.3334519073e-3f
#define SL_EXP_P3 4.1665795894e-2f
#define SL_EXP_P4 1.6666665459e-1f
#define SL_EXP_P5 5.0000001201e-1f
#define SL_GELU_C 0.7978845608028654f /* sqrt(2 / pi) */
#define SL_GELU_A 0.044715f
void sl_silu_mul_avx2(int64_t n, float *g, const float *u);
void sl_gelu_mul_avx2(int64_t n, float *g, const float *u);
void sl_silu_mul_avx512(int64_t n, float *g, const float *u);
void sl_gelu_mul_avx512(int64_t n, float *g, const float *u);
void sl_attn_scores_avx2(int32_t nv, const uint16_t *k, size_t k_stride, const int32_t *cells, const float *q, int G,
                         int64_t d, float scale, float *out, float *mx);
void sl_attn_scores_avx512(int32_t nv, const uint16_t *k, size_t k_stride, const int32_t *cells, const float *q,
                           int G, int64_t d, float scale, float *out, float *mx);
void sl_attn_pv_avx2(int32_t nv, const uint16_t *v, size_t v_stride, const int32_t *cells, const float *w, int G,
                     int64_t dv, float *acc, size_t acc_stride);
void sl_attn_pv_avx512(int32_t nv, const uint16_t *v, size_t v_stride, const int32_t *cells, const float *w,
                       int G, int64_t dv, float *acc, size_t acc_stride);
float sl_exp_row_avx2(int64_t n, float *x, float mx);
float sl_exp_row_avx512(int64_t n, float *x, float mx);

/* pack_avx2.c, pack_avx512.c: F16/BF16 panels (kernels.h pack_f16). */
void sl_panel_pack_f16_avx2(const void *w, size_t w_stride, int nr, int64_t n, void *out);
void sl_panel_pack_f16_avx512(const void *w, size_t w_stride, int nr, int64_t n, void *out);
/* pack_avx2.c, pack_avx512.c: full Q4_0, Q8_0, Q4_K and Q6_K panels
 * (kernels.h pack_q). */
void sl_panel_pack_q_avx2(int type, const void *w, size_t w_stride, int64_t n, void *out);
void sl_panel_pack_q_avx512(int type, const void *w, size_t w_stride, int64_t n, void *out);

/* Scalar parts of the ISA panel packs (kernels.c): the F16 columns from k
 * on plus the zero slice of an odd n; the 64-byte scale line of Q4_0/Q8_0
 * block pair j; the 320-byte header of Q4_K super-block i (d, dmin, the
 * 6-bit scales and mins as bytes) and of a Q6_K super-block at b0 (d, the
 * int8 scales), of 16 rows w_stride apart. */
void sl_pack_f16_tail(const uint8_t *src, size_t w_stride, int64_t k, int64_t n, uint8_t *o);
void sl_pack_hdr_pair(const uint8_t *src, size_t w_stride, size_t block_bytes, int64_t j, uint8_t hdr[64]);
void sl_pack_hdr_q4_K(const uint8_t *src, size_t w_stride, int64_t i, uint8_t hdr[320]);
void sl_pack_hdr_q6_K(const uint8_t *b0, size_t w_stride, uint8_t hdr[320]);

#endif
