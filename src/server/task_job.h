/*
 * task_job.h - a classify or extract request as one task job on a model's
 * engine thread (server layer). /v1/classify and /v1/extract (routes.c)
 * and the local backend's task call (local_backend.c) both go through it,
 * so a routed task runs exactly as a direct one.
 *
 *   struct sl_task_job t;
 *   sl_task_job_init(&t, m, true, n, &err);           // classify, n inputs
 *   sl_task_job_use_config(&t, tc, &err);              // or fill t.ct ad hoc
 *   t.inputs[i] = ...;
 *   rc = sl_task_job_run(&t, deadline_ms, fd, &err);   // t.cres[i] / t.xres[i]
 *   sl_task_job_free(&t);
 *
 * Threads: one struct per request, used by one thread.
 */
#ifndef SL_TASK_JOB_H
#define SL_TASK_JOB_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "../config/config.h"
#include "../tasks/classify.h"
#include "../tasks/extract.h"
#include "sched.h"

struct sl_served_model;

#define SL_TASK_JOB_EGONE (-66) /* the client closed the connection; the job was cancelled */

struct sl_task_job {
    bool classify;
    struct sl_classify_task ct; /* classify: the task (borrowed strings) */
    struct sl_extract_task xt;  /* extract: the task (borrowed strings) */
    const char **inputs;        /* (n) borrowed texts, set by the caller */
    size_t n;
    struct sl_classify_result *cres; /* (n) classify: filled by run */
    struct sl_extract_result *xres;  /* (n) extract: filled by run */
    bool timed_out;                  /* run passed its deadline */
    double machine_ms;               /* the job's time on the engine thread */
    int (*should_stop)(void *);      /* optional: asked while run waits, as the fd */
    void *stop_user;

    /* private */
    struct sl_served_model *m;
    json_t *schema; /* a configured task's schema, owned */
    struct sl_classify_example *examples;
    struct sl_job job;
    struct sl_job_progress seen;
    bool inited, submitted;
};

/* Zero t and allocate n inputs and results on model m. */
int sl_task_job_init(struct sl_task_job *t, struct sl_served_model *m, bool classify, size_t n,
                     struct sl_err *err);

/* Take the task from a configured one (its kind must match t->classify):
 * instruction, labels, examples, temperature, prompt mode, schema,
 * max_tokens. tc must outlive t. */
int sl_task_job_use_config(struct sl_task_job *t, const struct sl_task_config *tc,
                           struct sl_err *err);

/* Queue the job and wait for it. fd: the client's socket, watched while
 * waiting (-1: none), as t->should_stop is. Returns 0 (results filled), SL_SCHED_EBUSY (queue
 * full or shutting down), SL_TASK_JOB_EGONE, SL_SCHED_ETIMEDOUT (also when
 * t->timed_out), or the task's own error (SL_ERANGE: the input does not fit
 * or the output ran out of tokens; SL_EINVAL...) with err set. */
int sl_task_job_run(struct sl_task_job *t, int64_t deadline_ms, int fd, struct sl_err *err);

/* Waits for a job still running, frees results and everything owned. */
void sl_task_job_free(struct sl_task_job *t);

#endif
