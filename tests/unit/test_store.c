/*
 * test_store.c - the SQLite request log, feedback and ledger
 * (src/store/store_sqlite.c): round trips, input modes, migrations, WAL,
 * duplicate ids, a failing write at every step leaves nothing half-written,
 * concurrent writers; the PostgreSQL store (store_pg.c) against a
 * throw-away server (tests/support/pg_server.c).
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/sha256.h"
#include "store/store.h"
#include "store/store_int.h"
#include "support/pg_server.h"
#include "test.h"

/* Removes a test database and its WAL/SHM files. */
static void rm_db(const char *p)
{
    char side[1100];
    unlink(p);
    snprintf(side, sizeof side, "%s-wal", p);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", p);
    unlink(side);
}

static const char *fresh_db(const char *name)
{
    const char *p = t_tmp_path(name);
    char side[1100];
    unlink(p);
    snprintf(side, sizeof side, "%s-wal", p);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", p);
    unlink(side);
    return p;
}

static struct sl_store_request sample(const char *id)
{
    struct sl_store_request r;
    memset(&r, 0, sizeof r);
    r.id = id;
    r.ts_ms = 1700000000000LL;
    r.route = "ticket-triage";
    r.tiers = "small,large";
    r.decision = "escalated";
    r.reason = "confidence 0.41 < 0.70";
    r.confidence = 0.93;
    r.model = "big-1";
    r.backend = "large";
    r.tokens_in = 120;
    r.tokens_out = 8;
    r.latency_ms = 812.5;
    r.stages[0].name = "small";
    r.stages[0].ms = 40;
    r.stages[1].name = "large";
    r.stages[1].ms = 770;
    r.stages[2].name = "store";
    r.stages[2].ms = 0.5;
    r.n_stages = 3;
    r.cost = 0.00048;
    r.input = "user: my card was charged twice";
    r.output = "billing";
    r.status = 200;
    return r;
}

static void store_round_trips_a_request(void)
{
    const char *path = fresh_db("store_rt.db");
    struct sl_store s;
    struct sl_err err = {0};
    struct sl_store_params p = sl_store_default_params();
    p.input = SL_STORE_INPUT_STORE;
    T_OK(sl_store_sqlite_open(&s, path, &p, &err), &err);
    if (!s.ctx) return;
    T_EQ_STR(s.iface->kind, "sqlite");
    struct sl_store_request r = sample("req-1");
    T_OK(s.iface->log_request(s.ctx, &r, &err), &err);
    struct sl_store_row row;
    T_OK(s.iface->get_request(s.ctx, "req-1", &row, &err), &err);
    T_EQ_STR(row.route, "ticket-triage");
    T_EQ_STR(row.tiers, "small,large");
    T_EQ_STR(row.decision, "escalated");
    T_EQ_STR(row.reason, "confidence 0.41 < 0.70");
    T_NEAR(row.confidence, 0.93, 1e-12);
    T_EQ_STR(row.model, "big-1");
    T_EQ_INT(row.tokens_in, 120);
    T_EQ_INT(row.tokens_out, 8);
    T_NEAR(row.latency_ms, 812.5, 1e-9);
    T_NEAR(row.cost, 0.00048, 1e-12);
    T_EQ_STR(row.input, "user: my card was charged twice");
    T_EQ_STR(row.output, "billing");
    T_EQ_INT(row.ts_ms, 1700000000000LL);
    T_EQ_INT(row.n_stages, 3);
    T_EQ_STR(row.stages[1].name, "large");
    T_NEAR(row.stages[1].ms, 770, 1e-9);
    T_TRUE(row.feedback == NULL);
    sl_store_row_free(&row);
    /* no confidence is NULL, read back as -1 */
    r = sample("req-2");
    r.confidence = -1;
    r.n_stages = 0;
    T_OK(s.iface->log_request(s.ctx, &r, &err), &err);
    T_OK(s.iface->get_request(s.ctx, "req-2", &row, &err), &err);
    T_NEAR(row.confidence, -1, 0);
    T_EQ_INT(row.n_stages, 0);
    sl_store_row_free(&row);
    T_EQ_INT(s.iface->get_request(s.ctx, "nope", &row, &err), SL_ENOTFOUND);
    s.iface->close(s.ctx);
}

static void store_hashes_or_drops_the_input_by_config(void)
{
    const char *in = "user: my card was charged twice";
    uint8_t d[SL_SHA256_LEN];
    char hex[65];
    sl_sha256(in, strlen(in), d);
    sl_sha256_hex(d, hex);
    enum sl_store_input modes[3] = {SL_STORE_INPUT_STORE, SL_STORE_INPUT_HASH, SL_STORE_INPUT_DROP};
    for (int m = 0; m < 3; m++) {
        char name[32];
        snprintf(name, sizeof name, "store_in%d.db", m);
        const char *path = fresh_db(name);
        struct sl_store s;
        struct sl_err err = {0};
        struct sl_store_params p = sl_store_default_params();
        p.input = modes[m];
        T_OK(sl_store_sqlite_open(&s, path, &p, &err), &err);
        if (!s.ctx) return;
        struct sl_store_request r = sample("x");
        T_OK(s.iface->log_request(s.ctx, &r, &err), &err);
        struct sl_store_row row;
        T_OK(s.iface->get_request(s.ctx, "x", &row, &err), &err);
        if (m == 0)
            T_EQ_STR(row.input, in);
        else
            T_TRUE(row.input == NULL);
        if (m < 2)
            T_EQ_STR(row.input_sha256, hex);
        else
            T_TRUE(row.input_sha256 == NULL);
        sl_store_row_free(&row);
        s.iface->close(s.ctx);
        /* the text itself is nowhere in the file unless stored */
        size_t len = 0;
        char *bytes = t_read_file(path, &len);
        char wal[1100];
        snprintf(wal, sizeof wal, "%s-wal", path);
        size_t wl = 0;
        char *wbytes = t_read_file(wal, &wl);
        int found = 0;
        for (size_t k = 0; bytes && k + 20 <= len; k++)
            found |= !memcmp(bytes + k, "charged twice", 13);
        for (size_t k = 0; wbytes && k + 20 <= wl; k++)
            found |= !memcmp(wbytes + k, "charged twice", 13);
        T_EQ_INT(found, m == 0);
        free(bytes);
        free(wbytes);
    }
    enum sl_store_input v;
    struct sl_err err = {0};
    T_OK(sl_store_input_parse("hash", &v, &err), &err);
    T_EQ_INT(v, SL_STORE_INPUT_HASH);
    T_EQ_INT(sl_store_input_parse("keep", &v, &err), SL_EINVAL);
}

static void store_rejects_duplicate_and_missing_ids(void)
{
    const char *path = fresh_db("store_dup.db");
    struct sl_store s;
    struct sl_err err = {0};
    T_OK(sl_store_sqlite_open(&s, path, NULL, &err), &err);
    if (!s.ctx) return;
    struct sl_store_request r = sample("dup");
    T_OK(s.iface->log_request(s.ctx, &r, &err), &err);
    T_EQ_INT(s.iface->log_request(s.ctx, &r, &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "already") != NULL);
    r.id = NULL;
    T_EQ_INT(s.iface->log_request(s.ctx, &r, &err), SL_EINVAL);
    s.iface->close(s.ctx);
}

static void store_records_and_replaces_feedback(void)
{
    const char *path = fresh_db("store_fb.db");
    struct sl_store s;
    struct sl_err err = {0};
    T_OK(sl_store_sqlite_open(&s, path, NULL, &err), &err);
    if (!s.ctx) return;
    struct sl_store_request r = sample("fb-1");
    T_OK(s.iface->log_request(s.ctx, &r, &err), &err);
    T_EQ_INT(s.iface->feedback(s.ctx, "fb-404", "billing", &err), SL_ENOTFOUND);
    T_TRUE(strstr(err.msg, "fb-404") != NULL);
    T_OK(s.iface->feedback(s.ctx, "fb-1", "shipping", &err), &err);
    T_OK(s.iface->feedback(s.ctx, "fb-1", "billing", &err), &err);
    struct sl_store_row row;
    T_OK(s.iface->get_request(s.ctx, "fb-1", &row, &err), &err);
    T_EQ_STR(row.feedback, "billing");
    sl_store_row_free(&row);
    s.iface->close(s.ctx);
}

static void store_reopens_with_data_and_uses_wal(void)
{
    const char *path = fresh_db("store_reopen.db");
    struct sl_store s;
    struct sl_err err = {0};
    T_OK(sl_store_sqlite_open(&s, path, NULL, &err), &err);
    if (!s.ctx) return;
    struct sl_store_request r = sample("keep");
    T_OK(s.iface->log_request(s.ctx, &r, &err), &err);
    s.iface->close(s.ctx);
    T_OK(sl_store_sqlite_open(&s, path, NULL, &err), &err);
    struct sl_store_row row;
    T_OK(s.iface->get_request(s.ctx, "keep", &row, &err), &err);
    sl_store_row_free(&row);
    s.iface->close(s.ctx);
    sqlite3 *db = NULL;
    sqlite3_open(path, &db);
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL);
    T_EQ_INT(sqlite3_step(st), SQLITE_ROW);
    T_EQ_STR((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
    sqlite3_step(st);
    T_EQ_INT(sqlite3_column_int(st, 0), sl_store_sqlite_schema_version());
    sqlite3_finalize(st);
    /* a file from a newer sluice is refused, not damaged */
    sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL);
    sqlite3_close(db);
    T_EQ_INT(sl_store_sqlite_open(&s, path, NULL, &err), SL_EUNSUPPORTED);
    T_TRUE(strstr(err.msg, "version 99") != NULL);
}

static void store_refuses_a_file_that_is_not_a_database(void)
{
    const char *path = fresh_db("store_junk.db");
    FILE *f = fopen(path, "wb");
    fputs("this is not sqlite, just text that goes on for a while ..........................", f);
    fclose(f);
    struct sl_store s;
    struct sl_err err = {0};
    T_EQ_INT(sl_store_sqlite_open(&s, path, NULL, &err), SL_EIO);
    T_TRUE(s.ctx == NULL);
    T_TRUE(err.msg[0] != 0);
}

static int count_rows(void *user, const struct sl_store_cost_row *row)
{
    *(int64_t *)user += row->n_requests;
    return 0;
}

/* STYLE §16: fail each sqlite3_step of a write in turn. */
static void store_write_failing_at_each_step_leaves_no_partial_request(void)
{
    const char *path = fresh_db("store_fault.db");
    struct sl_store s;
    struct sl_err err = {0};
    T_OK(sl_store_sqlite_open(&s, path, NULL, &err), &err);
    if (!s.ctx) return;
    int failures = 0;
    for (int n = 1; n < 20; n++) {
        char id[32];
        snprintf(id, sizeof id, "f-%d", n);
        struct sl_store_request r = sample(id);
        sl_store_sqlite_fail_at = n;
        int rc = s.iface->log_request(s.ctx, &r, &err);
        int fired = sl_store_sqlite_fail_at == 0;
        sl_store_sqlite_fail_at = 0;
        struct sl_store_row row;
        int grc = s.iface->get_request(s.ctx, id, &row, &err);
        if (rc) {
            failures++;
            if (!fired) T_FAIL_AT("rerun with SL_FAIL_AT=%d: failed without an injected fault", n);
            if (grc != SL_ENOTFOUND) T_FAIL_AT("rerun with SL_FAIL_AT=%d: partial request left", n);
            t_checks++;
        } else {
            T_OK(grc, &err);
            if (grc == 0) T_EQ_INT(row.n_stages, 3);
            sl_store_row_free(&row);
            if (!fired) break; /* every step passed: done */
        }
        if (grc == 0 && rc) sl_store_row_free(&row);
    }
    T_EQ_INT(failures, 6); /* begin, insert, 3 stages, commit */
    /* the store still works */
    struct sl_store_request r = sample("after");
    T_OK(s.iface->log_request(s.ctx, &r, &err), &err);
    s.iface->close(s.ctx);
}

struct writer {
    struct sl_store *s;
    int base, ok;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    for (int k = 0; k < 50; k++) {
        char id[32];
        snprintf(id, sizeof id, "t%d-%d", w->base, k);
        struct sl_store_request r = sample(id);
        struct sl_err err = {0};
        if (w->s->iface->log_request(w->s->ctx, &r, &err) == 0) w->ok++;
        struct sl_store_ledger l = {id, 0, "r", "large", "big-1", "api", 10, 2, 0, 0.001};
        w->s->iface->ledger_add(w->s->ctx, &l, &err);
    }
    return NULL;
}

static void store_takes_concurrent_writers(void)
{
    const char *path = fresh_db("store_threads.db");
    struct sl_store s;
    struct sl_err err = {0};
    T_OK(sl_store_sqlite_open(&s, path, NULL, &err), &err);
    if (!s.ctx) return;
    pthread_t th[3];
    struct writer w[3];
    for (int k = 0; k < 3; k++) {
        w[k] = (struct writer){&s, k, 0};
        pthread_create(&th[k], NULL, writer_main, &w[k]);
    }
    for (int k = 0; k < 3; k++)
        pthread_join(th[k], NULL);
    T_EQ_INT(w[0].ok + w[1].ok + w[2].ok, 150);
    int64_t n = 0;
    T_OK(s.iface->costs(s.ctx, SL_STORE_BY_ROUTE, 0, count_rows, &n, &err), &err);
    T_EQ_INT(n, 150);
    s.iface->close(s.ctx);
}

/* ================================================================ listing */

struct listed {
    char ids[16][SL_STORE_ID_MAX + 1];
    char fb[16][32];
    size_t n;
    size_t stop_after; /* 0 = never */
};

static int collect(void *user, const struct sl_store_row *row)
{
    struct listed *L = user;
    if (L->n < 16) {
        snprintf(L->ids[L->n], sizeof L->ids[0], "%s", row->id);
        snprintf(L->fb[L->n], sizeof L->fb[0], "%s", row->feedback ? row->feedback : "-");
    }
    L->n++;
    return L->stop_after && L->n >= L->stop_after ? 42 : 0;
}

/* Six requests on two routes; list them through every filter. Shared by
 * the SQLite and PostgreSQL tests. */
static void check_listing(struct sl_store *s, const char *pre)
{
    struct sl_err err = {0};
    char id[6][64];
    static const char *const routes[6] = {"tri-list", "tri-list", "other-list", "tri-list", "tri-list", "tri-list"};
    static const char *const dec[6] = {"escalated", "local", "escalated", "escalated", "escalated", "fallback"};
    for (int i = 0; i < 6; i++) {
        snprintf(id[i], sizeof id[i], "%s-%d", pre, i);
        struct sl_store_request r = sample(id[i]);
        r.route = routes[i];
        r.decision = dec[i];
        r.ts_ms = 1800000000000LL + (5 - i) * 1000; /* logged newest first */
        T_OK(s->iface->log_request(s->ctx, &r, &err), &err);
    }
    T_OK(s->iface->feedback(s->ctx, id[3], "spam", &err), &err);
    T_TRUE(s->iface->list_requests != NULL);
    struct sl_store_filter f = sl_store_filter_default();
    struct listed L = {0};
    f.route = "tri-list";
    f.decision = "escalated";
    T_OK(s->iface->list_requests(s->ctx, &f, collect, &L, &err), &err);
    T_EQ_INT(L.n, 3); /* 4, 3, 0: oldest first */
    T_EQ_STR(L.ids[0], id[4]);
    T_EQ_STR(L.ids[1], id[3]);
    T_EQ_STR(L.ids[2], id[0]);
    T_EQ_STR(L.fb[1], "spam");
    T_EQ_STR(L.fb[0], "-");
    /* with feedback only / without */
    memset(&L, 0, sizeof L);
    f.has_feedback = 1;
    T_OK(s->iface->list_requests(s->ctx, &f, collect, &L, &err), &err);
    T_EQ_INT(L.n, 1);
    T_EQ_STR(L.ids[0], id[3]);
    memset(&L, 0, sizeof L);
    f.has_feedback = 0;
    T_OK(s->iface->list_requests(s->ctx, &f, collect, &L, &err), &err);
    T_EQ_INT(L.n, 2);
    /* since: rows at or after the timestamp of request 3 */
    memset(&L, 0, sizeof L);
    f.has_feedback = -1;
    f.since_ms = 1800000000000LL + 2000;
    T_OK(s->iface->list_requests(s->ctx, &f, collect, &L, &err), &err);
    T_EQ_INT(L.n, 2);
    T_EQ_STR(L.ids[1], id[0]);
    /* any decision on the route; a limit; a callback that stops */
    memset(&L, 0, sizeof L);
    f = sl_store_filter_default();
    f.route = "tri-list";
    T_OK(s->iface->list_requests(s->ctx, &f, collect, &L, &err), &err);
    T_EQ_INT(L.n, 5);
    memset(&L, 0, sizeof L);
    f.limit = 2;
    T_OK(s->iface->list_requests(s->ctx, &f, collect, &L, &err), &err);
    T_EQ_INT(L.n, 2);
    T_EQ_STR(L.ids[0], id[5]);
    memset(&L, 0, sizeof L);
    f.limit = 0;
    L.stop_after = 3;
    T_EQ_INT(s->iface->list_requests(s->ctx, &f, collect, &L, &err), 42);
    T_EQ_INT(L.n, 3);
    /* nothing matches: no call, no error */
    memset(&L, 0, sizeof L);
    f.route = "no-such-route";
    T_OK(s->iface->list_requests(s->ctx, &f, collect, &L, &err), &err);
    T_EQ_INT(L.n, 0);
}

static void store_lists_requests_by_route_decision_time_and_feedback(void)
{
    struct sl_store s;
    struct sl_err err = {0};
    struct sl_store_params p = sl_store_default_params();
    p.input = SL_STORE_INPUT_STORE;
    T_OK(sl_store_sqlite_open(&s, fresh_db("store_list.db"), &p, &err), &err);
    if (!s.ctx) return;
    check_listing(&s, "sq");
    /* the inputs come back as stored */
    struct sl_store_filter f = sl_store_filter_default();
    struct listed L = {0};
    f.route = "other-list";
    T_OK(s.iface->list_requests(s.ctx, &f, collect, &L, &err), &err);
    T_EQ_INT(L.n, 1);
    s.iface->close(s.ctx);
}

/* ================================================================ PostgreSQL */

/* A throw-away PostgreSQL cluster (tests/support/pg_server.c), started
 * by the test and stopped at the end of main. test_local_backend uses
 * another port, so both may run at once. */
static struct pg_server pg;

static void store_postgres_behaves_like_sqlite(void)
{
    int st = pg_server_start(&pg, 54329);
    if (st == 0) {
        t_skip("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb)");
        return;
    }
    if (st < 0) {
        T_FAIL_AT("could not start PostgreSQL in %s (its initdb.log / server.log above)", pg.dir);
        return;
    }
    const char *conn = pg.conninfo;
    struct sl_store s;
    struct sl_err err = {0};
    struct sl_store_params p = sl_store_default_params();
    p.input = SL_STORE_INPUT_STORE;
    T_OK(sl_store_pg_open(&s, conn, &p, &err), &err);
    if (!s.ctx) return;
    T_EQ_STR(s.iface->kind, "postgres");
    struct sl_store_request r = sample("pg-1");
    T_OK(s.iface->log_request(s.ctx, &r, &err), &err);
    T_EQ_INT(s.iface->log_request(s.ctx, &r, &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "already") != NULL);
    struct sl_store_row row;
    T_OK(s.iface->get_request(s.ctx, "pg-1", &row, &err), &err);
    T_EQ_STR(row.reason, "confidence 0.41 < 0.70");
    T_NEAR(row.confidence, 0.93, 1e-12);
    T_NEAR(row.cost, 0.00048, 1e-15);
    T_EQ_INT(row.ts_ms, 1700000000000LL);
    T_EQ_INT(row.n_stages, 3);
    T_EQ_STR(row.stages[2].name, "store");
    T_EQ_STR(row.input, "user: my card was charged twice");
    T_TRUE(row.input_sha256 != NULL && strlen(row.input_sha256) == 64);
    sl_store_row_free(&row);
    T_EQ_INT(s.iface->feedback(s.ctx, "pg-404", "x", &err), SL_ENOTFOUND);
    T_OK(s.iface->feedback(s.ctx, "pg-1", "shipping", &err), &err);
    T_OK(s.iface->feedback(s.ctx, "pg-1", "billing", &err), &err);
    T_OK(s.iface->get_request(s.ctx, "pg-1", &row, &err), &err);
    T_EQ_STR(row.feedback, "billing");
    sl_store_row_free(&row);
    r = sample("pg-2");
    r.confidence = -1;
    r.route = "summarize";
    r.ts_ms = 1700000000000LL + 86400000LL;
    T_OK(s.iface->log_request(s.ctx, &r, &err), &err);
    struct sl_store_ledger l = {"pg-2", r.ts_ms, "summarize", "large", "big-1",
                                "api",  10,      2,           0,       0.25};
    T_OK(s.iface->ledger_add(s.ctx, &l, &err), &err);
    int64_t n = 0;
    T_OK(s.iface->costs(s.ctx, SL_STORE_BY_DAY, 0, count_rows, &n, &err), &err);
    T_EQ_INT(n, 2);
    check_listing(&s, "pgl");
    s.iface->close(s.ctx);
    /* reopening runs no migration again and keeps the rows */
    T_OK(sl_store_pg_open(&s, conn, &p, &err), &err);
    if (!s.ctx) return;
    T_OK(s.iface->get_request(s.ctx, "pg-2", &row, &err), &err);
    T_NEAR(row.confidence, -1, 0);
    sl_store_row_free(&row);
    s.iface->close(s.ctx);
    struct sl_store bad;
    T_EQ_INT(sl_store_pg_open(&bad, "host=/nonexistent port=1 user=x dbname=y connect_timeout=2",
                              &p, &err),
             SL_EIO);
    T_TRUE(strstr(err.msg, "connect") != NULL);
}

int main(void)
{
    T_RUN(store_round_trips_a_request);
    T_RUN(store_hashes_or_drops_the_input_by_config);
    T_RUN(store_rejects_duplicate_and_missing_ids);
    T_RUN(store_records_and_replaces_feedback);
    T_RUN(store_reopens_with_data_and_uses_wal);
    T_RUN(store_refuses_a_file_that_is_not_a_database);
    T_RUN(store_write_failing_at_each_step_leaves_no_partial_request);
    T_RUN(store_takes_concurrent_writers);
    T_RUN(store_lists_requests_by_route_decision_time_and_feedback);
    T_RUN(store_postgres_behaves_like_sqlite);
    pg_server_stop(&pg);
    const char *dbs[] = {"store_rt.db",    "store_in0.db",    "store_in1.db",    "store_in2.db",
                         "store_dup.db",   "store_fb.db",     "store_reopen.db", "store_junk.db",
                         "store_fault.db", "store_threads.db"};
    for (size_t k = 0; k < sizeof dbs / sizeof *dbs; k++)
        rm_db(t_tmp_path(dbs[k]));
    return t_done();
}
