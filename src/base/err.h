/*
 * err.h - the one error convention of sluice (base layer).
 *
 * Functions return 0 on success or a negative SL_E* code. The detail a user
 * can act on goes into a caller-provided struct sl_err, written with
 * sl_err_set(err, SL_EFORMAT, "%s: tensor '%s' ...", __func__, ...).
 * `err` may be NULL everywhere: the code is still returned.
 *
 * SL_ASSERT is for our own invariants only, never for user input.
 */
#ifndef SL_ERR_H
#define SL_ERR_H

#include <stdio.h>
#include <stdlib.h>

enum sl_errcode {
    SL_OK = 0,
    SL_EINVAL = -1,       /* bad argument or bad user input */
    SL_ENOMEM = -2,       /* allocation failed */
    SL_EIO = -3,          /* open/read/write/mmap failed */
    SL_EFORMAT = -4,      /* malformed file or data */
    SL_EUNSUPPORTED = -5, /* well-formed but not supported (type, arch) */
    SL_ERANGE = -6,       /* a count, size or position out of range */
    SL_ENOTFOUND = -7,    /* a key, tensor or token that is not there */
};

#define SL_ERR_MSG_LEN 512

struct sl_err {
    int code;
    char msg[SL_ERR_MSG_LEN];
};

/* Records code and message into err (if not NULL); returns code. */
int sl_err_set(struct sl_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Short static name of a code ("bad format", ...). */
const char *sl_strerror(int code);

#define SL_ASSERT(x)                                                                   \
    do {                                                                               \
        if (!(x)) {                                                                    \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #x); \
            abort();                                                                   \
        }                                                                              \
    } while (0)

/* Defensive check for a "can't happen" branch: true when x is true. */
#define SL_NEVER(x) (x)

#define SL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SL_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
