# Optimizer steps in one pass over memory, for fastlstm.keras.optimizers: NumPy's version of
# an Adam step is ten array operations, each a pass over every variable, and for the small
# variables of a small model each costs more in call overhead than in arithmetic.
#
# Bit for bit NumPy's result: the same operations in the same order in the variable's own
# precision, each rounded on its own (setup.py builds this module with -ffp-contract=off,
# so no multiply-add is fused).
from libc.math cimport sqrt, sqrtf
cimport numpy as cnp

import numpy as np

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
    cdef Py_ssize_t n = cnp.PyArray_SIZE(pa), i
    cdef int t = cnp.PyArray_TYPE(pa)
    cdef float *pf
    cdef float *gf
    cdef float *mf
    cdef float *vf
    cdef float *hf
    cdef float c1f, c2f, epsf, af, d, vv
    cdef double *pd
    cdef double *gd
    cdef double *md
    cdef double *vd
    cdef double *hd
    cdef double dd, vvd
    if t == cnp.NPY_FLOAT32:
        pf = <float *>cnp.PyArray_DATA(pa)
        gf = <float *>cnp.PyArray_DATA(<cnp.ndarray>g)
        mf = <float *>cnp.PyArray_DATA(<cnp.ndarray>m)
        vf = <float *>cnp.PyArray_DATA(<cnp.ndarray>v)
        hf = <float *>cnp.PyArray_DATA(<cnp.ndarray>vhat) if vhat is not None else NULL
        c1f, c2f = <float>one_minus_beta_1, <float>one_minus_beta_2
        epsf, af = <float>epsilon, <float>alpha
        with nogil:
            for i in range(n):
                d = gf[i] - mf[i]
                d = d * c1f
                mf[i] = mf[i] + d
                d = gf[i] * gf[i]
                d = d - vf[i]
                d = d * c2f
                vf[i] = vf[i] + d
                vv = vf[i]
                if hf != NULL:
                    if hf[i] == hf[i] and (vv != vv or vv > hf[i]):  # np.maximum: NaN wins
                        hf[i] = vv
                    vv = hf[i]
                d = sqrtf(vv)
                d = d + epsf
                d = mf[i] / d
                d = d * af
                pf[i] = pf[i] - d
        return True
    if t == cnp.NPY_FLOAT64:
        pd = <double *>cnp.PyArray_DATA(pa)
        gd = <double *>cnp.PyArray_DATA(<cnp.ndarray>g)
        md = <double *>cnp.PyArray_DATA(<cnp.ndarray>m)
        vd = <double *>cnp.PyArray_DATA(<cnp.ndarray>v)
        hd = <double *>cnp.PyArray_DATA(<cnp.ndarray>vhat) if vhat is not None else NULL
        with nogil:
            for i in range(n):
                dd = gd[i] - md[i]
                dd = dd * one_minus_beta_1
                md[i] = md[i] + dd
                dd = gd[i] * gd[i]
                dd = dd - vd[i]
                dd = dd * one_minus_beta_2
                vd[i] = vd[i] + dd
                vvd = vd[i]
                if hd != NULL:
                    if hd[i] == hd[i] and (vvd != vvd or vvd > hd[i]):
                        hd[i] = vvd
                    vvd = hd[i]
                dd = sqrt(vvd)
                dd = dd + epsilon
                dd = md[i] / dd
                dd = dd * alpha
                pd[i] = pd[i] - dd
        return True
    return False
