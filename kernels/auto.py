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
Explicit overrides (``block_m=...``, ``strategy=...``, ``fixup=...``) win over the rule.
Configurations are cached per key, so a repeated call does no host work beyond one dictionary
lookup.
"""

import ast
import functools

from refsim.tiling import cdiv

from .launch import TORCH_DTYPES, device_config

GPU_BLOCKS = {"fp16": (128, 128, 64), "bf16": (128, 128, 64), "fp32": (128, 128, 32)}
INTERPRETER_BLOCKS = (32, 32, 32)
DTYPE_NAMES = {dtype: name for name, dtype in TORCH_DTYPES.items()}


def _fitting_block(size):
    """The next power of two of ``size``, at least 16 (tl.dot's smallest)."""
    return max(16, 1 << (size - 1).bit_length())


def choose(m, n, k, units, block_m, block_n, block_k):
    """``(strategy, options)`` of the rule in the module docstring."""
    tiles = cdiv(m, block_m) * cdiv(n, block_n)
    iters = cdiv(k, block_k)
    if iters < 4 or tiles % units == 0 or tiles >= 4 * units:
        return "data_parallel", {}
    if tiles * 2 <= units:
        return "split_k", {"split_k": max(2, min(units // tiles, iters // 2))}
    return "streamk", {"fixup": "last-arriver", "sk_hybrid": "two-tile"}


@functools.lru_cache(maxsize=4096)
def config_for(m, n, k, dtype, device, strategy="auto", overrides=""):
    """The GemmConfig for one GEMM: ``strategy`` (or the rule, for ``"auto"``) and
    ``overrides``, GemmConfig fields as ``"name=repr;..."`` (a string: it is part of the cache
    key).
    """
    name = DTYPE_NAMES[dtype]
    options = {}
    for item in filter(None, overrides.split(";")):
        field, _, value = item.partition("=")
        options[field] = ast.literal_eval(value)
    block_m, block_n, block_k = GPU_BLOCKS[name] if device.type == "cuda" else INTERPRETER_BLOCKS
    options.setdefault("block_m", min(block_m, _fitting_block(m)))
    options.setdefault("block_n", min(block_n, _fitting_block(n)))
    options.setdefault("block_k", block_k)
    if strategy == "auto":
        probe = device_config(m, n, k, name, device, **dict(options, strategy="data_parallel"))
        strategy, chosen = choose(m, n, k, probe.cus, probe.block_m, probe.block_n, probe.block_k)
        for field, value in chosen.items():
            options.setdefault(field, value)
    return device_config(m, n, k, name, device, **dict(options, strategy=strategy))
