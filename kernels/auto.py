"""``strategy="auto"``: a strategy and configuration per (shape, dtype, device).

The fixed rule is :mod:`kernels.rule`. A batch of products (``kernels.bmm``, batched
``kernels.matmul``) runs data-parallel in one launch over every product's tiles, with the
rule's blocks for the whole batch's tile count.
Explicit overrides win over the rule: blocks and machine options are used as given, and an
option that only one strategy takes (``fixup=...``, ``split_k=...``, ``counters_per_xcd=...``)
selects that strategy, as an explicit ``strategy=...`` does.
Configurations are cached per key, so a repeated call does no host work beyond one dictionary
lookup; the overrides are part of the key as a frozen tuple (:func:`freeze_overrides`).

**The chain.** :func:`config_for` asks :data:`CHOOSERS` in turn, over one :class:`Request`
whose device options are resolved once: the strategy asked for, the tuned table, the cost model
(:mod:`kernels.model`: on a CUDA device whose refsim profile has a calibration, without
overrides, refsim simulates the candidates), then the fixed rule, which always answers.

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

from refsim import strategies
from refsim.calibration import Calibration
from refsim.calibration import for_profile as shipped_calibration
from refsim.calibration import load as load_calibration
from refsim.config import HOOKS, STRATEGIES, GemmConfig, fitting_block, option_strategies
from refsim.hardware import get_profile

from .device import device_options
from .dtypes import dtype_name
from .rule import INTERPRETER_BLOCKS, choose, gpu_blocks

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


@dataclasses.dataclass(frozen=True)
class Request:
    """One GEMM to configure: its sizes, dtype name, torch device, the strategy asked for
    (``"auto"``, or implied by an option only one strategy takes), the overrides and the batch,
    with the device's own options (profile, units, XCDs) resolved once, for every chooser."""

    m: int
    n: int
    k: int
    dtype: str
    device: object
    strategy: str
    overrides: dict
    batch: int
    machine: dict

    @property
    def units(self):
        """The SMs/CUs the GEMM runs on: an override's, else the device's."""
        return self.overrides.get("cus") or self.machine["cus"]

    def config(self, **options):
        """The GemmConfig of these sizes on this device with ``options`` over the device's."""
        return GemmConfig(self.m, self.n, self.k, **dict(self.machine, dtype=self.dtype, **options))

    def ruled(self):
        """The overrides with the rule's blocks (module docstring) where they give none."""
        if self.device.type == "cuda":
            blocks = gpu_blocks(self.m, self.n, self.dtype, self.units, self.batch)
        else:
            blocks = INTERPRETER_BLOCKS
        options = dict(self.overrides)
        options.setdefault("block_m", min(blocks[0], fitting_block(self.m)))
        options.setdefault("block_n", min(blocks[1], fitting_block(self.n)))
        options.setdefault("block_k", blocks[2])
        return options


def _explicit(request):
    """A strategy asked for: it, with the rule's blocks where the overrides give none."""
    if request.strategy == "auto":
        return None
    return request.config(**request.ruled(), strategy=request.strategy)


def _table(request):
    """The installed table's answer for a single product (module docstring), or None."""
    return _tuned_config(request) if request.batch == 1 else None


def _model(request):
    """The cost model's choice (:mod:`kernels.model`) on a CUDA device whose profile has a
    calibration (NVIDIA), without overrides; on the device's own SM count, so the config is
    the one the device runs."""
    if request.device.type != "cuda" or request.overrides:
        return None
    profile, units = request.machine["device"], request.machine["cus"]
    calibration = calibration_of(profile.name)
    if calibration is None or profile.vendor != "nvidia":
        return None
    from .model import model_choice

    m, n, k = request.m, request.n, request.k
    chosen = model_choice(m, n, k, request.dtype, profile, units, calibration, request.batch)
    return None if chosen is None else request.config(**chosen)


def _rule(request):
    """The fixed rule (module docstring); a batch runs data-parallel."""
    options = request.ruled()
    strategy, chosen = "data_parallel", {}
    if request.batch == 1:
        strategy, chosen = choose(
            request.m, request.n, request.k, request.units,
            options["block_m"], options["block_n"], options["block_k"],
        )  # fmt: skip
    return request.config(**dict(chosen, **options), strategy=strategy)


# How a configuration is chosen, first answer wins: the strategy asked for, the tuned table,
# the cost model, the fixed rule (which always answers).
CHOOSERS = (_explicit, _table, _model, _rule)


@functools.lru_cache(maxsize=4096)
def config_for(m, n, k, dtype, device, strategy="auto", overrides=(), batch=1):
    """The GemmConfig for one GEMM (one product of a batch of ``batch``): the first answer of
    :data:`CHOOSERS` -- ``strategy`` when not ``"auto"`` (or implied by the ``overrides``, a
    frozen tuple of GemmConfig fields as :func:`freeze_overrides` gives them, part of the
    cache key), the installed table's, the cost model's, the fixed rule's."""
    options = dict(overrides)
    if strategy == "auto":
        strategy = _implied_strategy(options)
    request = Request(
        m, n, k, dtype_name(dtype), device, strategy, options, batch, device_options(device)
    )
    for chooser in CHOOSERS:
        config = chooser(request)
        if config is not None:
            return config
    raise AssertionError("the rule always answers")


# The calibrations installed with use_calibration by profile name (the shipped ones otherwise).
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


def _tuned_config(request):
    """The config of the installed table's answer for this GEMM, adapted (module docstring), or
    None on a miss."""
    from .launch import KERNEL_SCHEDULES

    m, n, k = request.m, request.n, request.k
    profile = get_profile(request.overrides.get("device", request.machine["device"]))
    entry = table_entry(m, n, k, request.dtype, profile.name, request.units)
    if entry is None:
        return None
    strategy = entry["strategy"]
    options = {f: v for f, v in entry["options"].items() if f in TABLE_OPTIONS and v is not None}
    for field, size in (("block_m", m), ("block_n", n), ("block_k", k)):
        if field in options:
            options[field] = min(options[field], fitting_block(size))
    for field in KERNEL_SCHEDULES:  # the strategy's default is the schedule the kernels follow
        options.pop(field, None)
    scheme = strategies.strategy(strategy)
    if not scheme.persistent:  # its grid follows from the shape
        options.pop("grid", None)
    if scheme.dynamic:  # the work-stealing kernel has no Stream-K tail
        options.pop("sk_tiles", None)
        options.pop("fixup", None)
    elif scheme.fixups:  # a protocol that never waits (any grid) and is deterministic
        options["fixup"] = next(
            p.name for p in strategies.FIXUP_REGISTRY.values() if not p.waits and p.deterministic
        )
    capped = {f: options.pop(f) for f in ("sk_tiles", "split_k") if f in options}
    config = request.config(**dict(options, **request.overrides, strategy=strategy))
    limits = {"sk_tiles": config.total_tiles, "split_k": config.iters_per_tile}
    fitted = {f: min(v, limits[f]) for f, v in capped.items() if f not in request.overrides}
    return config.replace(**fitted) if fitted else config
