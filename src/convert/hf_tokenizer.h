/*
 * hf_tokenizer.h - Hugging Face / Meta tokenizer files -> GGUF tokenizer
 * metadata (convert layer; uses jansson).
 *
 * Sets the tokenizer.ggml.* keys (and tokenizer.chat_template) on a GGUF
 * writer the way llama.cpp's convert_hf_to_gguf.py does, from:
 *   tokenizer.json                  HF "tokenizers" byte-level BPE
 *   vocab.json + merges.txt         the older GPT-2 style pair
 *   tokenizer.model (tiktoken)      "base64 rank" lines (Llama 3); merges are
 *                                   recovered from the ranks
 *   tokenizer.model (sentencepiece) the ModelProto protobuf (Llama 2,
 *                                   Mistral): pieces, scores, types
 * plus, when given, tokenizer_config.json (added tokens, bos/eos/pad/unk,
 * add_bos_token, chat_template) and config.json (bos/eos ids).
 *
 * Hard limits on the inputs are below; every length in a file is checked
 * against them and against the file size before use.
 */
#ifndef SL_HF_TOKENIZER_H
#define SL_HF_TOKENIZER_H

#include <stddef.h>

#include "base/err.h"
#include "engine/gguf.h"

#define SL_HF_MAX_FILE (256u << 20)   /* bytes of any one tokenizer file */
#define SL_HF_MAX_TOKENS (1u << 22)   /* tokens (including added ones) */
#define SL_HF_MAX_TOKEN_ID (1u << 22) /* largest token id accepted */

/* The tokenizer files found among `paths` (files, or directories searched
 * for the usual names). NULL members are absent. */
struct sl_hf_files {
    const char *tokenizer_json;   /* tokenizer.json */
    const char *vocab_json;       /* vocab.json */
    const char *merges_txt;       /* merges.txt */
    const char *tokenizer_model;  /* tokenizer.model / *.model (tiktoken or sentencepiece) */
    const char *tokenizer_config; /* tokenizer_config.json */
    const char *config_json;      /* config.json */
};

/* Set the tokenizer metadata on w from the files given. Which importer runs
 * is decided by what is present: tokenizer.json, else vocab.json+merges.txt,
 * else tokenizer.model (told apart by content). pre_override, when not NULL,
 * names the pre-tokenizer (tokenizer.ggml.pre) instead of guessing it.
 * Errors: SL_ENOTFOUND (no usable file), SL_EIO, SL_EFORMAT (with the file
 * and position), SL_EUNSUPPORTED (e.g. a pre-tokenizer we cannot guess:
 * pass pre_override), SL_ERANGE (past the SL_HF_* limits), SL_ENOMEM. */
int sl_hf_tokenizer_set(struct sl_gguf_writer *w, const struct sl_hf_files *files,
                        const char *pre_override, struct sl_err *err);

/* Sort paths (files or directories) into *files. The strings in *files
 * point into `storage` (caller-provided, at least 6 * 4096 bytes) or into
 * paths; they stay valid while both do. SL_ENOTFOUND when nothing is found,
 * SL_EINVAL for a file whose role cannot be told from its name. */
int sl_hf_files_find(const char *const *paths, size_t n, struct sl_hf_files *files, char *storage,
                     size_t storage_len, struct sl_err *err);

/* `sluice convert --tokenizer PATH... --out OUT.gguf`: a vocab-only GGUF
 * (general.architecture "tokenizer", no tensors) from the files or
 * directories in paths. */
int sl_hf_tokenizer_convert(const char *const *paths, size_t n, const char *pre_override,
                            const char *out_path, struct sl_err *err);

#endif
