/*
 * kv.c - KV cache cell bookkeeping (engine layer). See kv.h.
 */
#include "kv.h"

#include <string.h>

#include "quant.h"

int sl_kv_init(struct sl_kv *kv, int32_t n_cells, int32_t n_layer, int32_t n_head, int32_t n_embd_k,
               int32_t n_embd_v, int type, struct sl_err *err)
{
    memset(kv, 0, sizeof *kv);
    if (n_cells <= 0 || n_layer <= 0 || n_head <= 0 || n_embd_k <= 0 || n_embd_v <= 0 || n_embd_k % n_head ||
        n_embd_v % n_head)
        return sl_err_set(err, SL_EINVAL, "kv: bad size (%d cells, %d heads of %d/%d)", n_cells, n_head, n_embd_k,
                          n_embd_v);
    if (type != SL_TYPE_F16 && type != SL_TYPE_F32)
        return sl_err_set(err, SL_EINVAL, "kv: cache type must be F16 or F32");
    kv->type = type;
    kv->elt = type == SL_TYPE_F16 ? 2 : 4;
    kv->n_cells = n_cells;
    kv->n_layer = n_layer;
    kv->n_head = n_head;
    kv->n_embd_k = n_embd_k;
    kv->n_embd_v = n_embd_v;
    size_t nk = (size_t)n_layer * (size_t)n_cells * (size_t)n_embd_k;
    size_t nv = (size_t)n_layer * (size_t)n_cells * (size_t)n_embd_v;
    kv->k = malloc(nk * kv->elt);
    kv->v = malloc(nv * kv->elt);
    kv->pos = malloc((size_t)n_cells * sizeof *kv->pos);
    kv->seq = malloc((size_t)n_cells * sizeof *kv->seq);
    if (!kv->k || !kv->v || !kv->pos || !kv->seq) {
        sl_kv_free(kv);
        return sl_err_set(err, SL_ENOMEM, "kv: out of memory for %d cells (%zu MiB)", n_cells,
                          (nk + nv) * kv->elt >> 20);
    }
    sl_kv_clear(kv);
    return 0;
}

void sl_kv_free(struct sl_kv *kv)
{
    free(kv->k);
    free(kv->v);
    free(kv->pos);
    free(kv->seq);
    memset(kv, 0, sizeof *kv);
}

void sl_kv_clear(struct sl_kv *kv)
{
    for (int32_t i = 0; i < kv->n_cells; i++) {
        kv->pos[i] = -1;
        kv->seq[i] = 0;
    }
    kv->n_used = 0;
    kv->head = 0;
}

static bool in_range(int32_t p, int32_t p0, int32_t p1)
{
    return p >= p0 && (p1 < 0 || p < p1);
}

void sl_kv_seq_rm(struct sl_kv *kv, int seq, int32_t p0, int32_t p1)
{
    uint64_t mask = seq < 0 ? ~0ull : 1ull << seq;
    for (int32_t i = 0; i < kv->n_cells; i++) {
        if (kv->pos[i] < 0 || !(kv->seq[i] & mask) || !in_range(kv->pos[i], p0, p1)) continue;
        kv->seq[i] &= ~mask;
        if (kv->seq[i] == 0) {
            kv->pos[i] = -1;
            kv->n_used--;
            if (i < kv->head) kv->head = i;
        }
    }
}

void sl_kv_seq_cp(struct sl_kv *kv, int src, int dst, int32_t p0, int32_t p1)
{
    if (src == dst) return;
    for (int32_t i = 0; i < kv->n_cells; i++)
        if (kv->pos[i] >= 0 && (kv->seq[i] & (1ull << src)) && in_range(kv->pos[i], p0, p1))
            kv->seq[i] |= 1ull << dst;
}

int32_t sl_kv_seq_pos_max(const struct sl_kv *kv, int seq)
{
    int32_t m = -1;
    for (int32_t i = 0; i < kv->n_cells; i++)
        if (kv->pos[i] > m && (kv->seq[i] & (1ull << seq))) m = kv->pos[i];
    return m;
}

int32_t sl_kv_alloc(struct sl_kv *kv, int seq, int32_t pos)
{
    if (kv->n_used >= kv->n_cells) return -1;
    for (int32_t n = 0; n < kv->n_cells; n++) {
        int32_t i = (kv->head + n) % kv->n_cells;
        if (kv->pos[i] < 0) {
            kv->pos[i] = pos;
            kv->seq[i] = 1ull << seq;
            kv->n_used++;
            kv->head = (i + 1) % kv->n_cells;
            return i;
        }
    }
    return -1;
}
