/*
 * report.c - terminal, JSON and self-contained HTML reports of an
 * evaluation (eval layer). The HTML charts are SVG written by the helpers
 * in the "charts" section: axes, polylines, bars and a heat map, with
 * fixed geometry so a browser test can count their elements.
 */
#include "eval/report.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ==== small writers ======================================================= */

void sl_json_fputs(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void json_num(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.10g", v);
    else
        fputs("null", f);
}

static void html_str(FILE *f, const char *s)
{
    for (const char *p = s ? s : ""; *p; p++) {
        switch (*p) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*p, f);
        }
    }
}

static void fmt_val(char *buf, size_t n, double v)
{
    if (!isfinite(v))
        snprintf(buf, n, "-");
    else if (v == floor(v) && fabs(v) < 1e12)
        snprintf(buf, n, "%.0f", v);
    else if (fabs(v) >= 1000 || (v != 0 && fabs(v) < 0.001))
        snprintf(buf, n, "%.4g", v);
    else
        snprintf(buf, n, "%.4f", v);
}

/* ==== terminal table ====================================================== */

void sl_report_table(const struct sl_report *r, FILE *f)
{
    char v[64];
    if (r->title) fprintf(f, "%s\n", r->title);
    if (r->subtitle) fprintf(f, "%s\n", r->subtitle);
    if (r->n_curves) {
        fprintf(f, "\n%-10s %8s %8s %9s %9s %9s %10s\n", "router", "APGR", "APGR@10", "CPT(50%)",
                "CPT(80%)", "calls@95%", "saving@95%");
        for (size_t i = 0; i < r->n_curves; i++) {
            const struct sl_router_curve *c = &r->curves[i];
            fprintf(f, "%-10s %8.4f %8.4f %8.1f%% %8.1f%% %8.1f%% %9.1f%%\n", c->name, c->apgr,
                    c->apgr_q10, 100 * c->cpt50, 100 * c->cpt80, 100 * c->calls95,
                    100 * c->saving95);
        }
    }
    if (r->n_metrics) {
        fputc('\n', f);
        for (size_t i = 0; i < r->n_metrics; i++) {
            fmt_val(v, sizeof v, r->metrics[i].value);
            fprintf(f, "  %-44s %s\n", r->metrics[i].label ? r->metrics[i].label : r->metrics[i].name, v);
        }
    }
    if (r->n_targets) {
        /* metrics by row, one column per target */
        const struct sl_report_target *t0 = &r->targets[0];
        int w[16];
        size_t nt = r->n_targets < 16 ? r->n_targets : 16;
        fprintf(f, "\n%-30s", "");
        for (size_t t = 0; t < nt; t++) {
            size_t l = strlen(r->targets[t].name ? r->targets[t].name : "");
            w[t] = l < 11 ? 11 : (int)l;
            fprintf(f, " %*s", w[t], r->targets[t].name ? r->targets[t].name : "");
        }
        fputc('\n', f);
        for (size_t i = 0; i < t0->n_metrics; i++) {
            const char *lb = t0->metrics[i].label ? t0->metrics[i].label : t0->metrics[i].name;
            fprintf(f, "%-30s", lb);
            for (size_t t = 0; t < nt; t++) {
                const struct sl_report_target *tg = &r->targets[t];
                fmt_val(v, sizeof v, i < tg->n_metrics ? tg->metrics[i].value : NAN);
                fprintf(f, " %*s", w[t], v);
            }
            fputc('\n', f);
        }
    }
    if (r->fields && r->fields->n_fields) {
        const struct sl_extract_report *x = r->fields;
        fprintf(f, "\n%-24s %9s %9s %9s %7s %7s %7s\n", "field", "precision", "recall", "F1", "tp",
                "fp", "fn");
        for (size_t i = 0; i < x->n_fields; i++) {
            const struct sl_field_stats *fs = &x->fields[i];
            fprintf(f, "%-24s %9.4f %9.4f %9.4f %7llu %7llu %7llu\n", fs->key, fs->precision,
                    fs->recall, fs->f1, (unsigned long long)fs->tp, (unsigned long long)fs->fp,
                    (unsigned long long)fs->fn);
        }
        fprintf(f, "exact match %.4f, field precision %.4f, recall %.4f, F1 %.4f (micro), n %zu%s%s\n",
                x->exact_match, x->precision, x->recall, x->f1, x->n, r->fields_what ? ": " : "",
                r->fields_what ? r->fields_what : "");
    }
    if (r->cls) {
        const struct sl_class_report *c = r->cls;
        fprintf(f, "\n%-16s %9s %9s %9s %8s%s%s\n", "class", "precision", "recall", "F1", "support",
                r->cls_what ? "   " : "", r->cls_what ? r->cls_what : "");
        for (int k = 0; k < c->n_class; k++) {
            char nm[32];
            snprintf(nm, sizeof nm, "%s", r->class_names ? r->class_names[k] : "");
            if (!r->class_names) snprintf(nm, sizeof nm, "%d", k);
            fprintf(f, "%-16s %9.4f %9.4f %9.4f %8llu\n", nm, c->precision[k], c->recall[k],
                    c->f1[k], (unsigned long long)c->support[k]);
        }
        fprintf(f, "accuracy %.4f, macro-F1 %.4f, n %zu\n", c->accuracy, c->macro_f1, c->n);
    }
    if (r->reliability)
        fprintf(f, "ECE (%d bins) %.4f, MCE %.4f over %zu examples\n", r->reliability->n_bins,
                r->reliability->ece, r->reliability->mce, r->reliability->n);
    if (r->failures) sl_failures_print(r->failures, f);
    if (r->guarantee) {
        const struct sl_guarantee *g = r->guarantee;
        if (g->found)
            fprintf(f, "guaranteed threshold %.6g: coverage %.1f%%, risk %.4f, UCB %.4f <= eps %.4g "
                       "(delta %.3g, n_cal %llu)\n",
                    g->threshold, 100 * g->coverage, g->risk, g->ucb, g->epsilon, g->delta,
                    (unsigned long long)g->n_cal);
        else
            fprintf(f, "no threshold certified for eps %.4g at delta %.3g: escalate everything\n",
                    g->epsilon, g->delta);
    }
}

/* ==== JSON ================================================================= */

/* ", "labels": [...], "confusion": [[...]]" of a class report. */
static void json_confusion(FILE *f, const struct sl_class_report *c, const char *const *names)
{
    size_t k = (size_t)c->n_class;
    if (names) {
        fputs(", \"labels\": [", f);
        for (size_t i = 0; i < k; i++) {
            fputs(i ? ", " : "", f);
            sl_json_fputs(f, names[i]);
        }
        fputc(']', f);
    }
    fputs(", \"confusion\": [", f);
    for (size_t i = 0; i < k; i++) {
        fputs(i ? ", [" : "[", f);
        for (size_t j = 0; j < k; j++)
            fprintf(f, "%s%llu", j ? ", " : "", (unsigned long long)c->confusion[i * k + j]);
        fputc(']', f);
    }
    fputc(']', f);
}

int sl_report_json(const struct sl_report *r, FILE *f, struct sl_err *err)
{
    fputs("{\n  \"title\": ", f);
    sl_json_fputs(f, r->title);
    fputs(",\n  \"subtitle\": ", f);
    sl_json_fputs(f, r->subtitle);
    fputs(",\n  \"metrics\": {", f);
    for (size_t i = 0; i < r->n_metrics; i++) {
        fputs(i ? ",\n    " : "\n    ", f);
        sl_json_fputs(f, r->metrics[i].name);
        fputs(": ", f);
        json_num(f, r->metrics[i].value);
    }
    fputs("\n  },\n  \"routers\": [", f);
    for (size_t i = 0; i < r->n_curves; i++) {
        const struct sl_router_curve *c = &r->curves[i];
        fputs(i ? ",\n    {" : "\n    {", f);
        fputs("\"name\": ", f);
        sl_json_fputs(f, c->name);
        fprintf(f, ", \"n\": %zu, \"q_small\": ", c->n);
        json_num(f, c->q_small);
        fputs(", \"q_large\": ", f);
        json_num(f, c->q_large);
        fputs(", \"apgr\": ", f);
        json_num(f, c->apgr);
        fputs(", \"apgr_q10\": ", f);
        json_num(f, c->apgr_q10);
        fputs(", \"cpt50\": ", f);
        json_num(f, c->cpt50);
        fputs(", \"cpt80\": ", f);
        json_num(f, c->cpt80);
        fputs(", \"calls95\": ", f);
        json_num(f, c->calls95);
        fputs(", \"saving95\": ", f);
        json_num(f, c->saving95);
        /* the curve, thinned to at most ~200 points for size */
        fputs(", \"curve\": [", f);
        size_t step = c->n_pts > 200 ? c->n_pts / 200 : 1;
        bool first = true;
        for (size_t k = 0; k < c->n_pts; k++) {
            if (k % step && k + 1 != c->n_pts) continue;
            fputs(first ? "[" : ", [", f);
            first = false;
            json_num(f, c->pts[k].calls);
            fputs(", ", f);
            json_num(f, c->pts[k].quality);
            fputc(']', f);
        }
        fputs("]}", f);
    }
    fputs("\n  ]", f);
    if (r->frontier) {
        const struct sl_frontier *fr = r->frontier;
        fputs(",\n  \"frontier\": {\"aurc\": ", f);
        json_num(f, fr->aurc);
        fputs(", \"small_only\": {\"cost\": ", f);
        json_num(f, fr->small_only.cost);
        fputs(", \"quality\": ", f);
        json_num(f, fr->small_only.quality);
        fprintf(f, ", \"pareto\": %s}, \"large_only\": {\"cost\": ",
                fr->small_only.pareto ? "true" : "false");
        json_num(f, fr->large_only.cost);
        fputs(", \"quality\": ", f);
        json_num(f, fr->large_only.quality);
        fprintf(f, ", \"pareto\": %s}, \"pareto\": [", fr->large_only.pareto ? "true" : "false");
        bool first = true;
        for (size_t i = 0; i < fr->n_points; i++) {
            if (!fr->points[i].pareto) continue;
            fputs(first ? "{" : ", {", f);
            first = false;
            fputs("\"threshold\": ", f);
            json_num(f, fr->points[i].threshold);
            fputs(", \"coverage\": ", f);
            json_num(f, fr->points[i].coverage);
            fputs(", \"cost\": ", f);
            json_num(f, fr->points[i].cost);
            fputs(", \"quality\": ", f);
            json_num(f, fr->points[i].quality);
            fputc('}', f);
        }
        fputs("]}", f);
    }
    if (r->reliability) {
        const struct sl_reliability *rl = r->reliability;
        fputs(",\n  \"reliability\": {\"ece\": ", f);
        json_num(f, rl->ece);
        fputs(", \"mce\": ", f);
        json_num(f, rl->mce);
        fputs(", \"bins\": [", f);
        for (int b = 0; b < rl->n_bins; b++) {
            fprintf(f, "%s{\"count\": %llu, \"mean_conf\": ", b ? ", " : "",
                    (unsigned long long)rl->count[b]);
            json_num(f, rl->mean_conf[b]);
            fputs(", \"accuracy\": ", f);
            json_num(f, rl->accuracy[b]);
            fputc('}', f);
        }
        fputs("]}", f);
    }
    if (r->cls) {
        const struct sl_class_report *c = r->cls;
        fputs(",\n  \"classification\": {\"accuracy\": ", f);
        json_num(f, c->accuracy);
        fputs(", \"macro_f1\": ", f);
        json_num(f, c->macro_f1);
        json_confusion(f, c, r->class_names);
        fputs("}", f);
    }
    if (r->n_more_cls) {
        fputs(",\n  \"confusion_more\": [", f);
        for (size_t m = 0; m < r->n_more_cls; m++) {
            const struct sl_class_report *c = r->more_cls[m].cls;
            fputs(m ? ",\n    {\"name\": " : "\n    {\"name\": ", f);
            sl_json_fputs(f, r->more_cls[m].name);
            fputs(", \"accuracy\": ", f);
            json_num(f, c->accuracy);
            fputs(", \"macro_f1\": ", f);
            json_num(f, c->macro_f1);
            json_confusion(f, c, r->class_names);
            fputc('}', f);
        }
        fputs("\n  ]", f);
    }
    if (r->n_targets) {
        fputs(",\n  \"targets\": [", f);
        for (size_t t = 0; t < r->n_targets; t++) {
            const struct sl_report_target *tg = &r->targets[t];
            fputs(t ? ",\n    {\"name\": " : "\n    {\"name\": ", f);
            sl_json_fputs(f, tg->name);
            fputs(", \"metrics\": {", f);
            for (size_t i = 0; i < tg->n_metrics; i++) {
                fputs(i ? ", " : "", f);
                sl_json_fputs(f, tg->metrics[i].name);
                fputs(": ", f);
                json_num(f, tg->metrics[i].value);
            }
            fputs("}}", f);
        }
        fputs("\n  ]", f);
    }
    if (r->fields) {
        const struct sl_extract_report *x = r->fields;
        fputs(",\n  \"extraction\": {\"exact_match\": ", f);
        json_num(f, x->exact_match);
        fputs(", \"precision\": ", f);
        json_num(f, x->precision);
        fputs(", \"recall\": ", f);
        json_num(f, x->recall);
        fputs(", \"f1\": ", f);
        json_num(f, x->f1);
        fputs(", \"fields\": [", f);
        for (size_t i = 0; i < x->n_fields; i++) {
            const struct sl_field_stats *fs = &x->fields[i];
            fputs(i ? ", {\"key\": " : "{\"key\": ", f);
            sl_json_fputs(f, fs->key);
            fprintf(f, ", \"tp\": %llu, \"fp\": %llu, \"fn\": %llu, \"precision\": ",
                    (unsigned long long)fs->tp, (unsigned long long)fs->fp, (unsigned long long)fs->fn);
            json_num(f, fs->precision);
            fputs(", \"recall\": ", f);
            json_num(f, fs->recall);
            fputs(", \"f1\": ", f);
            json_num(f, fs->f1);
            fputc('}', f);
        }
        fputs("]}", f);
    }
    if (r->n_latency) {
        struct sl_latency_summary ls;
        if (sl_latency_summarize(&ls, r->latency_ms, r->n_latency, err) == 0) {
            fputs(",\n  \"latency_ms\": {\"p50\": ", f);
            json_num(f, ls.p50);
            fputs(", \"p95\": ", f);
            json_num(f, ls.p95);
            fputs(", \"p99\": ", f);
            json_num(f, ls.p99);
            fputs(", \"mean\": ", f);
            json_num(f, ls.mean);
            fputc('}', f);
        }
    }
    if (r->guarantee) {
        const struct sl_guarantee *g = r->guarantee;
        fprintf(f, ",\n  \"guarantee\": {\"found\": %s, \"threshold\": ", g->found ? "true" : "false");
        json_num(f, g->threshold);
        fputs(", \"epsilon\": ", f);
        json_num(f, g->epsilon);
        fputs(", \"delta\": ", f);
        json_num(f, g->delta);
        fputs(", \"coverage\": ", f);
        json_num(f, g->coverage);
        fputs(", \"risk\": ", f);
        json_num(f, g->risk);
        fputs(", \"ucb\": ", f);
        json_num(f, g->ucb);
        fprintf(f, ", \"n_cal\": %llu, \"steps\": [", (unsigned long long)g->n_cal);
        for (size_t i = 0; i < g->n_steps; i++) {
            const struct sl_guarantee_step *st = &g->steps[i];
            fputs(i ? ", {\"threshold\": " : "{\"threshold\": ", f);
            json_num(f, st->threshold);
            fprintf(f, ", \"n_accepted\": %llu, \"n_loss\": %llu, \"ucb\": ",
                    (unsigned long long)st->n_accepted, (unsigned long long)st->n_loss);
            json_num(f, st->ucb);
            fputs(", \"p_value\": ", f);
            json_num(f, st->p_value);
            fprintf(f, ", \"certified\": %s}", st->certified ? "true" : "false");
        }
        fputs("]}", f);
    }
    if (r->failures) {
        fputs(",\n  \"failures\": ", f);
        int rc = sl_failures_json(r->failures, f, err);
        if (rc) return rc;
    }
    fputs("\n}\n", f);
    if (ferror(f)) return sl_err_set(err, SL_EIO, "%s: write error", __func__);
    return 0;
}

/* ==== charts =============================================================== */

/* Chart geometry: W x H with the plot area inset by the margins. */
enum { CW = 560, CH = 340, ML = 58, MR = 16, MT = 16, MB = 46 };

struct axes {
    double x0, x1, y0, y1;
};

static double px(const struct axes *a, double x)
{
    return ML + (x - a->x0) / (a->x1 - a->x0) * (CW - ML - MR);
}

static double py(const struct axes *a, double y)
{
    return CH - MB - (y - a->y0) / (a->y1 - a->y0) * (CH - MT - MB);
}

static const char *palette[] = {"#1f6feb", "#d1242f", "#8250df", "#1a7f37", "#bf8700", "#57606a"};

static void svg_open(FILE *f, const char *id, const char *aria)
{
    fprintf(f, "<svg id=\"%s\" class=\"chart\" viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" "
               "role=\"img\" aria-label=\"",
            id, CW, CH, CW, CH);
    html_str(f, aria);
    fputs("\" xmlns=\"http://www.w3.org/2000/svg\">\n", f);
}

/* Axes with 5 ticks each, grid lines and labels; fmt_pct shows x100 with %. */
static void svg_axes(FILE *f, const struct axes *a, const char *xlabel, const char *ylabel,
                     bool xpct, bool ypct)
{
    fprintf(f, "<rect class=\"plot\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\"/>\n", ML, MT,
            CW - ML - MR, CH - MT - MB);
    for (int i = 0; i <= 5; i++) {
        double xv = a->x0 + (a->x1 - a->x0) * i / 5.0, yv = a->y0 + (a->y1 - a->y0) * i / 5.0;
        double X = px(a, xv), Y = py(a, yv);
        fprintf(f, "<line class=\"grid\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>", X, MT, X,
                CH - MB);
        fprintf(f, "<line class=\"grid\" x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>", ML, Y,
                CW - MR, Y);
        if (xpct)
            fprintf(f, "<text class=\"tick\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.0f%%</text>",
                    X, CH - MB + 16, 100 * xv);
        else
            fprintf(f, "<text class=\"tick\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.3g</text>",
                    X, CH - MB + 16, xv);
        if (ypct)
            fprintf(f, "<text class=\"tick\" x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.*f%%</text>\n",
                    ML - 6, Y + 4, a->y1 - a->y0 < 0.5 ? 1 : 0, 100 * yv);
        else
            fprintf(f, "<text class=\"tick\" x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n",
                    ML - 6, Y + 4, yv);
    }
    fprintf(f, "<text class=\"label\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">", (ML + CW - MR) / 2,
            CH - 8);
    html_str(f, xlabel);
    fprintf(f, "</text><text class=\"label\" transform=\"translate(14 %d) rotate(-90)\" "
               "text-anchor=\"middle\">",
            (MT + CH - MB) / 2);
    html_str(f, ylabel);
    fputs("</text>\n", f);
}

/* Legend entry i; n > 0 stacks n entries in the bottom-right corner
 * instead of the top-left one (for curves that rise to the right). */
static void svg_legend_at(FILE *f, int i, int n, const char *color, const char *name, bool dashed)
{
    int x = ML + 12, y = MT + 14 + 16 * i;
    if (n > 0) {
        x = CW - MR - 200;
        y = CH - MB - 8 - 16 * (n - 1 - i);
    }
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2.5\"%s/>",
            x, y - 4, x + 18, y - 4, color, dashed ? " stroke-dasharray=\"5 3\"" : "");
    fprintf(f, "<text class=\"legend\" x=\"%d\" y=\"%d\">", x + 24, y);
    html_str(f, name);
    fputs("</text>\n", f);
}

static void svg_legend(FILE *f, int i, const char *color, const char *name, bool dashed)
{
    svg_legend_at(f, i, 0, color, name, dashed);
}

/* Quality against the share of large-tier calls, one polyline per router. */
static void chart_router(FILE *f, const struct sl_report *r)
{
    double lo = 1, hi = 0;
    for (size_t i = 0; i < r->n_curves; i++)
        for (size_t k = 0; k < r->curves[i].n_pts; k++) {
            double q = r->curves[i].pts[k].quality;
            if (q < lo) lo = q;
            if (q > hi) hi = q;
        }
    double pad = (hi - lo) * 0.08 + 1e-3;
    struct axes a = {0, 1, lo - pad, hi + pad};
    svg_open(f, "chart-router", "quality against the share of calls to the large tier");
    svg_axes(f, &a, "calls to the large tier", "quality (fraction correct)", true, true);
    for (size_t i = 0; i < r->n_curves; i++) {
        const struct sl_router_curve *c = &r->curves[i];
        const char *col = palette[i % 6];
        bool dashed = !strcmp(c->name, "random");
        fprintf(f, "<polyline class=\"series\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"",
                col, dashed ? " stroke-dasharray=\"5 3\"" : "");
        /* at most ~600 vertices: enough for the eye at this width */
        size_t step = c->n_pts > 600 ? c->n_pts / 600 : 1;
        for (size_t k = 0; k < c->n_pts; k++) {
            if (k % step && k + 1 != c->n_pts) continue;
            fprintf(f, "%.1f,%.1f ", px(&a, c->pts[k].calls), py(&a, c->pts[k].quality));
        }
        fputs("\"/>\n", f);
        char nm[96];
        snprintf(nm, sizeof nm, "%s (APGR %.3f)", c->name, c->apgr);
        svg_legend_at(f, (int)i, (int)r->n_curves, col, nm, dashed);
    }
    if (r->n_curves) {
        double q95 = 0.95 * r->curves[0].q_large;
        if (q95 > a.y0 && q95 < a.y1)
            fprintf(f, "<line class=\"ref\" x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>"
                       "<text class=\"tick\" x=\"%d\" y=\"%.1f\" text-anchor=\"end\">95%% of large</text>\n",
                    ML, py(&a, q95), CW - MR, py(&a, q95), CW - MR - 4, py(&a, q95) - 4);
    }
    fputs("</svg>\n", f);
}

/* Cost against quality: every threshold, the Pareto frontier, the two tiers alone. */
static int cmp_point_cost(const void *a, const void *b)
{
    const struct sl_cascade_point *x = a, *y = b;
    if (x->cost != y->cost) return x->cost < y->cost ? -1 : 1;
    return (x->quality > y->quality) - (x->quality < y->quality);
}

static void chart_frontier(FILE *f, const struct sl_frontier *fr)
{
    double cmin = fr->small_only.cost, cmax = fr->large_only.cost, qmin = 1, qmax = 0;
    for (size_t i = 0; i < fr->n_points; i++) {
        const struct sl_cascade_point *p = &fr->points[i];
        if (p->cost < cmin) cmin = p->cost;
        if (p->cost > cmax) cmax = p->cost;
        if (p->quality < qmin) qmin = p->quality;
        if (p->quality > qmax) qmax = p->quality;
    }
    const struct sl_cascade_point *tiers[2] = {&fr->small_only, &fr->large_only};
    for (int e = 0; e < 2; e++) {
        if (tiers[e]->quality < qmin) qmin = tiers[e]->quality;
        if (tiers[e]->quality > qmax) qmax = tiers[e]->quality;
    }
    double cp = (cmax - cmin) * 0.05 + 1e-9, qp = (qmax - qmin) * 0.08 + 1e-3;
    struct axes a = {cmin - cp < 0 && cmin >= 0 ? 0 : cmin - cp, cmax + cp, qmin - qp, qmax + qp};
    svg_open(f, "chart-frontier", "cost against quality of every cascade threshold");
    svg_axes(f, &a, "mean cost per request", "quality (fraction correct)", false, true);
    size_t step = fr->n_points > 800 ? fr->n_points / 800 : 1;
    for (size_t i = 0; i < fr->n_points; i += step)
        fprintf(f, "<circle class=\"pt\" cx=\"%.1f\" cy=\"%.1f\" r=\"1.6\"/>", px(&a, fr->points[i].cost),
                py(&a, fr->points[i].quality));
    /* the frontier runs through every Pareto point, a tier alone included
     * (the cheapest end is often small only), in order of cost; a sparse
     * frontier's points are marked too, so one of a single point still shows */
    const struct sl_cascade_point *ends[2] = {&fr->small_only, &fr->large_only};
    struct sl_cascade_point *par = malloc((fr->n_points + 2) * sizeof *par);
    size_t n_par = 0;
    for (size_t i = 0; par && i < fr->n_points; i++)
        if (fr->points[i].pareto) par[n_par++] = fr->points[i];
    for (int e = 0; par && e < 2; e++)
        if (ends[e]->pareto) par[n_par++] = *ends[e];
    if (par) qsort(par, n_par, sizeof *par, cmp_point_cost);
    fputs("\n<polyline class=\"pareto\" fill=\"none\" points=\"", f);
    for (size_t i = 0; i < n_par; i++)
        fprintf(f, "%.1f,%.1f ", px(&a, par[i].cost), py(&a, par[i].quality));
    fputs("\"/>\n", f);
    for (size_t i = 0; n_par <= 60 && i < n_par; i++)
        fprintf(f, "<circle class=\"pareto-pt\" cx=\"%.1f\" cy=\"%.1f\" r=\"3\"/>",
                px(&a, par[i].cost), py(&a, par[i].quality));
    free(par);
    const char *names[2] = {"small only", "large only"};
    for (int e = 0; e < 2; e++) {
        double X = px(&a, ends[e]->cost), Y = py(&a, ends[e]->quality);
        fprintf(f, "<rect class=\"tier\" x=\"%.1f\" y=\"%.1f\" width=\"9\" height=\"9\"/>"
                   "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\">%s</text>\n",
                X - 4.5, Y - 4.5, X + (e ? -8 : 8), Y - 8, e ? "end" : "start", names[e]);
    }
    svg_legend(f, 0, "#d1242f", "Pareto frontier", false);
    fputs("</svg>\n", f);
}

static void chart_reliability(FILE *f, const struct sl_reliability *rl)
{
    struct axes a = {0, 1, 0, 1};
    svg_open(f, "chart-reliability", "reliability diagram: accuracy against confidence per bin");
    svg_axes(f, &a, "confidence", "accuracy", true, true);
    fprintf(f, "<line class=\"ref\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", px(&a, 0),
            py(&a, 0), px(&a, 1), py(&a, 1));
    double w = (px(&a, 1) - px(&a, 0)) / rl->n_bins;
    for (int b = 0; b < rl->n_bins; b++) {
        if (!rl->count[b]) continue;
        double X = px(&a, (double)b / rl->n_bins), Y = py(&a, rl->accuracy[b]);
        fprintf(f, "<rect class=\"bar\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\">"
                   "<title>bin %d: %llu examples, confidence %.3f, accuracy %.3f</title></rect>",
                X + 1, Y, w - 2, py(&a, 0) - Y, b, (unsigned long long)rl->count[b],
                rl->mean_conf[b], rl->accuracy[b]);
        fprintf(f, "<circle class=\"conf\" cx=\"%.1f\" cy=\"%.1f\" r=\"3\"/>\n", px(&a, rl->mean_conf[b]),
                py(&a, rl->mean_conf[b]));
    }
    char nm[64];
    snprintf(nm, sizeof nm, "ECE %.4f (15 bins)", rl->ece);
    svg_legend(f, 0, "#1f6feb", nm, false);
    fputs("</svg>\n", f);
}

#define SL_REPORT_MAX_HEATMAP 40 /* classes drawn as a heat map; more is a table's job */

static void chart_confusion(FILE *f, const char *id, const struct sl_class_report *c,
                            const char *const *names)
{
    int k = c->n_class;
    if (k > SL_REPORT_MAX_HEATMAP) {
        fprintf(f, "<p>%d classes: too many to draw; the matrix is in the JSON report.</p>\n", k);
        return;
    }
    uint64_t mx = 1;
    for (size_t i = 0; i < (size_t)k * (size_t)k; i++)
        if (c->confusion[i] > mx) mx = c->confusion[i];
    int side = CH - MT - MB, cell = side / (k ? k : 1), x0 = ML + 60, y0 = MT;
    svg_open(f, id, "confusion matrix: true class by row, predicted by column");
    for (int i = 0; i < k; i++) {
        for (int j = 0; j < k; j++) {
            uint64_t v = c->confusion[(size_t)i * (size_t)k + (size_t)j];
            double t = (double)v / (double)mx;
            int g = (int)(245 - 180 * t), bl = (int)(250 - 90 * t);
            fprintf(f, "<rect class=\"cell\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" "
                       "fill=\"rgb(%d,%d,%d)\"/>",
                    x0 + j * cell, y0 + i * cell, cell - 1, cell - 1, (int)(240 - 210 * t), g, bl);
            fprintf(f, "<text class=\"num\" x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"%s\">%llu</text>\n",
                    x0 + j * cell + cell / 2, y0 + i * cell + cell / 2 + 5, t > 0.55 ? "#fff" : "#111",
                    (unsigned long long)v);
        }
        char nm[40];
        if (names)
            snprintf(nm, sizeof nm, "%s", names[i]);
        else
            snprintf(nm, sizeof nm, "%d", i);
        fprintf(f, "<text class=\"tick\" x=\"%d\" y=\"%d\" text-anchor=\"end\">", x0 - 6,
                y0 + i * cell + cell / 2 + 4);
        html_str(f, nm);
        fprintf(f, "</text><text class=\"tick\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">",
                x0 + i * cell + cell / 2, y0 + k * cell + 16);
        html_str(f, nm);
        fputs("</text>\n", f);
    }
    fprintf(f, "<text class=\"label\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">predicted</text>",
            x0 + k * cell / 2, CH - 8);
    fprintf(f, "<text class=\"label\" transform=\"translate(14 %d) rotate(-90)\" "
               "text-anchor=\"middle\">true</text>\n</svg>\n",
            y0 + k * cell / 2);
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void chart_latency(FILE *f, const double *ms, size_t n)
{
    enum { NB = 30 };
    uint64_t cnt[NB] = {0}, mx = 1;
    double *s = malloc(n * sizeof *s);
    if (!s) return;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(ms[i])) s[m++] = ms[i] < 0 ? 0 : ms[i]; /* NaN/inf samples are not drawn */
    if (m == 0) {
        free(s);
        return;
    }
    n = m;
    qsort(s, n, sizeof *s, cmp_dbl);
    double lo = 0, hi = s[n - 1] > 0 ? s[n - 1] * 1.02 : 1;
    for (size_t i = 0; i < n; i++) {
        int b = (int)((s[i] - lo) / (hi - lo) * NB);
        if (b < 0) b = 0;
        if (b >= NB) b = NB - 1;
        if (++cnt[b] > mx) mx = cnt[b];
    }
    struct axes a = {lo, hi, 0, 5 * ceil((double)mx * 1.1 / 5)}; /* integer ticks */
    svg_open(f, "chart-latency", "latency histogram with p50, p95 and p99");
    svg_axes(f, &a, "latency (ms)", "requests", false, false);
    double w = (px(&a, hi) - px(&a, lo)) / NB;
    for (int b = 0; b < NB; b++) {
        double X = px(&a, lo + (hi - lo) * b / NB), Y = py(&a, (double)cnt[b]);
        fprintf(f, "<rect class=\"bar\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/>", X + 0.5,
                Y, w - 1, py(&a, 0) - Y);
    }
    const double ps[3] = {50, 95, 99};
    for (int i = 0; i < 3; i++) {
        double v = sl_percentile_sorted(s, n, ps[i]), X = px(&a, v);
        bool left = X > CW - MR - 90; /* keep the label inside the plot */
        fprintf(f, "\n<line class=\"ref\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>"
                   "<text class=\"tick\" x=\"%.1f\" y=\"%d\" text-anchor=\"%s\">p%.0f %.3g ms</text>",
                X, MT, X, CH - MB, left ? X - 3 : X + 3, MT + 12 + 14 * i, left ? "end" : "start",
                ps[i], v);
    }
    fputs("\n</svg>\n", f);
    free(s);
}

/* ==== HTML ================================================================= */

static const char *css =
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;"
    "max-width:1240px;color:#1f2328;background:#fff;padding:0 16px}"
    "h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:0 0 8px}"
    ".sub{color:#57606a;margin:0 0 18px}"
    "table{border-collapse:collapse;margin:0 0 18px}td,th{padding:4px 10px;border-bottom:1px solid "
    "#d0d7de;text-align:right}th:first-child,td:first-child{text-align:left}th{background:#f6f8fa}"
    ".grid2{display:flex;flex-wrap:wrap;gap:18px}.card{border:1px solid #d0d7de;border-radius:6px;"
    "padding:12px;background:#fff}.card p{margin:6px 0 0;color:#57606a;max-width:560px}"
    "svg.chart{display:block;max-width:100%;height:auto}"
    ".plot{fill:#fbfcfd;stroke:#d0d7de}.grid{stroke:#eaeef2}.tick{font-size:11px;fill:#57606a}"
    ".label{font-size:12px;fill:#1f2328}.legend{font-size:12px;fill:#1f2328}"
    ".ref{stroke:#8c959f;stroke-dasharray:4 3}.bar{fill:#1f6feb;fill-opacity:.75}"
    ".conf{fill:#d1242f}.pt{fill:#8c959f}.pareto{stroke:#d1242f;stroke-width:2}"
    ".pareto-pt{fill:#d1242f}"
    ".tier{fill:#1a7f37}.num{font-size:12px}.card.wide{margin:18px 0 0;overflow-x:auto}";

int sl_report_html(const struct sl_report *r, FILE *f, struct sl_err *err)
{
    char v[64];
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>",
          f);
    html_str(f, r->title ? r->title : "sluice evaluation");
    fprintf(f, "</title><style>%s</style></head><body>\n<h1>", css);
    html_str(f, r->title ? r->title : "sluice evaluation");
    fputs("</h1><p class=\"sub\">", f);
    html_str(f, r->subtitle);
    fputs("</p>\n", f);
    if (r->n_curves) {
        fputs("<h2>Routers</h2><table id=\"routers\"><tr><th>router</th><th>APGR</th>"
              "<th>APGR (10 quantiles)</th><th>CPT(50%)</th><th>CPT(80%)</th>"
              "<th>large calls at 95% of large quality</th><th>cost saving</th></tr>\n",
              f);
        for (size_t i = 0; i < r->n_curves; i++) {
            const struct sl_router_curve *c = &r->curves[i];
            fputs("<tr><td>", f);
            html_str(f, c->name);
            fprintf(f, "</td><td>%.4f</td><td>%.4f</td><td>%.1f%%</td><td>%.1f%%</td><td>%.1f%%</td>"
                       "<td>%.1f%%</td></tr>\n",
                    c->apgr, c->apgr_q10, 100 * c->cpt50, 100 * c->cpt80, 100 * c->calls95,
                    100 * c->saving95);
        }
        fputs("</table>\n", f);
    }
    if (r->n_metrics) {
        fputs("<h2>Metrics</h2><table id=\"metrics\">\n", f);
        for (size_t i = 0; i < r->n_metrics; i++) {
            fmt_val(v, sizeof v, r->metrics[i].value);
            fputs("<tr><td>", f);
            html_str(f, r->metrics[i].label ? r->metrics[i].label : r->metrics[i].name);
            fprintf(f, "</td><td>%s</td></tr>\n", v);
        }
        fputs("</table>\n", f);
    }
    if (r->n_targets) {
        const struct sl_report_target *t0 = &r->targets[0];
        fputs("<h2>", f);
        html_str(f, r->targets_title ? r->targets_title : "Targets");
        fputs("</h2><table id=\"targets\"><tr><th>metric</th>", f);
        for (size_t t = 0; t < r->n_targets; t++) {
            fputs("<th>", f);
            html_str(f, r->targets[t].name);
            fputs("</th>", f);
        }
        fputs("</tr>\n", f);
        for (size_t i = 0; i < t0->n_metrics; i++) {
            fputs("<tr data-metric=\"", f);
            html_str(f, t0->metrics[i].name);
            fputs("\"><td>", f);
            html_str(f, t0->metrics[i].label ? t0->metrics[i].label : t0->metrics[i].name);
            fputs("</td>", f);
            for (size_t t = 0; t < r->n_targets; t++) {
                const struct sl_report_target *tg = &r->targets[t];
                fmt_val(v, sizeof v, i < tg->n_metrics ? tg->metrics[i].value : NAN);
                fprintf(f, "<td>%s</td>", v);
            }
            fputs("</tr>\n", f);
        }
        fputs("</table>\n", f);
    }
    if (r->fields && r->fields->n_fields) {
        const struct sl_extract_report *x = r->fields;
        fputs("<h2>Fields", f);
        if (r->fields_what) {
            fputs(" (", f);
            html_str(f, r->fields_what);
            fputc(')', f);
        }
        fputs("</h2><table id=\"fields\"><tr><th>field</th><th>precision</th><th>recall</th>"
              "<th>F1</th><th>tp</th><th>fp</th><th>fn</th></tr>\n",
              f);
        for (size_t i = 0; i < x->n_fields; i++) {
            const struct sl_field_stats *fs = &x->fields[i];
            fputs("<tr><td>", f);
            html_str(f, fs->key);
            fprintf(f, "</td><td>%.4f</td><td>%.4f</td><td>%.4f</td><td>%llu</td><td>%llu</td>"
                       "<td>%llu</td></tr>\n",
                    fs->precision, fs->recall, fs->f1, (unsigned long long)fs->tp,
                    (unsigned long long)fs->fp, (unsigned long long)fs->fn);
        }
        fprintf(f, "</table><p>Exact match %.4f; micro-averaged precision %.4f, recall %.4f, "
                   "F1 %.4f over %zu examples.</p>\n",
                x->exact_match, x->precision, x->recall, x->f1, x->n);
    }
    fputs("<div class=\"grid2\">\n", f);
    if (r->n_curves) {
        fputs("<div class=\"card\"><h2>Quality against calls to the large tier</h2>", f);
        chart_router(f, r);
        fputs("<p>Each router sends its highest-scored requests to the large tier. The dashed line "
              "is a random router; the area between the tiers it recovers is APGR.</p></div>\n",
              f);
    }
    if (r->frontier) {
        fputs("<div class=\"card\"><h2>Cost against quality (cascade thresholds)</h2>", f);
        chart_frontier(f, r->frontier);
        fputs("<p>Grey: every threshold of the small&rarr;large cascade. Red: the Pareto frontier. "
              "Green squares: each tier alone. ",
              f);
        html_str(f, r->frontier_what);
        fputs("</p></div>\n", f);
    }
    if (r->reliability) {
        fputs("<div class=\"card\"><h2>Reliability diagram</h2>", f);
        chart_reliability(f, r->reliability);
        fputs("<p>Bars: accuracy per confidence bin; dots: mean confidence; the diagonal is perfect "
              "calibration. ",
              f);
        html_str(f, r->reliability_what);
        fputs("</p></div>\n", f);
    }
    if (r->cls) {
        fputs("<div class=\"card\"><h2>Confusion matrix", f);
        if (r->cls_what) {
            fputs(": ", f);
            html_str(f, r->cls_what);
        }
        fputs("</h2>", f);
        chart_confusion(f, "chart-confusion", r->cls, r->class_names);
        fprintf(f, "<p>Accuracy %.4f, macro-F1 %.4f over %zu examples.</p></div>\n", r->cls->accuracy,
                r->cls->macro_f1, r->cls->n);
    }
    for (size_t m = 0; m < r->n_more_cls; m++) {
        const struct sl_class_report *c = r->more_cls[m].cls;
        char id[48];
        snprintf(id, sizeof id, "chart-confusion-%zu", m + 1);
        fputs("<div class=\"card\"><h2>Confusion matrix: ", f);
        html_str(f, r->more_cls[m].name);
        fputs("</h2>", f);
        chart_confusion(f, id, c, r->class_names);
        fprintf(f, "<p>Accuracy %.4f, macro-F1 %.4f over %zu examples.</p></div>\n", c->accuracy,
                c->macro_f1, c->n);
    }
    if (r->n_latency) {
        fputs("<div class=\"card\"><h2>Latency</h2>", f);
        chart_latency(f, r->latency_ms, r->n_latency);
        fputs("<p>Requests per latency bin; dashed lines mark p50, p95 and p99 (nearest rank). ", f);
        html_str(f, r->latency_what);
        fputs("</p></div>\n", f);
    }
    fputs("</div>\n", f);
    if (r->failures) {
        fputs("<div class=\"card wide\">", f);
        int rc = sl_failures_html(r->failures, f, err);
        if (rc) return rc;
        fputs("</div>\n", f);
    }
    if (r->guarantee) {
        const struct sl_guarantee *g = r->guarantee;
        fputs("<h2>Threshold with a guarantee</h2><p id=\"guarantee\">", f);
        if (g->found)
            fprintf(f, "Accept the small tier when its confidence &ge; %.6g: it keeps %.1f%% of "
                       "requests with a calibration error of %.4f; the Clopper&ndash;Pearson upper "
                       "bound %.4f is &le; &epsilon; = %.4g, so the error on accepted requests is "
                       "&le; &epsilon; with probability &ge; %.3g (fixed-sequence testing, %zu "
                       "grid thresholds tested, %llu calibration examples).",
                    g->threshold, 100 * g->coverage, g->risk, g->ucb, g->epsilon, 1 - g->delta,
                    g->n_steps, (unsigned long long)g->n_cal);
        else
            fprintf(f, "No threshold keeps the error on accepted requests &le; %.4g with "
                       "probability &ge; %.3g on this calibration split: escalate everything.",
                    g->epsilon, 1 - g->delta);
        fputs("</p>\n", f);
    }
    fputs("<p class=\"sub\">Generated by sluice. Self-contained: no scripts, no outside files.</p>\n"
          "</body></html>\n",
          f);
    if (ferror(f)) return sl_err_set(err, SL_EIO, "%s: write error", __func__);
    return 0;
}
