/*
 * config.c - YAML configuration through one option table (config layer).
 *
 * The document is loaded with libyaml's document API and walked by hand:
 * sections are mappings of scalars described by the table below, `models`
 * is a mapping of name -> mapping, `api_keys` a sequence of mappings,
 * `tasks` a mapping of name -> mapping whose scalars are table rows and
 * whose labels, examples and schema are walked here. Every
 * scalar goes through set_opt(), which checks type and range. Unknown keys
 * are errors that list the known ones. See config.h.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <yaml.h>

#include "../tasks/schema.h"

/* ------------------------------------------------------------------------ */
/* The option table                                                          */
/* ------------------------------------------------------------------------ */

enum opt_type { OPT_STR, OPT_INT, OPT_ENUM, OPT_REAL };

enum opt_section { SEC_SERVER, SEC_LIMITS, SEC_MODEL, SEC_TASK };

struct opt {
    enum opt_section section;
    const char *key;
    enum opt_type type;
    size_t offset;     /* into the section's struct */
    const char *def;   /* default, as it would be written in YAML; NULL = unset */
    double lo, hi;     /* OPT_INT range */
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
};
#define N_OPTS (sizeof opts / sizeof *opts)

static const char *section_name(enum opt_section s)
{
    return s == SEC_SERVER   ? "server"
           : s == SEC_LIMITS ? "limits"
           : s == SEC_MODEL  ? "models.<name>"
                             : "tasks.<name>";
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
    for (size_t i = 0; i < c->n_tasks; i++)
        if (!strcmp(c->tasks[i].name, name)) return &c->tasks[i];
    return NULL;
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
    free(c->models);
    free(c->keys);
    free(c->tasks);
    memset(c, 0, sizeof *c);
}

/* ------------------------------------------------------------------------ */
/* Walking the YAML document                                                 */
/* ------------------------------------------------------------------------ */

struct walk {
    yaml_document_t *doc;
    struct sl_config *c;
    struct sl_err *err;
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
        if ((rc = expect(w, k, YAML_SCALAR_NODE, "a key"))) return rc;
        const struct opt *o = find_opt(sec, scalar(k));
        if (!o) {
            char known[512];
            known_keys(sec, known, sizeof known);
            return sl_err_set(w->err, SL_EINVAL,
                              "config line %d: unknown key '%s' in %s (known: %s)", line_of(k),
                              scalar(k), where, known);
        }
        char what[160];
        snprintf(what, sizeof what, "%s.%s", where, o->key);
        if ((rc = expect(w, v, YAML_SCALAR_NODE, what))) return rc;
        char at[200];
        snprintf(at, sizeof at, "config line %d: %s", line_of(v), where);
        if ((rc = set_opt(o, base, scalar(v), at, w->err))) return rc;
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
        sl_err_set(w->err, SL_ERANGE, "config line %d: schema nested too deep", n ? line_of(n) : 0);
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
            if (expect(w, k, YAML_SCALAR_NODE, "a schema key")) {
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
            else {
                const struct opt *o = find_opt(SEC_TASK, key);
                if (!o) {
                    char known[512];
                    known_keys(SEC_TASK, known, sizeof known);
                    return sl_err_set(w->err, SL_EINVAL,
                                      "config line %d: unknown key '%s' in %s (known: %s, labels, "
                                      "examples, schema)",
                                      line_of(kk), key, where, known);
                }
                char what[260], at[260];
                snprintf(what, sizeof what, "%s.%s", where, o->key);
                if ((rc = expect(w, vv, YAML_SCALAR_NODE, what))) return rc;
                snprintf(at, sizeof at, "config line %d: %s", line_of(vv), where);
                rc = set_opt(o, t, scalar(vv), at, w->err);
            }
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
    struct walk w = {&doc, c, err};
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
        else if (!strcmp(s, "routes") || !strcmp(s, "backends"))
            rc = sl_err_set(err, SL_EUNSUPPORTED,
                            "config line %d: section '%s' is not read by this version", line_of(k),
                            s);
        else
            rc = sl_err_set(
                err, SL_EINVAL,
                "config line %d: unknown section '%s' (known: server, limits, models, api_keys, "
                "tasks)",
                line_of(k), s);
        if (rc) goto out;
    }
out:
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
    return 0;
}

void sl_config_describe(FILE *f)
{
    enum opt_section last = (enum opt_section) - 1;
    for (size_t i = 0; i < N_OPTS; i++) {
        const struct opt *o = &opts[i];
        if (o->section != last) {
            fprintf(f,
                    "%s### `%s:`\n\n| key | type | default | range | meaning "
                    "|\n|---|---|---|---|---|\n",
                    i ? "\n" : "", section_name(o->section));
            last = o->section;
        }
        char range[64] = "";
        if (o->type == OPT_INT)
            snprintf(range, sizeof range, "%.0f .. %.0f", o->lo, o->hi);
        else if (o->type == OPT_REAL)
            snprintf(range, sizeof range, "%g .. %g", o->lo, o->hi);
        else if (o->type == OPT_ENUM)
            snprintf(range, sizeof range, "%s", o->enums);
        fprintf(f, "| `%s` | %s | %s | %s | %s |\n", o->key,
                o->type == OPT_STR    ? "string"
                : o->type == OPT_INT  ? "integer"
                : o->type == OPT_REAL ? "number"
                                      : "enum",
                o->def ? o->def : "-", range, o->help);
    }
    fprintf(f, "\n### `api_keys:` (a list)\n\n| key | meaning |\n|---|---|\n"
               "| `name` | label in logs and metrics |\n"
               "| `sha256` | hex SHA-256 of the key (`sluice serve --hash-key KEY`) |\n"
               "| `models` | list of model names this key may use; absent = all |\n");
    fprintf(f, "\n### `tasks.<name>:` (besides the scalars above)\n\n| key | meaning |\n|---|---|\n"
               "| `labels` | classify: a list of names, or of `{name, description}` (required) |\n"
               "| `examples` | classify: few-shot list of `{input, label}` |\n"
               "| `schema` | extract: JSON Schema, as YAML or a JSON string; compiled at load "
               "(required) |\n");
}
