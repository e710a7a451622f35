/*
 * test_run_lora.c - `sluice run --lora`: an adapter from `sluice train lora`
 * merged at load changes the model's next-token distribution exactly as the
 * engine with the adapter merged computes it (tools layer, real binary).
 */
#include <math.h>
#include <sys/wait.h>

#include "convert/synth.h"
#include "engine/forward.h"
#include "engine/lora.h"
#include "engine/model.h"
#include "engine/vocab.h"
#include "test.h"

#define TOL_PROB 2e-4 /* the CLI prints 4 decimals */
#define PROMPT "card number 7, please"

static char model[320], csv[320], adapter[320];

static int run(const char *args, char *out, size_t cap)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", SL_TEST_BINARY, args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The first generated token and its probability from `--logprobs` output. */
static bool first_token(const char *out, int *tok, double *p)
{
    const char *s = strchr(out, '[');
    if (!s || sscanf(s, "[%d", tok) != 1) return false;
    const char *q = strstr(s, " p=");
    return q && sscanf(q, " p=%lf", p) == 1;
}

/* Greedy next token after PROMPT and its probability, in process. */
static void engine_next(bool with_lora, float scale, int *tok, double *p)
{
    struct sl_err err = {0};
    struct sl_model *m = NULL;
    struct sl_lora_merge *lm = NULL;
    struct sl_ctx *ctx = NULL;
    struct sl_batch b = {0};
    int32_t *toks = NULL;
    size_t nt = 0;
    T_OK(sl_model_load(&m, model, true, &err), &err);
    if (with_lora) T_OK(sl_model_apply_lora(m, adapter, scale, &lm, &err), &err);
    T_OK(sl_ctx_init(&ctx, m, NULL, &err), &err);
    T_OK(sl_tokenize(m->vocab, PROMPT, strlen(PROMPT), true, false, &toks, &nt, &err), &err);
    T_OK(sl_batch_init(&b, (int32_t)nt), &err);
    for (size_t i = 0; i < nt; i++) sl_batch_add(&b, toks[i], (int32_t)i, 0, i + 1 == nt);
    T_OK(sl_decode(ctx, &b, &err), &err);
    const float *lg = sl_ctx_logits(ctx, 0);
    int V = m->hp.n_vocab, best = 0;
    double mx = lg[0], z = 0;
    for (int i = 1; i < V; i++)
        if (lg[i] > lg[best]) best = i;
    mx = lg[best];
    for (int i = 0; i < V; i++) z += exp((double)lg[i] - mx);
    *tok = best;
    *p = 1.0 / z;
    sl_batch_free(&b);
    free(toks);
    sl_ctx_free(ctx);
    sl_model_free(m);
    sl_lora_merge_free(lm);
}

static void setup(void)
{
    struct sl_err err = {0};
    struct sl_synth_params sp = sl_synth_default_params();
    char out[16384], args[4096];
    snprintf(model, sizeof model, "%s/run_lora_model.gguf", SL_TEST_TMP);
    snprintf(csv, sizeof csv, "%s/run_lora.csv", SL_TEST_TMP);
    snprintf(adapter, sizeof adapter, "%s/run_lora_adapter.gguf", SL_TEST_TMP);
    sp.type = SL_TYPE_F32;
    T_OK(sl_synth_write(&sp, model, NULL, NULL, &err), &err);
    FILE *f = fopen(csv, "w");
    fputs("text,label\n", f);
    static const char *const words[] = {"card", "refund", "transfer"};
    for (int i = 0; i < 30; i++) fprintf(f, "\"%s number %d, please\",%s\n", words[i % 3], i, words[i % 3]);
    fclose(f);
    snprintf(args, sizeof args,
             "train lora -m %s --data %s -o %s --rank 4 --targets all --steps 30 --lr 2e-2 --seq 48 --batch 4 -t 2",
             model, csv, adapter);
    int rc = run(args, out, sizeof out);
    T_EQ_INT(rc, 0);
    if (rc) fprintf(stderr, "%s\n", out);
}

static void run_with_lora_gives_the_merged_models_distribution(void)
{
    char out[16384], args[4096];
    int t_base, t_lora, t_cli, t_zero, t_half_e, t_half;
    double p_base, p_lora, p_cli, p_zero, p_half_e, p_half;
    engine_next(false, 1, &t_base, &p_base);
    engine_next(true, 1, &t_lora, &p_lora);
    fprintf(stderr, "      base: token %d p %.4f; with the adapter: token %d p %.4f\n", t_base, p_base, t_lora,
            p_lora);
    /* the adapter moves the distribution */
    T_TRUE(t_base != t_lora || fabs(p_base - p_lora) > 0.01);

    snprintf(args, sizeof args, "run -m %s --lora %s -p \"%s\" -n 1 --temp 0 --logprobs 1 --no-prompt -v -t 2",
             model, adapter, PROMPT);
    T_EQ_INT(run(args, out, sizeof out), 0);
    T_TRUE(strstr(out, "lora: ") != NULL && strstr(out, "merged into") != NULL);
    T_TRUE(first_token(out, &t_cli, &p_cli));
    T_EQ_INT(t_cli, t_lora);
    T_NEAR(p_cli, p_lora, TOL_PROB);

    /* scale 0 is the base model; scale 0.5 matches the engine at 0.5 */
    snprintf(args, sizeof args, "run -m %s --lora %s --lora-scale 0 -p \"%s\" -n 1 --temp 0 --logprobs 1 -t 2",
             model, adapter, PROMPT);
    T_EQ_INT(run(args, out, sizeof out), 0);
    T_TRUE(first_token(out, &t_zero, &p_zero));
    T_EQ_INT(t_zero, t_base);
    T_NEAR(p_zero, p_base, TOL_PROB);
    engine_next(true, 0.5f, &t_half_e, &p_half_e);
    snprintf(args, sizeof args, "run -m %s --lora %s --lora-scale 0.5 -p \"%s\" -n 1 --temp 0 --logprobs 1 -t 2",
             model, adapter, PROMPT);
    T_EQ_INT(run(args, out, sizeof out), 0);
    T_TRUE(first_token(out, &t_half, &p_half));
    T_EQ_INT(t_half, t_half_e);
    T_NEAR(p_half, p_half_e, TOL_PROB);
}

static void run_refuses_a_file_that_is_not_an_adapter(void)
{
    char out[16384], args[4096];
    snprintf(args, sizeof args, "run -m %s --lora %s -p hi -n 1", model, model);
    T_EQ_INT(run(args, out, sizeof out), 1);
    T_TRUE(strstr(out, "error") != NULL);
    T_TRUE(strchr(out, '\n') != NULL);
    snprintf(args, sizeof args, "run -m %s --lora /nonexistent.gguf -p hi -n 1", model);
    T_EQ_INT(run(args, out, sizeof out), 1);
}

int main(void)
{
    setup();
    T_RUN(run_with_lora_gives_the_merged_models_distribution);
    T_RUN(run_refuses_a_file_that_is_not_an_adapter);
    return t_done();
}
