/*
 * pack_avx2.c - AVX2 repack of F16/BF16 weights into row panels (engine
 * layer).
 *
 * Built with the AVX2 flags (CMakeLists.txt) and set as the avx2 table's
 * pack_f16 by kernels.c. The F16/BF16 panel (kernels.h "Row panels") is a
 * transpose of 16 rows x n values of 16 bits: slice k = value k of the 16
 * rows. This file transposes 16 x 16 blocks in registers, the classic
 * three rounds of unpacks (16-, 32- and 64-bit interleaves, each inside a
 * 128-bit lane) followed by one 128-bit lane exchange. A move of bits and
 * nothing else: the result is bit-identical to sl_panel_pack_f16_ref
 * (tests/unit/test_repack.c checks every path on odd sizes).
 */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels_int.h"

/* Rows 0..7 (r[0..7], 16 values each) -> t[j]: low lane value j of the 8
 * rows, high lane value 8 + j. */
static inline void transpose8_lanes(const __m256i r[8], __m256i t[8])
{
    __m256i a[8], b[8];
    for (int i = 0; i < 4; i++) {
        a[2 * i] = _mm256_unpacklo_epi16(r[2 * i], r[2 * i + 1]); /* values 0..3 of rows 2i, 2i+1 */
        a[2 * i + 1] = _mm256_unpackhi_epi16(r[2 * i], r[2 * i + 1]); /* values 4..7 */
    }
    for (int i = 0; i < 2; i++)
        for (int h = 0; h < 2; h++) {
            /* rows 4i..4i+3: values 4h, 4h+1 (lo) and 4h+2, 4h+3 (hi) */
            b[4 * i + 2 * h] = _mm256_unpacklo_epi32(a[4 * i + h], a[4 * i + 2 + h]);
            b[4 * i + 2 * h + 1] = _mm256_unpackhi_epi32(a[4 * i + h], a[4 * i + 2 + h]);
        }
    for (int j = 0; j < 4; j++) {
        /* b[j] holds values 2j, 2j+1 of rows 0..3, b[4 + j] of rows 4..7 */
        t[2 * j] = _mm256_unpacklo_epi64(b[j], b[4 + j]);
        t[2 * j + 1] = _mm256_unpackhi_epi64(b[j], b[4 + j]);
    }
}

void sl_panel_pack_f16_avx2(const void *w, size_t w_stride, int nr, int64_t n, void *out)
{
    if (nr < SL_PANEL_ROWS) {
        sl_panel_pack_f16_ref(w, w_stride, nr, n, out); /* a last partial panel */
        return;
    }
    const uint8_t *src = w;
    uint8_t *o = out;
    const int stream =
        ((uintptr_t)o & 63) == 0; /* bypass the cache: written once, read much later */
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        __m256i r[16], t[8], u[8];
        for (int i = 0; i < 16; i++)
            r[i] = _mm256_loadu_si256((const __m256i *)(src + (size_t)i * w_stride + 2 * k));
        transpose8_lanes(r, t);
        transpose8_lanes(r + 8, u);
        /* slice k + j: rows 0..7 from t[j], 8..15 from u[j], the low lanes
         * for j < 8, the high ones for 8 + j; in order, whole lines */
        for (int j = 0; j < 16; j++) {
            const __m256i v = j < 8 ? _mm256_permute2x128_si256(t[j], u[j], 0x20)
                                    : _mm256_permute2x128_si256(t[j - 8], u[j - 8], 0x31);
            if (stream)
                _mm256_stream_si256((__m256i *)(void *)(o + 32 * (k + j)), v);
            else
                _mm256_storeu_si256((__m256i *)(void *)(o + 32 * (k + j)), v);
        }
    }
    if (stream) _mm_sfence();
    sl_pack_f16_tail(src, w_stride, k, n, o);
}

/*
 * The quantized panels: as pack_avx512.c (one 4-byte piece of each of the
 * 16 rows per 64-byte line), in 256-bit halves. dwords4 reads 16 bytes at
 * the same offset of 8 rows (row 4L + i of the group in lane L of
 * register i) and transposes the dwords inside each 128-bit lane: out[k]
 * holds dword k of the 8 rows, one half of panel line k.
 */
static inline void dwords4(const uint8_t *p, size_t stride, __m256i out[4])
{
    __m256i z[4];
    for (int i = 0; i < 4; i++) {
        const uint8_t *q = p + (size_t)i * stride;
        z[i] = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)q)),
            _mm_loadu_si128((const __m128i *)(const void *)(q + 4 * stride)), 1);
    }
    const __m256i a0 = _mm256_unpacklo_epi32(z[0], z[1]), a1 = _mm256_unpackhi_epi32(z[0], z[1]);
    const __m256i a2 = _mm256_unpacklo_epi32(z[2], z[3]), a3 = _mm256_unpackhi_epi32(z[2], z[3]);
    out[0] = _mm256_unpacklo_epi64(a0, a2);
    out[1] = _mm256_unpackhi_epi64(a0, a2);
    out[2] = _mm256_unpacklo_epi64(a1, a3);
    out[3] = _mm256_unpackhi_epi64(a1, a3);
}

static inline void put_half(uint8_t *o, __m256i v, int stream)
{
    if (stream)
        _mm256_stream_si256((__m256i *)(void *)o, v);
    else
        _mm256_storeu_si256((__m256i *)(void *)o, v);
}

/* Four lines of dwords at p (16 bytes per row) to o, XOR flip. */
static inline void chunk_lines(const uint8_t *p, size_t stride, uint8_t *o, __m256i flip,
                               int stream)
{
    __m256i t[2][4]; /* rows 0..7, 8..15: both halves of a line stored together */
    for (int g = 0; g < 2; g++)
        dwords4(p + (size_t)(8 * g) * stride, stride, t[g]);
    for (int k = 0; k < 4; k++)
        for (int g = 0; g < 2; g++)
            put_half(o + 64 * k + 32 * g, _mm256_xor_si256(t[g][k], flip), stream);
}

/* Lines of hdr (built in scalar code) to o. */
static inline void put_lines(uint8_t *o, const uint8_t *hdr, int n_lines, int stream)
{
    for (int l = 0; l < 2 * n_lines; l++)
        put_half(o + 32 * l, _mm256_load_si256((const __m256i *)(const void *)(hdr + 32 * l)),
                 stream);
}

void sl_panel_pack_q_avx2(int type, const void *w, size_t w_stride, int64_t n, void *out)
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
        const __m256i flip = _mm256_set1_epi32(q8 ? (int)0x80808080u : 0); /* Q8_0: w + 128 */
        for (int64_t j = 0; j < n / 64; j++) {
            uint8_t *base = o + (size_t)j * pair;
            sl_pack_hdr_pair(src, w_stride, bs, j, hdr);
            put_lines(base, hdr, 1, stream);
            for (int h = 0; h < 2; h++) {
                const uint8_t *qs = src + (size_t)(2 * j + h) * bs + 2;
                for (size_t c = 0; c < qb / 256; c++)
                    chunk_lines(qs + 16 * c, w_stride, base + 64 + h * qb + 256 * c, flip, stream);
            }
        }
    } else if (type == SL_TYPE_Q4_K) {
        const __m256i zero = _mm256_setzero_si256();
        for (int64_t i = 0; i < n / SL_QK_K; i++) {
            uint8_t *base = o + (size_t)i * (64 + 2 * 128 + 2048);
            sl_pack_hdr_q4_K(src, w_stride, i, hdr);
            put_lines(base, hdr, 5, stream);
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
            put_lines(base, hdr, 5, stream);
            /* chunks k = 4c..4c+3 of half h: ql dwords 16h + k and 16h + 8 + k,
             * qh dword 8h + k, of rows 0..7 (g = 0) and 8..15; both halves of
             * a line are written together (streaming stores of half lines
             * far apart in time measured 0.7x the scalar loop) */
            for (int h = 0; h < 2; h++)
                for (int c = 0; c < 2; c++) {
                    __m256i lo[2][4], hi[2][4], qh[2][4];
                    for (int g = 0; g < 2; g++) {
                        const uint8_t *rows = b0 + (size_t)(8 * g) * w_stride;
                        dwords4(rows + 64 * h + 16 * c, w_stride, lo[g]);
                        dwords4(rows + 64 * h + 32 + 16 * c, w_stride, hi[g]);
                        dwords4(rows + offsetof(struct sl_block_q6_K, qh) + 32 * h + 16 * c,
                                w_stride, qh[g]);
                    }
                    for (int kk = 0; kk < 4; kk++) {
                        uint8_t *line = base + 320 + 192 * (8 * h + 4 * c + kk);
                        for (int g = 0; g < 2; g++) {
                            put_half(line + 32 * g, lo[g][kk], stream);
                            put_half(line + 64 + 32 * g, hi[g][kk], stream);
                            put_half(line + 128 + 32 * g, qh[g][kk], stream);
                        }
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
