/*
 * router_lr.h - a small logistic-regression router on features sluice
 * computes locally: hashed word unigrams and bigrams of the prompt plus
 * length features (eval layer). Dependency-free and deterministic: the same
 * data, parameters and order give the same weights, bit for bit.
 *
 * Training minimizes  mean_i logloss(y_i, sigmoid(w.x_i + b)) + l2/2 |w|^2
 * (the bias is not regularized) with full-batch Adam: no sampling, so no
 * seed. Features:
 *   slot 0: log1p(bytes) / 8    slot 1: log1p(words) / 6
 *   slot 2: fraction of digit bytes   slot 3: count of '?' / 4 (capped at 1)
 *   slots 4..dim-1: FNV-1a hashes of lower-cased words and word bigrams,
 *   term counts scaled so the hashed part has unit L2 norm.
 * A "word" is a run of ASCII letters/digits or bytes >= 0x80 (UTF-8 kept).
 * Not thread-safe per model during training; prediction is read-only.
 */
#ifndef SL_EVAL_ROUTER_LR_H
#define SL_EVAL_ROUTER_LR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define SL_LR_MAX_DIM_BITS 24
#define SL_LR_N_DENSE 4 /* the length slots before the hashed ones */

/* Sparse rows, CSR: row r is idx/val[row_ptr[r] .. row_ptr[r+1]). */
struct sl_lr_rows {
    size_t n_rows;
    size_t *row_ptr; /* (n_rows + 1) */
    uint32_t *idx;   /* (nnz) feature index < dim */
    float *val;      /* (nnz) */
    size_t dim;
};

struct sl_lr_params {
    int dim_bits;   /* hashed feature space 2^dim_bits */
    bool bigrams;
    double l2;      /* weight of the L2 penalty */
    double lr;      /* Adam step */
    int iters;      /* full-batch iterations */
    /* optional: NULL means silent; called after each iteration */
    void (*progress)(void *ctx, int done, int total);
    void *progress_ctx;
};

struct sl_lr_params sl_lr_default_params(void);

struct sl_lr {
    size_t dim;
    double *w; /* (dim) owned */
    double b;
    double final_loss; /* training objective after the last iteration */
};

/* Featurizes n texts into rows (owned by the caller: sl_lr_rows_free). */
int sl_lr_featurize(struct sl_lr_rows *X, const char *const *texts, size_t n,
                    const struct sl_lr_params *p, struct sl_err *err);
void sl_lr_rows_free(struct sl_lr_rows *X);

/* Trains on the rows listed in use[0..n_use) of X with labels y (indexed
 * by row, 0/1). m is overwritten; free with sl_lr_free. */
int sl_lr_train(struct sl_lr *m, const struct sl_lr_rows *X, const uint8_t *y, const size_t *use,
                size_t n_use, const struct sl_lr_params *p, struct sl_err *err);
void sl_lr_free(struct sl_lr *m);

/* P(y = 1) for row r of X. */
double sl_lr_predict(const struct sl_lr *m, const struct sl_lr_rows *X, size_t r);

#endif
