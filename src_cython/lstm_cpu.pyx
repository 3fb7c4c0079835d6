# The compiled LSTM layer: BLAS for the big GEMMs, lstm_cpu.h for the time loop.
#
# Forward:  zx = x W_ih^T (one GEMM for every step), then the fused recurrence.
# Backward: the fused reverse recurrence writes dz for every step, then three GEMMs:
#           dx = dz W_ih, dW_ih = dz^T x, dW_hh = dz^T h_{t-1}; db = column sums of dz.
# With lengths, the real (step, row) pairs are packed time-major, longest rows first
# (torch's PackedSequence layout): M = sum(lengths) rows, and padding costs nothing.
# Every GEMM is row-major through scipy's BLAS, operands swapped, so nothing is copied, and
# runs inside the kernels' own OpenMP region, each thread on its slice (BLAS single-threaded).
# The adapter (fastlstm/backends/cython_cpu.py) allocates every buffer; nothing here does.
from libc.stddef cimport ptrdiff_t
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport sgemm, dgemm

import numpy as np

ctypedef fused floating:
    float
    double

cdef extern from "lstm_cpu.h" nogil:
    ctypedef void (*gemm_f32)(char *, char *, int *, int *, int *, float *, float *, int *,
                              float *, int *, float *, float *, int *)
    ctypedef void (*gemm_f64)(char *, char *, int *, int *, int *, double *, double *, int *,
                              double *, int *, double *, double *, int *)
    void lstm_forward_f32(int T, int B, int I, int H, const int *bs, const ptrdiff_t *off,
                          const int *perm, const float *xr, const float *w_ih, gemm_f32 gemm,
                          float *zx, const float *wf, const float *bf, float *hbuf,
                          float *cbuf, float *y, float *gates, float *tc, float *th, int tu,
                          int nthreads)
    void lstm_forward_f64(int T, int B, int I, int H, const int *bs, const ptrdiff_t *off,
                          const int *perm, const double *xr, const double *w_ih,
                          gemm_f64 gemm, double *zx, const double *wf, const double *bf,
                          double *hbuf, double *cbuf, double *y, double *gates, double *tc,
                          double *th, int tu, int nthreads)
    void lstm_backward_f32(int T, int B, int I, int H, const int *bs, const ptrdiff_t *off,
                           const int *perm, const float *wb, const float *gates,
                           const float *tc, const float *dy, float *dh, float *dc, float *dz,
                           const float *xr, const float *hr, const float *w_ih, gemm_f32 gemm,
                           float *dxr, float *dw_ih, float *dw_hh, float *db, int tu,
                           int nthreads)
    void lstm_backward_f64(int T, int B, int I, int H, const int *bs, const ptrdiff_t *off,
                           const int *perm, const double *wb, const double *gates,
                           const double *tc, const double *dy, double *dh, double *dc,
                           double *dz, const double *xr, const double *hr,
                           const double *w_ih, gemm_f64 gemm, double *dxr, double *dw_ih,
                           double *dw_hh, double *db, int tu, int nthreads)
    int FL_VBYTES


def vector_bytes():
    """Bytes per vector of the kernels: unit blocks hold vector_bytes() // itemsize units."""
    return FL_VBYTES


cdef inline void gather_rows(floating *dst, const floating *src, int T, int B, int F,
                             const int *bs, const ptrdiff_t *off, const int *perm) noexcept nogil:
    """dst[off[t] + r] = src[t, perm[r]] for the real rows r < bs[t] (F values per row)."""
    cdef int t, r
    for t in range(T):
        for r in range(bs[t]):
            memcpy(dst + (off[t] + r) * F, src + (<ptrdiff_t>t * B + perm[r]) * F,
                   F * sizeof(floating))


cdef inline void scatter_rows(floating *dst, const floating *src, int T, int B, int F,
                              const int *bs, const ptrdiff_t *off, const int *perm) noexcept nogil:
    """dst[t, perm[r]] = src[off[t] + r]; dst rows past a length are zeroed."""
    cdef int t, r
    memset(dst, 0, <size_t>T * B * F * sizeof(floating))
    for t in range(T):
        for r in range(bs[t]):
            memcpy(dst + (<ptrdiff_t>t * B + perm[r]) * F, src + (off[t] + r) * F,
                   F * sizeof(floating))


cdef class Sequences:
    """Packed-sequence bookkeeping of one lengths vector (intp[B], values in 1..T).

    perm sorts rows longest first (stably); at step t the sorted rows r < bs[t] are
    real and live at packed row off[t] + r; steps[r] is sorted row r's length.
    """
    cdef readonly object perm, bs, off, steps  # int32[B], int32[T], intp[T], int32[B]
    cdef readonly Py_ssize_t M                   # real (step, row) pairs = sum(lengths)

    def __init__(self, lengths, int T):
        lengths = np.asarray(lengths, dtype=np.intp)
        if lengths.ndim != 1 or lengths.shape[0] < 1 or lengths.min() < 1 or lengths.max() > T:
            raise ValueError(f"lengths must be a non-empty 1-D array of values in 1..{T}")
        self.perm = np.argsort(-lengths, kind="stable").astype(np.int32)
        self.steps = lengths[self.perm].astype(np.int32)
        self.bs = (self.steps[None, :] > np.arange(T)[:, None]).sum(axis=1).astype(np.int32)
        self.off = np.concatenate([[0], np.cumsum(self.bs[:-1])]).astype(np.intp)
        self.M = int(self.bs.sum())


def forward(floating[:, :, ::1] x, floating[:, ::1] w_ih, floating[::1] wf,
            floating[::1] bf, floating[:, ::1] h0, floating[:, ::1] c0, Sequences seq,
            floating[:, :, ::1] y, floating[:, ::1] h_n, floating[:, ::1] c_n,
            floating[:, :, ::1] gates, floating[:, :, ::1] tc, floating[:, :, ::1] th,
            floating[:, ::1] zx, floating[:, ::1] xp, floating[:, :, ::1] hbuf,
            floating[:, ::1] cbuf, int tu, int nthreads):
    """One layer forward. gates/tc/th: the tape or None; xp: [M, I] scratch (lengths only)."""
    cdef int T = x.shape[0], B = x.shape[1], I = x.shape[2], H = h0.shape[1], G = 4 * H
    cdef int r, o
    cdef int[::1] perm, bs, steps
    cdef ptrdiff_t[::1] off
    cdef int *bs_p = NULL
    cdef int *perm_p = NULL
    cdef ptrdiff_t *off_p = NULL
    cdef floating *src = &x[0, 0, 0]
    cdef Py_ssize_t M = <Py_ssize_t>T * B
    cdef floating *gates_p = NULL
    cdef floating *tc_p = NULL
    cdef floating *th_p = NULL
    cdef Py_ssize_t vl = FL_VBYTES // sizeof(floating), nub = (H + vl - 1) // vl
    if seq is not None:
        if seq.perm.shape[0] != B or seq.bs.shape[0] != T:
            raise ValueError("lstm_cpu.forward: seq was built for another T or B")
        perm, bs, off, steps, M = seq.perm, seq.bs, seq.off, seq.steps, seq.M
        perm_p, bs_p, off_p = &perm[0], &bs[0], &off[0]
        if xp is None or xp.shape[0] != M or xp.shape[1] != I:
            raise ValueError("lstm_cpu.forward: xp must be (M, I) scratch with lengths")
    if (w_ih.shape[0] != G or w_ih.shape[1] != I or wf.shape[0] != nub * H * 4 * vl
            or bf.shape[0] != nub * 4 * vl or h0.shape[0] != B or c0.shape[0] != B
            or c0.shape[1] != H or y.shape[0] != T or y.shape[1] != B or y.shape[2] != H
            or h_n.shape[0] != B or h_n.shape[1] != H or c_n.shape[0] != B or c_n.shape[1] != H
            or zx.shape[0] != M or zx.shape[1] != G or hbuf.shape[0] != 2
            or hbuf.shape[1] != B or hbuf.shape[2] != H or cbuf.shape[0] != B
            or cbuf.shape[1] != H):
        raise ValueError("lstm_cpu.forward: buffer shapes do not match x (T, B, I), h0 (B, H)")
    if gates is not None:
        if (gates.shape[0] != T or gates.shape[1] != B or gates.shape[2] != G
                or tc is None or tc.shape[0] != T + 1 or tc.shape[1] != B or tc.shape[2] != H
                or th is None or th.shape[0] != T + 1 or th.shape[1] != B or th.shape[2] != H):
            raise ValueError("lstm_cpu.forward: tape shapes do not match x and h0")
        gates_p, tc_p, th_p = &gates[0, 0, 0], &tc[0, 0, 0], &th[0, 0, 0]
    with nogil:
        if perm_p != NULL:
            gather_rows(&xp[0, 0], src, T, B, I, bs_p, off_p, perm_p)
            src = &xp[0, 0]
        for r in range(B):  # the state in sorted row order
            o = perm_p[r] if perm_p != NULL else r
            memcpy(&hbuf[0, r, 0], &h0[o, 0], H * sizeof(floating))
            memcpy(&cbuf[r, 0], &c0[o, 0], H * sizeof(floating))
        if gates_p != NULL:
            memcpy(th_p, &h0[0, 0], <size_t>B * H * sizeof(floating))
            memcpy(tc_p, &c0[0, 0], <size_t>B * H * sizeof(floating))
        if floating is float:
            lstm_forward_f32(T, B, I, H, bs_p, off_p, perm_p, src, &w_ih[0, 0], sgemm,
                             &zx[0, 0], &wf[0], &bf[0], &hbuf[0, 0, 0], &cbuf[0, 0],
                             &y[0, 0, 0], gates_p, tc_p, th_p, tu, nthreads)
        else:
            lstm_forward_f64(T, B, I, H, bs_p, off_p, perm_p, src, &w_ih[0, 0], dgemm,
                             &zx[0, 0], &wf[0], &bf[0], &hbuf[0, 0, 0], &cbuf[0, 0],
                             &y[0, 0, 0], gates_p, tc_p, th_p, tu, nthreads)
        for r in range(B):  # a row's last h is in the buffer its last step wrote
            o = perm_p[r] if perm_p != NULL else r
            memcpy(&h_n[o, 0], &hbuf[(steps[r] if perm_p != NULL else T) & 1, r, 0],
                   H * sizeof(floating))
            memcpy(&c_n[o, 0], &cbuf[r, 0], H * sizeof(floating))


def backward(floating[:, :, ::1] gates, floating[:, :, ::1] tc, floating[:, :, ::1] th,
             floating[:, :, ::1] x, floating[:, ::1] w_ih, floating[::1] wb,
             floating[:, :, ::1] dy, floating[:, ::1] dh_n, floating[:, ::1] dc_n,
             Sequences seq, floating[:, :, ::1] dx, floating[:, ::1] dw_ih,
             floating[:, ::1] dw_hh, floating[::1] db, floating[:, ::1] dh0,
             floating[:, ::1] dc0, floating[:, ::1] dz, floating[:, ::1] xp,
             floating[:, ::1] hp, floating[:, ::1] dxp, floating[:, ::1] dh,
             floating[:, ::1] dc, int tu, int nthreads):
    """One layer backward. xp, dxp [M, I] and hp [M, H]: scratch for lengths (else None)."""
    cdef int T = x.shape[0], B = x.shape[1], I = x.shape[2], H = dh_n.shape[1], G = 4 * H
    cdef int r, o
    cdef int[::1] perm, bs
    cdef ptrdiff_t[::1] off
    cdef int *bs_p = NULL
    cdef int *perm_p = NULL
    cdef ptrdiff_t *off_p = NULL
    cdef Py_ssize_t M = <Py_ssize_t>T * B
    cdef floating *xs = &x[0, 0, 0]
    cdef floating *hs = &th[0, 0, 0]  # h_{t-1} for every step: th[0:T]
    cdef floating *dxs = &dx[0, 0, 0]
    cdef Py_ssize_t vl = FL_VBYTES // sizeof(floating), nub = (H + vl - 1) // vl
    if seq is not None:
        if seq.perm.shape[0] != B or seq.bs.shape[0] != T:
            raise ValueError("lstm_cpu.backward: seq was built for another T or B")
        perm, bs, off, M = seq.perm, seq.bs, seq.off, seq.M
        perm_p, bs_p, off_p = &perm[0], &bs[0], &off[0]
        if (xp is None or xp.shape[0] != M or xp.shape[1] != I or hp is None
                or hp.shape[0] != M or hp.shape[1] != H or dxp is None
                or dxp.shape[0] != M or dxp.shape[1] != I):
            raise ValueError("lstm_cpu.backward: xp, dxp (M, I), hp (M, H) scratch needed")
    if (gates.shape[0] != T or gates.shape[1] != B or gates.shape[2] != G
            or tc.shape[0] != T + 1 or tc.shape[1] != B or tc.shape[2] != H
            or th.shape[0] != T + 1 or th.shape[1] != B or th.shape[2] != H
            or w_ih.shape[0] != G or w_ih.shape[1] != I or wb.shape[0] != nub * G * vl
            or dy.shape[0] != T or dy.shape[1] != B or dy.shape[2] != H
            or dh_n.shape[0] != B or dc_n.shape[0] != B or dc_n.shape[1] != H
            or dx.shape[0] != T or dx.shape[1] != B or dx.shape[2] != I
            or dw_ih.shape[0] != G or dw_ih.shape[1] != I or dw_hh.shape[0] != G
            or dw_hh.shape[1] != H or db.shape[0] != G or dh0.shape[0] != B
            or dh0.shape[1] != H or dc0.shape[0] != B or dc0.shape[1] != H
            or dz.shape[0] != M or dz.shape[1] != G or dh.shape[0] != B or dh.shape[1] != H
            or dc.shape[0] != B or dc.shape[1] != H):
        raise ValueError("lstm_cpu.backward: buffer shapes do not match x (T, B, I), dh_n (B, H)")
    with nogil:
        for r in range(B):
            o = perm_p[r] if perm_p != NULL else r
            memcpy(&dh[r, 0], &dh_n[o, 0], H * sizeof(floating))
            memcpy(&dc[r, 0], &dc_n[o, 0], H * sizeof(floating))
        if perm_p != NULL:  # x and h_{t-1} of the real rows, packed; dx comes back in dxp
            gather_rows(&xp[0, 0], xs, T, B, I, bs_p, off_p, perm_p)
            gather_rows(&hp[0, 0], hs, T, B, H, bs_p, off_p, perm_p)
            xs, hs, dxs = &xp[0, 0], &hp[0, 0], &dxp[0, 0]
        if floating is float:
            lstm_backward_f32(T, B, I, H, bs_p, off_p, perm_p, &wb[0], &gates[0, 0, 0],
                              &tc[0, 0, 0], &dy[0, 0, 0], &dh[0, 0], &dc[0, 0], &dz[0, 0],
                              xs, hs, &w_ih[0, 0], sgemm, dxs, &dw_ih[0, 0], &dw_hh[0, 0],
                              &db[0], tu, nthreads)
        else:
            lstm_backward_f64(T, B, I, H, bs_p, off_p, perm_p, &wb[0], &gates[0, 0, 0],
                              &tc[0, 0, 0], &dy[0, 0, 0], &dh[0, 0], &dc[0, 0], &dz[0, 0],
                              xs, hs, &w_ih[0, 0], dgemm, dxs, &dw_ih[0, 0], &dw_hh[0, 0],
                              &db[0], tu, nthreads)
        for r in range(B):
            o = perm_p[r] if perm_p != NULL else r
            memcpy(&dh0[o, 0], &dh[r, 0], H * sizeof(floating))
            memcpy(&dc0[o, 0], &dc[r, 0], H * sizeof(floating))
        if perm_p != NULL:
            scatter_rows(&dx[0, 0, 0], &dxp[0, 0], T, B, I, bs_p, off_p, perm_p)
