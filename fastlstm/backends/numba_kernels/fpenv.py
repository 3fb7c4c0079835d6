"""Flush denormals to zero inside the kernels (x86: the MXCSR FTZ and DAZ bits).

Denormal operands slow recurrent kernels by 10x or more (DESIGN.md): in BPTT the cell
gradient is multiplied by the forget gate at every step and can decay into them. The
compiled backend sets the bits in C; numba has no API for it, so these intrinsics emit
LLVM's stmxcsr / ldmxcsr directly. Every thread has its own MXCSR: each thread taking
part in a call sets and restores its own. Elsewhere than x86-64 they do nothing.
"""
import platform

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

X86 = platform.machine().lower() in ("x86_64", "amd64")
FTZ_DAZ = 0x8040  # flush-to-zero (bit 15) and denormals-are-zero (bit 6)


def _mxcsr_call(builder, name, ptr):
    fnty = ir.FunctionType(ir.VoidType(), [ptr.type])
    builder.call(cgutils.get_or_insert_function(builder.module, fnty, name), [ptr])


@intrinsic
def flush_denormals(typingctx):
    """Set FTZ and DAZ on this thread; returns the previous control word (0 off x86)."""
    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        if not X86:
            return ir.Constant(i32, 0)
        slot = cgutils.alloca_once(builder, i32)
        _mxcsr_call(builder, "llvm.x86.sse.stmxcsr", slot)
        saved = builder.load(slot)
        builder.store(builder.or_(saved, ir.Constant(i32, FTZ_DAZ)), slot)
        _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return saved
    return types.int32(), codegen


@intrinsic
def restore_fpenv(typingctx, saved):
    """Put back the control word flush_denormals returned."""
    def codegen(context, builder, signature, args):
        if X86:
            slot = cgutils.alloca_once(builder, ir.IntType(32))
            builder.store(args[0], slot)
            _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return context.get_dummy_value()
    return types.void(types.int32), codegen
