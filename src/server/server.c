/*
 * server.c - start and stop `sluice serve` (server layer). See server.h.
 */
#include "server.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../engine/lora.h"
#include "../engine/vocab.h"
#include "../router/router.h"
#include "../store/store.h"
#include "local_backend.h"

static int load_model(struct sl_server *s, const struct sl_model_config *mc,
                      struct sl_served_model *sm, FILE *log, struct sl_err *err)
{
    int rc;
    sm->cfg = mc;
    if ((rc = sl_model_load(&sm->model, mc->path, true, err))) return rc;
    if (mc->lora) {
        rc = sl_model_apply_lora(sm->model, mc->lora, (float)mc->lora_scale, &sm->lora, err);
        if (rc) return rc;
        if (log)
            fprintf(log, "sluice: model '%s': LoRA %s merged into %d weights (scale %g)\n",
                    mc->name, mc->lora, sl_lora_merge_count(sm->lora), mc->lora_scale);
    }
    if (!sm->model->vocab)
        return sl_err_set(err, SL_EFORMAT,
                          "model '%s' (%s) has no tokenizer (tokenizer.ggml.* metadata)", mc->name,
                          mc->path);
    const char *how = "detected";
    if (mc->chat_template) {
        int f = sl_chat_family_from_name(mc->chat_template);
        if (f < 0)
            return sl_err_set(err, SL_EINVAL,
                              "models.%s.chat_template: unknown template '%s' (known: %s)",
                              mc->name, mc->chat_template, sl_chat_family_names());
        sm->family = (enum sl_chat_family)f;
        how = "configured";
    } else {
        sm->family = sl_chat_detect(sm->model->chat_template);
    }
    if (sm->family == SL_CHAT_UNKNOWN) {
        int f = sl_chat_family_from_name(s->cfg->server.chat_template);
        if (f < 0)
            return sl_err_set(err, SL_EINVAL,
                              "server.chat_template: unknown template '%s' (known: %s)",
                              s->cfg->server.chat_template, sl_chat_family_names());
        sm->family = (enum sl_chat_family)f;
        how = "fallback";
        if (log)
            fprintf(log,
                    "sluice: note: model '%s' has %s chat template; using '%s' for chat requests "
                    "(set models.%s.chat_template or server.chat_template to choose)\n",
                    mc->name, sm->model->chat_template ? "an unrecognised" : "no",
                    sl_chat_family_name(sm->family), mc->name);
    }
    struct sl_sched_params sp = {
        .n_slots = (int32_t)mc->slots,
        .n_ctx = (int32_t)mc->ctx,
        .n_batch = (int32_t)mc->batch,
        .n_queue = (int32_t)mc->queue,
        .cache_cells = (int32_t)mc->cache_cells,
        .embd_ctx = mc->pooling != SL_POOLING_NONE ? (int32_t)mc->embd_ctx : 0,
        .pooling = mc->pooling,
        .n_threads = (int)mc->threads,
    };
    if ((rc = sl_sched_init(&sm->sched, sm->model, &sp, err))) return rc;
    if (log)
        fprintf(log,
                "sluice: model '%s': %s, %d layers, vocab %d, ctx %d, %d slots, chat template %s "
                "(%s)\n",
                mc->name, sm->model->arch_name, sm->model->hp.n_layer, sm->model->hp.n_vocab,
                sl_sched_params(sm->sched)->n_ctx, sp.n_slots, sl_chat_family_name(sm->family),
                how);
    return 0;
}

/* The request log of cfg->log, or none. */
static int open_store(struct sl_server *s, FILE *log, struct sl_err *err)
{
    const struct sl_log_config *lc = &s->cfg->log;
    int rc;
    if (!lc->db || !*lc->db) return 0;
    struct sl_store_params p = sl_store_default_params();
    p.input = (enum sl_store_input)lc->inputs;
    if (lc->busy_timeout_ms > 0) p.busy_timeout_ms = (int)lc->busy_timeout_ms;
    if (!(s->store = calloc(1, sizeof *s->store)))
        return sl_err_set(err, SL_ENOMEM, "server: out of memory");
    const char *db = lc->db, *kind = "sqlite";
    if (!strncmp(db, "postgres://", 11) || !strncmp(db, "postgresql://", 13)) {
        rc = sl_store_pg_open(s->store, db, &p, err);
        kind = "postgres";
    } else if (!strncmp(db, "pg:", 3)) {
        rc = sl_store_pg_open(s->store, db + 3, &p, err);
        kind = "postgres";
    } else {
        rc = sl_store_sqlite_open(s->store, db, &p, err);
    }
    if (rc) {
        free(s->store);
        s->store = NULL;
        char m[SL_ERR_MSG_LEN];
        snprintf(m, sizeof m, "%s", err ? err->msg : "");
        return sl_err_set(err, rc, "log.db: %s", m);
    }
    if (log)
        fprintf(log, "sluice: request log: %s (%s), inputs %s\n",
                !strcmp(kind, "sqlite") ? db : "PostgreSQL", kind,
                p.input == SL_STORE_INPUT_STORE  ? "stored"
                : p.input == SL_STORE_INPUT_HASH ? "hashed"
                                                 : "dropped");
    return 0;
}

/* sl_router_env.make_backend: a local backend runs on a served model. */
static int make_backend(void *user, const struct sl_backend_config *bc, struct sl_backend *out,
                        struct sl_err *err)
{
    struct sl_server *s = user;
    if (bc->kind != SL_BACKEND_KIND_LOCAL) return 1; /* the router makes the HTTP one */
    for (size_t i = 0; i < s->n_models; i++)
        if (!strcmp(s->models[i].cfg->name, bc->model))
            return sl_local_backend_new(out, s, &s->models[i], bc->name, err);
    return sl_err_set(err, SL_EINVAL, "backends.%s: model '%s' is not under models:", bc->name,
                      bc->model ? bc->model : "(none)");
}

int sl_server_open(struct sl_server **out, const struct sl_config *cfg, FILE *log, bool listen,
                   struct sl_err *err)
{
    struct sl_server *s = NULL;
    int rc;
    *out = NULL;
    if ((rc = sl_config_validate(cfg, err))) return rc;
    if (!(s = calloc(1, sizeof *s))) return sl_err_set(err, SL_ENOMEM, "server: out of memory");
    s->cfg = cfg;
    s->started = time(NULL);
    sl_metrics_init(&s->metrics);
    pthread_mutex_init(&s->route_mu, NULL);
    atomic_init(&s->next_id, ((unsigned long long)s->started << 20) ^ (unsigned long long)getpid());
    atomic_init(&s->draining, false);
    if (!(s->models = calloc(cfg->n_models, sizeof *s->models)) ||
        !(s->route_stats = calloc(cfg->n_routes ? cfg->n_routes : 1, sizeof *s->route_stats))) {
        rc = sl_err_set(err, SL_ENOMEM, "server: out of memory");
        goto fail; /* allocation failure */
    }
    for (size_t i = 0; i < cfg->n_routes; i++)
        s->route_stats[i].name = cfg->routes[i].name;
    for (size_t i = 0; i < cfg->n_models; i++) {
        s->n_models = i + 1;
        if ((rc = load_model(s, &cfg->models[i], &s->models[i], log, err)))
            goto fail; /* bad model */
    }
    if ((rc = open_store(s, log, err))) goto fail; /* cannot open the log */
    if (cfg->n_routes || cfg->n_backends) {
        struct sl_router_env env = {.make_backend = make_backend, .user = s, .store = s->store};
        if ((rc = sl_router_new(&s->router, cfg, &env, err))) goto fail; /* bad route */
        if (log) fprintf(log, "sluice: %zu backends, %zu routes\n", cfg->n_backends, cfg->n_routes);
    }
    if (listen) {
        struct sl_http_params hp = {
            .host = cfg->server.host,
            .port = (int)cfg->server.port,
            .max_connections = (int)cfg->server.max_connections,
            .max_body_bytes = (size_t)cfg->server.max_body_bytes,
            .max_header_bytes = (size_t)cfg->server.max_header_bytes,
            .idle_timeout_s = (int)cfg->server.idle_timeout_s,
            .handler = sl_routes_handle,
            .user = s,
        };
        if ((rc = sl_http_start(&s->http, &hp, err))) goto fail; /* cannot listen */
    }
    *out = s;
    return 0;
fail:
    sl_server_free(s);
    return rc;
}

int sl_server_start(struct sl_server **out, const struct sl_config *cfg, FILE *log,
                    struct sl_err *err)
{
    return sl_server_open(out, cfg, log, true, err);
}

int sl_server_port(const struct sl_server *s)
{
    return s->http ? sl_http_port(s->http) : 0;
}

int sl_server_drain(struct sl_server *s, int timeout_s)
{
    atomic_store(&s->draining, true);
    if (!s->http) return 0;
    sl_http_quiesce(s->http);
    for (int i = 0; i < timeout_s * 20 && sl_http_in_flight(s->http) > 0; i++)
        usleep(50 * 1000);
    return sl_http_in_flight(s->http);
}

/* In order: no more requests, then the router (its local backends use the
 * models), the engines, and last the log the router wrote to. */
void sl_server_free(struct sl_server *s)
{
    if (!s) return;
    sl_http_stop(s->http);
    sl_router_free(s->router);
    for (size_t i = 0; i < s->n_models; i++) {
        sl_sched_free(s->models[i].sched);
        sl_model_free(s->models[i].model);
        sl_lora_merge_free(s->models[i].lora);
    }
    free(s->models);
    if (s->store) s->store->iface->close(s->store->ctx);
    free(s->store);
    free(s->route_stats);
    pthread_mutex_destroy(&s->route_mu);
    sl_metrics_free(&s->metrics);
    free(s);
}
