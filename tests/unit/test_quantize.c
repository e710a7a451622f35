/*
 * test_quantize.c - `sluice quantize` (src/convert/quantize.c) against
 * llama-quantize's own files: the conformance llama model quantized from
 * F32 must come out byte-identical for every type and for the Q4_K_M mix,
 * stories260K (rows of 64 and 172 values: the K-quant fallbacks) likewise;
 * the other architectures, whose F32 files are not in the assets, are
 * quantized from F16 and must get llama.cpp's per-tensor types and a logit
 * error (against F16) close to that of llama.cpp's files. A quality table
 * (docs/internals/quantize.md) is printed. The rest runs on models made by
 * sl_synth_write, without assets.
 */
#include <jansson.h>
#include <sys/wait.h>

#include "convert/quantize.h"
#include "convert/synth.h"
#include "engine/forward.h"
#include "engine/model.h"
#include "engine/quant.h"
#include "test.h"

/* ------------------------------------------------------------------------ */
/* helpers                                                                  */
/* ------------------------------------------------------------------------ */

/* t_tmp_path's buffer is static: keep each path in its own. */
static const char *tmp_path(char *buf, const char *name)
{
    snprintf(buf, 4096, "%s", t_tmp_path(name));
    return buf;
}

static int quantize(const char *in, const char *out, int ftype, bool pure, struct sl_err *err)
{
    struct sl_quantize_params p = sl_quantize_default_params();
    p.ftype = ftype;
    p.pure = pure;
    p.n_threads = 2;
    return sl_quantize_file(in, out, &p, err);
}

static int tensor_type(const struct sl_gguf *g, const char *name)
{
    const struct sl_gguf_tensor *t = sl_gguf_find_tensor(g, name);
    return t ? (int)t->type : -1;
}

static const char *type_name(int t)
{
    const struct sl_type_traits *tr = t >= 0 ? sl_type_traits((uint32_t)t) : NULL;
    return tr ? tr->name : "(none)";
}

/* Compare two GGUF files tensor by tensor (name, type, shape, bytes when
 * want_bytes) and then as whole files; report the first tensor that
 * differs. Returns the number of differing tensors. */
static int compare_files(const char *ours, const char *theirs, bool want_bytes, bool want_file)
{
    struct sl_err err = {0};
    struct sl_gguf *a = NULL, *b = NULL;
    int bad = 0;
    T_OK(sl_gguf_open(&a, ours, &err), &err);
    T_OK(sl_gguf_open(&b, theirs, &err), &err);
    if (!a || !b) goto out;
    T_EQ_INT(a->n_tensors, b->n_tensors);
    for (uint64_t i = 0; i < b->n_tensors; i++) {
        const struct sl_gguf_tensor *tb = &b->tensors[i];
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)tb->name.len, tb->name.ptr);
        const struct sl_gguf_tensor *ta = sl_gguf_find_tensor(a, name);
        if (!ta) {
            T_FAIL_AT("%s: tensor '%s' missing", ours, name);
            bad++;
            continue;
        }
        if (ta->type != tb->type || memcmp(ta->ne, tb->ne, sizeof ta->ne)) {
            if (!bad)
                T_FAIL_AT("%s: tensor '%s' is %s, llama.cpp's is %s", ours, name,
                          type_name((int)ta->type), type_name((int)tb->type));
            bad++;
        } else if (want_bytes && (ta->size != tb->size || memcmp(ta->data, tb->data, ta->size))) {
            size_t k = 0;
            while (k < ta->size && ((const uint8_t *)ta->data)[k] == ((const uint8_t *)tb->data)[k])
                k++;
            if (!bad)
                T_FAIL_AT("%s: tensor '%s' (%s) differs from byte %zu", ours, name,
                          type_name((int)ta->type), k);
            bad++;
        }
    }
    t_checks++;
    if (!bad && want_file && (a->size != b->size || memcmp(a->base, b->base, a->size))) {
        T_FAIL_AT("%s: tensors equal but the files differ (metadata or order)", ours);
        bad++;
    }
out:
    sl_gguf_free(a);
    sl_gguf_free(b);
    return bad;
}

struct logit_result {
    double nmse, argmax;
};

static int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* Logits of the whole sequence in one batch (n_tokens x n_vocab). */
static float *model_logits(const char *path, const int32_t *toks, int n, int *n_vocab)
{
    struct sl_err err = {0};
    struct sl_model *m = NULL;
    struct sl_ctx *ctx = NULL;
    struct sl_batch b = {0};
    struct sl_ctx_params cp = sl_ctx_default_params();
    float *out = NULL;
    T_OK(sl_model_load(&m, path, false, &err), &err);
    if (!m) return NULL;
    cp.n_ctx = n;
    cp.n_batch = n;
    cp.n_threads = 2;
    T_OK(sl_ctx_init(&ctx, m, &cp, &err), &err);
    T_OK(sl_batch_init(&b, n), &err);
    if (ctx) {
        for (int i = 0; i < n; i++)
            sl_batch_add(&b, toks[i], i, 0, true);
        T_OK(sl_decode(ctx, &b, &err), &err);
        *n_vocab = m->hp.n_vocab;
        out = malloc((size_t)n * (size_t)*n_vocab * sizeof *out);
        for (int i = 0; out && i < n; i++)
            memcpy(out + (size_t)i * (size_t)*n_vocab, sl_ctx_logits(ctx, i),
                   (size_t)*n_vocab * sizeof *out);
    }
    sl_batch_free(&b);
    sl_ctx_free(ctx);
    sl_model_free(m);
    return out;
}

static struct logit_result compare_logits(const float *a, const float *ref, int n, int n_vocab)
{
    double num = 0, den = 0;
    int agree = 0;
    size_t V = (size_t)n_vocab;
    for (size_t i = 0; i < (size_t)n; i++) {
        for (size_t j = 0; j < V; j++) {
            double d = (double)a[i * V + j] - ref[i * V + j];
            num += d * d;
            den += (double)ref[i * V + j] * ref[i * V + j];
        }
        agree += argmax(a + i * V, n_vocab) == argmax(ref + i * V, n_vocab);
    }
    return (struct logit_result){num / den, (double)agree / n};
}

static const char *pure_types[] = {"F16",  "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0",
                                   "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"};

/* ------------------------------------------------------------------------ */
/* against llama.cpp's files                                                */
/* ------------------------------------------------------------------------ */

static void quantize_pure_matches_llama_cpp_byte_for_byte(void)
{
    const char *dir = t_asset("conformance/models");
    char in[4096], ref[4096];
    if (!dir) {
        t_skip("../shared/assets absent: llama.cpp's quantized files not compared");
        return;
    }
    snprintf(in, sizeof in, "%s/llama-s1-F32.gguf", dir);
    for (size_t i = 0; i < sizeof pure_types / sizeof *pure_types; i++) {
        struct sl_err err = {0};
        char out[4096];
        tmp_path(out, "qz_pure.gguf");
        snprintf(ref, sizeof ref, "%s/llama-s1-%s.gguf", dir, pure_types[i]);
        T_OK(quantize(in, out, sl_ftype_from_name(pure_types[i]), true, &err), &err);
        int bad = compare_files(out, ref, true, true);
        fprintf(stderr, "  %-5s %s\n", pure_types[i], bad ? "DIFFERS" : "byte-identical file");
    }
}

static void quantize_q4_k_m_matches_llama_cpp_byte_for_byte(void)
{
    const char *dir = t_asset("conformance/models");
    char in[4096], ref[4096];
    struct sl_err err = {0};
    char out[4096];
    tmp_path(out, "qz_q4km.gguf");
    if (!dir) {
        t_skip("../shared/assets absent: llama.cpp's Q4_K_M file not compared");
        return;
    }
    snprintf(in, sizeof in, "%s/llama-s1-F32.gguf", dir);
    snprintf(ref, sizeof ref, "%s/llama-s1-Q4_K_M.gguf", dir);
    T_OK(quantize(in, out, SL_FTYPE_MOSTLY_Q4_K_M, false, &err), &err);
    compare_files(out, ref, true, true);
}

/* stories260K: n_embd 64 and n_ff 172, so every K-quant falls back
 * (Q4_K -> Q5_0, Q6_K -> Q8_0, ffn_down -> F16), as in llama.cpp's files. */
static void quantize_fallbacks_match_llama_cpp_on_stories260k(void)
{
    const char *dir = t_asset("models/stories260K");
    static const char *types[] = {"F16", "Q4_K_M", "Q6_K"};
    char in[4096], ref[4096];
    if (!dir) {
        t_skip("../shared/assets absent: stories260K not compared");
        return;
    }
    snprintf(in, sizeof in, "%s/stories260K.gguf", dir);
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        struct sl_err err = {0};
        char out[4096];
        tmp_path(out, "qz_stories.gguf");
        snprintf(ref, sizeof ref, "%s/stories260K.%s.gguf", dir, types[i]);
        T_OK(quantize(in, out, sl_ftype_from_name(types[i]), false, &err), &err);
        compare_files(out, ref, true, true);
    }
}

/* The reference logits of a variant's F16 case (n_tokens x n_vocab). */
static float *f16_reference(json_t *cases, const char *dir, const char *variant, size_t *len)
{
    size_t ci;
    json_t *c;
    char path[4096];
    json_array_foreach(cases, ci, c)
    {
        const char *v = json_string_value(json_object_get(c, "variant"));
        const char *type = json_string_value(json_object_get(c, "type"));
        const char *logits = json_string_value(json_object_get(c, "logits"));
        if (v && type && logits && !strcmp(v, variant) && !strcmp(type, "F16")) {
            snprintf(path, sizeof path, "%s/%s", dir, logits);
            return (float *)t_read_file(path, len);
        }
    }
    return NULL;
}

/* Every conformance case whose variant has no F32 file: quantize the
 * variant's F16 file to the case's type and compare the per-tensor types
 * with llama.cpp's file. The bytes differ (llama.cpp started from F32), so
 * the logits are judged by quality: their error against the variant's F16
 * reference logits must be close to that of llama.cpp's own file, run
 * through the same sluice forward pass. (Against the quantized case's own
 * reference they may not stay inside nmse_max: two different roundings of
 * the weights each add their error.) */
#define SL_QUANTIZE_NMSE_RATIO 1.25 /* ours vs llama.cpp's error against F16 */

static void quantize_other_architectures_match_llama_cpp_types_and_quality(void)
{
    const char *dir = t_asset("conformance");
    char path[4096], in[4096], out[4096];
    if (!dir) {
        t_skip("../shared/assets absent: conformance cases not run");
        return;
    }
    snprintf(path, sizeof path, "%s/cases.json", dir);
    json_error_t jerr;
    json_t *cases = json_load_file(path, 0, &jerr), *c;
    size_t ci;
    int n_run = 0;
    T_TRUE(cases != NULL);
    tmp_path(out, "qz_variant.gguf");
    json_array_foreach(cases, ci, c)
    {
        const char *variant = json_string_value(json_object_get(c, "variant"));
        const char *type = json_string_value(json_object_get(c, "type"));
        const char *model = json_string_value(json_object_get(c, "model"));
        double nmse_max = json_number_value(json_object_get(c, "nmse_max"));
        json_t *jt = json_object_get(c, "tokens");
        int n = (int)json_array_size(jt), ftype = type ? sl_ftype_from_name(type) : -1;
        int32_t toks[256];
        struct sl_err err = {0};
        size_t len = 0;
        int V = 0, V2 = 0;

        if (!variant || !model || !type || n <= 0 || n > 256 || !strcmp(variant, "llama")) continue;
        T_TRUE(ftype >= 0);
        for (int i = 0; i < n; i++)
            toks[i] = (int32_t)json_integer_value(json_array_get(jt, (size_t)i));
        snprintf(in, sizeof in, "%s/models/%s-s1-F16.gguf", dir, variant);
        T_OK(quantize(in, out, ftype, strcmp(type, "Q4_K_M") != 0, &err), &err);
        snprintf(path, sizeof path, "%s/%s", dir, model);
        int bad = compare_files(out, path, false, false);
        float *ref = f16_reference(cases, dir, variant, &len);
        float *ours = model_logits(out, toks, n, &V);
        float *theirs = model_logits(path, toks, n, &V2);
        T_TRUE(ref && ours && theirs && V == V2 && len == (size_t)n * (size_t)V * sizeof(float));
        if (ref && ours && theirs && V == V2 && len == (size_t)n * (size_t)V * sizeof(float)) {
            struct logit_result a = compare_logits(ours, ref, n, V),
                                b = compare_logits(theirs, ref, n, V);
            bool ok = !strcmp(type, "F16") ? a.nmse <= nmse_max
                                           : a.nmse <= SL_QUANTIZE_NMSE_RATIO * b.nmse + 1e-6;
            fprintf(
                stderr,
                "  %s %-7s %-6s types %-6s nmse vs F16: sluice %.2e, llama.cpp %.2e (ratio %.2f)\n",
                ok ? "ok " : "BAD", variant, type, bad ? "DIFFER" : "match", a.nmse, b.nmse,
                b.nmse > 0 ? a.nmse / b.nmse : 0.0);
            if (!ok)
                T_FAIL_AT("%s %s: logit error against F16 %.3g, llama.cpp's file %.3g", variant,
                          type, a.nmse, b.nmse);
        }
        free(ref);
        free(ours);
        free(theirs);
        n_run++;
    }
    T_TRUE(n_run > 0);
    json_decref(cases);
}

/* ------------------------------------------------------------------------ */
/* quality table (docs/internals/quantize.md)                               */
/* ------------------------------------------------------------------------ */

#define QZ_MAX_SEQ 4
#define QZ_SEQ_LEN 256

static uint64_t qz_rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Text from the model itself: sequence 0 greedy, the others sampled at
 * temperature 1 (seeded), each from BOS, QZ_SEQ_LEN tokens long. */
static int make_text(const char *path, int32_t toks[QZ_MAX_SEQ][QZ_SEQ_LEN])
{
    struct sl_err err = {0};
    struct sl_model *m = NULL;
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    T_OK(sl_model_load(&m, path, false, &err), &err);
    if (!m) return -1;
    int V = m->hp.n_vocab;
    double *p = malloc((size_t)V * sizeof *p);
    for (int s = 0; s < QZ_MAX_SEQ && p; s++) {
        struct sl_ctx *ctx = NULL;
        struct sl_batch b = {0};
        struct sl_ctx_params cp = sl_ctx_default_params();
        cp.n_ctx = QZ_SEQ_LEN;
        cp.n_batch = 1;
        cp.n_threads = 2;
        T_OK(sl_ctx_init(&ctx, m, &cp, &err), &err);
        T_OK(sl_batch_init(&b, 1), &err);
        toks[s][0] = 1; /* BOS */
        for (int i = 0; ctx && i + 1 < QZ_SEQ_LEN; i++) {
            sl_batch_clear(&b);
            sl_batch_add(&b, toks[s][i], i, 0, true);
            if (sl_decode(ctx, &b, &err)) break;
            const float *l = sl_ctx_logits(ctx, 0);
            int next = argmax(l, V);
            if (s > 0) {
                double sum = 0, mx = l[next], u;
                for (int j = 0; j < V; j++)
                    sum += (p[j] = exp((double)l[j] - mx));
                u = (double)(qz_rng(&rng) >> 11) / 9007199254740992.0 * sum;
                for (next = 0; next < V - 1 && (u -= p[next]) > 0; next++) {
                }
            }
            toks[s][i + 1] = next;
        }
        sl_batch_free(&b);
        sl_ctx_free(ctx);
    }
    free(p);
    sl_model_free(m);
    return 0;
}

/* Perplexity of sequences s0..s1-1. */
static double perplexity(const char *path, int32_t toks[QZ_MAX_SEQ][QZ_SEQ_LEN], int s0, int s1)
{
    double nll = 0;
    int count = 0, V = 0;
    for (int s = s0; s < s1; s++) {
        float *l = model_logits(path, toks[s], QZ_SEQ_LEN, &V);
        if (!l) return NAN;
        for (int i = 0; i + 1 < QZ_SEQ_LEN; i++) {
            const float *row = l + (size_t)i * (size_t)V;
            double mx = row[argmax(row, V)], sum = 0;
            for (int j = 0; j < V; j++)
                sum += exp((double)row[j] - mx);
            nll += mx + log(sum) - row[toks[s][i + 1]];
            count++;
        }
        free(l);
    }
    return exp(nll / count);
}

static double bits_per_weight(const char *path)
{
    struct sl_gguf *g = NULL;
    double bits = 0, n = 0;
    if (sl_gguf_open(&g, path, NULL)) return NAN;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct sl_gguf_tensor *t = &g->tensors[i];
        double el = 1;
        for (uint32_t d = 0; d < t->n_dims; d++)
            el *= (double)t->ne[d];
        if (t->n_dims < 2) continue;
        bits += 8.0 * (double)t->size;
        n += el;
    }
    sl_gguf_free(g);
    return bits / n;
}

/* Prints the tables of docs/internals/quantize.md; checks only that the
 * error grows as the bits shrink, roughly. */
static void quantize_quality_table(void)
{
    static const char *types[] = {"F16",    "BF16",   "Q8_0",   "Q6_K",   "Q5_K_M", "Q5_K_S",
                                  "Q5_1",   "Q5_0",   "Q4_K_M", "Q4_K_S", "Q4_1",   "Q4_0",
                                  "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K"};
    const char *cdir = t_asset("conformance");
    char in[4096], out[4096], path[4096];
    if (!cdir) {
        t_skip("../shared/assets absent: no quality table");
        return;
    }
    tmp_path(out, "qz_quality.gguf");

    /* conformance llama: logits against the F32 model's, 24 tokens */
    snprintf(path, sizeof path, "%s/cases.json", cdir);
    json_error_t jerr;
    json_t *cases = json_load_file(path, 0, &jerr);
    json_t *jt = cases ? json_object_get(json_array_get(cases, 0), "tokens") : NULL;
    int n = (int)json_array_size(jt), V = 0;
    int32_t toks[256];
    T_TRUE(n > 0 && n <= 256);
    if (n <= 0 || n > 256) n = 0;
    for (int i = 0; i < n; i++)
        toks[i] = (int32_t)json_integer_value(json_array_get(jt, (size_t)i));
    json_decref(cases);
    snprintf(in, sizeof in, "%s/models/llama-s1-F32.gguf", cdir);
    float *f32 = n ? model_logits(in, toks, n, &V) : NULL;
    double prev_nmse = 0;
    fprintf(stderr, "| type | bits/weight | NMSE vs F32 | argmax agreement | pure NMSE vs F32 |\n");
    for (size_t k = 0; f32 && k < sizeof types / sizeof *types; k++) {
        struct sl_err err = {0};
        int ft = sl_ftype_from_name(types[k]);
        struct logit_result r[2] = {{0, 0}, {0, 0}};
        double bpw = 0;
        for (int pure = 0; pure < 2; pure++) {
            T_OK(quantize(in, out, ft, pure, &err), &err);
            float *l = model_logits(out, toks, n, &V);
            if (l) r[pure] = compare_logits(l, f32, n, V);
            if (!pure) bpw = bits_per_weight(out);
            free(l);
        }
        fprintf(stderr, "| %s | %.2f | %.2e | %.2f | %.2e |\n", types[k], bpw, r[0].nmse,
                r[0].argmax, r[1].nmse);
        if (!strcmp(types[k], "Q8_0") || !strcmp(types[k], "Q4_K_M") || !strcmp(types[k], "Q2_K")) {
            T_TRUE(r[0].nmse > prev_nmse);
            prev_nmse = r[0].nmse;
        }
    }
    free(f32);

    /* stories260K: perplexity on its own text */
    const char *sdir = t_asset("models/stories260K");
    static int32_t text[QZ_MAX_SEQ][QZ_SEQ_LEN];
    if (!sdir) return;
    snprintf(in, sizeof in, "%s/stories260K.gguf", sdir);
    if (make_text(in, text)) return;
    double g0 = perplexity(in, text, 0, 1), s0 = perplexity(in, text, 1, QZ_MAX_SEQ);
    fprintf(stderr,
            "| type | bits/weight | PPL greedy text | PPL sampled text |\n| F32 | 32.00 | %.4f | "
            "%.4f |\n",
            g0, s0);
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        struct sl_err err = {0};
        if (quantize(in, out, sl_ftype_from_name(types[k]), false, &err)) {
            fprintf(stderr, "| %s | - | fails: %.60s... | |\n", types[k],
                    strstr(err.msg, "tensor") ? strstr(err.msg, "tensor") : err.msg);
            continue;
        }
        double g = perplexity(out, text, 0, 1), s = perplexity(out, text, 1, QZ_MAX_SEQ);
        fprintf(stderr, "| %s | %.2f | %.4f | %.4f |\n", types[k], bits_per_weight(out), g, s);
        if (!strcmp(types[k], "Q6_K")) T_TRUE(s < s0 * 1.02);
    }
}

/* ------------------------------------------------------------------------ */
/* on synthetic models (no assets)                                          */
/* ------------------------------------------------------------------------ */

static const char *synth(char *path, const char *name, int32_t embd, int32_t ff, int type,
                         bool tied)
{
    struct sl_synth_params p = sl_synth_default_params();
    struct sl_err err = {0};
    tmp_path(path, name);
    p.n_embd = embd;
    p.n_ff = ff;
    p.n_head = 4;
    p.n_head_kv = 2;
    p.type = type;
    p.tied = tied;
    T_OK(sl_synth_write(&p, path, NULL, NULL, &err), &err);
    return path;
}

struct progress_log {
    uint64_t last, total;
    int calls;
    bool monotonic;
};

static void log_progress(void *user, uint64_t done, uint64_t total)
{
    struct progress_log *l = user;
    if (done < l->last || (l->total && total != l->total)) l->monotonic = false;
    l->last = done;
    l->total = total;
    l->calls++;
}

static void quantize_round_trip_keeps_metadata_and_values(void)
{
    char in[4096], out[4096];
    synth(in, "qz_rt_in.gguf", 256, 512, SL_TYPE_F32, true);
    tmp_path(out, "qz_rt_out.gguf");
    struct sl_quantize_params p = sl_quantize_default_params();
    struct progress_log log = {.monotonic = true};
    struct sl_err err = {0};
    struct sl_gguf *a = NULL, *b = NULL;
    p.ftype = SL_FTYPE_MOSTLY_Q8_0;
    p.progress = log_progress;
    p.progress_user = &log;
    T_OK(sl_quantize_file(in, out, &p, &err), &err);
    T_TRUE(log.monotonic && log.calls > 2 && log.last == log.total && log.total > 0);
    T_OK(sl_gguf_open(&a, in, &err), &err);
    T_OK(sl_gguf_open(&b, out, &err), &err);
    if (!a || !b) goto out;

    uint32_t ft = 0, qv = 0;
    struct sl_str na, nb;
    T_OK(sl_gguf_get_u32(b, "general.file_type", &ft, &err), &err);
    T_OK(sl_gguf_get_u32(b, "general.quantization_version", &qv, &err), &err);
    T_EQ_INT(ft, SL_FTYPE_MOSTLY_Q8_0);
    T_EQ_INT(qv, 2);
    T_EQ_INT(b->n_kv, a->n_kv + 2);
    T_OK(sl_gguf_get_str(b, "general.name", &nb, &err), &err);
    T_OK(sl_gguf_get_str(a, "general.name", &na, &err), &err);
    T_TRUE(na.len == nb.len && !memcmp(na.ptr, nb.ptr, na.len));
    T_EQ_INT(b->n_tensors, a->n_tensors);
    /* token_embd is tied: Q8_0 stays Q8_0 for the output role; the rest Q8_0, norms F32 */
    T_EQ_INT(tensor_type(b, "token_embd.weight"), SL_TYPE_Q8_0);
    T_EQ_INT(tensor_type(b, "blk.0.attn_norm.weight"), SL_TYPE_F32);
    for (uint64_t i = 0; i < a->n_tensors; i++) {
        const struct sl_gguf_tensor *ta = &a->tensors[i];
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)ta->name.len, ta->name.ptr);
        const struct sl_gguf_tensor *tb = sl_gguf_find_tensor(b, name);
        T_TRUE(tb != NULL);
        if (!tb) continue;
        if (ta->n_dims == 1) {
            T_TRUE(tb->size == ta->size && !memcmp(tb->data, ta->data, ta->size));
            continue;
        }
        /* Q8_0 round trip: each value within half a step of its block's scale */
        float row[512];
        double max_err = 0, max_abs = 0;
        sl_dequantize_row((int)tb->type, tb->data, row, ta->ne[0]);
        for (int64_t k = 0; k < ta->ne[0]; k++) {
            double x = ((const float *)ta->data)[k];
            max_err = fmax(max_err, fabs(row[k] - x));
            max_abs = fmax(max_abs, fabs(x));
        }
        T_TRUE(max_err <= max_abs / 127.0 * 0.6 + 1e-6);
    }
out:
    sl_gguf_free(a);
    sl_gguf_free(b);
}

static void quantize_rejects_unknown_type_names(void)
{
    struct sl_quantize_params p = sl_quantize_default_params();
    struct sl_err err = {0};
    char cmd[16384], in[4096], out[4096], log[4096];
    T_EQ_INT(sl_ftype_from_name("Q4_K_X"), -1);
    T_EQ_INT(sl_ftype_from_name(""), -1);
    T_EQ_INT(sl_ftype_from_name("q4_k_m"), SL_FTYPE_MOSTLY_Q4_K_M);
    T_EQ_INT(sl_ftype_from_name("Q4_K"), SL_FTYPE_MOSTLY_Q4_K_M); /* llama-quantize's alias */
    T_EQ_STR(sl_ftype_name(SL_FTYPE_MOSTLY_Q5_K_M), "Q5_K_M");
    p.ftype = 99;
    synth(in, "qz_bad.gguf", 64, 128, SL_TYPE_F32, true);
    tmp_path(out, "qz_bad_out.gguf");
    tmp_path(log, "qz_bad_cli.txt");
    T_EQ_INT(sl_quantize_file(in, out, &p, &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "unknown file type") && strstr(err.msg, "Q4_K_M"));
    /* the CLI: a usage error (exit 2) naming the accepted types */
    snprintf(cmd, sizeof cmd, "%s quantize %s %s Q4_K_X 2>%s", SL_TEST_BINARY, in, out, log);
    int st = system(cmd);
    T_EQ_INT(WEXITSTATUS(st), 2);
    char *msg = t_read_file(log, NULL);
    T_TRUE(msg && strstr(msg, "unknown TYPE 'Q4_K_X'") && strstr(msg, "Q5_K_M"));
    free(msg);
}

/* Rows of 64 and 128 values: K-quants fall back to the 32-value types. */
static void quantize_falls_back_when_rows_are_not_multiples_of_256(void)
{
    struct sl_gguf *g = NULL;
    struct sl_err err = {0};
    struct sl_quantize_params p = sl_quantize_default_params();
    char path[4096];
    T_OK(sl_gguf_open(&g, synth(path, "qz_fb.gguf", 64, 128, SL_TYPE_F32, false), &err), &err);
    if (!g) return;
    int types[64];
    T_TRUE(g->n_tensors <= 64);
    T_OK(sl_quantize_plan(g, &p, types, &err), &err);
#define TYPE_OF(name) types[sl_gguf_find_tensor(g, name) - g->tensors]
    T_EQ_INT(TYPE_OF("output.weight"), SL_TYPE_Q8_0);     /* Q6_K role, 64 % 256 */
    T_EQ_INT(TYPE_OF("token_embd.weight"), SL_TYPE_Q5_0); /* Q4_K -> Q5_0 */
    T_EQ_INT(TYPE_OF("blk.0.attn_q.weight"), SL_TYPE_Q5_0);
    T_EQ_INT(TYPE_OF("blk.0.attn_v.weight"), SL_TYPE_Q5_0);
    T_EQ_INT(TYPE_OF("blk.1.attn_v.weight"), SL_TYPE_Q8_0); /* Q6_K -> Q8_0 */
    T_EQ_INT(TYPE_OF("blk.0.ffn_down.weight"), SL_TYPE_Q5_0);
    T_EQ_INT(TYPE_OF("blk.1.ffn_down.weight"), SL_TYPE_Q8_0);
    T_EQ_INT(TYPE_OF("blk.0.attn_norm.weight"), SL_TYPE_F32);
    p.ftype = SL_FTYPE_MOSTLY_Q2_K;
    p.pure = true;
    T_OK(sl_quantize_plan(g, &p, types, &err), &err);
    T_EQ_INT(TYPE_OF("blk.0.attn_q.weight"), SL_TYPE_Q4_0); /* Q2_K -> Q4_0 */
    T_EQ_INT(TYPE_OF("output.weight"), SL_TYPE_Q4_0);
    p.ftype = SL_FTYPE_MOSTLY_Q5_K_S;
    T_OK(sl_quantize_plan(g, &p, types, &err), &err);
    T_EQ_INT(TYPE_OF("blk.0.attn_q.weight"), SL_TYPE_Q5_1); /* Q5_K -> Q5_1 */
    /* an override that cannot hold the rows is an error, not a silent change */
    p.output_type = SL_TYPE_Q6_K;
    T_EQ_INT(sl_quantize_plan(g, &p, types, &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "--output-type") && strstr(err.msg, "output.weight"));
#undef TYPE_OF
    sl_gguf_free(g);

    /* rows of 48: no quantized type fits. K-quants end at F16, but the output
     * role's Q8_0 has no fallback, as in llama.cpp: an error naming the way out */
    T_OK(sl_gguf_open(&g, synth(path, "qz_fb48.gguf", 48, 96, SL_TYPE_F32, true), &err), &err);
    if (!g) return;
    p = sl_quantize_default_params();
    T_EQ_INT(sl_quantize_plan(g, &p, types, &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "token_embd.weight") && strstr(err.msg, "Q8_0") &&
           strstr(err.msg, "F16"));
    p.output_type = SL_TYPE_F16; /* tied: the output type applies to token_embd */
    T_OK(sl_quantize_plan(g, &p, types, &err), &err);
    T_EQ_INT(types[sl_gguf_find_tensor(g, "token_embd.weight") - g->tensors], SL_TYPE_F16);
    T_EQ_INT(types[sl_gguf_find_tensor(g, "blk.0.attn_q.weight") - g->tensors], SL_TYPE_F16);
    p = sl_quantize_default_params();
    p.ftype = SL_FTYPE_MOSTLY_Q4_0;
    p.pure = true;
    T_EQ_INT(sl_quantize_plan(g, &p, types, &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "not a multiple of 32") != NULL);
    sl_gguf_free(g);
}

static void quantize_q4_k_m_mix_on_a_256_wide_model(void)
{
    struct sl_gguf *g = NULL;
    struct sl_err err = {0};
    struct sl_quantize_params p = sl_quantize_default_params();
    int types[64];
    char path[4096];
    T_OK(sl_gguf_open(&g, synth(path, "qz_mix.gguf", 256, 512, SL_TYPE_F32, true), &err), &err);
    if (!g) return;
    T_OK(sl_quantize_plan(g, &p, types, &err), &err);
#define TYPE_OF(name) types[sl_gguf_find_tensor(g, name) - g->tensors]
    T_EQ_INT(TYPE_OF("token_embd.weight"), SL_TYPE_Q6_K); /* tied: the output's type */
    T_EQ_INT(TYPE_OF("blk.0.attn_v.weight"), SL_TYPE_Q4_K);
    T_EQ_INT(TYPE_OF("blk.1.attn_v.weight"), SL_TYPE_Q6_K);
    T_EQ_INT(TYPE_OF("blk.1.ffn_down.weight"), SL_TYPE_Q6_K);
    T_EQ_INT(TYPE_OF("blk.1.ffn_up.weight"), SL_TYPE_Q4_K);
    /* --pure: one type everywhere, token_embd included */
    p.pure = true;
    T_OK(sl_quantize_plan(g, &p, types, &err), &err);
    T_EQ_INT(TYPE_OF("token_embd.weight"), SL_TYPE_Q4_K);
    T_EQ_INT(TYPE_OF("blk.1.attn_v.weight"), SL_TYPE_Q4_K);
    /* overrides win over the mix and over --pure */
    p.token_embd_type = SL_TYPE_Q8_0;
    T_OK(sl_quantize_plan(g, &p, types, &err), &err);
    T_EQ_INT(TYPE_OF("token_embd.weight"), SL_TYPE_Q8_0);
    /* Q5_K_M bumps the same layers to Q6_K; Q3_K_L gives attn_v Q5_K */
    p = sl_quantize_default_params();
    p.ftype = SL_FTYPE_MOSTLY_Q5_K_M;
    T_OK(sl_quantize_plan(g, &p, types, &err), &err);
    T_EQ_INT(TYPE_OF("blk.0.attn_q.weight"), SL_TYPE_Q5_K);
    T_EQ_INT(TYPE_OF("blk.1.ffn_down.weight"), SL_TYPE_Q6_K);
    p.ftype = SL_FTYPE_MOSTLY_Q3_K_L;
    T_OK(sl_quantize_plan(g, &p, types, &err), &err);
    T_EQ_INT(TYPE_OF("blk.0.attn_v.weight"), SL_TYPE_Q5_K);
    T_EQ_INT(TYPE_OF("blk.0.attn_output.weight"), SL_TYPE_Q5_K);
    T_EQ_INT(TYPE_OF("blk.0.attn_q.weight"), SL_TYPE_Q3_K);
#undef TYPE_OF
    sl_gguf_free(g);
}

static void quantize_refuses_quantized_input_without_allow_requantize(void)
{
    char in[4096], out[4096];
    synth(in, "qz_rq.gguf", 64, 128, SL_TYPE_Q8_0, true);
    tmp_path(out, "qz_rq_out.gguf");
    struct sl_quantize_params p = sl_quantize_default_params();
    struct sl_err err = {0};
    p.ftype = SL_FTYPE_MOSTLY_Q4_0;
    T_EQ_INT(sl_quantize_file(in, out, &p, &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "already quantized (Q8_0)") != NULL);
    /* the same type needs no requantizing: tensors are copied */
    p.ftype = SL_FTYPE_MOSTLY_Q8_0;
    p.pure = true;
    T_OK(sl_quantize_file(in, out, &p, &err), &err);
    /* allowed on request */
    p.ftype = SL_FTYPE_MOSTLY_Q4_0;
    p.allow_requantize = true;
    T_OK(sl_quantize_file(in, out, &p, &err), &err);
    struct sl_model *m = NULL;
    T_OK(sl_model_load(&m, out, true, &err), &err);
    if (m) T_EQ_INT(m->layers[0].wq.type, SL_TYPE_Q4_0);
    sl_model_free(m);
}

int main(void)
{
    T_RUN(quantize_pure_matches_llama_cpp_byte_for_byte);
    T_RUN(quantize_q4_k_m_matches_llama_cpp_byte_for_byte);
    T_RUN(quantize_fallbacks_match_llama_cpp_on_stories260k);
    T_RUN(quantize_other_architectures_match_llama_cpp_types_and_quality);
    T_RUN(quantize_quality_table);
    T_RUN(quantize_round_trip_keeps_metadata_and_values);
    T_RUN(quantize_rejects_unknown_type_names);
    T_RUN(quantize_falls_back_when_rows_are_not_multiples_of_256);
    T_RUN(quantize_q4_k_m_mix_on_a_256_wide_model);
    T_RUN(quantize_refuses_quantized_input_without_allow_requantize);
    static const char *const tmp[] = {"qz_bad.gguf",    "qz_bad_cli.txt",  "qz_bad_out.gguf",
                                      "qz_fb.gguf",     "qz_fb48.gguf",    "qz_mix.gguf",
                                      "qz_pure.gguf",   "qz_q4km.gguf",    "qz_quality.gguf",
                                      "qz_rq.gguf",     "qz_rq_out.gguf",  "qz_rt_in.gguf",
                                      "qz_rt_out.gguf", "qz_stories.gguf", "qz_variant.gguf"};
    for (size_t i = 0; i < sizeof tmp / sizeof *tmp; i++)
        remove(t_tmp_path(tmp[i]));
    return t_done();
}
