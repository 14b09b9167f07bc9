"""The checks: each returns a Finding with reasons, and a classified cause when it fails.

They launch the kernel under test through :mod:`conformance.harness`, compare it with refsim,
and leave explaining a difference to :mod:`conformance.diagnosis`.
"""

import collections
import dataclasses

import numpy as np
import torch

import refsim
from kernels.backend import program_order, shuffled_order
from refsim import numerics, tiling

from .causes import Cause
from .diagnosis import (
    EpilogueDiagnoser,
    OrderDiagnoser,
    RandomBitsDiagnoser,
    RepeatedBitsDiagnoser,
    RepeatedToleranceDiagnoser,
    decode_order,
    diagnose,
    first_wrong_tile,
    partial_cause,
    wrong_tiles,
)
from .guards import OutputLayout
from .harness import (
    POISON,
    STREAM_K_ROLES,
    cast_to,
    expected_output,
    launch,
    replayed_schedule,
    ticket_records,
    to_numpy,
)
from .inputs import epilogue_inputs, integer_inputs, order_inputs, random_inputs
from .tolerances import TOLERANCE, relative_error, tolerance_for


@dataclasses.dataclass
class Finding:
    """One check's verdict: ``reasons`` say what was seen, ``cause`` (one of
    :class:`conformance.causes.Cause`) why it failed, ``diagnosis`` where. A check that
    diagnoses tile by tile also gives ``groups``: every distinct cause with the tiles it
    explains (:class:`conformance.diagnosis.CauseGroup`), lead cause first, which is
    ``cause``. A check that could not run here (a path the kernel lacks, a GPU-only check on
    the CPU) passes with ``ran`` False and says why."""

    check: str
    passed: bool
    reasons: list
    cause: Cause | None = None
    diagnosis: dict = None
    groups: list = None
    ran: bool = True

    @property
    def causes(self):
        """Every cause the finding names, lead first (none when it passed)."""
        if self.passed:
            return []
        if self.groups:
            return [group.cause for group in self.groups]
        return [self.cause] if self.cause else []


def grouped_finding(check, groups, info, note=""):
    """A failed finding of a per-tile diagnosis: one reason per cause group (lead first), then
    the first wrong element; ``note`` ends each group's line, and a group no decoder explained
    (``unclassified``, ``backend limitation``) also names the check that saw it."""
    unexplained = (Cause.UNCLASSIFIED, Cause.BACKEND_LIMITATION)
    reasons = [
        group.line()
        + note
        + (f" [seen by the {check} check]" if group.cause in unexplained else "")
        for group in groups
    ]
    i, j = info["element"]
    reasons.append(
        f"first wrong element: C[{i}, {j}] in tile {info['tile']} (pid_m {info['pid_m']}, "
        f"pid_n {info['pid_n']}) is {info['got']!r}, refsim has {info['expected']!r}"
    )
    return Finding(check, False, reasons, groups[0].cause, info, groups)


def check_exact(kut, case, config, device):
    """Integer inputs: output equal to refsim's predicted output after the cast, bit for bit;
    every wrong tile is diagnosed and the causes grouped (:func:`conformance.diagnosis.diagnose`)."""
    run, tensors = launch(kut, config, case, integer_inputs(case), device, trace=True)
    expected32, sim = expected_output(config, run, tensors)
    got = to_numpy(run.output)
    expected = cast_to(expected32, run.output.dtype)
    if first_wrong_tile(config, got, expected) is None:
        return Finding("exact output", True, []), run, tensors, sim
    if config.scheme.dynamic and getattr(run, "records", None) is not None:
        a, b, bias = map(to_numpy, tensors)
        planned = cast_to(refsim.simulate(config, a=a, b=b, bias=bias).output, run.output.dtype)
        if first_wrong_tile(config, got, planned) is None:
            wrong = [w.tile for w in wrong_tiles(config, planned, expected)]
            return (
                Finding(
                    "exact output",
                    True,
                    [
                        "refsim's output (every stolen tile is whole, so its value does not "
                        "depend on who took it); the kernel's recorded tickets, replayed, would "
                        f"leave tiles {wrong[:10]} otherwise: the work-stealing invariants judge "
                        "the records"
                    ],
                ),
                run,
                tensors,
                sim,
            )
    groups, info = diagnose(
        kut, case, config, got, expected, sim, device, tensors, run.output.dtype
    )
    return grouped_finding("exact output", groups, info), run, tensors, sim


def check_partials(kut, config, run, sim, tensors):
    """Every partial refsim predicts equals the kernel's, bit for bit; a difference is decoded
    into a missing or extra K-iteration, or a bias that a partial should not hold."""
    if kut.partial_slot is None or getattr(run, "partials", None) is None or sim is None:
        return None
    math = numerics.TileMath(config, *map(to_numpy, tensors))
    reasons, causes = [], []
    for p in sim.partials:
        slot = kut.partial_slot(config, p.program, p.tile)
        rows, cols = p.value.shape
        got = run.partials[slot, :rows, :cols].double().cpu().numpy()
        if not np.array_equal(got, p.value):
            cause, detail = partial_cause(math, config, p, got)
            causes.append(cause)
            reasons.append(
                f"partial of program {p.program} for tile {p.tile} (K-iterations "
                f"{p.k_begin}..{p.k_end}) differs in slot {slot}: {detail}"
            )
    return Finding("partials", not reasons, reasons[:5], causes[0] if causes else None)


def check_guard_bands(config, case, run):
    """Every element of the output's storage outside the M x N view (guard rows and columns,
    a strided layout's padding) still holds :data:`conformance.guards.GUARD`: the kernel wrote
    nothing outside the matrix. None when ``run.output`` is not the view the harness passed."""
    output_layout = OutputLayout.of(config, case)
    storage = output_layout.storage_of(run.output)
    if storage is None:
        return None
    written = output_layout.written(storage)
    if not written:
        guards = storage.numel() - config.m * config.n
        return Finding("guard bands", True, [f"{guards} guard elements untouched"])
    reasons = [output_layout.describe(i, j) for i, j in written[:5]]
    if len(written) > 5:
        reasons.append(f"{len(written)} guard elements written in all")
    return Finding(
        "guard bands",
        False,
        reasons,
        Cause.WRITE_OUTSIDE_TILE_OR_MATRIX,
        {"written": [list(place) for place in written[:5]], "count": len(written)},
    )


def _slot_owners(work_items):
    """``(program, tile)`` work items sharing a slot in words, e.g. "program 0's slot for tiles
    1, 2"."""
    tiles = collections.defaultdict(list)
    for program, tile in work_items:
        tiles[program].append(str(tile))
    return "; ".join(
        f"program {program}'s slot for tile{'s' if len(t) > 1 else ''} {', '.join(t)}"
        for program, t in tiles.items()
    )


def check_partial_slots(kut, config, run, sim):
    """Every slot of the partial workspace where refsim's plan puts no partial still holds the
    :data:`conformance.harness.POISON` the harness filled it with: no program stored a partial
    where none belongs (a tile that is not split, an owner that keeps its partial, a slot past
    the last one). None without a poisoned workspace, slots or refsim's plan."""
    if kut.poison is None or kut.partial_slot is None or sim is None:
        return None
    partials = getattr(run, "partials", None)
    if partials is None:
        return None
    planned = {kut.partial_slot(config, p.program, p.tile) for p in sim.partials}
    named = collections.defaultdict(list)  # slot -> the work items that could hold a partial there
    for r in sim.records:
        if r.kernel == "gemm" and r.role not in ("dp", "ws"):  # whole tiles keep no partial
            named[kut.partial_slot(config, r.program, r.tile)].append((r.program, r.tile))
    last = max(named, default=-1)
    fill = getattr(run, "partials_fill", POISON)  # or 0 for a kernel that zero-fills: adapt()
    untouched = (partials == POISON) | (partials == fill)
    poisoned = untouched.reshape(len(partials), -1).all(dim=1).tolist()
    written = [s for s, untouched in enumerate(poisoned) if not untouched and s not in planned]
    if not written:
        return Finding(
            "partial slots",
            True,
            [f"{len(partials) - len(planned)} slots without a planned partial untouched"],
        )
    reasons = []
    for slot in written[:5]:
        if slot > last:
            reasons.append(
                f"slot {slot} was written: it is past the last slot of the plan ({last})"
            )
        elif slot in named:
            reasons.append(
                f"slot {slot} was written, but refsim plans no partial there "
                f"({_slot_owners(named[slot])})"
            )
        else:
            reasons.append(f"slot {slot} was written, but refsim plans no partial there")
    return Finding(
        "partial slots", False, reasons, Cause.WRITE_OUTSIDE_TILE_OR_MATRIX, {"slots": written}
    )


def check_stray_writes(kut, case, config, run, sim):
    """The findings of the traced exact-output run's writes outside its place: the output's
    guard bands (:func:`check_guard_bands`) and the partial workspace's unplanned slots
    (:func:`check_partial_slots`), those that apply."""
    findings = (check_guard_bands(config, case, run), check_partial_slots(kut, config, run, sim))
    return [finding for finding in findings if finding is not None]


def check_addition_order(kut, case, config, device, exact_wrong=()):
    """Order-revealing inputs (:func:`conformance.inputs.order_inputs`) into an fp32 output: equal
    to refsim's output bit for bit, so split tiles added their partials in refsim's order.

    None where nothing is ordered: no split tile the inputs cover, or the atomic fixup (whose
    order is the hardware's by design). In Triton's interpreter the programs of a launch that
    does not need an order of its own run highest id first, so the K-first contributor of a
    tile arrives last, as a Stream-K owner (whose segment ends its range) usually does on a GPU:
    a reduction that depends on who arrives last shows here in both tiers. A difference no
    order of the first wrong covered tile explains is diagnosed tile by tile
    (:class:`conformance.diagnosis.OrderDiagnoser`: another tile's write shows its K-split
    here, on a GPU too), except on tiles the exact check found wrong (``exact_wrong``, tile
    ids), whose cause is that check's.
    """
    if config.protocol is not None and not config.protocol.deterministic:
        return None
    inputs = order_inputs(config, case.seed)
    if not inputs.tiles:
        return None
    numpy_inputs = (inputs.a, inputs.b, inputs.bias if case.bias else None)
    with program_order(lambda num_programs: range(num_programs - 1, -1, -1)):
        run, tensors = launch(
            kut, config, case, numpy_inputs, device, trace=False, out_dtype=torch.float32
        )
    expected, _ = expected_output(config, run, tensors)
    got = to_numpy(run.output)
    if first_wrong_tile(config, got, expected) is None:
        return Finding("addition order", True, [f"tiles {list(inputs.tiles)} in refsim's order"])
    cause, info = decode_order(
        config, got, tuple(map(to_numpy, tensors)), inputs.tiles, inputs.segments
    )
    if cause != Cause.UNCLASSIFIED:
        return Finding("addition order", False, [info["detail"]], cause, info)
    known = set(exact_wrong)
    wrong = [w for w in wrong_tiles(config, got, expected) if w.tile not in known]
    if not wrong:
        detail = f"{info['detail']} (wrong on the exact inputs too: the exact check names why)"
        return Finding("addition order", False, [detail], None, info)
    diagnoser = OrderDiagnoser(config, got, expected, None, device, tensors)
    groups, info = diagnoser.run(wrong=wrong)
    return grouped_finding("addition order", groups, info, note=" (order-revealing inputs)")


def check_random_bits(kut, case, config, device, exact_wrong=()):
    """Random inputs, in Triton's interpreter: output equal to refsim's bit for bit, with block
    products computed as the interpreter computes them
    (:class:`refsim.numerics.InterpreterTileMath`).

    Random values make every fp32 addition round, so any reduction or accumulation in another
    order than refsim's shows here even where the designed inputs do not reach. None on a GPU
    (its MMA units sum a block in their own order), for the atomic fixup (arrival order) and for
    a kernel that does not declare ``block_dots`` (its products may be computed otherwise).
    Tiles the exact check found wrong (``exact_wrong``, tile ids) have their cause there; every
    other wrong tile is diagnosed here (:class:`conformance.diagnosis.RandomBitsDiagnoser`):
    left unwritten, written by another tile, its partials or K-iterations added in another
    order, or its accumulator rounded.
    """
    unordered = config.protocol is not None and not config.protocol.deterministic
    if device != "cpu" or unordered or not kut.block_dots:
        return None
    run, tensors = launch(
        kut, config, case, random_inputs(case), device, trace=True, out_dtype=torch.float32
    )
    a, b, bias = map(to_numpy, tensors)
    if config.scheme.dynamic:
        if getattr(run, "records", None) is None:
            return None
        records, fixups, sim = replayed_schedule(config, run.records)
    else:
        sim = refsim.simulate(config)
        records, fixups = sim.records, sim.fixups
    expected, _ = numerics.compute(config, records, fixups, a, b, bias, products="interpreter")
    got = to_numpy(run.output)
    if first_wrong_tile(config, got, expected) is None:
        return Finding("random bits", True, ["random inputs: refsim's bits"])
    diagnoser = RandomBitsDiagnoser(config, got, expected, sim, tensors)
    known = set(exact_wrong)
    wrong = wrong_tiles(config, got, expected)
    # On a tile the exact check found wrong, only an accumulator's rounding adds to its cause:
    # with an fp32 output it shows apart from a bias added after an fp16/bf16 cast.
    rounded = [w for w in wrong if w.tile in known and diagnoser.precision(w)]
    wrong = [w for w in wrong if w.tile not in known] + rounded
    if not wrong:
        return Finding(
            "random bits", False, ["random inputs: only the tiles the exact check found wrong"]
        )
    wrong.sort(key=lambda w: w.tile)
    groups, info = diagnoser.run(wrong=wrong)
    return grouped_finding("random bits", groups, info, note=" (random inputs)")


def check_epilogue(kut, case, config, device, exact_wrong=()):
    """fp16/bf16 with a bias: outputs where a second rounding shows
    (:func:`conformance.inputs.epilogue_inputs`) equal refsim's fp32 output cast once. Each
    wrong tile is classified on its own (:class:`conformance.diagnosis.EpilogueDiagnoser`):
    the bias added after a first cast, an accumulator kept in fp16/bf16 (these sums lie above
    2048), written by another tile, or neither -- so a kernel whose whole tiles and Stream-K
    tiles round differently gets both verdicts, each with its tiles. Tiles the exact check
    found wrong (``exact_wrong``, tile ids) have their cause there: the integer inputs decode
    the same roundings, and more."""
    if case.dtype not in ("fp16", "bf16") or not case.bias:
        return None
    run, tensors = launch(kut, config, case, epilogue_inputs(case), device, trace=False)
    expected32, sim = expected_output(config, run, tensors)
    got = to_numpy(run.output)
    expected = cast_to(expected32, run.output.dtype)
    if first_wrong_tile(config, got, expected) is None:
        return Finding("epilogue rounding", True, ["bias added before the one cast"])
    a, b, _ = map(to_numpy, tensors)
    unbiased = refsim.simulate(config, a=a, b=b).output
    diagnoser = EpilogueDiagnoser(
        config, got, expected, sim, device, tensors, run.output.dtype, unbiased
    )
    groups, info = diagnoser.run(exclude=set(exact_wrong))
    if not groups:
        return Finding("epilogue rounding", False, ["only the tiles the exact check found wrong"])
    return grouped_finding("epilogue rounding", groups, info)


def check_order(config, run, sim, work_right=False):
    """Static strategies: each program's (tile, k_begin, k_end, role) sequence is refsim's.
    Work stealing: its invariants (:func:`check_work_stealing`).

    ``work_right``: the exact output, and the partials where the run returned them, equal
    refsim's bit for bit. Then a difference is judged against that output
    (:func:`misdescribed_work`): records that do not describe the work the output shows
    misreport it (``"trace misreports the work"``); records that do describe it show the
    kernel doing refsim's work in another schedule (``"wrong tile order"``, as with a wrong
    output).
    """
    if config.scheme.dynamic:
        return check_work_stealing(config, run, work_right)
    key = lambda r: (r.kernel, *r[:8])  # kernel, program, step, tile, pid_m, pid_n, K-range, role
    finding = _same_work(list(map(key, run.records)), list(map(key, sim.records)))
    return _judged_against_output(config, finding, run.records, work_right)


def misdescribed_work(config, records, recorded="records"):
    """What ``records`` (WorkRecords; those of the ``gemm`` kernel count) say that an output
    equal to refsim's contradicts, one line per tile; empty when they describe it.

    Such an output holds every tile's K-iterations ``[0, iters_per_tile)`` summed once at its
    own ``(pid_m, pid_n)``. So every tile has records, and its records' K-ranges, clipped to
    ``[0, iters_per_tile)``, either each cover the whole range (a tile computed whole, perhaps
    more than once: the same values stored again) or split it into ranges that cover each
    K-iteration once. A record outside the grid of tiles, or the part of a K-range outside the
    tile's, is not contradicted: masked loads and stores leave no trace of it in the output.
    Nor is what the output cannot show -- which program did an item, when, under which tile id
    or role. ``recorded`` names the records in the lines (e.g. "replayed tickets").
    """
    iters = config.iters_per_tile
    spans = collections.defaultdict(list)
    for r in records:
        begin, end = max(r.k_begin, 0), min(r.k_end, iters)
        if r.kernel == "gemm" and begin < end:
            spans[r.pid_m, r.pid_n].append((begin, end))
    lines = []
    for tile in range(config.total_tiles):
        place = tiling.grouped_tile(tile, config.num_pid_m, config.num_pid_n, config.group_m)
        ranges = sorted(spans.get(place, ()))
        where = f"tile {tile} (pid_m {place[0]}, pid_n {place[1]})"
        whole = ranges and all(span == (0, iters) for span in ranges)
        ends = [0] + [end for _, end in ranges]
        split = ends[-1] == iters and all(begin == ends[i] for i, (begin, _) in enumerate(ranges))
        if not ranges:
            lines.append(f"{recorded}: none covers {where}, which the output holds computed")
        elif not (whole or split):
            shown = ", ".join(f"[{begin}, {end})" for begin, end in ranges)
            lines.append(
                f"{recorded}: {where} over K-iterations {shown}; the output holds each of "
                f"[0, {iters}) summed once"
            )
    return lines


def _judged_against_output(config, finding, records, work_right, replayed=None):
    """``finding`` (a failed records check) with cause ``"trace misreports the work"`` when
    the run's work is right (``work_right``) but ``records``, or the records ``replayed``
    from the run's tickets, do not describe it (:func:`misdescribed_work`); else unchanged."""
    if finding.passed or not work_right:
        return finding
    lines = misdescribed_work(config, records)
    if replayed is not None:
        lines += misdescribed_work(config, replayed, "replayed tickets")
    if not lines:
        return finding
    shown = "; ".join(lines[:3]) + ("; ..." if len(lines) > 3 else "")
    reason = (
        "the output and partials equal refsim's bit for bit, but the trace records say "
        f"otherwise: {shown}"
    )
    return dataclasses.replace(
        finding, reasons=[reason, *finding.reasons][:5], cause=Cause.TRACE_MISREPORTS_WORK
    )


def _same_work(got, expected):
    """The "tile order" finding of work items ``got`` against ``expected`` (tuples alike)."""
    got, expected = sorted(got), sorted(expected)
    if got == expected:
        return Finding("tile order", True, [])
    first = next(
        (g, e) for g, e in zip(got + [None] * len(expected), expected + [None] * len(got)) if g != e
    )
    return Finding(
        "tile order",
        False,
        [f"first difference: kernel did {first[0]}, refsim planned {first[1]}"],
        Cause.WRONG_TILE_ORDER,
        {"kernel": first[0], "plan": first[1]},
    )


def check_work_stealing_tail(config, run, work_right=False):
    """Work stealing with a Stream-K tail: every program's tail work items (roles sk-owner and
    sk-contributor) are refsim's plan for its tail, (program, step, tile, pid_m, pid_n, k_begin,
    k_end, role) alike, its steps counted on from the tiles it stole. None without a tail.
    With ``work_right``, a difference is judged against the output as :func:`check_order`
    does."""
    if not config.scheme.dynamic or not config.sk_tiles:
        return None
    stolen = collections.Counter(r.program for r in run.records if r.role not in STREAM_K_ROLES)
    planned = [
        tuple(item._replace(step=stolen[item.program] + item.step))
        for item in refsim.build_plan(config).items()
    ]
    tail = [tuple(r[:8]) for r in run.records if r.role in STREAM_K_ROLES]
    return _judged_against_output(config, _same_work(tail, planned), run.records, work_right)


def check_work_stealing(config, run, work_right=False):
    """Every tile the counters hand out taken once, every ticket once, each tile from its
    counter's range (:meth:`refsim.GemmConfig.counter_range`) and the one its ticket names
    (:meth:`refsim.GemmConfig.ticket_tile`), by a program the counter map gives that counter
    (:meth:`refsim.GemmConfig.counter_of`), and every record where the tiling rules put it:
    ``(pid_m, pid_n)`` of its tile, the whole K-range. A Stream-K tail's records (roles
    sk-owner and sk-contributor) are :func:`check_work_stealing_tail`'s.

    The expected output of a work-stealing run is refsim's replay of its recorded tickets, so a
    wrong record can make it wrong too; :func:`check_exact` therefore accepts an output equal to
    refsim's plan (a stolen tile is whole: its value does not depend on who took it), and
    ``work_right`` says it did. With a right output the causes that claim lost or extra sums
    (a tile never written, a K-segment missing or doubled) are contradicted by it: records or
    replayed tickets that do not describe that output (:func:`misdescribed_work`) misreport the
    work (``"trace misreports the work"``); records that do describe it show right values
    computed by a schedule the counters' rules do not give (``"wrong tile order"``).
    """
    reasons = []
    misplaced = short = long = False
    stolen = [r for r in run.records if r.role not in STREAM_K_ROLES]
    for r in stolen:
        place = tiling.grouped_tile(r.tile, config.num_pid_m, config.num_pid_n, config.group_m)
        if (r.pid_m, r.pid_n) != place or (r.k_begin, r.k_end) != (0, config.iters_per_tile):
            misplaced |= (r.pid_m, r.pid_n) != place
            short |= r.k_begin > 0 or r.k_end < config.iters_per_tile
            long |= r.k_end - r.k_begin > config.iters_per_tile
            reasons.append(
                f"program {r.program}: tile {r.tile} recorded at (pid_m {r.pid_m}, pid_n "
                f"{r.pid_n}) over K-iterations [{r.k_begin}, {r.k_end}); the tiling puts it at "
                f"({place[0]}, {place[1]}) over [0, {config.iters_per_tile})"
            )
    tiles = collections.Counter(r.tile for r in stolen)
    missing = sorted(set(range(config.dp_tiles)) - set(tiles))
    repeated = sorted(t for t, c in tiles.items() if c > 1)
    if missing:
        reasons.append(f"tiles never taken: {missing[:10]}")
    if repeated:
        reasons.append(f"tiles taken twice: {repeated[:10]}")
    ranges = [config.counter_range(counter) for counter in range(config.num_counters)]
    tickets = collections.defaultdict(list)
    for r in stolen:
        if not 0 <= r.counter < config.num_counters:
            reasons.append(
                f"program {r.program}: tile {r.tile} drawn from counter {r.counter}, which does "
                f"not exist (the counters are 0..{config.num_counters - 1})"
            )
            continue
        begin, end = ranges[r.counter]
        named = config.ticket_tile(r.counter, r.ticket) if 0 <= r.ticket < end - begin else None
        if not begin <= r.tile < end or r.tile != named:
            names = f"names tile {named}" if named is not None else "does not hand it out"
            reasons.append(
                f"program {r.program}: tile {r.tile} is not ticket {r.ticket} of counter "
                f"{r.counter}, which {names} (its range is [{begin}, {end}))"
            )
        own = config.counter_of(r.program)
        if r.counter != own:
            reasons.append(f"program {r.program} drew from counter {r.counter}, not its own {own}")
        tickets[r.counter].append(r.ticket)
    for counter, (begin, end) in enumerate(ranges):
        if sorted(tickets[counter]) != list(range(end - begin)):
            used = sorted(tickets[counter])
            shown = ", ".join(map(str, used[:8])) + (", ..." if len(used) > 8 else "")
            reasons.append(
                f"counter {counter}: {len(used)} tickets used ({shown}), expected "
                f"0..{end - begin - 1}"
            )
    if missing:
        cause = Cause.TILE_NEVER_WRITTEN
    elif repeated:
        cause = Cause.DUPLICATED_K_SEGMENT
    elif misplaced:
        cause = Cause.TILE_WRITTEN_TO_WRONG_PLACE
    elif short:
        cause = Cause.MISSING_K_SEGMENT
    elif long:
        cause = Cause.DUPLICATED_K_SEGMENT
    else:
        cause = Cause.WRONG_TILE_ORDER if reasons else None
    finding = Finding("work-stealing invariants", not reasons, reasons[:5], cause)
    if finding.passed or not work_right:
        return finding
    tail = [r for r in run.records if r.role in STREAM_K_ROLES]
    replayed = ticket_records(config, stolen) + tail
    judged = _judged_against_output(config, finding, run.records, work_right, replayed)
    if judged.cause == Cause.TRACE_MISREPORTS_WORK:
        return judged
    return dataclasses.replace(finding, cause=Cause.WRONG_TILE_ORDER)


def check_determinism(kut, case, config, device, runs, exact_wrong=()):
    """``runs`` launches on the same random inputs, into an fp32 output (fp16/bf16 rounding
    could hide a difference): each equals refsim's prediction, and all give identical bits.

    In Triton's interpreter, which runs programs one at a time, every run after the first runs
    them in another seeded order (:func:`kernels.backend.program_order`), so a result that
    depends on which program arrives last changes there as it would on a GPU. Launches whose
    programs wait on one another keep the order they need.

    refsim's prediction: in the interpreter, for a kernel that declares ``block_dots``, its
    bits (:func:`refsim.numerics.compute` with the interpreter's block products, as
    :func:`check_random_bits` predicts them); otherwise the float64 product, within
    :func:`conformance.tolerances.tolerance_for` the inputs' and output's dtypes (NaN never
    within it). The first run off refsim is diagnosed tile by tile
    (:class:`conformance.diagnosis.RepeatedBitsDiagnoser` or
    :class:`conformance.diagnosis.RepeatedToleranceDiagnoser`): a NaN tile is "tile never
    written"; a tile nothing else explains and whose bits differ between the runs is
    "nondeterminism". Tiles the exact check found wrong (``exact_wrong``, tile ids) have their
    cause there. Runs that all meet refsim's prediction but differ from one another (within
    the tolerance, or on those tiles) are "nondeterminism".
    """
    inputs = random_inputs(case)
    outputs = []
    for i in range(runs):
        order = shuffled_order(i) if i else None
        with program_order(order):
            run, tensors = launch(
                kut, config, case, inputs, device, trace=False, out_dtype=torch.float32
            )
        outputs.append(run.output.detach().cpu().clone())
    bits = [output.view(torch.int32) for output in outputs]
    varies = np.zeros((config.m, config.n), dtype=bool)
    for other in bits[1:]:
        varies |= (other != bits[0]).numpy()
    a, b, bias = map(to_numpy, tensors)
    exact_bits = device == "cpu" and kut.block_dots
    if exact_bits:
        sim = refsim.simulate(config)
        expected, _ = numerics.compute(
            config, sim.records, sim.fixups, a, b, bias, products="interpreter"
        )
        bound = None
    else:
        sim = None
        expected = a @ b + (0.0 if bias is None else bias)
        bound = tolerance_for(tensors[0].dtype, torch.float32)
    known = set(exact_wrong)
    for i, output in enumerate(outputs):
        got = to_numpy(output)
        if bound is None:
            differs = got != expected
        else:
            differs = (relative_error(output, *tensors) > bound).numpy()
        wrong = [w for w in wrong_tiles(config, got, expected, differs) if w.tile not in known]
        if not wrong:
            continue
        if exact_bits:
            diagnoser = RepeatedBitsDiagnoser(config, got, expected, sim, tensors, varies)
        else:
            diagnoser = RepeatedToleranceDiagnoser(
                kut, case, config, got, expected, sim, device, tensors, varies
            )
        groups, info = diagnoser.run(wrong=wrong)
        how = ", programs in a shuffled order" if i else ""
        return grouped_finding("determinism", groups, info, note=f" (run {i}{how})")
    predicted = "refsim's bits" if exact_bits else "within tolerance of the float64 product"
    if varies.any():
        i, j = np.argwhere(varies)[0]
        run_index = next(k for k in range(1, runs) if not torch.equal(bits[k], bits[0]))
        return Finding(
            "determinism",
            False,
            [
                f"run {run_index} (programs in a shuffled order) differs from run 0, first at "
                f"({i}, {j}); every run is {predicted} outside the tiles the exact check "
                "found wrong"
            ],
            Cause.NONDETERMINISM,
        )
    return Finding("determinism", True, [f"{runs} runs identical, each {predicted}"])


def check_accuracy(kut, case, config, device):
    """Random inputs: within the dtype's tolerance of a float64 reference (computed on ``device``)."""
    run, (a, b, bias) = launch(kut, config, case, random_inputs(case), device, trace=False)
    error = relative_error(run.output, a, b, bias)
    worst = error.max().item()
    if worst <= TOLERANCE[case.dtype]:
        return Finding("accuracy", True, [f"worst relative error {worst:.3g}"])
    i, j = divmod(int(error.argmax().item()), config.n)
    return Finding(
        "accuracy",
        False,
        [
            f"relative error {worst:.3g} at ({i}, {j}) exceeds "
            f"{TOLERANCE[case.dtype]} for {case.dtype}"
        ],
        Cause.INACCURATE,
    )
