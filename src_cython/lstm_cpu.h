/* fastlstm compiled CPU kernels: one LSTM layer, one direction.
 *
 * The time loop: per step, a register-blocked x_t W_ih^T + h_{t-1} W_hh^T fused with the
 * gate math (forward), or the gate-gradient math fused with dz_t W_hh (backward); after
 * backward's loop, the weight and input gradients as GEMMs through BLAS.
 *
 * Threads: each call is one job of the pool (pool.h): the calling thread starts at once,
 * helpers join when they wake, and the work is split into units fixed by the call's shape
 * and mode (FL_MODE_ROWS: chunks of rows for the whole sequence; FL_MODE_STEPS: a phase
 * per step, units of hidden-unit blocks, each unit owning whole hidden units, all four
 * gate rows, so the gate math needs no exchange). Denormals are flushed in every unit.
 *
 * Rows are in "sorted" order (by length, longest first: the caller's perm maps sorted row
 * r to batch row perm[r]); at step t the active rows are r < bs[t] and row r of step t
 * lives at zrow = off[t] + r of the packed (sequence-step) arrays, off[T] = M of them:
 * perm, bs and off are fastlstm/backends/sequences.py's perm, batch_sizes and offsets, or
 * all NULL for a dense batch. Steps past a length are skipped, not masked.
 *
 * One instruction-set variant per translation unit: src_cython/variants/<isa>.c defines
 * FL_VBYTES (bytes per vector), FL_MAX_ROWS (rows per register block) and FL_MAX_ACC (the
 * vector sums that fit in registers beside the weight vectors and a broadcast), includes
 * this file and names its table of entry points with FL_DEFINE_KERNELS(isa). Everything
 * here is static: the variants never see each other's code.
 *
 * Shape letters: T steps, B batch, H hidden, G = 4H, VL = FL_VBYTES / sizeof(R) vector
 * lanes, NUB = ceil(H/VL) unit blocks. Packed layouts (built by the adapter, once per weights):
 *   wfi [NUB][4/GP][I][GP][VL] forward: wfi[u][p][k][j][l] = W_ih[(p*GP + j)*H + u*VL + l][k]
 *   wf [NUB][4/GP][H][GP][VL]  forward: wf[u][p][k][j][l] = W_hh[(p*GP + j)*H + u*VL + l][k]
 *                        (0 past H; GP = FL_GP: 4, 2 or 1 gates per group)
 *   bf [NUB][4][VL]     forward:  bf[u][g][l]    = b[g*H + u*VL + l]
 *   wb [NUB][G][VL]     backward: wb[u][k][l]    = W_hh[k][u*VL + l]
 */
#ifndef FASTLSTM_LSTM_CPU_H
#define FASTLSTM_LSTM_CPU_H

#if !defined(FL_VBYTES) || !defined(FL_MAX_ROWS) || FL_MAX_ROWS < 1 || FL_MAX_ROWS > 6
#error "a variant defines FL_VBYTES and FL_MAX_ROWS (1..6) before including lstm_cpu.h"
#endif
#ifndef FL_MAX_ACC
#error "a variant defines FL_MAX_ACC, the vector accumulators that fit its registers"
#endif
/* Sums per row a block of MB rows keeps in registers: 4 (every gate, or every unit block
 * of a group in backward) when 4 * MB fit FL_MAX_ACC, else 2, else 1: one pass over the
 * weights per group of that many gates. */
#define FL_SUMS_PER_ROW(MB) (4 * (MB) <= FL_MAX_ACC ? 4 : 2 * (MB) <= FL_MAX_ACC ? 2 : 1)
/* Gates per group in the forward layouts: those of a full row block's pass */
#define FL_GP FL_SUMS_PER_ROW(FL_MAX_ROWS)

#include "kernels.h"
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

#ifndef FASTLSTM_DEBUG
#define FASTLSTM_DEBUG 0
#endif
#if FASTLSTM_DEBUG
#define FL_CHECK(cond)                                                                    \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "fastlstm kernel check failed: %s (%s:%d)\n", #cond, __FILE__, \
                    __LINE__);                                                            \
            abort();                                                                      \
        }                                                                                 \
    } while (0)
#else
#define FL_CHECK(cond) ((void)0)
#endif

#define FL_INLINE static inline __attribute__((always_inline))

/* A unit's rows and hidden-unit blocks: sorted rows [r0, r1), unit blocks [ub0, ub1). */
typedef struct {
    int r0, r1;
    int ub0, ub1;
} fl_share;

/* How the calls split their work into units for the pool (pool.h). Each is fixed by the
 * call's shape and mode, never by the team, so results never depend on the team:
 *   FL_MODE_ROWS   one unit per chunk of rows for the whole sequence: rows never meet
 *                  until the weight gradients, so there is no wait per step. Chunks hold
 *                  at most FL_MAX_ROWS rows (one register block), an even number of them.
 *   FL_MODE_STEPS  one phase per time step, a unit per (block of hidden units, block of
 *                  FL_MAX_ROWS rows): each slot keeps its slice of W_hh in its own cache.
 */
enum { FL_MODE_ROWS = 0, FL_MODE_STEPS = 1, FL_MODE_MASK = 0xff };
/* Or'ed into the mode: helpers asleep are not woken for this call, only those still
 * looking for work join (a one-step call is over before a sleeper could help, and
 * waking it costs the caller a system call). */
#define FL_NO_WAKE 0x100

static inline int fl_row_chunks(int B, int mode) {
    const int n = (B + FL_MAX_ROWS - 1) / FL_MAX_ROWS;
    return mode == FL_MODE_ROWS && n > 1 && (n & 1) ? n + 1 : n;
}

/* First sorted row of chunk c of n (c = n: B) */
static inline int fl_chunk_row(int B, int n, int c, int mode) {
    if (mode == FL_MODE_ROWS) return (int)((long)B * c / n);
    return c * FL_MAX_ROWS < B ? c * FL_MAX_ROWS : B;
}

/* Units of the final GEMMs: chunks of G rows of the weight gradients, and of M rows of
 * dx (and of the hoisted input projection) */
#define FL_G_CHUNKS 8
#define FL_M_CHUNKS 8
/* Rows from which the hoisted input projection is split by rows, not by columns */
#define FL_HOIST_ROW_SPLIT 256

/* Part i of n of [0, len) */
static inline long fl_part(long len, int n, int i) { return len * i / n; }

/* 1/k! for the exponential's series (lstm_cpu_impl.h), up to the double's 14 terms */
static const double fl_inv_factorial[15] = {
    1.0, 1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040, 1.0 / 40320,
    1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800.0,
    1.0 / 87178291200.0};

/* ---- the float and the double kernels, from one template ---- */

#define R float
#define SUF(name) name##_f32
#define FL_EXP_HI 88.0f
#define FL_EXP_LO (-87.0f)
#define FL_EXP_TERMS 8 /* Taylor terms of e^r, |r| <= ln2/2: error < 1e-8 relative */
#define FL_MANT_BITS 23
#define FL_EXP_BIAS 127
#define FL_ROUND_MAGIC 12582912.0f /* 1.5 * 2^23 */
typedef float SUF(vec) __attribute__((vector_size(FL_VBYTES)));
typedef int SUF(ivec) __attribute__((vector_size(FL_VBYTES)));
typedef unsigned SUF(uvec) __attribute__((vector_size(FL_VBYTES)));
#include "lstm_cpu_impl.h" /* undefines the parameters above */

#define R double
#define SUF(name) name##_f64
#define FL_EXP_HI 709.0
#define FL_EXP_LO (-708.0)
#define FL_EXP_TERMS 14 /* error < 1e-16 relative */
#define FL_MANT_BITS 52
#define FL_EXP_BIAS 1023
#define FL_ROUND_MAGIC 6755399441055744.0 /* 1.5 * 2^52 */
typedef double SUF(vec) __attribute__((vector_size(FL_VBYTES)));
typedef long long SUF(ivec) __attribute__((vector_size(FL_VBYTES)));
typedef unsigned long long SUF(uvec) __attribute__((vector_size(FL_VBYTES)));
#include "lstm_cpu_impl.h" /* undefines the parameters above */

/* The variant's table, named fl_kernels_<isa> (declared in kernels.h) */
#define FL_DEFINE_KERNELS(isa)                                                            \
    const fl_kernels fl_kernels_##isa = {#isa,             FL_VBYTES,         FL_MAX_ROWS,      \
                                         FL_GP,            lstm_forward_f32, lstm_forward_f64, \
                                         lstm_backward_f32, lstm_backward_f64}

#endif
