"""Inputs for conformance: exact integers, random values, decodable probes, inputs that reveal
the order in which partials are added, and inputs that reveal where the bias meets the cast; and
the layouts they are handed to a kernel in (:func:`as_tensors`).

Probe inputs (:func:`probe_inputs`) make every output element of a tile say where it came from.
Element ``(m, n)`` probes one K-iteration ``j = (m % R) * C + n % C``, numbered in mixed radix
over the tile's columns and then its rows: ``C`` is the smaller of the iteration count ``I`` and
the tile's width, ``R = cdiv(I, C)``. Where the tile is at least as wide as ``I`` (``R = 1``)
column ``n`` probes iteration ``n % I``; a narrower tile (``N < I``, ``N = 1``) probes the rest
down its rows. A tile with fewer than ``I`` elements probes only its first iterations, and an
element with ``j >= I`` probes none. The values:

* ``a[m, k] = 1 + m % 3`` -- a row code -- where ``k`` lies in an iteration ``j`` with
  ``j // C = m % R``, else 0;
* ``b[k, n] = 1`` where ``k`` lies in an iteration ``j`` with ``j % C = n % C``, else 0 -- so
  element ``(m, n)`` sums exactly iteration ``(m % R) * C + n % C``;
* ``bias[n] = 4096 * (1 + n % 3)`` -- a column code far above any product.

So ``out[m, n] = 4096 * q + p`` with ``q`` the bias sum in units of 4096 and
``p = (1 + m % 3) * |iteration j| * multiplicity``: a missing K-segment gives multiplicity 0, a
duplicated one 2, a missing bias ``q = 0``, a bias added twice ``q = 2 (1 + n % 3)``, a bias
taken by row ``q = 1 + m % 3``. Every value is a small integer (``p`` is at most
``3 * BLOCK_K`` per multiplicity) or a multiple of 4096 below 2^14, exact in fp16, bf16 and fp32,
and every sum stays an integer below 2^24, so the kernel's fp32 arithmetic is exact in any order.
"""

import dataclasses
import itertools
import math

import numpy as np
import torch

import refsim
from kernels.dtypes import TORCH_DTYPES
from refsim import numerics, tiling

BIAS_UNIT = 4096.0
# The strided layout (Case.strided): extra elements at the end of each stored row of A and of
# B, and the bias's stride.
A_PADDING = 3
B_PADDING = 8
BIAS_STRIDE = 2
# The order-revealing inputs (see order_inputs): integer magnitudes up to 255 are exact in bf16
# and fp16; A's row exponents in 0..8 and B's column exponents in -10..8 keep them within
# fp16's range, and give two partials of one element gaps of up to 26 binary places.
ORDER_MAGNITUDE = 255
A_EXPONENTS = (0, 9)
B_EXPONENTS = (-10, 9)
# Seeds order_inputs tries until every covered tile's sum tells its orders apart.
ORDER_ATTEMPTS = 8
# Bounds on what order_inputs covers, so that trying every order (here and in the diagnosis)
# stays cheap: tiles of at most 6 partials (720 orders), at most 8 tiles per case.
ORDER_MAX_SEGMENTS = 6
ORDER_MAX_TILES = 8


def padding_values(shape):
    """What a strided operand's padding holds: integers in -4..4 in a fixed pattern, exact in
    every dtype, so that a kernel reading the padding gets values the diagnosis can model."""
    return (np.arange(math.prod(shape)) % 9 - 4.0).reshape(shape)


def _operand(array, transposed, padding, dtype, device):
    """``array`` as a tensor view in ``dtype``: row-major, or column-major (a transposed view)
    when ``transposed``, with ``padding`` more elements at the end of each stored row."""
    stored = array.T if transposed else array
    rows, columns = stored.shape
    storage = padding_values((rows, columns + padding))
    storage[:, :columns] = stored
    tensor = torch.from_numpy(storage).to(TORCH_DTYPES[dtype]).to(device)[:, :columns]
    return tensor.t() if transposed else tensor


def as_tensors(case, a, b, bias, device):
    """numpy inputs -> torch tensors in the case's dtype and layouts: A and B transposed views
    where ``transpose_a``/``transpose_b`` say so; with ``strided``, A's and B's stored rows
    padded by :data:`A_PADDING` and :data:`B_PADDING` elements and the bias a view of stride
    :data:`BIAS_STRIDE` (the padding holds :func:`padding_values`)."""
    if bias is not None:
        stride = BIAS_STRIDE if case.strided else 1
        storage = padding_values((len(bias) * stride,))
        storage[::stride] = bias
        bias = torch.from_numpy(storage).to(TORCH_DTYPES[case.dtype]).to(device)[::stride]
    return (
        _operand(a, case.transpose_a, A_PADDING if case.strided else 0, case.dtype, device),
        _operand(b, case.transpose_b, B_PADDING if case.strided else 0, case.dtype, device),
        bias,
    )


def integer_inputs(case, seed_offset=0):
    """Integers (never all zero) whose every fp32 sum is exact, and large enough that an
    accumulator rounded to fp16 or bf16 shows.

    A and B are drawn from -4..4, the bias too, except ``a[:, 0] = 64`` and ``b[0, :]`` in
    40..63: their product alone is 2560..4032, so after the first K-iteration (whose other
    products are at most 16 in magnitude) the accumulator lies around 2^11..2^12, past 2048
    where fp16 stops being exact (bf16 stops at 256). Adding the later iterations' sums, odd
    about half the time, to an accumulator rounded to either dtype then loses bits. Every sum
    is an integer below ``4032 + 16 K``, exact in fp32 for any K below about a million.
    """
    rng = np.random.default_rng(case.seed + seed_offset)
    a = rng.integers(-4, 5, (case.m, case.k)).astype(np.float64)
    b = rng.integers(-4, 5, (case.k, case.n)).astype(np.float64)
    a[:, 0] = 64.0
    b[0, :] = rng.integers(40, 64, case.n)
    bias = rng.integers(-4, 5, case.n).astype(np.float64) if case.bias else None
    return a, b, bias


def random_inputs(case, seed_offset=0):
    rng = np.random.default_rng(case.seed + 1000 + seed_offset)
    a = rng.standard_normal((case.m, case.k))
    b = rng.standard_normal((case.k, case.n))
    bias = rng.standard_normal(case.n) if case.bias else None
    return a, b, bias


def probe_layout(config, pid_n):
    """``(C, R)`` of the probe for the tiles of column block ``pid_n`` (module docstring):
    element ``(m, n)`` probes K-iteration ``(m % R) * C + n % C``."""
    iterations = config.iters_per_tile
    width = min(config.n, (pid_n + 1) * config.block_n) - pid_n * config.block_n
    columns = min(iterations, width)
    return columns, tiling.cdiv(iterations, columns)


def probed_iterations(config, pid_n):
    """The K-iteration each output element probes in the probe for column block ``pid_n``
    (an ``M x N`` array; ``>= iters_per_tile`` where an element probes none)."""
    columns, rows = probe_layout(config, pid_n)
    m = np.arange(config.m)[:, None]
    n = np.arange(config.n)[None, :]
    return (m % rows) * columns + n % columns


def probe_inputs(config, pid_n=0):
    """Decodable inputs for the tiles of column block ``pid_n`` (module docstring; only the
    tile's width matters); always with a bias."""
    columns, rows = probe_layout(config, pid_n)
    iteration_of_k = np.arange(config.k) // config.block_k
    m = np.arange(config.m)
    in_row = iteration_of_k[None, :] // columns == (m % rows)[:, None]
    a = ((1 + m % 3)[:, None] * in_row).astype(np.float64)
    b = (iteration_of_k[:, None] % columns == (np.arange(config.n) % columns)[None, :]).astype(
        np.float64
    )
    bias = BIAS_UNIT * (1 + np.arange(config.n) % 3)
    return a, b, bias


def iteration_sizes(config):
    """How many K indices each K-iteration holds (the last may be short)."""
    return np.minimum(config.block_k, config.k - np.arange(config.iters_per_tile) * config.block_k)


def probe_expected(config, pid_n=0):
    """What a correct kernel writes for ``probe_inputs(config, pid_n)``."""
    probed = probed_iterations(config, pid_n)
    sizes = np.append(iteration_sizes(config), 0)  # an element probing none sums nothing
    rows = (1 + np.arange(config.m) % 3)[:, None]
    cols = np.arange(config.n)
    products = rows * sizes[np.minimum(probed, config.iters_per_tile)]
    return products + BIAS_UNIT * (1 + cols % 3)[None, :]


@dataclasses.dataclass(frozen=True)
class OrderInputs:
    """Inputs from :func:`order_inputs`: ``a``, ``b``, ``bias`` (numpy), ``tiles`` -- the split
    tiles whose order they reveal -- and ``segments``, each tile's ``(k_begin, k_end)`` in K order.
    """

    a: np.ndarray
    b: np.ndarray
    bias: np.ndarray
    tiles: tuple
    segments: dict


def _k_classes(spans, iters):
    """Label each K-iteration so that every span ``[k_begin, k_end)`` lies in one label; the
    labels are intervals, numbered in K order."""
    joined = np.zeros(iters, dtype=bool)  # joined[k]: iteration k shares k - 1's label
    for k_begin, k_end in spans:
        joined[k_begin + 1 : k_end] = True
    return np.cumsum(~joined) - 1


def _distinct(classes, segments):
    """Whether consecutive segments of a tile have different labels (each segment has one)."""
    labels = [classes[k_begin] for k_begin, _ in segments]
    return all(x != y for x, y in itertools.pairwise(labels))


def order_inputs(config, seed=0):
    """Exact inputs whose output depends on the order in which split tiles add their partials.

    K-iterations are grouped into classes (intervals) such that every planned K-segment lies in
    one class. Within a class, row ``m`` of A is positive integers times a sign (alternating by
    class) and 2**x, column ``n`` of B integers times 2**y, with x and y drawn per class
    and row or column (:data:`A_EXPONENTS`, :data:`B_EXPONENTS`). So one program's
    accumulation of an element adds integers of one scale 2**(x + y), whose sum stays below
    2**24 -- exact in any order, on any MMA unit -- while the segments of one tile, reduced
    together, carry different scales per element, so their fp32 sum rounds differently in
    (nearly) every order. Classes are per K-iteration, so tiles sharing a row or column block
    must agree on them: tiles are taken greedily (most segments first) while every tile in the
    rectangle of their row and column blocks keeps each segment within one class, and A's rows
    and B's columns outside the rectangle are zero. With split-K any tiles can be covered together (the
    segments are the same for all); with Stream-K the covered tiles are ``tiles``. At most
    :data:`ORDER_MAX_TILES` tiles of at most :data:`ORDER_MAX_SEGMENTS` partials are covered.
    """
    sim = refsim.simulate(config)
    records = [r for r in sim.records if r.kernel == "gemm"]
    coords = {r.tile: (r.pid_m, r.pid_n) for r in records}
    segments = {}
    for r in records:
        segments.setdefault(r.tile, []).append((r.k_begin, r.k_end))
    segments = {tile: sorted(spans) for tile, spans in segments.items()}
    split = sorted(
        (f.tile for f in sim.fixups if len(segments[f.tile]) <= ORDER_MAX_SEGMENTS),
        key=lambda t: (-len(segments[t]), t),
    )
    rows, cols, tiles = set(), set(), []
    classes = np.zeros(config.iters_per_tile, dtype=int)
    for tile in split:
        if len(tiles) == ORDER_MAX_TILES:
            break
        new_rows, new_cols = rows | {coords[tile][0]}, cols | {coords[tile][1]}
        spans = [
            span
            for other, (pid_m, pid_n) in coords.items()
            if pid_m in new_rows and pid_n in new_cols
            for span in segments[other]
        ]
        labels = _k_classes(spans, config.iters_per_tile)
        if all(_distinct(labels, segments[t]) for t in (*tiles, tile)):
            rows, cols, classes = new_rows, new_cols, labels
            tiles.append(tile)
    for attempt in range(ORDER_ATTEMPTS):
        inputs = _scaled_inputs(config, classes, rows, cols, segments, seed + attempt)
        inputs = OrderInputs(*inputs, tuple(sorted(tiles)), {t: segments[t] for t in tiles})
        if all(len(equivalent_orders(config, inputs, t)) <= 2 for t in inputs.tiles):
            break
    return inputs


def _scaled_inputs(config, classes, rows, cols, segments, seed):
    """``(a, b, bias)`` for :func:`order_inputs`: K-``classes``, nonzero row and column blocks."""
    rng = np.random.default_rng(seed)
    k_class = np.repeat(classes, config.block_k)[: config.k]
    sign = np.where(k_class % 2 == 0, 1.0, -1.0)
    a_exponent = rng.integers(*A_EXPONENTS, (classes.max() + 1, config.m))[k_class].T
    b_exponent = rng.integers(*B_EXPONENTS, (classes.max() + 1, config.n))[k_class]
    longest = max((k1 - k0 for spans in segments.values() for k0, k1 in spans), default=1)
    magnitude = min(ORDER_MAGNITUDE, math.isqrt(2**24 // (longest * config.block_k)))
    a = rng.integers(1, magnitude + 1, (config.m, config.k)) * sign * 2.0**a_exponent
    b = rng.integers(-magnitude, magnitude + 1, (config.k, config.n)) * 2.0**b_exponent
    row_block = np.arange(config.m) // config.block_m
    col_block = np.arange(config.n) // config.block_n
    a[~np.isin(row_block, sorted(rows))] = 0.0
    b[:, ~np.isin(col_block, sorted(cols))] = 0.0
    bias = rng.integers(-4, 5, config.n).astype(np.float64)
    return a, b, bias


def reduce_in_order(tile_math, pid_m, pid_n, segments, order):
    """A split tile's fp32 value when its segments' partials (``segments`` in K order, each
    accumulated alone by ``tile_math``, a :class:`refsim.numerics.TileMath`) are added in
    ``order`` (indices into ``segments``), then the bias."""
    parts = [tile_math.accumulate(pid_m, pid_n, k_begin, k_end) for k_begin, k_end in segments]
    total = parts[order[0]]
    for i in order[1:]:
        total = total + parts[i]
    return tile_math.with_bias(total, pid_n)


def equivalent_orders(config, inputs, tile):
    """The orders of ``tile``'s partials that give the same fp32 bits as K order, for
    :class:`OrderInputs`; at least K order and, since the first two partials commute, the one
    that swaps them."""
    tile_math = numerics.TileMath(config, inputs.a, inputs.b, inputs.bias)
    pid_m, pid_n = tiling.grouped_tile(tile, config.num_pid_m, config.num_pid_n, config.group_m)
    spans = inputs.segments[tile]
    predicted = reduce_in_order(tile_math, pid_m, pid_n, spans, range(len(spans)))
    return [
        order
        for order in itertools.permutations(range(len(spans)))
        if np.array_equal(reduce_in_order(tile_math, pid_m, pid_n, spans, order), predicted)
    ]


def epilogue_inputs(case):
    """Exact integer products of 2048..4095 plus a bias with fractional bits (multiples of 1/4 in
    -8..8): in fp16 and bf16 the output rounds differently when the bias is added after a first
    cast than when the fp32 sum is cast once."""
    rng = np.random.default_rng(case.seed)
    a = rng.integers(-2, 3, (case.m, case.k)).astype(np.float64)
    b = rng.integers(-2, 3, (case.k, case.n)).astype(np.float64)
    a[:, 0] = 64.0
    b[0, :] = rng.integers(32, 64, case.n)
    bias = rng.integers(-32, 33, case.n) / 4.0
    return a, b, bias
