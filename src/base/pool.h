/*
 * pool.h - a persistent thread pool for data-parallel loops (base layer).
 *
 * sl_pool_run(pool, fn, ctx, n) calls fn(ctx, i, thread) for every i in
 * [0, n) across the pool's threads (the caller's thread works too) and
 * returns when all are done. Items are handed out through an atomic counter,
 * so uneven items balance themselves. `thread` is in [0, n_threads) and lets
 * fn use per-thread scratch space.
 *
 * One caller at a time: sl_pool_run is not reentrant and not thread-safe
 * (each inference context owns its pool).
 */
#ifndef SL_POOL_H
#define SL_POOL_H

typedef void (*sl_pool_fn)(void *ctx, int item, int thread);

struct sl_pool;

/* n_threads <= 0 picks the number of online CPUs. NULL on failure.
 * A thread waiting for work (or for the workers) spins 100 us before it
 * sleeps; the environment variable SLUICE_POOL_SPIN_US=N (0..1000000)
 * sets that, e.g. 0 on a machine shared with other busy jobs (pool.c). */
struct sl_pool *sl_pool_init(int n_threads);
void sl_pool_free(struct sl_pool *p);
int sl_pool_n_threads(const struct sl_pool *p);
void sl_pool_run(struct sl_pool *p, sl_pool_fn fn, void *ctx, int n_items);

#endif
