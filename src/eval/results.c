/*
 * results.c - load results.jsonl into per-example arrays joined by id
 * (eval layer). See results.h for the fields.
 *
 * Two passes over the buffer: the first collects the ids (an open-addressing
 * hash table keeps first-appearance order), the targets and the meta keys;
 * the second allocates the arrays once and fills the cells.
 */
#include "eval/results.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ==== small helpers ====================================================== */

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

/* A JSON value as text: a string's own characters, anything else as compact
 * JSON. NULL for JSON null (and on allocation failure: *oom set). */
static char *value_text(const json_t *v, bool *oom)
{
    if (!v || json_is_null(v)) return NULL;
    char *s = json_is_string(v) ? dupn(json_string_value(v), json_string_length(v))
                                : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_SORT_KEYS);
    if (!s) *oom = true;
    return s;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* id -> example index; slots hold index + 1 (0 = empty). */
struct idmap {
    size_t *slot;
    size_t cap; /* power of two */
};

static size_t idmap_find(const struct idmap *m, char *const *ids, const char *id, bool *found)
{
    size_t mask = m->cap - 1, h = (size_t)hash_str(id) & mask;
    while (m->slot[h]) {
        if (!strcmp(ids[m->slot[h] - 1], id)) {
            *found = true;
            return h;
        }
        h = (h + 1) & mask;
    }
    *found = false;
    return h;
}

static int idmap_grow(struct idmap *m, char *const *ids, size_t n)
{
    size_t cap = m->cap ? m->cap * 2 : 1024;
    size_t *ns = calloc(cap, sizeof *ns);
    if (!ns) return SL_ENOMEM;
    struct idmap nm = {ns, cap};
    for (size_t i = 0; i < n; i++) {
        bool f;
        nm.slot[idmap_find(&nm, ids, ids[i], &f)] = i + 1;
    }
    free(m->slot);
    *m = nm;
    return 0;
}

static void cell_free(struct sl_result_cell *c)
{
    free(c->pred);
    free(c->decision);
    free(c->backend);
    free(c->error);
}

void sl_results_free(struct sl_results *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->id[i]);
        if (r->truth) free(r->truth[i]);
    }
    if (r->cell)
        for (size_t i = 0; i < r->n * r->n_targets; i++) cell_free(&r->cell[i]);
    if (r->meta)
        for (size_t i = 0; i < r->n * r->n_meta; i++) free(r->meta[i]);
    for (size_t t = 0; t < r->n_targets; t++) free(r->targets[t]);
    for (size_t k = 0; k < r->n_meta; k++) free(r->meta_keys[k]);
    free(r->id);
    free(r->truth);
    free(r->input_len);
    free(r->targets);
    free(r->meta_keys);
    free(r->meta);
    free(r->cell);
    memset(r, 0, sizeof *r);
}

int sl_results_target(const struct sl_results *r, const char *name)
{
    for (size_t t = 0; t < r->n_targets; t++)
        if (!strcmp(r->targets[t], name)) return (int)t;
    return -1;
}

int sl_results_meta_key(const struct sl_results *r, const char *key)
{
    for (size_t k = 0; k < r->n_meta; k++)
        if (!strcmp(r->meta_keys[k], key)) return (int)k;
    return -1;
}

const struct sl_result_cell *sl_results_cell(const struct sl_results *r, size_t i, int t)
{
    return &r->cell[i * r->n_targets + (size_t)t];
}

const char *sl_results_meta(const struct sl_results *r, size_t i, int k)
{
    if (k < 0 || (size_t)k >= r->n_meta) return NULL;
    return r->meta[i * r->n_meta + (size_t)k];
}

/* ==== parsing ============================================================ */

/* Index of name in a growable list of strings, appended when absent.
 * Returns the index, SL_ERANGE past max, SL_ENOMEM. */
static int intern(char ***list, size_t *n, const char *name, size_t max)
{
    for (size_t i = 0; i < *n; i++)
        if (!strcmp((*list)[i], name)) return (int)i;
    if (*n >= max) return SL_ERANGE;
    char **nl = realloc(*list, (*n + 1) * sizeof *nl);
    if (!nl) return SL_ENOMEM;
    *list = nl;
    if (!(nl[*n] = strdup(name))) return SL_ENOMEM;
    return (int)(*n)++;
}

/* A count read as a double, as an integer: -1 when NaN, negative or past
 * 2^53 (so the conversion is always defined). */
static int64_t count_of(double v)
{
    return v >= 0 && v <= 9007199254740992.0 ? (int64_t)v : -1;
}

/* A number field: NaN when absent or null; SL_EFORMAT when another type. */
static int num_field(const json_t *o, const char *key, double *out)
{
    const json_t *v = json_object_get(o, key);
    *out = NAN;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return SL_EFORMAT;
    *out = json_number_value(v);
    return 0;
}

/* A string-or-null field (other types: SL_EFORMAT). */
static int str_field(const json_t *o, const char *key, char **out)
{
    const json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return SL_EFORMAT;
    *out = dupn(json_string_value(v), json_string_length(v));
    return *out ? 0 : SL_ENOMEM;
}

struct line_iter {
    const char *p, *end;
    long line;
};

/* The next non-blank line as [*s, *e); false at the end. */
static bool next_line(struct line_iter *it, const char **s, const char **e)
{
    while (it->p < it->end) {
        const char *nl = memchr(it->p, '\n', (size_t)(it->end - it->p));
        const char *le = nl ? nl : it->end, *q = it->p;
        it->line++;
        it->p = nl ? nl + 1 : it->end;
        while (q < le && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
        if (q == le) continue;
        *s = q;
        *e = le;
        return true;
    }
    return false;
}

/* Parses one line into an object; id and target as text in *id, *target. */
static int parse_obj(json_t **out, char **id, const char **target, const char *s, const char *e,
                     const char *name, long line, struct sl_err *err)
{
    json_error_t je;
    bool oom = false;
    json_t *v = json_loadb(s, (size_t)(e - s), 0, &je);
    *out = NULL;
    *id = NULL;
    if (!v) return sl_err_set(err, SL_EFORMAT, "%s line %ld: not a JSON object: %s", name, line, je.text);
    const json_t *jid = json_object_get(v, "id"), *jt = json_object_get(v, "target");
    if (!jid || !(json_is_string(jid) || json_is_integer(jid) || json_is_real(jid))) {
        json_decref(v);
        return sl_err_set(err, SL_EFORMAT, "%s line %ld: no \"id\" (a string or a number)", name, line);
    }
    if (!json_is_string(jt)) {
        json_decref(v);
        return sl_err_set(err, SL_EFORMAT, "%s line %ld: no \"target\" string", name, line);
    }
    *id = value_text(jid, &oom);
    if (oom) {
        json_decref(v);
        return sl_err_set(err, SL_ENOMEM, "%s: out of memory", name);
    }
    *target = json_string_value(jt);
    *out = v;
    return 0;
}

static int fill_cell(struct sl_results *r, size_t i, const json_t *o, struct sl_result_cell *c,
                     const char *name, long line, struct sl_err *err)
{
    bool oom = false;
    const char *bad = NULL;
    double tin, tout, len;
    const json_t *v;
    c->present = true;
    c->correct = -1;
    if (num_field(o, "confidence", &c->confidence)) bad = "confidence";
    if (num_field(o, "latency_ms", &c->latency_ms)) bad = "latency_ms";
    if (num_field(o, "cost", &c->cost)) bad = "cost";
    if (num_field(o, "tokens_in", &tin)) bad = "tokens_in";
    if (num_field(o, "tokens_out", &tout)) bad = "tokens_out";
    if (num_field(o, "input_len", &len)) bad = "input_len";
    c->tokens_in = isnan(tin) ? 0 : count_of(tin);
    c->tokens_out = isnan(tout) ? 0 : count_of(tout);
    if (r->input_len[i] < 0) r->input_len[i] = count_of(len);
    v = json_object_get(o, "correct");
    if (v && !json_is_null(v)) {
        if (!json_is_boolean(v)) bad = "correct";
        c->correct = json_is_true(v);
    }
    v = json_object_get(o, "escalated");
    if (v && !json_is_null(v)) {
        if (!json_is_boolean(v)) bad = "escalated";
        c->escalated = json_is_true(v);
    }
    int rc = 0;
    if (!bad && (rc = str_field(o, "decision", &c->decision)) == SL_EFORMAT) bad = "decision";
    if (!bad && !rc && (rc = str_field(o, "backend", &c->backend)) == SL_EFORMAT) bad = "backend";
    if (!bad && !rc && (rc = str_field(o, "error", &c->error)) == SL_EFORMAT) bad = "error";
    if (bad)
        return sl_err_set(err, SL_EFORMAT, "%s line %ld: field \"%s\" has the wrong type", name, line,
                          bad);
    if (rc) return sl_err_set(err, SL_ENOMEM, "%s: out of memory", name);
    c->pred = value_text(json_object_get(o, "pred"), &oom);
    if (!r->truth[i]) r->truth[i] = value_text(json_object_get(o, "truth"), &oom);
    const json_t *meta = json_object_get(o, "meta");
    if (meta && json_is_object(meta)) {
        const char *key;
        const json_t *mv;
        json_object_foreach((json_t *)meta, key, mv) {
            int k = sl_results_meta_key(r, key);
            if (k < 0) continue; /* can't happen: pass 1 interned every key */
            char **slot = &r->meta[i * r->n_meta + (size_t)k];
            if (!*slot) *slot = value_text(mv, &oom);
        }
    } else if (meta && !json_is_null(meta)) {
        return sl_err_set(err, SL_EFORMAT, "%s line %ld: \"meta\" must be an object", name, line);
    }
    if (oom) return sl_err_set(err, SL_ENOMEM, "%s: out of memory", name);
    return 0;
}

int sl_results_load_buf(struct sl_results *r, const char *buf, size_t len, const char *name,
                        struct sl_err *err)
{
    struct idmap map = {0};
    json_t *o = NULL;
    char *id = NULL;
    const char *target, *s, *e;
    int rc = 0;
    memset(r, 0, sizeof *r);

    /* pass 1: ids, targets, meta keys */
    struct line_iter it = {buf, buf + len, 0};
    while (next_line(&it, &s, &e)) {
        if ((rc = parse_obj(&o, &id, &target, s, e, name, it.line, err))) goto out;
        int t = intern(&r->targets, &r->n_targets, target, SL_RESULTS_MAX_TARGETS);
        if (t == SL_ERANGE) {
            rc = sl_err_set(err, SL_ERANGE, "%s line %ld: more than %d targets", name, it.line,
                            SL_RESULTS_MAX_TARGETS);
            goto out; /* too many targets */
        }
        if (t < 0) goto oom;
        const json_t *meta = json_object_get(o, "meta");
        if (json_is_object(meta)) {
            const char *key;
            const json_t *mv;
            json_object_foreach((json_t *)meta, key, mv) {
                int k = intern(&r->meta_keys, &r->n_meta, key, SL_RESULTS_MAX_META_KEYS);
                if (k == SL_ERANGE) {
                    rc = sl_err_set(err, SL_ERANGE, "%s line %ld: more than %d meta keys", name,
                                    it.line, SL_RESULTS_MAX_META_KEYS);
                    goto out; /* too many meta keys */
                }
                if (k < 0) goto oom;
            }
        }
        if (2 * (r->n + 1) > map.cap && idmap_grow(&map, r->id, r->n)) goto oom;
        bool found;
        size_t h = idmap_find(&map, r->id, id, &found);
        if (found) {
            free(id);
        } else {
            if (r->n == r->cap) {
                size_t cap = r->cap ? r->cap * 2 : 256;
                char **ni = realloc(r->id, cap * sizeof *ni);
                if (!ni) goto oom;
                r->id = ni;
                r->cap = cap;
            }
            r->id[r->n++] = id;
            map.slot[h] = r->n;
        }
        id = NULL;
        json_decref(o);
        o = NULL;
    }
    if (r->n == 0) {
        rc = sl_err_set(err, SL_EFORMAT, "%s: no results (want one JSON object per line)", name);
        goto out; /* empty */
    }

    /* pass 2: the arrays */
    size_t n = r->n, nt = r->n_targets, nm = r->n_meta;
    r->truth = calloc(n, sizeof *r->truth);
    r->input_len = malloc(n * sizeof *r->input_len);
    r->cell = calloc(n * nt, sizeof *r->cell);
    r->meta = calloc(nm ? n * nm : 1, sizeof *r->meta);
    if (!r->truth || !r->input_len || !r->cell || !r->meta) goto oom;
    for (size_t i = 0; i < n; i++) r->input_len[i] = -1;
    it = (struct line_iter){buf, buf + len, 0};
    while (next_line(&it, &s, &e)) {
        if ((rc = parse_obj(&o, &id, &target, s, e, name, it.line, err))) goto out;
        bool found;
        size_t i = map.slot[idmap_find(&map, r->id, id, &found)] - 1;
        int t = sl_results_target(r, target);
        SL_ASSERT(found && t >= 0);
        struct sl_result_cell *c = &r->cell[i * nt + (size_t)t];
        if (c->present) {
            rc = sl_err_set(err, SL_EFORMAT, "%s line %ld: id %s, target \"%s\" appears twice",
                            name, it.line, id, target);
            goto out; /* duplicate */
        }
        if ((rc = fill_cell(r, i, o, c, name, it.line, err))) goto out;
        free(id);
        id = NULL;
        json_decref(o);
        o = NULL;
    }
    goto out;
oom:
    rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", name);
out:
    free(id);
    json_decref(o);
    free(map.slot);
    if (rc) sl_results_free(r); /* safe on partly filled arrays */
    return rc;
}

int sl_results_load(struct sl_results *r, const char *path, struct sl_err *err)
{
    memset(r, 0, sizeof *r);
    FILE *f = fopen(path, "rb");
    if (!f) return sl_err_set(err, SL_EIO, "cannot open results '%s'", path);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    for (;;) {
        if (len == cap) {
            if (cap >= SL_RESULTS_MAX_FILE) {
                rc = sl_err_set(err, SL_ERANGE, "results '%s' is larger than %zu bytes", path,
                                SL_RESULTS_MAX_FILE);
                break;
            }
            cap = cap ? cap * 2 : 1 << 16;
            char *nb = realloc(buf, cap);
            if (!nb) {
                rc = sl_err_set(err, SL_ENOMEM, "out of memory reading '%s'", path);
                break;
            }
            buf = nb;
        }
        size_t k = fread(buf + len, 1, cap - len, f);
        len += k;
        if (k == 0) {
            if (ferror(f)) rc = sl_err_set(err, SL_EIO, "cannot read results '%s'", path);
            break;
        }
    }
    fclose(f);
    if (!rc) rc = sl_results_load_buf(r, buf, len, path, err);
    free(buf);
    return rc;
}
