/*
 * vocab.c - vocabulary loading, special tokens, and the tokenize /
 * detokenize entry points (engine layer). The two algorithms live in
 * tok_spm.c (SentencePiece-style) and tok_bpe.c (byte-level BPE); this file
 * does what llama.cpp's llama_vocab::impl does around them:
 *
 *   load:     tokens, scores, types, merges, flags and special ids from
 *             GGUF; llama.cpp's by-text overrides (EOT/EOG/FIM tokens forced
 *             to CONTROL); the special-token list; a piece cache.
 *   tokenize: split out special tokens (tokenizer_st_partition), then run
 *             the model's encoder on each text fragment; BOS/EOS around.
 *   pieces:   token -> bytes, and the whole-sequence detokenizer with
 *             SPM leading-space removal and BPE clean_spaces.
 */
#define _GNU_SOURCE /* memmem */
#include "vocab_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_unicode.h"

/* ------------------------------------------------------------------------ */
/* small containers                                                          */
/* ------------------------------------------------------------------------ */

int sl_tokvec_push(struct sl_tokvec *tv, int32_t tok)
{
    if (tv->n == tv->cap) {
        size_t cap = tv->cap ? tv->cap * 2 : 64;
        int32_t *nv = realloc(tv->v, cap * sizeof *nv);
        if (!nv) return SL_ENOMEM;
        tv->v = nv;
        tv->cap = cap;
    }
    tv->v[tv->n++] = tok;
    return 0;
}

static uint64_t str_hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

/* Map keys[0..n) to their indices. With `last_wins` a repeated key maps to
 * its last index (llama.cpp's token_to_id[word] = i), otherwise to its
 * first (bpe_ranks.emplace). */
static int strmap_build(struct sl_strmap *m, const struct sl_str *keys, size_t n, bool last_wins)
{
    size_t cap = 16;
    while (cap < n * 2)
        cap *= 2;
    m->slot = calloc(cap, sizeof *m->slot);
    if (!m->slot) return SL_ENOMEM;
    m->mask = cap - 1;
    m->keys = keys;
    for (size_t i = 0; i < n; i++) {
        size_t h = (size_t)str_hash(keys[i].ptr, keys[i].len) & m->mask;
        for (;;) {
            uint32_t s = m->slot[h];
            if (s == 0) {
                m->slot[h] = (uint32_t)i + 1;
                break;
            }
            const struct sl_str *k = &keys[s - 1];
            if (k->len == keys[i].len && memcmp(k->ptr, keys[i].ptr, k->len) == 0) {
                if (last_wins) m->slot[h] = (uint32_t)i + 1;
                break;
            }
            h = (h + 1) & m->mask;
        }
    }
    return 0;
}

int32_t sl_strmap_get(const struct sl_strmap *m, const char *s, size_t len)
{
    if (!m->slot) return -1;
    size_t h = (size_t)str_hash(s, len) & m->mask;
    for (;;) {
        uint32_t e = m->slot[h];
        if (e == 0) return -1;
        const struct sl_str *k = &m->keys[e - 1];
        if (k->len == len && memcmp(k->ptr, s, len) == 0) return (int32_t)(e - 1);
        h = (h + 1) & m->mask;
    }
}

/* ------------------------------------------------------------------------ */
/* loading                                                                   */
/* ------------------------------------------------------------------------ */

void sl_vocab_free(struct sl_vocab *v)
{
    if (!v) return;
    free(v->text);
    free(v->score);
    free(v->attr);
    free(v->ttype);
    free(v->piece);
    free(v->arena);
    free(v->piece_arena);
    free(v->tok_map.slot);
    free(v->merge);
    free(v->merge_arena);
    free(v->merge_map.slot);
    free(v->special);
    free(v);
}

static bool tok_is(const struct sl_vocab *v, int32_t id, const char *s)
{
    return sl_str_eq(v->text[id], s);
}

/* An id key from the metadata: kept only when inside the vocab (ids such as
 * 4294967295 mean "unset"; llama.cpp then keeps its default). */
static void load_id(const struct sl_gguf *g, const char *key, int32_t n, int32_t *id)
{
    int64_t x;
    if (sl_gguf_get_i64(g, key, &x, NULL) == 0 && x >= 0 && x < n) *id = (int32_t)x;
}

static void load_bool(const struct sl_gguf *g, const char *key, bool *b)
{
    bool x;
    if (sl_gguf_get_bool(g, key, &x, NULL) == 0) *b = x;
}

static uint32_t attr_of_type(int64_t t)
{
    switch (t) {
    case SL_TOKEN_TYPE_NORMAL:
        return SL_ATTR_NORMAL;
    case SL_TOKEN_TYPE_UNKNOWN:
        return SL_ATTR_UNKNOWN;
    case SL_TOKEN_TYPE_CONTROL:
        return SL_ATTR_CONTROL;
    case SL_TOKEN_TYPE_USER_DEFINED:
        return SL_ATTR_USER_DEFINED;
    case SL_TOKEN_TYPE_UNUSED:
        return SL_ATTR_UNUSED;
    case SL_TOKEN_TYPE_BYTE:
        return SL_ATTR_BYTE;
    default:
        return SL_ATTR_UNDEFINED;
    }
}

static enum sl_token_type type_of_attr(uint32_t a)
{
    if (a & SL_ATTR_CONTROL) return SL_TOKEN_TYPE_CONTROL;
    if (a & SL_ATTR_USER_DEFINED) return SL_TOKEN_TYPE_USER_DEFINED;
    if (a & SL_ATTR_UNKNOWN) return SL_TOKEN_TYPE_UNKNOWN;
    if (a & SL_ATTR_BYTE) return SL_TOKEN_TYPE_BYTE;
    if (a & SL_ATTR_UNUSED) return SL_TOKEN_TYPE_UNUSED;
    if (a & SL_ATTR_NORMAL) return SL_TOKEN_TYPE_NORMAL;
    return SL_TOKEN_TYPE_UNDEFINED;
}

/* Read element i of a scalar array as int64 (the types token_type uses). */
static bool arr_int(const struct sl_gguf_kv *kv, uint64_t i, int64_t *out)
{
    const uint8_t *p = kv->data + i * sl_gguf_vtype_size(kv->arr_type);
    switch (kv->arr_type) {
    case SL_GGUF_INT32: {
        int32_t x;
        memcpy(&x, p, 4);
        *out = x;
        return true;
    }
    case SL_GGUF_UINT32: {
        uint32_t x;
        memcpy(&x, p, 4);
        *out = x;
        return true;
    }
    case SL_GGUF_INT8:
        *out = (int8_t)*p;
        return true;
    case SL_GGUF_UINT8:
        *out = *p;
        return true;
    case SL_GGUF_INT16: {
        int16_t x;
        memcpy(&x, p, 2);
        *out = x;
        return true;
    }
    case SL_GGUF_UINT16: {
        uint16_t x;
        memcpy(&x, p, 2);
        *out = x;
        return true;
    }
    case SL_GGUF_INT64: {
        int64_t x;
        memcpy(&x, p, 8);
        *out = x;
        return true;
    }
    }
    return false;
}

/* Copy the token texts into one arena (empty texts become "[EMPTY_i]" as in
 * llama.cpp, so no special token can be empty). */
static int load_texts(struct sl_vocab *v, const struct sl_str *src, struct sl_err *err)
{
    size_t total = 0;
    char tmp[32];
    for (int32_t i = 0; i < v->n_tokens; i++) {
        if (src[i].len > SL_VOCAB_MAX_TOKEN_LEN)
            return sl_err_set(err, SL_ERANGE,
                              "%s: token %d is %zu bytes long, past the limit of %u", __func__, i,
                              src[i].len, SL_VOCAB_MAX_TOKEN_LEN);
        total += src[i].len ? src[i].len : (size_t)snprintf(tmp, sizeof tmp, "[EMPTY_%d]", i);
    }
    v->text = malloc((size_t)v->n_tokens * sizeof *v->text);
    v->arena = malloc(total + 1);
    if (!v->text || !v->arena) return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    char *p = v->arena;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        size_t len = src[i].len;
        if (len) {
            memcpy(p, src[i].ptr, len);
        } else {
            len = (size_t)snprintf(tmp, sizeof tmp, "[EMPTY_%d]", i);
            memcpy(p, tmp, len);
        }
        v->text[i].ptr = p;
        v->text[i].len = len;
        p += len;
    }
    return 0;
}

static int load_merges(struct sl_vocab *v, const struct sl_gguf *g, struct sl_err *err)
{
    struct sl_str *m = NULL;
    uint64_t n = 0;
    size_t total = 0;
    int rc = sl_gguf_get_str_arr(g, "tokenizer.ggml.merges", &m, &n, err);
    if (rc == SL_ENOTFOUND)
        return sl_err_set(err, SL_ENOTFOUND,
                          "%s: BPE vocab without tokenizer.ggml.merges; re-convert the model",
                          __func__);
    if (rc) return rc;
    if (n > SL_VOCAB_MAX_MERGES) {
        free(m);
        return sl_err_set(err, SL_ERANGE, "%s: %llu merges, past the limit of %u", __func__,
                          (unsigned long long)n, SL_VOCAB_MAX_MERGES);
    }
    for (uint64_t i = 0; i < n; i++)
        total += m[i].len;
    v->merge = malloc((size_t)(n ? n : 1) * sizeof *v->merge);
    v->merge_arena = malloc(total + 1);
    if (!v->merge || !v->merge_arena) {
        free(m);
        return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    }
    char *p = v->merge_arena;
    for (uint64_t i = 0; i < n; i++) {
        if (m[i].len) memcpy(p, m[i].ptr, m[i].len);
        v->merge[i].ptr = p;
        v->merge[i].len = m[i].len;
        p += m[i].len;
    }
    v->n_merges = (uint32_t)n;
    free(m);
    if (strmap_build(&v->merge_map, v->merge, n, false))
        return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    return 0;
}

/* Force a token found by its text to CONTROL, as llama.cpp does for
 * "control-looking" tokens that a converter typed otherwise. */
static void force_control(struct sl_vocab *v, int32_t id)
{
    if (!(v->attr[id] & SL_ATTR_CONTROL)) v->attr[id] = SL_ATTR_CONTROL;
}

/* The first id (in the order of `texts`) whose text is one of texts. */
static int32_t find_by_texts(const struct sl_vocab *v, const char *const *texts)
{
    for (; *texts; texts++) {
        int32_t id = sl_strmap_get(&v->tok_map, *texts, strlen(*texts));
        if (id >= 0) return id;
    }
    return -1;
}

static void eog_add(struct sl_vocab *v, int32_t id)
{
    if (id < 0) return;
    for (unsigned i = 0; i < v->n_eog; i++)
        if (v->eog[i] == id) return;
    if (v->n_eog < SL_EOG_MAX) v->eog[v->n_eog++] = id;
}

static void eog_remove(struct sl_vocab *v, int32_t id)
{
    for (unsigned i = 0; i < v->n_eog; i++)
        if (v->eog[i] == id) {
            v->eog[i] = v->eog[--v->n_eog];
            return;
        }
}

/* llama.cpp's "auto-detect special tokens by text" and the EOG list. */
static void detect_specials(struct sl_vocab *v)
{
    static const char *const eot_texts[] = {"<|eot_id|>",
                                            "<|im_end|>",
                                            "<|end|>",
                                            "<end_of_turn>",
                                            "<|endoftext|>",
                                            "<|end_of_text|>",
                                            "<EOT>",
                                            "_<EOT>",
                                            "<\xef\xbd\x9c"
                                            "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                                            "<end_of_utterance>",
                                            NULL};
    static const char *const eom_texts[] = {"<|eom_id|>", NULL};
    static const char *const fim_pre_texts[] = {"<|fim_prefix|>",
                                                "<fim-prefix>",
                                                "<fim_prefix>",
                                                "<\xef\xbd\x9c"
                                                "fim\xe2\x96\x81"
                                                "begin\xef\xbd\x9c>",
                                                "<PRE>",
                                                "\xe2\x96\x81<PRE>",
                                                "<|code_prefix|>",
                                                NULL};
    static const char *const fim_suf_texts[] = {"<|fim_suffix|>",
                                                "<fim-suffix>",
                                                "<fim_suffix>",
                                                "<\xef\xbd\x9c"
                                                "fim\xe2\x96\x81hole\xef\xbd\x9c>",
                                                "<SUF>",
                                                "\xe2\x96\x81<SUF>",
                                                "<|code_suffix|>",
                                                NULL};
    static const char *const fim_mid_texts[] = {"<|fim_middle|>",
                                                "<fim-middle>",
                                                "<fim_middle>",
                                                "<\xef\xbd\x9c"
                                                "fim\xe2\x96\x81"
                                                "end\xef\xbd\x9c>",
                                                "<MID>",
                                                "\xe2\x96\x81<MID>",
                                                "<|code_middle|>",
                                                NULL};
    static const char *const fim_pad_texts[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>",
                                                NULL};
    static const char *const fim_rep_texts[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>",
                                                "<REPO>",       "<reponame>",    NULL};
    static const char *const fim_sep_texts[] = {"<|file_sep|>", NULL};
    static const char *const eog_texts[] = {
        "<|eot_id|>",      "<|im_end|>",         "<|end|>",    "<|return|>", "<|call|>",
        "<end_of_turn>",   "<|endoftext|>",      "<|eom_id|>", "<EOT>",      "_<EOT>",
        "<|end_of_text|>", "<end_of_utterance>", NULL};
    static const char *const render_texts[] = {"<|channel|>", "<|message|>", "<|start|>",
                                               "<|constrain|>", NULL};
    struct {
        int32_t *id;
        const char *const *texts;
    } by_text[] = {
        {&v->eot, eot_texts},         {&v->eom, eom_texts},         {&v->fim_pre, fim_pre_texts},
        {&v->fim_suf, fim_suf_texts}, {&v->fim_mid, fim_mid_texts}, {&v->fim_pad, fim_pad_texts},
        {&v->fim_rep, fim_rep_texts}, {&v->fim_sep, fim_sep_texts},
    };
    for (size_t k = 0; k < sizeof by_text / sizeof by_text[0]; k++) {
        if (*by_text[k].id >= 0) continue;
        int32_t id = find_by_texts(v, by_text[k].texts);
        if (id < 0) continue;
        *by_text[k].id = id;
        force_control(v, id);
    }

    v->n_eog = 0;
    eog_add(v, v->fim_pad);
    eog_add(v, v->fim_rep);
    eog_add(v, v->fim_sep);
    for (const char *const *t = eog_texts; *t; t++) {
        int32_t id = sl_strmap_get(&v->tok_map, *t, strlen(*t));
        if (id < 0) continue;
        eog_add(v, id);
        force_control(v, id);
    }
    /* gpt-oss: these are always rendered */
    for (const char *const *t = render_texts; *t; t++) {
        int32_t id = sl_strmap_get(&v->tok_map, *t, strlen(*t));
        if (id >= 0) v->attr[id] = SL_ATTR_USER_DEFINED;
    }
    eog_add(v, v->eos);
    eog_add(v, v->eot);
    eog_add(v, v->eom);
    /* o200k_harmony: with <|return|> and <|call|>, <|end|> does not end */
    int32_t end = -1;
    bool has_return = false, has_call = false;
    for (unsigned i = 0; i < v->n_eog; i++) {
        if (tok_is(v, v->eog[i], "<|return|>"))
            has_return = true;
        else if (tok_is(v, v->eog[i], "<|call|>"))
            has_call = true;
        else if (tok_is(v, v->eog[i], "<|end|>"))
            end = v->eog[i];
    }
    if (has_return && has_call && end >= 0) {
        eog_remove(v, end);
        v->attr[end] = SL_ATTR_USER_DEFINED;
    }
}

static int cmp_special(const void *a, const void *b, void *ctx)
{
    const struct sl_vocab *v = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    size_t lx = v->text[x].len, ly = v->text[y].len;
    if (lx != ly) return lx > ly ? -1 : 1; /* longest first */
    return x < y ? -1 : x > y;
}

static int build_special_list(struct sl_vocab *v)
{
    size_t n = 0;
    for (int32_t i = 0; i < v->n_tokens; i++)
        if (v->attr[i] & (SL_ATTR_CONTROL | SL_ATTR_USER_DEFINED | SL_ATTR_UNKNOWN)) n++;
    v->special = malloc((n ? n : 1) * sizeof *v->special);
    if (!v->special) return SL_ENOMEM;
    for (int32_t i = 0; i < v->n_tokens; i++)
        if (v->attr[i] & (SL_ATTR_CONTROL | SL_ATTR_USER_DEFINED | SL_ATTR_UNKNOWN))
            v->special[v->n_special++] = i;
    qsort_r(v->special, v->n_special, sizeof *v->special, cmp_special, v);
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The piece of token i (special = true) written at p; returns its length.
 * Never longer than the token's text. */
static size_t make_piece(const struct sl_vocab *v, int32_t i, char *p)
{
    const struct sl_str t = v->text[i];
    uint32_t a = v->attr[i];
    size_t n = 0;
    if (a & (SL_ATTR_UNKNOWN | SL_ATTR_CONTROL | SL_ATTR_USER_DEFINED)) {
        memcpy(p, t.ptr, t.len);
        return t.len;
    }
    if (v->type == SL_VOCAB_SPM) {
        if (a & SL_ATTR_NORMAL) {
            for (size_t k = 0; k < t.len;) {
                if (k + 3 <= t.len && memcmp(t.ptr + k, "\xe2\x96\x81", 3) == 0) {
                    p[n++] = ' ';
                    k += 3;
                } else {
                    p[n++] = t.ptr[k++];
                }
            }
            return n;
        }
        if (a & SL_ATTR_BYTE) {
            /* "<0xNN>"; llama.cpp reads the two characters at offset 3 */
            int hi = t.len >= 5 ? hexval(t.ptr[3]) : -1, lo = t.len >= 5 ? hexval(t.ptr[4]) : -1;
            if (hi < 0 || lo < 0) return 0;
            p[0] = (char)(hi * 16 + lo);
            return 1;
        }
        return 0;
    }
    if (a & SL_ATTR_NORMAL) {
        /* byte-level alphabet -> bytes; a code point outside it is passed
         * through (llama.cpp writes an "[UNK_BYTE_0x..]" marker instead) */
        for (size_t k = 0; k < t.len;) {
            uint32_t cp;
            size_t m = sl_utf8_decode(t.ptr + k, t.len - k, &cp);
            int b = sl_bpe_cpt_to_byte(cp);
            if (b >= 0) {
                p[n++] = (char)b;
            } else {
                memcpy(p + n, t.ptr + k, m);
                n += m;
            }
            k += m;
        }
    }
    return n;
}

static int build_pieces(struct sl_vocab *v)
{
    size_t total = 0;
    for (int32_t i = 0; i < v->n_tokens; i++)
        total += v->text[i].len;
    v->piece = malloc((size_t)v->n_tokens * sizeof *v->piece);
    v->piece_arena = malloc(total + 1);
    if (!v->piece || !v->piece_arena) return SL_ENOMEM;
    char *p = v->piece_arena;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        size_t n = make_piece(v, i, p);
        v->piece[i].ptr = p;
        v->piece[i].len = n;
        p += n;
    }
    return 0;
}

static void find_byte_tokens(struct sl_vocab *v)
{
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        char buf[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
        char c = (char)b;
        int32_t id = sl_strmap_get(&v->tok_map, buf, 6);
        if (id < 0) id = sl_strmap_get(&v->tok_map, &c, 1);
        v->byte_tok[b] = id;
    }
}

static bool contains_ci(struct sl_str s, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= s.len; i++) {
        size_t k = 0;
        while (k < n && tolower((unsigned char)s.ptr[i + k]) == needle[k])
            k++;
        if (k == n) return true;
    }
    return false;
}

/* Per-model token attributes llama.cpp sets by name (Phi-3's rstrip). */
static void model_attrs(struct sl_vocab *v, const struct sl_gguf *g)
{
    struct sl_str name;
    if (sl_gguf_get_str(g, "general.name", &name, NULL) != 0) return;
    if (!contains_ci(name, "phi-3") && !contains_ci(name, "phi3")) return;
    for (size_t i = 0; i < v->n_special; i++)
        v->attr[v->special[i]] |= SL_ATTR_RSTRIP;
    static const char *const on[] = {"</s>", NULL}, *const off[] = {"<unk>", "<s>", "<|endoftext|>",
                                                                    NULL};
    for (const char *const *t = on; *t; t++) {
        int32_t id = sl_strmap_get(&v->tok_map, *t, strlen(*t));
        if (id >= 0) v->attr[id] |= SL_ATTR_RSTRIP;
    }
    for (const char *const *t = off; *t; t++) {
        int32_t id = sl_strmap_get(&v->tok_map, *t, strlen(*t));
        if (id >= 0) v->attr[id] &= ~(uint32_t)SL_ATTR_RSTRIP;
    }
}

int sl_vocab_load(struct sl_vocab **out, const struct sl_gguf *g, struct sl_err *err)
{
    struct sl_vocab *v = NULL;
    struct sl_str model, pre = {"default", 7}, *toks = NULL;
    const struct sl_gguf_kv *scores = NULL, *types = NULL;
    uint64_t n = 0;
    int rc;

    *out = NULL;
    rc = sl_gguf_get_str(g, "tokenizer.ggml.model", &model, err);
    if (rc == SL_ENOTFOUND)
        return sl_err_set(err, SL_ENOTFOUND,
                          "%s: no tokenizer.ggml.model key; the file has no "
                          "vocabulary",
                          __func__);
    if (rc) return rc;
    v = calloc(1, sizeof *v);
    if (!v) return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    if (sl_str_eq(model, "llama")) {
        v->type = SL_VOCAB_SPM;
    } else if (sl_str_eq(model, "gpt2")) {
        v->type = SL_VOCAB_BPE;
    } else {
        rc = sl_err_set(err, SL_EUNSUPPORTED,
                        "%s: tokenizer model '%.*s' is not supported (supported: 'llama' "
                        "sentencepiece, 'gpt2' byte-level BPE)%s",
                        __func__, (int)SL_MIN(model.len, 64), model.ptr,
                        sl_str_eq(model, "bert") ? "; WordPiece (bert) is not implemented" : "");
        goto fail; /* unsupported model */
    }

    /* tokens, scores, types */
    rc = sl_gguf_get_str_arr(g, "tokenizer.ggml.tokens", &toks, &n, err);
    if (rc) goto fail; /* missing or mistyped token list */
    if (n == 0 || n > SL_VOCAB_MAX_TOKENS) {
        rc = sl_err_set(err, SL_ERANGE, "%s: %llu tokens; a vocab needs 1..%u", __func__,
                        (unsigned long long)n, SL_VOCAB_MAX_TOKENS);
        goto fail; /* token count */
    }
    v->n_tokens = (int32_t)n;
    if (sl_gguf_find(g, "tokenizer.ggml.scores")) {
        rc = sl_gguf_get_arr(g, "tokenizer.ggml.scores", SL_GGUF_FLOAT32, &scores, err);
        if (rc) goto fail; /* scores not f32 */
        if (scores->arr_n != n) {
            rc = sl_err_set(err, SL_EFORMAT, "%s: %llu scores for %llu tokens", __func__,
                            (unsigned long long)scores->arr_n, (unsigned long long)n);
            goto fail; /* length mismatch */
        }
    }
    if (sl_gguf_find(g, "tokenizer.ggml.token_type")) {
        int64_t x;
        rc = sl_gguf_get_arr(g, "tokenizer.ggml.token_type", -1, &types, err);
        if (rc) goto fail; /* not an array */
        if (types->arr_n != n || !arr_int(types, 0, &x)) {
            rc = sl_err_set(err, SL_EFORMAT, "%s: token_type should be %llu integers, is %llu %s",
                            __func__, (unsigned long long)n, (unsigned long long)types->arr_n,
                            sl_gguf_vtype_name(types->arr_type));
            goto fail; /* length or type mismatch */
        }
    }
    if ((rc = load_texts(v, toks, err))) goto fail; /* limits or memory */
    free(toks);
    toks = NULL;
    v->score = malloc((size_t)n * sizeof *v->score);
    v->attr = malloc((size_t)n * sizeof *v->attr);
    v->ttype = malloc((size_t)n);
    if (!v->score || !v->attr || !v->ttype) goto oom;
    for (uint64_t i = 0; i < n; i++) {
        int64_t t = SL_TOKEN_TYPE_NORMAL;
        v->score[i] = 0.0f;
        if (scores) memcpy(&v->score[i], scores->data + 4 * i, 4);
        if (types) arr_int(types, i, &t);
        v->attr[i] = attr_of_type(t);
    }
    if (strmap_build(&v->tok_map, v->text, n, true)) goto oom;

    /* model defaults, then the flags in the file */
    v->bos = v->eos = v->eot = v->eom = v->unk = v->sep = v->pad = v->nl = -1;
    v->fim_pre = v->fim_suf = v->fim_mid = v->fim_pad = v->fim_rep = v->fim_sep = -1;
    if (v->type == SL_VOCAB_SPM) {
        v->bos = n > 1 ? 1 : -1;
        v->eos = n > 2 ? 2 : -1;
        v->unk = 0;
        v->add_space_prefix = true;
        v->add_bos = true;
    } else {
        struct sl_str p;
        if (sl_gguf_get_str(g, "tokenizer.ggml.pre", &p, NULL) == 0) pre = p;
        if ((rc = sl_pre_init(&v->pre, pre.ptr, pre.len, err))) goto fail; /* unknown pre */
        if ((rc = load_merges(v, g, err))) goto fail;                      /* merges */
        v->clean_spaces = v->pre.clean_spaces;
        v->add_bos = v->pre.add_bos;
    }
    load_bool(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix);
    load_id(g, "tokenizer.ggml.bos_token_id", v->n_tokens, &v->bos);
    load_id(g, "tokenizer.ggml.eos_token_id", v->n_tokens, &v->eos);
    load_id(g, "tokenizer.ggml.eot_token_id", v->n_tokens, &v->eot);
    load_id(g, "tokenizer.ggml.eom_token_id", v->n_tokens, &v->eom);
    load_id(g, "tokenizer.ggml.unknown_token_id", v->n_tokens, &v->unk);
    load_id(g, "tokenizer.ggml.seperator_token_id", v->n_tokens, &v->sep);
    load_id(g, "tokenizer.ggml.padding_token_id", v->n_tokens, &v->pad);
    load_id(g, "tokenizer.ggml.fim_pre_token_id", v->n_tokens, &v->fim_pre);
    load_id(g, "tokenizer.ggml.fim_suf_token_id", v->n_tokens, &v->fim_suf);
    load_id(g, "tokenizer.ggml.fim_mid_token_id", v->n_tokens, &v->fim_mid);
    load_id(g, "tokenizer.ggml.fim_pad_token_id", v->n_tokens, &v->fim_pad);
    load_id(g, "tokenizer.ggml.fim_rep_token_id", v->n_tokens, &v->fim_rep);
    load_id(g, "tokenizer.ggml.fim_sep_token_id", v->n_tokens, &v->fim_sep);
    load_id(g, "tokenizer.ggml.prefix_token_id", v->n_tokens, &v->fim_pre);
    load_id(g, "tokenizer.ggml.suffix_token_id", v->n_tokens, &v->fim_suf);
    load_id(g, "tokenizer.ggml.middle_token_id", v->n_tokens, &v->fim_mid);
    if (v->pre.no_bos) v->bos = -1;
    load_bool(g, "tokenizer.ggml.add_bos_token", &v->add_bos);
    load_bool(g, "tokenizer.ggml.add_eos_token", &v->add_eos);

    detect_specials(v);
    if (build_special_list(v)) goto oom;
    if (build_pieces(v)) goto oom;
    model_attrs(v, g);
    for (int32_t i = 0; i < v->n_tokens; i++)
        v->ttype[i] = (int8_t)type_of_attr(v->attr[i]);
    if (v->type == SL_VOCAB_SPM) {
        find_byte_tokens(v);
        v->nl = v->byte_tok['\n'] >= 0 ? v->byte_tok['\n'] : v->pad;
    } else {
        struct sl_tokvec tv = {0};
        for (int b = 0; b < 256; b++)
            v->byte_tok[b] = -1;
        if (sl_tok_bpe_encode(v, "\n", 1, &tv)) goto oom;
        v->nl = tv.n ? tv.v[0] : v->pad;
        free(tv.v);
    }
    *out = v;
    return 0;

oom:
    rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
fail:
    free(toks);
    sl_vocab_free(v);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* accessors                                                                 */
/* ------------------------------------------------------------------------ */

static bool in_range(const struct sl_vocab *v, int32_t tok)
{
    return tok >= 0 && tok < v->n_tokens;
}

enum sl_vocab_type sl_vocab_type(const struct sl_vocab *v)
{
    return v->type;
}
const char *sl_vocab_pre(const struct sl_vocab *v)
{
    return v->type == SL_VOCAB_BPE ? v->pre.name : "";
}
int32_t sl_vocab_n_tokens(const struct sl_vocab *v)
{
    return v->n_tokens;
}
int32_t sl_vocab_bos(const struct sl_vocab *v)
{
    return v->bos;
}
int32_t sl_vocab_eos(const struct sl_vocab *v)
{
    return v->eos;
}
int32_t sl_vocab_eot(const struct sl_vocab *v)
{
    return v->eot;
}
int32_t sl_vocab_unk(const struct sl_vocab *v)
{
    return v->unk;
}
int32_t sl_vocab_pad(const struct sl_vocab *v)
{
    return v->pad;
}
int32_t sl_vocab_nl(const struct sl_vocab *v)
{
    return v->nl;
}
bool sl_vocab_add_bos(const struct sl_vocab *v)
{
    return v->add_bos && v->bos >= 0;
}
bool sl_vocab_add_eos(const struct sl_vocab *v)
{
    return v->add_eos && v->eos >= 0;
}

bool sl_vocab_is_eog(const struct sl_vocab *v, int32_t tok)
{
    if (!in_range(v, tok)) return false;
    for (unsigned i = 0; i < v->n_eog; i++)
        if (v->eog[i] == tok) return true;
    return false;
}

bool sl_vocab_is_control(const struct sl_vocab *v, int32_t tok)
{
    return in_range(v, tok) && (v->attr[tok] & SL_ATTR_CONTROL);
}

enum sl_token_type sl_vocab_token_type(const struct sl_vocab *v, int32_t tok)
{
    return in_range(v, tok) ? (enum sl_token_type)v->ttype[tok] : SL_TOKEN_TYPE_UNDEFINED;
}

const char *sl_vocab_token_text(const struct sl_vocab *v, int32_t tok, size_t *len)
{
    if (!in_range(v, tok)) return NULL;
    if (len) *len = v->text[tok].len;
    return v->text[tok].ptr;
}

float sl_vocab_token_score(const struct sl_vocab *v, int32_t tok)
{
    return in_range(v, tok) ? v->score[tok] : 0.0f;
}

int32_t sl_vocab_find(const struct sl_vocab *v, const char *text, size_t len)
{
    return sl_strmap_get(&v->tok_map, text, len);
}

/* ------------------------------------------------------------------------ */
/* tokenize                                                                  */
/* ------------------------------------------------------------------------ */

/* A piece of the input: raw text [off, off+len) or one special token. */
struct frag {
    int32_t tok; /* -1 for raw text */
    size_t off, len;
};

struct fragvec {
    struct frag *v;
    size_t n, cap;
};

static int frag_push(struct fragvec *f, int32_t tok, size_t off, size_t len)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        struct frag *nv = realloc(f->v, cap * sizeof *nv);
        if (!nv) return SL_ENOMEM;
        f->v = nv;
        f->cap = cap;
    }
    f->v[f->n++] = (struct frag){tok, off, len};
    return 0;
}

/* Split one raw fragment at every occurrence of special token id
 * (llama.cpp's tokenizer_st_partition, including lstrip/rstrip). */
static int split_fragment(const struct sl_vocab *v, const char *text, struct frag fr, int32_t id,
                          struct fragvec *out)
{
    const struct sl_str t = v->text[id];
    const uint32_t a = v->attr[id];
    size_t off = fr.off, len = fr.len;
    for (;;) {
        const char *m = len >= t.len ? memmem(text + off, len, t.ptr, t.len) : NULL;
        if (!m) break;
        size_t at = (size_t)(m - text);
        size_t left = at - off;
        if (a & SL_ATTR_LSTRIP)
            while (left > 0 && isspace((unsigned char)text[off + left - 1]))
                left--;
        if (left > 0 && frag_push(out, -1, off, left)) return SL_ENOMEM;
        if (frag_push(out, id, 0, 0)) return SL_ENOMEM;
        size_t roff = at + t.len, rlen = off + len - roff;
        if (a & SL_ATTR_RSTRIP)
            while (rlen > 0 && isspace((unsigned char)text[roff]))
                roff++, rlen--;
        off = roff;
        len = rlen;
        if (len == 0) return 0;
    }
    return frag_push(out, -1, off, len);
}

static int partition(const struct sl_vocab *v, const char *text, size_t len, bool parse_special,
                     struct fragvec *frags)
{
    struct fragvec next = {0};
    if (len == 0) return 0;
    if (frag_push(frags, -1, 0, len)) return SL_ENOMEM;
    for (size_t s = 0; s < v->n_special; s++) {
        int32_t id = v->special[s];
        if (!parse_special && (v->attr[id] & (SL_ATTR_CONTROL | SL_ATTR_UNKNOWN))) continue;
        next.n = 0;
        for (size_t i = 0; i < frags->n; i++) {
            int rc = frags->v[i].tok >= 0 ? frag_push(&next, frags->v[i].tok, 0, 0)
                                          : split_fragment(v, text, frags->v[i], id, &next);
            if (rc) {
                free(next.v);
                return rc;
            }
        }
        struct fragvec tmp = *frags;
        *frags = next;
        next = tmp;
    }
    free(next.v);
    return 0;
}

/* SPM: optional dummy-prefix space, then ' ' -> U+2581. */
static int spm_fragment(const struct sl_vocab *v, const char *s, size_t len, bool prefix,
                        char **buf, size_t *cap, struct sl_tokvec *out)
{
    size_t need = 3 * (len + 1), n = 0;
    if (need > *cap) {
        char *nb = realloc(*buf, need);
        if (!nb) return SL_ENOMEM;
        *buf = nb;
        *cap = need;
    }
    char *b = *buf;
    if (prefix) memcpy(b, "\xe2\x96\x81", 3), n = 3;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ')
            memcpy(b + n, "\xe2\x96\x81", 3), n += 3;
        else
            b[n++] = s[i];
    }
    return sl_tok_spm_encode(v, b, n, out);
}

int sl_tokenize(const struct sl_vocab *v, const char *text, size_t len, bool add_special,
                bool parse_special, int32_t **out, size_t *n_out, struct sl_err *err)
{
    struct fragvec frags = {0};
    struct sl_tokvec tv = {0};
    char *buf = NULL;
    size_t cap = 0;
    int rc = 0;

    *out = NULL;
    *n_out = 0;
    if (len > SL_TOK_MAX_INPUT)
        return sl_err_set(err, SL_ERANGE, "%s: input of %zu bytes is past the limit of %u bytes",
                          __func__, len, SL_TOK_MAX_INPUT);
    if (len && !text) return sl_err_set(err, SL_EINVAL, "%s: NULL text", __func__);
    if ((rc = partition(v, text, len, parse_special, &frags))) goto oom; /* allocation */

    if (add_special && v->add_bos && v->bos >= 0 && (rc = sl_tokvec_push(&tv, v->bos))) goto oom;
    bool prev_special = true; /* SPM: the first fragment gets the dummy prefix */
    for (size_t i = 0; i < frags.n; i++) {
        const struct frag *f = &frags.v[i];
        if (f->tok >= 0) {
            rc = sl_tokvec_push(&tv, f->tok);
            prev_special = true;
        } else if (v->type == SL_VOCAB_SPM) {
            rc = spm_fragment(v, text + f->off, f->len, v->add_space_prefix && prev_special, &buf,
                              &cap, &tv);
            prev_special = false;
        } else {
            rc = sl_tok_bpe_encode(v, text + f->off, f->len, &tv);
        }
        if (rc) goto oom; /* allocation */
    }
    if (add_special && v->add_eos && v->eos >= 0 && (rc = sl_tokvec_push(&tv, v->eos))) goto oom;

    free(frags.v);
    free(buf);
    if (tv.n == 0) {
        free(tv.v);
        return 0;
    }
    *out = tv.v;
    *n_out = tv.n;
    return 0;
oom:
    free(frags.v);
    free(buf);
    free(tv.v);
    return sl_err_set(err, SL_ENOMEM, "%s: out of memory (%zu bytes of input)", __func__, len);
}

/* ------------------------------------------------------------------------ */
/* pieces                                                                    */
/* ------------------------------------------------------------------------ */

/* The piece of tok as printed: control/unknown ones are empty unless
 * special. tok must be in range. */
static struct sl_str piece_of(const struct sl_vocab *v, int32_t tok, bool special)
{
    if (!special && (v->attr[tok] & (SL_ATTR_CONTROL | SL_ATTR_UNKNOWN)))
        return (struct sl_str){"", 0};
    return v->piece[tok];
}

int sl_token_to_piece(const struct sl_vocab *v, int32_t tok, char *buf, size_t cap, bool special)
{
    if (!in_range(v, tok)) return 0;
    struct sl_str p = piece_of(v, tok, special);
    if (p.len > cap) return -(int)p.len;
    if (p.len) memcpy(buf, p.ptr, p.len);
    return (int)p.len;
}

/* llama.cpp's clean_up_tokenization_spaces, three passes in place. */
static size_t clean_spaces(char *text, size_t total)
{
    size_t t1 = total;
    total = total ? 1 : 0;
    for (size_t i = 1; i < t1; i++) {
        char x = text[i];
        if (text[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ','))
            total--; /* " ?", " !", " .", " ," */
        text[total++] = x;
    }
    size_t t2 = total;
    total = total ? 1 : 0;
    for (size_t i = 1; i < t2; i++) {
        char x = text[i];
        if (x == '\'' && i + 1 < t2 && text[i - 1] == ' ' && text[i + 1] == ' ') {
            total--;       /* " ' " */
            text[++i] = 0; /* drops the next space */
        }
        text[total++] = x;
    }
    size_t t3 = total;
    total = total ? 1 : 0;
    for (size_t i = 1; i < t3; i++) {
        char x = text[i];
        if (text[i - 1] == ' ' && x == '\'' && i + 1 < t3) {
            char x1 = text[i + 1];
            if (x1 == 's' || x1 == 'm')
                total--; /* " 's", " 'm" */
            else if (i + 2 < t3 &&
                     ((x1 == 'r' && text[i + 2] == 'e') || (x1 == 'v' && text[i + 2] == 'e')))
                total--; /* " 're", " 've" */
        }
        text[total++] = x;
    }
    return total;
}

int sl_detokenize(const struct sl_vocab *v, const int32_t *toks, size_t n, bool special, char **out,
                  size_t *len, struct sl_err *err)
{
    size_t total = 0, strip_at = (n > 0 && toks[0] == v->bos) ? 1 : 0;
    *out = NULL;
    if (len) *len = 0;
    for (size_t i = 0; i < n; i++) {
        if (!in_range(v, toks[i]))
            return sl_err_set(err, SL_EINVAL, "%s: token %zu is %d, outside the vocab (0..%d)",
                              __func__, i, toks[i], v->n_tokens - 1);
        total += piece_of(v, toks[i], special).len;
    }
    char *s = malloc(total + 1);
    if (!s) return sl_err_set(err, SL_ENOMEM, "%s: out of memory (%zu bytes)", __func__, total);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        struct sl_str p = piece_of(v, toks[i], special);
        if (v->add_space_prefix && i == strip_at && p.len && p.ptr[0] == ' ') p.ptr++, p.len--;
        memcpy(s + k, p.ptr, p.len);
        k += p.len;
    }
    if (v->clean_spaces) k = clean_spaces(s, k);
    s[k] = 0;
    *out = s;
    if (len) *len = k;
    return 0;
}
