/*
 * store_pg.c - the request log, feedback and cost ledger in PostgreSQL
 * (store layer), behind struct sl_store_i (store.h), for deployments where
 * several sluice processes share one log.
 *
 * The same tables and meaning as store_sqlite.c, in PostgreSQL types. One
 * connection per store, statements prepared once at open, a mutex around
 * each operation (libpq connections are not shared between threads). The
 * schema version lives in table sluice_schema; migrations run in one
 * transaction each under an advisory lock, so two processes opening a new
 * database at once do not race.
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/sha256.h"
#include "store/store.h"

static const char *const pg_migrations[] = {
    /* 1 */
    "CREATE TABLE requests ("
    "  id TEXT PRIMARY KEY, ts_ms BIGINT NOT NULL,"
    "  route TEXT, tiers TEXT, decision TEXT, reason TEXT, confidence DOUBLE PRECISION,"
    "  model TEXT, backend TEXT,"
    "  tokens_in BIGINT NOT NULL DEFAULT 0, tokens_out BIGINT NOT NULL DEFAULT 0,"
    "  latency_ms DOUBLE PRECISION NOT NULL DEFAULT 0, cost DOUBLE PRECISION NOT NULL DEFAULT 0,"
    "  input TEXT, input_sha256 TEXT, output TEXT, status INTEGER NOT NULL DEFAULT 200);"
    "CREATE INDEX requests_ts ON requests(ts_ms);"
    "CREATE TABLE request_stages ("
    "  request_id TEXT NOT NULL REFERENCES requests(id), seq INTEGER NOT NULL,"
    "  stage TEXT NOT NULL, ms DOUBLE PRECISION NOT NULL, PRIMARY KEY (request_id, seq));"
    "CREATE TABLE feedback ("
    "  request_id TEXT PRIMARY KEY REFERENCES requests(id), ts_ms BIGINT NOT NULL,"
    "  answer TEXT NOT NULL);"
    "CREATE TABLE ledger ("
    "  id BIGSERIAL PRIMARY KEY, ts_ms BIGINT NOT NULL, request_id TEXT,"
    "  route TEXT, backend TEXT, model TEXT,"
    "  kind TEXT NOT NULL CHECK (kind IN ('api', 'infra')),"
    "  tokens_in BIGINT NOT NULL DEFAULT 0, tokens_out BIGINT NOT NULL DEFAULT 0,"
    "  machine_ms DOUBLE PRECISION NOT NULL DEFAULT 0, cost DOUBLE PRECISION NOT NULL DEFAULT 0);"
    "CREATE INDEX ledger_ts ON ledger(ts_ms);"
    "CREATE INDEX ledger_request ON ledger(request_id);",
};

#define PG_N_MIGRATIONS ((int)(sizeof pg_migrations / sizeof *pg_migrations))

#define PG_COSTS_SQL(KEY)                                                                          \
    "SELECT k, SUM(n)::bigint, SUM(tin)::bigint, SUM(tout)::bigint, SUM(api), SUM(infra),"         \
    " SUM(mms), MIN(t0), MAX(t1) FROM ("                                                           \
    "  SELECT " KEY " AS k, 1 AS n, tokens_in AS tin, tokens_out AS tout,"                         \
    "         0.0::float8 AS api, 0.0::float8 AS infra, 0.0::float8 AS mms, ts_ms AS t0, ts_ms "   \
    "AS t1"                                                                                        \
    "  FROM requests WHERE ts_ms >= $1"                                                            \
    "  UNION ALL"                                                                                  \
    "  SELECT " KEY ", 0, 0, 0, CASE kind WHEN 'api' THEN cost ELSE 0.0 END,"                      \
    "         CASE kind WHEN 'infra' THEN cost ELSE 0.0 END, machine_ms, ts_ms, ts_ms"             \
    "  FROM ledger WHERE ts_ms >= $1"                                                              \
    " ) u GROUP BY k ORDER BY k COLLATE \"C\""

enum {
    PQ_INS_REQ,
    PQ_INS_STAGE,
    PQ_INS_LEDGER,
    PQ_HAS_REQ,
    PQ_UPS_FB,
    PQ_GET_REQ,
    PQ_GET_STAGES,
    PQ_LIST_REQ,
    PQ_COSTS_ROUTE,
    PQ_COSTS_MODEL,
    PQ_COSTS_DAY,
    PQ_COUNT
};

static const struct {
    const char *name, *sql;
    int n_params;
} pg_stmts[PQ_COUNT] = {
    [PQ_INS_REQ] = {"sl_ins_req",
                    "INSERT INTO requests (id, ts_ms, route, tiers, decision, reason, confidence,"
                    " model, backend, tokens_in, tokens_out, latency_ms, cost, input, input_sha256,"
                    " output, status) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,"
                    "$16,$17)",
                    17},
    [PQ_INS_STAGE] =
        {"sl_ins_stage",
         "INSERT INTO request_stages (request_id, seq, stage, ms) VALUES ($1,$2,$3,$4)", 4},
    [PQ_INS_LEDGER] =
        {"sl_ins_ledger",
         "INSERT INTO ledger (ts_ms, request_id, route, backend, model, kind,"
         " tokens_in, tokens_out, machine_ms, cost) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
         10},
    [PQ_HAS_REQ] = {"sl_has_req", "SELECT 1 FROM requests WHERE id = $1", 1},
    [PQ_UPS_FB] = {"sl_ups_fb",
                   "INSERT INTO feedback (request_id, ts_ms, answer) VALUES ($1,$2,$3)"
                   " ON CONFLICT (request_id) DO UPDATE SET ts_ms = EXCLUDED.ts_ms,"
                   " answer = EXCLUDED.answer",
                   3},
    [PQ_GET_REQ] = {"sl_get_req",
                    "SELECT r.id, r.ts_ms, r.route, r.tiers, r.decision, r.reason, r.confidence,"
                    " r.model, r.backend, r.tokens_in, r.tokens_out, r.latency_ms, r.cost, r.input,"
                    " r.input_sha256, r.output, r.status, f.answer FROM requests r"
                    " LEFT JOIN feedback f ON f.request_id = r.id WHERE r.id = $1",
                    1},
    [PQ_GET_STAGES] = {"sl_get_stages",
                       "SELECT stage, ms FROM request_stages WHERE request_id = $1 ORDER BY seq",
                       1},
    /* $1 route, $2 decision (NULL = any), $3 since, $4 feedback (-1 any), $5 limit (NULL none) */
    [PQ_LIST_REQ] = {"sl_list_req",
                     "SELECT r.id, r.ts_ms, r.route, r.tiers, r.decision, r.reason, r.confidence,"
                     " r.model, r.backend, r.tokens_in, r.tokens_out, r.latency_ms, r.cost, r.input,"
                     " r.input_sha256, r.output, r.status, f.answer FROM requests r"
                     " LEFT JOIN feedback f ON f.request_id = r.id"
                     " WHERE ($1::text IS NULL OR r.route = $1::text)"
                     " AND ($2::text IS NULL OR r.decision = $2::text) AND r.ts_ms >= $3::bigint"
                     " AND ($4::int < 0 OR (f.answer IS NOT NULL) = ($4::int = 1))"
                     " ORDER BY r.ts_ms, r.id LIMIT $5::bigint",
                     5},
    [PQ_COSTS_ROUTE] = {"sl_costs_route", PG_COSTS_SQL("COALESCE(route, '-')"), 1},
    [PQ_COSTS_MODEL] = {"sl_costs_model", PG_COSTS_SQL("COALESCE(model, '-')"), 1},
    [PQ_COSTS_DAY] = {"sl_costs_day",
                      PG_COSTS_SQL("to_char(to_timestamp(ts_ms / 1000.0) AT TIME ZONE 'UTC',"
                                   " 'YYYY-MM-DD')"),
                      1},
};

struct store_pg {
    PGconn *c;
    pthread_mutex_t mu;
    struct sl_store_params p;
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One-line libpq error (no trailing newline). */
static int pg_err(struct sl_err *err, int code, const char *fn, const char *what, const char *msg)
{
    /* libpq's messages end in a newline and may hold several lines
     * ("...failed: No such file\n\tIs the server running..."): one line. */
    char m[300];
    size_t l = 0;
    for (const char *p = msg ? msg : ""; *p && l + 1 < sizeof m; p++) {
        char c = *p == '\n' || *p == '\t' || *p == '\r' ? ' ' : *p;
        if (c == ' ' && (l == 0 || m[l - 1] == ' ')) continue;
        m[l++] = c;
    }
    while (l && m[l - 1] == ' ')
        l--;
    m[l] = 0;
    return sl_err_set(err, code, "%s: %s: %s", fn, what, m);
}

static PGresult *run(struct store_pg *S, int which, const char *const *v)
{
    return PQexecPrepared(S->c, pg_stmts[which].name, pg_stmts[which].n_params, v, NULL, NULL, 0);
}

static int exec_simple(struct store_pg *S, const char *sql, struct sl_err *err, const char *fn)
{
    PGresult *r = PQexec(S->c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    int rc = ok ? 0 : pg_err(err, SL_EIO, fn, sql, PQerrorMessage(S->c));
    PQclear(r);
    return rc;
}

static int is_unique_violation(PGresult *r)
{
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    return st && !strcmp(st, "23505");
}

static int pg_log_request(void *ctx, const struct sl_store_request *q, struct sl_err *err)
{
    struct store_pg *S = ctx;
    if (!q->id || !*q->id || strlen(q->id) > SL_STORE_ID_MAX)
        return sl_err_set(err, SL_EINVAL, "%s: request id missing or longer than %d bytes",
                          __func__, SL_STORE_ID_MAX);
    if (q->n_stages > SL_STORE_MAX_STAGES)
        return sl_err_set(err, SL_ERANGE, "%s: %zu stages, at most %d", __func__, q->n_stages,
                          SL_STORE_MAX_STAGES);
    char hex[2 * SL_SHA256_LEN + 1];
    const char *input = NULL, *hash = NULL;
    if (q->input && S->p.input != SL_STORE_INPUT_DROP) {
        uint8_t d[SL_SHA256_LEN];
        sl_sha256(q->input, strlen(q->input), d);
        sl_sha256_hex(d, hex);
        hash = hex;
        if (S->p.input == SL_STORE_INPUT_STORE) input = q->input;
    }
    char ts[24], conf[32], tin[24], tout[24], lat[32], cost[32], status[16];
    snprintf(ts, sizeof ts, "%lld", (long long)(q->ts_ms ? q->ts_ms : wall_ms()));
    snprintf(conf, sizeof conf, "%.17g", q->confidence);
    snprintf(tin, sizeof tin, "%lld", (long long)q->tokens_in);
    snprintf(tout, sizeof tout, "%lld", (long long)q->tokens_out);
    snprintf(lat, sizeof lat, "%.17g", q->latency_ms);
    snprintf(cost, sizeof cost, "%.17g", q->cost);
    snprintf(status, sizeof status, "%d", q->status ? q->status : 200);
    const char *v[17] = {q->id,
                         ts,
                         q->route,
                         q->tiers,
                         q->decision,
                         q->reason,
                         q->confidence >= 0 ? conf : NULL,
                         q->model,
                         q->backend,
                         tin,
                         tout,
                         lat,
                         cost,
                         input,
                         hash,
                         q->output,
                         status};
    int rc = 0;
    pthread_mutex_lock(&S->mu);
    if ((rc = exec_simple(S, "BEGIN", err, __func__))) goto out;
    PGresult *r = run(S, PQ_INS_REQ, v);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        rc = is_unique_violation(r)
                 ? sl_err_set(err, SL_EINVAL, "%s: request id '%s' is already in the log", __func__,
                              q->id)
                 : pg_err(err, SL_EIO, __func__, "insert request", PQerrorMessage(S->c));
        PQclear(r);
        goto rollback; /* duplicate id or write failed */
    }
    PQclear(r);
    for (size_t k = 0; k < q->n_stages; k++) {
        char seq[24], ms[32];
        snprintf(seq, sizeof seq, "%zu", k);
        snprintf(ms, sizeof ms, "%.17g", q->stages[k].ms);
        const char *sv[4] = {q->id, seq, q->stages[k].name ? q->stages[k].name : "?", ms};
        r = run(S, PQ_INS_STAGE, sv);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            rc = pg_err(err, SL_EIO, __func__, "insert stage", PQerrorMessage(S->c));
            PQclear(r);
            goto rollback; /* write failed */
        }
        PQclear(r);
    }
    if ((rc = exec_simple(S, "COMMIT", err, __func__))) goto rollback; /* commit failed */
    goto out;
rollback:
    PQclear(PQexec(S->c, "ROLLBACK"));
out:
    pthread_mutex_unlock(&S->mu);
    return rc;
}

static int pg_ledger_add(void *ctx, const struct sl_store_ledger *l, struct sl_err *err)
{
    struct store_pg *S = ctx;
    if (!l->kind || (strcmp(l->kind, "api") && strcmp(l->kind, "infra")))
        return sl_err_set(err, SL_EINVAL, "%s: ledger kind '%s' (api or infra)", __func__,
                          l->kind ? l->kind : "");
    char ts[24], tin[24], tout[24], mms[32], cost[32];
    snprintf(ts, sizeof ts, "%lld", (long long)(l->ts_ms ? l->ts_ms : wall_ms()));
    snprintf(tin, sizeof tin, "%lld", (long long)l->tokens_in);
    snprintf(tout, sizeof tout, "%lld", (long long)l->tokens_out);
    snprintf(mms, sizeof mms, "%.17g", l->machine_ms);
    snprintf(cost, sizeof cost, "%.17g", l->cost);
    const char *v[10] = {ts,      l->request_id, l->route, l->backend, l->model,
                         l->kind, tin,           tout,     mms,        cost};
    pthread_mutex_lock(&S->mu);
    PGresult *r = run(S, PQ_INS_LEDGER, v);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK
                 ? 0
                 : pg_err(err, SL_EIO, __func__, "insert ledger entry", PQerrorMessage(S->c));
    PQclear(r);
    pthread_mutex_unlock(&S->mu);
    return rc;
}

static int pg_feedback(void *ctx, const char *id, const char *answer, struct sl_err *err)
{
    struct store_pg *S = ctx;
    if (!id || !answer)
        return sl_err_set(err, SL_EINVAL, "%s: request id and answer needed", __func__);
    int rc = 0;
    pthread_mutex_lock(&S->mu);
    const char *v1[1] = {id};
    PGresult *r = run(S, PQ_HAS_REQ, v1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = pg_err(err, SL_EIO, __func__, "look up request", PQerrorMessage(S->c));
    } else if (PQntuples(r) == 0) {
        rc = sl_err_set(err, SL_ENOTFOUND, "%s: no request with id '%s'", __func__, id);
    }
    PQclear(r);
    if (rc == 0) {
        char ts[24];
        snprintf(ts, sizeof ts, "%lld", (long long)wall_ms());
        const char *v[3] = {id, ts, answer};
        r = run(S, PQ_UPS_FB, v);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            rc = pg_err(err, SL_EIO, __func__, "write feedback", PQerrorMessage(S->c));
        PQclear(r);
    }
    pthread_mutex_unlock(&S->mu);
    return rc;
}

static char *col(PGresult *r, int row, int c)
{
    if (PQgetisnull(r, row, c)) return NULL;
    const char *s = PQgetvalue(r, row, c);
    size_t n = strlen(s);
    char *p = malloc(n + 1);
    if (p) memcpy(p, s, n + 1);
    return p;
}

/* Row k of PQ_GET_REQ / PQ_LIST_REQ into o (strings owned). */
static void row_read(PGresult *r, int k, struct sl_store_row *o)
{
    o->id = col(r, k, 0);
    o->ts_ms = strtoll(PQgetvalue(r, k, 1), NULL, 10);
    o->route = col(r, k, 2);
    o->tiers = col(r, k, 3);
    o->decision = col(r, k, 4);
    o->reason = col(r, k, 5);
    o->confidence = PQgetisnull(r, k, 6) ? -1 : strtod(PQgetvalue(r, k, 6), NULL);
    o->model = col(r, k, 7);
    o->backend = col(r, k, 8);
    o->tokens_in = strtoll(PQgetvalue(r, k, 9), NULL, 10);
    o->tokens_out = strtoll(PQgetvalue(r, k, 10), NULL, 10);
    o->latency_ms = strtod(PQgetvalue(r, k, 11), NULL);
    o->cost = strtod(PQgetvalue(r, k, 12), NULL);
    o->input = col(r, k, 13);
    o->input_sha256 = col(r, k, 14);
    o->output = col(r, k, 15);
    o->status = atoi(PQgetvalue(r, k, 16));
    o->feedback = col(r, k, 17);
}

static int pg_get_request(void *ctx, const char *id, struct sl_store_row *o, struct sl_err *err)
{
    struct store_pg *S = ctx;
    memset(o, 0, sizeof *o);
    int rc = 0;
    const char *v[1] = {id ? id : ""};
    pthread_mutex_lock(&S->mu);
    PGresult *r = run(S, PQ_GET_REQ, v);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = pg_err(err, SL_EIO, __func__, "read request", PQerrorMessage(S->c));
    } else if (PQntuples(r) == 0) {
        rc = sl_err_set(err, SL_ENOTFOUND, "%s: no request with id '%s'", __func__, v[0]);
    } else {
        row_read(r, 0, o);
    }
    PQclear(r);
    if (rc == 0) {
        r = run(S, PQ_GET_STAGES, v);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            rc = pg_err(err, SL_EIO, __func__, "read stages", PQerrorMessage(S->c));
        } else {
            for (int k = 0; k < PQntuples(r) && o->n_stages < SL_STORE_MAX_STAGES; k++) {
                snprintf(o->stages[o->n_stages].name, sizeof o->stages[0].name, "%s",
                         PQgetvalue(r, k, 0));
                o->stages[o->n_stages].ms = strtod(PQgetvalue(r, k, 1), NULL);
                o->n_stages++;
            }
        }
        PQclear(r);
    }
    pthread_mutex_unlock(&S->mu);
    if (rc) sl_store_row_free(o);
    return rc;
}

static int pg_costs(void *ctx, enum sl_store_group by, int64_t since_ms, sl_store_cost_fn fn,
                    void *user, struct sl_err *err)
{
    struct store_pg *S = ctx;
    int which = by == SL_STORE_BY_MODEL ? PQ_COSTS_MODEL
                : by == SL_STORE_BY_DAY ? PQ_COSTS_DAY
                                        : PQ_COSTS_ROUTE;
    char since[24];
    snprintf(since, sizeof since, "%lld", (long long)since_ms);
    const char *v[1] = {since};
    int rc = 0;
    pthread_mutex_lock(&S->mu);
    PGresult *r = run(S, which, v);
    pthread_mutex_unlock(&S->mu);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = pg_err(err, SL_EIO, __func__, "cost query", PQresultErrorMessage(r));
        PQclear(r);
        return rc;
    }
    for (int k = 0; k < PQntuples(r) && rc == 0; k++) {
        struct sl_store_cost_row row = {
            .key = PQgetisnull(r, k, 0) ? "-" : PQgetvalue(r, k, 0),
            .n_requests = strtoll(PQgetvalue(r, k, 1), NULL, 10),
            .tokens_in = strtoll(PQgetvalue(r, k, 2), NULL, 10),
            .tokens_out = strtoll(PQgetvalue(r, k, 3), NULL, 10),
            .api_cost = strtod(PQgetvalue(r, k, 4), NULL),
            .infra_cost = strtod(PQgetvalue(r, k, 5), NULL),
            .machine_ms = strtod(PQgetvalue(r, k, 6), NULL),
            .first_ms = strtoll(PQgetvalue(r, k, 7), NULL, 10),
            .last_ms = strtoll(PQgetvalue(r, k, 8), NULL, 10),
        };
        rc = fn(user, &row);
    }
    PQclear(r);
    return rc;
}

static int pg_list_requests(void *ctx, const struct sl_store_filter *f, sl_store_row_fn fn, void *user,
                            struct sl_err *err)
{
    struct store_pg *S = ctx;
    char since[24], fb[8], lim[24];
    snprintf(since, sizeof since, "%lld", (long long)f->since_ms);
    snprintf(fb, sizeof fb, "%d", f->has_feedback < 0 ? -1 : f->has_feedback > 0);
    snprintf(lim, sizeof lim, "%lld", (long long)f->limit);
    const char *v[5] = {f->route, f->decision, since, fb, f->limit > 0 ? lim : NULL};
    int rc = 0;
    pthread_mutex_lock(&S->mu);
    PGresult *r = run(S, PQ_LIST_REQ, v);
    pthread_mutex_unlock(&S->mu);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = pg_err(err, SL_EIO, __func__, "list requests", PQresultErrorMessage(r));
        PQclear(r);
        return rc;
    }
    for (int k = 0; k < PQntuples(r) && rc == 0; k++) {
        struct sl_store_row row = {0};
        row_read(r, k, &row);
        if (!row.id) rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
        else rc = fn(user, &row);
        sl_store_row_free(&row);
    }
    PQclear(r);
    return rc;
}

static void pg_close(void *ctx)
{
    struct store_pg *S = ctx;
    if (!S) return;
    PQfinish(S->c);
    pthread_mutex_destroy(&S->mu);
    free(S);
}

static const struct sl_store_i pg_iface = {
    .kind = "postgres",
    .log_request = pg_log_request,
    .ledger_add = pg_ledger_add,
    .feedback = pg_feedback,
    .get_request = pg_get_request,
    .costs = pg_costs,
    .list_requests = pg_list_requests,
    .close = pg_close,
};

static int pg_migrate(struct store_pg *S, struct sl_err *err)
{
    const char *fn = "sl_store_pg_open";
    int rc;
    if ((rc = exec_simple(S, "BEGIN", err, fn))) return rc;
    /* one migrator at a time across processes */
    if ((rc = exec_simple(S, "SELECT pg_advisory_xact_lock(7400461)", err, fn)) ||
        (rc = exec_simple(S, "CREATE TABLE IF NOT EXISTS sluice_schema (version INTEGER NOT NULL)",
                          err, fn)))
        goto fail;
    PGresult *r = PQexec(S->c, "SELECT version FROM sluice_schema");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = pg_err(err, SL_EIO, fn, "read schema version", PQerrorMessage(S->c));
        PQclear(r);
        goto fail;
    }
    int version = PQntuples(r) ? atoi(PQgetvalue(r, 0, 0)) : 0;
    int had_row = PQntuples(r) > 0;
    PQclear(r);
    if (version > PG_N_MIGRATIONS) {
        rc = sl_err_set(err, SL_EUNSUPPORTED,
                        "%s: database has schema version %d, this build knows %d "
                        "(written by a newer sluice?)",
                        fn, version, PG_N_MIGRATIONS);
        goto fail;
    }
    for (int v = version; v < PG_N_MIGRATIONS; v++)
        if ((rc = exec_simple(S, pg_migrations[v], err, fn))) goto fail;
    char sql[96];
    snprintf(sql, sizeof sql,
             had_row ? "UPDATE sluice_schema SET version = %d"
                     : "INSERT INTO sluice_schema VALUES (%d)",
             PG_N_MIGRATIONS);
    if ((rc = exec_simple(S, sql, err, fn)) || (rc = exec_simple(S, "COMMIT", err, fn))) goto fail;
    return 0;
fail:
    PQclear(PQexec(S->c, "ROLLBACK"));
    return rc;
}

int sl_store_pg_open(struct sl_store *out, const char *conninfo, const struct sl_store_params *p,
                     struct sl_err *err)
{
    out->iface = NULL;
    out->ctx = NULL;
    struct store_pg *S = calloc(1, sizeof *S);
    if (!S) return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    S->p = p ? *p : sl_store_default_params();
    pthread_mutex_init(&S->mu, NULL);
    int rc;
    S->c = PQconnectdb(conninfo ? conninfo : "");
    if (!S->c || PQstatus(S->c) != CONNECTION_OK) {
        rc =
            pg_err(err, SL_EIO, __func__, "connect", S->c ? PQerrorMessage(S->c) : "out of memory");
        goto fail; /* server down, bad conninfo, auth */
    }
    if ((rc = exec_simple(S, "SET client_min_messages = warning", err, __func__))) goto fail;
    if ((rc = pg_migrate(S, err))) goto fail; /* schema too new or DDL failed */
    for (int k = 0; k < PQ_COUNT; k++) {
        PGresult *r =
            PQprepare(S->c, pg_stmts[k].name, pg_stmts[k].sql, pg_stmts[k].n_params, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            rc = pg_err(err, SL_EIO, __func__, pg_stmts[k].name, PQerrorMessage(S->c));
            PQclear(r);
            goto fail; /* our SQL does not match the schema */
        }
        PQclear(r);
    }
    out->iface = &pg_iface;
    out->ctx = S;
    return 0;
fail:
    pg_close(S);
    return rc;
}
