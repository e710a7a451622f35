/*
 * test_vocab.c - tokenizers against llama.cpp's own test vectors, the HF
 * tokenizer importers, and small self-made vocabularies for the edges.
 *
 * The vectors (../shared/assets/tokenizers/ggml-vocab/<name>.gguf.inp/.out)
 * are what llama.cpp's test-tokenizer-0 checks: 46 strings split by
 * "\n__ggml_vocab_test__\n", one line of ids per string, tokenized with
 * add_special = false and parse_special = false.
 */
#define _GNU_SOURCE /* memmem */
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#include "convert/hf_tokenizer.h"
#include "engine/gguf.h"
#include "engine/vocab.h"
#include "engine/tok_unicode.h"
#include "engine/vocab_int.h"
#include "test.h"

#define N_VECTORS_MAX 64

/* ------------------------------------------------------------------------ */
/* helpers                                                                   */
/* ------------------------------------------------------------------------ */

struct vectors {
    char *inp_buf, *out_buf;
    const char *text[N_VECTORS_MAX];
    size_t text_len[N_VECTORS_MAX];
    int32_t *ids[N_VECTORS_MAX];
    size_t n_ids[N_VECTORS_MAX];
    size_t n;
};

static void vectors_free(struct vectors *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->ids[i]);
    free(t->inp_buf);
    free(t->out_buf);
}

/* Read <dir>/<name>.gguf.inp/.out as llama.cpp's read_tests() does. */
static bool vectors_read(struct vectors *t, const char *name)
{
    char p[512];
    size_t inp_len, out_len;
    static const char sep[] = "\n__ggml_vocab_test__\n";
    memset(t, 0, sizeof *t);
    snprintf(p, sizeof p, "tokenizers/ggml-vocab/ggml-vocab-%s.gguf.inp", name);
    t->inp_buf = t_read_file(t_asset(p), &inp_len);
    snprintf(p, sizeof p, "tokenizers/ggml-vocab/ggml-vocab-%s.gguf.out", name);
    t->out_buf = t_read_file(t_asset(p), &out_len);
    if (!t->inp_buf || !t->out_buf) return false;
    size_t pos = 0;
    while (pos < inp_len && t->n < N_VECTORS_MAX) {
        char *next = memmem(t->inp_buf + pos, inp_len - pos, sep, sizeof sep - 1);
        size_t end = next ? (size_t)(next - t->inp_buf) : inp_len;
        t->text[t->n] = t->inp_buf + pos;
        t->text_len[t->n] = end - pos;
        t->n++;
        pos = next ? end + sizeof sep - 1 : inp_len;
    }
    char *line = t->out_buf, *save = NULL;
    size_t k = 0;
    for (char *e = line; k < t->n; k++) {
        e = strchr(line, '\n');
        if (e) *e = 0;
        t->ids[k] = malloc(sizeof(int32_t) * (strlen(line) / 2 + 1));
        for (char *tok = strtok_r(line, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
            t->ids[k][t->n_ids[k]++] = (int32_t)strtol(tok, NULL, 10);
        if (!e) break;
        line = e + 1;
    }
    return k + 1 >= t->n;
}

static void print_ids(const char *what, const int32_t *ids, size_t n)
{
    fprintf(stderr, "    %s:", what);
    for (size_t i = 0; i < n && i < 40; i++)
        fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "%s\n", n > 40 ? " ..." : "");
}

/* Does detokenize(tokenize(s)) == s hold for this vocab, by llama.cpp's
 * rules? BPE clean_spaces rewrites " ." " ," " 's" ..., so inputs with
 * those are not expected back. */
static bool roundtrip_expected(const struct sl_vocab *v, const char *s, size_t n)
{
    static const char *const cleaned[] = {" ?", " !", " .", " ,", " '", NULL};
    if (sl_vocab_type(v) != SL_VOCAB_BPE) return true;
    if (strcmp(sl_vocab_pre(v), "qwen2") == 0 || strcmp(sl_vocab_pre(v), "smollm") == 0)
        return true;
    for (const char *const *c = cleaned; *c; c++)
        if (memmem(s, n, *c, 2)) return false;
    return true;
}

/* Tokenize every vector; count exact matches and exact round trips. */
static void check_vectors(const struct sl_vocab *v, const char *name, int *ok_tok, int *ok_rt,
                          int *n_rt)
{
    struct vectors t;
    struct sl_err err = {0};
    *ok_tok = *ok_rt = *n_rt = 0;
    if (!vectors_read(&t, name)) {
        T_FAIL_AT("cannot read the %s vectors", name);
        vectors_free(&t);
        return;
    }
    T_EQ_INT(t.n, 46);
    for (size_t i = 0; i < t.n; i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        T_OK(sl_tokenize(v, t.text[i], t.text_len[i], false, false, &ids, &n, &err), &err);
        bool same = n == t.n_ids[i] && (n == 0 || memcmp(ids, t.ids[i], n * sizeof *ids) == 0);
        t_checks++;
        if (same) {
            (*ok_tok)++;
        } else {
            T_FAIL_AT("%s vector %zu \"%.*s\": ids differ", name, i, (int)t.text_len[i], t.text[i]);
            print_ids("want", t.ids[i], t.n_ids[i]);
            print_ids("got ", ids, n);
        }
        if (roundtrip_expected(v, t.text[i], t.text_len[i])) {
            char *s = NULL;
            size_t len = 0;
            (*n_rt)++;
            T_OK(sl_detokenize(v, t.ids[i], t.n_ids[i], false, &s, &len, &err), &err);
            t_checks++;
            if (s && len == t.text_len[i] && memcmp(s, t.text[i], len) == 0)
                (*ok_rt)++;
            else
                T_FAIL_AT("%s vector %zu: detokenized to \"%s\", want \"%.*s\"", name, i,
                          s ? s : "(null)", (int)t.text_len[i], t.text[i]);
            free(s);
        }
        free(ids);
    }
    fprintf(stderr, "  vocab %-10s tokenize %d/%zu, detokenize round trip %d/%d\n", name, *ok_tok,
            t.n, *ok_rt, *n_rt);
    vectors_free(&t);
}

static void expect_ids(const struct sl_vocab *v, const char *text, size_t len, bool add_special,
                       bool parse_special, const int32_t *want, size_t n_want);
static void expect_text(const struct sl_vocab *v, const int32_t *ids, size_t n, bool special,
                        const char *want, size_t want_len);

static struct sl_vocab *open_vocab(const char *path, struct sl_gguf **g)
{
    struct sl_err err = {0};
    struct sl_vocab *v = NULL;
    *g = NULL;
    T_OK(sl_gguf_open(g, path, &err), &err);
    if (!*g) return NULL;
    T_OK(sl_vocab_load(&v, *g, &err), &err);
    return v;
}

static void vectors_for_gguf(const char *name)
{
    char rel[256];
    struct sl_gguf *g;
    int ok, rt, nrt;
    snprintf(rel, sizeof rel, "tokenizers/ggml-vocab/ggml-vocab-%s.gguf", name);
    if (!t_assets() || access(t_asset(rel), R_OK) != 0) {
        t_skip("tokenizer assets absent");
        return;
    }
    struct sl_vocab *v = open_vocab(t_asset(rel), &g);
    if (v) {
        check_vectors(v, name, &ok, &rt, &nrt);
        T_EQ_INT(ok, 46);
        T_EQ_INT(rt, nrt);
    }
    sl_vocab_free(v);
    sl_gguf_free(g);
}

/* ------------------------------------------------------------------------ */
/* llama.cpp's vectors                                                       */
/* ------------------------------------------------------------------------ */

static void llama_spm_vocab_matches_llamacpp_vectors(void)
{
    vectors_for_gguf("llama-spm");
}
static void phi3_vocab_matches_llamacpp_vectors(void)
{
    vectors_for_gguf("phi-3");
}
static void gpt2_vocab_matches_llamacpp_vectors(void)
{
    vectors_for_gguf("gpt-2");
}

/* assets/README: "Once upon a time" is [1, 403, 407, 261, 378] in llama.cpp
 * (BOS plus the dummy-prefix space). */
static void stories260k_prompt_encodes_like_llamacpp(void)
{
    const char *rel = "models/stories260K/stories260K.gguf";
    struct sl_gguf *g;
    if (!t_assets() || access(t_asset(rel), R_OK) != 0) {
        t_skip("stories260K absent");
        return;
    }
    struct sl_vocab *v = open_vocab(t_asset(rel), &g);
    if (v) {
        const int32_t want[] = {1, 403, 407, 261, 378};
        expect_ids(v, "Once upon a time", 16, true, false, want, 5);
        expect_text(v, want, 5, false, "Once upon a time", 16);
    }
    sl_vocab_free(v);
    sl_gguf_free(g);
}

/* Convert HF files (relative to the assets dir) into a temporary GGUF and
 * load it. */
static struct sl_vocab *import_vocab(const char *const *rel, size_t n, const char *tmp_name,
                                     struct sl_gguf **g)
{
    const char *paths[8];
    char buf[8][512];
    struct sl_err err = {0};
    char out[4096];
    *g = NULL;
    for (size_t i = 0; i < n; i++) {
        snprintf(buf[i], sizeof buf[i], "%s", t_asset(rel[i]));
        paths[i] = buf[i];
    }
    snprintf(out, sizeof out, "%s", t_tmp_path(tmp_name));
    T_OK(sl_hf_tokenizer_convert(paths, n, NULL, out, &err), &err);
    if (err.code) return NULL;
    struct sl_vocab *v = open_vocab(out, g);
    unlink(out);
    return v;
}

static bool have_assets(const char *const *rel, size_t n)
{
    if (!t_assets()) return false;
    for (size_t i = 0; i < n; i++)
        if (access(t_asset(rel[i]), R_OK) != 0) return false;
    return true;
}

static void llama_bpe_from_tiktoken_matches_llamacpp_vectors(void)
{
    static const char *const rel[] = {"tokenizers/llama3/tokenizer.model",
                                      "tokenizers/llama3/tokenizer_config.json"};
    struct sl_gguf *g;
    int ok, rt, nrt;
    if (!have_assets(rel, 2)) {
        t_skip("llama3 tokenizer assets absent");
        return;
    }
    struct sl_vocab *v = import_vocab(rel, 2, "llama3.gguf", &g);
    if (v) {
        T_EQ_STR(sl_vocab_pre(v), "llama-bpe");
        T_EQ_INT(sl_vocab_n_tokens(v), 128256);
        T_EQ_INT(sl_vocab_bos(v), 128000);
        T_EQ_INT(sl_vocab_eot(v), 128009);
        T_TRUE(sl_vocab_add_bos(v));
        T_TRUE(sl_vocab_is_eog(v, 128009));
        T_TRUE(sl_vocab_is_control(v, 128000));
        check_vectors(v, "llama-bpe", &ok, &rt, &nrt);
        T_EQ_INT(ok, 46);
        T_EQ_INT(rt, nrt);
    }
    sl_vocab_free(v);
    sl_gguf_free(g);
}

static void qwen2_from_vocab_json_matches_llamacpp_vectors(void)
{
    static const char *const rel[] = {"tokenizers/qwen/vocab.json", "tokenizers/qwen/merges.txt",
                                      "tokenizers/qwen/tokenizer_config.json"};
    struct sl_gguf *g;
    int ok, rt, nrt;
    if (!have_assets(rel, 3)) {
        t_skip("qwen tokenizer assets absent");
        return;
    }
    struct sl_vocab *v = import_vocab(rel, 3, "qwen2.gguf", &g);
    if (v) {
        T_EQ_STR(sl_vocab_pre(v), "qwen2");
        T_EQ_INT(sl_vocab_n_tokens(v), 151669);
        T_EQ_INT(sl_vocab_eos(v), 151645);
        T_EQ_INT(sl_vocab_pad(v), 151643);
        T_TRUE(!sl_vocab_add_bos(v));
        T_TRUE(sl_vocab_is_eog(v, 151645));
        T_TRUE(sl_vocab_is_eog(v, 151643));
        T_EQ_INT(sl_vocab_token_type(v, 151667), SL_TOKEN_TYPE_USER_DEFINED); /* <think> */
        T_EQ_INT(sl_vocab_find(v, "<|im_start|>", 12), 151644);
        check_vectors(v, "qwen2", &ok, &rt, &nrt);
        T_EQ_INT(ok, 46);
        T_EQ_INT(rt, nrt);
    }
    sl_vocab_free(v);
    sl_gguf_free(g);
}

/* The sentencepiece protobuf importer gives the same vocab as llama.cpp's
 * converted ggml-vocab-llama-spm.gguf. */
static void llama2_sentencepiece_model_matches_ggml_vocab(void)
{
    static const char *const rel[] = {"tokenizers/llama2/tokenizer.model",
                                      "tokenizers/ggml-vocab/ggml-vocab-llama-spm.gguf"};
    struct sl_gguf *g, *g2;
    int ok, rt, nrt;
    if (!have_assets(rel, 2)) {
        t_skip("llama2 tokenizer assets absent");
        return;
    }
    struct sl_vocab *v = import_vocab(rel, 1, "llama2.gguf", &g);
    struct sl_vocab *ref = open_vocab(t_asset(rel[1]), &g2);
    if (v && ref) {
        T_EQ_INT(sl_vocab_n_tokens(v), sl_vocab_n_tokens(ref));
        int same_text = 0, same_type = 0, same_score = 0;
        for (int32_t i = 0; i < sl_vocab_n_tokens(v); i++) {
            size_t la, lb;
            const char *a = sl_vocab_token_text(v, i, &la), *b = sl_vocab_token_text(ref, i, &lb);
            same_text += la == lb && memcmp(a, b, la) == 0;
            same_type += sl_vocab_token_type(v, i) == sl_vocab_token_type(ref, i);
            same_score += sl_vocab_token_score(v, i) == sl_vocab_token_score(ref, i);
        }
        T_EQ_INT(same_text, 32000);
        T_EQ_INT(same_type, 32000);
        T_EQ_INT(same_score, 32000);
        T_EQ_INT(sl_vocab_bos(v), 1);
        T_EQ_INT(sl_vocab_eos(v), 2);
        T_EQ_INT(sl_vocab_unk(v), 0);
        check_vectors(v, "llama-spm", &ok, &rt, &nrt);
        T_EQ_INT(ok, 46);
        T_EQ_INT(rt, nrt);
    }
    sl_vocab_free(v);
    sl_vocab_free(ref);
    sl_gguf_free(g);
    sl_gguf_free(g2);
}

/* Mistral's sentencepiece models import and round-trip text. */
static void mistral_sentencepiece_models_import_and_round_trip(void)
{
    static const char *const rel[] = {"tokenizers/mistral/tokenizer.model.v1",
                                      "tokenizers/mistral/tokenizer.model.v3"};
    static const char text[] = "Hello world! [INST] Ça va? 🦙 1234\n\tend";
    if (!have_assets(rel, 2)) {
        t_skip("mistral tokenizer assets absent");
        return;
    }
    for (int k = 0; k < 2; k++) {
        struct sl_gguf *g;
        struct sl_err err = {0};
        struct sl_vocab *v = import_vocab(&rel[k], 1, "mistral.gguf", &g);
        if (v) {
            int32_t *ids = NULL;
            size_t n = 0;
            char *s = NULL;
            T_EQ_INT(sl_vocab_n_tokens(v), k == 0 ? 32000 : 32768);
            T_OK(sl_tokenize(v, text, strlen(text), true, false, &ids, &n, &err), &err);
            T_TRUE(n > 2 && ids[0] == 1);
            T_OK(sl_detokenize(v, ids, n, false, &s, NULL, &err), &err);
            T_EQ_STR(s, text);
            free(s);
            free(ids);
            if (k == 1) {
                int32_t inst = sl_vocab_find(v, "[INST]", 6);
                T_TRUE(inst > 0);
                T_OK(sl_tokenize(v, "[INST]", 6, false, true, &ids, &n, &err), &err);
                T_EQ_INT(n, 1);
                if (n == 1) T_EQ_INT(ids[0], inst);
                free(ids);
            }
        }
        sl_vocab_free(v);
        sl_gguf_free(g);
    }
}

/* ------------------------------------------------------------------------ */
/* small self-made vocabularies                                              */
/* ------------------------------------------------------------------------ */

#define SPM_N_BYTE 256
/* ids: 0 <unk>, 1 <s>, 2 </s>, 3..258 <0xNN>, then these */
enum { SPM_SP = 259, SPM_A, SPM_B, SPM_SP_A, SPM_AB, SPM_SP_AB, SPM_IM_END, SPM_TOOL, SPM_N };

struct built {
    struct sl_gguf *g;
    struct sl_vocab *v;
};

static void built_free(struct built *b)
{
    sl_vocab_free(b->v);
    sl_gguf_free(b->g);
}

/* Write w to a temporary file, open it and load its vocab. */
static int build(struct sl_gguf_writer *w, const char *name, struct built *b, struct sl_err *err)
{
    const char *path = t_tmp_path(name);
    int rc;
    memset(b, 0, sizeof *b);
    rc = sl_gguf_writer_write(w, path, err);
    sl_gguf_writer_free(w);
    if (!rc) rc = sl_gguf_open(&b->g, path, err);
    unlink(path);
    if (!rc) rc = sl_vocab_load(&b->v, b->g, err);
    return rc;
}

static struct sl_gguf_writer *spm_writer(void)
{
    static char bytes[SPM_N_BYTE][8];
    const char *texts[SPM_N];
    float scores[SPM_N];
    int32_t types[SPM_N];
    struct sl_gguf_writer *w = sl_gguf_writer_init();
    texts[0] = "<unk>", types[0] = SL_TOKEN_TYPE_UNKNOWN;
    texts[1] = "<s>", types[1] = SL_TOKEN_TYPE_CONTROL;
    texts[2] = "</s>", types[2] = SL_TOKEN_TYPE_CONTROL;
    for (int b = 0; b < SPM_N_BYTE; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        texts[3 + b] = bytes[b];
        types[3 + b] = SL_TOKEN_TYPE_BYTE;
    }
    texts[SPM_SP] = "\xe2\x96\x81";
    texts[SPM_A] = "a";
    texts[SPM_B] = "b";
    texts[SPM_SP_A] = "\xe2\x96\x81"
                      "a";
    texts[SPM_AB] = "ab";
    texts[SPM_SP_AB] = "\xe2\x96\x81"
                       "ab";
    texts[SPM_IM_END] = "<|im_end|>";
    texts[SPM_TOOL] = "<tool>";
    for (int i = 0; i < SPM_N; i++) {
        scores[i] = 0.0f;
        if (i >= SPM_SP) types[i] = SL_TOKEN_TYPE_NORMAL;
    }
    scores[SPM_SP] = -1.0f, scores[SPM_A] = -2.0f, scores[SPM_B] = -2.0f;
    scores[SPM_SP_A] = -2.0f, scores[SPM_AB] = -1.0f, scores[SPM_SP_AB] = -0.5f;
    types[SPM_IM_END] = SL_TOKEN_TYPE_CONTROL;
    types[SPM_TOOL] = SL_TOKEN_TYPE_USER_DEFINED;
    sl_gguf_set_str(w, "tokenizer.ggml.model", "llama");
    sl_gguf_set_arr_str(w, "tokenizer.ggml.tokens", texts, NULL, SPM_N);
    sl_gguf_set_arr(w, "tokenizer.ggml.scores", SL_GGUF_FLOAT32, scores, SPM_N);
    sl_gguf_set_arr(w, "tokenizer.ggml.token_type", SL_GGUF_INT32, types, SPM_N);
    sl_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 0xFFFFFFFFu); /* "unset" */
    return w;
}

static void expect_ids(const struct sl_vocab *v, const char *text, size_t len, bool add_special,
                       bool parse_special, const int32_t *want, size_t n_want)
{
    int32_t *ids = NULL;
    size_t n = 0;
    struct sl_err err = {0};
    T_OK(sl_tokenize(v, text, len, add_special, parse_special, &ids, &n, &err), &err);
    t_checks++;
    if (n != n_want || (n && memcmp(ids, want, n * sizeof *ids) != 0)) {
        T_FAIL_AT("tokenize(\"%.*s\", add_special=%d, parse_special=%d)", (int)len, text,
                  add_special, parse_special);
        print_ids("want", want, n_want);
        print_ids("got ", ids, n);
    }
    free(ids);
}

static void expect_text(const struct sl_vocab *v, const int32_t *ids, size_t n, bool special,
                        const char *want, size_t want_len)
{
    char *s = NULL;
    size_t len = 0;
    struct sl_err err = {0};
    T_OK(sl_detokenize(v, ids, n, special, &s, &len, &err), &err);
    t_checks++;
    if (!s || len != want_len || memcmp(s, want, len) != 0)
        T_FAIL_AT("detokenize gave \"%s\" (%zu bytes), want \"%.*s\"", s ? s : "(null)", len,
                  (int)want_len, want);
    free(s);
}

static void spm_merges_by_score_and_falls_back_to_bytes(void)
{
    struct built b;
    struct sl_err err = {0};
    T_OK(build(spm_writer(), "spm.gguf", &b, &err), &err);
    if (!b.v) {
        built_free(&b);
        return;
    }
    /* "▁ab▁ab": ab (-1) first, then ▁ab (-0.5), twice */
    const int32_t want1[] = {SPM_SP_AB, SPM_SP_AB};
    expect_ids(b.v, "ab ab", 5, false, false, want1, 2);
    /* é = C3 A9 has no token: two byte tokens */
    const int32_t want2[] = {1, SPM_SP_A, SPM_SP, 3 + 0xC3, 3 + 0xA9};
    expect_ids(b.v, "a \xc3\xa9", 4, true, false, want2, 5);
    expect_text(b.v, want2, 5, false, "a \xc3\xa9", 4);
    /* BOS kept as text only when asked; the leading space goes after BOS */
    expect_text(b.v, want2, 5, true, "<s>a \xc3\xa9", 7);
    T_EQ_INT(sl_vocab_bos(b.v), 1);
    T_EQ_INT(sl_vocab_eos(b.v), 2); /* 0xFFFFFFFF is "unset": the default stays */
    T_EQ_INT(sl_vocab_nl(b.v), 3 + '\n');
    built_free(&b);
}

static void spm_parses_special_tokens_only_when_asked(void)
{
    struct built b;
    struct sl_err err = {0};
    char piece[16];
    T_OK(build(spm_writer(), "spm2.gguf", &b, &err), &err);
    if (!b.v) {
        built_free(&b);
        return;
    }
    /* control tokens are text unless parse_special; user-defined always match */
    const int32_t as_text[] = {SPM_SP_A, 3 + '<', 3 + '|', 3 + 'i', 3 + 'm',  3 + '_',  3 + 'e',
                               3 + 'n',  3 + 'd', 3 + '|', 3 + '>', SPM_TOOL, SPM_SP_AB};
    expect_ids(b.v, "a<|im_end|><tool>ab", 19, false, false, as_text, 13);
    const int32_t parsed[] = {SPM_SP_A, SPM_IM_END, SPM_TOOL, SPM_SP_AB};
    expect_ids(b.v, "a<|im_end|><tool>ab", 19, false, true, parsed, 4);
    /* control pieces are empty unless special; the EOG list has <|im_end|> */
    T_EQ_INT(sl_token_to_piece(b.v, SPM_IM_END, piece, sizeof piece, false), 0);
    T_EQ_INT(sl_token_to_piece(b.v, SPM_IM_END, piece, sizeof piece, true), 10);
    T_EQ_INT(sl_token_to_piece(b.v, SPM_IM_END, piece, 4, true), -10);
    T_EQ_INT(sl_token_to_piece(b.v, SPM_TOOL, piece, sizeof piece, false), 6);
    T_EQ_INT(sl_token_to_piece(b.v, SPM_N + 5, piece, sizeof piece, true), 0);
    T_TRUE(sl_vocab_is_eog(b.v, SPM_IM_END));
    T_TRUE(sl_vocab_is_eog(b.v, 2));
    T_TRUE(!sl_vocab_is_eog(b.v, SPM_A));
    T_TRUE(sl_vocab_is_control(b.v, SPM_IM_END));
    T_EQ_INT(sl_vocab_eot(b.v), SPM_IM_END);
    /* as in llama.cpp, text after a special token gets the dummy-prefix
     * space again ("▁ab"), so it does not round-trip */
    expect_text(b.v, parsed, 4, false, "a<tool> ab", 10);
    expect_text(b.v, parsed, 4, true, "a<|im_end|><tool> ab", 20);
    built_free(&b);
}

static void spm_keeps_invalid_utf8_as_byte_tokens(void)
{
    struct built b;
    struct sl_err err = {0};
    static const char bad[] = "\xff"
                              "a\xc3"
                              "\xe2\x96"
                              "\x80\x80"
                              "b\xf4\x90\x80\x80";
    T_OK(build(spm_writer(), "spm3.gguf", &b, &err), &err);
    if (!b.v) {
        built_free(&b);
        return;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    T_OK(sl_tokenize(b.v, bad, sizeof bad - 1, false, false, &ids, &n, &err), &err);
    T_TRUE(n > 0);
    expect_text(b.v, ids, n, false, bad, sizeof bad - 1);
    free(ids);
    /* a lone lead byte at the very end must not read past it */
    char *tail = malloc(1);
    tail[0] = '\xf0';
    T_OK(sl_tokenize(b.v, tail, 1, false, false, &ids, &n, &err), &err);
    T_EQ_INT(n, 2); /* ▁ and <0xF0> */
    free(ids);
    free(tail);
    built_free(&b);
}

static void empty_input_gives_no_tokens_or_only_bos(void)
{
    struct built b;
    struct sl_err err = {0};
    int32_t *ids = (int32_t *)1;
    size_t n = 7;
    T_OK(build(spm_writer(), "spm4.gguf", &b, &err), &err);
    if (!b.v) {
        built_free(&b);
        return;
    }
    T_OK(sl_tokenize(b.v, "", 0, false, true, &ids, &n, &err), &err);
    T_EQ_INT(n, 0);
    T_TRUE(ids == NULL);
    T_OK(sl_tokenize(b.v, NULL, 0, false, false, &ids, &n, &err), &err);
    T_EQ_INT(n, 0);
    const int32_t bos[] = {1};
    expect_ids(b.v, "", 0, true, false, bos, 1);
    expect_text(b.v, bos, 0, false, "", 0);
    expect_text(b.v, bos, 1, false, "", 0);
    built_free(&b);
}

static void input_past_the_limit_is_a_range_error(void)
{
    struct built b;
    struct sl_err err = {0};
    int32_t *ids = NULL, bad_id = 1 << 30;
    size_t n = 0;
    char *s = NULL;
    T_OK(build(spm_writer(), "spm5.gguf", &b, &err), &err);
    if (!b.v) {
        built_free(&b);
        return;
    }
    /* the length is checked before the text is read */
    T_EQ_INT(sl_tokenize(b.v, "x", (size_t)SL_TOK_MAX_INPUT + 1, false, false, &ids, &n, &err),
             SL_ERANGE);
    T_TRUE(strstr(err.msg, "limit") != NULL);
    T_EQ_INT(sl_detokenize(b.v, &bad_id, 1, false, &s, NULL, &err), SL_EINVAL);
    T_TRUE(s == NULL);
    built_free(&b);
}

/* A byte-level BPE: the 256 alphabet characters (id = byte), then merges. */
enum { BPE_HE = 256, BPE_LL, BPE_HELL, BPE_HELLO, BPE_SP_W, BPE_EOT, BPE_USER, BPE_N };

static struct sl_gguf_writer *bpe_writer(const char *pre)
{
    static char alpha[256][4];
    const char *texts[BPE_N];
    int32_t types[BPE_N];
    const char *merges[] = {"h e", "l l", "he ll", "hell o", "\xc4\xa0 w"};
    struct sl_gguf_writer *w = sl_gguf_writer_init();
    for (int b = 0; b < 256; b++) {
        uint32_t cp = sl_bpe_byte_to_cpt((uint8_t)b);
        size_t k = sl_utf8_encode(cp, alpha[b]);
        alpha[b][k] = 0;
        texts[b] = alpha[b];
        types[b] = SL_TOKEN_TYPE_NORMAL;
    }
    texts[BPE_HE] = "he", texts[BPE_LL] = "ll", texts[BPE_HELL] = "hell";
    texts[BPE_HELLO] = "hello", texts[BPE_SP_W] = "\xc4\xa0w";
    texts[BPE_EOT] = "<|endoftext|>", texts[BPE_USER] = "<|tool|>";
    for (int i = 256; i < BPE_N; i++)
        types[i] = SL_TOKEN_TYPE_NORMAL;
    types[BPE_EOT] = SL_TOKEN_TYPE_CONTROL;
    types[BPE_USER] = SL_TOKEN_TYPE_USER_DEFINED;
    sl_gguf_set_str(w, "tokenizer.ggml.model", "gpt2");
    if (pre) sl_gguf_set_str(w, "tokenizer.ggml.pre", pre);
    sl_gguf_set_arr_str(w, "tokenizer.ggml.tokens", texts, NULL, BPE_N);
    sl_gguf_set_arr(w, "tokenizer.ggml.token_type", SL_GGUF_INT32, types, BPE_N);
    sl_gguf_set_arr_str(w, "tokenizer.ggml.merges", merges, NULL, 5);
    sl_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 99999); /* past the vocab: unset */
    sl_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", BPE_EOT);
    return w;
}

static void bpe_merges_by_rank_within_pretokens(void)
{
    struct built b;
    struct sl_err err = {0};
    T_OK(build(bpe_writer("gpt-2"), "bpe.gguf", &b, &err), &err);
    if (!b.v) {
        built_free(&b);
        return;
    }
    T_EQ_STR(sl_vocab_pre(b.v), "gpt-2");
    T_EQ_INT(sl_vocab_bos(b.v), -1);
    T_TRUE(!sl_vocab_add_bos(b.v));
    T_TRUE(sl_vocab_is_eog(b.v, BPE_EOT));
    /* "hello" merges fully; " world" -> "Ġw" + letters; "hellohello!" is one
     * pre-token up to "!" */
    const int32_t want[] = {BPE_HELLO, BPE_SP_W, 'o', 'r', 'l', 'd'};
    expect_ids(b.v, "hello world", 11, true, false, want, 6);
    expect_text(b.v, want, 6, false, "hello world", 11);
    const int32_t want2[] = {BPE_HELLO, BPE_HELLO, '!', BPE_EOT, BPE_USER, 'h'};
    expect_ids(b.v, "hellohello!<|endoftext|><|tool|>h", 33, false, true, want2, 6);
    /* add_special adds EOS when the file asks for it */
    built_free(&b);
    struct sl_gguf_writer *w = bpe_writer("gpt-2");
    sl_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", true);
    T_OK(build(w, "bpe2.gguf", &b, &err), &err);
    if (b.v) {
        const int32_t want3[] = {BPE_HELLO, BPE_EOT};
        expect_ids(b.v, "hello", 5, true, false, want3, 2);
    }
    built_free(&b);
}

static void bpe_turns_invalid_utf8_into_replacement_characters(void)
{
    struct built b;
    struct sl_err err = {0};
    T_OK(build(bpe_writer("llama-bpe"), "bpe3.gguf", &b, &err), &err);
    if (!b.v) {
        built_free(&b);
        return;
    }
    /* each bad byte becomes U+FFFD = EF BF BD, as in llama.cpp */
    const int32_t want[] = {'h', 0xEF, 0xBF, 0xBD, 0xEF, 0xBF, 0xBD};
    expect_ids(b.v, "h\xff\xc3", 3, false, false, want, 7);
    expect_text(b.v, want, 7, false, "h\xef\xbf\xbd\xef\xbf\xbd", 7);
    /* a bare continuation byte and a code point past U+10FFFF likewise */
    int32_t *ids = NULL;
    size_t n = 0;
    T_OK(sl_tokenize(b.v, "\x80\xf4\x90\x80\x80", 5, false, false, &ids, &n, &err), &err);
    T_EQ_INT(n, 15);
    free(ids);
    built_free(&b);
}

static void unsupported_models_and_pretokenizers_are_rejected(void)
{
    struct built b;
    struct sl_err err = {0};
    T_EQ_INT(build(bpe_writer("no-such-pre"), "bpe4.gguf", &b, &err), SL_EUNSUPPORTED);
    T_TRUE(strstr(err.msg, "no-such-pre") != NULL);
    built_free(&b);
    struct sl_gguf_writer *w = bpe_writer(NULL); /* no pre: llama.cpp's "default" */
    T_OK(build(w, "bpe5.gguf", &b, &err), &err);
    if (b.v) T_EQ_STR(sl_vocab_pre(b.v), "default");
    built_free(&b);
    w = spm_writer();
    sl_gguf_set_str(w, "tokenizer.ggml.model", "bert");
    T_EQ_INT(build(w, "bert.gguf", &b, &err), SL_EUNSUPPORTED);
    T_TRUE(strstr(err.msg, "WordPiece") != NULL);
    built_free(&b);
    w = spm_writer();
    sl_gguf_set_arr(w, "tokenizer.ggml.scores", SL_GGUF_FLOAT32, (float[]){0}, 1);
    T_EQ_INT(build(w, "short.gguf", &b, &err), SL_EFORMAT);
    built_free(&b);
}

/* ------------------------------------------------------------------------ */
/* pre-tokenizers without test vectors                                       */
/* ------------------------------------------------------------------------ */

static void expect_split(const char *pre_name, const char *text, const char *const *want)
{
    struct sl_pre pre;
    struct sl_err err = {0};
    char *buf = NULL;
    size_t *len = NULL, n = 0, nw = 0, off = 0;
    T_OK(sl_pre_init(&pre, pre_name, strlen(pre_name), &err), &err);
    T_OK(sl_pre_split(&pre, text, strlen(text), &buf, &len, &n), &err);
    while (want[nw])
        nw++;
    bool same = n == nw;
    for (size_t i = 0; i < n && same; off += len[i], i++)
        same = strlen(want[i]) == len[i] && memcmp(want[i], buf + off, len[i]) == 0;
    t_checks++;
    if (!same) {
        T_FAIL_AT("%s split of \"%s\":", pre_name, text);
        off = 0;
        for (size_t i = 0; i < n; off += len[i], i++)
            fprintf(stderr, "    [%.*s]\n", (int)len[i], buf + off);
    }
    free(buf);
    free(len);
}

static void pretokenizers_split_like_their_regexes(void)
{
    expect_split("default", "Hello, world! 12345",
                 (const char *[]){"Hello", ",", " world", "!", " ", "123", "45", NULL});
    expect_split("deepseek-coder", "foo(1)\nbar",
                 (const char *[]){"foo", "(", "1", ")", "\n", "bar", NULL});
    expect_split("deepseek-llm", "Hi \xe4\xbd\xa0\xe5\xa5\xbd 42  ",
                 (const char *[]){"Hi", " ", "\xe4\xbd\xa0\xe5\xa5\xbd", " ", "42", "  ", NULL});
    expect_split("starcoder", "abc 123", (const char *[]){"abc", " ", "1", "2", "3", NULL});
    expect_split("falcon", "a+b=1234", (const char *[]){"a", "+", "b", "=", "123", "4", NULL});
    expect_split("bloom", "Hello, world.", (const char *[]){"Hello", ",", " world", ".", NULL});
    expect_split("qwen2", "x 2024\n\n y",
                 (const char *[]){"x", " ", "2", "0", "2", "4", "\n\n", " y", NULL});
    /* GPT-4o (o200k): case-aware words with contractions; the expected
     * pieces are those of llama.cpp's own unit test */
    expect_split("gpt-4o", " NASA's GPT-OSS /path/to/file abc/\nfooBAR 123",
                 (const char *[]){" NASA's", " GPT", "-OSS", " /", "path", "/to", "/file", " abc",
                                  "/\n", "foo", "BAR", " ", "123", NULL});
    expect_split("tekken", "HelloWorld 12",
                 (const char *[]){"Hello", "World", " ", "1", "2", NULL});
}

/* ------------------------------------------------------------------------ */
/* importers on small self-made files                                        */
/* ------------------------------------------------------------------------ */

static bool write_text(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

static const char k_tokenizer_json[] =
    "{\"version\": \"1.0\", \"added_tokens\": ["
    "  {\"id\": 9, \"content\": \"<|im_end|>\", \"special\": true},"
    "  {\"id\": 10, \"content\": \"<tool>\", \"special\": false}],"
    " \"normalizer\": null,"
    " \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
    "  {\"type\": \"Split\", \"pattern\": {\"Regex\": "
    "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| "
    "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},"
    "   \"behavior\": \"Isolated\", \"invert\": false},"
    "  {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]},"
    " \"model\": {\"type\": \"BPE\", \"byte_fallback\": false,"
    "  \"vocab\": {\"h\": 0, \"e\": 1, \"l\": 2, \"o\": 3, \"he\": 4, \"ll\": 5, \"hell\": 6,"
    "             \"hello\": 7, \"\\u0120\": 8},"
    "  \"merges\": [\"h e\", [\"l\", \"l\"], \"he ll\", [\"hell\", \"o\"]]}}";

static void tokenizer_json_imports_bpe_with_added_tokens(void)
{
    char path[4096];
    struct sl_err err = {0};
    struct sl_gguf *g = NULL;
    snprintf(path, sizeof path, "%s", t_tmp_path("tokenizer.json"));
    T_TRUE(write_text(path, k_tokenizer_json, sizeof k_tokenizer_json - 1));
    const char *paths[] = {path};
    char out[4096];
    snprintf(out, sizeof out, "%s", t_tmp_path("tj.gguf"));
    T_OK(sl_hf_tokenizer_convert(paths, 1, NULL, out, &err), &err);
    struct sl_vocab *v = err.code ? NULL : open_vocab(out, &g);
    if (v) {
        T_EQ_STR(sl_vocab_pre(v), "llama-bpe");
        T_EQ_INT(sl_vocab_n_tokens(v), 11);
        T_EQ_INT(sl_vocab_token_type(v, 9), SL_TOKEN_TYPE_CONTROL);
        T_EQ_INT(sl_vocab_token_type(v, 10), SL_TOKEN_TYPE_USER_DEFINED);
        const int32_t want[] = {7, 9, 10, 7};
        expect_ids(v, "hello<|im_end|><tool>hello", 26, false, true, want, 4);
        const int32_t want2[] = {7, 8, 4};
        expect_ids(v, "hello he", 8, false, false, want2, 3);
    }
    sl_vocab_free(v);
    sl_gguf_free(g);
    unlink(out);

    /* a split regex we cannot name: an error that says how to name it */
    static const char other[] =
        "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\w+\"}},"
        " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}";
    T_TRUE(write_text(path, other, sizeof other - 1));
    T_EQ_INT(sl_hf_tokenizer_convert(paths, 1, NULL, out, &err), SL_EUNSUPPORTED);
    T_TRUE(strstr(err.msg, "--pre") != NULL);
    T_OK(sl_hf_tokenizer_convert(paths, 1, "gpt-2", out, &err), &err);
    unlink(out);
    unlink(path);
}

static void importers_reject_malformed_files(void)
{
    char path[4096], out[4096];
    struct sl_err err = {0};
    const char *paths[] = {path};
    snprintf(path, sizeof path, "%s", t_tmp_path("tokenizer.model"));
    snprintf(out, sizeof out, "%s", t_tmp_path("bad.gguf"));

    static const char tiktoken[] = "IQ== 0\nIg== 1\nnot base64 at all\n";
    T_TRUE(write_text(path, tiktoken, sizeof tiktoken - 1));
    T_EQ_INT(sl_hf_tokenizer_convert(paths, 1, "llama-bpe", out, &err), SL_EFORMAT);
    T_TRUE(strstr(err.msg, ":3:") != NULL);

    static const char dup[] = "IQ== 0\nIQ== 0\n";
    T_TRUE(write_text(path, dup, sizeof dup - 1));
    T_EQ_INT(sl_hf_tokenizer_convert(paths, 1, "llama-bpe", out, &err), SL_EFORMAT);

    /* a piece message longer than the file, then a varint that never ends */
    static const char trunc[] = {0x0A, 0x05, 0x0A, 0x03, 'a'};
    T_TRUE(write_text(path, trunc, sizeof trunc));
    T_EQ_INT(sl_hf_tokenizer_convert(paths, 1, NULL, out, &err), SL_EFORMAT);
    char runaway[16];
    runaway[0] = 0x0A;
    memset(runaway + 1, 0xFF, sizeof runaway - 1);
    T_TRUE(write_text(path, runaway, sizeof runaway));
    T_EQ_INT(sl_hf_tokenizer_convert(paths, 1, NULL, out, &err), SL_EFORMAT);
    T_TRUE(strstr(err.msg, "sentencepiece") != NULL);

    /* a good minimal ModelProto: pieces "<unk>", "a" (score -1.5) */
    static const char good[] = {0x0A, 0x09, 0x0A, 0x05, '<',  'u',        'n',
                                'k',  '>',  0x18, 0x02, 0x0A, 0x08,       0x0A,
                                0x01, 'a',  0x15, 0x00, 0x00, (char)0xC0, (char)0xBF};
    T_TRUE(write_text(path, good, sizeof good));
    T_OK(sl_hf_tokenizer_convert(paths, 1, NULL, out, &err), &err);
    struct sl_gguf *g = NULL;
    struct sl_vocab *v = err.code ? NULL : open_vocab(out, &g);
    if (v) {
        T_EQ_INT(sl_vocab_n_tokens(v), 2);
        T_EQ_INT(sl_vocab_token_type(v, 0), SL_TOKEN_TYPE_UNKNOWN);
        T_NEAR(sl_vocab_token_score(v, 1), -1.5, 0);
    }
    sl_vocab_free(v);
    sl_gguf_free(g);

    const char *none[] = {"/nonexistent/tokenizer.json"};
    T_EQ_INT(sl_hf_tokenizer_convert(none, 1, NULL, out, &err), SL_EIO);
    const char *odd[] = {path};
    snprintf(path, sizeof path, "%s", t_tmp_path("weights.bin"));
    T_TRUE(write_text(path, "x", 1));
    T_EQ_INT(sl_hf_tokenizer_convert(odd, 1, NULL, out, &err), SL_EINVAL);
    unlink(path);
    unlink(out);
}

int main(void)
{
    T_RUN(llama_spm_vocab_matches_llamacpp_vectors);
    T_RUN(phi3_vocab_matches_llamacpp_vectors);
    T_RUN(gpt2_vocab_matches_llamacpp_vectors);
    T_RUN(stories260k_prompt_encodes_like_llamacpp);
    T_RUN(llama_bpe_from_tiktoken_matches_llamacpp_vectors);
    T_RUN(qwen2_from_vocab_json_matches_llamacpp_vectors);
    T_RUN(llama2_sentencepiece_model_matches_ggml_vocab);
    T_RUN(mistral_sentencepiece_models_import_and_round_trip);
    T_RUN(spm_merges_by_score_and_falls_back_to_bytes);
    T_RUN(spm_parses_special_tokens_only_when_asked);
    T_RUN(spm_keeps_invalid_utf8_as_byte_tokens);
    T_RUN(empty_input_gives_no_tokens_or_only_bos);
    T_RUN(input_past_the_limit_is_a_range_error);
    T_RUN(bpe_merges_by_rank_within_pretokens);
    T_RUN(bpe_turns_invalid_utf8_into_replacement_characters);
    T_RUN(unsupported_models_and_pretokenizers_are_rejected);
    T_RUN(pretokenizers_split_like_their_regexes);
    T_RUN(tokenizer_json_imports_bpe_with_added_tokens);
    T_RUN(importers_reject_malformed_files);
    return t_done();
}
