"""``strategy="auto"``: a strategy and configuration per (shape, dtype, device), by a fixed rule.

The rule (documented in docs/torch-api.md), with ``units`` the device's SMs/CUs, ``tiles`` the
output tiles and ``iters`` the K-iterations of one tile:

1. ``iters < 4``: ``data_parallel`` -- too little K to be worth splitting.
2. ``tiles % units == 0`` or ``tiles >= 4 * units``: ``data_parallel`` -- whole waves, or a
   partial last wave that costs at most a fifth of the run.
3. ``tiles * 2 <= units``: ``split_k`` with ``min(units // tiles, iters // 2)`` slices -- too
   few tiles to fill the device.
4. otherwise ``streamk`` (two-tile hybrid) with the ``last-arriver`` fixup: the partial last
   wave is shared out by K-iterations, and no program ever waits on another, so any grid runs.

Blocks: 128x128x64 for fp16/bf16 and 128x128x32 for fp32 on a GPU; 32x32x32 under the
interpreter. A skinny side takes a smaller block: ``block_m`` at most the next power of two
of M (at least 16), likewise ``block_n`` for N, so that M = 1 does not compute 127 dead rows.
Explicit overrides win over the rule: blocks and machine options are used as given, and an
option that only one strategy takes (``fixup=...``, ``split_k=...``, ``counters_per_xcd=...``)
selects that strategy, as an explicit ``strategy=...`` does.
Configurations are cached per key, so a repeated call does no host work beyond one dictionary
lookup; the overrides are part of the key as a frozen tuple (:func:`freeze_overrides`).
"""

import dataclasses
import functools

from refsim.config import STRATEGIES, GemmConfig, fitting_block, option_strategies
from refsim.tiling import cdiv

from .device import device_config
from .dtypes import dtype_name

GPU_BLOCKS = {"fp16": (128, 128, 64), "bf16": (128, 128, 64), "fp32": (128, 128, 32)}
INTERPRETER_BLOCKS = (32, 32, 32)
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


def choose(m, n, k, units, block_m, block_n, block_k):
    """``(strategy, options)`` of the rule in the module docstring."""
    tiles = cdiv(m, block_m) * cdiv(n, block_n)
    iters = cdiv(k, block_k)
    if iters < 4 or tiles % units == 0 or tiles >= 4 * units:
        return "data_parallel", {}
    if tiles * 2 <= units:
        return "split_k", {"split_k": max(2, min(units // tiles, iters // 2))}
    return "streamk", {"fixup": "last-arriver", "sk_hybrid": "two-tile"}


def freeze_overrides(overrides):
    """GemmConfig overrides (a mapping) as a cache key: ``(name, value)`` pairs sorted by name.

    TypeError for a name that is not in :data:`OVERRIDABLE`, naming the accepted ones.
    """
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:
        raise TypeError(
            f"unknown configuration override {', '.join(unknown)}; accepted (GemmConfig's "
            f"fields): {', '.join(OVERRIDABLE)}"
        )
    return tuple(sorted(overrides.items()))


@functools.lru_cache(maxsize=4096)
def config_for(m, n, k, dtype, device, strategy="auto", overrides=()):
    """The GemmConfig for one GEMM: ``strategy`` (or the rule, for ``"auto"``) and
    ``overrides``, GemmConfig fields as :func:`freeze_overrides` gives them (hashable: they are
    part of the cache key).
    """
    name = dtype_name(dtype)
    options = dict(overrides)
    block_m, block_n, block_k = GPU_BLOCKS[name] if device.type == "cuda" else INTERPRETER_BLOCKS
    options.setdefault("block_m", min(block_m, fitting_block(m)))
    options.setdefault("block_n", min(block_n, fitting_block(n)))
    options.setdefault("block_k", block_k)
    if strategy == "auto":
        strategy = _implied_strategy(options)
    if strategy == "auto":
        probe = device_config(m, n, k, name, device, **dict(options, strategy="data_parallel"))
        strategy, chosen = choose(m, n, k, probe.cus, probe.block_m, probe.block_n, probe.block_k)
        for field, value in chosen.items():
            options.setdefault(field, value)
    return device_config(m, n, k, name, device, **dict(options, strategy=strategy))
