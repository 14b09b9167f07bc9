"""The one backend switch: which hardware-unit id and clock a traced kernel reads.

``BACKEND`` is a compile-time constant of every kernel:

* ``INTERPRETER`` (Triton's CPU interpreter, no inline asm): unit -1, XCD -1, and the
  program's own step counter as the clock.
* ``NVIDIA``: ``%smid`` and ``%globaltimer`` (ns).
* ``AMD``: the XCC id from ``HW_REG_XCC_ID``, the CU id from ``HW_REG_HW_ID`` bits 8..11 and
  ``s_memrealtime`` (100 MHz constant clock on CDNA 3). Written from AMD's ISA documentation;
  **untested on hardware** here.
"""

import functools
import os

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
