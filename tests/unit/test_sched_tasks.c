/*
 * test_sched_tasks.c - the scheduler's task jobs and constrained jobs (the
 * server side of issue 5): a task closure runs on the engine thread with a
 * context of its own whose cells start and end empty, generation running
 * beside it gives the tokens it gives alone, a failing closure reports its
 * error; a job with a grammar produces only text the grammar accepts and
 * stops when the grammar is complete.
 */
#include "server/sched.h"

#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "convert/synth.h"
#include "engine/grammar.h"
#include "engine/model.h"
#include "test.h"

static struct sl_model *model;

static void load_model(void)
{
    struct sl_err err = {0};
    struct sl_synth_params sp = sl_synth_default_params();
    const char *path = t_tmp_path("sched_tasks.gguf");
    if (sl_synth_write(&sp, path, NULL, NULL, &err) || sl_model_load(&model, path, true, &err)) {
        fprintf(stderr, "cannot make the test model: %s\n", err.msg);
        exit(1);
    }
    unlink(path);
}

static struct sl_sched_params params(void)
{
    return (struct sl_sched_params){.n_slots = 2,
                                    .n_ctx = 256,
                                    .n_batch = 32,
                                    .n_queue = 16,
                                    .cache_cells = 128,
                                    .n_threads = 1};
}

static void wait_done(struct sl_sched *s, struct sl_job *j)
{
    struct sl_job_progress p = {0};
    for (int i = 0; i < 3000 && !p.done; i++)
        sl_sched_wait(s, j, &p, 100);
    T_TRUE(p.done);
}

struct probe {
    pthread_t caller;
    bool other_thread;
    int32_t used_before, used_after_fill;
    struct sl_ctx *ctx;
    bool fail;
};

/* Fill sequences 0..3 of the task context (what a classifier does). */
static int probe_run(void *arg, struct sl_ctx *ctx, struct sl_err *err)
{
    struct probe *p = arg;
    p->other_thread = !pthread_equal(pthread_self(), p->caller);
    p->ctx = ctx;
    p->used_before = ctx->kv.n_used;
    if (p->fail) return sl_err_set(err, SL_EINVAL, "probe: told to fail");
    struct sl_batch b;
    if (sl_batch_init(&b, 64)) return sl_err_set(err, SL_ENOMEM, "probe: out of memory");
    for (int seq = 0; seq < 4; seq++)
        for (int32_t i = 0; i < 6; i++)
            sl_batch_add(&b, 3 + (seq * 5 + i) % 200, i, seq, i == 5);
    int rc = sl_decode(ctx, &b, err);
    sl_batch_free(&b);
    p->used_after_fill = ctx->kv.n_used;
    return rc;
}

static void gen_job(struct sl_job *j, const int32_t *prompt, int32_t n, int32_t n_predict)
{
    memset(j, 0, sizeof *j);
    j->prompt = prompt;
    j->n_prompt = n;
    j->n_predict = n_predict;
    j->sampling = sl_sampler_default_params();
    j->sampling.temp = 0;
    struct sl_err err = {0};
    T_OK(sl_job_init(j, &err), &err);
}

static void sched_task_jobs_run_on_their_own_context(void)
{
    struct sl_sched *s;
    struct sl_err err = {0};
    struct sl_sched_params sp = params();
    T_OK(sl_sched_init(&s, model, &sp, &err), &err);
    int32_t prompt[12];
    for (int i = 0; i < 12; i++)
        prompt[i] = i ? 3 + i * 11 % 200 : 1;

    /* reference: the generation alone */
    struct sl_job ref;
    gen_job(&ref, prompt, 12, 16);
    T_OK(sl_sched_submit(s, &ref, &err), &err);
    wait_done(s, &ref);

    /* the same generation with task jobs around it */
    struct sl_job g, t1, t2;
    struct probe p1 = {.caller = pthread_self()}, p2 = {.caller = pthread_self()};
    gen_job(&g, prompt, 12, 16);
    memset(&t1, 0, sizeof t1);
    t1.run = probe_run;
    t1.run_arg = &p1;
    T_OK(sl_job_init(&t1, &err), &err);
    memset(&t2, 0, sizeof t2);
    t2.run = probe_run;
    t2.run_arg = &p2;
    T_OK(sl_job_init(&t2, &err), &err);
    T_OK(sl_sched_submit(s, &t1, &err), &err);
    T_OK(sl_sched_submit(s, &g, &err), &err);
    T_OK(sl_sched_submit(s, &t2, &err), &err);
    wait_done(s, &t1);
    wait_done(s, &g);
    wait_done(s, &t2);
    if (t1.rc) fprintf(stderr, "t1: %s\n", t1.err.msg);
    T_EQ_INT(t1.rc, 0);
    T_EQ_INT(t2.rc, 0);
    T_TRUE(p1.other_thread && p2.other_thread);
    T_EQ_INT(p1.used_before, 0);
    T_EQ_INT(p2.used_before, 0); /* t1's cells were cleared */
    T_EQ_INT(p1.used_after_fill, 24);
    T_TRUE(p1.ctx == p2.ctx);
    T_EQ_INT(g.rc, 0);
    T_EQ_INT(g.n_toks, ref.n_toks);
    for (int32_t i = 0; i < g.n_toks && i < ref.n_toks; i++)
        T_EQ_INT(g.toks[i].token, ref.toks[i].token);

    /* a failing closure: its error, nothing else disturbed */
    struct sl_job t3;
    struct probe p3 = {.caller = pthread_self(), .fail = true};
    memset(&t3, 0, sizeof t3);
    t3.run = probe_run;
    t3.run_arg = &p3;
    T_OK(sl_job_init(&t3, &err), &err);
    T_OK(sl_sched_submit(s, &t3, &err), &err);
    wait_done(s, &t3);
    T_EQ_INT(t3.rc, SL_EINVAL);
    T_TRUE(strstr(t3.err.msg, "told to fail") != NULL);

    sl_job_free(&ref);
    sl_job_free(&g);
    sl_job_free(&t1);
    sl_job_free(&t2);
    sl_job_free(&t3);
    sl_sched_free(s);
}

static void sched_grammar_jobs_follow_the_grammar(void)
{
    struct sl_sched *s;
    struct sl_err err = {0};
    struct sl_sched_params sp = params();
    T_OK(sl_sched_init(&s, model, &sp, &err), &err);
    struct sl_grammar *gr;
    const char *gt = "root ::= \"{\" [a-z]{1,4} \"}\"";
    T_OK(sl_grammar_parse(&gr, gt, strlen(gt), &err), &err);
    int32_t prompt[8];
    for (int i = 0; i < 8; i++)
        prompt[i] = i ? 5 + i * 17 % 200 : 1;
    for (int k = 0; k < 4; k++) {
        struct sl_job j;
        gen_job(&j, prompt, 8, 40);
        j.sampling.temp = 1;
        j.sampling.seed = (uint64_t)k + 1;
        j.grammar = gr;
        T_OK(sl_sched_submit(s, &j, &err), &err);
        wait_done(s, &j);
        T_EQ_INT(j.rc, 0);
        T_EQ_INT(j.finish, SL_FINISH_STOP);
        const char *t = j.text.p ? j.text.p : "";
        size_t n = j.text.len;
        bool ok = n >= 3 && n <= 6 && t[0] == '{' && t[n - 1] == '}';
        for (size_t i = 1; ok && i + 1 < n; i++)
            ok = t[i] >= 'a' && t[i] <= 'z';
        if (!ok) T_FAIL_AT("text '%.*s' does not match the grammar", (int)n, t);
        sl_job_free(&j);
    }
    sl_grammar_free(gr);
    sl_sched_free(s);
}

int main(void)
{
    load_model();
    T_RUN(sched_task_jobs_run_on_their_own_context);
    T_RUN(sched_grammar_jobs_follow_the_grammar);
    sl_model_free(model);
    return t_done();
}
