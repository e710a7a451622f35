/*
 * test_sampler.c - the sampling chain, raw log-probabilities and stop strings.
 *
 * A "spy" stage inserted into the chain records the candidates a filter
 * left, so the tests check exact token sets rather than only frequencies.
 */
#include "engine/sampler.h"

#include <stdint.h>

#include "test.h"

/*
 * Allocation counting, to show that sampling never allocates: while
 * t_counting is set, every malloc/calloc/realloc of the process (libsluice is
 * linked statically) is counted. Not under AddressSanitizer, which owns malloc.
 */
#ifndef __has_feature
#define __has_feature(x) 0
#endif
#if defined(__SANITIZE_ADDRESS__) || __has_feature(address_sanitizer)
#define T_COUNT_ALLOCS 0
#else
#define T_COUNT_ALLOCS 1
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
static int t_counting, t_allocs;
void *malloc(size_t n)
{
    t_allocs += t_counting;
    return __libc_malloc(n);
}
void *calloc(size_t n, size_t size)
{
    t_allocs += t_counting;
    return __libc_calloc(n, size);
}
void *realloc(void *p, size_t n)
{
    t_allocs += t_counting;
    return __libc_realloc(p, n);
}
#endif

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

/* Our own generator for test logits, independent of the sampler's RNG. */
static uint64_t t_rng = 0x1234567ull;
static double t_uniform(void)
{
    uint64_t z = (t_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

static float *random_logits(int32_t n, double scale)
{
    float *l = malloc((size_t)n * sizeof *l);
    for (int32_t i = 0; i < n; i++) l[i] = (float)((t_uniform() * 2.0 - 1.0) * scale);
    return l;
}

static int32_t argmax(const float *l, int32_t n)
{
    int32_t b = 0;
    for (int32_t i = 1; i < n; i++)
        if (l[i] > l[b]) b = i;
    return b;
}

/* Params with every filter off: plain softmax sampling at temperature 1. */
static struct sl_sampler_params plain_params(void)
{
    struct sl_sampler_params p = sl_sampler_default_params();
    p.temp = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    return p;
}

static struct sl_sampler *make(const struct sl_sampler_params *p, int32_t V)
{
    struct sl_err err = {0};
    struct sl_sampler *s = NULL;
    T_OK(sl_sampler_init(p, V, &s, &err), &err);
    return s;
}

static int32_t sample1(struct sl_sampler *s, const float *logits)
{
    struct sl_err err = {0};
    struct sl_sample out;
    int rc = sl_sampler_sample(s, logits, &out, &err);
    if (rc) {
        T_FAIL_AT("sl_sampler_sample: %s", err.msg);
        return -1;
    }
    return out.token;
}

/* The spy stage: copies the candidates it sees. */
#define SPY_MAX 64
struct spy {
    size_t size;
    int32_t ids[SPY_MAX];
    float logits[SPY_MAX];
    int frees;
    int accepts;
};

static int spy_apply(void *ctx, struct sl_token_array *cur, struct sl_err *err)
{
    struct spy *sp = ctx;
    sp->size = cur->size;
    for (size_t i = 0; i < cur->size && i < SPY_MAX; i++) {
        sp->ids[i] = cur->data[i].id;
        sp->logits[i] = cur->data[i].logit;
    }
    return 0;
}
static void spy_accept(void *ctx, int32_t token)
{
    ((struct spy *)ctx)->accepts++;
}
static void spy_free(void *ctx)
{
    ((struct spy *)ctx)->frees++;
}
static const struct sl_sampler_i spy_i = {
    .name = "spy", .apply = spy_apply, .accept = spy_accept, .free = spy_free};

/* Is id among the spy's candidates? */
static bool spy_has(const struct spy *sp, int32_t id)
{
    for (size_t i = 0; i < sp->size && i < SPY_MAX; i++)
        if (sp->ids[i] == id) return true;
    return false;
}

/* logits = log(p) for a given distribution */
static void log_of(const double *p, float *l, int n)
{
    for (int i = 0; i < n; i++) l[i] = (float)log(p[i]);
}

/* ------------------------------------------------------------------------ */
/* Greedy and top-k                                                         */
/* ------------------------------------------------------------------------ */

static void greedy_picks_the_max_logit(void)
{
    struct sl_sampler_params p = sl_sampler_default_params();
    p.temp = 0.0f;
    struct sl_sampler *s = make(&p, 5000);
    for (int r = 0; r < 20; r++) {
        float *l = random_logits(5000, 10.0);
        T_EQ_INT(sample1(s, l), argmax(l, 5000));
        free(l);
    }
    sl_sampler_free(s);
    /* ties go to the lower id */
    float tie[6] = {0.0f, 3.0f, 1.0f, 3.0f, -2.0f, 3.0f};
    s = make(&p, 6);
    T_EQ_INT(sample1(s, tie), 1);
    sl_sampler_free(s);
}

static void top_k_1_equals_greedy(void)
{
    for (uint64_t seed = 1; seed <= 5; seed++) {
        struct sl_sampler_params p = plain_params();
        p.top_k = 1;
        p.temp = 1.5f;
        p.seed = seed;
        struct sl_sampler *s = make(&p, 3000);
        for (int r = 0; r < 20; r++) {
            float *l = random_logits(3000, 2.0);
            T_EQ_INT(sample1(s, l), argmax(l, 3000));
            free(l);
        }
        sl_sampler_free(s);
        float tie[4] = {1.0f, 5.0f, 5.0f, 5.0f};
        s = make(&p, 4);
        T_EQ_INT(sample1(s, tie), 1);
        sl_sampler_free(s);
    }
}

static void top_k_keeps_the_k_best_tokens(void)
{
    struct sl_sampler_params p = plain_params();
    p.top_k = 3;
    struct sl_sampler *s = make(&p, 8);
    struct spy sp = {0};
    struct sl_err err = {0};
    T_OK(sl_sampler_insert(s, SL_SAMPLER_POS_LAST, (struct sl_sampler_stage){&spy_i, &sp}, &err),
         &err);
    float l[8] = {0.1f, 2.0f, -1.0f, 3.0f, 2.0f, 0.0f, -5.0f, 1.5f};
    sample1(s, l);
    T_EQ_INT(sp.size, 3);
    /* best first: 3 (3.0), then 1 and 4 tie at 2.0: lower id first */
    T_EQ_INT(sp.ids[0], 3);
    T_EQ_INT(sp.ids[1], 1);
    T_EQ_INT(sp.ids[2], 4);
    sl_sampler_free(s);
    T_EQ_INT(sp.frees, 1);
}

/* ------------------------------------------------------------------------ */
/* Seeds and the distribution                                               */
/* ------------------------------------------------------------------------ */

static void same_seed_gives_same_tokens_and_different_seeds_differ(void)
{
    enum { V = 1000, N = 300 };
    float *l = random_logits(V, 3.0);
    int32_t a[N], b[N], c[N];
    struct sl_sampler_params p = sl_sampler_default_params();
    p.temp = 1.0f;
    p.top_k = 0;
    p.repeat_penalty = 1.1f;
    p.seed = 7;
    struct sl_sampler *s1 = make(&p, V), *s2 = make(&p, V);
    p.seed = 8;
    struct sl_sampler *s3 = make(&p, V);
    int differ = 0;
    for (int i = 0; i < N; i++) {
        a[i] = sample1(s1, l);
        b[i] = sample1(s2, l);
        c[i] = sample1(s3, l);
        sl_sampler_accept(s1, a[i]);
        sl_sampler_accept(s2, b[i]);
        sl_sampler_accept(s3, c[i]);
        if (a[i] != b[i]) T_FAIL_AT("step %d: seed 7 gave %d and %d", i, (int)a[i], (int)b[i]);
        differ += a[i] != c[i];
    }
    T_TRUE(differ > N / 4);

    /* reset replays the same tokens */
    sl_sampler_reset(s1);
    for (int i = 0; i < N; i++) {
        int32_t t = sample1(s1, l);
        if (t != a[i]) {
            T_FAIL_AT("after reset, step %d gave %d, first run %d", i, (int)t, (int)a[i]);
            break;
        }
        sl_sampler_accept(s1, t);
    }
    sl_sampler_free(s1);
    sl_sampler_free(s2);
    sl_sampler_free(s3);
    free(l);
}

/* Known values pin the RNG and the draw: a change here changes every seeded output. */
static void seeded_tokens_are_pinned_across_machines(void)
{
    float l[4] = {1.0f, 2.0f, 0.5f, -1.0f};
    struct sl_sampler_params p = plain_params();
    p.seed = 42;
    struct sl_sampler *s = make(&p, 4);
    char got[33] = {0};
    for (int i = 0; i < 32; i++) got[i] = (char)('0' + sample1(s, l));
    fprintf(stderr, "  seed 42 sequence: %s\n", got);
    T_EQ_STR(got, "01123112111111121211001111111111"); /* checked with an independent Python model */
    sl_sampler_free(s);
}

/* Frequencies from 20000 draws lie within 5 sigma of softmax(l / temp). */
static void check_frequencies(float temp)
{
    enum { N = 20000 };
    float l[4] = {1.0f, 2.0f, 0.5f, -1.0f};
    double e[4], z = 0;
    for (int i = 0; i < 4; i++) z += (e[i] = exp(l[i] / temp));
    struct sl_sampler_params p = plain_params();
    p.temp = temp;
    p.seed = 1234;
    struct sl_sampler *s = make(&p, 4);
    int count[4] = {0};
    for (int i = 0; i < N; i++) {
        int32_t t = sample1(s, l);
        if (t >= 0 && t < 4) count[t]++;
    }
    for (int i = 0; i < 4; i++) {
        double pi = e[i] / z, mean = N * pi, sigma = sqrt(N * pi * (1 - pi));
        t_checks++;
        if (fabs(count[i] - mean) > 5 * sigma)
            T_FAIL_AT("temp %g token %d: %d draws, expected %.1f +- %.1f", (double)temp, i,
                      count[i], mean, sigma);
    }
    sl_sampler_free(s);
}

static void frequencies_follow_softmax_at_temperature(void)
{
    check_frequencies(1.0f);
    check_frequencies(0.5f);
    check_frequencies(2.0f);
}

/* ------------------------------------------------------------------------ */
/* top-p and min-p                                                          */
/* ------------------------------------------------------------------------ */

static void top_p_keeps_the_smallest_prefix_reaching_p(void)
{
    static const double probs[5] = {0.05, 0.5, 0.15, 0.3, 0.0 + 1e-9};
    float l[5];
    log_of(probs, l, 5);
    struct {
        float top_p;
        size_t n;
        int32_t ids[4];
    } cases[] = {
        {0.45f, 1, {1}},        /* 0.5 already reaches it */
        {0.75f, 2, {1, 3}},     /* 0.5 + 0.3 */
        {0.9f, 3, {1, 3, 2}},   /* + 0.15 */
        {0.99f, 4, {1, 3, 2, 0}},
        {0.0f, 1, {1}}, /* always at least one */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct sl_sampler_params p = plain_params();
        p.top_p = cases[c].top_p;
        struct sl_sampler *s = make(&p, 5);
        struct spy sp = {0};
        struct sl_err err = {0};
        T_OK(sl_sampler_insert(s, SL_SAMPLER_POS_LAST, (struct sl_sampler_stage){&spy_i, &sp},
                               &err),
             &err);
        for (int r = 0; r < 200; r++) {
            int32_t t = sample1(s, l);
            t_checks++;
            if (!spy_has(&sp, t)) T_FAIL_AT("top_p %g drew excluded token %d", (double)p.top_p, t);
        }
        T_EQ_INT(sp.size, cases[c].n);
        for (size_t i = 0; i < cases[c].n; i++) T_EQ_INT(sp.ids[i], cases[c].ids[i]);
        sl_sampler_free(s);
    }
}

/* Many equal logits: the prefix grows past the first partial sort; ties by id. */
static void top_p_over_a_flat_vocabulary_keeps_the_lowest_ids(void)
{
    enum { V = 5000 };
    float *l = calloc(V, sizeof *l);
    struct sl_sampler_params p = plain_params();
    p.top_p = 0.5f;
    struct sl_sampler *s = make(&p, V);
    int max_seen = 0;
    for (int r = 0; r < 3000; r++) {
        int32_t t = sample1(s, l);
        if (t > max_seen) max_seen = t;
    }
    T_TRUE(max_seen < V / 2);
    T_TRUE(max_seen > V / 2 - 100); /* and the whole half is in play */
    sl_sampler_free(s);
    free(l);
}

static void min_p_removes_tokens_below_a_fraction_of_the_best(void)
{
    static const double probs[4] = {0.15, 0.5, 0.05, 0.3};
    float l[4];
    log_of(probs, l, 4);
    struct sl_sampler_params p = plain_params();
    p.min_p = 0.2f; /* keeps p >= 0.1 */
    struct sl_sampler *s = make(&p, 4);
    struct spy sp = {0};
    struct sl_err err = {0};
    T_OK(sl_sampler_insert(s, SL_SAMPLER_POS_LAST, (struct sl_sampler_stage){&spy_i, &sp}, &err),
         &err);
    int count[4] = {0};
    for (int r = 0; r < 5000; r++) count[sample1(s, l)]++;
    T_EQ_INT(sp.size, 3);
    T_TRUE(spy_has(&sp, 0) && spy_has(&sp, 1) && spy_has(&sp, 3));
    T_TRUE(!spy_has(&sp, 2));
    T_EQ_INT(count[2], 0);
    T_TRUE(count[0] > 0 && count[1] > 0 && count[3] > 0);
    sl_sampler_free(s);
}

static void default_chain_runs_filters_in_llama_cpp_order(void)
{
    char buf[256];
    struct sl_sampler_params p = sl_sampler_default_params();
    p.repeat_penalty = 1.1f;
    struct sl_sampler *s = make(&p, 10);
    T_EQ_STR(sl_sampler_describe(s, buf, sizeof buf),
             "penalties -> top_k -> top_p -> min_p -> temp -> dist");
    struct spy sp = {0};
    struct sl_err err = {0};
    T_OK(sl_sampler_insert(s, SL_SAMPLER_POS_AFTER_PENALTIES,
                           (struct sl_sampler_stage){&spy_i, &sp}, &err),
         &err);
    T_EQ_STR(sl_sampler_describe(s, buf, sizeof buf),
             "penalties -> spy -> top_k -> top_p -> min_p -> temp -> dist");
    T_EQ_INT(sl_sampler_n_stages(s), 6);
    T_OK(sl_sampler_accept(s, 3), &err);
    T_EQ_INT(sp.accepts, 1);
    T_EQ_INT(sl_sampler_accept(s, 10), SL_ERANGE);
    sl_sampler_free(s);
    T_EQ_INT(sp.frees, 1);

    p.temp = 0.0f;
    p.repeat_penalty = 1.0f;
    s = make(&p, 10);
    T_EQ_STR(sl_sampler_describe(s, buf, sizeof buf), "greedy");
    sl_sampler_free(s);
}

static void a_full_chain_refuses_another_stage(void)
{
    struct sl_sampler_params p = sl_sampler_default_params();
    struct sl_sampler *s = make(&p, 10);
    struct spy sp = {0};
    struct sl_err err = {0};
    while (sl_sampler_n_stages(s) < SL_SAMPLER_MAX_STAGES)
        T_OK(sl_sampler_insert(s, 0, (struct sl_sampler_stage){&spy_i, &sp}, &err), &err);
    T_EQ_INT(sl_sampler_insert(s, 0, (struct sl_sampler_stage){&spy_i, &sp}, &err), SL_ERANGE);
    T_TRUE(strstr(err.msg, "spy") != NULL);
    T_EQ_INT(sl_sampler_insert(s, 99, (struct sl_sampler_stage){NULL, NULL}, &err), SL_EINVAL);
    sl_sampler_free(s);
}

/* ------------------------------------------------------------------------ */
/* Penalties                                                                */
/* ------------------------------------------------------------------------ */

static void repetition_penalty_divides_positive_and_multiplies_negative_logits(void)
{
    float l[5] = {2.0f, -1.0f, 0.5f, 3.0f, 0.0f};
    struct sl_sampler_params p = plain_params();
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = 8;
    struct sl_sampler *s = make(&p, 5);
    struct spy sp = {0};
    struct sl_err err = {0};
    T_OK(sl_sampler_insert(s, SL_SAMPLER_POS_AFTER_PENALTIES,
                           (struct sl_sampler_stage){&spy_i, &sp}, &err),
         &err);
    sl_sampler_accept(s, 0);
    sl_sampler_accept(s, 1);
    sl_sampler_accept(s, 0);
    sl_sampler_accept(s, 4);
    sample1(s, l);
    T_EQ_INT(sp.size, 5);
    T_NEAR(sp.logits[0], 1.0, 1e-6);  /* 2 / 2 */
    T_NEAR(sp.logits[1], -2.0, 1e-6); /* -1 * 2 */
    T_NEAR(sp.logits[2], 0.5, 1e-6);  /* not in the window */
    T_NEAR(sp.logits[3], 3.0, 1e-6);
    T_NEAR(sp.logits[4], 0.0, 1e-6); /* 0 * 2 */
    sl_sampler_free(s);

    /* presence and frequency: logit -= count * freq + (count > 0) * presence */
    p.repeat_penalty = 2.0f;
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    s = make(&p, 5);
    T_OK(sl_sampler_insert(s, SL_SAMPLER_POS_AFTER_PENALTIES,
                           (struct sl_sampler_stage){&spy_i, &sp}, &err),
         &err);
    sl_sampler_accept(s, 0);
    sl_sampler_accept(s, 1);
    sl_sampler_accept(s, 0);
    sample1(s, l);
    T_NEAR(sp.logits[0], 2.0 / 2 - 2 * 0.5 - 0.25, 1e-6);
    T_NEAR(sp.logits[1], -1.0 * 2 - 1 * 0.5 - 0.25, 1e-6);
    T_NEAR(sp.logits[2], 0.5, 1e-6);
    sl_sampler_free(s);
}

static void repetition_penalty_only_sees_the_last_n_tokens(void)
{
    float l[3] = {2.0f, 2.0f, 1.0f};
    struct sl_sampler_params p = plain_params();
    p.repeat_penalty = 4.0f;
    p.repeat_last_n = 2;
    struct sl_sampler *s = make(&p, 3);
    struct spy sp = {0};
    struct sl_err err = {0};
    T_OK(sl_sampler_insert(s, SL_SAMPLER_POS_AFTER_PENALTIES,
                           (struct sl_sampler_stage){&spy_i, &sp}, &err),
         &err);
    sl_sampler_accept(s, 0);
    sl_sampler_accept(s, 1);
    sl_sampler_accept(s, 2); /* window is now {1, 2} */
    sample1(s, l);
    T_NEAR(sp.logits[0], 2.0, 1e-6);
    T_NEAR(sp.logits[1], 0.5, 1e-6);
    T_NEAR(sp.logits[2], 0.25, 1e-6);
    /* reset empties the window */
    sl_sampler_reset(s);
    sample1(s, l);
    T_NEAR(sp.logits[1], 2.0, 1e-6);
    sl_sampler_free(s);
}

static void greedy_applies_the_repetition_penalty(void)
{
    float l[2] = {3.0f, 2.9f};
    struct sl_sampler_params p = sl_sampler_default_params();
    p.temp = 0.0f;
    p.repeat_penalty = 1.5f;
    struct sl_sampler *s = make(&p, 2);
    T_EQ_INT(sample1(s, l), 0);
    sl_sampler_accept(s, 0);
    T_EQ_INT(sample1(s, l), 1); /* 3 / 1.5 = 2 < 2.9 */
    sl_sampler_free(s);
}

/* ------------------------------------------------------------------------ */
/* Raw log-probabilities                                                    */
/* ------------------------------------------------------------------------ */

static void logprobs_are_raw_log_softmax_and_sum_to_one(void)
{
    enum { V = 2000 };
    float *l = random_logits(V, 8.0);
    double mx = l[argmax(l, V)], z = 0;
    for (int i = 0; i < V; i++) z += exp(l[i] - mx);
    double log_z = mx + log(z);

    double total = 0;
    for (int i = 0; i < V; i++) total += exp((double)sl_logprob_raw(l, V, i));
    T_NEAR(total, 1.0, 1e-4);

    /* chosen token and alternatives report raw logprobs whatever the settings */
    struct sl_sampler_params p = sl_sampler_default_params();
    p.temp = 0.3f;
    p.repeat_penalty = 1.3f;
    p.n_probs = 20;
    struct sl_sampler *s = make(&p, V);
    sl_sampler_accept(s, argmax(l, V));
    struct sl_err err = {0};
    struct sl_sample out;
    for (int r = 0; r < 10; r++) {
        T_OK(sl_sampler_sample(s, l, &out, &err), &err);
        T_NEAR(out.logprob, l[out.token] - log_z, 1e-4);
        T_TRUE(out.logprob <= 0.0f);
        T_EQ_INT(out.n_probs, 20);
        T_EQ_INT(out.top[0].token, argmax(l, V));
        for (int i = 0; i < out.n_probs; i++) {
            T_NEAR(out.top[i].logprob, l[out.top[i].token] - log_z, 1e-4);
            if (i > 0) T_TRUE(out.top[i].logprob <= out.top[i - 1].logprob);
        }
        sl_sampler_accept(s, out.token);
    }
    /* the 20th best is at least as good as everything not listed */
    float worst = l[out.top[19].token];
    int better_unlisted = 0;
    for (int i = 0; i < V; i++) {
        bool listed = false;
        for (int j = 0; j < 20; j++) listed |= out.top[j].token == i;
        if (!listed && l[i] > worst) better_unlisted++;
    }
    T_EQ_INT(better_unlisted, 0);
    sl_sampler_free(s);
    free(l);
}

static void n_probs_is_capped_by_the_vocabulary(void)
{
    float l[3] = {0.0f, 1.0f, 1.0f};
    struct sl_sampler_params p = plain_params();
    p.n_probs = 20;
    struct sl_sampler *s = make(&p, 3);
    struct sl_err err = {0};
    struct sl_sample out;
    T_OK(sl_sampler_sample(s, l, &out, &err), &err);
    T_EQ_INT(out.n_probs, 3);
    T_EQ_INT(out.top[0].token, 1); /* tie: lower id first */
    T_EQ_INT(out.top[1].token, 2);
    T_EQ_INT(out.top[2].token, 0);
    double sum = 0;
    for (int i = 0; i < 3; i++) sum += exp(out.top[i].logprob);
    T_NEAR(sum, 1.0, 1e-6);
    sl_sampler_free(s);
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

static void expect_bad(struct sl_sampler_params p, int32_t V, const char *field)
{
    struct sl_err err = {0};
    struct sl_sampler *s = (struct sl_sampler *)&err; /* must become NULL */
    T_EQ_INT(sl_sampler_init(&p, V, &s, &err), SL_EINVAL);
    T_TRUE(s == NULL);
    t_checks++;
    if (!strstr(err.msg, field)) T_FAIL_AT("message \"%s\" does not name %s", err.msg, field);
}

static void bad_params_are_rejected_with_the_field_named(void)
{
    struct sl_sampler_params d = sl_sampler_default_params(), p;
    expect_bad(d, 0, "n_vocab");
    p = d, p.top_p = 1.5f, expect_bad(p, 10, "top_p");
    p = d, p.min_p = -0.1f, expect_bad(p, 10, "min_p");
    p = d, p.temp = NAN, expect_bad(p, 10, "temp");
    p = d, p.repeat_penalty = 0.0f, expect_bad(p, 10, "repeat_penalty");
    p = d, p.repeat_last_n = -1, expect_bad(p, 10, "repeat_last_n");
    p = d, p.n_probs = SL_SAMPLER_MAX_PROBS + 1, expect_bad(p, 10, "n_probs");
}

static void nan_logits_are_an_error_naming_the_token(void)
{
    float l[4] = {0.0f, 1.0f, NAN, 2.0f};
    struct sl_sampler_params p = sl_sampler_default_params();
    struct sl_sampler *s = make(&p, 4);
    struct sl_err err = {0};
    struct sl_sample out;
    T_EQ_INT(sl_sampler_sample(s, l, &out, &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "token 2") != NULL);
    sl_sampler_free(s);
}

/* A stage that masks everything, like a grammar with no legal token. */
static int mask_all_apply(void *ctx, struct sl_token_array *cur, struct sl_err *err)
{
    for (size_t i = 0; i < cur->size; i++) cur->data[i].logit = -INFINITY;
    cur->sorted = 0;
    return 0;
}
static const struct sl_sampler_i mask_all_i = {.name = "mask_all", .apply = mask_all_apply};

static void a_stage_that_masks_every_token_is_an_error(void)
{
    float l[4] = {0.0f, 1.0f, 2.0f, 3.0f};
    for (int greedy = 0; greedy < 2; greedy++) {
        struct sl_sampler_params p = plain_params();
        if (greedy) p.temp = 0.0f;
        struct sl_sampler *s = make(&p, 4);
        struct sl_err err = {0};
        T_OK(sl_sampler_insert(s, 0, (struct sl_sampler_stage){&mask_all_i, NULL}, &err), &err);
        struct sl_sample out;
        T_EQ_INT(sl_sampler_sample(s, l, &out, &err), SL_EINVAL);
        T_TRUE(strstr(err.msg, "-inf") != NULL || strstr(err.msg, "probability") != NULL);
        sl_sampler_free(s);
    }
}

/* ------------------------------------------------------------------------ */
/* Stop strings                                                             */
/* ------------------------------------------------------------------------ */

/* Feed pieces as a server would; returns what was released and the final state. */
static enum sl_stop_state stream(const struct sl_stop *st, const char *const *pieces, char *emitted,
                                 char *final_text)
{
    char text[512] = {0};
    size_t len = 0, sent = 0, checked = 0, safe = 0;
    enum sl_stop_state state = SL_STOP_NONE;
    emitted[0] = 0;
    for (size_t i = 0; pieces[i]; i++) {
        size_t n = strlen(pieces[i]);
        memcpy(text + len, pieces[i], n);
        len += n;
        state = sl_stop_scan(st, text, len, checked, &safe);
        checked = len;
        t_checks++;
        if (safe < sent) T_FAIL_AT("safe %zu went below released %zu", safe, sent);
        strncat(emitted, text + sent, safe - sent);
        sent = safe;
        if (state == SL_STOP_MATCH) break;
    }
    memcpy(final_text, text, sent);
    final_text[sent] = 0;
    return state;
}

static void stop_strings_match_across_piece_boundaries(void)
{
    static const char *const stops[] = {"</s>", "STOP", "", "\n\nUser:"};
    struct sl_stop st;
    struct sl_err err = {0};
    T_OK(sl_stop_init(&st, stops, 4, &err), &err);
    T_EQ_INT(st.n, 3); /* the empty one is skipped */
    char emitted[512], final_text[512];

    static const char *const a[] = {"Hello", " wor", "ld<", "/", "s>tail", NULL};
    T_EQ_INT(stream(&st, a, emitted, final_text), SL_STOP_MATCH);
    T_EQ_STR(emitted, "Hello world");
    T_EQ_STR(final_text, "Hello world");

    /* a false start is released once it cannot match any more */
    static const char *const b[] = {"a <", "b> ST", "OP", NULL};
    T_EQ_INT(stream(&st, b, emitted, final_text), SL_STOP_MATCH);
    T_EQ_STR(emitted, "a <b> ");

    /* one character at a time, stop string with newlines */
    static const char *const c[] = {"x", "\n", "\n", "U", "s", "e", "r", ":", " more", NULL};
    T_EQ_INT(stream(&st, c, emitted, final_text), SL_STOP_MATCH);
    T_EQ_STR(emitted, "x");

    /* no stop: everything released, trailing partial held */
    static const char *const d[] = {"fine", " text ST", NULL};
    T_EQ_INT(stream(&st, d, emitted, final_text), SL_STOP_PARTIAL);
    T_EQ_STR(emitted, "fine text ");

    /* the earliest of several stops in one piece wins */
    size_t safe = 0;
    T_EQ_INT(sl_stop_scan(&st, "xSTOPy</s>", 10, 0, &safe), SL_STOP_MATCH);
    T_EQ_INT(safe, 1);
    T_EQ_INT(sl_stop_scan(&st, "</s>STOP", 8, 0, &safe), SL_STOP_MATCH);
    T_EQ_INT(safe, 0);
    T_EQ_INT(sl_stop_scan(&st, "plain", 5, 0, &safe), SL_STOP_NONE);
    T_EQ_INT(safe, 5);
    sl_stop_free(&st);
}

static void stop_init_rejects_too_many_or_too_long_strings(void)
{
    struct sl_stop st;
    struct sl_err err = {0};
    const char *many[SL_STOP_MAX_STRINGS + 1];
    for (int i = 0; i <= SL_STOP_MAX_STRINGS; i++) many[i] = "x";
    T_EQ_INT(sl_stop_init(&st, many, SL_STOP_MAX_STRINGS + 1, &err), SL_EINVAL);
    T_OK(sl_stop_init(&st, many, SL_STOP_MAX_STRINGS, &err), &err);
    sl_stop_free(&st);

    char longs[SL_STOP_MAX_LEN + 2];
    memset(longs, 'a', sizeof longs - 1);
    longs[sizeof longs - 1] = 0;
    const char *one[] = {longs};
    T_EQ_INT(sl_stop_init(&st, one, 1, &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "bytes") != NULL);

    /* no stop strings: nothing ever matches */
    T_OK(sl_stop_init(&st, NULL, 0, &err), &err);
    size_t safe = 0;
    T_EQ_INT(sl_stop_scan(&st, "abc", 3, 0, &safe), SL_STOP_NONE);
    T_EQ_INT(safe, 3);
    sl_stop_free(&st);
}

static void sampling_and_accepting_do_not_allocate(void)
{
#if T_COUNT_ALLOCS
    enum { V = 4000 };
    float *l = random_logits(V, 4.0);
    struct sl_sampler_params p = sl_sampler_default_params();
    p.repeat_penalty = 1.2f;
    p.frequency_penalty = 0.1f;
    p.n_probs = 5;
    p.top_k = 0; /* top-p then sorts as far as it needs */
    struct sl_sampler *s = make(&p, V);
    struct sl_sample out;
    struct sl_err err = {0};
    struct sl_stop st;
    static const char *const stops[] = {"</s>"};
    T_OK(sl_stop_init(&st, stops, 1, &err), &err);
    size_t safe;
    int rc = 0;
    t_allocs = 0;
    t_counting = 1;
    for (int i = 0; i < 50; i++) {
        rc |= sl_sampler_sample(s, l, &out, &err);
        rc |= sl_sampler_accept(s, out.token);
        sl_stop_scan(&st, "abc</", 5, 0, &safe);
    }
    sl_sampler_reset(s);
    t_counting = 0;
    T_EQ_INT(rc, 0);
    T_EQ_INT(t_allocs, 0);
    sl_stop_free(&st);
    sl_sampler_free(s);
    free(l);
#else
    t_skip("allocation counting is off under AddressSanitizer");
#endif
}

int main(void)
{
    T_RUN(greedy_picks_the_max_logit);
    T_RUN(top_k_1_equals_greedy);
    T_RUN(top_k_keeps_the_k_best_tokens);
    T_RUN(same_seed_gives_same_tokens_and_different_seeds_differ);
    T_RUN(seeded_tokens_are_pinned_across_machines);
    T_RUN(frequencies_follow_softmax_at_temperature);
    T_RUN(top_p_keeps_the_smallest_prefix_reaching_p);
    T_RUN(top_p_over_a_flat_vocabulary_keeps_the_lowest_ids);
    T_RUN(min_p_removes_tokens_below_a_fraction_of_the_best);
    T_RUN(default_chain_runs_filters_in_llama_cpp_order);
    T_RUN(a_full_chain_refuses_another_stage);
    T_RUN(repetition_penalty_divides_positive_and_multiplies_negative_logits);
    T_RUN(repetition_penalty_only_sees_the_last_n_tokens);
    T_RUN(greedy_applies_the_repetition_penalty);
    T_RUN(logprobs_are_raw_log_softmax_and_sum_to_one);
    T_RUN(n_probs_is_capped_by_the_vocabulary);
    T_RUN(bad_params_are_rejected_with_the_field_named);
    T_RUN(nan_logits_are_an_error_naming_the_token);
    T_RUN(a_stage_that_masks_every_token_is_an_error);
    T_RUN(stop_strings_match_across_piece_boundaries);
    T_RUN(stop_init_rejects_too_many_or_too_long_strings);
    T_RUN(sampling_and_accepting_do_not_allocate);
    return t_done();
}
