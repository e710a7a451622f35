/*
 * sse.c - server-sent events framing (server layer). See sse.h.
 */
#include "sse.h"

#include <string.h>

#include "../base/err.h"

int sl_sse_data(struct sl_buf *b, const char *payload, size_t len)
{
    if (memchr(payload, '\n', len) || memchr(payload, '\r', len)) return SL_EINVAL;
    int rc = sl_buf_append(b, "data: ", 6);
    if (!rc) rc = sl_buf_append(b, payload, len);
    if (!rc) rc = sl_buf_append(b, "\n\n", 2);
    return rc;
}

int sl_sse_done(struct sl_buf *b)
{
    return sl_buf_append(b, "data: [DONE]\n\n", 14);
}

long sl_sse_parse(const char *s, size_t len, const char **data, size_t *n)
{
    const char *end = NULL;
    for (size_t i = 0; i + 1 < len; i++)
        if (s[i] == '\n' && s[i + 1] == '\n') {
            end = s + i;
            break;
        }
    if (!end) return len > (1u << 24) ? -1 : -2;
    if ((size_t)(end - s) < 6 || memcmp(s, "data: ", 6)) return -1;
    if (memchr(s, '\n', (size_t)(end - s))) return -1; /* one data line per event */
    *data = s + 6;
    *n = (size_t)(end - s) - 6;
    return (long)(end - s) + 2;
}
