/*
 * extract.h - extraction: JSON output constrained by a JSON Schema, with
 * confidence per field (tasks layer).
 *
 * The schema is compiled to a grammar at init (schema.h: an unsupported
 * keyword fails there, not at run time); every call renders the task and
 * the input into a prompt, then generates on sequence 0 with the grammar
 * as a sampler stage, so the output parses and validates by construction.
 * It stops when the grammar is complete and can take no more bytes, or on
 * an end-of-generation token once it is complete.
 *
 * Confidence: each generated token's probability among the tokens the
 * grammar allowed at that step (the model's distribution renormalised over
 * the valid continuations, so forced punctuation costs nothing). A field is
 * a leaf value (string, number, boolean, null) named by its JSON pointer;
 * its confidence is the minimum and mean probability of the tokens that
 * overlap its bytes. The whole answer gets the same over all tokens.
 *
 * Threads: an extractor owns sequence 0 of its context (it clears the
 * others' cells only through sl_kv_seq_rm of seq 0) and is used by one
 * thread at a time.
 */
#ifndef SL_EXTRACT_H
#define SL_EXTRACT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/err.h"
#include "engine/forward.h"
#include "engine/sampler.h"
#include "tasks/classify.h"
#include "tasks/schema.h"

struct sl_extract_task {
    const char *instruction;     /* NULL: a default one */
    const json_t *schema;        /* borrowed for init */
    struct sl_schema_opts opts;
    enum sl_prompt_mode mode;    /* AUTO, CHAT, PLAIN or RAW (instruction + input) */
    int chat_family;             /* 0 = detect */
    int32_t max_tokens;          /* generation budget (> 0) */
    struct sl_sampler_params sampling; /* default: greedy */
};

struct sl_extract_task sl_extract_default_task(void);

struct sl_extract_field {
    char *path;     /* JSON pointer, e.g. "/items/0/name" */
    size_t start, end; /* bytes of the value in output */
    float p_min, p_mean;
    int32_t n_tokens;
};

struct sl_extract_result {
    char *output;   /* the JSON text, NUL-terminated */
    size_t len;
    struct sl_extract_field *fields;
    size_t n_fields;
    float p_min, p_mean; /* over every generated token */
    int32_t n_prompt, n_gen;
};

void sl_extract_result_free(struct sl_extract_result *r);

struct sl_extractor;

/* Compile the task's schema (errors as sl_schema_to_grammar) and keep
 * ctx (borrowed). */
int sl_extractor_init(struct sl_extractor **out, struct sl_ctx *ctx,
                      const struct sl_extract_task *task, struct sl_err *err);
void sl_extractor_free(struct sl_extractor *x);

/* The grammar text the schema compiled to (valid while x lives). */
const char *sl_extractor_grammar(const struct sl_extractor *x);

/* Extract from one input. Errors: SL_ERANGE when the answer did not finish
 * within max_tokens or the prompt does not fit; decode and sampler errors. */
int sl_extract(struct sl_extractor *x, const char *input, struct sl_extract_result *res,
               struct sl_err *err);

#endif
