/*
 * test_sse.c - server-sent events framing and the capped buffer under it.
 */
#include "server/sse.h"

#include <stdlib.h>

#include <string.h>

#include "base/err.h"
#include "test.h"

static void sse_frames_events_and_done_like_openai(void)
{
    struct sl_buf b;
    sl_buf_init(&b, 0);
    T_EQ_INT(sl_sse_data(&b, "{\"a\":1}", 7), 0);
    T_EQ_INT(sl_sse_done(&b), 0);
    T_EQ_STR(b.p, "data: {\"a\":1}\n\ndata: [DONE]\n\n");
    sl_buf_free(&b);
}

static void sse_refuses_payloads_with_line_breaks(void)
{
    struct sl_buf b;
    sl_buf_init(&b, 0);
    T_EQ_INT(sl_sse_data(&b, "a\nb", 3), SL_EINVAL);
    T_EQ_INT(sl_sse_data(&b, "a\rb", 3), SL_EINVAL);
    T_EQ_INT(b.len, 0);
    sl_buf_free(&b);
}

static void sse_parser_reads_back_what_was_framed(void)
{
    struct sl_buf b;
    sl_buf_init(&b, 0);
    sl_sse_data(&b, "one", 3);
    sl_sse_data(&b, "two", 3);
    sl_sse_done(&b);
    const char *d;
    size_t n, off = 0;
    const char *want[] = {"one", "two", "[DONE]"};
    for (int i = 0; i < 3; i++) {
        long k = sl_sse_parse(b.p + off, b.len - off, &d, &n);
        T_TRUE(k > 0);
        if (k <= 0) break;
        T_EQ_INT(n, strlen(want[i]));
        T_TRUE(!memcmp(d, want[i], n));
        off += (size_t)k;
    }
    T_EQ_INT(off, b.len);
    T_EQ_INT(sl_sse_parse("data: x\n", 8, &d, &n), -2);
    T_EQ_INT(sl_sse_parse("event: x\n\n", 10, &d, &n), -1);
    sl_buf_free(&b);
}

static void buf_stops_at_its_cap_and_stays_unchanged(void)
{
    struct sl_buf b;
    sl_buf_init(&b, 8);
    T_EQ_INT(sl_buf_append(&b, "12345", 5), 0);
    T_EQ_INT(sl_buf_append(&b, "6789", 4), SL_ERANGE);
    T_EQ_STR(b.p, "12345");
    T_EQ_INT(sl_buf_appendf(&b, "%d", 678), 0);
    T_EQ_STR(b.p, "12345678");
    T_EQ_INT(sl_buf_appendf(&b, "%s", "x"), SL_ERANGE);
    size_t len;
    char *p = sl_buf_take(&b, &len);
    T_EQ_INT(len, 8);
    T_TRUE(b.p == NULL && b.len == 0);
    free(p);
}

int main(void)
{
    T_RUN(sse_frames_events_and_done_like_openai);
    T_RUN(sse_refuses_payloads_with_line_breaks);
    T_RUN(sse_parser_reads_back_what_was_framed);
    T_RUN(buf_stops_at_its_cap_and_stays_unchanged);
    return t_done();
}
