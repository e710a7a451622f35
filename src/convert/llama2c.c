/*
 * llama2c.c - llama2.c checkpoints to GGUF (convert layer).
 *
 * The weights are written unchanged: llama2.c rotates pairs (2i, 2i+1) like
 * GGUF's "llama" architecture, so no permutation is needed. The vocabulary
 * becomes a SentencePiece-style GGUF vocabulary: spaces turn into U+2581,
 * "<0xNN>" pieces are byte tokens, ids 0/1/2 are <unk>/<s>/</s>.
 */
#include "llama2c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/quant.h"

#define L2C_MAX_DIM (1 << 16)
#define L2C_MAX_VOCAB (1 << 20)
#define L2C_MAX_TOKEN_LEN 4096

struct l2c_config {
    int32_t dim, hidden, n_layer, n_head, n_kv, vocab, seq_len;
};

static char *read_all(const char *path, size_t *len, struct sl_err *err)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;
    if (!f) {
        sl_err_set(err, SL_EIO, "cannot open '%s'", path);
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) == (size_t)n) {
        *len = (size_t)n;
    } else {
        free(buf);
        buf = NULL;
        sl_err_set(err, SL_EIO, "cannot read '%s'", path);
    }
    fclose(f);
    return buf;
}

/* "▁" for each space; returns a malloc'd string. */
static char *escape_spaces(const char *s, size_t n, size_t *out_len)
{
    size_t k = 0;
    char *o = malloc(n * 3 + 1);
    if (!o) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') {
            memcpy(o + k, "\xe2\x96\x81", 3);
            k += 3;
        } else {
            o[k++] = s[i];
        }
    }
    o[k] = 0;
    *out_len = k;
    return o;
}

static bool is_byte_piece(const char *s, size_t n)
{
    return n == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>';
}

static int add_vocab(struct sl_gguf_writer *w, const char *tok_path, int32_t vocab, struct sl_err *err)
{
    size_t len = 0, pos = 4;
    char *buf = read_all(tok_path, &len, err);
    char **texts = calloc((size_t)vocab, sizeof *texts);
    size_t *lens = calloc((size_t)vocab, sizeof *lens);
    float *scores = calloc((size_t)vocab, sizeof *scores);
    int32_t *types = calloc((size_t)vocab, sizeof *types);
    int rc = 0;

    if (!buf) {
        rc = err ? err->code : SL_EIO;
        goto out; /* unreadable tokenizer */
    }
    if (!texts || !lens || !scores || !types) {
        rc = sl_err_set(err, SL_ENOMEM, "llama2c: out of memory");
        goto out; /* allocation failure */
    }
    if (len < 4) {
        rc = sl_err_set(err, SL_EFORMAT, "llama2c: '%s' is too short for a tokenizer", tok_path);
        goto out; /* truncated */
    }
    for (int32_t i = 0; i < vocab; i++) {
        int32_t n;
        if (len - pos < 8) {
            rc = sl_err_set(err, SL_EFORMAT, "llama2c: '%s' ends at token %d of %d", tok_path, i, vocab);
            goto out; /* truncated */
        }
        memcpy(&scores[i], buf + pos, 4);
        memcpy(&n, buf + pos + 4, 4);
        pos += 8;
        if (n < 0 || n > L2C_MAX_TOKEN_LEN || (size_t)n > len - pos) {
            rc = sl_err_set(err, SL_EFORMAT, "llama2c: '%s': token %d has bad length %d", tok_path, i, n);
            goto out; /* corrupt */
        }
        const char *s = buf + pos;
        pos += (size_t)n;
        types[i] = 1; /* normal */
        if (i == 0) {
            s = "<unk>", n = 5, types[i] = 2;
        } else if (i == 1) {
            s = "<s>", n = 3, types[i] = 3;
        } else if (i == 2) {
            s = "</s>", n = 4, types[i] = 3;
        } else if (is_byte_piece(s, (size_t)n)) {
            types[i] = 6;
        }
        if (!(texts[i] = escape_spaces(s, (size_t)n, &lens[i]))) {
            rc = sl_err_set(err, SL_ENOMEM, "llama2c: out of memory");
            goto out; /* allocation failure */
        }
    }
    if (sl_gguf_set_str(w, "tokenizer.ggml.model", "llama") ||
        sl_gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)texts, lens, (uint64_t)vocab) ||
        sl_gguf_set_arr(w, "tokenizer.ggml.scores", SL_GGUF_FLOAT32, scores, (uint64_t)vocab) ||
        sl_gguf_set_arr(w, "tokenizer.ggml.token_type", SL_GGUF_INT32, types, (uint64_t)vocab) ||
        sl_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 0) ||
        sl_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1) ||
        sl_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2))
        rc = sl_err_set(err, SL_ENOMEM, "llama2c: out of memory");
out:
    if (texts)
        for (int32_t i = 0; i < vocab; i++) free(texts[i]);
    free(texts);
    free(lens);
    free(scores);
    free(types);
    free(buf);
    return rc;
}

/* Adds one F32 tensor per layer from consecutive blocks of the checkpoint. */
static int add_layers(struct sl_gguf_writer *w, const float **p, const float *end, int32_t n_layer,
                      const char *suffix, int64_t cols, int64_t rows, struct sl_err *err)
{
    size_t per = (size_t)cols * (size_t)(rows ? rows : 1);
    int64_t ne[2] = {cols, rows};
    for (int32_t l = 0; l < n_layer; l++) {
        char name[96];
        if ((size_t)(end - *p) < per)
            return sl_err_set(err, SL_EFORMAT, "llama2c: checkpoint ends inside blk.%d.%s", l, suffix);
        snprintf(name, sizeof name, "blk.%d.%s", l, suffix);
        int rc = sl_gguf_add_tensor(w, name, SL_TYPE_F32, rows ? 2 : 1, ne, *p, per * 4, err);
        if (rc) return rc;
        *p += per;
    }
    return 0;
}

int sl_convert_llama2c(const char *model_path, const char *tok_path, const char *out_path,
                       struct sl_err *err)
{
    size_t len = 0;
    char *buf = read_all(model_path, &len, err);
    struct sl_gguf_writer *w = NULL;
    struct l2c_config c;
    int rc;

    if (!buf) return err ? err->code : SL_EIO;
    if (len < sizeof c) {
        rc = sl_err_set(err, SL_EFORMAT, "llama2c: '%s' is too short for a checkpoint", model_path);
        goto out; /* truncated */
    }
    memcpy(&c, buf, sizeof c);
    bool shared = c.vocab > 0;
    if (c.vocab < 0) c.vocab = -c.vocab;
    if (c.dim <= 0 || c.dim > L2C_MAX_DIM || c.hidden <= 0 || c.hidden > 4 * L2C_MAX_DIM ||
        c.n_layer <= 0 || c.n_layer > 1024 || c.n_head <= 0 || c.n_kv <= 0 || c.n_head % c.n_kv ||
        c.dim % c.n_head || c.vocab <= 3 || c.vocab > L2C_MAX_VOCAB || c.seq_len <= 0) {
        rc = sl_err_set(err, SL_EFORMAT,
                        "llama2c: '%s' has an implausible header (dim %d, hidden %d, layers %d, heads "
                        "%d/%d, vocab %d, seq_len %d): is this a llama2.c legacy checkpoint?",
                        model_path, c.dim, c.hidden, c.n_layer, c.n_head, c.n_kv, c.vocab, c.seq_len);
        goto out; /* not a checkpoint */
    }
    if ((len - sizeof c) % 4) {
        rc = sl_err_set(err, SL_EFORMAT, "llama2c: '%s' size is not a whole number of floats", model_path);
        goto out; /* corrupt */
    }
    int64_t E = c.dim, F = c.hidden, kvd = (int64_t)c.dim / c.n_head * c.n_kv, hs = c.dim / c.n_head;
    const float *p = (const float *)(buf + sizeof c);
    const float *end = (const float *)(buf + len);

    w = sl_gguf_writer_init();
    if (!w) {
        rc = sl_err_set(err, SL_ENOMEM, "llama2c: out of memory");
        goto out; /* allocation failure */
    }
    rc = sl_gguf_set_str(w, "general.architecture", "llama") | sl_gguf_set_str(w, "general.name", "llama2c") |
         sl_gguf_set_u32(w, "general.alignment", 32) |
         sl_gguf_set_u32(w, "llama.context_length", (uint32_t)c.seq_len) |
         sl_gguf_set_u32(w, "llama.embedding_length", (uint32_t)c.dim) |
         sl_gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)c.hidden) |
         sl_gguf_set_u32(w, "llama.block_count", (uint32_t)c.n_layer) |
         sl_gguf_set_u32(w, "llama.attention.head_count", (uint32_t)c.n_head) |
         sl_gguf_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c.n_kv) |
         sl_gguf_set_u32(w, "llama.rope.dimension_count", (uint32_t)hs) |
         sl_gguf_set_f32(w, "llama.rope.freq_base", 10000.0f) |
         sl_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    if (rc) {
        rc = sl_err_set(err, SL_ENOMEM, "llama2c: out of memory");
        goto out; /* allocation failure */
    }
    if ((rc = add_vocab(w, tok_path, c.vocab, err))) goto out; /* bad tokenizer */

    int64_t ne[2] = {E, c.vocab};
    if ((size_t)(end - p) < (size_t)(E * c.vocab)) {
        rc = sl_err_set(err, SL_EFORMAT, "llama2c: checkpoint ends inside the token embedding");
        goto out; /* truncated */
    }
    if ((rc = sl_gguf_add_tensor(w, "token_embd.weight", SL_TYPE_F32, 2, ne, p, (size_t)(E * c.vocab) * 4, err)))
        goto out;
    p += E * c.vocab;
    if ((rc = add_layers(w, &p, end, c.n_layer, "attn_norm.weight", E, 0, err)) ||
        (rc = add_layers(w, &p, end, c.n_layer, "attn_q.weight", E, E, err)) ||
        (rc = add_layers(w, &p, end, c.n_layer, "attn_k.weight", E, kvd, err)) ||
        (rc = add_layers(w, &p, end, c.n_layer, "attn_v.weight", E, kvd, err)) ||
        (rc = add_layers(w, &p, end, c.n_layer, "attn_output.weight", E, E, err)) ||
        (rc = add_layers(w, &p, end, c.n_layer, "ffn_norm.weight", E, 0, err)) ||
        (rc = add_layers(w, &p, end, c.n_layer, "ffn_gate.weight", E, F, err)) ||
        (rc = add_layers(w, &p, end, c.n_layer, "ffn_down.weight", F, E, err)) ||
        (rc = add_layers(w, &p, end, c.n_layer, "ffn_up.weight", E, F, err)))
        goto out; /* truncated checkpoint */
    int64_t ne1[1] = {E};
    if ((size_t)(end - p) < (size_t)E) {
        rc = sl_err_set(err, SL_EFORMAT, "llama2c: checkpoint ends inside the final norm");
        goto out; /* truncated */
    }
    if ((rc = sl_gguf_add_tensor(w, "output_norm.weight", SL_TYPE_F32, 1, ne1, p, (size_t)E * 4, err)))
        goto out;
    p += E;
    /* skip freq_cis_real and freq_cis_imag: seq_len * head_size / 2 each */
    size_t freqs = (size_t)c.seq_len * (size_t)hs;
    if ((size_t)(end - p) < freqs) {
        rc = sl_err_set(err, SL_EFORMAT, "llama2c: checkpoint ends inside the RoPE tables");
        goto out; /* truncated */
    }
    p += freqs;
    if (!shared) {
        if ((size_t)(end - p) < (size_t)(E * c.vocab)) {
            rc = sl_err_set(err, SL_EFORMAT, "llama2c: checkpoint ends inside the classifier");
            goto out; /* truncated */
        }
        if ((rc = sl_gguf_add_tensor(w, "output.weight", SL_TYPE_F32, 2, ne, p, (size_t)(E * c.vocab) * 4, err)))
            goto out;
        p += E * c.vocab;
    }
    if (p != end) {
        rc = sl_err_set(err, SL_EFORMAT, "llama2c: %zu unexpected bytes after the weights",
                        (size_t)((const char *)end - (const char *)p));
        goto out; /* not the layout we expect */
    }
    rc = sl_gguf_writer_write(w, out_path, err);
out:
    sl_gguf_writer_free(w);
    free(buf);
    return rc;
}
