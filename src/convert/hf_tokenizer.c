/*
 * hf_tokenizer.c - Hugging Face / Meta tokenizer files to GGUF tokenizer
 * metadata (convert layer; jansson for JSON).
 *
 * What convert_hf_to_gguf.py does, in C:
 *   - byte-level BPE (tokenizer.json, or vocab.json + merges.txt): tokens as
 *     in the vocab, added tokens raw and typed CONTROL when special (or
 *     looking special, "<|...|>"), USER_DEFINED otherwise, holes filled
 *     with "[PADn]" UNUSED; merges copied; the pre-tokenizer named from the
 *     tokenizer's split regex (or its class name) unless given.
 *   - tiktoken ranks (Llama 3): token i is the byte-level spelling of the
 *     bytes of rank i; the merge for each token is recovered by running BPE
 *     on its bytes with the ranks below its own (tiktoken's bpe()).
 *   - sentencepiece ModelProto: pieces, scores, types (USER_DEFINED pieces
 *     become NORMAL, as in the script), trainer ids, add_dummy_prefix.
 *   - tokenizer_config.json / config.json: special ids, add_bos/eos, chat
 *     template, added_tokens_decoder.
 *
 * Banners: files; token table; config; importers; detection and entry.
 */
#include "hf_tokenizer.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/tok_unicode.h"

/* ------------------------------------------------------------------------ */
/* files                                                                     */
/* ------------------------------------------------------------------------ */

static int read_file(const char *path, char **out, size_t *len, struct sl_err *err)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    char *buf = NULL;
    *out = NULL;
    if (!f) return sl_err_set(err, SL_EIO, "cannot open '%s'", path);
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return sl_err_set(err, SL_EIO, "'%s' is not a regular file", path);
    }
    if ((uint64_t)st.st_size > SL_HF_MAX_FILE) {
        fclose(f);
        return sl_err_set(err, SL_ERANGE, "'%s' is %lld bytes, past the limit of %u", path,
                          (long long)st.st_size, SL_HF_MAX_FILE);
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        fclose(f);
        return sl_err_set(err, SL_ENOMEM, "out of memory reading '%s'", path);
    }
    if (fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        free(buf);
        fclose(f);
        return sl_err_set(err, SL_EIO, "cannot read '%s'", path);
    }
    fclose(f);
    buf[st.st_size] = 0;
    *out = buf;
    *len = (size_t)st.st_size;
    return 0;
}

/* A non-negative integral number below 2^53 (ids, sizes); -1 otherwise. */
static int64_t json_id(const json_t *j)
{
    double d;
    if (json_is_integer(j)) return json_integer_value(j) >= 0 ? (int64_t)json_integer_value(j) : -1;
    if (!json_is_real(j)) return -1;
    d = json_real_value(j);
    if (!(d >= 0 && d < 9007199254740992.0) || d != (double)(int64_t)d) return -1;
    return (int64_t)d;
}

static int load_json(const char *path, json_t **out, struct sl_err *err)
{
    char *buf;
    size_t len;
    json_error_t je;
    int rc = read_file(path, &buf, &len, err);
    *out = NULL;
    if (rc) return rc;
    /* numbers as doubles: tokenizer_config.json holds integers past 64 bits
     * (model_max_length 1e30); ids are read back with json_id() */
    *out = json_loadb(buf, len, JSON_DECODE_INT_AS_REAL, &je);
    free(buf);
    if (!*out)
        return sl_err_set(err, SL_EFORMAT, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* token table                                                               */
/* ------------------------------------------------------------------------ */

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

struct toks {
    char **text;
    size_t *len;
    float *score;
    int32_t *type;
    size_t n, cap;
};

static void toks_free(struct toks *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->text[i]);
    free(t->text);
    free(t->len);
    free(t->score);
    free(t->type);
    memset(t, 0, sizeof *t);
}

static int toks_grow(struct toks *t, size_t n)
{
    if (n > SL_HF_MAX_TOKENS) return SL_ERANGE;
    if (n > t->cap) {
        size_t cap = t->cap ? t->cap : 1024;
        while (cap < n)
            cap *= 2;
        char **tx = realloc(t->text, cap * sizeof *tx);
        if (tx) t->text = tx;
        size_t *ln = realloc(t->len, cap * sizeof *ln);
        if (ln) t->len = ln;
        float *sc = realloc(t->score, cap * sizeof *sc);
        if (sc) t->score = sc;
        int32_t *ty = realloc(t->type, cap * sizeof *ty);
        if (ty) t->type = ty;
        if (!tx || !ln || !sc || !ty) return SL_ENOMEM;
        t->cap = cap;
    }
    for (size_t i = t->n; i < n; i++) {
        t->text[i] = NULL;
        t->len[i] = 0;
        t->score[i] = -10000.0f; /* the script's default for holes */
        t->type[i] = TT_UNUSED;
    }
    if (n > t->n) t->n = n;
    return 0;
}

/* Set token id (growing the table); copies s. */
static int toks_set(struct toks *t, size_t id, const char *s, size_t len, float score, int32_t type)
{
    int rc = toks_grow(t, id + 1);
    if (rc) return rc;
    char *c = malloc(len + 1);
    if (!c) return SL_ENOMEM;
    memcpy(c, s, len);
    c[len] = 0;
    free(t->text[id]);
    t->text[id] = c;
    t->len[id] = len;
    t->score[id] = score;
    t->type[id] = type;
    return 0;
}

/* Holes become "[PADn]" UNUSED. */
static int toks_fill(struct toks *t)
{
    char buf[32];
    for (size_t i = 0; i < t->n; i++) {
        if (t->text[i]) continue;
        int n = snprintf(buf, sizeof buf, "[PAD%zu]", i);
        float score = t->score[i];
        if (toks_set(t, i, buf, (size_t)n, score, TT_UNUSED)) return SL_ENOMEM;
    }
    return 0;
}

static int64_t toks_find(const struct toks *t, const char *s)
{
    size_t len = strlen(s);
    for (size_t i = t->n; i-- > 0;)
        if (t->text[i] && t->len[i] == len && memcmp(t->text[i], s, len) == 0) return (int64_t)i;
    return -1;
}

/* convert_hf_to_gguf's does_token_look_special() */
static bool looks_special(const char *s)
{
    size_t n = strlen(s);
    if (!strcmp(s, "<pad>") || !strcmp(s, "<mask>") || !strcmp(s, "<2mass>") ||
        !strcmp(s, "[@BOS@]"))
        return true;
    if (n >= 4 && !strncmp(s, "<|", 2) && !strcmp(s + n - 2, "|>")) return true;
    if (n >= 8 && !strncmp(s, "<\xef\xbd\x9c", 4) && !strcmp(s + n - 4, "\xef\xbd\x9c>"))
        return true;
    if (n >= 8 && !strncmp(s, "<unused", 7) && s[n - 1] == '>') return true;
    return false;
}

/* "▁" -> " " (the script pre-normalizes user-defined tokens so). */
static char *unescape_spaces(const char *s, size_t *len)
{
    size_t n = strlen(s), k = 0;
    char *o = malloc(n + 1);
    if (!o) return NULL;
    for (size_t i = 0; i < n;) {
        if (i + 3 <= n && !memcmp(s + i, "\xe2\x96\x81", 3)) {
            o[k++] = ' ';
            i += 3;
        } else {
            o[k++] = s[i++];
        }
    }
    o[k] = 0;
    *len = k;
    return o;
}

/* An added token: CONTROL if special or looking special, else USER_DEFINED
 * with "▁" turned into spaces. */
static int toks_set_added(struct toks *t, size_t id, const char *content, bool special, float score)
{
    if (special || looks_special(content))
        return toks_set(t, id, content, strlen(content), score, TT_CONTROL);
    size_t len;
    char *u = unescape_spaces(content, &len);
    if (!u) return SL_ENOMEM;
    int rc = toks_set(t, id, u, len, score, TT_USER);
    free(u);
    return rc;
}

/* Bytes -> GPT-2 byte-level text (malloc'd, NUL-terminated). */
static char *byte_level(const uint8_t *b, size_t n, size_t *out_len)
{
    char *o = malloc(2 * n + 1);
    size_t k = 0;
    if (!o) return NULL;
    for (size_t i = 0; i < n; i++)
        k += sl_utf8_encode(sl_bpe_byte_to_cpt(b[i]), o + k);
    o[k] = 0;
    *out_len = k;
    return o;
}

static int toks_oom_or(int rc, struct sl_err *err, const char *what)
{
    if (rc == SL_ERANGE)
        return sl_err_set(err, SL_ERANGE, "%s: more than %u tokens", what, SL_HF_MAX_TOKENS);
    return sl_err_set(err, SL_ENOMEM, "%s: out of memory", what);
}

/* ------------------------------------------------------------------------ */
/* config                                                                    */
/* ------------------------------------------------------------------------ */

struct cfg {
    json_t *tc; /* tokenizer_config.json or NULL */
    json_t *c;  /* config.json or NULL */
};

/* A token given as "text" or {"content": "text"}; NULL otherwise. */
static const char *token_str(const json_t *j)
{
    if (json_is_string(j)) return json_string_value(j);
    if (json_is_object(j)) return json_string_value(json_object_get(j, "content"));
    return NULL;
}

/* tokenizer_config.json added_tokens_decoder: {"id": {"content", "special"}} */
static int apply_added_decoder(struct toks *t, const struct cfg *cfg, bool spm, struct sl_err *err)
{
    json_t *dec = cfg->tc ? json_object_get(cfg->tc, "added_tokens_decoder") : NULL;
    const char *key;
    json_t *val;
    if (!json_is_object(dec)) return 0;
    json_object_foreach(dec, key, val)
    {
        char *end;
        unsigned long id = strtoul(key, &end, 10);
        const char *content = json_string_value(json_object_get(val, "content"));
        if (*end || !content || id >= SL_HF_MAX_TOKEN_ID)
            return sl_err_set(err, SL_EFORMAT,
                              "tokenizer_config.json: added_tokens_decoder entry '%s' needs a "
                              "numeric id below %u and a \"content\" string",
                              key, SL_HF_MAX_TOKEN_ID);
        if (spm && id >= t->n) continue; /* the script ignores ids past the model */
        int rc = toks_set_added(t, id, content, json_is_true(json_object_get(val, "special")),
                                spm ? -1000.0f : 0.0f);
        if (rc) return toks_oom_or(rc, err, "tokenizer_config.json");
    }
    return 0;
}

static int set_id(struct sl_gguf_writer *w, const char *key, int64_t id, size_t n, bool *done)
{
    if (*done || id < 0 || (uint64_t)id >= n) return 0;
    *done = true;
    return sl_gguf_set_u32(w, key, (uint32_t)id);
}

/* First integer of an int or a list of ints; -1 if neither. */
static int64_t json_first_int(const json_t *j)
{
    if (json_is_array(j)) j = json_array_get(j, 0);
    return json_id(j);
}

/* Special ids (tokenizer_config.json first, then config.json, then the
 * defaults passed in), add_bos/eos and the chat template. */
static int set_config(struct sl_gguf_writer *w, const struct toks *t, const struct cfg *cfg,
                      const int64_t defaults[5], struct sl_err *err)
{
    static const char *const names[5] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                         "pad_token"};
    static const char *const keys[5] = {
        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.seperator_token_id",
        "tokenizer.ggml.padding_token_id"};
    static const char *const cfg_keys[5] = {"bos_token_id", "eos_token_id", NULL, NULL,
                                            "pad_token_id"};
    bool done[5] = {0};
    int rc = 0;
    for (int k = 0; k < 5 && !rc; k++) {
        const char *s = cfg->tc ? token_str(json_object_get(cfg->tc, names[k])) : NULL;
        if (s) rc = set_id(w, keys[k], toks_find(t, s), t->n, &done[k]);
        if (!rc && cfg->c && cfg_keys[k])
            rc = set_id(w, keys[k], json_first_int(json_object_get(cfg->c, cfg_keys[k])), t->n,
                        &done[k]);
        if (!rc && defaults) rc = set_id(w, keys[k], defaults[k], t->n, &done[k]);
    }
    if (rc) return sl_err_set(err, SL_ENOMEM, "tokenizer config: out of memory");
    if (!cfg->tc) return 0;
    json_t *b = json_object_get(cfg->tc, "add_bos_token");
    if (json_is_boolean(b))
        rc |= sl_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", json_is_true(b));
    b = json_object_get(cfg->tc, "add_eos_token");
    if (json_is_boolean(b))
        rc |= sl_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", json_is_true(b));
    json_t *ct = json_object_get(cfg->tc, "chat_template");
    if (json_is_string(ct)) {
        rc |= sl_gguf_set_str(w, "tokenizer.chat_template", json_string_value(ct));
    } else if (json_is_array(ct)) {
        size_t i;
        json_t *e;
        json_array_foreach(ct, i, e)
        {
            const char *name = json_string_value(json_object_get(e, "name"));
            const char *tmpl = json_string_value(json_object_get(e, "template"));
            char key[256];
            if (!name || !tmpl) continue;
            if (!strcmp(name, "default"))
                snprintf(key, sizeof key, "tokenizer.chat_template");
            else
                snprintf(key, sizeof key, "tokenizer.chat_template.%s", name);
            rc |= sl_gguf_set_str(w, key, tmpl);
        }
    }
    if (rc) return sl_err_set(err, SL_ENOMEM, "tokenizer config: out of memory");
    return 0;
}

/* ------------------------------------------------------------------------ */
/* writing                                                                   */
/* ------------------------------------------------------------------------ */

static int write_tokens(struct sl_gguf_writer *w, const char *model, const char *pre,
                        const struct toks *t, bool scores, const char *const *merges,
                        const size_t *merge_len, size_t n_merges, struct sl_err *err)
{
    int rc = sl_gguf_set_str(w, "tokenizer.ggml.model", model);
    rc = rc ? rc : sl_gguf_set_str(w, "tokenizer.ggml.pre", pre);
    rc = rc ? rc
            : sl_gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)t->text, t->len,
                                  t->n);
    if (!rc && scores)
        rc = sl_gguf_set_arr(w, "tokenizer.ggml.scores", SL_GGUF_FLOAT32, t->score, t->n);
    rc = rc ? rc : sl_gguf_set_arr(w, "tokenizer.ggml.token_type", SL_GGUF_INT32, t->type, t->n);
    if (!rc && merges)
        rc = sl_gguf_set_arr_str(w, "tokenizer.ggml.merges", merges, merge_len, n_merges);
    if (rc) return sl_err_set(err, rc, "gguf writer: out of memory for the vocabulary");
    return 0;
}

/* ------------------------------------------------------------------------ */
/* byte-level BPE: tokenizer.json and vocab.json + merges.txt                */
/* ------------------------------------------------------------------------ */

static const char k_re_llama3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char k_re_qwen2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char k_re_o200k[] =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'"
    "s|'"
    "t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{"
    "Lm}"
    "\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/"
    "]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char k_re_tekken[] =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^"
    "\\r\\n"
    "\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* What a tokenizer.json pre_tokenizer says about the split. */
struct pre_info {
    const char *regex[4]; /* Split patterns, in order */
    int n_regex;
    bool byte_level_regex; /* ByteLevel with use_regex (GPT-2's regex) */
    bool digits;           /* Digits(individual_digits) */
};

static void pre_scan(const json_t *p, struct pre_info *pi)
{
    const char *type = json_string_value(json_object_get(p, "type"));
    if (!type) return;
    if (!strcmp(type, "Sequence")) {
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(p, "pretokenizers"), i, e) pre_scan(e, pi);
    } else if (!strcmp(type, "Split")) {
        const char *re = json_string_value(json_object_get(json_object_get(p, "pattern"), "Regex"));
        if (re && pi->n_regex < 4) pi->regex[pi->n_regex++] = re;
    } else if (!strcmp(type, "ByteLevel")) {
        json_t *u = json_object_get(p, "use_regex");
        if (!u || json_is_true(u)) pi->byte_level_regex = true;
    } else if (!strcmp(type, "Digits")) {
        if (json_is_true(json_object_get(p, "individual_digits"))) pi->digits = true;
    }
}

/* Name the pre-tokenizer from tokenizer.json's pre_tokenizer (llama.cpp's
 * script hashes the tokenization of a probe text; we read the regex). */
static const char *guess_pre_json(const json_t *tj, const struct cfg *cfg)
{
    struct pre_info pi = {0};
    const json_t *p = json_object_get(tj, "pre_tokenizer");
    if (json_is_object(p)) pre_scan(p, &pi);
    if (pi.n_regex == 1) {
        if (!strcmp(pi.regex[0], k_re_llama3)) return "llama-bpe";
        if (!strcmp(pi.regex[0], k_re_qwen2)) return "qwen2";
        if (!strcmp(pi.regex[0], k_re_o200k)) return "gpt-4o";
        if (!strcmp(pi.regex[0], k_re_tekken)) return "tekken";
    }
    if (pi.n_regex >= 2 && !strcmp(pi.regex[0], "[\r\n]")) {
        if (!strcmp(pi.regex[1], "\\s?\\p{L}+")) return "deepseek-coder";
        if (!strncmp(pi.regex[1], "\\s?[A-Za-z", 10)) return "deepseek-llm";
    }
    if (pi.n_regex == 0 && pi.byte_level_regex) {
        if (!pi.digits) return "gpt-2";
        json_t *c = cfg->tc ? json_object_get(cfg->tc, "clean_up_tokenization_spaces") : NULL;
        return json_is_false(c) ? "smollm" : "starcoder";
    }
    return NULL;
}

static const char *guess_pre_class(const struct cfg *cfg)
{
    const char *cls =
        cfg->tc ? json_string_value(json_object_get(cfg->tc, "tokenizer_class")) : NULL;
    if (!cls) return NULL;
    if (!strncmp(cls, "Qwen2Tokenizer", 14)) return "qwen2";
    if (!strncmp(cls, "GPT2Tokenizer", 13)) return "gpt-2";
    return NULL;
}

/* Token table from a {"token": id} object. */
static int vocab_from_object(struct toks *t, json_t *vocab, const char *what, struct sl_err *err)
{
    const char *key;
    json_t *val;
    if (!json_is_object(vocab))
        return sl_err_set(err, SL_EFORMAT, "%s: the vocabulary should be a {\"token\": id} object",
                          what);
    json_object_foreach(vocab, key, val)
    {
        int64_t id = json_id(val);
        if (id < 0 || id >= (int64_t)SL_HF_MAX_TOKEN_ID)
            return sl_err_set(err, SL_EFORMAT, "%s: token '%.64s' has id %lld; ids are 0..%u", what,
                              key, (long long)id, SL_HF_MAX_TOKEN_ID - 1);
        int rc = toks_set(t, (size_t)id, key, strlen(key), 0.0f, TT_NORMAL);
        if (rc) return toks_oom_or(rc, err, what);
    }
    return 0;
}

/* Pad to config.json's vocab_size when it is larger. */
static int pad_to_config(struct toks *t, const struct cfg *cfg, struct sl_err *err)
{
    json_t *vs = cfg->c ? json_object_get(cfg->c, "vocab_size") : NULL;
    int64_t n = json_id(vs);
    if (n > (int64_t)t->n && n <= (int64_t)SL_HF_MAX_TOKENS) {
        int rc = toks_grow(t, (size_t)n);
        if (rc) return toks_oom_or(rc, err, "config.json vocab_size");
    }
    return 0;
}

static void bpe_scores_zero(struct toks *t)
{
    for (size_t i = 0; i < t->n; i++)
        t->score[i] = 0.0f;
}

static int import_tokenizer_json(struct sl_gguf_writer *w, const char *path, const struct cfg *cfg,
                                 const char *pre, struct sl_err *err)
{
    json_t *tj = NULL;
    struct toks t = {0};
    const char **merges = NULL;
    size_t *mlen = NULL, n_merges = 0, nm = 0;
    char **owned = NULL;
    int rc = load_json(path, &tj, err);
    if (rc) return rc;

    const json_t *model = json_object_get(tj, "model");
    const char *type = json_string_value(json_object_get(model, "type"));
    if (!type || strcmp(type, "BPE") != 0) {
        rc = sl_err_set(err, SL_EUNSUPPORTED, "%s: model type '%s' is not supported (only BPE)",
                        path, type ? type : "?");
        goto out; /* WordPiece, Unigram, ... */
    }
    if (json_is_true(json_object_get(model, "byte_fallback"))) {
        rc = sl_err_set(err, SL_EUNSUPPORTED,
                        "%s: a sentencepiece-style BPE (byte_fallback); convert its "
                        "tokenizer.model instead",
                        path);
        goto out; /* Llama 2 / Mistral style tokenizer.json */
    }
    if (!pre && !(pre = guess_pre_json(tj, cfg)) && !(pre = guess_pre_class(cfg))) {
        rc = sl_err_set(err, SL_EUNSUPPORTED,
                        "%s: cannot tell the pre-tokenizer from its pre_tokenizer section; name "
                        "it (e.g. --pre llama-bpe, qwen2, gpt-2, smollm, deepseek-llm)",
                        path);
        goto out; /* unknown split regex */
    }
    if ((rc = vocab_from_object(&t, json_object_get(model, "vocab"), path, err))) goto out;

    /* merges: "a b" strings or ["a", "b"] pairs */
    const json_t *jm = json_object_get(model, "merges");
    nm = json_array_size(jm);
    merges = calloc(nm ? nm : 1, sizeof *merges);
    mlen = calloc(nm ? nm : 1, sizeof *mlen);
    owned = calloc(nm ? nm : 1, sizeof *owned);
    if (!merges || !mlen || !owned) goto oom;
    for (size_t i = 0; i < nm; i++) {
        const json_t *e = json_array_get(jm, i);
        if (json_is_string(e)) {
            merges[i] = json_string_value(e);
            mlen[i] = json_string_length(e);
        } else if (json_is_array(e) && json_array_size(e) == 2 &&
                   json_is_string(json_array_get(e, 0)) && json_is_string(json_array_get(e, 1))) {
            const json_t *a = json_array_get(e, 0), *b = json_array_get(e, 1);
            size_t la = json_string_length(a), lb = json_string_length(b);
            if (!(owned[i] = malloc(la + lb + 2))) goto oom;
            memcpy(owned[i], json_string_value(a), la);
            owned[i][la] = ' ';
            memcpy(owned[i] + la + 1, json_string_value(b), lb);
            owned[i][la + lb + 1] = 0;
            merges[i] = owned[i];
            mlen[i] = la + lb + 1;
        } else {
            rc = sl_err_set(err, SL_EFORMAT, "%s: merge %zu should be \"a b\" or [\"a\", \"b\"]",
                            path, i);
            goto out; /* bad merge */
        }
        n_merges++;
    }

    /* added tokens, then tokenizer_config's decoder (same ids, same rule) */
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(tj, "added_tokens"), i, e)
    {
        int64_t id = json_id(json_object_get(e, "id"));
        const char *content = json_string_value(json_object_get(e, "content"));
        if (!content || id < 0 || id >= (int64_t)SL_HF_MAX_TOKEN_ID) {
            rc = sl_err_set(err, SL_EFORMAT, "%s: added_tokens[%zu] needs an id and a content",
                            path, i);
            goto out; /* bad added token */
        }
        if ((rc = toks_set_added(&t, (size_t)id, content,
                                 json_is_true(json_object_get(e, "special")), 0.0f))) {
            rc = toks_oom_or(rc, err, path);
            goto out;
        }
    }
    if ((rc = apply_added_decoder(&t, cfg, false, err))) goto out;
    if ((rc = pad_to_config(&t, cfg, err))) goto out;
    if (toks_fill(&t)) goto oom;
    bpe_scores_zero(&t);
    if ((rc = write_tokens(w, "gpt2", pre, &t, false, merges, mlen, n_merges, err))) goto out;
    rc = set_config(w, &t, cfg, NULL, err);
    goto out;
oom:
    rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", path);
out:
    if (owned)
        for (size_t k = 0; k < nm; k++)
            free(owned[k]);
    free(owned);
    free(merges);
    free(mlen);
    toks_free(&t);
    json_decref(tj);
    return rc;
}

/* Lines of merges.txt (a "#version" first line is skipped). The strings
 * point into buf, which is modified. */
static int split_merges(char *buf, size_t len, const char ***out, size_t **out_len, size_t *n,
                        const char *path, struct sl_err *err)
{
    size_t cap = 1024, k = 0;
    const char **m = malloc(cap * sizeof *m);
    size_t *ml = malloc(cap * sizeof *ml);
    char *p = buf, *end = buf + len;
    if (!m || !ml) goto oom;
    for (size_t line = 0; p < end; line++) {
        char *e = memchr(p, '\n', (size_t)(end - p));
        size_t l = e ? (size_t)(e - p) : (size_t)(end - p);
        if (l && p[l - 1] == '\r') l--;
        p[l] = 0;
        if (l && !(line == 0 && !strncmp(p, "#version", 8))) {
            if (!memchr(p + 1, ' ', l - 1)) {
                free(m);
                free(ml);
                return sl_err_set(err, SL_EFORMAT, "%s:%zu: a merge should be \"a b\"", path,
                                  line + 1);
            }
            if (k == cap) {
                cap *= 2;
                const char **nm = realloc(m, cap * sizeof *nm);
                if (nm) m = nm;
                size_t *nl = realloc(ml, cap * sizeof *nl);
                if (nl) ml = nl;
                if (!nm || !nl) goto oom;
            }
            m[k] = p;
            ml[k++] = l;
        }
        p = e ? e + 1 : end;
    }
    *out = m;
    *out_len = ml;
    *n = k;
    return 0;
oom:
    free(m);
    free(ml);
    return sl_err_set(err, SL_ENOMEM, "%s: out of memory", path);
}

static int import_vocab_merges(struct sl_gguf_writer *w, const struct sl_hf_files *f,
                               const struct cfg *cfg, const char *pre, struct sl_err *err)
{
    json_t *vj = NULL;
    struct toks t = {0};
    char *mbuf = NULL;
    const char **merges = NULL;
    size_t mlen_total = 0, *mlen = NULL, n_merges = 0;
    int rc;

    if (!pre && !(pre = guess_pre_class(cfg)))
        return sl_err_set(err, SL_EUNSUPPORTED,
                          "%s: cannot tell the pre-tokenizer without a tokenizer_config.json "
                          "naming the tokenizer class; name it (e.g. --pre qwen2 or gpt-2)",
                          f->vocab_json);
    if ((rc = load_json(f->vocab_json, &vj, err))) return rc;
    if ((rc = vocab_from_object(&t, vj, f->vocab_json, err))) goto out;
    if ((rc = read_file(f->merges_txt, &mbuf, &mlen_total, err))) goto out;
    if ((rc = split_merges(mbuf, mlen_total, &merges, &mlen, &n_merges, f->merges_txt, err)))
        goto out;
    if ((rc = apply_added_decoder(&t, cfg, false, err))) goto out;
    if ((rc = pad_to_config(&t, cfg, err))) goto out;
    if (toks_fill(&t)) {
        rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", f->vocab_json);
        goto out;
    }
    bpe_scores_zero(&t);
    if ((rc = write_tokens(w, "gpt2", pre, &t, false, merges, mlen, n_merges, err))) goto out;
    rc = set_config(w, &t, cfg, NULL, err);
out:
    free(merges);
    free(mlen);
    free(mbuf);
    toks_free(&t);
    json_decref(vj);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* tiktoken                                                                  */
/* ------------------------------------------------------------------------ */

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Decode standard base64 s[0..n) into out (room for 3n/4); -1 if bad. */
static long b64_decode(const char *s, size_t n, uint8_t *out)
{
    size_t k = 0;
    unsigned acc = 0, bits = 0;
    while (n && s[n - 1] == '=')
        n--;
    for (size_t i = 0; i < n; i++) {
        int v = b64val((unsigned char)s[i]);
        if (v < 0) return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[k++] = (uint8_t)(acc >> bits);
        }
    }
    return (long)k;
}

/* Byte strings -> rank, open addressing. */
struct rankmap {
    const uint8_t **key;
    size_t *klen;
    uint32_t *slot; /* rank + 1 */
    size_t mask;
};

static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h ^ (h >> 31);
}

static int64_t rank_get(const struct rankmap *m, const uint8_t *p, size_t n)
{
    size_t h = (size_t)hash_bytes(p, n) & m->mask;
    for (;;) {
        uint32_t s = m->slot[h];
        if (!s) return -1;
        if (m->klen[s - 1] == n && !memcmp(m->key[s - 1], p, n)) return s - 1;
        h = (h + 1) & m->mask;
    }
}

struct split {
    int64_t rl, rr; /* ranks of the two halves */
    size_t at;      /* the left half's length */
};

static int cmp_split(const void *a, const void *b)
{
    const struct split *x = a, *y = b;
    if (x->rl != y->rl) return x->rl < y->rl ? -1 : 1;
    return x->rr < y->rr ? -1 : x->rr > y->rr;
}

static int import_tiktoken(struct sl_gguf_writer *w, const char *path, const char *buf, size_t len,
                           const struct cfg *cfg, const char *pre, struct sl_err *err)
{
    struct toks t = {0};
    struct rankmap m = {0};
    uint8_t *bytes = NULL; /* all decoded tokens, back to back */
    size_t n = 0, nb = 0, line = 0, maxlen = 0;
    struct split *sp = NULL;
    char **merges = NULL;
    size_t *mlen = NULL, n_merges = 0;
    int rc = 0;

    /* count lines for the tables */
    for (size_t i = 0; i < len; i++)
        n += buf[i] == '\n';
    n += len && buf[len - 1] != '\n';
    if (n > SL_HF_MAX_TOKENS)
        return sl_err_set(err, SL_ERANGE, "%s: %zu ranks, past the limit of %u", path, n,
                          SL_HF_MAX_TOKENS);
    bytes = malloc(len + 1);
    m.key = calloc(n + 1, sizeof *m.key);
    m.klen = calloc(n + 1, sizeof *m.klen);
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    m.slot = calloc(cap, sizeof *m.slot);
    m.mask = cap - 1;
    if (!bytes || !m.key || !m.klen || !m.slot) goto oom;

    /* "base64 rank" per line; rank r is token id r */
    size_t count = 0;
    for (const char *p = buf, *end = buf + len; p < end; line++) {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        const char *le = e ? e : end, *blank = memchr(p, ' ', (size_t)(le - p));
        char *re;
        if (le == p) {
            p = le + 1;
            continue;
        }
        unsigned long r = blank ? strtoul(blank + 1, &re, 10) : 0;
        long k = blank ? b64_decode(p, (size_t)(blank - p), bytes + nb) : -1;
        if (!blank || k <= 0 || r >= n || (re != le && !(re + 1 == le && *re == '\r')) ||
            m.key[r]) {
            rc = sl_err_set(err, SL_EFORMAT,
                            "%s:%zu: expected \"<base64 token> <rank>\" with a new rank below %zu",
                            path, line + 1, n);
            goto out; /* bad line */
        }
        m.key[r] = bytes + nb;
        m.klen[r] = (size_t)k;
        nb += (size_t)k;
        maxlen = (size_t)k > maxlen ? (size_t)k : maxlen;
        size_t h = (size_t)hash_bytes(m.key[r], (size_t)k) & m.mask;
        while (m.slot[h])
            h = (h + 1) & m.mask;
        m.slot[h] = (uint32_t)r + 1;
        count++;
        p = le + (e != NULL);
    }
    for (size_t r = 0; r < count; r++)
        if (!m.key[r]) {
            rc = sl_err_set(err, SL_EFORMAT, "%s: rank %zu is missing", path, r);
            goto out; /* ranks must be 0..count-1 */
        }

    /* Tokens, and merges as transformers' TikTokenConverter makes them:
     * every split of a token into two tokens, ordered by the token's rank,
     * then by the halves' ranks. A rank-ordered merge list then merges
     * exactly what tiktoken's byte-pair loop merges. */
    size_t cap_merges = 2 * count + 16;
    sp = malloc((maxlen + 1) * sizeof *sp);
    merges = calloc(cap_merges, sizeof *merges);
    mlen = calloc(cap_merges, sizeof *mlen);
    if (!sp || !merges || !mlen || toks_grow(&t, count)) goto oom;
    for (size_t r = 0; r < count; r++) {
        size_t l, ns = 0;
        const uint8_t *tok = m.key[r];
        if (!(t.text[r] = byte_level(tok, m.klen[r], &l))) goto oom;
        t.len[r] = l;
        t.type[r] = TT_NORMAL;
        t.score[r] = 0.0f;
        for (size_t i = 1; i < m.klen[r]; i++) {
            int64_t a = rank_get(&m, tok, i), b = rank_get(&m, tok + i, m.klen[r] - i);
            if (a >= 0 && b >= 0) sp[ns++] = (struct split){a, b, i};
        }
        qsort(sp, ns, sizeof *sp, cmp_split);
        for (size_t k = 0; k < ns; k++) {
            size_t la, lb;
            if (n_merges == cap_merges) {
                char **nm = realloc(merges, 2 * cap_merges * sizeof *nm);
                if (!nm) goto oom;
                merges = nm;
                size_t *nl = realloc(mlen, 2 * cap_merges * sizeof *nl);
                if (!nl) goto oom;
                mlen = nl;
                cap_merges *= 2;
            }
            char *x = byte_level(tok, sp[k].at, &la);
            char *y = byte_level(tok + sp[k].at, m.klen[r] - sp[k].at, &lb);
            char *mg = x && y ? malloc(la + lb + 2) : NULL;
            if (mg) {
                memcpy(mg, x, la);
                mg[la] = ' ';
                memcpy(mg + la + 1, y, lb);
                mg[la + lb + 1] = 0;
                merges[n_merges] = mg;
                mlen[n_merges++] = la + lb + 1;
            }
            free(x);
            free(y);
            if (!mg) goto oom;
        }
    }
    if ((rc = apply_added_decoder(&t, cfg, false, err))) goto out;
    if ((rc = pad_to_config(&t, cfg, err))) goto out;
    if (toks_fill(&t)) goto oom;
    bpe_scores_zero(&t);
    if (!pre)
        pre = count == 128000 ? "llama-bpe" : count >= 199990 && count <= 200000 ? "gpt-4o" : NULL;
    if (!pre) {
        rc = sl_err_set(err, SL_EUNSUPPORTED,
                        "%s: %zu ranks is not a tiktoken file we know (Llama 3 has 128000); "
                        "name the pre-tokenizer (e.g. --pre llama-bpe)",
                        path, count);
        goto out; /* unknown tiktoken */
    }
    if ((rc = write_tokens(w, "gpt2", pre, &t, false, (const char *const *)merges, mlen, n_merges,
                           err)))
        goto out;
    rc = set_config(w, &t, cfg, NULL, err);
    goto out;
oom:
    rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", path);
out:
    if (merges)
        for (size_t i = 0; i < n_merges; i++)
            free(merges[i]);
    free(merges);
    free(mlen);
    free(sp);
    free(bytes);
    free(m.key);
    free(m.klen);
    free(m.slot);
    toks_free(&t);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* sentencepiece ModelProto                                                  */
/* ------------------------------------------------------------------------ */

/* A bounds-checked protobuf reader over [p, end). */
struct pb {
    const uint8_t *p, *end;
};

static bool pb_varint(struct pb *b, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (b->p >= b->end) return false;
        uint8_t c = *b->p++;
        x |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return true;
        }
    }
    return false; /* more than 10 bytes */
}

/* Next field: number and wire type; false at the end or on a bad tag. */
static bool pb_tag(struct pb *b, uint32_t *field, unsigned *wt)
{
    uint64_t t;
    if (b->p >= b->end || !pb_varint(b, &t) || (t >> 3) == 0 || (t >> 3) > UINT32_MAX) return false;
    *field = (uint32_t)(t >> 3);
    *wt = (unsigned)(t & 7);
    return true;
}

/* A length-delimited payload as a sub-reader. */
static bool pb_bytes(struct pb *b, struct pb *sub)
{
    uint64_t n;
    if (!pb_varint(b, &n) || n > (uint64_t)(b->end - b->p)) return false;
    sub->p = b->p;
    sub->end = b->p + n;
    b->p += n;
    return true;
}

static bool pb_skip(struct pb *b, unsigned wt)
{
    uint64_t v;
    struct pb sub;
    switch (wt) {
    case 0:
        return pb_varint(b, &v);
    case 1:
        if (b->end - b->p < 8) return false;
        b->p += 8;
        return true;
    case 2:
        return pb_bytes(b, &sub);
    case 5:
        if (b->end - b->p < 4) return false;
        b->p += 4;
        return true;
    }
    return false; /* groups (3, 4) and unknown wire types */
}

struct spm_meta {
    int64_t id[4];        /* unk, bos, eos, pad (TrainerSpec 40..43) */
    int add_dummy_prefix; /* -1 = absent */
    int model_type;
};

static int spm_piece(struct pb *b, struct toks *t, size_t id, const char *path, struct sl_err *err)
{
    const uint8_t *s = NULL;
    size_t len = 0;
    float score = 0.0f;
    uint64_t type = TT_NORMAL;
    uint32_t field;
    unsigned wt;
    while (b->p < b->end) {
        struct pb sub;
        if (!pb_tag(b, &field, &wt)) goto bad;
        if (field == 1 && wt == 2) {
            if (!pb_bytes(b, &sub)) goto bad;
            s = sub.p;
            len = (size_t)(sub.end - sub.p);
        } else if (field == 2 && wt == 5) {
            if (b->end - b->p < 4) goto bad;
            uint32_t u = (uint32_t)b->p[0] | (uint32_t)b->p[1] << 8 | (uint32_t)b->p[2] << 16 |
                         (uint32_t)b->p[3] << 24;
            memcpy(&score, &u, 4);
            b->p += 4;
        } else if (field == 3 && wt == 0) {
            if (!pb_varint(b, &type)) goto bad;
        } else if (!pb_skip(b, wt)) {
            goto bad;
        }
    }
    if (!s) return sl_err_set(err, SL_EFORMAT, "%s: piece %zu has no text", path, id);
    /* the script maps user-defined (4) pieces to NORMAL */
    int32_t tt = type == TT_UNKNOWN || type == TT_CONTROL || type == TT_UNUSED || type == TT_BYTE
                     ? (int32_t)type
                     : TT_NORMAL;
    int rc = toks_set(t, id, (const char *)s, len, score, tt);
    return rc ? toks_oom_or(rc, err, path) : 0;
bad:
    return sl_err_set(err, SL_EFORMAT, "%s: piece %zu is not a valid SentencePiece message", path,
                      id);
}

static bool spm_trainer(struct pb *b, struct spm_meta *meta)
{
    uint32_t field;
    unsigned wt;
    while (b->p < b->end) {
        uint64_t v;
        if (!pb_tag(b, &field, &wt)) return false;
        if (wt == 0 && (field == 3 || (field >= 40 && field <= 43))) {
            if (!pb_varint(b, &v)) return false;
            if (field == 3)
                meta->model_type = (int)v;
            else
                meta->id[field - 40] = (int64_t)(int32_t)(uint32_t)v;
        } else if (!pb_skip(b, wt)) {
            return false;
        }
    }
    return true;
}

static bool spm_normalizer(struct pb *b, struct spm_meta *meta)
{
    uint32_t field;
    unsigned wt;
    while (b->p < b->end) {
        uint64_t v;
        if (!pb_tag(b, &field, &wt)) return false;
        if (field == 3 && wt == 0) {
            if (!pb_varint(b, &v)) return false;
            meta->add_dummy_prefix = v != 0;
        } else if (!pb_skip(b, wt)) {
            return false;
        }
    }
    return true;
}

static int import_spm(struct sl_gguf_writer *w, const char *path, const char *buf, size_t len,
                      const struct cfg *cfg, struct sl_err *err)
{
    struct toks t = {0};
    struct spm_meta meta = {{0, 1, 2, -1}, -1, 0};
    struct pb b = {(const uint8_t *)buf, (const uint8_t *)buf + len};
    size_t n = 0;
    int rc = 0;
    uint32_t field;
    unsigned wt;

    while (b.p < b.end) {
        struct pb sub;
        const uint8_t *at = b.p;
        if (!pb_tag(&b, &field, &wt)) goto bad;
        if (wt == 2 && (field == 1 || field == 2 || field == 3)) {
            if (!pb_bytes(&b, &sub)) goto bad;
            if (field == 1) {
                if ((rc = spm_piece(&sub, &t, n++, path, err))) goto out;
            } else if (!(field == 2 ? spm_trainer(&sub, &meta) : spm_normalizer(&sub, &meta))) {
                rc = sl_err_set(err, SL_EFORMAT, "%s: bad %s message at byte %zu", path,
                                field == 2 ? "TrainerSpec" : "NormalizerSpec",
                                (size_t)(at - (const uint8_t *)buf));
                goto out; /* bad sub-message */
            }
        } else if (!pb_skip(&b, wt)) {
            goto bad;
        }
        continue;
    bad:
        rc = sl_err_set(err, SL_EFORMAT, "%s: not a sentencepiece model (bad protobuf at byte %zu)",
                        path, (size_t)(at - (const uint8_t *)buf));
        goto out;
    }
    if (n == 0) {
        rc = sl_err_set(err, SL_EFORMAT, "%s: a sentencepiece model without pieces", path);
        goto out;
    }
    if ((rc = pad_to_config(&t, cfg, err))) goto out;
    if ((rc = apply_added_decoder(&t, cfg, true, err))) goto out;
    if (toks_fill(&t)) {
        rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    if ((rc = write_tokens(w, "llama", "default", &t, true, NULL, NULL, 0, err))) goto out;
    int64_t defaults[5] = {meta.id[1], meta.id[2], meta.id[0], -1, meta.id[3]};
    if ((rc = set_config(w, &t, cfg, defaults, err))) goto out;
    if (meta.add_dummy_prefix >= 0 &&
        sl_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", meta.add_dummy_prefix))
        rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", path);
out:
    toks_free(&t);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* detection and entry points                                                */
/* ------------------------------------------------------------------------ */

/* A tiktoken file starts with "<base64> <digits>\n"; a ModelProto with the
 * tag of field 1 (0x0A). */
static bool looks_tiktoken(const char *buf, size_t len)
{
    size_t i = 0;
    while (i < len && b64val((unsigned char)buf[i]) >= 0)
        i++;
    while (i < len && buf[i] == '=')
        i++;
    if (i == 0 || i >= len || buf[i] != ' ') return false;
    size_t d = ++i;
    while (i < len && buf[i] >= '0' && buf[i] <= '9')
        i++;
    return i > d && (i == len || buf[i] == '\n' || buf[i] == '\r');
}

int sl_hf_tokenizer_set(struct sl_gguf_writer *w, const struct sl_hf_files *f,
                        const char *pre_override, struct sl_err *err)
{
    struct cfg cfg = {0};
    char *buf = NULL;
    size_t len;
    int rc = 0;

    if (f->tokenizer_config && (rc = load_json(f->tokenizer_config, &cfg.tc, err))) return rc;
    if (f->config_json && (rc = load_json(f->config_json, &cfg.c, err))) goto out;
    if (f->tokenizer_json) {
        rc = import_tokenizer_json(w, f->tokenizer_json, &cfg, pre_override, err);
    } else if (f->vocab_json && f->merges_txt) {
        rc = import_vocab_merges(w, f, &cfg, pre_override, err);
    } else if (f->tokenizer_model) {
        if ((rc = read_file(f->tokenizer_model, &buf, &len, err))) goto out;
        if (looks_tiktoken(buf, len))
            rc = import_tiktoken(w, f->tokenizer_model, buf, len, &cfg, pre_override, err);
        else
            rc = import_spm(w, f->tokenizer_model, buf, len, &cfg, err);
    } else {
        rc = sl_err_set(err, SL_ENOTFOUND,
                        "no tokenizer found: give tokenizer.json, vocab.json with merges.txt, or "
                        "tokenizer.model%s",
                        f->vocab_json ? " (vocab.json needs merges.txt)" : "");
    }
out:
    free(buf);
    json_decref(cfg.tc);
    json_decref(cfg.c);
    return rc;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

int sl_hf_files_find(const char *const *paths, size_t n, struct sl_hf_files *f, char *storage,
                     size_t storage_len, struct sl_err *err)
{
    static const char *const names[6] = {
        "tokenizer.json",        "vocab.json", "merges.txt", "tokenizer.model",
        "tokenizer_config.json", "config.json"};
    const char **slot[6] = {&f->tokenizer_json,  &f->vocab_json,       &f->merges_txt,
                            &f->tokenizer_model, &f->tokenizer_config, &f->config_json};
    size_t used = 0;
    memset(f, 0, sizeof *f);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (stat(paths[i], &st) != 0) return sl_err_set(err, SL_EIO, "cannot open '%s'", paths[i]);
        if (S_ISDIR(st.st_mode)) {
            for (int k = 0; k < 6; k++) {
                int m = snprintf(storage + used, storage_len - used, "%s/%s", paths[i], names[k]);
                if (m < 0 || (size_t)m >= storage_len - used)
                    return sl_err_set(err, SL_ERANGE, "path '%s' is too long", paths[i]);
                if (*slot[k] || stat(storage + used, &st) != 0 || !S_ISREG(st.st_mode)) continue;
                *slot[k] = storage + used;
                used += (size_t)m + 1;
            }
            continue;
        }
        const char *b = base_name(paths[i]);
        int k = -1;
        for (int j = 0; j < 6; j++)
            if (!strcmp(b, names[j])) k = j;
        if (k < 0 && (ends_with(b, ".model") || strstr(b, ".model.") || ends_with(b, ".tiktoken")))
            k = 3;
        if (k < 0 && ends_with(b, "tokenizer_config.json")) k = 4;
        if (k < 0 && ends_with(b, "tokenizer.json")) k = 0;
        if (k < 0)
            return sl_err_set(err, SL_EINVAL,
                              "cannot tell what '%s' is; expected tokenizer.json, vocab.json, "
                              "merges.txt, tokenizer.model, tokenizer_config.json or config.json",
                              paths[i]);
        *slot[k] = paths[i];
    }
    if (!f->tokenizer_json && !(f->vocab_json && f->merges_txt) && !f->tokenizer_model)
        return sl_err_set(err, SL_ENOTFOUND,
                          "no tokenizer among the %zu path(s) given: need tokenizer.json, "
                          "vocab.json + merges.txt, or tokenizer.model",
                          n);
    return 0;
}

int sl_hf_tokenizer_convert(const char *const *paths, size_t n, const char *pre_override,
                            const char *out_path, struct sl_err *err)
{
    struct sl_hf_files f;
    char *storage = malloc(6 * 4096);
    struct sl_gguf_writer *w = NULL;
    int rc;
    if (!storage) return sl_err_set(err, SL_ENOMEM, "out of memory");
    if ((rc = sl_hf_files_find(paths, n, &f, storage, 6 * 4096, err))) goto out;
    if (!(w = sl_gguf_writer_init())) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory");
        goto out;
    }
    if (sl_gguf_set_str(w, "general.architecture", "tokenizer") ||
        sl_gguf_set_str(w, "general.type", "vocab")) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = sl_hf_tokenizer_set(w, &f, pre_override, err))) goto out;
    rc = sl_gguf_writer_write(w, out_path, err);
out:
    sl_gguf_writer_free(w);
    free(storage);
    return rc;
}
