/*
 * test_privacy.c - the PII detector, redaction/restoration and the privacy
 * decision (src/router/privacy.c): each kind on valid examples, checksum
 * failures and look-alikes; configured patterns and their limits.
 */
#include <stdlib.h>
#include <string.h>

#include "router/privacy.h"
#include "test.h"

static struct sl_pii_detector *det;

/* Expect text to contain exactly one span, of kind k, covering `want`. */
static void one(const char *text, enum sl_pii_kind k, const char *want, int line)
{
    struct sl_pii_span s[8];
    size_t n = 0;
    struct sl_err err = {0};
    int rc = sl_pii_scan(det, text, strlen(text), s, 8, &n, &err);
    t_checks++;
    if (rc || n != 1 || s[0].kind != k || s[0].len != strlen(want) ||
        memcmp(text + s[0].start, want, s[0].len)) {
        T_FAIL_AT("line %d: \"%s\": want one %s \"%s\", got rc %d n %zu%s%s %.*s", line, text,
                  sl_pii_kind_name(k), want, rc, n, n ? " first " : "",
                  n ? sl_pii_kind_name(s[0].kind) : "", n ? (int)s[0].len : 0,
                  n ? text + s[0].start : "");
    }
}

/* Expect no span at all. */
static void none(const char *text, int line)
{
    struct sl_pii_span s[8];
    size_t n = 0;
    struct sl_err err = {0};
    int rc = sl_pii_scan(det, text, strlen(text), s, 8, &n, &err);
    t_checks++;
    if (rc || n != 0)
        T_FAIL_AT("line %d: \"%s\": want no PII, got rc %d n %zu (%s \"%.*s\")", line, text, rc, n,
                  n ? sl_pii_kind_name(s[0].kind) : "", n ? (int)s[0].len : 0,
                  n ? text + s[0].start : "");
}

#define ONE(t, k, w) one(t, k, w, __LINE__)
#define NONE(t) none(t, __LINE__)

static void pii_finds_email_addresses(void)
{
    ONE("mail john.doe@example.com please", SL_PII_EMAIL, "john.doe@example.com");
    ONE("<a+tag@sub.example.co.uk>", SL_PII_EMAIL, "a+tag@sub.example.co.uk");
    ONE("Write to X_Y%z@mail-server.example.org.", SL_PII_EMAIL, "X_Y%z@mail-server.example.org");
    ONE("e:first.last@ex-ample.io,", SL_PII_EMAIL, "first.last@ex-ample.io");
    NONE("user@localhost");
    NONE("@example.com is a handle");
    NONE("user@example.c");
    NONE("a@b");
    NONE("trailing.@example.com");
    NONE("x@-bad.com");
    NONE("2 @ 3.14");
}

static void pii_finds_phone_numbers(void)
{
    ONE("call +1 415 555 2671 now", SL_PII_PHONE, "+1 415 555 2671");
    ONE("+44 20 7946 0958", SL_PII_PHONE, "+44 20 7946 0958");
    ONE("+44 (0)20 7946 0958", SL_PII_PHONE, "+44 (0)20 7946 0958");
    ONE("+4930123456", SL_PII_PHONE, "+4930123456");
    ONE("tel (415) 555-2671.", SL_PII_PHONE, "(415) 555-2671");
    ONE("415-555-2671", SL_PII_PHONE, "415-555-2671");
    ONE("415.555.2671", SL_PII_PHONE, "415.555.2671");
    ONE("1-800-555-0199", SL_PII_PHONE, "1-800-555-0199");
    ONE("020 7946 0958", SL_PII_PHONE, "020 7946 0958");
    ONE("ring (020) 7946 0958", SL_PII_PHONE, "(020) 7946 0958");
    ONE("06 12 34 56 78", SL_PII_PHONE, "06 12 34 56 78");
    ONE("0612345678", SL_PII_PHONE, "0612345678");
    ONE("030 1234567", SL_PII_PHONE, "030 1234567");
    ONE("0049 30 1234567", SL_PII_PHONE, "0049 30 1234567");
    NONE("on 2024-01-15 at 10:30");
    NONE("from 192.168.1.1");
    NONE("version 1.2.3 of 12345");
    NONE("ext 555-1234");
    NONE("order 4155552671"); /* ten digits, no separators: too ambiguous */
    NONE("(123) 456-7890");   /* area code cannot start with 1 */
    NONE("+12 34");           /* too short */
    NONE("ID0612345678");     /* glued to letters */
    NONE("0012345");
    NONE("price 1,000,000.00");
}

static void pii_finds_cards_with_a_valid_luhn_and_issuer(void)
{
    ONE("card 4111 1111 1111 1111 exp 12/27", SL_PII_CARD, "4111 1111 1111 1111");
    ONE("4111-1111-1111-1111", SL_PII_CARD, "4111-1111-1111-1111");
    ONE("4111111111111111", SL_PII_CARD, "4111111111111111");
    ONE("MC 5555 5555 5555 4444", SL_PII_CARD, "5555 5555 5555 4444");
    ONE("amex 3782 822463 10005", SL_PII_CARD, "3782 822463 10005");
    ONE("6011111111111117", SL_PII_CARD, "6011111111111117");
    ONE("2223 0031 2200 3222", SL_PII_CARD, "2223 0031 2200 3222");
    ONE("jcb 3530111333300000", SL_PII_CARD, "3530111333300000");
    ONE("pay 4111 1111 1111 1111 2 times", SL_PII_CARD, "4111 1111 1111 1111");
    NONE("4111 1111 1111 1112");          /* Luhn fails */
    NONE("4111111111111");                /* 13 digits but Luhn fails */
    NONE("1234 5678 9012 3456");          /* no issuer starts with 1 */
    NONE("tracking 7000000000000000000"); /* Luhn-valid-looking but no issuer */
    NONE("4111111111111111111111");       /* too long */
    NONE("x4111111111111111");            /* glued to a letter */
}

static void pii_finds_ibans_with_a_valid_mod97(void)
{
    ONE("IBAN DE89 3704 0044 0532 0130 00 thanks", SL_PII_IBAN, "DE89 3704 0044 0532 0130 00");
    ONE("GB82 WEST 1234 5698 7654 32", SL_PII_IBAN, "GB82 WEST 1234 5698 7654 32");
    ONE("FR14 2004 1010 0505 0001 3M02 606.", SL_PII_IBAN, "FR14 2004 1010 0505 0001 3M02 606");
    ONE("NL91ABNA0417164300", SL_PII_IBAN, "NL91ABNA0417164300");
    ONE("to CH93 0076 2011 6238 5295 7 OK", SL_PII_IBAN, "CH93 0076 2011 6238 5295 7");
    NONE("DE89 3704 0044 0532 0130 01"); /* checksum fails */
    NONE("DE89 3704 0044 0532 0130");    /* too short for DE */
    NONE("XX00 1234 5678 9012 3456");
    NONE("ISO8601 2024");
}

static void pii_finds_us_ssns(void)
{
    ONE("SSN 123-45-6789.", SL_PII_SSN_US, "123-45-6789");
    ONE("ssn: 078 05 1120", SL_PII_SSN_US, "078 05 1120");
    NONE("000-12-3456");
    NONE("666-12-3456");
    NONE("912-12-3456");
    NONE("123-00-4567");
    NONE("123-45-0000");
    NONE("123-45-67890");
    NONE("1-123-45-6789");
    NONE("123-45 6789");
}

static void pii_finds_uk_ninos(void)
{
    ONE("NI AB123456C.", SL_PII_NINO_UK, "AB123456C");
    ONE("NI: AB 12 34 56 C", SL_PII_NINO_UK, "AB 12 34 56 C");
    ONE("ce123456a", SL_PII_NINO_UK, "ce123456a");
    NONE("BG123456C"); /* prefix never issued */
    NONE("DA123456C"); /* D is not a first letter */
    NONE("AO123456C"); /* O is not a second letter */
    NONE("AB123456E"); /* suffix is A-D */
    NONE("AB12345C");
    NONE("XAB123456C");
}

static void pii_finds_german_tax_ids(void)
{
    ONE("Steuer-ID 86095742719", SL_PII_TAXID_DE, "86095742719");
    ONE("IdNr 65 929 970 489", SL_PII_TAXID_DE, "65 929 970 489");
    ONE("57549285017", SL_PII_TAXID_DE, "57549285017");
    NONE("86095742718");  /* check digit wrong */
    NONE("12345678903");  /* check digit right, but no repeated digit */
    NONE("860957427191"); /* 12 digits */
}

static void pii_finds_french_insee_numbers(void)
{
    ONE("NIR 1 85 05 78 006 084 91", SL_PII_INSEE_FR, "1 85 05 78 006 084 91");
    ONE("185057800608491", SL_PII_INSEE_FR, "185057800608491");
    ONE("2 69 02 99 341 732 85", SL_PII_INSEE_FR, "2 69 02 99 341 732 85");
    ONE("1 85 05 2A 006 084 35", SL_PII_INSEE_FR, "1 85 05 2A 006 084 35");
    NONE("1 85 05 78 006 084 92");
    NONE("5 85 05 78 006 084 91");
}

static void pii_finds_several_kinds_in_order(void)
{
    const char *t = "Jane (jane@corp.example, +33 6 12 34 56 78) paid with 4111 1111 1111 1111 "
                    "from DE89370400440532013000.";
    struct sl_pii_span s[8];
    size_t n = 0;
    struct sl_err err = {0};
    T_OK(sl_pii_scan(det, t, strlen(t), s, 8, &n, &err), &err);
    T_EQ_INT(n, 4);
    enum sl_pii_kind want[4] = {SL_PII_EMAIL, SL_PII_PHONE, SL_PII_CARD, SL_PII_IBAN};
    for (size_t k = 0; k < n && k < 4; k++) {
        T_EQ_INT(s[k].kind, want[k]);
        if (k) T_TRUE(s[k].start >= s[k - 1].start + s[k - 1].len);
    }
}

static void pii_redacts_and_restores(void)
{
    const char *t = "Mail bob@example.com or bob@example.com, card 4111 1111 1111 1111, "
                    "alt alice@example.org.";
    struct sl_pii_span s[8];
    size_t n = 0;
    struct sl_err err = {0};
    T_OK(sl_pii_scan(det, t, strlen(t), s, 8, &n, &err), &err);
    T_EQ_INT(n, 4);
    struct sl_pii_map map;
    sl_pii_map_init(&map);
    char *red = NULL;
    size_t rl = 0;
    T_OK(sl_pii_redact(det, t, strlen(t), s, n, &map, &red, &rl, &err), &err);
    T_EQ_STR(red, "Mail [EMAIL_1] or [EMAIL_1], card [CARD_1], alt [EMAIL_2].");
    T_EQ_INT(rl, strlen(red));
    T_EQ_INT(map.n, 3);
    /* a second message of the same request continues the numbering */
    const char *t2 = "and carol@example.net, not bob@example.com";
    T_OK(sl_pii_scan(det, t2, strlen(t2), s, 8, &n, &err), &err);
    char *red2 = NULL;
    T_OK(sl_pii_redact(det, t2, strlen(t2), s, n, &map, &red2, NULL, &err), &err);
    T_EQ_STR(red2, "and [EMAIL_3], not [EMAIL_1]");
    /* the model echoes placeholders; unknown ones stay */
    const char *ans = "I wrote to [EMAIL_1] and [EMAIL_3]; [CARD_1] is charged. [EMAIL_9] [EMAIL_1";
    char *back = NULL;
    T_OK(sl_pii_restore(&map, ans, strlen(ans), &back, NULL, &err), &err);
    T_EQ_STR(back, "I wrote to bob@example.com and carol@example.net; 4111 1111 1111 1111 is "
                   "charged. [EMAIL_9] [EMAIL_1");
    /* no PII byte is left in the redacted texts */
    T_TRUE(strstr(red, "bob") == NULL && strstr(red, "4111") == NULL &&
           strstr(red2, "carol") == NULL);
    free(red);
    free(red2);
    free(back);
    sl_pii_map_free(&map);
}

static void pii_restores_placeholders_split_across_stream_chunks(void)
{
    const char *t = "mail bob@example.com and call +44 20 7946 0958";
    struct sl_pii_span s[4];
    size_t n = 0;
    struct sl_err err = {0};
    T_OK(sl_pii_scan(det, t, strlen(t), s, 4, &n, &err), &err);
    struct sl_pii_map map;
    sl_pii_map_init(&map);
    char *red = NULL;
    T_OK(sl_pii_redact(det, t, strlen(t), s, n, &map, &red, NULL, &err), &err);
    free(red);
    const char *answer = "Sent to [EMAIL_1]; [PHONE_1] called. [x] [EMAIL_7] [EMAIL_";
    size_t al = strlen(answer);
    /* every split into pieces of 1..7 bytes gives the same text */
    for (size_t step = 1; step <= 7; step++) {
        struct sl_pii_restorer r;
        sl_pii_restorer_init(&r, &map);
        char got[256] = "";
        for (size_t off = 0; off < al; off += step) {
            char *o = NULL;
            size_t k = al - off < step ? al - off : step;
            T_OK(sl_pii_restorer_feed(&r, answer + off, k, &o, NULL, &err), &err);
            if (o) strcat(got, o);
            free(o);
        }
        char *o = NULL;
        T_OK(sl_pii_restorer_finish(&r, &o, NULL, &err), &err);
        if (o) strcat(got, o);
        free(o);
        T_EQ_STR(got, "Sent to bob@example.com; +44 20 7946 0958 called. [x] [EMAIL_7] [EMAIL_");
    }
    sl_pii_map_free(&map);
}

static void pii_redact_rejects_bad_spans_and_keeps_the_map(void)
{
    struct sl_pii_map map;
    sl_pii_map_init(&map);
    struct sl_pii_span s[2] = {{0, 3, SL_PII_EMAIL, -1}, {2, 3, SL_PII_EMAIL, -1}};
    char *out = (char *)1;
    struct sl_err err = {0};
    T_EQ_INT(sl_pii_redact(det, "abcdefgh", 8, s, 2, &map, &out, NULL, &err), SL_EINVAL);
    T_TRUE(out == NULL);
    T_EQ_INT(map.n, 0);
    sl_pii_map_free(&map);
}

static void pii_configured_patterns_are_matched(void)
{
    struct sl_pii_pattern pats[] = {
        {"EMPLOYEE_ID", "\\bEMP-\\d{6}\\b"},
        {"PROJECT", "(?i)project\\s+falcon"},
    };
    struct sl_pii_params p = sl_pii_default_params();
    p.patterns = pats;
    p.n_patterns = 2;
    struct sl_pii_detector *d = NULL;
    struct sl_err err = {0};
    T_OK(sl_pii_detector_new(&d, &p, &err), &err);
    const char *t = "EMP-123456 works on Project  Falcon; EMP-12345 does not.";
    struct sl_pii_span s[8];
    size_t n = 0;
    T_OK(sl_pii_scan(d, t, strlen(t), s, 8, &n, &err), &err);
    T_EQ_INT(n, 2);
    if (n == 2) {
        T_EQ_STR(sl_pii_label(d, &s[0]), "EMPLOYEE_ID");
        T_EQ_STR(sl_pii_label(d, &s[1]), "PROJECT");
        T_EQ_INT(s[1].len, strlen("Project  Falcon"));
    }
    struct sl_pii_map map;
    sl_pii_map_init(&map);
    char *red = NULL;
    T_OK(sl_pii_redact(d, t, strlen(t), s, n, &map, &red, NULL, &err), &err);
    T_EQ_STR(red, "[EMPLOYEE_ID_1] works on [PROJECT_1]; EMP-12345 does not.");
    free(red);
    sl_pii_map_free(&map);
    /* invalid UTF-8 in the text is fine */
    const char bad[] = "\xff\xfe EMP-000001 \xc3";
    T_OK(sl_pii_scan(d, bad, sizeof bad - 1, s, 8, &n, &err), &err);
    T_EQ_INT(n, 1);
    sl_pii_detector_free(d);
}

static void pii_bad_patterns_are_reported_with_their_label(void)
{
    struct sl_pii_pattern bad[] = {{"BROKEN", "(unclosed"}};
    struct sl_pii_params p = sl_pii_default_params();
    p.patterns = bad;
    p.n_patterns = 1;
    struct sl_pii_detector *d = NULL;
    struct sl_err err = {0};
    T_EQ_INT(sl_pii_detector_new(&d, &p, &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "BROKEN") != NULL && strstr(err.msg, "offset") != NULL);
    T_TRUE(d == NULL);
    struct sl_pii_pattern lab[] = {{"lower", "x"}};
    p.patterns = lab;
    T_EQ_INT(sl_pii_detector_new(&d, &p, &err), SL_EINVAL);
}

static void pii_catastrophic_pattern_hits_the_match_limit(void)
{
    struct sl_pii_pattern pats[] = {{"SLOW", "(a+)+$"}};
    struct sl_pii_params p = sl_pii_default_params();
    p.patterns = pats;
    p.n_patterns = 1;
    struct sl_pii_detector *d = NULL;
    struct sl_err err = {0};
    T_OK(sl_pii_detector_new(&d, &p, &err), &err);
    char t[64];
    memset(t, 'a', 40);
    t[40] = 'b';
    t[41] = 0;
    struct sl_pii_span s[8];
    size_t n = 0;
    T_EQ_INT(sl_pii_scan(d, t, strlen(t), s, 8, &n, &err), SL_ERANGE);
    T_TRUE(strstr(err.msg, "SLOW") != NULL);
    /* fail closed */
    T_EQ_INT(sl_pii_decide(SL_PII_POLICY_REDACT, SL_ERANGE, 0, true), SL_PII_ACTION_KEEP_LOCAL);
    sl_pii_detector_free(d);
}

static void pii_scan_reports_too_many_spans(void)
{
    char t[4096] = "";
    for (int k = 0; k < 20; k++)
        strcat(t, "x@example.com ");
    struct sl_pii_span s[8];
    size_t n = 0;
    struct sl_err err = {0};
    T_EQ_INT(sl_pii_scan(det, t, strlen(t), s, 8, &n, &err), SL_ERANGE);
}

static void pii_kinds_can_be_switched_off(void)
{
    struct sl_pii_params p = sl_pii_default_params();
    p.kinds &= ~(1u << SL_PII_PHONE);
    struct sl_pii_detector *d = NULL;
    struct sl_err err = {0};
    T_OK(sl_pii_detector_new(&d, &p, &err), &err);
    struct sl_pii_span s[4];
    size_t n = 9;
    T_OK(sl_pii_scan(d, "+44 20 7946 0958", 16, s, 4, &n, &err), &err);
    T_EQ_INT(n, 0);
    sl_pii_detector_free(d);
}

static void pii_policy_decides_per_route(void)
{
    enum sl_pii_policy p;
    struct sl_err err = {0};
    T_OK(sl_pii_policy_parse("local-only", &p, &err), &err);
    T_EQ_INT(p, SL_PII_POLICY_LOCAL_ONLY);
    T_EQ_INT(sl_pii_policy_parse("sometimes", &p, &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "local-only") != NULL);
    /* no PII: send anywhere */
    T_EQ_INT(sl_pii_decide(SL_PII_POLICY_LOCAL_ONLY, 0, 0, true), SL_PII_ACTION_SEND);
    /* PII to a remote backend */
    T_EQ_INT(sl_pii_decide(SL_PII_POLICY_ALLOW, 0, 2, true), SL_PII_ACTION_SEND);
    T_EQ_INT(sl_pii_decide(SL_PII_POLICY_REDACT, 0, 2, true), SL_PII_ACTION_SEND_REDACTED);
    T_EQ_INT(sl_pii_decide(SL_PII_POLICY_LOCAL_ONLY, 0, 2, true), SL_PII_ACTION_KEEP_LOCAL);
    /* a local backend: nothing leaves the machine */
    T_EQ_INT(sl_pii_decide(SL_PII_POLICY_LOCAL_ONLY, 0, 2, false), SL_PII_ACTION_SEND);
    /* scan failed: unknown content */
    T_EQ_INT(sl_pii_decide(SL_PII_POLICY_LOCAL_ONLY, SL_ERANGE, 0, true), SL_PII_ACTION_KEEP_LOCAL);
    T_EQ_INT(sl_pii_decide(SL_PII_POLICY_ALLOW, SL_ERANGE, 0, true), SL_PII_ACTION_SEND);
    T_EQ_STR(sl_pii_action_name(SL_PII_ACTION_SEND_REDACTED), "send-redacted");
}

int main(void)
{
    struct sl_err err = {0};
    if (sl_pii_detector_new(&det, NULL, &err)) {
        fprintf(stderr, "detector: %s\n", err.msg);
        return 1;
    }
    T_RUN(pii_finds_email_addresses);
    T_RUN(pii_finds_phone_numbers);
    T_RUN(pii_finds_cards_with_a_valid_luhn_and_issuer);
    T_RUN(pii_finds_ibans_with_a_valid_mod97);
    T_RUN(pii_finds_us_ssns);
    T_RUN(pii_finds_uk_ninos);
    T_RUN(pii_finds_german_tax_ids);
    T_RUN(pii_finds_french_insee_numbers);
    T_RUN(pii_finds_several_kinds_in_order);
    T_RUN(pii_redacts_and_restores);
    T_RUN(pii_restores_placeholders_split_across_stream_chunks);
    T_RUN(pii_redact_rejects_bad_spans_and_keeps_the_map);
    T_RUN(pii_configured_patterns_are_matched);
    T_RUN(pii_bad_patterns_are_reported_with_their_label);
    T_RUN(pii_catastrophic_pattern_hits_the_match_limit);
    T_RUN(pii_scan_reports_too_many_spans);
    T_RUN(pii_kinds_can_be_switched_off);
    T_RUN(pii_policy_decides_per_route);
    sl_pii_detector_free(det);
    return t_done();
}
