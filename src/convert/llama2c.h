/*
 * llama2c.h - convert a llama2.c checkpoint + tokenizer to GGUF (convert layer).
 */
#ifndef SL_LLAMA2C_H
#define SL_LLAMA2C_H

#include "base/err.h"

/* model_path: llama2.c "legacy" checkpoint (7 int32 header, fp32 weights;
 * a negative vocab_size means an unshared classifier follows).
 * tok_path: llama2.c tokenizer.bin (int32 max_len, then per token: f32
 * score, int32 len, bytes). Writes an F32 GGUF of architecture llama. */
int sl_convert_llama2c(const char *model_path, const char *tok_path, const char *out_path,
                       struct sl_err *err);

#endif
