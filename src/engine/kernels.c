/*
 * kernels.c - kernel dispatch (engine layer).
 *
 * Three tables: "scalar" (the references, always there), "avx2" (AVX2 +
 * FMA + F16C, src/engine/kernels/dot_avx2.c) and "avx512" (AVX-512 F, BW,
 * VL, VNNI on top of those, src/engine/kernels/dot_avx512.c). The CPU is
 * asked once, with __builtin_cpu_supports (which also checks that the OS
 * saves the wider registers; F16C comes from CPUID); SLUICE_CPU=scalar|avx2|avx512 forces a table,
 * and a table this CPU cannot run falls back to the best it can, with one
 * warning on stderr. An ISA table may leave entries NULL; they are filled
 * from the scalar table here, so callers never see a hole.
 */
#include "kernels.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels_int.h"

/* ------------------------------------------------------------------------ */
/* the scalar path                                                           */
/* ------------------------------------------------------------------------ */

#define REF_DOT(T)                                                    \
    static float dot_ref_##T(int64_t n, const void *w, const void *a) \
    {                                                                 \
        return sl_vec_dot_ref(SL_TYPE_##T, n, w, a);                  \
    }
REF_DOT(F32)
REF_DOT(F16)
REF_DOT(BF16)
REF_DOT(Q4_0)
REF_DOT(Q4_1)
REF_DOT(Q5_0)
REF_DOT(Q5_1)
REF_DOT(Q8_0)
REF_DOT(Q2_K)
REF_DOT(Q3_K)
REF_DOT(Q4_K)
REF_DOT(Q5_K)
REF_DOT(Q6_K)

size_t sl_q8x4_size(int64_t n)
{
    return (size_t)((n / 32 + 3) / 4) * sizeof(struct sl_q8x4);
}

void sl_q8x4_from_q8_0(const struct sl_block_q8_0 *x, int64_t nb, int k, struct sl_q8x4 *out)
{
    for (int64_t g = 0; g * 4 < nb; g++) {
        struct sl_q8x4 *o = &out[g];
        memset(o, 0, sizeof *o);
        for (int b = 0; b < 4 && g * 4 + b < nb; b++) {
            const struct sl_block_q8_0 *blk = &x[g * 4 + b];
            memcpy(o->lo[b], blk->qs, 16);
            memcpy(o->hi[b], blk->qs + 16, 16);
            const float d = sl_fp16_to_fp32(blk->d);
            for (int i = 0; i < 4; i++) {
                int sum = 0; /* the 8 activations int32 lane i of block b multiplies */
                for (int j = 4 * i; j < 4 * i + 4; j++) sum += blk->qs[j] + blk->qs[16 + j];
                o->d[b][i] = d;
                o->off[b][i] = -k * sum;
            }
        }
    }
}

static void quantize_ref(int type, const float *x, void *out, int64_t n)
{
    sl_quantize_row_ref(type, x, out, n);
}

float sl_dot_f16_f32_ref(int64_t n, const uint16_t *k, const float *q)
{
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += q[i] * sl_fp16_to_fp32(k[i]);
    return s;
}

void sl_axpy_f16_ref(int64_t n, float a, const uint16_t *v, float *acc)
{
    for (int64_t i = 0; i < n; i++) acc[i] += a * sl_fp16_to_fp32(v[i]);
}

void sl_fp32_to_fp16_row_ref(int64_t n, const float *x, uint16_t *y)
{
    for (int64_t i = 0; i < n; i++) y[i] = sl_fp32_to_fp16(x[i]);
}

static const struct sl_kernels scalar = {
    .name = "scalar",
    .vec_dot =
        {
            [SL_TYPE_F32] = dot_ref_F32,   [SL_TYPE_F16] = dot_ref_F16,   [SL_TYPE_BF16] = dot_ref_BF16,
            [SL_TYPE_Q4_0] = dot_ref_Q4_0, [SL_TYPE_Q4_1] = dot_ref_Q4_1, [SL_TYPE_Q5_0] = dot_ref_Q5_0,
            [SL_TYPE_Q5_1] = dot_ref_Q5_1, [SL_TYPE_Q8_0] = dot_ref_Q8_0, [SL_TYPE_Q2_K] = dot_ref_Q2_K,
            [SL_TYPE_Q3_K] = dot_ref_Q3_K, [SL_TYPE_Q4_K] = dot_ref_Q4_K, [SL_TYPE_Q5_K] = dot_ref_Q5_K,
            [SL_TYPE_Q6_K] = dot_ref_Q6_K,
        },
    .quantize_row = quantize_ref,
    .dot_f16_f32 = sl_dot_f16_f32_ref,
    .axpy_f16 = sl_axpy_f16_ref,
    .fp32_to_fp16_row = sl_fp32_to_fp16_row_ref,
};

/* ------------------------------------------------------------------------ */
/* CPU features and the resolved tables                                      */
/* ------------------------------------------------------------------------ */

#if defined(__x86_64__) || defined(__i386__)
#define SL_KERNELS_X86 1
#include <cpuid.h>

/* F16C from CPUID leaf 1 (ECX bit 29): older clang's __builtin_cpu_supports
 * does not know "f16c". Its registers are the AVX ones, whose OS support the
 * avx2 check already covers. */
static bool cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}
#endif

enum { PATH_SCALAR, PATH_AVX2, PATH_AVX512, PATH_COUNT };

static const char *const path_names[PATH_COUNT] = {"scalar", "avx2", "avx512"};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static struct sl_kernels resolved[PATH_COUNT]; /* filled copies, by path */
static bool runnable[PATH_COUNT];
static const struct sl_kernels *chosen;

/* Copy an ISA table and fill its holes from the scalar one. */
static void resolve(struct sl_kernels *dst, const struct sl_kernels *src)
{
    *dst = *src;
    for (int t = 0; t < SL_TYPE_COUNT; t++)
        if (!dst->vec_dot[t]) dst->vec_dot[t] = scalar.vec_dot[t];
    if (!dst->quantize_row) dst->quantize_row = scalar.quantize_row;
    if (!dst->dot_f16_f32) dst->dot_f16_f32 = scalar.dot_f16_f32;
    if (!dst->axpy_f16) dst->axpy_f16 = scalar.axpy_f16;
    if (!dst->fp32_to_fp16_row) dst->fp32_to_fp16_row = scalar.fp32_to_fp16_row;
}

static void init_once(void)
{
    resolve(&resolved[PATH_SCALAR], &scalar);
    runnable[PATH_SCALAR] = true;
#ifdef SL_KERNELS_X86
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                        __builtin_cpu_supports("avx512vnni");
    resolve(&resolved[PATH_AVX2], &sl_kernels_avx2);
    resolve(&resolved[PATH_AVX512], &sl_kernels_avx512);
    runnable[PATH_AVX2] = avx2;
    runnable[PATH_AVX512] = avx512;
#endif

    int best = PATH_SCALAR;
    for (int p = 0; p < PATH_COUNT; p++)
        if (runnable[p]) best = p;
    chosen = &resolved[best];

    const char *force = getenv("SLUICE_CPU");
    if (force && *force) {
        int want = -1;
        for (int p = 0; p < PATH_COUNT; p++)
            if (strcmp(force, path_names[p]) == 0) want = p;
        if (want < 0)
            fprintf(stderr, "sluice: SLUICE_CPU=%s is not a kernel path (scalar, avx2, avx512); using %s\n",
                    force, chosen->name);
        else if (!runnable[want])
            fprintf(stderr, "sluice: SLUICE_CPU=%s: this CPU cannot run it; using %s\n", force,
                    chosen->name);
        else
            chosen = &resolved[want];
    }
}

const struct sl_kernels *sl_kernels_get(const char *name)
{
    pthread_once(&once, init_once);
    for (int p = 0; name && p < PATH_COUNT; p++)
        if (strcmp(name, path_names[p]) == 0) return runnable[p] ? &resolved[p] : NULL;
    return NULL;
}

const struct sl_kernels *sl_kernels(void)
{
    pthread_once(&once, init_once);
    return chosen;
}
