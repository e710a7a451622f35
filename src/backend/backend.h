/*
 * backend.h - the model backend boundary (backend layer).
 *
 * A backend answers OpenAI-style chat requests: the local engine
 * (local.c, later) or any OpenAI-compatible HTTP API (http.c). The router
 * holds backends as { iface, ctx } pairs and never looks inside ctx.
 *
 *   struct sl_backend b;               // from sl_backend_http_new(...)
 *   struct sl_backend_resp r;
 *   if (b.iface->complete(b.ctx, &req, &r, &err) == 0) use(r.content);
 *   sl_backend_resp_free(&r);
 *
 * Errors: 0 or a negative SL_E* code with the detail in err; resp->status
 * says what kind of failure it was (timeout, HTTP status, breaker open...),
 * which is what the router's fallback decisions read.
 */
#ifndef SL_BACKEND_H
#define SL_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "engine/chat.h"

/* ------------------------------------------------------------------ request */

/* struct sl_chat_msg {role, content}: one message, as the engine's chat
 * templates take it (engine/chat.h), so a server request's messages pass
 * to a backend unchanged. */

#define SL_BACKEND_MAX_STOP 4

/* A chat/completions request. Borrowed by the call: nothing is kept after it
 * returns. Numbers < 0 mean "not set" (the upstream's default applies). */
struct sl_backend_req {
    const struct sl_chat_msg *msgs;
    size_t n_msgs;
    int max_tokens;                        /* -1: not set */
    double temperature;                    /* < 0: not set */
    double top_p;                          /* < 0: not set */
    long long seed;                        /* < 0: not set */
    bool logprobs;                         /* ask for the chosen tokens' log-probabilities */
    int top_logprobs;                      /* alternatives per token (0..20) when logprobs */
    const char *stop[SL_BACKEND_MAX_STOP]; /* NULL-terminated if fewer */
    const char *user;                      /* optional: the end user's id, passed through */
    /* optional: asked while the call waits (remote: at least about once a
     * second; local: every 100 ms); non-zero gives the call up
     * (SL_BACKEND_ABORTED, not retried): the client went away, and a tier
     * should not go on generating, or a paid API on billing, for nobody */
    int (*should_stop)(void *stop_user);
    void *stop_user;
};

/* Fills a request with every optional number "not set". */
void sl_backend_req_init(struct sl_backend_req *req);

/* ----------------------------------------------------------------- response */

/* What happened, finer than the return code. */
enum sl_backend_status {
    SL_BACKEND_OK = 0,
    SL_BACKEND_CONNECT,      /* could not connect / connection lost before a reply */
    SL_BACKEND_TIMEOUT,      /* connect or total timeout */
    SL_BACKEND_HTTP,         /* upstream answered with a non-2xx status (http_status) */
    SL_BACKEND_MALFORMED,    /* 2xx but the body is not the JSON we expect */
    SL_BACKEND_BREAKER_OPEN, /* not tried: the circuit breaker is open */
    SL_BACKEND_ABORTED,      /* the stream callback or the request's should_stop asked to stop */
    SL_BACKEND_STREAM_CUT,   /* stream ended without [DONE] after chunks were delivered */
};

const char *sl_backend_status_name(enum sl_backend_status s);

/* One generated token's log-probability, with its top alternatives. */
#define SL_BACKEND_MAX_TOP 20
struct sl_backend_logprob {
    char *token; /* owned */
    double logprob;
    int n_top;
    struct {
        char *token; /* owned */
        double logprob;
    } top[SL_BACKEND_MAX_TOP];
};

/* Owned by the caller after a call (even a failed one): free it with
 * sl_backend_resp_free. Strings are NUL-terminated and malloc'd. */
struct sl_backend_resp {
    enum sl_backend_status status;
    int http_status;                     /* last HTTP status seen, 0 if none */
    int attempts;                        /* requests sent (1 + retries) */
    char *id;                            /* upstream response id, may be NULL */
    char *model;                         /* model name the upstream reports, may be NULL */
    char *content;                       /* assistant text ("" if none) */
    char *finish_reason;                 /* "stop", "length", ... may be NULL */
    long long tokens_in;                 /* usage.prompt_tokens, -1 if not reported */
    long long tokens_out;                /* usage.completion_tokens, -1 if not reported */
    struct sl_backend_logprob *logprobs; /* NULL unless asked and returned */
    size_t n_logprobs;
    double latency_ms;    /* wall time of the whole call incl. retries */
    double first_byte_ms; /* time to the first byte of the answer */
    double machine_ms;    /* local backends: engine time the call used (infra cost); 0 remote */
    double confidence;    /* exp(mean token logprob) when logprobs came back; < 0 none */
};

void sl_backend_resp_free(struct sl_backend_resp *r);

/* -------------------------------------------------------------------- tasks */

struct sl_task_config; /* config/config.h */

/* A classify or extract task on one input. The task (labels, instruction,
 * schema) is the configured one; a remote backend renders it as a chat
 * prompt (task_api chat) or forwards it to a sluice server's task endpoint
 * (task_api sluice). */
struct sl_backend_task_req {
    const struct sl_task_config *task;
    const char *input;
    int (*should_stop)(void *stop_user); /* optional, as in struct sl_backend_req */
    void *stop_user;
};

/* Owned after a call, even a failed one: free with sl_backend_task_resp_free. */
struct sl_backend_task_resp {
    enum sl_backend_status status;
    int http_status;
    int attempts;
    int32_t label;      /* classify: index into task->labels; -1 = the answer matched none */
    double confidence;  /* calibrated probability of the answer; < 0 = none reported */
    float *probs;       /* classify: (n_probs) per label, or NULL */
    size_t n_probs;
    char *json;         /* extract: the object as JSON text */
    char *content;      /* the raw answer text (classify: the label) */
    char *model;        /* model that answered */
    long long tokens_in, tokens_out; /* -1 if not reported */
    double latency_ms;
    double machine_ms; /* local: engine time used */
};

void sl_backend_task_resp_free(struct sl_backend_task_resp *r);

/* ------------------------------------------------------------------ stream */

/* One server-sent event of a streamed answer, a view valid only during the
 * callback. `data` is the event's raw data (an OpenAI chunk JSON object,
 * forwarded as is for pass-through); `delta` is the content text it adds
 * (may be empty). The callback returns 0 to go on, non-zero to abort. */
struct sl_backend_chunk {
    const char *data;
    size_t len;
    const char *delta;
    size_t delta_len;
};

typedef int (*sl_backend_chunk_fn)(void *user, const struct sl_backend_chunk *chunk);

/* ----------------------------------------------------------------- the vtable */

struct sl_backend_i {
    const char *kind; /* "openai", "local" */

    /* Required. One chat completion. Thread-safe: several threads may call
     * it on one ctx at once. resp is always filled (free it). */
    int (*complete)(void *ctx, const struct sl_backend_req *req, struct sl_backend_resp *resp,
                    struct sl_err *err);

    /* Optional: NULL means the backend cannot stream (the caller falls back
     * to complete and sends one chunk). Calls fn for each chunk as it
     * arrives; resp gets content (the concatenated deltas), usage when the
     * upstream sends it, and the status. Retries happen only before the
     * first chunk reached fn; once a chunk was delivered a failure is
     * returned as is (SL_BACKEND_STREAM_CUT). If it fails before any chunk,
     * fn never runs. */
    int (*stream)(void *ctx, const struct sl_backend_req *req, sl_backend_chunk_fn fn, void *user,
                  struct sl_backend_resp *resp, struct sl_err *err);

    /* Optional: NULL means no embeddings. Embeds n texts; on success *out is
     * a malloc'd n × *dim array (row-major) the caller frees. */
    int (*embed)(void *ctx, const char *const *texts, size_t n, float **out, int *dim,
                 struct sl_err *err);

    /* Optional: NULL means no classify/extract tasks. Thread-safe. */
    int (*task)(void *ctx, const struct sl_backend_task_req *req,
                struct sl_backend_task_resp *resp, struct sl_err *err);

    /* Required. Frees ctx and everything it owns. No call may be running. */
    void (*free)(void *ctx);
};

struct sl_backend {
    const struct sl_backend_i *iface;
    void *ctx;
};

#endif
