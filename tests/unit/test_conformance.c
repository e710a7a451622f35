/*
 * test_conformance.c - the engine against llama.cpp's logits for tiny
 * random-weight models in every supported architecture and tensor type
 * (../shared/assets/conformance). Each case runs twice: the whole sequence
 * as one batch, and token by token through the KV cache; both must match
 * the reference within the case's NMSE and argmax-agreement thresholds.
 */
#include <jansson.h>

#include "engine/forward.h"
#include "engine/model.h"
#include "test.h"

struct result {
    double nmse;
    double argmax;
    double max_diff;
};

static int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* Evaluate tokens in chunks of `step` entries; compare with ref. */
static int run_case(const struct sl_model *m, const int32_t *toks, int n, int step, const float *ref,
                    struct result *r, float *first)
{
    struct sl_err err = {0};
    struct sl_ctx *ctx = NULL;
    struct sl_batch b;
    struct sl_ctx_params cp = sl_ctx_default_params();
    int V = m->hp.n_vocab, agree = 0;
    double num = 0, den = 0;
    cp.n_ctx = n;
    cp.n_batch = step;
    cp.n_threads = 2;
    T_OK(sl_ctx_init(&ctx, m, &cp, &err), &err);
    T_OK(sl_batch_init(&b, step), &err);
    if (!ctx) return -1;
    r->max_diff = 0;
    for (int s = 0; s < n; s += step) {
        sl_batch_clear(&b);
        for (int i = s; i < SL_MIN(n, s + step); i++) sl_batch_add(&b, toks[i], i, 0, true);
        T_OK(sl_decode(ctx, &b, &err), &err);
        for (int i = 0; i < b.n_tokens; i++) {
            const float *a = sl_ctx_logits(ctx, i), *e = ref + (size_t)(s + i) * V;
            if (s + i == 0) memcpy(first, a, 4 * sizeof(float));
            for (int j = 0; j < V; j++) {
                double d = (double)a[j] - e[j];
                num += d * d;
                den += (double)e[j] * e[j];
                if (fabs(d) > r->max_diff) r->max_diff = fabs(d);
            }
            agree += argmax(a, V) == argmax(e, V);
        }
    }
    r->nmse = num / den;
    r->argmax = (double)agree / n;
    sl_batch_free(&b);
    sl_ctx_free(ctx);
    return 0;
}

static void conformance_cases_match_llama_cpp(void)
{
    const char *dir = t_asset("conformance");
    if (!dir) {
        t_skip("../shared/assets absent: conformance cases not run");
        return;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/cases.json", dir);
    json_error_t jerr;
    json_t *cases = json_load_file(path, 0, &jerr);
    T_TRUE(cases && json_is_array(cases));
    if (!cases) return;
    size_t ci;
    json_t *c;
    int n_cases = 0;
    json_array_foreach(cases, ci, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        const char *model = json_string_value(json_object_get(c, "model"));
        const char *logits = json_string_value(json_object_get(c, "logits"));
        double nmse_max = json_number_value(json_object_get(c, "nmse_max"));
        double argmax_min = json_number_value(json_object_get(c, "argmax_min"));
        json_t *jt = json_object_get(c, "tokens");
        int n = (int)json_array_size(jt);
        int32_t toks[256];
        struct sl_err err = {0};
        struct sl_model *m = NULL;
        size_t len = 0;
        float *ref;

        T_TRUE(name && model && logits && n > 0 && n <= 256);
        if (!name || !model || !logits || n <= 0 || n > 256) continue;
        for (int i = 0; i < n; i++) toks[i] = (int32_t)json_integer_value(json_array_get(jt, (size_t)i));
        snprintf(path, sizeof path, "%s/%s", dir, logits);
        ref = (float *)t_read_file(path, &len);
        snprintf(path, sizeof path, "%s/%s", dir, model);
        T_OK(sl_model_load(&m, path, true, &err), &err);
        T_TRUE(ref != NULL);
        if (m && ref) {
            T_EQ_INT(len, (size_t)n * (size_t)m->hp.n_vocab * sizeof(float));
            struct result rb, rs;
            float fb[4], fs[4];
            run_case(m, toks, n, n, ref, &rb, fb);
            run_case(m, toks, n, 1, ref, &rs, fs);
            bool ok = rb.nmse <= nmse_max && rs.nmse <= nmse_max && rb.argmax >= argmax_min &&
                      rs.argmax >= argmax_min;
            fprintf(stderr, "%s %-26s batch nmse %.2e argmax %.2f | sequential nmse %.2e argmax %.2f | max %.1e\n",
                    ok ? "  ok" : "  BAD", name, rb.nmse, rb.argmax, rs.nmse, rs.argmax, nmse_max);
            if (!ok)
                T_FAIL_AT("%s: max |diff| %.3g (batch) %.3g (sequential); first logits %.5f %.5f %.5f "
                          "%.5f vs ref %.5f %.5f %.5f %.5f",
                          name, rb.max_diff, rs.max_diff, fb[0], fb[1], fb[2], fb[3], ref[0], ref[1],
                          ref[2], ref[3]);
            n_cases++;
        }
        free(ref);
        sl_model_free(m);
    }
    T_EQ_INT(n_cases, json_array_size(cases));
    json_decref(cases);
}

int main(void)
{
    T_RUN(conformance_cases_match_llama_cpp);
    return t_done();
}
