"""How close random-input results must be to float64, defined once.

Used by the conformance suite's accuracy check, the kernel and front-end tests and the
benchmarks' sanity checks. The bound is elementwise::

    |out - ref| <= TOLERANCE[dtype] * (|a| @ |b| + |bias|)

with ``ref`` the float64 product of the (already dtype-rounded) inputs plus bias: fp32
accumulation error grows with the magnitudes summed, not with the result, so the scale is the
sum of absolute products. ``dtype`` is the coarser of the inputs' and the output's types (an
fp16/bf16 output is rounded once more at the end).
"""

import math

import torch

from kernels.dtypes import dtype_name

TOLERANCE = {"fp32": 2e-6, "fp16": 1e-3, "bf16": 8e-3}


def tolerance_for(*dtypes):
    """The bound for results that passed through all these torch dtypes: the loosest one."""
    return max(TOLERANCE[dtype_name(dtype)] for dtype in dtypes)


def relative_error(got, a, b, bias=None):
    """Elementwise ``|got - ref| / (|a| @ |b| + |bias|)`` in float64 on ``got``'s device.

    A NaN in ``got`` counts as an infinite error, so it can never pass.
    """
    a64, b64 = a.detach().to(got.device).double(), b.detach().to(got.device).double()
    ref, scale = a64 @ b64, a64.abs() @ b64.abs()
    if bias is not None:
        bias64 = bias.detach().to(got.device).double()
        ref, scale = ref + bias64, scale + bias64.abs()
    error = (got.detach().double() - ref).abs() / (scale + 1e-30)
    return error.nan_to_num(nan=math.inf)


def tolerance_problem(got, a, b, bias=None, what="output"):
    """None when ``got`` is within tolerance of ``a @ b + bias``; else one line that names
    the worst element, its error and the bound."""
    bound = tolerance_for(a.dtype, got.dtype)
    error = relative_error(got, a, b, bias)
    worst = error.max().item() if error.numel() else 0.0
    if worst <= bound:
        return None
    index = tuple(int(i) for i in torch.unravel_index(error.argmax(), error.shape))
    return (
        f"{what}: relative error {worst:.3g} at {index} exceeds {bound:g} for "
        f"{dtype_name(a.dtype)} inputs and a {dtype_name(got.dtype)} output"
    )
