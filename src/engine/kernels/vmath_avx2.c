/*
 * vmath_avx2.c - float vector math of the forward pass, 8 floats at a time
 * (engine layer). The same arithmetic as vmath_avx512.c (see there), with
 * 2^n built in the exponent bits: the clamp keeps n in [-126, 127].
 */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <math.h>
#include <stdbool.h>

#include "kernels_int.h"

static inline __m256 exp8(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(SL_EXP_LO)), _mm256_set1_ps(SL_EXP_HI));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(SL_LOG2E)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(SL_LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(SL_LN2_LO), r);
    __m256 p = _mm256_set1_ps(SL_EXP_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SL_EXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SL_EXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SL_EXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SL_EXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SL_EXP_P5));
    const __m256 e = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i pow2n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(e, _mm256_castsi256_ps(pow2n));
}

static inline __m256 gate8(__m256 x, __m256 u, int gelu)
{
    __m256 z = _mm256_sub_ps(_mm256_setzero_ps(), x);
    if (gelu) {
        const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
        const __m256 y = _mm256_mul_ps(_mm256_set1_ps(SL_GELU_C),
                                       _mm256_fmadd_ps(_mm256_set1_ps(SL_GELU_A), x3, x));
        z = _mm256_mul_ps(_mm256_set1_ps(-2.0f), y);
    }
    const __m256 den = _mm256_add_ps(_mm256_set1_ps(1.0f), exp8(z));
    return _mm256_mul_ps(_mm256_div_ps(x, den), u);
}

static inline void act_mul(int64_t n, float *g, const float *u, int gelu)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(g + i, gate8(_mm256_loadu_ps(g + i), _mm256_loadu_ps(u + i), gelu));
    if (i < n) {
        const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - i)),
                                             _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        const __m256 x = _mm256_maskload_ps(g + i, m), v = _mm256_maskload_ps(u + i, m);
        _mm256_maskstore_ps(g + i, m, gate8(x, v, gelu));
    }
}

void sl_silu_mul_avx2(int64_t n, float *g, const float *u)
{
    act_mul(n, g, u, 0);
}

void sl_gelu_mul_avx2(int64_t n, float *g, const float *u)
{
    act_mul(n, g, u, 1);
}

static inline __m256i tail_mask8(int64_t r)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(r < 8 ? r : 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* 8 halves from h (r < 8: the first r, the rest 0) as floats. */
static inline __m256 load_f16_8(const uint16_t *h, int64_t r)
{
    if (r >= 8) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
    uint16_t tmp[8] = {0};
    for (int64_t i = 0; i < r; i++) tmp[i] = h[i];
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)tmp));
}

static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* out[g * nv + k] = scale * K(cells[k]) . q_g and each head's maximum: per
 * cell, the key row converted 8 values at a time for the G heads. */
void sl_attn_scores_avx2(int32_t nv, const uint16_t *k, size_t k_stride, const int32_t *cells, const float *q, int G,
                         int64_t d, float scale, float *out, float *mx)
{
    for (int g = 0; g < G; g++) mx[g] = -INFINITY;
    for (int32_t c = 0; c < nv; c++) {
        const uint16_t *kr = k + (size_t)cells[c] * k_stride;
        for (int g = 0; g < G; g++) {
            const float *qg = q + (size_t)g * (size_t)d;
            __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
            int64_t i = 0;
            for (; i + 16 <= d; i += 16) {
                a = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kr + i))), _mm256_loadu_ps(qg + i),
                                    a);
                b = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kr + i + 8))),
                                    _mm256_loadu_ps(qg + i + 8), b);
            }
            for (; i < d; i += 8)
                a = _mm256_fmadd_ps(load_f16_8(kr + i, d - i), _mm256_maskload_ps(qg + i, tail_mask8(d - i)), a);
            const float sc = hsum8(_mm256_add_ps(a, b)) * scale;
            out[(size_t)g * (size_t)nv + c] = sc;
            if (sc > mx[g]) mx[g] = sc;
        }
    }
}

/* As pv_block of vmath_avx512.c: 4 x GB accumulators of 8 over every cell,
 * 32 values from d0 (the last chunks through load_f16_8 and a mask). */
static inline __attribute__((always_inline)) void pv_block(const int GB, int32_t nv, const uint16_t *v, size_t vs,
                                                           const int32_t *cells, const float *w, size_t ws,
                                                           int64_t d0, int64_t dv, float *acc, size_t as)
{
    __m256 a[3][4];
#pragma GCC unroll 3
    for (int g = 0; g < GB; g++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) a[g][c] = _mm256_setzero_ps();
    const bool whole = dv - d0 >= 32;
    for (int32_t k = 0; k < nv; k++) {
        const uint16_t *vr = v + (size_t)cells[k] * vs + d0;
        __m256 vf[4];
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++)
            vf[c] = whole ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vr + 8 * c)))
                          : dv - d0 - 8 * c > 0 ? load_f16_8(vr + 8 * c, dv - d0 - 8 * c) : _mm256_setzero_ps();
#pragma GCC unroll 3
        for (int g = 0; g < GB; g++) {
            const __m256 wb = _mm256_set1_ps(w[(size_t)g * ws + k]);
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) a[g][c] = _mm256_fmadd_ps(wb, vf[c], a[g][c]);
        }
    }
#pragma GCC unroll 3
    for (int g = 0; g < GB; g++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++)
            if (dv - d0 - 8 * c > 0)
                _mm256_maskstore_ps(acc + (size_t)g * as + d0 + 8 * c, tail_mask8(dv - d0 - 8 * c), a[g][c]);
}

void sl_attn_pv_avx2(int32_t nv, const uint16_t *v, size_t v_stride, const int32_t *cells, const float *w, int G,
                     int64_t dv, float *acc, size_t acc_stride)
{
    for (int64_t d0 = 0; d0 < dv; d0 += 32)
        for (int g = 0; g < G; g += 3) {
            const float *wg = w + (size_t)g * (size_t)nv;
            float *ag = acc + (size_t)g * acc_stride;
            switch (G - g < 3 ? G - g : 3) {
            case 1: pv_block(1, nv, v, v_stride, cells, wg, (size_t)nv, d0, dv, ag, acc_stride); break;
            case 2: pv_block(2, nv, v, v_stride, cells, wg, (size_t)nv, d0, dv, ag, acc_stride); break;
            default: pv_block(3, nv, v, v_stride, cells, wg, (size_t)nv, d0, dv, ag, acc_stride); break;
            }
        }
}

float sl_exp_row_avx2(int64_t n, float *x, float mx)
{
    const __m256 vm = _mm256_set1_ps(mx);
    __m256 sum = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 8) {
        const __m256i m = tail_mask8(n - i);
        const __m256 e = _mm256_and_ps(exp8(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), vm)), _mm256_castsi256_ps(m));
        _mm256_maskstore_ps(x + i, m, e);
        sum = _mm256_add_ps(sum, e);
    }
    return hsum8(sum);
}

#endif /* x86 */
