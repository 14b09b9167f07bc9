"""Data-parallel GEMM: one program per tile, launched as a grid of all tiles."""

import triton
import triton.language as tl

from . import contract
from .launch_spec import whole_tile_launch
from .tile import ROLE_DP, whole_tile


@triton.jit
def data_parallel_kernel(
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
):
    pid = tl.program_id(0)
    tile = contract.logical_program(pid, tl.num_programs(0), NUM_XCDS, REMAP, CHUNK)
    whole_tile(
        a_ptr,
        b_ptr,
        c_ptr,
        bias_ptr,
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
        trace_ptr,
        pid,
        pid * 0,
        tile,
        pid * 0 - 1,
        pid * 0 - 1,
        ROLE_DP,
        BLOCK_M,
        BLOCK_N,
        BLOCK_K,
        GROUP_M,
        EVEN_K,
        INPUT_PRECISION,
        HAS_BIAS,
        max_steps,
        TRACE,
        BACKEND,
    )


def launches(config, a, b, bias, c, workspace, backend, trace, options):
    """One launch, one program per tile (see :mod:`kernels.launch_spec`)."""
    return whole_tile_launch(
        data_parallel_kernel, config, a, b, bias, c, workspace, backend, trace, options
    )
