/*
 * pg_server.h - a throw-away PostgreSQL server for the store tests (tests
 * only): initdb + pg_ctl from /usr/lib/postgresql/<v>/bin, a fresh cluster
 * in a private directory under the build's test directory, listening on a
 * Unix socket in that directory only (no TCP), as the postgres user when
 * run as root (the server refuses root).
 *
 *   struct pg_server pg;
 *   int st = pg_server_start(&pg, 54329);
 *   if (st == 0) t_skip("no PostgreSQL server binaries ...");
 *   if (st < 0) fail: see pg.dir/initdb.log and pg.dir/server.log
 *   ... sl_store_pg_open(&s, pg.conninfo, ...) ...
 *   pg_server_stop(&pg);
 *
 * Give each test program its own port so that tests running in parallel
 * (ctest -j) do not meet; the directory also carries the process id.
 * pg_server_stop is safe on a server that never started and twice.
 */
#ifndef SL_PG_SERVER_H
#define SL_PG_SERVER_H

struct pg_server {
    char dir[600];      /* the cluster, logs and socket; "" before start */
    char bin[256];      /* /usr/lib/postgresql/<v>/bin */
    char conninfo[800]; /* libpq key=value: host=<dir> port=<port> user=postgres dbname=postgres */
    int port;
    int up; /* pg_ctl start succeeded */
};

/* 1: running; 0: no server binaries (skip); -1: could not start (the
 * logs stay in pg->dir until pg_server_stop). */
int pg_server_start(struct pg_server *pg, int port);

/* Stops the server (immediate) and removes its directory. */
void pg_server_stop(struct pg_server *pg);

#endif
