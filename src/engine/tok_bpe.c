/*
 * tok_bpe.c - byte-level BPE for tokenizer.ggml.model = "gpt2" (engine
 * layer), as llama.cpp's llm_tokenizer_bpe_session and unicode_regex_split.
 *
 * 1. Pre-tokenize: the fragment is decoded to code points (a bad byte
 *    becomes U+FFFD) and split by the stages of its pre-tokenizer, each
 *    stage re-splitting the pieces the previous one left. The stages are
 *    hand-written matchers for the regexes llama.cpp uses (no regex engine):
 *    GPT-2's, Llama 3's (and Qwen 2's single-digit variant), GPT-4o's
 *    case-aware one, and "prefix? [class]{m,n}" patterns for the rest.
 * 2. Each piece is UTF-8 encoded and mapped byte by byte to GPT-2's
 *    printable alphabet, then merged: every adjacent pair found in
 *    tokenizer.ggml.merges goes into a min-heap keyed by merge rank (ties:
 *    leftmost first) and the best pair is merged until none is left.
 *
 * Section banners: pre-tokenizer table and compiler; matchers; BPE merge.
 */
#include "vocab_int.h"

#include <stdlib.h>
#include <string.h>

#include "tok_unicode.h"

/* ------------------------------------------------------------------------ */
/* pre-tokenizer table                                                       */
/* ------------------------------------------------------------------------ */

enum {
    F_CLEAN = 1,         /* clean_spaces on detokenize */
    F_IGNORE_MERGES = 2, /* a piece that is a token is taken whole */
    F_ADD_BOS = 4,       /* add_bos default */
    F_NFC = 8,           /* NFC-normalize first (HF's normalizer; Qwen 2) */
    F_NO_BOS = 16,       /* the model has no BOS (chatglm) */
};

/* Stage syntax: "@gpt2", "@llama3", "@qwen2", "@o200k", "@tekken", "\s+$",
 * or [\s? | " ?"] class [+ | {m} | {m,n}], class = [...] | \p{L|N|P} | \s;
 * inside [...]: \p{X}, \s, \r, \n, \t, \x{HHHH}, \<char>, UTF-8 characters
 * and ranges of those. (Code points that NFC would change, e.g. U+2126,
 * are written as \x{..} so that no editor can normalize them away.)
 * These are llama.cpp's regex_exprs for each type, rewritten where its
 * regex used repetition of a class ("[0-9][0-9][0-9]" -> "[0-9]{3}"). */
static const struct pre_def {
    const char *names; /* space-separated */
    const char *stage[SL_PRE_MAX_STAGES];
    unsigned flags;
} k_pre[] = {
    {"default", {"[\\p{P}\\$\\+<=>\\^~\\|]+", "@gpt2", "\\p{N}+", "[0-9]{3}"}, F_CLEAN},
    {"gpt-2 gpt2 phi-2 mpt olmo jais jina-es jina-de gigachat jina-v1-en jina-v2-es jina-v2-de "
     "jina-v2-code roberta-bpe a.x-4.0 mellum exaone4",
     {"@gpt2"},
     F_CLEAN},
    {"trillion granite-docling", {"@gpt2"}, 0},
    {"llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2",
     {"@llama3"},
     F_CLEAN | F_IGNORE_MERGES | F_ADD_BOS},
    {"dbrx smaug-bpe", {"@llama3"}, F_CLEAN},
    {"chatglm-bpe glm4", {"@llama3"}, F_CLEAN | F_NO_BOS},
    {"qwen2 deepseek-r1-qwen kormo", {"@qwen2"}, F_NFC},
    {"stablelm2 megrez", {"@qwen2"}, F_CLEAN},
    {"falcon", {"[\\p{P}\\$\\+<=>\\^~\\|]+", "@gpt2", "[0-9]{3}"}, F_CLEAN},
    {"starcoder refact codeshell exaone minerva-7b", {"\\p{N}", "@gpt2"}, F_CLEAN},
    {"command-r smollm", {"\\p{N}", "@gpt2"}, 0},
    {"deepseek-llm",
     {"[\\r\\n]",
      "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}"
      "\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}"
      "\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}"
      "\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}"
      "\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}"
      "\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}"
      "\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}"
      "\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}"
      "\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}"
      "\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}"
      "\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}"
      "\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}"
      "\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}"
      "\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}"
      "\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}"
      "\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}"
      "\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}"
      "\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}"
      "\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}"
      "\\x{1E900}-\\x{1E943}]+",
      "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$", "[一-龥ࠀ-一가-퟿]+", "\\p{N}+"},
     0},
    {"deepseek-coder",
     {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}"},
     0},
    {"bloom gpt3-finnish", {" ?[^(\\s|.,!?…。，、।۔،)]+"}, F_CLEAN},
    {"poro-chat", {" ?[^(\\s|.,!?…。，、।۔،)]+"}, 0},
    {"viking", {" ?[^(\\s|.,!?…。，、।۔،)]+", "\\p{N}"}, 0},
    {"tekken", {"@tekken"}, F_IGNORE_MERGES | F_ADD_BOS},
    {"gpt-4o llama4", {"@o200k"}, 0},
};

static bool name_in(const char *names, const char *name, size_t len)
{
    const char *p = names;
    while (*p) {
        const char *e = strchr(p, ' ');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == len && memcmp(p, name, len) == 0) return true;
        if (!e) break;
        p = e + 1;
    }
    return false;
}

/* One literal of a class: an escape or a UTF-8 character. */
static const char *class_atom(const char *p, uint32_t *cp)
{
    if (p[0] == '\\' && p[1] == 'x' && p[2] == '{') { /* \x{HHHH} */
        char *e;
        *cp = (uint32_t)strtoul(p + 3, &e, 16);
        return *e == '}' ? e + 1 : p + 1;
    }
    if (*p == '\\') {
        p++;
        *cp = *p == 'r' ? '\r' : *p == 'n' ? '\n' : *p == 't' ? '\t' : (unsigned char)*p;
        return p + 1;
    }
    size_t k = sl_utf8_decode(p, strlen(p), cp);
    return p + k;
}

static const char *class_cat(const char *p, unsigned *cats)
{
    /* p at "\p{X}" or "\s"; returns past it, NULL if not a category */
    if (p[0] != '\\') return NULL;
    if (p[1] == 's') {
        *cats |= SL_CPT_WHITESPACE;
        return p + 2;
    }
    if (p[1] != 'p' || p[2] != '{' || !p[3] || p[4] != '}') return NULL;
    switch (p[3]) {
    case 'L':
        *cats |= SL_CPT_LETTER;
        break;
    case 'N':
        *cats |= SL_CPT_NUMBER;
        break;
    case 'P':
        *cats |= SL_CPT_PUNCT;
        break;
    default:
        return NULL;
    }
    return p + 5;
}

/* Parse a class at p into c; returns past it or NULL on a syntax error. */
static const char *class_parse(const char *p, struct sl_pre_class *c)
{
    memset(c, 0, sizeof *c);
    if (*p != '[') return class_cat(p, &c->cats);
    p++;
    if (*p == '^') c->negate = true, p++;
    while (*p && *p != ']') {
        const char *q = class_cat(p, &c->cats);
        if (q) {
            p = q;
            continue;
        }
        uint32_t lo, hi;
        p = class_atom(p, &lo);
        hi = lo;
        if (p[0] == '-' && p[1] && p[1] != ']') p = class_atom(p + 1, &hi);
        if (c->n_range == SL_PRE_MAX_RANGES || hi < lo) return NULL;
        c->range[c->n_range][0] = lo;
        c->range[c->n_range][1] = hi;
        c->n_range++;
    }
    return *p == ']' ? p + 1 : NULL;
}

static int stage_parse(const char *s, struct sl_pre_stage *st)
{
    memset(st, 0, sizeof *st);
    if (strcmp(s, "@gpt2") == 0) return st->kind = SL_PRE_GPT2, 0;
    if (strcmp(s, "@llama3") == 0) return st->kind = SL_PRE_LLAMA3, st->max_digits = 3, 0;
    if (strcmp(s, "@qwen2") == 0) return st->kind = SL_PRE_LLAMA3, st->max_digits = 1, 0;
    if (strcmp(s, "@o200k") == 0)
        return st->kind = SL_PRE_O200K, st->max_digits = 3, st->contractions = true, 0;
    if (strcmp(s, "@tekken") == 0) return st->kind = SL_PRE_O200K, st->max_digits = 1, 0;
    if (strcmp(s, "\\s+$") == 0) return st->kind = SL_PRE_WS_TAIL, 0;
    st->kind = SL_PRE_CLASS;
    if (strncmp(s, "\\s?", 3) == 0)
        st->prefix = 's', s += 3;
    else if (strncmp(s, " ?", 2) == 0)
        st->prefix = ' ', s += 2;
    s = class_parse(s, &st->cls);
    if (!s) return -1;
    st->min = st->max = 1;
    if (*s == '+') {
        st->max = 0;
        s++;
    } else if (*s == '{') {
        char *e;
        st->min = st->max = (unsigned)strtoul(s + 1, &e, 10);
        if (*e == ',') st->max = (unsigned)strtoul(e + 1, &e, 10);
        if (*e != '}' || st->min == 0 || st->max < st->min) return -1;
        s = e + 1;
    }
    return *s ? -1 : 0;
}

int sl_pre_init(struct sl_pre *pre, const char *name, size_t len, struct sl_err *err)
{
    memset(pre, 0, sizeof *pre);
    for (size_t i = 0; i < sizeof k_pre / sizeof k_pre[0]; i++) {
        const struct pre_def *d = &k_pre[i];
        if (!name_in(d->names, name, len)) continue;
        snprintf(pre->name, sizeof pre->name, "%.*s", (int)len, name);
        for (unsigned k = 0; k < SL_PRE_MAX_STAGES && d->stage[k]; k++) {
            if (stage_parse(d->stage[k], &pre->stage[k]) != 0)
                return sl_err_set(err, SL_EINVAL, "%s: bad stage '%s' of pre-tokenizer '%s'",
                                  __func__, d->stage[k], pre->name); /* our bug */
            pre->n_stage++;
        }
        pre->clean_spaces = d->flags & F_CLEAN;
        pre->ignore_merges = d->flags & F_IGNORE_MERGES;
        pre->add_bos = d->flags & F_ADD_BOS;
        pre->nfc = d->flags & F_NFC;
        pre->no_bos = d->flags & F_NO_BOS;
        return 0;
    }
    return sl_err_set(err, SL_EUNSUPPORTED,
                      "%s: pre-tokenizer '%.*s' (tokenizer.ggml.pre) is not supported; supported: "
                      "default, gpt-2, llama-bpe, qwen2, deepseek-llm, deepseek-coder, falcon, "
                      "starcoder, smollm, command-r, gpt-4o, tekken, bloom, viking, ... (see "
                      "docs/internals/tokenizer.md)",
                      __func__, (int)SL_MIN(len, 64), name);
}

/* ------------------------------------------------------------------------ */
/* matchers                                                                  */
/* ------------------------------------------------------------------------ */

/* Piece lengths (in code points). */
struct segs {
    size_t *v;
    size_t n, cap;
};

static int seg_push(struct segs *s, size_t len)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        size_t *nv = realloc(s->v, cap * sizeof *nv);
        if (!nv) return SL_ENOMEM;
        s->v = nv;
        s->cap = cap;
    }
    s->v[s->n++] = len;
    return 0;
}

/* The text one stage sees: code points and their classes, [a, b) being the
 * piece under the matcher; positions past b read as "outside" (0 flags). */
struct span {
    const uint32_t *cp;
    const unsigned *fl;
    size_t a, b, prev; /* prev: end of the last emitted piece */
    struct segs *out;
    bool failed;
};

#define OUTSIDE 0xFFFFFFFFu

static uint32_t CP(const struct span *s, size_t i)
{
    return i < s->b ? s->cp[i] : OUTSIDE;
}
static unsigned FL(const struct span *s, size_t i)
{
    return i < s->b ? s->fl[i] : 0;
}

/* Emit the piece [prev, end) (if not empty); returns end. */
static size_t add(struct span *s, size_t end)
{
    if (end > s->prev && seg_push(s->out, end - s->prev)) s->failed = true;
    s->prev = end;
    return end;
}

static bool is_rn(uint32_t c)
{
    return c == '\r' || c == '\n';
}

/* The whitespace alternatives shared by Llama 3 and GPT-4o:
 * \s*[\r\n]+ | \s+(?!\S) | \s+ ; returns the end, or pos if none. */
static size_t match_ws(const struct span *s, size_t pos, bool rn_rule)
{
    size_t w = 0, last_rn = 0;
    while (FL(s, pos + w) & SL_CPT_WHITESPACE) {
        if (is_rn(CP(s, pos + w))) last_rn = pos + w + 1;
        w++;
    }
    if (rn_rule && last_rn > 0) return last_rn;
    if (w > 1 && pos + w < s->b) return pos + w - 1;
    return pos + w;
}

/* 's|'t|'re|'ve|'m|'ll|'d at pos (case-insensitive when ci); its length. */
static size_t contraction(const struct span *s, size_t pos, bool ci)
{
    if (CP(s, pos) != '\'' || pos + 1 >= s->b) return 0;
    uint32_t c1 = CP(s, pos + 1);
    if (ci) c1 = sl_cpt_tolower(c1);
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
    if (pos + 2 >= s->b) return 0;
    uint32_t c2 = CP(s, pos + 2);
    if (ci) c2 = sl_cpt_tolower(c2);
    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
    return 0;
}

#define WLN (SL_CPT_WHITESPACE | SL_CPT_LETTER | SL_CPT_NUMBER)

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * (llama.cpp's unicode_regex_split_custom_gpt2, step for step) */
static void split_gpt2(struct span *s)
{
    size_t pos = s->a;
    while (pos < s->b && !s->failed) {
        uint32_t c = s->cp[pos];
        unsigned f = s->fl[pos], f2;
        size_t k = contraction(s, pos, false);
        if (k) {
            pos = add(s, pos + k);
            continue;
        }
        f2 = c == ' ' ? FL(s, pos + 1) : f;
        if (f2 & (SL_CPT_LETTER | SL_CPT_NUMBER)) {
            unsigned cls = f2 & SL_CPT_LETTER ? SL_CPT_LETTER : SL_CPT_NUMBER;
            pos += c == ' ';
            while (FL(s, pos) & cls)
                pos++;
            add(s, pos);
            continue;
        }
        if (!(f2 & WLN) && f2) {
            pos += c == ' ';
            while (!(FL(s, pos) & WLN) && FL(s, pos))
                pos++;
            add(s, pos);
            continue;
        }
        size_t e = match_ws(s, pos, false);
        pos = add(s, e > pos ? e : pos + 1);
    }
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * (llama.cpp's unicode_regex_split_custom_llama3; D = 1 for Qwen 2) */
static void split_llama3(struct span *s, unsigned max_digits)
{
    size_t pos = s->a;
    while (pos < s->b && !s->failed) {
        uint32_t c = s->cp[pos];
        unsigned f = s->fl[pos], f2;
        size_t k = contraction(s, pos, true);
        if (k) {
            pos = add(s, pos + k);
            continue;
        }
        if (!(is_rn(c) || (f & SL_CPT_NUMBER)) &&
            ((f & SL_CPT_LETTER) || (FL(s, pos + 1) & SL_CPT_LETTER))) {
            pos++;
            while (FL(s, pos) & SL_CPT_LETTER)
                pos++;
            add(s, pos);
            continue;
        }
        if (f & SL_CPT_NUMBER) {
            size_t ini = pos;
            while (FL(s, pos) & SL_CPT_NUMBER) {
                if (++pos - ini >= max_digits) ini = add(s, pos);
            }
            add(s, pos);
            continue;
        }
        f2 = c == ' ' ? FL(s, pos + 1) : f;
        if (!(f2 & WLN) && f) {
            pos += c == ' ';
            while (!(FL(s, pos) & WLN) && FL(s, pos))
                pos++;
            while (is_rn(CP(s, pos)))
                pos++;
            add(s, pos);
            continue;
        }
        size_t e = match_ws(s, pos, true);
        pos = add(s, e > pos ? e : pos + 1);
    }
}

/* GPT-4o's classes: "upper" [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}], "lower"
 * [\p{Ll}\p{Lm}\p{Lo}\p{M}], "other" [^\s\p{L}\p{N}]. */
static bool o_upper(unsigned f)
{
    return ((f & SL_CPT_LETTER) && !(f & SL_CPT_LOWER)) || (f & SL_CPT_MARK);
}
static bool o_lower(unsigned f)
{
    return ((f & SL_CPT_LETTER) && !(f & SL_CPT_UPPER)) || (f & SL_CPT_MARK);
}
static bool o_other(unsigned f)
{
    return f && !(f & WLN);
}

/* [^\r\n\p{L}\p{N}]?U*L+C?|[^\r\n\p{L}\p{N}]?U+L*C?|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n/]*|
 * \s*[\r\n]+|\s+(?!\S)|\s+  (U, L as above, C the optional contraction):
 * the o200k regex of GPT-4o (and, without C and with D = 1, Tekken), with
 * the backtracking of a regex engine spelled out. */
static void split_o200k(struct span *s, unsigned max_digits, bool contractions)
{
    size_t pos = s->a;
    while (pos < s->b && !s->failed) {
        unsigned f = s->fl[pos];
        size_t e = 0;
        for (int alt = 1; alt <= 2 && !e; alt++) {
            for (int pre = 1; pre >= 0 && !e; pre--) {
                size_t q = pos, k;
                if (pre) {
                    if (is_rn(s->cp[pos]) || (f & (SL_CPT_LETTER | SL_CPT_NUMBER))) continue;
                    q = pos + 1;
                }
                for (k = q; o_upper(FL(s, k)); k++) {
                }
                if (alt == 1) {
                    /* U* backs off until L+ can start */
                    size_t j = k + 1;
                    if (o_lower(FL(s, k)))
                        j = k;
                    else
                        for (size_t t = k; t > q;)
                            if (o_lower(FL(s, --t))) {
                                j = t;
                                break;
                            }
                    if (j == k + 1) continue;
                    for (e = j; o_lower(FL(s, e)); e++) {
                    }
                } else {
                    if (k == q) continue;
                    for (e = k; o_lower(FL(s, e)); e++) {
                    }
                }
                if (contractions) e += contraction(s, e, true);
            }
        }
        if (!e && (f & SL_CPT_NUMBER))
            for (e = pos; (FL(s, e) & SL_CPT_NUMBER) && e - pos < max_digits; e++) {
            }
        if (!e) {
            size_t q = (s->cp[pos] == ' ' && o_other(FL(s, pos + 1))) ? pos + 1 : pos;
            if (o_other(FL(s, q))) {
                for (e = q; o_other(FL(s, e)); e++) {
                }
                while (is_rn(CP(s, e)) || CP(s, e) == '/')
                    e++;
            }
        }
        if (!e) e = match_ws(s, pos, true);
        pos = add(s, e > pos ? e : pos + 1);
    }
}

/* Class membership as llama.cpp's regex fallback sees a code point: its
 * category for \p{..}, and for literals the code point itself, except that
 * non-ASCII whitespace reads as U+000B. */
static bool class_has(const struct sl_pre_class *c, uint32_t cp, unsigned f)
{
    bool in = (f & c->cats) != 0;
    uint32_t m = (cp > 0x7F && (f & SL_CPT_WHITESPACE)) ? 0x0B : cp;
    for (unsigned i = 0; i < c->n_range && !in; i++)
        in = m >= c->range[i][0] && m <= c->range[i][1];
    return in != c->negate;
}

/* Length of the class run at q (capped at max; 0 if shorter than min). */
static size_t class_run(const struct span *s, const struct sl_pre_stage *st, size_t q)
{
    size_t k = 0;
    while (q + k < s->b && class_has(&st->cls, s->cp[q + k], s->fl[q + k]) &&
           (st->max == 0 || k < st->max))
        k++;
    return k >= st->min ? k : 0;
}

/* Leftmost-first matches of "prefix? class{min,max}"; the text between
 * matches stays as pieces of its own (regex_iterator's behaviour). */
static void split_class(struct span *s, const struct sl_pre_stage *st)
{
    size_t pos = s->a;
    while (pos < s->b && !s->failed) {
        size_t e = 0, k;
        bool pre = st->prefix == ' '   ? s->cp[pos] == ' '
                   : st->prefix == 's' ? (s->fl[pos] & SL_CPT_WHITESPACE) != 0
                                       : false;
        if (pre && (k = class_run(s, st, pos + 1)))
            e = pos + 1 + k;
        else if ((k = class_run(s, st, pos)))
            e = pos + k;
        if (!e) {
            pos++;
            continue;
        }
        add(s, pos);
        pos = add(s, e);
    }
    add(s, s->b);
}

static void split_ws_tail(struct span *s)
{
    size_t t = s->b;
    while (t > s->a && (s->fl[t - 1] & SL_CPT_WHITESPACE))
        t--;
    add(s, t);
    add(s, s->b);
}

/* Run every stage over cps[0..n); *out gets the piece lengths. */
static int pre_split(const struct sl_pre *pre, const uint32_t *cps, const unsigned *fl, size_t n,
                     struct segs *out)
{
    struct segs cur = {0}, next = {0};
    int rc = 0;
    if (seg_push(&cur, n)) return SL_ENOMEM;
    for (unsigned k = 0; k < pre->n_stage; k++) {
        const struct sl_pre_stage *st = &pre->stage[k];
        size_t start = 0;
        next.n = 0;
        for (size_t i = 0; i < cur.n; i++) {
            struct span s = {cps, fl, start, start + cur.v[i], start, &next, false};
            switch (st->kind) {
            case SL_PRE_GPT2:
                split_gpt2(&s);
                break;
            case SL_PRE_LLAMA3:
                split_llama3(&s, st->max_digits);
                break;
            case SL_PRE_O200K:
                split_o200k(&s, st->max_digits, st->contractions);
                break;
            case SL_PRE_CLASS:
                split_class(&s, st);
                break;
            case SL_PRE_WS_TAIL:
                split_ws_tail(&s);
                break;
            }
            if (s.failed) {
                rc = SL_ENOMEM;
                goto out;
            }
            start += cur.v[i];
        }
        struct segs t = cur;
        cur = next;
        next = t;
    }
out:
    free(next.v);
    if (rc) {
        free(cur.v);
        return rc;
    }
    *out = cur;
    return 0;
}

/* Test hook (vocab_int.h): the pieces of text as UTF-8, back to back. */
int sl_pre_split(const struct sl_pre *pre, const char *text, size_t len, char **buf,
                 size_t **piece_len, size_t *n_piece)
{
    uint32_t *cps = malloc((len ? len : 1) * sizeof *cps);
    unsigned *fl = malloc((len ? len : 1) * sizeof *fl);
    char *norm = NULL, *o = NULL;
    size_t n = 0, k = 0, start = 0;
    struct segs segs = {0};
    int rc = SL_ENOMEM;
    *buf = NULL;
    *piece_len = NULL;
    *n_piece = 0;
    if (!cps || !fl) goto out;
    if (pre->nfc && len) {
        if (sl_utf8_nfc(text, len, &norm, &len)) goto out;
        text = norm;
    }
    for (size_t i = 0; i < len; n++) {
        i += sl_utf8_decode(text + i, len - i, &cps[n]);
        fl[n] = sl_cpt_flags(cps[n]);
    }
    if (n && pre_split(pre, cps, fl, n, &segs)) goto out;
    if (!(o = malloc(4 * n + 1))) goto out;
    for (size_t i = 0; i < segs.n; i++) {
        size_t b = k;
        for (size_t j = start; j < start + segs.v[i]; j++)
            k += sl_utf8_encode(cps[j], o + k);
        start += segs.v[i];
        segs.v[i] = k - b; /* now in bytes */
    }
    o[k] = 0;
    *buf = o;
    *piece_len = segs.v;
    *n_piece = segs.n;
    segs.v = NULL;
    rc = 0;
out:
    free(segs.v);
    free(norm);
    free(cps);
    free(fl);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* BPE merge                                                                 */
/* ------------------------------------------------------------------------ */

struct bpe_sym {
    int32_t prev, next;
    uint32_t off, n; /* bytes in the encoded word; n = 0 once merged away */
};

struct bpe_bigram {
    int32_t left, right;
    int32_t rank;
    uint32_t size;
};

struct bpe {
    const struct sl_vocab *v;
    const char *word; /* the byte-level encoded piece */
    struct bpe_sym *sym;
    struct bpe_bigram *heap;
    size_t n_heap, cap_heap;
    char *key; /* scratch for "left right" */
};

static bool bg_before(const struct bpe_bigram *a, const struct bpe_bigram *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static int bg_push(struct bpe *m, struct bpe_bigram bg)
{
    if (m->n_heap == m->cap_heap) {
        size_t cap = m->cap_heap ? m->cap_heap * 2 : 64;
        struct bpe_bigram *nh = realloc(m->heap, cap * sizeof *nh);
        if (!nh) return SL_ENOMEM;
        m->heap = nh;
        m->cap_heap = cap;
    }
    size_t i = m->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bg_before(&bg, &m->heap[p])) break;
        m->heap[i] = m->heap[p];
        i = p;
    }
    m->heap[i] = bg;
    return 0;
}

static struct bpe_bigram bg_pop(struct bpe *m)
{
    struct bpe_bigram top = m->heap[0], last = m->heap[--m->n_heap];
    size_t i = 0, n = m->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bg_before(&m->heap[c + 1], &m->heap[c])) c++;
        if (!bg_before(&m->heap[c], &last)) break;
        m->heap[i] = m->heap[c];
        i = c;
    }
    if (n) m->heap[i] = last;
    return top;
}

static int add_bigram(struct bpe *m, int32_t left, int32_t right)
{
    if (left < 0 || right < 0) return 0;
    const struct bpe_sym *l = &m->sym[left], *r = &m->sym[right];
    memcpy(m->key, m->word + l->off, l->n);
    m->key[l->n] = ' ';
    memcpy(m->key + l->n + 1, m->word + r->off, r->n);
    int32_t rank = sl_strmap_get(&m->v->merge_map, m->key, l->n + 1 + r->n);
    if (rank < 0) return 0;
    return bg_push(m, (struct bpe_bigram){left, right, rank, l->n + r->n});
}

/* Merge one encoded piece word[0..len) and append its tokens. */
static int bpe_word(struct bpe *m, const char *word, size_t len, struct sl_tokvec *out)
{
    const struct sl_vocab *v = m->v;
    int32_t n = 0, tok;

    if (v->pre.ignore_merges && (tok = sl_strmap_get(&v->tok_map, word, len)) >= 0)
        return sl_tokvec_push(out, tok);
    m->word = word;
    m->n_heap = 0;
    for (size_t off = 0; off < len; n++) {
        size_t k = SL_MIN(sl_utf8_len((unsigned char)word[off]), len - off);
        m->sym[n] = (struct bpe_sym){n - 1, -1, (uint32_t)off, (uint32_t)k};
        off += k;
        if (off < len) m->sym[n].next = n + 1;
    }
    for (int32_t i = 1; i < n; i++)
        if (add_bigram(m, i - 1, i)) return SL_ENOMEM;
    while (m->n_heap > 0) {
        struct bpe_bigram bg = bg_pop(m);
        struct bpe_sym *l = &m->sym[bg.left], *r = &m->sym[bg.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != bg.size) continue; /* outdated */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) m->sym[r->next].prev = bg.left;
        if (add_bigram(m, l->prev, bg.left) || add_bigram(m, bg.left, l->next)) return SL_ENOMEM;
    }
    for (int32_t i = 0; i < n; i++) {
        const struct bpe_sym *sy = &m->sym[i];
        if (sy->n == 0) continue;
        tok = sl_strmap_get(&v->tok_map, word + sy->off, sy->n);
        if (tok >= 0) {
            if (sl_tokvec_push(out, tok)) return SL_ENOMEM;
            continue;
        }
        /* not a token: llama.cpp tries each byte on its own, drops the rest */
        for (uint32_t j = 0; j < sy->n; j++) {
            tok = sl_strmap_get(&v->tok_map, word + sy->off + j, 1);
            if (tok >= 0 && sl_tokvec_push(out, tok)) return SL_ENOMEM;
        }
    }
    return 0;
}

int sl_tok_bpe_encode(const struct sl_vocab *v, const char *text, size_t len, struct sl_tokvec *out)
{
    char *norm = NULL, *enc = NULL;
    uint32_t *cps = NULL;
    unsigned *fl = NULL;
    struct segs segs = {0};
    struct bpe m = {.v = v};
    size_t n = 0, maxw = 0;
    int rc = SL_ENOMEM;

    if (len == 0) return 0;
    if (v->pre.nfc) {
        if (sl_utf8_nfc(text, len, &norm, &len)) return SL_ENOMEM;
        text = norm;
    }
    cps = malloc(len * sizeof *cps);
    fl = malloc(len * sizeof *fl);
    if (!cps || !fl) goto out;
    for (size_t i = 0; i < len; n++) {
        i += sl_utf8_decode(text + i, len - i, &cps[n]);
        fl[n] = sl_cpt_flags(cps[n]);
    }
    if (pre_split(&v->pre, cps, fl, n, &segs)) goto out;

    /* a piece of w code points encodes to at most 8w bytes (4 UTF-8 bytes,
     * each to a 2-byte alphabet character) */
    for (size_t i = 0; i < segs.n; i++)
        maxw = SL_MAX(maxw, segs.v[i]);
    enc = malloc(8 * maxw + 1);
    m.key = malloc(8 * maxw + 2);
    m.sym = malloc((8 * maxw + 1) * sizeof *m.sym);
    if (!enc || !m.key || !m.sym) goto out;

    size_t start = 0;
    for (size_t i = 0; i < segs.n; i++) {
        size_t k = 0;
        for (size_t j = start; j < start + segs.v[i]; j++) {
            char u[4];
            size_t nb = sl_utf8_encode(cps[j], u);
            for (size_t b = 0; b < nb; b++)
                k += sl_utf8_encode(sl_bpe_byte_to_cpt((uint8_t)u[b]), enc + k);
        }
        if (bpe_word(&m, enc, k, out)) goto out;
        start += segs.v[i];
    }
    rc = 0;
out:
    free(norm);
    free(cps);
    free(fl);
    free(segs.v);
    free(enc);
    free(m.key);
    free(m.sym);
    free(m.heap);
    return rc;
}
