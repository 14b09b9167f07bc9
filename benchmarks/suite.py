"""The GPU benchmark suite: every strategy and ``kernels.matmul`` beside torch.matmul, per shape.

Shapes in named categories (``--list`` prints them, no GPU needed): squares, tile counts just
below/at/above whole waves of 128x128 tiles on 132 SMs (H100/H200) and 304 CUs (MI300X),
skinny M (decode-like) and skinny N, large K, small problems and the Llama 3 8B/70B projections,
each in bf16 and fp16. Per shape and dtype, in one process: ``torch.matmul``, ``kernels.matmul``
(strategy "auto") and every fixed strategy of ``benchmarks/kernels_vs_vendor.py`` (each
deterministic Stream-K fixup), each output first checked against the float64 product within
:mod:`conformance.tolerances` (a wrong one is reported, not timed), then timed with
``triton.testing.do_bench`` (median, L2 flushed); our kernels also report the in-kernel time of a
traced run (first record's start to last record's end). Then the host time of one call at 128^3.
Writes ``suite-<gpu>.md`` and ``suite-<gpu>.csv`` under ``--out-dir`` (default docs/gpu).
"""

import argparse
import csv
import dataclasses
import functools
import math
import pathlib
import re
import sys

import torch
from kernels_vs_vendor import STRATEGIES, bench_if_correct, blocks_for
from torch_api import host_us

from refsim.config import GemmConfig
from refsim.hardware import PROFILES
from refsim.sweep.spec import SHAPE_SETS
from refsim.tiling import cdiv

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
VENDOR = "torch.matmul"
AUTO = "auto"
CANDIDATES = (AUTO, *STRATEGIES)
WAVE_TILE = 128  # the tile that defines the wave-quantized categories
WAVE_K = 4096
DEFAULT_OUT_DIR = pathlib.Path(__file__).resolve().parent.parent / "docs" / "gpu"
LLM_TOKENS = (128, 2048, 16384)
CSV_FIELDS = (
    "category",
    "shape",
    "m",
    "n",
    "k",
    "dtype",
    "candidate",
    "config",
    "ms",
    "tflops",
    "ratio",
    "kernel_us",
    "problem",
)


@dataclasses.dataclass(frozen=True)
class Shape:
    """One benchmarked problem: C[m, n] = A[m, k] @ B[k, n], with a name inside its category."""

    category: str
    label: str
    m: int
    n: int
    k: int

    @property
    def size(self):
        return (self.m, self.n, self.k)


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One candidate on one shape and dtype: do_bench's median ``ms`` and the traced
    ``kernel_us``, or None with the ``problem`` that kept it from being timed."""

    shape: Shape
    dtype: str
    candidate: str
    config: str = ""
    ms: float | None = None
    kernel_us: float | None = None
    problem: str | None = None


def wave_shapes(units, tile_grids, block=(WAVE_TILE, WAVE_TILE), k=WAVE_K):
    """Shapes whose tile grid of ``block`` (BLOCK_M, BLOCK_N) is ``rows x cols``, named by
    their tile count in waves of ``units``."""
    shapes = []
    for rows, cols in tile_grids:
        tiles = rows * cols
        waves, extra = divmod(tiles, units)
        if extra > units // 2:
            waves, extra = waves + 1, extra - units
        where = f"{waves} wave{'s' * (waves > 1)}" + (f" {extra:+d}" if extra else "")
        label = f"{tiles} tiles ({where})"
        shapes.append(Shape(f"waves-{units}", label, rows * block[0], cols * block[1], k))
    return shapes


def llm_shapes(tokens=LLM_TOKENS):
    """Llama 3 8B/70B projections at ``tokens`` token counts; projections of equal (N, K)
    once."""
    shapes = []
    for model, projections in SHAPE_SETS.items():
        names_by_size = {}
        for name, size in projections.items():
            names_by_size.setdefault(size, []).append(name)
        for count in tokens:
            for (n, k), names in names_by_size.items():
                label = f"{model} {'/'.join(names)}, {count} tokens"
                shapes.append(Shape("llm", label, count, n, k))
    return shapes


def shapes_of(category, sizes):
    """Shapes of one category, each named by its size."""
    return [Shape(category, "x".join(map(str, size)), *size) for size in sizes]


def all_shapes():
    """Every shape of the suite, by category in a fixed order."""
    return (
        shapes_of("squares", [(s, s, s) for s in (1024, 2048, 3072, 4096, 6144, 8192)])
        + wave_shapes(132, [(10, 13), (11, 12), (7, 19), (13, 20), (12, 22), (14, 19), (22, 24)])
        + wave_shapes(304, [(15, 20), (16, 19), (17, 18), (20, 30), (19, 32), (21, 29)])
        + shapes_of(
            "skinny-m",
            [
                (1, 4096, 4096),
                (4, 4096, 4096),
                (8, 8192, 8192),
                (16, 14336, 4096),
                (16, 4096, 14336),
            ],
        )
        + shapes_of(
            "skinny-n",
            [
                (4096, 1, 4096),
                (4096, 4, 4096),
                (8192, 8, 8192),
                (14336, 16, 4096),
                (4096, 16, 14336),
            ],
        )
        + shapes_of(
            "large-k",
            [(512, 512, 16384), (1024, 1024, 32768), (256, 256, 65536), (128, 4096, 16384)],
        )
        + shapes_of(
            "small",
            [(128, 128, 128), (256, 256, 256), (512, 512, 512), (64, 512, 512), (512, 256, 128)],
        )
        + llm_shapes()
    )


CATEGORIES = tuple(dict.fromkeys(shape.category for shape in all_shapes()))


def select_shapes(categories=CATEGORIES, quick=False):
    """The shapes of ``categories``; with ``quick``, the first of each (a smoke run)."""
    chosen = [shape for shape in all_shapes() if shape.category in categories]
    if quick:
        first = {}
        for shape in chosen:
            first.setdefault(shape.category, shape)
        chosen = list(first.values())
    return chosen


def strategy_config(shape, dtype, strategy, device=PROFILES["h200"], units=None):
    """The GemmConfig that ``strategy`` (a name of ``STRATEGIES``) runs ``shape`` with: the
    blocks of kernels_vs_vendor.py on ``device`` with ``units`` SMs/CUs (its own by default).
    Raises ValueError when the config refuses the combination."""
    return GemmConfig(
        *shape.size,
        dtype=dtype,
        device=device,
        cus=units or device.cus,
        **blocks_for(shape.size),
        **STRATEGIES[strategy],
    )


def describe(config):
    """A config as the tables show it: strategy, fixup or split (and the reduction's row bands
    when more than one), blocks."""
    return (
        config.strategy
        + (f" {config.fixup}" if config.strategy == "streamk" else "")
        + (f" x{config.split_k}" if config.strategy == "split_k" else "")
        + (f" bands {config.reduce_bands}" if (config.reduce_bands or 1) > 1 else "")
        + f" {config.block_m}x{config.block_n}x{config.block_k}"
    )


def kernel_us(config, a, b):
    """In-kernel time of a traced run in microseconds: first record's start to last record's end
    (the second run, so that compilation is not counted)."""
    import kernels

    for _ in range(2):
        records = kernels.run(config, a, b, trace=True).records
        torch.cuda.synchronize()
    return max(r.t_end_us for r in records) - min(r.t_start_us for r in records)


def run_output(config, a, b, out):
    """``kernels.run`` of ``config`` into ``out``; its output (what is checked and timed)."""
    import kernels

    return kernels.run(config, a, b, out=out).output


def measure(shape, dtype, candidates, device, units):
    """The measurements of torch.matmul and ``candidates`` on one shape and dtype, on the GPU."""
    import kernels
    from kernels.auto import config_for

    torch_dtype = DTYPES[dtype]
    a = torch.randn((shape.m, shape.k), device="cuda", dtype=torch_dtype)
    b = torch.randn((shape.k, shape.n), device="cuda", dtype=torch_dtype)
    ms, problem = bench_if_correct(lambda: torch.matmul(a, b), a, b)
    rows = [Measurement(shape, dtype, VENDOR, "", ms, None, problem)]
    for candidate in candidates:
        if candidate == AUTO:
            config = config_for(shape.m, shape.n, shape.k, torch_dtype, a.device)
            call = functools.partial(kernels.matmul, a, b)
        else:
            try:
                config = strategy_config(shape, dtype, candidate, device, units)
            except ValueError as error:
                rows.append(Measurement(shape, dtype, candidate, problem=f"skipped: {error}"))
                continue
            out = torch.empty((shape.m, shape.n), device="cuda", dtype=torch_dtype)
            call = functools.partial(run_output, config, a, b, out)
        ms, problem = bench_if_correct(call, a, b)
        traced = None if problem else kernel_us(config, a, b)
        rows.append(Measurement(shape, dtype, candidate, describe(config), ms, traced, problem))
    return rows


def host_overhead():
    """``(call, us per call or None, problem)`` at 128^3, each of ours after torch's own
    operation: many calls without synchronisation (launch-bound)."""
    import kernels
    from conformance.tolerances import tolerance_problem
    from kernels.auto import config_for

    a = torch.randn((128, 128), device="cuda", dtype=torch.bfloat16)
    bias = torch.randn(128, device="cuda", dtype=torch.bfloat16)
    batch = torch.randn((4, 128, 128), device="cuda", dtype=torch.bfloat16)
    config = config_for(128, 128, 128, a.dtype, a.device)
    ours = kernels.nn.Linear(128, 128, device="cuda", dtype=torch.bfloat16)
    theirs = torch.nn.Linear(128, 128, device="cuda", dtype=torch.bfloat16)
    theirs.load_state_dict(ours.state_dict())
    weight_t = ours.weight.detach().t()
    calls = (
        # name, call, (a, b, bias) its output must match
        (VENDOR, lambda: torch.matmul(a, a), (a, a, None)),
        ("kernels.matmul (auto, cached)", lambda: kernels.matmul(a, a), (a, a, None)),
        ("kernels.run (a GemmConfig in hand)", lambda: kernels.run(config, a, a).output, (a, a, None)),
        ("torch.addmm", lambda: torch.addmm(bias, a, a), (a, a, bias)),
        ("kernels.addmm", lambda: kernels.addmm(bias, a, a), (a, a, bias)),
        ("torch.nn.Linear (no grad)", lambda: theirs(a), (a, weight_t, ours.bias.detach())),
        ("kernels.nn.Linear (no grad)", lambda: ours(a), (a, weight_t, ours.bias.detach())),
        ("torch.bmm (4 x 128^3)", lambda: torch.bmm(batch, batch)[3], (batch[3], batch[3], None)),
        ("kernels.bmm (4 x 128^3)", lambda: kernels.bmm(batch, batch)[3], (batch[3], batch[3], None)),
    )  # fmt: skip
    rows = []
    with torch.no_grad():
        for name, call, operands in calls:
            problem = tolerance_problem(call(), *operands)
            rows.append((name, None if problem else host_us(call), problem))
    return rows


def tflops(measurement):
    shape = measurement.shape
    return 2 * shape.m * shape.n * shape.k / measurement.ms / 1e9


def ratios(measurements):
    """``{id(measurement): torch.matmul ms / its ms}`` for every timed measurement whose shape
    and dtype have a timed torch.matmul."""
    vendor = {(m.shape, m.dtype): m.ms for m in measurements if m.candidate == VENDOR and m.ms}
    return {
        id(m): vendor[m.shape, m.dtype] / m.ms
        for m in measurements
        if m.ms and vendor.get((m.shape, m.dtype))
    }


def _cell(value, digits):
    return "" if value is None else f"{value:.{digits}f}"


def summary_lines(measurements):
    """Geomean ratio of auto, its worst shape, and the fastest candidate per shape and dtype."""
    ratio_of = ratios(measurements)
    auto = [(ratio_of[id(m)], m) for m in measurements if m.candidate == AUTO and id(m) in ratio_of]
    lines = ["## Summary", ""]
    if auto:
        geomean = math.exp(sum(math.log(r) for r, _ in auto) / len(auto))
        worst_ratio, worst = min(auto, key=lambda pair: pair[0])
        lines += [
            f"- auto (`kernels.matmul`): geomean ratio {geomean:.3f} over {len(auto)} "
            "shape/dtype pairs (above 1: faster than torch.matmul).",
            f"- worst shape for auto: {worst.shape.category} {worst.shape.label} "
            f"({worst.shape.m}x{worst.shape.n}x{worst.shape.k}) {worst.dtype}, ratio "
            f"{worst_ratio:.3f} ({worst.config}).",
        ]
    else:
        lines.append("- auto (`kernels.matmul`): no timed result against a timed torch.matmul.")
    table = [
        "",
        "| category | shape | M x N x K | dtype | best of ours | its ratio | auto's ratio | "
        "auto's regret |",
        "|---|---|---|---|---|---:|---:|---:|",
    ]
    groups = {}
    for m in measurements:
        groups.setdefault((m.shape, m.dtype), []).append(m)
    regrets = []
    for (shape, dtype), group in groups.items():
        ours = [m for m in group if m.candidate != VENDOR and id(m) in ratio_of]
        best = max(ours, key=lambda m: ratio_of[id(m)], default=None)
        auto_ratio = next((ratio_of[id(m)] for m in ours if m.candidate == AUTO), None)
        regret = ratio_of[id(best)] / auto_ratio if best and auto_ratio else None
        if regret is not None:
            regrets.append(regret)
        table.append(
            f"| {shape.category} | {shape.label} | {shape.m}x{shape.n}x{shape.k} | {dtype} | "
            f"{best.candidate if best else 'none timed'} | "
            f"{_cell(best and ratio_of[id(best)], 3)} | {_cell(auto_ratio, 3)} | "
            f"{_cell(regret, 3)} |"
        )
    if regrets:
        geomean = math.exp(sum(math.log(r) for r in regrets) / len(regrets))
        lines.append(
            f"- auto's regret (the best of our candidates' time over auto's): geomean "
            f"{geomean:.3f}, worst {max(regrets):.3f}, auto the best on "
            f"{sum(r <= 1.0 for r in regrets)} of {len(regrets)}."
        )
    return lines + table


def markdown_lines(measurements, env, host, options):
    """The report: environment header, summary, every measurement by category, host overhead."""
    ratio_of = ratios(measurements)
    lines = [
        f"# Benchmark suite on {env['gpu']}",
        "",
        f"GPU {env['gpu']} ({env['sms']} SMs), driver {env['driver']}, torch {env['torch']}, "
        f"Triton {env['triton']}, {env['date']}. {options}. Random normal inputs; "
        "`do_bench` median with the L2 flushed; ratio = torch.matmul time / our time (above 1: "
        "ours is faster); kernel us = first start to last end of a traced run's records. Every "
        "output is checked against the float64 product first: a wrong one is not timed.",
        "",
        *summary_lines(measurements),
    ]
    for category in dict.fromkeys(m.shape.category for m in measurements):
        lines += [
            "",
            f"## {category}",
            "",
            "| shape | M x N x K | dtype | candidate | config | ms | TFLOP/s | ratio | "
            "kernel us | check |",
            "|---|---|---|---|---|---:|---:|---:|---:|---|",
        ]
        for m in measurements:
            if m.shape.category != category:
                continue
            lines.append(
                f"| {m.shape.label} | {m.shape.m}x{m.shape.n}x{m.shape.k} | {m.dtype} | "
                f"{m.candidate} | {m.config} | {_cell(m.ms, 4)} | "
                f"{_cell(m.ms and tflops(m), 1)} | {_cell(ratio_of.get(id(m)), 3)} | "
                f"{_cell(m.kernel_us, 1)} | {m.problem or 'ok'} |"
            )
    lines += [
        "",
        "## Host overhead",
        "",
        "Host time of one call, 128x128x128 bf16 (launch-bound, many calls, no synchronisation):",
        "",
        "| call | us per call |",
        "|---|---:|",
    ]
    lines += [
        f"| {name} | {f'wrong, not timed: {problem}' if problem else f'{us:.1f}'} |"
        for name, us, problem in host
    ]
    return lines


def csv_rows(measurements):
    """One dict per measurement with the fields of ``CSV_FIELDS`` (empty where not timed)."""
    ratio_of = ratios(measurements)
    return [
        {
            "category": m.shape.category,
            "shape": m.shape.label,
            "m": m.shape.m,
            "n": m.shape.n,
            "k": m.shape.k,
            "dtype": m.dtype,
            "candidate": m.candidate,
            "config": m.config,
            "ms": _cell(m.ms, 6),
            "tflops": _cell(m.ms and tflops(m), 3),
            "ratio": _cell(ratio_of.get(id(m)), 4),
            "kernel_us": _cell(m.kernel_us, 3),
            "problem": m.problem or "",
        }
        for m in measurements
    ]


def gpu_slug(name):
    """A GPU name as file names carry it: "NVIDIA H200" -> "h200"."""
    name = re.sub(r"^(nvidia|amd)\s+", "", name.strip(), flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


CSV_HEADER = re.compile(r"# GPU (.+), driver (.+), torch (.+), Triton (.+), (\d{4}-\d\d-\d\d)$")


def gpu_profile_name(gpu):
    """refsim's profile of a GPU named as torch names it; KeyError when refsim has none."""
    for name in ("h200", "h100", "mi300x"):
        if name in gpu.lower():
            return name
    raise KeyError(f"no refsim profile for GPU {gpu!r}")


def csv_environment(header):
    """The environment the first line of a :func:`write_tables` CSV names, with the SM count
    of its GPU's refsim profile (the line does not hold it); ValueError when it is no such
    line, KeyError for a GPU refsim has no profile of."""
    found = CSV_HEADER.match(header.strip())
    if not found:
        raise ValueError(f"not a report CSV (its first line is {header.strip()!r})")
    env = dict(zip(("gpu", "driver", "torch", "triton", "date"), found.groups()))
    env["sms"] = PROFILES[gpu_profile_name(env["gpu"])].cus
    return env


def needs_gpu(script):
    """True, after saying so in one line, when torch sees no GPU for ``script`` to run on."""
    if torch.cuda.is_available():
        return False
    print(
        f"{script}: needs a CUDA or ROCm GPU (torch.cuda.is_available() is false)", file=sys.stderr
    )
    return True


def write_tables(name, lines, rows, fields, env, out_dir):
    """Write ``<name>-<gpu>.md`` (the Markdown ``lines``) and ``<name>-<gpu>.csv`` (``rows``,
    dicts of ``fields``, after a comment line naming the environment) under ``out_dir``;
    returns both paths."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"{name}-{gpu_slug(env['gpu'])}"
    markdown, table = stem.with_suffix(".md"), stem.with_suffix(".csv")
    markdown.write_text("\n".join(lines) + "\n")
    with open(table, "w", newline="") as file:
        file.write(
            f"# GPU {env['gpu']}, driver {env['driver']}, torch {env['torch']}, "
            f"Triton {env['triton']}, {env['date']}\n"
        )
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return markdown, table


def write_report(measurements, env, host, options, out_dir):
    """Write ``suite-<gpu>.md`` and ``.csv`` under ``out_dir``; returns both paths."""
    lines = markdown_lines(measurements, env, host, options)
    return write_tables("suite", lines, csv_rows(measurements), CSV_FIELDS, env, out_dir)


def list_lines(shapes):
    """The shapes by category, with their 128x128 tile counts."""
    lines = []
    for category in dict.fromkeys(shape.category for shape in shapes):
        members = [shape for shape in shapes if shape.category == category]
        lines.append(f"{category} ({len(members)}):")
        for shape in members:
            tiles = cdiv(shape.m, WAVE_TILE) * cdiv(shape.n, WAVE_TILE)
            lines.append(
                f"  {shape.label:<36} {shape.m}x{shape.n}x{shape.k}  ({tiles} tiles of 128x128)"
            )
    return lines


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--categories", nargs="+", choices=CATEGORIES, default=list(CATEGORIES))
    parser.add_argument(
        "--strategies",
        nargs="+",
        choices=CANDIDATES,
        default=list(CANDIDATES),
        help="our candidates (torch.matmul is always measured)",
    )
    parser.add_argument("--quick", action="store_true", help="the first shape of each category")
    parser.add_argument("--list", action="store_true", help="print the shapes and exit")
    parser.add_argument("--out-dir", default=str(DEFAULT_OUT_DIR), help="default: docs/gpu")
    parser.add_argument(
        "--combine",
        nargs=2,
        metavar=("FIRST.csv", "SECOND.csv"),
        help="no GPU: write one report of two runs, the second's candidates replacing the first's",
    )
    parser.add_argument(
        "--newer",
        action="store_true",
        help="with --combine: the second run's code is newer, so its measurements replace the "
        "first's also where the config is the same",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the shapes and dtypes already in the CSV under --out-dir (same GPU) and "
        "measure only the rest",
    )
    args = parser.parse_args(argv)
    if args.newer and not args.combine:
        parser.error("--newer only says how --combine takes the second run")
    return args


def number_or_none(cell):
    return float(cell) if cell else None


def read_measurements(path, gpu, shapes):
    """The measurements of an earlier run's CSV at ``path`` whose shape is among ``shapes``;
    none when the file is missing or was written on another GPU than ``gpu``."""
    path = pathlib.Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as file:
        header = file.readline()
        if not header.startswith(f"# GPU {gpu},"):
            return []
        by_name = {(shape.category, shape.label): shape for shape in shapes}
        measurements = []
        for row in csv.DictReader(file):
            shape = by_name.get((row["category"], row["shape"]))
            if shape is not None:
                measurements.append(
                    Measurement(
                        shape,
                        row["dtype"],
                        row["candidate"],
                        row["config"],
                        number_or_none(row["ms"]),
                        number_or_none(row["kernel_us"]),
                        row["problem"] or None,
                    )
                )
        return measurements


def combine(first, second, newer=False):
    """``first``'s measurements with those of the candidates ``second`` measured put in their
    place where ``second`` ran another config (torch.matmul's excepted; where the config is the
    same, ``first``'s measurement stays, taken in one process with the other candidates, unless
    ``newer``: ``second`` ran newer code, and all its measurements count), each scaled by the
    two runs' torch.matmul times on its shape and dtype so that its ratio to torch is the one
    measured in its own run. Shapes and dtypes only ``second`` measured are added as they are,
    torch.matmul included."""
    vendor = {(m.shape, m.dtype): m.ms for m in second if m.candidate == VENDOR}
    base = {(m.shape, m.dtype): m.ms for m in first if m.candidate == VENDOR}
    seconds = {(m.shape, m.dtype, m.candidate): m for m in second if m.candidate != VENDOR}
    combined = []
    for m in first:
        key = (m.shape, m.dtype)
        replacement = seconds.get((*key, m.candidate))
        if replacement is None or (replacement.config == m.config and not newer):
            combined.append(m)
            continue
        scale = base.get(key) / vendor[key] if base.get(key) and vendor.get(key) else None
        ms = replacement.ms * scale if replacement.ms is not None and scale else None
        problem = replacement.problem or (None if ms else "no torch.matmul time to scale by")
        combined.append(dataclasses.replace(replacement, ms=ms, problem=problem))
    return combined + [m for m in second if (m.shape, m.dtype) not in base]


def host_rows(markdown):
    """The host-overhead table of a report's Markdown text, as ``host_overhead`` returns it."""
    section = markdown.split("## Host overhead", 1)[-1] if "## Host overhead" in markdown else ""
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 2 or cells[0] in ("call", "---") or cells[1].startswith("-"):
            continue
        problem = cells[1].removeprefix("wrong, not timed: ")
        if problem != cells[1]:
            rows.append((cells[0], None, problem))
        else:
            rows.append((cells[0], float(cells[1]), None))
    return rows


def combine_reports(first_csv, second_csv, out_dir, newer=False):
    """Write the report of :func:`combine` of two runs' CSVs (same GPU) under ``out_dir``, with
    the second run's host table; the exit status."""
    try:
        header = (pathlib.Path(first_csv).read_text().splitlines() or [""])[0]
        env = csv_environment(header)
    except OSError as error:
        print(f"suite.py: --combine: {first_csv}: {error.strerror}", file=sys.stderr)
        return 2
    except (ValueError, KeyError) as error:
        print(f"suite.py: --combine: {first_csv}: {error}", file=sys.stderr)
        return 2
    shapes = all_shapes()
    first = read_measurements(first_csv, env["gpu"], shapes)
    second = read_measurements(second_csv, env["gpu"], shapes)
    if not first or not second:
        print("suite.py: --combine: both CSVs must be suite runs on the same GPU", file=sys.stderr)
        return 2
    replaced = ", ".join(dict.fromkeys(m.candidate for m in second if m.candidate != VENDOR))
    where = "of newer code" if newer else "where it ran another config than in the first"
    options = (
        f"{len({m.shape for m in first})} shapes; {replaced} from a second run {where} (its "
        "times scaled by the two runs' torch.matmul times, so its ratios are the ones measured "
        "in its own run), every other measurement from the first; host table from the second "
        "run"
    )
    markdown = pathlib.Path(second_csv).with_suffix(".md")
    host = host_rows(markdown.read_text()) if markdown.exists() else []
    for path in write_report(combine(first, second, newer), env, host, options, out_dir):
        print(f"wrote {path}")
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.combine:
        return combine_reports(*args.combine, args.out_dir, args.newer)
    shapes = select_shapes(args.categories, args.quick)
    if args.list:
        print("\n".join(list_lines(shapes)))
        print(f"{len(shapes)} shapes, dtypes {', '.join(args.dtypes)}")
        return 0
    if needs_gpu("suite.py"):
        return 2
    from conformance.report import environment
    from kernels.device import device_profile

    env = environment("cuda")
    device, units = device_profile(0)
    options = (
        f"{len(shapes)} shapes{' (quick)' if args.quick else ''}, dtypes "
        f"{', '.join(args.dtypes)}, candidates {', '.join(args.strategies)}"
    )
    host = host_overhead()
    measurements = []
    if args.resume:
        earlier = pathlib.Path(args.out_dir) / f"suite-{gpu_slug(env['gpu'])}.csv"
        measurements = read_measurements(earlier, env["gpu"], shapes)
    done = {(m.shape, m.dtype) for m in measurements}
    for shape in shapes:
        for dtype in args.dtypes:
            if (shape, dtype) in done:
                continue
            measurements += measure(shape, dtype, args.strategies, device, units)
            # Written after every shape, so that a run cut short keeps what it measured.
            write_report(measurements, env, host, options, args.out_dir)
            print(f"measured {shape.category} {shape.label} {dtype}", file=sys.stderr)
    for path in write_report(measurements, env, host, options, args.out_dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
