"""Triton GEMM kernels whose every index comes from :mod:`refsim.tiling`.

``kernels.run(config, a, b, bias=None, out=None, trace=False)`` launches the strategy of a
:class:`refsim.GemmConfig` (data_parallel, persistent, streamk with four fixup protocols,
work_stealing, split_k) and returns a :class:`KernelRun` with the output and, when traced,
the work records and partial buffers in the same terms as :func:`refsim.simulate`'s.
"""

from .launch import KernelRun, default_config, launch_options, partial_slot, run

__all__ = ["KernelRun", "default_config", "launch_options", "partial_slot", "run"]
