/*
 * bench_pool.c - the cost of one sl_pool_run (src/base/pool.c), the fixed
 * price every parallel loop of a forward pass pays (about 7 per layer plus
 * the attention one: ~200 per decoded token for a 24-layer model).
 *
 * For 1..N threads it runs back-to-back loops of n items that do (almost)
 * nothing, and loops separated by a pause of --gap-us of single-threaded
 * work (as between two matmuls of a decode step), and prints the mean
 * wall time per sl_pool_run in microseconds. Rough numbers on a shared
 * machine; never a test.
 *
 *   bench_pool [--threads N] [--items N] [--runs N] [--gap-us N]
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/pool.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static atomic_int sink;

static void item(void *ctx, int i, int thread)
{
    (void)ctx;
    atomic_fetch_add_explicit(&sink, i + thread, memory_order_relaxed);
}

static void spin_us(double us)
{
    const double t0 = now_s();
    while ((now_s() - t0) * 1e6 < us)
        ;
}

int main(int argc, char **argv)
{
    int max_threads = 2, items = 16, runs = 20000;
    double gap_us = 20;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--threads") == 0) max_threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--items") == 0) items = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--runs") == 0) runs = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--gap-us") == 0) gap_us = atof(argv[i + 1]);
        else {
            fprintf(stderr, "usage: bench_pool [--threads N] [--items N] [--runs N] [--gap-us N]\n");
            return 2;
        }
    }
    if (max_threads < 1 || items < 1 || runs < 1) return 2;
    printf("| threads | items | back to back, us / run | after %.0f us of other work, us / run |\n|--:|--:|--:|--:|\n",
           gap_us);
    for (int nt = 1; nt <= max_threads; nt++) {
        struct sl_pool *p = sl_pool_init(nt);
        if (!p) return 1;
        for (int r = 0; r < 1000; r++) sl_pool_run(p, item, NULL, items); /* warm up */
        double t0 = now_s();
        for (int r = 0; r < runs; r++) sl_pool_run(p, item, NULL, items);
        const double b2b = (now_s() - t0) / runs * 1e6;
        const int gruns = runs / 10 > 0 ? runs / 10 : 1;
        double in_run = 0;
        for (int r = 0; r < gruns; r++) {
            spin_us(gap_us);
            const double t = now_s();
            sl_pool_run(p, item, NULL, items);
            in_run += now_s() - t;
        }
        printf("| %d | %d | %.2f | %.2f |\n", nt, items, b2b, in_run / gruns * 1e6);
        sl_pool_free(p);
    }
    return 0;
}
