/*
 * cmd_bench.c - `sluice bench`: prompt processing and generation speed, and
 * the memory-bandwidth limit decode is measured against (tools layer).
 *
 * pp<N>: one batch of N prompt tokens, tokens/s. tg<N>: N tokens decoded one
 * at a time after a 1-token prompt, tokens/s. Each figure is the mean and
 * standard deviation over --reps repetitions after one warm-up. The
 * bandwidth probe sums a 1 GiB array (read-only) with 1 and N threads; the
 * decode fraction is model bytes x tg tokens/s / bandwidth of that thread
 * count.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/pool.h"
#include "cli.h"
#include "engine/forward.h"
#include "engine/kernels.h"
#include "engine/model.h"

static const char *usage_text =
    "usage: sluice bench -m MODEL.gguf [-p 64,512] [-n 128] [-t 1,2] [-r 3] [--json FILE]\n"
    "  -p LIST   prompt lengths (pp tests), comma-separated; 0 to skip\n"
    "  -n LIST   generation lengths (tg tests); 0 to skip\n"
    "  -t LIST   thread counts (default: 1 and all cores)\n"
    "  -r N      repetitions (default 3), after one warm-up run\n"
    "  --json F  also write the results as JSON to F\n"
    "  --no-bandwidth  skip the memory-bandwidth probe\n";

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int parse_list(const char *s, int *out, int max)
{
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > 1 << 20) return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

/* ---- memory bandwidth ---- */

struct bw_job {
    const double *a;
    size_t n, chunk;
    double *partial;
};

static void bw_item(void *ctx, int item, int thread)
{
    struct bw_job *j = ctx;
    size_t i0 = (size_t)item * j->chunk, i1 = SL_MIN(j->n, i0 + j->chunk);
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = i0;
    for (; i + 4 <= i1; i += 4) {
        s0 += j->a[i];
        s1 += j->a[i + 1];
        s2 += j->a[i + 2];
        s3 += j->a[i + 3];
    }
    for (; i < i1; i++) s0 += j->a[i];
    j->partial[thread] += s0 + s1 + s2 + s3;
}

/* GB/s (1e9 bytes) of a read-only sum over 1 GiB, best of 3. */
static double bandwidth(int threads)
{
    size_t bytes = (size_t)1 << 30, n = bytes / sizeof(double);
    double *a = malloc(bytes), best = 0, partial[256] = {0};
    struct sl_pool *pool = sl_pool_init(threads);
    if (!a || !pool) {
        free(a);
        sl_pool_free(pool);
        return 0;
    }
    for (size_t i = 0; i < n; i++) a[i] = (double)(i & 7);
    struct bw_job j = {a, n, (size_t)1 << 20, partial};
    for (int r = 0; r < 3; r++) {
        double t0 = now_s();
        sl_pool_run(pool, bw_item, &j, (int)((n + j.chunk - 1) / j.chunk));
        double gbs = (double)bytes / (now_s() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    if (partial[0] == 1234.5) fprintf(stderr, " "); /* keep the sums alive */
    sl_pool_free(pool);
    free(a);
    return best;
}

/* ---- model runs ---- */

struct stat {
    double mean, sd;
};

static struct stat summarize(const double *v, int n)
{
    struct stat s = {0, 0};
    for (int i = 0; i < n; i++) s.mean += v[i];
    s.mean /= n;
    for (int i = 0; i < n; i++) s.sd += (v[i] - s.mean) * (v[i] - s.mean);
    s.sd = n > 1 ? sqrt(s.sd / (n - 1)) : 0;
    return s;
}

/* tokens/s of one pp (n_pp > 0) or tg (n_tg > 0) run. */
static int run_once(struct sl_ctx *ctx, struct sl_batch *b, int n_pp, int n_tg, double *tps,
                    struct sl_err *err)
{
    int32_t V = ctx->model->hp.n_vocab;
    sl_kv_clear(&ctx->kv);
    if (n_pp > 0) {
        sl_batch_clear(b);
        for (int i = 0; i < n_pp; i++) sl_batch_add(b, (int32_t)((i * 7919 + 1) % V), i, 0, i == n_pp - 1);
        double t0 = now_s();
        int rc = sl_decode(ctx, b, err);
        *tps = n_pp / (now_s() - t0);
        return rc;
    }
    sl_batch_clear(b);
    sl_batch_add(b, 1 % V, 0, 0, true);
    int rc = sl_decode(ctx, b, err);
    double t0 = now_s();
    for (int i = 0; i < n_tg && !rc; i++) {
        sl_batch_clear(b);
        sl_batch_add(b, (int32_t)((i * 7919 + 3) % V), i + 1, 0, true);
        rc = sl_decode(ctx, b, err);
    }
    *tps = n_tg / (now_s() - t0);
    return rc;
}

int cmd_bench(int argc, char **argv)
{
    const char *model_path = NULL, *pp_s = "64,512", *tg_s = "128", *th_s = NULL, *json_path = NULL;
    long long reps = 3;
    bool no_bw = false;
    const struct cli_opt opts[] = {
        {"-m", "--model", CLI_STR, &model_path, 0, 0},
        {"-p", "--n-prompt", CLI_STR, &pp_s, 0, 0},
        {"-n", "--n-gen", CLI_STR, &tg_s, 0, 0},
        {"-t", "--threads", CLI_STR, &th_s, 0, 0},
        {"-r", "--reps", CLI_INT, &reps, 1, 100},
        {NULL, "--json", CLI_STR, &json_path, 0, 0},
        {NULL, "--no-bandwidth", CLI_FLAG, &no_bw, 0, 0},
    };
    int rc = cli_parse("bench", usage_text, argc, argv, opts, sizeof opts / sizeof *opts, NULL, 0, NULL);
    int pps[8], tgs[8], ths[8], n_pp, n_tg, n_th;
    struct sl_err err = {0};
    struct sl_model *m = NULL;
    FILE *jf = NULL;

    if (rc) return rc < 0 ? 0 : rc;
    if (!model_path) return cli_usage("bench", "-m MODEL is required");
    if ((n_pp = parse_list(pp_s, pps, 8)) < 0) return cli_usage("bench", "-p: bad list '%s'", pp_s);
    if ((n_tg = parse_list(tg_s, tgs, 8)) < 0) return cli_usage("bench", "-n: bad list '%s'", tg_s);
    if (th_s) {
        if ((n_th = parse_list(th_s, ths, 8)) <= 0) return cli_usage("bench", "-t: bad list '%s'", th_s);
    } else {
        struct sl_pool *p = sl_pool_init(0);
        int all = p ? sl_pool_n_threads(p) : 1;
        sl_pool_free(p);
        n_th = 0;
        ths[n_th++] = 1;
        if (all > 1) ths[n_th++] = all;
    }
    if (sl_model_load(&m, model_path, false, &err)) return cli_fail(&err, "is this a GGUF model file?");
    if (json_path && !(jf = fopen(json_path, "w"))) {
        sl_model_free(m);
        sl_err_set(&err, SL_EIO, "cannot write '%s'", json_path);
        return cli_fail(&err, NULL);
    }

    double bw[8] = {0};
    if (!no_bw)
        for (int t = 0; t < n_th; t++) bw[t] = bandwidth(ths[t]);

    time_t now = time(NULL);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M", gmtime(&now));
    printf("model %s: %s, %.1f MiB of weights, kernels %s, %s UTC\n", model_path, m->arch_name,
           (double)m->n_bytes / (1 << 20), sl_kernels()->name, date);
    if (!no_bw)
        for (int t = 0; t < n_th; t++) printf("memory bandwidth, %d thread%s: %.1f GB/s\n", ths[t], ths[t] > 1 ? "s" : "", bw[t]);
    printf("| test | threads | tokens/s | ± sd | of bandwidth limit |\n|---|--:|--:|--:|--:|\n");
    if (jf)
        fprintf(jf, "{\"model\": \"%s\", \"arch\": \"%s\", \"model_bytes\": %llu, \"kernels\": \"%s\", \"date\": \"%s\", \"results\": [",
                model_path, m->arch_name, (unsigned long long)m->n_bytes, sl_kernels()->name, date);
    bool first = true;
    rc = 0;
    for (int t = 0; t < n_th && !rc; t++) {
        int max_pp = 1;
        for (int i = 0; i < n_pp; i++) max_pp = SL_MAX(max_pp, pps[i]);
        int max_tg = 1;
        for (int i = 0; i < n_tg; i++) max_tg = SL_MAX(max_tg, tgs[i]);
        struct sl_ctx_params cp = sl_ctx_default_params();
        cp.n_ctx = SL_MAX(max_pp, max_tg + 1);
        cp.n_batch = max_pp;
        cp.n_threads = ths[t];
        struct sl_ctx *ctx = NULL;
        struct sl_batch b;
        if (sl_ctx_init(&ctx, m, &cp, &err) || sl_batch_init(&b, max_pp)) {
            sl_ctx_free(ctx);
            rc = cli_fail(&err, NULL);
            break;
        }
        for (int k = 0; k < n_pp + n_tg && !rc; k++) {
            bool pp = k < n_pp;
            int n = pp ? pps[k] : tgs[k - n_pp];
            if (n == 0) continue;
            double v[100], tps;
            rc = run_once(ctx, &b, pp ? n : 0, pp ? 0 : n, &tps, &err); /* warm-up */
            for (int r = 0; r < reps && !rc; r++) rc = run_once(ctx, &b, pp ? n : 0, pp ? 0 : n, &v[r], &err);
            if (rc) {
                cli_fail(&err, NULL);
                break;
            }
            struct stat s = summarize(v, (int)reps);
            double frac = !pp && bw[t] > 0 ? (double)m->n_bytes * s.mean / (bw[t] * 1e9) : 0;
            printf("| %s%d | %d | %.1f | %.1f | %s", pp ? "pp" : "tg", n, ths[t], s.mean, s.sd, "");
            if (frac > 0) printf("%.0f%% |\n", 100 * frac);
            else printf("|\n");
            if (jf)
                fprintf(jf, "%s\n  {\"test\": \"%s%d\", \"threads\": %d, \"tokens_per_s\": %.3f, \"sd\": %.3f, \"bandwidth_gbs\": %.2f, \"fraction_of_bandwidth\": %.3f}",
                        first ? "" : ",", pp ? "pp" : "tg", n, ths[t], s.mean, s.sd, bw[t], frac);
            first = false;
        }
        sl_batch_free(&b);
        sl_ctx_free(ctx);
    }
    if (jf) {
        fprintf(jf, "\n]}\n");
        fclose(jf);
    }
    sl_model_free(m);
    return rc ? CLI_EXIT_ERR : 0;
}
