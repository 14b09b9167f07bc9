"""Persistent GEMM: one program per CU, each taking tiles pid, pid + grid, ... (static stride)."""

import triton
import triton.language as tl

from . import contract
from .launch_spec import whole_tile_launch
from .tile import ROLE_DP, no_value, whole_tile


@triton.jit
def persistent_kernel(
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
    num_programs = tl.num_programs(0)
    lp = contract.logical_program(pid, num_programs, NUM_XCDS, REMAP, CHUNK)
    total_tiles = contract.cdiv(M, BLOCK_M) * contract.cdiv(N, BLOCK_N)
    for step in range(0, contract.persistent_tile_count(lp, total_tiles, num_programs)):
        tile = contract.persistent_tile(lp, step, num_programs)
        whole_tile(
            a_view=(a_ptr, stride_am, stride_ak),
            b_view=(b_ptr, stride_bk, stride_bn),
            c_view=(c_ptr, stride_cm, stride_cn),
            bias_view=(bias_ptr, stride_bias),
            shape=(M, N, K),
            trace=(trace_ptr, pid, max_steps),
            step=step,
            tile=tile,
            ticket=no_value(pid),
            counter=no_value(pid),
            role=ROLE_DP,
            BLOCK_M=BLOCK_M,
            BLOCK_N=BLOCK_N,
            BLOCK_K=BLOCK_K,
            GROUP_M=GROUP_M,
            EVEN_K=EVEN_K,
            INPUT_PRECISION=INPUT_PRECISION,
            HAS_BIAS=HAS_BIAS,
            TRACE=TRACE,
            BACKEND=BACKEND,
        )


def launches(config, a, b, bias, c, workspace, backend, trace, options):
    """One launch of ``config.grid`` programs (see :mod:`kernels.launch_spec`)."""
    return whole_tile_launch(
        persistent_kernel, config, a, b, bias, c, workspace, backend, trace, options
    )
