/*
 * kernels_int.h - what the per-ISA kernel files share with the dispatcher
 * (engine layer, private to src/engine/kernels.c and src/engine/kernels/).
 *
 * Each ISA file is compiled with its own -m flags (CMakeLists.txt) and
 * exports one table. The dispatcher (kernels.c) hands a table out only when
 * the CPU has every feature its file was built for, and fills any NULL entry
 * from the scalar table, so an ISA file may leave a type out.
 */
#ifndef SL_KERNELS_INT_H
#define SL_KERNELS_INT_H

#include "../kernels.h"

/* dot_avx2.c: AVX2 + FMA + F16C. */
extern const struct sl_kernels sl_kernels_avx2;

/* dot_avx512.c: AVX-512 F, BW, VL, VNNI (plus AVX2, FMA, F16C). */
extern const struct sl_kernels sl_kernels_avx512;

#endif
