/*
 * fuzz_pii.c - libFuzzer target for the PII detector and redaction
 * (src/router/privacy.c). The first byte switches built-in kinds on/off and
 * whether a configured pattern is used. Spans must be sorted, disjoint and
 * inside the text; redacting then restoring must give the text back when
 * the text itself holds no placeholder-like "[".
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router/privacy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct sl_pii_detector *dets[2];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (!dets[0]) {
        struct sl_pii_params p = sl_pii_default_params();
        struct sl_pii_pattern pat[] = {{"EMP", "EMP-\\d{3,6}"}, {"NEST", "(a|b)*c"}};
        if (sl_pii_detector_new(&dets[0], &p, NULL)) abort();
        p.patterns = pat;
        p.n_patterns = 2;
        if (sl_pii_detector_new(&dets[1], &p, NULL)) abort();
    }
    const struct sl_pii_detector *d = dets[data[0] & 1];
    const char *t = (const char *)data + 1;
    size_t len = size - 1;
    struct sl_pii_span s[64];
    size_t n = 0;
    struct sl_err err = {0};
    if (sl_pii_scan(d, t, len, s, 64, &n, &err)) return 0;
    for (size_t k = 0; k < n; k++) {
        if (s[k].len == 0 || s[k].start > len || s[k].len > len - s[k].start) abort();
        if (k && s[k].start < s[k - 1].start + s[k - 1].len) abort();
    }
    struct sl_pii_map map;
    sl_pii_map_init(&map);
    char *red = NULL, *back = NULL;
    size_t rl = 0, bl = 0;
    if (sl_pii_redact(d, t, len, s, n, &map, &red, &rl, &err) == 0) {
        if (sl_pii_restore(&map, red, rl, &back, &bl, &err) == 0) {
            if (!memchr(t, '[', len) && (bl != len || memcmp(back, t, len))) abort();
        }
    }
    free(red);
    free(back);
    sl_pii_map_free(&map);
    return 0;
}
