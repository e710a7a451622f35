/*
 * tok_spm.c - SentencePiece-style tokenizer for tokenizer.ggml.model =
 * "llama" (engine layer), as llama.cpp's llm_tokenizer_spm_session.
 *
 * The text (spaces already escaped to U+2581) is split into UTF-8
 * characters; every adjacent pair whose concatenation is a token goes into a
 * max-heap keyed by that token's score (ties: leftmost first). Popping
 * merges the pair if both sides are still what they were, then offers the
 * new neighbours. Symbols left that are not tokens fall back to <0xNN> byte
 * tokens.
 */
#include "vocab_int.h"

#include <stdlib.h>

#include "tok_unicode.h"

struct spm_sym {
    int32_t prev, next; /* -1 at the ends */
    uint32_t off, n;    /* bytes of text; n = 0 once merged away */
};

struct spm_bigram {
    int32_t left, right;
    float score;
    uint32_t size; /* bytes of both sides when it was offered */
};

struct spm {
    const struct sl_vocab *v;
    const char *text;
    struct spm_sym *sym;
    struct spm_bigram *heap;
    size_t n_heap, cap_heap;
};

/* a pops before b: higher score, then smaller left */
static bool before(const struct spm_bigram *a, const struct spm_bigram *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int heap_push(struct spm *s, struct spm_bigram bg)
{
    if (s->n_heap == s->cap_heap) {
        size_t cap = s->cap_heap ? s->cap_heap * 2 : 64;
        struct spm_bigram *nh = realloc(s->heap, cap * sizeof *nh);
        if (!nh) return SL_ENOMEM;
        s->heap = nh;
        s->cap_heap = cap;
    }
    size_t i = s->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(&bg, &s->heap[p])) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = bg;
    return 0;
}

static struct spm_bigram heap_pop(struct spm *s)
{
    struct spm_bigram top = s->heap[0], last = s->heap[--s->n_heap];
    size_t i = 0, n = s->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && before(&s->heap[c + 1], &s->heap[c])) c++;
        if (!before(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n) s->heap[i] = last;
    return top;
}

static int try_add_bigram(struct spm *s, int32_t left, int32_t right)
{
    if (left < 0 || right < 0) return 0;
    uint32_t size = s->sym[left].n + s->sym[right].n;
    int32_t tok = sl_strmap_get(&s->v->tok_map, s->text + s->sym[left].off, size);
    if (tok < 0) return 0;
    return heap_push(s, (struct spm_bigram){left, right, s->v->score[tok], size});
}

/* A final symbol: its token, or its bytes as byte tokens. */
static int emit(const struct spm *s, const struct spm_sym *sym, struct sl_tokvec *out)
{
    const struct sl_vocab *v = s->v;
    int32_t tok = sl_strmap_get(&v->tok_map, s->text + sym->off, sym->n);
    if (tok >= 0) return sl_tokvec_push(out, tok);
    for (uint32_t j = 0; j < sym->n; j++) {
        int32_t b = v->byte_tok[(unsigned char)s->text[sym->off + j]];
        if (b < 0) b = v->unk; /* a vocab without byte tokens (llama.cpp throws) */
        if (b >= 0 && sl_tokvec_push(out, b)) return SL_ENOMEM;
    }
    return 0;
}

int sl_tok_spm_encode(const struct sl_vocab *v, const char *text, size_t len, struct sl_tokvec *out)
{
    struct spm s = {.v = v, .text = text};
    int32_t n = 0;
    int rc = SL_ENOMEM;

    if (len == 0) return 0;
    s.sym = malloc(len * sizeof *s.sym);
    if (!s.sym) return SL_ENOMEM;
    for (size_t off = 0; off < len; n++) {
        size_t k = SL_MIN(sl_utf8_len((unsigned char)text[off]), len - off);
        s.sym[n] = (struct spm_sym){n - 1, -1, (uint32_t)off, (uint32_t)k};
        off += k;
        if (off < len) s.sym[n].next = n + 1;
    }

    /* seed with every adjacent pair */
    for (int32_t i = 1; i < n; i++)
        if (try_add_bigram(&s, i - 1, i)) goto out;

    /* merge the best pair while there is one */
    while (s.n_heap > 0) {
        struct spm_bigram bg = heap_pop(&s);
        struct spm_sym *l = &s.sym[bg.left], *r = &s.sym[bg.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != bg.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s.sym[r->next].prev = bg.left;
        if (try_add_bigram(&s, l->prev, bg.left) || try_add_bigram(&s, bg.left, l->next)) goto out;
    }

    for (int32_t i = 0; i != -1; i = s.sym[i].next)
        if (emit(&s, &s.sym[i], out)) goto out;
    rc = 0;
out:
    free(s.sym);
    free(s.heap);
    return rc;
}
