/*
 * fuzz_schema.c - libFuzzer target for the JSON Schema compiler
 * (src/tasks/schema.c) and the grammar parser and matcher it feeds
 * (src/engine/grammar.c). The first byte chooses the mode:
 *
 *   bit 2 clear: the rest is a schema. Compiling must give 0 or an error,
 *                never a crash; a schema that compiles must give a grammar
 *                that parses (anything else is our bug: abort). Bits 0 and
 *                1 set the max_string / max_items options.
 *   bit 2 set:   the rest is grammar text, then (after a NUL) bytes fed
 *                to a matcher: parse, start, accept must return errors, not
 *                crash or hang.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/grammar.h"
#include "tasks/schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sl_err err = {0};
    if (size < 1) return 0;
    uint8_t flags = data[0];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    if (!(flags & 4)) {
        struct sl_schema_opts o = sl_schema_default_opts();
        if (flags & 1) o.max_string = 8;
        if (flags & 2) o.max_items = 3;
        char *g = NULL;
        if (sl_schema_text_to_grammar(text, len, &o, &g, &err) != 0) return 0;
        struct sl_grammar *gr = NULL;
        if (sl_grammar_parse(&gr, g, strlen(g), &err) != 0) {
            fprintf(stderr, "compiled grammar does not parse: %s\n%s\n", err.msg, g);
            abort();
        }
        struct sl_grammar_state *st = NULL;
        if (sl_grammar_state_init(&st, gr, &err) == 0) {
            /* a valid beginning of every object/array/string output */
            sl_grammar_state_accept(st, "{", 1, &err);
            sl_grammar_state_free(st);
        }
        sl_grammar_free(gr);
        free(g);
        return 0;
    }
    const char *nul = memchr(text, 0, len);
    size_t glen = nul ? (size_t)(nul - text) : len;
    struct sl_grammar *gr = NULL;
    if (sl_grammar_parse(&gr, text, glen, &err) != 0) return 0;
    struct sl_grammar_state *st = NULL;
    if (sl_grammar_state_init(&st, gr, &err) == 0) {
        if (nul) {
            const char *in = nul + 1;
            size_t n = len - glen - 1;
            for (size_t i = 0; i < n; i++)
                if (sl_grammar_state_accept(st, in + i, 1, &err) != 0) break;
            (void)sl_grammar_state_can_end(st);
        }
        sl_grammar_state_free(st);
    }
    sl_grammar_free(gr);
    return 0;
}
