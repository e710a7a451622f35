/*
 * http.h - the HTTP/1.1 transport: a thin adapter over libmicrohttpd
 * (server layer). Nothing here knows about OpenAI or models: it reads a
 * request (method, path, Authorization, body within a cap), hands it to one
 * handler, and writes the handler's response, whole or streamed.
 *
 * Threads: one thread per connection (libmicrohttpd's
 * MHD_USE_THREAD_PER_CONNECTION). The handler and a response's stream
 * callback run on that connection's thread and may block (waiting for
 * tokens); other connections are not held up. See docs/dependencies.md.
 *
 * Limits enforced here, each answered with an OpenAI-shaped JSON error:
 * body bytes (413), header bytes (431), connections (further ones are
 * refused by the library), idle time (the connection is closed).
 */
#ifndef SL_HTTP_H
#define SL_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/err.h"

struct sl_http_req {
    const char *method;
    const char *path;          /* without the query string */
    const char *authorization; /* header value or NULL */
    const char *body;          /* NUL-terminated; "" when none */
    size_t body_len;
    int fd; /* the connection's socket (for sl_http_peer_gone) */
};

/* Streamed body: called on the connection's thread until it returns < 0.
 * Returns bytes written into buf (> 0), SL_HTTP_STREAM_END or
 * SL_HTTP_STREAM_ERROR (the connection is closed). May block. */
#define SL_HTTP_STREAM_END (-1L)
#define SL_HTTP_STREAM_ERROR (-2L)
typedef long (*sl_http_stream_fn)(void *ctx, char *buf, size_t max);

#define SL_HTTP_MAX_HEADERS 10

struct sl_http_resp {
    int status;
    const char *content_type; /* static string */
    char *body;               /* owned (malloc'd), freed by the transport */
    size_t body_len;
    int retry_after; /* seconds, 0 = no Retry-After header */
    /* extra headers (x-sluice-*), set with sl_http_header */
    struct {
        char name[32];
        char value[224];
    } headers[SL_HTTP_MAX_HEADERS];
    int n_headers;
    sl_http_stream_fn stream; /* optional: NULL means the body above */
    void *stream_ctx;
    void (*stream_free)(void *ctx); /* optional: called once when the response is done */
};

/* Fill resp. Runs on the connection's thread; may block. */
typedef void (*sl_http_handler)(void *user, const struct sl_http_req *req,
                                struct sl_http_resp *resp);

struct sl_http_params {
    const char *host;
    int port; /* 0 = any free port */
    int max_connections;
    size_t max_body_bytes;
    size_t max_header_bytes;
    int idle_timeout_s;
    sl_http_handler handler;
    void *user;
};

struct sl_http;

int sl_http_start(struct sl_http **out, const struct sl_http_params *p, struct sl_err *err);
/* The port actually bound. */
int sl_http_port(const struct sl_http *h);
/* Stop accepting connections (those open continue). */
void sl_http_quiesce(struct sl_http *h);
/* Requests being served right now. Thread-safe. */
int sl_http_in_flight(const struct sl_http *h);
/* Close everything and free. NULL is fine. */
void sl_http_stop(struct sl_http *h);

/* True when the client of fd has closed its side (checked without
 * consuming input). */
bool sl_http_peer_gone(int fd);

/* A JSON error body {"error": {"message", "type", "code", "param"}} into
 * resp; message is escaped here. type/code may be NULL (JSON null). */
void sl_http_error(struct sl_http_resp *resp, int status, const char *type, const char *code,
                   const char *param, const char *message);

/* Add a header "name: value" to resp (printf-style value, cut at 223
 * bytes; CR/LF become spaces). Past SL_HTTP_MAX_HEADERS it is dropped. */
void sl_http_header(struct sl_http_resp *resp, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
