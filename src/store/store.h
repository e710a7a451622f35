/*
 * store.h - the request log, feedback and cost ledger boundary (store layer).
 *
 * The router writes one row per request (what was decided and why, what it
 * cost) and one ledger entry per backend call; `POST /v1/feedback` adds the
 * true answer for a request id; `sluice costs`, evaluation and training read
 * it back. SQLite (store_sqlite.c) is the embedded default.
 *
 *   struct sl_store s;
 *   sl_store_sqlite_open(&s, "sluice.db", &params, &err);
 *   s.iface->log_request(s.ctx, &row, &err);
 *   s.iface->close(s.ctx);
 *
 * Thread-safety: every member may be called from any thread; the store
 * serialises writes itself.
 */
#ifndef SL_STORE_H
#define SL_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/* What happens to a request's input text in the log (config). */
enum sl_store_input {
    SL_STORE_INPUT_STORE = 0, /* the text as sent */
    SL_STORE_INPUT_HASH,      /* only its SHA-256 (hex), to join and dedupe */
    SL_STORE_INPUT_DROP,      /* nothing */
};

int sl_store_input_parse(const char *s, enum sl_store_input *out, struct sl_err *err);

#define SL_STORE_MAX_STAGES 8
#define SL_STORE_ID_MAX 64

struct sl_store_stage {
    const char *name; /* "small", "large", "pii", "route", ... */
    double ms;
};

/* One request as the router saw it. All strings borrowed for the call;
 * NULL is stored as SQL NULL. */
struct sl_store_request {
    const char *id;       /* required, unique, at most SL_STORE_ID_MAX bytes */
    int64_t ts_ms;        /* Unix time in ms; 0 = now */
    const char *route;    /* route name (the model name the client asked for) */
    const char *tiers;    /* tiers tried, comma-separated: "small,large" */
    const char *decision; /* "local", "escalated", "fallback", "rejected", ... */
    const char *reason;   /* why: "confidence 0.41 < 0.7", "pii: local-only", ... */
    double confidence;    /* calibrated confidence of the answer kept; < 0 = none */
    const char *model;    /* model that produced the answer */
    const char *backend;  /* backend that produced the answer */
    int64_t tokens_in;    /* the request's prompt tokens (for the baseline) */
    int64_t tokens_out;   /* tokens of the answer kept */
    double latency_ms;    /* end to end */
    struct sl_store_stage stages[SL_STORE_MAX_STAGES];
    size_t n_stages;
    double cost;        /* total cost of the request (sum of its ledger entries) */
    const char *input;  /* the request text (messages as sent), may be NULL */
    const char *output; /* the answer text, may be NULL */
    int status;         /* HTTP status returned to the client */
};

/* One backend call's cost. kind "api" (tokens × price) or "infra"
 * (machine time × per-hour price). */
struct sl_store_ledger {
    const char *request_id; /* may be NULL (e.g. a warm-up) */
    int64_t ts_ms;          /* 0 = now */
    const char *route;
    const char *backend;
    const char *model;
    const char *kind; /* "api" or "infra" */
    int64_t tokens_in, tokens_out;
    double machine_ms; /* time the call held the machine (infra) */
    double cost;       /* in the configured currency */
};

/* A request read back (tests, feedback, eval). Strings owned: free with
 * sl_store_row_free. */
struct sl_store_row {
    char *id, *route, *tiers, *decision, *reason, *model, *backend;
    char *input;        /* NULL if dropped */
    char *input_sha256; /* hex; NULL if dropped */
    char *output;
    char *feedback; /* the true answer, NULL if none yet */
    int64_t ts_ms, tokens_in, tokens_out;
    double confidence, latency_ms, cost;
    int status;
    size_t n_stages;
    struct {
        char name[32];
        double ms;
    } stages[SL_STORE_MAX_STAGES];
};

void sl_store_row_free(struct sl_store_row *r);

/* Aggregation for `sluice costs`. */
enum sl_store_group {
    SL_STORE_BY_ROUTE = 0,
    SL_STORE_BY_MODEL,
    SL_STORE_BY_DAY,
};

struct sl_store_cost_row {
    const char *key; /* route, model or YYYY-MM-DD (UTC); view valid in the callback */
    int64_t n_requests;
    int64_t tokens_in, tokens_out; /* of the requests (baseline input) */
    double api_cost;               /* ledger kind "api" */
    double infra_cost;             /* ledger kind "infra" */
    double machine_ms;             /* ledger machine time */
    int64_t first_ms, last_ms;     /* time span of the rows */
};

typedef int (*sl_store_cost_fn)(void *user, const struct sl_store_cost_row *row);

/* Which requests list_requests returns; every set condition must hold.
 * Start from sl_store_filter_default(). */
struct sl_store_filter {
    const char *route;    /* route name; NULL = any */
    const char *decision; /* "escalated", "local", ...; NULL = any */
    int64_t since_ms;     /* ts_ms >= since_ms; 0 = all */
    int has_feedback;     /* 1: only with feedback, 0: only without, -1: either */
    int64_t limit;        /* at most this many rows (the oldest first); 0 = no limit */
};

struct sl_store_filter sl_store_filter_default(void);

/* One listed request. The row (stages not filled) is valid during the
 * callback only; a non-zero return stops the listing and is returned. */
typedef int (*sl_store_row_fn)(void *user, const struct sl_store_row *row);

struct sl_store_i {
    const char *kind; /* "sqlite", "postgres" */

    /* Required. Appends a request; SL_EINVAL if the id exists. */
    int (*log_request)(void *ctx, const struct sl_store_request *r, struct sl_err *err);

    /* Required. Appends a ledger entry. */
    int (*ledger_add)(void *ctx, const struct sl_store_ledger *l, struct sl_err *err);

    /* Required. Records (or replaces) the true answer of a request;
     * SL_ENOTFOUND if there is no such request. */
    int (*feedback)(void *ctx, const char *request_id, const char *answer, struct sl_err *err);

    /* Required. Reads one request back; SL_ENOTFOUND if absent. */
    int (*get_request)(void *ctx, const char *id, struct sl_store_row *out, struct sl_err *err);

    /* Required. Calls fn once per group (ordered by key) for rows with
     * ts_ms >= since_ms. A non-zero return from fn stops and is returned. */
    int (*costs)(void *ctx, enum sl_store_group by, int64_t since_ms, sl_store_cost_fn fn,
                 void *user, struct sl_err *err);

    /* Optional (NULL: this store cannot list; SQLite and PostgreSQL can).
     * Calls fn for every request matching f, oldest first (ts_ms, then id),
     * with its feedback. fn must not call the store (the store is locked
     * for SQLite; PostgreSQL reads the result first). */
    int (*list_requests)(void *ctx, const struct sl_store_filter *f, sl_store_row_fn fn, void *user,
                         struct sl_err *err);

    /* Required. Closes and frees ctx. */
    void (*close)(void *ctx);
};

struct sl_store {
    const struct sl_store_i *iface;
    void *ctx;
};

struct sl_store_params {
    enum sl_store_input input; /* default SL_STORE_INPUT_HASH */
    int busy_timeout_ms;       /* default 5000 */
};

struct sl_store_params sl_store_default_params(void);

/* Opens (creating and migrating) a SQLite database in WAL mode. */
int sl_store_sqlite_open(struct sl_store *out, const char *path, const struct sl_store_params *p,
                         struct sl_err *err);

/* Connects to PostgreSQL (libpq conninfo: "host=/run/pg dbname=sluice ...")
 * and creates or migrates the same tables. */
int sl_store_pg_open(struct sl_store *out, const char *conninfo, const struct sl_store_params *p,
                     struct sl_err *err);

/* The schema version this build writes (PRAGMA user_version). */
int sl_store_sqlite_schema_version(void);

#endif
