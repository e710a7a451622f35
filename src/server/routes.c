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
 *
 * Chat completions take response_format json_schema / json_object: the
 * schema is compiled to a grammar here and the job's sampler enforces it.
 * A request is parsed (request.c), authorized, tokenized, turned into one
 * scheduler job per choice (prompts x n), and answered whole or as
 * server-sent events. Every 4xx/5xx body is {"error": {...}} as OpenAI's.
 */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../engine/grammar.h"
#include "../engine/vocab.h"
#include "../tasks/classify.h"
#include "../tasks/extract.h"
#include "../tasks/schema.h"
#include "request.h"
#include "server.h"
#include "sse.h"

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

static void gen_stream_free(void *ctx)
{
    struct gen *g = ctx;
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
    struct sl_req_limits lim = {s->cfg->limits.max_n, s->cfg->limits.max_n};
    if (sl_req_parse(&g->req, kind, req->body, req->body_len, &lim, &err)) {
        reply_err(resp, err.code == SL_ENOMEM ? 500 : 400, "invalid_request_error", NULL,
                  g->req.param, "%s", err.msg);
        goto done; /* bad request */
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
        return; /* g now belongs to the stream */
    }
    if (!wait_all(g->m->sched, g->jobs, g->seen, g->n_jobs, req->fd, g->deadline_ms,
                  &g->timed_out)) {
        reply_err(resp, 499, "invalid_request_error", NULL, NULL, "client closed the connection");
        goto done; /* client gone */
    }
    if (jobs_error(g->jobs, g->n_jobs, g->timed_out, resp)) goto done; /* timeout, engine error */
    gen_respond(g, resp);
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
    struct sl_req_limits lim = {s->cfg->limits.max_n, s->cfg->limits.max_embedding_inputs};
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

/* One request's task work, run on the model's engine thread (a task job). */
struct task_work {
    bool classify;
    struct sl_classify_task ct;
    struct sl_extract_task xt;
    const char **inputs; /* (n) */
    size_t n;
    struct sl_classify_result *cres; /* (n) classify */
    struct sl_extract_result *xres;  /* (n) extract */
};

static int task_work_run(void *arg, struct sl_ctx *ctx, struct sl_err *err)
{
    struct task_work *t = arg;
    int rc;
    if (t->classify) {
        struct sl_classifier *c = NULL;
        if ((rc = sl_classifier_init(&c, ctx, &t->ct, err))) return rc; /* bad task */
        rc = sl_classify_batch(c, t->inputs, t->n, t->cres, err);
        sl_classifier_free(c);
        return rc;
    }
    struct sl_extractor *x = NULL;
    if ((rc = sl_extractor_init(&x, ctx, &t->xt, err))) return rc; /* bad schema */
    for (size_t i = 0; i < t->n && !rc; i++)
        rc = sl_extract(x, t->inputs[i], &t->xres[i], err);
    sl_extractor_free(x);
    return rc;
}

static json_t *classify_json(const struct task_work *t, size_t i)
{
    const struct sl_classify_result *r = &t->cres[i];
    json_t *probs = json_object();
    for (size_t k = 0; k < t->ct.n_labels; k++)
        json_object_set_new(probs, t->ct.labels[k], json_real(r->probs[k]));
    return json_pack("{s:I,s:s,s:o,s:f,s:f,s:f}", "index", (json_int_t)i, "label",
                     t->ct.labels[r->label], "probs", probs, "confidence", (double)r->confidence,
                     "margin", (double)r->margin, "entropy", (double)r->entropy);
}

static json_t *extract_json(const struct task_work *t, size_t i)
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

/* A task job's error as an HTTP error. */
static void task_error(const struct sl_job *j, bool timed_out, struct sl_http_resp *resp)
{
    int rc = j->rc;
    if (rc == SL_SCHED_ETIMEDOUT || timed_out)
        reply_err(resp, 504, "server_error", "timeout", NULL,
                  "The request took longer than server.request_timeout_s.");
    else if (rc == SL_ERANGE)
        reply_err(resp, 400, "invalid_request_error", "context_length_exceeded", "input", "%s",
                  j->err.msg);
    else if (rc == SL_EINVAL || rc == SL_EUNSUPPORTED || rc == SL_EFORMAT)
        reply_err(resp, 400, "invalid_request_error", NULL, NULL, "%s", j->err.msg);
    else
        reply_err(resp, 500, "server_error", NULL, NULL, "%s", j->err.msg);
}

static void handle_task(struct sl_server *s, const struct sl_http_req *req,
                        const struct sl_key_config *key, enum sl_req_kind kind,
                        struct sl_http_resp *resp)
{
    struct sl_err err = {0};
    struct sl_req r = {0};
    struct sl_served_model *m = NULL;
    struct task_work t = {.classify = kind == SL_REQ_CLASSIFY};
    struct sl_job job = {0};
    struct sl_job_progress seen = {0};
    json_t *schema = NULL; /* owned: a configured task's */
    struct sl_classify_example *examples = NULL;
    bool inited = false, submitted = false, timed_out = false;
    size_t n_sub = 0;
    double t0 = sl_sched_now_ms();
    const char *route = t.classify ? "/v1/classify" : "/v1/extract";
    struct sl_req_limits lim = {s->cfg->limits.max_n, s->cfg->limits.max_embedding_inputs};
    if (sl_req_parse(&r, kind, req->body, req->body_len, &lim, &err)) {
        reply_err(resp, err.code == SL_ENOMEM ? 500 : 400, "invalid_request_error", NULL, r.param,
                  "%s", err.msg);
        goto done; /* bad request */
    }
    const struct sl_task_config *tc = NULL;
    const char *model = r.model;
    if (r.task) {
        if (!(tc = sl_config_task(s->cfg, r.task))) {
            reply_err(resp, 404, "invalid_request_error", "task_not_found", "task",
                      "The task '%s' is not configured on this server.", r.task);
            goto done; /* unknown task */
        }
        if (tc->kind != (t.classify ? SL_TASK_CLASSIFY : SL_TASK_EXTRACT)) {
            reply_err(resp, 400, "invalid_request_error", NULL, "task",
                      "The task '%s' is a %s task; %s serves %s tasks.", r.task,
                      tc->kind == SL_TASK_CLASSIFY  ? "classify"
                      : tc->kind == SL_TASK_EXTRACT ? "extract"
                                                    : "generate",
                      route, t.classify ? "classify" : "extract");
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
    t.n = r.n_prompts;
    t.inputs = calloc(t.n, sizeof *t.inputs);
    if (t.classify)
        t.cres = calloc(t.n, sizeof *t.cres);
    else
        t.xres = calloc(t.n, sizeof *t.xres);
    if (!t.inputs || (!t.cres && !t.xres)) {
        reply_err(resp, 500, "server_error", NULL, NULL, "out of memory");
        goto done; /* allocation failure */
    }
    for (size_t i = 0; i < t.n; i++)
        t.inputs[i] = r.prompts[i].text;
    if (t.classify) {
        t.ct = sl_classify_default_task();
        if (tc) {
            t.ct.instruction = tc->instruction;
            t.ct.labels = (const char *const *)tc->labels;
            t.ct.descriptions = (const char *const *)tc->descriptions;
            t.ct.n_labels = tc->n_labels;
            t.ct.temperature = (float)tc->temperature;
            t.ct.mode = (enum sl_prompt_mode)tc->prompt_mode;
            if (tc->n_examples) {
                if (!(examples = calloc(tc->n_examples, sizeof *examples))) {
                    reply_err(resp, 500, "server_error", NULL, NULL, "out of memory");
                    goto done; /* allocation failure */
                }
                for (size_t i = 0; i < tc->n_examples; i++)
                    examples[i] = (struct sl_classify_example){tc->ex_inputs[i], tc->ex_labels[i]};
                t.ct.examples = examples;
                t.ct.n_examples = tc->n_examples;
            }
        } else {
            t.ct.instruction = r.instruction;
            t.ct.labels = r.labels;
            t.ct.descriptions = r.label_descs;
            t.ct.n_labels = r.n_labels;
            t.ct.mode = (enum sl_prompt_mode)r.prompt_mode;
        }
        if (t.ct.mode == SL_PROMPT_CHAT) t.ct.chat_family = (int)m->family;
    } else {
        t.xt = sl_extract_default_task();
        const json_t *sc = r.schema;
        int64_t max = 256;
        if (tc) {
            if (!(schema = json_loads(tc->schema, 0, NULL))) {
                reply_err(resp, 500, "server_error", NULL, NULL, "task schema does not load");
                goto done; /* cannot happen: checked at config load */
            }
            sc = schema;
            t.xt.instruction = tc->instruction;
            t.xt.mode = (enum sl_prompt_mode)tc->prompt_mode;
            max = tc->max_tokens;
        } else {
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
        t.xt.schema = sc;
        if (t.xt.mode == SL_PROMPT_CHAT) t.xt.chat_family = (int)m->family;
        /* compile here too, so a bad schema is a 400 naming the keyword */
        char *gt = NULL;
        int rc = sl_schema_to_grammar(sc, &t.xt.opts, &gt, &err);
        free(gt);
        if (rc) {
            reply_err(resp, rc == SL_ENOMEM ? 500 : 400, "invalid_request_error",
                      rc == SL_EUNSUPPORTED ? "unsupported_schema" : "invalid_schema", "schema",
                      "%s", err.msg);
            goto done; /* bad schema */
        }
    }
    job.run = task_work_run;
    job.run_arg = &t;
    job.deadline_ms = (int64_t)(t0 + (double)s->cfg->server.request_timeout_s * 1e3);
    if (sl_job_init(&job, &err)) {
        reply_err(resp, 500, "server_error", NULL, NULL, "%s", err.msg);
        goto done; /* allocation failure */
    }
    inited = true;
    if (submit_all(m->sched, &job, 1, &n_sub, resp)) goto done; /* queue full */
    submitted = n_sub == 1;
    if (!wait_all(m->sched, &job, &seen, 1, req->fd, job.deadline_ms, &timed_out)) {
        reply_err(resp, 499, "invalid_request_error", NULL, NULL, "client closed the connection");
        goto done; /* client gone */
    }
    if (job.rc || job.finish == SL_FINISH_CANCEL) {
        task_error(&job, timed_out, resp);
        goto done; /* task failed */
    }
    json_t *data = json_array();
    long long n_prompt = 0, n_gen = 0, n_cached = 0;
    for (size_t i = 0; i < t.n; i++) {
        json_array_append_new(data, t.classify ? classify_json(&t, i) : extract_json(&t, i));
        n_prompt += t.classify ? t.cres[i].n_prompt : t.xres[i].n_prompt;
        n_gen += t.classify ? 0 : t.xres[i].n_gen;
        n_cached += t.classify ? t.cres[i].n_cached : 0;
    }
    json_t *body =
        json_pack("{s:s,s:o,s:s,s:{s:I,s:I,s:I}}", "object", "list", "data", data, "model", model,
                  "usage", "prompt_tokens", (json_int_t)n_prompt, "completion_tokens",
                  (json_int_t)n_gen, "total_tokens", (json_int_t)(n_prompt + n_gen));
    if (body && t.classify)
        json_object_set_new(json_object_get(body, "usage"), "cached_tokens",
                            json_integer(n_cached));
    if (body && r.task) json_object_set_new(body, "task", json_string(r.task));
    reply_json(resp, 200, body);
done:
    if (submitted) { /* a task job finishes its run; wait for it */
        while (!seen.done)
            sl_sched_wait(m->sched, &job, &seen, 1000);
    }
    if (inited) sl_job_free(&job);
    for (size_t i = 0; i < t.n; i++) {
        if (t.cres) sl_classify_result_free(&t.cres[i]);
        if (t.xres) sl_extract_result_free(&t.xres[i]);
    }
    free(t.cres);
    free(t.xres);
    free(t.inputs);
    free(examples);
    if (schema) json_decref(schema);
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

static void handle_models(struct sl_server *s, const char *id, const struct sl_key_config *key,
                          struct sl_http_resp *resp)
{
    if (id) {
        struct sl_served_model *m = model_for(s, key, id, resp);
        if (m) reply_json(resp, 200, model_json(s, m));
        return;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < s->n_models; i++)
        if (key_allows(key, s->models[i].cfg->name))
            json_array_append_new(data, model_json(s, &s->models[i]));
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
        R_EXT
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

    bool want_post = r == R_CHAT || r == R_CMPL || r == R_EMBD || r == R_CLS || r == R_EXT;
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
