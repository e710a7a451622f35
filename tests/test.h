/*
 * test.h - assertions that print both values and file:line, and helpers
 * shared by the unit tests. Each tests/unit/test_*.c is one process:
 *
 *   static void gguf_rejects_offset_past_eof(void) { ... T_EQ_INT(rc, SL_EFORMAT); }
 *   int main(void) { T_RUN(gguf_rejects_offset_past_eof); return t_done(); }
 *
 * A test that needs ../shared/assets calls t_assets() which returns the
 * directory or NULL; t_skip("why") marks the test skipped.
 */
#ifndef SL_TEST_H
#define SL_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern int t_failures;
extern int t_checks;
extern int t_skipped;
extern int t_ran;
extern const char *t_current;

#define T_FAIL_AT(...)                                                    \
    do {                                                                  \
        fprintf(stderr, "FAIL %s (%s:%d): ", t_current, __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__);                                     \
        fputc('\n', stderr);                                              \
        t_failures++;                                                     \
    } while (0)

#define T_TRUE(c)                                          \
    do {                                                   \
        t_checks++;                                        \
        if (!(c)) T_FAIL_AT("expected true: %s", #c);      \
    } while (0)

#define T_EQ_INT(a, b)                                                                     \
    do {                                                                                   \
        long long t_a_ = (long long)(a), t_b_ = (long long)(b);                           \
        t_checks++;                                                                        \
        if (t_a_ != t_b_) T_FAIL_AT("%s == %s: %lld != %lld", #a, #b, t_a_, t_b_);         \
    } while (0)

#define T_EQ_STR(a, b)                                                                     \
    do {                                                                                   \
        const char *t_a_ = (a), *t_b_ = (b);                                               \
        t_checks++;                                                                        \
        if (!t_a_ || !t_b_ || strcmp(t_a_, t_b_) != 0)                                     \
            T_FAIL_AT("%s == %s: \"%s\" != \"%s\"", #a, #b, t_a_ ? t_a_ : "(null)",        \
                      t_b_ ? t_b_ : "(null)");                                             \
    } while (0)

#define T_NEAR(a, b, tol)                                                                  \
    do {                                                                                   \
        double t_a_ = (double)(a), t_b_ = (double)(b);                                     \
        t_checks++;                                                                        \
        if (!(fabs(t_a_ - t_b_) <= (tol)))                                                 \
            T_FAIL_AT("%s ~ %s: %.9g vs %.9g (tol %g)", #a, #b, t_a_, t_b_, (double)(tol)); \
    } while (0)

/* Check an expression returning 0; print err.msg otherwise. */
#define T_OK(expr, errp)                                                                   \
    do {                                                                                   \
        int t_rc_ = (expr);                                                                \
        t_checks++;                                                                        \
        if (t_rc_ != 0) T_FAIL_AT("%s returned %d: %s", #expr, t_rc_, (errp)->msg);        \
    } while (0)

#define T_RUN(fn)                                                   \
    do {                                                            \
        int t_before_ = t_failures;                                 \
        t_current = #fn;                                            \
        t_ran++;                                                    \
        fn();                                                       \
        fprintf(stderr, "%s %s\n", t_failures == t_before_ ? "ok  " : "FAIL", #fn); \
    } while (0)

/* Directory of ../shared/assets (or $SLUICE_ASSETS), NULL if absent. */
const char *t_assets(void);
/* Path under the assets dir into a static buffer; NULL if assets absent. */
const char *t_asset(const char *rel);
/* Mark the current test skipped with a reason. */
void t_skip(const char *why);
/* Read a whole file; returns malloc'd buffer (NUL-terminated) or NULL. */
char *t_read_file(const char *path, size_t *len);
/* A fresh path in the build's test directory. */
const char *t_tmp_path(const char *name);
/* Summary line; exit code: 0 ok, 1 failures, 77 all skipped. */
int t_done(void);

#endif
