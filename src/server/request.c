/*
 * request.c - validate OpenAI request JSON into struct sl_req (server
 * layer). See request.h.
 */
#include "request.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Record param and "'param' msg" as an SL_EINVAL error. */
static int bad(struct sl_req *r, struct sl_err *err, const char *param, const char *msg)
{
    snprintf(r->param, sizeof r->param, "%s", param);
    return sl_err_set(err, SL_EINVAL, "'%s' %s", param, msg);
}

static int get_number(struct sl_req *r, const char *key, double lo, double hi, double *out,
                      struct sl_err *err)
{
    json_t *v = json_object_get(r->root, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return bad(r, err, key, "must be a number");
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) {
        snprintf(r->param, sizeof r->param, "%s", key);
        return sl_err_set(err, SL_EINVAL, "'%s' must be between %g and %g (got %g)", key, lo, hi,
                          d);
    }
    *out = d;
    return 0;
}

static int get_int(struct sl_req *r, const char *key, int64_t lo, int64_t hi, int64_t *out,
                   struct sl_err *err)
{
    json_t *v = json_object_get(r->root, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v)) return bad(r, err, key, "must be an integer");
    json_int_t i = json_integer_value(v);
    if (i < lo || i > hi) {
        snprintf(r->param, sizeof r->param, "%s", key);
        return sl_err_set(err, SL_EINVAL, "'%s' must be between %lld and %lld (got %lld)", key,
                          (long long)lo, (long long)hi, (long long)i);
    }
    *out = i;
    return 0;
}

static int get_bool(struct sl_req *r, const char *key, bool *out, struct sl_err *err)
{
    json_t *v = json_object_get(r->root, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return bad(r, err, key, "must be true or false");
    *out = json_is_true(v);
    return 0;
}

static int push_owned(struct sl_req *r, char *s, struct sl_err *err)
{
    char **n = realloc(r->owned, (r->n_owned + 1) * sizeof *n);
    if (!n) {
        free(s);
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    r->owned = n;
    r->owned[r->n_owned++] = s;
    return 0;
}

/* content: a string, null, or an array of {"type": "text", "text": "..."} parts. */
static int message_content(struct sl_req *r, json_t *c, size_t i, const char **out,
                           struct sl_err *err)
{
    char param[64];
    snprintf(param, sizeof param, "messages[%zu].content", i);
    if (!c || json_is_null(c)) {
        *out = "";
        return 0;
    }
    if (json_is_string(c)) {
        if (strlen(json_string_value(c)) != json_string_length(c))
            return bad(r, err, param, "contains a NUL character");
        *out = json_string_value(c);
        return 0;
    }
    if (!json_is_array(c)) return bad(r, err, param, "must be a string or an array of parts");
    size_t total = 0, k;
    json_t *part;
    json_array_foreach(c, k, part)
    {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type) ||
            strcmp(json_string_value(type), "text") || !json_is_string(text))
            return bad(r, err, param,
                       "parts must be {\"type\": \"text\", \"text\": ...} "
                       "(images and audio are not supported)");
        total += json_string_length(text);
    }
    char *s = malloc(total + 1);
    if (!s) return sl_err_set(err, SL_ENOMEM, "out of memory");
    size_t n = 0;
    json_array_foreach(c, k, part)
    {
        json_t *text = json_object_get(part, "text");
        memcpy(s + n, json_string_value(text), json_string_length(text));
        n += json_string_length(text);
    }
    s[n] = 0;
    if (strlen(s) != n) {
        free(s);
        return bad(r, err, param, "contains a NUL character");
    }
    int rc = push_owned(r, s, err);
    if (!rc) *out = s;
    return rc;
}

static int parse_messages(struct sl_req *r, struct sl_err *err)
{
    json_t *m = json_object_get(r->root, "messages");
    if (!m) return bad(r, err, "messages", "is required");
    if (!json_is_array(m) || json_array_size(m) == 0)
        return bad(r, err, "messages", "must be a non-empty array");
    if (json_array_size(m) > SL_REQ_MAX_MESSAGES)
        return bad(r, err, "messages", "has too many entries");
    if (!(r->msgs = calloc(json_array_size(m), sizeof *r->msgs)))
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    size_t i;
    json_t *e;
    json_array_foreach(m, i, e)
    {
        char param[64];
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!json_is_object(e)) return bad(r, err, param, "must be an object");
        json_t *role = json_object_get(e, "role");
        snprintf(param, sizeof param, "messages[%zu].role", i);
        if (!json_is_string(role)) return bad(r, err, param, "must be a string");
        const char *rs = json_string_value(role);
        if (!strcmp(rs, "developer")) rs = "system";
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant") &&
            strcmp(rs, "tool"))
            return bad(r, err, param, "must be system, developer, user, assistant or tool");
        int rc = message_content(r, json_object_get(e, "content"), i, &r->msgs[i].content, err);
        if (rc) return rc;
        r->msgs[i].role = rs;
        r->n_msgs++;
    }
    return 0;
}

/* A token-id array: every element an integer in [0, 2^31). */
static int parse_ids(struct sl_req *r, json_t *a, const char *param, struct sl_req_prompt *p,
                     struct sl_err *err)
{
    size_t n = json_array_size(a), i;
    json_t *v;
    if (n > SL_REQ_MAX_TOKEN_IDS) return bad(r, err, param, "has too many token ids");
    if (n == 0) return bad(r, err, param, "must not be empty");
    if (!(p->ids = malloc(n * sizeof *p->ids))) return sl_err_set(err, SL_ENOMEM, "out of memory");
    json_array_foreach(a, i, v)
    {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
            return bad(r, err, param, "must hold token ids (non-negative integers)");
        p->ids[i] = (int32_t)json_integer_value(v);
    }
    p->n_ids = n;
    return 0;
}

/* prompt / input: a string, an array of strings, an array of ids, or an
 * array of id arrays. */
static int parse_prompts(struct sl_req *r, const char *key, const struct sl_req_limits *lim,
                         struct sl_err *err)
{
    json_t *p = json_object_get(r->root, key);
    if (!p) return bad(r, err, key, "is required");
    size_t n = 1;
    bool ids = false;
    if (json_is_array(p)) {
        n = json_array_size(p);
        if (n == 0) return bad(r, err, key, "must not be empty");
        ids = json_is_integer(json_array_get(p, 0));
        if (ids) n = 1;
    } else if (!json_is_string(p)) {
        return bad(r, err, key, "must be a string, an array of strings or of token ids");
    }
    if ((int64_t)n > lim->max_inputs || n > SL_REQ_MAX_PROMPTS) {
        snprintf(r->param, sizeof r->param, "%s", key);
        return sl_err_set(err, SL_ERANGE, "'%s' has %zu entries; at most %lld are allowed", key, n,
                          (long long)SL_MIN(lim->max_inputs, SL_REQ_MAX_PROMPTS));
    }
    if (!(r->prompts = calloc(n, sizeof *r->prompts)))
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    r->n_prompts = n;
    for (size_t i = 0; i < n; i++) {
        json_t *e = !json_is_array(p) ? p : ids ? p : json_array_get(p, i);
        char param[64];
        snprintf(param, sizeof param, json_is_array(p) && !ids ? "%s[%zu]" : "%s", key, i);
        if (json_is_string(e)) {
            if (strlen(json_string_value(e)) != json_string_length(e))
                return bad(r, err, param, "contains a NUL character");
            r->prompts[i].text = json_string_value(e);
            r->prompts[i].text_len = json_string_length(e);
        } else if (json_is_array(e)) {
            int rc = parse_ids(r, e, param, &r->prompts[i], err);
            if (rc) return rc;
        } else {
            return bad(r, err, param, "must be a string or an array of token ids");
        }
    }
    return 0;
}

static int parse_stop(struct sl_req *r, struct sl_err *err)
{
    json_t *s = json_object_get(r->root, "stop");
    if (!s || json_is_null(s)) return 0;
    if (json_is_string(s)) {
        r->stop[r->n_stop++] = json_string_value(s);
        return 0;
    }
    if (!json_is_array(s)) return bad(r, err, "stop", "must be a string or an array of strings");
    if (json_array_size(s) > SL_REQ_MAX_STOP)
        return bad(r, err, "stop", "may hold at most 4 strings");
    size_t i;
    json_t *v;
    json_array_foreach(s, i, v)
    {
        if (!json_is_string(v))
            return bad(r, err, "stop", "must be a string or an array of strings");
        if (json_string_length(v) > 256)
            return bad(r, err, "stop", "strings must be at most 256 bytes");
        r->stop[r->n_stop++] = json_string_value(v);
    }
    return 0;
}

/* "input": a string or a non-empty list of strings, into prompts[]. */
static int parse_task_inputs(struct sl_req *r, const struct sl_req_limits *lim, struct sl_err *err)
{
    json_t *in = json_object_get(r->root, "input");
    if (!in || json_is_null(in)) return bad(r, err, "input", "is required");
    size_t n = json_is_array(in) ? json_array_size(in) : 1;
    if (!json_is_array(in) && !json_is_string(in))
        return bad(r, err, "input", "must be a string or an array of strings");
    if (n == 0) return bad(r, err, "input", "must not be empty");
    if ((int64_t)n > lim->max_inputs) {
        snprintf(r->param, sizeof r->param, "input");
        return sl_err_set(err, SL_ERANGE, "'input' has %zu entries; at most %lld are allowed", n,
                          (long long)lim->max_inputs);
    }
    if (!(r->prompts = calloc(n, sizeof *r->prompts)))
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    r->n_prompts = n;
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_is_array(in) ? json_array_get(in, i) : in;
        if (!json_is_string(v))
            return bad(r, err, "input", "must be a string or an array of strings");
        r->prompts[i].text = json_string_value(v);
        r->prompts[i].text_len = json_string_length(v);
        if (strlen(r->prompts[i].text) != r->prompts[i].text_len)
            return bad(r, err, "input", "must not contain NUL characters");
    }
    return 0;
}

/* "labels": strings or {"name", "description"} objects; distinct, non-empty. */
static int parse_labels(struct sl_req *r, json_t *a, struct sl_err *err)
{
    if (!json_is_array(a)) return bad(r, err, "labels", "must be an array");
    size_t n = json_array_size(a);
    if (n < 1 || n > SL_REQ_MAX_LABELS) {
        snprintf(r->param, sizeof r->param, "labels");
        return sl_err_set(err, SL_EINVAL, "'labels' must have 1 to %d entries (got %zu)",
                          SL_REQ_MAX_LABELS, n);
    }
    r->labels = calloc(n, sizeof *r->labels);
    r->label_descs = calloc(n, sizeof *r->label_descs);
    if (!r->labels || !r->label_descs) return sl_err_set(err, SL_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(a, i), *name = v, *desc = NULL;
        if (json_is_object(v)) {
            name = json_object_get(v, "name");
            desc = json_object_get(v, "description");
            if (desc && !json_is_null(desc) && !json_is_string(desc))
                return bad(r, err, "labels", "entries' \"description\" must be a string");
        }
        if (!json_is_string(name))
            return bad(
                r, err, "labels",
                "entries must be strings or objects {\"name\": string, \"description\": string}");
        size_t len = json_string_length(name);
        if (len == 0 || len > 1024 || strlen(json_string_value(name)) != len)
            return bad(r, err, "labels", "entries must be 1 to 1024 bytes, without NUL");
        r->labels[i] = json_string_value(name);
        r->label_descs[i] = json_is_string(desc) ? json_string_value(desc) : NULL;
        for (size_t k = 0; k < i; k++)
            if (!strcmp(r->labels[k], r->labels[i])) {
                snprintf(r->param, sizeof r->param, "labels");
                return sl_err_set(err, SL_EINVAL, "'labels' has \"%s\" twice", r->labels[i]);
            }
        r->n_labels = i + 1;
    }
    return 0;
}

/* /v1/classify and /v1/extract bodies. */
static int parse_task_req(struct sl_req *r, const struct sl_req_limits *lim, struct sl_err *err)
{
    static const char *const modes[] = {"auto", "chat", "plain", "raw"};
    int rc;
    json_t *model = json_object_get(r->root, "model"), *task = json_object_get(r->root, "task");
    json_t *labels = json_object_get(r->root, "labels"),
           *schema = json_object_get(r->root, "schema");
    json_t *ins = json_object_get(r->root, "instruction"),
           *mode = json_object_get(r->root, "prompt_mode");
    if (model && !json_is_null(model)) {
        if (!json_is_string(model)) return bad(r, err, "model", "must be a string");
        r->model = json_string_value(model);
    }
    if (task && !json_is_null(task)) {
        if (!json_is_string(task)) return bad(r, err, "task", "must be a string");
        r->task = json_string_value(task);
    }
    if ((rc = parse_task_inputs(r, lim, err))) return rc;
    bool cls = r->kind == SL_REQ_CLASSIFY;
    const char *what = cls ? "labels" : "schema";
    json_t *spec = cls ? labels : schema;
    if (r->task) {
        if (spec && !json_is_null(spec)) return bad(r, err, what, "cannot be given with 'task'");
        if (ins && !json_is_null(ins))
            return bad(r, err, "instruction", "cannot be given with 'task'");
        if (mode && !json_is_null(mode))
            return bad(r, err, "prompt_mode", "cannot be given with 'task'");
    } else if (r->model && (!spec || json_is_null(spec)) && lim->is_route &&
               lim->is_route(lim->user, r->model)) {
        /* a route without a task: its default task applies (the route says) */
    } else {
        if (!r->model) return bad(r, err, "model", "is required (or name a configured 'task')");
        if (!spec || json_is_null(spec))
            return bad(r, err, what, "is required (or name a configured 'task')");
        if (cls) {
            if ((rc = parse_labels(r, spec, err))) return rc;
        } else {
            if (!json_is_object(spec) && !json_is_boolean(spec))
                return bad(r, err, "schema", "must be a JSON Schema object");
            r->schema = spec;
        }
        if (ins && !json_is_null(ins)) {
            if (!json_is_string(ins)) return bad(r, err, "instruction", "must be a string");
            r->instruction = json_string_value(ins);
        }
        if (mode && !json_is_null(mode)) {
            const char *m = json_is_string(mode) ? json_string_value(mode) : "";
            size_t k = 0;
            while (k < 4 && strcmp(m, modes[k]))
                k++;
            if (k == 4)
                return bad(r, err, "prompt_mode",
                           "must be \"auto\", \"chat\", \"plain\" or \"raw\"");
            r->prompt_mode = (int)k;
        }
    }
    if (!cls) {
        int64_t i64 = -1;
        if ((rc = get_int(r, "max_tokens", 1, INT32_MAX, &i64, err))) return rc;
        r->max_tokens = i64;
    }
    return 0;
}

/* response_format: {"type": "text" | "json_object" | "json_schema", "json_schema": {"schema"}} */
static int parse_response_format(struct sl_req *r, struct sl_err *err)
{
    json_t *f = json_object_get(r->root, "response_format");
    if (!f || json_is_null(f)) return 0;
    if (!json_is_object(f)) return bad(r, err, "response_format", "must be an object");
    json_t *t = json_object_get(f, "type");
    const char *ts = json_is_string(t) ? json_string_value(t) : "";
    if (!strcmp(ts, "text")) return 0;
    if (!strcmp(ts, "json_object")) {
        r->json_object = true;
        return 0;
    }
    if (strcmp(ts, "json_schema"))
        return bad(r, err, "response_format.type",
                   "must be \"text\", \"json_object\" or \"json_schema\"");
    json_t *js = json_object_get(f, "json_schema");
    if (!json_is_object(js))
        return bad(r, err, "response_format.json_schema", "must be an object with a \"schema\"");
    json_t *sc = json_object_get(js, "schema");
    if (!json_is_object(sc) && !json_is_boolean(sc))
        return bad(r, err, "response_format.json_schema.schema", "must be a JSON Schema object");
    r->response_schema = sc;
    return 0;
}

int sl_req_parse(struct sl_req *r, enum sl_req_kind kind, const char *body, size_t len,
                 const struct sl_req_limits *lim, struct sl_err *err)
{
    json_error_t je;
    int rc;
    int64_t i64;
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->max_tokens = -1;
    r->temperature = 1.0;
    r->top_p = 1.0;
    r->n = 1;
    r->root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!r->root)
        return sl_err_set(err, SL_EFORMAT,
                          "request body is not valid JSON: %s (line %d, column %d)", je.text,
                          je.line, je.column);
    if (!json_is_object(r->root))
        return sl_err_set(err, SL_EFORMAT, "request body must be a JSON object");
    json_t *model = json_object_get(r->root, "model");
    if (kind == SL_REQ_CLASSIFY || kind == SL_REQ_EXTRACT) return parse_task_req(r, lim, err);
    json_t *task = json_object_get(r->root, "task");
    if (kind == SL_REQ_COMPLETION && task && !json_is_null(task)) { /* a generate task */
        if (!json_is_string(task)) return bad(r, err, "task", "must be a string");
        r->task = json_string_value(task);
    }
    if (!model && !r->task) return bad(r, err, "model", "is required");
    if (model && !json_is_string(model)) return bad(r, err, "model", "must be a string");
    r->model = model ? json_string_value(model) : NULL;

    if (kind == SL_REQ_EMBEDDING) {
        if ((rc = parse_prompts(r, "input", lim, err))) return rc;
        json_t *f = json_object_get(r->root, "encoding_format");
        if (f && !json_is_null(f)) {
            if (!json_is_string(f) ||
                (strcmp(json_string_value(f), "float") && strcmp(json_string_value(f), "base64")))
                return bad(r, err, "encoding_format", "must be \"float\" or \"base64\"");
            r->base64 = !strcmp(json_string_value(f), "base64");
        }
        return 0;
    }
    if (kind == SL_REQ_CHAT)
        rc = parse_messages(r, err);
    else
        rc = parse_prompts(r, "prompt", lim, err);
    if (rc) return rc;

    i64 = -1;
    if ((rc = get_int(r, "max_tokens", 0, INT32_MAX, &i64, err))) return rc;
    if ((rc = get_int(r, "max_completion_tokens", 0, INT32_MAX, &i64, err))) return rc;
    r->max_tokens = i64;
    if (kind == SL_REQ_CHAT && r->max_tokens == 0)
        return bad(r, err, "max_tokens", "must be at least 1");
    if ((rc = get_number(r, "temperature", 0, 2, &r->temperature, err))) return rc;
    if ((rc = get_number(r, "top_p", 0, 1, &r->top_p, err))) return rc;
    if ((rc = get_number(r, "presence_penalty", -2, 2, &r->presence_penalty, err))) return rc;
    if ((rc = get_number(r, "frequency_penalty", -2, 2, &r->frequency_penalty, err))) return rc;
    i64 = -1;
    json_t *seed = json_object_get(r->root, "seed");
    if (seed && !json_is_null(seed)) {
        if (!json_is_integer(seed)) return bad(r, err, "seed", "must be an integer");
        r->has_seed = true;
        r->seed = (uint64_t)json_integer_value(seed);
    }
    i64 = 1;
    if ((rc = get_int(r, "n", 1, 128, &i64, err))) return rc;
    r->n = (int32_t)i64;
    if ((int64_t)r->n * (int64_t)(r->n_prompts ? r->n_prompts : 1) > lim->max_n) {
        snprintf(r->param, sizeof r->param, "n");
        return sl_err_set(err, SL_ERANGE, "n x prompts = %lld choices; at most %lld are allowed",
                          (long long)r->n * (long long)(r->n_prompts ? r->n_prompts : 1),
                          (long long)lim->max_n);
    }
    if ((rc = parse_stop(r, err))) return rc;
    if ((rc = get_bool(r, "stream", &r->stream, err))) return rc;
    if ((rc = get_bool(r, "ignore_eos", &r->ignore_eos, err))) return rc;
    json_t *so = json_object_get(r->root, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) return bad(r, err, "stream_options", "must be an object");
        json_t *iu = json_object_get(so, "include_usage");
        if (iu && !json_is_boolean(iu))
            return bad(r, err, "stream_options.include_usage", "must be true or false");
        r->include_usage = json_is_true(iu);
    }
    if (kind == SL_REQ_CHAT) {
        if ((rc = parse_response_format(r, err))) return rc;
        if ((rc = get_bool(r, "logprobs", &r->logprobs, err))) return rc;
        i64 = 0;
        if ((rc = get_int(r, "top_logprobs", 0, SL_REQ_MAX_TOP_LOGPROBS, &i64, err))) return rc;
        r->top_logprobs = (int32_t)i64;
        if (r->top_logprobs > 0 && !r->logprobs)
            return bad(r, err, "top_logprobs", "needs \"logprobs\": true");
    } else {
        json_t *lp = json_object_get(r->root, "logprobs");
        if (lp && !json_is_null(lp)) {
            i64 = 0;
            if ((rc = get_int(r, "logprobs", 0, SL_REQ_MAX_TOP_LOGPROBS, &i64, err))) return rc;
            r->logprobs = true;
            r->top_logprobs = (int32_t)i64;
        }
        if ((rc = get_bool(r, "echo", &r->echo, err))) return rc;
        if (r->max_tokens == 0 && !r->echo)
            return bad(r, err, "max_tokens", "may be 0 only with echo");
    }
    return 0;
}

void sl_req_free(struct sl_req *r)
{
    for (size_t i = 0; i < r->n_prompts; i++)
        free(r->prompts[i].ids);
    for (size_t i = 0; i < r->n_owned; i++)
        free(r->owned[i]);
    free(r->prompts);
    free(r->owned);
    free(r->msgs);
    free(r->labels);
    free(r->label_descs);
    if (r->root) json_decref(r->root);
    memset(r, 0, sizeof *r);
}
