"""Split-K GEMM: each tile's K-range cut into SPLIT_K slices, then a reduction launch.

Program ``lp`` computes slice ``split`` of ``tile`` (``refsim.tiling.split_k_work``) and stores
its fp32 partial in workspace slot ``split_k_partial_slot(tile, split, SPLIT_K)`` (``(tiles *
SPLIT_K + 1, BLOCK_M, BLOCK_N)``: the last slot is a guard that only a write past the others
reaches). The reduction launch, one program per row band of a tile (``config.reduce_bands``
bands, ``refsim.tiling.split_k_reduce_work``), sums the band's slices in split order, adds
the bias and stores the band. With SPLIT_K = 1 the first launch stores the tile directly.
"""

import torch
import triton
import triton.language as tl

from refsim import tiling

from . import contract
from .launch_spec import Launch, LaunchSet, gemm_arguments, static_max_steps
from .records import trace_buffer
from .tile import (
    ROLE_REDUCE,
    ROLE_SPLIT,
    accumulate,
    epilogue,
    int_like,
    load_partial_rows,
    no_value,
    store_partial,
    trace_begin,
    trace_end,
    zero_like,
)

# fp32 values a thread of the reduction may hold in loads in flight (see reduce_unroll)
REDUCE_REGISTERS = 64


@triton.jit
def split_k_kernel(
    # tensors
    a_ptr,
    b_ptr,
    c_ptr,
    bias_ptr,
    trace_ptr,
    # sizes and strides
    M,
    N,
    K,
    stride_am,
    stride_ak,
    stride_bk,
    stride_bn,
    stride_cm,
    stride_cn,
    stride_bias,
    # partial workspace
    partials_ptr,
    max_steps,
    # tiling
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    NUM_XCDS: tl.constexpr,
    REMAP: tl.constexpr,
    CHUNK: tl.constexpr,
    # numerics and tracing
    EVEN_K: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    TRACE: tl.constexpr,
    BACKEND: tl.constexpr,
    SPLIT_K: tl.constexpr,
):
    pid = tl.program_id(0)
    lp = contract.logical_program(pid, tl.num_programs(0), NUM_XCDS, REMAP, CHUNK)
    tile, split = contract.split_k_work(lp, SPLIT_K)
    k_begin, k_end = contract.split_k_range(split, contract.cdiv(K, BLOCK_K), SPLIT_K)
    pid_m, pid_n = contract.grouped_tile(
        tile, contract.cdiv(M, BLOCK_M), contract.cdiv(N, BLOCK_N), GROUP_M
    )
    shape = (M, N, K)
    t_start = trace_begin(zero_like(pid), TRACE, BACKEND)
    acc = accumulate(
        (a_ptr, stride_am, stride_ak), (b_ptr, stride_bk, stride_bn), shape, pid_m,
        pid_n, k_begin, k_end, BLOCK_M, BLOCK_N, BLOCK_K, EVEN_K, INPUT_PRECISION, BACKEND,
    )  # fmt: skip
    if SPLIT_K == 1:
        epilogue(
            acc=acc,
            c_view=(c_ptr, stride_cm, stride_cn),
            bias_view=(bias_ptr, stride_bias),
            shape=shape,
            pid_m=pid_m,
            pid_n=pid_n,
            BLOCK_M=BLOCK_M,
            BLOCK_N=BLOCK_N,
            HAS_BIAS=HAS_BIAS,
            BACKEND=BACKEND,
        )
    else:
        # released by the launch boundary (the reduction is a second kernel): no event log
        slot = contract.split_k_partial_slot(tile, split, SPLIT_K)
        store_partial(partials_ptr, slot, acc, tile, (trace_ptr, pid), BLOCK_M, BLOCK_N, False)
    trace_end(
        trace=(trace_ptr, pid, max_steps),
        step=zero_like(pid),
        tile=tile,
        pid_m=pid_m,
        pid_n=pid_n,
        k_begin=k_begin,
        k_end=k_end,
        role=ROLE_SPLIT,
        t_start=t_start,
        ticket=no_value(pid),
        counter=no_value(pid),
        finalizes=int_like(pid, SPLIT_K == 1),
        TRACE=TRACE,
        BACKEND=BACKEND,
    )


@triton.jit
def split_k_reduce_kernel(
    # tensors
    c_ptr,
    bias_ptr,
    trace_ptr,
    partials_ptr,
    # sizes and strides
    M,
    N,
    stride_cm,
    stride_cn,
    stride_bias,
    # tiling
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    GROUP_M: tl.constexpr,
    REDUCE_BANDS: tl.constexpr,
    REDUCE_UNROLL: tl.constexpr,
    # epilogue and tracing
    HAS_BIAS: tl.constexpr,
    TRACE: tl.constexpr,
    BACKEND: tl.constexpr,
    SPLIT_K: tl.constexpr,
):
    pid = tl.program_id(0)
    tile, band = contract.split_k_reduce_work(pid, REDUCE_BANDS)
    pid_m, pid_n = contract.grouped_tile(
        tile, contract.cdiv(M, BLOCK_M), contract.cdiv(N, BLOCK_N), GROUP_M
    )
    BAND_ROWS: tl.constexpr = BLOCK_M // REDUCE_BANDS
    row_begin = band * BAND_ROWS
    t_start = trace_begin(zero_like(pid), TRACE, BACKEND)
    # released by the launch boundary, like the stores: no event log
    events = (trace_ptr, pid)
    # (the first load stays positional: conformance/mutants.py patches it by its exact text)
    slot = contract.split_k_partial_slot(tile, 0, SPLIT_K)
    total = load_partial_rows(
        partials_ptr, slot, row_begin, tile, events, BAND_ROWS, BLOCK_M, BLOCK_N, False
    )
    # unrolled, the slices' loads are all in flight at once; the sum keeps split order
    for split in tl.range(1, SPLIT_K, loop_unroll_factor=REDUCE_UNROLL):
        slot = contract.split_k_partial_slot(tile, split, SPLIT_K)
        total += load_partial_rows(
            ws_ptr=partials_ptr,
            slot=slot,
            row_begin=row_begin,
            tile=tile,
            events=events,
            ROWS=BAND_ROWS,
            BLOCK_M=BLOCK_M,
            BLOCK_N=BLOCK_N,
            LOG=False,
        )
    # the band's rows are those of block row pid_m * REDUCE_BANDS + band of BAND_ROWS rows
    epilogue(
        acc=total,
        c_view=(c_ptr, stride_cm, stride_cn),
        bias_view=(bias_ptr, stride_bias),
        shape=(M, N, 0),  # the reduction has no K
        pid_m=pid_m * REDUCE_BANDS + band,
        pid_n=pid_n,
        BLOCK_M=BAND_ROWS,
        BLOCK_N=BLOCK_N,
        HAS_BIAS=HAS_BIAS,
        BACKEND=BACKEND,
    )
    trace_end(
        trace=(trace_ptr, pid, 1),
        step=zero_like(pid),
        tile=tile,
        pid_m=pid_m,
        pid_n=pid_n,
        k_begin=zero_like(pid),
        k_end=zero_like(pid),
        role=ROLE_REDUCE,
        t_start=t_start,
        ticket=no_value(pid),
        counter=no_value(pid),
        finalizes=int_like(pid, 1),
        TRACE=TRACE,
        BACKEND=BACKEND,
    )


def launches(config, a, b, bias, c, workspace, backend, trace, options):
    """The split launch and, with ``split_k > 1``, the reduction (see :mod:`kernels.launch_spec`)."""
    gemm = gemm_arguments(
        config, a, b, bias, c, workspace, backend, trace, static_max_steps(config)
    )
    grid, block_m, block_n = config.grid, config.block_m, config.block_n
    slots = grid + 1
    partials = workspace.buffer("partials", slots * block_m * block_n, torch.float32)
    split = Launch(
        split_k_kernel,
        (grid,),
        gemm.args + (partials, gemm.max_steps),
        dict(gemm.constexprs, SPLIT_K=config.split_k),
        options,
    )
    if config.split_k == 1:
        return LaunchSet((split,), traces=(("gemm", gemm.trace),))
    reduce_programs = config.total_tiles * config.reduce_bands
    reduce_trace = trace_buffer(reduce_programs, 1, a.device) if trace else gemm.trace
    reduce = Launch(
        split_k_reduce_kernel,
        (reduce_programs,),
        (c, gemm.bias, reduce_trace, partials, config.m, config.n)
        + (c.stride(0), c.stride(1), gemm.stride_bias),
        {
            "BLOCK_M": block_m,
            "BLOCK_N": block_n,
            "GROUP_M": config.group_m,
            "REDUCE_BANDS": config.reduce_bands,
            "REDUCE_UNROLL": reduce_unroll(config, options["num_warps"]),
            "HAS_BIAS": bias is not None,
            "TRACE": trace,
            "BACKEND": backend,
            "SPLIT_K": config.split_k,
        },
        {"num_warps": options["num_warps"]},
    )
    return LaunchSet(
        (split, reduce),
        traces=(("gemm", gemm.trace), ("reduce", reduce_trace)),
        partials=partials.view(slots, block_m, block_n),
    )


def reduce_unroll(config, num_warps):
    """How many slices a reduction program loads per unrolled step: all but the first, as long
    as a thread holds at most ``REDUCE_REGISTERS`` fp32 values in flight (32 threads a warp)."""
    band_values = config.block_m // config.reduce_bands * config.block_n
    per_thread = max(1, band_values // (32 * num_warps))
    return max(1, min(config.split_k - 1, REDUCE_REGISTERS // per_thread))


def partial_slot(config, program, tile):
    """Slot in ``KernelRun.partials`` of hardware ``program``'s partial of ``tile``."""
    tile_of, split = tiling.split_k_work(config.logical_program(program), config.split_k)
    if tile_of != tile:
        raise ValueError(f"program {program} computes tile {tile_of}, not {tile}")
    return tiling.split_k_partial_slot(tile, split, config.split_k)
