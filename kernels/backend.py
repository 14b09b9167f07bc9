"""The one backend switch: which hardware-unit id and clock a traced kernel reads.

``BACKEND`` is a compile-time constant of every kernel:

* ``INTERPRETER`` (Triton's CPU interpreter, no inline asm): unit -1, XCD -1, and the
  program's own step counter as the clock.
* ``NVIDIA``: ``%smid`` and ``%globaltimer`` (ns).
* ``AMD``: the XCC id from ``HW_REG_XCC_ID``, the CU id from ``HW_REG_HW_ID`` bits 8..11 and
  ``s_memrealtime`` (100 MHz constant clock on CDNA 3). Written from AMD's ISA documentation;
  **untested on hardware** here.

The interpreter runs a launch's programs one at a time; :func:`program_order` chooses in which
order (a protocol whose programs wait needs one, and a shuffled one shows a kernel that relies
on the default).
"""

import contextlib
import functools
import os
import random

import triton
import triton.language as tl

INTERPRETER = tl.constexpr(0)
NVIDIA = tl.constexpr(1)
AMD = tl.constexpr(2)

# Clock ticks per microsecond, for turning traced timestamps into WorkRecord times.
TICKS_PER_US = {INTERPRETER: 1.0, NVIDIA: 1000.0, AMD: 100.0}


def interpreting():
    """True when Triton's interpreter runs kernels (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@functools.cache
def backend_for(device_type):
    """The backend code for a torch device type, probed once per type."""
    if interpreting() or device_type == "cpu":
        return INTERPRETER
    import torch

    return AMD if getattr(torch.version, "hip", None) else NVIDIA


@contextlib.contextmanager
def program_order(order):
    """Run the programs of every launch inside the block in ``order`` (Triton's interpreter).

    ``order`` is None (the interpreter's own order, 0 first), a sequence of program ids or a
    callable ``(num_programs) -> sequence``; it permutes the x index of the grid. The innermost
    block wins. Compiled kernels run concurrently, so outside the interpreter this does nothing.
    """
    if not interpreting():
        yield
        return
    orders = _order_stack()
    orders.append(order)
    try:
        yield
    finally:
        orders.pop()


def shuffled_order(seed):
    """A program order for :func:`program_order`: a permutation drawn by ``random.Random(seed)``
    (the same one for the same seed and number of programs)."""

    def order(num_programs):
        return random.Random(seed).sample(range(num_programs), num_programs)

    return order


def _order_stack():
    """The active program orders, innermost last, kept on the interpreter itself so that every
    copy of this package (a conformance mutant is one) shares one stack and one hook; the hook
    maps the interpreter's x grid index through the innermost order (installed once)."""
    from triton.runtime.interpreter import interpreter_builder

    orders = getattr(interpreter_builder, "program_orders", None)
    if orders is not None:
        return orders
    orders = interpreter_builder.program_orders = []
    set_grid_idx = interpreter_builder.set_grid_idx
    launch = {"order": None}

    def ordered_set_grid_idx(x, y, z):
        order = orders[-1] if orders else None
        if order is None:
            return set_grid_idx(x, y, z)
        if x == y == z == 0:  # a launch begins: resolve the order for its grid
            launch["order"] = _resolved(order, interpreter_builder.grid_dim[0])
        return set_grid_idx(launch["order"][x], y, z)

    interpreter_builder.set_grid_idx = ordered_set_grid_idx
    return orders


def _resolved(order, num_programs):
    """``order`` as a list of program ids, checked to be a permutation of the grid."""
    ids = list(order(num_programs) if callable(order) else order)
    if sorted(ids) != list(range(num_programs)):
        raise ValueError(f"program order {ids} is not a permutation of 0..{num_programs - 1}")
    return ids


@triton.jit
def read_clock(step, BACKEND: tl.constexpr):
    """A timestamp: ns on NVIDIA, 10 ns ticks on AMD, the step counter in the interpreter."""
    if BACKEND == NVIDIA:
        t = tl.inline_asm_elementwise(
            "mov.u64 $0, %globaltimer;", "=l", [], dtype=tl.int64, is_pure=False, pack=1
        )
    elif BACKEND == AMD:
        t = tl.inline_asm_elementwise(
            "s_memrealtime $0\ns_waitcnt lgkmcnt(0)",
            "=s",
            [],
            dtype=tl.int64,
            is_pure=False,
            pack=1,
        )
    else:
        t = tl.full((), 0, tl.int64) + step
    return t


@triton.jit
def read_unit(BACKEND: tl.constexpr):
    """``(unit, xcd)``: SM id and 0 on NVIDIA; CU id and XCC id on AMD; -1, -1 interpreted."""
    if BACKEND == NVIDIA:
        unit = tl.inline_asm_elementwise(
            "mov.u32 $0, %smid;", "=r", [], dtype=tl.int32, is_pure=True, pack=1
        )
        xcd = unit * 0
    elif BACKEND == AMD:
        unit = tl.inline_asm_elementwise(
            "s_getreg_b32 $0, hwreg(HW_REG_HW_ID, 8, 4)",
            "=s",
            [],
            dtype=tl.int32,
            is_pure=True,
            pack=1,
        )
        xcd = tl.inline_asm_elementwise(
            "s_getreg_b32 $0, hwreg(HW_REG_XCC_ID, 0, 4)",
            "=s",
            [],
            dtype=tl.int32,
            is_pure=True,
            pack=1,
        )
    else:
        unit = tl.full((), -1, tl.int32)
        xcd = tl.full((), -1, tl.int32)
    return unit, xcd
