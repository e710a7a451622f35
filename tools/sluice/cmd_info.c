/*
 * cmd_info.c - `sluice info` and `sluice tokenize` (tools layer).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "engine/chat.h"
#include "engine/model.h"
#include "engine/vocab.h"

static const char *info_usage = "usage: sluice info MODEL.gguf [--tensors]\n"
                                "Architecture, shape, tensor types, tokenizer and chat template.\n";

int cmd_info(int argc, char **argv)
{
    bool tensors = false;
    const char *pos[1];
    int np = 0;
    const struct cli_opt opts[] = {{NULL, "--tensors", CLI_FLAG, &tensors, 0, 0}};
    int rc = cli_parse("info", info_usage, argc, argv, opts, 1, pos, 1, &np);
    struct sl_err err = {0};
    struct sl_model *m = NULL;

    if (rc) return rc < 0 ? 0 : rc;
    if (np != 1) return cli_usage("info", "give one MODEL.gguf");
    if (sl_model_load(&m, pos[0], true, &err)) return cli_fail(&err, "is this a GGUF model file?");

    const struct sl_hparams *hp = &m->hp;
    const struct sl_gguf *g = m->gguf;
    printf("file:          %s (GGUF v%u, %llu tensors, %llu metadata keys)\n", pos[0], g->version,
           (unsigned long long)g->n_tensors, (unsigned long long)g->n_kv);
    printf("name:          %s\n", m->name ? m->name : "-");
    printf("architecture:  %s\n", m->arch_name);
    printf("parameters:    %.2f M (%.1f MiB of weights)\n", (double)m->n_params / 1e6,
           (double)m->n_bytes / (1 << 20));
    printf("shape:         vocab %d, embd %d, layers %d, heads %d (kv %d), head dim %d, ffn %d\n",
           hp->n_vocab, hp->n_embd, hp->n_layer, hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_ff);
    printf("context:       %d (training)\n", hp->n_ctx_train);
    printf("rope:          %s, %d dims, base %g%s%s\n", hp->rope_type == SL_ROPE_NEOX ? "neox" : "normal",
           hp->n_rot, (double)hp->rope_base, m->rope_freqs ? ", frequency factors" : "",
           hp->rope_scale != 1.0f ? ", linear scaling" : "");
    printf("norm eps:      %g\n", (double)hp->norm_eps);
    if (hp->n_swa) printf("sliding win:   %d\n", hp->n_swa);
    if (hp->attn_softcap > 0 || hp->final_softcap > 0)
        printf("soft-capping:  attention %g, final %g\n", (double)hp->attn_softcap, (double)hp->final_softcap);
    printf("output:        %s\n", m->output.data == m->tok_embd.data ? "tied to token_embd" : "output.weight");

    /* tensor types: count and bytes */
    uint64_t cnt[SL_TYPE_COUNT] = {0}, bytes[SL_TYPE_COUNT] = {0};
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        cnt[g->tensors[i].type]++;
        bytes[g->tensors[i].type] += g->tensors[i].size;
    }
    printf("tensor types: ");
    for (int t = 0; t < SL_TYPE_COUNT; t++)
        if (cnt[t]) printf(" %s x%llu (%.1f MiB)", sl_type_traits((uint32_t)t)->name,
                           (unsigned long long)cnt[t], (double)bytes[t] / (1 << 20));
    printf("\n");
    if (m->vocab) {
        const struct sl_vocab *v = m->vocab;
        printf("tokenizer:     %s%s%s, %d tokens, bos %d, eos %d%s%s\n",
               sl_vocab_type(v) == SL_VOCAB_SPM ? "sentencepiece (llama)" : "byte-level BPE (gpt2)",
               sl_vocab_type(v) == SL_VOCAB_BPE ? ", pre " : "", sl_vocab_type(v) == SL_VOCAB_BPE ? sl_vocab_pre(v) : "",
               sl_vocab_n_tokens(v), sl_vocab_bos(v), sl_vocab_eos(v), sl_vocab_add_bos(v) ? ", adds BOS" : "",
               sl_vocab_add_eos(v) ? ", adds EOS" : "");
    } else {
        printf("tokenizer:     none\n");
    }
    if (m->chat_template) {
        enum sl_chat_family f = sl_chat_detect(m->chat_template);
        printf("chat template: %s\n", f == SL_CHAT_UNKNOWN ? "present, not a known family (use --chat-template)"
                                                            : sl_chat_family_name(f));
    } else {
        printf("chat template: none\n");
    }
    if (tensors)
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const struct sl_gguf_tensor *t = &g->tensors[i];
            printf("  %-40.*s %-5s [%lld, %lld, %lld, %lld]\n", (int)t->name.len, t->name.ptr,
                   sl_type_traits(t->type)->name, (long long)t->ne[0], (long long)t->ne[1],
                   (long long)t->ne[2], (long long)t->ne[3]);
        }
    sl_model_free(m);
    return 0;
}

static const char *tok_usage =
    "usage: sluice tokenize -m MODEL.gguf [--ids] [--bos] [--no-special] TEXT\n"
    "  --ids          print only the token ids, separated by spaces\n"
    "  --bos          add BOS/EOS as the model's flags say (default: no)\n"
    "  --no-special   do not turn special-token texts like <|im_start|> into tokens\n"
    "Without --ids, prints one 'id<TAB>piece' per line.\n";

int cmd_tokenize(int argc, char **argv)
{
    const char *model_path = NULL, *pos[1];
    bool ids = false, bos = false, no_special = false;
    int np = 0;
    const struct cli_opt opts[] = {
        {"-m", "--model", CLI_STR, &model_path, 0, 0},
        {NULL, "--ids", CLI_FLAG, &ids, 0, 0},
        {NULL, "--bos", CLI_FLAG, &bos, 0, 0},
        {NULL, "--no-special", CLI_FLAG, &no_special, 0, 0},
    };
    int rc = cli_parse("tokenize", tok_usage, argc, argv, opts, sizeof opts / sizeof *opts, pos, 1, &np);
    struct sl_err err = {0};
    struct sl_gguf *g = NULL;
    struct sl_vocab *v = NULL;
    int32_t *toks = NULL;
    size_t n = 0;

    if (rc) return rc < 0 ? 0 : rc;
    if (!model_path || np != 1) return cli_usage("tokenize", "-m MODEL and one TEXT are required");
    /* the vocabulary alone: vocab-only GGUF files work too */
    if (sl_gguf_open(&g, model_path, &err) || sl_vocab_load(&v, g, &err)) {
        rc = cli_fail(&err, "is this a GGUF file with tokenizer metadata?");
        goto out; /* bad file */
    }
    if (sl_tokenize(v, pos[0], strlen(pos[0]), bos, !no_special, &toks, &n, &err)) {
        rc = cli_fail(&err, NULL);
        goto out; /* bad input */
    }
    for (size_t i = 0; i < n; i++) {
        if (ids) {
            printf(i ? " %d" : "%d", toks[i]);
        } else {
            char piece[512];
            int pl = sl_token_to_piece(v, toks[i], piece, sizeof piece, true);
            printf("%d\t%.*s\n", toks[i], pl > 0 ? pl : 0, piece);
        }
    }
    if (ids) printf("\n");
    rc = 0;
out:
    free(toks);
    sl_vocab_free(v);
    sl_gguf_free(g);
    return rc;
}
