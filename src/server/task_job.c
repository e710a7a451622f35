/*
 * task_job.c - classify and extract work as one task job on a model's
 * engine thread (server layer). See task_job.h.
 */
#include "task_job.h"

#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "server.h"

int sl_task_job_init(struct sl_task_job *t, struct sl_served_model *m, bool classify, size_t n,
                     struct sl_err *err)
{
    memset(t, 0, sizeof *t);
    t->classify = classify;
    t->m = m;
    t->n = n;
    t->ct = sl_classify_default_task();
    t->xt = sl_extract_default_task();
    t->inputs = calloc(n ? n : 1, sizeof *t->inputs);
    if (classify)
        t->cres = calloc(n ? n : 1, sizeof *t->cres);
    else
        t->xres = calloc(n ? n : 1, sizeof *t->xres);
    if (!t->inputs || (!t->cres && !t->xres))
        return sl_err_set(err, SL_ENOMEM, "task: out of memory");
    return 0;
}

int sl_task_job_use_config(struct sl_task_job *t, const struct sl_task_config *tc,
                           struct sl_err *err)
{
    if (t->classify) {
        t->ct.instruction = tc->instruction;
        t->ct.labels = (const char *const *)tc->labels;
        t->ct.descriptions = (const char *const *)tc->descriptions;
        t->ct.n_labels = tc->n_labels;
        t->ct.temperature = (float)tc->temperature;
        t->ct.mode = (enum sl_prompt_mode)tc->prompt_mode;
        t->ct.head_path = tc->head;
        if (tc->n_examples) {
            if (!(t->examples = calloc(tc->n_examples, sizeof *t->examples)))
                return sl_err_set(err, SL_ENOMEM, "task: out of memory");
            for (size_t i = 0; i < tc->n_examples; i++)
                t->examples[i] = (struct sl_classify_example){tc->ex_inputs[i], tc->ex_labels[i]};
            t->ct.examples = t->examples;
            t->ct.n_examples = tc->n_examples;
        }
        return 0;
    }
    if (!(t->schema = json_loads(tc->schema, 0, NULL)))
        return sl_err_set(err, SL_EFORMAT, "task '%s': its schema does not load", tc->name);
    t->xt.schema = t->schema;
    t->xt.instruction = tc->instruction;
    t->xt.mode = (enum sl_prompt_mode)tc->prompt_mode;
    t->xt.max_tokens = (int32_t)tc->max_tokens;
    return 0;
}

static int task_job_work(void *arg, struct sl_ctx *ctx, struct sl_err *err)
{
    struct sl_task_job *t = arg;
    int rc;
    if (t->classify) {
        struct sl_classifier *c = NULL;
        if ((rc = sl_classifier_init(&c, ctx, &t->ct, err))) return rc; /* bad task */
        rc = sl_classify_batch(c, t->inputs, t->n, t->cres, err);
        sl_classifier_free(c);
        return rc;
    }
    struct sl_extractor *x = NULL;
    if ((rc = sl_extractor_init(&x, ctx, &t->xt, err))) return rc; /* bad schema */
    for (size_t i = 0; i < t->n && !rc; i++)
        rc = sl_extract(x, t->inputs[i], &t->xres[i], err);
    sl_extractor_free(x);
    return rc;
}

int sl_task_job_run(struct sl_task_job *t, int64_t deadline_ms, int fd, struct sl_err *err)
{
    struct sl_sched *sched = t->m->sched;
    int rc;
    if (t->classify && t->ct.mode == SL_PROMPT_CHAT) t->ct.chat_family = (int)t->m->family;
    if (!t->classify && t->xt.mode == SL_PROMPT_CHAT) t->xt.chat_family = (int)t->m->family;
    t->job.run = task_job_work;
    t->job.run_arg = t;
    t->job.deadline_ms = deadline_ms;
    if (t->should_stop && t->should_stop(t->stop_user))
        return sl_err_set(err, SL_TASK_JOB_EGONE, "client closed the connection"); /* gone already */
    if ((rc = sl_job_init(&t->job, err))) return rc; /* allocation failure */
    t->inited = true;
    if ((rc = sl_sched_submit(sched, &t->job, err))) return rc; /* queue full, too big */
    t->submitted = true;
    while (!t->seen.done) {
        sl_sched_wait(sched, &t->job, &t->seen, 200);
        if (t->seen.done) break;
        if (sl_http_peer_gone(fd) || (t->should_stop && t->should_stop(t->stop_user))) {
            sl_sched_cancel(sched, &t->job);
            while (!t->seen.done)
                sl_sched_wait(sched, &t->job, &t->seen, 1000);
            return sl_err_set(err, SL_TASK_JOB_EGONE, "client closed the connection");
        }
        if (deadline_ms && sl_sched_now_ms() > (double)deadline_ms && !t->timed_out) {
            t->timed_out = true;
            sl_sched_cancel(sched, &t->job);
        }
    }
    if (t->job.t_start_ms > 0 && t->job.t_done_ms >= t->job.t_start_ms)
        t->machine_ms = t->job.t_done_ms - t->job.t_start_ms;
    if (t->job.rc == SL_SCHED_ETIMEDOUT || t->timed_out)
        return sl_err_set(err, SL_SCHED_ETIMEDOUT,
                          "the request took longer than server.request_timeout_s");
    if (t->job.rc) {
        *err = t->job.err;
        return t->job.rc;
    }
    if (t->job.finish == SL_FINISH_CANCEL)
        return sl_err_set(err, SL_SCHED_ETIMEDOUT, "the task was cancelled");
    return 0;
}

void sl_task_job_free(struct sl_task_job *t)
{
    if (t->submitted) { /* a task job finishes its run; wait for it */
        while (!t->seen.done)
            sl_sched_wait(t->m->sched, &t->job, &t->seen, 1000);
    }
    if (t->inited) sl_job_free(&t->job);
    for (size_t i = 0; i < t->n; i++) {
        if (t->cres) sl_classify_result_free(&t->cres[i]);
        if (t->xres) sl_extract_result_free(&t->xres[i]);
    }
    free(t->cres);
    free(t->xres);
    free(t->inputs);
    free(t->examples);
    if (t->schema) json_decref(t->schema);
    memset(t, 0, sizeof *t);
}
