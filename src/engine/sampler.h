/*
 * sampler.h - pick the next token from a logits vector (engine layer).
 *
 * A sampler is a chain of stages over a candidate array of (token, logit):
 *
 *   penalties -> [inserted stages] -> top_k -> top_p -> min_p -> temperature -> draw
 *
 * the same order as llama.cpp's default chain, so a given set of parameters
 * filters the same tokens. With temp <= 0 the chain is penalties -> [inserted
 * stages] -> argmax. Each stage sits behind struct sl_sampler_i, so another
 * module (a grammar, a logit bias) can add a stage without touching this one.
 *
 * Randomness comes from our own xoshiro256** generator seeded with
 * splitmix64(seed): the same seed and logits give the same tokens on every
 * machine. Ties between equal logits always go to the lower token id.
 *
 * Confidence: each sample also reports the chosen token's log-probability
 * under the model's RAW distribution, log_softmax(logits) of the logits as
 * the model produced them (before penalties, filters and temperature), and
 * the top n_probs alternatives by that same raw log-probability. This is what
 * the router reads as the model's confidence: it does not change when the
 * caller changes sampling settings, and exp() of the raw log-probabilities
 * over the whole vocabulary sums to 1. See docs/internals/sampler.md.
 *
 * Memory: sl_sampler_init allocates everything; sl_sampler_sample,
 * sl_sampler_accept and sl_sampler_reset never allocate.
 * Threads: a sampler is used by one thread at a time.
 *
 * Dimension letters: V = n_vocab (size of the logits vector).
 */
#ifndef SL_SAMPLER_H
#define SL_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/err.h"

/* ------------------------------------------------------------------------ */
/* Parameters                                                                */
/* ------------------------------------------------------------------------ */

#define SL_SAMPLER_MAX_PROBS 20          /* most alternatives a sample reports */
#define SL_SAMPLER_MAX_LAST_N (1 << 20)  /* longest penalty window */
#define SL_SAMPLER_MAX_STAGES 16         /* built-in plus inserted stages */
#define SL_SAMPLER_DEFAULT_SEED 42u

struct sl_sampler_params {
    float temp;              /* temperature; <= 0 means greedy (argmax) */
    int32_t top_k;           /* keep the k most likely tokens; <= 0 means off */
    float top_p;             /* nucleus: smallest set with mass >= top_p; 1 means off */
    float min_p;             /* keep p >= min_p * p_max; 0 means off */
    float repeat_penalty;    /* llama.cpp rule: logit > 0 divided, <= 0 multiplied; 1 off */
    float presence_penalty;  /* subtracted once if the token is in the window; 0 off */
    float frequency_penalty; /* subtracted per occurrence in the window; 0 off */
    int32_t repeat_last_n;   /* penalty window: last N accepted tokens; 0 off */
    uint64_t seed;           /* RNG seed; equal seeds give equal tokens */
    int32_t n_probs;         /* alternatives to report, 0..SL_SAMPLER_MAX_PROBS */
};

/* temp 0.8, top_k 40, top_p 0.95, min_p 0.05, repeat_penalty 1.0 (off),
   presence/frequency 0, repeat_last_n 64, seed SL_SAMPLER_DEFAULT_SEED, n_probs 0. */
struct sl_sampler_params sl_sampler_default_params(void);

/* ------------------------------------------------------------------------ */
/* Candidates and stages                                                     */
/* ------------------------------------------------------------------------ */

struct sl_token_data {
    int32_t id;
    float logit;
    float p; /* scratch for stages (probabilities); valid only where a stage says so */
};

/*
 * The candidate array the stages work on. Before the first stage it holds
 * all V tokens in id order with the raw logits.
 *
 * Invariants a stage must keep: data[0..sorted) are the `sorted` best
 * candidates in order (logit descending, then id ascending). A stage that
 * changes logits must set sorted = 0 unless it knows the order holds. A
 * stage removes candidates by compacting data and lowering size (or by
 * setting a logit to -INFINITY). Logits must never become NaN or +inf.
 */
struct sl_token_array {
    struct sl_token_data *data; /* (size) */
    size_t size;
    size_t sorted;
    int32_t selected; /* -1; a stage may set a token id to choose it outright */
};

/* Make data[0..m) the m best candidates in order (m clipped to size). No allocation. */
void sl_token_array_sort_prefix(struct sl_token_array *cur, size_t m);

/*
 * One stage of the chain. ctx is the stage's own state.
 */
struct sl_sampler_i {
    const char *name; /* required: short name for logs ("top_k") */
    /* required: filter or modify cur. Returns 0 or an SL_E* code with err set. */
    int (*apply)(void *ctx, struct sl_token_array *cur, struct sl_err *err);
    /* optional: NULL means the stage keeps no history. Called with every
       accepted token (prompt and generated) in order. */
    void (*accept)(void *ctx, int32_t token);
    /* optional: NULL means nothing to reset. Back to the state after init. */
    void (*reset)(void *ctx);
    /* optional: NULL means ctx needs no freeing. Called by sl_sampler_free. */
    void (*free)(void *ctx);
};

struct sl_sampler_stage {
    const struct sl_sampler_i *iface;
    void *ctx;
};

/* ------------------------------------------------------------------------ */
/* The sampler                                                               */
/* ------------------------------------------------------------------------ */

struct sl_sampler;

struct sl_token_logprob {
    int32_t token;
    float logprob; /* raw: log_softmax of the unmodified logits */
};

struct sl_sample {
    int32_t token;   /* the chosen token */
    float logprob;   /* its raw log-probability (<= 0) */
    int32_t n_probs; /* entries in top[] = min(params.n_probs, V) */
    struct sl_token_logprob top[SL_SAMPLER_MAX_PROBS]; /* by raw logprob desc, ties by id asc */
};

/*
 * Create a sampler for a vocabulary of n_vocab tokens. Validates p (the
 * message names the bad field) and allocates all working memory.
 * Returns 0, SL_EINVAL or SL_ENOMEM. On error *out is NULL.
 */
int sl_sampler_init(const struct sl_sampler_params *p, int32_t n_vocab, struct sl_sampler **out,
                    struct sl_err *err);

/* Frees the sampler and every inserted stage (through its iface->free). NULL is fine. */
void sl_sampler_free(struct sl_sampler *s);

#define SL_SAMPLER_POS_FIRST 0
#define SL_SAMPLER_POS_AFTER_PENALTIES ((size_t)-2) /* where a grammar stage goes */
#define SL_SAMPLER_POS_LAST ((size_t)-1)            /* just before the draw */

/*
 * Insert a stage at index pos of the chain (0 = first; one of the
 * SL_SAMPLER_POS_* values, or an index up to sl_sampler_n_stages()).
 * Takes ownership of stage.ctx on success: sl_sampler_free calls
 * stage.iface->free. On error the caller still owns it. Call at setup, not
 * between sample and accept. Returns 0, SL_EINVAL or SL_ERANGE (chain full).
 */
int sl_sampler_insert(struct sl_sampler *s, size_t pos, struct sl_sampler_stage stage,
                      struct sl_err *err);

/* Number of stages (the final draw is not a stage). */
size_t sl_sampler_n_stages(const struct sl_sampler *s);

/* "penalties -> top_k -> top_p -> min_p -> temp -> dist" into buf (truncated); returns buf. */
const char *sl_sampler_describe(const struct sl_sampler *s, char *buf, size_t size);

/*
 * Choose the next token from logits (V floats, not modified). Runs the
 * chain and fills *out. Does not record the token: call sl_sampler_accept
 * with the token you keep. No allocation.
 * Errors: SL_EINVAL if a logit is NaN or +inf (names the token), or if the
 * stages left no token with non-zero probability; a stage's own error.
 */
int sl_sampler_sample(struct sl_sampler *s, const float *logits, struct sl_sample *out,
                      struct sl_err *err);

/*
 * Record an accepted token (prompt tokens too, if they should count for the
 * repetition penalty) in the penalty window and every stage.
 * Returns 0 or SL_ERANGE for a token outside [0, V).
 */
int sl_sampler_accept(struct sl_sampler *s, int32_t token);

/* Forget the history and re-seed the RNG: the sampler then repeats its tokens. */
void sl_sampler_reset(struct sl_sampler *s);

/*
 * log_softmax(logits)[token] over n logits, computed as the sampler does
 * (double accumulation). For callers scoring given text (eval, perplexity).
 */
float sl_logprob_raw(const float *logits, int32_t n, int32_t token);

/* ------------------------------------------------------------------------ */
/* Stop strings                                                              */
/* ------------------------------------------------------------------------ */

/*
 * Streaming stop-string matching. The caller keeps all generated text so
 * far in one buffer (it needs it for the final response anyway), appends
 * each new piece, and asks where it is safe to release text to the client:
 *
 *   struct sl_stop st;  sl_stop_init(&st, stops, n, &err);
 *   size_t sent = 0, checked = 0, safe;
 *   for each piece:  append piece to text (len grows)
 *       state = sl_stop_scan(&st, text, len, checked, &safe);  checked = len;
 *       emit text[sent..safe);  sent = safe;
 *       if (state == SL_STOP_MATCH) { final text is text[0..safe); stop }
 *
 * A match may span any number of pieces. Because text that could still
 * turn into a stop string is held back (SL_STOP_PARTIAL), safe never falls
 * below what was already released. Stops are byte strings; the caller still
 * holds back incomplete UTF-8 sequences itself.
 */
#define SL_STOP_MAX_STRINGS 16
#define SL_STOP_MAX_LEN 256 /* bytes in one stop string */

struct sl_stop {
    char *buf;                             /* owned copies, NUL-separated */
    const char *strs[SL_STOP_MAX_STRINGS]; /* into buf */
    size_t lens[SL_STOP_MAX_STRINGS];
    size_t n;
    size_t max_len;
};

enum sl_stop_state {
    SL_STOP_NONE = 0,    /* no stop string here; safe = len */
    SL_STOP_PARTIAL = 1, /* the text ends with the start of a stop string; safe = where */
    SL_STOP_MATCH = 2,   /* a stop string occurs; safe = where the earliest one begins */
};

/*
 * Copy the n stop strings (empty ones are skipped). Returns 0, SL_EINVAL
 * (too many, or longer than SL_STOP_MAX_LEN: the message says which) or
 * SL_ENOMEM. n = 0 is fine: nothing ever matches.
 */
int sl_stop_init(struct sl_stop *m, const char *const *strs, size_t n, struct sl_err *err);
void sl_stop_free(struct sl_stop *m);

/*
 * text[0..len) is all generated text; text[0..from) was scanned by an
 * earlier call (pass 0 the first time, then the previous len). Sets *safe
 * to how many bytes of text may be released. No allocation.
 */
enum sl_stop_state sl_stop_scan(const struct sl_stop *m, const char *text, size_t len,
                                size_t from, size_t *safe);

#endif
