/*
 * csv.h - an RFC 4180 CSV reader that does not allocate (eval layer).
 *
 * sl_csv_next() reads one record from a caller's buffer and returns views
 * into it: quoted fields point inside the quotes, with any doubled quote
 * ("") still doubled; sl_csv_field_copy() unescapes a field into a
 * caller's buffer. Records end with CRLF or LF (a bare CR is data); the last
 * record may lack a line end. Blank lines between records are skipped.
 * Hard limits (SL_CSV_MAX_*) bound the work on hostile input.
 *
 * Return of sl_csv_next: 1 = a record was read, 0 = end of input, or a
 * negative SL_E* code with the line number in err. Thread-safe (no state).
 */
#ifndef SL_EVAL_CSV_H
#define SL_EVAL_CSV_H

#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"

#define SL_CSV_MAX_FIELD_BYTES ((size_t)1 << 24) /* one field, raw bytes */
#define SL_CSV_MAX_FIELDS 1024                   /* fields in one record */

struct sl_csv_field {
    const char *p; /* view into the input; inside the quotes if quoted */
    size_t len;    /* raw bytes (doubled quotes counted twice) */
    bool quoted;
};

/* Reads the record at *pos in buf[0..len) into fields[0..max_fields).
 * On 1, *n_fields is the field count and *pos moves past the record.
 * More fields than max_fields (or SL_CSV_MAX_FIELDS) is SL_ERANGE. */
int sl_csv_next(const char *buf, size_t len, size_t *pos, struct sl_csv_field *fields,
                size_t max_fields, size_t *n_fields, struct sl_err *err);

/* Unescaped length of a field (doubled quotes count once). */
size_t sl_csv_field_len(const struct sl_csv_field *f);

/* Copies the unescaped field into dst (cap bytes, NUL-terminated).
 * Returns the unescaped length, or SL_ERANGE when it needs more than cap-1. */
long sl_csv_field_copy(const struct sl_csv_field *f, char *dst, size_t cap);

/* True when the unescaped field equals s. */
bool sl_csv_field_eq(const struct sl_csv_field *f, const char *s);

#endif
