/*
 * calib_route.c - a cascade route's threshold chosen from evaluation
 * results with a guarantee, measured on a held-out split, and written back
 * into the YAML config text without disturbing the rest of it (eval
 * layer). See calib_route.h.
 */
#include "eval/calib_route.h"

#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "config/config.h"
#include "eval/replay.h"

/* ==== inputs ============================================================= */

struct sl_calib_params sl_calib_default_params(void)
{
    return (struct sl_calib_params){.target = SL_CALIB_GAP, .gap = 0.02, .max_cost_1k = 0,
                                    .delta = 0.1, .calib_frac = 0.5, .design_frac = 0.2,
                                    .n_grid = 50, .seed = 0};
}

void sl_calib_data_free(struct sl_calib_data *d)
{
    if (!d) return;
    free(d->conf);
    free(d->small_ok);
    free(d->large_ok);
    free(d->cost_small);
    free(d->cost_large);
    free(d->row);
    memset(d, 0, sizeof *d);
}

int sl_calib_data_alloc(struct sl_calib_data *d, size_t n, struct sl_err *err)
{
    memset(d, 0, sizeof *d);
    size_t k = n ? n : 1;
    d->conf = calloc(k, sizeof *d->conf);
    d->small_ok = calloc(k, 1);
    d->large_ok = calloc(k, 1);
    d->cost_small = calloc(k, sizeof *d->cost_small);
    d->cost_large = calloc(k, sizeof *d->cost_large);
    if (!d->conf || !d->small_ok || !d->large_ok || !d->cost_small || !d->cost_large) {
        sl_calib_data_free(d);
        return sl_err_set(err, SL_ENOMEM, "%s: out of memory for %zu examples", __func__, n);
    }
    d->n = n;
    return 0;
}

int sl_calib_data_from_results(struct sl_calib_data *d, const struct sl_results *r,
                               const char *small, const char *large, const char *meta_key,
                               const char *meta_value, struct sl_err *err)
{
    int ts = sl_results_target(r, small), tl = sl_results_target(r, large);
    memset(d, 0, sizeof *d);
    if (ts < 0 || tl < 0)
        return sl_err_set(err, SL_ENOTFOUND,
                          "results have no target '%s' (targets: %s%s%s%s%s)",
                          ts < 0 ? small : large, r->n_targets > 0 ? r->targets[0] : "none",
                          r->n_targets > 1 ? ", " : "", r->n_targets > 1 ? r->targets[1] : "",
                          r->n_targets > 2 ? ", " : "", r->n_targets > 2 ? r->targets[2] : "");
    int mk = meta_key ? sl_results_meta_key(r, meta_key) : -1;
    if (meta_key && mk < 0)
        return sl_err_set(err, SL_ENOTFOUND, "results carry no meta field '%s'", meta_key);
    int rc = sl_calib_data_alloc(d, r->n, err);
    if (rc) return rc;
    if (!(d->row = malloc((r->n ? r->n : 1) * sizeof *d->row))) {
        sl_calib_data_free(d);
        return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    }
    size_t m = 0, skipped = 0, filtered = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (meta_key) {
            const char *v = sl_results_meta(r, i, mk);
            if (!v || strcmp(v, meta_value)) {
                filtered++;
                continue;
            }
        }
        const struct sl_result_cell *s = sl_results_cell(r, i, ts), *l = sl_results_cell(r, i, tl);
        bool s_err = s->present && s->error, l_err = l->present && l->error;
        if (!s->present || !l->present || (!s_err && s->correct < 0) || (!l_err && l->correct < 0)) {
            skipped++;
            continue;
        }
        d->conf[m] = s_err || isnan(s->confidence) ? -INFINITY : s->confidence;
        d->small_ok[m] = !s_err && s->correct == 1;
        d->large_ok[m] = !l_err && l->correct == 1;
        d->cost_small[m] = isnan(s->cost) ? 0 : s->cost;
        d->cost_large[m] = isnan(l->cost) ? 0 : l->cost;
        d->row[m] = i;
        m++;
    }
    d->n = m;
    d->n_skipped = skipped;
    if (m == 0) {
        sl_calib_data_free(d);
        return sl_err_set(err, SL_EINVAL,
                          "no example has results for both '%s' and '%s' with a known \"correct\""
                          " (%zu left out%s)",
                          small, large, skipped, filtered ? " by the task filter too" : "");
    }
    return 0;
}

/* ==== choosing and measuring ============================================= */

void sl_calib_eval(struct sl_calib_eval *e, const struct sl_calib_data *d, const size_t *idx,
                   size_t m, double t)
{
    size_t acc = 0, ok = 0, s_ok = 0, l_ok = 0, s_bad = 0, lost = 0;
    double cost = 0, cs = 0, cl = 0;
    for (size_t k = 0; k < m; k++) {
        size_t i = idx[k];
        bool a = d->conf[i] >= t; /* NaN and -inf never clear a finite t */
        acc += a;
        ok += a ? d->small_ok[i] : d->large_ok[i];
        s_ok += d->small_ok[i];
        l_ok += d->large_ok[i];
        cost += d->cost_small[i] + (a ? 0 : d->cost_large[i]);
        cs += d->cost_small[i];
        cl += d->cost_large[i];
        if (a) {
            s_bad += !d->small_ok[i];
            lost += !d->small_ok[i] && d->large_ok[i];
        }
    }
    double inv = m ? 1.0 / (double)m : NAN;
    *e = (struct sl_calib_eval){
        .n = m,
        .n_accepted = acc,
        .coverage = (double)acc * inv,
        .quality = (double)ok * inv,
        .cost_1k = 1000 * cost * inv,
        .small_error = acc ? (double)s_bad / (double)acc : NAN,
        .loss_rate = acc ? (double)lost / (double)acc : NAN,
        .q_small = (double)s_ok * inv,
        .q_large = (double)l_ok * inv,
        .cost_small_1k = 1000 * cs * inv,
        .cost_large_1k = 1000 * cl * inv,
    };
}

void sl_calib_result_free(struct sl_calib_result *r)
{
    if (!r) return;
    sl_guarantee_free(&r->g);
}

static int cmp_dbl_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

/* A descending grid: grid[j] accepts a share c_j of the design sample,
 * c_j evenly spaced from c_min (> 0) up to 1. */
static int coverage_grid(double *grid, size_t n_grid, double c_min, const double *conf, size_t n)
{
    double *s = malloc(n * sizeof *s);
    if (!s) return SL_ENOMEM;
    memcpy(s, conf, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_dbl_desc);
    double lo = c_min > 0 ? c_min : 1.0 / (double)n_grid;
    for (size_t j = 0; j < n_grid; j++) {
        double c = n_grid > 1 ? lo + (1 - lo) * (double)j / (double)(n_grid - 1) : 1;
        size_t k = (size_t)ceil(c * (double)n);
        grid[j] = s[(k < 1 ? 1 : k > n ? n : k) - 1];
    }
    free(s);
    return 0;
}

int sl_calib_run(struct sl_calib_result *out, const struct sl_calib_data *d,
                 const struct sl_calib_params *p, struct sl_err *err)
{
    size_t *perm = NULL;
    double *grid = NULL, *conf = NULL, *cs = NULL, *cl = NULL;
    uint8_t *loss = NULL, *sok = NULL, *lok = NULL;
    int rc = 0;
    memset(out, 0, sizeof *out);
    out->threshold = INFINITY;
    if (!(p->delta > 0 && p->delta < 1) || !(p->calib_frac > 0 && p->calib_frac < 1) ||
        !(p->design_frac > 0 && p->design_frac < 1) || p->n_grid == 0)
        return sl_err_set(err, SL_EINVAL,
                          "%s: delta %g, calib_frac %g and design_frac %g must be in (0, 1)",
                          __func__, p->delta, p->calib_frac, p->design_frac);
    if (p->target == SL_CALIB_GAP && !(p->gap > 0 && p->gap < 1))
        return sl_err_set(err, SL_EINVAL, "%s: the quality gap %g must be in (0, 1)", __func__,
                          p->gap);
    if (p->target == SL_CALIB_COST && !(p->max_cost_1k > 0))
        return sl_err_set(err, SL_EINVAL, "%s: the cost budget %g must be > 0", __func__,
                          p->max_cost_1k);
    size_t n = d->n, n_part = (size_t)llround((double)n * p->calib_frac);
    size_t n_design = (size_t)llround((double)n_part * p->design_frac);
    if (n_design == 0) n_design = 1;
    if (n_part <= n_design || n_part >= n)
        return sl_err_set(err, SL_EINVAL,
                          "%s: %zu examples are too few for design, calibration and test parts",
                          __func__, n);
    out->n = n;
    out->n_design = n_design;
    out->n_cal = n_part - n_design;
    out->n_test = n - n_part;

    perm = malloc(n * sizeof *perm);
    grid = malloc(p->n_grid * sizeof *grid);
    conf = malloc(n * sizeof *conf);
    cs = malloc(n * sizeof *cs);
    cl = malloc(n * sizeof *cl);
    loss = malloc(n);
    sok = malloc(n);
    lok = malloc(n);
    if (!perm || !grid || !conf || !cs || !cl || !loss || !sok || !lok) {
        rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
        goto out; /* allocation failure */
    }
    sl_eval_permutation(perm, n, p->seed);
    const size_t *design = perm, *cal = perm + n_design, *test = perm + n_part;
    /* the grid: coverage quantiles of the design share's confidences only */
    for (size_t k = 0; k < n_design; k++) {
        double c = d->conf[design[k]];
        conf[k] = isnan(c) ? -INFINITY : c;
    }
    double c_min = 0;
    if (p->target == SL_CALIB_GAP) {
        /* the first candidate must accept enough calibration examples to be
         * certifiable at all: with none lost, (1 - gap)^n <= delta needs
         * n >= ln(1/delta) / gap; three times that leaves room for a few
         * losses. Fixed-sequence testing stops at its first failure, so a
         * grid that starts where almost nothing is accepted certifies nothing. */
        double n_min = SL_MAX(10.0, 3 * log(1 / p->delta) / p->gap);
        c_min = SL_MIN(1.0, n_min / (double)out->n_cal);
    }
    if (coverage_grid(grid, p->n_grid, c_min, conf, n_design)) {
        rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
        goto out; /* allocation failure (n_design > 0 was checked) */
    }
    for (size_t k = 0; k < out->n_cal; k++) {
        size_t i = cal[k];
        conf[k] = isnan(d->conf[i]) ? -INFINITY : d->conf[i];
        sok[k] = d->small_ok[i] != 0;
        lok[k] = d->large_ok[i] != 0;
        loss[k] = !sok[k] && lok[k];
        cs[k] = d->cost_small[i];
        cl[k] = d->cost_large[i];
    }
    if (p->target == SL_CALIB_GAP) {
        rc = sl_guarantee_max_risk(&out->g, conf, loss, out->n_cal, grid, p->n_grid, p->gap,
                                   p->delta, err);
        if (rc) goto out; /* bad input (err set) */
        sl_guarantee_fill_ucb(&out->g);
        out->found = out->g.found;
        out->threshold = out->g.threshold;
        out->bound = out->g.ucb;
        out->cal_coverage = out->g.coverage;
    } else {
        rc = sl_guarantee_budget(&out->b, conf, sok, lok, cs, cl, out->n_cal, grid, p->n_grid,
                                 p->max_cost_1k / 1000, p->delta, err);
        if (rc) goto out; /* bad input (err set) */
        out->found = out->b.found;
        out->threshold = out->b.threshold;
        out->bound = out->found ? 1000 * out->b.cost_ucb : NAN;
        out->cal_coverage = out->b.coverage;
    }
    if (!out->found) out->bound = NAN;
    sl_calib_eval(&out->cal, d, cal, out->n_cal, out->threshold);
    sl_calib_eval(&out->test, d, test, out->n_test, out->threshold);
out:
    free(perm);
    free(grid);
    free(conf);
    free(cs);
    free(cl);
    free(loss);
    free(sok);
    free(lok);
    if (rc) sl_calib_result_free(out);
    return rc;
}

/* ==== YAML text editing ================================================== */

/* libyaml's marks count characters; edits need byte offsets. */
struct ytext {
    const char *s;
    size_t len;
    size_t *byte_of; /* (n_chars + 1) */
    size_t n_chars;
};

static int ytext_init(struct ytext *t, const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) n += ((unsigned char)s[i] & 0xC0) != 0x80;
    t->s = s;
    t->len = len;
    t->n_chars = n;
    t->byte_of = malloc((n + 1) * sizeof *t->byte_of);
    if (!t->byte_of) return SL_ENOMEM;
    size_t c = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) t->byte_of[c++] = i;
    t->byte_of[n] = len;
    return 0;
}

static size_t ybyte(const struct ytext *t, size_t char_index)
{
    return t->byte_of[char_index > t->n_chars ? t->n_chars : char_index];
}

static size_t line_start(const struct ytext *t, size_t b)
{
    while (b > 0 && t->s[b - 1] != '\n') b--;
    return b;
}

/* Byte just past the end of the line holding b (after its '\n'). */
static size_t line_end(const struct ytext *t, size_t b)
{
    while (b < t->len && t->s[b] != '\n') b++;
    return b < t->len ? b + 1 : b;
}

/* The character index where a node's own text ends: its end mark for
 * scalars and flow collections, the furthest child for block ones (whose
 * end mark lies at the next token, past trailing comments). */
static size_t node_end(yaml_document_t *doc, yaml_node_t *nd, int depth)
{
    if (!nd || depth > 64) return 0;
    if (nd->type == YAML_SCALAR_NODE) return nd->end_mark.index;
    bool flow = nd->type == YAML_MAPPING_NODE ? nd->data.mapping.style == YAML_FLOW_MAPPING_STYLE
                                              : nd->data.sequence.style == YAML_FLOW_SEQUENCE_STYLE;
    if (flow) return nd->end_mark.index;
    size_t e = nd->start_mark.index;
    if (nd->type == YAML_MAPPING_NODE) {
        for (yaml_node_pair_t *p = nd->data.mapping.pairs.start; p < nd->data.mapping.pairs.top; p++) {
            size_t k = node_end(doc, yaml_document_get_node(doc, p->key), depth + 1);
            size_t v = node_end(doc, yaml_document_get_node(doc, p->value), depth + 1);
            e = SL_MAX(e, SL_MAX(k, v));
        }
    } else {
        for (yaml_node_item_t *it = nd->data.sequence.items.start; it < nd->data.sequence.items.top; it++)
            e = SL_MAX(e, node_end(doc, yaml_document_get_node(doc, *it), depth + 1));
    }
    return e;
}

/* The pair of mapping m whose key is the scalar key, or NULL. */
static yaml_node_pair_t *map_get(yaml_document_t *doc, yaml_node_t *m, const char *key)
{
    if (!m || m->type != YAML_MAPPING_NODE) return NULL;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE && !strcmp((const char *)k->data.scalar.value, key))
            return p;
    }
    return NULL;
}

struct edit {
    size_t at, del;
    char *ins; /* owned */
    int order; /* among edits at the same offset, lower goes first in the text */
};

#define MAX_EDITS 4

struct edits {
    struct edit v[MAX_EDITS];
    size_t n;
};

static int edit_add(struct edits *e, size_t at, size_t del, char *ins, int order)
{
    if (!ins) return SL_ENOMEM;
    SL_ASSERT(e->n < MAX_EDITS);
    e->v[e->n++] = (struct edit){at, del, ins, order};
    return 0;
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap, ap2;
    va_start(ap, f);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s) vsnprintf(s, (size_t)n + 1, f, ap2);
    va_end(ap2);
    return s;
}

double sl_calib_written_value(double threshold)
{
    char b[64];
    snprintf(b, sizeof b, "%.6g", threshold);
    return strtod(b, NULL);
}

/* A YAML double-quoted scalar of s (printable ASCII kept, the rest escaped
 * as \xNN bytes would break UTF-8, so non-ASCII bytes are kept as they are). */
static char *yquote(const char *s)
{
    size_t n = strlen(s), k = 0;
    char *q = malloc(4 * n + 3);
    if (!q) return NULL;
    q[k++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            q[k++] = '\\';
            q[k++] = (char)c;
        } else if (c < 0x20) {
            k += (size_t)sprintf(q + k, "\\x%02x", c);
        } else {
            q[k++] = (char)c;
        }
    }
    q[k++] = '"';
    q[k] = 0;
    return q;
}

static char *evidence_block(const struct sl_calib_evidence *ev, int indent)
{
    char *target = yquote(ev->target ? ev->target : ""), *method = yquote(ev->method ? ev->method : "");
    char *date = yquote(ev->date ? ev->date : ""), *res = yquote(ev->results ? ev->results : "");
    char *task = ev->task ? yquote(ev->task) : NULL;
    char *s = NULL;
    if (target && method && date && res && (!ev->task || task)) {
        int i = indent, j = indent + 2;
        char tline[512] = "";
        if (task) snprintf(tline, sizeof tline, "%*stask: %s\n", j, "", task);
        s = fmt("%*scalibration:  # written by sluice calibrate; the router does not read it\n"
                "%*smethod: %s\n%*starget: %s\n%s%*sdelta: %.6g\n%*sn_calibration: %zu\n"
                "%*supper_bound: %.6g\n%*scoverage: %.6g\n"
                "%*stest: {coverage: %.6g, quality: %.6g, cost_per_1k: %.6g}\n"
                "%*sdate: %s\n%*sresults: %s\n",
                i, "", j, "", method, j, "", target, tline, j, "", ev->delta, j, "",
                ev->n_calibration, j, "", ev->upper_bound, j, "", ev->coverage, j, "",
                ev->test_coverage, ev->test_quality, ev->test_cost_1k, j, "", date, j, "", res);
    }
    free(target);
    free(method);
    free(date);
    free(res);
    free(task);
    return s;
}

/* Where to append a line after the last line of a block node: the byte
 * after its last line, plus whether a newline must be written first. */
static size_t after_block(const struct ytext *t, yaml_document_t *doc, yaml_node_t *nd, bool *need_nl)
{
    size_t b = line_end(t, ybyte(t, node_end(doc, nd, 0)));
    *need_nl = b > 0 && t->s[b - 1] != '\n';
    return b;
}

static bool only_spaces_before(const struct ytext *t, size_t b)
{
    for (size_t i = line_start(t, b); i < b; i++)
        if (t->s[i] != ' ') return false;
    return true;
}

static int cmp_edit_desc(const void *a, const void *b)
{
    const struct edit *x = a, *y = b;
    if (x->at != y->at) return x->at < y->at ? 1 : -1;
    return (x->order < y->order) - (x->order > y->order);
}

int sl_calib_edit_yaml(char **out, size_t *out_len, const char *text, size_t len,
                       const char *route, double threshold, const struct sl_calib_evidence *ev,
                       struct sl_err *err)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    struct ytext t = {0};
    struct edits ed = {0};
    char *res = NULL;
    int rc = 0;
    *out = NULL;
    *out_len = 0;
    if (ytext_init(&t, text, len)) return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    if (!yaml_parser_initialize(&parser)) {
        free(t.byte_of);
        return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = sl_err_set(err, SL_EFORMAT, "config line %d: not valid YAML: %s",
                        (int)parser.problem_mark.line + 1, parser.problem ? parser.problem : "?");
        yaml_parser_delete(&parser);
        free(t.byte_of);
        return rc;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    yaml_node_pair_t *rp = map_get(&doc, root, "routes");
    yaml_node_t *routes = rp ? yaml_document_get_node(&doc, rp->value) : NULL;
    if (!routes || routes->type != YAML_MAPPING_NODE) {
        rc = sl_err_set(err, SL_EFORMAT, "config has no routes: mapping");
        goto out; /* no routes */
    }
    yaml_node_pair_t *pp = map_get(&doc, routes, route);
    yaml_node_t *rt = pp ? yaml_document_get_node(&doc, pp->value) : NULL;
    if (!rt) {
        rc = sl_err_set(err, SL_ENOTFOUND, "config has no route '%s'", route);
        goto out; /* no such route */
    }
    if (rt->type != YAML_MAPPING_NODE || rt->data.mapping.style == YAML_FLOW_MAPPING_STYLE ||
        rt->data.mapping.pairs.start == rt->data.mapping.pairs.top) {
        rc = sl_err_set(err, SL_EFORMAT,
                        "config line %d: route '%s' must be a block mapping (key: value lines) "
                        "to be edited",
                        (int)rt->start_mark.line + 1, route);
        goto out; /* flow style */
    }
    yaml_node_t *k0 = yaml_document_get_node(&doc, rt->data.mapping.pairs.start->key);
    int indent = (int)k0->start_mark.column;
    char num[64];
    snprintf(num, sizeof num, "%.6g", threshold);
    bool nl;
    size_t end_at = after_block(&t, &doc, rt, &nl);
    /* new threshold lines go before an existing calibration: block */
    yaml_node_pair_t *cp = map_get(&doc, rt, "calibration");
    size_t new_at = end_at;
    bool new_nl = nl;
    if (cp) {
        new_at = line_start(&t, ybyte(&t, yaml_document_get_node(&doc, cp->key)->start_mark.index));
        new_nl = false;
    }

    /* the threshold */
    if (!ev->task) {
        yaml_node_pair_t *tp = map_get(&doc, rt, "threshold");
        yaml_node_t *v = tp ? yaml_document_get_node(&doc, tp->value) : NULL;
        if (v && v->type != YAML_SCALAR_NODE) {
            rc = sl_err_set(err, SL_EFORMAT, "config line %d: routes.%s.threshold is not a number",
                            (int)v->start_mark.line + 1, route);
            goto out; /* odd shape */
        }
        if (v) {
            size_t a = ybyte(&t, v->start_mark.index), b = ybyte(&t, v->end_mark.index);
            rc = edit_add(&ed, a, b - a, fmt("%s", num), 0);
        } else {
            rc = edit_add(&ed, new_at, 0, fmt("%s%*sthreshold: %s\n", new_nl ? "\n" : "", indent, "", num), 0);
            if (new_at == end_at) nl = false;
        }
    } else {
        yaml_node_pair_t *tp = map_get(&doc, rt, "thresholds");
        yaml_node_t *m = tp ? yaml_document_get_node(&doc, tp->value) : NULL;
        yaml_node_pair_t *ep = m ? map_get(&doc, m, ev->task) : NULL;
        yaml_node_t *v = ep ? yaml_document_get_node(&doc, ep->value) : NULL;
        if (m && m->type == YAML_SCALAR_NODE && m->data.scalar.length == 0) {
            /* "thresholds:" with nothing after it */
            size_t b = line_end(&t, ybyte(&t, yaml_document_get_node(&doc, tp->key)->end_mark.index));
            bool n2 = b > 0 && t.s[b - 1] != '\n';
            rc = edit_add(&ed, b, 0, fmt("%s%*s%s: %s\n", n2 ? "\n" : "", indent + 2, "", ev->task, num), 0);
        } else if (m && m->type != YAML_MAPPING_NODE) {
            rc = sl_err_set(err, SL_EFORMAT, "config line %d: routes.%s.thresholds is not a mapping",
                            (int)m->start_mark.line + 1, route);
            goto out; /* odd shape */
        } else if (v) {
            if (v->type != YAML_SCALAR_NODE) {
                rc = sl_err_set(err, SL_EFORMAT, "config line %d: routes.%s.thresholds.%s is not a number",
                                (int)v->start_mark.line + 1, route, ev->task);
                goto out; /* odd shape */
            }
            size_t a = ybyte(&t, v->start_mark.index), b = ybyte(&t, v->end_mark.index);
            rc = edit_add(&ed, a, b - a, fmt("%s", num), 0);
        } else if (m && m->data.mapping.style == YAML_FLOW_MAPPING_STYLE) {
            /* {a: 1} -> {a: 1, task: v}: insert before the closing brace */
            size_t b = ybyte(&t, m->end_mark.index);
            while (b > 0 && t.s[b - 1] != '}') b--;
            if (b == 0) {
                rc = sl_err_set(err, SL_EFORMAT, "config line %d: cannot edit routes.%s.thresholds",
                                (int)m->start_mark.line + 1, route);
                goto out; /* no closing brace */
            }
            bool empty = m->data.mapping.pairs.start == m->data.mapping.pairs.top;
            size_t at = b - 1;
            while (at > 0 && t.s[at - 1] == ' ') at--;
            rc = edit_add(&ed, at, 0, fmt("%s%s: %s", empty ? "" : ", ", ev->task, num), 0);
        } else if (m) {
            yaml_node_t *mk = yaml_document_get_node(&doc, m->data.mapping.pairs.start->key);
            bool n2;
            size_t b = after_block(&t, &doc, m, &n2);
            rc = edit_add(&ed, b, 0,
                          fmt("%s%*s%s: %s\n", n2 ? "\n" : "", (int)mk->start_mark.column, "", ev->task, num), 0);
            if (b == end_at) nl = false;
        } else {
            rc = edit_add(&ed, new_at, 0,
                          fmt("%s%*sthresholds:\n%*s%s: %s\n", new_nl ? "\n" : "", indent, "", indent + 2, "",
                              ev->task, num), 0);
            if (new_at == end_at) nl = false;
        }
    }
    if (rc) goto oom;

    /* the evidence: replace the calibration: pair, or append one */
    char *block = evidence_block(ev, indent);
    if (!block) goto oom;
    if (cp) {
        yaml_node_t *ck = yaml_document_get_node(&doc, cp->key);
        size_t a = ybyte(&t, ck->start_mark.index);
        if (!only_spaces_before(&t, a)) {
            free(block);
            rc = sl_err_set(err, SL_EFORMAT, "config line %d: cannot edit routes.%s.calibration",
                            (int)ck->start_mark.line + 1, route);
            goto out; /* odd layout */
        }
        size_t e = line_end(&t, ybyte(&t, node_end(&doc, yaml_document_get_node(&doc, cp->value), 0)));
        size_t s = line_start(&t, a);
        bool n2 = e > 0 && t.s[e - 1] != '\n' && e == t.len;
        if (n2) {
            /* the file ends on this line without a newline: drop the block's last one */
            block[strlen(block) - 1] = 0;
        }
        rc = edit_add(&ed, s, e - s, block, 1);
    } else {
        char *b2 = fmt("%s%s", nl ? "\n" : "", block);
        free(block);
        rc = edit_add(&ed, end_at, 0, b2, 1);
    }
    if (rc) goto oom;

    /* apply from the end so earlier offsets stay valid */
    qsort(ed.v, ed.n, sizeof *ed.v, cmp_edit_desc);
    size_t n_out = len;
    for (size_t i = 0; i < ed.n; i++) n_out += strlen(ed.v[i].ins);
    if (!(res = malloc(n_out + 1))) goto oom;
    memcpy(res, text, len);
    size_t cur = len;
    for (size_t i = 0; i < ed.n; i++) {
        struct edit *x = &ed.v[i];
        size_t il = strlen(x->ins);
        memmove(res + x->at + il, res + x->at + x->del, cur - x->at - x->del);
        memcpy(res + x->at, x->ins, il);
        cur = cur - x->del + il;
    }
    res[cur] = 0;
    *out = res;
    *out_len = cur;
    res = NULL;
    goto out;
oom:
    rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
out:
    for (size_t i = 0; i < ed.n; i++) free(ed.v[i].ins);
    free(res);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    free(t.byte_of);
    return rc;
}

int sl_calib_write_config(const char *path, const char *route, double threshold,
                          const struct sl_calib_evidence *ev, struct sl_err *err)
{
    char *text = NULL, *edited = NULL, *tmp = NULL;
    size_t len = 0, n_ed = 0;
    struct sl_config c;
    bool have_c = false;
    int rc = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return sl_err_set(err, SL_EIO, "cannot open config '%s'", path);
    if (!(text = malloc(SL_CONFIG_MAX_FILE + 1))) {
        fclose(f);
        return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    }
    len = fread(text, 1, SL_CONFIG_MAX_FILE + 1, f);
    bool bad = ferror(f);
    fclose(f);
    if (bad || len > SL_CONFIG_MAX_FILE) {
        rc = sl_err_set(err, bad ? SL_EIO : SL_ERANGE, "cannot read config '%s'%s", path,
                        bad ? "" : ": too large");
        goto out; /* read error */
    }
    if ((rc = sl_calib_edit_yaml(&edited, &n_ed, text, len, route, threshold, ev, err))) goto out;

    /* the edited text must still load, with the new threshold */
    if ((rc = sl_config_init(&c, err))) goto out;
    have_c = true;
    if ((rc = sl_config_parse(&c, edited, n_ed, err))) {
        char m[SL_ERR_MSG_LEN];
        snprintf(m, sizeof m, "%s", err ? err->msg : "");
        rc = sl_err_set(err, rc, "%s: the edited config does not load (file unchanged): %s", path, m);
        goto out; /* our edit broke it */
    }
    const struct sl_route_config *r = sl_config_route(&c, route);
    double want = sl_calib_written_value(threshold), got = r ? sl_route_threshold(r, ev->task) : NAN;
    if (!r || !(fabs(got - want) <= 1e-12 * SL_MAX(1.0, fabs(want)))) {
        rc = sl_err_set(err, SL_EFORMAT,
                        "%s: after editing, route '%s' reads threshold %g instead of %g (file unchanged)",
                        path, route, got, want);
        goto out; /* the edit did not land where the loader reads */
    }

    /* replace atomically */
    if (!(tmp = fmt("%s.tmp.%ld", path, (long)getpid()))) {
        rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
        goto out; /* allocation failure */
    }
    FILE *o = fopen(tmp, "wb");
    if (!o) {
        rc = sl_err_set(err, SL_EIO, "cannot write '%s': %s", tmp, strerror(errno));
        goto out; /* directory not writable */
    }
    bool wbad = fwrite(edited, 1, n_ed, o) != n_ed;
    wbad |= fflush(o) != 0 || fsync(fileno(o)) != 0;
    wbad |= fclose(o) != 0;
    if (wbad || rename(tmp, path) != 0) {
        rc = sl_err_set(err, SL_EIO, "cannot replace '%s': %s", path, strerror(errno));
        remove(tmp);
        goto out; /* write or rename failed */
    }
out:
    if (have_c) sl_config_free(&c);
    free(text);
    free(edited);
    free(tmp);
    return rc;
}
