/*
 * http.h - an OpenAI-compatible upstream as a backend (backend layer).
 *
 * Talks to any server with the OpenAI chat/completions and embeddings API
 * over libcurl: base URL + model name, a Bearer key read from an environment
 * variable at creation, connect and total timeouts, retries with exponential
 * backoff and jitter on 429, 5xx and connection errors (a Retry-After header
 * is honoured up to retry_after_max_ms), pooled curl handles so connections
 * are reused across calls and threads, streaming passed through chunk by
 * chunk, and a circuit breaker (router/breaker.h) in front of every attempt.
 * Behaviour in detail: docs/router.md.
 */
#ifndef SL_BACKEND_HTTP_H
#define SL_BACKEND_HTTP_H

#include "backend/backend.h"
#include "router/breaker.h"

struct sl_backend_http_params {
    const char *name;        /* for messages and metrics; default "openai" */
    const char *base_url;    /* required: "https://host/v1" (no trailing slash needed) */
    const char *model;       /* required: the upstream's model name */
    const char *api_key_env; /* optional: env variable holding the key; NULL = no auth */
    long connect_timeout_ms; /* default 3000 */
    long timeout_ms;         /* whole attempt, incl. a stream; default 60000 */
    int max_retries;         /* extra attempts after the first; default 2 */
    long backoff_base_ms;    /* first backoff; doubles per retry; default 250 */
    long backoff_max_ms;     /* cap of one backoff; default 8000 */
    long retry_after_max_ms; /* a longer Retry-After ends the retries; default 10000 */
    size_t max_body;         /* cap of a response body; default 8 MiB */
    int max_idle_handles;    /* pooled curl handles (kept connections); default 8 */
    bool breaker_enabled;    /* default true */
    struct sl_breaker_params breaker;
    /* optional: NULL means nanosleep (tests record the backoff instead) */
    void (*sleep_ms)(void *sleep_ctx, long ms);
    void *sleep_ctx;
    unsigned jitter_seed; /* 0: seeded from the clock */
    /* how classify/extract tasks are sent (enum sl_task_api, config.h):
     * 0 (default) a chat/completions prompt, 1 a sluice server's
     * /classify and /extract (docs/router.md "Task calls") */
    int task_api;
};

struct sl_backend_http_params sl_backend_http_default_params(void);

/* Creates the backend. Fails with SL_EINVAL when base_url or model is
 * missing, or when api_key_env names a variable that is not set. */
int sl_backend_http_new(struct sl_backend *out, const struct sl_backend_http_params *p,
                        struct sl_err *err);

/* The backend's breaker (for metrics and tests); ctx from sl_backend_http_new. */
struct sl_breaker *sl_backend_http_breaker(void *ctx);

/* The backoff before retry number `retry` (0-based), without jitter: what
 * the jittered delay is drawn around. Exposed for tests and docs. */
long sl_backend_http_backoff_ms(const struct sl_backend_http_params *p, int retry);

#endif
