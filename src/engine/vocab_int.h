/*
 * vocab_int.h - internals shared by vocab.c, tok_spm.c and tok_bpe.c
 * (engine layer). Not an interface: include vocab.h from elsewhere.
 */
#ifndef SL_VOCAB_INT_H
#define SL_VOCAB_INT_H

#include "vocab.h"

/* Token attributes (llama.cpp's llama_token_attr). */
enum sl_tok_attr {
    SL_ATTR_UNDEFINED = 0,
    SL_ATTR_UNKNOWN = 1u << 0,
    SL_ATTR_UNUSED = 1u << 1,
    SL_ATTR_NORMAL = 1u << 2,
    SL_ATTR_CONTROL = 1u << 3,
    SL_ATTR_USER_DEFINED = 1u << 4,
    SL_ATTR_BYTE = 1u << 5,
    SL_ATTR_LSTRIP = 1u << 7,
    SL_ATTR_RSTRIP = 1u << 8,
};

/* A growable token list. */
struct sl_tokvec {
    int32_t *v;
    size_t n, cap;
};

int sl_tokvec_push(struct sl_tokvec *tv, int32_t tok);

/* Open-addressing map from byte strings to indices into `keys`. */
struct sl_strmap {
    uint32_t *slot;            /* index + 1; 0 = empty */
    size_t mask;               /* slots - 1 (a power of two) */
    const struct sl_str *keys; /* owned by the vocab */
};

/* -1 when absent. */
int32_t sl_strmap_get(const struct sl_strmap *m, const char *s, size_t len);

/* Pre-tokenizer: up to SL_PRE_MAX_STAGES regex stages applied in turn, each
 * splitting the pieces the previous ones left (llama.cpp's regex_exprs). */
#define SL_PRE_MAX_STAGES 6
#define SL_PRE_MAX_RANGES 128

enum sl_pre_kind {
    SL_PRE_GPT2 =
        1,          /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    SL_PRE_LLAMA3,  /* (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n]*|...
                     */
    SL_PRE_O200K,   /* GPT-4o / Tekken: case-aware words, then as llama3 */
    SL_PRE_CLASS,   /* [prefix] class {min,max} */
    SL_PRE_WS_TAIL, /* \s+$ */
};

struct sl_pre_class {
    uint32_t range[SL_PRE_MAX_RANGES][2]; /* inclusive code point ranges */
    unsigned n_range;
    unsigned cats; /* SL_CPT_NUMBER | SL_CPT_LETTER | SL_CPT_PUNCT | SL_CPT_WHITESPACE */
    bool negate;
};

struct sl_pre_stage {
    enum sl_pre_kind kind;
    unsigned max_digits; /* SL_PRE_LLAMA3, SL_PRE_O200K: 3 or 1 */
    bool contractions;   /* SL_PRE_O200K */
    int prefix;          /* SL_PRE_CLASS: 0, ' ' (optional space) or 's' (optional \s) */
    unsigned min, max;   /* SL_PRE_CLASS repeat count; max 0 = unbounded */
    struct sl_pre_class cls;
};

struct sl_pre {
    char name[32];
    struct sl_pre_stage stage[SL_PRE_MAX_STAGES];
    unsigned n_stage;
    bool clean_spaces, ignore_merges, add_bos, nfc, no_bos;
};

/* Compile the pre-tokenizer named `name` (e.g. "llama-bpe") into *pre.
 * SL_EUNSUPPORTED for a name we do not implement. */
int sl_pre_init(struct sl_pre *pre, const char *name, size_t len, struct sl_err *err);

/* For tests: split text with pre (no BPE). *buf gets the pieces as UTF-8
 * back to back, *piece_len their byte lengths; both malloc'd. */
int sl_pre_split(const struct sl_pre *pre, const char *text, size_t len, char **buf,
                 size_t **piece_len, size_t *n_piece);

#define SL_EOG_MAX 32

struct sl_vocab {
    enum sl_vocab_type type;
    int32_t n_tokens;
    struct sl_str *text;  /* (n_tokens) token texts, into `arena` */
    float *score;         /* (n_tokens) */
    uint32_t *attr;       /* (n_tokens) enum sl_tok_attr bits */
    int8_t *ttype;        /* (n_tokens) enum sl_token_type as loaded (after overrides) */
    struct sl_str *piece; /* (n_tokens) token_to_piece(special=true), into `piece_arena` */
    char *arena, *piece_arena;
    struct sl_strmap tok_map;

    /* BPE */
    struct sl_str *merge; /* (n_merges) "left right", into `merge_arena` */
    uint32_t n_merges;
    char *merge_arena;
    struct sl_strmap merge_map;
    struct sl_pre pre;

    /* special tokens: -1 = none */
    int32_t bos, eos, eot, eom, unk, sep, pad, nl;
    int32_t fim_pre, fim_suf, fim_mid, fim_pad, fim_rep, fim_sep;
    int32_t eog[SL_EOG_MAX];
    unsigned n_eog;
    int32_t *special; /* control/user-defined/unknown ids, longest text first */
    size_t n_special;
    int32_t byte_tok[256]; /* SPM byte fallback token per byte, -1 = none */

    bool add_bos, add_eos, add_space_prefix, clean_spaces;
};

/* Encoders: append the tokens of one raw text fragment to out. Return 0 or
 * SL_ENOMEM. The SPM one expects spaces already escaped to U+2581. */
int sl_tok_spm_encode(const struct sl_vocab *v, const char *text, size_t len,
                      struct sl_tokvec *out);
int sl_tok_bpe_encode(const struct sl_vocab *v, const char *text, size_t len,
                      struct sl_tokvec *out);

#endif
