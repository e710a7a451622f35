/*
 * cmd_train.c - `sluice train head|lm|lora` (tools layer): options, data
 * loading, progress bar and the summary; the work is in src/train/.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "engine/forward.h"
#include "engine/lora.h"
#include "engine/model.h"
#include "engine/quant.h"
#include "engine/vocab.h"
#include "train/adamw.h"
#include "train/data.h"
#include "train/head.h"
#include "train/lm.h"

static const char *train_usage =
    "usage: sluice train <head|lm|lora> [options]   (sluice train <kind> --help)\n"
    "  head   a classification head on a frozen model's mean-pooled embeddings\n"
    "  lm     train a llama model: from scratch (--vocab-from) or continued (-m)\n"
    "  lora   a LoRA adapter for a GGUF model (llama.cpp adapter format)\n"
    "Data: CSV with a header, or JSONL; see docs/training.md.\n";

/* ------------------------------------------------------------------------ */
/* progress                                                                  */
/* ------------------------------------------------------------------------ */

static void on_progress(void *user, const struct sl_train_progress *p)
{
    char label[160];
    const char *unit = (const char *)user;
    if (!strcmp(p->phase, "embed")) {
        snprintf(label, sizeof label, "embed %.0f texts/s", p->items_per_s);
    } else if (isnan(p->val_loss)) {
        snprintf(label, sizeof label, "train loss %.4f  %.0f %s/s", p->loss, p->items_per_s, unit);
    } else {
        snprintf(label, sizeof label, "train loss %.4f val %.4f  %.0f %s/s", p->loss, p->val_loss,
                 p->items_per_s, unit);
    }
    cli_progress(label, (uint64_t)p->done, (uint64_t)p->total);
    /* not a terminal (a log file): one line per tenth of the run */
    if (!isatty(2) && p->total >= 10 && p->done % (p->total / 10) == 0)
        fprintf(stderr, "%s %lld/%lld\n", label, (long long)p->done, (long long)p->total);
}

/* ------------------------------------------------------------------------ */
/* train head                                                                */
/* ------------------------------------------------------------------------ */

static const char *head_usage =
    "usage: sluice train head -m MODEL.gguf --data FILE -o HEAD.gguf [options]\n"
    "Embeds every text once with the frozen model (mean of the final hidden states,\n"
    "cached under --cache-dir), then trains a linear or MLP head by cross-entropy.\n"
    "options:\n"
    "  --text-field NAME     column/key of the text (default: text, prompt, input)\n"
    "  --label-field NAME    column/key of the label (default: label, category, intent, ...)\n"
    "  --hidden N            hidden width of an MLP head; 0 = linear (default 0)\n"
    "  --epochs N            at most (default 50)      --batch N       (default 32)\n"
    "  --lr X                peak learning rate (3e-3) --wd X          weight decay (1e-4)\n"
    "  --val-frac X          validation share (0.1)    --patience N    epochs (5; 0 = off)\n"
    "  --seed N              (default 1)               --cache-dir DIR (default: none)\n"
    "  --ensemble K          train K heads (seeds N..N+K-1, each with its own validation\n"
    "                        split) and save them as one head that averages their\n"
    "                        probabilities: steadier accuracy and confidence (default 1)\n"
    "  --test FILE           report accuracy on a labelled test file\n"
    "  -c, --ctx-size N      tokens embedded per text (default 256)\n"
    "  -t, --threads N       threads (default: all CPUs)\n";

static int make_embed_ctx(const struct sl_model *m, long long n_ctx, long long threads, struct sl_ctx **ctx,
                          struct sl_err *err)
{
    struct sl_ctx_params cp = sl_ctx_default_params();
    cp.n_ctx = (int32_t)n_ctx;
    cp.n_batch = (int32_t)n_ctx;
    cp.n_threads = (int)threads;
    cp.embeddings = true;
    cp.no_logits = true;
    return sl_ctx_init(ctx, m, &cp, err);
}

static int cmd_train_head(int argc, char **argv)
{
    const char *model = NULL, *data = NULL, *out = NULL, *tf = NULL, *lf = NULL, *cache = NULL, *test = NULL;
    long long hidden = 0, epochs = 50, batch = 32, patience = 5, seed = 1, threads = 0, n_ctx = 256, members = 1;
    double lr = 3e-3, wd = 1e-4, val_frac = 0.1;
    const struct cli_opt opts[] = {
        {"-m", "--model", CLI_STR, &model, 0, 0},      {NULL, "--data", CLI_STR, &data, 0, 0},
        {"-o", "--output", CLI_STR, &out, 0, 0},       {NULL, "--text-field", CLI_STR, &tf, 0, 0},
        {NULL, "--label-field", CLI_STR, &lf, 0, 0},   {NULL, "--hidden", CLI_INT, &hidden, 0, 65536},
        {NULL, "--epochs", CLI_INT, &epochs, 1, 1e6},  {NULL, "--batch", CLI_INT, &batch, 1, 65536},
        {NULL, "--lr", CLI_FLOAT, &lr, 1e-8, 10},      {NULL, "--wd", CLI_FLOAT, &wd, 0, 10},
        {NULL, "--val-frac", CLI_FLOAT, &val_frac, 0, 0.9}, {NULL, "--patience", CLI_INT, &patience, 0, 1e6},
        {NULL, "--seed", CLI_INT, &seed, 0, 9e18},     {NULL, "--cache-dir", CLI_STR, &cache, 0, 0},
        {NULL, "--test", CLI_STR, &test, 0, 0},        {"-c", "--ctx-size", CLI_INT, &n_ctx, 8, 4096},
        {"-t", "--threads", CLI_INT, &threads, 0, 1024}, {NULL, "--ensemble", CLI_INT, &members, 1, SL_HEAD_MAX_MEMBERS},
    };
    int rc = cli_parse("train head", head_usage, argc, argv, opts, sizeof opts / sizeof *opts, NULL, 0, NULL);
    if (rc) return rc < 0 ? 0 : rc;
    if (!model || !data || !out) return cli_usage("train head", "-m MODEL, --data FILE and -o OUT are required");

    struct sl_err err = {0};
    struct sl_model *m = NULL;
    struct sl_ctx *ctx = NULL;
    struct sl_examples ex = {0}, tx = {0};
    struct sl_head h = {0};
    float *x = NULL, *tx_x = NULL;
    struct sl_head_train_result *res = NULL;
    int ret = CLI_EXIT_ERR;

    if (sl_examples_read(&ex, data, tf, lf, NULL, 0, &err)) goto fail;
    if (ex.n_labels < 2) {
        sl_err_set(&err, SL_EFORMAT, "%s: %zu distinct label(s); a head needs at least 2", data, ex.n_labels);
        goto fail;
    }
    if (sl_model_load(&m, model, true, &err) || make_embed_ctx(m, n_ctx, threads, &ctx, &err)) goto fail;
    fprintf(stderr, "%zu examples, %zu labels; embedding with %s (%d-wide)\n", ex.n, ex.n_labels,
            m->name ? m->name : model, m->hp.n_embd);
    if (cache) mkdir(cache, 0755);
    if (sl_embed_texts(ctx, ex.text, ex.n, cache, &x, on_progress, "texts", &err)) goto fail;
    if (sl_head_init_for_model(&h, m, (int32_t)hidden, (const char *const *)ex.labels, (int32_t)ex.n_labels,
                               (int32_t)n_ctx, &err))
        goto fail;
    struct sl_head_train_params p = sl_head_train_default_params();
    p.n_hidden = (int32_t)hidden;
    p.epochs = (int32_t)epochs;
    p.batch = (int32_t)batch;
    p.lr = (float)lr;
    p.min_lr = (float)lr / 10;
    p.weight_decay = (float)wd;
    p.patience = (int)patience;
    p.seed = (uint64_t)seed;
    if (!(res = calloc((size_t)members, sizeof *res))) {
        sl_err_set(&err, SL_ENOMEM, "out of memory");
        goto fail;
    }
    if (sl_head_train_ensemble(&h, x, ex.label, NULL, ex.n, val_frac, (int)members, ctx->params.n_threads, &p,
                               res, on_progress, "ex", &err))
        goto fail;
    for (long long k = 0; k < members; k++)
        fprintf(stderr, "%sbest epoch %d of %d: train loss %.4f, validation loss %.4f, accuracy %.4f (%zu held out), %.2fs\n",
                members > 1 ? (k ? "          " : "members:  ") : "", res[k].best_epoch, res[k].epochs_run,
                res[k].train_loss, res[k].val_loss, res[k].val_acc, res[k].n_val,
                res[k].seconds);
    if (sl_head_save(&h, out, &err)) goto fail;
    fprintf(stderr, "wrote %s (%s head, %d labels", out, hidden ? "MLP" : "linear", h.n_out);
    if (members > 1) fprintf(stderr, ", ensemble of %lld", members);
    fprintf(stderr, ")\n");
    if (test) {
        if (sl_examples_read(&tx, test, tf, lf, (const char *const *)ex.labels, ex.n_labels, &err)) goto fail;
        if (sl_embed_texts(ctx, tx.text, tx.n, cache, &tx_x, on_progress, "texts", &err)) goto fail;
        double tl, ta;
        sl_head_eval(&h, tx_x, tx.label, NULL, tx.n, &tl, &ta);
        printf("test: %zu examples, accuracy %.4f, loss %.4f\n", tx.n, ta, tl);
    }
    ret = 0;
fail:
    if (ret) cli_fail(&err, NULL);
    sl_head_free(&h);
    free(x);
    free(tx_x);
    free(res);
    sl_examples_free(&ex);
    sl_examples_free(&tx);
    sl_ctx_free(ctx);
    sl_model_free(m);
    return ret;
}

/* ------------------------------------------------------------------------ */
/* train lm / lora: shared data loading and test accuracy                    */
/* ------------------------------------------------------------------------ */

/* Load FILE as plain text (.txt or no CSV/JSONL structure) or as labelled
 * pairs rendered "text<suffix>label"; split documents into train/val. */
static int load_lm_data(const char *path, const struct sl_vocab *v, const char *tf, const char *lf,
                        const char *suffix, bool completion_only, double val_frac, uint64_t seed, long long max_ex,
                        struct sl_lm_data *train, struct sl_lm_data *val, struct sl_err *err)
{
    size_t pl = strlen(path);
    bool text = pl >= 4 && !strcmp(path + pl - 4, ".txt");
    int rc;
    if (text) {
        char *buf;
        size_t len;
        if ((rc = sl_read_file(path, &buf, &len, err))) return rc;
        /* the last val_frac of the bytes (at a line start) is held out */
        size_t cut = (size_t)((double)len * (1 - val_frac));
        while (cut < len && buf[cut] != '\n') cut++;
        rc = sl_lm_data_add_text(train, v, buf, cut, err);
        if (!rc && cut < len) rc = sl_lm_data_add_text(val, v, buf + cut, len - cut, err);
        free(buf);
        return rc;
    }
    struct sl_examples ex;
    if ((rc = sl_examples_read(&ex, path, tf, lf, NULL, 0, err))) return rc;
    int32_t *tr = NULL, *va = NULL;
    size_t ntr, nva;
    if ((rc = sl_split(ex.n, val_frac, seed, &tr, &ntr, &va, &nva, err))) goto out;
    if (max_ex > 0 && ntr > (size_t)max_ex) ntr = (size_t)max_ex;
    for (int pass = 0; pass < 2 && !rc; pass++) {
        const int32_t *idx = pass ? va : tr;
        size_t n = pass ? nva : ntr;
        for (size_t i = 0; i < n && !rc; i++) {
            char *prompt = malloc(strlen(ex.text[idx[i]]) + strlen(suffix) + 1);
            if (!prompt) {
                rc = sl_err_set(err, SL_ENOMEM, "out of memory");
                break;
            }
            strcpy(prompt, ex.text[idx[i]]);
            strcat(prompt, suffix);
            rc = sl_lm_data_add_pair(pass ? val : train, v, prompt, ex.labels[ex.label[idx[i]]], completion_only,
                                     err);
            free(prompt);
        }
    }
out:
    free(tr);
    free(va);
    sl_examples_free(&ex);
    return rc;
}

/* Text without leading/trailing white space, in place. */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\n') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n')) s[--n] = 0;
    return s;
}

/* Greedy-generate a completion for each test prompt with the engine and
 * count exact matches (white space trimmed) with the label. The prompt is
 * fed up to the longest token prefix it shares with "prompt + a label", as
 * in training (sl_lm_data_add_pair), so a trailing space that the
 * tokenizer would merge into the label (SentencePiece "▁card") is left for
 * the model to generate. */
static int test_accuracy(struct sl_model *m, const char *path, const char *tf, const char *lf, const char *suffix,
                         long long max_ex, long long threads, double *acc, size_t *n_out, struct sl_err *err)
{
    struct sl_examples ex;
    struct sl_ctx *ctx = NULL;
    struct sl_batch b = {0};
    char *text = NULL, *probe = NULL, gen[512];
    int32_t *toks = NULL, *ptoks = NULL;
    int rc;
    if ((rc = sl_examples_read(&ex, path, tf, lf, NULL, 0, err))) return rc;
    struct sl_ctx_params cp = sl_ctx_default_params();
    cp.n_ctx = 512;
    cp.n_batch = 512;
    cp.n_threads = (int)threads;
    if ((rc = sl_ctx_init(&ctx, m, &cp, err)) || (rc = sl_batch_init(&b, 512))) goto out;
    /* --test-max N: N examples evenly spaced over the file (test files are
     * often sorted by label) */
    size_t n = max_ex > 0 ? SL_MIN(ex.n, (size_t)max_ex) : ex.n, ok = 0;
    for (size_t j = 0; j < n; j++) {
        size_t i = j * ex.n / n;
        size_t len = strlen(ex.text[i]) + strlen(suffix), nt = 0, np = 0;
        char *t2 = realloc(text, len + 1), *p2 = realloc(probe, len + strlen(ex.labels[0]) + 1);
        if (t2) text = t2;
        if (p2) probe = p2;
        if (!t2 || !p2) {
            rc = sl_err_set(err, SL_ENOMEM, "out of memory");
            goto out;
        }
        snprintf(text, len + 1, "%s%s", ex.text[i], suffix);
        snprintf(probe, len + strlen(ex.labels[0]) + 1, "%s%s", text, ex.labels[0]);
        free(toks);
        free(ptoks);
        toks = ptoks = NULL;
        if ((rc = sl_tokenize(m->vocab, text, len, false, false, &toks, &nt, err)) ||
            (rc = sl_tokenize(m->vocab, probe, strlen(probe), false, false, &ptoks, &np, err)))
            goto out;
        size_t k = 0;
        while (k < nt && k < np && toks[k] == ptoks[k]) k++;
        sl_batch_clear(&b);
        int32_t bos = sl_vocab_bos(m->vocab), pos = 0;
        if (bos >= 0) sl_batch_add(&b, bos, pos++, 0, false);
        for (size_t t = 0; t < k && pos < 400; t++) sl_batch_add(&b, toks[t], pos++, 0, false);
        if (b.n_tokens == 0) continue; /* empty prompt and no BOS: nothing to condition on */
        b.logits[b.n_tokens - 1] = 1;
        sl_kv_seq_rm(&ctx->kv, 0, 0, -1);
        size_t gl = 0;
        for (int step = 0; step < 48; step++) {
            if ((rc = sl_decode(ctx, &b, err))) goto out;
            const float *lg = sl_ctx_logits(ctx, 0);
            int32_t best = 0;
            for (int32_t v = 1; v < m->hp.n_vocab; v++)
                if (lg[v] > lg[best]) best = v;
            if (sl_vocab_is_eog(m->vocab, best)) break;
            int pn = sl_token_to_piece(m->vocab, best, gen + gl, sizeof gen - 1 - gl, false);
            if (pn < 0) break;
            gl += (size_t)pn;
            sl_batch_clear(&b);
            sl_batch_add(&b, best, pos++, 0, true);
        }
        gen[gl] = 0;
        char *g = trim(gen);
        ok += strcmp(g, ex.labels[ex.label[i]]) == 0;
        if (j < 3) fprintf(stderr, "  %-50.50s -> %-24s (%s)\n", ex.text[i], g, ex.labels[ex.label[i]]);
    }
    *acc = n ? (double)ok / (double)n : NAN;
    *n_out = n;
out:
    free(text);
    free(probe);
    free(toks);
    free(ptoks);
    sl_batch_free(&b);
    sl_ctx_free(ctx);
    sl_examples_free(&ex);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* train lm / lora                                                           */
/* ------------------------------------------------------------------------ */

static const char *lm_usage =
    "usage: sluice train lm (--vocab-from V.gguf | -m MODEL.gguf) --data FILE -o OUT.gguf [options]\n"
    "Trains every weight of a llama model: from scratch with the vocabulary of V.gguf and\n"
    "the shape below, or continuing an existing llama GGUF (-m, dequantized to F32).\n"
    "Data: FILE.txt (plain text; blank lines separate documents), or CSV/JSONL pairs\n"
    "rendered as \"<text><suffix><label>\" + EOS, the loss on the label part only.\n"
    "shape (from scratch): --embd 128 --layers 4 --heads 4 --kv-heads 2 --ff 384 --ctx 256 [--tied]\n"
    "options:\n"
    "  --steps N (300)  --batch N (8)  --seq N (64)  --lr X (1e-3)  --min-lr X (lr/10)\n"
    "  --warmup N (20)  --schedule cosine|linear|constant  --wd X (0.01)  --clip X (1.0)\n"
    "  --val-frac X (0.05)  --eval-every N (50)  --eval-batches N (8)  --patience N (0 = off)\n"
    "  --text-field/--label-field NAME  --suffix STR (\" → \")  --all-tokens (loss on the prompt too)\n"
    "  --max-examples N      use at most N training examples\n"
    "  --type F32|F16        weights written (default F32)   --seed N (1)\n"
    "  --test FILE [--test-max N]   exact-match accuracy of greedy completions with the engine\n"
    "  --eval-only           only the --test accuracy of -m (lora: with the adapter -o applied)\n"
    "  -t, --threads N\n";

static const char *lora_usage =
    "usage: sluice train lora -m BASE.gguf --data FILE -o ADAPTER.gguf [options]\n"
    "Trains a LoRA adapter (A, B per adapted projection, base frozen; any weight type) and\n"
    "writes it in llama.cpp's adapter format. Data and training options as `sluice train lm`.\n"
    "  --rank N (8)  --alpha X (2*rank)  --targets q,k,v,o[,gate,up,down] | attn | all\n"
    "  --test FILE   accuracy with the adapter merged into the base by the engine\n";

static int cmd_train_lm_or_lora(int argc, char **argv, bool lora)
{
    const char *cmd = lora ? "train lora" : "train lm";
    const char *model = NULL, *vocab_from = NULL, *data = NULL, *out = NULL, *tf = NULL, *lf = NULL;
    const char *suffix = " \xe2\x86\x92 ", *schedule = "cosine", *type = "F32", *test = NULL, *targets = "q,k,v,o";
    long long embd = 128, layers = 4, heads = 4, kv_heads = 2, ff = 384, n_ctx = 256, steps = 300, batch = 8;
    long long seq = 64, warmup = 20, eval_every = 50, eval_batches = 8, patience = 0, seed = 1, threads = 0;
    long long max_ex = 0, test_max = 0, rank = 8;
    double lr = 1e-3, min_lr = -1, wd = 0.01, clip = 1.0, val_frac = 0.05, alpha = -1;
    bool tied = false, all_tokens = false, eval_only = false;
    const struct cli_opt opts[] = {
        {"-m", "--model", CLI_STR, &model, 0, 0},          {NULL, "--vocab-from", CLI_STR, &vocab_from, 0, 0},
        {NULL, "--data", CLI_STR, &data, 0, 0},            {"-o", "--output", CLI_STR, &out, 0, 0},
        {NULL, "--text-field", CLI_STR, &tf, 0, 0},        {NULL, "--label-field", CLI_STR, &lf, 0, 0},
        {NULL, "--suffix", CLI_STR, &suffix, 0, 0},        {NULL, "--schedule", CLI_STR, &schedule, 0, 0},
        {NULL, "--type", CLI_STR, &type, 0, 0},            {NULL, "--test", CLI_STR, &test, 0, 0},
        {NULL, "--embd", CLI_INT, &embd, 8, 65536},        {NULL, "--layers", CLI_INT, &layers, 1, 1024},
        {NULL, "--heads", CLI_INT, &heads, 1, 1024},       {NULL, "--kv-heads", CLI_INT, &kv_heads, 1, 1024},
        {NULL, "--ff", CLI_INT, &ff, 1, 1 << 20},          {NULL, "--ctx", CLI_INT, &n_ctx, 8, 1 << 20},
        {NULL, "--steps", CLI_INT, &steps, 1, 1e9},        {NULL, "--batch", CLI_INT, &batch, 1, 4096},
        {NULL, "--seq", CLI_INT, &seq, 2, 1 << 16},        {NULL, "--warmup", CLI_INT, &warmup, 0, 1e9},
        {NULL, "--eval-every", CLI_INT, &eval_every, 0, 1e9}, {NULL, "--eval-batches", CLI_INT, &eval_batches, 0, 1e9},
        {NULL, "--patience", CLI_INT, &patience, 0, 1e9},  {NULL, "--seed", CLI_INT, &seed, 0, 9e18},
        {"-t", "--threads", CLI_INT, &threads, 0, 1024},   {NULL, "--max-examples", CLI_INT, &max_ex, 0, 1e9},
        {NULL, "--test-max", CLI_INT, &test_max, 0, 1e9},  {NULL, "--lr", CLI_FLOAT, &lr, 1e-9, 10},
        {NULL, "--min-lr", CLI_FLOAT, &min_lr, 0, 10},     {NULL, "--wd", CLI_FLOAT, &wd, 0, 10},
        {NULL, "--clip", CLI_FLOAT, &clip, 0, 1e9},        {NULL, "--val-frac", CLI_FLOAT, &val_frac, 0, 0.9},
        {NULL, "--tied", CLI_FLAG, &tied, 0, 0},           {NULL, "--all-tokens", CLI_FLAG, &all_tokens, 0, 0},
        {NULL, "--rank", CLI_INT, &rank, 1, 4096},         {NULL, "--alpha", CLI_FLOAT, &alpha, 0, 1e6},
        {NULL, "--targets", CLI_STR, &targets, 0, 0},     {NULL, "--eval-only", CLI_FLAG, &eval_only, 0, 0},
    };
    int rc = cli_parse(cmd, lora ? lora_usage : lm_usage, argc, argv, opts, sizeof opts / sizeof *opts, NULL, 0, NULL);
    if (rc) return rc < 0 ? 0 : rc;
    if (eval_only) { /* lm: test -m MODEL as it is; lora: -m BASE with -o ADAPTER applied */
        if (!model || !test) return cli_usage(cmd, "--eval-only needs -m and --test");
        struct sl_err e = {0};
        struct sl_model *em = NULL;
        struct sl_lora_merge *emg = NULL;
        double acc = NAN;
        size_t n = 0;
        int r = sl_model_load(&em, model, true, &e);
        if (!r && lora && out) r = sl_model_apply_lora(em, out, 1.0f, &emg, &e);
        if (!r) r = test_accuracy(em, test, tf, lf, suffix, test_max, threads, &acc, &n, &e);
        if (!r) printf("test: %zu examples, exact-match accuracy %.4f\n", n, acc);
        sl_model_free(em);
        sl_lora_merge_free(emg);
        return r ? cli_fail(&e, NULL) : 0;
    }
    if (!data || !out) return cli_usage(cmd, "--data FILE and -o OUT are required");
    if (lora ? !model : !model == !vocab_from) return cli_usage(cmd, lora ? "-m BASE.gguf is required"
                                                                          : "give exactly one of -m and --vocab-from");
    enum sl_lr_schedule sk;
    if (sl_lr_schedule_parse(schedule, &sk)) return cli_usage(cmd, "--schedule: cosine, linear or constant");
    int otype = sl_type_from_name(type);
    if (otype != SL_TYPE_F32 && otype != SL_TYPE_F16) return cli_usage(cmd, "--type: F32 or F16");
    uint32_t tmask = 0;
    if (lora && sl_lora_targets_parse(targets, &tmask))
        return cli_usage(cmd, "--targets: q,k,v,o,gate,up,down, attn or all");

    struct sl_err err = {0};
    struct sl_model *src = NULL, *trained = NULL;
    struct sl_lora_merge *mg = NULL;
    struct sl_lm lm = {0};
    struct sl_lm_lora lo = {0};
    struct sl_lm_data dtr = {0}, dva = {0};
    struct sl_lm_train_result res = {0};
    int ret = CLI_EXIT_ERR;
    bool have_lm = false;

    if (sl_model_load(&src, model ? model : vocab_from, true, &err)) goto fail;
    if (!src->vocab) {
        sl_err_set(&err, SL_EFORMAT, "%s has no tokenizer", model ? model : vocab_from);
        goto fail;
    }
    if (model) {
        if (sl_lm_from_model(&lm, src, (int)threads, &err)) goto fail;
    } else {
        struct sl_lm_config c = {sl_vocab_n_tokens(src->vocab), (int32_t)embd, (int32_t)layers, (int32_t)heads,
                                 (int32_t)kv_heads, (int32_t)ff, (int32_t)n_ctx, 1e-5f, 10000.0f, tied};
        if (sl_lm_init(&lm, &c, (int)threads, &err)) goto fail;
        sl_lm_init_weights(&lm, (uint64_t)seed);
    }
    have_lm = true;
    if (lora) {
        if (sl_lm_lora_init(&lo, &lm, (int32_t)rank, alpha >= 0 ? (float)alpha : 2.0f * (float)rank, tmask,
                            (uint64_t)seed, &err))
            goto fail;
        lm.lora = &lo;
        lm.train_base = false;
    }
    if (load_lm_data(data, src->vocab, tf, lf, suffix, !all_tokens, val_frac, (uint64_t)seed, max_ex, &dtr, &dva,
                     &err))
        goto fail;
    fprintf(stderr, "%s: %zu parameters trained (%s); %zu training tokens in %zu documents, %zu validation tokens\n",
            cmd, lora ? lo.n_params : lm.n_params, lora ? "adapter" : "all weights", dtr.n_tok, dtr.n_doc,
            dva.n_tok);

    struct sl_lm_train_params p = sl_lm_train_default_params();
    p.batch = (int32_t)batch;
    p.seq_len = (int32_t)seq;
    p.steps = steps;
    p.lr = (float)lr;
    p.min_lr = min_lr >= 0 ? (float)min_lr : (float)lr / 10;
    p.weight_decay = (float)wd;
    p.clip_norm = (float)clip;
    p.warmup = (int32_t)warmup;
    p.schedule = sk;
    p.eval_every = (int32_t)eval_every;
    p.eval_batches = (int32_t)eval_batches;
    p.patience = (int)patience;
    p.seed = (uint64_t)seed;
    if (sl_lm_train(&lm, &dtr, &dva, &p, &res, on_progress, "tok", &err)) goto fail;
    fprintf(stderr, "%lld steps in %.1fs (%.0f tokens/s): loss %.4f -> %.4f", (long long)res.steps_run, res.seconds,
            res.tokens_per_s, res.first_loss, res.last_loss);
    if (res.best_step) fprintf(stderr, ", best validation loss %.4f at step %lld", res.best_val_loss, (long long)res.best_step);
    fputc('\n', stderr);
    /* the loss curve, every ~10% of the run (for docs and eyeballing) */
    for (int64_t s = 0; s < res.steps_run; s += SL_MAX(1, res.steps_run / 10)) {
        double avg = 0;
        int64_t k = 0;
        for (; k < SL_MIN(10, res.steps_run - s); k++) avg += res.curve[s + k];
        fprintf(stderr, "  step %6lld  loss %.4f\n", (long long)s + 1, avg / (double)k);
    }

    if (lora) {
        if (sl_lm_lora_save(&lo, &lm, out, &err)) goto fail;
        fprintf(stderr, "wrote %s (LoRA rank %lld, alpha %.1f, %zu parameters)\n", out, rank, (double)lo.alpha,
                lo.n_params);
    } else {
        if (sl_lm_save(&lm, out, otype, src, model ? src->name : "sluice-task-model", &err)) goto fail;
        fprintf(stderr, "wrote %s (%s)\n", out, type);
    }
    if (test) {
        double acc = NAN;
        size_t n = 0;
        if (lora) {
            if (sl_model_load(&trained, model, true, &err) || sl_model_apply_lora(trained, out, 1.0f, &mg, &err))
                goto fail;
        } else if (sl_model_load(&trained, out, true, &err)) {
            goto fail;
        }
        if (test_accuracy(trained, test, tf, lf, suffix, test_max, threads, &acc, &n, &err)) goto fail;
        printf("test: %zu examples, exact-match accuracy %.4f\n", n, acc);
    }
    ret = 0;
fail:
    if (ret) cli_fail(&err, NULL);
    free(res.curve);
    sl_lm_data_free(&dtr);
    sl_lm_data_free(&dva);
    if (lora) sl_lm_lora_free(&lo);
    if (have_lm) sl_lm_free(&lm);
    sl_model_free(trained);
    sl_lora_merge_free(mg);
    sl_model_free(src);
    return ret;
}

int cmd_train(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(train_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : 0;
    }
    if (!strcmp(argv[1], "head")) return cmd_train_head(argc - 1, argv + 1);
    if (!strcmp(argv[1], "lm")) return cmd_train_lm_or_lora(argc - 1, argv + 1, false);
    if (!strcmp(argv[1], "lora")) return cmd_train_lm_or_lora(argc - 1, argv + 1, true);
    return cli_usage("train", "unknown kind '%s' (head, lm or lora)", argv[1]);
}
