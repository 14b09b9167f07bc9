"""Checks every simulated run must pass, as functions returning reasons (empty list = fine)."""

import collections
import itertools

from refsim import tiling


def coverage_problems(result):
    """Every (tile, K-iteration) computed exactly once, every tile finalised exactly once (by
    each of its row bands under split-K)."""
    config = result.config
    problems = []
    spans = collections.defaultdict(list)
    finalised = collections.Counter()
    for r in result.records:
        if r.kernel == "gemm":
            spans[r.tile].append((r.k_begin, r.k_end))
        finalised[r.tile] += r.finalizes
    if set(spans) != set(range(config.total_tiles)):
        missing = sorted(set(range(config.total_tiles)) - set(spans))
        problems.append(
            f"tiles never computed: {missing[:10]}; unknown tiles: "
            f"{sorted(set(spans) - set(range(config.total_tiles)))[:10]}"
        )
    for tile, ranges in spans.items():
        cursor = 0
        for k_begin, k_end in sorted(ranges):
            if k_begin != cursor or k_end <= k_begin:
                problems.append(
                    f"tile {tile}: K-ranges {sorted(ranges)} do not cover "
                    f"[0, {config.iters_per_tile}) exactly once"
                )
                break
            cursor = k_end
        else:
            if cursor != config.iters_per_tile:
                problems.append(f"tile {tile}: K-ranges {sorted(ranges)} stop at {cursor}")
    # split-K's reduction finalises a tile in row bands, one program each
    writers = config.reduce_bands if (config.split_k or 1) > 1 else 1
    for tile in range(config.total_tiles):
        if finalised[tile] != writers:
            problems.append(f"tile {tile} finalised {finalised[tile]} times, not {writers}")
    return problems


def record_problems(result):
    """Records are well formed: coordinates, steps, per-unit and per-program time order, dispatch."""
    config = result.config
    problems = []
    per_xcd = config.cus // config.xcds
    by_program = collections.defaultdict(list)
    by_unit = collections.defaultdict(list)
    for r in result.records:
        by_program[(r.kernel, r.program)].append(r)
        by_unit[r.unit].append(r)
        expected = tiling.grouped_tile(r.tile, config.num_pid_m, config.num_pid_n, config.group_m)
        if (r.pid_m, r.pid_n) != expected:
            problems.append(f"{r}: pid_m/pid_n {(r.pid_m, r.pid_n)} != {expected}")
        if not r.t_start_us <= r.t_end_us <= result.makespan_us:
            problems.append(f"{r}: times out of order or past the makespan")
        if r.xcd != r.unit // per_xcd:
            problems.append(f"{r}: CU {r.unit} is not on XCD {r.xcd}")
        if config.profile.vendor == "amd" and r.xcd != r.program % config.xcds:
            problems.append(f"{r}: workgroup {r.program} must run on XCD {r.program % config.xcds}")
    for key, records in by_program.items():
        if [r.step for r in records] != list(range(len(records))):
            problems.append(f"program {key}: steps {[r.step for r in records]} not consecutive")
        if len({r.unit for r in records}) != 1:
            problems.append(f"program {key} moved between CUs")
        for before, after in itertools.pairwise(records):
            if after.t_start_us < before.t_end_us:
                problems.append(
                    f"program {key}: step {after.step} starts before step {before.step} ends"
                )
    if config.profile.resident_per_cu == 1:
        for unit, records in by_unit.items():
            records = sorted(records, key=lambda r: r.t_start_us)
            for before, after in itertools.pairwise(records):
                if after.t_start_us < before.t_end_us - 1e-9:
                    problems.append(f"CU {unit}: {after} overlaps {before}")
    return problems


def plan_problems(result):
    """Each program did exactly its planned items, in order (work stealing: its Stream-K tail,
    after its stolen tiles, steps numbered on from them)."""
    stealing = result.config.strategy == "work_stealing"
    done = [r for r in result.records if r.kernel == "gemm" and r.role != "ws"]
    planned = result.plan.items()
    observed = [(r.program, r.tile, r.k_begin, r.k_end, r.role) for r in done]
    expected = [(i.program, i.tile, i.k_begin, i.k_end, i.role) for i in planned]
    if not stealing:
        observed = [(r.step, *o) for r, o in zip(done, observed)]
        expected = [(i.step, *e) for i, e in zip(planned, expected)]
    if observed != expected:
        first = next(
            i for i, (o, e) in enumerate(zip(observed + [None], expected + [None])) if o != e
        )
        return [
            f"record {first} differs from the plan: {observed[first : first + 1]} vs "
            f"{expected[first : first + 1]} ({len(observed)} records, {len(expected)} planned)"
        ]
    return []


def fixup_problems(result):
    """Each split tile has one fixup whose contributors hold its K-ranges in K order."""
    problems = []
    ranges = collections.defaultdict(dict)
    for r in result.records:
        if r.kernel == "gemm":
            ranges[r.tile][r.program] = (r.k_begin, r.k_end)
    fixup_tiles = [f.tile for f in result.fixups]
    if fixup_tiles != sorted(result.plan.split_tiles):
        problems.append(
            f"fixups for tiles {fixup_tiles}, split tiles {sorted(result.plan.split_tiles)}"
        )
    for f in result.fixups:
        spans = [ranges[f.tile].get(p) for p in f.contributors]
        if None in spans:
            problems.append(f"tile {f.tile}: a contributor in {f.contributors} has no record")
            continue
        cursor = 0
        for k_begin, k_end in spans:
            if k_begin != cursor:
                problems.append(
                    f"tile {f.tile}: contributors {f.contributors} not in K order: {spans}"
                )
                break
            cursor = k_end
        if sorted(f.order) != sorted(f.contributors):
            problems.append(
                f"tile {f.tile}: reduction order {f.order} is not a permutation of {f.contributors}"
            )
    return problems


def work_stealing_problems(result):
    """Every ticket of every counter used once; each tile comes from its counter's range;
    stolen tiles come before a program's Stream-K tail."""
    config = result.config
    if config.strategy != "work_stealing":
        return []
    problems = []
    tickets = collections.defaultdict(list)
    for r in result.records:
        if r.role != "ws":
            continue
        tickets[r.counter].append(r.ticket)
        begin, end = config.counter_range(r.counter)
        if not begin <= r.tile < end or r.tile != config.ticket_tile(r.counter, r.ticket):
            problems.append(f"{r}: tile outside counter {r.counter}'s range [{begin}, {end})")
        if r.counter != config.counter_of(r.program):
            problems.append(
                f"{r}: drew from counter {r.counter}, mapped to {config.counter_of(r.program)}"
            )
    for counter in range(config.num_counters):
        begin, end = config.counter_range(counter)
        if sorted(tickets[counter]) != list(range(end - begin)):
            problems.append(
                f"counter {counter}: tickets {sorted(tickets[counter])[:8]}... "
                f"expected 0..{end - begin - 1}"
            )
    for program, records in itertools.groupby(result.records, key=lambda r: r.program):
        roles = [r.role == "ws" for r in records if r.kernel == "gemm"]
        if roles != sorted(roles, reverse=True):
            problems.append(f"program {program}: a stolen tile after its Stream-K tail")
    return problems


def reported_coverage_problems(result):
    """The simulator reports lost work exactly when :func:`coverage_problems` finds some."""
    found, reported = coverage_problems(result), result.coverage_errors
    if bool(found) != bool(reported):
        return [f"coverage errors reported: {reported[:3]}; found: {found[:3]}"]
    return []


def all_problems(result):
    return (
        coverage_problems(result)
        + record_problems(result)
        + plan_problems(result)
        + fixup_problems(result)
        + work_stealing_problems(result)
        + reported_coverage_problems(result)
    )
