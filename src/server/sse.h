/*
 * sse.h - server-sent events framing as OpenAI streams it (server layer):
 *
 *   data: {"id":...,"choices":[...]}\n\n      one event per JSON chunk
 *   data: [DONE]\n\n                          the end of the stream
 *
 * The payload is one line: a data field may not contain CR or LF (compact
 * JSON never does: strings escape them), so sl_sse_data rejects it rather
 * than split it across several "data:" lines. Pure functions.
 */
#ifndef SL_SSE_H
#define SL_SSE_H

#include <stddef.h>

#include "../base/buf.h"

/* Append "data: " payload "\n\n". SL_EINVAL if payload has CR or LF. */
int sl_sse_data(struct sl_buf *b, const char *payload, size_t len);
/* Append "data: [DONE]\n\n". */
int sl_sse_done(struct sl_buf *b);

/* Parse one event from s[0..len) (a client, for tests): on success returns
 * the bytes consumed and sets *data and *n to the payload; -2 when more bytes
 * are needed; -1 when malformed. */
long sl_sse_parse(const char *s, size_t len, const char **data, size_t *n);

#endif
