"""Split-K's reduction in row bands against one program per tile, beside ``torch.matmul``.

For every suite shape where ``strategy="auto"`` runs split-K (or the shapes given), times the
same configuration three ways: the default row bands with the partial loads unrolled, the
default bands without unrolling, and one reduction program per tile (``reduce_bands=1``), as
the reduction ran before bands. Each output is checked first (:mod:`conformance.tolerances`);
``do_bench`` median, L2 flushed, same process. The reduction's own time is the traced span of
its launch (first start to last end), set beside refsim's prediction of the same span with the
calibration refsim ships for the GPU. Writes ``split-k-reduction-<gpu>.{md,csv}``; with
``--from-csv FILE`` (no GPU) it predicts an earlier run's rows again with refsim as it is now.
"""

import argparse
import csv
import functools
import pathlib
import re
import sys

import torch
from kernels_vs_vendor import bench_if_correct
from suite import (
    DEFAULT_OUT_DIR,
    DTYPES,
    csv_environment,
    describe,
    gpu_profile_name,
    needs_gpu,
    number_or_none,
    run_output,
    select_shapes,
    write_tables,
)

import refsim
from refsim.compare import makespan_us
from refsim.config import GemmConfig

FIELDS = (
    "shape", "m", "n", "k", "dtype", "variant", "config", "ms", "ratio", "reduce_us",
    "predicted_reduce_us",
)  # fmt: skip
# describe()'s words for a split-K config: "split_k x8 bands 16 128x128x64"
DESCRIBED = re.compile(r"split_k x(\d+)(?: bands (\d+))? (\d+)x(\d+)x(\d+)$")
# name -> (GemmConfig overrides, unroll the partial loads)
VARIANTS = {
    "bands": ({}, True),
    "bands, not unrolled": ({}, False),
    "one program per tile": ({"reduce_bands": 1}, True),
}


def split_k_shapes(shapes, dtype):
    """``(name, m, n, k, auto's config)`` for the shapes where auto runs split-K in ``dtype``."""
    from kernels.auto import config_for

    found = []
    for shape in shapes:
        config = config_for(shape.m, shape.n, shape.k, DTYPES[dtype], torch.device("cuda"))
        if config.strategy == "split_k" and config.split_k > 1:
            found.append((shape.label, shape.m, shape.n, shape.k, config))
    return found


def reduce_span_us(config, a, b):
    """The reduction launch's traced span, in microseconds (the second run: no compilation)."""
    import kernels

    for _ in range(2):
        records = kernels.run(config, a, b, trace=True).records
        if a.is_cuda:
            torch.cuda.synchronize()
    return makespan_us([r for r in records if r.kernel == "reduce"])


def predicted_reduce_us(config):
    """refsim's span of ``config``'s reduction launch (its ``reduce`` records), in us."""
    records = refsim.simulate(config).records
    return makespan_us([r for r in records if r.kernel == "reduce"])


def described_config(row, device):
    """The split-K GemmConfig a report row's ``config`` cell describes, on refsim's profile
    ``device``; ValueError when the cell describes none."""
    found = DESCRIBED.match(row["config"])
    if not found:
        raise ValueError(f"not a split-K config: {row['config']!r}")
    split, bands, block_m, block_n, block_k = (int(g) if g else 1 for g in found.groups())
    size = (int(row["m"]), int(row["n"]), int(row["k"]))
    blocks = {"block_m": block_m, "block_n": block_n, "block_k": block_k}
    return GemmConfig(
        *size, strategy="split_k", split_k=split, reduce_bands=bands, dtype=row["dtype"],
        device=device, **blocks,
    )  # fmt: skip


def measure(name, m, n, k, config, dtype, device="cuda"):
    """The rows of one shape: torch.matmul, then every variant of ``config``."""
    import kernels.prepared
    import kernels.split_k

    torch_dtype = DTYPES[dtype]
    a = torch.randn((m, k), device=device, dtype=torch_dtype)
    b = torch.randn((k, n), device=device, dtype=torch_dtype)
    row = {"shape": name, "m": m, "n": n, "k": k, "dtype": dtype}
    torch_ms, problem = bench_if_correct(lambda: torch.matmul(a, b), a, b)
    vendor = dict(variant="torch.matmul", config="", ms=torch_ms, ratio=1.0, reduce_us=None)
    rows = [dict(row, **vendor, predicted_reduce_us=None)]
    registers = kernels.split_k.REDUCE_REGISTERS
    for variant, (overrides, unrolled) in VARIANTS.items():
        kernels.split_k.REDUCE_REGISTERS = registers if unrolled else 0
        kernels.prepared.forget()  # a prepared call keeps the unroll it was built with
        try:
            variant_config = config.replace(**overrides)
            out = torch.empty((m, n), device=device, dtype=torch_dtype)
            call = functools.partial(run_output, variant_config, a, b, out)
            ms, problem = bench_if_correct(call, a, b)
            reduce_us = None if problem else reduce_span_us(variant_config, a, b)
        finally:
            kernels.split_k.REDUCE_REGISTERS = registers
            kernels.prepared.forget()
        label = describe(variant_config)
        rows.append(
            dict(
                row,
                variant=variant,
                config=label if not problem else f"{label} (wrong: {problem})",
                ms=ms,
                ratio=torch_ms / ms if ms and torch_ms else None,
                reduce_us=reduce_us,
                predicted_reduce_us=predicted_reduce_us(variant_config),
            )
        )
    return rows


def markdown_lines(rows, env):
    lines = [
        "# Split-K's reduction: row bands against one program per tile",
        "",
        f"{env['gpu']}, driver {env['driver']}, torch {env['torch']}, Triton {env['triton']}, "
        f"{env['date']}. `benchmarks/split_k_reduction.py`: ratio = torch.matmul time / ours "
        "(`do_bench` median, L2 flushed, same process); reduce = the reduction launch's traced "
        "span; predicted = refsim's span of the same launch, with the calibration it ships.",
        "",
        "| shape | dtype | variant | config | ms | ratio | reduce us | predicted us |",
        "|---|---|---|---|--:|--:|--:|--:|",
    ]
    for r in rows:
        cells = (
            _cell(r["ms"], 4), _cell(r["ratio"], 3), _cell(r["reduce_us"], 1),
            _cell(r["predicted_reduce_us"], 1),
        )  # fmt: skip
        lines.append(
            f"| {r['shape']} | {r['dtype']} | {r['variant']} | {r['config']} | "
            + " | ".join(cells)
            + " |"
        )
    return lines


def _cell(value, digits):
    return "" if value is None else f"{value:.{digits}f}"


def predicted_again(path):
    """An earlier run's rows (and environment) from its CSV at ``path``, each split-K row
    predicted again; OSError or ValueError for a file that is no such report."""
    lines = pathlib.Path(path).read_text().splitlines()
    env = csv_environment(lines[0] if lines else "")
    device = gpu_profile_name(env["gpu"])
    rows = []
    for row in csv.DictReader(lines[1:]):
        for field in ("ms", "ratio", "reduce_us"):
            row[field] = number_or_none(row[field])
        timed = row["variant"] != "torch.matmul" and row["reduce_us"] is not None
        row["predicted_reduce_us"] = (
            predicted_reduce_us(described_config(row, device)) if timed else None
        )
        rows.append(row)
    return rows, env


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=["bf16"])
    parser.add_argument("--out-dir", default=DEFAULT_OUT_DIR)
    parser.add_argument(
        "--from-csv",
        metavar="FILE",
        help="no GPU: predict an earlier run's rows again (the report is written anew)",
    )
    args = parser.parse_args(argv)
    if args.from_csv:
        try:
            rows, env = predicted_again(args.from_csv)
        except (OSError, ValueError, KeyError) as error:
            print(f"split_k_reduction.py: --from-csv {args.from_csv}: {error}", file=sys.stderr)
            return 2
        paths = write_tables(
            "split-k-reduction", markdown_lines(rows, env), rows, FIELDS, env, args.out_dir
        )
        print("wrote", *paths)
        return 0
    if needs_gpu("split_k_reduction.py"):
        return 2
    from conformance.report import environment

    env = environment("cuda")
    rows = []
    for dtype in args.dtypes:
        for name, m, n, k, config in split_k_shapes(select_shapes(), dtype):
            rows += measure(name, m, n, k, config, dtype)
            print(
                " | ".join(f"{r['variant']} {r['ratio'] or 0:.3f}" for r in rows[-4:]), flush=True
            )
    paths = write_tables(
        "split-k-reduction", markdown_lines(rows, env), rows, FIELDS, env, args.out_dir
    )
    print("wrote", *paths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
