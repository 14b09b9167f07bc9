"""Sweep specs: a YAML mapping expanded into one requested configuration per combination.

Every :class:`~refsim.config.GemmConfig` option (``strategy``, ``block_m``, ``device``, ...)
may be one value or a list of values; lists multiply. ``null`` (alone or in a list) means
"not given": the config derives it. The sizes come from ``shapes``, a list whose items are
each one of:

* ``[M, N, K]``: one shape;
* a range mapping ``{m: R, n: R, k: R}``: every combination, where each ``R`` is an integer
  or ``[start, stop, step]`` with ``stop`` included and ``step`` an integer (added: ``256``)
  or a string ``"<factor>x"`` (multiplied: ``"2x"`` gives 256, 512, ..., 8192);
* a named LLM shape set (:data:`SHAPE_SETS`), as its name (``llama3-8b``: the default token
  counts :data:`DEFAULT_TOKENS`) or as ``{set: llama3-8b, tokens: [1, 4096]}``.

Instead of ``shapes`` a spec may give ``m``, ``n`` and ``k`` as values or lists (all three).
The same configuration twice is run once. ``calibration`` (not a GemmConfig field) chooses the
timings for the whole sweep: ``shipped`` (the default, also ``null``) uses the calibration refsim
ships for each row's profile where there is one (:func:`refsim.calibration.for_profile`), else
the datasheet; ``none`` (or ``false``) the datasheet numbers everywhere; any other string is the
path of a calibration JSON (relative to the spec's folder), which must calibrate every device
the spec runs. For example::

    device: [mi300x]
    shapes: [[4096, 4096, 4096], {m: [256, 8192, 2x], n: 4096, k: 4096}, llama3-8b]
    strategy: [data_parallel, streamk, split_k]

A spec that cannot be expanded (unknown key, wrong type, empty list, bad shape or range,
unknown shape set, a value outside a field's choices) raises :class:`SpecError` naming the
key, before anything runs. Combinations that the config refuses are not spec errors: the
sweep records them as rows with an ``error``.
"""

import dataclasses
import itertools
import os
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from ..calibration import Calibration, load
from ..config import DTYPE_ALIASES, FIELD_NAMES, GemmConfig
from ..hardware import DEFAULT_DEVICE, get_profile

SIZE_NAMES = ("m", "n", "k")
OPTION_FIELDS = {f.name: f for f in dataclasses.fields(GemmConfig) if f.init}
DEFAULT_TOKENS = (1, 16, 128, 1024, 4096, 16384)
# The strategy GemmConfig runs when none is given.
DEFAULT_STRATEGY = str(OPTION_FIELDS["strategy"].default)
# Keys of a spec that are not GemmConfig fields.
SPEC_KEYS = ("shapes", "calibration")
# ``calibration`` values: the shipped calibration of each profile, or none (the datasheet).
SHIPPED = "shipped"
NO_CALIBRATION = "none"
# What a sweep passes to refsim.simulate: None (the shipped one), False (none) or a Calibration.
CalibrationChoice = Calibration | bool | None


def _llama_projections(hidden: int, intermediate: int, kv: int) -> dict[str, tuple[int, int]]:
    """``projection -> (N, K)`` of a Llama decoder layer: C[tokens, N] = X[tokens, K] @ W[K, N]."""
    return {
        "q": (hidden, hidden),
        "k": (kv, hidden),
        "v": (kv, hidden),
        "o": (hidden, hidden),
        "gate": (intermediate, hidden),
        "up": (intermediate, hidden),
        "down": (hidden, intermediate),
    }


# The attention (q/k/v/o) and MLP (gate/up/down) projections of one decoder layer, as (N, K);
# M is the token count. From the models' config.json on Hugging Face (meta-llama/Meta-Llama-3-8B,
# meta-llama/Meta-Llama-3-70B): hidden_size 4096 / 8192, intermediate_size 14336 / 28672, and
# grouped-query attention with 8 KV heads of head_dim 128, so k and v project to 1024.
SHAPE_SETS = {
    "llama3-8b": _llama_projections(hidden=4096, intermediate=14336, kv=1024),
    "llama3-70b": _llama_projections(hidden=8192, intermediate=28672, kv=1024),
}


class SpecError(ValueError):
    """A sweep spec that cannot be expanded; the message names the key."""


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A loaded spec: its requested configurations and the calibration they run with."""

    configurations: list[dict[str, Any]]
    calibration: CalibrationChoice = None


def load_sweep(path: str) -> Sweep:
    """The configurations and calibration of the YAML spec at ``path`` (module docstring)."""
    import yaml

    try:
        with open(path) as file:
            spec = yaml.safe_load(file)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    except OSError as exc:
        raise SpecError(f"{path}: {exc.strerror or exc}") from None
    configurations = expand(spec)
    folder = os.path.dirname(os.path.abspath(path))
    return Sweep(configurations, spec_calibration(typing.cast(Mapping[str, Any], spec), folder))


def load_spec(path: str) -> list[dict[str, Any]]:
    """The requested configurations of the YAML spec at ``path`` (see the module docstring)."""
    return load_sweep(path).configurations


def spec_calibration(spec: Mapping[str, Any], folder: str = ".") -> CalibrationChoice:
    """What ``spec``'s ``calibration`` key asks for: None (shipped), False (none) or the
    Calibration read from its path (relative to ``folder``), checked against the spec's devices."""
    given = spec.get("calibration")
    if given is None or given == SHIPPED:
        return None
    if given is False or given == NO_CALIBRATION:
        return False
    if not isinstance(given, str) or not given:
        raise SpecError(
            f"key 'calibration': {given!r} is {_kind(given)}, expected {SHIPPED}, "
            f"{NO_CALIBRATION} or the path of a calibration JSON"
        )
    path = os.path.join(folder, given)
    try:
        calibration = load(path)
    except ValueError as exc:
        message = str(exc)
        message = given + message[len(path) :] if message.startswith(path) else message
        raise SpecError(f"key 'calibration': {' '.join(message.split())}") from None
    devices = spec.get("device")
    for device in devices if isinstance(devices, list) else [devices]:
        name = get_profile(device or DEFAULT_DEVICE).name
        if name != calibration.profile:
            raise SpecError(
                f"key 'calibration': {given} calibrates profile {calibration.profile!r} "
                f"({calibration.gpu}), but the spec runs device {name!r}"
            )
    return calibration


def expand(spec: object) -> list[dict[str, Any]]:
    """One dict of requested GemmConfig fields (given ones only) per combination of ``spec``."""
    if not isinstance(spec, Mapping):
        raise SpecError(f"the spec must be a mapping of keys to values, not {_kind(spec)}")
    unknown = [key for key in spec if key not in SPEC_KEYS and key not in OPTION_FIELDS]
    if unknown:
        raise SpecError(
            f"unknown key {unknown[0]!r}: accepted keys are {', '.join(SPEC_KEYS)}, "
            f"{', '.join(FIELD_NAMES)}"
        )
    shapes = _shapes(spec)
    options = {
        name: _values(name, spec[name])
        for name in FIELD_NAMES
        if name in spec and name not in SIZE_NAMES
    }
    configs: dict[str, dict[str, Any]] = {}
    for shape in shapes:
        for combination in itertools.product(*options.values()):
            given = dict(zip(SIZE_NAMES, shape))
            given.update((name, v) for name, v in zip(options, combination) if v is not None)
            configs.setdefault(config_key(given), given)
    return list(configs.values())


def config_key(config: Mapping[str, Any]) -> str:
    """The stable key of requested ``config``: its given fields as ``name=value``, field order."""
    return ",".join(
        f"{name}={config[name]}" for name in FIELD_NAMES if config.get(name) is not None
    )


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def value_type(name: str) -> type:
    """``int``, ``bool`` or ``str``: what field ``name`` holds in a spec."""
    field_type = OPTION_FIELDS[name].type
    kinds = set(typing.get_args(field_type)) or {field_type}
    return next((kind for kind in (bool, int) if kind in kinds), str)


def _values(name: str, given: object) -> list[Any]:
    """The values of option ``name``: one or a list, each of the field's type and choices."""
    values = given if isinstance(given, list) else [given]
    if not values:
        raise SpecError(f"key {name!r}: an empty list gives no configuration")
    kind = value_type(name)
    for value in values:
        if value is None:
            continue
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise SpecError(f"key {name!r}: {value!r} is {_kind(value)}, expected {kind.__name__}")
        _check_choice(name, value)
    return values


def _check_choice(name: str, value: object) -> None:
    """SpecError unless ``value`` is one of field ``name``'s choices (when it has some)."""
    if name == "device":
        try:
            get_profile(value)
        except ValueError as exc:
            raise SpecError(f"key 'device': {exc}") from None
        return
    choices = tuple(DTYPE_ALIASES) if name == "dtype" else OPTION_FIELDS[name].metadata["choices"]
    if choices and value not in choices:
        raise SpecError(f"key {name!r}: {value!r} is not one of {', '.join(choices)}")


def _shapes(spec: Mapping[str, Any]) -> list[tuple[int, int, int]]:
    """Every (M, N, K) of the spec, in order, without repeats."""
    sizes = [name for name in SIZE_NAMES if name in spec]
    if "shapes" in spec:
        if sizes:
            raise SpecError(f"key {sizes[0]!r}: give the sizes in 'shapes' or as m, n, k, not both")
        items = spec["shapes"]
        if not isinstance(items, list) or not items:
            raise SpecError("key 'shapes': expected a non-empty list of shapes")
        shapes = [shape for item in items for shape in _shape_item(item)]
    elif len(sizes) == 3:
        shapes = list(
            itertools.product(
                _sizes("m", spec["m"]), _sizes("n", spec["n"]), _sizes("k", spec["k"])
            )
        )
    else:
        missing = ", ".join(name for name in SIZE_NAMES if name not in spec)
        raise SpecError(f"key 'shapes' missing: give shapes, or m, n and k (missing {missing})")
    return list(dict.fromkeys(shapes))


def _sizes(name: str, given: object) -> list[int]:
    values = given if isinstance(given, list) else [given]
    if not values:
        raise SpecError(f"key {name!r}: an empty list gives no configuration")
    for value in values:
        if not _is_size(value):
            raise SpecError(f"key {name!r}: {value!r} is not a positive integer")
    return typing.cast(list[int], values)


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _shape_item(item: object) -> Iterator[tuple[int, int, int]]:
    """The shapes of one item of ``shapes``: a triple, a range mapping or a shape set."""
    if isinstance(item, list):
        if len(item) != 3 or not all(map(_is_size, item)):
            raise SpecError(f"key 'shapes': {item!r} is not [M, N, K] of positive integers")
        yield (item[0], item[1], item[2])
    elif isinstance(item, str) or (isinstance(item, Mapping) and "set" in item):
        yield from _shape_set(item)
    elif isinstance(item, Mapping) and set(item) == set(SIZE_NAMES):
        yield from itertools.product(
            _range("m", item["m"]), _range("n", item["n"]), _range("k", item["k"])
        )
    else:
        raise SpecError(
            f"key 'shapes': {item!r} is not [M, N, K], {{m: R, n: R, k: R}} or a shape set"
        )


def _range(name: str, given: object) -> list[int]:
    """Dimension ``name`` of a range mapping: an integer or ``[start, stop, step]``."""
    if _is_size(given):
        return [typing.cast(int, given)]
    where = f"key 'shapes': {name}: {given!r}"
    if not (isinstance(given, list) and len(given) == 3 and all(map(_is_size, given[:2]))):
        raise SpecError(f"{where} is not a positive integer or [start, stop, step]")
    start, stop, step = given
    if start > stop:
        raise SpecError(f"{where} starts after it stops")
    if _is_size(step):
        return list(range(start, stop + 1, step))
    factor = step[:-1] if isinstance(step, str) and step.endswith("x") else ""
    if not (factor.isdigit() and int(factor) > 1):
        raise SpecError(
            f"{where}: step {step!r} is not a positive integer or '<factor>x', e.g. '2x'"
        )
    values = [start]
    while values[-1] * int(factor) <= stop:
        values.append(values[-1] * int(factor))
    return values


def _shape_set(item: str | Mapping[str, Any]) -> Iterator[tuple[int, int, int]]:
    """The projections of a named set for each token count, tokens outermost."""
    if isinstance(item, str):
        name, tokens = item, list(DEFAULT_TOKENS)
    else:
        extra = set(item) - {"set", "tokens"}
        if extra:
            raise SpecError(
                f"key 'shapes': shape set key {sorted(extra)[0]!r} is not set or tokens"
            )
        name, tokens = item["set"], item.get("tokens", list(DEFAULT_TOKENS))
        if not isinstance(tokens, list) or not tokens or not all(map(_is_size, tokens)):
            raise SpecError(f"key 'shapes': tokens {tokens!r} is not a list of positive integers")
    if name not in SHAPE_SETS:
        raise SpecError(
            f"key 'shapes': unknown shape set {name!r}; known sets are {', '.join(SHAPE_SETS)}"
        )
    for count in tokens:
        for n, k in SHAPE_SETS[name].values():
            yield (count, n, k)
