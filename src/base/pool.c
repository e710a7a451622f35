/*
 * pool.c - persistent worker threads woken per parallel loop (base layer).
 *
 * Workers wait on a condition variable for a new generation, then pull items
 * from a shared atomic counter; the last one to finish signals the caller.
 * A short spin before sleeping keeps wake-up cheap when loops come back to
 * back (one per matmul in a forward pass).
 */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#define SL_POOL_MAX_THREADS 256
#define SL_POOL_SPIN 20000

struct sl_pool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    /* current job; written by the caller under mu before bumping gen */
    sl_pool_fn fn;
    void *ctx;
    int n_items;
    atomic_int next;
    atomic_int busy;     /* workers still in the current job */
    atomic_uint gen;     /* job generation */
    int stop;
};

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
    free(wa);
    for (;;) {
        /* spin briefly, then sleep until a new generation or stop */
        int spins = 0;
        while (atomic_load_explicit(&p->gen, memory_order_acquire) == seen && spins < SL_POOL_SPIN)
            spins++;
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
        if (atomic_fetch_sub_explicit(&p->busy, 1, memory_order_acq_rel) == 1) {
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
    atomic_store(&p->busy, p->n_threads - 1);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);

    drain(p, 0);
    /* wait for the workers: spin first, then sleep */
    for (int s = 0; s < SL_POOL_SPIN && atomic_load_explicit(&p->busy, memory_order_acquire) > 0; s++)
        ;
    pthread_mutex_lock(&p->mu);
    while (atomic_load_explicit(&p->busy, memory_order_acquire) > 0)
        pthread_cond_wait(&p->cv_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
