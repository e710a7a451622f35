/*
 * sampler.c - token sampling chain, raw log-probabilities and stop-string
 * matching (engine layer).
 *
 * The chain mirrors llama.cpp's default sampler chain (penalties, top_k,
 * top_p, min_p, temperature, dist) and its rules: the repetition penalty
 * divides positive logits and multiplies the others; top-p keeps the
 * smallest prefix whose mass reaches p; min-p keeps logits within log(min_p)
 * of the best. Sorting is partial (a heap selection of the best m) and
 * in place, so sampling never allocates and costs O(V log m) for the m
 * candidates a filter needs. Exponentials are float expf (the cost of a
 * sample is a few passes of V expf), sums are accumulated in double.
 *
 * Libc and libm only.
 */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* RNG: xoshiro256** seeded through splitmix64                               */
/* ------------------------------------------------------------------------ */

struct rng {
    uint64_t s[4];
};

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(struct rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(struct rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

/* ------------------------------------------------------------------------ */
/* Candidate ordering                                                        */
/* ------------------------------------------------------------------------ */

/* a ranks before b: higher logit, then lower id. A total order (ids differ). */
static bool better(const struct sl_token_data *a, const struct sl_token_data *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static void swap_td(struct sl_token_data *a, struct sl_token_data *b)
{
    struct sl_token_data t = *a;
    *a = *b;
    *b = t;
}

/* Min-heap by `better` (the worst candidate at the root) over h[0..n). */
static void heap_sift_down(struct sl_token_data *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && better(&h[w], &h[l])) w = l;
        if (r < n && better(&h[w], &h[r])) w = r;
        if (w == i) return;
        swap_td(&h[i], &h[w]);
        i = w;
    }
}

/*
 * Move the k best of a[0..n) to a[0..k), in order. Heap selection: a min-heap
 * of the k best seen so far, then heap sort of it. O(n log k), in place.
 */
static void select_sorted(struct sl_token_data *a, size_t n, size_t k)
{
    if (k == 0) return;
    if (k > n) k = n;
    for (size_t i = k / 2; i-- > 0;) heap_sift_down(a, k, i);
    for (size_t j = k; j < n; j++) {
        if (better(&a[j], &a[0])) {
            swap_td(&a[j], &a[0]);
            heap_sift_down(a, k, 0);
        }
    }
    /* repeatedly move the worst to the end: a[0..k) ends best-first */
    for (size_t m = k; m > 1; m--) {
        swap_td(&a[0], &a[m - 1]);
        heap_sift_down(a, m - 1, 0);
    }
}

void sl_token_array_sort_prefix(struct sl_token_array *cur, size_t m)
{
    if (m > cur->size) m = cur->size;
    if (m <= cur->sorted) return;
    select_sorted(cur->data + cur->sorted, cur->size - cur->sorted, m - cur->sorted);
    cur->sorted = m;
}

static float max_logit(const struct sl_token_array *cur)
{
    if (cur->sorted > 0) return cur->data[0].logit;
    float mx = -INFINITY;
    for (size_t i = 0; i < cur->size; i++)
        if (cur->data[i].logit > mx) mx = cur->data[i].logit;
    return mx;
}

/* Index of the best candidate (lowest id among equal logits). size > 0. */
static size_t argmax_index(const struct sl_token_array *cur)
{
    if (cur->sorted > 0) return 0;
    size_t best = 0;
    for (size_t i = 1; i < cur->size; i++)
        if (better(&cur->data[i], &cur->data[best])) best = i;
    return best;
}

/* ------------------------------------------------------------------------ */
/* The sampler                                                               */
/* ------------------------------------------------------------------------ */

enum draw_kind { DRAW_DIST, DRAW_GREEDY };

struct sl_sampler {
    struct sl_sampler_params params;
    int32_t n_vocab;
    struct sl_token_data *cand; /* (V) working candidates */

    struct sl_sampler_stage stages[SL_SAMPLER_MAX_STAGES];
    bool builtin_tail[SL_SAMPLER_MAX_STAGES]; /* top_k/top_p/min_p/temp: inserts go before */
    size_t n_stages;
    enum draw_kind draw;

    /* penalty window: ring of the last repeat_last_n accepted tokens */
    int32_t *ring;   /* (repeat_last_n) */
    size_t ring_len; /* tokens in the ring */
    size_t ring_pos; /* next slot to write */
    int32_t *counts; /* (V) zero between calls; occurrences while penalties apply */

    struct rng rng;
};

struct sl_sampler_params sl_sampler_default_params(void)
{
    struct sl_sampler_params p = {
        .temp = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .presence_penalty = 0.0f,
        .frequency_penalty = 0.0f,
        .repeat_last_n = 64,
        .seed = SL_SAMPLER_DEFAULT_SEED,
        .n_probs = 0,
    };
    return p;
}

/* --- penalties ----------------------------------------------------------- */

static int penalties_apply(void *ctx, struct sl_token_array *cur, struct sl_err *err)
{
    struct sl_sampler *s = ctx;
    const struct sl_sampler_params *p = &s->params;
    (void)err;
    if (s->ring_len == 0) return 0;
    for (size_t i = 0; i < s->ring_len; i++) s->counts[s->ring[i]]++;

    /* fast path: the array is still in id order (we normally run first) */
    bool by_id = cur->size == (size_t)s->n_vocab;
    for (size_t i = 0; i < s->ring_len && by_id; i++)
        by_id = cur->data[s->ring[i]].id == s->ring[i];

    for (size_t k = 0; k < (by_id ? s->ring_len : cur->size); k++) {
        struct sl_token_data *td = by_id ? &cur->data[s->ring[k]] : &cur->data[k];
        int32_t c = s->counts[td->id];
        if (c <= 0) continue;
        if (by_id) s->counts[td->id] = -c; /* mark done: a token appears once */
        if (td->logit <= 0)
            td->logit *= p->repeat_penalty;
        else
            td->logit /= p->repeat_penalty;
        td->logit -= (float)c * p->frequency_penalty + p->presence_penalty;
    }
    for (size_t i = 0; i < s->ring_len; i++) s->counts[s->ring[i]] = 0;
    cur->sorted = 0;
    return 0;
}

static const struct sl_sampler_i penalties_i = {
    .name = "penalties",
    .apply = penalties_apply,
};

/* --- top-k --------------------------------------------------------------- */

static int top_k_apply(void *ctx, struct sl_token_array *cur, struct sl_err *err)
{
    const struct sl_sampler *s = ctx;
    (void)err;
    size_t k = (size_t)s->params.top_k;
    if (k == 0 || k >= cur->size) return 0;
    sl_token_array_sort_prefix(cur, k);
    cur->size = k;
    return 0;
}

static const struct sl_sampler_i top_k_i = {.name = "top_k", .apply = top_k_apply};

/* --- top-p --------------------------------------------------------------- */

/*
 * Keep the smallest best-first prefix whose probability mass reaches top_p
 * (at least one token). Sorts only as far as needed, growing by 4x.
 */
static int top_p_apply(void *ctx, struct sl_token_array *cur, struct sl_err *err)
{
    const struct sl_sampler *s = ctx;
    (void)err;
    double p = s->params.top_p;
    if (p >= 1.0 || cur->size <= 1) return 0;

    float mx = max_logit(cur);
    double sum = 0.0;
    for (size_t i = 0; i < cur->size; i++) sum += expf(cur->data[i].logit - mx);

    double target = p * sum, cum = 0.0;
    size_t i = 0, m = cur->sorted > 64 ? cur->sorted : 64;
    for (;;) {
        sl_token_array_sort_prefix(cur, m);
        for (; i < cur->sorted; i++) {
            cum += expf(cur->data[i].logit - mx);
            if (cum >= target) {
                cur->size = i + 1;
                if (cur->sorted > cur->size) cur->sorted = cur->size;
                return 0;
            }
        }
        if (cur->sorted == cur->size) return 0; /* rounding: keep all */
        m = cur->sorted > cur->size / 4 ? cur->size : cur->sorted * 4;
    }
}

static const struct sl_sampler_i top_p_i = {.name = "top_p", .apply = top_p_apply};

/* --- min-p --------------------------------------------------------------- */

/* Keep tokens with p >= min_p * p_max, i.e. logit >= max + log(min_p). */
static int min_p_apply(void *ctx, struct sl_token_array *cur, struct sl_err *err)
{
    const struct sl_sampler *s = ctx;
    (void)err;
    if (s->params.min_p <= 0.0f || cur->size <= 1) return 0;
    float threshold = max_logit(cur) + logf(s->params.min_p);
    size_t kept = 0, kept_sorted = 0;
    for (size_t i = 0; i < cur->size; i++) {
        if (cur->data[i].logit >= threshold) {
            if (i < cur->sorted) kept_sorted++;
            cur->data[kept++] = cur->data[i];
        }
    }
    /* compaction keeps order; the kept part of a sorted prefix is a prefix */
    cur->size = kept;
    cur->sorted = kept_sorted;
    return 0;
}

static const struct sl_sampler_i min_p_i = {.name = "min_p", .apply = min_p_apply};

/* --- temperature --------------------------------------------------------- */

static int temp_apply(void *ctx, struct sl_token_array *cur, struct sl_err *err)
{
    const struct sl_sampler *s = ctx;
    (void)err;
    float t = s->params.temp;
    if (t == 1.0f) return 0;
    for (size_t i = 0; i < cur->size; i++) cur->data[i].logit /= t;
    cur->sorted = 0; /* monotone, but rounding may tie two logits and flip their order */
    return 0;
}

static const struct sl_sampler_i temp_i = {.name = "temp", .apply = temp_apply};

/* --- the final draw ------------------------------------------------------ */

/* Sample from softmax(logits) of the candidates; p gets the weights. */
static int draw_dist(struct sl_sampler *s, struct sl_token_array *cur, struct sl_err *err)
{
    float mx = max_logit(cur);
    double sum = 0.0;
    for (size_t i = 0; i < cur->size; i++) {
        float w = expf(cur->data[i].logit - mx);
        cur->data[i].p = w;
        sum += w;
    }
    if (!(sum > 0.0))
        return sl_err_set(err, SL_EINVAL, "sampler: no candidate token has non-zero probability");
    double u = rng_uniform(&s->rng) * sum, acc = 0.0;
    size_t last = 0;
    for (size_t i = 0; i < cur->size; i++) {
        if (cur->data[i].p <= 0.0f) continue;
        last = i;
        acc += cur->data[i].p;
        if (u < acc) {
            cur->selected = cur->data[i].id;
            return 0;
        }
    }
    cur->selected = cur->data[last].id; /* u landed on the rounding slack */
    return 0;
}

/* --- construction -------------------------------------------------------- */

static void add_builtin(struct sl_sampler *s, const struct sl_sampler_i *iface, bool tail)
{
    SL_ASSERT(s->n_stages < SL_SAMPLER_MAX_STAGES);
    s->stages[s->n_stages] = (struct sl_sampler_stage){iface, s};
    s->builtin_tail[s->n_stages] = tail;
    s->n_stages++;
}

static int check_params(const struct sl_sampler_params *p, int32_t n_vocab, struct sl_err *err)
{
    if (n_vocab <= 0)
        return sl_err_set(err, SL_EINVAL, "sampler: n_vocab %d must be positive", (int)n_vocab);
    if (!isfinite(p->temp))
        return sl_err_set(err, SL_EINVAL, "sampler: temp %g is not a finite number", (double)p->temp);
    if (!(p->top_p >= 0.0f && p->top_p <= 1.0f))
        return sl_err_set(err, SL_EINVAL, "sampler: top_p %g outside [0, 1]", (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return sl_err_set(err, SL_EINVAL, "sampler: min_p %g outside [0, 1]", (double)p->min_p);
    if (!(p->repeat_penalty > 0.0f) || !isfinite(p->repeat_penalty))
        return sl_err_set(err, SL_EINVAL, "sampler: repeat_penalty %g must be positive",
                          (double)p->repeat_penalty);
    if (!isfinite(p->presence_penalty) || !isfinite(p->frequency_penalty))
        return sl_err_set(err, SL_EINVAL, "sampler: presence/frequency penalty must be finite");
    if (p->repeat_last_n < 0 || p->repeat_last_n > SL_SAMPLER_MAX_LAST_N)
        return sl_err_set(err, SL_EINVAL, "sampler: repeat_last_n %d outside [0, %d]",
                          (int)p->repeat_last_n, SL_SAMPLER_MAX_LAST_N);
    if (p->n_probs < 0 || p->n_probs > SL_SAMPLER_MAX_PROBS)
        return sl_err_set(err, SL_EINVAL, "sampler: n_probs %d outside [0, %d]", (int)p->n_probs,
                          SL_SAMPLER_MAX_PROBS);
    return 0;
}

int sl_sampler_init(const struct sl_sampler_params *p, int32_t n_vocab, struct sl_sampler **out,
                    struct sl_err *err)
{
    struct sl_sampler *s = NULL;
    int rc;
    if (!out) return sl_err_set(err, SL_EINVAL, "%s: out is NULL", __func__);
    *out = NULL;
    if (!p) return sl_err_set(err, SL_EINVAL, "%s: params is NULL", __func__);
    rc = check_params(p, n_vocab, err);
    if (rc) return rc;

    s = calloc(1, sizeof *s);
    if (!s) goto nomem; /* allocation failure */
    s->params = *p;
    s->n_vocab = n_vocab;
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    if (!s->cand) goto nomem; /* allocation failure */

    bool penalize = p->repeat_last_n > 0 &&
                    (p->repeat_penalty != 1.0f || p->presence_penalty != 0.0f ||
                     p->frequency_penalty != 0.0f);
    if (penalize) {
        s->ring = malloc((size_t)p->repeat_last_n * sizeof *s->ring);
        s->counts = calloc((size_t)n_vocab, sizeof *s->counts);
        if (!s->ring || !s->counts) goto nomem; /* allocation failure */
        add_builtin(s, &penalties_i, false);
    }
    if (p->temp > 0.0f) {
        if (p->top_k > 0) add_builtin(s, &top_k_i, true);
        if (p->top_p < 1.0f) add_builtin(s, &top_p_i, true);
        if (p->min_p > 0.0f) add_builtin(s, &min_p_i, true);
        add_builtin(s, &temp_i, true);
        s->draw = DRAW_DIST;
    } else {
        s->draw = DRAW_GREEDY;
    }
    rng_seed(&s->rng, p->seed);
    *out = s;
    return 0;

nomem:
    sl_sampler_free(s);
    return sl_err_set(err, SL_ENOMEM, "sampler: out of memory for a vocabulary of %d tokens",
                      (int)n_vocab);
}

void sl_sampler_free(struct sl_sampler *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n_stages; i++)
        if (s->stages[i].iface->free) s->stages[i].iface->free(s->stages[i].ctx);
    free(s->cand);
    free(s->ring);
    free(s->counts);
    free(s);
}

int sl_sampler_insert(struct sl_sampler *s, size_t pos, struct sl_sampler_stage stage,
                      struct sl_err *err)
{
    if (!stage.iface || !stage.iface->apply || !stage.iface->name)
        return sl_err_set(err, SL_EINVAL, "%s: stage needs iface with name and apply", __func__);
    if (s->n_stages >= SL_SAMPLER_MAX_STAGES)
        return sl_err_set(err, SL_ERANGE, "sampler: chain is full (%d stages); cannot add '%s'",
                          SL_SAMPLER_MAX_STAGES, stage.iface->name);
    if (pos == SL_SAMPLER_POS_LAST) {
        pos = s->n_stages;
    } else if (pos == SL_SAMPLER_POS_AFTER_PENALTIES) {
        pos = 0;
        while (pos < s->n_stages && !s->builtin_tail[pos]) pos++;
    } else if (pos > s->n_stages) {
        return sl_err_set(err, SL_EINVAL, "sampler: position %zu past the end of %zu stages", pos,
                          s->n_stages);
    }
    memmove(&s->stages[pos + 1], &s->stages[pos], (s->n_stages - pos) * sizeof s->stages[0]);
    memmove(&s->builtin_tail[pos + 1], &s->builtin_tail[pos],
            (s->n_stages - pos) * sizeof s->builtin_tail[0]);
    s->stages[pos] = stage;
    s->builtin_tail[pos] = false;
    s->n_stages++;
    return 0;
}

size_t sl_sampler_n_stages(const struct sl_sampler *s)
{
    return s->n_stages;
}

const char *sl_sampler_describe(const struct sl_sampler *s, char *buf, size_t size)
{
    size_t used = 0;
    if (size == 0) return buf;
    buf[0] = 0;
    for (size_t i = 0; i <= s->n_stages; i++) {
        const char *name = i < s->n_stages ? s->stages[i].iface->name
                                           : (s->draw == DRAW_GREEDY ? "greedy" : "dist");
        int w = snprintf(buf + used, size - used, "%s%s", i ? " -> " : "", name);
        if (w < 0 || (size_t)w >= size - used) break;
        used += (size_t)w;
    }
    return buf;
}

/* --- raw log-probabilities ----------------------------------------------- */

/*
 * One pass over the raw logits: reject NaN/+inf, find the max, keep the
 * n best (logit desc, id asc) in top[]. Then log Z = max + log(sum exp(l - max)).
 */
static int raw_logprobs(const float *logits, int32_t V, int32_t n_top, double *log_z,
                        struct sl_token_logprob *top, struct sl_err *err)
{
    float mx = -INFINITY;
    bool bad = false;
    for (int32_t i = 0; i < V; i++) {
        float l = logits[i];
        bad |= !(l < INFINITY); /* NaN or +inf */
        mx = l > mx ? l : mx;
    }
    if (bad) {
        for (int32_t i = 0; i < V; i++)
            if (!(logits[i] < INFINITY))
                return sl_err_set(err, SL_EINVAL, "sampler: logit of token %d is %g", (int)i,
                                  (double)logits[i]);
    }
    if (mx == -INFINITY) return sl_err_set(err, SL_EINVAL, "sampler: every logit is -inf");

    int32_t n = 0;
    for (int32_t i = 0; i < V && n_top > 0; i++) {
        float l = logits[i];
        /* strictly better than the current worst (ids ascend, so ties keep the earlier) */
        if (n == n_top && !(l > top[n - 1].logprob)) continue;
        int32_t j = n < n_top ? n++ : n - 1;
        while (j > 0 && l > top[j - 1].logprob) {
            top[j] = top[j - 1];
            j--;
        }
        top[j].token = i;
        top[j].logprob = l; /* the raw logit for now */
    }
    double sum = 0.0;
    for (int32_t i = 0; i < V; i++) sum += expf(logits[i] - mx);
    *log_z = (double)mx + log(sum);
    for (int32_t j = 0; j < n; j++) top[j].logprob = (float)((double)top[j].logprob - *log_z);
    return 0;
}

float sl_logprob_raw(const float *logits, int32_t n, int32_t token)
{
    double log_z;
    if (n <= 0 || token < 0 || token >= n) return NAN;
    if (raw_logprobs(logits, n, 0, &log_z, NULL, NULL) != 0) return NAN;
    return (float)((double)logits[token] - log_z);
}

/* --- sample / accept / reset --------------------------------------------- */

int sl_sampler_sample(struct sl_sampler *s, const float *logits, struct sl_sample *out,
                      struct sl_err *err)
{
    int32_t V = s->n_vocab;
    int32_t n_top = SL_MIN(s->params.n_probs, V);
    double log_z;
    int rc = raw_logprobs(logits, V, n_top, &log_z, out->top, err);
    if (rc) return rc;
    out->n_probs = n_top;

    struct sl_token_array cur = {s->cand, (size_t)V, 0, -1};
    for (int32_t i = 0; i < V; i++) s->cand[i] = (struct sl_token_data){i, logits[i], 0.0f};

    for (size_t i = 0; i < s->n_stages; i++) {
        rc = s->stages[i].iface->apply(s->stages[i].ctx, &cur, err);
        if (rc) return rc;
        if (cur.size == 0)
            return sl_err_set(err, SL_EINVAL, "sampler: stage '%s' removed every token",
                              s->stages[i].iface->name);
    }
    if (cur.selected < 0) {
        if (s->draw == DRAW_GREEDY) {
            size_t best = argmax_index(&cur);
            if (cur.data[best].logit == -INFINITY)
                return sl_err_set(err, SL_EINVAL, "sampler: every candidate has logit -inf");
            cur.selected = cur.data[best].id;
        } else {
            rc = draw_dist(s, &cur, err);
            if (rc) return rc;
        }
    }
    if (SL_NEVER(cur.selected < 0 || cur.selected >= V))
        return sl_err_set(err, SL_ERANGE, "sampler: a stage chose token %d outside [0, %d)",
                          (int)cur.selected, (int)V);
    out->token = cur.selected;
    out->logprob = (float)((double)logits[cur.selected] - log_z);
    return 0;
}

int sl_sampler_accept(struct sl_sampler *s, int32_t token)
{
    if (token < 0 || token >= s->n_vocab) return SL_ERANGE;
    if (s->ring) {
        size_t cap = (size_t)s->params.repeat_last_n;
        s->ring[s->ring_pos] = token;
        s->ring_pos = (s->ring_pos + 1) % cap;
        if (s->ring_len < cap) s->ring_len++;
    }
    for (size_t i = 0; i < s->n_stages; i++)
        if (s->stages[i].iface->accept) s->stages[i].iface->accept(s->stages[i].ctx, token);
    return 0;
}

void sl_sampler_reset(struct sl_sampler *s)
{
    s->ring_len = 0;
    s->ring_pos = 0;
    rng_seed(&s->rng, s->params.seed);
    for (size_t i = 0; i < s->n_stages; i++)
        if (s->stages[i].iface->reset) s->stages[i].iface->reset(s->stages[i].ctx);
}

/* ------------------------------------------------------------------------ */
/* Stop strings                                                              */
/* ------------------------------------------------------------------------ */

int sl_stop_init(struct sl_stop *m, const char *const *strs, size_t n, struct sl_err *err)
{
    size_t total = 0, k = 0;
    memset(m, 0, sizeof *m);
    if (n > 0 && !strs) return sl_err_set(err, SL_EINVAL, "%s: strs is NULL", __func__);
    for (size_t i = 0; i < n; i++) {
        if (!strs[i]) return sl_err_set(err, SL_EINVAL, "stop: string %zu is NULL", i);
        size_t len = strlen(strs[i]);
        if (len == 0) continue;
        if (len > SL_STOP_MAX_LEN)
            return sl_err_set(err, SL_EINVAL, "stop: string %zu is %zu bytes, more than %d", i,
                              len, SL_STOP_MAX_LEN);
        if (++k > SL_STOP_MAX_STRINGS)
            return sl_err_set(err, SL_EINVAL, "stop: more than %d stop strings",
                              SL_STOP_MAX_STRINGS);
        total += len + 1;
    }
    if (k == 0) return 0;
    m->buf = malloc(total);
    if (!m->buf) return sl_err_set(err, SL_ENOMEM, "stop: out of memory");
    char *w = m->buf;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(strs[i]);
        if (len == 0) continue;
        memcpy(w, strs[i], len + 1);
        m->strs[m->n] = w;
        m->lens[m->n] = len;
        m->n++;
        if (len > m->max_len) m->max_len = len;
        w += len + 1;
    }
    return 0;
}

void sl_stop_free(struct sl_stop *m)
{
    if (!m) return;
    free(m->buf);
    memset(m, 0, sizeof *m);
}

enum sl_stop_state sl_stop_scan(const struct sl_stop *m, const char *text, size_t len,
                                size_t from, size_t *safe)
{
    *safe = len;
    if (m->n == 0 || len == 0) return SL_STOP_NONE;
    if (from > len) from = len;

    /* a full match not seen before ends after `from`: it starts at or after from - (L - 1) */
    size_t start = from >= m->max_len ? from - (m->max_len - 1) : 0;
    size_t best = SIZE_MAX;
    for (size_t k = 0; k < m->n; k++) {
        size_t L = m->lens[k];
        if (L > len) continue;
        for (size_t i = start; i + L <= len && i < best; i++) {
            if (text[i] == m->strs[k][0] && memcmp(text + i, m->strs[k], L) == 0) {
                best = i;
                break;
            }
        }
    }
    if (best != SIZE_MAX) {
        *safe = best;
        return SL_STOP_MATCH;
    }

    /* the earliest suffix text[j..len) that is a proper prefix of a stop string */
    size_t lo = len >= m->max_len ? len - (m->max_len - 1) : 0;
    for (size_t j = lo; j < len; j++) {
        size_t tail = len - j;
        for (size_t k = 0; k < m->n; k++) {
            if (tail < m->lens[k] && memcmp(text + j, m->strs[k], tail) == 0) {
                *safe = j;
                return SL_STOP_PARTIAL;
            }
        }
    }
    return SL_STOP_NONE;
}
