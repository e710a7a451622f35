/*
 * adamw.h - the optimizer side of training: AdamW, learning-rate schedules,
 * gradient clipping and early stopping (train layer).
 *
 * AdamW as in Loshchilov & Hutter (and llm.c's adamw_update): for every
 * parameter p with gradient g at step t (1-based),
 *   m = b1 m + (1-b1) g            v = b2 v + (1-b2) g^2
 *   mh = m / (1-b1^t)              vh = v / (1-b2^t)
 *   p -= lr * (mh / (sqrt(vh) + eps) + wd * p)
 * Weight decay is decoupled (not added to g) and applies only to the groups
 * the caller marks as decayed (matrices, not norms or biases).
 *
 * Parameters are registered as groups of contiguous floats; the optimizer
 * owns its m and v buffers, never the parameters or gradients.
 * Deterministic: the same calls give the same bits. One thread.
 */
#ifndef SL_TRAIN_ADAMW_H
#define SL_TRAIN_ADAMW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define SL_ADAMW_MAX_GROUPS 1024

struct sl_adamw_params {
    float lr;           /* peak learning rate */
    float beta1, beta2; /* 0.9, 0.999 */
    float eps;          /* 1e-8 */
    float weight_decay; /* 0.0 by default; applies to groups added with decay=true */
    float clip_norm;    /* clip gradients to this global L2 norm; 0 = off */
};

struct sl_adamw_params sl_adamw_default_params(void);

/* One group: n parameters p (n) with gradients g (n), moments m, v (n). */
struct sl_adamw_group {
    float *p;
    const float *g;
    float *m, *v;
    size_t n;
    bool decay;
};

struct sl_adamw {
    struct sl_adamw_params params;
    struct sl_adamw_group groups[SL_ADAMW_MAX_GROUPS];
    int n_groups;
    int64_t step; /* updates done so far */
};

void sl_adamw_init(struct sl_adamw *o, const struct sl_adamw_params *p);
/* Register n parameters p with gradients g; allocates the moments (zeroed).
 * p and g must outlive the optimizer. SL_ERANGE past SL_ADAMW_MAX_GROUPS. */
int sl_adamw_add(struct sl_adamw *o, float *p, const float *g, size_t n, bool decay,
                 struct sl_err *err);
/* Frees the moments (not p or g). */
void sl_adamw_free(struct sl_adamw *o);

/* Global L2 norm of every registered gradient (summed in double). */
double sl_adamw_grad_norm(const struct sl_adamw *o);

/* One update at learning rate lr. When clip_norm > 0 and the global norm
 * exceeds it, gradients are scaled by clip_norm / norm inside the update
 * (the gradient buffers are not modified). Returns the norm before clipping. */
double sl_adamw_step(struct sl_adamw *o, float lr);

/* ---- learning-rate schedules ---- */

enum sl_lr_schedule {
    SL_LR_CONSTANT, /* lr after warmup */
    SL_LR_LINEAR,   /* linear decay to min_lr at total */
    SL_LR_COSINE,   /* half-cosine decay to min_lr at total */
};

struct sl_lr_sched {
    enum sl_lr_schedule kind;
    float lr, min_lr;
    int64_t warmup; /* steps of linear warmup from lr/warmup to lr */
    int64_t total;  /* steps in the run */
};

/* Learning rate for step (0-based). */
float sl_lr_at(const struct sl_lr_sched *s, int64_t step);
/* "constant", "linear", "cosine" -> kind; SL_EINVAL otherwise. */
int sl_lr_schedule_parse(const char *name, enum sl_lr_schedule *out);

/* ---- early stopping ---- */

/* Tracks the best validation loss; stop after `patience` evaluations
 * without an improvement larger than min_delta. */
struct sl_early_stop {
    int patience;
    double min_delta;
    double best;    /* best loss so far (INFINITY before the first) */
    int64_t best_at; /* step of the best loss, -1 before the first */
    int bad;        /* evaluations since the best */
};

void sl_early_stop_init(struct sl_early_stop *e, int patience, double min_delta);
/* Record a validation loss at a step. Returns true when it is a new best
 * (the caller saves a snapshot); sets *stop when patience is exhausted
 * (patience <= 0 never stops). */
bool sl_early_stop_update(struct sl_early_stop *e, double loss, int64_t step, bool *stop);

#endif
