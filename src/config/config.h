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
 * Sections later issues add (routes:, backends:) are reserved names:
 * the loader rejects them with a message saying this version does not read
 * them yet, rather than ignoring settings silently.
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
 * and tasks naming known models. */
int sl_config_validate(const struct sl_config *c, struct sl_err *err);

void sl_config_free(struct sl_config *c);

/* The task named name, or NULL. */
const struct sl_task_config *sl_config_task(const struct sl_config *c, const char *name);

/* The reference of every option (markdown), from the option table. */
void sl_config_describe(FILE *f);

#endif
