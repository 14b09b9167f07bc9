"""refsim.simulate: the simulator's front door."""

import math
import numbers
import os
from typing import Any

from . import numerics
from .calibration import Calibration, for_profile, load
from .config import OPTION_NAMES, GemmConfig, check_names
from .plan import build_plan
from .result import SimResult
from .simulator import Simulation

RUN_OPTIONS = ("a", "b", "bias", "jitter", "seed", "calibration")

# Bounds on one run, each with the environment variable that raises it. Work items: records,
# plan items and simulator state grow with them (up to about 1 KB each). Elements: the
# numerics hold float64 copies of A and B and float32 M x N buffers.
LIMITS = {
    "REFSIM_MAX_WORK_ITEMS": 2_000_000,
    "REFSIM_MAX_ELEMENTS": 1 << 28,
}


def simulate(
    m: Any,
    n: int | None = None,
    k: int | None = None,
    cus: int | None = None,
    *,
    a: Any = None,
    b: Any = None,
    bias: Any = None,
    jitter: float = 0.0,
    seed: int = 0,
    calibration: Any = None,
    **options: Any,
) -> SimResult:
    """Simulate one GEMM launch: ``simulate(M, N, K, cus, **options)`` or ``simulate(config)``.

    ``options`` are :class:`GemmConfig` fields (``strategy=``, ``fixup=``, ...); an unknown
    one raises TypeError listing the accepted names. With a ready config, only the run
    arguments below may be added. ``a`` (M x K) and ``b`` (K x N), with optional ``bias`` (N),
    make the result carry the exact partial buffers and output. ``jitter`` in [0, 1) slows
    each CU by a factor drawn from ``1 + jitter * U[0, 1)`` with ``random.Random(seed)``: the
    same seed, the same run. ``calibration``: None for the one refsim ships for the config's
    profile (if any), False for the datasheet numbers, or a
    :class:`~refsim.calibration.Calibration` or the path of one. Runs beyond :data:`LIMITS`
    raise ValueError before any work.
    """
    check_names(options, OPTION_NAMES + RUN_OPTIONS)
    if isinstance(m, GemmConfig):
        given = sorted(options) + (["cus"] if cus is not None else [])
        if n is not None or k is not None or given:
            raise ValueError(
                "pass either a GemmConfig or sizes and options, not both (got "
                f"{', '.join(given) or 'N, K'} with a GemmConfig); use "
                "config.replace(...) to change a config"
            )
        config = m
    else:
        if n is None or k is None:
            raise ValueError("simulate needs M, N and K (or a GemmConfig)")
        if cus is not None:
            options["cus"] = cus
        config = GemmConfig(m, n, k, **options)
    if isinstance(jitter, bool) or not (
        isinstance(jitter, numbers.Real) and math.isfinite(jitter) and 0 <= jitter < 1
    ):
        raise ValueError(f"jitter={jitter!r}: must be a number in [0, 1)")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed={seed!r}: must be an integer")
    if (a is None) != (b is None):
        raise ValueError("pass both a and b for numerics, or neither")
    if bias is not None and a is None:
        raise ValueError("bias needs a and b")
    calibration = calibration_for(config, calibration)
    check_size(config, with_arrays=a is not None)
    if a is not None:
        numerics.check_inputs(config, a, b, bias)
    plan = build_plan(config)
    sim = Simulation(
        config,
        plan,
        with_bias=bias is not None,
        jitter=float(jitter),
        seed=int(seed),
        calibration=calibration,
    )
    outcome = sim.run()
    output = partials = None
    if a is not None:
        output, partials = numerics.compute(config, outcome.records, outcome.fixups, a, b, bias)
    return SimResult(
        config=config,
        plan=plan,
        records=outcome.records,
        fixups=outcome.fixups,
        deadlock=outcome.deadlock,
        makespan_us=outcome.makespan_us,
        busy_us=sim.busy_us,
        coverage_errors=outcome.coverage_errors,
        output=output,
        partials=partials,
        calibration=calibration,
    )


def calibration_for(config: GemmConfig, calibration: Any) -> Calibration | None:
    """The calibration a run of ``config`` uses (see :func:`simulate`); ValueError for one of
    another profile or something that is not a calibration."""
    if calibration is None:
        return for_profile(config.device) if isinstance(config.device, str) else None
    if calibration is False:
        return None
    if isinstance(calibration, (str, os.PathLike)):
        calibration = load(calibration)
    if not isinstance(calibration, Calibration):
        raise ValueError(
            f"calibration={calibration!r}: pass a Calibration, the path of one, None (the "
            "profile's own) or False (datasheet numbers)"
        )
    if calibration.profile != config.profile.name:
        raise ValueError(
            f"calibration of profile {calibration.profile!r} (measured on {calibration.gpu}) "
            f"given for device {config.profile.name!r}"
        )
    return calibration


def limit(variable: str) -> int:
    """The bound named by environment variable ``variable`` (see :data:`LIMITS`)."""
    text = os.environ.get(variable)
    if text is None:
        return LIMITS[variable]
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{variable}={text!r}: must be a positive integer")
    return value


def work_items_bound(config: GemmConfig) -> int:
    """An upper bound on what a run of ``config`` holds: work items, programs and CUs.

    Every strategy has at most one work item per tile and split, plus one reduction program
    per tile and row band for split-K; Stream-K's walk (and work stealing's Stream-K tail) adds
    at most one item per program.
    """
    splits = config.split_k or 1
    items = config.total_tiles * (splits + (config.reduce_bands or 1) if splits > 1 else 1)
    if config.protocol is not None or config.sk_tiles:
        items += config.grid
    return items + config.grid + config.cus


def check_size(config: GemmConfig, *, with_arrays: bool) -> None:
    """ValueError, in constant time, for a run beyond :data:`LIMITS`, naming how to lift it."""
    c = config
    problem = f"{c.m}x{c.n}x{c.k} in {c.block_m}x{c.block_n}x{c.block_k} blocks"
    items, most = work_items_bound(c), limit("REFSIM_MAX_WORK_ITEMS")
    if items > most:
        raise ValueError(
            f"{problem} needs up to {items:.3g} work items and programs, over the limit of "
            f"{most:,}; set REFSIM_MAX_WORK_ITEMS to raise it, or use larger blocks"
        )
    elements, most = c.m * c.k + c.k * c.n + c.m * c.n, limit("REFSIM_MAX_ELEMENTS")
    if with_arrays and elements > most:
        raise ValueError(
            f"numerics of {c.m}x{c.n}x{c.k} hold {elements:.3g} array elements, over the limit "
            f"of {most:,}; set REFSIM_MAX_ELEMENTS to raise it, or simulate without arrays"
        )
