"""The checks: each returns a Finding with reasons, and a classified cause when it fails.

A kernel under test is any callable ``run(config, a, b, bias=None, out=None, trace=False)``
returning an object with ``output`` (and, when traced, ``records`` -- refsim WorkRecords --
and optionally ``partials``); see :class:`KernelUnderTest`.
"""

import collections
import dataclasses
import math

import numpy as np
import torch

import refsim
from refsim import numerics, tiling

from .inputs import BIAS_UNIT, TORCH_DTYPES, as_tensors, integer_inputs, probe_inputs, random_inputs

# Random inputs: |out - ref| <= TOLERANCE[dtype] * (|a| @ |b| + |bias|), ref in float64 from the
# dtype-rounded inputs (fp32 accumulation; fp16/bf16 outputs are rounded once more).
TOLERANCE = {"fp32": 2e-6, "fp16": 1e-3, "bf16": 8e-3}
# What the checks fill scratch memory with before a run: a stale read shows up as this value.
POISON = 2.0**40

CAUSES = (
    "missing K-segment",
    "duplicated K-segment",
    "bias missing",
    "bias applied more than once",
    "bias along the wrong axis",
    "tile written to the wrong place",
    "tile never written",
    "wrong tile order",
    "nondeterminism",
    "partial read before it was written",
    "flag set before its partial is stored",
    "partial never released",
    "inaccurate",
    "unclassified",
)


@dataclasses.dataclass
class KernelUnderTest:
    """A kernel and what the suite may know about it.

    ``run(config, a, b, bias=None, out=None, trace=False)`` must compute ``a @ b + bias`` into
    ``out`` following ``config``. ``partial_slot(config, program, tile)`` (optional) maps refsim's
    partials to rows of the returned ``partials``; ``poison(device)`` (optional) fills its scratch
    memory with :data:`POISON`. A traced run may also return ``events``, the order in which each
    program stored partials and released them (see :func:`check_memory_order`).
    """

    name: str
    run: object
    partial_slot: object = None
    poison: object = None


@dataclasses.dataclass
class Finding:
    check: str
    passed: bool
    reasons: list
    cause: str = None
    diagnosis: dict = None


def _numpy(t):
    return None if t is None else t.detach().double().cpu().numpy()


def _tile_region(config, pid_m, pid_n):
    return (
        slice(pid_m * config.block_m, min(config.m, (pid_m + 1) * config.block_m)),
        slice(pid_n * config.block_n, min(config.n, (pid_n + 1) * config.block_n)),
    )


def _tiles_in_order(config):
    for tile in range(config.total_tiles):
        yield tile, tiling.grouped_tile(tile, config.num_pid_m, config.num_pid_n, config.group_m)


def _launch(kut, config, case, inputs, device, trace, out_dtype=None):
    a, b, bias = as_tensors(case, *inputs, device)
    dtype = out_dtype or TORCH_DTYPES[case.dtype]
    out = torch.full((config.m, config.n), float("nan"), dtype=dtype, device=device)
    if kut.poison is not None:
        kut.poison(torch.device(device))
    run = kut.run(config, a, b, bias, out=out, trace=trace)
    return run, (a, b, bias)


def expected_output(config, run, tensors):
    """refsim's output for these inputs: its plan, or for work stealing the observed tickets."""
    a, b, bias = map(_numpy, tensors)
    if config.strategy == "work_stealing":
        if getattr(run, "records", None) is None:  # untraced: integer inputs are exact anyway
            return a @ b + (0.0 if bias is None else bias), None
        replayed, _ = numerics.compute(config, run.records, [], a, b, bias)
        return replayed, None
    sim = refsim.simulate(config, a=a, b=b, bias=bias)
    return sim.output, sim


def _cast(values, dtype):
    return torch.from_numpy(np.asarray(values, dtype=np.float32)).to(dtype).double().numpy()


def first_wrong_tile(config, got, expected):
    """``(tile, pid_m, pid_n, (i, j))`` of the first differing tile in tile order, or None."""
    for tile, (pid_m, pid_n) in _tiles_in_order(config):
        rows, cols = _tile_region(config, pid_m, pid_n)
        bad = np.argwhere(got[rows, cols] != expected[rows, cols])  # NaN never matches
        if len(bad):
            i, j = bad[0]
            return tile, pid_m, pid_n, (rows.start + int(i), cols.start + int(j))
    return None


def plan_segments(config, sim, tile):
    """The (program, k_begin, k_end, role) refsim's plan gives a tile."""
    if sim is None:
        sim = refsim.simulate(config)
    return [
        (r.program, r.k_begin, r.k_end, r.role)
        for r in sim.records
        if r.tile == tile and r.kernel == "gemm"
    ]


def _wrong_place(config, got, expected, tile, pid_m, pid_n):
    """The tile whose expected values the wrong tile holds, if any."""
    rows, cols = _tile_region(config, pid_m, pid_n)
    block = got[rows, cols]
    for other, (om, on) in _tiles_in_order(config):
        if other == tile:
            continue
        o_rows, o_cols = _tile_region(config, om, on)
        candidate = expected[o_rows, o_cols]
        if candidate.shape == block.shape and np.array_equal(candidate, block):
            return other
    return None


def decode_probe(config, out, pid_m, pid_n):
    """``(cause, detail)`` read off a tile computed from :func:`probe_inputs`."""
    rows, cols = _tile_region(config, pid_m, pid_n)
    values = out[rows, cols]
    if np.isnan(values).all():
        return "tile never written", "the tile still holds the NaN the output was filled with"
    if (np.abs(values[~np.isnan(values)]) >= POISON / 2).any():
        return (
            "partial read before it was written",
            "the tile contains the poison value the partial workspace was filled with",
        )
    m = np.arange(rows.start, rows.stop)[:, None]
    n = np.arange(cols.start, cols.stop)[None, :]
    q = np.floor(values / BIAS_UNIT)
    p = values - BIAS_UNIT * q
    column_code = 1 + n % 3
    row_code = 1 + m % 3
    if not np.array_equal(q, np.broadcast_to(column_code, q.shape)):
        if (q == 0).all():
            return "bias missing", "no bias in the tile's values"
        row_bias = np.where(m < config.n, row_code, 0)
        if np.array_equal(q, np.broadcast_to(row_bias, q.shape)):
            return "bias along the wrong axis", "the bias added is bias[row], not bias[column]"
        times = q / column_code
        if np.all(times == np.round(times)) and times.min() >= 2:
            return (
                "bias applied more than once",
                f"bias added {int(times.min())} to {int(times.max())} times",
            )
        return "unclassified", f"bias part of the values {np.unique(q)[:6]} is unexplained"
    iters = config.iters_per_tile
    counts = np.minimum(config.block_k, config.k - np.arange(iters) * config.block_k)
    multiplicity = p / (row_code * counts[n % iters])
    column_iterations = (n % iters).ravel()
    missing = sorted(
        {int(it) for it, col in zip(column_iterations, multiplicity.T) if np.any(col == 0)}
    )
    doubled = sorted(
        {int(it) for it, col in zip(column_iterations, multiplicity.T) if np.any(col >= 2)}
    )
    if missing:
        return "missing K-segment", f"K-iterations {missing} contributed nothing"
    if doubled:
        return "duplicated K-segment", f"K-iterations {doubled} were added more than once"
    return "unclassified", "probe values are as expected: the fault needs other inputs"


def diagnose(kut, case, config, got, expected, sim, device):
    """The first wrong tile, refsim's plan for it, and a cause decoded from the data."""
    tile, pid_m, pid_n, element = first_wrong_tile(config, got, expected)
    info = {
        "tile": tile,
        "pid_m": pid_m,
        "pid_n": pid_n,
        "element": list(element),
        "got": float(got[element]),
        "expected": float(expected[element]),
        "plan": plan_segments(config, sim, tile),
    }
    rows, cols = _tile_region(config, pid_m, pid_n)
    if (np.abs(np.nan_to_num(got[rows, cols])) >= POISON / 2).any():
        info["detail"] = "the tile contains the poison value the partial workspace was filled with"
        return "partial read before it was written", info
    other = _wrong_place(config, got, expected, tile, pid_m, pid_n)
    if other is not None:
        info["holds_tile"] = other
        return "tile written to the wrong place", info
    probe = probe_inputs(config)
    run, _ = _launch(kut, config, case, probe, device, trace=False, out_dtype=torch.float32)
    cause, detail = decode_probe(config, _numpy(run.output), pid_m, pid_n)
    if cause == "unclassified" and np.isnan(got[element]):
        cause, detail = "tile never written", "the element still holds NaN"
    info["detail"] = detail
    return cause, info


def check_exact(kut, case, config, device):
    """Integer inputs: output equal to refsim's predicted output after the cast, bit for bit."""
    run, tensors = _launch(kut, config, case, integer_inputs(case), device, trace=True)
    expected32, sim = expected_output(config, run, tensors)
    got = _numpy(run.output)
    expected = _cast(expected32, run.output.dtype)
    if first_wrong_tile(config, got, expected) is None:
        return Finding("exact output", True, []), run, tensors, sim
    cause, info = diagnose(kut, case, config, got, expected, sim, device)
    reason = (
        f"tile {info['tile']} (pid_m {info['pid_m']}, pid_n {info['pid_n']}) first differs "
        f"at {tuple(info['element'])}: {info['got']} != {info['expected']}"
    )
    return Finding("exact output", False, [reason], cause, info), run, tensors, sim


def _partial_cause(math, config, partial, got):
    """``(cause, detail)`` of one wrong partial, decoded from its difference to refsim's."""
    diff = got - partial.value
    if np.all(np.abs(got) >= POISON / 2):
        return "missing K-segment", "the slot still holds POISON: the partial was never stored"
    pid_m, pid_n = tiling.grouped_tile(
        partial.tile, config.num_pid_m, config.num_pid_n, config.group_m
    )
    if math.bias is not None:
        bias = np.broadcast_to(math.with_bias(np.zeros_like(diff), pid_n), diff.shape)
        if np.array_equal(diff, bias):
            return "bias applied more than once", "the partial already includes the bias"
    for k in range(config.iters_per_tile):
        product = math.accumulate(pid_m, pid_n, k, k + 1)
        if partial.k_begin <= k < partial.k_end and np.array_equal(diff, -product):
            return "missing K-segment", f"K-iteration {k} is missing from it"
        if np.array_equal(diff, product):
            return "duplicated K-segment", f"K-iteration {k} is in it once too often"
    return "unclassified", "no single K-iteration or bias explains the difference"


def check_partials(kut, config, run, sim, tensors):
    """Every partial refsim predicts equals the kernel's, bit for bit; a difference is decoded
    into a missing or extra K-iteration, or a bias that a partial should not hold."""
    if kut.partial_slot is None or getattr(run, "partials", None) is None or sim is None:
        return None
    math = numerics.TileMath(config, *map(_numpy, tensors))
    reasons, causes = [], []
    for p in sim.partials:
        slot = kut.partial_slot(config, p.program, p.tile)
        rows, cols = p.value.shape
        got = run.partials[slot, :rows, :cols].double().cpu().numpy()
        if not np.array_equal(got, p.value):
            cause, detail = _partial_cause(math, config, p, got)
            causes.append(cause)
            reasons.append(
                f"partial of program {p.program} for tile {p.tile} (K-iterations "
                f"{p.k_begin}..{p.k_end}) differs in slot {slot}: {detail}"
            )
    return Finding("partials", not reasons, reasons[:5], causes[0] if causes else None)


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
    """Every tile once, every ticket once, each tile from its counter's range."""
    reasons = []
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
    cause = (
        "tile never written"
        if missing
        else ("duplicated K-segment" if repeated else ("wrong tile order" if reasons else None))
    )
    return Finding("work-stealing invariants", not reasons, reasons[:5], cause)


def check_determinism(kut, case, config, device, runs):
    """``runs`` launches on the same random inputs give identical bits."""
    first = None
    for i in range(runs):
        run, _ = _launch(kut, config, case, random_inputs(case), device, trace=False)
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
    inputs = random_inputs(case)
    run, (a, b, bias) = _launch(kut, config, case, inputs, device, trace=False)
    a64, b64 = a.double(), b.double()
    ref = a64 @ b64
    scale = a64.abs() @ b64.abs()
    if bias is not None:
        ref, scale = ref + bias.double(), scale + bias.double().abs()
    error = ((run.output.double() - ref).abs() / (scale + 1e-30)).nan_to_num(nan=math.inf)
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
