/*
 * fuzz_results.c - libFuzzer target for the results.jsonl reader
 * (sl_results_load_buf) and the failure modes computed and written from
 * what it loads (failures.c: the terminal, JSON and HTML writers). The
 * first byte picks the failure parameters (top N, length buckets, the
 * distinct-value limit, class slices); the rest is the file, copied into a
 * buffer of its exact size. A load that succeeds must give consistent
 * arrays, and every writer must succeed on what compute returns.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/failures.h"
#include "eval/results.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *sink(void)
{
    static FILE *f;
    if (!f) f = fopen("/dev/null", "w");
    return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    unsigned mode = data[0];
    size_t len = size - 1;
    char *buf = malloc(len ? len : 1);
    if (!buf) return 0;
    memcpy(buf, data + 1, len);
    struct sl_results r;
    struct sl_err err = {0};
    int rc = sl_results_load_buf(&r, buf, len, "fuzz.jsonl", &err);
    if (rc == 0) {
        if (r.n == 0 || r.n_targets == 0) abort(); /* "no results" is an error */
        for (size_t i = 0; i < r.n; i++) {
            if (!r.id[i]) abort();
            bool any = false;
            for (size_t t = 0; t < r.n_targets; t++)
                any |= sl_results_cell(&r, i, (int)t)->present;
            if (!any) abort(); /* every example came from a line */
        }
        for (size_t t = 0; t < r.n_targets; t++)
            if (sl_results_target(&r, r.targets[t]) != (int)t) abort();
        struct sl_failures_params p = sl_failures_default_params();
        p.top_n = mode & 7;
        p.n_len_buckets = (mode >> 3) & 7;
        p.max_values = mode & 64 ? 2 : 50;
        p.by_class = !(mode & 128);
        for (size_t t = 0; t < r.n_targets && t < 3; t++) {
            struct sl_failures f;
            int x = sl_failures_compute(&f, &r, r.targets[t], NULL, &p, &err);
            if (x == 0) {
                if (f.n_wrong > f.n || f.n_top > p.top_n) abort();
                FILE *o = sink();
                sl_failures_print(&f, o);
                if (sl_failures_json(&f, o, &err) || sl_failures_html(&f, o, &err)) abort();
                sl_failures_free(&f);
            } else if (x != SL_EINVAL) {
                abort(); /* the target exists; only "no known result" may fail */
            }
        }
        sl_results_free(&r);
    } else if (rc > 0 || !err.msg[0]) {
        abort();
    }
    free(buf);
    return 0;
}
