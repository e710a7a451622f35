/*
 * store_sqlite.c - the request log, feedback and cost ledger in SQLite
 * (store layer), behind struct sl_store_i (store.h).
 *
 * One connection per store, WAL journal, a busy timeout, prepared
 * statements made once at open, a mutex around each operation. The schema
 * lives here as an ordered list of migrations; PRAGMA user_version records
 * how many have run, so opening an older file brings it up to date and a
 * newer file is refused.
 *
 * Fault injection (STYLE §16): sl_store_sqlite_fail_at = N makes the N-th
 * sqlite3_step from now fail with SQLITE_IOERR; every write is one
 * transaction, so a failure leaves no partial request behind.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/sha256.h"
#include "store/store.h"
#include "store/store_int.h"

/* ================================================================ schema */

static const char *const migrations[] = {
    /* 1: request log, stages, feedback, ledger */
    "CREATE TABLE requests ("
    "  id TEXT PRIMARY KEY,"
    "  ts_ms INTEGER NOT NULL,"
    "  route TEXT, tiers TEXT, decision TEXT, reason TEXT,"
    "  confidence REAL," /* NULL: none */
    "  model TEXT, backend TEXT,"
    "  tokens_in INTEGER NOT NULL DEFAULT 0,"
    "  tokens_out INTEGER NOT NULL DEFAULT 0,"
    "  latency_ms REAL NOT NULL DEFAULT 0,"
    "  cost REAL NOT NULL DEFAULT 0,"
    "  input TEXT,"        /* NULL unless input mode 'store' */
    "  input_sha256 TEXT," /* NULL if input mode 'drop' */
    "  output TEXT,"
    "  status INTEGER NOT NULL DEFAULT 200"
    ");"
    "CREATE INDEX requests_ts ON requests(ts_ms);"
    "CREATE TABLE request_stages ("
    "  request_id TEXT NOT NULL REFERENCES requests(id),"
    "  seq INTEGER NOT NULL,"
    "  stage TEXT NOT NULL,"
    "  ms REAL NOT NULL,"
    "  PRIMARY KEY (request_id, seq)"
    ");"
    "CREATE TABLE feedback ("
    "  request_id TEXT PRIMARY KEY REFERENCES requests(id),"
    "  ts_ms INTEGER NOT NULL,"
    "  answer TEXT NOT NULL"
    ");"
    "CREATE TABLE ledger ("
    "  id INTEGER PRIMARY KEY,"
    "  ts_ms INTEGER NOT NULL,"
    "  request_id TEXT,"
    "  route TEXT, backend TEXT, model TEXT,"
    "  kind TEXT NOT NULL CHECK (kind IN ('api', 'infra')),"
    "  tokens_in INTEGER NOT NULL DEFAULT 0,"
    "  tokens_out INTEGER NOT NULL DEFAULT 0,"
    "  machine_ms REAL NOT NULL DEFAULT 0,"
    "  cost REAL NOT NULL DEFAULT 0"
    ");"
    "CREATE INDEX ledger_ts ON ledger(ts_ms);"
    "CREATE INDEX ledger_request ON ledger(request_id);",
};

#define N_MIGRATIONS ((int)(sizeof migrations / sizeof *migrations))

int sl_store_sqlite_schema_version(void)
{
    return N_MIGRATIONS;
}

/* ================================================================ state */

int sl_store_sqlite_fail_at = 0;

enum {
    ST_INS_REQ,
    ST_INS_STAGE,
    ST_INS_LEDGER,
    ST_HAS_REQ,
    ST_UPS_FEEDBACK,
    ST_GET_REQ,
    ST_GET_STAGES,
    ST_LIST_REQ,
    ST_COSTS_ROUTE,
    ST_COSTS_MODEL,
    ST_COSTS_DAY,
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_COUNT
};

/* Per group: requests give the count and tokens, the ledger gives money. */
#define COSTS_SQL(REQ_KEY, LED_KEY)                                                                \
    "SELECT k, SUM(n), SUM(tin), SUM(tout), SUM(api), SUM(infra), SUM(mms), MIN(t0), MAX(t1)"      \
    " FROM ("                                                                                      \
    "  SELECT " REQ_KEY " AS k, 1 AS n, tokens_in AS tin, tokens_out AS tout, 0.0 AS api,"         \
    "         0.0 AS infra, 0.0 AS mms, ts_ms AS t0, ts_ms AS t1"                                  \
    "  FROM requests WHERE ts_ms >= ?1"                                                            \
    "  UNION ALL"                                                                                  \
    "  SELECT " LED_KEY ", 0, 0, 0, CASE kind WHEN 'api' THEN cost ELSE 0.0 END,"                  \
    "         CASE kind WHEN 'infra' THEN cost ELSE 0.0 END, machine_ms, ts_ms, ts_ms"             \
    "  FROM ledger WHERE ts_ms >= ?1"                                                              \
    " ) GROUP BY k ORDER BY k"

static const char *const stmt_sql[ST_COUNT] = {
    [ST_INS_REQ] = "INSERT INTO requests (id, ts_ms, route, tiers, decision, reason, confidence,"
                   " model, backend, tokens_in, tokens_out, latency_ms, cost, input, input_sha256,"
                   " output, status) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    [ST_INS_STAGE] = "INSERT INTO request_stages (request_id, seq, stage, ms) VALUES (?,?,?,?)",
    [ST_INS_LEDGER] = "INSERT INTO ledger (ts_ms, request_id, route, backend, model, kind,"
                      " tokens_in, tokens_out, machine_ms, cost) VALUES (?,?,?,?,?,?,?,?,?,?)",
    [ST_HAS_REQ] = "SELECT 1 FROM requests WHERE id = ?",
    [ST_UPS_FEEDBACK] = "INSERT INTO feedback (request_id, ts_ms, answer) VALUES (?,?,?)"
                        " ON CONFLICT(request_id) DO UPDATE SET ts_ms = excluded.ts_ms,"
                        " answer = excluded.answer",
    [ST_GET_REQ] = "SELECT r.id, r.ts_ms, r.route, r.tiers, r.decision, r.reason, r.confidence,"
                   " r.model, r.backend, r.tokens_in, r.tokens_out, r.latency_ms, r.cost, r.input,"
                   " r.input_sha256, r.output, r.status, f.answer"
                   " FROM requests r LEFT JOIN feedback f ON f.request_id = r.id WHERE r.id = ?",
    /* ?1 route, ?2 decision (NULL = any), ?3 since, ?4 feedback (-1 any), ?5 limit (-1 none) */
    [ST_LIST_REQ] = "SELECT r.id, r.ts_ms, r.route, r.tiers, r.decision, r.reason, r.confidence,"
                    " r.model, r.backend, r.tokens_in, r.tokens_out, r.latency_ms, r.cost, r.input,"
                    " r.input_sha256, r.output, r.status, f.answer"
                    " FROM requests r LEFT JOIN feedback f ON f.request_id = r.id"
                    " WHERE (?1 IS NULL OR r.route = ?1) AND (?2 IS NULL OR r.decision = ?2)"
                    " AND r.ts_ms >= ?3 AND (?4 < 0 OR (f.answer IS NOT NULL) = ?4)"
                    " ORDER BY r.ts_ms, r.id LIMIT ?5",
    [ST_GET_STAGES] = "SELECT stage, ms FROM request_stages WHERE request_id = ? ORDER BY seq",
    [ST_COSTS_ROUTE] = COSTS_SQL("COALESCE(route, '-')", "COALESCE(route, '-')"),
    [ST_COSTS_MODEL] = COSTS_SQL("COALESCE(model, '-')", "COALESCE(model, '-')"),
    [ST_COSTS_DAY] =
        COSTS_SQL("date(ts_ms / 1000, 'unixepoch')", "date(ts_ms / 1000, 'unixepoch')"),
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
};

struct store_sqlite {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    pthread_mutex_t mu;
    struct sl_store_params p;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* sqlite3_step, through the fault-injection hook. */
static int step(sqlite3_stmt *s)
{
    if (sl_store_sqlite_fail_at > 0 && --sl_store_sqlite_fail_at == 0) return SQLITE_IOERR;
    return sqlite3_step(s);
}

static int db_err(struct store_sqlite *S, struct sl_err *err, const char *fn, const char *what,
                  int rc)
{
    /* an injected fault leaves the connection's own error code untouched */
    int injected = rc == SQLITE_IOERR && sqlite3_errcode(S->db) != SQLITE_IOERR;
    return sl_err_set(err, SL_EIO, "%s: %s: %s", fn, what,
                      injected ? "injected I/O fault" : sqlite3_errmsg(S->db));
}

/* ================================================================ helpers */

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, i);
}

static char *col_dup(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    if (!t) return NULL;
    size_t n = (size_t)sqlite3_column_bytes(s, i);
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, t, n);
        p[n] = 0;
    }
    return p;
}

/* Runs a one-shot statement (BEGIN/COMMIT/ROLLBACK). */
static int run(struct store_sqlite *S, int which)
{
    sqlite3_stmt *s = S->st[which];
    int rc = step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : rc;
}

/* ================================================================ members */

static int ss_log_request(void *ctx, const struct sl_store_request *r, struct sl_err *err)
{
    struct store_sqlite *S = ctx;
    if (!r->id || !*r->id || strlen(r->id) > SL_STORE_ID_MAX)
        return sl_err_set(err, SL_EINVAL, "%s: request id missing or longer than %d bytes",
                          __func__, SL_STORE_ID_MAX);
    if (r->n_stages > SL_STORE_MAX_STAGES)
        return sl_err_set(err, SL_ERANGE, "%s: %zu stages, at most %d", __func__, r->n_stages,
                          SL_STORE_MAX_STAGES);
    char hex[2 * SL_SHA256_LEN + 1];
    const char *input = NULL, *hash = NULL;
    if (r->input && S->p.input != SL_STORE_INPUT_DROP) {
        uint8_t d[SL_SHA256_LEN];
        sl_sha256(r->input, strlen(r->input), d);
        sl_sha256_hex(d, hex);
        hash = hex;
        if (S->p.input == SL_STORE_INPUT_STORE) input = r->input;
    }
    int rc = 0;
    pthread_mutex_lock(&S->mu);
    if ((rc = run(S, ST_BEGIN))) {
        rc = db_err(S, err, __func__, "begin", rc);
        goto out;
    }
    sqlite3_stmt *s = S->st[ST_INS_REQ];
    sqlite3_bind_text(s, 1, r->id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, r->ts_ms ? r->ts_ms : now_ms());
    bind_text(s, 3, r->route);
    bind_text(s, 4, r->tiers);
    bind_text(s, 5, r->decision);
    bind_text(s, 6, r->reason);
    if (r->confidence >= 0)
        sqlite3_bind_double(s, 7, r->confidence);
    else
        sqlite3_bind_null(s, 7);
    bind_text(s, 8, r->model);
    bind_text(s, 9, r->backend);
    sqlite3_bind_int64(s, 10, r->tokens_in);
    sqlite3_bind_int64(s, 11, r->tokens_out);
    sqlite3_bind_double(s, 12, r->latency_ms);
    sqlite3_bind_double(s, 13, r->cost);
    bind_text(s, 14, input);
    bind_text(s, 15, hash);
    bind_text(s, 16, r->output);
    sqlite3_bind_int(s, 17, r->status ? r->status : 200);
    int src = step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (src == SQLITE_CONSTRAINT) {
        rc = sl_err_set(err, SL_EINVAL, "%s: request id '%s' is already in the log", __func__,
                        r->id);
        goto rollback; /* duplicate id */
    }
    if (src != SQLITE_DONE) {
        rc = db_err(S, err, __func__, "insert request", src);
        goto rollback; /* write failed */
    }
    for (size_t k = 0; k < r->n_stages; k++) {
        s = S->st[ST_INS_STAGE];
        sqlite3_bind_text(s, 1, r->id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(s, 2, (int)k);
        sqlite3_bind_text(s, 3, r->stages[k].name ? r->stages[k].name : "?", -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(s, 4, r->stages[k].ms);
        src = step(s);
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
        if (src != SQLITE_DONE) {
            rc = db_err(S, err, __func__, "insert stage", src);
            goto rollback; /* write failed */
        }
    }
    if ((src = run(S, ST_COMMIT))) {
        rc = db_err(S, err, __func__, "commit", src);
        goto rollback; /* commit failed */
    }
    goto out;
rollback:
    /* ROLLBACK bypasses the fault hook: the hook models the failing write,
     * not a failing recovery. */
    sqlite3_step(S->st[ST_ROLLBACK]);
    sqlite3_reset(S->st[ST_ROLLBACK]);
out:
    pthread_mutex_unlock(&S->mu);
    return rc;
}

static int ss_ledger_add(void *ctx, const struct sl_store_ledger *l, struct sl_err *err)
{
    struct store_sqlite *S = ctx;
    if (!l->kind || (strcmp(l->kind, "api") && strcmp(l->kind, "infra")))
        return sl_err_set(err, SL_EINVAL, "%s: ledger kind '%s' (api or infra)", __func__,
                          l->kind ? l->kind : "");
    pthread_mutex_lock(&S->mu);
    sqlite3_stmt *s = S->st[ST_INS_LEDGER];
    sqlite3_bind_int64(s, 1, l->ts_ms ? l->ts_ms : now_ms());
    bind_text(s, 2, l->request_id);
    bind_text(s, 3, l->route);
    bind_text(s, 4, l->backend);
    bind_text(s, 5, l->model);
    bind_text(s, 6, l->kind);
    sqlite3_bind_int64(s, 7, l->tokens_in);
    sqlite3_bind_int64(s, 8, l->tokens_out);
    sqlite3_bind_double(s, 9, l->machine_ms);
    sqlite3_bind_double(s, 10, l->cost);
    int src = step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    int rc = src == SQLITE_DONE ? 0 : db_err(S, err, __func__, "insert ledger entry", src);
    pthread_mutex_unlock(&S->mu);
    return rc;
}

static int ss_feedback(void *ctx, const char *id, const char *answer, struct sl_err *err)
{
    struct store_sqlite *S = ctx;
    if (!id || !answer)
        return sl_err_set(err, SL_EINVAL, "%s: request id and answer needed", __func__);
    int rc = 0;
    pthread_mutex_lock(&S->mu);
    sqlite3_stmt *s = S->st[ST_HAS_REQ];
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    int src = step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (src == SQLITE_DONE) {
        rc = sl_err_set(err, SL_ENOTFOUND, "%s: no request with id '%s'", __func__, id);
        goto out;
    }
    if (src != SQLITE_ROW) {
        rc = db_err(S, err, __func__, "look up request", src);
        goto out;
    }
    s = S->st[ST_UPS_FEEDBACK];
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, now_ms());
    sqlite3_bind_text(s, 3, answer, -1, SQLITE_TRANSIENT);
    src = step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (src != SQLITE_DONE) rc = db_err(S, err, __func__, "write feedback", src);
out:
    pthread_mutex_unlock(&S->mu);
    return rc;
}

void sl_store_row_free(struct sl_store_row *r)
{
    free(r->id);
    free(r->route);
    free(r->tiers);
    free(r->decision);
    free(r->reason);
    free(r->model);
    free(r->backend);
    free(r->input);
    free(r->input_sha256);
    free(r->output);
    free(r->feedback);
    memset(r, 0, sizeof *r);
}

/* The columns of ST_GET_REQ / ST_LIST_REQ into o (strings owned). */
static void row_read(sqlite3_stmt *s, struct sl_store_row *o)
{
    o->id = col_dup(s, 0);
    o->ts_ms = sqlite3_column_int64(s, 1);
    o->route = col_dup(s, 2);
    o->tiers = col_dup(s, 3);
    o->decision = col_dup(s, 4);
    o->reason = col_dup(s, 5);
    o->confidence = sqlite3_column_type(s, 6) == SQLITE_NULL ? -1 : sqlite3_column_double(s, 6);
    o->model = col_dup(s, 7);
    o->backend = col_dup(s, 8);
    o->tokens_in = sqlite3_column_int64(s, 9);
    o->tokens_out = sqlite3_column_int64(s, 10);
    o->latency_ms = sqlite3_column_double(s, 11);
    o->cost = sqlite3_column_double(s, 12);
    o->input = col_dup(s, 13);
    o->input_sha256 = col_dup(s, 14);
    o->output = col_dup(s, 15);
    o->status = sqlite3_column_int(s, 16);
    o->feedback = col_dup(s, 17);
}

static int ss_get_request(void *ctx, const char *id, struct sl_store_row *o, struct sl_err *err)
{
    struct store_sqlite *S = ctx;
    memset(o, 0, sizeof *o);
    int rc = 0;
    pthread_mutex_lock(&S->mu);
    sqlite3_stmt *s = S->st[ST_GET_REQ];
    sqlite3_bind_text(s, 1, id ? id : "", -1, SQLITE_TRANSIENT);
    int src = step(s);
    if (src == SQLITE_DONE) {
        rc = sl_err_set(err, SL_ENOTFOUND, "%s: no request with id '%s'", __func__, id ? id : "");
    } else if (src != SQLITE_ROW) {
        rc = db_err(S, err, __func__, "read request", src);
    } else {
        row_read(s, o);
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc == 0) {
        s = S->st[ST_GET_STAGES];
        sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
        while ((src = step(s)) == SQLITE_ROW && o->n_stages < SL_STORE_MAX_STAGES) {
            const unsigned char *nm = sqlite3_column_text(s, 0);
            snprintf(o->stages[o->n_stages].name, sizeof o->stages[0].name, "%s",
                     nm ? (const char *)nm : "?");
            o->stages[o->n_stages].ms = sqlite3_column_double(s, 1);
            o->n_stages++;
        }
        if (src != SQLITE_ROW && src != SQLITE_DONE)
            rc = db_err(S, err, __func__, "read stages", src);
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
    }
    pthread_mutex_unlock(&S->mu);
    if (rc) sl_store_row_free(o);
    return rc;
}

static int ss_costs(void *ctx, enum sl_store_group by, int64_t since_ms, sl_store_cost_fn fn,
                    void *user, struct sl_err *err)
{
    struct store_sqlite *S = ctx;
    int which = by == SL_STORE_BY_MODEL ? ST_COSTS_MODEL
                : by == SL_STORE_BY_DAY ? ST_COSTS_DAY
                                        : ST_COSTS_ROUTE;
    int rc = 0, src;
    pthread_mutex_lock(&S->mu);
    sqlite3_stmt *s = S->st[which];
    sqlite3_bind_int64(s, 1, since_ms);
    while ((src = step(s)) == SQLITE_ROW) {
        struct sl_store_cost_row row = {
            .key = (const char *)sqlite3_column_text(s, 0),
            .n_requests = sqlite3_column_int64(s, 1),
            .tokens_in = sqlite3_column_int64(s, 2),
            .tokens_out = sqlite3_column_int64(s, 3),
            .api_cost = sqlite3_column_double(s, 4),
            .infra_cost = sqlite3_column_double(s, 5),
            .machine_ms = sqlite3_column_double(s, 6),
            .first_ms = sqlite3_column_int64(s, 7),
            .last_ms = sqlite3_column_int64(s, 8),
        };
        if (!row.key) row.key = "-";
        if ((rc = fn(user, &row)) != 0) break;
    }
    if (rc == 0 && src != SQLITE_DONE) rc = db_err(S, err, __func__, "cost query", src);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    pthread_mutex_unlock(&S->mu);
    return rc;
}

static int ss_list_requests(void *ctx, const struct sl_store_filter *f, sl_store_row_fn fn, void *user,
                            struct sl_err *err)
{
    struct store_sqlite *S = ctx;
    int rc = 0, src;
    pthread_mutex_lock(&S->mu);
    sqlite3_stmt *s = S->st[ST_LIST_REQ];
    bind_text(s, 1, f->route);
    bind_text(s, 2, f->decision);
    sqlite3_bind_int64(s, 3, f->since_ms);
    sqlite3_bind_int(s, 4, f->has_feedback < 0 ? -1 : f->has_feedback > 0);
    sqlite3_bind_int64(s, 5, f->limit > 0 ? f->limit : -1);
    while ((src = step(s)) == SQLITE_ROW) {
        struct sl_store_row row = {0};
        row_read(s, &row);
        if (!row.id) {
            sl_store_row_free(&row);
            rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
            break;
        }
        rc = fn(user, &row);
        sl_store_row_free(&row);
        if (rc) break;
    }
    if (rc == 0 && src != SQLITE_DONE) rc = db_err(S, err, __func__, "list requests", src);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    pthread_mutex_unlock(&S->mu);
    return rc;
}

static void ss_close(void *ctx)
{
    struct store_sqlite *S = ctx;
    if (!S) return;
    for (int k = 0; k < ST_COUNT; k++)
        sqlite3_finalize(S->st[k]);
    sqlite3_close(S->db);
    pthread_mutex_destroy(&S->mu);
    free(S);
}

static const struct sl_store_i sqlite_iface = {
    .kind = "sqlite",
    .log_request = ss_log_request,
    .ledger_add = ss_ledger_add,
    .feedback = ss_feedback,
    .get_request = ss_get_request,
    .costs = ss_costs,
    .list_requests = ss_list_requests,
    .close = ss_close,
};

/* ================================================================ open */

struct sl_store_filter sl_store_filter_default(void)
{
    return (struct sl_store_filter){.route = NULL, .decision = NULL, .since_ms = 0, .has_feedback = -1,
                                    .limit = 0};
}

struct sl_store_params sl_store_default_params(void)
{
    struct sl_store_params p = {.input = SL_STORE_INPUT_HASH, .busy_timeout_ms = 5000};
    return p;
}

int sl_store_input_parse(const char *s, enum sl_store_input *out, struct sl_err *err)
{
    if (s && !strcmp(s, "store"))
        *out = SL_STORE_INPUT_STORE;
    else if (s && !strcmp(s, "hash"))
        *out = SL_STORE_INPUT_HASH;
    else if (s && !strcmp(s, "drop"))
        *out = SL_STORE_INPUT_DROP;
    else
        return sl_err_set(err, SL_EINVAL, "%s: input mode '%s' (store, hash or drop)", __func__,
                          s ? s : "");
    return 0;
}

static int exec(struct store_sqlite *S, const char *sql, struct sl_err *err, const char *what)
{
    char *msg = NULL;
    int rc = sqlite3_exec(S->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        sl_err_set(err, SL_EIO, "sl_store_sqlite_open: %s: %s", what,
                   msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return SL_EIO;
    }
    return 0;
}

static int migrate(struct store_sqlite *S, const char *path, struct sl_err *err)
{
    sqlite3_stmt *s = NULL;
    int version = 0;
    if (sqlite3_prepare_v2(S->db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
        return sl_err_set(err, SL_EIO, "sl_store_sqlite_open: %s: %s", path, sqlite3_errmsg(S->db));
    if (sqlite3_step(s) == SQLITE_ROW) version = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    if (version > N_MIGRATIONS)
        return sl_err_set(err, SL_EUNSUPPORTED,
                          "sl_store_sqlite_open: %s has schema version %d, this build knows %d "
                          "(written by a newer sluice?)",
                          path, version, N_MIGRATIONS);
    for (int v = version; v < N_MIGRATIONS; v++) {
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d;", v + 1);
        if (exec(S, "BEGIN IMMEDIATE", err, "begin migration")) return SL_EIO;
        if (exec(S, migrations[v], err, "migration") || exec(S, pragma, err, "set version") ||
            exec(S, "COMMIT", err, "commit migration")) {
            sqlite3_exec(S->db, "ROLLBACK", NULL, NULL, NULL);
            return SL_EIO;
        }
    }
    return 0;
}

int sl_store_sqlite_open(struct sl_store *out, const char *path, const struct sl_store_params *p,
                         struct sl_err *err)
{
    struct store_sqlite *S = NULL;
    out->iface = NULL;
    out->ctx = NULL;
    if (!path || !*path) return sl_err_set(err, SL_EINVAL, "%s: no database path", __func__);
    S = calloc(1, sizeof *S);
    if (!S) return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    S->p = p ? *p : sl_store_default_params();
    pthread_mutex_init(&S->mu, NULL);
    int rc = sqlite3_open_v2(
        path, &S->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
    if (rc != SQLITE_OK) {
        sl_err_set(err, SL_EIO, "%s: %s: %s", __func__, path,
                   S->db ? sqlite3_errmsg(S->db) : sqlite3_errstr(rc));
        goto fail; /* cannot open */
    }
    sqlite3_busy_timeout(S->db, S->p.busy_timeout_ms > 0 ? S->p.busy_timeout_ms : 5000);
    sqlite3_extended_result_codes(S->db, 0);
    /* journal_mode returns a row; WAL is refused only for in-memory DBs */
    if (exec(S, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;", err,
             path))
        goto fail;                        /* not a database, or locked */
    if (migrate(S, path, err)) goto fail; /* schema too new, or write failed */
    for (int k = 0; k < ST_COUNT; k++) {
        if (sqlite3_prepare_v3(S->db, stmt_sql[k], -1, SQLITE_PREPARE_PERSISTENT, &S->st[k],
                               NULL) != SQLITE_OK) {
            sl_err_set(err, SL_EIO, "%s: prepare statement %d: %s", __func__, k,
                       sqlite3_errmsg(S->db));
            goto fail; /* schema does not match: our bug or a foreign file */
        }
    }
    out->iface = &sqlite_iface;
    out->ctx = S;
    return 0;
fail:
    ss_close(S);
    return err ? err->code : SL_EIO;
}
