"""What a run returns and the formats it decodes: trace records and the event log.

The kernels write one trace record per work item (int64 fields in :data:`TRACE_FIELDS` order,
``tile.trace_end``) and, for Stream-K, one event per partial store, partial load, release, wait
and acquire (``EVENTS``, ``tile.log_event``); this module allocates those buffers and turns them
into :class:`refsim.trace.WorkRecord` lists and ``(program, kind, index, value)`` tuples.
Neither buffer is ever written past its end: what does not fit is counted instead.

While a traced launch runs, :func:`describe_waits` names the programs it has waiting, so a
watchdog can say who a hung kernel waits on.
"""

import contextlib
import dataclasses

import torch

from refsim.config import GemmConfig
from refsim.trace import ROLES, WorkRecord

from .backend import TICKS_PER_US

# One trace record: int64 fields in this order; role -1 marks an unused record.
TRACE_FIELDS = (
    "tile",
    "pid_m",
    "pid_n",
    "k_begin",
    "k_end",
    "role",
    "unit",
    "xcd",
    "t_start",
    "t_end",
    "ticket",
    "counter",
    "finalizes",
)

# Event log kinds: what a program did with partials, flags and counters, in its order.
EVENTS = ("store", "load", "publish", "wait", "acquire", "arrive")
EVENT_FIELDS = 4  # program, kind, index, value


@dataclasses.dataclass
class KernelRun:
    """What :func:`kernels.run` returns.

    ``records``: one :class:`refsim.trace.WorkRecord` per work item (``trace=True``), times in
    us from the first start (the step counter under the interpreter). ``partials``: a copy of
    the fp32 partial workspace, ``(slots, BLOCK_M, BLOCK_N)``; the slot of a program's partial
    of a tile is :func:`kernels.partial_slot` (Stream-K and split-K only, ``trace=True``).
    The last slot of ``partials`` is a guard no correct kernel writes.

    ``events``: Stream-K's event log (``trace=True``), ``(program, kind, index, value)`` with
    each program's events in its program order (the log order across programs is no
    happens-before): ``store`` and ``load`` (index the slot, value the tile) for a partial
    written or read; ``publish`` (flag, the epoch written) and ``arrive`` (counter, the count
    before this arrival) for a release; ``wait`` (flag, the epoch awaited; logged before
    spinning) and ``acquire`` (flag, the value read when the wait ended). ``epoch``: this
    launch's flag epoch; ``flags_before``: a host copy of the flags taken just before the launch
    (both Stream-K, ``trace=True``). ``overruns``: trace records and events that did not fit
    their buffers and were dropped (``trace=True``; 0 for a correct kernel).
    """

    output: torch.Tensor
    config: GemmConfig
    records: list = None
    partials: torch.Tensor = None
    events: list = None
    epoch: int = None
    flags_before: torch.Tensor = None
    overruns: int = None


# Trace rows each program gets past the most work items its schedule has (a work log's too:
# conformance.worklog.default_max_items). A program that does an item or two too many -- a
# ticket past its counter's range, a tile twice -- has them recorded, for the checks to name;
# a runaway one still overruns.
EXTRA_TRACE_ROWS = 2


def trace_buffer(programs, max_steps, device):
    """An empty trace: ``(programs, max_steps, len(TRACE_FIELDS))`` int64, every record unused,
    followed in memory by one cell that counts the records that did not fit (``tile.trace_end``)."""
    records = programs * max_steps * len(TRACE_FIELDS)
    flat = torch.full((records + 1,), -1, dtype=torch.int64, device=device)
    flat[records] = 0
    return flat[:records].view(programs, max_steps, len(TRACE_FIELDS))


def trace_overruns(trace):
    """How many records a kernel could not write into ``trace`` (the cell after its records)."""
    cell = trace.as_strided((1,), (1,), trace.storage_offset() + trace.numel())
    return int(cell.item())


def event_log(capacity, device):
    """An empty event log (layout in ``tile.log_event``): count 0, then ``capacity`` entries."""
    log = torch.full((2 + EVENT_FIELDS * capacity,), -1, dtype=torch.int64, device=device)
    log[0], log[1] = 0, capacity
    return log


def decode_events(log):
    """An event log -> ``[(program, kind, index, value), ...]`` in log order (the entries that
    fit), or None."""
    if log is None:
        return None
    return _entries(log.cpu().tolist())


def events_lost(log):
    """How many events did not fit in the log ``log`` (0 for None)."""
    if log is None:
        return 0
    count, capacity = log[:2].tolist()
    return max(count - capacity, 0)


def _entries(data):
    count, capacity = data[0], data[1]
    fields = data[2 : 2 + EVENT_FIELDS * min(count, capacity)]
    return [
        (program, EVENTS[kind], index, value)
        for program, kind, index, value in zip(*[iter(fields)] * EVENT_FIELDS)
    ]


# The event log of the traced launch in flight in this process, and (CUDA) a pinned host copy.
_in_flight = None


@contextlib.contextmanager
def in_flight(log):
    """Make ``log`` the event log :func:`describe_waits` reads while the block runs (a None log
    changes nothing). The pinned host buffer is taken here: never while a kernel hangs."""
    global _in_flight
    if log is None:
        yield
        return
    host = torch.empty(log.shape, dtype=log.dtype, pin_memory=True) if log.is_cuda else None
    watched = _in_flight = (log, host)
    try:
        yield
    finally:
        if _in_flight is watched:
            _in_flight = None


def describe_waits():
    """The programs of the traced launch in flight that began a wait and never acquired, e.g.
    ``"program 12 waits on flag 13 (epoch 5)"``; None when no traced launch is in flight or
    none waits.

    Safe from another thread while the launch spins: on CUDA the log is copied on a stream of
    its own (the launch's stream is blocked by the spinning kernel).
    """
    watched = _in_flight
    if watched is None:
        return None
    log, host = watched
    if host is None:
        data = log.tolist()
    else:
        stream = torch.cuda.Stream(log.device)
        with torch.cuda.stream(stream):
            host.copy_(log, non_blocking=True)
        stream.synchronize()
        data = host.tolist()
    waits = pending_waits(_entries(data))
    if not waits:
        return None
    return "; ".join(
        f"program {program} waits on flag {flag} (epoch {epoch})" for program, flag, epoch in waits
    )


def pending_waits(events):
    """``[(program, flag, epoch), ...]``: each program's wait with no acquire after it."""
    waiting = {}
    for program, kind, index, value in events:
        if kind == "wait":
            waiting[program] = (index, value)
        elif kind == "acquire" and waiting.get(program, (None,))[0] == index:
            del waiting[program]
    return [(program, flag, epoch) for program, (flag, epoch) in sorted(waiting.items())]


def decode_trace(traces, backend):
    """``[(kernel name, trace buffer), ...]`` -> WorkRecords, by kernel, program then step,
    times in us from the first start."""
    rows = []
    for kernel, buf in traces:
        data = buf.cpu().tolist()
        for program, steps in enumerate(data):
            for step, fields in enumerate(steps):
                record = dict(zip(TRACE_FIELDS, fields))
                if record["role"] < 0:
                    break
                rows.append((kernel, program, step, record))
    if not rows:
        return []
    origin = min(r["t_start"] for *_, r in rows)
    scale = TICKS_PER_US[backend]
    records = []
    for kernel, program, step, r in rows:
        records.append(
            WorkRecord(
                program,
                step,
                r["tile"],
                r["pid_m"],
                r["pid_n"],
                r["k_begin"],
                r["k_end"],
                ROLES[r["role"]],
                r["unit"],
                r["xcd"],
                (r["t_start"] - origin) / scale,
                (r["t_end"] - origin) / scale,
                r["ticket"],
                r["counter"],
                bool(r["finalizes"]),
                kernel,
            )
        )
    return records
