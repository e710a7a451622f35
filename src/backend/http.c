/*
 * http.c - OpenAI-compatible upstream over libcurl (backend layer).
 *
 * One call = up to 1 + max_retries attempts. Each attempt asks the circuit
 * breaker first, takes a curl easy handle from a small pool (so the
 * connection to the upstream is reused: curl keeps it in the handle's
 * connection cache), sends the JSON body and reads the answer:
 *   - whole body into a capped buffer, then parsed (complete, embed);
 *   - or server-sent events through the allocation-free reader in
 *     sse_parse.c, each chunk handed to the caller as it arrives (stream).
 * Outcomes are classified (backend.h enum sl_backend_status); 429, 5xx and
 * connection errors are retried after a backoff (exponential, "equal
 * jitter": half fixed, half random) or the server's Retry-After.
 */
#include "backend/http.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "backend/sse_parse.h"
#include "base/buf.h"

#define HTTP_MAX_HANDLES 64
#define HTTP_URL_MAX 1024
#define HTTP_ERRTEXT_MAX 200

struct http_backend {
    struct sl_backend_http_params p;
    char name[64];
    char url_chat[HTTP_URL_MAX];
    char url_embed[HTTP_URL_MAX];
    char model[256];
    char *auth_header;  /* "Authorization: Bearer ..." or NULL */
    pthread_mutex_t mu; /* guards idle[] and rng */
    CURL *idle[HTTP_MAX_HANDLES];
    int n_idle;
    unsigned rng;
    struct sl_breaker breaker;
};

/* ================================================================ helpers */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void default_sleep(void *unused, long ms)
{
    (void)unused;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static CURL *handle_take(struct http_backend *B)
{
    CURL *h = NULL;
    pthread_mutex_lock(&B->mu);
    if (B->n_idle > 0) h = B->idle[--B->n_idle];
    pthread_mutex_unlock(&B->mu);
    if (h)
        curl_easy_reset(h); /* options cleared, connection cache kept */
    else
        h = curl_easy_init();
    return h;
}

static void handle_give(struct http_backend *B, CURL *h)
{
    pthread_mutex_lock(&B->mu);
    if (B->n_idle < B->p.max_idle_handles && B->n_idle < HTTP_MAX_HANDLES) {
        B->idle[B->n_idle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&B->mu);
    if (h) curl_easy_cleanup(h);
}

static unsigned rng_next(struct http_backend *B)
{
    pthread_mutex_lock(&B->mu);
    B->rng ^= B->rng << 13;
    B->rng ^= B->rng >> 17;
    B->rng ^= B->rng << 5;
    unsigned r = B->rng;
    pthread_mutex_unlock(&B->mu);
    return r;
}

long sl_backend_http_backoff_ms(const struct sl_backend_http_params *p, int retry)
{
    long d = p->backoff_base_ms;
    for (int k = 0; k < retry && d < p->backoff_max_ms; k++)
        d *= 2;
    return d > p->backoff_max_ms ? p->backoff_max_ms : d;
}

static char *xstrdup(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s);
    char *p = malloc(n + 1);
    if (p) memcpy(p, s, n + 1);
    return p;
}

/* ================================================================ request */

static json_t *build_body(struct http_backend *B, const struct sl_backend_req *q, bool stream)
{
    json_t *o = json_object(), *msgs = json_array();
    if (!o || !msgs) goto fail; /* allocation failure */
    json_object_set_new(o, "model", json_string(B->model));
    for (size_t k = 0; k < q->n_msgs; k++) {
        json_t *m = json_object();
        if (!m) goto fail; /* allocation failure */
        json_object_set_new(m, "role", json_string(q->msgs[k].role ? q->msgs[k].role : "user"));
        json_object_set_new(m, "content",
                            json_string(q->msgs[k].content ? q->msgs[k].content : ""));
        json_array_append_new(msgs, m);
    }
    json_object_set_new(o, "messages", msgs);
    msgs = NULL;
    if (q->max_tokens >= 0) json_object_set_new(o, "max_tokens", json_integer(q->max_tokens));
    if (q->temperature >= 0) json_object_set_new(o, "temperature", json_real(q->temperature));
    if (q->top_p >= 0) json_object_set_new(o, "top_p", json_real(q->top_p));
    if (q->seed >= 0) json_object_set_new(o, "seed", json_integer(q->seed));
    if (q->logprobs) {
        json_object_set_new(o, "logprobs", json_true());
        if (q->top_logprobs > 0)
            json_object_set_new(o, "top_logprobs",
                                json_integer(q->top_logprobs > SL_BACKEND_MAX_TOP
                                                 ? SL_BACKEND_MAX_TOP
                                                 : q->top_logprobs));
    }
    if (q->stop[0]) {
        json_t *st = json_array();
        for (int k = 0; k < SL_BACKEND_MAX_STOP && q->stop[k]; k++)
            json_array_append_new(st, json_string(q->stop[k]));
        json_object_set_new(o, "stop", st);
    }
    if (q->user) json_object_set_new(o, "user", json_string(q->user));
    if (stream) {
        json_object_set_new(o, "stream", json_true());
        json_t *so = json_object();
        json_object_set_new(so, "include_usage", json_true());
        json_object_set_new(o, "stream_options", so);
    }
    return o;
fail:
    json_decref(o);
    json_decref(msgs);
    return NULL;
}

/* ================================================================ one attempt */

struct attempt {
    struct http_backend *B;
    struct sl_buf body;    /* non-stream body, or an error body while streaming */
    long retry_after_ms;   /* -1 if none */
    double t0, first_byte; /* ms */
    /* streaming */
    bool streaming;
    struct sl_buf sse; /* unconsumed SSE bytes */
    size_t last_len;
    sl_backend_chunk_fn fn;
    void *user;
    struct sl_buf *content; /* deltas so far (the response's content) */
    struct sl_backend_resp *resp;
    int n_chunks;                /* delivered to fn */
    bool done;                   /* saw [DONE] */
    enum sl_backend_status fail; /* set by the write callback when it stops */
    char fail_msg[160];
    CURL *h;
};

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct attempt *A = ud;
    size_t len = size * n;
    static const char name[] = "retry-after:";
    if (len > sizeof name - 1 && !strncasecmp(p, name, sizeof name - 1)) {
        char v[128];
        size_t vl = len - (sizeof name - 1);
        if (vl >= sizeof v) vl = sizeof v - 1;
        memcpy(v, p + sizeof name - 1, vl);
        v[vl] = 0;
        char *s = v;
        while (*s == ' ' || *s == '\t')
            s++;
        char *e = s + strlen(s);
        while (e > s && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' '))
            *--e = 0;
        char *end = NULL;
        long secs = strtol(s, &end, 10);
        if (end != s && *end == 0 && secs >= 0 && secs < 86400 * 7) {
            A->retry_after_ms = secs * 1000;
        } else {
            time_t t = curl_getdate(s, NULL); /* an HTTP date */
            if (t != -1) {
                long d = (long)(t - time(NULL));
                A->retry_after_ms = d > 0 ? d * 1000 : 0;
            }
        }
    }
    return len;
}

/* Parses one SSE chunk (JSON) and hands it on. Returns 0 or -1 (stop). */
static int deliver(struct attempt *A, const char *data, size_t len)
{
    json_error_t je;
    json_t *o = json_loadb(data, len, 0, &je);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        A->fail = SL_BACKEND_MALFORMED;
        snprintf(A->fail_msg, sizeof A->fail_msg, "stream chunk is not a JSON object: %.100s",
                 je.text);
        return -1;
    }
    json_t *err = json_object_get(o, "error");
    if (err) {
        json_t *m = json_object_get(err, "message");
        A->fail = SL_BACKEND_HTTP;
        snprintf(A->fail_msg, sizeof A->fail_msg, "error in stream: %s",
                 json_is_string(m) ? json_string_value(m) : "(no message)");
        json_decref(o);
        return -1;
    }
    const char *delta = "";
    size_t dlen = 0;
    json_t *ch = json_array_get(json_object_get(o, "choices"), 0);
    if (ch) {
        json_t *c = json_object_get(json_object_get(ch, "delta"), "content");
        if (json_is_string(c)) delta = json_string_value(c), dlen = json_string_length(c);
        json_t *fr = json_object_get(ch, "finish_reason");
        if (json_is_string(fr) && !A->resp->finish_reason)
            A->resp->finish_reason = xstrdup(json_string_value(fr));
    }
    json_t *usage = json_object_get(o, "usage");
    if (json_is_object(usage)) {
        json_t *pt = json_object_get(usage, "prompt_tokens"),
               *ct = json_object_get(usage, "completion_tokens");
        if (json_is_integer(pt)) A->resp->tokens_in = json_integer_value(pt);
        if (json_is_integer(ct)) A->resp->tokens_out = json_integer_value(ct);
    }
    if (!A->resp->id && json_is_string(json_object_get(o, "id")))
        A->resp->id = xstrdup(json_string_value(json_object_get(o, "id")));
    if (!A->resp->model && json_is_string(json_object_get(o, "model")))
        A->resp->model = xstrdup(json_string_value(json_object_get(o, "model")));
    if (dlen && sl_buf_append(A->content, delta, dlen)) {
        json_decref(o);
        A->fail = SL_BACKEND_MALFORMED;
        snprintf(A->fail_msg, sizeof A->fail_msg, "streamed answer longer than %zu bytes",
                 A->B->p.max_body);
        return -1;
    }
    struct sl_backend_chunk c = {data, len, delta, dlen};
    int stop = A->fn(A->user, &c);
    json_decref(o);
    A->n_chunks++;
    if (stop) {
        A->fail = SL_BACKEND_ABORTED;
        snprintf(A->fail_msg, sizeof A->fail_msg, "stopped by the caller");
        return -1;
    }
    return 0;
}

static size_t on_write(char *p, size_t size, size_t n, void *ud)
{
    struct attempt *A = ud;
    size_t len = size * n;
    if (A->first_byte == 0) A->first_byte = now_ms() - A->t0;
    long code = 0;
    curl_easy_getinfo(A->h, CURLINFO_RESPONSE_CODE, &code);
    if (!A->streaming || code < 200 || code >= 300) {
        if (sl_buf_append(&A->body, p, len)) {
            A->fail = SL_BACKEND_MALFORMED;
            snprintf(A->fail_msg, sizeof A->fail_msg, "response body larger than %zu bytes",
                     A->B->p.max_body);
            return 0; /* stops the transfer */
        }
        return len;
    }
    if (A->done) return len; /* bytes after [DONE]: ignored */
    if (sl_buf_append(&A->sse, p, len)) {
        A->fail = SL_BACKEND_MALFORMED;
        snprintf(A->fail_msg, sizeof A->fail_msg, "stream event larger than %u bytes",
                 SL_SSE_MAX_EVENT);
        return 0;
    }
    for (;;) {
        struct sl_sse_event ev;
        long r = sl_sse_next(A->sse.p, A->sse.len, A->last_len, &ev);
        if (r == SL_SSE_NEED_MORE) {
            A->last_len = A->sse.len;
            break;
        }
        if (r == SL_SSE_BAD) {
            A->fail = SL_BACKEND_MALFORMED;
            snprintf(A->fail_msg, sizeof A->fail_msg, "malformed event stream");
            return 0;
        }
        int stop = 0;
        if (ev.n_data == 1 && sl_sse_data_is(&ev, "[DONE]")) {
            A->done = true;
        } else if (ev.n_data == 1) {
            stop = deliver(A, ev.data[0].p, ev.data[0].len);
        } else if (ev.n_data > 1) {
            /* multi-line data: joined with "\n" as the SSE spec says */
            struct sl_buf j;
            sl_buf_init(&j, SL_SSE_MAX_EVENT);
            for (size_t k = 0; k < ev.n_data && !stop; k++)
                if ((k && sl_buf_append(&j, "\n", 1)) ||
                    sl_buf_append(&j, ev.data[k].p, ev.data[k].len))
                    stop = -1;
            if (!stop) stop = deliver(A, j.p, j.len);
            sl_buf_free(&j);
        }
        memmove(A->sse.p, A->sse.p + r, A->sse.len - (size_t)r);
        A->sse.len -= (size_t)r;
        A->last_len = 0;
        if (stop) return 0;
        if (A->done) break;
    }
    return len;
}

/* The "error.message" of an upstream error body, or its first bytes. */
static void error_text(const struct sl_buf *b, char *out, size_t n)
{
    out[0] = 0;
    if (!b->p || !b->len) return;
    json_t *o = json_loadb(b->p, b->len, 0, NULL);
    json_t *m = json_object_get(json_object_get(o, "error"), "message");
    if (!json_is_string(m)) m = json_object_get(o, "error");
    if (json_is_string(m))
        snprintf(out, n, "%s", json_string_value(m));
    else
        snprintf(out, n, "%.*s", (int)SL_MIN(b->len, (size_t)HTTP_ERRTEXT_MAX), b->p);
    json_decref(o);
    for (char *c = out; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
}

struct outcome {
    enum sl_backend_status st;
    int http;
    bool retry;
    long retry_after_ms;
    char msg[384];
};

/* Sends body to url once. For a stream, A->fn etc. are set by the caller. */
static void attempt_run(struct http_backend *B, struct attempt *A, const char *url,
                        const char *body, struct outcome *o)
{
    memset(o, 0, sizeof *o);
    o->retry_after_ms = -1;
    CURL *h = handle_take(B);
    struct curl_slist *hdr = NULL;
    if (!h) {
        o->st = SL_BACKEND_CONNECT;
        snprintf(o->msg, sizeof o->msg, "cannot create a curl handle (out of memory)");
        return;
    }
    A->h = h;
    A->retry_after_ms = -1;
    hdr = curl_slist_append(hdr, "Content-Type: application/json");
    hdr = curl_slist_append(hdr, "Expect:");
    if (A->streaming) hdr = curl_slist_append(hdr, "Accept: text/event-stream");
    if (B->auth_header) hdr = curl_slist_append(hdr, B->auth_header);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, B->p.connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, B->p.timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, A);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, A);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "sluice");
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode cc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    o->http = (int)code;
    o->retry_after_ms = A->retry_after_ms;
    curl_slist_free_all(hdr);
    if (A->fail != SL_BACKEND_OK) {
        /* our write callback stopped the transfer */
        o->st = A->fail;
        snprintf(o->msg, sizeof o->msg, "%s", A->fail_msg);
        if (A->fail == SL_BACKEND_MALFORMED && !A->streaming) o->st = SL_BACKEND_MALFORMED;
        handle_give(B, h);
        return;
    }
    if (cc != CURLE_OK) {
        bool timeout = cc == CURLE_OPERATION_TIMEDOUT;
        o->st = timeout ? SL_BACKEND_TIMEOUT : SL_BACKEND_CONNECT;
        /* connection errors are retried (unless a stream already delivered
         * chunks: the caller checks); a timeout is not: the time is spent */
        o->retry = !timeout;
        if (A->streaming && A->n_chunks > 0)
            o->st = timeout ? SL_BACKEND_TIMEOUT : SL_BACKEND_STREAM_CUT;
        snprintf(o->msg, sizeof o->msg, "%s", curl_easy_strerror(cc));
        /* a failed connection is not worth keeping */
        curl_easy_cleanup(h);
        return;
    }
    handle_give(B, h);
    if (code < 200 || code >= 300) {
        char et[HTTP_ERRTEXT_MAX + 1];
        error_text(&A->body, et, sizeof et);
        o->st = SL_BACKEND_HTTP;
        o->retry = code == 429 || code >= 500;
        snprintf(o->msg, sizeof o->msg, "HTTP %ld%s%s", code, et[0] ? ": " : "", et);
        return;
    }
    if (A->streaming && !A->done) {
        o->st = A->n_chunks ? SL_BACKEND_STREAM_CUT : SL_BACKEND_CONNECT;
        o->retry = A->n_chunks == 0;
        snprintf(o->msg, sizeof o->msg, "stream ended without [DONE] after %d chunks", A->n_chunks);
        return;
    }
    o->st = SL_BACKEND_OK;
}

/* Is this outcome the backend's fault (counts against the breaker)? */
static bool is_failure(const struct outcome *o)
{
    switch (o->st) {
    case SL_BACKEND_OK:
    case SL_BACKEND_ABORTED:
        return false;
    case SL_BACKEND_HTTP:
        return o->http == 429 || o->http >= 500;
    default:
        return true;
    }
}

/* ================================================================ parsing */

static int parse_logprobs(json_t *lp, struct sl_backend_resp *r)
{
    json_t *content = json_object_get(lp, "content");
    if (!json_is_array(content)) return 0;
    size_t n = json_array_size(content);
    if (n == 0) return 0;
    r->logprobs = calloc(n, sizeof *r->logprobs);
    if (!r->logprobs) return -1;
    for (size_t k = 0; k < n; k++) {
        json_t *e = json_array_get(content, k);
        struct sl_backend_logprob *l = &r->logprobs[k];
        json_t *t = json_object_get(e, "token"), *v = json_object_get(e, "logprob");
        if (!json_is_string(t) || !json_is_number(v)) return -1;
        l->token = xstrdup(json_string_value(t));
        l->logprob = json_number_value(v);
        r->n_logprobs = k + 1;
        json_t *top = json_object_get(e, "top_logprobs");
        size_t nt = json_is_array(top) ? json_array_size(top) : 0;
        for (size_t q = 0; q < nt && q < SL_BACKEND_MAX_TOP; q++) {
            json_t *te = json_array_get(top, q);
            json_t *tt = json_object_get(te, "token"), *tv = json_object_get(te, "logprob");
            if (!json_is_string(tt) || !json_is_number(tv)) return -1;
            l->top[q].token = xstrdup(json_string_value(tt));
            l->top[q].logprob = json_number_value(tv);
            l->n_top = (int)q + 1;
        }
    }
    return 0;
}

/* A chat.completion body into resp. Returns 0 or -1 with why in msg. */
static int parse_completion(const struct sl_buf *b, struct sl_backend_resp *r, char *msg, size_t n)
{
    json_error_t je;
    json_t *o = b->p ? json_loadb(b->p, b->len, 0, &je) : NULL;
    int rc = -1;
    if (!o) {
        snprintf(msg, n, "response is not JSON (%s at byte %d)", b->p ? je.text : "empty body",
                 b->p ? je.position : 0);
        return -1;
    }
    json_t *ch = json_array_get(json_object_get(o, "choices"), 0);
    json_t *m = json_object_get(ch, "message");
    json_t *c = json_object_get(m, "content");
    if (!json_is_object(o) || !json_is_object(ch) || !json_is_object(m) ||
        !(json_is_string(c) || json_is_null(c))) {
        snprintf(msg, n, "response has no choices[0].message.content string");
        goto out;
    }
    r->content = xstrdup(json_is_string(c) ? json_string_value(c) : "");
    json_t *fr = json_object_get(ch, "finish_reason");
    if (json_is_string(fr)) r->finish_reason = xstrdup(json_string_value(fr));
    if (json_is_string(json_object_get(o, "id")))
        r->id = xstrdup(json_string_value(json_object_get(o, "id")));
    if (json_is_string(json_object_get(o, "model")))
        r->model = xstrdup(json_string_value(json_object_get(o, "model")));
    json_t *u = json_object_get(o, "usage");
    json_t *pt = json_object_get(u, "prompt_tokens"), *ct = json_object_get(u, "completion_tokens");
    if (json_is_integer(pt)) r->tokens_in = json_integer_value(pt);
    if (json_is_integer(ct)) r->tokens_out = json_integer_value(ct);
    json_t *lp = json_object_get(ch, "logprobs");
    if (json_is_object(lp) && parse_logprobs(lp, r)) {
        snprintf(msg, n, "response has malformed choices[0].logprobs");
        goto out;
    }
    if (!r->content) {
        snprintf(msg, n, "out of memory");
        goto out;
    }
    rc = 0;
out:
    json_decref(o);
    return rc;
}

/* ================================================================ the call loop */

/* Runs attempts until success, a non-retryable outcome or retries run out.
 * For complete/embed, parse() turns a 2xx body into resp. */
static int call(struct http_backend *B, const char *url, json_t *jbody, bool stream,
                sl_backend_chunk_fn fn, void *user, struct sl_backend_resp *resp,
                int (*parse)(const struct sl_buf *, void *, char *, size_t), void *parse_ctx,
                struct sl_err *err)
{
    double t0 = now_ms();
    char *body = json_dumps(jbody, JSON_COMPACT);
    struct sl_buf content;
    struct outcome o;
    int rc = 0;
    memset(&o, 0, sizeof o);
    sl_buf_init(&content, B->p.max_body);
    resp->status = SL_BACKEND_OK;
    resp->tokens_in = resp->tokens_out = -1;
    if (!body) return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    for (int a = 0;; a++) {
        if (B->p.breaker_enabled && !sl_breaker_allow(&B->breaker)) {
            resp->status = SL_BACKEND_BREAKER_OPEN;
            rc = sl_err_set(err, SL_EIO, "backend '%s': circuit breaker open, not tried%s%s",
                            B->name, a ? "; last attempt: " : "", a ? o.msg : "");
            goto out;
        }
        struct attempt A;
        memset(&A, 0, sizeof A);
        A.B = B;
        A.t0 = t0;
        A.streaming = stream;
        A.fn = fn;
        A.user = user;
        A.content = &content;
        A.resp = resp;
        sl_buf_init(&A.body, B->p.max_body);
        sl_buf_init(&A.sse, 2 * (size_t)SL_SSE_MAX_EVENT);
        resp->attempts = a + 1;
        attempt_run(B, &A, url, body, &o);
        if (A.first_byte > 0 && resp->first_byte_ms == 0) resp->first_byte_ms = A.first_byte;
        char pmsg[256];
        if (o.st == SL_BACKEND_OK && parse && parse(&A.body, parse_ctx, pmsg, sizeof pmsg)) {
            o.st = SL_BACKEND_MALFORMED;
            snprintf(o.msg, sizeof o.msg, "%s", pmsg);
        }
        int delivered = A.n_chunks;
        sl_buf_free(&A.body);
        sl_buf_free(&A.sse);
        resp->http_status = o.http;
        if (B->p.breaker_enabled) sl_breaker_record(&B->breaker, !is_failure(&o));
        if (o.st == SL_BACKEND_OK) break;
        /* retry? never after chunks reached the caller */
        bool retry = o.retry && !delivered && a < B->p.max_retries;
        long delay = 0;
        if (retry) {
            long base = sl_backend_http_backoff_ms(&B->p, a);
            delay =
                base / 2 + (base > 1 ? (long)(rng_next(B) % (unsigned)(base - base / 2 + 1)) : 0);
            if (o.retry_after_ms >= 0) {
                if (o.retry_after_ms > B->p.retry_after_max_ms)
                    retry = false;
                else
                    delay = o.retry_after_ms;
            }
        }
        if (!retry) {
            resp->status = o.st;
            rc = sl_err_set(err, o.st == SL_BACKEND_ABORTED ? SL_EINVAL : SL_EIO,
                            "backend '%s': %s: %s (%s, %d attempt%s)", B->name, url, o.msg,
                            sl_backend_status_name(o.st), a + 1, a ? "s" : "");
            goto out;
        }
        B->p.sleep_ms(B->p.sleep_ctx, delay);
    }
    if (stream) {
        resp->content = sl_buf_take(&content, NULL);
        if (!resp->content) resp->content = xstrdup("");
    }
out:
    resp->latency_ms = now_ms() - t0;
    if (stream && !resp->content) resp->content = sl_buf_take(&content, NULL);
    sl_buf_free(&content);
    free(body);
    return rc;
}

static int parse_chat(const struct sl_buf *b, void *ctx, char *msg, size_t n)
{
    struct sl_backend_resp *r = ctx;
    return parse_completion(b, r, msg, n);
}

static int h_complete(void *ctx, const struct sl_backend_req *req, struct sl_backend_resp *resp,
                      struct sl_err *err)
{
    struct http_backend *B = ctx;
    memset(resp, 0, sizeof *resp);
    json_t *body = build_body(B, req, false);
    if (!body) return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    int rc = call(B, B->url_chat, body, false, NULL, NULL, resp, parse_chat, resp, err);
    json_decref(body);
    if (rc) {
        /* keep status/attempts/latency; drop any half-parsed fields */
        struct sl_backend_resp keep = {.status = resp->status,
                                       .http_status = resp->http_status,
                                       .attempts = resp->attempts,
                                       .latency_ms = resp->latency_ms,
                                       .first_byte_ms = resp->first_byte_ms,
                                       .tokens_in = -1,
                                       .tokens_out = -1};
        sl_backend_resp_free(resp);
        *resp = keep;
    }
    return rc;
}

static int h_stream(void *ctx, const struct sl_backend_req *req, sl_backend_chunk_fn fn, void *user,
                    struct sl_backend_resp *resp, struct sl_err *err)
{
    struct http_backend *B = ctx;
    memset(resp, 0, sizeof *resp);
    json_t *body = build_body(B, req, true);
    if (!body) return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    int rc = call(B, B->url_chat, body, true, fn, user, resp, NULL, NULL, err);
    json_decref(body);
    return rc;
}

/* ================================================================ embeddings */

struct embed_out {
    size_t n;
    float *v;
    int dim;
};

static int parse_embed(const struct sl_buf *b, void *ctx, char *msg, size_t mn)
{
    struct embed_out *E = ctx;
    json_error_t je;
    json_t *o = b->p ? json_loadb(b->p, b->len, 0, &je) : NULL;
    json_t *data = json_object_get(o, "data");
    int rc = -1;
    if (!json_is_array(data) || json_array_size(data) != E->n) {
        snprintf(msg, mn, "embeddings response needs a data array of %zu entries", E->n);
        goto out;
    }
    for (size_t k = 0; k < E->n; k++) {
        json_t *d = json_array_get(data, k);
        json_t *emb = json_object_get(d, "embedding"), *ix = json_object_get(d, "index");
        size_t row = json_is_integer(ix) ? (size_t)json_integer_value(ix) : k;
        if (!json_is_array(emb) || json_array_size(emb) == 0 || row >= E->n ||
            json_array_size(emb) > (1u << 16)) {
            snprintf(msg, mn, "embeddings response: data[%zu] has no usable embedding", k);
            goto out;
        }
        if (!E->v) {
            E->dim = (int)json_array_size(emb);
            E->v = calloc(E->n * (size_t)E->dim, sizeof *E->v);
            if (!E->v) {
                snprintf(msg, mn, "out of memory");
                goto out;
            }
        }
        if ((int)json_array_size(emb) != E->dim) {
            snprintf(msg, mn, "embeddings response: data[%zu] has %zu dims, data[0] %d", k,
                     json_array_size(emb), E->dim);
            goto out;
        }
        for (int q = 0; q < E->dim; q++) {
            json_t *x = json_array_get(emb, (size_t)q);
            if (!json_is_number(x)) {
                snprintf(msg, mn, "embeddings response: data[%zu][%d] is not a number", k, q);
                goto out;
            }
            E->v[row * (size_t)E->dim + (size_t)q] = (float)json_number_value(x);
        }
    }
    rc = 0;
out:
    json_decref(o);
    if (rc) {
        free(E->v);
        E->v = NULL;
    }
    return rc;
}

static int h_embed(void *ctx, const char *const *texts, size_t n, float **out, int *dim,
                   struct sl_err *err)
{
    struct http_backend *B = ctx;
    *out = NULL;
    *dim = 0;
    if (n == 0) return sl_err_set(err, SL_EINVAL, "%s: nothing to embed", __func__);
    json_t *o = json_object(), *in = json_array();
    json_object_set_new(o, "model", json_string(B->model));
    for (size_t k = 0; k < n; k++)
        json_array_append_new(in, json_string(texts[k] ? texts[k] : ""));
    json_object_set_new(o, "input", in);
    struct embed_out E = {n, NULL, 0};
    struct sl_backend_resp resp;
    memset(&resp, 0, sizeof resp);
    int rc = call(B, B->url_embed, o, false, NULL, NULL, &resp, parse_embed, &E, err);
    json_decref(o);
    sl_backend_resp_free(&resp);
    if (rc) {
        free(E.v);
        return rc;
    }
    *out = E.v;
    *dim = E.dim;
    return 0;
}

/* ================================================================ life cycle */

static void h_free(void *ctx)
{
    struct http_backend *B = ctx;
    if (!B) return;
    for (int k = 0; k < B->n_idle; k++)
        curl_easy_cleanup(B->idle[k]);
    if (B->auth_header) {
        explicit_bzero(B->auth_header, strlen(B->auth_header)); /* no key left in freed memory */
        free(B->auth_header);
    }
    sl_breaker_free(&B->breaker);
    pthread_mutex_destroy(&B->mu);
    free(B);
}

static const struct sl_backend_i http_iface = {
    .kind = "openai",
    .complete = h_complete,
    .stream = h_stream,
    .embed = h_embed,
    .free = h_free,
};

struct sl_backend_http_params sl_backend_http_default_params(void)
{
    struct sl_backend_http_params p = {
        .name = "openai",
        .connect_timeout_ms = 3000,
        .timeout_ms = 60000,
        .max_retries = 2,
        .backoff_base_ms = 250,
        .backoff_max_ms = 8000,
        .retry_after_max_ms = 10000,
        .max_body = 8u << 20,
        .max_idle_handles = 8,
        .breaker_enabled = true,
        .breaker = sl_breaker_default_params(),
    };
    return p;
}

struct sl_breaker *sl_backend_http_breaker(void *ctx)
{
    return &((struct http_backend *)ctx)->breaker;
}

int sl_backend_http_new(struct sl_backend *out, const struct sl_backend_http_params *p,
                        struct sl_err *err)
{
    out->iface = NULL;
    out->ctx = NULL;
    if (!p || !p->base_url || !*p->base_url || !p->model || !*p->model)
        return sl_err_set(err, SL_EINVAL, "%s: an openai backend needs base_url and model",
                          __func__);
    const char *name = p->name ? p->name : "openai";
    const char *key = NULL;
    if (p->api_key_env && *p->api_key_env) {
        key = getenv(p->api_key_env);
        if (!key || !*key)
            return sl_err_set(err, SL_EINVAL,
                              "%s: backend '%s': environment variable %s (its API key) is not set",
                              __func__, name, p->api_key_env);
    }
    size_t ul = strlen(p->base_url);
    while (ul > 0 && p->base_url[ul - 1] == '/')
        ul--;
    if (ul + 32 > HTTP_URL_MAX || strlen(p->model) >= 256)
        return sl_err_set(err, SL_ERANGE, "%s: backend '%s': base_url or model name too long",
                          __func__, name);
    if (strncmp(p->base_url, "http://", 7) && strncmp(p->base_url, "https://", 8))
        return sl_err_set(err, SL_EINVAL,
                          "%s: backend '%s': base_url '%s' must start with http:// "
                          "or https://",
                          __func__, name, p->base_url);
    pthread_once(&curl_once, curl_init_once);
    struct http_backend *B = calloc(1, sizeof *B);
    if (!B) return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    B->p = *p;
    if (B->p.max_retries < 0) B->p.max_retries = 0;
    if (B->p.max_retries > 10) B->p.max_retries = 10;
    if (B->p.backoff_base_ms < 1) B->p.backoff_base_ms = 1;
    if (B->p.backoff_max_ms < B->p.backoff_base_ms) B->p.backoff_max_ms = B->p.backoff_base_ms;
    if (B->p.max_body == 0) B->p.max_body = 8u << 20;
    if (B->p.max_idle_handles < 0) B->p.max_idle_handles = 0;
    if (!B->p.sleep_ms) B->p.sleep_ms = default_sleep;
    B->p.name = NULL; /* borrowed strings are copied below, not kept */
    B->p.base_url = B->p.model = B->p.api_key_env = NULL;
    snprintf(B->name, sizeof B->name, "%s", name);
    snprintf(B->url_chat, sizeof B->url_chat, "%.*s/chat/completions", (int)ul, p->base_url);
    snprintf(B->url_embed, sizeof B->url_embed, "%.*s/embeddings", (int)ul, p->base_url);
    snprintf(B->model, sizeof B->model, "%s", p->model);
    B->rng = p->jitter_seed ? p->jitter_seed : (unsigned)time(NULL) ^ (unsigned)(uintptr_t)B;
    if (!B->rng) B->rng = 1;
    pthread_mutex_init(&B->mu, NULL);
    sl_breaker_init(&B->breaker, &p->breaker);
    if (key) {
        size_t kl = strlen(key) + 32;
        B->auth_header = malloc(kl);
        if (!B->auth_header) {
            h_free(B);
            return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
        }
        snprintf(B->auth_header, kl, "Authorization: Bearer %s", key);
    }
    out->iface = &http_iface;
    out->ctx = B;
    return 0;
}
