/*
 * cmd_serve.c - `sluice serve`: the OpenAI-compatible server (tools layer).
 *
 *   sluice serve CONFIG.yaml [--host H] [--port N]
 *   sluice serve -m MODEL.gguf [--host H] [--port N] [--api-key K] [...]
 *
 * SIGTERM or SIGINT: stop accepting, let requests in flight finish (up to
 * server.request_timeout_s), exit 0.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config/config.h"
#include "server/server.h"

static const char *usage_text =
    "usage: sluice serve CONFIG.yaml [--host H] [--port N]\n"
    "       sluice serve -m MODEL.gguf [options]\n"
    "  -m, --model PATH         serve one model, named after the file (without .gguf)\n"
    "  --name NAME              the model's name instead\n"
    "  --host H                 address to listen on (default 127.0.0.1)\n"
    "  --port N                 port (default 8080; 0 = any free port)\n"
    "  --api-key KEY            require 'Authorization: Bearer KEY' (repeatable)\n"
    "  -c, --ctx-size N         KV cells shared by all slots (default 4096)\n"
    "  --slots N                requests generated together (default 8)\n"
    "  --queue N                requests waiting beyond the slots (default 64)\n"
    "  -t, --threads N          engine threads (default: all cores)\n"
    "  --chat-template NAME     template for the model (default: from the file, else chatml)\n"
    "  --hash-key KEY           print the sha256 of KEY for api_keys in a config, and exit\n"
    "  --config-help            print the configuration reference (markdown) and exit\n"
    "See docs/server.md.\n";

static char *model_name_from_path(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    if (n > 5 && !strcmp(b + n - 5, ".gguf")) n -= 5;
    return strndup(b, n);
}

int cmd_serve(int argc, char **argv)
{
    const char *model = NULL, *name = NULL, *host = NULL, *tmpl = NULL, *hash = NULL;
    struct cli_list keys = {0};
    long long port = -1, ctx = 0, slots = 0, queue = -1, threads = -1;
    bool config_help = false;
    const struct cli_opt opts[] = {
        {"-m", "--model", CLI_STR, &model, 0, 0},
        {NULL, "--name", CLI_STR, &name, 0, 0},
        {NULL, "--host", CLI_STR, &host, 0, 0},
        {NULL, "--port", CLI_INT, &port, 0, 65535},
        {NULL, "--api-key", CLI_LIST, &keys, 0, 0},
        {"-c", "--ctx-size", CLI_INT, &ctx, 16, 1 << 20},
        {NULL, "--slots", CLI_INT, &slots, 1, 32},
        {NULL, "--queue", CLI_INT, &queue, 0, 100000},
        {"-t", "--threads", CLI_INT, &threads, 0, 1024},
        {NULL, "--chat-template", CLI_STR, &tmpl, 0, 0},
        {NULL, "--hash-key", CLI_STR, &hash, 0, 0},
        {NULL, "--config-help", CLI_FLAG, &config_help, 0, 0},
    };
    const char *pos[1];
    int n_pos = 0;
    int rc = cli_parse("serve", usage_text, argc, argv, opts, sizeof opts / sizeof *opts, pos, 1,
                       &n_pos);
    if (rc) return rc < 0 ? 0 : rc;
    if (config_help) {
        sl_config_describe(stdout);
        return 0;
    }
    if (hash) {
        uint8_t d[SL_SHA256_LEN];
        char hex[2 * SL_SHA256_LEN + 1];
        sl_sha256(hash, strlen(hash), d);
        sl_sha256_hex(d, hex);
        printf("%s\n", hex);
        return 0;
    }
    if (!model && n_pos == 0) return cli_usage("serve", "give a CONFIG.yaml or -m MODEL.gguf");
    if (model && n_pos)
        return cli_usage("serve", "give either a CONFIG.yaml or -m MODEL.gguf, not both");

    struct sl_config cfg;
    struct sl_err err = {0};
    struct sl_server *srv = NULL;
    char *mname = NULL;
    if (sl_config_init(&cfg, &err)) return cli_fail(&err, NULL);
    if (n_pos) {
        if (sl_config_load(&cfg, pos[0], &err)) {
            rc = cli_fail(&err, "see 'sluice serve --config-help' for every key");
            goto out; /* bad config */
        }
    } else {
        struct sl_model_config *mc;
        if (!(mname = name ? strdup(name) : model_name_from_path(model))) {
            rc = cli_fail(&(struct sl_err){SL_ENOMEM, "out of memory"}, NULL);
            goto out; /* allocation failure */
        }
        if (sl_config_add_model(&cfg, mname, model, &mc, &err)) {
            rc = cli_fail(&err, NULL);
            goto out; /* allocation failure */
        }
        if (ctx) mc->ctx = ctx;
        if (slots) mc->slots = slots;
        if (queue >= 0) mc->queue = queue;
        if (threads >= 0) mc->threads = threads;
        if (tmpl && !(mc->chat_template = strdup(tmpl))) {
            rc = cli_fail(&(struct sl_err){SL_ENOMEM, "out of memory"}, NULL);
            goto out; /* allocation failure */
        }
    }
    for (size_t i = 0; i < keys.n; i++)
        if (sl_config_add_key(&cfg, "cli", keys.v[i], &err)) {
            rc = cli_fail(&err, NULL);
            goto out; /* allocation failure */
        }
    if (host) {
        free(cfg.server.host);
        if (!(cfg.server.host = strdup(host))) {
            rc = cli_fail(&(struct sl_err){SL_ENOMEM, "out of memory"}, NULL);
            goto out; /* allocation failure */
        }
    }
    if (port >= 0) cfg.server.port = port;

    /* every thread started from here on inherits the blocked signals; the
       main thread takes them with sigwait */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (sl_server_start(&srv, &cfg, stderr, &err)) {
        rc = cli_fail(&err, err.code == SL_EIO ? "is the port in use? try --port 0" : NULL);
        goto out; /* bad model, cannot listen */
    }
    printf("sluice: listening on http://%s:%d\n", cfg.server.host, sl_server_port(srv));
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "sluice: %s: finishing requests in flight\n",
            sig == SIGTERM ? "SIGTERM" : "SIGINT");
    int left = sl_server_drain(srv, (int)cfg.server.request_timeout_s);
    if (left) fprintf(stderr, "sluice: %d requests still in flight; closing them\n", left);
    fprintf(stderr, "sluice: stopped\n");
    rc = 0;
out:
    sl_server_free(srv);
    sl_config_free(&cfg);
    free(mname);
    return rc;
}
