/*
 * quantize.h - re-write a GGUF model with its weights in another type,
 * the way llama-quantize does (convert layer).
 *
 * A "file type" (ftype) names what the user asks for: a single type (Q8_0,
 * F16, ...) or a mix (Q4_K_M: Q4_K almost everywhere, Q6_K for the output
 * matrix and for attn_v / ffn_down on some layers). The values are
 * llama.cpp's LLAMA_FTYPE_*, written to general.file_type. Every 2-D weight
 * gets the mix's type; 1-D tensors (norms, biases, rope_freqs) and a few
 * tensors llama.cpp never quantizes are copied unchanged. The per-tensor
 * rules, the fallbacks for rows that are not a multiple of the block size
 * and the output order of the tensors follow llama.cpp's llama-quant.cpp,
 * so quantizing the same F32 file gives byte-identical tensors (see
 * docs/internals/quantize.md).
 */
#ifndef SL_QUANTIZE_H
#define SL_QUANTIZE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "engine/gguf.h"

/* llama.cpp's LLAMA_FTYPE values (as stored in general.file_type). */
enum sl_ftype {
    SL_FTYPE_ALL_F32 = 0,
    SL_FTYPE_MOSTLY_F16 = 1,
    SL_FTYPE_MOSTLY_Q4_0 = 2,
    SL_FTYPE_MOSTLY_Q4_1 = 3,
    SL_FTYPE_MOSTLY_Q8_0 = 7,
    SL_FTYPE_MOSTLY_Q5_0 = 8,
    SL_FTYPE_MOSTLY_Q5_1 = 9,
    SL_FTYPE_MOSTLY_Q2_K = 10,
    SL_FTYPE_MOSTLY_Q3_K_S = 11,
    SL_FTYPE_MOSTLY_Q3_K_M = 12,
    SL_FTYPE_MOSTLY_Q3_K_L = 13,
    SL_FTYPE_MOSTLY_Q4_K_S = 14,
    SL_FTYPE_MOSTLY_Q4_K_M = 15,
    SL_FTYPE_MOSTLY_Q5_K_S = 16,
    SL_FTYPE_MOSTLY_Q5_K_M = 17,
    SL_FTYPE_MOSTLY_Q6_K = 18,
    SL_FTYPE_MOSTLY_Q2_K_S = 21,
    SL_FTYPE_MOSTLY_BF16 = 32,
};

struct sl_quantize_params {
    int ftype;             /* enum sl_ftype */
    bool pure;             /* every quantizable 2-D tensor gets the ftype's base type */
    bool allow_requantize; /* accept quantized input tensors (lossy twice) */
    int output_type;       /* enum sl_type for output.weight, or -1: by the mix */
    int token_embd_type;   /* enum sl_type for token_embd.weight, or -1: by the mix */
    int n_threads;         /* <= 0: all online CPUs */
    /* optional: NULL means no progress. Called from the calling thread with
     * the values converted so far and the total, never after a failure. */
    void (*progress)(void *user, uint64_t done, uint64_t total);
    void *progress_user;
};

/* Q4_K_M, not pure, no overrides, all CPUs, no progress. */
struct sl_quantize_params sl_quantize_default_params(void);

/* An ftype by llama-quantize's name, case-insensitive: "Q4_K_M", "q8_0",
 * "F16". As in llama-quantize, "Q3_K", "Q4_K" and "Q5_K" are aliases of
 * the _M mixes (with pure set they mean that type everywhere). -1 if
 * unknown. */
int sl_ftype_from_name(const char *name);
/* "Q4_K_M", or "?" for an unknown value. */
const char *sl_ftype_name(int ftype);
/* The type most tensors get (Q4_K for Q4_K_M), or -1. */
int sl_ftype_base_type(int ftype);
/* One line naming every accepted name, for usage messages. */
const char *sl_ftype_names(void);

/* The type each tensor of g would get, in g's tensor order: types[i] for
 * g->tensors[i] (types has g->n_tensors entries). Fails (message in err)
 * on a bad ftype, an override type that does not fit a tensor's rows, or a
 * quantized input tensor without allow_requantize. Thread-safe. */
int sl_quantize_plan(const struct sl_gguf *g, const struct sl_quantize_params *p, int *types,
                     struct sl_err *err);

/* Quantize the model at in_path into out_path. The whole output is built in
 * memory before it is written (peak memory: the input mapping plus the
 * output size). */
int sl_quantize_file(const char *in_path, const char *out_path, const struct sl_quantize_params *p,
                     struct sl_err *err);

#endif
