"""Atomic operations on int64 arrays, for the kernels' shared work counters.

numba has no atomics for CPU code, so these emit LLVM's atomic instructions directly:
load (acquire), exchange and add (sequentially consistent, so the writes a thread made
before an add are seen by whoever reads the count after it), a spin-wait hint (x86
`pause`; elsewhere nothing) and yield_cpu (sched_yield). They take the array and an index and do no bounds
check: the callers index arrays they sized themselves.
"""
import sys

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .fpenv import X86

_POSIX = sys.platform != "win32"



def _pointer(context, builder, arrty, arr, idx, idxty):
    ary = context.make_array(arrty)(context, builder, arr)
    i = context.cast(builder, idx, idxty, types.intp)
    return cgutils.get_item_pointer(context, builder, arrty, ary, [i], wraparound=False)


def _check(arr, idx):
    return (isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.ndim == 1
            and isinstance(idx, types.Integer))


@intrinsic
def load(typingctx, arr, idx):
    """arr[idx], read atomically with acquire order."""
    if not _check(arr, idx):
        return None

    def codegen(context, builder, sig, args):
        ptr = _pointer(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        return builder.load_atomic(ptr, "acquire", 8)
    return types.int64(arr, idx), codegen


def _rmw(op):
    def impl(typingctx, arr, idx, val):
        if not (_check(arr, idx) and isinstance(val, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            ptr = _pointer(context, builder, sig.args[0], args[0], args[1], sig.args[1])
            v = context.cast(builder, args[2], sig.args[2], types.int64)
            return builder.atomic_rmw(op, ptr, v, "seq_cst")
        return types.int64(arr, idx, val), codegen
    return impl


add = intrinsic(_rmw("add"))
add.__doc__ = "arr[idx] += val atomically; returns the value before."
exchange = intrinsic(_rmw("xchg"))
exchange.__doc__ = "arr[idx] = val atomically; returns the value before."


@intrinsic
def pause(typingctx):
    """A spin-wait hint to the core (x86 `pause`), nothing elsewhere."""
    def codegen(context, builder, sig, args):
        if X86:
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()
    return types.none(), codegen


@intrinsic
def yield_cpu(typingctx):
    """sched_yield(): let another thread have this core (POSIX; elsewhere a pause). A
    waiting thread calls it once it has spun a while: on a loaded machine the thread it
    waits for may be queued behind it on the same core."""
    def codegen(context, builder, sig, args):
        if _POSIX:
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
        elif X86:
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")
        else:
            return context.get_dummy_value()
        builder.call(fn, [])
        return context.get_dummy_value()
    return types.none(), codegen
