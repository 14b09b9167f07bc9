"""Triton GEMM kernels whose every index comes from :mod:`refsim.tiling`.

``kernels.run(config, a, b, bias=None, out=None, trace=False)`` launches the strategy of a
:class:`refsim.GemmConfig` (data_parallel, persistent, streamk with four fixup protocols,
work_stealing, split_k) and returns a :class:`KernelRun` with the output and, when traced,
the work records and partial buffers in the same terms as :func:`refsim.simulate`'s.

The torch front end -- ``kernels.matmul``, ``kernels.addmm``, ``kernels.bmm`` and
``kernels.nn.Linear``, PyTorch operators with autograd that ``torch.compile`` can trace -- is
described in docs/torch-api.md.
"""

from .launch import KernelRun, default_config, launch_options, partial_slot, run

__all__ = [
    "KernelRun",
    "addmm",
    "bmm",
    "default_config",
    "launch_options",
    "matmul",
    "nn",
    "partial_slot",
    "run",
]

_FRONT_END = {"matmul": "ops", "addmm": "ops", "bmm": "ops", "nn": None}


def __getattr__(name):
    """The torch front end, imported (and its operators registered) on first use."""
    if name not in _FRONT_END:
        raise AttributeError(f"module 'kernels' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(f".{_FRONT_END[name] or name}", __name__)
    value = module if _FRONT_END[name] is None else getattr(module, name)
    globals()[name] = value
    return value
