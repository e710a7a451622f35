/*
 * router.h - routes: which backend answers a request, and the record of
 * what happened (router layer).
 *
 * A route is a model name clients send (`model: "ticket-triage"`). It has
 * tiers (backends, the small local one first) and a policy:
 *
 *   cascade  call the tiers in order; a tier that is not the last accepts
 *            its answer when the calibrated confidence >= the route's
 *            threshold for the request's task, else the next tier runs
 *   rules    the first matching rule (task, input length, regex, metadata,
 *            API key) names the tier; none matches -> default_tier
 *   predict  a learned router (predict.h) scores P(small tier is wrong)
 *            from the small model's embedding of the input and its length,
 *            before any model runs; above the threshold -> the last tier
 *
 * Around every policy:
 *   privacy   the input is scanned for PII once; per the route's policy a
 *             remote backend gets it as is, redacted (placeholders, restored
 *             in the answer) or not at all (`local-only`: the answer stays
 *             local even when unsure)
 *   fallback  a backend call that fails (connection, timeout, 5xx,
 *             malformed, breaker open) moves on to the route's fallback list
 *             (default: its other tiers)
 *   budget    once a route's API spend today (UTC) reaches budget_per_day,
 *             remote tiers are skipped: the local answer is kept
 *   log       one request row (decision, reason, confidence, stages, cost)
 *             and one ledger entry per backend call, also when every tier
 *             failed: nothing is lost from the log
 *
 * Confidence: classify -> the calibrated probability of the label; extract
 * -> the backend's confidence of the whole object; chat -> exp(mean token
 * log-probability) of the answer (non-last tiers are asked for logprobs);
 * a backend that reports none has confidence -1 (never accepted by a
 * threshold > 0).
 *
 * Costs: a backend with API prices costs tokens_in x input_per_mtok / 1e6 +
 * tokens_out x output_per_mtok / 1e6 (ledger kind "api"); one with
 * infra_per_hour costs machine_ms x infra_per_hour / 3.6e6 ("infra").
 *
 * Threads: sl_router_route may be called from many threads at once.
 */
#ifndef SL_ROUTER_H
#define SL_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "base/err.h"
#include "config/config.h"
#include "store/store.h"

enum sl_route_req_kind {
    SL_RREQ_CHAT = 0,     /* chat/completions */
    SL_RREQ_CLASSIFY = 1, /* a classify task */
    SL_RREQ_EXTRACT = 2,  /* an extract task */
};

struct sl_route_meta {
    const char *key, *value;
};

/* One request. Borrowed for the call. */
struct sl_route_req {
    const char *id;    /* request id for the log and the response (required) */
    const char *route; /* route name (required) */
    enum sl_route_req_kind kind;
    const char *task;                   /* classify/extract: task name (required); chat: may be NULL */
    const char *input;                  /* classify/extract: the input text */
    const struct sl_backend_req *chat;  /* chat: messages and sampling */
    const char *api_key;                /* name of the API key that sent it; NULL = none */
    const struct sl_route_meta *meta;   /* request metadata (rules), may be NULL */
    size_t n_meta;
    const char *force_tier; /* evaluation: run only this backend, no policy */
    bool no_log;            /* evaluation: do not write the request log */
    /* chat streaming: when set, the answer that is kept is delivered through
     * it: a tier whose answer needs no check (the last cascade tier, the
     * tier rules/predict chose) streams chunk by chunk; an accepted earlier
     * tier's answer comes as one chunk. Restoration of redacted PII applies
     * to the chunks. */
    sl_backend_chunk_fn on_chunk;
    void *on_chunk_user;
    /* optional: is the client still there? Asked before each tier and by
     * the backends while a tier runs (struct sl_backend_req should_stop);
     * non-zero gives the request up: no further tier is called and the
     * result is status 499, decision "cancelled" */
    int (*should_stop)(void *stop_user);
    void *stop_user;
};

#define SL_ROUTE_MAX_STAGES 16
#define SL_ROUTE_NAME_MAX 64

/* One backend call (or a tier skipped, with why). */
struct sl_route_stage {
    char backend[SL_ROUTE_NAME_MAX];
    enum sl_backend_status status; /* SL_BACKEND_OK or what failed */
    int http_status;
    bool called;      /* false: skipped (pii, budget, breaker) */
    bool accepted;    /* its answer is the one kept */
    double confidence; /* < 0: none */
    double threshold;  /* the bar it had to clear; < 0: none (last tier, rules) */
    double latency_ms;
    double cost;
    int64_t tokens_in, tokens_out;
    char note[128]; /* "confidence 0.41 < 0.80", "timeout", "pii: local-only", ... */
};

/* What happened. Owned: free with sl_route_result_free. */
struct sl_route_result {
    int status;          /* HTTP status for the client (200; 502 every tier failed; 400/404 bad request) */
    char *error;         /* message when status != 200 */
    const char *decision; /* static: "local" (first tier kept), "escalated", "fallback",
                           * "rules", "predict", "budget", "pii-local", "forced", "failed" */
    char reason[256];     /* why, for people: "confidence 0.41 < 0.80 on small" */
    bool escalated;       /* a tier after the first was called by the policy */
    char backend[SL_ROUTE_NAME_MAX]; /* the backend whose answer is kept ("" if none) */
    char *model;          /* the model that produced it */
    /* the answer */
    char *content;       /* chat text; extract: JSON object text; classify: the label */
    char *finish_reason; /* chat */
    int32_t label;       /* classify: index into the task's labels; -1 none */
    double confidence;   /* of the answer kept; < 0 none */
    float *probs;        /* classify: (n_probs) from the tier kept, may be NULL */
    size_t n_probs;
    int64_t tokens_in, tokens_out; /* of the answer kept */
    /* the record */
    struct sl_route_stage stages[SL_ROUTE_MAX_STAGES];
    size_t n_stages;
    double latency_ms; /* the whole routing */
    double cost;       /* sum over stages */
    size_t pii_spans;  /* PII found in the input */
    const char *pii_action; /* static: "none", "sent", "redacted", "kept-local" */
};

void sl_route_result_free(struct sl_route_result *r);

/* How the router gets its backends. make_backend (optional) is called for
 * every backend of the config first: it returns 0 when it made *out, 1 to
 * let the router make the default (openai: the HTTP backend; local: an
 * error, since only a serving process has local models), or < 0 on error. */
struct sl_router_env {
    int (*make_backend)(void *user, const struct sl_backend_config *bc, struct sl_backend *out,
                        struct sl_err *err);
    void *user;
    struct sl_store *store; /* request log; NULL = no log. Borrowed. */
    /* optional clock for budgets' day boundary (tests); NULL = time() */
    int64_t (*now_ms)(void *clock_ctx);
    void *clock_ctx;
};

struct sl_router;

/* Builds every backend and route of cfg (which must outlive the router):
 * the PII detector, breakers, predict models, today's spend per route from
 * the store. Errors name the backend or route. */
int sl_router_new(struct sl_router **out, const struct sl_config *cfg,
                  const struct sl_router_env *env, struct sl_err *err);
void sl_router_free(struct sl_router *r);

/* Is name a route? */
bool sl_router_has_route(const struct sl_router *r, const char *name);

/* Routes one request. Returns 0 when res was filled (res->status says how
 * it went, even on failure), or a negative SL_E* on a bad request / out of
 * memory (res->status then 400/500 with res->error). Always free res. */
int sl_router_route(struct sl_router *r, const struct sl_route_req *req,
                    struct sl_route_result *res, struct sl_err *err);

/* A backend by name (for evaluation and distillation), or NULL. */
struct sl_backend *sl_router_backend(struct sl_router *r, const char *name);

/* Request rows and ledger entries the store failed to write since start
 * (each is also reported on stderr). */
unsigned long long sl_router_log_errors(const struct sl_router *r);

/* Spend of a route today (UTC), as the budget sees it. */
double sl_router_spend_today(struct sl_router *r, const char *route);

#endif
