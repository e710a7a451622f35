/*
 * config.c - YAML configuration through one option table (config layer).
 *
 * The document is loaded with libyaml's document API and walked by hand:
 * sections are mappings of scalars described by the table below, `models`
 * is a mapping of name -> mapping, `api_keys` a sequence of mappings. Every
 * scalar goes through set_opt(), which checks type and range. Unknown keys
 * are errors that list the known ones. See config.h.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* ------------------------------------------------------------------------ */
/* The option table                                                          */
/* ------------------------------------------------------------------------ */

enum opt_type { OPT_STR, OPT_INT, OPT_ENUM };

enum opt_section { SEC_SERVER, SEC_LIMITS, SEC_MODEL };

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
     "inputs in one /v1/embeddings request"},

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
};
#define N_OPTS (sizeof opts / sizeof *opts)

static const char *section_name(enum opt_section s)
{
    return s == SEC_SERVER ? "server" : s == SEC_LIMITS ? "limits" : "models.<name>";
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

void sl_config_free(struct sl_config *c)
{
    free_opts(SEC_SERVER, &c->server);
    free_opts(SEC_LIMITS, &c->limits);
    for (size_t i = 0; i < c->n_models; i++)
        model_free(&c->models[i]);
    for (size_t i = 0; i < c->n_keys; i++)
        key_free(&c->keys[i]);
    free(c->models);
    free(c->keys);
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
        else if (!strcmp(s, "tasks") || !strcmp(s, "routes") || !strcmp(s, "backends"))
            rc = sl_err_set(err, SL_EUNSUPPORTED,
                            "config line %d: section '%s' is not read by this version", line_of(k),
                            s);
        else
            rc = sl_err_set(
                err, SL_EINVAL,
                "config line %d: unknown section '%s' (known: server, limits, models, api_keys)",
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
        else if (o->type == OPT_ENUM)
            snprintf(range, sizeof range, "%s", o->enums);
        fprintf(f, "| `%s` | %s | %s | %s | %s |\n", o->key,
                o->type == OPT_STR   ? "string"
                : o->type == OPT_INT ? "integer"
                                     : "enum",
                o->def ? o->def : "-", range, o->help);
    }
    fprintf(f, "\n### `api_keys:` (a list)\n\n| key | meaning |\n|---|---|\n"
               "| `name` | label in logs and metrics |\n"
               "| `sha256` | hex SHA-256 of the key (`sluice serve --hash-key KEY`) |\n"
               "| `models` | list of model names this key may use; absent = all |\n");
}
