/*
 * grammar.c - GBNF-style grammars over bytes and the grammar sampler stage
 * (engine layer). See grammar.h for the format and docs/tasks.md.
 *
 * Representation. Every rule is a flat list of elements: alternatives
 * separated by ALT, the rule closed by END. A terminal is a 256-bit byte
 * set; REF names another rule. Groups and postfix operators become
 * generated rules (X* is R ::= X R | <empty>), so the matcher sees only
 * sets and references.
 *
 * Matching. A parse stack is a list of element positions: the top is the
 * next thing to match, below it where to continue when that is done. The
 * stacks are linked lists of hash-consed nodes (elem, parent) in an arena,
 * so pushing is O(1), equal stacks are equal ids (deduplication is an id
 * compare), and the token walk can keep the stack set of every depth of a
 * token's bytes without copying. The arena is compacted to the committed
 * state at the start of every apply().
 */
#include "grammar.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { E_END = 0, E_ALT, E_SET, E_REF };

struct gelem {
    uint8_t type;
    uint32_t val; /* E_SET: set index; E_REF: rule index */
};

struct sl_grammar {
    struct gelem *elems; /* all rules, each closed by E_END */
    size_t n_elems;
    uint8_t (*sets)[32]; /* byte sets */
    size_t n_sets;
    uint32_t *alt_start; /* element index of each alternative of every rule */
    uint32_t *rule_alt0; /* (n_rules + 1) first alternative of rule r in alt_start */
    size_t n_rules;
    uint32_t root;
};

#define NIL 0xFFFFFFFFu

/* ------------------------------------------------------------------------ */
/* Parser                                                                    */
/* ------------------------------------------------------------------------ */

struct evec {
    struct gelem *v;
    size_t n, cap;
};

struct prule {
    char *name; /* NULL for generated rules */
    size_t name_len;
    struct evec body;
    bool defined;
    size_t line; /* first use, for "undefined rule" */
};

struct parser {
    const char *s, *end, *start;
    struct prule *rules;
    size_t n_rules, cap_rules;
    uint8_t (*sets)[32];
    size_t n_sets, cap_sets;
    size_t total_elems;
    struct sl_err *err;
    int rc;
    int nest;
};

static int perr(struct parser *p, int code, const char *what)
{
    if (p->rc) return p->rc;
    size_t line = 1, col = 1;
    for (const char *c = p->start; c < p->s && c < p->end; c++) {
        if (*c == '\n') line++, col = 1;
        else col++;
    }
    p->rc = sl_err_set(p->err, code, "grammar: line %zu col %zu: %s", line, col, what);
    return p->rc;
}

static int push_elem(struct parser *p, struct evec *v, uint8_t type, uint32_t val)
{
    if (++p->total_elems > SL_GRAMMAR_MAX_ELEMS) return perr(p, SL_ERANGE, "too many elements");
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        struct gelem *nv = realloc(v->v, cap * sizeof *nv);
        if (!nv) return perr(p, SL_ENOMEM, "out of memory");
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = (struct gelem){type, val};
    return 0;
}

/* A new rule (name may be NULL); returns its index or -1. */
static long new_rule(struct parser *p, const char *name, size_t len)
{
    if (p->n_rules >= SL_GRAMMAR_MAX_RULES) {
        perr(p, SL_ERANGE, "too many rules");
        return -1;
    }
    if (p->n_rules == p->cap_rules) {
        size_t cap = p->cap_rules ? p->cap_rules * 2 : 16;
        struct prule *nr = realloc(p->rules, cap * sizeof *nr);
        if (!nr) {
            perr(p, SL_ENOMEM, "out of memory");
            return -1;
        }
        p->rules = nr;
        p->cap_rules = cap;
    }
    struct prule *r = &p->rules[p->n_rules];
    memset(r, 0, sizeof *r);
    if (name) {
        if (!(r->name = malloc(len + 1))) {
            perr(p, SL_ENOMEM, "out of memory");
            return -1;
        }
        memcpy(r->name, name, len);
        r->name[len] = 0;
        r->name_len = len;
    }
    return (long)p->n_rules++;
}

static long find_or_add_rule(struct parser *p, const char *name, size_t len)
{
    for (size_t i = 0; i < p->n_rules; i++)
        if (p->rules[i].name && p->rules[i].name_len == len && !memcmp(p->rules[i].name, name, len))
            return (long)i;
    long r = new_rule(p, name, len);
    if (r >= 0) {
        size_t line = 1;
        for (const char *c = p->start; c < p->s; c++) line += *c == '\n';
        p->rules[r].line = line;
    }
    return r;
}

static long new_set(struct parser *p)
{
    if (p->n_sets == p->cap_sets) {
        size_t cap = p->cap_sets ? p->cap_sets * 2 : 64;
        uint8_t(*ns)[32] = realloc(p->sets, cap * sizeof *ns);
        if (!ns) {
            perr(p, SL_ENOMEM, "out of memory");
            return -1;
        }
        p->sets = ns;
        p->cap_sets = cap;
    }
    memset(p->sets[p->n_sets], 0, 32);
    return (long)p->n_sets++;
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

static void skip_ws(struct parser *p)
{
    while (p->s < p->end) {
        char c = *p->s;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            p->s++;
        } else if (c == '#') {
            while (p->s < p->end && *p->s != '\n') p->s++;
        } else {
            break;
        }
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One byte of a literal or class, with escapes; -1 on error. */
static int read_byte(struct parser *p)
{
    if (p->s >= p->end) {
        perr(p, SL_EFORMAT, "unexpected end of grammar");
        return -1;
    }
    unsigned char c = (unsigned char)*p->s++;
    if (c != '\\') return c;
    if (p->s >= p->end) {
        perr(p, SL_EFORMAT, "unexpected end after '\\'");
        return -1;
    }
    c = (unsigned char)*p->s++;
    switch (c) {
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case '\\': case '"': case '\'': case '[': case ']': case '-': case '/': case '^': return c;
    case 'x': {
        int h = p->s + 1 < p->end ? hexval(p->s[0]) : -1, l = h >= 0 ? hexval(p->s[1]) : -1;
        if (h < 0 || l < 0) {
            perr(p, SL_EFORMAT, "expected two hex digits after '\\x'");
            return -1;
        }
        p->s += 2;
        return h * 16 + l;
    }
    default:
        perr(p, SL_EFORMAT, "unknown escape");
        return -1;
    }
}

static bool at_rule_def(struct parser *p)
{
    const char *s = p->s;
    if (s >= p->end || !is_name_char(*s)) return false;
    while (s < p->end && is_name_char(*s)) s++;
    while (s < p->end && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')) s++;
    return p->end - s >= 3 && !memcmp(s, "::=", 3);
}

static int parse_alts(struct parser *p, long rule);

/* Replace v[start..n) (one element or more) by a single element. */
static int wrap(struct parser *p, long rule, size_t start, struct gelem *out)
{
    struct evec *v = &p->rules[rule].body;
    if (v->n - start == 1) {
        *out = v->v[start];
        v->n = start;
        return 0;
    }
    long w = new_rule(p, NULL, 0);
    if (w < 0) return p->rc;
    v = &p->rules[rule].body; /* new_rule may have moved p->rules */
    struct evec *wb = &p->rules[w].body;
    for (size_t i = start; i < v->n; i++)
        if (push_elem(p, wb, v->v[i].type, v->v[i].val)) return p->rc;
    if (push_elem(p, wb, E_END, 0)) return p->rc;
    p->rules[w].defined = true;
    v->n = start;
    *out = (struct gelem){E_REF, (uint32_t)w};
    return 0;
}

/* R ::= X R | <empty>  (star) or  R ::= X | <empty>  (opt) or
 * R ::= X next | <empty> (chain). Returns R or -1. */
static long gen_rule(struct parser *p, struct gelem x, long next, bool self)
{
    long r = new_rule(p, NULL, 0);
    if (r < 0) return -1;
    struct evec *b = &p->rules[r].body;
    if (push_elem(p, b, x.type, x.val)) return -1;
    if (self && push_elem(p, b, E_REF, (uint32_t)r)) return -1;
    if (next >= 0 && push_elem(p, b, E_REF, (uint32_t)next)) return -1;
    if (push_elem(p, b, E_ALT, 0) || push_elem(p, b, E_END, 0)) return -1;
    p->rules[r].defined = true;
    return r;
}

static bool read_int(struct parser *p, long *out)
{
    long v = 0;
    if (p->s >= p->end || *p->s < '0' || *p->s > '9') return false;
    while (p->s < p->end && *p->s >= '0' && *p->s <= '9') {
        v = v * 10 + (*p->s++ - '0');
        if (v > SL_GRAMMAR_MAX_REPEAT) v = SL_GRAMMAR_MAX_REPEAT + 1;
    }
    *out = v;
    return true;
}

static int parse_postfix(struct parser *p, long rule, size_t start)
{
    struct evec *v = &p->rules[rule].body;
    char c = p->s < p->end ? *p->s : 0;
    long m = 0, n = -1;
    if (c == '*') m = 0, n = -1;
    else if (c == '+') m = 1, n = -1;
    else if (c == '?') m = 0, n = 1;
    else if (c == '{') {
        p->s++;
        skip_ws(p);
        if (!read_int(p, &m)) return perr(p, SL_EFORMAT, "expected a number after '{'");
        skip_ws(p);
        n = m;
        if (p->s < p->end && *p->s == ',') {
            p->s++;
            skip_ws(p);
            if (!read_int(p, &n)) n = -1;
            skip_ws(p);
        }
        if (p->s >= p->end || *p->s != '}') return perr(p, SL_EFORMAT, "expected '}'");
        if (m > SL_GRAMMAR_MAX_REPEAT || n > SL_GRAMMAR_MAX_REPEAT)
            return perr(p, SL_ERANGE, "repetition count too large");
        if (n >= 0 && n < m) return perr(p, SL_EFORMAT, "{m,n} with n < m");
    } else {
        return 0;
    }
    p->s++;
    struct gelem x = {0};
    if (wrap(p, rule, start, &x)) return p->rc;
    v = &p->rules[rule].body; /* new_rule may have moved p->rules */
    for (long i = 0; i < m; i++)
        if (push_elem(p, v, x.type, x.val)) return p->rc;
    long tail = -1;
    if (n < 0) {
        if ((tail = gen_rule(p, x, -1, true)) < 0) return p->rc;
    } else {
        for (long i = 0; i < n - m; i++)
            if ((tail = gen_rule(p, x, tail, false)) < 0) return p->rc;
    }
    v = &p->rules[rule].body;
    if (tail >= 0 && push_elem(p, v, E_REF, (uint32_t)tail)) return p->rc;
    return 0;
}

static int parse_seq(struct parser *p, long rule)
{
    for (;;) {
        skip_ws(p);
        if (p->s >= p->end) return 0;
        char c = *p->s;
        size_t start = p->rules[rule].body.n;
        if (c == '"') {
            p->s++;
            while (p->s < p->end && *p->s != '"') {
                int b = read_byte(p);
                long si = b < 0 ? -1 : new_set(p);
                if (si < 0) return p->rc;
                p->sets[si][b >> 3] |= (uint8_t)(1u << (b & 7));
                if (push_elem(p, &p->rules[rule].body, E_SET, (uint32_t)si)) return p->rc;
            }
            if (p->s >= p->end) return perr(p, SL_EFORMAT, "unterminated literal");
            p->s++;
            if (p->rules[rule].body.n == start) continue; /* "" matches nothing */
        } else if (c == '[') {
            p->s++;
            bool neg = p->s < p->end && *p->s == '^';
            if (neg) p->s++;
            long si = new_set(p);
            if (si < 0) return p->rc;
            while (p->s < p->end && *p->s != ']') {
                int lo = read_byte(p), hi;
                if (lo < 0) return p->rc;
                hi = lo;
                if (p->s + 1 < p->end && *p->s == '-' && p->s[1] != ']') {
                    p->s++;
                    if ((hi = read_byte(p)) < 0) return p->rc;
                    if (hi < lo) return perr(p, SL_EFORMAT, "range with end before start");
                }
                for (int b = lo; b <= hi; b++) p->sets[si][b >> 3] |= (uint8_t)(1u << (b & 7));
            }
            if (p->s >= p->end) return perr(p, SL_EFORMAT, "unterminated character class");
            p->s++;
            if (neg)
                for (int k = 0; k < 32; k++) p->sets[si][k] = (uint8_t)~p->sets[si][k];
            if (push_elem(p, &p->rules[rule].body, E_SET, (uint32_t)si)) return p->rc;
        } else if (c == '.') {
            p->s++;
            long si = new_set(p);
            if (si < 0) return p->rc;
            memset(p->sets[si], 0xFF, 32);
            if (push_elem(p, &p->rules[rule].body, E_SET, (uint32_t)si)) return p->rc;
        } else if (c == '(') {
            p->s++;
            if (++p->nest > SL_GRAMMAR_MAX_NEST) return perr(p, SL_ERANGE, "groups nested too deep");
            long g = new_rule(p, NULL, 0);
            if (g < 0) return p->rc;
            if (parse_alts(p, g)) return p->rc;
            p->nest--;
            skip_ws(p);
            if (p->s >= p->end || *p->s != ')') return perr(p, SL_EFORMAT, "expected ')'");
            p->s++;
            p->rules[g].defined = true;
            if (push_elem(p, &p->rules[rule].body, E_REF, (uint32_t)g)) return p->rc;
        } else if (is_name_char(c)) {
            if (at_rule_def(p)) return 0; /* the next rule starts */
            const char *n0 = p->s;
            while (p->s < p->end && is_name_char(*p->s)) p->s++;
            long r = find_or_add_rule(p, n0, (size_t)(p->s - n0));
            if (r < 0) return p->rc;
            if (push_elem(p, &p->rules[rule].body, E_REF, (uint32_t)r)) return p->rc;
        } else {
            return 0; /* '|', ')' or something the caller judges */
        }
        skip_ws(p);
        if (parse_postfix(p, rule, start)) return p->rc;
    }
}

static int parse_alts(struct parser *p, long rule)
{
    for (;;) {
        if (parse_seq(p, rule)) return p->rc;
        skip_ws(p);
        if (p->s < p->end && *p->s == '|') {
            p->s++;
            if (push_elem(p, &p->rules[rule].body, E_ALT, 0)) return p->rc;
            continue;
        }
        return push_elem(p, &p->rules[rule].body, E_END, 0);
    }
}

static void parser_free(struct parser *p)
{
    for (size_t i = 0; i < p->n_rules; i++) {
        free(p->rules[i].name);
        free(p->rules[i].body.v);
    }
    free(p->rules);
    free(p->sets);
}

int sl_grammar_parse(struct sl_grammar **out, const char *text, size_t len, struct sl_err *err)
{
    struct parser p = {.s = text, .end = text + len, .start = text, .err = err};
    struct sl_grammar *g = NULL;
    *out = NULL;
    if (len > SL_GRAMMAR_MAX_TEXT)
        return sl_err_set(err, SL_ERANGE, "grammar: %zu bytes, more than %u", len, SL_GRAMMAR_MAX_TEXT);
    for (;;) {
        skip_ws(&p);
        if (p.s >= p.end) break;
        const char *n0 = p.s;
        while (p.s < p.end && is_name_char(*p.s)) p.s++;
        if (p.s == n0) {
            perr(&p, SL_EFORMAT, "expected a rule name");
            goto fail; /* syntax error */
        }
        long r = find_or_add_rule(&p, n0, (size_t)(p.s - n0));
        if (r < 0) goto fail; /* limit or allocation */
        if (p.rules[r].defined) {
            perr(&p, SL_EFORMAT, "rule defined twice");
            goto fail; /* syntax error */
        }
        skip_ws(&p);
        if (p.end - p.s < 3 || memcmp(p.s, "::=", 3) != 0) {
            perr(&p, SL_EFORMAT, "expected '::='");
            goto fail; /* syntax error */
        }
        p.s += 3;
        p.rules[r].defined = true; /* before the body: a rule may refer to itself */
        if (parse_alts(&p, r)) goto fail; /* syntax error */
        skip_ws(&p);
        if (p.s < p.end && !is_name_char(*p.s)) {
            perr(&p, SL_EFORMAT, *p.s == ')' ? "unbalanced ')'" : "unexpected character");
            goto fail; /* syntax error */
        }
    }
    long root = -1;
    for (size_t i = 0; i < p.n_rules; i++) {
        if (!p.rules[i].defined) {
            p.rc = sl_err_set(err, SL_ENOTFOUND, "grammar: rule '%s' (line %zu) is not defined",
                              p.rules[i].name ? p.rules[i].name : "?", p.rules[i].line);
            goto fail; /* undefined rule */
        }
        if (p.rules[i].name && !strcmp(p.rules[i].name, "root")) root = (long)i;
    }
    if (root < 0) {
        p.rc = sl_err_set(err, SL_ENOTFOUND, "grammar: no rule named 'root'");
        goto fail; /* no start rule */
    }
    /* flatten */
    if (!(g = calloc(1, sizeof *g))) goto oom; /* allocation failure */
    size_t n_alts = 0;
    for (size_t i = 0; i < p.n_rules; i++) {
        g->n_elems += p.rules[i].body.n;
        for (size_t k = 0; k < p.rules[i].body.n; k++) n_alts += p.rules[i].body.v[k].type != E_SET &&
                                                                  p.rules[i].body.v[k].type != E_REF;
    }
    g->n_rules = p.n_rules;
    g->root = (uint32_t)root;
    g->elems = malloc((g->n_elems + 1) * sizeof *g->elems);
    g->alt_start = malloc((n_alts + 1) * sizeof *g->alt_start);
    g->rule_alt0 = malloc((p.n_rules + 1) * sizeof *g->rule_alt0);
    g->sets = malloc((p.n_sets + 1) * sizeof *g->sets);
    if (!g->elems || !g->alt_start || !g->rule_alt0 || !g->sets) goto oom; /* allocation failure */
    if (p.n_sets) memcpy(g->sets, p.sets, p.n_sets * sizeof *g->sets);
    g->n_sets = p.n_sets;
    size_t e = 0, a = 0;
    for (size_t i = 0; i < p.n_rules; i++) {
        g->rule_alt0[i] = (uint32_t)a;
        g->alt_start[a++] = (uint32_t)e;
        for (size_t k = 0; k < p.rules[i].body.n; k++) {
            g->elems[e++] = p.rules[i].body.v[k];
            if (p.rules[i].body.v[k].type == E_ALT) g->alt_start[a++] = (uint32_t)e;
        }
    }
    g->rule_alt0[p.n_rules] = (uint32_t)a;
    parser_free(&p);
    *out = g;
    return 0;
oom:
    p.rc = sl_err_set(err, SL_ENOMEM, "grammar: out of memory");
fail:
    sl_grammar_free(g);
    parser_free(&p);
    return p.rc ? p.rc : SL_EFORMAT;
}

void sl_grammar_free(struct sl_grammar *g)
{
    if (!g) return;
    free(g->elems);
    free(g->sets);
    free(g->alt_start);
    free(g->rule_alt0);
    free(g);
}

size_t sl_grammar_n_rules(const struct sl_grammar *g) { return g->n_rules; }

/* ------------------------------------------------------------------------ */
/* Matcher: hash-consed stacks                                               */
/* ------------------------------------------------------------------------ */

struct arena {
    uint32_t *elem, *parent; /* (n) node = (element index, parent node or NIL) */
    size_t n, cap;
    uint32_t *ht;            /* (ht_cap) node ids or NIL */
    size_t ht_cap;
};

struct sset {
    uint32_t *v; /* node ids; NIL is the empty (finished) stack */
    size_t n, cap;
};

struct sl_grammar_state {
    const struct sl_grammar *g;
    struct arena a[2]; /* a[cur_arena] holds the live nodes */
    int ca;
    struct sset cur;
    struct sset tmp;
    int status; /* 0, or an SL_E* code once something failed */
    struct sl_err *err;
};

static void arena_free(struct arena *a)
{
    free(a->elem);
    free(a->parent);
    free(a->ht);
    memset(a, 0, sizeof *a);
}

static void arena_clear(struct arena *a)
{
    a->n = 0;
    if (a->ht) memset(a->ht, 0xFF, a->ht_cap * sizeof *a->ht);
}

static size_t hslot(uint32_t e, uint32_t p, size_t cap)
{
    uint64_t h = ((uint64_t)e * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)p * 0xC2B2AE3D27D4EB4Full);
    h ^= h >> 29;
    return (size_t)h & (cap - 1);
}

/* The node (e, parent), created if new; NIL on allocation failure. */
static uint32_t node(struct sl_grammar_state *st, uint32_t e, uint32_t parent)
{
    struct arena *a = &st->a[st->ca];
    if (a->n * 2 >= a->ht_cap) {
        size_t cap = a->ht_cap ? a->ht_cap * 2 : 1024;
        uint32_t *ht = malloc(cap * sizeof *ht);
        if (!ht) goto oom;
        memset(ht, 0xFF, cap * sizeof *ht);
        for (size_t i = 0; i < a->n; i++) {
            size_t s = hslot(a->elem[i], a->parent[i], cap);
            while (ht[s] != NIL) s = (s + 1) & (cap - 1);
            ht[s] = (uint32_t)i;
        }
        free(a->ht);
        a->ht = ht;
        a->ht_cap = cap;
    }
    size_t s = hslot(e, parent, a->ht_cap);
    while (a->ht[s] != NIL) {
        uint32_t id = a->ht[s];
        if (a->elem[id] == e && a->parent[id] == parent) return id;
        s = (s + 1) & (a->ht_cap - 1);
    }
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 1024;
        if (cap >= NIL) goto oom;
        uint32_t *ne = realloc(a->elem, cap * sizeof *ne);
        if (!ne) goto oom;
        a->elem = ne;
        uint32_t *np = realloc(a->parent, cap * sizeof *np);
        if (!np) goto oom;
        a->parent = np;
        a->cap = cap;
    }
    a->elem[a->n] = e;
    a->parent[a->n] = parent;
    a->ht[s] = (uint32_t)a->n;
    return (uint32_t)a->n++;
oom:
    if (!st->status) st->status = sl_err_set(st->err, SL_ENOMEM, "grammar: out of memory");
    return NIL;
}

static void sset_add(struct sl_grammar_state *st, struct sset *s, uint32_t id)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i] == id) return;
    if (s->n >= SL_GRAMMAR_MAX_STACKS) {
        if (!st->status)
            st->status = sl_err_set(st->err, SL_ERANGE, "grammar: more than %d parses at once (too ambiguous)",
                                    SL_GRAMMAR_MAX_STACKS);
        return;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        uint32_t *nv = realloc(s->v, cap * sizeof *nv);
        if (!nv) {
            if (!st->status) st->status = sl_err_set(st->err, SL_ENOMEM, "grammar: out of memory");
            return;
        }
        s->v = nv;
        s->cap = cap;
    }
    s->v[s->n++] = id;
}

static bool closes(const struct sl_grammar *g, uint32_t e)
{
    return g->elems[e].type == E_END || g->elems[e].type == E_ALT;
}

/* Add to out every stack reachable from id by expanding rule references
 * at the top until a byte set (or nothing) is on top. */
static void advance(struct sl_grammar_state *st, struct sset *out, uint32_t id, int depth)
{
    const struct sl_grammar *g = st->g;
    if (st->status) return;
    if (id == NIL) {
        sset_add(st, out, NIL);
        return;
    }
    if (depth > SL_GRAMMAR_MAX_NEST * 4) {
        st->status = sl_err_set(st->err, SL_EINVAL,
                                "grammar: rule expansion too deep (left recursion?)");
        return;
    }
    const struct arena *a = &st->a[st->ca];
    uint32_t top = a->elem[id];
    if (g->elems[top].type == E_SET) {
        sset_add(st, out, id);
        return;
    }
    uint32_t parent = a->parent[id], r = g->elems[top].val;
    uint32_t base = closes(g, top + 1) ? parent : node(st, top + 1, parent);
    if (st->status) return;
    for (uint32_t k = g->rule_alt0[r]; k < g->rule_alt0[r + 1]; k++) {
        uint32_t s = g->alt_start[k];
        if (closes(g, s)) {
            advance(st, out, base, depth + 1);
        } else {
            uint32_t nid = node(st, s, base);
            if (st->status) return;
            advance(st, out, nid, depth + 1);
        }
    }
}

/* out = the stacks of in after byte b. */
static void accept_byte(struct sl_grammar_state *st, const struct sset *in, uint8_t b,
                        struct sset *out)
{
    const struct sl_grammar *g = st->g;
    out->n = 0;
    for (size_t i = 0; i < in->n && !st->status; i++) {
        uint32_t id = in->v[i];
        if (id == NIL) continue;
        const struct arena *a = &st->a[st->ca];
        uint32_t top = a->elem[id];
        if (!(g->sets[g->elems[top].val][b >> 3] & (1u << (b & 7)))) continue;
        uint32_t parent = a->parent[id];
        uint32_t nid = closes(g, top + 1) ? parent : node(st, top + 1, parent);
        if (!st->status) advance(st, out, nid, 0);
    }
}

/* Copy the stacks of cur into the other arena and make it current. */
static int compact(struct sl_grammar_state *st)
{
    int from = st->ca, to = 1 - st->ca;
    uint32_t chain[SL_GRAMMAR_MAX_DEPTH];
    arena_clear(&st->a[to]);
    for (size_t i = 0; i < st->cur.n; i++) {
        uint32_t id = st->cur.v[i];
        size_t n = 0;
        while (id != NIL && n < SL_GRAMMAR_MAX_DEPTH) {
            chain[n++] = id;
            id = st->a[from].parent[id];
        }
        if (id != NIL)
            return st->status = sl_err_set(st->err, SL_ERANGE, "grammar: parse stack deeper than %d",
                                           SL_GRAMMAR_MAX_DEPTH);
        uint32_t nid = NIL;
        st->ca = to;
        while (n > 0) nid = node(st, st->a[from].elem[chain[--n]], nid);
        st->ca = from;
        st->cur.v[i] = nid;
    }
    st->ca = to;
    return st->status;
}

int sl_grammar_state_init(struct sl_grammar_state **out, const struct sl_grammar *g,
                          struct sl_err *err)
{
    struct sl_grammar_state *st = calloc(1, sizeof *st);
    *out = NULL;
    if (!st) return sl_err_set(err, SL_ENOMEM, "grammar: out of memory");
    st->g = g;
    st->err = err;
    sl_grammar_state_reset(st);
    int rc = st->status;
    st->err = NULL;
    if (rc) {
        sl_grammar_state_free(st);
        return rc;
    }
    *out = st;
    return 0;
}

void sl_grammar_state_reset(struct sl_grammar_state *st)
{
    const struct sl_grammar *g = st->g;
    st->status = 0;
    st->ca = 0;
    arena_clear(&st->a[0]);
    st->cur.n = 0;
    uint32_t r = g->root;
    for (uint32_t k = g->rule_alt0[r]; k < g->rule_alt0[r + 1]; k++) {
        uint32_t s = g->alt_start[k];
        advance(st, &st->cur, closes(g, s) ? NIL : node(st, s, NIL), 0);
    }
}

void sl_grammar_state_free(struct sl_grammar_state *st)
{
    if (!st) return;
    arena_free(&st->a[0]);
    arena_free(&st->a[1]);
    free(st->cur.v);
    free(st->tmp.v);
    free(st);
}

int sl_grammar_state_accept(struct sl_grammar_state *st, const char *s, size_t n,
                            struct sl_err *err)
{
    struct sset a = {0}, b = {0};
    int rc = 0;
    st->err = err;
    if (st->status) {
        rc = st->status;
        goto out; /* earlier failure */
    }
    for (size_t i = 0; i < st->cur.n; i++) sset_add(st, &a, st->cur.v[i]);
    for (size_t i = 0; i < n && !st->status; i++) {
        accept_byte(st, &a, (uint8_t)s[i], &b);
        struct sset t = a;
        a = b;
        b = t;
        if (a.n == 0 && !st->status) {
            rc = sl_err_set(err, SL_EINVAL, "grammar: byte %zu (0x%02x) is not allowed here", i,
                            (unsigned char)s[i]);
            goto out; /* rejected */
        }
    }
    if (st->status) {
        rc = st->status;
        goto out; /* limit or allocation */
    }
    free(st->cur.v);
    st->cur = a;
    a.v = NULL;
out:
    free(a.v);
    free(b.v);
    st->err = NULL;
    return rc;
}

bool sl_grammar_state_can_end(const struct sl_grammar_state *st)
{
    for (size_t i = 0; i < st->cur.n; i++)
        if (st->cur.v[i] == NIL) return true;
    return false;
}

bool sl_grammar_state_can_continue(const struct sl_grammar_state *st)
{
    for (size_t i = 0; i < st->cur.n; i++)
        if (st->cur.v[i] != NIL) return true;
    return false;
}

/* ------------------------------------------------------------------------ */
/* The sampler stage                                                         */
/* ------------------------------------------------------------------------ */

struct gstage {
    const struct sl_grammar *g;
    const struct sl_vocab *v;
    struct sl_grammar_state *st;
    int32_t n_vocab;
    char *text;        /* all token texts */
    uint32_t *off;     /* (V) */
    uint16_t *len;     /* (V) 0: never allowed as text */
    int32_t *sorted;   /* (n_sorted) tokens with text, by text */
    uint16_t *lcp;     /* (n_sorted) common prefix with the previous sorted token */
    size_t n_sorted;
    int32_t *eog;      /* end-of-generation tokens */
    size_t n_eog;
    uint8_t *allowed;  /* (V) */
    struct sset lvl[SL_GRAMMAR_MAX_TOKEN_BYTES + 1];
    /* masks of recent matcher states, keyed by the states' element stacks:
       inside an unbounded string or a repeated item the state recurs */
    struct {
        uint64_t hash;
        uint32_t *sig;
        size_t sig_len;
        uint8_t *allowed; /* (V) or NULL when the slot is empty */
    } memo[SL_GRAMMAR_MASK_CACHE];
    size_t memo_next;
    uint32_t *sig;     /* scratch: the current state's signature */
    size_t sig_cap;
    double lse;
    bool done;
    int bad;
    struct sl_err err;
};

struct tok_key {
    const char *p;
    size_t len;
    int32_t id;
};

static int cmp_tok(const void *pa, const void *pb)
{
    const struct tok_key *a = pa, *b = pb;
    size_t m = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->p, b->p, m);
    if (c) return c;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static int mask(struct gstage *s, struct sl_token_array *cur, struct sl_err *err);

static int stage_apply(void *ctx, struct sl_token_array *cur, struct sl_err *err)
{
    struct gstage *s = ctx;
    if (s->bad) return sl_err_set(err, SL_EINVAL, "grammar: %s", s->err.msg);
    s->st->err = err; /* matcher errors go to the caller's err during this call only */
    int rc = mask(s, cur, err);
    s->st->err = NULL;
    return rc;
}

/* The state's stacks as element sequences: [len, top..bottom]*, NIL as
 * one 0xFFFFFFFF; 0 when out of memory (no caching then). */
static size_t signature(struct gstage *s)
{
    const struct sl_grammar_state *st = s->st;
    const struct arena *a = &st->a[st->ca];
    size_t n = 0;
    for (size_t i = 0; i < st->cur.n; i++) {
        size_t d = 1;
        for (uint32_t id = st->cur.v[i]; id != NIL; id = a->parent[id]) d++;
        if (n + d > s->sig_cap) {
            size_t cap = (n + d) * 2 + 64;
            uint32_t *ns = realloc(s->sig, cap * sizeof *ns);
            if (!ns) return 0;
            s->sig = ns;
            s->sig_cap = cap;
        }
        if (st->cur.v[i] == NIL) {
            s->sig[n++] = NIL;
            continue;
        }
        s->sig[n++] = (uint32_t)(d - 1);
        for (uint32_t id = st->cur.v[i]; id != NIL; id = a->parent[id]) s->sig[n++] = a->elem[id];
    }
    return n;
}

static uint64_t sig_hash(const uint32_t *v, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ v[i]) * 1099511628211ull;
    return h;
}

static void compute_mask(struct gstage *s);

static int mask(struct gstage *s, struct sl_token_array *cur, struct sl_err *err)
{
    struct sl_grammar_state *st = s->st;
    if (compact(st)) return st->status;
    size_t sl = signature(s);
    uint64_t h = sl ? sig_hash(s->sig, sl) : 0;
    bool hit = false;
    for (size_t m = 0; sl && m < SL_GRAMMAR_MASK_CACHE && !hit; m++) {
        if (!s->memo[m].allowed || s->memo[m].hash != h || s->memo[m].sig_len != sl ||
            memcmp(s->memo[m].sig, s->sig, sl * sizeof *s->sig) != 0)
            continue;
        memcpy(s->allowed, s->memo[m].allowed, (size_t)s->n_vocab);
        hit = true;
    }
    if (!hit) {
        compute_mask(s);
        if (st->status) return st->status;
        size_t m = s->memo_next++ % SL_GRAMMAR_MASK_CACHE;
        if (sl && !s->memo[m].allowed) s->memo[m].allowed = malloc((size_t)s->n_vocab);
        uint32_t *ns = sl ? realloc(s->memo[m].sig, sl * sizeof *ns) : NULL;
        if (ns) s->memo[m].sig = ns;
        if (sl && ns && s->memo[m].allowed) {
            memcpy(s->memo[m].sig, s->sig, sl * sizeof *ns);
            memcpy(s->memo[m].allowed, s->allowed, (size_t)s->n_vocab);
            s->memo[m].sig_len = sl;
            s->memo[m].hash = h;
        } else {
            s->memo[m].sig_len = 0; /* never matches */
        }
    }
    size_t k = 0;
    double mx = -INFINITY, sum = 0;
    for (size_t i = 0; i < cur->size; i++) {
        struct sl_token_data d = cur->data[i];
        if (d.id < 0 || d.id >= s->n_vocab || !s->allowed[d.id]) continue;
        cur->data[k++] = d;
        if (d.logit > mx) mx = d.logit;
    }
    if (k == 0) return sl_err_set(err, SL_EINVAL, "grammar: no token of the vocabulary can continue the text");
    for (size_t i = 0; i < k; i++) sum += exp((double)cur->data[i].logit - mx);
    s->lse = mx + log(sum);
    cur->size = k;
    cur->sorted = 0;
    return 0;
}

/* s->allowed = the tokens whose bytes the current state accepts. */
static void compute_mask(struct gstage *s)
{
    struct sl_grammar_state *st = s->st;
    memset(s->allowed, 0, (size_t)s->n_vocab);
    s->lvl[0].n = 0;
    for (size_t i = 0; i < st->cur.n; i++) sset_add(st, &s->lvl[0], st->cur.v[i]);
    size_t valid = 0;
    for (size_t i = 0; i < s->n_sorted && !st->status; i++) {
        int32_t t = s->sorted[i];
        const uint8_t *bytes = (const uint8_t *)s->text + s->off[t];
        size_t n = s->len[t], d = s->lcp[i] < valid ? s->lcp[i] : valid;
        while (d < n && s->lvl[d].n > 0) {
            accept_byte(st, &s->lvl[d], bytes[d], &s->lvl[d + 1]);
            d++;
        }
        valid = d;
        if (d == n && s->lvl[d].n > 0) s->allowed[t] = 1;
    }
    if (st->status) return;
    if (sl_grammar_state_can_end(st))
        for (size_t i = 0; i < s->n_eog; i++) s->allowed[s->eog[i]] = 1;
}

static void stage_accept(void *ctx, int32_t token)
{
    struct gstage *s = ctx;
    if (s->bad || token < 0 || token >= s->n_vocab) return;
    if (sl_vocab_is_eog(s->v, token)) {
        if (!sl_grammar_state_can_end(s->st)) {
            s->bad = sl_err_set(&s->err, SL_EINVAL, "end of generation before the grammar was complete");
            return;
        }
        s->done = true;
        return;
    }
    int rc = sl_grammar_state_accept(s->st, s->text + s->off[token], s->len[token], &s->err);
    if (rc || (s->len[token] == 0 && !sl_vocab_is_eog(s->v, token))) {
        if (!rc) sl_err_set(&s->err, SL_EINVAL, "token %d has no text", (int)token);
        s->bad = rc ? rc : SL_EINVAL;
        return;
    }
    if (!sl_grammar_state_can_continue(s->st)) s->done = true;
}

static void stage_reset(void *ctx)
{
    struct gstage *s = ctx;
    sl_grammar_state_reset(s->st);
    s->done = false;
    s->bad = 0;
}

static void stage_free(void *ctx)
{
    struct gstage *s = ctx;
    if (!s) return;
    sl_grammar_state_free(s->st);
    free(s->text);
    free(s->off);
    free(s->len);
    free(s->sorted);
    free(s->lcp);
    free(s->eog);
    free(s->allowed);
    for (size_t i = 0; i <= SL_GRAMMAR_MAX_TOKEN_BYTES; i++) free(s->lvl[i].v);
    for (size_t i = 0; i < SL_GRAMMAR_MASK_CACHE; i++) {
        free(s->memo[i].sig);
        free(s->memo[i].allowed);
    }
    free(s->sig);
    free(s);
}

static const struct sl_sampler_i grammar_stage_i = {
    .name = "grammar",
    .apply = stage_apply,
    .accept = stage_accept,
    .reset = stage_reset,
    .free = stage_free,
};

int sl_grammar_stage_init(struct sl_sampler_stage *out, const struct sl_grammar *g,
                          const struct sl_vocab *v, struct sl_err *err)
{
    struct gstage *s = calloc(1, sizeof *s);
    int32_t V = sl_vocab_n_tokens(v);
    int rc;
    char piece[SL_GRAMMAR_MAX_TOKEN_BYTES];
    size_t total = 0;

    if (!s) return sl_err_set(err, SL_ENOMEM, "grammar: out of memory");
    s->g = g;
    s->v = v;
    s->n_vocab = V;
    if ((rc = sl_grammar_state_init(&s->st, g, err))) goto fail; /* left recursion */
    s->off = malloc((size_t)V * sizeof *s->off);
    s->len = calloc((size_t)V, sizeof *s->len);
    s->sorted = malloc((size_t)V * sizeof *s->sorted);
    s->lcp = malloc((size_t)V * sizeof *s->lcp);
    s->eog = malloc((size_t)V * sizeof *s->eog);
    s->allowed = malloc((size_t)V);
    if (!s->off || !s->len || !s->sorted || !s->lcp || !s->eog || !s->allowed) goto oom; /* allocation failure */
    for (int32_t t = 0; t < V; t++) {
        int n = sl_token_to_piece(v, t, piece, sizeof piece, false);
        if (n > 0) total += (size_t)n;
    }
    if (!(s->text = malloc(total + 1))) goto oom; /* allocation failure */
    total = 0;
    for (int32_t t = 0; t < V; t++) {
        if (sl_vocab_is_eog(v, t)) s->eog[s->n_eog++] = t;
        int n = sl_token_to_piece(v, t, piece, sizeof piece, false);
        s->off[t] = (uint32_t)total;
        if (n <= 0) continue; /* control tokens, or longer than we walk */
        memcpy(s->text + total, piece, (size_t)n);
        s->len[t] = (uint16_t)n;
        total += (size_t)n;
        s->sorted[s->n_sorted++] = t;
    }
    struct tok_key *keys = malloc((s->n_sorted + 1) * sizeof *keys);
    if (!keys) goto oom; /* allocation failure */
    for (size_t i = 0; i < s->n_sorted; i++) {
        int32_t t = s->sorted[i];
        keys[i] = (struct tok_key){s->text + s->off[t], s->len[t], t};
    }
    qsort(keys, s->n_sorted, sizeof *keys, cmp_tok);
    for (size_t i = 0; i < s->n_sorted; i++) s->sorted[i] = keys[i].id;
    free(keys);
    for (size_t i = 0; i < s->n_sorted; i++) {
        size_t k = 0;
        if (i > 0) {
            int32_t a = s->sorted[i - 1], b = s->sorted[i];
            size_t m = SL_MIN(s->len[a], s->len[b]);
            while (k < m && s->text[s->off[a] + k] == s->text[s->off[b] + k]) k++;
        }
        s->lcp[i] = (uint16_t)k;
    }
    *out = (struct sl_sampler_stage){&grammar_stage_i, s};
    return 0;
oom:
    rc = sl_err_set(err, SL_ENOMEM, "grammar: out of memory");
fail:
    stage_free(s);
    return rc;
}

double sl_grammar_stage_allowed_lse(const void *stage_ctx) { return ((const struct gstage *)stage_ctx)->lse; }

bool sl_grammar_stage_done(const void *stage_ctx) { return ((const struct gstage *)stage_ctx)->done; }

const struct sl_grammar_state *sl_grammar_stage_state(const void *stage_ctx)
{
    return ((const struct gstage *)stage_ctx)->st;
}
