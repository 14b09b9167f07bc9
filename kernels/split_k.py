"""Split-K GEMM: each tile's K-range cut into SPLIT_K slices, then a reduction launch.

Program ``lp`` computes slice ``split`` of ``tile`` (``refsim.tiling.split_k_work``) and stores
its fp32 partial in workspace slot ``tile * SPLIT_K + split`` (``(tiles * SPLIT_K, BLOCK_M,
BLOCK_N)``). The reduction launch, one program per tile, sums the slices in split order, adds
the bias once and stores. With SPLIT_K = 1 the first launch stores the tile directly.
"""

import triton
import triton.language as tl

from .tile import (
    ROLE_REDUCE,
    ROLE_SPLIT,
    cdiv,
    grouped_tile,
    load_partial,
    logical_program,
    split_k_range,
    split_k_work,
    store_partial,
    tile_accumulate,
    tile_epilogue,
    trace_begin,
    trace_end,
)


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
    max_steps,
    TRACE: tl.constexpr,
    BACKEND: tl.constexpr,
    SPLIT_K: tl.constexpr,
):
    pid = tl.program_id(0)
    lp = logical_program(pid, tl.num_programs(0), NUM_XCDS, REMAP, CHUNK)
    tile, split = split_k_work(lp, SPLIT_K)
    k_begin, k_end = split_k_range(split, cdiv(K, BLOCK_K), SPLIT_K)
    pid_m, pid_n = grouped_tile(tile, cdiv(M, BLOCK_M), cdiv(N, BLOCK_N), GROUP_M)
    t_start = trace_begin(pid * 0, TRACE, BACKEND)
    acc = tile_accumulate(
        a_ptr,
        b_ptr,
        M,
        N,
        K,
        stride_am,
        stride_ak,
        stride_bk,
        stride_bn,
        pid_m,
        pid_n,
        k_begin,
        k_end,
        BLOCK_M,
        BLOCK_N,
        BLOCK_K,
        EVEN_K,
        INPUT_PRECISION,
        BACKEND,
    )
    if SPLIT_K == 1:
        tile_epilogue(
            acc,
            c_ptr,
            bias_ptr,
            M,
            N,
            stride_cm,
            stride_cn,
            stride_bias,
            pid_m,
            pid_n,
            BLOCK_M,
            BLOCK_N,
            HAS_BIAS,
            BACKEND,
        )
    else:
        # released by the launch boundary (the reduction is a second kernel): no event log
        store_partial(
            partials_ptr, tile * SPLIT_K + split, acc, trace_ptr, pid, BLOCK_M, BLOCK_N, False
        )
    trace_end(
        trace_ptr,
        pid,
        pid * 0,
        tile,
        pid_m,
        pid_n,
        k_begin,
        k_end,
        ROLE_SPLIT,
        t_start,
        pid * 0 - 1,
        pid * 0 - 1,
        pid * 0 + (SPLIT_K == 1),
        max_steps,
        TRACE,
        BACKEND,
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
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    GROUP_M: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    TRACE: tl.constexpr,
    BACKEND: tl.constexpr,
    SPLIT_K: tl.constexpr,
):
    tile = tl.program_id(0)
    pid_m, pid_n = grouped_tile(tile, cdiv(M, BLOCK_M), cdiv(N, BLOCK_N), GROUP_M)
    t_start = trace_begin(tile * 0, TRACE, BACKEND)
    total = load_partial(partials_ptr, tile * SPLIT_K, BLOCK_M, BLOCK_N)
    for split in range(1, SPLIT_K):
        total += load_partial(partials_ptr, tile * SPLIT_K + split, BLOCK_M, BLOCK_N)
    tile_epilogue(
        total,
        c_ptr,
        bias_ptr,
        M,
        N,
        stride_cm,
        stride_cn,
        stride_bias,
        pid_m,
        pid_n,
        BLOCK_M,
        BLOCK_N,
        HAS_BIAS,
        BACKEND,
    )
    trace_end(
        trace_ptr,
        tile,
        tile * 0,
        tile,
        pid_m,
        pid_n,
        tile * 0,
        tile * 0,
        ROLE_REDUCE,
        t_start,
        tile * 0 - 1,
        tile * 0 - 1,
        tile * 0 + 1,
        1,
        TRACE,
        BACKEND,
    )
