# Optimizer steps in one pass over memory, for fastlstm.keras.optimizers: NumPy's version of
# an Adam step is ten array operations, each a pass over every variable, and for the small
# variables of a small model each costs more in call overhead than in arithmetic.
#
# Bit for bit NumPy's result: the same operations in the same order in the variable's own
# precision, each rounded on its own (setup.py builds this module with -ffp-contract=off,
# so no multiply-add is fused).
from libc.math cimport sqrt, sqrtf
from libc.stdint cimport uint32_t, uint64_t
cimport numpy as cnp

import numpy as np

ctypedef fused floating:
    float
    double

cnp.import_array()


cdef bint _same_layout(cnp.ndarray ref, obj):
    """obj is an ndarray of ref's type, shape and strides, contiguous in C or F order:
    element i of memory is then the same element of both."""
    if type(obj) is not np.ndarray:
        return False
    cdef cnp.ndarray a = <cnp.ndarray>obj
    cdef int k, nd = cnp.PyArray_NDIM(ref)
    if cnp.PyArray_TYPE(a) != cnp.PyArray_TYPE(ref) or cnp.PyArray_NDIM(a) != nd:
        return False
    for k in range(nd):
        if (cnp.PyArray_DIM(a, k) != cnp.PyArray_DIM(ref, k)
                or (cnp.PyArray_DIM(a, k) > 1
                    and cnp.PyArray_STRIDE(a, k) != cnp.PyArray_STRIDE(ref, k))):
            return False
    return cnp.PyArray_IS_C_CONTIGUOUS(a) or cnp.PyArray_IS_F_CONTIGUOUS(a)


def adam(p, g, m, v, vhat, double one_minus_beta_1, double one_minus_beta_2,
         double epsilon, double alpha):
    """One Adam step in place (Keras's formula, as fastlstm.keras.optimizers.Adam writes it
    with NumPy): m += (g - m) (1 - beta_1); v += (g^2 - v) (1 - beta_2); with amsgrad
    vhat = max(vhat, v) is used for v; p -= alpha m / (sqrt(v) + epsilon).

    Returns False, changing nothing, when the arrays are not all float32 or all float64 of
    one shape and memory layout (the caller then runs NumPy's version); True when done.
    """
    if type(p) is not np.ndarray:
        return False
    cdef cnp.ndarray pa = <cnp.ndarray>p
    if not (cnp.PyArray_IS_C_CONTIGUOUS(pa) or cnp.PyArray_IS_F_CONTIGUOUS(pa)):
        return False
    if not cnp.PyArray_ISWRITEABLE(pa):
        return False
    for other in (g, m, v) + ((vhat,) if vhat is not None else ()):
        if not _same_layout(pa, other):
            return False
    cdef Py_ssize_t n = cnp.PyArray_SIZE(pa)
    cdef int t = cnp.PyArray_TYPE(pa)
    cdef void *pp = cnp.PyArray_DATA(pa)
    cdef void *gp = cnp.PyArray_DATA(<cnp.ndarray>g)
    cdef void *mp = cnp.PyArray_DATA(<cnp.ndarray>m)
    cdef void *vp = cnp.PyArray_DATA(<cnp.ndarray>v)
    cdef void *hp = cnp.PyArray_DATA(<cnp.ndarray>vhat) if vhat is not None else NULL
    if t == cnp.NPY_FLOAT32:
        with nogil:
            _adam(<float *>pp, <const float *>gp, <float *>mp, <float *>vp, <float *>hp, n,
                  <float>one_minus_beta_1, <float>one_minus_beta_2, <float>epsilon,
                  <float>alpha)
        return True
    if t == cnp.NPY_FLOAT64:
        with nogil:
            _adam(<double *>pp, <const double *>gp, <double *>mp, <double *>vp,
                  <double *>hp, n, one_minus_beta_1, one_minus_beta_2, epsilon, alpha)
        return True
    return False


cdef inline floating _sqrt(floating x) noexcept nogil:
    return sqrtf(x) if floating is float else sqrt(x)


cdef void _adam(floating *p, const floating *g, floating *m, floating *v, floating *vhat,
                Py_ssize_t n, floating c1, floating c2, floating eps,
                floating alpha) noexcept nogil:
    """The step, in the variable's own precision: each operation rounded on its own."""
    cdef Py_ssize_t i
    cdef floating d, vv
    for i in range(n):
        d = g[i] - m[i]
        d = d * c1
        m[i] = m[i] + d
        d = g[i] * g[i]
        d = d - v[i]
        d = d * c2
        v[i] = v[i] + d
        vv = v[i]
        if vhat != NULL:
            if vhat[i] == vhat[i] and (vv != vv or vv > vhat[i]):  # np.maximum: NaN wins
                vhat[i] = vv
            vv = vhat[i]
        d = _sqrt(vv)
        d = d + eps
        d = m[i] / d
        d = d * alpha
        p[i] = p[i] - d


cdef bint _finite_run(const void *data, Py_ssize_t n, bint single) noexcept nogil:
    """Every one of n floats (or doubles) finite: none has an exponent of all ones (inf
    and NaN do). Integer tests or'ed together: one vectorised pass, no branch per item."""
    cdef const uint32_t *f = <const uint32_t *>data
    cdef const uint64_t *d = <const uint64_t *>data
    cdef uint32_t bad32 = 0
    cdef uint64_t bad64 = 0
    cdef Py_ssize_t i
    if single:
        for i in range(n):
            bad32 |= (f[i] & 0x7f800000u) == 0x7f800000u
        return bad32 == 0
    for i in range(n):
        bad64 |= (d[i] & 0x7ff0000000000000u) == 0x7ff0000000000000u
    return bad64 == 0


def all_finite(arrays):
    """True when every item of every array in `arrays` is finite, False when one is NaN
    or inf; None when one of them is not a contiguous float32 or float64 ndarray (the
    caller then checks with NumPy). One call for a whole model's gradients."""
    cdef cnp.ndarray a
    cdef int t
    for obj in arrays:
        if type(obj) is not np.ndarray:
            return None
        a = <cnp.ndarray>obj
        t = cnp.PyArray_TYPE(a)
        if (t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64) or not (
                cnp.PyArray_IS_C_CONTIGUOUS(a) or cnp.PyArray_IS_F_CONTIGUOUS(a)):
            return None
    for obj in arrays:
        a = <cnp.ndarray>obj
        if not _finite_run(cnp.PyArray_DATA(a), cnp.PyArray_SIZE(a),
                           cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT32):
            return False
    return True
