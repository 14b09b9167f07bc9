"""Stream-K GEMM (hybrid): data-parallel tiles by static stride, then SK tiles split over the grid.

Tiles ``[0, dp_tiles)`` go whole to programs ``lp, lp + grid, ...``; the SK iterations that
follow are cut into one contiguous range per program (``refsim.tiling.streamk_iter_range``).
A tile whose K-range spans programs is reduced by the fixup protocol (``FIXUP``):

* ``OWNER_WAITS``: the owner (holder of k = 0) waits for each later contributor's flag, in K
  order, and adds their partials. Needs every program resident at once.
* ``TURNSTILE``: each contributor waits for its predecessor in K order, adds its running sum
  and passes the sum on; the holder of the last K-iteration finalises. Programs walk their
  range backwards, so the k = 0 partial is produced first.
* ``LAST_ARRIVER``: everyone stores its partial and bumps the tile's counter; the last to
  arrive sums all partials in K order. No waiting.
* ``ATOMIC``: float atomic adds into a zeroed output; arrival order decides rounding.

Partial workspace layout: ``(2 * grid, BLOCK_M, BLOCK_N)`` fp32, slot ``2 * lp`` for the
segment at the start of logical program ``lp``'s range, ``2 * lp + 1`` for the one at its end
(see :func:`partial_slot`). Flags: one int32 per logical program, holding the launch's epoch
once its partial is published. Counters (last-arriver, atomic): one int32 per SK tile.
When tracing, every partial store and every release (flag published, counter arrived at) is
appended to an event log (``tile.log_event``), so a checker can see each program's order.
"""

import triton
import triton.language as tl

from refsim import tiling

from .tile import (
    ROLE_DP,
    ROLE_SK_CONTRIBUTOR,
    arrive,
    cdiv,
    grouped_tile,
    load_partial,
    logical_program,
    persistent_tile,
    persistent_tile_count,
    publish,
    store_partial,
    streamk_iter_range,
    streamk_segment,
    streamk_segment_back,
    streamk_tile_programs,
    tile_accumulate,
    tile_epilogue,
    trace_begin,
    trace_end,
    wait_for,
    whole_tile,
)

OWNER_WAITS, TURNSTILE, LAST_ARRIVER, ATOMIC = 0, 1, 2, 3
FIXUP_CODES = {
    "owner-waits": OWNER_WAITS,
    "turnstile": TURNSTILE,
    "last-arriver": LAST_ARRIVER,
    "atomic": ATOMIC,
}


@triton.jit
def partial_slot_of(program, tile, dp_tiles, iters, sk_iters, num_programs):
    """Workspace slot holding logical ``program``'s partial of SK ``tile``."""
    range_start, _ = streamk_iter_range(program, sk_iters, num_programs)
    tile_start = (tile - dp_tiles) * iters
    return 2 * program + (tile_start > range_start).to(tl.int32)


@triton.jit
def sk_segment(
    a_ptr,
    b_ptr,
    c_ptr,
    bias_ptr,
    trace_ptr,
    partials_ptr,
    flags_ptr,
    counters_ptr,
    events_ptr,
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
    pid,
    lp,
    step,
    tile,
    k_begin,
    k_end,
    dp_tiles,
    sk_iters,
    num_programs,
    epoch,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    EVEN_K: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    max_steps,
    TRACE: tl.constexpr,
    BACKEND: tl.constexpr,
    FIXUP: tl.constexpr,
):
    """One SK segment of one tile: K-loop, then this program's part of the tile's fixup."""
    iters = cdiv(K, BLOCK_K)
    pid_m, pid_n = grouped_tile(tile, cdiv(M, BLOCK_M), cdiv(N, BLOCK_N), GROUP_M)
    t_start = trace_begin(step, TRACE, BACKEND)
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
    owner, last = streamk_tile_programs(tile, dp_tiles, iters, sk_iters, num_programs)
    my_slot = partial_slot_of(lp, tile, dp_tiles, iters, sk_iters, num_programs)
    finalizes = lp * 0
    if owner == last:
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
        finalizes = lp * 0 + 1
    elif FIXUP == 0:
        if k_begin != 0:
            store_partial(partials_ptr, my_slot, acc, events_ptr, pid, BLOCK_M, BLOCK_N, TRACE)
            publish(flags_ptr, lp, epoch, events_ptr, pid, TRACE)
        else:
            for q in range(lp + 1, last + 1):
                wait_for(flags_ptr + q, epoch, BACKEND)
                q_slot = partial_slot_of(q, tile, dp_tiles, iters, sk_iters, num_programs)
                acc += load_partial(partials_ptr, q_slot, BLOCK_M, BLOCK_N)
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
            finalizes = lp * 0 + 1
    elif FIXUP == 1:
        if lp > owner:
            wait_for(flags_ptr + (lp - 1), epoch, BACKEND)
            prev_slot = partial_slot_of(lp - 1, tile, dp_tiles, iters, sk_iters, num_programs)
            acc = load_partial(partials_ptr, prev_slot, BLOCK_M, BLOCK_N) + acc
        if lp < last:
            store_partial(partials_ptr, my_slot, acc, events_ptr, pid, BLOCK_M, BLOCK_N, TRACE)
            publish(flags_ptr, lp, epoch, events_ptr, pid, TRACE)
        else:
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
            finalizes = lp * 0 + 1
    elif FIXUP == 2:
        store_partial(partials_ptr, my_slot, acc, events_ptr, pid, BLOCK_M, BLOCK_N, TRACE)
        arrived = arrive(counters_ptr, tile - dp_tiles, events_ptr, pid, TRACE)
        if arrived == last - owner:
            owner_slot = partial_slot_of(owner, tile, dp_tiles, iters, sk_iters, num_programs)
            total = load_partial(partials_ptr, owner_slot, BLOCK_M, BLOCK_N)
            for q in range(owner + 1, last + 1):
                q_slot = partial_slot_of(q, tile, dp_tiles, iters, sk_iters, num_programs)
                total += load_partial(partials_ptr, q_slot, BLOCK_M, BLOCK_N)
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
            finalizes = lp * 0 + 1
    else:
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        if HAS_BIAS:  # noqa: SIM102 (a constexpr test, then a runtime one)
            if k_begin == 0:
                bias = tl.load(bias_ptr + offs_n * stride_bias, mask=offs_n < N, other=0.0)
                acc = acc + bias.to(tl.float32)[None, :]
        c_ptrs = c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
        mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
        tl.atomic_add(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=mask, sem="relaxed")
        arrived = tl.atomic_add(counters_ptr + (tile - dp_tiles), 1, sem="relaxed", scope="gpu")
        finalizes = (arrived == last - owner).to(tl.int32)
    role = ROLE_SK_CONTRIBUTOR - (k_begin == 0).to(tl.int32)
    trace_end(
        trace_ptr,
        pid,
        step,
        tile,
        pid_m,
        pid_n,
        k_begin,
        k_end,
        role,
        t_start,
        lp * 0 - 1,
        lp * 0 - 1,
        finalizes,
        max_steps,
        TRACE,
        BACKEND,
    )


# dp_tiles, sk_iters and the epoch change between launches; specialising them (Triton treats
# an int equal to 1 as a constant) would recompile per launch. Triton 3.6 also fails to
# compile this kernel (TritonGPUCoalesce) with sk_iters == 1 or K == 1 specialised.
@triton.jit(do_not_specialize=["K", "dp_tiles", "sk_iters", "epoch"])
def streamk_kernel(
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
    # Stream-K workspace and split
    partials_ptr,
    flags_ptr,
    counters_ptr,
    order_ptr,
    dp_tiles,
    sk_iters,
    epoch,
    # the event log of partial stores and releases (written when TRACE)
    events_ptr,
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
    # fixup protocol; ORDERED: take the program id from order_ptr (sequential interpreter)
    FIXUP: tl.constexpr,
    ORDERED: tl.constexpr,
):
    pid = tl.program_id(0)
    if ORDERED:
        pid = tl.load(order_ptr + pid)
    num_programs = tl.num_programs(0)
    lp = logical_program(pid, num_programs, NUM_XCDS, REMAP, CHUNK)
    iters = cdiv(K, BLOCK_K)
    dp_steps = persistent_tile_count(lp, dp_tiles, num_programs)
    for step in range(0, dp_steps):
        tile = persistent_tile(lp, step, num_programs)
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
            step,
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
    start, end = streamk_iter_range(lp, sk_iters, num_programs)
    step = dp_steps
    it = start
    if FIXUP == 1:
        it = end  # turnstile walks backwards: the tile it owns (k = 0) first
    remaining = end - start
    while remaining > 0:
        if FIXUP == 1:
            tile, k_begin, k_end = streamk_segment_back(it, start, iters, dp_tiles)
            it -= k_end - k_begin
        else:
            tile, k_begin, k_end = streamk_segment(it, end, iters, dp_tiles)
            it += k_end - k_begin
        sk_segment(
            a_ptr,
            b_ptr,
            c_ptr,
            bias_ptr,
            trace_ptr,
            partials_ptr,
            flags_ptr,
            counters_ptr,
            events_ptr,
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
            pid,
            lp,
            step,
            tile,
            k_begin,
            k_end,
            dp_tiles,
            sk_iters,
            num_programs,
            epoch,
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
            FIXUP,
        )
        remaining -= k_end - k_begin
        step += 1


def partial_slot(config, program, tile):
    """Workspace slot of hardware ``program``'s partial of ``tile`` (host side of the layout)."""
    lp = config.logical_program(program)
    range_start, _ = tiling.streamk_iter_range(lp, config.sk_iters, config.grid)
    tile_start = (tile - config.dp_tiles) * config.iters_per_tile
    return 2 * lp + (tile_start > range_start)


def execution_order(config):
    """Hardware program ids in an order the sequential interpreter can run without spinning.

    Owner-waits: highest logical id first (owners wait on later programs); otherwise lowest
    logical id first (turnstile's programs wait on their predecessor; the others never wait).
    """
    by_logical = sorted(range(config.grid), key=config.logical_program)
    if config.fixup == "owner-waits":
        return by_logical[::-1]
    return by_logical
