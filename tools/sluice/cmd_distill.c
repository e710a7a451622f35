/*
 * cmd_distill.c - `sluice distill` and `sluice promote` (tools layer): the
 * loop that makes the small model fit a task from what the large one says.
 *
 *   distill  label a pool of inputs with a teacher (another model + task, or
 *            the escalated requests of a route with the large model's answers
 *            from the request log), train a student head on the student
 *            model's embeddings (soft labels from the teacher's
 *            probabilities with --soft), and report agreement with the
 *            teacher and accuracy on an evaluation set before and after
 *   promote  compare a candidate head with the task's current classifier on
 *            an evaluation set (accuracy; escalation rate at the route's
 *            threshold) and, when quality holds and escalation falls, point
 *            the config's `head:` at it, keeping the previous config for
 *            --rollback
 *
 * The work is in src/train/head.c (training), src/tasks/classify.c
 * (classifying through a model + task + head) and src/store (the log).
 */
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "config/config.h"
#include "engine/forward.h"
#include "engine/model.h"
#include "router/router.h"
#include "server/server.h"
#include "store/store.h"
#include "tasks/classify.h"
#include "train/data.h"
#include "train/head.h"

#define GROUP 8 /* inputs classified per call */

/* ------------------------------------------------------------------------ */
/* a classifier made of a config's task, a model and an optional head        */
/* ------------------------------------------------------------------------ */

struct clf {
    struct sl_model *m;
    struct sl_ctx *ctx;
    struct sl_classifier *c;
};

static void clf_free(struct clf *k)
{
    sl_classifier_free(k->c);
    sl_ctx_free(k->ctx);
    sl_model_free(k->m);
    memset(k, 0, sizeof *k);
}

static const struct sl_model_config *find_model(const struct sl_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_models; i++)
        if (!strcmp(cfg->models[i].name, name)) return &cfg->models[i];
    return NULL;
}

/* The task t of the config classified by model `model` (a models: name)
 * through `head` (NULL: label scoring). */
static int clf_open(struct clf *k, const struct sl_config *cfg, const struct sl_task_config *t,
                    const char *model, const char *head, long long threads, struct sl_err *err)
{
    const struct sl_model_config *mc = find_model(cfg, model);
    memset(k, 0, sizeof *k);
    if (!mc) return sl_err_set(err, SL_EINVAL, "no model '%s' under models: in the config", model);
    int rc = sl_model_load(&k->m, mc->path, true, err);
    if (rc) return rc;
    struct sl_ctx_params cp = sl_ctx_default_params();
    cp.n_ctx = (int32_t)(mc->ctx > 0 ? SL_MIN(mc->ctx, 4096) : 0);
    cp.n_threads = (int)threads;
    if ((rc = sl_ctx_init(&k->ctx, k->m, &cp, err))) return rc;
    struct sl_classify_example ex[SL_CONFIG_MAX_EXAMPLES];
    for (size_t i = 0; i < t->n_examples && i < SL_CONFIG_MAX_EXAMPLES; i++)
        ex[i] = (struct sl_classify_example){t->ex_inputs[i], t->ex_labels[i]};
    struct sl_classify_task task = sl_classify_default_task();
    task.instruction = t->instruction;
    task.labels = (const char *const *)t->labels;
    task.descriptions = (const char *const *)t->descriptions;
    task.n_labels = t->n_labels;
    task.examples = t->n_examples ? ex : NULL;
    task.n_examples = SL_MIN(t->n_examples, (size_t)SL_CONFIG_MAX_EXAMPLES);
    task.temperature = t->temperature > 0 ? (float)t->temperature : 1.0f;
    task.mode = (enum sl_prompt_mode)t->prompt_mode;
    task.head_path = head;
    return sl_classifier_init(&k->c, k->ctx, &task, err);
}

/* Classify texts[0..n): label (n), confidence (n), probs (n, L) each may be NULL. */
static int clf_run(struct clf *k, char *const *texts, size_t n, size_t L, int32_t *label, float *conf,
                   float *probs, const char *what, struct sl_err *err)
{
    struct sl_classify_result res[GROUP];
    cli_progress(what, 0, n);
    for (size_t i = 0; i < n; i += GROUP) {
        size_t g = SL_MIN((size_t)GROUP, n - i);
        int rc = sl_classify_batch(k->c, (const char *const *)texts + i, g, res, err);
        if (rc) return rc;
        for (size_t j = 0; j < g; j++) {
            if (label) label[i + j] = res[j].label;
            if (conf) conf[i + j] = res[j].confidence;
            if (probs) memcpy(probs + (i + j) * L, res[j].probs, L * sizeof(float));
            sl_classify_result_free(&res[j]);
        }
        cli_progress(what, i + g, n);
    }
    return 0;
}

static double accuracy(const int32_t *a, const int32_t *b, size_t n)
{
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) ok += a[i] == b[i];
    return n ? (double)ok / (double)n : NAN;
}

static double escalation(const float *conf, size_t n, double threshold)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += conf[i] < threshold;
    return n ? (double)k / (double)n : NAN;
}

/* ------------------------------------------------------------------------ */
/* inputs                                                                    */
/* ------------------------------------------------------------------------ */

struct texts {
    char **v;
    int32_t *label; /* -1: none */
    size_t n, cap;
};

static void texts_free(struct texts *t)
{
    for (size_t i = 0; i < t->n; i++) free(t->v[i]);
    free(t->v);
    free(t->label);
    memset(t, 0, sizeof *t);
}

static int texts_add(struct texts *t, const char *s, int32_t label)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        char **nv = realloc(t->v, cap * sizeof *nv);
        if (!nv) return SL_ENOMEM;
        t->v = nv;
        int32_t *nl = realloc(t->label, cap * sizeof *nl);
        if (!nl) return SL_ENOMEM;
        t->label = nl;
        t->cap = cap;
    }
    if (!(t->v[t->n] = strdup(s))) return SL_ENOMEM;
    t->label[t->n++] = label;
    return 0;
}

/* An unlabelled pool: JSONL, one object per line with the text in
 * text_field (default the first of input, text, prompt), or a JSON string. */
static int read_pool(const char *path, const char *text_field, struct texts *out, struct sl_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = sl_read_file(path, &buf, &len, err);
    if (rc) return rc;
    long line = 0;
    for (char *p = buf, *e; p < buf + len; p = e + 1) {
        e = strchr(p, '\n');
        if (!e) e = buf + len;
        line++;
        const char *q = p;
        while (q < e && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
        if (q == e) continue;
        json_error_t je;
        json_t *v = json_loadb(p, (size_t)(e - p), JSON_DECODE_ANY, &je);
        const json_t *s = NULL;
        if (v && json_is_string(v)) s = v;
        else if (v && text_field) s = json_object_get(v, text_field);
        else if (v) {
            static const char *const names[] = {"input", "text", "prompt"};
            for (int i = 0; i < 3 && !json_is_string(s); i++) s = json_object_get(v, names[i]);
        }
        if (!json_is_string(s)) {
            json_decref(v);
            rc = sl_err_set(err, SL_EFORMAT, "%s line %ld: %s", path, line,
                            v ? "no text field (input, text or prompt; or --text-field)" : je.text);
            break;
        }
        rc = texts_add(out, json_string_value(s), -1) ? sl_err_set(err, SL_ENOMEM, "out of memory") : 0;
        json_decref(v);
        if (rc) break;
    }
    free(buf);
    if (!rc && out->n == 0) rc = sl_err_set(err, SL_EFORMAT, "%s has no inputs", path);
    return rc;
}

static int32_t label_index(const struct sl_task_config *t, const char *s)
{
    for (size_t i = 0; i < t->n_labels; i++)
        if (!strcmp(t->labels[i], s)) return (int32_t)i;
    return -1;
}

struct log_collect {
    const struct sl_task_config *task;
    struct texts *out;
    size_t n_rows, n_hashed, n_unknown, n_feedback;
};

static int on_log_row(void *user, const struct sl_store_row *row)
{
    struct log_collect *lc = user;
    lc->n_rows++;
    if (!row->input) {
        lc->n_hashed++;
        return 0;
    }
    const char *ans = row->feedback ? row->feedback : row->output;
    int32_t l = ans ? label_index(lc->task, ans) : -1;
    if (l < 0) {
        lc->n_unknown++;
        return 0;
    }
    lc->n_feedback += row->feedback != NULL;
    return texts_add(lc->out, row->input, l) ? SL_ENOMEM : 0;
}

/* ------------------------------------------------------------------------ */
/* a teacher behind the router: a backend of the config                      */
/* ------------------------------------------------------------------------ */

struct teach {
    struct sl_backend *b;
    const struct sl_task_config *task;
    char *const *texts;
    size_t n, L;
    int32_t *label; /* (n) -1: the call failed or the answer is no label */
    float *q;       /* (n, L) the backend's probabilities, or one-hot */
    atomic_size_t next, done, with_probs, failed;
    pthread_mutex_t mu;
    char first_error[SL_ERR_MSG_LEN];
};

static void *teach_worker(void *arg)
{
    struct teach *t = arg;
    for (;;) {
        size_t i = atomic_fetch_add(&t->next, 1);
        if (i >= t->n) break;
        struct sl_backend_task_req req = {.task = t->task, .input = t->texts[i]};
        struct sl_backend_task_resp resp = {0};
        struct sl_err err = {0};
        int rc = t->b->iface->task(t->b->ctx, &req, &resp, &err);
        float *q = t->q + i * t->L;
        t->label[i] = -1;
        if (rc == 0 && resp.status == SL_BACKEND_OK && resp.label >= 0 && (size_t)resp.label < t->L) {
            t->label[i] = resp.label;
            if (resp.probs && resp.n_probs == t->L) {
                memcpy(q, resp.probs, t->L * sizeof *q);
                atomic_fetch_add(&t->with_probs, 1);
            } else {
                for (size_t c = 0; c < t->L; c++) q[c] = (int32_t)c == resp.label ? 1.0f : 0.0f;
            }
        } else {
            atomic_fetch_add(&t->failed, 1);
            pthread_mutex_lock(&t->mu);
            if (!t->first_error[0])
                snprintf(t->first_error, sizeof t->first_error, "%s",
                         err.msg[0] ? err.msg : resp.label < 0 ? "the answer is none of the labels" : "call failed");
            pthread_mutex_unlock(&t->mu);
        }
        sl_backend_task_resp_free(&resp);
        atomic_fetch_add(&t->done, 1);
    }
    return NULL;
}

/* Label texts[0..n) with backend b, `conc` calls at a time, with a
 * progress bar. Failed calls leave label -1 (counted in *failed). */
static int teach_run(struct sl_backend *b, const struct sl_task_config *task, char *const *texts, size_t n,
                     size_t L, int32_t *label, float *q, int conc, const char *what, size_t *with_probs,
                     size_t *failed, struct sl_err *err)
{
    struct teach t = {.b = b, .task = task, .texts = texts, .n = n, .L = L, .label = label, .q = q};
    pthread_t th[64];
    int nt = 0;
    if (!b->iface->task) return sl_err_set(err, SL_EUNSUPPORTED, "the teacher backend does not run tasks");
    pthread_mutex_init(&t.mu, NULL);
    for (; nt < SL_MIN(conc, 64); nt++)
        if (pthread_create(&th[nt], NULL, teach_worker, &t)) break;
    if (nt == 0) {
        pthread_mutex_destroy(&t.mu);
        return sl_err_set(err, SL_ENOMEM, "cannot start threads");
    }
    while (atomic_load(&t.done) < n) {
        cli_progress(what, atomic_load(&t.done), n);
        usleep(100000);
    }
    cli_progress(what, n, n);
    for (int i = 0; i < nt; i++) pthread_join(th[i], NULL);
    pthread_mutex_destroy(&t.mu);
    *with_probs = atomic_load(&t.with_probs);
    *failed = atomic_load(&t.failed);
    if (*failed == n) return sl_err_set(err, SL_EIO, "the teacher failed on every input: %s", t.first_error);
    if (*failed) fprintf(stderr, "teacher: %zu of %zu calls failed (first: %s); those inputs are left out\n", *failed, n,
                         t.first_error);
    return 0;
}

/* Drop the inputs whose label is -1 (and their rows of q). */
static void texts_compact(struct texts *in, float *q, size_t L)
{
    size_t k = 0;
    for (size_t i = 0; i < in->n; i++) {
        if (in->label[i] < 0) {
            free(in->v[i]);
            continue;
        }
        in->v[k] = in->v[i];
        in->label[k] = in->label[i];
        if (q && k != i) memcpy(q + k * L, q + i * L, L * sizeof *q);
        k++;
    }
    in->n = k;
}

/* ------------------------------------------------------------------------ */
/* sluice distill                                                            */
/* ------------------------------------------------------------------------ */

static const char *distill_usage =
    "usage: sluice distill CONFIG.yaml --task T --student-model M --out HEAD.gguf\n"
    "                      (--teacher-model M [--teacher-head H] | --teacher BACKEND)\n"
    "                      (--pool POOL.jsonl | --from-log [--route R]) [options]\n"
    "Labels the inputs with the teacher, trains a classification head on the student\n"
    "model's embeddings, and reports agreement with the teacher and accuracy before\n"
    "(the task's current classifier) and after on --eval.\n"
    "  --task T              a classify task of the config (its labels, instruction)\n"
    "  --teacher-model M     the teacher: task T on this models: entry (label scoring,\n"
    "  --teacher-head H      or through this head)\n"
    "  --teacher BACKEND     a backend of the config (backends:), called through the router's\n"
    "                        backend, e.g. the large hosted model of a route\n"
    "  --concurrency N       teacher calls at a time with --teacher (default 4)\n"
    "  --pool FILE           unlabelled inputs, JSONL (input/text/prompt field)\n"
    "  --from-log            the route's escalated requests from the config's log:, with\n"
    "                        the answer kept (or the feedback when present) as label\n"
    "  --route R             the route for --from-log (default: all)\n"
    "  --since-ms N          only requests logged at or after this Unix time (ms)\n"
    "  --student-model M     a models: entry whose embeddings the head is trained on\n"
    "  --out FILE            the student head (GGUF)\n"
    "  --eval FILE           labelled JSONL/CSV (input, label) for the before/after report\n"
    "  --soft                train on the teacher's probabilities (soft labels)\n"
    "  --hidden N            MLP hidden width (default 0: linear)\n"
    "  --epochs N  --lr X  --batch N  --patience N  --val-frac X  --seed N\n"
    "  --ensemble K          the student is an ensemble of K heads (see sluice train head)\n"
    "  --text-field NAME     text field of the pool\n"
    "  --cache-dir DIR       embedding cache (default: none)\n"
    "  -c, --ctx-size N      tokens embedded per text (default 256)\n"
    "  -t, --threads N       threads (default: all CPUs)\n";

static void on_train_progress(void *user, const struct sl_train_progress *p)
{
    char label[160];
    (void)user;
    if (!strcmp(p->phase, "embed")) snprintf(label, sizeof label, "embed %.0f texts/s", p->items_per_s);
    else snprintf(label, sizeof label, "train loss %.4f val %.4f", p->loss, p->val_loss);
    cli_progress(label, (uint64_t)p->done, (uint64_t)p->total);
}

int cmd_distill(int argc, char **argv)
{
    const char *pos[1], *task_name = NULL, *teacher_model = NULL, *teacher_head = NULL, *teacher = NULL;
    const char *pool = NULL, *route = NULL, *student = NULL, *out = NULL, *eval = NULL, *tf = NULL, *cache = NULL;
    bool from_log = false, soft = false;
    long long hidden = 0, epochs = 50, batch = 32, patience = 5, seed = 1, threads = 0, n_ctx = 256, since = 0, members = 1;
    long long conc = 4;
    double lr = 3e-3, val_frac = 0.1;
    int n_pos = 0;
    const struct cli_opt opts[] = {
        {NULL, "--task", CLI_STR, &task_name, 0, 0},
        {NULL, "--teacher-model", CLI_STR, &teacher_model, 0, 0},
        {NULL, "--teacher-head", CLI_STR, &teacher_head, 0, 0},
        {NULL, "--teacher", CLI_STR, &teacher, 0, 0},
        {NULL, "--concurrency", CLI_INT, &conc, 1, 64},
        {NULL, "--pool", CLI_STR, &pool, 0, 0},
        {NULL, "--from-log", CLI_FLAG, &from_log, 0, 0},
        {NULL, "--route", CLI_STR, &route, 0, 0},
        {NULL, "--since-ms", CLI_INT, &since, 0, 9e18},
        {NULL, "--student-model", CLI_STR, &student, 0, 0},
        {"-o", "--out", CLI_STR, &out, 0, 0},
        {NULL, "--eval", CLI_STR, &eval, 0, 0},
        {NULL, "--soft", CLI_FLAG, &soft, 0, 0},
        {NULL, "--hidden", CLI_INT, &hidden, 0, 65536},
        {NULL, "--epochs", CLI_INT, &epochs, 1, 1e6},
        {NULL, "--batch", CLI_INT, &batch, 1, 65536},
        {NULL, "--lr", CLI_FLOAT, &lr, 1e-8, 10},
        {NULL, "--patience", CLI_INT, &patience, 0, 1e6},
        {NULL, "--val-frac", CLI_FLOAT, &val_frac, 0, 0.9},
        {NULL, "--seed", CLI_INT, &seed, 0, 9e18},
        {NULL, "--ensemble", CLI_INT, &members, 1, SL_HEAD_MAX_MEMBERS},
        {NULL, "--text-field", CLI_STR, &tf, 0, 0},
        {NULL, "--cache-dir", CLI_STR, &cache, 0, 0},
        {"-c", "--ctx-size", CLI_INT, &n_ctx, 8, 4096},
        {"-t", "--threads", CLI_INT, &threads, 0, 1024},
    };
    int rc = cli_parse("distill", distill_usage, argc, argv, opts, sizeof opts / sizeof *opts, pos, 1, &n_pos);
    if (rc) return rc < 0 ? 0 : rc;
    if (n_pos != 1) return cli_usage("distill", "give the config file: sluice distill CONFIG.yaml ...");
    if (!task_name || !student || !out) return cli_usage("distill", "--task, --student-model and --out are required");
    if (!!pool + from_log != 1) return cli_usage("distill", "give exactly one of --pool FILE and --from-log");
    if (pool && !teacher_model && !teacher)
        return cli_usage("distill", "--pool needs a teacher: --teacher-model M [--teacher-head H] or --teacher BACKEND");
    if (teacher_model && teacher) return cli_usage("distill", "give one of --teacher-model and --teacher");

    struct sl_err err = {0};
    struct sl_config cfg;
    struct texts in = {0};
    struct sl_examples ev = {0};
    struct clf tk = {0}, cur = {0}, neu = {0};
    struct sl_server *srv = NULL;
    struct sl_backend *tb = NULL;
    struct sl_model *sm = NULL;
    struct sl_ctx *ectx = NULL;
    struct sl_head h = {0};
    float *q = NULL, *x = NULL;
    int32_t *ev_teacher = NULL, *ev_before = NULL, *ev_after = NULL;
    const char *hint = NULL;
    int ret = CLI_EXIT_ERR;
    bool cfg_ok = false;

    if (sl_config_init(&cfg, &err) || sl_config_load(&cfg, pos[0], &err)) goto fail;
    cfg_ok = true;
    const struct sl_task_config *task = sl_config_task(&cfg, task_name);
    if (!task || task->kind != SL_TASK_CLASSIFY) {
        sl_err_set(&err, SL_EINVAL, "%s: no classify task '%s' under tasks:", pos[0], task_name);
        goto fail;
    }
    size_t L = task->n_labels;
    if (!find_model(&cfg, student)) {
        sl_err_set(&err, SL_EINVAL, "%s: --student-model '%s' is not under models:", pos[0], student);
        goto fail;
    }
    if (teacher) { /* the config's backends through the router, no HTTP listener */
        if (sl_server_open(&srv, &cfg, stderr, false, &err)) goto fail;
        if (!srv->router || !(tb = sl_router_backend(srv->router, teacher))) {
            sl_err_set(&err, SL_EINVAL, "%s: --teacher '%s' is not a backend under backends:", pos[0], teacher);
            goto fail;
        }
    }

    /* 1. the inputs and their teacher labels */
    if (from_log) {
        struct sl_store st = {0};
        if (!cfg.log.db) {
            sl_err_set(&err, SL_EINVAL, "%s: --from-log needs a log: section (log.db)", pos[0]);
            goto fail;
        }
        struct sl_store_params sp = sl_store_default_params();
        bool pg = !strncmp(cfg.log.db, "postgres", 8) || !strncmp(cfg.log.db, "pg:", 3);
        if (pg ? sl_store_pg_open(&st, cfg.log.db + (strncmp(cfg.log.db, "pg:", 3) ? 0 : 3), &sp, &err)
               : sl_store_sqlite_open(&st, cfg.log.db, &sp, &err))
            goto fail;
        struct sl_store_filter f = sl_store_filter_default();
        f.route = route;
        f.decision = "escalated";
        f.since_ms = since;
        struct log_collect lc = {task, &in, 0, 0, 0, 0};
        rc = st.iface->list_requests ? st.iface->list_requests(st.ctx, &f, on_log_row, &lc, &err)
                                     : sl_err_set(&err, SL_EUNSUPPORTED, "this store cannot list requests");
        st.iface->close(st.ctx);
        if (rc) goto fail;
        fprintf(stderr, "log: %zu escalated requests%s%s; %zu with a usable label (%zu from feedback), %zu without "
                        "input text, %zu with an answer that is not a label\n",
                lc.n_rows, route ? " on route " : "", route ? route : "", in.n, lc.n_feedback, lc.n_hashed,
                lc.n_unknown);
        if (in.n == 0) {
            sl_err_set(&err, SL_EINVAL, "no usable escalated request in the log%s",
                       lc.n_hashed ? ": their inputs were stored hashed" : "");
            hint = lc.n_hashed ? "set log.inputs: store in the config so that the log keeps the text" : NULL;
            goto fail;
        }
        soft = false; /* the log keeps the answer, not the probabilities */
    } else {
        if (read_pool(pool, tf, &in, &err)) goto fail;
        if (!(q = malloc(in.n * L * sizeof *q))) goto oom;
        if (tb) {
            size_t wp = 0, nf = 0;
            fprintf(stderr, "teacher: task %s on backend %s, labelling %zu inputs, %lld at a time\n", task_name,
                    teacher, in.n, conc);
            if (teach_run(tb, task, in.v, in.n, L, in.label, q, (int)conc, "teacher", &wp, &nf, &err)) goto fail;
            if (soft && wp < in.n - nf)
                fprintf(stderr, "teacher: %zu of %zu answers came with probabilities; the others are one-hot\n", wp,
                        in.n - nf);
            texts_compact(&in, q, L);
        } else {
            if (clf_open(&tk, &cfg, task, teacher_model, teacher_head, threads, &err)) goto fail;
            fprintf(stderr, "teacher: task %s on %s%s%s, labelling %zu inputs\n", task_name, teacher_model,
                    teacher_head ? " + head " : "", teacher_head ? teacher_head : "", in.n);
            if (clf_run(&tk, in.v, in.n, L, in.label, NULL, q, "teacher", &err)) goto fail;
        }
    }

    /* 2. the student head on the student model's embeddings */
    const struct sl_model_config *smc = find_model(&cfg, student);
    if (sl_model_load(&sm, smc->path, true, &err)) goto fail;
    struct sl_ctx_params cp = sl_ctx_default_params();
    cp.n_ctx = cp.n_batch = (int32_t)n_ctx;
    cp.n_threads = (int)threads;
    cp.embeddings = cp.no_logits = true;
    if (sl_ctx_init(&ectx, sm, &cp, &err)) goto fail;
    if (cache) mkdir(cache, 0755);
    if (sl_embed_texts(ectx, in.v, in.n, cache, &x, on_train_progress, NULL, &err)) goto fail;
    if (sl_head_init_for_model(&h, sm, (int32_t)hidden, (const char *const *)task->labels, (int32_t)L,
                               (int32_t)n_ctx, &err))
        goto fail;
    struct sl_head_train_params p = sl_head_train_default_params();
    p.n_hidden = (int32_t)hidden;
    p.epochs = (int32_t)epochs;
    p.batch = (int32_t)batch;
    p.lr = (float)lr;
    p.min_lr = (float)lr / 10;
    p.patience = (int)patience;
    p.seed = (uint64_t)seed;
    struct sl_head_train_result res[SL_HEAD_MAX_MEMBERS];
    if (sl_head_train_ensemble(&h, x, in.label, soft ? q : NULL, in.n, val_frac, (int)members, cp.n_threads, &p,
                               res, on_train_progress, NULL, &err))
        goto fail;
    if (sl_head_save(&h, out, &err)) goto fail;
    for (long long k = 0; k < members; k++)
        fprintf(stderr, "student%s: %s head on %s (%d-wide), %zu examples (%s labels), best epoch %d of %d, "
                        "validation agreement with the teacher %.4f, %.2fs\n",
                members > 1 ? " member" : "", hidden ? "MLP" : "linear", student, sm->hp.n_embd, res[k].n_train,
                soft ? "soft" : "hard", res[k].best_epoch, res[k].epochs_run, res[k].val_acc, res[k].seconds);
    printf("wrote %s\n", out);
    sl_ctx_free(ectx);
    ectx = NULL;
    sl_model_free(sm);
    sm = NULL;

    /* 3. before / after on the evaluation set */
    if (eval) {
        if (sl_examples_read(&ev, eval, NULL, NULL, (const char *const *)task->labels, L, &err)) goto fail;
        ev_teacher = malloc(ev.n * sizeof *ev_teacher);
        ev_before = malloc(ev.n * sizeof *ev_before);
        ev_after = malloc(ev.n * sizeof *ev_after);
        if (!ev_teacher || !ev_before || !ev_after) goto oom;
        bool have_teacher = tk.c != NULL || tb != NULL;
        if (tk.c && clf_run(&tk, ev.text, ev.n, L, ev_teacher, NULL, NULL, "teacher (eval)", &err)) goto fail;
        if (tb) {
            float *eq = malloc(ev.n * L * sizeof *eq);
            size_t wp = 0, nf = 0;
            rc = eq ? teach_run(tb, task, ev.text, ev.n, L, ev_teacher, eq, (int)conc, "teacher (eval)", &wp, &nf, &err)
                    : sl_err_set(&err, SL_ENOMEM, "out of memory");
            free(eq);
            if (rc) goto fail;
        }
        clf_free(&tk);
        if (clf_open(&cur, &cfg, task, task->model, task->head, threads, &err) ||
            clf_run(&cur, ev.text, ev.n, L, ev_before, NULL, NULL, "before", &err))
            goto fail;
        clf_free(&cur);
        if (clf_open(&neu, &cfg, task, student, out, threads, &err) ||
            clf_run(&neu, ev.text, ev.n, L, ev_after, NULL, NULL, "after", &err))
            goto fail;
        printf("on %s (%zu examples):      accuracy%s\n", eval, ev.n,
               have_teacher ? "   agreement with the teacher" : "");
        if (have_teacher)
            printf("  teacher                          %8.4f\n", accuracy(ev_teacher, ev.label, ev.n));
        printf("  before (the task's classifier)   %8.4f", accuracy(ev_before, ev.label, ev.n));
        if (have_teacher) printf("   %8.4f", accuracy(ev_before, ev_teacher, ev.n));
        printf("\n  after (the distilled student)    %8.4f", accuracy(ev_after, ev.label, ev.n));
        if (have_teacher) printf("   %8.4f", accuracy(ev_after, ev_teacher, ev.n));
        printf("\n");
    }
    ret = 0;
    goto fail;
oom:
    sl_err_set(&err, SL_ENOMEM, "out of memory");
fail:
    if (ret) cli_fail(&err, hint);
    sl_server_free(srv);
    clf_free(&tk);
    clf_free(&cur);
    clf_free(&neu);
    sl_ctx_free(ectx);
    sl_model_free(sm);
    sl_head_free(&h);
    texts_free(&in);
    sl_examples_free(&ev);
    free(q);
    free(x);
    free(ev_teacher);
    free(ev_before);
    free(ev_after);
    if (cfg_ok) sl_config_free(&cfg);
    return ret;
}

/* ------------------------------------------------------------------------ */
/* sluice promote                                                            */
/* ------------------------------------------------------------------------ */

static const char *promote_usage =
    "usage: sluice promote CONFIG.yaml --task T --candidate HEAD.gguf --data EVAL.jsonl [options]\n"
    "       sluice promote CONFIG.yaml --rollback\n"
    "Evaluates the candidate head against the task's current classifier (its head, or\n"
    "label scoring) on labelled data, and promotes it (rewrites the task's head: in the\n"
    "config, keeping CONFIG.yaml.prev) only if accuracy does not drop by more than\n"
    "--max-drop points and the escalation rate at the threshold falls.\n"
    "  --threshold-from R    the threshold of route R for the task (default 0.8)\n"
    "  --threshold X         the threshold itself\n"
    "  --max-drop P          accuracy points the candidate may lose (default 0.5)\n"
    "  --dry-run             evaluate and decide, change nothing\n"
    "  --rollback            restore CONFIG.yaml.prev (the config before the last promotion)\n"
    "  -t, --threads N       threads (default: all CPUs)\n"
    "exit status: 0 promoted (or rolled back), 3 kept the current classifier, 1 error, 2 usage\n";

#define PROMOTE_KEPT 3

/* Copy a file (both may be the same directory); 0 or SL_EIO. */
static int copy_file(const char *from, const char *to, struct sl_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = sl_read_file(from, &buf, &len, err);
    if (rc) return rc;
    FILE *f = fopen(to, "wb");
    bool ok = f && fwrite(buf, 1, len, f) == len;
    if (f) ok = (fclose(f) == 0) && ok;
    free(buf);
    return ok ? 0 : sl_err_set(err, SL_EIO, "cannot write '%s'", to);
}

static size_t indent_of(const char *l) { size_t i = 0; while (l[i] == ' ') i++; return i; }

/* Text of the config with task T's head: set to value (a YAML double-quoted
 * string), comments and everything else kept. malloc'd, or NULL with err. */
static char *set_task_head(const char *text, const char *task, const char *value, struct sl_err *err)
{
    const char *tasks = NULL, *p = text;
    size_t n = strlen(text);
    /* find a top-level "tasks:" line */
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (!strncmp(l, "tasks:", 6)) {
            tasks = l;
            break;
        }
    if (!tasks) {
        sl_err_set(err, SL_EINVAL, "the config has no top-level tasks: section");
        return NULL;
    }
    /* the task's key line: the first line under tasks: that is "<ind>T:" */
    const char *tl = NULL, *l = strchr(tasks, '\n');
    size_t tind = 0;
    for (l = l ? l + 1 : NULL; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        size_t ind = indent_of(l);
        if (l[ind] == '\n' || l[ind] == '#') continue;
        if (ind == 0) break; /* the next top-level section */
        size_t tn = strlen(task);
        if ((!strncmp(l + ind, task, tn) && l[ind + tn] == ':') ||
            (l[ind] == '"' && !strncmp(l + ind + 1, task, tn) && l[ind + 1 + tn] == '"')) {
            tl = l;
            tind = ind;
            break;
        }
    }
    if (!tl) {
        sl_err_set(err, SL_EINVAL, "task '%s' is not written as a block under tasks: (\"  %s:\")", task, task);
        return NULL;
    }
    /* the task's block: lines indented deeper than tind */
    const char *head_line = NULL, *block_end = NULL, *last_content = strchr(tl, '\n');
    size_t cind = 0;
    for (l = last_content ? last_content + 1 : NULL; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        size_t ind = indent_of(l);
        if (l[ind] == '\n' || l[ind] == '#' || l[ind] == 0) continue;
        if (ind <= tind) {
            block_end = l;
            break;
        }
        if (!cind) cind = ind;
        if (ind == cind && !strncmp(l + ind, "head:", 5)) head_line = l;
    }
    if (!cind) {
        sl_err_set(err, SL_EINVAL, "task '%s' has an inline or empty body: write it as a block", task);
        return NULL;
    }
    size_t vl = strlen(value);
    char *out = malloc(n + vl + cind + 64);
    if (!out) {
        sl_err_set(err, SL_ENOMEM, "out of memory");
        return NULL;
    }
    size_t at;
    const char *rest;
    if (head_line) {
        at = (size_t)(head_line - p);
        const char *e = strchr(head_line, '\n');
        rest = e ? e : text + n;
        /* keep a trailing comment of the replaced line: from its " #" on */
        for (const char *c = head_line; c + 1 < rest; c++)
            if (c[0] == ' ' && c[1] == '#') {
                while (c > head_line + cind + 5 && c[-1] == ' ') c--; /* with its spacing */
                rest = c;
                break;
            }
    } else { /* insert right after the task's key line */
        const char *e = strchr(tl, '\n');
        at = e ? (size_t)(e + 1 - p) : n;
        rest = text + at;
    }
    (void)block_end;
    memcpy(out, text, at);
    size_t k = at;
    k += (size_t)sprintf(out + k, "%*shead: \"%s\"%s", (int)cind, "", value, head_line ? "" : "\n");
    memcpy(out + k, rest, strlen(rest) + 1);
    return out;
}

/* Write text to path via a temp file + rename, after checking it parses. */
static int write_config(const char *path, const char *text, struct sl_err *err)
{
    char tmp[4200];
    struct sl_config c;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (sl_config_init(&c, err)) return err->code;
    int rc = sl_config_parse(&c, text, strlen(text), err);
    sl_config_free(&c);
    if (rc) return rc;
    FILE *f = fopen(tmp, "wb");
    bool ok = f && fwrite(text, 1, strlen(text), f) == strlen(text);
    if (f) ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path)) {
        remove(tmp);
        return sl_err_set(err, SL_EIO, "cannot write '%s'", path);
    }
    return 0;
}

int cmd_promote(int argc, char **argv)
{
    const char *pos[1], *task_name = NULL, *cand = NULL, *data = NULL, *route = NULL;
    double threshold = -1, max_drop = 0.5;
    bool rollback = false, dry = false;
    long long threads = 0;
    int n_pos = 0;
    const struct cli_opt opts[] = {
        {NULL, "--task", CLI_STR, &task_name, 0, 0},      {NULL, "--candidate", CLI_STR, &cand, 0, 0},
        {NULL, "--data", CLI_STR, &data, 0, 0},           {NULL, "--threshold-from", CLI_STR, &route, 0, 0},
        {NULL, "--threshold", CLI_FLOAT, &threshold, 0, 1}, {NULL, "--max-drop", CLI_FLOAT, &max_drop, 0, 100},
        {NULL, "--rollback", CLI_FLAG, &rollback, 0, 0},  {NULL, "--dry-run", CLI_FLAG, &dry, 0, 0},
        {"-t", "--threads", CLI_INT, &threads, 0, 1024},
    };
    int rc = cli_parse("promote", promote_usage, argc, argv, opts, sizeof opts / sizeof *opts, pos, 1, &n_pos);
    if (rc) return rc < 0 ? 0 : rc;
    if (n_pos != 1) return cli_usage("promote", "give the config file: sluice promote CONFIG.yaml ...");
    struct sl_err err = {0};
    char prev[4200];
    snprintf(prev, sizeof prev, "%s.prev", pos[0]);
    if (rollback) {
        char *text = NULL;
        size_t len = 0;
        if (sl_read_file(prev, &text, &len, &err)) return cli_fail(&err, "nothing to roll back: no promotion was made");
        rc = write_config(pos[0], text, &err);
        free(text);
        if (rc) return cli_fail(&err, NULL);
        remove(prev);
        printf("rolled back %s to the config before the last promotion\n", pos[0]);
        return 0;
    }
    if (!task_name || !cand || !data) return cli_usage("promote", "--task, --candidate and --data are required");

    struct sl_config cfg;
    struct sl_examples ev = {0};
    struct clf cur = {0}, neu = {0};
    int32_t *lc = NULL, *ln = NULL;
    float *cc = NULL, *cn = NULL;
    char *text = NULL, *edited = NULL;
    int ret = CLI_EXIT_ERR;
    bool cfg_ok = false;
    if (sl_config_init(&cfg, &err) || sl_config_load(&cfg, pos[0], &err)) goto fail;
    cfg_ok = true;
    const struct sl_task_config *task = sl_config_task(&cfg, task_name);
    if (!task || task->kind != SL_TASK_CLASSIFY) {
        sl_err_set(&err, SL_EINVAL, "%s: no classify task '%s' under tasks:", pos[0], task_name);
        goto fail;
    }
    if (threshold < 0) {
        const struct sl_route_config *r = route ? sl_config_route(&cfg, route) : NULL;
        if (route && !r) {
            sl_err_set(&err, SL_EINVAL, "%s: no route '%s'", pos[0], route);
            goto fail;
        }
        threshold = r ? sl_route_threshold(r, task_name) : 0.8;
    }
    size_t L = task->n_labels;
    if (sl_examples_read(&ev, data, NULL, NULL, (const char *const *)task->labels, L, &err)) goto fail;
    lc = malloc(ev.n * sizeof *lc);
    ln = malloc(ev.n * sizeof *ln);
    cc = malloc(ev.n * sizeof *cc);
    cn = malloc(ev.n * sizeof *cn);
    if (!lc || !ln || !cc || !cn) {
        sl_err_set(&err, SL_ENOMEM, "out of memory");
        goto fail;
    }
    if (clf_open(&cur, &cfg, task, task->model, task->head, threads, &err) ||
        clf_run(&cur, ev.text, ev.n, L, lc, cc, NULL, "current", &err))
        goto fail;
    clf_free(&cur);
    if (clf_open(&neu, &cfg, task, task->model, cand, threads, &err) ||
        clf_run(&neu, ev.text, ev.n, L, ln, cn, NULL, "candidate", &err))
        goto fail;
    clf_free(&neu);
    double ac = accuracy(lc, ev.label, ev.n), an = accuracy(ln, ev.label, ev.n);
    double ec = escalation(cc, ev.n, threshold), en = escalation(cn, ev.n, threshold);
    printf("%zu examples, threshold %.3f\n", ev.n, threshold);
    printf("  current   (%s): accuracy %.4f, escalation %.4f\n", task->head ? task->head : "label scoring", ac, ec);
    printf("  candidate (%s): accuracy %.4f, escalation %.4f\n", cand, an, en);
    bool quality = an >= ac - max_drop / 100.0, cheaper = en < ec;
    if (!quality || !cheaper) {
        printf("kept the current classifier: %s\n",
               !quality ? "accuracy drops by more than --max-drop" : "the escalation rate does not fall");
        ret = PROMOTE_KEPT;
        goto fail;
    }
    if (dry) {
        printf("would promote %s (--dry-run: nothing changed)\n", cand);
        ret = 0;
        goto fail;
    }
    size_t len = 0;
    if (sl_read_file(pos[0], &text, &len, &err)) goto fail;
    if (!(edited = set_task_head(text, task_name, cand, &err))) goto fail;
    if (task->head) { /* keep the head file the config pointed at, in case it is overwritten later */
        char hp[4200];
        snprintf(hp, sizeof hp, "%s.prev", task->head);
        if (copy_file(task->head, hp, &err)) goto fail;
    }
    if (copy_file(pos[0], prev, &err)) goto fail;
    if (write_config(pos[0], edited, &err)) goto fail;
    printf("promoted %s: task %s now classifies through it (previous config in %s)\n", cand, task_name, prev);
    ret = 0;
fail:
    if (ret == CLI_EXIT_ERR) cli_fail(&err, NULL);
    clf_free(&cur);
    clf_free(&neu);
    sl_examples_free(&ev);
    free(lc);
    free(ln);
    free(cc);
    free(cn);
    free(text);
    free(edited);
    if (cfg_ok) sl_config_free(&cfg);
    return ret;
}
