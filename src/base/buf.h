/*
 * buf.h - a growable byte buffer with a hard cap (base layer).
 *
 * Appends fail with SL_ERANGE past `cap` and SL_ENOMEM when allocation
 * fails; the buffer is then unchanged. Always NUL-terminated after the
 * first successful append. Not thread-safe; owned by one caller.
 */
#ifndef SL_BUF_H
#define SL_BUF_H

#include <stddef.h>

struct sl_buf {
    char *p; /* NULL until the first append */
    size_t len;
    size_t size; /* allocated bytes */
    size_t cap;  /* most bytes len may reach; 0 = SIZE_MAX / 2 */
};

void sl_buf_init(struct sl_buf *b, size_t cap);
void sl_buf_free(struct sl_buf *b);
int sl_buf_append(struct sl_buf *b, const void *data, size_t n);
int sl_buf_appendf(struct sl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Take the data (caller frees); the buffer becomes empty. */
char *sl_buf_take(struct sl_buf *b, size_t *len);

#endif
