/*
 * vmath_avx512.c - float vector math of the forward pass, 16 floats at a
 * time (engine layer): the gated FFN activations and the attention's
 * group kernels (scores of G query heads against one cached key, their
 * softmax numerators, the weighted sum of values). Built with the AVX-512
 * flags (CMakeLists.txt); the avx512 table (dot_avx512.c) points at these.
 * The scalar twins are the sl_*_ref functions of kernels.c;
 * docs/internals/kernels.md, "Activations" and "Attention", gives the error
 * budgets.
 *
 * exp(x) = 2^n * e^r with n = round(x / ln 2) and r = x - n ln 2 in two
 * parts (Cody-Waite), e^r by Cephes' degree-6 polynomial (about 1 ulp on
 * |r| <= ln 2 / 2), 2^n by vscalefps. x is clamped to [SL_EXP_LO,
 * SL_EXP_HI] first, so nothing overflows and no NaN comes from inf - inf;
 * a NaN input still gives NaN, as the activation's numerator is x itself.
 */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <math.h>

#include "kernels_int.h"

static inline __m512 exp16(__m512 x)
{
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(SL_EXP_LO)), _mm512_set1_ps(SL_EXP_HI));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(SL_LOG2E)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(SL_LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(SL_LN2_LO), r);
    __m512 p = _mm512_set1_ps(SL_EXP_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SL_EXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SL_EXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SL_EXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SL_EXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SL_EXP_P5));
    const __m512 e = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(e, n);
}

/* g = x / (1 + exp(-k * y(x))) * u, 16 lanes; y = x for SiLU, the tanh
 * argument for GELU (k = 2: x sigmoid(2y) = x (1 + tanh y) / 2). */
static inline __m512 gate16(__m512 x, __m512 u, int gelu)
{
    __m512 z = _mm512_sub_ps(_mm512_setzero_ps(), x);
    if (gelu) {
        const __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
        const __m512 y = _mm512_mul_ps(_mm512_set1_ps(SL_GELU_C),
                                       _mm512_fmadd_ps(_mm512_set1_ps(SL_GELU_A), x3, x));
        z = _mm512_mul_ps(_mm512_set1_ps(-2.0f), y);
    }
    const __m512 den = _mm512_add_ps(_mm512_set1_ps(1.0f), exp16(z));
    return _mm512_mul_ps(_mm512_div_ps(x, den), u);
}

static inline void act_mul(int64_t n, float *g, const float *u, int gelu)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(g + i, gate16(_mm512_loadu_ps(g + i), _mm512_loadu_ps(u + i), gelu));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        const __m512 x = _mm512_maskz_loadu_ps(m, g + i), v = _mm512_maskz_loadu_ps(m, u + i);
        _mm512_mask_storeu_ps(g + i, m, gate16(x, v, gelu));
    }
}

void sl_silu_mul_avx512(int64_t n, float *g, const float *u)
{
    act_mul(n, g, u, 0);
}

void sl_gelu_mul_avx512(int64_t n, float *g, const float *u)
{
    act_mul(n, g, u, 1);
}

/* The 16 horizontal sums of v[0..15], in order, as one vector: pairs
 * interleaved and added within 128-bit lanes, then the lanes folded
 * (45 instructions for 16 sums; _mm512_reduce_add_ps is ~9 for one). */
static inline __m512 hsum16x16(const __m512 *v)
{
    __m512 c[8], d[4];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        c[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
        d[i] = _mm512_add_ps(_mm512_shuffle_ps(c[2 * i], c[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(c[2 * i], c[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    const __m512 e0 = _mm512_add_ps(_mm512_shuffle_f32x4(d[0], d[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                    _mm512_shuffle_f32x4(d[0], d[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512 e1 = _mm512_add_ps(_mm512_shuffle_f32x4(d[2], d[3], _MM_SHUFFLE(2, 0, 2, 0)),
                                    _mm512_shuffle_f32x4(d[2], d[3], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_add_ps(_mm512_shuffle_f32x4(e0, e1, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(e0, e1, _MM_SHUFFLE(3, 1, 3, 1)));
}

#define SCORES_MAX_D 256 /* converted keys on the stack: 16 x 256 floats */

/* out[g * nv + k] = scale * K(cells[k]) . q_g, q_g = q + g * d, and each
 * head's maximum: 16 cells at a time, their key rows converted once into a
 * float block, then for each head 16 accumulators (one per cell) and one
 * hsum16x16 into 16 scores. */
void sl_attn_scores_avx512(int32_t nv, const uint16_t *k, size_t k_stride, const int32_t *cells, const float *q,
                           int G, int64_t d, float scale, float *out, float *mx)
{
    if (d > SCORES_MAX_D) {
        sl_attn_scores_ref(nv, k, k_stride, cells, q, G, d, scale, out, mx);
        return;
    }
    for (int g = 0; g < G; g++) mx[g] = -INFINITY;
    float kf[16 * SCORES_MAX_D] __attribute__((aligned(64)));
    const int64_t dp = (d + 15) / 16 * 16; /* a row of kf: d values, zeros to a multiple of 16 */
    for (int32_t kb = 0; kb < nv; kb += 16) {
        const int nc = nv - kb < 16 ? nv - kb : 16;
        for (int c = 0; c < 16; c++) {
            const uint16_t *kr = k + (size_t)cells[kb + (c < nc ? c : 0)] * k_stride;
            for (int64_t i = 0; i < dp; i += 16) {
                const __mmask16 m = d - i >= 16 ? 0xFFFF : (__mmask16)((1u << (d - i)) - 1);
                _mm512_store_ps(kf + c * dp + i, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, kr + i)));
            }
        }
        const __mmask16 om = nc == 16 ? 0xFFFF : (__mmask16)((1u << nc) - 1);
        for (int g = 0; g < G; g++) {
            const float *qg = q + (size_t)g * (size_t)d;
            __m512 acc[16];
#pragma GCC unroll 16
            for (int c = 0; c < 16; c++) acc[c] = _mm512_setzero_ps();
            for (int64_t i = 0; i < dp; i += 16) {
                const __mmask16 m = d - i >= 16 ? 0xFFFF : (__mmask16)((1u << (d - i)) - 1);
                const __m512 qv = _mm512_maskz_loadu_ps(m, qg + i);
#pragma GCC unroll 16
                for (int c = 0; c < 16; c++) acc[c] = _mm512_fmadd_ps(_mm512_load_ps(kf + c * dp + i), qv, acc[c]);
            }
            const __m512 sc = _mm512_mul_ps(hsum16x16(acc), _mm512_set1_ps(scale));
            _mm512_mask_storeu_ps(out + (size_t)g * (size_t)nv + kb, om, sc);
            const float m = _mm512_mask_reduce_max_ps(om, sc);
            if (m > mx[g]) mx[g] = m;
        }
    }
}

/* acc_g = sum_k w[g * ws + k] * v_k for GB heads and the 64 values from d0
 * (masked past dv): 4 x GB accumulators held in registers over every
 * cell, each value row converted once per block of heads. */
static inline __attribute__((always_inline)) void pv_block(const int GB, int32_t nv, const uint16_t *v, size_t vs,
                                                           const int32_t *cells, const float *w, size_t ws,
                                                           int64_t d0, int64_t dv, float *acc, size_t as)
{
    __mmask16 m[4];
    __m512 a[6][4];
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        const int64_t r = dv - d0 - 16 * c;
        m[c] = r >= 16 ? 0xFFFF : r > 0 ? (__mmask16)((1u << r) - 1) : 0;
    }
#pragma GCC unroll 6
    for (int g = 0; g < GB; g++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) a[g][c] = _mm512_setzero_ps();
    for (int32_t k = 0; k < nv; k++) {
        const uint16_t *vr = v + (size_t)cells[k] * vs + d0;
        __m512 vf[4];
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) vf[c] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m[c], vr + 16 * c));
#pragma GCC unroll 6
        for (int g = 0; g < GB; g++) {
            const __m512 wb = _mm512_set1_ps(w[(size_t)g * ws + k]);
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) a[g][c] = _mm512_fmadd_ps(wb, vf[c], a[g][c]);
        }
    }
#pragma GCC unroll 6
    for (int g = 0; g < GB; g++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) _mm512_mask_storeu_ps(acc + (size_t)g * as + d0 + 16 * c, m[c], a[g][c]);
}

void sl_attn_pv_avx512(int32_t nv, const uint16_t *v, size_t v_stride, const int32_t *cells, const float *w,
                       int G, int64_t dv, float *acc, size_t acc_stride)
{
    for (int64_t d0 = 0; d0 < dv; d0 += 64)
        for (int g = 0; g < G; g += 6) {
            const float *wg = w + (size_t)g * (size_t)nv;
            float *ag = acc + (size_t)g * acc_stride;
            switch (G - g < 6 ? G - g : 6) {
            case 1: pv_block(1, nv, v, v_stride, cells, wg, (size_t)nv, d0, dv, ag, acc_stride); break;
            case 2: pv_block(2, nv, v, v_stride, cells, wg, (size_t)nv, d0, dv, ag, acc_stride); break;
            case 3: pv_block(3, nv, v, v_stride, cells, wg, (size_t)nv, d0, dv, ag, acc_stride); break;
            case 4: pv_block(4, nv, v, v_stride, cells, wg, (size_t)nv, d0, dv, ag, acc_stride); break;
            case 5: pv_block(5, nv, v, v_stride, cells, wg, (size_t)nv, d0, dv, ag, acc_stride); break;
            default: pv_block(6, nv, v, v_stride, cells, wg, (size_t)nv, d0, dv, ag, acc_stride); break;
            }
        }
}

/* x[i] = e^(x[i] - mx) (x[i] <= mx, none -inf); returns their sum. */
float sl_exp_row_avx512(int64_t n, float *x, float mx)
{
    const __m512 vm = _mm512_set1_ps(mx);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm));
        _mm512_mask_storeu_ps(x + i, m, e);
        sum = _mm512_mask_add_ps(sum, m, sum, e);
    }
    return _mm512_reduce_add_ps(sum);
}

#endif /* x86 */
