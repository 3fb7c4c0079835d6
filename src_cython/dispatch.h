/* Which kernel variants this extension holds and which this CPU can run. Compiled with
 * the extension's own (baseline) flags, like all its Python glue: nothing wider than the
 * baseline runs before fl_cpu_supports has said yes. */
#ifndef FASTLSTM_DISPATCH_H
#define FASTLSTM_DISPATCH_H

#include "kernels.h"
#include <string.h>

/* The variants this extension was built with, best first (NULL-terminated). */
static const fl_kernels *const fl_built[] = {
#ifdef FL_HAVE_AVX512
    &fl_kernels_avx512,
#endif
#ifdef FL_HAVE_AVX2
    &fl_kernels_avx2,
#endif
#ifdef FL_HAVE_NEON
    &fl_kernels_neon,
#endif
#ifdef FL_HAVE_BASELINE
    &fl_kernels_baseline,
#endif
    NULL};

/* 1 when this CPU (and its OS, which must save the wider registers) can run variant isa.
 * The flags checked are those setup.py compiles the variant with. */
static int fl_cpu_supports(const char *isa) {
    if (strcmp(isa, "baseline") == 0) return 1;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (strcmp(isa, "avx2") == 0) return avx2;
    if (strcmp(isa, "avx512") == 0)
        return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#endif
#if defined(__aarch64__)
    if (strcmp(isa, "neon") == 0) return 1; /* Advanced SIMD is part of every ARMv8-A core */
#endif
    return 0;
}

#endif
