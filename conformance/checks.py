"""The checks: each returns a Finding with reasons, and a classified cause when it fails.

They launch the kernel under test through :mod:`conformance.harness`, compare it with refsim,
and leave explaining a difference to :mod:`conformance.diagnosis`.
"""

import collections
import dataclasses

import numpy as np
import torch

import refsim
from refsim import numerics, tiling

from .diagnosis import decode_epilogue, decode_order, diagnose, first_wrong_tile, partial_cause
from .harness import cast_to, expected_output, launch, to_numpy
from .inputs import epilogue_inputs, integer_inputs, order_inputs, random_inputs
from .tolerances import TOLERANCE, relative_error


@dataclasses.dataclass
class Finding:
    """One check's verdict: ``reasons`` say what was seen, ``cause`` (one of
    :data:`conformance.diagnosis.CAUSES`) why it failed, ``diagnosis`` where."""

    check: str
    passed: bool
    reasons: list
    cause: str = None
    diagnosis: dict = None


def check_exact(kut, case, config, device):
    """Integer inputs: output equal to refsim's predicted output after the cast, bit for bit."""
    run, tensors = launch(kut, config, case, integer_inputs(case), device, trace=True)
    expected32, sim = expected_output(config, run, tensors)
    got = to_numpy(run.output)
    expected = cast_to(expected32, run.output.dtype)
    if first_wrong_tile(config, got, expected) is None:
        return Finding("exact output", True, []), run, tensors, sim
    cause, info = diagnose(kut, case, config, got, expected, sim, device)
    reason = (
        f"tile {info['tile']} (pid_m {info['pid_m']}, pid_n {info['pid_n']}) first differs "
        f"at {tuple(info['element'])}: {info['got']} != {info['expected']}"
    )
    return Finding("exact output", False, [reason], cause, info), run, tensors, sim


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


def check_addition_order(kut, case, config, device):
    """Order-revealing inputs (:func:`conformance.inputs.order_inputs`) into an fp32 output: equal
    to refsim's output bit for bit, so split tiles added their partials in refsim's order.

    None where nothing is ordered: no split tile the inputs cover, or the atomic fixup (whose
    order is the hardware's by design).
    """
    if config.fixup == "atomic" and config.strategy == "streamk":
        return None
    inputs = order_inputs(config, case.seed)
    if not inputs.tiles:
        return None
    numpy_inputs = (inputs.a, inputs.b, inputs.bias if case.bias else None)
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
    return Finding("addition order", False, [info["detail"]], cause, info)


def check_epilogue(kut, case, config, device):
    """fp16/bf16 with a bias: outputs where a second rounding shows
    (:func:`conformance.inputs.epilogue_inputs`) equal refsim's fp32 output cast once."""
    if case.dtype not in ("fp16", "bf16") or not case.bias:
        return None
    run, tensors = launch(kut, config, case, epilogue_inputs(case), device, trace=False)
    expected32, _ = expected_output(config, run, tensors)
    got = to_numpy(run.output)
    if first_wrong_tile(config, got, cast_to(expected32, run.output.dtype)) is None:
        return Finding("epilogue rounding", True, ["bias added before the one cast"])
    a, b, bias = map(to_numpy, tensors)
    unbiased = refsim.simulate(config, a=a, b=b).output
    cause, detail = decode_epilogue(got, unbiased, bias, run.output.dtype)
    return Finding("epilogue rounding", False, [detail], cause)


def check_memory_order(run):
    """Every partial a program stores is followed by a release (a flag published or a counter
    arrived at) of that same program, so no reader can be told "ready" before the data is.

    Reads ``run.events``: ``(program, kind, index)`` in each program's order, kinds ``store``,
    ``publish`` and ``arrive``. The order is the kernel's program order, so the check does not
    depend on a race showing up: it holds on a GPU exactly as in the interpreter.
    """
    events = getattr(run, "events", None)
    if events is None:
        return None
    pending = {}
    released = collections.defaultdict(list)
    for program, kind, index in events:
        if kind == "store":
            pending.setdefault(program, []).append(index)
        else:
            pending.pop(program, None)
            released[program].append((kind, index))
    if not pending:
        return Finding("memory order", True, [f"{len(events)} events, every store released"])
    late = {p: slots for p, slots in pending.items() if released[p]}
    reasons = [
        f"program {p} stored partial slot(s) {slots} after its last release "
        f"({released[p][-1][0]} {released[p][-1][1]})"
        for p, slots in sorted(late.items())
    ]
    reasons += [
        f"program {p} stored partial slot(s) {slots} and never released them"
        for p, slots in sorted(pending.items())
        if p not in late
    ]
    cause = "flag set before its partial is stored" if late else "partial never released"
    return Finding("memory order", False, reasons[:5], cause)


def check_order(config, run, sim):
    """Static strategies: each program's (tile, k_begin, k_end, role) sequence is refsim's."""
    if config.strategy == "work_stealing":
        return check_work_stealing(config, run)
    key = lambda r: (
        r.kernel,
        r.program,
        r.step,
        r.tile,
        r.pid_m,
        r.pid_n,
        r.k_begin,
        r.k_end,
        r.role,
    )
    got = sorted(map(key, run.records))
    expected = sorted(map(key, sim.records))
    if got == expected:
        return Finding("tile order", True, [])
    first = next(
        (g, e) for g, e in zip(got + [None] * len(expected), expected + [None] * len(got)) if g != e
    )
    return Finding(
        "tile order",
        False,
        [f"first difference: kernel did {first[0]}, refsim planned {first[1]}"],
        "wrong tile order",
        {"kernel": first[0], "plan": first[1]},
    )


def check_work_stealing(config, run):
    """Every tile once, every ticket once, each tile from its counter's range, and every record
    where the tiling rules put it: ``(pid_m, pid_n)`` of its tile, the whole K-range."""
    reasons = []
    misplaced = short = long = False
    for r in run.records:
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
    tiles = collections.Counter(r.tile for r in run.records)
    missing = sorted(set(range(config.total_tiles)) - set(tiles))
    repeated = sorted(t for t, c in tiles.items() if c > 1)
    if missing:
        reasons.append(f"tiles never taken: {missing[:10]}")
    if repeated:
        reasons.append(f"tiles taken twice: {repeated[:10]}")
    tickets = collections.defaultdict(list)
    for r in run.records:
        begin, end = tiling.ws_counter_range(r.counter, config.total_tiles, config.num_counters)
        if not begin <= r.tile < end or r.tile != begin + r.ticket:
            reasons.append(
                f"program {r.program}: tile {r.tile} is not ticket {r.ticket} of "
                f"counter {r.counter}'s range [{begin}, {end})"
            )
        if r.counter != tiling.ws_counter(r.program, *config.counter_layout):
            reasons.append(
                f"program {r.program} drew from counter {r.counter}, not its own "
                f"{tiling.ws_counter(r.program, *config.counter_layout)}"
            )
        tickets[r.counter].append(r.ticket)
    for counter in range(config.num_counters):
        begin, end = tiling.ws_counter_range(counter, config.total_tiles, config.num_counters)
        if sorted(tickets[counter]) != list(range(end - begin)):
            used = sorted(tickets[counter])
            shown = ", ".join(map(str, used[:8])) + (", ..." if len(used) > 8 else "")
            reasons.append(
                f"counter {counter}: {len(used)} tickets used ({shown}), expected "
                f"0..{end - begin - 1}"
            )
    if missing:
        cause = "tile never written"
    elif repeated:
        cause = "duplicated K-segment"
    elif misplaced:
        cause = "tile written to the wrong place"
    elif short:
        cause = "missing K-segment"
    elif long:
        cause = "duplicated K-segment"
    else:
        cause = "wrong tile order" if reasons else None
    return Finding("work-stealing invariants", not reasons, reasons[:5], cause)


def check_determinism(kut, case, config, device, runs):
    """``runs`` launches on the same random inputs give identical bits."""
    first = None
    for i in range(runs):
        run, _ = launch(kut, config, case, random_inputs(case), device, trace=False)
        bits = run.output.detach().cpu().clone()
        if first is None:
            first = bits
        elif not torch.equal(
            bits.view(torch.int16 if bits.element_size() == 2 else torch.int32),
            first.view(torch.int16 if first.element_size() == 2 else torch.int32),
        ):
            differ = (bits != first).nonzero()[0].tolist()
            return Finding(
                "determinism",
                False,
                [f"run {i} differs from run 0, first at {tuple(differ)}"],
                "nondeterminism",
            )
    return Finding("determinism", True, [f"{runs} runs identical"])


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
        "inaccurate",
    )
