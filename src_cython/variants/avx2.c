/* AVX2 with FMA: 16 registers of 32 bytes. 12 sums fit beside two weight vectors and a
 * broadcast, so a block of 6 rows accumulates 2 gates per pass over its weights (the
 * layouts group the gates in pairs); blocks of up to 3 rows take all 4 gates at once. */
#define FL_VBYTES 32
#define FL_MAX_ROWS 6
#define FL_MAX_ACC 12
#include "../lstm_cpu.h"

FL_DEFINE_KERNELS(avx2);
