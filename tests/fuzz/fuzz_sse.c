/*
 * fuzz_sse.c - libFuzzer target for the incremental SSE reader
 * (src/backend/sse_parse.c). The first input byte picks how the rest is
 * fed: all at once, or in pieces of (byte % 7 + 1) bytes appended to a
 * growing buffer with last_len, as http.c does. Every event's views must lie
 * inside the buffer, and both feeding modes must see the same events.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/sse_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_views(const char *buf, size_t len, const struct sl_sse_event *ev)
{
    for (size_t k = 0; k < ev->n_data; k++)
        if (ev->data[k].p < buf || ev->data[k].p + ev->data[k].len > buf + len) abort();
    if (ev->event.len && (ev->event.p < buf || ev->event.p + ev->event.len > buf + len)) abort();
    if (ev->id.len && (ev->id.p < buf || ev->id.p + ev->id.len > buf + len)) abort();
}

/* Number of events and a checksum of their data, all at once. */
static size_t whole(const char *s, size_t len, unsigned *sum)
{
    size_t off = 0, n = 0;
    for (;;) {
        struct sl_sse_event ev;
        long r = sl_sse_next(s + off, len - off, 0, &ev);
        if (r <= 0) break;
        if ((size_t)r > len - off) abort();
        check_views(s + off, len - off, &ev);
        for (size_t k = 0; k < ev.n_data; k++)
            for (size_t q = 0; q < ev.data[k].len; q++)
                *sum = *sum * 31 + (unsigned char)ev.data[k].p[q];
        off += (size_t)r;
        n++;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    unsigned step = data[0] % 7 + 1;
    const char *s = (const char *)data + 1;
    size_t len = size - 1;
    unsigned sum1 = 0, sum2 = 0;
    size_t n1 = whole(s, len, &sum1);

    char *buf = malloc(len + 1);
    if (!buf) return 0;
    size_t have = 0, last = 0, n2 = 0, fed = 0;
    int bad = 0;
    while (fed < len && !bad) {
        size_t k = len - fed < step ? len - fed : step;
        memcpy(buf + have, s + fed, k);
        have += k, fed += k;
        for (;;) {
            struct sl_sse_event ev;
            long r = sl_sse_next(buf, have, last, &ev);
            if (r == SL_SSE_NEED_MORE) {
                last = have;
                break;
            }
            if (r == SL_SSE_BAD) {
                bad = 1;
                break;
            }
            check_views(buf, have, &ev);
            for (size_t q = 0; q < ev.n_data; q++)
                for (size_t z = 0; z < ev.data[q].len; z++)
                    sum2 = sum2 * 31 + (unsigned char)ev.data[q].p[z];
            memmove(buf, buf + r, have - (size_t)r);
            have -= (size_t)r;
            last = 0;
            n2++;
        }
    }
    /* A bare CR at a piece boundary can end differently only when the next
     * byte is missing; with the whole input the results must agree. */
    if (!bad && (n1 != n2 || sum1 != sum2)) abort();
    free(buf);
    return 0;
}
