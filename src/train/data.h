/*
 * data.h - training data: a deterministic RNG, labelled examples read from
 * CSV or JSONL, text corpora, and train/validation splits (train layer).
 *
 * Labelled files:
 *   CSV   a header row naming the columns; text and label columns are found
 *         by name (RFC 4180 quoting, src/eval/csv.h);
 *   JSONL one JSON object per line, e.g. {"text": "...", "label": "..."} or
 *         {"prompt": "...", "completion": "..."}.
 * The field names are given (text_field, label_field); when NULL, the
 * first present of "text"/"prompt"/"input" and "label"/"category"/
 * "intent"/"completion"/"output" is used.
 *
 * Limits: SL_DATA_MAX_EXAMPLES examples, SL_DATA_MAX_FILE bytes per file.
 */
#ifndef SL_TRAIN_DATA_H
#define SL_TRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/fnv.h" /* sl_fnv1a: cache keys of these files */

#define SL_DATA_MAX_EXAMPLES 10000000
#define SL_DATA_MAX_FILE ((size_t)1 << 31) /* 2 GiB */
#define SL_DATA_MAX_LABELS 65536

/* ---- RNG: splitmix64, identical on every machine ---- */

struct sl_rng {
    uint64_t s;
};

void sl_rng_seed(struct sl_rng *r, uint64_t seed);
uint64_t sl_rng_u64(struct sl_rng *r);
/* Uniform in [0, 1) with 24 random bits. */
float sl_rng_uniform(struct sl_rng *r);
/* Standard normal (Box-Muller in double). */
float sl_rng_normal(struct sl_rng *r);
/* Uniform integer in [0, n), n > 0. */
uint32_t sl_rng_below(struct sl_rng *r, uint32_t n);
/* Fisher-Yates shuffle of idx[0..n). */
void sl_rng_shuffle(struct sl_rng *r, int32_t *idx, size_t n);

/* ---- labelled examples ---- */

struct sl_examples {
    size_t n;
    char **text;       /* (n) NUL-terminated, owned */
    int32_t *label;    /* (n) index into labels */
    size_t n_labels;
    char **labels;     /* (n_labels) distinct labels, sorted by strcmp, owned */
};

/* Read a CSV (by extension .csv, or a first line with a comma and no '{')
 * or JSONL file. When `labels` is non-NULL the label set is fixed (an
 * unknown label is SL_EFORMAT naming the line); else it is the sorted set of
 * labels seen. Caller frees with sl_examples_free. */
int sl_examples_read(struct sl_examples *out, const char *path, const char *text_field,
                     const char *label_field, const char *const *labels, size_t n_labels,
                     struct sl_err *err);
void sl_examples_free(struct sl_examples *e);

/* Split [0, n) into validation and training index lists by a seeded
 * shuffle: n_val = round(n * val_frac) (at least 1 when val_frac > 0 and
 * n >= 2). Both are malloc'd, in shuffled order (caller frees). */
int sl_split(size_t n, double val_frac, uint64_t seed, int32_t **train, size_t *n_train,
             int32_t **val, size_t *n_val, struct sl_err *err);

/* Whole file into a NUL-terminated malloc'd buffer (limit SL_DATA_MAX_FILE). */
int sl_read_file(const char *path, char **out, size_t *len, struct sl_err *err);


#endif
