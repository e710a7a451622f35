/*
 * router.c - routes: which backend answers a request, and the record of
 * what happened (router layer). Interface, policies and their guarantees:
 * router.h; behaviour for users: docs/router.md ("Routing").
 *
 * One request goes through:
 *   validate   route, task kind, messages
 *   privacy    every message (or the input) is scanned for PII once; a
 *              remote backend gets the text as is, redacted (placeholders,
 *              made once per request and restored in the answer) or is
 *              skipped, per sl_pii_decide
 *   policy     cascade / rules / predict / force_tier picks the tiers
 *   try_tier   one backend call: skip (pii, budget, no task support) or
 *              call, with its stage, cost, ledger row and spend
 *   fallback   failures move on to the fallback list (default: the other
 *              tiers); an unsure earlier answer is kept when nothing better
 *              comes back
 *   log        one request row, also when every tier failed
 *
 * State shared between threads is immutable after sl_router_new, except the
 * per-route spend counters (r->mu). Backends, the PII detector and compiled
 * rule patterns are used from any thread (per-call PCRE2 match data).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "router/router.h"

#include <jansson.h>
#include <math.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/http.h"
#include "base/buf.h"
#include "router/predict.h"
#include "router/privacy.h"

#define DAY_MS 86400000LL
/* PCRE2 limits of one rule regex match (as the PII patterns') */
#define RULE_MATCH_LIMIT 100000
#define RULE_DEPTH_LIMIT 2000
#define RULE_HEAP_LIMIT_KB 4096

struct rbackend {
    const struct sl_backend_config *cfg;
    struct sl_backend b;
    bool made; /* b holds a backend to free */
    bool remote;
    bool spends; /* counts against a route's budget: remote or API-priced */
};

struct rrule {
    const struct sl_rule_config *cfg;
    int to;         /* backend index */
    pcre2_code *re; /* NULL: no regex condition */
};

struct rroute {
    const struct sl_route_config *cfg;
    int tiers[SL_CONFIG_MAX_TIERS];
    size_t n_tiers;
    int fallback[SL_CONFIG_MAX_TIERS]; /* explicit list; n_fallback 0 = other tiers */
    size_t n_fallback;
    struct rrule *rules; /* (n_rules) */
    size_t n_rules;
    int default_tier;
    struct sl_predictor *pred;
    enum sl_pii_policy pii;
    /* spend, under router mu */
    double spend;
    int64_t spend_day;
};

struct sl_router {
    const struct sl_config *cfg;
    struct sl_router_env env;
    struct rbackend *b; /* (n_b) */
    size_t n_b;
    struct rroute *routes; /* (n_routes) */
    size_t n_routes;
    struct sl_pii_detector *pii;
    pcre2_match_context *mctx;
    pthread_mutex_t mu; /* guards routes[].spend, spend_day */
    atomic_ullong log_errors; /* request rows / ledger entries the store refused */
};

/* A store write failed: the request is still answered, but the loss is
 * counted (/metrics: sluice_log_errors_total) and said on stderr, since
 * the log is what costs, evaluation and distillation read. */
static void log_failed(struct sl_router *r, const char *what, const char *id,
                       const struct sl_err *e)
{
    unsigned long long n = atomic_fetch_add(&r->log_errors, 1) + 1;
    if (n <= 10 || (n & (n - 1)) == 0) /* the first ten, then at powers of two */
        fprintf(stderr, "sluice: request log: %s of request %s failed (%llu so far): %s\n", what,
                id ? id : "-", n, e->msg);
}

unsigned long long sl_router_log_errors(const struct sl_router *r)
{
    return atomic_load(&((struct sl_router *)r)->log_errors);
}

/* ================================================================ helpers */

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int64_t wall_ms(const struct sl_router *r)
{
    if (r->env.now_ms) return r->env.now_ms(r->env.clock_ctx);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t day_of(int64_t ms)
{
    return ms >= 0 ? ms / DAY_MS : -((-ms + DAY_MS - 1) / DAY_MS);
}

static char *xstrdup(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s);
    char *p = malloc(n + 1);
    if (p) memcpy(p, s, n + 1);
    return p;
}

static int backend_index(const struct sl_router *r, const char *name)
{
    if (!name) return -1;
    for (size_t k = 0; k < r->n_b; k++)
        if (r->b[k].cfg->name && !strcmp(r->b[k].cfg->name, name)) return (int)k;
    return -1;
}

static struct rroute *route_find(const struct sl_router *r, const char *name)
{
    if (!name) return NULL;
    for (size_t k = 0; k < r->n_routes; k++)
        if (r->routes[k].cfg->name && !strcmp(r->routes[k].cfg->name, name)) return &r->routes[k];
    return NULL;
}

/* ================================================================ budget */

/* Caller holds r->mu. A new UTC day starts from zero. */
static void spend_roll(struct sl_router *r, struct rroute *rt)
{
    int64_t d = day_of(wall_ms(r));
    if (d != rt->spend_day) {
        rt->spend_day = d;
        rt->spend = 0;
    }
}

static bool budget_spent(struct sl_router *r, struct rroute *rt, double *spent)
{
    if (rt->cfg->budget_per_day < 0) return false;
    pthread_mutex_lock(&r->mu);
    spend_roll(r, rt);
    double s = rt->spend;
    pthread_mutex_unlock(&r->mu);
    *spent = s;
    return s >= rt->cfg->budget_per_day;
}

static void spend_add(struct sl_router *r, struct rroute *rt, double cost)
{
    pthread_mutex_lock(&r->mu);
    spend_roll(r, rt);
    rt->spend += cost;
    pthread_mutex_unlock(&r->mu);
}

double sl_router_spend_today(struct sl_router *r, const char *route)
{
    struct rroute *rt = route_find(r, route);
    if (!rt) return 0;
    pthread_mutex_lock(&r->mu);
    spend_roll(r, rt);
    double s = rt->spend;
    pthread_mutex_unlock(&r->mu);
    return s;
}

struct spend_scan {
    const char *route;
    double api;
};

static int spend_row(void *user, const struct sl_store_cost_row *row)
{
    struct spend_scan *S = user;
    if (row->key && !strcmp(row->key, S->route)) S->api += row->api_cost;
    return 0;
}

/* ================================================================ life cycle */

static int make_http(const struct sl_backend_config *bc, struct sl_backend *out, struct sl_err *err)
{
    struct sl_backend_http_params p = sl_backend_http_default_params();
    p.name = bc->name;
    p.base_url = bc->base_url;
    p.model = bc->model;
    p.api_key_env = bc->api_key_env;
    if (bc->connect_timeout_ms > 0) p.connect_timeout_ms = (long)bc->connect_timeout_ms;
    if (bc->timeout_ms > 0) p.timeout_ms = (long)bc->timeout_ms;
    if (bc->max_retries >= 0) p.max_retries = (int)SL_MIN(bc->max_retries, (int64_t)10);
    if (bc->backoff_ms > 0) p.backoff_base_ms = (long)bc->backoff_ms;
    p.task_api = bc->task_api;
    if (bc->breaker_window > 0)
        p.breaker.window = (int)SL_MIN(bc->breaker_window, (int64_t)SL_BREAKER_MAX_WINDOW);
    if (bc->breaker_min_calls > 0)
        p.breaker.min_calls = (int)SL_MIN(bc->breaker_min_calls, (int64_t)SL_BREAKER_MAX_WINDOW);
    if (bc->breaker_cooldown_ms > 0) p.breaker.cooldown_ms = bc->breaker_cooldown_ms;
    if (bc->breaker_failure_rate > 0) p.breaker.failure_rate = bc->breaker_failure_rate;
    return sl_backend_http_new(out, &p, err);
}

static int make_pii(struct sl_router *r, const struct sl_privacy_config *pc, struct sl_err *err)
{
    struct sl_pii_params p = sl_pii_default_params();
    struct sl_pii_pattern pats[SL_PII_MAX_PATTERNS];
    if (pc->kinds) {
        p.kinds = 0;
        for (size_t k = 0; k < pc->n_kinds; k++) {
            int kind = sl_config_pii_kind(pc->kinds[k] ? pc->kinds[k] : "");
            if (kind < 0)
                return sl_err_set(err, SL_EINVAL,
                                  "privacy: unknown PII kind '%s' (email, phone, card, iban, ssn, "
                                  "nino, de_taxid, fr_insee)",
                                  pc->kinds[k] ? pc->kinds[k] : "");
            p.kinds |= 1u << kind;
        }
    }
    if (pc->n_patterns > SL_PII_MAX_PATTERNS)
        return sl_err_set(err, SL_ERANGE, "privacy: %zu patterns, at most %d", pc->n_patterns,
                          SL_PII_MAX_PATTERNS);
    for (size_t k = 0; k < pc->n_patterns; k++) {
        pats[k].label = pc->pattern_labels[k];
        pats[k].regex = pc->pattern_regexes[k];
    }
    p.patterns = pats;
    p.n_patterns = pc->n_patterns;
    return sl_pii_detector_new(&r->pii, &p, err);
}

static int resolve(const struct sl_router *r, const struct sl_route_config *rc, const char *what,
                   const char *name, int *out, struct sl_err *err)
{
    *out = backend_index(r, name);
    if (*out < 0)
        return sl_err_set(err, SL_EINVAL, "route '%s': %s '%s' is not a configured backend",
                          rc->name, what, name ? name : "(none)");
    return 0;
}

static int make_route(struct sl_router *r, struct rroute *rt, const struct sl_route_config *rc,
                      struct sl_err *err)
{
    int rc_;
    rt->cfg = rc;
    rt->spend_day = INT64_MIN;
    if (rc->n_tiers == 0 || rc->n_tiers > SL_CONFIG_MAX_TIERS)
        return sl_err_set(err, SL_EINVAL, "route '%s': needs 1 to %d tiers", rc->name,
                          SL_CONFIG_MAX_TIERS);
    for (size_t k = 0; k < rc->n_tiers; k++)
        if ((rc_ = resolve(r, rc, "tier", rc->tiers[k], &rt->tiers[k], err))) return rc_;
    rt->n_tiers = rc->n_tiers;
    if (rc->n_fallback > SL_CONFIG_MAX_TIERS)
        return sl_err_set(err, SL_ERANGE, "route '%s': more than %d fallbacks", rc->name,
                          SL_CONFIG_MAX_TIERS);
    for (size_t k = 0; k < rc->n_fallback; k++)
        if ((rc_ = resolve(r, rc, "fallback", rc->fallback[k], &rt->fallback[k], err))) return rc_;
    rt->n_fallback = rc->n_fallback;
    if (rc->pii < SL_PII_POLICY_ALLOW || rc->pii > SL_PII_POLICY_LOCAL_ONLY)
        return sl_err_set(err, SL_EINVAL, "route '%s': unknown pii policy %d", rc->name, rc->pii);
    rt->pii = (enum sl_pii_policy)rc->pii;
    switch (rc->policy) {
    case SL_ROUTE_CASCADE:
        break;
    case SL_ROUTE_RULES:
        rt->default_tier = rt->tiers[0];
        if (rc->default_tier &&
            (rc_ = resolve(r, rc, "default_tier", rc->default_tier, &rt->default_tier, err)))
            return rc_;
        if (rc->n_rules > SL_CONFIG_MAX_RULES)
            return sl_err_set(err, SL_ERANGE, "route '%s': more than %d rules", rc->name,
                              SL_CONFIG_MAX_RULES);
        if (rc->n_rules && !(rt->rules = calloc(rc->n_rules, sizeof *rt->rules)))
            return sl_err_set(err, SL_ENOMEM, "route '%s': out of memory", rc->name);
        for (size_t k = 0; k < rc->n_rules; k++) {
            struct rrule *ru = &rt->rules[k];
            ru->cfg = &rc->rules[k];
            rt->n_rules = k + 1;
            if ((rc_ = resolve(r, rc, "rule 'to'", ru->cfg->to, &ru->to, err))) return rc_;
            if (ru->cfg->n_meta > SL_CONFIG_MAX_META)
                return sl_err_set(err, SL_ERANGE, "route '%s': rule %zu: too many metadata keys",
                                  rc->name, k + 1);
            if (ru->cfg->regex) {
                int ec = 0;
                PCRE2_SIZE eo = 0;
                ru->re = pcre2_compile((PCRE2_SPTR)ru->cfg->regex, PCRE2_ZERO_TERMINATED,
                                       PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &ec, &eo, NULL);
                if (!ru->re) {
                    PCRE2_UCHAR msg[128];
                    pcre2_get_error_message(ec, msg, sizeof msg);
                    return sl_err_set(err, SL_EINVAL,
                                      "route '%s': rule %zu: regex '%s': %s at "
                                      "offset %zu",
                                      rc->name, k + 1, ru->cfg->regex, (const char *)msg,
                                      (size_t)eo);
                }
            }
        }
        break;
    case SL_ROUTE_PREDICT: {
        if (!rc->predict_model || !*rc->predict_model)
            return sl_err_set(err, SL_EINVAL,
                              "route '%s': policy predict needs predict_model (a file from "
                              "`sluice train-router`)",
                              rc->name);
        struct sl_err e2 = {0};
        if ((rc_ = sl_predictor_load(&rt->pred, rc->predict_model, &e2)))
            return sl_err_set(err, rc_, "route '%s': %s", rc->name, e2.msg);
        const struct rbackend *t0 = &r->b[rt->tiers[0]];
        if (sl_predictor_embd_dim(rt->pred) > 0 && !t0->b.iface->embed)
            return sl_err_set(err, SL_EINVAL,
                              "route '%s': the predict model uses %d-wide embeddings but tier "
                              "'%s' cannot embed",
                              rc->name, (int)sl_predictor_embd_dim(rt->pred), t0->cfg->name);
        break;
    }
    default:
        return sl_err_set(err, SL_EINVAL, "route '%s': unknown policy %d", rc->name, rc->policy);
    }
    return 0;
}

void sl_router_free(struct sl_router *r)
{
    if (!r) return;
    for (size_t k = 0; k < r->n_routes; k++) {
        struct rroute *rt = &r->routes[k];
        for (size_t q = 0; q < rt->n_rules; q++)
            pcre2_code_free(rt->rules[q].re);
        free(rt->rules);
        sl_predictor_free(rt->pred);
    }
    free(r->routes);
    for (size_t k = 0; k < r->n_b; k++)
        if (r->b[k].made && r->b[k].b.iface) r->b[k].b.iface->free(r->b[k].b.ctx);
    free(r->b);
    sl_pii_detector_free(r->pii);
    pcre2_match_context_free(r->mctx);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

int sl_router_new(struct sl_router **out, const struct sl_config *cfg,
                  const struct sl_router_env *env, struct sl_err *err)
{
    int rc = 0;
    *out = NULL;
    struct sl_router *r = calloc(1, sizeof *r);
    if (!r) return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    pthread_mutex_init(&r->mu, NULL);
    r->cfg = cfg;
    if (env) r->env = *env;
    if (cfg->n_backends > SL_CONFIG_MAX_BACKENDS || cfg->n_routes > SL_CONFIG_MAX_ROUTES) {
        rc = sl_err_set(err, SL_ERANGE, "%s: at most %d backends and %d routes", __func__,
                        SL_CONFIG_MAX_BACKENDS, SL_CONFIG_MAX_ROUTES);
        goto fail; /* too many */
    }
    if (cfg->n_backends && !(r->b = calloc(cfg->n_backends, sizeof *r->b))) goto nomem;
    if (cfg->n_routes && !(r->routes = calloc(cfg->n_routes, sizeof *r->routes))) goto nomem;
    if (!(r->mctx = pcre2_match_context_create(NULL))) goto nomem;
    pcre2_set_match_limit(r->mctx, RULE_MATCH_LIMIT);
    pcre2_set_depth_limit(r->mctx, RULE_DEPTH_LIMIT);
    pcre2_set_heap_limit(r->mctx, RULE_HEAP_LIMIT_KB);
    /* backends */
    for (size_t k = 0; k < cfg->n_backends; k++) {
        const struct sl_backend_config *bc = &cfg->backends[k];
        struct rbackend *rb = &r->b[k];
        rb->cfg = bc;
        r->n_b = k + 1;
        if (!bc->name || !*bc->name) {
            rc = sl_err_set(err, SL_EINVAL, "backend %zu has no name", k + 1);
            goto fail; /* bad config */
        }
        if (backend_index(r, bc->name) != (int)k) {
            rc = sl_err_set(err, SL_EINVAL, "backend '%s' is configured twice", bc->name);
            goto fail; /* bad config */
        }
        int made = 1;
        if (r->env.make_backend) {
            made = r->env.make_backend(r->env.user, bc, &rb->b, err);
            if (made < 0) {
                rc = made;
                goto fail; /* the caller's error names it */
            }
        }
        if (made == 1) {
            if (bc->kind == SL_BACKEND_KIND_OPENAI) {
                if ((rc = make_http(bc, &rb->b, err))) goto fail; /* message names it */
            } else {
                rc = sl_err_set(err, SL_EINVAL,
                                "backend '%s': kind local runs a model of this process; only "
                                "`sluice serve` (which loads the models) can make it",
                                bc->name);
                goto fail; /* no local models here */
            }
        }
        if (!rb->b.iface || !rb->b.iface->complete || !rb->b.iface->free) {
            rc = sl_err_set(err, SL_EINVAL, "backend '%s': made without complete/free", bc->name);
            goto fail; /* a broken make_backend */
        }
        rb->made = true;
        rb->remote = bc->remote != 0;
        rb->spends = rb->remote || bc->input_per_mtok > 0 || bc->output_per_mtok > 0;
    }
    if ((rc = make_pii(r, &cfg->privacy, err))) goto fail; /* message names the pattern */
    for (size_t k = 0; k < cfg->n_routes; k++) {
        r->n_routes = k + 1;
        if (!cfg->routes[k].name || !*cfg->routes[k].name) {
            rc = sl_err_set(err, SL_EINVAL, "route %zu has no name", k + 1);
            goto fail; /* bad config */
        }
        if ((rc = make_route(r, &r->routes[k], &cfg->routes[k], err))) goto fail;
    }
    /* today's spend per route, from the ledger */
    if (r->env.store && r->env.store->iface) {
        int64_t now = wall_ms(r), midnight = day_of(now) * DAY_MS;
        for (size_t k = 0; k < r->n_routes; k++) {
            struct rroute *rt = &r->routes[k];
            struct spend_scan S = {rt->cfg->name, 0};
            if ((rc = r->env.store->iface->costs(r->env.store->ctx, SL_STORE_BY_ROUTE, midnight,
                                                 spend_row, &S, err)))
                goto fail; /* the store's message */
            rt->spend = S.api;
            rt->spend_day = day_of(now);
        }
    }
    *out = r;
    return 0;
nomem:
    rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
fail:
    sl_router_free(r);
    return rc;
}

bool sl_router_has_route(const struct sl_router *r, const char *name)
{
    return route_find(r, name) != NULL;
}

struct sl_backend *sl_router_backend(struct sl_router *r, const char *name)
{
    int k = backend_index(r, name);
    return k < 0 ? NULL : &r->b[k].b;
}

void sl_route_result_free(struct sl_route_result *res)
{
    if (!res) return;
    free(res->error);
    free(res->model);
    free(res->content);
    free(res->finish_reason);
    free(res->probs);
    memset(res, 0, sizeof *res);
}

/* ================================================================ one request */

/* An answer from one backend, restored when it was sent redacted. */
struct answer {
    int bi; /* backend index; -1 = none */
    char *content, *finish, *model;
    int32_t label;
    float *probs;
    size_t n_probs;
    double confidence;
    int64_t tokens_in, tokens_out;
    bool streamed; /* already delivered through on_chunk */
};

static void answer_free(struct answer *a)
{
    free(a->content);
    free(a->finish);
    free(a->model);
    free(a->probs);
    memset(a, 0, sizeof *a);
    a->bi = -1;
    a->label = -1;
    a->confidence = -1;
}

struct rq {
    struct sl_router *r;
    struct rroute *rt;
    const struct sl_route_req *req;
    struct sl_route_result *res;
    const struct sl_task_config *task; /* classify/extract */
    const char *task_name;             /* for thresholds and rules */
    /* the text rules, predict and the log look at */
    const char *text;
    size_t text_len;
    char *text_owned;
    /* privacy */
    int scan_rc;
    size_t n_spans;
    struct sl_pii_span *spans; /* (n_spans) every message's, in message order */
    size_t *msg_off;           /* (n_msgs or 1) first span of each message */
    size_t *msg_spans;         /* (n_msgs or 1) spans of each message */
    bool redacted_ready;
    struct sl_pii_map map;
    struct sl_chat_msg *red_msgs; /* chat, redacted */
    char **red_contents;
    char *red_input; /* tasks, redacted */
    bool sent_raw, sent_redacted, pii_kept;
    bool budget_skipped, pii_skipped, failed_any;
    bool stream_broken; /* chunks reached the client, then the stream failed */
    bool client_gone;   /* req->should_stop said so (before a tier, or a call gave up) */
    bool called[SL_CONFIG_MAX_BACKENDS];
    size_t n_called;
    char failures[256];
    struct sl_err err; /* out of memory and such, for the caller */
    int fatal;
};

static struct sl_route_stage *stage_new(struct rq *q, int bi)
{
    struct sl_route_result *res = q->res;
    if (res->n_stages == SL_ROUTE_MAX_STAGES) return NULL;
    struct sl_route_stage *s = &res->stages[res->n_stages++];
    memset(s, 0, sizeof *s);
    snprintf(s->backend, sizeof s->backend, "%s", q->r->b[bi].cfg->name);
    s->confidence = -1;
    s->threshold = -1;
    return s;
}

static void note_failure(struct rq *q, const char *name, const char *what)
{
    size_t l = strlen(q->failures);
    if (l + 4 < sizeof q->failures)
        snprintf(q->failures + l, sizeof q->failures - l, "%s%s: %s", l ? "; " : "", name, what);
}

/* Scans every message (chat) or the input once. */
static int pii_scan(struct rq *q)
{
    const struct sl_route_req *req = q->req;
    size_t n = req->kind == SL_RREQ_CHAT ? req->chat->n_msgs : 1;
    struct sl_pii_span *tmp = malloc(SL_PII_MAX_SPANS * sizeof *tmp);
    q->msg_off = calloc(n, sizeof *q->msg_off);
    q->msg_spans = calloc(n, sizeof *q->msg_spans);
    int rc = 0;
    if (!tmp || !q->msg_off || !q->msg_spans) {
        rc = SL_ENOMEM;
        goto out; /* allocation failure */
    }
    for (size_t k = 0; k < n; k++) {
        const char *t = req->kind == SL_RREQ_CHAT ? req->chat->msgs[k].content : req->input;
        if (!t) t = "";
        struct sl_err e = {0};
        size_t found = 0;
        int src = sl_pii_scan(q->r->pii, t, strlen(t), tmp, SL_PII_MAX_SPANS, &found, &e);
        if (src == SL_ENOMEM) {
            rc = src;
            goto out; /* allocation failure */
        }
        if (src) q->scan_rc = src; /* fail closed: sl_pii_decide keeps it local */
        q->msg_off[k] = q->n_spans;
        q->msg_spans[k] = found;
        if (found) {
            struct sl_pii_span *ns = realloc(q->spans, (q->n_spans + found) * sizeof *ns);
            if (!ns) {
                rc = SL_ENOMEM;
                goto out; /* allocation failure */
            }
            q->spans = ns;
            memcpy(q->spans + q->n_spans, tmp, found * sizeof *tmp);
            q->n_spans += found;
        }
    }
out:
    free(tmp);
    return rc;
}

/* The redacted messages / input, made once per request on first use. */
static int pii_redact(struct rq *q)
{
    if (q->redacted_ready) return 0;
    const struct sl_route_req *req = q->req;
    struct sl_err e = {0};
    size_t rl;
    if (req->kind == SL_RREQ_CHAT) {
        size_t n = req->chat->n_msgs;
        q->red_msgs = calloc(n ? n : 1, sizeof *q->red_msgs);
        q->red_contents = calloc(n ? n : 1, sizeof *q->red_contents);
        if (!q->red_msgs || !q->red_contents) return SL_ENOMEM;
        for (size_t k = 0; k < n; k++) {
            const char *t = req->chat->msgs[k].content ? req->chat->msgs[k].content : "";
            int rc =
                sl_pii_redact(q->r->pii, t, strlen(t), q->spans ? q->spans + q->msg_off[k] : NULL,
                              q->msg_spans[k], &q->map, &q->red_contents[k], &rl, &e);
            if (rc) return rc;
            q->red_msgs[k].role = req->chat->msgs[k].role;
            q->red_msgs[k].content = q->red_contents[k];
        }
    } else {
        int rc = sl_pii_redact(q->r->pii, req->input, strlen(req->input), q->spans, q->msg_spans[0],
                               &q->map, &q->red_input, &rl, &e);
        if (rc) return rc;
    }
    q->redacted_ready = true;
    return 0;
}

static char *restore(const struct rq *q, const char *text)
{
    char *out = NULL;
    size_t ol;
    if (!text) return NULL;
    if (sl_pii_restore(&q->map, text, strlen(text), &out, &ol, NULL)) return NULL;
    return out;
}

/* ---------------------------------------------------------------- streaming */

/* A chat.completion.chunk carrying text as its content delta. */
static char *chunk_json(const char *id, const char *model, const char *text, size_t len,
                        const char *finish)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:[{s:i,s:{s:s%},s:o}]}", "id", id ? id : "", "object",
                          "chat.completion.chunk", "model", model ? model : "", "choices", "index",
                          0, "delta", "content", text, len, "finish_reason",
                          finish ? json_string(finish) : json_null());
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

static int deliver_text(struct rq *q, const char *model, const char *text, size_t len,
                        const char *finish)
{
    char *data = chunk_json(q->req->id, model, text, len, finish);
    if (!data) return SL_ENOMEM;
    struct sl_backend_chunk c = {data, strlen(data), text, len};
    int stop = q->req->on_chunk(q->req->on_chunk_user, &c);
    free(data);
    return stop ? 1 : 0;
}

struct stream_ctx {
    struct rq *q;
    bool restoring;
    struct sl_pii_restorer rs;
    int delivered;
    int oom;
};

/* Passes a chunk on; with redaction, its content delta is restored (a
 * placeholder split across chunks is held back until it is whole) and
 * the chunk's JSON rewritten around the restored text. */
static int on_stream_chunk(void *user, const struct sl_backend_chunk *c)
{
    struct stream_ctx *S = user;
    struct rq *q = S->q;
    if (!S->restoring) {
        S->delivered++;
        return q->req->on_chunk(q->req->on_chunk_user, c);
    }
    char *text = NULL, *tail = NULL, *data = NULL;
    size_t tl = 0, tail_len = 0;
    int stop = 0;
    json_t *o = json_loadb(c->data, c->len, 0, NULL);
    json_t *ch = json_array_get(json_object_get(o, "choices"), 0);
    bool finishing = json_is_string(json_object_get(ch, "finish_reason"));
    if (sl_pii_restorer_feed(&S->rs, c->delta, c->delta_len, &text, &tl, NULL) ||
        (finishing && sl_pii_restorer_finish(&S->rs, &tail, &tail_len, NULL))) {
        S->oom = 1;
        stop = 1;
        goto out; /* allocation failure */
    }
    if (tail_len) {
        char *both = malloc(tl + tail_len + 1);
        if (!both) {
            S->oom = 1;
            stop = 1;
            goto out; /* allocation failure */
        }
        memcpy(both, text, tl);
        memcpy(both + tl, tail, tail_len + 1);
        free(text);
        text = both;
        tl += tail_len;
    }
    json_t *delta = json_object_get(ch, "delta");
    if (json_is_object(delta) && (c->delta_len || tl))
        json_object_set_new(delta, "content", json_stringn(text, tl));
    data = o ? json_dumps(o, JSON_COMPACT) : NULL;
    struct sl_backend_chunk out = {data ? data : c->data, data ? strlen(data) : c->len, text, tl};
    S->delivered++;
    stop = q->req->on_chunk(q->req->on_chunk_user, &out);
out:
    json_decref(o);
    free(text);
    free(tail);
    free(data);
    return stop;
}

/* ---------------------------------------------------------------- one tier */

enum tier_result { TIER_OK, TIER_FAILED, TIER_SKIPPED };

static double stage_cost(const struct sl_backend_config *bc, int64_t tin, int64_t tout,
                         double machine_ms, const char **kind)
{
    double api = (double)SL_MAX(tin, (int64_t)0) * bc->input_per_mtok / 1e6 +
                 (double)SL_MAX(tout, (int64_t)0) * bc->output_per_mtok / 1e6;
    double infra = machine_ms * bc->infra_per_hour / 3.6e6;
    bool is_api = bc->input_per_mtok > 0 || bc->output_per_mtok > 0 ||
                  (bc->infra_per_hour <= 0 && bc->remote);
    *kind = is_api ? "api" : "infra";
    return api + infra;
}

/* A backend's error message without its "backend 'x': " and URL prefixes
 * (the stage names the backend already). */
static const char *short_msg(const char *m)
{
    if (!strncmp(m, "backend '", 9)) {
        const char *e = strstr(m, "': ");
        if (e) m = e + 3;
    }
    if (!strncmp(m, "http://", 7) || !strncmp(m, "https://", 8)) {
        const char *e = strstr(m, ": ");
        if (e) m = e + 2;
    }
    return m;
}

/* Chat confidence: the backend's, else exp(mean token logprob). */
static double chat_confidence(const struct sl_backend_resp *r)
{
    if (r->confidence >= 0) return r->confidence;
    if (!r->logprobs || !r->n_logprobs) return -1;
    double s = 0;
    for (size_t k = 0; k < r->n_logprobs; k++)
        s += r->logprobs[k].logprob;
    return exp(s / (double)r->n_logprobs);
}

/* Calls backend bi (or skips it) and records the stage. stream: deliver
 * the answer through on_chunk as it comes. want_logprobs: ask for them
 * (a cascade tier whose answer is checked). On TIER_OK *a holds the
 * answer. */
static enum tier_result try_tier(struct rq *q, int bi, bool stream, bool want_logprobs,
                                 struct answer *a)
{
    struct sl_router *r = q->r;
    struct rbackend *rb = &r->b[bi];
    const struct sl_route_req *req = q->req;
    struct sl_route_stage *st = stage_new(q, bi);
    struct sl_route_stage dummy;
    if (!st) st = &dummy, memset(st, 0, sizeof *st);
    q->called[bi] = true;
    /* skip? */
    if (q->client_gone || (req->should_stop && req->should_stop(req->stop_user))) {
        q->client_gone = true;
        snprintf(st->note, sizeof st->note, "not called: the client went away");
        return TIER_SKIPPED;
    }
    double spent = 0;
    if (req->kind != SL_RREQ_CHAT && !rb->b.iface->task) {
        snprintf(st->note, sizeof st->note, "cannot run tasks");
        note_failure(q, rb->cfg->name, "cannot run tasks");
        return TIER_SKIPPED;
    }
    enum sl_pii_action act = sl_pii_decide(q->rt->pii, q->scan_rc, q->n_spans, rb->remote);
    if (req->force_tier == NULL && rb->spends && budget_spent(r, q->rt, &spent)) {
        snprintf(st->note, sizeof st->note, "budget: %.4f of %.4f spent today", spent,
                 q->rt->cfg->budget_per_day);
        q->budget_skipped = true;
        note_failure(q, rb->cfg->name, "skipped (budget spent)");
        return TIER_SKIPPED;
    }
    if (act == SL_PII_ACTION_KEEP_LOCAL) {
        snprintf(st->note, sizeof st->note, "pii: %s",
                 q->scan_rc ? "scan failed, kept local" : sl_pii_policy_name(q->rt->pii));
        q->pii_skipped = q->pii_kept = true;
        note_failure(q, rb->cfg->name, "skipped (pii)");
        return TIER_SKIPPED;
    }
    bool redacted = act == SL_PII_ACTION_SEND_REDACTED;
    if (redacted) {
        int rc = pii_redact(q);
        if (rc) {
            /* cannot make the redacted text: it does not leave */
            snprintf(st->note, sizeof st->note, "pii: redaction failed, kept local");
            q->pii_skipped = q->pii_kept = true;
            if (rc == SL_ENOMEM) q->fatal = SL_ENOMEM;
            return TIER_SKIPPED;
        }
    }
    /* call */
    st->called = true;
    q->n_called++;
    double t0 = mono_ms();
    struct sl_err e = {0};
    int rc;
    enum sl_backend_status status;
    int http_status;
    int64_t tin = -1, tout = -1;
    double machine_ms = 0;
    const char *model = NULL;
    struct sl_backend_resp cr;
    struct sl_backend_task_resp tr;
    memset(&cr, 0, sizeof cr);
    memset(&tr, 0, sizeof tr);
    struct stream_ctx S = {q, redacted, {0}, 0, 0};
    if (req->kind == SL_RREQ_CHAT) {
        struct sl_backend_req br = *req->chat;
        br.should_stop = req->should_stop;
        br.stop_user = req->stop_user;
        if (redacted) br.msgs = q->red_msgs;
        if (want_logprobs) br.logprobs = true;
        if (stream && req->on_chunk && rb->b.iface->stream) {
            if (redacted) sl_pii_restorer_init(&S.rs, &q->map);
            rc = rb->b.iface->stream(rb->b.ctx, &br, on_stream_chunk, &S, &cr, &e);
        } else {
            rc = rb->b.iface->complete(rb->b.ctx, &br, &cr, &e);
        }
        status = rc && cr.status == SL_BACKEND_OK ? SL_BACKEND_MALFORMED : cr.status;
        http_status = cr.http_status;
        tin = cr.tokens_in;
        tout = cr.tokens_out;
        machine_ms = cr.machine_ms;
        model = cr.model;
    } else {
        struct sl_backend_task_req btr = {q->task, redacted ? q->red_input : req->input, req->should_stop,
                                          req->stop_user};
        rc = rb->b.iface->task(rb->b.ctx, &btr, &tr, &e);
        status = rc && tr.status == SL_BACKEND_OK ? SL_BACKEND_MALFORMED : tr.status;
        http_status = tr.http_status;
        tin = tr.tokens_in;
        tout = tr.tokens_out;
        machine_ms = tr.machine_ms;
        model = tr.model;
        if (!rc && q->task->kind == SL_TASK_CLASSIFY &&
            (tr.label < 0 || (size_t)tr.label >= q->task->n_labels)) {
            status = SL_BACKEND_MALFORMED;
            rc = sl_err_set(&e, SL_EFORMAT, "answer '%.60s' matched no label",
                            tr.content ? tr.content : "");
        }
        if (!rc && q->task->kind == SL_TASK_EXTRACT && !tr.json) {
            status = SL_BACKEND_MALFORMED;
            rc = sl_err_set(&e, SL_EFORMAT, "no JSON object in the answer");
        }
    }
    if (S.oom) q->fatal = SL_ENOMEM;
    if (S.delivered && rc) q->stream_broken = true;
    /* a call given up because the client left: nothing more for it */
    if (rc && status == SL_BACKEND_ABORTED && req->should_stop && req->should_stop(req->stop_user))
        q->client_gone = true;
    st->latency_ms = mono_ms() - t0;
    st->status = rc ? status : SL_BACKEND_OK;
    st->http_status = http_status;
    st->tokens_in = SL_MAX(tin, (int64_t)0);
    st->tokens_out = SL_MAX(tout, (int64_t)0);
    if (rc && st->status == SL_BACKEND_OK) st->status = SL_BACKEND_MALFORMED;
    /* cost, spend, ledger */
    const char *kind = "api";
    st->cost = stage_cost(rb->cfg, tin, tout, machine_ms, &kind);
    if (rb->spends && st->cost > 0) spend_add(r, q->rt, st->cost);
    if (r->env.store && !req->no_log) {
        struct sl_store_ledger l = {
            .request_id = req->id,
            .ts_ms = wall_ms(r),
            .route = q->rt->cfg->name,
            .backend = rb->cfg->name,
            .model = model ? model : rb->cfg->model,
            .kind = kind,
            .tokens_in = st->tokens_in,
            .tokens_out = st->tokens_out,
            .machine_ms = machine_ms,
            .cost = st->cost,
        };
        struct sl_err lerr = {0};
        if (r->env.store->iface->ledger_add(r->env.store->ctx, &l, &lerr))
            log_failed(r, "ledger entry", req->id, &lerr);
    }
    if (redacted)
        q->sent_redacted = true;
    else if (rb->remote && q->n_spans)
        q->sent_raw = true;
    enum tier_result out = TIER_FAILED;
    if (rc) {
        char what[48];
        if (st->status == SL_BACKEND_HTTP)
            snprintf(what, sizeof what, "HTTP %d", http_status);
        else
            snprintf(what, sizeof what, "%s", sl_backend_status_name(st->status));
        const char *m = short_msg(e.msg);
        if (!strncmp(m, what, strlen(what)))
            snprintf(st->note, sizeof st->note, "%.120s", m);
        else
            snprintf(st->note, sizeof st->note, "%.30s: %.90s", what, m);
        if (q->stream_broken)
            snprintf(st->note, sizeof st->note, "stream failed after %d chunks: %.80s", S.delivered,
                     e.msg);
        note_failure(q, rb->cfg->name, what);
        q->failed_any = true;
        goto done;
    }
    /* the answer */
    answer_free(a);
    a->bi = bi;
    a->tokens_in = tin;
    a->tokens_out = tout;
    a->model = xstrdup(model ? model : rb->cfg->model);
    a->streamed = S.delivered > 0;
    if (req->kind == SL_RREQ_CHAT) {
        const char *text = cr.content ? cr.content : "";
        a->content = redacted ? restore(q, text) : xstrdup(text);
        a->finish = xstrdup(cr.finish_reason);
        a->confidence = chat_confidence(&cr);
        if (S.restoring && a->streamed) { /* what the restorer still holds */
            char *tail = NULL;
            size_t tl = 0;
            if (!sl_pii_restorer_finish(&S.rs, &tail, &tl, NULL) && tl &&
                deliver_text(q, a->model, tail, tl, NULL) < 0)
                q->fatal = SL_ENOMEM;
            free(tail);
        }
    } else if (q->task->kind == SL_TASK_CLASSIFY) {
        a->content = xstrdup(q->task->labels[tr.label]);
        a->label = tr.label;
        a->confidence = tr.confidence;
        if (tr.probs && tr.n_probs) {
            a->probs = tr.probs;
            a->n_probs = tr.n_probs;
            tr.probs = NULL;
        }
    } else {
        a->content = redacted ? restore(q, tr.json) : xstrdup(tr.json);
        a->confidence = tr.confidence;
    }
    if (!a->content || !a->model) {
        q->fatal = SL_ENOMEM;
        snprintf(st->note, sizeof st->note, "out of memory");
        answer_free(a);
        goto done;
    }
    st->confidence = a->confidence;
    snprintf(st->note, sizeof st->note, "answered");
    out = TIER_OK;
done:
    sl_backend_resp_free(&cr);
    sl_backend_task_resp_free(&tr);
    return out;
}

/* ---------------------------------------------------------------- rules */

static bool rule_matches(const struct rq *q, const struct rrule *ru)
{
    const struct sl_rule_config *c = ru->cfg;
    const struct sl_route_req *req = q->req;
    if (c->task && (!q->task_name || strcmp(c->task, q->task_name))) return false;
    if (c->min_chars >= 0 && (int64_t)q->text_len < c->min_chars) return false;
    if (c->max_chars >= 0 && (int64_t)q->text_len > c->max_chars) return false;
    if (c->api_key && (!req->api_key || strcmp(c->api_key, req->api_key))) return false;
    for (size_t k = 0; k < c->n_meta; k++) {
        bool found = false;
        for (size_t m = 0; m < req->n_meta && !found; m++)
            found = req->meta[m].key && req->meta[m].value && c->meta_keys[k] &&
                    !strcmp(req->meta[m].key, c->meta_keys[k]) &&
                    !strcmp(req->meta[m].value, c->meta_values[k] ? c->meta_values[k] : "");
        if (!found) return false;
    }
    if (ru->re) {
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(ru->re, NULL);
        if (!md) return false;
        int rc = pcre2_match(ru->re, (PCRE2_SPTR)q->text, q->text_len, 0, 0, md, q->r->mctx);
        pcre2_match_data_free(md);
        if (rc < 0) return false; /* no match, or a limit hit: the rule does not apply */
    }
    return true;
}

/* ---------------------------------------------------------------- decisions */

/* Which backends to try after `first` failed: the explicit fallback list,
 * else the route's other tiers, in order; those not yet called. */
static enum tier_result run_fallbacks(struct rq *q, bool stream, struct answer *a)
{
    const struct rroute *rt = q->rt;
    const int *list = rt->n_fallback ? rt->fallback : rt->tiers;
    size_t n = rt->n_fallback ? rt->n_fallback : rt->n_tiers;
    for (size_t k = 0; k < n && !q->stream_broken && !q->fatal && !q->client_gone; k++) {
        int bi = list[k];
        if (q->called[bi]) continue;
        if (try_tier(q, bi, stream, false, a) == TIER_OK) return TIER_OK;
    }
    return TIER_FAILED;
}

static void keep_stage(struct rq *q, int bi)
{
    for (size_t k = q->res->n_stages; k-- > 0;)
        if (q->res->stages[k].called && q->res->stages[k].status == SL_BACKEND_OK &&
            !strcmp(q->res->stages[k].backend, q->r->b[bi].cfg->name)) {
            q->res->stages[k].accepted = true;
            return;
        }
}

/* The decision for an answer tier i gave in a cascade: had_unsure says an
 * earlier tier answered below its bar. */
static const char *cascade_decision(const struct rq *q, size_t i, bool had_unsure)
{
    if (i == 0) return "local";
    return had_unsure || !q->failed_any ? "escalated" : "fallback";
}

/* Why the answer of an earlier tier was kept instead of a later one. */
static const char *kept_decision(const struct rq *q)
{
    if (q->budget_skipped) return "budget";
    if (q->pii_skipped) return "pii-local";
    return "fallback";
}

static void run_cascade(struct rq *q, struct answer *kept)
{
    struct sl_route_result *res = q->res;
    const struct rroute *rt = q->rt;
    double thr = sl_route_threshold(rt->cfg, q->task_name);
    struct answer a = {.bi = -1, .label = -1, .confidence = -1};
    bool accepted = false, had_unsure = false;
    for (size_t i = 0; i < rt->n_tiers && !q->stream_broken && !q->fatal && !q->client_gone; i++) {
        int bi = rt->tiers[i];
        bool last = i + 1 == rt->n_tiers;
        if (q->called[bi]) continue;
        size_t before = q->n_called;
        enum tier_result tr = try_tier(q, bi, last, !last, &a);
        if (i > 0 && q->n_called > before) res->escalated = true;
        if (tr != TIER_OK) continue;
        struct sl_route_stage *st = &res->stages[res->n_stages - 1];
        const char *name = q->r->b[bi].cfg->name;
        if (last) {
            answer_free(kept);
            *kept = a;
            memset(&a, 0, sizeof a);
            accepted = true;
            res->decision = cascade_decision(q, i, had_unsure);
            bool after_failure = q->failed_any && !had_unsure;
            size_t l = strlen(res->reason);
            snprintf(res->reason + l, sizeof res->reason - l, "%s%s%s%s answered", l ? "; " : "",
                     after_failure ? q->failures : "", after_failure ? "; " : "", name);
            break;
        }
        st->threshold = thr;
        if (a.confidence >= thr && a.confidence >= 0) {
            snprintf(st->note, sizeof st->note, "confidence %.2f >= %.2f", a.confidence, thr);
            answer_free(kept);
            *kept = a;
            memset(&a, 0, sizeof a);
            accepted = true;
            res->decision = cascade_decision(q, i, had_unsure);
            size_t l = strlen(res->reason);
            snprintf(res->reason + l, sizeof res->reason - l, "%sconfidence %.2f >= %.2f on %s",
                     l ? "; " : "", kept->confidence, thr, name);
            break;
        }
        if (a.confidence < 0)
            snprintf(st->note, sizeof st->note, "no confidence reported");
        else
            snprintf(st->note, sizeof st->note, "confidence %.2f < %.2f", a.confidence, thr);
        size_t l = strlen(res->reason);
        snprintf(res->reason + l, sizeof res->reason - l, "%s%s on %s", l ? "; " : "", st->note,
                 name);
        answer_free(kept);
        *kept = a; /* the best so far: kept if nothing better comes */
        had_unsure = true;
        memset(&a, 0, sizeof a);
        a.bi = -1;
    }
    answer_free(&a);
    if (accepted || q->stream_broken || q->fatal || q->client_gone) return;
    /* no tier's answer was accepted: explicit fallbacks, then the unsure one */
    if (q->failed_any && q->rt->n_fallback) {
        struct answer f = {.bi = -1, .label = -1, .confidence = -1};
        if (run_fallbacks(q, true, &f) == TIER_OK) {
            answer_free(kept);
            *kept = f;
            res->decision = "fallback";
            size_t l = strlen(res->reason);
            snprintf(res->reason + l, sizeof res->reason - l, "%s%s; %s answered", l ? "; " : "",
                     q->failures, q->r->b[kept->bi].cfg->name);
            return;
        }
        answer_free(&f);
    }
    if (kept->bi >= 0) {
        res->decision = kept_decision(q);
        size_t l = strlen(res->reason);
        snprintf(res->reason + l, sizeof res->reason - l, "%s%s; kept %s's answer", l ? "; " : "",
                 q->failures, q->r->b[kept->bi].cfg->name);
    }
}

/* rules and predict: one chosen tier, then fallbacks. */
static void run_chosen(struct rq *q, int bi, const char *decision, struct answer *kept)
{
    struct sl_route_result *res = q->res;
    if (bi != q->rt->tiers[0]) res->escalated = true;
    if (try_tier(q, bi, true, false, kept) == TIER_OK) {
        res->decision = decision;
        return;
    }
    if (q->stream_broken || q->fatal) return;
    if (run_fallbacks(q, true, kept) == TIER_OK) {
        res->decision = q->failed_any ? "fallback" : kept_decision(q);
        size_t l = strlen(res->reason);
        snprintf(res->reason + l, sizeof res->reason - l, "; %s; %s answered", q->failures,
                 q->r->b[kept->bi].cfg->name);
    }
}

static void run_rules(struct rq *q, struct answer *kept)
{
    const struct rroute *rt = q->rt;
    for (size_t k = 0; k < rt->n_rules; k++)
        if (rule_matches(q, &rt->rules[k])) {
            snprintf(q->res->reason, sizeof q->res->reason, "rule %zu -> %s", k + 1,
                     q->r->b[rt->rules[k].to].cfg->name);
            run_chosen(q, rt->rules[k].to, "rules", kept);
            return;
        }
    snprintf(q->res->reason, sizeof q->res->reason, "no rule matched -> %s",
             q->r->b[rt->default_tier].cfg->name);
    run_chosen(q, rt->default_tier, "rules", kept);
}

static void run_predict(struct rq *q, struct answer *kept)
{
    const struct rroute *rt = q->rt;
    float *embd = NULL;
    char why[96] = "";
    int32_t dim = sl_predictor_embd_dim(rt->pred);
    const struct rbackend *t0 = &q->r->b[rt->tiers[0]];
    if (dim > 0 &&
        sl_pii_decide(rt->pii, q->scan_rc, q->n_spans, t0->remote) != SL_PII_ACTION_SEND) {
        snprintf(why, sizeof why, " (no embedding: the input may not go to %s)", t0->cfg->name);
    } else if (dim > 0) {
        const char *texts[1] = {q->text};
        int got = 0;
        struct sl_err e = {0};
        if (t0->b.iface->embed(t0->b.ctx, texts, 1, &embd, &got, &e) || got != dim) {
            /* score from length and n-grams alone */
            snprintf(why, sizeof why, " (no embedding: %s)",
                     got && got != dim ? "width differs from the model's" : "embed failed");
            free(embd);
            embd = NULL;
        }
    }
    double p = sl_predictor_score(rt->pred, q->text, q->text_len, embd);
    free(embd);
    double thr = rt->cfg->predict_threshold;
    int bi = p > thr ? rt->tiers[rt->n_tiers - 1] : rt->tiers[0];
    snprintf(q->res->reason, sizeof q->res->reason, "P(%s wrong) %.2f %s %.2f -> %s%s",
             q->r->b[rt->tiers[0]].cfg->name, p, p > thr ? ">" : "<=", thr, q->r->b[bi].cfg->name,
             why);
    run_chosen(q, bi, "predict", kept);
}

/* ---------------------------------------------------------------- the log */

/* The request as the client sent it, for the log: the input, or the
 * messages as a JSON array. */
static char *log_input(const struct rq *q)
{
    const struct sl_route_req *req = q->req;
    if (req->kind != SL_RREQ_CHAT) return xstrdup(req->input);
    json_t *a = json_array();
    for (size_t k = 0; a && k < req->chat->n_msgs; k++)
        json_array_append_new(
            a, json_pack("{s:s,s:s}", "role",
                         req->chat->msgs[k].role ? req->chat->msgs[k].role : "user", "content",
                         req->chat->msgs[k].content ? req->chat->msgs[k].content : ""));
    char *s = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    return s;
}

static void write_log(struct rq *q)
{
    struct sl_router *r = q->r;
    const struct sl_route_result *res = q->res;
    if (!r->env.store || q->req->no_log) return;
    char tiers[SL_ROUTE_MAX_STAGES * (SL_ROUTE_NAME_MAX + 1)] = "";
    struct sl_store_request row;
    memset(&row, 0, sizeof row);
    for (size_t k = 0; k < res->n_stages; k++) {
        const struct sl_route_stage *s = &res->stages[k];
        if (!s->called) continue;
        size_t l = strlen(tiers);
        snprintf(tiers + l, sizeof tiers - l, "%s%s", l ? "," : "", s->backend);
        if (row.n_stages < SL_STORE_MAX_STAGES) {
            row.stages[row.n_stages].name = s->backend;
            row.stages[row.n_stages].ms = s->latency_ms;
            row.n_stages++;
        }
    }
    char *input = log_input(q);
    row.id = q->req->id;
    row.ts_ms = wall_ms(r);
    row.route = q->req->route;
    row.tiers = tiers;
    row.decision = res->decision;
    row.reason = res->status == 200 ? res->reason : res->error;
    row.confidence = res->confidence;
    row.model = res->model;
    row.backend = res->backend[0] ? res->backend : NULL;
    row.tokens_in = res->tokens_in;
    row.tokens_out = res->tokens_out;
    row.latency_ms = res->latency_ms;
    row.cost = res->cost;
    row.input = input;
    row.output = res->content;
    row.status = res->status;
    struct sl_err e = {0};
    if (r->env.store->iface->log_request(r->env.store->ctx, &row, &e))
        log_failed(r, "row", q->req->id, &e);
    free(input);
}

/* ---------------------------------------------------------------- route */

static int bad_request(struct sl_route_result *res, int status, int code, struct sl_err *err,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int bad_request(struct sl_route_result *res, int status, int code, struct sl_err *err,
                       const char *fmt, ...)
{
    char msg[SL_ERR_MSG_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    res->status = status;
    res->decision = "failed";
    free(res->error);
    res->error = xstrdup(msg);
    return sl_err_set(err, code, "%s", msg);
}

/* The text rules and predict look at: the input, or the contents of the
 * system and user messages joined by newlines. */
static int request_text(struct rq *q)
{
    const struct sl_route_req *req = q->req;
    if (req->kind != SL_RREQ_CHAT) {
        q->text = req->input;
        q->text_len = strlen(req->input);
        return 0;
    }
    struct sl_buf b;
    sl_buf_init(&b, 0);
    for (size_t k = 0; k < req->chat->n_msgs; k++) {
        const struct sl_chat_msg *m = &req->chat->msgs[k];
        if (m->role && strcmp(m->role, "user") && strcmp(m->role, "system")) continue;
        if (sl_buf_appendf(&b, "%s%s", b.len ? "\n" : "", m->content ? m->content : "")) {
            sl_buf_free(&b);
            return SL_ENOMEM;
        }
    }
    q->text_owned = sl_buf_take(&b, &q->text_len);
    if (!q->text_owned) {
        q->text_owned = xstrdup("");
        q->text_len = 0;
        if (!q->text_owned) return SL_ENOMEM;
    }
    q->text = q->text_owned;
    return 0;
}

static void rq_free(struct rq *q)
{
    free(q->text_owned);
    free(q->spans);
    free(q->msg_spans);
    free(q->msg_off);
    if (q->red_contents && q->req->kind == SL_RREQ_CHAT)
        for (size_t k = 0; k < q->req->chat->n_msgs; k++)
            free(q->red_contents[k]);
    free(q->red_contents);
    free(q->red_msgs);
    free(q->red_input);
    sl_pii_map_free(&q->map);
}

int sl_router_route(struct sl_router *r, const struct sl_route_req *req,
                    struct sl_route_result *res, struct sl_err *err)
{
    double t0 = mono_ms();
    memset(res, 0, sizeof *res);
    res->label = -1;
    res->confidence = -1;
    res->pii_action = "none";
    res->decision = "failed";
    if (!req || !req->id || !*req->id || strlen(req->id) > SL_STORE_ID_MAX)
        return bad_request(res, 400, SL_EINVAL, err, "a request needs an id of 1 to %d bytes",
                           SL_STORE_ID_MAX);
    struct rroute *rt = route_find(r, req->route);
    if (!rt)
        return bad_request(res, 404, SL_ENOTFOUND, err, "route '%s' is not configured",
                           req->route ? req->route : "(none)");
    struct rq q;
    memset(&q, 0, sizeof q);
    q.r = r;
    q.rt = rt;
    q.req = req;
    q.res = res;
    sl_pii_map_init(&q.map);
    struct answer kept = {.bi = -1, .label = -1, .confidence = -1};
    int rc = 0;
    /* validate */
    if (req->kind == SL_RREQ_CHAT) {
        if (!req->chat || !req->chat->msgs || !req->chat->n_msgs) {
            rc = bad_request(res, 400, SL_EINVAL, err, "route '%s': a chat request needs messages",
                             rt->cfg->name);
            goto out; /* bad request */
        }
        q.task_name = req->task ? req->task : rt->cfg->task;
    } else if (req->kind == SL_RREQ_CLASSIFY || req->kind == SL_RREQ_EXTRACT) {
        int want = req->kind == SL_RREQ_CLASSIFY ? SL_TASK_CLASSIFY : SL_TASK_EXTRACT;
        const char *kname = want == SL_TASK_CLASSIFY ? "classify" : "extract";
        q.task = sl_config_task(r->cfg, req->task);
        if (!req->task || !q.task) {
            rc = bad_request(res, req->task ? 404 : 400, req->task ? SL_ENOTFOUND : SL_EINVAL, err,
                             "route '%s': %s needs a configured task%s%s%s", rt->cfg->name, kname,
                             req->task ? " ('" : "", req->task ? req->task : "",
                             req->task ? "' is not one)" : "");
            goto out; /* bad request */
        }
        if (q.task->kind != want) {
            rc = bad_request(res, 400, SL_EINVAL, err, "task '%s' is not a %s task", req->task,
                             kname);
            goto out; /* bad request */
        }
        if (!req->input) {
            rc = bad_request(res, 400, SL_EINVAL, err, "route '%s': %s needs an input",
                             rt->cfg->name, kname);
            goto out; /* bad request */
        }
        q.task_name = req->task;
    } else {
        rc = bad_request(res, 400, SL_EINVAL, err, "unknown request kind %d", (int)req->kind);
        goto out; /* bad request */
    }
    int force = -1;
    if (req->force_tier && (force = backend_index(r, req->force_tier)) < 0) {
        rc = bad_request(res, 400, SL_EINVAL, err, "force_tier '%s' is not a configured backend",
                         req->force_tier);
        goto out; /* bad request */
    }
    if ((rc = request_text(&q)) || (rc = pii_scan(&q))) {
        rc = bad_request(res, 500, SL_ENOMEM, err, "%s: out of memory", __func__);
        goto out; /* allocation failure */
    }
    res->pii_spans = q.n_spans;
    /* policy */
    if (force >= 0) {
        snprintf(res->reason, sizeof res->reason, "forced to %s", req->force_tier);
        if (try_tier(&q, force, true, false, &kept) == TIER_OK) res->decision = "forced";
    } else if (rt->cfg->policy == SL_ROUTE_CASCADE) {
        run_cascade(&q, &kept);
    } else if (rt->cfg->policy == SL_ROUTE_RULES) {
        run_rules(&q, &kept);
    } else {
        run_predict(&q, &kept);
    }
    if (q.fatal) {
        rc = bad_request(res, 500, q.fatal, err, "%s: out of memory", __func__);
        goto out; /* allocation failure */
    }
    /* the result */
    for (size_t k = 0; k < res->n_stages; k++)
        res->cost += res->stages[k].cost;
    if (q.sent_redacted)
        res->pii_action = "redacted";
    else if (q.sent_raw)
        res->pii_action = "sent";
    else if (q.n_spans || q.scan_rc)
        res->pii_action = "kept-local";
    if (q.client_gone) { /* set only before a tier or by a call given up: nothing was final */
        answer_free(&kept);
        res->status = 499; /* nginx's "client closed request": nobody reads it */
        res->decision = "cancelled";
        res->error = xstrdup("the client closed the connection; the request was given up");
        snprintf(res->reason, sizeof res->reason, "the client went away%s%.200s", q.failures[0] ? "; " : "",
                 q.failures);
    } else if (kept.bi < 0 || q.stream_broken) {
        res->status = 502;
        res->decision = "failed";
        char msg[SL_ERR_MSG_LEN];
        snprintf(msg, sizeof msg, "route '%s': %s: %s", rt->cfg->name,
                 q.stream_broken ? "the answer's stream failed" : "no tier could answer",
                 q.failures[0] ? q.failures : "nothing to try");
        res->error = xstrdup(msg);
        snprintf(res->reason, sizeof res->reason, "%.250s", msg);
        answer_free(&kept);
    } else {
        res->status = 200;
        keep_stage(&q, kept.bi);
        snprintf(res->backend, sizeof res->backend, "%s", r->b[kept.bi].cfg->name);
        res->model = kept.model;
        res->content = kept.content;
        res->finish_reason = kept.finish;
        res->label = kept.label;
        res->confidence = kept.confidence;
        res->probs = kept.probs;
        res->n_probs = kept.n_probs;
        res->tokens_in = SL_MAX(kept.tokens_in, (int64_t)0);
        res->tokens_out = SL_MAX(kept.tokens_out, (int64_t)0);
        bool streamed = kept.streamed;
        memset(&kept, 0, sizeof kept);
        if (req->kind == SL_RREQ_CHAT && req->on_chunk && !streamed) {
            /* an answer that needed checking (or came without streaming):
             * one chunk */
            int d = deliver_text(&q, res->model, res->content, strlen(res->content),
                                 res->finish_reason);
            if (d < 0) {
                rc = bad_request(res, 500, SL_ENOMEM, err, "%s: out of memory", __func__);
                goto out; /* allocation failure */
            }
        }
    }
    res->latency_ms = mono_ms() - t0;
    write_log(&q);
    rc = 0;
out:
    answer_free(&kept);
    rq_free(&q);
    if (rc) res->latency_ms = mono_ms() - t0;
    return rc;
}
