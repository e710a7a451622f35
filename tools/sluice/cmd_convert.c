/*
 * cmd_convert.c - `sluice convert` and `sluice synth` (tools layer).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "convert/hf_tokenizer.h"
#include "convert/llama2c.h"
#include "convert/synth.h"
#include "engine/quant.h"

static const char *convert_usage =
    "usage: sluice convert --llama2c MODEL.bin --tokenizer TOKENIZER.bin -o OUT.gguf\n"
    "       sluice convert --tokenizer FILE [--tokenizer FILE ...] [--pre NAME] -o OUT.gguf\n"
    "The first form turns a llama2.c checkpoint and its tokenizer.bin into an F32 GGUF model.\n"
    "The second writes a vocabulary-only GGUF from Hugging Face tokenizer files:\n"
    "tokenizer.json, vocab.json + merges.txt, a tiktoken or SentencePiece tokenizer.model,\n"
    "each optionally with tokenizer_config.json (special tokens, chat template).\n";

int cmd_convert(int argc, char **argv)
{
    const char *l2c = NULL, *out = NULL, *pre = NULL;
    struct cli_list toks = {0};
    const struct cli_opt opts[] = {
        {NULL, "--llama2c", CLI_STR, &l2c, 0, 0},
        {NULL, "--tokenizer", CLI_LIST, &toks, 0, 0},
        {NULL, "--pre", CLI_STR, &pre, 0, 0},
        {"-o", "--out", CLI_STR, &out, 0, 0},
    };
    int rc = cli_parse("convert", convert_usage, argc, argv, opts, sizeof opts / sizeof *opts, NULL, 0, NULL);
    struct sl_err err = {0};

    if (rc) return rc < 0 ? 0 : rc;
    if (!out) return cli_usage("convert", "-o OUT.gguf is required");
    if (toks.n == 0) return cli_usage("convert", "--tokenizer is required");
    if (l2c) {
        if (toks.n != 1) return cli_usage("convert", "--llama2c takes exactly one --tokenizer");
        if (sl_convert_llama2c(l2c, toks.v[0], out, &err))
            return cli_fail(&err, "expected a llama2.c legacy checkpoint and its tokenizer.bin");
    } else {
        if (sl_hf_tokenizer_convert(toks.v, toks.n, pre, out, &err)) return cli_fail(&err, NULL);
    }
    fprintf(stderr, "wrote %s\n", out);
    return 0;
}

static const char *synth_usage =
    "usage: sluice synth [--preset NAME] [--type TYPE] [--vocab N --embd N --layers N --heads N\n"
    "                    --kv-heads N --ffn N] [--arch llama|qwen2] [--untied] [--seed S] -o OUT.gguf\n"
    "Writes a model of the given shape with random N(0, 0.02^2) weights and a byte-level\n"
    "vocabulary: for benchmarks (speed does not depend on the values) and smoke tests.\n"
    "Presets: tiny (default), smollm2-135m, qwen2.5-0.5b, tinyllama-1.1b.\n";

static void synth_progress(void *user, uint64_t done, uint64_t total)
{
    cli_progress((const char *)user, done, total);
}

int cmd_synth(int argc, char **argv)
{
    const char *preset = "tiny", *type = "F32", *out = NULL, *arch = NULL;
    long long vocab = -1, embd = -1, layers = -1, heads = -1, kv = -1, ffn = -1, seed = 1, ctx = 2048;
    bool untied = false;
    const struct cli_opt opts[] = {
        {NULL, "--preset", CLI_STR, &preset, 0, 0},
        {NULL, "--type", CLI_STR, &type, 0, 0},
        {NULL, "--arch", CLI_STR, &arch, 0, 0},
        {NULL, "--vocab", CLI_INT, &vocab, 259, 1 << 22},
        {NULL, "--embd", CLI_INT, &embd, 1, 1 << 16},
        {NULL, "--layers", CLI_INT, &layers, 1, 1024},
        {NULL, "--heads", CLI_INT, &heads, 1, 1024},
        {NULL, "--kv-heads", CLI_INT, &kv, 1, 1024},
        {NULL, "--ffn", CLI_INT, &ffn, 1, 1 << 18},
        {NULL, "--ctx", CLI_INT, &ctx, 8, 1 << 20},
        {NULL, "--seed", CLI_INT, &seed, 0, 9007199254740992.0},
        {NULL, "--untied", CLI_FLAG, &untied, 0, 0},
        {"-o", "--out", CLI_STR, &out, 0, 0},
    };
    int rc = cli_parse("synth", synth_usage, argc, argv, opts, sizeof opts / sizeof *opts, NULL, 0, NULL);
    struct sl_err err = {0};
    struct sl_synth_params p = sl_synth_default_params();

    if (rc) return rc < 0 ? 0 : rc;
    if (!out) return cli_usage("synth", "-o OUT.gguf is required");
    if (sl_synth_preset(preset, &p, &err)) return cli_usage("synth", "%s", err.msg);
    int t = sl_type_from_name(type);
    if (t < 0) return cli_usage("synth", "--type: unknown type '%s'", type);
    p.type = t;
    if (arch) p.arch = arch;
    if (vocab > 0) p.n_vocab = (int32_t)vocab;
    if (embd > 0) p.n_embd = (int32_t)embd;
    if (layers > 0) p.n_layer = (int32_t)layers;
    if (heads > 0) p.n_head = (int32_t)heads;
    if (kv > 0) p.n_head_kv = (int32_t)kv;
    if (ffn > 0) p.n_ff = (int32_t)ffn;
    if (untied) p.tied = false;
    p.n_ctx = (int32_t)ctx;
    p.seed = (uint64_t)seed;
    if (sl_synth_write(&p, out, synth_progress, "synth", &err)) return cli_fail(&err, NULL);
    fprintf(stderr, "wrote %s\n", out);
    return 0;
}
