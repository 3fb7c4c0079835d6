# The compiled LSTM layer: BLAS for the big GEMMs, lstm_cpu.h for the time loop, in one
# variant per instruction set (kernels.h); the packed weights say which variant runs.
#
# Forward:  the recurrence, x_t W_ih^T + h_{t-1} W_hh^T fused into each step's register
#           block, or hoisted into one GEMM before the loop when the workspace has xw
#           (the adapter decides: cython_cpu.hoists_input).
# Backward: the fused reverse recurrence writes dz for every step, then three GEMMs:
#           dx = dz W_ih, dW_ih = dz^T x, dW_hh = dz^T h_{t-1}; db = column sums of dz.
# With lengths, the real (step, row) pairs are packed time-major, longest rows first
# (torch's PackedSequence layout, fastlstm/backends/sequences.py, taken as it is):
# M = sum(lengths) rows, and padding costs nothing.
# Every GEMM is row-major through scipy's BLAS (loaded on first need: load_blas), operands
# swapped, so nothing is copied, and runs as units of the kernels' own pool job (pool.h),
# each on a slice (BLAS single-threaded).
# The adapter (fastlstm/backends/cython_cpu.py) packs the weights and owns the scratch
# (Workspace); the C kernels allocate nothing.
from libc.stddef cimport ptrdiff_t
from libc.string cimport memcpy, memset
from cpython.pycapsule cimport PyCapsule_GetName, PyCapsule_GetPointer
cimport numpy as cnp

import numpy as np

cnp.import_array()

cdef extern from *:
    """
    /* numpy's headers bring <complex.h>, whose macro I would rename every I here */
    #undef I
    """

ctypedef fused floating:
    float
    double

cdef extern from "dispatch.h" nogil:
    int FL_DZ_PAD_BYTES  # dz rows are 4H items plus this many bytes (kernels.h)
    ctypedef void (*fl_gemm_f32)(char *, char *, int *, int *, int *, float *, float *, int *,
                                 float *, int *, float *, float *, int *)
    ctypedef void (*fl_gemm_f64)(char *, char *, int *, int *, int *, double *, double *,
                                 int *, double *, int *, double *, double *, int *)
    ctypedef void (*fl_forward_f32)(
        int T, int B, int I, int H, const int *bs, const ptrdiff_t *off, const int *perm,
        const float *xr, const float *wfi, const float *wf, const float *bf, float *hbuf,
        float *cbuf, float *y, float *gates, float *tc, float *th, const float *w_ih,
        fl_gemm_f32 gemm, float *xw, int mode, int nthreads) noexcept nogil
    ctypedef void (*fl_forward_f64)(
        int T, int B, int I, int H, const int *bs, const ptrdiff_t *off, const int *perm,
        const double *xr, const double *wfi, const double *wf, const double *bf,
        double *hbuf, double *cbuf, double *y, double *gates, double *tc, double *th,
        const double *w_ih, fl_gemm_f64 gemm, double *xw, int mode, int nthreads) noexcept nogil
    ctypedef void (*fl_backward_f32)(
        int T, int B, int I, int H, const int *bs, const ptrdiff_t *off, const int *perm,
        const float *wb, const float *gates, const float *tc, const float *dy, float *dh,
        float *dc, float *dz, const float *xr, const float *hr, const float *w_ih,
        fl_gemm_f32 gemm, float *dxr, float *dw_ih, float *dw_hh, float *db,
        int mode, int nthreads) noexcept nogil
    ctypedef void (*fl_backward_f64)(
        int T, int B, int I, int H, const int *bs, const ptrdiff_t *off, const int *perm,
        const double *wb, const double *gates, const double *tc, const double *dy,
        double *dh, double *dc, double *dz, const double *xr, const double *hr,
        const double *w_ih, fl_gemm_f64 gemm, double *dxr, double *dw_ih, double *dw_hh,
        double *db, int mode, int nthreads) noexcept nogil
    ctypedef struct fl_kernels:
        const char *name
        int vbytes
        int rows
        int gate_group
        fl_forward_f32 forward_f32
        fl_forward_f64 forward_f64
        fl_backward_f32 backward_f32
        fl_backward_f64 backward_f64
    const fl_kernels *fl_built[]
    int fl_cpu_supports(const char *isa)

cdef extern from "pool.h" nogil:
    void fl_pool_set_helper_delay_us(int us)
    void fl_pool_stats(long *by_caller, long *by_helpers, long *last_join_us)
    void fl_pool_reset_stats()
    void fl_pool_set_spin_us(int us)
    int fl_pool_spin_us()
    int fl_pool_helpers()

# How a call splits its work into units (lstm_cpu.h): chunks of rows for the whole
# sequence, or a phase per time step
cdef enum:
    MODE_ROWS_C = 0
    MODE_STEPS_C = 1
    NO_WAKE_C = 0x100  # lstm_cpu.h FL_NO_WAKE
MODE_ROWS = MODE_ROWS_C
MODE_STEPS = MODE_STEPS_C
NO_WAKE = NO_WAKE_C


def pool_stats():
    """{"caller", "helpers"}: work units the calling threads and the pool's helper threads
    ran since pool_reset_stats(); "join_us": how long after its call started the last
    helper to join joined (-1: none); "started": helper threads started so far."""
    cdef long by_caller, by_helpers, join_us
    fl_pool_stats(&by_caller, &by_helpers, &join_us)
    return {"caller": by_caller, "helpers": by_helpers, "join_us": join_us,
            "started": fl_pool_helpers()}


def pool_reset_stats():
    fl_pool_reset_stats()


def pool_set_helper_delay_us(int us):
    """For the tests: every helper that sees a new call sleeps `us` microseconds before it
    tries to join, as one woken late on a busy machine would."""
    fl_pool_set_helper_delay_us(us)


def pool_spin_us(us=None):
    """How long (us) a helper looks for the next call before it sleeps; set it with `us`.
    Returns the value in force."""
    if us is not None:
        if us < 0:
            raise ValueError(f"us must be >= 0, got {us}")
        fl_pool_set_spin_us(us)
    return fl_pool_spin_us()


# scipy's BLAS (?gemm), loaded when a call first needs it (backward, or a forward that
# hoists its input projection): the adapter hands its addresses to load_blas_at (the
# library loaded from its file), else load_blas takes them from scipy.linalg.
cdef fl_gemm_f32 sgemm = NULL
cdef fl_gemm_f64 dgemm = NULL


def load_blas():
    """Take ?gemm from scipy.linalg.cython_blas (once; any thread may call it)."""
    global sgemm, dgemm
    if sgemm != NULL and dgemm != NULL:
        return
    from scipy.linalg import cython_blas
    capi = cython_blas.__pyx_capi__
    d = <fl_gemm_f64>PyCapsule_GetPointer(capi["dgemm"], PyCapsule_GetName(capi["dgemm"]))
    f = <fl_gemm_f32>PyCapsule_GetPointer(capi["sgemm"], PyCapsule_GetName(capi["sgemm"]))
    dgemm, sgemm = d, f


def load_blas_at(size_t sgemm_address, size_t dgemm_address):
    """Take ?gemm at these addresses (Fortran BLAS, 32-bit integers): those of a library
    the adapter loaded itself (fastlstm/_blas.py bundled_openblas). Once; a later call, or
    load_blas, changes nothing."""
    global sgemm, dgemm
    if sgemm != NULL and dgemm != NULL:
        return
    if sgemm_address == 0 or dgemm_address == 0:
        raise ValueError("the BLAS addresses must not be 0")
    dgemm, sgemm = <fl_gemm_f64>dgemm_address, <fl_gemm_f32>sgemm_address


cdef inline int _need_blas() except -1:
    if sgemm == NULL or dgemm == NULL:
        load_blas()
    return 0


def variants():
    """The instruction-set variants built into this extension, best first: one dict each,
    {"name", "vector_bytes", "rows" (per register block), "gate_group" (the forward
    layouts' GP, see lstm_cpu.h), "runs_here" (this CPU can run it)}."""
    out = []
    cdef int i = 0
    while fl_built[i] != NULL:
        out.append({"name": fl_built[i].name.decode(), "vector_bytes": fl_built[i].vbytes,
                    "rows": fl_built[i].rows, "gate_group": fl_built[i].gate_group,
                    "runs_here": bool(fl_cpu_supports(fl_built[i].name))})
        i += 1
    return out


cdef const fl_kernels *_variant(str isa) except NULL:
    """The kernels of variant `isa`, which must be built and runnable on this CPU."""
    cdef int i = 0
    while fl_built[i] != NULL:
        if fl_built[i].name.decode() == isa:
            if not fl_cpu_supports(fl_built[i].name):
                raise ValueError(f"lstm_cpu: this CPU cannot run the {isa} kernels")
            return fl_built[i]
        i += 1
    raise ValueError(f"lstm_cpu: no {isa!r} kernels in this build")


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


def pack_gate_blocks(const floating[:, ::1] w, floating[::1] out, int H, int vl, int gp):
    """The forward layouts (lstm_cpu.h wfi, wf): w [4H, K] gate rows into out
    [NUB][4/gp][K][gp][vl], out[u][p][k][j][l] = w[(p gp + j) H + u vl + l][k], 0 past H.
    One pass in C: a training step repacks every layer's weights."""
    cdef Py_ssize_t K = w.shape[1], nub = (H + vl - 1) // vl, u, p, k, j, l, n, step
    cdef const floating *src
    cdef floating *dst
    if w.shape[0] != 4 * H or vl < 1 or gp not in (1, 2, 4):
        raise ValueError("pack_gate_blocks: w must be [4H, K], vl >= 1, gp in 1, 2, 4")
    if out.shape[0] != nub * 4 * K * vl:
        raise ValueError(f"pack_gate_blocks: out must hold {nub * 4 * K * vl} items")
    if out.shape[0] == 0:
        return
    step = gp * vl  # out's items from one k to the next within a (u, p) panel
    with nogil:  # each weight row read straight through, written with a fixed stride
        for u in range(nub):
            n = H - u * vl if H - u * vl < vl else vl  # the units of this block, 0 past H
            for p in range(4 // gp):
                for j in range(gp):
                    dst = &out[((u * (4 // gp) + p) * K) * step + j * vl]
                    for l in range(n):
                        src = &w[(p * gp + j) * H + u * vl + l, 0]
                        for k in range(K):
                            dst[k * step + l] = src[k]
                    for l in range(n, vl):
                        for k in range(K):
                            dst[k * step + l] = 0


def pack_bias(const floating[::1] b, floating[::1] out, int H, int vl):
    """The forward bias layout (lstm_cpu.h bf): b [4H] into out [NUB][4][vl],
    out[u][g][l] = b[g H + u vl + l], 0 past H."""
    cdef Py_ssize_t nub = (H + vl - 1) // vl, u, g, l
    if b.shape[0] != 4 * H or vl < 1 or out.shape[0] != nub * 4 * vl:
        raise ValueError(f"pack_bias: b must hold {4 * H} items and out {nub * 4 * vl}")
    with nogil:
        for u in range(nub):
            for g in range(4):
                for l in range(vl):
                    out[(u * 4 + g) * vl + l] = b[g * H + u * vl + l] if u * vl + l < H else 0


def pack_unit_columns(const floating[:, ::1] w_hh, floating[::1] out, int vl):
    """Backward's layout (lstm_cpu.h wb): w_hh [G, H] into out [NUB][G][vl],
    out[u][k][l] = w_hh[k][u vl + l], 0 past H."""
    cdef Py_ssize_t G = w_hh.shape[0], H = w_hh.shape[1], nub = (H + vl - 1) // vl, u, k, l
    cdef Py_ssize_t n
    if vl < 1 or out.shape[0] != nub * G * vl:
        raise ValueError(f"pack_unit_columns: out must hold {nub * G * vl} items, vl >= 1")
    with nogil:
        for u in range(nub):
            n = H - u * vl if H - u * vl < vl else vl
            for k in range(G):
                memcpy(&out[(u * G + k) * vl], &w_hh[k, u * vl], n * sizeof(floating))
                for l in range(n, vl):
                    out[(u * G + k) * vl + l] = 0


cdef void *_data(arr, Py_ssize_t n, Py_ssize_t itemsize, what) except NULL:
    """Address of a C-contiguous float array of n items of `itemsize` bytes, checked."""
    cdef cnp.ndarray a
    if type(arr) is np.ndarray:
        a = <cnp.ndarray>arr
        if (cnp.PyArray_IS_C_CONTIGUOUS(a) and cnp.PyArray_SIZE(a) == n
                and cnp.PyArray_ITEMSIZE(a) == itemsize
                and cnp.PyArray_TYPE(a) in (cnp.NPY_FLOAT32, cnp.NPY_FLOAT64)):
            return cnp.PyArray_DATA(a)
    raise ValueError(f"lstm_cpu: {what} must be a C-contiguous float array of {n} items of "
                     f"{itemsize} bytes")


def pack(w_ih, w_hh, b, str isa):
    """PackedWeights of one layer-direction for variant `isa`: wfi, wf and bf packed in C
    into one 64-byte aligned buffer (a training step repacks every layer). w_ih [G, I],
    w_hh [G, H], b [G], C-contiguous, of one float dtype."""
    cdef const fl_kernels *k = _variant(isa)
    dt = w_hh.dtype
    cdef Py_ssize_t itemsize = dt.itemsize, vl = k.vbytes // itemsize
    cdef Py_ssize_t H = w_hh.shape[1], I = w_ih.shape[1], nub = (H + vl - 1) // vl
    cdef Py_ssize_t n_wfi = nub * 4 * I * vl, n_wf = nub * 4 * H * vl, n_bf = nub * 4 * vl
    cdef Py_ssize_t step = 64 // itemsize  # items per 64 bytes: every part starts aligned
    cdef Py_ssize_t a_wf = (n_wfi + step - 1) // step * step
    cdef Py_ssize_t a_bf = a_wf + (n_wf + step - 1) // step * step
    raw = np.empty((a_bf + n_bf) * itemsize + 64, np.uint8)
    cdef size_t at = <size_t>cnp.PyArray_DATA(<cnp.ndarray>raw)
    cdef Py_ssize_t start = <Py_ssize_t>((64 - at % 64) % 64)
    flat = raw[start:start + (a_bf + n_bf) * itemsize].view(dt)
    wfi, wf, bf = flat[:n_wfi], flat[a_wf:a_wf + n_wf], flat[a_bf:a_bf + n_bf]
    pack_gate_blocks(w_ih, wfi, H, vl, k.gate_group)
    pack_gate_blocks(w_hh, wf, H, vl, k.gate_group)
    pack_bias(b, bf, H, vl)
    return PackedWeights(w_ih, wfi, wf, bf, H, isa)


cdef class PackedWeights:
    """One layer-direction's weights in the kernels' layouts (see lstm_cpu.h).

    w_ih [G, I] as it is (the GEMMs); wfi [NUB][4/GP][I][GP][VL], wf [NUB][4/GP][H][GP][VL]
    and bf [NUB][4][VL] for the forward step; wb [NUB][G][VL] for backward, added when first
    needed. VL = the vector bytes of instruction-set variant `isa` / itemsize: these are
    that variant's layouts, and its kernels run every call made with them. Sizes are
    checked here, once.
    """
    cdef readonly object w_ih, wfi, wf, bf, wb
    cdef readonly int n_in, H, nub, itemsize
    cdef const fl_kernels *k
    cdef void *p_w_ih
    cdef void *p_wfi
    cdef void *p_wf
    cdef void *p_bf
    cdef void *p_wb

    def __init__(self, w_ih, wfi, wf, bf, int H, str isa):
        self.k = _variant(isa)
        self.itemsize = w_ih.dtype.itemsize
        cdef Py_ssize_t vl = self.k.vbytes // self.itemsize
        self.H, self.n_in = H, w_ih.shape[1]
        self.nub = (H + vl - 1) // vl
        self.p_w_ih = _data(w_ih, 4 * H * self.n_in, self.itemsize, "w_ih")
        self.p_wfi = _data(wfi, self.nub * self.n_in * 4 * vl, self.itemsize, "wfi")
        self.p_wf = _data(wf, self.nub * H * 4 * vl, self.itemsize, "wf")
        self.p_bf = _data(bf, self.nub * 4 * vl, self.itemsize, "bf")
        self.w_ih, self.wfi, self.wf, self.bf = w_ih, wfi, wf, bf

    @property
    def isa(self):
        """The instruction-set variant whose kernels and layouts these are."""
        return self.k.name.decode()

    def set_wb(self, wb):
        """Once only: a kernel on another thread may be reading the layout set first."""
        cdef Py_ssize_t vl = self.k.vbytes // self.itemsize
        if self.wb is not None:
            raise ValueError("lstm_cpu: wb is set already; a published layout is never replaced")
        self.p_wb = _data(wb, self.nub * 4 * self.H * vl, self.itemsize, "wb")
        self.wb = wb


def _regions(int T, int B, int I, int H, Py_ssize_t M, bint packed_rows, bint backward,
             bint hoist, int itemsize):
    """(name, shape) of every scratch array of one call, forward's first."""
    out = [("hbuf", (2, B, H)), ("cbuf", (B, H))]
    if packed_rows:
        out.append(("xp", (M, I)))
    if hoist:
        out.append(("xw", (M, 4 * H)))
    if backward:
        out.append(("dz", (M, _dz_row(H, itemsize))))
        if packed_rows:
            out += [("dxp", (M, I)), ("hp", (M, H))]
    return out


cdef int _dz_row(int H, int itemsize):
    return 4 * H + FL_DZ_PAD_BYTES // itemsize  # FL_DZ_LD


cdef Py_ssize_t _round64(Py_ssize_t n):
    return (n + 63) // 64 * 64


cdef class Workspace:
    """Scratch for one call shape (dtype, T, B, I, H, M), carved from a byte buffer the
    caller owns (and may reuse for any call that fits: see nbytes), or from its own.

    hbuf [2][B][H] holds the previous and current h (backward: dh in hbuf[0]); cbuf [B][H]
    c (backward: dc); with lengths, xp [M][I] packed x rows; with hoist=True, xw [M][G]
    for the input projection of every step, computed before the time loop by one GEMM
    (the kernels then skip the x terms in their steps). What only backward needs is
    there with backward=True (or added by for_backward()), so inference never allocates
    it: dz [M][G + pad] gate gradients (rows padded: kernels.h FL_DZ_LD) and, with
    lengths, dxp [M][I] and hp [M][H].
    """
    cdef readonly object arrays
    cdef readonly int T, B, n_in, H, itemsize
    cdef readonly Py_ssize_t M
    cdef readonly bint packed_rows
    cdef void *hbuf
    cdef void *cbuf
    cdef void *xp
    cdef void *xw
    cdef void *dz
    cdef void *dxp
    cdef void *hp

    @staticmethod
    def nbytes(dtype, int T, int B, int I, int H, Py_ssize_t M, bint packed_rows,
               bint backward=False, bint hoist=False):
        """Bytes of buffer a Workspace of this shape needs (64 for alignment included)."""
        cdef Py_ssize_t n = 64, itemsize = np.dtype(dtype).itemsize
        for _, shape in _regions(T, B, I, H, M, packed_rows, backward, hoist, itemsize):
            n += _round64(itemsize * int(np.prod(shape)))
        return n

    def __init__(self, dtype, int T, int B, int I, int H, Py_ssize_t M, bint packed_rows,
                 bint backward=False, buf=None, bint hoist=False):
        self.T, self.B, self.n_in, self.H, self.M = T, B, I, H, M
        self.itemsize = np.dtype(dtype).itemsize
        self.packed_rows = packed_rows
        self.arrays = {}
        need = Workspace.nbytes(dtype, T, B, I, H, M, packed_rows, backward, hoist)
        if buf is None:
            buf = np.empty(need, np.uint8)
        elif (not isinstance(buf, np.ndarray) or buf.dtype != np.uint8 or buf.ndim != 1
              or not buf.flags.c_contiguous or not buf.flags.writeable or buf.size < need):
            raise ValueError(f"lstm_cpu: the workspace buffer must be a writable C-contiguous "
                             f"uint8 array of at least {need} bytes")
        self.arrays["buffer"] = buf
        cdef Py_ssize_t at = (-buf.ctypes.data) % 64
        cdef void *p
        for name, shape in _regions(T, B, I, H, M, packed_rows, backward, hoist, self.itemsize):
            n = self.itemsize * int(np.prod(shape))
            a = self.arrays[name] = buf[at:at + n].view(dtype).reshape(shape)
            at += _round64(n)
            p = <void *><size_t>a.ctypes.data
            if name == "hbuf":
                self.hbuf = p
            elif name == "cbuf":
                self.cbuf = p
            elif name == "xp":
                self.xp = p
            elif name == "xw":
                self.xw = p
            elif name == "dz":
                self.dz = p
            elif name == "dxp":
                self.dxp = p
            else:
                self.hp = p

    cdef void *_new(self, name, shape, dtype) except NULL:
        a = self.arrays[name] = np.empty(shape, dtype)
        return <void *><size_t>a.ctypes.data

    def for_backward(self):
        if self.dz == NULL:
            dtype = self.arrays["hbuf"].dtype
            self.dz = self._new("dz", (self.M, _dz_row(self.H, self.itemsize)), dtype)
            if self.packed_rows:
                self.dxp = self._new("dxp", (self.M, self.n_in), dtype)
                self.hp = self._new("hp", (self.M, self.H), dtype)
        return self


cdef int _check_call(PackedWeights pw, Workspace ws, seq, int T, int B, int I, int H,
                     Py_ssize_t itemsize) except -1:
    """The weights, the workspace and the packed-sequence layout were made for this call."""
    if pw.itemsize != itemsize or pw.n_in != I or pw.H != H:
        raise ValueError(f"lstm_cpu: packed weights are for I={pw.n_in}, H={pw.H}, "
                         f"{pw.itemsize}-byte floats; the call has I={I}, H={H}, {itemsize}")
    if seq.T != T or seq.B != B:
        raise ValueError(f"lstm_cpu: the packed sequences are for T={seq.T}, B={seq.B}; "
                         f"the call has T={T}, B={B}")
    if (ws.itemsize != itemsize or ws.T != T or ws.B != B or ws.n_in != I or ws.H != H
            or ws.M != seq.M or ws.packed_rows != (not seq.dense)):
        raise ValueError("lstm_cpu: the workspace was made for another call shape")
    return 0


cdef int _sequence_arrays(seq, const int **perm, const int **bs, const ptrdiff_t **off,
                          const int **steps) except -1:
    """Pointers to seq's arrays, checked; all NULL for a dense batch, whose rows need no
    gathering (the kernels then take every row at every step)."""
    cdef const int[::1] p, b, s
    cdef const ptrdiff_t[::1] o
    if seq.dense:
        perm[0] = bs[0] = steps[0] = NULL
        off[0] = NULL
        return 0
    p, b, o, s = seq.perm, seq.batch_sizes, seq.offsets, seq.steps
    if (p.shape[0] != seq.B or s.shape[0] != seq.B or b.shape[0] != seq.T
            or o.shape[0] != seq.T + 1):
        raise ValueError("lstm_cpu: the packed-sequence arrays do not match its T and B")
    # seq keeps the arrays alive for the whole call
    perm[0], bs[0], off[0], steps[0] = &p[0], &b[0], &o[0], &s[0]
    return 0


def forward(const floating[:, :, ::1] x, const floating[:, ::1] h0,
            const floating[:, ::1] c0, seq,
            floating[:, :, ::1] y, floating[:, ::1] h_n, floating[:, ::1] c_n,
            floating[:, :, ::1] gates, floating[:, :, ::1] tc, floating[:, :, ::1] th,
            PackedWeights pw, Workspace ws, int mode, int nthreads):
    """One layer forward. seq: the PackedSequences of (T, B); gates/tc/th: the tape, or
    None in inference."""
    cdef int T = x.shape[0], B = x.shape[1], I = x.shape[2], H = h0.shape[1]
    cdef int r, o
    cdef const int *bs_p
    cdef const int *perm_p
    cdef const int *steps_p
    cdef const ptrdiff_t *off_p
    cdef const floating *src = &x[0, 0, 0]
    cdef floating *gates_p = NULL
    cdef floating *tc_p = NULL
    cdef floating *th_p = NULL
    cdef floating *hbuf = <floating *>ws.hbuf
    cdef floating *cbuf = <floating *>ws.cbuf
    _check_call(pw, ws, seq, T, B, I, H, sizeof(floating))
    if (h0.shape[0] != B or c0.shape[0] != B or c0.shape[1] != H or y.shape[0] != T
            or y.shape[1] != B or y.shape[2] != H or h_n.shape[0] != B or h_n.shape[1] != H
            or c_n.shape[0] != B or c_n.shape[1] != H):
        raise ValueError("lstm_cpu.forward: buffer shapes do not match x (T, B, I), h0 (B, H)")
    if gates is not None:
        if (gates.shape[0] != T or gates.shape[1] != B or gates.shape[2] != 4 * H
                or tc is None or tc.shape[0] != T + 1 or tc.shape[1] != B or tc.shape[2] != H
                or th is None or th.shape[0] != T + 1 or th.shape[1] != B or th.shape[2] != H):
            raise ValueError("lstm_cpu.forward: tape shapes do not match x and h0")
        gates_p, tc_p, th_p = &gates[0, 0, 0], &tc[0, 0, 0], &th[0, 0, 0]
    _sequence_arrays(seq, &perm_p, &bs_p, &off_p, &steps_p)
    if ws.xw != NULL:
        _need_blas()
    with nogil:
        if perm_p != NULL:
            gather_rows(<floating *>ws.xp, src, T, B, I, bs_p, off_p, perm_p)
            src = <const floating *>ws.xp
        for r in range(B):  # the state in sorted row order
            o = perm_p[r] if perm_p != NULL else r
            memcpy(hbuf + r * H, &h0[o, 0], H * sizeof(floating))
            memcpy(cbuf + r * H, &c0[o, 0], H * sizeof(floating))
        if gates_p != NULL:
            memcpy(th_p, &h0[0, 0], <size_t>B * H * sizeof(floating))
            memcpy(tc_p, &c0[0, 0], <size_t>B * H * sizeof(floating))
        if floating is float:
            pw.k.forward_f32(T, B, I, H, bs_p, off_p, perm_p, src, <float *>pw.p_wfi,
                             <float *>pw.p_wf, <float *>pw.p_bf, hbuf, cbuf, &y[0, 0, 0],
                             gates_p, tc_p, th_p, <float *>pw.p_w_ih, sgemm,
                             <float *>ws.xw, mode, nthreads)
        else:
            pw.k.forward_f64(T, B, I, H, bs_p, off_p, perm_p, src, <double *>pw.p_wfi,
                             <double *>pw.p_wf, <double *>pw.p_bf, hbuf, cbuf, &y[0, 0, 0],
                             gates_p, tc_p, th_p, <double *>pw.p_w_ih, dgemm,
                             <double *>ws.xw, mode, nthreads)
        for r in range(B):  # a row's last h is in the buffer its last step wrote
            o = perm_p[r] if perm_p != NULL else r
            memcpy(&h_n[o, 0], hbuf + ((steps_p[r] if perm_p != NULL else T) & 1) * B * H + r * H,
                   H * sizeof(floating))
            memcpy(&c_n[o, 0], cbuf + r * H, H * sizeof(floating))


def backward(const floating[:, :, ::1] gates, const floating[:, :, ::1] tc,
             const floating[:, :, ::1] th, const floating[:, :, ::1] x,
             const floating[:, :, ::1] dy, const floating[:, ::1] dh_n,
             const floating[:, ::1] dc_n, seq, floating[:, :, ::1] dx,
             floating[:, ::1] dw_ih, floating[:, ::1] dw_hh, floating[::1] db,
             floating[:, ::1] dh0, floating[:, ::1] dc0, PackedWeights pw, Workspace ws,
             int mode, int nthreads):
    """One layer backward, from the forward's tape. seq: the PackedSequences of (T, B)."""
    cdef int T = x.shape[0], B = x.shape[1], I = x.shape[2], H = dh_n.shape[1], G = 4 * H
    cdef int r, o
    cdef const int *bs_p
    cdef const int *perm_p
    cdef const int *steps_p
    cdef const ptrdiff_t *off_p
    cdef const floating *xs = &x[0, 0, 0]
    cdef const floating *hs = &th[0, 0, 0]  # h_{t-1} for every step: th[0:T]
    cdef floating *dxs = &dx[0, 0, 0]
    cdef floating *dh = <floating *>ws.hbuf
    cdef floating *dc = <floating *>ws.cbuf
    _check_call(pw, ws, seq, T, B, I, H, sizeof(floating))
    if pw.p_wb == NULL or ws.dz == NULL:
        raise ValueError("lstm_cpu.backward: needs pw.set_wb() and ws.for_backward() first")
    if (gates.shape[0] != T or gates.shape[1] != B or gates.shape[2] != G
            or tc.shape[0] != T + 1 or tc.shape[1] != B or tc.shape[2] != H
            or th.shape[0] != T + 1 or th.shape[1] != B or th.shape[2] != H
            or dy.shape[0] != T or dy.shape[1] != B or dy.shape[2] != H
            or dh_n.shape[0] != B or dc_n.shape[0] != B or dc_n.shape[1] != H
            or dx.shape[0] != T or dx.shape[1] != B or dx.shape[2] != I
            or dw_ih.shape[0] != G or dw_ih.shape[1] != I or dw_hh.shape[0] != G
            or dw_hh.shape[1] != H or db.shape[0] != G or dh0.shape[0] != B
            or dh0.shape[1] != H or dc0.shape[0] != B or dc0.shape[1] != H):
        raise ValueError("lstm_cpu.backward: buffer shapes do not match x (T, B, I), dh_n (B, H)")
    _sequence_arrays(seq, &perm_p, &bs_p, &off_p, &steps_p)
    _need_blas()
    with nogil:
        for r in range(B):
            o = perm_p[r] if perm_p != NULL else r
            memcpy(dh + r * H, &dh_n[o, 0], H * sizeof(floating))
            memcpy(dc + r * H, &dc_n[o, 0], H * sizeof(floating))
        if perm_p != NULL:  # x and h_{t-1} of the real rows, packed; dx comes back in dxp
            gather_rows(<floating *>ws.xp, xs, T, B, I, bs_p, off_p, perm_p)
            gather_rows(<floating *>ws.hp, hs, T, B, H, bs_p, off_p, perm_p)
            xs, hs = <const floating *>ws.xp, <const floating *>ws.hp
            dxs = <floating *>ws.dxp
        if floating is float:
            pw.k.backward_f32(T, B, I, H, bs_p, off_p, perm_p, <float *>pw.p_wb,
                              &gates[0, 0, 0], &tc[0, 0, 0], &dy[0, 0, 0], dh, dc,
                              <float *>ws.dz, xs, hs, <float *>pw.p_w_ih, sgemm, dxs,
                              &dw_ih[0, 0], &dw_hh[0, 0], &db[0], mode, nthreads)
        else:
            pw.k.backward_f64(T, B, I, H, bs_p, off_p, perm_p, <double *>pw.p_wb,
                              &gates[0, 0, 0], &tc[0, 0, 0], &dy[0, 0, 0], dh, dc,
                              <double *>ws.dz, xs, hs, <double *>pw.p_w_ih, dgemm, dxs,
                              &dw_ih[0, 0], &dw_hh[0, 0], &db[0], mode, nthreads)
        for r in range(B):
            o = perm_p[r] if perm_p != NULL else r
            memcpy(&dh0[o, 0], dh + r * H, H * sizeof(floating))
            memcpy(&dc0[o, 0], dc + r * H, H * sizeof(floating))
        if perm_p != NULL:
            scatter_rows(&dx[0, 0, 0], <floating *>ws.dxp, T, B, I, bs_p, off_p, perm_p)


# --------------------------- one step, the state carried by the caller ---------------------



cdef inline bint _is_array(obj, int typenum, int ndim):
    return (type(obj) is np.ndarray and cnp.PyArray_TYPE(<cnp.ndarray>obj) == typenum
            and cnp.PyArray_NDIM(<cnp.ndarray>obj) == ndim
            and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>obj))


cdef class Stepper:
    """Inference on a stack of unidirectional layers with no per-call setup: one time step
    for a loop that carries the state itself (a sensor loop), or a whole time-major
    sequence; every check but the arrays' is made once, here.

    packs: each layer's PackedWeights, of one variant and dtype (layer 0 takes I inputs,
    the others H). step() runs exactly what a whole-sequence call runs for that step (the
    register-blocked step with x W_ih^T fused), so its results are that call's, bit for
    bit, wherever that call does not hoist its input projection into BLAS.
    """
    cdef tuple packs
    cdef readonly int L, I, H, itemsize
    cdef int typenum
    cdef object dtype
    cdef object scratch  # hbuf [2][B][H], and 2 sequences between layers, grown as needed
    cdef Py_ssize_t scratch_items

    def __init__(self, packs, dtype):
        self.packs = tuple(packs)
        self.L = len(self.packs)
        dt = np.dtype(dtype)
        if self.L < 1 or dt not in (np.float32, np.float64):
            raise ValueError("Stepper: needs at least one layer and a float32/float64 dtype")
        self.itemsize, self.typenum, self.dtype = dt.itemsize, dt.num, dt
        first = <PackedWeights?>self.packs[0]
        self.I, self.H = first.n_in, first.H
        for k, p in enumerate(self.packs):
            pw = <PackedWeights?>p
            if (pw.H != self.H or pw.itemsize != self.itemsize or pw.k != first.k
                    or (k > 0 and pw.n_in != self.H)):
                raise ValueError("Stepper: the layers' packed weights do not stack")
        self.scratch, self.scratch_items = None, 0

    cdef char *_scratch(self, Py_ssize_t items):
        """At least `items` of scratch (grown as needed, kept for the next call)."""
        if items > self.scratch_items:
            self.scratch = np.empty(items, self.dtype)
            self.scratch_items = items
        return <char *>cnp.PyArray_DATA(<cnp.ndarray>self.scratch)

    cdef int _run(self, const char *xin, int T, int B, const char *hp, const char *cp,
                  char *y, char *hs, char *cs, plans) except -1:
        """T steps of every layer: x (T, B, I) at xin; h0, c0 (L, B, H) at hp, cp (NULL:
        zeros); y (T, B, H) and h_n, c_n (L, B, H) written to y, hs, cs. plans: per layer
        (threads, mode), as cython_cpu.plan gives them."""
        cdef int L = self.L, H = self.H, l, n_in, nthreads, how
        cdef size_t row = <size_t>B * H * self.itemsize  # bytes of one (B, H) slice
        cdef size_t seq = <size_t>T * row
        # hbuf [2][B][H]; between layers, the sequence out of one and into the next
        cdef char *hb = self._scratch(2 * B * H + (2 * <Py_ssize_t>T * B * H if T > 1 and L > 1
                                                  else 0))
        cdef char *mid = hb + 2 * row
        cdef char *out
        cdef PackedWeights pw
        cdef const fl_kernels *k = (<PackedWeights>self.packs[0]).k
        cdef bint f32 = self.itemsize == 4
        for l in range(L):
            pw = <PackedWeights>self.packs[l]
            n_in = self.I if l == 0 else H
            nthreads, how = plans[l]
            if T == 1:  # one step: a sleeping helper would come too late to help
                how = how | NO_WAKE_C
            # one step writes its y where h_n goes; a sequence, where the next layer reads
            out = hs + l * row if T == 1 else y if l == L - 1 else mid + (l & 1) * seq
            with nogil:
                # h0 into the kernels' double buffer, c0 where c_n goes (updated in place)
                if hp != NULL:
                    memcpy(hb, hp + l * row, row)
                    memcpy(cs + l * row, cp + l * row, row)
                else:
                    memset(hb, 0, row)
                    memset(cs + l * row, 0, row)
                if f32:
                    k.forward_f32(T, B, n_in, H, NULL, NULL, NULL, <const float *>xin,
                                  <float *>pw.p_wfi, <float *>pw.p_wf, <float *>pw.p_bf,
                                  <float *>hb, <float *>(cs + l * row), <float *>out,
                                  NULL, NULL, NULL, <float *>pw.p_w_ih, sgemm, NULL, how,
                                  nthreads)
                else:
                    k.forward_f64(T, B, n_in, H, NULL, NULL, NULL, <const double *>xin,
                                  <double *>pw.p_wfi, <double *>pw.p_wf, <double *>pw.p_bf,
                                  <double *>hb, <double *>(cs + l * row), <double *>out,
                                  NULL, NULL, NULL, <double *>pw.p_w_ih, dgemm, NULL, how,
                                  nthreads)
                if T > 1:  # h_n: the buffer the last step wrote
                    memcpy(hs + l * row, hb + (T & 1) * row, row)
            xin = out
        if T == 1:
            memcpy(y, hs + (L - 1) * row, row)  # y: the last layer's h
        return 0

    cdef int _state(self, state, int nd, int B, const char **hp, const char **cp) except -1:
        """Pointers to a ready state (h, c), each (L, B, H) ((L, H) for nd = 1), or TypeError."""
        cdef cnp.ndarray sa
        cdef int s
        if state is None:
            return 0
        if type(state) is not tuple or len(<tuple>state) != 2:
            raise TypeError("state")
        for s in range(2):
            obj = (<tuple>state)[s]
            if type(obj) is not np.ndarray:
                raise TypeError("state")
            sa = <cnp.ndarray>obj
            if (cnp.PyArray_TYPE(sa) != self.typenum or not cnp.PyArray_IS_C_CONTIGUOUS(sa)
                    or cnp.PyArray_NDIM(sa) != nd + 1 or cnp.PyArray_DIM(sa, 0) != self.L
                    or cnp.PyArray_DIM(sa, nd) != self.H
                    or (nd == 2 and cnp.PyArray_DIM(sa, 1) != B)):
                raise TypeError("state")
            if s == 0:
                hp[0] = <const char *>cnp.PyArray_DATA(sa)
            else:
                cp[0] = <const char *>cnp.PyArray_DATA(sa)
        return 0

    def sequence(self, x, state, plans):
        """(y, (h_n, c_n)) of a whole inference call for arrays that are ready: x (T, B, I)
        and state None or a tuple of two (L, B, H), all C-contiguous of the model's dtype;
        new arrays out. plans: per layer (threads, mode) for this (T, B) (the caller has
        checked that no layer hoists its input projection). TypeError for anything else."""
        cdef int typenum = self.typenum, L = self.L, H = self.H, T, B
        if type(x) is not np.ndarray:
            raise TypeError("x")
        cdef cnp.ndarray xa = <cnp.ndarray>x
        if (cnp.PyArray_TYPE(xa) != typenum or not cnp.PyArray_IS_C_CONTIGUOUS(xa)
                or cnp.PyArray_NDIM(xa) != 3 or cnp.PyArray_DIM(xa, 2) != self.I):
            raise TypeError("x")
        T, B = <int>cnp.PyArray_DIM(xa, 0), <int>cnp.PyArray_DIM(xa, 1)
        if T < 1 or B < 1:
            raise TypeError("x")
        cdef const char *hp = NULL
        cdef const char *cp = NULL
        self._state(state, 2, B, &hp, &cp)
        cdef cnp.npy_intp dims[3]
        dims[0], dims[1], dims[2] = T, B, H
        y = cnp.PyArray_EMPTY(3, dims, typenum, 0)
        dims[0] = L
        h = cnp.PyArray_EMPTY(3, dims, typenum, 0)
        c = cnp.PyArray_EMPTY(3, dims, typenum, 0)
        self._run(<const char *>cnp.PyArray_DATA(xa), T, B, hp, cp,
                  <char *>cnp.PyArray_DATA(<cnp.ndarray>y), <char *>cnp.PyArray_DATA(<cnp.ndarray>h),
                  <char *>cnp.PyArray_DATA(<cnp.ndarray>c), plans)
        return y, (h, c)

    def step(self, x, state, threads):
        """(y, (h, c)) of one step for arrays that are ready: x (B, I) or (I,), state None
        or a tuple of two (L, B, H) (or (L, H) with a 1-D x) arrays, all C-contiguous of
        the model's dtype; new arrays out. threads(B): per layer (threads, mode) for batch
        B. Raises TypeError for anything else: the caller converts (or explains) and calls
        again."""
        cdef int typenum = self.typenum, L = self.L, H = self.H, nd, B
        if type(x) is not np.ndarray:
            raise TypeError("x")
        cdef cnp.ndarray xa = <cnp.ndarray>x
        nd = cnp.PyArray_NDIM(xa)
        if (cnp.PyArray_TYPE(xa) != typenum or not cnp.PyArray_IS_C_CONTIGUOUS(xa)
                or nd < 1 or nd > 2 or cnp.PyArray_DIM(xa, nd - 1) != self.I):
            raise TypeError("x")
        B = <int>cnp.PyArray_DIM(xa, 0) if nd == 2 else 1
        if B < 1:
            raise TypeError("x")
        cdef const char *hp = NULL
        cdef const char *cp = NULL
        self._state(state, nd, B, &hp, &cp)
        cdef cnp.npy_intp dims[3]
        dims[0], dims[1], dims[2] = L, B, H
        if nd == 1:
            dims[1] = H
        y = cnp.PyArray_EMPTY(nd, &dims[1] if nd == 2 else &dims[2], typenum, 0)
        h = cnp.PyArray_EMPTY(nd + 1, dims, typenum, 0)
        c = cnp.PyArray_EMPTY(nd + 1, dims, typenum, 0)
        self._run(<const char *>cnp.PyArray_DATA(xa), 1, B, hp, cp,
                  <char *>cnp.PyArray_DATA(<cnp.ndarray>y), <char *>cnp.PyArray_DATA(<cnp.ndarray>h),
                  <char *>cnp.PyArray_DATA(<cnp.ndarray>c), threads(B))
        return y, (h, c)
