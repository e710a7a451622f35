/*
 * fake_upstream.h - a scripted OpenAI-like upstream on 127.0.0.1 for the
 * backend tests (libmicrohttpd, tests only).
 *
 * It plays a list of replies in order, one per request (the last one
 * repeats): status, headers, body, a delay, a stream of SSE chunks with a
 * pause between them, a disconnect part-way. It records what it received
 * (paths and bodies) and counts TCP connections, so tests can check
 * retries, connection reuse and what left the machine.
 *
 * Replies come from the [reply] sections of a case file (tests/cases/
 * backend/README.md describes the format) or are added in code.
 */
#ifndef SL_FAKE_UPSTREAM_H
#define SL_FAKE_UPSTREAM_H

#include <stddef.h>

#define FU_MAX_REPLIES 32
#define FU_MAX_CHUNKS 32
#define FU_MAX_HEADERS 4
#define FU_MAX_RECORDED 64

struct fu_reply {
    int status;                    /* default 200 */
    char *headers[FU_MAX_HEADERS]; /* "Name: value" */
    int n_headers;
    char *body;                  /* whole body (non-stream) */
    long delay_ms;               /* before the status line */
    char *chunks[FU_MAX_CHUNKS]; /* SSE data payloads: sent as "data: X\n\n" */
    int n_chunks;
    char *raw;            /* raw bytes sent as the stream instead of chunks */
    long chunk_delay_ms;  /* pause before each chunk */
    int disconnect_after; /* -1: no; N: cut the connection after N chunks
                             (non-stream: after half the body) */
};

struct fake_upstream;

/* Starts on 127.0.0.1 with a free port. Returns 0 or -1. */
int fu_start(struct fake_upstream **out);
void fu_stop(struct fake_upstream *f);
int fu_port(const struct fake_upstream *f);

/* Replaces the script. Takes ownership of the strings in replies. */
void fu_set_replies(struct fake_upstream *f, const struct fu_reply *replies, int n);
/* Parses the [reply] sections of a case file's text into r[0..*n). */
int fu_parse_replies(const char *text, struct fu_reply *r, int max, int *n);
void fu_reply_free(struct fu_reply *r);

int fu_n_requests(struct fake_upstream *f);
int fu_n_connections(struct fake_upstream *f);
/* Body of the i-th request received (NULL if none); valid until fu_stop. */
const char *fu_request_body(struct fake_upstream *f, int i);
const char *fu_request_path(struct fake_upstream *f, int i);
const char *fu_request_header(struct fake_upstream *f, int i, const char *name);
/* Forget recorded requests and counters. */
void fu_reset_counts(struct fake_upstream *f);

#endif
