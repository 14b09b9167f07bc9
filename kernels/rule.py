"""The fixed rule of ``strategy="auto"``: blocks and a strategy from the shape alone.

With ``units`` the device's SMs/CUs, ``tiles`` the output tiles (of every product of a batch)
and ``iters`` the K-iterations of one tile:

* Blocks, on a GPU (:func:`gpu_blocks`): M or N of at most ``SKINNY`` (decode-like) takes the
  first block of ``GPU_BLOCKS[dtype]`` with its skinny side cut to that side's next power of
  two (at least 16); otherwise the first of ``GPU_BLOCKS[dtype]`` with the least
  wave-quantised cost, ``ceil(tiles / units) * BLOCK_M * BLOCK_N / BLOCK_EFFICIENCY``. Each
  side is at most the next power of two of its dimension. Under the interpreter, 32x32x32
  (capped the same way).
* Strategy (:func:`choose`): ``data_parallel`` when ``iters < 4``, when the tiles fill whole
  waves or a last wave at least ``FULL_LAST_WAVE`` full, or from ``DATA_PARALLEL_WAVES``
  waves up; ``split_k`` with :func:`spread_split` slices when ``tiles * 2 <= units`` and
  ``iters >= SPREAD_ITERS`` (``streamk`` with the ``last-arriver`` fixup for decode-like
  blocks); otherwise ``data_parallel``.

The thresholds and block efficiencies are measured; the measurements behind each, and how the
rule's choices compare with the alternatives, are in docs/torch-api.md ("auto") and the files
it cites under docs/gpu/.
"""

from refsim.config import fitting_block
from refsim.tiling import cdiv

# Blocks auto considers on a GPU, by dtype, largest first (gpu_blocks).
GPU_BLOCKS = {
    "fp16": ((128, 256, 64), (128, 128, 64)),
    "bf16": ((128, 256, 64), (128, 128, 64)),
    "fp32": ((128, 128, 32),),
}
# Throughput per FLOP of a block's K-loop relative to 128x256x64, as measured on the H200
# (docs/gpu/hopper-variants-h200.md).
BLOCK_EFFICIENCY = {(128, 256, 64): 1.0, (128, 128, 64): 0.88, (128, 128, 32): 1.0}
# M or N up to this is a decode-like product (its block: the first of GPU_BLOCKS, the skinny
# side cut down).
SKINNY = 16
INTERPRETER_BLOCKS = (32, 32, 32)
# A partial last wave is left to data-parallel from this many waves up, or when it is at
# least this full.
DATA_PARALLEL_WAVES = 2
FULL_LAST_WAVE = 0.8
# K-iterations from which fewer tiles than half the units are shared out (rule 3): by
# split-K in slices of at least MIN_SLICE_ITERS K-iterations, at most MAX_SPLIT of them.
SPREAD_ITERS = 64
MIN_SLICE_ITERS = 16
MAX_SPLIT = 16


def gpu_blocks(m, n, dtype, units, batch=1):
    """``(block_m, block_n, block_k)`` of the rule in the module docstring, on a GPU."""
    if min(m, n) <= SKINNY:
        block_m, block_n, block_k = GPU_BLOCKS[dtype][0]
        return min(block_m, fitting_block(m)), min(block_n, fitting_block(n)), block_k
    best = None
    for block in GPU_BLOCKS[dtype]:
        block_m, block_n = min(block[0], fitting_block(m)), min(block[1], fitting_block(n))
        waves = cdiv(cdiv(m, block_m) * cdiv(n, block_n) * batch, units)
        cost = waves * block_m * block_n / BLOCK_EFFICIENCY[block]
        if best is None or cost < best[0]:
            best = (cost, (block_m, block_n, block[2]))
    return best[1]


def choose(m, n, k, units, block_m, block_n, block_k):
    """``(strategy, options)`` of the rule in the module docstring."""
    tiles = cdiv(m, block_m) * cdiv(n, block_n)
    iters = cdiv(k, block_k)
    whole_waves = tiles % units == 0 or tiles % units >= FULL_LAST_WAVE * units
    if iters < 4 or whole_waves or tiles >= DATA_PARALLEL_WAVES * units:
        return "data_parallel", {}
    if tiles * 2 <= units and iters >= SPREAD_ITERS:
        if min(block_m, block_n) <= SKINNY:
            return "streamk", {"fixup": "last-arriver"}
        return "split_k", {"split_k": spread_split(tiles, iters, units)}
    return "data_parallel", {}


def spread_split(tiles, iters, units):
    """Split-K's slices under rule 3: the largest power of two that keeps ``tiles * split``
    within one wave of ``units``, at most ``MAX_SPLIT``, each slice at least
    ``MIN_SLICE_ITERS`` K-iterations. Rule 3's conditions (``tiles * 2 <= units``, ``iters >=
    SPREAD_ITERS``) make it at least 2; outside them it can be 1."""
    split = 1
    while (
        tiles * split * 2 <= units
        and split * 2 <= MAX_SPLIT
        and iters // (split * 2) >= MIN_SLICE_ITERS
    ):
        split *= 2
    return split
