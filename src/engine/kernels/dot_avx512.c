/*
 * dot_avx512.c - AVX-512 kernels: F, BW, VL and VNNI (engine layer).
 *
 * Built with the AVX-512 flags plus -mavx2 -mfma -mf16c (CMakeLists.txt),
 * handed out by kernels.c only on a CPU that has all of them. The scalar
 * twins are the same as for dot_avx2.c (sl_vec_dot_ref,
 * sl_quantize_row_ref, the sl_*_ref attention helpers in kernels.c).
 *
 * Same arithmetic as the AVX2 file, twice as wide and with VNNI:
 * - the 32-value blocks go two to a 512-bit register; vpdpbusd multiplies
 *   u8 weights by s8 activations and sums each 4 products into int32 with
 *   no intermediate int16 (so no saturation at all); a signed weight is
 *   made unsigned by |w| and the activation takes its sign, or by an
 *   offset taken off with a second vpdpbusd against the constant;
 * - the K-quants unpack 64 values (2 or 4 sub-blocks) per register,
 *   vpmaddubsw them into int16 pairs, and vpdpwssd multiplies those by the
 *   int16 sub-block scales and accumulates in int32 in one instruction;
 * - float rows and the attention helpers use masked loads for the tail.
 * The activation quantizers stay bit-identical to the references (see
 * dot_avx2.c); FP contraction is off for the same reason.
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

/* Mask of the first r (< 16) lanes. */
static inline __mmask16 tail16(int64_t r)
{
    return (__mmask16)((1u << r) - 1);
}

/* Two 256-bit halves as one register: a low, b high. */
static inline __m512i join(__m256i a, __m256i b)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
}

static inline __m512i load2x32(const void *a, const void *b)
{
    return join(_mm256_loadu_si256((const __m256i *)a), _mm256_loadu_si256((const __m256i *)b));
}

/* Per-block scales: d0 in lanes 0..7, d1 in lanes 8..15. */
static inline __m512 scale2(float d0, float d1)
{
    return _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(d0), _mm512_set1_ps(d1));
}

/* The 32 4-bit values of two Q4/Q5 blocks as bytes, in value order. */
static inline __m512i nibbles_64(const uint8_t *qs0, const uint8_t *qs1)
{
    const __m128i t0 = _mm_loadu_si128((const __m128i *)qs0);
    const __m128i t1 = _mm_loadu_si128((const __m128i *)qs1);
    const __m512i z = join(_mm256_set_m128i(_mm_srli_epi16(t0, 4), t0), _mm256_set_m128i(_mm_srli_epi16(t1, 4), t1));
    return _mm512_and_si512(z, _mm512_set1_epi8(0xF));
}

/* Q5 high bits of two blocks as a byte mask (bit j: value j of block 0,
 * bit 32 + j: value j of block 1). */
static inline __mmask64 qh_mask(const uint8_t *qh0, const uint8_t *qh1)
{
    uint32_t a, b;
    memcpy(&a, qh0, 4);
    memcpy(&b, qh1, 4);
    return (__mmask64)a | ((__mmask64)b << 32);
}

/* int16 lane i of the result is scale (k + i / group) of the 16 int16
 * scales in sc: the scales of the sub-blocks that one register of products
 * covers (group 16 for Q4_K/Q5_K's 32-value sub-blocks, 8 for 16-value). */
static inline __m512i scales_for(__m256i sc, int k, int group)
{
    const __m512i lane = _mm512_set_epi32(0x001f001e, 0x001d001c, 0x001b001a, 0x00190018, 0x00170016,
                                          0x00150014, 0x00130012, 0x00110010, 0x000f000e, 0x000d000c,
                                          0x000b000a, 0x00090008, 0x00070006, 0x00050004, 0x00030002,
                                          0x00010000);
    const __m512i idx = _mm512_add_epi16(group == 16 ? _mm512_srli_epi16(lane, 4) : _mm512_srli_epi16(lane, 3),
                                         _mm512_set1_epi16((short)k));
    return _mm512_permutexvar_epi16(idx, _mm512_castsi256_si512(sc));
}

/* ------------------------------------------------------------------------ */
/* 32-value blocks, two per register                                         */
/* ------------------------------------------------------------------------ */

/*
 * Each BLOCK2 takes blocks i and j (j == i for an odd last block, whose
 * second copy gets scale 0) and returns the updated accumulator; `summ`
 * gathers the Q4_1/Q5_1 min terms, once per real block.
 */
#define DOT_32x2(name, WT, AT, BLOCK2)                                                  \
    static float name(int64_t n, const void *vw, const void *va)                       \
    {                                                                                  \
        const WT *x = vw;                                                              \
        const AT *y = va;                                                              \
        const int64_t nb = n / 32;                                                     \
        __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();                 \
        float summ0 = 0, summ1 = 0;                                                    \
        int64_t i = 0;                                                                 \
        for (; i + 3 < nb; i += 4) {                                                   \
            acc0 = BLOCK2(&x[i], &y[i], &x[i + 1], &y[i + 1], 1, acc0, &summ0);        \
            acc1 = BLOCK2(&x[i + 2], &y[i + 2], &x[i + 3], &y[i + 3], 1, acc1, &summ1); \
        }                                                                              \
        for (; i + 1 < nb; i += 2)                                                     \
            acc0 = BLOCK2(&x[i], &y[i], &x[i + 1], &y[i + 1], 1, acc0, &summ0);        \
        if (i < nb) acc0 = BLOCK2(&x[i], &y[i], &x[i], &y[i], 0, acc0, &summ0);        \
        return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + (summ0 + summ1);      \
    }

/* sum (q - off) * a for u8 q: one vpdpbusd for q * a, one for off * a. */
static inline __m512 fma_offset(__m512i q, __m512i a, char off, __m512 d, __m512 acc)
{
    const __m512i zero = _mm512_setzero_si512();
    const __m512i p = _mm512_sub_epi32(_mm512_dpbusd_epi32(zero, q, a),
                                       _mm512_dpbusd_epi32(zero, _mm512_set1_epi8(off), a));
    return _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc);
}

static inline __m512 blk2_q4_0(const struct sl_block_q4_0 *x0, const struct sl_block_q8_0 *y0,
                               const struct sl_block_q4_0 *x1, const struct sl_block_q8_0 *y1, int two,
                               __m512 acc, float *summ)
{
    (void)summ;
    const __m512 d = scale2(h2f(x0->d) * h2f(y0->d), two ? h2f(x1->d) * h2f(y1->d) : 0.0f);
    return fma_offset(nibbles_64(x0->qs, x1->qs), load2x32(y0->qs, y1->qs), 8, d, acc);
}

static inline __m512 blk2_q5_0(const struct sl_block_q5_0 *x0, const struct sl_block_q8_0 *y0,
                               const struct sl_block_q5_0 *x1, const struct sl_block_q8_0 *y1, int two,
                               __m512 acc, float *summ)
{
    (void)summ;
    const __m512 d = scale2(h2f(x0->d) * h2f(y0->d), two ? h2f(x1->d) * h2f(y1->d) : 0.0f);
    __m512i q = nibbles_64(x0->qs, x1->qs);
    q = _mm512_or_si512(q, _mm512_maskz_mov_epi8(qh_mask(x0->qh, x1->qh), _mm512_set1_epi8(0x10)));
    return fma_offset(q, load2x32(y0->qs, y1->qs), 16, d, acc);
}

static inline __m512 blk2_q4_1(const struct sl_block_q4_1 *x0, const struct sl_block_q8_1 *y0,
                               const struct sl_block_q4_1 *x1, const struct sl_block_q8_1 *y1, int two,
                               __m512 acc, float *summ)
{
    *summ += h2f(x0->m) * h2f(y0->s) + (two ? h2f(x1->m) * h2f(y1->s) : 0.0f);
    const __m512 d = scale2(h2f(x0->d) * h2f(y0->d), two ? h2f(x1->d) * h2f(y1->d) : 0.0f);
    const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), nibbles_64(x0->qs, x1->qs),
                                          load2x32(y0->qs, y1->qs));
    return _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc);
}

static inline __m512 blk2_q5_1(const struct sl_block_q5_1 *x0, const struct sl_block_q8_1 *y0,
                               const struct sl_block_q5_1 *x1, const struct sl_block_q8_1 *y1, int two,
                               __m512 acc, float *summ)
{
    *summ += h2f(x0->m) * h2f(y0->s) + (two ? h2f(x1->m) * h2f(y1->s) : 0.0f);
    const __m512 d = scale2(h2f(x0->d) * h2f(y0->d), two ? h2f(x1->d) * h2f(y1->d) : 0.0f);
    __m512i q = nibbles_64(x0->qs, x1->qs);
    q = _mm512_or_si512(q, _mm512_maskz_mov_epi8(qh_mask(x0->qh, x1->qh), _mm512_set1_epi8(0x10)));
    const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, load2x32(y0->qs, y1->qs));
    return _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc);
}

/* Q8_0: |w| times the activation negated where w < 0. */
static inline __m512 blk2_q8_0(const struct sl_block_q8_0 *x0, const struct sl_block_q8_0 *y0,
                               const struct sl_block_q8_0 *x1, const struct sl_block_q8_0 *y1, int two,
                               __m512 acc, float *summ)
{
    (void)summ;
    const __m512 d = scale2(h2f(x0->d) * h2f(y0->d), two ? h2f(x1->d) * h2f(y1->d) : 0.0f);
    const __m512i w = load2x32(x0->qs, x1->qs), a = load2x32(y0->qs, y1->qs);
    const __m512i sa = _mm512_mask_sub_epi8(a, _mm512_movepi8_mask(w), _mm512_setzero_si512(), a);
    const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(w), sa);
    return _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc);
}

DOT_32x2(dot_q4_0, struct sl_block_q4_0, struct sl_block_q8_0, blk2_q4_0)
DOT_32x2(dot_q4_1, struct sl_block_q4_1, struct sl_block_q8_1, blk2_q4_1)
DOT_32x2(dot_q5_0, struct sl_block_q5_0, struct sl_block_q8_0, blk2_q5_0)
DOT_32x2(dot_q5_1, struct sl_block_q5_1, struct sl_block_q8_1, blk2_q5_1)
DOT_32x2(dot_q8_0, struct sl_block_q8_0, struct sl_block_q8_0, blk2_q8_0)

/* ------------------------------------------------------------------------ */
/* K-quants                                                                  */
/* ------------------------------------------------------------------------ */

/* The 8 6-bit scales (bytes 0..7) and mins (bytes 8..15) of a Q4_K/Q5_K
 * block (same unpacking as dot_avx2.c). */
static inline __m128i k4_scales_mins(const uint8_t scales[SL_K_SCALE_SIZE])
{
    uint32_t u[4];
    memcpy(u, scales, SL_K_SCALE_SIZE);
    const uint32_t m6 = 0x3f3f3f3f, m4 = 0x0f0f0f0f, m2 = 0x03030303;
    u[3] = ((u[2] >> 4) & m4) | (((u[1] >> 6) & m2) << 4);
    const uint32_t mins_lo = u[1] & m6;
    u[1] = (u[2] & m4) | (((u[0] >> 6) & m2) << 4);
    u[2] = mins_lo;
    u[0] &= m6;
    return _mm_set_epi32((int)u[3], (int)u[2], (int)u[1], (int)u[0]);
}

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

/* Min term of Q4_K/Q5_K: sum_j m_j * (bsums[2j] + bsums[2j + 1]), 4 lanes. */
static inline __m128i k4_summs(__m256i sm, const int16_t *bsums)
{
    const __m256i bs = _mm256_loadu_si256((const __m256i *)bsums);
    const __m128i bs2 = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
    return _mm_madd_epi16(_mm256_extracti128_si256(sm, 1), bs2);
}

static float dot_q2_K(int64_t n, const void *vw, const void *va)
{
    const struct sl_block_q2_K *x = vw;
    const struct sl_block_q8_K *y = va;
    const int64_t nb = n / SL_QK_K;
    const __m512i m3 = _mm512_set1_epi8(3);
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const float dall = y[i].d * h2f(x[i].d);
        const float dmin = -y[i].d * h2f(x[i].dmin);
        const __m128i sm = _mm_loadu_si128((const __m128i *)x[i].scales);
        const __m128i m4 = _mm_set1_epi8(0xF);
        const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sm, 4), m4));
        const __m256i summs = _mm256_madd_epi16(mins, _mm256_loadu_si256((const __m256i *)y[i].bsums));
        accm = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(summs), accm);

        const __m256i sc = _mm256_cvtepu8_epi16(_mm_and_si128(sm, m4));
        __m512i sumi = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            /* values 128h + 0..63 (shifts 0, 2) and 128h + 64..127 (4, 6) */
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
            const __m512i z = join(bits, _mm256_srli_epi16(bits, 2));
            const __m512i q0 = _mm512_and_si512(z, m3);
            const __m512i q1 = _mm512_and_si512(_mm512_srli_epi16(z, 4), m3);
            const int8_t *q8 = y[i].qs + 128 * h;
            const __m512i p0 = _mm512_maddubs_epi16(q0, _mm512_loadu_si512(q8));
            const __m512i p1 = _mm512_maddubs_epi16(q1, _mm512_loadu_si512(q8 + 64));
            sumi = _mm512_dpwssd_epi32(sumi, scales_for(sc, 8 * h, 8), p0);
            sumi = _mm512_dpwssd_epi32(sumi, scales_for(sc, 8 * h + 4, 8), p1);
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(dall), _mm512_cvtepi32_ps(sumi), acc);
    }
    return _mm512_reduce_add_ps(acc) +
           (accm[0] + accm[1] + accm[2] + accm[3] + accm[4] + accm[5] + accm[6] + accm[7]);
}

static float dot_q3_K(int64_t n, const void *vw, const void *va)
{
    const struct sl_block_q3_K *x = vw;
    const struct sl_block_q8_K *y = va;
    const int64_t nb = n / SL_QK_K;
    const __m512i m3 = _mm512_set1_epi8(3), four = _mm512_set1_epi8(4);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const float d = y[i].d * h2f(x[i].d);
        const __m256i sc = _mm256_cvtepi8_epi16(q3k_scales(x[i].scales));
        const __m256i offs = _mm256_madd_epi16(sc, _mm256_loadu_si256((const __m256i *)y[i].bsums));
        const __m256i hb = _mm256_loadu_si256((const __m256i *)x[i].hmask);
        const __m512i hz = join(hb, hb);
        __m512i sumi = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
            const __m512i z = join(bits, _mm256_srli_epi16(bits, 2));
            const int8_t *q8 = y[i].qs + 128 * h;
            for (int pr = 0; pr < 2; pr++) {
                /* shifts s = 2pr and 2pr + 1: hmask bits 4h + s */
                const int b = 4 * h + 2 * pr;
                const __m512i sel = _mm512_mask_blend_epi8(0xFFFFFFFF00000000ull, _mm512_set1_epi8((char)(1 << b)),
                                                           _mm512_set1_epi8((char)(1 << (b + 1))));
                __m512i q = _mm512_and_si512(pr ? _mm512_srli_epi16(z, 4) : z, m3);
                q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(hz, sel), q, four);
                const __m512i p = _mm512_maddubs_epi16(q, _mm512_loadu_si512(q8 + 64 * pr));
                sumi = _mm512_dpwssd_epi32(sumi, scales_for(sc, 8 * h + 4 * pr, 8), p);
            }
        }
        const __m512i off = _mm512_castsi256_si512(_mm256_slli_epi32(offs, 2));
        sumi = _mm512_sub_epi32(sumi, _mm512_maskz_mov_epi32(0x00FF, off));
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

static float dot_q4_K(int64_t n, const void *vw, const void *va)
{
    const struct sl_block_q4_K *x = vw;
    const struct sl_block_q8_K *y = va;
    const int64_t nb = n / SL_QK_K;
    const __m512i m4 = _mm512_set1_epi8(0xF);
    __m512 acc = _mm512_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const float d = y[i].d * h2f(x[i].d);
        const float dmin = -y[i].d * h2f(x[i].dmin);
        const __m256i sm = _mm256_cvtepu8_epi16(k4_scales_mins(x[i].scales));
        accm = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(k4_summs(sm, y[i].bsums)), accm);
        __m512i sumi = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++) {
            /* sub-block 2g in the low nibbles, 2g + 1 in the high ones */
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * g));
            const __m512i q = _mm512_and_si512(join(bits, _mm256_srli_epi16(bits, 4)), m4);
            const __m512i p = _mm512_maddubs_epi16(q, _mm512_loadu_si512(y[i].qs + 64 * g));
            sumi = _mm512_dpwssd_epi32(sumi, scales_for(sm, 2 * g, 16), p);
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
    }
    return _mm512_reduce_add_ps(acc) + (accm[0] + accm[1] + accm[2] + accm[3]);
}

static float dot_q5_K(int64_t n, const void *vw, const void *va)
{
    const struct sl_block_q5_K *x = vw;
    const struct sl_block_q8_K *y = va;
    const int64_t nb = n / SL_QK_K;
    const __m512i m4 = _mm512_set1_epi8(0xF), m16 = _mm512_set1_epi8(0x10);
    __m512 acc = _mm512_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const float d = y[i].d * h2f(x[i].d);
        const float dmin = -y[i].d * h2f(x[i].dmin);
        const __m256i sm = _mm256_cvtepu8_epi16(k4_scales_mins(x[i].scales));
        accm = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(k4_summs(sm, y[i].bsums)), accm);
        const __m256i hb = _mm256_loadu_si256((const __m256i *)x[i].qh);
        const __m512i hz = join(hb, hb);
        __m512i sumi = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * g));
            __m512i q = _mm512_and_si512(join(bits, _mm256_srli_epi16(bits, 4)), m4);
            /* bit 2g of qh for the low half, bit 2g + 1 for the high half */
            const __m512i sel = _mm512_mask_blend_epi8(0xFFFFFFFF00000000ull, _mm512_set1_epi8((char)(1 << (2 * g))),
                                                       _mm512_set1_epi8((char)(1 << (2 * g + 1))));
            q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(hz, sel), q, m16);
            const __m512i p = _mm512_maddubs_epi16(q, _mm512_loadu_si512(y[i].qs + 64 * g));
            sumi = _mm512_dpwssd_epi32(sumi, scales_for(sm, 2 * g, 16), p);
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
    }
    return _mm512_reduce_add_ps(acc) + (accm[0] + accm[1] + accm[2] + accm[3]);
}

static float dot_q6_K(int64_t n, const void *vw, const void *va)
{
    const struct sl_block_q6_K *x = vw;
    const struct sl_block_q8_K *y = va;
    const int64_t nb = n / SL_QK_K;
    const __m512i m4 = _mm512_set1_epi8(0xF), m2 = _mm512_set1_epi8(0x30);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const float d = y[i].d * h2f(x[i].d);
        const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
        const __m256i offs = _mm256_madd_epi16(sc, _mm256_loadu_si256((const __m256i *)y[i].bsums));
        __m512i sumi = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            /* r = 0, 1 from the low nibbles of ql[64h ..], r = 2, 3 from the high */
            const __m512i l = load2x32(x[i].ql + 64 * h, x[i].ql + 64 * h + 32);
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(x[i].qh + 32 * h));
            const __m512i h01 = join(_mm256_slli_epi16(qh, 4), _mm256_slli_epi16(qh, 2));
            const __m512i h23 = join(qh, _mm256_srli_epi16(qh, 2));
            const __m512i q01 = _mm512_or_si512(_mm512_and_si512(l, m4), _mm512_and_si512(h01, m2));
            const __m512i q23 =
                _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4), _mm512_and_si512(h23, m2));
            const int8_t *q8 = y[i].qs + 128 * h;
            const __m512i p01 = _mm512_maddubs_epi16(q01, _mm512_loadu_si512(q8));
            const __m512i p23 = _mm512_maddubs_epi16(q23, _mm512_loadu_si512(q8 + 64));
            sumi = _mm512_dpwssd_epi32(sumi, scales_for(sc, 8 * h, 8), p01);
            sumi = _mm512_dpwssd_epi32(sumi, scales_for(sc, 8 * h + 4, 8), p23);
        }
        const __m512i off = _mm512_castsi256_si512(_mm256_slli_epi32(offs, 5));
        sumi = _mm512_sub_epi32(sumi, _mm512_maskz_mov_epi32(0x00FF, off));
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* ------------------------------------------------------------------------ */
/* float rows                                                                */
/* ------------------------------------------------------------------------ */

static inline __m512 load_f32(const float *p, __mmask16 m)
{
    return _mm512_maskz_loadu_ps(m, p);
}

static inline __m512 load_f16(const uint16_t *p, __mmask16 m)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

static inline __m512 load_bf16(const uint16_t *p, __mmask16 m)
{
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}

/* Four accumulators of 16 lanes, masked loads for the last < 16 values. */
#define DOT_FLOAT(name, T, LOAD)                                                            \
    static float name(int64_t n, const void *vw, const void *va)                            \
    {                                                                                       \
        const T *x = vw, *y = va;                                                           \
        const __mmask16 all = 0xFFFF;                                                       \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                         \
        int64_t i = 0;                                                                      \
        for (; i + 64 <= n; i += 64) {                                                      \
            a0 = _mm512_fmadd_ps(LOAD(x + i, all), LOAD(y + i, all), a0);                   \
            a1 = _mm512_fmadd_ps(LOAD(x + i + 16, all), LOAD(y + i + 16, all), a1);         \
            a2 = _mm512_fmadd_ps(LOAD(x + i + 32, all), LOAD(y + i + 32, all), a2);         \
            a3 = _mm512_fmadd_ps(LOAD(x + i + 48, all), LOAD(y + i + 48, all), a3);         \
        }                                                                                   \
        for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(LOAD(x + i, all), LOAD(y + i, all), a0); \
        if (i < n) {                                                                        \
            const __mmask16 m = tail16(n - i);                                              \
            a1 = _mm512_fmadd_ps(LOAD(x + i, m), LOAD(y + i, m), a1);                       \
        }                                                                                   \
        return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3))); \
    }

DOT_FLOAT(dot_f32, float, load_f32)
DOT_FLOAT(dot_f16, uint16_t, load_f16)
DOT_FLOAT(dot_bf16, uint16_t, load_bf16)

/* ------------------------------------------------------------------------ */
/* attention helpers                                                         */
/* ------------------------------------------------------------------------ */

static void fp32_to_fp16_row(int64_t n, const float *x, uint16_t *y)
{
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? 0xFFFF : tail16(n - i);
        const __m256i h = _mm512_cvtps_ph(load_f32(x + i, m), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_mask_storeu_epi16(y + i, m, h);
    }
}

/* ------------------------------------------------------------------------ */
/* activation quantizers                                                     */
/* ------------------------------------------------------------------------ */

/* roundf() of 16 floats, ties away from zero (see dot_avx2.c round_away). */
static inline __m512 round_away(__m512 v)
{
    const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m512 frac = _mm512_abs_ps(_mm512_sub_ps(v, t));
    const __mmask16 up = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    const __m512 step = _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_castps_si512(_mm512_set1_ps(1.0f)),
        _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000u))));
    return _mm512_mask_add_ps(t, up, t, step);
}

/* Q8_0 and Q8_1 (as dot_avx2.c q8_block); returns the sum of the quants. */
static inline int q8_block(const float *x, int8_t *qs, uint16_t *d_out, float *d_val)
{
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float d = amax / 127;
    const float id = d ? 1.0f / d : 0.0f;
    *d_out = sl_fp32_to_fp16(d);
    *d_val = d;
    const __m512 mul = _mm512_set1_ps(id);
    const __m512i q0 = _mm512_cvttps_epi32(round_away(_mm512_mul_ps(v0, mul)));
    const __m512i q1 = _mm512_cvttps_epi32(round_away(_mm512_mul_ps(v1, mul)));
    _mm_storeu_si128((__m128i *)qs, _mm512_cvtsepi32_epi8(q0));
    _mm_storeu_si128((__m128i *)(qs + 16), _mm512_cvtsepi32_epi8(q1));
    return _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
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

/* Q8_K (as dot_avx2.c quant_q8_K); each register is one group of 16. */
static void quant_q8_K(const float *x, struct sl_block_q8_K *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += SL_QK_K) {
        __m512 vmax = _mm512_setzero_ps();
        for (int k = 0; k < SL_QK_K; k += 16) vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_loadu_ps(x + k)));
        const float amax = _mm512_reduce_max_ps(vmax);
        if (!amax) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float max = 0;
        const __m512 va = _mm512_set1_ps(amax);
        for (int k = 0; k < SL_QK_K; k += 16) {
            const __mmask16 m = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + k)), va, _CMP_EQ_OQ);
            if (m) {
                max = x[k + __builtin_ctz((unsigned)m)];
                break;
            }
        }
        const float iscale = -127.f / max;
        const __m512 mul = _mm512_set1_ps(iscale);
        const __m512i lim = _mm512_set1_epi32(127);
        for (int g = 0; g < SL_QK_K / 16; g++) {
            const __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + 16 * g), mul);
            const __m512i q = _mm512_min_epi32(_mm512_cvtps_epi32(v), lim);
            _mm_storeu_si128((__m128i *)(y[i].qs + 16 * g), _mm512_cvtsepi32_epi8(q));
            y[i].bsums[g] = (int16_t)_mm512_reduce_add_epi32(q);
        }
        y[i].d = 1 / iscale;
    }
}

/* bfloat16, ties to even, NaN made quiet (as dot_avx2.c quant_bf16). */
static void quant_bf16(const float *x, uint16_t *y, int64_t n)
{
    const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    const __m512i one = _mm512_set1_epi32(1), r = _mm512_set1_epi32(0x7fff), qbit = _mm512_set1_epi32(0x40);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? 0xFFFF : tail16(n - i);
        const __m512i u = _mm512_castps_si512(load_f32(x + i, m));
        const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, abs_mask), inf);
        const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), one);
        const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(r, odd)), 16);
        const __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(u, 16), qbit);
        const __m512i h = _mm512_mask_blend_epi32(nan, rounded, quiet);
        _mm256_mask_storeu_epi16(y + i, m, _mm512_cvtepi32_epi16(h));
    }
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
    case SL_TYPE_F16: fp32_to_fp16_row(n, x, out); return;
    case SL_TYPE_BF16: quant_bf16(x, out, n); return;
    }
    sl_quantize_row_ref(type, x, out, n);
}

/* ------------------------------------------------------------------------ */
/* matrix tiles: Q4_0 and Q8_0 weights against q8x4 activations             */
/* ------------------------------------------------------------------------ */

/*
 * A group is four weight blocks against one q8x4 group (kernels.h): block b
 * goes to 128-bit lane b, so one vpdpbusd covers 16 values of each of the
 * four blocks and the int32 lanes never mix blocks. Per group and weight
 * row: two to four loads, word permutes that pick the quants and the four
 * fp16 scales out of them (vcvtph2ps turns the scales into a float vector,
 * one block per lane group), then per activation row two vpdpbusd starting
 * from the packed offset term, a convert, and one multiply and one FMA with
 * d_w * d_a. About 3.5 instructions per 32-value block at one activation
 * row, against ~25 for the per-row dot above.
 *
 * Q4_0: the nibbles are u8 0..15; off = -8 * sum(a) takes the 8 off.
 * Q8_0: w ^ 0x80 = w + 128 is u8; off = -128 * sum(a) takes the 128 off.
 *
 * The last, partial group of a row loads with byte masks, so nothing is read
 * past the row's last block; the zero bytes meet zero activations.
 */
#define TILE_R 4
#define TILE_C 4

static const int16_t idx_q4_0_qs[32] = {1,  2,  3,  4,  5,  6,  7,  8,  10, 11, 12, 13, 14, 15, 16, 17,
                                        19, 20, 21, 22, 23, 24, 25, 26, 28, 29, 30, 31, 32, 33, 34, 35};
static const int16_t idx_q4_0_d[32] = {0, 0, 0, 0, 9, 9, 9, 9, 18, 18, 18, 18, 27, 27, 27, 27};
static const int16_t idx_q8_0_qs[32] = {1,  2,  3,  4,  5,  6,  7,  8,  18, 19, 20, 21, 22, 23, 24, 25,
                                        35, 36, 37, 38, 39, 40, 41, 42, 52, 53, 54, 55, 56, 57, 58, 59};
static const int16_t idx_q8_0_d[32] = {0, 0, 0, 0, 17, 17, 17, 17, 34, 34, 34, 34, 51, 51, 51, 51};

/* Bytes [off, off + 64) of a group of len bytes at p, zero past len. */
static inline __attribute__((always_inline)) __m512i load_part(const uint8_t *p, int off, int len)
{
    const int k = len - off;
    if (k >= 64) return _mm512_loadu_si512(p + off);
    if (k <= 0) return _mm512_setzero_si512();
    return _mm512_maskz_loadu_epi8(((__mmask64)1 << k) - 1, p + off);
}

/* acc[r][c] += the group's contribution of weight row r, activation row c. */
static inline __attribute__((always_inline)) void acc_rows(__m512i lo, __m512i hi, __m512 dx,
                                                           const struct sl_q8x4 *const ya[TILE_C],
                                                           int g, const int NC, __m512 acc[TILE_C])
{
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) {
        const struct sl_q8x4 *y = ya[c] + g;
        __m512i s = _mm512_loadu_si512(y->off);
        s = _mm512_dpbusd_epi32(s, lo, _mm512_loadu_si512(y->lo));
        s = _mm512_dpbusd_epi32(s, hi, _mm512_loadu_si512(y->hi));
        acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dx, _mm512_loadu_ps(y->d)), acc[c]);
    }
}

static inline __attribute__((always_inline)) void group_q4_0(const uint8_t *p, int len,
                                                             const struct sl_q8x4 *const ya[TILE_C], int g,
                                                             const int NC, __m512 acc[TILE_C])
{
    const __m512i m4 = _mm512_set1_epi8(0xF);
    const __m512i l0 = load_part(p, 0, len), l1 = load_part(p, 64, len);
    const __m512i q = _mm512_permutex2var_epi16(l0, _mm512_loadu_si512(idx_q4_0_qs), l1);
    const __m512 dx = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(_mm512_loadu_si512(idx_q4_0_d), l0)));
    acc_rows(_mm512_and_si512(q, m4), _mm512_and_si512(_mm512_srli_epi16(q, 4), m4), dx, ya, g, NC, acc);
}

static inline __attribute__((always_inline)) void group_q8_0(const uint8_t *p, int len,
                                                             const struct sl_q8x4 *const ya[TILE_C], int g,
                                                             const int NC, __m512 acc[TILE_C])
{
    const __m512i x80 = _mm512_set1_epi8((char)0x80), iq = _mm512_loadu_si512(idx_q8_0_qs);
    const __m512i l0 = load_part(p, 0, len), l1 = load_part(p, 64, len);
    const __m512i m0 = load_part(p, 16, len), m1 = load_part(p, 80, len);
    const __m512i lo = _mm512_xor_si512(_mm512_permutex2var_epi16(l0, iq, l1), x80);
    const __m512i hi = _mm512_xor_si512(_mm512_permutex2var_epi16(m0, iq, m1), x80);
    const __m512 dx = _mm512_cvtph_ps(
        _mm512_castsi512_si256(_mm512_permutex2var_epi16(l0, _mm512_loadu_si512(idx_q8_0_d), l1)));
    acc_rows(lo, hi, dx, ya, g, NC, acc);
}

/* The entry point: nr x nc (1..4 each) to its instantiation. */
#define TILE_SWITCH(name)                                                                         \
    static void name(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as, int nc, \
                     float *y, size_t ldy)                                                       \
    {                                                                                            \
        switch ((nr - 1) * TILE_C + (nc - 1)) {                                                  \
        case 0: name##_nrc(n, w, ws, 1, a, as, 1, y, ldy); break;                                \
        case 1: name##_nrc(n, w, ws, 1, a, as, 2, y, ldy); break;                                \
        case 2: name##_nrc(n, w, ws, 1, a, as, 3, y, ldy); break;                                \
        case 3: name##_nrc(n, w, ws, 1, a, as, 4, y, ldy); break;                                \
        case 4: name##_nrc(n, w, ws, 2, a, as, 1, y, ldy); break;                                \
        case 5: name##_nrc(n, w, ws, 2, a, as, 2, y, ldy); break;                                \
        case 6: name##_nrc(n, w, ws, 2, a, as, 3, y, ldy); break;                                \
        case 7: name##_nrc(n, w, ws, 2, a, as, 4, y, ldy); break;                                \
        case 8: name##_nrc(n, w, ws, 3, a, as, 1, y, ldy); break;                                \
        case 9: name##_nrc(n, w, ws, 3, a, as, 2, y, ldy); break;                                \
        case 10: name##_nrc(n, w, ws, 3, a, as, 3, y, ldy); break;                               \
        case 11: name##_nrc(n, w, ws, 3, a, as, 4, y, ldy); break;                               \
        case 12: name##_nrc(n, w, ws, 4, a, as, 1, y, ldy); break;                               \
        case 13: name##_nrc(n, w, ws, 4, a, as, 2, y, ldy); break;                               \
        case 14: name##_nrc(n, w, ws, 4, a, as, 3, y, ldy); break;                               \
        case 15: name##_nrc(n, w, ws, 4, a, as, 4, y, ldy); break;                               \
        }                                                                                        \
    }

/* Q5_0: the nibbles as Q4_0 (quants at words 11b + 3.., scales at words
 * 11b), the fifth bits from qh (bit j of block b's u32 is value j) turned
 * into a byte mask that adds 16 to the lanes; off = -16 * sum(a). */
static const int16_t idx_q5_0_qs[32] = {3,  4,  5,  6,  7,  8,  9,  10, 14, 15, 16, 17, 18, 19, 20, 21,
                                        25, 26, 27, 28, 29, 30, 31, 32, 36, 37, 38, 39, 40, 41, 42, 43};
static const int16_t idx_q5_0_d[32] = {0, 0, 0, 0, 11, 11, 11, 11, 22, 22, 22, 22, 33, 33, 33, 33};

static inline __attribute__((always_inline)) void group_q5_0(const uint8_t *p, int len,
                                                             const struct sl_q8x4 *const ya[TILE_C], int g,
                                                             const int NC, __m512 acc[TILE_C])
{
    const __m512i m4 = _mm512_set1_epi8(0xF), m16 = _mm512_set1_epi8(0x10);
    const __m512i l0 = load_part(p, 0, len), l1 = load_part(p, 64, len);
    const __m512i q = _mm512_permutex2var_epi16(l0, _mm512_loadu_si512(idx_q5_0_qs), l1);
    const __m512 dx = _mm512_cvtph_ps(
        _mm512_castsi512_si256(_mm512_permutex2var_epi16(l0, _mm512_loadu_si512(idx_q5_0_d), l1)));
    uint64_t mlo = 0, mhi = 0;
#pragma GCC unroll 4
    for (int b = 0; b < 4; b++) {
        if (22 * b >= len) break;
        uint32_t h;
        memcpy(&h, p + 22 * b + 2, 4);
        mlo |= (uint64_t)(h & 0xFFFF) << (16 * b);
        mhi |= (uint64_t)(h >> 16) << (16 * b);
    }
    __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
    lo = _mm512_mask_add_epi8(lo, (__mmask64)mlo, lo, m16);
    hi = _mm512_mask_add_epi8(hi, (__mmask64)mhi, hi, m16);
    acc_rows(lo, hi, dx, ya, g, NC, acc);
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
        __m512 acc[TILE_R][TILE_C];                                                              \
        for (int c = 0; c < TILE_C; c++) ya[c] = (const struct sl_q8x4 *)(a + (size_t)(c < NC ? c : 0) * as); \
        _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++)                                     \
            _Pragma("GCC unroll 4") for (int c = 0; c < NC; c++) acc[r][c] = _mm512_setzero_ps(); \
        for (int64_t g = 0; g < ng; g++) {                                                       \
            _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++)                                 \
                GROUP(w + (size_t)r * ws + (size_t)g * 4 * BS, 4 * BS, ya, (int)g, NC, acc[r]);  \
        }                                                                                        \
        if (tail) {                                                                              \
            _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++)                                 \
                GROUP(w + (size_t)r * ws + (size_t)ng * 4 * BS, tail * BS, ya, (int)ng, NC, acc[r]); \
        }                                                                                        \
        _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++)                                     \
            _Pragma("GCC unroll 4") for (int c = 0; c < NC; c++)                                 \
                y[(size_t)c * ldy + (size_t)r] = _mm512_reduce_add_ps(acc[r][c]);               \
    }                                                                                            \
    TILE_SWITCH(name)

TILE_32(tile_q4_0, group_q4_0, 18)
TILE_32(tile_q8_0, group_q8_0, 34)
TILE_32(tile_q5_0, group_q5_0, 22)

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
    pack_q8x4(x, out, n, 128);
}

static void pack_q5_0(const float *x, void *out, int64_t n)
{
    pack_q8x4(x, out, n, 16);
}

/* ------------------------------------------------------------------------ */
/* matrix tiles: Q4_K and Q6_K weights against Q8_K activations             */
/* ------------------------------------------------------------------------ */

/*
 * The K-quants keep the plain Q8_K activation rows (their per-16 bsums are
 * what the min and offset terms need). Per super-block and weight row the
 * 256 quants are unpacked once into four registers of 64 bytes, and the
 * sub-block scales spread once into the int16 lanes vpdpwssd wants; per
 * activation row that leaves four vpmaddubsw, four vpdpwssd, the min or
 * offset term against the bsums, and two FMAs (or one). The per-row dots
 * above redo the unpacking for every activation row.
 */
static inline __attribute__((always_inline)) void sb_q4_K(const struct sl_block_q4_K *x,
                                                          const struct sl_block_q8_K *const ya[TILE_C],
                                                          int64_t i, const int NC, __m512 acc[TILE_C])
{
    const __m512i m4 = _mm512_set1_epi8(0xF);
    const __m256i sm = _mm256_cvtepu8_epi16(k4_scales_mins(x->scales));
    const float d = h2f(x->d), dmin = h2f(x->dmin);
    __m512i q[4], sc[4];
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
        const __m256i bits = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * g));
        q[g] = _mm512_and_si512(join(bits, _mm256_srli_epi16(bits, 4)), m4);
        sc[g] = scales_for(sm, 2 * g, 16);
    }
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) {
        const struct sl_block_q8_K *y = ya[c] + i;
        __m512i sumi = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++)
            sumi = _mm512_dpwssd_epi32(sumi, sc[g], _mm512_maddubs_epi16(q[g], _mm512_loadu_si512(y->qs + 64 * g)));
        const __m512 summs = _mm512_cvtepi32_ps(_mm512_zextsi128_si512(k4_summs(sm, y->bsums)));
        acc[c] = _mm512_fmadd_ps(_mm512_set1_ps(d * y->d), _mm512_cvtepi32_ps(sumi), acc[c]);
        acc[c] = _mm512_fmadd_ps(_mm512_set1_ps(-dmin * y->d), summs, acc[c]);
    }
}

static inline __attribute__((always_inline)) void sb_q6_K(const struct sl_block_q6_K *x,
                                                          const struct sl_block_q8_K *const ya[TILE_C],
                                                          int64_t i, const int NC, __m512 acc[TILE_C])
{
    const __m512i m4 = _mm512_set1_epi8(0xF), m2 = _mm512_set1_epi8(0x30);
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
    const float d = h2f(x->d);
    __m512i q[4], sc[4];
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        const __m512i l = load2x32(x->ql + 64 * h, x->ql + 64 * h + 32);
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * h));
        const __m512i h01 = join(_mm256_slli_epi16(qh, 4), _mm256_slli_epi16(qh, 2));
        const __m512i h23 = join(qh, _mm256_srli_epi16(qh, 2));
        q[2 * h] = _mm512_or_si512(_mm512_and_si512(l, m4), _mm512_and_si512(h01, m2));
        q[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4), _mm512_and_si512(h23, m2));
        sc[2 * h] = scales_for(sc16, 8 * h, 8);
        sc[2 * h + 1] = scales_for(sc16, 8 * h + 4, 8);
    }
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) {
        const struct sl_block_q8_K *y = ya[c] + i;
        /* the 32 offset: 32 * sum_j scale_j * bsums_j, taken off in int32 */
        const __m256i offs = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)y->bsums));
        __m512i sumi = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_zextsi256_si512(_mm256_slli_epi32(offs, 5)));
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++)
            sumi = _mm512_dpwssd_epi32(sumi, sc[k], _mm512_maddubs_epi16(q[k], _mm512_loadu_si512(y->qs + 64 * k)));
        acc[c] = _mm512_fmadd_ps(_mm512_set1_ps(d * y->d), _mm512_cvtepi32_ps(sumi), acc[c]);
    }
}

/* One tile of NR x NC over n / 256 super-blocks of type WT. */
#define TILE_K(name, SB, WT)                                                                      \
    static inline __attribute__((always_inline)) void name##_nrc(                               \
        int64_t n, const uint8_t *w, size_t ws, const int NR, const uint8_t *a, size_t as,       \
        const int NC, float *y, size_t ldy)                                                      \
    {                                                                                            \
        const int64_t nb = n / SL_QK_K;                                                          \
        const struct sl_block_q8_K *ya[TILE_C];                                                  \
        __m512 acc[TILE_R][TILE_C];                                                              \
        for (int c = 0; c < TILE_C; c++) ya[c] = (const struct sl_block_q8_K *)(a + (size_t)(c < NC ? c : 0) * as); \
        _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++)                                     \
            _Pragma("GCC unroll 4") for (int c = 0; c < NC; c++) acc[r][c] = _mm512_setzero_ps(); \
        for (int64_t i = 0; i < nb; i++) {                                                       \
            _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++)                                 \
                SB((const WT *)(w + (size_t)r * ws) + i, ya, i, NC, acc[r]);                     \
        }                                                                                        \
        _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++)                                     \
            _Pragma("GCC unroll 4") for (int c = 0; c < NC; c++)                                 \
                y[(size_t)c * ldy + (size_t)r] = _mm512_reduce_add_ps(acc[r][c]);               \
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
/* matrix tiles: F16 and BF16 weights against F16 / BF16 activations        */
/* ------------------------------------------------------------------------ */

/*
 * The activation rows are packed as floats that already went through the
 * dot type (F16 or BF16) and back, so they hold exactly the values vec_dot
 * multiplies; the tile converts only the weights, once per 16 values and
 * row, then does NR x NC FMAs with the activations straight from memory.
 * A tile of fewer than four (row, column) pairs keeps U = 4 partial sums
 * per pair so the FMA latency does not bound it (decode runs 1 x 1). The
 * last < 16 values load with a mask.
 */
#define TILE_F(name, LOAD)                                                                        \
    static inline __attribute__((always_inline)) void name##_nrc(                               \
        int64_t n, const uint8_t *w, size_t ws, const int NR, const uint8_t *a, size_t as,       \
        const int NC, float *y, size_t ldy)                                                      \
    {                                                                                            \
        enum { U_MAX = 4 };                                                                      \
        const int U = NR * NC >= 4 ? 1 : U_MAX;                                                  \
        __m512 acc[TILE_R][TILE_C][U_MAX];                                                       \
        int64_t i = 0;                                                                           \
        _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++)                                     \
            _Pragma("GCC unroll 4") for (int c = 0; c < NC; c++)                                 \
                _Pragma("GCC unroll 4") for (int u = 0; u < U; u++) acc[r][c][u] = _mm512_setzero_ps(); \
        for (; i + 16 * U <= n; i += 16 * U) {                                                   \
            _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++)                                 \
                _Pragma("GCC unroll 4") for (int u = 0; u < U; u++) {                            \
                    const __m512 wv = LOAD((const uint16_t *)(w + (size_t)r * ws) + i + 16 * u, 0xFFFF); \
                    _Pragma("GCC unroll 4") for (int c = 0; c < NC; c++)                         \
                        acc[r][c][u] = _mm512_fmadd_ps(                                          \
                            wv, _mm512_loadu_ps((const float *)(a + (size_t)c * as) + i + 16 * u), acc[r][c][u]); \
                }                                                                                \
        }                                                                                        \
        for (; i < n; i += 16) {                                                                 \
            const __mmask16 m = n - i >= 16 ? 0xFFFF : tail16(n - i);                            \
            _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++) {                               \
                const __m512 wv = LOAD((const uint16_t *)(w + (size_t)r * ws) + i, m);           \
                _Pragma("GCC unroll 4") for (int c = 0; c < NC; c++)                             \
                    acc[r][c][0] = _mm512_fmadd_ps(                                              \
                        wv, _mm512_maskz_loadu_ps(m, (const float *)(a + (size_t)c * as) + i), acc[r][c][0]); \
            }                                                                                    \
        }                                                                                        \
        _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++)                                     \
            _Pragma("GCC unroll 4") for (int c = 0; c < NC; c++) {                               \
                __m512 s = acc[r][c][0];                                                         \
                _Pragma("GCC unroll 4") for (int u = 1; u < U; u++) s = _mm512_add_ps(s, acc[r][c][u]); \
                y[(size_t)c * ldy + (size_t)r] = _mm512_reduce_add_ps(s);                        \
            }                                                                                    \
    }                                                                                            \
    TILE_SWITCH(name)

TILE_F(tile_f16, load_f16)
TILE_F(tile_bf16, load_bf16)

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
        fp32_to_fp16_row(m, x + i, h);
        for (int64_t j = 0; j < m; j += 16) {
            const __mmask16 k = m - j >= 16 ? 0xFFFF : tail16(m - j);
            _mm512_mask_storeu_ps(o + i + j, k, load_f16(h + j, k));
        }
    }
}

static void pack_bf16(const float *x, void *out, int64_t n)
{
    uint16_t h[256];
    float *o = out;
    for (int64_t i = 0; i < n; i += 256) {
        const int64_t m = n - i < 256 ? n - i : 256;
        quant_bf16(x + i, h, m);
        for (int64_t j = 0; j < m; j += 16) {
            const __mmask16 k = m - j >= 16 ? 0xFFFF : tail16(m - j);
            _mm512_mask_storeu_ps(o + i + j, k, load_bf16(h + j, k));
        }
    }
}

/*
 * F16 and BF16 row panels (kernels.h): one 256-bit load per value index k
 * gives the k-th weight of the 16 rows, converted to 16 floats (vcvtph2ps;
 * BF16 a zero-extend and a shift), and each of the NC activation rows
 * multiplies it with one FMA against its k-th value broadcast from memory
 * (the {1to16} operand form: no shuffle, no register). Float lane r is
 * weight row r all the way, so there is no horizontal sum: y gets one
 * (masked) store per activation row. Per k that is one load-convert for NC
 * FMAs, where the 4 x 4 tiles above load a 16-value activation vector per
 * FMA and convert a weight vector per 4. With fewer than 4 activation rows
 * (decode runs 1) U partial sums per row over k, k + 1, .. keep 4 FMA
 * chains in flight. The activations are the pack_f16 / pack_bf16 rows.
 * sl_op_matmul calls a panel once per tile_c activation rows, so the first
 * call brings it from memory and the others find it in cache; with 4 or
 * more rows each call also prefetches (to L2) the line of the next panel
 * at the same offset, so the next first call finds it there too (from
 * DRAM, 896 x 24000 F16 at T = 64: 49 -> 55 GMAC/s; in cache both ~57,
 * the FMA peak of one Zen 4 core; decode does not prefetch, the hardware
 * prefetcher follows its one stream).
 */
#define PANEL_F_C 8 /* most activation rows per call */

static inline __m512 panel_ld_f16(const uint8_t *p)
{
    return _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)p));
}

static inline __m512 panel_ld_bf16(const uint8_t *p)
{
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_load_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}

#define PANEL_F(name, LOAD)                                                                       \
    static inline __attribute__((always_inline)) void name##_nc(int64_t n, const uint8_t *p,     \
                                                                const uint8_t *a, size_t as,     \
                                                                const int NC, int nr, float *y,  \
                                                                size_t ldy)                      \
    {                                                                                            \
        enum { U_MAX = 4 };                                                                      \
        const int U = NC >= 4 ? 1 : NC >= 2 ? 2 : U_MAX;                                         \
        const float *x[PANEL_F_C];                                                               \
        __m512 acc[U_MAX][PANEL_F_C];                                                            \
        _Pragma("GCC unroll 8") for (int c = 0; c < NC; c++) {                                   \
            x[c] = (const float *)(a + (size_t)c * as);                                          \
            _Pragma("GCC unroll 4") for (int u = 0; u < U; u++) acc[u][c] = _mm512_setzero_ps(); \
        }                                                                                        \
        const uint8_t *next = p + (size_t)((n + 1) / 2) * 64;                                    \
        int64_t k = 0;                                                                           \
        for (; k + 2 * U <= n; k += 2 * U) {                                                     \
            if (NC >= 4) _mm_prefetch((const char *)(next + 32 * (size_t)k), _MM_HINT_T1);      \
            _Pragma("GCC unroll 8") for (int u = 0; u < 2 * U; u++) {                            \
                const __m512 w = LOAD(p + 32 * (size_t)(k + u));                                 \
                _Pragma("GCC unroll 8") for (int c = 0; c < NC; c++)                             \
                    acc[u % U][c] = _mm512_fmadd_ps(w, _mm512_set1_ps(x[c][k + u]), acc[u % U][c]); \
            }                                                                                    \
        }                                                                                        \
        for (; k < n; k++) {                                                                     \
            const __m512 w = LOAD(p + 32 * (size_t)k);                                           \
            _Pragma("GCC unroll 8") for (int c = 0; c < NC; c++)                                 \
                acc[0][c] = _mm512_fmadd_ps(w, _mm512_set1_ps(x[c][k]), acc[0][c]);              \
        }                                                                                        \
        const __mmask16 m = nr >= 16 ? 0xFFFF : tail16(nr);                                      \
        _Pragma("GCC unroll 8") for (int c = 0; c < NC; c++) {                                   \
            __m512 s = acc[0][c];                                                                \
            _Pragma("GCC unroll 4") for (int u = 1; u < U; u++) s = _mm512_add_ps(s, acc[u][c]); \
            _mm512_mask_storeu_ps(y + (size_t)c * ldy, m, s);                                    \
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
        case 6: name##_nc(n, p, a, as, 6, nr, y, ldy); break;                                    \
        case 7: name##_nc(n, p, a, as, 7, nr, y, ldy); break;                                    \
        default: name##_nc(n, p, a, as, 8, nr, y, ldy); break;                                   \
        }                                                                                        \
    }

PANEL_F(panel_f16, panel_ld_f16)
PANEL_F(panel_bf16, panel_ld_bf16)

/* ------------------------------------------------------------------------ */
/* row panels: weights repacked 16 rows at a time (kernels.h)               */
/* ------------------------------------------------------------------------ */

/*
 * Int32 lane r of every register is weight row r. Per block the weights
 * are loaded once (4 registers of Q4_0 nibbles or 8 of Q8_0 bytes, all
 * 16 rows) and the 16 fp16 scales converted with one vcvtph2ps; per
 * activation row the block then costs 8 vpdpbusd against 4 activation
 * bytes broadcast, an int32 add, a convert, a multiply (d_w * d_a) and an
 * FMA: about 12 instructions for 512 multiply-adds, where the per-row dot
 * takes ~25 per 32. The offset of the unsigned weights (Q4_0's 8, Q8_0's
 * 128) is taken off once per block as -k * sum(a), the activations' block
 * sum; Q4_0's high nibbles are used in place (w & 0xF0 = 16 q) and the
 * product shifted down by 4, exactly. Two int32 chains per block keep the
 * vpdpbusd latency off the critical path.
 */
static inline int32_t ld32(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline __attribute__((always_inline)) void panel_q4_0_nc(int64_t n, const uint8_t *p, const uint8_t *a,
                                                                size_t as, const int NC, int nr, float *y,
                                                                size_t ldy)
{
    const int64_t nb = n / 32;
    const __m512i m_lo = _mm512_set1_epi8(0x0F), m_hi = _mm512_set1_epi8((char)0xF0);
    __m512 acc[TILE_C];
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = p + (size_t)(b / 2) * (64 + 2 * 256);
        const uint8_t *qs = blk + 64 + (b % 2) * 256;
        const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(blk + 32 * (b % 2))));
        __m512i lo[4], hi[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            const __m512i raw = _mm512_load_si512(qs + 64 * k);
            lo[k] = _mm512_and_si512(raw, m_lo);
            hi[k] = _mm512_and_si512(raw, m_hi);
        }
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            const struct sl_q8s *x = (const struct sl_q8s *)(a + (size_t)c * as) + b;
            __m512i sl = _mm512_set1_epi32(-8 * x->sum), sh = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                sl = _mm512_dpbusd_epi32(sl, lo[k], _mm512_set1_epi32(ld32(x->qs + 4 * k)));
                sh = _mm512_dpbusd_epi32(sh, hi[k], _mm512_set1_epi32(ld32(x->qs + 16 + 4 * k)));
            }
            const __m512i s = _mm512_add_epi32(sl, _mm512_srai_epi32(sh, 4));
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_set1_ps(x->d)), acc[c]);
        }
    }
    const __mmask16 m = nr >= 16 ? 0xFFFF : tail16(nr);
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) _mm512_mask_storeu_ps(y + (size_t)c * ldy, m, acc[c]);
}

static inline __attribute__((always_inline)) void panel_q8_0_nc(int64_t n, const uint8_t *p, const uint8_t *a,
                                                                size_t as, const int NC, int nr, float *y,
                                                                size_t ldy)
{
    const int64_t nb = n / 32;
    __m512 acc[TILE_C];
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = p + (size_t)(b / 2) * (64 + 2 * 512);
        const uint8_t *qs = blk + 64 + (b % 2) * 512;
        const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(blk + 32 * (b % 2))));
        __m512i w[8];
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) w[k] = _mm512_load_si512(qs + 64 * k);
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            const struct sl_q8s *x = (const struct sl_q8s *)(a + (size_t)c * as) + b;
            __m512i s0 = _mm512_set1_epi32(-128 * x->sum), s1 = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                s0 = _mm512_dpbusd_epi32(s0, w[2 * k], _mm512_set1_epi32(ld32(x->qs + 8 * k)));
                s1 = _mm512_dpbusd_epi32(s1, w[2 * k + 1], _mm512_set1_epi32(ld32(x->qs + 8 * k + 4)));
            }
            const __m512i s = _mm512_add_epi32(s0, s1);
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_set1_ps(x->d)), acc[c]);
        }
    }
    const __mmask16 m = nr >= 16 ? 0xFFFF : tail16(nr);
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) _mm512_mask_storeu_ps(y + (size_t)c * ldy, m, acc[c]);
}

/*
 * Q5_0 (layout: kernels.h): each chunk byte is lo & 7 | hi << 3, so the
 * high value is in place as 8 hi (one and; the product is shifted down by
 * 3 once per block, exactly), and the low value is the byte's bits 0-2
 * with lo >> 3 from the block's 64 upper bytes: split once per block into
 * the nibbles of chunks 0-1 and 2-3, looked up as 8 (lo >> 3) by one
 * vpshufb per chunk and merged by one vpternlogd. Per block that is 15
 * vector ops besides the 8 vpdpbusd, where the layout with 8 fifth-bit masks
 * took 20 and 8 mask loads (masked adds, and the high nibbles shifted
 * down): 1.27-1.29x in L2 with one activation row (docs/performance.md,
 * "Q5_0 panels").
 */
static inline __attribute__((always_inline)) void panel_q5_0_nc(int64_t n, const uint8_t *p, const uint8_t *a,
                                                                size_t as, const int NC, int nr, float *y,
                                                                size_t ldy)
{
    const int64_t nb = n / 32;
    const __m512i m7 = _mm512_set1_epi8(0x07), m_hi = _mm512_set1_epi8((char)0xF8);
    const __m512i m_nib = _mm512_set1_epi8(0x0F);
    /* 8 * (lo >> 3) from a nibble: bits 0-1 (chunks 0, 2), bits 2-3 (1, 3) */
    const __m128i t0 = _mm_setr_epi8(0, 8, 16, 24, 0, 8, 16, 24, 0, 8, 16, 24, 0, 8, 16, 24);
    const __m128i t1 = _mm_setr_epi8(0, 0, 0, 0, 8, 8, 8, 8, 16, 16, 16, 16, 24, 24, 24, 24);
    const __m512i up[2] = {_mm512_broadcast_i32x4(t0), _mm512_broadcast_i32x4(t1)};
    __m512 acc[TILE_C];
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = p + (size_t)(b / 2) * (64 + 2 * (64 + 256));
        const uint8_t *qs = blk + 64 + 2 * 64 + (b % 2) * 256;
        const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(blk + 32 * (b % 2))));
        const __m512i ub = _mm512_load_si512(blk + 64 + (b % 2) * 64);
        const __m512i ix[2] = {_mm512_and_si512(ub, m_nib),
                               _mm512_and_si512(_mm512_srli_epi16(ub, 4), m_nib)};
        __m512i lo[4], hi[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            const __m512i raw = _mm512_load_si512(qs + 64 * k);
            const __m512i u8 = _mm512_shuffle_epi8(up[k % 2], ix[k / 2]); /* 8 (lo >> 3) */
            lo[k] = _mm512_ternarylogic_epi32(m7, raw, u8, 0xCA);           /* m7 ? raw : u8 */
            hi[k] = _mm512_and_si512(raw, m_hi);
        }
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            const struct sl_q8s *x = (const struct sl_q8s *)(a + (size_t)c * as) + b;
            __m512i sl = _mm512_set1_epi32(-16 * x->sum), sh = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                sl = _mm512_dpbusd_epi32(sl, lo[k], _mm512_set1_epi32(ld32(x->qs + 4 * k)));
                sh = _mm512_dpbusd_epi32(sh, hi[k], _mm512_set1_epi32(ld32(x->qs + 16 + 4 * k)));
            }
            const __m512i s = _mm512_add_epi32(sl, _mm512_srai_epi32(sh, 3));
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_set1_ps(x->d)), acc[c]);
        }
    }
    const __mmask16 m = nr >= 16 ? 0xFFFF : tail16(nr);
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) _mm512_mask_storeu_ps(y + (size_t)c * ldy, m, acc[c]);
}

/*
 * Q4_K: per super-block and activation row, each of the 4 sub-block pairs
 * is 8 vpdpbusd into two int32 chains (low nibbles, high nibbles in place;
 * four chains with one activation row, so that consecutive vpdpbusd do not
 * wait on each other), the chains times the 16 rows' sub-block scales
 * (vpmulld, after the high one is shifted down by 4), and the mins term
 * sum_j m_j * (bsums[2j] + bsums[2j + 1]) as 8 vpdpwssd: int16 lanes
 * (m_j, m_j) against the two adjacent bsums as one broadcast int32 (a
 * vpmulld per sub-block against a sum broadcast from a general register
 * was 1-5% slower, docs/performance.md); then d * d_a and -dmin * d_a as
 * two FMAs. The int32 sums stay below 2^31 (8 sub-blocks x 32 x 15 x 127
 * x 63).
 */
static inline __attribute__((always_inline)) void panel_q4_K_nc(int64_t n, const uint8_t *p, const uint8_t *a,
                                                                size_t as, const int NC, int nr, float *y,
                                                                size_t ldy)
{
    const int64_t nb = n / SL_QK_K;
    const __m512i m_lo = _mm512_set1_epi8(0x0F), m_hi = _mm512_set1_epi8((char)0xF0);
    __m512 acc[TILE_C];
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *o = p + (size_t)i * (64 + 2 * 128 + 2048);
        const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)o));
        const __m512 dmw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(o + 32)));
        __m512i sumi[TILE_C], summ[TILE_C];
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) sumi[c] = summ[c] = _mm512_setzero_si512();
        for (int g = 0; g < 4; g++) {
            /* with one activation row, two chains per nibble half (CH) */
            enum { CH_MAX = 2 };
            const int CH = NC == 1 ? 2 : 1;
            __m512i sl[CH_MAX][TILE_C], sh[CH_MAX][TILE_C];
#pragma GCC unroll 2
            for (int h = 0; h < CH; h++)
#pragma GCC unroll 4
                for (int c = 0; c < NC; c++) sl[h][c] = sh[h][c] = _mm512_setzero_si512();
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) {
                const __m512i raw = _mm512_load_si512(o + 320 + 512 * g + 64 * k);
                const __m512i lo = _mm512_and_si512(raw, m_lo), hi = _mm512_and_si512(raw, m_hi);
#pragma GCC unroll 4
                for (int c = 0; c < NC; c++) {
                    const struct sl_block_q8_K *x = (const struct sl_block_q8_K *)(a + (size_t)c * as) + i;
                    sl[k % CH][c] =
                        _mm512_dpbusd_epi32(sl[k % CH][c], lo, _mm512_set1_epi32(ld32(x->qs + 64 * g + 4 * k)));
                    sh[k % CH][c] =
                        _mm512_dpbusd_epi32(sh[k % CH][c], hi, _mm512_set1_epi32(ld32(x->qs + 64 * g + 32 + 4 * k)));
                }
            }
            if (CH == 2)
#pragma GCC unroll 4
                for (int c = 0; c < NC; c++) {
                    sl[0][c] = _mm512_add_epi32(sl[0][c], sl[1][c]);
                    sh[0][c] = _mm512_add_epi32(sh[0][c], sh[1][c]);
                }
            const __m512i sc0 = _mm512_cvtepu8_epi32(_mm_load_si128((const __m128i *)(o + 64 + 32 * g)));
            const __m512i sc1 = _mm512_cvtepu8_epi32(_mm_load_si128((const __m128i *)(o + 64 + 32 * g + 16)));
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) {
                const __m512i hs = _mm512_mullo_epi32(_mm512_srai_epi32(sh[0][c], 4), sc1);
                sumi[c] = _mm512_add_epi32(sumi[c], _mm512_add_epi32(_mm512_mullo_epi32(sl[0][c], sc0), hs));
            }
        }
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            /* int16 lanes m_j, m_j against the sub-block's two bsums */
            const __m512i m32 = _mm512_cvtepu8_epi32(_mm_load_si128((const __m128i *)(o + 192 + 16 * j)));
            const __m512i mn = _mm512_or_si512(m32, _mm512_slli_epi32(m32, 16));
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) {
                const struct sl_block_q8_K *x = (const struct sl_block_q8_K *)(a + (size_t)c * as) + i;
                const __m512i bs = _mm512_set1_epi32(ld32((const int8_t *)(x->bsums + 2 * j)));
                summ[c] = _mm512_dpwssd_epi32(summ[c], mn, bs);
            }
        }
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            const struct sl_block_q8_K *x = (const struct sl_block_q8_K *)(a + (size_t)c * as) + i;
            const __m512 da = _mm512_set1_ps(x->d);
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi[c]), _mm512_mul_ps(dw, da), acc[c]);
            acc[c] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(summ[c]), _mm512_mul_ps(dmw, da), acc[c]);
        }
    }
    const __mmask16 m = nr >= 16 ? 0xFFFF : tail16(nr);
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) _mm512_mask_storeu_ps(y + (size_t)c * ldy, m, acc[c]);
}

/*
 * Q6_K: per super-block, half h and quarter kk (chunks k = 4kk..4kk+3),
 * the four 6-bit values of each chunk (ql low / high nibbles of two parts,
 * two qh bits each, joined with one vpternlogd) fall in four 16-value
 * sub-blocks 8h + 2i + kk; each sub-block's int32 sum starts at -32 times
 * the activation's sum over it (the offset) and is multiplied by the 16
 * rows' int8 scales (vpmulld) once it is complete.
 */
static inline __attribute__((always_inline)) void panel_q6_K_nc(int64_t n, const uint8_t *p, const uint8_t *a,
                                                                size_t as, const int NC, int nr, float *y,
                                                                size_t ldy)
{
    const int64_t nb = n / SL_QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    __m512 acc[TILE_C];
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *o = p + (size_t)i * (64 + 256 + 2048 + 1024);
        const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)o));
        __m512i sumi[TILE_C];
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) sumi[c] = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++)
            for (int kk = 0; kk < 2; kk++) {
                __m512i s[4][TILE_C];
#pragma GCC unroll 4
                for (int q = 0; q < 4; q++)
#pragma GCC unroll 4
                    for (int c = 0; c < NC; c++) {
                        const struct sl_block_q8_K *x = (const struct sl_block_q8_K *)(a + (size_t)c * as) + i;
                        s[q][c] = _mm512_set1_epi32(-32 * x->bsums[8 * h + 2 * q + kk]);
                    }
#pragma GCC unroll 4
                for (int k = 4 * kk; k < 4 * kk + 4; k++) {
                    const uint8_t *ch = o + 320 + 192 * (8 * h + k);
                    const __m512i qa = _mm512_load_si512(ch), qb = _mm512_load_si512(ch + 64);
                    const __m512i hq = _mm512_load_si512(ch + 128);
                    __m512i v[4];
                    v[0] = _mm512_ternarylogic_epi32(_mm512_and_si512(qa, m4), _mm512_slli_epi16(hq, 4), m30, 0xF8);
                    v[1] = _mm512_ternarylogic_epi32(_mm512_and_si512(qb, m4), _mm512_slli_epi16(hq, 2), m30, 0xF8);
                    v[2] = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(qa, 4), m4), hq, m30, 0xF8);
                    v[3] = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(qb, 4), m4),
                                                     _mm512_srli_epi16(hq, 2), m30, 0xF8);
#pragma GCC unroll 4
                    for (int c = 0; c < NC; c++) {
                        const struct sl_block_q8_K *x = (const struct sl_block_q8_K *)(a + (size_t)c * as) + i;
#pragma GCC unroll 4
                        for (int q = 0; q < 4; q++)
                            s[q][c] = _mm512_dpbusd_epi32(s[q][c], v[q],
                                                          _mm512_set1_epi32(ld32(x->qs + 128 * h + 32 * q + 4 * k)));
                    }
                }
#pragma GCC unroll 4
                for (int q = 0; q < 4; q++) {
                    const __m512i sc =
                        _mm512_cvtepi8_epi32(_mm_load_si128((const __m128i *)(o + 64 + 16 * (8 * h + 2 * q + kk))));
#pragma GCC unroll 4
                    for (int c = 0; c < NC; c++) sumi[c] = _mm512_add_epi32(sumi[c], _mm512_mullo_epi32(s[q][c], sc));
                }
            }
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            const struct sl_block_q8_K *x = (const struct sl_block_q8_K *)(a + (size_t)c * as) + i;
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi[c]), _mm512_mul_ps(dw, _mm512_set1_ps(x->d)), acc[c]);
        }
    }
    const __mmask16 m = nr >= 16 ? 0xFFFF : tail16(nr);
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) _mm512_mask_storeu_ps(y + (size_t)c * ldy, m, acc[c]);
}

#define PANEL_SWITCH(name)                                                                       \
    static void name(int64_t n, const void *p, const void *a, size_t as, int nc, int nr, float *y, \
                     size_t ldy)                                                                \
    {                                                                                           \
        switch (nc) {                                                                           \
        case 1: name##_nc(n, p, a, as, 1, nr, y, ldy); break;                                   \
        case 2: name##_nc(n, p, a, as, 2, nr, y, ldy); break;                                   \
        case 3: name##_nc(n, p, a, as, 3, nr, y, ldy); break;                                   \
        default: name##_nc(n, p, a, as, 4, nr, y, ldy); break;                                  \
        }                                                                                       \
    }

PANEL_SWITCH(panel_q4_0)
PANEL_SWITCH(panel_q8_0)
PANEL_SWITCH(panel_q5_0)
PANEL_SWITCH(panel_q4_K)
PANEL_SWITCH(panel_q6_K)

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

const struct sl_kernels sl_kernels_avx512 = {
    .name = "avx512",
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
            [SL_TYPE_Q4_0] = {sl_q8s_size, pack_q8s, panel_q4_0, TILE_C},
            [SL_TYPE_Q8_0] = {sl_q8s_size, pack_q8s, panel_q8_0, TILE_C},
            [SL_TYPE_Q5_0] = {sl_q8s_size, pack_q8s, panel_q5_0, TILE_C},
            [SL_TYPE_Q4_K] = {q8_K_size, pack_q8_K, panel_q4_K, TILE_C},
            [SL_TYPE_Q6_K] = {q8_K_size, pack_q8_K, panel_q6_K, TILE_C},
            [SL_TYPE_F16] = {f32_size, pack_f16, panel_f16, PANEL_F_C},
            [SL_TYPE_BF16] = {f32_size, pack_bf16, panel_bf16, PANEL_F_C},
        },
    .fp32_to_fp16_row = fp32_to_fp16_row,
    .silu_mul = sl_silu_mul_avx512,
    .gelu_mul = sl_gelu_mul_avx512,
    .attn_scores = sl_attn_scores_avx512,
    .attn_pv = sl_attn_pv_avx512,
    .exp_row = sl_exp_row_avx512,
    .pack_f16 = sl_panel_pack_f16_avx512, /* kernels/pack_avx512.c, load time only */
    .pack_q = sl_panel_pack_q_avx512,
};

#endif /* x86 */
