/*
 * local_backend.c - a served model as a router backend (server layer).
 * See local_backend.h.
 *
 * Failures map to the backend statuses the router's fallback reads: a full
 * queue is an "http error" 429 (503 while shutting down), a deadline a
 * "timeout", a prompt that does not fit an "http error" 400, an engine
 * error an "http error" 500.
 */
#include "local_backend.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../engine/vocab.h"
#include "server.h"
#include "task_job.h"

struct local {
    struct sl_server *s;
    struct sl_served_model *m;
    char *name;
};

static int64_t deadline_of(const struct local *l)
{
    return (int64_t)(sl_sched_now_ms() + (double)l->s->cfg->server.request_timeout_s * 1e3);
}

/* Most positions one sequence may use (as routes.c: KV cells, training context). */
static int32_t seq_ctx(const struct sl_served_model *m)
{
    int32_t n = sl_sched_params(m->sched)->n_ctx, train = m->model->hp.n_ctx_train;
    return train > 0 && train < n ? train : n;
}

/* An error code as a backend status; http_status says what an HTTP client
 * of this server would have got (0 for a timeout). Returns rc. */
static int map_rc(enum sl_backend_status *st, int *http, int rc, const struct sl_err *err)
{
    if (rc == SL_TASK_JOB_EGONE) { /* the request's should_stop */
        *st = SL_BACKEND_ABORTED;
        *http = 0;
        return rc;
    }
    int code = rc == SL_SCHED_EBUSY       ? (strstr(err->msg, "shutting") ? 503 : 429)
               : rc == SL_SCHED_ETIMEDOUT ? 0
               : (rc == SL_ERANGE || rc == SL_EINVAL || rc == SL_EUNSUPPORTED || rc == SL_EFORMAT)
                   ? 400
                   : 500;
    *st = code ? SL_BACKEND_HTTP : SL_BACKEND_TIMEOUT;
    *http = code;
    return rc ? rc : SL_EIO;
}

/* ------------------------------------------------------------------ chat */

struct chat_job {
    struct sl_job job;
    int32_t *toks;
    size_t n_toks;
    const char *stops[SL_STOP_MAX_STRINGS];
    bool inited, submitted;
    struct sl_job_progress seen;
};

static void chat_job_free(struct local *l, struct chat_job *c)
{
    if (c->submitted) {
        sl_sched_cancel(l->m->sched, &c->job);
        while (!c->seen.done)
            sl_sched_wait(l->m->sched, &c->job, &c->seen, 1000);
    }
    if (c->inited) sl_job_free(&c->job);
    free(c->toks);
}

/* How often a waiting call asks the request's should_stop. */
#define STOP_POLL_MS 100

/* Wait for a submitted chat job; 1 if the request's should_stop gave it up
 * first (the job is cancelled and done). */
static int wait_or_stop(struct local *l, const struct sl_backend_req *req, struct chat_job *c)
{
    while (!c->seen.done) {
        if (req->should_stop && req->should_stop(req->stop_user)) {
            sl_sched_cancel(l->m->sched, &c->job);
            while (!c->seen.done)
                sl_sched_wait(l->m->sched, &c->job, &c->seen, 1000);
            return 1;
        }
        sl_sched_wait(l->m->sched, &c->job, &c->seen, req->should_stop ? STOP_POLL_MS : 1000);
    }
    return 0;
}

/* Render, tokenize, check the context and submit the job. */
static int chat_submit(struct local *l, const struct sl_backend_req *req, struct chat_job *c,
                       struct sl_backend_resp *resp, struct sl_err *err)
{
    const struct sl_vocab *v = l->m->model->vocab;
    const struct sl_limits_config *lim = &l->s->cfg->limits;
    char *rendered = NULL;
    int rc = sl_chat_apply(l->m->family, req->msgs, req->n_msgs, true, &rendered, err);
    if (!rc) rc = sl_tokenize(v, rendered, strlen(rendered), true, true, &c->toks, &c->n_toks, err);
    free(rendered);
    if (rc) return map_rc(&resp->status, &resp->http_status, rc, err);
    int32_t n_ctx = seq_ctx(l->m);
    int64_t room = (int64_t)n_ctx - (int64_t)c->n_toks;
    int64_t max_prompt = SL_MIN(lim->max_prompt_tokens, (int64_t)n_ctx - 1);
    if (c->n_toks == 0 || (int64_t)c->n_toks > max_prompt) {
        sl_err_set(err, SL_ERANGE,
                   "backend '%s': the prompt has %zu tokens; the model accepts 1 to %lld", l->name,
                   c->n_toks, (long long)max_prompt);
        return map_rc(&resp->status, &resp->http_status, SL_ERANGE, err);
    }
    int64_t want = req->max_tokens >= 0 ? req->max_tokens : lim->max_completion_tokens;
    want = SL_MIN(want, SL_MIN(room, lim->max_completion_tokens));
    size_t n_stop = 0;
    for (size_t i = 0; i < SL_BACKEND_MAX_STOP && req->stop[i] && n_stop < SL_STOP_MAX_STRINGS; i++)
        c->stops[n_stop++] = req->stop[i];
    size_t ns = 0;
    const char *const *ts = sl_chat_stop_strings(l->m->family, &ns);
    for (size_t i = 0; i < ns && n_stop < SL_STOP_MAX_STRINGS; i++)
        c->stops[n_stop++] = ts[i];
    struct sl_job *j = &c->job;
    j->prompt = c->toks;
    j->n_prompt = (int32_t)c->n_toks;
    j->n_predict = (int32_t)want;
    j->sampling = sl_sampler_default_params();
    j->sampling.temp = req->temperature >= 0 ? (float)req->temperature : 1.0f;
    j->sampling.top_p = req->top_p >= 0 ? (float)req->top_p : 1.0f;
    j->sampling.top_k = 0;
    j->sampling.min_p = 0;
    if (req->seed >= 0)
        j->sampling.seed = (uint64_t)req->seed;
    else
        j->sampling.seed = (uint64_t)atomic_fetch_add(&l->s->next_id, 1) * 0x2545F4914F6CDD1Dull;
    j->sampling.n_probs = req->logprobs ? SL_MIN(req->top_logprobs, SL_SAMPLER_MAX_PROBS) : 0;
    j->stop = c->stops;
    j->n_stop = n_stop;
    j->deadline_ms = deadline_of(l);
    if ((rc = sl_job_init(j, err))) return map_rc(&resp->status, &resp->http_status, rc, err);
    c->inited = true;
    if ((rc = sl_sched_submit(l->m->sched, j, err)))
        return map_rc(&resp->status, &resp->http_status, rc, err);
    c->submitted = true;
    return 0;
}

static char *piece_dup(const struct sl_vocab *v, int32_t tok)
{
    char piece[256];
    int n = sl_token_to_piece(v, tok, piece, sizeof piece, true);
    if (n < 0) n = 0;
    return strndup(piece, (size_t)n);
}

/* After the job is done: status, usage, logprobs, confidence. */
static int chat_finish(struct local *l, const struct sl_backend_req *req, struct chat_job *c,
                       double t0, struct sl_backend_resp *resp, struct sl_err *err)
{
    struct sl_job *j = &c->job;
    if (j->t_start_ms > 0 && j->t_done_ms >= j->t_start_ms)
        resp->machine_ms = j->t_done_ms - j->t_start_ms;
    resp->latency_ms = sl_sched_now_ms() - t0;
    resp->first_byte_ms = j->t_first_ms > 0 ? j->t_first_ms - t0 : resp->latency_ms;
    resp->tokens_in = j->n_prompt;
    resp->tokens_out = j->n_toks;
    if (j->rc) {
        *err = j->err;
        return map_rc(&resp->status, &resp->http_status, j->rc, err);
    }
    if (j->finish == SL_FINISH_CANCEL)
        return map_rc(
            &resp->status, &resp->http_status, SL_SCHED_ETIMEDOUT,
            (sl_err_set(err, SL_SCHED_ETIMEDOUT,
                        "backend '%s': the request took longer than server.request_timeout_s",
                        l->name),
             err));
    if (!(resp->finish_reason = strdup(j->finish == SL_FINISH_LENGTH ? "length" : "stop")))
        return sl_err_set(err, SL_ENOMEM, "backend '%s': out of memory", l->name);
    double sum = 0;
    for (int32_t i = 0; i < j->n_toks; i++)
        sum += isfinite(j->toks[i].logprob) ? (double)j->toks[i].logprob : -30.0;
    if (req->logprobs && j->n_toks > 0) {
        resp->confidence = exp(sum / j->n_toks);
        const struct sl_vocab *v = l->m->model->vocab;
        if (!(resp->logprobs = calloc((size_t)j->n_toks, sizeof *resp->logprobs)))
            return sl_err_set(err, SL_ENOMEM, "backend '%s': out of memory", l->name);
        resp->n_logprobs = (size_t)j->n_toks;
        for (int32_t i = 0; i < j->n_toks; i++) {
            struct sl_backend_logprob *o = &resp->logprobs[i];
            o->token = piece_dup(v, j->toks[i].token);
            o->logprob = j->toks[i].logprob;
            o->n_top = SL_MIN(j->toks[i].n_top, SL_BACKEND_MAX_TOP);
            for (int k = 0; k < o->n_top; k++) {
                o->top[k].token = piece_dup(v, j->toks[i].top[k].token);
                o->top[k].logprob = j->toks[i].top[k].logprob;
            }
        }
    }
    resp->status = SL_BACKEND_OK;
    resp->http_status = 200;
    return 0;
}

static void resp_start(const struct local *l, struct sl_backend_resp *resp)
{
    memset(resp, 0, sizeof *resp);
    resp->attempts = 1;
    resp->tokens_in = resp->tokens_out = -1;
    resp->confidence = -1;
    resp->model = strdup(l->m->cfg->name);
}

static int local_complete(void *ctx, const struct sl_backend_req *req, struct sl_backend_resp *resp,
                          struct sl_err *err)
{
    struct local *l = ctx;
    struct chat_job c = {0};
    double t0 = sl_sched_now_ms();
    resp_start(l, resp);
    int rc = chat_submit(l, req, &c, resp, err);
    if (!rc && wait_or_stop(l, req, &c)) {
        resp->status = SL_BACKEND_ABORTED;
        rc = sl_err_set(err, SL_EIO, "backend '%s': stopped by the caller (the client went away)", l->name);
    } else if (!rc) {
        struct sl_buf t;
        sl_buf_init(&t, 0);
        sl_sched_read_text(l->m->sched, &c.job, 0, c.seen.text_len, &t);
        sl_buf_append(&t, "", 1);
        resp->content = sl_buf_take(&t, NULL);
        rc = chat_finish(l, req, &c, t0, resp, err);
    }
    if (!resp->content) resp->content = strdup("");
    chat_job_free(l, &c);
    return rc;
}

static int local_stream(void *ctx, const struct sl_backend_req *req, sl_backend_chunk_fn fn,
                        void *user, struct sl_backend_resp *resp, struct sl_err *err)
{
    struct local *l = ctx;
    struct chat_job c = {0};
    struct sl_buf all, piece;
    double t0 = sl_sched_now_ms();
    sl_buf_init(&all, 0);
    sl_buf_init(&piece, 0);
    resp_start(l, resp);
    int rc = chat_submit(l, req, &c, resp, err);
    size_t sent = 0;
    bool aborted = false;
    while (!rc && !aborted) {
        bool done = c.seen.done;
        if (c.seen.text_len > sent) {
            piece.len = 0;
            sl_sched_read_text(l->m->sched, &c.job, sent, c.seen.text_len, &piece);
            sent = c.seen.text_len;
            sl_buf_append(&all, piece.p, piece.len);
            json_t *o =
                json_pack("{s:s,s:s,s:[{s:i,s:{s:s%},s:n}]}", "object", "chat.completion.chunk",
                          "model", l->m->cfg->name, "choices", "index", 0, "delta", "content",
                          piece.p ? piece.p : "", piece.len, "finish_reason");
            char *data = o ? json_dumps(o, JSON_COMPACT) : NULL;
            if (o) json_decref(o);
            struct sl_backend_chunk ch = {data ? data : "{}", data ? strlen(data) : 2,
                                          piece.p ? piece.p : "", piece.len};
            if (fn(user, &ch)) aborted = true;
            free(data);
            continue;
        }
        if (done) break;
        sl_sched_wait(l->m->sched, &c.job, &c.seen, STOP_POLL_MS);
        if (req->should_stop && req->should_stop(req->stop_user)) aborted = true;
    }
    if (!rc && aborted) {
        sl_sched_cancel(l->m->sched, &c.job);
        while (!c.seen.done)
            sl_sched_wait(l->m->sched, &c.job, &c.seen, 1000);
        resp->status = SL_BACKEND_ABORTED;
        rc = sl_err_set(err, SL_EIO, "backend '%s': the stream was aborted", l->name);
    } else if (!rc) {
        rc = chat_finish(l, req, &c, t0, resp, err);
        if (rc && sent > 0) resp->status = SL_BACKEND_STREAM_CUT;
    }
    sl_buf_append(&all, "", 1);
    resp->content = sl_buf_take(&all, NULL);
    if (!resp->content) resp->content = strdup("");
    sl_buf_free(&piece);
    chat_job_free(l, &c);
    return rc;
}

/* ------------------------------------------------------------- embeddings */

static int local_embed(void *ctx, const char *const *texts, size_t n, float **out, int *dim,
                       struct sl_err *err)
{
    struct local *l = ctx;
    struct sl_served_model *m = l->m;
    *out = NULL;
    *dim = 0;
    if (m->cfg->pooling == SL_POOLING_NONE)
        return sl_err_set(
            err, SL_EUNSUPPORTED,
            "backend '%s': the model '%s' does not serve embeddings (set models.%s.pooling)",
            l->name, m->cfg->name, m->cfg->name);
    struct sl_job *jobs = calloc(n ? n : 1, sizeof *jobs);
    struct sl_job_progress *seen = calloc(n ? n : 1, sizeof *seen);
    int32_t **toks = calloc(n ? n : 1, sizeof *toks);
    size_t n_init = 0, n_sub = 0;
    int rc = 0;
    int64_t deadline = deadline_of(l);
    int32_t limit = sl_sched_params(m->sched)->embd_ctx;
    if (!jobs || !seen || !toks) {
        rc = sl_err_set(err, SL_ENOMEM, "backend '%s': out of memory", l->name);
        goto done; /* allocation failure */
    }
    for (size_t i = 0; i < n; i++) {
        size_t nt = 0;
        if ((rc = sl_tokenize(m->model->vocab, texts[i], strlen(texts[i]), true, false, &toks[i],
                              &nt, err)))
            goto done; /* untokenizable */
        if (nt == 0 || (int64_t)nt > limit) {
            rc = sl_err_set(err, SL_ERANGE,
                            "backend '%s': input %zu has %zu tokens; the model embeds 1 to %d",
                            l->name, i, nt, limit);
            goto done; /* too long */
        }
        jobs[i].prompt = toks[i];
        jobs[i].n_prompt = (int32_t)nt;
        jobs[i].embed = true;
        jobs[i].deadline_ms = deadline;
        if ((rc = sl_job_init(&jobs[i], err))) goto done; /* allocation failure */
        n_init = i + 1;
    }
    for (size_t i = 0; i < n; i++) {
        if ((rc = sl_sched_submit(m->sched, &jobs[i], err))) goto done; /* queue full */
        n_sub = i + 1;
    }
    for (size_t i = 0; i < n; i++)
        while (!seen[i].done)
            sl_sched_wait(m->sched, &jobs[i], &seen[i], 1000);
    for (size_t i = 0; i < n; i++)
        if (jobs[i].rc) {
            *err = jobs[i].err;
            rc = jobs[i].rc;
            goto done; /* engine error, timeout */
        }
    int d = n ? jobs[0].n_embd : 0;
    if (!(*out = malloc((n ? n : 1) * (size_t)(d ? d : 1) * sizeof **out))) {
        rc = sl_err_set(err, SL_ENOMEM, "backend '%s': out of memory", l->name);
        goto done; /* allocation failure */
    }
    for (size_t i = 0; i < n; i++)
        memcpy(*out + i * (size_t)d, jobs[i].embd, (size_t)d * sizeof **out);
    *dim = d;
done:
    for (size_t i = 0; i < n_sub; i++) {
        sl_sched_cancel(m->sched, &jobs[i]);
        while (!seen[i].done)
            sl_sched_wait(m->sched, &jobs[i], &seen[i], 1000);
    }
    for (size_t i = 0; i < n_init; i++)
        sl_job_free(&jobs[i]);
    for (size_t i = 0; toks && i < n; i++)
        free(toks[i]);
    free(toks);
    free(jobs);
    free(seen);
    return rc;
}

/* ------------------------------------------------------------------ tasks */

static int local_task(void *ctx, const struct sl_backend_task_req *req,
                      struct sl_backend_task_resp *resp, struct sl_err *err)
{
    struct local *l = ctx;
    const struct sl_task_config *tc = req->task;
    struct sl_task_job t;
    double t0 = sl_sched_now_ms();
    memset(resp, 0, sizeof *resp);
    resp->attempts = 1;
    resp->label = -1;
    resp->confidence = -1;
    resp->tokens_in = resp->tokens_out = -1;
    resp->model = strdup(l->m->cfg->name);
    if (tc->kind != SL_TASK_CLASSIFY && tc->kind != SL_TASK_EXTRACT) {
        resp->status = SL_BACKEND_HTTP;
        resp->http_status = 400;
        return sl_err_set(err, SL_EINVAL, "backend '%s': task '%s' is not classify or extract",
                          l->name, tc->name);
    }
    bool classify = tc->kind == SL_TASK_CLASSIFY;
    int rc = sl_task_job_init(&t, l->m, classify, 1, err);
    if (!rc) rc = sl_task_job_use_config(&t, tc, err);
    if (!rc) {
        t.inputs[0] = req->input;
        t.should_stop = req->should_stop;
        t.stop_user = req->stop_user;
        rc = sl_task_job_run(&t, deadline_of(l), -1, err);
    }
    resp->machine_ms = t.machine_ms;
    resp->latency_ms = sl_sched_now_ms() - t0;
    if (rc) {
        map_rc(&resp->status, &resp->http_status, rc, err);
        sl_task_job_free(&t);
        return rc;
    }
    resp->status = SL_BACKEND_OK;
    resp->http_status = 200;
    if (classify) {
        const struct sl_classify_result *r = &t.cres[0];
        resp->label = r->label;
        resp->confidence = r->confidence;
        resp->tokens_in = r->n_prompt;
        resp->tokens_out = 0;
        resp->content = strdup(tc->labels[r->label]);
        if ((resp->probs = malloc(tc->n_labels * sizeof *resp->probs))) {
            memcpy(resp->probs, r->probs, tc->n_labels * sizeof *resp->probs);
            resp->n_probs = tc->n_labels;
        }
    } else {
        const struct sl_extract_result *r = &t.xres[0];
        resp->confidence = r->p_min;
        resp->tokens_in = r->n_prompt;
        resp->tokens_out = r->n_gen;
        resp->json = strndup(r->output, r->len);
        resp->content = strndup(r->output, r->len);
    }
    sl_task_job_free(&t);
    if (!resp->content || (!classify && !resp->json) || (classify && !resp->probs))
        return sl_err_set(err, SL_ENOMEM, "backend '%s': out of memory", l->name);
    return 0;
}

static void local_free(void *ctx)
{
    struct local *l = ctx;
    if (!l) return;
    free(l->name);
    free(l);
}

static const struct sl_backend_i local_iface = {
    .kind = "local",
    .complete = local_complete,
    .stream = local_stream,
    .embed = local_embed,
    .task = local_task,
    .free = local_free,
};

int sl_local_backend_new(struct sl_backend *out, struct sl_server *s, struct sl_served_model *m,
                         const char *name, struct sl_err *err)
{
    struct local *l = calloc(1, sizeof *l);
    if (!l || !(l->name = strdup(name))) {
        free(l);
        return sl_err_set(err, SL_ENOMEM, "backend '%s': out of memory", name);
    }
    l->s = s;
    l->m = m;
    out->iface = &local_iface;
    out->ctx = l;
    return 0;
}
