/*
 * sse_parse.h - incremental, allocation-free reader of server-sent events
 * (backend layer), for streamed answers from an upstream.
 *
 * The caller appends bytes as they arrive to its own buffer and calls
 * sl_sse_next on the unconsumed part. Each call returns one event as views
 * into that buffer:
 *
 *   long n = sl_sse_next(buf, len, last_len, &ev);
 *   n > 0: an event ends at buf[n]; use ev, then drop n bytes
 *   n == SL_SSE_NEED_MORE (-2): no complete event yet; read more, call again
 *     with last_len = len (scanning resumes where it stopped)
 *   n == SL_SSE_BAD (-1): malformed or past a limit; give up on the stream
 *
 * Lines end in LF, CRLF or CR; an event ends at an empty line. Comment
 * lines (":...") are skipped, unknown fields ignored (the SSE spec). An
 * event may have no data line (ev.n_data == 0): skip it.
 * Views stay valid while the caller's buffer is not changed.
 */
#ifndef SL_SSE_PARSE_H
#define SL_SSE_PARSE_H

#include <stddef.h>

#define SL_SSE_NEED_MORE (-2)
#define SL_SSE_BAD (-1)

/* Limits: one event's bytes, and data lines per event. */
#define SL_SSE_MAX_EVENT (1u << 20)
#define SL_SSE_MAX_DATA_LINES 16

struct sl_sse_view {
    const char *p;
    size_t len;
};

struct sl_sse_event {
    struct sl_sse_view event;                       /* "event:" value, len 0 if none */
    struct sl_sse_view id;                          /* "id:" value, len 0 if none */
    long retry_ms;                                  /* "retry:" value, -1 if none or not a number */
    struct sl_sse_view data[SL_SSE_MAX_DATA_LINES]; /* one view per data line */
    size_t n_data;
};

/* Parses the first event of buf[0..len). last_len is the len of the previous
 * call on the same (grown) buffer that returned NEED_MORE, else 0. */
long sl_sse_next(const char *buf, size_t len, size_t last_len, struct sl_sse_event *ev);

/* 1 if the event's data is exactly one line equal to s (e.g. "[DONE]"). */
int sl_sse_data_is(const struct sl_sse_event *ev, const char *s);

#endif
