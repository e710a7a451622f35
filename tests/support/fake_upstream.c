/*
 * fake_upstream.c - scripted OpenAI-like upstream for tests (see
 * fake_upstream.h). One thread per connection (libmicrohttpd), so a
 * delayed reply holds only its own connection; every wait checks the stop
 * flag so fu_stop returns quickly.
 */
#define _GNU_SOURCE
#include "fake_upstream.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct rec {
    char *path, *body, *auth;
};

struct fake_upstream {
    struct MHD_Daemon *d;
    int port;
    pthread_mutex_t mu;
    struct fu_reply replies[FU_MAX_REPLIES];
    int n_replies, next;
    struct rec recs[FU_MAX_RECORDED];
    int n_requests, n_connections;
    volatile int stopping;
};

struct conn_state {
    char *buf;
    size_t len;
};

struct stream_state {
    struct fake_upstream *f;
    struct fu_reply r; /* a copy: strings shared with the script (kept until stop) */
    int sent;          /* chunks sent */
    size_t off;        /* offset into the current piece */
    char *piece;
    size_t piece_len;
    int in_raw;
};

static void wait_ms(struct fake_upstream *f, long ms)
{
    for (long t = 0; t < ms && !f->stopping; t += 5) {
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static char *xdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

void fu_reply_free(struct fu_reply *r)
{
    for (int k = 0; k < r->n_headers; k++)
        free(r->headers[k]);
    for (int k = 0; k < r->n_chunks; k++)
        free(r->chunks[k]);
    free(r->body);
    free(r->raw);
    memset(r, 0, sizeof *r);
}

/* A deep copy of a reply: a connection serves its own copy, so the test may
 * set the next script (freeing the old one) while a slow or abandoned
 * stream of the previous one is still being read. Returns -1 on no memory. */
static int reply_dup(struct fu_reply *dst, const struct fu_reply *src)
{
    *dst = *src;
    int bad = 0;
    for (int k = 0; k < src->n_headers; k++)
        bad |= !(dst->headers[k] = strdup(src->headers[k]));
    for (int k = 0; k < src->n_chunks; k++)
        bad |= !(dst->chunks[k] = strdup(src->chunks[k]));
    if (src->body) bad |= !(dst->body = strdup(src->body));
    if (src->raw) bad |= !(dst->raw = strdup(src->raw));
    if (bad) {
        fu_reply_free(dst);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ replies */

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream_state *s = cls;
    (void)pos;
    if (s->f->stopping) return MHD_CONTENT_READER_END_WITH_ERROR;
    if (!s->piece) {
        if (s->r.disconnect_after >= 0 && s->sent >= s->r.disconnect_after)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (s->r.raw) {
            if (s->in_raw) return MHD_CONTENT_READER_END_OF_STREAM;
            s->in_raw = 1;
            s->piece = strdup(s->r.raw);
        } else {
            if (s->sent >= s->r.n_chunks) return MHD_CONTENT_READER_END_OF_STREAM;
            if (asprintf(&s->piece, "data: %s\n\n", s->r.chunks[s->sent]) < 0) s->piece = NULL;
        }
        if (!s->piece) return MHD_CONTENT_READER_END_WITH_ERROR;
        s->piece_len = strlen(s->piece);
        s->off = 0;
        if (s->r.chunk_delay_ms > 0) wait_ms(s->f, s->r.chunk_delay_ms);
    }
    size_t n = s->piece_len - s->off;
    if (n > max) n = max;
    memcpy(buf, s->piece + s->off, n);
    s->off += n;
    if (s->off == s->piece_len) {
        free(s->piece);
        s->piece = NULL;
        s->sent++;
    }
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    struct stream_state *s = cls;
    free(s->piece);
    fu_reply_free(&s->r);
    free(s);
}

struct half_state {
    char *body;
    size_t len, off, stop_at;
};

static ssize_t half_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct half_state *h = cls;
    (void)pos;
    if (h->off >= h->stop_at) return MHD_CONTENT_READER_END_WITH_ERROR;
    size_t n = h->stop_at - h->off;
    if (n > max) n = max;
    memcpy(buf, h->body + h->off, n);
    h->off += n;
    return (ssize_t)n;
}

static void half_free(void *cls)
{
    struct half_state *h = cls;
    free(h->body);
    free(h);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    struct fake_upstream *f = cls;
    (void)method;
    (void)version;
    struct conn_state *cs = *con_cls;
    if (!cs) {
        cs = calloc(1, sizeof *cs);
        if (!cs) return MHD_NO;
        *con_cls = cs;
        return MHD_YES;
    }
    if (*upload_size) {
        char *nb = realloc(cs->buf, cs->len + *upload_size + 1);
        if (!nb) return MHD_NO;
        cs->buf = nb;
        memcpy(cs->buf + cs->len, upload, *upload_size);
        cs->len += *upload_size;
        cs->buf[cs->len] = 0;
        *upload_size = 0;
        return MHD_YES;
    }
    /* the whole request is in: record it and pick the reply */
    struct fu_reply r;
    pthread_mutex_lock(&f->mu);
    int idx = f->n_requests++;
    if (idx < FU_MAX_RECORDED) {
        f->recs[idx].path = xdup(url);
        f->recs[idx].body = xdup(cs->buf ? cs->buf : "");
        f->recs[idx].auth = xdup(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"));
    }
    int ri = f->next < f->n_replies ? f->next++ : f->n_replies - 1;
    int copied = ri >= 0 ? reply_dup(&r, &f->replies[ri]) : 0;
    if (ri < 0)
        memset(&r, 0, sizeof r), r.status = 500, r.disconnect_after = -1;
    pthread_mutex_unlock(&f->mu);
    if (copied) return MHD_NO;

    if (r.delay_ms > 0) wait_ms(f, r.delay_ms);
    struct MHD_Response *resp = NULL;
    int streaming = r.n_chunks > 0 || r.raw;
    if (streaming) {
        struct stream_state *s = calloc(1, sizeof *s);
        if (!s) {
            fu_reply_free(&r);
            return MHD_NO;
        }
        s->f = f;
        s->r = r; /* the stream owns the copy now (stream_free) */
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, s,
                                                 stream_free);
        if (!resp) {
            stream_free(s);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        memset(&r, 0, sizeof r); /* headers are the stream's: read them from s->r */
        r.status = s->r.status;
        for (int k = 0; k < s->r.n_headers; k++)
            r.headers[k] = s->r.headers[k];
        r.n_headers = s->r.n_headers;
    } else if (r.disconnect_after >= 0) {
        struct half_state *h = calloc(1, sizeof *h);
        if (!h) {
            fu_reply_free(&r);
            return MHD_NO;
        }
        h->body = strdup(r.body ? r.body : "");
        h->len = strlen(h->body);
        h->stop_at = h->len / 2;
        resp = MHD_create_response_from_callback(h->len, 4096, half_reader, h, half_free);
    } else {
        const char *b = r.body ? r.body : "";
        resp = MHD_create_response_from_buffer(strlen(b), (void *)b, MHD_RESPMEM_MUST_COPY);
        if (resp) MHD_add_response_header(resp, "Content-Type", "application/json");
    }
    if (!resp) {
        if (!streaming) fu_reply_free(&r);
        return MHD_NO;
    }
    for (int k = 0; k < r.n_headers; k++) {
        char name[128];
        const char *colon = strchr(r.headers[k], ':');
        if (!colon || (size_t)(colon - r.headers[k]) >= sizeof name) continue;
        memcpy(name, r.headers[k], (size_t)(colon - r.headers[k]));
        name[colon - r.headers[k]] = 0;
        const char *v = colon + 1;
        while (*v == ' ')
            v++;
        MHD_add_response_header(resp, name, v);
    }
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)(r.status ? r.status : 200), resp);
    MHD_destroy_response(resp);
    if (!streaming) fu_reply_free(&r); /* MHD copied the body; a stream owns its copy */
    return ok;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    struct conn_state *cs = *con_cls;
    if (cs) {
        free(cs->buf);
        free(cs);
        *con_cls = NULL;
    }
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct fake_upstream *f = cls;
    (void)c;
    (void)socket_context;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        pthread_mutex_lock(&f->mu);
        f->n_connections++;
        pthread_mutex_unlock(&f->mu);
    }
}

/* ------------------------------------------------------------------ life cycle */

int fu_start(struct fake_upstream **out)
{
    struct fake_upstream *f = calloc(1, sizeof *f);
    if (!f) return -1;
    pthread_mutex_init(&f->mu, NULL);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = 0;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    f->d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC, 0, NULL,
        NULL, on_access, f, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, f, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
        f, MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    if (!f->d) {
        pthread_mutex_destroy(&f->mu);
        free(f);
        return -1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT);
    f->port = di ? di->port : 0;
    *out = f;
    return 0;
}

void fu_stop(struct fake_upstream *f)
{
    if (!f) return;
    f->stopping = 1;
    MHD_stop_daemon(f->d);
    for (int k = 0; k < f->n_replies; k++)
        fu_reply_free(&f->replies[k]);
    fu_reset_counts(f);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

int fu_port(const struct fake_upstream *f)
{
    return f->port;
}

void fu_set_replies(struct fake_upstream *f, const struct fu_reply *replies, int n)
{
    pthread_mutex_lock(&f->mu);
    for (int k = 0; k < f->n_replies; k++)
        fu_reply_free(&f->replies[k]);
    if (n > FU_MAX_REPLIES) n = FU_MAX_REPLIES;
    for (int k = 0; k < n; k++)
        f->replies[k] = replies[k];
    f->n_replies = n;
    f->next = 0;
    pthread_mutex_unlock(&f->mu);
}

int fu_n_requests(struct fake_upstream *f)
{
    pthread_mutex_lock(&f->mu);
    int n = f->n_requests;
    pthread_mutex_unlock(&f->mu);
    return n;
}

int fu_n_connections(struct fake_upstream *f)
{
    pthread_mutex_lock(&f->mu);
    int n = f->n_connections;
    pthread_mutex_unlock(&f->mu);
    return n;
}

const char *fu_request_body(struct fake_upstream *f, int i)
{
    return i >= 0 && i < FU_MAX_RECORDED && i < f->n_requests ? f->recs[i].body : NULL;
}

const char *fu_request_path(struct fake_upstream *f, int i)
{
    return i >= 0 && i < FU_MAX_RECORDED && i < f->n_requests ? f->recs[i].path : NULL;
}

const char *fu_request_header(struct fake_upstream *f, int i, const char *name)
{
    if (strcasecmp(name, "Authorization")) return NULL;
    return i >= 0 && i < FU_MAX_RECORDED && i < f->n_requests ? f->recs[i].auth : NULL;
}

void fu_reset_counts(struct fake_upstream *f)
{
    pthread_mutex_lock(&f->mu);
    for (int k = 0; k < FU_MAX_RECORDED && k < f->n_requests; k++) {
        free(f->recs[k].path);
        free(f->recs[k].body);
        free(f->recs[k].auth);
    }
    memset(f->recs, 0, sizeof f->recs);
    f->n_requests = 0;
    f->n_connections = 0;
    pthread_mutex_unlock(&f->mu);
}

/* ------------------------------------------------------------------ case files */

/* Unescapes \n, \r, \t, \\ in place (for raw: lines). */
static void unescape(char *s)
{
    char *o = s;
    for (; *s; s++) {
        if (*s == '\\' && s[1]) {
            s++;
            *o++ = *s == 'n' ? '\n' : *s == 'r' ? '\r' : *s == 't' ? '\t' : *s;
        } else {
            *o++ = *s;
        }
    }
    *o = 0;
}

int fu_parse_replies(const char *text, struct fu_reply *r, int max, int *n)
{
    *n = 0;
    char *copy = strdup(text), *save = NULL;
    if (!copy) return -1;
    struct fu_reply *cur = NULL;
    int in_reply = 0;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        size_t ll = strlen(line);
        if (ll && line[ll - 1] == '\r') line[--ll] = 0;
        if (line[0] == '#' || line[0] == 0) continue;
        if (line[0] == '[') {
            in_reply = !strcmp(line, "[reply]");
            if (in_reply) {
                if (*n == max) goto fail;
                cur = &r[(*n)++];
                memset(cur, 0, sizeof *cur);
                cur->status = 200;
                cur->disconnect_after = -1;
            }
            continue;
        }
        if (!in_reply) continue;
        char *colon = strchr(line, ':');
        if (!colon) goto fail;
        *colon = 0;
        char *v = colon + 1;
        while (*v == ' ')
            v++;
        if (!strcmp(line, "status"))
            cur->status = atoi(v);
        else if (!strcmp(line, "delay_ms"))
            cur->delay_ms = atol(v);
        else if (!strcmp(line, "chunk_delay_ms"))
            cur->chunk_delay_ms = atol(v);
        else if (!strcmp(line, "disconnect_after"))
            cur->disconnect_after = atoi(v);
        else if (!strcmp(line, "body"))
            cur->body = strdup(v);
        else if (!strcmp(line, "raw")) {
            cur->raw = strdup(v);
            if (cur->raw) unescape(cur->raw);
        } else if (!strcmp(line, "header") && cur->n_headers < FU_MAX_HEADERS)
            cur->headers[cur->n_headers++] = strdup(v);
        else if (!strcmp(line, "chunk") && cur->n_chunks < FU_MAX_CHUNKS)
            cur->chunks[cur->n_chunks++] = strdup(v);
        else
            goto fail;
    }
    free(copy);
    return 0;
fail:
    free(copy);
    for (int k = 0; k < *n; k++)
        fu_reply_free(&r[k]);
    *n = 0;
    return -1;
}
