/*
 * train.h - what every kind of training shares: the progress report handed
 * to a front-end callback (train layer).
 */
#ifndef SL_TRAIN_H
#define SL_TRAIN_H

#include <stdint.h>

struct sl_train_progress {
    const char *phase;  /* "embed", "train", "eval" */
    int64_t done, total; /* steps (or examples while embedding) */
    double loss;         /* last training loss (mean per example/token) */
    double val_loss;     /* last validation loss, NAN before the first */
    double val_acc;      /* last validation accuracy (head), NAN otherwise */
    double items_per_s;  /* examples/s (head, embed) or tokens/s (lm, lora) */
    float lr;
};

/* Called from the training thread; may be NULL. */
typedef void (*sl_train_progress_fn)(void *user, const struct sl_train_progress *p);

#endif
