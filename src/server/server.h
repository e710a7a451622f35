/*
 * server.h - `sluice serve`: models behind an OpenAI-compatible HTTP API
 * (server layer). Ties the config, one scheduler per model, the routes and
 * the HTTP transport together.
 *
 *   sl_server_open    load every model, start its engine thread, open the
 *                     request log and build the router; listen or not
 *   sl_server_start   sl_server_open and listen
 *   sl_server_drain   stop accepting, wait for requests in flight
 *   sl_server_free    stop the engines and free
 *
 * Threads: start/drain/free from one thread (the command's main thread);
 * requests are served on the transport's connection threads.
 */
#ifndef SL_SERVER_H
#define SL_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <time.h>

#include "../config/config.h"
#include "../engine/chat.h"
#include "../engine/model.h"
#include "http.h"
#include "metrics.h"
#include "sched.h"

struct sl_router;
struct sl_store;
struct sl_lora_merge;

struct sl_served_model {
    const struct sl_model_config *cfg; /* into the server's config */
    struct sl_model *model;
    struct sl_sched *sched;
    enum sl_chat_family family;
    struct sl_lora_merge *lora; /* models.<m>.lora merged at load, or NULL */
};

/* Per route counters for /metrics (under sl_server.route_mu). */
struct sl_route_stats {
    const char *name; /* into the config */
    unsigned long long requests, escalations, fallbacks, failures;
    double cost;
};

struct sl_server {
    const struct sl_config *cfg;    /* borrowed; outlives the server */
    struct sl_served_model *models; /* (n_models) */
    size_t n_models;
    struct sl_router *router;           /* routes: and backends: of the config; NULL if none */
    struct sl_store *store;             /* log: request log; NULL if none */
    struct sl_route_stats *route_stats; /* (cfg->n_routes) */
    pthread_mutex_t route_mu;
    struct sl_http *http;
    struct sl_metrics metrics;
    time_t started;
    atomic_ullong next_id;
    atomic_bool draining;
};

/* Load every model, open the request log (log.db: a SQLite file, or
 * PostgreSQL for postgres://, postgresql:// or "pg:" conninfo) and build
 * the router over the config's backends and routes (local backends run on
 * the served models). With listen, also serve HTTP; without, the server is
 * a library for `sluice eval` and `sluice distill`: use s->router and
 * s->store, then sl_server_free. Progress and notes go to log (may be
 * NULL). cfg must stay valid until sl_server_free. */
int sl_server_open(struct sl_server **out, const struct sl_config *cfg, FILE *log, bool listen,
                   struct sl_err *err);

/* sl_server_open with listen: load models and listen. */
int sl_server_start(struct sl_server **out, const struct sl_config *cfg, FILE *log,
                    struct sl_err *err);
int sl_server_port(const struct sl_server *s);
/* Stop accepting connections and wait up to timeout_s for requests in
 * flight to finish. Returns the number still in flight (0 = clean). */
int sl_server_drain(struct sl_server *s, int timeout_s);
void sl_server_free(struct sl_server *s);

/* The request handler (routes.c), an sl_http_handler over struct sl_server. */
void sl_routes_handle(void *user, const struct sl_http_req *req, struct sl_http_resp *resp);

#endif
