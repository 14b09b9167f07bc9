"""Sweep scaling: one fixed spec swept with 1, 2 and 4 Dask workers, wall times and speedups.

The spec is docs/sweep/throughput.yaml, the one docs/sweep.md's throughput section ran: 36 M x N
sizes from 256 to 8192, K 1024, 2048 and 4096, four block shapes and five strategies on mi300x,
2160 configurations (``--spec`` picks another). Each run
uses the sweep's embedded cluster (``run_sweep(..., workers=N)``: N worker processes of one
thread each) into a fresh dataset, so every wall time includes the cluster's start-up. The
conditions are printed first: CPU count, the load average just before each run, versions.
On more workers than cores the extra workers only share the cores; the 4-worker row shows
that cost.

    python benchmarks/sweep_scaling.py [--spec SPEC.yaml] [--workers 1,2,4] [--repeat 1]

The output is a Markdown table (docs/sweep-scaling.md holds one run).
"""

import argparse
import os
import platform
import tempfile
import time

import dask
import distributed

import refsim
from refsim.sweep import load_spec, run_sweep

SPEC = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "sweep", "throughput.yaml")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def sweep_once(spec_path: str, workers: int) -> tuple[float, str]:
    """Seconds to sweep the spec with ``workers`` workers into a new dataset, and the load
    average just before."""
    before = load()
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        summary = run_sweep(
            spec_path, os.path.join(folder, "out.parquet"), workers=workers, progress=False
        )
        seconds = time.perf_counter() - start
    assert summary.simulated == summary.configurations, summary
    return seconds, before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=SPEC, help="the spec (default throughput.yaml)")
    parser.add_argument("--workers", default="1,2,4", help="worker counts (default 1,2,4)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per count; the best is kept")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    configurations = len(load_spec(args.spec))
    print(f"- spec: {os.path.relpath(args.spec)}, {configurations} configurations")
    print(f"- CPUs: {os.cpu_count()} ({platform.processor() or platform.machine()})")
    print(f"- load average (1, 5, 15 min) before start: {load()}")
    print(
        f"- Python {platform.python_version()}, refsim {refsim.__version__}, dask "
        f"{dask.__version__}, distributed {distributed.__version__}, {platform.system()} "
        f"{platform.release()}"
    )
    print("- workers: embedded LocalCluster, one process of one thread each\n")
    print("| workers | wall time | configurations/s | speedup vs 1 | load before run |")
    print("|---:|---:|---:|---:|---|")
    baseline = None
    for workers in counts:
        runs = [sweep_once(args.spec, workers) for _ in range(args.repeat)]
        seconds, before = min(runs)
        baseline = baseline or seconds
        print(
            f"| {workers} | {seconds:.1f} s | {configurations / seconds:.0f} | "
            f"{baseline / seconds:.2f}x | {before} |",
            flush=True,
        )
    print(f"\n- load average after: {load()}")


if __name__ == "__main__":
    main()
