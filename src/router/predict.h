/*
 * predict.h - the learned router of a `predict` route (router layer).
 *
 * Scores P(the small tier answers wrong) for an input before any model
 * runs, from features sluice computes locally: the small model's embedding
 * of the input (optional), the input's length, and hashed word/character
 * n-grams. A logistic regression over them; trained by `sluice
 * train-router` from evaluation results (which tier was right) and stored
 * as a GGUF file (tensors and metadata: docs/router.md).
 *
 * Immutable after load: score from any thread.
 */
#ifndef SL_PREDICT_H
#define SL_PREDICT_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

struct sl_predictor;

int sl_predictor_load(struct sl_predictor **out, const char *path, struct sl_err *err);
int sl_predictor_save(const struct sl_predictor *p, const char *path, struct sl_err *err);
void sl_predictor_free(struct sl_predictor *p);

/* Width of the embedding it expects (0 = it uses no embedding). The caller
 * embeds the input with the route's first tier (the small model) and checks
 * the width matches. */
int32_t sl_predictor_embd_dim(const struct sl_predictor *p);

/* P(small tier wrong) in [0, 1] for text[0..len) and its embedding
 * (NULL when embd_dim is 0). */
double sl_predictor_score(const struct sl_predictor *p, const char *text, size_t len,
                          const float *embd);

/* A predictor with given weights (tests, and what training produces):
 * w has embd_dim + 1 (length) + hash_dim entries, in that order. */
int sl_predictor_new_linear(struct sl_predictor **out, int32_t embd_dim, uint32_t hash_dim,
                            const float *w, float bias, struct sl_err *err);

/* The feature vector of an input, exactly as scoring builds it, written to
 * out[0 .. embd_dim + 1 + hash_dim): the embedding (L2-normalised), the
 * length feature, then hashed n-gram counts (normalised). Training uses it. */
void sl_predictor_featurize(int32_t embd_dim, uint32_t hash_dim, const char *text, size_t len,
                            const float *embd, float *out);

#endif
