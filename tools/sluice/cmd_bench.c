/*
 * cmd_bench.c - `sluice bench`: prompt processing and generation speed, and
 * the memory-bandwidth limit decode is measured against (tools layer).
 *
 * pp<N>: one batch of N prompt tokens, tokens/s. tg<N>: N tokens decoded one
 * at a time after a 1-token prompt, tokens/s. Each figure is the mean and
 * standard deviation over --reps repetitions after one warm-up. The
 * bandwidth probe sums a 1 GiB array (read-only) with 1 and N threads; the
 * decode fraction is the weight bytes one token reads (every tensor but
 * an untied token embedding, of which it reads one row) x tg tokens/s /
 * bandwidth of that thread count. The probe runs in a child process, so
 * its 1 GiB does not count in the peak resident memory reported at the
 * end (getrusage ru_maxrss) next to the model file's size and the KV
 * cache's (-c sets the context; the engine's budget is file + KV + 64 MiB).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/pool.h"
#include "cli.h"
#include "engine/forward.h"
#include "engine/kernels.h"
#include "engine/model.h"

static const char *usage_text =
    "usage: sluice bench -m MODEL.gguf [-p 64,512] [-n 128] [-d 0] [-t 1,2] [-r 3] [-c N] [--json FILE]\n"
    "  -p LIST   prompt lengths (pp tests), comma-separated; 0 to skip\n"
    "  -n LIST   generation lengths (tg tests); 0 to skip\n"
    "  -d LIST   depths: tokens already in the KV cache when a test starts (default 0;\n"
    "            filled untimed before each run), to see attention grow with context\n"
    "  -t LIST   thread counts (default: 1 and all cores)\n"
    "  -r N      repetitions (default 3), after one warm-up run\n"
    "  -c N      context size (KV cells) of the runs (default: the longest test)\n"
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

/*
 * The probe streams 1 GiB with as few instructions per cache line as the
 * CPU allows (AVX2: two 32-byte loads and adds per line, four independent
 * sums), from memory mapped with transparent huge pages asked for, as the
 * repacked weights are (engine/model.c). A probe that spends more
 * instructions per line than the kernels do measures its own limit, not
 * the memory's: the scalar double sum used before read 21-23 GB/s on one
 * thread where this one read 27-30, and decode then came out at 106% of
 * "the bandwidth".
 */
struct bw_job {
    const uint64_t *a;
    size_t n, chunk; /* in uint64 */
    uint64_t *partial;
};

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
__attribute__((target("avx2"))) static uint64_t sum_avx2(const uint64_t *p, size_t n)
{
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_add_epi64(a0, _mm256_loadu_si256((const __m256i *)(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_loadu_si256((const __m256i *)(p + i + 4)));
        a2 = _mm256_add_epi64(a2, _mm256_loadu_si256((const __m256i *)(p + i + 8)));
        a3 = _mm256_add_epi64(a3, _mm256_loadu_si256((const __m256i *)(p + i + 12)));
    }
    a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    uint64_t s = (uint64_t)_mm256_extract_epi64(a0, 0) + (uint64_t)_mm256_extract_epi64(a0, 1) +
                 (uint64_t)_mm256_extract_epi64(a0, 2) + (uint64_t)_mm256_extract_epi64(a0, 3);
    for (; i < n; i++) s += p[i];
    return s;
}
#endif

static uint64_t sum_plain(const uint64_t *p, size_t n)
{
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) s0 += p[i], s1 += p[i + 1], s2 += p[i + 2], s3 += p[i + 3];
    for (; i < n; i++) s0 += p[i];
    return s0 + s1 + s2 + s3;
}

static void bw_item(void *ctx, int item, int thread)
{
    struct bw_job *j = ctx;
    const size_t i0 = (size_t)item * j->chunk, i1 = SL_MIN(j->n, i0 + j->chunk);
#if defined(__x86_64__) || defined(__i386__)
    if (__builtin_cpu_supports("avx2")) {
        j->partial[thread] += sum_avx2(j->a + i0, i1 - i0);
        return;
    }
#endif
    j->partial[thread] += sum_plain(j->a + i0, i1 - i0);
}

/* GB/s (1e9 bytes) of a read-only sum over 1 GiB, best of 3. */
static double bandwidth_here(int threads)
{
    const size_t bytes = (size_t)1 << 30, n = bytes / sizeof(uint64_t);
    uint64_t partial[256] = {0};
    double best = 0;
    uint64_t *a = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct sl_pool *pool = sl_pool_init(threads);
    if (a == MAP_FAILED || !pool) {
        if (a != MAP_FAILED) munmap(a, bytes);
        sl_pool_free(pool);
        return 0;
    }
#ifdef MADV_HUGEPAGE
    (void)madvise(a, bytes, MADV_HUGEPAGE);
#endif
    for (size_t i = 0; i < n; i++) a[i] = i & 7;
    struct bw_job j = {a, n, (size_t)1 << 17, partial};
    for (int r = 0; r < 3; r++) {
        double t0 = now_s();
        sl_pool_run(pool, bw_item, &j, (int)((n + j.chunk - 1) / j.chunk));
        double gbs = (double)bytes / (now_s() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    if (partial[0] == 12345) fprintf(stderr, " "); /* keep the sums alive */
    sl_pool_free(pool);
    munmap(a, bytes);
    return best;
}

/* bandwidth_here() in a child process, so that the 1 GiB it touches is
 * not part of this process's peak resident memory; 0 if it fails. */
static double bandwidth(int threads)
{
    int fd[2];
    double gbs = 0;
    if (pipe(fd)) return 0;
    fflush(stdout);
    const pid_t pid = fork();
    if (pid == 0) {
        const double v = bandwidth_here(threads);
        _exit(write(fd[1], &v, sizeof v) == (ssize_t)sizeof v ? 0 : 1);
    }
    close(fd[1]);
    if (pid > 0) {
        if (read(fd[0], &gbs, sizeof gbs) != (ssize_t)sizeof gbs) gbs = 0;
        waitpid(pid, NULL, 0);
    }
    close(fd[0]);
    return gbs;
}

/* Weight bytes one decoded token reads: every tensor but the token
 * embedding when the output has its own (then one row of it). */
static double bytes_per_token(const struct sl_model *m)
{
    double b = (double)m->n_bytes;
    if (m->output.data != m->tok_embd.data)
        b -= (double)m->tok_embd.row_size * (double)(m->tok_embd.ne[1] - 1);
    return b;
}

/* Resident anonymous and file-backed memory now, in bytes (Linux
 * /proc/self/status RssAnon, RssFile); 0 where unknown. */
static void rss_now(double *anon, double *file)
{
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    *anon = *file = 0;
    while (f && fgets(line, sizeof line, f)) {
        long kb;
        if (sscanf(line, "RssAnon: %ld kB", &kb) == 1) *anon = (double)kb * 1024;
        if (sscanf(line, "RssFile: %ld kB", &kb) == 1) *file = (double)kb * 1024;
    }
    if (f) fclose(f);
}

/* ---- model runs ---- */

struct run_stat {
    double mean, sd;
};

static struct run_stat summarize(const double *v, int n)
{
    struct run_stat s = {0, 0};
    for (int i = 0; i < n; i++) s.mean += v[i];
    s.mean /= n;
    for (int i = 0; i < n; i++) s.sd += (v[i] - s.mean) * (v[i] - s.mean);
    s.sd = n > 1 ? sqrt(s.sd / (n - 1)) : 0;
    return s;
}

/* tokens/s of one pp (n_pp > 0) or tg (n_tg > 0) run, after depth tokens
 * put into the KV cache untimed (in batches of b->cap). */
static int run_once(struct sl_ctx *ctx, struct sl_batch *b, int depth, int n_pp, int n_tg, double *tps,
                    struct sl_err *err)
{
    int32_t V = ctx->model->hp.n_vocab;
    int rc = 0;
    sl_kv_clear(&ctx->kv);
    for (int i = 0; i < depth && !rc; i += b->cap) {
        const int n = SL_MIN(b->cap, depth - i);
        sl_batch_clear(b);
        for (int j = 0; j < n; j++) sl_batch_add(b, (int32_t)(((i + j) * 7919 + 5) % V), i + j, 0, j == n - 1);
        rc = sl_decode(ctx, b, err);
    }
    if (rc) return rc;
    if (n_pp > 0) {
        sl_batch_clear(b);
        for (int i = 0; i < n_pp; i++)
            sl_batch_add(b, (int32_t)((i * 7919 + 1) % V), depth + i, 0, i == n_pp - 1);
        double t0 = now_s();
        rc = sl_decode(ctx, b, err);
        *tps = n_pp / (now_s() - t0);
        return rc;
    }
    sl_batch_clear(b);
    sl_batch_add(b, 1 % V, depth, 0, true);
    rc = sl_decode(ctx, b, err);
    double t0 = now_s();
    for (int i = 0; i < n_tg && !rc; i++) {
        sl_batch_clear(b);
        sl_batch_add(b, (int32_t)((i * 7919 + 3) % V), depth + i + 1, 0, true);
        rc = sl_decode(ctx, b, err);
    }
    *tps = n_tg / (now_s() - t0);
    return rc;
}

int cmd_bench(int argc, char **argv)
{
    const char *model_path = NULL, *pp_s = "64,512", *tg_s = "128", *d_s = "0", *th_s = NULL, *json_path = NULL;
    long long reps = 3, n_ctx = 0;
    bool no_bw = false;
    const struct cli_opt opts[] = {
        {"-m", "--model", CLI_STR, &model_path, 0, 0},
        {"-p", "--n-prompt", CLI_STR, &pp_s, 0, 0},
        {"-n", "--n-gen", CLI_STR, &tg_s, 0, 0},
        {"-d", "--depth", CLI_STR, &d_s, 0, 0},
        {"-t", "--threads", CLI_STR, &th_s, 0, 0},
        {"-r", "--reps", CLI_INT, &reps, 1, 100},
        {"-c", "--ctx-size", CLI_INT, &n_ctx, 0, 1 << 20},
        {NULL, "--json", CLI_STR, &json_path, 0, 0},
        {NULL, "--no-bandwidth", CLI_FLAG, &no_bw, 0, 0},
    };
    int rc = cli_parse("bench", usage_text, argc, argv, opts, sizeof opts / sizeof *opts, NULL, 0, NULL);
    int pps[8], tgs[8], ds[8], ths[8], n_pp, n_tg, n_d, n_th;
    struct sl_err err = {0};
    struct sl_model *m = NULL;
    FILE *jf = NULL;

    if (rc) return rc < 0 ? 0 : rc;
    if (!model_path) return cli_usage("bench", "-m MODEL is required");
    if ((n_pp = parse_list(pp_s, pps, 8)) < 0) return cli_usage("bench", "-p: bad list '%s'", pp_s);
    if ((n_tg = parse_list(tg_s, tgs, 8)) < 0) return cli_usage("bench", "-n: bad list '%s'", tg_s);
    if ((n_d = parse_list(d_s, ds, 8)) <= 0) return cli_usage("bench", "-d: bad list '%s'", d_s);
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
    int longest = 1; /* KV cells the longest test needs */
    for (int i = 0; i < n_pp; i++) longest = SL_MAX(longest, pps[i]);
    for (int i = 0; i < n_tg; i++) longest = SL_MAX(longest, tgs[i] + 1);
    int max_d = 0;
    for (int i = 0; i < n_d; i++) max_d = SL_MAX(max_d, ds[i]);
    longest += max_d;
    if (n_ctx > 0 && n_ctx < longest)
        return cli_usage("bench", "-c %lld is shorter than the longest test (%d tokens)", n_ctx, longest);
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
    const double read_bytes = bytes_per_token(m);
    struct stat st;
    const double file_bytes = stat(model_path, &st) == 0 ? (double)st.st_size : (double)m->n_bytes;
    printf("model %s: %s, %.1f MiB of weights (%.1f MiB read per token, %.1f MiB repacked), kernels %s, %s UTC\n",
           model_path, m->arch_name, (double)m->n_bytes / (1 << 20), read_bytes / (1 << 20),
           (double)m->panels_size / (1 << 20), sl_kernels()->name, date);
    if (!no_bw)
        for (int t = 0; t < n_th; t++) printf("memory bandwidth, %d thread%s: %.1f GB/s\n", ths[t], ths[t] > 1 ? "s" : "", bw[t]);
    printf("| test | threads | tokens/s | ± sd | of bandwidth limit |\n|---|--:|--:|--:|--:|\n");
    if (jf)
        fprintf(jf, "{\"model\": \"%s\", \"arch\": \"%s\", \"model_bytes\": %llu, \"bytes_per_token\": %.0f, \"kernels\": \"%s\", \"date\": \"%s\", \"results\": [",
                model_path, m->arch_name, (unsigned long long)m->n_bytes, read_bytes, sl_kernels()->name, date);
    bool first = true;
    double kv_bytes = 0, kv_used = 0, anon = 0, filer = 0;
    rc = 0;
    for (int t = 0; t < n_th && !rc; t++) {
        int max_pp = 1;
        for (int i = 0; i < n_pp; i++) max_pp = SL_MAX(max_pp, pps[i]);
        int max_tg = 1;
        for (int i = 0; i < n_tg; i++) max_tg = SL_MAX(max_tg, tgs[i]);
        struct sl_ctx_params cp = sl_ctx_default_params();
        cp.n_ctx = n_ctx > 0 ? (int)n_ctx : SL_MAX(max_pp, max_tg + 1) + max_d;
        cp.n_batch = SL_MAX(max_pp, SL_MIN(max_d, 512)); /* the depth goes in batches of this */
        cp.n_threads = ths[t];
        struct sl_ctx *ctx = NULL;
        struct sl_batch b;
        if (sl_ctx_init(&ctx, m, &cp, &err) || sl_batch_init(&b, cp.n_batch)) {
            sl_ctx_free(ctx);
            rc = cli_fail(&err, NULL);
            break;
        }
        kv_bytes = SL_MAX(kv_bytes, (double)ctx->kv.n_layer * ctx->kv.n_cells *
                                        (double)(ctx->kv.n_embd_k + ctx->kv.n_embd_v) * (double)ctx->kv.elt);
        /* a generated token also reads the KV rows of every earlier position */
        const double kv_row = (double)ctx->kv.n_layer * (double)(ctx->kv.n_embd_k + ctx->kv.n_embd_v) * (double)ctx->kv.elt;
        for (int k = 0; k < n_d * (n_pp + n_tg) && !rc; k++) {
            const int d = ds[k / (n_pp + n_tg)], i = k % (n_pp + n_tg);
            bool pp = i < n_pp;
            int n = pp ? pps[i] : tgs[i - n_pp];
            if (n == 0) continue;
            double v[100], tps;
            rc = run_once(ctx, &b, d, pp ? n : 0, pp ? 0 : n, &tps, &err); /* warm-up */
            for (int r = 0; r < reps && !rc; r++) rc = run_once(ctx, &b, d, pp ? n : 0, pp ? 0 : n, &v[r], &err);
            if (rc) {
                cli_fail(&err, NULL);
                break;
            }
            struct run_stat s = summarize(v, (int)reps);
            const double bytes = read_bytes + kv_row * (d + n / 2.0);
            double frac = !pp && bw[t] > 0 ? bytes * s.mean / (bw[t] * 1e9) : 0;
            char name[48];
            if (d > 0) snprintf(name, sizeof name, "%s%d@d%d", pp ? "pp" : "tg", n, d);
            else snprintf(name, sizeof name, "%s%d", pp ? "pp" : "tg", n);
            printf("| %s | %d | %.1f | %.1f | %s", name, ths[t], s.mean, s.sd, "");
            if (frac > 0) printf("%.0f%% |\n", 100 * frac);
            else printf("|\n");
            if (jf)
                fprintf(jf, "%s\n  {\"test\": \"%s\", \"depth\": %d, \"threads\": %d, \"tokens_per_s\": %.3f, \"sd\": %.3f, \"bandwidth_gbs\": %.2f, \"fraction_of_bandwidth\": %.3f}",
                        first ? "" : ",", name, d, ths[t], s.mean, s.sd, bw[t], frac);
            first = false;
        }
        /* the KV pages written: every test starts at cell 0 */
        kv_used = SL_MAX(kv_used, kv_row * SL_MIN(cp.n_ctx, SL_MAX(max_pp, max_tg + 1) + max_d));
        if (t == n_th - 1) rss_now(&anon, &filer);
        sl_batch_free(&b);
        sl_ctx_free(ctx);
    }
    /* peak resident memory against file + KV cache + 64 MiB */
    struct rusage ru;
    const double peak = getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss * 1024 : 0;
    /* the KV cache counts at its full size in the budget, but only its
     * touched pages are resident: "other" is peak - file - KV touched */
    const double mib = 1 << 20, other = peak - file_bytes - kv_used;
    if (!rc && peak > 0)
        printf("peak memory: %.1f MiB resident = model file %.1f MiB + KV cache %.1f MiB touched (of %.1f) + %.1f "
               "MiB other (budget 64 MiB%s); at the end %.1f MiB anonymous, %.1f MiB file-backed\n",
               peak / mib, file_bytes / mib, kv_used / mib, kv_bytes / mib, other / mib,
               other <= 64 * mib ? "" : ": OVER", anon / mib, filer / mib);
    if (jf) {
        fprintf(jf, "\n], \"peak_rss_bytes\": %.0f, \"file_bytes\": %.0f, \"kv_bytes\": %.0f, \"kv_touched_bytes\": %.0f}\n",
                peak, file_bytes, kv_bytes, kv_used);
        fclose(jf);
    }
    sl_model_free(m);
    return rc ? CLI_EXIT_ERR : 0;
}
