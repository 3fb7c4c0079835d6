/* arm64 Advanced SIMD (NEON, in every ARMv8-A core) with FMA: 32 registers of 16 bytes. A
 * row block of 6 rows x 4 gates is 24 sums, beside 4 weight vectors and a broadcast. */
#define FL_VBYTES 16
#define FL_MAX_ROWS 6
#define FL_MAX_ACC 24
#include "../lstm_cpu.h"

FL_DEFINE_KERNELS(neon);
