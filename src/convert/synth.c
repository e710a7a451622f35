/*
 * synth.c - random-weight models of real shapes (convert layer). See synth.h.
 */
#include "synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/quant.h"

struct sl_synth_params sl_synth_default_params(void)
{
    return (struct sl_synth_params){.arch = "llama", .n_vocab = 512, .n_embd = 64, .n_layer = 2,
                                    .n_head = 4, .n_head_kv = 2, .n_ff = 128, .n_ctx = 512,
                                    .type = SL_TYPE_F32, .tied = true, .seed = 1};
}

static const struct {
    const char *name;
    const char *arch;
    int32_t vocab, embd, layer, head, head_kv, ff;
    bool tied;
} presets[] = {
    {"tiny", "llama", 512, 64, 2, 4, 2, 128, true},
    {"smollm2-135m", "llama", 49152, 576, 30, 9, 3, 1536, true},
    {"qwen2.5-0.5b", "qwen2", 151936, 896, 24, 14, 2, 4864, true},
    {"tinyllama-1.1b", "llama", 32000, 2048, 22, 32, 4, 5632, false},
};

int sl_synth_preset(const char *name, struct sl_synth_params *p, struct sl_err *err)
{
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++)
        if (strcmp(presets[i].name, name) == 0) {
            p->arch = presets[i].arch;
            p->n_vocab = presets[i].vocab;
            p->n_embd = presets[i].embd;
            p->n_layer = presets[i].layer;
            p->n_head = presets[i].head;
            p->n_head_kv = presets[i].head_kv;
            p->n_ff = presets[i].ff;
            p->tied = presets[i].tied;
            return 0;
        }
    return sl_err_set(err, SL_EINVAL,
                      "synth: unknown preset '%s' (tiny, smollm2-135m, qwen2.5-0.5b, tinyllama-1.1b)", name);
}

/* splitmix64 + Box-Muller: deterministic on every machine. */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float normal(uint64_t *s)
{
    double u1 = ((double)(next_u64(s) >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (double)(next_u64(s) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

struct synth {
    const struct sl_synth_params *p;
    struct sl_gguf_writer *w;
    uint64_t rng;
    float *row;
    void *qrow;
    struct sl_err *err;
};

/* A (rows, cols) matrix of N(0, std^2) in p->type, or a 1-D vector of
 * constant `fill` (rows == 0) in F32. */
static int add(struct synth *s, const char *name, int64_t cols, int64_t rows, float std, float fill)
{
    int64_t ne[2] = {cols, rows};
    if (rows == 0) {
        for (int64_t i = 0; i < cols; i++) s->row[i] = fill;
        return sl_gguf_add_tensor(s->w, name, SL_TYPE_F32, 1, ne, s->row, (size_t)cols * 4, s->err);
    }
    size_t rs = sl_row_size(s->p->type, cols);
    uint8_t *data = malloc(rs * (size_t)rows);
    if (!data) return sl_err_set(s->err, SL_ENOMEM, "synth: out of memory for '%s'", name);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < cols; i++) s->row[i] = std * normal(&s->rng);
        sl_quantize_row_ref(s->p->type, s->row, data + (size_t)r * rs, cols);
    }
    int rc = sl_gguf_add_tensor(s->w, name, (uint32_t)s->p->type, 2, ne, data, rs * (size_t)rows, s->err);
    free(data);
    return rc;
}

static int add_vocab(struct synth *s)
{
    int32_t V = s->p->n_vocab;
    char **texts = calloc((size_t)V, sizeof *texts);
    float *scores = calloc((size_t)V, sizeof *scores);
    int32_t *types = calloc((size_t)V, sizeof *types);
    int rc = 0;
    if (!texts || !scores || !types) {
        rc = sl_err_set(s->err, SL_ENOMEM, "synth: out of memory");
        goto out; /* allocation failure */
    }
    for (int32_t i = 0; i < V && !rc; i++) {
        char tmp[32];
        if (i == 0) snprintf(tmp, sizeof tmp, "<unk>"), types[i] = 2;
        else if (i == 1) snprintf(tmp, sizeof tmp, "<s>"), types[i] = 3;
        else if (i == 2) snprintf(tmp, sizeof tmp, "</s>"), types[i] = 3;
        else if (i < 259) snprintf(tmp, sizeof tmp, "<0x%02X>", i - 3), types[i] = 6;
        else snprintf(tmp, sizeof tmp, "[PAD%d]", i), types[i] = 5;
        if (!(texts[i] = strdup(tmp))) rc = sl_err_set(s->err, SL_ENOMEM, "synth: out of memory");
    }
    if (!rc && (sl_gguf_set_str(s->w, "tokenizer.ggml.model", "llama") ||
                sl_gguf_set_arr_str(s->w, "tokenizer.ggml.tokens", (const char *const *)texts, NULL, (uint64_t)V) ||
                sl_gguf_set_arr(s->w, "tokenizer.ggml.scores", SL_GGUF_FLOAT32, scores, (uint64_t)V) ||
                sl_gguf_set_arr(s->w, "tokenizer.ggml.token_type", SL_GGUF_INT32, types, (uint64_t)V) ||
                sl_gguf_set_u32(s->w, "tokenizer.ggml.bos_token_id", 1) ||
                sl_gguf_set_u32(s->w, "tokenizer.ggml.eos_token_id", 2) ||
                sl_gguf_set_u32(s->w, "tokenizer.ggml.unknown_token_id", 0)))
        rc = sl_err_set(s->err, SL_ENOMEM, "synth: out of memory");
out:
    if (texts)
        for (int32_t i = 0; i < V; i++) free(texts[i]);
    free(texts);
    free(scores);
    free(types);
    return rc;
}

int sl_synth_write(const struct sl_synth_params *p, const char *out_path,
                   void (*progress)(void *user, uint64_t done, uint64_t total), void *user,
                   struct sl_err *err)
{
    const struct sl_type_traits *tr = sl_type_traits((uint32_t)p->type);
    bool qwen = strcmp(p->arch, "qwen2") == 0;
    if (!qwen && strcmp(p->arch, "llama") != 0)
        return sl_err_set(err, SL_EINVAL, "synth: architecture '%s' (llama or qwen2)", p->arch);
    if (!tr || !tr->weight_ok)
        return sl_err_set(err, SL_EINVAL, "synth: type %d cannot hold weights", p->type);
    if (p->n_vocab < 259 || p->n_embd <= 0 || p->n_layer <= 0 || p->n_head <= 0 || p->n_head_kv <= 0 ||
        p->n_head % p->n_head_kv || p->n_embd % p->n_head || p->n_ff <= 0 || p->n_ctx <= 0)
        return sl_err_set(err, SL_EINVAL, "synth: bad shape (vocab >= 259, heads dividing n_embd)");
    if (p->n_embd % tr->blck || p->n_ff % tr->blck)
        return sl_err_set(err, SL_EINVAL, "synth: n_embd %d and n_ff %d must be multiples of %d for %s",
                          p->n_embd, p->n_ff, tr->blck, tr->name);

    struct synth s = {p, sl_gguf_writer_init(), p->seed, NULL, NULL, err};
    int64_t E = p->n_embd, F = p->n_ff, hd = E / p->n_head, kvd = hd * p->n_head_kv;
    uint64_t total = (uint64_t)p->n_layer + 2, done = 0;
    int rc = 0;
    s.row = malloc((size_t)SL_MAX(E, F) * sizeof(float));
    if (!s.w || !s.row) {
        rc = sl_err_set(err, SL_ENOMEM, "synth: out of memory");
        goto out; /* allocation failure */
    }
    char key[96];
#define KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, p->arch), key)
    rc = sl_gguf_set_str(s.w, "general.architecture", p->arch) | sl_gguf_set_str(s.w, "general.name", "sluice-synth") |
         sl_gguf_set_u32(s.w, KEY("context_length"), (uint32_t)p->n_ctx) |
         sl_gguf_set_u32(s.w, KEY("embedding_length"), (uint32_t)E) |
         sl_gguf_set_u32(s.w, KEY("feed_forward_length"), (uint32_t)F) |
         sl_gguf_set_u32(s.w, KEY("block_count"), (uint32_t)p->n_layer) |
         sl_gguf_set_u32(s.w, KEY("attention.head_count"), (uint32_t)p->n_head) |
         sl_gguf_set_u32(s.w, KEY("attention.head_count_kv"), (uint32_t)p->n_head_kv) |
         sl_gguf_set_f32(s.w, KEY("rope.freq_base"), qwen ? 1e6f : 10000.0f) |
         sl_gguf_set_f32(s.w, KEY("attention.layer_norm_rms_epsilon"), 1e-6f);
#undef KEY
    if (rc) {
        rc = sl_err_set(err, SL_ENOMEM, "synth: out of memory");
        goto out; /* allocation failure */
    }
    if ((rc = add_vocab(&s))) goto out;
    if ((rc = add(&s, "token_embd.weight", E, p->n_vocab, 0.02f, 0))) goto out;
    if (progress) progress(user, ++done, total);
    for (int32_t l = 0; l < p->n_layer; l++) {
        char n[96];
#define ADD(suffix, cols, rows, std, fill)                          \
    do {                                                            \
        snprintf(n, sizeof n, "blk.%d." suffix, l);                 \
        if ((rc = add(&s, n, (cols), (rows), (std), (fill)))) goto out; \
    } while (0)
        ADD("attn_norm.weight", E, 0, 0, 1.0f);
        ADD("attn_q.weight", E, E, 0.02f, 0);
        ADD("attn_k.weight", E, kvd, 0.02f, 0);
        ADD("attn_v.weight", E, kvd, 0.02f, 0);
        if (qwen) {
            ADD("attn_q.bias", E, 0, 0, 0.0f);
            ADD("attn_k.bias", kvd, 0, 0, 0.0f);
            ADD("attn_v.bias", kvd, 0, 0, 0.0f);
        }
        ADD("attn_output.weight", E, E, 0.02f, 0);
        ADD("ffn_norm.weight", E, 0, 0, 1.0f);
        ADD("ffn_gate.weight", E, F, 0.02f, 0);
        ADD("ffn_up.weight", E, F, 0.02f, 0);
        ADD("ffn_down.weight", F, E, 0.02f, 0);
#undef ADD
        if (progress) progress(user, ++done, total);
    }
    if ((rc = add(&s, "output_norm.weight", E, 0, 0, 1.0f))) goto out;
    if (!p->tied && (rc = add(&s, "output.weight", E, p->n_vocab, 0.02f, 0))) goto out;
    if (progress) progress(user, ++done, total);
    rc = sl_gguf_writer_write(s.w, out_path, err);
out:
    sl_gguf_writer_free(s.w);
    free(s.row);
    return rc;
}
