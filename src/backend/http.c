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
 * Classify/extract tasks (the `task` call) go through the same loop, as a
 * chat prompt or to a sluice server's task endpoints (section "tasks").
 */
#include "backend/http.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "backend/sse_parse.h"
#include "base/buf.h"
#include "config/config.h"

#define HTTP_MAX_HANDLES 64
#define HTTP_URL_MAX 1024
#define HTTP_ERRTEXT_MAX 200

struct http_backend {
    struct sl_backend_http_params p;
    char name[64];
    char url_chat[HTTP_URL_MAX];
    char url_embed[HTTP_URL_MAX];
    char url_classify[HTTP_URL_MAX]; /* task_api sluice */
    char url_extract[HTTP_URL_MAX];
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
    int (*stop)(void *); /* the request's stop, or NULL */
    void *stop_user;
};

/* curl's progress callback: give the transfer up when the caller says so */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    struct attempt *A = ud;
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    if (!A->stop(A->stop_user)) return 0;
    A->fail = SL_BACKEND_ABORTED;
    snprintf(A->fail_msg, sizeof A->fail_msg, "stopped by the caller (the client went away)");
    return 1;
}

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
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, A->stop ? 0L : 1L);
    if (A->stop) {
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, A);
    }
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
/* What a call is for beyond its body: the stream callback, the caller's
 * stop, the parser of a whole answer. */
struct call_io {
    bool stream;
    sl_backend_chunk_fn fn;
    void *user;
    int (*stop)(void *);
    void *stop_user;
    int (*parse)(const struct sl_buf *, void *, char *, size_t);
    void *parse_ctx;
};

static int call(struct http_backend *B, const char *url, json_t *jbody, const struct call_io *io,
                struct sl_backend_resp *resp, struct sl_err *err)
{
    const bool stream = io->stream;
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
        A.fn = io->fn;
        A.user = io->user;
        A.stop = io->stop;
        A.stop_user = io->stop_user;
        A.content = &content;
        A.resp = resp;
        sl_buf_init(&A.body, B->p.max_body);
        sl_buf_init(&A.sse, 2 * (size_t)SL_SSE_MAX_EVENT);
        resp->attempts = a + 1;
        attempt_run(B, &A, url, body, &o);
        if (A.first_byte > 0 && resp->first_byte_ms == 0) resp->first_byte_ms = A.first_byte;
        char pmsg[256];
        if (o.st == SL_BACKEND_OK && io->parse && io->parse(&A.body, io->parse_ctx, pmsg, sizeof pmsg)) {
            o.st = SL_BACKEND_MALFORMED;
            snprintf(o.msg, sizeof o.msg, "%s", pmsg);
        }
        int delivered = A.n_chunks;
        sl_buf_free(&A.body);
        sl_buf_free(&A.sse);
        resp->http_status = o.http;
        if (B->p.breaker_enabled) sl_breaker_record(&B->breaker, !is_failure(&o));
        if (o.st == SL_BACKEND_OK) break;
        /* retry? never after chunks reached the caller, nor for a caller
         * that has gone */
        bool retry = o.retry && !delivered && a < B->p.max_retries && !(io->stop && io->stop(io->stop_user));
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
    resp->confidence = -1; /* an upstream reports none; the router derives it from logprobs */
    json_t *body = build_body(B, req, false);
    if (!body) return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    const struct call_io io = {.stop = req->should_stop, .stop_user = req->stop_user, .parse = parse_chat, .parse_ctx = resp};
    int rc = call(B, B->url_chat, body, &io, resp, err);
    json_decref(body);
    if (rc) {
        /* keep status/attempts/latency; drop any half-parsed fields */
        struct sl_backend_resp keep = {.status = resp->status,
                                       .http_status = resp->http_status,
                                       .attempts = resp->attempts,
                                       .latency_ms = resp->latency_ms,
                                       .first_byte_ms = resp->first_byte_ms,
                                       .tokens_in = -1,
                                       .tokens_out = -1,
                                       .confidence = -1};
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
    resp->confidence = -1;
    json_t *body = build_body(B, req, true);
    if (!body) return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    const struct call_io io = {.stream = true, .fn = fn, .user = user, .stop = req->should_stop, .stop_user = req->stop_user};
    int rc = call(B, B->url_chat, body, &io, resp, err);
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
    const struct call_io io = {.parse = parse_embed, .parse_ctx = &E};
    int rc = call(B, B->url_embed, o, &io, &resp, err);
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

/* ================================================================ tasks */

/*
 * classify / extract on a remote backend (docs/router.md "Task calls").
 *
 * task_api chat: one user message renders the task (instruction, labels
 * with descriptions, examples, the input) and asks for exactly one label,
 * temperature 0 with log-probabilities; the answer is mapped to a label
 * (trimmed, case-insensitive: exact, then the longest label the answer
 * starts with, then the one label that starts with the answer). Extract
 * sends the schema as response_format json_schema and parses the object.
 *
 * task_api sluice: POST {base_url}/classify or /extract with
 * {"model", "task", "input": [input]} and read sluice's own answer.
 */

#define TASK_TOP_LOGPROBS 5
#define TASK_EXTRACT_MAX_TOKENS 512

static const char default_classify_instruction[] =
    "Classify the input into exactly one of the labels below.";
static const char default_extract_instruction[] =
    "Extract the information from the input as one JSON object that follows the schema.";

/* The classify prompt for a chat model into b. 0 or -1 (too long). */
static int classify_prompt(struct sl_buf *b, const struct sl_task_config *t, const char *input)
{
    int rc = sl_buf_appendf(b, "%s\n\nLabels:\n",
                            t->instruction ? t->instruction : default_classify_instruction);
    for (size_t k = 0; k < t->n_labels && !rc; k++) {
        const char *d = t->descriptions ? t->descriptions[k] : NULL;
        rc = d ? sl_buf_appendf(b, "- %s: %s\n", t->labels[k], d)
               : sl_buf_appendf(b, "- %s\n", t->labels[k]);
    }
    if (t->n_examples && !rc) rc = sl_buf_appendf(b, "\nExamples:\n");
    for (size_t k = 0; k < t->n_examples && !rc; k++)
        rc = sl_buf_appendf(b, "Input: %s\nLabel: %s\n\n", t->ex_inputs[k], t->ex_labels[k]);
    if (!rc)
        rc = sl_buf_appendf(b,
                            "\nInput: %s\n\nAnswer with exactly one label from the list, "
                            "written as in the list, and nothing else.",
                            input);
    return rc ? -1 : 0;
}

static int extract_prompt(struct sl_buf *b, const struct sl_task_config *t, const char *input)
{
    int rc = sl_buf_appendf(b,
                            "%s\n\nJSON Schema:\n%s\n\nInput: %s\n\nAnswer with the JSON object "
                            "only.",
                            t->instruction ? t->instruction : default_extract_instruction,
                            t->schema ? t->schema : "{}", input);
    return rc ? -1 : 0;
}

static bool is_trim(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '"' || c == '\'' || c == '`' ||
           c == '*' || c == '.';
}

static bool is_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

/* s[0..*n) without surrounding blanks, quotes, backticks, '*', '.', and a
 * leading "Label:". */
static const char *answer_trim(const char *s, size_t *n)
{
    size_t a = 0, e = strlen(s);
    for (int pass = 0; pass < 2; pass++) {
        while (a < e && is_trim((unsigned char)s[a]))
            a++;
        while (e > a && is_trim((unsigned char)s[e - 1]))
            e--;
        if (pass == 0 && e - a >= 6 && !strncasecmp(s + a, "label:", 6))
            a += 6;
        else
            break;
    }
    *n = e - a;
    return s + a;
}

/* The label an answer names, or -1. */
static int32_t match_label(const struct sl_task_config *t, const char *answer)
{
    size_t n;
    const char *a = answer_trim(answer, &n);
    if (n == 0) return -1;
    for (size_t k = 0; k < t->n_labels; k++) /* exact */
        if (strlen(t->labels[k]) == n && !strncasecmp(t->labels[k], a, n)) return (int32_t)k;
    int32_t best = -1;
    size_t best_len = 0;
    for (size_t k = 0; k < t->n_labels; k++) { /* the answer starts with a label */
        size_t ll = strlen(t->labels[k]);
        if (ll && ll < n && ll > best_len && !strncasecmp(t->labels[k], a, ll) &&
            !is_alnum((unsigned char)a[ll]))
            best = (int32_t)k, best_len = ll;
    }
    if (best >= 0) return best;
    int32_t only = -1;
    for (size_t k = 0; k < t->n_labels; k++) /* a label starts with the answer */
        if (strlen(t->labels[k]) > n && !strncasecmp(t->labels[k], a, n)) {
            if (only >= 0) return -1; /* ambiguous */
            only = (int32_t)k;
        }
    return only;
}

/* The one label a token's text could begin (ignoring leading blanks and
 * case), or -1 (none, several, or only blanks). */
static int32_t token_label(const struct sl_task_config *t, const char *tok)
{
    size_t n;
    const char *a = answer_trim(tok, &n);
    if (n == 0) return -1;
    int32_t only = -1;
    for (size_t k = 0; k < t->n_labels; k++) {
        size_t ll = strlen(t->labels[k]);
        bool starts = ll >= n
                          ? !strncasecmp(t->labels[k], a, n)
                          : !strncasecmp(t->labels[k], a, ll) && !is_alnum((unsigned char)a[ll]);
        if (!starts) continue;
        if (only >= 0) return -1;
        only = (int32_t)k;
    }
    return only;
}

/* Confidence (and per-label probabilities) of a classify answer from the
 * log-probabilities of its tokens:
 *   p_seq = exp(sum of the answer tokens' logprobs), the probability of
 *   this exact answer text;
 *   when the answer's first non-blank token already names one label and
 *   top alternatives came back for it, P(label) = the sum of the
 *   probabilities of the alternatives that name that same label alone
 *   ("Spam", " spam", "SP"...), which counts the other spellings p_seq
 *   misses; probs[] gets that sum for every label.
 * No logprobs: confidence -1 (none). */
static int classify_confidence(const struct sl_task_config *t, const struct sl_backend_resp *r,
                               struct sl_backend_task_resp *out)
{
    out->confidence = -1;
    if (!r->logprobs || r->n_logprobs == 0) return 0;
    if (out->label < 0) {
        out->confidence = 0;
        return 0;
    }
    double sum = 0;
    for (size_t k = 0; k < r->n_logprobs; k++)
        sum += r->logprobs[k].logprob;
    out->confidence = exp(sum);
    size_t f = 0;
    while (f < r->n_logprobs && token_label(t, r->logprobs[f].token) < 0) {
        size_t n;
        answer_trim(r->logprobs[f].token, &n);
        if (n) return 0; /* the first real token is shared by several labels */
        f++;
    }
    if (f == r->n_logprobs || token_label(t, r->logprobs[f].token) != out->label) return 0;
    const struct sl_backend_logprob *lp = &r->logprobs[f];
    if (lp->n_top == 0) return 0;
    float *probs = calloc(t->n_labels, sizeof *probs);
    if (!probs) return -1;
    bool chosen_in_top = false;
    double mass = 0; /* of the chosen label, in double */
    for (int q = 0; q < lp->n_top; q++) {
        if (lp->top[q].token && !strcmp(lp->top[q].token, lp->token)) chosen_in_top = true;
        int32_t l = token_label(t, lp->top[q].token);
        if (l >= 0) probs[l] += (float)exp(lp->top[q].logprob);
        if (l == out->label) mass += exp(lp->top[q].logprob);
    }
    if (!chosen_in_top) {
        probs[out->label] += (float)exp(lp->logprob);
        mass += exp(lp->logprob);
    }
    for (size_t k = 0; k < t->n_labels; k++)
        if (probs[k] > 1.0f) probs[k] = 1.0f;
    if (mass > out->confidence) out->confidence = mass > 1 ? 1 : mass;
    out->probs = probs;
    out->n_probs = t->n_labels;
    return 0;
}

/* The JSON object of an extract answer (```json fences allowed), as
 * compact text, or NULL with why in msg. */
static char *extract_object(const char *content, char *msg, size_t n)
{
    const char *a = content, *e = content + strlen(content);
    while (a < e && (*a == ' ' || *a == '\n' || *a == '\r' || *a == '\t'))
        a++;
    if (e - a >= 3 && !strncmp(a, "```", 3)) { /* a fenced block */
        const char *nl = memchr(a, '\n', (size_t)(e - a));
        a = nl ? nl + 1 : e;
        const char *close = NULL;
        for (const char *p = a; p + 3 <= e; p++)
            if (!strncmp(p, "```", 3)) close = p;
        if (close) e = close;
    }
    json_error_t je;
    json_t *o = json_loadb(a, (size_t)(e - a), 0, &je);
    if (!json_is_object(o)) {
        snprintf(msg, n, "the answer is not a JSON object (%.60s): %.60s",
                 o ? "another JSON value" : je.text, content);
        json_decref(o);
        return NULL;
    }
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s) snprintf(msg, n, "out of memory");
    return s;
}

/* task_api sluice: the first entry of a /v1/classify or /v1/extract answer. */
struct sluice_task_ctx {
    const struct sl_task_config *task;
    bool classify;
    struct sl_backend_task_resp *out;
};

static int parse_sluice_task(const struct sl_buf *b, void *ctx, char *msg, size_t n)
{
    struct sluice_task_ctx *S = ctx;
    struct sl_backend_task_resp *r = S->out;
    json_error_t je;
    json_t *o = b->p ? json_loadb(b->p, b->len, 0, &je) : NULL;
    int rc = -1;
    if (!json_is_object(o)) {
        snprintf(msg, n, "response is not a JSON object (%s)", o ? "another value" : je.text);
        goto out;
    }
    json_t *d = json_array_get(json_object_get(o, "data"), 0);
    json_t *conf = json_object_get(d, "confidence");
    if (!json_is_object(d) || !json_is_number(conf)) {
        snprintf(msg, n, "response has no data[0] with a confidence");
        goto out;
    }
    r->confidence = json_number_value(conf);
    if (S->classify) {
        json_t *lab = json_object_get(d, "label");
        if (!json_is_string(lab)) {
            snprintf(msg, n, "response has no data[0].label string");
            goto out;
        }
        r->content = xstrdup(json_string_value(lab));
        r->label = -1;
        for (size_t k = 0; k < S->task->n_labels; k++)
            if (!strcmp(S->task->labels[k], json_string_value(lab))) r->label = (int32_t)k;
        json_t *probs = json_object_get(d, "probs");
        if (json_is_object(probs) && S->task->n_labels) {
            r->probs = calloc(S->task->n_labels, sizeof *r->probs);
            if (!r->probs) goto oom;
            r->n_probs = S->task->n_labels;
            for (size_t k = 0; k < S->task->n_labels; k++) {
                json_t *p = json_object_get(probs, S->task->labels[k]);
                if (json_is_number(p)) r->probs[k] = (float)json_number_value(p);
            }
        }
    } else {
        json_t *out = json_object_get(d, "output");
        if (!json_is_object(out)) {
            snprintf(msg, n, "response has no data[0].output object");
            goto out;
        }
        r->json = json_dumps(out, JSON_COMPACT);
        r->content = xstrdup(r->json);
        if (!r->json) goto oom;
    }
    if (!r->content) goto oom;
    if (json_is_string(json_object_get(o, "model")))
        r->model = xstrdup(json_string_value(json_object_get(o, "model")));
    json_t *u = json_object_get(o, "usage");
    json_t *pt = json_object_get(u, "prompt_tokens"), *ct = json_object_get(u, "completion_tokens");
    if (json_is_integer(pt)) r->tokens_in = json_integer_value(pt);
    if (json_is_integer(ct)) r->tokens_out = json_integer_value(ct);
    rc = 0;
    goto out;
oom:
    snprintf(msg, n, "out of memory");
out:
    if (rc) { /* a retry starts clean */
        long long ti = r->tokens_in, to = r->tokens_out;
        sl_backend_task_resp_free(r);
        r->label = -1;
        r->confidence = -1;
        r->tokens_in = ti;
        r->tokens_out = to;
    }
    json_decref(o);
    return rc;
}

static int task_sluice(struct http_backend *B, const struct sl_backend_task_req *req, bool classify,
                       struct sl_backend_task_resp *resp, struct sl_err *err)
{
    json_t *o = json_pack("{s:s,s:s,s:[s]}", "model", B->model, "task", req->task->name, "input",
                          req->input);
    if (!o) return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    struct sluice_task_ctx S = {req->task, classify, resp};
    struct sl_backend_resp cr;
    memset(&cr, 0, sizeof cr);
    const struct call_io io = {.stop = req->should_stop, .stop_user = req->stop_user, .parse = parse_sluice_task, .parse_ctx = &S};
    int rc = call(B, classify ? B->url_classify : B->url_extract, o, &io, &cr, err);
    json_decref(o);
    resp->status = cr.status;
    resp->http_status = cr.http_status;
    resp->attempts = cr.attempts;
    resp->latency_ms = cr.latency_ms;
    sl_backend_resp_free(&cr);
    return rc;
}

static int task_chat(struct http_backend *B, const struct sl_backend_task_req *req, bool classify,
                     struct sl_backend_task_resp *resp, struct sl_err *err)
{
    const struct sl_task_config *t = req->task;
    struct sl_buf prompt;
    struct sl_backend_resp cr;
    json_t *body = NULL;
    int rc = 0;
    memset(&cr, 0, sizeof cr);
    sl_buf_init(&prompt, 0);
    if (classify ? classify_prompt(&prompt, t, req->input)
                 : extract_prompt(&prompt, t, req->input)) {
        rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
        goto out; /* allocation failure */
    }
    struct sl_chat_msg msg = {"user", prompt.p};
    struct sl_backend_req q;
    sl_backend_req_init(&q);
    q.msgs = &msg;
    q.n_msgs = 1;
    q.temperature = 0;
    q.logprobs = true;
    q.should_stop = req->should_stop;
    q.stop_user = req->stop_user;
    if (classify) {
        size_t longest = 0;
        for (size_t k = 0; k < t->n_labels; k++)
            longest = SL_MAX(longest, strlen(t->labels[k]));
        q.max_tokens = (int)SL_MIN(longest + 8, (size_t)128); /* a label, never an essay */
        q.top_logprobs = TASK_TOP_LOGPROBS;
    } else {
        q.max_tokens = t->max_tokens > 0 ? (int)SL_MIN(t->max_tokens, (int64_t)1 << 20)
                                         : TASK_EXTRACT_MAX_TOKENS;
    }
    body = build_body(B, &q, false);
    if (!body) {
        rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
        goto out; /* allocation failure */
    }
    if (!classify) {
        json_error_t je;
        json_t *schema = json_loads(t->schema ? t->schema : "{}", 0, &je);
        if (!json_is_object(schema)) {
            json_decref(schema);
            rc = sl_err_set(err, SL_EINVAL, "%s: task '%s': schema is not a JSON object", __func__,
                            t->name);
            goto out; /* bad task */
        }
        json_t *rf = json_pack("{s:s,s:{s:s,s:o,s:b}}", "type", "json_schema", "json_schema",
                               "name", "extract", "schema", schema, "strict", 1);
        if (!rf) {
            rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
            goto out; /* allocation failure */
        }
        json_object_set_new(body, "response_format", rf);
    }
    const struct call_io io = {.stop = q.should_stop, .stop_user = q.stop_user, .parse = parse_chat, .parse_ctx = &cr};
    rc = call(B, B->url_chat, body, &io, &cr, err);
    resp->status = cr.status;
    resp->http_status = cr.http_status;
    resp->attempts = cr.attempts;
    resp->latency_ms = cr.latency_ms;
    if (rc) goto out; /* the call failed: status says how */
    resp->tokens_in = cr.tokens_in;
    resp->tokens_out = cr.tokens_out;
    resp->model = xstrdup(cr.model);
    resp->content = xstrdup(cr.content);
    if (!resp->content || (cr.model && !resp->model)) {
        rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
        goto out; /* allocation failure */
    }
    if (classify) {
        resp->label = match_label(t, cr.content);
        if (classify_confidence(t, &cr, resp)) {
            rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
            goto out; /* allocation failure */
        }
    } else {
        char why[256];
        resp->json = extract_object(cr.content, why, sizeof why);
        if (!resp->json) {
            resp->status = SL_BACKEND_MALFORMED;
            rc = sl_err_set(err, SL_EFORMAT, "backend '%s': task '%s': %s", B->name, t->name, why);
            goto out; /* not an object */
        }
        /* the least sure token, as the local extractor's confidence */
        if (cr.n_logprobs) {
            double lo = 0;
            for (size_t k = 0; k < cr.n_logprobs; k++)
                lo = SL_MIN(lo, cr.logprobs[k].logprob);
            resp->confidence = exp(lo);
        }
    }
out:
    json_decref(body);
    sl_buf_free(&prompt);
    sl_backend_resp_free(&cr);
    return rc;
}

static int h_task(void *ctx, const struct sl_backend_task_req *req,
                  struct sl_backend_task_resp *resp, struct sl_err *err)
{
    struct http_backend *B = ctx;
    memset(resp, 0, sizeof *resp);
    resp->label = -1;
    resp->confidence = -1;
    resp->tokens_in = resp->tokens_out = -1;
    if (!req || !req->task || !req->input)
        return sl_err_set(err, SL_EINVAL, "%s: a task call needs a task and an input", __func__);
    const struct sl_task_config *t = req->task;
    bool classify = t->kind == SL_TASK_CLASSIFY;
    if (!classify && t->kind != SL_TASK_EXTRACT)
        return sl_err_set(err, SL_EINVAL, "%s: task '%s' is neither classify nor extract", __func__,
                          t->name ? t->name : "?");
    if (classify && t->n_labels == 0)
        return sl_err_set(err, SL_EINVAL, "%s: task '%s' has no labels", __func__, t->name);
    int rc = B->p.task_api == SL_TASK_API_SLUICE ? task_sluice(B, req, classify, resp, err)
                                                 : task_chat(B, req, classify, resp, err);
    if (rc) { /* keep what says how it failed; drop partial answers */
        struct sl_backend_task_resp keep = {.status = resp->status,
                                            .http_status = resp->http_status,
                                            .attempts = resp->attempts,
                                            .latency_ms = resp->latency_ms,
                                            .label = -1,
                                            .confidence = -1,
                                            .tokens_in = -1,
                                            .tokens_out = -1};
        sl_backend_task_resp_free(resp);
        *resp = keep;
        if (resp->status == SL_BACKEND_OK) resp->status = SL_BACKEND_MALFORMED;
    }
    return rc;
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
    .task = h_task,
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
    snprintf(B->url_classify, sizeof B->url_classify, "%.*s/classify", (int)ul, p->base_url);
    snprintf(B->url_extract, sizeof B->url_extract, "%.*s/extract", (int)ul, p->base_url);
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
