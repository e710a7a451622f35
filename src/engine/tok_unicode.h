/*
 * tok_unicode.h - the Unicode pieces the tokenizers need (engine layer,
 * libutf8proc underneath): UTF-8 decoding with llama.cpp's rules, code point
 * classes for the pre-tokenizer regexes, GPT-2's byte <-> code point map and
 * NFC.
 *
 * Shared by vocab.c, tok_spm.c, tok_bpe.c and the tokenizer importer
 * (convert/hf_tokenizer.c); not a general API.
 */
#ifndef SL_TOK_UNICODE_H
#define SL_TOK_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Code point classes, as the regex classes of the pre-tokenizers see them.
 * Every code point up to U+10FFFF has at least one bit set (unassigned ones
 * count as \p{C}), so 0 means "outside the text", as in llama.cpp. */
enum sl_cpt_flag {
    SL_CPT_NUMBER = 1u << 0,     /* \p{N} */
    SL_CPT_LETTER = 1u << 1,     /* \p{L} */
    SL_CPT_SEPARATOR = 1u << 2,  /* \p{Z} */
    SL_CPT_MARK = 1u << 3,       /* \p{M} */
    SL_CPT_PUNCT = 1u << 4,      /* \p{P} */
    SL_CPT_SYMBOL = 1u << 5,     /* \p{S} */
    SL_CPT_CONTROL = 1u << 6,    /* \p{C}, including unassigned */
    SL_CPT_WHITESPACE = 1u << 7, /* \s: Unicode White_Space */
    SL_CPT_UPPER = 1u << 8,      /* Lu, Lt */
    SL_CPT_LOWER = 1u << 9,      /* Ll */
};

#define SL_CPT_REPLACEMENT 0xFFFDu
#define SL_CPT_MAX 0x10FFFFu

/* Class bits of one code point; 0 above U+10FFFF. */
unsigned sl_cpt_flags(uint32_t cp);

/* Simple lower-case mapping. */
uint32_t sl_cpt_tolower(uint32_t cp);

/* Byte length of the UTF-8 sequence a lead byte announces (1 for a
 * continuation byte or 0xF8..0xFF), as llama.cpp's unicode_len_utf8. */
size_t sl_utf8_len(unsigned char lead);

/* Decode one code point from s[0..n), n >= 1. Follows llama.cpp: overlong
 * forms and surrogates are accepted; a malformed or truncated sequence, or
 * one above U+10FFFF, gives U+FFFD and consumes one byte. Returns the bytes
 * consumed (1..4); never reads past s[n-1]. */
size_t sl_utf8_decode(const char *s, size_t n, uint32_t *cp);

/* Encode cp (<= U+10FFFF, surrogates allowed) into out; returns 1..4. */
size_t sl_utf8_encode(uint32_t cp, char out[4]);

/* GPT-2 byte-level alphabet: the code point standing for byte b. */
uint32_t sl_bpe_byte_to_cpt(uint8_t b);
/* The byte a code point stands for, or -1 if cp is not in the alphabet. */
int sl_bpe_cpt_to_byte(uint32_t cp);

/* NFC of s[0..n) into a malloc'd buffer (*out, *out_len; not terminated
 * beyond *out_len). Runs that utf8proc rejects (bad bytes, surrogates) are
 * copied unchanged. Returns 0 or SL_ENOMEM. */
int sl_utf8_nfc(const char *s, size_t n, char **out, size_t *out_len);

#endif
