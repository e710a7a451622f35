/*
 * test_costs.c - the cost configuration loader and the report behind
 * `sluice costs` (src/store/costs.c), on a small known log, and the
 * command itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/costs.h"
#include "store/store.h"
#include "test.h"

#define DAY1 1767225600000LL /* 2026-01-01T00:00:00Z */
#define DAY_MS 86400000LL

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

static void costs_config_parses_the_yaml_section(void)
{
    const char *y = "server:\n  port: 8080\n"
                    "costs:\n"
                    "  currency: EUR\n"
                    "  large_input_per_mtok: 3.0\n"
                    "  large_output_per_mtok: 15\n"
                    "  infra_per_hour: 0.4\n"
                    "  fixed_monthly:\n"
                    "    engineering: 2000\n"
                    "    maintenance: 300.5\n";
    struct sl_cost_config c;
    struct sl_err err = {0};
    sl_cost_config_default(&c);
    T_OK(sl_cost_config_parse(&c, y, strlen(y), &err), &err);
    T_EQ_STR(c.currency, "EUR");
    T_NEAR(c.large_in_per_mtok, 3.0, 0);
    T_NEAR(c.large_out_per_mtok, 15.0, 0);
    T_NEAR(c.infra_per_hour, 0.4, 0);
    T_EQ_INT(c.n_fixed, 2);
    T_EQ_STR(c.fixed[1].name, "maintenance");
    T_NEAR(c.fixed[1].monthly, 300.5, 0);
    /* a flag replaces a declared one and adds new ones */
    T_OK(sl_cost_config_add_fixed(&c, "engineering=2500", &err), &err);
    T_OK(sl_cost_config_add_fixed(&c, "hosting=99", &err), &err);
    T_EQ_INT(c.n_fixed, 3);
    T_NEAR(c.fixed[0].monthly, 2500, 0);
    T_EQ_INT(sl_cost_config_add_fixed(&c, "oops", &err), SL_EINVAL);
    T_EQ_INT(sl_cost_config_add_fixed(&c, "x=-3", &err), SL_EINVAL);
    /* the section alone works too */
    sl_cost_config_default(&c);
    T_OK(sl_cost_config_parse(&c, "large_input_per_mtok: 1\n", 24, &err), &err);
    T_NEAR(c.large_in_per_mtok, 1, 0);
    T_NEAR(c.infra_per_hour, -1, 0);
}

static void costs_config_errors_name_the_line(void)
{
    struct sl_cost_config c;
    struct sl_err err = {0};
    sl_cost_config_default(&c);
    const char *y1 = "costs:\n  large_input_per_mtok: 3\n  lrage_output_per_mtok: 15\n";
    T_EQ_INT(sl_cost_config_parse(&c, y1, strlen(y1), &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "line 3") != NULL && strstr(err.msg, "lrage_output_per_mtok") != NULL);
    const char *y2 = "costs:\n  infra_per_hour: cheap\n";
    T_EQ_INT(sl_cost_config_parse(&c, y2, strlen(y2), &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "cheap") != NULL);
    const char *y3 = "costs: [1, 2\n";
    T_EQ_INT(sl_cost_config_parse(&c, y3, strlen(y3), &err), SL_EFORMAT);
    const char *y4 = "costs:\n  fixed_monthly: 12\n";
    T_EQ_INT(sl_cost_config_parse(&c, y4, strlen(y4), &err), SL_EFORMAT);
    T_EQ_INT(sl_cost_config_load(&c, "/nonexistent/costs.yaml", &err), SL_EIO);
}

/* Three requests over two days: two local, one escalated. */
static void fill(struct sl_store *s)
{
    struct sl_err err = {0};
    struct sl_store_request r;
    memset(&r, 0, sizeof r);
    r.id = "r1", r.ts_ms = DAY1 + 1000, r.route = "triage", r.model = "small-q4";
    r.decision = "local", r.tokens_in = 1000, r.tokens_out = 10, r.confidence = -1;
    T_OK(s->iface->log_request(s->ctx, &r, &err), &err);
    r.id = "r2", r.ts_ms = DAY1 + 2000, r.model = "big-1", r.decision = "escalated";
    r.tokens_in = 2000, r.tokens_out = 100;
    T_OK(s->iface->log_request(s->ctx, &r, &err), &err);
    r.id = "r3", r.ts_ms = DAY1 + DAY_MS + 5000, r.route = "summarize", r.model = "small-q4";
    r.decision = "local", r.tokens_in = 500, r.tokens_out = 200;
    T_OK(s->iface->log_request(s->ctx, &r, &err), &err);
    struct sl_store_ledger l[] = {
        {"r1", DAY1 + 1000, "triage", "local", "small-q4", "infra", 1000, 10, 360000, 0.04},
        {"r2", DAY1 + 2000, "triage", "local", "small-q4", "infra", 2000, 5, 36000, 0.004},
        {"r2", DAY1 + 2000, "triage", "large", "big-1", "api", 2000, 100, 0, 0.0075},
        {"r3", DAY1 + DAY_MS + 5000, "summarize", "local", "small-q4", "infra", 500, 200, 180000,
         0.02},
    };
    for (size_t k = 0; k < 4; k++)
        T_OK(s->iface->ledger_add(s->ctx, &l[k], &err), &err);
    struct sl_store_ledger bad = {"r1", 0, "x", "y", "z", "gpu", 0, 0, 0, 0};
    T_EQ_INT(s->iface->ledger_add(s->ctx, &bad, &err), SL_EINVAL);
}

static const char *make_db(const char *name)
{
    const char *p = t_tmp_path(name);
    char side[1100];
    unlink(p);
    snprintf(side, sizeof side, "%s-wal", p);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", p);
    unlink(side);
    struct sl_store s;
    struct sl_err err = {0};
    if (sl_store_sqlite_open(&s, p, NULL, &err)) {
        T_FAIL_AT("%s", err.msg);
        return NULL;
    }
    fill(&s);
    s.iface->close(s.ctx);
    return p;
}

static void costs_report_by_route_with_baseline_and_fixed_costs(void)
{
    const char *path = make_db("costs_route.db");
    if (!path) return;
    struct sl_store s;
    struct sl_err err = {0};
    T_OK(sl_store_sqlite_open(&s, path, NULL, &err), &err);
    struct sl_cost_config c;
    sl_cost_config_default(&c);
    c.large_in_per_mtok = 3.0;
    c.large_out_per_mtok = 15.0;
    T_OK(sl_cost_config_add_fixed(&c, "engineering=3043.6875", &err), &err); /* 100 per day */
    struct sl_cost_report r;
    T_OK(sl_cost_report_build(&s, &c, SL_STORE_BY_ROUTE, DAY1, DAY1 + 2 * DAY_MS, &r, &err), &err);
    T_EQ_INT(r.n, 2);
    if (r.n == 2) {
        const struct sl_cost_line *sum = &r.lines[0], *tri = &r.lines[1];
        T_EQ_STR(sum->key, "summarize");
        T_EQ_INT(sum->n_requests, 1);
        T_NEAR(sum->infra, 0.02, 1e-12);
        T_NEAR(sum->baseline, 0.0045, 1e-12);
        T_NEAR(sum->savings, 0.0045 - 0.02, 1e-12);
        T_EQ_STR(tri->key, "triage");
        T_EQ_INT(tri->n_requests, 2);
        T_EQ_INT(tri->tokens_in, 3000);
        T_EQ_INT(tri->tokens_out, 110);
        T_NEAR(tri->api, 0.0075, 1e-12);
        T_NEAR(tri->infra, 0.044, 1e-12);
        T_NEAR(tri->baseline, 0.01065, 1e-12);
    }
    T_EQ_INT(r.total.n_requests, 3);
    T_NEAR(r.total.baseline, 0.01515, 1e-12);
    T_NEAR(r.days, 2.0, 1e-9);
    T_NEAR(r.fixed, 200.0, 1e-9);
    T_NEAR(r.whole, 200.0 + 0.0075 + 0.064, 1e-9);
    T_NEAR(r.per_request, r.whole / 3, 1e-12);
    T_NEAR(r.net_savings, 0.01515 - r.whole, 1e-9);
    sl_cost_report_free(&r);
    /* infra from the machine time and a per-hour price instead of the ledger */
    c.infra_per_hour = 1.0;
    T_OK(sl_cost_report_build(&s, &c, SL_STORE_BY_ROUTE, DAY1, DAY1 + 2 * DAY_MS, &r, &err), &err);
    if (r.n == 2) T_NEAR(r.lines[1].infra, 0.11, 1e-12);
    sl_cost_report_free(&r);
    s.iface->close(s.ctx);
}

static void costs_report_by_model_and_day_and_since(void)
{
    const char *path = make_db("costs_model.db");
    if (!path) return;
    struct sl_store s;
    struct sl_err err = {0};
    T_OK(sl_store_sqlite_open(&s, path, NULL, &err), &err);
    struct sl_cost_config c;
    sl_cost_config_default(&c);
    struct sl_cost_report r;
    T_OK(sl_cost_report_build(&s, &c, SL_STORE_BY_MODEL, 0, DAY1 + 2 * DAY_MS, &r, &err), &err);
    T_EQ_INT(r.n, 2);
    if (r.n == 2) {
        T_EQ_STR(r.lines[0].key, "big-1");
        T_EQ_INT(r.lines[0].n_requests, 1);
        T_NEAR(r.lines[0].api, 0.0075, 1e-12);
        T_EQ_STR(r.lines[1].key, "small-q4");
        T_EQ_INT(r.lines[1].n_requests, 2);
        T_NEAR(r.lines[1].infra, 0.064, 1e-12);
    }
    T_NEAR(r.fixed, 0, 0);
    sl_cost_report_free(&r);
    T_OK(sl_cost_report_build(&s, &c, SL_STORE_BY_DAY, 0, DAY1 + 2 * DAY_MS, &r, &err), &err);
    T_EQ_INT(r.n, 2);
    if (r.n == 2) {
        T_EQ_STR(r.lines[0].key, "2026-01-01");
        T_EQ_INT(r.lines[0].n_requests, 2);
        T_EQ_STR(r.lines[1].key, "2026-01-02");
    }
    sl_cost_report_free(&r);
    T_OK(sl_cost_report_build(&s, &c, SL_STORE_BY_DAY, DAY1 + DAY_MS, DAY1 + 2 * DAY_MS, &r, &err),
         &err);
    T_EQ_INT(r.n, 1);
    T_EQ_INT(r.total.n_requests, 1);
    sl_cost_report_free(&r);
    s.iface->close(s.ctx);
}

/* Runs the sluice binary; returns its exit code and stdout in out. */
static int run(const char *args, char *out, size_t n)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s 2>/dev/null", SL_TEST_BINARY, args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t got = fread(out, 1, n - 1, p);
    out[got] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void costs_command_prints_a_table_and_json(void)
{
    const char *path = make_db("costs_cli.db");
    if (!path) return;
    static char out[16384];
    char args[1400];
    snprintf(args, sizeof args,
             "costs --db %s --by route --large-in 3 --large-out 15 --fixed eng=1000", path);
    T_EQ_INT(run(args, out, sizeof out), 0);
    T_TRUE(strstr(out, "triage") != NULL);
    T_TRUE(strstr(out, "all to the large model") != NULL);
    T_TRUE(strstr(out, "fixed: eng") != NULL);
    snprintf(args, sizeof args, "costs --db %s --by day --json --since 2026-01-02", path);
    T_EQ_INT(run(args, out, sizeof out), 0);
    T_TRUE(strstr(out, "\"key\":\"2026-01-02\",\"requests\":1") != NULL);
    T_TRUE(strstr(out, "2026-01-01") == NULL);
    snprintf(args, sizeof args, "costs --db %s --by week", path);
    T_EQ_INT(run(args, out, sizeof out), 2);
    snprintf(args, sizeof args, "costs --db %s --since yesterday", path);
    T_EQ_INT(run(args, out, sizeof out), 2);
    T_EQ_INT(run("costs", out, sizeof out), 2);
    T_EQ_INT(run("costs --db /nonexistent/x.db", out, sizeof out), 1);
}

int main(void)
{
    T_RUN(costs_config_parses_the_yaml_section);
    T_RUN(costs_config_errors_name_the_line);
    T_RUN(costs_report_by_route_with_baseline_and_fixed_costs);
    T_RUN(costs_report_by_model_and_day_and_since);
    T_RUN(costs_command_prints_a_table_and_json);
    const char *dbs[] = {"costs_route.db", "costs_model.db", "costs_cli.db"};
    for (size_t k = 0; k < sizeof dbs / sizeof *dbs; k++)
        rm_db(t_tmp_path(dbs[k]));
    return t_done();
}
