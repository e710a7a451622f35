/*
 * lora.h - LoRA adapters applied at load time (engine layer).
 *
 * An adapter file follows llama.cpp's convention (convert_lora_to_gguf.py,
 * src/llama-adapter.cpp): general.type = "adapter", adapter.type = "lora",
 * adapter.lora.alpha (f32), and for each adapted weight W (out, in) named
 * "blk.N.attn_q.weight" a pair
 *   "blk.N.attn_q.weight.lora_a"  ne = [in, r]   (A: r rows of in)
 *   "blk.N.attn_q.weight.lora_b"  ne = [r, out]  (B: out rows of r)
 * so that W' = W + s * B A with s = scale * alpha / r (scale when alpha = 0),
 * as llama.cpp computes it.
 *
 * sluice merges the delta into a private F32 copy of each adapted weight
 * and points the model's tensor view at it: the forward pass (and its hot
 * matmul path) is unchanged, at the cost of F32 memory for the adapted
 * matrices (4 E^2 floats per layer for q/k/v/o of an E-wide model).
 *
 * Call it after sl_model_load and before any sl_ctx is made on the model.
 * Adapted projections: attn_q, attn_k, attn_v, attn_output, ffn_gate,
 * ffn_up, ffn_down; any other target is SL_EUNSUPPORTED (nothing is
 * changed on error: the model is untouched unless every pair validates).
 */
#ifndef SL_LORA_H
#define SL_LORA_H

#include "../base/err.h"
#include "model.h"

/* Owns the merged F32 weights. Keep it alive as long as the model is used,
 * and free it after sl_model_free (the model's views point into it). */
struct sl_lora_merge;

int sl_model_apply_lora(struct sl_model *m, const char *path, float scale, struct sl_lora_merge **out,
                        struct sl_err *err);
void sl_lora_merge_free(struct sl_lora_merge *lm);
/* Number of weights the adapter changed. */
int sl_lora_merge_count(const struct sl_lora_merge *lm);

#endif
