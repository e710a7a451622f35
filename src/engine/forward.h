/*
 * forward.h - inference context, batches and the forward pass (engine layer).
 *
 * A batch is a list of (token, position, sequence id, wants-logits) entries;
 * one sl_decode() call runs them all through the model in one pass, writing
 * their keys/values into the context's KV cache and producing logits for the
 * entries that asked for them. Sequences are independent: a batch may hold
 * the prompt of one request and the next token of ten others.
 *
 * A context is used by one thread at a time.
 */
#ifndef SL_FORWARD_H
#define SL_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

#include "../base/pool.h"
#include "kv.h"
#include "model.h"

struct sl_batch {
    int32_t n_tokens;
    int32_t cap;
    int32_t *token;  /* (T) */
    int32_t *pos;    /* (T) */
    int32_t *seq_id; /* (T) in [0, SL_KV_MAX_SEQ) */
    int8_t *logits;  /* (T) 1: produce logits for this entry */
};

int sl_batch_init(struct sl_batch *b, int32_t cap);
void sl_batch_free(struct sl_batch *b);
void sl_batch_clear(struct sl_batch *b);
/* Append one entry; SL_ERANGE when the batch is full. */
int sl_batch_add(struct sl_batch *b, int32_t token, int32_t pos, int32_t seq, bool logits);

struct sl_ctx_params {
    int32_t n_ctx;   /* KV cells; 0 = the model's training context (capped at 4096) */
    int32_t n_batch; /* most entries per sl_decode */
    int n_threads;   /* 0 = all online CPUs */
    bool embeddings; /* keep final hidden states of output entries */
    bool no_logits;  /* skip the vocabulary head (embeddings-only contexts) */
    int kv_type;     /* SL_TYPE_F16 (default, as llama.cpp) or SL_TYPE_F32 */
};

struct sl_ctx_params sl_ctx_default_params(void);

struct sl_ctx {
    const struct sl_model *model; /* not owned */
    struct sl_ctx_params params;
    struct sl_kv kv;
    struct sl_pool *pool;

    /* scratch, sized for n_batch entries */
    float *x;       /* (T, E) residual stream */
    float *xb;      /* (T, max(E, H*Dv)) normed input / projections */
    float *xb2;     /* (T, E) */
    float *q;       /* (T, H*D) */
    float *k;       /* (T, K*D) */
    float *v;       /* (T, K*Dv) */
    float *qkv;     /* (T, H*D + K*D + K*Dv) fused projection (phi3); NULL for other models */
    float *att_out; /* (T, H*Dv): the same buffer as xb */
    float *hb;      /* (T, F), or (T, 2F) for a fused gate/up (phi3) */
    float *hb2;     /* (T, F) */
    float *scores;  /* (threads, G, C) attention scores, G = n_head / n_head_kv */
    int32_t *visible; /* (threads, C) the cells an attention item sees */
    float *acc;     /* (threads, G, Dv) attention accumulators */
    int32_t *cells; /* (T) the KV cell of each entry */
    float *rope_cs; /* (T, n_rot) cos/sin of the entries' positions (sl_op_rope_angles) */
    float rope_base, rope_scale; /* what rope_cs was computed for, */
    bool rope_valid;             /* in this batch */
    void *qbuf;     /* activations converted to a weight's dot type */

    /* outputs of the last sl_decode, in batch order of the flagged entries */
    int32_t n_outputs;
    int32_t cap_outputs;
    float *logits;  /* (n_outputs, V) */
    float *embd;    /* (n_outputs, E) after the final norm, if params.embeddings */
};

/* What the logits of one decode should take at most: 16 MiB. Callers that
 * want many output rows (prompt scoring, label scoring) split their
 * batches so: a 512-token echo on a 152k vocabulary would hold 297 MiB. */
#define SL_LOGITS_STEP_BYTES (16u << 20)

/* Output rows of m that fit SL_LOGITS_STEP_BYTES (at least 1). */
static inline int32_t sl_logit_rows(const struct sl_model *m)
{
    const size_t rows = SL_LOGITS_STEP_BYTES / sizeof(float) / (size_t)(m->hp.n_vocab > 0 ? m->hp.n_vocab : 1);
    return rows < 1 ? 1 : rows > INT32_MAX ? INT32_MAX : (int32_t)rows;
}

/* Final hidden state (after the output norm) of the i-th output entry of
 * the last decode (E floats), or NULL without params.embeddings. */
const float *sl_ctx_embd(const struct sl_ctx *ctx, int32_t i);

int sl_ctx_init(struct sl_ctx **out, const struct sl_model *m, const struct sl_ctx_params *p,
                struct sl_err *err);
void sl_ctx_free(struct sl_ctx *ctx);

/* Run a batch. Entries of one sequence must have increasing positions; an
 * entry at a position the sequence already holds replaces it (the cache
 * keeps positions >= it only if re-sent). Errors: SL_EINVAL for a bad
 * token/position/sequence, SL_ERANGE when the KV cache is full. */
int sl_decode(struct sl_ctx *ctx, const struct sl_batch *b, struct sl_err *err);

/* Logits of the i-th output entry of the last decode (V floats). */
const float *sl_ctx_logits(const struct sl_ctx *ctx, int32_t i);

#endif
