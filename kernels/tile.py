"""Shared jit helpers: the one K-loop, the one epilogue, partial-buffer access, release and
wait, the event log and the trace writer. Every strategy's kernel is built from these; every
index comes from the tiling contract (:mod:`kernels.contract`).
"""

import triton
import triton.language as tl

from . import contract
from .backend import INTERPRETER, read_clock, read_unit
from .records import EVENT_FIELDS, EVENTS, TRACE_FIELDS

# Role codes in trace records: the index in refsim.trace.ROLES.
ROLE_DP = tl.constexpr(0)
ROLE_SK_OWNER = tl.constexpr(1)
ROLE_SK_CONTRIBUTOR = tl.constexpr(2)
ROLE_WS = tl.constexpr(3)
ROLE_SPLIT = tl.constexpr(4)
ROLE_REDUCE = tl.constexpr(5)

NUM_TRACE_FIELDS = tl.constexpr(len(TRACE_FIELDS))
NUM_EVENT_FIELDS = tl.constexpr(EVENT_FIELDS)

# Event log kinds (see log_event), in records.EVENTS order.
EVENT_STORE = tl.constexpr(EVENTS.index("store"))
EVENT_LOAD = tl.constexpr(EVENTS.index("load"))
EVENT_PUBLISH = tl.constexpr(EVENTS.index("publish"))
EVENT_WAIT = tl.constexpr(EVENTS.index("wait"))
EVENT_ACQUIRE = tl.constexpr(EVENTS.index("acquire"))
EVENT_ARRIVE = tl.constexpr(EVENTS.index("arrive"))


# Runtime ints for trace-record fields and loop-carried values. Each is ``like * 0 (+ value)``:
# an int of ``like``'s type (a tensor, like ``pid`` or a loop counter), not a Python constant.
# A constant passed to a jit function becomes a constexpr, and a variable that holds a tensor
# on one branch (``stores_tile``) or is incremented in a loop (``step``) must hold one of the
# same type on every path; the arithmetic folds away when compiled.


@triton.jit
def zero_like(like):
    """0 as a runtime int of ``like``'s type (a first ``step``, a ``k_begin`` of 0)."""
    return like * 0


@triton.jit
def int_like(like, value):
    """``value`` as a runtime int of ``like``'s type (a ``finalizes`` or ``stores_tile`` flag)."""
    return like * 0 + value


@triton.jit
def no_value(like):
    """-1 as a runtime int of ``like``'s type: a trace field with nothing to record (the
    ``ticket`` and ``counter`` of every work item but work stealing's)."""
    return like * 0 - 1


# Bundles. The device functions the strategy kernels call take arguments that belong together
# as one tuple, one meaning each, and unpack it first (tritonBLAS's ``InputView`` style):
#   an operand view ``(ptr, stride_rows, stride_cols)``: ``a_view = (a_ptr, stride_am,
#     stride_ak)``, ``b_view``, ``c_view``; the bias ``bias_view = (bias_ptr, stride_bias)``;
#   the problem ``shape = (M, N, K)``;
#   the trace sink ``trace = (trace_ptr, pid, max_steps)``: where this program's records go
#     (row ``pid`` of ``max_steps``);
#   the event log ``events = (events_ptr, pid)``: where this program's events go.
# Constexprs stay separate arguments: unpacking a tuple makes runtime values of its elements.
# tile_accumulate and tile_epilogue keep their flat arguments (library kernels call them);
# accumulate and epilogue are them for bundles.


@triton.jit
def tile_accumulate(
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
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    EVEN_K: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    BACKEND: tl.constexpr,
):
    """fp32 accumulator of tile (pid_m, pid_n) over K-iterations [k_begin, k_end), in K order.

    Rows and columns past M and N are read wrapped (in bounds, never stored); K past the end
    reads zeros. Under the interpreter, whose bf16 ``tl.dot`` returns garbage, bf16 blocks are
    multiplied in fp32 (exact: a bf16 product fits in fp32).
    """
    offs_m = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)) % M
    offs_n = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % N
    offs_k = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kk in range(k_begin, k_end):
        k_idx = kk * BLOCK_K + offs_k
        a_ptrs = a_ptr + offs_m[:, None] * stride_am + k_idx[None, :] * stride_ak
        b_ptrs = b_ptr + k_idx[:, None] * stride_bk + offs_n[None, :] * stride_bn
        if EVEN_K:
            a = tl.load(a_ptrs)
            b = tl.load(b_ptrs)
        else:
            a = tl.load(a_ptrs, mask=k_idx[None, :] < K, other=0.0)
            b = tl.load(b_ptrs, mask=k_idx[:, None] < K, other=0.0)
        if BACKEND == INTERPRETER and a_ptr.dtype.element_ty == tl.bfloat16:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)
    return acc


@triton.jit
def round_to_bf16(x):
    """fp32 -> the nearest bf16 value (ties to even), still in fp32, by integer arithmetic."""
    bits = x.to(tl.uint32, bitcast=True)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def tile_epilogue(
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
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    BACKEND: tl.constexpr,
    add_bias=True,
    ATOMIC: tl.constexpr = False,
):
    """Add the bias (fp32, one value per column) when ``HAS_BIAS`` and ``add_bias``, cast to the
    output dtype and store; with ``ATOMIC``, add into the output with float atomics instead.

    ``add_bias`` is true wherever the tile is finalised (the bias goes in exactly once); the
    atomic fixup passes it to the owner's segment only. The interpreter truncates fp32 -> bf16
    where GPUs round to nearest even, so there the rounding is done first, by integer
    arithmetic, and the cast is exact.
    """
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    if HAS_BIAS:  # noqa: SIM102 (a constexpr test, then one that may be a runtime one)
        if add_bias:
            bias = tl.load(bias_ptr + offs_n * stride_bias, mask=offs_n < N, other=0.0)
            acc = acc + bias.to(tl.float32)[None, :]
    if BACKEND == INTERPRETER and c_ptr.dtype.element_ty == tl.bfloat16:
        acc = round_to_bf16(acc)
    c_ptrs = c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
    mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    if ATOMIC:
        tl.atomic_add(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=mask, sem="relaxed")
    else:
        tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=mask)


@triton.jit
def accumulate(
    a_view,
    b_view,
    shape,
    pid_m,
    pid_n,
    k_begin,
    k_end,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    EVEN_K: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    BACKEND: tl.constexpr,
):
    """:func:`tile_accumulate` of the operand views ``a_view``, ``b_view`` and ``shape``."""
    a_ptr, stride_am, stride_ak = a_view
    b_ptr, stride_bk, stride_bn = b_view
    M, N, K = shape
    return tile_accumulate(
        a_ptr, b_ptr, M, N, K, stride_am, stride_ak, stride_bk, stride_bn, pid_m, pid_n,
        k_begin, k_end, BLOCK_M, BLOCK_N, BLOCK_K, EVEN_K, INPUT_PRECISION, BACKEND,
    )  # fmt: skip


@triton.jit
def epilogue(
    acc,
    c_view,
    bias_view,
    shape,
    pid_m,
    pid_n,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    BACKEND: tl.constexpr,
    add_bias=True,
    ATOMIC: tl.constexpr = False,
):
    """:func:`tile_epilogue` into the view ``c_view``, with ``bias_view``, of ``shape``'s M x N."""
    c_ptr, stride_cm, stride_cn = c_view
    bias_ptr, stride_bias = bias_view
    M, N, _ = shape
    tile_epilogue(
        acc, c_ptr, bias_ptr, M, N, stride_cm, stride_cn, stride_bias, pid_m, pid_n,
        BLOCK_M, BLOCK_N, HAS_BIAS, BACKEND, add_bias, ATOMIC,
    )  # fmt: skip


@triton.jit
def log_event(events, kind, index, value, LOG: tl.constexpr):
    """Append ``(pid, kind, index, value)`` to the event log ``events`` (when ``LOG``).

    Log layout (int64): ``[count, capacity, (pid, kind, index, value) * capacity]``. Entries take
    their position from one atomic counter, so one program's events stay in its program order
    (atomics on one address are coherent) on a GPU as in the interpreter; entries past the
    capacity are counted but not written.
    """
    events_ptr, pid = events
    if LOG:
        position = tl.atomic_add(events_ptr, 1, sem="relaxed", scope="gpu")
        capacity = tl.load(events_ptr + 1)
        entry = events_ptr + 2 + NUM_EVENT_FIELDS * position
        zero = tl.full((), 0, tl.int64)
        tl.store(entry, zero + pid, mask=position < capacity)
        tl.store(entry + 1, zero + kind, mask=position < capacity)
        tl.store(entry + 2, zero + index, mask=position < capacity)
        tl.store(entry + 3, zero + value, mask=position < capacity)


@triton.jit
def store_partial(
    ws_ptr, slot, acc, tile, events, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, LOG: tl.constexpr
):
    """Write ``tile``'s fp32 partial into workspace slot ``slot`` (BLOCK_M x BLOCK_N, row-major)."""
    offs = tl.arange(0, BLOCK_M)[:, None] * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]
    tl.store(ws_ptr + slot.to(tl.int64) * (BLOCK_M * BLOCK_N) + offs, acc)
    log_event(events, EVENT_STORE, slot, tile, LOG)


@triton.jit
def load_partial(
    ws_ptr, slot, tile, events, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, LOG: tl.constexpr
):
    """Read workspace slot ``slot`` (a partial of ``tile``), bypassing L1 (another program
    wrote it)."""
    return load_partial_rows(
        ws_ptr=ws_ptr,
        slot=slot,
        row_begin=0,
        tile=tile,
        events=events,
        ROWS=BLOCK_M,
        BLOCK_M=BLOCK_M,
        BLOCK_N=BLOCK_N,
        LOG=LOG,
    )


@triton.jit
def load_partial_rows(
    ws_ptr,
    slot,
    row_begin,
    tile,
    events,
    ROWS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    LOG: tl.constexpr,
):
    """Rows ``[row_begin, row_begin + ROWS)`` of workspace slot ``slot`` (a partial of
    ``tile``), as :func:`load_partial` reads the whole slot."""
    offs = (row_begin + tl.arange(0, ROWS))[:, None] * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]
    log_event(events, EVENT_LOAD, slot, tile, LOG)
    return tl.load(ws_ptr + slot.to(tl.int64) * (BLOCK_M * BLOCK_N) + offs, cache_modifier=".cg")


@triton.jit
def publish(flags_ptr, index, epoch, events, LOG: tl.constexpr):
    """Release flag ``index``: every thread's earlier stores are visible before it reads ``epoch``."""
    tl.debug_barrier()
    tl.atomic_xchg(flags_ptr + index, epoch, sem="release", scope="gpu")
    log_event(events, EVENT_PUBLISH, index, epoch, LOG)


@triton.jit
def arrive(counters_ptr, index, events, LOG: tl.constexpr):
    """Release this program's partial and count it in at counter ``index``; returns the count
    before (acquire: the last to arrive sees every earlier arrival's partial)."""
    tl.debug_barrier()
    arrived = tl.atomic_add(counters_ptr + index, 1, sem="acq_rel", scope="gpu")
    log_event(events, EVENT_ARRIVE, index, arrived, LOG)
    return arrived


@triton.jit
def release_counter(counters_ptr, index):
    """Zero counter ``index`` for the next launch. Only the program that saw the last arrival
    calls it, so nothing of this launch touches the counter after it: launches need no
    zeroing launch before them."""
    tl.atomic_xchg(counters_ptr + index, 0, sem="relaxed", scope="gpu")


@triton.jit
def wait_for(flags_ptr, index, epoch, events, LOG: tl.constexpr, BACKEND: tl.constexpr):
    """Acquire flag ``index``: spin until it reads ``epoch``. Logs the wait before spinning and
    the value read when it ended, so a hung wait and a wait that read a wrong value both show.

    The interpreter runs one program at a time, in an order (``Launch.order``) where every flag
    a program waits on is already set; a flag not set then never would be, so there the wait
    does not spin (a kernel waiting on a flag nobody sets reads whatever the workspace holds,
    and its acquire logs that value).
    """
    log_event(events, EVENT_WAIT, index, epoch, LOG)
    seen = tl.atomic_add(flags_ptr + index, 0, sem="acquire", scope="gpu")
    if BACKEND != INTERPRETER:
        while seen != epoch:
            seen = tl.atomic_add(flags_ptr + index, 0, sem="acquire", scope="gpu")
    tl.debug_barrier()
    log_event(events, EVENT_ACQUIRE, index, seen, LOG)


@triton.jit
def trace_begin(step, TRACE: tl.constexpr, BACKEND: tl.constexpr):
    """The start timestamp of a work item (0 when not tracing)."""
    t = tl.full((), 0, tl.int64)
    if TRACE:
        t = read_clock(2 * step, BACKEND)
    return t


@triton.jit
def trace_end(
    trace,
    step,
    tile,
    pid_m,
    pid_n,
    k_begin,
    k_end,
    role,
    t_start,
    ticket,
    counter,
    finalizes,
    TRACE: tl.constexpr,
    BACKEND: tl.constexpr,
):
    """Write one record (fields in TRACE_FIELDS order) at row ``pid``, column ``step``, of the
    trace sink ``trace``.

    ``pid_m``/``pid_n`` are where the kernel computed the tile, so a wrong swizzle shows. A
    step past ``max_steps`` would land in another program's row: it is counted in the cell
    after the trace's ``num_programs x max_steps`` records instead (``records.trace_overruns``).
    """
    trace_ptr, pid, max_steps = trace
    if TRACE:
        t_end = read_clock(2 * step + 1, BACKEND)
        unit, xcd = read_unit(BACKEND)
        zero = tl.full((), 0, tl.int64)  # `zero + x` widens ints and loop counters alike
        if step < max_steps:
            rec = trace_ptr + ((zero + pid) * max_steps + step) * NUM_TRACE_FIELDS
            tl.store(rec + 0, zero + tile)
            tl.store(rec + 1, zero + pid_m)
            tl.store(rec + 2, zero + pid_n)
            tl.store(rec + 3, zero + k_begin)
            tl.store(rec + 4, zero + k_end)
            tl.store(rec + 5, zero + role)
            tl.store(rec + 6, zero + unit)
            tl.store(rec + 7, zero + xcd)
            tl.store(rec + 8, t_start)
            tl.store(rec + 9, t_end)
            tl.store(rec + 10, zero + ticket)
            tl.store(rec + 11, zero + counter)
            tl.store(rec + 12, zero + finalizes)
        else:
            overrun_cell = trace_ptr + (zero + tl.num_programs(0)) * max_steps * NUM_TRACE_FIELDS
            tl.atomic_add(overrun_cell, zero + 1, sem="relaxed", scope="gpu")


@triton.jit
def whole_tile(
    a_view,
    b_view,
    c_view,
    bias_view,
    shape,
    trace,
    step,
    tile,
    ticket,
    counter,
    role,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    EVEN_K: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    TRACE: tl.constexpr,
    BACKEND: tl.constexpr,
):
    """Compute and store one tile over its whole K range: the data-parallel work item."""
    M, N, K = shape
    num_pid_m = contract.cdiv(M, BLOCK_M)
    num_pid_n = contract.cdiv(N, BLOCK_N)
    iters = contract.cdiv(K, BLOCK_K)
    pid_m, pid_n = contract.grouped_tile(tile, num_pid_m, num_pid_n, GROUP_M)
    t_start = trace_begin(step, TRACE, BACKEND)
    acc = accumulate(
        a_view, b_view, shape, pid_m, pid_n, 0, iters, BLOCK_M, BLOCK_N, BLOCK_K, EVEN_K,
        INPUT_PRECISION, BACKEND,
    )  # fmt: skip
    epilogue(acc, c_view, bias_view, shape, pid_m, pid_n, BLOCK_M, BLOCK_N, HAS_BIAS, BACKEND)
    trace_end(
        trace=trace,
        step=step,
        tile=tile,
        pid_m=pid_m,
        pid_n=pid_n,
        k_begin=zero_like(tile),
        k_end=iters,
        role=role,
        t_start=t_start,
        ticket=ticket,
        counter=counter,
        finalizes=int_like(tile, 1),
        TRACE=TRACE,
        BACKEND=BACKEND,
    )
