/*
 * cli.c - option parsing, errors and the progress bar (tools layer).
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int cli_fail(const struct sl_err *err, const char *hint)
{
    fprintf(stderr, "sluice: error: %s\n", err && err->msg[0] ? err->msg : "failed");
    if (hint) fprintf(stderr, "hint: %s\n", hint);
    return CLI_EXIT_ERR;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "sluice %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(see 'sluice %s --help')\n", cmd);
    return CLI_EXIT_USAGE;
}

static int parse_value(const char *cmd, const struct cli_opt *o, const char *name, const char *s)
{
    char *end;
    errno = 0;
    switch (o->kind) {
    case CLI_STR:
        *(const char **)o->dst = s;
        return 0;
    case CLI_LIST: {
        struct cli_list *l = o->dst;
        if (l->n == CLI_LIST_MAX) return cli_usage(cmd, "%s: at most %d values", name, CLI_LIST_MAX);
        l->v[l->n++] = s;
        return 0;
    }
    case CLI_INT: {
        long long v = strtoll(s, &end, 10);
        if (errno || end == s || *end || (double)v < o->lo || (double)v > o->hi)
            return cli_usage(cmd, "%s: '%s' is not an integer in [%.0f, %.0f]", name, s, o->lo, o->hi);
        *(long long *)o->dst = v;
        return 0;
    }
    case CLI_FLOAT: {
        double v = strtod(s, &end);
        if (errno || end == s || *end || !(v >= o->lo && v <= o->hi))
            return cli_usage(cmd, "%s: '%s' is not a number in [%g, %g]", name, s, o->lo, o->hi);
        *(double *)o->dst = v;
        return 0;
    }
    case CLI_FLAG:
        break;
    }
    return cli_usage(cmd, "%s takes no value", name);
}

int cli_parse(const char *cmd, const char *usage, int argc, char **argv, const struct cli_opt *opts,
              size_t n_opts, const char **pos, int max_pos, int *n_pos)
{
    int np = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            return -1;
        }
        if (a[0] != '-' || !a[1]) {
            if (np >= max_pos) return cli_usage(cmd, "unexpected argument '%s'", a);
            pos[np++] = a;
            continue;
        }
        const struct cli_opt *o = NULL;
        const char *val = NULL;
        for (size_t k = 0; k < n_opts && !o; k++) {
            size_t ln = strlen(opts[k].long_name);
            if (!strcmp(a, opts[k].long_name) || (opts[k].short_name && !strcmp(a, opts[k].short_name)))
                o = &opts[k];
            else if (!strncmp(a, opts[k].long_name, ln) && a[ln] == '=')
                o = &opts[k], val = a + ln + 1;
        }
        if (!o) return cli_usage(cmd, "unknown option '%s'", a);
        if (o->kind == CLI_FLAG) {
            if (val) return cli_usage(cmd, "%s takes no value", o->long_name);
            *(bool *)o->dst = true;
            continue;
        }
        if (!val) {
            if (i + 1 >= argc) return cli_usage(cmd, "%s needs a value", a);
            val = argv[++i];
        }
        int rc = parse_value(cmd, o, o->long_name, val);
        if (rc) return rc;
    }
    if (n_pos) *n_pos = np;
    return 0;
}

void cli_progress(const char *label, uint64_t done, uint64_t total)
{
    static struct timespec t0;
    static int last_pct = -1;
    if (!isatty(STDERR_FILENO) || total == 0) return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (done == 0 || t0.tv_sec == 0) {
        t0 = now;
        last_pct = -1;
    }
    int pct = (int)(100 * done / total);
    if (pct == last_pct && done != total) return;
    last_pct = pct;
    double el = (double)(now.tv_sec - t0.tv_sec) + 1e-9 * (double)(now.tv_nsec - t0.tv_nsec);
    double eta = done ? el * (double)(total - done) / (double)done : 0;
    int w = 30, fill = (int)(w * done / total);
    char bar[64];
    for (int k = 0; k < w; k++) bar[k] = k < fill ? '#' : '.';
    bar[w] = 0;
    fprintf(stderr, "\r%s [%s] %3d%% %llu/%llu  %.0fs left ", label, bar, pct,
            (unsigned long long)done, (unsigned long long)total, eta);
    if (done == total) {
        fputc('\n', stderr);
        t0.tv_sec = 0;
    }
}
