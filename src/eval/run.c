/*
 * run.c - live evaluation of a route (eval layer): labelled examples from
 * JSONL or CSV, every tier alone and the route's policy called through a
 * function with sl_router_route's signature by a few worker threads, one
 * JSON line per finished (example, target) appended to a results file that
 * doubles as the resume log, and the aggregation per target with the
 * metrics of metrics.c and the cascade frontier of frontier.c.
 *
 * The results file's format is a contract with the other readers
 * (`sluice calibrate`, `sluice train-router`): docs/eval.md describes it;
 * change it only by adding fields.
 */
#include "eval/run.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eval/csv.h"

/* ==== small helpers ======================================================= */

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

static char *dups(const char *s)
{
    return s ? dupn(s, strlen(s)) : NULL;
}

static void copy_name(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s ? s : "");
}

/* Reads a whole file (at most SL_EVAL_MAX_DATA_BYTES). *exists is false
 * (and NULL returned without error) when it does not exist and missing_ok. */
static char *read_file(const char *path, size_t *len, bool missing_ok, bool *exists,
                       struct sl_err *err)
{
    FILE *f = fopen(path, "rb");
    if (exists) *exists = f != NULL;
    if (!f) {
        if (!missing_ok) sl_err_set(err, SL_EIO, "cannot open '%s'", path);
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0 ||
        (uint64_t)st.st_size > SL_EVAL_MAX_DATA_BYTES) {
        fclose(f);
        sl_err_set(err, SL_ERANGE, "'%s': larger than %zu bytes (or not a regular file)", path,
                   SL_EVAL_MAX_DATA_BYTES);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        sl_err_set(err, SL_ENOMEM, "out of memory reading '%s' (%zu bytes)", path, n);
        return NULL;
    }
    size_t got = fread(buf, 1, n, f);
    bool bad = ferror(f) != 0;
    fclose(f);
    if (bad || got != n) {
        free(buf);
        sl_err_set(err, SL_EIO, "read error on '%s'", path);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* ==== canonical JSON ========================================================= */

/* A copy of v where every real with an integral value is an integer, so 5
 * and 5.0 compare equal as text. NULL on allocation failure. */
static json_t *canon_value(json_t *v)
{
    if (json_is_real(v)) {
        double x = json_real_value(v);
        if (x == floor(x) && fabs(x) < 9e15) return json_integer((json_int_t)x);
        return json_real(x);
    }
    if (json_is_object(v)) {
        json_t *o = json_object();
        const char *k;
        json_t *e;
        if (!o) return NULL;
        json_object_foreach(v, k, e)
        {
            json_t *c = canon_value(e);
            if (!c || json_object_set_new(o, k, c)) {
                json_decref(o);
                return NULL;
            }
        }
        return o;
    }
    if (json_is_array(v)) {
        json_t *a = json_array();
        size_t i;
        json_t *e;
        if (!a) return NULL;
        json_array_foreach(v, i, e)
        {
            json_t *c = canon_value(e);
            if (!c || json_array_append_new(a, c)) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    return json_incref(v);
}

#define CANON_FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15))

/* Canonical text of v: compact, sorted keys, whole reals as integers. */
static char *canon_dump(json_t *v)
{
    json_t *c = canon_value(v);
    if (!c) return NULL;
    char *s = json_dumps(c, CANON_FLAGS);
    json_decref(c);
    return s;
}

/* Text of a scalar metadata or label value: strings as they are, the rest
 * as JSON. */
static char *scalar_text(json_t *v)
{
    if (json_is_string(v)) return dupn(json_string_value(v), json_string_length(v));
    return json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

/* A parsed object as key -> canonical value text (metrics.h). */
struct kvset {
    struct sl_field_kv *kv; /* (n) keys and values owned through the casts in kvset_free */
    char **str;       /* (2n) */
    size_t n;
};

static void kvset_free(struct kvset *s)
{
    for (size_t i = 0; i < 2 * s->n; i++)
        free(s->str[i]);
    free(s->str);
    free(s->kv);
    memset(s, 0, sizeof *s);
}

/* From canonical object text; text NULL or not an object gives the empty
 * map. Returns 0 or SL_ENOMEM. */
static int kvset_from_text(struct kvset *s, const char *text)
{
    memset(s, 0, sizeof *s);
    if (!text) return 0;
    json_t *o = json_loads(text, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return 0;
    }
    size_t n = json_object_size(o);
    s->kv = calloc(n ? n : 1, sizeof *s->kv);
    s->str = calloc(2 * n + 1, sizeof *s->str);
    if (!s->kv || !s->str) goto oom;
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        char *ks = dups(k), *vs = canon_dump(v);
        s->str[2 * s->n] = ks;
        s->str[2 * s->n + 1] = vs;
        s->n++;
        if (!ks || !vs) goto oom;
        s->kv[s->n - 1] = (struct sl_field_kv){ks, vs};
    }
    json_decref(o);
    return 0;
oom:
    json_decref(o);
    kvset_free(s);
    return SL_ENOMEM;
}

/* ==== examples ================================================================= */

/* Frees the members of e (not e itself). */
static void example_free(struct sl_eval_example *e)
{
    free(e->id);
    free(e->input);
    free(e->label);
    free(e->expected);
    free(e->meta);
    for (size_t k = 0; k < 2 * e->n_kv; k++)
        free(e->kv_str[k]);
    free(e->kv_str);
    free(e->kv);
    memset(e, 0, sizeof *e);
}

void sl_eval_data_free(struct sl_eval_data *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->n; i++)
        example_free(&d->v[i]);
    free(d->v);
    memset(d, 0, sizeof *d);
}

struct fields {
    const char *input, *label, *expected, *id;
};

static struct fields fields_of(const struct sl_eval_fields *f)
{
    struct fields r = {"input", "label", "expected", "id"};
    if (f && f->input) r.input = f->input;
    if (f && f->label) r.label = f->label;
    if (f && f->expected) r.expected = f->expected;
    if (f && f->id) r.id = f->id;
    return r;
}

struct data_b {
    struct sl_eval_data *d;
    size_t cap;
};

static int data_push(struct data_b *b, struct sl_eval_example *e)
{
    if (b->d->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        struct sl_eval_example *nv = realloc(b->d->v, cap * sizeof *nv);
        if (!nv) return SL_ENOMEM;
        b->d->v = nv;
        b->cap = cap;
    }
    b->d->v[b->d->n++] = *e;
    memset(e, 0, sizeof *e);
    return 0;
}

/* Sets e->meta (canonical JSON of meta, which is an object) and e->kv (its
 * members as text, nulls left out). Takes no reference. */
static int example_set_meta(struct sl_eval_example *e, json_t *meta)
{
    e->meta = canon_dump(meta);
    if (!e->meta) return SL_ENOMEM;
    size_t n = json_object_size(meta);
    if (n == 0) return 0;
    e->kv = calloc(n, sizeof *e->kv);
    e->kv_str = calloc(2 * n, sizeof *e->kv_str);
    if (!e->kv || !e->kv_str) return SL_ENOMEM;
    const char *k;
    json_t *v;
    json_object_foreach(meta, k, v)
    {
        if (json_is_null(v)) continue;
        char *ks = dups(k), *vs = scalar_text(v);
        e->kv_str[2 * e->n_kv] = ks;
        e->kv_str[2 * e->n_kv + 1] = vs;
        e->n_kv++;
        if (!ks || !vs) return SL_ENOMEM;
        e->kv[e->n_kv - 1] = (struct sl_route_meta){ks, vs};
    }
    return 0;
}

/* The expected object of an extract example: an object, or a string that
 * holds one (CSV cells, or JSONL written that way). */
static int set_expected(struct sl_eval_example *e, json_t *v, const char *where, size_t line,
                        const char *field, struct sl_err *err)
{
    json_t *parsed = NULL;
    if (json_is_string(v)) {
        json_error_t je;
        parsed = json_loadb(json_string_value(v), json_string_length(v), 0, &je);
        if (!parsed)
            return sl_err_set(err, SL_EFORMAT, "%s %zu: field '%s' is not JSON: %s", where, line,
                              field, je.text);
        v = parsed;
    }
    if (!json_is_object(v)) {
        json_decref(parsed);
        return sl_err_set(err, SL_EFORMAT, "%s %zu: field '%s' must be a JSON object", where, line,
                          field);
    }
    e->expected = canon_dump(v);
    json_decref(parsed);
    return e->expected ? 0 : sl_err_set(err, SL_ENOMEM, "out of memory");
}

static int parse_jsonl(struct data_b *b, const char *buf, size_t len, enum sl_route_req_kind kind,
                       const struct fields *fl, struct sl_err *err)
{
    const char *p = buf, *end = buf + len;
    size_t line = 0;
    int rc = 0;
    while (p < end && rc == 0) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *e = nl ? nl : end;
        const char *s = p;
        p = nl ? nl + 1 : end;
        line++;
        while (s < e && (*s == ' ' || *s == '\t' || *s == '\r'))
            s++;
        if (s == e) continue; /* blank line */
        json_error_t je;
        json_t *o = json_loadb(s, (size_t)(e - s), 0, &je);
        if (!json_is_object(o)) {
            json_decref(o);
            return sl_err_set(err, SL_EFORMAT, "line %zu: not a JSON object%s%s", line,
                              o ? "" : ": ", o ? "" : je.text);
        }
        struct sl_eval_example ex = {.line = line};
        json_t *meta = json_object(), *in = json_object_get(o, fl->input);
        json_t *id = json_object_get(o, fl->id);
        if (!meta) {
            rc = sl_err_set(err, SL_ENOMEM, "out of memory");
            goto next; /* allocation failure */
        }
        if (!json_is_string(in)) {
            rc = sl_err_set(err, SL_EFORMAT, "line %zu: no '%s' field (a string)", line, fl->input);
            goto next; /* bad row */
        }
        ex.input = dupn(json_string_value(in), json_string_length(in));
        if (id && !json_is_null(id)) {
            if (!json_is_string(id) && !json_is_integer(id)) {
                rc =
                    sl_err_set(err, SL_EFORMAT,
                               "line %zu: field '%s' must be a string or an integer", line, fl->id);
                goto next; /* bad row */
            }
            ex.id = scalar_text(id);
        }
        if (kind == SL_RREQ_CLASSIFY) {
            json_t *lb = json_object_get(o, fl->label);
            if (!json_is_string(lb) && !json_is_integer(lb) && !json_is_boolean(lb)) {
                rc = sl_err_set(err, SL_EFORMAT, "line %zu: no '%s' field (the expected label)",
                                line, fl->label);
                goto next; /* bad row */
            }
            ex.label = scalar_text(lb);
        } else {
            json_t *xp = json_object_get(o, fl->expected);
            if (!xp) {
                rc = sl_err_set(err, SL_EFORMAT, "line %zu: no '%s' field (the expected object)",
                                line, fl->expected);
                goto next; /* bad row */
            }
            if ((rc = set_expected(&ex, xp, "line", line, fl->expected, err))) goto next;
        }
        /* metadata: the members of "meta", then every other field */
        const char *k;
        json_t *v;
        json_t *m = json_object_get(o, "meta");
        if (json_is_object(m)) json_object_update(meta, m);
        json_object_foreach(o, k, v)
        {
            if (!strcmp(k, fl->input) || !strcmp(k, fl->id) ||
                (json_is_object(m) && !strcmp(k, "meta")) ||
                (kind == SL_RREQ_CLASSIFY && !strcmp(k, fl->label)) ||
                (kind == SL_RREQ_EXTRACT && !strcmp(k, fl->expected)))
                continue;
            json_object_set(meta, k, v);
        }
        if (!ex.input || (ex.id == NULL && id && !json_is_null(id)) ||
            (kind == SL_RREQ_CLASSIFY && !ex.label) || example_set_meta(&ex, meta) ||
            data_push(b, &ex))
            rc = sl_err_set(err, SL_ENOMEM, "out of memory");
    next:
        example_free(&ex);
        json_decref(meta);
        json_decref(o);
    }
    return rc;
}

static char *csv_copy(const struct sl_csv_field *f)
{
    size_t n = sl_csv_field_len(f);
    char *s = malloc(n + 1);
    if (s) sl_csv_field_copy(f, s, n + 1);
    return s;
}

static int parse_csv(struct data_b *b, const char *buf, size_t len, enum sl_route_req_kind kind,
                     const struct fields *fl, struct sl_err *err)
{
    enum { MAXF = 256 };
    struct sl_csv_field hdr[MAXF], f[MAXF];
    char *names[MAXF] = {0};
    size_t pos = 0, nh = 0, nf, rec = 1;
    int ci = -1, cl = -1, cx = -1, cid = -1, rc;
    rc = sl_csv_next(buf, len, &pos, hdr, MAXF, &nh, err);
    if (rc <= 0)
        return rc < 0 ? rc : sl_err_set(err, SL_EFORMAT, "empty CSV file (want a header row)");
    for (size_t i = 0; i < nh; i++) {
        if (!(names[i] = csv_copy(&hdr[i]))) {
            rc = sl_err_set(err, SL_ENOMEM, "out of memory");
            goto out; /* allocation failure */
        }
        if (!strcmp(names[i], fl->input))
            ci = (int)i;
        else if (!strcmp(names[i], fl->id))
            cid = (int)i;
        else if (kind == SL_RREQ_CLASSIFY && !strcmp(names[i], fl->label))
            cl = (int)i;
        else if (kind == SL_RREQ_EXTRACT && !strcmp(names[i], fl->expected))
            cx = (int)i;
    }
    if (ci < 0 || (kind == SL_RREQ_CLASSIFY && cl < 0) || (kind == SL_RREQ_EXTRACT && cx < 0)) {
        rc = sl_err_set(err, SL_EFORMAT, "CSV header has no column '%s'",
                        ci < 0                     ? fl->input
                        : kind == SL_RREQ_CLASSIFY ? fl->label
                                                   : fl->expected);
        goto out; /* bad header */
    }
    while ((rc = sl_csv_next(buf, len, &pos, f, MAXF, &nf, err)) == 1) {
        rec++;
        if (nf != nh) {
            rc = sl_err_set(err, SL_EFORMAT, "record %zu has %zu fields, the header %zu", rec, nf,
                            nh);
            goto out; /* bad row */
        }
        struct sl_eval_example ex = {.line = rec};
        json_t *meta = json_object();
        rc = 0;
        if (!meta) rc = SL_ENOMEM;
        for (size_t i = 0; i < nf && rc == 0; i++) {
            char *v = csv_copy(&f[i]);
            if (!v) {
                rc = SL_ENOMEM;
            } else if ((int)i == ci) {
                ex.input = v;
            } else if ((int)i == cid) {
                if (*v)
                    ex.id = v;
                else
                    free(v);
            } else if ((int)i == cl) {
                ex.label = v;
            } else if ((int)i == cx) {
                json_t *s = json_string(v);
                free(v);
                rc = s ? set_expected(&ex, s, "record", rec, fl->expected, err) : SL_ENOMEM;
                json_decref(s);
            } else {
                if (json_object_set_new(meta, names[i], json_string(v))) rc = SL_ENOMEM;
                free(v);
            }
        }
        if (rc == 0 && kind == SL_RREQ_CLASSIFY && !*ex.label)
            rc = sl_err_set(err, SL_EFORMAT, "record %zu: empty '%s' (the expected label)", rec,
                            fl->label);
        if (rc == 0 && (example_set_meta(&ex, meta) || data_push(b, &ex))) rc = SL_ENOMEM;
        if (rc == SL_ENOMEM) sl_err_set(err, SL_ENOMEM, "out of memory");
        example_free(&ex);
        json_decref(meta);
        if (rc) goto out; /* bad row or allocation failure */
    }
out:
    for (size_t i = 0; i < nh; i++)
        free(names[i]);
    return rc;
}

struct id_ix {
    const char *id;
    size_t i;
};

static int cmp_id(const void *a, const void *b)
{
    const struct id_ix *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

/* Gives rows without an id their row number, then checks ids are unique. */
static int finish_ids(struct sl_eval_data *d, bool csv, struct sl_err *err)
{
    for (size_t i = 0; i < d->n; i++) {
        if (d->v[i].id) continue;
        char num[32];
        snprintf(num, sizeof num, "%zu", i + 1);
        if (!(d->v[i].id = dups(num))) return sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    if (d->n < 2) return 0;
    struct id_ix *ix = malloc(d->n * sizeof *ix);
    if (!ix) return sl_err_set(err, SL_ENOMEM, "out of memory");
    for (size_t i = 0; i < d->n; i++)
        ix[i] = (struct id_ix){d->v[i].id, i};
    qsort(ix, d->n, sizeof *ix, cmp_id);
    int rc = 0;
    for (size_t i = 1; i < d->n && !rc; i++)
        if (!strcmp(ix[i - 1].id, ix[i].id))
            rc = sl_err_set(err, SL_EINVAL,
                            "id '%s' appears twice (%s %zu and %zu): ids must be unique", ix[i].id,
                            csv ? "records" : "lines", d->v[ix[i - 1].i].line, d->v[ix[i].i].line);
    free(ix);
    return rc;
}

int sl_eval_data_parse(struct sl_eval_data *out, const char *buf, size_t len, bool csv,
                       enum sl_route_req_kind kind, const struct sl_eval_fields *fields,
                       struct sl_err *err)
{
    memset(out, 0, sizeof *out);
    if (kind != SL_RREQ_CLASSIFY && kind != SL_RREQ_EXTRACT)
        return sl_err_set(err, SL_EINVAL, "%s: evaluation needs a classify or extract task",
                          __func__);
    struct fields fl = fields_of(fields);
    struct data_b b = {out, 0};
    if (len >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3)) { /* a UTF-8 byte order mark */
        buf += 3;
        len -= 3;
    }
    int rc =
        csv ? parse_csv(&b, buf, len, kind, &fl, err) : parse_jsonl(&b, buf, len, kind, &fl, err);
    if (!rc && out->n == 0) rc = sl_err_set(err, SL_EINVAL, "no examples");
    if (!rc) rc = finish_ids(out, csv, err);
    if (rc) sl_eval_data_free(out);
    return rc;
}

int sl_eval_data_load(struct sl_eval_data *out, const char *path, enum sl_route_req_kind kind,
                      const struct sl_eval_fields *fields, struct sl_err *err)
{
    size_t len = 0;
    memset(out, 0, sizeof *out);
    char *buf = read_file(path, &len, false, NULL, err);
    if (!buf) return err ? err->code : SL_EIO;
    size_t pl = strlen(path);
    bool csv = pl >= 4 && !strcasecmp(path + pl - 4, ".csv");
    int rc = sl_eval_data_parse(out, buf, len, csv, kind, fields, err);
    free(buf);
    if (rc && err) {
        char msg[SL_ERR_MSG_LEN];
        snprintf(msg, sizeof msg, "%s", err->msg);
        sl_err_set(err, rc, "%s: %s", path, msg);
    }
    return rc;
}

/* ==== targets and records ======================================================= */

const char *sl_eval_target_name(const struct sl_eval_route *rt, size_t t)
{
    return t < rt->n_tiers ? rt->tiers[t] : SL_EVAL_ROUTE_TARGET;
}

static int32_t label_index(const struct sl_eval_route *rt, const char *s)
{
    if (!s) return -1;
    for (size_t k = 0; k < rt->n_labels; k++)
        if (!strcmp(rt->labels[k], s)) return (int32_t)k;
    return -1;
}

/* The route description and the examples' truths agree with each other. */
static int check_route(const struct sl_eval_route *rt, const struct sl_eval_data *d, size_t n,
                       struct sl_err *err)
{
    if (rt->kind != SL_RREQ_CLASSIFY && rt->kind != SL_RREQ_EXTRACT)
        return sl_err_set(err, SL_EINVAL, "eval: the task must be classify or extract");
    if (!rt->route || !rt->task)
        return sl_err_set(err, SL_EINVAL, "eval: a route name and a task name are required");
    for (size_t t = 0; t < rt->n_tiers; t++) {
        if (!rt->tiers[t] || !strcmp(rt->tiers[t], SL_EVAL_ROUTE_TARGET))
            return sl_err_set(err, SL_EINVAL, "eval: route '%s': a tier may not be called '%s'",
                              rt->route, SL_EVAL_ROUTE_TARGET);
        for (size_t u = 0; u < t; u++)
            if (!strcmp(rt->tiers[t], rt->tiers[u]))
                return sl_err_set(err, SL_EINVAL, "eval: route '%s' lists tier '%s' twice",
                                  rt->route, rt->tiers[t]);
    }
    if (rt->kind != SL_RREQ_CLASSIFY) return 0;
    if (rt->n_labels == 0)
        return sl_err_set(err, SL_EINVAL, "eval: task '%s' has no labels", rt->task);
    for (size_t i = 0; i < n; i++) {
        if (label_index(rt, d->v[i].label) >= 0) continue;
        char list[200] = "";
        size_t o = 0;
        for (size_t k = 0; k < rt->n_labels && o + 1 < sizeof list; k++) {
            int w = snprintf(list + o, sizeof list - o, "%s%s", k ? ", " : "", rt->labels[k]);
            o += w > 0 ? (size_t)w : 0;
        }
        return sl_err_set(
            err, SL_EINVAL,
            "example '%s' (line %zu): label '%s' is not one of task '%s''s labels (%s)", d->v[i].id,
            d->v[i].line, d->v[i].label, rt->task, list);
    }
    return 0;
}

static void record_clear(struct sl_eval_record *r)
{
    free(r->pred_text);
    free(r->pred_json);
    free(r->error);
    memset(r, 0, sizeof *r);
    r->pred = -1;
    r->confidence = -1;
    r->tokens_in = r->tokens_out = -1;
}

static bool record_correct(const struct sl_eval_route *rt, const struct sl_eval_example *ex,
                           const struct sl_eval_record *r)
{
    if (r->failed) return false;
    if (rt->kind == SL_RREQ_CLASSIFY)
        return r->pred >= 0 && (size_t)r->pred < rt->n_labels &&
               !strcmp(rt->labels[r->pred], ex->label);
    return r->pred_json && !strcmp(r->pred_json, ex->expected);
}

/* The record of one router answer. 0 or SL_ENOMEM. */
static int record_from_result(struct sl_eval_record *rec, const struct sl_eval_route *rt,
                              const struct sl_route_result *res)
{
    record_clear(rec);
    rec->done = true;
    rec->status = res->status;
    rec->failed = res->status != 200;
    if (isfinite(res->confidence) && res->confidence >= 0) rec->confidence = res->confidence;
    rec->escalated = res->escalated;
    rec->latency_ms = isfinite(res->latency_ms) ? res->latency_ms : 0;
    rec->cost = isfinite(res->cost) ? res->cost : 0;
    rec->tokens_in = res->tokens_in >= 0 ? res->tokens_in : -1;
    rec->tokens_out = res->tokens_out >= 0 ? res->tokens_out : -1;
    copy_name(rec->decision, sizeof rec->decision,
              res->decision ? res->decision
              : rec->failed ? "failed"
                            : "");
    copy_name(rec->backend, sizeof rec->backend, res->backend);
    if (rec->failed) {
        char st[48];
        snprintf(st, sizeof st, "status %d", res->status);
        rec->error = dups(res->error && *res->error ? res->error : st);
        return rec->error ? 0 : SL_ENOMEM;
    }
    const char *content = res->content ? res->content : "";
    if (rt->kind == SL_RREQ_CLASSIFY) {
        int32_t k = res->label;
        if (k < 0 || (size_t)k >= rt->n_labels) k = label_index(rt, content);
        rec->pred = k;
        if (k < 0 && !(rec->pred_text = dups(content))) return SL_ENOMEM;
        return 0;
    }
    json_t *o = json_loads(content, 0, NULL);
    if (json_is_object(o)) {
        rec->pred_json = canon_dump(o);
        json_decref(o);
        return rec->pred_json ? 0 : SL_ENOMEM;
    }
    json_decref(o);
    rec->pred_text = dups(content);
    return rec->pred_text ? 0 : SL_ENOMEM;
}

static json_t *num_or_null(double v, bool present)
{
    return present && isfinite(v) ? json_real(v) : json_null();
}

static json_t *int_or_null(int64_t v)
{
    return v >= 0 ? json_integer((json_int_t)v) : json_null();
}

/* One line of the results file (docs/eval.md), without the newline.
 * res adds the probabilities and the stages when given. NULL on OOM. */
static char *record_line(const struct sl_eval_example *ex, const struct sl_eval_route *rt, size_t t,
                         const struct sl_eval_record *rec, const struct sl_route_result *res)
{
    json_t *o = json_object();
    if (!o) return NULL;
    bool cls = rt->kind == SL_RREQ_CLASSIFY;
    json_t *truth = cls ? json_string(ex->label) : json_loads(ex->expected, 0, NULL);
    json_t *pred = cls ? (rec->pred >= 0 ? json_string(rt->labels[rec->pred]) : json_null())
                       : (rec->pred_json ? json_loads(rec->pred_json, 0, NULL) : json_null());
    int bad = 0;
    bad |= json_object_set_new(o, "id", json_string(ex->id));
    bad |= json_object_set_new(o, "target", json_string(sl_eval_target_name(rt, t)));
    bad |= json_object_set_new(o, "task", json_string(rt->task));
    bad |= json_object_set_new(o, "truth", truth);
    bad |= json_object_set_new(o, "pred", pred);
    if (rec->pred_text) bad |= json_object_set_new(o, "raw", json_string(rec->pred_text));
    bad |= json_object_set_new(o, "confidence", num_or_null(rec->confidence, rec->confidence >= 0));
    bad |= json_object_set_new(o, "correct", json_boolean(record_correct(rt, ex, rec)));
    bad |= json_object_set_new(o, "latency_ms", json_real(rec->latency_ms));
    bad |= json_object_set_new(o, "cost", json_real(rec->cost));
    bad |= json_object_set_new(o, "tokens_in", int_or_null(rec->tokens_in));
    bad |= json_object_set_new(o, "tokens_out", int_or_null(rec->tokens_out));
    bad |= json_object_set_new(o, "escalated", json_boolean(rec->escalated));
    bad |= json_object_set_new(o, "decision", json_string(rec->decision));
    bad |= json_object_set_new(o, "backend", json_string(rec->backend));
    bad |= json_object_set_new(o, "status", json_integer(rec->status));
    bad |= json_object_set_new(o, "input_len", json_integer((json_int_t)strlen(ex->input)));
    bad |= json_object_set_new(o, "meta", json_loads(ex->meta, 0, NULL));
    bad |= json_object_set_new(o, "error", rec->error ? json_string(rec->error) : json_null());
    if (res && cls && res->probs && res->n_probs == rt->n_labels) {
        json_t *a = json_array();
        for (size_t k = 0; a && k < res->n_probs; k++)
            bad |= json_array_append_new(a, json_real(res->probs[k]));
        bad |= json_object_set_new(o, "probs", a);
    }
    if (res && res->n_stages) {
        json_t *a = json_array();
        for (size_t k = 0; a && k < res->n_stages && k < SL_ROUTE_MAX_STAGES; k++) {
            const struct sl_route_stage *s = &res->stages[k];
            json_t *so = json_object();
            if (!so) {
                bad = 1;
                break;
            }
            bad |= json_object_set_new(so, "backend", json_string(s->backend));
            bad |= json_object_set_new(so, "called", json_boolean(s->called));
            bad |= json_object_set_new(so, "accepted", json_boolean(s->accepted));
            bad |=
                json_object_set_new(so, "status", json_string(sl_backend_status_name(s->status)));
            bad |= json_object_set_new(so, "confidence",
                                       num_or_null(s->confidence, s->confidence >= 0));
            bad |=
                json_object_set_new(so, "threshold", num_or_null(s->threshold, s->threshold >= 0));
            bad |= json_object_set_new(so, "latency_ms", json_real(s->latency_ms));
            bad |= json_object_set_new(so, "cost", json_real(s->cost));
            bad |= json_object_set_new(so, "note", json_string(s->note));
            bad |= json_array_append_new(a, so);
        }
        bad |= json_object_set_new(o, "stages", a);
    }
    char *line = bad ? NULL : json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(12));
    json_decref(o);
    return line;
}

/* A record read back from a results line. 0 or SL_ENOMEM. */
static int record_from_json(struct sl_eval_record *rec, const struct sl_eval_route *rt, json_t *o)
{
    record_clear(rec);
    rec->done = true;
    json_t *v = json_object_get(o, "status");
    rec->status = json_is_integer(v) ? (int)json_integer_value(v) : 200;
    v = json_object_get(o, "error");
    if (json_is_string(v) && !(rec->error = dups(json_string_value(v)))) return SL_ENOMEM;
    rec->failed = rec->error != NULL || rec->status != 200;
    json_t *pred = json_object_get(o, "pred"), *raw = json_object_get(o, "raw");
    if (rt->kind == SL_RREQ_CLASSIFY && json_is_string(pred)) {
        rec->pred = label_index(rt, json_string_value(pred));
        if (rec->pred < 0 && !(rec->pred_text = dups(json_string_value(pred)))) return SL_ENOMEM;
    } else if (rt->kind == SL_RREQ_EXTRACT && json_is_object(pred)) {
        if (!(rec->pred_json = canon_dump(pred))) return SL_ENOMEM;
    }
    if (!rec->pred_text && json_is_string(raw) && !(rec->pred_text = dups(json_string_value(raw))))
        return SL_ENOMEM;
    v = json_object_get(o, "confidence");
    if (json_is_number(v) && json_number_value(v) >= 0) rec->confidence = json_number_value(v);
    rec->escalated = json_is_true(json_object_get(o, "escalated"));
    v = json_object_get(o, "latency_ms");
    rec->latency_ms = json_is_number(v) ? json_number_value(v) : 0;
    v = json_object_get(o, "cost");
    rec->cost = json_is_number(v) ? json_number_value(v) : 0;
    v = json_object_get(o, "tokens_in");
    rec->tokens_in = json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
    v = json_object_get(o, "tokens_out");
    rec->tokens_out = json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
    copy_name(rec->decision, sizeof rec->decision,
              json_string_value(json_object_get(o, "decision")));
    copy_name(rec->backend, sizeof rec->backend, json_string_value(json_object_get(o, "backend")));
    return 0;
}

/* ==== the resume log ============================================================= */

static const struct id_ix *find_id(const struct id_ix *ix, size_t n, const char *id)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(ix[mid].id, id);
        if (c == 0) return &ix[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* The pair a results line is about: *ix_out = example * T + target, or
 * SIZE_MAX when the example or target is not part of this run. -1 when the
 * line is not a result line. Returns the parsed object (caller decrefs). */
static json_t *line_pair(const char *s, size_t len, const struct id_ix *ix, size_t n,
                         const struct sl_eval_route *rt, size_t T, size_t *pair)
{
    json_t *o = json_loadb(s, len, 0, NULL);
    json_t *id = json_object_get(o, "id"), *tg = json_object_get(o, "target");
    *pair = SIZE_MAX;
    if (!json_is_string(id) || !json_is_string(tg)) {
        json_decref(o);
        return NULL;
    }
    const struct id_ix *hit = find_id(ix, n, json_string_value(id));
    for (size_t k = 0; hit && k < T; k++)
        if (!strcmp(sl_eval_target_name(rt, k), json_string_value(tg))) *pair = hit->i * T + k;
    return o;
}

/* Writes the kept lines of buf[0..len) to path through a temporary file
 * and a rename, so the log is never half rewritten. */
static int rewrite_log(const char *path, const char *buf, const size_t *keep_off, size_t n_keep,
                       struct sl_err *err)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return sl_err_set(err, SL_ERANGE, "eval: results path too long");
    FILE *f = fopen(tmp, "w");
    if (!f) return sl_err_set(err, SL_EIO, "eval: cannot write '%s'", tmp);
    for (size_t k = 0; k < n_keep; k++) {
        const char *s = buf + keep_off[k], *nl = strchr(s, '\n');
        fwrite(s, 1, (size_t)(nl - s) + 1, f);
    }
    bool bad = fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0;
    if (fclose(f) != 0 || bad || rename(tmp, path) != 0) {
        remove(tmp);
        return sl_err_set(err, SL_EIO, "eval: cannot rewrite the results file '%s'", path);
    }
    return 0;
}

/* Reads the finished pairs of path into run and leaves the file holding
 * each pair at most once: a half-written last line is cut off; with retry,
 * lines of failed pairs are dropped (they run again); an earlier line of a
 * pair that appears twice (an older file) is dropped, the later one wins.
 * A missing file is an empty log. */
static int resume_read(struct sl_eval_run *run, const struct sl_eval_data *d,
                       const struct sl_eval_route *rt, const char *path, bool retry,
                       struct sl_err *err)
{
    size_t len = 0, n = run->n_examples, T = run->n_targets;
    bool exists = false;
    char *buf = read_file(path, &len, true, &exists, err);
    if (!buf) return exists ? (err ? err->code : SL_EIO) : 0;
    struct id_ix *ix = malloc((n ? n : 1) * sizeof *ix);
    size_t *last = malloc((n * T > 0 ? n * T : 1) * sizeof *last); /* offset of a pair's line */
    size_t *keep = malloc((len / 2 + 1) * sizeof *keep), n_keep = 0;
    int rc = 0;
    if (!ix || !last || !keep) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory");
        goto out; /* allocation failure */
    }
    for (size_t i = 0; i < n; i++)
        ix[i] = (struct id_ix){d->v[i].id, i};
    qsort(ix, n, sizeof *ix, cmp_id);
    for (size_t i = 0; i < n * T; i++)
        last[i] = SIZE_MAX;
    const char *p = buf, *end = buf + len;
    size_t line = 0, good = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) break; /* a half-written last line: cut below */
        const char *s = p;
        line++;
        p = nl + 1;
        while (s < nl && (*s == ' ' || *s == '\t' || *s == '\r'))
            s++;
        good = (size_t)(p - buf);
        if (s == nl) continue; /* blank */
        size_t pair;
        json_t *o = line_pair(s, (size_t)(nl - s), ix, n, rt, T, &pair);
        if (!o) {
            rc = sl_err_set(err, SL_EFORMAT,
                            "'%s' line %zu is not a result of sluice eval (want a JSON object with "
                            "\"id\" and \"target\")",
                            path, line);
            goto out; /* corrupt log */
        }
        if (pair != SIZE_MAX) {
            if (record_from_json(&run->rec[pair], rt, o))
                rc = sl_err_set(err, SL_ENOMEM, "out of memory");
            last[pair] = (size_t)(s - buf);
        }
        json_decref(o);
        if (rc) goto out; /* allocation failure */
    }
    /* which lines stay: others' pairs, and each pair's last line unless retried */
    bool drop = false;
    for (p = buf; p < buf + good;) {
        const char *nl = memchr(p, '\n', (size_t)(buf + good - p)), *s = p;
        p = nl + 1;
        while (s < nl && (*s == ' ' || *s == '\t' || *s == '\r'))
            s++;
        if (s == nl) continue;
        size_t pair;
        json_t *o = line_pair(s, (size_t)(nl - s), ix, n, rt, T, &pair);
        json_decref(o);
        bool kept = pair == SIZE_MAX ||
                    (last[pair] == (size_t)(s - buf) && !(retry && run->rec[pair].failed));
        if (kept) keep[n_keep++] = (size_t)(s - buf);
        drop |= !kept;
    }
    if (drop) {
        rc = rewrite_log(path, buf, keep, n_keep, err);
    } else if (good < len && truncate(path, (off_t)good) != 0) {
        rc = sl_err_set(err, SL_EIO, "cannot cut the half-written last line of '%s'", path);
    }
out:
    free(ix);
    free(last);
    free(keep);
    free(buf);
    return rc;
}

/* ==== running ========================================================================= */

struct sl_eval_params sl_eval_default_params(void)
{
    return (struct sl_eval_params){.concurrency = 4, .tiers = true, .route = true};
}

void sl_eval_run_free(struct sl_eval_run *r)
{
    if (!r) return;
    for (size_t i = 0; r->rec && i < r->n_examples * r->n_targets; i++)
        record_clear(&r->rec[i]);
    free(r->rec);
    memset(r, 0, sizeof *r);
}

struct job {
    size_t ex, t;
};

struct runner {
    const struct sl_eval_data *d;
    const struct sl_eval_route *rt;
    const struct sl_eval_params *p;
    sl_eval_call_fn call;
    void *user;
    struct sl_eval_run *run;
    struct job *jobs;
    size_t n_jobs;
    atomic_size_t next;
    atomic_bool abort;
    pthread_mutex_t mu;
    FILE *f;
    size_t finished;
    int rc;
    struct sl_err err;
};

/* Records the first hard failure (e) and stops every worker. */
static void runner_fail(struct runner *r, const struct sl_err *e)
{
    pthread_mutex_lock(&r->mu);
    if (!r->rc) {
        r->rc = e->code ? e->code : SL_EIO;
        r->err = *e;
    }
    pthread_mutex_unlock(&r->mu);
    atomic_store(&r->abort, true);
}

static void *worker(void *arg)
{
    struct runner *r = arg;
    const struct sl_eval_route *rt = r->rt;
    size_t T = r->run->n_targets;
    for (;;) {
        if (atomic_load(&r->abort) || (r->p->stop && atomic_load(r->p->stop))) break;
        size_t j = atomic_fetch_add(&r->next, 1);
        if (j >= r->n_jobs) break;
        const struct sl_eval_example *ex = &r->d->v[r->jobs[j].ex];
        size_t t = r->jobs[j].t;
        char rid[160];
        snprintf(rid, sizeof rid, "eval-%.100s-%.40s", ex->id, sl_eval_target_name(rt, t));
        struct sl_route_req req = {
            .id = rid,
            .route = rt->route,
            .kind = rt->kind,
            .task = rt->task,
            .input = ex->input,
            .meta = ex->kv,
            .n_meta = ex->n_kv,
            .force_tier = t < rt->n_tiers ? rt->tiers[t] : NULL,
            .no_log = true,
        };
        struct sl_route_result res;
        struct sl_err e = {0};
        memset(&res, 0, sizeof res);
        int rc = r->call(r->user, &req, &res, &e);
        if (rc < 0) {
            sl_route_result_free(&res);
            struct sl_err fe;
            sl_err_set(&fe, rc, "eval: example '%s', target '%s': %s", ex->id,
                       sl_eval_target_name(rt, t), e.msg[0] ? e.msg : sl_strerror(rc));
            runner_fail(r, &fe);
            break;
        }
        struct sl_eval_record rec = {0};
        char *line = NULL;
        if (record_from_result(&rec, rt, &res) == 0) line = record_line(ex, rt, t, &rec, &res);
        sl_route_result_free(&res);
        if (!line) {
            record_clear(&rec);
            struct sl_err fe;
            sl_err_set(&fe, SL_ENOMEM, "eval: example '%s', target '%s': out of memory", ex->id,
                       sl_eval_target_name(rt, t));
            runner_fail(r, &fe);
            break;
        }
        pthread_mutex_lock(&r->mu);
        /* one write and a flush per line: a kill can only cut the last line */
        int ok = fprintf(r->f, "%s\n", line) > 0 && fflush(r->f) == 0;
        if (ok) {
            r->run->rec[r->jobs[j].ex * T + t] = rec;
            r->run->n_called++;
            r->finished++;
            if (r->p->progress) r->p->progress(r->p->progress_ctx, r->finished, r->n_jobs);
        }
        pthread_mutex_unlock(&r->mu);
        free(line);
        if (!ok) {
            record_clear(&rec);
            struct sl_err fe;
            sl_err_set(&fe, SL_EIO, "eval: write error on the results file '%s'",
                       r->p->results_path);
            runner_fail(r, &fe);
            break;
        }
    }
    return NULL;
}

int sl_eval_run(struct sl_eval_run *out, const struct sl_eval_data *d,
                const struct sl_eval_route *rt, sl_eval_call_fn call, void *user,
                const struct sl_eval_params *p, struct sl_err *err)
{
    memset(out, 0, sizeof *out);
    if (!p->results_path) return sl_err_set(err, SL_EINVAL, "eval: no results file");
    if (p->concurrency < 1 || p->concurrency > SL_EVAL_MAX_CONCURRENCY)
        return sl_err_set(err, SL_EINVAL, "eval: concurrency %d outside 1..%d", p->concurrency,
                          SL_EVAL_MAX_CONCURRENCY);
    size_t n = p->limit && p->limit < d->n ? p->limit : d->n, T = rt->n_tiers + 1;
    int rc = check_route(rt, d, n, err);
    if (rc) return rc;
    out->n_examples = n;
    out->n_targets = T;
    out->rec = calloc(n * T > 0 ? n * T : 1, sizeof *out->rec);
    if (!out->rec) return sl_err_set(err, SL_ENOMEM, "eval: out of memory for %zu examples", n);
    for (size_t i = 0; i < n * T; i++)
        record_clear(&out->rec[i]);
    if (p->resume && (rc = resume_read(out, d, rt, p->results_path, p->retry_errors, err)))
        return rc;
    for (size_t i = 0; i < n * T; i++) {
        if (out->rec[i].done && out->rec[i].failed && p->retry_errors) record_clear(&out->rec[i]);
        out->n_resumed += out->rec[i].done;
    }

    struct runner r = {.d = d, .rt = rt, .p = p, .call = call, .user = user, .run = out};
    r.jobs = malloc((n * T > 0 ? n * T : 1) * sizeof *r.jobs);
    if (!r.jobs) return sl_err_set(err, SL_ENOMEM, "eval: out of memory");
    for (size_t i = 0; i < n; i++)
        for (size_t t = 0; t < T; t++) {
            bool want = t < rt->n_tiers ? p->tiers : p->route;
            if (want && !out->rec[i * T + t].done) r.jobs[r.n_jobs++] = (struct job){i, t};
        }
    r.f = fopen(p->results_path, p->resume ? "a" : "w");
    if (!r.f) {
        free(r.jobs);
        return sl_err_set(err, SL_EIO, "eval: cannot write the results file '%s'", p->results_path);
    }
    atomic_init(&r.next, 0);
    atomic_init(&r.abort, false);
    pthread_mutex_init(&r.mu, NULL);
    if (p->progress) p->progress(p->progress_ctx, 0, r.n_jobs);
    size_t nw = (size_t)p->concurrency < r.n_jobs ? (size_t)p->concurrency : r.n_jobs;
    pthread_t th[SL_EVAL_MAX_CONCURRENCY];
    size_t started = 0;
    for (; started < nw; started++)
        if (pthread_create(&th[started], NULL, worker, &r) != 0) break;
    if (started == 0 && nw > 0) worker(&r); /* no thread could start: run here */
    for (size_t k = 0; k < started; k++)
        pthread_join(th[k], NULL);
    pthread_mutex_destroy(&r.mu);
    if (fclose(r.f) != 0 && !r.rc)
        r.rc = sl_err_set(&r.err, SL_EIO, "eval: write error on the results file '%s'",
                          p->results_path);
    for (size_t k = 0; k < r.n_jobs; k++)
        out->n_pending += !out->rec[r.jobs[k].ex * T + r.jobs[k].t].done;
    out->stopped = p->stop && atomic_load(p->stop) && out->n_pending > 0;
    free(r.jobs);
    if (r.rc) {
        if (err) *err = r.err;
        return r.rc;
    }
    return 0;
}

/* ==== the run as results ================================================================ */

int sl_eval_results(struct sl_results *out, const struct sl_eval_data *d,
                    const struct sl_eval_route *rt, const struct sl_eval_run *run,
                    struct sl_err *err)
{
    memset(out, 0, sizeof *out);
    size_t N = run->n_examples, T = run->n_targets, n_done = 0;
    if (T != rt->n_tiers + 1 || N > d->n)
        return sl_err_set(err, SL_EINVAL, "%s: the run does not match the route and data",
                          __func__);
    /* the same lines the results file holds, in the data's order, read back
     * by the one results reader */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    bool oom = false;
    for (size_t i = 0; i < N && !oom; i++)
        for (size_t t = 0; t < T && !oom; t++) {
            const struct sl_eval_record *rec = &run->rec[i * T + t];
            if (!rec->done) continue;
            char *line = record_line(&d->v[i], rt, t, rec, NULL);
            oom = !line || fprintf(f, "%s\n", line) < 0;
            free(line);
            n_done++;
        }
    if (fclose(f) != 0) oom = true;
    int rc;
    if (oom)
        rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    else if (n_done == 0)
        rc = sl_err_set(err, SL_EINVAL, "%s: no finished request", __func__);
    else
        rc = sl_results_load_buf(out, buf, len, "eval run", err);
    free(buf);
    return rc;
}

/* ==== aggregation ===================================================================== */

void sl_eval_report_free(struct sl_eval_report *r)
{
    if (!r) return;
    for (size_t t = 0; r->targets && t < r->n_targets; t++) {
        sl_class_report_free(&r->targets[t].cls);
        sl_extract_report_free(&r->targets[t].ext);
        free(r->targets[t].latency_ms);
    }
    free(r->targets);
    free(r->class_names);
    sl_frontier_free(&r->frontier);
    memset(r, 0, sizeof *r);
}

/* Scratch arrays of one target's aggregation, (n) each. */
struct agg {
    double *cost, *conf;
    bool *esc, *ok_conf;
    int *truth, *pred;
    struct sl_kv_map *exp, *got;
    struct kvset *got_kv;
    size_t n_got_kv;
};

static void agg_free(struct agg *a)
{
    for (size_t i = 0; i < a->n_got_kv; i++)
        kvset_free(&a->got_kv[i]);
    free(a->cost);
    free(a->conf);
    free(a->esc);
    free(a->ok_conf);
    free(a->truth);
    free(a->pred);
    free(a->exp);
    free(a->got);
    free(a->got_kv);
}

static void count_decision(struct sl_eval_target_report *tr, const char *d)
{
    for (size_t k = 0; k < tr->n_decisions; k++)
        if (!strcmp(tr->decisions[k].decision, d)) {
            tr->decisions[k].count++;
            return;
        }
    if (tr->n_decisions == SL_EVAL_MAX_DECISIONS) return;
    copy_name(tr->decisions[tr->n_decisions].decision, sizeof tr->decisions[0].decision, d);
    tr->decisions[tr->n_decisions++].count = 1;
}

static int target_compute(struct sl_eval_target_report *tr, const struct sl_eval_data *d,
                          const struct sl_eval_route *rt, const struct sl_eval_run *run, size_t t,
                          const struct kvset *exp_kv, struct sl_err *err)
{
    size_t N = run->n_examples, T = run->n_targets, n = 0, nc = 0, n_ok = 0, n_tin = 0, n_tout = 0;
    double tin = 0, tout = 0;
    bool cls = rt->kind == SL_RREQ_CLASSIFY, any_none = false;
    struct agg a = {0};
    int rc = 0;
    tr->name = sl_eval_target_name(rt, t);
    for (size_t i = 0; i < N; i++)
        n += run->rec[i * T + t].done;
    tr->quality = tr->cost_per_1k = tr->escalation_rate = NAN;
    tr->tokens_in_mean = tr->tokens_out_mean = NAN;
    tr->lat = (struct sl_latency_summary){0, NAN, NAN, NAN, NAN, NAN, NAN};
    if (n == 0) return 0;
    size_t m = n;
    tr->latency_ms = malloc(m * sizeof *tr->latency_ms);
    a.cost = malloc(m * sizeof *a.cost);
    a.conf = malloc(m * sizeof *a.conf);
    a.esc = malloc(m * sizeof *a.esc);
    a.ok_conf = malloc(m * sizeof *a.ok_conf);
    a.truth = malloc(m * sizeof *a.truth);
    a.pred = malloc(m * sizeof *a.pred);
    a.exp = malloc(m * sizeof *a.exp);
    a.got = malloc(m * sizeof *a.got);
    a.got_kv = calloc(m, sizeof *a.got_kv);
    if (!tr->latency_ms || !a.cost || !a.conf || !a.esc || !a.ok_conf || !a.truth || !a.pred ||
        !a.exp || !a.got || !a.got_kv) {
        rc = sl_err_set(err, SL_ENOMEM, "eval: out of memory aggregating %zu results", n);
        goto out; /* allocation failure */
    }
    size_t k = 0;
    for (size_t i = 0; i < N; i++) {
        const struct sl_eval_record *rec = &run->rec[i * T + t];
        if (!rec->done) continue;
        const struct sl_eval_example *ex = &d->v[i];
        bool ok = record_correct(rt, ex, rec);
        n_ok += ok;
        tr->n_failed += rec->failed;
        tr->latency_ms[k] = rec->latency_ms;
        a.cost[k] = rec->cost;
        a.esc[k] = rec->escalated;
        if (!rec->failed && rec->confidence >= 0 && rec->confidence <= 1) {
            a.conf[nc] = rec->confidence;
            a.ok_conf[nc++] = ok;
        }
        if (rec->tokens_in >= 0) {
            tin += (double)rec->tokens_in;
            n_tin++;
        }
        if (rec->tokens_out >= 0) {
            tout += (double)rec->tokens_out;
            n_tout++;
        }
        count_decision(tr, rec->decision[0] ? rec->decision : "-");
        if (cls) {
            a.truth[k] = label_index(rt, ex->label);
            bool none = rec->failed || rec->pred < 0 || (size_t)rec->pred >= rt->n_labels;
            a.pred[k] = none ? (int)rt->n_labels : rec->pred;
            any_none |= none;
        } else {
            a.exp[k] = (struct sl_kv_map){exp_kv[i].kv, exp_kv[i].n};
            if (kvset_from_text(&a.got_kv[k], rec->failed ? NULL : rec->pred_json)) {
                rc = sl_err_set(err, SL_ENOMEM, "eval: out of memory");
                goto out; /* allocation failure */
            }
            a.n_got_kv = k + 1;
            a.got[k] = (struct sl_kv_map){a.got_kv[k].kv, a.got_kv[k].n};
        }
        k++;
    }
    tr->n = n;
    tr->n_conf = nc;
    tr->quality = (double)n_ok / (double)n;
    tr->cost_per_1k = sl_cost_per_1k(a.cost, n);
    tr->escalation_rate = sl_escalation_rate(a.esc, n);
    if (n_tin) tr->tokens_in_mean = tin / (double)n_tin;
    if (n_tout) tr->tokens_out_mean = tout / (double)n_tout;
    if ((rc = sl_latency_summarize(&tr->lat, tr->latency_ms, n, err))) goto out;
    if (nc && (rc = sl_reliability_compute(&tr->rel, a.conf, a.ok_conf, nc, err))) goto out;
    if (cls)
        rc = sl_class_report_compute(&tr->cls, a.truth, a.pred, n,
                                     (int)rt->n_labels + (any_none ? 1 : 0), err);
    else
        rc = sl_extract_report_compute(&tr->ext, a.exp, a.got, n, err);
out:
    agg_free(&a);
    return rc;
}

/* The cascade of the first and last tier over the examples both answered. */
static int frontier_compute(struct sl_eval_report *r, const struct sl_eval_data *d,
                            const struct sl_eval_route *rt, const struct sl_eval_run *run,
                            struct sl_err *err)
{
    size_t N = run->n_examples, T = run->n_targets, s = 0, l = rt->n_tiers - 1, n = 0;
    r->threshold = r->at_coverage = r->at_quality = r->at_cost_per_1k = NAN;
    if (rt->n_tiers < 2) return 0;
    double *conf = malloc((N ? N : 1) * sizeof *conf), *cs = malloc((N ? N : 1) * sizeof *cs);
    double *cl = malloc((N ? N : 1) * sizeof *cl);
    uint8_t *so = malloc(N ? N : 1), *lo = malloc(N ? N : 1);
    int rc = 0;
    if (!conf || !cs || !cl || !so || !lo) {
        rc = sl_err_set(err, SL_ENOMEM, "eval: out of memory");
        goto out; /* allocation failure */
    }
    for (size_t i = 0; i < N; i++) {
        const struct sl_eval_record *a = &run->rec[i * T + s], *b = &run->rec[i * T + l];
        if (!a->done || !b->done) continue;
        /* no confidence (or a failed call) is never accepted by a threshold > 0 */
        conf[n] = a->failed || a->confidence < 0 ? 0 : a->confidence;
        so[n] = record_correct(rt, &d->v[i], a);
        lo[n] = record_correct(rt, &d->v[i], b);
        cs[n] = a->cost;
        cl[n] = b->cost;
        n++;
    }
    if (n == 0) goto out;
    if ((rc = sl_frontier_compute(&r->frontier, conf, so, cs, lo, cl, n, err))) goto out;
    r->has_frontier = true;
    r->frontier_n = n;
    r->small = rt->tiers[s];
    r->large = rt->tiers[l];
    if (isfinite(rt->threshold)) {
        size_t acc = 0, good = 0;
        double cost = 0;
        for (size_t i = 0; i < n; i++) {
            bool keep = conf[i] >= rt->threshold;
            acc += keep;
            good += keep ? so[i] : lo[i];
            cost += cs[i] + (keep ? 0 : cl[i]);
        }
        r->threshold = rt->threshold;
        r->at_coverage = (double)acc / (double)n;
        r->at_quality = (double)good / (double)n;
        r->at_cost_per_1k = 1000 * cost / (double)n;
    }
out:
    free(conf);
    free(cs);
    free(cl);
    free(so);
    free(lo);
    return rc;
}

int sl_eval_report_compute(struct sl_eval_report *out, const struct sl_eval_data *d,
                           const struct sl_eval_route *rt, const struct sl_eval_run *run,
                           struct sl_err *err)
{
    memset(out, 0, sizeof *out);
    out->kind = rt->kind;
    out->threshold = out->at_coverage = out->at_quality = out->at_cost_per_1k = NAN;
    size_t N = run->n_examples, T = run->n_targets;
    if (T != rt->n_tiers + 1 || N > d->n)
        return sl_err_set(err, SL_EINVAL, "%s: the run does not match the route and data",
                          __func__);
    struct kvset *exp_kv = NULL;
    int rc = 0;
    out->targets = calloc(T, sizeof *out->targets);
    out->class_names = calloc(rt->n_labels + 1, sizeof *out->class_names);
    if (!out->targets || !out->class_names) {
        rc = sl_err_set(err, SL_ENOMEM, "eval: out of memory");
        goto fail; /* allocation failure */
    }
    out->n_targets = T;
    for (size_t k = 0; k < rt->n_labels; k++)
        out->class_names[k] = rt->labels[k];
    out->class_names[rt->n_labels] = "(none)";
    out->n_class_names = rt->n_labels + 1;
    if (rt->kind == SL_RREQ_EXTRACT) {
        exp_kv = calloc(N ? N : 1, sizeof *exp_kv);
        if (!exp_kv) {
            rc = sl_err_set(err, SL_ENOMEM, "eval: out of memory");
            goto fail; /* allocation failure */
        }
        for (size_t i = 0; i < N; i++)
            if (kvset_from_text(&exp_kv[i], d->v[i].expected)) {
                rc = sl_err_set(err, SL_ENOMEM, "eval: out of memory");
                goto fail; /* allocation failure */
            }
    }
    for (size_t t = 0; t < T; t++)
        if ((rc = target_compute(&out->targets[t], d, rt, run, t, exp_kv, err))) goto fail;
    if ((rc = frontier_compute(out, d, rt, run, err))) goto fail;
    goto done;
fail:
    sl_eval_report_free(out);
done:
    for (size_t i = 0; exp_kv && i < N; i++)
        kvset_free(&exp_kv[i]);
    free(exp_kv);
    return rc;
}

/* ==== metrics by name ================================================================== */

size_t sl_eval_target_metrics(const struct sl_eval_report *r, size_t t,
                              struct sl_report_metric *out)
{
    const struct sl_eval_target_report *tr = &r->targets[t];
    size_t k = 0;
    bool has = tr->n > 0;
    out[k++] = (struct sl_report_metric){"n", (double)tr->n, "examples"};
    out[k++] = (struct sl_report_metric){"failed", (double)tr->n_failed,
                                         "failed requests (counted wrong)"};
    if (r->kind == SL_RREQ_CLASSIFY) {
        out[k++] = (struct sl_report_metric){"accuracy", has ? tr->quality : NAN, "accuracy"};
        out[k++] = (struct sl_report_metric){"macro_f1", has ? tr->cls.macro_f1 : NAN, "macro-F1"};
    } else {
        out[k++] = (struct sl_report_metric){"exact_match", has ? tr->quality : NAN, "exact match"};
        out[k++] = (struct sl_report_metric){"field_precision", has ? tr->ext.precision : NAN,
                                             "field precision (micro)"};
        out[k++] = (struct sl_report_metric){"field_recall", has ? tr->ext.recall : NAN,
                                             "field recall (micro)"};
        out[k++] =
            (struct sl_report_metric){"field_f1", has ? tr->ext.f1 : NAN, "field F1 (micro)"};
    }
    out[k++] = (struct sl_report_metric){"p50_ms", tr->lat.p50, "latency p50 (ms)"};
    out[k++] = (struct sl_report_metric){"p95_ms", tr->lat.p95, "latency p95 (ms)"};
    out[k++] = (struct sl_report_metric){"p99_ms", tr->lat.p99, "latency p99 (ms)"};
    out[k++] = (struct sl_report_metric){"mean_ms", tr->lat.mean, "latency mean (ms)"};
    out[k++] = (struct sl_report_metric){"cost_per_1k", tr->cost_per_1k, "cost per 1,000 requests"};
    out[k++] = (struct sl_report_metric){"escalation_rate", tr->escalation_rate, "escalation rate"};
    out[k++] = (struct sl_report_metric){"ece", tr->n_conf ? tr->rel.ece : NAN, "ECE (15 bins)"};
    out[k++] = (struct sl_report_metric){"tokens_in", tr->tokens_in_mean, "mean tokens in"};
    out[k++] = (struct sl_report_metric){"tokens_out", tr->tokens_out_mean, "mean tokens out"};
    return k;
}

int sl_eval_metric(const struct sl_eval_report *r, const char *name, double *out,
                   struct sl_err *err)
{
    *out = NAN;
    if (!strncmp(name, "frontier.", 9)) {
        const struct sl_frontier *f = &r->frontier;
        bool h = r->has_frontier;
        const struct {
            const char *name;
            double v;
        } fm[] = {
            {"aurc", h ? f->aurc : NAN},
            {"small_quality", h ? f->small_only.quality : NAN},
            {"large_quality", h ? f->large_only.quality : NAN},
            {"small_cost_per_1k", h ? 1000 * f->small_only.cost : NAN},
            {"large_cost_per_1k", h ? 1000 * f->large_only.cost : NAN},
            {"at_threshold_coverage", r->at_coverage},
            {"at_threshold_quality", r->at_quality},
            {"at_threshold_cost_per_1k", r->at_cost_per_1k},
        };
        for (size_t i = 0; i < sizeof fm / sizeof *fm; i++)
            if (!strcmp(name + 9, fm[i].name)) {
                *out = fm[i].v;
                return 0;
            }
        return sl_err_set(err, SL_ENOTFOUND, "no metric '%s'", name);
    }
    size_t t = r->n_targets - 1, best = 0;
    const char *m = name;
    for (size_t k = 0; k < r->n_targets; k++) {
        size_t l = strlen(r->targets[k].name);
        if (l > best && !strncmp(name, r->targets[k].name, l) && name[l] == '.') {
            best = l;
            t = k;
            m = name + l + 1;
        }
    }
    struct sl_report_metric ms[SL_EVAL_MAX_METRICS];
    size_t n = sl_eval_target_metrics(r, t, ms);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(ms[i].name, m)) {
            *out = ms[i].value;
            return 0;
        }
    return sl_err_set(err, SL_ENOTFOUND, "no metric '%s'", name);
}

int sl_eval_fail_under(const struct sl_eval_report *r, const char *spec, char *msg, size_t cap,
                       struct sl_err *err)
{
    const char *eq = strchr(spec, '=');
    char name[128], *end;
    if (msg && cap) msg[0] = 0;
    if (!eq || eq == spec || (size_t)(eq - spec) >= sizeof name)
        return sl_err_set(err, SL_EINVAL, "--fail-under '%s': want METRIC=NUMBER", spec);
    double want = strtod(eq + 1, &end);
    if (end == eq + 1 || *end || !isfinite(want))
        return sl_err_set(err, SL_EINVAL, "--fail-under '%s': want METRIC=NUMBER", spec);
    memcpy(name, spec, (size_t)(eq - spec));
    name[eq - spec] = 0;
    double v;
    int rc = sl_eval_metric(r, name, &v, err);
    if (rc) return rc;
    if (v >= want) return 0;
    if (msg && cap) {
        if (isnan(v))
            snprintf(msg, cap, "%s was not measured (no results), required >= %.6g (--fail-under)",
                     name, want);
        else
            snprintf(msg, cap, "%s = %.6g is under %.6g (--fail-under)", name, v, want);
    }
    return 1;
}
