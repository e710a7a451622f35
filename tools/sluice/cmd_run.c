/*
 * cmd_run.c - `sluice run`: generate from a prompt, streaming to stdout
 * (tools layer).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"
#include "engine/chat.h"
#include "engine/generate.h"
#include "engine/lora.h"
#include "engine/model.h"

static const char *usage_text =
    "usage: sluice run -m MODEL.gguf -p TEXT [options]\n"
    "  -p, --prompt TEXT        the prompt (or the user message with --chat)\n"
    "  -f, --file PATH          read the prompt from a file\n"
    "  --lora FILE              merge a LoRA adapter (sluice train lora, llama.cpp format) at load\n"
    "  --lora-scale S           its scale (default 1)\n"
    "  --chat                   apply the model's chat template to the prompt\n"
    "  --system TEXT            system message (with --chat)\n"
    "  --chat-template NAME     override the template (chatml, llama3, llama2, mistral, phi3,\n"
    "                           gemma, zephyr)\n"
    "  -n, --n-predict N        tokens to generate (default 128)\n"
    "  --temp T                 temperature, 0 = greedy (default 0.8)\n"
    "  --top-k K  --top-p P  --min-p P  --repeat-penalty R  --repeat-last-n N\n"
    "  --seed S                 random seed (default 42)\n"
    "  --stop TEXT              stop string (repeatable)\n"
    "  --ignore-eos             keep generating past end-of-generation tokens\n"
    "  --logprobs N             print the N most likely alternatives of every token\n"
    "  -c, --ctx-size N         context size (default: the model's, at most 4096)\n"
    "  -t, --threads N          threads (default: all cores)\n"
    "  --no-prompt              do not echo the prompt\n"
    "  -v, --verbose            timings on stderr\n";

struct run_out {
    const struct sl_vocab *vocab;
    int n_probs;
};

static int on_token(void *user, const struct sl_sample *s, const char *text, size_t len)
{
    struct run_out *o = user;
    if (o->n_probs > 0 && s) {
        char piece[128];
        int pl = sl_token_to_piece(o->vocab, s->token, piece, sizeof piece, true);
        fprintf(stderr, "[%d '%.*s' p=%.4f |", s->token, pl > 0 ? pl : 0, piece, exp(s->logprob));
        for (int i = 0; i < s->n_probs; i++) {
            pl = sl_token_to_piece(o->vocab, s->top[i].token, piece, sizeof piece, true);
            fprintf(stderr, " '%.*s' %.4f", pl > 0 ? pl : 0, piece, exp(s->top[i].logprob));
        }
        fprintf(stderr, "]\n");
    }
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

int cmd_run(int argc, char **argv)
{
    const char *model_path = NULL, *prompt = NULL, *file = NULL, *system = NULL, *tmpl_name = NULL;
    const char *lora_path = NULL;
    double lora_scale = 1.0;
    struct cli_list stops = {0};
    bool chat = false, no_echo = false, verbose = false, ignore_eos = false;
    long long n_predict = 128, ctx_size = 0, threads = 0, lp = 0, top_k = 40, last_n = 64, seed = 42;
    double temp = 0.8, top_p = 0.95, min_p = 0.05, rep = 1.0;
    const struct cli_opt opts[] = {
        {"-m", "--model", CLI_STR, &model_path, 0, 0},
        {"-p", "--prompt", CLI_STR, &prompt, 0, 0},
        {"-f", "--file", CLI_STR, &file, 0, 0},
        {NULL, "--system", CLI_STR, &system, 0, 0},
        {NULL, "--chat-template", CLI_STR, &tmpl_name, 0, 0},
        {NULL, "--chat", CLI_FLAG, &chat, 0, 0},
        {NULL, "--stop", CLI_LIST, &stops, 0, 0},
        {"-n", "--n-predict", CLI_INT, &n_predict, 1, 1 << 20},
        {"-c", "--ctx-size", CLI_INT, &ctx_size, 8, 1 << 20},
        {"-t", "--threads", CLI_INT, &threads, 1, 1024},
        {NULL, "--logprobs", CLI_INT, &lp, 0, SL_SAMPLER_MAX_PROBS},
        {NULL, "--temp", CLI_FLOAT, &temp, 0, 100},
        {NULL, "--top-k", CLI_INT, &top_k, 0, 1 << 24},
        {NULL, "--top-p", CLI_FLOAT, &top_p, 0, 1},
        {NULL, "--min-p", CLI_FLOAT, &min_p, 0, 1},
        {NULL, "--repeat-penalty", CLI_FLOAT, &rep, 0, 10},
        {NULL, "--repeat-last-n", CLI_INT, &last_n, 0, SL_SAMPLER_MAX_LAST_N},
        {NULL, "--seed", CLI_INT, &seed, 0, 9007199254740992.0},
        {NULL, "--ignore-eos", CLI_FLAG, &ignore_eos, 0, 0},
        {NULL, "--no-prompt", CLI_FLAG, &no_echo, 0, 0},
        {"-v", "--verbose", CLI_FLAG, &verbose, 0, 0},
        {NULL, "--lora", CLI_STR, &lora_path, 0, 0},
        {NULL, "--lora-scale", CLI_FLOAT, &lora_scale, -100, 100},
    };
    struct sl_lora_merge *lora = NULL;
    struct sl_gen_params gp = sl_gen_default_params();
    struct sl_err err = {0};
    struct sl_model *m = NULL;
    struct sl_ctx *ctx = NULL;
    struct sl_gen_result res = {0};
    char *file_text = NULL, *rendered = NULL;
    int32_t *toks = NULL;
    size_t n_toks = 0;
    int rc = cli_parse("run", usage_text, argc, argv, opts, sizeof opts / sizeof *opts, NULL, 0, NULL);

    if (rc) return rc < 0 ? 0 : rc;
    if (!model_path) return cli_usage("run", "-m MODEL is required");
    if (!prompt && !file) return cli_usage("run", "give a prompt with -p TEXT or -f FILE");
    if (file) {
        FILE *f = fopen(file, "rb");
        size_t cap = 0, len = 0;
        if (!f) {
            sl_err_set(&err, SL_EIO, "cannot open '%s'", file);
            return cli_fail(&err, NULL);
        }
        for (;;) {
            if (len + 4096 + 1 > cap) {
                char *np = realloc(file_text, cap = cap * 2 + 8192);
                if (!np) break;
                file_text = np;
            }
            size_t k = fread(file_text + len, 1, 4096, f);
            len += k;
            if (k == 0) break;
        }
        fclose(f);
        if (!file_text) return cli_fail(&(struct sl_err){SL_ENOMEM, "out of memory"}, NULL);
        file_text[len] = 0;
        prompt = file_text;
    }
    if (tmpl_name) chat = true;
    gp.n_predict = (int32_t)n_predict;
    gp.ignore_eog = ignore_eos;
    gp.sampling.temp = (float)temp;
    gp.sampling.top_k = (int32_t)top_k;
    gp.sampling.top_p = (float)top_p;
    gp.sampling.min_p = (float)min_p;
    gp.sampling.repeat_penalty = (float)rep;
    gp.sampling.repeat_last_n = (int32_t)last_n;
    gp.sampling.seed = (uint64_t)seed;
    gp.sampling.n_probs = (int32_t)lp;

    if (sl_model_load(&m, model_path, true, &err)) {
        rc = cli_fail(&err, "is this a GGUF model file?");
        goto out; /* bad model */
    }
    if (lora_path) {
        if (sl_model_apply_lora(m, lora_path, (float)lora_scale, &lora, &err)) {
            rc = cli_fail(&err, "is this a LoRA adapter for this model ('sluice train lora')?");
            goto out; /* bad adapter */
        }
        if (verbose)
            fprintf(stderr, "lora: %s merged into %d weights (scale %g)\n", lora_path, sl_lora_merge_count(lora),
                    lora_scale);
    }
    if (!m->vocab) {
        sl_err_set(&err, SL_EFORMAT, "%s has no tokenizer (tokenizer.ggml.* metadata)", model_path);
        rc = cli_fail(&err, "use 'sluice logits' with token ids, or add a tokenizer with 'sluice convert'");
        goto out; /* no tokenizer */
    }
    const char *text = prompt;
    if (chat) {
        enum sl_chat_family fam = SL_CHAT_UNKNOWN;
        if (tmpl_name) {
            int f = sl_chat_family_from_name(tmpl_name);
            if (f < 0) {
                rc = cli_usage("run", "--chat-template: unknown template '%s' (known: %s)", tmpl_name,
                               sl_chat_family_names());
                goto out; /* bad flag */
            }
            fam = (enum sl_chat_family)f;
        } else if (m->chat_template) {
            fam = sl_chat_detect(m->chat_template);
        }
        struct sl_chat_msg msgs[2];
        size_t nm = 0;
        if (system) msgs[nm++] = (struct sl_chat_msg){"system", system};
        msgs[nm++] = (struct sl_chat_msg){"user", prompt};
        if (sl_chat_apply(fam, msgs, nm, true, &rendered, &err)) {
            rc = cli_fail(&err, m->chat_template ? "pass --chat-template NAME to choose a template"
                                                 : "the model has no chat template: pass --chat-template NAME");
            goto out; /* unknown template */
        }
        text = rendered;
        /* stop on the template's end-of-turn strings too */
        size_t ns = 0;
        const char *const *ts = sl_chat_stop_strings(fam, &ns);
        for (size_t i = 0; i < ns && stops.n < CLI_LIST_MAX; i++) stops.v[stops.n++] = ts[i];
    }
    gp.stop = stops.v;
    gp.n_stop = stops.n;
    if (sl_tokenize(m->vocab, text, strlen(text), true, chat, &toks, &n_toks, &err)) {
        rc = cli_fail(&err, NULL);
        goto out; /* bad input */
    }
    struct sl_ctx_params cp = sl_ctx_default_params();
    cp.n_ctx = (int32_t)ctx_size;
    cp.n_threads = (int)threads;
    if (sl_ctx_init(&ctx, m, &cp, &err)) {
        rc = cli_fail(&err, NULL);
        goto out; /* allocation failure */
    }
    if (!no_echo) {
        fputs(text, stdout);
        fflush(stdout);
    }
    struct run_out ro = {m->vocab, (int)lp};
    if (sl_generate(ctx, m->vocab, toks, n_toks, &gp, on_token, &ro, &res, &err)) {
        rc = cli_fail(&err, err.code == SL_ERANGE ? "raise --ctx-size or shorten the prompt" : NULL);
        goto out; /* generation failure */
    }
    fputc('\n', stdout);
    fflush(stdout);
    if (verbose)
        fprintf(stderr, "prompt: %d tokens in %.1f ms (%.1f tok/s); generated: %d tokens in %.1f ms (%.1f tok/s); %s\n",
                res.n_prompt, res.t_prompt_ms, res.n_prompt * 1e3 / (res.t_prompt_ms + 1e-9), res.n_gen,
                res.t_gen_ms, res.n_gen * 1e3 / (res.t_gen_ms + 1e-9),
                res.finish == SL_FINISH_STOP ? "stopped" : "length");
    struct rusage ru;
    if (verbose && getrusage(RUSAGE_SELF, &ru) == 0)
        fprintf(stderr, "peak memory: %.1f MiB resident (docs/performance.md: model file + KV + at most 64 MiB)\n",
                (double)ru.ru_maxrss / 1024.0);
    rc = 0;
out:
    sl_gen_result_free(&res);
    sl_ctx_free(ctx);
    sl_model_free(m);
    sl_lora_merge_free(lora);
    free(toks);
    free(rendered);
    free(file_text);
    return rc;
}
