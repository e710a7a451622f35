/*
 * kernels.c - kernel dispatch (engine layer).
 *
 * Three tables: "scalar" (the references, always there), "avx2" (AVX2 +
 * FMA + F16C, src/engine/kernels/dot_avx2.c) and "avx512" (AVX-512 F, BW,
 * VL, VNNI on top of those, src/engine/kernels/dot_avx512.c). The CPU is
 * asked once, with __builtin_cpu_supports (which also checks that the OS
 * saves the wider registers; F16C comes from CPUID); SLUICE_CPU=scalar|avx2|avx512 forces a table,
 * and a table this CPU cannot run falls back to the best it can, with one
 * warning on stderr. An ISA table may leave entries NULL; they are filled
 * from the scalar table here, so callers never see a hole.
 */
#include "kernels.h"

#include <math.h>
#include <stddef.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels_int.h"

/* ------------------------------------------------------------------------ */
/* the scalar path                                                           */
/* ------------------------------------------------------------------------ */

#define REF_DOT(T)                                                    \
    static float dot_ref_##T(int64_t n, const void *w, const void *a) \
    {                                                                 \
        return sl_vec_dot_ref(SL_TYPE_##T, n, w, a);                  \
    }
REF_DOT(F32)
REF_DOT(F16)
REF_DOT(BF16)
REF_DOT(Q4_0)
REF_DOT(Q4_1)
REF_DOT(Q5_0)
REF_DOT(Q5_1)
REF_DOT(Q8_0)
REF_DOT(Q2_K)
REF_DOT(Q3_K)
REF_DOT(Q4_K)
REF_DOT(Q5_K)
REF_DOT(Q6_K)

size_t sl_q8x4_size(int64_t n)
{
    return (size_t)((n / 32 + 3) / 4) * sizeof(struct sl_q8x4);
}

void sl_q8x4_from_q8_0(const struct sl_block_q8_0 *x, int64_t nb, int k, struct sl_q8x4 *out)
{
    for (int64_t g = 0; g * 4 < nb; g++) {
        struct sl_q8x4 *o = &out[g];
        memset(o, 0, sizeof *o);
        for (int b = 0; b < 4 && g * 4 + b < nb; b++) {
            const struct sl_block_q8_0 *blk = &x[g * 4 + b];
            memcpy(o->lo[b], blk->qs, 16);
            memcpy(o->hi[b], blk->qs + 16, 16);
            const float d = sl_fp16_to_fp32(blk->d);
            for (int i = 0; i < 4; i++) {
                int sum = 0; /* the 8 activations int32 lane i of block b multiplies */
                for (int j = 4 * i; j < 4 * i + 4; j++) sum += blk->qs[j] + blk->qs[16 + j];
                o->d[b][i] = d;
                o->off[b][i] = -k * sum;
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* row panels (kernels.h)                                                    */
/* ------------------------------------------------------------------------ */

/* Bytes of quants per block in a panel: 16 rows x 16 (Q4_0, Q5_0) or 32
 * (Q8_0); of Q5_0's upper bits of the low values: 16 rows x 4. */
static size_t panel_qbytes(int type)
{
    return type == SL_TYPE_Q4_0 || type == SL_TYPE_Q5_0 ? 256 : type == SL_TYPE_Q8_0 ? 512 : 0;
}

static size_t panel_mbytes(int type)
{
    return type == SL_TYPE_Q5_0 ? 64 : 0;
}

/* Q4_K: per super-block d and dmin of the 16 rows (64 bytes), the 6-bit
 * scales and mins as bytes (8 x 16 each), 4 x 8 chunks of quants. */
#define PANEL_Q4_K_BYTES (64 + 2 * 128 + 2048)

/* Q6_K: per super-block the 16 d (fp16, padded to 64 bytes), the 16
 * sub-block scales of the 16 rows (16 x 16 int8), then for half h and
 * chunk k in order, 192 bytes: ql[64h + 4k ..], ql[64h + 32 + 4k ..] and
 * qh[32h + 4k ..] of each row (the order the kernel reads them in: one
 * stream; ql and qh in separate regions measured 0.47x from DRAM). */
#define PANEL_Q6_K_BYTES (64 + 256 + 2048 + 1024)

/* F16 and BF16: for every value index k, the 16 rows' 2-byte values (32
 * bytes, row order); an odd n adds one zero slice (whole 64-byte lines). */
static int panel_is_float(int type)
{
    return type == SL_TYPE_F16 || type == SL_TYPE_BF16;
}

size_t sl_panel_size(int type, int64_t n)
{
    if (panel_is_float(type)) return n > 0 ? (size_t)((n + 1) / 2) * 64 : 0;
    if (type == SL_TYPE_Q4_K) return n > 0 && n % SL_QK_K == 0 ? (size_t)(n / SL_QK_K) * PANEL_Q4_K_BYTES : 0;
    if (type == SL_TYPE_Q6_K) return n > 0 && n % SL_QK_K == 0 ? (size_t)(n / SL_QK_K) * PANEL_Q6_K_BYTES : 0;
    const size_t qb = panel_qbytes(type), mb = panel_mbytes(type);
    if (!qb || n <= 0 || n % 32) return 0;
    return (size_t)((n / 32 + 1) / 2) * (64 + 2 * (mb + qb));
}

/* Q4_K super-block i of row r into its panel (layout: kernels.h). */
static void pack_q4_K(const struct sl_block_q4_K *blk, int r, uint8_t *o)
{
    memcpy(o + 2 * r, &blk->d, 2);
    memcpy(o + 32 + 2 * r, &blk->dmin, 2);
    for (int j = 0; j < 8; j++) sl_k4_scale_min(j, blk->scales, o + 64 + 16 * j + r, o + 192 + 16 * j + r);
    for (int g = 0; g < 4; g++)
        for (int k = 0; k < 8; k++) memcpy(o + 320 + 512 * g + 64 * k + 4 * r, blk->qs + 32 * g + 4 * k, 4);
}

/* Q6_K super-block of row r into / out of its panel (layout above). The
 * copy goes through one direction flag so both stay the same walk. */
static void move_q6_K(struct sl_block_q6_K *blk, int r, uint8_t *o, int to_panel)
{
#define MV(panel_ptr, blk_ptr, len) (to_panel ? memcpy((panel_ptr), (blk_ptr), (len)) : memcpy((blk_ptr), (panel_ptr), (len)))
    MV(o + 2 * r, &blk->d, 2);
    for (int j = 0; j < 16; j++) MV(o + 64 + 16 * j + r, &blk->scales[j], 1);
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 8; k++) {
            uint8_t *c = o + 320 + 192 * (8 * h + k) + 4 * r;
            for (int p = 0; p < 2; p++) MV(c + 64 * p, blk->ql + 64 * h + 32 * p + 4 * k, 4);
            MV(c + 128, blk->qh + 32 * h + 4 * k, 4);
        }
#undef MV
}

static void unpack_q4_K(const uint8_t *o, int r, struct sl_block_q4_K *blk)
{
    memcpy(&blk->d, o + 2 * r, 2);
    memcpy(&blk->dmin, o + 32 + 2 * r, 2);
    memset(blk->scales, 0, sizeof blk->scales);
    for (int j = 0; j < 8; j++) {
        const uint8_t ls = o[64 + 16 * j + r], lm = o[192 + 16 * j + r];
        if (j < 4) {
            blk->scales[j] = ls;
            blk->scales[j + 4] = lm;
        } else {
            blk->scales[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            blk->scales[j - 4] |= (uint8_t)((ls >> 4) << 6);
            blk->scales[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    for (int g = 0; g < 4; g++)
        for (int k = 0; k < 8; k++) memcpy(blk->qs + 32 * g + 4 * k, o + 320 + 512 * g + 64 * k + 4 * r, 4);
}

void sl_panel_pack(int type, const void *w, size_t w_stride, int nr, int64_t n, void *out)
{
    const struct sl_kernels *k = sl_kernels();
    const bool q = type == SL_TYPE_Q4_K || type == SL_TYPE_Q6_K ||
                   ((type == SL_TYPE_Q4_0 || type == SL_TYPE_Q8_0) && n % 64 == 0);
    if (panel_is_float(type))
        k->pack_f16(w, w_stride, nr, n, out);
    else if (k->pack_q && q && nr >= SL_PANEL_ROWS && sl_panel_size(type, n))
        k->pack_q(type, w, w_stride, n, out);
    else
        sl_panel_pack_ref(type, w, w_stride, nr, n, out);
}

void sl_panel_pack_ref(int type, const void *w, size_t w_stride, int nr, int64_t n, void *out)
{
    const int64_t nb = n / 32;
    const size_t qb = panel_qbytes(type), mb = panel_mbytes(type), pair = 64 + 2 * (mb + qb);
    uint8_t *o = out;
    if (panel_is_float(type)) {
        sl_panel_pack_f16_ref(w, w_stride, nr, n, out);
        return;
    }
    /* A full panel of Q4_0, Q8_0 (an even number of blocks) or Q4_K is
     * written whole below; anything else has gaps that must read zero. */
    const bool pairs = (type == SL_TYPE_Q4_0 || type == SL_TYPE_Q8_0) && nb % 2 == 0;
    const bool whole = nr >= SL_PANEL_ROWS && (type == SL_TYPE_Q4_K || pairs);
    if (!whole) memset(out, 0, sl_panel_size(type, n));
    if (type == SL_TYPE_Q6_K) {
        for (int r = 0; r < nr && r < SL_PANEL_ROWS; r++)
            for (int64_t i = 0; i < n / SL_QK_K; i++) {
                struct sl_block_q6_K blk;
                memcpy(&blk, (const struct sl_block_q6_K *)((const uint8_t *)w + (size_t)r * w_stride) + i, sizeof blk);
                move_q6_K(&blk, r, o + (size_t)i * PANEL_Q6_K_BYTES, 1);
            }
        return;
    }
    if (type == SL_TYPE_Q4_K) {
        for (int r = 0; r < nr && r < SL_PANEL_ROWS; r++)
            for (int64_t i = 0; i < n / SL_QK_K; i++)
                pack_q4_K((const struct sl_block_q4_K *)((const uint8_t *)w + (size_t)r * w_stride) + i, r,
                          o + (size_t)i * PANEL_Q4_K_BYTES);
        return;
    }
    for (int r = 0; r < nr && r < SL_PANEL_ROWS; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * w_stride;
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *base = o + (size_t)(b / 2) * pair;
            uint8_t *d = base + 32 * (b % 2) + 2 * r;
            uint8_t *m = base + 64 + (size_t)(b % 2) * mb;
            uint8_t *q = base + 64 + 2 * mb + (size_t)(b % 2) * qb + 4 * (size_t)r;
            if (type == SL_TYPE_Q4_0) {
                const struct sl_block_q4_0 *blk = (const struct sl_block_q4_0 *)row + b;
                memcpy(d, &blk->d, 2);
                for (int k = 0; k < 4; k++) memcpy(q + 64 * k, blk->qs + 4 * k, 4);
            } else if (type == SL_TYPE_Q5_0) {
                const struct sl_block_q5_0 *blk = (const struct sl_block_q5_0 *)row + b;
                uint32_t qh;
                memcpy(d, &blk->d, 2);
                memcpy(&qh, blk->qh, 4);
                /* byte j of chunk k: bits 0-2 of lo = value 4k + j, all 5
                 * bits of hi = value 16 + 4k + j above them; byte 4r + j of
                 * the block's 64 upper bytes: bits 2k, 2k + 1 = lo >> 3 */
                for (int k = 0; k < 4; k++)
                    for (int j = 0; j < 4; j++) {
                        const int v = 4 * k + j;
                        const unsigned lo = (blk->qs[v] & 0xFu) | (qh >> v & 1) << 4;
                        const unsigned hi = (unsigned)(blk->qs[v] >> 4) | (qh >> (16 + v) & 1) << 4;
                        q[64 * k + j] = (uint8_t)((lo & 7) | hi << 3);
                        m[4 * r + j] |= (uint8_t)((lo >> 3) << (2 * k));
                    }
            } else {
                const struct sl_block_q8_0 *blk = (const struct sl_block_q8_0 *)row + b;
                memcpy(d, &blk->d, 2);
                for (int k = 0; k < 8; k++) { /* four quants at once, w + 128 */
                    uint32_t v;
                    memcpy(&v, blk->qs + 4 * k, 4);
                    v ^= 0x80808080u;
                    memcpy(q + 64 * k, &v, 4);
                }
            }
        }
    }
    /* rows past nr, and the second block of a last odd pair: scale 0 and
     * quants 0 (the kernels never read that block) */
}

/* The scalar parts the ISA packs share (kernels/pack_*.c). */

void sl_pack_f16_tail(const uint8_t *src, size_t w_stride, int64_t k, int64_t n, uint8_t *o)
{
    for (; k < n; k++)
        for (int i = 0; i < 16; i++) memcpy(o + 32 * k + 2 * i, src + (size_t)i * w_stride + 2 * k, 2);
    if (n % 2) memset(o + 32 * n, 0, 32); /* the zero slice that makes whole lines */
}

void sl_pack_hdr_pair(const uint8_t *src, size_t w_stride, size_t block_bytes, int64_t j, uint8_t hdr[64])
{
    for (int h = 0; h < 2; h++)
        for (int r = 0; r < 16; r++)
            memcpy(hdr + 32 * h + 2 * r, src + (size_t)r * w_stride + (size_t)(2 * j + h) * block_bytes, 2);
}

void sl_pack_hdr_q4_K(const uint8_t *src, size_t w_stride, int64_t i, uint8_t hdr[320])
{
    for (int r = 0; r < 16; r++) {
        const struct sl_block_q4_K *blk = (const struct sl_block_q4_K *)(const void *)(src + (size_t)r * w_stride) + i;
        memcpy(hdr + 2 * r, &blk->d, 2);
        memcpy(hdr + 32 + 2 * r, &blk->dmin, 2);
        for (int j = 0; j < 8; j++) sl_k4_scale_min(j, blk->scales, hdr + 64 + 16 * j + r, hdr + 192 + 16 * j + r);
    }
}

void sl_pack_hdr_q6_K(const uint8_t *b0, size_t w_stride, uint8_t hdr[320])
{
    memset(hdr, 0, 64);
    for (int r = 0; r < 16; r++) {
        const uint8_t *blk = b0 + (size_t)r * w_stride;
        memcpy(hdr + 2 * r, blk + offsetof(struct sl_block_q6_K, d), 2);
        for (int j = 0; j < 16; j++) hdr[64 + 16 * j + r] = blk[offsetof(struct sl_block_q6_K, scales) + j];
    }
}

void sl_panel_pack_f16_ref(const void *w, size_t w_stride, int nr, int64_t n, void *out)
{
    /* value k of the 16 rows side by side; k outer: the panel is written
     * in order, the rows read as 16 streams */
    const uint8_t *src = w;
    uint8_t *o = out;
    const int rows = nr < SL_PANEL_ROWS ? nr : SL_PANEL_ROWS;
    if (rows < SL_PANEL_ROWS || n % 2) memset(out, 0, sl_panel_size(SL_TYPE_F16, n));
    for (int64_t k = 0; k < n; k++)
        for (int r = 0; r < rows; r++)
            memcpy(o + 32 * k + 2 * r, src + (size_t)r * w_stride + 2 * k, 2);
}

void sl_panel_unpack_row(int type, const void *panel, int r, int64_t n, void *out)
{
    const int64_t nb = n / 32;
    const size_t qb = panel_qbytes(type), mb = panel_mbytes(type), pair = 64 + 2 * (mb + qb);
    if (panel_is_float(type)) {
        for (int64_t k = 0; k < n; k++) memcpy((uint8_t *)out + 2 * k, (const uint16_t *)panel + 16 * k + r, 2);
        return;
    }
    if (type == SL_TYPE_Q6_K) {
        for (int64_t i = 0; i < n / SL_QK_K; i++)
            move_q6_K((struct sl_block_q6_K *)out + i, r, (uint8_t *)panel + (size_t)i * PANEL_Q6_K_BYTES, 0);
        return;
    }
    if (type == SL_TYPE_Q4_K) {
        for (int64_t i = 0; i < n / SL_QK_K; i++)
            unpack_q4_K((const uint8_t *)panel + (size_t)i * PANEL_Q4_K_BYTES, r, (struct sl_block_q4_K *)out + i);
        return;
    }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *base = (const uint8_t *)panel + (size_t)(b / 2) * pair;
        const uint8_t *d = base + 32 * (b % 2) + 2 * r;
        const uint8_t *m = base + 64 + (size_t)(b % 2) * mb;
        const uint8_t *q = base + 64 + 2 * mb + (size_t)(b % 2) * qb + 4 * (size_t)r;
        if (type == SL_TYPE_Q4_0) {
            struct sl_block_q4_0 *blk = (struct sl_block_q4_0 *)out + b;
            memcpy(&blk->d, d, 2);
            for (int k = 0; k < 4; k++) memcpy(blk->qs + 4 * k, q + 64 * k, 4);
        } else if (type == SL_TYPE_Q5_0) {
            struct sl_block_q5_0 *blk = (struct sl_block_q5_0 *)out + b;
            uint32_t qh = 0;
            memcpy(&blk->d, d, 2);
            for (int k = 0; k < 4; k++)
                for (int j = 0; j < 4; j++) {
                    const int v = 4 * k + j;
                    const unsigned lo = (q[64 * k + j] & 7u) | (m[4 * r + j] >> (2 * k) & 3u) << 3;
                    const unsigned hi = (unsigned)q[64 * k + j] >> 3;
                    blk->qs[v] = (uint8_t)((lo & 0xF) | (hi & 0xF) << 4);
                    qh |= (lo >> 4) << v | (hi >> 4) << (16 + v);
                }
            memcpy(blk->qh, &qh, 4);
        } else {
            struct sl_block_q8_0 *blk = (struct sl_block_q8_0 *)out + b;
            memcpy(&blk->d, d, 2);
            for (int k = 0; k < 8; k++)
                for (int j = 0; j < 4; j++) blk->qs[4 * k + j] = (int8_t)(q[64 * k + j] ^ 0x80);
        }
    }
}

size_t sl_q8s_size(int64_t n)
{
    return (size_t)(n / 32) * sizeof(struct sl_q8s);
}

void sl_q8s_from_q8_0(const struct sl_block_q8_0 *x, int64_t nb, struct sl_q8s *out)
{
    for (int64_t b = 0; b < nb; b++) {
        int sum = 0;
        for (int i = 0; i < 32; i++) sum += x[b].qs[i];
        memcpy(out[b].qs, x[b].qs, 32);
        out[b].d = sl_fp16_to_fp32(x[b].d);
        out[b].sum = sum;
    }
}

static void quantize_ref(int type, const float *x, void *out, int64_t n)
{
    sl_quantize_row_ref(type, x, out, n);
}

/* sum k[i] * q[i] and acc += a * v over fp16 rows: the attention
 * references' steps */
static float dot_f16_f32_ref(int64_t n, const uint16_t *k, const float *q)
{
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += q[i] * sl_fp16_to_fp32(k[i]);
    return s;
}

static void axpy_f16_ref(int64_t n, float a, const uint16_t *v, float *acc)
{
    for (int64_t i = 0; i < n; i++) acc[i] += a * sl_fp16_to_fp32(v[i]);
}

void sl_fp32_to_fp16_row_ref(int64_t n, const float *x, uint16_t *y)
{
    for (int64_t i = 0; i < n; i++) y[i] = sl_fp32_to_fp16(x[i]);
}

void sl_silu_mul_ref(int64_t n, float *g, const float *u)
{
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* GELU's tanh approximation as x sigmoid(2y) = x (1 + tanh y) / 2: the same
 * function, without the cancellation in 1 + tanh y that zeroes it in float
 * from x < -5 on */
void sl_gelu_mul_ref(int64_t n, float *g, const float *u)
{
    const float c = 0.7978845608028654f; /* sqrt(2/pi) */
    for (int64_t i = 0; i < n; i++) {
        const float x = g[i], y = c * (x + 0.044715f * x * x * x);
        g[i] = x / (1.0f + expf(-2.0f * y)) * u[i];
    }
}

void sl_attn_scores_ref(int32_t nv, const uint16_t *k, size_t k_stride, const int32_t *cells, const float *q, int G,
                        int64_t d, float scale, float *out, float *mx)
{
    for (int g = 0; g < G; g++) {
        mx[g] = -INFINITY;
        for (int32_t j = 0; j < nv; j++) {
            const float s = dot_f16_f32_ref(d, k + (size_t)cells[j] * k_stride, q + (size_t)g * d) * scale;
            out[(size_t)g * nv + j] = s;
            if (s > mx[g]) mx[g] = s;
        }
    }
}

void sl_attn_pv_ref(int32_t nv, const uint16_t *v, size_t v_stride, const int32_t *cells, const float *w, int G,
                    int64_t dv, float *acc, size_t acc_stride)
{
    for (int g = 0; g < G; g++) {
        float *a = acc + (size_t)g * acc_stride;
        memset(a, 0, (size_t)dv * sizeof *a);
        for (int32_t k = 0; k < nv; k++) axpy_f16_ref(dv, w[(size_t)g * nv + k], v + (size_t)cells[k] * v_stride, a);
    }
}

float sl_exp_row_ref(int64_t n, float *x, float mx)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i] = expf(x[i] - mx);
    return (float)s;
}

static const struct sl_kernels scalar = {
    .name = "scalar",
    .vec_dot =
        {
            [SL_TYPE_F32] = dot_ref_F32,   [SL_TYPE_F16] = dot_ref_F16,   [SL_TYPE_BF16] = dot_ref_BF16,
            [SL_TYPE_Q4_0] = dot_ref_Q4_0, [SL_TYPE_Q4_1] = dot_ref_Q4_1, [SL_TYPE_Q5_0] = dot_ref_Q5_0,
            [SL_TYPE_Q5_1] = dot_ref_Q5_1, [SL_TYPE_Q8_0] = dot_ref_Q8_0, [SL_TYPE_Q2_K] = dot_ref_Q2_K,
            [SL_TYPE_Q3_K] = dot_ref_Q3_K, [SL_TYPE_Q4_K] = dot_ref_Q4_K, [SL_TYPE_Q5_K] = dot_ref_Q5_K,
            [SL_TYPE_Q6_K] = dot_ref_Q6_K,
        },
    .quantize_row = quantize_ref,
    .fp32_to_fp16_row = sl_fp32_to_fp16_row_ref,
    .pack_f16 = sl_panel_pack_f16_ref,
    .silu_mul = sl_silu_mul_ref,
    .gelu_mul = sl_gelu_mul_ref,
    .attn_scores = sl_attn_scores_ref,
    .attn_pv = sl_attn_pv_ref,
    .exp_row = sl_exp_row_ref,
};

/* ------------------------------------------------------------------------ */
/* CPU features and the resolved tables                                      */
/* ------------------------------------------------------------------------ */

#if defined(__x86_64__) || defined(__i386__)
#define SL_KERNELS_X86 1
#include <cpuid.h>

/* F16C from CPUID leaf 1 (ECX bit 29): older clang's __builtin_cpu_supports
 * does not know "f16c". Its registers are the AVX ones, whose OS support the
 * avx2 check already covers. */
static bool cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}
#endif

enum { PATH_SCALAR, PATH_AVX2, PATH_AVX512, PATH_COUNT };

static const char *const path_names[PATH_COUNT] = {"scalar", "avx2", "avx512"};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static struct sl_kernels resolved[PATH_COUNT]; /* filled copies, by path */
static bool runnable[PATH_COUNT];
static const struct sl_kernels *chosen;

/* Copy an ISA table and fill its holes from the scalar one. */
static void resolve(struct sl_kernels *dst, const struct sl_kernels *src)
{
    *dst = *src;
    for (int t = 0; t < SL_TYPE_COUNT; t++)
        if (!dst->vec_dot[t]) dst->vec_dot[t] = scalar.vec_dot[t];
    if (!dst->quantize_row) dst->quantize_row = scalar.quantize_row;
    if (!dst->fp32_to_fp16_row) dst->fp32_to_fp16_row = scalar.fp32_to_fp16_row;
    if (!dst->pack_f16) dst->pack_f16 = scalar.pack_f16;
    if (!dst->silu_mul) dst->silu_mul = scalar.silu_mul;
    if (!dst->gelu_mul) dst->gelu_mul = scalar.gelu_mul;
    if (!dst->attn_scores) dst->attn_scores = scalar.attn_scores;
    if (!dst->attn_pv) dst->attn_pv = scalar.attn_pv;
    if (!dst->exp_row) dst->exp_row = scalar.exp_row;
}

static void init_once(void)
{
    resolve(&resolved[PATH_SCALAR], &scalar);
    runnable[PATH_SCALAR] = true;
#ifdef SL_KERNELS_X86
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                        __builtin_cpu_supports("avx512vnni");
    resolve(&resolved[PATH_AVX2], &sl_kernels_avx2);
    resolve(&resolved[PATH_AVX512], &sl_kernels_avx512);
    runnable[PATH_AVX2] = avx2;
    runnable[PATH_AVX512] = avx512;
#endif

    int best = PATH_SCALAR;
    for (int p = 0; p < PATH_COUNT; p++)
        if (runnable[p]) best = p;
    chosen = &resolved[best];

    const char *force = getenv("SLUICE_CPU");
    if (force && *force) {
        int want = -1;
        for (int p = 0; p < PATH_COUNT; p++)
            if (strcmp(force, path_names[p]) == 0) want = p;
        if (want < 0)
            fprintf(stderr, "sluice: SLUICE_CPU=%s is not a kernel path (scalar, avx2, avx512); using %s\n",
                    force, chosen->name);
        else if (!runnable[want])
            fprintf(stderr, "sluice: SLUICE_CPU=%s: this CPU cannot run it; using %s\n", force,
                    chosen->name);
        else
            chosen = &resolved[want];
    }
}

const struct sl_kernels *sl_kernels_get(const char *name)
{
    pthread_once(&once, init_once);
    for (int p = 0; name && p < PATH_COUNT; p++)
        if (strcmp(name, path_names[p]) == 0) return runnable[p] ? &resolved[p] : NULL;
    return NULL;
}

const struct sl_kernels *sl_kernels(void)
{
    pthread_once(&once, init_once);
    return chosen;
}
