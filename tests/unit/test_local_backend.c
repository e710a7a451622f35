/*
 * test_local_backend.c - a served model as a router backend, and the server
 * opened without HTTP (what `sluice eval` and `sluice distill` use): chat
 * with logprobs and its confidence, streaming equal to the whole answer,
 * aborting a stream, embeddings, classify and extract tasks with their
 * confidence and engine time, a prompt that does not fit, one routed
 * request landing in the request log, and the same with the log in a
 * throw-away PostgreSQL (tests/support/pg_server.c; skipped without it).
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
#include "support/pg_server.h"
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

static int always(void *user)
{
    (void)user;
    return 1;
}

/* A caller gone (should_stop) before the answer: the job is cancelled and
 * the call says ABORTED, for chat and for tasks. */
static void a_caller_that_stops_gets_aborted(void)
{
    struct sl_err err = {0};
    struct sl_chat_msg m = {"user", "Tell me a long story"};
    struct sl_backend_req r = chat_req(&m, 64);
    r.should_stop = always;
    struct sl_backend_resp resp;
    T_TRUE(small->iface->complete(small->ctx, &r, &resp, &err) != 0);
    T_EQ_INT(resp.status, SL_BACKEND_ABORTED);
    T_TRUE(strstr(err.msg, "client went away") != NULL);
    sl_backend_resp_free(&resp);
    struct sl_backend_task_req tr = {.task = sl_config_task(&cfg, "triage"), .input = "I was charged twice",
                                     .should_stop = always};
    struct sl_backend_task_resp a;
    T_TRUE(small->iface->task(small->ctx, &tr, &a, &err) != 0);
    T_EQ_INT(a.status, SL_BACKEND_ABORTED);
    sl_backend_task_resp_free(&a);
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
    struct sl_backend_task_req tr = {.task = tc, .input = "I was charged twice"};
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
    struct sl_backend_task_req tr = {.task = sl_config_task(&cfg, "who"), .input = "Ann Lee wrote this."};
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

/* ================================================================ PostgreSQL */

/* Not test_store's port: the two tests may run at once (ctest -j). */
#define PG_PORT 54331

/* One group of costs() (route or model "key"). */
struct cost_seen {
    const char *key;
    int groups;
    struct sl_store_cost_row row; /* of key */
};

static int on_cost(void *user, const struct sl_store_cost_row *row)
{
    struct cost_seen *c = user;
    c->groups++;
    if (!strcmp(row->key, c->key)) {
        c->row = *row;
        c->row.key = c->key;
    }
    return 0;
}

/* sl_server_open on cfg_text; returns its code, and the message in err. */
static int open_with(struct sl_config *c, struct sl_server **out, const char *cfg_text,
                     struct sl_err *err)
{
    int rc;
    *out = NULL;
    if ((rc = sl_config_init(c, err))) return rc;
    if ((rc = sl_config_parse(c, cfg_text, strlen(cfg_text), err))) return rc;
    return sl_server_open(out, c, NULL, false, err);
}

/* A cascade whose small tier is never sure enough (threshold 1): both
 * local tiers run, the large one's answer is kept, and the row, its
 * stages and both ledger entries land in PostgreSQL. */
static void pg_routed_request(const struct pg_server *pg)
{
    struct sl_err err = {0};
    char yaml[3072];
    snprintf(
        yaml, sizeof yaml,
        "models:\n"
        "  tiny:\n    path: %s\n    ctx: 512\n    slots: 1\n    threads: 1\n"
        "tasks:\n"
        "  triage:\n    kind: classify\n    model: tiny\n    labels: [billing, bug, shipping]\n"
        "backends:\n"
        "  small:\n    kind: local\n    model: tiny\n    infra_per_hour: 1.0\n"
        "  large:\n    kind: local\n    model: tiny\n    infra_per_hour: 3.0\n"
        "routes:\n  tri-pg:\n    policy: cascade\n    tiers: [small, large]\n"
        "    threshold: 1\n"
        "log:\n  db: \"pg:%s\"\n  inputs: store\n",
        model_path, pg->conninfo);
    struct sl_config c;
    struct sl_server *s = NULL;
    T_OK(open_with(&c, &s, yaml, &err), &err);
    if (!s) {
        sl_config_free(&c);
        return;
    }
    T_TRUE(s->store != NULL && s->router != NULL);
    if (!s->store || !s->router) goto out;
    T_EQ_STR(s->store->iface->kind, "postgres");

    const char *text = "I was charged twice for one order";
    struct sl_route_req rr = {.id = "pg-route-1",
                              .route = "tri-pg",
                              .kind = SL_RREQ_CLASSIFY,
                              .task = "triage",
                              .input = text};
    struct sl_route_result res = {0};
    T_OK(sl_router_route(s->router, &rr, &res, &err), &err);
    T_EQ_INT(res.status, 200);
    T_EQ_STR(res.decision, "escalated");
    T_EQ_STR(res.backend, "large");
    T_EQ_INT(res.n_stages, 2);
    T_TRUE(res.cost > 0);
    double want_cost = res.cost, want_conf = res.confidence;
    char label[64];
    snprintf(label, sizeof label, "%s", res.content ? res.content : "");
    sl_route_result_free(&res);
    T_EQ_INT(sl_router_log_errors(s->router), 0);

    /* the row, read back from PostgreSQL */
    struct sl_store_row row = {0};
    T_OK(s->store->iface->get_request(s->store->ctx, "pg-route-1", &row, &err), &err);
    if (row.id) {
        T_EQ_STR(row.route, "tri-pg");
        T_EQ_STR(row.tiers, "small,large");
        T_EQ_STR(row.decision, "escalated");
        T_TRUE(row.reason != NULL && strstr(row.reason, "small") != NULL);
        T_EQ_STR(row.backend, "large");
        T_EQ_STR(row.model, "tiny");
        T_EQ_STR(row.output, label);
        T_EQ_STR(row.input, text); /* inputs: store */
        T_TRUE(row.input_sha256 != NULL && strlen(row.input_sha256) == 64);
        T_NEAR(row.confidence, want_conf, 1e-9);
        T_NEAR(row.cost, want_cost, 1e-12);
        T_EQ_INT(row.status, 200);
        T_TRUE(row.tokens_in > 0);
        T_EQ_INT(row.n_stages, 2);
        T_EQ_STR(row.stages[0].name, "small");
        T_EQ_STR(row.stages[1].name, "large");
        T_TRUE(row.feedback == NULL);
    }
    /* the ledger: one request, two infra entries adding up to its cost */
    struct cost_seen by_route = {.key = "tri-pg"};
    T_OK(s->store->iface->costs(s->store->ctx, SL_STORE_BY_ROUTE, 0, on_cost, &by_route, &err),
         &err);
    T_EQ_INT(by_route.groups, 1);
    T_EQ_INT(by_route.row.n_requests, 1);
    T_EQ_INT(by_route.row.tokens_in, row.tokens_in);
    T_NEAR(by_route.row.api_cost, 0, 0);
    T_NEAR(by_route.row.infra_cost, want_cost, 1e-12);
    T_TRUE(by_route.row.machine_ms > 0);
    /* infra_per_hour x machine time: 1.0 and 3.0 per hour on one machine time
     * total, so the cost lies between the two rates */
    T_TRUE(want_cost >= by_route.row.machine_ms * 1.0 / 3.6e6 * (1 - 1e-9));
    T_TRUE(want_cost <= by_route.row.machine_ms * 3.0 / 3.6e6 * (1 + 1e-9));
    struct cost_seen by_model = {.key = "tiny"};
    T_OK(s->store->iface->costs(s->store->ctx, SL_STORE_BY_MODEL, 0, on_cost, &by_model, &err),
         &err);
    T_EQ_INT(by_model.row.n_requests, 1);
    T_NEAR(by_model.row.infra_cost, want_cost, 1e-12);
    sl_store_row_free(&row);
    /* feedback reaches the same row */
    T_OK(s->store->iface->feedback(s->store->ctx, "pg-route-1", "billing", &err), &err);
    T_OK(s->store->iface->get_request(s->store->ctx, "pg-route-1", &row, &err), &err);
    T_EQ_STR(row.feedback, "billing");
    sl_store_row_free(&row);
out:
    sl_server_free(s);
    sl_config_free(&c);
}

/* A log.db that PostgreSQL refuses fails sl_server_open with libpq's
 * reason, and leaves no server behind. */
static void pg_bad_conninfo(const char *db, const char *want)
{
    struct sl_err err = {0};
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "models:\n"
             "  tiny:\n    path: %s\n    ctx: 512\n    slots: 1\n    threads: 1\n"
             "log:\n  db: \"%s\"\n",
             model_path, db);
    struct sl_config c;
    struct sl_server *s = NULL;
    int rc = open_with(&c, &s, yaml, &err);
    T_EQ_INT(rc, SL_EIO);
    T_TRUE(s == NULL);
    T_TRUE(strstr(err.msg, "connect") != NULL);
    if (!strstr(err.msg, want)) T_FAIL_AT("message \"%s\" does not say \"%s\"", err.msg, want);
    sl_server_free(s);
    sl_config_free(&c);
}

static void serve_logs_to_postgres(void)
{
    struct pg_server pg;
    int st = pg_server_start(&pg, PG_PORT);
    if (st == 0) {
        t_skip("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb)");
        return;
    }
    if (st < 0) {
        T_FAIL_AT("could not start PostgreSQL in %s (its initdb.log / server.log above)", pg.dir);
        pg_server_stop(&pg);
        return;
    }
    pg_routed_request(&pg);
    /* the server is up, the database is not there */
    char db[1024];
    snprintf(db, sizeof db, "pg:host=%s port=%d user=postgres dbname=no_such_db", pg.dir, PG_PORT);
    pg_bad_conninfo(db, "no_such_db");
    /* nothing listens there */
    pg_bad_conninfo("postgresql://postgres@/x?host=/nonexistent&port=1&connect_timeout=2",
                    "/nonexistent");
    /* not a conninfo at all */
    pg_bad_conninfo("pg:host", "missing \"=\"");
    pg_server_stop(&pg);
}

int main(void)
{
    open_server();
    T_RUN(open_without_http_has_router_and_store);
    if (small) {
        T_RUN(complete_reports_confidence_from_logprobs);
        T_RUN(stream_gives_the_whole_answer_in_chunks);
        T_RUN(stream_stops_when_the_callback_asks);
        T_RUN(a_caller_that_stops_gets_aborted);
        T_RUN(embed_gives_normalised_rows);
        T_RUN(classify_task_reports_calibrated_confidence);
        T_RUN(extract_task_gives_json);
        T_RUN(prompt_too_long_is_a_400);
        T_RUN(routed_request_is_logged);
        T_RUN(serve_logs_to_postgres);
    }
    sl_server_free(srv);
    sl_config_free(&cfg);
    unlink(model_path);
    unlink(db_path);
    return t_done();
}
