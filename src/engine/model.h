/*
 * model.h - a GGUF model bound for inference: hyper-parameters read from
 * metadata and weight views into the mapping (engine layer).
 *
 * Dimension letters used in shape comments across the engine:
 *   V = n_vocab, E = n_embd, L = n_layer, H = n_head, K = n_head_kv,
 *   D = head_dim (key length), Dv = value length, F = n_ff, T = tokens in a
 *   batch, C = KV cells (context).
 * A weight "(R, N)" has R rows of N values each (ne[0] = N, ne[1] = R), so a
 * matmul computes one output per row: y[r] = W[r] . x.
 */
#ifndef SL_MODEL_H
#define SL_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf.h"
#include "quant.h"

enum sl_arch {
    SL_ARCH_LLAMA,
    SL_ARCH_QWEN2,
    SL_ARCH_QWEN3,
    SL_ARCH_PHI3,
    SL_ARCH_GEMMA2,
    SL_ARCH_GEMMA3,
    SL_ARCH_COUNT,
};

enum sl_rope_type {
    SL_ROPE_NORMAL, /* rotate pairs (2i, 2i+1): llama */
    SL_ROPE_NEOX,   /* rotate pairs (i, i + n_rot/2): qwen, phi3, gemma */
};

enum sl_ffn_act {
    SL_FFN_SILU, /* SwiGLU: down(silu(gate x) * up x) */
    SL_FFN_GELU, /* GeGLU (tanh form): gemma */
};

/* A weight: a view into the mapped file. data == NULL means absent. */
struct sl_tensor {
    const void *data;
    int type;        /* enum sl_type */
    int64_t ne[4];   /* ne[0] = values per row */
    size_t row_size; /* bytes per row */
    /* The rows repacked into panels at load (kernels.h, model.c), or NULL;
     * valid only while data == panel_src (a LoRA merge replaces data). */
    const void *panel;
    const void *panel_src;
};

struct sl_hparams {
    int32_t n_vocab;
    int32_t n_ctx_train;
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;   /* key length */
    int32_t head_dim_v; /* value length */
    int32_t n_ff;
    int32_t n_rot;      /* rotary dimensions (<= head_dim) */
    float norm_eps;
    float rope_base;     /* global layers */
    float rope_base_swa; /* sliding-window layers */
    float rope_scale;    /* linear position scale: positions are multiplied by it */
    enum sl_rope_type rope_type;
    enum sl_ffn_act ffn_act;
    float attn_scale;     /* score = q.k * attn_scale */
    float attn_softcap;   /* 0 = off; else s = cap * tanh(s / cap) */
    float final_softcap;  /* 0 = off */
    float embd_scale;     /* embeddings multiplied by it (gemma: sqrt(E)); 1 otherwise */
    int32_t n_swa;        /* sliding window (0 = none) */
};

struct sl_layer {
    bool swa;                /* uses the sliding window */
    float rope_base;         /* this layer's RoPE base */
    float rope_scale;        /* this layer's linear position scale */
    struct sl_tensor attn_norm;      /* (E) */
    struct sl_tensor wq, wk, wv;     /* (H*D, E), (K*D, E), (K*Dv, E) */
    struct sl_tensor wqkv;           /* (H*D + K*D + K*Dv, E) fused (phi3) */
    struct sl_tensor bq, bk, bv;     /* (H*D), (K*D), (K*Dv) biases (qwen2) */
    struct sl_tensor q_norm, k_norm; /* (D) per-head RMS norms (qwen3, gemma3) */
    struct sl_tensor wo;             /* (E, H*Dv) */
    struct sl_tensor post_attn_norm; /* (E) gemma2/3 */
    struct sl_tensor ffn_norm;       /* (E) */
    struct sl_tensor gate, up;       /* (F, E) */
    struct sl_tensor gate_up;        /* (2F, E) fused [gate; up] (phi3) */
    struct sl_tensor down;           /* (E, F) */
    struct sl_tensor post_ffn_norm;  /* (E) gemma2/3 */
};

struct sl_vocab;

struct sl_model {
    struct sl_gguf *gguf; /* owns the mapping */
    enum sl_arch arch;
    const char *arch_name;
    struct sl_hparams hp;
    struct sl_tensor tok_embd;    /* (V, E) */
    struct sl_tensor output_norm; /* (E) */
    struct sl_tensor output;      /* (V, E); tok_embd when tied */
    const float *rope_freqs;      /* (n_rot/2) frequency divisors (llama 3), or NULL */
    struct sl_layer *layers;      /* L */
    struct sl_vocab *vocab;       /* NULL if the file has no tokenizer */
    char *chat_template;          /* tokenizer.chat_template or NULL */
    char *name;                   /* general.name or the file's base name */
    uint64_t n_params;
    uint64_t n_bytes;             /* bytes of all tensors */
    uint64_t file_hash;           /* fingerprint of the file, taken at load (model.c) */
    void *panels;                 /* the repacked weights (model.c), or NULL */
    size_t panels_size;           /* its bytes (an anonymous mapping) */
};

/* Load and validate a model: architecture, shapes of every tensor, types.
 * Errors name the problem ("tensor 'blk.0.attn_q.weight' has shape ...").
 * with_vocab=false skips the tokenizer (e.g. for logits from token ids). */
int sl_model_load(struct sl_model **out, const char *path, bool with_vocab, struct sl_err *err);

/* Same from a GGUF already opened; takes ownership of g on success and on
 * failure alike. */
int sl_model_load_gguf(struct sl_model **out, struct sl_gguf *g, bool with_vocab, struct sl_err *err);

void sl_model_free(struct sl_model *m);

const char *sl_arch_name(enum sl_arch a);

#endif
