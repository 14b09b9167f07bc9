"""Triton GEMM kernels whose every index comes from :mod:`refsim.tiling`.

``kernels.run(config, a, b, bias=None, out=None, trace=False)`` launches the strategy of a
:class:`refsim.GemmConfig` (data_parallel, persistent, streamk with four fixup protocols,
work_stealing, split_k) and returns a :class:`KernelRun` with the output and, when traced,
the work records and partial buffers in the same terms as :func:`refsim.simulate`'s.
``kernels.capture`` captures one such run in a CUDA graph for fixed-shape callers.

The torch front end -- ``kernels.matmul``, ``kernels.addmm``, ``kernels.bmm`` and
``kernels.nn.Linear``, PyTorch operators with autograd that ``torch.compile`` can trace -- is
described in docs/torch-api.md.
"""

__all__ = [
    "CapturedRun",
    "KernelRun",
    "addmm",
    "bmm",
    "capture",
    "default_config",
    "launch_options",
    "matmul",
    "nn",
    "partial_slot",
    "run",
]

# Every path a call can take from the host to its launches. The conformance suite checks each
# (conformance.cases.PATH_CHECKS): a path added here without a check and cases fails its tests.
CALL_PATHS = {
    "first": "an untraced call whose key is new: builds, launches and prepares the call",
    "traced": "a traced call (trace=True): built and launched, never prepared",
    "prepared": "a later untraced call of a key: the prepared launches (kernels.prepared)",
    "batched": "a batch in one data-parallel launch (kernels.bmm, batched kernels.matmul)",
    "batched-prepared": "a later batched call of a key: its prepared launch",
    "graph": "a call captured in a CUDA graph (kernels.capture) and replayed",
}

# name -> (module, attribute; None for the module itself). Resolved on first use, so that
# importing ``kernels`` or a leaf such as ``kernels.dtypes`` decorates no kernel and registers
# no operator.
_LAZY = {
    "run": ("launch", "run"),
    "partial_slot": ("launch", "partial_slot"),
    "launch_options": ("launch", "launch_options"),
    "default_config": ("device", "default_config"),
    "KernelRun": ("records", "KernelRun"),
    "capture": ("graphs", "capture"),
    "CapturedRun": ("graphs", "CapturedRun"),
    "matmul": ("ops", "matmul"),
    "addmm": ("ops", "addmm"),
    "bmm": ("ops", "bmm"),
    "nn": ("nn", None),
}


def __getattr__(name):
    """The launcher and the torch front end, imported on first use."""
    if name not in _LAZY:
        raise AttributeError(f"module 'kernels' has no attribute {name!r}")
    import importlib

    module_name, attribute = _LAZY[name]
    module = importlib.import_module(f".{module_name}", __name__)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value
