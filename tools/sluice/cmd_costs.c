/*
 * cmd_costs.c - `sluice costs`: what the traffic in a request log cost, by
 * route, model or day, against sending everything to the large model, and
 * the whole cost with infrastructure and fixed monthly costs (tools layer).
 */
#define _GNU_SOURCE /* strptime, timegm */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "config/config.h"
#include "store/costs.h"
#include "store/store.h"

static const char *costs_usage =
    "usage: sluice costs --db FILE [--since DATE] [--by route|model|day] [--config FILE]\n"
    "                    [--large-in PRICE] [--large-out PRICE] [--infra-per-hour PRICE]\n"
    "                    [--fixed NAME=AMOUNT]... [--currency CODE] [--json]\n"
    "Cost of the requests in a sluice request log (SQLite), grouped by route, model or\n"
    "day (UTC): API spend and infrastructure from the ledger; 'all_large' is what the\n"
    "same requests would have cost on the large model (their tokens x --large-in/out\n"
    "per million tokens); fixed monthly costs are prorated over the period (--since or\n"
    "the first request, to now). --config reads the 'costs:' section of a YAML file: the\n"
    "server's config (sluice serve) or a file of that section alone (docs/router.md);\n"
    "flags override it. DATE is YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS (UTC).\n";

/* Is path a whole server config (sluice serve's YAML) without a costs:
 * section? Then the costs are the defaults. */
static bool server_config_without_costs(const char *path)
{
    struct sl_config sc;
    struct sl_err e = {0};
    bool yes = !sl_config_init(&sc, &e) && !sl_config_load(&sc, path, &e) && !sc.costs_yaml;
    sl_config_free(&sc);
    return yes;
}

/* "YYYY-MM-DD[THH:MM[:SS]]" (UTC) -> ms since the epoch; -1 if malformed. */
static long long parse_date(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(s, "%Y-%m-%d", &tm);
    if (!end) return -1;
    if (*end == 'T' || *end == ' ') {
        const char *e2 = strptime(end + 1, "%H:%M:%S", &tm);
        if (!e2) e2 = strptime(end + 1, "%H:%M", &tm);
        if (!e2) return -1;
        end = e2;
    }
    if (*end == 'Z') end++;
    if (*end) return -1;
    time_t t = timegm(&tm);
    return t < 0 ? -1 : (long long)t * 1000;
}

int cmd_costs(int argc, char **argv)
{
    const char *db = NULL, *since = NULL, *by_s = "route", *config = NULL, *currency = NULL;
    double large_in = -1, large_out = -1, infra = -1;
    bool json = false;
    struct cli_list fixed = {0};
    const struct cli_opt opts[] = {
        {NULL, "--db", CLI_STR, &db, 0, 0},
        {NULL, "--since", CLI_STR, &since, 0, 0},
        {NULL, "--by", CLI_STR, &by_s, 0, 0},
        {NULL, "--config", CLI_STR, &config, 0, 0},
        {NULL, "--large-in", CLI_FLOAT, &large_in, 0, 1e9},
        {NULL, "--large-out", CLI_FLOAT, &large_out, 0, 1e9},
        {NULL, "--infra-per-hour", CLI_FLOAT, &infra, 0, 1e9},
        {NULL, "--fixed", CLI_LIST, &fixed, 0, 0},
        {NULL, "--currency", CLI_STR, &currency, 0, 0},
        {NULL, "--json", CLI_FLAG, &json, 0, 0},
    };
    int np = 0;
    int rc =
        cli_parse("costs", costs_usage, argc, argv, opts, sizeof opts / sizeof *opts, NULL, 0, &np);
    if (rc) return rc < 0 ? 0 : rc;
    if (!db) return cli_usage("costs", "--db FILE is required");
    enum sl_store_group by;
    if (!strcmp(by_s, "route"))
        by = SL_STORE_BY_ROUTE;
    else if (!strcmp(by_s, "model"))
        by = SL_STORE_BY_MODEL;
    else if (!strcmp(by_s, "day"))
        by = SL_STORE_BY_DAY;
    else
        return cli_usage("costs", "--by must be route, model or day, not '%s'", by_s);
    long long since_ms = 0;
    if (since && (since_ms = parse_date(since)) < 0)
        return cli_usage("costs", "--since '%s': expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS",
                         since);
    if (currency && (strlen(currency) == 0 || strlen(currency) > 7))
        return cli_usage("costs", "--currency must be 1-7 characters");

    struct sl_err err = {0};
    struct sl_cost_config cc;
    sl_cost_config_default(&cc);
    if (config && sl_cost_config_load(&cc, config, &err)) {
        if (!server_config_without_costs(config))
            return cli_fail(&err, "the file needs a 'costs:' mapping (docs/router.md)");
        sl_cost_config_default(&cc);
    }
    if (large_in >= 0) cc.large_in_per_mtok = large_in;
    if (large_out >= 0) cc.large_out_per_mtok = large_out;
    if (infra >= 0) cc.infra_per_hour = infra;
    if (currency) snprintf(cc.currency, sizeof cc.currency, "%s", currency);
    for (size_t k = 0; k < fixed.n; k++)
        if (sl_cost_config_add_fixed(&cc, fixed.v[k], &err))
            return cli_usage("costs", "--fixed %s: expected NAME=AMOUNT", fixed.v[k]);

    if (access(db, R_OK) != 0) {
        sl_err_set(&err, SL_EIO, "costs: %s: no such database", db);
        return cli_fail(&err, "give the request log written by sluice serve (store.path)");
    }
    struct sl_store st;
    struct sl_store_params sp = sl_store_default_params();
    if (sl_store_sqlite_open(&st, db, &sp, &err))
        return cli_fail(&err, "is this a sluice request log?");
    struct sl_cost_report r;
    long long now_ms = (long long)time(NULL) * 1000;
    rc = sl_cost_report_build(&st, &cc, by, since_ms, now_ms, &r, &err);
    st.iface->close(st.ctx);
    if (rc) return cli_fail(&err, NULL);
    if (json)
        sl_cost_report_print_json(stdout, &r, &cc, by);
    else
        sl_cost_report_print(stdout, &r, &cc, by);
    if (!json && cc.large_in_per_mtok == 0 && cc.large_out_per_mtok == 0)
        fprintf(stderr,
                "hint: give --large-in/--large-out (or costs.large_*_per_mtok) to see savings\n");
    sl_cost_report_free(&r);
    return 0;
}
