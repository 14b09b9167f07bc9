"""The cost model's choice for ``strategy="auto"``: refsim simulates the candidates.

On a CUDA device whose refsim profile has a calibration (shipped with refsim or installed with
:func:`kernels.auto.use_calibration`), auto without overrides lets refsim choose
(:func:`model_choice`):
the candidates of :func:`model_candidates` are simulated with the calibration within
``MODEL_BUDGET_ITEMS`` simulated work items, the rule's own first and then the most promising
by :func:`wave_estimate_us`, and the least predicted makespan wins (for a batch, among
data-parallel candidates). The budget counts work, not time, so a shape gets the same answer
on every machine and in every process.

This is the one module of ``kernels`` that runs refsim's simulator (the layer table in
CONTRIBUTING.md); :mod:`kernels.auto` loads it on the first choice that asks the model, and
nothing here imports :mod:`kernels.auto`.
"""

from refsim.api import simulate
from refsim.config import GemmConfig, fitting_block
from refsim.tiling import cdiv

from .rule import GPU_BLOCKS, SKINNY, choose, gpu_blocks

# The model's budget for a new shape in simulated work items (refsim simulates about 100
# items a millisecond on one slow core, so about 50 ms).
MODEL_BUDGET_ITEMS = 5000


def model_candidates(m, n, k, dtype, units, batch=1):
    """Option dicts the model compares, the rule's own choice first, then for every block of
    ``GPU_BLOCKS`` (or the decode-like block) data-parallel and the rule's choice for that
    block; a batch only data-parallel.

    The model chooses the block, and for each block between the rule's choice and
    data-parallel: a calibration measures data-parallel K-iterations, not Stream-K's fixups or
    split-K's reduction launch, so the model is not trusted to pick those freely (the evidence:
    docs/gpu/model-accuracy-h200.md)."""
    rule_blocks = gpu_blocks(m, n, dtype, units, batch)
    strategy, options = choose(m, n, k, units, *rule_blocks)
    if batch > 1:
        strategy, options = "data_parallel", {}
    blocks = [rule_blocks] if min(m, n) <= SKINNY else list(GPU_BLOCKS[dtype])
    found = [dict(_block_options(rule_blocks, m, n), strategy=strategy, **options)]
    for block in blocks:
        fitted = _block_options(block, m, n)
        found.append(dict(fitted, strategy="data_parallel"))
        if batch == 1:
            own_strategy, own_options = choose(
                m, n, k, units, fitted["block_m"], fitted["block_n"], fitted["block_k"]
            )
            found.append(dict(fitted, strategy=own_strategy, **own_options))
    unique = []
    for candidate in found:
        if candidate not in unique:
            unique.append(candidate)
    return unique


def _block_options(block, m, n):
    return {
        "block_m": min(block[0], fitting_block(m)),
        "block_n": min(block[1], fitting_block(n)),
        "block_k": block[2],
    }


def wave_estimate_us(m, n, k, options, timing, units):
    """A quick estimate of a candidate's time from its block's calibrated ``timing``: whole
    waves of work items, each ``item_us + iterations * iteration_us`` (split-K: a slice's
    iterations, its reduction launch left out; Stream-K: its K-iterations spread evenly, plus
    two items' fixed cost). It only orders the candidates the model simulates."""
    tiles = cdiv(m, options["block_m"]) * cdiv(n, options["block_n"])
    iters = cdiv(k, options["block_k"])
    item, iteration = timing.item_us, timing.iteration_us
    if options["strategy"] == "streamk":
        return cdiv(tiles * iters, units) * iteration + 2 * item
    split = options.get("split_k", 1)
    return cdiv(tiles * split, units) * (item + cdiv(iters, split) * iteration)


def simulated_items(config):
    """The work items refsim simulates for ``config``: its tiles, times the slices of split-K
    plus its reduction's row bands, plus a Stream-K grid's items (the cost of a simulation
    grows with them)."""
    tiles = cdiv(config.m, config.block_m) * cdiv(config.n, config.block_n)
    if config.scheme.reduction_launch:
        return tiles * (config.split_k + (config.reduce_bands if config.split_k > 1 else 0))
    static_split = config.scheme.splits_tiles and not config.scheme.dynamic
    return tiles + (config.grid if static_split else 0)


def model_choice(
    m, n, k, dtype, profile, units, calibration, batch=1, budget_items=MODEL_BUDGET_ITEMS
):
    """The candidate of :func:`model_candidates` with the least predicted makespan under
    ``calibration`` (for refsim profile ``profile`` with ``units`` SMs), among those whose block
    the calibration measured: its GemmConfig options (blocks, strategy and the strategy's
    own), or None when it measured none of them.

    Candidates are simulated while their :func:`simulated_items` fit in ``budget_items``: the
    rule's choice first (always, so it is among those compared), then the others by
    :func:`wave_estimate_us`, most promising first, each skipped when it would overrun the
    budget. A batch is simulated as one product of its products' rows stacked (the same tiles
    in the same waves, for the data-parallel candidates a batch has)."""
    measured = []
    for options in model_candidates(m, n, k, dtype, units, batch):
        blocks = (options["block_m"], options["block_n"], options["block_k"])
        timing = calibration.timing(dtype, *blocks)
        if timing is not None:
            measured.append((wave_estimate_us(m * batch, n, k, options, timing, units), options))
    if not measured:
        return None
    first, rest = measured[0], sorted(measured[1:], key=lambda pair: pair[0])
    best, spent = None, 0
    for _, options in [first, *rest]:
        try:
            config = GemmConfig(
                m * batch, n, k, dtype=dtype, device=profile, cus=units, xcds=1, **options
            )
        except ValueError:
            continue
        items = simulated_items(config)
        if best is not None and spent + items > budget_items:
            continue
        spent += items
        makespan = simulate(config, calibration=calibration).makespan_us
        if best is None or makespan < best[0]:
            best = (makespan, options)
    return None if best is None else best[1]
