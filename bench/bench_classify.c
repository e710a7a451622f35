/*
 * bench_classify.c - latency of classification with a ~200-token shared
 * instruction and 4 labels: scoring with the instruction cached, scoring
 * cold, and naive generation of the label (prefill the whole prompt, then
 * generate the longest label's tokens greedily), plus the bare prefill of
 * the input's new tokens as the floor scoring should sit near.
 *
 *   bench_classify [MODEL.gguf] [--vocab VOCAB.gguf] [--threads N] [--reps N] [--json]
 *
 * Without a model it writes (once) a random-weight model of SmolLM2-135M's
 * shape, Q8_0, to /tmp/sluice-bench-smollm2-135m*.gguf: speed does not
 * depend on the weights. Its vocabulary is byte-level (every character a
 * token, so labels are long); --vocab grafts a real tokenizer (e.g.
 * ggml-vocab-gpt-2.gguf from the assets) so labels are 1-2 tokens as with a
 * real model. Numbers are means over the inputs; the machine is shared,
 * so compare the ratios within one run. Timing is never a test.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>

#include "convert/synth.h"
#include "engine/forward.h"
#include "engine/generate.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/quant.h"
#include "engine/vocab.h"
#include "tasks/classify.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void die(const char *what, const struct sl_err *err)
{
    fprintf(stderr, "bench_classify: %s: %s\n", what, err ? err->msg : "");
    exit(1);
}

static const char *sentences[] = {
    "You triage customer support tickets for a mobile bank. ",
    "Read the ticket carefully and decide which team should handle it. ",
    "Billing covers charges, refunds, fees, invoices and statements. ",
    "Technical covers the app crashing, login errors, and anything that does not load. ",
    "Account covers profile changes, identity checks, closing or opening accounts. ",
    "Other covers everything else, including compliments and general questions. ",
    "If a ticket mentions several problems, pick the one the customer cares most about. ",
    "Answer with the team name only. ",
};

static const char *inputs[] = {
    "I was charged twice for my card this month.",
    "The app closes as soon as I open it.",
    "How do I change my address?",
    "Thanks for the great service!",
    "My refund has not arrived after ten days.",
    "I cannot log in since the last update.",
    "Please close my savings account.",
    "What are your opening hours?",
};
#define N_INPUTS (int)(sizeof inputs / sizeof *inputs)

/* Replace the tokenizer of the model at path by vg's (same vocabulary size). */
static void graft_vocab(const char *path, struct sl_gguf *vg)
{
    struct sl_err err = {0};
    struct sl_gguf *sg = NULL;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (rename(path, tmp) != 0 || sl_gguf_open(&sg, tmp, &err)) die("graft", &err);
    struct sl_gguf_writer *w = sl_gguf_writer_init();
    for (uint64_t i = 0; i < sg->n_kv; i++)
        if (!(sg->kv[i].key.len >= 10 && !memcmp(sg->kv[i].key.ptr, "tokenizer.", 10))) sl_gguf_set_kv_from(w, &sg->kv[i]);
    for (uint64_t i = 0; i < vg->n_kv; i++)
        if (vg->kv[i].key.len >= 10 && !memcmp(vg->kv[i].key.ptr, "tokenizer.", 10)) sl_gguf_set_kv_from(w, &vg->kv[i]);
    for (uint64_t i = 0; i < sg->n_tensors; i++) {
        const struct sl_gguf_tensor *t = &sg->tensors[i];
        char tn[128];
        snprintf(tn, sizeof tn, "%.*s", (int)t->name.len, t->name.ptr);
        int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        if (sl_gguf_add_tensor(w, tn, t->type, t->n_dims, ne, t->data, t->size, &err)) die("graft", &err);
    }
    if (sl_gguf_writer_write(w, path, &err)) die("graft", &err);
    sl_gguf_writer_free(w);
    sl_gguf_free(sg);
    sl_gguf_free(vg);
    remove(tmp);
}

int main(int argc, char **argv)
{
    const char *path = NULL, *vocab = NULL;
    int threads = 2, reps = 1;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "--vocab") && i + 1 < argc) vocab = argv[++i];
        else path = argv[i];
    }
    struct sl_err err = {0};
    char synth_path[4096];
    if (!path) {
        struct stat st;
        const char *vb = vocab ? strrchr(vocab, '/') : NULL;
        snprintf(synth_path, sizeof synth_path, "/tmp/sluice-bench-smollm2-135m%s%s", vb ? "-" : "",
                 vb ? vb + 1 : ".gguf");
        path = synth_path;
        if (stat(path, &st) != 0) {
            struct sl_synth_params p = sl_synth_default_params();
            struct sl_gguf *vg = NULL;
            if (sl_synth_preset("smollm2-135m", &p, &err)) die("preset", &err);
            p.type = SL_TYPE_Q8_0;
            if (vocab) {
                if (sl_gguf_open(&vg, vocab, &err)) die("vocab", &err);
                const struct sl_gguf_kv *tk = sl_gguf_find(vg, "tokenizer.ggml.tokens");
                if (!tk) die("vocab has no tokenizer.ggml.tokens", NULL);
                p.n_vocab = (int32_t)tk->arr_n;
            }
            fprintf(stderr, "writing %s ...\n", path);
            if (sl_synth_write(&p, path, NULL, NULL, &err)) die("synth", &err);
            if (vg) graft_vocab(path, vg);
        }
    }
    struct sl_model *m = NULL;
    if (sl_model_load(&m, path, true, &err)) die("load", &err);
    struct sl_ctx_params cp = sl_ctx_default_params();
    cp.n_ctx = 2048;
    cp.n_threads = threads;
    struct sl_ctx *ctx = NULL, *ctx2 = NULL; /* ctx2: cold scoring and generation, so ctx keeps its cache */
    if (sl_ctx_init(&ctx, m, &cp, &err) || sl_ctx_init(&ctx2, m, &cp, &err)) die("ctx", &err);

    /* an instruction of about 200 tokens */
    char instruction[8192] = "";
    for (int k = 0;; k++) {
        int32_t *t = NULL;
        size_t n = 0;
        strcat(instruction, sentences[k % 8]);
        sl_tokenize(m->vocab, instruction, strlen(instruction), true, false, &t, &n, &err);
        free(t);
        if (n >= 190 || strlen(instruction) > 7000) break;
    }
    const char *labels[] = {"billing", "technical", "account", "other"};
    struct sl_classify_task task = sl_classify_default_task();
    task.labels = labels;
    task.n_labels = 4;
    task.instruction = instruction;
    task.mode = SL_PROMPT_PLAIN;

    struct sl_classifier *c = NULL;
    struct sl_classify_result r;
    if (sl_classifier_init(&c, ctx, &task, &err)) die("classifier", &err);
    if (sl_classify(c, "warm-up", &r, &err)) die("classify", &err);
    int32_t n_prompt = r.n_prompt, max_label = 0;
    for (int l = 0; l < 4; l++) max_label = SL_MAX(max_label, r.n_tokens[l]);
    sl_classify_result_free(&r);

    double t_cached = 0, t_cold = 0, t_naive = 0, t_prefill = 0, t_batch = 0;
    double n_eval = 0, n_new = 0;
    for (int rep = 0; rep < reps; rep++) {
        /* a. scoring, instruction cached on seq 0 */
        for (int i = 0; i < N_INPUTS; i++) {
            double t0 = now_ms();
            if (sl_classify(c, inputs[i], &r, &err)) die("classify", &err);
            t_cached += now_ms() - t0;
            n_eval += r.n_eval;
            sl_classify_result_free(&r);
        }
        /* e. scoring all inputs in one batch call */
        {
            struct sl_classify_result rb[N_INPUTS];
            double t0 = now_ms();
            if (sl_classify_batch(c, inputs, N_INPUTS, rb, &err)) die("classify", &err);
            t_batch += (now_ms() - t0) / N_INPUTS;
            for (int i = 0; i < N_INPUTS; i++) sl_classify_result_free(&rb[i]);
        }
        /* b. scoring cold: a fresh classifier clears the cache */
        for (int i = 0; i < N_INPUTS; i++) {
            struct sl_classifier *cc = NULL;
            double t0 = now_ms();
            if (sl_classifier_init(&cc, ctx2, &task, &err) || sl_classify(cc, inputs[i], &r, &err))
                die("classify", &err);
            t_cold += now_ms() - t0;
            sl_classify_result_free(&r);
            sl_classifier_free(cc);
        }
        /* c. naive: prefill the whole prompt, generate the longest label greedily */
        for (int i = 0; i < N_INPUTS; i++) {
            char *prompt = NULL;
            int32_t *toks = NULL;
            size_t n = 0;
            struct sl_gen_params gp = sl_gen_default_params();
            struct sl_gen_result gr;
            gp.n_predict = max_label;
            gp.sampling.temp = 0;
            gp.ignore_eog = true;
            double t0 = now_ms();
            sl_classifier_render(c, inputs[i], &prompt, &err);
            sl_tokenize(m->vocab, prompt, strlen(prompt), true, false, &toks, &n, &err);
            if (sl_generate(ctx2, m->vocab, toks, n, &gp, NULL, NULL, &gr, &err)) die("generate", &err);
            t_naive += now_ms() - t0;
            sl_gen_result_free(&gr);
            free(toks);
            free(prompt);
        }
        /* d. the floor: prefill only the input's new prompt tokens after the cached
              instruction, one logit, no tokenization, no label work */
        for (int i = 0; i < N_INPUTS; i++) {
            char *prompt = NULL;
            int32_t *toks = NULL;
            size_t n = 0;
            if (sl_classify(c, inputs[i], &r, &err)) die("classify", &err); /* learn the split */
            int32_t from = r.n_cached, to = r.n_prompt;
            sl_classify_result_free(&r);
            sl_classifier_render(c, inputs[i], &prompt, &err);
            sl_tokenize(m->vocab, prompt, strlen(prompt), true, false, &toks, &n, &err);
            struct sl_batch b;
            sl_batch_init(&b, (int32_t)n);
            sl_kv_seq_cp(&ctx->kv, 0, 1, 0, from);
            for (int32_t j = from; j < to; j++) sl_batch_add(&b, toks[j], j, 1, j == to - 1);
            double t0 = now_ms();
            if (sl_decode(ctx, &b, &err)) die("decode", &err);
            t_prefill += now_ms() - t0;
            n_new += to - from;
            sl_kv_seq_rm(&ctx->kv, 1, 0, -1);
            sl_batch_free(&b);
            free(toks);
            free(prompt);
        }
    }
    int N = N_INPUTS * reps;
    t_cached /= N;
    t_cold /= N;
    t_naive /= N;
    t_prefill /= N;
    t_batch /= reps;
    n_eval /= N;
    n_new /= N;

    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    struct utsname un;
    uname(&un);
    if (json) {
        printf("{\"bench\":\"classify\",\"date\":\"%s\",\"machine\":\"%s %s\",\"model\":\"%s\",\"threads\":%d,"
               "\"prompt_tokens\":%d,\"new_tokens\":%.1f,\"labels\":4,\"max_label_tokens\":%d,\"evaluated_tokens\":%.1f,"
               "\"ms\":{\"scoring_cached\":%.2f,\"scoring_batch8_per_input\":%.2f,\"scoring_cold\":%.2f,"
               "\"naive_generation\":%.2f,\"prefill_new_tokens\":%.2f}}\n",
               date, un.nodename, un.machine, m->name, threads, n_prompt, n_new, max_label, n_eval, t_cached, t_batch,
               t_cold, t_naive, t_prefill);
    } else {
        printf("model %s, %d threads, prompt %d tokens (instruction ~%d), 4 labels (longest %d tokens), %s\n\n",
               m->name, threads, n_prompt, n_prompt - 20, max_label, date);
        printf("| method | ms / input | vs naive generation |\n|---|---|---|\n");
        printf("| scoring, instruction cached | %.1f | %.2fx |\n", t_cached, t_naive / t_cached);
        printf("| scoring, 8 inputs per batch | %.1f | %.2fx |\n", t_batch, t_naive / t_batch);
        printf("| scoring, cold (whole prompt) | %.1f | %.2fx |\n", t_cold, t_naive / t_cold);
        printf("| naive: prefill + generate %d tokens | %.1f | 1.00x |\n", max_label, t_naive);
        printf("| floor: prefill of the %.0f new prompt tokens only | %.1f | %.2fx |\n", n_new, t_prefill,
               t_naive / t_prefill);
    }
    sl_classifier_free(c);
    sl_ctx_free(ctx);
    sl_ctx_free(ctx2);
    sl_model_free(m);
    return 0;
}
