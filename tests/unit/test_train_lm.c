/*
 * test_train_lm.c - `sluice train lm` core: the trainer's forward equals
 * the engine's, training lowers the loss and is deterministic, GGUF output
 * loads back (train layer).
 */
#include "convert/synth.h"
#include "engine/forward.h"
#include "engine/model.h"
#include "engine/quant.h"
#include "train/adamw.h"
#include "train/data.h"
#include "train/lm.h"
#include "test.h"

#define SL_TOL_ENGINE_REL 1e-4 /* max |trainer - engine| / max |logit| */

/* A synth model: the byte-level vocabulary (and a base for LoRA). */
static struct sl_model *vocab_model(void)
{
    static char path[512];
    struct sl_err err = {0};
    struct sl_synth_params p = sl_synth_default_params();
    snprintf(path, sizeof path, "%s", t_tmp_path("train_lm_vocab.gguf"));
    T_OK(sl_synth_write(&p, path, NULL, NULL, &err), &err);
    struct sl_model *m = NULL;
    T_OK(sl_model_load(&m, path, true, &err), &err);
    return m;
}

static struct sl_lm_config tiny_config(void)
{
    return (struct sl_lm_config){.n_vocab = 512, .n_embd = 64, .n_layer = 2, .n_head = 4, .n_head_kv = 2,
                                 .n_ff = 128, .n_ctx = 128, .norm_eps = 1e-5f, .rope_base = 10000.0f,
                                 .tied = false};
}

/* Max relative difference of the trainer's and the engine's logits. */
static double compare_with_engine(struct sl_lm *lm, const char *path, const int32_t *toks, int T)
{
    struct sl_err err = {0};
    struct sl_model *m = NULL;
    struct sl_ctx *ctx = NULL;
    struct sl_batch b;
    double worst = INFINITY;
    T_OK(sl_model_load(&m, path, false, &err), &err);
    if (!m) return worst;
    struct sl_ctx_params cp = sl_ctx_default_params();
    cp.n_ctx = 64;
    cp.n_threads = 2;
    cp.kv_type = SL_TYPE_F32;
    T_OK(sl_ctx_init(&ctx, m, &cp, &err), &err);
    sl_batch_init(&b, T);
    for (int t = 0; t < T; t++) sl_batch_add(&b, toks[t], t, 0, true);
    T_OK(sl_decode(ctx, &b, &err), &err);
    sl_lm_forward(lm, toks, NULL, 1, T, &err);
    double mx = 0, md = 0;
    int V = lm->cfg.n_vocab;
    for (int t = 0; t < T; t++) {
        const float *e = sl_ctx_logits(ctx, t);
        for (int i = 0; i < V; i++) {
            mx = fmax(mx, fabs(e[i]));
            md = fmax(md, fabs(e[i] - lm->logits[(size_t)t * V + i]));
        }
    }
    worst = md / mx;
    fprintf(stderr, "      max |diff| %.3g, max |logit| %.3g, relative %.3g\n", md, mx, worst);
    sl_batch_free(&b);
    sl_ctx_free(ctx);
    sl_model_free(m);
    return worst;
}

static void lm_forward_matches_engine_logits(void)
{
    struct sl_model *vm = vocab_model();
    struct sl_lm lm;
    struct sl_err err = {0};
    struct sl_lm_config c = tiny_config();
    for (int tied = 0; tied < 2; tied++) {
        c.tied = tied;
        T_OK(sl_lm_init(&lm, &c, 2, &err), &err);
        sl_lm_init_weights(&lm, 5);
        for (size_t i = 0; i < lm.n_params; i++) lm.params_mem[i] *= 5; /* logits well away from 0 */
        for (size_t i = 0; i < (size_t)c.n_layer * c.n_embd; i++) lm.w.attn_norm[i] = lm.w.ffn_norm[i] = 1;
        for (int i = 0; i < c.n_embd; i++) lm.w.out_norm[i] = 1;
        const char *path = t_tmp_path("train_lm_engine.gguf");
        T_OK(sl_lm_save(&lm, path, SL_TYPE_F32, vm, "test", &err), &err);
        int32_t toks[20];
        for (int t = 0; t < 20; t++) toks[t] = (t * 37 + 5) % c.n_vocab;
        double rel = compare_with_engine(&lm, path, toks, 20);
        T_TRUE(rel <= SL_TOL_ENGINE_REL);
        sl_lm_free(&lm);
    }
    sl_model_free(vm);
}

/* Train a small model on a repetitive corpus; return the loss curve. */
static double *train_tiny(struct sl_model *vm, uint64_t seed, int64_t steps, struct sl_lm_train_result *res)
{
    static const char corpus[] = "the cat sat on the mat. the dog sat on the log. "
                                 "the cat sat on the mat. the dog sat on the log.\n\n"
                                 "a cat and a dog sat on a mat and a log.";
    struct sl_lm lm;
    struct sl_lm_data d = {0};
    struct sl_err err = {0};
    struct sl_lm_config c = tiny_config();
    c.n_layer = 1;
    c.n_embd = 32;
    c.n_ff = 64;
    T_OK(sl_lm_init(&lm, &c, 2, &err), &err);
    sl_lm_init_weights(&lm, seed);
    T_OK(sl_lm_data_add_text(&d, vm->vocab, corpus, strlen(corpus), &err), &err);
    struct sl_lm_train_params p = sl_lm_train_default_params();
    p.batch = 4;
    p.seq_len = 32;
    p.steps = steps;
    p.lr = 3e-3f;
    p.seed = seed;
    T_OK(sl_lm_train(&lm, &d, NULL, &p, res, NULL, NULL, &err), &err);
    sl_lm_data_free(&d);
    sl_lm_free(&lm);
    return res->curve;
}

static void lm_training_lowers_loss_on_repetitive_text(void)
{
    struct sl_model *vm = vocab_model();
    struct sl_lm_train_result r;
    double *curve = train_tiny(vm, 1, 60, &r);
    fprintf(stderr, "      loss %.3f -> %.3f in %lld steps, %.0f tokens/s\n", r.first_loss, r.last_loss,
            (long long)r.steps_run, r.tokens_per_s);
    T_TRUE(r.first_loss > 5.5);          /* ~ln(512) at init */
    T_TRUE(r.last_loss < 0.5 * r.first_loss);
    free(curve);
    sl_model_free(vm);
}

static void lm_training_is_deterministic_for_a_seed(void)
{
    struct sl_model *vm = vocab_model();
    struct sl_lm_train_result a, b, c;
    double *ca = train_tiny(vm, 3, 15, &a), *cb = train_tiny(vm, 3, 15, &b), *cc = train_tiny(vm, 4, 15, &c);
    int same = 1, differ = 0;
    for (int i = 0; i < 15; i++) {
        same &= ca[i] == cb[i];
        differ |= ca[i] != cc[i];
    }
    T_TRUE(same);
    T_TRUE(differ);
    free(ca);
    free(cb);
    free(cc);
    sl_model_free(vm);
}

static void lm_continues_training_from_a_gguf_and_writes_f16(void)
{
    struct sl_model *vm = vocab_model(); /* synth: F32 llama, tied */
    struct sl_lm lm;
    struct sl_err err = {0};
    T_OK(sl_lm_from_model(&lm, vm, 2, &err), &err);
    T_TRUE(lm.cfg.tied);
    /* the weights came through: compare one row of the embedding */
    float row[64];
    sl_dequantize_row(vm->tok_embd.type, (const char *)vm->tok_embd.data + 7 * vm->tok_embd.row_size, row, 64);
    T_NEAR(lm.w.tok_embd[7 * 64 + 3], row[3], 0);
    const char *path = t_tmp_path("train_lm_f16.gguf");
    T_OK(sl_lm_save(&lm, path, SL_TYPE_F16, vm, "f16", &err), &err);
    int32_t toks[8] = {1, 100, 101, 102, 103, 104, 105, 106};
    /* F16 rounding of the weights: a looser bound */
    T_TRUE(compare_with_engine(&lm, path, toks, 8) < 2e-2);
    struct sl_model *m2 = NULL;
    T_OK(sl_model_load(&m2, path, true, &err), &err);
    if (m2) {
        T_EQ_INT(m2->tok_embd.type, SL_TYPE_F16);
        T_TRUE(m2->vocab != NULL);
        sl_model_free(m2);
    }
    sl_lm_free(&lm);
    sl_model_free(vm);
}

static void lm_data_masks_prompts_of_pairs(void)
{
    struct sl_model *vm = vocab_model();
    struct sl_lm_data d = {0};
    struct sl_err err = {0};
    T_OK(sl_lm_data_add_pair(&d, vm->vocab, "ab", "cd", true, &err), &err);
    /* <s> ▁ a b c d </s> (▁ is 3 byte tokens): only c, d, </s> count */
    T_EQ_INT(d.n_tok, 9);
    T_EQ_INT(d.tok[0], 1);
    int32_t in[12], tg[12];
    sl_lm_data_row(&d, 0, 0, 12, in, tg);
    int counted = 0;
    for (int t = 0; t < 12; t++) counted += tg[t] >= 0;
    T_EQ_INT(counted, 3);
    T_EQ_INT(tg[5], 'c' + 3); /* byte tokens are 3 + byte */
    T_EQ_INT(tg[6], 'd' + 3);
    T_EQ_INT(tg[7], 2);       /* </s> */
    T_EQ_INT(tg[8], -1);      /* padding */
    sl_lm_data_free(&d);
    sl_model_free(vm);
}

int main(void)
{
    T_RUN(lm_forward_matches_engine_logits);
    T_RUN(lm_training_lowers_loss_on_repetitive_text);
    T_RUN(lm_training_is_deterministic_for_a_seed);
    T_RUN(lm_continues_training_from_a_gguf_and_writes_f16);
    T_RUN(lm_data_masks_prompts_of_pairs);
    return t_done();
}
