/*
 * grammar.h - context-free grammars over bytes, and a sampler stage that
 * only lets through tokens the grammar accepts (engine layer).
 *
 * The text format is a subset of llama.cpp's GBNF:
 *
 *   root  ::= "{" ws pair ( "," ws pair )* "}"    # comment
 *   pair  ::= [a-z]+ ":" [0-9]{1,3}
 *   ws    ::= " "?
 *
 * rules `name ::= alternatives`; literals "..." and byte classes [a-z] [^"\\]
 * with escapes \n \r \t \\ \" \' \[ \] \- \/ and \xHH; `.` (any byte);
 * groups ( ... ); postfix * + ? {m} {m,} {m,n}; `|` alternatives; newlines
 * are whitespace. The grammar works on BYTES: a literal's UTF-8 text is its
 * byte sequence, a class matches one byte (write multi-byte characters as
 * sequences of classes). Left recursion is an error (found when the
 * matcher first meets it). The grammar knows nothing of JSON: the JSON
 * Schema compiler (src/tasks/schema.c) writes grammars in this format.
 *
 * Matching follows llama.cpp's llama-grammar: the matcher keeps a set of
 * pushdown stacks, one per way the bytes so far can be parsed. The sampler
 * stage checks candidate tokens by walking their bytes through that set,
 * in lexicographic order of token text so tokens sharing a prefix share
 * the work, and a dead prefix rejects every token under it at once. The
 * stage keeps the masks of its last SL_GRAMMAR_MASK_CACHE states: inside an
 * unbounded string the state recurs and the mask is a copy.
 *
 * A parsed grammar is immutable (share it between threads); a matcher state
 * or a stage is used by one thread at a time.
 */
#ifndef SL_GRAMMAR_H
#define SL_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/err.h"
#include "sampler.h"
#include "vocab.h"

#define SL_GRAMMAR_MAX_TEXT (4u << 20)  /* bytes of grammar text */
#define SL_GRAMMAR_MAX_RULES 200000     /* rules, generated ones included */
#define SL_GRAMMAR_MAX_ELEMS 4000000    /* elements of all rules */
#define SL_GRAMMAR_MAX_REPEAT 10000     /* m, n in {m,n} */
#define SL_GRAMMAR_MAX_NEST 256         /* nested ( ) */
#define SL_GRAMMAR_MAX_STACKS 4096      /* live parses at once */
#define SL_GRAMMAR_MAX_DEPTH 4096       /* depth of one parse stack */
#define SL_GRAMMAR_MAX_TOKEN_BYTES 256  /* longer tokens are never allowed */
#define SL_GRAMMAR_MASK_CACHE 8         /* masks of recent states a stage keeps */

struct sl_grammar;
struct sl_grammar_state;

/* Parse text[0..len); the start rule is `root`. Errors: SL_EFORMAT with the
 * line and column ("grammar: line 3 col 7: expected '::='"), SL_ENOTFOUND
 * for an undefined rule or no root, SL_ERANGE past the limits, SL_ENOMEM.
 * The caller owns *out (sl_grammar_free). */
int sl_grammar_parse(struct sl_grammar **out, const char *text, size_t len, struct sl_err *err);
void sl_grammar_free(struct sl_grammar *g);
size_t sl_grammar_n_rules(const struct sl_grammar *g);

/* A matcher at the start of the grammar. g must outlive it. Errors:
 * SL_EINVAL for left recursion, SL_ERANGE past SL_GRAMMAR_MAX_STACKS. */
int sl_grammar_state_init(struct sl_grammar_state **out, const struct sl_grammar *g,
                          struct sl_err *err);
void sl_grammar_state_free(struct sl_grammar_state *st);
/* Back to the start. */
void sl_grammar_state_reset(struct sl_grammar_state *st);
/* Consume bytes. SL_EINVAL (state unchanged) when the grammar rejects them. */
int sl_grammar_state_accept(struct sl_grammar_state *st, const char *s, size_t n,
                            struct sl_err *err);
/* True when the bytes so far are a complete sentence of the grammar. */
bool sl_grammar_state_can_end(const struct sl_grammar_state *st);
/* True when some byte can still follow. */
bool sl_grammar_state_can_continue(const struct sl_grammar_state *st);

/*
 * A sampler stage constraining tokens to g (insert it with
 * sl_sampler_insert(s, SL_SAMPLER_POS_AFTER_PENALTIES, stage, err)). It
 * precomputes every token's bytes from v (control tokens have none and are
 * never allowed; end-of-generation tokens are allowed exactly when the
 * grammar can end). apply() removes rejected candidates; accept() advances
 * the matcher. g and v must outlive the stage. Allocates at init and when
 * the matcher needs more room; errors from apply: SL_EINVAL when no token
 * can continue the text.
 */
int sl_grammar_stage_init(struct sl_sampler_stage *out, const struct sl_grammar *g,
                          const struct sl_vocab *v, struct sl_err *err);

/* For the stage's owner (the stage ctx from sl_grammar_stage_init; valid
 * while the sampler that owns it lives): */
/* log(sum exp(logit)) over the candidates the last apply() allowed. */
double sl_grammar_stage_allowed_lse(const void *stage_ctx);
/* True when the grammar accepted an end-of-generation token or can take
 * no further byte: generation is over. */
bool sl_grammar_stage_done(const void *stage_ctx);
/* The matcher (read-only). */
const struct sl_grammar_state *sl_grammar_stage_state(const void *stage_ctx);

#endif
