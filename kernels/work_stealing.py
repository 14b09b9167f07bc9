"""Work-stealing GEMM: persistent programs draw tile tickets from atomic counters.

Program ``pid`` draws from counter ``refsim.tiling.ws_counter(pid, ...)`` (one per XCD, several
per XCD, or one global counter); counter ``c`` hands out the tiles of
``ws_counter_range(c, ...)`` in ticket order and the program stops at the first ticket past
the range. Counters sit ``COUNTER_STRIDE`` int32s apart (their own 128-byte line each); one
more, after them, counts the programs that finished, and the last of them zeroes them all, so
the next launch finds them zeroed without a zeroing launch.
"""

import torch
import triton
import triton.language as tl

from refsim import tiling

from . import contract
from .launch_spec import Launch, LaunchSet, gemm_arguments
from .tile import ROLE_WS, release_counter, whole_tile, zero_like

COUNTER_STRIDE = 32


@triton.jit
def work_stealing_kernel(
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
    # counters
    counters_ptr,
    num_counters,
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
    # counter layout (ws_counter's constants) and padding
    WS_XCDS: tl.constexpr,
    WS_PER_XCD: tl.constexpr,
    COUNTER_STRIDE: tl.constexpr,
):
    pid = tl.program_id(0)
    total_tiles = contract.cdiv(M, BLOCK_M) * contract.cdiv(N, BLOCK_N)
    counter = contract.ws_counter(pid, WS_XCDS, WS_PER_XCD)
    _, end = contract.ws_counter_range(counter, total_tiles, num_counters)
    counter_ptr = counters_ptr + counter * COUNTER_STRIDE
    ticket = tl.atomic_add(counter_ptr, 1, sem="relaxed", scope="gpu")
    tile = contract.ws_ticket_tile(counter, ticket, total_tiles, num_counters)
    step = zero_like(pid)
    while tile < end:
        whole_tile(
            a_view=(a_ptr, stride_am, stride_ak),
            b_view=(b_ptr, stride_bk, stride_bn),
            c_view=(c_ptr, stride_cm, stride_cn),
            bias_view=(bias_ptr, stride_bias),
            shape=(M, N, K),
            trace=(trace_ptr, pid, max_steps),
            step=step,
            tile=tile,
            ticket=ticket,
            counter=counter,
            role=ROLE_WS,
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
        ticket = tl.atomic_add(counter_ptr, 1, sem="relaxed", scope="gpu")
        tile = contract.ws_ticket_tile(counter, ticket, total_tiles, num_counters)
        step += 1
    # every program's last ticket is drawn before it counts itself finished (release), and the
    # last to finish sees them all (acquire) before it resets the counters
    tl.debug_barrier()
    done_index = num_counters * COUNTER_STRIDE
    finished = tl.atomic_add(counters_ptr + done_index, 1, sem="acq_rel", scope="gpu")
    if finished == tl.num_programs(0) - 1:
        for index in range(0, num_counters + 1):
            release_counter(counters_ptr, index * COUNTER_STRIDE)


def launches(config, a, b, bias, c, workspace, backend, trace, options):
    """One launch over the workspace's counters, zeroed by the launch before (see
    :mod:`kernels.launch_spec`)."""
    max_steps = tiling.ws_max_work_items(config.total_tiles, config.num_counters)
    gemm = gemm_arguments(config, a, b, bias, c, workspace, backend, trace, max_steps)
    counters = workspace.buffer("counters", (config.num_counters + 1) * COUNTER_STRIDE, torch.int32)
    ws_xcds, per_xcd = config.counter_layout
    launch = Launch(
        work_stealing_kernel,
        (config.grid,),
        gemm.args + (counters, config.num_counters, gemm.max_steps),
        dict(gemm.constexprs, WS_XCDS=ws_xcds, WS_PER_XCD=per_xcd, COUNTER_STRIDE=COUNTER_STRIDE),
        options,
    )
    return LaunchSet((launch,), traces=(("gemm", gemm.trace),))
