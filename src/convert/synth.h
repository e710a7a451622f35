/*
 * synth.h - write a model of a given shape with random weights (convert layer).
 *
 * For benchmarks (speed does not depend on the values: the recipes in
 * ../shared/bench are shapes plus N(0, 0.02^2) weights) and for the quick
 * start, which needs a model the project makes itself. The vocabulary is
 * byte-level SentencePiece (<unk>, <s>, </s>, 256 byte tokens) padded with
 * unused tokens up to n_vocab, so any text tokenizes.
 */
#ifndef SL_SYNTH_H
#define SL_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"

struct sl_synth_params {
    const char *arch; /* "llama" or "qwen2" (q/k/v biases) */
    int32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx;
    int type;         /* weight type of 2-D tensors (enum sl_type) */
    bool tied;        /* no output.weight */
    uint64_t seed;
};

/* A tiny llama: vocab 259+, 64 wide, 2 layers. */
struct sl_synth_params sl_synth_default_params(void);

/* Look up a named shape: "tiny", "smollm2-135m", "qwen2.5-0.5b", "tinyllama-1.1b". */
int sl_synth_preset(const char *name, struct sl_synth_params *p, struct sl_err *err);

/* progress(user, done, total) is called after each tensor; may be NULL. */
int sl_synth_write(const struct sl_synth_params *p, const char *out_path,
                   void (*progress)(void *user, uint64_t done, uint64_t total), void *user,
                   struct sl_err *err);

#endif
