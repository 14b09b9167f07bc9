"""Triton's interpreter, made to compute bf16 as a GPU does while the suite runs kernels in it.

The interpreter (3.7 and later) has two bf16 defects that are not a kernel's: ``tl.dot`` of
bf16 blocks multiplies their raw 16-bit patterns as integers, and an fp32 -> bf16 cast without
an explicit rounding mode truncates where a GPU rounds to nearest even. A kernel written for a
GPU meets both in every bf16 case. :func:`repair` replaces the two builder operations in this
process: a bf16 ``tl.dot`` multiplies its blocks in fp32 (every bf16 product and its sum over
a block are then what the MMA units compute: exact products, fp32 sums), and such a cast rounds
to nearest even. Everything else is the interpreter's own: fp16 and fp32 dots, casts with an
explicit rounding mode, every other dtype. Kernels that already work around the defects (the
project's own, :mod:`kernels.tile`) compute the same bits either way.

:func:`conformance.harness.launch` repairs the interpreter before it runs a kernel on the CPU;
a Triton whose interpreter no longer has these operations is left alone, and the self-tests of
:mod:`conformance.environment` then report the defects as a backend limitation.
"""

import functools

import numpy as np


def _bf16_bits_to_float32(bits):
    """bf16 values stored as uint16 (the interpreter's storage) as float32, exactly."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def _float32_to_bf16_bits(values):
    """float32 values rounded to nearest even bf16, as the uint16 patterns the interpreter
    stores (NaN stays NaN)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) >> 16
    quiet_nan = (bits >> 16) | np.uint32(0x0040)
    return np.where(np.isnan(values), quiet_nan, rounded).astype(np.uint16)


@functools.cache
def repair():
    """Repair the interpreter's bf16 ``tl.dot`` and fp32 -> bf16 cast in this process (once);
    True when both operations were found and replaced."""
    try:
        import triton.language as tl
        from triton.runtime.interpreter import InterpreterBuilder, TensorHandle
    except ImportError:
        return False
    if not all(hasattr(InterpreterBuilder, name) for name in ("create_dot", "cast_impl")):
        return False
    interpreted_dot = InterpreterBuilder.create_dot
    interpreted_cast = InterpreterBuilder.cast_impl

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        if a.dtype.scalar == tl.bfloat16 and b.dtype.scalar == tl.bfloat16:
            a = TensorHandle(_bf16_bits_to_float32(a.data), tl.float32)
            b = TensorHandle(_bf16_bits_to_float32(b.data), tl.float32)
        return interpreted_dot(self, a, b, d, input_precision, max_num_imprecise_acc)

    def cast_impl(self, src, dst_type):
        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
            return TensorHandle(_float32_to_bf16_bits(src.data), tl.bfloat16)
        return interpreted_cast(self, src, dst_type)

    InterpreterBuilder.create_dot = create_dot
    InterpreterBuilder.cast_impl = cast_impl
    return True
