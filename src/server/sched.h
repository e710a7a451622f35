/*
 * sched.h - continuous batching for one model (server layer).
 *
 * One engine thread per model owns an sl_ctx whose KV cache holds up to
 * `slots` running sequences plus the prefix cache. Each step it builds one
 * sl_batch: one decode entry per running job, then prefill chunks of newly
 * admitted jobs, up to `batch` entries, and runs sl_decode once. Requests
 * wait in a bounded FIFO queue for a slot and for KV cells; past the queue
 * cap sl_sched_submit refuses (the route answers 429 + Retry-After).
 *
 * Prefix cache: when a job finishes, its sequence is not removed but kept
 * as a cache entry (its tokens and KV cells). A new job whose prompt starts
 * with an entry's tokens (or with the computed tokens of a running job)
 * shares those cells (sl_kv_seq_cp: setting bits, no copy) and prefills only
 * the rest. Entries are evicted least recently used
 * first when the cache passes `cache_cells`, when sequence ids run out, or
 * when a job needs the cells. Jobs that want prompt log-probabilities
 * (echo) skip the cache: they need logits of every prompt position.
 *
 * Threads: every function here is thread-safe; jobs are submitted and read
 * from any thread (the HTTP connection threads) and run on the engine thread.
 *
 * Task jobs (classify, extract): a job with `run` set is a closure that the
 * engine thread calls between batching steps, as a step of its own, with a
 * task context: a second sl_ctx of the same size, made on first use, whose
 * every sequence the closure may use. The scheduler's slots and prefix
 * cache live on the other context, so task sequence ids never collide with
 * them; the task context's cells are cleared after every run.
 *
 * Constrained generation: a job with `grammar` set gets a grammar stage in
 * its sampler (after the penalties), fed only the generated tokens; it ends
 * (finish STOP) when the grammar is complete and can take no more bytes.
 *
 * A job's life: the caller fills struct sl_job's input fields, calls
 * sl_sched_submit, then sl_sched_wait until done, reading output through
 * the wait's struct sl_job_progress; then sl_job_free. To give up (client
 * gone, timeout) call sl_sched_cancel and keep waiting until done: the job
 * is finished within one engine step.
 */
#ifndef SL_SCHED_H
#define SL_SCHED_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "../base/buf.h"
#include "../config/config.h"
#include "../engine/forward.h"
#include "../engine/generate.h"
#include "../engine/grammar.h"
#include "../engine/sampler.h"

#define SL_SCHED_EBUSY (-64)     /* the queue is full: try again later */
#define SL_SCHED_ETIMEDOUT (-65) /* the job passed its deadline */

struct sl_sched_params {
    int32_t n_slots;     /* running sequences, 1..32 */
    int32_t n_ctx;       /* KV cells */
    int32_t n_batch;     /* entries per forward pass */
    int32_t n_queue;     /* waiting jobs */
    int32_t cache_cells; /* prefix cache cap in cells; 0 = off */
    int32_t embd_ctx;    /* tokens of one embedding input; 0 = no embeddings */
    int pooling;         /* enum sl_pooling */
    int n_threads;
    /* logit rows per forward pass (echo + logprobs scores every prompt
     * token, V floats each): at least n_slots + 1; 0 = sl_logit_rows */
    int32_t max_outputs;
};

/* One generated (or, for echo, prompt) token with its raw log-probabilities. */
struct sl_tok_out {
    int32_t token;
    float logprob;
    uint32_t text_off; /* bytes of generated text before this token */
    int32_t n_top;
    struct sl_token_logprob top[SL_SAMPLER_MAX_PROBS];
};

struct sl_sched;

struct sl_job {
    /* input: set before submit, not changed after */
    const int32_t *prompt; /* (n_prompt) borrowed until done */
    int32_t n_prompt;
    int32_t n_predict; /* tokens to generate; 0 only with prompt_logprobs */
    struct sl_sampler_params sampling;
    const char *const *stop; /* borrowed until done */
    size_t n_stop;
    bool prompt_logprobs;             /* fill prompt_lp (echo) */
    bool ignore_eog;                  /* end-of-generation tokens do not stop (they add no text) */
    bool embed;                       /* embedding job: fills embd, generates nothing */
    int64_t deadline_ms;              /* sl_sched_now_ms() clock; 0 = none */
    const struct sl_grammar *grammar; /* borrowed until done: constrain the output, or NULL */
    /* task job: run on the engine thread with the task context (prompt
     * unused); returns 0 or an SL_E* code with err set. arg is borrowed. */
    int (*run)(void *arg, struct sl_ctx *ctx, struct sl_err *err);
    void *run_arg;

    /* output: written by the engine thread; read through sl_sched_wait */
    struct sl_tok_out *toks;      /* (n_predict) */
    struct sl_tok_out *prompt_lp; /* (n_prompt) entry 0 unset, if prompt_logprobs */
    float *embd;                  /* (E) if embed */
    int32_t n_embd;
    struct sl_buf text; /* released text (stop strings held back) */
    int32_t n_toks;
    int32_t n_cached; /* prompt tokens taken from the prefix cache */
    bool done;
    enum sl_finish finish;
    int rc; /* 0, or an error (msg in err) */
    struct sl_err err;
    double t_queued_ms, t_start_ms, t_first_ms, t_done_ms;

    /* private to the scheduler */
    atomic_bool cancel;
    pthread_cond_t cond;
    struct sl_job *next; /* queue link */
    bool queued;
};

/* What a wait saw: text[0..text_len) and toks[0..n_toks) are valid. */
struct sl_job_progress {
    size_t text_len;
    int32_t n_toks;
    bool done;
};

/* Counters for /metrics (read without a lock; approximate). */
struct sl_sched_stats {
    atomic_llong n_steps, n_batch_tokens, n_prompt_tokens, n_gen_tokens, n_cached_tokens;
    atomic_llong batch_hist[8]; /* batch sizes: <=1, <=2, <=4, ... <=64, >64 */
    atomic_int queue_depth, running, cache_entries;
};

double sl_sched_now_ms(void);

/* Create the context and start the engine thread. m must outlive s. */
int sl_sched_init(struct sl_sched **out, const struct sl_model *m, const struct sl_sched_params *p,
                  struct sl_err *err);
/* Finish every running and queued job, stop the thread, free. NULL is fine. */
void sl_sched_free(struct sl_sched *s);

/* Prepare a job's outputs (after the input fields are set). */
int sl_job_init(struct sl_job *j, struct sl_err *err);
/* Free a job's outputs; the job must be done (or never submitted). */
void sl_job_free(struct sl_job *j);

/* Queue a job. SL_SCHED_EBUSY when the queue is full, SL_ERANGE when the
 * job can never fit the context (the message says so), SL_EINVAL. */
int sl_sched_submit(struct sl_sched *s, struct sl_job *j, struct sl_err *err);

/* Wait until the job has more text or tokens than *seen says, is done, or
 * timeout_ms passes (< 0: forever). Updates *seen. Returns true if anything
 * changed. */
bool sl_sched_wait(struct sl_sched *s, struct sl_job *j, struct sl_job_progress *seen,
                   int timeout_ms);

/* Append the job's text[from..to) to dst (under the lock: the engine may
 * grow the buffer meanwhile). 0, SL_ERANGE or SL_ENOMEM. */
int sl_sched_read_text(struct sl_sched *s, struct sl_job *j, size_t from, size_t to,
                       struct sl_buf *dst);

/* Ask the job to stop; it becomes done (finish CANCEL) within one step. */
void sl_sched_cancel(struct sl_sched *s, struct sl_job *j);

/* Model this scheduler runs. */
const struct sl_model *sl_sched_model(const struct sl_sched *s);
const struct sl_sched_params *sl_sched_params(const struct sl_sched *s);
struct sl_sched_stats *sl_sched_stats(struct sl_sched *s);

#endif
