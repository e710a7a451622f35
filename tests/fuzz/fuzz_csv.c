/*
 * fuzz_csv.c - libFuzzer target for the RFC 4180 reader (sl_csv_next, the
 * field copy/compare helpers) and the replay loader on top of it. The
 * first byte picks the field limit per record and whether the replay
 * loader runs; the rest is the CSV text, copied into a buffer of its exact
 * size so any read past the end is an ASan error.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eval/csv.h"
#include "eval/replay.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    unsigned mode = data[0];
    size_t max_fields = 1 + (mode & 31), len = size - 1;
    char *buf = malloc(len ? len : 1);
    if (!buf) return 0;
    memcpy(buf, data + 1, len);
    struct sl_csv_field f[32];
    struct sl_err err = {0};
    size_t pos = 0, nf, records = 0;
    int rc;
    char tmp[64];
    while ((rc = sl_csv_next(buf, len, &pos, f, max_fields, &nf, &err)) == 1) {
        if (nf == 0 || nf > max_fields || pos > len) abort(); /* contract broken */
        for (size_t i = 0; i < nf; i++) {
            if (f[i].p < buf || f[i].p + f[i].len > buf + len) abort();
            long n = sl_csv_field_copy(&f[i], tmp, sizeof tmp);
            if (n >= 0 && (size_t)n != sl_csv_field_len(&f[i])) abort();
            if (n >= 0 && !sl_csv_field_eq(&f[i], tmp) && !memchr(tmp, 0, (size_t)n)) abort();
        }
        if (++records > len + 1) abort(); /* must make progress */
    }
    if (mode & 32) {
        struct sl_replay_data d = {0};
        sl_replay_load_buf(&d, buf, len, "fuzz.csv", &err);
        sl_replay_free(&d);
    }
    free(buf);
    return 0;
}
