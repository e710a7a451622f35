/*
 * test_schema.c - JSON Schema -> grammar (src/tasks/schema.c) and
 * constrained extraction (src/tasks/extract.c).
 *
 * The central check: many schemas x random sampling at temperature 1 on a
 * random-weight model (the worst case for a constraint: the model has no
 * idea what JSON is) -> every output parses with jansson and validates
 * against its schema under a small validator of the supported subset,
 * written here independently of the compiler.
 */
#include <jansson.h>

#include "convert/synth.h"
#include "engine/chat.h"
#include "engine/gguf.h"
#include "engine/grammar.h"
#include "engine/model.h"
#include "engine/quant.h"
#include "tasks/extract.h"
#include "tasks/schema.h"
#include "test.h"

/* ------------------------------------------------------------------------ */
/* A validator for the supported subset                                      */
/* ------------------------------------------------------------------------ */

static size_t utf8_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static bool has_type(const json_t *v, const char *t)
{
    if (!strcmp(t, "object")) return json_is_object(v);
    if (!strcmp(t, "array")) return json_is_array(v);
    if (!strcmp(t, "string")) return json_is_string(v);
    if (!strcmp(t, "integer")) return json_is_integer(v);
    if (!strcmp(t, "number")) return json_is_number(v);
    if (!strcmp(t, "boolean")) return json_is_boolean(v);
    if (!strcmp(t, "null")) return json_is_null(v);
    return false;
}

static bool validate(const json_t *v, const json_t *s)
{
    if (json_is_true(s)) return true;
    const json_t *t = json_object_get(s, "type"), *x;
    if ((x = json_object_get(s, "anyOf"))) {
        for (size_t i = 0; i < json_array_size(x); i++)
            if (validate(v, json_array_get(x, i))) return true;
        return false;
    }
    if ((x = json_object_get(s, "const")) && !json_equal((json_t *)v, (json_t *)x)) return false;
    if ((x = json_object_get(s, "enum"))) {
        bool found = false;
        for (size_t i = 0; i < json_array_size(x) && !found; i++) found = json_equal((json_t *)v, json_array_get(x, i));
        if (!found) return false;
    }
    if (json_is_string(t) && !has_type(v, json_string_value(t))) return false;
    if (json_is_array(t)) {
        bool ok = false;
        for (size_t i = 0; i < json_array_size(t) && !ok; i++) ok = has_type(v, json_string_value(json_array_get(t, i)));
        if (!ok) return false;
    }
    if (json_is_object(v) && (json_object_get(s, "properties") || (json_is_string(t) && !strcmp(json_string_value(t), "object")))) {
        const json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
        const char *k;
        json_t *pv;
        for (size_t i = 0; i < json_array_size(req); i++)
            if (!json_object_get(v, json_string_value(json_array_get(req, i)))) return false;
        json_object_foreach((json_t *)v, k, pv) {
            const json_t *ps = props ? json_object_get(props, k) : NULL;
            if (!ps) return false; /* additionalProperties: false */
            if (!validate(pv, ps)) return false;
        }
    }
    if (json_is_array(v)) {
        const json_t *items = json_object_get(s, "items");
        x = json_object_get(s, "minItems");
        if (x && json_array_size(v) < (size_t)json_integer_value(x)) return false;
        x = json_object_get(s, "maxItems");
        if (x && json_array_size(v) > (size_t)json_integer_value(x)) return false;
        for (size_t i = 0; items && i < json_array_size(v); i++)
            if (!validate(json_array_get(v, i), items)) return false;
    }
    if (json_is_string(v)) {
        size_t n = utf8_len(json_string_value(v));
        x = json_object_get(s, "minLength");
        if (x && n < (size_t)json_integer_value(x)) return false;
        x = json_object_get(s, "maxLength");
        if (x && n > (size_t)json_integer_value(x)) return false;
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* Schemas                                                                   */
/* ------------------------------------------------------------------------ */

static const char *schemas[] = {
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\"}},"
    "\"required\":[\"name\",\"age\"]}",
    "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"number\"},\"b\":{\"type\":\"boolean\"},"
    "\"c\":{\"type\":\"null\"}},\"required\":[\"b\"]}",
    "{\"type\":\"object\",\"properties\":{\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\","
    "\"maxLength\":5},\"minItems\":1,\"maxItems\":3}},\"required\":[\"tags\"]}",
    "{\"type\":\"object\",\"properties\":{\"color\":{\"enum\":[\"red\",\"green\",\"blue\"]},"
    "\"size\":{\"const\":3},\"x\":{\"type\":[\"string\",\"null\"]}}}",
    "{\"type\":\"object\",\"properties\":{\"person\":{\"type\":\"object\",\"properties\":{\"first\":"
    "{\"type\":\"string\",\"minLength\":2,\"maxLength\":6},\"last\":{\"type\":\"string\"}},"
    "\"required\":[\"first\"]},\"scores\":{\"type\":\"array\",\"items\":{\"type\":\"integer\"}}},"
    "\"required\":[\"person\",\"scores\"],\"additionalProperties\":false,\"title\":\"t\"}",
    "{\"type\":\"object\",\"properties\":{\"v\":{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"string\","
    "\"maxLength\":3}]}},\"required\":[\"v\"]}",
    "{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{\"k\":{\"type\":\"boolean\"}},"
    "\"required\":[\"k\"]},\"maxItems\":3}",
    "{\"type\":\"object\",\"properties\":{}}",
    "{\"type\":\"object\",\"properties\":{\"s\":{\"type\":\"string\",\"minLength\":3,\"maxLength\":3}},"
    "\"required\":[\"s\"]}",
    "{\"type\":\"object\",\"properties\":{\"k~/x\":{\"type\":\"integer\"},\"he\\\"y\":{\"type\":\"boolean\"}},"
    "\"required\":[\"k~/x\",\"he\\\"y\"]}",
    "{\"type\":\"string\",\"maxLength\":10,\"description\":\"top-level string\"}",
    "{\"enum\":[1,\"one\",[1,2],{\"a\":null},true,null,2.5]}",
    "{\"type\":\"object\",\"properties\":{\"o1\":{\"type\":\"integer\"},\"o2\":{\"type\":\"integer\"},"
    "\"r\":{\"type\":\"boolean\"},\"o3\":{\"type\":\"string\",\"maxLength\":2}},\"required\":[\"r\"]}",
    "{\"type\":\"object\",\"properties\":{\"n\":{\"type\":[\"number\",\"integer\"]},\"e\":{\"type\":\"array\","
    "\"maxItems\":0}},\"required\":[\"n\",\"e\"]}",
};
#define N_SCHEMAS (sizeof schemas / sizeof *schemas)

static struct sl_model *synth_model(void)
{
    static struct sl_model *m;
    if (!m) {
        struct sl_synth_params p = sl_synth_default_params();
        struct sl_err err = {0};
        const char *path = t_tmp_path("schema_tiny.gguf");
        p.seed = 3;
        T_OK(sl_synth_write(&p, path, NULL, NULL, &err), &err);
        T_OK(sl_model_load(&m, path, true, &err), &err);
    }
    return m;
}

/* Run schema s with seeds [0, n_seeds) at temperature 1; every output must
 * parse and validate. Returns the number of outputs checked. */
static int sample_and_validate(const struct sl_model *m, const char *s, int n_seeds, const char *label)
{
    struct sl_err err = {0};
    json_error_t je;
    json_t *schema = json_loads(s, 0, &je);
    int checked = 0;
    T_TRUE(schema != NULL);
    if (!schema) return 0;
    struct sl_ctx_params cp = sl_ctx_default_params();
    cp.n_ctx = 2048;
    cp.n_threads = 1;
    struct sl_ctx *ctx = NULL;
    T_OK(sl_ctx_init(&ctx, m, &cp, &err), &err);
    for (int seed = 0; seed < n_seeds && ctx; seed++) {
        struct sl_extract_task t = sl_extract_default_task();
        t.schema = schema;
        t.opts.max_string = 12;
        t.opts.max_items = 4;
        t.max_tokens = 1500;
        t.sampling.temp = 1.0f;
        t.sampling.top_k = 0;
        t.sampling.top_p = 1.0f;
        t.sampling.min_p = 0;
        t.sampling.seed = (uint64_t)seed * 7919u + 1;
        if (seed % 3 == 2) { /* every prompt mode */
            t.mode = SL_PROMPT_CHAT;
            t.chat_family = SL_CHAT_CHATML;
        } else if (seed % 3 == 1) {
            t.mode = SL_PROMPT_RAW;
        }
        struct sl_extractor *x = NULL;
        struct sl_extract_result r;
        T_OK(sl_extractor_init(&x, ctx, &t, &err), &err);
        if (!x) break;
        int rc = sl_extract(x, seed % 2 ? "Jane Doe, 42, likes tea" : "", &r, &err);
        if (rc) {
            T_FAIL_AT("%s schema %s seed %d: %s", label, s, seed, err.msg);
        } else {
            json_t *v = json_loadb(r.output, r.len, JSON_DECODE_ANY, &je);
            if (!v) T_FAIL_AT("%s: output does not parse: %s (%s)", label, r.output, je.text);
            else if (!validate(v, schema)) T_FAIL_AT("%s: output does not validate: %s against %s", label, r.output, s);
            else checked++;
            for (size_t f = 0; f < r.n_fields; f++)
                T_TRUE(r.fields[f].n_tokens >= 1 && r.fields[f].p_min > 0 && r.fields[f].p_min <= r.fields[f].p_mean &&
                       r.fields[f].p_mean <= 1.0f + 1e-6f);
            json_decref(v);
            sl_extract_result_free(&r);
        }
        sl_extractor_free(x);
    }
    sl_ctx_free(ctx);
    json_decref(schema);
    return checked;
}

static void random_sampling_always_validates(void)
{
    struct sl_model *m = synth_model();
    int total = 0;
    for (size_t i = 0; i < N_SCHEMAS; i++) total += sample_and_validate(m, schemas[i], 8, "synth");
    fprintf(stderr, "  %d outputs over %zu schemas parsed and validated\n", total, N_SCHEMAS);
    T_EQ_INT(total, (int)N_SCHEMAS * 8);
}

/* The same on GPT-2's byte-level BPE vocabulary: multi-byte tokens that
 * straddle JSON structure ("\":", " {\"") must be handled by the mask. */
static void random_sampling_validates_with_a_bpe_vocab(void)
{
    const char *vpath = t_asset("tokenizers/ggml-vocab/ggml-vocab-gpt-2.gguf");
    struct sl_gguf *vg = NULL, *sg = NULL;
    struct sl_err err = {0};
    if (!vpath || sl_gguf_open(&vg, vpath, &err)) {
        t_skip("assets absent: tokenizers/ggml-vocab/ggml-vocab-gpt-2.gguf");
        return;
    }
    const struct sl_gguf_kv *tk = sl_gguf_find(vg, "tokenizer.ggml.tokens");
    struct sl_synth_params p = sl_synth_default_params();
    p.type = SL_TYPE_Q8_0;
    p.n_vocab = (int32_t)tk->arr_n;
    p.seed = 5;
    char wpath[4096];
    snprintf(wpath, sizeof wpath, "%s", t_tmp_path("schema_bpe_w.gguf"));
    T_OK(sl_synth_write(&p, wpath, NULL, NULL, &err), &err);
    T_OK(sl_gguf_open(&sg, wpath, &err), &err);
    struct sl_gguf_writer *w = sl_gguf_writer_init();
    for (uint64_t i = 0; i < sg->n_kv; i++)
        if (!(sg->kv[i].key.len >= 10 && !memcmp(sg->kv[i].key.ptr, "tokenizer.", 10))) sl_gguf_set_kv_from(w, &sg->kv[i]);
    for (uint64_t i = 0; i < vg->n_kv; i++)
        if (vg->kv[i].key.len >= 10 && !memcmp(vg->kv[i].key.ptr, "tokenizer.", 10)) sl_gguf_set_kv_from(w, &vg->kv[i]);
    for (uint64_t i = 0; i < sg->n_tensors; i++) {
        const struct sl_gguf_tensor *t = &sg->tensors[i];
        char tn[128];
        snprintf(tn, sizeof tn, "%.*s", (int)t->name.len, t->name.ptr);
        int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        T_OK(sl_gguf_add_tensor(w, tn, t->type, t->n_dims, ne, t->data, t->size, &err), &err);
    }
    const char *out = t_tmp_path("schema_bpe.gguf");
    T_OK(sl_gguf_writer_write(w, out, &err), &err);
    sl_gguf_writer_free(w);
    sl_gguf_free(sg);
    sl_gguf_free(vg);
    struct sl_model *m = NULL;
    T_OK(sl_model_load(&m, out, true, &err), &err);
    if (!m) return;
    int total = 0;
    for (size_t i = 0; i < N_SCHEMAS; i += 2) total += sample_and_validate(m, schemas[i], 2, "bpe");
    T_EQ_INT(total, (int)((N_SCHEMAS + 1) / 2) * 2);
    sl_model_free(m);
}

static void compiled_grammar_accepts_and_rejects_by_hand(void)
{
    struct sl_err err = {0};
    char *gt = NULL;
    const char *s = schemas[0];
    T_OK(sl_schema_text_to_grammar(s, strlen(s), NULL, &gt, &err), &err);
    struct sl_grammar *g = NULL;
    T_OK(sl_grammar_parse(&g, gt, strlen(gt), &err), &err);
    struct {
        const char *text;
        bool ok;
    } cases[] = {
        {"{\"name\":\"Ann\",\"age\":3}", true},
        {"{\"name\": \"\xC3\xA9\\n\", \"age\": -10}", true},
        {"{\"age\":3,\"name\":\"Ann\"}", false}, /* schema order */
        {"{\"name\":\"Ann\"}", false},           /* required */
        {"{\"name\":\"Ann\",\"age\":3.5}", false},
        {"{\"name\":\"Ann\",\"age\":03}", false},
        {"{\"name\":\"\xC0\xAF\",\"age\":1}", false}, /* overlong UTF-8 */
        {"{\"name\":\"\\u0041\",\"age\":1}", false},  /* no \u escapes */
        {"{\"name\":\"Ann\",\"age\":3,\"x\":1}", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct sl_grammar_state *st = NULL;
        T_OK(sl_grammar_state_init(&st, g, &err), &err);
        bool ok = st && sl_grammar_state_accept(st, cases[i].text, strlen(cases[i].text), &err) == 0 &&
                  sl_grammar_state_can_end(st);
        if (ok != cases[i].ok) T_FAIL_AT("'%s': grammar says %d, want %d", cases[i].text, ok, cases[i].ok);
        sl_grammar_state_free(st);
    }
    sl_grammar_free(g);
    free(gt);
}

static void expect_compile_error(const char *s, int code, const char *want)
{
    struct sl_err err = {0};
    char *gt = NULL;
    int rc = sl_schema_text_to_grammar(s, strlen(s), NULL, &gt, &err);
    T_EQ_INT(rc, code);
    if (rc && !strstr(err.msg, want)) T_FAIL_AT("error '%s' lacks '%s'", err.msg, want);
    T_TRUE(gt == NULL || rc == 0);
    free(gt);
}

static void unsupported_features_are_clear_compile_errors(void)
{
    expect_compile_error("{\"type\":\"string\",\"pattern\":\"^a\"}", SL_EUNSUPPORTED, "keyword 'pattern'");
    expect_compile_error("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\",\"minimum\":0}}}",
                         SL_EUNSUPPORTED, "at '/a': keyword 'minimum'");
    expect_compile_error("{\"oneOf\":[{\"type\":\"string\"}]}", SL_EUNSUPPORTED, "'oneOf'");
    expect_compile_error("{\"$ref\":\"#/x\"}", SL_EUNSUPPORTED, "'$ref'");
    expect_compile_error("{\"type\":\"object\",\"additionalProperties\":true}", SL_EUNSUPPORTED,
                         "additionalProperties");
    expect_compile_error("{\"type\":\"array\",\"items\":[{\"type\":\"string\"}]}", SL_EUNSUPPORTED, "tuple");
    expect_compile_error("{\"type\":\"strin\"}", SL_EFORMAT, "'type' must name JSON types");
    expect_compile_error("{\"type\":\"string\",\"maxLength\":-1}", SL_EFORMAT, "non-negative");
    expect_compile_error("{\"type\":\"string\",\"minLength\":5,\"maxLength\":2}", SL_EFORMAT, "below");
    expect_compile_error("{\"type\":\"object\",\"required\":[\"a\"]}", SL_EFORMAT, "required property 'a'");
    expect_compile_error("{\"type\":\"integer\",\"enum\":[\"a\"]}", SL_EFORMAT, "no 'enum'");
    expect_compile_error("{\"type\":\"string\",\"maxLength\":100000}", SL_ERANGE, "more than");
    expect_compile_error("[1,2]", SL_EFORMAT, "must be an object");
    expect_compile_error("{\"a\":", SL_EFORMAT, "not JSON");
    expect_compile_error("false", SL_EFORMAT, "accepts nothing");
    /* deep nesting is an error, not a stack overflow */
    char deep[4096] = "";
    for (int i = 0; i < 100; i++) strcat(deep, "{\"items\":");
    strcat(deep, "{}");
    for (int i = 0; i < 100; i++) strcat(deep, "}");
    expect_compile_error(deep, SL_ERANGE, "deeper than");
}

static void an_unfinished_answer_is_an_error(void)
{
    struct sl_model *m = synth_model();
    struct sl_err err = {0};
    json_t *schema = json_loads("{\"type\":\"string\",\"minLength\":50}", 0, NULL);
    struct sl_ctx_params cp = sl_ctx_default_params();
    cp.n_ctx = 512;
    cp.n_threads = 1;
    struct sl_ctx *ctx = NULL;
    T_OK(sl_ctx_init(&ctx, m, &cp, &err), &err);
    struct sl_extract_task t = sl_extract_default_task();
    t.schema = schema;
    t.max_tokens = 10;
    struct sl_extractor *x = NULL;
    struct sl_extract_result r;
    T_OK(sl_extractor_init(&x, ctx, &t, &err), &err);
    T_EQ_INT(sl_extract(x, "hi", &r, &err), SL_ERANGE);
    T_TRUE(strstr(err.msg, "max_tokens") != NULL);
    T_TRUE(r.output == NULL);
    sl_extractor_free(x);
    sl_ctx_free(ctx);
    json_decref(schema);
}

int main(void)
{
    T_RUN(compiled_grammar_accepts_and_rejects_by_hand);
    T_RUN(unsupported_features_are_clear_compile_errors);
    T_RUN(random_sampling_always_validates);
    T_RUN(random_sampling_validates_with_a_bpe_vocab);
    T_RUN(an_unfinished_answer_is_an_error);
    return t_done();
}
