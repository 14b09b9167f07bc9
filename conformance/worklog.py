"""The work log: what a kernel written elsewhere records of its work, for the conformance suite.

A foreign kernel calls :func:`record_work` once per work item (a tile, or a K-range of one);
:class:`WorkLog` allocates the buffer it writes and reads it back as
:class:`refsim.trace.WorkRecord` lists, which the suite compares with refsim's plan (the tile
order, the work-stealing invariants). Roles are the ``ROLE_*`` constants below, indices into
:data:`refsim.trace.ROLES`.

Buffer layout (int64): ``[overruns, programs]``, then ``programs x max_items`` records of
:data:`FIELDS`, role -1 marking an unused one. A record that does not fit (a step past
``max_items``, a program past ``programs``) is counted in ``overruns``, never written.
"""

import numbers

import torch
import triton
import triton.language as tl

from refsim import tiling
from refsim.trace import ROLES, WorkRecord

ROLE_DP = tl.constexpr(ROLES.index("dp"))
ROLE_SK_OWNER = tl.constexpr(ROLES.index("sk-owner"))
ROLE_SK_CONTRIBUTOR = tl.constexpr(ROLES.index("sk-contributor"))
ROLE_WS = tl.constexpr(ROLES.index("ws"))
ROLE_SPLIT = tl.constexpr(ROLES.index("split"))

FIELDS = ("tile", "pid_m", "pid_n", "k_begin", "k_end", "role", "ticket", "counter")
NUM_FIELDS = tl.constexpr(len(FIELDS))
OVERRUNS_CELL = tl.constexpr(0)
PROGRAMS_CELL = tl.constexpr(1)
HEADER = tl.constexpr(2)
# Roles whose work item is a whole tile, computed and stored by the program that records it.
WHOLE_TILE_ROLES = ("dp", "ws")


@triton.jit
def record_work(
    log_ptr, pid, step, tile, pid_m, pid_n, k_begin, k_end, role, ticket, counter, max_items
):
    """Record program ``pid``'s work item ``step``: ``tile`` at ``(pid_m, pid_n)`` over
    K-iterations ``[k_begin, k_end)`` in ``role`` (a ``ROLE_*``), with its work-stealing
    ``ticket`` and ``counter`` (-1 and -1 when not stealing), at row ``pid * max_items + step``
    of the log ``log_ptr`` (:attr:`WorkLog.tensor`); past the log's rows it counts an overrun."""
    zero = tl.full((), 0, tl.int64)  # `zero + x` widens ints and loop counters alike
    programs = tl.load(log_ptr + PROGRAMS_CELL)
    if (zero + step < max_items) & (zero + pid < programs):
        row = log_ptr + HEADER + ((zero + pid) * max_items + step) * NUM_FIELDS
        tl.store(row + 0, zero + tile)
        tl.store(row + 1, zero + pid_m)
        tl.store(row + 2, zero + pid_n)
        tl.store(row + 3, zero + k_begin)
        tl.store(row + 4, zero + k_end)
        tl.store(row + 5, zero + role)
        tl.store(row + 6, zero + ticket)
        tl.store(row + 7, zero + counter)
    else:
        tl.atomic_add(log_ptr + OVERRUNS_CELL, zero + 1, sem="relaxed", scope="gpu")


def default_max_items(config):
    """The rows per program of a work log for ``config``: the most work items one program of
    its schedule has -- refsim's bound for a static schedule
    (:func:`refsim.tiling.max_work_items`); for work stealing, all of the largest counter range
    plus the segments of the longest Stream-K tail -- and
    :data:`kernels.records.EXTRA_TRACE_ROWS` more, so that a program doing an item or two too
    many (a ticket past its counter's range) has them recorded for the checks to name, while a
    runaway one still overruns."""
    from kernels.records import EXTRA_TRACE_ROWS  # the project's kernels' traces have as many

    iters, grid = config.iters_per_tile, config.grid
    if not config.scheme.dynamic:
        most = tiling.max_work_items(config.dp_tiles, config.sk_iters, iters, grid)
    else:
        ranges = [config.counter_range(counter) for counter in range(config.num_counters)]
        stolen = max((end - begin for begin, end in ranges), default=0)
        tail = tiling.max_work_items(0, config.sk_iters, iters, grid) if config.sk_tiles else 0
        most = max(stolen + tail, 1)
    return most + EXTRA_TRACE_ROWS


class WorkLog:
    """The buffer a kernel records its work items into with :func:`record_work`.

    ``tensor`` goes to the kernel as ``log_ptr`` and ``max_items`` as ``max_items``: rows for
    ``config.grid`` programs of ``max_items`` records each (default :func:`default_max_items`),
    on ``device``. :meth:`records` reads them back; :attr:`overruns` counts those that did not
    fit.
    """

    def __init__(self, config, device, max_items=None):
        if max_items is None:
            max_items = default_max_items(config)
        if (
            isinstance(max_items, bool)
            or not isinstance(max_items, numbers.Integral)
            or max_items < 1
        ):
            raise ValueError(f"max_items={max_items!r}: must be a positive integer")
        self.config = config
        self.max_items = int(max_items)
        size = HEADER.value + config.grid * self.max_items * NUM_FIELDS.value
        self.tensor = torch.full((size,), -1, dtype=torch.int64, device=device)
        self.tensor[OVERRUNS_CELL.value] = 0
        self.tensor[PROGRAMS_CELL.value] = config.grid

    def records(self):
        """One :class:`refsim.trace.WorkRecord` per recorded work item, by program then step.

        Times are 0 and the hardware unit and XCD -1 (not recorded); a whole-tile item (role dp
        or ws) finalises its tile. An unknown role code reads as ``"role <code>"``.
        """
        rows = self.tensor[HEADER.value :].view(self.config.grid, self.max_items, len(FIELDS))
        records = []
        for program, steps in enumerate(rows.cpu().tolist()):
            for step, fields in enumerate(steps):
                item = dict(zip(FIELDS, fields))
                if item["role"] < 0:
                    continue
                code = item["role"]
                role = ROLES[code] if code < len(ROLES) else f"role {code}"
                records.append(
                    WorkRecord(
                        program,
                        step,
                        item["tile"],
                        item["pid_m"],
                        item["pid_n"],
                        item["k_begin"],
                        item["k_end"],
                        role,
                        -1,
                        -1,
                        0.0,
                        0.0,
                        item["ticket"],
                        item["counter"],
                        role in WHOLE_TILE_ROLES,
                    )
                )
        return records

    @property
    def written(self):
        """Whether the kernel wrote anything into the log: a record, or an overrun. A kernel
        that does not record leaves it as allocated."""
        return self.overruns > 0 or bool((self.tensor[HEADER.value :] != -1).any())

    @property
    def overruns(self):
        """How many records did not fit the log and were dropped (0 for a correct kernel)."""
        return int(self.tensor[OVERRUNS_CELL.value].item())
