/*
 * sched.c - continuous batching, slots, bounded queue and the prefix cache
 * for one model (server layer). See sched.h for the model of operation.
 *
 * Locking: s->mu guards the queue, every job's output fields and the
 * running count. The engine thread owns the context, the slots and the
 * cache; it takes s->mu only to admit jobs and to publish output.
 */
#include "sched.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../engine/generate.h"
#include "../engine/vocab.h"

/* ------------------------------------------------------------------------ */
/* State                                                                    */
/* ------------------------------------------------------------------------ */

struct centry { /* a finished sequence kept for its prefix */
    int seq;
    int32_t *tokens; /* (n) the tokens whose KV the cells hold, positions 0..n-1 */
    int32_t n;
    uint64_t used; /* LRU tick */
};

struct slot {
    struct sl_job *job; /* NULL: free */
    int seq;
    int32_t n_past;  /* positions of seq in the KV cache */
    int32_t *tokens; /* (n_prompt + n_predict) prompt, then generated */
    int32_t n_tokens;
    int32_t reserve; /* KV cells this job may still claim */
    bool prefill;    /* still feeding the prompt */
    struct sl_sampler *smp;
    void *gstage; /* the grammar stage's ctx (owned by smp), or NULL */
    struct sl_stop stop;
    struct sl_buf text; /* all generated text; j->text gets text[0..sent) */
    size_t sent, checked;
    /* this step */
    int32_t n_fed;     /* entries in the batch */
    int32_t out_first; /* index of its first output */
    int32_t n_out;
};

struct sl_sched {
    const struct sl_model *model;
    struct sl_sched_params p;
    int32_t max_out;     /* logit rows per step (p.max_outputs, resolved) */
    struct sl_ctx *ctx;  /* generation */
    struct sl_ctx *ectx; /* embeddings (no vocabulary head), or NULL */
    struct sl_ctx *tctx; /* task jobs, made on first use, or NULL */
    struct sl_batch batch, ebatch;

    pthread_mutex_t mu;
    pthread_cond_t wake;
    pthread_t thread;
    bool thread_started;
    bool stopping;
    struct sl_job *qhead, *qtail; /* waiting jobs (FIFO) */
    int32_t n_queued;
    int32_t n_active;     /* admitted, not done (slots + embeddings + tasks) */
    struct sl_job *elist; /* embedding and task jobs popped for this step */

    struct slot *slots; /* (n_slots) */
    struct centry cache[SL_KV_MAX_SEQ];
    int n_cache;
    uint64_t seq_used; /* bit per sequence id held by a slot or the cache */
    uint64_t tick;

    struct sl_sched_stats stats;
};

double sl_sched_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

const struct sl_model *sl_sched_model(const struct sl_sched *s)
{
    return s->model;
}
const struct sl_sched_params *sl_sched_params(const struct sl_sched *s)
{
    return &s->p;
}
struct sl_sched_stats *sl_sched_stats(struct sl_sched *s)
{
    return &s->stats;
}

/* ------------------------------------------------------------------------ */
/* Jobs                                                                     */
/* ------------------------------------------------------------------------ */

int sl_job_init(struct sl_job *j, struct sl_err *err)
{
    pthread_condattr_t a;
    j->toks = NULL;
    j->prompt_lp = NULL;
    j->embd = NULL;
    j->n_toks = 0;
    j->n_cached = 0;
    j->done = false;
    j->rc = 0;
    j->err.code = 0;
    j->err.msg[0] = 0;
    j->next = NULL;
    j->queued = false;
    j->finish = SL_FINISH_LENGTH;
    atomic_init(&j->cancel, false);
    sl_buf_init(&j->text, 0);
    if (j->n_predict > 0 && !(j->toks = calloc((size_t)j->n_predict, sizeof *j->toks))) goto fail;
    if (j->prompt_logprobs && j->n_prompt > 0 &&
        !(j->prompt_lp = calloc((size_t)j->n_prompt, sizeof *j->prompt_lp)))
        goto fail; /* allocation failure */
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&j->cond, &a);
    pthread_condattr_destroy(&a);
    if (rc) goto fail; /* no resources */
    return 0;
fail:
    free(j->toks);
    free(j->prompt_lp);
    j->toks = j->prompt_lp = NULL;
    return sl_err_set(err, SL_ENOMEM, "job: out of memory");
}

void sl_job_free(struct sl_job *j)
{
    free(j->toks);
    free(j->prompt_lp);
    free(j->embd);
    sl_buf_free(&j->text);
    pthread_cond_destroy(&j->cond);
    j->toks = j->prompt_lp = NULL;
    j->embd = NULL;
}

/* Mark j done and wake its waiter. Caller holds s->mu. */
static void job_done_locked(struct sl_job *j, enum sl_finish f, int rc, const char *msg)
{
    j->done = true;
    j->finish = f;
    j->rc = rc;
    if (rc && msg) sl_err_set(&j->err, rc, "%s", msg);
    j->t_done_ms = sl_sched_now_ms();
    pthread_cond_broadcast(&j->cond);
}

/* ------------------------------------------------------------------------ */
/* Sequence ids and the prefix cache (engine thread)                        */
/* ------------------------------------------------------------------------ */

static int seq_take(struct sl_sched *s)
{
    for (int i = 0; i < SL_KV_MAX_SEQ; i++)
        if (!(s->seq_used >> i & 1)) {
            s->seq_used |= 1ull << i;
            return i;
        }
    return -1;
}

static void seq_release(struct sl_sched *s, int seq)
{
    sl_kv_seq_rm(&s->ctx->kv, seq, 0, -1);
    s->seq_used &= ~(1ull << seq);
}

static void cache_evict(struct sl_sched *s, int i)
{
    seq_release(s, s->cache[i].seq);
    free(s->cache[i].tokens);
    s->cache[i] = s->cache[--s->n_cache];
    atomic_store(&s->stats.cache_entries, s->n_cache);
}

/* Evict the least recently used entry other than sequence `keep`; false if none. */
static bool cache_evict_lru(struct sl_sched *s, int keep)
{
    int best = -1;
    for (int i = 0; i < s->n_cache; i++)
        if (s->cache[i].seq != keep && (best < 0 || s->cache[i].used < s->cache[best].used))
            best = i;
    if (best < 0) return false;
    cache_evict(s, best);
    return true;
}

static int32_t cache_cells(const struct sl_sched *s)
{
    int32_t n = 0;
    for (int i = 0; i < s->n_cache; i++)
        n += s->cache[i].n;
    return n;
}

/* Keep a finished slot's sequence as a cache entry (takes its tokens). */
static void cache_insert(struct sl_sched *s, struct slot *sl)
{
    int32_t n = sl->n_past;
    /* entries that are a prefix of this one add nothing */
    for (int i = 0; i < s->n_cache;) {
        struct centry *e = &s->cache[i];
        if (e->n <= n && !memcmp(e->tokens, sl->tokens, (size_t)e->n * sizeof *e->tokens))
            cache_evict(s, i);
        else
            i++;
    }
    struct centry *e = &s->cache[s->n_cache++];
    e->seq = sl->seq;
    e->tokens = sl->tokens;
    e->n = n;
    e->used = ++s->tick;
    sl->tokens = NULL;
    while (s->n_cache > 0 && cache_cells(s) > s->p.cache_cells)
        cache_evict_lru(s, -1);
    atomic_store(&s->stats.cache_entries, s->n_cache);
}

static int32_t common_prefix(const int32_t *a, int32_t na, const int32_t *b, int32_t nb)
{
    int32_t n = SL_MIN(na, nb), i = 0;
    while (i < n && a[i] == b[i])
        i++;
    return i;
}

static int32_t reserved(const struct sl_sched *s)
{
    int32_t r = 0;
    for (int i = 0; i < s->p.n_slots; i++)
        if (s->slots[i].job) r += s->slots[i].reserve;
    return r;
}

/* ------------------------------------------------------------------------ */
/* Slots (engine thread)                                                    */
/* ------------------------------------------------------------------------ */

static void slot_clear(struct slot *sl)
{
    sl_sampler_free(sl->smp);
    sl_stop_free(&sl->stop);
    sl_buf_free(&sl->text);
    free(sl->tokens);
    memset(sl, 0, sizeof *sl);
}

/* End the slot's job: keep its KV in the cache (or drop it), publish. */
static void slot_finish(struct sl_sched *s, struct slot *sl, enum sl_finish f, int rc,
                        const char *msg)
{
    struct sl_job *j = sl->job;
    if (rc == 0 && s->p.cache_cells > 0 && sl->n_past > 0 && !j->prompt_logprobs)
        cache_insert(s, sl);
    else
        seq_release(s, sl->seq);
    pthread_mutex_lock(&s->mu);
    job_done_locked(j, f, rc, msg);
    s->n_active--;
    atomic_fetch_sub(&s->stats.running, 1);
    pthread_mutex_unlock(&s->mu);
    slot_clear(sl);
}

/* Drop the cache entry of sequence seq, if it is one. */
static void cache_evict_seq(struct sl_sched *s, int seq)
{
    for (int i = 0; i < s->n_cache; i++)
        if (s->cache[i].seq == seq) {
            cache_evict(s, i);
            return;
        }
}

/* Admit the queue's head into sl if resources allow. Caller holds s->mu.
 * The prompt's longest prefix held by a cache entry or by a running slot
 * (whose cells up to n_past are final) is shared instead of recomputed. */
static bool slot_admit(struct sl_sched *s, struct slot *sl, struct sl_job *j)
{
    struct sl_kv *kv = &s->ctx->kv;
    int32_t need = j->n_prompt + j->n_predict, lcp = 0;
    int best = -1;          /* sequence id to share from */
    bool best_cache = true; /* it is a cache entry (else a running slot) */
    if (s->p.cache_cells > 0 && !j->prompt_logprobs) {
        /* at least the last prompt token is recomputed: its logits are needed */
        for (int i = 0; i < s->n_cache; i++) {
            int32_t l =
                common_prefix(s->cache[i].tokens, s->cache[i].n, j->prompt, j->n_prompt - 1);
            if (l > lcp) lcp = l, best = s->cache[i].seq, best_cache = true;
        }
        for (int i = 0; i < s->p.n_slots; i++) {
            const struct slot *o = &s->slots[i];
            if (!o->job || o->n_past == 0) continue;
            int32_t l = common_prefix(o->tokens, o->n_past, j->prompt, j->n_prompt - 1);
            if (l > lcp) lcp = l, best = o->seq, best_cache = false;
        }
    }
    if (s->seq_used == ~0ull && !cache_evict_lru(s, best_cache ? best : -1)) {
        if (best_cache && best >= 0) cache_evict_seq(s, best);
        best = -1, lcp = 0;
    }
    for (;;) {
        int32_t avail = kv->n_cells - kv->n_used - reserved(s);
        if (avail >= need - lcp) break;
        if (cache_evict_lru(s, best_cache ? best : -1)) continue;
        if (best >= 0) { /* give up sharing to free (or not need) those cells */
            if (best_cache) cache_evict_seq(s, best);
            best = -1, lcp = 0;
            continue;
        }
        return false; /* wait for running jobs to free cells */
    }
    int seq = seq_take(s);
    if (SL_NEVER(seq < 0)) return false;
    memset(sl, 0, sizeof *sl);
    sl->seq = seq;
    sl->job = j;
    sl->prefill = true;
    sl_buf_init(&sl->text, 0);
    struct sl_err err = {0};
    int rc = 0;
    if (!(sl->tokens = malloc((size_t)need * sizeof *sl->tokens)))
        rc = sl_err_set(&err, SL_ENOMEM, "out of memory");
    if (!rc) rc = sl_sampler_init(&j->sampling, s->model->hp.n_vocab, &sl->smp, &err);
    if (!rc) rc = sl_stop_init(&sl->stop, j->stop, j->n_stop, &err);
    if (rc) {
        seq_release(s, seq);
        job_done_locked(j, SL_FINISH_STOP, rc, err.msg);
        slot_clear(sl);
        return true; /* consumed (failed) */
    }
    memcpy(sl->tokens, j->prompt, (size_t)j->n_prompt * sizeof *sl->tokens);
    sl->n_tokens = j->n_prompt;
    for (int32_t i = 0; i < j->n_prompt; i++)
        sl_sampler_accept(sl->smp, j->prompt[i]);
    if (j->grammar) { /* after the prompt: the grammar sees generated tokens only */
        struct sl_sampler_stage st;
        rc = sl_grammar_stage_init(&st, j->grammar, s->model->vocab, &err);
        if (!rc && (rc = sl_sampler_insert(sl->smp, SL_SAMPLER_POS_AFTER_PENALTIES, st, &err)))
            st.iface->free(st.ctx);
        if (rc) {
            seq_release(s, seq);
            job_done_locked(j, SL_FINISH_STOP, rc, err.msg);
            slot_clear(sl);
            return true; /* consumed (failed) */
        }
        sl->gstage = st.ctx;
    }
    if (lcp > 0) {
        for (int i = 0; i < s->n_cache; i++)
            if (s->cache[i].seq == best) s->cache[i].used = ++s->tick;
        sl_kv_seq_cp(kv, best, seq, 0, lcp);
    }
    sl->n_past = lcp;
    sl->reserve = need - lcp;
    j->n_cached = lcp;
    j->t_start_ms = sl_sched_now_ms();
    s->n_active++;
    atomic_fetch_add(&s->stats.running, 1);
    atomic_fetch_add(&s->stats.n_cached_tokens, lcp);
    return true;
}

/* Move queued jobs into free slots. Caller holds s->mu. */
static void admit(struct sl_sched *s)
{
    while (s->qhead) {
        struct sl_job *j = s->qhead;
        bool taken = false;
        if (atomic_load(&j->cancel)) {
            taken = true;
            job_done_locked(j, SL_FINISH_CANCEL, 0, NULL);
        } else if (j->embed || j->run) {
            taken = true;
            s->n_active++;
        } else {
            struct slot *free_slot = NULL;
            for (int i = 0; i < s->p.n_slots && !free_slot; i++)
                if (!s->slots[i].job) free_slot = &s->slots[i];
            if (!free_slot || !slot_admit(s, free_slot, j)) break;
            taken = true;
        }
        if (!taken) break;
        s->qhead = j->next;
        if (!s->qhead) s->qtail = NULL;
        j->queued = false;
        s->n_queued--;
        if ((j->embed || j->run) && !j->done) {
            j->next = s->elist;
            s->elist = j;
        } else {
            j->next = NULL;
        }
    }
    atomic_store(&s->stats.queue_depth, s->n_queued);
}

/* ------------------------------------------------------------------------ */
/* One step (engine thread)                                                 */
/* ------------------------------------------------------------------------ */

/* Raw log-probability of `tok` and the top n alternatives from logits. */
static void score_token(const float *logits, int32_t V, int32_t tok, int32_t n_top,
                        struct sl_tok_out *o)
{
    double mx = -INFINITY, sum = 0;
    for (int32_t i = 0; i < V; i++)
        mx = logits[i] > mx ? logits[i] : mx;
    for (int32_t i = 0; i < V; i++)
        sum += exp((double)logits[i] - mx);
    double lse = mx + log(sum);
    o->token = tok;
    o->logprob = (float)((double)logits[tok] - lse);
    o->n_top = 0;
    for (int32_t i = 0; i < V && n_top > 0; i++) { /* insertion into a small sorted list */
        int32_t k = o->n_top;
        if (k == n_top && logits[i] <= logits[o->top[k - 1].token]) continue;
        if (k < n_top)
            o->n_top++;
        else
            k--;
        while (k > 0 && logits[o->top[k - 1].token] < logits[i]) {
            o->top[k] = o->top[k - 1];
            k--;
        }
        o->top[k].token = i;
    }
    for (int32_t k = 0; k < o->n_top; k++)
        o->top[k].logprob = (float)((double)logits[o->top[k].token] - lse);
}

/* A sampled token: record it, release text, decide whether to stop. */
static void slot_token(struct sl_sched *s, struct slot *sl, const struct sl_sample *smp)
{
    struct sl_job *j = sl->job;
    const struct sl_vocab *vocab = s->model->vocab;
    struct sl_tok_out o = {.token = smp->token, .logprob = smp->logprob, .n_top = smp->n_probs};
    memcpy(o.top, smp->top, sizeof o.top);
    o.text_off = (uint32_t)sl->text.len;
    sl_sampler_accept(sl->smp, smp->token);
    bool eog = vocab && sl_vocab_is_eog(vocab, smp->token);
    bool oom = false;
    if (!eog && vocab) {
        char piece[256];
        int pl = sl_token_to_piece(vocab, smp->token, piece, sizeof piece, false);
        if (pl > 0 && sl_buf_append(&sl->text, piece, (size_t)pl)) oom = true;
    }
    const char *text = sl->text.p ? sl->text.p : "";
    size_t safe;
    enum sl_stop_state st = sl_stop_scan(&sl->stop, text, sl->text.len, sl->checked, &safe);
    sl->checked = sl->text.len;
    if (st == SL_STOP_NONE) safe = sl_utf8_complete(text, sl->text.len);
    bool stop = (eog && !j->ignore_eog) || st == SL_STOP_MATCH ||
                (sl->gstage && sl_grammar_stage_done(sl->gstage));
    bool length = !stop && j->n_toks + 1 >= j->n_predict;
    if (length) safe = sl->text.len; /* flush what no stop string completed */
    if (safe < sl->sent) safe = sl->sent;

    pthread_mutex_lock(&s->mu);
    j->toks[j->n_toks++] = o;
    if (!j->t_first_ms) j->t_first_ms = sl_sched_now_ms();
    if (safe > sl->sent && sl_buf_append(&j->text, text + sl->sent, safe - sl->sent)) oom = true;
    pthread_cond_broadcast(&j->cond);
    pthread_mutex_unlock(&s->mu);
    sl->sent = safe;
    atomic_fetch_add(&s->stats.n_gen_tokens, 1);

    if (oom)
        slot_finish(s, sl, SL_FINISH_STOP, SL_ENOMEM, "out of memory");
    else if (stop)
        slot_finish(s, sl, SL_FINISH_STOP, 0, NULL);
    else if (length)
        slot_finish(s, sl, SL_FINISH_LENGTH, 0, NULL);
    else
        sl->tokens[sl->n_tokens++] = smp->token; /* decoded next step */
}

static void slot_sample(struct sl_sched *s, struct slot *sl, int32_t out)
{
    struct sl_sample smp;
    struct sl_err err = {0};
    if (sl_sampler_sample(sl->smp, sl_ctx_logits(s->ctx, out), &smp, &err)) {
        slot_finish(s, sl, SL_FINISH_STOP, err.code ? err.code : SL_EINVAL, err.msg);
        return;
    }
    slot_token(s, sl, &smp);
}

static void step(struct sl_sched *s)
{
    struct sl_batch *b = &s->batch;
    double now = sl_sched_now_ms();
    int32_t n_out = 0;

    /* cancellations and deadlines */
    for (int i = 0; i < s->p.n_slots; i++) {
        struct slot *sl = &s->slots[i];
        if (!sl->job) continue;
        if (atomic_load(&sl->job->cancel))
            slot_finish(s, sl, SL_FINISH_CANCEL, 0, NULL);
        else if (sl->job->deadline_ms && now > (double)sl->job->deadline_ms)
            slot_finish(s, sl, SL_FINISH_LENGTH, SL_SCHED_ETIMEDOUT, "request timed out");
    }

    /* one decode entry per running job, then prefill chunks */
    sl_batch_clear(b);
    for (int i = 0; i < s->p.n_slots; i++) {
        struct slot *sl = &s->slots[i];
        sl->n_fed = sl->n_out = 0;
        if (!sl->job || sl->prefill) continue;
        sl->out_first = n_out++;
        sl->n_out = sl->n_fed = 1;
        sl_batch_add(b, sl->tokens[sl->n_tokens - 1], sl->n_past, sl->seq, true);
    }
    for (int i = 0; i < s->p.n_slots && b->n_tokens < b->cap; i++) {
        struct slot *sl = &s->slots[i];
        if (!sl->job || !sl->prefill) continue;
        struct sl_job *j = sl->job;
        int32_t k = SL_MIN(j->n_prompt - sl->n_past, b->cap - b->n_tokens);
        if (j->prompt_logprobs) k = SL_MIN(k, s->max_out - n_out); /* each one an output row */
        sl->out_first = n_out;
        for (int32_t t = 0; t < k; t++) {
            int32_t pos = sl->n_past + t;
            bool want = pos == j->n_prompt - 1 || j->prompt_logprobs;
            sl_batch_add(b, j->prompt[pos], pos, sl->seq, want);
            if (want) n_out++, sl->n_out++;
        }
        sl->n_fed = k;
    }
    if (b->n_tokens == 0) return;

    struct sl_err err = {0};
    if (sl_decode(s->ctx, b, &err)) {
        for (int i = 0; i < s->p.n_slots; i++)
            if (s->slots[i].job && s->slots[i].n_fed)
                slot_finish(s, &s->slots[i], SL_FINISH_STOP, err.code ? err.code : SL_EINVAL,
                            err.msg);
        return;
    }
    atomic_fetch_add(&s->stats.n_steps, 1);
    atomic_fetch_add(&s->stats.n_batch_tokens, b->n_tokens);
    int h = 0;
    while (h < 7 && (1 << h) < b->n_tokens)
        h++;
    atomic_fetch_add(&s->stats.batch_hist[h], 1);

    const int32_t V = s->model->hp.n_vocab;
    for (int i = 0; i < s->p.n_slots; i++) {
        struct slot *sl = &s->slots[i];
        if (!sl->job || !sl->n_fed) continue;
        struct sl_job *j = sl->job;
        if (!sl->prefill) {
            sl->n_past++;
            sl->reserve--;
            slot_sample(s, sl, sl->out_first);
            continue;
        }
        int32_t p0 = sl->n_past;
        if (j->prompt_logprobs)
            for (int32_t o = 0; o < sl->n_out; o++) {
                int32_t p = p0 + o; /* logits at p score prompt[p + 1] */
                if (p + 1 < j->n_prompt)
                    score_token(sl_ctx_logits(s->ctx, sl->out_first + o), V, j->prompt[p + 1],
                                j->sampling.n_probs, &j->prompt_lp[p + 1]);
            }
        sl->n_past += sl->n_fed;
        sl->reserve -= sl->n_fed;
        atomic_fetch_add(&s->stats.n_prompt_tokens, sl->n_fed);
        if (sl->n_past < j->n_prompt) continue;
        sl->prefill = false;
        if (j->n_predict == 0)
            slot_finish(s, sl, SL_FINISH_LENGTH, 0, NULL);
        else
            slot_sample(s, sl, sl->out_first + sl->n_out - 1);
    }
}

/* ------------------------------------------------------------------------ */
/* Embeddings (engine thread)                                               */
/* ------------------------------------------------------------------------ */

static void embed_one(struct sl_sched *s, struct sl_job *j)
{
    struct sl_err err = {0};
    int rc = 0;
    const int32_t E = s->model->hp.n_embd;
    float *out = calloc((size_t)E, sizeof *out);
    if (!out) rc = sl_err_set(&err, SL_ENOMEM, "out of memory");
    if (!rc) {
        sl_kv_clear(&s->ectx->kv);
        sl_batch_clear(&s->ebatch);
        bool mean = s->p.pooling == SL_POOLING_MEAN;
        for (int32_t i = 0; i < j->n_prompt; i++)
            sl_batch_add(&s->ebatch, j->prompt[i], i, 0, mean || i == j->n_prompt - 1);
        rc = sl_decode(s->ectx, &s->ebatch, &err);
        if (!rc) {
            int32_t n = s->ectx->n_outputs;
            for (int32_t o = 0; o < n; o++) {
                const float *e = sl_ctx_embd(s->ectx, o);
                for (int32_t k = 0; k < E; k++)
                    out[k] += e[k];
            }
            double norm = 0;
            for (int32_t k = 0; k < E; k++)
                norm += (double)out[k] * out[k];
            norm = sqrt(norm);
            for (int32_t k = 0; k < E; k++)
                out[k] = norm > 0 ? (float)(out[k] / norm) : 0.0f;
        }
    }
    pthread_mutex_lock(&s->mu);
    if (!rc) {
        j->embd = out;
        j->n_embd = E;
        out = NULL;
    }
    atomic_fetch_add(&s->stats.n_prompt_tokens, j->n_prompt);
    job_done_locked(j, SL_FINISH_STOP, rc, err.msg);
    s->n_active--;
    pthread_mutex_unlock(&s->mu);
    free(out);
}

/* ------------------------------------------------------------------------ */
/* Task jobs (engine thread)                                                */
/* ------------------------------------------------------------------------ */

static void task_one(struct sl_sched *s, struct sl_job *j)
{
    struct sl_err err = {0};
    int rc = 0;
    j->t_start_ms = sl_sched_now_ms();
    if (j->deadline_ms && j->t_start_ms > (double)j->deadline_ms) {
        rc = sl_err_set(&err, SL_SCHED_ETIMEDOUT, "the request passed its deadline");
    } else if (atomic_load(&j->cancel)) {
        pthread_mutex_lock(&s->mu);
        job_done_locked(j, SL_FINISH_CANCEL, 0, NULL);
        s->n_active--;
        pthread_mutex_unlock(&s->mu);
        return;
    } else if (!s->tctx) {
        struct sl_ctx_params cp = sl_ctx_default_params();
        cp.n_ctx = s->p.n_ctx;
        cp.n_batch = s->p.n_batch;
        cp.n_threads = s->p.n_threads;
        rc = sl_ctx_init(&s->tctx, s->model, &cp, &err);
    }
    if (!rc) {
        sl_kv_clear(&s->tctx->kv);
        rc = j->run(j->run_arg, s->tctx, &err);
        if (rc && !err.msg[0]) sl_err_set(&err, rc, "task failed");
        sl_kv_clear(&s->tctx->kv); /* no task sees another's cells */
    }
    pthread_mutex_lock(&s->mu);
    job_done_locked(j, SL_FINISH_STOP, rc, err.msg);
    s->n_active--;
    pthread_mutex_unlock(&s->mu);
}

/* ------------------------------------------------------------------------ */
/* The engine thread                                                        */
/* ------------------------------------------------------------------------ */

static bool any_running(const struct sl_sched *s)
{
    for (int i = 0; i < s->p.n_slots; i++)
        if (s->slots[i].job) return true;
    return false;
}

static void *engine_main(void *arg)
{
    struct sl_sched *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        admit(s);
        struct sl_job *el = s->elist;
        s->elist = NULL;
        if (!el && !any_running(s) && s->qhead && !s->qhead->embed && !s->qhead->run) {
            /* cannot happen: submit checked that every job fits an empty cache */
            struct sl_job *j = s->qhead;
            s->qhead = j->next;
            if (!s->qhead) s->qtail = NULL;
            j->queued = false;
            s->n_queued--;
            job_done_locked(j, SL_FINISH_STOP, SL_ERANGE, "the request does not fit the KV cache");
            continue;
        }
        if (!el && !any_running(s)) {
            if (s->stopping && !s->qhead) break;
            pthread_cond_wait(&s->wake, &s->mu);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        while (el) {
            struct sl_job *next = el->next;
            if (el->run)
                task_one(s, el);
            else
                embed_one(s, el);
            el = next;
        }
        step(s);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Public API                                                               */
/* ------------------------------------------------------------------------ */

int sl_sched_init(struct sl_sched **out, const struct sl_model *m, const struct sl_sched_params *p,
                  struct sl_err *err)
{
    struct sl_sched *s = NULL;
    int rc;
    *out = NULL;
    if (p->n_slots < 1 || p->n_slots > SL_KV_MAX_SEQ / 2)
        return sl_err_set(err, SL_EINVAL, "sched: slots must be in [1, %d]", SL_KV_MAX_SEQ / 2);
    if (p->n_batch < p->n_slots) /* every running slot decodes in every step */
        return sl_err_set(err, SL_EINVAL, "sched: batch (%d) must be at least slots (%d)",
                          p->n_batch, p->n_slots);
    if (!(s = calloc(1, sizeof *s))) return sl_err_set(err, SL_ENOMEM, "sched: out of memory");
    s->model = m;
    s->p = *p;
    s->max_out = SL_MAX(p->max_outputs > 0 ? p->max_outputs : sl_logit_rows(m),
                        p->n_slots + 1); /* every decoding slot, and progress */
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->wake, NULL);
    if (!(s->slots = calloc((size_t)p->n_slots, sizeof *s->slots))) {
        rc = sl_err_set(err, SL_ENOMEM, "sched: out of memory");
        goto fail; /* allocation failure */
    }
    struct sl_ctx_params cp = sl_ctx_default_params();
    cp.n_ctx = p->n_ctx;
    cp.n_batch = p->n_batch;
    cp.n_threads = p->n_threads;
    if ((rc = sl_ctx_init(&s->ctx, m, &cp, err))) goto fail; /* out of memory */
    s->p.n_ctx = s->ctx->params.n_ctx;
    if ((rc = sl_batch_init(&s->batch, p->n_batch))) {
        sl_err_set(err, rc, "sched: out of memory");
        goto fail; /* allocation failure */
    }
    if (p->embd_ctx > 0 && p->pooling != SL_POOLING_NONE) {
        cp.n_ctx = p->embd_ctx;
        cp.n_batch = p->embd_ctx;
        cp.embeddings = true;
        cp.no_logits = true;
        if ((rc = sl_ctx_init(&s->ectx, m, &cp, err))) goto fail; /* out of memory */
        if ((rc = sl_batch_init(&s->ebatch, p->embd_ctx))) {
            sl_err_set(err, rc, "sched: out of memory");
            goto fail; /* allocation failure */
        }
    } else {
        s->p.embd_ctx = 0;
    }
    if (pthread_create(&s->thread, NULL, engine_main, s)) {
        rc = sl_err_set(err, SL_ENOMEM, "sched: cannot start the engine thread");
        goto fail; /* no thread */
    }
    s->thread_started = true;
    *out = s;
    return 0;
fail:
    sl_sched_free(s);
    return rc;
}

void sl_sched_free(struct sl_sched *s)
{
    if (!s) return;
    if (s->thread_started) {
        pthread_mutex_lock(&s->mu);
        s->stopping = true;
        pthread_cond_signal(&s->wake);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    if (s->slots)
        for (int i = 0; i < s->p.n_slots; i++)
            slot_clear(&s->slots[i]);
    for (int i = 0; i < s->n_cache; i++)
        free(s->cache[i].tokens);
    free(s->slots);
    sl_batch_free(&s->batch);
    sl_batch_free(&s->ebatch);
    sl_ctx_free(s->ctx);
    sl_ctx_free(s->ectx);
    sl_ctx_free(s->tctx);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int sl_sched_submit(struct sl_sched *s, struct sl_job *j, struct sl_err *err)
{
    if (j->run) {
        /* a closure: no prompt to check */
    } else if (j->n_prompt < 1) {
        return sl_err_set(err, SL_EINVAL, "empty prompt");
    } else if (j->embed) {
        if (!s->ectx) return sl_err_set(err, SL_EINVAL, "this model does not serve embeddings");
        if (j->n_prompt > s->p.embd_ctx)
            return sl_err_set(err, SL_ERANGE,
                              "input of %d tokens is longer than the model's embd_ctx (%d)",
                              j->n_prompt, s->p.embd_ctx);
    } else {
        if (j->n_predict < 0 || (j->n_predict == 0 && !j->prompt_logprobs))
            return sl_err_set(err, SL_EINVAL, "max_tokens must be at least 1");
        if ((int64_t)j->n_prompt + j->n_predict > s->p.n_ctx)
            return sl_err_set(
                err, SL_ERANGE,
                "prompt (%d tokens) plus max_tokens (%d) is more than the model's context "
                "of %d tokens",
                j->n_prompt, j->n_predict, s->p.n_ctx);
    }
    pthread_mutex_lock(&s->mu);
    if (s->stopping || s->n_queued + s->n_active >= s->p.n_queue + s->p.n_slots) {
        bool stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        return sl_err_set(err, SL_SCHED_EBUSY,
                          stopping ? "the server is shutting down"
                                   : "the model's queue is full; retry later");
    }
    j->t_queued_ms = sl_sched_now_ms();
    j->queued = true;
    j->next = NULL;
    if (s->qtail)
        s->qtail->next = j;
    else
        s->qhead = j;
    s->qtail = j;
    s->n_queued++;
    atomic_store(&s->stats.queue_depth, s->n_queued);
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

bool sl_sched_wait(struct sl_sched *s, struct sl_job *j, struct sl_job_progress *seen,
                   int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    if (timeout_ms >= 0) {
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    }
    bool changed = false;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (j->done != seen->done || j->text.len != seen->text_len || j->n_toks != seen->n_toks) {
            seen->done = j->done;
            seen->text_len = j->text.len;
            seen->n_toks = j->n_toks;
            changed = true;
            break;
        }
        int rc = timeout_ms < 0 ? pthread_cond_wait(&j->cond, &s->mu)
                                : pthread_cond_timedwait(&j->cond, &s->mu, &until);
        if (rc == ETIMEDOUT) break;
    }
    pthread_mutex_unlock(&s->mu);
    return changed;
}

int sl_sched_read_text(struct sl_sched *s, struct sl_job *j, size_t from, size_t to,
                       struct sl_buf *dst)
{
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    if (to > j->text.len) to = j->text.len;
    if (from < to) rc = sl_buf_append(dst, j->text.p + from, to - from);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void sl_sched_cancel(struct sl_sched *s, struct sl_job *j)
{
    pthread_mutex_lock(&s->mu);
    atomic_store(&j->cancel, true);
    if (j->queued) { /* not started: take it out of the queue */
        struct sl_job **pp = &s->qhead, *prev = NULL;
        while (*pp && *pp != j)
            prev = *pp, pp = &(*pp)->next;
        if (*pp) {
            *pp = j->next;
            if (s->qtail == j) s->qtail = prev;
            s->n_queued--;
            j->queued = false;
            atomic_store(&s->stats.queue_depth, s->n_queued);
            job_done_locked(j, SL_FINISH_CANCEL, 0, NULL);
        }
    }
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
}
