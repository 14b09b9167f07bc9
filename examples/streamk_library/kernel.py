"""A Stream-K + work-stealing GEMM, written as a third-party GEMM library writes one.

The library's own conventions, in the style of tritonBLAS and the Triton tutorials: its own
index math (``pid_m``, ``rm = pid_m * BLOCK_SIZE_M + tl.arange(...)``, masks), its own K-loop
(:func:`mac_loop`, ``tl.dot`` into an fp32 accumulator) and two store paths of its own, one for
whole tiles (:func:`store_full_tile`) and one for Stream-K tiles (:func:`store_sk_tile`). It
imports nothing from this project but :func:`conformance.worklog.record_work`, which records
its work for the conformance suite behind the ``RECORD`` constexpr.

The schedule, which ``adapter.py`` describes to refsim:

* **Logical program ids** by the library's chunked XCD remap (:func:`chiplet_transform_chunked`):
  ``CHUNK_SIZE`` consecutive ids per XCD in turn, and the programs after the last whole round
  remapped plainly among themselves, where refsim's built-in chunked remap keeps their ids.
* **Work stealing** of the first ``total_tiles - STREAMK_TILES`` tiles: one atomic
  ``tile_counter`` per XCD, each handing out its XCD's share of the tiles in order; or, with
  ``GLOBAL_COUNTER``, one counter whose tickets name tiles by an XCD-aware interleave
  (:func:`chiplet_transform` of the ticket).
* **Stream-K** of the last ``STREAMK_TILES`` tiles (:func:`streamk_tiles`, the host rule): each
  logical program a contiguous range of their K-iterations, the first ``sk_iters % NUM_SMS`` one
  more. A program whose range starts inside a tile stores its partial in ``P`` and sets its
  ``locks`` flag; the tile's owner (the program holding its first iteration) waits for the
  later programs' flags in order and adds their partials.

Three injected bugs, each behind a constexpr the host sets:

* ``WRAP_SK_ROWS``: the Stream-K store computes its rows modulo M before the row mask, so the
  bottom edge tile also writes its rows past M over the top rows of the matrix.
* ``BIAS_AFTER_CAST``: the whole-tile store adds the bias after the cast to fp16/bf16, where
  the Stream-K store adds it in fp32 and rounds once.
* ``FLOOR_SHARE_AND_BIAS_INIT``: each XCD's share of the stolen tiles is rounded down, so the
  last tiles are never taken, and a stolen tile's accumulator starts from the bias, which the
  store adds again.

Nothing in it is written for Triton's interpreter: the conformance suite runs it there with
the interpreter's bf16 ``tl.dot`` and fp32 -> bf16 casts computing as a GPU's do
(:mod:`conformance.interpreter`).
"""

import torch
import triton
import triton.language as tl

from conformance.worklog import ROLE_SK_CONTRIBUTOR, ROLE_SK_OWNER, ROLE_WS, record_work

# The library's chunk of its XCD remap: consecutive program ids that share an XCD's L2.
CHUNK_SIZE = 2


def streamk_tiles(total_tiles, num_sms):
    """The library's Stream-K rule (host side): the partial last wave goes Stream-K, none when
    the tiles fill whole waves, and every tile when there are fewer tiles than programs."""
    if total_tiles < num_sms:
        return total_tiles
    return total_tiles % num_sms


@triton.jit
def chiplet_transform(pid, num_workgroups, num_xcds):
    """Plain XCD remap: the ids of XCD ``pid % num_xcds`` become one contiguous block (the
    first ``num_workgroups % num_xcds`` XCDs have one more)."""
    xcd = pid % num_xcds
    min_per_xcd = num_workgroups // num_xcds
    return xcd * min_per_xcd + min(xcd, num_workgroups % num_xcds) + pid // num_xcds


@triton.jit
def chiplet_transform_chunked(pid, num_workgroups, num_xcds, chunk_size):
    """Chunked XCD remap: each XCD takes ``chunk_size`` consecutive ids in turn; the programs
    after the last whole round of ``num_xcds * chunk_size`` take one contiguous block per XCD
    among themselves, as :func:`chiplet_transform` would."""
    round_size = num_xcds * chunk_size
    whole = (num_workgroups // round_size) * round_size
    xcd = pid % num_xcds
    local_pid = pid // num_xcds
    new_pid = (local_pid // chunk_size) * round_size + xcd * chunk_size + local_pid % chunk_size
    if pid >= whole:
        rest = num_workgroups - whole
        new_pid = whole + xcd * (rest // num_xcds) + min(xcd, rest % num_xcds)
        new_pid += (pid - whole) // num_xcds
    return new_pid


@triton.jit
def tile_coords(tile_id, num_pid_m, num_pid_n, GROUP_SIZE_M: tl.constexpr):
    """Grouped ordering: ``(pid_m, pid_n)`` of a tile, ``GROUP_SIZE_M`` rows column by column."""
    num_pid_in_group = GROUP_SIZE_M * num_pid_n
    first_pid_m = (tile_id // num_pid_in_group) * GROUP_SIZE_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_SIZE_M)
    pid_m = first_pid_m + (tile_id % num_pid_in_group) % group_size_m
    pid_n = (tile_id % num_pid_in_group) // group_size_m
    return pid_m, pid_n


@triton.jit
def mac_loop(
    acc, a_ptr, b_ptr, M, N, K, stride_am, stride_ak, stride_bk, stride_bn, pid_m, pid_n,
    k_begin, k_end, BLOCK_SIZE_M: tl.constexpr, BLOCK_SIZE_N: tl.constexpr,
    BLOCK_SIZE_K: tl.constexpr, EVEN_K: tl.constexpr,
):  # fmt: skip
    """``acc`` plus the products of K-iterations ``[k_begin, k_end)`` of tile (pid_m, pid_n).
    Rows and columns past M and N, and K past the end, read zeros."""
    rm = pid_m * BLOCK_SIZE_M + tl.arange(0, BLOCK_SIZE_M)
    rn = pid_n * BLOCK_SIZE_N + tl.arange(0, BLOCK_SIZE_N)
    for kk in range(k_begin, k_end):
        rk = kk * BLOCK_SIZE_K + tl.arange(0, BLOCK_SIZE_K)
        A_BASE = a_ptr + rm[:, None] * stride_am + rk[None, :] * stride_ak
        B_BASE = b_ptr + rk[:, None] * stride_bk + rn[None, :] * stride_bn
        if EVEN_K:
            a = tl.load(A_BASE, mask=(rm < M)[:, None], other=0.0)
            b = tl.load(B_BASE, mask=(rn < N)[None, :], other=0.0)
        else:
            a = tl.load(A_BASE, mask=(rm < M)[:, None] & (rk < K)[None, :], other=0.0)
            b = tl.load(B_BASE, mask=(rk < K)[:, None] & (rn < N)[None, :], other=0.0)
        acc += tl.dot(a, b, input_precision="ieee")
    return acc


@triton.jit
def store_full_tile(
    acc, c_ptr, bias_ptr, M, N, stride_cm, stride_cn, stride_bias, pid_m, pid_n,
    BLOCK_SIZE_M: tl.constexpr, BLOCK_SIZE_N: tl.constexpr, BIAS: tl.constexpr,
    BIAS_AFTER_CAST: tl.constexpr,
):  # fmt: skip
    """Store a whole tile computed by one program: bias in fp32, one cast (with
    ``BIAS_AFTER_CAST``: cast, add the bias, cast again)."""
    rm = pid_m * BLOCK_SIZE_M + tl.arange(0, BLOCK_SIZE_M)
    rn = pid_n * BLOCK_SIZE_N + tl.arange(0, BLOCK_SIZE_N)
    mask = (rm[:, None] < M) & (rn[None, :] < N)
    if BIAS:
        bias = tl.load(bias_ptr + rn * stride_bias, mask=rn < N, other=0.0).to(tl.float32)
        if BIAS_AFTER_CAST:
            acc = acc.to(c_ptr.dtype.element_ty).to(tl.float32)
        acc = acc + bias[None, :]
    C_ = c_ptr + rm[:, None] * stride_cm + rn[None, :] * stride_cn
    tl.store(C_, acc.to(c_ptr.dtype.element_ty), mask=mask)


@triton.jit
def store_sk_tile(
    acc, c_ptr, bias_ptr, M, N, stride_cm, stride_cn, stride_bias, pid_m, pid_n,
    BLOCK_SIZE_M: tl.constexpr, BLOCK_SIZE_N: tl.constexpr, BIAS: tl.constexpr,
    WRAP_SK_ROWS: tl.constexpr,
):  # fmt: skip
    """Store a Stream-K tile after its fixup: bias in fp32, one cast (with ``WRAP_SK_ROWS``,
    rows taken modulo M before the row mask, which then masks nothing)."""
    if WRAP_SK_ROWS:
        rm = (pid_m * BLOCK_SIZE_M + tl.arange(0, BLOCK_SIZE_M)) % M
    else:
        rm = pid_m * BLOCK_SIZE_M + tl.arange(0, BLOCK_SIZE_M)
    rn = pid_n * BLOCK_SIZE_N + tl.arange(0, BLOCK_SIZE_N)
    mask = (rm < M)[:, None] & (rn < N)[None, :]
    if BIAS:
        bias = tl.load(bias_ptr + rn * stride_bias, mask=rn < N, other=0.0)
        acc += bias.to(tl.float32)[None, :]
    C_ = c_ptr + rm[:, None] * stride_cm + rn[None, :] * stride_cn
    tl.store(C_, acc.to(c_ptr.dtype.element_ty), mask=mask)


@triton.jit
def streamk_gemm(
    a_ptr, b_ptr, c_ptr, bias_ptr, M, N, K,
    stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn, stride_bias,
    P, locks, tile_counter, log_ptr, max_items,
    NUM_SMS: tl.constexpr, NUM_XCDS: tl.constexpr, CHUNK_SIZE: tl.constexpr,
    STREAMK_TILES: tl.constexpr, BLOCK_SIZE_M: tl.constexpr, BLOCK_SIZE_N: tl.constexpr,
    BLOCK_SIZE_K: tl.constexpr, GROUP_SIZE_M: tl.constexpr, BIAS: tl.constexpr,
    EVEN_K: tl.constexpr, GLOBAL_COUNTER: tl.constexpr, RECORD: tl.constexpr,
    WRAP_SK_ROWS: tl.constexpr = False,
    BIAS_AFTER_CAST: tl.constexpr = False, FLOOR_SHARE_AND_BIAS_INIT: tl.constexpr = False,
):  # fmt: skip
    """C = A @ B (+ bias): stolen whole tiles, then this program's Stream-K iterations. The
    last three constexprs inject the bugs of the module docstring (all off by default)."""
    pid = tl.program_id(0)
    lp = chiplet_transform_chunked(pid, NUM_SMS, NUM_XCDS, CHUNK_SIZE)
    num_pid_m = tl.cdiv(M, BLOCK_SIZE_M)
    num_pid_n = tl.cdiv(N, BLOCK_SIZE_N)
    iters_per_tile = tl.cdiv(K, BLOCK_SIZE_K)
    total_full_tiles = num_pid_m * num_pid_n - STREAMK_TILES
    step = 0

    # Work stealing: tickets of this program's counter, until its share of the tiles is taken.
    if GLOBAL_COUNTER:
        counter = 0
        share_begin = 0
        share = total_full_tiles
    else:
        counter = pid % NUM_XCDS
        if FLOOR_SHARE_AND_BIAS_INIT:
            per_xcd = total_full_tiles // NUM_XCDS
        else:
            per_xcd = tl.cdiv(total_full_tiles, NUM_XCDS)
        share_begin = min(counter * per_xcd, total_full_tiles)
        share = min(share_begin + per_xcd, total_full_tiles) - share_begin
    ticket = tl.atomic_add(tile_counter + counter, 1)
    while ticket < share:
        if GLOBAL_COUNTER:
            tile_id = chiplet_transform(ticket, total_full_tiles, NUM_XCDS)
        else:
            tile_id = share_begin + ticket
        pid_m, pid_n = tile_coords(tile_id, num_pid_m, num_pid_n, GROUP_SIZE_M)
        acc = tl.zeros((BLOCK_SIZE_M, BLOCK_SIZE_N), dtype=tl.float32)
        if BIAS and FLOOR_SHARE_AND_BIAS_INIT:
            rn = pid_n * BLOCK_SIZE_N + tl.arange(0, BLOCK_SIZE_N)
            bias = tl.load(bias_ptr + rn * stride_bias, mask=rn < N, other=0.0)
            acc += bias.to(tl.float32)[None, :]
        acc = mac_loop(
            acc, a_ptr, b_ptr, M, N, K, stride_am, stride_ak, stride_bk, stride_bn, pid_m, pid_n,
            0, iters_per_tile, BLOCK_SIZE_M, BLOCK_SIZE_N, BLOCK_SIZE_K, EVEN_K,
        )  # fmt: skip
        store_full_tile(
            acc, c_ptr, bias_ptr, M, N, stride_cm, stride_cn, stride_bias, pid_m, pid_n,
            BLOCK_SIZE_M, BLOCK_SIZE_N, BIAS, BIAS_AFTER_CAST,
        )  # fmt: skip
        if RECORD:
            record_work(
                log_ptr, pid, step, tile_id, pid_m, pid_n, 0, iters_per_tile, ROLE_WS, ticket,
                counter, max_items,
            )  # fmt: skip
        step += 1
        ticket = tl.atomic_add(tile_counter + counter, 1)

    # Stream-K: this program's share of the last STREAMK_TILES tiles' iterations.
    sk_iters = STREAMK_TILES * iters_per_tile
    streamk_iters_pcu = sk_iters // NUM_SMS
    streamk_remainder_iters = sk_iters % NUM_SMS
    start_iter = total_full_tiles * iters_per_tile + lp * streamk_iters_pcu
    start_iter += min(lp, streamk_remainder_iters)
    last_iter = total_full_tiles * iters_per_tile + (lp + 1) * streamk_iters_pcu
    last_iter += min(lp + 1, streamk_remainder_iters)
    rp = tl.arange(0, BLOCK_SIZE_M)[:, None] * BLOCK_SIZE_N + tl.arange(0, BLOCK_SIZE_N)[None, :]
    while start_iter < last_iter:
        tile_id = start_iter // iters_per_tile
        tile_iter = tile_id * iters_per_tile
        end_iter = min(tile_iter + iters_per_tile, last_iter)
        pid_m, pid_n = tile_coords(tile_id, num_pid_m, num_pid_n, GROUP_SIZE_M)
        acc = tl.zeros((BLOCK_SIZE_M, BLOCK_SIZE_N), dtype=tl.float32)
        acc = mac_loop(
            acc, a_ptr, b_ptr, M, N, K, stride_am, stride_ak, stride_bk, stride_bn, pid_m, pid_n,
            start_iter - tile_iter, end_iter - tile_iter, BLOCK_SIZE_M, BLOCK_SIZE_N,
            BLOCK_SIZE_K, EVEN_K,
        )  # fmt: skip
        if start_iter != tile_iter:  # not the tile's owner: hand the partial over
            tl.store(P + lp * BLOCK_SIZE_M * BLOCK_SIZE_N + rp, acc)
            tl.debug_barrier()
            tl.atomic_xchg(locks + lp, 1)
        else:  # the owner: add the later programs' partials in order, then store
            next_pid = lp + 1
            end = end_iter
            while end < tile_iter + iters_per_tile:
                while tl.atomic_add(locks + next_pid, 0) != 1:
                    pass
                partial = P + next_pid * BLOCK_SIZE_M * BLOCK_SIZE_N + rp
                acc += tl.load(partial, cache_modifier=".cg")
                end += streamk_iters_pcu + (next_pid < streamk_remainder_iters).to(tl.int32)
                next_pid += 1
            store_sk_tile(
                acc, c_ptr, bias_ptr, M, N, stride_cm, stride_cn, stride_bias, pid_m, pid_n,
                BLOCK_SIZE_M, BLOCK_SIZE_N, BIAS, WRAP_SK_ROWS,
            )  # fmt: skip
        if RECORD:
            k_begin = start_iter - tile_iter
            role = ROLE_SK_CONTRIBUTOR if k_begin > 0 else ROLE_SK_OWNER
            record_work(
                log_ptr, pid, step, tile_id, pid_m, pid_n, k_begin, end_iter - tile_iter, role,
                -1, -1, max_items,
            )  # fmt: skip
        step += 1
        start_iter = end_iter


def matmul(a, b, bias=None, *, num_sms, num_xcds=1, block=(16, 32, 16), group_size_m=4):
    """``a @ b + bias`` by :func:`streamk_gemm` on ``num_sms`` programs, per-XCD counters: the
    library's own host API, with its Stream-K rule and its scratch buffers per call."""
    (M, K), (_, N) = a.shape, b.shape
    block_m, block_n, block_k = block
    tiles = triton.cdiv(M, block_m) * triton.cdiv(N, block_n)
    c = torch.empty((M, N), dtype=a.dtype, device=a.device)
    P = torch.empty((num_sms, block_m, block_n), dtype=torch.float32, device=a.device)
    locks = torch.zeros(num_sms, dtype=torch.int32, device=a.device)
    tile_counter = torch.zeros(num_xcds, dtype=torch.int32, device=a.device)
    streamk_gemm[(num_sms,)](
        a, b, c, c if bias is None else bias, M, N, K, *a.stride(), *b.stride(), *c.stride(),
        0 if bias is None else bias.stride(0), P, locks, tile_counter, locks, 0,
        NUM_SMS=num_sms, NUM_XCDS=num_xcds, CHUNK_SIZE=CHUNK_SIZE,
        STREAMK_TILES=streamk_tiles(tiles, num_sms), BLOCK_SIZE_M=block_m, BLOCK_SIZE_N=block_n,
        BLOCK_SIZE_K=block_k, GROUP_SIZE_M=group_size_m, BIAS=bias is not None,
        EVEN_K=K % block_k == 0, GLOBAL_COUNTER=False, RECORD=False,
    )  # fmt: skip
    return c
