"""The measurements behind ``strategy="auto"``'s rule: candidate configurations per suite shape.

For every shape of ``benchmarks/suite.py`` (bf16 by default), times ``torch.matmul`` and a
family of candidates through ``kernels.run``: block shapes from 256-wide to skinny, each as
data-parallel, Stream-K (last-arriver, the default hybrid) and split-K with 2 to 16 slices
where the K-iterations allow. Every output is checked first (:mod:`conformance.tolerances`);
``do_bench`` median, L2 flushed, same process. Writes one CSV row per candidate (with the
GPU, driver, versions and date in a comment line) and prints each shape's five fastest.
"""

import argparse
import csv
import functools
import pathlib
import sys

import torch
from kernels_vs_vendor import bench_if_correct
from suite import DEFAULT_OUT_DIR, DTYPES, gpu_slug, select_shapes

from refsim.config import fitting_block
from refsim.tiling import cdiv

SQUARE_BLOCKS = ((128, 256, 64), (128, 128, 64), (128, 64, 64), (64, 128, 64), (64, 64, 64))
SPLITS = (2, 4, 8, 16)
FIELDS = ("shape", "m", "n", "k", "dtype", "candidate", "ms", "ratio", "problem")


def block_shapes(m, n):
    """Candidate (BLOCK_M, BLOCK_N, BLOCK_K): the square family, plus skinny ones for M or N
    of 64 or less, each block side at most its dimension's next power of two."""
    shapes = list(SQUARE_BLOCKS)
    if m <= 64:
        side = fitting_block(m)
        shapes += [(side, 32, 256), (side, 64, 256), (side, 64, 128), (side, 128, 64)]
        shapes += [(side, 256, 64)]
    if n <= 64:
        side = fitting_block(n)
        shapes += [(32, side, 256), (64, side, 256), (64, side, 128), (128, side, 64)]
        shapes += [(256, side, 64)]
    fitted = {(min(bm, fitting_block(m)), min(bn, fitting_block(n)), bk) for bm, bn, bk in shapes}
    return sorted(fitted, reverse=True)


def candidates(m, n, k, units):
    """``(label, GemmConfig overrides)`` pairs for one shape on ``units`` SMs."""
    found = []
    for bm, bn, bk in block_shapes(m, n):
        blocks = {"block_m": bm, "block_n": bn, "block_k": bk}
        label = f"{bm}x{bn}x{bk}"
        tiles, iters = cdiv(m, bm) * cdiv(n, bn), cdiv(k, bk)
        found.append((f"data_parallel {label}", dict(blocks, strategy="data_parallel")))
        if iters >= 2 and tiles % units:
            found.append(
                (
                    f"streamk last-arriver {label}",
                    dict(blocks, strategy="streamk", fixup="last-arriver"),
                )
            )
        for split in SPLITS:
            if split <= iters and tiles * split <= 4 * units and tiles < units:
                found.append(
                    (f"split_k x{split} {label}", dict(blocks, strategy="split_k", split_k=split))
                )
    return found


def run_output(config, a, b, out):
    import kernels

    return kernels.run(config, a, b, out=out).output


def measure(shape, dtype, device):
    """CSV rows of torch.matmul and every candidate on one shape."""
    from kernels.device import device_config

    torch_dtype = DTYPES[dtype]
    a = torch.randn((shape.m, shape.k), device=device, dtype=torch_dtype)
    b = torch.randn((shape.k, shape.n), device=device, dtype=torch_dtype)
    out = torch.empty((shape.m, shape.n), device=device, dtype=torch_dtype)
    theirs, problem = bench_if_correct(lambda: torch.matmul(a, b), a, b)
    rows = [(shape, dtype, "torch.matmul", theirs, 1.0 if theirs else None, problem)]
    units = device_config(shape.m, shape.n, shape.k, dtype, a.device).cus
    for label, overrides in candidates(shape.m, shape.n, shape.k, units):
        try:
            config = device_config(shape.m, shape.n, shape.k, dtype, a.device, **overrides)
        except ValueError as error:
            rows.append((shape, dtype, label, None, None, f"refused: {error}"))
            continue
        ms, problem = bench_if_correct(functools.partial(run_output, config, a, b, out), a, b)
        ratio = theirs / ms if ms and theirs else None
        rows.append((shape, dtype, label, ms, ratio, problem))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=["bf16"])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--quick", action="store_true", help="the first shape of each category")
    which.add_argument(
        "--shapes", nargs="+", metavar="LABEL", help="only these suite shapes (labels as --list)"
    )
    parser.add_argument("--list", action="store_true", help="print the shapes' labels and exit")
    parser.add_argument("--out-dir", default=str(DEFAULT_OUT_DIR), help="default: docs/gpu")
    args = parser.parse_args(argv)
    shapes = select_shapes(quick=args.quick)
    if args.list:
        print("\n".join(shape.label for shape in shapes))
        return 0
    if args.shapes:
        unknown = sorted(set(args.shapes) - {shape.label for shape in shapes})
        if unknown:
            parser.error(f"unknown shape {', '.join(map(repr, unknown))}; --list names them")
        shapes = [shape for shape in shapes if shape.label in args.shapes]
    if not torch.cuda.is_available():
        print("auto_candidates.py: needs a CUDA or ROCm GPU", file=sys.stderr)
        return 2
    from conformance.report import environment

    env = environment("cuda")
    path = pathlib.Path(args.out_dir) / f"auto-candidates-{gpu_slug(env['gpu'])}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as file:
        file.write(
            f"# GPU {env['gpu']}, driver {env['driver']}, torch {env['torch']}, "
            f"Triton {env['triton']}, {env['date']}\n"
        )
        writer = csv.writer(file)
        writer.writerow(FIELDS)
        for shape in shapes:
            for dtype in args.dtypes:
                rows = measure(shape, dtype, "cuda")
                for s, d, label, ms, ratio, problem in rows:
                    writer.writerow(
                        (s.label, s.m, s.n, s.k, d, label, ms or "", ratio or "", problem or "")
                    )
                file.flush()
                timed = sorted((r for r in rows[1:] if r[3]), key=lambda r: r[3])[:5]
                print(
                    f"{shape.m}x{shape.n}x{shape.k} {dtype}: "
                    + "; ".join(f"{r[2]} {r[4]:.3f}" for r in timed),
                    flush=True,
                )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
