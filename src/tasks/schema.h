/*
 * schema.h - JSON Schema (a subset) compiled to a grammar (tasks layer).
 *
 * The grammar (engine/grammar.h format) accepts exactly the compact-ish JSON
 * texts that validate against the schema, within the supported subset:
 *
 *   type: object, string, number, integer, boolean, null, array, or a list
 *         of these; properties (in schema order), required,
 *         additionalProperties: false (the default for output: absent means
 *         false); string minLength/maxLength (code points) and enum/const;
 *         array items, minItems/maxItems; enum and const of any JSON values;
 *         anyOf; nested objects and arrays; {} or true for any JSON value.
 *   Annotations are ignored: title, description, default, examples,
 *   $schema, $id, $comment, format.
 *
 * Every other keyword (pattern, minimum, oneOf, $ref, ...) is a compile
 * error naming the keyword and where it is (SL_EUNSUPPORTED), so a task
 * that cannot be enforced fails at config load, not at run time.
 *
 * Output shape: no whitespace except one optional space after '[', ',' and
 * ':'; strings without \u escapes (other escapes and raw UTF-8 are fine);
 * numbers with at most 16 integer digits, 16 fraction digits and a 2-digit
 * exponent.
 *
 * Pure functions: thread-safe.
 */
#ifndef SL_SCHEMA_H
#define SL_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/err.h"

#define SL_SCHEMA_MAX_DEPTH 32     /* nesting of schemas */
#define SL_SCHEMA_MAX_BYTES (1u << 20)

struct sl_schema_opts {
    int32_t max_string; /* code points of a string without maxLength; 0 = unbounded */
    int32_t max_items;  /* items of an array without maxItems; 0 = unbounded */
};

/* max_string 0, max_items 0 (unbounded: generation stops at max tokens). */
struct sl_schema_opts sl_schema_default_opts(void);

/* Compile schema to grammar text (malloc'd, NUL-terminated, caller frees).
 * opts may be NULL. Errors: SL_EFORMAT (not a schema: a bad value for a
 * keyword), SL_EUNSUPPORTED (a keyword outside the subset; the message has
 * its JSON pointer), SL_ERANGE (too deep, or a bound over the grammar's
 * repeat limit), SL_ENOMEM. */
int sl_schema_to_grammar(const json_t *schema, const struct sl_schema_opts *opts, char **out,
                         struct sl_err *err);

/* The same from JSON text. */
int sl_schema_text_to_grammar(const char *text, size_t len, const struct sl_schema_opts *opts,
                              char **out, struct sl_err *err);

#endif
