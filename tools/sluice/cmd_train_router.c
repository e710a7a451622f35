/*
 * cmd_train_router.c - `sluice train-router`: train the learned router of
 * a `predict` route from evaluation results (tools layer).
 *
 * Label: the route's first tier answered wrong (results.jsonl, target =
 * the first tier). Features: exactly what the router computes when it
 * scores a request (sl_predictor_featurize: the first tier's embedding with
 * --embd, the length, hashed n-grams), so training and serving cannot
 * drift. Model: L2-regularised logistic regression by full-batch Adam
 * (src/eval/router_lr.c's trainer on the same features as sparse rows;
 * deterministic). The examples are split by --seed; the router is trained
 * on one part and measured on the held-out part against a random router:
 * AUC, and the RouteLLM metrics (APGR, CPT(50%), CPT(80%), the cost saving
 * at 95% of the large tier's quality). The saved router is the one trained
 * on the training part, so the numbers describe the file that is written.
 *
 * With --replay DIR-OR-CSV the examples and the tiers' correctness come
 * from recorded answers (RouteLLM's MMLU/GSM8K files, as `sluice replay`
 * reads them) instead of a config and results.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config/config.h"
#include "engine/forward.h"
#include "engine/model.h"
#include "eval/csv.h"
#include "eval/replay.h"
#include "eval/results.h"
#include "eval/router_lr.h"
#include "router/predict.h"
#include "train/head.h"
#include "train/train.h"

static const char *tr_usage =
    "usage: sluice train-router CONFIG.yaml --route R --results FILE --data EXAMPLES --out ROUTER.gguf\n"
    "       sluice train-router --replay DIR-OR-CSV --out ROUTER.gguf\n"
    "Train a predict route's router: P(the first tier answers wrong) from features sluice\n"
    "computes locally, measured on a held-out split against a random router (docs/router.md).\n"
    "\n"
    "  --route R          the route (its first tier is the small model, its last the large one)\n"
    "  --results FILE     results.jsonl from `sluice eval` (which tier was right on each example)\n"
    "  --data FILE        the examples given to `sluice eval` (JSONL or CSV), for their text\n"
    "  --input-field F    the text field of --data (default input)\n"
    "  --id-field F       the id field of --data (default id; absent: the 1-based row number)\n"
    "  --replay PATH      RouteLLM-style recorded answers instead of CONFIG/--results/--data\n"
    "  --out FILE         the router to write (GGUF; set routes.R.predict.model to it)\n"
    "  --embd             add the first tier's embedding of each input (loads its local model)\n"
    "  -m, --model FILE   the GGUF model to embed with (default: the first tier's, from CONFIG;\n"
    "                     required for --embd with --replay)\n"
    "  --hash-dim N       hashed n-gram features (default 4096; 0 = none)\n"
    "  --seed S           the split (default 0)\n"
    "  --test-frac F      held-out share (default 0.3; 0.5 with --replay)\n"
    "  --l2 X             L2 weight (default 1e-4)     --iters N   Adam steps (default 300)\n"
    "  --small NAME  --large NAME   results targets (default: the route's first and last tier)\n"
    "  -c, --ctx-size N   tokens embedded per input with --embd (default 512)\n"
    "  -t, --threads N    threads for --embd (default: all CPUs)\n";

static void on_progress(void *ctx, int done, int total)
{
    cli_progress((const char *)ctx, (uint64_t)done, (uint64_t)total);
}

static void on_embed_progress(void *user, const struct sl_train_progress *p)
{
    cli_progress((const char *)user, (uint64_t)p->done, (uint64_t)p->total);
}

/* The examples the router learns from. */
struct tset {
    size_t n;
    char **text;       /* (n) owned */
    uint8_t *y;        /* (n) 1 = the first tier was wrong */
    uint8_t *small_ok, *large_ok;
    double *cost_small, *cost_large; /* per request; replay: 0 and 1 */
    bool have_large;   /* large correctness known for every example */
    size_t n_no_text, n_unknown;
};

static void tset_free(struct tset *t)
{
    for (size_t i = 0; i < t->n; i++) free(t->text[i]);
    free(t->text);
    free(t->y);
    free(t->small_ok);
    free(t->large_ok);
    free(t->cost_small);
    free(t->cost_large);
    memset(t, 0, sizeof *t);
}

static int tset_alloc(struct tset *t, size_t n, struct sl_err *err)
{
    size_t k = n ? n : 1;
    t->text = calloc(k, sizeof *t->text);
    t->y = calloc(k, 1);
    t->small_ok = calloc(k, 1);
    t->large_ok = calloc(k, 1);
    t->cost_small = calloc(k, sizeof *t->cost_small);
    t->cost_large = calloc(k, sizeof *t->cost_large);
    if (!t->text || !t->y || !t->small_ok || !t->large_ok || !t->cost_small || !t->cost_large)
        return sl_err_set(err, SL_ENOMEM, "out of memory for %zu examples", n);
    return 0;
}

/* ---- the examples file: id -> text -------------------------------------- */

struct ex {
    char *id, *text;
};

static int cmp_ex(const void *a, const void *b)
{
    return strcmp(((const struct ex *)a)->id, ((const struct ex *)b)->id);
}

static char *read_file(const char *path, size_t *len, struct sl_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        sl_err_set(err, SL_EIO, "cannot open '%s'", path);
        return NULL;
    }
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 1 << 16;
            char *nb = cap <= SL_RESULTS_MAX_FILE ? realloc(buf, cap + 1) : NULL;
            if (!nb) {
                free(buf);
                fclose(f);
                sl_err_set(err, SL_ENOMEM, "'%s' is too large to read", path);
                return NULL;
            }
            buf = nb;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        sl_err_set(err, SL_EIO, "cannot read '%s'", path);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

static char *num_id(size_t k)
{
    char b[32];
    snprintf(b, sizeof b, "%zu", k);
    return strdup(b);
}

/* Reads id and text of every example (JSONL objects, or CSV with a header),
 * sorted by id for lookup. Ids follow `sluice eval`: the id field as text,
 * else the 1-based row number. */
static int read_examples(const char *path, const char *input_f, const char *id_f, struct ex **out,
                         size_t *n_out, struct sl_err *err)
{
    size_t len = 0, n = 0, cap = 0;
    struct ex *v = NULL;
    int rc = 0;
    char *buf = read_file(path, &len, err);
    if (!buf) return err->code;
    size_t pl = strlen(path);
    bool csv = pl > 4 && !strcmp(path + pl - 4, ".csv");
    if (csv) {
        struct sl_csv_field f[SL_CSV_MAX_FIELDS];
        size_t pos = 0, nf = 0, rec = 0;
        int ci = -1, cid = -1;
        if ((rc = sl_csv_next(buf, len, &pos, f, SL_CSV_MAX_FIELDS, &nf, err)) != 1) {
            if (rc == 0) rc = sl_err_set(err, SL_EFORMAT, "%s: empty", path);
            goto out; /* no header */
        }
        for (size_t i = 0; i < nf; i++) {
            if (sl_csv_field_eq(&f[i], input_f)) ci = (int)i;
            if (sl_csv_field_eq(&f[i], id_f)) cid = (int)i;
        }
        if (ci < 0) {
            rc = sl_err_set(err, SL_EFORMAT, "%s: the header has no column '%s'", path, input_f);
            goto out; /* no text column */
        }
        while ((rc = sl_csv_next(buf, len, &pos, f, SL_CSV_MAX_FIELDS, &nf, err)) == 1) {
            rec++;
            if ((size_t)ci >= nf) {
                rc = sl_err_set(err, SL_EFORMAT, "%s record %zu: no column %d", path, rec, ci + 1);
                goto out; /* short record */
            }
            if (n == cap) {
                cap = cap ? 2 * cap : 1024;
                struct ex *nv = realloc(v, cap * sizeof *nv);
                if (!nv) goto oom;
                v = nv;
            }
            size_t tl = sl_csv_field_len(&f[ci]);
            struct ex e = {NULL, malloc(tl + 1)};
            if (e.text) sl_csv_field_copy(&f[ci], e.text, tl + 1);
            if (cid >= 0 && (size_t)cid < nf && sl_csv_field_len(&f[cid]) > 0) {
                size_t il = sl_csv_field_len(&f[cid]);
                if ((e.id = malloc(il + 1))) sl_csv_field_copy(&f[cid], e.id, il + 1);
            } else {
                e.id = num_id(rec);
            }
            v[n++] = e;
            if (!e.id || !e.text) goto oom;
        }
        if (rc < 0) goto out; /* bad CSV (err set) */
        rc = 0;
    } else {
        const char *p = buf, *end = buf + len;
        size_t line = 0, rec = 0;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p)), *e = nl ? nl : end, *q = p;
            line++;
            while (q < e && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
            if (q == e) {
                p = e + 1;
                continue;
            }
            json_error_t je;
            json_t *o = json_loadb(p, (size_t)(e - p), 0, &je);
            const json_t *in = o ? json_object_get(o, input_f) : NULL, *id = o ? json_object_get(o, id_f) : NULL;
            if (!json_is_string(in)) {
                json_decref(o);
                rc = sl_err_set(err, SL_EFORMAT, "%s line %zu: %s", path, line,
                                o ? "no string field for the text (see --input-field)" : "not a JSON object");
                goto out; /* bad line */
            }
            rec++;
            if (n == cap) {
                cap = cap ? 2 * cap : 1024;
                struct ex *nv = realloc(v, cap * sizeof *nv);
                if (!nv) {
                    json_decref(o);
                    goto oom;
                }
                v = nv;
            }
            struct ex x = {NULL, strdup(json_string_value(in))};
            if (json_is_string(id))
                x.id = strdup(json_string_value(id));
            else if (json_is_integer(id))
                x.id = num_id((size_t)json_integer_value(id));
            else
                x.id = num_id(rec);
            json_decref(o);
            v[n++] = x;
            if (!x.id || !x.text) goto oom;
            p = e + 1;
        }
    }
    qsort(v, n, sizeof *v, cmp_ex);
    goto out;
oom:
    rc = sl_err_set(err, SL_ENOMEM, "out of memory reading '%s'", path);
out:
    free(buf);
    if (rc) {
        for (size_t i = 0; i < n; i++) {
            free(v[i].id);
            free(v[i].text);
        }
        free(v);
        return rc;
    }
    *out = v;
    *n_out = n;
    return 0;
}

/* ---- building the training set ------------------------------------------ */

static int from_results(struct tset *t, const struct sl_results *r, const char *small, const char *large,
                        struct ex *ex, size_t n_ex, struct sl_err *err)
{
    int ts = sl_results_target(r, small), tl = large ? sl_results_target(r, large) : -1;
    if (ts < 0) return sl_err_set(err, SL_ENOTFOUND, "results have no target '%s'", small);
    int rc = tset_alloc(t, r->n, err);
    if (rc) return rc;
    t->have_large = tl >= 0;
    for (size_t i = 0; i < r->n; i++) {
        const struct sl_result_cell *s = sl_results_cell(r, i, ts);
        const struct sl_result_cell *l = tl >= 0 ? sl_results_cell(r, i, tl) : NULL;
        bool s_err = s->present && s->error;
        if (!s->present || (!s_err && s->correct < 0)) {
            t->n_unknown++;
            continue;
        }
        bool l_known = l && l->present && (l->error || l->correct >= 0);
        if (tl >= 0 && !l_known) {
            t->n_unknown++;
            continue;
        }
        struct ex key = {r->id[i], NULL}, *hit = bsearch(&key, ex, n_ex, sizeof *ex, cmp_ex);
        if (!hit) {
            t->n_no_text++;
            continue;
        }
        size_t k = t->n;
        if (!(t->text[k] = strdup(hit->text))) return sl_err_set(err, SL_ENOMEM, "out of memory");
        t->small_ok[k] = !s_err && s->correct == 1;
        t->y[k] = !t->small_ok[k];
        t->large_ok[k] = l && !l->error && l->correct == 1;
        t->cost_small[k] = isnan(s->cost) ? 0 : s->cost;
        t->cost_large[k] = l && !isnan(l->cost) ? l->cost : 0;
        t->n++;
    }
    if (t->n < 10)
        return sl_err_set(err, SL_EINVAL,
                          "only %zu usable examples (%zu without text in --data, %zu with a tier's "
                          "correctness unknown); need at least 10",
                          t->n, t->n_no_text, t->n_unknown);
    return 0;
}

static int from_replay(struct tset *t, const char *path, struct sl_err *err)
{
    struct sl_replay_data d = {0};
    int rc = sl_replay_load(&d, path, err);
    if (rc) return rc;
    if ((rc = tset_alloc(t, d.n, err))) goto out;
    t->have_large = true;
    for (size_t i = 0; i < d.n; i++) {
        t->text[i] = d.prompt[i];
        d.prompt[i] = NULL; /* moved */
        t->small_ok[i] = d.small_ok[i];
        t->large_ok[i] = d.large_ok[i];
        t->y[i] = !d.small_ok[i];
        t->cost_small[i] = 0; /* RouteLLM's convention: count large calls only */
        t->cost_large[i] = 1;
    }
    t->n = d.n;
    if (t->n < 10) rc = sl_err_set(err, SL_EINVAL, "only %zu examples in '%s'", t->n, path);
out:
    sl_replay_free(&d);
    return rc;
}

/* ---- features, metrics -------------------------------------------------- */

/* Sparse rows of sl_predictor_featurize's dense vectors. */
static int featurize_all(struct sl_lr_rows *X, const struct tset *t, int32_t embd_dim, uint32_t hash_dim,
                         const float *embd, struct sl_err *err)
{
    size_t dim = (size_t)embd_dim + 1 + hash_dim, cap = 0, nnz = 0;
    float *dense = malloc(dim * sizeof *dense);
    memset(X, 0, sizeof *X);
    X->dim = dim;
    X->n_rows = t->n;
    X->row_ptr = malloc((t->n + 1) * sizeof *X->row_ptr);
    if (!dense || !X->row_ptr) goto oom;
    X->row_ptr[0] = 0;
    for (size_t r = 0; r < t->n; r++) {
        sl_predictor_featurize(embd_dim, hash_dim, t->text[r], strlen(t->text[r]),
                               embd ? embd + r * (size_t)embd_dim : NULL, dense);
        for (size_t j = 0; j < dim; j++) {
            if (dense[j] == 0) continue;
            if (nnz == cap) {
                cap = cap ? 2 * cap : 65536;
                uint32_t *ni = realloc(X->idx, cap * sizeof *ni);
                if (!ni) goto oom;
                X->idx = ni;
                float *nv = realloc(X->val, cap * sizeof *nv);
                if (!nv) goto oom;
                X->val = nv;
            }
            X->idx[nnz] = (uint32_t)j;
            X->val[nnz++] = dense[j];
        }
        X->row_ptr[r + 1] = nnz;
    }
    free(dense);
    return 0;
oom:
    free(dense);
    sl_lr_rows_free(X);
    return sl_err_set(err, SL_ENOMEM, "out of memory for the features of %zu examples", t->n);
}

struct scored {
    double s;
    uint8_t y;
};

static int cmp_scored(const void *a, const void *b)
{
    double x = ((const struct scored *)a)->s, y = ((const struct scored *)b)->s;
    return (x > y) - (x < y);
}

/* Area under the ROC curve (ties count half); NaN with one class only. */
static double auc(const double *s, const uint8_t *y, size_t n)
{
    struct scored *v = malloc((n ? n : 1) * sizeof *v);
    if (!v) return NAN;
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        v[i] = (struct scored){s[i], y[i]};
        pos += y[i] != 0;
    }
    qsort(v, n, sizeof *v, cmp_scored);
    double rank_sum = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && v[j].s == v[i].s) j++;
        double avg = 0.5 * (double)(i + 1 + j); /* mean of ranks i+1 .. j */
        for (size_t k = i; k < j; k++)
            if (v[k].y) rank_sum += avg;
        i = j;
    }
    free(v);
    size_t neg = n - pos;
    if (!pos || !neg) return NAN;
    return (rank_sum - (double)pos * ((double)pos + 1) / 2) / ((double)pos * (double)neg);
}

/* ---- the command ---------------------------------------------------------- */

static const char *local_model_path(const struct sl_config *c, const char *tier)
{
    const struct sl_backend_config *b = sl_config_backend(c, tier);
    const char *model = b ? (b->kind == SL_BACKEND_KIND_LOCAL ? b->model : NULL) : tier;
    for (size_t i = 0; model && i < c->n_models; i++)
        if (!strcmp(c->models[i].name, model)) return c->models[i].path;
    return NULL;
}

static int embed_all(float **out, int32_t *dim, const char *path, const struct tset *t, long long n_ctx,
                     long long threads, struct sl_err *err)
{
    struct sl_model *m = NULL;
    struct sl_ctx *ctx = NULL;
    int rc = sl_model_load(&m, path, true, err);
    if (rc) return rc;
    struct sl_ctx_params cp = sl_ctx_default_params();
    cp.n_ctx = (int32_t)n_ctx;
    cp.n_batch = (int32_t)n_ctx;
    cp.n_threads = (int)threads;
    cp.embeddings = true;
    cp.no_logits = true;
    if ((rc = sl_ctx_init(&ctx, m, &cp, err))) goto out;
    *dim = m->hp.n_embd;
    fprintf(stderr, "embedding %zu inputs with %s (%d-wide)\n", t->n, path, m->hp.n_embd);
    rc = sl_embed_texts(ctx, t->text, t->n, NULL, out, on_embed_progress, (void *)"embedding", err);
out:
    sl_ctx_free(ctx);
    sl_model_free(m);
    return rc;
}

int cmd_train_router(int argc, char **argv)
{
    const char *route = NULL, *results = NULL, *data = NULL, *replay = NULL, *out_path = NULL;
    const char *input_f = "input", *id_f = "id", *small = NULL, *large = NULL, *model = NULL;
    long long hash_dim = 4096, seed = 0, iters = 300, n_ctx = 512, threads = 0;
    double test_frac = NAN, l2 = 1e-4;
    bool use_embd = false;
    const struct cli_opt opts[] = {
        {NULL, "--route", CLI_STR, &route, 0, 0},
        {NULL, "--results", CLI_STR, &results, 0, 0},
        {NULL, "--data", CLI_STR, &data, 0, 0},
        {NULL, "--replay", CLI_STR, &replay, 0, 0},
        {"-o", "--out", CLI_STR, &out_path, 0, 0},
        {NULL, "--input-field", CLI_STR, &input_f, 0, 0},
        {NULL, "--id-field", CLI_STR, &id_f, 0, 0},
        {NULL, "--embd", CLI_FLAG, &use_embd, 0, 0},
        {"-m", "--model", CLI_STR, &model, 0, 0},
        {NULL, "--hash-dim", CLI_INT, &hash_dim, 0, 1 << 22},
        {NULL, "--seed", CLI_INT, &seed, 0, 9e15},
        {NULL, "--test-frac", CLI_FLOAT, &test_frac, 0.05, 0.95},
        {NULL, "--l2", CLI_FLOAT, &l2, 0, 100},
        {NULL, "--iters", CLI_INT, &iters, 1, 100000},
        {NULL, "--small", CLI_STR, &small, 0, 0},
        {NULL, "--large", CLI_STR, &large, 0, 0},
        {"-c", "--ctx-size", CLI_INT, &n_ctx, 8, 1 << 16},
        {"-t", "--threads", CLI_INT, &threads, 0, 1024},
    };
    const char *pos[1];
    int n_pos = 0;
    int rc = cli_parse("train-router", tr_usage, argc, argv, opts, sizeof opts / sizeof *opts, pos, 1, &n_pos);
    if (rc) return rc < 0 ? 0 : rc;
    if (!out_path) return cli_usage("train-router", "--out ROUTER.gguf is required");
    if (replay && (n_pos || results || data))
        return cli_usage("train-router", "--replay replaces CONFIG, --results and --data");
    if (replay && use_embd && !model)
        return cli_usage("train-router", "--embd with --replay needs -m MODEL.gguf (there is no config to find it in)");
    if (model && !use_embd) return cli_usage("train-router", "-m MODEL is for --embd");
    if (!replay && (n_pos != 1 || !route || !results || !data))
        return cli_usage("train-router", "give CONFIG.yaml --route R --results FILE --data FILE (or --replay PATH)");
    if (isnan(test_frac)) test_frac = replay ? 0.5 : 0.3;

    struct sl_err err = {0};
    struct sl_config c;
    bool have_c = false;
    struct sl_results res = {0};
    struct ex *ex = NULL;
    size_t n_ex = 0;
    struct tset t = {0};
    struct sl_lr_rows X = {0};
    struct sl_lr m = {0};
    struct sl_router_curve cv = {0}, cr = {0};
    struct sl_predictor *pr = NULL, *back = NULL;
    float *embd = NULL, *w = NULL;
    size_t *perm = NULL;
    double *score = NULL, *ts = NULL;
    uint8_t *ty = NULL, *tso = NULL, *tlo = NULL;
    int32_t embd_dim = 0;
    int exit_code = CLI_EXIT_ERR;
    double predict_threshold = 0.5;
    const char *hint = NULL;

    if (replay) {
        if (from_replay(&t, replay, &err)) {
            hint = "want CSV with a header 'prompt,<small model>,<large model>' and True/False cells";
            goto fail;
        }
        if (use_embd && embed_all(&embd, &embd_dim, model, &t, n_ctx, threads, &err)) goto fail;
    } else {
        if (sl_config_init(&c, &err)) goto fail;
        have_c = true;
        if (sl_config_load(&c, pos[0], &err)) goto fail;
        const struct sl_route_config *rt = sl_config_route(&c, route);
        if (!rt) {
            sl_err_set(&err, SL_ENOTFOUND, "%s has no route '%s'", pos[0], route);
            goto fail;
        }
        if (rt->n_tiers == 0 && !small) {
            sl_err_set(&err, SL_EINVAL, "route '%s' has no tiers", route);
            goto fail;
        }
        if (rt->policy == SL_ROUTE_PREDICT) predict_threshold = rt->predict_threshold;
        if (!small) small = rt->tiers[0];
        if (!large && rt->n_tiers > 1) large = rt->tiers[rt->n_tiers - 1];
        if (sl_results_load(&res, results, &err) ||
            read_examples(data, input_f, id_f, &ex, &n_ex, &err) ||
            from_results(&t, &res, small, large, ex, n_ex, &err)) {
            hint = t.n_no_text ? "the ids of --data must be the ids `sluice eval` wrote (see --id-field)" : NULL;
            goto fail;
        }
        if (t.n_no_text || t.n_unknown)
            fprintf(stderr, "sluice train-router: %zu examples left out (%zu without text in %s, %zu with "
                            "unknown correctness)\n",
                    t.n_no_text + t.n_unknown, t.n_no_text, data, t.n_unknown);
        if (use_embd) {
            const char *mp = model ? model : local_model_path(&c, small);
            if (!mp) {
                sl_err_set(&err, SL_EINVAL, "--embd: tier '%s' of route '%s' is not a local model of %s",
                           small, route, pos[0]);
                hint = "the embedding comes from the first tier's GGUF model (backends: kind: local)";
                goto fail;
            }
            if (embed_all(&embd, &embd_dim, mp, &t, n_ctx, threads, &err)) goto fail;
        }
    }

    /* split: the last test_frac of a seeded permutation is held out */
    size_t n = t.n, n_test = (size_t)llround((double)n * test_frac), n_train = n - n_test;
    if (n_test < 2 || n_train < 2) {
        sl_err_set(&err, SL_EINVAL, "%zu examples are too few to split", n);
        goto fail;
    }
    perm = malloc(n * sizeof *perm);
    score = malloc(n * sizeof *score);
    ts = malloc(n_test * sizeof *ts);
    ty = malloc(n_test);
    tso = malloc(n_test);
    tlo = malloc(n_test);
    if (!perm || !score || !ts || !ty || !tso || !tlo) {
        sl_err_set(&err, SL_ENOMEM, "out of memory");
        goto fail;
    }
    sl_eval_permutation(perm, n, (uint64_t)seed);
    const size_t *train = perm, *test = perm + n_train;
    size_t pos_train = 0;
    for (size_t k = 0; k < n_train; k++) pos_train += t.y[train[k]];
    if (pos_train == 0 || pos_train == n_train) {
        sl_err_set(&err, SL_EINVAL, "the first tier is %s on every training example: nothing to learn",
                   pos_train ? "wrong" : "right");
        goto fail;
    }

    /* features and training */
    if (featurize_all(&X, &t, embd_dim, (uint32_t)hash_dim, embd, &err)) goto fail;
    struct sl_lr_params lp = sl_lr_default_params();
    lp.l2 = l2;
    lp.iters = (int)iters;
    lp.progress = on_progress;
    lp.progress_ctx = (void *)"training router";
    if (sl_lr_train(&m, &X, t.y, train, n_train, &lp, &err)) goto fail;
    for (size_t i = 0; i < n; i++) score[i] = sl_lr_predict(&m, &X, i);

    /* the router file, and a check that it scores as trained */
    if (!(w = malloc(X.dim * sizeof *w))) {
        sl_err_set(&err, SL_ENOMEM, "out of memory");
        goto fail;
    }
    for (size_t j = 0; j < X.dim; j++) w[j] = (float)m.w[j];
    if (sl_predictor_new_linear(&pr, embd_dim, (uint32_t)hash_dim, w, (float)m.b, &err) ||
        sl_predictor_save(pr, out_path, &err) || sl_predictor_load(&back, out_path, &err))
        goto fail;
    for (size_t k = 0; k < SL_MIN(n_test, (size_t)50); k++) {
        size_t i = test[k];
        double s = sl_predictor_score(back, t.text[i], strlen(t.text[i]),
                                      embd ? embd + i * (size_t)embd_dim : NULL);
        if (!(fabs(s - score[i]) <= 1e-4)) {
            sl_err_set(&err, SL_EFORMAT, "%s scores example %zu as %.6f, training gave %.6f", out_path, i, s,
                       score[i]);
            hint = "the router file does not reproduce the trained model; please report this";
            goto fail;
        }
    }

    /* held-out measurements */
    size_t flagged = 0;
    double q_route = 0, c_route = 0, q_small = 0, q_large = 0, c_small = 0, c_large = 0;
    for (size_t k = 0; k < n_test; k++) {
        size_t i = test[k];
        ts[k] = score[i];
        ty[k] = t.y[i];
        tso[k] = t.small_ok[i];
        tlo[k] = t.large_ok[i];
        bool up = score[i] > predict_threshold;
        flagged += up;
        q_route += up ? t.large_ok[i] : t.small_ok[i];
        c_route += up ? t.cost_large[i] : t.cost_small[i];
        q_small += t.small_ok[i];
        q_large += t.large_ok[i];
        c_small += t.cost_small[i];
        c_large += t.cost_large[i];
    }
    double inv = 1.0 / (double)n_test, frac = (double)flagged * inv;
    printf("%zu examples: %zu to train, %zu held out (seed %lld)\n", n, n_train, n_test, seed);
    if (embd_dim)
        printf("features: embedding (%d) + length + %u hashed n-grams\n", embd_dim, (unsigned)hash_dim);
    else
        printf("features: length + %u hashed n-grams (no embedding)\n", (unsigned)hash_dim);
    printf("first tier wrong on %.1f%% of the held-out split; training loss %.4f\n",
           100 * (double)(n_test - (size_t)llround(q_small)) * inv, m.final_loss);
    printf("AUC (predicting 'first tier wrong', held-out): %.4f   (random 0.5)\n", auc(ts, ty, n_test));
    if (t.have_large) {
        if (sl_router_curve_compute(&cv, "router", ts, tso, tlo, n_test, &err) ||
            sl_router_curve_random(&cr, tso, tlo, n_test, &err))
            goto fail;
        printf("\n%-10s %7s %9s %9s %17s %14s\n", "held-out", "APGR", "CPT(50%)", "CPT(80%)",
               "large calls @95%", "saving @95%");
        const struct sl_router_curve *cs[2] = {&cv, &cr};
        const char *names[2] = {"router", "random"};
        for (int k = 0; k < 2; k++)
            printf("%-10s %7.3f %8.1f%% %8.1f%% %16.1f%% %13.1f%%\n", names[k], cs[k]->apgr, 100 * cs[k]->cpt50,
                   100 * cs[k]->cpt80, 100 * cs[k]->calls95, 100 * cs[k]->saving95);
        printf("(small tier %.1f%%, large tier %.1f%% on the held-out split)\n", 100 * q_small * inv,
               100 * q_large * inv);
        /* at the route's threshold, against a random router sending the same share */
        double q_rand = (q_small + frac * (q_large - q_small)) * inv;
        double c_rand = (c_small + frac * (c_large - c_small)) * inv;
        printf("\nat predict threshold %g: %.1f%% sent to '%s'; quality %.2f%% (random router with the same "
               "share: %.2f%%), cost per 1,000 %.4g (random %.4g)\n",
               predict_threshold, 100 * frac, large ? large : "large", 100 * q_route * inv, 100 * q_rand,
               1000 * c_route * inv, 1000 * c_rand);
    }
    printf("\nwrote %s (%zu weights; set routes.<route>.predict.model to it)\n", out_path, X.dim);
    exit_code = 0;
fail:
    if (exit_code) cli_fail(&err, hint);
    sl_predictor_free(pr);
    sl_predictor_free(back);
    sl_router_curve_free(&cv);
    sl_router_curve_free(&cr);
    sl_lr_rows_free(&X);
    sl_lr_free(&m);
    tset_free(&t);
    for (size_t i = 0; i < n_ex; i++) {
        free(ex[i].id);
        free(ex[i].text);
    }
    free(ex);
    free(embd);
    free(w);
    free(perm);
    free(score);
    free(ts);
    free(ty);
    free(tso);
    free(tlo);
    sl_results_free(&res);
    if (have_c) sl_config_free(&c);
    return exit_code;
}
