/*
 * http.c - libmicrohttpd adapter (server layer). See http.h.
 *
 * Per connection, on_access is called first with the headers (we check the
 * header size and Content-Length), then once per body chunk (appended into
 * a buffer capped at max_body_bytes), then once more to answer: we call the
 * handler and queue its response. on_completed frees the per-request state.
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../base/buf.h"

struct sl_http {
    struct sl_http_params p;
    struct MHD_Daemon *d;
    int port;
    atomic_int in_flight;
    bool quiesced;
};

struct req_state {
    struct sl_buf body;
    int error;        /* status already decided (413, 431), or 0 */
    bool answered;    /* the error response is queued */
    size_t discarded; /* body bytes dropped after the cap */
    bool counted;
};

/* ------------------------------------------------------------------------ */
/* Error bodies                                                             */
/* ------------------------------------------------------------------------ */

static void json_escape(struct sl_buf *b, const char *s)
{
    sl_buf_append(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            sl_buf_appendf(b, "\\%c", c);
        else if (c < 0x20)
            sl_buf_appendf(b, "\\u%04x", c);
        else
            sl_buf_append(b, s, 1);
    }
    sl_buf_append(b, "\"", 1);
}

static void json_opt(struct sl_buf *b, const char *s)
{
    if (s)
        json_escape(b, s);
    else
        sl_buf_append(b, "null", 4);
}

void sl_http_error(struct sl_http_resp *resp, int status, const char *type, const char *code,
                   const char *param, const char *message)
{
    struct sl_buf b;
    sl_buf_init(&b, 0);
    sl_buf_append(&b, "{\"error\":{\"message\":", 20);
    json_escape(&b, message ? message : "error");
    sl_buf_append(&b, ",\"type\":", 8);
    json_opt(&b, type);
    sl_buf_append(&b, ",\"param\":", 9);
    json_opt(&b, param && *param ? param : NULL);
    sl_buf_append(&b, ",\"code\":", 8);
    json_opt(&b, code);
    sl_buf_append(&b, "}}\n", 3);
    free(resp->body);
    resp->status = status;
    resp->content_type = "application/json";
    resp->body = sl_buf_take(&b, &resp->body_len); /* NULL on allocation failure: empty body */
}

void sl_http_header(struct sl_http_resp *resp, const char *name, const char *fmt, ...)
{
    if (resp->n_headers >= SL_HTTP_MAX_HEADERS) return;
    char *n = resp->headers[resp->n_headers].name, *v = resp->headers[resp->n_headers].value;
    snprintf(n, sizeof resp->headers[0].name, "%s", name);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v, sizeof resp->headers[0].value, fmt, ap);
    va_end(ap);
    for (char *p = v; *p; p++)
        if (*p == '\r' || *p == '\n') *p = ' ';
    resp->n_headers++;
}

/* ------------------------------------------------------------------------ */
/* Responses                                                                */
/* ------------------------------------------------------------------------ */

struct stream_ctx {
    struct sl_http_resp r;
};

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream_ctx *sc = cls;
    long n = sc->r.stream(sc->r.stream_ctx, buf, max);
    if (n == SL_HTTP_STREAM_END) return MHD_CONTENT_READER_END_OF_STREAM;
    if (n < 0) return MHD_CONTENT_READER_END_WITH_ERROR;
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    struct stream_ctx *sc = cls;
    if (sc->r.stream_free) sc->r.stream_free(sc->r.stream_ctx);
    free(sc->r.body);
    free(sc);
}

static enum MHD_Result queue(struct MHD_Connection *c, struct sl_http_resp *r)
{
    struct MHD_Response *mr = NULL;
    if (r->stream) {
        struct stream_ctx *sc = malloc(sizeof *sc);
        if (!sc) {
            if (r->stream_free) r->stream_free(r->stream_ctx);
            return MHD_NO; /* allocation failure: close the connection */
        }
        sc->r = *r;
        mr = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_reader, sc,
                                               stream_free);
        if (!mr) {
            stream_free(sc);
            return MHD_NO;
        }
        MHD_add_response_header(mr, "Cache-Control", "no-cache");
    } else {
        mr = MHD_create_response_from_buffer(r->body_len, r->body ? r->body : (void *)"",
                                             r->body ? MHD_RESPMEM_MUST_FREE
                                                     : MHD_RESPMEM_PERSISTENT);
        if (!mr) {
            free(r->body);
            return MHD_NO;
        }
    }
    MHD_add_response_header(mr, "Content-Type",
                            r->content_type ? r->content_type : "application/json");
    if (r->retry_after > 0) {
        char v[32];
        snprintf(v, sizeof v, "%d", r->retry_after);
        MHD_add_response_header(mr, "Retry-After", v);
    }
    for (int i = 0; i < r->n_headers && i < SL_HTTP_MAX_HEADERS; i++)
        MHD_add_response_header(mr, r->headers[i].name, r->headers[i].value);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)r->status, mr);
    MHD_destroy_response(mr);
    return ok;
}

static enum MHD_Result queue_error(struct MHD_Connection *c, int status, const char *type,
                                   const char *code, const char *msg)
{
    struct sl_http_resp r = {0};
    sl_http_error(&r, status, type, code, NULL, msg);
    return queue(c, &r);
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                 */
/* ------------------------------------------------------------------------ */

static enum MHD_Result sum_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    size_t *n = cls;
    *n += strlen(key) + (value ? strlen(value) : 0) + 4;
    return MHD_YES;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_size, void **con_cls)
{
    struct sl_http *h = cls;
    struct req_state *st = *con_cls;
    if (!st) {                                            /* headers are in */
        if (!(st = calloc(1, sizeof *st))) return MHD_NO; /* allocation failure */
        sl_buf_init(&st->body, h->p.max_body_bytes);
        *con_cls = st;
        st->counted = true;
        atomic_fetch_add(&h->in_flight, 1);
        size_t hdr = strlen(url) + strlen(method) + 16;
        MHD_get_connection_values(c, MHD_HEADER_KIND, sum_header, &hdr);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (hdr > h->p.max_header_bytes)
            st->error = 431;
        else if (cl && strtoull(cl, NULL, 10) > h->p.max_body_bytes)
            st->error = 413;
        if (st->error) {
            /* answer now; the library closes the connection instead of reading the body */
            st->answered = true;
            return queue_error(c, st->error, "invalid_request_error",
                               st->error == 431 ? "headers_too_large" : "body_too_large",
                               st->error == 431 ? "request headers are too large"
                                                : "request body is too large");
        }
        return MHD_YES;
    }
    if (*upload_size) {
        /* past the cap (a chunked body: no Content-Length to check first) the
           rest is read and dropped, up to another cap's worth, then the 413
           goes out; a client that keeps sending after that is cut off */
        if (st->error)
            st->discarded += *upload_size;
        else if (sl_buf_append(&st->body, upload_data, *upload_size))
            st->error = 413;
        *upload_size = 0;
        return st->discarded > h->p.max_body_bytes ? MHD_NO : MHD_YES;
    }
    if (st->error == 413 && !st->answered) {
        st->answered = true;
        return queue_error(c, 413, "invalid_request_error", "body_too_large",
                           "request body is too large");
    }
    if (st->error) return MHD_YES; /* already answered */

    char path[1024];
    snprintf(path, sizeof path, "%s", url);
    char *q = strchr(path, '?');
    if (q) *q = 0;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct sl_http_req req = {
        .method = method,
        .path = path,
        .authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"),
        .body = st->body.p ? st->body.p : "",
        .body_len = st->body.len,
        .fd = ci ? ci->connect_fd : -1,
    };
    struct sl_http_resp resp = {.status = 500};
    h->p.handler(h->p.user, &req, &resp);
    return queue(c, &resp);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct sl_http *h = cls;
    struct req_state *st = *con_cls;
    if (!st) return;
    if (st->counted) atomic_fetch_sub(&h->in_flight, 1);
    sl_buf_free(&st->body);
    free(st);
    *con_cls = NULL;
}

/* ------------------------------------------------------------------------ */
/* Daemon                                                                   */
/* ------------------------------------------------------------------------ */

int sl_http_start(struct sl_http **out, const struct sl_http_params *p, struct sl_err *err)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p->port)};
    *out = NULL;
    if (inet_pton(AF_INET, p->host, &a.sin_addr) != 1)
        return sl_err_set(err, SL_EINVAL, "server.host: '%s' is not an IPv4 address", p->host);
    struct sl_http *h = calloc(1, sizeof *h);
    if (!h) return sl_err_set(err, SL_ENOMEM, "http: out of memory");
    h->p = *p;
    atomic_init(&h->in_flight, 0);
    h->d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
            MHD_USE_ERROR_LOG,
        0, NULL, NULL, on_access, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)p->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)p->idle_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)(p->max_header_bytes * 2 + 65536), MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_END);
    if (!h->d) {
        int e = errno;
        free(h);
        return sl_err_set(err, SL_EIO, "cannot listen on %s:%d (%s)", p->host, p->port,
                          strerror(e));
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : p->port;
    *out = h;
    return 0;
}

int sl_http_port(const struct sl_http *h)
{
    return h->port;
}

void sl_http_quiesce(struct sl_http *h)
{
    if (h->quiesced) return;
    MHD_socket fd = MHD_quiesce_daemon(h->d);
    if (fd != MHD_INVALID_SOCKET) close(fd);
    h->quiesced = true;
}

int sl_http_in_flight(const struct sl_http *h)
{
    return atomic_load(&h->in_flight);
}

void sl_http_stop(struct sl_http *h)
{
    if (!h) return;
    MHD_stop_daemon(h->d);
    free(h);
}

bool sl_http_peer_gone(int fd)
{
    char c;
    if (fd < 0) return false;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}
