/*
 * replay.h - evaluate routers from recorded answers, the way router
 * benchmarks (RouteLLM) do (eval layer).
 *
 * Each example carries whether the small ("weak") and the large ("strong")
 * tier answered it correctly. A router gives every example a score (higher
 * = send to the large tier); sending the top fraction c of scores to the
 * large tier gives quality q(c). From it:
 *
 *   PGR(c)   = (q(c) - q_small) / (q_large - q_small)   performance gap recovered
 *   APGR     = integral of PGR(c) dc over c in [0, 1]   (trapezoids)
 *   CPT(x)   = smallest c with PGR(c) >= x              call-performance threshold
 *   saving95 = 1 - smallest c with q(c) >= 0.95 q_large  (cost saving against
 *              sending everything to the large tier, small tier's cost ~ 0)
 *
 * The curve has a point at every boundary between groups of equal scores,
 * and is linear in between: a threshold cannot split ties, and the straight
 * line is the expected quality when ties are broken at random. A random
 * router is the straight line from (0, q_small) to (1, q_large): APGR 0.5,
 * CPT(x) = x. RouteLLM's own script samples the curve at 10 score quantiles;
 * apgr_q10 reproduces that sampling so the two can be compared.
 */
#ifndef SL_EVAL_REPLAY_H
#define SL_EVAL_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define SL_REPLAY_MAX_ROWS ((size_t)1 << 22)       /* examples over all files */
#define SL_REPLAY_MAX_FILE_BYTES ((size_t)1 << 28) /* one CSV file */
#define SL_REPLAY_MAX_FILES 4096                   /* CSV files in a directory */

struct sl_replay_data {
    size_t n;
    char **prompt;        /* (n) owned, NUL-terminated */
    uint8_t *small_ok;    /* (n) 1 if the small tier answered correctly */
    uint8_t *large_ok;    /* (n) */
    uint32_t *source;     /* (n) index into sources */
    char **sources;       /* (n_sources) owned file names (no directory) */
    size_t n_sources;
    char small_name[128]; /* header of the small tier's column */
    char large_name[128];
    size_t cap;
};

/* Loads one CSV file, or every *.csv file of a directory in name order.
 * Header: prompt, <small tier>, <large tier>[, more columns ignored];
 * correctness cells are True/False (also true/false, 1/0). Every file of a
 * directory must name the same tiers. */
int sl_replay_load(struct sl_replay_data *d, const char *path, struct sl_err *err);
/* Appends the records of one CSV buffer (name used in messages and as the
 * source). d must be zeroed before the first call. */
int sl_replay_load_buf(struct sl_replay_data *d, const char *buf, size_t len, const char *name,
                       struct sl_err *err);
void sl_replay_free(struct sl_replay_data *d);

/* ---- router curves ------------------------------------------------------ */

struct sl_router_point {
    double calls;   /* fraction of requests sent to the large tier */
    double quality; /* fraction answered correctly */
    double pgr;
};

struct sl_router_curve {
    char name[32];
    struct sl_router_point *pts; /* (n_pts) ascending calls, from 0 to 1 */
    size_t n_pts;
    size_t n;
    double q_small, q_large;
    double apgr, apgr_q10;
    double cpt50, cpt80;   /* NaN when q_large <= q_small */
    double calls95;        /* smallest calls with quality >= 0.95 q_large */
    double saving95;       /* 1 - calls95 */
};

/* scores (n): higher = route to the large tier. name is copied. */
int sl_router_curve_compute(struct sl_router_curve *c, const char *name, const double *scores,
                            const uint8_t *small_ok, const uint8_t *large_ok, size_t n,
                            struct sl_err *err);
/* The random router's expected curve: the line between the two tiers. */
int sl_router_curve_random(struct sl_router_curve *c, const uint8_t *small_ok,
                           const uint8_t *large_ok, size_t n, struct sl_err *err);
void sl_router_curve_free(struct sl_router_curve *c);

/* Smallest fraction of large calls at which the piecewise-linear curve
 * reaches quality q; NaN if it never does. */
double sl_router_curve_calls_for(const struct sl_router_curve *c, double q);

/* ---- deterministic helpers ---------------------------------------------- */

/* splitmix64: the next 64-bit value of the stream in *state. */
uint64_t sl_eval_rand(uint64_t *state);
/* Uniform double in [0, 1). */
double sl_eval_randu(uint64_t *state);
/* A Fisher-Yates permutation of 0..n-1 from seed into perm (n). */
void sl_eval_permutation(size_t *perm, size_t n, uint64_t seed);

#endif
