/*
 * config.h - the sluice YAML configuration: structs, defaults and the one
 * option table they come from (config layer; above the engine).
 *
 * One file describes a whole deployment. Top-level sections:
 *
 *   server:    where and how to listen (host, port, limits of the transport)
 *   limits:    per-request limits (tokens, choices, stop strings)
 *   models:    name -> {path, threads, ctx, slots, ...}, one engine each
 *   api_keys:  a list of {name, sha256, models: [...]}; empty = no auth
 *   tasks:     name -> {kind: classify|extract|generate, model, ...}; an
 *              extract task's schema is compiled to a grammar at load, so a
 *              schema the compiler cannot enforce fails here
 *
 *   backends:  name -> {kind: local|openai, ...}: where a route's tiers run,
 *              with their prices (docs/router.md)
 *   routes:    name -> {policy: cascade|rules|predict, tiers, thresholds,
 *              rules, predict, fallback, budget_per_day, pii}; a route's
 *              name is a model name clients send
 *   privacy:   the PII detector: built-in kinds and configured patterns
 *   log:       the request log and cost ledger (SQLite file or PostgreSQL)
 *   costs:     currency, the large model's baseline prices, fixed monthly
 *              costs (store/costs.h)
 *
 * Every scalar setting is a row of the option table (config.c): key, type,
 * field offset, default, range and help. Loading, validation, defaults and
 * the reference in docs/server.md (`sluice serve --config-help`) all come
 * from it.
 */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../base/err.h"
#include "../base/sha256.h"

#define SL_CONFIG_MAX_FILE (1u << 20) /* bytes of a config file */
#define SL_CONFIG_MAX_MODELS 16
#define SL_CONFIG_MAX_KEYS 256
#define SL_CONFIG_MAX_KEY_MODELS 16 /* models listed for one key */
#define SL_CONFIG_MAX_STR 4096      /* bytes of one string value */
#define SL_CONFIG_MAX_TASKS 256
#define SL_CONFIG_MAX_LABELS 1024  /* labels of one classify task */
#define SL_CONFIG_MAX_EXAMPLES 256 /* few-shot examples of one task */

enum sl_pooling {
    SL_POOLING_NONE = 0, /* no /v1/embeddings for this model */
    SL_POOLING_MEAN = 1, /* mean of the final hidden states of every token */
    SL_POOLING_LAST = 2, /* final hidden state of the last token */
};

struct sl_server_config {
    char *host;                /* address to bind */
    int64_t port;              /* TCP port; 0 = any free port */
    int64_t max_connections;   /* simultaneous connections */
    int64_t max_body_bytes;    /* request body cap (413 past it) */
    int64_t max_header_bytes;  /* all request headers together (431 past it) */
    int64_t idle_timeout_s;    /* a connection that sends nothing this long is closed */
    int64_t request_timeout_s; /* a request's whole generation */
    char *chat_template;       /* fallback template for models without one */
};

struct sl_limits_config {
    int64_t max_prompt_tokens;     /* tokens of one prompt */
    int64_t max_completion_tokens; /* max_tokens cap; also the default */
    int64_t max_n;                 /* choices per request (n x prompts) */
    int64_t max_embedding_inputs;  /* inputs of one /v1/embeddings call */
};

struct sl_model_config {
    char *name;          /* the id clients send as "model" */
    char *path;          /* GGUF file */
    int64_t threads;     /* engine threads; 0 = all CPUs */
    int64_t ctx;         /* KV cells shared by all slots */
    int64_t batch;       /* entries per forward pass */
    int64_t slots;       /* sequences decoded together */
    int64_t queue;       /* requests waiting for a slot; past it 429 */
    int64_t cache_cells; /* KV cells the prefix cache may keep; 0 = off */
    int64_t embd_ctx;    /* tokens of one embedding input */
    char *chat_template; /* override the detected template; NULL = detect */
    int pooling;         /* enum sl_pooling */
    char *lora;          /* LoRA adapter GGUF merged at load; NULL = none */
    double lora_scale;   /* its scale; default 1 */
};

struct sl_key_config {
    char *name;
    uint8_t sha256[SL_SHA256_LEN];
    char *models[SL_CONFIG_MAX_KEY_MODELS]; /* allowed models; none listed = all */
    size_t n_models;
};

enum sl_task_kind {
    SL_TASK_CLASSIFY = 0,
    SL_TASK_EXTRACT = 1,
    SL_TASK_GENERATE = 2,
};

struct sl_task_config {
    char *name;         /* the id clients send as "task" */
    int kind;           /* enum sl_task_kind */
    char *model;        /* a models: name (required) */
    char *instruction;  /* NULL = the default instruction */
    int prompt_mode;    /* enum sl_prompt_mode: auto|chat|plain|raw */
    double temperature; /* classify: calibration T (> 0) */
    int64_t max_tokens; /* extract / generate: generation budget */
    char *prompt;       /* generate: template, "{input}" replaced by the input */
    /* classify */
    char **labels;       /* (n_labels) */
    char **descriptions; /* (n_labels) entries may be NULL */
    size_t n_labels;
    char **ex_inputs, **ex_labels; /* (n_examples) few-shot */
    size_t n_examples;
    /* extract */
    char *schema;  /* the JSON Schema as compact JSON text */
    char *grammar; /* what it compiled to at load */
    /* classify through a trained head (`sluice train head`) on the model's
     * embeddings instead of label scoring; its labels are the task's */
    char *head;
};

/* ---------------------------------------------------------------- router */

#define SL_CONFIG_MAX_BACKENDS 32
#define SL_CONFIG_MAX_ROUTES 64
#define SL_CONFIG_MAX_TIERS 8
#define SL_CONFIG_MAX_RULES 64
#define SL_CONFIG_MAX_META 16       /* metadata conditions of one rule */
#define SL_CONFIG_MAX_THRESHOLDS 64 /* per-task thresholds of one route */

enum sl_backend_kind {
    SL_BACKEND_KIND_LOCAL = 0,  /* a models: entry served by this process */
    SL_BACKEND_KIND_OPENAI = 1, /* an OpenAI-compatible HTTP API */
};

/* How classify/extract reach an openai backend. */
enum sl_task_api {
    SL_TASK_API_CHAT = 0,   /* chat/completions with a prompt (any OpenAI API) */
    SL_TASK_API_SLUICE = 1, /* the upstream's /v1/classify and /v1/extract (a sluice server) */
};

struct sl_backend_config {
    char *name;
    int kind;    /* enum sl_backend_kind */
    char *model; /* local: a models: name; openai: the upstream's model name */
    /* openai */
    char *base_url;    /* "http://host:port/v1" */
    char *api_key_env; /* env variable with the key; NULL = none */
    int64_t connect_timeout_ms, timeout_ms, max_retries, backoff_ms;
    int task_api; /* enum sl_task_api */
    int remote;   /* 1: data leaves the machine (privacy applies); default 1 for openai, 0 local */
    /* breaker */
    int64_t breaker_window, breaker_min_calls, breaker_cooldown_ms;
    double breaker_failure_rate;
    /* prices (currency of costs:) */
    double input_per_mtok, output_per_mtok; /* API prices per million tokens */
    double infra_per_hour;                  /* machine price; cost = time the call used x this */
};

/* One condition set of a rules route; every set condition must hold. */
struct sl_rule_config {
    char *task;                          /* the request's task name, NULL = any */
    int64_t min_chars;                   /* input length in bytes >= this; -1 = unset */
    int64_t max_chars;                   /* input length in bytes <= this; -1 = unset */
    char *regex;                         /* PCRE2, matched against the input text; NULL = unset */
    char *api_key;                       /* the api_keys: name that sent it; NULL = any */
    char *meta_keys[SL_CONFIG_MAX_META]; /* request metadata key == value */
    char *meta_values[SL_CONFIG_MAX_META];
    size_t n_meta;
    char *to; /* the backend (a tier of the route) to use (required) */
};

enum sl_route_policy {
    SL_ROUTE_CASCADE = 0, /* tiers in order; accept when confidence >= threshold */
    SL_ROUTE_RULES = 1,   /* first matching rule picks the backend */
    SL_ROUTE_PREDICT = 2, /* a learned router picks before any model runs */
};

struct sl_route_config {
    char *name;
    int policy;                       /* enum sl_route_policy */
    char *tiers[SL_CONFIG_MAX_TIERS]; /* backend names, small first */
    size_t n_tiers;
    /* cascade: a tier (not the last) accepts an answer whose calibrated
     * confidence is >= its threshold. thresholds: default for every task,
     * then per task name. */
    double threshold; /* default 0.8 */
    char *threshold_tasks[SL_CONFIG_MAX_THRESHOLDS];
    double threshold_values[SL_CONFIG_MAX_THRESHOLDS];
    size_t n_thresholds;
    /* rules */
    struct sl_rule_config *rules; /* (n_rules) first match wins */
    size_t n_rules;
    char *default_tier; /* rules: when none matches; default tiers[0] */
    /* predict */
    char *predict_model;      /* router file from `sluice train-router` */
    double predict_threshold; /* P(small wrong) above it -> the last tier; default 0.5 */
    /* fallback: on error/timeout/breaker open, these backends next, in order;
     * none listed = the route's other tiers */
    char *fallback[SL_CONFIG_MAX_TIERS];
    size_t n_fallback;
    double budget_per_day; /* API spend per UTC day; spent -> stay local; < 0 = none */
    int pii;               /* enum sl_pii_policy; default redact */
    char *task;            /* default task for chat requests to this route; NULL = none */
};

struct sl_privacy_config {
    char **kinds; /* built-in kinds to detect ("email", "card", ...); NULL = all,
                   * non-NULL with n_kinds 0 = none (sl_config_pii_kinds) */
    size_t n_kinds;
    char **pattern_labels, **pattern_regexes; /* (n_patterns) */
    size_t n_patterns;
};

struct sl_log_config {
    char *db;   /* SQLite file, or "postgres://..."/"postgresql://..." or
                 * a libpq "key=value" string starting "pg:"; NULL = no log */
    int inputs; /* enum sl_store_input: store|hash|drop; default hash */
    int64_t busy_timeout_ms;
};

struct sl_config {
    struct sl_server_config server;
    struct sl_limits_config limits;
    struct sl_model_config *models; /* (n_models) */
    size_t n_models;
    struct sl_key_config *keys; /* (n_keys) */
    size_t n_keys;
    struct sl_task_config *tasks; /* (n_tasks) */
    size_t n_tasks;
    struct sl_backend_config *backends; /* (n_backends) */
    size_t n_backends;
    struct sl_route_config *routes; /* (n_routes) */
    size_t n_routes;
    struct sl_privacy_config privacy;
    struct sl_log_config log;
    char *costs_yaml; /* the costs: section re-emitted as YAML for
                       * sl_cost_config_parse; NULL = absent */
};

/* Fill c with every default (no models, no keys). Returns 0 or SL_ENOMEM. */
int sl_config_init(struct sl_config *c, struct sl_err *err);

/* Append a model with default settings; *out points into c (valid until the
 * next add). name and path are copied. 0, SL_ERANGE (too many), SL_ENOMEM. */
int sl_config_add_model(struct sl_config *c, const char *name, const char *path,
                        struct sl_model_config **out, struct sl_err *err);

/* Append an API key by its plain text (hashed here); models may be NULL. */
int sl_config_add_key(struct sl_config *c, const char *name, const char *plain, struct sl_err *err);

/* Parse YAML text[0..len) into c (which sl_config_init filled). Errors name
 * the line, the key and what was expected: SL_EFORMAT (not YAML, wrong
 * shape), SL_EINVAL (unknown key, bad value, out of range), SL_ERANGE. On
 * error c still holds only valid owned data: free it with sl_config_free. */
int sl_config_parse(struct sl_config *c, const char *text, size_t len, struct sl_err *err);

/* Read and parse a file (at most SL_CONFIG_MAX_FILE bytes). */
int sl_config_load(struct sl_config *c, const char *path, struct sl_err *err);

/* Checks that need the whole file: at least one model, unique names, keys
 * and tasks naming known models, backends and routes naming known models,
 * backends, tiers and tasks (docs/router.md, "Configuration").
 * sl_config_parse runs the router checks itself, with line numbers. */
int sl_config_validate(const struct sl_config *c, struct sl_err *err);

void sl_config_free(struct sl_config *c);

/* The task named name, or NULL. */
const struct sl_task_config *sl_config_task(const struct sl_config *c, const char *name);

/* The backend / route named name, or NULL. */
const struct sl_backend_config *sl_config_backend(const struct sl_config *c, const char *name);
const struct sl_route_config *sl_config_route(const struct sl_config *c, const char *name);
/* A route's threshold for a task (the per-task one, else the default);
 * task may be NULL. */
double sl_route_threshold(const struct sl_route_config *r, const char *task);

/* Append a backend / route with every default (a route: cascade, threshold
 * 0.8, pii redact, no budget; a backend: remote = kind is openai); *out
 * points into c (valid until the next add of the same kind). name is
 * copied. 0, SL_ERANGE (too many), SL_ENOMEM. For configs built in code
 * (tests); sl_config_validate checks them like a file. */
int sl_config_add_backend(struct sl_config *c, const char *name, int kind,
                          struct sl_backend_config **out, struct sl_err *err);
int sl_config_add_route(struct sl_config *c, const char *name, struct sl_route_config **out,
                        struct sl_err *err);

/* privacy.kinds as a bit set over enum sl_pii_kind (router/privacy.h), for
 * sl_pii_params.kinds: bit k = detect kind k. The YAML names, in enum order:
 * email, phone, card, iban, ssn_us, nino_uk, taxid_de, insee_fr. No kinds:
 * list = every built-in kind; `kinds: []` = none (patterns only). */
unsigned sl_config_pii_kinds(const struct sl_privacy_config *p);
/* A built-in kind by its YAML name or placeholder label (any case), or -1. */
int sl_config_pii_kind(const char *name);
/* The YAML name of built-in kind k ("email", ...), or NULL past the last. */
const char *sl_config_pii_kind_name(int k);

/* The reference of every option (markdown), from the option table. */
void sl_config_describe(FILE *f);

#endif
