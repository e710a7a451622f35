/*
 * bench_decode.c - A/B of weight repacking (row panels, kernels.h) or of
 * the thread pool's adaptive spin on whole forward passes, in one process.
 *
 * The machine this project develops on is shared, so two runs minutes apart
 * can differ by 2x. This program loads the model twice, A in the file's
 * layout (SLUICE_REPACK=0 while loading) and B repacked as sluice does by
 * default, then alternates A and B --rounds times: each round times tg
 * (decode of -n tokens after a 1-token prompt) and pp (one batch of -p
 * prompt tokens) on A, then on B, with a fresh context each time. It
 * prints every round, the median of each and the ratio of medians B / A.
 * Peak resident memory is not meaningful here (two copies of the weights).
 * With --ab pool, A and B are the same repacked model and differ in the
 * pool of their contexts: A spins a fixed time (SLUICE_POOL_ADAPT=0), B
 * adapts its spin (src/base/pool.c).
 *
 *   bench_decode -m MODEL.gguf [-t 1] [-n 32] [-p 64] [--rounds 7] [--ab repack|pool]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/forward.h"
#include "engine/kernels.h"
#include "engine/model.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
    double s[64];
    memcpy(s, v, (size_t)n * sizeof *v);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* Set while creating a context: SLUICE_POOL_ADAPT for --ab pool, or NULL. */
static const char *pool_adapt;

/* tokens/s of tg (n_tg > 0, after a 1-token prompt) or pp (n_pp). */
static double run(const struct sl_model *m, int threads, int n_pp, int n_tg)
{
    struct sl_ctx_params cp = sl_ctx_default_params();
    const int n_batch = n_pp > 0 ? n_pp : 1;
    cp.n_ctx = n_pp > n_tg + 1 ? n_pp : n_tg + 1;
    cp.n_batch = n_batch;
    cp.n_threads = threads;
    struct sl_ctx *ctx = NULL;
    struct sl_batch b;
    struct sl_err err = {0};
    const int32_t V = m->hp.n_vocab;
    double tps = 0;
    if (pool_adapt) setenv("SLUICE_POOL_ADAPT", pool_adapt, 1);
    if (sl_ctx_init(&ctx, m, &cp, &err) || sl_batch_init(&b, n_batch)) {
        fprintf(stderr, "bench_decode: %s\n", err.msg);
        exit(1);
    }
    if (n_pp > 0) {
        for (int i = 0; i < n_pp; i++) sl_batch_add(&b, (int32_t)((i * 7919 + 1) % V), i, 0, i == n_pp - 1);
        const double t0 = now_s();
        if (sl_decode(ctx, &b, &err)) goto fail;
        tps = n_pp / (now_s() - t0);
    } else {
        sl_batch_add(&b, 1 % V, 0, 0, true);
        if (sl_decode(ctx, &b, &err)) goto fail;
        const double t0 = now_s();
        for (int i = 0; i < n_tg; i++) {
            sl_batch_clear(&b);
            sl_batch_add(&b, (int32_t)((i * 7919 + 3) % V), i + 1, 0, true);
            if (sl_decode(ctx, &b, &err)) goto fail;
        }
        tps = n_tg / (now_s() - t0);
    }
    sl_batch_free(&b);
    sl_ctx_free(ctx);
    return tps;
fail:
    fprintf(stderr, "bench_decode: %s\n", err.msg);
    exit(1);
}

int main(int argc, char **argv)
{
    const char *path = NULL, *ab = "repack";
    int threads = 1, n_tg = 32, n_pp = 64, rounds = 7;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *o = argv[i], *v = argv[i + 1];
        if (strcmp(o, "-m") == 0) path = v;
        else if (strcmp(o, "-t") == 0) threads = atoi(v);
        else if (strcmp(o, "-n") == 0) n_tg = atoi(v);
        else if (strcmp(o, "-p") == 0) n_pp = atoi(v);
        else if (strcmp(o, "--rounds") == 0) rounds = atoi(v);
        else if (strcmp(o, "--ab") == 0) ab = v;
        else break;
    }
    const int ab_pool = strcmp(ab, "pool") == 0;
    if (!path || threads < 1 || n_tg < 0 || n_pp < 0 || rounds < 1 || rounds > 64 ||
        (!ab_pool && strcmp(ab, "repack") != 0)) {
        fprintf(stderr, "usage: bench_decode -m MODEL.gguf [-t 1] [-n 32] [-p 64] [--rounds 7] [--ab repack|pool]\n");
        return 2;
    }
    struct sl_model *ma = NULL, *mb = NULL;
    struct sl_err err = {0};
    if (!ab_pool) setenv("SLUICE_REPACK", "0", 1);
    if (sl_model_load(&ma, path, false, &err)) {
        fprintf(stderr, "bench_decode: %s\n", err.msg);
        return 1;
    }
    unsetenv("SLUICE_REPACK");
    if (!ab_pool && sl_model_load(&mb, path, false, &err)) {
        fprintf(stderr, "bench_decode: %s\n", err.msg);
        return 1;
    }
    if (ab_pool) mb = ma;
    char date[32];
    const time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M", gmtime(&now));
    if (ab_pool)
        printf("bench_decode %s, %d thread%s, kernels %s, %s UTC: A = pool spin fixed, B = adaptive\n", path, threads,
               threads > 1 ? "s" : "", sl_kernels()->name, date);
    else
        printf("bench_decode %s, %d thread%s, kernels %s, %s UTC: A = file layout, B = repacked (%.1f MiB of panels)\n",
               path, threads, threads > 1 ? "s" : "", sl_kernels()->name, date, (double)mb->panels_size / (1 << 20));
    double tga[64], tgb[64], ppa[64], ppb[64];
    run(ma, threads, 0, n_tg > 0 ? 4 : 0); /* warm-up: fault the pages in */
    run(mb, threads, 0, n_tg > 0 ? 4 : 0);
    for (int r = 0; r < rounds; r++) {
        const char *pa = ab_pool ? "0" : NULL, *pb = ab_pool ? "1" : NULL;
        pool_adapt = pa;
        tga[r] = n_tg ? run(ma, threads, 0, n_tg) : 0;
        pool_adapt = pb;
        tgb[r] = n_tg ? run(mb, threads, 0, n_tg) : 0;
        pool_adapt = pa;
        ppa[r] = n_pp ? run(ma, threads, n_pp, 0) : 0;
        pool_adapt = pb;
        ppb[r] = n_pp ? run(mb, threads, n_pp, 0) : 0;
        printf("round %d: tg%d A %.1f B %.1f | pp%d A %.1f B %.1f tokens/s\n", r + 1, n_tg, tga[r], tgb[r], n_pp,
               ppa[r], ppb[r]);
        fflush(stdout);
    }
    if (n_tg)
        printf("tg%d: median A %.1f, B %.1f tokens/s, B/A %.2fx\n", n_tg, median(tga, rounds), median(tgb, rounds),
               median(tgb, rounds) / median(tga, rounds));
    if (n_pp)
        printf("pp%d: median A %.1f, B %.1f tokens/s, B/A %.2fx\n", n_pp, median(ppa, rounds), median(ppb, rounds),
               median(ppb, rounds) / median(ppa, rounds));
    sl_model_free(ma);
    if (mb != ma) sl_model_free(mb);
    return 0;
}
