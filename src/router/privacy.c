/*
 * privacy.c - PII detection, redaction and restoration, and the privacy
 * decision per route (router layer). See privacy.h; the rules of each
 * detector are listed in docs/router.md.
 *
 * Built-in detectors are small scanners over bytes (ASCII rules; bytes >=
 * 0x80 count as "not a letter or digit"), each validating what it can
 * (Luhn, mod-97, ISO 7064) so that look-alikes are not flagged. Configured
 * patterns go through PCRE2 with match limits.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "router/privacy.h"

#include <pcre2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sl_pii_detector {
    unsigned kinds;
    size_t n_patterns;
    struct {
        char label[SL_PII_LABEL_MAX];
        pcre2_code *code;
    } pat[SL_PII_MAX_PATTERNS];
    pcre2_match_context *mctx;
};

static const char *kind_labels[SL_PII_KIND_COUNT] = {
    "EMAIL", "PHONE", "CARD", "IBAN", "SSN", "NINO", "DE_TAXID", "FR_INSEE", "CUSTOM",
};

const char *sl_pii_kind_name(enum sl_pii_kind k)
{
    return (unsigned)k < SL_PII_KIND_COUNT ? kind_labels[k] : "?";
}

struct sl_pii_params sl_pii_default_params(void)
{
    struct sl_pii_params p = {
        .kinds = (1u << SL_PII_CUSTOM) - 1, .patterns = NULL, .n_patterns = 0};
    return p;
}

/* ================================================================ helpers */

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}
static int is_upper(int c)
{
    return c >= 'A' && c <= 'Z';
}
static int is_lower(int c)
{
    return c >= 'a' && c <= 'z';
}
static int is_alpha(int c)
{
    return is_upper(c) || is_lower(c);
}
static int is_alnum(int c)
{
    return is_alpha(c) || is_digit(c);
}

/* Byte at i, or 0 outside the text. */
static int at(const char *t, size_t len, size_t i)
{
    return i < len ? (unsigned char)t[i] : 0;
}
static int left_ok(const char *t, size_t i)
{
    return i == 0 || !is_alnum((unsigned char)t[i - 1]);
}

/* A run of digit groups separated by single separators from `seps`.
 * Stops before a separator not followed by a digit. Keeps up to
 * RUN_MAX digits (more: too_long). */
#define RUN_MAX 24
#define RUN_GROUPS 12
struct run {
    size_t end; /* just past the last digit */
    int nd;     /* digits */
    char d[RUN_MAX + 1];
    int ng;                  /* groups */
    int glen[RUN_GROUPS];    /* digits per group */
    size_t gend[RUN_GROUPS]; /* end offset of each group */
    int too_long;
};

static void scan_run(const char *t, size_t len, size_t i, const char *seps, struct run *r)
{
    memset(r, 0, sizeof *r);
    r->end = i;
    while (i < len && is_digit((unsigned char)t[i])) {
        int g = 0;
        while (i < len && is_digit((unsigned char)t[i])) {
            if (r->nd < RUN_MAX)
                r->d[r->nd] = t[i];
            else
                r->too_long = 1;
            r->nd++, g++, i++;
        }
        if (r->ng < RUN_GROUPS) {
            r->glen[r->ng] = g;
            r->gend[r->ng] = i;
            r->ng++;
        } else {
            r->too_long = 1;
        }
        r->end = i;
        if (i + 1 < len && strchr(seps, t[i]) && t[i] && is_digit((unsigned char)t[i + 1])) {
            i++;
            continue;
        }
        break;
    }
    if (r->nd > RUN_MAX) r->nd = RUN_MAX, r->too_long = 1;
    r->d[r->nd] = 0;
}

/* ================================================================ detectors */

struct acc {
    struct sl_pii_span *s;
    size_t n, max;
    int overflow;
};

static void add(struct acc *a, size_t start, size_t len, enum sl_pii_kind k, int pattern)
{
    if (a->n == a->max) {
        a->overflow = 1;
        return;
    }
    a->s[a->n].start = start;
    a->s[a->n].len = len;
    a->s[a->n].kind = k;
    a->s[a->n].pattern = pattern;
    a->n++;
}

/* ---------------------------------------------------------------- e-mail */

static int local_char(int c)
{
    return is_alnum(c) || (c && strchr("._%+-", c));
}
static int domain_char(int c)
{
    return is_alnum(c) || c == '.' || c == '-';
}

static void find_email(const char *t, size_t len, struct acc *a)
{
    size_t last_end = 0;
    for (size_t i = 0; i < len; i++) {
        if (t[i] != '@' || i < last_end) continue;
        size_t s = i;
        while (s > last_end && local_char((unsigned char)t[s - 1]) && i - s < 64)
            s--;
        while (s < i && t[s] == '.')
            s++; /* no leading dot */
        if (s == i || t[i - 1] == '.') continue;
        size_t e = i + 1;
        while (e < len && domain_char((unsigned char)t[e]) && e - i < 255)
            e++;
        while (e > i + 1 && (t[e - 1] == '.' || t[e - 1] == '-'))
            e--; /* "a@b.com." */
        /* domain: labels of [A-Za-z0-9-], no empty label, >= 2 labels,
         * last label >= 2 letters */
        size_t ds = i + 1, labels = 0, lab_start = ds, ok = e > ds;
        for (size_t k = ds; ok && k <= e; k++) {
            if (k == e || t[k] == '.') {
                if (k == lab_start || t[lab_start] == '-' || t[k - 1] == '-') ok = 0;
                labels++;
                if (k == e) {
                    if (k - lab_start < 2) ok = 0;
                    for (size_t q = lab_start; q < k; q++)
                        if (!is_alpha((unsigned char)t[q])) ok = 0;
                }
                lab_start = k + 1;
            }
        }
        if (!ok || labels < 2) continue;
        add(a, s, e - s, SL_PII_EMAIL, -1);
        last_end = e;
    }
}

/* ---------------------------------------------------------------- cards */

static int luhn_ok(const char *d, int n)
{
    int sum = 0;
    for (int k = 0; k < n; k++) {
        int v = d[n - 1 - k] - '0';
        if (k & 1) {
            v *= 2;
            if (v > 9) v -= 9;
        }
        sum += v;
    }
    return sum % 10 == 0;
}

static int prefix_num(const char *d, int k)
{
    int v = 0;
    for (int i = 0; i < k; i++)
        v = v * 10 + (d[i] - '0');
    return v;
}

/* Issuer prefixes (IIN ranges) of the major networks and their lengths. */
static int iin_ok(const char *d, int n)
{
    int p1 = d[0] - '0', p2 = prefix_num(d, 2), p3 = prefix_num(d, 3), p4 = prefix_num(d, 4);
    int p6 = n >= 6 ? prefix_num(d, 6) : 0;
    if (p1 == 4) return n == 13 || n == 16 || n == 19;                        /* Visa */
    if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) return n == 16; /* Mastercard */
    if (p2 == 34 || p2 == 37) return n == 15;                                 /* Amex */
    if (p4 == 6011 || p2 == 65 || (p3 >= 644 && p3 <= 649) || (p6 >= 622126 && p6 <= 622925))
        return n >= 16 && n <= 19;                           /* Discover */
    if (p4 >= 3528 && p4 <= 3589) return n >= 16 && n <= 19; /* JCB */
    if (p2 == 36 || p2 == 38 || p2 == 39 || (p3 >= 300 && p3 <= 305) || p2 == 30)
        return n >= 14 && n <= 19;                                     /* Diners */
    if (p2 == 62) return n >= 16 && n <= 19;                           /* UnionPay */
    if (p2 == 50 || (p2 >= 56 && p2 <= 69)) return n >= 12 && n <= 19; /* Maestro */
    return 0;
}

static void find_card(const char *t, size_t len, struct acc *a)
{
    for (size_t i = 0; i < len; i++) {
        if (!is_digit((unsigned char)t[i]) || !left_ok(t, i)) continue;
        struct run r;
        scan_run(t, len, i, " -", &r);
        /* try every group boundary, longest first, that leaves a clean edge */
        int found = 0;
        for (int g = r.ng - 1; g >= 0 && !found; g--) {
            int nd = 0;
            for (int k = 0; k <= g; k++)
                nd += r.glen[k];
            if (nd < 13 || nd > 19 || nd > RUN_MAX) continue;
            if (is_alnum(at(t, len, r.gend[g]))) continue;
            if (iin_ok(r.d, nd) && luhn_ok(r.d, nd)) {
                add(a, i, r.gend[g] - i, SL_PII_CARD, -1);
                found = 1;
            }
        }
        i = r.end > i ? r.end - 1 : i;
    }
}

/* ---------------------------------------------------------------- IBAN */

static const struct {
    char cc[3];
    int len;
} iban_lengths[] = {
    {"AD", 24}, {"AE", 23}, {"AT", 20}, {"BA", 20}, {"BE", 16}, {"BG", 22}, {"CH", 21}, {"CY", 28},
    {"CZ", 24}, {"DE", 22}, {"DK", 18}, {"EE", 20}, {"ES", 24}, {"FI", 18}, {"FR", 27}, {"GB", 22},
    {"GR", 27}, {"HR", 21}, {"HU", 28}, {"IE", 22}, {"IS", 26}, {"IT", 27}, {"LI", 21}, {"LT", 20},
    {"LU", 20}, {"LV", 21}, {"MC", 27}, {"MT", 31}, {"NL", 18}, {"NO", 15}, {"PL", 28}, {"PT", 25},
    {"RO", 24}, {"SA", 24}, {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27}, {"TR", 26},
};

static int iban_len_for(const char *cc)
{
    for (size_t k = 0; k < sizeof iban_lengths / sizeof *iban_lengths; k++)
        if (cc[0] == iban_lengths[k].cc[0] && cc[1] == iban_lengths[k].cc[1])
            return iban_lengths[k].len;
    return 0;
}

/* s: n upper-case alnum chars of an IBAN (no spaces). */
static int iban_mod97_ok(const char *s, int n)
{
    int rem = 0;
    for (int k = 0; k < n; k++) {
        int c = (unsigned char)s[(k + 4) % n];
        if (is_digit(c)) {
            rem = (rem * 10 + (c - '0')) % 97;
        } else {
            int v = c - 'A' + 10;
            rem = (rem * 100 + v) % 97;
        }
    }
    return rem == 1;
}

static void find_iban(const char *t, size_t len, struct acc *a)
{
    for (size_t i = 0; i + 15 <= len; i++) {
        if (!is_upper((unsigned char)t[i]) || !is_upper(at(t, len, i + 1)) ||
            !is_digit(at(t, len, i + 2)) || !is_digit(at(t, len, i + 3)) || !left_ok(t, i))
            continue;
        int want = iban_len_for(t + i);
        /* collect up to 34 chars, single spaces allowed between chars */
        char s[35];
        size_t end_at[35];
        int n = 0;
        size_t k = i;
        while (k < len && n < 34) {
            int c = (unsigned char)t[k];
            if (is_upper(c) || is_digit(c)) {
                s[n] = (char)c;
                end_at[n] = k + 1;
                n++, k++;
            } else if (c == ' ' && n >= 4 && k + 1 < len &&
                       (is_upper(at(t, len, k + 1)) || is_digit(at(t, len, k + 1)))) {
                k++;
            } else {
                break;
            }
        }
        int lo = want ? want : 15, hi = want ? want : SL_MIN(n, 34);
        for (int m = hi; m >= lo; m--) {
            if (m > n) continue;
            if (is_alnum(at(t, len, end_at[m - 1]))) continue; /* must end cleanly */
            if (iban_mod97_ok(s, m)) {
                add(a, i, end_at[m - 1] - i, SL_PII_IBAN, -1);
                i = end_at[m - 1] - 1;
                break;
            }
        }
    }
}

/* ---------------------------------------------------------------- US SSN */

static void find_ssn(const char *t, size_t len, struct acc *a)
{
    for (size_t i = 0; i + 11 <= len; i++) {
        if (!left_ok(t, i)) continue;
        if (i >= 2 && (t[i - 1] == '-' || t[i - 1] == '.') && is_digit((unsigned char)t[i - 2]))
            continue; /* part of a longer dashed number */
        const char *p = t + i;
        char sep = p[3];
        if (sep != '-' && sep != ' ') continue;
        int ok = 1;
        for (int k = 0; k < 11 && ok; k++) {
            if (k == 3 || k == 6)
                ok = p[k] == sep;
            else
                ok = is_digit((unsigned char)p[k]);
        }
        if (!ok) continue;
        int after = at(t, len, i + 11);
        if (is_alnum(after)) continue;
        if ((after == '-' || after == sep) && is_digit(at(t, len, i + 12))) continue;
        int area = prefix_num(p, 3), group = prefix_num(p + 4, 2), serial = prefix_num(p + 7, 4);
        if (area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0) continue;
        add(a, i, 11, SL_PII_SSN_US, -1);
        i += 10;
    }
}

/* ---------------------------------------------------------------- UK NINO */

static int upc(int c)
{
    return is_lower(c) ? c - 32 : c;
}

static void find_nino(const char *t, size_t len, struct acc *a)
{
    for (size_t i = 0; i + 9 <= len; i++) {
        int c1 = upc((unsigned char)t[i]), c2 = upc(at(t, len, i + 1));
        if (!is_upper(c1) || !is_upper(c2) || !left_ok(t, i)) continue;
        if (strchr("DFIQUV", c1) || strchr("DFIOQUV", c2)) continue;
        char pre[3] = {(char)c1, (char)c2, 0};
        if (!strcmp(pre, "BG") || !strcmp(pre, "GB") || !strcmp(pre, "NK") || !strcmp(pre, "KN") ||
            !strcmp(pre, "TN") || !strcmp(pre, "NT") || !strcmp(pre, "ZZ"))
            continue;
        /* AB123456C or AB 12 34 56 C */
        size_t k = i + 2;
        int spaced = at(t, len, k) == ' ';
        int nd = 0, ok = 1;
        if (spaced) k++;
        while (ok && nd < 6) {
            if (!is_digit(at(t, len, k)) || !is_digit(at(t, len, k + 1))) ok = 0;
            k += 2, nd += 2;
            if (ok && spaced && nd <= 6) {
                if (at(t, len, k) != ' ')
                    ok = 0;
                else
                    k++;
            }
        }
        if (!ok) continue;
        int suf = upc(at(t, len, k));
        if (suf < 'A' || suf > 'D') continue;
        /* the suffix letter keeps the case of the prefix */
        if (is_lower(at(t, len, i)) != is_lower(at(t, len, k))) continue;
        if (is_alnum(at(t, len, k + 1))) continue;
        add(a, i, k + 1 - i, SL_PII_NINO_UK, -1);
        i = k;
    }
}

/* ---------------------------------------------------------------- DE tax id */

/* ISO 7064 MOD 11,10 check digit of the first 10 digits. */
static int de_taxid_check(const char *d)
{
    int product = 10;
    for (int k = 0; k < 10; k++) {
        int sum = (d[k] - '0' + product) % 10;
        if (sum == 0) sum = 10;
        product = (sum * 2) % 11;
    }
    int check = 11 - product;
    return check == 10 ? 0 : check;
}

static int de_taxid_ok(const char *d)
{
    if (d[0] == '0') return 0;
    int cnt[10] = {0};
    for (int k = 0; k < 10; k++)
        cnt[d[k] - '0']++;
    int repeated = 0;
    for (int v = 0; v < 10; v++) {
        if (cnt[v] > 3) return 0;
        if (cnt[v] >= 2) repeated++;
    }
    if (repeated != 1) return 0;
    return de_taxid_check(d) == d[10] - '0';
}

/* ---------------------------------------------------------------- FR INSEE */

/* s: 15 chars, digits except 2A/2B at [5..6]. */
static int insee_ok(const char *s)
{
    if (!strchr("123478", s[0])) return 0;
    int month = (s[3] - '0') * 10 + (s[4] - '0');
    if (!((month >= 1 && month <= 12) || month >= 20)) return 0;
    char num[14];
    memcpy(num, s, 13);
    num[13] = 0;
    long long corsica = 0;
    if (s[5] == '2' && (s[6] == 'A' || s[6] == 'B')) {
        corsica = s[6] == 'A' ? 1000000 : 2000000;
        num[6] = '0';
    }
    for (int k = 0; k < 13; k++)
        if (!is_digit((unsigned char)num[k])) return 0;
    for (int k = 13; k < 15; k++)
        if (!is_digit((unsigned char)s[k])) return 0;
    long long n = 0;
    for (int k = 0; k < 13; k++)
        n = n * 10 + (num[k] - '0');
    n -= corsica; /* 2A -> 19, 2B -> 18: the usual substitution */
    int key = (s[13] - '0') * 10 + (s[14] - '0');
    return key == 97 - (int)(n % 97);
}

/* 11-digit (DE tax id) and 15-char (FR INSEE) numbers, plain or with
 * single spaces between groups. */
static void find_national_numbers(const char *t, size_t len, unsigned kinds, struct acc *a)
{
    for (size_t i = 0; i < len; i++) {
        if (!is_digit((unsigned char)t[i]) || !left_ok(t, i)) continue;
        /* collect up to 15 chars: digits, and A/B as the 7th (Corsica) */
        char s[16];
        size_t end_at[16];
        int n = 0;
        size_t k = i;
        while (k < len && n < 15) {
            int c = (unsigned char)t[k];
            if (is_digit(c) || (n == 6 && (c == 'A' || c == 'B') && s[5] == '2')) {
                s[n] = (char)c;
                end_at[n] = k + 1;
                n++, k++;
            } else if (c == ' ' && n > 0 && k + 1 < len && is_digit(at(t, len, k + 1))) {
                k++;
            } else {
                break;
            }
        }
        s[n] = 0;
        int hit = 0;
        if ((kinds & (1u << SL_PII_INSEE_FR)) && n == 15 && !is_alnum(at(t, len, end_at[14])) &&
            !(is_digit(at(t, len, end_at[14] + 1)) && at(t, len, end_at[14]) == ' ') &&
            insee_ok(s)) {
            add(a, i, end_at[14] - i, SL_PII_INSEE_FR, -1);
            i = end_at[14] - 1;
            hit = 1;
        }
        if (!hit && (kinds & (1u << SL_PII_TAXID_DE)) && n >= 11) {
            int nd = 0;
            for (int q = 0; q < 11; q++)
                nd += is_digit((unsigned char)s[q]);
            size_t e = end_at[10];
            int clean = !is_alnum(at(t, len, e)) && !(at(t, len, e) == ' ' && n > 11);
            if (nd == 11 && clean && de_taxid_ok(s)) {
                add(a, i, e - i, SL_PII_TAXID_DE, -1);
                i = e - 1;
                hit = 1;
            }
        }
        if (!hit) {
            /* skip the rest of this digit block */
            while (i + 1 < len && is_digit((unsigned char)t[i + 1]))
                i++;
        }
    }
}

/* ---------------------------------------------------------------- phones */

static void find_phone(const char *t, size_t len, struct acc *a)
{
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)t[i];
        size_t s = i;
        int plus = 0, paren = 0;
        if (c == '+' && is_digit(at(t, len, i + 1))) {
            if (i > 0 && is_alnum((unsigned char)t[i - 1])) continue;
            plus = 1;
            i++;
        } else if (c == '(' && is_digit(at(t, len, i + 1))) {
            if (i > 0 && is_alnum((unsigned char)t[i - 1])) continue;
            paren = 1;
            i++;
        } else if (!is_digit(c) || !left_ok(t, i)) {
            continue;
        }
        /* digit groups; separators: one of " -." or ")" / ") " / " (" / "(" */
        char d[24];
        int nd = 0, ng = 0, glen[12] = {0}, seps = 0;
        size_t k = i, end = i;
        for (;;) {
            int g = 0;
            while (k < len && is_digit((unsigned char)t[k])) {
                if (nd < 23) d[nd] = t[k];
                nd++, g++, k++;
            }
            if (ng < 12) glen[ng] = g;
            ng++;
            end = k;
            size_t q = k;
            if (q < len && t[q] == ')' && paren) {
                paren = 0;
                q++;
                if (q < len && (t[q] == ' ' || t[q] == '-')) q++;
            } else if (q < len && (t[q] == ' ' || t[q] == '-' || t[q] == '.')) {
                q++;
                if (q < len && t[q] == '(' && !paren) paren = 1, q++;
            } else if (q < len && t[q] == '(' && !paren && plus) {
                paren = 1, q++;
            } else {
                break;
            }
            if (!is_digit(at(t, len, q)) || nd > 20) break;
            seps++;
            k = q;
        }
        i = end > i ? end - 1 : i;
        if (nd > 20 || is_alnum(at(t, len, end))) continue;
        if (paren) continue; /* unbalanced "(" */
        d[SL_MIN(nd, 23)] = 0;
        int ok = 0;
        if (plus) {
            ok = nd >= 8 && nd <= 15 && d[0] != '0';
        } else if (d[0] == '0' && d[1] == '0') {
            ok = nd >= 10 && nd <= 17; /* 00 + international number */
        } else if (d[0] == '0') {
            /* national trunk prefix: 10 or 11 digits, e.g. 020 7946 0958,
             * (020) 7946 0958, 06 12 34 56 78, 030 1234567, 0612345678 */
            ok = (nd == 10 || nd == 11) && d[1] != '0';
        } else {
            /* North American: (NXX) NXX-XXXX, NXX-NXX-XXXX, 1-NXX-NXX-XXXX,
             * always with separators (ten bare digits are too ambiguous) */
            const char *n10 = nd == 11 ? d + 1 : d;
            int shape = (ng == 3 && glen[0] == 3 && glen[1] == 3 && glen[2] == 4) ||
                        (ng == 4 && glen[0] == 1 && d[0] == '1' && glen[1] == 3 && glen[2] == 3 &&
                         glen[3] == 4);
            ok = (nd == 10 || nd == 11) && shape && n10[0] >= '2' && n10[3] >= '2' && seps > 0;
        }
        if (ok) add(a, s, end - s, SL_PII_PHONE, -1);
    }
}

/* ---------------------------------------------------------------- patterns */

static int find_patterns(const struct sl_pii_detector *d, const char *t, size_t len, struct acc *a,
                         struct sl_err *err)
{
    for (size_t p = 0; p < d->n_patterns; p++) {
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(d->pat[p].code, NULL);
        if (!md) return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
        size_t off = 0;
        while (off <= len) {
            int rc = pcre2_match(d->pat[p].code, (PCRE2_SPTR)t, len, off, 0, md, d->mctx);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) {
                PCRE2_UCHAR msg[128];
                pcre2_get_error_message(rc, msg, sizeof msg);
                pcre2_match_data_free(md);
                return sl_err_set(err, SL_ERANGE, "%s: pattern '%s': %s", __func__, d->pat[p].label,
                                  (const char *)msg);
            }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            size_t ms = ov[0], me = ov[1];
            if (me > ms) add(a, ms, me - ms, SL_PII_CUSTOM, (int)p);
            if (a->overflow) break;
            off = me > off ? me : off + 1;
        }
        pcre2_match_data_free(md);
    }
    return 0;
}

/* ================================================================ public */

int sl_pii_detector_new(struct sl_pii_detector **out, const struct sl_pii_params *p,
                        struct sl_err *err)
{
    struct sl_pii_params def = sl_pii_default_params();
    struct sl_pii_detector *d = NULL;
    *out = NULL;
    if (!p) p = &def;
    if (p->n_patterns > SL_PII_MAX_PATTERNS)
        return sl_err_set(err, SL_ERANGE, "%s: %zu patterns, at most %d", __func__, p->n_patterns,
                          SL_PII_MAX_PATTERNS);
    d = calloc(1, sizeof *d);
    if (!d) return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    d->kinds = p->kinds;
    d->mctx = pcre2_match_context_create(NULL);
    if (!d->mctx) goto nomem; /* allocation failure */
    pcre2_set_match_limit(d->mctx, SL_PII_MATCH_LIMIT);
    pcre2_set_depth_limit(d->mctx, SL_PII_DEPTH_LIMIT);
    pcre2_set_heap_limit(d->mctx, SL_PII_HEAP_LIMIT_KB);
    for (size_t k = 0; k < p->n_patterns; k++) {
        const char *lab = p->patterns[k].label, *re = p->patterns[k].regex;
        size_t ll = lab ? strlen(lab) : 0;
        int ok = ll > 0 && ll < SL_PII_LABEL_MAX;
        for (size_t q = 0; ok && q < ll; q++)
            ok =
                is_upper((unsigned char)lab[q]) || is_digit((unsigned char)lab[q]) || lab[q] == '_';
        if (!ok) {
            sl_err_set(err, SL_EINVAL, "%s: pattern %zu: label '%s' must be 1-%d of A-Z, 0-9, _",
                       __func__, k, lab ? lab : "", SL_PII_LABEL_MAX - 1);
            goto fail; /* bad label */
        }
        if (!re || !*re) {
            sl_err_set(err, SL_EINVAL, "%s: pattern '%s' is empty", __func__, lab);
            goto fail; /* empty regex */
        }
        int ec = 0;
        PCRE2_SIZE eo = 0;
        pcre2_code *code = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED,
                                         PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &ec, &eo, NULL);
        if (!code) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(ec, msg, sizeof msg);
            sl_err_set(err, SL_EINVAL, "%s: pattern '%s': %s at offset %zu", __func__, lab,
                       (const char *)msg, (size_t)eo);
            goto fail; /* bad regex */
        }
        memcpy(d->pat[k].label, lab, ll + 1);
        d->pat[k].code = code;
        d->n_patterns = k + 1;
    }
    *out = d;
    return 0;
nomem:
    sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
fail:
    sl_pii_detector_free(d);
    return err ? err->code : SL_EINVAL;
}

void sl_pii_detector_free(struct sl_pii_detector *d)
{
    if (!d) return;
    for (size_t k = 0; k < d->n_patterns; k++)
        pcre2_code_free(d->pat[k].code);
    pcre2_match_context_free(d->mctx);
    free(d);
}

static int span_cmp(const void *x, const void *y)
{
    const struct sl_pii_span *a = x, *b = y;
    if (a->start != b->start) return a->start < b->start ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return (int)a->kind - (int)b->kind;
}

int sl_pii_scan(const struct sl_pii_detector *d, const char *text, size_t len,
                struct sl_pii_span *spans, size_t max_spans, size_t *n_spans, struct sl_err *err)
{
    *n_spans = 0;
    if (len > SL_PII_MAX_TEXT)
        return sl_err_set(err, SL_ERANGE, "%s: text of %zu bytes, at most %u are scanned", __func__,
                          len, SL_PII_MAX_TEXT);
    if (len && !text) return sl_err_set(err, SL_EINVAL, "%s: NULL text", __func__);
    /* collect candidates of every kind into a scratch array, then resolve
     * overlaps into spans[] */
    size_t cap = 2 * (size_t)SL_PII_MAX_SPANS;
    struct acc a = {calloc(cap, sizeof *a.s), 0, cap, 0};
    if (!a.s) return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
    unsigned k = d->kinds;
    if (k & (1u << SL_PII_EMAIL)) find_email(text, len, &a);
    if (k & (1u << SL_PII_CARD)) find_card(text, len, &a);
    if (k & (1u << SL_PII_IBAN)) find_iban(text, len, &a);
    if (k & (1u << SL_PII_SSN_US)) find_ssn(text, len, &a);
    if (k & (1u << SL_PII_NINO_UK)) find_nino(text, len, &a);
    if (k & ((1u << SL_PII_TAXID_DE) | (1u << SL_PII_INSEE_FR)))
        find_national_numbers(text, len, k, &a);
    if (k & (1u << SL_PII_PHONE)) find_phone(text, len, &a);
    int rc = find_patterns(d, text, len, &a, err);
    if (rc) {
        free(a.s);
        return rc;
    }
    if (a.overflow) {
        free(a.s);
        return sl_err_set(err, SL_ERANGE, "%s: more than %zu PII candidates", __func__, cap);
    }
    qsort(a.s, a.n, sizeof *a.s, span_cmp);
    size_t n = 0, last_end = 0;
    for (size_t q = 0; q < a.n; q++) {
        const struct sl_pii_span *s = &a.s[q];
        if (n > 0 && s->start < last_end) {
            /* overlaps the kept one: keep the longer */
            struct sl_pii_span *prev = &spans[n - 1];
            if (s->start + s->len > last_end && s->len > prev->len && s->start == prev->start) {
                *prev = *s;
                last_end = s->start + s->len;
            }
            continue;
        }
        if (n == max_spans) {
            free(a.s);
            *n_spans = n;
            return sl_err_set(err, SL_ERANGE, "%s: more than %zu PII spans", __func__, max_spans);
        }
        spans[n++] = *s;
        last_end = s->start + s->len;
    }
    free(a.s);
    *n_spans = n;
    return 0;
}

const char *sl_pii_label(const struct sl_pii_detector *d, const struct sl_pii_span *s)
{
    if (s->kind == SL_PII_CUSTOM && d && s->pattern >= 0 && (size_t)s->pattern < d->n_patterns)
        return d->pat[s->pattern].label;
    return sl_pii_kind_name(s->kind);
}

/* ================================================================ redaction */

void sl_pii_map_init(struct sl_pii_map *m)
{
    memset(m, 0, sizeof *m);
}

void sl_pii_map_free(struct sl_pii_map *m)
{
    for (size_t k = 0; k < m->n; k++) {
        free(m->e[k].value);
        free(m->e[k].placeholder);
    }
    free(m->e);
    memset(m, 0, sizeof *m);
}

struct obuf {
    char *p;
    size_t n, cap;
};

static int ob_put(struct obuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 64;
        while (nc < b->n + n + 1)
            nc *= 2;
        char *q = realloc(b->p, nc);
        if (!q) return SL_ENOMEM;
        b->p = q, b->cap = nc;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

int sl_pii_redact(const struct sl_pii_detector *d, const char *text, size_t len,
                  const struct sl_pii_span *spans, size_t n_spans, struct sl_pii_map *map,
                  char **out, size_t *out_len, struct sl_err *err)
{
    struct obuf b = {0};
    size_t n_before = map->n, pos = 0;
    *out = NULL;
    if (out_len) *out_len = 0;
    if (ob_put(&b, "", 0)) goto nomem; /* allocation failure */
    for (size_t k = 0; k < n_spans; k++) {
        const struct sl_pii_span *s = &spans[k];
        if (s->start < pos || s->start > len || s->len > len - s->start) {
            sl_err_set(err, SL_EINVAL, "%s: span %zu [%zu,+%zu) out of order or past %zu", __func__,
                       k, s->start, s->len, len);
            goto fail; /* caller's bug: bad spans */
        }
        if (ob_put(&b, text + pos, s->start - pos)) goto nomem; /* allocation failure */
        const char *label = sl_pii_label(d, s);
        const char *val = text + s->start;
        /* same label and value: same placeholder */
        struct sl_pii_entry *e = NULL;
        int number = 0;
        for (size_t q = 0; q < map->n; q++) {
            if (!strcmp(map->e[q].label, label)) {
                if (map->e[q].number > number) number = map->e[q].number;
                if (map->e[q].len == s->len && !memcmp(map->e[q].value, val, s->len))
                    e = &map->e[q];
            }
        }
        if (!e) {
            if (map->n == map->cap) {
                size_t nc = map->cap ? map->cap * 2 : 8;
                struct sl_pii_entry *ne = realloc(map->e, nc * sizeof *ne);
                if (!ne) goto nomem; /* allocation failure */
                map->e = ne, map->cap = nc;
            }
            e = &map->e[map->n];
            memset(e, 0, sizeof *e);
            snprintf(e->label, sizeof e->label, "%s", label);
            e->number = number + 1;
            e->value = malloc(s->len + 1);
            size_t pl = strlen(label) + 24;
            e->placeholder = malloc(pl);
            if (!e->value || !e->placeholder) {
                free(e->value);
                free(e->placeholder);
                goto nomem; /* allocation failure */
            }
            memcpy(e->value, val, s->len);
            e->value[s->len] = 0;
            e->len = s->len;
            snprintf(e->placeholder, pl, "[%s_%d]", label, e->number);
            map->n++;
        }
        if (ob_put(&b, e->placeholder, strlen(e->placeholder))) goto nomem; /* allocation failure */
        pos = s->start + s->len;
    }
    if (ob_put(&b, text + pos, len - pos)) goto nomem; /* allocation failure */
    *out = b.p;
    if (out_len) *out_len = b.n;
    return 0;
nomem:
    sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
fail:
    for (size_t q = n_before; q < map->n; q++) {
        free(map->e[q].value);
        free(map->e[q].placeholder);
    }
    map->n = n_before;
    free(b.p);
    return err ? err->code : SL_ENOMEM;
}

int sl_pii_restore(const struct sl_pii_map *map, const char *text, size_t len, char **out,
                   size_t *out_len, struct sl_err *err)
{
    struct obuf b = {0};
    size_t pos = 0;
    *out = NULL;
    if (out_len) *out_len = 0;
    if (ob_put(&b, "", 0)) goto nomem; /* allocation failure */
    for (size_t i = 0; i < len; i++) {
        if (text[i] != '[') continue;
        const char *close = memchr(text + i, ']', SL_MIN(len - i, (size_t)SL_PII_LABEL_MAX + 16));
        if (!close) continue;
        size_t pl = (size_t)(close - (text + i)) + 1;
        for (size_t q = 0; q < map->n; q++) {
            const char *ph = map->e[q].placeholder;
            if (strlen(ph) == pl && !memcmp(ph, text + i, pl)) {
                if (ob_put(&b, text + pos, i - pos)) goto nomem;            /* allocation failure */
                if (ob_put(&b, map->e[q].value, map->e[q].len)) goto nomem; /* allocation failure */
                pos = i + pl;
                i = pos - 1;
                break;
            }
        }
    }
    if (ob_put(&b, text + pos, len - pos)) goto nomem; /* allocation failure */
    *out = b.p;
    if (out_len) *out_len = b.n;
    return 0;
nomem:
    free(b.p);
    return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
}

/* ================================================================ streams */

void sl_pii_restorer_init(struct sl_pii_restorer *r, const struct sl_pii_map *map)
{
    memset(r, 0, sizeof *r);
    r->map = map;
}

/* Is s[0..n) the beginning of some placeholder of map? */
static int placeholder_prefix(const struct sl_pii_map *m, const char *s, size_t n)
{
    for (size_t q = 0; q < m->n; q++) {
        size_t pl = strlen(m->e[q].placeholder);
        if (n < pl && !memcmp(m->e[q].placeholder, s, n)) return 1;
    }
    return 0;
}

int sl_pii_restorer_feed(struct sl_pii_restorer *r, const char *chunk, size_t len, char **out,
                         size_t *out_len, struct sl_err *err)
{
    struct obuf b = {0};
    *out = NULL;
    if (ob_put(&b, r->hold, r->n_hold) || ob_put(&b, chunk, len))
        goto nomem; /* allocation failure */
    r->n_hold = 0;
    /* hold back the last '[...' if it may still become a placeholder */
    size_t cut = b.n;
    size_t from = b.n > sizeof r->hold - 1 ? b.n - (sizeof r->hold - 1) : 0;
    for (size_t i = b.n; i-- > from;) {
        if (b.p[i] == ']') break;
        if (b.p[i] == '[') {
            if (placeholder_prefix(r->map, b.p + i, b.n - i)) cut = i;
            break;
        }
    }
    memcpy(r->hold, b.p + cut, b.n - cut);
    r->n_hold = b.n - cut;
    int rc = sl_pii_restore(r->map, b.p, cut, out, out_len, err);
    free(b.p);
    return rc;
nomem:
    free(b.p);
    return sl_err_set(err, SL_ENOMEM, "%s: out of memory", __func__);
}

int sl_pii_restorer_finish(struct sl_pii_restorer *r, char **out, size_t *out_len,
                           struct sl_err *err)
{
    int rc = sl_pii_restore(r->map, r->hold, r->n_hold, out, out_len, err);
    r->n_hold = 0;
    return rc;
}

/* ================================================================ policy */

int sl_pii_policy_parse(const char *s, enum sl_pii_policy *out, struct sl_err *err)
{
    if (s && !strcmp(s, "allow"))
        *out = SL_PII_POLICY_ALLOW;
    else if (s && !strcmp(s, "redact"))
        *out = SL_PII_POLICY_REDACT;
    else if (s && !strcmp(s, "local-only"))
        *out = SL_PII_POLICY_LOCAL_ONLY;
    else
        return sl_err_set(err, SL_EINVAL,
                          "%s: unknown privacy policy '%s' (allow, redact, local-only)", __func__,
                          s ? s : "");
    return 0;
}

const char *sl_pii_policy_name(enum sl_pii_policy p)
{
    switch (p) {
    case SL_PII_POLICY_ALLOW:
        return "allow";
    case SL_PII_POLICY_REDACT:
        return "redact";
    case SL_PII_POLICY_LOCAL_ONLY:
        return "local-only";
    }
    return "?";
}

const char *sl_pii_action_name(enum sl_pii_action a)
{
    switch (a) {
    case SL_PII_ACTION_SEND:
        return "send";
    case SL_PII_ACTION_SEND_REDACTED:
        return "send-redacted";
    case SL_PII_ACTION_KEEP_LOCAL:
        return "keep-local";
    }
    return "?";
}

enum sl_pii_action sl_pii_decide(enum sl_pii_policy p, int scan_rc, size_t n_spans, bool remote)
{
    if (!remote || p == SL_PII_POLICY_ALLOW) return SL_PII_ACTION_SEND;
    if (scan_rc != 0) return SL_PII_ACTION_KEEP_LOCAL; /* unknown content: fail closed */
    if (n_spans == 0) return SL_PII_ACTION_SEND;
    return p == SL_PII_POLICY_REDACT ? SL_PII_ACTION_SEND_REDACTED : SL_PII_ACTION_KEEP_LOCAL;
}
