/*
 * dot_avx2.c - AVX2 + FMA + F16C kernels (engine layer).
 *
 * Built with -mavx2 -mfma -mf16c (CMakeLists.txt) and handed out by
 * kernels.c only on a CPU that has all three. Every function here has its
 * scalar twin in quant.c (sl_vec_dot_ref, sl_quantize_row_ref) or kernels.c
 * (the attention helpers); tests/unit/test_kernels.c holds them together.
 *
 * Dot products stay in integers inside a block, as the references do: the
 * weight quants are unpacked to bytes, multiplied with the int8 activations
 * by vpmaddubsw (unsigned x signed bytes -> pairs summed into int16) and
 * vpmaddwd (int16 pairs -> int32, with the K-quants' sub-block scales as the
 * second operand). Only the per-block scale is float. Differences from the
 * reference are float summation order only.
 *
 * vpmaddubsw saturates an int16 pair sum; every use below stays in range:
 * |w| <= 128 times |a| <= 127, twice, is at most 32512 (that is why the
 * activations must not hold -128, see kernels.h).
 *
 * The activation quantizers are bit-identical to the references: same
 * scale arithmetic in scalar code, roundf() emulated exactly for Q8_0/Q8_1,
 * cvtps2dq (round to nearest even, the default MXCSR mode) for Q8_K, whose
 * reference rounds to nearest even too. FP contraction is off in this file
 * so a multiply followed by a rounding step is never fused behind our back;
 * the FMAs below are all explicit.
 */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <string.h>

#include "kernels_int.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

/* ------------------------------------------------------------------------ */
/* helpers                                                                   */
/* ------------------------------------------------------------------------ */

static inline float h2f(uint16_t h)
{
    return _cvtsh_ss(h);
}

static inline float hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline int hsum_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

static inline float hmax_ps(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* Sum of 4 adjacent u8 x s8 products into each int32 lane. */
static inline __m256i mul_sum_us8(__m256i u, __m256i s)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* Sum of 4 adjacent s8 x s8 products: |x| times y with x's sign. */
static inline __m256i mul_sum_i8(__m256i x, __m256i y)
{
    return mul_sum_us8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

/* The 32 4-bit values of a Q4/Q5 block as bytes 0..15, in value order (the
 * low nibbles of qs are values 0..15, the high nibbles 16..31). */
static inline __m256i nibbles_32(const uint8_t *qs)
{
    const __m128i t = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(0xF));
}

/* Bit j of the little-endian u32 at p, spread to byte j as 0x00 or 0xFF. */
static inline __m256i bits_32(const uint8_t *p)
{
    uint32_t u;
    memcpy(&u, p, sizeof u);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                           0x0101010101010101, 0x0000000000000000);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    const __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)u), shuf);
    return _mm256_cmpeq_epi8(_mm256_and_si256(b, bit), bit);
}

/* Shuffle that turns 8 int16 scales (duplicated in both lanes) into
 * scale k in the low lane and scale k + 1 in the high lane: the scales of two
 * 16-value sub-blocks that share one 32-byte vector of products. */
static inline __m256i scale_pair(int k)
{
    return _mm256_set_m128i(_mm_set1_epi16((short)(((4 * k + 3) << 8) | (4 * k + 2))),
                            _mm_set1_epi16((short)(((4 * k + 1) << 8) | (4 * k))));
}

/* Shuffle that broadcasts int16 scale k (of 8, duplicated in both lanes). */
static inline __m256i scale_bcast(int k)
{
    return _mm256_set1_epi16((short)(((2 * k + 1) << 8) | (2 * k)));
}

/* The 8 6-bit scales (bytes 0..7) and mins (bytes 8..15) of a Q4_K/Q5_K
 * block, as sl_k4_scale_min unpacks them one at a time. */
static inline __m128i k4_scales_mins(const uint8_t scales[SL_K_SCALE_SIZE])
{
    uint32_t u[4];
    memcpy(u, scales, SL_K_SCALE_SIZE);
    const uint32_t m6 = 0x3f3f3f3f, m4 = 0x0f0f0f0f, m2 = 0x03030303;
    u[3] = ((u[2] >> 4) & m4) | (((u[1] >> 6) & m2) << 4); /* mins 4..7 */
    const uint32_t mins_lo = u[1] & m6;                      /* mins 0..3 */
    u[1] = (u[2] & m4) | (((u[0] >> 6) & m2) << 4);          /* scales 4..7 */
    u[2] = mins_lo;
    u[0] &= m6; /* scales 0..3 */
    return _mm_set_epi32((int)u[3], (int)u[2], (int)u[1], (int)u[0]);
}

/* The 16 Q3_K scales, offset 32 removed, as int8 in sub-block order. */
static inline __m128i q3k_scales(const uint8_t scales[SL_K_SCALE_SIZE])
{
    uint32_t a[3];
    memcpy(a, scales, SL_K_SCALE_SIZE);
    const uint32_t m4 = 0x0f0f0f0f, m2 = 0x03030303;
    const __m128i s = _mm_set_epi32((int)(((a[1] >> 4) & m4) | (((a[2] >> 6) & m2) << 4)),
                                    (int)(((a[0] >> 4) & m4) | (((a[2] >> 4) & m2) << 4)),
                                    (int)((a[1] & m4) | (((a[2] >> 2) & m2) << 4)),
                                    (int)((a[0] & m4) | ((a[2] & m2) << 4)));
    return _mm_sub_epi8(s, _mm_set1_epi8(32));
}

/* ------------------------------------------------------------------------ */
/* 32-value blocks                                                           */
/* ------------------------------------------------------------------------ */

/* Two independent chains (vector accumulator plus the Q4_1/Q5_1 min-term
 * sum) hide the FMA and add latencies; a block is ~25 instructions. */
#define DOT_32(name, WT, AT, BLOCK)                                    \
    static float name(int64_t n, const void *vw, const void *va)       \
    {                                                                  \
        const WT *x = vw;                                              \
        const AT *y = va;                                              \
        const int64_t nb = n / 32;                                     \
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(); \
        float summ0 = 0, summ1 = 0;                                    \
        int64_t i = 0;                                                 \
        for (; i + 1 < nb; i += 2) {                                   \
            acc0 = BLOCK(&x[i], &y[i], acc0, &summ0);                  \
            acc1 = BLOCK(&x[i + 1], &y[i + 1], acc1, &summ1);          \
        }                                                              \
        if (i < nb) acc0 = BLOCK(&x[i], &y[i], acc0, &summ0);          \
        return hsum_ps(_mm256_add_ps(acc0, acc1)) + (summ0 + summ1);   \
    }

static inline __m256 blk_q4_0(const struct sl_block_q4_0 *x, const struct sl_block_q8_0 *y,
                              __m256 acc, float *summ)
{
    (void)summ;
    const __m256i q = _mm256_sub_epi8(nibbles_32(x->qs), _mm256_set1_epi8(8));
    const __m256i p = mul_sum_i8(q, _mm256_loadu_si256((const __m256i *)y->qs));
    return _mm256_fmadd_ps(_mm256_set1_ps(h2f(x->d) * h2f(y->d)), _mm256_cvtepi32_ps(p), acc);
}

static inline __m256 blk_q4_1(const struct sl_block_q4_1 *x, const struct sl_block_q8_1 *y,
                              __m256 acc, float *summ)
{
    *summ += h2f(x->m) * h2f(y->s);
    const __m256i p = mul_sum_us8(nibbles_32(x->qs), _mm256_loadu_si256((const __m256i *)y->qs));
    return _mm256_fmadd_ps(_mm256_set1_ps(h2f(x->d) * h2f(y->d)), _mm256_cvtepi32_ps(p), acc);
}

/* Q5_0: (nibble | hbit << 4) - 16 is nibble - 16 = nibble | 0xF0 when the
 * bit is clear, and the nibble itself when it is set. */
static inline __m256 blk_q5_0(const struct sl_block_q5_0 *x, const struct sl_block_q8_0 *y,
                              __m256 acc, float *summ)
{
    (void)summ;
    const __m256i hi = _mm256_andnot_si256(bits_32(x->qh), _mm256_set1_epi8((char)0xF0));
    const __m256i q = _mm256_or_si256(nibbles_32(x->qs), hi);
    const __m256i p = mul_sum_i8(q, _mm256_loadu_si256((const __m256i *)y->qs));
    return _mm256_fmadd_ps(_mm256_set1_ps(h2f(x->d) * h2f(y->d)), _mm256_cvtepi32_ps(p), acc);
}

static inline __m256 blk_q5_1(const struct sl_block_q5_1 *x, const struct sl_block_q8_1 *y,
                              __m256 acc, float *summ)
{
    *summ += h2f(x->m) * h2f(y->s);
    const __m256i hi = _mm256_and_si256(bits_32(x->qh), _mm256_set1_epi8(0x10));
    const __m256i q = _mm256_or_si256(nibbles_32(x->qs), hi);
    const __m256i p = mul_sum_us8(q, _mm256_loadu_si256((const __m256i *)y->qs));
    return _mm256_fmadd_ps(_mm256_set1_ps(h2f(x->d) * h2f(y->d)), _mm256_cvtepi32_ps(p), acc);
}

static inline __m256 blk_q8_0(const struct sl_block_q8_0 *x, const struct sl_block_q8_0 *y,
                              __m256 acc, float *summ)
{
    (void)summ;
    const __m256i p = mul_sum_i8(_mm256_loadu_si256((const __m256i *)x->qs),
                                 _mm256_loadu_si256((const __m256i *)y->qs));
    return _mm256_fmadd_ps(_mm256_set1_ps(h2f(x->d) * h2f(y->d)), _mm256_cvtepi32_ps(p), acc);
}

DOT_32(dot_q4_0, struct sl_block_q4_0, struct sl_block_q8_0, blk_q4_0)
DOT_32(dot_q4_1, struct sl_block_q4_1, struct sl_block_q8_1, blk_q4_1)
DOT_32(dot_q5_0, struct sl_block_q5_0, struct sl_block_q8_0, blk_q5_0)
DOT_32(dot_q5_1, struct sl_block_q5_1, struct sl_block_q8_1, blk_q5_1)
DOT_32(dot_q8_0, struct sl_block_q8_0, struct sl_block_q8_0, blk_q8_0)

/* ------------------------------------------------------------------------ */
/* K-quants (256-value super-blocks against Q8_K)                            */
/* ------------------------------------------------------------------------ */

/* Q2_K: qs[32h .. 32h+31] at bits 2s hold values 128h + 32s + 0..31, that
 * is sub-blocks 8h + 2s and 8h + 2s + 1 (16 values each). */
static float dot_q2_K(int64_t n, const void *vw, const void *va)
{
    const struct sl_block_q2_K *x = vw;
    const struct sl_block_q8_K *y = va;
    const int64_t nb = n / SL_QK_K;
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const float dall = y[i].d * h2f(x[i].d);
        const float dmin = -y[i].d * h2f(x[i].dmin);
        const __m128i sm = _mm_loadu_si128((const __m128i *)x[i].scales);
        const __m128i m4 = _mm_set1_epi8(0xF);
        /* min term: sum_j (scales[j] >> 4) * bsums[j] */
        const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sm, 4), m4));
        const __m256i summs = _mm256_madd_epi16(mins, _mm256_loadu_si256((const __m256i *)y[i].bsums));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(summs), acc);

        const __m256i sc = _mm256_cvtepu8_epi16(_mm_and_si128(sm, m4));
        const __m256i sch[2] = {_mm256_permute2x128_si256(sc, sc, 0x00),
                                _mm256_permute2x128_si256(sc, sc, 0x11)};
        const int8_t *q8 = y[i].qs;
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
#pragma GCC unroll 4
            for (int s = 0; s < 4; s++, q8 += 32) {
                const __m256i q = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * s), m3);
                const __m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)q8));
                sumi = _mm256_add_epi32(
                    sumi, _mm256_madd_epi16(_mm256_shuffle_epi8(sch[h], scale_pair(s)), p));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dall), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps(acc);
}

/* Q3_K: as Q2_K plus hmask[l] bit 4h + s; the level is low2 + 4 * hbit - 4,
 * summed as u8 (low2 | hbit << 2) times q8, minus 4 * scale * bsums. */
static float dot_q3_K(int64_t n, const void *vw, const void *va)
{
    const struct sl_block_q3_K *x = vw;
    const struct sl_block_q8_K *y = va;
    const int64_t nb = n / SL_QK_K;
    const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const float d = y[i].d * h2f(x[i].d);
        const __m256i sc = _mm256_cvtepi8_epi16(q3k_scales(x[i].scales));
        const __m256i sch[2] = {_mm256_permute2x128_si256(sc, sc, 0x00),
                                _mm256_permute2x128_si256(sc, sc, 0x11)};
        /* 4 * sum_j scale_j * bsums_j, taken off at the end */
        const __m256i offs = _mm256_madd_epi16(sc, _mm256_loadu_si256((const __m256i *)y[i].bsums));
        const __m256i hbits = _mm256_loadu_si256((const __m256i *)x[i].hmask);
        const int8_t *q8 = y[i].qs;
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
#pragma GCC unroll 4
            for (int s = 0; s < 4; s++, q8 += 32) {
                const int b = 4 * h + s;
                const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * s), m3);
                /* hbit << 2 for each byte: bit b moved to bit 2 */
                const __m256i hb = b >= 2 ? _mm256_srli_epi16(hbits, b - 2) : _mm256_slli_epi16(hbits, 2 - b);
                const __m256i q = _mm256_or_si256(lo, _mm256_and_si256(hb, m4));
                const __m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)q8));
                sumi = _mm256_add_epi32(
                    sumi, _mm256_madd_epi16(_mm256_shuffle_epi8(sch[h], scale_pair(s)), p));
            }
        }
        sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(offs, 2));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps(acc);
}

/* Q4_K: qs[32g .. 32g+31] hold sub-block 2g in the low nibbles and 2g + 1 in
 * the high nibbles; the min term comes from pairs of bsums. */
static float dot_q4_K(int64_t n, const void *vw, const void *va)
{
    const struct sl_block_q4_K *x = vw;
    const struct sl_block_q8_K *y = va;
    const int64_t nb = n / SL_QK_K;
    const __m256i m4 = _mm256_set1_epi8(0xF);
    __m256 acc = _mm256_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const float d = y[i].d * h2f(x[i].d);
        const float dmin = -y[i].d * h2f(x[i].dmin);
        const __m256i sm = _mm256_cvtepu8_epi16(k4_scales_mins(x[i].scales));
        const __m256i bs = _mm256_loadu_si256((const __m256i *)y[i].bsums);
        const __m128i bs2 = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
        const __m128i summs = _mm_madd_epi16(_mm256_extracti128_si256(sm, 1), bs2);
        accm = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(summs), accm);

        const __m256i sc = _mm256_permute2x128_si256(sm, sm, 0x00);
        const int8_t *q8 = y[i].qs;
        __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++, q8 += 64) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * g));
            const __m256i ql = _mm256_and_si256(bits, m4);
            const __m256i qh = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
            const __m256i pl = _mm256_maddubs_epi16(ql, _mm256_loadu_si256((const __m256i *)q8));
            const __m256i ph = _mm256_maddubs_epi16(qh, _mm256_loadu_si256((const __m256i *)(q8 + 32)));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_shuffle_epi8(sc, scale_bcast(2 * g)), pl));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_shuffle_epi8(sc, scale_bcast(2 * g + 1)), ph));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps(acc) + (accm[0] + accm[1] + accm[2] + accm[3]);
}

/* Q5_K: Q4_K plus bit j of qh[l] as the 5th bit of sub-block j. */
static float dot_q5_K(int64_t n, const void *vw, const void *va)
{
    const struct sl_block_q5_K *x = vw;
    const struct sl_block_q8_K *y = va;
    const int64_t nb = n / SL_QK_K;
    const __m256i m4 = _mm256_set1_epi8(0xF), m16 = _mm256_set1_epi8(0x10);
    __m256 acc = _mm256_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const float d = y[i].d * h2f(x[i].d);
        const float dmin = -y[i].d * h2f(x[i].dmin);
        const __m256i sm = _mm256_cvtepu8_epi16(k4_scales_mins(x[i].scales));
        const __m256i bs = _mm256_loadu_si256((const __m256i *)y[i].bsums);
        const __m128i bs2 = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
        const __m128i summs = _mm_madd_epi16(_mm256_extracti128_si256(sm, 1), bs2);
        accm = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(summs), accm);

        const __m256i sc = _mm256_permute2x128_si256(sm, sm, 0x00);
        const __m256i hbits = _mm256_loadu_si256((const __m256i *)x[i].qh);
        const int8_t *q8 = y[i].qs;
        __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++, q8 += 64) {
            const int j = 2 * g;
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * g));
            /* bit j (and j + 1) of each qh byte moved to bit 4 */
            const __m256i hl = j <= 4 ? _mm256_slli_epi16(hbits, 4 - j) : _mm256_srli_epi16(hbits, j - 4);
            const __m256i hh = j + 1 <= 4 ? _mm256_slli_epi16(hbits, 3 - j) : _mm256_srli_epi16(hbits, j - 3);
            const __m256i ql = _mm256_or_si256(_mm256_and_si256(bits, m4), _mm256_and_si256(hl, m16));
            const __m256i qh = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits, 4), m4),
                                               _mm256_and_si256(hh, m16));
            const __m256i pl = _mm256_maddubs_epi16(ql, _mm256_loadu_si256((const __m256i *)q8));
            const __m256i ph = _mm256_maddubs_epi16(qh, _mm256_loadu_si256((const __m256i *)(q8 + 32)));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_shuffle_epi8(sc, scale_bcast(j)), pl));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_shuffle_epi8(sc, scale_bcast(j + 1)), ph));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps(acc) + (accm[0] + accm[1] + accm[2] + accm[3]);
}

/* Q6_K: for half h, value 128h + 32r + t has its low nibble in
 * ql[64h + 32(r % 2) + t] (nibble r / 2) and its top 2 bits at bit 2r of
 * qh[32h + t]. The unsigned level 0..63 is multiplied as u8; the offset 32
 * comes off as 32 * sum_j scale_j * bsums_j. */
static float dot_q6_K(int64_t n, const void *vw, const void *va)
{
    const struct sl_block_q6_K *x = vw;
    const struct sl_block_q8_K *y = va;
    const int64_t nb = n / SL_QK_K;
    const __m256i m4 = _mm256_set1_epi8(0xF), m2 = _mm256_set1_epi8(0x30);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const float d = y[i].d * h2f(x[i].d);
        const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
        const __m256i sch[2] = {_mm256_permute2x128_si256(sc, sc, 0x00),
                                _mm256_permute2x128_si256(sc, sc, 0x11)};
        const __m256i offs = _mm256_madd_epi16(sc, _mm256_loadu_si256((const __m256i *)y[i].bsums));
        const int8_t *q8 = y[i].qs;
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(x[i].ql + 64 * h));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(x[i].ql + 64 * h + 32));
            const __m256i hb = _mm256_loadu_si256((const __m256i *)(x[i].qh + 32 * h));
            const __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), m2)),
                _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 2), m2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hb, m2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                _mm256_and_si256(_mm256_srli_epi16(hb, 2), m2)),
            };
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++, q8 += 32) {
                const __m256i p = _mm256_maddubs_epi16(q[r], _mm256_loadu_si256((const __m256i *)q8));
                sumi = _mm256_add_epi32(
                    sumi, _mm256_madd_epi16(_mm256_shuffle_epi8(sch[h], scale_pair(r)), p));
            }
        }
        sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(offs, 5));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps(acc);
}

/* ------------------------------------------------------------------------ */
/* float rows                                                                */
/* ------------------------------------------------------------------------ */

static inline __m256 load_f16(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline __m256 load_bf16(const uint16_t *p)
{
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

/* Four accumulators of 8; float sums (the reference sums in double, see
 * SL_TOL_DOT_F32 for the budget this costs). */
#define DOT_FLOAT(name, T, LOAD, CVT)                                          \
    static float name(int64_t n, const void *vw, const void *va)               \
    {                                                                          \
        const T *x = vw, *y = va;                                              \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;            \
        int64_t i = 0;                                                         \
        for (; i + 32 <= n; i += 32) {                                         \
            a0 = _mm256_fmadd_ps(LOAD(x + i), LOAD(y + i), a0);                \
            a1 = _mm256_fmadd_ps(LOAD(x + i + 8), LOAD(y + i + 8), a1);        \
            a2 = _mm256_fmadd_ps(LOAD(x + i + 16), LOAD(y + i + 16), a2);      \
            a3 = _mm256_fmadd_ps(LOAD(x + i + 24), LOAD(y + i + 24), a3);      \
        }                                                                      \
        for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(LOAD(x + i), LOAD(y + i), a0); \
        float s = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3))); \
        for (; i < n; i++) s += CVT(x[i]) * CVT(y[i]);                         \
        return s;                                                              \
    }

static inline float id_f32(float f)
{
    return f;
}

DOT_FLOAT(dot_f32, float, _mm256_loadu_ps, id_f32)
DOT_FLOAT(dot_f16, uint16_t, load_f16, h2f)
DOT_FLOAT(dot_bf16, uint16_t, load_bf16, sl_bf16_to_fp32)

/* ------------------------------------------------------------------------ */
/* attention helpers                                                         */
/* ------------------------------------------------------------------------ */

static void fp32_to_fp16_row(int64_t n, const float *x, uint16_t *y)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++) y[i] = sl_fp32_to_fp16(x[i]);
}

/* ------------------------------------------------------------------------ */
/* activation quantizers                                                     */
/* ------------------------------------------------------------------------ */

/* roundf() of 8 floats, ties away from zero: truncate, then step away from
 * zero when the (exact) fraction is at least one half. */
static inline __m256 round_away(__m256 v)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
    const __m256 up = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    const __m256 step = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(sign, v));
    return _mm256_add_ps(t, _mm256_and_ps(up, step));
}

/* 4 x 8 int32 (values 0..31 in order) to 32 int8 with saturation. */
static inline __m256i pack_i8(__m256i a, __m256i b, __m256i c, __m256i d)
{
    const __m256i ab = _mm256_packs_epi32(a, b); /* a0-3 b0-3 | a4-7 b4-7 */
    const __m256i cd = _mm256_packs_epi32(c, d);
    const __m256i abcd = _mm256_packs_epi16(ab, cd); /* a0-3 b0-3 c0-3 d0-3 | a4-7 ... */
    return _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* Q8_0 and Q8_1: d = amax / 127, q = roundf(x / d), as quant.c. Returns the
 * sum of the 32 quants (for Q8_1's s). */
static inline int q8_block(const float *x, int8_t *qs, uint16_t *d_out, float *d_val)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_loadu_ps(x + 8 * k);
        amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[k]));
    }
    const float d = hmax_ps(amax) / 127;
    const float id = d ? 1.0f / d : 0.0f;
    *d_out = sl_fp32_to_fp16(d);
    *d_val = d;
    const __m256 mul = _mm256_set1_ps(id);
    __m256i q[4];
    for (int k = 0; k < 4; k++) q[k] = _mm256_cvttps_epi32(round_away(_mm256_mul_ps(v[k], mul)));
    _mm256_storeu_si256((__m256i *)qs, pack_i8(q[0], q[1], q[2], q[3]));
    return hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
}

static void quant_q8_0(const float *x, struct sl_block_q8_0 *y, int64_t nb)
{
    float d;
    for (int64_t i = 0; i < nb; i++, x += 32) (void)q8_block(x, y[i].qs, &y[i].d, &d);
}

static void quant_q8_1(const float *x, struct sl_block_q8_1 *y, int64_t nb)
{
    float d;
    for (int64_t i = 0; i < nb; i++, x += 32) {
        const int sum = q8_block(x, y[i].qs, &y[i].d, &d);
        y[i].s = sl_fp32_to_fp16((float)sum * d);
    }
}

/* Q8_K: the value of largest magnitude (the first, on ties) maps to -127;
 * q = min(127, nearest_int(x * iscale)), plus the sum of every 16 quants. */
static void quant_q8_K(const float *x, struct sl_block_q8_K *y, int64_t nb)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < nb; i++, x += SL_QK_K) {
        __m256 vmax = _mm256_setzero_ps();
        for (int k = 0; k < SL_QK_K; k += 8) vmax = _mm256_max_ps(vmax, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)));
        const float amax = hmax_ps(vmax);
        if (!amax) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float max = 0;
        const __m256 va = _mm256_set1_ps(amax);
        for (int k = 0; k < SL_QK_K; k += 8) {
            const __m256 a = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k));
            const int m = _mm256_movemask_ps(_mm256_cmp_ps(a, va, _CMP_EQ_OQ));
            if (m) {
                max = x[k + __builtin_ctz((unsigned)m)];
                break;
            }
        }
        const float iscale = -127.f / max;
        const __m256 mul = _mm256_set1_ps(iscale);
        const __m256i lim = _mm256_set1_epi32(127);
        for (int g = 0; g < SL_QK_K / 32; g++) {
            __m256i q[4];
            for (int k = 0; k < 4; k++) {
                const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + 32 * g + 8 * k), mul);
                q[k] = _mm256_min_epi32(_mm256_cvtps_epi32(v), lim);
            }
            const __m256i b = pack_i8(q[0], q[1], q[2], q[3]);
            _mm256_storeu_si256((__m256i *)(y[i].qs + 32 * g), b);
            /* sums of 8 bytes biased by 128 each, two per 16 quants */
            const __m256i sad = _mm256_sad_epu8(_mm256_xor_si256(b, _mm256_set1_epi8((char)0x80)),
                                                _mm256_setzero_si256());
            long long s[4];
            _mm256_storeu_si256((__m256i *)s, sad);
            y[i].bsums[2 * g] = (int16_t)(s[0] + s[1] - 16 * 128);
            y[i].bsums[2 * g + 1] = (int16_t)(s[2] + s[3] - 16 * 128);
        }
        y[i].d = 1 / iscale;
    }
}

static void quant_f16(const float *x, uint16_t *y, int64_t n)
{
    fp32_to_fp16_row(n, x, y);
}

/* bfloat16, ties to even; NaN made quiet (bit 6), as sl_fp32_to_bf16. */
static void quant_bf16(const float *x, uint16_t *y, int64_t n)
{
    const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    const __m256i one = _mm256_set1_epi32(1), r = _mm256_set1_epi32(0x7fff), qbit = _mm256_set1_epi32(0x40);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i h[2];
        for (int k = 0; k < 2; k++) {
            const __m256i u = _mm256_loadu_si256((const __m256i *)(x + i + 8 * k));
            const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
            const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
            const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(r, odd)), 16);
            const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), qbit);
            h[k] = _mm256_blendv_epi8(rounded, quiet, nan);
        }
        /* packus works in 128-bit lanes: fix the order of the 64-bit quarters */
        const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(h[0], h[1]), _MM_SHUFFLE(3, 1, 2, 0));
        _mm256_storeu_si256((__m256i *)(y + i), p);
    }
    for (; i < n; i++) y[i] = sl_fp32_to_bf16(x[i]);
}

static void quantize_row(int type, const float *x, void *out, int64_t n)
{
    switch (type) {
    case SL_TYPE_Q8_0:
        if (n % SL_QK8_0) break;
        quant_q8_0(x, out, n / SL_QK8_0);
        return;
    case SL_TYPE_Q8_1:
        if (n % SL_QK8_1) break;
        quant_q8_1(x, out, n / SL_QK8_1);
        return;
    case SL_TYPE_Q8_K:
        if (n % SL_QK_K) break;
        quant_q8_K(x, out, n / SL_QK_K);
        return;
    case SL_TYPE_F16: quant_f16(x, out, n); return;
    case SL_TYPE_BF16: quant_bf16(x, out, n); return;
    }
    sl_quantize_row_ref(type, x, out, n);
}

/* ------------------------------------------------------------------------ */
/* matrix tiles: Q4_0 and Q8_0 weights against q8x4 activations             */
/* ------------------------------------------------------------------------ */

/*
 * The same q8x4 layout as the AVX-512 file (kernels.h), read half a group
 * (two blocks, one per 128-bit lane) per 256-bit register. Per weight row
 * and half group: the two blocks' 16 quant bytes in one register (Q4_0:
 * then low and high nibbles; Q8_0: the low and high 16 values, |w| plus
 * the sign moved onto the activation), the four fp16 scales converted once
 * per group; per activation row vpmaddubsw, vpmaddwd with ones, the offset
 * term (Q4_0: -8 sum(a), packed), a convert, a multiply and an FMA. Q4_0
 * adds its two vpmaddubsw results in int16 (at most 2 * 2 * 15 * 127 =
 * 7620); Q8_0 cannot (2 * 128 * 127 each), so it widens both.
 * At most 4 x 2 tiles: 16 ymm registers hold 8 accumulators and one row.
 */
#define TILE_R 4
#define TILE_C 2

/* The fp16 scales of the first nblk blocks at p (block size bs), as floats
 * in lanes 0..3 (zero past nblk). */
static inline __attribute__((always_inline)) __m256 group_scales(const uint8_t *p, int bs, int nblk)
{
    uint16_t d;
    __m128i h = _mm_setzero_si128();
    memcpy(&d, p, 2);
    h = _mm_insert_epi16(h, d, 0);
    if (nblk > 1) memcpy(&d, p + bs, 2), h = _mm_insert_epi16(h, d, 1);
    if (nblk > 2) memcpy(&d, p + 2 * bs, 2), h = _mm_insert_epi16(h, d, 2);
    if (nblk > 3) memcpy(&d, p + 3 * bs, 2), h = _mm_insert_epi16(h, d, 3);
    return _mm256_castps128_ps256(_mm_cvtph_ps(h));
}

/* Lanes 0..3 = scale of block 2h, lanes 4..7 = scale of block 2h + 1. */
static inline __m256 half_scales(__m256 d4, int h)
{
    return _mm256_permutevar8x32_ps(d4, h ? _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3)
                                          : _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
}

/* 16 bytes at p + off of blocks b (low lane) and b + 1 (high lane, zero if
 * b + 1 >= nblk). */
static inline __attribute__((always_inline)) __m256i load_pair(const uint8_t *p, int bs, int b, int off, int nblk)
{
    const __m128i lo = _mm_loadu_si128((const __m128i *)(p + b * bs + off));
    const __m128i hi = b + 1 < nblk ? _mm_loadu_si128((const __m128i *)(p + (b + 1) * bs + off)) : _mm_setzero_si128();
    return _mm256_set_m128i(hi, lo);
}

static inline __attribute__((always_inline)) void group_q4_0(const uint8_t *p, int nblk,
                                                             const struct sl_q8x4 *const ya[TILE_C], int g,
                                                             const int NC, __m256 acc[TILE_C])
{
    const __m256i m4 = _mm256_set1_epi8(0xF), ones = _mm256_set1_epi16(1);
    const __m256 d4 = group_scales(p, 18, nblk);
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        if (2 * h >= nblk) break;
        const __m256i q = load_pair(p, 18, 2 * h, 2, nblk);
        const __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        const __m256 dx = half_scales(d4, h);
#pragma GCC unroll 2
        for (int c = 0; c < NC; c++) {
            const struct sl_q8x4 *y = ya[c] + g;
            const __m256i p16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)y->lo[2 * h])),
                                                 _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)y->hi[2 * h])));
            const __m256i s = _mm256_add_epi32(_mm256_madd_epi16(p16, ones),
                                               _mm256_loadu_si256((const __m256i *)y->off[2 * h]));
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dx, _mm256_loadu_ps(y->d[2 * h])), acc[c]);
        }
    }
}

static inline __attribute__((always_inline)) void group_q8_0(const uint8_t *p, int nblk,
                                                             const struct sl_q8x4 *const ya[TILE_C], int g,
                                                             const int NC, __m256 acc[TILE_C])
{
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256 d4 = group_scales(p, 34, nblk);
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        if (2 * h >= nblk) break;
        const __m256i w0 = load_pair(p, 34, 2 * h, 2, nblk), w1 = load_pair(p, 34, 2 * h, 18, nblk);
        const __m256i a0 = _mm256_sign_epi8(w0, w0), a1 = _mm256_sign_epi8(w1, w1);
        const __m256 dx = half_scales(d4, h);
#pragma GCC unroll 2
        for (int c = 0; c < NC; c++) {
            const struct sl_q8x4 *y = ya[c] + g;
            const __m256i s0 = _mm256_maddubs_epi16(a0, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)y->lo[2 * h]), w0));
            const __m256i s1 = _mm256_maddubs_epi16(a1, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)y->hi[2 * h]), w1));
            const __m256i s = _mm256_add_epi32(_mm256_madd_epi16(s0, ones), _mm256_madd_epi16(s1, ones));
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dx, _mm256_loadu_ps(y->d[2 * h])), acc[c]);
        }
    }
}

/* The entry point: nr (1..4) x nc (1..2) to its instantiation. */
#define TILE_SWITCH(name)                                                                         \
    static void name(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as, int nc, \
                     float *y, size_t ldy)                                                       \
    {                                                                                            \
        switch ((nr - 1) * TILE_C + (nc - 1)) {                                                  \
        case 0: name##_nrc(n, w, ws, 1, a, as, 1, y, ldy); break;                                \
        case 1: name##_nrc(n, w, ws, 1, a, as, 2, y, ldy); break;                                \
        case 2: name##_nrc(n, w, ws, 2, a, as, 1, y, ldy); break;                                \
        case 3: name##_nrc(n, w, ws, 2, a, as, 2, y, ldy); break;                                \
        case 4: name##_nrc(n, w, ws, 3, a, as, 1, y, ldy); break;                                \
        case 5: name##_nrc(n, w, ws, 3, a, as, 2, y, ldy); break;                                \
        case 6: name##_nrc(n, w, ws, 4, a, as, 1, y, ldy); break;                                \
        case 7: name##_nrc(n, w, ws, 4, a, as, 2, y, ldy); break;                                \
        }                                                                                        \
    }

/* One tile of NR x NC; BS is the weight block size in bytes. */
#define TILE_32(name, GROUP, BS)                                                                  \
    static inline __attribute__((always_inline)) void name##_nrc(                               \
        int64_t n, const uint8_t *w, size_t ws, const int NR, const uint8_t *a, size_t as,       \
        const int NC, float *y, size_t ldy)                                                      \
    {                                                                                            \
        const int64_t nb = n / 32, ng = nb / 4;                                                  \
        const int tail = (int)(nb % 4);                                                          \
        const struct sl_q8x4 *ya[TILE_C];                                                        \
        __m256 acc[TILE_R][TILE_C];                                                              \
        for (int c = 0; c < TILE_C; c++) ya[c] = (const struct sl_q8x4 *)(a + (size_t)(c < NC ? c : 0) * as); \
        _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++)                                     \
            _Pragma("GCC unroll 2") for (int c = 0; c < NC; c++) acc[r][c] = _mm256_setzero_ps(); \
        for (int64_t g = 0; g < ng; g++) {                                                       \
            _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++)                                 \
                GROUP(w + (size_t)r * ws + (size_t)g * 4 * BS, 4, ya, (int)g, NC, acc[r]);       \
        }                                                                                        \
        if (tail) {                                                                              \
            _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++)                                 \
                GROUP(w + (size_t)r * ws + (size_t)ng * 4 * BS, tail, ya, (int)ng, NC, acc[r]);  \
        }                                                                                        \
        _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++)                                     \
            _Pragma("GCC unroll 2") for (int c = 0; c < NC; c++)                                 \
                y[(size_t)c * ldy + (size_t)r] = hsum_ps(acc[r][c]);                             \
    }                                                                                            \
    TILE_SWITCH(name)

TILE_32(tile_q4_0, group_q4_0, 18)
TILE_32(tile_q8_0, group_q8_0, 34)

/* Quantize to Q8_0 (bit-exact, quant_q8_0) 64 blocks at a time, then
 * rearrange into q8x4 groups with offset k. */
static inline void pack_q8x4(const float *x, void *out, int64_t n, int k)
{
    struct sl_block_q8_0 tmp[64];
    const int64_t nb = n / 32;
    for (int64_t i = 0; i < nb; i += 64) {
        const int64_t m = nb - i < 64 ? nb - i : 64;
        quant_q8_0(x + 32 * i, tmp, m);
        sl_q8x4_from_q8_0(tmp, m, k, (struct sl_q8x4 *)out + i / 4);
    }
}

static void pack_q4_0(const float *x, void *out, int64_t n)
{
    pack_q8x4(x, out, n, 8);
}

static void pack_q8_0(const float *x, void *out, int64_t n)
{
    pack_q8x4(x, out, n, 0); /* the sign trick needs no offset */
}

/* Q5_0: as Q4_0, plus the fifth bits: for the pair (2h, 2h + 1), bit i of
 * the first u32 below is value i of the low halves (lane 0 = block 2h,
 * lane 1 = block 2h + 1), of the second the high halves; off = -16 sum(a).
 * The two vpmaddubsw sums still fit int16 (2 * 2 * 31 * 127 = 15748). */
static inline __m256i bits_u32(uint32_t u)
{
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                           0x0101010101010101, 0x0000000000000000);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    const __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)u), shuf);
    return _mm256_cmpeq_epi8(_mm256_and_si256(b, bit), bit);
}

static inline __attribute__((always_inline)) void group_q5_0(const uint8_t *p, int nblk,
                                                             const struct sl_q8x4 *const ya[TILE_C], int g,
                                                             const int NC, __m256 acc[TILE_C])
{
    const __m256i m4 = _mm256_set1_epi8(0xF), m16 = _mm256_set1_epi8(0x10), ones = _mm256_set1_epi16(1);
    const __m256 d4 = group_scales(p, 22, nblk);
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        if (2 * h >= nblk) break;
        uint32_t h0, h1 = 0;
        memcpy(&h0, p + 22 * (2 * h) + 2, 4);
        if (2 * h + 1 < nblk) memcpy(&h1, p + 22 * (2 * h + 1) + 2, 4);
        const __m256i q = load_pair(p, 22, 2 * h, 6, nblk);
        const __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4),
                                           _mm256_and_si256(bits_u32((h0 & 0xFFFF) | (h1 << 16)), m16));
        const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
                                           _mm256_and_si256(bits_u32((h0 >> 16) | (h1 & 0xFFFF0000u)), m16));
        const __m256 dx = half_scales(d4, h);
#pragma GCC unroll 2
        for (int c = 0; c < NC; c++) {
            const struct sl_q8x4 *y = ya[c] + g;
            const __m256i p16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)y->lo[2 * h])),
                                                 _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)y->hi[2 * h])));
            const __m256i s = _mm256_add_epi32(_mm256_madd_epi16(p16, ones),
                                               _mm256_loadu_si256((const __m256i *)y->off[2 * h]));
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dx, _mm256_loadu_ps(y->d[2 * h])), acc[c]);
        }
    }
}

TILE_32(tile_q5_0, group_q5_0, 22)

static void pack_q5_0(const float *x, void *out, int64_t n)
{
    pack_q8x4(x, out, n, 16);
}

/* ------------------------------------------------------------------------ */
/* matrix tiles: Q4_K and Q6_K weights against Q8_K activations             */
/* ------------------------------------------------------------------------ */

/*
 * As the per-row dots above, but each 64 (Q4_K) or 32 (Q6_K) weight
 * values are unpacked and their scales shuffled once per tile row and used
 * for every activation row; per activation row an int32 sum per super-block,
 * then one FMA (plus the Q4_K min term).
 */
static inline __attribute__((always_inline)) void sb_q4_K(const struct sl_block_q4_K *x,
                                                          const struct sl_block_q8_K *const ya[TILE_C],
                                                          int64_t i, const int NC, __m256 acc[TILE_C])
{
    const __m256i m4 = _mm256_set1_epi8(0xF);
    const __m256i sm = _mm256_cvtepu8_epi16(k4_scales_mins(x->scales));
    const __m256i sc = _mm256_permute2x128_si256(sm, sm, 0x00);
    const __m128i mins = _mm256_extracti128_si256(sm, 1);
    const float d = h2f(x->d), dmin = h2f(x->dmin);
    __m256i sumi[TILE_C];
#pragma GCC unroll 2
    for (int c = 0; c < NC; c++) sumi[c] = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
        const __m256i bits = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * g));
        const __m256i ql = _mm256_and_si256(bits, m4), qh = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
        const __m256i sl = _mm256_shuffle_epi8(sc, scale_bcast(2 * g)), sh = _mm256_shuffle_epi8(sc, scale_bcast(2 * g + 1));
#pragma GCC unroll 2
        for (int c = 0; c < NC; c++) {
            const int8_t *q8 = ya[c][i].qs + 64 * g;
            const __m256i pl = _mm256_maddubs_epi16(ql, _mm256_loadu_si256((const __m256i *)q8));
            const __m256i ph = _mm256_maddubs_epi16(qh, _mm256_loadu_si256((const __m256i *)(q8 + 32)));
            sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(_mm256_madd_epi16(sl, pl), _mm256_madd_epi16(sh, ph)));
        }
    }
#pragma GCC unroll 2
    for (int c = 0; c < NC; c++) {
        const struct sl_block_q8_K *y = ya[c] + i;
        const __m256i bs = _mm256_loadu_si256((const __m256i *)y->bsums);
        const __m128i bs2 = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
        const __m256 summs = _mm256_castps128_ps256(_mm_cvtepi32_ps(_mm_madd_epi16(mins, bs2)));
        acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * y->d), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
        /* the upper lanes of summs are zero (cast of a 128-bit value is
         * undefined above; blend them away) */
        acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(-dmin * y->d), _mm256_blend_ps(_mm256_setzero_ps(), summs, 0x0F), acc[c]);
    }
}

static inline __attribute__((always_inline)) void sb_q6_K(const struct sl_block_q6_K *x,
                                                          const struct sl_block_q8_K *const ya[TILE_C],
                                                          int64_t i, const int NC, __m256 acc[TILE_C])
{
    const __m256i m4 = _mm256_set1_epi8(0xF), m2 = _mm256_set1_epi8(0x30);
    const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
    const float d = h2f(x->d);
    __m256i sumi[TILE_C];
#pragma GCC unroll 2
    for (int c = 0; c < NC; c++) {
        const __m256i offs = _mm256_madd_epi16(sc, _mm256_loadu_si256((const __m256i *)ya[c][i].bsums));
        sumi[c] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(offs, 5));
    }
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        const __m256i sch = h ? _mm256_permute2x128_si256(sc, sc, 0x11) : _mm256_permute2x128_si256(sc, sc, 0x00);
        const __m256i l0 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h));
        const __m256i l1 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h + 32));
        const __m256i hb = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * h));
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            const __m256i l = r & 1 ? l1 : l0;
            const __m256i lo4 = r < 2 ? _mm256_and_si256(l, m4) : _mm256_and_si256(_mm256_srli_epi16(l, 4), m4);
            const __m256i hi2 = r == 0 ? _mm256_slli_epi16(hb, 4)
                              : r == 1 ? _mm256_slli_epi16(hb, 2)
                              : r == 2 ? hb
                                       : _mm256_srli_epi16(hb, 2);
            const __m256i q = _mm256_or_si256(lo4, _mm256_and_si256(hi2, m2));
            const __m256i s = _mm256_shuffle_epi8(sch, scale_pair(r));
#pragma GCC unroll 2
            for (int c = 0; c < NC; c++) {
                const int8_t *q8 = ya[c][i].qs + 128 * h + 32 * r;
                const __m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)q8));
                sumi[c] = _mm256_add_epi32(sumi[c], _mm256_madd_epi16(s, p));
            }
        }
    }
#pragma GCC unroll 2
    for (int c = 0; c < NC; c++)
        acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * ya[c][i].d), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
}

#define TILE_K(name, SB, WT)                                                                      \
    static inline __attribute__((always_inline)) void name##_nrc(                               \
        int64_t n, const uint8_t *w, size_t ws, const int NR, const uint8_t *a, size_t as,       \
        const int NC, float *y, size_t ldy)                                                      \
    {                                                                                            \
        const int64_t nb = n / SL_QK_K;                                                          \
        const struct sl_block_q8_K *ya[TILE_C];                                                  \
        __m256 acc[TILE_R][TILE_C];                                                              \
        for (int c = 0; c < TILE_C; c++) ya[c] = (const struct sl_block_q8_K *)(a + (size_t)(c < NC ? c : 0) * as); \
        _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++)                                     \
            _Pragma("GCC unroll 2") for (int c = 0; c < NC; c++) acc[r][c] = _mm256_setzero_ps(); \
        for (int64_t i = 0; i < nb; i++) {                                                       \
            _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++)                                 \
                SB((const WT *)(w + (size_t)r * ws) + i, ya, i, NC, acc[r]);                     \
        }                                                                                        \
        _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++)                                     \
            _Pragma("GCC unroll 2") for (int c = 0; c < NC; c++)                                 \
                y[(size_t)c * ldy + (size_t)r] = hsum_ps(acc[r][c]);                             \
    }                                                                                            \
    TILE_SWITCH(name)

TILE_K(tile_q4_K, sb_q4_K, struct sl_block_q4_K)
TILE_K(tile_q6_K, sb_q6_K, struct sl_block_q6_K)

static size_t q8_K_size(int64_t n)
{
    return sl_row_size(SL_TYPE_Q8_K, n);
}

static void pack_q8_K(const float *x, void *out, int64_t n)
{
    quant_q8_K(x, out, n / SL_QK_K);
}

/* ------------------------------------------------------------------------ */
/* matrix tiles: F16 and BF16 weights                                        */
/* ------------------------------------------------------------------------ */

/* As the AVX-512 file: activations packed as floats rounded through the
 * dot type; the weights converted once per tile row and 8 values; U = 4
 * partial sums for tiles of fewer than four pairs. The last n % 8 values
 * in scalar code. */
#define TILE_F(name, LOAD, CVT)                                                                   \
    static inline __attribute__((always_inline)) void name##_nrc(                               \
        int64_t n, const uint8_t *w, size_t ws, const int NR, const uint8_t *a, size_t as,       \
        const int NC, float *y, size_t ldy)                                                      \
    {                                                                                            \
        enum { U_MAX = 4 };                                                                      \
        const int U = NR * NC >= 4 ? 1 : U_MAX;                                                  \
        __m256 acc[TILE_R][TILE_C][U_MAX];                                                       \
        int64_t i = 0;                                                                           \
        _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++)                                     \
            _Pragma("GCC unroll 2") for (int c = 0; c < NC; c++)                                 \
                _Pragma("GCC unroll 4") for (int u = 0; u < U; u++) acc[r][c][u] = _mm256_setzero_ps(); \
        for (; i + 8 * U <= n; i += 8 * U) {                                                     \
            _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++)                                 \
                _Pragma("GCC unroll 4") for (int u = 0; u < U; u++) {                            \
                    const __m256 wv = LOAD((const uint16_t *)(w + (size_t)r * ws) + i + 8 * u);  \
                    _Pragma("GCC unroll 2") for (int c = 0; c < NC; c++)                         \
                        acc[r][c][u] = _mm256_fmadd_ps(                                          \
                            wv, _mm256_loadu_ps((const float *)(a + (size_t)c * as) + i + 8 * u), acc[r][c][u]); \
                }                                                                                \
        }                                                                                        \
        for (; i + 8 <= n; i += 8) {                                                             \
            _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++) {                               \
                const __m256 wv = LOAD((const uint16_t *)(w + (size_t)r * ws) + i);              \
                _Pragma("GCC unroll 2") for (int c = 0; c < NC; c++)                             \
                    acc[r][c][0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps((const float *)(a + (size_t)c * as) + i), acc[r][c][0]); \
            }                                                                                    \
        }                                                                                        \
        _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++)                                     \
            _Pragma("GCC unroll 2") for (int c = 0; c < NC; c++) {                               \
                __m256 s = acc[r][c][0];                                                         \
                _Pragma("GCC unroll 4") for (int u = 1; u < U; u++) s = _mm256_add_ps(s, acc[r][c][u]); \
                float t = hsum_ps(s);                                                            \
                const uint16_t *wr = (const uint16_t *)(w + (size_t)r * ws);                     \
                const float *ac = (const float *)(a + (size_t)c * as);                           \
                for (int64_t k = i; k < n; k++) t += CVT(wr[k]) * ac[k];                         \
                y[(size_t)c * ldy + (size_t)r] = t;                                              \
            }                                                                                    \
    }                                                                                            \
    TILE_SWITCH(name)

static inline float bf2f(uint16_t h)
{
    return sl_bf16_to_fp32(h);
}

TILE_F(tile_f16, load_f16, h2f)
TILE_F(tile_bf16, load_bf16, bf2f)

static size_t f32_size(int64_t n)
{
    return (size_t)n * sizeof(float);
}

/* x rounded to F16 (BF16) and back, 256 values at a time. */
static void pack_f16(const float *x, void *out, int64_t n)
{
    uint16_t h[256];
    float *o = out;
    for (int64_t i = 0; i < n; i += 256) {
        const int64_t m = n - i < 256 ? n - i : 256;
        quant_f16(x + i, h, m);
        for (int64_t j = 0; j < m; j++) o[i + j] = h2f(h[j]);
    }
}

static void pack_bf16(const float *x, void *out, int64_t n)
{
    uint16_t h[256];
    float *o = out;
    for (int64_t i = 0; i < n; i += 256) {
        const int64_t m = n - i < 256 ? n - i : 256;
        quant_bf16(x + i, h, m);
        for (int64_t j = 0; j < m; j++) o[i + j] = sl_bf16_to_fp32(h[j]);
    }
}

/*
 * F16 and BF16 row panels (kernels.h): per value index k, two 128-bit
 * loads give the k-th weight of rows 0..7 and 8..15 as two float vectors
 * (vcvtph2ps; BF16 a zero-extend and a shift); each of the NC activation
 * rows broadcasts its k-th value once and does two FMAs. Float lane r of
 * half h is row 8h + r, so y gets plain stores, no horizontal sums. NC up
 * to 6 fills 12 accumulators + 2 weights + 1 broadcast of the 16 ymm
 * registers; with 1 or 2 activation rows (decode runs 1) U = 4 or 2
 * partial sums over k, k + 1, .. keep 8 FMA chains in flight. The
 * activations are the pack_f16 / pack_bf16 rows. From 3 activation rows
 * on, each call also prefetches the next panel to L2, as in the AVX-512
 * file.
 */
#define PANEL_F_C 6 /* most activation rows per call */

static inline __m256 panel_ld_f16(const uint8_t *p)
{
    return _mm256_cvtph_ps(_mm_load_si128((const __m128i *)p));
}

static inline __m256 panel_ld_bf16(const uint8_t *p)
{
    const __m256i w = _mm256_cvtepu16_epi32(_mm_load_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

#define PANEL_F(name, LOAD)                                                                       \
    static inline __attribute__((always_inline)) void name##_nc(int64_t n, const uint8_t *p,     \
                                                                const uint8_t *a, size_t as,     \
                                                                const int NC, int nr, float *y,  \
                                                                size_t ldy)                      \
    {                                                                                            \
        enum { U_MAX = 4 };                                                                      \
        const int U = NC >= 3 ? 1 : NC == 2 ? 2 : U_MAX;                                         \
        const float *x[PANEL_F_C];                                                               \
        __m256 acc[U_MAX][PANEL_F_C][2];                                                         \
        _Pragma("GCC unroll 6") for (int c = 0; c < NC; c++) {                                   \
            x[c] = (const float *)(a + (size_t)c * as);                                          \
            _Pragma("GCC unroll 4") for (int u = 0; u < U; u++) acc[u][c][0] = acc[u][c][1] = _mm256_setzero_ps(); \
        }                                                                                        \
        const uint8_t *next = p + (size_t)((n + 1) / 2) * 64;                                    \
        int64_t k = 0;                                                                           \
        for (; k + 2 * U <= n; k += 2 * U) {                                                     \
            if (NC >= 3) _mm_prefetch((const char *)(next + 32 * (size_t)k), _MM_HINT_T1);      \
            _Pragma("GCC unroll 8") for (int u = 0; u < 2 * U; u++) {                            \
                const uint8_t *q = p + 32 * (size_t)(k + u);                                     \
                const __m256 w0 = LOAD(q), w1 = LOAD(q + 16);                                    \
                _Pragma("GCC unroll 6") for (int c = 0; c < NC; c++) {                           \
                    const __m256 b = _mm256_broadcast_ss(x[c] + k + u);                          \
                    acc[u % U][c][0] = _mm256_fmadd_ps(w0, b, acc[u % U][c][0]);                 \
                    acc[u % U][c][1] = _mm256_fmadd_ps(w1, b, acc[u % U][c][1]);                 \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
        for (; k < n; k++) {                                                                     \
            const uint8_t *q = p + 32 * (size_t)k;                                               \
            const __m256 w0 = LOAD(q), w1 = LOAD(q + 16);                                        \
            _Pragma("GCC unroll 6") for (int c = 0; c < NC; c++) {                               \
                const __m256 b = _mm256_broadcast_ss(x[c] + k);                                  \
                acc[0][c][0] = _mm256_fmadd_ps(w0, b, acc[0][c][0]);                             \
                acc[0][c][1] = _mm256_fmadd_ps(w1, b, acc[0][c][1]);                             \
            }                                                                                    \
        }                                                                                        \
        _Pragma("GCC unroll 6") for (int c = 0; c < NC; c++) {                                   \
            __m256 s0 = acc[0][c][0], s1 = acc[0][c][1];                                         \
            _Pragma("GCC unroll 4") for (int u = 1; u < U; u++) {                                \
                s0 = _mm256_add_ps(s0, acc[u][c][0]);                                            \
                s1 = _mm256_add_ps(s1, acc[u][c][1]);                                            \
            }                                                                                    \
            float *o = y + (size_t)c * ldy;                                                      \
            if (nr >= 16) {                                                                      \
                _mm256_storeu_ps(o, s0);                                                         \
                _mm256_storeu_ps(o + 8, s1);                                                     \
            } else {                                                                             \
                float t[16];                                                                     \
                _mm256_storeu_ps(t, s0);                                                         \
                _mm256_storeu_ps(t + 8, s1);                                                     \
                memcpy(o, t, (size_t)nr * sizeof(float));                                        \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
    static void name(int64_t n, const void *p, const void *a, size_t as, int nc, int nr, float *y, \
                     size_t ldy)                                                                 \
    {                                                                                            \
        switch (nc) {                                                                            \
        case 1: name##_nc(n, p, a, as, 1, nr, y, ldy); break;                                    \
        case 2: name##_nc(n, p, a, as, 2, nr, y, ldy); break;                                    \
        case 3: name##_nc(n, p, a, as, 3, nr, y, ldy); break;                                    \
        case 4: name##_nc(n, p, a, as, 4, nr, y, ldy); break;                                    \
        case 5: name##_nc(n, p, a, as, 5, nr, y, ldy); break;                                    \
        default: name##_nc(n, p, a, as, 6, nr, y, ldy); break;                                   \
        }                                                                                        \
    }

PANEL_F(panel_f16, panel_ld_f16)
PANEL_F(panel_bf16, panel_ld_bf16)

/* ------------------------------------------------------------------------ */
/* row panels: weights repacked 16 rows at a time (kernels.h)               */
/* ------------------------------------------------------------------------ */

/*
 * The AVX-512 layout read 256 bits at a time: the first 32 bytes of a
 * 64-byte chunk are rows 0..7 (int32 lane r = 4 values of row r), the
 * second rows 8..15, and the 16 fp16 scales of a block split the same way.
 * A panel is worked half by half (8 rows); per activation row a 4-byte
 * chunk of activations is broadcast and multiplied into all 8 rows with
 * one vpmaddubsw. There is no VNNI: the int16 pair sums are widened by
 * one vpmaddwd per block (Q4_0) or per chunk (Q8_0).
 *   Q4_0: both nibbles masked down to 0..15, so each vpmaddubsw is at most
 *         15 * 128 * 2 = 3840 and the 8 of a block add up in int16 (30720);
 *         the offset 8 is taken off as -8 * sum(a), once per block.
 *   Q8_0: the bytes are w + 128; w is back after one xor, and vpmaddubsw
 *         takes |w| times sign(a, w) (at most 32512, see the top), so each
 *         chunk is widened on its own.
 */
#define PANEL_C 4 /* most activation rows per call (Q8_0, Q5_0; Q4_0 takes 2) */

static inline int32_t ld32(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline __m256i bcast4(const int8_t *p)
{
    return _mm256_set1_epi32(ld32(p));
}

/* acc[c][h] (rows 8h..8h+7 of activation row c) to y, nr rows of 16. */
static inline __attribute__((always_inline)) void panel_store(__m256 acc[PANEL_C][2], const int NC, int nr, float *y,
                                                              size_t ldy)
{
    for (int c = 0; c < NC; c++) {
        float *o = y + (size_t)c * ldy;
        if (nr >= 16) {
            _mm256_storeu_ps(o, acc[c][0]);
            _mm256_storeu_ps(o + 8, acc[c][1]);
        } else {
            float t[16];
            _mm256_storeu_ps(t, acc[c][0]);
            _mm256_storeu_ps(t + 8, acc[c][1]);
            memcpy(o, t, (size_t)nr * sizeof(float));
        }
    }
}

static inline __attribute__((always_inline)) void panel_q4_0_nc(int64_t n, const uint8_t *p, const uint8_t *a,
                                                                size_t as, const int NC, int nr, float *y,
                                                                size_t ldy)
{
    const int64_t nb = n / 32;
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    __m256 acc[PANEL_C][2];
    for (int c = 0; c < NC; c++) acc[c][0] = acc[c][1] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = p + (size_t)(b / 2) * (64 + 2 * 256);
        const uint8_t *qs = blk + 64 + (b % 2) * 256;
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256 dw = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(blk + 32 * (b % 2) + 16 * h)));
            __m256i lo[4], hi[4];
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const __m256i raw = _mm256_load_si256((const __m256i *)(qs + 64 * k + 32 * h));
                lo[k] = _mm256_and_si256(raw, m4);
                hi[k] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            }
#pragma GCC unroll 2
            for (int c = 0; c < NC; c++) {
                const struct sl_q8s *x = (const struct sl_q8s *)(a + (size_t)c * as) + b;
                __m256i s0 = _mm256_maddubs_epi16(lo[0], bcast4(x->qs));
                __m256i s1 = _mm256_maddubs_epi16(hi[0], bcast4(x->qs + 16));
#pragma GCC unroll 4
                for (int k = 1; k < 4; k++) {
                    s0 = _mm256_add_epi16(s0, _mm256_maddubs_epi16(lo[k], bcast4(x->qs + 4 * k)));
                    s1 = _mm256_add_epi16(s1, _mm256_maddubs_epi16(hi[k], bcast4(x->qs + 16 + 4 * k)));
                }
                const __m256i s = _mm256_add_epi32(_mm256_madd_epi16(_mm256_add_epi16(s0, s1), ones),
                                                   _mm256_set1_epi32(-8 * x->sum));
                acc[c][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_set1_ps(x->d)), acc[c][h]);
            }
        }
    }
    panel_store(acc, NC, nr, y, ldy);
}

static inline __attribute__((always_inline)) void panel_q8_0_nc(int64_t n, const uint8_t *p, const uint8_t *a,
                                                                size_t as, const int NC, int nr, float *y,
                                                                size_t ldy)
{
    const int64_t nb = n / 32;
    const __m256i m80 = _mm256_set1_epi8((char)0x80), ones = _mm256_set1_epi16(1);
    __m256 acc[PANEL_C][2];
    for (int c = 0; c < NC; c++) acc[c][0] = acc[c][1] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = p + (size_t)(b / 2) * (64 + 2 * 512);
        const uint8_t *qs = blk + 64 + (b % 2) * 512;
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256 dw = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(blk + 32 * (b % 2) + 16 * h)));
            __m256i s[PANEL_C];
            for (int c = 0; c < NC; c++) s[c] = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) {
                const __m256i w = _mm256_xor_si256(_mm256_load_si256((const __m256i *)(qs + 64 * k + 32 * h)), m80);
                const __m256i aw = _mm256_abs_epi8(w);
#pragma GCC unroll 4
                for (int c = 0; c < NC; c++) {
                    const struct sl_q8s *x = (const struct sl_q8s *)(a + (size_t)c * as) + b;
                    const __m256i sa = _mm256_sign_epi8(bcast4(x->qs + 4 * k), w);
                    s[c] = _mm256_add_epi32(s[c], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sa), ones));
                }
            }
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) {
                const struct sl_q8s *x = (const struct sl_q8s *)(a + (size_t)c * as) + b;
                acc[c][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[c]), _mm256_mul_ps(dw, _mm256_set1_ps(x->d)), acc[c][h]);
            }
        }
    }
    panel_store(acc, NC, nr, y, ldy);
}

/* Q4_K: per super-block and half, for each sub-block pair g the 8 chunks'
 * low nibbles (sub-block 2g) and high ones (2g + 1) summed in int16 (at
 * most 8 * 15 * 128 * 2 = 30720), widened against the rows' scales with
 * one vpmaddwd each (the scale in both int16 halves of lane r); the mins
 * term against the activation's sub-block sums (bsums). */
static inline __m256i scale_pairs(const uint8_t *p)
{
    const __m256i s = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
    return _mm256_or_si256(s, _mm256_slli_epi32(s, 16));
}

static inline __attribute__((always_inline)) void panel_q4_K_nc(int64_t n, const uint8_t *p, const uint8_t *a,
                                                                size_t as, const int NC, int nr, float *y,
                                                                size_t ldy)
{
    const int64_t nb = n / SL_QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[PANEL_C][2];
    for (int c = 0; c < NC; c++) acc[c][0] = acc[c][1] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *o = p + (size_t)i * (64 + 2 * 128 + 2048);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i sumi[PANEL_C], summ[PANEL_C];
            for (int c = 0; c < NC; c++) sumi[c] = summ[c] = _mm256_setzero_si256();
            for (int g = 0; g < 4; g++) {
                __m256i sl[PANEL_C], sh[PANEL_C];
                for (int c = 0; c < NC; c++) sl[c] = sh[c] = _mm256_setzero_si256();
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++) {
                    const __m256i raw = _mm256_load_si256((const __m256i *)(o + 320 + 512 * g + 64 * k + 32 * h));
                    const __m256i lo = _mm256_and_si256(raw, m4);
                    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
#pragma GCC unroll 2
                    for (int c = 0; c < NC; c++) {
                        const struct sl_block_q8_K *x = (const struct sl_block_q8_K *)(a + (size_t)c * as) + i;
                        sl[c] = _mm256_add_epi16(sl[c], _mm256_maddubs_epi16(lo, bcast4(x->qs + 64 * g + 4 * k)));
                        sh[c] = _mm256_add_epi16(sh[c],
                                                 _mm256_maddubs_epi16(hi, bcast4(x->qs + 64 * g + 32 + 4 * k)));
                    }
                }
                const __m256i sc0 = scale_pairs(o + 64 + 16 * (2 * g) + 8 * h);
                const __m256i sc1 = scale_pairs(o + 64 + 16 * (2 * g + 1) + 8 * h);
#pragma GCC unroll 2
                for (int c = 0; c < NC; c++)
                    sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(_mm256_madd_epi16(sl[c], sc0),
                                                                         _mm256_madd_epi16(sh[c], sc1)));
            }
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) {
                const __m256i mn = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(o + 192 + 16 * j + 8 * h)));
#pragma GCC unroll 2
                for (int c = 0; c < NC; c++) {
                    const struct sl_block_q8_K *x = (const struct sl_block_q8_K *)(a + (size_t)c * as) + i;
                    summ[c] = _mm256_add_epi32(
                        summ[c], _mm256_mullo_epi32(mn, _mm256_set1_epi32(x->bsums[2 * j] + x->bsums[2 * j + 1])));
                }
            }
            const __m256 dw = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(o + 16 * h)));
            const __m256 dmw = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(o + 32 + 16 * h)));
#pragma GCC unroll 2
            for (int c = 0; c < NC; c++) {
                const struct sl_block_q8_K *x = (const struct sl_block_q8_K *)(a + (size_t)c * as) + i;
                const __m256 da = _mm256_set1_ps(x->d);
                acc[c][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[c]), _mm256_mul_ps(dw, da), acc[c][h]);
                acc[c][h] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(summ[c]), _mm256_mul_ps(dmw, da), acc[c][h]);
            }
        }
    }
    panel_store(acc, NC, nr, y, ldy);
}

/* Q5_0 (layout: kernels.h; as the avx512 kernel): the high values are
 * the bytes' bits 3-7 (an and and a shift: vpmaddubsw cannot take 8 hi),
 * the low ones bits 0-2 or'ed with 8 (lo >> 3), looked up by vpshufb from
 * the nibbles of the block's upper bytes (split once per half block). The
 * values reach 31, so the four vpmaddubsw of the low values add up in
 * int16 (4 * 2 * 31 * 127 = 31496), the four of the high ones likewise,
 * and the two are widened apart; the offset 16 is taken off as
 * -16 * sum(a), once per block. */
static inline __attribute__((always_inline)) void panel_q5_0_nc(int64_t n, const uint8_t *p, const uint8_t *a,
                                                                size_t as, const int NC, int nr, float *y,
                                                                size_t ldy)
{
    const int64_t nb = n / 32;
    const __m256i m7 = _mm256_set1_epi8(0x07), m_hi = _mm256_set1_epi8((char)0xF8);
    const __m256i m_nib = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    /* 8 * (lo >> 3) from a nibble: bits 0-1 (chunks 0, 2), bits 2-3 (1, 3) */
    const __m128i t0 = _mm_setr_epi8(0, 8, 16, 24, 0, 8, 16, 24, 0, 8, 16, 24, 0, 8, 16, 24);
    const __m128i t1 = _mm_setr_epi8(0, 0, 0, 0, 8, 8, 8, 8, 16, 16, 16, 16, 24, 24, 24, 24);
    const __m256i up[2] = {_mm256_broadcastsi128_si256(t0), _mm256_broadcastsi128_si256(t1)};
    __m256 acc[PANEL_C][2];
    for (int c = 0; c < NC; c++) acc[c][0] = acc[c][1] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = p + (size_t)(b / 2) * (64 + 2 * (64 + 256));
        const uint8_t *ub = blk + 64 + (b % 2) * 64;
        const uint8_t *qs = blk + 64 + 2 * 64 + (b % 2) * 256;
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256 dw = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(blk + 32 * (b % 2) + 16 * h)));
            const __m256i u = _mm256_load_si256((const __m256i *)(ub + 32 * h));
            const __m256i ix[2] = {_mm256_and_si256(u, m_nib),
                                   _mm256_and_si256(_mm256_srli_epi16(u, 4), m_nib)};
            __m256i lo[4], hi[4];
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const __m256i raw = _mm256_load_si256((const __m256i *)(qs + 64 * k + 32 * h));
                const __m256i u8 = _mm256_shuffle_epi8(up[k % 2], ix[k / 2]); /* 8 (lo >> 3) */
                lo[k] = _mm256_or_si256(_mm256_and_si256(raw, m7), u8);
                /* a 16-bit shift: bits 0-2 of the upper byte are 0 after the and */
                hi[k] = _mm256_srli_epi16(_mm256_and_si256(raw, m_hi), 3);
            }
#pragma GCC unroll 2
            for (int c = 0; c < NC; c++) {
                const struct sl_q8s *x = (const struct sl_q8s *)(a + (size_t)c * as) + b;
                __m256i s0 = _mm256_maddubs_epi16(lo[0], bcast4(x->qs));
                __m256i s1 = _mm256_maddubs_epi16(hi[0], bcast4(x->qs + 16));
#pragma GCC unroll 4
                for (int k = 1; k < 4; k++) {
                    s0 = _mm256_add_epi16(s0, _mm256_maddubs_epi16(lo[k], bcast4(x->qs + 4 * k)));
                    s1 = _mm256_add_epi16(s1, _mm256_maddubs_epi16(hi[k], bcast4(x->qs + 16 + 4 * k)));
                }
                const __m256i s = _mm256_add_epi32(_mm256_add_epi32(_mm256_madd_epi16(s0, ones),
                                                                    _mm256_madd_epi16(s1, ones)),
                                                   _mm256_set1_epi32(-16 * x->sum));
                acc[c][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_set1_ps(x->d)), acc[c][h]);
            }
        }
    }
    panel_store(acc, NC, nr, y, ldy);
}

/* Q6_K: per super-block and half (rows 8h .. 8h + 7), each chunk's four
 * 6-bit values (0..63: a nibble of ql[64s + 4k ..] or ql[64s + 32 + 4k ..]
 * with two bits of qh[32s + 4k ..]) go by vpmaddubsw against the
 * activations at 128s + 32q + 4k. Two chunks of one 16-value sub-block add
 * up in int16 (2 * 2 * 63 * 127 = 32004); each such sum is widened against
 * the rows' int8 scale of the sub-block (in both int16 halves of lane r)
 * by one vpmaddwd. The offset 32 comes off once per super-block as
 * 32 * sum_j scale_j * bsums[j]: 8 vpmaddwd of scale pairs against
 * bsums pairs. */
static inline __m256i scale_i8_pair(const uint8_t *p)
{
    const __m256i s = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p));
    return _mm256_or_si256(_mm256_and_si256(s, _mm256_set1_epi32(0xFFFF)), _mm256_slli_epi32(s, 16));
}

static inline __attribute__((always_inline)) void panel_q6_K_nc(int64_t n, const uint8_t *p, const uint8_t *a,
                                                                size_t as, const int NC, int nr, float *y,
                                                                size_t ldy)
{
    const int64_t nb = n / SL_QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30), lo16 = _mm256_set1_epi32(0xFFFF);
    __m256 acc[PANEL_C][2];
    for (int c = 0; c < NC; c++) acc[c][0] = acc[c][1] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *o = p + (size_t)i * (64 + 256 + 2048 + 1024);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i sumi[PANEL_C];
            for (int c = 0; c < NC; c++) sumi[c] = _mm256_setzero_si256();
            /* the offset: -32 * sum_j scale_j * bsums[j] */
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) {
                const uint8_t *sj = o + 64 + 32 * j + 8 * h; /* sub-blocks 2j, 2j + 1 */
                const __m256i s0 = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)sj));
                const __m256i s1 = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(sj + 16)));
                const __m256i sp = _mm256_or_si256(_mm256_and_si256(s0, lo16), _mm256_slli_epi32(s1, 16));
#pragma GCC unroll 2
                for (int c = 0; c < NC; c++) {
                    const struct sl_block_q8_K *x = (const struct sl_block_q8_K *)(a + (size_t)c * as) + i;
                    int32_t bp;
                    memcpy(&bp, x->bsums + 2 * j, 4);
                    sumi[c] = _mm256_sub_epi32(sumi[c],
                                               _mm256_slli_epi32(_mm256_madd_epi16(sp, _mm256_set1_epi32(bp)), 5));
                }
            }
            for (int s = 0; s < 2; s++)
                for (int kk = 0; kk < 2; kk++)
#pragma GCC unroll 2
                    for (int pr = 0; pr < 2; pr++) {
                        __m256i t[4][PANEL_C];
#pragma GCC unroll 4
                        for (int q = 0; q < 4; q++)
#pragma GCC unroll 2
                            for (int c = 0; c < NC; c++) t[q][c] = _mm256_setzero_si256();
#pragma GCC unroll 2
                        for (int k = 4 * kk + 2 * pr; k < 4 * kk + 2 * pr + 2; k++) {
                            const uint8_t *ch = o + 320 + 192 * (8 * s + k) + 32 * h;
                            const __m256i qa = _mm256_load_si256((const __m256i *)ch);
                            const __m256i qb = _mm256_load_si256((const __m256i *)(ch + 64));
                            const __m256i hq = _mm256_load_si256((const __m256i *)(ch + 128));
                            __m256i v[4];
                            v[0] = _mm256_or_si256(_mm256_and_si256(qa, m4), _mm256_and_si256(_mm256_slli_epi16(hq, 4), m30));
                            v[1] = _mm256_or_si256(_mm256_and_si256(qb, m4), _mm256_and_si256(_mm256_slli_epi16(hq, 2), m30));
                            v[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qa, 4), m4), _mm256_and_si256(hq, m30));
                            v[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), m4),
                                                   _mm256_and_si256(_mm256_srli_epi16(hq, 2), m30));
#pragma GCC unroll 2
                            for (int c = 0; c < NC; c++) {
                                const struct sl_block_q8_K *x = (const struct sl_block_q8_K *)(a + (size_t)c * as) + i;
#pragma GCC unroll 4
                                for (int q = 0; q < 4; q++)
                                    t[q][c] = _mm256_add_epi16(
                                        t[q][c], _mm256_maddubs_epi16(v[q], bcast4(x->qs + 128 * s + 32 * q + 4 * k)));
                            }
                        }
#pragma GCC unroll 4
                        for (int q = 0; q < 4; q++) {
                            const __m256i sc = scale_i8_pair(o + 64 + 16 * (8 * s + 2 * q + kk) + 8 * h);
#pragma GCC unroll 2
                            for (int c = 0; c < NC; c++) sumi[c] = _mm256_add_epi32(sumi[c], _mm256_madd_epi16(t[q][c], sc));
                        }
                    }
            const __m256 dw = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(o + 16 * h)));
#pragma GCC unroll 2
            for (int c = 0; c < NC; c++) {
                const struct sl_block_q8_K *x = (const struct sl_block_q8_K *)(a + (size_t)c * as) + i;
                acc[c][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[c]), _mm256_mul_ps(dw, _mm256_set1_ps(x->d)), acc[c][h]);
            }
        }
    }
    panel_store(acc, NC, nr, y, ldy);
}

#define PANEL_SWITCH(name)                                                                       \
    static void name(int64_t n, const void *p, const void *a, size_t as, int nc, int nr, float *y, \
                     size_t ldy)                                                                \
    {                                                                                           \
        if (nc == 1) name##_nc(n, p, a, as, 1, nr, y, ldy);                                     \
        else name##_nc(n, p, a, as, 2, nr, y, ldy);                                             \
    }

PANEL_SWITCH(panel_q4_0)
PANEL_SWITCH(panel_q4_K)

/* Q5_0 takes up to 4 activation rows per call: the lo/hi registers spill
 * at 3 and 4, and still 4 rows in one call beat two calls of 2 by 1.26x
 * in L2 (3 rows: 1.10x over 2 + 1; docs/performance.md, "Q5_0 panels"). */
static void panel_q5_0(int64_t n, const void *p, const void *a, size_t as, int nc, int nr, float *y,
                       size_t ldy)
{
    switch (nc) {
    case 1: panel_q5_0_nc(n, p, a, as, 1, nr, y, ldy); break;
    case 2: panel_q5_0_nc(n, p, a, as, 2, nr, y, ldy); break;
    case 3: panel_q5_0_nc(n, p, a, as, 3, nr, y, ldy); break;
    default: panel_q5_0_nc(n, p, a, as, 4, nr, y, ldy); break;
    }
}

PANEL_SWITCH(panel_q6_K)

static void panel_q8_0(int64_t n, const void *p, const void *a, size_t as, int nc, int nr, float *y, size_t ldy)
{
    switch (nc) {
    case 1: panel_q8_0_nc(n, p, a, as, 1, nr, y, ldy); break;
    case 2: panel_q8_0_nc(n, p, a, as, 2, nr, y, ldy); break;
    case 3: panel_q8_0_nc(n, p, a, as, 3, nr, y, ldy); break;
    default: panel_q8_0_nc(n, p, a, as, 4, nr, y, ldy); break;
    }
}

/* Q8_0 (bit-exact, quant_q8_0) 64 blocks at a time, then the block sums. */
static void pack_q8s(const float *x, void *out, int64_t n)
{
    struct sl_block_q8_0 tmp[64];
    const int64_t nb = n / 32;
    for (int64_t i = 0; i < nb; i += 64) {
        const int64_t m = nb - i < 64 ? nb - i : 64;
        quant_q8_0(x + 32 * i, tmp, m);
        sl_q8s_from_q8_0(tmp, m, (struct sl_q8s *)out + i);
    }
}

/* ------------------------------------------------------------------------ */
/* the table                                                                 */
/* ------------------------------------------------------------------------ */

const struct sl_kernels sl_kernels_avx2 = {
    .name = "avx2",
    .vec_dot =
        {
            [SL_TYPE_F32] = dot_f32,   [SL_TYPE_F16] = dot_f16,   [SL_TYPE_BF16] = dot_bf16,
            [SL_TYPE_Q4_0] = dot_q4_0, [SL_TYPE_Q4_1] = dot_q4_1, [SL_TYPE_Q5_0] = dot_q5_0,
            [SL_TYPE_Q5_1] = dot_q5_1, [SL_TYPE_Q8_0] = dot_q8_0, [SL_TYPE_Q2_K] = dot_q2_K,
            [SL_TYPE_Q3_K] = dot_q3_K, [SL_TYPE_Q4_K] = dot_q4_K, [SL_TYPE_Q5_K] = dot_q5_K,
            [SL_TYPE_Q6_K] = dot_q6_K,
        },
    .mm =
        {
            [SL_TYPE_Q4_0] = {sl_q8x4_size, pack_q4_0, tile_q4_0, TILE_R, TILE_C, 1},
            [SL_TYPE_Q8_0] = {sl_q8x4_size, pack_q8_0, tile_q8_0, TILE_R, TILE_C, 1},
            [SL_TYPE_Q5_0] = {sl_q8x4_size, pack_q5_0, tile_q5_0, TILE_R, TILE_C, 1},
            [SL_TYPE_Q4_K] = {q8_K_size, pack_q8_K, tile_q4_K, TILE_R, TILE_C, 2},
            [SL_TYPE_Q6_K] = {q8_K_size, pack_q8_K, tile_q6_K, TILE_R, TILE_C, 2},
            [SL_TYPE_F16] = {f32_size, pack_f16, tile_f16, TILE_R, TILE_C, 2},
            [SL_TYPE_BF16] = {f32_size, pack_bf16, tile_bf16, TILE_R, TILE_C, 2},
        },
    .quantize_row = quantize_row,
    .panel =
        {
            [SL_TYPE_Q4_0] = {sl_q8s_size, pack_q8s, panel_q4_0, 2},
            [SL_TYPE_Q8_0] = {sl_q8s_size, pack_q8s, panel_q8_0, PANEL_C},
            [SL_TYPE_Q4_K] = {q8_K_size, pack_q8_K, panel_q4_K, 2},
            [SL_TYPE_Q5_0] = {sl_q8s_size, pack_q8s, panel_q5_0, PANEL_C},
            [SL_TYPE_Q6_K] = {q8_K_size, pack_q8_K, panel_q6_K, 2},
            [SL_TYPE_F16] = {f32_size, pack_f16, panel_f16, PANEL_F_C},
            [SL_TYPE_BF16] = {f32_size, pack_bf16, panel_bf16, PANEL_F_C},
        },
    .fp32_to_fp16_row = fp32_to_fp16_row,
    .silu_mul = sl_silu_mul_avx2,
    .gelu_mul = sl_gelu_mul_avx2,
    .attn_scores = sl_attn_scores_avx2,
    .attn_pv = sl_attn_pv_avx2,
    .exp_row = sl_exp_row_avx2,
    .pack_f16 = sl_panel_pack_f16_avx2, /* kernels/pack_avx2.c, load time only */
    .pack_q = sl_panel_pack_q_avx2,
};

#endif /* x86 */
