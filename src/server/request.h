/*
 * request.h - OpenAI request bodies (JSON) -> validated parameters (server
 * layer). Outside input: every field is type- and range-checked here, and
 * an error names the offending parameter, so the route can answer 400 with
 * {"error": {"message", "type": "invalid_request_error", "param"}}.
 *
 * Unknown fields are ignored (clients send many); known fields of the wrong
 * type are errors. Fuzzed by tests/fuzz/fuzz_request.c.
 */
#ifndef SL_REQUEST_H
#define SL_REQUEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/err.h"
#include "../engine/chat.h"

#define SL_REQ_MAX_MESSAGES 4096
#define SL_REQ_MAX_STOP 4      /* as OpenAI */
#define SL_REQ_MAX_PROMPTS 256 /* prompts (completions) or inputs (embeddings) */
#define SL_REQ_MAX_TOKEN_IDS (1 << 20)
#define SL_REQ_MAX_TOP_LOGPROBS 20

enum sl_req_kind {
    SL_REQ_CHAT,
    SL_REQ_COMPLETION,
    SL_REQ_EMBEDDING,
    SL_REQ_CLASSIFY,
    SL_REQ_EXTRACT
};

#define SL_REQ_MAX_LABELS 1024

/* The prompt shape of an ad-hoc task ("prompt_mode"); values as enum sl_prompt_mode. */
enum sl_req_prompt_mode {
    SL_REQ_MODE_AUTO = 0,
    SL_REQ_MODE_CHAT,
    SL_REQ_MODE_PLAIN,
    SL_REQ_MODE_RAW
};

/* One prompt or embedding input: text, or token ids given directly. */
struct sl_req_prompt {
    const char *text; /* borrowed from the JSON tree, or NULL */
    size_t text_len;
    int32_t *ids; /* owned, or NULL */
    size_t n_ids;
};

struct sl_req_limits {
    int64_t max_n;      /* n x prompts */
    int64_t max_inputs; /* prompts / embedding inputs */
    /* optional: is this model name a route? A classify/extract request to a
     * route may leave out task, labels and schema (the route's task applies) */
    bool (*is_route)(void *user, const char *model);
    void *user;
};

struct sl_req {
    enum sl_req_kind kind;
    json_t *root;      /* owned; the strings below point into it */
    const char *model; /* required */

    struct sl_chat_msg *msgs; /* (n_msgs) chat */
    size_t n_msgs;
    char **owned; /* message texts assembled from content parts */
    size_t n_owned;

    struct sl_req_prompt *prompts; /* (n_prompts) completions / embeddings */
    size_t n_prompts;

    int64_t max_tokens; /* -1 = not given */
    double temperature; /* default 1 */
    double top_p;       /* default 1 */
    double presence_penalty, frequency_penalty;
    bool has_seed;
    uint64_t seed;
    int32_t n; /* choices per prompt, default 1 */
    const char *stop[SL_REQ_MAX_STOP];
    size_t n_stop;
    bool stream, include_usage;
    bool logprobs;        /* chat: logprobs; completions: logprobs given */
    int32_t top_logprobs; /* alternatives per token */
    bool echo;            /* completions */
    bool ignore_eos; /* extension (as llama.cpp's server): generate past end-of-generation tokens */
    bool base64;     /* embeddings encoding_format */

    /* chat response_format: json_schema (schema borrowed from root) or json_object */
    const json_t *response_schema;
    bool json_object;

    /* classify / extract: "task", or an ad-hoc task ("model" + "labels" or
     * "schema"); the inputs are prompts[] (text only). Completions: "task"
     * may name a generate task (then "model" is optional). */
    const char *task;         /* configured task name, or NULL */
    const char *instruction;  /* ad hoc, or NULL */
    const char **labels;      /* (n_labels) classify, ad hoc */
    const char **label_descs; /* (n_labels) entries may be NULL */
    size_t n_labels;
    const json_t *schema; /* extract, ad hoc; borrowed from root */
    int prompt_mode;      /* enum sl_req_prompt_mode */

    char param[64]; /* on error: the parameter at fault ("" = the body) */
};

/* Parse body[0..len) for kind. For classify/extract/completions "model"
 * is optional when "task" is given (r->model is then NULL), and "labels"/"schema" may not come with
 * "task". Returns 0, or SL_EINVAL/SL_EFORMAT/SL_ERANGE with err set and r->param naming the field;
 * SL_ENOMEM. Free r with sl_req_free in every case. */
int sl_req_parse(struct sl_req *r, enum sl_req_kind kind, const char *body, size_t len,
                 const struct sl_req_limits *lim, struct sl_err *err);
void sl_req_free(struct sl_req *r);

#endif
