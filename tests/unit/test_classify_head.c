/*
 * test_classify_head.c - classification through a trained head (tasks
 * layer): a task with head_path embeds the input with its model and applies
 * the head; the results equal the head applied by hand, the labels are
 * mapped by name, and a head that does not fit the task or the model is
 * refused with a message saying why.
 */
#include <math.h>
#include <string.h>
#include <sys/wait.h>

#include "convert/synth.h"
#include "engine/forward.h"
#include "engine/model.h"
#include "tasks/classify.h"
#include "train/data.h"
#include "train/head.h"
#include "test.h"

#define TOL_PROB 1e-6 /* the classifier's probs vs the head's: float rounding of log/exp */

static struct sl_model *synth(const char *name, int32_t n_embd, uint64_t seed)
{
    struct sl_synth_params p = sl_synth_default_params();
    struct sl_err err = {0};
    struct sl_model *m = NULL;
    const char *path = t_tmp_path(name);
    p.type = SL_TYPE_F32;
    p.n_embd = n_embd;
    p.seed = seed;
    T_OK(sl_synth_write(&p, path, NULL, NULL, &err), &err);
    T_OK(sl_model_load(&m, path, true, &err), &err);
    return m;
}

static struct sl_ctx *make_ctx(const struct sl_model *m, bool embeddings, int32_t n)
{
    struct sl_ctx_params cp = sl_ctx_default_params();
    struct sl_err err = {0};
    struct sl_ctx *ctx = NULL;
    cp.n_ctx = cp.n_batch = n;
    cp.n_threads = 2;
    cp.embeddings = cp.no_logits = embeddings;
    T_OK(sl_ctx_init(&ctx, m, &cp, &err), &err);
    return ctx;
}

/* A toy set: two labels told apart by their words. */
static const char *const toy_labels[2] = {"billing", "card"}; /* sorted, as sluice train head writes them */
#define N_TOY 24

static const char *toy_text(int i, int32_t *y)
{
    static const char *const bill[] = {"my invoice is wrong", "charged twice this month", "refund my payment",
                                       "the bill is too high", "payment failed again", "why was I charged"};
    static const char *const card[] = {"my card is lost", "card stolen yesterday", "new card please",
                                       "card not arriving", "activate my card", "the card was declined"};
    *y = i % 2;
    return *y ? card[(i / 2) % 6] : bill[(i / 2) % 6];
}

/* Train a linear head on m's embeddings of the toy set and save it. */
static void train_toy_head(struct sl_model *m, const char *path, int32_t n_ctx)
{
    struct sl_err err = {0};
    struct sl_ctx *ectx = make_ctx(m, true, n_ctx);
    char *texts[N_TOY];
    int32_t y[N_TOY], idx[N_TOY];
    for (int i = 0; i < N_TOY; i++) {
        texts[i] = (char *)toy_text(i, &y[i]);
        idx[i] = i;
    }
    float *x = NULL;
    T_OK(sl_embed_texts(ectx, texts, N_TOY, NULL, &x, NULL, NULL, &err), &err);
    struct sl_head h;
    T_OK(sl_head_init(&h, m->hp.n_embd, 0, toy_labels, 2, &err), &err);
    h.source_name = strdup(m->name ? m->name : "");
    h.source_hash = sl_head_model_hash(m);
    h.n_ctx = n_ctx;
    struct sl_head_train_params p = sl_head_train_default_params();
    p.epochs = 40;
    p.lr = 1e-2f;
    struct sl_head_train_result res;
    T_OK(sl_head_train(&h, x, y, idx, N_TOY, NULL, 0, &p, &res, NULL, NULL, &err), &err);
    T_OK(sl_head_save(&h, path, &err), &err);
    sl_head_free(&h);
    free(x);
    sl_ctx_free(ectx);
}

static void classify_through_head_equals_the_head_applied_by_hand(void)
{
    struct sl_err err = {0};
    struct sl_model *m = synth("classify_head_a.gguf", 64, 11);
    char hpath[1024];
    snprintf(hpath, sizeof hpath, "%s", t_tmp_path("classify_head_a_head.gguf"));
    train_toy_head(m, hpath, 64);

    /* the task lists the labels in another order than the head */
    const char *const labels[2] = {"card", "billing"};
    struct sl_classify_task t = sl_classify_default_task();
    t.labels = labels;
    t.n_labels = 2;
    t.head_path = hpath;
    struct sl_ctx *ctx = make_ctx(m, false, 256); /* an ordinary (logits) context */
    struct sl_classifier *c = NULL;
    T_OK(sl_classifier_init(&c, ctx, &t, &err), &err);
    T_TRUE(c && sl_classifier_has_head(c));

    struct sl_head h;
    T_OK(sl_head_load(&h, hpath, &err), &err);
    T_EQ_INT(h.n_ctx, 64);
    struct sl_ctx *ectx = make_ctx(m, true, 64);
    const char *inputs[N_TOY];
    int32_t y[N_TOY];
    for (int i = 0; i < N_TOY; i++) inputs[i] = toy_text(i, &y[i]);
    struct sl_classify_result res[N_TOY];
    T_OK(sl_classify_batch(c, inputs, N_TOY, res, &err), &err);
    int correct = 0;
    for (int i = 0; i < N_TOY; i++) {
        float emb[64], p[2];
        T_OK(sl_embed_text(ectx, inputs[i], emb, NULL, &err), &err);
        sl_head_classify(&h, emb, p);
        /* task label 0 = "card" = head class 1 */
        T_NEAR(res[i].probs[0], p[1], TOL_PROB);
        T_NEAR(res[i].probs[1], p[0], TOL_PROB);
        T_NEAR(res[i].confidence, p[1] > p[0] ? p[1] : p[0], TOL_PROB);
        T_EQ_INT(res[i].label, p[1] > p[0] ? 0 : 1);
        T_TRUE(res[i].n_prompt > 0 && res[i].n_cached == 0);
        correct += res[i].label == (y[i] == 1 ? 0 : 1);
        sl_classify_result_free(&res[i]);
    }
    fprintf(stderr, "      %d of %d toy inputs right through the head\n", correct, N_TOY);
    T_TRUE(correct >= N_TOY * 3 / 4);

    /* one at a time gives the same; a temperature flattens softmax(log p / T) */
    struct sl_classify_result one;
    T_OK(sl_classifier_set_temperature(c, 2.0f, &err), &err);
    T_OK(sl_classify(c, inputs[1], &one, &err), &err);
    float emb[64], p[2];
    T_OK(sl_embed_text(ectx, inputs[1], emb, NULL, &err), &err);
    sl_head_classify(&h, emb, p);
    double a = sqrt((double)p[1]), b = sqrt((double)p[0]);
    T_NEAR(one.probs[0], a / (a + b), TOL_PROB);
    sl_classify_result_free(&one);

    sl_head_free(&h);
    sl_ctx_free(ectx);
    sl_classifier_free(c);
    sl_ctx_free(ctx);
    sl_model_free(m);
}

static void head_that_does_not_fit_is_refused_clearly(void)
{
    struct sl_err err = {0};
    struct sl_model *m = synth("classify_head_b.gguf", 64, 12);
    char hpath[1024];
    snprintf(hpath, sizeof hpath, "%s", t_tmp_path("classify_head_b_head.gguf"));
    train_toy_head(m, hpath, 32);
    struct sl_ctx *ctx = make_ctx(m, false, 128);
    struct sl_classifier *c = NULL;
    struct sl_classify_task t = sl_classify_default_task();
    t.head_path = hpath;

    /* another label set */
    const char *const other[2] = {"billing", "refund"};
    t.labels = other;
    t.n_labels = 2;
    T_EQ_INT(sl_classifier_init(&c, ctx, &t, &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "'refund' is not one of head") != NULL);
    T_TRUE(c == NULL);
    /* another number of labels */
    const char *const three[3] = {"billing", "card", "refund"};
    t.labels = three;
    t.n_labels = 3;
    T_EQ_INT(sl_classifier_init(&c, ctx, &t, &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "has 2 labels, the task 3") != NULL);
    /* a file that is not a head */
    t.labels = toy_labels;
    t.n_labels = 2;
    t.head_path = t_tmp_path("classify_head_b.gguf");
    T_EQ_INT(sl_classifier_init(&c, ctx, &t, &err), SL_EFORMAT);
    T_TRUE(strstr(err.msg, "not a classification head") != NULL);
    t.head_path = t_tmp_path("classify_head_missing.gguf");
    T_EQ_INT(sl_classifier_init(&c, ctx, &t, &err), SL_EIO);
    sl_ctx_free(ctx);

    /* a model of another width */
    struct sl_model *narrow = synth("classify_head_c.gguf", 32, 12);
    ctx = make_ctx(narrow, false, 128);
    t.head_path = hpath;
    T_EQ_INT(sl_classifier_init(&c, ctx, &t, &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "takes 64-wide embeddings") != NULL && strstr(err.msg, "gives 32") != NULL);
    sl_ctx_free(ctx);
    sl_model_free(narrow);

    /* the same width, other weights */
    struct sl_model *other_m = synth("classify_head_d.gguf", 64, 99);
    ctx = make_ctx(other_m, false, 128);
    T_EQ_INT(sl_classifier_init(&c, ctx, &t, &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "trained on another model") != NULL);
    sl_ctx_free(ctx);
    sl_model_free(other_m);
    sl_model_free(m);
}

static int run(const char *args, char *out, size_t cap)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", SL_TEST_BINARY, args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* `sluice classify --head`: the head's labels by default, its probabilities
 * in the output, a clear error for labels it does not have. */
static void classify_command_takes_a_head(void)
{
    char model[1024], hpath[1024], input[1024], args[4096], out[16384];
    struct sl_model *m = synth("classify_head_cli.gguf", 64, 13);
    snprintf(model, sizeof model, "%s", t_tmp_path("classify_head_cli.gguf"));
    snprintf(hpath, sizeof hpath, "%s", t_tmp_path("classify_head_cli_head.gguf"));
    snprintf(input, sizeof input, "%s", t_tmp_path("classify_head_cli.jsonl"));
    train_toy_head(m, hpath, 64);
    sl_model_free(m);
    FILE *f = fopen(input, "w");
    fputs("{\"id\": 1, \"text\": \"my card is lost\"}\n{\"id\": 2, \"text\": \"refund my payment\"}\n", f);
    fclose(f);
    snprintf(args, sizeof args, "classify -m %s --head %s --input %s -t 2", model, hpath, input);
    int rc = run(args, out, sizeof out);
    T_EQ_INT(rc, 0);
    T_TRUE(strstr(out, "{\"id\":1,\"label\":\"card\"") != NULL);
    T_TRUE(strstr(out, "{\"id\":2,\"label\":\"billing\"") != NULL);
    T_TRUE(strstr(out, "\"probs\":{\"billing\":") != NULL);
    if (rc) fprintf(stderr, "%s\n", out);
    snprintf(args, sizeof args, "classify -m %s --head %s --labels card,refund --input %s", model, hpath, input);
    T_EQ_INT(run(args, out, sizeof out), 1);
    T_TRUE(strstr(out, "'refund' is not one of head") != NULL);
}

int main(void)
{
    T_RUN(classify_through_head_equals_the_head_applied_by_hand);
    T_RUN(head_that_does_not_fit_is_refused_clearly);
    T_RUN(classify_command_takes_a_head);
    return t_done();
}
