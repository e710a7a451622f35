/*
 * test_router.c - routes end to end in one process (src/router/router.c):
 * in-process fake backends that answer from a script and record what they
 * received, a SQLite request log in the test directory, and an injected
 * clock for budgets. Cascade, rules, predict, fallback on every failure
 * status, budgets across a UTC day, privacy (local-only, redact, streams),
 * the log and ledger, and 4 threads at once.
 */
#define _GNU_SOURCE
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "router/predict.h"
#include "router/privacy.h"
#include "store/store_int.h"
#include "router/router.h"
#include "support/fake_upstream.h"
#include "test.h"

/* ================================================================ fake backends */

struct step {
    enum sl_backend_status status; /* what the call ends with */
    int http_status;
    const char *content; /* chat content; classify: the label; extract: JSON */
    int32_t label;
    double confidence;
    int64_t tokens_in, tokens_out;
    double machine_ms;
};

#define FAKE_MAX_STEPS 8
#define FAKE_MAX_REC 256

struct fake {
    const char *name;
    bool can_stream;
    pthread_mutex_t mu;
    struct step steps[FAKE_MAX_STEPS]; /* played in order, the last repeats */
    int n_steps, next;
    char *rec[FAKE_MAX_REC]; /* what each call received (messages joined by \n) */
    int n_calls;
    int n_done;     /* calls that returned */
    int n_logprobs; /* calls that asked for logprobs */
    int n_streams;
};

static void fake_init(struct fake *f, const char *name)
{
    memset(f, 0, sizeof *f);
    f->name = name;
    pthread_mutex_init(&f->mu, NULL);
}

static void fake_reset(struct fake *f)
{
    pthread_mutex_lock(&f->mu);
    for (int k = 0; k < f->n_calls && k < FAKE_MAX_REC; k++)
        free(f->rec[k]);
    memset(f->rec, 0, sizeof f->rec);
    f->n_calls = f->n_done = f->n_logprobs = f->n_streams = 0;
    f->next = 0;
    pthread_mutex_unlock(&f->mu);
}

static void fake_destroy(struct fake *f)
{
    fake_reset(f);
    pthread_mutex_destroy(&f->mu);
}

/* Script: one step, ok with content and confidence. */
static void fake_says(struct fake *f, const char *content, double conf)
{
    pthread_mutex_lock(&f->mu);
    memset(f->steps, 0, sizeof f->steps);
    f->steps[0] = (struct step){SL_BACKEND_OK, 200, content, 0, conf, 1000, 100, 50};
    f->n_steps = 1;
    f->next = 0;
    pthread_mutex_unlock(&f->mu);
}

static void fake_fails(struct fake *f, enum sl_backend_status st, int http)
{
    pthread_mutex_lock(&f->mu);
    memset(f->steps, 0, sizeof f->steps);
    f->steps[0] = (struct step){st, http, NULL, -1, -1, -1, -1, 0};
    f->n_steps = 1;
    f->next = 0;
    pthread_mutex_unlock(&f->mu);
}

static struct step fake_take(struct fake *f, const char *received, bool logprobs, bool stream)
{
    pthread_mutex_lock(&f->mu);
    if (f->n_calls < FAKE_MAX_REC) f->rec[f->n_calls] = strdup(received);
    f->n_calls++;
    f->n_logprobs += logprobs;
    f->n_streams += stream;
    struct step s = f->steps[f->next < f->n_steps ? f->next : f->n_steps - 1];
    if (f->next < f->n_steps) f->next++;
    pthread_mutex_unlock(&f->mu);
    return s;
}

static char *join_msgs(const struct sl_backend_req *q)
{
    size_t n = 1;
    for (size_t k = 0; k < q->n_msgs; k++)
        n += strlen(q->msgs[k].content) + 1;
    char *s = calloc(1, n);
    for (size_t k = 0; k < q->n_msgs; k++) {
        strcat(s, q->msgs[k].content);
        strcat(s, "\n");
    }
    return s;
}

static int fail_with(const struct step *s, enum sl_backend_status *status, int *http,
                     struct sl_err *err)
{
    *status = s->status;
    *http = s->http_status;
    return sl_err_set(err, SL_EIO, "scripted %s", sl_backend_status_name(s->status));
}

/* A call has returned (for should_stop functions that watch the tiers). */
static int fake_done(struct fake *f, int rc)
{
    pthread_mutex_lock(&f->mu);
    f->n_done++;
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static int fk_complete_call(void *ctx, const struct sl_backend_req *req, struct sl_backend_resp *resp,
                            struct sl_err *err)
{
    struct fake *f = ctx;
    char *in = join_msgs(req);
    struct step s = fake_take(f, in, req->logprobs, false);
    free(in);
    memset(resp, 0, sizeof *resp);
    resp->tokens_in = resp->tokens_out = -1;
    resp->confidence = -1;
    resp->attempts = 1;
    if (req->should_stop && req->should_stop(req->stop_user)) s.status = SL_BACKEND_ABORTED; /* as it waits */
    if (s.status != SL_BACKEND_OK) return fail_with(&s, &resp->status, &resp->http_status, err);
    resp->content = strdup(s.content);
    resp->finish_reason = strdup("stop");
    resp->model = strdup(f->name);
    resp->tokens_in = s.tokens_in;
    resp->tokens_out = s.tokens_out;
    resp->machine_ms = s.machine_ms;
    resp->confidence = req->logprobs ? s.confidence : -1;
    resp->http_status = 200;
    return 0;
}

static int fk_complete(void *ctx, const struct sl_backend_req *req, struct sl_backend_resp *resp,
                       struct sl_err *err)
{
    return fake_done(ctx, fk_complete_call(ctx, req, resp, err));
}

/* Streams the content 4 bytes a chunk (so placeholders split across
 * chunks), then a chunk with the finish reason. */
static int fk_stream(void *ctx, const struct sl_backend_req *req, sl_backend_chunk_fn fn,
                     void *user, struct sl_backend_resp *resp, struct sl_err *err)
{
    struct fake *f = ctx;
    if (!f->can_stream) return fk_complete(ctx, req, resp, err);
    char *in = join_msgs(req);
    struct step s = fake_take(f, in, req->logprobs, true);
    free(in);
    memset(resp, 0, sizeof *resp);
    resp->tokens_in = resp->tokens_out = -1;
    resp->confidence = -1;
    if (s.status != SL_BACKEND_OK) return fail_with(&s, &resp->status, &resp->http_status, err);
    size_t n = strlen(s.content);
    for (size_t off = 0; off <= n; off += 4) {
        size_t l = off + 4 <= n ? 4 : n - off;
        bool fin = off + 4 > n;
        json_t *o = json_pack("{s:s,s:[{s:i,s:{s:s%},s:o}]}", "object", "chat.completion.chunk",
                              "choices", "index", 0, "delta", "content", s.content + off, l,
                              "finish_reason", fin ? json_string("stop") : json_null());
        char *data = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        struct sl_backend_chunk c = {data, strlen(data), s.content + off, l};
        int stop = fn(user, &c);
        free(data);
        if (stop) {
            resp->status = SL_BACKEND_ABORTED;
            return sl_err_set(err, SL_EINVAL, "aborted");
        }
    }
    resp->content = strdup(s.content);
    resp->model = strdup(f->name);
    resp->tokens_in = s.tokens_in;
    resp->tokens_out = s.tokens_out;
    resp->machine_ms = s.machine_ms;
    return 0;
}

static int fk_task_call(void *ctx, const struct sl_backend_task_req *req,
                        struct sl_backend_task_resp *resp, struct sl_err *err)
{
    struct fake *f = ctx;
    struct step s = fake_take(f, req->input, false, false);
    memset(resp, 0, sizeof *resp);
    resp->label = -1;
    resp->confidence = -1;
    resp->tokens_in = resp->tokens_out = -1;
    if (req->should_stop && req->should_stop(req->stop_user)) s.status = SL_BACKEND_ABORTED; /* as it waits */
    if (s.status != SL_BACKEND_OK) return fail_with(&s, &resp->status, &resp->http_status, err);
    resp->confidence = s.confidence;
    resp->model = strdup(f->name);
    resp->tokens_in = s.tokens_in;
    resp->tokens_out = s.tokens_out;
    resp->machine_ms = s.machine_ms;
    if (req->task->kind == SL_TASK_CLASSIFY) {
        resp->label = s.label;
        resp->content = strdup(s.label >= 0 ? req->task->labels[s.label] : "nonsense");
    } else {
        resp->json = strdup(s.content);
        resp->content = strdup(s.content);
    }
    return 0;
}

static int fk_task(void *ctx, const struct sl_backend_task_req *req,
                   struct sl_backend_task_resp *resp, struct sl_err *err)
{
    return fake_done(ctx, fk_task_call(ctx, req, resp, err));
}

static int fk_embed(void *ctx, const char *const *texts, size_t n, float **out, int *dim,
                    struct sl_err *err)
{
    (void)ctx;
    (void)err;
    *dim = 2;
    *out = calloc(n * 2, sizeof **out);
    for (size_t k = 0; k < n; k++) {
        (*out)[2 * k] = strstr(texts[k], "hard") ? 1.0f : 0.0f; /* a "difficulty" direction */
        (*out)[2 * k + 1] = 1.0f;
    }
    return 0;
}

static void fk_free(void *ctx)
{
    (void)ctx; /* the test owns its fakes */
}

static const struct sl_backend_i fake_iface = {
    .kind = "fake",
    .complete = fk_complete,
    .stream = fk_stream,
    .embed = fk_embed,
    .task = fk_task,
    .free = fk_free,
};

/* ================================================================ the setup */

#define N_FAKES 3

struct world {
    struct fake fakes[N_FAKES]; /* small (local), large (remote), backup (remote) */
    struct sl_config cfg;
    struct sl_backend_config backends[N_FAKES];
    struct sl_route_config routes[8];
    struct sl_rule_config rules[8];
    struct sl_task_config tasks[2];
    struct sl_store store;
    int64_t now;
    char db[512];
    char predict_path[512];
};

static struct fake *SMALL(struct world *w)
{
    return &w->fakes[0];
}
static struct fake *LARGE(struct world *w)
{
    return &w->fakes[1];
}
static struct fake *BACKUP(struct world *w)
{
    return &w->fakes[2];
}

static int make_fake(void *user, const struct sl_backend_config *bc, struct sl_backend *out,
                     struct sl_err *err)
{
    struct world *w = user;
    (void)err;
    for (int k = 0; k < N_FAKES; k++)
        if (!strcmp(w->fakes[k].name, bc->name)) {
            out->iface = &fake_iface;
            out->ctx = &w->fakes[k];
            return 0;
        }
    return 1;
}

static int64_t clock_now(void *ctx)
{
    return ((struct world *)ctx)->now;
}

static char *labels[] = {"billing", "tech", "other"};

/* 2026-03-10 10:00:00 UTC */
#define T0_MS 1773136800000LL

static void route_init(struct sl_route_config *r, const char *name, int policy)
{
    memset(r, 0, sizeof *r);
    r->name = (char *)name;
    r->policy = policy;
    r->tiers[0] = "small";
    r->tiers[1] = "large";
    r->n_tiers = 2;
    r->threshold = 0.8;
    r->predict_threshold = 0.5;
    r->budget_per_day = -1;
    r->pii = SL_PII_POLICY_ALLOW;
}

static void world_init(struct world *w)
{
    memset(w, 0, sizeof *w);
    fake_init(&w->fakes[0], "small");
    fake_init(&w->fakes[1], "large");
    fake_init(&w->fakes[2], "backup");
    w->fakes[1].can_stream = true;
    fake_says(SMALL(w), "small answer", 0.9);
    fake_says(LARGE(w), "large answer", 0.99);
    fake_says(BACKUP(w), "backup answer", 0.99);
    const char *names[N_FAKES] = {"small", "large", "backup"};
    for (int k = 0; k < N_FAKES; k++) {
        struct sl_backend_config *b = &w->backends[k];
        b->name = (char *)names[k];
        b->kind = k == 0 ? SL_BACKEND_KIND_LOCAL : SL_BACKEND_KIND_OPENAI;
        b->model = (char *)names[k];
        b->remote = k != 0;
        b->max_retries = -1;
        if (k == 0)
            b->infra_per_hour = 36.0; /* 50 ms -> 0.0005 */
        else
            b->input_per_mtok = 2.0, b->output_per_mtok = 10.0; /* 1000/100 -> 0.003 */
    }
    w->tasks[0] = (struct sl_task_config){
        .name = "triage", .kind = SL_TASK_CLASSIFY, .model = "m", .labels = labels, .n_labels = 3};
    w->tasks[1] = (struct sl_task_config){
        .name = "fields", .kind = SL_TASK_EXTRACT, .model = "m", .schema = "{\"type\":\"object\"}"};
    /* routes: 0 cascade, 1 rules, 2 predict; tests adjust them */
    route_init(&w->routes[0], "cascade", SL_ROUTE_CASCADE);
    route_init(&w->routes[1], "rules", SL_ROUTE_RULES);
    route_init(&w->routes[2], "predict", SL_ROUTE_PREDICT);
    w->cfg.backends = w->backends;
    w->cfg.n_backends = N_FAKES;
    w->cfg.routes = w->routes;
    w->cfg.n_routes = 2; /* predict only when a test makes its model */
    w->cfg.tasks = w->tasks;
    w->cfg.n_tasks = 2;
    w->now = T0_MS;
    snprintf(w->db, sizeof w->db, "%s", t_tmp_path("router.db"));
    unlink(w->db);
    char side[600];
    snprintf(side, sizeof side, "%s-wal", w->db);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", w->db);
    unlink(side);
    struct sl_store_params sp = sl_store_default_params();
    sp.input = SL_STORE_INPUT_STORE;
    struct sl_err err = {0};
    T_OK(sl_store_sqlite_open(&w->store, w->db, &sp, &err), &err);
}

static void world_free(struct world *w)
{
    if (w->store.iface) w->store.iface->close(w->store.ctx);
    for (int k = 0; k < N_FAKES; k++)
        fake_destroy(&w->fakes[k]);
    unlink(w->db);
    if (w->predict_path[0]) unlink(w->predict_path);
}

static struct sl_router *router_of(struct world *w)
{
    struct sl_router_env env = {make_fake, w, &w->store, clock_now, w};
    struct sl_router *r = NULL;
    struct sl_err err = {0};
    T_OK(sl_router_new(&r, &w->cfg, &env, &err), &err);
    return r;
}

/* A chat request with one user message. */
struct chat {
    struct sl_chat_msg msgs[2];
    struct sl_backend_req q;
    struct sl_route_req req;
    char id[32];
};

static int next_id;

static void chat_req(struct chat *c, const char *route, const char *text)
{
    memset(c, 0, sizeof *c);
    c->msgs[0] = (struct sl_chat_msg){"system", "Be brief."};
    c->msgs[1] = (struct sl_chat_msg){"user", text};
    sl_backend_req_init(&c->q);
    c->q.msgs = c->msgs;
    c->q.n_msgs = 2;
    snprintf(c->id, sizeof c->id, "req-%d", ++next_id);
    c->req.id = c->id;
    c->req.route = route;
    c->req.kind = SL_RREQ_CHAT;
    c->req.chat = &c->q;
}

static void task_req(struct chat *c, const char *route, enum sl_route_req_kind kind,
                     const char *task, const char *input)
{
    memset(c, 0, sizeof *c);
    snprintf(c->id, sizeof c->id, "req-%d", ++next_id);
    c->req.id = c->id;
    c->req.route = route;
    c->req.kind = kind;
    c->req.task = task;
    c->req.input = input;
}

static int route(struct sl_router *r, struct chat *c, struct sl_route_result *res)
{
    struct sl_err err = {0};
    int rc = sl_router_route(r, &c->req, res, &err);
    if (rc) fprintf(stderr, "  route: %s\n", err.msg);
    return rc;
}

/* ================================================================ cascade */

static void cascade_keeps_a_confident_small_answer(void)
{
    struct world w;
    world_init(&w);
    struct sl_router *r = router_of(&w);
    if (!r) goto out;
    struct chat c;
    chat_req(&c, "cascade", "What is 2+2?");
    struct sl_route_result res;
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_INT(res.status, 200);
    T_EQ_STR(res.decision, "local");
    T_TRUE(!res.escalated);
    T_EQ_STR(res.backend, "small");
    T_EQ_STR(res.content, "small answer");
    T_NEAR(res.confidence, 0.9, 1e-9);
    T_EQ_INT(res.n_stages, 1);
    T_TRUE(res.stages[0].accepted);
    T_NEAR(res.stages[0].threshold, 0.8, 1e-12);
    T_TRUE(strstr(res.reason, "0.90 >= 0.80") != NULL);
    T_EQ_INT(LARGE(&w)->n_calls, 0);
    T_EQ_INT(SMALL(&w)->n_logprobs, 1); /* a checked tier is asked for logprobs */
    sl_route_result_free(&res);
    sl_router_free(r);
out:
    world_free(&w);
}

static void cascade_escalates_an_unsure_answer(void)
{
    struct world w;
    world_init(&w);
    fake_says(SMALL(&w), "maybe 5", 0.41);
    struct sl_router *r = router_of(&w);
    if (!r) goto out;
    struct chat c;
    chat_req(&c, "cascade", "What is 2+2?");
    struct sl_route_result res;
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_INT(res.status, 200);
    T_EQ_STR(res.decision, "escalated");
    T_TRUE(res.escalated);
    T_EQ_STR(res.backend, "large");
    T_EQ_STR(res.content, "large answer");
    T_EQ_INT(res.n_stages, 2);
    T_TRUE(!res.stages[0].accepted && res.stages[1].accepted);
    T_EQ_STR(res.stages[0].note, "confidence 0.41 < 0.80");
    T_TRUE(res.stages[1].threshold < 0); /* the last tier has no bar */
    T_EQ_INT(LARGE(&w)->n_logprobs, 0);  /* nor is it asked for logprobs */
    T_TRUE(strstr(res.reason, "confidence 0.41 < 0.80 on small") != NULL);
    /* costs: small infra 50 ms at 36/h, large 1000 in + 100 out tokens */
    T_NEAR(res.stages[0].cost, 0.0005, 1e-12);
    T_NEAR(res.stages[1].cost, 0.003, 1e-12);
    T_NEAR(res.cost, 0.0035, 1e-12);
    sl_route_result_free(&res);
    sl_router_free(r);
out:
    world_free(&w);
}

static void cascade_uses_the_task_threshold(void)
{
    struct world w;
    world_init(&w);
    w.routes[0].threshold_tasks[0] = "triage";
    w.routes[0].threshold_values[0] = 0.4;
    w.routes[0].n_thresholds = 1;
    pthread_mutex_lock(&SMALL(&w)->mu);
    SMALL(&w)->steps[0].label = 1;
    SMALL(&w)->steps[0].confidence = 0.5;
    pthread_mutex_unlock(&SMALL(&w)->mu);
    struct sl_router *r = router_of(&w);
    if (!r) goto out;
    struct chat c;
    task_req(&c, "cascade", SL_RREQ_CLASSIFY, "triage", "My invoice is wrong");
    struct sl_route_result res;
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_STR(res.decision, "local"); /* 0.5 >= 0.4 for triage */
    T_EQ_INT(res.label, 1);
    T_EQ_STR(res.content, "tech");
    T_NEAR(res.stages[0].threshold, 0.4, 1e-12);
    sl_route_result_free(&res);
    /* a chat naming no task: the default 0.8 */
    chat_req(&c, "cascade", "hello");
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_STR(res.decision, "escalated");
    sl_route_result_free(&res);
    /* a chat naming the task: its threshold */
    chat_req(&c, "cascade", "hello");
    c.req.task = "triage";
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_STR(res.decision, "local");
    sl_route_result_free(&res);
    sl_router_free(r);
out:
    world_free(&w);
}

/* ================================================================ rules */

static void rules_pick_by_each_condition(void)
{
    struct world w;
    world_init(&w);
    struct sl_rule_config *ru = w.rules;
    for (int k = 0; k < 6; k++) {
        memset(&ru[k], 0, sizeof ru[k]);
        ru[k].min_chars = ru[k].max_chars = -1;
        ru[k].to = "large";
    }
    ru[0].task = "fields";
    ru[1].min_chars = 200;
    ru[2].regex = "(?i)\\brefund\\b";
    ru[3].meta_keys[0] = "plan";
    ru[3].meta_values[0] = "gold";
    ru[3].n_meta = 1;
    ru[4].api_key = "vip";
    ru[5].max_chars = 12; /* "Be brief.\nhi" is 12 bytes */
    w.routes[1].rules = ru;
    w.routes[1].n_rules = 6;
    struct sl_router *r = router_of(&w);
    if (!r) goto out;
    struct chat c;
    struct sl_route_result res;
    char long_text[300];
    memset(long_text, 'a', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = 0;
    struct sl_route_meta gold = {"plan", "gold"}, free_plan = {"plan", "free"};
    struct {
        const char *text;
        const char *task; /* extract when set */
        const struct sl_route_meta *meta;
        const char *key;
        const char *want_backend;
        const char *want_reason;
    } cases[] = {
        {"plain question", NULL, NULL, NULL, "small", "no rule matched -> small"},
        {"Ann, 42", "fields", NULL, NULL, "large", "rule 1 -> large"},
        {long_text, NULL, NULL, NULL, "large", "rule 2 -> large"},
        {"I want a REFUND now", NULL, NULL, NULL, "large", "rule 3 -> large"},
        {"refunds are not it", NULL, NULL, NULL, "small", "no rule matched"},
        {"plain question", NULL, &gold, NULL, "large", "rule 4 -> large"},
        {"plain question", NULL, &free_plan, NULL, "small", "no rule matched"},
        {"plain question", NULL, NULL, "vip", "large", "rule 5 -> large"},
        {"plain question", NULL, NULL, "basic", "small", "no rule matched"},
        {"hi", NULL, NULL, NULL, "large", "rule 6 -> large"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        if (cases[k].task) {
            fake_says(LARGE(&w), "{\"name\":\"Ann\"}", 0.9);
            task_req(&c, "rules", SL_RREQ_EXTRACT, cases[k].task, cases[k].text);
        } else {
            fake_says(LARGE(&w), "large answer", 0.9);
            chat_req(&c, "rules", cases[k].text);
        }
        c.req.meta = cases[k].meta;
        c.req.n_meta = cases[k].meta ? 1 : 0;
        c.req.api_key = cases[k].key;
        T_EQ_INT(route(r, &c, &res), 0);
        if (strcmp(res.backend, cases[k].want_backend) || !strstr(res.reason, cases[k].want_reason))
            T_FAIL_AT("case %zu: backend %s (want %s), reason '%s' (want '%s')", k, res.backend,
                      cases[k].want_backend, res.reason, cases[k].want_reason);
        T_EQ_STR(res.decision, "rules");
        T_EQ_INT(res.n_stages, 1);
        sl_route_result_free(&res);
    }
    sl_router_free(r);
out:
    world_free(&w);
}

/* ================================================================ predict */

static void predict_sends_long_hard_inputs_to_the_last_tier(void)
{
    struct world w;
    world_init(&w);
    /* no embedding; length weight 20, bias -10: P > 0.5 past ~147 bytes */
    struct sl_predictor *p = NULL;
    struct sl_err err = {0};
    float wts[1 + 16] = {20.0f};
    T_OK(sl_predictor_new_linear(&p, 0, 16, wts, -10.0f, &err), &err);
    snprintf(w.predict_path, sizeof w.predict_path, "%s", t_tmp_path("router-predict.gguf"));
    T_OK(sl_predictor_save(p, w.predict_path, &err), &err);
    sl_predictor_free(p);
    w.routes[2].predict_model = w.predict_path;
    w.cfg.n_routes = 3;
    struct sl_router *r = router_of(&w);
    if (!r) goto out;
    struct chat c;
    struct sl_route_result res;
    chat_req(&c, "predict", "short one");
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_STR(res.backend, "small");
    T_EQ_STR(res.decision, "predict");
    T_TRUE(!res.escalated);
    T_TRUE(strstr(res.reason, "P(small wrong) 0.") && strstr(res.reason, "-> small"));
    sl_route_result_free(&res);
    char text[400];
    memset(text, 'x', sizeof text - 1);
    text[sizeof text - 1] = 0;
    chat_req(&c, "predict", text);
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_STR(res.backend, "large");
    T_TRUE(res.escalated);
    T_EQ_INT(res.n_stages, 1); /* decided before any model ran */
    T_EQ_INT(SMALL(&w)->n_calls, 1);
    sl_route_result_free(&res);
    sl_router_free(r);
    /* with an embedding from the small tier: its first dimension decides */
    float we[2 + 1] = {12.0f, 0.0f, 0.0f};
    T_OK(sl_predictor_new_linear(&p, 2, 0, we, -6.0f, &err), &err);
    T_OK(sl_predictor_save(p, w.predict_path, &err), &err);
    sl_predictor_free(p);
    r = router_of(&w);
    if (!r) goto out;
    chat_req(&c, "predict", "an easy one");
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_STR(res.backend, "small");
    sl_route_result_free(&res);
    chat_req(&c, "predict", "a hard one");
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_STR(res.backend, "large");
    sl_route_result_free(&res);
    sl_router_free(r);
out:
    world_free(&w);
}

/* ================================================================ fallback */

static void fallback_on_every_failure_status(void)
{
    struct world w;
    world_init(&w);
    static struct sl_rule_config all_large = {.min_chars = -1, .max_chars = -1, .to = "large"};
    w.routes[1].rules = &all_large;
    w.routes[1].n_rules = 1;
    w.routes[1].fallback[0] = "backup";
    w.routes[1].fallback[1] = "small";
    w.routes[1].n_fallback = 2;
    struct sl_router *r = router_of(&w);
    if (!r) goto out;
    static const struct {
        enum sl_backend_status st;
        int http;
        const char *note;
    } fails[] = {
        {SL_BACKEND_CONNECT, 0, "connection failed"},
        {SL_BACKEND_TIMEOUT, 0, "timeout"},
        {SL_BACKEND_HTTP, 500, "HTTP 500"},
        {SL_BACKEND_HTTP, 429, "HTTP 429"},
        {SL_BACKEND_MALFORMED, 200, "malformed response"},
        {SL_BACKEND_BREAKER_OPEN, 0, "circuit breaker open"},
    };
    for (size_t k = 0; k < sizeof fails / sizeof *fails; k++) {
        fake_fails(LARGE(&w), fails[k].st, fails[k].http);
        struct chat c;
        chat_req(&c, "rules", "question");
        struct sl_route_result res;
        T_EQ_INT(route(r, &c, &res), 0);
        T_EQ_INT(res.status, 200);
        T_EQ_STR(res.decision, "fallback");
        T_EQ_STR(res.backend, "backup");
        T_EQ_INT(res.n_stages, 2);
        T_EQ_INT(res.stages[0].status, fails[k].st);
        if (!strstr(res.stages[0].note, fails[k].note))
            T_FAIL_AT("stage note '%s' lacks '%s'", res.stages[0].note, fails[k].note);
        T_TRUE(strstr(res.reason, "large: ") != NULL);
        sl_route_result_free(&res);
    }
    /* backup down too: the next fallback */
    fake_fails(BACKUP(&w), SL_BACKEND_TIMEOUT, 0);
    struct chat c;
    chat_req(&c, "rules", "question");
    struct sl_route_result res;
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_STR(res.backend, "small");
    T_EQ_INT(res.n_stages, 3);
    sl_route_result_free(&res);
    sl_router_free(r);
out:
    world_free(&w);
}

static void cascade_keeps_the_small_answer_when_the_large_fails(void)
{
    struct world w;
    world_init(&w);
    fake_says(SMALL(&w), "small guess", 0.3);
    fake_fails(LARGE(&w), SL_BACKEND_HTTP, 503);
    struct sl_router *r = router_of(&w);
    if (!r) goto out;
    struct chat c;
    chat_req(&c, "cascade", "question");
    struct sl_route_result res;
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_INT(res.status, 200);
    T_EQ_STR(res.decision, "fallback");
    T_EQ_STR(res.content, "small guess");
    T_TRUE(res.escalated);
    T_TRUE(res.stages[0].accepted);
    T_TRUE(strstr(res.reason, "kept small's answer") != NULL);
    sl_route_result_free(&res);
    /* small fails, large answers: a fallback too */
    fake_fails(SMALL(&w), SL_BACKEND_TIMEOUT, 0);
    fake_says(LARGE(&w), "large answer", 0.9);
    chat_req(&c, "cascade", "question");
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_STR(res.decision, "fallback");
    T_EQ_STR(res.backend, "large");
    T_EQ_STR(res.reason, "small: timeout; large answered");
    sl_route_result_free(&res);
    sl_router_free(r);
out:
    world_free(&w);
}

struct cost_sum {
    int64_t n;
    double api, infra;
};

static int sum_costs(void *user, const struct sl_store_cost_row *row)
{
    struct cost_sum *s = user;
    s->n += row->n_requests;
    s->api += row->api_cost;
    s->infra += row->infra_cost;
    return 0;
}

static void every_tier_failing_is_502_and_still_logged(void)
{
    struct world w;
    world_init(&w);
    fake_fails(SMALL(&w), SL_BACKEND_CONNECT, 0);
    fake_fails(LARGE(&w), SL_BACKEND_HTTP, 500);
    struct sl_router *r = router_of(&w);
    if (!r) goto out;
    struct chat c;
    chat_req(&c, "cascade", "question");
    struct sl_route_result res;
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_INT(res.status, 502);
    T_EQ_STR(res.decision, "failed");
    T_TRUE(res.error && strstr(res.error, "small: connection failed") &&
           strstr(res.error, "large: HTTP 500"));
    T_EQ_STR(res.backend, "");
    T_EQ_INT(res.n_stages, 2);
    struct sl_store_row row;
    struct sl_err err = {0};
    T_OK(w.store.iface->get_request(w.store.ctx, c.id, &row, &err), &err);
    T_EQ_INT(row.status, 502);
    T_EQ_STR(row.decision, "failed");
    T_EQ_STR(row.tiers, "small,large");
    T_TRUE(row.input && strstr(row.input, "question"));
    sl_store_row_free(&row);
    struct cost_sum s = {0};
    T_OK(w.store.iface->costs(w.store.ctx, SL_STORE_BY_ROUTE, 0, sum_costs, &s, &err), &err);
    T_EQ_INT(s.n, 1);
    sl_route_result_free(&res);
    sl_router_free(r);
out:
    world_free(&w);
}

/* should_stop: the client leaves once the small tier has answered, or
 * while the large tier's call runs */
static int count_of(struct fake *f, const int *n)
{
    pthread_mutex_lock(&f->mu);
    int v = *n;
    pthread_mutex_unlock(&f->mu);
    return v;
}

static int gone_after_small(void *user)
{
    struct fake *s = SMALL((struct world *)user);
    return count_of(s, &s->n_done) > 0;
}

static int gone_during_large(void *user)
{
    struct fake *l = LARGE((struct world *)user);
    return count_of(l, &l->n_calls) > 0;
}

static void a_client_gone_is_not_escalated_and_is_logged_as_cancelled(void)
{
    struct world w;
    world_init(&w);
    fake_says(SMALL(&w), "maybe 5", 0.41); /* unsure: would go to large */
    struct sl_router *r = router_of(&w);
    if (!r) goto out;
    for (int when = 0; when < 2; when++)
        for (int kind = 0; kind < 2; kind++) {
            struct chat c;
            if (kind == 0) chat_req(&c, "cascade", "What is 2+2?");
            else task_req(&c, "cascade", SL_RREQ_CLASSIFY, "triage", "my card was charged twice");
            /* gone before the large tier, or while its call waits */
            c.req.should_stop = when ? gone_during_large : gone_after_small;
            c.req.stop_user = &w;
            struct sl_route_result res;
            T_EQ_INT(route(r, &c, &res), 0);
            T_EQ_INT(res.status, 499);
            T_EQ_STR(res.decision, "cancelled");
            T_EQ_INT(res.n_stages, 2);
            T_EQ_INT(LARGE(&w)->n_calls, when); /* the call was given up, or never made */
            if (when == 0) T_EQ_STR(res.stages[1].note, "not called: the client went away");
            else T_EQ_INT(res.stages[1].status, SL_BACKEND_ABORTED);
            struct sl_store_row row;
            struct sl_err err = {0};
            T_OK(w.store.iface->get_request(w.store.ctx, c.id, &row, &err), &err);
            T_EQ_INT(row.status, 499);
            T_EQ_STR(row.decision, "cancelled");
            sl_store_row_free(&row);
            sl_route_result_free(&res);
            fake_reset(SMALL(&w));
            fake_reset(LARGE(&w));
        }
    sl_router_free(r);
out:
    world_free(&w);
}

/* ================================================================ budget */

static void budget_keeps_traffic_local_until_the_next_utc_day(void)
{
    struct world w;
    world_init(&w);
    fake_says(SMALL(&w), "small guess", 0.1); /* always unsure */
    w.routes[0].budget_per_day = 0.005;       /* large costs 0.003 a call */
    struct sl_router *r = router_of(&w);
    if (!r) goto out;
    const char *want[] = {"escalated", "escalated", "budget", "budget"};
    for (int k = 0; k < 4; k++) {
        struct chat c;
        chat_req(&c, "cascade", "question");
        struct sl_route_result res;
        T_EQ_INT(route(r, &c, &res), 0);
        T_EQ_INT(res.status, 200);
        T_EQ_STR(res.decision, want[k]);
        if (k >= 2) {
            T_EQ_STR(res.content, "small guess");
            T_TRUE(!res.stages[1].called);
            T_TRUE(strstr(res.stages[1].note, "budget") != NULL);
        }
        sl_route_result_free(&res);
        w.now += 60 * 1000;
    }
    T_EQ_INT(LARGE(&w)->n_calls, 2);
    T_NEAR(sl_router_spend_today(r, "cascade"), 0.006, 1e-12); /* infra is not spend */
    /* a restarted router reads today's spend back from the ledger */
    sl_router_free(r);
    r = router_of(&w);
    if (!r) goto out;
    T_NEAR(sl_router_spend_today(r, "cascade"), 0.006, 1e-12);
    struct chat c;
    chat_req(&c, "cascade", "question");
    struct sl_route_result res;
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_STR(res.decision, "budget");
    sl_route_result_free(&res);
    /* past midnight UTC: remote again */
    w.now = T0_MS + 14 * 3600 * 1000LL + 1000; /* 00:00:01 the next day */
    T_NEAR(sl_router_spend_today(r, "cascade"), 0, 0);
    chat_req(&c, "cascade", "question");
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_STR(res.decision, "escalated");
    sl_route_result_free(&res);
    T_EQ_INT(LARGE(&w)->n_calls, 3);
    sl_router_free(r);
out:
    world_free(&w);
}

/* ================================================================ privacy */

static const char *pii_values[] = {"ann.smith@example.com", "+44 20 7946 0958",
                                   "4111 1111 1111 1111", "DE89 3704 0044 0532 0130 00"};

static int count_pii(struct fake *f)
{
    int hits = 0;
    pthread_mutex_lock(&f->mu);
    for (int k = 0; k < f->n_calls && k < FAKE_MAX_REC; k++)
        for (size_t p = 0; p < sizeof pii_values / sizeof *pii_values; p++)
            if (f->rec[k] && strstr(f->rec[k], pii_values[p])) hits++;
    pthread_mutex_unlock(&f->mu);
    return hits;
}

static void local_only_never_sends_pii_to_a_remote_backend(void)
{
    struct world w;
    world_init(&w);
    fake_says(SMALL(&w), "small guess", 0.1);
    w.routes[0].pii = SL_PII_POLICY_LOCAL_ONLY;
    static struct sl_rule_config all_large = {.min_chars = -1, .max_chars = -1, .to = "large"};
    w.routes[1].rules = &all_large;
    w.routes[1].n_rules = 1;
    w.routes[1].pii = SL_PII_POLICY_LOCAL_ONLY;
    struct sl_router *r = router_of(&w);
    if (!r) goto out;
    char text[512];
    snprintf(text, sizeof text, "Mail %s or call %s; card %s, IBAN %s.", pii_values[0],
             pii_values[1], pii_values[2], pii_values[3]);
    const char *routes[] = {"cascade", "rules"};
    for (int k = 0; k < 2; k++) {
        struct chat c;
        chat_req(&c, routes[k], text);
        struct sl_route_result res;
        T_EQ_INT(route(r, &c, &res), 0);
        T_EQ_INT(res.status, 200);
        T_EQ_STR(res.decision, "pii-local");
        T_EQ_STR(res.pii_action, "kept-local");
        T_EQ_INT(res.pii_spans, 4);
        T_EQ_STR(res.backend, "small");
        sl_route_result_free(&res);
        /* PII only in the system message counts too */
        chat_req(&c, routes[k], "no pii here");
        c.msgs[0].content = text;
        T_EQ_INT(route(r, &c, &res), 0);
        T_EQ_STR(res.decision, "pii-local");
        sl_route_result_free(&res);
        /* and a task input */
        task_req(&c, routes[k], SL_RREQ_CLASSIFY, "triage", text);
        T_EQ_INT(route(r, &c, &res), 0);
        T_EQ_STR(res.decision, "pii-local");
        sl_route_result_free(&res);
    }
    T_EQ_INT(LARGE(&w)->n_calls, 0);
    T_EQ_INT(count_pii(LARGE(&w)), 0);
    T_TRUE(count_pii(SMALL(&w)) > 0); /* the local tier did get it */
    /* without PII the large tier is reachable */
    struct chat c;
    chat_req(&c, "cascade", "nothing personal");
    struct sl_route_result res;
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_STR(res.decision, "escalated");
    T_EQ_STR(res.pii_action, "none");
    sl_route_result_free(&res);
    T_EQ_INT(count_pii(LARGE(&w)), 0);
    sl_router_free(r);
out:
    world_free(&w);
}

struct collected {
    char text[1024];
    int n;
    bool data_has_placeholder;
    bool data_has_email;
};

static int collect_chunk(void *user, const struct sl_backend_chunk *c)
{
    struct collected *s = user;
    strncat(s->text, c->delta,
            c->delta_len < sizeof s->text - strlen(s->text) - 1
                ? c->delta_len
                : sizeof s->text - strlen(s->text) - 1);
    s->n++;
    char *d = strndup(c->data, c->len);
    if (strstr(d, "[EMAIL_")) s->data_has_placeholder = true;
    if (strstr(d, "ann.smith")) s->data_has_email = true;
    free(d);
    return 0;
}

static void redact_sends_placeholders_and_restores_the_answer(void)
{
    struct world w;
    world_init(&w);
    fake_says(SMALL(&w), "small guess", 0.1);
    fake_says(LARGE(&w), "I wrote to [EMAIL_1] and [PHONE_1] today.", 0.9);
    w.routes[0].pii = SL_PII_POLICY_REDACT;
    struct sl_router *r = router_of(&w);
    if (!r) goto out;
    char text[512];
    snprintf(text, sizeof text, "Mail %s or call %s; card %s, IBAN %s.", pii_values[0],
             pii_values[1], pii_values[2], pii_values[3]);
    struct chat c;
    chat_req(&c, "cascade", text);
    struct sl_route_result res;
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_STR(res.decision, "escalated");
    T_EQ_STR(res.pii_action, "redacted");
    char want[256];
    snprintf(want, sizeof want, "I wrote to %s and %s today.", pii_values[0], pii_values[1]);
    T_EQ_STR(res.content, want);
    sl_route_result_free(&res);
    T_EQ_INT(LARGE(&w)->n_calls, 1);
    T_EQ_INT(count_pii(LARGE(&w)), 0);
    T_TRUE(LARGE(&w)->rec[0] && strstr(LARGE(&w)->rec[0], "[EMAIL_1]") &&
           strstr(LARGE(&w)->rec[0], "[CARD_1]") && strstr(LARGE(&w)->rec[0], "[IBAN_1]"));
    /* streamed: chunks restored, placeholders split across chunks too */
    struct collected got = {{0}, 0, false, false};
    chat_req(&c, "cascade", text);
    c.req.on_chunk = collect_chunk;
    c.req.on_chunk_user = &got;
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_STR(got.text, want);
    T_TRUE(got.n > 2);
    T_TRUE(!got.data_has_placeholder);
    T_TRUE(got.data_has_email);
    T_EQ_INT(LARGE(&w)->n_streams, 1);
    T_EQ_STR(res.content, want);
    sl_route_result_free(&res);
    /* a task input is redacted too */
    pthread_mutex_lock(&SMALL(&w)->mu);
    SMALL(&w)->steps[0].label = 0;
    pthread_mutex_unlock(&SMALL(&w)->mu);
    task_req(&c, "cascade", SL_RREQ_CLASSIFY, "triage", text);
    fake_says(LARGE(&w), NULL, 0.95);
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_STR(res.pii_action, "redacted");
    sl_route_result_free(&res);
    T_EQ_INT(LARGE(&w)->n_calls, 3);
    T_EQ_INT(count_pii(LARGE(&w)), 0);
    /* an extract answer's placeholders are restored in its JSON */
    fake_says(SMALL(&w), "{}", 0.1);
    fake_says(LARGE(&w), "{\"contact\":\"[EMAIL_1]\"}", 0.95);
    task_req(&c, "cascade", SL_RREQ_EXTRACT, "fields", text);
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_STR(res.content, "{\"contact\":\"ann.smith@example.com\"}");
    sl_route_result_free(&res);
    T_EQ_INT(count_pii(LARGE(&w)), 0);
    sl_router_free(r);
out:
    world_free(&w);
}

static void an_accepted_early_answer_streams_as_one_chunk(void)
{
    struct world w;
    world_init(&w);
    struct sl_router *r = router_of(&w);
    if (!r) goto out;
    struct collected got = {{0}, 0, false, false};
    struct chat c;
    chat_req(&c, "cascade", "hello");
    c.req.on_chunk = collect_chunk;
    c.req.on_chunk_user = &got;
    struct sl_route_result res;
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_STR(res.decision, "local");
    T_EQ_INT(got.n, 1);
    T_EQ_STR(got.text, "small answer");
    sl_route_result_free(&res);
    /* escalated: the last tier streams chunk by chunk */
    fake_says(SMALL(&w), "unsure", 0.2);
    memset(&got, 0, sizeof got);
    chat_req(&c, "cascade", "hello");
    c.req.on_chunk = collect_chunk;
    c.req.on_chunk_user = &got;
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_STR(got.text, "large answer");
    T_TRUE(got.n > 1);
    sl_route_result_free(&res);
    sl_router_free(r);
out:
    world_free(&w);
}

/* ================================================================ the log */

static void ledger_and_request_costs_add_up(void)
{
    struct world w;
    world_init(&w);
    struct sl_router *r = router_of(&w);
    if (!r) goto out;
    double total = 0;
    char first_id[32] = "";
    for (int k = 0; k < 6; k++) {
        fake_says(SMALL(&w), "small", k % 2 ? 0.95 : 0.2);
        struct chat c;
        chat_req(&c, "cascade", "question");
        if (!k) snprintf(first_id, sizeof first_id, "%s", c.id);
        struct sl_route_result res;
        T_EQ_INT(route(r, &c, &res), 0);
        double st = 0;
        for (size_t s = 0; s < res.n_stages; s++)
            st += res.stages[s].cost;
        T_NEAR(res.cost, st, 1e-12);
        total += res.cost;
        sl_route_result_free(&res);
    }
    struct cost_sum s = {0};
    struct sl_err err = {0};
    T_OK(w.store.iface->costs(w.store.ctx, SL_STORE_BY_ROUTE, 0, sum_costs, &s, &err), &err);
    T_EQ_INT(s.n, 6);
    T_NEAR(s.api, 3 * 0.003, 1e-9);    /* three escalations */
    T_NEAR(s.infra, 6 * 0.0005, 1e-9); /* six small calls */
    T_NEAR(s.api + s.infra, total, 1e-9);
    struct sl_store_row row;
    T_OK(w.store.iface->get_request(w.store.ctx, first_id, &row, &err), &err);
    T_EQ_STR(row.decision, "escalated");
    T_EQ_STR(row.tiers, "small,large");
    T_EQ_STR(row.backend, "large");
    T_EQ_STR(row.output, "large answer");
    T_EQ_INT(row.n_stages, 2);
    T_NEAR(row.cost, 0.0035, 1e-12);
    T_EQ_INT(row.status, 200);
    T_TRUE(row.input && strstr(row.input, "\"role\":\"user\""));
    sl_store_row_free(&row);
    /* no_log: nothing written */
    struct chat c;
    chat_req(&c, "cascade", "question");
    c.req.no_log = true;
    struct sl_route_result res;
    T_EQ_INT(route(r, &c, &res), 0);
    sl_route_result_free(&res);
    T_EQ_INT(w.store.iface->get_request(w.store.ctx, c.id, &row, &err), SL_ENOTFOUND);
    sl_router_free(r);
out:
    world_free(&w);
}

/* ================================================================ errors */

static void bad_requests_and_bad_configs_say_what_is_wrong(void)
{
    struct world w;
    world_init(&w);
    struct sl_router *r = router_of(&w);
    if (!r) goto out;
    T_TRUE(sl_router_has_route(r, "cascade"));
    T_TRUE(!sl_router_has_route(r, "nope"));
    T_TRUE(sl_router_backend(r, "large") != NULL);
    struct chat c;
    struct sl_route_result res;
    struct sl_err err = {0};
    chat_req(&c, "nope", "x");
    T_EQ_INT(sl_router_route(r, &c.req, &res, &err), SL_ENOTFOUND);
    T_EQ_INT(res.status, 404);
    T_TRUE(res.error && strstr(res.error, "route 'nope'"));
    sl_route_result_free(&res);
    task_req(&c, "cascade", SL_RREQ_CLASSIFY, "fields", "x"); /* an extract task */
    T_EQ_INT(sl_router_route(r, &c.req, &res, &err), SL_EINVAL);
    T_EQ_INT(res.status, 400);
    T_TRUE(strstr(err.msg, "not a classify task") != NULL);
    sl_route_result_free(&res);
    task_req(&c, "cascade", SL_RREQ_EXTRACT, "unknown-task", "x");
    T_EQ_INT(sl_router_route(r, &c.req, &res, &err), SL_ENOTFOUND);
    T_EQ_INT(res.status, 404);
    sl_route_result_free(&res);
    chat_req(&c, "cascade", "x");
    c.req.force_tier = "huge";
    T_EQ_INT(sl_router_route(r, &c.req, &res, &err), SL_EINVAL);
    sl_route_result_free(&res);
    chat_req(&c, "cascade", "x");
    c.req.force_tier = "large";
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_STR(res.decision, "forced");
    T_EQ_STR(res.backend, "large");
    sl_route_result_free(&res);
    sl_router_free(r);
    /* configs */
    struct sl_router *bad = NULL;
    struct sl_router_env env = {NULL, NULL, NULL, NULL, NULL};
    T_EQ_INT(sl_router_new(&bad, &w.cfg, &env, &err), SL_EINVAL); /* local without a maker */
    T_TRUE(strstr(err.msg, "backend 'small'") && strstr(err.msg, "local"));
    env = (struct sl_router_env){make_fake, &w, NULL, NULL, NULL};
    w.routes[0].tiers[1] = "huge";
    T_EQ_INT(sl_router_new(&bad, &w.cfg, &env, &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "route 'cascade'") && strstr(err.msg, "'huge'"));
    w.routes[0].tiers[1] = "large";
    static struct sl_rule_config bad_re = {
        .min_chars = -1, .max_chars = -1, .regex = "(unclosed", .to = "large"};
    w.routes[1].rules = &bad_re;
    w.routes[1].n_rules = 1;
    T_EQ_INT(sl_router_new(&bad, &w.cfg, &env, &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "route 'rules': rule 1: regex") != NULL);
    w.routes[1].n_rules = 0;
    w.cfg.n_routes = 3; /* predict without a model file */
    T_EQ_INT(sl_router_new(&bad, &w.cfg, &env, &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "predict_model") != NULL);
    w.routes[2].predict_model = "/nonexistent/router.gguf";
    T_TRUE(sl_router_new(&bad, &w.cfg, &env, &err) < 0);
    T_TRUE(strstr(err.msg, "route 'predict'") && strstr(err.msg, "/nonexistent/router.gguf"));
    T_TRUE(bad == NULL);
out:
    world_free(&w);
}

/* ================================================================ threads */

struct thread_arg {
    struct sl_router *r;
    int t;
    int ok, escalated;
};

static void *thread_main(void *p)
{
    struct thread_arg *a = p;
    for (int k = 0; k < 25; k++) {
        struct chat c;
        memset(&c, 0, sizeof c);
        c.msgs[0] = (struct sl_chat_msg){"user", k % 3 ? "plain" : "mail ann.smith@example.com"};
        sl_backend_req_init(&c.q);
        c.q.msgs = c.msgs;
        c.q.n_msgs = 1;
        snprintf(c.id, sizeof c.id, "thr-%d-%d", a->t, k);
        c.req = (struct sl_route_req){
            .id = c.id, .route = "cascade", .kind = SL_RREQ_CHAT, .chat = &c.q};
        struct sl_route_result res;
        struct sl_err err = {0};
        if (sl_router_route(a->r, &c.req, &res, &err) == 0 && res.status == 200) a->ok++;
        if (res.escalated) a->escalated++;
        sl_route_result_free(&res);
    }
    return NULL;
}

static void concurrent_requests_from_four_threads(void)
{
    struct world w;
    world_init(&w);
    fake_says(SMALL(&w), "small guess", 0.5);
    w.routes[0].pii = SL_PII_POLICY_REDACT;
    w.routes[0].budget_per_day = 1.0; /* not reached: 100 x 0.003 */
    struct sl_router *r = router_of(&w);
    if (!r) goto out;
    pthread_t th[4];
    struct thread_arg args[4];
    for (int t = 0; t < 4; t++) {
        args[t] = (struct thread_arg){r, t, 0, 0};
        pthread_create(&th[t], NULL, thread_main, &args[t]);
    }
    int ok = 0, esc = 0;
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
        ok += args[t].ok;
        esc += args[t].escalated;
    }
    T_EQ_INT(ok, 100);
    T_EQ_INT(esc, 100);
    T_EQ_INT(LARGE(&w)->n_calls, 100);
    T_EQ_INT(count_pii(LARGE(&w)), 0);
    T_NEAR(sl_router_spend_today(r, "cascade"), 100 * 0.003, 1e-9);
    struct cost_sum s = {0};
    struct sl_err err = {0};
    T_OK(w.store.iface->costs(w.store.ctx, SL_STORE_BY_ROUTE, 0, sum_costs, &s, &err), &err);
    T_EQ_INT(s.n, 100);
    T_NEAR(s.api, 100 * 0.003, 1e-9);
    sl_router_free(r);
out:
    world_free(&w);
}

/* ================================================================ a real upstream */

static struct fu_reply http_reply(int status, const char *body)
{
    struct fu_reply r;
    memset(&r, 0, sizeof r);
    r.status = status;
    r.body = strdup(body);
    r.disconnect_after = -1;
    return r;
}

/* A file's routes through sl_config_parse, the large tier the HTTP backend
 * the router makes itself, against the scripted upstream. */
static void yaml_config_routes_to_a_real_http_upstream(void)
{
    struct world w;
    world_init(&w);
    struct fake_upstream *f = NULL;
    struct sl_config cfg;
    struct sl_err err = {0};
    struct sl_router *r = NULL;
    bool cfg_ok = false;
    T_EQ_INT(fu_start(&f), 0);
    if (!f) goto out;
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "models:\n"
             "  tiny: {path: /nonexistent/tiny.gguf}\n"
             "tasks:\n"
             "  triage: {kind: classify, model: tiny, labels: [billing, tech, other]}\n"
             "backends:\n"
             "  small: {kind: local, model: tiny, infra_per_hour: 36}\n"
             "  large:\n"
             "    kind: openai\n"
             "    base_url: http://127.0.0.1:%d/v1\n"
             "    model: big-1\n"
             "    max_retries: 1\n"
             "    backoff_ms: 1\n"
             "    timeout_ms: 3000\n"
             "    input_per_mtok: 2\n"
             "    output_per_mtok: 10\n"
             "routes:\n"
             "  support: {policy: cascade, tiers: [small, large], threshold: 0.8, pii: redact}\n"
             "  private: {policy: cascade, tiers: [small, large], pii: local-only}\n",
             fu_port(f));
    T_OK(sl_config_init(&cfg, &err), &err);
    cfg_ok = true;
    T_OK(sl_config_parse(&cfg, yaml, strlen(yaml), &err), &err);
    fake_says(SMALL(&w), "small guess", 0.2);
    struct sl_router_env env = {make_fake, &w, &w.store, clock_now, &w};
    /* make_fake knows "large" only as a fake: hide it so the router makes
     * the HTTP backend */
    w.fakes[1].name = "large-fake";
    T_OK(sl_router_new(&r, &cfg, &env, &err), &err);
    if (!r) goto out;
    struct fu_reply rep[4] = {
        http_reply(200, "{\"model\":\"big-1\",\"choices\":[{\"message\":{\"role\":\"assistant\","
                        "\"content\":\"Sent to [EMAIL_1].\"},\"finish_reason\":\"stop\"}],"
                        "\"usage\":{\"prompt_tokens\":1000,\"completion_tokens\":100}}"),
        http_reply(500, "{\"error\":{\"message\":\"model crashed\"}}"),
        http_reply(500, "{\"error\":{\"message\":\"model crashed\"}}"),
        http_reply(200, "this is not json"),
    };
    fu_set_replies(f, rep, 4);
    struct chat c;
    struct sl_route_result res;
    /* escalated over HTTP, redacted on the wire, restored in the answer */
    chat_req(&c, "support", "Please mail ann.smith@example.com the invoice.");
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_STR(res.decision, "escalated");
    T_EQ_STR(res.content, "Sent to ann.smith@example.com.");
    T_EQ_STR(res.model, "big-1");
    T_NEAR(res.cost, 0.0005 + 0.003, 1e-12);
    T_TRUE(fu_request_body(f, 0) && !strstr(fu_request_body(f, 0), "ann.smith") &&
           strstr(fu_request_body(f, 0), "[EMAIL_1]"));
    sl_route_result_free(&res);
    /* 500 twice (one retry): the small answer is kept */
    chat_req(&c, "support", "hello");
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_STR(res.decision, "fallback");
    T_EQ_STR(res.content, "small guess");
    T_TRUE(strstr(res.stages[1].note, "HTTP 500") && strstr(res.stages[1].note, "model crashed"));
    sl_route_result_free(&res);
    /* malformed JSON: the same */
    chat_req(&c, "support", "hello");
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_STR(res.decision, "fallback");
    T_EQ_INT(res.stages[1].status, SL_BACKEND_MALFORMED);
    sl_route_result_free(&res);
    int sent = fu_n_requests(f);
    T_EQ_INT(sent, 4);
    /* local-only: nothing goes out */
    chat_req(&c, "private", "Please mail ann.smith@example.com the invoice.");
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_STR(res.decision, "pii-local");
    sl_route_result_free(&res);
    T_EQ_INT(fu_n_requests(f), sent);
    /* a classify task as a chat prompt over HTTP */
    struct fu_reply cls = http_reply(
        200, "{\"choices\":[{\"message\":{\"content\":\"tech\"},\"logprobs\":{\"content\":"
             "[{\"token\":\"tech\",\"logprob\":-0.05,\"top_logprobs\":[{\"token\":\"tech\","
             "\"logprob\":-0.05}]}]}}],\"usage\":{\"prompt_tokens\":50,"
             "\"completion_tokens\":1}}");
    fu_set_replies(f, &cls, 1);
    pthread_mutex_lock(&SMALL(&w)->mu);
    SMALL(&w)->steps[0].label = 0;
    pthread_mutex_unlock(&SMALL(&w)->mu);
    task_req(&c, "support", SL_RREQ_CLASSIFY, "triage", "The app crashes on start");
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_STR(res.decision, "escalated");
    T_EQ_INT(res.label, 1);
    T_EQ_STR(res.content, "tech");
    T_NEAR(res.confidence, exp(-0.05), 1e-9);
    sl_route_result_free(&res);
out:
    sl_router_free(r);
    if (cfg_ok) sl_config_free(&cfg);
    fu_stop(f);
    world_free(&w);
}

/* A store that refuses a write: the client still gets its answer, and the
 * loss is counted (the /metrics counter) rather than dropped silently. */
static void a_failed_log_write_is_counted(void)
{
    struct world w;
    world_init(&w);
    struct sl_router *r = router_of(&w);
    if (!r) goto out;
    struct chat c;
    chat_req(&c, "cascade", "What is 2+2?");
    struct sl_route_result res;
    T_EQ_INT((int)sl_router_log_errors(r), 0);
    sl_store_sqlite_fail_at = 1; /* the next sqlite3_step fails */
    T_EQ_INT(route(r, &c, &res), 0);
    sl_store_sqlite_fail_at = 0;
    T_EQ_INT(res.status, 200);
    T_EQ_STR(res.content, "small answer");
    T_TRUE(sl_router_log_errors(r) >= 1);
    sl_route_result_free(&res);
    unsigned long long before = sl_router_log_errors(r);
    chat_req(&c, "cascade", "And 3+3?");
    T_EQ_INT(route(r, &c, &res), 0);
    T_EQ_INT((int)(sl_router_log_errors(r) - before), 0); /* the store works again */
    sl_route_result_free(&res);
    sl_router_free(r);
out:
    world_free(&w);
}

int main(void)
{
    T_RUN(cascade_keeps_a_confident_small_answer);
    T_RUN(cascade_escalates_an_unsure_answer);
    T_RUN(cascade_uses_the_task_threshold);
    T_RUN(rules_pick_by_each_condition);
    T_RUN(predict_sends_long_hard_inputs_to_the_last_tier);
    T_RUN(fallback_on_every_failure_status);
    T_RUN(cascade_keeps_the_small_answer_when_the_large_fails);
    T_RUN(every_tier_failing_is_502_and_still_logged);
    T_RUN(a_client_gone_is_not_escalated_and_is_logged_as_cancelled);
    T_RUN(budget_keeps_traffic_local_until_the_next_utc_day);
    T_RUN(local_only_never_sends_pii_to_a_remote_backend);
    T_RUN(redact_sends_placeholders_and_restores_the_answer);
    T_RUN(an_accepted_early_answer_streams_as_one_chunk);
    T_RUN(ledger_and_request_costs_add_up);
    T_RUN(bad_requests_and_bad_configs_say_what_is_wrong);
    T_RUN(concurrent_requests_from_four_threads);
    T_RUN(yaml_config_routes_to_a_real_http_upstream);
    T_RUN(a_failed_log_write_is_counted);
    return t_done();
}
