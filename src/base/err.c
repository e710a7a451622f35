/*
 * err.c - struct sl_err helpers (base layer).
 */
#include "err.h"

#include <stdarg.h>

int sl_err_set(struct sl_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *sl_strerror(int code)
{
    switch (code) {
    case SL_OK: return "ok";
    case SL_EINVAL: return "invalid argument";
    case SL_ENOMEM: return "out of memory";
    case SL_EIO: return "i/o error";
    case SL_EFORMAT: return "bad format";
    case SL_EUNSUPPORTED: return "unsupported";
    case SL_ERANGE: return "out of range";
    case SL_ENOTFOUND: return "not found";
    }
    return "unknown error";
}
