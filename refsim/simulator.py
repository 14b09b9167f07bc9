"""The discrete-event simulation: programs on CUs, the dispatcher, atomics, flags and fixups.

One SimPy process per resident program slot (CUs x residency) pulls program ids from the
dispatcher: on AMD profiles workgroup ``i`` queues on XCD ``i % XCDS`` and starts on the first
free CU of that XCD; on NVIDIA profiles any free SM takes the next program. Ties are broken by
creation order, so a run is a pure function of its inputs. A program waiting on a flag holds
its slot; when every live program waits and nothing is scheduled, SimPy runs out of events and
the run ends with a :class:`Deadlock` describing who waits on whom. Every run then checks its
records against the whole GEMM (:meth:`Simulation.coverage_errors`): each (tile, K-iteration)
computed exactly once, every work-stealing counter with tiles served.
"""

import collections
import itertools
import random
import typing

import simpy

from . import tiling
from .cost import CostModel
from .plan import WorkItem
from .result import CoverageError, Deadlock, Fixup, IdlePrograms, TileCoverage, UnservedCounter
from .trace import WorkRecord


class L2Occupancy:
    """How many programs stream on one XCD, and which tile rows and columns they work on."""

    def __init__(self, num_pid_m, num_pid_n):
        self.rows = [0] * num_pid_m
        self.cols = [0] * num_pid_n
        self.distinct_rows = 0
        self.distinct_cols = 0
        self.streaming = 0


class Outcome(typing.NamedTuple):
    """What :meth:`Simulation.run` gives: the work records, the fixups in tile order, the
    deadlock if the run stalled (else None), the makespan in us, and the coverage errors."""

    records: list
    fixups: list
    deadlock: object
    makespan_us: float
    coverage_errors: list


class Simulation:
    """Runs one plan in simulated time; ``run()`` returns ``(records, fixups, deadlock,
    makespan, coverage_errors)``."""

    def __init__(self, config, plan, *, with_bias=False, jitter=0.0, seed=0, calibration=None):
        self.config, self.plan = config, plan
        self.profile = config.profile
        self.cost = CostModel(config, self.profile, calibration)
        self.with_bias = with_bias
        self.env = simpy.Environment()
        rng = random.Random(seed)
        self.slowdown = [1.0 + jitter * rng.random() for _ in range(config.cus)]
        self.cus_per_xcd = config.cus // config.xcds
        self.records = []
        self.fixups = {}
        self.busy_us = [0.0] * config.cus
        self.active_xcds = 0
        self.cu_load = [0] * config.cus
        self.busy_cus = 0  # CUs running at least one program
        self.first_launch_us = 0.0  # when the first launch's programs could start
        self.l2 = [L2Occupancy(config.num_pid_m, config.num_pid_n) for _ in range(config.xcds)]
        self.flags = {}
        self.atomic_free_at = {}
        self.atomic_count: collections.Counter[tuple[str, int]] = collections.Counter()
        self.arrivals = collections.defaultdict(list)
        self.fixup_wait: dict[int, float] = collections.defaultdict(float)
        self.waiting = {}
        self.in_fixup = {}
        self.queues = []
        self.kernel_spans = []

    # Running --------------------------------------------------------------------------------
    def run(self):
        main = self.env.process(self._main())
        self.env.run()
        deadlock = None
        if not main.triggered:
            undispatched = tuple(sorted(pid for queue in self.queues for pid in queue))
            deadlock = Deadlock(self.env.now, tuple(sorted(self.waiting.values())), undispatched)
            for item, cu, start in self.in_fixup.values():
                self._record(item, cu, start, False)  # cut short: ends when the run stalled
        self.records.sort(key=lambda r: (r.kernel != "gemm", r.program, r.step))
        fixups = [self.fixups[t] for t in sorted(self.fixups)]
        return Outcome(self.records, fixups, deadlock, self.env.now, self.coverage_errors())

    def coverage_errors(self) -> list[CoverageError]:
        """Where the records are not the whole GEMM once (see ``SimResult.coverage_errors``)."""
        iters = self.config.iters_per_tile
        spans: dict[int, list[tuple[int, int]]] = collections.defaultdict(list)
        for r in self.records:
            if r.kernel == "gemm":
                spans[r.tile].append((r.k_begin, r.k_end))
        miscovered: list[CoverageError] = []
        for tile in range(self.config.total_tiles):
            ranges = spans.get(tile, [])
            if ranges != [(0, iters)]:
                miscovered += _miscovered(tile, ranges, iters)
        errors: list[CoverageError] = [
            UnservedCounter(counter, begin, end)
            for counter, (begin, end) in enumerate(self.plan.counter_ranges)
            if end > begin and not self.atomic_count[("counter", counter)]
        ]
        if errors or miscovered:
            busy = {r.program for r in self.records if r.kernel == "gemm"}
            idle = tuple(pid for pid in range(self.config.grid) if pid not in busy)
            if idle:
                errors.append(IdlePrograms(idle))
        return errors + miscovered

    def _main(self):
        config, cost = self.config, self.cost
        setup_us = cost.launch_overhead_us
        if config.protocol is not None and config.protocol.atomic and self.plan.split_tiles:
            # the output must be zeroed by a memset launch before atomics add into it
            setup_us += cost.launch_overhead_us + cost.transfer_us(config.m * config.n * 4, 1, 1)
        yield self.env.timeout(setup_us)
        self.first_launch_us = self.env.now
        body = self._ws_program if config.scheme.dynamic else self._static_program
        yield from self._launch(config.grid, body)
        if config.scheme.reduction_launch and self.plan.split_tiles:
            yield self.env.timeout(cost.launch_gap_us)
            yield from self._launch(config.total_tiles * config.reduce_bands, self._reduce_program)

    def _launch(self, grid, body):
        config = self.config
        if self.profile.vendor == "amd":
            queues = [collections.deque(range(x, grid, config.xcds)) for x in range(config.xcds)]
        else:
            queues = [collections.deque(range(grid))]
        self.queues = queues
        start = self.env.now
        workers = []
        for _ in range(self.profile.resident_per_cu):
            for cu in range(config.cus):
                queue = queues[cu // self.cus_per_xcd] if len(queues) > 1 else queues[0]
                if queue:
                    workers.append(self.env.process(self._worker(queue, cu, body)))
        yield self.env.all_of(workers)
        self.kernel_spans.append((start, self.env.now))

    def _worker(self, queue, cu, body):
        while queue:
            pid = queue.popleft()
            self.busy_cus += self.cu_load[cu] == 0
            self.cu_load[cu] += 1
            yield from body(pid, cu)
            self.cu_load[cu] -= 1
            self.busy_cus -= self.cu_load[cu] == 0

    # Building blocks ------------------------------------------------------------------------
    def _compute_begin(self, item, cu, xcd, tail_bytes=0.0):
        """Start the K-loop of a work item, then ``tail_bytes`` of stores; returns its duration.

        The caller yields a timeout of that duration, then calls :meth:`_compute_end`. This is
        the hot path of every run, hence the two halves instead of a nested generator.
        """
        l2 = self.l2[xcd]
        pid_m, pid_n = item.pid_m, item.pid_n
        l2.rows[pid_m] += 1
        l2.distinct_rows += l2.rows[pid_m] == 1
        l2.cols[pid_n] += 1
        l2.distinct_cols += l2.cols[pid_n] == 1
        if l2.streaming == 0:
            self.active_xcds += 1
        l2.streaming += 1
        cost = self.cost
        iterations = item.k_end - item.k_begin
        if item.tile in self.plan.split_tiles:
            iterations *= cost.split_iteration_factor
        loop = iterations * cost.iteration_us(
            l2.distinct_rows, l2.distinct_cols, self.active_xcds, self.cu_load[cu]
        )
        if cost.load_factor != 1.0:
            loop = cost.under_load(
                loop, self.env.now - self.first_launch_us, self.busy_cus / self.config.cus
            )
        duration = cost.item_us + loop
        if tail_bytes:
            duration += cost.transfer_us(tail_bytes, l2.streaming, self.active_xcds)
        duration *= self.slowdown[cu]
        self.busy_us[cu] += duration
        return duration

    def _compute_end(self, item, xcd):
        l2 = self.l2[xcd]
        l2.rows[item.pid_m] -= 1
        l2.distinct_rows -= l2.rows[item.pid_m] == 0
        l2.cols[item.pid_n] -= 1
        l2.distinct_cols -= l2.cols[item.pid_n] == 0
        l2.streaming -= 1
        if l2.streaming == 0:
            self.active_xcds -= 1

    def _partial(self, cu):
        """Storing or loading one fp32 partial tile."""
        yield from self._transfer(cu, self.cost.partial_bytes, self.cost.partial_us)

    def _transfer(self, cu, nbytes, extra_us=0.0):
        """A store or load that is not part of a K-loop (partials, fixups, reductions), plus
        ``extra_us`` of fixed cost."""
        l2 = self.l2[cu // self.cus_per_xcd]
        if l2.streaming == 0:
            self.active_xcds += 1
        l2.streaming += 1
        duration = self.cost.transfer_us(nbytes, l2.streaming, self.active_xcds) + extra_us
        duration *= self.slowdown[cu]
        self.busy_us[cu] += duration
        yield self.env.timeout(duration)
        l2.streaming -= 1
        if l2.streaming == 0:
            self.active_xcds -= 1

    def _atomic(self, address):
        """One atomic on ``address``; returns its ticket (how many came before it)."""
        now = self.env.now
        served = max(now, self.atomic_free_at.get(address, 0.0))
        self.atomic_free_at[address] = served + self.cost.atomic_interval_us
        ticket = self.atomic_count[address]
        self.atomic_count[address] += 1
        yield self.env.timeout(served - now + self.cost.atomic_latency_us)
        return ticket

    def _flag(self, tile, program):
        key = (tile, program)
        if key not in self.flags:
            self.flags[key] = self.env.event()
        return self.flags[key]

    def _set_flag(self, tile, program):
        yield self.env.timeout(self.cost.atomic_latency_us)
        self._flag(tile, program).succeed()

    def _wait_flag(self, pid, cu, tile, awaited):
        flag = self._flag(tile, awaited)
        if not flag.triggered:
            self.waiting[pid] = (pid, cu, tile, awaited)
            began = self.env.now
            yield flag
            del self.waiting[pid]
            self.fixup_wait[tile] += self.env.now - began
        yield self.env.timeout(self.cost.atomic_latency_us)

    def _tile_bytes(self):
        return self.cost.tile_store_bytes + (self.cost.bias_bytes if self.with_bias else 0.0)

    def _whole_tile_store(self):
        """The bytes a whole-tile work item stores after its K-loop: none beyond the item's
        own time when a calibration measured that time, store included."""
        return 0.0 if self.cost.calibrated_block else self._tile_bytes()

    def _record(self, item, cu, start, finalizes, ticket=-1, counter=-1, kernel="gemm"):
        self.records.append(
            WorkRecord._make(
                (
                    *item,
                    cu,
                    cu // self.cus_per_xcd,
                    start,
                    self.env.now,
                    ticket,
                    counter,
                    finalizes,
                    kernel,
                )
            )
        )

    def _add_fixup(self, tile, reducer, contributors, order):
        self.fixups[tile] = Fixup(
            tile,
            self.config.fixup or "split-k",
            reducer,
            tuple(contributors),
            tuple(order),
            self.fixup_wait[tile],
        )

    # Program bodies -------------------------------------------------------------------------
    def _static_program(self, pid, cu):
        xcd = cu // self.cus_per_xcd
        for item in self.plan.programs[pid]:
            yield from self._work_item(pid, cu, xcd, item)

    def _work_item(self, pid, cu, xcd, item):
        """One planned item: its K-loop, then the tile's store or its part in the fixup."""
        start = self.env.now
        split_tiles = self.plan.split_tiles
        whole = item.tile not in split_tiles
        tail_bytes = self._whole_tile_store() if whole else 0.0
        yield self.env.timeout(self._compute_begin(item, cu, xcd, tail_bytes))
        self._compute_end(item, xcd)
        if whole:
            self._record(item, cu, start, True)
            return
        if item.role == "split":
            yield from self._partial(cu)
            finalizes = False
        else:
            self.in_fixup[pid] = (item, cu, start)
            protocol = self.FIXUP_PROTOCOLS[self.config.fixup]
            finalizes = yield from protocol(self, pid, cu, item, split_tiles[item.tile].programs)
            del self.in_fixup[pid]
        self._record(item, cu, start, finalizes)

    def _owner_waits(self, pid, cu, item, programs):
        if pid != programs[0]:
            yield from self._partial(cu)
            yield from self._set_flag(item.tile, pid)
            return False
        for other in programs[1:]:
            yield from self._wait_flag(pid, cu, item.tile, other)
            yield from self._partial(cu)
        yield from self._transfer(cu, self._tile_bytes())
        self._add_fixup(item.tile, pid, programs, programs)
        return True

    def _turnstile(self, pid, cu, item, programs):
        position = programs.index(pid)
        if position > 0:
            yield from self._wait_flag(pid, cu, item.tile, programs[position - 1])
            yield from self._partial(cu)
        if position < len(programs) - 1:
            yield from self._partial(cu)
            yield from self._set_flag(item.tile, pid)
            return False
        yield from self._transfer(cu, self._tile_bytes())
        self._add_fixup(item.tile, pid, programs, programs)
        return True

    def _last_arriver(self, pid, cu, item, programs):
        yield from self._partial(cu)
        ticket = yield from self._atomic(("tile", item.tile))
        self.arrivals[item.tile].append(pid)
        if ticket < len(programs) - 1:
            return False
        for _ in range(len(programs) - 1):
            yield from self._partial(cu)
        yield from self._transfer(cu, self._tile_bytes())
        self._add_fixup(item.tile, pid, programs, programs)
        return True

    def _atomic_adds(self, pid, cu, item, programs):
        yield from self._partial(cu)
        yield self.env.timeout(self.cost.atomic_latency_us)
        arrivals = self.arrivals[item.tile]
        arrivals.append(pid)
        if len(arrivals) < len(programs):
            return False
        self._add_fixup(item.tile, pid, programs, arrivals)
        return True

    # Each Stream-K fixup protocol (config.FIXUPS) as one program's part in a split tile: it
    # runs after the program's K-loop over the tile and returns whether the program finalised it.
    FIXUP_PROTOCOLS: typing.ClassVar[dict[str, typing.Callable]] = {
        "owner-waits": _owner_waits,
        "turnstile": _turnstile,
        "last-arriver": _last_arriver,
        "atomic": _atomic_adds,
    }

    def _ws_program(self, pid, cu):
        """Draw tickets until the counter's range is exhausted, each naming a tile by the config's
        ``ws_ticket_tile``, then run the Stream-K tail."""
        config = self.config
        xcd = cu // self.cus_per_xcd
        counter = self.plan.counters[pid]
        begin, end = self.plan.counter_ranges[counter]
        step = 0
        while True:
            start = self.env.now
            ticket = yield from self._atomic(("counter", counter))
            if ticket >= end - begin:
                break
            tile = config.ticket_tile(counter, ticket)
            pid_m, pid_n = tiling.grouped_tile(
                tile, config.num_pid_m, config.num_pid_n, config.group_m
            )
            item = WorkItem(pid, step, tile, pid_m, pid_n, 0, config.iters_per_tile, "ws")
            yield self.env.timeout(self._compute_begin(item, cu, xcd, self._whole_tile_store()))
            self._compute_end(item, xcd)
            self._record(item, cu, start, True, ticket, counter)
            step += 1
        for item in self.plan.programs[pid]:
            yield from self._work_item(pid, cu, xcd, item._replace(step=step))
            step += 1

    def _reduce_program(self, pid, cu):
        """One row band of one tile: its partials read in split order, the band stored. The
        tile's first band's program stands as the fixup's reducer."""
        config = self.config
        bands = config.reduce_bands
        tile, band = tiling.split_k_reduce_work(pid, bands)
        start = self.env.now
        pid_m, pid_n = tiling.grouped_tile(tile, config.num_pid_m, config.num_pid_n, config.group_m)
        item = WorkItem(pid, 0, tile, pid_m, pid_n, 0, 0, "reduce")
        nbytes = (config.split_k * self.cost.partial_bytes + self._tile_bytes()) / bands
        yield from self._transfer(cu, nbytes, config.split_k * self.cost.partial_us / bands)
        if band == 0:
            programs = self.plan.split_tiles[tile].programs
            self._add_fixup(tile, pid, programs, programs)
        self._record(item, cu, start, True, kernel="reduce")


def _miscovered(tile, ranges, iters):
    """The K-ranges of ``[0, iters)`` that ``ranges`` cover other than once, merged."""
    bounds = sorted({0, iters, *(b for span in ranges for b in span if 0 <= b <= iters)})
    errors: list[TileCoverage] = []
    for low, high in itertools.pairwise(bounds):
        times = sum(begin <= low < end for begin, end in ranges)
        if times == 1:
            continue
        last = errors[-1] if errors else None
        if last is not None and last.k_end == low and last.times == times:
            errors[-1] = TileCoverage(tile, last.k_begin, high, times)
        else:
            errors.append(TileCoverage(tile, low, high, times))
    return errors
