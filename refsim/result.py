"""SimResult: everything one simulated launch produced, with summaries and exports."""

import dataclasses

import numpy as np

from . import trace
from .calibration import Calibration, for_profile
from .config import HOOKS, GemmConfig, hook_name
from .numerics import Partial
from .plan import Plan
from .trace import WorkRecord


@dataclasses.dataclass(frozen=True)
class Fixup:
    """How one split tile was reduced.

    ``contributors`` are the programs holding the tile's K-ranges, in K order; ``order`` is the
    order their partials were summed (K order, or arrival order for the ``atomic`` protocol);
    ``reducer`` wrote the tile's final value: it added the bias, except under ``atomic``, where
    the reducer is the last to add and the bias came with the owner's (first K-range's)
    contribution. For split-K the reducer is the reduction launch's program for the tile's
    first row band. ``wait_us`` is the time programs spent blocked on this tile's flags.
    """

    tile: int
    protocol: str
    reducer: int
    contributors: tuple[int, ...]
    order: tuple[int, ...]
    wait_us: float


@dataclasses.dataclass(frozen=True)
class Deadlock:
    """Every live program waits and nothing can run."""

    at_us: float
    waiting: tuple[tuple[int, int, int, int], ...]  # (program, unit, tile, program it awaits)
    undispatched: tuple[int, ...]  # program ids still queued for a free slot

    def __str__(self):
        lines = [
            f"deadlock at t={self.at_us:.3f} us: programs waiting: {len(self.waiting)}, "
            f"never started: {len(self.undispatched)}"
        ]
        for program, unit, tile, awaited in self.waiting:
            started = "never started" if awaited in self.undispatched else "not yet flagged"
            lines.append(
                f"  program {program} on CU {unit} waits for program {awaited}'s partial "
                f"of tile {tile} ({started})"
            )
        if self.undispatched:
            shown = ", ".join(map(str, self.undispatched[:16]))
            more = (
                "" if len(self.undispatched) <= 16 else f", ... ({len(self.undispatched)} in all)"
            )
            lines.append(f"  queued for a slot that never frees: {shown}{more}")
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class TileCoverage:
    """K-iterations ``[k_begin, k_end)`` of ``tile`` were computed ``times`` times, not once."""

    tile: int
    k_begin: int
    k_end: int
    times: int

    def __str__(self):
        what = "never computed" if self.times == 0 else f"computed {self.times} times"
        return f"tile {self.tile} K-iterations [{self.k_begin}, {self.k_end}): {what}"


@dataclasses.dataclass(frozen=True)
class UnservedCounter:
    """A work-stealing counter that no program drew from, though it has tiles to hand out."""

    counter: int
    begin: int
    end: int

    def __str__(self):
        return (
            f"counter {self.counter} never served: no program draws from it, so its tiles "
            f"[{self.begin}, {self.end}) are never taken"
        )


@dataclasses.dataclass(frozen=True)
class IdlePrograms:
    """The programs that computed nothing, listed when a run lost or duplicated work."""

    programs: tuple[int, ...]

    def __str__(self):
        shown = ", ".join(map(str, self.programs[:16]))
        more = "" if len(self.programs) <= 16 else f", ... ({len(self.programs)} in all)"
        return f"programs that took nothing: {shown}{more}"


CoverageError = TileCoverage | UnservedCounter | IdlePrograms
# How many coverage errors summary() prints; summary_dict() and coverage_errors hold them all.
SUMMARY_COVERAGE_LINES = 24

BLOCK_FIT_NOTES = {
    None: "",
    "fitted": " (fitted to the problem)",
    "padded": " (larger than the problem: the makespan includes the padding)",
}


@dataclasses.dataclass(frozen=True)
class SimResult:
    """The outcome of :func:`refsim.simulate`.

    ``records``: one :class:`~refsim.trace.WorkRecord` per work item, by program then step
    (split-K's reduction launch last). ``fixups``: one :class:`~refsim.result.Fixup` per
    split tile. ``deadlock``: None, or a :class:`~refsim.result.Deadlock`.
    ``coverage_errors``: every way the run's work fails to be the whole GEMM exactly once --
    an :class:`UnservedCounter` per work-stealing counter with tiles that no program drew
    from, an :class:`IdlePrograms` of the programs that computed nothing, and a
    :class:`TileCoverage` per K-range of a tile computed zero times or more than once, in that
    order; empty for a run that did all the work. ``output`` and ``partials`` are set when
    input arrays were given (see :mod:`refsim.numerics`).
    """

    config: GemmConfig
    plan: Plan
    records: list[WorkRecord]
    fixups: list[Fixup]
    deadlock: Deadlock | None
    makespan_us: float
    busy_us: list[float]
    coverage_errors: list[CoverageError] = dataclasses.field(default_factory=list)
    output: np.ndarray | None = None
    partials: list[Partial] | None = None
    calibration: Calibration | None = None

    @property
    def clock(self) -> str:
        """Where the run's times come from: a calibration, or the profile's datasheet; a
        calibration that did not measure the run's block says its K-loop is the datasheet's."""
        c = self.config
        if self.calibration is not None:
            described = self.calibration.describe()
            if self.calibration.timing(c.dtype, c.block_m, c.block_n, c.block_k) is None:
                block = f"{c.dtype} {c.block_m}x{c.block_n}x{c.block_k}"
                return f"{described}, but not block {block}: its K-loop from the datasheet"
            return described
        name = c.profile.name
        if isinstance(c.device, str) and for_profile(name) is not None:
            return f"datasheet numbers (the calibration for {name} turned off)"
        return f"datasheet numbers (no calibration for {name})"

    @property
    def tflops(self) -> float | None:
        """Predicted throughput, 2*M*N*K over the makespan: 0 for a deadlocked run, None for
        one that lost or duplicated work (``coverage_errors``), whose time is not that of the
        GEMM."""
        if self.deadlock is not None or self.makespan_us <= 0:
            return 0.0
        if self.coverage_errors:
            return None
        return self.config.flops / (self.makespan_us * 1e6)

    def xcd_utilisation(self):
        """Per XCD: busy CU time over (CUs of the XCD x makespan)."""
        c = self.config
        per_xcd = c.cus // c.xcds
        span = self.makespan_us or 1.0
        return [
            sum(self.busy_us[x * per_xcd : (x + 1) * per_xcd]) / (per_xcd * span)
            for x in range(c.xcds)
        ]

    def summary_dict(self):
        c = self.config
        longest = max(self.fixups, key=lambda f: f.wait_us, default=None)
        if longest is not None and longest.wait_us <= 0:
            longest = None
        return {
            "problem": {"m": c.m, "n": c.n, "k": c.k, "dtype": c.dtype},
            "device": c.profile.name,
            "cus": c.cus,
            "xcds": c.xcds,
            "strategy": c.strategy,
            "fixup": c.fixup,
            "blocks": [c.block_m, c.block_n, c.block_k],
            "block_fit": c.block_fit,
            "group_m": c.group_m,
            "grid": c.grid,
            "sk_hybrid": hook_name(c.sk_hybrid),
            "ws_counter_map": hook_name(c.ws_counter_map),
            "ws_counter_ranges": hook_name(c.ws_counter_ranges),
            "ws_ticket_tile": hook_name(c.ws_ticket_tile),
            "tile_order": hook_name(c.tile_order),
            "tiles": c.total_tiles,
            "iters_per_tile": c.iters_per_tile,
            "dp_tiles": c.dp_tiles,
            "sk_tiles": c.sk_tiles or 0,
            "split_k": c.split_k,
            "work_items": len(self.records),
            "makespan_us": self.makespan_us,
            "tflops": self.tflops,
            "xcd_utilisation": self.xcd_utilisation(),
            "fixups": len(self.fixups),
            "longest_wait_us": longest.wait_us if longest else 0.0,
            "longest_wait_tile": longest.tile if longest else None,
            "deadlock": str(self.deadlock) if self.deadlock else None,
            "coverage_errors": [str(error) for error in self.coverage_errors],
            "clock": self.clock,
        }

    def summary(self):
        """A short human-readable report."""
        s = self.summary_dict()
        c = self.config
        lines = [
            f"GEMM {c.m}x{c.n}x{c.k} {c.dtype} on {s['device']} ({c.cus} CUs, {c.xcds} XCDs)",
            f"strategy {c.strategy}"
            + (f", fixup {c.fixup}" if c.fixup else "")
            + (f", split_k {c.split_k}" if c.split_k else "")
            + _schedule_notes(c)
            + f", blocks {c.block_m}x{c.block_n}x{c.block_k}"
            + BLOCK_FIT_NOTES[c.block_fit]
            + f", group_m {c.group_m}, grid {c.grid}",
            f"tiles {c.total_tiles} ({c.num_pid_m}x{c.num_pid_n}), {c.iters_per_tile} K-iterations each: "
            + (
                f"each split {c.split_k} ways, reduced in {c.reduce_bands} row bands"
                if (c.split_k or 1) > 1
                else f"{s['dp_tiles']} DP, {s['sk_tiles']} SK"
            )
            + f"; {s['work_items']} work items",
            f"makespan {self.makespan_us:.2f} us, "
            + (
                "no TFLOP/s: work lost (below)"
                if self.coverage_errors
                else f"predicted {self.tflops:.1f} TFLOP/s"
            )
            + f"; clock: {self.clock}",
            "XCD utilisation " + " ".join(f"{u:.0%}" for u in s["xcd_utilisation"]),
            f"fixups {s['fixups']}, longest wait {s['longest_wait_us']:.2f} us"
            + (f" (tile {s['longest_wait_tile']})" if s["longest_wait_tile"] is not None else ""),
        ]
        if self.deadlock is not None:
            lines.append(str(self.deadlock))
        if self.coverage_errors:
            lines.append(_coverage_headline(self.coverage_errors))
            lines += [f"  {error}" for error in self.coverage_errors[:SUMMARY_COVERAGE_LINES]]
            if len(self.coverage_errors) > SUMMARY_COVERAGE_LINES:
                lines.append(
                    f"  ... {len(self.coverage_errors) - SUMMARY_COVERAGE_LINES} more "
                    "(all of them in SimResult.coverage_errors and the --json summary)"
                )
        return "\n".join(lines)

    def to_chrome_trace(self, path):
        trace.write_chrome_trace(self.records, path, metadata=self.summary_dict())

    def plot_gantt(self, path):
        """A Gantt chart of the records (see :func:`refsim.trace.plot_gantt`); needs matplotlib."""
        c = self.config
        strategy = c.strategy + (f" ({c.fixup})" if c.fixup else "")
        outcome = (
            f"deadlock at {self.deadlock.at_us:.1f} us"
            if self.deadlock is not None
            else f"{self.makespan_us:.1f} us"
        )
        trace.plot_gantt(
            self.records,
            path,
            title=f"{strategy} {c.m}x{c.n}x{c.k} on {c.profile.name}: {outcome}",
            waits=[(w[0], w[3]) for w in self.deadlock.waiting] if self.deadlock else (),
            stalled_at=self.deadlock.at_us if self.deadlock else None,
        )


def _schedule_notes(config: GemmConfig) -> str:
    """The schedule hooks that differ from their default, for the summary's strategy line."""
    notes = []
    for name in HOOKS:
        value = getattr(config, name)
        field = GemmConfig.__dataclass_fields__[name]
        if value is not None and value != field.metadata["strategy_default"]:
            notes.append(f", {name} {hook_name(value)}")
    if callable(config.xcd_remap):
        notes.append(f", xcd_remap {hook_name(config.xcd_remap)}")
    return "".join(notes)


def _coverage_headline(errors: list[CoverageError]) -> str:
    """``work lost: ...``: counters unserved, programs idle, K-ranges computed never or twice
    (the counts that are not zero)."""
    ranges = [e for e in errors if isinstance(e, TileCoverage)]
    never = sum(e.times == 0 for e in ranges)
    counts = [
        (sum(isinstance(e, UnservedCounter) for e in errors), "counter", "never served"),
        (
            sum(len(e.programs) for e in errors if isinstance(e, IdlePrograms)),
            "program",
            "took nothing",
        ),
        (never, "tile K-range", "never computed"),
        (len(ranges) - never, "tile K-range", "computed more than once"),
    ]
    return "work lost: " + ", ".join(
        f"{n} {noun}{'s' if n > 1 else ''} {what}" for n, noun, what in counts if n
    )
