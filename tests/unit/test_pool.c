/*
 * test_pool.c - tests of base/pool.c: every item of every loop runs exactly
 * once, on a thread id below n_threads, whatever the spin does (fixed,
 * adaptive, none) and with more threads than cores, where the adaptive
 * spin shrinks and the workers go to sleep between loops.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/pool.h"
#include "test.h"

#define N_ITEMS_MAX 64

struct job {
    atomic_int hits[N_ITEMS_MAX];
    atomic_int bad_thread;
    int n_threads;
};

static void item(void *ctx, int i, int thread)
{
    struct job *j = ctx;
    atomic_fetch_add(&j->hits[i], 1);
    if (thread < 0 || thread >= j->n_threads) atomic_store(&j->bad_thread, 1);
}

/* loops of 1..N_ITEMS_MAX items, some separated by a short sleep (the
 * spinning workers then time out and sleep, or adapt) */
static void run_loops(int n_threads, int loops)
{
    struct sl_pool *p = sl_pool_init(n_threads);
    T_TRUE(p != NULL);
    if (!p) return;
    T_EQ_INT(sl_pool_n_threads(p), n_threads);
    struct job *j = calloc(1, sizeof *j);
    j->n_threads = n_threads;
    for (int l = 0; l < loops; l++) {
        const int n = 1 + l % N_ITEMS_MAX;
        for (int i = 0; i < N_ITEMS_MAX; i++) atomic_store(&j->hits[i], 0);
        if (l % 97 == 0) nanosleep(&(struct timespec){0, 300000}, NULL); /* 0.3 ms: longer than the spin */
        sl_pool_run(p, item, j, n);
        int wrong = 0;
        for (int i = 0; i < N_ITEMS_MAX; i++) wrong += atomic_load(&j->hits[i]) != (i < n);
        if (wrong) {
            T_FAIL_AT("%d threads, loop %d of %d items: %d items ran other than once", n_threads, l, n, wrong);
            break;
        }
    }
    T_EQ_INT(atomic_load(&j->bad_thread), 0);
    free(j);
    sl_pool_free(p);
}

static void every_item_runs_once_with_the_default_adaptive_spin(void)
{
    for (int nt = 1; nt <= 4; nt++) run_loops(nt, 2000);
}

static void every_item_runs_once_with_more_threads_than_cores(void)
{
    run_loops(8, 1000);
}

static void every_item_runs_once_with_a_fixed_spin_and_with_none(void)
{
    setenv("SLUICE_POOL_ADAPT", "0", 1);
    run_loops(3, 1000);
    unsetenv("SLUICE_POOL_ADAPT");
    setenv("SLUICE_POOL_SPIN_US", "0", 1);
    run_loops(3, 1000);
    unsetenv("SLUICE_POOL_SPIN_US");
}

int main(void)
{
    T_RUN(every_item_runs_once_with_the_default_adaptive_spin);
    T_RUN(every_item_runs_once_with_more_threads_than_cores);
    T_RUN(every_item_runs_once_with_a_fixed_spin_and_with_none);
    return t_done();
}
