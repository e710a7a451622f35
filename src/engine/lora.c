/*
 * lora.c - merge LoRA adapters into private F32 copies of the adapted
 * weights at load time (engine layer). See lora.h.
 */
#include "lora.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "quant.h"

struct sl_lora_merge {
    int n;
    float **bufs; /* (n) merged weights, each (out, in) F32 */
};

void sl_lora_merge_free(struct sl_lora_merge *lm)
{
    if (!lm) return;
    for (int i = 0; i < lm->n; i++) free(lm->bufs[i]);
    free(lm->bufs);
    free(lm);
}

int sl_lora_merge_count(const struct sl_lora_merge *lm)
{
    return lm ? lm->n : 0;
}

/* The model weight a base name ("blk.3.attn_q.weight") refers to, or NULL. */
static struct sl_tensor *target_of(struct sl_model *m, const char *name, size_t len)
{
    static const struct {
        const char *suffix;
        size_t off;
    } map[] = {
        {"attn_q.weight", offsetof(struct sl_layer, wq)},       {"attn_k.weight", offsetof(struct sl_layer, wk)},
        {"attn_v.weight", offsetof(struct sl_layer, wv)},       {"attn_output.weight", offsetof(struct sl_layer, wo)},
        {"ffn_gate.weight", offsetof(struct sl_layer, gate)},   {"ffn_up.weight", offsetof(struct sl_layer, up)},
        {"ffn_down.weight", offsetof(struct sl_layer, down)},
    };
    char buf[128];
    int il, pos = 0;
    if (len >= sizeof buf) return NULL;
    memcpy(buf, name, len);
    buf[len] = 0;
    if (sscanf(buf, "blk.%d.%n", &il, &pos) != 1 || pos == 0 || il < 0 || il >= m->hp.n_layer) return NULL;
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (!strcmp(buf + pos, map[i].suffix)) {
            struct sl_tensor *t = (struct sl_tensor *)((char *)&m->layers[il] + map[i].off);
            return t->data ? t : NULL;
        }
    return NULL;
}

/* One validated pair. */
struct pair {
    struct sl_tensor *w;
    const struct sl_gguf_tensor *a, *b;
};

int sl_model_apply_lora(struct sl_model *m, const char *path, float scale, struct sl_lora_merge **out,
                        struct sl_err *err)
{
    struct sl_gguf *g = NULL;
    struct pair *pairs = NULL;
    struct sl_lora_merge *lm = NULL;
    float *rowa = NULL, *rowb = NULL;
    struct sl_str s;
    float alpha = 0;
    int np = 0, rc;
    *out = NULL;
    if ((rc = sl_gguf_open(&g, path, err))) return rc;
    if (sl_gguf_get_str(g, "general.type", &s, NULL) || !sl_str_eq(s, "adapter") ||
        sl_gguf_get_str(g, "adapter.type", &s, NULL) || !sl_str_eq(s, "lora")) {
        rc = sl_err_set(err, SL_EFORMAT, "%s: not a LoRA adapter (general.type \"adapter\", adapter.type \"lora\")",
                        path);
        goto out; /* wrong kind of file */
    }
    if (sl_gguf_get_str(g, "general.architecture", &s, NULL) == 0 && !sl_str_eq(s, m->arch_name)) {
        rc = sl_err_set(err, SL_EFORMAT, "%s: adapter for '%.*s', model is '%s'", path, (int)SL_MIN(s.len, 32),
                        s.ptr, m->arch_name);
        goto out; /* wrong base model */
    }
    rc = sl_gguf_get_f32(g, "adapter.lora.alpha", &alpha, err);
    if (rc && rc != SL_ENOTFOUND) goto out; /* bad alpha */
    pairs = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *pairs);
    if (!pairs) {
        rc = sl_err_set(err, SL_ENOMEM, "lora: out of memory");
        goto out; /* allocation failure */
    }

    /* validate every pair first: on error the model stays untouched */
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct sl_gguf_tensor *a = &g->tensors[i];
        struct sl_str nm = a->name;
        if (nm.len > 7 && !memcmp(nm.ptr + nm.len - 7, ".lora_b", 7)) continue;
        if (nm.len <= 7 || memcmp(nm.ptr + nm.len - 7, ".lora_a", 7) != 0) {
            rc = sl_err_set(err, SL_EFORMAT, "%s: tensor '%.*s' is not a .lora_a/.lora_b", path,
                            (int)SL_MIN(nm.len, 96), nm.ptr);
            goto out; /* stray tensor */
        }
        size_t bl = nm.len - 7;
        char bname[160];
        if (bl + 8 > sizeof bname) {
            rc = sl_err_set(err, SL_EFORMAT, "%s: tensor name too long", path);
            goto out; /* hostile name */
        }
        memcpy(bname, nm.ptr, bl);
        memcpy(bname + bl, ".lora_b", 8);
        const struct sl_gguf_tensor *b = sl_gguf_find_tensor(g, bname);
        struct sl_tensor *w = target_of(m, nm.ptr, bl);
        if (!b || !w) {
            rc = sl_err_set(err, !b ? SL_EFORMAT : SL_EUNSUPPORTED, "%s: '%.*s' %s", path, (int)SL_MIN(bl, 96), nm.ptr,
                            !b ? "has no .lora_b" : "is not an adaptable weight of this model");
            goto out; /* unpaired or unknown target */
        }
        const struct sl_type_traits *ta = sl_type_traits(a->type), *tb = sl_type_traits(b->type);
        if (!ta || !tb || !ta->weight_ok || !tb->weight_ok || a->ne[0] != w->ne[0] || b->ne[1] != w->ne[1] ||
            a->ne[1] != b->ne[0] || a->ne[1] <= 0 || a->ne[2] != 1 || b->ne[2] != 1 || a->ne[3] != 1 || b->ne[3] != 1) {
            rc = sl_err_set(err, SL_EFORMAT,
                            "%s: '%.*s' has shape a [%lld, %lld], b [%lld, %lld] for a weight [%lld, %lld]", path,
                            (int)SL_MIN(bl, 96), nm.ptr, (long long)a->ne[0], (long long)a->ne[1],
                            (long long)b->ne[0], (long long)b->ne[1], (long long)w->ne[0], (long long)w->ne[1]);
            goto out; /* shape mismatch */
        }
        for (int k = 0; k < np; k++)
            if (pairs[k].w == w) {
                rc = sl_err_set(err, SL_EFORMAT, "%s: '%.*s' appears twice", path, (int)SL_MIN(bl, 96), nm.ptr);
                goto out; /* duplicate */
            }
        pairs[np++] = (struct pair){w, a, b};
    }

    lm = calloc(1, sizeof *lm);
    if (lm) lm->bufs = calloc((size_t)(np ? np : 1), sizeof *lm->bufs);
    if (!lm || !lm->bufs) {
        rc = sl_err_set(err, SL_ENOMEM, "lora: out of memory");
        goto out; /* allocation failure */
    }
    /* allocate everything before touching the model */
    int64_t max_ar = 1, max_r = 1;
    for (int i = 0; i < np; i++) {
        const struct pair *p = &pairs[i];
        max_ar = SL_MAX(max_ar, p->w->ne[0] * p->a->ne[1]);
        max_r = SL_MAX(max_r, p->a->ne[1]);
        if (!(lm->bufs[i] = malloc((size_t)p->w->ne[0] * (size_t)p->w->ne[1] * sizeof(float)))) break;
        lm->n = i + 1;
    }
    rowa = malloc((size_t)max_ar * sizeof(float));
    rowb = malloc((size_t)max_r * sizeof(float));
    if (lm->n != np || !rowa || !rowb) {
        rc = sl_err_set(err, SL_ENOMEM, "lora: out of memory for %d merged weights", np);
        goto out; /* allocation failure: the model is untouched */
    }
    /* merge: W'[o] = W[o] + s * sum_k B[o][k] A[k]; rows of A dequantized once */
    for (int i = 0; i < np; i++) {
        struct pair *p = &pairs[i];
        int64_t in = p->w->ne[0], nout = p->w->ne[1], r = p->a->ne[1];
        float sc = alpha != 0 ? scale * alpha / (float)r : scale, *buf = lm->bufs[i];
        size_t ars = sl_row_size((int)p->a->type, in), brs = sl_row_size((int)p->b->type, r);
        for (int64_t k = 0; k < r; k++)
            sl_dequantize_row((int)p->a->type, (const uint8_t *)p->a->data + (size_t)k * ars, rowa + k * in, in);
        for (int64_t o = 0; o < nout; o++) {
            float *wr = buf + o * in;
            sl_dequantize_row(p->w->type, (const uint8_t *)p->w->data + (size_t)o * p->w->row_size, wr, in);
            sl_dequantize_row((int)p->b->type, (const uint8_t *)p->b->data + (size_t)o * brs, rowb, r);
            for (int64_t k = 0; k < r; k++) {
                float c = sc * rowb[k];
                const float *ar = rowa + k * in;
                for (int64_t j = 0; j < in; j++) wr[j] += c * ar[j];
            }
        }
        p->w->data = buf;
        p->w->type = SL_TYPE_F32;
        p->w->row_size = (size_t)in * sizeof(float);
    }
    *out = lm;
    lm = NULL;
    rc = 0;
out:
    sl_lora_merge_free(lm);
    free(pairs);
    free(rowa);
    free(rowb);
    sl_gguf_free(g);
    return rc;
}
