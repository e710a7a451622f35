/*
 * pack_avx512.c - AVX-512 repack of F16/BF16 weights into row panels
 * (engine layer).
 *
 * Built with the AVX-512 flags (CMakeLists.txt) and set as the avx512
 * table's pack_f16 by kernels.c. A 16 x 16 block of 16-bit values (16 rows
 * of the weight, 16 values each) sits in 8 registers, two rows per
 * register; three rounds of vpermt2w (two-source word permutes, AVX-512
 * BW) each pair two registers and trade one bit of the row index held in
 * the register number for one bit of the value index, until register k
 * holds slices 2k and 2k + 1 of the panel (value 2k of the 16 rows, then
 * value 2k + 1): 24 permutes and 8 whole-line stores per block. The word
 * indices are derived once (perm_init) by following every element
 * through the rounds. A move of bits and nothing else: the result is
 * bit-identical to sl_panel_pack_f16_ref (tests/unit/test_repack.c).
 */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels_int.h"

static pthread_once_t perm_once = PTHREAD_ONCE_INIT;
static uint16_t perm_idx[3][8]
                        [32]; /* (round, target register, word): source word, 32+ = 2nd source */

/*
 * Element (row r, value c) of the block is named r << 4 | c. Register i
 * starts with rows 2i (words 0..15) and 2i + 1 (words 16..31). Round s
 * pairs registers lo, hi = lo | 1 << b (b = 2 - s) and gives the one with
 * bit b clear the elements whose value bit 3 - s is clear; the last round
 * puts each element at word (c & 1) << 4 | r, the panel's order.
 */
static void perm_init(void)
{
    uint8_t e[8][32], ne[8][32];
    for (int i = 0; i < 8; i++)
        for (int p = 0; p < 32; p++)
            e[i][p] = (uint8_t)((2 * i + (p >> 4)) << 4 | (p & 15));
    for (int s = 0; s < 3; s++) {
        const int b = 2 - s, cb = 3 - s;
        for (int i = 0; i < 8; i++) {
            const int lo = i & ~(1 << b), hi = lo | 1 << b, want = i >> b & 1;
            int q = 0;
            for (int src = 0; src < 64; src++) {
                const uint8_t x = e[src < 32 ? lo : hi][src & 31];
                if ((x >> cb & 1) != want) continue;
                const int at = s == 2 ? (x & 1) << 4 | x >> 4 : q++;
                ne[i][at] = x;
                perm_idx[s][i][at] = (uint16_t)src;
            }
        }
        memcpy(e, ne, sizeof e);
    }
}

void sl_panel_pack_f16_avx512(const void *w, size_t w_stride, int nr, int64_t n, void *out)
{
    if (nr < SL_PANEL_ROWS) {
        sl_panel_pack_f16_ref(w, w_stride, nr, n, out); /* a last partial panel */
        return;
    }
    pthread_once(&perm_once, perm_init);
    const uint8_t *src = w;
    uint8_t *o = out;
    const int stream =
        ((uintptr_t)o & 63) == 0; /* bypass the cache: written once, read much later */
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        __m512i x[8], y[8];
        for (int i = 0; i < 8; i++) {
            const uint8_t *row = src + (size_t)(2 * i) * w_stride + 2 * k;
            x[i] =
                _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)row)),
                                   _mm256_loadu_si256((const __m256i *)(row + w_stride)), 1);
        }
        for (int s = 0; s < 3; s++) {
            const int b = 2 - s;
            for (int i = 0; i < 8; i++) {
                const int lo = i & ~(1 << b), hi = lo | 1 << b;
                y[i] = _mm512_permutex2var_epi16(x[lo], _mm512_loadu_si512(perm_idx[s][i]), x[hi]);
            }
            memcpy(x, y, sizeof x);
        }
        if (stream)
            for (int j = 0; j < 8; j++)
                _mm512_stream_si512((void *)(o + 32 * (k + 2 * j)), x[j]);
        else
            for (int j = 0; j < 8; j++)
                _mm512_storeu_si512(o + 32 * (k + 2 * j), x[j]);
    }
    if (stream) _mm_sfence();
    sl_pack_f16_tail(src, w_stride, k, n, o);
}

/*
 * The quantized panels (kernels.h "Row panels") are made of 64-byte lines
 * that each hold one 4-byte piece of the 16 rows: a chunk of quants.
 * dwords4 reads 16 bytes at the same offset of each row (four rows per
 * register, row 4L + i in lane L of register i) and transposes the
 * dwords inside each 128-bit lane, so that out[k] holds dword k of rows
 * 0..15 in order: four panel lines per call, with no gathers (vpgatherdd
 * was measured no faster than the scalar loop). Scales and the other
 * small per-row fields are copied in scalar code into a line buffer. The
 * bytes are those of sl_panel_pack_ref (tests/unit/test_repack.c).
 */
static inline void dwords4(const uint8_t *p, size_t stride, __m512i out[4])
{
    __m512i z[4];
    for (int i = 0; i < 4; i++) {
        const uint8_t *q = p + (size_t)i * stride;
        __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(const void *)q));
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(const void *)(q + 4 * stride)),
                               1);
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(const void *)(q + 8 * stride)),
                               2);
        z[i] = _mm512_inserti32x4(
            v, _mm_loadu_si128((const __m128i *)(const void *)(q + 12 * stride)), 3);
    }
    const __m512i a0 = _mm512_unpacklo_epi32(z[0], z[1]), a1 = _mm512_unpackhi_epi32(z[0], z[1]);
    const __m512i a2 = _mm512_unpacklo_epi32(z[2], z[3]), a3 = _mm512_unpackhi_epi32(z[2], z[3]);
    out[0] = _mm512_unpacklo_epi64(a0, a2);
    out[1] = _mm512_unpackhi_epi64(a0, a2);
    out[2] = _mm512_unpacklo_epi64(a1, a3);
    out[3] = _mm512_unpackhi_epi64(a1, a3);
}

static inline void put_line(uint8_t *o, __m512i v, int stream)
{
    if (stream)
        _mm512_stream_si512((void *)o, v);
    else
        _mm512_storeu_si512(o, v);
}

/* Four lines of dwords at p (16 bytes per row) to o, XOR flip. */
static inline void chunk_lines(const uint8_t *p, size_t stride, uint8_t *o, __m512i flip,
                               int stream)
{
    __m512i t[4];
    dwords4(p, stride, t);
    for (int k = 0; k < 4; k++)
        put_line(o + 64 * k, _mm512_xor_si512(t[k], flip), stream);
}

void sl_panel_pack_q_avx512(int type, const void *w, size_t w_stride, int64_t n, void *out)
{
    const uint8_t *src = w;
    uint8_t *o = out;
    const int stream =
        ((uintptr_t)o & 63) == 0; /* bypass the cache: written once, read much later */
    _Alignas(64) uint8_t hdr[320];
    if (type == SL_TYPE_Q4_0 || type == SL_TYPE_Q8_0) {
        const int q8 = type == SL_TYPE_Q8_0;
        const size_t bs = q8 ? sizeof(struct sl_block_q8_0) : sizeof(struct sl_block_q4_0);
        const size_t qb = q8 ? 512 : 256, pair = 64 + 2 * qb;
        const __m512i flip = _mm512_set1_epi32(q8 ? (int)0x80808080u : 0); /* Q8_0: w + 128 */
        for (int64_t j = 0; j < n / 64; j++) {
            uint8_t *base = o + (size_t)j * pair;
            sl_pack_hdr_pair(src, w_stride, bs, j, hdr);
            put_line(base, _mm512_load_si512(hdr), stream);
            for (int h = 0; h < 2; h++) {
                const uint8_t *qs = src + (size_t)(2 * j + h) * bs + 2;
                for (size_t c = 0; c < qb / 256; c++)
                    chunk_lines(qs + 16 * c, w_stride, base + 64 + h * qb + 256 * c, flip, stream);
            }
        }
    } else if (type == SL_TYPE_Q4_K) {
        const __m512i zero = _mm512_setzero_si512();
        for (int64_t i = 0; i < n / SL_QK_K; i++) {
            uint8_t *base = o + (size_t)i * (64 + 2 * 128 + 2048);
            sl_pack_hdr_q4_K(src, w_stride, i, hdr);
            for (int l = 0; l < 5; l++)
                put_line(base + 64 * l, _mm512_load_si512(hdr + 64 * l), stream);
            const uint8_t *qs =
                src + (size_t)i * sizeof(struct sl_block_q4_K) + offsetof(struct sl_block_q4_K, qs);
            for (int c = 0; c < 8; c++)
                chunk_lines(qs + 16 * c, w_stride, base + 320 + 256 * c, zero, stream);
        }
    } else if (type == SL_TYPE_Q6_K) {
        for (int64_t i = 0; i < n / SL_QK_K; i++) {
            uint8_t *base = o + (size_t)i * (64 + 256 + 2048 + 1024);
            const uint8_t *b0 = src + (size_t)i * sizeof(struct sl_block_q6_K);
            sl_pack_hdr_q6_K(b0, w_stride, hdr);
            for (int l = 0; l < 5; l++)
                put_line(base + 64 * l, _mm512_load_si512(hdr + 64 * l), stream);
            for (int h = 0; h < 2; h++) {
                __m512i ql[16], qh[8]; /* dwords 16h.. of ql, 8h.. of qh, of the 16 rows */
                for (int c = 0; c < 4; c++)
                    dwords4(b0 + 64 * h + 16 * c, w_stride, ql + 4 * c);
                for (int c = 0; c < 2; c++)
                    dwords4(b0 + offsetof(struct sl_block_q6_K, qh) + 32 * h + 16 * c, w_stride,
                            qh + 4 * c);
                for (int k = 0; k < 8; k++) {
                    uint8_t *c = base + 320 + 192 * (8 * h + k);
                    put_line(c, ql[k], stream);
                    put_line(c + 64, ql[8 + k], stream);
                    put_line(c + 128, qh[k], stream);
                }
            }
        }
    } else {
        sl_panel_pack_ref(type, w, w_stride, SL_PANEL_ROWS, n, out); /* not a pack_q type */
        return;
    }
    if (stream) _mm_sfence();
}

#endif
