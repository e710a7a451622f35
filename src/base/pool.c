/*
 * pool.c - persistent worker threads woken per parallel loop (base layer).
 *
 * Workers wait on a condition variable for a new generation, then pull items
 * from a shared atomic counter; the last one to finish signals the caller.
 * Before sleeping, a worker (and the caller waiting for the workers) spins
 * with `pause` for up to SL_POOL_SPIN_US (100 us): a forward pass runs
 * ~8 loops per layer with a few microseconds of single-threaded work
 * between them, and a worker woken from the condition variable measured
 * 45-50 us per loop on the 2-core VM (bench/bench_pool.c), against ~1 us
 * for one still spinning. Spinning longer (2 ms, with or without
 * sched_yield) made decode 2x faster on a quiet machine but 3x slower on an
 * oversubscribed one (other jobs on the cores): the spinning threads use
 * up their CPU share while the thread they wait for is preempted. Even
 * 100 us loses there against a short spin (2-thread decode 10-20 against
 * 20-30 tokens/s at load 6-15), so SLUICE_POOL_SPIN_US=N sets the spin
 * (0: sleep at once) for shared machines.
 *
 * The spin adapts, per waiting thread: a wait that ended while spinning
 * doubles that thread's spin (up to SL_POOL_SPIN_US or the variable), one
 * that ran out and had to sleep halves it (down to SL_POOL_SPIN_MIN_NS).
 * On an idle machine the waits inside a forward pass end within
 * microseconds and the spin stays at its maximum; on an oversubscribed one
 * the thread waited for is often preempted, spins run out, and the pool
 * soon sleeps almost at once, leaving the core to that thread. The one
 * long wait per token (sampling, the next request) costs one halving,
 * which the next few loops undo. SLUICE_POOL_ADAPT=0 keeps the spin fixed.
 */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SL_POOL_MAX_THREADS 256
#define SL_POOL_SPIN_US 100 /* default spin before sleeping; SLUICE_POOL_SPIN_US overrides */
#define SL_POOL_SPIN_MIN_NS 2000 /* floor of the adaptive spin (see the header) */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct sl_pool {
    int n_threads;
    uint64_t spin_ns;     /* longest a waiting thread spins before sleeping */
    uint64_t caller_spin; /* the caller's current spin (adaptive; only the caller touches it) */
    int adapt;            /* 0: always spin spin_ns (SLUICE_POOL_ADAPT=0, for comparisons) */
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    /* current job; written by the caller under mu before bumping gen */
    sl_pool_fn fn;
    void *ctx;
    int n_items;
    atomic_int next;
    atomic_uint busy; /* workers still in the current job */
    atomic_uint gen;  /* job generation */
    int stop;
};

/* The state of one wait: when it started, how many rounds it made, and
 * how long it may spin. */
struct spin {
    uint64_t t0, max_ns;
    unsigned round;
};

/* One round of waiting with `pause`; the clock is read every 64 rounds.
 * Returns 0 once max_ns have passed (time to sleep on the condition
 * variable). */
static int spin_round(struct spin *s)
{
    const unsigned i = s->round++;
    if (!s->max_ns) return 0;
    cpu_relax();
    if ((i & 63) == 0) {
        const uint64_t t = now_ns();
        if (!s->t0) s->t0 = t;
        else if (t - s->t0 > s->max_ns) return 0;
    }
    return 1;
}

/* Spin until *v != old or the spin time is over; 1 if the wait ended
 * while spinning. */
static int spin_while_equal(atomic_uint *v, unsigned old, uint64_t max_ns)
{
    struct spin s = {0, max_ns, 0};
    while (atomic_load_explicit(v, memory_order_acquire) == old)
        if (!spin_round(&s)) return 0;
    return 1;
}

/* Spin until *v is 0 or the spin time is over; 1 if it got there while
 * spinning. */
static int spin_while_nonzero(atomic_uint *v, uint64_t max_ns)
{
    struct spin s = {0, max_ns, 0};
    while (atomic_load_explicit(v, memory_order_acquire) != 0)
        if (!spin_round(&s)) return 0;
    return 1;
}

/* The next spin after a wait the spin covered (double) or not (halve),
 * within [SL_POOL_SPIN_MIN_NS, max]; 0 stays 0. */
static uint64_t spin_adapt(uint64_t cur, uint64_t max, int covered)
{
    if (!max) return 0;
    const uint64_t next = covered ? cur * 2 : cur / 2;
    return next > max ? max : next < SL_POOL_SPIN_MIN_NS ? SL_POOL_SPIN_MIN_NS : next;
}

struct worker_arg {
    struct sl_pool *p;
    int id;
};

static void drain(struct sl_pool *p, int id)
{
    for (;;) {
        int i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (i >= p->n_items) break;
        p->fn(p->ctx, i, id);
    }
}

static void *worker(void *arg)
{
    struct worker_arg *wa = arg;
    struct sl_pool *p = wa->p;
    int id = wa->id;
    unsigned seen = 0;
    uint64_t spin = p->spin_ns;
    free(wa);
    for (;;) {
        /* spin for a while, then sleep until a new generation or stop */
        const int covered = spin_while_equal(&p->gen, seen, spin);
        if (p->adapt) spin = spin_adapt(spin, p->spin_ns, covered);
        pthread_mutex_lock(&p->mu);
        while (atomic_load_explicit(&p->gen, memory_order_acquire) == seen && !p->stop)
            pthread_cond_wait(&p->cv_work, &p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = atomic_load_explicit(&p->gen, memory_order_acquire);
        pthread_mutex_unlock(&p->mu);

        drain(p, id);
        if (atomic_fetch_sub_explicit(&p->busy, 1u, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->cv_done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

struct sl_pool *sl_pool_init(int n_threads)
{
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    if (n_threads > SL_POOL_MAX_THREADS) n_threads = SL_POOL_MAX_THREADS;
    struct sl_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = n_threads;
    p->spin_ns = (uint64_t)SL_POOL_SPIN_US * 1000u;
    const char *spin = getenv("SLUICE_POOL_SPIN_US");
    if (spin && *spin) {
        char *end;
        const long us = strtol(spin, &end, 10);
        if (!*end && us >= 0 && us <= 1000000) p->spin_ns = (uint64_t)us * 1000u;
    }
    p->adapt = !(getenv("SLUICE_POOL_ADAPT") && strcmp(getenv("SLUICE_POOL_ADAPT"), "0") == 0);
    p->caller_spin = p->spin_ns;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) goto fail; /* allocation failure */
    for (int i = 1; i < n_threads; i++) {
        struct worker_arg *wa = malloc(sizeof *wa);
        if (!wa) goto fail; /* allocation failure */
        wa->p = p;
        wa->id = i;
        if (pthread_create(&p->threads[i], NULL, worker, wa) != 0) {
            free(wa);
            p->n_threads = i; /* free() joins the ones that started */
            goto fail;        /* thread creation failure */
        }
    }
    return p;
fail:
    sl_pool_free(p);
    return NULL;
}

void sl_pool_free(struct sl_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    if (p->threads)
        for (int i = 1; i < p->n_threads; i++)
            if (p->threads[i]) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_done);
    free(p->threads);
    free(p);
}

int sl_pool_n_threads(const struct sl_pool *p)
{
    return p->n_threads;
}

void sl_pool_run(struct sl_pool *p, sl_pool_fn fn, void *ctx, int n_items)
{
    if (n_items <= 0) return;
    if (p->n_threads == 1 || n_items == 1) {
        for (int i = 0; i < n_items; i++) fn(ctx, i, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n_items = n_items;
    atomic_store(&p->next, 0);
    atomic_store(&p->busy, (unsigned)(p->n_threads - 1));
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);

    drain(p, 0);
    /* wait for the workers: spin first, then sleep */
    const int covered = spin_while_nonzero(&p->busy, p->caller_spin);
    if (p->adapt) p->caller_spin = spin_adapt(p->caller_spin, p->spin_ns, covered);
    pthread_mutex_lock(&p->mu);
    while (atomic_load_explicit(&p->busy, memory_order_acquire) > 0)
        pthread_cond_wait(&p->cv_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
