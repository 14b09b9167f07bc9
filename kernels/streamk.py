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

Partial workspace layout: ``(2 * grid + 1, BLOCK_M, BLOCK_N)`` fp32, slot
``refsim.tiling.streamk_partial_slot``: ``2 * lp`` for the segment at the start of logical
program ``lp``'s range, ``2 * lp + 1`` for the one at its end; the last slot is a guard that only
a write past the others reaches. Flags: one int32 per logical program, holding the launch's
epoch once its partial is published. Counters (last-arriver, atomic): one int32 per SK tile,
``refsim.tiling.streamk_tile_counter``; the last arrival zeroes its tile's counter again.
When tracing, every partial store and load, every release (flag published, counter arrived at)
and every wait and acquire is appended to an event log (``tile.log_event``), so a checker can
see each program's order. Owner-waits and turnstile programs wait on each other: under the
interpreter, which runs programs one at a time, the launch carries :func:`execution_order`.
"""

import torch
import triton
import triton.language as tl

from refsim import tiling

from . import contract
from .launch_spec import Launch, LaunchSet, gemm_arguments, static_max_steps
from .records import event_log
from .tile import (
    ROLE_DP,
    ROLE_SK_CONTRIBUTOR,
    accumulate,
    arrive,
    epilogue,
    int_like,
    load_partial,
    no_value,
    publish,
    release_counter,
    store_partial,
    trace_begin,
    trace_end,
    wait_for,
    whole_tile,
)

# The fixup protocols (FIXUP).
OWNER_WAITS = tl.constexpr(0)
TURNSTILE = tl.constexpr(1)
LAST_ARRIVER = tl.constexpr(2)
ATOMIC = tl.constexpr(3)
FIXUP_CODES = {
    "owner-waits": OWNER_WAITS,
    "turnstile": TURNSTILE,
    "last-arriver": LAST_ARRIVER,
    "atomic": ATOMIC,
}


@triton.jit
def sk_segment(
    a_view,
    b_view,
    c_view,
    bias_view,
    shape,
    trace,
    events,
    partials_ptr,
    flags_ptr,
    counters_ptr,
    epoch,
    split,
    lp,
    step,
    tile,
    k_begin,
    k_end,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    EVEN_K: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    TRACE: tl.constexpr,
    BACKEND: tl.constexpr,
    FIXUP: tl.constexpr,
):
    """One SK segment of one tile: K-loop, then this program's part of the tile's fixup.

    ``split = (dp_tiles, sk_iters, num_programs)``: the Stream-K split of this launch.
    """
    M, N, K = shape
    dp_tiles, sk_iters, num_programs = split
    iters = contract.cdiv(K, BLOCK_K)
    pid_m, pid_n = contract.grouped_tile(
        tile, contract.cdiv(M, BLOCK_M), contract.cdiv(N, BLOCK_N), GROUP_M
    )
    t_start = trace_begin(step, TRACE, BACKEND)
    acc = accumulate(
        a_view, b_view, shape, pid_m, pid_n, k_begin, k_end, BLOCK_M, BLOCK_N, BLOCK_K, EVEN_K,
        INPUT_PRECISION, BACKEND,
    )  # fmt: skip
    owner, last = contract.streamk_tile_programs(tile, dp_tiles, iters, sk_iters, num_programs)
    my_slot = contract.streamk_partial_slot(lp, tile, dp_tiles, iters, sk_iters, num_programs)
    counter = contract.streamk_tile_counter(tile, dp_tiles)
    # Each protocol leaves the tile's sum in acc where this program stores the final tile;
    # then the one epilogue below adds the bias and stores it.
    # (The partial stores and loads left positional are lines conformance/mutants.py patches
    # by their exact text.)
    stores_tile = (owner == last).to(tl.int32)
    finalizes = stores_tile
    if owner == last:
        pass
    elif FIXUP == OWNER_WAITS:
        if k_begin != 0:
            store_partial(partials_ptr, my_slot, acc, tile, events, BLOCK_M, BLOCK_N, TRACE)
            publish(flags_ptr, lp, epoch, events, TRACE)
        else:
            for q in range(lp + 1, last + 1):
                wait_for(flags_ptr, q, epoch, events, TRACE, BACKEND)
                q_slot = contract.streamk_partial_slot(
                    q, tile, dp_tiles, iters, sk_iters, num_programs
                )
                acc += load_partial(
                    ws_ptr=partials_ptr,
                    slot=q_slot,
                    tile=tile,
                    events=events,
                    BLOCK_M=BLOCK_M,
                    BLOCK_N=BLOCK_N,
                    LOG=TRACE,
                )
            stores_tile = int_like(lp, 1)
    elif FIXUP == TURNSTILE:
        if lp > owner:
            wait_for(flags_ptr, lp - 1, epoch, events, TRACE, BACKEND)
            prev_slot = contract.streamk_partial_slot(
                lp - 1, tile, dp_tiles, iters, sk_iters, num_programs
            )
            running = load_partial(
                ws_ptr=partials_ptr,
                slot=prev_slot,
                tile=tile,
                events=events,
                BLOCK_M=BLOCK_M,
                BLOCK_N=BLOCK_N,
                LOG=TRACE,
            )
            acc = running + acc
        if lp < last:
            store_partial(
                ws_ptr=partials_ptr,
                slot=my_slot,
                acc=acc,
                tile=tile,
                events=events,
                BLOCK_M=BLOCK_M,
                BLOCK_N=BLOCK_N,
                LOG=TRACE,
            )
            publish(flags_ptr, lp, epoch, events, TRACE)
        else:
            stores_tile = int_like(lp, 1)
    elif FIXUP == LAST_ARRIVER:
        store_partial(partials_ptr, my_slot, acc, tile, events, BLOCK_M, BLOCK_N, TRACE)
        arrived = arrive(counters_ptr, counter, events, TRACE)
        if arrived == last - owner:
            owner_slot = contract.streamk_partial_slot(
                owner, tile, dp_tiles, iters, sk_iters, num_programs
            )
            total = load_partial(partials_ptr, owner_slot, tile, events, BLOCK_M, BLOCK_N, TRACE)
            for q in range(owner + 1, last + 1):
                q_slot = contract.streamk_partial_slot(
                    q, tile, dp_tiles, iters, sk_iters, num_programs
                )
                total += load_partial(partials_ptr, q_slot, tile, events, BLOCK_M, BLOCK_N, TRACE)
            acc = total
            stores_tile = int_like(lp, 1)
            release_counter(counters_ptr, counter)
    else:
        # ATOMIC: every segment adds into the zeroed output, the owner's with the bias
        epilogue(
            acc=acc,
            c_view=c_view,
            bias_view=bias_view,
            shape=shape,
            pid_m=pid_m,
            pid_n=pid_n,
            BLOCK_M=BLOCK_M,
            BLOCK_N=BLOCK_N,
            HAS_BIAS=HAS_BIAS,
            BACKEND=BACKEND,
            add_bias=k_begin == 0,
            ATOMIC=True,
        )
        arrived = tl.atomic_add(counters_ptr + counter, 1, sem="relaxed", scope="gpu")
        finalizes = (arrived == last - owner).to(tl.int32)
        if finalizes != 0:
            release_counter(counters_ptr, counter)
    if stores_tile:
        epilogue(acc, c_view, bias_view, shape, pid_m, pid_n, BLOCK_M, BLOCK_N, HAS_BIAS, BACKEND)
        finalizes = stores_tile
    role = ROLE_SK_CONTRIBUTOR - (k_begin == 0).to(tl.int32)
    trace_end(
        trace=trace,
        step=step,
        tile=tile,
        pid_m=pid_m,
        pid_n=pid_n,
        k_begin=k_begin,
        k_end=k_end,
        role=role,
        t_start=t_start,
        ticket=no_value(lp),
        counter=no_value(lp),
        finalizes=finalizes,
        TRACE=TRACE,
        BACKEND=BACKEND,
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
    dp_tiles,
    sk_iters,
    epoch,
    # the event log of partial stores and loads, releases, waits and acquires (when TRACE)
    events_ptr,
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
    # fixup protocol
    FIXUP: tl.constexpr,
):
    pid = tl.program_id(0)
    num_programs = tl.num_programs(0)
    lp = contract.logical_program(pid, num_programs, NUM_XCDS, REMAP, CHUNK)
    iters = contract.cdiv(K, BLOCK_K)
    a_view, b_view = (a_ptr, stride_am, stride_ak), (b_ptr, stride_bk, stride_bn)
    c_view, bias_view = (c_ptr, stride_cm, stride_cn), (bias_ptr, stride_bias)
    shape, trace = (M, N, K), (trace_ptr, pid, max_steps)
    dp_steps = contract.persistent_tile_count(lp, dp_tiles, num_programs)
    for step in range(0, dp_steps):
        tile = contract.persistent_tile(lp, step, num_programs)
        whole_tile(
            a_view=a_view,
            b_view=b_view,
            c_view=c_view,
            bias_view=bias_view,
            shape=shape,
            trace=trace,
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
    start, end = contract.streamk_iter_range(lp, sk_iters, num_programs)
    step = dp_steps
    it = start
    if FIXUP == TURNSTILE:
        it = end  # turnstile walks backwards: the tile it owns (k = 0) first
    remaining = end - start
    while remaining > 0:
        tile, k_begin, k_end, it = contract.streamk_walk_step(
            it, start, end, iters, dp_tiles, FIXUP == TURNSTILE
        )
        sk_segment(
            a_view=a_view,
            b_view=b_view,
            c_view=c_view,
            bias_view=bias_view,
            shape=shape,
            trace=trace,
            events=(events_ptr, pid),
            partials_ptr=partials_ptr,
            flags_ptr=flags_ptr,
            counters_ptr=counters_ptr,
            epoch=epoch,
            split=(dp_tiles, sk_iters, num_programs),
            lp=lp,
            step=step,
            tile=tile,
            k_begin=k_begin,
            k_end=k_end,
            BLOCK_M=BLOCK_M,
            BLOCK_N=BLOCK_N,
            BLOCK_K=BLOCK_K,
            GROUP_M=GROUP_M,
            EVEN_K=EVEN_K,
            INPUT_PRECISION=INPUT_PRECISION,
            HAS_BIAS=HAS_BIAS,
            TRACE=TRACE,
            BACKEND=BACKEND,
            FIXUP=FIXUP,
        )
        remaining -= k_end - k_begin
        step += 1


def launches(config, a, b, bias, c, workspace, backend, trace, options):
    """One launch over the workspace's partials (plus a guard slot), flags and counters (see
    :mod:`kernels.launch_spec`); owner-waits and turnstile require :func:`execution_order`."""
    gemm = gemm_arguments(
        config, a, b, bias, c, workspace, backend, trace, static_max_steps(config)
    )
    grid, block_m, block_n = config.grid, config.block_m, config.block_n
    slots = 2 * grid + 1
    partials = workspace.buffer("partials", slots * block_m * block_n, torch.float32)
    flags = workspace.buffer("flags", grid, torch.int32)
    counters = workspace.buffer("counters", max(config.sk_tiles, 1), torch.int32)
    zeroed = (c,) if config.protocol.atomic and config.sk_tiles else ()
    events = event_log(event_capacity(config), a.device) if trace else gemm.trace
    epoch = workspace.next_epoch(flags)
    args = gemm.args + (partials, flags, counters, config.dp_tiles, config.sk_iters)
    launch = Launch(
        streamk_kernel,
        (grid,),
        args + (epoch, events, gemm.max_steps),
        dict(gemm.constexprs, FIXUP=FIXUP_CODES[config.fixup]),
        options,
        order=tuple(execution_order(config)) if config.protocol.waits else None,
        epoch_arg=len(args),
    )
    return LaunchSet(
        (launch,),
        zeroed=zeroed,
        traces=(("gemm", gemm.trace),),
        partials=partials.view(slots, block_m, block_n) if config.sk_tiles else None,
        events=events if trace else None,
        flags=flags,
        epoch=epoch,
    )


def event_capacity(config):
    """The most events a launch logs: per SK segment at most five (a contributor's store and
    release, or an owner's wait, acquire and load per later contributor; a last arriver's
    loads), and a launch has at most ``sk_tiles + grid - 1`` segments."""
    return 5 * (config.sk_tiles + config.grid)


def partial_slot(config, program, tile):
    """Slot in ``KernelRun.partials`` of hardware ``program``'s partial of SK ``tile``."""
    return tiling.streamk_partial_slot(
        config.logical_program(program),
        tile,
        config.dp_tiles,
        config.iters_per_tile,
        config.sk_iters,
        config.grid,
    )


def execution_order(config):
    """Hardware program ids in an order the sequential interpreter can run without spinning.

    The protocol's ``wait_order``: ``"higher-first"`` (owner-waits: owners wait on later
    programs) runs the highest logical id first; otherwise the lowest first (turnstile's
    programs wait on their predecessor).
    """
    by_logical = sorted(range(config.grid), key=config.logical_program)
    if config.protocol.wait_order == "higher-first":
        return by_logical[::-1]
    return by_logical
