/*
 * breaker.h - a circuit breaker per backend (router layer).
 *
 * closed: calls go through; outcomes are recorded in a window of the last
 *   `window` calls no older than `window_ms`. When at least `min_calls` are
 *   in it and the failure rate reaches `failure_rate`, the breaker opens.
 * open: calls are refused for `cooldown_ms`, then it turns half-open.
 * half-open: up to `half_open_max` trial calls go through at once; the first
 *   success closes it (window cleared), a failure opens it again for another
 *   cool-down.
 *
 *   if (!sl_breaker_allow(b)) -> fail fast (SL_BACKEND_BREAKER_OPEN)
 *   ... call ... sl_breaker_record(b, ok);
 *
 * Every allow() that returned true must be followed by exactly one
 * record(). Time comes from params.now_ms (injected in tests; monotonic
 * clock by default). Thread-safe (one mutex).
 */
#ifndef SL_BREAKER_H
#define SL_BREAKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define SL_BREAKER_MAX_WINDOW 256

enum sl_breaker_state {
    SL_BREAKER_CLOSED = 0,
    SL_BREAKER_OPEN,
    SL_BREAKER_HALF_OPEN,
};

struct sl_breaker_params {
    int window;          /* outcomes kept (1..SL_BREAKER_MAX_WINDOW), default 20 */
    int64_t window_ms;   /* outcomes older than this do not count, default 60000 */
    int min_calls;       /* fewest outcomes before the rate is judged, default 5 */
    double failure_rate; /* open at this rate of failures (0..1], default 0.5 */
    int64_t cooldown_ms; /* time open before a trial, default 30000 */
    int half_open_max;   /* trial calls at once when half-open, default 1 */
    /* optional: NULL means CLOCK_MONOTONIC in milliseconds */
    int64_t (*now_ms)(void *clock_ctx);
    void *clock_ctx;
};

struct sl_breaker_params sl_breaker_default_params(void);

struct sl_breaker {
    struct sl_breaker_params p;
    pthread_mutex_t mu;
    enum sl_breaker_state state;
    int64_t opened_at; /* when it last opened */
    int in_flight;     /* trial calls running while half-open */
    int n;             /* outcomes in the ring */
    int head;          /* next slot */
    struct {
        int64_t t;
        bool ok;
    } ring[SL_BREAKER_MAX_WINDOW];
    uint64_t n_opened; /* times it opened (for metrics) */
};

/* Clamps params into range. Returns 0 (never fails). */
int sl_breaker_init(struct sl_breaker *b, const struct sl_breaker_params *p);
void sl_breaker_free(struct sl_breaker *b);

/* May a call go out now? Moves open -> half-open when the cool-down passed. */
bool sl_breaker_allow(struct sl_breaker *b);
/* Records the outcome of a call that allow() let through. */
void sl_breaker_record(struct sl_breaker *b, bool ok);
/* The state now (open turns half-open here too once the cool-down passed). */
enum sl_breaker_state sl_breaker_state(struct sl_breaker *b);
const char *sl_breaker_state_name(enum sl_breaker_state s);

#endif
