/*
 * test_predict.c - the learned router's features, score and GGUF file
 * (src/router/predict.c).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/gguf.h"
#include "engine/quant.h"
#include "router/predict.h"
#include "test.h"

static double sigmoid(double z)
{
    return 1.0 / (1.0 + exp(-z));
}

static double norm_of(const float *x, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return sqrt(s);
}

static const char *text1 = "My card was charged twice, please refund the second payment!";

static void featurize_is_deterministic_and_normalised(void)
{
    enum { D = 3, H = 64 };
    float embd[D] = {3, 0, 4};
    float a[D + 1 + H], b[D + 1 + H];
    size_t len = strlen(text1);
    sl_predictor_featurize(D, H, text1, len, embd, a);
    sl_predictor_featurize(D, H, text1, len, embd, b);
    T_TRUE(memcmp(a, b, sizeof a) == 0);
    T_NEAR(a[0], 0.6, 1e-6);
    T_NEAR(a[1], 0.0, 0);
    T_NEAR(a[2], 0.8, 1e-6);
    T_NEAR(a[D], log1p((double)len) / 10.0, 1e-6);
    T_NEAR(norm_of(a + D + 1, H), 1.0, 1e-5);
    /* ASCII case and whitespace runs do not change the n-grams */
    const char *t2 = "MY CARD  was charged twice,\tplease REFUND the second payment!";
    sl_predictor_featurize(D, H, t2, strlen(t2), embd, b);
    T_TRUE(memcmp(a + D + 1, b + D + 1, H * sizeof(float)) == 0);
    /* a different text gives different n-grams */
    const char *t3 = "What is the capital of France?";
    sl_predictor_featurize(D, H, t3, strlen(t3), embd, b);
    T_TRUE(memcmp(a + D + 1, b + D + 1, H * sizeof(float)) != 0);
    /* no embedding: zeros there; no text: only the length feature (0) */
    sl_predictor_featurize(D, H, "", 0, NULL, b);
    for (size_t i = 0; i < D + 1 + H; i++)
        if (b[i] != 0) T_FAIL_AT("feature %zu of an empty text is %g", i, (double)b[i]);
}

/* A fixed text's buckets are part of the file format: a model trained on
 * one build must score the same on another. */
static void featurize_buckets_are_stable(void)
{
    enum { H = 1024 };
    float x[1 + H];
    sl_predictor_featurize(0, H, "ab", 2, NULL, x);
    /* "ab": one unigram, char 3-grams " ab" and "ab " -> 3 buckets of 1,
     * each 1/sqrt(3) (unless two collide) */
    int nz = 0;
    for (int i = 0; i < H; i++)
        if (x[1 + i] != 0) {
            nz++;
            T_NEAR(x[1 + i], 1.0 / sqrt(3.0), 1e-6);
        }
    T_EQ_INT(nz, 3);
    /* FNV-1a of 'u' 'a' 'b' mod 1024: computed by hand from the spec */
    uint32_t h = 2166136261u;
    const char *s = "uab";
    for (int i = 0; i < 3; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    T_TRUE(x[1 + h % H] != 0);
}

static void score_of_a_hand_made_model(void)
{
    enum { D = 2 };
    float w[D + 1] = {1.0f, 0.0f, 2.0f};
    struct sl_predictor *p = NULL;
    struct sl_err err = {0};
    T_OK(sl_predictor_new_linear(&p, D, 0, w, -1.0f, &err), &err);
    if (!p) return;
    T_EQ_INT(sl_predictor_embd_dim(p), D);
    float embd[D] = {3, 4};
    const char *t = "hello";
    double want = sigmoid(-1.0 + 0.6 + 2.0 * log1p(5.0) / 10.0);
    T_NEAR(sl_predictor_score(p, t, 5, embd), want, 1e-9);
    /* the embedding's scale does not matter */
    float embd2[D] = {30, 40};
    T_NEAR(sl_predictor_score(p, t, 5, embd2), want, 1e-9);
    sl_predictor_free(p);
}

/* score == sigmoid(bias + w . featurize(x)) for any weights. */
static void score_equals_the_dot_product_of_the_features(void)
{
    enum { D = 4, H = 257 };
    float w[D + 1 + H], x[D + 1 + H];
    uint32_t r = 12345;
    for (size_t i = 0; i < D + 1 + H; i++) {
        r = r * 1103515245u + 12345u;
        w[i] = (float)((double)(r >> 8) / (double)(1u << 24) - 0.5);
    }
    struct sl_predictor *p = NULL;
    struct sl_err err = {0};
    T_OK(sl_predictor_new_linear(&p, D, H, w, 0.25f, &err), &err);
    if (!p) return;
    float embd[D] = {0.1f, -2.0f, 0.5f, 1.0f};
    const char *texts[] = {text1, "", "x", "Ünïcödé wörds and  spaces\n\n", "a b a b a b"};
    for (size_t k = 0; k < sizeof texts / sizeof *texts; k++) {
        size_t len = strlen(texts[k]);
        sl_predictor_featurize(D, H, texts[k], len, embd, x);
        double z = 0.25;
        for (size_t i = 0; i < D + 1 + H; i++)
            z += (double)w[i] * x[i];
        T_NEAR(sl_predictor_score(p, texts[k], len, embd), sigmoid(z), 1e-6);
    }
    sl_predictor_free(p);
}

static void save_and_load_round_trip(void)
{
    enum { D = 5, H = 100 };
    float w[D + 1 + H];
    for (size_t i = 0; i < D + 1 + H; i++)
        w[i] = (float)sin((double)i);
    struct sl_predictor *p = NULL, *q = NULL;
    struct sl_err err = {0};
    T_OK(sl_predictor_new_linear(&p, D, H, w, -0.75f, &err), &err);
    const char *path = t_tmp_path("predict_roundtrip.gguf");
    T_OK(sl_predictor_save(p, path, &err), &err);
    T_OK(sl_predictor_load(&q, path, &err), &err);
    if (!p || !q) goto out;
    T_EQ_INT(sl_predictor_embd_dim(q), D);
    float embd[D] = {1, 2, 3, 4, 5};
    const char *texts[] = {text1, "short", ""};
    for (size_t k = 0; k < 3; k++)
        T_NEAR(sl_predictor_score(q, texts[k], strlen(texts[k]), embd),
               sl_predictor_score(p, texts[k], strlen(texts[k]), embd), 0);
    /* and the file says what it is */
    struct sl_gguf *g = NULL;
    T_OK(sl_gguf_open(&g, path, &err), &err);
    if (g) {
        struct sl_str s;
        T_OK(sl_gguf_get_str(g, "general.type", &s, &err), &err);
        T_TRUE(sl_str_eq(s, "router"));
        uint32_t v = 0;
        T_OK(sl_gguf_get_u32(g, "sluice.router.hash_dim", &v, &err), &err);
        T_EQ_INT(v, H);
        const struct sl_gguf_tensor *t = sl_gguf_find_tensor(g, "router.weight");
        T_TRUE(t && t->ne[0] == D + 1 + H && t->type == SL_TYPE_F32);
        sl_gguf_free(g);
    }
out:
    sl_predictor_free(p);
    sl_predictor_free(q);
    unlink(path);
}

/* Writes a GGUF with the given pieces (NULL type = no general.type). */
static void write_file(const char *path, const char *type, int with_bias, int64_t n_w)
{
    struct sl_gguf_writer *w = sl_gguf_writer_init();
    struct sl_err err = {0};
    if (type) sl_gguf_set_str(w, "general.type", type);
    sl_gguf_set_u32(w, "sluice.router.embd_dim", 2);
    sl_gguf_set_u32(w, "sluice.router.hash_dim", 4);
    if (with_bias) sl_gguf_set_f32(w, "sluice.router.bias", 0.5f);
    float data[16] = {0};
    int64_t ne[1] = {n_w};
    if (n_w > 0)
        T_OK(sl_gguf_add_tensor(w, "router.weight", SL_TYPE_F32, 1, ne, data,
                                (size_t)n_w * sizeof(float), &err),
             &err);
    T_OK(sl_gguf_writer_write(w, path, &err), &err);
    sl_gguf_writer_free(w);
}

static void load_rejects_bad_files_with_clear_errors(void)
{
    const char *path = t_tmp_path("predict_bad.gguf");
    struct sl_predictor *p = NULL;
    struct sl_err err = {0};
    /* the good shape loads */
    write_file(path, "router", 1, 7);
    T_OK(sl_predictor_load(&p, path, &err), &err);
    sl_predictor_free(p);
    p = NULL;
    /* another kind of GGUF */
    write_file(path, "head", 1, 7);
    T_EQ_INT(sl_predictor_load(&p, path, &err), SL_EFORMAT);
    T_TRUE(strstr(err.msg, "not a router file") != NULL);
    write_file(path, NULL, 1, 7);
    T_EQ_INT(sl_predictor_load(&p, path, &err), SL_EFORMAT);
    /* metadata missing */
    write_file(path, "router", 0, 7);
    T_EQ_INT(sl_predictor_load(&p, path, &err), SL_EFORMAT);
    T_TRUE(strstr(err.msg, "metadata") != NULL);
    /* weights of the wrong width, or none */
    write_file(path, "router", 1, 6);
    T_EQ_INT(sl_predictor_load(&p, path, &err), SL_EFORMAT);
    T_TRUE(strstr(err.msg, "router.weight") && strstr(err.msg, "[7]"));
    write_file(path, "router", 1, 0);
    T_EQ_INT(sl_predictor_load(&p, path, &err), SL_EFORMAT);
    T_TRUE(strstr(err.msg, "missing") != NULL);
    /* not GGUF at all, and no file */
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs("this is not a gguf file, just text", f);
        fclose(f);
    }
    T_TRUE(sl_predictor_load(&p, path, &err) < 0);
    unlink(path);
    T_TRUE(sl_predictor_load(&p, path, &err) < 0);
    T_TRUE(strstr(err.msg, "predict_bad.gguf") != NULL);
    T_TRUE(p == NULL);
}

static void new_linear_rejects_bad_weights(void)
{
    struct sl_predictor *p = NULL;
    struct sl_err err = {0};
    float w[3] = {0, NAN, 0};
    T_EQ_INT(sl_predictor_new_linear(&p, 1, 1, w, 0, &err), SL_EINVAL);
    T_EQ_INT(sl_predictor_new_linear(&p, 1, 1, NULL, INFINITY, &err), SL_EINVAL);
    T_EQ_INT(sl_predictor_new_linear(&p, -1, 1, NULL, 0, &err), SL_ERANGE);
    T_EQ_INT(sl_predictor_new_linear(&p, 0, 1u << 30, NULL, 0, &err), SL_ERANGE);
    T_TRUE(p == NULL);
    /* NULL weights: all zero, score 0.5 with bias 0 */
    T_OK(sl_predictor_new_linear(&p, 0, 8, NULL, 0, &err), &err);
    if (p) T_NEAR(sl_predictor_score(p, "anything", 8, NULL), 0.5, 1e-12);
    sl_predictor_free(p);
}

int main(void)
{
    T_RUN(featurize_is_deterministic_and_normalised);
    T_RUN(featurize_buckets_are_stable);
    T_RUN(score_of_a_hand_made_model);
    T_RUN(score_equals_the_dot_product_of_the_features);
    T_RUN(save_and_load_round_trip);
    T_RUN(load_rejects_bad_files_with_clear_errors);
    T_RUN(new_linear_rejects_bad_weights);
    return t_done();
}
