/*
 * test_model.c - loading models: every architecture's required tensors and
 * shapes are checked with a message that names the problem; the KV cache
 * shares prefixes between sequences; a batch of several sequences gives the
 * same logits as each sequence alone.
 */
#include "convert/synth.h"
#include "engine/forward.h"
#include "engine/model.h"
#include "test.h"

/* A tiny llama written by synth, then re-written with one change. */
static const char *tiny_path(void)
{
    static char path[4096];
    static bool made;
    if (!made) {
        struct sl_synth_params p = sl_synth_default_params();
        struct sl_err err = {0};
        snprintf(path, sizeof path, "%s", t_tmp_path("tiny.gguf"));
        p.type = SL_TYPE_Q8_0;
        T_OK(sl_synth_write(&p, path, NULL, NULL, &err), &err);
        made = true;
    }
    return path;
}

enum edit { DROP_TENSOR, RESHAPE_TENSOR, RETYPE_TENSOR, ADD_TENSOR, SET_ARCH, DROP_KEY, SET_U32 };

/* Copy the tiny model with one edit applied to `name` and try to load it;
 * the error message must contain `want`. */
static void expect_load_error(enum edit e, const char *name, const char *value, const char *want)
{
    struct sl_err err = {0};
    struct sl_gguf *g = NULL;
    T_OK(sl_gguf_open(&g, tiny_path(), &err), &err);
    if (!g) return;
    struct sl_gguf_writer *w = sl_gguf_writer_init();
    for (uint64_t i = 0; i < g->n_kv; i++) {
        if ((e == DROP_KEY || e == SET_ARCH || e == SET_U32) && sl_str_eq(g->kv[i].key, name)) continue;
        sl_gguf_set_kv_from(w, &g->kv[i]);
    }
    if (e == SET_ARCH) sl_gguf_set_str(w, name, value);
    if (e == SET_U32) sl_gguf_set_u32(w, name, (uint32_t)atoi(value));
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct sl_gguf_tensor *t = &g->tensors[i];
        char tn[128];
        snprintf(tn, sizeof tn, "%.*s", (int)t->name.len, t->name.ptr);
        bool hit = strcmp(tn, name) == 0;
        if (hit && e == DROP_TENSOR) continue;
        int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        uint32_t n_dims = t->n_dims;
        if (hit && e == RESHAPE_TENSOR) {
            /* same bytes, rows and columns swapped: (64) becomes (1, 64) */
            ne[0] = t->ne[1];
            ne[1] = t->ne[0];
            n_dims = 2;
        }
        if (hit && e == RETYPE_TENSOR) {
            /* a norm stored as F16: same shape, half the bytes */
            uint16_t *h = malloc((size_t)t->ne[0] * 2);
            for (int64_t k = 0; k < t->ne[0]; k++) h[k] = sl_fp32_to_fp16(((const float *)t->data)[k]);
            T_OK(sl_gguf_add_tensor(w, tn, SL_TYPE_F16, t->n_dims, ne, h, (size_t)t->ne[0] * 2, &err), &err);
            free(h);
            continue;
        }
        T_OK(sl_gguf_add_tensor(w, tn, t->type, n_dims, ne, t->data, t->size, &err), &err);
    }
    if (e == ADD_TENSOR) {
        float z[32] = {0};
        int64_t ne[1] = {32};
        T_OK(sl_gguf_add_tensor(w, name, SL_TYPE_F32, 1, ne, z, sizeof z, &err), &err);
    }
    const char *out = t_tmp_path("edited.gguf");
    T_OK(sl_gguf_writer_write(w, out, &err), &err);
    sl_gguf_writer_free(w);
    sl_gguf_free(g);
    struct sl_model *m = NULL;
    int rc = sl_model_load(&m, out, true, &err);
    if (rc == 0) {
        T_FAIL_AT("edited model (%s) loaded; wanted an error with '%s'", name, want);
        sl_model_free(m);
    } else if (!strstr(err.msg, want)) {
        T_FAIL_AT("error '%s' does not mention '%s'", err.msg, want);
    }
    remove(out);
}

static void model_loads_a_synthetic_model(void)
{
    struct sl_err err = {0};
    struct sl_model *m = NULL;
    T_OK(sl_model_load(&m, tiny_path(), true, &err), &err);
    if (!m) return;
    T_EQ_INT(m->arch, SL_ARCH_LLAMA);
    T_EQ_INT(m->hp.n_embd, 64);
    T_EQ_INT(m->hp.n_vocab, 512);
    T_TRUE(m->output.data == m->tok_embd.data); /* tied */
    T_TRUE(m->vocab != NULL);
    sl_model_free(m);
}

static void model_rejects_missing_tensor(void)
{
    expect_load_error(DROP_TENSOR, "blk.1.ffn_down.weight", NULL, "'blk.1.ffn_down.weight' is missing");
    expect_load_error(DROP_TENSOR, "token_embd.weight", NULL, "token_embd.weight");
}

static void model_rejects_wrong_shape(void)
{
    expect_load_error(RESHAPE_TENSOR, "blk.0.attn_norm.weight", NULL, "shape");
}

static void model_rejects_wrong_norm_type(void)
{
    expect_load_error(RETYPE_TENSOR, "blk.0.ffn_norm.weight", NULL, "must be F32");
}

static void model_rejects_longrope_it_cannot_compute(void)
{
    expect_load_error(ADD_TENSOR, "rope_factors_long.weight", NULL, "LongRoPE");
}

static void model_rejects_unknown_architecture(void)
{
    expect_load_error(SET_ARCH, "general.architecture", "mamba", "'mamba' is not supported");
    expect_load_error(DROP_KEY, "general.architecture", NULL, "general.architecture");
}

static void model_rejects_bad_hyperparameters(void)
{
    expect_load_error(DROP_KEY, "llama.embedding_length", NULL, "llama.embedding_length");
    expect_load_error(SET_U32, "llama.attention.head_count_kv", "3", "n_head_kv");
    expect_load_error(SET_U32, "llama.block_count", "3", "blk.2");
    expect_load_error(SET_U32, "llama.embedding_length", "0", "bad shape");
}

static void model_rejects_files_that_are_not_models(void)
{
    struct sl_err err = {0};
    struct sl_model *m = NULL;
    const char *p = t_tmp_path("notgguf.bin");
    FILE *f = fopen(p, "wb");
    fputs("hello, this is not a model", f);
    fclose(f);
    T_EQ_INT(sl_model_load(&m, p, true, &err), SL_EFORMAT);
    T_TRUE(strstr(err.msg, "not a GGUF file") != NULL);
    remove(p);
}

/* The tiny model with a context of n_ctx cells, batches of n_batch and a
 * batch of batch_cap entries; everything freed by close_tiny. */
struct tiny {
    struct sl_model *m;
    struct sl_ctx *ctx;
    struct sl_batch b;
};

static bool open_tiny(struct tiny *t, int32_t n_ctx, int32_t n_batch, int threads, int32_t batch_cap)
{
    struct sl_err err = {0};
    memset(t, 0, sizeof *t);
    T_OK(sl_model_load(&t->m, tiny_path(), false, &err), &err);
    if (!t->m) return false;
    struct sl_ctx_params cp = sl_ctx_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.n_threads = threads;
    T_OK(sl_ctx_init(&t->ctx, t->m, &cp, &err), &err);
    T_OK(sl_batch_init(&t->b, batch_cap), &err);
    return t->ctx != NULL;
}

static void close_tiny(struct tiny *t)
{
    sl_batch_free(&t->b);
    sl_ctx_free(t->ctx);
    sl_model_free(t->m);
}

/* Decode a prompt per sequence alone, then all of them in one batch with
 * different lengths; every logit row must agree. */
static void batch_of_sequences_matches_each_alone(void)
{
    struct sl_err err = {0};
    struct tiny t;
    if (!open_tiny(&t, 64, 32, 2, 32)) return;
    struct sl_ctx *ctx = t.ctx;
    struct sl_batch *b = &t.b;
    const int lens[3] = {5, 9, 3};
    float alone[3][512];
    for (int s = 0; s < 3; s++) {
        sl_kv_clear(&ctx->kv);
        sl_batch_clear(b);
        for (int i = 0; i < lens[s]; i++) sl_batch_add(b, 3 + (s * 31 + i * 7) % 500, i, 0, i == lens[s] - 1);
        T_OK(sl_decode(ctx, b, &err), &err);
        memcpy(alone[s], sl_ctx_logits(ctx, 0), sizeof alone[s]);
    }
    sl_kv_clear(&ctx->kv);
    sl_batch_clear(b);
    for (int i = 0; i < 9; i++) /* interleaved: entries of the three sequences mixed */
        for (int s = 0; s < 3; s++)
            if (i < lens[s]) sl_batch_add(b, 3 + (s * 31 + i * 7) % 500, i, s, i == lens[s] - 1);
    T_OK(sl_decode(ctx, b, &err), &err);
    /* outputs come in batch order: seq 2 ends first (i=2), then seq 0 (i=4), then seq 1 */
    const int order[3] = {2, 0, 1};
    for (int o = 0; o < 3; o++) {
        double md = 0;
        for (int j = 0; j < 512; j++) md = fmax(md, fabs(sl_ctx_logits(ctx, o)[j] - alone[order[o]][j]));
        T_NEAR(md, 0, 1e-4);
    }
    close_tiny(&t);
}

/* Sequence 1 shares sequence 0's prefix through sl_kv_seq_cp, then
 * continues differently: its logits equal a full recomputation. */
static void kv_prefix_sharing_equals_recomputation(void)
{
    struct sl_err err = {0};
    struct tiny t;
    if (!open_tiny(&t, 64, 16, 1, 16)) return;
    struct sl_ctx *ctx = t.ctx;
    struct sl_batch *b = &t.b;
    const int32_t prefix[6] = {1, 40, 41, 42, 43, 44}, tail[3] = {99, 100, 101};
    float full[512];

    for (int i = 0; i < 6; i++) sl_batch_add(b, prefix[i], i, 0, false);
    for (int i = 0; i < 3; i++) sl_batch_add(b, tail[i], 6 + i, 0, i == 2);
    T_OK(sl_decode(ctx, b, &err), &err);
    memcpy(full, sl_ctx_logits(ctx, 0), sizeof full);
    int32_t used = ctx->kv.n_used;

    /* drop seq 0's tail, share its prefix with seq 1, run the tail on seq 1 */
    sl_kv_seq_rm(&ctx->kv, 0, 6, -1);
    sl_kv_seq_cp(&ctx->kv, 0, 1, 0, -1);
    T_EQ_INT(ctx->kv.n_used, used - 3);
    T_EQ_INT(sl_kv_seq_pos_max(&ctx->kv, 1), 5);
    sl_batch_clear(b);
    for (int i = 0; i < 3; i++) sl_batch_add(b, tail[i], 6 + i, 1, i == 2);
    T_OK(sl_decode(ctx, b, &err), &err);
    double md = 0;
    for (int j = 0; j < 512; j++) md = fmax(md, fabs(sl_ctx_logits(ctx, 0)[j] - full[j]));
    T_NEAR(md, 0, 1e-5);
    T_EQ_INT(ctx->kv.n_used, used); /* the prefix cells were shared, not copied */

    /* removing seq 0 keeps the cells seq 1 still uses */
    sl_kv_seq_rm(&ctx->kv, 0, 0, -1);
    T_EQ_INT(ctx->kv.n_used, used);
    T_EQ_INT(sl_kv_seq_pos_max(&ctx->kv, 0), -1);
    close_tiny(&t);
}

/* A batch that asks for no logits (a prompt chunk) still fills the cache. */
static void decode_without_outputs_fills_the_cache(void)
{
    struct sl_err err = {0};
    struct tiny t;
    if (!open_tiny(&t, 16, 8, 2, 8)) return;
    for (int i = 0; i < 4; i++) sl_batch_add(&t.b, 10 + i, i, 0, false);
    T_OK(sl_decode(t.ctx, &t.b, &err), &err);
    T_EQ_INT(t.ctx->n_outputs, 0);
    T_EQ_INT(sl_kv_seq_pos_max(&t.ctx->kv, 0), 3);
    T_TRUE(sl_ctx_logits(t.ctx, 0) == NULL);
    close_tiny(&t);
}

static void decode_rejects_bad_batches(void)
{
    struct sl_err err = {0};
    struct tiny t;
    if (!open_tiny(&t, 4, 4, 1, 8)) return;
    struct sl_ctx *ctx = t.ctx;
    struct sl_batch *b = &t.b;
    sl_batch_add(b, 512, 0, 0, true);
    T_EQ_INT(sl_decode(ctx, b, &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "token 512") != NULL);
    sl_batch_clear(b);
    sl_batch_add(b, 5, 0, 64, true);
    T_EQ_INT(sl_decode(ctx, b, &err), SL_EINVAL);
    sl_batch_clear(b);
    for (int i = 0; i < 5; i++) sl_batch_add(b, 5, i, 0, true);
    T_EQ_INT(sl_decode(ctx, b, &err), SL_EINVAL); /* more than n_batch */
    sl_batch_clear(b);
    for (int i = 0; i < 4; i++) sl_batch_add(b, 5, i, 0, i == 3);
    T_OK(sl_decode(ctx, b, &err), &err);
    sl_batch_clear(b);
    sl_batch_add(b, 5, 4, 0, true);
    T_EQ_INT(sl_decode(ctx, b, &err), SL_ERANGE); /* cache full */
    T_TRUE(strstr(err.msg, "KV cache full") != NULL);
    T_EQ_INT(ctx->kv.n_used, 4);
    close_tiny(&t);
}

int main(void)
{
    T_RUN(model_loads_a_synthetic_model);
    T_RUN(model_rejects_missing_tensor);
    T_RUN(model_rejects_wrong_shape);
    T_RUN(model_rejects_wrong_norm_type);
    T_RUN(model_rejects_unknown_architecture);
    T_RUN(model_rejects_longrope_it_cannot_compute);
    T_RUN(model_rejects_bad_hyperparameters);
    T_RUN(model_rejects_files_that_are_not_models);
    T_RUN(batch_of_sequences_matches_each_alone);
    T_RUN(kv_prefix_sharing_equals_recomputation);
    T_RUN(decode_without_outputs_fills_the_cache);
    T_RUN(decode_rejects_bad_batches);
    remove(tiny_path());
    return t_done();
}
