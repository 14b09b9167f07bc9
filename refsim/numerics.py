"""Exact numerics of a simulated run: every partial buffer and the output, in float32.

Inputs are first rounded to the configuration's dtype (as the kernel would load them), then
every work item accumulates ``acc += A_k @ B_k`` one BLOCK_K slice at a time in float32, and
split tiles are reduced in the order the run's :class:`~refsim.result.Fixup` records:

* ``owner-waits`` / ``last-arriver`` / ``split-k``: ``((p0 + p1) + p2) + ...`` in K order; each
  contributor's own partial is a workspace buffer.
* ``turnstile``: the same sums, but the workspace holds the running sum ``p0 + ... + pi``.
* ``atomic``: the owner adds ``p0 + bias``, everyone adds into a zeroed output in arrival order.

Bias is added once, in float32, by whoever finalises the tile. The output is the float32 value
before the kernel's final cast; tiles nobody finalised (a deadlocked run) stay NaN. With
integer-valued inputs in -4..4 every fp32 operation is exact, so the output equals the float64
product bit for bit.
"""

import dataclasses
import itertools

import numpy as np


@dataclasses.dataclass(frozen=True)
class Partial:
    """A workspace buffer written by ``program`` for ``tile``, holding K-iterations ``[k_begin, k_end)``.

    ``kind`` is ``"own"`` (the program's own K-range) or ``"running"`` (turnstile: the sum of
    every K-range up to and including this program's).
    """

    program: int
    tile: int
    k_begin: int
    k_end: int
    kind: str
    value: np.ndarray


def round_to_dtype(x, dtype):
    """``x`` rounded to fp16/bf16/fp32 (round to nearest even), returned as float32."""
    x32 = np.asarray(x, dtype=np.float32)
    if dtype == "fp16":
        with np.errstate(over="ignore"):  # beyond fp16's range becomes inf, as on the GPU
            return x32.astype(np.float16).astype(np.float32)
    if dtype == "bf16":
        bits = np.ascontiguousarray(x32).view(np.uint32)
        # Round half to even on the low 16 bits; in uint32 the sum wraps only for NaNs.
        rounded = bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))
        rounded &= np.uint32(0xFFFF0000)
        return rounded.view(np.float32).reshape(x32.shape)
    return x32.copy()


def check_inputs(config, a, b, bias):
    """Raise ValueError unless ``a`` is (M, K), ``b`` is (K, N), ``bias`` is (N,) or None, all finite."""
    expected: dict[str, tuple[int, ...]] = {"a": (config.m, config.k), "b": (config.k, config.n)}
    if bias is not None:
        expected["bias"] = (config.n,)
    for name, array in (("a", a), ("b", b), ("bias", bias)):
        if name not in expected:
            continue
        array = np.asarray(array)
        if array.shape != expected[name]:
            raise ValueError(f"{name} has shape {array.shape}, expected {expected[name]}")
        if not np.issubdtype(array.dtype, np.number) or np.issubdtype(
            array.dtype, np.complexfloating
        ):
            raise ValueError(f"{name} has dtype {array.dtype}, expected a real numeric array")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} contains NaN or infinity")


class TileMath:
    """Block products of one problem, tile by tile.

    Each block product ``A_k @ B_k`` (one BLOCK_K slice) is computed in float64 and rounded
    once to float32; only the sums across K-iterations and partials are float32 additions, in
    the order the run made them. A float32 BLAS product would not do: it sums a slice's
    BLOCK_K terms in an order that depends on the matrix shapes (blocking, FMA or not), so the
    same block would round differently when computed for one tile and for the whole output.
    In float64 every term is exact (a product of two float32 values) and the sum is accurate
    far below a float32 ulp, so the one rounding gives the same float32 whatever the shape,
    unless the sum lies within a few float64 ulps of a float32 rounding midpoint (about one
    element in 10^8 for random data); integer-valued inputs stay exact.
    """

    def __init__(self, config, a, b, bias):
        self.config = config
        self.a = round_to_dtype(a, config.dtype).astype(np.float64)
        self.b = round_to_dtype(b, config.dtype).astype(np.float64)
        self.bias = None if bias is None else round_to_dtype(bias, config.dtype)

    def region(self, pid_m, pid_n):
        c = self.config
        return (
            slice(pid_m * c.block_m, min(c.m, (pid_m + 1) * c.block_m)),
            slice(pid_n * c.block_n, min(c.n, (pid_n + 1) * c.block_n)),
        )

    def accumulate(self, pid_m, pid_n, k_begin, k_end):
        """fp32 accumulator of one tile over K-iterations ``[k_begin, k_end)``, in K order.

        The block products come from one batched float64 matmul (a short last block is
        zero-padded, which adds exact zeros), rounded to float32; ``np.add.accumulate`` then adds
        them one after another in float32, as ``acc += A_k @ B_k`` does.
        """
        c = self.config
        rows, cols = self.region(pid_m, pid_n)
        shape = (rows.stop - rows.start, cols.stop - cols.start)
        if k_end <= k_begin:
            return np.zeros(shape, dtype=np.float32)
        k0, k1 = k_begin * c.block_k, min(c.k, k_end * c.block_k)
        width = (k_end - k_begin) * c.block_k
        a = np.zeros((shape[0], width), dtype=np.float64)
        b = np.zeros((width, shape[1]), dtype=np.float64)
        a[:, : k1 - k0] = self.a[rows, k0:k1]
        b[: k1 - k0] = self.b[k0:k1, cols]
        blocks = k_end - k_begin
        products = np.matmul(
            a.reshape(shape[0], blocks, c.block_k).transpose(1, 0, 2),
            b.reshape(blocks, c.block_k, shape[1]),
        )
        return np.add.accumulate(products.astype(np.float32), axis=0, dtype=np.float32)[-1]

    def accumulate_all(self, records):
        """The fp32 accumulator of every record, in order, as :meth:`accumulate` computes it.

        When no two records of a tile overlap in K (every valid run), this sweeps K once: each
        K-iteration's block products for the whole output come from one matmul and are added
        into a running M x N accumulator, which is zeroed where a record starts and copied out
        where one ends. That is the same ``acc += A_k @ B_k`` sequence per tile, at the speed
        of a few large matmuls instead of one small batched matmul per record.
        """
        c = self.config
        ranges: dict[int, list[tuple[int, int]]] = {}
        for r in records:
            ranges.setdefault(r.tile, []).append((r.k_begin, r.k_end))
        overlapping = any(
            a[1] > b[0]
            for spans in map(sorted, ranges.values())
            for a, b in itertools.pairwise(spans)
        )
        if overlapping:
            return [self.accumulate(r.pid_m, r.pid_n, r.k_begin, r.k_end) for r in records]
        starts: dict[int, list] = {}
        ends: dict[int, list[int]] = {}
        results: list[np.ndarray | None] = [None] * len(records)
        for i, r in enumerate(records):
            if r.k_end <= r.k_begin:
                rows, cols = self.region(r.pid_m, r.pid_n)
                results[i] = np.zeros((rows.stop - rows.start, cols.stop - cols.start), np.float32)
            else:
                starts.setdefault(r.k_begin, []).append(r)
                ends.setdefault(r.k_end - 1, []).append(i)
        acc = np.zeros((c.m, c.n), dtype=np.float32)
        product = np.empty((c.m, c.n), dtype=np.float64)
        for k in range(min(starts, default=0), max(ends, default=-1) + 1):
            for r in starts.get(k, ()):
                acc[self.region(r.pid_m, r.pid_n)] = 0.0
            k0, k1 = k * c.block_k, min(c.k, (k + 1) * c.block_k)
            np.matmul(np.ascontiguousarray(self.a[:, k0:k1]), self.b[k0:k1], out=product)
            np.add(acc, product, out=acc, dtype=np.float32, casting="same_kind")
            for i in ends.get(k, ()):
                r = records[i]
                results[i] = acc[self.region(r.pid_m, r.pid_n)].copy()
        return results

    def with_bias(self, acc, pid_n):
        if self.bias is None:
            return acc
        return acc + self.bias[self.region(0, pid_n)[1]]


class InterpreterTileMath(TileMath):
    """Block products exactly as the kernels compute them under Triton's interpreter.

    There ``tl.dot`` is ``numpy.matmul(a, b, dtype=float32) + acc`` on the loaded blocks: a
    BLOCK_M x BLOCK_K block of A whose rows past M wrap around (``% M``), a BLOCK_K x BLOCK_N
    block of B whose columns wrap likewise, K past the end zero (bf16 blocks converted to
    float32 first, fp16 blocks passed as they are). This class makes the same numpy call on the
    same arrays, so its float32 products -- and with them every sum -- are the interpreter's
    bit for bit, for any inputs, not only exact ones. Slower than :class:`TileMath` (one small
    matmul per tile and K-iteration): meant for the small problems the interpreter runs.
    """

    def __init__(self, config, a, b, bias):
        super().__init__(config, a, b, bias)
        block_dtype = np.float16 if config.dtype == "fp16" else np.float32
        self.a_blocks = self.a.astype(block_dtype)
        self.b_blocks = self.b.astype(block_dtype)

    def accumulate(self, pid_m, pid_n, k_begin, k_end):
        region_rows, region_cols = self.region(pid_m, pid_n)
        acc = self.block(pid_m, pid_n, k_begin, k_end)
        return acc[: region_rows.stop - region_rows.start, : region_cols.stop - region_cols.start]

    def block(self, pid_m, pid_n, k_begin, k_end):
        """The whole ``BLOCK_M x BLOCK_N`` accumulator of :meth:`accumulate`, its rows past M
        and columns past N included (wrapped around, as the interpreter loads them)."""
        c = self.config
        rows = (pid_m * c.block_m + np.arange(c.block_m)) % c.m
        cols = (pid_n * c.block_n + np.arange(c.block_n)) % c.n
        acc = np.zeros((c.block_m, c.block_n), dtype=np.float32)
        for k in range(k_begin, k_end):
            k_idx = k * c.block_k + np.arange(c.block_k)
            inside = k_idx < c.k
            a = np.zeros((c.block_m, c.block_k), dtype=self.a_blocks.dtype)
            b = np.zeros((c.block_k, c.block_n), dtype=self.b_blocks.dtype)
            a[:, inside] = self.a_blocks[np.ix_(rows, k_idx[inside])]
            b[inside, :] = self.b_blocks[np.ix_(k_idx[inside], cols)]
            acc = np.matmul(a, b, dtype=np.float32) + acc
        return acc

    def accumulate_all(self, records):
        return [self.accumulate(r.pid_m, r.pid_n, r.k_begin, r.k_end) for r in records]


BLOCK_PRODUCTS = {"float64": TileMath, "interpreter": InterpreterTileMath}


def compute(config, records, fixups, a, b, bias=None, products="float64"):
    """``(output, partials)`` for a run's records and fixups; see the module docstring.

    ``products`` chooses how block products are computed (:data:`BLOCK_PRODUCTS`): ``"float64"``
    rounded once (:class:`TileMath`), or ``"interpreter"`` as Triton's interpreter does
    (:class:`InterpreterTileMath`).
    """
    check_inputs(config, a, b, bias)
    if products not in BLOCK_PRODUCTS:
        raise ValueError(f"products={products!r}: accepted values are {sorted(BLOCK_PRODUCTS)}")
    math = BLOCK_PRODUCTS[products](config, a, b, bias)
    output = np.full((config.m, config.n), np.nan, dtype=np.float32)
    split = {f.tile: f for f in fixups}
    own = {}
    coords = {}
    records = [r for r in records if r.kernel == "gemm"]
    for r, acc in zip(records, math.accumulate_all(records)):
        coords[r.tile] = (r.pid_m, r.pid_n)
        if r.tile in split:
            own[(r.tile, r.program)] = (acc, r.k_begin, r.k_end)
        elif r.finalizes:
            output[math.region(r.pid_m, r.pid_n)] = math.with_bias(acc, r.pid_n)
    partials = []
    for fixup in fixups:
        if any((fixup.tile, p) not in own for p in fixup.contributors):
            continue  # a contributor never ran (deadlock): the tile stays unfinalised
        pid_m, pid_n = coords[fixup.tile]
        total, stored = _reduce(fixup, own, math, pid_n)
        partials.extend(stored)
        output[math.region(pid_m, pid_n)] = total
    return output, partials


def _reduce(fixup, own, math, pid_n):
    """The finalised value of a split tile and the workspace buffers written on the way."""
    tile, programs = fixup.tile, fixup.contributors
    parts = [own[(tile, p)] for p in programs]
    stored: list[Partial] = []
    if fixup.protocol == "atomic":
        total = np.zeros_like(parts[0][0])
        for program in fixup.order:
            acc = own[(tile, program)][0]
            total = total + (math.with_bias(acc, pid_n) if program == programs[0] else acc)
        return total, stored
    total = parts[0][0]
    if fixup.protocol == "turnstile":
        stored.append(Partial(programs[0], tile, 0, parts[0][2], "running", total))
    for i, (acc, _k_begin, k_end) in enumerate(parts[1:], start=1):
        total = total + acc
        if fixup.protocol == "turnstile" and i < len(parts) - 1:
            stored.append(Partial(programs[i], tile, 0, k_end, "running", total))
    if fixup.protocol != "turnstile":
        writers = programs[1:] if fixup.protocol == "owner-waits" else programs
        stored = [
            Partial(p, tile, own[(tile, p)][1], own[(tile, p)][2], "own", own[(tile, p)][0])
            for p in writers
        ]
    return math.with_bias(total, pid_n), stored
