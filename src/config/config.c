/*
 * config.c - YAML configuration through one option table (config layer).
 *
 * The document is loaded with libyaml's document API and walked by hand:
 * sections are mappings of scalars described by the table below, `models`
 * is a mapping of name -> mapping, `api_keys` a sequence of mappings,
 * `tasks` a mapping of name -> mapping whose scalars are table rows and
 * whose labels, examples and schema are walked here. `backends` and
 * `routes` are mappings of name -> mapping in the same way (a backend's
 * breaker, a route's predict and each rule and its match are sub-sections
 * of the table; tiers, thresholds, fallback, metadata, privacy and costs
 * are walked here). Every scalar goes through set_opt(), which checks type
 * and range. Unknown keys are errors that list the known ones.
 *
 * Checks that join sections (a tier naming a backend, a backend naming a
 * model, a threshold naming a task) run after the whole file is walked, in
 * check_router(), which reports the line of what it checks when it knows
 * it (the walk writes them to struct lines) and is shared with
 * sl_config_validate for configs built in code. Regular expressions are
 * compiled with PCRE2 once at load to report errors, then thrown away; the
 * router compiles its own. See config.h and docs/router.md.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>
#include <pcre2.h>
#include <yaml.h>

#include "../router/privacy.h"
#include "../store/costs.h"
#include "../store/store.h"
#include "../tasks/schema.h"

/* The table stores enums as the index of their name in `enums`: these
 * must stay in the order of the enums they stand for. */
_Static_assert(SL_PII_POLICY_ALLOW == 0 && SL_PII_POLICY_REDACT == 1 &&
                   SL_PII_POLICY_LOCAL_ONLY == 2,
               "routes.pii names follow enum sl_pii_policy");
_Static_assert(SL_STORE_INPUT_STORE == 0 && SL_STORE_INPUT_HASH == 1 && SL_STORE_INPUT_DROP == 2,
               "log.inputs names follow enum sl_store_input");
_Static_assert(SL_BACKEND_KIND_LOCAL == 0 && SL_BACKEND_KIND_OPENAI == 1 && SL_TASK_API_CHAT == 0 &&
                   SL_TASK_API_SLUICE == 1 && SL_ROUTE_CASCADE == 0 && SL_ROUTE_RULES == 1 &&
                   SL_ROUTE_PREDICT == 2,
               "backend and route enum names");

/* privacy.kinds names, in the order of enum sl_pii_kind. */
static const char *const pii_kinds[] = {"email",  "phone",   "card",     "iban",
                                        "ssn_us", "nino_uk", "taxid_de", "insee_fr"};
_Static_assert(sizeof pii_kinds / sizeof *pii_kinds == SL_PII_CUSTOM,
               "one name per built-in kind of enum sl_pii_kind");

/* The kind a privacy.kinds entry names: one of pii_kinds, or (any case) the
 * placeholder label of privacy.h ("SSN", "de_taxid"); -1 if none. */
int sl_config_pii_kind(const char *name)
{
    for (int k = 0; k < SL_PII_CUSTOM; k++)
        if (!strcasecmp(name, pii_kinds[k]) ||
            !strcasecmp(name, sl_pii_kind_name((enum sl_pii_kind)k)))
            return k;
    return -1;
}

/* ------------------------------------------------------------------------ */
/* The option table                                                          */
/* ------------------------------------------------------------------------ */

enum opt_type { OPT_STR, OPT_INT, OPT_ENUM, OPT_REAL, OPT_BOOL };

/* In the order of the reference (sl_config_describe). */
enum opt_section {
    SEC_SERVER,
    SEC_LIMITS,
    SEC_MODEL,
    SEC_TASK,
    SEC_BACKEND, /* struct sl_backend_config */
    SEC_BREAKER, /* its breaker: (same struct) */
    SEC_ROUTE,   /* struct sl_route_config */
    SEC_PREDICT, /* its predict: (same struct) */
    SEC_RULE,    /* struct sl_rule_config: one entry of rules: */
    SEC_MATCH,   /* its match: (same struct) */
    SEC_LOG,     /* struct sl_log_config */
};

struct opt {
    enum opt_section section;
    const char *key;
    enum opt_type type;
    size_t offset;     /* into the section's struct */
    const char *def;   /* default, as it would be written in YAML; NULL = unset */
    double lo, hi;     /* OPT_INT, OPT_REAL range */
    const char *enums; /* OPT_ENUM: names separated by '|', value = index */
    const char *help;
};

static const struct opt opts[] = {
    {SEC_SERVER, "host", OPT_STR, offsetof(struct sl_server_config, host), "127.0.0.1", 0, 0, NULL,
     "address to listen on (0.0.0.0 for every interface)"},
    {SEC_SERVER, "port", OPT_INT, offsetof(struct sl_server_config, port), "8080", 0, 65535, NULL,
     "TCP port; 0 picks a free one (printed at start)"},
    {SEC_SERVER, "max_connections", OPT_INT, offsetof(struct sl_server_config, max_connections),
     "256", 1, 10000, NULL, "simultaneous connections (one thread each); more are refused"},
    {SEC_SERVER, "max_body_bytes", OPT_INT, offsetof(struct sl_server_config, max_body_bytes),
     "4194304", 1024, 1 << 30, NULL, "largest request body; larger gets 413"},
    {SEC_SERVER, "max_header_bytes", OPT_INT, offsetof(struct sl_server_config, max_header_bytes),
     "16384", 1024, 1 << 20, NULL, "all request headers together; more gets 431"},
    {SEC_SERVER, "idle_timeout_s", OPT_INT, offsetof(struct sl_server_config, idle_timeout_s), "30",
     1, 86400, NULL, "close a connection that sends nothing for this long (slow clients)"},
    {SEC_SERVER, "request_timeout_s", OPT_INT, offsetof(struct sl_server_config, request_timeout_s),
     "600", 1, 86400, NULL, "most time one request may take, queue included; then 504 / finish"},
    {SEC_SERVER, "chat_template", OPT_STR, offsetof(struct sl_server_config, chat_template),
     "chatml", 0, 0, NULL,
     "template for models whose file has none (chatml, llama3, llama2, mistral-v7, ...)"},

    {SEC_LIMITS, "max_prompt_tokens", OPT_INT, offsetof(struct sl_limits_config, max_prompt_tokens),
     "32768", 1, 1 << 24, NULL, "tokens in one prompt (also capped by the model's ctx)"},
    {SEC_LIMITS, "max_completion_tokens", OPT_INT,
     offsetof(struct sl_limits_config, max_completion_tokens), "4096", 1, 1 << 24, NULL,
     "largest max_tokens; requests without max_tokens get this"},
    {SEC_LIMITS, "max_n", OPT_INT, offsetof(struct sl_limits_config, max_n), "16", 1, 64, NULL,
     "choices per request (n times the number of prompts)"},
    {SEC_LIMITS, "max_embedding_inputs", OPT_INT,
     offsetof(struct sl_limits_config, max_embedding_inputs), "256", 1, 65536, NULL,
     "inputs in one /v1/embeddings, /v1/classify or /v1/extract request"},

    {SEC_MODEL, "path", OPT_STR, offsetof(struct sl_model_config, path), NULL, 0, 0, NULL,
     "GGUF file (required)"},
    {SEC_MODEL, "threads", OPT_INT, offsetof(struct sl_model_config, threads), "0", 0, 1024, NULL,
     "engine threads; 0 = every CPU"},
    {SEC_MODEL, "ctx", OPT_INT, offsetof(struct sl_model_config, ctx), "4096", 16, 1 << 20, NULL,
     "KV cells shared by all slots and the prefix cache"},
    {SEC_MODEL, "batch", OPT_INT, offsetof(struct sl_model_config, batch), "512", 1, 1 << 16, NULL,
     "most tokens in one forward pass (prefill chunks + decodes)"},
    {SEC_MODEL, "slots", OPT_INT, offsetof(struct sl_model_config, slots), "8", 1, 32, NULL,
     "sequences generated at the same time"},
    {SEC_MODEL, "queue", OPT_INT, offsetof(struct sl_model_config, queue), "64", 0, 100000, NULL,
     "requests waiting for a slot; past it 429 with Retry-After"},
    {SEC_MODEL, "cache_cells", OPT_INT, offsetof(struct sl_model_config, cache_cells), "2048", 0,
     1 << 20, NULL, "KV cells kept for finished requests' prefixes (LRU); 0 = no prefix cache"},
    {SEC_MODEL, "embd_ctx", OPT_INT, offsetof(struct sl_model_config, embd_ctx), "512", 1, 1 << 16,
     NULL, "most tokens of one embedding input"},
    {SEC_MODEL, "chat_template", OPT_STR, offsetof(struct sl_model_config, chat_template), NULL, 0,
     0, NULL, "template name overriding the file's (default: detected, else server.chat_template)"},
    {SEC_MODEL, "pooling", OPT_ENUM, offsetof(struct sl_model_config, pooling), "mean", 0, 0,
     "none|mean|last", "/v1/embeddings pooling of final hidden states (then L2-normalized)"},
    {SEC_MODEL, "lora", OPT_STR, offsetof(struct sl_model_config, lora), NULL, 0, 0, NULL,
     "LoRA adapter GGUF (`sluice train lora`) merged into the weights at load"},
    {SEC_MODEL, "lora_scale", OPT_REAL, offsetof(struct sl_model_config, lora_scale), "1", -100,
     100, NULL, "scale of the adapter's update (1 = as trained)"},

    {SEC_TASK, "kind", OPT_ENUM, offsetof(struct sl_task_config, kind), NULL, 0, 0,
     "classify|extract|generate", "what the task does (required)"},
    {SEC_TASK, "model", OPT_STR, offsetof(struct sl_task_config, model), NULL, 0, 0, NULL,
     "the models: entry it runs on (required)"},
    {SEC_TASK, "instruction", OPT_STR, offsetof(struct sl_task_config, instruction), NULL, 0, 0,
     NULL, "what the model is told before the input (default: a generic one)"},
    {SEC_TASK, "prompt_mode", OPT_ENUM, offsetof(struct sl_task_config, prompt_mode), "auto", 0, 0,
     "auto|chat|plain|raw", "how the prompt is rendered (docs/tasks.md)"},
    {SEC_TASK, "temperature", OPT_REAL, offsetof(struct sl_task_config, temperature), "1", 0.01,
     100, NULL, "classify: calibration temperature (from `sluice calibrate`)"},
    {SEC_TASK, "max_tokens", OPT_INT, offsetof(struct sl_task_config, max_tokens), "256", 1,
     1 << 20, NULL, "extract/generate: most tokens generated"},
    {SEC_TASK, "prompt", OPT_STR, offsetof(struct sl_task_config, prompt), NULL, 0, 0, NULL,
     "generate: prompt template, `{input}` replaced by the input (required)"},
    {SEC_TASK, "head", OPT_STR, offsetof(struct sl_task_config, head), NULL, 0, 0, NULL,
     "classify: head GGUF from `sluice train head`, run on the model's embeddings instead of "
     "label scoring"},

#define B(f) offsetof(struct sl_backend_config, f)
    {SEC_BACKEND, "kind", OPT_ENUM, B(kind), NULL, 0, 0, "local|openai",
     "a models: entry of this server, or an OpenAI-compatible API (required)"},
    {SEC_BACKEND, "model", OPT_STR, B(model), NULL, 0, 0, NULL,
     "local: a models: entry; openai: the upstream's model name (required)"},
    {SEC_BACKEND, "base_url", OPT_STR, B(base_url), NULL, 0, 0, NULL,
     "openai: the API root, `http(s)://host:port/v1` (required)"},
    {SEC_BACKEND, "api_key_env", OPT_STR, B(api_key_env), NULL, 0, 0, NULL,
     "openai: environment variable holding the API key (absent: no key is sent)"},
    {SEC_BACKEND, "connect_timeout_ms", OPT_INT, B(connect_timeout_ms), "3000", 1, 600000, NULL,
     "openai: connect timeout"},
    {SEC_BACKEND, "timeout_ms", OPT_INT, B(timeout_ms), "60000", 1, 3600000, NULL,
     "openai: one whole attempt, stream included"},
    {SEC_BACKEND, "max_retries", OPT_INT, B(max_retries), "2", 0, 10, NULL,
     "openai: extra attempts after a connection error, 429 or 5xx"},
    {SEC_BACKEND, "backoff_ms", OPT_INT, B(backoff_ms), "250", 0, 60000, NULL,
     "openai: wait before the first retry; doubles each retry (with jitter)"},
    {SEC_BACKEND, "task_api", OPT_ENUM, B(task_api), "chat", 0, 0, "chat|sluice",
     "openai: classify/extract through chat/completions with a prompt, or the upstream's "
     "/v1/classify and /v1/extract (a sluice server)"},
    {SEC_BACKEND, "remote", OPT_BOOL, B(remote), NULL, 0, 0, NULL,
     "data sent here leaves the machine, so the route's pii policy applies (default: true for "
     "openai, false for local)"},
    {SEC_BACKEND, "input_per_mtok", OPT_REAL, B(input_per_mtok), "0", 0, 1e6, NULL,
     "API price per million input tokens (in the currency of costs:)"},
    {SEC_BACKEND, "output_per_mtok", OPT_REAL, B(output_per_mtok), "0", 0, 1e6, NULL,
     "API price per million output tokens"},
    {SEC_BACKEND, "infra_per_hour", OPT_REAL, B(infra_per_hour), "0", 0, 1e6, NULL,
     "machine price per hour; a call costs the time it used times this"},

    {SEC_BREAKER, "window", OPT_INT, B(breaker_window), "20", 1, 256, NULL,
     "outcomes kept: the last calls"},
    {SEC_BREAKER, "min_calls", OPT_INT, B(breaker_min_calls), "5", 1, 256, NULL,
     "fewest outcomes in the window before the failure rate is judged"},
    {SEC_BREAKER, "failure_rate", OPT_REAL, B(breaker_failure_rate), "0.5", 0.01, 1, NULL,
     "opens at this share of failures in the window"},
    {SEC_BREAKER, "cooldown_ms", OPT_INT, B(breaker_cooldown_ms), "30000", 1, 86400000, NULL,
     "time open (calls refused) before a trial call"},
#undef B

#define R(f) offsetof(struct sl_route_config, f)
    {SEC_ROUTE, "policy", OPT_ENUM, R(policy), "cascade", 0, 0, "cascade|rules|predict",
     "how the tier is chosen (docs/router.md)"},
    {SEC_ROUTE, "threshold", OPT_REAL, R(threshold), "0.8", 0, 1, NULL,
     "cascade: a tier before the last keeps its answer when its calibrated confidence is at "
     "least this (per task: thresholds)"},
    {SEC_ROUTE, "budget_per_day", OPT_REAL, R(budget_per_day), "-1", -1, 1e9, NULL,
     "API spend per UTC day; once reached, remote tiers are skipped; -1 = no budget"},
    {SEC_ROUTE, "pii", OPT_ENUM, R(pii), "redact", 0, 0, "allow|redact|local-only",
     "what a remote tier gets of an input with PII: as is, redacted (restored in the answer), "
     "or nothing"},
    {SEC_ROUTE, "task", OPT_STR, R(task), NULL, 0, 0, NULL,
     "tasks: entry that chat requests to this route count as (thresholds, rules)"},
    {SEC_ROUTE, "default", OPT_STR, R(default_tier), NULL, 0, 0, NULL,
     "rules: the tier when no rule matches (default: the first tier)"},

    {SEC_PREDICT, "model", OPT_STR, R(predict_model), NULL, 0, 0, NULL,
     "router file from `sluice train-router` (required)"},
    {SEC_PREDICT, "threshold", OPT_REAL, R(predict_threshold), "0.5", 0, 1, NULL,
     "P(first tier wrong) above this sends the request to the last tier"},
#undef R

#define U(f) offsetof(struct sl_rule_config, f)
    {SEC_RULE, "to", OPT_STR, U(to), NULL, 0, 0, NULL,
     "the tier a matching request goes to: one of the route's tiers (required)"},
    {SEC_MATCH, "task", OPT_STR, U(task), NULL, 0, 0, NULL, "the request's task (a tasks: entry)"},
    {SEC_MATCH, "min_chars", OPT_INT, U(min_chars), NULL, 0, 1 << 30, NULL,
     "input length in bytes is at least this"},
    {SEC_MATCH, "max_chars", OPT_INT, U(max_chars), NULL, 0, 1 << 30, NULL,
     "input length in bytes is at most this"},
    {SEC_MATCH, "regex", OPT_STR, U(regex), NULL, 0, 0, NULL,
     "PCRE2 expression found in the input (compiled at load; `(?i)` ignores case)"},
    {SEC_MATCH, "api_key", OPT_STR, U(api_key), NULL, 0, 0, NULL,
     "name of the api_keys: entry that sent the request"},
#undef U

    {SEC_LOG, "db", OPT_STR, offsetof(struct sl_log_config, db), NULL, 0, 0, NULL,
     "request log and cost ledger: a SQLite file, or `postgres://...`, `postgresql://...`, "
     "`pg:` + libpq key=value (absent: no log)"},
    {SEC_LOG, "inputs", OPT_ENUM, offsetof(struct sl_log_config, inputs), "hash", 0, 0,
     "store|hash|drop", "what the log keeps of each input: the text, its SHA-256, or nothing"},
    {SEC_LOG, "busy_timeout_ms", OPT_INT, offsetof(struct sl_log_config, busy_timeout_ms), "5000",
     0, 600000, NULL, "SQLite: how long a write waits for another writer's lock"},
};
#define N_OPTS (sizeof opts / sizeof *opts)

static const char *section_name(enum opt_section s)
{
    switch (s) {
    case SEC_SERVER:
        return "server";
    case SEC_LIMITS:
        return "limits";
    case SEC_MODEL:
        return "models.<name>";
    case SEC_TASK:
        return "tasks.<name>";
    case SEC_BACKEND:
        return "backends.<name>";
    case SEC_BREAKER:
        return "backends.<name>.breaker";
    case SEC_ROUTE:
        return "routes.<name>";
    case SEC_PREDICT:
        return "routes.<name>.predict";
    case SEC_RULE:
        return "routes.<name>.rules[]";
    case SEC_MATCH:
        return "routes.<name>.rules[].match";
    case SEC_LOG:
        return "log";
    }
    return "?";
}

/* ------------------------------------------------------------------------ */
/* Setting one value                                                         */
/* ------------------------------------------------------------------------ */

static int set_opt(const struct opt *o, void *base, const char *val, const char *where,
                   struct sl_err *err)
{
    char *p = (char *)base + o->offset;
    switch (o->type) {
    case OPT_STR: {
        if (strlen(val) > SL_CONFIG_MAX_STR)
            return sl_err_set(err, SL_ERANGE, "%s: %s: value longer than %u bytes", where, o->key,
                              SL_CONFIG_MAX_STR);
        char *s = strdup(val);
        if (!s) return sl_err_set(err, SL_ENOMEM, "config: out of memory");
        free(*(char **)p);
        *(char **)p = s;
        return 0;
    }
    case OPT_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(val, &end, 10);
        if (errno || end == val || *end || (double)v < o->lo || (double)v > o->hi)
            return sl_err_set(err, SL_EINVAL, "%s: %s: '%s' is not an integer in [%.0f, %.0f]",
                              where, o->key, val, o->lo, o->hi);
        *(int64_t *)p = v;
        return 0;
    }
    case OPT_REAL: {
        char *end;
        errno = 0;
        double v = strtod(val, &end);
        if (errno || end == val || *end || !(v >= o->lo && v <= o->hi))
            return sl_err_set(err, SL_EINVAL, "%s: %s: '%s' is not a number in [%g, %g]", where,
                              o->key, val, o->lo, o->hi);
        *(double *)p = v;
        return 0;
    }
    case OPT_ENUM: {
        const char *e = o->enums;
        size_t n = strlen(val);
        for (int i = 0; e && *e; i++) {
            const char *bar = strchr(e, '|');
            size_t len = bar ? (size_t)(bar - e) : strlen(e);
            if (len == n && !memcmp(e, val, n)) {
                *(int *)p = i;
                return 0;
            }
            e = bar ? bar + 1 : e + len;
        }
        return sl_err_set(err, SL_EINVAL, "%s: %s: '%s' is not one of %s", where, o->key, val,
                          o->enums);
    }
    case OPT_BOOL: {
        int v = !strcmp(val, "true") || !strcmp(val, "yes") || !strcmp(val, "on")    ? 1
                : !strcmp(val, "false") || !strcmp(val, "no") || !strcmp(val, "off") ? 0
                                                                                     : -1;
        if (v < 0)
            return sl_err_set(err, SL_EINVAL, "%s: %s: '%s' is not true or false", where, o->key,
                              val);
        *(int *)p = v;
        return 0;
    }
    }
    return SL_EINVAL;
}

static void free_opts(enum opt_section sec, void *base)
{
    for (size_t i = 0; i < N_OPTS; i++)
        if (opts[i].section == sec && opts[i].type == OPT_STR) {
            char **p = (char **)((char *)base + opts[i].offset);
            free(*p);
            *p = NULL;
        }
}

static int set_defaults(enum opt_section sec, void *base, struct sl_err *err)
{
    for (size_t i = 0; i < N_OPTS; i++) {
        if (opts[i].section != sec || !opts[i].def) continue;
        int rc = set_opt(&opts[i], base, opts[i].def, "default", err);
        if (rc) return rc;
    }
    return 0;
}

static const struct opt *find_opt(enum opt_section sec, const char *key)
{
    for (size_t i = 0; i < N_OPTS; i++)
        if (opts[i].section == sec && !strcmp(opts[i].key, key)) return &opts[i];
    return NULL;
}

static void known_keys(enum opt_section sec, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < N_OPTS && n + 1 < cap; i++)
        if (opts[i].section == sec) {
            int k = snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", opts[i].key);
            if (k < 0) break;
            n += (size_t)k;
        }
}

/* ------------------------------------------------------------------------ */
/* Building configs by hand                                                  */
/* ------------------------------------------------------------------------ */

int sl_config_init(struct sl_config *c, struct sl_err *err)
{
    int rc;
    memset(c, 0, sizeof *c);
    if ((rc = set_defaults(SEC_SERVER, &c->server, err))) return rc;
    if ((rc = set_defaults(SEC_LOG, &c->log, err))) return rc;
    return set_defaults(SEC_LIMITS, &c->limits, err);
}

static void model_free(struct sl_model_config *m)
{
    free(m->name);
    free_opts(SEC_MODEL, m);
}

static void key_free(struct sl_key_config *k)
{
    free(k->name);
    for (size_t i = 0; i < k->n_models; i++)
        free(k->models[i]);
}

int sl_config_add_model(struct sl_config *c, const char *name, const char *path,
                        struct sl_model_config **out, struct sl_err *err)
{
    if (c->n_models >= SL_CONFIG_MAX_MODELS)
        return sl_err_set(err, SL_ERANGE, "config: more than %d models", SL_CONFIG_MAX_MODELS);
    struct sl_model_config *nm = realloc(c->models, (c->n_models + 1) * sizeof *nm);
    if (!nm) return sl_err_set(err, SL_ENOMEM, "config: out of memory");
    c->models = nm;
    struct sl_model_config *m = &c->models[c->n_models];
    memset(m, 0, sizeof *m);
    int rc = set_defaults(SEC_MODEL, m, err);
    if (!rc && !(m->name = strdup(name))) rc = sl_err_set(err, SL_ENOMEM, "config: out of memory");
    if (!rc && path && !(m->path = strdup(path)))
        rc = sl_err_set(err, SL_ENOMEM, "config: out of memory");
    if (rc) {
        model_free(m);
        return rc;
    }
    c->n_models++;
    if (out) *out = m;
    return 0;
}

static int add_key_entry(struct sl_config *c, struct sl_key_config **out, struct sl_err *err)
{
    if (c->n_keys >= SL_CONFIG_MAX_KEYS)
        return sl_err_set(err, SL_ERANGE, "config: more than %d api_keys", SL_CONFIG_MAX_KEYS);
    struct sl_key_config *nk = realloc(c->keys, (c->n_keys + 1) * sizeof *nk);
    if (!nk) return sl_err_set(err, SL_ENOMEM, "config: out of memory");
    c->keys = nk;
    *out = &c->keys[c->n_keys++];
    memset(*out, 0, sizeof **out);
    return 0;
}

int sl_config_add_key(struct sl_config *c, const char *name, const char *plain, struct sl_err *err)
{
    struct sl_key_config *k;
    int rc = add_key_entry(c, &k, err);
    if (rc) return rc;
    if (!(k->name = strdup(name))) return sl_err_set(err, SL_ENOMEM, "config: out of memory");
    sl_sha256(plain, strlen(plain), k->sha256);
    return 0;
}

static void task_free(struct sl_task_config *t)
{
    free(t->name);
    free_opts(SEC_TASK, t);
    for (size_t i = 0; i < t->n_labels; i++) {
        free(t->labels[i]);
        free(t->descriptions[i]);
    }
    for (size_t i = 0; i < t->n_examples; i++) {
        free(t->ex_inputs[i]);
        free(t->ex_labels[i]);
    }
    free(t->labels);
    free(t->descriptions);
    free(t->ex_inputs);
    free(t->ex_labels);
    free(t->schema);
    free(t->grammar);
}

const struct sl_task_config *sl_config_task(const struct sl_config *c, const char *name)
{
    for (size_t i = 0; name && i < c->n_tasks; i++)
        if (!strcmp(c->tasks[i].name, name)) return &c->tasks[i];
    return NULL;
}

/* --- backends and routes -------------------------------------------------- */

static void backend_free(struct sl_backend_config *b)
{
    free(b->name);
    free_opts(SEC_BACKEND, b);
}

int sl_config_add_backend(struct sl_config *c, const char *name, int kind,
                          struct sl_backend_config **out, struct sl_err *err)
{
    if (c->n_backends >= SL_CONFIG_MAX_BACKENDS)
        return sl_err_set(err, SL_ERANGE, "config: more than %d backends", SL_CONFIG_MAX_BACKENDS);
    struct sl_backend_config *nb = realloc(c->backends, (c->n_backends + 1) * sizeof *nb);
    if (!nb) return sl_err_set(err, SL_ENOMEM, "config: out of memory");
    c->backends = nb;
    struct sl_backend_config *b = &nb[c->n_backends];
    memset(b, 0, sizeof *b);
    int rc = set_defaults(SEC_BACKEND, b, err);
    if (!rc) rc = set_defaults(SEC_BREAKER, b, err);
    if (!rc && !(b->name = strdup(name))) rc = sl_err_set(err, SL_ENOMEM, "config: out of memory");
    if (rc) {
        backend_free(b);
        return rc;
    }
    b->kind = kind;
    b->remote = kind == SL_BACKEND_KIND_OPENAI;
    c->n_backends++;
    if (out) *out = b;
    return 0;
}

static void rule_free(struct sl_rule_config *u)
{
    free_opts(SEC_RULE, u);
    free_opts(SEC_MATCH, u);
    for (size_t i = 0; i < u->n_meta; i++) {
        free(u->meta_keys[i]);
        free(u->meta_values[i]);
    }
}

static void route_free(struct sl_route_config *r)
{
    free(r->name);
    free_opts(SEC_ROUTE, r);
    free_opts(SEC_PREDICT, r);
    for (size_t i = 0; i < r->n_tiers; i++)
        free(r->tiers[i]);
    for (size_t i = 0; i < r->n_fallback; i++)
        free(r->fallback[i]);
    for (size_t i = 0; i < r->n_thresholds; i++)
        free(r->threshold_tasks[i]);
    for (size_t i = 0; i < r->n_rules; i++)
        rule_free(&r->rules[i]);
    free(r->rules);
}

int sl_config_add_route(struct sl_config *c, const char *name, struct sl_route_config **out,
                        struct sl_err *err)
{
    if (c->n_routes >= SL_CONFIG_MAX_ROUTES)
        return sl_err_set(err, SL_ERANGE, "config: more than %d routes", SL_CONFIG_MAX_ROUTES);
    struct sl_route_config *nr = realloc(c->routes, (c->n_routes + 1) * sizeof *nr);
    if (!nr) return sl_err_set(err, SL_ENOMEM, "config: out of memory");
    c->routes = nr;
    struct sl_route_config *r = &nr[c->n_routes];
    memset(r, 0, sizeof *r);
    int rc = set_defaults(SEC_ROUTE, r, err);
    if (!rc) rc = set_defaults(SEC_PREDICT, r, err);
    if (!rc && !(r->name = strdup(name))) rc = sl_err_set(err, SL_ENOMEM, "config: out of memory");
    if (rc) {
        route_free(r);
        return rc;
    }
    c->n_routes++;
    if (out) *out = r;
    return 0;
}

const struct sl_backend_config *sl_config_backend(const struct sl_config *c, const char *name)
{
    for (size_t i = 0; name && i < c->n_backends; i++)
        if (!strcmp(c->backends[i].name, name)) return &c->backends[i];
    return NULL;
}

const struct sl_route_config *sl_config_route(const struct sl_config *c, const char *name)
{
    for (size_t i = 0; name && i < c->n_routes; i++)
        if (!strcmp(c->routes[i].name, name)) return &c->routes[i];
    return NULL;
}

double sl_route_threshold(const struct sl_route_config *r, const char *task)
{
    for (size_t i = 0; task && i < r->n_thresholds; i++)
        if (!strcmp(r->threshold_tasks[i], task)) return r->threshold_values[i];
    return r->threshold;
}

unsigned sl_config_pii_kinds(const struct sl_privacy_config *p)
{
    unsigned all = (1u << SL_PII_CUSTOM) - 1, m = 0;
    if (!p->kinds) return all;
    for (size_t i = 0; i < p->n_kinds; i++) {
        int k = p->kinds[i] ? sl_config_pii_kind(p->kinds[i]) : -1;
        if (k >= 0) m |= 1u << k;
    }
    return m;
}

const char *sl_config_pii_kind_name(int k)
{
    return k >= 0 && k < SL_PII_CUSTOM ? pii_kinds[k] : NULL;
}

static void privacy_free(struct sl_privacy_config *p)
{
    for (size_t i = 0; i < p->n_kinds; i++)
        free(p->kinds[i]);
    for (size_t i = 0; i < p->n_patterns; i++) {
        free(p->pattern_labels[i]);
        free(p->pattern_regexes[i]);
    }
    free(p->kinds);
    free(p->pattern_labels);
    free(p->pattern_regexes);
}

void sl_config_free(struct sl_config *c)
{
    free_opts(SEC_SERVER, &c->server);
    free_opts(SEC_LIMITS, &c->limits);
    for (size_t i = 0; i < c->n_models; i++)
        model_free(&c->models[i]);
    for (size_t i = 0; i < c->n_keys; i++)
        key_free(&c->keys[i]);
    for (size_t i = 0; i < c->n_tasks; i++)
        task_free(&c->tasks[i]);
    for (size_t i = 0; i < c->n_backends; i++)
        backend_free(&c->backends[i]);
    for (size_t i = 0; i < c->n_routes; i++)
        route_free(&c->routes[i]);
    privacy_free(&c->privacy);
    free_opts(SEC_LOG, &c->log);
    free(c->costs_yaml);
    free(c->models);
    free(c->keys);
    free(c->tasks);
    free(c->backends);
    free(c->routes);
    memset(c, 0, sizeof *c);
}

/* ------------------------------------------------------------------------ */
/* Walking the YAML document                                                 */
/* ------------------------------------------------------------------------ */

/* Lines of what check_router() reports, written by the walk (0 = not
 * from this file: the message then has no line). */
struct route_lines {
    int at, tiers, fallback, deflt, task, predict;
    int thresholds[SL_CONFIG_MAX_THRESHOLDS]; /* of each task name */
    int rule_to[SL_CONFIG_MAX_RULES];         /* of each rule's to: */
    int rule_task[SL_CONFIG_MAX_RULES];       /* of each rule's match.task */
};

struct lines {
    int backend_at[SL_CONFIG_MAX_BACKENDS], backend_model[SL_CONFIG_MAX_BACKENDS];
    struct route_lines route[SL_CONFIG_MAX_ROUTES];
};

struct walk {
    yaml_document_t *doc;
    struct sl_config *c;
    struct sl_err *err;
    const char *text; /* the whole file (the costs: section is parsed from it) */
    size_t len;
    struct lines *lines;
};

static const char *scalar(yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}
static int line_of(yaml_node_t *n)
{
    return (int)n->start_mark.line + 1;
}

static const char *kind_name(yaml_node_t *n)
{
    return !n                              ? "nothing"
           : n->type == YAML_SCALAR_NODE   ? "a scalar"
           : n->type == YAML_SEQUENCE_NODE ? "a list"
                                           : "a mapping";
}

static int expect(struct walk *w, yaml_node_t *n, yaml_node_type_t t, const char *what)
{
    if (n && n->type == t) return 0;
    return sl_err_set(w->err, SL_EFORMAT, "config line %d: %s must be %s, not %s",
                      n ? line_of(n) : 0, what,
                      t == YAML_SCALAR_NODE     ? "a scalar"
                      : t == YAML_SEQUENCE_NODE ? "a list"
                                                : "a mapping",
                      kind_name(n));
}

/* One key k: v of a mapping as a row of the table. An unknown key is an
 * error listing the known ones, then extra (the keys the caller walks
 * itself; may be NULL). */
static int set_row(struct walk *w, enum opt_section sec, void *base, yaml_node_t *k, yaml_node_t *v,
                   const char *where, const char *extra)
{
    int rc;
    if ((rc = expect(w, k, YAML_SCALAR_NODE, "a key"))) return rc;
    const struct opt *o = find_opt(sec, scalar(k));
    if (!o) {
        char known[512];
        known_keys(sec, known, sizeof known);
        return sl_err_set(
            w->err, SL_EINVAL, "config line %d: unknown key '%s' in %s (known: %s%s%s)", line_of(k),
            scalar(k), where, known, extra && known[0] ? ", " : "", extra ? extra : "");
    }
    char what[260], at[260];
    snprintf(what, sizeof what, "%s.%s", where, o->key);
    if ((rc = expect(w, v, YAML_SCALAR_NODE, what))) return rc;
    snprintf(at, sizeof at, "config line %d: %s", line_of(v), where);
    return set_opt(o, base, scalar(v), at, w->err);
}

/* A mapping of scalar keys to scalar values, each a row of the table. */
static int walk_section(struct walk *w, yaml_node_t *map, enum opt_section sec, void *base,
                        const char *where)
{
    int rc;
    if ((rc = expect(w, map, YAML_MAPPING_NODE, where))) return rc;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(w->doc, p->value);
        if ((rc = set_row(w, sec, base, k, v, where, NULL))) return rc;
    }
    return 0;
}

static int walk_models(struct walk *w, yaml_node_t *map)
{
    int rc;
    if ((rc = expect(w, map, YAML_MAPPING_NODE, "models"))) return rc;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(w->doc, p->value);
        struct sl_model_config *m;
        if ((rc = expect(w, k, YAML_SCALAR_NODE, "a model name"))) return rc;
        if (!scalar(k)[0])
            return sl_err_set(w->err, SL_EINVAL, "config line %d: empty model name", line_of(k));
        if ((rc = sl_config_add_model(w->c, scalar(k), NULL, &m, w->err))) return rc;
        char where[200];
        snprintf(where, sizeof where, "models.%.150s", scalar(k));
        if (v && v->type == YAML_SCALAR_NODE) { /* short form: name: path */
            if ((rc = set_opt(find_opt(SEC_MODEL, "path"), m, scalar(v), where, w->err))) return rc;
            continue;
        }
        if ((rc = walk_section(w, v, SEC_MODEL, m, where))) return rc;
        if (!m->path)
            return sl_err_set(w->err, SL_EINVAL, "config line %d: %s has no path", line_of(v),
                              where);
    }
    return 0;
}

static int walk_keys(struct walk *w, yaml_node_t *seq)
{
    int rc;
    if ((rc = expect(w, seq, YAML_SEQUENCE_NODE, "api_keys"))) return rc;
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top;
         it++) {
        yaml_node_t *e = yaml_document_get_node(w->doc, *it);
        struct sl_key_config *k;
        bool have_hash = false;
        if ((rc = expect(w, e, YAML_MAPPING_NODE, "an api_keys entry"))) return rc;
        if ((rc = add_key_entry(w->c, &k, w->err))) return rc;
        for (yaml_node_pair_t *p = e->data.mapping.pairs.start; p < e->data.mapping.pairs.top;
             p++) {
            yaml_node_t *kk = yaml_document_get_node(w->doc, p->key);
            yaml_node_t *v = yaml_document_get_node(w->doc, p->value);
            if ((rc = expect(w, kk, YAML_SCALAR_NODE, "a key"))) return rc;
            const char *key = scalar(kk);
            if (!strcmp(key, "name")) {
                if ((rc = expect(w, v, YAML_SCALAR_NODE, "api_keys[].name"))) return rc;
                free(k->name);
                if (!(k->name = strdup(scalar(v))))
                    return sl_err_set(w->err, SL_ENOMEM, "config: out of memory");
            } else if (!strcmp(key, "sha256")) {
                if ((rc = expect(w, v, YAML_SCALAR_NODE, "api_keys[].sha256"))) return rc;
                if (sl_sha256_from_hex(scalar(v), k->sha256))
                    return sl_err_set(w->err, SL_EINVAL,
                                      "config line %d: api_keys[].sha256 must be 64 hex digits "
                                      "(make one with: sluice serve --hash-key KEY)",
                                      line_of(v));
                have_hash = true;
            } else if (!strcmp(key, "models")) {
                if ((rc = expect(w, v, YAML_SEQUENCE_NODE, "api_keys[].models"))) return rc;
                for (yaml_node_item_t *m = v->data.sequence.items.start;
                     m < v->data.sequence.items.top; m++) {
                    yaml_node_t *mn = yaml_document_get_node(w->doc, *m);
                    if ((rc = expect(w, mn, YAML_SCALAR_NODE, "a model name"))) return rc;
                    if (k->n_models >= SL_CONFIG_MAX_KEY_MODELS)
                        return sl_err_set(w->err, SL_ERANGE,
                                          "config line %d: more than %d models for one key",
                                          line_of(mn), SL_CONFIG_MAX_KEY_MODELS);
                    if (!(k->models[k->n_models] = strdup(scalar(mn))))
                        return sl_err_set(w->err, SL_ENOMEM, "config: out of memory");
                    k->n_models++;
                }
            } else {
                return sl_err_set(
                    w->err, SL_EINVAL,
                    "config line %d: unknown key '%s' in api_keys (known: name, sha256, models)",
                    line_of(kk), key);
            }
        }
        if (!have_hash)
            return sl_err_set(w->err, SL_EINVAL, "config line %d: api_keys entry without sha256",
                              line_of(e));
        if (!k->name && !(k->name = strdup("key")))
            return sl_err_set(w->err, SL_ENOMEM, "config: out of memory");
    }
    return 0;
}

/* --- tasks ---------------------------------------------------------------- */

static char *dup_checked(struct walk *w, yaml_node_t *n, const char *what, int *rc)
{
    if ((*rc = expect(w, n, YAML_SCALAR_NODE, what))) return NULL;
    if (strlen(scalar(n)) > SL_CONFIG_MAX_STR) {
        *rc = sl_err_set(w->err, SL_ERANGE, "config line %d: %s longer than %u bytes", line_of(n),
                         what, SL_CONFIG_MAX_STR);
        return NULL;
    }
    char *d = strdup(scalar(n));
    if (!d) *rc = sl_err_set(w->err, SL_ENOMEM, "config: out of memory");
    return d;
}

/* A YAML node as JSON: plain scalars that read as numbers, booleans or null
 * become those; quoted scalars stay strings. NULL on error (w->err set). */
static json_t *yaml_to_json(struct walk *w, yaml_node_t *n, int depth)
{
    if (!n || depth > 64) {
        sl_err_set(w->err, SL_ERANGE, "config line %d: nested too deep (or empty)",
                   n ? line_of(n) : 0);
        return NULL;
    }
    json_t *j = NULL;
    if (n->type == YAML_SCALAR_NODE) {
        const char *v = scalar(n);
        if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
            char *end;
            errno = 0;
            long long i = strtoll(v, &end, 10);
            if (*v && !*end && !errno) return json_integer(i);
            double d = strtod(v, &end);
            if (*v && !*end && isfinite(d)) return json_real(d);
            if (!strcmp(v, "true")) return json_true();
            if (!strcmp(v, "false")) return json_false();
            if (!strcmp(v, "null") || !strcmp(v, "~") || !*v) return json_null();
        }
        j = json_stringn(v, n->data.scalar.length);
    } else if (n->type == YAML_SEQUENCE_NODE) {
        j = json_array();
        for (yaml_node_item_t *it = n->data.sequence.items.start;
             j && it < n->data.sequence.items.top; it++) {
            json_t *e = yaml_to_json(w, yaml_document_get_node(w->doc, *it), depth + 1);
            if (!e) {
                json_decref(j);
                return NULL;
            }
            json_array_append_new(j, e);
        }
    } else {
        j = json_object();
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; j && p < n->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
            if (expect(w, k, YAML_SCALAR_NODE, "a key")) {
                json_decref(j);
                return NULL;
            }
            json_t *e = yaml_to_json(w, yaml_document_get_node(w->doc, p->value), depth + 1);
            if (!e) {
                json_decref(j);
                return NULL;
            }
            json_object_set_new(j, scalar(k), e);
        }
    }
    if (!j) sl_err_set(w->err, SL_ENOMEM, "config: out of memory (or a string that is not UTF-8)");
    return j;
}

/* labels: a list of names or of {name, description}. */
static int walk_labels(struct walk *w, struct sl_task_config *t, yaml_node_t *seq,
                       const char *where)
{
    int rc;
    if ((rc = expect(w, seq, YAML_SEQUENCE_NODE, "labels"))) return rc;
    size_t n = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    if (n < 1 || n > SL_CONFIG_MAX_LABELS)
        return sl_err_set(w->err, SL_EINVAL, "config line %d: %s.labels must have 1 to %d entries",
                          line_of(seq), where, SL_CONFIG_MAX_LABELS);
    if (t->labels)
        return sl_err_set(w->err, SL_EINVAL, "config line %d: %s.labels given twice", line_of(seq),
                          where);
    t->labels = calloc(n, sizeof *t->labels);
    t->descriptions = calloc(n, sizeof *t->descriptions);
    if (!t->labels || !t->descriptions)
        return sl_err_set(w->err, SL_ENOMEM, "config: out of memory");
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *e = yaml_document_get_node(w->doc, seq->data.sequence.items.start[i]);
        yaml_node_t *name = e, *desc = NULL;
        if (e && e->type == YAML_MAPPING_NODE) {
            name = NULL;
            for (yaml_node_pair_t *p = e->data.mapping.pairs.start; p < e->data.mapping.pairs.top;
                 p++) {
                yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
                yaml_node_t *v = yaml_document_get_node(w->doc, p->value);
                if ((rc = expect(w, k, YAML_SCALAR_NODE, "a key"))) return rc;
                if (!strcmp(scalar(k), "name"))
                    name = v;
                else if (!strcmp(scalar(k), "description"))
                    desc = v;
                else
                    return sl_err_set(w->err, SL_EINVAL,
                                      "config line %d: unknown key '%s' in %s.labels[] (known: "
                                      "name, description)",
                                      line_of(k), scalar(k), where);
            }
            if (!name)
                return sl_err_set(w->err, SL_EINVAL, "config line %d: %s.labels[%zu] has no name",
                                  line_of(e), where, i);
        }
        t->n_labels = i + 1;
        if (!(t->labels[i] = dup_checked(w, name, "a label name", &rc))) return rc;
        if (!t->labels[i][0])
            return sl_err_set(w->err, SL_EINVAL, "config line %d: %s.labels[%zu] is empty",
                              line_of(name), where, i);
        if (desc && !(t->descriptions[i] = dup_checked(w, desc, "a label description", &rc)))
            return rc;
        for (size_t k = 0; k < i; k++)
            if (!strcmp(t->labels[k], t->labels[i]))
                return sl_err_set(w->err, SL_EINVAL, "config line %d: %s.labels has '%s' twice",
                                  line_of(name), where, t->labels[i]);
    }
    return 0;
}

/* examples: a list of {input, label}. */
static int walk_examples(struct walk *w, struct sl_task_config *t, yaml_node_t *seq,
                         const char *where)
{
    int rc;
    if ((rc = expect(w, seq, YAML_SEQUENCE_NODE, "examples"))) return rc;
    size_t n = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    if (n > SL_CONFIG_MAX_EXAMPLES)
        return sl_err_set(w->err, SL_ERANGE, "config line %d: %s.examples: more than %d",
                          line_of(seq), where, SL_CONFIG_MAX_EXAMPLES);
    if (t->ex_inputs)
        return sl_err_set(w->err, SL_EINVAL, "config line %d: %s.examples given twice",
                          line_of(seq), where);
    t->ex_inputs = calloc(n + 1, sizeof *t->ex_inputs);
    t->ex_labels = calloc(n + 1, sizeof *t->ex_labels);
    if (!t->ex_inputs || !t->ex_labels)
        return sl_err_set(w->err, SL_ENOMEM, "config: out of memory");
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *e = yaml_document_get_node(w->doc, seq->data.sequence.items.start[i]);
        if ((rc = expect(w, e, YAML_MAPPING_NODE, "an examples entry"))) return rc;
        t->n_examples = i + 1;
        for (yaml_node_pair_t *p = e->data.mapping.pairs.start; p < e->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
            yaml_node_t *v = yaml_document_get_node(w->doc, p->value);
            if ((rc = expect(w, k, YAML_SCALAR_NODE, "a key"))) return rc;
            char **dst = !strcmp(scalar(k), "input")   ? &t->ex_inputs[i]
                         : !strcmp(scalar(k), "label") ? &t->ex_labels[i]
                                                       : NULL;
            if (!dst)
                return sl_err_set(w->err, SL_EINVAL,
                                  "config line %d: unknown key '%s' in %s.examples[] (known: "
                                  "input, label)",
                                  line_of(k), scalar(k), where);
            free(*dst);
            if (!(*dst = dup_checked(w, v, "an example's input or label", &rc))) return rc;
        }
        if (!t->ex_inputs[i] || !t->ex_labels[i])
            return sl_err_set(w->err, SL_EINVAL,
                              "config line %d: %s.examples[%zu] needs both input and label",
                              line_of(e), where, i);
    }
    return 0;
}

/* schema: a YAML mapping, or a string of JSON; compiled now. */
static int walk_schema(struct walk *w, struct sl_task_config *t, yaml_node_t *v, const char *where)
{
    json_t *j;
    if (v && v->type == YAML_SCALAR_NODE) {
        json_error_t je;
        if (!(j = json_loads(scalar(v), 0, &je)))
            return sl_err_set(w->err, SL_EFORMAT, "config line %d: %s.schema is not JSON: %s",
                              line_of(v), where, je.text);
    } else if (!(j = yaml_to_json(w, v, 0))) {
        return w->err->code ? w->err->code : SL_EINVAL;
    }
    struct sl_err e = {0};
    struct sl_schema_opts o = sl_schema_default_opts();
    free(t->schema);
    free(t->grammar);
    t->grammar = NULL;
    t->schema = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    int rc = t->schema ? sl_schema_to_grammar(j, &o, &t->grammar, &e)
                       : sl_err_set(&e, SL_ENOMEM, "out of memory");
    json_decref(j);
    if (rc)
        return sl_err_set(w->err, rc, "config line %d: %s.schema: %s", line_of(v), where, e.msg);
    return 0;
}

static int walk_tasks(struct walk *w, yaml_node_t *map)
{
    int rc;
    if ((rc = expect(w, map, YAML_MAPPING_NODE, "tasks"))) return rc;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(w->doc, p->value);
        if ((rc = expect(w, k, YAML_SCALAR_NODE, "a task name"))) return rc;
        if (!scalar(k)[0])
            return sl_err_set(w->err, SL_EINVAL, "config line %d: empty task name", line_of(k));
        if (w->c->n_tasks >= SL_CONFIG_MAX_TASKS)
            return sl_err_set(w->err, SL_ERANGE, "config: more than %d tasks", SL_CONFIG_MAX_TASKS);
        struct sl_task_config *nt = realloc(w->c->tasks, (w->c->n_tasks + 1) * sizeof *nt);
        if (!nt) return sl_err_set(w->err, SL_ENOMEM, "config: out of memory");
        w->c->tasks = nt;
        struct sl_task_config *t = &nt[w->c->n_tasks++];
        memset(t, 0, sizeof *t);
        t->kind = -1;
        if ((rc = set_defaults(SEC_TASK, t, w->err))) return rc;
        if (!(t->name = strdup(scalar(k))))
            return sl_err_set(w->err, SL_ENOMEM, "config: out of memory");
        char where[200];
        snprintf(where, sizeof where, "tasks.%.150s", scalar(k));
        if ((rc = expect(w, v, YAML_MAPPING_NODE, where))) return rc;
        for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top;
             q++) {
            yaml_node_t *kk = yaml_document_get_node(w->doc, q->key);
            yaml_node_t *vv = yaml_document_get_node(w->doc, q->value);
            if ((rc = expect(w, kk, YAML_SCALAR_NODE, "a key"))) return rc;
            const char *key = scalar(kk);
            if (!strcmp(key, "labels"))
                rc = walk_labels(w, t, vv, where);
            else if (!strcmp(key, "examples"))
                rc = walk_examples(w, t, vv, where);
            else if (!strcmp(key, "schema"))
                rc = walk_schema(w, t, vv, where);
            else
                rc = set_row(w, SEC_TASK, t, kk, vv, where, "labels, examples, schema");
            if (rc) return rc;
        }
        /* what each kind needs, and nothing it would ignore */
        int line = line_of(v);
        if (t->kind < 0)
            return sl_err_set(w->err, SL_EINVAL,
                              "config line %d: %s has no kind (classify, extract or generate)",
                              line, where);
        if (!t->model)
            return sl_err_set(w->err, SL_EINVAL, "config line %d: %s has no model", line, where);
        if (t->kind == SL_TASK_CLASSIFY && !t->n_labels)
            return sl_err_set(w->err, SL_EINVAL, "config line %d: %s (classify) has no labels",
                              line, where);
        if (t->kind == SL_TASK_EXTRACT && !t->schema)
            return sl_err_set(w->err, SL_EINVAL, "config line %d: %s (extract) has no schema", line,
                              where);
        if (t->kind == SL_TASK_GENERATE && !t->prompt)
            return sl_err_set(w->err, SL_EINVAL, "config line %d: %s (generate) has no prompt",
                              line, where);
        if (t->kind != SL_TASK_CLASSIFY && (t->n_labels || t->n_examples))
            return sl_err_set(w->err, SL_EINVAL,
                              "config line %d: %s: labels and examples are for classify tasks",
                              line, where);
        if (t->kind != SL_TASK_EXTRACT && t->schema)
            return sl_err_set(w->err, SL_EINVAL, "config line %d: %s: schema is for extract tasks",
                              line, where);
        if (t->kind != SL_TASK_CLASSIFY && t->head)
            return sl_err_set(w->err, SL_EINVAL, "config line %d: %s: head is for classify tasks",
                              line, where);
        for (size_t i = 0; i < t->n_examples; i++) {
            size_t l = 0;
            while (l < t->n_labels && strcmp(t->labels[l], t->ex_labels[i]))
                l++;
            if (l == t->n_labels)
                return sl_err_set(w->err, SL_EINVAL,
                                  "config line %d: %s.examples[%zu] has label '%s', not one of "
                                  "the task's labels",
                                  line, where, i, t->ex_labels[i]);
        }
    }
    return 0;
}

/* --- backends ------------------------------------------------------------- */

static int walk_backends(struct walk *w, yaml_node_t *map)
{
    int rc;
    if ((rc = expect(w, map, YAML_MAPPING_NODE, "backends"))) return rc;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(w->doc, p->value);
        struct sl_backend_config *b;
        if ((rc = expect(w, k, YAML_SCALAR_NODE, "a backend name"))) return rc;
        if (!scalar(k)[0])
            return sl_err_set(w->err, SL_EINVAL, "config line %d: empty backend name", line_of(k));
        size_t ib = w->c->n_backends;
        if ((rc = sl_config_add_backend(w->c, scalar(k), -1, &b, w->err))) return rc;
        b->remote = -1; /* from the kind, below */
        w->lines->backend_at[ib] = line_of(k);
        char where[200], sub[220];
        snprintf(where, sizeof where, "backends.%.150s", scalar(k));
        if ((rc = expect(w, v, YAML_MAPPING_NODE, where))) return rc;
        for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top;
             q++) {
            yaml_node_t *kk = yaml_document_get_node(w->doc, q->key);
            yaml_node_t *vv = yaml_document_get_node(w->doc, q->value);
            if ((rc = expect(w, kk, YAML_SCALAR_NODE, "a key"))) return rc;
            if (!strcmp(scalar(kk), "breaker")) {
                snprintf(sub, sizeof sub, "%s.breaker", where);
                rc = walk_section(w, vv, SEC_BREAKER, b, sub);
            } else {
                rc = set_row(w, SEC_BACKEND, b, kk, vv, where, "breaker");
                if (!strcmp(scalar(kk), "model")) w->lines->backend_model[ib] = line_of(vv);
            }
            if (rc) return rc;
        }
        if (b->remote < 0) b->remote = b->kind == SL_BACKEND_KIND_OPENAI;
    }
    return 0;
}

/* --- routes --------------------------------------------------------------- */

/* A PCRE2 expression, compiled as the router compiles it, to report its
 * error at load. */
static int check_regex(struct walk *w, yaml_node_t *v, const char *what)
{
    int ec = 0;
    PCRE2_SIZE off = 0;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)scalar(v), v->data.scalar.length,
                                   PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &ec, &off, NULL);
    if (re) {
        pcre2_code_free(re);
        return 0;
    }
    PCRE2_UCHAR msg[160];
    if (pcre2_get_error_message(ec, msg, sizeof msg) < 0) snprintf((char *)msg, sizeof msg, "?");
    return sl_err_set(w->err, SL_EINVAL,
                      "config line %d: %s: bad regular expression '%.80s': %s "
                      "at offset %zu",
                      line_of(v), what, scalar(v), (const char *)msg, (size_t)off);
}

/* A list of names into dst[0..max): tiers, fallback. */
static int walk_names(struct walk *w, yaml_node_t *seq, char **dst, size_t *n, size_t max,
                      const char *what)
{
    int rc;
    if ((rc = expect(w, seq, YAML_SEQUENCE_NODE, what))) return rc;
    if (*n)
        return sl_err_set(w->err, SL_EINVAL, "config line %d: %s given twice", line_of(seq), what);
    size_t count = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    if (count > max)
        return sl_err_set(w->err, SL_ERANGE, "config line %d: %s: %zu names, at most %zu",
                          line_of(seq), what, count, max);
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *e = yaml_document_get_node(w->doc, seq->data.sequence.items.start[i]);
        if (!(dst[i] = dup_checked(w, e, "a backend name", &rc))) return rc;
        *n = i + 1;
        if (!dst[i][0])
            return sl_err_set(w->err, SL_EINVAL, "config line %d: %s[%zu] is empty", line_of(e),
                              what, i);
    }
    return 0;
}

/* thresholds: task -> number in [0, 1]. */
static int walk_thresholds(struct walk *w, struct sl_route_config *r, yaml_node_t *map,
                           const char *what, struct route_lines *L)
{
    static const struct opt thr = {SEC_ROUTE, "threshold", OPT_REAL, 0, NULL, 0, 1, NULL, NULL};
    int rc;
    if ((rc = expect(w, map, YAML_MAPPING_NODE, what))) return rc;
    if (r->n_thresholds)
        return sl_err_set(w->err, SL_EINVAL, "config line %d: %s given twice", line_of(map), what);
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(w->doc, p->value);
        size_t n = r->n_thresholds;
        if (n >= SL_CONFIG_MAX_THRESHOLDS)
            return sl_err_set(w->err, SL_ERANGE, "config line %d: %s: more than %d tasks",
                              line_of(map), what, SL_CONFIG_MAX_THRESHOLDS);
        if (!(r->threshold_tasks[n] = dup_checked(w, k, "a task name", &rc))) return rc;
        r->n_thresholds = n + 1;
        L->thresholds[n] = line_of(k);
        char vwhat[300], at[340];
        snprintf(vwhat, sizeof vwhat, "%.200s.%.64s", what, r->threshold_tasks[n]);
        if ((rc = expect(w, v, YAML_SCALAR_NODE, vwhat))) return rc;
        snprintf(at, sizeof at, "config line %d: %s", line_of(v), vwhat);
        if ((rc = set_opt(&thr, &r->threshold_values[n], scalar(v), at, w->err))) return rc;
    }
    return 0;
}

/* match: table rows and metadata: {key: value}. */
static int walk_match(struct walk *w, struct sl_rule_config *u, yaml_node_t *map, const char *where,
                      int *task_line)
{
    int rc;
    if ((rc = expect(w, map, YAML_MAPPING_NODE, where))) return rc;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(w->doc, p->value);
        if ((rc = expect(w, k, YAML_SCALAR_NODE, "a key"))) return rc;
        if (strcmp(scalar(k), "metadata")) {
            if ((rc = set_row(w, SEC_MATCH, u, k, v, where, "metadata"))) return rc;
            if (!strcmp(scalar(k), "task")) *task_line = line_of(v);
            char what[360];
            snprintf(what, sizeof what, "%.320s.regex", where);
            if (!strcmp(scalar(k), "regex") && (rc = check_regex(w, v, what))) return rc;
            continue;
        }
        char what[360];
        snprintf(what, sizeof what, "%.320s.metadata", where);
        if ((rc = expect(w, v, YAML_MAPPING_NODE, what))) return rc;
        if (u->n_meta)
            return sl_err_set(w->err, SL_EINVAL, "config line %d: %s given twice", line_of(v),
                              what);
        for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top;
             q++) {
            yaml_node_t *mk = yaml_document_get_node(w->doc, q->key);
            yaml_node_t *mv = yaml_document_get_node(w->doc, q->value);
            size_t n = u->n_meta;
            if (n >= SL_CONFIG_MAX_META)
                return sl_err_set(w->err, SL_ERANGE, "config line %d: %s: more than %d keys",
                                  line_of(v), what, SL_CONFIG_MAX_META);
            if (!(u->meta_keys[n] = dup_checked(w, mk, "a metadata key", &rc))) return rc;
            u->n_meta = n + 1;
            if (!(u->meta_values[n] = dup_checked(w, mv, "a metadata value", &rc))) return rc;
        }
    }
    if (u->min_chars >= 0 && u->max_chars >= 0 && u->min_chars > u->max_chars)
        return sl_err_set(w->err, SL_EINVAL,
                          "config line %d: %s: min_chars (%lld) is more than "
                          "max_chars (%lld)",
                          line_of(map), where, (long long)u->min_chars, (long long)u->max_chars);
    return 0;
}

/* rules: a list of {match: {...}, to: tier}. */
static int walk_rules(struct walk *w, struct sl_route_config *r, yaml_node_t *seq,
                      const char *route_where, struct route_lines *L)
{
    int rc;
    char what[260];
    snprintf(what, sizeof what, "%s.rules", route_where);
    if ((rc = expect(w, seq, YAML_SEQUENCE_NODE, what))) return rc;
    if (r->rules)
        return sl_err_set(w->err, SL_EINVAL, "config line %d: %s given twice", line_of(seq), what);
    size_t n = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    if (n > SL_CONFIG_MAX_RULES)
        return sl_err_set(w->err, SL_ERANGE, "config line %d: %s: more than %d", line_of(seq), what,
                          SL_CONFIG_MAX_RULES);
    if (!(r->rules = calloc(n ? n : 1, sizeof *r->rules)))
        return sl_err_set(w->err, SL_ENOMEM, "config: out of memory");
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *e = yaml_document_get_node(w->doc, seq->data.sequence.items.start[i]);
        struct sl_rule_config *u = &r->rules[i];
        r->n_rules = i + 1;
        if ((rc = set_defaults(SEC_RULE, u, w->err)) || (rc = set_defaults(SEC_MATCH, u, w->err)))
            return rc;
        u->min_chars = u->max_chars = -1;
        char where[300], sub[320];
        snprintf(where, sizeof where, "%s[%zu]", what, i);
        if ((rc = expect(w, e, YAML_MAPPING_NODE, where))) return rc;
        for (yaml_node_pair_t *p = e->data.mapping.pairs.start; p < e->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
            yaml_node_t *v = yaml_document_get_node(w->doc, p->value);
            if ((rc = expect(w, k, YAML_SCALAR_NODE, "a key"))) return rc;
            if (!strcmp(scalar(k), "match")) {
                snprintf(sub, sizeof sub, "%s.match", where);
                rc = walk_match(w, u, v, sub, &L->rule_task[i]);
            } else {
                rc = set_row(w, SEC_RULE, u, k, v, where, "match");
                if (!strcmp(scalar(k), "to")) L->rule_to[i] = line_of(v);
            }
            if (rc) return rc;
        }
        if (!u->to)
            return sl_err_set(w->err, SL_EINVAL,
                              "config line %d: %s has no to: (the tier a match goes to)",
                              line_of(e), where);
    }
    return 0;
}

static int walk_routes(struct walk *w, yaml_node_t *map)
{
    int rc;
    if ((rc = expect(w, map, YAML_MAPPING_NODE, "routes"))) return rc;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(w->doc, p->value);
        struct sl_route_config *r;
        if ((rc = expect(w, k, YAML_SCALAR_NODE, "a route name"))) return rc;
        if (!scalar(k)[0])
            return sl_err_set(w->err, SL_EINVAL, "config line %d: empty route name", line_of(k));
        size_t ir = w->c->n_routes;
        if ((rc = sl_config_add_route(w->c, scalar(k), &r, w->err))) return rc;
        struct route_lines *L = &w->lines->route[ir];
        L->at = line_of(k);
        char where[200], sub[220];
        snprintf(where, sizeof where, "routes.%.150s", scalar(k));
        if ((rc = expect(w, v, YAML_MAPPING_NODE, where))) return rc;
        for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top;
             q++) {
            yaml_node_t *kk = yaml_document_get_node(w->doc, q->key);
            yaml_node_t *vv = yaml_document_get_node(w->doc, q->value);
            if ((rc = expect(w, kk, YAML_SCALAR_NODE, "a key"))) return rc;
            const char *key = scalar(kk);
            snprintf(sub, sizeof sub, "%s.%s", where, key);
            if (!strcmp(key, "tiers")) {
                rc = walk_names(w, vv, r->tiers, &r->n_tiers, SL_CONFIG_MAX_TIERS, sub);
                L->tiers = line_of(vv);
            } else if (!strcmp(key, "fallback")) {
                rc = walk_names(w, vv, r->fallback, &r->n_fallback, SL_CONFIG_MAX_TIERS, sub);
                L->fallback = line_of(vv);
            } else if (!strcmp(key, "thresholds")) {
                rc = walk_thresholds(w, r, vv, sub, L);
            } else if (!strcmp(key, "rules")) {
                rc = walk_rules(w, r, vv, where, L);
            } else if (!strcmp(key, "predict")) {
                rc = walk_section(w, vv, SEC_PREDICT, r, sub);
                L->predict = line_of(vv);
            } else if (!strcmp(key, "calibration")) {
                rc = 0; /* evidence from `sluice calibrate`: kept in the file, not read */
            } else {
                rc = set_row(w, SEC_ROUTE, r, kk, vv, where,
                             "tiers, thresholds, fallback, rules, predict, calibration");
                if (!strcmp(key, "default")) L->deflt = line_of(vv);
                if (!strcmp(key, "task")) L->task = line_of(vv);
            }
            if (rc) return rc;
        }
        /* a rules route without default: falls back to its first tier */
        if (r->policy == SL_ROUTE_RULES && !r->default_tier && r->n_tiers &&
            !(r->default_tier = strdup(r->tiers[0])))
            return sl_err_set(w->err, SL_ENOMEM, "config: out of memory");
    }
    return 0;
}

/* --- privacy, costs ------------------------------------------------------- */

static bool pattern_label_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n >= SL_PII_LABEL_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

static int walk_patterns(struct walk *w, struct sl_privacy_config *pc, yaml_node_t *seq)
{
    int rc;
    if ((rc = expect(w, seq, YAML_SEQUENCE_NODE, "privacy.patterns"))) return rc;
    if (pc->pattern_labels)
        return sl_err_set(w->err, SL_EINVAL, "config line %d: privacy.patterns given twice",
                          line_of(seq));
    size_t n = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    if (n > SL_PII_MAX_PATTERNS)
        return sl_err_set(w->err, SL_ERANGE, "config line %d: privacy.patterns: more than %d",
                          line_of(seq), SL_PII_MAX_PATTERNS);
    pc->pattern_labels = calloc(n + 1, sizeof *pc->pattern_labels);
    pc->pattern_regexes = calloc(n + 1, sizeof *pc->pattern_regexes);
    if (!pc->pattern_labels || !pc->pattern_regexes)
        return sl_err_set(w->err, SL_ENOMEM, "config: out of memory");
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *e = yaml_document_get_node(w->doc, seq->data.sequence.items.start[i]);
        char where[64];
        snprintf(where, sizeof where, "privacy.patterns[%zu]", i);
        if ((rc = expect(w, e, YAML_MAPPING_NODE, where))) return rc;
        pc->n_patterns = i + 1;
        yaml_node_t *label = NULL, *regex = NULL;
        for (yaml_node_pair_t *p = e->data.mapping.pairs.start; p < e->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
            yaml_node_t *v = yaml_document_get_node(w->doc, p->value);
            if ((rc = expect(w, k, YAML_SCALAR_NODE, "a key"))) return rc;
            if (!strcmp(scalar(k), "label"))
                label = v;
            else if (!strcmp(scalar(k), "regex"))
                regex = v;
            else
                return sl_err_set(w->err, SL_EINVAL,
                                  "config line %d: unknown key '%s' in %s (known: label, regex)",
                                  line_of(k), scalar(k), where);
        }
        if (!label || !regex)
            return sl_err_set(w->err, SL_EINVAL, "config line %d: %s needs a label and a regex",
                              line_of(e), where);
        if (!(pc->pattern_labels[i] = dup_checked(w, label, "a pattern label", &rc))) return rc;
        if (!pattern_label_ok(pc->pattern_labels[i]))
            return sl_err_set(w->err, SL_EINVAL,
                              "config line %d: %s.label '%.64s' must be 1 to %d of A-Z, 0-9 "
                              "and _ (it names the placeholders, as in [EMPLOYEE_ID_1])",
                              line_of(label), where, pc->pattern_labels[i], SL_PII_LABEL_MAX - 1);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(pc->pattern_labels[j], pc->pattern_labels[i]))
                return sl_err_set(w->err, SL_EINVAL,
                                  "config line %d: privacy.patterns has label '%s' twice",
                                  line_of(label), pc->pattern_labels[i]);
        if (!(pc->pattern_regexes[i] = dup_checked(w, regex, "a pattern regex", &rc))) return rc;
        char what[96];
        snprintf(what, sizeof what, "%s.regex", where);
        if ((rc = check_regex(w, regex, what))) return rc;
    }
    return 0;
}

static int walk_privacy(struct walk *w, yaml_node_t *map)
{
    int rc;
    struct sl_privacy_config *pc = &w->c->privacy;
    if ((rc = expect(w, map, YAML_MAPPING_NODE, "privacy"))) return rc;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(w->doc, p->value);
        if ((rc = expect(w, k, YAML_SCALAR_NODE, "a key"))) return rc;
        if (!strcmp(scalar(k), "patterns")) {
            if ((rc = walk_patterns(w, pc, v))) return rc;
            continue;
        }
        if (strcmp(scalar(k), "kinds"))
            return sl_err_set(w->err, SL_EINVAL,
                              "config line %d: unknown key '%s' in privacy (known: kinds, "
                              "patterns)",
                              line_of(k), scalar(k));
        if ((rc = expect(w, v, YAML_SEQUENCE_NODE, "privacy.kinds"))) return rc;
        if (pc->kinds)
            return sl_err_set(w->err, SL_EINVAL, "config line %d: privacy.kinds given twice",
                              line_of(v));
        size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
        /* non-NULL even when empty: `kinds: []` means none */
        if (!(pc->kinds = calloc(n + 1, sizeof *pc->kinds)))
            return sl_err_set(w->err, SL_ENOMEM, "config: out of memory");
        for (size_t i = 0; i < n; i++) {
            yaml_node_t *e = yaml_document_get_node(w->doc, v->data.sequence.items.start[i]);
            if ((rc = expect(w, e, YAML_SCALAR_NODE, "a PII kind"))) return rc;
            int kind = sl_config_pii_kind(scalar(e));
            if (kind < 0)
                return sl_err_set(w->err, SL_EINVAL,
                                  "config line %d: privacy.kinds: unknown kind '%.64s' (known: "
                                  "email, phone, card, iban, ssn_us, nino_uk, taxid_de, "
                                  "insee_fr)",
                                  line_of(e), scalar(e));
            for (size_t j = 0; j < i; j++)
                if (sl_config_pii_kind(pc->kinds[j]) == kind)
                    return sl_err_set(w->err, SL_EINVAL,
                                      "config line %d: privacy.kinds lists %s twice", line_of(e),
                                      pii_kinds[kind]);
            if (!(pc->kinds[i] = strdup(scalar(e))))
                return sl_err_set(w->err, SL_ENOMEM, "config: out of memory");
            pc->n_kinds = i + 1;
        }
    }
    return 0;
}

/* costs: checked by the store's own loader against the whole text (so its
 * errors carry the file's lines), kept as JSON text, which is YAML. */
static int walk_costs(struct walk *w, yaml_node_t *v)
{
    struct sl_cost_config cc;
    struct sl_err e = {0};
    int rc;
    if ((rc = expect(w, v, YAML_MAPPING_NODE, "costs"))) return rc;
    sl_cost_config_default(&cc);
    if ((rc = sl_cost_config_parse(&cc, w->text, w->len, &e)))
        return sl_err_set(w->err, rc, "config: %s", e.msg);
    json_t *j = yaml_to_json(w, v, 0);
    if (!j) return w->err->code ? w->err->code : SL_EINVAL;
    free(w->c->costs_yaml);
    w->c->costs_yaml = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!w->c->costs_yaml) return sl_err_set(w->err, SL_ENOMEM, "config: out of memory");
    return 0;
}

/* --- checks across sections ----------------------------------------------- */

/* "config line N: ..." when the line is known, else "config: ...". */
static int xerr(struct sl_err *err, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int xerr(struct sl_err *err, int line, const char *fmt, ...)
{
    char msg[SL_ERR_MSG_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line > 0) return sl_err_set(err, SL_EINVAL, "config line %d: %s", line, msg);
    return sl_err_set(err, SL_EINVAL, "config: %s", msg);
}

/* "a, b, c": the name (first member) of n structs stride bytes apart. */
static const char *names_of(const void *base, size_t stride, size_t n, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; i < n && used + 1 < cap; i++) {
        const char *name = *(char *const *)((const char *)base + i * stride);
        int k = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", name);
        if (k < 0) break;
        used += (size_t)k;
    }
    if (!n) snprintf(buf, cap, "none");
    return buf;
}

static const char *join(char *const *v, size_t n, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; i < n && used + 1 < cap; i++) {
        int k = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", v[i]);
        if (k < 0) break;
        used += (size_t)k;
    }
    return buf;
}

static bool in_list(char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i], s)) return true;
    return false;
}

#define LINE(L, f) ((L) ? (L)->f : 0)
#define OR(a, b) ((a) ? (a) : (b))

static int check_backends(const struct sl_config *c, const struct lines *L, struct sl_err *err)
{
    char known[256];
    for (size_t i = 0; i < c->n_backends; i++) {
        const struct sl_backend_config *b = &c->backends[i];
        int at = LINE(L, backend_at[i]), at_model = OR(LINE(L, backend_model[i]), at);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(c->backends[j].name, b->name))
                return xerr(err, at, "backend '%s' defined twice", b->name);
        if (b->kind == SL_BACKEND_KIND_LOCAL) {
            if (!b->model)
                return xerr(err, at, "backends.%s (local) has no model: name a models: entry",
                            b->name);
            size_t m = 0;
            while (m < c->n_models && strcmp(c->models[m].name, b->model))
                m++;
            if (m == c->n_models)
                return xerr(
                    err, at_model,
                    "backends.%s: model '%s' is not a models: entry "
                    "(known: %s)",
                    b->name, b->model,
                    names_of(c->models, sizeof *c->models, c->n_models, known, sizeof known));
            if (b->base_url || b->api_key_env)
                return xerr(err, at,
                            "backends.%s: base_url and api_key_env are for openai "
                            "backends (this one is local)",
                            b->name);
        } else if (b->kind == SL_BACKEND_KIND_OPENAI) {
            if (!b->base_url)
                return xerr(err, at,
                            "backends.%s (openai) has no base_url "
                            "(http://host:port/v1)",
                            b->name);
            if (strncmp(b->base_url, "http://", 7) && strncmp(b->base_url, "https://", 8))
                return xerr(err, at,
                            "backends.%s.base_url '%s' must start with http:// or "
                            "https://",
                            b->name, b->base_url);
            if (!b->model)
                return xerr(err, at,
                            "backends.%s (openai) has no model (the upstream's model "
                            "name)",
                            b->name);
        } else {
            return xerr(err, at, "backends.%s has no kind (local or openai)", b->name);
        }
        if (b->breaker_min_calls > b->breaker_window)
            return xerr(err, at,
                        "backends.%s.breaker: min_calls (%lld) is more than window "
                        "(%lld)",
                        b->name, (long long)b->breaker_min_calls, (long long)b->breaker_window);
    }
    return 0;
}

/* A list of backend names (tiers, fallback): each known, none twice. */
static int check_names(const struct sl_config *c, const char *route, const char *what,
                       char *const *v, size_t n, int line, struct sl_err *err)
{
    char known[256];
    for (size_t i = 0; i < n; i++) {
        if (!sl_config_backend(c, v[i]))
            return xerr(
                err, line, "routes.%s.%s: '%s' is not a backend (known: %s)", route, what, v[i],
                names_of(c->backends, sizeof *c->backends, c->n_backends, known, sizeof known));
        if (in_list(v, i, v[i]))
            return xerr(err, line, "routes.%s.%s names '%s' twice", route, what, v[i]);
    }
    return 0;
}

static int check_task(const struct sl_config *c, const char *route, const char *what,
                      const char *task, int line, struct sl_err *err)
{
    char known[256];
    if (!task || sl_config_task(c, task)) return 0;
    return xerr(err, line, "routes.%s.%s: '%s' is not a tasks: entry (known: %s)", route, what,
                task, names_of(c->tasks, sizeof *c->tasks, c->n_tasks, known, sizeof known));
}

static int check_route(const struct sl_config *c, size_t i, const struct route_lines *L,
                       struct sl_err *err)
{
    static const char *const policies[] = {"cascade", "rules", "predict"};
    const struct sl_route_config *r = &c->routes[i];
    const char *name = r->name;
    int at = LINE(L, at), rc;
    char tiers[256];
    for (size_t j = 0; j < i; j++)
        if (!strcmp(c->routes[j].name, name))
            return xerr(err, at, "route '%s' defined twice", name);
    for (size_t m = 0; m < c->n_models; m++)
        if (!strcmp(c->models[m].name, name))
            return xerr(err, at,
                        "route '%s' has the name of a models: entry (a request's model "
                        "names one or the other)",
                        name);
    if (r->policy < SL_ROUTE_CASCADE || r->policy > SL_ROUTE_PREDICT)
        return xerr(err, at, "routes.%s: policy %d is not cascade, rules or predict", name,
                    r->policy);
    if (r->n_tiers < 1 || r->n_tiers > SL_CONFIG_MAX_TIERS)
        return xerr(err, OR(LINE(L, tiers), at),
                    "routes.%s has %zu tiers; give 1 to %d backend "
                    "names, the small one first",
                    name, r->n_tiers, SL_CONFIG_MAX_TIERS);
    if ((rc = check_names(c, name, "tiers", r->tiers, r->n_tiers, OR(LINE(L, tiers), at), err)))
        return rc;
    if (r->n_fallback > SL_CONFIG_MAX_TIERS)
        return xerr(err, at, "routes.%s.fallback: more than %d", name, SL_CONFIG_MAX_TIERS);
    if ((rc = check_names(c, name, "fallback", r->fallback, r->n_fallback,
                          OR(LINE(L, fallback), at), err)))
        return rc;
    if (!(r->threshold >= 0 && r->threshold <= 1))
        return xerr(err, at, "routes.%s.threshold %g is not in [0, 1]", name, r->threshold);
    for (size_t t = 0; t < r->n_thresholds && t < SL_CONFIG_MAX_THRESHOLDS; t++) {
        int line = OR(LINE(L, thresholds[t]), at);
        if ((rc = check_task(c, name, "thresholds", r->threshold_tasks[t], line, err))) return rc;
        if (!(r->threshold_values[t] >= 0 && r->threshold_values[t] <= 1))
            return xerr(err, line, "routes.%s.thresholds.%s %g is not in [0, 1]", name,
                        r->threshold_tasks[t], r->threshold_values[t]);
        if (in_list(r->threshold_tasks, t, r->threshold_tasks[t]))
            return xerr(err, line, "routes.%s.thresholds names task '%s' twice", name,
                        r->threshold_tasks[t]);
    }
    if ((rc = check_task(c, name, "task", r->task, OR(LINE(L, task), at), err))) return rc;
    join(r->tiers, r->n_tiers, tiers, sizeof tiers);
    if (r->policy == SL_ROUTE_RULES) {
        if (!r->n_rules) return xerr(err, at, "routes.%s (rules) has no rules", name);
        for (size_t u = 0; u < r->n_rules; u++) {
            const struct sl_rule_config *ru = &r->rules[u];
            int line = u < SL_CONFIG_MAX_RULES ? OR(LINE(L, rule_to[u]), at) : at;
            if (!ru->to) return xerr(err, at, "routes.%s.rules[%zu] has no to:", name, u);
            if (!in_list(r->tiers, r->n_tiers, ru->to))
                return xerr(err, line,
                            "routes.%s.rules[%zu].to: '%s' is not one of the route's "
                            "tiers (%s)",
                            name, u, ru->to, tiers);
            if (ru->task && !sl_config_task(c, ru->task)) {
                char what[64];
                snprintf(what, sizeof what, "rules[%zu].match.task", u);
                line = u < SL_CONFIG_MAX_RULES ? OR(LINE(L, rule_task[u]), at) : at;
                if ((rc = check_task(c, name, what, ru->task, line, err))) return rc;
            }
        }
        if (r->default_tier && !in_list(r->tiers, r->n_tiers, r->default_tier))
            return xerr(err, OR(LINE(L, deflt), at),
                        "routes.%s.default: '%s' is not one of the "
                        "route's tiers (%s)",
                        name, r->default_tier, tiers);
    } else if (r->n_rules || r->default_tier) {
        return xerr(err, at,
                    "routes.%s: rules and default are for policy: rules (this route is "
                    "%s)",
                    name, policies[r->policy]);
    }
    if (r->policy == SL_ROUTE_PREDICT && !r->predict_model)
        return xerr(err, OR(LINE(L, predict), at),
                    "routes.%s (predict) has no predict.model (a "
                    "router file from `sluice train-router`)",
                    name);
    if (r->policy != SL_ROUTE_PREDICT && r->predict_model)
        return xerr(err, OR(LINE(L, predict), at),
                    "routes.%s: predict is for policy: predict "
                    "(this route is %s)",
                    name, policies[r->policy]);
    if (!(r->predict_threshold >= 0 && r->predict_threshold <= 1))
        return xerr(err, at, "routes.%s.predict.threshold %g is not in [0, 1]", name,
                    r->predict_threshold);
    if (r->pii < SL_PII_POLICY_ALLOW || r->pii > SL_PII_POLICY_LOCAL_ONLY)
        return xerr(err, at, "routes.%s: pii %d is not allow, redact or local-only", name, r->pii);
    return 0;
}

/* Everything of backends:, routes: and privacy: that joins sections. L
 * gives lines (a parse), or is NULL (a config built in code). */
static int check_router(const struct sl_config *c, const struct lines *L, struct sl_err *err)
{
    int rc;
    if ((rc = check_backends(c, L, err))) return rc;
    for (size_t i = 0; i < c->n_routes; i++)
        if ((rc = check_route(c, i, L && i < SL_CONFIG_MAX_ROUTES ? &L->route[i] : NULL, err)))
            return rc;
    if (c->privacy.n_patterns > SL_PII_MAX_PATTERNS)
        return xerr(err, 0, "privacy.patterns: more than %d", SL_PII_MAX_PATTERNS);
    for (size_t i = 0; i < c->privacy.n_patterns; i++)
        if (!pattern_label_ok(c->privacy.pattern_labels[i]))
            return xerr(err, 0,
                        "privacy.patterns[%zu].label '%s' must be 1 to %d of A-Z, 0-9 and _", i,
                        c->privacy.pattern_labels[i], SL_PII_LABEL_MAX - 1);
    return 0;
}

#undef LINE
#undef OR

int sl_config_parse(struct sl_config *c, const char *text, size_t len, struct sl_err *err)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    int rc = 0;
    if (len > SL_CONFIG_MAX_FILE)
        return sl_err_set(err, SL_ERANGE, "config: %zu bytes, more than %u", len,
                          SL_CONFIG_MAX_FILE);
    if (!yaml_parser_initialize(&parser))
        return sl_err_set(err, SL_ENOMEM, "config: out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = sl_err_set(err, SL_EFORMAT, "config line %d: not valid YAML: %s",
                        (int)parser.problem_mark.line + 1, parser.problem ? parser.problem : "?");
        yaml_parser_delete(&parser);
        return rc;
    }
    struct walk w = {&doc, c, err, text, len, calloc(1, sizeof(struct lines))};
    if (!w.lines) {
        rc = sl_err_set(err, SL_ENOMEM, "config: out of memory");
        goto out; /* allocation failure */
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) goto out; /* empty document: all defaults */
    if ((rc = expect(&w, root, YAML_MAPPING_NODE, "the top level"))) goto out;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(&doc, p->key);
        yaml_node_t *v = yaml_document_get_node(&doc, p->value);
        if ((rc = expect(&w, k, YAML_SCALAR_NODE, "a section name"))) goto out;
        const char *s = scalar(k);
        if (!strcmp(s, "server"))
            rc = walk_section(&w, v, SEC_SERVER, &c->server, "server");
        else if (!strcmp(s, "limits"))
            rc = walk_section(&w, v, SEC_LIMITS, &c->limits, "limits");
        else if (!strcmp(s, "models"))
            rc = walk_models(&w, v);
        else if (!strcmp(s, "api_keys"))
            rc = walk_keys(&w, v);
        else if (!strcmp(s, "tasks"))
            rc = walk_tasks(&w, v);
        else if (!strcmp(s, "backends"))
            rc = walk_backends(&w, v);
        else if (!strcmp(s, "routes"))
            rc = walk_routes(&w, v);
        else if (!strcmp(s, "privacy"))
            rc = walk_privacy(&w, v);
        else if (!strcmp(s, "log"))
            rc = walk_section(&w, v, SEC_LOG, &c->log, "log");
        else if (!strcmp(s, "costs"))
            rc = walk_costs(&w, v);
        else
            rc = sl_err_set(
                err, SL_EINVAL,
                "config line %d: unknown section '%s' (known: server, limits, models, api_keys, "
                "tasks, backends, routes, privacy, log, costs)",
                line_of(k), s);
        if (rc) goto out;
    }
    /* now that every section is read: what refers to what */
    rc = check_router(c, w.lines, err);
out:
    free(w.lines);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

int sl_config_load(struct sl_config *c, const char *path, struct sl_err *err)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    int rc;
    if (!f) return sl_err_set(err, SL_EIO, "cannot open config '%s'", path);
    if (!(buf = malloc(SL_CONFIG_MAX_FILE + 1))) {
        fclose(f);
        return sl_err_set(err, SL_ENOMEM, "config: out of memory");
    }
    size_t n = fread(buf, 1, SL_CONFIG_MAX_FILE + 1, f);
    bool bad = ferror(f);
    fclose(f);
    if (bad)
        rc = sl_err_set(err, SL_EIO, "cannot read config '%s'", path);
    else
        rc = sl_config_parse(c, buf, n, err);
    free(buf);
    return rc;
}

int sl_config_validate(const struct sl_config *c, struct sl_err *err)
{
    if (c->n_models == 0)
        return sl_err_set(err, SL_EINVAL, "config: no models (add a models: section)");
    for (size_t i = 0; i < c->n_models; i++) {
        if (!c->models[i].path)
            return sl_err_set(err, SL_EINVAL, "config: models.%s has no path", c->models[i].name);
        if (c->models[i].batch < c->models[i].slots)
            return sl_err_set(
                err, SL_EINVAL, "config: models.%s.batch (%lld) must be at least its slots (%lld)",
                c->models[i].name, (long long)c->models[i].batch, (long long)c->models[i].slots);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(c->models[i].name, c->models[j].name))
                return sl_err_set(err, SL_EINVAL, "config: model '%s' defined twice",
                                  c->models[i].name);
    }
    for (size_t i = 0; i < c->n_tasks; i++) {
        if (c->tasks[i].head && c->tasks[i].kind != SL_TASK_CLASSIFY)
            return sl_err_set(err, SL_EINVAL, "config: tasks.%s: head is for classify tasks",
                              c->tasks[i].name);
        size_t j = 0;
        while (j < c->n_models && strcmp(c->models[j].name, c->tasks[i].model))
            j++;
        if (j == c->n_models)
            return sl_err_set(err, SL_EINVAL, "config: task '%s' runs on unknown model '%s'",
                              c->tasks[i].name, c->tasks[i].model);
        for (size_t k = 0; k < i; k++)
            if (!strcmp(c->tasks[i].name, c->tasks[k].name))
                return sl_err_set(err, SL_EINVAL, "config: task '%s' defined twice",
                                  c->tasks[i].name);
    }
    for (size_t i = 0; i < c->n_keys; i++)
        for (size_t m = 0; m < c->keys[i].n_models; m++) {
            size_t j = 0;
            while (j < c->n_models && strcmp(c->models[j].name, c->keys[i].models[m]))
                j++;
            if (j == c->n_models)
                return sl_err_set(err, SL_EINVAL, "config: api key '%s' allows unknown model '%s'",
                                  c->keys[i].name, c->keys[i].models[m]);
        }
    return check_router(c, NULL, err);
}

/* The keys of a section that are not table rows, printed after its rows. */
static void describe_extra(FILE *f, enum opt_section sec)
{
    switch (sec) {
    case SEC_TASK:
        fprintf(f,
                "\n### `tasks.<name>:` (besides the scalars above)\n\n| key | meaning |\n"
                "|---|---|\n"
                "| `labels` | classify: a list of names, or of `{name, description}` (required) |\n"
                "| `examples` | classify: few-shot list of `{input, label}` |\n"
                "| `schema` | extract: JSON Schema, as YAML or a JSON string; compiled at load "
                "(required) |\n");
        fprintf(f, "\n### `api_keys:` (a list)\n\n| key | meaning |\n|---|---|\n"
                   "| `name` | label in logs and metrics |\n"
                   "| `sha256` | hex SHA-256 of the key (`sluice serve --hash-key KEY`) |\n"
                   "| `models` | list of model names this key may use; absent = all |\n");
        break;
    case SEC_BACKEND:
        fprintf(f, "\n### `backends.<name>:` (besides the scalars above)\n\n| key | meaning |\n"
                   "|---|---|\n"
                   "| `breaker` | the circuit breaker of calls to it: the mapping below |\n");
        break;
    case SEC_ROUTE:
        fprintf(
            f,
            "\n### `routes.<name>:` (besides the scalars above)\n\n| key | meaning |\n"
            "|---|---|\n"
            "| `tiers` | list of 1 to 8 backend names, the small (local) one first (required) |\n"
            "| `thresholds` | cascade: `task: threshold` overriding `threshold` for those "
            "tasks: entries |\n"
            "| `fallback` | backends tried in order when a call fails (error, timeout, breaker "
            "open); absent = the route's other tiers |\n"
            "| `rules` | rules: list of `{match: {...}, to: TIER}`, the first match wins; "
            "`match: {}` or no match matches all |\n"
            "| `predict` | predict: `{model, threshold}`, the mapping below |\n"
            "| `calibration` | written by `sluice calibrate` as evidence; accepted, not read |\n");
        break;
    case SEC_MATCH:
        fprintf(f,
                "\n### `routes.<name>.rules[].match:` (besides the scalars above)\n\n"
                "| key | meaning |\n|---|---|\n"
                "| `metadata` | mapping of request metadata `key: value`; each must be equal |\n");
        break;
    case SEC_LOG:
        fprintf(f,
                "\n### `privacy:`\n\n| key | meaning |\n|---|---|\n"
                "| `kinds` | built-in PII kinds to detect: email, phone, card, iban, ssn_us, "
                "nino_uk, taxid_de, insee_fr (or their placeholder labels: SSN, DE_TAXID, ...); "
                "absent = all, `[]` = none |\n"
                "| `patterns` | list of `{label, regex}`: the label (`[A-Z0-9_]{1,31}`) names the "
                "placeholders (`[LABEL_1]`); the regex is PCRE2, compiled at load |\n");
        fprintf(f, "\n### `costs:`\n\n| key | meaning |\n|---|---|\n"
                   "| `currency` | code printed with amounts (default USD) |\n"
                   "| `large_input_per_mtok` | the large model's price per million input tokens: "
                   "the baseline of `sluice costs` |\n"
                   "| `large_output_per_mtok` | the same for output tokens |\n"
                   "| `infra_per_hour` | machine price; `sluice costs` recomputes infrastructure "
                   "from machine time (absent: the ledger's costs) |\n"
                   "| `fixed_monthly` | mapping of `name: amount` per month, prorated over the "
                   "report's period |\n");
        break;
    default:
        break;
    }
}

void sl_config_describe(FILE *f)
{
    for (size_t i = 0; i < N_OPTS; i++) {
        const struct opt *o = &opts[i];
        if (!i || o->section != opts[i - 1].section)
            fprintf(f,
                    "%s### `%s:`\n\n| key | type | default | range | meaning "
                    "|\n|---|---|---|---|---|\n",
                    i ? "\n" : "", section_name(o->section));
        char range[64] = "";
        if (o->type == OPT_INT)
            snprintf(range, sizeof range, "%.0f .. %.0f", o->lo, o->hi);
        else if (o->type == OPT_REAL)
            snprintf(range, sizeof range, "%g .. %g", o->lo, o->hi);
        else if (o->type == OPT_ENUM)
            snprintf(range, sizeof range, "%s", o->enums);
        else if (o->type == OPT_BOOL)
            snprintf(range, sizeof range, "true|false");
        fprintf(f, "| `%s` | %s | %s | %s | %s |\n", o->key,
                o->type == OPT_STR    ? "string"
                : o->type == OPT_INT  ? "integer"
                : o->type == OPT_REAL ? "number"
                : o->type == OPT_BOOL ? "boolean"
                                      : "enum",
                o->def ? o->def : "-", range, o->help);
        if (i + 1 == N_OPTS || opts[i + 1].section != o->section) describe_extra(f, o->section);
    }
}
