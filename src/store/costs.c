/*
 * costs.c - cost configuration (YAML "costs:" section) and the report of
 * `sluice costs` over a store (store layer). See costs.h.
 */
#include "store/costs.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* Largest cost config file we read. */
#define COST_CONFIG_MAX (1u << 20)

void sl_cost_config_default(struct sl_cost_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->currency, sizeof c->currency, "USD");
    c->infra_per_hour = -1;
}

static int parse_money(const char *s, double *out, const char *what, int line, struct sl_err *err)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v) || v < 0 || v > 1e12)
        return sl_err_set(err, SL_EINVAL, "costs line %d: %s: '%s' is not an amount >= 0", line,
                          what, s);
    *out = v;
    return 0;
}

static int set_fixed(struct sl_cost_config *c, const char *name, size_t nlen, double v, int line,
                     struct sl_err *err)
{
    if (nlen == 0 || nlen >= SL_COST_NAME_MAX)
        return sl_err_set(err, SL_EINVAL, "costs line %d: fixed cost name must be 1-%d bytes", line,
                          SL_COST_NAME_MAX - 1);
    for (size_t k = 0; k < c->n_fixed; k++)
        if (strlen(c->fixed[k].name) == nlen && !memcmp(c->fixed[k].name, name, nlen)) {
            c->fixed[k].monthly = v;
            return 0;
        }
    if (c->n_fixed == SL_COST_MAX_FIXED)
        return sl_err_set(err, SL_ERANGE, "costs line %d: more than %d fixed costs", line,
                          SL_COST_MAX_FIXED);
    memcpy(c->fixed[c->n_fixed].name, name, nlen);
    c->fixed[c->n_fixed].name[nlen] = 0;
    c->fixed[c->n_fixed].monthly = v;
    c->n_fixed++;
    return 0;
}

int sl_cost_config_add_fixed(struct sl_cost_config *c, const char *s, struct sl_err *err)
{
    const char *eq = s ? strchr(s, '=') : NULL;
    if (!eq) return sl_err_set(err, SL_EINVAL, "%s: '%s' is not NAME=AMOUNT", __func__, s ? s : "");
    double v;
    int rc = parse_money(eq + 1, &v, "fixed cost", 0, err);
    if (rc) return rc;
    return set_fixed(c, s, (size_t)(eq - s), v, 0, err);
}

static const char *scal(yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}
static int line_of(yaml_node_t *n)
{
    return (int)n->start_mark.line + 1;
}

static int walk_costs(yaml_document_t *doc, yaml_node_t *map, struct sl_cost_config *c,
                      struct sl_err *err)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return sl_err_set(err, SL_EFORMAT, "costs line %d: the costs section must be a mapping",
                          map ? line_of(map) : 0);
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        yaml_node_t *v = yaml_document_get_node(doc, p->value);
        if (!k || k->type != YAML_SCALAR_NODE || !v)
            return sl_err_set(err, SL_EFORMAT, "costs line %d: keys must be scalars",
                              k ? line_of(k) : 0);
        const char *key = scal(k);
        int rc = 0;
        if (!strcmp(key, "fixed_monthly")) {
            if (v->type != YAML_MAPPING_NODE)
                return sl_err_set(err, SL_EFORMAT,
                                  "costs line %d: fixed_monthly must be a mapping"
                                  " of name: amount",
                                  line_of(v));
            for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top;
                 q++) {
                yaml_node_t *fk = yaml_document_get_node(doc, q->key);
                yaml_node_t *fv = yaml_document_get_node(doc, q->value);
                if (!fk || !fv || fk->type != YAML_SCALAR_NODE || fv->type != YAML_SCALAR_NODE)
                    return sl_err_set(err, SL_EFORMAT,
                                      "costs line %d: fixed_monthly entries are"
                                      " name: amount",
                                      line_of(v));
                double amt;
                if ((rc = parse_money(scal(fv), &amt, scal(fk), line_of(fv), err))) return rc;
                if ((rc = set_fixed(c, scal(fk), strlen(scal(fk)), amt, line_of(fk), err)))
                    return rc;
            }
            continue;
        }
        if (v->type != YAML_SCALAR_NODE)
            return sl_err_set(err, SL_EFORMAT, "costs line %d: %s must be a scalar", line_of(v),
                              key);
        if (!strcmp(key, "currency")) {
            if (strlen(scal(v)) == 0 || strlen(scal(v)) >= sizeof c->currency)
                return sl_err_set(err, SL_EINVAL, "costs line %d: currency must be 1-7 bytes",
                                  line_of(v));
            snprintf(c->currency, sizeof c->currency, "%s", scal(v));
        } else if (!strcmp(key, "large_input_per_mtok")) {
            rc = parse_money(scal(v), &c->large_in_per_mtok, key, line_of(v), err);
        } else if (!strcmp(key, "large_output_per_mtok")) {
            rc = parse_money(scal(v), &c->large_out_per_mtok, key, line_of(v), err);
        } else if (!strcmp(key, "infra_per_hour")) {
            rc = parse_money(scal(v), &c->infra_per_hour, key, line_of(v), err);
        } else {
            return sl_err_set(
                err, SL_EINVAL,
                "costs line %d: unknown key '%s' (known: currency, large_input_per_mtok,"
                " large_output_per_mtok, infra_per_hour, fixed_monthly)",
                line_of(k), key);
        }
        if (rc) return rc;
    }
    return 0;
}

int sl_cost_config_parse(struct sl_cost_config *c, const char *text, size_t len, struct sl_err *err)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    int rc = 0;
    if (len > COST_CONFIG_MAX)
        return sl_err_set(err, SL_ERANGE, "%s: %zu bytes, at most %u", __func__, len,
                          COST_CONFIG_MAX);
    if (!yaml_parser_initialize(&parser))
        return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = sl_err_set(err, SL_EFORMAT, "costs line %d: %s", (int)parser.problem_mark.line + 1,
                        parser.problem ? parser.problem : "bad YAML");
        yaml_parser_delete(&parser);
        return rc;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        rc = 0; /* empty file: defaults */
    } else if (root->type != YAML_MAPPING_NODE) {
        rc =
            sl_err_set(err, SL_EFORMAT, "costs line %d: the file must be a mapping", line_of(root));
    } else {
        /* a "costs:" key selects the section; otherwise the root is it */
        yaml_node_t *sec = NULL;
        for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = yaml_document_get_node(&doc, p->key);
            if (k && k->type == YAML_SCALAR_NODE && !strcmp(scal(k), "costs"))
                sec = yaml_document_get_node(&doc, p->value);
        }
        rc = walk_costs(&doc, sec ? sec : root, c, err);
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

int sl_cost_config_load(struct sl_cost_config *c, const char *path, struct sl_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return sl_err_set(err, SL_EIO, "%s: %s: %s", __func__, path, strerror(errno));
    char *buf = malloc(COST_CONFIG_MAX + 1);
    if (!buf) {
        fclose(f);
        return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    }
    size_t n = fread(buf, 1, COST_CONFIG_MAX + 1, f);
    int rc;
    if (ferror(f))
        rc = sl_err_set(err, SL_EIO, "%s: %s: read error", __func__, path);
    else if (n > COST_CONFIG_MAX)
        rc = sl_err_set(err, SL_ERANGE, "%s: %s is larger than %u bytes", __func__, path,
                        COST_CONFIG_MAX);
    else
        rc = sl_cost_config_parse(c, buf, n, err);
    free(buf);
    fclose(f);
    return rc;
}

/* ================================================================ report */

struct collect {
    struct sl_cost_report *r;
    const struct sl_cost_config *c;
    size_t cap;
    int oom;
};

static int on_row(void *user, const struct sl_store_cost_row *row)
{
    struct collect *col = user;
    struct sl_cost_report *r = col->r;
    if (r->n == col->cap) {
        size_t nc = col->cap ? col->cap * 2 : 16;
        struct sl_cost_line *nl = realloc(r->lines, nc * sizeof *nl);
        if (!nl) {
            col->oom = 1;
            return SL_ENOMEM;
        }
        r->lines = nl, col->cap = nc;
    }
    struct sl_cost_line *l = &r->lines[r->n++];
    memset(l, 0, sizeof *l);
    snprintf(l->key, sizeof l->key, "%s", row->key);
    l->n_requests = row->n_requests;
    l->tokens_in = row->tokens_in;
    l->tokens_out = row->tokens_out;
    l->api = row->api_cost;
    l->machine_ms = row->machine_ms;
    l->infra = col->c->infra_per_hour >= 0 ? row->machine_ms / 3.6e6 * col->c->infra_per_hour
                                           : row->infra_cost;
    l->baseline = (double)row->tokens_in * col->c->large_in_per_mtok / 1e6 +
                  (double)row->tokens_out * col->c->large_out_per_mtok / 1e6;
    l->savings = l->baseline - (l->api + l->infra);
    if (r->start_ms == 0 || (row->first_ms && row->first_ms < r->start_ms))
        r->start_ms = row->first_ms;
    if (row->last_ms > r->end_ms) r->end_ms = row->last_ms;
    return 0;
}

int sl_cost_report_build(const struct sl_store *s, const struct sl_cost_config *c,
                         enum sl_store_group by, int64_t since_ms, int64_t now_ms,
                         struct sl_cost_report *out, struct sl_err *err)
{
    memset(out, 0, sizeof *out);
    struct collect col = {out, c, 0, 0};
    int rc = s->iface->costs(s->ctx, by, since_ms, on_row, &col, err);
    if (rc) {
        if (col.oom) sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
        sl_cost_report_free(out);
        return rc;
    }
    struct sl_cost_line *t = &out->total;
    snprintf(t->key, sizeof t->key, "total");
    for (size_t k = 0; k < out->n; k++) {
        const struct sl_cost_line *l = &out->lines[k];
        t->n_requests += l->n_requests;
        t->tokens_in += l->tokens_in;
        t->tokens_out += l->tokens_out;
        t->api += l->api;
        t->infra += l->infra;
        t->machine_ms += l->machine_ms;
        t->baseline += l->baseline;
        t->savings += l->savings;
    }
    /* the period: from --since (or the first row) to now */
    if (since_ms > 0) out->start_ms = since_ms;
    if (now_ms > out->end_ms) out->end_ms = now_ms;
    if (out->n == 0 && since_ms <= 0) out->start_ms = out->end_ms;
    out->days =
        out->end_ms > out->start_ms ? (double)(out->end_ms - out->start_ms) / 86400000.0 : 0;
    double monthly = 0;
    for (size_t k = 0; k < c->n_fixed; k++)
        monthly += c->fixed[k].monthly;
    out->fixed = monthly * out->days / SL_COST_DAYS_PER_MONTH;
    out->whole = t->api + t->infra + out->fixed;
    out->per_request = t->n_requests ? out->whole / (double)t->n_requests : 0;
    out->net_savings = t->baseline - out->whole;
    return 0;
}

void sl_cost_report_free(struct sl_cost_report *r)
{
    free(r->lines);
    memset(r, 0, sizeof *r);
}

static const char *group_name(enum sl_store_group by)
{
    return by == SL_STORE_BY_MODEL ? "model" : by == SL_STORE_BY_DAY ? "day" : "route";
}

static void print_line(FILE *f, const struct sl_cost_line *l)
{
    double saved_pct = l->baseline > 0 ? 100.0 * l->savings / l->baseline : 0;
    fprintf(f, "%-24s %9lld %12lld %12lld %12.4f %12.4f %10.3f %12.4f %12.4f %7.1f%%\n", l->key,
            (long long)l->n_requests, (long long)l->tokens_in, (long long)l->tokens_out, l->api,
            l->infra, l->machine_ms / 3.6e6, l->baseline, l->savings, saved_pct);
}

void sl_cost_report_print(FILE *f, const struct sl_cost_report *r, const struct sl_cost_config *c,
                          enum sl_store_group by)
{
    fprintf(f, "%-24s %9s %12s %12s %12s %12s %10s %12s %12s %8s\n", group_name(by), "requests",
            "tokens_in", "tokens_out", "api", "infra", "machine_h", "all_large", "savings",
            "saved");
    for (size_t k = 0; k < r->n; k++)
        print_line(f, &r->lines[k]);
    print_line(f, &r->total);
    fprintf(f, "\nperiod: %.2f days; amounts in %s\n", r->days, c->currency);
    fprintf(f, "  API spend                %14.4f\n", r->total.api);
    fprintf(f, "  infrastructure           %14.4f%s\n", r->total.infra,
            c->infra_per_hour >= 0 ? "  (machine time x infra_per_hour)" : "  (from the ledger)");
    for (size_t k = 0; k < c->n_fixed; k++)
        fprintf(f, "  fixed: %-17s %14.4f  (%.2f per month)\n", c->fixed[k].name,
                c->fixed[k].monthly * r->days / SL_COST_DAYS_PER_MONTH, c->fixed[k].monthly);
    fprintf(f, "  whole cost               %14.4f\n", r->whole);
    fprintf(f, "  per request              %14.6f\n", r->per_request);
    fprintf(f, "  all to the large model   %14.4f  (%.4g in / %.4g out per 1M tokens)\n",
            r->total.baseline, c->large_in_per_mtok, c->large_out_per_mtok);
    fprintf(f, "  savings (variable)       %14.4f\n", r->total.savings);
    fprintf(f, "  savings (net of fixed)   %14.4f\n", r->net_savings);
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void json_line(FILE *f, const struct sl_cost_line *l)
{
    fprintf(f, "{\"key\":");
    json_str(f, l->key);
    fprintf(f,
            ",\"requests\":%lld,\"tokens_in\":%lld,\"tokens_out\":%lld,\"api\":%.6f,"
            "\"infra\":%.6f,\"machine_ms\":%.3f,\"all_large\":%.6f,\"savings\":%.6f}",
            (long long)l->n_requests, (long long)l->tokens_in, (long long)l->tokens_out, l->api,
            l->infra, l->machine_ms, l->baseline, l->savings);
}

void sl_cost_report_print_json(FILE *f, const struct sl_cost_report *r,
                               const struct sl_cost_config *c, enum sl_store_group by)
{
    fprintf(f, "{\"by\":\"%s\",\"currency\":", group_name(by));
    json_str(f, c->currency);
    fprintf(f, ",\"days\":%.6f,\"rows\":[", r->days);
    for (size_t k = 0; k < r->n; k++) {
        if (k) fputc(',', f);
        json_line(f, &r->lines[k]);
    }
    fprintf(f, "],\"total\":");
    json_line(f, &r->total);
    fprintf(f, ",\"fixed\":%.6f,\"whole\":%.6f,\"per_request\":%.8f,\"net_savings\":%.6f}\n",
            r->fixed, r->whole, r->per_request, r->net_savings);
}
