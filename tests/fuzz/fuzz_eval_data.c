/*
 * fuzz_eval_data.c - libFuzzer target for the examples reader of `sluice
 * eval` (sl_eval_data_parse): JSONL and CSV, classify and extract. The
 * first byte picks the format (bit 0: CSV), the kind (bit 1: extract) and
 * renamed fields (bit 2: input "text", label "y", expected "x", id "key");
 * the rest is the file, copied into a buffer of its exact size so a read
 * past the end is an ASan error. A parse that succeeds must give examples
 * that keep the reader's promises (an id, unique; the input; the label or a
 * canonical expected object; the metadata as a JSON object).
 */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eval/run.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    unsigned mode = data[0];
    bool csv = mode & 1;
    enum sl_route_req_kind kind = mode & 2 ? SL_RREQ_EXTRACT : SL_RREQ_CLASSIFY;
    struct sl_eval_fields renamed = {"text", "y", "x", "key"};
    size_t len = size - 1;
    char *buf = malloc(len ? len : 1);
    if (!buf) return 0;
    memcpy(buf, data + 1, len);
    struct sl_eval_data d;
    struct sl_err err = {0};
    int rc = sl_eval_data_parse(&d, buf, len, csv, kind, mode & 4 ? &renamed : NULL, &err);
    if (rc == 0) {
        if (d.n == 0) abort(); /* "no examples" is an error */
        for (size_t i = 0; i < d.n; i++) {
            const struct sl_eval_example *e = &d.v[i];
            if (!e->id || !e->input || !e->meta) abort();
            if (kind == SL_RREQ_CLASSIFY ? !e->label : !e->expected) abort();
            json_t *m = json_loads(e->meta, 0, NULL);
            if (!json_is_object(m)) abort();
            json_decref(m);
            if (kind == SL_RREQ_EXTRACT) {
                json_t *x = json_loads(e->expected, 0, NULL);
                if (!json_is_object(x)) abort();
                json_decref(x);
            }
            for (size_t k = 0; k < e->n_kv; k++)
                if (!e->kv[k].key || !e->kv[k].value) abort();
            for (size_t j = 0; j < i && d.n < 512; j++)
                if (!strcmp(d.v[j].id, e->id)) abort(); /* ids are unique */
        }
        sl_eval_data_free(&d);
    } else if (rc > 0 || !err.msg[0] || d.n || d.v) {
        abort(); /* an error is negative, has a message and leaves nothing behind */
    }
    free(buf);
    return 0;
}
