/*
 * fuzz_tokenizer.c - libFuzzer target for the tokenizers.
 *
 * Input: one flag byte, then the text.
 *   bit 0: add_special   bit 1: parse_special   bits 2..7: which vocab
 * Vocab 0 is a small SentencePiece-style one (byte fallback, a few merges,
 * a control and a user-defined token); the others are one small byte-level
 * BPE vocab under each pre-tokenizer in k_pre. They are built once, in
 * memory, with the GGUF writer (through a temporary file, as the writer
 * only writes files) and sl_gguf_open_mem, so the target needs no assets.
 * The text is tokenized, every token printed back with a too-small and a
 * large buffer, and the ids detokenized with and without special pieces.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/gguf.h"
#include "engine/tok_unicode.h"
#include "engine/vocab.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const k_pre[] = {
    "gpt-2",     "llama-bpe", "qwen2",  "default", "deepseek-llm", "deepseek-coder", "falcon",
    "starcoder", "gpt-4o",    "tekken", "bloom",   "viking",       "command-r"};
#define N_PRE (sizeof k_pre / sizeof k_pre[0])
#define N_VOCAB (1 + N_PRE)

static struct sl_vocab *g_vocab[N_VOCAB];

/* Write w to a temporary file, read it back into memory, open and load. */
static struct sl_vocab *load_from_writer(struct sl_gguf_writer *w)
{
    char path[4096];
    const char *dir = getenv("TMPDIR");
    struct sl_err err = {0};
    struct sl_gguf *g = NULL;
    struct sl_vocab *v = NULL;
    uint8_t *buf = NULL;
    long n;
    snprintf(path, sizeof path, "%s/fuzz_tokenizer_XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) abort();
    close(fd);
    if (sl_gguf_writer_write(w, path, &err) != 0) abort();
    FILE *f = fopen(path, "rb");
    if (!f || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) <= 0 || fseek(f, 0, SEEK_SET) != 0)
        abort();
    buf = malloc((size_t)n);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) abort();
    fclose(f);
    unlink(path);
    if (sl_gguf_open_mem(&g, buf, (size_t)n, &err) != 0) abort();
    if (sl_vocab_load(&v, g, &err) != 0) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
        abort();
    }
    sl_gguf_free(g); /* the vocab keeps its own copies */
    free(buf);
    return v;
}

static struct sl_vocab *make_spm(void)
{
    static char bytes[256][8];
    enum { N = 3 + 256 + 8 };
    const char *texts[N];
    float scores[N];
    int32_t types[N];
    static const char *const extra[8] = {"\xe2\x96\x81",
                                         "a",
                                         "b",
                                         "\xe2\x96\x81"
                                         "a",
                                         "ab",
                                         "\xe2\x96\x81"
                                         "ab",
                                         "<|im_end|>",
                                         "<tool>"};
    struct sl_gguf_writer *w = sl_gguf_writer_init();
    texts[0] = "<unk>", types[0] = 2;
    texts[1] = "<s>", types[1] = 3;
    texts[2] = "</s>", types[2] = 3;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        texts[3 + b] = bytes[b];
        types[3 + b] = 6;
    }
    for (int i = 0; i < 8; i++) {
        texts[259 + i] = extra[i];
        types[259 + i] = 1;
    }
    types[265] = 3; /* <|im_end|> */
    types[266] = 4; /* <tool> */
    for (int i = 0; i < N; i++)
        scores[i] = -(float)(i % 7);
    sl_gguf_set_str(w, "tokenizer.ggml.model", "llama");
    sl_gguf_set_arr_str(w, "tokenizer.ggml.tokens", texts, NULL, N);
    sl_gguf_set_arr(w, "tokenizer.ggml.scores", SL_GGUF_FLOAT32, scores, N);
    sl_gguf_set_arr(w, "tokenizer.ggml.token_type", SL_GGUF_INT32, types, N);
    sl_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", true);
    struct sl_vocab *v = load_from_writer(w);
    sl_gguf_writer_free(w);
    return v;
}

static struct sl_vocab *make_bpe(const char *pre)
{
    static char alpha[256][4];
    static const char *const extra[] = {"he",        "ll", "hell",          "hello",
                                        "\xc4\xa0w", "12", "<|endoftext|>", "<|tool|>"};
    static const char *const merges[] = {"h e", "l l", "he ll", "hell o", "\xc4\xa0 w", "1 2"};
    enum { N = 256 + 8 };
    const char *texts[N];
    int32_t types[N];
    struct sl_gguf_writer *w = sl_gguf_writer_init();
    for (int b = 0; b < 256; b++) {
        size_t k = sl_utf8_encode(sl_bpe_byte_to_cpt((uint8_t)b), alpha[b]);
        alpha[b][k] = 0;
        texts[b] = alpha[b];
        types[b] = 1;
    }
    for (int i = 0; i < 8; i++) {
        texts[256 + i] = extra[i];
        types[256 + i] = 1;
    }
    types[262] = 3;
    types[263] = 4;
    sl_gguf_set_str(w, "tokenizer.ggml.model", "gpt2");
    sl_gguf_set_str(w, "tokenizer.ggml.pre", pre);
    sl_gguf_set_arr_str(w, "tokenizer.ggml.tokens", texts, NULL, N);
    sl_gguf_set_arr(w, "tokenizer.ggml.token_type", SL_GGUF_INT32, types, N);
    sl_gguf_set_arr_str(w, "tokenizer.ggml.merges", merges, NULL, sizeof merges / sizeof merges[0]);
    sl_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 262);
    sl_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 262);
    struct sl_vocab *v = load_from_writer(w);
    sl_gguf_writer_free(w);
    return v;
}

static void init(void)
{
    if (g_vocab[0]) return;
    g_vocab[0] = make_spm();
    for (size_t i = 0; i < N_PRE; i++)
        g_vocab[1 + i] = make_bpe(k_pre[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sl_err err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    if (size == 0) return 0;
    init();
    const bool add_special = data[0] & 1, parse_special = data[0] & 2;
    const struct sl_vocab *v = g_vocab[(data[0] >> 2) % N_VOCAB];

    /* an exact-size copy so ASan catches any read past the end */
    size_t len = size - 1;
    char *text = malloc(len ? len : 1);
    if (!text) return 0;
    memcpy(text, data + 1, len);

    if (sl_tokenize(v, text, len, add_special, parse_special, &ids, &n, &err) == 0) {
        char small[2], big[256];
        for (size_t i = 0; i < n; i++) {
            if (ids[i] < 0 || ids[i] >= sl_vocab_n_tokens(v)) abort();
            int k = sl_token_to_piece(v, ids[i], small, sizeof small, true);
            int m = sl_token_to_piece(v, ids[i], big, sizeof big, true);
            if (k < 0 && -k != m) abort(); /* the needed length is the real one */
        }
        for (int special = 0; special < 2; special++) {
            char *s = NULL;
            size_t slen = 0;
            if (sl_detokenize(v, ids, n, special, &s, &slen, &err) != 0) abort();
            if (strlen(s) > slen) abort(); /* NUL-terminated at slen */
            free(s);
        }
        free(ids);
    }
    free(text);
    return 0;
}
