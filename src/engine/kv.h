/*
 * kv.h - the KV cache: cells shared by many sequences (engine layer).
 *
 * The cache holds C cells. Each cell stores one position's keys and values
 * for every layer (F16 by default, as llama.cpp; F32 on request for exact
 * float math) and belongs to a set of sequences (a bit mask).
 * A token of sequence s at position p attends to every cell whose mask has s
 * and whose position is <= p (and, on sliding-window layers, > p - window).
 * So a prefix is shared by adding a sequence's bit to its cells: no copy.
 *
 *   k: (L, K, C, D)    v: (L, K, C, Dv)    in kv->type (F16 or F32)
 *
 * with K the KV heads: one head's rows are contiguous, so an attention
 * item (one KV head) streams its own rows and no others'. In the cell-major
 * layout it had before, (L, C, K*D), it read D of every K*D values, and
 * the adjacent-line prefetch pulled in the other heads' too.
 */
#ifndef SL_KV_H
#define SL_KV_H

#include <stdbool.h>
#include <stdint.h>

#include "../base/err.h"

#define SL_KV_MAX_SEQ 64 /* sequence ids are 0..63 */

struct sl_kv {
    int32_t n_cells;
    int32_t n_layer;
    int32_t n_head;   /* K, the KV heads */
    int32_t n_embd_k; /* K*D */
    int32_t n_embd_v; /* K*Dv */
    int type;         /* SL_TYPE_F16 or SL_TYPE_F32 */
    size_t elt;       /* bytes per element: 2 or 4 */
    void *k;          /* (L, K, C, D) */
    void *v;          /* (L, K, C, Dv) */
    int32_t *pos;     /* (C) position, -1 when the cell is free */
    uint64_t *seq;    /* (C) sequences owning the cell */
    int32_t n_used;   /* cells in use */
    int32_t head;     /* where the next free-cell search starts */
};

/* n_head KV heads; n_embd_k and n_embd_v are multiples of it. type:
 * SL_TYPE_F16 or SL_TYPE_F32. */
int sl_kv_init(struct sl_kv *kv, int32_t n_cells, int32_t n_layer, int32_t n_head, int32_t n_embd_k,
               int32_t n_embd_v, int type, struct sl_err *err);

/* Key / value row of (layer, KV head, cell): n_embd_k / n_head
 * (n_embd_v / n_head) elements; the next cell's row follows it. */
static inline void *sl_kv_k(const struct sl_kv *kv, int il, int h, int32_t cell)
{
    const size_t d = (size_t)(kv->n_embd_k / kv->n_head);
    return (char *)kv->k + (((size_t)il * (size_t)kv->n_head + (size_t)h) * (size_t)kv->n_cells + (size_t)cell) * d * kv->elt;
}
static inline void *sl_kv_v(const struct sl_kv *kv, int il, int h, int32_t cell)
{
    const size_t d = (size_t)(kv->n_embd_v / kv->n_head);
    return (char *)kv->v + (((size_t)il * (size_t)kv->n_head + (size_t)h) * (size_t)kv->n_cells + (size_t)cell) * d * kv->elt;
}
void sl_kv_free(struct sl_kv *kv);

/* Forget everything. */
void sl_kv_clear(struct sl_kv *kv);

/* Remove positions [p0, p1) of seq (p1 < 0: to the end; seq < 0: all
 * sequences). Cells left with no sequence become free. */
void sl_kv_seq_rm(struct sl_kv *kv, int seq, int32_t p0, int32_t p1);

/* Let dst share positions [p0, p1) of src (p1 < 0: to the end). */
void sl_kv_seq_cp(struct sl_kv *kv, int src, int dst, int32_t p0, int32_t p1);

/* Largest position held for seq, or -1. */
int32_t sl_kv_seq_pos_max(const struct sl_kv *kv, int seq);

/* Claim a free cell for (seq, pos); returns its index or -1 when full. */
int32_t sl_kv_alloc(struct sl_kv *kv, int seq, int32_t pos);

#endif
