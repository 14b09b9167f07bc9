"""The diagnosis: where an output first goes wrong, what refsim planned there, and why.

A cause is read off the data: the first wrong tile in tile order, a wrong partial's difference
to refsim's, and a second launch on :func:`conformance.inputs.probe_inputs`, whose values say
which K-iterations and how much bias reached each output element. Every cause is one of
:data:`CAUSES`.
"""

import itertools

import numpy as np
import torch

import refsim
from refsim import numerics, tiling

from .harness import POISON, launch, to_numpy
from .inputs import BIAS_UNIT, probe_inputs, reduce_in_order

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
    "wrong addition order",
    "bias added after the cast",
    "partial read before its release",
    "flag held a stale epoch",
    "write outside the tile or matrix",
    "operand layout ignored",
    "accumulator precision",
    "record overrun",
    "kernel crashed",
    "kernel hung",
    "inaccurate",
    "unclassified",
)


def _tile_region(config, pid_m, pid_n):
    return (
        slice(pid_m * config.block_m, min(config.m, (pid_m + 1) * config.block_m)),
        slice(pid_n * config.block_n, min(config.n, (pid_n + 1) * config.block_n)),
    )


def _tiles_in_order(config):
    for tile in range(config.total_tiles):
        yield tile, tiling.grouped_tile(tile, config.num_pid_m, config.num_pid_n, config.group_m)


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
    run, _ = launch(kut, config, case, probe, device, trace=False, out_dtype=torch.float32)
    cause, detail = decode_probe(config, to_numpy(run.output), pid_m, pid_n)
    if cause == "unclassified" and np.isnan(got[element]):
        cause, detail = "tile never written", "the element still holds NaN"
    info["detail"] = detail
    return cause, info


def partial_cause(math, config, partial, got):
    """``(cause, detail)`` of one wrong partial, decoded from its difference to refsim's.

    ``math`` is a :class:`refsim.numerics.TileMath` over the run's inputs.
    """
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


def decode_order(config, got, inputs, tiles, segments):
    """``(cause, info)`` for an output of order-revealing ``inputs`` (numpy ``a, b, bias``) that
    differs from refsim's: the first wrong tile among ``tiles``, and the orders of its partials
    that give the kernel's values (``"wrong addition order"``), if any does.

    The two first partials commute, so orders come in pairs that give the same bits; all that
    match are reported.
    """
    tile_math = numerics.TileMath(config, *inputs)
    for tile in tiles:
        pid_m, pid_n = tiling.grouped_tile(tile, config.num_pid_m, config.num_pid_n, config.group_m)
        rows, cols = _tile_region(config, pid_m, pid_n)
        n = len(segments[tile])
        predicted = tuple(range(n))
        if np.array_equal(
            got[rows, cols], reduce_in_order(tile_math, pid_m, pid_n, segments[tile], predicted)
        ):
            continue
        matches = [
            order
            for order in itertools.permutations(range(n))
            if np.array_equal(
                got[rows, cols], reduce_in_order(tile_math, pid_m, pid_n, segments[tile], order)
            )
        ]
        info = {
            "tile": tile,
            "pid_m": pid_m,
            "pid_n": pid_n,
            "plan": plan_segments(config, None, tile),
        }
        if not matches:
            info["detail"] = (
                f"tile {tile}: no order of its {n} partials {segments[tile]} gives the "
                "kernel's values"
            )
            return "unclassified", info
        info["orders"] = matches
        shown = " or ".join(str(order) for order in matches)
        info["detail"] = f"tile {tile}: partials added as {shown}, refsim predicts {predicted}"
        return "wrong addition order", info
    return "unclassified", {"detail": "every covered split tile is right; another tile differs"}


def decode_epilogue(got, expected_unbiased, bias, dtype):
    """``(cause, detail)`` for a wrong fp16/bf16 output of :func:`conformance.inputs.epilogue_inputs`:
    ``"bias added after the cast"`` when it equals the bias-free fp32 output cast, plus the bias,
    cast again."""
    first = torch.from_numpy(np.asarray(expected_unbiased, dtype=np.float32)).to(dtype)
    twice = (first.float() + torch.from_numpy(np.asarray(bias, dtype=np.float32))).to(dtype)
    if np.array_equal(got, twice.double().numpy()):
        return "bias added after the cast", "the output is the cast sum, plus the bias, cast again"
    return "unclassified", "the output is neither rounded once nor rounded twice"
