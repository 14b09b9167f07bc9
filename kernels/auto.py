"""``strategy="auto"``: a strategy and configuration per (shape, dtype, device), by a fixed rule.

The rule (documented in docs/torch-api.md), with ``units`` the device's SMs/CUs, ``tiles`` the
output tiles (of every product of a batch) and ``iters`` the K-iterations of one tile:

Blocks, on a GPU (:func:`gpu_blocks`):

* M or N of at most ``SKINNY`` (decode-like): the first block of ``GPU_BLOCKS[dtype]`` with
  its skinny side cut to that side's next power of two (at least 16): 16x256x64 or 128x16x64
  in bf16 -- a 16-row block does not compute 112 dead rows. On the H200, auto with these
  blocks ran every decode-like suite shape faster than with 16x64 and 64x16 (two runs);
  data-parallel alone was faster with 16x64 at 8x8192x8192 and with 64x16 at 8192x8x8192.
* otherwise the first of ``GPU_BLOCKS[dtype]`` with the least wave-quantised cost,
  ``ceil(tiles / units) * BLOCK_M * BLOCK_N / BLOCK_EFFICIENCY``: 128x256x64 where its tiles
  fill the waves, 128x128x64 where halving the tile saves a wave.

Each block side is at most the next power of two of its dimension. Under the interpreter,
32x32x32 (capped the same way). Then the strategy (:func:`choose`):

1. ``iters < 4``: ``data_parallel`` -- too little K to be worth splitting.
2. ``tiles % units == 0``, a last wave at least ``FULL_LAST_WAVE`` (80%) full, or
   ``tiles >= 2 * units``: ``data_parallel`` -- whole waves, or a partial last wave that costs
   little (measured on the H200: Stream-K's fixup cost more than the partial wave from two
   waves up, and at 130 tiles on 132 SMs).
3. ``tiles * 2 <= units`` and ``iters >= SPREAD_ITERS`` (64): ``split_k`` with
   :func:`spread_split` slices -- the largest power of two that keeps ``tiles * split``
   within one wave, at most ``MAX_SPLIT`` (16), each slice at least ``MIN_SLICE_ITERS`` (16)
   K-iterations: too few tiles to fill the device, and enough K to share out. Decode-like
   blocks (M or N at most ``SKINNY``) take ``streamk`` with the ``last-arriver`` fixup here
   instead. Measured on the H200 (bf16, docs/gpu/auto-candidates-h200.csv, the 10 suite
   shapes of this case with both block sides above 16): split-K as this rule sets it ran at
   0.58-1.14 of ``torch.matmul`` (geomean 0.76), where Stream-K last-arriver, the rule's
   earlier choice, ran at 0.22-0.94 in the suite; the best of 20-30 candidates per shape
   (blocks from 64x64 up, Stream-K, split-K x2-x16) was up to 1.24x faster, 1.07x in
   geomean. Stream-K last-arriver on the decode-like blocks ran at 0.82-0.94 on 8 of the 9
   decode-like suite shapes of this case (docs/gpu/suite-h200.csv), and at 0.61 on
   8192x8x8192, where split-K x4 ran at 0.82 (that shape is bound by reading A's 128 MiB);
   split-K was not measured on the other eight.
4. otherwise ``data_parallel``: of the 10 suite shapes this leaves to data-parallel,
   Stream-K last-arriver (same block) was slower on 7 -- 1.9-2.9x on the small-K ones
   (256^3, 512^3, 64x512x512, 1024^3) -- and faster on 3 by at most 14%.

A batch of products (``kernels.bmm``, batched ``kernels.matmul``) runs data-parallel in one
launch over every product's tiles, with the blocks above for the whole batch's tile count.
Explicit overrides win over the rule: blocks and machine options are used as given, and an
option that only one strategy takes (``fixup=...``, ``split_k=...``, ``counters_per_xcd=...``)
selects that strategy, as an explicit ``strategy=...`` does.
Configurations are cached per key, so a repeated call does no host work beyond one dictionary
lookup; the overrides are part of the key as a frozen tuple (:func:`freeze_overrides`).

**The model.** On a CUDA device whose refsim profile has a calibration (shipped with refsim or
installed with :func:`use_calibration`), auto without overrides lets refsim choose
(:func:`model_choice`): the candidates of :func:`model_candidates` are simulated with the
calibration within ``MODEL_BUDGET_ITEMS`` simulated work items, the rule's own first and then
the most promising by :func:`wave_estimate_us`, and the least predicted makespan wins (for a
batch, among data-parallel candidates). The budget counts work, not time, so a shape gets the
same answer on every machine and in every process. The rule is the fallback where there is no
calibration.

**Tuned tables.** A lookup table built from a refsim sweep (``refsim.sweep.answers.table``)
replaces the rule where it has an answer: :func:`use_table` installs one (a path to its JSON or
the dict), or ``REFSIM_TABLE`` names one or more (``os.pathsep``-separated; read at the first
choice, when :func:`use_table` was not called). One table per device profile; installing
clears the configuration cache. A choice uses the table of the device's profile when a bucket
has the same dtype and unit count and holds M, N and K (``[low, high)`` each); elsewhere the
rule applies. The bucket's strategy and options are adapted to what the kernels run and what
auto promises: blocks at most the next power of two of their dimension, ``sk_tiles`` and
``split_k`` at most the problem's tiles and K-iterations, no ``grid`` for strategies of a fixed
grid, the kernels' own schedule hooks (``KERNEL_SCHEDULES``), the ``last-arriver`` fixup (no
waiting, deterministic; a work-stealing entry keeps no Stream-K tail). Explicit overrides win.
"""

import dataclasses
import functools
import json
import os

from refsim.api import simulate
from refsim.calibration import Calibration
from refsim.calibration import for_profile as shipped_calibration
from refsim.calibration import load as load_calibration
from refsim.config import HOOKS, STRATEGIES, GemmConfig, fitting_block, option_strategies
from refsim.tiling import cdiv

from .device import device_config, device_profile
from .dtypes import dtype_name
from .workspace import cuda_index

# Blocks auto considers on a GPU, by dtype, largest first (gpu_blocks).
GPU_BLOCKS = {
    "fp16": ((128, 256, 64), (128, 128, 64)),
    "bf16": ((128, 256, 64), (128, 128, 64)),
    "fp32": ((128, 128, 32),),
}
# Throughput per FLOP of a block's K-loop relative to 128x256x64, measured on the H200
# (docs/gpu/hopper-variants-h200.md: 128x128x64 ran at 0.83-0.90 of 128x256x64).
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
# GemmConfig's fields a caller may set; the sizes and dtype come from the operands, and the
# strategy is an argument of its own.
OVERRIDABLE = tuple(
    field.name
    for field in dataclasses.fields(GemmConfig)
    if field.name not in ("m", "n", "k", "dtype", "strategy")
)


def _implied_strategy(options):
    """The first strategy (in ``STRATEGIES`` order) that takes every given option, or ``"auto"``
    when they all apply to every strategy; ValueError when no strategy takes them all.

    ``fixup`` belongs to Stream-K and to work stealing's Stream-K tail: it implies Stream-K.
    """
    candidates = set(STRATEGIES)
    specific = sorted(o for o in options if set(option_strategies(o)) != set(STRATEGIES))
    for option in specific:
        candidates &= set(option_strategies(option))
    if not candidates:
        raise ValueError(f"options {', '.join(specific)} belong to different strategies")
    if not specific:
        return "auto"
    return min(candidates, key=STRATEGIES.index)


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


def freeze_overrides(overrides):
    """GemmConfig overrides (a mapping) as a cache key: ``(name, value)`` pairs sorted by name.

    TypeError for a name that is not in :data:`OVERRIDABLE`, naming the accepted ones.
    """
    if not overrides:
        return ()
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:
        raise TypeError(
            f"unknown configuration override {', '.join(unknown)}; accepted (GemmConfig's "
            f"fields): {', '.join(OVERRIDABLE)}"
        )
    return tuple(sorted(overrides.items()))


@functools.lru_cache(maxsize=4096)
def config_for(m, n, k, dtype, device, strategy="auto", overrides=(), batch=1):
    """The GemmConfig for one GEMM (one product of a batch of ``batch``): ``strategy`` (or, for
    ``"auto"``, the installed table's answer, else the rule) and ``overrides``, GemmConfig
    fields as :func:`freeze_overrides` gives them (hashable: they are part of the cache key).
    """
    name = dtype_name(dtype)
    options = dict(overrides)
    if strategy == "auto":
        strategy = _implied_strategy(options)
    if strategy == "auto" and batch == 1:  # a table answers for single products
        tuned = _tuned_config(m, n, k, name, device, options)
        if tuned is not None:
            return tuned
    if strategy == "auto" and device.type == "cuda" and not options:
        modelled = _modelled_config(m, n, k, name, device, batch)
        if modelled is not None:
            return modelled
    if strategy == "auto" and batch > 1:
        strategy = "data_parallel"
    if device.type == "cuda":
        units = options.get("cus") or device_profile(cuda_index(device))[1]
        block_m, block_n, block_k = gpu_blocks(m, n, name, units, batch)
    else:
        block_m, block_n, block_k = INTERPRETER_BLOCKS
    options.setdefault("block_m", min(block_m, fitting_block(m)))
    options.setdefault("block_n", min(block_n, fitting_block(n)))
    options.setdefault("block_k", block_k)
    if strategy == "auto":
        probe = device_config(m, n, k, name, device, **dict(options, strategy="data_parallel"))
        strategy, chosen = choose(m, n, k, probe.cus, probe.block_m, probe.block_n, probe.block_k)
        for field, value in chosen.items():
            options.setdefault(field, value)
    return device_config(m, n, k, name, device, **dict(options, strategy=strategy))


# The model's choice (model_choice): its budget for a new shape in simulated work items (refsim
# simulates about 100 items a millisecond on one slow core, so about 50 ms), and the
# calibrations installed with use_calibration by profile name (the shipped ones otherwise).
MODEL_BUDGET_ITEMS = 5000
_calibrations: dict = {}


def use_calibration(calibration):
    """Install a calibration (a ``refsim.calibration.Calibration`` or the path of one) for its
    profile, so that auto on that device lets the model choose; None removes every installed
    one (the shipped calibrations remain). Clears the configuration cache."""
    if calibration is None:
        _calibrations.clear()
    else:
        if not isinstance(calibration, Calibration):
            calibration = load_calibration(calibration)
        _calibrations[calibration.profile] = calibration
    config_for.cache_clear()


def calibration_of(profile_name):
    """The calibration auto uses for a profile: the installed one, else the shipped one."""
    return _calibrations.get(profile_name) or shipped_calibration(profile_name)


def model_candidates(m, n, k, dtype, units, batch=1):
    """Option dicts the model compares, the rule's own choice first, then for every block of
    ``GPU_BLOCKS`` (or the decode-like block) data-parallel and the rule's choice for that
    block; a batch only data-parallel.

    The model chooses the block, and for each block between the rule's choice and
    data-parallel: a calibration measures data-parallel K-iterations, not Stream-K's fixups or
    split-K's reduction launch, and on the H200 letting it pick those freely chose Stream-K where it
    ran 2-4x slower than predicted (docs/gpu/model-accuracy-h200.md)."""
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
    if config.strategy == "split_k":
        return tiles * (config.split_k + (config.reduce_bands if config.split_k > 1 else 0))
    return tiles + (config.grid if config.strategy == "streamk" else 0)


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


# Installed lookup tables by device profile name; None until use_table or REFSIM_TABLE fills it.
_tables = None
# The options of a table's answer that auto passes on (the machine's own come from the device).
TABLE_OPTIONS = (
    "block_m",
    "block_n",
    "block_k",
    "group_m",
    "grid",
    "sk_tiles",
    "sk_hybrid",
    "fixup",
    "counters_per_xcd",
    "global_counter",
    "split_k",
    "xcd_remap",
    "xcd_chunk",
    *HOOKS,
)
FIXED_GRID = ("data_parallel", "split_k")
BUCKET_KEYS = ("dtype", "cus", "m", "n", "k", "strategy", "options")


def _load_table(table):
    """A table as a dict: ``table`` itself, or the JSON at that path; ValueError when it is not
    a lookup table."""
    if not isinstance(table, dict):
        with open(table) as file:
            table = json.load(file)
    if not isinstance(table, dict) or not isinstance(table.get("buckets"), list):
        raise ValueError("not a lookup table: expected a dict with 'device' and a 'buckets' list")
    if "device" not in table:
        raise ValueError("lookup table has no 'device'")
    for bucket in table["buckets"]:
        missing = [key for key in BUCKET_KEYS if key not in bucket]
        if missing:
            raise ValueError(f"lookup table bucket lacks {', '.join(missing)}: {bucket}")
    return table


def use_table(table):
    """Install a lookup table for its device (a path to its JSON, or the dict); None removes
    every table. Clears the configuration cache, so no choice made before is served again."""
    global _tables
    if table is None:
        _tables = {}
    else:
        loaded = _load_table(table)
        _tables = {**_installed_tables(), loaded["device"]: loaded}
    config_for.cache_clear()


def _installed_tables():
    """The installed tables, reading ``REFSIM_TABLE`` the first time when nothing was installed."""
    global _tables
    if _tables is None:
        paths = [p for p in os.environ.get("REFSIM_TABLE", "").split(os.pathsep) if p]
        _tables = {table["device"]: table for table in map(_load_table, paths)}
    return _tables


def table_entry(m, n, k, dtype, device_name, units):
    """The installed table's bucket holding this GEMM (dtype name, profile name, unit count),
    or None."""
    table = _installed_tables().get(device_name)
    if table is None:
        return None
    for bucket in table["buckets"]:
        if (
            bucket["dtype"] == dtype
            and bucket["cus"] == units
            and all(
                low <= size < high
                for size, (low, high) in zip((m, n, k), (bucket[d] for d in "mnk"))
            )
        ):
            return bucket
    return None


def _modelled_config(m, n, k, dtype, device, batch=1):
    """The model's choice on CUDA ``device`` when its profile has a calibration, else None; the
    profile's own SM count, so the config is the one the device runs."""
    profile, units = device_profile(cuda_index(device))
    calibration = calibration_of(profile.name)
    if calibration is None or profile.vendor != "nvidia":
        return None
    chosen = model_choice(m, n, k, dtype, profile, units, calibration, batch)
    return None if chosen is None else device_config(m, n, k, dtype, device, **chosen)


def _tuned_config(m, n, k, dtype, device, overrides):
    """The config of the installed table's answer for this GEMM, adapted (module docstring), or
    None on a miss."""
    from .launch import KERNEL_SCHEDULES

    machine = {f: overrides[f] for f in ("device", "cus", "xcds") if f in overrides}
    probe = device_config(m, n, k, dtype, device, **dict(machine, strategy="data_parallel"))
    entry = table_entry(m, n, k, dtype, probe.profile.name, probe.cus)
    if entry is None:
        return None
    strategy = entry["strategy"]
    options = {f: v for f, v in entry["options"].items() if f in TABLE_OPTIONS and v is not None}
    for field, size in (("block_m", m), ("block_n", n), ("block_k", k)):
        if field in options:
            options[field] = min(options[field], fitting_block(size))
    for field in KERNEL_SCHEDULES:  # the strategy's default is the schedule the kernels follow
        options.pop(field, None)
    if strategy in FIXED_GRID:
        options.pop("grid", None)
    if strategy == "work_stealing":
        options.pop("sk_tiles", None)
        options.pop("fixup", None)
    if strategy == "streamk":
        options["fixup"] = "last-arriver"
    capped = {f: options.pop(f) for f in ("sk_tiles", "split_k") if f in options}
    config = device_config(m, n, k, dtype, device, **dict(options, **overrides, strategy=strategy))
    limits = {"sk_tiles": config.total_tiles, "split_k": config.iters_per_tile}
    fitted = {f: min(v, limits[f]) for f, v in capped.items() if f not in overrides}
    return config.replace(**fitted) if fitted else config
