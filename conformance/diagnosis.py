"""The diagnosis: where an output first goes wrong, what refsim planned there, and why.

A cause is read off the data: the first wrong tile in tile order, a wrong partial's difference
to refsim's, refsim's output for an operand read with the wrong layout or an accumulator kept in
fp16/bf16 (:func:`decode_layout`, :func:`decode_precision`), and a second launch on
:func:`conformance.inputs.probe_inputs`, whose values say which K-iterations and how much bias
reached each output element. Every cause is a :class:`conformance.causes.Cause`
(:data:`CAUSES` in rank order).
"""

import dataclasses
import itertools

import numpy as np
import torch

import refsim
from refsim import numerics, tiling

from .causes import CAUSE_RANK, Cause
from .causes import CAUSES as CAUSES  # re-exported: the package and tests import it here
from .environment import backend_limitation
from .guards import GUARD, OutputLayout
from .harness import POISON, cast_to, launch, to_numpy
from .inputs import (
    BIAS_UNIT,
    ORDER_MAX_SEGMENTS,
    integer_inputs,
    iteration_sizes,
    probe_inputs,
    probe_layout,
    probed_iterations,
    reduce_in_order,
)

# A row or column is matched to another line's values only when it holds at least this many.
MIN_LINE_ELEMENTS = 2
# Wrong tiles diagnosed with every decoder; the rest are tried against the causes found on them.
MAX_DIAGNOSED_TILES = 32
# What the output is filled with for the relaunch that tells an output added into without being
# initialised from a tile never written (the other fill is 0): exact in fp32 with any integer
# sum the exact inputs give, and far from them.
UNINITIALISED_FILL = 2.0**20


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
    offset computed wrong, as in a banded reduction or a shifted epilogue; else None. Lines
    shorter than :data:`MIN_LINE_ELEMENTS` (the rows of an N = 1 tile) are never matched."""
    rows, cols = _tile_region(config, pid_m, pid_n)
    for axis, (lines, across) in enumerate(((rows, cols), (cols, rows))):
        if across.stop - across.start < MIN_LINE_ELEMENTS:
            continue  # a line of one value matches some other line by coincidence
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
    ``probe_inputs(config, pid_n)``; ``(cause, detail, alternatives)`` where the tile's values
    fit other causes as well (see :func:`group_causes`). A bias count above the grid's
    programs + 1 is not read as the bias applied more than once."""
    rows, cols = _tile_region(config, pid_m, pid_n)
    values = out[rows, cols]
    if np.isnan(values).all():
        return Cause.TILE_NEVER_WRITTEN, "the tile still holds the NaN the output was filled with"
    if (np.abs(values[~np.isnan(values)]) >= POISON / 2).any():
        return (
            Cause.PARTIAL_READ_BEFORE_WRITTEN,
            "the tile contains the poison value the partial workspace was filled with",
        )
    m = np.arange(rows.start, rows.stop)[:, None]
    n = np.arange(cols.start, cols.stop)[None, :]
    q = np.floor(values / BIAS_UNIT)
    p = values - BIAS_UNIT * q
    column_code = 1 + n % 3
    row_code = 1 + m % 3
    if not np.array_equal(q, np.broadcast_to(column_code, q.shape)):
        row_bias = np.where(m < config.n, row_code, 0)
        if (q == 0).all() and (row_bias == 0).all():  # a row-indexed load is masked here
            return (
                Cause.BIAS_MISSING,
                "no bias in the tile's values (its rows all lie past N, where a bias taken by "
                "row is masked to 0)",
                (Cause.BIAS_ALONG_WRONG_AXIS,),
            )
        if (q == 0).all():
            return Cause.BIAS_MISSING, "no bias in the tile's values"
        if np.array_equal(q, np.broadcast_to(row_bias, q.shape)):
            return Cause.BIAS_ALONG_WRONG_AXIS, "the bias added is bias[row], not bias[column]"
        times = q / column_code
        plausible = times.max() <= config.grid + 1  # no more additions than programs
        if np.all(times == np.round(times)) and times.min() >= 2 and plausible:
            return (
                Cause.BIAS_APPLIED_MORE_THAN_ONCE,
                f"bias added {int(times.min())} to {int(times.max())} times",
            )
        return Cause.UNCLASSIFIED, f"bias part of the values {np.unique(q)[:6]} is unexplained"
    probed = probed_iterations(config, pid_n)[rows, cols]
    probes = probed < config.iters_per_tile  # elements that probe no iteration say nothing
    sizes = iteration_sizes(config)[np.where(probes, probed, 0)]
    multiplicity = p / np.broadcast_to(row_code * sizes, p.shape)
    missing = sorted({int(j) for j in probed[probes & (multiplicity == 0)]})
    doubled = sorted({int(j) for j in probed[probes & (multiplicity >= 2)]})
    if missing:
        return Cause.MISSING_K_SEGMENT, f"K-iterations {missing} contributed nothing"
    if doubled:
        return Cause.DUPLICATED_K_SEGMENT, f"K-iterations {doubled} were added more than once"
    return Cause.UNCLASSIFIED, "probe values are as expected: the fault needs other inputs"


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


def decode_layout(
    config, pid_m, pid_n, got, expected, tensors, output_layout, out_dtype, cache=None
):
    """``("operand layout ignored", detail)`` when the output equals refsim's with one operand
    read with other strides from its own storage (:func:`_assumed_strides`), or C stored with
    other strides; else None.

    A, B and the bias are compared on the wrong tile ``(pid_m, pid_n)`` (refsim's values with
    the misread operand, accumulated in K order: integer inputs make every order exact); C on
    the whole output ``got``, where misplaced stores leave NaN and guard values. ``cache`` (a
    dict, optional) keeps each misread operand's block products and each C layout's verdict
    for the next tile of the same output.
    """
    region = _tile_region(config, pid_m, pid_n)
    if np.isnan(got[region]).all():
        return None  # a tile never written tells nothing about how it would have been read
    cache = {} if cache is None else cache
    arrays = [to_numpy(t) for t in tensors]
    for name, index in (("A", 0), ("B", 1), ("the bias", 2)):
        operand = tensors[index]
        if operand is None:
            continue
        for strides in _assumed_strides(tuple(operand.shape), operand.stride()):
            if (index, strides) not in cache:
                misread = _misread(operand, strides)
                inputs = list(arrays)
                if misread is not None:
                    inputs[index] = to_numpy(misread)
                cache[index, strides] = (
                    None if misread is None else numerics.TileMath(config, *inputs)
                )
            tile_math = cache[index, strides]
            if tile_math is None:
                continue
            acc = tile_math.accumulate(pid_m, pid_n, 0, config.iters_per_tile)
            model = cast_to(tile_math.with_bias(acc, pid_n), out_dtype)
            if np.array_equal(got[region], model):
                shape = tuple(operand.shape)
                return Cause.OPERAND_LAYOUT_IGNORED, (
                    f"{name} read as {describe_layout(shape, strides)}, but it is "
                    f"{describe_layout(shape, operand.stride())}"
                )
    shape = (config.m, config.n)
    for strides in _assumed_strides(shape, output_layout.strides):
        if ("C", strides) not in cache:
            model = _misplaced_output(output_layout, expected, strides)
            cache["C", strides] = model is not None and np.array_equal(got, model, equal_nan=True)
        if cache["C", strides]:
            return Cause.OPERAND_LAYOUT_IGNORED, (
                f"C written as {describe_layout(shape, strides)}, but it is "
                f"{describe_layout(shape, output_layout.strides)}"
            )
    return None


# The 16-bit output dtypes, by the names refsim's numerics take.
HALF_DTYPES = {torch.float16: "fp16", torch.bfloat16: "bf16"}
# Roundings a kernel may apply when it keeps its accumulator in fp16/bf16: GPUs round to
# nearest even; Triton's interpreter truncates fp32 -> bf16 (rounds toward zero).
ROUNDINGS = ("to nearest", "toward zero")


def round_toward_zero(x, dtype):
    """``x`` rounded toward zero to fp16/bf16 (fp32 unchanged), returned as float32."""
    x32 = np.asarray(x, dtype=np.float32)
    if dtype == "bf16":
        bits = np.ascontiguousarray(x32).view(np.uint32) & np.uint32(0xFFFF0000)
        return bits.view(np.float32).reshape(x32.shape)
    if dtype != "fp16":
        return x32.copy()
    with np.errstate(over="ignore"):
        nearest = x32.astype(np.float16)
    overshot = np.abs(nearest.astype(np.float32)) > np.abs(x32)
    return np.where(overshot, np.nextafter(nearest, np.float16(0)), nearest).astype(np.float32)


# Roundings an fp32 -> fp16/bf16 cast may be asked for other than to nearest even (Triton's
# ``fp_downcast_rounding``, or a hand-written cast): a kernel's epilogue must round to nearest.
DIRECTED_ROUNDINGS = ("toward zero", "up", "down")


def round_directed(x, dtype, rounding):
    """``x`` (fp32 values) rounded to fp16/bf16 ``dtype`` in ``rounding``, one of
    :data:`DIRECTED_ROUNDINGS` (``"up"``: toward +infinity, ``"down"``: toward -infinity),
    returned as float32; fp32 unchanged. A value exact in ``dtype`` stays as it is."""
    x32 = np.asarray(x, dtype=np.float32)
    truncated = round_toward_zero(x32, dtype)
    if dtype not in ("fp16", "bf16") or rounding == "toward zero":
        return truncated
    if dtype == "bf16":
        bits = np.ascontiguousarray(truncated).view(np.uint32) + np.uint32(0x10000)
        away = bits.view(np.float32).reshape(x32.shape)
    else:
        half = truncated.astype(np.float16)
        with np.errstate(over="ignore"):
            outward_limit = np.copysign(np.inf, x32).astype(np.float16)
            away = np.nextafter(half, outward_limit).astype(np.float32)
    inexact = truncated != x32
    outward = x32 > 0 if rounding == "up" else x32 < 0
    return np.where(inexact & outward, away, truncated)


def decode_rounding_mode(got, value32, dtype):
    """``("wrong rounding mode", detail)`` when ``got`` (an fp16/bf16 output's values, as
    float64) equals the exact fp32 ``value32`` cast in one of :data:`DIRECTED_ROUNDINGS`
    instead of to nearest even; else None."""
    name = HALF_DTYPES.get(dtype)
    if name is None:
        return None
    for rounding in DIRECTED_ROUNDINGS:
        if np.array_equal(got, round_directed(value32, name, rounding)):
            return Cause.WRONG_ROUNDING_MODE, (
                f"the output is refsim's fp32 value cast to {name} rounding {rounding}, not to "
                "nearest even"
            )
    return None


def _rounded(x, dtype, rounding):
    if rounding == "toward zero":
        return round_toward_zero(x, dtype)
    return numerics.round_to_dtype(x, dtype)


def rounded_accumulator(
    config, tile_math, segments, pid_m, pid_n, rounding="to nearest", rounded_products=False
):
    """Tile ``(pid_m, pid_n)``'s fp32 value (bias included) when every K-segment's accumulator
    is rounded to the input dtype after each K-iteration: ``acc = round(acc + A_k @ B_k)``
    (``rounded_products``: ``acc = round(acc + round(A_k @ B_k))``), each rounding
    ``rounding`` (one of :data:`ROUNDINGS`), the segments' sums then added in fp32 in K order."""
    rows, cols = tile_math.region(pid_m, pid_n)
    total = np.zeros((rows.stop - rows.start, cols.stop - cols.start), dtype=np.float32)
    for k_begin, k_end in sorted(segments):
        acc = np.zeros_like(total)
        for k in range(k_begin, k_end):
            step = tile_math.accumulate(pid_m, pid_n, k, k + 1)
            if rounded_products:
                step = _rounded(step, config.dtype, rounding)
            acc = _rounded(acc + step, config.dtype, rounding)
        total = total + acc
    return tile_math.with_bias(total, pid_n)


def decode_precision(
    config, sim, tile, pid_m, pid_n, got, tensors, out_dtype, tile_math=None, segments=None
):
    """``("accumulator precision", detail)`` when tile ``tile`` at ``(pid_m, pid_n)`` of
    ``got`` equals refsim's plan for it computed with an fp16/bf16 accumulator
    (:func:`rounded_accumulator`, under each of :data:`ROUNDINGS`, products rounded or not);
    else None. ``tile_math`` computes the block products (default: exact, over ``tensors``);
    ``segments`` are the tile's K-ranges (default: refsim's plan, from ``sim``)."""
    if config.dtype not in ("fp16", "bf16"):
        return None  # rounding to fp32 changes nothing
    region = _tile_region(config, pid_m, pid_n)
    if tile_math is None:
        tile_math = numerics.TileMath(config, *map(to_numpy, tensors))
    if segments is None:
        segments = [(k0, k1) for _, k0, k1, _ in plan_segments(config, sim, tile)]
    if out_dtype in HALF_DTYPES and len(segments) == 1 and segments[0][1] - segments[0][0] < 2:
        return None  # one rounding of the sum, then the bias: a bias added after the cast
    for rounding, rounded_products in itertools.product(ROUNDINGS, (False, True)):
        model = rounded_accumulator(
            config, tile_math, segments, pid_m, pid_n, rounding, rounded_products
        )
        if np.array_equal(got[region], cast_to(model, out_dtype)):
            how = "" if rounding == "to nearest" else f", rounded {rounding}"
            return Cause.ACCUMULATOR_PRECISION, (
                f"the accumulator is rounded to {config.dtype} after every K-iteration{how}, "
                "not kept in fp32"
            )
    return None


def decode_bias_after_cast(config, pid_m, pid_n, got, tensors, out_dtype, tile_math=None):
    """``("bias added after the cast", detail)`` when tile ``(pid_m, pid_n)`` of an fp16/bf16
    output equals refsim's bias-free value cast, plus the bias, cast again
    (:func:`decode_epilogue`); else None."""
    if tile_math is None:
        tile_math = numerics.TileMath(config, *map(to_numpy, tensors))
    if tile_math.bias is None or out_dtype not in HALF_DTYPES:
        return None
    rows, cols = _tile_region(config, pid_m, pid_n)
    unbiased = tile_math.accumulate(pid_m, pid_n, 0, config.iters_per_tile)
    decoded = decode_epilogue(got[rows, cols], unbiased, tile_math.bias[cols], out_dtype)
    return decoded if decoded[0] != Cause.UNCLASSIFIED else None


@dataclasses.dataclass(frozen=True)
class WrongTile:
    """A tile whose output differs from refsim's: its place, and which of its elements."""

    tile: int
    pid_m: int
    pid_n: int
    rows: slice
    cols: slice
    wrong: np.ndarray  # bool, over the tile's elements inside the matrix

    @property
    def count(self):
        """How many of the tile's elements are wrong."""
        return int(self.wrong.sum())

    @property
    def element(self):
        """C's ``(i, j)`` of the tile's first wrong element."""
        i, j = np.argwhere(self.wrong)[0]
        return self.rows.start + int(i), self.cols.start + int(j)

    @property
    def region(self):
        return self.rows, self.cols

    def wrong_lines(self, axis):
        """C's rows (``axis`` 0) or columns (1) that hold a wrong element of the tile."""
        start = (self.rows, self.cols)[axis].start
        return [start + int(i) for i in np.flatnonzero(self.wrong.any(axis=1 - axis))]


def wrong_tiles(config, got, expected, differs=None):
    """Every :class:`WrongTile` of ``got`` against ``expected``, in tile order (NaN is always
    wrong: refsim's NaN marks a tile no program computed). ``differs``: the wrong elements (a
    boolean array over the output), where "wrong" is not bitwise inequality -- a tolerance."""
    if differs is None:
        differs = got != expected
    if not differs.any():
        return []
    tiles = []
    for tile, (pid_m, pid_n) in _tiles_in_order(config):
        rows, cols = _tile_region(config, pid_m, pid_n)
        wrong = differs[rows, cols]
        if wrong.any():
            tiles.append(WrongTile(tile, pid_m, pid_n, rows, cols, wrong))
    return tiles


@dataclasses.dataclass(frozen=True)
class CauseGroup:
    """One cause and the wrong tiles it explains, with how many wrong elements they hold;
    ``detail`` says what was seen on the first of them."""

    cause: Cause
    tiles: tuple
    elements: int
    detail: str

    def line(self):
        shown = ", ".join(map(str, self.tiles[:8])) + (", ..." if len(self.tiles) > 8 else "")
        tiles = f"tile{'s' * (len(self.tiles) > 1)} {shown}"
        return f"{self.cause}: {tiles} ({self.elements} wrong): {self.detail}"


def group_causes(diagnosed):
    """``[(WrongTile, cause, detail)]`` as :class:`CauseGroup` s, lead cause first
    (:data:`CAUSES` order), each detail from the group's first tile.

    A diagnosis may carry a fourth element, the other causes its tile's values fit equally
    (a tile whose rows all lie past N shows a bias taken by row as no bias at all): such a tile
    joins the first of them that another tile's unambiguous diagnosis found."""
    definite = {d[1] for d in diagnosed if len(d) == 3}
    resolved = []
    for wrong, cause, detail, *alternatives in diagnosed:
        if cause not in definite:
            found = [alt for alt in (alternatives or [()])[0] if alt in definite]
            cause = found[0] if found else cause
        resolved.append((wrong, cause, detail))
    groups = {}
    for wrong, cause, detail in resolved:
        tiles, count, first = groups.get(cause, ((), 0, detail))
        groups[cause] = (tiles + (wrong.tile,), count + wrong.count, first)
    return sorted(
        (CauseGroup(cause, *fields) for cause, fields in groups.items()),
        key=lambda group: CAUSE_RANK[group.cause],
    )


def _spread(items, count):
    """At most ``count`` of ``items``, spread evenly over them, first and last included."""
    if len(items) <= count:
        return list(items)
    picks = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in sorted(set(picks))]


def diagnose_tiles(wrong, decoders, fallback):
    """Every wrong tile with a cause: ``[(WrongTile, cause, detail)]``.

    ``decoders`` are functions ``(WrongTile) -> (cause, detail) or None``, tried in order; the
    first that explains a tile names its cause, and ``fallback(WrongTile)`` gives ``(cause,
    detail)`` for a tile none explains. At most :data:`MAX_DIAGNOSED_TILES` tiles, spread
    over the wrong ones, meet every decoder; the others meet only the decoders that explained
    one of those, so that a bug in every tile of a large output costs a few decoders per tile.
    """
    sampled = _spread(wrong, MAX_DIAGNOSED_TILES)
    chosen = {wrong_tile.tile for wrong_tile in sampled}
    diagnosed, fired = {}, set()
    for wrong_tile in sampled:
        for index, decoder in enumerate(decoders):
            decoded = decoder(wrong_tile)
            if decoded is not None:
                diagnosed[wrong_tile.tile] = decoded
                fired.add(index)
                break
        else:
            diagnosed[wrong_tile.tile] = fallback(wrong_tile)
    for wrong_tile in wrong:
        if wrong_tile.tile in chosen:
            continue
        fired_decoders = (decoder for i, decoder in enumerate(decoders) if i in fired)
        decoded = next(filter(None, (decoder(wrong_tile) for decoder in fired_decoders)), None)
        diagnosed[wrong_tile.tile] = decoded or fallback(wrong_tile)
    return [(wrong_tile, *diagnosed[wrong_tile.tile]) for wrong_tile in wrong]


class TileGeometry:
    """Tile ids by place, and refsim's plan per tile, for the decoders of one config."""

    def __init__(self, config, sim=None):
        self.config = config
        self.sim = sim if sim is not None else refsim.simulate(config)
        self.tile_at = {place: tile for tile, place in _tiles_in_order(config)}
        self.segments = {}
        self.programs = {}
        for r in self.sim.records:
            if r.kernel == "gemm":
                self.segments.setdefault(r.tile, []).append((r.k_begin, r.k_end))
                self.programs.setdefault(r.tile, []).append(r.program)
        for spans in self.segments.values():
            spans.sort()

    def aliasing_writers(self, wrong_tile):
        """``[(writer tile, axis, {line: the writer's line})]``: the edge tiles whose rows past
        M (``axis`` 0) or columns past N (``axis`` 1), wrapped modulo M or N, cover every wrong
        row or column of ``wrong_tile``, as a store whose mask is computed after wrapping its
        index writes them."""
        config = self.config
        found = []
        for axis, (size, block, count) in enumerate(
            (
                (config.m, config.block_m, config.num_pid_m),
                (config.n, config.block_n, config.num_pid_n),
            )
        ):
            if size % block == 0:
                continue
            edge = count - 1
            past = range(size, (edge + 1) * block)
            aliases = {}
            for line in past:
                aliases.setdefault(line % size, line)
            lines = wrong_tile.wrong_lines(axis)
            if not lines or not set(lines) <= aliases.keys():
                continue
            place = (edge, wrong_tile.pid_n) if axis == 0 else (wrong_tile.pid_m, edge)
            writer = self.tile_at[place]
            if writer != wrong_tile.tile:
                found.append((writer, axis, {line: aliases[line] for line in lines}))
        return found

    def describe_writer(self, writer, axis, lines):
        """What an aliasing writer did, in words."""
        config = self.config
        name, size, letter = (("row", config.m, "M"), ("column", config.n, "N"))[axis]
        victims, sources = sorted(lines), sorted(lines.values())
        pid_m, pid_n = tiling.grouped_tile(
            writer, config.num_pid_m, config.num_pid_n, config.group_m
        )
        programs = sorted(set(self.programs.get(writer, ())))
        return (
            f"tile {writer} (pid_m {pid_m}, pid_n {pid_n}; programs {programs}) wrote its "
            f"{name}s {sources[0]}..{sources[-1]} past {letter} = {size} over {name}s "
            f"{victims[0]}..{victims[-1]} here: its store wraps the {name} index modulo "
            f"{letter} before masking it"
        )


def decode_intrusion(geometry, wrong_tile, got, candidates):
    """``("write into another tile", detail)`` when an edge tile's wrapped rows or columns
    (:meth:`TileGeometry.aliasing_writers`) cover the wrong elements of ``wrong_tile`` and
    those hold what that writer computes there: one of ``candidates(writer, wrong_tile)``,
    arrays over the tile, equals them. Else None."""
    rows, cols = wrong_tile.region
    mine = got[rows, cols][wrong_tile.wrong]
    for writer, axis, lines in geometry.aliasing_writers(wrong_tile):
        values = [candidate[wrong_tile.wrong] for candidate in candidates(writer, wrong_tile)]
        if any(np.array_equal(mine, value, equal_nan=True) for value in values):
            return Cause.WRITE_INTO_ANOTHER_TILE, geometry.describe_writer(writer, axis, lines)
    return None


class Diagnoser:
    """The per-tile diagnosis of one output on one set of inputs.

    Decoders, tried on each wrong tile in this order: a tile whose NaN is the fill plus its sum
    (:meth:`uninitialised`, with a kernel to relaunch), a tile still NaN (never written), the
    partial workspace's poison, the whole tile holding another tile's values, rows or columns
    holding other lines', an edge tile's wrapped rows or columns written over it
    (:func:`decode_intrusion`), an operand read (or C written) with the wrong layout, an
    fp16/bf16 output cast in another rounding mode than to nearest even
    (:func:`decode_rounding_mode`), an fp16/bf16 accumulator, a bias added after the cast,
    and a launch on
    :func:`conformance.inputs.probe_inputs` whose values say which K-iterations and how much
    bias reached each element (one launch per probe layout, shared by the tiles).
    """

    def __init__(self, kut, case, config, got, expected, sim, device, tensors, out_dtype):
        self.kut, self.case, self.config = kut, case, config
        self.got, self.expected, self.sim, self.device = got, expected, sim, device
        self.tensors, self.out_dtype = tensors, out_dtype
        self.geometry = TileGeometry(config, sim)
        self._math = None
        self._probes = {}
        self._layout_models = {}  # decode_layout's cache, shared by the tiles
        self._refills = None  # the outputs of the relaunches over finite fills, by fill

    @property
    def tile_math(self):
        if self._math is None:
            self._math = numerics.TileMath(self.config, *map(to_numpy, self.tensors))
        return self._math

    def decoders(self):
        decoders = [self.uninitialised] if self.kut is not None else []
        decoders += [self.unwritten, self.poisoned, self.elsewhere, self.moved_lines]
        decoders.append(self.intrusion)
        if self.tensors is not None:
            decoders += [self.layout, self.rounding_mode, self.precision, self.bias_after_cast]
        if self.kut is not None:
            decoders.append(self.probe)
        return decoders

    def run(self, exclude=(), wrong=None):
        """``(groups, info)``: :class:`CauseGroup` s, lead first, and the first wrong tile's
        place, values and refsim's plan for it; ``([], None)`` when every wrong tile is one of
        ``exclude`` (tile ids another check explains). ``wrong``: the :class:`WrongTile` s to
        diagnose, when not every wrong tile of the output."""
        if wrong is None:
            wrong = wrong_tiles(self.config, self.got, self.expected)
        wrong = [w for w in wrong if w.tile not in exclude]
        if not wrong:
            return [], None
        diagnosed = diagnose_tiles(wrong, self.decoders(), self.unexplained)
        groups = group_causes(diagnosed)
        first, cause, detail, *_ = diagnosed[0]
        cause = next(g.cause for g in groups if first.tile in g.tiles)
        element = first.element
        info = {
            "tile": first.tile,
            "pid_m": first.pid_m,
            "pid_n": first.pid_n,
            "element": list(element),
            "got": float(self.got[element]),
            "expected": float(self.expected[element]),
            "plan": plan_segments(self.config, self.geometry.sim, first.tile),
            "detail": detail,
            "cause": str(cause),  # a plain string: the dict is printed and shown in reports
        }
        return groups, info

    def first_difference(self, wrong_tile):
        """How many of the tile's elements are wrong, and its first one against refsim's."""
        i, j = wrong_tile.element
        return (
            f"{wrong_tile.count} elements differ, first C[{i}, {j}] = {float(self.got[i, j])!r} "
            f"where refsim has {float(self.expected[i, j])!r}"
        )

    def unexplained(self, wrong_tile):
        return self.outside_the_kernel(
            f"{self.first_difference(wrong_tile)}; neither NaN, poison, another tile's or line's "
            "values, a misread layout, a rounding nor the probe's K-iterations and bias explain "
            "them"
        )

    def outside_the_kernel(self, detail):
        """``("backend limitation", ...)`` for values nothing explains on a backend with a known
        trap for the config's dtype (:func:`conformance.environment.backend_limitation`),
        else ``("unclassified", detail)``."""
        note = None if self.device is None else backend_limitation(self.config.dtype, self.device)
        if note is None:
            return Cause.UNCLASSIFIED, detail
        return Cause.BACKEND_LIMITATION, f"{note} ({detail})"

    def uninitialised(self, wrong_tile):
        """A tile whose wrong elements are NaN because the kernel added into the NaN-filled
        output instead of initialising it (an atomic accumulation into C that nobody zeroed):
        relaunched on the exact inputs over an fp32 output filled with 0 and with
        :data:`UNINITIALISED_FILL`, those elements hold a sum over the 0 (never 0: the exact
        inputs' sums are not) and that sum plus the fill over the other. A tile never written
        holds each fill as it is, and is left to :meth:`unwritten`."""
        if not np.isnan(self.got[wrong_tile.region][wrong_tile.wrong]).all():
            return None
        if self._refills is None:
            self._refills = {fill: self._refilled(fill) for fill in (0.0, UNINITIALISED_FILL)}
        zero, filled = (self._refills[fill][wrong_tile.region] for fill in self._refills)
        summed = zero[wrong_tile.wrong]
        gained = filled[wrong_tile.wrong] - summed
        if not (np.all(gained == UNINITIALISED_FILL) and np.all(summed != 0)):
            return None  # each fill left as it is: never written
        return Cause.OUTPUT_NOT_INITIALISED, (
            "the tile's NaN is the harness's fill plus the tile's sum: relaunched over an output "
            f"filled with 0 and with {UNINITIALISED_FILL:.0f}, its wrong elements differ by "
            f"exactly {UNINITIALISED_FILL:.0f}, so the kernel adds into C without zeroing it first"
        )

    def _refilled(self, fill):
        """The fp32 output of a launch on the exact inputs over an output filled with ``fill``."""

        def run(config, a, b, bias=None, out=None, trace=False):
            out.fill_(fill)
            return self.kut.run(config, a, b, bias, out=out, trace=trace)

        prefilled = dataclasses.replace(self.kut, run=run)
        inputs = integer_inputs(self.case)
        launched, _ = launch(
            prefilled, self.config, self.case, inputs, self.device, trace=False,
            out_dtype=torch.float32,
        )  # fmt: skip
        return to_numpy(launched.output)

    def rounding_mode(self, wrong_tile):
        """An fp16/bf16 tile equal to refsim's exact fp32 value (bias included; the integer
        inputs make it independent of the order of additions) cast in a directed rounding."""
        w = wrong_tile
        value = self.tile_math.with_bias(
            self.tile_math.accumulate(w.pid_m, w.pid_n, 0, self.config.iters_per_tile), w.pid_n
        )
        return decode_rounding_mode(self.got[w.region], value, self.out_dtype)

    def unwritten(self, wrong_tile):
        values = self.got[wrong_tile.region]
        if not np.isnan(values[wrong_tile.wrong]).all():
            return None
        if np.isnan(self.expected[wrong_tile.region]).all():
            return Cause.TILE_NEVER_WRITTEN, "no program took it, so it still holds NaN"
        if np.isnan(values).all():
            return (
                Cause.TILE_NEVER_WRITTEN,
                "the tile still holds the NaN the output was filled with",
            )
        rows = wrong_tile.wrong_lines(0)
        return Cause.TILE_NEVER_WRITTEN, (
            f"{wrong_tile.count} of its elements, in rows {rows[0]}..{rows[-1]}, still hold NaN"
        )

    def poisoned(self, wrong_tile):
        if (np.abs(np.nan_to_num(self.got[wrong_tile.region])) >= POISON / 2).any():
            return Cause.PARTIAL_READ_BEFORE_WRITTEN, (
                "the tile contains the poison value the partial workspace was filled with"
            )
        return None

    def elsewhere(self, wrong_tile):
        w = wrong_tile
        other = _wrong_place(self.config, self.got, self.expected, w.tile, w.pid_m, w.pid_n)
        if other is None:
            return None
        return Cause.TILE_WRITTEN_TO_WRONG_PLACE, f"it holds tile {other}'s values"

    def moved_lines(self, wrong_tile):
        moved = misplaced_lines(
            self.config, self.got, self.expected, wrong_tile.pid_m, wrong_tile.pid_n
        )
        if moved is None:
            return None
        axis, sources = moved
        name = ("row", "column")[axis]
        shown = ", ".join(
            f"{name} {line} holds {name} {src}" for line, src in list(sources.items())[:4]
        )
        return Cause.TILE_WRITTEN_TO_WRONG_PLACE, (
            f"{len(sources)} {name}s of the tile hold other {name}s' values: {shown}"
        )

    def intrusion(self, wrong_tile):
        return decode_intrusion(self.geometry, wrong_tile, self.got, self.intruder_values)

    def intruder_values(self, writer, wrong_tile):
        """What an aliasing writer stores over ``wrong_tile``: its rows or columns past the
        matrix read as zero (masked loads: the bias alone), cast to the output dtype."""
        if self.tensors is None:
            return []
        zero = np.zeros(
            (
                wrong_tile.rows.stop - wrong_tile.rows.start,
                wrong_tile.cols.stop - wrong_tile.cols.start,
            ),
            np.float32,
        )
        return [cast_to(self.tile_math.with_bias(zero, wrong_tile.pid_n), self.out_dtype)]

    def layout(self, wrong_tile):
        output_layout = OutputLayout.of(self.config, self.case)
        w = wrong_tile
        return decode_layout(
            self.config,
            w.pid_m,
            w.pid_n,
            self.got,
            self.expected,
            self.tensors,
            output_layout,
            self.out_dtype,
            self._layout_models,
        )

    def precision(self, wrong_tile):
        w = wrong_tile
        return decode_precision(
            self.config, self.geometry.sim, w.tile, w.pid_m, w.pid_n, self.got, self.tensors,
            self.out_dtype, self.tile_math, self.geometry.segments.get(w.tile),
        )  # fmt: skip

    def bias_after_cast(self, wrong_tile):
        w = wrong_tile
        return decode_bias_after_cast(
            self.config, w.pid_m, w.pid_n, self.got, self.tensors, self.out_dtype, self.tile_math
        )

    def probe(self, wrong_tile):
        layout = probe_layout(self.config, wrong_tile.pid_n)
        if layout not in self._probes:
            probe = probe_inputs(self.config, wrong_tile.pid_n)
            run, _ = launch(
                self.kut, self.config, self.case, probe, self.device, trace=False,
                out_dtype=torch.float32,
            )  # fmt: skip
            self._probes[layout] = to_numpy(run.output)
        decoded = decode_probe(
            self.config, self._probes[layout], wrong_tile.pid_m, wrong_tile.pid_n
        )
        return None if decoded[0] == Cause.UNCLASSIFIED else decoded


def diagnose(kut, case, config, got, expected, sim, device, tensors=None, out_dtype=None):
    """Every wrong tile of ``got`` diagnosed (:class:`Diagnoser`), grouped by cause:
    ``(groups, info)`` with the :class:`CauseGroup` s, lead cause first, and the first wrong
    tile's place, values, refsim's plan for it and its own cause and detail.

    With the run's input ``tensors`` and output dtype, an operand read (or C written) with the
    wrong layout, an accumulator kept in the input dtype and a bias added after the cast are
    recognised before the probe launch: the integer inputs' sums lie above 2048, where fp16
    and bf16 round. ``kut`` None: no probe launch.
    """
    diagnoser = Diagnoser(kut, case, config, got, expected, sim, device, tensors, out_dtype)
    return diagnoser.run()


def partial_cause(math, config, partial, got):
    """``(cause, detail)`` of one wrong partial, decoded from its difference to refsim's.

    ``math`` is a :class:`refsim.numerics.TileMath` over the run's inputs.
    """
    diff = got - partial.value
    if np.all(np.abs(got) >= POISON / 2):
        return Cause.MISSING_K_SEGMENT, "the slot still holds POISON: the partial was never stored"
    pid_m, pid_n = tiling.grouped_tile(
        partial.tile, config.num_pid_m, config.num_pid_n, config.group_m
    )
    if math.bias is not None:
        bias = np.broadcast_to(math.with_bias(np.zeros_like(diff), pid_n), diff.shape)
        if np.array_equal(diff, bias):
            return Cause.BIAS_APPLIED_MORE_THAN_ONCE, "the partial already includes the bias"
    own = math.accumulate(pid_m, pid_n, partial.k_begin, partial.k_end)
    for rounding in ROUNDINGS if config.dtype in ("fp16", "bf16") else ():
        acc = np.zeros_like(own)
        for k in range(partial.k_begin, partial.k_end):
            acc = _rounded(acc + math.accumulate(pid_m, pid_n, k, k + 1), config.dtype, rounding)
        rounded = acc if partial.kind == "own" else partial.value - own + acc  # a running sum
        if np.array_equal(got, rounded):
            return Cause.ACCUMULATOR_PRECISION, f"the partial is rounded to {config.dtype}"
    for k in range(config.iters_per_tile):
        product = math.accumulate(pid_m, pid_n, k, k + 1)
        if partial.k_begin <= k < partial.k_end and np.array_equal(diff, -product):
            return Cause.MISSING_K_SEGMENT, f"K-iteration {k} is missing from it"
        if np.array_equal(diff, product):
            return Cause.DUPLICATED_K_SEGMENT, f"K-iteration {k} is in it once too often"
    return Cause.UNCLASSIFIED, "no single K-iteration or bias explains the difference"


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
            return Cause.UNCLASSIFIED, info
        info["orders"] = matches
        shown = " or ".join(str(order) for order in matches)
        info["detail"] = f"tile {tile}: partials added as {shown}, refsim predicts {predicted}"
        return Cause.WRONG_ADDITION_ORDER, info
    return Cause.UNCLASSIFIED, {"detail": "every covered split tile is right; another tile differs"}


def decode_epilogue(got, expected_unbiased, bias, dtype):
    """``(cause, detail)`` for a wrong fp16/bf16 output of :func:`conformance.inputs.epilogue_inputs`:
    ``"bias added after the cast"`` when it equals the bias-free fp32 output cast, plus the bias,
    cast again -- the first cast rounded to nearest even, or toward zero as Triton's interpreter
    casts to bf16 (the detail then says so)."""
    name = HALF_DTYPES[dtype]
    unbiased = np.asarray(expected_unbiased, dtype=np.float32)
    for rounding in ROUNDINGS:
        first = _rounded(unbiased, name, rounding)
        twice = cast_to(first + np.asarray(bias, dtype=np.float32), dtype)
        if np.array_equal(got, twice):
            how = "" if rounding == "to nearest" else f" (the first cast rounded {rounding})"
            return Cause.BIAS_ADDED_AFTER_CAST, (
                f"the output is the cast sum, plus the bias, cast again{how}"
            )
    return Cause.UNCLASSIFIED, "the output is neither rounded once nor rounded twice"


class EpilogueDiagnoser(Diagnoser):
    """The per-tile diagnosis of an fp16/bf16 output of
    :func:`conformance.inputs.epilogue_inputs`: each wrong tile cast in another rounding mode
    than to nearest even, rounded twice (the bias added after a first cast), with an fp16/bf16
    accumulator, or written by another tile; refsim's
    bias-free fp32 output ``unbiased`` is what a tile rounded twice was cast from first."""

    def __init__(self, config, got, expected, sim, device, tensors, out_dtype, unbiased):
        super().__init__(None, None, config, got, expected, sim, device, tensors, out_dtype)
        self.unbiased = unbiased

    def decoders(self):
        return [
            self.unwritten,
            self.poisoned,
            self.rounding_mode,
            self.twice,
            self.precision,
            self.intrusion,
        ]

    def twice(self, wrong_tile):
        rows, cols = wrong_tile.region
        bias = self.tile_math.bias[cols]
        decoded = decode_epilogue(
            self.got[rows, cols], self.unbiased[rows, cols], bias, self.out_dtype
        )
        return decoded if decoded[0] != Cause.UNCLASSIFIED else None

    def unexplained(self, wrong_tile):
        return self.outside_the_kernel(
            f"epilogue inputs: {self.first_difference(wrong_tile)}; the tile is neither rounded "
            "once (to nearest or in another mode) nor rounded twice"
        )


class OrderDiagnoser(Diagnoser):
    """The per-tile diagnosis of an fp32 output of :func:`conformance.inputs.order_inputs`, on
    tiles the exact check found right: every program's accumulation of a K-segment is exact
    there, on any MMA unit, and only the additions of partials round -- so a tile written by
    another tile's program shows that program's K-split, on a GPU as in the interpreter."""

    def __init__(self, config, got, expected, sim, device, tensors):
        super().__init__(None, None, config, got, expected, sim, device, tensors, torch.float32)

    def decoders(self):
        return [self.unwritten, self.poisoned, self.intrusion, self.partial_order]

    def intruder_values(self, writer, wrong_tile):
        """The bias alone, and the writer's K-segments over this tile's rows and columns (the
        rows its wrapped loads read), reduced in K order."""
        values = super().intruder_values(writer, wrong_tile)
        segments = self.geometry.segments.get(writer, ())
        if not segments:
            return values
        w = wrong_tile
        order = range(len(segments))
        return values + [reduce_in_order(self.tile_math, w.pid_m, w.pid_n, segments, order)]

    def partial_order(self, wrong_tile):
        """A split tile whose value is its partials added in another order."""
        segments = self.geometry.segments.get(wrong_tile.tile, [])
        if not 2 <= len(segments) <= ORDER_MAX_SEGMENTS:
            return None
        w, predicted = wrong_tile, tuple(range(len(segments)))
        got = self.got[w.region]
        matches = [
            order
            for order in itertools.permutations(predicted)
            if np.array_equal(
                got, reduce_in_order(self.tile_math, w.pid_m, w.pid_n, segments, order)
            )
        ]
        if not matches:
            return None
        shown = " or ".join(map(str, matches))
        return Cause.WRONG_ADDITION_ORDER, (
            f"its {len(segments)} partials {segments} were added as {shown}; refsim predicts {predicted}"
        )

    def unexplained(self, wrong_tile):
        return self.outside_the_kernel(
            f"order-revealing inputs: {self.first_difference(wrong_tile)}; no order of its "
            "partials and no other tile's write gives the kernel's values"
        )


class SubstitutionDiagnoser(Diagnoser):
    """The per-tile diagnosis of an output that may hold the right sums of the wrong operands (a
    later call of a key, a graph replay, one product of a batch): the decoders of
    :class:`Diagnoser` (its relaunches only with a ``kut``: a check that cannot relaunch its
    call's path passes None), with :meth:`substituted` after a never-written tile's, which
    matches each tile against ``alternatives``:
    ``(cause, detail, output)`` triples, what the output would be had the kernel taken other
    operands (an earlier call's, another batch entry's) -- each ``output`` a float64 array
    like ``expected``, or a function returning one (computed when first needed)."""

    def __init__(self, kut, case, config, got, expected, sim, device, tensors, out_dtype,
                 alternatives):  # fmt: skip
        super().__init__(kut, case, config, got, expected, sim, device, tensors, out_dtype)
        self.alternatives = list(alternatives)

    def decoders(self):
        decoders = super().decoders()
        after = decoders.index(self.unwritten) + 1
        return decoders[:after] + [self.substituted] + decoders[after:]

    def substituted(self, wrong_tile):
        region = wrong_tile.region
        for index, (cause, detail, output) in enumerate(self.alternatives):
            if callable(output):
                output = output()
                self.alternatives[index] = (cause, detail, output)
            if np.array_equal(self.got[region], output[region]):
                return cause, detail
        return None


class RandomBitsDiagnoser(Diagnoser):
    """The per-tile diagnosis of an fp32 output on random inputs in Triton's interpreter, on
    tiles the exact check found right: the same products were summed there, so a difference is
    who wrote the tile, the order of its additions or how its accumulator was rounded. Block
    products are the interpreter's (:class:`refsim.numerics.InterpreterTileMath`)."""

    def __init__(self, config, got, expected, sim, tensors):
        super().__init__(None, None, config, got, expected, sim, "cpu", tensors, torch.float32)
        self._math = numerics.InterpreterTileMath(config, *map(to_numpy, tensors))

    def decoders(self):
        return [
            self.unwritten_later,
            self.poisoned,
            self.intrusion,
            self.partial_order,
            self.k_order,
            self.precision,
        ]

    def unwritten_later(self, wrong_tile):
        decoded = self.unwritten(wrong_tile)
        if decoded is None:
            return None
        return decoded[0], decoded[1] + " after the random-input launch (the exact launch wrote it)"

    def intruder_values(self, writer, wrong_tile):
        """The bias alone (rows or columns past the matrix read as zero), and the writer's own
        sums: its K-segments reduced in K order, over its whole block, wrapped onto the
        matrix as the interpreter loads it."""
        values = super().intruder_values(writer, wrong_tile)
        config, math = self.config, self.tile_math
        pid_m, pid_n = tiling.grouped_tile(
            writer, config.num_pid_m, config.num_pid_n, config.group_m
        )
        parts = [
            math.block(pid_m, pid_n, k0, k1) for k0, k1 in self.geometry.segments.get(writer, ())
        ]
        if not parts:
            return values
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        rows = (pid_m * config.block_m + np.arange(config.block_m)) % config.m
        cols = (pid_n * config.block_n + np.arange(config.block_n)) % config.n
        if math.bias is not None:
            total = total + math.bias[cols]
        written = np.full((config.m, config.n), np.nan, dtype=np.float32)
        written[np.ix_(rows, cols)] = total
        return values + [written[wrong_tile.region]]

    partial_order = OrderDiagnoser.partial_order

    def k_order(self, wrong_tile):
        """A tile whose K-iterations were accumulated last to first."""
        w = wrong_tile
        steps = [
            self.tile_math.accumulate(w.pid_m, w.pid_n, k, k + 1)
            for k in range(self.config.iters_per_tile)
        ]
        if len(steps) < 2:
            return None
        acc = np.zeros_like(steps[0])
        for step in reversed(steps):
            acc = step + acc
        if not np.array_equal(self.got[w.region], self.tile_math.with_bias(acc, w.pid_n)):
            return None
        return Cause.WRONG_ADDITION_ORDER, "its K-iterations were accumulated last to first"

    def unexplained(self, wrong_tile):
        return self.outside_the_kernel(
            f"random inputs: {self.first_difference(wrong_tile)}; the exact inputs gave "
            "refsim's sums here, and no other writer, order of partials or of K-iterations and "
            "no accumulator rounding explains these bits"
        )


class _RepeatedRun:
    """What the per-tile diagnosis of one of several launches on the same inputs adds: a tile
    no other decoder explains, whose elements differ between the launches (``varies``, a
    boolean array over the output), is nondeterministic."""

    varies: np.ndarray

    def varying(self, wrong_tile):
        differ = int(self.varies[wrong_tile.region][wrong_tile.wrong].sum())
        if not differ:
            return None
        return Cause.NONDETERMINISM, (
            f"{differ} of its {wrong_tile.count} wrong elements differ between the runs, which "
            "ran the programs in different orders"
        )


class RepeatedBitsDiagnoser(_RepeatedRun, RandomBitsDiagnoser):
    """:class:`RandomBitsDiagnoser` for one run of the determinism check, with
    :meth:`_RepeatedRun.varying` last."""

    def __init__(self, config, got, expected, sim, tensors, varies):
        super().__init__(config, got, expected, sim, tensors)
        self.varies = varies

    def decoders(self):
        return super().decoders() + [self.varying]


class RepeatedToleranceDiagnoser(_RepeatedRun, Diagnoser):
    """The per-tile diagnosis of one run of the determinism check where bits are not
    predicted (a GPU, or a kernel without ``block_dots``): every :class:`Diagnoser` decoder,
    the probe launch included, on the tiles outside the tolerance of the float64 product
    ``expected``, then :meth:`_RepeatedRun.varying`."""

    def __init__(self, kut, case, config, got, expected, sim, device, tensors, varies):
        super().__init__(kut, case, config, got, expected, sim, device, tensors, torch.float32)
        self.varies = varies

    def decoders(self):
        return super().decoders() + [self.varying]
