/*
 * vocab.h - tokenizers, as llama.cpp's llama-vocab (engine layer).
 *
 * A vocabulary is loaded from a GGUF file's tokenizer.ggml.* metadata:
 *   model "llama": SentencePiece-style BPE over scores with <0xNN> byte
 *                  fallback (tok_spm.c);
 *   model "gpt2":  byte-level BPE over tokenizer.ggml.merges ranks, after a
 *                  pre-tokenizer chosen by tokenizer.ggml.pre (tok_bpe.c).
 * Given the same GGUF, sl_tokenize() gives the ids llama_tokenize() gives
 * (see docs/internals/tokenizer.md for the supported pre-tokenizers and the
 * few deliberate differences).
 *
 * A loaded vocab is immutable and owns copies of everything it needs: the
 * GGUF may be freed after sl_vocab_load(). Every function below is
 * thread-safe on a shared vocab.
 */
#ifndef SL_VOCAB_H
#define SL_VOCAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

/* Hard limits (named so tests and docs agree). */
#define SL_TOK_MAX_INPUT (4u << 20)       /* bytes one sl_tokenize() call accepts (~1M tokens) */
#define SL_VOCAB_MAX_TOKENS (1u << 22)    /* tokens a vocab may have (4M) */
#define SL_VOCAB_MAX_MERGES (1u << 23)    /* BPE merges a vocab may have */
#define SL_VOCAB_MAX_TOKEN_LEN (1u << 16) /* bytes of one token's text */

enum sl_vocab_type {
    SL_VOCAB_SPM = 1, /* tokenizer.ggml.model = "llama" */
    SL_VOCAB_BPE = 2, /* tokenizer.ggml.model = "gpt2" */
};

/* tokenizer.ggml.token_type values (as in GGUF and sentencepiece). */
enum sl_token_type {
    SL_TOKEN_TYPE_UNDEFINED = 0,
    SL_TOKEN_TYPE_NORMAL = 1,
    SL_TOKEN_TYPE_UNKNOWN = 2,
    SL_TOKEN_TYPE_CONTROL = 3,
    SL_TOKEN_TYPE_USER_DEFINED = 4,
    SL_TOKEN_TYPE_UNUSED = 5,
    SL_TOKEN_TYPE_BYTE = 6,
};

struct sl_vocab;

/* Build a vocab from g's tokenizer metadata. Errors: SL_ENOTFOUND (no
 * tokenizer.ggml.model / tokens), SL_EUNSUPPORTED (a tokenizer model or
 * pre-tokenizer we do not implement, e.g. "bert"), SL_EFORMAT (arrays of the
 * wrong type or length), SL_ERANGE (past the SL_VOCAB_* limits), SL_ENOMEM.
 * On success the caller owns *out (sl_vocab_free). */
int sl_vocab_load(struct sl_vocab **out, const struct sl_gguf *g, struct sl_err *err);
void sl_vocab_free(struct sl_vocab *v);

enum sl_vocab_type sl_vocab_type(const struct sl_vocab *v);
/* The pre-tokenizer in use ("default", "llama-bpe", ...; "" for SPM). */
const char *sl_vocab_pre(const struct sl_vocab *v);
int32_t sl_vocab_n_tokens(const struct sl_vocab *v);

/* Special token ids; -1 when the vocab has none. */
int32_t sl_vocab_bos(const struct sl_vocab *v);
int32_t sl_vocab_eos(const struct sl_vocab *v);
int32_t sl_vocab_eot(const struct sl_vocab *v);
int32_t sl_vocab_unk(const struct sl_vocab *v);
int32_t sl_vocab_pad(const struct sl_vocab *v);
int32_t sl_vocab_nl(const struct sl_vocab *v); /* the token of "\n" */
bool sl_vocab_add_bos(const struct sl_vocab *v);
bool sl_vocab_add_eos(const struct sl_vocab *v);

/* End of generation: eos, eot, eom and the tokens llama.cpp adds to
 * special_eog_ids by text (<|im_end|>, <|eot_id|>, <end_of_turn>, <|end|>,
 * <|endoftext|>, FIM pad/repo/sep, ...). False for ids out of range. */
bool sl_vocab_is_eog(const struct sl_vocab *v, int32_t tok);
/* Control (or unknown) tokens print as "" unless asked for. */
bool sl_vocab_is_control(const struct sl_vocab *v, int32_t tok);
/* The token's type after llama.cpp's overrides (e.g. "<|im_end|>" is forced
 * to CONTROL); SL_TOKEN_TYPE_UNDEFINED for ids out of range. */
enum sl_token_type sl_vocab_token_type(const struct sl_vocab *v, int32_t tok);
/* The token's raw vocabulary text (not NUL-terminated; valid while v
 * lives), or NULL for ids out of range. */
const char *sl_vocab_token_text(const struct sl_vocab *v, int32_t tok, size_t *len);
float sl_vocab_token_score(const struct sl_vocab *v, int32_t tok);

/* Exact lookup of a token's raw text; -1 when absent. */
int32_t sl_vocab_find(const struct sl_vocab *v, const char *text, size_t len);

/* Tokenize text[0..len). add_special adds BOS/EOS as the model's flags say;
 * parse_special turns control/unknown token texts in the input into those
 * tokens (user-defined tokens are always matched, as in llama.cpp). Input
 * need not be valid UTF-8. On success *out is malloc'd (free it; NULL when
 * *n_out is 0). SL_ERANGE past SL_TOK_MAX_INPUT, SL_ENOMEM. */
int sl_tokenize(const struct sl_vocab *v, const char *text, size_t len, bool add_special,
                bool parse_special, int32_t **out, size_t *n_out, struct sl_err *err);

/* The bytes of one token (SPM: U+2581 -> ' ', <0xNN> -> the byte; BPE: the
 * byte-level alphabet -> bytes). Control and unknown tokens give "" unless
 * special is true. Writes no terminator. Returns the length written, or
 * minus the length needed when cap is too small; 0 for ids out of range. */
int sl_token_to_piece(const struct sl_vocab *v, int32_t tok, char *buf, size_t cap, bool special);

/* Concatenate the pieces of toks into a malloc'd, NUL-terminated *out
 * (length *len, may be NULL). For SPM-style vocabs (add_space_prefix) the
 * leading space of the first token after an optional BOS is dropped; for
 * BPE vocabs with clean_spaces the " ." " ," " 's"... clean-up of
 * llama.cpp is applied. Ids out of range give SL_EINVAL. */
int sl_detokenize(const struct sl_vocab *v, const int32_t *toks, size_t n, bool special, char **out,
                  size_t *len, struct sl_err *err);

#endif
