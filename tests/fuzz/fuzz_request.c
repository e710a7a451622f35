/*
 * fuzz_request.c - libFuzzer target for OpenAI request bodies: JSON ->
 * struct sl_req for chat, completions and embeddings. The first byte picks
 * the kind and the limits, the rest is the body.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "server/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    enum sl_req_kind kind = (enum sl_req_kind)(data[0] % 5);
    struct sl_req_limits lim = {.max_n = 1 + (data[0] >> 2) % 16, .max_inputs = 1 + (data[0] >> 4) % 8};
    struct sl_req r;
    struct sl_err err = {0};
    int rc = sl_req_parse(&r, kind, (const char *)data + 1, size - 1, &lim, &err);
    if (rc == 0) { /* touch what a route reads */
        volatile size_t sink = 0;
        for (size_t i = 0; i < r.n_msgs; i++)
            sink += strlen(r.msgs[i].role) + strlen(r.msgs[i].content);
        for (size_t i = 0; i < r.n_prompts; i++)
            sink += r.prompts[i].text ? r.prompts[i].text_len : r.prompts[i].n_ids;
        for (size_t i = 0; i < r.n_stop; i++)
            sink += strlen(r.stop[i]);
        (void)sink;
    }
    sl_req_free(&r);
    return 0;
}
