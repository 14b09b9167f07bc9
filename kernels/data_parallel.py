"""Data-parallel GEMM: one program per tile, launched as a grid of all tiles (times the batch,
for a batch of products)."""

import triton
import triton.language as tl

from . import contract
from .launch_spec import Launch, LaunchSet, gemm_arguments, static_max_steps
from .tile import ROLE_DP, no_value, whole_tile, zero_like


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
    # the batch: program_id(1) picks the product (strides 0 for a single one)
    stride_ab,
    stride_bb,
    stride_cb,
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
    pid_batch = tl.program_id(1).to(tl.int64)
    tile = contract.logical_program(pid, tl.num_programs(0), NUM_XCDS, REMAP, CHUNK)
    # this program's product of the batch
    a_ptr, b_ptr, c_ptr = (
        a_ptr + pid_batch * stride_ab,
        b_ptr + pid_batch * stride_bb,
        c_ptr + pid_batch * stride_cb,
    )
    whole_tile(
        a_view=(a_ptr, stride_am, stride_ak),
        b_view=(b_ptr, stride_bk, stride_bn),
        c_view=(c_ptr, stride_cm, stride_cn),
        bias_view=(bias_ptr, stride_bias),
        shape=(M, N, K),
        trace=(trace_ptr, pid, max_steps),
        step=zero_like(pid),
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
    """One launch, one program per tile and product: grid (tiles, batch) (see
    :mod:`kernels.launch_spec`).

    ``a``, ``b``, ``c`` are 2-D (one product) or 3-D ``(batch, ., .)`` with any strides (a
    broadcast operand has batch stride 0); ``config`` describes one product. A trace of a batch
    would put every product's records in one row per program: tracing takes one product.
    """
    if a.dim() == 2:
        batch, strides = 1, (0, 0, 0)
    else:
        if trace:
            raise ValueError("a batched launch cannot be traced: trace one product at a time")
        batch, strides = a.shape[0], (a.stride(0), b.stride(0), c.stride(0))
    first = [t if t.dim() == 2 else t.select(0, 0) for t in (a, b, c)]
    gemm = gemm_arguments(
        config, *first[:2], bias, first[2], workspace, backend, trace, static_max_steps(config)
    )
    # the batch's own tensors (their first product starts where they do) in a, b, c's places
    bias_arg = c if bias is None else gemm.args[3]
    args = (a, b, c, bias_arg) + gemm.args[4:] + strides + (gemm.max_steps,)
    launch = Launch(data_parallel_kernel, (config.grid, batch), args, gemm.constexprs, options)
    return LaunchSet((launch,), traces=(("gemm", gemm.trace),))
