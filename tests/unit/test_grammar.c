/*
 * test_grammar.c - the byte grammar and its sampler stage
 * (src/engine/grammar.c): parsing, matching, error messages, and the token
 * mask checked against a brute-force byte-by-byte match of every token.
 */
#include <time.h>

#include "engine/gguf.h"
#include "engine/grammar.h"
#include "engine/vocab.h"
#include "test.h"

static struct sl_grammar *parse(const char *text)
{
    struct sl_grammar *g = NULL;
    struct sl_err err = {0};
    T_OK(sl_grammar_parse(&g, text, strlen(text), &err), &err);
    return g;
}

/* Does the grammar accept s as a complete sentence? */
static bool full_match(const struct sl_grammar *g, const char *s)
{
    struct sl_grammar_state *st = NULL;
    struct sl_err err = {0};
    if (sl_grammar_state_init(&st, g, &err)) return false;
    bool ok = sl_grammar_state_accept(st, s, strlen(s), &err) == 0 && sl_grammar_state_can_end(st);
    sl_grammar_state_free(st);
    return ok;
}

static void literals_classes_and_repeats_match(void)
{
    struct sl_grammar *g = parse("root ::= \"a\" [0-9]{2,3} tail # comment\n"
                                 "tail ::= ( \"x\" | [^a-z\\n] )* \"!\"?\n");
    if (!g) return;
    T_TRUE(full_match(g, "a12"));
    T_TRUE(full_match(g, "a123"));
    T_TRUE(!full_match(g, "a1"));
    T_TRUE(!full_match(g, "a12a")); /* a is in a-z */
    T_TRUE(full_match(g, "a12xX!"));
    T_TRUE(!full_match(g, "a12y"));
    T_TRUE(!full_match(g, "b12"));
    sl_grammar_free(g);
    g = parse("root ::= item+ \nitem ::= \"ab\" | \"c\"\n");
    T_TRUE(full_match(g, "abcab"));
    T_TRUE(!full_match(g, ""));
    T_TRUE(!full_match(g, "abca"));
    sl_grammar_free(g);
    g = parse("root ::= \"\\x41\\\"\\\\\" [\\x80-\\xFF]? .");
    T_TRUE(full_match(g, "A\"\\z"));
    T_TRUE(full_match(g, "A\"\\\xC3\xA9"));
    sl_grammar_free(g);
}

static void a_prefix_can_continue_and_a_sentence_can_end(void)
{
    struct sl_grammar *g = parse("root ::= \"ab\" \"c\"?");
    struct sl_grammar_state *st = NULL;
    struct sl_err err = {0};
    T_OK(sl_grammar_state_init(&st, g, &err), &err);
    T_OK(sl_grammar_state_accept(st, "a", 1, &err), &err);
    T_TRUE(!sl_grammar_state_can_end(st) && sl_grammar_state_can_continue(st));
    T_OK(sl_grammar_state_accept(st, "b", 1, &err), &err);
    T_TRUE(sl_grammar_state_can_end(st) && sl_grammar_state_can_continue(st));
    T_EQ_INT(sl_grammar_state_accept(st, "x", 1, &err), SL_EINVAL);
    T_TRUE(sl_grammar_state_can_end(st)); /* a rejected byte leaves the state alone */
    T_OK(sl_grammar_state_accept(st, "c", 1, &err), &err);
    T_TRUE(sl_grammar_state_can_end(st) && !sl_grammar_state_can_continue(st));
    sl_grammar_state_reset(st);
    T_TRUE(!sl_grammar_state_can_end(st));
    sl_grammar_state_free(st);
    sl_grammar_free(g);
}

static void expect_parse_error(const char *text, int code, const char *want)
{
    struct sl_grammar *g = NULL;
    struct sl_err err = {0};
    int rc = sl_grammar_parse(&g, text, strlen(text), &err);
    T_EQ_INT(rc, code);
    if (rc && !strstr(err.msg, want)) T_FAIL_AT("error '%s' lacks '%s'", err.msg, want);
    sl_grammar_free(g);
}

static void syntax_errors_name_line_and_column(void)
{
    expect_parse_error("root ::= \"a\"\nx = \"b\"", SL_EFORMAT, "line 2 col 3");
    expect_parse_error("root ::= \"a", SL_EFORMAT, "unterminated literal");
    expect_parse_error("root ::= [a-", SL_EFORMAT, "line 1");
    expect_parse_error("root ::= (\"a\"", SL_EFORMAT, "expected ')'");
    expect_parse_error("root ::= \"a\"{3,1}", SL_EFORMAT, "n < m");
    expect_parse_error("root ::= \"a\"{99999}", SL_ERANGE, "too large");
    expect_parse_error("root ::= \"\\q\"", SL_EFORMAT, "unknown escape");
    expect_parse_error("root ::= foo", SL_ENOTFOUND, "rule 'foo' (line 1) is not defined");
    expect_parse_error("top ::= \"a\"", SL_ENOTFOUND, "no rule named 'root'");
    expect_parse_error("root ::= \"a\"\nroot ::= \"b\"", SL_EFORMAT, "defined twice");
    expect_parse_error("root ::= \"a\" )", SL_EFORMAT, "unbalanced");
}

static void left_recursion_is_an_error_not_a_hang(void)
{
    struct sl_grammar *g = parse("root ::= root \"a\" | \"b\"");
    struct sl_grammar_state *st = NULL;
    struct sl_err err = {0};
    T_EQ_INT(sl_grammar_state_init(&st, g, &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "left recursion") != NULL);
    T_TRUE(st == NULL);
    sl_grammar_free(g);
}

/* The stage's mask must equal a byte-by-byte match of every token text. */
static void check_mask(const struct sl_vocab *v, const char *grammar, const char *prefix0,
                       const char *extra, int stride)
{
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s%s", prefix0, extra ? extra : "");
    struct sl_grammar *g = parse(grammar);
    struct sl_err err = {0};
    struct sl_sampler_stage stage;
    if (!g) return;
    T_OK(sl_grammar_stage_init(&stage, g, v, &err), &err);
    int32_t V = sl_vocab_n_tokens(v);
    /* feed the prefix through a model-free token path: accept bytes via a token per byte */
    struct sl_grammar_state *ref = NULL;
    T_OK(sl_grammar_state_init(&ref, g, &err), &err);
    T_OK(sl_grammar_state_accept(ref, prefix, strlen(prefix), &err), &err);
    /* the stage's own state: feed the same bytes (directly, it is ours to read) */
    struct sl_grammar_state *sst = (struct sl_grammar_state *)sl_grammar_stage_state(stage.ctx);
    struct sl_token_data *d = malloc((size_t)V * sizeof *d);
    struct sl_token_array cur;
    struct timespec t0, t1;
    /* with extra: mask at prefix0 first, then extra bytes, then the mask again
       (a recurring state is served from the stage's cache) */
    for (int pass = extra ? 0 : 1; pass < 2; pass++) {
        const char *feed = pass == 0 ? prefix0 : (extra ? extra : prefix);
        T_OK(sl_grammar_state_accept(sst, feed, strlen(feed), &err), &err);
        for (int32_t i = 0; i < V; i++) d[i] = (struct sl_token_data){i, 0.0f, 0.0f};
        cur = (struct sl_token_array){d, (size_t)V, 0, -1};
        clock_gettime(CLOCK_MONOTONIC, &t0);
        T_OK(stage.iface->apply(stage.ctx, &cur, &err), &err);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        fprintf(stderr, "  mask over %d tokens after \"%s\": %zu allowed, %.2f ms\n", V,
                pass == 0 ? prefix0 : prefix, cur.size,
                (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    }
    uint8_t *in = calloc((size_t)V, 1);
    for (size_t i = 0; i < cur.size; i++) in[cur.data[i].id] = 1;
    int mismatches = 0;
    char piece[512];
    for (int32_t t = 0; t < V; t += stride) {
        int n = sl_token_to_piece(v, t, piece, sizeof piece, false);
        bool want;
        if (sl_vocab_is_eog(v, t)) {
            want = sl_grammar_state_can_end(ref);
        } else if (n <= 0) {
            want = false;
        } else {
            struct sl_grammar_state *st = NULL;
            sl_grammar_state_init(&st, g, &err);
            want = sl_grammar_state_accept(st, prefix, strlen(prefix), &err) == 0 &&
                   sl_grammar_state_accept(st, piece, (size_t)n, &err) == 0;
            sl_grammar_state_free(st);
        }
        if (want != (in[t] != 0) && mismatches++ < 5)
            T_FAIL_AT("token %d '%.*s': brute force says %d, mask says %d", t, n > 0 ? n : 0, piece, want,
                      in[t]);
    }
    T_EQ_INT(mismatches, 0);
    free(in);
    free(d);
    sl_grammar_state_free(ref);
    stage.iface->free(stage.ctx);
    sl_grammar_free(g);
}

static const char *json_like =
    "root ::= \"{\" ws \"\\\"name\\\"\" \":\" ws str \",\" ws \"\\\"age\\\"\" \":\" ws [0-9]{1,3} \"}\"\n"
    "ws ::= \" \"?\n"
    "str ::= \"\\\"\" [^\"\\\\]* \"\\\"\"\n";

static void mask_equals_brute_force_on_gpt2_vocab(void)
{
    const char *path = t_asset("tokenizers/ggml-vocab/ggml-vocab-gpt-2.gguf");
    struct sl_gguf *gg = NULL;
    struct sl_vocab *v = NULL;
    struct sl_err err = {0};
    if (!path || sl_gguf_open(&gg, path, &err)) {
        t_skip("assets absent: tokenizers/ggml-vocab/ggml-vocab-gpt-2.gguf");
        return;
    }
    T_OK(sl_vocab_load(&v, gg, &err), &err);
    if (v) {
        check_mask(v, json_like, "", NULL, 3);
        check_mask(v, json_like, "{\"name\": \"Jo", NULL, 3);
        check_mask(v, json_like, "{\"name\": \"Jo", "hn \xC3\xA9", 3); /* same state: cached */
        check_mask(v, json_like, "{\"name\": \"Jo\", \"age\":", NULL, 3);
        check_mask(v, json_like, "{\"name\": \"Jo\", \"age\": 1", "2", 3); /* new state */
        check_mask(v, json_like, "{\"name\": \"Jo\", \"age\": 123}", NULL, 3);
    }
    sl_vocab_free(v);
    sl_gguf_free(gg);
}

int main(void)
{
    T_RUN(literals_classes_and_repeats_match);
    T_RUN(a_prefix_can_continue_and_a_sentence_can_end);
    T_RUN(syntax_errors_name_line_and_column);
    T_RUN(left_recursion_is_an_error_not_a_hang);
    T_RUN(mask_equals_brute_force_on_gpt2_vocab);
    return t_done();
}
