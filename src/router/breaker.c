/*
 * breaker.c - circuit breaker per backend (router layer): closed / open /
 * half-open over a window of recent outcomes. See breaker.h.
 */
#include "router/breaker.h"

#include <string.h>
#include <time.h>

static int64_t mono_ms(void *unused)
{
    (void)unused;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct sl_breaker_params sl_breaker_default_params(void)
{
    struct sl_breaker_params p = {
        .window = 20,
        .window_ms = 60000,
        .min_calls = 5,
        .failure_rate = 0.5,
        .cooldown_ms = 30000,
        .half_open_max = 1,
        .now_ms = NULL,
        .clock_ctx = NULL,
    };
    return p;
}

int sl_breaker_init(struct sl_breaker *b, const struct sl_breaker_params *p)
{
    memset(b, 0, sizeof *b);
    b->p = p ? *p : sl_breaker_default_params();
    if (b->p.window < 1) b->p.window = 1;
    if (b->p.window > SL_BREAKER_MAX_WINDOW) b->p.window = SL_BREAKER_MAX_WINDOW;
    if (b->p.min_calls < 1) b->p.min_calls = 1;
    if (b->p.min_calls > b->p.window) b->p.min_calls = b->p.window;
    if (!(b->p.failure_rate > 0)) b->p.failure_rate = 0.5;
    if (b->p.failure_rate > 1) b->p.failure_rate = 1;
    if (b->p.window_ms < 1) b->p.window_ms = 1;
    if (b->p.cooldown_ms < 0) b->p.cooldown_ms = 0;
    if (b->p.half_open_max < 1) b->p.half_open_max = 1;
    if (!b->p.now_ms) b->p.now_ms = mono_ms;
    pthread_mutex_init(&b->mu, NULL);
    b->state = SL_BREAKER_CLOSED;
    return 0;
}

void sl_breaker_free(struct sl_breaker *b)
{
    pthread_mutex_destroy(&b->mu);
}

/* Caller holds b->mu. */
static void tick(struct sl_breaker *b, int64_t now)
{
    if (b->state == SL_BREAKER_OPEN && now - b->opened_at >= b->p.cooldown_ms) {
        b->state = SL_BREAKER_HALF_OPEN;
        b->in_flight = 0;
    }
}

/* Caller holds b->mu. */
static void trip(struct sl_breaker *b, int64_t now)
{
    b->state = SL_BREAKER_OPEN;
    b->opened_at = now;
    b->in_flight = 0;
    b->n_opened++;
}

bool sl_breaker_allow(struct sl_breaker *b)
{
    int64_t now = b->p.now_ms(b->p.clock_ctx);
    bool ok = false;
    pthread_mutex_lock(&b->mu);
    tick(b, now);
    switch (b->state) {
    case SL_BREAKER_CLOSED:
        ok = true;
        break;
    case SL_BREAKER_OPEN:
        ok = false;
        break;
    case SL_BREAKER_HALF_OPEN:
        ok = b->in_flight < b->p.half_open_max;
        if (ok) b->in_flight++;
        break;
    }
    pthread_mutex_unlock(&b->mu);
    return ok;
}

void sl_breaker_record(struct sl_breaker *b, bool ok)
{
    int64_t now = b->p.now_ms(b->p.clock_ctx);
    pthread_mutex_lock(&b->mu);
    if (b->state == SL_BREAKER_HALF_OPEN) {
        if (b->in_flight > 0) b->in_flight--;
        if (ok) {
            b->state = SL_BREAKER_CLOSED;
            b->n = 0;
            b->head = 0;
        } else {
            trip(b, now);
        }
    } else if (b->state == SL_BREAKER_CLOSED) {
        b->ring[b->head].t = now;
        b->ring[b->head].ok = ok;
        b->head = (b->head + 1) % b->p.window;
        if (b->n < b->p.window) b->n++;
        int total = 0, bad = 0;
        for (int i = 0; i < b->n; i++) {
            if (now - b->ring[i].t > b->p.window_ms) continue;
            total++;
            bad += !b->ring[i].ok;
        }
        if (!ok && total >= b->p.min_calls && (double)bad >= b->p.failure_rate * total) {
            trip(b, now);
            b->n = 0;
            b->head = 0;
        }
    }
    /* SL_BREAKER_OPEN: a call that started before the trip finished late;
     * its outcome says nothing new. */
    pthread_mutex_unlock(&b->mu);
}

enum sl_breaker_state sl_breaker_state(struct sl_breaker *b)
{
    int64_t now = b->p.now_ms(b->p.clock_ctx);
    pthread_mutex_lock(&b->mu);
    tick(b, now);
    enum sl_breaker_state s = b->state;
    pthread_mutex_unlock(&b->mu);
    return s;
}

const char *sl_breaker_state_name(enum sl_breaker_state s)
{
    switch (s) {
    case SL_BREAKER_CLOSED:
        return "closed";
    case SL_BREAKER_OPEN:
        return "open";
    case SL_BREAKER_HALF_OPEN:
        return "half-open";
    }
    return "?";
}
