/*
 * cmd_logits.c - `sluice logits`: raw logits of a token sequence, the way
 * anyone checks sluice against another engine (tools layer).
 *
 * Output: float32 little-endian, n_tokens x n_vocab, row i = the logits
 * after token i. Evaluated as one batch, or token by token through the KV
 * cache with --sequential.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "engine/forward.h"
#include "engine/model.h"

static const char *usage_text =
    "usage: sluice logits -m MODEL.gguf --tokens 1,2,3 --out FILE [--sequential] [--threads N]\n"
    "Writes float32 little-endian logits, n_tokens x n_vocab (row i follows token i).\n";

/* Parse "1,2,3" into a malloc'd array. */
static int parse_tokens(const char *s, int32_t **out, int *n)
{
    int cap = 16, k = 0;
    int32_t *v = malloc((size_t)cap * sizeof *v);
    if (!v) return -1;
    while (*s) {
        char *end;
        long t = strtol(s, &end, 10);
        if (end == s || t < 0 || t > INT32_MAX || (*end && *end != ',')) {
            free(v);
            return -1;
        }
        if (k == cap) {
            int32_t *nv = realloc(v, (size_t)(cap *= 2) * sizeof *v);
            if (!nv) {
                free(v);
                return -1;
            }
            v = nv;
        }
        v[k++] = (int32_t)t;
        s = *end ? end + 1 : end;
    }
    if (k == 0) {
        free(v);
        return -1;
    }
    *out = v;
    *n = k;
    return 0;
}

int cmd_logits(int argc, char **argv)
{
    const char *model_path = NULL, *tokens_s = NULL, *out_path = NULL;
    bool sequential = false;
    long long threads = 0;
    const struct cli_opt opts[] = {
        {"-m", "--model", CLI_STR, &model_path, 0, 0},
        {NULL, "--tokens", CLI_STR, &tokens_s, 0, 0},
        {"-o", "--out", CLI_STR, &out_path, 0, 0},
        {"-t", "--threads", CLI_INT, &threads, 1, 1024},
        {NULL, "--sequential", CLI_FLAG, &sequential, 0, 0},
    };
    struct sl_err err = {0};
    struct sl_model *m = NULL;
    struct sl_ctx *ctx = NULL;
    struct sl_batch b = {0};
    int32_t *toks = NULL;
    int n = 0, rc = cli_parse("logits", usage_text, argc, argv, opts, sizeof opts / sizeof *opts, NULL, 0, NULL);
    FILE *f = NULL;

    if (rc) return rc < 0 ? 0 : rc;
    rc = CLI_EXIT_ERR;
    if (!model_path || !tokens_s || !out_path)
        return cli_usage("logits", "-m MODEL, --tokens and --out are required");
    if (parse_tokens(tokens_s, &toks, &n))
        return cli_usage("logits", "--tokens: expected comma-separated token ids, got '%s'", tokens_s);

    if (sl_model_load(&m, model_path, false, &err)) {
        rc = cli_fail(&err, "is this a GGUF model file?");
        goto out; /* bad model */
    }
    struct sl_ctx_params cp = sl_ctx_default_params();
    cp.n_ctx = n;
    cp.n_batch = sequential ? 1 : n;
    cp.n_threads = (int)threads;
    if (sl_ctx_init(&ctx, m, &cp, &err) || sl_batch_init(&b, cp.n_batch)) {
        rc = cli_fail(&err, NULL);
        goto out; /* allocation failure */
    }
    if (!(f = fopen(out_path, "wb"))) {
        perror(out_path);
        goto out; /* cannot write */
    }
    size_t V = (size_t)m->hp.n_vocab;
    for (int start = 0; start < n; start += cp.n_batch) {
        int end = SL_MIN(n, start + cp.n_batch);
        sl_batch_clear(&b);
        for (int i = start; i < end; i++) sl_batch_add(&b, toks[i], i, 0, true);
        if (sl_decode(ctx, &b, &err)) {
            rc = cli_fail(&err, NULL);
            goto out; /* bad token or full cache */
        }
        for (int i = 0; i < end - start; i++)
            if (fwrite(sl_ctx_logits(ctx, i), sizeof(float), V, f) != V) {
                perror(out_path);
                goto out; /* write failure */
            }
    }
    if (fclose(f) != 0) {
        f = NULL;
        perror(out_path);
        goto out; /* write failure */
    }
    f = NULL;
    rc = 0;
out:
    if (f) fclose(f);
    sl_batch_free(&b);
    sl_ctx_free(ctx);
    sl_model_free(m);
    free(toks);
    return rc;
}
