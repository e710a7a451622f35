/*
 * quant.h - tensor element types and their block formats (engine layer).
 *
 * Type ids are GGML's, as stored in GGUF tensor infos. Each quantized type
 * packs `blck` values into `type_size` bytes. Dequantization is bit-exact to
 * the format's definition (ggml-quants.c *_ref). Every weight type also has
 * a "dot type" that activations are quantized to before a dot product
 * (Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for the K-quants, F16,
 * BF16 or F32 for the float types), which is what llama.cpp does too.
 *
 * All functions here are scalar references ("_ref"); fast paths live in the
 * kernels and are tested against these.
 */
#ifndef SL_QUANT_H
#define SL_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sl_type {
    SL_TYPE_F32 = 0,
    SL_TYPE_F16 = 1,
    SL_TYPE_Q4_0 = 2,
    SL_TYPE_Q4_1 = 3,
    SL_TYPE_Q5_0 = 6,
    SL_TYPE_Q5_1 = 7,
    SL_TYPE_Q8_0 = 8,
    SL_TYPE_Q8_1 = 9,
    SL_TYPE_Q2_K = 10,
    SL_TYPE_Q3_K = 11,
    SL_TYPE_Q4_K = 12,
    SL_TYPE_Q5_K = 13,
    SL_TYPE_Q6_K = 14,
    SL_TYPE_Q8_K = 15,
    SL_TYPE_I8 = 24,
    SL_TYPE_I16 = 25,
    SL_TYPE_I32 = 26,
    SL_TYPE_I64 = 27,
    SL_TYPE_F64 = 28,
    SL_TYPE_BF16 = 30,
    SL_TYPE_COUNT = 40, /* bound for tables indexed by type id */
};

#define SL_QK4_0 32
#define SL_QK4_1 32
#define SL_QK5_0 32
#define SL_QK5_1 32
#define SL_QK8_0 32
#define SL_QK8_1 32
#define SL_QK_K 256
#define SL_K_SCALE_SIZE 12

struct sl_type_traits {
    const char *name;  /* "Q4_K" */
    int blck;          /* values per block (1 for plain types) */
    size_t type_size;  /* bytes per block */
    bool is_quant;     /* block-quantized */
    int dot_type;      /* type activations are converted to for vec_dot; -1 if !weight_ok */
    bool weight_ok;    /* the engine can use it as a matmul weight */
};

/*
 * Block layouts, byte for byte as GGML's (ggml-common.h). All multi-byte
 * fields are little-endian; `d`, `m`, `s`, `dmin` are IEEE half floats kept
 * as raw bits (convert with sl_fp16_to_fp32). In every 32-value block the
 * low nibbles of qs[] hold values 0..15 and the high nibbles values 16..31.
 * The K-quants pack 256 values into 8 or 16 sub-blocks, each with its own
 * 4- to 8-bit scale (and min) under the super-block's fp16 d (and dmin).
 */
struct sl_block_q4_0 { /* x = d * (q - 8) */
    uint16_t d;
    uint8_t qs[SL_QK4_0 / 2];
};
struct sl_block_q4_1 { /* x = d * q + m */
    uint16_t d, m;
    uint8_t qs[SL_QK4_1 / 2];
};
struct sl_block_q5_0 { /* x = d * (q - 16); bit 4 of value j is bit j of qh */
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[SL_QK5_0 / 2];
};
struct sl_block_q5_1 { /* x = d * q + m */
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[SL_QK5_1 / 2];
};
struct sl_block_q8_0 { /* x = d * q */
    uint16_t d;
    int8_t qs[SL_QK8_0];
};
struct sl_block_q8_1 { /* x = d * q; s = d * sum(q), for the min term of Q4_1/Q5_1 */
    uint16_t d, s;
    int8_t qs[SL_QK8_1];
};
struct sl_block_q2_K { /* 16 x 16 values; x = d*(sc&15)*q - dmin*(sc>>4) */
    uint8_t scales[SL_QK_K / 16];
    uint8_t qs[SL_QK_K / 4];
    uint16_t d, dmin;
};
struct sl_block_q3_K { /* 16 x 16 values; x = d*(sc-32)*(q - (hmask bit ? 0 : 4)) */
    uint8_t hmask[SL_QK_K / 8];
    uint8_t qs[SL_QK_K / 4];
    uint8_t scales[SL_K_SCALE_SIZE]; /* 16 6-bit scales */
    uint16_t d;
};
struct sl_block_q4_K { /* 8 x 32 values; x = d*sc*q - dmin*m, 6-bit sc and m */
    uint16_t d, dmin;
    uint8_t scales[SL_K_SCALE_SIZE];
    uint8_t qs[SL_QK_K / 2];
};
struct sl_block_q5_K { /* as Q4_K plus a 5th bit per value in qh */
    uint16_t d, dmin;
    uint8_t scales[SL_K_SCALE_SIZE];
    uint8_t qh[SL_QK_K / 8];
    uint8_t qs[SL_QK_K / 2];
};
struct sl_block_q6_K { /* 16 x 16 values; x = d*sc*(q - 32), 4 low bits in ql, 2 in qh */
    uint8_t ql[SL_QK_K / 2];
    uint8_t qh[SL_QK_K / 4];
    int8_t scales[SL_QK_K / 16];
    uint16_t d;
};
struct sl_block_q8_K { /* activations only; x = d * q */
    float d;
    int8_t qs[SL_QK_K];
    int16_t bsums[SL_QK_K / 16]; /* sum of each group of 16 qs */
};

_Static_assert(sizeof(struct sl_block_q4_0) == 18, "Q4_0 block");
_Static_assert(sizeof(struct sl_block_q4_1) == 20, "Q4_1 block");
_Static_assert(sizeof(struct sl_block_q5_0) == 22, "Q5_0 block");
_Static_assert(sizeof(struct sl_block_q5_1) == 24, "Q5_1 block");
_Static_assert(sizeof(struct sl_block_q8_0) == 34, "Q8_0 block");
_Static_assert(sizeof(struct sl_block_q8_1) == 36, "Q8_1 block");
_Static_assert(sizeof(struct sl_block_q2_K) == 84, "Q2_K block");
_Static_assert(sizeof(struct sl_block_q3_K) == 110, "Q3_K block");
_Static_assert(sizeof(struct sl_block_q4_K) == 144, "Q4_K block");
_Static_assert(sizeof(struct sl_block_q5_K) == 176, "Q5_K block");
_Static_assert(sizeof(struct sl_block_q6_K) == 210, "Q6_K block");
_Static_assert(sizeof(struct sl_block_q8_K) == 292, "Q8_K block");

/* The 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block:
 * j < 4 in the low 6 bits of scales[j] and scales[j+4]; j >= 4 in the
 * nibbles of scales[j+4] plus the top 2 bits of scales[j-4] and scales[j]. */
static inline void sl_k4_scale_min(int j, const uint8_t *scales, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = scales[j] & 63;
        *m = scales[j + 4] & 63;
    } else {
        *sc = (uint8_t)((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4));
        *m = (uint8_t)((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
    }
}

/* Traits of a type id, or NULL for an id sluice does not know. */
const struct sl_type_traits *sl_type_traits(uint32_t type);

/* Type id by name ("q4_k", "Q8_0", "f16"; case-insensitive), or -1. */
int sl_type_from_name(const char *name);

/* Bytes of a row of n values; 0 if n is not a multiple of the block size. */
size_t sl_row_size(int type, int64_t n);

/* Half and bfloat16 conversions (round to nearest even, like ggml). */
float sl_fp16_to_fp32(uint16_t h);
uint16_t sl_fp32_to_fp16(float f);
float sl_bf16_to_fp32(uint16_t h);
uint16_t sl_fp32_to_bf16(float f);

/* Dequantize n values (a multiple of the block size) of `type` to float.
 * Works for every type with weight_ok, plus Q8_1/Q8_K; any other type or a
 * partial block is a caller bug (SL_ASSERT). Thread-safe. */
void sl_dequantize_row(int type, const void *src, float *dst, int64_t n);

/* Quantize n floats to `type` (reference quantizers, as ggml's *_ref).
 * Returns bytes written. For any type with weight_ok and the dot types;
 * returns 0 (writes nothing) for other types or a partial block.
 * The output is byte-identical to llama-quantize without an imatrix.
 * Thread-safe. */
size_t sl_quantize_row_ref(int type, const float *src, void *dst, int64_t n);

/* Dot product of a row of weights of type `type` with a row of activations
 * already quantized to that type's dot_type, n values. Scalar reference:
 * integer sums per block as ggml (the min terms of Q4_1/Q5_1 use the Q8_1
 * `s` field, those of the K-quants the Q8_K bsums); float rows accumulate
 * in double. `type` must have weight_ok (SL_ASSERT). Thread-safe. */
float sl_vec_dot_ref(int type, int64_t n, const void *w, const void *a);

#endif
