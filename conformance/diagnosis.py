"""The diagnosis: where an output first goes wrong, what refsim planned there, and why.

A cause is read off the data: the first wrong tile in tile order, a wrong partial's difference
to refsim's, refsim's output for an operand read with the wrong layout or an accumulator kept in
fp16/bf16 (:func:`decode_layout`, :func:`decode_precision`), and a second launch on
:func:`conformance.inputs.probe_inputs`, whose values say which K-iterations and how much bias
reached each output element. Every cause is one of :data:`CAUSES`.
"""

import itertools

import numpy as np
import torch

import refsim
from refsim import numerics, tiling

from .guards import GUARD, OutputLayout
from .harness import POISON, cast_to, launch, to_numpy
from .inputs import (
    BIAS_UNIT,
    iteration_sizes,
    probe_inputs,
    probed_iterations,
    reduce_in_order,
)

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


def misplaced_lines(config, got, expected, pid_m, pid_n):
    """``(axis, {line: source line})`` when every wrong row of tile ``(pid_m, pid_n)`` holds
    exactly the expected values of another output row over the tile's columns (``axis`` 0),
    or else every wrong column another column's over its rows (``axis`` 1): a row or column
    offset computed wrong, as in a banded reduction or a shifted epilogue; else None."""
    rows, cols = _tile_region(config, pid_m, pid_n)
    for axis, (lines, across) in enumerate(((rows, cols), (cols, rows))):
        mine = got[lines, across] if axis == 0 else got[across, lines].T
        wanted = expected[:, across] if axis == 0 else expected[across, :].T
        found = {}
        for offset, values in enumerate(mine):
            line = lines.start + offset
            if np.array_equal(values, wanted[line]):
                continue
            same = np.flatnonzero((wanted == values).all(axis=1))
            if not len(same):
                break
            found[line] = int(same[0])
        else:
            if found:
                return axis, found
    return None


def decode_probe(config, out, pid_m, pid_n):
    """``(cause, detail)`` read off tile ``(pid_m, pid_n)`` computed from
    ``probe_inputs(config, pid_n)``."""
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
    probed = probed_iterations(config, pid_n)[rows, cols]
    probes = probed < config.iters_per_tile  # elements that probe no iteration say nothing
    sizes = iteration_sizes(config)[np.where(probes, probed, 0)]
    multiplicity = p / np.broadcast_to(row_code * sizes, p.shape)
    missing = sorted({int(j) for j in probed[probes & (multiplicity == 0)]})
    doubled = sorted({int(j) for j in probed[probes & (multiplicity >= 2)]})
    if missing:
        return "missing K-segment", f"K-iterations {missing} contributed nothing"
    if doubled:
        return "duplicated K-segment", f"K-iterations {doubled} were added more than once"
    return "unclassified", "probe values are as expected: the fault needs other inputs"


def _storage_elements(tensor):
    """Every element of ``tensor``'s storage, as a 1-D tensor of its dtype."""
    flat = torch.empty(0, dtype=tensor.dtype, device=tensor.device)
    return flat.set_(tensor.untyped_storage())


def _effective(shape, strides):
    """``strides`` with those of length-1 dimensions zeroed (they address nothing)."""
    return tuple(s if size > 1 else 0 for size, s in zip(shape, strides))


def _assumed_strides(shape, strides):
    """Other strides a kernel may wrongly use for a tensor of ``shape`` stored with
    ``strides``: row-major or column-major without padding, the two swapped, and row-major or
    column-major with the real leading dimension -- the real layout's address map excluded."""
    if len(shape) == 1:
        return [(1,)] if shape[0] > 1 and strides[0] != 1 else []
    rows, columns = shape
    lead = max(strides)
    candidates = [(columns, 1), (1, rows), strides[::-1], (lead, 1), (1, lead)]
    seen = {_effective(shape, strides)}
    assumed = []
    for candidate in candidates:
        if _effective(shape, candidate) not in seen:
            seen.add(_effective(shape, candidate))
            assumed.append(tuple(candidate))
    return assumed


def describe_layout(shape, strides):
    """A tensor layout in words, e.g. ``"column-major with leading dimension 67 (strides (1,
    67))"``."""
    if len(shape) == 1:
        return f"stride {strides[0]}"
    (rows, columns), (s0, s1) = shape, strides
    if s1 == 1 and s0 >= columns:
        words = "row-major" + (f" with leading dimension {s0}" if s0 != columns else "")
    elif s0 == 1 and s1 >= rows:
        words = "column-major" + (f" with leading dimension {s1}" if s1 != rows else "")
    else:
        return f"strides {tuple(strides)}"
    return f"{words} (strides {tuple(strides)})"


def _misread(tensor, strides):
    """``tensor`` as a kernel reads it with ``strides`` from its own storage; None where that
    would reach past the storage."""
    reach = tensor.storage_offset() + sum((n - 1) * s for n, s in zip(tensor.shape, strides))
    elements = _storage_elements(tensor)
    if reach >= elements.numel():
        return None
    return torch.as_strided(elements, tensor.shape, strides, tensor.storage_offset())


def _misplaced_output(output_layout, expected, strides):
    """The output a kernel leaves when it stores ``expected`` with ``strides`` from C's first
    element instead of the real ones (None where that reaches past the storage or writes an
    element twice); guard and untouched elements as the harness left them."""
    rows, columns = expected.shape
    row_major = strides[1] == 1 and strides[0] >= columns
    column_major = strides[0] == 1 and strides[1] >= rows
    if not (row_major or column_major):
        return None  # such stores would overlap
    storage = np.full(output_layout.shape, GUARD)
    output_layout.view(storage)[...] = np.nan
    flat = storage.reshape(-1)
    reach = output_layout.offset + (rows - 1) * strides[0] + (columns - 1) * strides[1]
    if reach >= flat.size:
        return None
    positions = output_layout.offset + np.add.outer(
        np.arange(rows) * strides[0], np.arange(columns) * strides[1]
    )
    flat[positions] = expected
    return output_layout.view(storage)


def decode_layout(config, pid_m, pid_n, got, expected, tensors, output_layout, out_dtype):
    """``("operand layout ignored", detail)`` when the output equals refsim's with one operand
    read with other strides from its own storage (:func:`_assumed_strides`), or C stored with
    other strides; else None.

    A, B and the bias are compared on the first wrong tile ``(pid_m, pid_n)`` (refsim's values
    with the misread operand, accumulated in K order: integer inputs make every order exact);
    C on the whole output ``got``, where misplaced stores leave NaN and guard values.
    """
    region = _tile_region(config, pid_m, pid_n)
    if np.isnan(got[region]).all():
        return None  # a tile never written tells nothing about how it would have been read
    arrays = [to_numpy(t) for t in tensors]
    for name, index in (("A", 0), ("B", 1), ("the bias", 2)):
        operand = tensors[index]
        if operand is None:
            continue
        for strides in _assumed_strides(tuple(operand.shape), operand.stride()):
            misread = _misread(operand, strides)
            if misread is None:
                continue
            inputs = list(arrays)
            inputs[index] = to_numpy(misread)
            tile_math = numerics.TileMath(config, *inputs)
            acc = tile_math.accumulate(pid_m, pid_n, 0, config.iters_per_tile)
            model = cast_to(tile_math.with_bias(acc, pid_n), out_dtype)
            if np.array_equal(got[region], model):
                shape = tuple(operand.shape)
                return "operand layout ignored", (
                    f"{name} read as {describe_layout(shape, strides)}, but it is "
                    f"{describe_layout(shape, operand.stride())}"
                )
    shape = (config.m, config.n)
    for strides in _assumed_strides(shape, output_layout.strides):
        model = _misplaced_output(output_layout, expected, strides)
        if model is not None and np.array_equal(got, model, equal_nan=True):
            return "operand layout ignored", (
                f"C written as {describe_layout(shape, strides)}, but it is "
                f"{describe_layout(shape, output_layout.strides)}"
            )
    return None


def rounded_accumulator(config, tile_math, segments, pid_m, pid_n):
    """Tile ``(pid_m, pid_n)``'s fp32 value (bias included) when every K-segment's accumulator
    is rounded to the input dtype after each K-iteration: ``acc = round(acc + A_k @ B_k)``, the
    segments' sums then added in fp32 in K order."""
    rows, cols = tile_math.region(pid_m, pid_n)
    total = np.zeros((rows.stop - rows.start, cols.stop - cols.start), dtype=np.float32)
    for k_begin, k_end in sorted(segments):
        acc = np.zeros_like(total)
        for k in range(k_begin, k_end):
            step = tile_math.accumulate(pid_m, pid_n, k, k + 1)
            acc = numerics.round_to_dtype(acc + step, config.dtype)
        total = total + acc
    return tile_math.with_bias(total, pid_n)


def decode_precision(config, sim, tile, pid_m, pid_n, got, tensors, out_dtype):
    """``("accumulator precision", detail)`` when the first wrong tile (``tile`` at ``(pid_m,
    pid_n)``) equals refsim's plan for it computed with an fp16/bf16 accumulator
    (:func:`rounded_accumulator`); else None."""
    if config.dtype not in ("fp16", "bf16"):
        return None  # rounding to fp32 changes nothing
    region = _tile_region(config, pid_m, pid_n)
    tile_math = numerics.TileMath(config, *map(to_numpy, tensors))
    segments = [(k0, k1) for _, k0, k1, _ in plan_segments(config, sim, tile)]
    if all(k1 - k0 < 2 for k0, k1 in segments):
        return None  # one rounding per segment: a bias added after the cast looks the same
    model = cast_to(rounded_accumulator(config, tile_math, segments, pid_m, pid_n), out_dtype)
    if not np.array_equal(got[region], model):
        return None
    return "accumulator precision", (
        f"the accumulator is rounded to {config.dtype} after every K-iteration, not kept in fp32"
    )


def decode_bias_after_cast(config, pid_m, pid_n, got, tensors, out_dtype):
    """``("bias added after the cast", detail)`` when the first wrong tile ``(pid_m, pid_n)``
    of an fp16/bf16 output equals refsim's bias-free value cast, plus the bias, cast again
    (:func:`decode_epilogue`); else None."""
    tile_math = numerics.TileMath(config, *map(to_numpy, tensors))
    if tile_math.bias is None or out_dtype not in (torch.float16, torch.bfloat16):
        return None
    rows, cols = _tile_region(config, pid_m, pid_n)
    unbiased = tile_math.accumulate(pid_m, pid_n, 0, config.iters_per_tile)
    decoded = decode_epilogue(got[rows, cols], unbiased, tile_math.bias[cols], out_dtype)
    return decoded if decoded[0] != "unclassified" else None


def diagnose(kut, case, config, got, expected, sim, device, tensors=None, out_dtype=None):
    """The first wrong tile, refsim's plan for it, and a cause decoded from the data.

    With the run's input ``tensors`` and output dtype, an operand read (or C written) with the
    wrong layout, an accumulator kept in the input dtype and a bias added after the cast are
    recognised before the probe launch (:func:`decode_layout`, :func:`decode_precision`,
    :func:`decode_bias_after_cast`): the integer inputs' sums lie above 2048, where fp16 and
    bf16 round.
    """
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
    moved = misplaced_lines(config, got, expected, pid_m, pid_n)
    if moved is not None:
        axis, sources = moved
        name = ("row", "column")[axis]
        shown = ", ".join(
            f"{name} {line} holds {name} {src}" for line, src in list(sources.items())[:4]
        )
        info["detail"] = f"{len(sources)} {name}s of the tile hold other {name}s' values: {shown}"
        return "tile written to the wrong place", info
    if tensors is not None:
        output_layout = OutputLayout.of(config, case)
        decoded = (
            decode_layout(config, pid_m, pid_n, got, expected, tensors, output_layout, out_dtype)
            or decode_precision(config, sim, tile, pid_m, pid_n, got, tensors, out_dtype)
            or decode_bias_after_cast(config, pid_m, pid_n, got, tensors, out_dtype)
        )
        if decoded is not None:
            info["detail"] = decoded[1]
            return decoded[0], info
    probe = probe_inputs(config, pid_n)
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
