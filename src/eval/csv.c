/*
 * csv.c - RFC 4180 CSV records as views into the caller's buffer (eval
 * layer). Used by the replay loader (recorded router benchmarks) and by
 * `sluice eval` data files. See csv.h for the contract; fuzzed by
 * tests/fuzz/fuzz_csv.c.
 */
#include "eval/csv.h"

#include <string.h>

/* 1-based line number of byte offset pos, for error messages. */
static size_t line_of(const char *buf, size_t pos)
{
    size_t line = 1;
    for (size_t i = 0; i < pos; i++)
        if (buf[i] == '\n') line++;
    return line;
}

int sl_csv_next(const char *buf, size_t len, size_t *pos, struct sl_csv_field *fields,
                size_t max_fields, size_t *n_fields, struct sl_err *err)
{
    size_t i = *pos, nf = 0;
    if (max_fields > SL_CSV_MAX_FIELDS) max_fields = SL_CSV_MAX_FIELDS;
    *n_fields = 0;
    /* skip blank lines */
    for (;;) {
        if (i < len && buf[i] == '\n') {
            i++;
        } else if (i + 1 < len && buf[i] == '\r' && buf[i + 1] == '\n') {
            i += 2;
        } else {
            break;
        }
    }
    if (i >= len) {
        *pos = len;
        return 0;
    }
    for (;;) {
        struct sl_csv_field f = {0};
        if (nf >= max_fields)
            return sl_err_set(err, SL_ERANGE, "%s: line %zu: more than %zu fields in a record",
                              __func__, line_of(buf, i), max_fields);
        if (i < len && buf[i] == '"') {
            size_t start = ++i;
            for (;;) {
                if (i >= len)
                    return sl_err_set(err, SL_EFORMAT, "%s: line %zu: quoted field never closed",
                                      __func__, line_of(buf, start));
                if (buf[i] == '"') {
                    if (i + 1 < len && buf[i + 1] == '"') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i++;
            }
            f.p = buf + start;
            f.len = i - start;
            f.quoted = true;
            i++; /* closing quote */
            if (i < len && buf[i] != ',' && buf[i] != '\n' &&
                !(buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n'))
                return sl_err_set(err, SL_EFORMAT, "%s: line %zu: data after a closing quote",
                                  __func__, line_of(buf, i));
        } else {
            size_t start = i;
            while (i < len && buf[i] != ',' && buf[i] != '\n' &&
                   !(buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n')) {
                if (buf[i] == '"')
                    return sl_err_set(err, SL_EFORMAT,
                                      "%s: line %zu: quote inside an unquoted field", __func__,
                                      line_of(buf, i));
                i++;
            }
            f.p = buf + start;
            f.len = i - start;
        }
        if (f.len > SL_CSV_MAX_FIELD_BYTES)
            return sl_err_set(err, SL_ERANGE, "%s: line %zu: field of %zu bytes (limit %zu)",
                              __func__, line_of(buf, i), f.len, SL_CSV_MAX_FIELD_BYTES);
        fields[nf++] = f;
        if (i >= len) break;
        if (buf[i] == ',') {
            i++;
            continue;
        }
        /* line end: LF or CRLF */
        i += buf[i] == '\r' ? 2 : 1;
        break;
    }
    *pos = i;
    *n_fields = nf;
    return 1;
}

size_t sl_csv_field_len(const struct sl_csv_field *f)
{
    size_t n = f->len;
    if (f->quoted)
        for (size_t i = 0; i + 1 < f->len; i++)
            if (f->p[i] == '"' && f->p[i + 1] == '"') {
                n--;
                i++;
            }
    return n;
}

long sl_csv_field_copy(const struct sl_csv_field *f, char *dst, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < f->len; i++) {
        if (o + 1 >= cap) return SL_ERANGE;
        dst[o++] = f->p[i];
        if (f->quoted && f->p[i] == '"') i++; /* "" -> " */
    }
    if (cap) dst[o] = 0;
    return (long)o;
}

bool sl_csv_field_eq(const struct sl_csv_field *f, const char *s)
{
    size_t n = strlen(s), o = 0;
    for (size_t i = 0; i < f->len; i++, o++) {
        if (o >= n || s[o] != f->p[i]) return false;
        if (f->quoted && f->p[i] == '"') i++;
    }
    return o == n;
}
