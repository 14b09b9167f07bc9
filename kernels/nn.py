"""``kernels.nn.Linear``: a drop-in for ``torch.nn.Linear`` whose GEMMs run on our kernels."""

import torch

from .auto import freeze_overrides
from .dtypes import DTYPE_NAMES, SUPPORTED
from .ops import BY_TORCH, mm


def _scalar_type(dtype):
    """torch's ScalarType name of ``dtype`` ("Float", "Double", "Long", ...), as its errors
    print it: the legacy tensor type name, which is that name plus "Tensor"."""
    return (
        torch.empty((), dtype=dtype, device="cpu")
        .type()
        .removeprefix("torch.")
        .removesuffix("Tensor")
    )


def _check_input(x, weight, bias):
    """The errors ``torch.nn.Linear`` raises for ``x``, in its types and words; then
    NotImplementedError for a dtype torch takes but neither the kernels nor torch's fallback
    (float64, :data:`kernels.ops.BY_TORCH`) compute."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"linear(): argument 'input' (position 1) must be Tensor, not {type(x).__name__}"
        )
    if x.dim() == 0:
        raise RuntimeError(
            "both arguments to linear need to be at least 1D, but they are 0D and 2D"
        )
    if x.dtype != weight.dtype:
        raise RuntimeError(
            f"mat1 and mat2 must have the same dtype, but got {_scalar_type(x.dtype)} and "
            f"{_scalar_type(weight.dtype)}"
        )
    if bias is not None and bias.dtype != weight.dtype:
        raise RuntimeError(
            f"self and mat2 must have the same dtype, but got {_scalar_type(bias.dtype)} and "
            f"{_scalar_type(weight.dtype)}"
        )
    if x.device != weight.device:
        raise RuntimeError(
            "Expected all tensors to be on the same device, but found at least two devices, "
            f"{x.device} and {weight.device}!"
        )
    if weight.dtype not in DTYPE_NAMES and weight.dtype not in BY_TORCH:
        raise NotImplementedError(
            f"kernels.nn.Linear is not implemented for '{_scalar_type(weight.dtype)}'; "
            f"supported: {SUPPORTED}, and float64 (computed by torch)"
        )


class Linear(torch.nn.Linear):
    """``torch.nn.Linear`` with the same parameters and state dict; ``y = x @ W^T + b`` runs
    ``refsim::mm`` on the transposed view of ``W`` (no copy), the bias in the kernel's fp32
    epilogue. ``strategy``, ``deterministic`` and ``config_overrides`` are as for
    :func:`kernels.matmul`. Input ``(..., in_features)``, a single vector ``(in_features,)``
    included; output ``(..., out_features)``.
    """

    def __init__(
        self,
        in_features,
        out_features,
        bias=True,
        device=None,
        dtype=None,
        *,
        strategy="auto",
        deterministic=True,
        **config_overrides,
    ):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.strategy = strategy
        self.deterministic = deterministic
        self.overrides = freeze_overrides(config_overrides)

    def forward(self, x):
        weight, bias = self.weight, self.bias  # each a Module.__getattr__ lookup: once
        _check_input(x, weight, bias)
        if x.shape[-1] != self.in_features:
            raise RuntimeError(
                f"Linear: input has {x.shape[-1]} features, expected {self.in_features}"
            )
        flags = (self.strategy, self.deterministic, self.overrides)
        if x.dim() == 2:  # the common case, without reshaping
            return mm(x, weight.t(), bias, flags)
        rows = x.unsqueeze(0) if x.dim() == 1 else x.flatten(0, -2)
        y = mm(rows, weight.t(), bias, flags)
        return y.view(*x.shape[:-1], self.out_features)

    def extra_repr(self):
        return f"{super().extra_repr()}, strategy={self.strategy!r}"
