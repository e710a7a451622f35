/*
 * privacy.h - PII detection, redaction and the per-route privacy decision
 * (router layer).
 *
 * Built-in kinds (each a hand-written scanner with its checksum, see
 * docs/router.md for the exact rules): e-mail addresses, phone numbers
 * (E.164 "+..." and national forms), payment card numbers (IIN prefix +
 * Luhn, spaces or dashes allowed), IBANs (length per country + mod-97), US
 * SSN, UK National Insurance numbers, German tax ids (ISO 7064 check digit)
 * and French INSEE/NIR numbers (mod-97 key). Configurable patterns are
 * PCRE2 regular expressions compiled once, matched with match/depth/heap
 * limits.
 *
 *   struct sl_pii_detector *d;  sl_pii_detector_new(&d, &params, &err);
 *   sl_pii_scan(d, text, len, spans, SL_PII_MAX_SPANS, &n, &err);
 *   sl_pii_redact(d, text, len, spans, n, &map, &out, &out_len, &err);
 *   ... send out upstream, get the answer ...
 *   sl_pii_restore(&map, answer, answer_len, &restored, &rlen, &err);
 *
 * A detector is immutable after new(): thread-safe to scan from any thread.
 * A map belongs to one request (not thread-safe).
 */
#ifndef SL_PRIVACY_H
#define SL_PRIVACY_H

#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"

enum sl_pii_kind {
    SL_PII_EMAIL = 0,
    SL_PII_PHONE,
    SL_PII_CARD,
    SL_PII_IBAN,
    SL_PII_SSN_US,
    SL_PII_NINO_UK,
    SL_PII_TAXID_DE,
    SL_PII_INSEE_FR,
    SL_PII_CUSTOM, /* a configured pattern: see span.pattern */
    SL_PII_KIND_COUNT
};

/* Limits: text scanned at once, spans per text, configured patterns. */
#define SL_PII_MAX_TEXT (8u << 20)
#define SL_PII_MAX_SPANS 512
#define SL_PII_MAX_PATTERNS 32
#define SL_PII_LABEL_MAX 32
/* PCRE2 limits per match of a configured pattern. */
#define SL_PII_MATCH_LIMIT 100000
#define SL_PII_DEPTH_LIMIT 2000
#define SL_PII_HEAP_LIMIT_KB 4096

struct sl_pii_span {
    size_t start, len; /* bytes of the scanned text */
    enum sl_pii_kind kind;
    int pattern; /* index of the configured pattern, -1 for built-ins */
};

/* A configured pattern: label [A-Z0-9_]{1,31} names its placeholders. */
struct sl_pii_pattern {
    const char *label; /* "EMPLOYEE_ID" -> [EMPLOYEE_ID_1] */
    const char *regex; /* PCRE2 syntax, UTF-8 */
};

struct sl_pii_params {
    unsigned kinds; /* bit (1u << kind) per built-in kind to detect; default all */
    const struct sl_pii_pattern *patterns; /* borrowed during new() only */
    size_t n_patterns;
};

struct sl_pii_params sl_pii_default_params(void);

struct sl_pii_detector;

/* Compiles the patterns. On a bad regex: SL_EINVAL with the pattern label,
 * the PCRE2 message and the offset in err. */
int sl_pii_detector_new(struct sl_pii_detector **out, const struct sl_pii_params *p,
                        struct sl_err *err);
void sl_pii_detector_free(struct sl_pii_detector *d);

/* Finds PII in text[0..len) (any bytes; invalid UTF-8 is fine). Spans come
 * back sorted by start and never overlap (the longer one wins).
 * SL_ERANGE when the text is longer than SL_PII_MAX_TEXT, when more than
 * max_spans are found, or when a configured pattern hits its match limit:
 * treat that as "contains PII" (fail closed). */
int sl_pii_scan(const struct sl_pii_detector *d, const char *text, size_t len,
                struct sl_pii_span *spans, size_t max_spans, size_t *n_spans, struct sl_err *err);

/* Label of a span's kind: "EMAIL", "PHONE", ... or the pattern's label. */
const char *sl_pii_label(const struct sl_pii_detector *d, const struct sl_pii_span *s);
const char *sl_pii_kind_name(enum sl_pii_kind k);

/* ----------------------------------------------------------------- redaction */

struct sl_pii_entry {
    char label[SL_PII_LABEL_MAX];
    int number;  /* the N of [LABEL_N] */
    char *value; /* owned copy of the original text */
    size_t len;
    char *placeholder; /* owned: "[LABEL_N]" */
};

/* The placeholders of one request. The same value gets the same
 * placeholder across every text redacted with one map. */
struct sl_pii_map {
    struct sl_pii_entry *e;
    size_t n, cap;
};

void sl_pii_map_init(struct sl_pii_map *m);
void sl_pii_map_free(struct sl_pii_map *m);

/* Writes text with each span replaced by its placeholder into *out
 * (malloc'd, NUL-terminated; caller frees) and records new entries in map.
 * On failure *out is NULL and map holds only what it held before. */
int sl_pii_redact(const struct sl_pii_detector *d, const char *text, size_t len,
                  const struct sl_pii_span *spans, size_t n_spans, struct sl_pii_map *map,
                  char **out, size_t *out_len, struct sl_err *err);

/* Replaces every placeholder of map found in text by its original value
 * (the model echoing "[EMAIL_1]" gets the address back). *out is malloc'd.
 * Text that merely looks like a placeholder but is not in map stays. */
int sl_pii_restore(const struct sl_pii_map *map, const char *text, size_t len, char **out,
                   size_t *out_len, struct sl_err *err);

/* Restoring a streamed answer: a placeholder may be split across chunks.
 * feed() returns the text that is safe to send now (restored, malloc'd,
 * possibly ""), holding back a tail that could be the start of a
 * placeholder; finish() returns the rest. The map must outlive the
 * restorer. */
struct sl_pii_restorer {
    const struct sl_pii_map *map;
    char hold[SL_PII_LABEL_MAX + 24]; /* a possible placeholder prefix */
    size_t n_hold;
};

void sl_pii_restorer_init(struct sl_pii_restorer *r, const struct sl_pii_map *map);
int sl_pii_restorer_feed(struct sl_pii_restorer *r, const char *chunk, size_t len, char **out,
                         size_t *out_len, struct sl_err *err);
int sl_pii_restorer_finish(struct sl_pii_restorer *r, char **out, size_t *out_len,
                           struct sl_err *err);

/* ------------------------------------------------------------------ policy */

enum sl_pii_policy {
    SL_PII_POLICY_ALLOW = 0,  /* send as is */
    SL_PII_POLICY_REDACT,     /* mask before it leaves, restore in the answer */
    SL_PII_POLICY_LOCAL_ONLY, /* never leaves the machine */
};

enum sl_pii_action {
    SL_PII_ACTION_SEND = 0,      /* send the text unchanged */
    SL_PII_ACTION_SEND_REDACTED, /* send the redacted text */
    SL_PII_ACTION_KEEP_LOCAL,    /* do not send to this backend */
};

/* "allow", "redact", "local-only" -> policy; SL_EINVAL otherwise. */
int sl_pii_policy_parse(const char *s, enum sl_pii_policy *out, struct sl_err *err);
const char *sl_pii_policy_name(enum sl_pii_policy p);
const char *sl_pii_action_name(enum sl_pii_action a);

/* What to do with a request bound for a backend. scan_rc is what
 * sl_pii_scan returned (non-zero: we do not know what is in the text, so
 * anything but allow keeps it local); remote is false for a backend on this
 * machine (nothing leaves, so always SEND). */
enum sl_pii_action sl_pii_decide(enum sl_pii_policy p, int scan_rc, size_t n_spans, bool remote);

#endif
