/*
 * tok_unicode.c - Unicode helpers for the tokenizers (engine layer).
 *
 * Categories and NFC come from libutf8proc; the UTF-8 decoder is our own so
 * that malformed input behaves exactly as in llama.cpp's unicode.cpp (one
 * U+FFFD per bad byte) and so that it never reads past the buffer.
 */
#include "tok_unicode.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "../base/err.h"

static bool is_white_space(uint32_t cp)
{
    /* Unicode White_Space, the set Python's regex \s and llama.cpp use. */
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    if (cp < 0x85) return false;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

unsigned sl_cpt_flags(uint32_t cp)
{
    unsigned f = 0;
    if (cp > SL_CPT_MAX) return 0;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LT:
        f = SL_CPT_LETTER | SL_CPT_UPPER;
        break;
    case UTF8PROC_CATEGORY_LL:
        f = SL_CPT_LETTER | SL_CPT_LOWER;
        break;
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
        f = SL_CPT_LETTER;
        break;
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
        f = SL_CPT_MARK;
        break;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
        f = SL_CPT_NUMBER;
        break;
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
        f = SL_CPT_PUNCT;
        break;
    case UTF8PROC_CATEGORY_SM:
    case UTF8PROC_CATEGORY_SC:
    case UTF8PROC_CATEGORY_SK:
    case UTF8PROC_CATEGORY_SO:
        f = SL_CPT_SYMBOL;
        break;
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
        f = SL_CPT_SEPARATOR;
        break;
    default:
        f = SL_CPT_CONTROL;
        break; /* Cc, Cf, Cs, Co and unassigned Cn */
    }
    if (is_white_space(cp)) f |= SL_CPT_WHITESPACE;
    return f;
}

uint32_t sl_cpt_tolower(uint32_t cp)
{
    if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    if (cp > SL_CPT_MAX) return cp;
    return (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
}

size_t sl_utf8_len(unsigned char lead)
{
    static const uint8_t len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return len[lead >> 4];
}

static bool is_cont(const char *s, size_t i)
{
    return ((unsigned char)s[i] & 0xC0) == 0x80;
}

size_t sl_utf8_decode(const char *s, size_t n, uint32_t *cp)
{
    const unsigned char c = (unsigned char)s[0];
    uint32_t v;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if ((c & 0xE0) == 0xC0) {
        if (n < 2 || !is_cont(s, 1)) goto bad;
        *cp = ((uint32_t)(c & 0x1F) << 6) | ((unsigned char)s[1] & 0x3F);
        return 2;
    }
    if ((c & 0xF0) == 0xE0) {
        if (n < 3 || !is_cont(s, 1) || !is_cont(s, 2)) goto bad;
        *cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)((unsigned char)s[1] & 0x3F) << 6) |
              ((unsigned char)s[2] & 0x3F);
        return 3;
    }
    if ((c & 0xF8) == 0xF0) {
        if (n < 4 || !is_cont(s, 1) || !is_cont(s, 2) || !is_cont(s, 3)) goto bad;
        v = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)((unsigned char)s[1] & 0x3F) << 12) |
            ((uint32_t)((unsigned char)s[2] & 0x3F) << 6) | ((unsigned char)s[3] & 0x3F);
        if (v > SL_CPT_MAX) goto bad;
        *cp = v;
        return 4;
    }
bad: /* a continuation byte, 0xF8..0xFF, or a broken sequence */
    *cp = SL_CPT_REPLACEMENT;
    return 1;
}

size_t sl_utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | ((cp >> 18) & 0x07));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* GPT-2's bytes_to_unicode(): the printable Latin-1 bytes 0x21..0x7E,
 * 0xA1..0xAC and 0xAE..0xFF stand for themselves; the 68 others map in
 * order to U+0100..U+0143: 0x00..0x20 -> U+0100.., 0x7F..0xA0 -> U+0121..,
 * 0xAD -> U+0143. */
uint32_t sl_bpe_byte_to_cpt(uint8_t b)
{
    if (b <= 0x20) return 0x100u + b;
    if (b >= 0x7F && b <= 0xA0) return 0x121u + (b - 0x7Fu);
    if (b == 0xAD) return 0x143u;
    return b;
}

int sl_bpe_cpt_to_byte(uint32_t cp)
{
    if (cp < 0x100) {
        bool printable = (cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || cp >= 0xAE;
        return printable ? (int)cp : -1;
    }
    if (cp <= 0x120) return (int)(cp - 0x100);
    if (cp <= 0x142) return (int)(cp - 0x121 + 0x7F);
    if (cp == 0x143) return 0xAD;
    return -1;
}

int sl_utf8_nfc(const char *s, size_t n, char **out, size_t *out_len)
{
    /* NFC never grows a string by more than 3x; the raw copies do not grow. */
    size_t cap = n * 3 + 1, len = 0, i = 0, run = 0;
    char *buf = malloc(cap);
    if (!buf) return SL_ENOMEM;
    while (i <= n) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = 0;
        if (i < n)
            k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (i < n && k > 0) {
            i += (size_t)k;
            continue;
        }
        /* flush the valid run [run, i) normalized */
        if (i > run) {
            utf8proc_uint8_t *dst = NULL;
            utf8proc_ssize_t m =
                utf8proc_map((const utf8proc_uint8_t *)s + run, (utf8proc_ssize_t)(i - run), &dst,
                             UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            if (m < 0 || len + (size_t)m > cap) {
                /* cannot happen for a run utf8proc_iterate accepted */
                free(dst);
                memcpy(buf + len, s + run, i - run);
                len += i - run;
            } else {
                memcpy(buf + len, dst, (size_t)m);
                len += (size_t)m;
                free(dst);
            }
        }
        if (i == n) break;
        buf[len++] = s[i++]; /* a byte utf8proc rejects: keep it as is */
        run = i;
    }
    *out = buf;
    *out_len = len;
    return 0;
}
