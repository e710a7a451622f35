/*
 * buf.c - growable buffer with a hard cap (base layer). See buf.h.
 */
#include "buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

void sl_buf_init(struct sl_buf *b, size_t cap)
{
    memset(b, 0, sizeof *b);
    b->cap = cap ? cap : SIZE_MAX / 2;
}

void sl_buf_free(struct sl_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->size = 0;
}

static int reserve(struct sl_buf *b, size_t n)
{
    if (n > b->cap - b->len) return SL_ERANGE;
    if (b->len + n + 1 <= b->size) return 0;
    size_t size = b->size ? b->size : 256;
    while (size < b->len + n + 1)
        size *= 2;
    char *p = realloc(b->p, size);
    if (!p) return SL_ENOMEM;
    b->p = p;
    b->size = size;
    return 0;
}

int sl_buf_append(struct sl_buf *b, const void *data, size_t n)
{
    int rc = reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

int sl_buf_appendf(struct sl_buf *b, const char *fmt, ...)
{
    va_list ap;
    char small[256];
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return SL_EINVAL;
    if ((size_t)n < sizeof small) return sl_buf_append(b, small, (size_t)n);
    int rc = reserve(b, (size_t)n);
    if (rc) return rc;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

char *sl_buf_take(struct sl_buf *b, size_t *len)
{
    char *p = b->p;
    if (len) *len = b->len;
    b->p = NULL;
    b->len = b->size = 0;
    return p;
}
