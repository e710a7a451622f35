/*
 * test_repack.c - the load-time repack into row panels (model.c repack,
 * kernels.c sl_panel_pack, kernels/pack_*.c): the fast F16/BF16 and
 * quantized packs against the scalar references on every path and odd
 * size, the packs round-tripping on full and partial panels, and the parallel repack
 * giving the same bytes (panels and logits) as one thread, on synthetic
 * models of odd shapes and on the real files of ../shared/assets.
 */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "convert/synth.h"
#include "engine/forward.h"
#include "engine/kernels.h"
#include "engine/model.h"
#include "test.h"

static const char *const path_names[] = {"scalar", "avx2", "avx512"};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

static void fill_random(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rnd();
}

/* ------------------------------------------------------------------------ */
/* the packs                                                                 */
/* ------------------------------------------------------------------------ */

/* Every path's pack_f16 against sl_panel_pack_f16_ref, byte for byte, on
 * n around the 16-value blocks, partial panels, rows with padding between
 * them, and output both 64-byte aligned (streaming stores) and not; the
 * output starts as garbage, so every byte the panel must zero is checked. */
static void pack_f16_matches_ref_on_every_path_and_odd_size(void)
{
    static const int64_t ns[] = {1, 2, 3, 15, 16, 17, 31, 32, 33, 48, 100, 255, 257, 896};
    static const int nrs[] = {1, 5, 15, 16};
    const size_t cap = sl_panel_size(SL_TYPE_F16, 896) + 128;
    uint8_t *src = malloc(16 * (896 * 2 + 64)), *want = aligned_alloc(64, cap),
            *got = aligned_alloc(64, cap);
    int paths = 0;
    T_TRUE(src && want && got);
    if (!src || !want || !got) goto out;
    for (size_t p = 0; p < sizeof path_names / sizeof *path_names; p++) {
        const struct sl_kernels *k = sl_kernels_get(path_names[p]);
        if (!k) continue;
        paths++;
        T_TRUE(k->pack_f16 != NULL);
        for (size_t in = 0; in < sizeof ns / sizeof *ns; in++)
            for (size_t ir = 0; ir < sizeof nrs / sizeof *nrs; ir++)
                for (int shift = 0; shift < 2; shift++) {
                    const int64_t n = ns[in];
                    const int nr = nrs[ir];
                    const size_t stride = (size_t)n * 2 + (size_t)(shift ? 6 : 0),
                                 sz = sl_panel_size(SL_TYPE_F16, n);
                    uint8_t *g = got + 32 * shift; /* 64-byte aligned, then only 32 */
                    fill_random(src, (size_t)nr * stride);
                    memset(want, 0xA5, cap);
                    memset(got, 0x5A, cap);
                    sl_panel_pack_f16_ref(src, stride, nr, n, want);
                    k->pack_f16(src, stride, nr, n, g);
                    if (memcmp(want, g, sz) != 0) {
                        T_FAIL_AT("%s pack_f16 n=%lld nr=%d shift=%d differs from the reference",
                                  path_names[p], (long long)n, nr, shift);
                        goto out;
                    }
                    /* nothing written past the panel */
                    T_TRUE(g[sz] == 0x5A);
                    /* and the reference is the layout: row r comes back, rows past nr are zero */
                    uint16_t row[896], zero[896] = {0};
                    for (int r = 0; r < 16; r++) {
                        sl_panel_unpack_row(SL_TYPE_F16, want, r, n, row);
                        if (memcmp(row, r < nr ? src + (size_t)r * stride : (const uint8_t *)zero,
                                   (size_t)n * 2)) {
                            T_FAIL_AT("ref pack n=%lld nr=%d: row %d does not unpack to its source",
                                      (long long)n, nr, r);
                            goto out;
                        }
                    }
                    if (n % 2) { /* the zero slice */
                        static const uint8_t z[32];
                        T_TRUE(memcmp(want + 32 * n, z, 32) == 0);
                    }
                }
    }
    T_TRUE(paths >= 1);
    /* sl_panel_pack goes through this process's table for both 16-bit types */
    fill_random(src, 16 * 100 * 2);
    sl_panel_pack_f16_ref(src, 200, 16, 100, want);
    sl_panel_pack(SL_TYPE_BF16, src, 200, 16, 100, got);
    T_TRUE(memcmp(want, got, sl_panel_size(SL_TYPE_BF16, 100)) == 0);
out:
    free(src);
    free(want);
    free(got);
}

/* Random blocks whose fp16 scales are finite (the packs move bytes, but
 * keep the data a plausible weight anyway). */
static void random_blocks(int type, uint8_t *row, int64_t n)
{
    const size_t rs = sl_row_size(type, n);
    fill_random(row, rs);
    const size_t bs = type == SL_TYPE_Q4_0   ? sizeof(struct sl_block_q4_0)
                      : type == SL_TYPE_Q8_0 ? sizeof(struct sl_block_q8_0)
                      : type == SL_TYPE_Q4_K ? sizeof(struct sl_block_q4_K)
                                             : sizeof(struct sl_block_q6_K);
    for (size_t o = 0; o + bs <= rs; o += bs) {
        const uint16_t d = (uint16_t)(0x2000 | (rnd() & 0x0fff)); /* a small positive fp16 */
        if (type == SL_TYPE_Q6_K)
            memcpy(row + o + bs - 2, &d, 2); /* d is the last field */
        else
            memcpy(row + o, &d, 2);
    }
}

/* The quantized packs (not Q5_0, another file's subject) write every byte
 * of the panel: a panel packed over garbage equals one packed over zeros,
 * rows unpack to their source and rows past nr as a zero panel's do. */
static void quantized_packs_write_the_whole_panel_and_round_trip(void)
{
    static const int types[] = {SL_TYPE_Q4_0, SL_TYPE_Q8_0, SL_TYPE_Q4_K, SL_TYPE_Q6_K};
    static const int64_t ns_32[] = {32, 64, 96, 896}, ns_k[] = {256, 512, 768};
    static const int nrs[] = {3, 15, 16};
    const size_t cap = 16 * 4096;
    uint8_t *src = malloc(16 * 2048), *a = aligned_alloc(64, cap), *b = aligned_alloc(64, cap),
            *row = malloc(2048), *zrow = calloc(1, 2048);
    T_TRUE(src && a && b && row && zrow);
    if (!src || !a || !b || !row || !zrow) goto out;
    for (size_t it = 0; it < sizeof types / sizeof *types; it++) {
        const int type = types[it];
        const bool kq = type == SL_TYPE_Q4_K || type == SL_TYPE_Q6_K;
        for (int in = 0; in < (kq ? 3 : 4); in++)
            for (size_t ir = 0; ir < sizeof nrs / sizeof *nrs; ir++) {
                const int64_t n = kq ? ns_k[in] : ns_32[in];
                const int nr = nrs[ir];
                const size_t rs = sl_row_size(type, n), sz = sl_panel_size(type, n);
                T_TRUE(sz > 0 && sz <= cap && rs <= 2048);
                for (int r = 0; r < nr; r++)
                    random_blocks(type, src + (size_t)r * rs, n);
                memset(a, 0xFF, cap);
                memset(b, 0, cap);
                sl_panel_pack(type, src, rs, nr, n, a);
                sl_panel_pack(type, src, rs, nr, n, b);
                if (memcmp(a, b, sz) != 0) {
                    T_FAIL_AT("type %d n=%lld nr=%d: a byte of the panel depends on what was there "
                              "before",
                              type, (long long)n, nr);
                    goto out;
                }
                memset(b, 0, sz); /* rows past nr: what a zero panel unpacks to (Q8_0: -128s) */
                sl_panel_unpack_row(type, b, 0, n, zrow);
                for (int r = 0; r < 16; r++) {
                    sl_panel_unpack_row(type, a, r, n, row);
                    if (memcmp(row, r < nr ? src + (size_t)r * rs : zrow, rs) != 0) {
                        T_FAIL_AT("type %d n=%lld nr=%d: row %d does not come back", type,
                                  (long long)n, nr, r);
                        goto out;
                    }
                }
            }
    }
out:
    free(src);
    free(a);
    free(b);
    free(row);
    free(zrow);
}

/* Every path's pack_q (full panels of Q4_0, Q8_0, Q4_K, Q6_K) against
 * sl_panel_pack_ref, byte for byte, with padding between the rows and the
 * output 64-byte aligned (streaming stores) or not, over garbage. */
static void pack_q_matches_ref_on_every_path(void)
{
    static const int types[] = {SL_TYPE_Q4_0, SL_TYPE_Q8_0, SL_TYPE_Q4_K, SL_TYPE_Q6_K};
    static const int64_t ns_32[] = {64, 128, 896, 4864},
                         ns_k[] = {256, 512, 2048, 4864}; /* 4864 = 19 x 256 */
    const size_t cap =
        SL_MAX(sl_panel_size(SL_TYPE_Q8_0, 4864), sl_panel_size(SL_TYPE_Q6_K, 4864)) + 128;
    uint8_t *src = malloc(16 * (sl_row_size(SL_TYPE_Q8_0, 4864) + 64)),
            *want = aligned_alloc(64, cap), *got = aligned_alloc(64, cap);
    int tried = 0;
    T_TRUE(src && want && got);
    if (!src || !want || !got) goto out;
    for (size_t p = 0; p < sizeof path_names / sizeof *path_names; p++) {
        const struct sl_kernels *k = sl_kernels_get(path_names[p]);
        if (!k || !k->pack_q) continue;
        for (size_t it = 0; it < sizeof types / sizeof *types; it++)
            for (int in = 0; in < 4; in++)
                for (int shift = 0; shift < 2; shift++) {
                    const int type = types[it];
                    const int64_t n =
                        type == SL_TYPE_Q4_K || type == SL_TYPE_Q6_K ? ns_k[in] : ns_32[in];
                    const size_t rs = sl_row_size(type, n), stride = rs + (shift ? 6 : 0),
                                 sz = sl_panel_size(type, n);
                    uint8_t *g = got + 32 * shift;
                    for (int r = 0; r < 16; r++)
                        random_blocks(type, src + (size_t)r * stride, n);
                    memset(want, 0xA5, cap);
                    memset(got, 0x5A, cap);
                    sl_panel_pack_ref(type, src, stride, 16, n, want);
                    k->pack_q(type, src, stride, n, g);
                    tried++;
                    if (memcmp(want, g, sz) != 0) {
                        size_t at = 0;
                        while (want[at] == g[at])
                            at++;
                        T_FAIL_AT("%s pack_q type %d n=%lld shift=%d differs from the reference at "
                                  "byte %zu",
                                  path_names[p], type, (long long)n, shift, at);
                        goto out;
                    }
                    T_TRUE(g[sz] == 0x5A);
                }
    }
    if (!tried) t_skip("no kernel path of this CPU has pack_q");
out:
    free(src);
    free(want);
    free(got);
}

/* ------------------------------------------------------------------------ */
/* the parallel repack                                                       */
/* ------------------------------------------------------------------------ */

struct loaded {
    uint8_t *panels; /* a copy of the arena, or NULL if nothing was repacked */
    size_t panels_size;
    float *logits; /* n_vocab logits of the last of 8 tokens */
    int n_vocab;
};

/* Load path with SLUICE_LOAD_THREADS=threads, copy its panels, decode 8
 * tokens on one thread and keep the last logits; and check that each
 * repacked tensor's panels unpack to the file's rows (a few rows each). */
static bool load_with_threads(const char *path, const char *threads, struct loaded *out)
{
    struct sl_err err = {0};
    struct sl_model *m = NULL;
    struct sl_ctx *ctx = NULL;
    struct sl_batch bt = {0};
    bool ok = false;
    memset(out, 0, sizeof *out);
    setenv("SLUICE_LOAD_THREADS", threads, 1);
    T_OK(sl_model_load(&m, path, false, &err), &err);
    unsetenv("SLUICE_LOAD_THREADS");
    if (!m) return false;
    if (m->panels) {
        out->panels_size = m->panels_size;
        out->panels = malloc(m->panels_size);
        if (!out->panels) goto done;
        memcpy(out->panels, m->panels, m->panels_size);
    }
    for (int il = 0; il <= m->hp.n_layer; il++) {
        const struct sl_layer *L = il < m->hp.n_layer ? &m->layers[il] : NULL;
        const struct sl_tensor *ws[] = {L ? &L->wq : &m->output, L ? &L->wk : NULL,
                                        L ? &L->up : NULL, L ? &L->down : NULL};
        for (int i = 0; i < 4; i++) {
            const struct sl_tensor *t = ws[i];
            if (!t || !t->panel) continue;
            const size_t psz = sl_panel_size(t->type, t->ne[0]);
            uint8_t *row = malloc(t->row_size);
            if (!row) goto done;
            for (int64_t r = 0; r < t->ne[1]; r += 7) { /* every 7th: all 16 panel slots */
                sl_panel_unpack_row(t->type, (const uint8_t *)t->panel + (size_t)(r / 16) * psz,
                                    (int)(r % 16), t->ne[0], row);
                if (memcmp(row, (const uint8_t *)t->panel_src + (size_t)r * t->row_size,
                           t->row_size)) {
                    T_FAIL_AT("%s: layer %d weight %d row %lld: the panel is not the file's row",
                              path, il, i, (long long)r);
                    free(row);
                    goto done;
                }
            }
            free(row);
        }
    }
    struct sl_ctx_params cp = sl_ctx_default_params();
    cp.n_ctx = 32;
    cp.n_batch = 8;
    cp.n_threads = 1;
    T_OK(sl_ctx_init(&ctx, m, &cp, &err), &err);
    if (!ctx || sl_batch_init(&bt, 8)) goto done;
    for (int i = 0; i < 8; i++)
        sl_batch_add(&bt, (i * 97 + 3) % m->hp.n_vocab, i, 0, i == 7);
    T_OK(sl_decode(ctx, &bt, &err), &err);
    out->n_vocab = m->hp.n_vocab;
    out->logits = malloc((size_t)m->hp.n_vocab * sizeof(float));
    const float *lg = sl_ctx_logits(ctx, 0);
    if (!out->logits || !lg) goto done;
    memcpy(out->logits, lg, (size_t)m->hp.n_vocab * sizeof(float));
    ok = true;
done:
    sl_batch_free(&bt);
    sl_ctx_free(ctx);
    sl_model_free(m);
    return ok;
}

static void loaded_free(struct loaded *l)
{
    free(l->panels);
    free(l->logits);
}

/* One thread against 2 and 3 (more threads than items in places, more
 * than cores): the same arena bytes and the same logits, bit for bit. */
static void same_bytes_with_any_thread_count(const char *path, const char *what)
{
    struct loaded one, many;
    if (!load_with_threads(path, "1", &one)) {
        loaded_free(&one);
        return;
    }
    T_TRUE(one.panels != NULL || strcmp(sl_kernels()->name, "scalar") == 0);
    for (int nt = 2; nt <= 3; nt++) {
        const char *threads = nt == 2 ? "2" : "3";
        if (!load_with_threads(path, threads, &many)) {
            loaded_free(&many);
            break;
        }
        T_EQ_INT(many.panels_size, one.panels_size);
        if (one.panels && many.panels && many.panels_size == one.panels_size &&
            memcmp(one.panels, many.panels, one.panels_size) != 0) {
            size_t at = 0;
            while (one.panels[at] == many.panels[at])
                at++;
            T_FAIL_AT("%s: %s threads repack differs from one thread at byte %zu of %zu", what,
                      threads, at, one.panels_size);
        }
        T_TRUE(one.n_vocab == many.n_vocab &&
               memcmp(one.logits, many.logits, (size_t)one.n_vocab * sizeof(float)) == 0);
        loaded_free(&many);
    }
    loaded_free(&one);
}

/* Synthetic models of odd shapes: row counts not a multiple of 16 (vocab
 * 20007, F16 ffn 201), an odd number of values per row (F16 down: 201;
 * Q8_0/Q4_0 embd 96 = three blocks), and embeddings of several 4 MiB
 * items, so that items of one tensor go to different threads. */
static void parallel_repack_is_bit_identical_on_odd_synthetic_shapes(void)
{
    static const struct {
        int type;
        int32_t embd, ff, vocab;
    } cases[] = {
        {SL_TYPE_F16, 128, 201, 20007},  {SL_TYPE_BF16, 128, 201, 20007},
        {SL_TYPE_Q8_0, 96, 160, 50007},  {SL_TYPE_Q4_0, 96, 160, 50007},
        {SL_TYPE_Q4_K, 256, 256, 40007}, {SL_TYPE_Q6_K, 256, 256, 20007},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct sl_synth_params p = sl_synth_default_params();
        struct sl_err err = {0};
        char name[64], what[96];
        snprintf(name, sizeof name, "repack-%zu.gguf", i);
        const char *path = t_tmp_path(name);
        p.type = cases[i].type;
        p.n_embd = cases[i].embd;
        p.n_ff = cases[i].ff;
        p.n_vocab = cases[i].vocab;
        p.n_head = 4;
        p.n_head_kv = 2;
        p.seed = 7 + i;
        T_OK(sl_synth_write(&p, path, NULL, NULL, &err), &err);
        snprintf(what, sizeof what, "synthetic type %d embd %d ff %d vocab %d", cases[i].type,
                 cases[i].embd, cases[i].ff, cases[i].vocab);
        same_bytes_with_any_thread_count(path, what);
        unlink(path);
    }
}

/* The conformance models of ../shared/assets: every architecture and
 * every type with panels. */
static void parallel_repack_is_bit_identical_on_real_files(void)
{
    static const char *const files[] = {
        "conformance/models/llama-s1-F16.gguf",       "conformance/models/llama-s1-BF16.gguf",
        "conformance/models/llama-s1-Q8_0.gguf",      "conformance/models/llama-s1-Q4_0.gguf",
        "conformance/models/llama-s1-Q4_K_M.gguf",    "conformance/models/qwen2-s1-Q6_K.gguf",
        "conformance/models/qwen2-s1-F16.gguf",       "conformance/models/gemma3-s1-Q4_K_M.gguf",
        "conformance/models/phi3-s1-F16.gguf",        "models/stories260K/stories260K.F16.gguf",
        "models/stories260K/stories260K.Q4_K_M.gguf",
    };
    if (!t_assets()) {
        t_skip("../shared/assets is absent (set SLUICE_ASSETS): no real models to repack");
        return;
    }
    int n = 0;
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        const char *path = t_asset(files[i]);
        if (!path || access(path, R_OK) != 0) continue;
        char copy[4096];
        snprintf(copy, sizeof copy, "%s", path);
        same_bytes_with_any_thread_count(copy, files[i]);
        n++;
    }
    if (n == 0) t_skip("none of the conformance models is in ../shared/assets");
}

/* A bad SLUICE_LOAD_THREADS warns and loads with the default. */
static void bad_thread_count_falls_back_to_the_default(void)
{
    struct sl_synth_params p = sl_synth_default_params();
    struct sl_err err = {0};
    struct sl_model *m = NULL;
    const char *path = t_tmp_path("repack-bad.gguf");
    p.type = SL_TYPE_Q8_0;
    T_OK(sl_synth_write(&p, path, NULL, NULL, &err), &err);
    setenv("SLUICE_LOAD_THREADS", "lots", 1);
    T_OK(sl_model_load(&m, path, false, &err), &err);
    unsetenv("SLUICE_LOAD_THREADS");
    T_TRUE(m != NULL);
    sl_model_free(m);
    unlink(path);
}

int main(void)
{
    T_RUN(pack_f16_matches_ref_on_every_path_and_odd_size);
    T_RUN(quantized_packs_write_the_whole_panel_and_round_trip);
    T_RUN(pack_q_matches_ref_on_every_path);
    T_RUN(parallel_repack_is_bit_identical_on_odd_synthetic_shapes);
    T_RUN(parallel_repack_is_bit_identical_on_real_files);
    T_RUN(bad_thread_count_falls_back_to_the_default);
    return t_done();
}
