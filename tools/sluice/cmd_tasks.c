/*
 * cmd_tasks.c - `sluice classify`, `sluice extract`, `sluice calibrate`:
 * the task layer (src/tasks) over JSONL or CSV files (tools layer).
 *
 * Input: FILE.csv (a header row; RFC 4180 quoting) or JSONL (one object per
 * line; a line that is a JSON string is the text itself). Output: JSONL, one
 * line per input row, in input order, on -o FILE or stdout.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "engine/model.h"
#include "tasks/calibrate.h"
#include "tasks/classify.h"
#include "tasks/extract.h"
#include "train/head.h"

/* ------------------------------------------------------------------------ */
/* Input rows                                                                */
/* ------------------------------------------------------------------------ */

struct row {
    char *id;    /* JSON text of the id, or NULL */
    char *text;
    char *label; /* with --label-field */
    long line;
};

struct rows {
    struct row *v;
    size_t n, cap;
};

static void rows_free(struct rows *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].id);
        free(r->v[i].text);
        free(r->v[i].label);
    }
    free(r->v);
}

static int rows_push(struct rows *r, struct row row)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 256;
        struct row *nv = realloc(r->v, cap * sizeof *nv);
        if (!nv) return SL_ENOMEM;
        r->v = nv;
        r->cap = cap;
    }
    r->v[r->n++] = row;
    return 0;
}

static char *read_all(const char *path, size_t *len, struct sl_err *err)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0;
    if (!f) {
        sl_err_set(err, SL_EIO, "cannot open '%s'", path);
        return NULL;
    }
    for (;;) {
        if (n + 65536 + 1 > cap) {
            char *nb = realloc(buf, cap = cap * 2 + 65536 + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                sl_err_set(err, SL_ENOMEM, "out of memory reading '%s'", path);
                return NULL;
            }
            buf = nb;
        }
        size_t k = fread(buf + n, 1, 65536, f);
        n += k;
        if (k == 0) break;
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

/* Cut s to at most max bytes on a UTF-8 boundary (max 0: no limit). */
static void clip(char *s, size_t max)
{
    size_t n = strlen(s);
    if (max == 0 || n <= max) return;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80) max--;
    s[max] = 0;
}

/* One CSV field starting at *p; returns malloc'd text, advances *p past the
 * separator; *eol set at end of record. */
static char *csv_field(const char **p, const char *end, bool *eol)
{
    const char *s = *p;
    char *out = malloc((size_t)(end - s) + 1);
    size_t n = 0;
    if (!out) return NULL;
    *eol = false;
    if (s < end && *s == '"') {
        s++;
        while (s < end) {
            if (*s == '"') {
                if (s + 1 < end && s[1] == '"') {
                    out[n++] = '"';
                    s += 2;
                    continue;
                }
                s++;
                break;
            }
            out[n++] = *s++;
        }
    }
    while (s < end && *s != ',' && *s != '\n' && *s != '\r') out[n++] = *s++;
    if (s < end && *s == '\r') s++;
    if (s >= end || *s == '\n') *eol = true;
    if (s < end) s++;
    out[n] = 0;
    *p = s;
    return out;
}

static int read_csv(const char *buf, size_t len, const char *text_field, const char *label_field,
                    const char *id_field, size_t max_chars, struct rows *rows, struct sl_err *err)
{
    const char *p = buf, *end = buf + len;
    char *hdr[256];
    int nh = 0, ti = -1, li = -1, ii = -1;
    bool eol = false;
    while (!eol && p < end && nh < 256) {
        hdr[nh] = csv_field(&p, end, &eol);
        if (!hdr[nh]) return sl_err_set(err, SL_ENOMEM, "out of memory");
        if (!strcmp(hdr[nh], text_field)) ti = nh;
        if (label_field && !strcmp(hdr[nh], label_field)) li = nh;
        if (id_field && !strcmp(hdr[nh], id_field)) ii = nh;
        nh++;
    }
    for (int i = 0; i < nh; i++) free(hdr[i]);
    if (ti < 0) return sl_err_set(err, SL_EFORMAT, "CSV header has no column '%s'", text_field);
    if (label_field && li < 0) return sl_err_set(err, SL_EFORMAT, "CSV header has no column '%s'", label_field);
    long line = 1;
    while (p < end) {
        struct row r = {.line = ++line};
        int col = 0;
        eol = false;
        while (!eol) {
            char *f = csv_field(&p, end, &eol);
            if (!f) return sl_err_set(err, SL_ENOMEM, "out of memory");
            if (col == ti) r.text = f;
            else if (col == li) r.label = f;
            else if (col == ii) {
                json_t *s = json_string(f);
                r.id = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
                json_decref(s);
                free(f);
            } else free(f);
            col++;
        }
        if (!r.text) {
            free(r.label);
            free(r.id);
            if (col <= 1) continue; /* blank line */
            return sl_err_set(err, SL_EFORMAT, "CSV line %ld has no column %d", line, ti + 1);
        }
        clip(r.text, max_chars);
        if (rows_push(rows, r)) return sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    return 0;
}

static int read_jsonl(const char *buf, size_t len, const char *text_field, const char *label_field,
                      const char *id_field, size_t max_chars, struct rows *rows, struct sl_err *err)
{
    const char *p = buf, *end = buf + len;
    long line = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        line++;
        const char *q = p;
        while (q < e && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
        if (q == e) {
            p = e + 1;
            continue;
        }
        json_error_t je;
        json_t *v = json_loadb(p, (size_t)(e - p), JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        if (!v) return sl_err_set(err, SL_EFORMAT, "line %ld: not JSON: %s", line, je.text);
        struct row r = {.line = line};
        const json_t *t = json_is_string(v) ? v : json_object_get(v, text_field);
        if (!json_is_string(t)) {
            json_decref(v);
            return sl_err_set(err, SL_EFORMAT, "line %ld: no string field '%s'", line, text_field);
        }
        r.text = dupn(json_string_value(t), json_string_length(t));
        if (label_field) {
            const json_t *l = json_object_get(v, label_field);
            if (!json_is_string(l)) {
                json_decref(v);
                free(r.text);
                return sl_err_set(err, SL_EFORMAT, "line %ld: no string field '%s'", line, label_field);
            }
            r.label = dupn(json_string_value(l), json_string_length(l));
        }
        const json_t *id = id_field ? json_object_get(v, id_field) : NULL;
        if (id) r.id = json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT);
        json_decref(v);
        if (!r.text) return sl_err_set(err, SL_ENOMEM, "out of memory");
        clip(r.text, max_chars);
        if (rows_push(rows, r)) return sl_err_set(err, SL_ENOMEM, "out of memory");
        p = e + 1;
    }
    return 0;
}

static int read_rows(const char *path, const char *text_field, const char *label_field,
                     const char *id_field, size_t max_chars, struct rows *rows, struct sl_err *err)
{
    size_t len = 0;
    char *buf = read_all(path, &len, err);
    if (!buf) return err->code;
    size_t pl = strlen(path);
    bool csv = pl > 4 && !strcmp(path + pl - 4, ".csv");
    int rc = csv ? read_csv(buf, len, text_field, label_field, id_field, max_chars, rows, err)
                 : read_jsonl(buf, len, text_field, label_field, id_field, max_chars, rows, err);
    if (!rc && rows->n == 0) rc = sl_err_set(err, SL_EFORMAT, "%s has no rows", path);
    if (rc && !strstr(err->msg, path)) {
        char m[SL_ERR_MSG_LEN];
        snprintf(m, sizeof m, "%s", err->msg);
        sl_err_set(err, rc, "%s: %s", path, m);
    }
    free(buf);
    return rc;
}

/* Split "a,b,c" into labels (malloc'd copy in *store). */
static int split_labels(const char *s, char **store, const char ***labels, size_t *n)
{
    size_t len = strlen(s), k = 1;
    for (size_t i = 0; i < len; i++) k += s[i] == ',';
    *store = dupn(s, len);
    *labels = calloc(k, sizeof **labels);
    if (!*store || !*labels) return SL_ENOMEM;
    *n = 0;
    char *p = *store;
    for (;;) {
        char *c = strchr(p, ',');
        if (c) *c = 0;
        (*labels)[(*n)++] = p;
        if (!c) break;
        p = c + 1;
    }
    return 0;
}

static int parse_mode(const char *cmd, const char *s, enum sl_prompt_mode *m)
{
    if (!s || !strcmp(s, "auto")) *m = SL_PROMPT_AUTO;
    else if (!strcmp(s, "chat")) *m = SL_PROMPT_CHAT;
    else if (!strcmp(s, "plain")) *m = SL_PROMPT_PLAIN;
    else if (!strcmp(s, "raw")) *m = SL_PROMPT_RAW;
    else return cli_usage(cmd, "--prompt: '%s' is not one of auto, chat, plain, raw", s);
    return 0;
}

struct setup {
    struct sl_model *m;
    struct sl_ctx *ctx;
};

static int load(const char *path, long long n_ctx, long long threads, struct setup *s, struct sl_err *err)
{
    if (sl_model_load(&s->m, path, true, err)) return cli_fail(err, "is this a GGUF model file?");
    if (!s->m->vocab) {
        sl_err_set(err, SL_EFORMAT, "%s has no tokenizer", path);
        return cli_fail(err, NULL);
    }
    struct sl_ctx_params cp = sl_ctx_default_params();
    cp.n_ctx = (int32_t)n_ctx;
    cp.n_threads = (int)threads;
    if (sl_ctx_init(&s->ctx, s->m, &cp, err)) return cli_fail(err, NULL);
    return 0;
}

static void setup_free(struct setup *s)
{
    sl_ctx_free(s->ctx);
    sl_model_free(s->m);
}

static FILE *open_out(const char *path, struct sl_err *err)
{
    if (!path || !strcmp(path, "-")) return stdout;
    FILE *f = fopen(path, "w");
    if (!f) sl_err_set(err, SL_EIO, "cannot write '%s'", path);
    return f;
}

/* ------------------------------------------------------------------------ */
/* classify                                                                  */
/* ------------------------------------------------------------------------ */

static const char *classify_usage =
    "usage: sluice classify -m MODEL --labels a,b,c --input FILE.jsonl|FILE.csv [options]\n"
    "  --labels A,B,C           the labels (comma-separated; with --head: default the head's)\n"
    "  --head FILE              classify through a head from 'sluice train head' on this model\n"
    "                           (embeddings + head) instead of scoring the labels\n"
    "  --instruction TEXT       what to do (default: a generic classification instruction)\n"
    "  --calibration T          temperature from 'sluice calibrate' (default 1)\n"
    "  --prompt MODE            auto (chat template if the model has one), chat, plain, raw\n"
    "  --input FILE             JSONL (objects, or strings) or CSV with a header row\n"
    "  --text-field NAME        field holding the text (default text)\n"
    "  --id-field NAME          field copied to the output as id (default id)\n"
    "  --max-chars N            cut each text to N bytes (default: no limit)\n"
    "  -o, --output FILE        JSONL results (default stdout)\n"
    "  --batch N                inputs scored together (default 8)\n"
    "  -c, --ctx-size N         context size (default: the model's, at most 4096)\n"
    "  -t, --threads N          threads (default: all cores)\n"
    "output lines: {\"id\", \"label\", \"confidence\", \"margin\", \"entropy\", \"probs\": {label: p}}\n";

int cmd_classify(int argc, char **argv)
{
    const char *model = NULL, *labels_s = NULL, *instruction = NULL, *input = NULL, *out_path = NULL;
    const char *text_field = "text", *id_field = "id", *mode_s = NULL, *head = NULL;
    double temp = 1.0;
    long long n_ctx = 0, threads = 0, batch = 8, max_chars = 0;
    const struct cli_opt opts[] = {
        {"-m", "--model", CLI_STR, &model, 0, 0},
        {NULL, "--labels", CLI_STR, &labels_s, 0, 0},
        {NULL, "--head", CLI_STR, &head, 0, 0},
        {NULL, "--instruction", CLI_STR, &instruction, 0, 0},
        {NULL, "--calibration", CLI_FLOAT, &temp, 0.001, 1000},
        {NULL, "--prompt", CLI_STR, &mode_s, 0, 0},
        {NULL, "--input", CLI_STR, &input, 0, 0},
        {NULL, "--text-field", CLI_STR, &text_field, 0, 0},
        {NULL, "--id-field", CLI_STR, &id_field, 0, 0},
        {NULL, "--max-chars", CLI_INT, &max_chars, 0, 1 << 30},
        {"-o", "--output", CLI_STR, &out_path, 0, 0},
        {NULL, "--batch", CLI_INT, &batch, 1, 32},
        {"-c", "--ctx-size", CLI_INT, &n_ctx, 16, 1 << 20},
        {"-t", "--threads", CLI_INT, &threads, 1, 1024},
    };
    struct sl_err err = {0};
    struct setup su = {0};
    struct rows rows = {0};
    struct sl_classifier *c = NULL;
    struct sl_classify_result *res = NULL;
    char *store = NULL;
    const char **labels = NULL;
    size_t n_labels = 0;
    FILE *out = NULL;
    enum sl_prompt_mode mode;
    int rc = cli_parse("classify", classify_usage, argc, argv, opts, sizeof opts / sizeof *opts, NULL, 0, NULL);
    if (rc) return rc < 0 ? 0 : rc;
    if (!model) return cli_usage("classify", "-m MODEL is required");
    if (!labels_s && !head) return cli_usage("classify", "--labels a,b,c is required");
    if (!input) return cli_usage("classify", "--input FILE is required");
    if ((rc = parse_mode("classify", mode_s, &mode))) return rc;
    char *head_labels = NULL;
    if (!labels_s) { /* the head's labels, in its order */
        struct sl_head h;
        if (sl_head_load(&h, head, &err)) return cli_fail(&err, "is this a head from 'sluice train head'?");
        size_t len = 1;
        for (int32_t i = 0; i < h.n_out; i++) len += strlen(h.labels[i]) + 1;
        if ((head_labels = calloc(1, len)))
            for (int32_t i = 0; i < h.n_out; i++) {
                if (i) strcat(head_labels, ",");
                strcat(head_labels, h.labels[i]);
            }
        sl_head_free(&h);
        labels_s = head_labels;
    }
    if (!labels_s || split_labels(labels_s, &store, &labels, &n_labels)) {
        rc = cli_fail(&(struct sl_err){SL_ENOMEM, "out of memory"}, NULL);
        goto out; /* allocation failure */
    }
    if (read_rows(input, text_field, NULL, id_field, (size_t)max_chars, &rows, &err)) {
        rc = cli_fail(&err, err.code == SL_EFORMAT ? "JSONL needs one object per line with the --text-field; CSV a header row"
                                                   : NULL);
        goto out; /* bad input */
    }
    if ((rc = load(model, n_ctx, threads, &su, &err))) goto out; /* bad model */
    struct sl_classify_task task = sl_classify_default_task();
    task.labels = labels;
    task.n_labels = n_labels;
    task.instruction = instruction;
    task.temperature = (float)temp;
    task.mode = mode;
    task.head_path = head;
    if (sl_classifier_init(&c, su.ctx, &task, &err)) {
        rc = err.code == SL_EINVAL && !head ? cli_usage("classify", "%s", err.msg) : cli_fail(&err, NULL);
        goto out; /* bad task */
    }
    if (!(out = open_out(out_path, &err))) {
        rc = cli_fail(&err, NULL);
        goto out; /* cannot write */
    }
    res = calloc((size_t)batch, sizeof *res);
    const char **texts = calloc((size_t)batch, sizeof *texts);
    if (!res || !texts) {
        free(texts);
        rc = cli_fail(&(struct sl_err){SL_ENOMEM, "out of memory"}, NULL);
        goto out; /* allocation failure */
    }
    cli_progress("classify", 0, rows.n);
    for (size_t i = 0; i < rows.n; i += (size_t)batch) {
        size_t k = SL_MIN((size_t)batch, rows.n - i);
        for (size_t j = 0; j < k; j++) texts[j] = rows.v[i + j].text;
        if (sl_classify_batch(c, texts, k, res, &err)) {
            char m[SL_ERR_MSG_LEN];
            snprintf(m, sizeof m, "%s", err.msg);
            sl_err_set(&err, err.code, "%s line %ld: %s", input, rows.v[i].line, m);
            free(texts);
            rc = cli_fail(&err, err.code == SL_ERANGE ? "raise --ctx-size or cut texts with --max-chars" : NULL);
            goto out; /* classification failed */
        }
        for (size_t j = 0; j < k; j++) {
            struct sl_classify_result *r = &res[j];
            if (rows.v[i + j].id) fprintf(out, "{\"id\":%s,", rows.v[i + j].id);
            else fprintf(out, "{\"line\":%ld,", rows.v[i + j].line);
            json_t *lab = json_string(labels[r->label]);
            char *ls = json_dumps(lab, JSON_ENCODE_ANY);
            fprintf(out, "\"label\":%s,\"confidence\":%.6g,\"margin\":%.6g,\"entropy\":%.6g,\"probs\":{", ls,
                    r->confidence, r->margin, r->entropy);
            free(ls);
            json_decref(lab);
            for (size_t l = 0; l < n_labels; l++) {
                lab = json_string(labels[l]);
                ls = json_dumps(lab, JSON_ENCODE_ANY);
                fprintf(out, "%s%s:%.6g", l ? "," : "", ls, r->probs[l]);
                free(ls);
                json_decref(lab);
            }
            fprintf(out, "}}\n");
            sl_classify_result_free(r);
        }
        cli_progress("classify", i + k, rows.n);
    }
    free(texts);
    rc = 0;
out:
    if (out && out != stdout) fclose(out);
    else if (out) fflush(out);
    free(res);
    sl_classifier_free(c);
    setup_free(&su);
    rows_free(&rows);
    free(store);
    free(labels);
    free(head_labels);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* calibrate                                                                 */
/* ------------------------------------------------------------------------ */

static const char *calibrate_usage =
    "usage: sluice calibrate -m MODEL --labels a,b,c --input labelled.jsonl|.csv [options]\n"
    "   or: sluice calibrate CONFIG.yaml --route R --results FILE ...  (a route's threshold with a\n"
    "       guarantee, from `sluice eval` results: sluice calibrate CONFIG.yaml --help)\n"
    "  --label-field NAME       field holding the true label (default label)\n"
    "  --text-field NAME        field holding the text (default text)\n"
    "  --instruction TEXT  --prompt MODE  --max-chars N  -c N  -t N  (as in 'sluice classify')\n"
    "  --holdout F              fraction held out to measure ECE (default 0.5)\n"
    "  --limit N                use N evenly spaced labelled rows (default all)\n"
    "Fits the temperature T on the other rows, prints ECE (15 bins) before and after\n"
    "on the held-out rows, the reliability tables, and T for --calibration.\n";

int cmd_calibrate(int argc, char **argv)
{
    /* `sluice calibrate CONFIG.yaml --route R ...`: a route's threshold (cmd_calibrate_route.c) */
    const char *ext = argc > 1 ? strrchr(argv[1], '.') : NULL;
    if (ext && (!strcmp(ext, ".yaml") || !strcmp(ext, ".yml"))) return cmd_calibrate_route(argc, argv);
    const char *model = NULL, *labels_s = NULL, *instruction = NULL, *input = NULL, *mode_s = NULL;
    const char *text_field = "text", *label_field = "label";
    double holdout = 0.5;
    long long n_ctx = 0, threads = 0, limit = 0, max_chars = 0;
    const struct cli_opt opts[] = {
        {"-m", "--model", CLI_STR, &model, 0, 0},
        {NULL, "--labels", CLI_STR, &labels_s, 0, 0},
        {NULL, "--instruction", CLI_STR, &instruction, 0, 0},
        {NULL, "--prompt", CLI_STR, &mode_s, 0, 0},
        {NULL, "--input", CLI_STR, &input, 0, 0},
        {NULL, "--text-field", CLI_STR, &text_field, 0, 0},
        {NULL, "--label-field", CLI_STR, &label_field, 0, 0},
        {NULL, "--max-chars", CLI_INT, &max_chars, 0, 1 << 30},
        {NULL, "--holdout", CLI_FLOAT, &holdout, 0.05, 0.95},
        {NULL, "--limit", CLI_INT, &limit, 0, 1 << 30},
        {"-c", "--ctx-size", CLI_INT, &n_ctx, 16, 1 << 20},
        {"-t", "--threads", CLI_INT, &threads, 1, 1024},
    };
    struct sl_err err = {0};
    struct setup su = {0};
    struct rows rows = {0};
    struct sl_classifier *c = NULL;
    char *store = NULL;
    const char **labels = NULL;
    size_t n_labels = 0, n = 0, n_fit = 0, n_hold = 0;
    float *s_fit = NULL, *s_hold = NULL;
    int32_t *y_fit = NULL, *y_hold = NULL;
    enum sl_prompt_mode mode;
    int rc = cli_parse("calibrate", calibrate_usage, argc, argv, opts, sizeof opts / sizeof *opts, NULL, 0, NULL);
    if (rc) return rc < 0 ? 0 : rc;
    if (!model) return cli_usage("calibrate", "-m MODEL is required");
    if (!labels_s) return cli_usage("calibrate", "--labels a,b,c is required");
    if (!input) return cli_usage("calibrate", "--input FILE is required");
    if ((rc = parse_mode("calibrate", mode_s, &mode))) return rc;
    if (split_labels(labels_s, &store, &labels, &n_labels) ||
        read_rows(input, text_field, label_field, NULL, (size_t)max_chars, &rows, &err)) {
        rc = cli_fail(&err, NULL);
        goto out; /* bad input */
    }
    n = limit > 0 ? SL_MIN(rows.n, (size_t)limit) : rows.n;
    if (n < rows.n) {
        /* evenly spaced rows: labelled files are often sorted by label */
        for (size_t i = 0; i < n; i++) {
            size_t k = (size_t)((double)i * (double)rows.n / (double)n);
            struct row t = rows.v[i];
            rows.v[i] = rows.v[k];
            rows.v[k] = t;
        }
    }
    for (size_t i = 0; i < n; i++) {
        bool known = false;
        for (size_t l = 0; l < n_labels && !known; l++) known = !strcmp(rows.v[i].label, labels[l]);
        if (!known) {
            sl_err_set(&err, SL_EINVAL, "%s line %ld: label '%s' is not one of --labels", input, rows.v[i].line,
                       rows.v[i].label);
            rc = cli_fail(&err, "every labelled row must carry one of the --labels");
            goto out; /* bad label */
        }
    }
    if ((rc = load(model, n_ctx, threads, &su, &err))) goto out; /* bad model */
    struct sl_classify_task task = sl_classify_default_task();
    task.labels = labels;
    task.n_labels = n_labels;
    task.instruction = instruction;
    task.mode = mode;
    if (sl_classifier_init(&c, su.ctx, &task, &err)) {
        rc = cli_fail(&err, NULL);
        goto out; /* bad task */
    }
    s_fit = malloc(n * n_labels * sizeof *s_fit);
    s_hold = malloc(n * n_labels * sizeof *s_hold);
    y_fit = malloc(n * sizeof *y_fit);
    y_hold = malloc(n * sizeof *y_hold);
    if (!s_fit || !s_hold || !y_fit || !y_hold) {
        rc = cli_fail(&(struct sl_err){SL_ENOMEM, "out of memory"}, NULL);
        goto out; /* allocation failure */
    }
    cli_progress("calibrate", 0, n);
    for (size_t i0 = 0; i0 < n; i0 += 8) {
        struct sl_classify_result r[8];
        const char *texts[8];
        size_t k = SL_MIN((size_t)8, n - i0);
        for (size_t j = 0; j < k; j++) texts[j] = rows.v[i0 + j].text;
        if (sl_classify_batch(c, texts, k, r, &err)) {
            rc = cli_fail(&err, err.code == SL_ERANGE ? "raise --ctx-size or cut texts with --max-chars" : NULL);
            goto out; /* classification failed */
        }
        for (size_t j = 0; j < k; j++) {
            size_t i = i0 + j;
            int32_t y = 0;
            for (size_t l = 0; l < n_labels; l++)
                if (!strcmp(rows.v[i].label, labels[l])) y = (int32_t)l;
            /* deterministic interleaved split */
            bool hold = (double)((i * 2654435761u) % 1000u) < holdout * 1000.0;
            float *dst = hold ? s_hold + n_hold * n_labels : s_fit + n_fit * n_labels;
            memcpy(dst, r[j].scores, n_labels * sizeof *dst);
            if (hold) y_hold[n_hold++] = y;
            else y_fit[n_fit++] = y;
            sl_classify_result_free(&r[j]);
        }
        cli_progress("calibrate", i0 + k, n);
    }
    if (n_fit == 0 || n_hold == 0) {
        sl_err_set(&err, SL_EINVAL, "need rows on both sides of the split (%zu fit, %zu held out)", n_fit, n_hold);
        rc = cli_fail(&err, "use more rows or change --holdout");
        goto out; /* too few rows */
    }
    float t;
    struct sl_calib_report before, after;
    char table[4096];
    if (sl_calib_fit_temperature(s_fit, y_fit, n_fit, n_labels, &t, &err) ||
        sl_calib_report(s_hold, y_hold, n_hold, n_labels, 1.0f, &before, &err) ||
        sl_calib_report(s_hold, y_hold, n_hold, n_labels, t, &after, &err)) {
        rc = cli_fail(&err, NULL);
        goto out; /* cannot happen with checked labels */
    }
    printf("rows: %zu (fit %zu, held out %zu), labels: %zu\n", n, n_fit, n_hold, n_labels);
    printf("accuracy (held out): %.4f\n", before.accuracy);
    printf("temperature: %.4f\n", t);
    printf("ECE (held out, 15 bins): %.4f before, %.4f after\n", before.ece, after.ece);
    printf("NLL (held out): %.4f before, %.4f after\n", before.nll, after.nll);
    printf("\nreliability before (T=1):\n%s", sl_calib_table(&before, table, sizeof table));
    printf("\nreliability after (T=%.4f):\n%s", t, sl_calib_table(&after, table, sizeof table));
    printf("\nuse: sluice classify ... --calibration %.4f\n", t);
    rc = 0;
out:
    free(s_fit);
    free(s_hold);
    free(y_fit);
    free(y_hold);
    sl_classifier_free(c);
    setup_free(&su);
    rows_free(&rows);
    free(store);
    free(labels);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* extract                                                                   */
/* ------------------------------------------------------------------------ */

static const char *extract_usage =
    "usage: sluice extract -m MODEL --schema SCHEMA.json --input FILE.jsonl|FILE.csv [options]\n"
    "  --schema FILE            JSON Schema of the output (subset: docs/tasks.md)\n"
    "  --instruction TEXT       what to extract (default: a generic instruction)\n"
    "  --prompt MODE            auto, chat, plain, raw\n"
    "  --text-field NAME  --id-field NAME  --max-chars N  (as in 'sluice classify')\n"
    "  --max-tokens N           generation budget per input (default 512)\n"
    "  --max-string N           bound strings without maxLength (default: unbounded)\n"
    "  --max-items N            bound arrays without maxItems (default: unbounded)\n"
    "  --temp T  --seed S       sampling (default greedy)\n"
    "  --print-grammar          print the grammar the schema compiles to, and exit\n"
    "  -o, --output FILE  -c N  -t N\n"
    "output lines: {\"id\", \"output\": {...}, \"confidence\": {\"min\", \"mean\"},\n"
    "               \"fields\": {\"/json/pointer\": {\"min\", \"mean\"}}} or {\"id\", \"error\"}\n";

int cmd_extract(int argc, char **argv)
{
    const char *model = NULL, *schema_path = NULL, *instruction = NULL, *input = NULL, *out_path = NULL;
    const char *text_field = "text", *id_field = "id", *mode_s = NULL;
    long long n_ctx = 0, threads = 0, max_tokens = 512, max_string = 0, max_items = 0, seed = 42, max_chars = 0;
    double temp = 0;
    bool print_grammar = false;
    const struct cli_opt opts[] = {
        {"-m", "--model", CLI_STR, &model, 0, 0},
        {NULL, "--schema", CLI_STR, &schema_path, 0, 0},
        {NULL, "--instruction", CLI_STR, &instruction, 0, 0},
        {NULL, "--prompt", CLI_STR, &mode_s, 0, 0},
        {NULL, "--input", CLI_STR, &input, 0, 0},
        {NULL, "--text-field", CLI_STR, &text_field, 0, 0},
        {NULL, "--id-field", CLI_STR, &id_field, 0, 0},
        {NULL, "--max-chars", CLI_INT, &max_chars, 0, 1 << 30},
        {NULL, "--max-tokens", CLI_INT, &max_tokens, 1, 1 << 20},
        {NULL, "--max-string", CLI_INT, &max_string, 0, 10000},
        {NULL, "--max-items", CLI_INT, &max_items, 0, 10000},
        {NULL, "--temp", CLI_FLOAT, &temp, 0, 100},
        {NULL, "--seed", CLI_INT, &seed, 0, 9007199254740992.0},
        {NULL, "--print-grammar", CLI_FLAG, &print_grammar, 0, 0},
        {"-o", "--output", CLI_STR, &out_path, 0, 0},
        {"-c", "--ctx-size", CLI_INT, &n_ctx, 16, 1 << 20},
        {"-t", "--threads", CLI_INT, &threads, 1, 1024},
    };
    struct sl_err err = {0};
    struct setup su = {0};
    struct rows rows = {0};
    struct sl_extractor *x = NULL;
    json_t *schema = NULL;
    FILE *out = NULL;
    enum sl_prompt_mode mode;
    size_t n_failed = 0;
    int rc = cli_parse("extract", extract_usage, argc, argv, opts, sizeof opts / sizeof *opts, NULL, 0, NULL);
    if (rc) return rc < 0 ? 0 : rc;
    if (!schema_path) return cli_usage("extract", "--schema FILE is required");
    if ((rc = parse_mode("extract", mode_s, &mode))) return rc;
    json_error_t je;
    if (!(schema = json_load_file(schema_path, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je))) {
        sl_err_set(&err, SL_EFORMAT, "%s: line %d: %s", schema_path, je.line, je.text);
        return cli_fail(&err, NULL);
    }
    struct sl_extract_task task = sl_extract_default_task();
    task.schema = schema;
    task.instruction = instruction;
    task.mode = mode;
    task.max_tokens = (int32_t)max_tokens;
    task.opts.max_string = (int32_t)max_string;
    task.opts.max_items = (int32_t)max_items;
    task.sampling.temp = (float)temp;
    task.sampling.seed = (uint64_t)seed;
    if (print_grammar) {
        char *g = NULL;
        if (sl_schema_to_grammar(schema, &task.opts, &g, &err)) {
            rc = cli_fail(&err, NULL);
            goto out; /* unsupported schema */
        }
        fputs(g, stdout);
        free(g);
        rc = 0;
        goto out;
    }
    if (!model) {
        rc = cli_usage("extract", "-m MODEL is required");
        goto out; /* usage */
    }
    if (!input) {
        rc = cli_usage("extract", "--input FILE is required");
        goto out; /* usage */
    }
    if (read_rows(input, text_field, NULL, id_field, (size_t)max_chars, &rows, &err)) {
        rc = cli_fail(&err, NULL);
        goto out; /* bad input */
    }
    if ((rc = load(model, n_ctx, threads, &su, &err))) goto out; /* bad model */
    if (sl_extractor_init(&x, su.ctx, &task, &err)) {
        rc = cli_fail(&err, err.code == SL_EUNSUPPORTED ? "docs/tasks.md lists the supported schema subset" : NULL);
        goto out; /* unsupported schema */
    }
    if (!(out = open_out(out_path, &err))) {
        rc = cli_fail(&err, NULL);
        goto out; /* cannot write */
    }
    cli_progress("extract", 0, rows.n);
    for (size_t i = 0; i < rows.n; i++) {
        struct sl_extract_result r;
        if (rows.v[i].id) fprintf(out, "{\"id\":%s,", rows.v[i].id);
        else fprintf(out, "{\"line\":%ld,", rows.v[i].line);
        if (sl_extract(x, rows.v[i].text, &r, &err)) {
            json_t *m = json_string(err.msg);
            char *ms = json_dumps(m, JSON_ENCODE_ANY);
            fprintf(out, "\"error\":%s}\n", ms ? ms : "\"?\"");
            free(ms);
            json_decref(m);
            n_failed++;
        } else {
            fprintf(out, "\"output\":%s,\"confidence\":{\"min\":%.6g,\"mean\":%.6g},\"fields\":{", r.output, r.p_min,
                    r.p_mean);
            for (size_t f = 0; f < r.n_fields; f++) {
                json_t *p = json_string(r.fields[f].path);
                char *ps = json_dumps(p, JSON_ENCODE_ANY);
                fprintf(out, "%s%s:{\"min\":%.6g,\"mean\":%.6g}", f ? "," : "", ps ? ps : "\"?\"", r.fields[f].p_min,
                        r.fields[f].p_mean);
                free(ps);
                json_decref(p);
            }
            fprintf(out, "}}\n");
            sl_extract_result_free(&r);
        }
        cli_progress("extract", i + 1, rows.n);
    }
    if (n_failed) {
        sl_err_set(&err, SL_ERANGE, "%zu of %zu inputs failed (see their \"error\" lines)", n_failed, rows.n);
        rc = cli_fail(&err, "raise --max-tokens, or bound the schema with maxLength/maxItems");
        goto out;
    }
    rc = 0;
out:
    if (out && out != stdout) fclose(out);
    else if (out) fflush(out);
    sl_extractor_free(x);
    json_decref(schema);
    setup_free(&su);
    rows_free(&rows);
    return rc;
}
