/*
 * costs.h - the cost configuration and the cost report of `sluice costs`
 * (store layer).
 *
 * The configuration is a plain struct with a loader, so the server's
 * config module can fill it from its own YAML table later:
 *
 *   costs:
 *     currency: USD
 *     large_input_per_mtok: 3.0     # the large backend's prices: the baseline
 *     large_output_per_mtok: 15.0
 *     infra_per_hour: 0.40          # machine price; unset: the ledger's infra costs
 *     fixed_monthly:                # declared monthly costs, prorated over the period
 *       engineering: 2000
 *       maintenance: 300
 *
 * The report reads the store: per group (route, model or day) the request
 * count, tokens, API spend and infrastructure cost from the ledger, and the
 * baseline (each request's tokens × the large backend's prices: what sending
 * everything to the large model would have cost); then the whole cost
 * including fixed costs.
 */
#ifndef SL_COSTS_H
#define SL_COSTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/err.h"
#include "store/store.h"

#define SL_COST_MAX_FIXED 16
#define SL_COST_NAME_MAX 48
#define SL_COST_DAYS_PER_MONTH 30.436875 /* mean Gregorian month */

struct sl_cost_config {
    char currency[8];          /* default "USD" */
    double large_in_per_mtok;  /* per million input tokens; default 0 */
    double large_out_per_mtok; /* per million output tokens; default 0 */
    double infra_per_hour;     /* < 0 (default): use the ledger's infra costs */
    struct {
        char name[SL_COST_NAME_MAX];
        double monthly;
    } fixed[SL_COST_MAX_FIXED];
    size_t n_fixed;
};

void sl_cost_config_default(struct sl_cost_config *c);

/* Parses YAML text: a top-level "costs:" mapping or the mapping itself.
 * Keys not listed above are errors (with their line). */
int sl_cost_config_parse(struct sl_cost_config *c, const char *text, size_t len,
                         struct sl_err *err);
int sl_cost_config_load(struct sl_cost_config *c, const char *path, struct sl_err *err);
/* Adds or replaces one fixed cost from "NAME=AMOUNT" (a CLI flag). */
int sl_cost_config_add_fixed(struct sl_cost_config *c, const char *name_eq_amount,
                             struct sl_err *err);

struct sl_cost_line {
    char key[64];
    int64_t n_requests, tokens_in, tokens_out;
    double api, infra, machine_ms;
    double baseline; /* all to the large model */
    double savings;  /* baseline - (api + infra) */
};

struct sl_cost_report {
    struct sl_cost_line *lines; /* malloc'd */
    size_t n;
    struct sl_cost_line total;
    int64_t start_ms, end_ms; /* the period covered */
    double days;              /* its length */
    double fixed;             /* fixed monthly costs prorated over the period */
    double whole;             /* api + infra + fixed */
    double per_request;       /* whole / requests (0 if none) */
    double net_savings;       /* baseline - whole */
};

/* Builds the report for rows at or after since_ms, up to now_ms (the end of
 * the period for prorating fixed costs). */
int sl_cost_report_build(const struct sl_store *s, const struct sl_cost_config *c,
                         enum sl_store_group by, int64_t since_ms, int64_t now_ms,
                         struct sl_cost_report *out, struct sl_err *err);
void sl_cost_report_free(struct sl_cost_report *r);

/* Prints the report as an aligned table and a summary. */
void sl_cost_report_print(FILE *f, const struct sl_cost_report *r, const struct sl_cost_config *c,
                          enum sl_store_group by);
/* Prints it as one JSON object. */
void sl_cost_report_print_json(FILE *f, const struct sl_cost_report *r,
                               const struct sl_cost_config *c, enum sl_store_group by);

#endif
