/*
 * cmd_quantize.c - `sluice quantize` (tools layer).
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "convert/quantize.h"
#include "engine/quant.h"

static const char *quantize_usage =
    "usage: sluice quantize [options] IN.gguf OUT.gguf TYPE\n"
    "Re-writes a model with its 2-D weights in TYPE, like llama-quantize (same mixes, same "
    "bytes).\n"
    "The input is F32, F16 or BF16; 1-D tensors (norms, biases) are copied unchanged.\n"
    "TYPE: a single type (F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q6_K) or a mix\n"
    "(Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M). Q3_K, Q4_K and Q5_K mean the _M mixes\n"
    "unless --pure. Q4_K_M is the usual choice; Q5_K_M and Q8_0 are closer to the original.\n"
    "options:\n"
    "  --pure                 every 2-D weight in TYPE, token_embd and output included\n"
    "  --output-type T        type of output.weight (e.g. Q8_0, F16)\n"
    "  --token-embd-type T    type of token_embd.weight\n"
    "  --allow-requantize     accept an already quantized input (quality suffers twice)\n"
    "  -t, --threads N        threads (default: all CPUs)\n";

static void quantize_progress(void *user, uint64_t done, uint64_t total)
{
    cli_progress((const char *)user, done, total);
}

static long long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

int cmd_quantize(int argc, char **argv)
{
    const char *pos[3] = {0}, *out_type = NULL, *embd_type = NULL;
    bool pure = false, requant = false;
    long long threads = 0;
    int n_pos = 0;
    const struct cli_opt opts[] = {
        {NULL, "--pure", CLI_FLAG, &pure, 0, 0},
        {NULL, "--output-type", CLI_STR, &out_type, 0, 0},
        {NULL, "--token-embd-type", CLI_STR, &embd_type, 0, 0},
        {NULL, "--allow-requantize", CLI_FLAG, &requant, 0, 0},
        {"-t", "--threads", CLI_INT, &threads, 0, 1024},
    };
    int rc = cli_parse("quantize", quantize_usage, argc, argv, opts, sizeof opts / sizeof *opts,
                       pos, 3, &n_pos);
    struct sl_quantize_params p = sl_quantize_default_params();
    struct sl_err err = {0};

    if (rc) return rc < 0 ? 0 : rc;
    if (n_pos != 3) return cli_usage("quantize", "expected IN.gguf OUT.gguf TYPE");
    if ((p.ftype = sl_ftype_from_name(pos[2])) < 0)
        return cli_usage("quantize", "unknown TYPE '%s'; one of %s", pos[2], sl_ftype_names());
    if (out_type && (p.output_type = sl_type_from_name(out_type)) < 0)
        return cli_usage("quantize", "--output-type: unknown type '%s'", out_type);
    if (embd_type && (p.token_embd_type = sl_type_from_name(embd_type)) < 0)
        return cli_usage("quantize", "--token-embd-type: unknown type '%s'", embd_type);
    if (!strcmp(pos[0], pos[1])) return cli_usage("quantize", "OUT.gguf must differ from IN.gguf");
    p.pure = pure;
    p.allow_requantize = requant;
    p.n_threads = (int)threads;
    p.progress = quantize_progress;
    p.progress_user = "quantize";
    if (sl_quantize_file(pos[0], pos[1], &p, &err))
        return cli_fail(&err,
                        strstr(err.msg, "already quantized")
                            ? "quantize from the F32/F16/BF16 file, or pass --allow-requantize"
                            : NULL);
    long long a = file_size(pos[0]), b = file_size(pos[1]);
    fprintf(stderr, "wrote %s (%s%s): %.2f MiB -> %.2f MiB\n", pos[1], sl_ftype_name(p.ftype),
            pure ? ", pure" : "", (double)a / 1048576.0, (double)b / 1048576.0);
    return 0;
}
