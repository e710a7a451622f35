/*
 * act_avx2.c - the gated FFN activations, 8 floats at a time (engine
 * layer). The same arithmetic as act_avx512.c (see there), with 2^n built
 * in the exponent bits: the clamp keeps n in [-126, 127].
 */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

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

#endif /* x86 */
