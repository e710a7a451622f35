/*
 * head.h - a classification head on a frozen model's embeddings: training,
 * the GGUF file, and inference (train layer).
 *
 * The input of a head is the mean over a text's tokens of the model's
 * final hidden states (after the output norm; sl_decode with
 * params.embeddings, every token flagged). The head is
 *   linear:  logits = W1 x + b1                  W1 (C, E)  b1 (C)
 *   mlp:     logits = W2 relu(W1 x + b1) + b2     W1 (Hd, E) b1 (Hd) W2 (C, Hd) b2 (C)
 * with E = n_embd of the source model, Hd = hidden width, C = labels,
 * trained by softmax cross-entropy and AdamW on minibatches.
 *
 * GGUF output (every tensor F32):
 *   general.architecture    "sluice-head"
 *   sluice-head.n_in / .n_hidden (0 = linear) / .n_out   u32
 *   sluice-head.labels      string array (C), in class order
 *   sluice-head.pooling     "mean"
 *   sluice-head.n_ctx       u32: tokens embedded per text in training (texts
 *                           are cut there; classification cuts them alike)
 *   sluice-head.source.name string: the model's general.name
 *   sluice-head.source.hash string: 16 hex digits of sl_head_model_hash
 *   tensors head.w1 (E -> rows), head.b1, and for an MLP head.w2, head.b2
 *   sluice-head.n_members   u32, only when > 1: an ensemble of that many
 *                           heads of one shape; every tensor then has a last
 *                           dimension n_members (member m's weights follow
 *                           member m - 1's), and the head's probabilities are
 *                           the mean of the members' softmax outputs
 *
 * Embedding cache: <dir>/emb-<model hash>-<data hash>.bin, raw floats
 * (n, E) after a 32-byte header; computed once per (model, texts).
 */
#ifndef SL_TRAIN_HEAD_H
#define SL_TRAIN_HEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "engine/forward.h"
#include "train.h"

#define SL_HEAD_ARCH "sluice-head"
#define SL_HEAD_MAX_TOKENS 512 /* tokens embedded per text (longer texts are cut) */

struct sl_head {
    int32_t n_in;     /* E */
    int32_t n_hidden; /* Hd; 0 = linear head */
    int32_t n_out;    /* C */
    float *w1;        /* (Hd or C, E) */
    float *b1;        /* (Hd or C) */
    float *w2;        /* (C, Hd) or NULL */
    float *b2;        /* (C) or NULL */
    char **labels;    /* (C) owned */
    char *source_name;
    uint64_t source_hash;
    int32_t n_ctx;    /* tokens embedded per text when trained; 0 = not recorded */
    int32_t n_members; /* >= 1; w1, b1, w2, b2 hold that many members back to back */
};

/* Allocate a head (one member) with zeroed weights and copies of the labels. */
int sl_head_init(struct sl_head *h, int32_t n_in, int32_t n_hidden, const char *const *labels,
                 int32_t n_out, struct sl_err *err);
void sl_head_free(struct sl_head *h);

/* sl_head_init for a head on model m's embeddings (n_in = its n_embd),
 * recording the model's name and hash and n_ctx, the tokens embedded per
 * text (sl_classifier_init checks the first two against the model). */
int sl_head_init_for_model(struct sl_head *h, const struct sl_model *m, int32_t n_hidden,
                           const char *const *labels, int32_t n_out, int32_t n_ctx, struct sl_err *err);

/* An ensemble out of k heads of one shape and labels (each one member; the
 * metadata comes from members[0]). Out must be freed; members are not
 * changed. */
int sl_head_ensemble(struct sl_head *out, const struct sl_head *members, int k, struct sl_err *err);

/* Most members of an ensemble (sl_head_load refuses more). */
#define SL_HEAD_MAX_MEMBERS 64

/* probs (C) = softmax(head(x)) for one embedding x (E), averaged over the
 * members of an ensemble. Thread-safe. */
void sl_head_classify(const struct sl_head *h, const float *x, float *probs);

int sl_head_save(const struct sl_head *h, const char *path, struct sl_err *err);
/* Load a head GGUF (checks architecture, shapes, labels). Caller frees. */
int sl_head_load(struct sl_head *h, const char *path, struct sl_err *err);
/* The same from a parsed GGUF (path names it in messages); h owns copies. */
struct sl_gguf;
int sl_head_load_gguf(struct sl_head *h, const struct sl_gguf *g, const char *path, struct sl_err *err);

/* ---- embeddings ---- */

/* A model's identity for cache keys and the head's metadata: FNV-1a over
 * the GGUF header and metadata, the file size, and 4 KiB of tensor data at
 * 64 evenly spaced offsets. */
uint64_t sl_head_model_hash(const struct sl_model *m);

/* Mean-pooled embedding of one text into out (E), and the tokens it used
 * (cut at n_batch and SL_HEAD_MAX_TOKENS) into *n_tokens (may be NULL). ctx
 * must have been made with params.embeddings (no_logits advised); its KV
 * cache is cleared before and after. */
int sl_embed_text(struct sl_ctx *ctx, const char *text, float *out, int32_t *n_tokens, struct sl_err *err);

/* Embeddings of n texts into *out (n, E), malloc'd. With cache_dir, reads
 * or writes the cache file (key: model hash + hash of the texts). */
int sl_embed_texts(struct sl_ctx *ctx, char *const *texts, size_t n, const char *cache_dir,
                   float **out, sl_train_progress_fn progress, void *user, struct sl_err *err);

/* ---- training ---- */

struct sl_head_train_params {
    int32_t n_hidden;     /* 0 = linear */
    int32_t epochs;       /* at most */
    int32_t batch;        /* examples per step */
    float lr, weight_decay, min_lr;
    int32_t warmup;       /* steps */
    int patience;         /* epochs without validation improvement; 0 = never stop */
    uint64_t seed;
};

struct sl_head_train_params sl_head_train_default_params(void);

struct sl_head_train_result {
    int32_t epochs_run, best_epoch;
    double train_loss, val_loss, val_acc; /* at the best epoch */
    double seconds;
    size_t n_train, n_val; /* examples trained on and held out */
};

/* Train h (already initialised: sizes, labels; one member) on x (n, E) with labels y
 * (n), using train_idx for updates and val_idx (may be empty: then the
 * training loss decides) for early stopping. h ends at the best epoch. */
int sl_head_train(struct sl_head *h, const float *x, const int32_t *y, const int32_t *train_idx,
                  size_t n_train, const int32_t *val_idx, size_t n_val,
                  const struct sl_head_train_params *p, struct sl_head_train_result *res,
                  sl_train_progress_fn progress, void *user, struct sl_err *err);

/* The same with soft targets (distillation): q (n, C) holds a probability
 * distribution per example (a teacher's), and the loss is the cross-entropy
 * -sum_c q_c log p_c, whose gradient with respect to the logits is p - q.
 * y (n) still gives the hard labels for the validation accuracy; the
 * validation loss (early stopping) is the soft cross-entropy. q NULL: as
 * sl_head_train. */
int sl_head_train_soft(struct sl_head *h, const float *x, const int32_t *y, const float *q,
                       const int32_t *train_idx, size_t n_train, const int32_t *val_idx, size_t n_val,
                       const struct sl_head_train_params *p, struct sl_head_train_result *res,
                       sl_train_progress_fn progress, void *user, struct sl_err *err);

/* Train k members on x (n, E) with labels y (and soft targets q, or NULL)
 * and make h (initialised, one member: sizes, labels, metadata) their
 * ensemble. Member m holds out its own val_frac of the examples (split by
 * seed p->seed + m) and starts from that seed; up to `threads` members train
 * at once. k = 1 is exactly sl_head_train_soft on the seed's split. res (k
 * entries, or NULL) gets every member's result. progress (may be NULL) sees
 * the members' steps summed, from one thread at a time. */
int sl_head_train_ensemble(struct sl_head *h, const float *x, const int32_t *y, const float *q, size_t n,
                           double val_frac, int k, int threads, const struct sl_head_train_params *p,
                           struct sl_head_train_result *res, sl_train_progress_fn progress, void *user,
                           struct sl_err *err);

/* Mean loss of h over B examples x (B, E) against q (B, C) (or y when q is
 * NULL), and its gradient into g (a head of h's shape, overwritten). For
 * gradient checks. NAN when out of memory. */
double sl_head_loss_grad(const struct sl_head *h, const float *x, const int32_t *y, const float *q, int B,
                         struct sl_head *g);

/* Mean cross-entropy and accuracy of h over the listed examples. */
void sl_head_eval(const struct sl_head *h, const float *x, const int32_t *y, const int32_t *idx,
                  size_t n, double *loss, double *acc);

#endif
