/*
 * test_train_head.c - classification heads: training on separable data,
 * the GGUF round trip, and embeddings with their cache (train layer).
 */
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert/synth.h"
#include "engine/forward.h"
#include "engine/model.h"
#include "train/data.h"
#include "train/head.h"
#include "test.h"

enum { E_ = 16, C_ = 4, N_ = 400 };

/* Gaussian clusters: class c around a random centre, noise 0.5. */
static void make_clusters(float *x, int32_t *y, uint64_t seed)
{
    struct sl_rng r;
    float centre[C_][E_];
    sl_rng_seed(&r, seed);
    for (int c = 0; c < C_; c++)
        for (int i = 0; i < E_; i++) centre[c][i] = 1.5f * sl_rng_normal(&r);
    for (int n = 0; n < N_; n++) {
        y[n] = (int32_t)sl_rng_below(&r, C_);
        for (int i = 0; i < E_; i++) x[n * E_ + i] = centre[y[n]][i] + 0.5f * sl_rng_normal(&r);
    }
}

static const char *const labels[C_] = {"billing", "card", "refund", "transfer"};

static void train_one(int hidden, double *acc_out, struct sl_head *h)
{
    static float x[N_ * E_];
    static int32_t y[N_];
    int32_t *tr, *va;
    size_t ntr, nva;
    struct sl_err err = {0};
    make_clusters(x, y, 3);
    T_OK(sl_split(N_, 0.2, 1, &tr, &ntr, &va, &nva, &err), &err);
    T_OK(sl_head_init(h, E_, hidden, labels, C_, &err), &err);
    struct sl_head_train_params p = sl_head_train_default_params();
    p.n_hidden = hidden;
    p.epochs = 30;
    struct sl_head_train_result res;
    T_OK(sl_head_train(h, x, y, tr, ntr, va, nva, &p, &res, NULL, NULL, &err), &err);
    fprintf(stderr, "      %s: val acc %.3f, val loss %.3f at epoch %d of %d\n", hidden ? "mlp" : "linear",
            res.val_acc, res.val_loss, res.best_epoch, res.epochs_run);
    *acc_out = res.val_acc;
    free(tr);
    free(va);
}

static void head_learns_separable_clusters(void)
{
    struct sl_head h;
    double acc;
    train_one(0, &acc, &h);
    T_TRUE(acc >= 0.95);
    sl_head_free(&h);
    train_one(32, &acc, &h);
    T_TRUE(acc >= 0.95);
    sl_head_free(&h);
}

static void head_gguf_round_trips(void)
{
    struct sl_head h, h2;
    struct sl_err err = {0};
    double acc;
    for (int hidden = 0; hidden <= 8; hidden += 8) {
        train_one(hidden, &acc, &h);
        h.source_name = strdup("tiny");
        h.source_hash = 0x0123456789abcdefull;
        const char *path = t_tmp_path("train_head.gguf");
        T_OK(sl_head_save(&h, path, &err), &err);
        T_OK(sl_head_load(&h2, path, &err), &err);
        T_EQ_INT(h2.n_hidden, hidden);
        T_EQ_INT(h2.n_out, C_);
        T_EQ_STR(h2.labels[2], "refund");
        T_EQ_STR(h2.source_name, "tiny");
        T_TRUE(h2.source_hash == 0x0123456789abcdefull);
        float x[E_], p1[C_], p2[C_];
        for (int i = 0; i < E_; i++) x[i] = (float)i / E_ - 0.5f;
        sl_head_classify(&h, x, p1);
        sl_head_classify(&h2, x, p2);
        T_TRUE(memcmp(p1, p2, sizeof p1) == 0);
        double s = 0;
        for (int c = 0; c < C_; c++) s += p2[c];
        T_NEAR(s, 1, 1e-6);
        sl_head_free(&h);
        sl_head_free(&h2);
    }
    T_EQ_INT(sl_head_load(&h2, "/nonexistent.gguf", &err), SL_EIO);
}

/* An ensemble of k heads: member m is the head sl_head_train_soft makes on
 * the split and init of seed + m (so k = 1 is the single head), the
 * probabilities are the members' mean, the file round-trips with
 * n_members, and training or mixing shapes is refused. */
static void head_ensemble_averages_its_members(void)
{
    static float x[N_ * E_];
    static int32_t y[N_];
    struct sl_err err = {0};
    struct sl_head_train_params p = sl_head_train_default_params();
    make_clusters(x, y, 5);
    p.n_hidden = 8;
    p.epochs = 10;
    p.seed = 7;
    enum { K = 3 };
    struct sl_head ens, single[K], back;
    struct sl_head_train_result res[K];
    for (int hidden = 0; hidden <= 8; hidden += 8) {
        p.n_hidden = hidden;
        T_OK(sl_head_init(&ens, E_, hidden, labels, C_, &err), &err);
        ens.source_name = strdup("tiny");
        ens.n_ctx = 64;
        /* two threads for three members: the order of training must not matter */
        T_OK(sl_head_train_ensemble(&ens, x, y, NULL, N_, 0.2, K, 2, &p, res, NULL, NULL, &err), &err);
        T_EQ_INT(ens.n_members, K);
        T_EQ_STR(ens.source_name, "tiny");
        T_EQ_INT(ens.n_ctx, 64);
        for (int m = 0; m < K; m++) {
            struct sl_head_train_params pm = p;
            pm.seed = p.seed + (uint64_t)m;
            T_OK(sl_head_init(&single[m], E_, hidden, labels, C_, &err), &err);
            T_OK(sl_head_train_ensemble(&single[m], x, y, NULL, N_, 0.2, 1, 1, &pm, NULL, NULL, NULL, &err), &err);
            T_EQ_INT(single[m].n_members, 1);
            T_EQ_INT((int)res[m].n_val, 80);
        }
        const char *path = t_tmp_path("train_head_ens.gguf");
        T_OK(sl_head_save(&ens, path, &err), &err);
        T_OK(sl_head_load(&back, path, &err), &err);
        T_EQ_INT(back.n_members, K);
        for (int n = 0; n < 20; n++) {
            float pe[C_], pb[C_], pm[C_], mean[C_] = {0};
            sl_head_classify(&ens, x + n * E_, pe);
            sl_head_classify(&back, x + n * E_, pb);
            T_TRUE(memcmp(pe, pb, sizeof pe) == 0);
            for (int m = 0; m < K; m++) {
                sl_head_classify(&single[m], x + n * E_, pm);
                for (int c = 0; c < C_; c++) mean[c] += pm[c] / K;
            }
            for (int c = 0; c < C_; c++) T_NEAR(pe[c], mean[c], 1e-6);
        }
        /* an ensemble is not trained as a whole, nor mixed with another shape */
        struct sl_head_train_result r1;
        int32_t idx[4] = {0, 1, 2, 3};
        T_EQ_INT(sl_head_train(&back, x, y, idx, 4, NULL, 0, &p, &r1, NULL, NULL, &err), SL_EINVAL);
        struct sl_head two[2] = {single[0], back}, bad;
        T_EQ_INT(sl_head_ensemble(&bad, two, 2, &err), SL_EINVAL);
        T_EQ_INT(sl_head_train_ensemble(&single[0], x, y, NULL, N_, 0.2, 0, 1, &p, NULL, NULL, NULL, &err), SL_EINVAL);
        sl_head_free(&ens);
        sl_head_free(&back);
        for (int m = 0; m < K; m++) sl_head_free(&single[m]);
    }
}

static void head_embeds_texts_once_and_caches_them(void)
{
    char model[512], dir[512];
    struct sl_err err = {0};
    snprintf(model, sizeof model, "%s", t_tmp_path("train_head_model.gguf"));
    snprintf(dir, sizeof dir, "%s", t_tmp_path("train_head_cache"));
    mkdir(dir, 0755);
    struct sl_synth_params sp = sl_synth_default_params();
    T_OK(sl_synth_write(&sp, model, NULL, NULL, &err), &err);
    struct sl_model *m = NULL;
    T_OK(sl_model_load(&m, model, true, &err), &err);
    if (!m) return;
    struct sl_ctx_params cp = sl_ctx_default_params();
    cp.n_ctx = 128;
    cp.n_batch = 128;
    cp.n_threads = 2;
    cp.embeddings = true;
    cp.no_logits = true;
    struct sl_ctx *ctx = NULL;
    T_OK(sl_ctx_init(&ctx, m, &cp, &err), &err);
    char *texts[] = {"where is my card", "I want a refund", "hello"};
    float *a = NULL, *b = NULL;
    T_OK(sl_embed_texts(ctx, texts, 3, dir, &a, NULL, NULL, &err), &err);
    /* the cache file exists now; a second call reads it and gives the same bits */
    char path[1200];
    snprintf(path, sizeof path, "%s/emb-%016llx-", dir, (unsigned long long)sl_head_model_hash(m));
    T_OK(sl_embed_texts(ctx, texts, 3, dir, &b, NULL, NULL, &err), &err);
    T_TRUE(a && b && memcmp(a, b, 3 * 64 * sizeof(float)) == 0);
    /* the same text embedded alone gives the same vector */
    float one[64];
    T_OK(sl_embed_text(ctx, texts[1], one, NULL, &err), &err);
    T_TRUE(memcmp(one, a + 64, sizeof one) == 0);
    /* different texts differ */
    T_TRUE(memcmp(a, a + 64, 64 * sizeof(float)) != 0);
    free(a);
    free(b);
    /* many texts are packed several to a decode (up to n_batch tokens): an
     * empty one, one longer than the batch (cut like a single text), and
     * enough to need several batches; each is the vector it gets alone */
    enum { NT = 41 };
    char *many[NT], longer[2048] = "";
    for (int i = 0; i < 300; i++) strcat(longer, i % 2 ? "card " : "refund ");
    for (int i = 0; i < NT; i++) {
        many[i] = malloc(64);
        snprintf(many[i], 64, "%s request number %d of the day", i % 3 ? "transfer" : "balance", i);
    }
    free(many[7]);
    many[7] = strdup("");
    free(many[20]);
    many[20] = strdup(longer);
    T_OK(sl_embed_texts(ctx, many, NT, NULL, &a, NULL, NULL, &err), &err);
    for (int i = 0; a && i < NT; i++) {
        int32_t used = -1;
        T_OK(sl_embed_text(ctx, many[i], one, &used, &err), &err);
        if (i == 20) T_EQ_INT(used, 128); /* cut at n_batch */
        if (i != 20) T_TRUE(used >= 1 && used < 128);
        float worst = 0;
        for (int e = 0; e < 64; e++) worst = fmaxf(worst, fabsf(one[e] - a[i * 64 + e]));
        if (worst > 1e-5f) fprintf(stderr, "      text %d differs by %g\n", i, worst);
        T_TRUE(worst <= 1e-5f);
    }
    for (int i = 0; i < NT; i++) free(many[i]);
    free(a);
    sl_ctx_free(ctx);
    sl_model_free(m);
}

/* Real data, small: the first 360 Banking77 training rows of 12 intents,
 * embedded by stories260K; a linear head must beat chance by far. */
static void head_on_banking77_embeddings_beats_chance(void)
{
    const char *csv = t_asset("datasets/banking77/train.csv");
    char model[1024];
    if (!csv) {
        t_skip("../shared/assets absent: no Banking77 / stories260K");
        return;
    }
    snprintf(model, sizeof model, "%s", t_asset("models/stories260K/stories260K.gguf"));
    csv = t_asset("datasets/banking77/train.csv");
    struct sl_err err = {0};
    struct sl_examples ex;
    T_OK(sl_examples_read(&ex, csv, NULL, NULL, NULL, 0, &err), &err);
    /* keep rows of the first 12 labels (sorted names), at most 30 each */
    size_t n = 0, per[12] = {0};
    for (size_t i = 0; i < ex.n; i++)
        if (ex.label[i] < 12 && per[ex.label[i]] < 30) {
            per[ex.label[i]]++;
            char *t = ex.text[n];
            ex.text[n] = ex.text[i];
            ex.text[i] = t;
            ex.label[n++] = ex.label[i];
        }
    struct sl_model *m = NULL;
    struct sl_ctx *ctx = NULL;
    T_OK(sl_model_load(&m, model, true, &err), &err);
    struct sl_ctx_params cp = sl_ctx_default_params();
    cp.n_ctx = cp.n_batch = 128;
    cp.n_threads = 2;
    cp.embeddings = cp.no_logits = true;
    T_OK(sl_ctx_init(&ctx, m, &cp, &err), &err);
    float *x = NULL;
    T_OK(sl_embed_texts(ctx, ex.text, n, NULL, &x, NULL, NULL, &err), &err);
    int32_t *tr, *va;
    size_t ntr, nva;
    T_OK(sl_split(n, 0.25, 1, &tr, &ntr, &va, &nva, &err), &err);
    struct sl_head h;
    T_OK(sl_head_init(&h, m->hp.n_embd, 0, (const char *const *)ex.labels, 12, &err), &err);
    struct sl_head_train_params p = sl_head_train_default_params();
    p.epochs = 100;
    p.patience = 20;
    struct sl_head_train_result res;
    T_OK(sl_head_train(&h, x, ex.label, tr, ntr, va, nva, &p, &res, NULL, NULL, &err), &err);
    fprintf(stderr, "      %zu examples, 12 intents: held-out accuracy %.3f (chance %.3f)\n", n, res.val_acc,
            1.0 / 12);
    T_TRUE(res.val_acc > 0.4);
    sl_head_free(&h);
    free(tr);
    free(va);
    free(x);
    sl_ctx_free(ctx);
    sl_model_free(m);
    sl_examples_free(&ex);
}

int main(void)
{
    T_RUN(head_learns_separable_clusters);
    T_RUN(head_gguf_round_trips);
    T_RUN(head_ensemble_averages_its_members);
    T_RUN(head_embeds_texts_once_and_caches_them);
    T_RUN(head_on_banking77_embeddings_beats_chance);
    return t_done();
}
