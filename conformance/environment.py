"""Self-tests of the backend the kernels run on: what Triton's interpreter gets wrong.

Triton's interpreter (3.7 and later) multiplies bf16 blocks in ``tl.dot`` wrongly (values near
1e10 for a product of small integers) and truncates fp32 -> bf16 casts where a GPU rounds to
nearest even. A kernel that meets either fails its bf16 cases in the interpreter with causes
that explain nothing, while it is right on a GPU. Each self-test below runs a tiny kernel in the
interpreter once per process (whatever ``TRITON_INTERPRET`` says), after the suite's repair of
both defects (:func:`conformance.interpreter.repair`), and answers with a bool:
:func:`backend_limitation` turns them into the one line a report shows when a Triton whose
interpreter the repair does not reach still has them.
"""

import contextlib
import functools
import os

import torch
import triton
import triton.language as tl

from kernels.backend import INTERPRETER, backend_for
from kernels.dtypes import TORCH_DTYPES

from .interpreter import repair as repair_interpreter

# The output dtypes whose fp32 -> dtype cast a self-test can check.
CAST_DTYPES = ("bf16", "fp16")
# The workarounds, as the explanation names them.
WORKAROUND = (
    "under the interpreter, upcast bf16 operands to fp32 before tl.dot and round to nearest "
    "even before the cast (kernels.tile.tile_accumulate and tile_epilogue do both; see "
    'docs/bring-your-own-kernel.md, "Triton\'s interpreter and bf16"), or check bf16 on a GPU'
)
_SIZE = 16  # the self-tests' blocks are _SIZE x _SIZE, tl.dot's smallest


# The self-tests' kernels, jitted for the interpreter on first use (_interpreted).


def _dot_block(a_ptr, b_ptr, c_ptr, SIZE: tl.constexpr):
    """``c = a @ b`` for row-major SIZE x SIZE blocks, in fp32."""
    rows = tl.arange(0, SIZE)[:, None] * SIZE
    cols = tl.arange(0, SIZE)[None, :]
    tl.store(
        c_ptr + rows + cols, tl.dot(tl.load(a_ptr + rows + cols), tl.load(b_ptr + rows + cols))
    )


def _cast(x_ptr, y_ptr, SIZE: tl.constexpr):
    """``y = x`` cast to ``y``'s dtype, for SIZE elements."""
    offsets = tl.arange(0, SIZE)
    tl.store(y_ptr + offsets, tl.load(x_ptr + offsets).to(y_ptr.dtype.element_ty))


@functools.cache
def _interpreted(fn):
    """``fn`` jitted for Triton's interpreter, whatever ``TRITON_INTERPRET`` says (Triton reads
    it when ``triton.jit`` decorates)."""
    with _interpreting():
        return triton.jit(fn)


@contextlib.contextmanager
def _interpreting():
    saved = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TRITON_INTERPRET")
        else:
            os.environ["TRITON_INTERPRET"] = saved


@functools.cache
def interpreter_bf16_dot_exact():
    """Whether the interpreter's ``tl.dot`` of two 16 x 16 bf16 blocks of small integers gives
    their exact product (every such product and sum is exact in fp32). Run once per process."""
    repair_interpreter()
    values = torch.arange(_SIZE * _SIZE).reshape(_SIZE, _SIZE)
    a, b = (values % 7 - 3).to(torch.bfloat16), (values % 5 - 2).to(torch.bfloat16)
    c = torch.empty(_SIZE, _SIZE, dtype=torch.float32)
    _interpreted(_dot_block)[(1,)](a, b, c, _SIZE)
    return torch.equal(c, a.double().matmul(b.double()).float())


@functools.cache
def interpreter_casts_truncate(dtype):
    """Whether the interpreter's fp32 -> ``dtype`` cast (``"bf16"`` or ``"fp16"``) truncates,
    rounding toward zero, rather than rounding to nearest as a GPU does: it is fed values three
    quarters of a ``dtype`` step past +-1, whose nearest values are +-(1 + step). Run once per
    process and dtype; ValueError for another dtype."""
    if dtype not in CAST_DTYPES:
        raise ValueError(f"dtype {dtype!r}: the cast self-test takes {', '.join(CAST_DTYPES)}")
    repair_interpreter()
    target = TORCH_DTYPES[dtype]
    step = torch.finfo(target).eps
    x = torch.tensor([1.0, -1.0] * (_SIZE // 2)) * (1 + 0.75 * step)
    y = torch.empty(_SIZE, dtype=target)
    _interpreted(_cast)[(1,)](x, y, _SIZE)
    return torch.equal(y, x.sign().to(target))


def backend_limitation(dtype, device):
    """Why results of a case of ``dtype`` (``"fp16"``, ``"bf16"``, ``"fp32"``) on ``device`` may
    be garbage for a reason outside the kernel, in one line naming each trap and the
    workaround; None when the backend has no trap for it (compiled kernels on a GPU, fp32, or
    an interpreter that passes its self-tests). ``device`` is a torch device or its name; the
    interpreter runs a CPU device's kernels, or any device's under ``TRITON_INTERPRET=1``.

    It says what the backend may do, not what a kernel did: a kernel that works around the traps
    (the project's own do) is unaffected, so it explains only values nothing else explains.
    ValueError for an unknown dtype."""
    if dtype not in TORCH_DTYPES:
        raise ValueError(f"dtype {dtype!r}: expected one of {', '.join(TORCH_DTYPES)}")
    if backend_for(torch.device(device).type) != INTERPRETER:
        return None
    traps = []
    if dtype == "bf16" and not interpreter_bf16_dot_exact():
        traps.append("computes bf16 tl.dot wrongly")
    if dtype in CAST_DTYPES and interpreter_casts_truncate(dtype):
        traps.append(f"truncates fp32 -> {dtype} casts instead of rounding to nearest even")
    if not traps:
        return None
    return f"Triton {triton.__version__}'s interpreter {' and '.join(traps)}: {WORKAROUND}"
