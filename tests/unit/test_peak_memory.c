/*
 * test_peak_memory.c - what a loaded model and a context keep resident
 * (docs/performance.md, "Peak memory"): once the weights are repacked into
 * panels the file's pages behind them are released, so nothing the forward
 * pass reads may still point into the file mapping. The norms and biases
 * sit in the file between the big weights; read from there, each maps the
 * released pages around it back (fault-around, or a whole 2 MiB page-cache
 * folio on a file system that caches in large folios: 53 MiB of a 138 MiB
 * model came back this way on the first decode).
 */
#include <sys/mman.h>
#include <unistd.h>

#include "convert/synth.h"
#include "engine/forward.h"
#include "engine/kernels.h"
#include "engine/model.h"
#include "test.h"

/* A qwen2 (q/k/v biases) of a few MiB in Q8_0, which every SIMD table has
 * panels for, with a tied output (the embedding lookup reads the panels
 * too); written once per process. */
static const char *model_path(void)
{
    static char path[4096];
    static bool made;
    if (!made) {
        struct sl_synth_params p = sl_synth_default_params();
        struct sl_err err = {0};
        snprintf(path, sizeof path, "%s", t_tmp_path("peak.gguf"));
        p.arch = "qwen2";
        p.type = SL_TYPE_Q8_0;
        p.n_vocab = 2048;
        p.n_embd = 256;
        p.n_ff = 768;
        p.n_layer = 4;
        p.n_head = 4;
        p.n_head_kv = 2;
        p.tied = true;
        T_OK(sl_synth_write(&p, path, NULL, NULL, &err), &err);
        made = true;
    }
    return path;
}

/* Resident bytes of this process's mapping of `path` (/proc/self/smaps),
 * or -1 if that cannot be read. */
static long long mapping_rss(const char *path)
{
    char line[4608];
    long long rss = -1;
    bool in = false;
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) {
        long long kb;
        unsigned long a, b;
        if (sscanf(line, "%lx-%lx ", &a, &b) == 2) {
            /* a mapping's first line: "start-end perms offset dev inode path" */
            const size_t n = strlen(line), pl = strlen(path);
            in = n > pl && strncmp(line + n - 1 - pl, path, pl) == 0;
            continue;
        }
        if (in && sscanf(line, "Rss: %lld kB", &kb) == 1) rss = (rss < 0 ? 0 : rss) + kb * 1024;
    }
    fclose(f);
    return rss;
}

static bool inside(const void *p, size_t n, const void *lo, size_t len)
{
    const char *c = p, *l = lo;
    return c >= l && c + n <= l + len;
}

static void repacked_model_keeps_norms_and_biases_outside_the_file(void)
{
    struct sl_err err = {0};
    struct sl_model *m = NULL;
    T_OK(sl_model_load(&m, model_path(), false, &err), &err);
    if (!m) return;
    if (!m->panels) {
        t_skip("the kernel table has no Q8_0 panels (scalar path): nothing is repacked");
        sl_model_free(m);
        return;
    }
    const struct sl_gguf *g = m->gguf;
    int n_vec = 0;
    for (int il = 0; il < m->hp.n_layer; il++) {
        const struct sl_layer *L = &m->layers[il];
        const struct sl_tensor *vs[] = {&L->attn_norm, &L->bq, &L->bk, &L->bv, &L->ffn_norm};
        const char *names[] = {"attn_norm", "attn_q.bias", "attn_k.bias", "attn_v.bias", "ffn_norm"};
        for (int i = 0; i < 5; i++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s%s", il, names[i], i == 0 || i == 4 ? ".weight" : "");
            const struct sl_gguf_tensor *gt = sl_gguf_find_tensor(g, name);
            T_TRUE(gt != NULL && vs[i]->data != NULL);
            if (!gt || !vs[i]->data) continue;
            n_vec++;
            /* in the model's own memory, 64-byte aligned, the file's values */
            T_TRUE(inside(vs[i]->data, vs[i]->row_size, m->panels, m->panels_size));
            T_TRUE(((uintptr_t)vs[i]->data & 63) == 0);
            T_TRUE(vs[i]->row_size == gt->size && memcmp(vs[i]->data, gt->data, gt->size) == 0);
        }
    }
    T_EQ_INT(n_vec, 5 * m->hp.n_layer);
    T_TRUE(inside(m->output_norm.data, m->output_norm.row_size, m->panels, m->panels_size));
    sl_model_free(m);
}

static void decode_reads_nothing_from_the_file_of_a_repacked_model(void)
{
    struct sl_err err = {0};
    struct sl_model *m = NULL;
    struct sl_ctx *ctx = NULL;
    struct sl_batch b = {0};
    const char *path = model_path();
    T_OK(sl_model_load(&m, path, false, &err), &err);
    if (!m) return;
    if (!m->panels) {
        t_skip("the kernel table has no Q8_0 panels (scalar path): the weights stay in the file");
        sl_model_free(m);
        return;
    }
    /* Drop every page of the file from this process, as the load does for
     * the weights (a partly released 2 MiB page-cache folio goes whole);
     * whatever decode reads from the file comes back and shows in Rss. */
    T_TRUE(m->gguf->mapped);
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), lo = (uintptr_t)m->gguf->base / pg * pg;
    T_TRUE(madvise((void *)lo, (uintptr_t)m->gguf->base + m->gguf->size - lo, MADV_DONTNEED) == 0);
    const long long loaded = mapping_rss(path);
    if (loaded < 0) {
        t_skip("/proc/self/smaps is not readable here");
        sl_model_free(m);
        return;
    }
    T_TRUE(loaded == 0);
    struct sl_ctx_params cp = sl_ctx_default_params();
    cp.n_ctx = 64;
    cp.n_batch = 16;
    cp.n_threads = 2;
    T_OK(sl_ctx_init(&ctx, m, &cp, &err), &err);
    T_OK(sl_batch_init(&b, 16), &err);
    if (ctx && b.cap) {
        for (int i = 0; i < 16; i++) sl_batch_add(&b, (i * 131 + 7) % m->hp.n_vocab, i, 0, i == 15);
        T_OK(sl_decode(ctx, &b, &err), &err);
        sl_batch_clear(&b);
        sl_batch_add(&b, 5, 16, 0, true);
        T_OK(sl_decode(ctx, &b, &err), &err);
        const long long after = mapping_rss(path);
        if (after != 0) T_FAIL_AT("decode read %lld bytes of the model file back in", after);
        t_checks++;
    }
    sl_batch_free(&b);
    sl_ctx_free(ctx);
    sl_model_free(m);
}

int main(void)
{
    T_RUN(repacked_model_keeps_norms_and_biases_outside_the_file);
    T_RUN(decode_reads_nothing_from_the_file_of_a_repacked_model);
    unlink(model_path());
    return t_done();
}
