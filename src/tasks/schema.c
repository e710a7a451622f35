/*
 * schema.c - compile a JSON Schema subset to a byte grammar (tasks layer).
 * See schema.h for the subset. The grammar's rules are named r0, r1, ...
 * plus fixed rules for JSON's lexical pieces (str-char, number, ...); the
 * grammar module knows nothing of JSON, everything JSON-specific is here.
 */
#include "schema.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "engine/grammar.h"

struct cc {
    struct sl_buf out;
    struct sl_schema_opts opts;
    struct sl_err *err;
    int rc;
    int n_rules;
};

/* Fixed rules. A string character is one code point: printable ASCII but
 * '"' and '\\', an escape other than \u, or a well-formed UTF-8 sequence
 * (no overlongs, no surrogates), so every output is valid JSON and UTF-8. */
static const char *fixed_rules =
    "ws ::= \" \"?\n"
    "str-char ::= [\\x20-\\x21\\x23-\\x5B\\x5D-\\x7F] | \"\\\\\" [\"\\\\/bfnrt] | utf8\n"
    "utf8 ::= [\\xC2-\\xDF] cont | \"\\xE0\" [\\xA0-\\xBF] cont | [\\xE1-\\xEC] cont cont"
    " | \"\\xED\" [\\x80-\\x9F] cont | [\\xEE-\\xEF] cont cont | \"\\xF0\" [\\x90-\\xBF] cont cont"
    " | [\\xF1-\\xF3] cont cont cont | \"\\xF4\" [\\x80-\\x8F] cont cont\n"
    "cont ::= [\\x80-\\xBF]\n"
    "integer ::= \"-\"? ( \"0\" | [1-9] [0-9]{0,15} )\n"
    "number ::= integer ( \".\" [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,2} )?\n"
    "boolean ::= \"true\" | \"false\"\n"
    "null ::= \"null\"\n"
    "any ::= any-object | any-array | any-string | number | boolean | null\n"
    "any-object ::= \"{\" ws ( any-string \":\" ws any ( \",\" ws any-string \":\" ws any )* )? \"}\"\n"
    "any-array ::= \"[\" ws ( any ( \",\" ws any )* )? \"]\"\n";

struct sl_schema_opts sl_schema_default_opts(void) { return (struct sl_schema_opts){0, 0}; }

static struct sl_buf newbuf(void)
{
    struct sl_buf b;
    sl_buf_init(&b, 0);
    return b;
}

static int fail(struct cc *c, int code, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(struct cc *c, int code, const char *path, const char *fmt, ...)
{
    char msg[SL_ERR_MSG_LEN];
    va_list ap;
    if (c->rc) return -1;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->rc = sl_err_set(c->err, code, "schema: at '%s': %s", path[0] ? path : "/", msg);
    return -1;
}

static void put(struct cc *c, struct sl_buf *b, const char *s, size_t n)
{
    if (!c->rc && sl_buf_append(b, s, n))
        c->rc = sl_err_set(c->err, SL_ENOMEM, "schema: grammar too large or out of memory");
}

static void putf(struct cc *c, struct sl_buf *b, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void putf(struct cc *c, struct sl_buf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) put(c, b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A grammar literal of bytes s[0..n). */
static void put_lit(struct cc *c, struct sl_buf *b, const char *s, size_t n)
{
    put(c, b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            char e[2] = {'\\', (char)ch};
            put(c, b, e, 2);
        } else if (ch < 0x20 || ch >= 0x7F) {
            putf(c, b, "\\x%02X", ch);
        } else {
            put(c, b, (const char *)&ch, 1);
        }
    }
    put(c, b, "\" ", 2);
}

/* The JSON text of v as a literal. */
static void put_json_lit(struct cc *c, struct sl_buf *b, const json_t *v)
{
    char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!t) {
        if (!c->rc) c->rc = sl_err_set(c->err, SL_ENOMEM, "schema: out of memory");
        return;
    }
    put_lit(c, b, t, strlen(t));
    free(t);
}

/* Write "rN ::= body\n"; returns N. */
static int def_rule(struct cc *c, struct sl_buf *body)
{
    int id = c->n_rules++;
    putf(c, &c->out, "r%d ::= ", id);
    if (body->p) put(c, &c->out, body->p, body->len);
    put(c, &c->out, "\n", 1);
    sl_buf_free(body);
    return c->rc ? -1 : id;
}

static const char *annotations[] = {"title", "description", "default", "examples", "$schema",
                                    "$id", "$comment", "format", NULL};
static const char *keywords[] = {"type", "properties", "required", "additionalProperties", "items",
                                 "minItems", "maxItems", "minLength", "maxLength", "enum",
                                 "const", "anyOf", NULL};

static bool in_list(const char *k, const char *const *l)
{
    for (; *l; l++)
        if (!strcmp(k, *l)) return true;
    return false;
}

enum { T_OBJECT = 1, T_ARRAY = 2, T_STRING = 4, T_NUMBER = 8, T_INTEGER = 16, T_BOOLEAN = 32, T_NULL = 64 };

static int type_bit(const char *s)
{
    static const char *names[] = {"object", "array", "string", "number", "integer", "boolean", "null"};
    for (int i = 0; i < 7; i++)
        if (!strcmp(s, names[i])) return 1 << i;
    return 0;
}

static bool value_has_type(const json_t *v, int types)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return types & T_OBJECT;
    case JSON_ARRAY: return types & T_ARRAY;
    case JSON_STRING: return types & T_STRING;
    case JSON_INTEGER: return types & (T_INTEGER | T_NUMBER);
    case JSON_REAL: return (types & T_NUMBER) != 0;
    case JSON_TRUE:
    case JSON_FALSE: return types & T_BOOLEAN;
    case JSON_NULL: return types & T_NULL;
    }
    return false;
}

/* A non-negative integer keyword, or dflt when absent; -2 on error. */
static long long get_count(struct cc *c, const json_t *s, const char *key, long long dflt,
                           const char *path)
{
    const json_t *v = json_object_get(s, key);
    if (!v) return dflt;
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        fail(c, SL_EFORMAT, path, "'%s' must be a non-negative integer", key);
        return -2;
    }
    if (json_integer_value(v) > SL_GRAMMAR_MAX_REPEAT) {
        fail(c, SL_ERANGE, path, "'%s' is %lld, more than the %d we can enforce", key,
             (long long)json_integer_value(v), SL_GRAMMAR_MAX_REPEAT);
        return -2;
    }
    return json_integer_value(v);
}

static void put_repeat(struct cc *c, struct sl_buf *b, long long m, long long n)
{
    if (n < 0) putf(c, b, "{%lld,} ", m);
    else putf(c, b, "{%lld,%lld} ", m, n);
}

static int gen(struct cc *c, const json_t *s, const char *path, int depth);

static void child_path(char *dst, size_t cap, const char *path, const char *key)
{
    snprintf(dst, cap, "%s/%s", path, key);
}

static int gen_object(struct cc *c, const json_t *s, const char *path, int depth)
{
    const json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
    const json_t *ap = json_object_get(s, "additionalProperties");
    char sub[512];
    if (props && !json_is_object(props)) return fail(c, SL_EFORMAT, path, "'properties' must be an object");
    if (req && !json_is_array(req)) return fail(c, SL_EFORMAT, path, "'required' must be an array");
    if (ap && !json_is_false(ap))
        return fail(c, SL_EUNSUPPORTED, path,
                    "additionalProperties other than false is not supported (output objects have exactly the listed properties)");
    size_t n = props ? json_object_size(props) : 0;
    for (size_t i = 0; req && i < json_array_size(req); i++) {
        const json_t *r = json_array_get(req, i);
        if (!json_is_string(r)) return fail(c, SL_EFORMAT, path, "'required' must list strings");
        if (!props || !json_object_get(props, json_string_value(r)))
            return fail(c, SL_EFORMAT, path,
                        "required property '%s' is not in 'properties' (additionalProperties is false)",
                        json_string_value(r));
    }
    const char **keys = calloc(n + 1, sizeof *keys);
    int *vals = calloc(n + 1, sizeof *vals);
    bool *reqd = calloc(n + 1, sizeof *reqd);
    int rc = -1;
    if (!keys || !vals || !reqd) {
        c->rc = sl_err_set(c->err, SL_ENOMEM, "schema: out of memory");
        goto out; /* allocation failure */
    }
    size_t i = 0;
    const char *key;
    json_t *v;
    if (props) {
        json_object_foreach((json_t *)props, key, v) {
            keys[i] = key;
            child_path(sub, sizeof sub, path, key);
            if ((vals[i] = gen(c, v, sub, depth + 1)) < 0) goto out; /* bad sub-schema */
            for (size_t k = 0; req && k < json_array_size(req); k++)
                if (!strcmp(json_string_value(json_array_get(req, k)), key)) reqd[i] = true;
            i++;
        }
    }
    /* first[k]: properties k.. with none written yet; after[k]: with some */
    int first = -1, after = -1;
    for (size_t k = n; k-- > 0;) {
        struct sl_buf bf = newbuf(), ba = newbuf();
        json_t *ks = json_string(keys[k]);
        if (!ks) {
            c->rc = sl_err_set(c->err, SL_ENOMEM, "schema: out of memory");
            goto out; /* allocation failure */
        }
        struct sl_buf pair = newbuf();
        put_json_lit(c, &pair, ks);
        json_decref(ks);
        putf(c, &pair, "\":\" ws r%d ", vals[k]);
        /* first */
        put(c, &bf, pair.p ? pair.p : "", pair.len);
        if (after >= 0) putf(c, &bf, "r%d ", after);
        if (!reqd[k]) {
            put(c, &bf, "| ", 2);
            if (first >= 0) putf(c, &bf, "r%d ", first);
        }
        /* after */
        put(c, &ba, "\",\" ws ", 7);
        put(c, &ba, pair.p ? pair.p : "", pair.len);
        if (after >= 0) putf(c, &ba, "r%d ", after);
        if (!reqd[k]) {
            put(c, &ba, "| ", 2);
            if (after >= 0) putf(c, &ba, "r%d ", after);
        }
        sl_buf_free(&pair);
        int nf = def_rule(c, &bf), na = def_rule(c, &ba);
        if (nf < 0 || na < 0) goto out; /* allocation failure */
        first = nf;
        after = na;
    }
    struct sl_buf ob = newbuf();
    put(c, &ob, "\"{\" ws ", 7);
    if (first >= 0) putf(c, &ob, "r%d ", first);
    put(c, &ob, "\"}\"", 3);
    rc = def_rule(c, &ob);
out:
    free(keys);
    free(vals);
    free(reqd);
    return c->rc ? -1 : rc;
}

static int gen_array(struct cc *c, const json_t *s, const char *path, int depth)
{
    const json_t *items = json_object_get(s, "items");
    char sub[512];
    long long m = get_count(c, s, "minItems", 0, path);
    long long n = get_count(c, s, "maxItems", c->opts.max_items > 0 ? c->opts.max_items : -1, path);
    if (m == -2 || n == -2) return -1;
    if (n >= 0 && n < m) return fail(c, SL_EFORMAT, path, "maxItems is below minItems");
    if (items && json_is_array(items))
        return fail(c, SL_EUNSUPPORTED, path, "'items' as an array (tuple) is not supported");
    child_path(sub, sizeof sub, path, "items");
    int it = -1;
    if (items) {
        if ((it = gen(c, items, sub, depth + 1)) < 0) return -1;
    }
    struct sl_buf b = newbuf();
    char item[32];
    if (it >= 0) snprintf(item, sizeof item, "r%d ", it);
    else snprintf(item, sizeof item, "any ");
    put(c, &b, "\"[\" ws ", 7);
    if (n == 0) {
        /* nothing */
    } else if (m == 0) {
        put(c, &b, "( ", 2);
        put(c, &b, item, strlen(item));
        put(c, &b, "( \",\" ws ", 9);
        put(c, &b, item, strlen(item));
        put(c, &b, ")", 1);
        put_repeat(c, &b, 0, n < 0 ? -1 : n - 1);
        put(c, &b, ")? ", 3);
    } else {
        put(c, &b, item, strlen(item));
        put(c, &b, "( \",\" ws ", 9);
        put(c, &b, item, strlen(item));
        put(c, &b, ")", 1);
        put_repeat(c, &b, m - 1, n < 0 ? -1 : n - 1);
    }
    put(c, &b, "\"]\"", 3);
    return def_rule(c, &b);
}

static int gen_string(struct cc *c, const json_t *s, const char *path)
{
    long long m = get_count(c, s, "minLength", 0, path);
    long long n = get_count(c, s, "maxLength", c->opts.max_string > 0 ? c->opts.max_string : -1, path);
    if (m == -2 || n == -2) return -1;
    if (n >= 0 && n < m) return fail(c, SL_EFORMAT, path, "maxLength is below minLength");
    struct sl_buf b = newbuf();
    put(c, &b, "\"\\\"\" ", 5);
    if (n != 0) {
        put(c, &b, "str-char", 8);
        put_repeat(c, &b, m, n);
    }
    put(c, &b, "\"\\\"\"", 4);
    return def_rule(c, &b);
}

static int gen_type(struct cc *c, const json_t *s, int t, const char *path, int depth)
{
    struct sl_buf b = newbuf();
    switch (t) {
    case T_OBJECT: return gen_object(c, s, path, depth);
    case T_ARRAY: return gen_array(c, s, path, depth);
    case T_STRING: return gen_string(c, s, path);
    case T_NUMBER: put(c, &b, "number", 6); break;
    case T_INTEGER: put(c, &b, "integer", 7); break;
    case T_BOOLEAN: put(c, &b, "boolean", 7); break;
    default: put(c, &b, "null", 4); break;
    }
    return def_rule(c, &b);
}

static int gen(struct cc *c, const json_t *s, const char *path, int depth)
{
    const char *key;
    json_t *v;
    if (depth > SL_SCHEMA_MAX_DEPTH)
        return fail(c, SL_ERANGE, path, "schemas nested deeper than %d", SL_SCHEMA_MAX_DEPTH);
    if (json_is_true(s)) {
        struct sl_buf b = newbuf();
        put(c, &b, "any", 3);
        return def_rule(c, &b);
    }
    if (json_is_false(s)) return fail(c, SL_EFORMAT, path, "the schema 'false' accepts nothing");
    if (!json_is_object(s)) return fail(c, SL_EFORMAT, path, "a schema must be an object or a boolean");
    json_object_foreach((json_t *)s, key, v) {
        if (!in_list(key, keywords) && !in_list(key, annotations))
            return fail(c, SL_EUNSUPPORTED, path, "keyword '%s' is not supported", key);
    }
    const json_t *type = json_object_get(s, "type"), *en = json_object_get(s, "enum");
    const json_t *cn = json_object_get(s, "const"), *any_of = json_object_get(s, "anyOf");
    int types = 0;
    if (type) {
        if (json_is_string(type)) {
            types = type_bit(json_string_value(type));
        } else if (json_is_array(type) && json_array_size(type) > 0) {
            for (size_t i = 0; i < json_array_size(type); i++) {
                const json_t *t = json_array_get(type, i);
                int bit = json_is_string(t) ? type_bit(json_string_value(t)) : 0;
                if (!bit) { types = 0; break; }
                types |= bit;
            }
        }
        if (!types) return fail(c, SL_EFORMAT, path, "'type' must name JSON types");
        if ((types & T_NUMBER) && (types & T_INTEGER)) types &= ~T_INTEGER;
    }
    if (any_of) {
        json_object_foreach((json_t *)s, key, v) {
            if (strcmp(key, "anyOf") && !in_list(key, annotations))
                return fail(c, SL_EUNSUPPORTED, path, "'anyOf' next to '%s' is not supported", key);
        }
        if (!json_is_array(any_of) || json_array_size(any_of) == 0)
            return fail(c, SL_EFORMAT, path, "'anyOf' must be a non-empty array");
        size_t n = json_array_size(any_of);
        int *ids = calloc(n, sizeof *ids);
        if (!ids) {
            c->rc = sl_err_set(c->err, SL_ENOMEM, "schema: out of memory");
            return -1;
        }
        char sub[512];
        for (size_t i = 0; i < n; i++) {
            snprintf(sub, sizeof sub, "%s/anyOf/%zu", path, i);
            if ((ids[i] = gen(c, json_array_get(any_of, i), sub, depth + 1)) < 0) {
                free(ids);
                return -1;
            }
        }
        struct sl_buf b = newbuf();
        for (size_t i = 0; i < n; i++) putf(c, &b, "%sr%d ", i ? "| " : "", ids[i]);
        free(ids);
        return def_rule(c, &b);
    }
    if (en || cn) {
        if (en && cn) return fail(c, SL_EUNSUPPORTED, path, "'enum' and 'const' together are not supported");
        if (en && (!json_is_array(en) || json_array_size(en) == 0))
            return fail(c, SL_EFORMAT, path, "'enum' must be a non-empty array");
        struct sl_buf b = newbuf();
        size_t n = en ? json_array_size(en) : 1, kept = 0;
        for (size_t i = 0; i < n; i++) {
            const json_t *e = en ? json_array_get(en, i) : cn;
            if (types && !value_has_type(e, types)) continue;
            if (kept++) put(c, &b, "| ", 2);
            put_json_lit(c, &b, e);
        }
        if (kept == 0) {
            sl_buf_free(&b);
            return fail(c, SL_EFORMAT, path, "no 'enum'/'const' value has the schema's type");
        }
        return def_rule(c, &b);
    }
    if (!types) {
        if (json_object_get(s, "properties") || json_object_get(s, "required")) types = T_OBJECT;
        else if (json_object_get(s, "items")) types = T_ARRAY;
        else if (json_object_get(s, "minLength") || json_object_get(s, "maxLength")) types = T_STRING;
    }
    if (!types) {
        struct sl_buf b = newbuf();
        put(c, &b, "any", 3);
        return def_rule(c, &b);
    }
    int ids[7], n = 0;
    for (int t = 1; t <= T_NULL; t <<= 1)
        if (types & t) {
            if ((ids[n++] = gen_type(c, s, t, path, depth)) < 0) return -1;
        }
    if (n == 1) return ids[0];
    struct sl_buf b = newbuf();
    for (int i = 0; i < n; i++) putf(c, &b, "%sr%d ", i ? "| " : "", ids[i]);
    return def_rule(c, &b);
}

int sl_schema_to_grammar(const json_t *schema, const struct sl_schema_opts *opts, char **out,
                         struct sl_err *err)
{
    struct cc c = {.opts = opts ? *opts : sl_schema_default_opts(), .err = err};
    *out = NULL;
    sl_buf_init(&c.out, 64u << 20);
    int root = gen(&c, schema, "", 0);
    if (root >= 0 && !c.rc) {
        putf(&c, &c.out, "root ::= r%d\n", root);
        put(&c, &c.out, fixed_rules, strlen(fixed_rules));
        if (c.opts.max_string > 0) putf(&c, &c.out, "any-string ::= \"\\\"\" str-char{0,%d} \"\\\"\"\n", c.opts.max_string);
        else putf(&c, &c.out, "any-string ::= \"\\\"\" str-char* \"\\\"\"\n");
    }
    if (c.rc || root < 0) {
        sl_buf_free(&c.out);
        return c.rc ? c.rc : SL_EFORMAT;
    }
    *out = sl_buf_take(&c.out, NULL);
    return 0;
}

int sl_schema_text_to_grammar(const char *text, size_t len, const struct sl_schema_opts *opts,
                              char **out, struct sl_err *err)
{
    json_error_t je;
    *out = NULL;
    if (len > SL_SCHEMA_MAX_BYTES)
        return sl_err_set(err, SL_ERANGE, "schema: %zu bytes, more than %u", len, SL_SCHEMA_MAX_BYTES);
    json_t *s = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (!s)
        return sl_err_set(err, SL_EFORMAT, "schema: not JSON: line %d col %d: %s", je.line, je.column,
                          je.text);
    int rc = sl_schema_to_grammar(s, opts, out, err);
    json_decref(s);
    return rc;
}
