"""``kernels.nn.Linear``: a drop-in for ``torch.nn.Linear`` whose GEMMs run on our kernels."""

import torch

from .ops import _options, mm


class Linear(torch.nn.Linear):
    """``torch.nn.Linear`` with the same parameters and state dict; ``y = x @ W^T + b`` runs
    ``refsim::mm`` on the transposed view of ``W`` (no copy), the bias in the kernel's fp32
    epilogue. ``strategy``, ``deterministic`` and ``config_overrides`` are as for
    :func:`kernels.matmul`.
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
        self.options = _options(config_overrides)

    def forward(self, x):
        if x.shape[-1] != self.in_features:
            raise RuntimeError(
                f"Linear: input has {x.shape[-1]} features, expected {self.in_features}"
            )
        y = mm(
            x.flatten(0, -2),
            self.weight.t(),
            self.bias,
            (self.strategy, self.deterministic, self.options),
        )
        return y.view(*x.shape[:-1], self.out_features)

    def extra_repr(self):
        return f"{super().extra_repr()}, strategy={self.strategy!r}"
