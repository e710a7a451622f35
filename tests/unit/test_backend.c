/*
 * test_backend.c - the OpenAI-compatible HTTP backend (src/backend/http.c)
 * against the scripted fake upstream (tests/support/fake_upstream.c):
 * every case file in tests/cases/backend/, then the behaviours a case file
 * cannot express (breaker with an injected clock, connection reuse, API
 * key, threads, embeddings, a backend that is down).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend/http.h"
#include "config/config.h"
#include "support/fake_upstream.h"
#include "test.h"

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* Backoff waits are recorded, not slept, so retry tests stay fast. */
struct sleeps {
    long total;
    int n;
    long each[16];
};

static void record_sleep(void *ctx, long ms)
{
    struct sleeps *s = ctx;
    s->total += ms;
    if (s->n < 16) s->each[s->n] = ms;
    s->n++;
}

static const char *cases_dir(void)
{
    static char dir[1024];
    snprintf(dir, sizeof dir, "%s", __FILE__);
    char *slash = strrchr(dir, '/');
    if (!slash) return "../cases/backend";
    *slash = 0; /* tests/unit */
    slash = strrchr(dir, '/');
    if (slash) *slash = 0; /* tests */
    strncat(dir, "/cases/backend", sizeof dir - strlen(dir) - 1);
    return dir;
}

static const struct sl_chat_msg hello_msgs[] = {
    {"system", "Be brief."},
    {"user", "Say hello."},
};

static void hello_req(struct sl_backend_req *q)
{
    sl_backend_req_init(q);
    q->msgs = hello_msgs;
    q->n_msgs = 2;
    q->max_tokens = 16;
}

static struct sl_backend_http_params params_for(struct fake_upstream *f, char *url, size_t n,
                                                struct sleeps *sl)
{
    snprintf(url, n, "http://127.0.0.1:%d/v1", fu_port(f));
    struct sl_backend_http_params p = sl_backend_http_default_params();
    p.name = "large";
    p.base_url = url;
    p.model = "big-1";
    p.connect_timeout_ms = 1000;
    p.timeout_ms = 3000;
    p.backoff_base_ms = 10;
    p.sleep_ms = record_sleep;
    p.sleep_ctx = sl;
    p.jitter_seed = 12345;
    return p;
}

/* ================================================================ case files */

struct chunks {
    int n;
    int stop_after; /* 0 = never */
};

static int on_chunk(void *user, const struct sl_backend_chunk *c)
{
    struct chunks *ch = user;
    ch->n++;
    if (c->len == 0) T_FAIL_AT("empty chunk data");
    return ch->stop_after && ch->n >= ch->stop_after;
}

/* Value of key in section [sec] of text, into out; 1 if found. */
static int case_get(const char *text, const char *sec, const char *key, char *out, size_t n)
{
    char hdr[64];
    snprintf(hdr, sizeof hdr, "[%s]", sec);
    const char *p = strstr(text, hdr);
    if (!p) return 0;
    p += strlen(hdr);
    size_t kl = strlen(key);
    while (*p) {
        const char *e = strchr(p, '\n');
        size_t ll = e ? (size_t)(e - p) : strlen(p);
        if (ll && p[0] == '[') return 0;
        if (ll > kl && !strncmp(p, key, kl) && p[kl] == ':') {
            const char *v = p + kl + 1;
            while (*v == ' ')
                v++;
            size_t vl = (size_t)(p + ll - v);
            if (vl >= n) vl = n - 1;
            memcpy(out, v, vl);
            out[vl] = 0;
            return 1;
        }
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

static long case_num(const char *text, const char *sec, const char *key, long def)
{
    char v[64];
    return case_get(text, sec, key, v, sizeof v) ? atol(v) : def;
}

static void run_case(struct fake_upstream *f, const char *name, const char *text)
{
    struct fu_reply replies[FU_MAX_REPLIES];
    int nr = 0;
    if (fu_parse_replies(text, replies, FU_MAX_REPLIES, &nr) || nr == 0) {
        T_FAIL_AT("case %s: bad [reply] sections", name);
        return;
    }
    fu_set_replies(f, replies, nr);
    fu_reset_counts(f);

    char url[128];
    struct sleeps sl = {0};
    struct sl_backend_http_params p = params_for(f, url, sizeof url, &sl);
    p.breaker_enabled = false;
    p.max_retries = (int)case_num(text, "backend", "max_retries", 0);
    p.backoff_base_ms = case_num(text, "backend", "backoff_base_ms", 10);
    p.backoff_max_ms = case_num(text, "backend", "backoff_max_ms", 8000);
    p.retry_after_max_ms = case_num(text, "backend", "retry_after_max_ms", 10000);
    p.timeout_ms = case_num(text, "backend", "timeout_ms", 3000);
    p.connect_timeout_ms = case_num(text, "backend", "connect_timeout_ms", 1000);
    bool stream = case_num(text, "backend", "stream", 0) != 0;

    struct sl_backend b;
    struct sl_err err = {0};
    if (sl_backend_http_new(&b, &p, &err)) {
        T_FAIL_AT("case %s: %s", name, err.msg);
        return;
    }
    struct sl_backend_req q;
    hello_req(&q);
    q.logprobs = case_num(text, "backend", "logprobs", 0) != 0;
    q.top_logprobs = q.logprobs ? 2 : 0;
    struct sl_backend_resp r;
    struct chunks ch = {0, 0};
    double t0 = mono_ms();
    int rc = stream ? b.iface->stream(b.ctx, &q, on_chunk, &ch, &r, &err)
                    : b.iface->complete(b.ctx, &q, &r, &err);
    double ms = mono_ms() - t0;

    char v[512];
    fprintf(stderr, "  case %-28s rc %d status '%s' attempts %d %.0f ms%s%s\n", name, rc,
            sl_backend_status_name(r.status), r.attempts, ms, rc ? ": " : "", rc ? err.msg : "");
    if (case_get(text, "expect", "rc", v, sizeof v)) {
        if (!strcmp(v, "ok") && rc != 0)
            T_FAIL_AT("case %s: expected ok, got %d: %s", name, rc, err.msg);
        if (!strcmp(v, "error") && rc == 0) T_FAIL_AT("case %s: expected an error, got ok", name);
        t_checks++;
    }
    if (case_get(text, "expect", "status", v, sizeof v)) {
        t_checks++;
        if (strcmp(v, sl_backend_status_name(r.status)))
            T_FAIL_AT("case %s: status '%s', expected '%s'", name, sl_backend_status_name(r.status),
                      v);
    }
#define EXPECT_NUM(key, got)                                                                       \
    do {                                                                                           \
        if (case_get(text, "expect", key, v, sizeof v)) {                                          \
            t_checks++;                                                                            \
            if (atol(v) != (long)(got))                                                            \
                T_FAIL_AT("case %s: %s = %ld, expected %s", name, key, (long)(got), v);            \
        }                                                                                          \
    } while (0)
    EXPECT_NUM("http_status", r.http_status);
    EXPECT_NUM("attempts", r.attempts);
    EXPECT_NUM("requests", fu_n_requests(f));
    EXPECT_NUM("tokens_in", r.tokens_in);
    EXPECT_NUM("tokens_out", r.tokens_out);
    EXPECT_NUM("logprobs", r.n_logprobs);
    EXPECT_NUM("chunks", ch.n);
    EXPECT_NUM("slept_ms", sl.total);
    if (case_get(text, "expect", "slept_min_ms", v, sizeof v)) {
        t_checks++;
        if (sl.total < atol(v)) T_FAIL_AT("case %s: slept %ld ms < %s", name, sl.total, v);
    }
    if (case_get(text, "expect", "slept_max_ms", v, sizeof v)) {
        t_checks++;
        if (sl.total > atol(v)) T_FAIL_AT("case %s: slept %ld ms > %s", name, sl.total, v);
    }
    if (case_get(text, "expect", "max_ms", v, sizeof v)) {
        t_checks++;
        if (ms > atof(v)) T_FAIL_AT("case %s: took %.0f ms > %s", name, ms, v);
    }
    if (case_get(text, "expect", "content", v, sizeof v)) {
        t_checks++;
        if (!r.content || strcmp(r.content, v))
            T_FAIL_AT("case %s: content \"%s\", expected \"%s\"", name,
                      r.content ? r.content : "(null)", v);
    }
    if (case_get(text, "expect", "errmsg", v, sizeof v)) {
        t_checks++;
        if (!strstr(err.msg, v)) T_FAIL_AT("case %s: error \"%s\" lacks \"%s\"", name, err.msg, v);
    }
    sl_backend_resp_free(&r);
    b.iface->free(b.ctx);
}

static void backend_cases_from_files(void)
{
    struct fake_upstream *f = NULL;
    T_EQ_INT(fu_start(&f), 0);
    if (!f) return;
    const char *dir = cases_dir();
    struct dirent **ents = NULL;
    int n = scandir(dir, &ents, NULL, alphasort);
    int ran = 0;
    for (int k = 0; k < n; k++) {
        const char *nm = ents[k]->d_name;
        size_t l = strlen(nm);
        if (l > 5 && !strcmp(nm + l - 5, ".case")) {
            char path[1200];
            snprintf(path, sizeof path, "%s/%s", dir, nm);
            char *text = t_read_file(path, NULL);
            if (!text)
                T_FAIL_AT("cannot read %s", path);
            else
                run_case(f, nm, text);
            free(text);
            ran++;
        }
        free(ents[k]);
    }
    free(ents);
    if (ran < 10) T_FAIL_AT("only %d case files found in %s", ran, dir);
    fu_stop(f);
}

/* ================================================================ breaker */

struct fake_clock {
    int64_t now;
};

static int64_t fake_now(void *ctx)
{
    return ((struct fake_clock *)ctx)->now;
}

static struct fu_reply reply_of(int status, const char *body)
{
    struct fu_reply r;
    memset(&r, 0, sizeof r);
    r.status = status;
    r.body = strdup(body);
    r.disconnect_after = -1;
    return r;
}

static const char *ok_body =
    "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"hi\"},"
    "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,"
    "\"completion_tokens\":1}}";

static void breaker_opens_after_failures_and_closes_after_cooldown(void)
{
    struct fake_upstream *f = NULL;
    T_EQ_INT(fu_start(&f), 0);
    if (!f) return;
    struct fu_reply r = reply_of(500, "{\"error\":{\"message\":\"down\"}}");
    fu_set_replies(f, &r, 1);
    char url[128];
    struct sleeps sl = {0};
    struct fake_clock clk = {1000};
    struct sl_backend_http_params p = params_for(f, url, sizeof url, &sl);
    p.max_retries = 0;
    p.breaker.window = 10;
    p.breaker.min_calls = 4;
    p.breaker.failure_rate = 0.5;
    p.breaker.cooldown_ms = 5000;
    p.breaker.now_ms = fake_now;
    p.breaker.clock_ctx = &clk;
    struct sl_backend b;
    struct sl_err err = {0};
    T_OK(sl_backend_http_new(&b, &p, &err), &err);
    struct sl_backend_req q;
    hello_req(&q);
    struct sl_backend_resp resp;
    for (int k = 0; k < 4; k++) {
        T_TRUE(b.iface->complete(b.ctx, &q, &resp, &err) != 0);
        T_EQ_INT(resp.status, SL_BACKEND_HTTP);
        sl_backend_resp_free(&resp);
        clk.now += 10;
    }
    T_EQ_INT(sl_breaker_state(sl_backend_http_breaker(b.ctx)), SL_BREAKER_OPEN);
    T_EQ_INT(fu_n_requests(f), 4);
    /* open: refused without touching the upstream */
    T_TRUE(b.iface->complete(b.ctx, &q, &resp, &err) != 0);
    T_EQ_INT(resp.status, SL_BACKEND_BREAKER_OPEN);
    T_EQ_INT(resp.attempts, 0); /* nothing was sent */
    T_TRUE(strstr(err.msg, "circuit breaker open") != NULL);
    sl_backend_resp_free(&resp);
    T_EQ_INT(fu_n_requests(f), 4);
    /* after the cool-down one trial goes through; it fails: open again */
    clk.now += 5000;
    T_EQ_INT(sl_breaker_state(sl_backend_http_breaker(b.ctx)), SL_BREAKER_HALF_OPEN);
    T_TRUE(b.iface->complete(b.ctx, &q, &resp, &err) != 0);
    sl_backend_resp_free(&resp);
    T_EQ_INT(fu_n_requests(f), 5);
    T_EQ_INT(sl_breaker_state(sl_backend_http_breaker(b.ctx)), SL_BREAKER_OPEN);
    /* upstream recovers; next trial succeeds and closes the breaker */
    struct fu_reply ok = reply_of(200, ok_body);
    fu_set_replies(f, &ok, 1);
    clk.now += 5000;
    T_OK(b.iface->complete(b.ctx, &q, &resp, &err), &err);
    T_EQ_STR(resp.content, "hi");
    sl_backend_resp_free(&resp);
    T_EQ_INT(sl_breaker_state(sl_backend_http_breaker(b.ctx)), SL_BREAKER_CLOSED);
    T_OK(b.iface->complete(b.ctx, &q, &resp, &err), &err);
    sl_backend_resp_free(&resp);
    T_EQ_INT(fu_n_requests(f), 7);
    b.iface->free(b.ctx);
    fu_stop(f);
}

static void breaker_stops_retries_when_it_opens(void)
{
    struct fake_upstream *f = NULL;
    T_EQ_INT(fu_start(&f), 0);
    if (!f) return;
    struct fu_reply r = reply_of(503, "{}");
    fu_set_replies(f, &r, 1);
    char url[128];
    struct sleeps sl = {0};
    struct fake_clock clk = {1000};
    struct sl_backend_http_params p = params_for(f, url, sizeof url, &sl);
    p.max_retries = 5;
    p.breaker.min_calls = 3;
    p.breaker.now_ms = fake_now;
    p.breaker.clock_ctx = &clk;
    struct sl_backend b;
    struct sl_err err = {0};
    T_OK(sl_backend_http_new(&b, &p, &err), &err);
    struct sl_backend_req q;
    hello_req(&q);
    struct sl_backend_resp resp;
    T_TRUE(b.iface->complete(b.ctx, &q, &resp, &err) != 0);
    T_EQ_INT(resp.status, SL_BACKEND_BREAKER_OPEN);
    T_EQ_INT(fu_n_requests(f), 3); /* the 4th attempt was refused by the breaker */
    T_TRUE(strstr(err.msg, "HTTP 503") != NULL);
    sl_backend_resp_free(&resp);
    b.iface->free(b.ctx);
    fu_stop(f);
}

/* ================================================================ the rest */

static void http_reuses_one_connection_for_sequential_calls(void)
{
    struct fake_upstream *f = NULL;
    T_EQ_INT(fu_start(&f), 0);
    if (!f) return;
    struct fu_reply r = reply_of(200, ok_body);
    fu_set_replies(f, &r, 1);
    char url[128];
    struct sleeps sl = {0};
    struct sl_backend_http_params p = params_for(f, url, sizeof url, &sl);
    struct sl_backend b;
    struct sl_err err = {0};
    T_OK(sl_backend_http_new(&b, &p, &err), &err);
    struct sl_backend_req q;
    hello_req(&q);
    for (int k = 0; k < 5; k++) {
        struct sl_backend_resp resp;
        T_OK(b.iface->complete(b.ctx, &q, &resp, &err), &err);
        sl_backend_resp_free(&resp);
    }
    T_EQ_INT(fu_n_requests(f), 5);
    T_EQ_INT(fu_n_connections(f), 1);
    b.iface->free(b.ctx);
    fu_stop(f);
}

static void http_sends_the_openai_request_shape(void)
{
    struct fake_upstream *f = NULL;
    T_EQ_INT(fu_start(&f), 0);
    if (!f) return;
    struct fu_reply r = reply_of(200, ok_body);
    fu_set_replies(f, &r, 1);
    char url[128];
    struct sleeps sl = {0};
    struct sl_backend_http_params p = params_for(f, url, sizeof url, &sl);
    setenv("SL_TEST_UPSTREAM_KEY", "sk-test-123", 1);
    p.api_key_env = "SL_TEST_UPSTREAM_KEY";
    struct sl_backend b;
    struct sl_err err = {0};
    T_OK(sl_backend_http_new(&b, &p, &err), &err);
    struct sl_backend_req q;
    hello_req(&q);
    q.temperature = 0;
    q.logprobs = true;
    q.top_logprobs = 3;
    q.stop[0] = "\n\n";
    struct sl_backend_resp resp;
    T_OK(b.iface->complete(b.ctx, &q, &resp, &err), &err);
    sl_backend_resp_free(&resp);
    T_EQ_STR(fu_request_path(f, 0), "/v1/chat/completions");
    T_EQ_STR(fu_request_header(f, 0, "Authorization"), "Bearer sk-test-123");
    json_t *o = json_loads(fu_request_body(f, 0), 0, NULL);
    T_TRUE(o != NULL);
    T_EQ_STR(json_string_value(json_object_get(o, "model")), "big-1");
    T_EQ_INT(json_array_size(json_object_get(o, "messages")), 2);
    T_EQ_STR(json_string_value(
                 json_object_get(json_array_get(json_object_get(o, "messages"), 1), "content")),
             "Say hello.");
    T_EQ_INT(json_integer_value(json_object_get(o, "max_tokens")), 16);
    T_TRUE(json_is_true(json_object_get(o, "logprobs")));
    T_EQ_INT(json_integer_value(json_object_get(o, "top_logprobs")), 3);
    T_TRUE(json_object_get(o, "top_p") == NULL); /* not set: not sent */
    T_TRUE(json_object_get(o, "stream") == NULL);
    json_decref(o);
    b.iface->free(b.ctx);
    fu_stop(f);
}

static void http_new_fails_when_the_key_variable_is_unset(void)
{
    unsetenv("SL_TEST_NO_SUCH_KEY");
    struct sl_backend_http_params p = sl_backend_http_default_params();
    p.base_url = "http://127.0.0.1:9/v1";
    p.model = "m";
    p.api_key_env = "SL_TEST_NO_SUCH_KEY";
    struct sl_backend b;
    struct sl_err err = {0};
    T_EQ_INT(sl_backend_http_new(&b, &p, &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "SL_TEST_NO_SUCH_KEY") != NULL);
    p.api_key_env = NULL;
    p.base_url = "ftp://x";
    T_EQ_INT(sl_backend_http_new(&b, &p, &err), SL_EINVAL);
    p.base_url = NULL;
    T_EQ_INT(sl_backend_http_new(&b, &p, &err), SL_EINVAL);
}

static void http_backend_down_fails_fast_after_retries(void)
{
    /* a port that was just free: nothing listens there */
    struct fake_upstream *f = NULL;
    T_EQ_INT(fu_start(&f), 0);
    if (!f) return;
    char url[128];
    struct sleeps sl = {0};
    struct sl_backend_http_params p = params_for(f, url, sizeof url, &sl);
    fu_stop(f);
    p.max_retries = 2;
    struct sl_backend b;
    struct sl_err err = {0};
    T_OK(sl_backend_http_new(&b, &p, &err), &err);
    struct sl_backend_req q;
    hello_req(&q);
    struct sl_backend_resp resp;
    double t0 = mono_ms();
    T_TRUE(b.iface->complete(b.ctx, &q, &resp, &err) != 0);
    T_EQ_INT(resp.status, SL_BACKEND_CONNECT);
    T_EQ_INT(resp.attempts, 3);
    T_EQ_INT(sl.n, 2);
    T_TRUE(mono_ms() - t0 < 1000);
    sl_backend_resp_free(&resp);
    b.iface->free(b.ctx);
}

static void backoff_doubles_up_to_the_cap_with_jitter_in_range(void)
{
    struct sl_backend_http_params p = sl_backend_http_default_params();
    p.backoff_base_ms = 100;
    p.backoff_max_ms = 1000;
    T_EQ_INT(sl_backend_http_backoff_ms(&p, 0), 100);
    T_EQ_INT(sl_backend_http_backoff_ms(&p, 1), 200);
    T_EQ_INT(sl_backend_http_backoff_ms(&p, 3), 800);
    T_EQ_INT(sl_backend_http_backoff_ms(&p, 4), 1000);
    T_EQ_INT(sl_backend_http_backoff_ms(&p, 30), 1000);

    struct fake_upstream *f = NULL;
    T_EQ_INT(fu_start(&f), 0);
    if (!f) return;
    struct fu_reply r = reply_of(502, "{}");
    fu_set_replies(f, &r, 1);
    char url[128];
    struct sleeps sl = {0};
    struct sl_backend_http_params q = params_for(f, url, sizeof url, &sl);
    q.breaker_enabled = false;
    q.max_retries = 4;
    q.backoff_base_ms = 100;
    q.backoff_max_ms = 400;
    struct sl_backend b;
    struct sl_err err = {0};
    T_OK(sl_backend_http_new(&b, &q, &err), &err);
    struct sl_backend_req rq;
    hello_req(&rq);
    struct sl_backend_resp resp;
    T_TRUE(b.iface->complete(b.ctx, &rq, &resp, &err) != 0);
    sl_backend_resp_free(&resp);
    T_EQ_INT(sl.n, 4);
    long lo[4] = {50, 100, 200, 200}, hi[4] = {100, 200, 400, 400};
    for (int k = 0; k < 4 && k < sl.n; k++) {
        if (sl.each[k] < lo[k] || sl.each[k] > hi[k])
            T_FAIL_AT("backoff %d = %ld ms, expected %ld..%ld", k, sl.each[k], lo[k], hi[k]);
        t_checks++;
    }
    b.iface->free(b.ctx);
    fu_stop(f);
}

static void stream_callback_can_abort_and_it_is_not_retried(void)
{
    struct fake_upstream *f = NULL;
    T_EQ_INT(fu_start(&f), 0);
    if (!f) return;
    struct fu_reply r;
    memset(&r, 0, sizeof r);
    r.status = 200;
    r.disconnect_after = -1;
    for (int k = 0; k < 5; k++)
        r.chunks[r.n_chunks++] =
            strdup("{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"z\"}}]}");
    r.chunks[r.n_chunks++] = strdup("[DONE]");
    fu_set_replies(f, &r, 1);
    char url[128];
    struct sleeps sl = {0};
    struct sl_backend_http_params p = params_for(f, url, sizeof url, &sl);
    p.max_retries = 3;
    struct sl_backend b;
    struct sl_err err = {0};
    T_OK(sl_backend_http_new(&b, &p, &err), &err);
    struct sl_backend_req q;
    hello_req(&q);
    struct sl_backend_resp resp;
    struct chunks ch = {0, 2};
    T_TRUE(b.iface->stream(b.ctx, &q, on_chunk, &ch, &resp, &err) != 0);
    T_EQ_INT(resp.status, SL_BACKEND_ABORTED);
    T_EQ_INT(ch.n, 2);
    T_EQ_INT(fu_n_requests(f), 1);
    T_EQ_STR(resp.content, "zz");
    sl_backend_resp_free(&resp);
    /* an abort is the client's doing: the breaker stays closed */
    T_EQ_INT(sl_breaker_state(sl_backend_http_breaker(b.ctx)), SL_BREAKER_CLOSED);
    /* the stream request asked for usage in the last chunk */
    json_t *o = json_loads(fu_request_body(f, 0), 0, NULL);
    T_TRUE(json_is_true(json_object_get(o, "stream")));
    T_TRUE(json_is_true(json_object_get(json_object_get(o, "stream_options"), "include_usage")));
    json_decref(o);
    b.iface->free(b.ctx);
    fu_stop(f);
}

/* should_stop: yes from its second question on (the first comes as the
 * transfer starts) */
static int stop_on_second_ask(void *user)
{
    int *n = user;
    return ++*n >= 2;
}

static void a_caller_that_stops_gives_up_a_slow_call_without_retry(void)
{
    struct fake_upstream *f = NULL;
    T_EQ_INT(fu_start(&f), 0);
    if (!f) return;
    struct fu_reply r;
    memset(&r, 0, sizeof r);
    r.status = 200;
    r.disconnect_after = -1;
    r.delay_ms = 2500; /* within the 3 s timeout: without a stop it would answer */
    r.body = strdup("{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"hi\"},"
                    "\"finish_reason\":\"stop\"}]}");
    fu_set_replies(f, &r, 1);
    char url[128];
    struct sleeps sl = {0};
    struct sl_backend_http_params p = params_for(f, url, sizeof url, &sl);
    p.max_retries = 3;
    struct sl_backend b;
    struct sl_err err = {0};
    T_OK(sl_backend_http_new(&b, &p, &err), &err);
    struct sl_backend_req q;
    hello_req(&q);
    int asked = 0;
    q.should_stop = stop_on_second_ask;
    q.stop_user = &asked;
    struct sl_backend_resp resp;
    T_TRUE(b.iface->complete(b.ctx, &q, &resp, &err) != 0);
    T_EQ_INT(resp.status, SL_BACKEND_ABORTED);
    T_TRUE(strstr(err.msg, "client went away") != NULL);
    T_EQ_INT(resp.attempts, 1); /* not retried: no backoff either */
    T_EQ_INT(sl.n, 0);
    T_EQ_INT(sl_breaker_state(sl_backend_http_breaker(b.ctx)), SL_BREAKER_CLOSED);
    sl_backend_resp_free(&resp);
    /* without should_stop the same call answers */
    hello_req(&q);
    T_OK(b.iface->complete(b.ctx, &q, &resp, &err), &err);
    T_EQ_STR(resp.content, "hi");
    sl_backend_resp_free(&resp);
    b.iface->free(b.ctx);
    fu_stop(f);
}

static void embeddings_come_back_in_index_order(void)
{
    struct fake_upstream *f = NULL;
    T_EQ_INT(fu_start(&f), 0);
    if (!f) return;
    struct fu_reply r = reply_of(200, "{\"object\":\"list\",\"data\":["
                                      "{\"index\":1,\"embedding\":[0.5,0.25,-1]},"
                                      "{\"index\":0,\"embedding\":[1,2,3]}],"
                                      "\"usage\":{\"prompt_tokens\":4}}");
    struct fu_reply bad = reply_of(200, "{\"data\":[{\"index\":0,\"embedding\":[1,2]},"
                                        "{\"index\":1,\"embedding\":[1]}]}");
    struct fu_reply two[2] = {r, bad};
    fu_set_replies(f, two, 2);
    char url[128];
    struct sleeps sl = {0};
    struct sl_backend_http_params p = params_for(f, url, sizeof url, &sl);
    struct sl_backend b;
    struct sl_err err = {0};
    T_OK(sl_backend_http_new(&b, &p, &err), &err);
    const char *texts[2] = {"a", "b"};
    float *v = NULL;
    int dim = 0;
    T_OK(b.iface->embed(b.ctx, texts, 2, &v, &dim, &err), &err);
    T_EQ_INT(dim, 3);
    if (v) {
        T_NEAR(v[0], 1, 0);
        T_NEAR(v[2], 3, 0);
        T_NEAR(v[3], 0.5, 0);
        T_NEAR(v[5], -1, 0);
    }
    free(v);
    T_EQ_STR(fu_request_path(f, 0), "/v1/embeddings");
    T_EQ_INT(b.iface->embed(b.ctx, texts, 2, &v, &dim, &err), SL_EIO);
    T_TRUE(strstr(err.msg, "dims") != NULL);
    T_TRUE(v == NULL);
    b.iface->free(b.ctx);
    fu_stop(f);
}

struct thr {
    struct sl_backend *b;
    int ok;
};

static void *thread_main(void *arg)
{
    struct thr *t = arg;
    struct sl_backend_req q;
    hello_req(&q);
    for (int k = 0; k < 10; k++) {
        struct sl_backend_resp resp;
        struct sl_err err = {0};
        if (t->b->iface->complete(t->b->ctx, &q, &resp, &err) == 0 && resp.content &&
            !strcmp(resp.content, "hi"))
            t->ok++;
        sl_backend_resp_free(&resp);
    }
    return NULL;
}

static void http_backend_is_thread_safe(void)
{
    struct fake_upstream *f = NULL;
    T_EQ_INT(fu_start(&f), 0);
    if (!f) return;
    struct fu_reply r = reply_of(200, ok_body);
    fu_set_replies(f, &r, 1);
    char url[128];
    struct sleeps sl = {0};
    struct sl_backend_http_params p = params_for(f, url, sizeof url, &sl);
    struct sl_backend b;
    struct sl_err err = {0};
    T_OK(sl_backend_http_new(&b, &p, &err), &err);
    pthread_t th[4];
    struct thr ts[4];
    for (int k = 0; k < 4; k++) {
        ts[k].b = &b;
        ts[k].ok = 0;
        pthread_create(&th[k], NULL, thread_main, &ts[k]);
    }
    int ok = 0;
    for (int k = 0; k < 4; k++) {
        pthread_join(th[k], NULL);
        ok += ts[k].ok;
    }
    T_EQ_INT(ok, 40);
    T_TRUE(fu_n_connections(f) <= 4 + 1);
    b.iface->free(b.ctx);
    fu_stop(f);
}

/* The program form (tests/support/fake_upstream_main.c) that end-to-end
 * tests start: prints its port, records what it received, exits when its
 * stdin closes. */
static void fake_upstream_program_plays_a_case_and_records_bodies(void)
{
    char prog[1200], cases[1200], rec[1200];
    snprintf(prog, sizeof prog, "%s/sluice-fake-upstream", SL_TEST_TMP);
    snprintf(cases, sizeof cases, "%s/ok_basic.case", cases_dir());
    snprintf(rec, sizeof rec, "%s", t_tmp_path("fake_record.jsonl"));
    unlink(rec);
    if (access(prog, X_OK) != 0) {
        t_skip("sluice-fake-upstream not built");
        return;
    }
    int in[2], out[2];
    if (pipe(in) || pipe(out)) return;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execl(prog, prog, cases, "--record", rec, "--max-seconds", "20", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    char line[64] = "";
    FILE *o = fdopen(out[0], "r");
    int port = 0;
    if (o && fgets(line, sizeof line, o)) sscanf(line, "port %d", &port);
    T_TRUE(port > 0);
    if (port > 0) {
        char url[128];
        snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", port);
        struct sl_backend_http_params p = sl_backend_http_default_params();
        p.base_url = url;
        p.model = "big-1";
        struct sl_backend b;
        struct sl_err err = {0};
        T_OK(sl_backend_http_new(&b, &p, &err), &err);
        struct sl_backend_req q;
        hello_req(&q);
        struct sl_backend_resp resp;
        T_OK(b.iface->complete(b.ctx, &q, &resp, &err), &err);
        T_EQ_STR(resp.content, "Hello there");
        sl_backend_resp_free(&resp);
        b.iface->free(b.ctx);
        usleep(150 * 1000); /* the program writes the record every 50 ms */
    }
    close(in[1]); /* the program exits when its stdin closes */
    int st = 0;
    waitpid(pid, &st, 0);
    if (o) fclose(o);
    T_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char *text = t_read_file(rec, NULL);
    T_TRUE(text && strstr(text, "\"path\":\"/v1/chat/completions\"") && strstr(text, "Say hello."));
    free(text);
    unlink(rec);
}

/* ================================================================ tasks */

static char *task_labels[] = {"spam", "ham", "urgent request"};
static char *task_descs[] = {"unsolicited advertising", NULL, "needs a reply today"};

static struct sl_task_config classify_task(void)
{
    struct sl_task_config t;
    memset(&t, 0, sizeof t);
    t.name = "triage";
    t.kind = SL_TASK_CLASSIFY;
    t.instruction = "Sort the mail.";
    t.labels = task_labels;
    t.descriptions = task_descs;
    t.n_labels = 3;
    return t;
}

static struct sl_task_config extract_task(void)
{
    struct sl_task_config t;
    memset(&t, 0, sizeof t);
    t.name = "fields";
    t.kind = SL_TASK_EXTRACT;
    t.schema = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"}},"
               "\"required\":[\"name\"]}";
    t.max_tokens = 64;
    return t;
}

/* A chat answer with logprobs: tokens[] with their top alternatives. */
static char *chat_answer(const char *content, const char *logprobs)
{
    char *s = NULL;
    json_t *c = json_string(content);
    char *cj = json_dumps(c, JSON_ENCODE_ANY);
    if (asprintf(&s,
                 "{\"id\":\"x\",\"model\":\"big-1\",\"choices\":[{\"message\":{\"role\":"
                 "\"assistant\",\"content\":%s},\"finish_reason\":\"stop\"%s%s%s}],"
                 "\"usage\":{\"prompt_tokens\":40,\"completion_tokens\":2}}",
                 cj, logprobs ? ",\"logprobs\":{\"content\":" : "", logprobs ? logprobs : "",
                 logprobs ? "}" : "") < 0)
        s = NULL;
    free(cj);
    json_decref(c);
    return s;
}

static void task_chat_classify_renders_the_task_and_maps_the_answer(void)
{
    struct fake_upstream *f = NULL;
    T_EQ_INT(fu_start(&f), 0);
    if (!f) return;
    char *body = chat_answer(
        "Spam", "[{\"token\":\"Sp\",\"logprob\":-0.1,\"top_logprobs\":["
                "{\"token\":\"Sp\",\"logprob\":-0.1},{\"token\":\" spam\",\"logprob\":-2.5},"
                "{\"token\":\"Ham\",\"logprob\":-3.0},{\"token\":\"\\n\",\"logprob\":-6}]},"
                "{\"token\":\"am\",\"logprob\":-0.01,\"top_logprobs\":[]}]");
    struct fu_reply r = reply_of(200, body);
    free(body);
    fu_set_replies(f, &r, 1);
    char url[128];
    struct sleeps sl = {0};
    struct sl_backend_http_params p = params_for(f, url, sizeof url, &sl);
    struct sl_backend b;
    struct sl_err err = {0};
    T_OK(sl_backend_http_new(&b, &p, &err), &err);
    T_TRUE(b.iface->task != NULL);
    struct sl_task_config t = classify_task();
    struct sl_backend_task_req q = {.task = &t, .input = "Buy cheap watches now!"};
    struct sl_backend_task_resp resp;
    T_OK(b.iface->task(b.ctx, &q, &resp, &err), &err);
    T_EQ_INT(resp.status, SL_BACKEND_OK);
    T_EQ_INT(resp.label, 0);
    T_EQ_STR(resp.content, "Spam");
    T_EQ_STR(resp.model, "big-1");
    T_EQ_INT(resp.tokens_in, 40);
    /* "Sp" and " spam" both name spam alone: their mass, not p("Sp")*p("am") */
    T_NEAR(resp.confidence, exp(-0.1) + exp(-2.5), 1e-6);
    T_EQ_INT(resp.n_probs, 3);
    if (resp.probs) T_NEAR(resp.probs[1], exp(-3.0), 1e-6);
    sl_backend_task_resp_free(&resp);
    /* what the upstream got: one prompt with the whole task */
    T_EQ_STR(fu_request_path(f, 0), "/v1/chat/completions");
    json_t *o = json_loads(fu_request_body(f, 0), 0, NULL);
    const char *prompt = json_string_value(
        json_object_get(json_array_get(json_object_get(o, "messages"), 0), "content"));
    T_TRUE(prompt && strstr(prompt, "Sort the mail."));
    T_TRUE(prompt && strstr(prompt, "- spam: unsolicited advertising\n"));
    T_TRUE(prompt && strstr(prompt, "- ham\n"));
    T_TRUE(prompt && strstr(prompt, "Input: Buy cheap watches now!"));
    T_TRUE(prompt && strstr(prompt, "Answer with exactly one label"));
    T_NEAR(json_number_value(json_object_get(o, "temperature")), 0, 0);
    T_TRUE(json_is_true(json_object_get(o, "logprobs")));
    T_TRUE(json_integer_value(json_object_get(o, "top_logprobs")) > 0);
    T_TRUE(json_integer_value(json_object_get(o, "max_tokens")) > 0 &&
           json_integer_value(json_object_get(o, "max_tokens")) <= 128);
    json_decref(o);
    b.iface->free(b.ctx);
    fu_stop(f);
}

/* Answers that need trimming, a prefix match, or match nothing. */
static void task_chat_classify_matches_labels_loosely_but_not_wrongly(void)
{
    struct fake_upstream *f = NULL;
    T_EQ_INT(fu_start(&f), 0);
    if (!f) return;
    static const struct {
        const char *answer;
        int label;
    } cases[] = {
        {" \"HAM\".\n", 1},     {"Label: spam", 0}, {"ham, because it is a normal mail", 1},
        {"urgent", 2},          /* the one label that starts with it */
        {"urgent request!", 2}, /* starts with a label */
        {"hamster", -1},        /* a label, then more of a word */
        {"phishing", -1},       {"", -1},
    };
    enum { N = sizeof cases / sizeof *cases };
    struct fu_reply r[N];
    for (int k = 0; k < N; k++) {
        char *body = chat_answer(cases[k].answer, NULL);
        r[k] = reply_of(200, body);
        free(body);
    }
    fu_set_replies(f, r, N);
    char url[128];
    struct sleeps sl = {0};
    struct sl_backend_http_params p = params_for(f, url, sizeof url, &sl);
    struct sl_backend b;
    struct sl_err err = {0};
    T_OK(sl_backend_http_new(&b, &p, &err), &err);
    struct sl_task_config t = classify_task();
    struct sl_backend_task_req q = {.task = &t, .input = "hello"};
    for (int k = 0; k < N; k++) {
        struct sl_backend_task_resp resp;
        T_OK(b.iface->task(b.ctx, &q, &resp, &err), &err);
        if (resp.label != cases[k].label)
            T_FAIL_AT("answer '%s' -> label %d, want %d", cases[k].answer, (int)resp.label,
                      cases[k].label);
        /* no logprobs came back: no confidence */
        T_TRUE(resp.confidence < 0);
        sl_backend_task_resp_free(&resp);
    }
    b.iface->free(b.ctx);
    fu_stop(f);
}

static void task_chat_extract_sends_the_schema_and_parses_the_object(void)
{
    struct fake_upstream *f = NULL;
    T_EQ_INT(fu_start(&f), 0);
    if (!f) return;
    char *b1 = chat_answer("```json\n{\"name\": \"Ann\"}\n```",
                           "[{\"token\":\"{\",\"logprob\":-0.01},{\"token\":\"Ann\","
                           "\"logprob\":-0.5},{\"token\":\"}\",\"logprob\":0}]");
    char *b2 = chat_answer("Sorry, I cannot help with that.", NULL);
    struct fu_reply r[2] = {reply_of(200, b1), reply_of(200, b2)};
    free(b1);
    free(b2);
    fu_set_replies(f, r, 2);
    char url[128];
    struct sleeps sl = {0};
    struct sl_backend_http_params p = params_for(f, url, sizeof url, &sl);
    struct sl_backend b;
    struct sl_err err = {0};
    T_OK(sl_backend_http_new(&b, &p, &err), &err);
    struct sl_task_config t = extract_task();
    struct sl_backend_task_req q = {.task = &t, .input = "Ann wrote to us."};
    struct sl_backend_task_resp resp;
    T_OK(b.iface->task(b.ctx, &q, &resp, &err), &err);
    T_EQ_STR(resp.json, "{\"name\":\"Ann\"}");
    T_NEAR(resp.confidence, exp(-0.5), 1e-9); /* the least sure token */
    sl_backend_task_resp_free(&resp);
    json_t *o = json_loads(fu_request_body(f, 0), 0, NULL);
    json_t *rf = json_object_get(o, "response_format");
    T_EQ_STR(json_string_value(json_object_get(rf, "type")), "json_schema");
    json_t *schema = json_object_get(json_object_get(rf, "json_schema"), "schema");
    T_EQ_STR(json_string_value(json_object_get(schema, "type")), "object");
    T_EQ_INT(json_integer_value(json_object_get(o, "max_tokens")), 64);
    json_decref(o);
    /* prose instead of an object: malformed, so the router falls back */
    T_EQ_INT(b.iface->task(b.ctx, &q, &resp, &err), SL_EFORMAT);
    T_EQ_INT(resp.status, SL_BACKEND_MALFORMED);
    T_TRUE(resp.json == NULL);
    T_TRUE(strstr(err.msg, "not a JSON object") != NULL);
    sl_backend_task_resp_free(&resp);
    b.iface->free(b.ctx);
    fu_stop(f);
}

static void task_sluice_api_posts_to_the_task_endpoints(void)
{
    struct fake_upstream *f = NULL;
    T_EQ_INT(fu_start(&f), 0);
    if (!f) return;
    struct fu_reply r[3] = {
        reply_of(503, "{\"error\":{\"message\":\"busy\"}}"),
        reply_of(200, "{\"object\":\"list\",\"model\":\"qwen-big\",\"task\":\"triage\","
                      "\"data\":[{\"index\":0,\"label\":\"ham\",\"probs\":{\"spam\":0.1,"
                      "\"ham\":0.85,\"urgent request\":0.05},\"confidence\":0.85,"
                      "\"margin\":0.75,\"entropy\":0.5}],\"usage\":{\"prompt_tokens\":12,"
                      "\"completion_tokens\":0,\"total_tokens\":12}}"),
        reply_of(200, "{\"object\":\"list\",\"model\":\"qwen-big\",\"data\":[{\"index\":0,"
                      "\"output\":{\"name\":\"Ann\"},\"output_text\":\"{\\\"name\\\":"
                      "\\\"Ann\\\"}\",\"confidence\":0.7,\"confidence_mean\":0.9,"
                      "\"fields\":{}}],\"usage\":{\"prompt_tokens\":9,"
                      "\"completion_tokens\":6}}"),
    };
    fu_set_replies(f, r, 3);
    char url[128];
    struct sleeps sl = {0};
    struct sl_backend_http_params p = params_for(f, url, sizeof url, &sl);
    p.task_api = SL_TASK_API_SLUICE;
    struct sl_backend b;
    struct sl_err err = {0};
    T_OK(sl_backend_http_new(&b, &p, &err), &err);
    struct sl_task_config t = classify_task();
    struct sl_backend_task_req q = {.task = &t, .input = "Lunch tomorrow?"};
    struct sl_backend_task_resp resp;
    T_OK(b.iface->task(b.ctx, &q, &resp, &err), &err);
    T_EQ_INT(resp.attempts, 2); /* the 503 was retried like any call */
    T_EQ_INT(resp.label, 1);
    T_NEAR(resp.confidence, 0.85, 1e-9);
    T_EQ_INT(resp.n_probs, 3);
    if (resp.probs) T_NEAR(resp.probs[2], 0.05, 1e-6);
    T_EQ_STR(resp.model, "qwen-big");
    T_EQ_INT(resp.tokens_in, 12);
    sl_backend_task_resp_free(&resp);
    T_EQ_STR(fu_request_path(f, 1), "/v1/classify");
    json_t *o = json_loads(fu_request_body(f, 1), 0, NULL);
    T_EQ_STR(json_string_value(json_object_get(o, "model")), "big-1");
    T_EQ_STR(json_string_value(json_object_get(o, "task")), "triage");
    T_EQ_STR(json_string_value(json_array_get(json_object_get(o, "input"), 0)), "Lunch tomorrow?");
    json_decref(o);
    struct sl_task_config x = extract_task();
    q.task = &x;
    T_OK(b.iface->task(b.ctx, &q, &resp, &err), &err);
    T_EQ_STR(fu_request_path(f, 2), "/v1/extract");
    T_EQ_STR(resp.json, "{\"name\":\"Ann\"}");
    T_NEAR(resp.confidence, 0.7, 1e-9);
    T_EQ_INT(resp.tokens_out, 6);
    sl_backend_task_resp_free(&resp);
    b.iface->free(b.ctx);
    fu_stop(f);
}

static void task_failures_report_their_status(void)
{
    struct fake_upstream *f = NULL;
    T_EQ_INT(fu_start(&f), 0);
    if (!f) return;
    struct fu_reply r[2] = {reply_of(404, "{\"error\":{\"message\":\"no such task\"}}"),
                            reply_of(200, "{\"data\":[]}")};
    fu_set_replies(f, r, 2);
    char url[128];
    struct sleeps sl = {0};
    struct sl_backend_http_params p = params_for(f, url, sizeof url, &sl);
    p.task_api = SL_TASK_API_SLUICE;
    struct sl_backend b;
    struct sl_err err = {0};
    T_OK(sl_backend_http_new(&b, &p, &err), &err);
    struct sl_task_config t = classify_task();
    struct sl_backend_task_req q = {.task = &t, .input = "x"};
    struct sl_backend_task_resp resp;
    T_TRUE(b.iface->task(b.ctx, &q, &resp, &err) < 0);
    T_EQ_INT(resp.status, SL_BACKEND_HTTP);
    T_EQ_INT(resp.http_status, 404);
    T_TRUE(strstr(err.msg, "no such task") != NULL);
    sl_backend_task_resp_free(&resp);
    T_TRUE(b.iface->task(b.ctx, &q, &resp, &err) < 0);
    T_EQ_INT(resp.status, SL_BACKEND_MALFORMED);
    T_EQ_INT(resp.label, -1);
    sl_backend_task_resp_free(&resp);
    /* a task that is not classify/extract is refused before any call */
    struct sl_task_config g = classify_task();
    g.kind = SL_TASK_GENERATE;
    q.task = &g;
    T_EQ_INT(b.iface->task(b.ctx, &q, &resp, &err), SL_EINVAL);
    sl_backend_task_resp_free(&resp);
    T_EQ_INT(fu_n_requests(f), 2);
    b.iface->free(b.ctx);
    fu_stop(f);
}

int main(void)
{
    T_RUN(backend_cases_from_files);
    T_RUN(breaker_opens_after_failures_and_closes_after_cooldown);
    T_RUN(breaker_stops_retries_when_it_opens);
    T_RUN(http_reuses_one_connection_for_sequential_calls);
    T_RUN(http_sends_the_openai_request_shape);
    T_RUN(http_new_fails_when_the_key_variable_is_unset);
    T_RUN(http_backend_down_fails_fast_after_retries);
    T_RUN(backoff_doubles_up_to_the_cap_with_jitter_in_range);
    T_RUN(stream_callback_can_abort_and_it_is_not_retried);
    T_RUN(a_caller_that_stops_gives_up_a_slow_call_without_retry);
    T_RUN(embeddings_come_back_in_index_order);
    T_RUN(http_backend_is_thread_safe);
    T_RUN(fake_upstream_program_plays_a_case_and_records_bodies);
    T_RUN(task_chat_classify_renders_the_task_and_maps_the_answer);
    T_RUN(task_chat_classify_matches_labels_loosely_but_not_wrongly);
    T_RUN(task_chat_extract_sends_the_schema_and_parses_the_object);
    T_RUN(task_sluice_api_posts_to_the_task_endpoints);
    T_RUN(task_failures_report_their_status);
    return t_done();
}
