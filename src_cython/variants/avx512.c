/* AVX-512 (F, DQ, BW, VL) with FMA: 32 registers of 64 bytes. A row block of 6 rows x 4
 * gates is 24 sums, beside 4 weight vectors and a broadcast: 29 registers. */
#define FL_VBYTES 64
#define FL_MAX_ROWS 6
#define FL_MAX_ACC 24
#include "../lstm_cpu.h"

FL_DEFINE_KERNELS(avx512);
