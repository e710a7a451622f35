/*
 * fnv.h - FNV-1a 64, a fast non-cryptographic hash for cache keys and
 * file fingerprints (base layer). No state; thread-safe.
 */
#ifndef SL_FNV_H
#define SL_FNV_H

#include <stddef.h>
#include <stdint.h>

/* FNV-1a 64 over bytes, chained from h (start with SL_FNV_INIT). */
#define SL_FNV_INIT 0xcbf29ce484222325ull
uint64_t sl_fnv1a(uint64_t h, const void *p, size_t n);

#endif
