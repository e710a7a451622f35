/*
 * test_sched.c - the continuous-batching scheduler on a tiny random model:
 * batched jobs give the tokens they give alone, the prefix cache shares
 * cells without changing results, the queue refuses past its cap, cancel
 * ends jobs, echo scores the prompt as a plain forward pass does.
 */
#include "server/sched.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

#include "convert/synth.h"
#include "engine/model.h"
#include "test.h"

static struct sl_model *model;

static void load_model(void)
{
    struct sl_err err = {0};
    struct sl_synth_params sp = sl_synth_default_params();
    const char *path = t_tmp_path("sched.gguf");
    if (sl_synth_write(&sp, path, NULL, NULL, &err) || sl_model_load(&model, path, true, &err)) {
        fprintf(stderr, "cannot make the test model: %s\n", err.msg);
        exit(1);
    }
    unlink(path);
}

static struct sl_sched_params params(int slots, int queue, int cache)
{
    return (struct sl_sched_params){.n_slots = slots,
                                    .n_ctx = 512,
                                    .n_batch = 64,
                                    .n_queue = queue,
                                    .cache_cells = cache,
                                    .embd_ctx = 64,
                                    .pooling = SL_POOLING_MEAN,
                                    .n_threads = 1};
}

static void job_setup(struct sl_job *j, const int32_t *prompt, int32_t n, int32_t n_predict)
{
    memset(j, 0, sizeof *j);
    j->prompt = prompt;
    j->n_prompt = n;
    j->n_predict = n_predict;
    j->sampling = sl_sampler_default_params();
    j->sampling.temp = 0; /* greedy: results are comparable */
    struct sl_err err = {0};
    T_OK(sl_job_init(j, &err), &err);
}

static void wait_done(struct sl_sched *s, struct sl_job *j)
{
    struct sl_job_progress p = {0};
    for (int i = 0; i < 3000 && !p.done; i++)
        sl_sched_wait(s, j, &p, 100);
    T_TRUE(p.done);
}

static void prompt_of(int32_t *p, int32_t n, int32_t salt)
{
    p[0] = 1; /* BOS */
    for (int32_t i = 1; i < n; i++)
        p[i] = 3 + (i * 7 + salt * 13) % 250;
}

static void sched_batched_jobs_match_jobs_run_alone(void)
{
    struct sl_sched *s;
    struct sl_err err = {0};
    enum { N = 6, P = 20, G = 12 };
    int32_t prompts[N][P], alone[N][G];
    struct sl_job jobs[N];
    for (int i = 0; i < N; i++)
        prompt_of(prompts[i], P - i, i);

    struct sl_sched_params sp = params(1, 16, 0);
    T_OK(sl_sched_init(&s, model, &sp, &err), &err);
    for (int i = 0; i < N; i++) {
        job_setup(&jobs[i], prompts[i], P - i, G);
        T_OK(sl_sched_submit(s, &jobs[i], &err), &err);
        wait_done(s, &jobs[i]);
        T_EQ_INT(jobs[i].n_toks, G);
        for (int k = 0; k < G; k++)
            alone[i][k] = jobs[i].toks[k].token;
        sl_job_free(&jobs[i]);
    }
    sl_sched_free(s);

    sp = params(4, 16, 0);
    T_OK(sl_sched_init(&s, model, &sp, &err), &err);
    for (int i = 0; i < N; i++) {
        job_setup(&jobs[i], prompts[i], P - i, G);
        T_OK(sl_sched_submit(s, &jobs[i], &err), &err);
    }
    for (int i = 0; i < N; i++) {
        wait_done(s, &jobs[i]);
        T_EQ_INT(jobs[i].rc, 0);
        T_EQ_INT(jobs[i].finish, SL_FINISH_LENGTH);
        for (int k = 0; k < G && k < jobs[i].n_toks; k++)
            T_EQ_INT(jobs[i].toks[k].token, alone[i][k]);
        sl_job_free(&jobs[i]);
    }
    struct sl_sched_stats *st = sl_sched_stats(s);
    T_TRUE(atomic_load(&st->n_steps) < N * G); /* fewer passes than tokens: jobs shared them */
    sl_sched_free(s);
}

static void sched_prefix_cache_shares_cells_and_keeps_results(void)
{
    struct sl_sched *s;
    struct sl_err err = {0};
    enum { P = 40, G = 8 };
    int32_t a[P], b[P];
    prompt_of(a, P, 1);
    memcpy(b, a, sizeof a);
    b[P - 3] = 5; /* same first P-3 tokens */
    struct sl_sched_params sp = params(2, 4, 256);
    T_OK(sl_sched_init(&s, model, &sp, &err), &err);
    struct sl_job j1, j2, j3;
    job_setup(&j1, b, P, G);
    T_OK(sl_sched_submit(s, &j1, &err), &err);
    wait_done(s, &j1);
    T_EQ_INT(j1.n_cached, 0);
    job_setup(&j2, a, P, G);
    T_OK(sl_sched_submit(s, &j2, &err), &err);
    wait_done(s, &j2);
    T_EQ_INT(j2.n_cached, P - 3);
    /* the same prompt again: all but the last token come from the cache */
    job_setup(&j3, a, P, G);
    T_OK(sl_sched_submit(s, &j3, &err), &err);
    wait_done(s, &j3);
    T_EQ_INT(j3.n_cached, P - 1);
    for (int k = 0; k < G; k++)
        T_EQ_INT(j3.toks[k].token, j2.toks[k].token);
    for (int k = 0; k < G; k++)
        T_NEAR(j3.toks[k].logprob, j2.toks[k].logprob, 1e-4);
    sl_job_free(&j1);
    sl_job_free(&j2);
    sl_job_free(&j3);
    sl_sched_free(s);
}

static void sched_shares_the_prefix_of_a_running_job(void)
{
    struct sl_sched *s;
    struct sl_err err = {0};
    enum { P = 40, G = 6 };
    int32_t a[P];
    prompt_of(a, P, 8);
    struct sl_sched_params sp = params(2, 4, 256);
    T_OK(sl_sched_init(&s, model, &sp, &err), &err);
    struct sl_job ref, run, j;
    job_setup(&ref, a, P, G); /* the result alone, for comparison */
    T_OK(sl_sched_submit(s, &ref, &err), &err);
    wait_done(s, &ref);
    sl_sched_free(s);
    T_OK(sl_sched_init(&s, model, &sp, &err), &err); /* empty cache */
    job_setup(&run, a, P, 400);
    T_OK(sl_sched_submit(s, &run, &err), &err);
    struct sl_job_progress pr = {0};
    while (pr.n_toks == 0 && !pr.done)
        sl_sched_wait(s, &run, &pr, 100); /* its prefill is done */
    job_setup(&j, a, P, G);
    T_OK(sl_sched_submit(s, &j, &err), &err);
    wait_done(s, &j);
    T_EQ_INT(j.n_cached, P - 1);
    for (int k = 0; k < G; k++)
        T_EQ_INT(j.toks[k].token, ref.toks[k].token);
    sl_sched_cancel(s, &run);
    wait_done(s, &run);
    sl_job_free(&ref);
    sl_job_free(&run);
    sl_job_free(&j);
    sl_sched_free(s);
}

static void sched_refuses_past_the_queue_and_cancels(void)
{
    struct sl_sched *s;
    struct sl_err err = {0};
    int32_t p[16];
    prompt_of(p, 16, 2);
    struct sl_sched_params sp = params(1, 1, 0);
    T_OK(sl_sched_init(&s, model, &sp, &err), &err);
    struct sl_job j1, j2, j3;
    job_setup(&j1, p, 16, 400);
    job_setup(&j2, p, 16, 400);
    job_setup(&j3, p, 16, 4);
    T_OK(sl_sched_submit(s, &j1, &err), &err);
    T_OK(sl_sched_submit(s, &j2, &err), &err);
    T_EQ_INT(sl_sched_submit(s, &j3, &err), SL_SCHED_EBUSY);
    sl_sched_cancel(s, &j2); /* queued */
    sl_sched_cancel(s, &j1); /* running */
    wait_done(s, &j1);
    wait_done(s, &j2);
    T_EQ_INT(j1.finish, SL_FINISH_CANCEL);
    T_EQ_INT(j2.finish, SL_FINISH_CANCEL);
    T_TRUE(j1.n_toks < 400);
    T_EQ_INT(j2.n_toks, 0);
    /* room again */
    T_OK(sl_sched_submit(s, &j3, &err), &err);
    wait_done(s, &j3);
    T_EQ_INT(j3.n_toks, 4);
    sl_job_free(&j1);
    sl_job_free(&j2);
    sl_job_free(&j3);
    sl_sched_free(s);
}

static void sched_ends_jobs_past_their_deadline(void)
{
    struct sl_sched *s;
    struct sl_err err = {0};
    int32_t p[16];
    prompt_of(p, 16, 6);
    struct sl_sched_params sp = params(1, 1, 0);
    T_OK(sl_sched_init(&s, model, &sp, &err), &err);
    struct sl_job j;
    job_setup(&j, p, 16, 400);
    j.deadline_ms = (int64_t)sl_sched_now_ms() - 1;
    T_OK(sl_sched_submit(s, &j, &err), &err);
    wait_done(s, &j);
    T_EQ_INT(j.rc, SL_SCHED_ETIMEDOUT);
    T_TRUE(strstr(j.err.msg, "timed out") != NULL);
    T_TRUE(j.n_toks < 400);
    sl_job_free(&j);
    sl_sched_free(s);
}

static void sched_rejects_jobs_larger_than_the_context(void)
{
    struct sl_sched *s;
    struct sl_err err = {0};
    int32_t p[16];
    prompt_of(p, 16, 3);
    struct sl_sched_params sp = params(1, 1, 0);
    T_OK(sl_sched_init(&s, model, &sp, &err), &err);
    struct sl_job j;
    job_setup(&j, p, 16, 600);
    T_EQ_INT(sl_sched_submit(s, &j, &err), SL_ERANGE);
    T_TRUE(strstr(err.msg, "context") != NULL);
    sl_job_free(&j);
    sl_sched_free(s);
}

/* Submit an echo job (score the prompt, generate nothing) and wait for it. */
static void run_echo(struct sl_sched *s, struct sl_job *j, const int32_t *p, int32_t n, int n_probs)
{
    struct sl_err err = {0};
    memset(j, 0, sizeof *j);
    j->prompt = p;
    j->n_prompt = n;
    j->prompt_logprobs = true;
    j->sampling = sl_sampler_default_params();
    j->sampling.n_probs = n_probs;
    T_OK(sl_job_init(j, &err), &err);
    T_OK(sl_sched_submit(s, j, &err), &err);
    wait_done(s, j);
    T_EQ_INT(j->rc, 0);
    T_EQ_INT(j->n_toks, 0);
}

static void sched_echo_scores_the_prompt_like_a_plain_forward_pass(void)
{
    struct sl_sched *s;
    struct sl_err err = {0};
    enum { P = 24 };
    int32_t p[P];
    prompt_of(p, P, 4);
    struct sl_sched_params sp = params(2, 2, 128);
    T_OK(sl_sched_init(&s, model, &sp, &err), &err);
    struct sl_job j;
    run_echo(s, &j, p, P, 3);

    struct sl_ctx *ctx;
    struct sl_ctx_params cp = sl_ctx_default_params();
    cp.n_ctx = 64;
    cp.n_batch = 64;
    cp.n_threads = 1;
    T_OK(sl_ctx_init(&ctx, model, &cp, &err), &err);
    struct sl_batch b;
    sl_batch_init(&b, 64);
    for (int i = 0; i < P; i++)
        sl_batch_add(&b, p[i], i, 0, true);
    T_OK(sl_decode(ctx, &b, &err), &err);
    int32_t V = model->hp.n_vocab;
    for (int i = 1; i < P; i++) {
        float want = sl_logprob_raw(sl_ctx_logits(ctx, i - 1), V, p[i]);
        T_NEAR(j.prompt_lp[i].logprob, want, 1e-4);
        T_EQ_INT(j.prompt_lp[i].n_top, 3);
        T_TRUE(j.prompt_lp[i].top[0].logprob >= j.prompt_lp[i].top[1].logprob);
    }
    /* without alternatives (logprobs: 0) the scores are the same */
    struct sl_job j0;
    run_echo(s, &j0, p, P, 0);
    for (int i = 1; i < P; i++) {
        T_NEAR(j0.prompt_lp[i].logprob, j.prompt_lp[i].logprob, 1e-6);
        T_EQ_INT(j0.prompt_lp[i].n_top, 0);
    }
    sl_job_free(&j0);

    /* logits bounded to 3 rows per step: 24 prompt tokens take 8 steps or
     * more, and score the same */
    struct sl_sched *s3;
    sp.max_outputs = 3;
    T_OK(sl_sched_init(&s3, model, &sp, &err), &err);
    struct sl_job j3;
    run_echo(s3, &j3, p, P, 0);
    T_TRUE(atomic_load(&sl_sched_stats(s3)->n_steps) >= P / 3);
    for (int i = 1; i < P; i++) T_NEAR(j3.prompt_lp[i].logprob, j.prompt_lp[i].logprob, 1e-4);
    sl_job_free(&j3);
    sl_sched_free(s3);

    sl_batch_free(&b);
    sl_ctx_free(ctx);
    sl_job_free(&j);
    sl_sched_free(s);
}

static void sched_embeddings_are_unit_vectors(void)
{
    struct sl_sched *s;
    struct sl_err err = {0};
    int32_t p[10];
    prompt_of(p, 10, 5);
    struct sl_sched_params sp = params(1, 2, 0);
    T_OK(sl_sched_init(&s, model, &sp, &err), &err);
    struct sl_job j;
    memset(&j, 0, sizeof j);
    j.prompt = p;
    j.n_prompt = 10;
    j.embed = true;
    T_OK(sl_job_init(&j, &err), &err);
    T_OK(sl_sched_submit(s, &j, &err), &err);
    wait_done(s, &j);
    T_EQ_INT(j.rc, 0);
    T_EQ_INT(j.n_embd, model->hp.n_embd);
    double norm = 0;
    for (int k = 0; k < j.n_embd; k++)
        norm += (double)j.embd[k] * j.embd[k];
    T_NEAR(norm, 1.0, 1e-4);
    sl_job_free(&j);
    sl_sched_free(s);
}

int main(void)
{
    load_model();
    T_RUN(sched_batched_jobs_match_jobs_run_alone);
    T_RUN(sched_prefix_cache_shares_cells_and_keeps_results);
    T_RUN(sched_shares_the_prefix_of_a_running_job);
    T_RUN(sched_refuses_past_the_queue_and_cancels);
    T_RUN(sched_ends_jobs_past_their_deadline);
    T_RUN(sched_rejects_jobs_larger_than_the_context);
    T_RUN(sched_echo_scores_the_prompt_like_a_plain_forward_pass);
    T_RUN(sched_embeddings_are_unit_vectors);
    sl_model_free(model);
    return t_done();
}
