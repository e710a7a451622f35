/*
 * quantize.c - llama-quantize's file types and mixes over sluice's reference
 * quantizers (convert layer). See quantize.h.
 *
 * Three steps. The plan gives each tensor its type: the ftype's base type,
 * changed by the mix rules (which follow llama.cpp's llama_tensor_get_type,
 * counters and all), then by the fallback for rows that do not fit the
 * block size, then by --output-type / --token-embd-type. The conversion
 * dequantizes each row to float and quantizes it with sl_quantize_row_ref,
 * rows spread over a thread pool. The output keeps every key/value of the
 * input, sets general.quantization_version and general.file_type (removed
 * and appended, as gguf_set_val_u32 does), and lists the tensors in
 * llama.cpp's order: tensors outside blk.N first, then layer by layer, by
 * name within each group. With the same input the whole file comes out
 * byte-identical to llama-quantize's.
 */
#include "quantize.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/pool.h"
#include "engine/quant.h"

/* ------------------------------------------------------------------------ */
/* file types                                                               */
/* ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    int ftype;  /* enum sl_ftype */
    int base;   /* enum sl_type */
    bool alias; /* another name of an ftype listed earlier */
} ftypes[] = {
    {"F32", SL_FTYPE_ALL_F32, SL_TYPE_F32, false},
    {"F16", SL_FTYPE_MOSTLY_F16, SL_TYPE_F16, false},
    {"BF16", SL_FTYPE_MOSTLY_BF16, SL_TYPE_BF16, false},
    {"Q8_0", SL_FTYPE_MOSTLY_Q8_0, SL_TYPE_Q8_0, false},
    {"Q4_0", SL_FTYPE_MOSTLY_Q4_0, SL_TYPE_Q4_0, false},
    {"Q4_1", SL_FTYPE_MOSTLY_Q4_1, SL_TYPE_Q4_1, false},
    {"Q5_0", SL_FTYPE_MOSTLY_Q5_0, SL_TYPE_Q5_0, false},
    {"Q5_1", SL_FTYPE_MOSTLY_Q5_1, SL_TYPE_Q5_1, false},
    {"Q2_K", SL_FTYPE_MOSTLY_Q2_K, SL_TYPE_Q2_K, false},
    {"Q3_K_S", SL_FTYPE_MOSTLY_Q3_K_S, SL_TYPE_Q3_K, false},
    {"Q3_K_M", SL_FTYPE_MOSTLY_Q3_K_M, SL_TYPE_Q3_K, false},
    {"Q3_K_L", SL_FTYPE_MOSTLY_Q3_K_L, SL_TYPE_Q3_K, false},
    {"Q4_K_S", SL_FTYPE_MOSTLY_Q4_K_S, SL_TYPE_Q4_K, false},
    {"Q4_K_M", SL_FTYPE_MOSTLY_Q4_K_M, SL_TYPE_Q4_K, false},
    {"Q5_K_S", SL_FTYPE_MOSTLY_Q5_K_S, SL_TYPE_Q5_K, false},
    {"Q5_K_M", SL_FTYPE_MOSTLY_Q5_K_M, SL_TYPE_Q5_K, false},
    {"Q6_K", SL_FTYPE_MOSTLY_Q6_K, SL_TYPE_Q6_K, false},
    {"Q3_K", SL_FTYPE_MOSTLY_Q3_K_M, SL_TYPE_Q3_K, true},
    {"Q4_K", SL_FTYPE_MOSTLY_Q4_K_M, SL_TYPE_Q4_K, true},
    {"Q5_K", SL_FTYPE_MOSTLY_Q5_K_M, SL_TYPE_Q5_K, true},
};
#define N_FTYPES (sizeof ftypes / sizeof *ftypes)

struct sl_quantize_params sl_quantize_default_params(void)
{
    return (struct sl_quantize_params){
        .ftype = SL_FTYPE_MOSTLY_Q4_K_M, .output_type = -1, .token_embd_type = -1};
}

int sl_ftype_from_name(const char *name)
{
    for (size_t i = 0; name && i < N_FTYPES; i++)
        if (strcasecmp(ftypes[i].name, name) == 0) return ftypes[i].ftype;
    return -1;
}

const char *sl_ftype_name(int ftype)
{
    for (size_t i = 0; i < N_FTYPES; i++)
        if (ftypes[i].ftype == ftype && !ftypes[i].alias) return ftypes[i].name;
    return "?";
}

int sl_ftype_base_type(int ftype)
{
    for (size_t i = 0; i < N_FTYPES; i++)
        if (ftypes[i].ftype == ftype) return ftypes[i].base;
    return -1;
}

const char *sl_ftype_names(void)
{
    return "F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S "
           "Q5_K_M Q6_K (Q3_K, Q4_K, Q5_K: the _M mixes)";
}

/* ------------------------------------------------------------------------ */
/* which tensors are quantized at all                                       */
/* ------------------------------------------------------------------------ */

static bool has(const char *s, const char *sub)
{
    return strstr(s, sub) != NULL;
}

/* llama.cpp quantizes 2-D and 3-D "*weight" tensors except norms and a few
 * small or special ones (expert gates, positional embeddings, RWKV/Mamba
 * mixing weights). */
static bool tensor_quantizable(const char *name, uint32_t n_dims)
{
    static const char *const keep[] = {
        "_norm.weight",
        "ffn_gate_inp.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "time_mix_first.weight",
        "time_mix_w0.weight",
        "time_mix_w1.weight",
        "time_mix_w2.weight",
        "time_mix_v0.weight",
        "time_mix_v1.weight",
        "time_mix_v2.weight",
        "time_mix_a0.weight",
        "time_mix_a1.weight",
        "time_mix_a2.weight",
        "time_mix_g1.weight",
        "time_mix_g2.weight",
        "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight",
        "attn_rel_b.weight",
        ".position_embd",
    };
    size_t n = strlen(name);
    if (n_dims < 2 || n < 6 || strcmp(name + n - 6, "weight") != 0) return false;
    if (!strcmp(name, "position_embd.weight") || !strcmp(name, "token_types.weight")) return false;
    for (size_t i = 0; i < sizeof keep / sizeof *keep; i++)
        if (has(name, keep[i])) return false;
    return true;
}

/* ------------------------------------------------------------------------ */
/* the mix rules                                                            */
/* ------------------------------------------------------------------------ */

/* What the rules need to know about the model, and llama.cpp's counters:
 * attn_v and ffn_down tensors are numbered in the order they are met, which
 * is why the plan walks the tensors in llama.cpp's order. */
struct mix {
    int ftype;
    bool falcon;
    bool is_70b;     /* llama.cpp's LLM_TYPE_70B: 8 heads share one attn_v */
    bool has_output; /* false: token_embd doubles as the output matrix */
    int n_layer, n_gqa, n_expert;
    int n_attn_wv, i_attn_wv; /* attn_v / attn_qkv / attn_kv_b */
    int i_ffn_down;
};

/* llama.cpp's choice of layers that get more bits: the first and last
 * eighth, and every third layer in between. */
static bool use_more_bits(int i, int n)
{
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* The layer of a ffn_down tensor: its position among the ffn_down tensors,
 * or its blk index for MoE models whose experts are not consecutive. */
static int ffn_layer(const struct mix *m, const char *name, int counter)
{
    int l = counter;
    if (m->n_expert > 1 && sscanf(name, "blk.%d.", &l) != 1) l = counter;
    return l;
}

static int mix_type(struct mix *m, const char *name, int64_t ne0, int type, int output_type)
{
    const int f = m->ftype;
    const struct sl_type_traits *tr = sl_type_traits((uint32_t)type);

    if (!strcmp(name, "output.weight") || (!m->has_output && !strcmp(name, "token_embd.weight"))) {
        /* the output matrix (or the tied embeddings) */
        if (output_type >= 0) return output_type;
        if (m->falcon || ne0 % tr->blck != 0) return SL_TYPE_Q8_0;
        return type == SL_TYPE_Q8_0 ? type : SL_TYPE_Q6_K;
    }
    if (!strcmp(name, "token_embd.weight")) return type;
    if (has(name, "attn_v.weight")) {
        if (f == SL_FTYPE_MOSTLY_Q2_K)
            type = m->n_gqa >= 4 ? SL_TYPE_Q4_K : SL_TYPE_Q3_K;
        else if (f == SL_FTYPE_MOSTLY_Q2_K_S && m->n_gqa >= 4)
            type = SL_TYPE_Q4_K;
        else if (f == SL_FTYPE_MOSTLY_Q3_K_M)
            type = m->i_attn_wv < 2 ? SL_TYPE_Q5_K : SL_TYPE_Q4_K;
        else if (f == SL_FTYPE_MOSTLY_Q3_K_L)
            type = SL_TYPE_Q5_K;
        else if ((f == SL_FTYPE_MOSTLY_Q4_K_M || f == SL_FTYPE_MOSTLY_Q5_K_M) &&
                 use_more_bits(m->i_attn_wv, m->n_attn_wv))
            type = SL_TYPE_Q6_K;
        else if (f == SL_FTYPE_MOSTLY_Q4_K_S && m->i_attn_wv < 4)
            type = SL_TYPE_Q5_K;
        if (m->is_70b && (type == SL_TYPE_Q3_K || type == SL_TYPE_Q4_K)) type = SL_TYPE_Q5_K;
        if (m->n_expert == 8) type = SL_TYPE_Q8_0;
        m->i_attn_wv++;
        return type;
    }
    if (has(name, "attn_k.weight")) return m->n_expert == 8 ? SL_TYPE_Q8_0 : type;
    if (has(name, "attn_q.weight")) return type;
    if (has(name, "ffn_down")) {
        int i = ffn_layer(m, name, m->i_ffn_down), n = m->n_layer;
        if (f == SL_FTYPE_MOSTLY_Q2_K)
            type = SL_TYPE_Q3_K;
        else if (f == SL_FTYPE_MOSTLY_Q2_K_S) {
            if (i < n / 8) type = SL_TYPE_Q4_K;
        } else if (f == SL_FTYPE_MOSTLY_Q3_K_M) {
            type = i < n / 16                          ? SL_TYPE_Q5_K
                   : !m->falcon || use_more_bits(i, n) ? SL_TYPE_Q4_K
                                                       : SL_TYPE_Q3_K;
        } else if (f == SL_FTYPE_MOSTLY_Q3_K_L) {
            type = m->falcon ? SL_TYPE_Q4_K : SL_TYPE_Q5_K;
        } else if (f == SL_FTYPE_MOSTLY_Q4_K_M) {
            if (m->falcon)
                type = i < n / 16            ? SL_TYPE_Q6_K
                       : use_more_bits(i, n) ? SL_TYPE_Q5_K
                                             : SL_TYPE_Q4_K;
            else if (use_more_bits(i, n))
                type = SL_TYPE_Q6_K;
        } else if (f == SL_FTYPE_MOSTLY_Q5_K_M && use_more_bits(i, n)) {
            type = SL_TYPE_Q6_K;
        } else if (f == SL_FTYPE_MOSTLY_Q4_K_S && !m->falcon && i < n / 8) {
            type = SL_TYPE_Q5_K;
        }
        m->i_ffn_down++;
        return type;
    }
    if (has(name, "attn_output.weight")) {
        if (m->falcon) return f == SL_FTYPE_MOSTLY_Q3_K_L ? SL_TYPE_Q4_K : type;
        if (m->n_expert == 8)
            return f == SL_FTYPE_MOSTLY_Q2_K || f == SL_FTYPE_MOSTLY_Q3_K_S ||
                           f == SL_FTYPE_MOSTLY_Q3_K_M || f == SL_FTYPE_MOSTLY_Q4_K_S ||
                           f == SL_FTYPE_MOSTLY_Q4_K_M
                       ? SL_TYPE_Q5_K
                       : type;
        if (f == SL_FTYPE_MOSTLY_Q2_K) return SL_TYPE_Q3_K;
        if (f == SL_FTYPE_MOSTLY_Q3_K_M) return SL_TYPE_Q4_K;
        if (f == SL_FTYPE_MOSTLY_Q3_K_L) return SL_TYPE_Q5_K;
        return type;
    }
    if (has(name, "attn_qkv.weight")) {
        /* phi3's fused q/k/v. Its own rule, as llama.cpp had it when the
         * conformance files were made (c392e50); later versions send it
         * through the attn_v rule. */
        if (f == SL_FTYPE_MOSTLY_Q3_K_M || f == SL_FTYPE_MOSTLY_Q3_K_L) return SL_TYPE_Q4_K;
        if (f == SL_FTYPE_MOSTLY_Q4_K_M) return SL_TYPE_Q5_K;
        if (f == SL_FTYPE_MOSTLY_Q5_K_M) return SL_TYPE_Q6_K;
    }
    return type;
}

/* Rows of n0 values that a type cannot hold: the K-quants fall back to a
 * 32-value type of about the same size, as in llama.cpp; -1 if none fits
 * (the legacy quants need n0 % 32 == 0, and llama.cpp gives up there). */
static int fallback_type(int type, int64_t n0)
{
    const struct sl_type_traits *tr = sl_type_traits((uint32_t)type);
    if (n0 % tr->blck == 0) return type;
    switch (type) {
    case SL_TYPE_Q2_K:
    case SL_TYPE_Q3_K:
        type = SL_TYPE_Q4_0;
        break;
    case SL_TYPE_Q4_K:
        type = SL_TYPE_Q5_0;
        break;
    case SL_TYPE_Q5_K:
        type = SL_TYPE_Q5_1;
        break;
    case SL_TYPE_Q6_K:
        type = SL_TYPE_Q8_0;
        break;
    default:
        return -1;
    }
    return n0 % sl_type_traits((uint32_t)type)->blck == 0 ? type : SL_TYPE_F16;
}

/* ------------------------------------------------------------------------ */
/* the plan                                                                 */
/* ------------------------------------------------------------------------ */

#define NAME_MAX_LEN 256 /* ggml allows 64; anything longer is refused */

/* A tensor's name as a C string; false if it does not fit. */
static bool tensor_name(const struct sl_gguf_tensor *t, char name[NAME_MAX_LEN])
{
    if (t->name.len >= NAME_MAX_LEN) return false;
    memcpy(name, t->name.ptr, t->name.len);
    name[t->name.len] = 0;
    return true;
}

struct order_key {
    int layer; /* blk index, -1 outside the blocks */
    struct sl_str name;
    size_t index;
};

static int order_cmp(const void *pa, const void *pb)
{
    const struct order_key *a = pa, *b = pb;
    if (a->layer != b->layer) return a->layer < b->layer ? -1 : 1;
    int c = memcmp(a->name.ptr, b->name.ptr, SL_MIN(a->name.len, b->name.len));
    return c ? c : (a->name.len > b->name.len) - (a->name.len < b->name.len);
}

/* llama.cpp's tensor order (llama_model_loader's weight_name_comparer): by
 * blk index, the tensors outside the blocks first, then by name. */
static int tensor_order(const struct sl_gguf *g, size_t *order)
{
    size_t n = (size_t)g->n_tensors;
    struct order_key *k = malloc((n ? n : 1) * sizeof *k);
    if (!k) return SL_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        char name[NAME_MAX_LEN];
        k[i] = (struct order_key){-1, g->tensors[i].name, i};
        if (tensor_name(&g->tensors[i], name) && sscanf(name, "blk.%d.", &k[i].layer) != 1)
            k[i].layer = -1;
    }
    qsort(k, n, sizeof *k, order_cmp);
    for (size_t i = 0; i < n; i++)
        order[i] = k[i].index;
    free(k);
    return 0;
}

static uint32_t get_u32_or(const struct sl_gguf *g, const char *arch, const char *suffix,
                           uint32_t dflt)
{
    char key[160];
    uint32_t v;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return sl_gguf_get_u32(g, key, &v, NULL) == 0 ? v : dflt;
}

static int check_type(const char *what, const char *name, int type, int64_t n0, struct sl_err *err)
{
    const struct sl_type_traits *tr = type >= 0 ? sl_type_traits((uint32_t)type) : NULL;
    if (!tr || !tr->weight_ok)
        return sl_err_set(err, SL_EINVAL, "quantize: %s: type %s cannot hold weights", what,
                          tr ? tr->name : "(unknown)");
    if (n0 % tr->blck)
        return sl_err_set(err, SL_EINVAL,
                          "quantize: %s: tensor '%s' has rows of %lld values, not a multiple of %d "
                          "as %s needs (F16 and F32 take any row length)",
                          what, name, (long long)n0, tr->blck, tr->name);
    return 0;
}

/* The plan in g's tensor order, plus llama.cpp's output order. */
static int plan(const struct sl_gguf *g, const struct sl_quantize_params *p, int *types,
                size_t *order, struct sl_err *err)
{
    const int base = sl_ftype_base_type(p->ftype);
    const struct sl_type_traits *btr = base >= 0 ? sl_type_traits((uint32_t)base) : NULL;
    size_t n = (size_t)g->n_tensors;
    struct sl_str arch = {"", 0};
    char a[64] = "", name[NAME_MAX_LEN];
    struct mix m = {.ftype = p->ftype};
    int rc = 0;

    if (!btr)
        return sl_err_set(err, SL_EINVAL, "quantize: unknown file type %d (%s)", p->ftype,
                          sl_ftype_names());
    for (size_t i = 0; i < n; i++)
        if (!tensor_name(&g->tensors[i], name))
            return sl_err_set(err, SL_EUNSUPPORTED,
                              "quantize: a tensor name of %zu bytes (at most %d)",
                              g->tensors[i].name.len, NAME_MAX_LEN - 1);
    if (tensor_order(g, order)) return sl_err_set(err, SL_ENOMEM, "quantize: out of memory");

    /* what the rules need to know */
    if (sl_gguf_get_str(g, "general.architecture", &arch, NULL) == 0 && arch.len < sizeof a) {
        memcpy(a, arch.ptr, arch.len);
        a[arch.len] = 0;
    }
    m.falcon = strcmp(a, "falcon") == 0;
    m.n_layer = (int)get_u32_or(g, a, "block_count", 0);
    uint32_t n_head = get_u32_or(g, a, "attention.head_count", 1);
    uint32_t n_head_kv = get_u32_or(g, a, "attention.head_count_kv", n_head);
    m.n_gqa = n_head_kv ? (int)(n_head / n_head_kv) : 1;
    m.n_expert = (int)get_u32_or(g, a, "expert_count", 0);
    m.is_70b =
        m.n_layer == 80 && ((!strcmp(a, "llama") && n_head != n_head_kv) || !strcmp(a, "qwen2"));
    m.has_output = sl_gguf_find_tensor(g, "output.weight") != NULL;
    for (size_t i = 0; i < n; i++) {
        tensor_name(&g->tensors[i], name);
        m.n_attn_wv += has(name, "attn_v.weight") || has(name, "attn_qkv.weight") ||
                       has(name, "attn_kv_b.weight");
    }

    for (size_t oi = 0; oi < n && !rc; oi++) {
        size_t i = order[oi];
        const struct sl_gguf_tensor *t = &g->tensors[i];
        const struct sl_type_traits *str = sl_type_traits(t->type);
        int type;

        tensor_name(t, name);
        types[i] = (int)t->type;
        if (!tensor_quantizable(name, t->n_dims)) continue;
        type = base;
        if (btr->is_quant) {
            if (!p->pure) type = mix_type(&m, name, t->ne[0], type, p->output_type);
            int fb = fallback_type(type, t->ne[0]);
            if (fb < 0) {
                rc = check_type("type", name, type, t->ne[0], err);
                break;
            }
            type = fb;
        }
        if (p->token_embd_type >= 0 && !strcmp(name, "token_embd.weight")) {
            if ((rc = check_type("--token-embd-type", name, p->token_embd_type, t->ne[0], err)))
                break;
            type = p->token_embd_type;
        }
        if (p->output_type >= 0 && !strcmp(name, "output.weight")) {
            if ((rc = check_type("--output-type", name, p->output_type, t->ne[0], err))) break;
            type = p->output_type;
        }
        if (type != (int)t->type) {
            if (!str || !str->weight_ok)
                rc = sl_err_set(err, SL_EUNSUPPORTED,
                                "quantize: tensor '%s' has type %s, which cannot be converted",
                                name, str ? str->name : "?");
            else if (str->is_quant && !p->allow_requantize)
                rc = sl_err_set(
                    err, SL_EINVAL,
                    "quantize: tensor '%s' is already quantized (%s); requantizing loses quality "
                    "twice and needs allow_requantize",
                    name, str->name);
            else if ((rc = check_type("type", name, type, t->ne[0], err)))
                break;
        }
        types[i] = type;
    }
    return rc;
}

int sl_quantize_plan(const struct sl_gguf *g, const struct sl_quantize_params *p, int *types,
                     struct sl_err *err)
{
    size_t *order = malloc((g->n_tensors ? (size_t)g->n_tensors : 1) * sizeof *order);
    if (!order) return sl_err_set(err, SL_ENOMEM, "quantize: out of memory");
    int rc = plan(g, p, types, order, err);
    free(order);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* the conversion                                                           */
/* ------------------------------------------------------------------------ */

#define ROWS_CHUNK_VALUES 32768 /* values per pool item (llama.cpp: 32 * 512) */
#define ITEMS_PER_REPORT 64     /* pool items between progress reports, per thread */

struct convert_job {
    const uint8_t *src; /* first row of this run */
    uint8_t *dst;
    int src_type, dst_type;
    size_t src_rs, dst_rs; /* bytes per row */
    int64_t n0;            /* values per row */
    int64_t rows;          /* rows in this run */
    int64_t rows_per_item;
    float **scratch; /* per thread: n0 floats */
};

static void convert_item(void *ctx, int item, int thread)
{
    const struct convert_job *j = ctx;
    int64_t r0 = (int64_t)item * j->rows_per_item, r1 = SL_MIN(j->rows, r0 + j->rows_per_item);
    float *row = j->scratch[thread];
    for (int64_t r = r0; r < r1; r++) {
        sl_dequantize_row(j->src_type, j->src + (size_t)r * j->src_rs, row, j->n0);
        size_t w = sl_quantize_row_ref(j->dst_type, row, j->dst + (size_t)r * j->dst_rs, j->n0);
        SL_ASSERT(w == j->dst_rs);
    }
}

/* Keys llama-quantize drops from the copy: file type and quantization
 * version are set again (at the end), split keys do not apply. */
static bool key_dropped(struct sl_str k)
{
    static const char *const drop[] = {"general.file_type", "general.quantization_version",
                                       "split.no", "split.count", "split.tensors.count"};
    for (size_t i = 0; i < sizeof drop / sizeof *drop; i++)
        if (sl_str_eq(k, drop[i])) return true;
    return false;
}

int sl_quantize_file(const char *in_path, const char *out_path, const struct sl_quantize_params *p,
                     struct sl_err *err)
{
    struct sl_gguf *g = NULL;
    struct sl_gguf_writer *w = NULL;
    struct sl_pool *pool = NULL;
    int *types = NULL;
    size_t *order = NULL;
    float **scratch = NULL;
    float *scratch_mem = NULL;
    uint8_t *buf = NULL;
    int n_threads = 0, rc;
    uint64_t total = 0, done = 0;
    int64_t max_n0 = 0;

    if ((rc = sl_gguf_open(&g, in_path, err))) return rc;
    size_t n = (size_t)g->n_tensors;
    types = malloc((n ? n : 1) * sizeof *types);
    order = malloc((n ? n : 1) * sizeof *order);
    w = sl_gguf_writer_init();
    if (!types || !order || !w) {
        rc = sl_err_set(err, SL_ENOMEM, "quantize: out of memory");
        goto out; /* allocation failure */
    }
    if ((rc = plan(g, p, types, order, err))) goto out;

    /* metadata: everything but the keys set below */
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (!key_dropped(g->kv[i].key) && (rc = sl_gguf_set_kv_from(w, &g->kv[i]))) {
            rc = sl_err_set(err, rc, "quantize: copying key '%.*s' failed", (int)g->kv[i].key.len,
                            g->kv[i].key.ptr);
            goto out; /* allocation failure or absurd key */
        }
    if (sl_gguf_set_u32(w, "general.quantization_version", 2) ||
        sl_gguf_set_u32(w, "general.file_type", (uint32_t)p->ftype)) {
        rc = sl_err_set(err, SL_ENOMEM, "quantize: out of memory");
        goto out; /* allocation failure */
    }

    /* the pool and its per-thread rows */
    for (size_t i = 0; i < n; i++) {
        int64_t el = 1;
        for (uint32_t d = 0; d < g->tensors[i].n_dims; d++)
            el *= g->tensors[i].ne[d];
        total += (uint64_t)el;
        if (types[i] != (int)g->tensors[i].type) max_n0 = SL_MAX(max_n0, g->tensors[i].ne[0]);
    }
    if (max_n0 > 0) {
        pool = sl_pool_init(p->n_threads);
        n_threads = pool ? sl_pool_n_threads(pool) : 0;
        scratch = calloc((size_t)(n_threads ? n_threads : 1), sizeof *scratch);
        scratch_mem = malloc((size_t)n_threads * (size_t)max_n0 * sizeof(float));
        if (!pool || !scratch || !scratch_mem) {
            rc = sl_err_set(err, SL_ENOMEM, "quantize: out of memory (thread pool)");
            goto out; /* allocation failure */
        }
        for (int t = 0; t < n_threads; t++)
            scratch[t] = scratch_mem + (size_t)t * (size_t)max_n0;
    }

    if (p->progress) p->progress(p->progress_user, 0, total);
    for (size_t oi = 0; oi < n; oi++) {
        const struct sl_gguf_tensor *t = &g->tensors[order[oi]];
        int type = types[order[oi]];
        char name[NAME_MAX_LEN];
        int64_t rows = 1;

        tensor_name(t, name); /* fits: checked by the plan */
        for (uint32_t d = 1; d < t->n_dims; d++)
            rows *= t->ne[d];
        if (type == (int)t->type) {
            if ((rc =
                     sl_gguf_add_tensor(w, name, t->type, t->n_dims, t->ne, t->data, t->size, err)))
                goto out;
            done += (uint64_t)(rows * t->ne[0]);
            if (p->progress) p->progress(p->progress_user, done, total);
            continue;
        }
        struct convert_job j = {.src = t->data,
                                .src_type = (int)t->type,
                                .dst_type = type,
                                .src_rs = sl_row_size((int)t->type, t->ne[0]),
                                .dst_rs = sl_row_size(type, t->ne[0]),
                                .n0 = t->ne[0],
                                .rows_per_item = SL_MAX(1, ROWS_CHUNK_VALUES / t->ne[0]),
                                .scratch = scratch};
        size_t out_size = j.dst_rs * (size_t)rows;
        if (!(buf = malloc(out_size ? out_size : 1))) {
            rc = sl_err_set(err, SL_ENOMEM, "quantize: out of memory for tensor '%s' (%zu bytes)",
                            name, out_size);
            goto out; /* allocation failure */
        }
        /* runs of rows, with a progress report after each */
        int64_t run_rows = j.rows_per_item * ITEMS_PER_REPORT * n_threads;
        for (int64_t r0 = 0; r0 < rows; r0 += run_rows) {
            j.rows = SL_MIN(run_rows, rows - r0);
            j.src = (const uint8_t *)t->data + (size_t)r0 * j.src_rs;
            j.dst = buf + (size_t)r0 * j.dst_rs;
            sl_pool_run(pool, convert_item, &j,
                        (int)((j.rows + j.rows_per_item - 1) / j.rows_per_item));
            done += (uint64_t)(j.rows * t->ne[0]);
            if (p->progress) p->progress(p->progress_user, done, total);
        }
        rc = sl_gguf_add_tensor(w, name, (uint32_t)type, t->n_dims, t->ne, buf, out_size, err);
        free(buf);
        buf = NULL;
        if (rc) goto out;
    }
    rc = sl_gguf_writer_write(w, out_path, err);
out:
    free(buf);
    free(scratch);
    free(scratch_mem);
    sl_pool_free(pool);
    sl_gguf_writer_free(w);
    free(order);
    free(types);
    sl_gguf_free(g);
    return rc;
}
