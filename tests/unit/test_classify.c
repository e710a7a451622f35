/*
 * test_classify.c - classification by scoring (src/tasks/classify.c).
 *
 * The batched, prefix-sharing scorer must give the numbers a plain
 * one-sequence-at-a-time recomputation gives; checked on a synthetic SPM
 * model, a synthetic model carrying GPT-2's byte-level BPE vocabulary (when
 * the assets hold it) and the real stories260K model.
 */
#include <math.h>

#include "convert/synth.h"
#include "engine/chat.h"
#include "engine/forward.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/quant.h"
#include "engine/sampler.h"
#include "engine/vocab.h"
#include "tasks/classify.h"
#include "test.h"

#define TOL_SCORE 2e-4 /* F32 KV: batched vs alone differ only in summation order */

static struct sl_model *synth_model(void)
{
    static struct sl_model *m;
    if (!m) {
        struct sl_synth_params p = sl_synth_default_params();
        struct sl_err err = {0};
        const char *path = t_tmp_path("classify_tiny.gguf");
        p.type = SL_TYPE_F32;
        p.seed = 7;
        T_OK(sl_synth_write(&p, path, NULL, NULL, &err), &err);
        T_OK(sl_model_load(&m, path, true, &err), &err);
    }
    return m;
}

/* The tiny model with a 65,536-token vocabulary: 64 rows of its logits fill
 * SL_LOGITS_STEP_BYTES. */
static struct sl_model *wide_vocab_model(void)
{
    static struct sl_model *m;
    if (!m) {
        struct sl_synth_params p = sl_synth_default_params();
        struct sl_err err = {0};
        const char *path = t_tmp_path("classify_wide_vocab.gguf");
        p.type = SL_TYPE_Q8_0;
        p.n_vocab = 65536;
        p.seed = 5;
        T_OK(sl_synth_write(&p, path, NULL, NULL, &err), &err);
        T_OK(sl_model_load(&m, path, true, &err), &err);
    }
    return m;
}

/* A random-weight llama carrying GPT-2's BPE vocabulary; NULL without assets. */
static struct sl_model *bpe_model(void)
{
    static struct sl_model *m;
    static bool tried;
    if (tried) return m;
    tried = true;
    const char *vpath = t_asset("tokenizers/ggml-vocab/ggml-vocab-gpt-2.gguf");
    struct sl_gguf *vg = NULL, *sg = NULL;
    struct sl_err err = {0};
    if (!vpath || sl_gguf_open(&vg, vpath, &err)) return NULL;
    uint64_t n_vocab = 0;
    const struct sl_gguf_kv *tk = sl_gguf_find(vg, "tokenizer.ggml.tokens");
    if (!tk) return NULL;
    n_vocab = tk->arr_n;
    struct sl_synth_params p = sl_synth_default_params();
    p.type = SL_TYPE_Q8_0;
    p.n_vocab = (int32_t)n_vocab;
    p.seed = 11;
    const char *tmp = t_tmp_path("classify_bpe_weights.gguf");
    char wpath[4096];
    snprintf(wpath, sizeof wpath, "%s", tmp);
    T_OK(sl_synth_write(&p, wpath, NULL, NULL, &err), &err);
    T_OK(sl_gguf_open(&sg, wpath, &err), &err);
    struct sl_gguf_writer *w = sl_gguf_writer_init();
    for (uint64_t i = 0; i < sg->n_kv; i++)
        if (!(sg->kv[i].key.len >= 10 && !memcmp(sg->kv[i].key.ptr, "tokenizer.", 10))) sl_gguf_set_kv_from(w, &sg->kv[i]);
    for (uint64_t i = 0; i < vg->n_kv; i++)
        if (vg->kv[i].key.len >= 10 && !memcmp(vg->kv[i].key.ptr, "tokenizer.", 10)) sl_gguf_set_kv_from(w, &vg->kv[i]);
    for (uint64_t i = 0; i < sg->n_tensors; i++) {
        const struct sl_gguf_tensor *t = &sg->tensors[i];
        char tn[128];
        snprintf(tn, sizeof tn, "%.*s", (int)t->name.len, t->name.ptr);
        int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        T_OK(sl_gguf_add_tensor(w, tn, t->type, t->n_dims, ne, t->data, t->size, &err), &err);
    }
    const char *out = t_tmp_path("classify_bpe.gguf");
    T_OK(sl_gguf_writer_write(w, out, &err), &err);
    sl_gguf_writer_free(w);
    sl_gguf_free(sg);
    sl_gguf_free(vg);
    T_OK(sl_model_load(&m, out, true, &err), &err);
    return m;
}

static struct sl_ctx *make_ctx(const struct sl_model *m, int32_t n_ctx, int32_t n_batch)
{
    struct sl_ctx_params cp = sl_ctx_default_params();
    struct sl_ctx *ctx = NULL;
    struct sl_err err = {0};
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.n_threads = 1;
    cp.kv_type = SL_TYPE_F32;
    T_OK(sl_ctx_init(&ctx, m, &cp, &err), &err);
    return ctx;
}

/* Mean log-probability of the last n_label tokens of prompt+cont, the whole
 * sequence run alone on a fresh context with every logit. */
static double score_alone(const struct sl_model *m, const char *prompt, const char *cont,
                          int32_t n_label, bool special)
{
    struct sl_err err = {0};
    size_t lp = strlen(prompt), lc = strlen(cont), n = 0;
    char *text = malloc(lp + lc + 1);
    memcpy(text, prompt, lp);
    memcpy(text + lp, cont, lc + 1);
    int32_t *toks = NULL;
    T_OK(sl_tokenize(m->vocab, text, lp + lc, true, special, &toks, &n, &err), &err);
    free(text);
    struct sl_ctx *ctx = make_ctx(m, 2048, 2048);
    struct sl_batch b;
    sl_batch_init(&b, (int32_t)n);
    for (size_t i = 0; i < n; i++) sl_batch_add(&b, toks[i], (int32_t)i, 0, true);
    T_OK(sl_decode(ctx, &b, &err), &err);
    double s = 0;
    for (size_t i = n - (size_t)n_label; i < n; i++)
        s += sl_logprob_raw(sl_ctx_logits(ctx, (int32_t)i - 1), m->hp.n_vocab, toks[i]);
    sl_batch_free(&b);
    sl_ctx_free(ctx);
    free(toks);
    return s / n_label;
}

static void check_against_alone(const struct sl_model *m, struct sl_classify_task *task,
                                const char *const *inputs, size_t n_inputs, int32_t n_batch)
{
    struct sl_err err = {0};
    struct sl_ctx *ctx = make_ctx(m, 2048, n_batch);
    struct sl_classifier *c = NULL;
    T_OK(sl_classifier_init(&c, ctx, task, &err), &err);
    if (!c) goto out;
    struct sl_classify_result *res = calloc(n_inputs, sizeof *res);
    T_OK(sl_classify_batch(c, inputs, n_inputs, res, &err), &err);
    T_TRUE(ctx->cap_outputs <= sl_logit_rows(m)); /* logits memory stays bounded */
    bool ok = res[0].probs != NULL;
    for (size_t i = 0; i < n_inputs && ok; i++) {
        char *prompt = NULL;
        T_OK(sl_classifier_render(c, inputs[i], &prompt, &err), &err);
        double psum = 0;
        for (size_t l = 0; l < task->n_labels; l++) psum += res[i].probs[l];
        for (size_t l = 0; l < task->n_labels; l++) {
            if (task->n_labels > 8 && l % 9 != 0 && l + 1 != task->n_labels) continue; /* time */
            double want = score_alone(m, prompt, sl_classifier_continuation(c, l),
                                      res[i].n_tokens[l], task->mode == SL_PROMPT_CHAT);
            T_NEAR(res[i].scores[l], want, TOL_SCORE);
        }
        T_NEAR(psum, 1.0, 1e-5);
        T_TRUE(res[i].probs[res[i].label] == res[i].confidence);
        free(prompt);
        sl_classify_result_free(&res[i]);
    }
    free(res);
out:
    sl_classifier_free(c);
    sl_ctx_free(ctx);
}

static void label_scores_equal_full_recomputation(void)
{
    struct sl_model *m = synth_model();
    const char *labels[] = {"positive", "negative", "neutral", "x"};
    struct sl_classify_task t = sl_classify_default_task();
    t.labels = labels;
    t.n_labels = 4;
    t.mode = SL_PROMPT_PLAIN;
    const char *inputs[] = {"I loved it", "Terrible service, never again.", ""};
    check_against_alone(m, &t, inputs, 3, 512);
    t.mode = SL_PROMPT_RAW;
    t.instruction = "Review: ";
    check_against_alone(m, &t, inputs, 2, 512);
    t.mode = SL_PROMPT_CHAT; /* a named template on a model without one */
    t.chat_family = SL_CHAT_CHATML;
    t.instruction = NULL;
    check_against_alone(m, &t, inputs, 2, 512);
}

static void small_batches_and_many_labels_give_the_same_scores(void)
{
    struct sl_model *m = synth_model();
    char names[70][32];
    const char *labels[70];
    for (int i = 0; i < 70; i++) {
        snprintf(names[i], sizeof names[i], "lab%d-%s", i, i % 3 ? "yes" : "n");
        labels[i] = names[i];
    }
    struct sl_classify_task t = sl_classify_default_task();
    t.labels = labels;
    t.n_labels = 70; /* more label sequences than fit at once */
    t.mode = SL_PROMPT_PLAIN;
    const char *inputs[] = {"abc", "defgh"};
    check_against_alone(m, &t, inputs, 2, 16); /* n_batch 16: flushes mid-prompt and mid-label */
}

/* 20 labels of ~9 tokens are ~180 logit rows; on a 65,536-token
 * vocabulary (64 rows per decode) they go in three decodes or more. */
static void many_label_tokens_on_a_wide_vocabulary_score_in_bounded_steps(void)
{
    struct sl_model *m = wide_vocab_model();
    if (!m) return;
    T_EQ_INT(sl_logit_rows(m), 64);
    char names[20][32];
    const char *labels[20];
    for (int i = 0; i < 20; i++) {
        snprintf(names[i], sizeof names[i], "label%d-%s", i, i % 3 ? "yes" : "n");
        labels[i] = names[i];
    }
    struct sl_classify_task t = sl_classify_default_task();
    t.labels = labels;
    t.n_labels = 20;
    t.mode = SL_PROMPT_PLAIN;
    const char *inputs[] = {"abc"};
    check_against_alone(m, &t, inputs, 1, 512);
}

static void batch_of_inputs_equals_one_by_one(void)
{
    struct sl_model *m = synth_model();
    struct sl_err err = {0};
    const char *labels[] = {"spam", "ham", "unsure"};
    const char *descs[] = {"unwanted bulk mail", NULL, "cannot tell"};
    struct sl_classify_example ex[] = {{"WIN MONEY NOW", "spam"}, {"lunch at 1?", "ham"}};
    struct sl_classify_task t = sl_classify_default_task();
    t.labels = labels;
    t.descriptions = descs;
    t.n_labels = 3;
    t.examples = ex;
    t.n_examples = 2;
    t.mode = SL_PROMPT_PLAIN;
    t.temperature = 1.7f;
    const char *inputs[] = {"hello there", "cheap pills", "meeting moved to 3pm", "a", "zz top"};
    struct sl_classify_result rb[5], r1;
    struct sl_ctx *ctx = make_ctx(m, 1024, 64), *ctx1 = make_ctx(m, 1024, 512);
    struct sl_classifier *cb = NULL, *c1 = NULL;
    T_OK(sl_classifier_init(&cb, ctx, &t, &err), &err);
    T_OK(sl_classifier_init(&c1, ctx1, &t, &err), &err);
    T_OK(sl_classify_batch(cb, inputs, 5, rb, &err), &err);
    for (int i = 0; i < 5; i++) {
        T_OK(sl_classify(c1, inputs[i], &r1, &err), &err);
        T_EQ_INT(r1.label, rb[i].label);
        for (int l = 0; l < 3; l++) T_NEAR(r1.probs[l], rb[i].probs[l], 1e-4);
        T_TRUE(rb[i].n_eval < rb[i].n_prompt); /* the instruction came from the cache */
        sl_classify_result_free(&r1);
        sl_classify_result_free(&rb[i]);
    }
    sl_classifier_free(cb);
    sl_classifier_free(c1);
    sl_ctx_free(ctx);
    sl_ctx_free(ctx1);
}

static void cache_survives_someone_else_clearing_seq0(void)
{
    struct sl_model *m = synth_model();
    struct sl_err err = {0};
    const char *labels[] = {"yes", "no"};
    struct sl_classify_task t = sl_classify_default_task();
    t.labels = labels;
    t.n_labels = 2;
    t.mode = SL_PROMPT_PLAIN;
    struct sl_ctx *ctx = make_ctx(m, 512, 64);
    struct sl_classifier *c = NULL;
    struct sl_classify_result a, b;
    T_OK(sl_classifier_init(&c, ctx, &t, &err), &err);
    T_OK(sl_classify(c, "is it?", &a, &err), &err);
    sl_kv_seq_rm(&ctx->kv, 0, 5, -1); /* against the contract, but must not give wrong numbers */
    T_OK(sl_classify(c, "is it?", &b, &err), &err);
    if (a.probs && b.probs) T_NEAR(a.probs[0], b.probs[0], 1e-5);
    T_EQ_INT(b.n_cached, a.n_cached); /* the head was re-evaluated */
    sl_classify_result_free(&a);
    sl_classify_result_free(&b);
    sl_classifier_free(c);
    sl_ctx_free(ctx);
}

static void temperature_flattens_probabilities(void)
{
    float s[3] = {-1.0f, -2.0f, -4.0f}, p1[3], p2[3], m1, m2, h1, h2;
    T_EQ_INT(sl_classify_softmax(s, 3, 1.0f, p1, &m1, &h1), 0);
    T_EQ_INT(sl_classify_softmax(s, 3, 3.0f, p2, &m2, &h2), 0);
    T_TRUE(p2[0] < p1[0]);
    T_TRUE(h2 > h1);
    T_TRUE(m2 < m1);
    T_NEAR(p1[0], 1.0 / (1 + exp(-1.0) + exp(-3.0)), 1e-6);
}

static void bad_tasks_are_rejected(void)
{
    struct sl_model *m = synth_model();
    struct sl_err err = {0};
    struct sl_ctx *ctx = make_ctx(m, 256, 64);
    struct sl_classifier *c = NULL;
    const char *dup[] = {"a", "b", "a"};
    struct sl_classify_task t = sl_classify_default_task();
    t.labels = dup;
    t.n_labels = 3;
    T_EQ_INT(sl_classifier_init(&c, ctx, &t, &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "twice") != NULL);
    t.n_labels = 0;
    T_EQ_INT(sl_classifier_init(&c, ctx, &t, &err), SL_EINVAL);
    t.n_labels = 2;
    t.temperature = 0;
    T_EQ_INT(sl_classifier_init(&c, ctx, &t, &err), SL_EINVAL);
    t.temperature = 1;
    struct sl_classify_example ex = {"x", "zebra"};
    t.examples = &ex;
    t.n_examples = 1;
    T_EQ_INT(sl_classifier_init(&c, ctx, &t, &err), SL_EINVAL);
    t.n_examples = 0;
    t.mode = SL_PROMPT_CHAT; /* the synthetic model has no template */
    T_EQ_INT(sl_classifier_init(&c, ctx, &t, &err), SL_EUNSUPPORTED);
    /* a prompt longer than the context is an error, not a crash */
    t.mode = SL_PROMPT_PLAIN;
    T_OK(sl_classifier_init(&c, ctx, &t, &err), &err);
    char big[2000];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = 0;
    struct sl_classify_result r;
    T_EQ_INT(sl_classify(c, big, &r, &err), SL_ERANGE);
    T_TRUE(r.probs == NULL);
    sl_classifier_free(c);
    sl_ctx_free(ctx);
}

static void bpe_boundary_tokens_match_running_text(void)
{
    struct sl_model *m = bpe_model();
    if (!m) {
        t_skip("assets absent: tokenizers/ggml-vocab/ggml-vocab-gpt-2.gguf");
        return;
    }
    /* labels merging with the prompt's last bytes ("Label:" + " positive"),
       and a RAW prompt ending mid-word */
    const char *labels[] = {"positive", "negative", "mixed feelings"};
    struct sl_classify_task t = sl_classify_default_task();
    t.labels = labels;
    t.n_labels = 3;
    t.mode = SL_PROMPT_PLAIN;
    const char *inputs[] = {"The food was great", "meh"};
    check_against_alone(m, &t, inputs, 2, 512);
    t.mode = SL_PROMPT_RAW;
    t.instruction = "The verdict is un";
    const char *l2[] = {"clear", "known", "certain", " sure"};
    t.labels = l2;
    t.n_labels = 4;
    const char *in2[] = {""};
    check_against_alone(m, &t, in2, 1, 512);
}

static void stories_model_picks_the_argmax_of_direct_scoring(void)
{
    const char *path = t_asset("models/stories260K/stories260K.gguf");
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (!f) {
        t_skip("assets absent: models/stories260K/stories260K.gguf");
        return;
    }
    fclose(f);
    struct sl_err err = {0};
    struct sl_model *m = NULL;
    T_OK(sl_model_load(&m, path, true, &err), &err);
    if (!m) return;
    const char *labels[] = {" Lily", " Tom", " dog", " Ben"};
    struct sl_classify_task t = sl_classify_default_task();
    t.labels = labels;
    t.n_labels = 4;
    t.mode = SL_PROMPT_RAW;
    t.instruction = "Once upon a time there was a little girl named";
    const char *in[] = {""};
    check_against_alone(m, &t, in, 1, 512);

    struct sl_ctx *ctx = make_ctx(m, 256, 64);
    struct sl_classifier *c = NULL;
    struct sl_classify_result r;
    T_OK(sl_classifier_init(&c, ctx, &t, &err), &err);
    T_OK(sl_classify(c, "", &r, &err), &err);
    int best = 0;
    double bs = -INFINITY;
    for (int l = 0; l < 4; l++) {
        double s = score_alone(m, t.instruction, labels[l], r.n_tokens[l], false);
        if (s > bs) bs = s, best = l;
    }
    T_EQ_INT(r.label, best);
    T_EQ_STR(labels[r.label], " Lily"); /* the story model's favourite name */
    T_TRUE(r.confidence > 0.5f);
    sl_classify_result_free(&r);
    sl_classifier_free(c);
    sl_ctx_free(ctx);
    sl_model_free(m);
}

int main(void)
{
    T_RUN(temperature_flattens_probabilities);
    T_RUN(label_scores_equal_full_recomputation);
    T_RUN(small_batches_and_many_labels_give_the_same_scores);
    T_RUN(many_label_tokens_on_a_wide_vocabulary_score_in_bounded_steps);
    T_RUN(batch_of_inputs_equals_one_by_one);
    T_RUN(bad_tasks_are_rejected);
    T_RUN(cache_survives_someone_else_clearing_seq0);
    T_RUN(bpe_boundary_tokens_match_running_text);
    T_RUN(stories_model_picks_the_argmax_of_direct_scoring);
    return t_done();
}
