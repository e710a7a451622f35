/*
 * routes.c - the OpenAI-compatible endpoints (server layer):
 *
 *   GET  /health                 liveness
 *   GET  /v1/models[/ID]         served models (those the key may use)
 *   GET  /metrics                Prometheus text
 *   POST /v1/chat/completions    chat, streaming, logprobs, n, stop, seed
 *   POST /v1/completions         text completion; echo + logprobs scores the prompt
 *   POST /v1/embeddings          pooled, L2-normalized hidden states
 *   POST /v1/classify            label scoring (a configured task or ad-hoc labels)
 *   POST /v1/extract             schema-constrained JSON (a configured task or ad-hoc schema)
 *   POST /v1/feedback            the true answer of a logged request
 *
 * A "model" that names a route (routes: in the config) goes through the
 * router instead: chat completions (streamed too), classify and extract;
 * the answer carries a `sluice` object and x-sluice-* headers. With a
 * request log (log:), requests straight to a model are logged too.
 *
 * Chat completions take response_format json_schema / json_object: the
 * schema is compiled to a grammar here and the job's sampler enforces it.
 * A request is parsed (request.c), authorized, tokenized, turned into one
 * scheduler job per choice (prompts x n), and answered whole or as
 * server-sent events. Every 4xx/5xx body is {"error": {...}} as OpenAI's.
 */
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../engine/grammar.h"
#include "../engine/vocab.h"
#include "../router/router.h"
#include "../store/store.h"
#include "../tasks/classify.h"
#include "../tasks/extract.h"
#include "../tasks/schema.h"
#include "request.h"
#include "server.h"
#include "sse.h"
#include "task_job.h"

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

static void reply_json(struct sl_http_resp *resp, int status, json_t *obj)
{
    char *s = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    if (obj) json_decref(obj);
    if (!s) {
        sl_http_error(resp, 500, "server_error", NULL, NULL, "out of memory");
        return;
    }
    resp->status = status;
    resp->content_type = "application/json";
    resp->body = s;
    resp->body_len = strlen(s);
}

static void reply_err(struct sl_http_resp *resp, int status, const char *type, const char *code,
                      const char *param, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void reply_err(struct sl_http_resp *resp, int status, const char *type, const char *code,
                      const char *param, const char *fmt, ...)
{
    char msg[SL_ERR_MSG_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sl_http_error(resp, status, type, code, param, msg);
}

/* Valid UTF-8 of s[0..n): 1, else 0. */
static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!k || i + k > n) return 0;
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xC0) != 0x80) return 0;
        if (k == 2 && c < 0xC2) return 0;
        i += k;
    }
    return 1;
}

/* A JSON string of s[0..n); invalid UTF-8 bytes become U+FFFD. */
static json_t *json_text(const char *s, size_t n)
{
    if (utf8_valid((const unsigned char *)s, n)) return json_stringn(s, n);
    struct sl_buf b;
    sl_buf_init(&b, 0);
    size_t i = 0;
    while (i < n) {
        size_t k = 1;
        unsigned char c = (unsigned char)s[i];
        size_t want = c < 0x80         ? 1
                      : (c >> 5) == 6  ? 2
                      : (c >> 4) == 14 ? 3
                      : (c >> 3) == 30 ? 4
                                       : 0;
        if (want && i + want <= n && utf8_valid((const unsigned char *)s + i, want))
            k = want;
        else
            want = 0;
        if (want)
            sl_buf_append(&b, s + i, k);
        else
            sl_buf_append(&b, "\xEF\xBF\xBD", 3);
        i += k;
    }
    json_t *j = json_stringn(b.p ? b.p : "", b.len);
    sl_buf_free(&b);
    return j;
}

/* A token's text for logprobs: its piece, or "bytes:\xNN..." when the piece
 * is not valid UTF-8 on its own (as OpenAI writes byte tokens). */
static json_t *token_json_str(const struct sl_vocab *v, int32_t tok, char *piece, int *len)
{
    int pl = sl_token_to_piece(v, tok, piece, 256, true);
    if (pl < 0) pl = 0;
    *len = pl;
    if (utf8_valid((const unsigned char *)piece, (size_t)pl))
        return json_stringn(piece, (size_t)pl);
    char hex[256 * 4 + 8] = "bytes:";
    size_t o = 6;
    for (int i = 0; i < pl && o + 5 < sizeof hex; i++)
        o += (size_t)snprintf(hex + o, sizeof hex - o, "\\x%02x", (unsigned char)piece[i]);
    return json_string(hex);
}

static json_t *bytes_json(const char *p, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_integer((unsigned char)p[i]));
    return a;
}

static double lp_value(float lp)
{
    return isfinite(lp) ? (double)lp : -9999.0;
}

static const char *finish_name(enum sl_finish f)
{
    return f == SL_FINISH_LENGTH ? "length" : "stop";
}

static void make_id(struct sl_server *s, const char *prefix, char *out, size_t n)
{
    unsigned long long id = atomic_fetch_add(&s->next_id, 1);
    snprintf(out, n, "%s-%016llx", prefix, id * 0x9E3779B97F4A7C15ull);
}

/* ------------------------------------------------------------------------ */
/* Auth and model lookup                                                    */
/* ------------------------------------------------------------------------ */

/* 0: allowed (*key = the matching key, NULL when none are configured);
 * otherwise resp is filled with 401. */
static int authenticate(struct sl_server *s, const struct sl_http_req *req,
                        const struct sl_key_config **key, struct sl_http_resp *resp)
{
    *key = NULL;
    if (s->cfg->n_keys == 0) return 0;
    const char *a = req->authorization;
    if (!a || strncmp(a, "Bearer ", 7)) {
        reply_err(resp, 401, "invalid_request_error", "invalid_api_key", NULL,
                  "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'.");
        return -1;
    }
    uint8_t d[SL_SHA256_LEN];
    sl_sha256(a + 7, strlen(a + 7), d);
    for (size_t i = 0; i < s->cfg->n_keys; i++)
        if (sl_sha256_equal(d, s->cfg->keys[i].sha256)) *key = &s->cfg->keys[i];
    if (!*key) {
        reply_err(resp, 401, "invalid_request_error", "invalid_api_key", NULL,
                  "Incorrect API key provided.");
        return -1;
    }
    return 0;
}

static bool key_allows(const struct sl_key_config *k, const char *model)
{
    if (!k || k->n_models == 0) return true;
    for (size_t i = 0; i < k->n_models; i++)
        if (!strcmp(k->models[i], model)) return true;
    return false;
}

static struct sl_served_model *find_model(struct sl_server *s, const char *name)
{
    for (size_t i = 0; i < s->n_models; i++)
        if (!strcmp(s->models[i].cfg->name, name)) return &s->models[i];
    return NULL;
}

/* Model lookup with the key's permission; NULL with resp filled. */
static struct sl_served_model *model_for(struct sl_server *s, const struct sl_key_config *key,
                                         const char *name, struct sl_http_resp *resp)
{
    struct sl_served_model *m = find_model(s, name);
    if (!m) {
        reply_err(resp, 404, "invalid_request_error", "model_not_found", "model",
                  "The model '%s' does not exist on this server (GET /v1/models lists them).",
                  name);
        return NULL;
    }
    if (!key_allows(key, name)) {
        reply_err(resp, 403, "permission_error", "model_not_allowed", "model",
                  "This API key may not use the model '%s'.", name);
        return NULL;
    }
    return m;
}

/* ------------------------------------------------------------------------ */
/* Generation requests                                                      */
/* ------------------------------------------------------------------------ */

struct gen {
    struct sl_server *srv;
    struct sl_served_model *m;
    struct sl_req req;
    const char *route;
    double t0;
    int fd;
    char id[48];
    long long created;

    size_t n_prompts;
    int32_t **ptoks; /* (n_prompts) owned */
    size_t *n_ptoks;
    const char *stops[SL_STOP_MAX_STRINGS];
    size_t n_stops;

    struct sl_job *jobs; /* (n_jobs): job i is prompt i / n, choice index i */
    size_t n_jobs;
    size_t n_init; /* jobs[0..n_init) passed sl_job_init */
    size_t n_submitted;
    int64_t deadline_ms;
    bool timed_out;
    struct sl_grammar *grammar; /* response_format, or NULL */
    char **rendered;            /* (n_rendered) a generate task's prompts, owned */
    size_t n_rendered;

    /* streaming */
    struct sl_job_progress *seen;
    size_t *text_sent;
    int32_t *toks_sent;
    bool *fin_sent;
    int phase; /* 0 opening chunks, 1 tokens, 2 usage, 3 [DONE], 4 end */
    struct sl_buf out;
    size_t out_off;
    int status;
    double last_send_ms; /* when the stream last produced bytes */
};

static void gen_free(struct gen *g)
{
    if (!g) return;
    for (size_t i = 0; i < g->n_submitted; i++) {
        struct sl_job_progress p = {0};
        sl_sched_cancel(g->m->sched, &g->jobs[i]);
        while (!p.done)
            sl_sched_wait(g->m->sched, &g->jobs[i], &p, 1000);
    }
    for (size_t i = 0; i < g->n_init; i++)
        sl_job_free(&g->jobs[i]);
    for (size_t i = 0; i < g->n_prompts; i++)
        free(g->ptoks ? g->ptoks[i] : NULL);
    free(g->ptoks);
    free(g->n_ptoks);
    free(g->jobs);
    free(g->seen);
    free(g->text_sent);
    free(g->toks_sent);
    free(g->fin_sent);
    sl_buf_free(&g->out);
    sl_req_free(&g->req);
    sl_grammar_free(g->grammar);
    for (size_t i = 0; i < g->n_rendered; i++)
        free(g->rendered[i]);
    free(g->rendered);
    free(g);
}

static void log_gen(struct gen *g, int status);

static void gen_stream_free(void *ctx)
{
    struct gen *g = ctx;
    if (g->status == 200) log_gen(g, 200);
    sl_metrics_request(&g->srv->metrics, g->route, g->status, (sl_sched_now_ms() - g->t0) / 1e3);
    gen_free(g);
}

/* Most positions one sequence may use: the KV cells, and no more than the
 * model was trained for (positions past it give garbage). */
static int32_t seq_ctx(const struct sl_served_model *m)
{
    int32_t n = sl_sched_params(m->sched)->n_ctx, train = m->model->hp.n_ctx_train;
    return train > 0 && train < n ? train : n;
}

/* Tokens of every prompt, checked against the limits; 0 or resp filled. */
static int gen_tokenize(struct gen *g, struct sl_http_resp *resp)
{
    const struct sl_vocab *v = g->m->model->vocab;
    const struct sl_limits_config *lim = &g->srv->cfg->limits;
    int32_t n_ctx = seq_ctx(g->m);
    struct sl_err err = {0};
    char *rendered = NULL;
    g->n_prompts = g->req.kind == SL_REQ_CHAT ? 1 : g->req.n_prompts;
    g->ptoks = calloc(g->n_prompts, sizeof *g->ptoks);
    g->n_ptoks = calloc(g->n_prompts, sizeof *g->n_ptoks);
    if (!g->ptoks || !g->n_ptoks) goto oom;
    for (size_t i = 0; i < g->n_prompts; i++) {
        int rc = 0;
        if (g->req.kind == SL_REQ_CHAT) {
            rc = sl_chat_apply(g->m->family, g->req.msgs, g->req.n_msgs, true, &rendered, &err);
            if (rc == SL_EINVAL) {
                reply_err(resp, 400, "invalid_request_error", NULL, "messages", "%s", err.msg);
                return -1;
            }
            if (!rc)
                rc = sl_tokenize(v, rendered, strlen(rendered), true, true, &g->ptoks[i],
                                 &g->n_ptoks[i], &err);
            free(rendered);
            rendered = NULL;
        } else if (g->req.prompts[i].ids) {
            size_t n = g->req.prompts[i].n_ids;
            for (size_t k = 0; k < n; k++)
                if (g->req.prompts[i].ids[k] >= sl_vocab_n_tokens(v)) {
                    reply_err(resp, 400, "invalid_request_error", NULL, "prompt",
                              "token id %d is out of range (vocabulary of %d)",
                              g->req.prompts[i].ids[k], sl_vocab_n_tokens(v));
                    return -1;
                }
            if (!(g->ptoks[i] = malloc(n * sizeof *g->ptoks[i]))) goto oom;
            memcpy(g->ptoks[i], g->req.prompts[i].ids, n * sizeof *g->ptoks[i]);
            g->n_ptoks[i] = n;
        } else {
            rc = sl_tokenize(v, g->req.prompts[i].text, g->req.prompts[i].text_len, true, true,
                             &g->ptoks[i], &g->n_ptoks[i], &err);
        }
        if (rc == SL_ENOMEM) goto oom;
        if (rc) {
            reply_err(resp, 400, "invalid_request_error", NULL,
                      g->req.kind == SL_REQ_CHAT ? "messages" : "prompt", "%s", err.msg);
            return -1;
        }
        if (g->n_ptoks[i] == 0) {
            reply_err(resp, 400, "invalid_request_error", NULL, "prompt", "the prompt is empty");
            return -1;
        }
        int64_t max_prompt = SL_MIN(lim->max_prompt_tokens, (int64_t)n_ctx - 1);
        if ((int64_t)g->n_ptoks[i] > max_prompt) {
            reply_err(resp, 400, "invalid_request_error", "context_length_exceeded",
                      g->req.kind == SL_REQ_CHAT ? "messages" : "prompt",
                      "The prompt has %zu tokens; this model accepts at most %lld.", g->n_ptoks[i],
                      (long long)max_prompt);
            return -1;
        }
    }
    return 0;
oom:
    free(rendered);
    reply_err(resp, 500, "server_error", NULL, NULL, "out of memory");
    return -1;
}

static int gen_make_jobs(struct gen *g, struct sl_http_resp *resp)
{
    const struct sl_limits_config *lim = &g->srv->cfg->limits;
    int32_t n_ctx = seq_ctx(g->m);
    size_t n = (size_t)g->req.n;
    g->n_jobs = g->n_prompts * n;
    g->jobs = calloc(g->n_jobs, sizeof *g->jobs);
    g->seen = calloc(g->n_jobs, sizeof *g->seen);
    g->text_sent = calloc(g->n_jobs, sizeof *g->text_sent);
    g->toks_sent = calloc(g->n_jobs, sizeof *g->toks_sent);
    g->fin_sent = calloc(g->n_jobs, sizeof *g->fin_sent);
    if (!g->jobs || !g->seen || !g->text_sent || !g->toks_sent || !g->fin_sent) {
        g->n_jobs = 0;
        reply_err(resp, 500, "server_error", NULL, NULL, "out of memory");
        return -1;
    }
    /* stop strings: the request's, then the chat template's end-of-turn markers */
    for (size_t i = 0; i < g->req.n_stop; i++)
        g->stops[g->n_stops++] = g->req.stop[i];
    if (g->req.kind == SL_REQ_CHAT) {
        size_t ns = 0;
        const char *const *ts = sl_chat_stop_strings(g->m->family, &ns);
        for (size_t i = 0; i < ns && g->n_stops < SL_STOP_MAX_STRINGS; i++)
            g->stops[g->n_stops++] = ts[i];
    }
    uint64_t seed = g->req.has_seed
                        ? g->req.seed
                        : (uint64_t)atomic_fetch_add(&g->srv->next_id, 1) * 0x2545F4914F6CDD1Dull;
    for (size_t i = 0; i < g->n_jobs; i++) {
        struct sl_job *j = &g->jobs[i];
        size_t p = i / n;
        int64_t room = (int64_t)n_ctx - (int64_t)g->n_ptoks[p];
        int64_t want = g->req.max_tokens;
        if (want < 0) want = SL_MIN(lim->max_completion_tokens, room);
        if (want > lim->max_completion_tokens) {
            reply_err(resp, 400, "invalid_request_error", NULL, "max_tokens",
                      "max_tokens is %lld; this server allows at most %lld.", (long long)want,
                      (long long)lim->max_completion_tokens);
            return -1;
        }
        if (want > room) {
            reply_err(resp, 400, "invalid_request_error", "context_length_exceeded", "max_tokens",
                      "This model's context is %d tokens; the prompt has %zu and max_tokens asks "
                      "for %lld more.",
                      n_ctx, g->n_ptoks[p], (long long)want);
            return -1;
        }
        j->prompt = g->ptoks[p];
        j->n_prompt = (int32_t)g->n_ptoks[p];
        j->n_predict = (int32_t)want;
        j->sampling = sl_sampler_default_params();
        j->sampling.temp = (float)g->req.temperature;
        j->sampling.top_p = (float)g->req.top_p;
        j->sampling.top_k = 0;
        j->sampling.min_p = 0;
        j->sampling.presence_penalty = (float)g->req.presence_penalty;
        j->sampling.frequency_penalty = (float)g->req.frequency_penalty;
        j->sampling.seed = seed + i;
        j->sampling.n_probs = g->req.logprobs ? g->req.top_logprobs : 0;
        j->stop = g->stops;
        j->n_stop = g->n_stops;
        j->prompt_logprobs = g->req.echo && g->req.logprobs;
        j->ignore_eog = g->req.ignore_eos;
        j->deadline_ms = g->deadline_ms;
        j->grammar = g->grammar;
        struct sl_err err = {0};
        if (sl_job_init(j, &err)) {
            reply_err(resp, 500, "server_error", NULL, NULL, "%s", err.msg);
            return -1;
        }
        g->n_init = i + 1;
    }
    return 0;
}

/* Submit every job; on a refusal cancel those already in. 0 or resp filled. */
static int submit_all(struct sl_sched *sched, struct sl_job *jobs, size_t n, size_t *n_submitted,
                      struct sl_http_resp *resp)
{
    for (size_t i = 0; i < n; i++) {
        struct sl_err err = {0};
        int rc = sl_sched_submit(sched, &jobs[i], &err);
        if (rc == SL_SCHED_EBUSY) {
            reply_err(resp, strstr(err.msg, "shutting") ? 503 : 429, "rate_limit_error",
                      "rate_limit_exceeded", NULL, "%s", err.msg);
            resp->retry_after = 1;
            return -1;
        }
        if (rc) {
            reply_err(resp, 400, "invalid_request_error",
                      rc == SL_ERANGE ? "context_length_exceeded" : NULL, NULL, "%s", err.msg);
            return -1;
        }
        *n_submitted = i + 1;
    }
    return 0;
}

/* Wait for every job (non-streaming). false: the client went away. */
static bool wait_all(struct sl_sched *sched, struct sl_job *jobs, struct sl_job_progress *seen,
                     size_t n, int fd, int64_t deadline_ms, bool *timed_out)
{
    for (size_t i = 0; i < n; i++) {
        while (!seen[i].done) {
            sl_sched_wait(sched, &jobs[i], &seen[i], 200);
            if (seen[i].done) break;
            if (sl_http_peer_gone(fd)) {
                for (size_t k = 0; k < n; k++)
                    sl_sched_cancel(sched, &jobs[k]);
                return false;
            }
            if (deadline_ms && sl_sched_now_ms() > (double)deadline_ms && !*timed_out) {
                *timed_out = true;
                for (size_t k = 0; k < n; k++)
                    sl_sched_cancel(sched, &jobs[k]);
            }
        }
    }
    return true;
}

/* The first job error as an HTTP error; 0 when every job succeeded. */
static int jobs_error(struct sl_job *jobs, size_t n, bool timed_out, struct sl_http_resp *resp)
{
    for (size_t i = 0; i < n; i++) {
        if (jobs[i].rc == SL_SCHED_ETIMEDOUT || (timed_out && jobs[i].finish == SL_FINISH_CANCEL)) {
            reply_err(resp, 504, "server_error", "timeout", NULL,
                      "The request took longer than server.request_timeout_s.");
            return -1;
        }
        if (jobs[i].rc) {
            reply_err(resp, 500, "server_error", NULL, NULL, "%s", jobs[i].err.msg);
            return -1;
        }
    }
    return 0;
}

/* --- response bodies ---------------------------------------------------- */

static json_t *chat_logprob_entry(const struct sl_vocab *v, int32_t tok, float lp,
                                  const struct sl_tok_out *o, bool with_top)
{
    char piece[256];
    int pl;
    json_t *e = json_object();
    json_object_set_new(e, "token", token_json_str(v, tok, piece, &pl));
    json_object_set_new(e, "logprob", json_real(lp_value(lp)));
    json_object_set_new(e, "bytes", bytes_json(piece, pl));
    if (with_top) {
        json_t *top = json_array();
        for (int32_t k = 0; o && k < o->n_top; k++)
            json_array_append_new(
                top, chat_logprob_entry(v, o->top[k].token, o->top[k].logprob, NULL, false));
        json_object_set_new(e, "top_logprobs", top);
    }
    return e;
}

static json_t *chat_logprobs(const struct sl_vocab *v, const struct sl_tok_out *t, int32_t from,
                             int32_t to)
{
    json_t *content = json_array();
    for (int32_t i = from; i < to; i++)
        json_array_append_new(content,
                              chat_logprob_entry(v, t[i].token, t[i].logprob, &t[i], true));
    json_t *o = json_object();
    json_object_set_new(o, "content", content);
    json_object_set_new(o, "refusal", json_null());
    return o;
}

/* Completions-format logprobs over prompt tokens (echo) then generated ones. */
static json_t *cmpl_logprobs(const struct sl_vocab *v, const struct sl_job *j, bool echo,
                             int32_t from, int32_t to, size_t base_off)
{
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    char piece[256];
    int pl;
    size_t off = 0;
    if (echo) {
        for (int32_t i = 0; i < j->n_prompt; i++) {
            json_array_append_new(tokens, token_json_str(v, j->prompt[i], piece, &pl));
            json_array_append_new(offs, json_integer((json_int_t)off));
            int np = sl_token_to_piece(v, j->prompt[i], piece, sizeof piece, false);
            off += np > 0 ? (size_t)np : 0;
            if (i == 0 || !j->prompt_lp) {
                json_array_append_new(lps, json_null());
                json_array_append_new(tops, json_null());
                continue;
            }
            const struct sl_tok_out *o = &j->prompt_lp[i];
            json_array_append_new(lps, json_real(lp_value(o->logprob)));
            json_t *t = json_object();
            for (int32_t k = 0; k < o->n_top; k++) {
                json_t *s = token_json_str(v, o->top[k].token, piece, &pl);
                json_object_set_new(t, json_string_value(s),
                                    json_real(lp_value(o->top[k].logprob)));
                json_decref(s);
            }
            json_array_append_new(tops, t);
        }
    }
    for (int32_t i = from; i < to; i++) {
        const struct sl_tok_out *o = &j->toks[i];
        json_array_append_new(tokens, token_json_str(v, o->token, piece, &pl));
        json_array_append_new(lps, json_real(lp_value(o->logprob)));
        json_array_append_new(offs, json_integer((json_int_t)(base_off + o->text_off)));
        json_t *t = json_object();
        for (int32_t k = 0; k < o->n_top; k++) {
            json_t *s = token_json_str(v, o->top[k].token, piece, &pl);
            json_object_set_new(t, json_string_value(s), json_real(lp_value(o->top[k].logprob)));
            json_decref(s);
        }
        json_array_append_new(tops, t);
    }
    json_t *o = json_object();
    json_object_set_new(o, "tokens", tokens);
    json_object_set_new(o, "token_logprobs", lps);
    json_object_set_new(o, "top_logprobs", tops);
    json_object_set_new(o, "text_offset", offs);
    return o;
}

static json_t *usage_json(const struct gen *g)
{
    long long prompt = 0, completion = 0, cached = 0;
    for (size_t i = 0; i < g->n_prompts; i++)
        prompt += (long long)g->n_ptoks[i];
    for (size_t i = 0; i < g->n_jobs; i++) {
        completion += g->jobs[i].n_toks;
        if (i % (size_t)g->req.n == 0) cached += g->jobs[i].n_cached;
    }
    json_t *u =
        json_pack("{s:I,s:I,s:I}", "prompt_tokens", (json_int_t)prompt, "completion_tokens",
                  (json_int_t)completion, "total_tokens", (json_int_t)(prompt + completion));
    json_object_set_new(u, "prompt_tokens_details",
                        json_pack("{s:I}", "cached_tokens", (json_int_t)cached));
    return u;
}

static json_t *envelope(const struct gen *g, const char *object)
{
    return json_pack("{s:s,s:s,s:I,s:s,s:s}", "id", g->id, "object", object, "created",
                     (json_int_t)g->created, "model", g->m->cfg->name, "system_fingerprint",
                     "sluice");
}

/* Prompt text for echo (the request's text, or the ids detokenized). */
static json_t *echo_text(const struct gen *g, size_t p)
{
    if (g->req.prompts[p].text)
        return json_text(g->req.prompts[p].text, g->req.prompts[p].text_len);
    char *s = NULL;
    size_t len = 0;
    if (sl_detokenize(g->m->model->vocab, g->ptoks[p], g->n_ptoks[p], false, &s, &len, NULL))
        return json_string("");
    json_t *j = json_text(s, len);
    free(s);
    return j;
}

static void gen_respond(struct gen *g, struct sl_http_resp *resp)
{
    const struct sl_vocab *v = g->m->model->vocab;
    bool chat = g->req.kind == SL_REQ_CHAT;
    json_t *root = envelope(g, chat ? "chat.completion" : "text_completion");
    json_t *choices = json_array();
    for (size_t i = 0; i < g->n_jobs; i++) {
        struct sl_job *j = &g->jobs[i];
        json_t *c = json_object();
        json_object_set_new(c, "index", json_integer((json_int_t)i));
        json_t *text = json_text(j->text.p ? j->text.p : "", j->text.len);
        if (chat) {
            json_t *msg =
                json_pack("{s:s,s:o,s:n}", "role", "assistant", "content", text, "refusal");
            json_object_set_new(c, "message", msg);
            json_object_set_new(c, "logprobs",
                                g->req.logprobs ? chat_logprobs(v, j->toks, 0, j->n_toks)
                                                : json_null());
        } else {
            size_t base = 0;
            if (g->req.echo) {
                json_t *e = echo_text(g, i / (size_t)g->req.n);
                base = strlen(json_string_value(e));
                char *both = malloc(base + json_string_length(text) + 1);
                if (both) {
                    memcpy(both, json_string_value(e), base);
                    memcpy(both + base, json_string_value(text), json_string_length(text) + 1);
                    json_decref(text);
                    text = json_stringn(both, base + strlen(both + base));
                    free(both);
                }
                json_decref(e);
            }
            json_object_set_new(c, "text", text);
            json_object_set_new(c, "logprobs",
                                g->req.logprobs
                                    ? cmpl_logprobs(v, j, g->req.echo, 0, j->n_toks, base)
                                    : json_null());
        }
        json_object_set_new(c, "finish_reason", json_string(finish_name(j->finish)));
        json_array_append_new(choices, c);
    }
    json_object_set_new(root, "choices", choices);
    json_object_set_new(root, "usage", usage_json(g));
    reply_json(resp, 200, root);
}

/* --- streaming ----------------------------------------------------------- */

static void stream_chunk(struct gen *g, json_t *chunk)
{
    char *s = json_dumps(chunk, JSON_COMPACT);
    json_decref(chunk);
    if (s) sl_sse_data(&g->out, s, strlen(s));
    free(s);
}

static json_t *stream_choice(const struct gen *g, size_t i, json_t *delta_or_text, json_t *logprobs,
                             const char *finish)
{
    json_t *c = json_object();
    json_object_set_new(c, "index", json_integer((json_int_t)i));
    if (g->req.kind == SL_REQ_CHAT)
        json_object_set_new(c, "delta", delta_or_text);
    else
        json_object_set_new(c, "text", delta_or_text);
    json_object_set_new(c, "logprobs", logprobs ? logprobs : json_null());
    json_object_set_new(c, "finish_reason", finish ? json_string(finish) : json_null());
    return c;
}

static json_t *stream_envelope(const struct gen *g, json_t *choice)
{
    json_t *e =
        envelope(g, g->req.kind == SL_REQ_CHAT ? "chat.completion.chunk" : "text_completion");
    json_t *a = json_array();
    if (choice) json_array_append_new(a, choice);
    json_object_set_new(e, "choices", a);
    if (g->req.include_usage) json_object_set_new(e, "usage", json_null());
    return e;
}

/* Emit what job i has that was not sent yet. */
static void stream_job(struct gen *g, size_t i)
{
    struct sl_job *j = &g->jobs[i];
    const struct sl_vocab *v = g->m->model->vocab;
    struct sl_job_progress *p = &g->seen[i];
    bool chat = g->req.kind == SL_REQ_CHAT;
    if (p->text_len > g->text_sent[i] || (g->req.logprobs && p->n_toks > g->toks_sent[i])) {
        struct sl_buf t;
        sl_buf_init(&t, 0);
        sl_sched_read_text(g->m->sched, j, g->text_sent[i], p->text_len, &t);
        json_t *text = json_text(t.p ? t.p : "", t.len);
        sl_buf_free(&t);
        json_t *lp = NULL;
        if (g->req.logprobs)
            lp = chat ? chat_logprobs(v, j->toks, g->toks_sent[i], p->n_toks)
                      : cmpl_logprobs(v, j, false, g->toks_sent[i], p->n_toks, 0);
        json_t *body = chat ? json_pack("{s:o}", "content", text) : text;
        stream_chunk(g, stream_envelope(g, stream_choice(g, i, body, lp, NULL)));
        g->text_sent[i] = p->text_len;
        g->toks_sent[i] = p->n_toks;
    }
    if (p->done && !g->fin_sent[i]) {
        g->fin_sent[i] = true;
        if (j->rc || j->finish == SL_FINISH_CANCEL) {
            struct sl_http_resp e = {0};
            jobs_error(j, 1, true, &e);
            if (e.body) sl_sse_data(&g->out, e.body, strcspn(e.body, "\n"));
            free(e.body);
            g->status = e.status ? e.status : 500;
            g->phase = 3; /* straight to [DONE] */
            return;
        }
        json_t *body = chat ? json_object() : json_string("");
        stream_chunk(g,
                     stream_envelope(g, stream_choice(g, i, body, NULL, finish_name(j->finish))));
    }
}

static long gen_stream(void *ctx, char *buf, size_t max)
{
    struct gen *g = ctx;
    for (;;) {
        if (g->out_off < g->out.len) {
            size_t n = SL_MIN(max, g->out.len - g->out_off);
            memcpy(buf, g->out.p + g->out_off, n);
            g->out_off += n;
            g->last_send_ms = sl_sched_now_ms();
            return (long)n;
        }
        g->out.len = g->out_off = 0;
        switch (g->phase) {
        case 0: /* opening: the assistant role (chat) or the echoed prompt */
            for (size_t i = 0; i < g->n_jobs; i++) {
                if (g->req.kind == SL_REQ_CHAT)
                    stream_chunk(
                        g, stream_envelope(g, stream_choice(g, i,
                                                            json_pack("{s:s,s:s}", "role",
                                                                      "assistant", "content", ""),
                                                            NULL, NULL)));
                else if (g->req.echo)
                    stream_chunk(g, stream_envelope(
                                        g, stream_choice(g, i, echo_text(g, i / (size_t)g->req.n),
                                                         NULL, NULL)));
            }
            g->phase = 1;
            continue;
        case 1: {
            bool all = true;
            for (size_t i = 0; i < g->n_jobs && g->phase == 1; i++) {
                if (g->fin_sent[i]) continue;
                sl_sched_wait(g->m->sched, &g->jobs[i], &g->seen[i], 0);
                stream_job(g, i);
                if (!g->fin_sent[i]) all = false;
            }
            if (g->phase != 1) continue;
            if (all) {
                g->phase = 2;
                continue;
            }
            if (g->out.len) continue;
            /* nothing new: wait on the first unfinished job, watching the client and the clock */
            size_t w = 0;
            while (g->fin_sent[w])
                w++;
            sl_sched_wait(g->m->sched, &g->jobs[w], &g->seen[w], 100);
            if (sl_http_peer_gone(g->fd)) {
                g->status = 499;
                return SL_HTTP_STREAM_ERROR;
            }
            double now = sl_sched_now_ms();
            if (g->deadline_ms && now > (double)g->deadline_ms && !g->timed_out) {
                g->timed_out = true;
                for (size_t k = 0; k < g->n_submitted; k++)
                    sl_sched_cancel(g->m->sched, &g->jobs[k]);
            }
            /* nothing to send for a while (queued, a long prefill, tokens
               without text): an SSE comment keeps the connection inside
               server.idle_timeout_s; clients ignore it */
            if (now - g->last_send_ms > (double)g->srv->cfg->server.idle_timeout_s * 1e3 / 3)
                sl_buf_append(&g->out, ": keep-alive\n\n", 14);
            continue;
        }
        case 2:
            if (g->req.include_usage) {
                json_t *e = stream_envelope(g, NULL);
                json_object_set_new(e, "usage", usage_json(g));
                stream_chunk(g, e);
            }
            g->phase = 3;
            continue;
        case 3:
            sl_sse_done(&g->out);
            g->phase = 4;
            continue;
        default:
            return SL_HTTP_STREAM_END;
        }
    }
}

/* A generate task on /v1/completions: its model, and each prompt put into
 * its template ("{input}" replaced). 0 or resp filled. */
static int gen_task(struct gen *g, struct sl_http_resp *resp)
{
    const struct sl_task_config *tc = sl_config_task(g->srv->cfg, g->req.task);
    if (!tc) {
        reply_err(resp, 404, "invalid_request_error", "task_not_found", "task",
                  "The task '%s' is not configured on this server.", g->req.task);
        return -1;
    }
    if (tc->kind != SL_TASK_GENERATE) {
        reply_err(resp, 400, "invalid_request_error", NULL, "task",
                  "The task '%s' is not a generate task; use /v1/%s.", g->req.task,
                  tc->kind == SL_TASK_CLASSIFY ? "classify" : "extract");
        return -1;
    }
    if (g->req.model && strcmp(g->req.model, tc->model)) {
        reply_err(resp, 400, "invalid_request_error", NULL, "model",
                  "The task '%s' runs on the model '%s', not '%s'.", g->req.task, tc->model,
                  g->req.model);
        return -1;
    }
    g->req.model = tc->model;
    if (!(g->rendered = calloc(g->req.n_prompts, sizeof *g->rendered))) goto oom;
    for (size_t i = 0; i < g->req.n_prompts; i++) {
        struct sl_req_prompt *p = &g->req.prompts[i];
        if (!p->text) {
            reply_err(resp, 400, "invalid_request_error", NULL, "prompt",
                      "A generate task takes text prompts, not token ids.");
            return -1;
        }
        struct sl_buf b;
        sl_buf_init(&b, 0);
        const char *t = tc->prompt, *hole;
        int rc = 0;
        while (!rc && (hole = strstr(t, "{input}"))) {
            rc = sl_buf_append(&b, t, (size_t)(hole - t));
            if (!rc) rc = sl_buf_append(&b, p->text, p->text_len);
            t = hole + 7;
        }
        if (!rc) rc = sl_buf_append(&b, t, strlen(t) + 1); /* with the NUL */
        if (rc) {
            sl_buf_free(&b);
            goto oom;
        }
        size_t len;
        g->rendered[i] = sl_buf_take(&b, &len);
        g->n_rendered = i + 1;
        p->text = g->rendered[i];
        p->text_len = len - 1;
    }
    return 0;
oom:
    reply_err(resp, 500, "server_error", NULL, NULL, "out of memory");
    return -1;
}

/* Any JSON object (response_format json_object), in grammar.h's format. */
static const char json_object_grammar[] =
    "root   ::= object\n"
    "object ::= \"{\" ws ( pair ( \",\" ws pair )* )? \"}\"\n"
    "pair   ::= string \":\" ws value\n"
    "value  ::= object | array | string | number | \"true\" | \"false\" | \"null\"\n"
    "array  ::= \"[\" ws ( value ( \",\" ws value )* )? \"]\"\n"
    "string ::= \"\\\"\" ( [^\"\\\\\\x00-\\x1f] | \"\\\\\" [\"\\\\/bfnrt] )* \"\\\"\"\n"
    "number ::= \"-\"? ( \"0\" | [1-9] [0-9]{0,15} ) ( \".\" [0-9]{1,16} )? ( [eE] [-+]? "
    "[0-9]{1,2} )?\n"
    "ws     ::= \" \"?\n";

/* Compile the request's response_format into g->grammar; 0 or resp filled
 * (400 naming the schema keyword the compiler refused). */
static int gen_grammar(struct gen *g, struct sl_http_resp *resp)
{
    struct sl_err err = {0};
    char *text = NULL;
    int rc = 0;
    if (g->req.response_schema) {
        struct sl_schema_opts o = sl_schema_default_opts();
        rc = sl_schema_to_grammar(g->req.response_schema, &o, &text, &err);
        if (rc) {
            reply_err(resp, rc == SL_ENOMEM ? 500 : 400, "invalid_request_error",
                      rc == SL_EUNSUPPORTED ? "unsupported_schema" : "invalid_schema",
                      "response_format.json_schema.schema", "%s", err.msg);
            return -1;
        }
    }
    const char *gt = text ? text : json_object_grammar;
    rc = sl_grammar_parse(&g->grammar, gt, strlen(gt), &err);
    free(text);
    if (rc) {
        reply_err(resp, rc == SL_ENOMEM ? 500 : 400, "invalid_request_error", "invalid_schema",
                  "response_format", "%s", err.msg);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Routes: a "model" that names a route goes through the router             */
/* ------------------------------------------------------------------------ */

static bool is_route(const struct sl_server *s, const char *name)
{
    return s->router && name && sl_router_has_route(s->router, name);
}

static json_t *num_or_null(double v)
{
    return v < 0 || !isfinite(v) ? json_null() : json_real(v);
}

/* A string (invalid UTF-8 replaced) or null. */
static json_t *jstr(const char *t)
{
    return t ? json_text(t, strlen(t)) : json_null();
}

/* The `sluice` object of a routed answer: what happened and what it cost.
 * Built field by field so no odd byte in a note or model name loses it. */
static json_t *sluice_json(const struct sl_route_result *res, const char *id, const char *route)
{
    json_t *stages = json_array();
    for (size_t i = 0; i < res->n_stages; i++) {
        const struct sl_route_stage *st = &res->stages[i];
        json_t *o = json_object();
        json_object_set_new(o, "backend", jstr(st->backend));
        json_object_set_new(o, "called", json_boolean(st->called));
        json_object_set_new(o, "accepted", json_boolean(st->accepted));
        json_object_set_new(o, "status", json_string(sl_backend_status_name(st->status)));
        if (st->http_status) json_object_set_new(o, "http_status", json_integer(st->http_status));
        json_object_set_new(o, "confidence", num_or_null(st->confidence));
        json_object_set_new(o, "threshold", num_or_null(st->threshold));
        json_object_set_new(o, "latency_ms", json_real(st->latency_ms));
        json_object_set_new(o, "cost", json_real(st->cost));
        json_object_set_new(o, "tokens_in", json_integer((json_int_t)st->tokens_in));
        json_object_set_new(o, "tokens_out", json_integer((json_int_t)st->tokens_out));
        json_object_set_new(o, "note", jstr(st->note));
        json_array_append_new(stages, o);
    }
    json_t *o = json_object(), *pii = json_object();
    json_object_set_new(o, "request_id", jstr(id));
    json_object_set_new(o, "route", jstr(route));
    json_object_set_new(o, "decision", jstr(res->decision ? res->decision : "failed"));
    json_object_set_new(o, "reason", jstr(res->reason));
    json_object_set_new(o, "escalated", json_boolean(res->escalated));
    json_object_set_new(o, "backend", jstr(res->backend));
    json_object_set_new(o, "model", jstr(res->model));
    json_object_set_new(o, "confidence", num_or_null(res->confidence));
    json_object_set_new(o, "cost", json_real(res->cost));
    json_object_set_new(o, "latency_ms", json_real(res->latency_ms));
    json_object_set_new(pii, "spans", json_integer((json_int_t)res->pii_spans));
    json_object_set_new(pii, "action", jstr(res->pii_action ? res->pii_action : "none"));
    json_object_set_new(o, "pii", pii);
    json_object_set_new(o, "stages", stages);
    return o;
}

static void route_headers(struct sl_http_resp *resp, const struct sl_route_result *res,
                          const char *id, const char *route)
{
    sl_http_header(resp, "x-sluice-request-id", "%s", id);
    sl_http_header(resp, "x-sluice-route", "%s", route);
    sl_http_header(resp, "x-sluice-backend", "%s", res->backend);
    sl_http_header(resp, "x-sluice-decision", "%s", res->decision ? res->decision : "failed");
    if (res->confidence >= 0)
        sl_http_header(resp, "x-sluice-confidence", "%.4f", res->confidence);
    else
        sl_http_header(resp, "x-sluice-confidence", "none");
    sl_http_header(resp, "x-sluice-cost", "%.8f", res->cost);
    sl_http_header(resp, "x-sluice-latency-ms", "%.2f", res->latency_ms);
}

/* Count one routed request for /metrics. */
static void route_count(struct sl_server *s, const char *route, const struct sl_route_result *res)
{
    pthread_mutex_lock(&s->route_mu);
    for (size_t i = 0; i < s->cfg->n_routes; i++) {
        struct sl_route_stats *st = &s->route_stats[i];
        if (strcmp(st->name, route)) continue;
        st->requests++;
        if (res->escalated) st->escalations++;
        if (res->decision && !strcmp(res->decision, "fallback")) st->fallbacks++;
        if (res->status != 200) st->failures++;
        st->cost += res->cost;
        break;
    }
    pthread_mutex_unlock(&s->route_mu);
}

/* The error body of a failed routed request: OpenAI's shape plus `sluice`. */
static json_t *route_error_json(const struct sl_route_result *res, const char *id,
                                const char *route)
{
    int st = res->status;
    const char *type = st == 429               ? "rate_limit_error"
                       : st >= 400 && st < 500 ? "invalid_request_error"
                                               : "server_error";
    const char *code = st == 404 ? "not_found" : st == 502 ? "upstream_error" : NULL;
    json_t *e = json_object(), *o = json_object();
    json_object_set_new(e, "message", jstr(res->error ? res->error : "the route failed"));
    json_object_set_new(e, "type", json_string(type));
    json_object_set_new(e, "param", json_null());
    json_object_set_new(e, "code", jstr(code));
    json_object_set_new(o, "error", e);
    json_object_set_new(o, "sluice", sluice_json(res, id, route));
    return o;
}

/* Request metadata (the OpenAI "metadata" object of strings) for rules. */
static size_t route_meta(const json_t *root, struct sl_route_meta *meta, size_t max)
{
    const json_t *md = root ? json_object_get(root, "metadata") : NULL;
    const char *k;
    json_t *v;
    size_t n = 0;
    if (!json_is_object(md)) return 0;
    json_object_foreach((json_t *)md, k, v)
    {
        if (n < max && json_is_string(v))
            meta[n++] = (struct sl_route_meta){k, json_string_value(v)};
    }
    return n;
}

/* A routed request's should_stop for a client on socket *user: gone when
 * the socket says so. */
static int peer_gone_stop(void *user)
{
    return sl_http_peer_gone(*(const int *)user);
}

/* Classify/extract through a route: one routed request per input. */
static void handle_routed_task(struct sl_server *s, const struct sl_key_config *key,
                               const struct sl_req *r, int fd, struct sl_http_resp *resp)
{
    bool classify = r->kind == SL_REQ_CLASSIFY;
    const char *route = r->model;
    if (!key_allows(key, route)) {
        reply_err(resp, 403, "permission_error", "model_not_allowed", "model",
                  "This API key may not use the route '%s'.", route);
        return;
    }
    const struct sl_route_config *rc_ = sl_config_route(s->cfg, route);
    const char *task = r->task ? r->task : rc_ ? rc_->task : NULL;
    const struct sl_task_config *tc = task ? sl_config_task(s->cfg, task) : NULL;
    if (!task) {
        reply_err(resp, 400, "invalid_request_error", NULL, "task",
                  "The route '%s' needs a configured \"task\" (it has no default task).", route);
        return;
    }
    if (!tc) {
        reply_err(resp, 404, "invalid_request_error", "task_not_found", "task",
                  "The task '%s' is not configured on this server.", task);
        return;
    }
    if (tc->kind != (classify ? SL_TASK_CLASSIFY : SL_TASK_EXTRACT)) {
        reply_err(resp, 400, "invalid_request_error", NULL, "task",
                  "The task '%s' is not a %s task.", task, classify ? "classify" : "extract");
        return;
    }
    if (r->labels || r->schema) {
        reply_err(resp, 400, "invalid_request_error", NULL, classify ? "labels" : "schema",
                  "A route runs configured tasks only; name one with \"task\".");
        return;
    }
    struct sl_route_meta meta[SL_CONFIG_MAX_META];
    size_t n_meta = route_meta(r->root, meta, SL_CONFIG_MAX_META);
    json_t *data = json_array();
    struct sl_buf ids;
    sl_buf_init(&ids, 0);
    long long n_in = 0, n_out = 0;
    for (size_t i = 0; i < r->n_prompts; i++) {
        char id[48];
        struct sl_err err = {0};
        struct sl_route_result res = {0};
        make_id(s, classify ? "cls" : "ext", id, sizeof id);
        struct sl_route_req rr = {
            .id = id,
            .route = route,
            .kind = classify ? SL_RREQ_CLASSIFY : SL_RREQ_EXTRACT,
            .task = task,
            .input = r->prompts[i].text,
            .api_key = key ? key->name : NULL,
            .meta = meta,
            .n_meta = n_meta,
            .should_stop = peer_gone_stop,
            .stop_user = &fd,
        };
        int rc = sl_router_route(s->router, &rr, &res, &err);
        if (rc && !res.status) res.status = rc == SL_ENOMEM ? 500 : 400;
        if (rc && !res.error) res.error = strdup(err.msg);
        route_count(s, route, &res);
        if (ids.len) sl_buf_append(&ids, ",", 1);
        sl_buf_append(&ids, id, strlen(id));
        if (res.status != 200) {
            json_decref(data);
            reply_json(resp, res.status, route_error_json(&res, id, route));
            route_headers(resp, &res, id, route);
            sl_route_result_free(&res);
            sl_buf_free(&ids);
            return;
        }
        json_t *d = json_pack("{s:I}", "index", (json_int_t)i);
        if (classify) {
            const char *lb = res.content ? res.content : "";
            json_object_set_new(d, "label", json_text(lb, strlen(lb)));
            if (res.probs && res.n_probs == tc->n_labels) {
                json_t *probs = json_object();
                for (size_t k = 0; k < res.n_probs; k++)
                    json_object_set_new(probs, tc->labels[k], json_real(res.probs[k]));
                json_object_set_new(d, "probs", probs);
            }
        } else {
            const char *txt = res.content ? res.content : "null";
            json_t *out = json_loads(txt, JSON_DECODE_ANY, NULL);
            json_object_set_new(d, "output", out ? out : json_null());
            json_object_set_new(d, "output_text", json_text(txt, strlen(txt)));
        }
        json_object_set_new(d, "confidence", num_or_null(res.confidence));
        json_object_set_new(d, "sluice", sluice_json(&res, id, route));
        json_array_append_new(data, d);
        n_in += res.tokens_in > 0 ? res.tokens_in : 0;
        n_out += res.tokens_out > 0 ? res.tokens_out : 0;
        if (r->n_prompts == 1) route_headers(resp, &res, id, route);
        sl_route_result_free(&res);
    }
    json_t *body = json_pack("{s:s,s:o,s:s,s:s,s:{s:I,s:I,s:I}}", "object", "list", "data", data,
                             "model", route, "task", task, "usage", "prompt_tokens",
                             (json_int_t)n_in, "completion_tokens", (json_int_t)n_out,
                             "total_tokens", (json_int_t)(n_in + n_out));
    if (body && r->n_prompts == 1)
        json_object_set(
            body, "sluice",
            json_object_get(json_array_get(json_object_get(body, "data"), 0), "sluice"));
    reply_json(resp, 200, body);
    if (r->n_prompts > 1)
        sl_http_header(resp, "x-sluice-request-id", "%.*s", (int)SL_MIN(ids.len, 200), ids.p);
    sl_buf_free(&ids);
}

/* --- chat through a route ------------------------------------------------ */

struct rchat {
    struct sl_server *s;
    struct sl_req req; /* owned: the messages point into it */
    const char *route;
    char id[48];
    long long created;
    double t0;
    int fd;
    struct sl_backend_req breq;
    struct sl_route_meta meta[SL_CONFIG_MAX_META];
    struct sl_route_req rr;
    struct sl_route_result res;
    int rc;
    struct sl_err err;
    /* streaming: the routing thread appends SSE bytes to q */
    pthread_t th;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct sl_buf q;
    size_t q_off;
    bool done;
    atomic_bool cancel;
    double last_send_ms;
    int status;
};

static void rchat_free(struct rchat *c)
{
    if (!c) return;
    if (c->started) {
        atomic_store(&c->cancel, true);
        pthread_join(c->th, NULL);
    }
    sl_route_result_free(&c->res);
    sl_req_free(&c->req);
    sl_buf_free(&c->q);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

static void rchat_route(struct rchat *c)
{
    memset(&c->err, 0, sizeof c->err);
    c->rc = sl_router_route(c->s->router, &c->rr, &c->res, &c->err);
    if (c->rc && !c->res.status) c->res.status = c->rc == SL_ENOMEM ? 500 : 400;
    if (c->rc && !c->res.error) c->res.error = strdup(c->err.msg);
    route_count(c->s, c->route, &c->res);
}

static json_t *rchat_usage(const struct rchat *c)
{
    long long in = c->res.tokens_in > 0 ? c->res.tokens_in : 0;
    long long out = c->res.tokens_out > 0 ? c->res.tokens_out : 0;
    return json_pack("{s:I,s:I,s:I}", "prompt_tokens", (json_int_t)in, "completion_tokens",
                     (json_int_t)out, "total_tokens", (json_int_t)(in + out));
}

static json_t *rchat_chunk(const struct rchat *c, json_t *delta, const char *finish)
{
    return json_pack("{s:s,s:s,s:I,s:s,s:s,s:[{s:i,s:o,s:n,s:o}]}", "id", c->id, "object",
                     "chat.completion.chunk", "created", (json_int_t)c->created, "model", c->route,
                     "system_fingerprint", "sluice", "choices", "index", 0, "delta", delta,
                     "logprobs", "finish_reason", finish ? json_string(finish) : json_null());
}

/* Append one SSE event (takes obj); caller holds c->mu. */
static void rchat_event(struct rchat *c, json_t *obj)
{
    char *t = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    if (obj) json_decref(obj);
    if (t) sl_sse_data(&c->q, t, strlen(t));
    free(t);
    pthread_cond_signal(&c->cv);
}

/* The routed chat's should_stop: the stream's reader saw the client go
 * (cancel), or, answering in one piece, the socket says so. */
static int rchat_should_stop(void *user)
{
    struct rchat *c = user;
    return atomic_load(&c->cancel) || (!c->req.stream && sl_http_peer_gone(c->fd));
}

static int rchat_on_chunk(void *user, const struct sl_backend_chunk *ch)
{
    struct rchat *c = user;
    if (atomic_load(&c->cancel)) return 1;
    if (!ch->delta_len) return 0;
    json_t *d = json_object();
    json_object_set_new(d, "content", json_text(ch->delta, ch->delta_len));
    pthread_mutex_lock(&c->mu);
    rchat_event(c, rchat_chunk(c, d, NULL));
    pthread_mutex_unlock(&c->mu);
    return 0;
}

static void *rchat_thread(void *arg)
{
    struct rchat *c = arg;
    rchat_route(c);
    pthread_mutex_lock(&c->mu);
    if (c->res.status == 200) {
        json_t *last =
            rchat_chunk(c, json_object(), c->res.finish_reason ? c->res.finish_reason : "stop");
        if (last) json_object_set_new(last, "sluice", sluice_json(&c->res, c->id, c->route));
        rchat_event(c, last);
        if (c->req.include_usage) {
            json_t *u =
                json_pack("{s:s,s:s,s:I,s:s,s:[]}", "id", c->id, "object", "chat.completion.chunk",
                          "created", (json_int_t)c->created, "model", c->route, "choices");
            if (u) json_object_set_new(u, "usage", rchat_usage(c));
            rchat_event(c, u);
        }
    } else {
        rchat_event(c, route_error_json(&c->res, c->id, c->route));
    }
    c->status = c->res.status;
    sl_sse_done(&c->q);
    c->done = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static long rchat_stream(void *ctx, char *buf, size_t max)
{
    struct rchat *c = ctx;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        if (c->q_off < c->q.len) {
            size_t n = SL_MIN(max, c->q.len - c->q_off);
            memcpy(buf, c->q.p + c->q_off, n);
            c->q_off += n;
            if (c->q_off == c->q.len) c->q.len = c->q_off = 0;
            c->last_send_ms = sl_sched_now_ms();
            pthread_mutex_unlock(&c->mu);
            return (long)n;
        }
        if (c->done) {
            pthread_mutex_unlock(&c->mu);
            return SL_HTTP_STREAM_END;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&c->cv, &c->mu, &ts);
        if (c->q_off < c->q.len || c->done) continue;
        if (sl_http_peer_gone(c->fd)) {
            atomic_store(&c->cancel, true);
            c->status = 499;
            pthread_mutex_unlock(&c->mu);
            return SL_HTTP_STREAM_ERROR;
        }
        /* nothing yet (an earlier tier is still thinking): a comment keeps
           the connection inside server.idle_timeout_s */
        if (sl_sched_now_ms() - c->last_send_ms >
            (double)c->s->cfg->server.idle_timeout_s * 1e3 / 3)
            sl_buf_append(&c->q, ": keep-alive\n\n", 14);
    }
}

static void rchat_stream_free(void *ctx)
{
    struct rchat *c = ctx;
    struct sl_server *s = c->s;
    double t0 = c->t0;
    atomic_store(&c->cancel, true);
    if (c->started) pthread_join(c->th, NULL);
    c->started = false;
    int status = c->status ? c->status : 200;
    rchat_free(c);
    sl_metrics_request(&s->metrics, "/v1/chat/completions", status, (sl_sched_now_ms() - t0) / 1e3);
}

/* Chat completions whose model is a route. Takes over g->req. */
static void handle_routed_chat(struct gen *g, const struct sl_key_config *key,
                               struct sl_http_resp *resp)
{
    struct sl_server *s = g->srv;
    const char *route = g->req.model;
    if (!key_allows(key, route)) {
        reply_err(resp, 403, "permission_error", "model_not_allowed", "model",
                  "This API key may not use the route '%s'.", route);
        return;
    }
    if (g->req.n > 1) {
        reply_err(resp, 400, "invalid_request_error", NULL, "n",
                  "The route '%s' answers one choice per request (n = 1); send n > 1 to a model.",
                  route);
        return;
    }
    if (g->req.response_schema || g->req.json_object) {
        reply_err(resp, 400, "invalid_request_error", NULL, "response_format",
                  "The route '%s' cannot enforce response_format; use an extract task "
                  "(POST /v1/extract with the route as model).",
                  route);
        return;
    }
    struct rchat *c = calloc(1, sizeof *c);
    if (!c) {
        reply_err(resp, 500, "server_error", NULL, NULL, "out of memory");
        return;
    }
    c->s = s;
    c->req = g->req;
    memset(&g->req, 0, sizeof g->req); /* c owns it now */
    c->route = c->req.model;
    memcpy(c->id, g->id, sizeof c->id);
    c->created = g->created;
    c->t0 = g->t0;
    c->fd = g->fd;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    sl_buf_init(&c->q, 0);
    atomic_init(&c->cancel, false);
    sl_backend_req_init(&c->breq);
    c->breq.msgs = c->req.msgs;
    c->breq.n_msgs = c->req.n_msgs;
    c->breq.max_tokens = (int)SL_MIN(c->req.max_tokens, INT32_MAX);
    c->breq.temperature = c->req.temperature;
    c->breq.top_p = c->req.top_p;
    c->breq.seed = c->req.has_seed ? (long long)(c->req.seed & INT64_MAX) : -1;
    for (size_t i = 0; i < c->req.n_stop && i < SL_BACKEND_MAX_STOP; i++)
        c->breq.stop[i] = c->req.stop[i];
    const json_t *u = json_object_get(c->req.root, "user");
    if (json_is_string(u)) c->breq.user = json_string_value(u);
    const struct sl_route_config *rcfg = sl_config_route(s->cfg, route);
    c->rr = (struct sl_route_req){
        .id = c->id,
        .route = route,
        .kind = SL_RREQ_CHAT,
        .task = rcfg ? rcfg->task : NULL,
        .chat = &c->breq,
        .api_key = key ? key->name : NULL,
        .meta = c->meta,
        .n_meta = route_meta(c->req.root, c->meta, SL_CONFIG_MAX_META),
        .should_stop = rchat_should_stop,
        .stop_user = c,
    };
    if (c->req.stream) {
        c->rr.on_chunk = rchat_on_chunk;
        c->rr.on_chunk_user = c;
        json_t *d = json_pack("{s:s,s:s}", "role", "assistant", "content", "");
        rchat_event(c, rchat_chunk(c, d, NULL));
        if (pthread_create(&c->th, NULL, rchat_thread, c)) {
            rchat_free(c);
            reply_err(resp, 500, "server_error", NULL, NULL, "cannot start a thread");
            return;
        }
        c->started = true;
        c->last_send_ms = sl_sched_now_ms();
        resp->status = 200;
        resp->content_type = "text/event-stream";
        resp->stream = rchat_stream;
        resp->stream_ctx = c;
        resp->stream_free = rchat_stream_free;
        sl_http_header(resp, "x-sluice-request-id", "%s", c->id);
        sl_http_header(resp, "x-sluice-route", "%s", route);
        return; /* c belongs to the stream */
    }
    rchat_route(c);
    if (c->res.status != 200) {
        reply_json(resp, c->res.status, route_error_json(&c->res, c->id, route));
    } else {
        const char *txt = c->res.content ? c->res.content : "";
        json_t *msg = json_pack("{s:s,s:o,s:n}", "role", "assistant", "content",
                                json_text(txt, strlen(txt)), "refusal");
        json_t *body = json_pack("{s:s,s:s,s:I,s:s,s:s,s:[{s:i,s:o,s:n,s:s}],s:o,s:o}", "id", c->id,
                                 "object", "chat.completion", "created", (json_int_t)c->created,
                                 "model", route, "system_fingerprint", "sluice", "choices", "index",
                                 0, "message", msg, "logprobs", "finish_reason",
                                 c->res.finish_reason ? c->res.finish_reason : "stop", "usage",
                                 rchat_usage(c), "sluice", sluice_json(&c->res, c->id, route));
        reply_json(resp, 200, body);
    }
    route_headers(resp, &c->res, c->id, route);
    rchat_free(c);
}

/* ------------------------------------------------------------------------ */
/* The request log for requests straight to a model                         */
/* ------------------------------------------------------------------------ */

/* A local backend of the config on this model with a machine price, or NULL. */
static const struct sl_backend_config *infra_backend(const struct sl_config *cfg, const char *model)
{
    for (size_t i = 0; i < cfg->n_backends; i++) {
        const struct sl_backend_config *b = &cfg->backends[i];
        if (b->kind == SL_BACKEND_KIND_LOCAL && b->model && !strcmp(b->model, model) &&
            b->infra_per_hour > 0)
            return b;
    }
    return NULL;
}

static void log_direct(struct sl_server *s, const char *id, const char *model, const char *input,
                       const char *output, int64_t tokens_in, int64_t tokens_out, double confidence,
                       double machine_ms, double t0, int status)
{
    if (!s->store) return;
    struct sl_err err = {0};
    const struct sl_backend_config *bc = infra_backend(s->cfg, model);
    double ms = sl_sched_now_ms() - t0;
    double cost = bc ? machine_ms * bc->infra_per_hour / 3.6e6 : 0;
    struct sl_store_request row = {
        .id = id,
        .route = model,
        .tiers = model,
        .decision = "direct",
        .reason = "the model was asked for by name",
        .confidence = confidence,
        .model = model,
        .backend = bc ? bc->name : model,
        .tokens_in = tokens_in,
        .tokens_out = tokens_out,
        .latency_ms = ms,
        .n_stages = 1,
        .cost = cost,
        .input = input,
        .output = output,
        .status = status,
    };
    row.stages[0] = (struct sl_store_stage){model, ms};
    int rc = s->store->iface->log_request(s->store->ctx, &row, &err);
    if (!rc && bc) {
        struct sl_store_ledger l = {.request_id = id,
                                    .route = model,
                                    .backend = bc->name,
                                    .model = model,
                                    .kind = "infra",
                                    .tokens_in = tokens_in,
                                    .tokens_out = tokens_out,
                                    .machine_ms = machine_ms,
                                    .cost = cost};
        rc = s->store->iface->ledger_add(s->store->ctx, &l, &err);
    }
    if (rc) fprintf(stderr, "sluice: request log: %s\n", err.msg);
}

/* A generation request's row: its messages or prompts, choice 0's text. */
static void log_gen(struct gen *g, int status)
{
    struct sl_server *s = g->srv;
    if (!s->store || !g->m) return;
    struct sl_buf in, out;
    sl_buf_init(&in, 0);
    sl_buf_init(&out, 0);
    if (g->req.kind == SL_REQ_CHAT) {
        for (size_t i = 0; i < g->req.n_msgs; i++) {
            if (i) sl_buf_append(&in, "\n", 1);
            sl_buf_appendf(&in, "%s: %s", g->req.msgs[i].role, g->req.msgs[i].content);
        }
    } else {
        for (size_t i = 0; i < g->req.n_prompts; i++) {
            if (i) sl_buf_append(&in, "\n", 1);
            if (g->req.prompts[i].text)
                sl_buf_append(&in, g->req.prompts[i].text, g->req.prompts[i].text_len);
        }
    }
    long long prompt = 0, completion = 0;
    double machine = 0;
    for (size_t i = 0; i < g->n_prompts; i++)
        prompt += (long long)g->n_ptoks[i];
    for (size_t i = 0; i < g->n_jobs; i++) {
        completion += g->jobs[i].n_toks;
        if (g->jobs[i].t_start_ms > 0 && g->jobs[i].t_done_ms >= g->jobs[i].t_start_ms)
            machine += g->jobs[i].t_done_ms - g->jobs[i].t_start_ms;
    }
    if (g->n_jobs && g->jobs[0].text.p) sl_buf_append(&out, g->jobs[0].text.p, g->jobs[0].text.len);
    sl_buf_append(&in, "", 1);
    sl_buf_append(&out, "", 1);
    log_direct(s, g->id, g->m->cfg->name, in.p, out.p, prompt, completion, -1, machine, g->t0,
               status);
    sl_buf_free(&in);
    sl_buf_free(&out);
}

/* ------------------------------------------------------------------------ */
/* POST /v1/feedback                                                        */
/* ------------------------------------------------------------------------ */

static void handle_feedback(struct sl_server *s, const struct sl_http_req *req,
                            struct sl_http_resp *resp)
{
    struct sl_err err = {0};
    if (!s->store) {
        reply_err(resp, 503, "server_error", "no_request_log", NULL,
                  "This server keeps no request log (set log.db in its config).");
        return;
    }
    json_error_t je;
    json_t *root = json_loadb(req->body, req->body_len, 0, &je);
    const json_t *id = json_object_get(root, "request_id"), *ans = json_object_get(root, "answer");
    char *text = NULL;
    if (!json_is_object(root)) {
        reply_err(resp, 400, "invalid_request_error", NULL, NULL,
                  "The body must be a JSON object {\"request_id\": ..., \"answer\": ...}.");
    } else if (!json_is_string(id) || !json_string_length(id) ||
               json_string_length(id) > SL_STORE_ID_MAX) {
        reply_err(resp, 400, "invalid_request_error", NULL, "request_id",
                  "'request_id' must be a non-empty string of at most %d bytes (the "
                  "x-sluice-request-id of the answer).",
                  SL_STORE_ID_MAX);
    } else if (!ans || json_is_null(ans)) {
        reply_err(resp, 400, "invalid_request_error", NULL, "answer",
                  "'answer' is required: the true answer (a string, or any JSON value).");
    } else if (!(text = json_is_string(ans) ? strdup(json_string_value(ans))
                                            : json_dumps(ans, JSON_COMPACT | JSON_ENCODE_ANY))) {
        reply_err(resp, 500, "server_error", NULL, NULL, "out of memory");
    } else {
        int rc = s->store->iface->feedback(s->store->ctx, json_string_value(id), text, &err);
        if (rc == SL_ENOTFOUND)
            reply_err(resp, 404, "invalid_request_error", "request_not_found", "request_id",
                      "No request '%s' in the request log.", json_string_value(id));
        else if (rc)
            reply_err(resp, 500, "server_error", NULL, NULL, "%s", err.msg);
        else
            reply_json(resp, 200,
                       json_pack("{s:s,s:s,s:b}", "object", "feedback", "request_id",
                                 json_string_value(id), "recorded", 1));
    }
    free(text);
    if (root) json_decref(root);
}

static void handle_generate(struct sl_server *s, const struct sl_http_req *req,
                            const struct sl_key_config *key, enum sl_req_kind kind,
                            const char *route, double t0, struct sl_http_resp *resp)
{
    struct sl_err err = {0};
    struct gen *g = calloc(1, sizeof *g);
    if (!g) {
        reply_err(resp, 500, "server_error", NULL, NULL, "out of memory");
        return;
    }
    g->srv = s;
    g->route = route;
    g->t0 = t0;
    g->fd = req->fd;
    g->created = (long long)time(NULL);
    g->status = 200;
    sl_buf_init(&g->out, 0);
    make_id(s, kind == SL_REQ_CHAT ? "chatcmpl" : "cmpl", g->id, sizeof g->id);
    g->deadline_ms = (int64_t)(t0 + (double)s->cfg->server.request_timeout_s * 1e3);
    struct sl_req_limits lim = {s->cfg->limits.max_n, s->cfg->limits.max_n, NULL, NULL};
    if (sl_req_parse(&g->req, kind, req->body, req->body_len, &lim, &err)) {
        reply_err(resp, err.code == SL_ENOMEM ? 500 : 400, "invalid_request_error", NULL,
                  g->req.param, "%s", err.msg);
        goto done; /* bad request */
    }
    if (is_route(s, g->req.model)) {
        if (kind == SL_REQ_CHAT)
            handle_routed_chat(g, key, resp);
        else
            reply_err(resp, 400, "invalid_request_error", NULL, "model",
                      "'%s' is a route; routes serve /v1/chat/completions, /v1/classify and "
                      "/v1/extract, not /v1/completions.",
                      g->req.model);
        goto done; /* a route answers */
    }
    if (g->req.task && gen_task(g, resp)) goto done;                /* unknown task, bad prompt */
    if (!(g->m = model_for(s, key, g->req.model, resp))) goto done; /* unknown or forbidden model */
    if ((g->req.response_schema || g->req.json_object) && gen_grammar(g, resp))
        goto done;                                                  /* bad schema */
    if (gen_tokenize(g, resp) || gen_make_jobs(g, resp)) goto done; /* too long, bad ids */
    if (submit_all(g->m->sched, g->jobs, g->n_jobs, &g->n_submitted, resp))
        goto done; /* queue full */
    if (g->req.stream) {
        g->last_send_ms = sl_sched_now_ms();
        resp->status = 200;
        resp->content_type = "text/event-stream";
        resp->stream = gen_stream;
        resp->stream_ctx = g;
        resp->stream_free = gen_stream_free;
        if (s->store) sl_http_header(resp, "x-sluice-request-id", "%s", g->id);
        return; /* g now belongs to the stream */
    }
    if (!wait_all(g->m->sched, g->jobs, g->seen, g->n_jobs, req->fd, g->deadline_ms,
                  &g->timed_out)) {
        reply_err(resp, 499, "invalid_request_error", NULL, NULL, "client closed the connection");
        goto done; /* client gone */
    }
    if (jobs_error(g->jobs, g->n_jobs, g->timed_out, resp)) goto done; /* timeout, engine error */
    gen_respond(g, resp);
    if (s->store) {
        log_gen(g, resp->status);
        sl_http_header(resp, "x-sluice-request-id", "%s", g->id);
    }
done:
    gen_free(g);
}

/* ------------------------------------------------------------------------ */
/* Embeddings                                                               */
/* ------------------------------------------------------------------------ */

static char *base64_floats(const float *x, int32_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t len = (size_t)n * 4, o = 0;
    const unsigned char *p = (const unsigned char *)x; /* little-endian float32, as OpenAI sends */
    char *s = malloc((len + 2) / 3 * 4 + 1);
    if (!s) return NULL;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < len ? p[i + 2] : 0);
        s[o++] = tbl[v >> 18 & 63];
        s[o++] = tbl[v >> 12 & 63];
        s[o++] = i + 1 < len ? tbl[v >> 6 & 63] : '=';
        s[o++] = i + 2 < len ? tbl[v & 63] : '=';
    }
    s[o] = 0;
    return s;
}

static void handle_embeddings(struct sl_server *s, const struct sl_http_req *req,
                              const struct sl_key_config *key, struct sl_http_resp *resp)
{
    struct sl_err err = {0};
    struct sl_req r = {0};
    struct sl_served_model *m = NULL;
    struct sl_job *jobs = NULL;
    struct sl_job_progress *seen = NULL;
    int32_t **toks = NULL;
    size_t n = 0, n_init = 0, n_sub = 0;
    bool timed_out = false;
    double t0 = sl_sched_now_ms();
    struct sl_req_limits lim = {s->cfg->limits.max_n, s->cfg->limits.max_embedding_inputs, NULL,
                                NULL};
    if (sl_req_parse(&r, SL_REQ_EMBEDDING, req->body, req->body_len, &lim, &err)) {
        reply_err(resp, err.code == SL_ENOMEM ? 500 : 400, "invalid_request_error", NULL, r.param,
                  "%s", err.msg);
        goto done; /* bad request */
    }
    if (!(m = model_for(s, key, r.model, resp))) goto done; /* unknown or forbidden model */
    if (m->cfg->pooling == SL_POOLING_NONE) {
        reply_err(resp, 400, "invalid_request_error", "embeddings_disabled", "model",
                  "The model '%s' does not serve embeddings (set models.%s.pooling).", r.model,
                  r.model);
        goto done;
    }
    n = r.n_prompts;
    jobs = calloc(n, sizeof *jobs);
    seen = calloc(n, sizeof *seen);
    toks = calloc(n, sizeof *toks);
    if (!jobs || !seen || !toks) {
        reply_err(resp, 500, "server_error", NULL, NULL, "out of memory");
        goto done; /* allocation failure */
    }
    const struct sl_vocab *v = m->model->vocab;
    int32_t limit = sl_sched_params(m->sched)->embd_ctx;
    for (size_t i = 0; i < n; i++) {
        size_t nt = 0;
        if (r.prompts[i].ids) {
            nt = r.prompts[i].n_ids;
            for (size_t k = 0; k < nt; k++)
                if (r.prompts[i].ids[k] >= sl_vocab_n_tokens(v)) {
                    reply_err(resp, 400, "invalid_request_error", NULL, "input",
                              "token id %d is out of range", r.prompts[i].ids[k]);
                    goto done; /* bad ids */
                }
            if (!(toks[i] = malloc(nt * sizeof *toks[i]))) {
                reply_err(resp, 500, "server_error", NULL, NULL, "out of memory");
                goto done; /* allocation failure */
            }
            memcpy(toks[i], r.prompts[i].ids, nt * sizeof *toks[i]);
        } else if (sl_tokenize(v, r.prompts[i].text, r.prompts[i].text_len, true, false, &toks[i],
                               &nt, &err)) {
            reply_err(resp, 400, "invalid_request_error", NULL, "input", "%s", err.msg);
            goto done; /* untokenizable */
        }
        if (nt == 0 || (int64_t)nt > limit) {
            reply_err(resp, 400, "invalid_request_error", nt ? "context_length_exceeded" : NULL,
                      "input", "input %zu has %zu tokens; this model embeds 1 to %d.", i, nt,
                      limit);
            goto done; /* too long */
        }
        jobs[i].prompt = toks[i];
        jobs[i].n_prompt = (int32_t)nt;
        jobs[i].embed = true;
        jobs[i].deadline_ms = (int64_t)(t0 + (double)s->cfg->server.request_timeout_s * 1e3);
        if (sl_job_init(&jobs[i], &err)) {
            reply_err(resp, 500, "server_error", NULL, NULL, "%s", err.msg);
            goto done; /* allocation failure */
        }
        n_init = i + 1;
    }
    if (submit_all(m->sched, jobs, n, &n_sub, resp)) goto done; /* queue full */
    if (!wait_all(m->sched, jobs, seen, n, req->fd, jobs[0].deadline_ms, &timed_out)) {
        reply_err(resp, 499, "invalid_request_error", NULL, NULL, "client closed the connection");
        goto done; /* client gone */
    }
    if (jobs_error(jobs, n, timed_out, resp)) goto done;
    json_t *data = json_array();
    long long n_tok = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_pack("{s:s,s:I}", "object", "embedding", "index", (json_int_t)i);
        if (r.base64) {
            char *b = base64_floats(jobs[i].embd, jobs[i].n_embd);
            json_object_set_new(e, "embedding", b ? json_string(b) : json_null());
            free(b);
        } else {
            json_t *a = json_array();
            for (int32_t k = 0; k < jobs[i].n_embd; k++)
                json_array_append_new(a, json_real(jobs[i].embd[k]));
            json_object_set_new(e, "embedding", a);
        }
        json_array_append_new(data, e);
        n_tok += jobs[i].n_prompt;
    }
    reply_json(resp, 200,
               json_pack("{s:s,s:o,s:s,s:{s:I,s:I}}", "object", "list", "data", data, "model",
                         r.model, "usage", "prompt_tokens", (json_int_t)n_tok, "total_tokens",
                         (json_int_t)n_tok));
done:
    for (size_t i = 0; i < n_sub; i++) {
        struct sl_job_progress p = {0};
        sl_sched_cancel(m->sched, &jobs[i]);
        while (!p.done)
            sl_sched_wait(m->sched, &jobs[i], &p, 1000);
    }
    for (size_t i = 0; i < n_init; i++)
        sl_job_free(&jobs[i]);
    for (size_t i = 0; toks && i < n; i++)
        free(toks[i]);
    free(toks);
    free(jobs);
    free(seen);
    sl_req_free(&r);
}

/* ------------------------------------------------------------------------ */
/* Tasks: /v1/classify, /v1/extract                                         */
/* ------------------------------------------------------------------------ */

static json_t *classify_json(const struct sl_task_job *t, size_t i)
{
    const struct sl_classify_result *r = &t->cres[i];
    json_t *probs = json_object();
    for (size_t k = 0; k < t->ct.n_labels; k++)
        json_object_set_new(probs, t->ct.labels[k], json_real(r->probs[k]));
    return json_pack("{s:I,s:s,s:o,s:f,s:f,s:f}", "index", (json_int_t)i, "label",
                     t->ct.labels[r->label], "probs", probs, "confidence", (double)r->confidence,
                     "margin", (double)r->margin, "entropy", (double)r->entropy);
}

static json_t *extract_json(const struct sl_task_job *t, size_t i)
{
    const struct sl_extract_result *r = &t->xres[i];
    json_t *out = json_loadb(r->output, r->len, JSON_DECODE_ANY, NULL);
    json_t *fields = json_object();
    for (size_t k = 0; k < r->n_fields; k++)
        json_object_set_new(fields, r->fields[k].path,
                            json_pack("{s:f,s:f,s:i}", "confidence", (double)r->fields[k].p_min,
                                      "mean", (double)r->fields[k].p_mean, "tokens",
                                      (int)r->fields[k].n_tokens));
    return json_pack("{s:I,s:o,s:s%,s:f,s:f,s:o}", "index", (json_int_t)i, "output",
                     out ? out : json_null(), "output_text", r->output, r->len, "confidence",
                     (double)r->p_min, "confidence_mean", (double)r->p_mean, "fields", fields);
}

/* A task job's failure (sl_task_job_run's code) as an HTTP error. */
static void task_error(int rc, const struct sl_err *err, struct sl_http_resp *resp)
{
    if (rc == SL_SCHED_EBUSY) {
        reply_err(resp, strstr(err->msg, "shutting") ? 503 : 429, "rate_limit_error",
                  "rate_limit_exceeded", NULL, "%s", err->msg);
        resp->retry_after = 1;
    } else if (rc == SL_TASK_JOB_EGONE)
        reply_err(resp, 499, "invalid_request_error", NULL, NULL, "client closed the connection");
    else if (rc == SL_SCHED_ETIMEDOUT)
        reply_err(resp, 504, "server_error", "timeout", NULL,
                  "The request took longer than server.request_timeout_s.");
    else if (rc == SL_ERANGE)
        reply_err(resp, 400, "invalid_request_error", "context_length_exceeded", "input", "%s",
                  err->msg);
    else if (rc == SL_EINVAL || rc == SL_EUNSUPPORTED || rc == SL_EFORMAT)
        reply_err(resp, 400, "invalid_request_error", NULL, NULL, "%s", err->msg);
    else
        reply_err(resp, 500, "server_error", NULL, NULL, "%s", err->msg);
}

static bool model_is_route(void *user, const char *model)
{
    return is_route(user, model);
}

static void handle_task(struct sl_server *s, const struct sl_http_req *req,
                        const struct sl_key_config *key, enum sl_req_kind kind,
                        struct sl_http_resp *resp)
{
    struct sl_err err = {0};
    struct sl_req r = {0};
    struct sl_served_model *m = NULL;
    struct sl_task_job t = {0};
    bool classify = kind == SL_REQ_CLASSIFY, have_job = false;
    double t0 = sl_sched_now_ms();
    const char *route = classify ? "/v1/classify" : "/v1/extract";
    struct sl_req_limits lim = {s->cfg->limits.max_n, s->cfg->limits.max_embedding_inputs,
                                model_is_route, s};
    if (sl_req_parse(&r, kind, req->body, req->body_len, &lim, &err)) {
        reply_err(resp, err.code == SL_ENOMEM ? 500 : 400, "invalid_request_error", NULL, r.param,
                  "%s", err.msg);
        goto done; /* bad request */
    }
    if (r.model && is_route(s, r.model)) {
        handle_routed_task(s, key, &r, req->fd, resp);
        goto done; /* a route answers */
    }
    const struct sl_task_config *tc = NULL;
    const char *model = r.model;
    if (r.task) {
        if (!(tc = sl_config_task(s->cfg, r.task))) {
            reply_err(resp, 404, "invalid_request_error", "task_not_found", "task",
                      "The task '%s' is not configured on this server.", r.task);
            goto done; /* unknown task */
        }
        if (tc->kind != (classify ? SL_TASK_CLASSIFY : SL_TASK_EXTRACT)) {
            reply_err(resp, 400, "invalid_request_error", NULL, "task",
                      "The task '%s' is a %s task; %s serves %s tasks.", r.task,
                      tc->kind == SL_TASK_CLASSIFY  ? "classify"
                      : tc->kind == SL_TASK_EXTRACT ? "extract"
                                                    : "generate",
                      route, classify ? "classify" : "extract");
            goto done; /* wrong endpoint */
        }
        if (model && strcmp(model, tc->model)) {
            reply_err(resp, 400, "invalid_request_error", NULL, "model",
                      "The task '%s' runs on the model '%s', not '%s'.", r.task, tc->model, model);
            goto done; /* mismatch */
        }
        model = tc->model;
    }
    if (!(m = model_for(s, key, model, resp))) goto done; /* unknown or forbidden model */
    have_job = true;
    if (sl_task_job_init(&t, m, classify, r.n_prompts, &err) ||
        (tc && sl_task_job_use_config(&t, tc, &err))) {
        reply_err(resp, 500, "server_error", NULL, NULL, "%s", err.msg);
        goto done; /* allocation failure; schema that does not load (checked at config load) */
    }
    for (size_t i = 0; i < t.n; i++)
        t.inputs[i] = r.prompts[i].text;
    if (classify && !tc) {
        t.ct.instruction = r.instruction;
        t.ct.labels = r.labels;
        t.ct.descriptions = r.label_descs;
        t.ct.n_labels = r.n_labels;
        t.ct.mode = (enum sl_prompt_mode)r.prompt_mode;
    } else if (!classify) {
        int64_t max = tc ? tc->max_tokens : 256;
        if (!tc) {
            t.xt.schema = r.schema;
            t.xt.instruction = r.instruction;
            t.xt.mode = (enum sl_prompt_mode)r.prompt_mode;
        }
        if (r.max_tokens > 0) max = r.max_tokens;
        if (max > s->cfg->limits.max_completion_tokens) {
            reply_err(resp, 400, "invalid_request_error", NULL, "max_tokens",
                      "max_tokens is %lld; this server allows at most %lld.", (long long)max,
                      (long long)s->cfg->limits.max_completion_tokens);
            goto done; /* too many */
        }
        t.xt.max_tokens = (int32_t)max;
        /* compile here too, so a bad schema is a 400 naming the keyword */
        char *gt = NULL;
        int rc = sl_schema_to_grammar(t.xt.schema, &t.xt.opts, &gt, &err);
        free(gt);
        if (rc) {
            reply_err(resp, rc == SL_ENOMEM ? 500 : 400, "invalid_request_error",
                      rc == SL_EUNSUPPORTED ? "unsupported_schema" : "invalid_schema", "schema",
                      "%s", err.msg);
            goto done; /* bad schema */
        }
    }
    int64_t deadline = (int64_t)(t0 + (double)s->cfg->server.request_timeout_s * 1e3);
    int rc = sl_task_job_run(&t, deadline, req->fd, &err);
    if (rc) {
        task_error(rc, &err, resp);
        goto done; /* queue full, timeout, client gone, task failed */
    }
    json_t *data = json_array();
    long long n_prompt = 0, n_gen = 0, n_cached = 0;
    for (size_t i = 0; i < t.n; i++) {
        json_array_append_new(data, classify ? classify_json(&t, i) : extract_json(&t, i));
        n_prompt += classify ? t.cres[i].n_prompt : t.xres[i].n_prompt;
        n_gen += classify ? 0 : t.xres[i].n_gen;
        n_cached += classify ? t.cres[i].n_cached : 0;
    }
    char id[48];
    make_id(s, classify ? "cls" : "ext", id, sizeof id);
    json_t *body = json_pack("{s:s,s:s,s:o,s:s,s:{s:I,s:I,s:I}}", "id", id, "object", "list",
                             "data", data, "model", model, "usage", "prompt_tokens",
                             (json_int_t)n_prompt, "completion_tokens", (json_int_t)n_gen,
                             "total_tokens", (json_int_t)(n_prompt + n_gen));
    if (body && classify)
        json_object_set_new(json_object_get(body, "usage"), "cached_tokens",
                            json_integer(n_cached));
    if (body && r.task) json_object_set_new(body, "task", json_string(r.task));
    if (s->store) {
        /* one row per request: the inputs and answers joined by newlines */
        struct sl_buf in, out;
        sl_buf_init(&in, 0);
        sl_buf_init(&out, 0);
        for (size_t i = 0; i < t.n; i++) {
            if (i) sl_buf_append(&in, "\n", 1), sl_buf_append(&out, "\n", 1);
            sl_buf_append(&in, t.inputs[i], strlen(t.inputs[i]));
            const char *o = classify ? t.ct.labels[t.cres[i].label] : t.xres[i].output;
            sl_buf_append(&out, o, strlen(o));
        }
        sl_buf_append(&in, "", 1);
        sl_buf_append(&out, "", 1);
        log_direct(s, id, model, in.p, out.p, n_prompt, n_gen,
                   t.n == 1 ? (classify ? t.cres[0].confidence : t.xres[0].p_min) : -1,
                   t.machine_ms, t0, 200);
        sl_buf_free(&in);
        sl_buf_free(&out);
    }
    reply_json(resp, 200, body);
    sl_http_header(resp, "x-sluice-request-id", "%s", id);
done:
    if (have_job) sl_task_job_free(&t);
    sl_req_free(&r);
}

/* ------------------------------------------------------------------------ */
/* Listing, health, metrics                                                 */
/* ------------------------------------------------------------------------ */

static json_t *model_json(const struct sl_server *s, const struct sl_served_model *m)
{
    return json_pack("{s:s,s:s,s:I,s:s}", "id", m->cfg->name, "object", "model", "created",
                     (json_int_t)s->started, "owned_by", "sluice");
}

static json_t *route_model_json(const struct sl_server *s, const char *name)
{
    return json_pack("{s:s,s:s,s:I,s:s}", "id", name, "object", "model", "created",
                     (json_int_t)s->started, "owned_by", "sluice-route");
}

static void handle_models(struct sl_server *s, const char *id, const struct sl_key_config *key,
                          struct sl_http_resp *resp)
{
    if (id) {
        if (is_route(s, id) && key_allows(key, id)) {
            reply_json(resp, 200, route_model_json(s, id));
            return;
        }
        struct sl_served_model *m = model_for(s, key, id, resp);
        if (m) reply_json(resp, 200, model_json(s, m));
        return;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < s->n_models; i++)
        if (key_allows(key, s->models[i].cfg->name))
            json_array_append_new(data, model_json(s, &s->models[i]));
    for (size_t i = 0; s->router && i < s->cfg->n_routes; i++)
        if (key_allows(key, s->cfg->routes[i].name))
            json_array_append_new(data, route_model_json(s, s->cfg->routes[i].name));
    reply_json(resp, 200, json_pack("{s:s,s:o}", "object", "list", "data", data));
}

static void handle_metrics(struct sl_server *s, struct sl_http_resp *resp)
{
    struct sl_buf o;
    sl_buf_init(&o, 0);
    sl_metrics_render(&s->metrics, &o);
    static const char *const gauges[][2] = {
        {"sluice_queue_depth", "Requests waiting for a slot."},
        {"sluice_running_requests", "Requests holding a slot."},
        {"sluice_prefix_cache_entries", "Finished sequences kept for their prefix."},
    };
    static const char *const counters[][2] = {
        {"sluice_prompt_tokens_total", "Prompt tokens computed (not taken from the prefix cache)."},
        {"sluice_generated_tokens_total", "Tokens generated."},
        {"sluice_prefix_cache_hit_tokens_total", "Prompt tokens taken from the prefix cache."},
    };
    for (int k = 0; k < 3; k++) {
        sl_buf_appendf(&o, "# HELP %s %s\n# TYPE %s gauge\n", gauges[k][0], gauges[k][1],
                       gauges[k][0]);
        for (size_t i = 0; i < s->n_models; i++) {
            struct sl_sched_stats *st = sl_sched_stats(s->models[i].sched);
            int v = k == 0   ? atomic_load(&st->queue_depth)
                    : k == 1 ? atomic_load(&st->running)
                             : atomic_load(&st->cache_entries);
            sl_buf_appendf(&o, "%s{model=\"%s\"} %d\n", gauges[k][0], s->models[i].cfg->name, v);
        }
    }
    for (int k = 0; k < 3; k++) {
        sl_buf_appendf(&o, "# HELP %s %s\n# TYPE %s counter\n", counters[k][0], counters[k][1],
                       counters[k][0]);
        for (size_t i = 0; i < s->n_models; i++) {
            struct sl_sched_stats *st = sl_sched_stats(s->models[i].sched);
            long long v = k == 0   ? atomic_load(&st->n_prompt_tokens)
                          : k == 1 ? atomic_load(&st->n_gen_tokens)
                                   : atomic_load(&st->n_cached_tokens);
            sl_buf_appendf(&o, "%s{model=\"%s\"} %lld\n", counters[k][0], s->models[i].cfg->name,
                           v);
        }
    }
    sl_buf_appendf(
        &o,
        "# HELP sluice_batch_size Entries per forward pass.\n# TYPE sluice_batch_size histogram\n");
    for (size_t i = 0; i < s->n_models; i++) {
        struct sl_sched_stats *st = sl_sched_stats(s->models[i].sched);
        long long cum = 0;
        for (int b = 0; b < 8; b++) {
            cum += atomic_load(&st->batch_hist[b]);
            if (b < 7)
                sl_buf_appendf(&o, "sluice_batch_size_bucket{model=\"%s\",le=\"%d\"} %lld\n",
                               s->models[i].cfg->name, 1 << b, cum);
            else
                sl_buf_appendf(&o, "sluice_batch_size_bucket{model=\"%s\",le=\"+Inf\"} %lld\n",
                               s->models[i].cfg->name, cum);
        }
        sl_buf_appendf(&o,
                       "sluice_batch_size_sum{model=\"%s\"} "
                       "%lld\nsluice_batch_size_count{model=\"%s\"} %lld\n",
                       s->models[i].cfg->name, (long long)atomic_load(&st->n_batch_tokens),
                       s->models[i].cfg->name, (long long)atomic_load(&st->n_steps));
    }
    if (s->router && s->cfg->n_routes) {
        static const char *const rc[][2] = {
            {"sluice_route_requests_total", "Requests answered through a route."},
            {"sluice_route_escalations_total", "Routed requests a later tier was called for."},
            {"sluice_route_fallbacks_total", "Routed requests answered by a fallback."},
            {"sluice_route_failures_total", "Routed requests every tier failed for."},
            {"sluice_route_cost_total", "Cost of routed requests (currency of costs:)."},
        };
        pthread_mutex_lock(&s->route_mu);
        for (int k = 0; k < 5; k++) {
            sl_buf_appendf(&o, "# HELP %s %s\n# TYPE %s counter\n", rc[k][0], rc[k][1], rc[k][0]);
            for (size_t i = 0; i < s->cfg->n_routes; i++) {
                const struct sl_route_stats *st = &s->route_stats[i];
                if (k == 4)
                    sl_buf_appendf(&o, "%s{route=\"%s\"} %.9g\n", rc[k][0], st->name, st->cost);
                else
                    sl_buf_appendf(&o, "%s{route=\"%s\"} %llu\n", rc[k][0], st->name,
                                   k == 0   ? st->requests
                                   : k == 1 ? st->escalations
                                   : k == 2 ? st->fallbacks
                                            : st->failures);
            }
        }
        pthread_mutex_unlock(&s->route_mu);
        sl_buf_appendf(&o,
                       "# HELP sluice_log_errors_total Routed request rows and ledger entries the "
                       "request log failed to write.\n# TYPE sluice_log_errors_total counter\n"
                       "sluice_log_errors_total %llu\n",
                       sl_router_log_errors(s->router));
    }
    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4";
    resp->body = sl_buf_take(&o, &resp->body_len);
}

/* ------------------------------------------------------------------------ */
/* Dispatch                                                                 */
/* ------------------------------------------------------------------------ */

void sl_routes_handle(void *user, const struct sl_http_req *req, struct sl_http_resp *resp)
{
    struct sl_server *s = user;
    double t0 = sl_sched_now_ms();
    const char *p = req->path, *route = "other";
    bool get = !strcmp(req->method, "GET"), post = !strcmp(req->method, "POST");
    const struct sl_key_config *key = NULL;
    enum {
        R_NONE,
        R_HEALTH,
        R_METRICS,
        R_MODELS,
        R_MODEL,
        R_CHAT,
        R_CMPL,
        R_EMBD,
        R_CLS,
        R_EXT,
        R_FEEDBACK
    } r = R_NONE;
    if (!strcmp(p, "/health"))
        r = R_HEALTH, route = "/health";
    else if (!strcmp(p, "/metrics"))
        r = R_METRICS, route = "/metrics";
    else if (!strcmp(p, "/v1/models"))
        r = R_MODELS, route = "/v1/models";
    else if (!strncmp(p, "/v1/models/", 11))
        r = R_MODEL, route = "/v1/models/{id}";
    else if (!strcmp(p, "/v1/chat/completions"))
        r = R_CHAT, route = "/v1/chat/completions";
    else if (!strcmp(p, "/v1/completions"))
        r = R_CMPL, route = "/v1/completions";
    else if (!strcmp(p, "/v1/embeddings"))
        r = R_EMBD, route = "/v1/embeddings";
    else if (!strcmp(p, "/v1/classify"))
        r = R_CLS, route = "/v1/classify";
    else if (!strcmp(p, "/v1/extract"))
        r = R_EXT, route = "/v1/extract";
    else if (!strcmp(p, "/v1/feedback"))
        r = R_FEEDBACK, route = "/v1/feedback";

    bool want_post =
        r == R_CHAT || r == R_CMPL || r == R_EMBD || r == R_CLS || r == R_EXT || r == R_FEEDBACK;
    if (r == R_NONE) {
        reply_err(resp, 404, "invalid_request_error", "unknown_url", NULL,
                  "Unknown request URL: %s %s", req->method, p);
    } else if ((want_post && !post) || (!want_post && !get)) {
        reply_err(resp, 405, "invalid_request_error", "method_not_allowed", NULL,
                  "%s %s is not supported; use %s.", req->method, p, want_post ? "POST" : "GET");
    } else if (r == R_HEALTH) {
        reply_json(resp, 200,
                   json_pack("{s:s}", "status", atomic_load(&s->draining) ? "draining" : "ok"));
    } else if (r == R_METRICS) {
        handle_metrics(s, resp);
    } else if (authenticate(s, req, &key, resp) == 0) {
        if (r == R_MODELS || r == R_MODEL)
            handle_models(s, r == R_MODEL ? p + 11 : NULL, key, resp);
        else if (r == R_EMBD)
            handle_embeddings(s, req, key, resp);
        else if (r == R_FEEDBACK)
            handle_feedback(s, req, resp);
        else if (r == R_CLS || r == R_EXT)
            handle_task(s, req, key, r == R_CLS ? SL_REQ_CLASSIFY : SL_REQ_EXTRACT, resp);
        else {
            handle_generate(s, req, key, r == R_CHAT ? SL_REQ_CHAT : SL_REQ_COMPLETION, route, t0,
                            resp);
            if (resp->stream) return; /* counted when the stream ends */
        }
    }
    sl_metrics_request(&s->metrics, route, resp->status, (sl_sched_now_ms() - t0) / 1e3);
}
