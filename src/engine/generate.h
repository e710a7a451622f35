/*
 * generate.h - prompt in, text out: the decode loop over one sequence
 * (engine layer). Used by `sluice run` and, later, the server's slots.
 *
 * The prompt is evaluated in batches of the context's n_batch, then one
 * token at a time: sample, stop on an end-of-generation token, a stop
 * string or the token limit. Text is released to the callback as it
 * becomes final: text that might be the start of a stop string, or an
 * incomplete UTF-8 sequence, is held back until it is decided.
 */
#ifndef SL_GENERATE_H
#define SL_GENERATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "forward.h"
#include "sampler.h"
#include "vocab.h"

enum sl_finish {
    SL_FINISH_LENGTH, /* hit n_predict or the context size */
    SL_FINISH_STOP,   /* a stop string or an end-of-generation token */
    SL_FINISH_CANCEL, /* the callback asked to stop */
};

struct sl_gen_params {
    int32_t n_predict;                 /* most tokens to generate (> 0) */
    struct sl_sampler_params sampling;
    const char *const *stop;           /* stop strings (not included in the text) */
    size_t n_stop;
    bool ignore_eog;                   /* keep going past end-of-generation tokens */
    int32_t seq;                       /* sequence id in the context's KV cache */
};

struct sl_gen_params sl_gen_default_params(void);

/* Called once per generated token with the text that token released
 * (possibly empty), and once more with s == NULL to flush held-back text
 * when generation ends by length. Return non-zero to stop. */
typedef int (*sl_gen_cb)(void *user, const struct sl_sample *s, const char *text, size_t len);

struct sl_gen_result {
    enum sl_finish finish;
    int32_t n_prompt;
    int32_t n_gen;
    char *text;       /* all released text, NUL-terminated (owned) */
    size_t len;
    int32_t *tokens;  /* (n_gen) generated ids (owned) */
    double t_prompt_ms;
    double t_gen_ms;
};

/* Generate after prompt[0..n) on p->seq, which is cleared first. cb may be
 * NULL. On success fills *res (free it with sl_gen_result_free). */
int sl_generate(struct sl_ctx *ctx, const struct sl_vocab *vocab, const int32_t *prompt, size_t n,
                const struct sl_gen_params *p, sl_gen_cb cb, void *user, struct sl_gen_result *res,
                struct sl_err *err);

void sl_gen_result_free(struct sl_gen_result *r);

/* Length of the longest prefix of s[0..n) that ends on a UTF-8 boundary:
 * how much streamed text can be released without splitting a character. */
size_t sl_utf8_complete(const char *s, size_t n);

#endif
