/*
 * model.c - bind a GGUF file to struct sl_model (engine layer).
 *
 * Reads the architecture's hyper-parameters from `<arch>.*` metadata, finds
 * every tensor the architecture needs under llama.cpp's names
 * (blk.N.attn_q.weight, ...), and checks each one's shape and type before
 * the forward pass ever touches it. Weights stay in the mapping, quantized;
 * the types the kernel table has row panels for (Q4_0, Q5_0, Q8_0, Q4_K
 * and Q6_K on AVX-512 and AVX2) are repacked once into an anonymous
 * mapping of about the same size, with copies of the norms and biases, and
 * the file's pages behind them are released (see "repacking" below).
 */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../base/fnv.h"
#include "../base/pool.h"
#include "kernels.h"
#include "vocab.h"

static const char *const arch_names[SL_ARCH_COUNT] = {
    [SL_ARCH_LLAMA] = "llama", [SL_ARCH_QWEN2] = "qwen2",   [SL_ARCH_QWEN3] = "qwen3",
    [SL_ARCH_PHI3] = "phi3",   [SL_ARCH_GEMMA2] = "gemma2", [SL_ARCH_GEMMA3] = "gemma3",
};

const char *sl_arch_name(enum sl_arch a)
{
    return (unsigned)a < SL_ARCH_COUNT ? arch_names[a] : "?";
}

/* ------------------------------------------------------------------------ */
/* metadata                                                                  */
/* ------------------------------------------------------------------------ */

struct loader {
    struct sl_model *m;
    struct sl_gguf *g;
    struct sl_err *err;
};

/* `<arch>.<suffix>` as u32; required unless def >= 0. */
static int hp_u32(struct loader *ld, const char *suffix, int64_t def, int32_t *out)
{
    char key[128];
    uint32_t v;
    snprintf(key, sizeof key, "%s.%s", ld->m->arch_name, suffix);
    int rc = sl_gguf_get_u32(ld->g, key, &v, ld->err);
    if (rc == SL_ENOTFOUND && def >= 0) {
        *out = (int32_t)def;
        return 0;
    }
    if (rc == SL_ENOTFOUND)
        return sl_err_set(ld->err, SL_EFORMAT, "model: required key '%s' is missing", key);
    if (rc) return rc;
    if (v > INT32_MAX) return sl_err_set(ld->err, SL_EFORMAT, "model: '%s' = %u is too large", key, v);
    *out = (int32_t)v;
    return 0;
}

static int hp_f32(struct loader *ld, const char *suffix, float def, float *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", ld->m->arch_name, suffix);
    int rc = sl_gguf_get_f32(ld->g, key, out, ld->err);
    if (rc == SL_ENOTFOUND) {
        *out = def;
        return 0;
    }
    return rc;
}

static int read_hparams(struct loader *ld)
{
    struct sl_model *m = ld->m;
    struct sl_hparams *hp = &m->hp;
    int rc;
    bool gemma = m->arch == SL_ARCH_GEMMA2 || m->arch == SL_ARCH_GEMMA3;

    if ((rc = hp_u32(ld, "embedding_length", -1, &hp->n_embd))) return rc;
    if ((rc = hp_u32(ld, "block_count", -1, &hp->n_layer))) return rc;
    if ((rc = hp_u32(ld, "feed_forward_length", -1, &hp->n_ff))) return rc;
    if ((rc = hp_u32(ld, "attention.head_count", -1, &hp->n_head))) return rc;
    if ((rc = hp_u32(ld, "attention.head_count_kv", hp->n_head, &hp->n_head_kv))) return rc;
    if ((rc = hp_u32(ld, "context_length", 2048, &hp->n_ctx_train))) return rc;
    if (hp->n_embd <= 0 || hp->n_layer <= 0 || hp->n_head <= 0 || hp->n_head_kv <= 0 || hp->n_ff <= 0)
        return sl_err_set(ld->err, SL_EFORMAT,
                          "model: bad shape: n_embd %d, n_layer %d, n_head %d, n_head_kv %d, n_ff %d",
                          hp->n_embd, hp->n_layer, hp->n_head, hp->n_head_kv, hp->n_ff);
    if (hp->n_layer > 4096 || hp->n_head % hp->n_head_kv != 0)
        return sl_err_set(ld->err, SL_EFORMAT,
                          "model: bad shape: n_layer %d, n_head %d not a multiple of n_head_kv %d",
                          hp->n_layer, hp->n_head, hp->n_head_kv);
    if ((rc = hp_u32(ld, "attention.key_length", hp->n_embd / hp->n_head, &hp->head_dim))) return rc;
    if ((rc = hp_u32(ld, "attention.value_length", hp->head_dim, &hp->head_dim_v))) return rc;
    if ((rc = hp_u32(ld, "rope.dimension_count", hp->head_dim, &hp->n_rot))) return rc;
    if (hp->head_dim <= 0 || hp->head_dim > 1024 || hp->head_dim_v <= 0 || hp->head_dim_v > 1024 ||
        hp->n_rot <= 0 || hp->n_rot > hp->head_dim || hp->n_rot % 2)
        return sl_err_set(ld->err, SL_EFORMAT, "model: bad head shape: key %d, value %d, rope dims %d",
                          hp->head_dim, hp->head_dim_v, hp->n_rot);

    if ((rc = hp_f32(ld, "attention.layer_norm_rms_epsilon", 1e-5f, &hp->norm_eps))) return rc;
    if ((rc = hp_f32(ld, "rope.freq_base", 10000.0f, &hp->rope_base))) return rc;
    if ((rc = hp_f32(ld, "rope.freq_base_swa", 10000.0f, &hp->rope_base_swa))) return rc;
    if (!(hp->norm_eps >= 0 && hp->norm_eps < 1) || !(hp->rope_base > 0) || !(hp->rope_base_swa > 0))
        return sl_err_set(ld->err, SL_EFORMAT, "model: bad norm epsilon %g or RoPE base %g",
                          (double)hp->norm_eps, (double)hp->rope_base);

    /* RoPE scaling: linear is supported; others are refused, not ignored */
    hp->rope_scale = 1.0f;
    char key[128];
    struct sl_str stype;
    snprintf(key, sizeof key, "%s.rope.scaling.type", m->arch_name);
    if (sl_gguf_get_str(ld->g, key, &stype, NULL) == 0 && !sl_str_eq(stype, "none")) {
        if (!sl_str_eq(stype, "linear"))
            return sl_err_set(ld->err, SL_EUNSUPPORTED, "model: RoPE scaling type '%.*s' is not supported",
                              (int)SL_MIN(stype.len, 32), stype.ptr);
        float factor;
        if ((rc = hp_f32(ld, "rope.scaling.factor", 1.0f, &factor))) return rc;
        if (!(factor > 0)) return sl_err_set(ld->err, SL_EFORMAT, "model: bad rope.scaling.factor");
        hp->rope_scale = 1.0f / factor;
    }

    hp->rope_type = m->arch == SL_ARCH_LLAMA ? SL_ROPE_NORMAL : SL_ROPE_NEOX;
    hp->ffn_act = gemma ? SL_FFN_GELU : SL_FFN_SILU;
    hp->embd_scale = gemma ? sqrtf((float)hp->n_embd) : 1.0f;
    hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
    if (m->arch == SL_ARCH_GEMMA2) {
        if ((rc = hp_f32(ld, "attn_logit_softcapping", 50.0f, &hp->attn_softcap))) return rc;
        if ((rc = hp_f32(ld, "final_logit_softcapping", 30.0f, &hp->final_softcap))) return rc;
    } else {
        if ((rc = hp_f32(ld, "final_logit_softcapping", 0.0f, &hp->final_softcap))) return rc;
    }
    if (hp->attn_softcap < 0 || hp->final_softcap < 0)
        return sl_err_set(ld->err, SL_EFORMAT, "model: negative soft-capping value");

    int32_t swa_pattern = 0;
    if (gemma || m->arch == SL_ARCH_PHI3) {
        if ((rc = hp_u32(ld, "attention.sliding_window", 0, &hp->n_swa))) return rc;
        /* gemma2 alternates local/global; gemma3 has 5 local per global */
        int32_t def = m->arch == SL_ARCH_GEMMA2 ? 2 : m->arch == SL_ARCH_GEMMA3 ? 6 : 1;
        if ((rc = hp_u32(ld, "attention.sliding_window_pattern", def, &swa_pattern))) return rc;
        if (swa_pattern <= 0) swa_pattern = 1;
    }

    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return sl_err_set(ld->err, SL_ENOMEM, "model: out of memory");
    for (int il = 0; il < hp->n_layer; il++) {
        struct sl_layer *L = &m->layers[il];
        /* like llama.cpp's set_swa_pattern: the last layer of each group is global */
        L->swa = hp->n_swa > 0 && (swa_pattern == 1 || il % swa_pattern < swa_pattern - 1);
        L->rope_base = hp->rope_base;
        L->rope_scale = hp->rope_scale;
        if (m->arch == SL_ARCH_GEMMA3 && L->swa) {
            L->rope_base = hp->rope_base_swa;
            L->rope_scale = 1.0f;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* tensors                                                                   */
/* ------------------------------------------------------------------------ */

/* Bind tensor `name` and check its shape: (rows, cols), rows == 0 for 1-D.
 * A missing optional tensor leaves t->data NULL. */
static int bind(struct loader *ld, struct sl_tensor *t, const char *name, int64_t cols, int64_t rows,
                bool required)
{
    const struct sl_gguf_tensor *gt = sl_gguf_find_tensor(ld->g, name);
    memset(t, 0, sizeof *t);
    if (!gt) {
        if (!required) return 0;
        return sl_err_set(ld->err, SL_EFORMAT, "model: tensor '%s' is missing (architecture %s)", name,
                          ld->m->arch_name);
    }
    bool ok = gt->ne[0] == cols && gt->ne[2] == 1 && gt->ne[3] == 1 &&
              (rows == 0 ? gt->n_dims == 1 || gt->ne[1] == 1 : gt->ne[1] == rows);
    if (!ok)
        return sl_err_set(ld->err, SL_EFORMAT,
                          "model: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                          name, (long long)gt->ne[0], (long long)gt->ne[1], (long long)gt->ne[2],
                          (long long)gt->ne[3], (long long)cols, (long long)(rows ? rows : 1));
    const struct sl_type_traits *tr = sl_type_traits(gt->type);
    bool vec = rows == 0;
    if (!tr || (vec ? gt->type != SL_TYPE_F32 : !tr->weight_ok))
        return sl_err_set(ld->err, SL_EUNSUPPORTED, "model: tensor '%s' has type %s, %s", name,
                          tr ? tr->name : "unknown",
                          vec ? "norms and biases must be F32" : "not supported for weights");
    t->data = gt->data;
    t->type = (int)gt->type;
    for (int i = 0; i < 4; i++) t->ne[i] = gt->ne[i];
    t->row_size = sl_row_size(t->type, gt->ne[0]);
    ld->m->n_params += (uint64_t)gt->ne[0] * (uint64_t)gt->ne[1];
    return 0;
}

static int bind_layer(struct loader *ld, int il)
{
    struct sl_model *m = ld->m;
    const struct sl_hparams *hp = &m->hp;
    struct sl_layer *L = &m->layers[il];
    enum sl_arch a = m->arch;
    int64_t E = hp->n_embd, F = hp->n_ff;
    int64_t nq = (int64_t)hp->n_head * hp->head_dim, nk = (int64_t)hp->n_head_kv * hp->head_dim;
    int64_t nv = (int64_t)hp->n_head_kv * hp->head_dim_v;
    bool gemma = a == SL_ARCH_GEMMA2 || a == SL_ARCH_GEMMA3;
    char n[96];
    int rc = 0;

#define T(field, suffix, cols, rows, req)                                 \
    do {                                                                  \
        snprintf(n, sizeof n, "blk.%d." suffix, il);                      \
        if ((rc = bind(ld, &L->field, n, (cols), (rows), (req)))) return rc; \
    } while (0)

    T(attn_norm, "attn_norm.weight", E, 0, true);
    if (a == SL_ARCH_PHI3) {
        T(wqkv, "attn_qkv.weight", E, nq + nk + nv, false);
    }
    if (!L->wqkv.data) {
        T(wq, "attn_q.weight", E, nq, true);
        T(wk, "attn_k.weight", E, nk, true);
        T(wv, "attn_v.weight", E, nv, true);
    }
    T(bq, "attn_q.bias", nq, 0, a == SL_ARCH_QWEN2);
    T(bk, "attn_k.bias", nk, 0, a == SL_ARCH_QWEN2);
    T(bv, "attn_v.bias", nv, 0, a == SL_ARCH_QWEN2);
    T(q_norm, "attn_q_norm.weight", hp->head_dim, 0, a == SL_ARCH_QWEN3 || a == SL_ARCH_GEMMA3);
    T(k_norm, "attn_k_norm.weight", hp->head_dim, 0, a == SL_ARCH_QWEN3 || a == SL_ARCH_GEMMA3);
    T(wo, "attn_output.weight", (int64_t)hp->n_head * hp->head_dim_v, E, true);
    T(post_attn_norm, "post_attention_norm.weight", E, 0, gemma);
    T(ffn_norm, "ffn_norm.weight", E, 0, true);
    if (a == SL_ARCH_PHI3) {
        T(gate_up, "ffn_up.weight", E, 2 * F, true);
    } else {
        T(gate, "ffn_gate.weight", E, F, true);
        T(up, "ffn_up.weight", E, F, true);
    }
    T(down, "ffn_down.weight", F, E, true);
    T(post_ffn_norm, "post_ffw_norm.weight", E, 0, gemma);
#undef T
    return 0;
}

static int bind_tensors(struct loader *ld)
{
    struct sl_model *m = ld->m;
    struct sl_hparams *hp = &m->hp;
    int rc;
    const struct sl_gguf_tensor *te = sl_gguf_find_tensor(ld->g, "token_embd.weight");
    if (!te) return sl_err_set(ld->err, SL_EFORMAT, "model: tensor 'token_embd.weight' is missing");
    if (te->ne[1] <= 0 || te->ne[1] > INT32_MAX)
        return sl_err_set(ld->err, SL_EFORMAT, "model: bad vocabulary size %lld", (long long)te->ne[1]);
    hp->n_vocab = (int32_t)te->ne[1];
    if ((rc = bind(ld, &m->tok_embd, "token_embd.weight", hp->n_embd, hp->n_vocab, true))) return rc;
    if ((rc = bind(ld, &m->output_norm, "output_norm.weight", hp->n_embd, 0, true))) return rc;
    if (m->arch != SL_ARCH_GEMMA2 &&
        (rc = bind(ld, &m->output, "output.weight", hp->n_embd, hp->n_vocab, false)))
        return rc;
    if (!m->output.data) m->output = m->tok_embd; /* tied */

    /* Phi-3.5/128k LongRoPE: refuse rather than compute the wrong thing */
    if (sl_gguf_find_tensor(ld->g, "rope_factors_long.weight") || sl_gguf_find_tensor(ld->g, "rope_factors_short.weight"))
        return sl_err_set(ld->err, SL_EUNSUPPORTED,
                          "model: LongRoPE (rope_factors_long/short, 128k-context Phi-3 variants) is not supported");
    struct sl_tensor rf;
    if ((rc = bind(ld, &rf, "rope_freqs.weight", hp->n_rot / 2, 0, false))) return rc;
    m->rope_freqs = rf.data;

    for (int il = 0; il < hp->n_layer; il++)
        if ((rc = bind_layer(ld, il))) return rc;
    for (uint64_t i = 0; i < ld->g->n_tensors; i++) m->n_bytes += ld->g->tensors[i].size;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* repacking                                                                 */
/* ------------------------------------------------------------------------ */

/*
 * The matmul weights whose type has a panel kernel in this process's table
 * (kernels.h "Row panels") are copied into panels of 16 rows: one
 * contiguous stream per 16 rows, so decode reads every weight byte once in
 * order and the kernel uses the full vector width. The copy lives in one
 * anonymous mapping (transparent huge pages asked for) of the weights' size
 * (Q4_K +2.8%, Q6_K +1%: unpacked scales) plus at most 15 zero rows per
 * tensor. As each stretch of a tensor is
 * packed, the file's pages behind it are dropped from this process
 * (MADV_DONTNEED on a read-only file mapping: they stay readable and come
 * back from the page cache if anything reads data; a tied output's
 * embedding lookup reads the panels), so resident memory stays
 * about the file's size during and after the load. The 1-D weights (norms,
 * biases, rope_freqs: 0.1-0.3 MiB) are copied to the end of the same
 * mapping first, so that once the load is done the forward pass reads
 * nothing from the file. SLUICE_REPACK=0 keeps every weight in the file
 * layout.
 *
 * The packing runs on a thread pool made for it (one thread per online
 * CPU, at most REPACK_MAX_THREADS; SLUICE_LOAD_THREADS=N sets it) and
 * freed after. The work is cut into items of about REPACK_RELEASE_BYTES of
 * source, whole panels of one tensor each, handed out in file order; a
 * thread packs an item and drops the whole pages of the file under it, so
 * at any time only the items in flight hold both copies and resident
 * memory stays within the single-threaded bound plus a few items. The
 * pages that straddle two items, kept by both, are dropped at the end.
 * Each panel depends only on its 16 source rows, so the result does not
 * depend on the number of threads (tests/unit/test_repack.c). The
 * parallelism pays twice: the packing itself, and the kernel's zeroing of
 * the arena's fresh pages, which the first thread to touch a page does
 * (docs/performance.md "Model load time").
 */
#define REPACK_RELEASE_BYTES ((size_t)4 << 20) /* items of ~4 MiB of source, released as packed */
#define REPACK_MAX_THREADS 8                   /* memory-bound: more threads add little */

/* Every matmul weight of the model, tied output once. */
static int matmul_weights(struct sl_model *m, struct sl_tensor **out, int max)
{
    int n = 0;
    for (int il = 0; il < m->hp.n_layer; il++) {
        struct sl_layer *L = &m->layers[il];
        struct sl_tensor *ws[] = {&L->wq, &L->wk, &L->wv, &L->wqkv, &L->wo, &L->gate, &L->up, &L->gate_up, &L->down};
        for (size_t i = 0; i < sizeof ws / sizeof *ws; i++)
            if (ws[i]->data && n < max) out[n++] = ws[i];
    }
    if (m->output.data && n < max) out[n++] = &m->output;
    return n;
}

/* Every 1-D weight (norms, biases) of the model; rope_freqs is separate. */
static int vector_weights(struct sl_model *m, struct sl_tensor **out, int max)
{
    int n = 0;
    for (int il = 0; il < m->hp.n_layer; il++) {
        struct sl_layer *L = &m->layers[il];
        struct sl_tensor *vs[] = {&L->attn_norm, &L->bq, &L->bk, &L->bv, &L->q_norm,
                                  &L->k_norm, &L->post_attn_norm, &L->ffn_norm, &L->post_ffn_norm};
        for (size_t i = 0; i < sizeof vs / sizeof *vs; i++)
            if (vs[i]->data && n < max) out[n++] = vs[i];
    }
    if (m->output_norm.data && n < max) out[n++] = &m->output_norm;
    return n;
}

/* Bytes of t's values rounded up to a cache line. */
static size_t vector_bytes(const struct sl_tensor *t)
{
    return (t->row_size + 63) / 64 * 64;
}

static size_t panels_bytes(const struct sl_tensor *t)
{
    const int64_t np = (t->ne[1] + SL_PANEL_ROWS - 1) / SL_PANEL_ROWS;
    return (size_t)np * sl_panel_size(t->type, t->ne[0]);
}

/* Drop the whole pages of [lo, hi) of the file mapping from this process. */
static void release_pages(const uint8_t *lo, const uint8_t *hi)
{
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t a = ((uintptr_t)lo + pg - 1) / pg * pg, b = (uintptr_t)hi / pg * pg;
    if (b > a) (void)madvise((void *)a, b - a, MADV_DONTNEED);
}

/* Rows [r0, r1) of t, a multiple of 16 apart (or to the end), into the
 * panels at dst (panel r0 / 16 of the tensor's). */
struct repack_item {
    const struct sl_tensor *t;
    int64_t r0, r1;
    uint8_t *dst;
};

struct repack_job {
    const struct repack_item *items;
    bool release; /* the weights are in a file mapping: drop its pages once packed */
};

/* sl_pool_fn: pack one item, then drop the file's whole pages under it. */
static void repack_item(void *ctx, int i, int thread)
{
    const struct repack_job *job = ctx;
    const struct repack_item *it = &job->items[i];
    const struct sl_tensor *t = it->t;
    const size_t psz = sl_panel_size(t->type, t->ne[0]);
    const uint8_t *src = t->data;
    (void)thread;
    for (int64_t r = it->r0; r < it->r1; r += SL_PANEL_ROWS)
        sl_panel_pack(t->type, src + (size_t)r * t->row_size, t->row_size,
                      (int)SL_MIN(SL_PANEL_ROWS, it->r1 - r), t->ne[0],
                      it->dst + (size_t)((r - it->r0) / SL_PANEL_ROWS) * psz);
    if (job->release)
        release_pages(src + (size_t)it->r0 * t->row_size, src + (size_t)it->r1 * t->row_size);
}

/* Threads for the repack: SLUICE_LOAD_THREADS, else the online CPUs up to
 * REPACK_MAX_THREADS. */
static int repack_threads(void)
{
    const char *env = getenv("SLUICE_LOAD_THREADS");
    const long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    const int dflt = ncpu < 1 ? 1 : ncpu > REPACK_MAX_THREADS ? REPACK_MAX_THREADS : (int)ncpu;
    if (env && *env) {
        char *end;
        const long v = strtol(env, &end, 10);
        if (*end == 0 && v >= 1 && v <= 256) return (int)v;
        fprintf(stderr, "sluice: SLUICE_LOAD_THREADS=%s is not a number in 1..256; using %d\n", env,
                dflt);
    }
    return dflt;
}

/* Cut the repacked weights into items (NULL items: just count them). */
static int repack_items(struct sl_tensor *const *ts, int n, const struct sl_kernels *k,
                        uint8_t *arena, struct repack_item *items)
{
    int ni = 0;
    uint8_t *dst = arena;
    for (int i = 0; i < n; i++) {
        const struct sl_tensor *t = ts[i];
        if (!k->panel[t->type].dot || !sl_panel_size(t->type, t->ne[0])) continue;
        const int64_t R = t->ne[1];
        /* panels per item: about REPACK_RELEASE_BYTES of source, at least one */
        const size_t fit = REPACK_RELEASE_BYTES / t->row_size / SL_PANEL_ROWS;
        const int64_t per = fit ? (int64_t)fit : 1;
        const size_t psz = sl_panel_size(t->type, t->ne[0]);
        for (int64_t r = 0; r < R; r += per * SL_PANEL_ROWS, ni++)
            if (items)
                items[ni] = (struct repack_item){t, r, SL_MIN(r + per * SL_PANEL_ROWS, R),
                                                 dst + (size_t)(r / SL_PANEL_ROWS) * psz};
        dst += panels_bytes(t);
    }
    return ni;
}

static void repack(struct sl_model *m)
{
    const char *env = getenv("SLUICE_REPACK");
    if (env && strcmp(env, "0") == 0) return;
    const struct sl_kernels *k = sl_kernels();
    const int max = 9 * m->hp.n_layer + 1;
    struct sl_tensor **ts = malloc((size_t)max * sizeof *ts), **vs = malloc((size_t)max * sizeof *vs);
    if (!ts || !vs) {
        free(ts);
        free(vs);
        return; /* allocation failure: keep the file layout */
    }
    const int n = matmul_weights(m, ts, max), nv = vector_weights(m, vs, max);
    size_t total = 0, vtotal = 0;
    for (int i = 0; i < n; i++)
        if (k->panel[ts[i]->type].dot && sl_panel_size(ts[i]->type, ts[i]->ne[0])) total += panels_bytes(ts[i]);
    for (int i = 0; i < nv; i++) vtotal += vector_bytes(vs[i]);
    if (m->rope_freqs) vtotal += (size_t)m->hp.n_rot / 2 * sizeof(float);
    if (total) total += vtotal; /* the 1-D weights follow the panels */
    void *arena = total ? mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) : MAP_FAILED;
    if (arena == MAP_FAILED) {
        free(ts);
        free(vs);
        return; /* nothing to repack, or no memory for it: keep the file layout */
    }
    const int ni = repack_items(ts, n, k, arena, NULL);
    struct repack_item *items = malloc((size_t)SL_MAX(ni, 1) * sizeof *items);
    if (!items) {
        munmap(arena, total);
        free(ts);
        free(vs);
        return; /* allocation failure: keep the file layout */
    }
#ifdef MADV_HUGEPAGE
    (void)madvise(arena, total, MADV_HUGEPAGE);
#endif
    /* The norms and biases sit in the file between the weights released
     * below; read from there, each would map the pages around it back (a
     * whole 2 MiB page-cache folio where the file system caches in large
     * folios: 53 MiB of smollm2-Q8_0's released pages came back on the
     * first decode). They move to the arena's end first, before any
     * release. */
    uint8_t *vdst = (uint8_t *)arena + (total - vtotal);
    for (int i = 0; i < nv; i++) {
        memcpy(vdst, vs[i]->data, vs[i]->row_size);
        vs[i]->data = vdst;
        vdst += vector_bytes(vs[i]);
    }
    if (m->rope_freqs) {
        memcpy(vdst, m->rope_freqs, (size_t)m->hp.n_rot / 2 * sizeof(float));
        m->rope_freqs = (const float *)(void *)vdst;
    }
    repack_items(ts, n, k, arena, items);
    struct repack_job job = {items, m->gguf->mapped};
    const int want = repack_threads(), nt = SL_MIN(want, ni);
    struct sl_pool *pool = nt > 1 ? sl_pool_init(nt) : NULL;
    if (pool)
        sl_pool_run(pool, repack_item, &job, ni);
    else
        for (int i = 0; i < ni; i++)
            repack_item(&job, i, 0); /* one thread, or no pool: in order here */
    sl_pool_free(pool);
    free(items);
    uint8_t *dst = arena;
    for (int i = 0; i < n; i++) {
        struct sl_tensor *t = ts[i];
        if (!k->panel[t->type].dot || !sl_panel_size(t->type, t->ne[0])) continue;
        /* the pages two items shared */
        if (m->gguf->mapped)
            release_pages(t->data, (const uint8_t *)t->data + (size_t)t->ne[1] * t->row_size);
        t->panel = dst;
        t->panel_src = t->data;
        dst += panels_bytes(t);
    }
    /* a tied output: the embedding lookup reads the same panels
     * (sl_op_get_row) instead of mapping the released pages back */
    if (m->output.data == m->tok_embd.data) {
        m->tok_embd.panel = m->output.panel;
        m->tok_embd.panel_src = m->output.panel_src;
    }
    m->panels = arena;
    m->panels_size = total;
    free(ts);
    free(vs);
}

/* ------------------------------------------------------------------------ */
/* load / free                                                               */
/* ------------------------------------------------------------------------ */

/* FNV-1a over the metadata, the file's size and 64 samples of 4 KiB spread
 * over the tensor data: what tells one model file from another (heads
 * trained on a model carry it, train/head.h) without reading it all. At
 * load, once: later the samples' pages would have to come back (~5 ms on
 * a 152k vocabulary's metadata, per classify request before). */
static uint64_t file_hash(const struct sl_gguf *g)
{
    uint64_t h = sl_fnv1a(SL_FNV_INIT, g->base, g->data_offset);
    h = sl_fnv1a(h, &g->size, sizeof g->size);
    size_t data = g->size - g->data_offset;
    for (int i = 0; i < 64 && data > 0; i++) {
        size_t off = data / 64 * (size_t)i, n = SL_MIN((size_t)4096, data - off);
        h = sl_fnv1a(h, g->base + g->data_offset + off, n);
    }
    return h;
}

static char *dup_view(struct sl_str s)
{
    char *p = malloc(s.len + 1);
    if (p) {
        memcpy(p, s.ptr, s.len);
        p[s.len] = 0;
    }
    return p;
}

int sl_model_load_gguf(struct sl_model **out, struct sl_gguf *g, bool with_vocab, struct sl_err *err)
{
    struct sl_model *m = calloc(1, sizeof *m);
    struct loader ld = {m, g, err};
    struct sl_str s;
    int rc;

    *out = NULL;
    if (!m) {
        sl_gguf_free(g);
        return sl_err_set(err, SL_ENOMEM, "model: out of memory");
    }
    m->gguf = g;
    if ((rc = sl_gguf_get_str(g, "general.architecture", &s, err))) {
        if (rc == SL_ENOTFOUND)
            rc = sl_err_set(err, SL_EFORMAT, "model: no general.architecture key (a vocab-only file?)");
        goto fail; /* bad metadata */
    }
    m->arch = SL_ARCH_COUNT;
    for (int a = 0; a < SL_ARCH_COUNT; a++)
        if (sl_str_eq(s, arch_names[a])) m->arch = (enum sl_arch)a;
    if (m->arch == SL_ARCH_COUNT) {
        rc = sl_err_set(err, SL_EUNSUPPORTED,
                        "model: architecture '%.*s' is not supported (supported: llama, qwen2, qwen3, "
                        "phi3, gemma2, gemma3)",
                        (int)SL_MIN(s.len, 40), s.ptr);
        goto fail; /* unknown architecture */
    }
    m->arch_name = arch_names[m->arch];
    if ((rc = read_hparams(&ld))) goto fail;  /* bad hyper-parameters */
    if ((rc = bind_tensors(&ld))) goto fail;  /* missing or misshapen tensor */

    if (sl_gguf_get_str(g, "tokenizer.chat_template", &s, NULL) == 0 && !(m->chat_template = dup_view(s))) {
        rc = sl_err_set(err, SL_ENOMEM, "model: out of memory");
        goto fail; /* allocation failure */
    }
    if (sl_gguf_get_str(g, "general.name", &s, NULL) == 0) m->name = dup_view(s);
    m->file_hash = file_hash(g); /* before the repack releases the pages */
    repack(m);
    if (with_vocab && sl_gguf_find(g, "tokenizer.ggml.model")) {
        if ((rc = sl_vocab_load(&m->vocab, g, err))) goto fail; /* bad tokenizer */
        if (sl_vocab_n_tokens(m->vocab) > m->hp.n_vocab) {
            rc = sl_err_set(err, SL_EFORMAT, "model: tokenizer has %d tokens, the embedding only %d",
                            sl_vocab_n_tokens(m->vocab), m->hp.n_vocab);
            goto fail; /* inconsistent file */
        }
    }
    *out = m;
    return 0;
fail:
    sl_model_free(m);
    return rc;
}

int sl_model_load(struct sl_model **out, const char *path, bool with_vocab, struct sl_err *err)
{
    struct sl_gguf *g;
    int rc = sl_gguf_open(&g, path, err);
    *out = NULL;
    if (rc) return rc;
    rc = sl_model_load_gguf(out, g, with_vocab, err);
    if (rc && err) {
        char tmp[SL_ERR_MSG_LEN];
        snprintf(tmp, sizeof tmp, "%s", err->msg);
        sl_err_set(err, rc, "%s: %s", path, tmp);
    }
    return rc;
}

void sl_model_free(struct sl_model *m)
{
    if (!m) return;
    if (m->vocab) sl_vocab_free(m->vocab);
    free(m->layers);
    free(m->chat_template);
    free(m->name);
    if (m->panels) munmap(m->panels, m->panels_size);
    sl_gguf_free(m->gguf);
    free(m);
}
