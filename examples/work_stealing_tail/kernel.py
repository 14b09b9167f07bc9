"""A work-stealing GEMM with a Stream-K tail, written as a kernel from outside this project would be.

Programs steal whole tiles from per-XCD atomic tile counters; once a program's counter runs dry
it computes its share of the last ``sk_tiles`` tiles, split Stream-K style over the whole grid,
and a split tile is reduced by the last contributor to arrive (partials and per-tile counters).

The bug class of the issue lives in :func:`counter_of`: the counter's XCD comes from the
hardware program id (where AMD dispatches the program), while its slot within the XCD comes
from the XCD-remapped id when ``SLOT_FROM_REMAPPED_ID`` is set. The remap gives each XCD one
block of consecutive ids, whose slots need not reach every counter of the XCD: the tiles of a
counter nobody draws from are never computed. ``SLOT_FROM_REMAPPED_ID=False`` takes the slot
from the hardware id too, and every counter is served.

The schedule's integers come from refsim's ``ScheduleConfig`` (``GemmConfig.schedule_config``),
and the counter ranges and the tail's iteration ranges from the jitted tiling contract
(:mod:`kernels.contract`), so the kernel follows refsim's plan for ``strategy="work_stealing"``
with ``ws_counter_ranges="per-xcd"``, ``sk_tiles`` and ``fixup="last-arriver"``. The schedule is
the kernel's own; its K-loop and epilogue are the project's (``kernels.tile.tile_accumulate`` and
``tile_epilogue``), which also hold the workarounds for Triton's interpreter (bf16 ``tl.dot``,
truncating casts) in one place.
"""

import torch
import triton
import triton.language as tl

from conformance.worklog import ROLE_SK_CONTRIBUTOR, ROLE_SK_OWNER, ROLE_WS, record_work
from kernels import contract
from kernels.backend import backend_for
from kernels.tile import tile_accumulate, tile_epilogue


@triton.jit
def counter_of(pid, lp, schedule, SLOT_FROM_REMAPPED_ID: tl.constexpr):
    """The tile counter program ``pid`` (logical id ``lp``) steals from."""
    xcd = pid % schedule.counter_xcds
    if SLOT_FROM_REMAPPED_ID:
        slot = (lp // schedule.counter_xcds) % schedule.counters_per_xcd  # the bug
    else:
        slot = (pid // schedule.counter_xcds) % schedule.counters_per_xcd
    return xcd * schedule.counters_per_xcd + slot


@triton.jit
def ws_tail_gemm(
    a_ptr, b_ptr, c_ptr, bias_ptr, M, N, K,
    stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn, stride_bias,
    schedule,  # refsim's ScheduleConfig: grid, XCDs, tiles, counter layout, sk_tiles
    tile_counters_ptr,  # int32 per work-stealing counter, zeroed
    arrivals_ptr,  # int32 per tail tile, zeroed
    partials_ptr,  # fp32 (2 * grid, BLOCK_M, BLOCK_N)
    log_ptr, max_items,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    EVEN_K: tl.constexpr, HAS_BIAS: tl.constexpr, SLOT_FROM_REMAPPED_ID: tl.constexpr,
    BACKEND: tl.constexpr, RECORD: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    grid = schedule.grid
    iters = schedule.iters_per_tile
    first_sk = schedule.dp_tiles
    lp = contract.xcd_remap(pid, grid, schedule.xcds)
    step = pid * 0

    # Steal whole tiles from this program's counter until its range is exhausted.
    counter = counter_of(pid, lp, schedule, SLOT_FROM_REMAPPED_ID)
    begin, end = contract.ws_range_per_xcd(counter, schedule)
    ticket = tl.atomic_add(tile_counters_ptr + counter, 1, sem="relaxed", scope="gpu")
    while begin + ticket < end:
        tile = begin + ticket
        pid_m, pid_n = contract.grouped_tile(
            tile, schedule.num_pid_m, schedule.num_pid_n, schedule.group_m
        )
        acc = tile_accumulate(
            a_ptr, b_ptr, M, N, K, stride_am, stride_ak, stride_bk, stride_bn, pid_m, pid_n,
            0, iters, BLOCK_M, BLOCK_N, BLOCK_K, EVEN_K, "ieee", BACKEND,
        )  # fmt: skip
        tile_epilogue(
            acc, c_ptr, bias_ptr, M, N, stride_cm, stride_cn, stride_bias, pid_m, pid_n,
            BLOCK_M, BLOCK_N, HAS_BIAS, BACKEND,
        )  # fmt: skip
        if RECORD:
            record_work(
                log_ptr, pid, step, tile, pid_m, pid_n, 0, iters, ROLE_WS, ticket, counter,
                max_items,
            )  # fmt: skip
        step += 1
        ticket = tl.atomic_add(tile_counters_ptr + counter, 1, sem="relaxed", scope="gpu")

    # Then this program's Stream-K iterations of the last sk_tiles tiles, segment by segment.
    sk_iters = schedule.sk_tiles * iters
    start, stop = contract.streamk_iter_range(lp, sk_iters, grid)
    it = start
    while it < stop:
        tile, k_begin, k_end = contract.streamk_segment(it, stop, iters, first_sk)
        pid_m, pid_n = contract.grouped_tile(
            tile, schedule.num_pid_m, schedule.num_pid_n, schedule.group_m
        )
        acc = tile_accumulate(
            a_ptr, b_ptr, M, N, K, stride_am, stride_ak, stride_bk, stride_bn, pid_m, pid_n,
            k_begin, k_end, BLOCK_M, BLOCK_N, BLOCK_K, EVEN_K, "ieee", BACKEND,
        )  # fmt: skip
        owner, last = contract.streamk_tile_programs(tile, first_sk, iters, sk_iters, grid)
        if owner == last:  # the whole tile is this program's
            tile_epilogue(
                acc, c_ptr, bias_ptr, M, N, stride_cm, stride_cn, stride_bias, pid_m, pid_n,
                BLOCK_M, BLOCK_N, HAS_BIAS, BACKEND,
            )  # fmt: skip
        else:  # store the partial; the last to arrive sums them all in K order
            tile_offs = tl.arange(0, BLOCK_M)[:, None] * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]
            slot = contract.streamk_partial_slot(lp, tile, first_sk, iters, sk_iters, grid)
            tl.store(partials_ptr + slot * (BLOCK_M * BLOCK_N) + tile_offs, acc)
            tl.debug_barrier()
            arrived = tl.atomic_add(arrivals_ptr + tile - first_sk, 1, sem="acq_rel", scope="gpu")
            if arrived == last - owner:
                total = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
                for q in range(owner, last + 1):
                    q_slot = contract.streamk_partial_slot(q, tile, first_sk, iters, sk_iters, grid)
                    total += tl.load(
                        partials_ptr + q_slot * (BLOCK_M * BLOCK_N) + tile_offs,
                        cache_modifier=".cg",
                    )
                tile_epilogue(
                    total, c_ptr, bias_ptr, M, N, stride_cm, stride_cn, stride_bias, pid_m,
                    pid_n, BLOCK_M, BLOCK_N, HAS_BIAS, BACKEND,
                )  # fmt: skip
        if RECORD:
            owns_k0 = (k_begin == 0).to(tl.int32)  # the segment holding k = 0: the tile's owner
            role = owns_k0 * ROLE_SK_OWNER + (1 - owns_k0) * ROLE_SK_CONTRIBUTOR
            record_work(
                log_ptr, pid, step, tile, pid_m, pid_n, k_begin, k_end, role, -1, -1, max_items
            )
        step += 1
        it += k_end - k_begin


def launch(config, a, b, bias, out, worklog, slot_from_remapped_id=False):
    """``out = a @ b + bias`` by :func:`ws_tail_gemm` on ``config``'s grid, blocks and schedule.

    Allocates the tile counters, the tail's arrival counters and its partial buffer per launch.
    ``worklog`` (a :class:`conformance.worklog.WorkLog`, or None) receives one record per work
    item; without one the kernel records nothing. ``slot_from_remapped_id`` chooses the buggy
    counter map.
    """
    schedule = config.schedule_config
    device = a.device
    tile_counters = torch.zeros(schedule.num_counters, dtype=torch.int32, device=device)
    arrivals = torch.zeros(max(schedule.sk_tiles, 1), dtype=torch.int32, device=device)
    partials = torch.empty(
        (2 * config.grid, config.block_m, config.block_n), dtype=torch.float32, device=device
    )
    log = worklog.tensor if worklog is not None else tile_counters  # never written without RECORD
    ws_tail_gemm[(config.grid,)](
        a, b, out, bias if bias is not None else a, config.m, config.n, config.k,
        a.stride(0), a.stride(1), b.stride(0), b.stride(1), out.stride(0), out.stride(1),
        bias.stride(0) if bias is not None else 0,
        schedule, tile_counters, arrivals, partials, log,
        worklog.max_items if worklog is not None else 0,
        BLOCK_M=config.block_m, BLOCK_N=config.block_n, BLOCK_K=config.block_k,
        EVEN_K=config.k % config.block_k == 0, HAS_BIAS=bias is not None,
        SLOT_FROM_REMAPPED_ID=slot_from_remapped_id, BACKEND=backend_for(device.type),
        RECORD=worklog is not None,
    )  # fmt: skip
    return out
