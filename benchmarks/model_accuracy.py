"""refsim's predicted makespans against the GPU, on shapes the calibration never measured.

For every held-out shape (``--list`` prints them, no GPU needed) and dtype, and every strategy
and Stream-K fixup the kernels run deterministically (``benchmarks/kernels_vs_vendor.py``'s
strategies), with the blocks auto would choose (the ones a calibration measures), on the local
GPU's config (``kernels.device.device_config``):

* predictions: ``refsim.simulate(config).makespan_us`` with the calibration refsim ships for the
  profile (if any), the same with ``calibration=False`` (datasheet numbers), and a plain
  roofline, ``max(flops / peak, bytes / bandwidth)`` from the profile;
* measurements: the traced in-kernel makespan (first record's start to last record's end, of a
  second traced run) and ``do_bench``'s median with the L2 flushed, the output first checked
  against the float64 product (a wrong one is reported, not timed).

Then, per candidate, the median and 90th percentile of the relative error of each prediction
against each measurement, and how well each predictor picks the fastest candidate of a shape.
The traced time is set beside the same span of refsim's records (first start to last end:
without the launch overhead before the first program), ``do_bench`` beside the makespan.
Shapes are chosen so that none is a calibration shape on 132 SMs; on a GPU with another SM
count, any that coincide with that count's calibration shapes are left out. Writes
``model-accuracy-<gpu>.md`` and ``.csv`` under ``--out-dir`` (default docs/gpu).
"""

import argparse
import csv
import dataclasses
import functools
import math
import sys

import torch
from kernels_vs_vendor import STRATEGIES, bench_if_correct
from suite import (
    DEFAULT_OUT_DIR,
    DTYPES,
    Shape,
    all_shapes,
    csv_environment,
    describe,
    gpu_profile_name,
    kernel_us,
    llm_shapes,
    needs_gpu,
    number_or_none,
    run_output,
    shapes_of,
    wave_shapes,
    write_tables,
)

import refsim
from conformance.report import environment
from kernels.calibrate import blocks_to_measure
from kernels.device import device_config, device_profile
from kernels.rule import gpu_blocks
from refsim.calibration import calibration_shapes, for_profile
from refsim.compare import makespan_us
from refsim.config import GemmConfig
from refsim.hardware import PROFILES
from refsim.tiling import cdiv

CANDIDATES = STRATEGIES
WAVE_UNITS = 132  # the SM count the wave-quantized shapes and the held-out check are for
# the block whose tiles the wave shapes count: auto's for those just under or at whole waves;
# auto halves it where that saves a wave (135 and 272 tiles), and the label keeps the count
WAVE_BLOCK = (128, 256)
WAVE_K = 5120
LLM_TOKENS = (512, 3072)  # 4096 tokens would make q/o 4096^3, a suite shape
PICK_TOLERANCE = 0.03  # a pick within 3% of the measured fastest counts as a hit
ALL = "all candidates"
PREDICTORS = {
    "predicted_us": "refsim",
    "datasheet_us": "refsim, datasheet",
    "roofline_us": "roofline",
}
MEASURES = {"kernel_us": "traced", "do_bench_us": "do_bench"}
# The traced makespan runs from the first record's start to the last one's end, so it is set
# beside the same span of refsim's own records (IN_KERNEL: the launch overhead before the first
# program left out); do_bench's time is set beside the whole predicted makespan.
IN_KERNEL = {
    "predicted_us": "predicted_kernel_us",
    "datasheet_us": "datasheet_kernel_us",
    "roofline_us": "roofline_us",
}
# A row's times, in the CSV's order.
TIMES = tuple(dict.fromkeys((*PREDICTORS, *IN_KERNEL.values(), *MEASURES)))
CSV_FIELDS = (
    "category",
    "shape",
    "m",
    "n",
    "k",
    "dtype",
    "candidate",
    "config",
    *TIMES,
    "problem",
)
TRANSFER = (
    "What carries over from a calibration measured on an H200 to other GPUs, and what does not. "
    "The per-block K-iteration and per-item times are measurements of one GPU, at the clocks "
    "it ran at, with the Triton version that compiled the kernels: another GPU, another power "
    "or clock setting, or another Triton can change them, so a calibration is only used for "
    "the profile it was measured on, and its numbers should be measured again after any of "
    "those change. So do the fitted terms: the split-tile terms and the load terms (how much "
    "slower a long run with every SM busy goes, which on the H200 follows its power and clock "
    "management) describe this GPU and its kernels. "
    "The schedule logic does not depend on them: which program computes which "
    "tile and K-range, wave quantisation (how many waves a tile count takes on a given number of "
    "SMs) and the structure of each fixup (who waits for whom, how many partials are written and "
    "read) are the same on every device, so the model's ranking of candidates rests on them "
    "wherever the relative costs of iterations, partial stores and waits are similar. A profile "
    "without a calibration runs on its datasheet numbers, and should be expected to carry an "
    "error like the datasheet rows above (measured here, on this GPU), not the calibrated one."
)


HELD_OUT = (
    shapes_of("squares", [(s, s, s) for s in (1536, 2560, 3584, 5120, 7168)])
    + wave_shapes(
        WAVE_UNITS, [(13, 10), (12, 11), (9, 15), (13, 20), (16, 17), (22, 18)], WAVE_BLOCK, WAVE_K
    )
    + shapes_of(
        "skinny-m",
        [(1, 5120, 5120), (8, 4096, 14336), (16, 6144, 4096), (32, 8192, 4096), (64, 3072, 8192)],
    )
    + shapes_of(
        "skinny-n",
        [(5120, 1, 5120), (4096, 8, 14336), (6144, 16, 4096), (8192, 32, 4096), (3072, 64, 8192)],
    )
    + shapes_of(
        "large-k",
        [(768, 768, 24576), (384, 384, 49152), (2048, 256, 32768), (256, 1024, 65536)],
    )
    + shapes_of("small", [(192, 192, 192), (384, 128, 256), (256, 768, 384), (96, 320, 640)])
    + llm_shapes(LLM_TOKENS)
)


def calibration_sizes(units):
    """Every ``(M, N, K)`` a calibration on ``units`` SMs measures, over all its blocks."""
    return {size for _, block in blocks_to_measure() for size in calibration_shapes(*block, units)}


def select_shapes(quick=False, units=WAVE_UNITS):
    """The held-out shapes that are neither a calibration shape on ``units`` SMs nor a suite
    shape (the split-tile terms are fitted to the suite); with ``quick``, the first of each
    category."""
    measured = calibration_sizes(units) | {shape.size for shape in all_shapes()}
    chosen = [shape for shape in HELD_OUT if shape.size not in measured]
    if quick:
        first = {}
        for shape in chosen:
            first.setdefault(shape.category, shape)
        chosen = list(first.values())
    return chosen


@dataclasses.dataclass(frozen=True)
class Row:
    """One candidate on one shape and dtype: the three predictions and two measurements in
    microseconds, each None where there is none, with the ``problem`` that explains it; and
    refsim's two predictions over its records' span (``IN_KERNEL``)."""

    shape: Shape
    dtype: str
    candidate: str
    config: str = ""
    predicted_us: float | None = None
    datasheet_us: float | None = None
    roofline_us: float | None = None
    kernel_us: float | None = None
    do_bench_us: float | None = None
    problem: str | None = None
    predicted_kernel_us: float | None = None
    datasheet_kernel_us: float | None = None


def roofline_us(config):
    """``max(flops / peak, bytes / bandwidth)`` in microseconds from the config's profile, with
    A, B and C each moved once."""
    profile = config.profile
    compute_us = config.flops / (profile.peak_tflops[config.dtype] * 1e6)
    nbytes = (config.m * config.k + config.k * config.n + config.m * config.n) * config.elem_bytes
    return max(compute_us, nbytes / (profile.hbm_gbps * 1e3))


def simulated_us(config, calibration=None):
    """refsim's makespan of ``config`` and the span of its records (first start to last end,
    as a trace is measured), in microseconds (``calibration`` as ``simulate`` takes it);
    ValueError when the model deadlocks or refuses the run."""
    result = refsim.simulate(config, calibration=calibration)
    if result.deadlock is not None:
        raise ValueError(f"refsim predicts a {str(result.deadlock).splitlines()[0]}")
    return result.makespan_us, makespan_us(result.records)


def candidate_blocks(shape, dtype, units=WAVE_UNITS):
    """The blocks every candidate runs ``shape`` with: auto's (``kernels.rule.gpu_blocks``), the
    ones a calibration measures, so that every row is judged with calibrated blocks."""
    block_m, block_n, block_k = gpu_blocks(shape.m, shape.n, dtype, units)
    return {"block_m": block_m, "block_n": block_n, "block_k": block_k}


def candidate_config(shape, dtype, candidate, device):
    """The config ``candidate`` runs ``shape`` with on torch ``device``; ValueError when it
    refuses the combination."""
    units = device_config(*shape.size, dtype, device).cus
    blocks = candidate_blocks(shape, dtype, units)
    return device_config(*shape.size, dtype, device, **blocks, **CANDIDATES[candidate])


def predicted_row(row, config):
    """``row`` with refsim's predictions of ``config`` (calibrated, datasheet) and the roofline
    filled in; with the problem that kept refsim from simulating it instead, where it failed."""
    try:
        (predicted, in_kernel), (datasheet, datasheet_in_kernel) = (
            simulated_us(config),
            simulated_us(config, calibration=False),
        )
    except ValueError as error:
        return dataclasses.replace(row, problem=str(error))
    return dataclasses.replace(
        row,
        predicted_us=predicted,
        datasheet_us=datasheet,
        roofline_us=roofline_us(config),
        predicted_kernel_us=in_kernel,
        datasheet_kernel_us=datasheet_in_kernel,
    )


def measure(shape, dtype, candidates, device, predict=True):
    """The rows of ``candidates`` on one shape and dtype, run on the GPU and, with ``predict``,
    predicted."""
    torch_dtype = DTYPES[dtype]
    a = torch.randn((shape.m, shape.k), device=device, dtype=torch_dtype)
    b = torch.randn((shape.k, shape.n), device=device, dtype=torch_dtype)
    rows = []
    for candidate in candidates:
        try:
            config = candidate_config(shape, dtype, candidate, device)
        except ValueError as error:
            rows.append(Row(shape, dtype, candidate, problem=f"refused: {error}"))
            continue
        out = torch.empty((shape.m, shape.n), device=device, dtype=torch_dtype)
        ms, problem = bench_if_correct(functools.partial(run_output, config, a, b, out), a, b)
        row = Row(
            shape,
            dtype,
            candidate,
            describe(config),
            kernel_us=None if problem else kernel_us(config, a, b),
            do_bench_us=None if problem else ms * 1e3,
            problem=problem,
        )
        rows.append(predicted_row(row, config) if predict and not problem else row)
    return rows


def read_measured(path):
    """The environment (``gpu``, ``driver``, ``torch``, ``triton``, ``date``) and the rows of
    an earlier run's CSV, predictions left out; ValueError for a file that is not one."""
    with open(path, newline="") as file:
        try:
            env = csv_environment(file.readline())
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        rows = [
            Row(
                Shape(r["category"], r["shape"], int(r["m"]), int(r["n"]), int(r["k"])),
                r["dtype"],
                r["candidate"],
                r["config"],
                kernel_us=number_or_none(r["kernel_us"]),
                do_bench_us=number_or_none(r["do_bench_us"]),
                problem=r["problem"] or None,
            )
            for r in csv.DictReader(file)
        ]
    return env, rows


def repredict(rows, profile, units):
    """``rows`` measured on ``units`` SMs of refsim ``profile``, predicted by refsim as it is
    now (each candidate's config rebuilt as the measuring run built it)."""
    predicted = []
    for row in rows:
        if row.problem or row.candidate not in CANDIDATES:
            predicted.append(row)
            continue
        blocks = candidate_blocks(row.shape, row.dtype, units)
        xcds = {"xcds": 1} if profile.vendor == "nvidia" else {}
        config = GemmConfig(
            *row.shape.size,
            dtype=row.dtype,
            device=profile,
            cus=units,
            **xcds,
            **blocks,
            **CANDIDATES[row.candidate],
        )
        if describe(config) != row.config and config.strategy == "split_k":
            # measured before the reduction ran in row bands: one program per tile
            config = config.replace(reduce_bands=1)
        if describe(config) != row.config:
            raise ValueError(
                f"{row.shape.label} {row.candidate}: the measured run used {row.config}, "
                f"auto's blocks now give {describe(config)}"
            )
        predicted.append(predicted_row(row, config))
    return predicted


def percentile(values, percent):
    """The ``percent`` percentile of ``values``, interpolating linearly between the two nearest
    ranks (numpy's default), so that the 50th is the median; ValueError for no values."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * percent / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclasses.dataclass(frozen=True)
class ErrorStats:
    """|predicted - measured| / measured over ``count`` rows: its median and 90th percentile
    (None without rows)."""

    count: int
    median: float | None
    p90: float | None


def error_stats(rows, predictor, measure):
    """``{candidate: ErrorStats}`` of attribute ``predictor`` (its ``IN_KERNEL`` span against
    the traced ``kernel_us``) against attribute ``measure`` over the rows that have both,
    candidates in the rows' order, then ``ALL`` over every row."""
    errors = {}
    for row in rows:
        predicted = getattr(row, IN_KERNEL[predictor] if measure == "kernel_us" else predictor)
        measured = getattr(row, measure)
        if predicted is not None and measured:
            errors.setdefault(row.candidate, []).append(abs(predicted - measured) / measured)
    errors[ALL] = [error for values in errors.values() for error in values]
    return {
        candidate: ErrorStats(
            len(values),
            percentile(values, 50) if values else None,
            percentile(values, 90) if values else None,
        )
        for candidate, values in errors.items()
    }


@dataclasses.dataclass(frozen=True)
class PickStats:
    """How a predictor picks among a shape's candidates: over ``shapes`` shape/dtype pairs, in
    how many (``hits``) its fastest was within ``PICK_TOLERANCE`` of the measured fastest, and
    the geometric mean of measured time of its pick / measured best (None without shapes)."""

    shapes: int
    hits: int
    geomean_regret: float | None


def pick_stats(rows, predictor, tolerance=PICK_TOLERANCE):
    """The :class:`PickStats` of attribute ``predictor``, by ``do_bench``: per shape and dtype
    with at least two candidates both predicted and timed, its fastest among them (ties go to
    the earlier row) against the fastest measured."""
    groups = {}
    for row in rows:
        if getattr(row, predictor) is not None and row.do_bench_us:
            groups.setdefault((row.shape, row.dtype), []).append(row)
    regrets = []
    for group in groups.values():
        if len(group) < 2:
            continue
        pick = min(group, key=lambda row: getattr(row, predictor))
        regrets.append(pick.do_bench_us / min(row.do_bench_us for row in group))
    if not regrets:
        return PickStats(0, 0, None)
    hits = sum(regret <= 1 + tolerance for regret in regrets)
    geomean = math.exp(sum(math.log(regret) for regret in regrets) / len(regrets))
    return PickStats(len(regrets), hits, geomean)


def _cell(value, digits):
    return "" if value is None else f"{value:.{digits}f}"


def _percent(value):
    return "" if value is None else f"{value:.1%}"


def summary_lines(rows):
    """The error table per candidate and predictor, and the pick table, in Markdown."""
    lines = [
        "| candidate | predictor | vs traced: n | median | p90 | vs do_bench: n | median | p90 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    stats = {
        (predictor, measure): error_stats(rows, predictor, measure)
        for predictor in PREDICTORS
        for measure in MEASURES
    }
    candidates = dict.fromkeys(c for table in stats.values() for c in table)
    for candidate in candidates:
        for predictor, name in PREDICTORS.items():
            cells = []
            for measure in MEASURES:
                entry = stats[predictor, measure].get(candidate, ErrorStats(0, None, None))
                cells += [str(entry.count), _percent(entry.median), _percent(entry.p90)]
            lines.append(f"| {candidate} | {name} | {' | '.join(cells)} |")
    lines += [
        "",
        f"| predictor | shapes | fastest within {PICK_TOLERANCE:.0%} | geomean regret |",
        "|---|---:|---:|---:|",
    ]
    for predictor, name in PREDICTORS.items():
        picks = pick_stats(rows, predictor)
        hits = f"{picks.hits} ({picks.hits / picks.shapes:.0%})" if picks.shapes else ""
        lines.append(f"| {name} | {picks.shapes} | {hits} | {_cell(picks.geomean_regret, 3)} |")
    return lines


def markdown_lines(rows, env, notes):
    """The report: environment header, method, summary, transfer expectations, every row."""
    lines = [
        f"# refsim's predictions against {env['gpu']}",
        "",
        f"GPU {env['gpu']} ({env['sms']} SMs), driver {env['driver']}, torch {env['torch']}, "
        f"Triton {env['triton']}, {env['date']}. {notes}.",
        "",
        "Held-out shapes: none is a shape the calibration measures. Predictions: refsim's "
        "makespan with the calibration it ships for the profile (refsim), the same with the "
        "datasheet numbers (`calibration=False`), and a roofline, max(flops / peak, bytes / "
        "bandwidth) with A, B and C moved once. Measurements: the traced in-kernel makespan "
        "(first record's start to last record's end, second traced run) and `do_bench`'s "
        "median with the L2 flushed (launch included); every output is checked against the "
        "float64 product first, and a wrong one is not timed. A prediction is set beside the "
        "traced time over the same span of its own records (first start to last end, so "
        "without the launch overhead before the first program: refsim in-kernel us) and beside "
        "`do_bench` as its whole makespan. Error = |predicted - measured| / measured. A pick "
        "is a predictor's fastest candidate of a shape among those predicted "
        f"and timed; a hit is within {PICK_TOLERANCE:.0%} of the measured fastest by "
        "`do_bench`; regret = measured time of the pick / measured fastest. The roofline gives "
        "every candidate of a shape the same time, so its pick is always the first candidate "
        "timed (data-parallel by default): the baseline of no model at all.",
        "",
        "## Summary",
        "",
        *summary_lines(rows),
        "",
        "## What transfers to other GPUs",
        "",
        TRANSFER,
    ]
    for category in dict.fromkeys(row.shape.category for row in rows):
        lines += [
            "",
            f"## {category}",
            "",
            "| shape | M x N x K | dtype | candidate | config | refsim us | refsim in-kernel us | "
            "datasheet us | roofline us | traced us | do_bench us | check |",
            "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for row in rows:
            if row.shape.category != category:
                continue
            shape = row.shape
            lines.append(
                f"| {shape.label} | {shape.m}x{shape.n}x{shape.k} | {row.dtype} | "
                f"{row.candidate} | {row.config} | {_cell(row.predicted_us, 2)} | "
                f"{_cell(row.predicted_kernel_us, 2)} | {_cell(row.datasheet_us, 2)} | "
                f"{_cell(row.roofline_us, 2)} | "
                f"{_cell(row.kernel_us, 2)} | {_cell(row.do_bench_us, 2)} | "
                f"{row.problem or 'ok'} |"
            )
    return lines


def csv_rows(rows):
    """One dict per row with the fields of ``CSV_FIELDS`` (empty where there is no value)."""
    return [
        {
            "category": row.shape.category,
            "shape": row.shape.label,
            "m": row.shape.m,
            "n": row.shape.n,
            "k": row.shape.k,
            "dtype": row.dtype,
            "candidate": row.candidate,
            "config": row.config,
            **{field: _cell(getattr(row, field), 3) for field in TIMES},
            "problem": row.problem or "",
        }
        for row in rows
    ]


def write_report(rows, env, notes, out_dir, name="model-accuracy"):
    """Write ``<name>-<gpu>.md`` and ``.csv`` under ``out_dir``; returns both paths."""
    lines = markdown_lines(rows, env, notes)
    return write_tables(name, lines, csv_rows(rows), CSV_FIELDS, env, out_dir)


# The report of a --measure-only run (times without predictions), beside the published one.
MEASURED_NAME = "model-accuracy-measured"


def list_lines(shapes):
    """The shapes by category, with the candidates' blocks and their tile count."""
    lines = []
    for category in dict.fromkeys(shape.category for shape in shapes):
        members = [shape for shape in shapes if shape.category == category]
        lines.append(f"{category} ({len(members)}):")
        for shape in members:
            blocks = candidate_blocks(shape, "bf16")
            tiles = cdiv(shape.m, blocks["block_m"]) * cdiv(shape.n, blocks["block_n"])
            block = f"{blocks['block_m']}x{blocks['block_n']}x{blocks['block_k']}"
            lines.append(
                f"  {shape.label:<34} {shape.m}x{shape.n}x{shape.k}  ({tiles} tiles of {block})"
            )
    return lines


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=["bf16"])
    parser.add_argument("--strategies", nargs="+", choices=CANDIDATES, default=list(CANDIDATES))
    parser.add_argument("--quick", action="store_true", help="the first shape of each category")
    parser.add_argument("--list", action="store_true", help="print the shapes and exit")
    parser.add_argument("--out-dir", default=str(DEFAULT_OUT_DIR), help="default: docs/gpu")
    parser.add_argument(
        "--measure-only",
        action="store_true",
        help="time the GPU only, into model-accuracy-measured-<gpu>.csv; predict later with "
        "--from-csv (no GPU needed then)",
    )
    parser.add_argument(
        "--from-csv",
        metavar="FILE",
        help="predict the rows an earlier run measured (no GPU) and write the report",
    )
    return parser.parse_args(argv)


def notes_line(shapes, quick, dtypes, strategies, profile):
    calibration = for_profile(profile.name)
    return (
        f"{len(shapes)} held-out shapes{' (quick)' if quick else ''}, dtypes "
        f"{', '.join(dtypes)}, candidates {', '.join(strategies)}; refsim profile "
        f"{profile.name}, "
        + (calibration.describe() if calibration else "no calibration shipped (datasheet)")
    )


def from_csv(path, out_dir):
    """Predict an earlier run's measured rows and write the report; the exit status."""
    try:
        env, rows = read_measured(path)
        profile = PROFILES[gpu_profile_name(env["gpu"])]
        rows = repredict(rows, profile, profile.cus)
    except (OSError, ValueError, KeyError) as error:
        print(f"model_accuracy.py: --from-csv: {error}", file=sys.stderr)
        return 2
    shapes = list(dict.fromkeys(row.shape for row in rows))
    dtypes = list(dict.fromkeys(row.dtype for row in rows))
    strategies = list(dict.fromkeys(row.candidate for row in rows))
    quick = set(shapes) == set(select_shapes(True, profile.cus))
    notes = notes_line(shapes, quick, dtypes, strategies, profile)
    planned = len(select_shapes(units=profile.cus))
    if not quick and len(shapes) < planned:
        notes += f"; the run was cut short: {len(shapes)} of the {planned} held-out shapes"
    print("\n".join(summary_lines(rows)))
    for written in write_report(rows, env, notes + " (predicted after the run)", out_dir):
        print(f"wrote {written}")
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.from_csv:
        return from_csv(args.from_csv, args.out_dir)
    if args.list:
        shapes = select_shapes(args.quick)
        print("\n".join(list_lines(shapes)))
        print(f"{len(shapes)} shapes, dtypes {', '.join(args.dtypes)}")
        return 0
    if needs_gpu("model_accuracy.py"):
        return 2
    env = environment("cuda")
    profile, units = device_profile(0)
    shapes = select_shapes(args.quick, units)
    device = torch.device("cuda", 0)
    notes = notes_line(shapes, args.quick, args.dtypes, args.strategies, profile)
    name = MEASURED_NAME if args.measure_only else "model-accuracy"
    rows = []
    for shape in shapes:
        for dtype in args.dtypes:
            rows += measure(shape, dtype, args.strategies, device, not args.measure_only)
            # Written after every shape, so that a run cut short keeps what it measured.
            write_report(rows, env, notes, args.out_dir, name)
            print(f"measured {shape.category} {shape.label} {dtype}", file=sys.stderr)
    print("\n".join(summary_lines(rows)))
    for path in write_report(rows, env, notes, args.out_dir, name):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
