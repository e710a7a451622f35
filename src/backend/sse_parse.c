/*
 * sse_parse.c - incremental, allocation-free server-sent-events reader
 * (backend layer). See sse_parse.h for the calling convention; the shape
 * follows picohttpparser: views into the caller's buffer, -1/-2 results,
 * and a last_len hint so growing input is not rescanned.
 */
#include "backend/sse_parse.h"

#include <string.h>

/* Finds the end of the event: the position just past an empty line.
 * Returns 0 if none yet, also when the buffer ends in a CR that may be the
 * first half of a CRLF. */
static size_t find_event_end(const char *buf, size_t len, size_t from)
{
    /* A line starts at 0 or right after a line end. We look for a line end
     * immediately followed by another line end. */
    for (size_t i = from; i < len; i++) {
        char c = buf[i];
        if (c != '\n' && c != '\r') continue;
        size_t j = i + 1;
        if (c == '\r') {
            if (j == len) return 0; /* CR at the end: maybe CRLF, need more */
            if (buf[j] == '\n') j++;
        }
        /* Here a line ended at i; j is the start of the next line. An empty
         * line at the very start of the buffer also ends an (empty) event. */
        if (i == 0) return j;
        if (j == len) return 0;
        if (buf[j] == '\n') return j + 1;
        if (buf[j] == '\r') {
            if (j + 1 == len) return 0; /* need to see if CRLF */
            return buf[j + 1] == '\n' ? j + 2 : j + 1;
        }
        i = j - 1;
    }
    return 0;
}

static int view_is(const char *p, size_t n, const char *s)
{
    size_t k = strlen(s);
    return n == k && memcmp(p, s, k) == 0;
}

long sl_sse_next(const char *buf, size_t len, size_t last_len, struct sl_sse_event *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->retry_ms = -1;
    if (!buf || len == 0) return SL_SSE_NEED_MORE;
    /* Resume a few bytes back: the end marker may straddle the old end. */
    size_t from = last_len > 3 && last_len <= len ? last_len - 3 : 0;
    size_t end = find_event_end(buf, len, from);
    if (end == 0) return len >= SL_SSE_MAX_EVENT ? SL_SSE_BAD : SL_SSE_NEED_MORE;
    if (end > SL_SSE_MAX_EVENT) return SL_SSE_BAD;

    /* Walk the lines of buf[0..end). */
    size_t i = 0;
    while (i < end) {
        size_t s = i;
        while (i < end && buf[i] != '\n' && buf[i] != '\r')
            i++;
        size_t e = i; /* line is buf[s..e) */
        if (i < end && buf[i] == '\r') {
            i++;
            if (i < end && buf[i] == '\n') i++; /* CRLF */
        } else if (i < end) {
            i++; /* LF */
        }
        if (e == s) continue;        /* the empty line ending the event */
        if (buf[s] == ':') continue; /* comment */
        const char *colon = memchr(buf + s, ':', e - s);
        size_t nlen = colon ? (size_t)(colon - (buf + s)) : e - s;
        const char *v = colon ? colon + 1 : buf + e;
        size_t vlen = colon ? (size_t)(buf + e - v) : 0;
        if (vlen && *v == ' ') v++, vlen--;
        const char *name = buf + s;
        if (view_is(name, nlen, "data")) {
            if (ev->n_data == SL_SSE_MAX_DATA_LINES) return SL_SSE_BAD;
            ev->data[ev->n_data].p = v;
            ev->data[ev->n_data].len = vlen;
            ev->n_data++;
        } else if (view_is(name, nlen, "event")) {
            ev->event.p = v, ev->event.len = vlen;
        } else if (view_is(name, nlen, "id")) {
            ev->id.p = v, ev->id.len = vlen;
        } else if (view_is(name, nlen, "retry")) {
            long r = 0;
            size_t k = 0;
            for (; k < vlen && k < 9 && v[k] >= '0' && v[k] <= '9'; k++)
                r = r * 10 + (v[k] - '0');
            ev->retry_ms = (k == vlen && vlen > 0) ? r : -1;
        }
        /* other fields: ignored, as the spec says */
    }
    return (long)end;
}

int sl_sse_data_is(const struct sl_sse_event *ev, const char *s)
{
    return ev->n_data == 1 && view_is(ev->data[0].p, ev->data[0].len, s);
}
