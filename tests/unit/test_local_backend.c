/*
 * test_local_backend.c - a served model as a router backend, and the server
 * opened without HTTP (what `sluice eval` and `sluice distill` use): chat
 * with logprobs and its confidence, streaming equal to the whole answer,
 * aborting a stream, embeddings, classify and extract tasks with their
 * confidence and engine time, a prompt that does not fit, and one routed
 * request landing in the request log.
 */
#include "server/local_backend.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convert/synth.h"
#include "router/router.h"
#include "server/server.h"
#include "store/store.h"
#include "test.h"

static struct sl_config cfg;
static struct sl_server *srv;
static struct sl_backend *small;
static char model_path[512], db_path[512];

static void open_server(void)
{
    struct sl_err err = {0};
    struct sl_synth_params sp = sl_synth_default_params();
    snprintf(model_path, sizeof model_path, "%s", t_tmp_path("local_backend.gguf"));
    snprintf(db_path, sizeof db_path, "%s", t_tmp_path("local_backend.db"));
    unlink(db_path);
    if (sl_synth_write(&sp, model_path, NULL, NULL, &err)) {
        fprintf(stderr, "cannot make the test model: %s\n", err.msg);
        exit(1);
    }
    char yaml[2048];
    snprintf(
        yaml, sizeof yaml,
        "models:\n"
        "  tiny:\n    path: %s\n    ctx: 512\n    slots: 2\n    threads: 1\n"
        "tasks:\n"
        "  triage:\n    kind: classify\n    model: tiny\n    labels: [billing, bug, shipping]\n"
        "  who:\n    kind: extract\n    model: tiny\n    max_tokens: 40\n"
        "    schema: {type: object, properties: {name: {type: string, maxLength: 8}},"
        " required: [name]}\n"
        "backends:\n  small:\n    kind: local\n    model: tiny\n    infra_per_hour: 1.0\n"
        "routes:\n  solo:\n    tiers: [small]\n"
        "log:\n  db: %s\n  inputs: store\n",
        model_path, db_path);
    if (sl_config_init(&cfg, &err) || sl_config_parse(&cfg, yaml, strlen(yaml), &err) ||
        sl_server_open(&srv, &cfg, NULL, false, &err)) {
        fprintf(stderr, "cannot open the server: %s\n", err.msg);
        exit(1);
    }
    small = sl_router_backend(srv->router, "small");
}

static struct sl_backend_req chat_req(const struct sl_chat_msg *m, int max_tokens)
{
    struct sl_backend_req r;
    sl_backend_req_init(&r);
    r.msgs = m;
    r.n_msgs = 1;
    r.max_tokens = max_tokens;
    r.temperature = 0;
    return r;
}

static void open_without_http_has_router_and_store(void)
{
    T_TRUE(srv->router != NULL);
    T_TRUE(srv->store != NULL);
    T_TRUE(srv->http == NULL);
    T_EQ_INT(sl_server_port(srv), 0);
    T_TRUE(small != NULL);
    if (small) T_EQ_STR(small->iface->kind, "local");
    T_TRUE(sl_router_has_route(srv->router, "solo"));
}

static void complete_reports_confidence_from_logprobs(void)
{
    struct sl_err err = {0};
    struct sl_chat_msg m = {"user", "Once upon a time"};
    struct sl_backend_req r = chat_req(&m, 6);
    r.logprobs = true;
    r.top_logprobs = 2;
    struct sl_backend_resp resp;
    T_OK(small->iface->complete(small->ctx, &r, &resp, &err), &err);
    T_EQ_INT(resp.status, SL_BACKEND_OK);
    T_TRUE(resp.content != NULL);
    T_EQ_STR(resp.model, "tiny");
    T_TRUE(resp.tokens_in > 0);
    T_TRUE(resp.tokens_out > 0 && resp.tokens_out <= 6);
    T_EQ_INT(resp.n_logprobs, resp.tokens_out);
    double sum = 0;
    for (size_t i = 0; i < resp.n_logprobs; i++) {
        sum += resp.logprobs[i].logprob;
        T_EQ_INT(resp.logprobs[i].n_top, 2);
        T_TRUE(resp.logprobs[i].token != NULL);
    }
    T_TRUE(resp.confidence > 0 && resp.confidence <= 1);
    if (resp.n_logprobs) T_NEAR(resp.confidence, exp(sum / (double)resp.n_logprobs), 1e-9);
    T_TRUE(resp.machine_ms > 0);
    T_TRUE(resp.latency_ms >= resp.machine_ms);
    T_EQ_STR(resp.finish_reason, resp.tokens_out == 6 ? "length" : "stop");
    sl_backend_resp_free(&resp);

    /* without logprobs: no confidence */
    r.logprobs = false;
    T_OK(small->iface->complete(small->ctx, &r, &resp, &err), &err);
    T_TRUE(resp.confidence < 0);
    T_TRUE(resp.logprobs == NULL);
    sl_backend_resp_free(&resp);
}

struct collect {
    char text[4096];
    size_t len;
    int n, stop_at;
};

static int on_chunk(void *user, const struct sl_backend_chunk *c)
{
    struct collect *k = user;
    k->n++;
    json_t *j = json_loadb(c->data, c->len, 0, NULL);
    T_TRUE(j != NULL); /* an OpenAI chunk object */
    if (j) json_decref(j);
    if (k->len + c->delta_len < sizeof k->text) {
        memcpy(k->text + k->len, c->delta, c->delta_len);
        k->len += c->delta_len;
    }
    return k->stop_at && k->n >= k->stop_at;
}

static void stream_gives_the_whole_answer_in_chunks(void)
{
    struct sl_err err = {0};
    struct sl_chat_msg m = {"user", "Tell me a story"};
    struct sl_backend_req r = chat_req(&m, 8);
    struct sl_backend_resp whole, streamed;
    struct collect k = {0};
    T_OK(small->iface->complete(small->ctx, &r, &whole, &err), &err);
    T_OK(small->iface->stream(small->ctx, &r, on_chunk, &k, &streamed, &err), &err);
    T_EQ_INT(streamed.status, SL_BACKEND_OK);
    k.text[k.len] = 0;
    T_EQ_STR(streamed.content, whole.content); /* greedy: the same tokens */
    T_EQ_STR(k.text, whole.content);
    T_EQ_INT(streamed.tokens_out, whole.tokens_out);
    T_TRUE(k.n >= 1);
    sl_backend_resp_free(&whole);
    sl_backend_resp_free(&streamed);
}

static void stream_stops_when_the_callback_asks(void)
{
    struct sl_err err = {0};
    struct sl_chat_msg m = {"user", "Tell me a long story"};
    struct sl_backend_req r = chat_req(&m, 64);
    struct sl_backend_resp resp;
    struct collect k = {.stop_at = 1};
    int rc = small->iface->stream(small->ctx, &r, on_chunk, &k, &resp, &err);
    T_TRUE(rc != 0);
    T_EQ_INT(k.n, 1);
    T_EQ_INT(resp.status, SL_BACKEND_ABORTED);
    sl_backend_resp_free(&resp);
}

static void embed_gives_normalised_rows(void)
{
    struct sl_err err = {0};
    const char *texts[] = {"hello there", "a second, longer input text"};
    float *e = NULL;
    int dim = 0;
    T_OK(small->iface->embed(small->ctx, texts, 2, &e, &dim, &err), &err);
    T_TRUE(dim > 0);
    for (int i = 0; e && i < 2; i++) {
        double n2 = 0;
        for (int k = 0; k < dim; k++)
            n2 += (double)e[i * dim + k] * e[i * dim + k];
        T_NEAR(n2, 1.0, 1e-3);
    }
    free(e);
}

static void classify_task_reports_calibrated_confidence(void)
{
    struct sl_err err = {0};
    const struct sl_task_config *tc = sl_config_task(&cfg, "triage");
    struct sl_backend_task_req tr = {tc, "I was charged twice"};
    struct sl_backend_task_resp a, b;
    T_OK(small->iface->task(small->ctx, &tr, &a, &err), &err);
    T_EQ_INT(a.status, SL_BACKEND_OK);
    T_TRUE(a.label >= 0 && a.label < 3);
    T_EQ_INT(a.n_probs, 3);
    double sum = 0;
    for (size_t i = 0; i < a.n_probs; i++)
        sum += a.probs[i];
    T_NEAR(sum, 1.0, 1e-4);
    T_NEAR(a.confidence, a.probs[a.label], 1e-6);
    if (a.label >= 0) T_EQ_STR(a.content, tc->labels[a.label]);
    T_TRUE(a.machine_ms > 0);
    T_TRUE(a.tokens_in > 0);
    /* the same input, the same answer */
    T_OK(small->iface->task(small->ctx, &tr, &b, &err), &err);
    T_EQ_INT(b.label, a.label);
    T_NEAR(b.confidence, a.confidence, 1e-6);
    sl_backend_task_resp_free(&a);
    sl_backend_task_resp_free(&b);
}

static void extract_task_gives_json(void)
{
    struct sl_err err = {0};
    struct sl_backend_task_req tr = {sl_config_task(&cfg, "who"), "Ann Lee wrote this."};
    struct sl_backend_task_resp a;
    T_OK(small->iface->task(small->ctx, &tr, &a, &err), &err);
    T_EQ_INT(a.status, SL_BACKEND_OK);
    json_t *j = a.json ? json_loads(a.json, 0, NULL) : NULL;
    T_TRUE(json_is_string(json_object_get(j, "name")));
    if (j) json_decref(j);
    T_TRUE(a.confidence >= 0 && a.confidence <= 1);
    T_TRUE(a.tokens_out > 0);
    sl_backend_task_resp_free(&a);
}

static void prompt_too_long_is_a_400(void)
{
    struct sl_err err = {0};
    size_t n = 4000;
    char *big = malloc(n + 1);
    memset(big, 'x', n);
    big[n] = 0;
    struct sl_chat_msg m = {"user", big};
    struct sl_backend_req r = chat_req(&m, 4);
    struct sl_backend_resp resp;
    T_TRUE(small->iface->complete(small->ctx, &r, &resp, &err) != 0);
    T_EQ_INT(resp.status, SL_BACKEND_HTTP);
    T_EQ_INT(resp.http_status, 400);
    T_TRUE(strstr(err.msg, "tokens") != NULL);
    sl_backend_resp_free(&resp);
    free(big);
}

static void routed_request_is_logged(void)
{
    struct sl_err err = {0};
    struct sl_chat_msg m = {"user", "Once upon a time"};
    struct sl_backend_req chat = chat_req(&m, 4);
    struct sl_route_req rr = {.id = "t-1", .route = "solo", .kind = SL_RREQ_CHAT, .chat = &chat};
    struct sl_route_result res = {0};
    T_OK(sl_router_route(srv->router, &rr, &res, &err), &err);
    T_EQ_INT(res.status, 200);
    T_EQ_STR(res.backend, "small");
    T_TRUE(res.cost > 0); /* infra_per_hour x the engine time */
    sl_route_result_free(&res);
    struct sl_store_row row = {0};
    T_OK(srv->store->iface->get_request(srv->store->ctx, "t-1", &row, &err), &err);
    T_EQ_STR(row.route, "solo");
    T_EQ_STR(row.backend, "small");
    sl_store_row_free(&row);
}

int main(void)
{
    open_server();
    T_RUN(open_without_http_has_router_and_store);
    if (small) {
        T_RUN(complete_reports_confidence_from_logprobs);
        T_RUN(stream_gives_the_whole_answer_in_chunks);
        T_RUN(stream_stops_when_the_callback_asks);
        T_RUN(embed_gives_normalised_rows);
        T_RUN(classify_task_reports_calibrated_confidence);
        T_RUN(extract_task_gives_json);
        T_RUN(prompt_too_long_is_a_400);
        T_RUN(routed_request_is_logged);
    }
    sl_server_free(srv);
    sl_config_free(&cfg);
    unlink(model_path);
    unlink(db_path);
    return t_done();
}
