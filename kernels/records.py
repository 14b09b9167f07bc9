"""What a run returns and the formats it decodes: trace records and the event log.

The kernels write one trace record per work item (int64 fields in :data:`TRACE_FIELDS` order,
``tile.trace_end``) and, for Stream-K, one event per partial store or release (``EVENTS``,
``tile.log_event``); this module allocates those buffers and turns them into
:class:`refsim.trace.WorkRecord` lists and ``(program, kind, index)`` tuples.
"""

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

# Event log kinds: the order of a program's partial stores and releases.
EVENTS = ("store", "publish", "arrive")


@dataclasses.dataclass
class KernelRun:
    """What :func:`kernels.run` returns.

    ``records``: one :class:`refsim.trace.WorkRecord` per work item (``trace=True``), times in
    us from the first start (the step counter under the interpreter). ``partials``: a copy of
    the fp32 partial workspace, ``(slots, BLOCK_M, BLOCK_N)``; the slot of a program's partial
    of a tile is :func:`kernels.partial_slot` (Stream-K and split-K only, ``trace=True``).
    ``events``: Stream-K's event log (``trace=True``), ``(program, kind, index)`` in the order
    they happened per program: ``("store", slot)`` for a partial stored, ``("publish", flag)``
    and ``("arrive", counter)`` for a release.
    """

    output: torch.Tensor
    config: GemmConfig
    records: list = None
    partials: torch.Tensor = None
    events: list = None


def trace_buffer(programs, max_steps, device):
    """An empty trace: ``(programs, max_steps, len(TRACE_FIELDS))`` int64, every record unused."""
    return torch.full(
        (programs, max_steps, len(TRACE_FIELDS)), -1, dtype=torch.int64, device=device
    )


def event_log(capacity, device):
    """An empty event log (layout in ``tile.log_event``): count 0, then ``capacity`` entries."""
    log = torch.full((2 + 3 * capacity,), -1, dtype=torch.int64, device=device)
    log[0], log[1] = 0, capacity
    return log


def decode_events(log):
    """An event log -> ``[(program, kind, index), ...]`` in log order, or None."""
    if log is None:
        return None
    data = log.cpu().tolist()
    count, capacity = data[0], data[1]
    if count > capacity:
        raise RuntimeError(f"event log overflow: {count} events, room for {capacity}")
    return [
        (program, EVENTS[kind], index)
        for program, kind, index in zip(*[iter(data[2 : 2 + 3 * count])] * 3)
    ]


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
