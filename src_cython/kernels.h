/* The compiled kernels' interface: one table of entry points per instruction-set variant.
 *
 * Each variant is src_cython/variants/<isa>.c: the one kernel source (lstm_cpu.h) built
 * with that instruction set's compiler flags (setup.py's VARIANTS) and the vector width
 * and register block that fit its register file. dispatch.h says which are built and
 * which this CPU can run; setup.py defines FL_HAVE_<ISA> for every variant it built.
 */
#ifndef FASTLSTM_KERNELS_H
#define FASTLSTM_KERNELS_H

#include <stddef.h>

/* Fortran BLAS ?gemm, as scipy.linalg.cython_blas hands it out */
typedef void (*fl_gemm_f32)(char *, char *, int *, int *, int *, float *, float *, int *,
                            float *, int *, float *, float *, int *);
typedef void (*fl_gemm_f64)(char *, char *, int *, int *, int *, double *, double *, int *,
                            double *, int *, double *, double *, int *);

/* Backward's gate gradients dz are rows of G = 4H plus this many bytes: a row of a
 * power-of-two size would put the 6 rows a register block reads in the same L1 set. */
#define FL_DZ_PAD_BYTES 64
#define FL_DZ_LD(G, itemsize) ((G) + FL_DZ_PAD_BYTES / (itemsize))

typedef void (*fl_forward_f32)(int T, int B, int I, int H, const int *bs, const ptrdiff_t *off,
                               const int *perm, const float *xr, const float *wfi,
                               const float *wf, const float *bf, float *hbuf, float *cbuf,
                               float *y, float *gates, float *tc, float *th, const float *w_ih,
                               fl_gemm_f32 gemm, float *xw, int how, int nthreads);
typedef void (*fl_forward_f64)(int T, int B, int I, int H, const int *bs, const ptrdiff_t *off,
                               const int *perm, const double *xr, const double *wfi,
                               const double *wf, const double *bf, double *hbuf, double *cbuf,
                               double *y, double *gates, double *tc, double *th,
                               const double *w_ih, fl_gemm_f64 gemm, double *xw, int how,
                               int nthreads);
typedef void (*fl_backward_f32)(int T, int B, int I, int H, const int *bs, const ptrdiff_t *off,
                                const int *perm, const float *wb, const float *gates,
                                const float *tc, const float *dy, float *dh, float *dc,
                                float *dz, const float *xr, const float *hr, const float *w_ih,
                                fl_gemm_f32 gemm, float *dxr, float *dw_ih, float *dw_hh,
                                float *db, int how, int nthreads);
typedef void (*fl_backward_f64)(int T, int B, int I, int H, const int *bs, const ptrdiff_t *off,
                                const int *perm, const double *wb, const double *gates,
                                const double *tc, const double *dy, double *dh, double *dc,
                                double *dz, const double *xr, const double *hr,
                                const double *w_ih, fl_gemm_f64 gemm, double *dxr,
                                double *dw_ih, double *dw_hh, double *db, int how,
                                int nthreads);

typedef struct {
    const char *name; /* "avx512", "avx2", "baseline", "neon" */
    int vbytes;       /* bytes per vector: the packed layouts' unit blocks hold vbytes/itemsize */
    int rows;         /* rows per register block (for the record: `fastlstm info`) */
    int gate_group;   /* GP: gates per group in the packed forward layouts (lstm_cpu.h) */
    fl_forward_f32 forward_f32;
    fl_forward_f64 forward_f64;
    fl_backward_f32 backward_f32;
    fl_backward_f64 backward_f64;
} fl_kernels;

/* one per variant; only those setup.py built exist (dispatch.h lists them) */
extern const fl_kernels fl_kernels_avx512, fl_kernels_avx2, fl_kernels_baseline, fl_kernels_neon;

#endif
