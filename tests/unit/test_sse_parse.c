/*
 * test_sse_parse.c - the incremental server-sent-events reader
 * (src/backend/sse_parse.c): views, line endings, fields, limits, and
 * feeding a stream one byte at a time gives the same events as all at once.
 */
#include <stdlib.h>
#include <string.h>

#include "backend/sse_parse.h"
#include "test.h"

static int view_eq(struct sl_sse_view v, const char *s)
{
    return v.len == strlen(s) && memcmp(v.p, s, v.len) == 0;
}

static void sse_parses_one_data_event(void)
{
    const char *s = "data: {\"a\":1}\n\nrest";
    struct sl_sse_event ev;
    long n = sl_sse_next(s, strlen(s), 0, &ev);
    T_EQ_INT(n, 15);
    T_EQ_INT(ev.n_data, 1);
    T_TRUE(view_eq(ev.data[0], "{\"a\":1}"));
    T_TRUE(ev.data[0].p == s + 6); /* a view, not a copy */
    T_EQ_INT(ev.retry_ms, -1);
}

static void sse_needs_more_until_the_blank_line(void)
{
    const char *s = "data: x\n";
    struct sl_sse_event ev;
    T_EQ_INT(sl_sse_next(s, strlen(s), 0, &ev), SL_SSE_NEED_MORE);
    T_EQ_INT(sl_sse_next("data: x", 7, 0, &ev), SL_SSE_NEED_MORE);
    T_EQ_INT(sl_sse_next("", 0, 0, &ev), SL_SSE_NEED_MORE);
    /* a CR at the end may be half of CRLF */
    T_EQ_INT(sl_sse_next("data: x\r\n\r", 10, 0, &ev), SL_SSE_NEED_MORE);
    T_EQ_INT(sl_sse_next("data: x\r\n\r\n", 11, 0, &ev), 11);
}

static void sse_accepts_lf_crlf_and_cr_line_ends(void)
{
    const char *cases[] = {"data: v\n\n", "data: v\r\n\r\n", "data: v\r\rX"};
    long want[] = {9, 11, 9};
    for (int k = 0; k < 3; k++) {
        struct sl_sse_event ev;
        long n = sl_sse_next(cases[k], strlen(cases[k]), 0, &ev);
        T_EQ_INT(n, want[k]);
        T_EQ_INT(ev.n_data, 1);
        T_TRUE(view_eq(ev.data[0], "v"));
    }
}

static void sse_reads_event_id_retry_and_skips_comments(void)
{
    const char *s =
        ": ping\nevent: delta\nid: 42\nretry: 1500\nfoo: bar\ndata:no-space\ndata:  two\n\n";
    struct sl_sse_event ev;
    long n = sl_sse_next(s, strlen(s), 0, &ev);
    T_EQ_INT(n, (long)strlen(s));
    T_TRUE(view_eq(ev.event, "delta"));
    T_TRUE(view_eq(ev.id, "42"));
    T_EQ_INT(ev.retry_ms, 1500);
    T_EQ_INT(ev.n_data, 2);
    T_TRUE(view_eq(ev.data[0], "no-space"));
    T_TRUE(view_eq(ev.data[1], " two")); /* only one leading space is dropped */
}

static void sse_event_without_data_has_no_data_lines(void)
{
    const char *s = ": keep-alive\n\n";
    struct sl_sse_event ev;
    T_EQ_INT(sl_sse_next(s, strlen(s), 0, &ev), (long)strlen(s));
    T_EQ_INT(ev.n_data, 0);
    T_EQ_INT(sl_sse_next("\n", 1, 0, &ev), 1);
    T_EQ_INT(ev.n_data, 0);
    T_EQ_INT(sl_sse_next("data\n\n", 6, 0, &ev), 6); /* field with no colon: empty value */
    T_EQ_INT(ev.n_data, 1);
    T_EQ_INT(ev.data[0].len, 0);
}

static void sse_detects_done(void)
{
    struct sl_sse_event ev;
    T_EQ_INT(sl_sse_next("data: [DONE]\n\n", 14, 0, &ev), 14);
    T_TRUE(sl_sse_data_is(&ev, "[DONE]"));
    T_EQ_INT(sl_sse_next("data: [DONE]x\n\n", 15, 0, &ev), 15);
    T_TRUE(!sl_sse_data_is(&ev, "[DONE]"));
}

static void sse_rejects_too_many_data_lines(void)
{
    char buf[1024] = "";
    for (int k = 0; k < SL_SSE_MAX_DATA_LINES + 1; k++)
        strcat(buf, "data: x\n");
    strcat(buf, "\n");
    struct sl_sse_event ev;
    T_EQ_INT(sl_sse_next(buf, strlen(buf), 0, &ev), SL_SSE_BAD);
}

static void sse_rejects_an_event_past_the_size_limit(void)
{
    size_t n = SL_SSE_MAX_EVENT + 16;
    char *buf = malloc(n);
    memcpy(buf, "data: ", 6);
    memset(buf + 6, 'a', n - 6);
    struct sl_sse_event ev;
    T_EQ_INT(sl_sse_next(buf, n, 0, &ev), SL_SSE_BAD);
    T_EQ_INT(sl_sse_next(buf, 1000, 0, &ev), SL_SSE_NEED_MORE);
    free(buf);
}

/* The same stream fed 1 byte at a time (with last_len) gives the same events. */
static void sse_byte_by_byte_matches_all_at_once(void)
{
    const char *stream =
        "data: a\n\n: c\r\n\r\ndata: b1\r\ndata: b2\r\n\r\nevent: e\rdata: c\r\rdata: [DONE]\n\n";
    size_t len = strlen(stream);
    char whole[8][32], piece[8][32];
    int nw = 0, np = 0;
    /* all at once */
    size_t off = 0;
    for (;;) {
        struct sl_sse_event ev;
        long n = sl_sse_next(stream + off, len - off, 0, &ev);
        if (n <= 0) break;
        snprintf(whole[nw++], 32, "%zu:%.*s", ev.n_data,
                 ev.n_data ? (int)ev.data[ev.n_data - 1].len : 0,
                 ev.n_data ? ev.data[ev.n_data - 1].p : "");
        off += (size_t)n;
    }
    T_EQ_INT(off, len);
    /* one byte at a time into a growing buffer */
    char buf[256];
    size_t have = 0, last = 0;
    for (size_t i = 0; i < len; i++) {
        buf[have++] = stream[i];
        for (;;) {
            struct sl_sse_event ev;
            long n = sl_sse_next(buf, have, last, &ev);
            if (n == SL_SSE_NEED_MORE) {
                last = have;
                break;
            }
            T_TRUE(n > 0);
            if (n <= 0) return;
            snprintf(piece[np++], 32, "%zu:%.*s", ev.n_data,
                     ev.n_data ? (int)ev.data[ev.n_data - 1].len : 0,
                     ev.n_data ? ev.data[ev.n_data - 1].p : "");
            memmove(buf, buf + n, have - (size_t)n);
            have -= (size_t)n;
            last = 0;
        }
    }
    T_EQ_INT(np, nw);
    T_EQ_INT(nw, 5);
    for (int k = 0; k < nw && k < np; k++)
        T_EQ_STR(piece[k], whole[k]);
    T_EQ_STR(whole[2], "2:b2");
    T_EQ_STR(whole[4], "1:[DONE]");
}

int main(void)
{
    T_RUN(sse_parses_one_data_event);
    T_RUN(sse_needs_more_until_the_blank_line);
    T_RUN(sse_accepts_lf_crlf_and_cr_line_ends);
    T_RUN(sse_reads_event_id_retry_and_skips_comments);
    T_RUN(sse_event_without_data_has_no_data_lines);
    T_RUN(sse_detects_done);
    T_RUN(sse_rejects_too_many_data_lines);
    T_RUN(sse_rejects_an_event_past_the_size_limit);
    T_RUN(sse_byte_by_byte_matches_all_at_once);
    return t_done();
}
