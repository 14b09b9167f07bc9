"""Launches as data: what a strategy enqueues, built apart from enqueuing it.

Each strategy module has ``launches(config, a, b, bias, c, workspace, backend, trace, options)``
returning a :class:`LaunchSet`. :func:`kernels.launch.run` zeroes its buffers and calls
``kernel[grid](*args, **constexprs, **options)`` for each :class:`Launch` (under the
interpreter, in the launch's program ``order`` when it requires one); a compile-only check can
build the same set from CPU tensors with any backend code and compile the kernels instead.
"""

import dataclasses

import torch

from refsim import tiling

from .records import EXTRA_TRACE_ROWS, trace_buffer


@dataclasses.dataclass(frozen=True)
class Launch:
    """One kernel launch: ``kernel[grid](*args, **constexprs, **options)``.

    ``args`` are the kernel's runtime parameters in order, ``constexprs`` its ``tl.constexpr``
    parameters by name, ``options`` the compile options (``num_warps``, ``num_stages``).
    ``order``: the program ids in the order Triton's sequential interpreter must run them (for
    kernels whose programs wait on each other), or None when any order will do.
    ``epoch_arg``: the position in ``args`` of the launch's flag epoch (new every launch), if any.
    """

    kernel: object
    grid: tuple
    args: tuple
    constexprs: dict
    options: dict
    order: tuple = None
    epoch_arg: int = None


@dataclasses.dataclass(frozen=True)
class LaunchSet:
    """Everything one run enqueues, and where its results land.

    ``zeroed``: buffers to zero on the stream before the first launch. ``traces``: ``(kernel
    name, trace buffer)`` pairs in decoding order. ``partials``: the partial workspace as
    ``(slots, BLOCK_M, BLOCK_N)`` when the launches write partials, else None. ``events``: the
    event log, when one is kept. ``flags`` and ``epoch``: the flag buffer the launches publish
    into and the epoch they publish, for kernels that keep flags.
    """

    launches: tuple
    zeroed: tuple = ()
    traces: tuple = ()
    partials: torch.Tensor = None
    events: torch.Tensor = None
    flags: torch.Tensor = None
    epoch: int = None


@dataclasses.dataclass(frozen=True)
class GemmArguments:
    """What every GEMM kernel takes first, and the constexprs they all share.

    ``args``: ``a, b, c, bias, trace`` (``c`` stands in for an absent bias; it is never read),
    ``M, N, K`` and the strides of ``a``, ``b``, ``c`` and the bias. Each kernel's own runtime
    arguments follow, then ``max_steps``, the trace rows per program. ``bias`` and
    ``stride_bias`` are the bias arguments again, for kernels that take only those.
    """

    args: tuple
    constexprs: dict
    trace: torch.Tensor
    max_steps: int
    bias: torch.Tensor
    stride_bias: int


def gemm_arguments(config, a, b, bias, c, workspace, backend, trace, max_steps):
    """The shared arguments of a launch of ``config``. ``max_steps``, the most work items a
    program of its schedule has, counts only when tracing: the trace then has
    :data:`~kernels.records.EXTRA_TRACE_ROWS` rows more per program (1 row when not tracing)."""
    max_steps = max_steps + EXTRA_TRACE_ROWS if trace else 1
    trace_buf = (
        trace_buffer(config.grid, max_steps, a.device)
        if trace
        else workspace.buffer("no-trace", 1, torch.int64)
    )
    bias_arg = bias if bias is not None else c
    stride_bias = bias.stride(0) if bias is not None else 0
    args = (
        a,
        b,
        c,
        bias_arg,
        trace_buf,
        config.m,
        config.n,
        config.k,
        a.stride(0),
        a.stride(1),
        b.stride(0),
        b.stride(1),
        c.stride(0),
        c.stride(1),
        stride_bias,
    )
    constexprs = {
        "BLOCK_M": config.block_m,
        "BLOCK_N": config.block_n,
        "BLOCK_K": config.block_k,
        "GROUP_M": config.group_m,
        "NUM_XCDS": config.xcds,
        "REMAP": config.remap_mode,
        "CHUNK": config.xcd_chunk or 1,
        "EVEN_K": config.k % config.block_k == 0,
        "INPUT_PRECISION": "ieee",
        "HAS_BIAS": bias is not None,
        "TRACE": trace,
        "BACKEND": backend,
    }
    return GemmArguments(args, constexprs, trace_buf, max_steps, bias_arg, stride_bias)


def static_max_steps(config):
    """The most work items a program of a static schedule has (every strategy but work
    stealing): the trace rows it needs."""
    return tiling.max_work_items(
        config.dp_tiles, config.sk_iters, config.iters_per_tile, config.grid
    )


def whole_tile_launch(kernel, config, a, b, bias, c, workspace, backend, trace, options):
    """The one launch of a kernel that takes only the shared arguments and computes whole
    tiles on a static schedule (persistent)."""
    gemm = gemm_arguments(
        config, a, b, bias, c, workspace, backend, trace, static_max_steps(config)
    )
    launch = Launch(kernel, (config.grid,), gemm.args + (gemm.max_steps,), gemm.constexprs, options)
    return LaunchSet((launch,), traces=(("gemm", gemm.trace),))
