"""Answers from sweep results: the best configuration per shape, a per-device lookup table for
``kernels.auto``, and heatmaps of the best strategy.

A results dataset is a directory of Parquet parts, one row per configuration (see
:mod:`refsim.sweep`). A row is *valid* when it has no ``error``, a makespan and a TFLOP/s figure
(null when the run deadlocked or lost work), no ``deadlock`` and no ``coverage_errors``; only
valid rows compete. A row's *strategy* is the one its configuration ran (``used_strategy``; for
rows written before that column, the requested one, else GemmConfig's default), never null. A
row's *configuration* is its strategy and its non-null requested options (every GemmConfig field
but M, N, K, ``device`` and ``dtype``, which group the rows); a null ``device`` or ``dtype`` is
GemmConfig's default. Ties in makespan go to the smaller ``key``.

**Buckets** (:func:`table`): M, N and K are each rounded to the nearest power of two on a log2
scale (``2**e`` takes ``2**(e - 1/2) <= x < 2**(e + 1/2)``: 3..5 -> 4, 6..11 -> 8), and the
rows are grouped per (dtype, CU count, bucket). A bucket's answer is the configuration with the
best geometric mean, over the bucket's shapes, of its makespan divided by that shape's best
makespan; only configurations valid on the most shapes of the bucket (normally all of them)
compete. Each bucket in the table gives its bounds as half-open ``[low, high)`` ranges, so that a
reader needs no rounding rule of its own.
"""

import math
import os
from collections.abc import Iterable
from typing import Any

from ..config import DTYPE_ALIASES, FIELD_NAMES, STRATEGIES
from ..hardware import DEFAULT_DEVICE, get_profile
from .results import read_results
from .spec import DEFAULT_STRATEGY

SIZES = ("m", "n", "k")
# The fields that group rows (with the sizes) rather than configure them.
GROUPING = ("device", "dtype")
REQUESTED = tuple(name for name in FIELD_NAMES if name not in SIZES + GROUPING + ("strategy",))
USED = ("used_grid", "used_sk_tiles", "used_block_m", "used_block_n", "used_block_k")
BY = ("shape", "strategy")
STRATEGY_COLOURS = dict(zip(STRATEGIES, ("#4c72b0", "#55a868", "#c44e52", "#8172b2", "#ccb974")))
ANNOTATED_CELLS = 144  # heatmap cells are labelled up to a 12 x 12 grid

Row = dict[str, Any]
Shape = tuple[str, str, int, int, int]  # device, dtype, m, n, k


def read_rows(results_path: str | os.PathLike[str]) -> list[Row]:
    """Every row of a results dataset as a dict (:func:`refsim.sweep.read_results`: a
    ValueError when ``results_path`` is not one)."""
    return read_results(os.fspath(results_path)).to_pylist()


class AmbiguousChoice(ValueError):
    """Rows of several values of ``field`` (device or dtype) where one must be picked."""

    def __init__(self, message: str, field: str, values: list[str]) -> None:
        super().__init__(message)
        self.field = field
        self.values = values


def strategy_of(row: Row) -> str:
    """The strategy a row's configuration ran (see the module docstring)."""
    return row.get("used_strategy") or row.get("strategy") or DEFAULT_STRATEGY


def is_valid(row: Row) -> bool:
    """A row that ran to completion with every tile computed once (see the module docstring)."""
    return (
        row.get("error") is None
        and row.get("makespan_us") is not None
        and row.get("tflops") is not None
        and not row.get("deadlock")
        and not row.get("coverage_errors")
    )


def shape_of(row: Row) -> Shape:
    """``(device, dtype, m, n, k)``, with the profile's and the dtype's canonical names."""
    device = get_profile(row.get("device") or DEFAULT_DEVICE).name
    dtype = DTYPE_ALIASES[row.get("dtype") or "bf16"]
    return device, dtype, int(row["m"]), int(row["n"]), int(row["k"])


def requested_options(row: Row, leave_out: Iterable[str] = ()) -> dict[str, Any]:
    """The options a row's configuration was given (non-null), but those in ``leave_out``."""
    return {
        name: row[name] for name in REQUESTED if name not in leave_out and row.get(name) is not None
    }


def configuration(row: Row) -> tuple[Any, ...]:
    """A row's configuration as a hashable, sortable identity: strategy, then options by name."""
    return (strategy_of(row), *sorted((k, repr(v)) for k, v in requested_options(row).items()))


def _ranked(rows: list[Row]) -> list[Row]:
    return sorted(rows, key=lambda r: (r["makespan_us"], str(r.get("key"))))


def best(results_path: str | os.PathLike[str], by: str = "shape") -> list[dict[str, Any]]:
    """The best valid configuration per shape (and device and dtype), fastest first per group.

    ``by="shape"``: one row per (device, dtype, M, N, K); ``by="strategy"``: one row per shape
    and strategy, the best of each strategy. Each row gives the strategy, ``options`` (the
    requested options and the ``used_*`` values the configuration derived), ``makespan_us``,
    ``tflops``, ``margin_runner_up`` (how much slower the next configuration of its group is:
    0.07 = the best is 7% faster; None when it is alone) and ``margin_over_dp`` (the same against
    the shape's best data_parallel configuration; None when there is none), and ``candidates``,
    the valid configurations of its group. Shapes with no valid configuration are left out.
    """
    if by not in BY:
        raise ValueError(f"by={by!r}: accepted values are {', '.join(map(repr, BY))}")
    rows = read_rows(results_path)
    groups: dict[tuple[Any, ...], list[Row]] = {}
    data_parallel: dict[Shape, float] = {}
    for row in filter(is_valid, rows):
        shape = shape_of(row)
        group = shape if by == "shape" else (*shape, strategy_of(row))
        groups.setdefault(group, []).append(row)
        if strategy_of(row) == "data_parallel":
            fastest = data_parallel.get(shape, math.inf)
            data_parallel[shape] = min(fastest, row["makespan_us"])
    if not groups:
        raise ValueError(f"no valid configuration in the sweep results at {results_path}")
    answers = []
    for group in sorted(groups):
        ranked = _ranked(groups[group])
        winner = ranked[0]
        makespan = winner["makespan_us"]
        shape = shape_of(winner)
        device, dtype, m, n, k = shape
        options = requested_options(winner)
        options.update({name: winner[name] for name in USED if winner.get(name) is not None})
        dp = data_parallel.get(shape)
        answers.append(
            {
                "device": device,
                "dtype": dtype,
                "m": m,
                "n": n,
                "k": k,
                "strategy": strategy_of(winner),
                "options": options,
                "makespan_us": makespan,
                "tflops": winner["tflops"],
                "margin_runner_up": ranked[1]["makespan_us"] / makespan - 1
                if len(ranked) > 1
                else None,
                "margin_over_dp": None if dp is None else dp / makespan - 1,
                "candidates": len(ranked),
                "key": winner.get("key"),
            }
        )
    return answers


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.1f}%"


def format_best(rows: list[dict[str, Any]]) -> str:
    """:func:`best`'s rows as an aligned text table for the terminal."""
    header: tuple[str, ...] = ("device", "dtype", "M", "N", "K", "strategy", "makespan us")
    header += ("TFLOP/s", "vs next", "vs best DP", "options")
    lines: list[tuple[str, ...]] = [header]
    for row in rows:
        options = " ".join(f"{name}={value}" for name, value in row["options"].items())
        lines.append(
            (
                row["device"],
                row["dtype"],
                str(row["m"]),
                str(row["n"]),
                str(row["k"]),
                row["strategy"],
                f"{row['makespan_us']:.2f}",
                f"{row['tflops']:.1f}",
                _percent(row["margin_runner_up"]),
                _percent(row["margin_over_dp"]),
                options,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    numeric = {i for i, name in enumerate(header) if name not in ("device", "dtype", "strategy")}
    return "\n".join(
        "  ".join(
            [
                cell.rjust(w) if i in numeric else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(line, widths))
            ]
            + [line[-1]]
        ).rstrip()
        for line in lines
    )


def bucket_of(size: int) -> int:
    """``size`` rounded to the nearest power of two on a log2 scale (the geometric midpoint
    ``2**(e + 1/2)`` rounds up), in exact integer arithmetic."""
    exponent = size.bit_length() - 1
    return 1 << (exponent + (size * size >= 1 << (2 * exponent + 1)))


def bucket_bounds(power: int) -> tuple[int, int]:
    """``[low, high)``: the sizes :func:`bucket_of` rounds to ``power`` (a power of two)."""
    exponent = power.bit_length() - 1
    low = 1 if exponent == 0 else math.isqrt((1 << (2 * exponent - 1)) - 1) + 1
    high = math.isqrt((1 << (2 * exponent + 1)) - 1) + 1
    return low, high


def _bucket_answer(shapes: dict[tuple[int, int, int], dict[tuple[Any, ...], Row]]) -> Row:
    """The winning row of a bucket and its geometric-mean and worst ratios to each shape's best
    (module docstring)."""
    fastest = {
        shape: min(r["makespan_us"] for r in rows.values()) for shape, rows in shapes.items()
    }
    ratios: dict[tuple[Any, ...], list[float]] = {}
    example: dict[tuple[Any, ...], Row] = {}
    for shape, rows in shapes.items():
        for config, row in rows.items():
            ratios.setdefault(config, []).append(row["makespan_us"] / fastest[shape])
            example.setdefault(config, row)
    most = max(map(len, ratios.values()))
    score = {
        config: math.exp(sum(map(math.log, r)) / len(r))
        for config, r in ratios.items()
        if len(r) == most
    }
    winner = min(score, key=lambda config: (score[config], config))
    return {
        "row": example[winner],
        "geomean_ratio": score[winner],
        "worst_ratio": max(ratios[winner]),
        "covered": most,
    }


def table(results_path: str | os.PathLike[str], device: str) -> dict[str, Any]:
    """The lookup table of ``device``'s rows: the best configuration per shape bucket.

    ``{"device", "dtypes", "buckets", "source"}``. Each bucket: ``dtype``, ``cus`` (the CU
    count the rows modelled: their ``cus``, else the profile's), ``m``/``n``/``k`` as
    ``[low, high)``, ``strategy``, ``options`` (the winner's requested options but ``cus``),
    ``shapes`` (in the bucket), ``covered`` (shapes the winner is valid on),
    ``geomean_ratio`` and ``worst_ratio`` (its makespan over each shape's best). ``source``:
    the results dataset's name (not its folder), ``refsim_version`` and ``calibration`` (several values joined by ", "),
    ``rows`` (of this device) and ``valid_rows``. JSON-serialisable.
    ValueError when the results have no row, or no valid row, for ``device``.
    """
    profile = get_profile(device)
    all_rows = read_rows(results_path)
    rows = [row for row in all_rows if shape_of(row)[0] == profile.name]
    if not rows:
        present = sorted({shape_of(row)[0] for row in all_rows})
        raise ValueError(
            f"no rows for device {profile.name!r} in {results_path}; it has {', '.join(present)}"
        )
    buckets: dict[tuple[Any, ...], dict[tuple[int, int, int], dict[tuple[Any, ...], Row]]] = {}
    for row in filter(is_valid, rows):
        _, dtype, m, n, k = shape_of(row)
        key = (dtype, row.get("cus") or profile.cus, bucket_of(m), bucket_of(n), bucket_of(k))
        configs = buckets.setdefault(key, {}).setdefault((m, n, k), {})
        config = configuration(row)
        if config not in configs or _ranked([row, configs[config]])[0] is row:
            configs[config] = row
    if not buckets:
        raise ValueError(f"no valid row for device {profile.name!r} in {results_path}")
    entries = []
    for (dtype, cus, *powers), shapes in sorted(buckets.items()):
        answer = _bucket_answer(shapes)
        winner = answer.pop("row")
        entries.append(
            {
                "dtype": dtype,
                "cus": cus,
                **{size: list(bucket_bounds(p)) for size, p in zip(SIZES, powers)},
                "strategy": strategy_of(winner),
                "options": requested_options(winner, leave_out=("cus",)),
                "shapes": len(shapes),
                **answer,
            }
        )
    return {
        "device": profile.name,
        "dtypes": sorted({entry["dtype"] for entry in entries}),
        "buckets": entries,
        "source": {
            "results": os.path.basename(os.path.normpath(os.fspath(results_path))),
            "refsim_version": _joined(row.get("refsim_version") for row in rows),
            "calibration": _joined(row.get("calibration") for row in rows),
            "rows": len(rows),
            "valid_rows": sum(map(is_valid, rows)),
        },
    }


def _joined(values: Iterable[Any]) -> str:
    return ", ".join(sorted({str(v) for v in values if v is not None}))


def heatmap(
    results_path: str | os.PathLike[str],
    k: int,
    out: str | os.PathLike[str],
    device: str | None = None,
    dtype: str | None = None,
) -> None:
    """A PNG at ``out`` of the shapes with this ``k``: left, the best strategy over (M, N)
    (categorical colours, legend); right, the best's speedup over the best data_parallel
    configuration (blank where none ran). ``device``/``dtype`` pick one when the rows hold
    several. ValueError when no valid row has this K (or the choice is ambiguous).
    """
    rows = [row for row in best(results_path) if row["k"] == k]
    if device is not None:
        name = get_profile(device).name
        rows = [row for row in rows if row["device"] == name]
    if dtype is not None:
        rows = [row for row in rows if row["dtype"] == DTYPE_ALIASES.get(dtype, dtype)]
    if not rows:
        raise ValueError(f"no valid rows with K={k} in {results_path}")
    for field in GROUPING:
        values = sorted({row[field] for row in rows})
        if len(values) > 1:
            raise AmbiguousChoice(
                f"K={k} has rows of {field}s {', '.join(values)}: pass {field}=", field, values
            )
    try:
        import matplotlib
    except ImportError as exc:
        raise RuntimeError("heatmap needs matplotlib: pip install refsim[plot]") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    ms = sorted({row["m"] for row in rows})
    ns = sorted({row["n"] for row in rows})
    strategy_code = np.full((len(ms), len(ns)), np.nan)
    speedup = np.full((len(ms), len(ns)), np.nan)
    for row in rows:
        cell = (ms.index(row["m"]), ns.index(row["n"]))
        strategy_code[cell] = STRATEGIES.index(row["strategy"])
        if row["margin_over_dp"] is not None:
            speedup[cell] = 1 + row["margin_over_dp"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(7 + 0.5 * len(ns), 3 + 0.35 * len(ms)))
    colours = ListedColormap([STRATEGY_COLOURS[s] for s in STRATEGIES])
    left.imshow(strategy_code, cmap=colours, vmin=-0.5, vmax=len(STRATEGIES) - 0.5, origin="lower")
    strategies = {row["strategy"] for row in rows}
    present = [s for s in STRATEGIES if s in strategies]
    left.legend(
        handles=[Patch(color=STRATEGY_COLOURS[s], label=s) for s in present],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize="small",
    )
    left.set_title("best strategy")
    image = right.imshow(speedup, cmap="viridis", origin="lower")
    fig.colorbar(image, ax=right, label="best data_parallel / best (makespan)")
    right.set_title("speedup over DP")
    if len(ms) * len(ns) <= ANNOTATED_CELLS:
        for (i, j), value in np.ndenumerate(speedup):
            if not np.isnan(value):
                right.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize="x-small")
    for ax in (left, right):
        ax.set_xticks(range(len(ns)), [str(n) for n in ns], rotation=90)
        ax.set_yticks(range(len(ms)), [str(m) for m in ms])
        ax.set_xlabel("N")
        ax.set_ylabel("M")
    fig.suptitle(f"{rows[0]['device']} {rows[0]['dtype']}, K = {k}")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
