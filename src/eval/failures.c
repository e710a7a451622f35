/*
 * failures.c - failure modes of the small tier from evaluation results:
 * confident wrong answers and error-rate slices, printed as text, JSON and
 * an HTML fragment (eval layer). See failures.h.
 */
#include "eval/failures.h"
#include "eval/report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct sl_failures_params sl_failures_default_params(void)
{
    return (struct sl_failures_params){
        .top_n = 10, .n_len_buckets = 4, .max_values = 50, .min_count = 1, .by_class = true};
}

void sl_failures_free(struct sl_failures *f)
{
    if (!f) return;
    free(f->top);
    free(f->slices);
    memset(f, 0, sizeof *f);
}

/* ==== computing ========================================================== */

/* The tier's verdict on example i: 1 wrong, 0 right, -1 unknown. */
static int wrong_at(const struct sl_results *r, size_t i, int t)
{
    const struct sl_result_cell *c = sl_results_cell(r, i, t);
    if (!c->present) return -1;
    if (c->error) return 1;
    return c->correct < 0 ? -1 : c->correct == 0;
}

struct acc {
    char value[128];
    size_t n, wrong, r_n, r_wrong, r_esc;
};

struct group {
    struct acc *v;
    size_t n, cap;
    bool overflow;
};

static int group_add(struct group *g, const char *value, bool wrong, int route_wrong, bool esc,
                     size_t max_values)
{
    size_t k = 0;
    while (k < g->n && strncmp(g->v[k].value, value, sizeof g->v[k].value - 1)) k++;
    if (k == g->n) {
        if (g->n >= max_values) {
            g->overflow = true;
            return 0;
        }
        if (g->n == g->cap) {
            size_t cap = g->cap ? 2 * g->cap : 16;
            struct acc *nv = realloc(g->v, cap * sizeof *nv);
            if (!nv) return SL_ENOMEM;
            g->v = nv;
            g->cap = cap;
        }
        memset(&g->v[k], 0, sizeof g->v[k]);
        snprintf(g->v[k].value, sizeof g->v[k].value, "%s", value);
        g->n++;
    }
    struct acc *a = &g->v[k];
    a->n++;
    a->wrong += wrong;
    if (route_wrong >= 0) {
        a->r_n++;
        a->r_wrong += (size_t)route_wrong;
        a->r_esc += esc;
    }
    return 0;
}

/* Appends a group's values as slices of field. */
static int flush_group(struct sl_failures *f, size_t *cap, struct group *g, const char *field,
                       size_t min_count)
{
    if (g->overflow) {
        f->n_fields_skipped++;
        return 0;
    }
    for (size_t k = 0; k < g->n; k++) {
        struct acc *a = &g->v[k];
        if (a->n < min_count) continue;
        if (f->n_slices == *cap) {
            size_t nc = *cap ? 2 * *cap : 32;
            struct sl_failure_slice *ns = realloc(f->slices, nc * sizeof *ns);
            if (!ns) return SL_ENOMEM;
            f->slices = ns;
            *cap = nc;
        }
        struct sl_failure_slice *s = &f->slices[f->n_slices++];
        memset(s, 0, sizeof *s);
        snprintf(s->field, sizeof s->field, "%s", field);
        memcpy(s->value, a->value, sizeof s->value);
        s->n = a->n;
        s->n_wrong = a->wrong;
        s->error = (double)a->wrong / (double)a->n;
        s->route_error = a->r_n ? (double)a->r_wrong / (double)a->r_n : NAN;
        s->escalated = a->r_n ? (double)a->r_esc / (double)a->r_n : NAN;
    }
    return 0;
}

static int cmp_case(const void *a, const void *b)
{
    const struct sl_failure_case *x = a, *y = b;
    double cx = isnan(x->confidence) ? -INFINITY : x->confidence;
    double cy = isnan(y->confidence) ? -INFINITY : y->confidence;
    if (cx != cy) return cx < cy ? 1 : -1;
    return (x->row > y->row) - (x->row < y->row);
}

static int cmp_slice(const void *a, const void *b)
{
    const struct sl_failure_slice *x = a, *y = b;
    if (x->error != y->error) return x->error < y->error ? 1 : -1;
    if (x->n != y->n) return x->n < y->n ? 1 : -1;
    int c = strcmp(x->field, y->field);
    return c ? c : strcmp(x->value, y->value);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int sl_failures_compute(struct sl_failures *f, const struct sl_results *r, const char *tier,
                        const char *route, const struct sl_failures_params *p, struct sl_err *err)
{
    struct group g = {0};
    int64_t *lens = NULL, *bounds = NULL;
    size_t cap = 0;
    int rc = 0;
    memset(f, 0, sizeof *f);
    int t = sl_results_target(r, tier);
    if (t < 0) return sl_err_set(err, SL_ENOTFOUND, "results have no target '%s'", tier);
    int rt = route ? sl_results_target(r, route) : sl_results_target(r, "route");
    if (route && rt < 0) return sl_err_set(err, SL_ENOTFOUND, "results have no target '%s'", route);
    snprintf(f->tier, sizeof f->tier, "%s", tier);
    if (rt >= 0) snprintf(f->route, sizeof f->route, "%s", r->targets[rt]);

    /* confident wrong answers */
    size_t n_wrong = 0;
    for (size_t i = 0; i < r->n; i++) {
        int w = wrong_at(r, i, t);
        if (w < 0) continue;
        f->n++;
        n_wrong += (size_t)w;
    }
    if (f->n == 0)
        return sl_err_set(err, SL_EINVAL, "no example has a known result for '%s'", tier);
    f->n_wrong = n_wrong;
    f->error = (double)n_wrong / (double)f->n;
    if (!(f->top = malloc((n_wrong ? n_wrong : 1) * sizeof *f->top))) goto oom;
    for (size_t i = 0; i < r->n; i++) {
        if (wrong_at(r, i, t) != 1) continue;
        const struct sl_result_cell *c = sl_results_cell(r, i, t);
        struct sl_failure_case *k = &f->top[f->n_top++];
        memset(k, 0, sizeof *k);
        k->row = i;
        k->confidence = c->confidence;
        k->id = r->id[i];
        k->truth = r->truth[i];
        k->pred = c->pred;
        k->error = c->error;
        k->route_correct = -1;
        if (rt >= 0) {
            const struct sl_result_cell *rc2 = sl_results_cell(r, i, rt);
            k->route_present = rc2->present;
            k->route_escalated = rc2->escalated;
            k->route_correct = rc2->present ? (rc2->error ? 0 : rc2->correct) : -1;
            k->route_decision = rc2->decision;
            k->route_backend = rc2->backend;
        }
    }
    qsort(f->top, f->n_top, sizeof *f->top, cmp_case);
    if (f->n_top > p->top_n) f->n_top = p->top_n;

    /* slices: the classes, then each meta field, then the length buckets */
    size_t n_fields = 1 + r->n_meta + 1;
    for (size_t fi = 0; fi < n_fields; fi++) {
        bool is_class = fi == 0, is_len = fi == n_fields - 1;
        const char *field = is_class ? "class" : is_len ? "input_len" : r->meta_keys[fi - 1];
        size_t n_b = 0;
        g.n = 0;
        g.overflow = false;
        if (is_class && !p->by_class) continue;
        if (is_len) {
            /* quantile boundaries over the known lengths */
            size_t m = 0;
            if (!(lens = malloc(r->n * sizeof *lens))) goto oom;
            for (size_t i = 0; i < r->n; i++)
                if (r->input_len[i] >= 0 && wrong_at(r, i, t) >= 0) lens[m++] = r->input_len[i];
            if (m == 0 || p->n_len_buckets == 0) break;
            qsort(lens, m, sizeof *lens, cmp_i64);
            n_b = p->n_len_buckets;
            if (!(bounds = malloc((n_b + 1) * sizeof *bounds))) goto oom;
            bounds[0] = lens[0] - 1;
            for (size_t b = 1; b <= n_b; b++) {
                size_t k = (size_t)ceil((double)b * (double)m / (double)n_b);
                bounds[b] = lens[(k ? k : 1) - 1];
            }
        }
        for (size_t i = 0; i < r->n; i++) {
            int w = wrong_at(r, i, t);
            if (w < 0) continue;
            char value[128];
            if (is_class) {
                if (!r->truth[i]) continue;
                snprintf(value, sizeof value, "%s", r->truth[i]);
            } else if (is_len) {
                int64_t L = r->input_len[i];
                if (L < 0) continue;
                size_t b = 1;
                while (b < n_b && L > bounds[b]) b++;
                /* a bucket is named by its range; ties make some empty */
                size_t lo = b - 1;
                while (lo > 0 && bounds[lo] == bounds[b]) lo--;
                snprintf(value, sizeof value, "%lld-%lld", (long long)bounds[lo] + 1, (long long)bounds[b]);
            } else {
                const char *v = sl_results_meta(r, i, (int)(fi - 1));
                if (!v) continue;
                snprintf(value, sizeof value, "%s", v);
            }
            int route_wrong = -1;
            bool esc = false;
            if (rt >= 0) {
                int rw = wrong_at(r, i, rt);
                route_wrong = rw;
                esc = sl_results_cell(r, i, rt)->escalated;
            }
            if (group_add(&g, value, w == 1, route_wrong, esc, is_len ? (size_t)-1 : p->max_values))
                goto oom;
        }
        if (flush_group(f, &cap, &g, field, p->min_count)) goto oom;
    }
    if (f->n_slices > 1) qsort(f->slices, f->n_slices, sizeof *f->slices, cmp_slice);
    goto out;
oom:
    rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    sl_failures_free(f);
out:
    free(g.v);
    free(lens);
    free(bounds);
    return rc;
}

/* ==== writing ============================================================ */

static const char *route_did(const struct sl_failure_case *k, char *buf, size_t n)
{
    if (!k->route_present) return "-";
    bool has_b = k->route_backend && *k->route_backend;
    const char *what = k->route_decision && *k->route_decision ? k->route_decision
                       : k->route_escalated                     ? "escalated"
                                                                : "kept";
    snprintf(buf, n, "%s%s%s, %s", what, has_b ? " -> " : "", has_b ? k->route_backend : "",
             k->route_correct == 1 ? "right" : k->route_correct == 0 ? "wrong" : "unknown");
    return buf;
}

/* Up to w display columns of s (bytes; UTF-8 may be cut short of w). */
static void cut(char *dst, size_t n, const char *s, int w)
{
    snprintf(dst, n, "%s", s ? s : "-");
    for (char *p = dst; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t') *p = ' ';
    if ((int)strlen(dst) > w && w > 3) {
        size_t k = (size_t)w - 3;
        while (k > 0 && ((unsigned char)dst[k] & 0xC0) == 0x80) k--;
        snprintf(dst + k, n - k, "...");
    }
}

static void pct(char *b, size_t n, double v)
{
    if (isnan(v))
        snprintf(b, n, "-");
    else
        snprintf(b, n, "%.1f%%", 100 * v);
}

void sl_failures_print(const struct sl_failures *f, FILE *out)
{
    char a[64], b[64], c[64], d[64], e[128];
    fprintf(out, "\nFailure modes of '%s': %zu examples, %zu wrong (%.1f%%)\n", f->tier, f->n,
            f->n_wrong, 100 * f->error);
    if (f->n_top) {
        fprintf(out, "\nMost confident wrong answers\n  %-16s %7s  %-16s %-16s %s\n", "id", "conf",
                "truth", "pred", f->route[0] ? "what the route did" : "");
        for (size_t i = 0; i < f->n_top; i++) {
            const struct sl_failure_case *k = &f->top[i];
            char rd[160];
            cut(a, sizeof a, k->id, 16);
            cut(b, sizeof b, k->truth, 16);
            cut(c, sizeof c, k->error ? "(error)" : k->pred, 16);
            if (isnan(k->confidence))
                snprintf(d, sizeof d, "-");
            else
                snprintf(d, sizeof d, "%.3f", k->confidence);
            fprintf(out, "  %-16s %7s  %-16s %-16s %s\n", a, d, b, c,
                    f->route[0] ? route_did(k, rd, sizeof rd) : "");
        }
    }
    if (f->n_slices) {
        fprintf(out, "\nWhere '%s' fails most (by error rate)\n  %-34s %6s %6s %7s  %10s %9s\n",
                f->tier, "slice", "n", "wrong", "error", "route err", "escalated");
        for (size_t i = 0; i < f->n_slices; i++) {
            const struct sl_failure_slice *s = &f->slices[i];
            char sl[200];
            snprintf(sl, sizeof sl, "%s=%s", s->field, s->value);
            cut(e, sizeof e, sl, 34);
            pct(a, sizeof a, s->error);
            pct(b, sizeof b, s->route_error);
            pct(c, sizeof c, s->escalated);
            fprintf(out, "  %-34s %6zu %6zu %7s  %10s %9s\n", e, s->n, s->n_wrong, a, b, c);
        }
    }
    if (f->n_fields_skipped)
        fprintf(out, "  (%zu field(s) left out: too many distinct values to be a slice)\n",
                f->n_fields_skipped);
}

static void json_str(FILE *f, const char *s)
{
    if (s)
        sl_json_fputs(f, s);
    else
        fputs("null", f);
}

static void json_num(FILE *f, double v)
{
    if (isnan(v) || isinf(v))
        fputs("null", f);
    else
        fprintf(f, "%.6g", v);
}

int sl_failures_json(const struct sl_failures *f, FILE *out, struct sl_err *err)
{
    fputs("{\"tier\":", out);
    json_str(out, f->tier);
    fputs(",\"route\":", out);
    json_str(out, f->route[0] ? f->route : NULL);
    fprintf(out, ",\"n\":%zu,\"n_wrong\":%zu,\"error\":", f->n, f->n_wrong);
    json_num(out, f->error);
    fputs(",\"top\":[", out);
    for (size_t i = 0; i < f->n_top; i++) {
        const struct sl_failure_case *k = &f->top[i];
        fputs(i ? ",{\"id\":" : "{\"id\":", out);
        json_str(out, k->id);
        fputs(",\"truth\":", out);
        json_str(out, k->truth);
        fputs(",\"pred\":", out);
        json_str(out, k->pred);
        fputs(",\"confidence\":", out);
        json_num(out, k->confidence);
        fputs(",\"error\":", out);
        json_str(out, k->error);
        fputs(",\"route\":", out);
        if (!k->route_present) {
            fputs("null}", out);
            continue;
        }
        fputs("{\"decision\":", out);
        json_str(out, k->route_decision);
        fputs(",\"backend\":", out);
        json_str(out, k->route_backend);
        fprintf(out, ",\"escalated\":%s,\"correct\":%s}}", k->route_escalated ? "true" : "false",
                k->route_correct < 0 ? "null" : k->route_correct ? "true" : "false");
    }
    fputs("],\"slices\":[", out);
    for (size_t i = 0; i < f->n_slices; i++) {
        const struct sl_failure_slice *s = &f->slices[i];
        fputs(i ? ",{\"field\":" : "{\"field\":", out);
        json_str(out, s->field);
        fputs(",\"value\":", out);
        json_str(out, s->value);
        fprintf(out, ",\"n\":%zu,\"n_wrong\":%zu,\"error\":", s->n, s->n_wrong);
        json_num(out, s->error);
        fputs(",\"route_error\":", out);
        json_num(out, s->route_error);
        fputs(",\"escalated\":", out);
        json_num(out, s->escalated);
        fputc('}', out);
    }
    fprintf(out, "],\"fields_skipped\":%zu}", f->n_fields_skipped);
    if (ferror(out)) return sl_err_set(err, SL_EIO, "%s: write error", __func__);
    return 0;
}

static void html_esc(FILE *f, const char *s)
{
    if (!s) {
        fputs("&ndash;", f);
        return;
    }
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

int sl_failures_html(const struct sl_failures *f, FILE *out, struct sl_err *err)
{
    char a[64], b[64], c[64], rd[160];
    /* the palette and rules of report.c's pages, scoped to the section */
    fputs("<section class=\"sl-failures\" id=\"failures\">\n<style>"
          ".sl-failures h2{font-size:16px;margin:0 0 6px}"
          ".sl-failures h3{font-size:14px;margin:14px 0 6px}"
          ".sl-failures p{margin:0 0 8px;color:#57606a}"
          ".sl-failures table{border-collapse:collapse;margin:0 0 12px;font-size:13px}"
          ".sl-failures th,.sl-failures td{padding:4px 10px;border-bottom:1px solid #d0d7de;"
          "text-align:left}"
          ".sl-failures th{background:#f6f8fa}"
          ".sl-failures td.num{text-align:right;font-size:13px;font-variant-numeric:tabular-nums}"
          ".sl-failures th.num{text-align:right;font-size:inherit}"
          ".sl-failures td.wrong{color:#d1242f}"
          ".sl-failures .bar{display:inline-block;height:10px;background:#d1242f;opacity:.75;"
          "vertical-align:middle}"
          "</style>\n<h2>Failure modes of ",
          out);
    html_esc(out, f->tier);
    fprintf(out, "</h2>\n<p>%zu examples, %zu wrong (%.1f%%).</p>\n", f->n, f->n_wrong, 100 * f->error);
    if (f->n_top) {
        fputs("<h3>Most confident wrong answers</h3>\n<table id=\"failures-top\"><tr><th>id</th>"
              "<th class=\"num\">confidence</th>"
              "<th>truth</th><th>prediction</th><th>what the route did</th></tr>\n", out);
        for (size_t i = 0; i < f->n_top; i++) {
            const struct sl_failure_case *k = &f->top[i];
            fputs("<tr><td>", out);
            html_esc(out, k->id);
            if (isnan(k->confidence))
                fputs("</td><td class=\"num\">&ndash;</td><td>", out);
            else
                fprintf(out, "</td><td class=\"num\">%.3f</td><td>", k->confidence);
            html_esc(out, k->truth);
            fputs("</td><td class=\"wrong\">", out);
            html_esc(out, k->error ? "(error)" : k->pred);
            fputs("</td><td>", out);
            html_esc(out, route_did(k, rd, sizeof rd));
            fputs("</td></tr>\n", out);
        }
        fputs("</table>\n", out);
    }
    if (f->n_slices) {
        fputs("<h3>Where it fails most</h3>\n<table id=\"failures-slices\"><tr><th>slice</th>"
              "<th class=\"num\">n</th><th class=\"num\">wrong</th><th class=\"num\">error</th>"
              "<th></th><th class=\"num\">route error</th><th class=\"num\">escalated</th></tr>\n",
              out);
        for (size_t i = 0; i < f->n_slices; i++) {
            const struct sl_failure_slice *s = &f->slices[i];
            pct(a, sizeof a, s->error);
            pct(b, sizeof b, s->route_error);
            pct(c, sizeof c, s->escalated);
            fputs("<tr><td>", out);
            html_esc(out, s->field);
            fputs(" = ", out);
            html_esc(out, s->value);
            fprintf(out, "</td><td class=\"num\">%zu</td><td class=\"num\">%zu</td><td class=\"num\">%s"
                         "</td><td><span class=\"bar\" style=\"width:%dpx\"></span></td>"
                         "<td class=\"num\">%s</td><td class=\"num\">%s</td></tr>\n",
                    s->n, s->n_wrong, a, (int)lround(100 * s->error), b, c);
        }
        fputs("</table>\n", out);
    }
    fputs("</section>\n", out);
    if (ferror(out)) return sl_err_set(err, SL_EIO, "%s: write error", __func__);
    return 0;
}
