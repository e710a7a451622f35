/*
 * test_train_adamw.c - AdamW, schedules, clipping, early stopping, RNG and
 * splits (train layer).
 */
#include "train/adamw.h"
#include "train/data.h"
#include "test.h"

/* f(p) = sum_i c_i (p_i - t_i)^2 with very different curvatures */
static void adamw_minimizes_a_quadratic(void)
{
    float p[4] = {5, -3, 0.5f, 10}, g[4];
    const float t[4] = {1, 2, -1, 0}, c[4] = {0.01f, 1, 100, 3};
    struct sl_adamw o;
    struct sl_err err = {0};
    struct sl_adamw_params ap = sl_adamw_default_params();
    ap.clip_norm = 0;
    sl_adamw_init(&o, &ap);
    T_OK(sl_adamw_add(&o, p, g, 4, false, &err), &err);
    struct sl_lr_sched s = {SL_LR_COSINE, 0.1f, 0.001f, 10, 2000};
    for (int64_t step = 0; step < 2000; step++) {
        for (int i = 0; i < 4; i++) g[i] = 2 * c[i] * (p[i] - t[i]);
        sl_adamw_step(&o, sl_lr_at(&s, step));
    }
    for (int i = 0; i < 4; i++) T_NEAR(p[i], t[i], 1e-2);
    sl_adamw_free(&o);
}

static void adamw_first_step_moves_each_parameter_by_lr(void)
{
    /* with bias correction, step 1 is lr * g / (|g| + eps) = lr * sign(g) */
    float p[3] = {0, 0, 0}, g[3] = {1e-3f, -50, 2};
    struct sl_adamw o;
    struct sl_adamw_params ap = sl_adamw_default_params();
    ap.clip_norm = 0;
    sl_adamw_init(&o, &ap);
    sl_adamw_add(&o, p, g, 3, false, NULL);
    sl_adamw_step(&o, 0.01f);
    T_NEAR(p[0], -0.01, 1e-6);
    T_NEAR(p[1], 0.01, 1e-6);
    T_NEAR(p[2], -0.01, 1e-6);
    sl_adamw_free(&o);
}

static void adamw_decays_only_marked_groups(void)
{
    float a = 1, b = 1, ga = 0, gb = 0;
    struct sl_adamw o;
    struct sl_adamw_params ap = sl_adamw_default_params();
    ap.weight_decay = 0.5f;
    sl_adamw_init(&o, &ap);
    sl_adamw_add(&o, &a, &ga, 1, true, NULL);
    sl_adamw_add(&o, &b, &gb, 1, false, NULL);
    sl_adamw_step(&o, 0.1f);
    T_NEAR(a, 1 - 0.1 * 0.5, 1e-6);
    T_NEAR(b, 1, 0);
    sl_adamw_free(&o);
}

static void adamw_clips_by_global_norm(void)
{
    float p[2] = {0, 0}, g[2] = {30, 40};
    struct sl_adamw o;
    struct sl_adamw_params ap = sl_adamw_default_params();
    ap.clip_norm = 1.0f;
    ap.beta1 = 0; /* m = g: the step shows the clipped gradient's direction */
    sl_adamw_init(&o, &ap);
    sl_adamw_add(&o, p, g, 2, false, NULL);
    double norm = sl_adamw_step(&o, 0.1f);
    T_NEAR(norm, 50, 1e-9);
    T_NEAR(g[0], 30, 0); /* the caller's gradients are left alone */
    sl_adamw_free(&o);
}

static void lr_schedules_warm_up_then_decay(void)
{
    struct sl_lr_sched s = {SL_LR_COSINE, 1.0f, 0.1f, 10, 110};
    T_NEAR(sl_lr_at(&s, 0), 0.1, 1e-6);
    T_NEAR(sl_lr_at(&s, 9), 1.0, 1e-6);
    T_NEAR(sl_lr_at(&s, 10), 1.0, 1e-6);
    T_NEAR(sl_lr_at(&s, 60), 0.55, 1e-6); /* half way: the midpoint */
    T_NEAR(sl_lr_at(&s, 110), 0.1, 1e-6);
    s.kind = SL_LR_LINEAR;
    T_NEAR(sl_lr_at(&s, 35), 1.0 - 0.9 * 0.25, 1e-6);
    s.kind = SL_LR_CONSTANT;
    T_NEAR(sl_lr_at(&s, 100), 1.0, 0);
    enum sl_lr_schedule k;
    T_EQ_INT(sl_lr_schedule_parse("cosine", &k), 0);
    T_EQ_INT(sl_lr_schedule_parse("cosin", &k), SL_EINVAL);
}

static void early_stop_waits_for_patience(void)
{
    struct sl_early_stop e;
    bool stop;
    sl_early_stop_init(&e, 2, 0.0);
    T_TRUE(sl_early_stop_update(&e, 3.0, 1, &stop) && !stop);
    T_TRUE(sl_early_stop_update(&e, 2.0, 2, &stop) && !stop);
    T_TRUE(!sl_early_stop_update(&e, 2.5, 3, &stop) && !stop);
    T_TRUE(!sl_early_stop_update(&e, 2.0, 4, &stop) && stop);
    T_EQ_INT(e.best_at, 2);
}

static void split_is_deterministic_and_disjoint(void)
{
    int32_t *tr, *va, *tr2, *va2;
    size_t ntr, nva, ntr2, nva2;
    struct sl_err err = {0};
    T_OK(sl_split(100, 0.2, 42, &tr, &ntr, &va, &nva, &err), &err);
    T_OK(sl_split(100, 0.2, 42, &tr2, &ntr2, &va2, &nva2, &err), &err);
    T_EQ_INT(nva, 20);
    T_EQ_INT(ntr, 80);
    T_TRUE(memcmp(tr, tr2, ntr * sizeof *tr) == 0 && memcmp(va, va2, nva * sizeof *va) == 0);
    int seen[100] = {0};
    for (size_t i = 0; i < ntr; i++) seen[tr[i]]++;
    for (size_t i = 0; i < nva; i++) seen[va[i]]++;
    int all_once = 1;
    for (int i = 0; i < 100; i++) all_once &= seen[i] == 1;
    T_TRUE(all_once);
    free(tr), free(va), free(tr2), free(va2);
    /* a different seed gives another split */
    T_OK(sl_split(100, 0.2, 42, &tr, &ntr, &va, &nva, &err), &err);
    T_OK(sl_split(100, 0.2, 43, &tr2, &ntr2, &va2, &nva2, &err), &err);
    T_TRUE(memcmp(va, va2, nva * sizeof *va) != 0);
    free(tr), free(va), free(tr2), free(va2);
}

static void rng_is_reproducible(void)
{
    struct sl_rng a, b;
    sl_rng_seed(&a, 9);
    sl_rng_seed(&b, 9);
    double s = 0, s2 = 0;
    for (int i = 0; i < 10000; i++) {
        T_EQ_INT(sl_rng_u64(&a) == sl_rng_u64(&b), 1);
        float x = sl_rng_normal(&a);
        sl_rng_normal(&b);
        s += x, s2 += (double)x * x;
    }
    T_NEAR(s / 10000, 0, 0.05);
    T_NEAR(s2 / 10000, 1, 0.05);
}

static void examples_read_csv_and_jsonl(void)
{
    struct sl_err err = {0};
    char csv[512], jl[512]; /* t_tmp_path returns a static buffer */
    snprintf(csv, sizeof csv, "%s", t_tmp_path("train_ex.csv"));
    snprintf(jl, sizeof jl, "%s", t_tmp_path("train_ex.jsonl"));
    FILE *f = fopen(csv, "w");
    fputs("text,category\n\"hello, world\",greet\nbye,leave\nhi,greet\n", f);
    fclose(f);
    f = fopen(jl, "w");
    fputs("{\"text\": \"hello\", \"label\": \"greet\"}\n\n{\"prompt\": \"x\", \"completion\": \"leave\"}\n", f);
    fclose(f);
    struct sl_examples e;
    T_OK(sl_examples_read(&e, csv, NULL, NULL, NULL, 0, &err), &err);
    T_EQ_INT(e.n, 3);
    T_EQ_INT(e.n_labels, 2);
    T_EQ_STR(e.labels[0], "greet");
    T_EQ_STR(e.text[0], "hello, world");
    T_EQ_INT(e.label[1], 1);
    sl_examples_free(&e);
    T_OK(sl_examples_read(&e, jl, NULL, NULL, NULL, 0, &err), &err);
    T_EQ_INT(e.n, 2);
    T_EQ_STR(e.text[1], "x");
    sl_examples_free(&e);
    const char *fixed[] = {"greet"};
    T_EQ_INT(sl_examples_read(&e, jl, NULL, NULL, fixed, 1, &err), SL_EFORMAT);
    T_TRUE(strstr(err.msg, "leave") != NULL);
}

int main(void)
{
    T_RUN(adamw_minimizes_a_quadratic);
    T_RUN(adamw_first_step_moves_each_parameter_by_lr);
    T_RUN(adamw_decays_only_marked_groups);
    T_RUN(adamw_clips_by_global_norm);
    T_RUN(lr_schedules_warm_up_then_decay);
    T_RUN(early_stop_waits_for_patience);
    T_RUN(split_is_deterministic_and_disjoint);
    T_RUN(rng_is_reproducible);
    T_RUN(examples_read_csv_and_jsonl);
    return t_done();
}
