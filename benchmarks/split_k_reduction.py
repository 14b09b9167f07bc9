"""Split-K's reduction in row bands against one program per tile, beside ``torch.matmul``.

For every suite shape where ``strategy="auto"`` runs split-K (or the shapes given), times the
same configuration three ways: the default row bands with the partial loads unrolled, the
default bands without unrolling, and one reduction program per tile (``reduce_bands=1``), as
the reduction ran before bands. Each output is checked first (:mod:`conformance.tolerances`);
``do_bench`` median, L2 flushed, same process. The reduction's own time is the traced span of
its launch (first start to last end). Writes ``split-k-reduction-<gpu>.{md,csv}``.
"""

import argparse
import functools
import sys

import torch
from kernels_vs_vendor import bench_if_correct
from suite import (
    DEFAULT_OUT_DIR,
    DTYPES,
    describe,
    needs_gpu,
    run_output,
    select_shapes,
    write_tables,
)

from refsim.compare import makespan_us

FIELDS = ("shape", "m", "n", "k", "dtype", "variant", "config", "ms", "ratio", "reduce_us")
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


def measure(name, m, n, k, config, dtype, device="cuda"):
    """The rows of one shape: torch.matmul, then every variant of ``config``."""
    import kernels.prepared
    import kernels.split_k

    torch_dtype = DTYPES[dtype]
    a = torch.randn((m, k), device=device, dtype=torch_dtype)
    b = torch.randn((k, n), device=device, dtype=torch_dtype)
    row = {"shape": name, "m": m, "n": n, "k": k, "dtype": dtype}
    torch_ms, problem = bench_if_correct(lambda: torch.matmul(a, b), a, b)
    rows = [dict(row, variant="torch.matmul", config="", ms=torch_ms, ratio=1.0, reduce_us="")]
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
        "span.",
        "",
        "| shape | dtype | variant | config | ms | ratio | reduce us |",
        "|---|---|---|---|--:|--:|--:|",
    ]
    for r in rows:
        ms = "" if r["ms"] is None else f"{r['ms']:.4f}"
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.3f}"
        reduce = "" if r["reduce_us"] in ("", None) else f"{r['reduce_us']:.1f}"
        lines.append(
            f"| {r['shape']} | {r['dtype']} | {r['variant']} | {r['config']} | {ms} | "
            f"{ratio} | {reduce} |"
        )
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=["bf16"])
    parser.add_argument("--out-dir", default=DEFAULT_OUT_DIR)
    args = parser.parse_args(argv)
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
