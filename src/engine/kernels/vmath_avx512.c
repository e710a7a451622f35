/*
 * act_avx512.c - the gated FFN activations, 16 floats at a time (engine
 * layer). Built with the AVX-512 flags (CMakeLists.txt); the avx512 table
 * (dot_avx512.c) points at these. The scalar twins are sl_silu_mul_ref and
 * sl_gelu_mul_ref (kernels.c); docs/internals/kernels.md, "Activations",
 * gives the error budget.
 *
 * exp(x) = 2^n * e^r with n = round(x / ln 2) and r = x - n ln 2 in two
 * parts (Cody-Waite), e^r by Cephes' degree-6 polynomial (about 1 ulp on
 * |r| <= ln 2 / 2), 2^n by vscalefps. x is clamped to [SL_EXP_LO,
 * SL_EXP_HI] first, so nothing overflows and no NaN comes from inf - inf;
 * a NaN input still gives NaN, as the activation's numerator is x itself.
 */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

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

#endif /* x86 */
