/*
 * fnv.c - FNV-1a 64 (base layer). See fnv.h.
 */
#include "fnv.h"

uint64_t sl_fnv1a(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}
