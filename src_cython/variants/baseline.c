/* The x86-64 baseline (SSE2, no FMA): 16 registers of 16 bytes. A multiply and an add per
 * term need a temporary, so 8 sums: 4 rows x 2 gates per pass. Also the variant for any
 * other CPU family without a variant of its own. */
#define FL_VBYTES 16
#define FL_MAX_ROWS 4
#define FL_MAX_ACC 8
#include "../lstm_cpu.h"

FL_DEFINE_KERNELS(baseline);
