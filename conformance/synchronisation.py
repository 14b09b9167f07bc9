"""The synchronisation check: read a traced run's event log and judge how partials were handed over.

Every program's events are read in that program's own order (the log's order across programs is
no happens-before, on a GPU or in the interpreter). A partial must be stored before it is
released (a flag published, a counter arrived at), and read only when its reader acquired that
release: by waiting on a flag the storer published after storing it, or by being the final
arrival at a counter the storer arrived at after storing it. One program publishes each flag
with each value in a launch (else a waiter cannot tell whose release ended its wait). No flag
may hold the launch's epoch before the launch starts, no program may wait for a value nobody publishes (a GPU would spin
forever), and nothing the kernel recorded may have been dropped.
"""

import collections
import dataclasses

from refsim import tiling

from .causes import Cause
from .checks import Finding

RELEASES = ("publish", "arrive")

# Causes from the most serious class to the least. A log with holes comes first (the other
# rules would judge missing events); then a root cause (a release before its data, a store
# never released, a flag that was already set or that another program sets too) before the
# reads it lets through.
SEVERITY = (
    Cause.RECORD_OVERRUN,
    Cause.FLAG_SET_BEFORE_PARTIAL_STORED,
    Cause.PARTIAL_NEVER_RELEASED,
    Cause.FLAG_HELD_STALE_EPOCH,
    Cause.FLAG_PUBLISHED_BY_SEVERAL_PROGRAMS,
    Cause.KERNEL_HUNG,
    Cause.PARTIAL_READ_BEFORE_RELEASE,
    Cause.PARTIAL_READ_BEFORE_WRITTEN,
)
MAX_REASONS = 5


def check_synchronisation(config, run):
    """A :class:`conformance.checks.Finding` on ``run``'s event log, epoch, pre-launch flags and
    overruns (see :class:`kernels.KernelRun`); None when the run logged no events and dropped
    nothing. ``config`` (the run's GemmConfig) places the tiles the reasons name."""
    events = getattr(run, "events", None)
    overruns = getattr(run, "overruns", None) or 0
    if events is None and not overruns:
        return None
    events = events or []
    programs = _by_program(events)
    violations = []
    if overruns:
        violations.append(
            (
                Cause.RECORD_OVERRUN,
                f"{overruns} trace record(s) or event(s) did not fit their buffers and were dropped",
            )
        )
    violations += _unreleased_stores(programs)
    violations += _stale_flags(getattr(run, "flags_before", None), getattr(run, "epoch", None))
    violations += _shared_flags(programs)
    violations += _endless_waits(programs, getattr(run, "flags_before", None))
    violations += _unreleased_loads(config, programs, getattr(run, "epoch", None))
    if not violations:
        return Finding(
            "synchronisation",
            True,
            [f"{len(events)} events: every partial stored, released, then acquired and read"],
        )
    violations.sort(key=lambda v: SEVERITY.index(v[0]))
    return Finding(
        "synchronisation",
        False,
        [reason for _, reason in violations[:MAX_REASONS]],
        violations[0][0],
    )


def _by_program(events):
    """``{program: [(kind, index, value), ...]}`` in each program's order."""
    programs = collections.defaultdict(list)
    for program, kind, index, value in events:
        programs[program].append((kind, index, value))
    return programs


def _unreleased_stores(programs):
    """Every store must be followed by a release of the same program."""
    violations = []
    for program, sequence in sorted(programs.items()):
        pending, last_release = [], None
        for kind, index, _ in sequence:
            if kind == "store":
                pending.append(index)
            elif kind in RELEASES:
                pending, last_release = [], (kind, index)
        if pending and last_release:
            violations.append(
                (
                    Cause.FLAG_SET_BEFORE_PARTIAL_STORED,
                    f"program {program} stored partial slot(s) {pending} after its last "
                    f"release ({last_release[0]} {last_release[1]})",
                )
            )
        elif pending:
            violations.append(
                (
                    Cause.PARTIAL_NEVER_RELEASED,
                    f"program {program} stored partial slot(s) {pending} and never released them",
                )
            )
    return violations


def _stale_flags(flags_before, epoch):
    """A flag that held the launch's epoch before it started tells waiters "ready" too early."""
    if flags_before is None or epoch is None:
        return []
    stale = [flag for flag, value in enumerate(flags_before.tolist()) if value == epoch]
    if not stale:
        return []
    shown = _listed(stale[:10]) + (", ..." if len(stale) > 10 else "")
    return [
        (
            Cause.FLAG_HELD_STALE_EPOCH,
            f"flag(s) {shown} held this launch's epoch {epoch} before it started",
        )
    ]


def publishers(programs):
    """``{(flag, value): [program, ...]}``: who published each flag with each value, sorted."""
    published = collections.defaultdict(set)
    for program, sequence in programs.items():
        for kind, index, value in sequence:
            if kind == "publish":
                published[index, value].add(program)
    return {key: sorted(programs) for key, programs in published.items()}


def _shared_flags(programs):
    """A flag published with the same value by several programs of one launch: a waiter on it
    wakes at whichever publish comes first, which need not be its partial's storer's."""
    return [
        (
            Cause.FLAG_PUBLISHED_BY_SEVERAL_PROGRAMS,
            f"flag {flag} was published with {value} by programs {_listed(owners)} in this "
            "launch: a wait on it ends at the first of them, not necessarily at the storer's "
            "release (one publisher per flag per launch)",
        )
        for (flag, value), owners in sorted(publishers(programs).items())
        if len(owners) > 1
    ]


def _endless_waits(programs, flags_before):
    """A wait for a value that no program of the launch publishes to that flag (and the flag did
    not already hold) never ends on a GPU. The interpreter does not spin, so there the log is
    the only sign of the hang."""
    published = {
        (index, value)
        for sequence in programs.values()
        for kind, index, value in sequence
        if kind == "publish"
    }
    before = [] if flags_before is None else flags_before.tolist()
    violations = []
    for program, sequence in sorted(programs.items()):
        for kind, flag, value in sequence:
            held = flag < len(before) and before[flag] == value
            if kind == "wait" and (flag, value) not in published and not held:
                violations.append(
                    (
                        Cause.KERNEL_HUNG,
                        f"program {program} waits on flag {flag} for {value}, which no program "
                        "of this launch publishes there: on a GPU it spins forever",
                    )
                )
    return violations


class _Releases:
    """Who stored each slot, and where each program published and arrived, by position in its
    program order."""

    def __init__(self, programs):
        self.publishers = publishers(programs)  # (flag, value) -> the programs that published it
        self.stores = collections.defaultdict(list)  # slot -> [(program, position)]
        self.positions = collections.defaultdict(list)  # (program, kind, index) -> [position]
        self.arrivals = collections.Counter()  # counter -> arrivals in this launch
        for program, sequence in programs.items():
            for position, (kind, index, _) in enumerate(sequence):
                if kind == "store":
                    self.stores[index].append((program, position))
                elif kind in RELEASES:
                    self.positions[program, kind, index].append(position)
                if kind == "arrive":
                    self.arrivals[index] += 1

    def final(self, counter, count):
        """Whether an arrival that saw ``count`` earlier ones at ``counter`` was the last."""
        return count == self.arrivals[counter] - 1

    def released_after(self, storer, kind, index, stored_at):
        """Whether ``storer`` released (``kind``) flag or counter ``index`` after its store."""
        return any(p > stored_at for p in self.positions.get((storer, kind, index), ()))

    def sole_publisher(self, flag, value):
        """Whether one program alone published ``flag`` with ``value`` in this launch."""
        return len(self.publishers.get((flag, value), ())) <= 1


@dataclasses.dataclass
class _Reader:
    """What one program has acquired so far, walking its events in order."""

    program: int
    awaited: dict = dataclasses.field(default_factory=dict)  # flag -> epoch awaited
    acquired: dict = dataclasses.field(default_factory=dict)  # flag -> value read
    arrivals: dict = dataclasses.field(default_factory=dict)  # counter -> earlier arrivals seen
    counter: int = None  # the counter it arrived at last


def _unreleased_loads(config, programs, epoch):
    """Every load is of a partial the reader acquired: its own earlier store, a flag the storer
    published after storing it (the acquire read the epoch), or the final arrival at a counter
    the storer arrived at after storing it."""
    releases = _Releases(programs)
    violations = []
    for program, sequence in sorted(programs.items()):
        reader = _Reader(program)
        for position, (kind, index, value) in enumerate(sequence):
            if kind == "wait":
                reader.awaited[index] = value
            elif kind == "acquire":
                reader.acquired[index] = value
            elif kind == "arrive":
                reader.arrivals[index], reader.counter = value, index
            elif kind == "load":
                violation = _judge_load(config, releases, epoch, reader, position, index, value)
                if violation:
                    violations.append(violation)
    return violations


def _judge_load(config, releases, epoch, reader, position, slot, tile):
    """None when ``reader``'s load of ``slot`` (a partial of ``tile``) at ``position`` was
    released to it, else the violation ``(cause, reason)``."""
    storers = releases.stores.get(slot)
    if not storers:
        return (
            Cause.PARTIAL_READ_BEFORE_WRITTEN,
            f"program {reader.program} loaded slot {slot} ({_tile(config, tile)}), which no "
            f"program stored in this launch",
        )
    ready = {
        flag: epoch if epoch is not None else reader.awaited.get(flag) for flag in reader.acquired
    }
    for storer, stored_at in storers:
        if storer == reader.program and stored_at < position:
            return None
        for flag, seen in reader.acquired.items():
            if (
                seen == ready[flag]
                and releases.sole_publisher(flag, seen)
                and releases.released_after(storer, "publish", flag, stored_at)
            ):
                return None
        for counter, count in reader.arrivals.items():
            if releases.final(counter, count) and releases.released_after(
                storer, "arrive", counter, stored_at
            ):
                return None
    storer = storers[0][0]
    what = (
        f"program {reader.program} loaded slot {slot} (stored by program {storer}, "
        f"{_tile(config, tile)})"
    )
    return (
        Cause.PARTIAL_READ_BEFORE_RELEASE,
        f"{what} {_why_unreleased(releases, reader, storer, ready)}",
    )


def _why_unreleased(releases, reader, storer, ready):
    """Why ``reader`` had not acquired ``storer``'s release: the end of a reason."""
    counter = reader.counter
    if counter is not None and not releases.final(counter, reader.arrivals[counter]):
        return (
            f"after arriving {reader.arrivals[counter] + 1} of {releases.arrivals[counter]} at "
            f"counter {counter}: it reduced before the final arrival"
        )
    for flag, seen in reader.acquired.items():
        if (storer, "publish", flag) in releases.positions:
            if not releases.sole_publisher(flag, seen):
                owners = _listed(releases.publishers[flag, seen])
                return (
                    f"after its wait on flag {flag}, which programs {owners} all published with "
                    f"{seen}: the wait may have ended at another's release than program {storer}'s"
                )
            if seen == ready[flag]:
                return f"but program {storer} published flag {flag} before storing it"
            return f"after its wait on flag {flag} read {seen}, not the epoch {ready[flag]}"
    for counter, count in reader.arrivals.items():
        if (storer, "arrive", counter) in releases.positions and releases.final(counter, count):
            return f"but program {storer} arrived at counter {counter} before storing it"
    for kind, wanted in (("publish", "waiting on"), ("arrive", "arriving last at")):
        released = sorted(i for p, k, i in releases.positions if (p, k) == (storer, kind))
        if released:
            noun = "flag" if kind == "publish" else "counter"
            return f"without {wanted} program {storer}'s {noun} {_listed(released)}"
    return f"which program {storer} never released"


def _listed(numbers):
    return ", ".join(map(str, numbers))


def _tile(config, tile):
    """``tile 5 (pid_m 1, pid_n 1)``, or the bare number for one outside the matrix."""
    if not 0 <= tile < config.total_tiles:
        return f"tile {tile}"
    pid_m, pid_n = tiling.grouped_tile(tile, config.num_pid_m, config.num_pid_n, config.group_m)
    return f"tile {tile} (pid_m {pid_m}, pid_n {pid_n})"
