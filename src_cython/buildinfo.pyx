# Build facts and thread control of the compiled extension, plus one BLAS call
# that proves the whole chain (Cython -> C compiler -> scipy.linalg.cython_blas
# -> OpenMP) works on this machine. The LSTM kernels live in their own modules.
from cython.parallel cimport prange, parallel
from scipy.linalg.cython_blas cimport sdot, ddot

ctypedef fused floating:
    float
    double

cdef extern from *:
    """
    #ifndef FASTLSTM_OPENMP
    #define FASTLSTM_OPENMP 0
    #endif
    #ifndef FASTLSTM_DEBUG
    #define FASTLSTM_DEBUG 0
    #endif
    #ifdef _OPENMP
    #include <omp.h>
    static int fl_max_threads(void) { return omp_get_max_threads(); }
    static void fl_set_threads(int n) { omp_set_num_threads(n); }
    static int fl_thread_num(void) { return omp_get_thread_num(); }
    #else
    static int fl_max_threads(void) { return 1; }
    static void fl_set_threads(int n) { (void)n; }
    static int fl_thread_num(void) { return 0; }
    #endif
    """
    int FASTLSTM_OPENMP
    int FASTLSTM_DEBUG
    int fl_max_threads() nogil
    void fl_set_threads(int n) nogil
    int fl_thread_num() nogil


def build_info():
    """How this extension was compiled: {'openmp', 'debug'} booleans. (The instruction-set
    variants of the kernels are lstm_cpu.variants().)"""
    return {"openmp": bool(FASTLSTM_OPENMP), "debug": bool(FASTLSTM_DEBUG)}


def get_max_threads():
    """Threads an OpenMP parallel region of this extension will use (1 without OpenMP)."""
    return fl_max_threads()


def set_threads(int n):
    """Set the OpenMP thread count of the calling thread's future parallel regions."""
    if n < 1:
        raise ValueError(f"n must be a positive int, got {n}")
    fl_set_threads(n)


def threads_used():
    """Run one parallel region and count the threads that actually took part."""
    cdef int seen[256]
    cdef int i, n = 0
    for i in range(256):
        seen[i] = 0
    with nogil, parallel():
        i = fl_thread_num()
        if i < 256:
            seen[i] = 1
    for i in range(256):
        n += seen[i]
    return n


def blas_dot(floating[::1] x, floating[::1] y):
    """x . y through scipy's BLAS without the GIL (float32 or float64, contiguous)."""
    cdef int n = x.shape[0], inc = 1
    cdef double r
    if y.shape[0] != n:
        raise ValueError(f"y must have length {n} like x, got {y.shape[0]}")
    if n == 0:
        return 0.0
    with nogil:
        if floating is float:
            r = sdot(&n, &x[0], &inc, &y[0], &inc)
        else:
            r = ddot(&n, &x[0], &inc, &y[0], &inc)
    return r
