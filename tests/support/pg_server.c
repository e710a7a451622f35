/*
 * pg_server.c - a throw-away PostgreSQL server for tests (see
 * pg_server.h). Everything goes through the server's own tools (initdb,
 * pg_ctl) run by system(); no TCP port is opened.
 */
#include "pg_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The server refuses to run as root: run its tools as the postgres user. */
static const char *run_as(void)
{
    return getuid() == 0 ? "runuser -u postgres -- " : "";
}

/* Runs "rm -rf DIR" (what = 0), "rm -rf DIR && mkdir -p DIR" (1) or
 * "chown postgres DIR" (2). */
static int dir_cmd(int what, const char *dir)
{
    char cmd[1400];
    if (what == 0)
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    else if (what == 1)
        snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    else
        snprintf(cmd, sizeof cmd, "chown postgres '%s'", dir);
    return system(cmd);
}

static int find_bin(struct pg_server *pg)
{
    for (int v = 20; v >= 12; v--) {
        snprintf(pg->bin, sizeof pg->bin, "/usr/lib/postgresql/%d/bin", v);
        char p[300];
        snprintf(p, sizeof p, "%s/initdb", pg->bin);
        if (access(p, X_OK) == 0) return 1;
    }
    pg->bin[0] = 0;
    return 0;
}

/* Copies DIR/NAME to stderr (why the server did not start). */
static void show_log(const struct pg_server *pg, const char *name)
{
    char p[700], line[512];
    snprintf(p, sizeof p, "%s/%s", pg->dir, name);
    FILE *f = fopen(p, "r");
    if (!f) return;
    fprintf(stderr, "--- %s\n", p);
    while (fgets(line, sizeof line, f))
        fputs(line, stderr);
    fclose(f);
}

int pg_server_start(struct pg_server *pg, int port)
{
    memset(pg, 0, sizeof *pg);
    pg->port = port;
    if (!find_bin(pg)) return 0;
    snprintf(pg->dir, sizeof pg->dir, "%s/pg-%d-%d", SL_TEST_TMP, port, (int)getpid());
    if (strlen(pg->dir) > 80) /* the socket path must fit in sun_path */
        snprintf(pg->dir, sizeof pg->dir, "/tmp/sluice-pg-%d-%d", port, (int)getpid());
    snprintf(pg->conninfo, sizeof pg->conninfo, "host=%s port=%d user=postgres dbname=postgres",
             pg->dir, port);
    if (dir_cmd(1, pg->dir)) return -1;
    if (getuid() == 0 && dir_cmd(2, pg->dir)) return -1;
    const char *as = run_as();
    char cmd[2400];
    snprintf(
        cmd, sizeof cmd,
        "%s%s/initdb -D '%s/data' -A trust -U postgres -E UTF8 --no-sync >'%s/initdb.log' 2>&1", as,
        pg->bin, pg->dir, pg->dir);
    if (system(cmd) != 0) {
        show_log(pg, "initdb.log");
        return -1;
    }
    snprintf(
        cmd, sizeof cmd,
        "%s%s/pg_ctl -D '%s/data' -w -t 30 -l '%s/server.log' -o \"-k '%s' -c listen_addresses='' "
        "-p %d -F\" start >/dev/null 2>&1",
        as, pg->bin, pg->dir, pg->dir, pg->dir, port);
    /* pg_ctl may give up waiting on a server that still comes up: stop
     * it in any case */
    pg->up = 1;
    if (system(cmd) != 0) {
        show_log(pg, "server.log");
        return -1;
    }
    return 1;
}

void pg_server_stop(struct pg_server *pg)
{
    if (pg->up) {
        char cmd[2400];
        snprintf(cmd, sizeof cmd, "%s%s/pg_ctl -D '%s/data' -m immediate stop >/dev/null 2>&1",
                 run_as(), pg->bin, pg->dir);
        if (system(cmd) != 0) fprintf(stderr, "pg_ctl stop failed (%s)\n", pg->dir);
        pg->up = 0;
    }
    if (pg->dir[0] && dir_cmd(0, pg->dir)) fprintf(stderr, "could not remove %s\n", pg->dir);
    pg->dir[0] = 0;
}
