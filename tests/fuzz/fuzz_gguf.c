/*
 * fuzz_gguf.c - libFuzzer target for the GGUF reader and the model loader.
 *
 * The input is a GGUF file. It is parsed; when it parses, every metadata
 * getter and every tensor view is exercised, and the model loader binds it
 * (which validates architecture, shapes and types) and, if that succeeds,
 * runs one token through the forward pass; the classification-head loader
 * (train/head.h) reads it too and, if it loads, classifies one vector.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/forward.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "train/head.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy so ASan catches any read past the end */
    uint8_t *buf = malloc(size ? size : 1);
    struct sl_gguf *g = NULL;
    struct sl_err err = {0};
    if (!buf) return 0;
    memcpy(buf, data, size);
    if (sl_gguf_open_mem(&g, buf, size, &err) == 0) {
        volatile uint64_t sink = 0;
        for (uint64_t i = 0; i < g->n_kv; i++) {
            char key[256];
            const struct sl_gguf_kv *kv = &g->kv[i];
            size_t n = kv->key.len < sizeof key - 1 ? kv->key.len : sizeof key - 1;
            uint32_t u;
            int64_t v;
            float f;
            bool b;
            struct sl_str s;
            struct sl_str *arr;
            uint64_t na;
            memcpy(key, kv->key.ptr, n);
            key[n] = 0;
            sl_gguf_get_u32(g, key, &u, &err);
            sl_gguf_get_i64(g, key, &v, &err);
            sl_gguf_get_f32(g, key, &f, &err);
            sl_gguf_get_bool(g, key, &b, &err);
            if (sl_gguf_get_str(g, key, &s, &err) == 0 && s.len) sink += (uint8_t)s.ptr[s.len - 1];
            if (sl_gguf_get_str_arr(g, key, &arr, &na, &err) == 0) {
                for (uint64_t k = 0; k < na; k++)
                    if (arr[k].len) sink += (uint8_t)arr[k].ptr[arr[k].len - 1];
                free(arr);
            }
        }
        for (uint64_t i = 0; i < g->n_tensors; i++)
            if (g->tensors[i].size) sink += ((const uint8_t *)g->tensors[i].data)[g->tensors[i].size - 1];
        (void)sink;
        struct sl_head h;
        if (sl_head_load_gguf(&h, g, "fuzz", &err) == 0) {
            float x[256] = {0}, *p = malloc((size_t)h.n_out * sizeof *p);
            if (p && h.n_in <= 256 && (size_t)h.n_hidden * (size_t)h.n_members <= 4096) sl_head_classify(&h, x, p);
            free(p);
            sl_head_free(&h);
        }
        struct sl_model *m = NULL;
        if (sl_model_load_gguf(&m, g, true, &err) == 0) {
            /* small models only: the fuzzer should not spend its time in matmuls */
            if ((uint64_t)m->hp.n_embd * (uint64_t)m->hp.n_vocab < (1u << 20) && m->hp.n_layer <= 4 &&
                m->hp.n_ff <= 4096) {
                struct sl_ctx *ctx = NULL;
                struct sl_ctx_params cp = sl_ctx_default_params();
                cp.n_ctx = 8;
                cp.n_batch = 2;
                cp.n_threads = 1;
                if (sl_ctx_init(&ctx, m, &cp, &err) == 0) {
                    struct sl_batch b;
                    if (sl_batch_init(&b, 2) == 0) {
                        sl_batch_add(&b, 1 % m->hp.n_vocab, 0, 0, false);
                        sl_batch_add(&b, 2 % m->hp.n_vocab, 1, 0, true);
                        sl_decode(ctx, &b, &err);
                        sl_batch_free(&b);
                    }
                    sl_ctx_free(ctx);
                }
            }
            sl_model_free(m);
        }
        /* sl_model_load_gguf took ownership of g */
    }
    free(buf);
    return 0;
}
