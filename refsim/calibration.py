"""Calibrations: the cost model's parameters fitted to one GPU's measured traces.

A calibration replaces datasheet numbers with what the kernels were measured to take on one GPU:
per block shape and dtype, the time of a K-iteration and the fixed time of a work item (pipeline
fill, epilogue), both with every SM busy; and, where measured, the launch overhead, the gap
between dependent launches, the atomic latency and the HBM bandwidth a copy reaches. It is a
JSON file (``FORMAT``) written by ``refsim calibrate`` and read by :func:`load`; it names the
hardware profile it calibrates and the environment it was measured in (GPU, SM count, clocks
seen, driver, torch and Triton versions, date) and each fit's residual.

:func:`for_profile` finds the calibration refsim ships for a profile
(``refsim/calibrations/<profile>.json``); a simulation uses it unless told otherwise
(``simulate(..., calibration=False)`` keeps the datasheet). A profile without one keeps its
datasheet numbers, and summaries and ``refsim devices`` say so.

How a calibration enters the model (:class:`refsim.cost.CostModel`): a work item of a
calibrated block takes ``item_us + iterations * iteration_us`` per resident program (the
memory term of the datasheet model still applies when it is larger), its finished-tile store
included; partial stores and loads, flags and atomics keep the datasheet model with the
calibrated bandwidth and latency; launches cost the calibrated overhead, and a dependent
launch (split-K's reduction) the calibrated gap.

Two terms are fitted to traced Stream-K runs rather than measured by ``refsim calibrate``, and
apply to every split tile (split-K's slices too): ``split_iteration_factor`` multiplies the
K-iteration time of a work item whose tile is split (those items run Stream-K's K-loop, with
runtime bounds), and every fp32 partial stored or loaded also takes its bytes over
``partial_gbps``, one program's own bandwidth for that traffic.
``benchmarks/fit_split_terms.py`` fits them to a suite run's traced Stream-K times.

Two more are fitted to long traced runs: K-iterations that run more than ``load_after_us``
after the first launch began take ``1 + (load_factor - 1) * busy`` times their calibrated
time, ``busy`` being the fraction of SMs with a program when the work item starts. The
calibration measures one short wave; on the H200, runs that kept every SM busy for longer
were 9-31% slower than that, and long runs on a few SMs were not (the GPU's clocks under
sustained load are the likely cause; they were not recorded).
``benchmarks/fit_load_terms.py`` fits them to a suite run's traced data-parallel,
persistent and work-stealing times.
"""

import dataclasses
import functools
import json
import math
import os
import pathlib
from collections.abc import Mapping, Sequence

FORMAT = 1
SHIPPED = pathlib.Path(__file__).parent / "calibrations"
# K-iterations per work item the measurement runs at: enough spread to separate the per-item
# cost from the per-iteration one.
ITERATION_COUNTS = (8, 16, 32, 64)
OPTIONAL = (
    "launch_overhead_us",
    "launch_gap_us",
    "atomic_latency_us",
    "hbm_gbps",
    "split_iteration_factor",
    "partial_gbps",
    "load_after_us",
    "load_factor",
)


# Optional fields that multiply or divide, so that 0 is no value for them.
POSITIVE = ("split_iteration_factor", "partial_gbps", "load_factor")


def block_key(dtype: str, block_m: int, block_n: int, block_k: int) -> str:
    """The key of one block shape and dtype in a calibration: ``"bf16 128x256x64"``."""
    return f"{dtype} {block_m}x{block_n}x{block_k}"


@dataclasses.dataclass(frozen=True)
class BlockTiming:
    """One block shape and dtype with every SM busy: ``iteration_us`` per K-iteration,
    ``item_us`` once per work item, and the fit's relative RMS ``residual``."""

    iteration_us: float
    item_us: float
    residual: float = 0.0
    samples: int = 0


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Fitted parameters for one hardware profile (see the module docstring)."""

    profile: str
    gpu: str
    units: int
    blocks: Mapping[str, BlockTiming]
    launch_overhead_us: float | None = None
    launch_gap_us: float | None = None
    atomic_latency_us: float | None = None
    hbm_gbps: float | None = None
    split_iteration_factor: float | None = None
    partial_gbps: float | None = None
    load_after_us: float | None = None
    load_factor: float | None = None
    environment: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def timing(self, dtype: str, block_m: int, block_n: int, block_k: int) -> BlockTiming | None:
        """The timing of that block, or None when it was not measured."""
        return self.blocks.get(block_key(dtype, block_m, block_n, block_k))

    def describe(self) -> str:
        """One line for summaries: what was measured, where and when."""
        date = self.environment.get("date")
        return f"calibrated on {self.gpu}" + (f" ({date})" if date else "")

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["format"] = FORMAT
        return data

    @classmethod
    def from_dict(cls, data: Mapping, source: str = "calibration") -> "Calibration":
        """The calibration of a parsed JSON object; ValueError naming what is wrong."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: expected a JSON object")
        if data.get("format") != FORMAT:
            raise ValueError(f"{source}: format {data.get('format')!r}, expected {FORMAT}")
        missing = [key for key in ("profile", "gpu", "units", "blocks") if key not in data]
        if missing:
            raise ValueError(f"{source}: missing {', '.join(missing)}")
        blocks = {}
        for key, value in dict(data["blocks"]).items():
            try:
                timing = BlockTiming(**value)
            except TypeError as error:
                raise ValueError(f"{source}: block {key!r}: {error}") from None
            for field in ("iteration_us", "item_us"):
                number = getattr(timing, field)
                if not _finite(number) or number < 0 or (field == "iteration_us" and number == 0):
                    raise ValueError(f"{source}: block {key!r}: {field}={number!r}")
            blocks[key] = timing
        optional = {key: data.get(key) for key in OPTIONAL}
        for key, value in optional.items():
            if value is not None and (not _finite(value) or value < 0):
                raise ValueError(f"{source}: {key}={value!r}: must be a finite number >= 0")
            if value == 0 and key in POSITIVE:
                raise ValueError(f"{source}: {key}=0: must be above 0")
        return cls(
            profile=str(data["profile"]),
            gpu=str(data["gpu"]),
            units=int(data["units"]),
            blocks=blocks,
            environment={str(k): str(v) for k, v in dict(data.get("environment", {})).items()},
            **optional,
        )


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def load(path: str | os.PathLike[str]) -> Calibration:
    """Read a calibration file; ValueError (one line) when it is not one."""
    try:
        text = pathlib.Path(path).read_text()
    except OSError as error:
        raise ValueError(f"{path}: {error.strerror or error}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error.msg}, line {error.lineno})") from None
    return Calibration.from_dict(data, str(path))


def save(calibration: Calibration, path: str | os.PathLike[str]) -> None:
    """Write ``calibration`` as JSON."""
    pathlib.Path(path).write_text(json.dumps(calibration.to_dict(), indent=2) + "\n")


@functools.cache
def for_profile(name: str) -> Calibration | None:
    """The calibration refsim ships for profile ``name``, or None."""
    path = SHIPPED / f"{name}.json"
    return load(path) if path.exists() else None


def fit_block(samples: Sequence[tuple[int, float]]) -> BlockTiming:
    """Least-squares ``duration = item_us + iterations * iteration_us`` over ``(iterations,
    duration_us)`` samples (one per measured work item); ValueError with fewer than two
    distinct iteration counts or a non-positive slope. A negative intercept (noise on a
    negligible per-item cost) is clipped to 0."""
    counts = sorted({iterations for iterations, _ in samples})
    if len(counts) < 2:
        raise ValueError("fitting needs work items of at least two different K-iteration counts")
    n = len(samples)
    mean_x = sum(x for x, _ in samples) / n
    mean_y = sum(y for _, y in samples) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in samples)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in samples) / sxx
    if not slope > 0:
        raise ValueError(f"fitted K-iteration time {slope!r} us is not positive")
    intercept = max(0.0, mean_y - slope * mean_x)
    squares = sum(((intercept + slope * x - y) / y) ** 2 for x, y in samples if y > 0)
    return BlockTiming(slope, intercept, math.sqrt(squares / n), n)


def wave_shape(block_m: int, block_n: int, units: int) -> tuple[int, int]:
    """``(M, N)`` of a problem of exactly ``units`` tiles of that block, as square as a
    factorisation of ``units`` allows: every SM runs one tile, the state the timings hold for."""
    rows = max(d for d in range(1, math.isqrt(units) + 1) if units % d == 0)
    return rows * block_m, units // rows * block_n


def calibration_shapes(
    block_m: int, block_n: int, block_k: int, units: int
) -> list[tuple[int, int, int]]:
    """The problems the measurement of one block runs: one full wave of tiles at each of
    :data:`ITERATION_COUNTS` K-iterations. Accuracy is judged on other shapes."""
    m, n = wave_shape(block_m, block_n, units)
    return [(m, n, count * block_k) for count in ITERATION_COUNTS]
