/*
 * fake_upstream_main.c - the scripted fake upstream as a program, for
 * end-to-end tests driven from Node or shell (tests only):
 *
 *   sluice-fake-upstream CASE_FILE [--record FILE] [--max-seconds N]
 *
 * Plays the [reply] sections of CASE_FILE (tests/cases/backend/README.md)
 * on 127.0.0.1, prints "port N" on stdout once listening, appends every
 * request it receives to FILE as one JSON line {"path":..., "body":...}
 * (what reached "the large model": the privacy tests read it), and exits
 * when stdin closes, on SIGTERM/SIGINT, or after N seconds (default 300).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fake_upstream.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

int main(int argc, char **argv)
{
    const char *cases = NULL, *record = NULL;
    long max_s = 300;
    for (int k = 1; k < argc; k++) {
        if (!strcmp(argv[k], "--record") && k + 1 < argc)
            record = argv[++k];
        else if (!strcmp(argv[k], "--max-seconds") && k + 1 < argc)
            max_s = atol(argv[++k]);
        else if (argv[k][0] != '-' && !cases)
            cases = argv[k];
        else {
            fprintf(stderr, "usage: %s CASE_FILE [--record FILE] [--max-seconds N]\n", argv[0]);
            return 2;
        }
    }
    if (!cases || max_s <= 0 || max_s > 3600) {
        fprintf(stderr, "usage: %s CASE_FILE [--record FILE] [--max-seconds N (1-3600)]\n",
                argv[0]);
        return 2;
    }
    FILE *f = fopen(cases, "rb");
    if (!f) {
        fprintf(stderr, "%s: %s\n", cases, strerror(errno));
        return 1;
    }
    static char text[1 << 20];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    struct fu_reply replies[FU_MAX_REPLIES];
    int nr = 0;
    if (fu_parse_replies(text, replies, FU_MAX_REPLIES, &nr) || nr == 0) {
        fprintf(stderr, "%s: no valid [reply] section\n", cases);
        return 1;
    }
    struct fake_upstream *fu = NULL;
    if (fu_start(&fu)) {
        fprintf(stderr, "cannot listen on 127.0.0.1\n");
        return 1;
    }
    fu_set_replies(fu, replies, nr);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    printf("port %d\n", fu_port(fu));
    fflush(stdout);
    FILE *rec = record ? fopen(record, "a") : NULL;
    int written = 0;
    time_t end = time(NULL) + max_s;
    while (!stop && time(NULL) < end) {
        struct pollfd p = {0, POLLIN, 0};
        int pr = poll(&p, 1, 50);
        if (pr > 0) {
            char b[256];
            if (read(0, b, sizeof b) <= 0) break; /* stdin closed: the test is done */
        }
        int have = fu_n_requests(fu);
        for (; rec && written < have && written < FU_MAX_RECORDED; written++) {
            fprintf(rec, "{\"path\":");
            json_str(rec, fu_request_path(fu, written));
            fprintf(rec, ",\"body\":");
            json_str(rec, fu_request_body(fu, written));
            fprintf(rec, "}\n");
            fflush(rec);
        }
    }
    if (rec) fclose(rec);
    fu_stop(fu);
    return 0;
}
