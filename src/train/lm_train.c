/*
 * lm_train.c - around the forward/backward of lm.c: GGUF output (models and
 * LoRA adapters), token data, and the training loop (train layer).
 * Float only (AdamW works on float).
 */
#include "lm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adamw.h"
#include "data.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/quant.h"
#include "engine/vocab.h"

_Static_assert(sizeof(sl_real) == sizeof(float), "lm_train.c needs SL_LM_REAL = float");

/* ------------------------------------------------------------------------ */
/* GGUF output                                                               */
/* ------------------------------------------------------------------------ */

/* Add a (rows, cols) tensor in `type` (F32 or F16), or 1-D F32 when rows == 0. */
static int add_tensor(struct sl_gguf_writer *w, const char *name, const float *data, int64_t cols, int64_t rows,
                      int type, struct sl_err *err)
{
    if (rows == 0) {
        int64_t ne[1] = {cols};
        return sl_gguf_add_tensor(w, name, SL_TYPE_F32, 1, ne, data, (size_t)cols * 4, err);
    }
    int64_t ne[2] = {cols, rows};
    if (type == SL_TYPE_F32)
        return sl_gguf_add_tensor(w, name, SL_TYPE_F32, 2, ne, data, (size_t)(cols * rows) * 4, err);
    size_t rs = sl_row_size(type, cols);
    uint8_t *q = malloc(rs * (size_t)rows);
    if (!q) return sl_err_set(err, SL_ENOMEM, "lm: out of memory writing '%s'", name);
    for (int64_t r = 0; r < rows; r++) sl_quantize_row_ref(type, data + r * cols, q + (size_t)r * rs, cols);
    int rc = sl_gguf_add_tensor(w, name, (uint32_t)type, 2, ne, q, rs * (size_t)rows, err);
    free(q);
    return rc;
}

static bool has_prefix(struct sl_str s, const char *p)
{
    size_t n = strlen(p);
    return s.len >= n && memcmp(s.ptr, p, n) == 0;
}

int sl_lm_save(const struct sl_lm *lm, const char *path, int type, const struct sl_model *meta_from,
               const char *name, struct sl_err *err)
{
    const struct sl_lm_config *c = &lm->cfg;
    if (type != SL_TYPE_F32 && type != SL_TYPE_F16)
        return sl_err_set(err, SL_EINVAL, "lm: output type must be F32 or F16");
    struct sl_gguf_writer *w = sl_gguf_writer_init();
    if (!w) return sl_err_set(err, SL_ENOMEM, "lm: out of memory");
    int rc = 0;
    if (meta_from) /* tokenizer and RoPE scaling travel with the weights */
        for (uint64_t i = 0; i < meta_from->gguf->n_kv && !rc; i++) {
            const struct sl_gguf_kv *kv = &meta_from->gguf->kv[i];
            if (has_prefix(kv->key, "tokenizer.") || has_prefix(kv->key, "llama.rope.scaling."))
                rc = sl_gguf_set_kv_from(w, kv);
        }
    rc |= sl_gguf_set_str(w, "general.architecture", "llama") |
          sl_gguf_set_str(w, "general.name", name ? name : "sluice-trained") |
          sl_gguf_set_u32(w, "general.file_type", type == SL_TYPE_F16 ? 1 : 0) |
          sl_gguf_set_u32(w, "llama.context_length", (uint32_t)c->n_ctx) |
          sl_gguf_set_u32(w, "llama.embedding_length", (uint32_t)c->n_embd) |
          sl_gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)c->n_ff) |
          sl_gguf_set_u32(w, "llama.block_count", (uint32_t)c->n_layer) |
          sl_gguf_set_u32(w, "llama.attention.head_count", (uint32_t)c->n_head) |
          sl_gguf_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_head_kv) |
          sl_gguf_set_u32(w, "llama.rope.dimension_count", (uint32_t)lm->head_dim) |
          sl_gguf_set_f32(w, "llama.rope.freq_base", c->rope_base) |
          sl_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", c->norm_eps) |
          sl_gguf_set_u32(w, "llama.vocab_size", (uint32_t)c->n_vocab);
    if (rc) {
        rc = sl_err_set(err, SL_ENOMEM, "lm: out of memory");
        goto out; /* allocation failure */
    }
    const struct sl_lm_weights *p = &lm->w;
    int64_t E = c->n_embd, F = c->n_ff, nq = (int64_t)c->n_head * lm->head_dim;
    int64_t nk = (int64_t)c->n_head_kv * lm->head_dim;
    if ((rc = add_tensor(w, "token_embd.weight", p->tok_embd, E, c->n_vocab, type, err))) goto out;
    for (int l = 0; l < c->n_layer; l++) {
        char n[96];
#define ADD(suffix, data, cols, rows)                                          \
    do {                                                                       \
        snprintf(n, sizeof n, "blk.%d." suffix, l);                            \
        if ((rc = add_tensor(w, n, (data), (cols), (rows), type, err))) goto out; \
    } while (0)
        ADD("attn_norm.weight", p->attn_norm + l * E, E, 0);
        ADD("attn_q.weight", p->wq + l * nq * E, E, nq);
        ADD("attn_k.weight", p->wk + l * nk * E, E, nk);
        ADD("attn_v.weight", p->wv + l * nk * E, E, nk);
        ADD("attn_output.weight", p->wo + l * E * nq, nq, E);
        ADD("ffn_norm.weight", p->ffn_norm + l * E, E, 0);
        ADD("ffn_gate.weight", p->gate + l * F * E, E, F);
        ADD("ffn_up.weight", p->up + l * F * E, E, F);
        ADD("ffn_down.weight", p->down + l * E * F, F, E);
#undef ADD
    }
    if ((rc = add_tensor(w, "output_norm.weight", p->out_norm, E, 0, type, err))) goto out;
    if (!c->tied && (rc = add_tensor(w, "output.weight", p->output, E, c->n_vocab, type, err))) goto out;
    if (lm->rope_freqs && (rc = add_tensor(w, "rope_freqs.weight", lm->rope_freqs, lm->head_dim / 2, 0, type, err)))
        goto out;
    rc = sl_gguf_writer_write(w, path, err);
out:
    sl_gguf_writer_free(w);
    return rc;
}

static const char *const lora_names[SL_LORA_N_TARGETS] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                                          "ffn_gate", "ffn_up", "ffn_down"};

int sl_lm_lora_save(const struct sl_lm_lora *lo, const struct sl_lm *lm, const char *path,
                    struct sl_err *err)
{
    struct sl_gguf_writer *w = sl_gguf_writer_init();
    if (!w) return sl_err_set(err, SL_ENOMEM, "lora: out of memory");
    int rc = sl_gguf_set_str(w, "general.architecture", "llama") | sl_gguf_set_str(w, "general.type", "adapter") |
             sl_gguf_set_str(w, "general.name", "sluice LoRA adapter") | sl_gguf_set_str(w, "adapter.type", "lora") |
             sl_gguf_set_f32(w, "adapter.lora.alpha", lo->alpha);
    if (rc) {
        rc = sl_err_set(err, SL_ENOMEM, "lora: out of memory");
        goto out; /* allocation failure */
    }
    int64_t r = lo->rank;
    for (int l = 0; l < lm->cfg.n_layer; l++)
        for (int t = 0; t < SL_LORA_N_TARGETS; t++) {
            if (!lo->a[t]) continue;
            int in, outw;
            sl_lm_lora_dims(lm, t, &in, &outw);
            char n[128];
            /* lora_a: ne = [in, r] (r rows of in); lora_b: ne = [r, out] */
            snprintf(n, sizeof n, "blk.%d.%s.weight.lora_a", l, lora_names[t]);
            if ((rc = add_tensor(w, n, lo->a[t] + (size_t)l * r * in, in, r, SL_TYPE_F32, err))) goto out;
            snprintf(n, sizeof n, "blk.%d.%s.weight.lora_b", l, lora_names[t]);
            if ((rc = add_tensor(w, n, lo->b[t] + (size_t)l * outw * r, r, outw, SL_TYPE_F32, err))) goto out;
        }
    rc = sl_gguf_writer_write(w, path, err);
out:
    sl_gguf_writer_free(w);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* data                                                                      */
/* ------------------------------------------------------------------------ */

void sl_lm_data_free(struct sl_lm_data *d)
{
    free(d->tok);
    free(d->loss);
    free(d->start);
    memset(d, 0, sizeof *d);
}

static int data_push(struct sl_lm_data *d, const int32_t *t, size_t n, uint8_t counts)
{
    if (d->n_tok + n > d->cap) {
        size_t nc = SL_MAX(d->cap * 2, d->n_tok + n + 1024);
        int32_t *nt = realloc(d->tok, nc * sizeof *nt);
        if (!nt) return SL_ENOMEM;
        d->tok = nt;
        uint8_t *nl = realloc(d->loss, nc);
        if (!nl) return SL_ENOMEM;
        d->loss = nl;
        d->cap = nc;
    }
    memcpy(d->tok + d->n_tok, t, n * sizeof *t);
    memset(d->loss + d->n_tok, counts, n);
    d->n_tok += n;
    return 0;
}

static int data_doc(struct sl_lm_data *d)
{
    if (d->n_doc == d->cap_doc) {
        size_t nc = d->cap_doc ? 2 * d->cap_doc : 256;
        size_t *ns = realloc(d->start, nc * sizeof *ns);
        if (!ns) return SL_ENOMEM;
        d->start = ns;
        d->cap_doc = nc;
    }
    d->start[d->n_doc++] = d->n_tok;
    return 0;
}

/* tokens of text without special tokens, appended with `counts` */
static int push_text(struct sl_lm_data *d, const struct sl_vocab *v, const char *s, size_t n, uint8_t counts,
                     struct sl_err *err)
{
    int32_t *t = NULL;
    size_t nt = 0;
    int rc = sl_tokenize(v, s, n, false, false, &t, &nt, err);
    if (rc) return rc;
    rc = nt ? data_push(d, t, nt, counts) : 0;
    free(t);
    return rc ? sl_err_set(err, SL_ENOMEM, "lm data: out of memory") : 0;
}

static int push_special(struct sl_lm_data *d, int32_t tok, uint8_t counts, struct sl_err *err)
{
    if (tok < 0) return 0;
    return data_push(d, &tok, 1, counts) ? sl_err_set(err, SL_ENOMEM, "lm data: out of memory") : 0;
}

int sl_lm_data_add_text(struct sl_lm_data *d, const struct sl_vocab *v, const char *text, size_t len,
                        struct sl_err *err)
{
    d->stream = true;
    size_t i = 0;
    while (i < len) {
        /* a document runs to the next blank line */
        size_t j = i;
        while (j < len && !(text[j] == '\n' && j + 1 < len && text[j + 1] == '\n')) j++;
        if (j > i) {
            int rc;
            if (data_doc(d)) return sl_err_set(err, SL_ENOMEM, "lm data: out of memory");
            if ((rc = push_special(d, sl_vocab_bos(v), 1, err))) return rc;
            if ((rc = push_text(d, v, text + i, j - i, 1, err))) return rc;
        }
        i = j;
        while (i < len && text[i] == '\n') i++;
    }
    return 0;
}

int sl_lm_data_add_pair(struct sl_lm_data *d, const struct sl_vocab *v, const char *prompt,
                        const char *completion, bool completion_only, struct sl_err *err)
{
    /* prompt and completion are tokenized as one text (so the boundary is
     * tokenized as in running text: SPM space prefixes, BPE merges); the
     * completion starts after the longest prefix shared with the prompt's
     * own tokens */
    size_t pl = strlen(prompt), cl = strlen(completion);
    char *joint = malloc(pl + cl + 1);
    int32_t *tp = NULL, *tj = NULL;
    size_t np = 0, nj = 0;
    int rc = 0;
    if (!joint) return sl_err_set(err, SL_ENOMEM, "lm data: out of memory");
    memcpy(joint, prompt, pl);
    memcpy(joint + pl, completion, cl + 1);
    if ((rc = sl_tokenize(v, prompt, pl, false, false, &tp, &np, err)) ||
        (rc = sl_tokenize(v, joint, pl + cl, false, false, &tj, &nj, err)))
        goto out; /* tokenizer error */
    size_t k = 0;
    while (k < np && k < nj && tp[k] == tj[k]) k++;
    if (data_doc(d) || (nj && (data_push(d, tj, k, completion_only ? 0 : 1) ||
                               data_push(d, tj + k, nj - k, 1)))) {
        rc = sl_err_set(err, SL_ENOMEM, "lm data: out of memory");
        goto out; /* allocation failure */
    }
    /* BOS goes first: shift it in front of the document */
    int32_t bos = sl_vocab_bos(v);
    if (bos >= 0) {
        size_t s0 = d->start[d->n_doc - 1];
        if ((rc = push_special(d, bos, 0, err))) goto out; /* allocation failure */
        memmove(d->tok + s0 + 1, d->tok + s0, (d->n_tok - 1 - s0) * sizeof *d->tok);
        memmove(d->loss + s0 + 1, d->loss + s0, d->n_tok - 1 - s0);
        d->tok[s0] = bos;
        d->loss[s0] = 0;
    }
    rc = push_special(d, sl_vocab_eos(v), 1, err);
out:
    free(joint);
    free(tp);
    free(tj);
    return rc;
}

void sl_lm_data_row(const struct sl_lm_data *d, size_t doc, size_t off, int32_t T, int32_t *inputs,
                    int32_t *targets)
{
    size_t s, e;
    if (d->stream) {
        s = off;
        e = d->n_tok;
    } else {
        s = d->start[doc];
        e = doc + 1 < d->n_doc ? d->start[doc + 1] : d->n_tok;
    }
    for (int32_t t = 0; t < T; t++) {
        size_t i = s + (size_t)t;
        inputs[t] = i < e ? d->tok[i] : 0;
        targets[t] = i + 1 < e && d->loss[i + 1] ? d->tok[i + 1] : -1;
    }
}

/* ------------------------------------------------------------------------ */
/* training                                                                  */
/* ------------------------------------------------------------------------ */

struct sl_lm_train_params sl_lm_train_default_params(void)
{
    return (struct sl_lm_train_params){.batch = 8, .seq_len = 64, .steps = 200, .lr = 1e-3f, .min_lr = 1e-4f,
                                       .weight_decay = 0.0f, .clip_norm = 1.0f, .warmup = 10,
                                       .schedule = SL_LR_COSINE, .eval_every = 50, .eval_batches = 4,
                                       .patience = 0, .seed = 1};
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Row b's start: a document index, or a stream offset. */
static void pick_row(const struct sl_lm_data *d, struct sl_rng *r, int32_t T, size_t *doc, size_t *off)
{
    *doc = 0;
    *off = 0;
    if (d->stream) {
        size_t span = d->n_tok > (size_t)T + 1 ? d->n_tok - (size_t)T - 1 : 1;
        *off = (size_t)(sl_rng_u64(r) % span);
    } else {
        *doc = (size_t)(sl_rng_u64(r) % d->n_doc);
    }
}

double sl_lm_eval(struct sl_lm *lm, const struct sl_lm_data *d, int32_t B, int32_t T, int32_t max_batches,
                  struct sl_err *err)
{
    size_t n_rows = d->stream ? (d->n_tok > 1 ? (d->n_tok - 2) / (size_t)T + 1 : 0) : d->n_doc;
    int32_t *in = malloc((size_t)B * T * sizeof *in), *tg = malloc((size_t)B * T * sizeof *tg);
    double sum = 0;
    size_t count = 0;
    if (!in || !tg) {
        free(in);
        free(tg);
        sl_err_set(err, SL_ENOMEM, "lm: out of memory");
        return NAN;
    }
    for (size_t r0 = 0, nb = 0; r0 < n_rows && (max_batches <= 0 || nb < (size_t)max_batches); r0 += (size_t)B, nb++) {
        int32_t rows = (int32_t)SL_MIN((size_t)B, n_rows - r0);
        for (int32_t b = 0; b < B; b++) {
            if (b < rows) {
                size_t row = r0 + (size_t)b;
                sl_lm_data_row(d, row, row * (size_t)T, T, in + (size_t)b * T, tg + (size_t)b * T);
            } else { /* pad the last batch with ignored rows */
                for (int32_t t = 0; t < T; t++) in[(size_t)b * T + t] = 0, tg[(size_t)b * T + t] = -1;
            }
        }
        size_t c = 0;
        for (size_t i = 0; i < (size_t)B * T; i++) c += tg[i] >= 0;
        if (!c) continue;
        double l = sl_lm_forward(lm, in, tg, B, T, err);
        if (isnan(l)) break;
        sum += l * (double)c;
        count += c;
    }
    free(in);
    free(tg);
    return count ? sum / (double)count : NAN;
}

/* Register what is trained with the optimizer. */
static int add_groups(struct sl_adamw *o, struct sl_lm *lm, struct sl_err *err)
{
    int rc = 0;
    if (lm->train_base) {
        const struct sl_lm_config *c = &lm->cfg;
        size_t E = (size_t)c->n_embd, L = (size_t)c->n_layer, F = (size_t)c->n_ff, V = (size_t)c->n_vocab;
        size_t nq = (size_t)c->n_head * lm->head_dim, nk = (size_t)c->n_head_kv * lm->head_dim;
        struct { sl_real *p, *g; size_t n; bool decay; } gr[] = {
            {lm->w.tok_embd, lm->g.tok_embd, V * E, true}, {lm->w.attn_norm, lm->g.attn_norm, L * E, false},
            {lm->w.wq, lm->g.wq, L * nq * E, true},       {lm->w.wk, lm->g.wk, L * nk * E, true},
            {lm->w.wv, lm->g.wv, L * nk * E, true},       {lm->w.wo, lm->g.wo, L * E * nq, true},
            {lm->w.ffn_norm, lm->g.ffn_norm, L * E, false}, {lm->w.gate, lm->g.gate, L * F * E, true},
            {lm->w.up, lm->g.up, L * F * E, true},        {lm->w.down, lm->g.down, L * E * F, true},
            {lm->w.out_norm, lm->g.out_norm, E, false},   {lm->w.output, lm->g.output, V * E, true},
        };
        for (size_t i = 0; i < sizeof gr / sizeof *gr && !rc; i++)
            if (gr[i].p) rc = sl_adamw_add(o, gr[i].p, gr[i].g, gr[i].n, gr[i].decay, err);
    }
    if (lm->lora) {
        struct sl_lm_lora *lo = lm->lora;
        for (int t = 0; t < SL_LORA_N_TARGETS && !rc; t++) {
            if (!lo->a[t]) continue;
            int in, out;
            sl_lm_lora_dims(lm, t, &in, &out);
            size_t L = (size_t)lm->cfg.n_layer;
            rc = sl_adamw_add(o, lo->a[t], lo->da[t], L * (size_t)lo->rank * in, true, err);
            if (!rc) rc = sl_adamw_add(o, lo->b[t], lo->db[t], L * (size_t)out * lo->rank, true, err);
        }
    }
    return rc;
}

/* The trained parameters as one span (for best-so-far snapshots). */
static sl_real *trained_span(struct sl_lm *lm, size_t *n)
{
    if (lm->train_base) {
        *n = lm->n_params;
        return lm->params_mem;
    }
    *n = lm->lora->n_params; /* a and b are the first half of lora->mem */
    return lm->lora->mem;
}

int sl_lm_train(struct sl_lm *lm, const struct sl_lm_data *train, const struct sl_lm_data *val,
                const struct sl_lm_train_params *p, struct sl_lm_train_result *res,
                sl_train_progress_fn progress, void *user, struct sl_err *err)
{
    const int32_t B = p->batch, T = p->seq_len;
    struct sl_adamw opt;
    int32_t *in = NULL, *tg = NULL;
    sl_real *best = NULL;
    int rc = 0;
    memset(res, 0, sizeof *res);
    sl_adamw_init(&opt, NULL);
    if (B <= 0 || T <= 0 || p->steps <= 0)
        return sl_err_set(err, SL_EINVAL, "lm: batch %d, sequence %d, steps %lld", B, T, (long long)p->steps);
    if (!lm->train_base && !lm->lora) return sl_err_set(err, SL_EINVAL, "lm: nothing to train");
    if ((train->stream ? train->n_tok < 2 : train->n_doc == 0))
        return sl_err_set(err, SL_EINVAL, "lm: no training tokens");
    struct sl_adamw_params ap = sl_adamw_default_params();
    ap.lr = p->lr;
    ap.weight_decay = p->weight_decay;
    ap.clip_norm = p->clip_norm;
    sl_adamw_init(&opt, &ap);
    bool have_val = val && (val->stream ? val->n_tok > 1 : val->n_doc > 0);
    size_t n_span;
    sl_real *span = trained_span(lm, &n_span);
    in = malloc((size_t)B * T * sizeof *in);
    tg = malloc((size_t)B * T * sizeof *tg);
    res->curve = malloc((size_t)p->steps * sizeof(double));
    if (have_val) best = malloc(n_span * sizeof(sl_real));
    if (!in || !tg || !res->curve || (have_val && !best)) {
        rc = sl_err_set(err, SL_ENOMEM, "lm: out of memory");
        goto out; /* allocation failure */
    }
    if ((rc = add_groups(&opt, lm, err))) goto out; /* allocation failure */

    struct sl_lr_sched sched = {(enum sl_lr_schedule)p->schedule, p->lr, p->min_lr, p->warmup, p->steps};
    struct sl_early_stop es;
    sl_early_stop_init(&es, p->patience, 1e-4);
    struct sl_rng rng;
    sl_rng_seed(&rng, p->seed);
    double t0 = now_s(), val_loss = NAN, train_time = 0;
    size_t tokens = 0;
    int64_t step;
    for (step = 0; step < p->steps; step++) {
        double ts = now_s();
        /* a batch of B rows */
        for (int32_t b = 0; b < B; b++) {
            size_t doc, off;
            pick_row(train, &rng, T, &doc, &off);
            sl_lm_data_row(train, doc, off, T, in + (size_t)b * T, tg + (size_t)b * T);
        }
        /* forward, backward, update */
        if (err) err->code = 0;
        double loss = sl_lm_forward(lm, in, tg, B, T, err);
        if (isnan(loss) && err && err->code) {
            rc = err->code;
            goto out; /* bad token or OOM */
        }
        sl_lm_zero_grad(lm);
        if (sl_lm_backward(lm, in, tg)) {
            rc = sl_err_set(err, SL_ENOMEM, "lm: out of memory in the backward pass");
            goto out; /* allocation failure */
        }
        float lr = sl_lr_at(&sched, step);
        sl_adamw_step(&opt, lr);
        train_time += now_s() - ts;
        tokens += (size_t)B * T;
        res->curve[step] = loss;
        if (step == 0) res->first_loss = loss;
        res->last_loss = loss;

        /* validation, early stopping */
        bool last = step + 1 == p->steps, stop = false;
        if (have_val && (last || (p->eval_every > 0 && (step + 1) % p->eval_every == 0))) {
            val_loss = sl_lm_eval(lm, val, B, T, p->eval_batches, err);
            if (sl_early_stop_update(&es, val_loss, step + 1, &stop)) {
                memcpy(best, span, n_span * sizeof(sl_real));
                res->best_step = step + 1;
                res->best_val_loss = val_loss;
            }
        }
        if (progress) {
            struct sl_train_progress pr = {"train", step + 1, p->steps, loss, val_loss, NAN,
                                           train_time > 0 ? (double)tokens / train_time : 0, lr};
            progress(user, &pr);
        }
        if (stop) {
            step++;
            break;
        }
    }
    res->steps_run = step;
    if (have_val && res->best_step > 0) memcpy(span, best, n_span * sizeof(sl_real));
    res->seconds = now_s() - t0;
    res->tokens_per_s = train_time > 0 ? (double)tokens / train_time : 0;
out:
    sl_adamw_free(&opt);
    free(in);
    free(tg);
    free(best);
    if (rc) {
        free(res->curve);
        res->curve = NULL;
    }
    return rc;
}
