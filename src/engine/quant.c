/*
 * quant.c - GGML's tensor element types (engine layer): type traits, half and
 * bfloat16 conversion, and for every block format a dequantizer, a reference
 * quantizer and a scalar dot product.
 *
 * This file is the definition the fast kernels are tested against:
 *  - dequantization is bit-exact to ggml's dequantize_row_* (same float
 *    operations in the same order);
 *  - the quantizers follow ggml's quantize_row_*_ref step by step, including
 *    the scale searches of the K-quants (qx_quants, q3_quants, qkx2_quants
 *    below), so `sluice quantize` writes the bytes llama-quantize writes
 *    without an imatrix;
 *  - the dot products work in integers per block, as ggml's do, with the
 *    min terms taken from the activation block's precomputed sums.
 *
 * Block layouts are declared in quant.h. Value v of a block is always
 * addressed by computing where its bits live (see each dequantizer), so the
 * layout can be read off one function per type.
 */
#include "quant.h"

#include <float.h>
#include <math.h>
#include <string.h>
#include <strings.h>

#include "../base/err.h"

/* Bit-exactness needs plain IEEE single-precision operations: no fused
 * multiply-add contraction, even when built with -march=native (measured:
 * with GCC's default -ffp-contract=fast and FMA available, 2% to 30% of the
 * K-quant rows of the conformance models come out different). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

/* The block structs are read in place; GGUF is little-endian. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "sluice assumes a little-endian host");

/* Below this magnitude a group counts as all zero (ggml's GROUP_MAX_EPS). */
#define GROUP_MAX_EPS 1e-15f

/* ------------------------------------------------------------------------ */
/* type traits                                                               */
/* ------------------------------------------------------------------------ */

static const struct sl_type_traits traits[SL_TYPE_COUNT] = {
    [SL_TYPE_F32] = {"F32", 1, 4, false, SL_TYPE_F32, true},
    [SL_TYPE_F16] = {"F16", 1, 2, false, SL_TYPE_F16, true},
    [SL_TYPE_BF16] = {"BF16", 1, 2, false, SL_TYPE_BF16, true},
    [SL_TYPE_Q4_0] = {"Q4_0", SL_QK4_0, sizeof(struct sl_block_q4_0), true, SL_TYPE_Q8_0, true},
    [SL_TYPE_Q4_1] = {"Q4_1", SL_QK4_1, sizeof(struct sl_block_q4_1), true, SL_TYPE_Q8_1, true},
    [SL_TYPE_Q5_0] = {"Q5_0", SL_QK5_0, sizeof(struct sl_block_q5_0), true, SL_TYPE_Q8_0, true},
    [SL_TYPE_Q5_1] = {"Q5_1", SL_QK5_1, sizeof(struct sl_block_q5_1), true, SL_TYPE_Q8_1, true},
    [SL_TYPE_Q8_0] = {"Q8_0", SL_QK8_0, sizeof(struct sl_block_q8_0), true, SL_TYPE_Q8_0, true},
    [SL_TYPE_Q8_1] = {"Q8_1", SL_QK8_1, sizeof(struct sl_block_q8_1), true, -1, false},
    [SL_TYPE_Q2_K] = {"Q2_K", SL_QK_K, sizeof(struct sl_block_q2_K), true, SL_TYPE_Q8_K, true},
    [SL_TYPE_Q3_K] = {"Q3_K", SL_QK_K, sizeof(struct sl_block_q3_K), true, SL_TYPE_Q8_K, true},
    [SL_TYPE_Q4_K] = {"Q4_K", SL_QK_K, sizeof(struct sl_block_q4_K), true, SL_TYPE_Q8_K, true},
    [SL_TYPE_Q5_K] = {"Q5_K", SL_QK_K, sizeof(struct sl_block_q5_K), true, SL_TYPE_Q8_K, true},
    [SL_TYPE_Q6_K] = {"Q6_K", SL_QK_K, sizeof(struct sl_block_q6_K), true, SL_TYPE_Q8_K, true},
    [SL_TYPE_Q8_K] = {"Q8_K", SL_QK_K, sizeof(struct sl_block_q8_K), true, -1, false},
    [SL_TYPE_I8] = {"I8", 1, 1, false, -1, false},
    [SL_TYPE_I16] = {"I16", 1, 2, false, -1, false},
    [SL_TYPE_I32] = {"I32", 1, 4, false, -1, false},
    [SL_TYPE_I64] = {"I64", 1, 8, false, -1, false},
    [SL_TYPE_F64] = {"F64", 1, 8, false, -1, false},
};

const struct sl_type_traits *sl_type_traits(uint32_t type)
{
    if (type >= SL_TYPE_COUNT || !traits[type].name) return NULL;
    return &traits[type];
}

int sl_type_from_name(const char *name)
{
    if (!name) return -1;
    for (int t = 0; t < SL_TYPE_COUNT; t++)
        if (traits[t].name && strcasecmp(traits[t].name, name) == 0) return t;
    return -1;
}

size_t sl_row_size(int type, int64_t n)
{
    const struct sl_type_traits *tr = type >= 0 ? sl_type_traits((uint32_t)type) : NULL;
    if (!tr || n < 0 || n % tr->blck != 0) return 0;
    return (size_t)(n / tr->blck) * tr->type_size;
}

/* ------------------------------------------------------------------------ */
/* half and bfloat16                                                         */
/* ------------------------------------------------------------------------ */

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float sl_fp16_to_fp32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1f;
    const uint32_t man = h & 0x3ff;
    if (exp == 0x1f) /* inf, or NaN made quiet (as F16C and ggml do) */
        return f32_from_bits(sign | 0x7f800000 | (man << 13) | (man ? 0x400000u : 0));
    if (exp != 0) /* normal: rebias the exponent 15 -> 127 */
        return f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
    /* zero or subnormal: man * 2^-24, exact in float */
    const float v = (float)man * 0x1p-24f;
    return sign ? -v : v;
}

uint16_t sl_fp32_to_fp16(float f)
{
    const uint32_t x = f32_bits(f);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    const uint32_t ax = x & 0x7fffffff;
    if (ax > 0x7f800000) return sign | 0x7e00; /* NaN: quiet, payload dropped (ggml) */
    if (ax >= 0x477ff000) return sign | 0x7c00; /* >= 65520 rounds to inf */
    if (ax >= 0x38800000) {                    /* >= 2^-14: a normal half */
        /* rebias 127 -> 15 and drop 13 mantissa bits, ties to even */
        const uint32_t r = ax + 0xfff + ((ax >> 13) & 1);
        return sign | (uint16_t)((r - 0x38000000) >> 13);
    }
    const uint32_t e = ax >> 23;
    if (e < 102) return sign; /* below 2^-25 (half the smallest subnormal): zero */
    /* subnormal half: round(|f| * 2^24) = significand >> (126 - e), ties to even */
    const uint32_t m = (ax & 0x7fffff) | 0x800000;
    const uint32_t shift = 126 - e; /* 14..24 */
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return sign | (uint16_t)q;
}

float sl_bf16_to_fp32(uint16_t h)
{
    return f32_from_bits((uint32_t)h << 16);
}

uint16_t sl_fp32_to_bf16(float f)
{
    const uint32_t x = f32_bits(f);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    /* ties to even; subnormals are kept (current ggml; older ggml flushed them) */
    return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

#define H2F(h) sl_fp16_to_fp32(h)
#define F2H(f) sl_fp32_to_fp16(f)

/* ------------------------------------------------------------------------ */
/* shared helpers                                                            */
/* ------------------------------------------------------------------------ */

/* Round to nearest, ties to even, for |v| < 2^22: adding 1.5 * 2^23 makes the
 * FPU round v into the low mantissa bits of the sum (ggml's nearest_int). */
static inline int nearest_int(float v)
{
    const float t = v + 12582912.f;
    int32_t i;
    memcpy(&i, &t, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

static inline int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* The 5th bit of value j (0..31) of a Q5_0/Q5_1 block. */
static inline int q5_hbit(const uint8_t qh[4], int j)
{
    return (qh[j / 8] >> (j % 8)) & 1;
}

/* The 16 signed 6-bit scales of a Q3_K block: the low 4 bits of scale j are
 * nibble (j / 8) of scales[j % 8], the high 2 bits are bits 2*(j / 4) of
 * scales[8 + j % 4]; stored with an offset of 32. */
static void q3k_unpack_scales(const uint8_t s[SL_K_SCALE_SIZE], int sc[16])
{
    for (int j = 0; j < 16; j++) {
        const int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
        const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        sc[j] = (lo | (hi << 4)) - 32;
    }
}

/*
 * In Q2_K and Q3_K, the 2-bit quant of value v (0..255) sits in
 *   qs[32 * (v / 128) + v % 32] at bit 2 * ((v % 128) / 32),
 * and Q3_K's high bit (set: +0, clear: -4) in hmask[v % 32] at bit v / 32.
 */
static inline int q2k_get(const uint8_t *qs, int v)
{
    return (qs[32 * (v / 128) + v % 32] >> (2 * ((v % 128) / 32))) & 3;
}

static inline int q3k_get(const struct sl_block_q3_K *b, int v)
{
    const int hbit = (b->hmask[v % 32] >> (v / 32)) & 1;
    return q2k_get(b->qs, v) - (hbit ? 0 : 4);
}

/* In Q4_K/Q5_K, value v's 4 low bits are nibble (v / 32) % 2 of
 * qs[32 * (v / 64) + v % 32]; Q5_K's 5th bit is bit v / 32 of qh[v % 32]. */
static inline int q4k_get(const uint8_t *qs, int v)
{
    return (qs[32 * (v / 64) + v % 32] >> (4 * ((v / 32) % 2))) & 0xF;
}

static inline int q5k_get(const struct sl_block_q5_K *b, int v)
{
    return q4k_get(b->qs, v) | (((b->qh[v % 32] >> (v / 32)) & 1) << 4);
}

/* In Q6_K, value v = 128 * h + 32 * r + t (h half, r 0..3, t 0..31) has its
 * low 4 bits in nibble r / 2 of ql[64 * h + 32 * (r % 2) + t] and its high 2
 * bits at bit 2 * r of qh[32 * h + t]; stored with an offset of 32. */
static inline int q6k_get(const struct sl_block_q6_K *b, int v)
{
    const int h = v / 128, r = (v % 128) / 32, t = v % 32;
    const int lo = (b->ql[64 * h + 32 * (r % 2) + t] >> (4 * (r / 2))) & 0xF;
    const int hi = (b->qh[32 * h + t] >> (2 * r)) & 3;
    return (lo | (hi << 4)) - 32;
}

/* ------------------------------------------------------------------------ */
/* dequantization                                                            */
/* ------------------------------------------------------------------------ */

static void dequant_q4_0(const struct sl_block_q4_0 *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = H2F(x[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = ((x[i].qs[j] & 0xF) - 8) * d;
            y[j + 16] = ((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void dequant_q4_1(const struct sl_block_q4_1 *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = H2F(x[i].d), m = H2F(x[i].m);
        for (int j = 0; j < 16; j++) {
            y[j] = (x[i].qs[j] & 0xF) * d + m;
            y[j + 16] = (x[i].qs[j] >> 4) * d + m;
        }
    }
}

static void dequant_q5_0(const struct sl_block_q5_0 *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = H2F(x[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = (((x[i].qs[j] & 0xF) | (q5_hbit(x[i].qh, j) << 4)) - 16) * d;
            y[j + 16] = (((x[i].qs[j] >> 4) | (q5_hbit(x[i].qh, j + 16) << 4)) - 16) * d;
        }
    }
}

static void dequant_q5_1(const struct sl_block_q5_1 *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = H2F(x[i].d), m = H2F(x[i].m);
        for (int j = 0; j < 16; j++) {
            y[j] = ((x[i].qs[j] & 0xF) | (q5_hbit(x[i].qh, j) << 4)) * d + m;
            y[j + 16] = ((x[i].qs[j] >> 4) | (q5_hbit(x[i].qh, j + 16) << 4)) * d + m;
        }
    }
}

static void dequant_q8_0(const struct sl_block_q8_0 *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = H2F(x[i].d);
        for (int j = 0; j < 32; j++) y[j] = x[i].qs[j] * d;
    }
}

static void dequant_q8_1(const struct sl_block_q8_1 *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = H2F(x[i].d);
        for (int j = 0; j < 32; j++) y[j] = x[i].qs[j] * d;
    }
}

static void dequant_q2_K(const struct sl_block_q2_K *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += SL_QK_K) {
        const float d = H2F(x[i].d), dmin = H2F(x[i].dmin);
        for (int j = 0; j < 16; j++) { /* sub-block of 16 */
            const float dl = d * (x[i].scales[j] & 0xF), ml = dmin * (x[i].scales[j] >> 4);
            for (int l = 0; l < 16; l++) y[16 * j + l] = dl * q2k_get(x[i].qs, 16 * j + l) - ml;
        }
    }
}

static void dequant_q3_K(const struct sl_block_q3_K *x, float *y, int64_t nb)
{
    int sc[16];
    for (int64_t i = 0; i < nb; i++, y += SL_QK_K) {
        const float d = H2F(x[i].d);
        q3k_unpack_scales(x[i].scales, sc);
        for (int j = 0; j < 16; j++) {
            const float dl = d * sc[j];
            for (int l = 0; l < 16; l++) y[16 * j + l] = dl * q3k_get(&x[i], 16 * j + l);
        }
    }
}

static void dequant_q4_K(const struct sl_block_q4_K *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += SL_QK_K) {
        const float d = H2F(x[i].d), dmin = H2F(x[i].dmin);
        for (int j = 0; j < 8; j++) { /* sub-block of 32 */
            uint8_t sc, m;
            sl_k4_scale_min(j, x[i].scales, &sc, &m);
            const float dl = d * sc, ml = dmin * m;
            for (int l = 0; l < 32; l++) y[32 * j + l] = dl * q4k_get(x[i].qs, 32 * j + l) - ml;
        }
    }
}

static void dequant_q5_K(const struct sl_block_q5_K *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += SL_QK_K) {
        const float d = H2F(x[i].d), dmin = H2F(x[i].dmin);
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            sl_k4_scale_min(j, x[i].scales, &sc, &m);
            const float dl = d * sc, ml = dmin * m;
            for (int l = 0; l < 32; l++) y[32 * j + l] = dl * q5k_get(&x[i], 32 * j + l) - ml;
        }
    }
}

static void dequant_q6_K(const struct sl_block_q6_K *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += SL_QK_K) {
        const float d = H2F(x[i].d);
        for (int v = 0; v < SL_QK_K; v++) y[v] = d * x[i].scales[v / 16] * q6k_get(&x[i], v);
    }
}

static void dequant_q8_K(const struct sl_block_q8_K *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += SL_QK_K)
        for (int j = 0; j < SL_QK_K; j++) y[j] = x[i].d * x[i].qs[j];
}

void sl_dequantize_row(int type, const void *src, float *dst, int64_t n)
{
    const struct sl_type_traits *tr = type >= 0 ? sl_type_traits((uint32_t)type) : NULL;
    SL_ASSERT(tr && n >= 0 && n % tr->blck == 0);
    const int64_t nb = n / tr->blck;
    switch (type) {
    case SL_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); return;
    case SL_TYPE_F16: {
        const uint16_t *h = src;
        for (int64_t i = 0; i < n; i++) dst[i] = sl_fp16_to_fp32(h[i]);
        return;
    }
    case SL_TYPE_BF16: {
        const uint16_t *h = src;
        for (int64_t i = 0; i < n; i++) dst[i] = sl_bf16_to_fp32(h[i]);
        return;
    }
    case SL_TYPE_Q4_0: dequant_q4_0(src, dst, nb); return;
    case SL_TYPE_Q4_1: dequant_q4_1(src, dst, nb); return;
    case SL_TYPE_Q5_0: dequant_q5_0(src, dst, nb); return;
    case SL_TYPE_Q5_1: dequant_q5_1(src, dst, nb); return;
    case SL_TYPE_Q8_0: dequant_q8_0(src, dst, nb); return;
    case SL_TYPE_Q8_1: dequant_q8_1(src, dst, nb); return;
    case SL_TYPE_Q2_K: dequant_q2_K(src, dst, nb); return;
    case SL_TYPE_Q3_K: dequant_q3_K(src, dst, nb); return;
    case SL_TYPE_Q4_K: dequant_q4_K(src, dst, nb); return;
    case SL_TYPE_Q5_K: dequant_q5_K(src, dst, nb); return;
    case SL_TYPE_Q6_K: dequant_q6_K(src, dst, nb); return;
    case SL_TYPE_Q8_K: dequant_q8_K(src, dst, nb); return;
    }
    SL_ASSERT(!"sl_dequantize_row: type has no dequantizer");
}

/* ------------------------------------------------------------------------ */
/* reference quantizers: 32-value blocks                                     */
/* ------------------------------------------------------------------------ */

/* Q4_0 and Q5_0: the value of largest magnitude maps to level -8 (-16). */
static void quant_q4_0(const float *x, struct sl_block_q4_0 *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float amax = 0.0f, max = 0.0f; /* largest magnitude, and that value */
        for (int j = 0; j < 32; j++) {
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = F2H(d);
        for (int j = 0; j < 16; j++) {
            const int q0 = SL_MIN(15, (int8_t)(x[j] * id + 8.5f));
            const int q1 = SL_MIN(15, (int8_t)(x[j + 16] * id + 8.5f));
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* Q4_1 and Q5_1: min and max span levels 0..15 (0..31). */
static void quant_q4_1(const float *x, struct sl_block_q4_1 *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < 32; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = F2H(d);
        y[i].m = F2H(min);
        for (int j = 0; j < 16; j++) {
            const int q0 = SL_MIN(15, (int8_t)((x[j] - min) * id + 0.5f));
            const int q1 = SL_MIN(15, (int8_t)((x[j + 16] - min) * id + 0.5f));
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* Pack 32 5-bit levels: low nibbles into qs (value j and j + 16 share byte
 * j), the 5th bits into qh (bit j of the little-endian u32). */
static void q5_pack(const int q[32], uint8_t qs[16], uint8_t qh[4])
{
    uint32_t h = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4));
        h |= (uint32_t)((q[j] >> 4) & 1) << j;
        h |= (uint32_t)((q[j + 16] >> 4) & 1) << (j + 16);
    }
    for (int k = 0; k < 4; k++) qh[k] = (uint8_t)(h >> (8 * k));
}

static void quant_q5_0(const float *x, struct sl_block_q5_0 *y, int64_t nb)
{
    int q[32];
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++) {
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        const float d = max / -16;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = F2H(d);
        for (int j = 0; j < 32; j++) q[j] = SL_MIN(31, (int8_t)(x[j] * id + 16.5f));
        q5_pack(q, y[i].qs, y[i].qh);
    }
}

static void quant_q5_1(const float *x, struct sl_block_q5_1 *y, int64_t nb)
{
    int q[32];
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < 32; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = F2H(d);
        y[i].m = F2H(min);
        for (int j = 0; j < 32; j++) q[j] = (uint8_t)((x[j] - min) * id + 0.5f);
        q5_pack(q, y[i].qs, y[i].qh);
    }
}

/* Q8_0 and Q8_1: symmetric, |max| -> 127, round half away from zero. */
static void quant_q8_0(const float *x, struct sl_block_q8_0 *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = SL_MAX(amax, fabsf(x[j]));
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = F2H(d);
        for (int j = 0; j < 32; j++) y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

static void quant_q8_1(const float *x, struct sl_block_q8_1 *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = SL_MAX(amax, fabsf(x[j]));
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = F2H(d);
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            y[i].qs[j] = (int8_t)roundf(x[j] * id);
            sum += y[i].qs[j];
        }
        y[i].s = F2H(sum * d);
    }
}

/* ------------------------------------------------------------------------ */
/* reference quantizers: K-quant scale searches                              */
/* ------------------------------------------------------------------------ */

/*
 * Symmetric levels -nmax..nmax-1 for n values, stored in L as 0..2*nmax-1
 * (ggml's make_qx_quants with rmse_type 1 and no importance weights): start
 * from the scale that maps the largest magnitude to -nmax, then try 18
 * nearby scales and keep the levels with the least error weighted by x^2.
 * Returns the least-squares scale of the chosen levels.
 */
static float qx_quants(int n, int nmax, const float *x, int8_t *L)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx; /* the error drops by sumlx^2 / suml2 */
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            const int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
            const float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/*
 * Q3_K's sub-block search (ggml's make_q3_quants with do_rmse): levels
 * -nmax..nmax-1 from the largest magnitude, then up to 5 passes that move
 * single values to the level the current least-squares scale prefers when
 * that lowers the x^2-weighted error. L gets 0..2*nmax-1; returns the scale.
 */
static float q3_quants(int n, int nmax, const float *x, int8_t *L)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    const float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)l;
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                const int new_l = clampi(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/*
 * Asymmetric levels 0..nmax with scale and min, x ~ scale * L + min, min <= 0
 * (ggml's make_qkx2_quants): start from the full [min, max] range, then try
 * nstep + 1 stretched scales (nmax + rmin + rdelta * is), fitting scale and
 * min by weighted least squares for each, and keep the least weighted error
 * (absolute with use_mad, else squared). Returns the scale; *the_min = -min.
 */
static float qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                         float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                         bool use_mad)
{
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)clampi(l, 0, nmax);
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            const int l = clampi(nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            const float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* Store the 6-bit scale ls and min lm of sub-block j of a Q4_K/Q5_K block
 * (the inverse of sl_k4_scale_min; scales[] must start zeroed for j >= 4). */
static void k4_put_scale_min(uint8_t *scales, int j, uint8_t ls, uint8_t lm)
{
    if (j < 4) {
        scales[j] = ls;
        scales[j + 4] = lm;
    } else {
        scales[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
        scales[j - 4] |= (uint8_t)((ls >> 4) << 6);
        scales[j] |= (uint8_t)((lm >> 4) << 6);
    }
}

/* ------------------------------------------------------------------------ */
/* reference quantizers: K-quants                                            */
/* ------------------------------------------------------------------------ */

/* Pack 256 2-bit levels the way q2k_get reads them. */
static void q2k_pack(const uint8_t L[SL_QK_K], uint8_t qs[SL_QK_K / 4])
{
    for (int g = 0; g < 2; g++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *p = L + 128 * g + l;
            qs[32 * g + l] = (uint8_t)(p[0] | (p[32] << 2) | (p[64] << 4) | (p[96] << 6));
        }
}

static void quant_q2_K(const float *x, struct sl_block_q2_K *y, int64_t nb)
{
    uint8_t L[SL_QK_K], Laux[16];
    float weights[16], mins[16], scales[16];
    const float q4scale = 15.f;

    for (int64_t i = 0; i < nb; i++, x += SL_QK_K) {
        float max_scale = 0, max_min = 0; /* the min is subtracted: scales are >= 0 */
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f,
                                    0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        /* 4-bit sub-block scales and mins under fp16 d and dmin */
        if (max_scale > 0) {
            const float iscale = q4scale / max_scale;
            for (int j = 0; j < 16; j++) y[i].scales[j] = (uint8_t)nearest_int(iscale * scales[j]);
            y[i].d = F2H(max_scale / q4scale);
        } else {
            memset(y[i].scales, 0, sizeof y[i].scales);
            y[i].d = F2H(0.f);
        }
        if (max_min > 0) {
            const float iscale = q4scale / max_min;
            for (int j = 0; j < 16; j++)
                y[i].scales[j] |= (uint8_t)((unsigned)nearest_int(iscale * mins[j]) << 4);
            y[i].dmin = F2H(max_min / q4scale);
        } else {
            y[i].dmin = F2H(0.f);
        }
        /* re-quantize against the stored scales */
        for (int j = 0; j < 16; j++) {
            const float d = H2F(y[i].d) * (y[i].scales[j] & 0xF);
            if (!d) continue;
            const float dm = H2F(y[i].dmin) * (y[i].scales[j] >> 4);
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (uint8_t)clampi(nearest_int((x[16 * j + l] + dm) / d), 0, 3);
        }
        q2k_pack(L, y[i].qs);
    }
}

static void quant_q3_K(const float *x, struct sl_block_q3_K *y, int64_t nb)
{
    int8_t L[SL_QK_K];
    float scales[16];
    int sc[16];

    for (int64_t i = 0; i < nb; i++, x += SL_QK_K) {
        float max_scale = 0, amax = 0; /* the signed scale of largest magnitude */
        for (int j = 0; j < 16; j++) {
            scales[j] = q3_quants(16, 4, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        /* 6-bit signed sub-block scales (see q3k_unpack_scales) */
        memset(y[i].scales, 0, sizeof y[i].scales);
        if (max_scale) {
            const float iscale = -32.f / max_scale;
            for (int j = 0; j < 16; j++) {
                const int l = clampi((int8_t)nearest_int(iscale * scales[j]), -32, 31) + 32;
                if (j < 8)
                    y[i].scales[j] = (uint8_t)(l & 0xF);
                else
                    y[i].scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
                y[i].scales[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            }
            y[i].d = F2H(1 / iscale);
        } else {
            y[i].d = F2H(0.f);
        }
        /* re-quantize against the stored scales */
        q3k_unpack_scales(y[i].scales, sc);
        for (int j = 0; j < 16; j++) {
            const float d = H2F(y[i].d) * sc[j];
            if (!d) continue;
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (int8_t)(clampi(nearest_int(x[16 * j + l] / d), -4, 3) + 4);
        }
        /* high bit of value v into hmask[v % 32] bit v / 32, low 2 bits into qs */
        uint8_t low[SL_QK_K];
        memset(y[i].hmask, 0, sizeof y[i].hmask);
        for (int v = 0; v < SL_QK_K; v++) {
            if (L[v] > 3) y[i].hmask[v % 32] |= (uint8_t)(1u << (v / 32));
            low[v] = (uint8_t)(L[v] & 3);
        }
        q2k_pack(low, y[i].qs);
    }
}

/* Q4_K and Q5_K share everything but the level count and the search range. */
static void k4_quantize_block(const float *x, int nmax, float rmin, int nstep, uint16_t *d_out,
                              uint16_t *dmin_out, uint8_t scales_out[SL_K_SCALE_SIZE],
                              uint8_t L[SL_QK_K])
{
    uint8_t Laux[32];
    float weights[32], mins[8], scales[8];
    float max_scale = 0, max_min = 0;

    for (int j = 0; j < 8; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin,
                                0.1f, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    /* 6-bit sub-block scales and mins under fp16 d and dmin */
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    memset(scales_out, 0, SL_K_SCALE_SIZE);
    for (int j = 0; j < 8; j++) {
        const uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]);
        const uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
        k4_put_scale_min(scales_out, j, SL_MIN(63, ls), SL_MIN(63, lm));
    }
    *d_out = F2H(max_scale / 63.f);
    *dmin_out = F2H(max_min / 63.f);
    /* re-quantize against the stored scales */
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        sl_k4_scale_min(j, scales_out, &sc, &m);
        const float d = H2F(*d_out) * sc;
        if (!d) continue;
        const float dm = H2F(*dmin_out) * m;
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)clampi(nearest_int((x[32 * j + l] + dm) / d), 0, nmax);
    }
}

static void quant_q4_K(const float *x, struct sl_block_q4_K *y, int64_t nb)
{
    uint8_t L[SL_QK_K];
    for (int64_t i = 0; i < nb; i++, x += SL_QK_K) {
        k4_quantize_block(x, 15, -1.f, 20, &y[i].d, &y[i].dmin, y[i].scales, L);
        /* values 64g + l and 64g + 32 + l share byte qs[32g + l] (low, high) */
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++)
                y[i].qs[32 * g + l] = (uint8_t)(L[64 * g + l] | (L[64 * g + 32 + l] << 4));
    }
}

static void quant_q5_K(const float *x, struct sl_block_q5_K *y, int64_t nb)
{
    uint8_t L[SL_QK_K];
    for (int64_t i = 0; i < nb; i++, x += SL_QK_K) {
        k4_quantize_block(x, 31, -0.5f, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++) {
                const int l1 = L[64 * g + l], l2 = L[64 * g + 32 + l];
                y[i].qs[32 * g + l] = (uint8_t)((l1 & 0xF) | ((l2 & 0xF) << 4));
                y[i].qh[l] |= (uint8_t)(((l1 >> 4) << (2 * g)) | ((l2 >> 4) << (2 * g + 1)));
            }
    }
}

static void quant_q6_K(const float *x, struct sl_block_q6_K *y, int64_t nb)
{
    int8_t L[SL_QK_K];
    float scales[16];

    for (int64_t i = 0; i < nb; i++, x += SL_QK_K) {
        float max_scale = 0, max_abs_scale = 0;
        for (int j = 0; j < 16; j++) {
            scales[j] = qx_quants(16, 32, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > max_abs_scale) {
                max_abs_scale = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        /* 8-bit signed sub-block scales under fp16 d */
        const float iscale = -128.f / max_scale;
        y[i].d = F2H(1 / iscale);
        for (int j = 0; j < 16; j++)
            y[i].scales[j] = (int8_t)SL_MIN(127, nearest_int(iscale * scales[j]));
        /* re-quantize against the stored scales */
        for (int j = 0; j < 16; j++) {
            const float d = H2F(y[i].d) * y[i].scales[j];
            if (!d) continue;
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (int8_t)(clampi(nearest_int(x[16 * j + l] / d), -32, 31) + 32);
        }
        /* the inverse of q6k_get */
        for (int h = 0; h < 2; h++)
            for (int t = 0; t < 32; t++) {
                const int8_t *p = L + 128 * h + t; /* p[32 * r], r = 0..3 */
                y[i].ql[64 * h + t] = (uint8_t)((p[0] & 0xF) | ((p[64] & 0xF) << 4));
                y[i].ql[64 * h + 32 + t] = (uint8_t)((p[32] & 0xF) | ((p[96] & 0xF) << 4));
                y[i].qh[32 * h + t] = (uint8_t)((p[0] >> 4) | ((p[32] >> 4) << 2) |
                                                ((p[64] >> 4) << 4) | ((p[96] >> 4) << 6));
            }
    }
}

/* Q8_K (activations): |max| -> -127, plus the sum of each group of 16. */
static void quant_q8_K(const float *x, struct sl_block_q8_K *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += SL_QK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < SL_QK_K; j++) {
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        if (!amax) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < SL_QK_K; j++)
            y[i].qs[j] = (int8_t)SL_MIN(127, nearest_int(iscale * x[j]));
        for (int j = 0; j < SL_QK_K / 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += y[i].qs[16 * j + l];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

size_t sl_quantize_row_ref(int type, const float *src, void *dst, int64_t n)
{
    const struct sl_type_traits *tr = type >= 0 ? sl_type_traits((uint32_t)type) : NULL;
    if (!tr || n < 0 || n % tr->blck != 0) return 0;
    const size_t size = sl_row_size(type, n);
    const int64_t nb = n / tr->blck;
    switch (type) {
    case SL_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); return size;
    case SL_TYPE_F16: {
        uint16_t *h = dst;
        for (int64_t i = 0; i < n; i++) h[i] = sl_fp32_to_fp16(src[i]);
        return size;
    }
    case SL_TYPE_BF16: {
        uint16_t *h = dst;
        for (int64_t i = 0; i < n; i++) h[i] = sl_fp32_to_bf16(src[i]);
        return size;
    }
    case SL_TYPE_Q4_0: quant_q4_0(src, dst, nb); return size;
    case SL_TYPE_Q4_1: quant_q4_1(src, dst, nb); return size;
    case SL_TYPE_Q5_0: quant_q5_0(src, dst, nb); return size;
    case SL_TYPE_Q5_1: quant_q5_1(src, dst, nb); return size;
    case SL_TYPE_Q8_0: quant_q8_0(src, dst, nb); return size;
    case SL_TYPE_Q8_1: quant_q8_1(src, dst, nb); return size;
    case SL_TYPE_Q2_K: quant_q2_K(src, dst, nb); return size;
    case SL_TYPE_Q3_K: quant_q3_K(src, dst, nb); return size;
    case SL_TYPE_Q4_K: quant_q4_K(src, dst, nb); return size;
    case SL_TYPE_Q5_K: quant_q5_K(src, dst, nb); return size;
    case SL_TYPE_Q6_K: quant_q6_K(src, dst, nb); return size;
    case SL_TYPE_Q8_K: quant_q8_K(src, dst, nb); return size;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* scalar dot products                                                       */
/* ------------------------------------------------------------------------ */

static float dot_q4_0(const struct sl_block_q4_0 *x, const struct sl_block_q8_0 *y, int64_t nb)
{
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++)
            sumi += ((x[i].qs[j] & 0xF) - 8) * y[i].qs[j] +
                    ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + 16];
        sum += sumi * H2F(x[i].d) * H2F(y[i].d);
    }
    return sum;
}

/* sum((d q + m) * a) = d_w d_a sum(q q8) + m * s_a, with s_a = d_a sum(q8) */
static float dot_q4_1(const struct sl_block_q4_1 *x, const struct sl_block_q8_1 *y, int64_t nb)
{
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++)
            sumi += (x[i].qs[j] & 0xF) * y[i].qs[j] + (x[i].qs[j] >> 4) * y[i].qs[j + 16];
        sum += (H2F(x[i].d) * H2F(y[i].d)) * sumi + H2F(x[i].m) * H2F(y[i].s);
    }
    return sum;
}

static float dot_q5_0(const struct sl_block_q5_0 *x, const struct sl_block_q8_0 *y, int64_t nb)
{
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            const int q0 = ((x[i].qs[j] & 0xF) | (q5_hbit(x[i].qh, j) << 4)) - 16;
            const int q1 = ((x[i].qs[j] >> 4) | (q5_hbit(x[i].qh, j + 16) << 4)) - 16;
            sumi += q0 * y[i].qs[j] + q1 * y[i].qs[j + 16];
        }
        sum += (H2F(x[i].d) * H2F(y[i].d)) * sumi;
    }
    return sum;
}

static float dot_q5_1(const struct sl_block_q5_1 *x, const struct sl_block_q8_1 *y, int64_t nb)
{
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            const int q0 = (x[i].qs[j] & 0xF) | (q5_hbit(x[i].qh, j) << 4);
            const int q1 = (x[i].qs[j] >> 4) | (q5_hbit(x[i].qh, j + 16) << 4);
            sumi += q0 * y[i].qs[j] + q1 * y[i].qs[j + 16];
        }
        sum += (H2F(x[i].d) * H2F(y[i].d)) * sumi + H2F(x[i].m) * H2F(y[i].s);
    }
    return sum;
}

static float dot_q8_0(const struct sl_block_q8_0 *x, const struct sl_block_q8_0 *y, int64_t nb)
{
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        int sumi = 0;
        for (int j = 0; j < 32; j++) sumi += x[i].qs[j] * y[i].qs[j];
        sum += sumi * (H2F(x[i].d) * H2F(y[i].d));
    }
    return sum;
}

/* K-quants with a min: sum((d sc q - dmin m) * d8 q8)
 *   = d d8 sum_sub(sc sum(q q8)) - dmin d8 sum_sub(m sum(q8)), sum(q8) from bsums */
static float dot_q2_K(const struct sl_block_q2_K *x, const struct sl_block_q8_K *y, int64_t nb)
{
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        int isum = 0, summs = 0;
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += q2k_get(x[i].qs, 16 * j + l) * y[i].qs[16 * j + l];
            isum += (x[i].scales[j] & 0xF) * s;
            summs += (x[i].scales[j] >> 4) * y[i].bsums[j];
        }
        const float dall = y[i].d * H2F(x[i].d), dmin = y[i].d * H2F(x[i].dmin);
        sum += dall * isum - dmin * summs;
    }
    return sum;
}

static float dot_q3_K(const struct sl_block_q3_K *x, const struct sl_block_q8_K *y, int64_t nb)
{
    float sum = 0;
    int sc[16];
    for (int64_t i = 0; i < nb; i++) {
        q3k_unpack_scales(x[i].scales, sc);
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += q3k_get(&x[i], 16 * j + l) * y[i].qs[16 * j + l];
            isum += sc[j] * s;
        }
        sum += (H2F(x[i].d) * y[i].d) * isum;
    }
    return sum;
}

static float dot_q4_K(const struct sl_block_q4_K *x, const struct sl_block_q8_K *y, int64_t nb)
{
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        int isum = 0, summs = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            sl_k4_scale_min(j, x[i].scales, &sc, &m);
            int s = 0;
            for (int l = 0; l < 32; l++) s += q4k_get(x[i].qs, 32 * j + l) * y[i].qs[32 * j + l];
            isum += sc * s;
            summs += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        }
        sum += (H2F(x[i].d) * y[i].d) * isum - (H2F(x[i].dmin) * y[i].d) * summs;
    }
    return sum;
}

static float dot_q5_K(const struct sl_block_q5_K *x, const struct sl_block_q8_K *y, int64_t nb)
{
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        int isum = 0, summs = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            sl_k4_scale_min(j, x[i].scales, &sc, &m);
            int s = 0;
            for (int l = 0; l < 32; l++) s += q5k_get(&x[i], 32 * j + l) * y[i].qs[32 * j + l];
            isum += sc * s;
            summs += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        }
        sum += (H2F(x[i].d) * y[i].d) * isum - (H2F(x[i].dmin) * y[i].d) * summs;
    }
    return sum;
}

static float dot_q6_K(const struct sl_block_q6_K *x, const struct sl_block_q8_K *y, int64_t nb)
{
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += q6k_get(&x[i], 16 * j + l) * y[i].qs[16 * j + l];
            isum += x[i].scales[j] * s;
        }
        sum += (H2F(x[i].d) * y[i].d) * isum;
    }
    return sum;
}

/* Float rows: float products summed in double (ggml's ggml_float). */
static float dot_f16(const uint16_t *x, const uint16_t *y, int64_t n)
{
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)(sl_fp16_to_fp32(x[i]) * sl_fp16_to_fp32(y[i]));
    return (float)sum;
}

static float dot_bf16(const uint16_t *x, const uint16_t *y, int64_t n)
{
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)(sl_bf16_to_fp32(x[i]) * sl_bf16_to_fp32(y[i]));
    return (float)sum;
}

static float dot_f32(const float *x, const float *y, int64_t n)
{
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * y[i]);
    return (float)sum;
}

float sl_vec_dot_ref(int type, int64_t n, const void *w, const void *a)
{
    const struct sl_type_traits *tr = type >= 0 ? sl_type_traits((uint32_t)type) : NULL;
    SL_ASSERT(tr && tr->weight_ok && n >= 0 && n % tr->blck == 0);
    const int64_t nb = n / tr->blck;
    switch (type) {
    case SL_TYPE_F32: return dot_f32(w, a, n);
    case SL_TYPE_F16: return dot_f16(w, a, n);
    case SL_TYPE_BF16: return dot_bf16(w, a, n);
    case SL_TYPE_Q4_0: return dot_q4_0(w, a, nb);
    case SL_TYPE_Q4_1: return dot_q4_1(w, a, nb);
    case SL_TYPE_Q5_0: return dot_q5_0(w, a, nb);
    case SL_TYPE_Q5_1: return dot_q5_1(w, a, nb);
    case SL_TYPE_Q8_0: return dot_q8_0(w, a, nb);
    case SL_TYPE_Q2_K: return dot_q2_K(w, a, nb);
    case SL_TYPE_Q3_K: return dot_q3_K(w, a, nb);
    case SL_TYPE_Q4_K: return dot_q4_K(w, a, nb);
    case SL_TYPE_Q5_K: return dot_q5_K(w, a, nb);
    case SL_TYPE_Q6_K: return dot_q6_K(w, a, nb);
    }
    SL_ASSERT(!"sl_vec_dot_ref: type has no dot product");
    return 0;
}
