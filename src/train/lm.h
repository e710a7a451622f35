/*
 * lm.h - training a llama-architecture language model on the CPU: weights,
 * forward and backward, LoRA adapters, data, and GGUF in/out (train layer).
 *
 * Dimension letters (as in engine/model.h, plus llm.c's batch letters):
 *   B = sequences in a step, T = tokens per sequence, N = B*T,
 *   V = n_vocab, E = n_embd, L = n_layer, H = n_head, K = n_head_kv,
 *   D = head_dim, F = n_ff, r = LoRA rank.
 * A weight "(R, C)" has R rows of C values: y[r] = W[r] . x, as in the engine.
 *
 * The model computed is exactly the engine's llama forward (sl_decode with
 * F32 weights): token embedding, per layer RMSNorm -> q,k,v -> RoPE (normal
 * pairs) -> causal softmax attention with GQA -> output projection ->
 * residual -> RMSNorm -> SwiGLU FFN -> residual, final RMSNorm, output
 * projection (tied to the embedding or not), softmax cross-entropy.
 *
 * Precision: `sl_real` is float. The gradient test compiles lm.c again with
 * SL_LM_REAL=double to compare with finite differences in double.
 *
 * LoRA: an adapter adds (alpha/r) * B A x to the projections it targets
 * (q, k, v, o, and optionally gate, up, down); with params.train_base false
 * only A and B receive gradients and the base weights stay frozen.
 */
#ifndef SL_TRAIN_LM_H
#define SL_TRAIN_LM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/pool.h"
#include "train.h"

#ifndef SL_LM_REAL
#define SL_LM_REAL float
#define SL_LM_REAL_IS_FLOAT 1 /* dot products go to the engine's SIMD kernels */
#endif
typedef SL_LM_REAL sl_real;

struct sl_model;
struct sl_vocab;

struct sl_lm_config {
    int32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff;
    int32_t n_ctx;  /* training context written to the GGUF */
    float norm_eps; /* RMSNorm epsilon */
    float rope_base;
    bool tied;      /* output projection = token embedding */
};

/* The weights (or their gradients: same layout), views into one buffer. */
struct sl_lm_weights {
    sl_real *tok_embd;  /* (V, E) */
    sl_real *attn_norm; /* (L, E) */
    sl_real *wq;        /* (L, H*D, E) */
    sl_real *wk;        /* (L, K*D, E) */
    sl_real *wv;        /* (L, K*D, E) */
    sl_real *wo;        /* (L, E, H*D) */
    sl_real *ffn_norm;  /* (L, E) */
    sl_real *gate;      /* (L, F, E) */
    sl_real *up;        /* (L, F, E) */
    sl_real *down;      /* (L, E, F) */
    sl_real *out_norm;  /* (E) */
    sl_real *output;    /* (V, E); NULL when tied */
};

/* The projections LoRA may adapt, in GGUF name order. */
enum sl_lora_target {
    SL_LORA_Q, SL_LORA_K, SL_LORA_V, SL_LORA_O, SL_LORA_GATE, SL_LORA_UP, SL_LORA_DOWN,
    SL_LORA_N_TARGETS,
};

struct sl_lm_lora {
    int32_t rank;
    float alpha;             /* scale = alpha / rank */
    uint32_t targets;        /* bit mask of 1 << enum sl_lora_target */
    sl_real *a[SL_LORA_N_TARGETS]; /* (L, r, in) or NULL */
    sl_real *b[SL_LORA_N_TARGETS]; /* (L, out, r) or NULL */
    sl_real *da[SL_LORA_N_TARGETS], *db[SL_LORA_N_TARGETS]; /* gradients, same shapes */
    sl_real *mem;            /* one allocation for all of the above */
    size_t n_params;         /* of a and b together */
};

struct sl_lm {
    struct sl_lm_config cfg;
    int32_t head_dim;          /* D = E / H */
    struct sl_lm_weights w;    /* parameters */
    struct sl_lm_weights g;    /* gradients */
    sl_real *params_mem, *grads_mem;
    size_t n_params;
    float *rope_freqs;         /* (D/2) llama-3 divisors or NULL */
    float rope_scale;          /* linear position scale */
    bool train_base;           /* false: base weights frozen (LoRA) */
    struct sl_lm_lora *lora;   /* NULL or an attached adapter (not owned) */
    struct sl_pool *pool;      /* owned */

    /* activations of the last forward, sized for (B, T) */
    int32_t B, T;
    struct sl_lm_acts *acts;
    sl_real *logits;           /* (N, V): probabilities after sl_lm_forward with targets */
};

/* Sizes must satisfy E % H == 0, H % K == 0, D even. n_threads <= 0: all. */
int sl_lm_init(struct sl_lm *lm, const struct sl_lm_config *cfg, int n_threads, struct sl_err *err);
void sl_lm_free(struct sl_lm *lm);

/* From scratch: N(0, 0.02) matrices, wo/down scaled by 1/sqrt(2L), norms 1. */
void sl_lm_init_weights(struct sl_lm *lm, uint64_t seed);

/* Continued training / LoRA base: a llama GGUF (any weight type, dequantized
 * to F32). SL_EUNSUPPORTED for other architectures or biases/q-k norms. */
int sl_lm_from_model(struct sl_lm *lm, const struct sl_model *m, int n_threads, struct sl_err *err);

/* Write a llama GGUF the engine loads: 2-D weights in `type` (F32 or F16),
 * norms F32; metadata and tokenizer copied from `meta_from` (a GGUF with
 * tokenizer.* keys; may be NULL), general.name = name. */
int sl_lm_save(const struct sl_lm *lm, const char *path, int type, const struct sl_model *meta_from,
               const char *name, struct sl_err *err);

/* Forward over inputs (B, T) token ids. With targets (B, T) (-1 = ignore)
 * returns the mean cross-entropy over counted targets and leaves
 * probabilities in lm->logits; without, leaves logits. Returns NAN when no
 * target counts. Errors (bad token, OOM) return NAN and set err. */
double sl_lm_forward(struct sl_lm *lm, const int32_t *inputs, const int32_t *targets, int32_t B,
                     int32_t T, struct sl_err *err);
/* Zero all gradients (base and LoRA). */
void sl_lm_zero_grad(struct sl_lm *lm);
/* Backward of the last forward (which had targets): accumulates gradients
 * of the mean loss into lm->g (if train_base) and the LoRA gradients.
 * 0, or SL_ENOMEM (scratch for a transpose; gradients are then partial). */
int sl_lm_backward(struct sl_lm *lm, const int32_t *inputs, const int32_t *targets);

/* ---- LoRA ---- */

/* Allocate an adapter for lm's shapes: A ~ N(0, 1/in), B = 0. */
int sl_lm_lora_init(struct sl_lm_lora *lo, const struct sl_lm *lm, int32_t rank, float alpha,
                    uint32_t targets, uint64_t seed, struct sl_err *err);
void sl_lm_lora_free(struct sl_lm_lora *lo);
/* Write a llama.cpp-style adapter GGUF: general.type "adapter",
 * adapter.type "lora", adapter.lora.alpha, general.architecture "llama",
 * tensors blk.N.<attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down>
 * .weight.lora_a (ne = [in, r]) and .lora_b (ne = [r, out]), F32. */
int sl_lm_lora_save(const struct sl_lm_lora *lo, const struct sl_lm *lm, const char *path,
                    struct sl_err *err);
/* in/out widths of projection t (enum sl_lora_target); SL_EINVAL if bad. */
int sl_lm_lora_dims(const struct sl_lm *lm, int t, int *in, int *out);
/* "q,k,v,o" / "all" / "attn" -> mask; SL_EINVAL on an unknown name. */
int sl_lora_targets_parse(const char *s, uint32_t *out);

/* ---- data ---- */

/* Token rows for training: documents back to back, with a per-token flag
 * saying whether predicting it counts toward the loss. */
struct sl_lm_data {
    int32_t *tok;   /* (n_tok) */
    uint8_t *loss;  /* (n_tok) 1: counted as a target */
    size_t n_tok, cap;
    size_t *start;  /* (n_doc) first token of each document */
    size_t n_doc, cap_doc;
    bool stream;    /* plain text: windows may start anywhere */
};

void sl_lm_data_free(struct sl_lm_data *d);
/* Append a plain text corpus: BOS + tokens per non-empty line-separated
 * paragraph (blank lines separate documents); every token counts. */
int sl_lm_data_add_text(struct sl_lm_data *d, const struct sl_vocab *v, const char *text, size_t len,
                        struct sl_err *err);
/* Append one example: BOS + prompt + completion + EOS; only the
 * completion and EOS count when completion_only. */
int sl_lm_data_add_pair(struct sl_lm_data *d, const struct sl_vocab *v, const char *prompt,
                        const char *completion, bool completion_only, struct sl_err *err);
/* Fill row b of (inputs, targets) (B, T): a window starting at document
 * `doc` (examples: the whole document, padded with targets -1) or, for a
 * stream, at token offset `off`. */
void sl_lm_data_row(const struct sl_lm_data *d, size_t doc, size_t off, int32_t T, int32_t *inputs,
                    int32_t *targets);

/* ---- a training run ---- */

struct sl_lm_train_params {
    int32_t batch, seq_len;  /* B, T */
    int64_t steps;           /* at most */
    float lr, min_lr, weight_decay, clip_norm;
    int32_t warmup;
    int schedule;            /* enum sl_lr_schedule */
    int32_t eval_every;      /* steps between validation passes; 0 = only at the end */
    int32_t eval_batches;    /* validation batches per pass */
    int patience;            /* validation passes without improvement; 0 = never stop */
    uint64_t seed;
};

struct sl_lm_train_params sl_lm_train_default_params(void);

struct sl_lm_train_result {
    int64_t steps_run, best_step;
    double first_loss, last_loss; /* training loss of the first and last step */
    double best_val_loss;
    double tokens_per_s;
    double seconds;
    double *curve;                /* (steps_run) training loss per step, malloc'd (caller frees) */
};

/* Train lm (all weights, or only lm->lora when !lm->train_base) on `train`,
 * validating on `val` (may be NULL or empty). With validation the weights
 * (or adapter) end at the best validation loss. */
int sl_lm_train(struct sl_lm *lm, const struct sl_lm_data *train, const struct sl_lm_data *val,
                const struct sl_lm_train_params *p, struct sl_lm_train_result *res,
                sl_train_progress_fn progress, void *user, struct sl_err *err);

/* Mean loss over the documents (or windows) of d, in batches of (B, T). */
double sl_lm_eval(struct sl_lm *lm, const struct sl_lm_data *d, int32_t B, int32_t T,
                  int32_t max_batches, struct sl_err *err);

#endif
