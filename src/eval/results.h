/*
 * results.h - evaluation results (`sluice eval ... --out DIR` writes
 * DIR/results.jsonl) loaded into per-example arrays, joined by id across
 * targets (eval layer).
 *
 * Each line of results.jsonl is one (example, target) pair: a target is
 * "route" (the route as configured) or one tier/backend run alone. The
 * fields read here (docs/eval.md, "results.jsonl"):
 *
 *   id          string or number: the example (required)
 *   target      string (required)
 *   truth, pred string, or any JSON value (kept as its compact JSON text)
 *   confidence  number or null           correct     bool or null
 *   latency_ms, cost, tokens_in, tokens_out, input_len   numbers (a count that
 *               is negative or past 2^53 reads as -1, unknown)
 *   escalated   bool                     decision, backend, error   string or null
 *   meta        object: value strings (other values as compact JSON)
 *
 * Unknown fields are ignored, so the format can grow. Examples keep the
 * order in which their id first appears; targets the order in which they
 * first appear. A (example, target) pair that is absent has present = false.
 * Not thread-safe while loading; read-only afterwards.
 */
#ifndef SL_EVAL_RESULTS_H
#define SL_EVAL_RESULTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define SL_RESULTS_MAX_FILE ((size_t)1 << 30) /* bytes of one results file */
#define SL_RESULTS_MAX_TARGETS 64
#define SL_RESULTS_MAX_META_KEYS 64 /* distinct meta keys over the file */

/* One (example, target) result. */
struct sl_result_cell {
    bool present;
    int8_t correct;    /* 1, 0, or -1 when unknown (null or absent) */
    bool escalated;
    double confidence; /* NaN when null or absent */
    double latency_ms, cost; /* NaN when absent */
    int64_t tokens_in, tokens_out; /* 0 when absent, -1 when not a count */
    char *pred;        /* owned, NULL when absent */
    char *decision;    /* owned, NULL when absent */
    char *backend;     /* owned, NULL when absent */
    char *error;       /* owned, NULL = no error */
};

struct sl_results {
    size_t n;               /* examples */
    char **id;              /* (n) owned: the id as text */
    char **truth;           /* (n) owned, NULL when no line gave one */
    int64_t *input_len;     /* (n) -1 when unknown */
    size_t n_targets;
    char **targets;         /* (n_targets) owned */
    size_t n_meta;
    char **meta_keys;       /* (n_meta) owned */
    char **meta;            /* (n * n_meta) owned: meta[i * n_meta + k], NULL = absent */
    struct sl_result_cell *cell; /* (n * n_targets): cell[i * n_targets + t] */
    size_t cap, meta_cap;   /* internal */
};

/* Loads a results.jsonl file. Errors name the line: SL_EIO, SL_EFORMAT
 * (not JSON, no id/target, a field of the wrong type, the same (id,
 * target) twice), SL_ERANGE (too many targets or meta keys), SL_ENOMEM. */
int sl_results_load(struct sl_results *r, const char *path, struct sl_err *err);
/* The same from a buffer; name is used in messages. r is overwritten. */
int sl_results_load_buf(struct sl_results *r, const char *buf, size_t len, const char *name,
                        struct sl_err *err);
void sl_results_free(struct sl_results *r);

/* Index of a target, or -1. */
int sl_results_target(const struct sl_results *r, const char *name);
/* Index of a meta key, or -1. */
int sl_results_meta_key(const struct sl_results *r, const char *key);
/* The cell of example i, target t (t from sl_results_target). */
const struct sl_result_cell *sl_results_cell(const struct sl_results *r, size_t i, int t);
/* Meta value of example i for key index k (NULL = absent or k < 0). */
const char *sl_results_meta(const struct sl_results *r, size_t i, int k);

#endif
