/*
 * test_train_lora.c - LoRA: training lowers held-out loss on a quantized
 * base, and the adapter GGUF loads in the engine with the trainer's logits
 * (train layer, engine/lora.c).
 */
#include "convert/synth.h"
#include "engine/forward.h"
#include "engine/lora.h"
#include "engine/model.h"
#include "engine/quant.h"
#include "train/lm.h"
#include "test.h"

#define SL_TOL_ENGINE_REL 1e-4

static struct sl_model *base_model(const char *name, int type, char *path, size_t cap)
{
    struct sl_err err = {0};
    struct sl_synth_params p = sl_synth_default_params();
    p.type = type;
    p.seed = 17;
    snprintf(path, cap, "%s", t_tmp_path(name));
    T_OK(sl_synth_write(&p, path, NULL, NULL, &err), &err);
    struct sl_model *m = NULL;
    T_OK(sl_model_load(&m, path, true, &err), &err);
    return m;
}

/* "n is small/large" with a rule the random base cannot know */
static void add_examples(struct sl_lm_data *d, const struct sl_vocab *v, int from, int to)
{
    struct sl_err err = {0};
    for (int i = from; i < to; i++) {
        char prompt[32];
        snprintf(prompt, sizeof prompt, "%d ->", i);
        T_OK(sl_lm_data_add_pair(d, v, prompt, i % 3 == 0 ? " fizz" : " buzz", true, &err), &err);
    }
}

static void lora_lowers_held_out_loss_on_a_quantized_base(void)
{
    char path[512];
    struct sl_model *m = base_model("train_lora_q8.gguf", SL_TYPE_Q8_0, path, sizeof path);
    struct sl_lm lm;
    struct sl_lm_lora lo;
    struct sl_lm_data tr = {0}, va = {0};
    struct sl_err err = {0};
    if (!m) return;
    T_OK(sl_lm_from_model(&lm, m, 2, &err), &err);
    T_OK(sl_lm_lora_init(&lo, &lm, 4, 8.0f, 0xF, 1, &err), &err);
    lm.lora = &lo;
    lm.train_base = false;
    add_examples(&tr, m->vocab, 0, 120);
    add_examples(&va, m->vocab, 120, 150);
    double before = sl_lm_eval(&lm, &va, 8, 16, 0, &err);
    struct sl_lm_train_params p = sl_lm_train_default_params();
    p.batch = 8;
    p.seq_len = 16;
    p.steps = 60;
    p.lr = 1e-2f;
    p.eval_every = 20;
    struct sl_lm_train_result res;
    float wq0 = lm.w.wq[5];
    T_OK(sl_lm_train(&lm, &tr, &va, &p, &res, NULL, NULL, &err), &err);
    double after = sl_lm_eval(&lm, &va, 8, 16, 0, &err);
    fprintf(stderr, "      held-out loss %.3f -> %.3f (best at step %lld), %.0f tokens/s\n", before, after,
            (long long)res.best_step, res.tokens_per_s);
    /* the random base's tied 0.02-scale embeddings cap how peaked its
     * output can get (logits stay within about +-1.3), so the floor is high;
     * a clear drop on held-out numbers is what is asserted */
    T_TRUE(after < 0.85 * before);
    T_NEAR(lm.w.wq[5], wq0, 0); /* the base stays frozen */
    free(res.curve);
    sl_lm_data_free(&tr);
    sl_lm_data_free(&va);
    sl_lm_lora_free(&lo);
    sl_lm_free(&lm);
    sl_model_free(m);
}

/* Trainer (base + adapter) against engine (adapter merged) on model m. */
static void check_engine_matches(struct sl_model *m, bool synth)
{
    char apath[512];
    struct sl_lm lm;
    struct sl_lm_lora lo;
    struct sl_err err = {0};
    if (!m) return;
    const int V = m->hp.n_vocab;
    T_OK(sl_lm_from_model(&lm, m, 2, &err), &err);
    T_OK(sl_lm_lora_init(&lo, &lm, 4, 8.0f, (1u << SL_LORA_N_TARGETS) - 1, 1, &err), &err);
    /* a non-trivial adapter: B random (training would get there too) */
    for (int t = 0; t < SL_LORA_N_TARGETS; t++) {
        int in, out;
        sl_lm_lora_dims(&lm, t, &in, &out);
        for (size_t i = 0; i < (size_t)lm.cfg.n_layer * out * lo.rank; i++)
            lo.b[t][i] = 0.05f * (float)((int)(i * 7919 % 13) - 6);
    }
    lm.lora = &lo;
    lm.train_base = false;
    snprintf(apath, sizeof apath, "%s", t_tmp_path("train_lora_adapter.gguf"));
    T_OK(sl_lm_lora_save(&lo, &lm, apath, &err), &err);

    /* the file follows llama.cpp's names and shapes */
    struct sl_gguf *g = NULL;
    T_OK(sl_gguf_open(&g, apath, &err), &err);
    if (g && synth) {
        struct sl_str s;
        T_TRUE(sl_gguf_get_str(g, "general.type", &s, NULL) == 0 && sl_str_eq(s, "adapter"));
        T_TRUE(sl_gguf_get_str(g, "adapter.type", &s, NULL) == 0 && sl_str_eq(s, "lora"));
        const struct sl_gguf_tensor *a = sl_gguf_find_tensor(g, "blk.1.attn_k.weight.lora_a");
        const struct sl_gguf_tensor *b = sl_gguf_find_tensor(g, "blk.1.attn_k.weight.lora_b");
        T_TRUE(a && b);
        if (a && b) {
            T_EQ_INT(a->ne[0], 64); /* in */
            T_EQ_INT(a->ne[1], 4);  /* r */
            T_EQ_INT(b->ne[0], 4);  /* r */
            T_EQ_INT(b->ne[1], 32); /* out: K*D = 2*16 */
        }
    }
    sl_gguf_free(g);

    /* engine: base + adapter merged at load */
    struct sl_lora_merge *mg = NULL;
    T_OK(sl_model_apply_lora(m, apath, 1.0f, &mg, &err), &err);
    T_EQ_INT(sl_lora_merge_count(mg), m->hp.n_layer * 7);
    struct sl_ctx_params cp = sl_ctx_default_params();
    cp.n_ctx = 32;
    cp.n_threads = 2;
    cp.kv_type = SL_TYPE_F32;
    struct sl_ctx *ctx = NULL;
    struct sl_batch bt;
    T_OK(sl_ctx_init(&ctx, m, &cp, &err), &err);
    int32_t toks[12];
    sl_batch_init(&bt, 12);
    for (int t = 0; t < 12; t++) {
        toks[t] = (t * 53 + 3) % V;
        sl_batch_add(&bt, toks[t], t, 0, true);
    }
    T_OK(sl_decode(ctx, &bt, &err), &err);
    sl_lm_forward(&lm, toks, NULL, 1, 12, &err);
    double mx = 0, md = 0, moved = 0;
    for (int t = 0; t < 12; t++)
        for (int i = 0; i < V; i++) {
            float e = sl_ctx_logits(ctx, t)[i];
            mx = fmax(mx, fabs(e));
            md = fmax(md, fabs(e - lm.logits[t * V + i]));
        }
    /* and the adapter did change something: the same tokens without it */
    lm.lora = NULL;
    sl_lm_forward(&lm, toks, NULL, 1, 12, &err);
    for (int t = 0; t < 12; t++)
        for (int i = 0; i < V; i++) moved = fmax(moved, fabs(sl_ctx_logits(ctx, t)[i] - lm.logits[t * V + i]));
    fprintf(stderr, "      engine+adapter vs trainer: max |diff| %.3g (max |logit| %.3g); adapter moved logits by %.3g\n",
            md, mx, moved);
    T_TRUE(md / mx <= SL_TOL_ENGINE_REL);
    T_TRUE(moved > 100 * md);
    sl_batch_free(&bt);
    sl_ctx_free(ctx);
    sl_model_free(m);
    sl_lora_merge_free(mg);
    sl_lm_lora_free(&lo);
    sl_lm_free(&lm);
}

static void lora_adapter_loads_in_the_engine_with_the_trainers_logits(void)
{
    char path[512];
    check_engine_matches(base_model("train_lora_f32.gguf", SL_TYPE_F32, path, sizeof path), true);
}

/* The same on a real model (stories260K: GQA 8/4 heads, 5 layers, SPM). */
static void lora_on_stories260k_matches_the_engine(void)
{
    const char *p = t_asset("models/stories260K/stories260K.gguf");
    struct sl_model *m = NULL;
    struct sl_err err = {0};
    if (!p) {
        t_skip("../shared/assets absent: no stories260K");
        return;
    }
    T_OK(sl_model_load(&m, p, true, &err), &err);
    check_engine_matches(m, false);
}

static void lora_loader_rejects_a_mismatched_adapter(void)
{
    char path[512];
    struct sl_model *m = base_model("train_lora_bad.gguf", SL_TYPE_F32, path, sizeof path);
    struct sl_lora_merge *mg = NULL;
    struct sl_err err = {0};
    if (!m) return;
    /* a model file is not an adapter */
    T_EQ_INT(sl_model_apply_lora(m, path, 1.0f, &mg, &err), SL_EFORMAT);
    T_TRUE(strstr(err.msg, "not a LoRA adapter") != NULL);
    /* an adapter whose A has the wrong width */
    struct sl_gguf_writer *w = sl_gguf_writer_init();
    sl_gguf_set_str(w, "general.architecture", "llama");
    sl_gguf_set_str(w, "general.type", "adapter");
    sl_gguf_set_str(w, "adapter.type", "lora");
    float z[64 * 4] = {0};
    int64_t nea[2] = {32, 4}, neb[2] = {4, 64};
    sl_gguf_add_tensor(w, "blk.0.attn_q.weight.lora_a", SL_TYPE_F32, 2, nea, z, 32 * 4 * 4, &err);
    sl_gguf_add_tensor(w, "blk.0.attn_q.weight.lora_b", SL_TYPE_F32, 2, neb, z, 64 * 4 * 4, &err);
    const char *bad = t_tmp_path("train_lora_badshape.gguf");
    T_OK(sl_gguf_writer_write(w, bad, &err), &err);
    sl_gguf_writer_free(w);
    const void *before = m->layers[0].wq.data;
    T_EQ_INT(sl_model_apply_lora(m, bad, 1.0f, &mg, &err), SL_EFORMAT);
    T_TRUE(strstr(err.msg, "shape") != NULL);
    T_TRUE(m->layers[0].wq.data == before); /* untouched */
    T_TRUE(mg == NULL);
    sl_model_free(m);
}

int main(void)
{
    T_RUN(lora_lowers_held_out_loss_on_a_quantized_base);
    T_RUN(lora_adapter_loads_in_the_engine_with_the_trainers_logits);
    T_RUN(lora_on_stories260k_matches_the_engine);
    T_RUN(lora_loader_rejects_a_mismatched_adapter);
    return t_done();
}
