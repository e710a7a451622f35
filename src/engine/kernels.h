/*
 * kernels.h - the dispatch table of hot kernels (engine layer).
 *
 * sl_kernels() returns the table for the best instruction set this CPU has
 * (chosen once, at first use; SLUICE_CPU=scalar|avx2|avx512 forces one, and
 * a path the CPU cannot run falls back to the best one with a warning on
 * stderr). Every entry has a scalar reference twin (sl_vec_dot_ref and
 * sl_quantize_row_ref in quant.c, the sl_*_ref attention helpers below), and
 * tests/unit/test_kernels.c walks every path against it. See
 * docs/internals/kernels.md for the paths, the error budgets and why the
 * fast paths may differ from the references at all.
 */
#ifndef SL_KERNELS_H
#define SL_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "quant.h"

/* Dot of n weights (a row of the table's type) with n activations already
 * converted to that type's dot type. The int8 activations (Q8_0, Q8_1, Q8_K
 * qs) must lie in -127..127, as every quantizer here writes them: the SIMD
 * paths multiply |w| by a sign-adjusted activation, and -(-128) overflows. */
typedef float (*sl_vec_dot_fn)(int64_t n, const void *w, const void *a);

struct sl_kernels {
    const char *name; /* "scalar", "avx2", "avx512" */
    sl_vec_dot_fn vec_dot[SL_TYPE_COUNT];
    /* convert n floats to type (a dot type: F16, BF16, Q8_0, Q8_1, Q8_K;
     * any other type goes to sl_quantize_row_ref) */
    void (*quantize_row)(int type, const float *x, void *out, int64_t n);

    /* attention over the fp16 KV cache (forward.c attn_item, store_kv) */
    float (*dot_f16_f32)(int64_t n, const uint16_t *k, const float *q); /* sum k[i] * q[i] */
    void (*axpy_f16)(int64_t n, float a, const uint16_t *v, float *acc); /* acc += a * v */
    void (*fp32_to_fp16_row)(int64_t n, const float *x, uint16_t *y);   /* round to nearest even */
};

/* The table for this process (see the header comment). Thread-safe. The
 * returned table lives for the whole process; every vec_dot entry of a
 * weight type is non-NULL. */
const struct sl_kernels *sl_kernels(void);

/* The table for one path by name ("scalar", "avx2", "avx512"), or NULL if
 * the name is unknown or this CPU cannot run it. Thread-safe. */
const struct sl_kernels *sl_kernels_get(const char *name);

/* Scalar references of the attention helpers: float sums in index order,
 * exactly what forward.c computed before the table had these entries. */
float sl_dot_f16_f32_ref(int64_t n, const uint16_t *k, const float *q);
void sl_axpy_f16_ref(int64_t n, float a, const uint16_t *v, float *acc);
void sl_fp32_to_fp16_row_ref(int64_t n, const float *x, uint16_t *y);

#endif
