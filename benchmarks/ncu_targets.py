"""auto's kernels and ``torch.matmul`` once each per shape, inside a profiler range, for Nsight
Compute to read their counters side by side:

    ncu --clock-control none --profile-from-start off --section SpeedOfLight \\
        --section WarpStateStats --csv python benchmarks/ncu_targets.py 4096x4096x4096

Both run twice first (compilation, cuBLAS's heuristics), then once each between
``cudaProfilerStart`` and ``cudaProfilerStop``, so only those launches are profiled. Prints
auto's configuration per shape; auto's output is checked against the float64 product
(:mod:`conformance.tolerances`), and a wrong one exits 1 before anything is profiled.
"""

import argparse
import sys

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def shape(text):
    """``MxNxK`` as three positive ints (argparse type)."""
    try:
        sizes = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        sizes = ()
    if len(sizes) != 3 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not MxNxK with positive sizes")
    return sizes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shapes", nargs="+", type=shape, metavar="MxNxK")
    parser.add_argument("--dtype", choices=DTYPES, default="bf16")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("ncu_targets.py: needs a CUDA GPU", file=sys.stderr)
        return 2
    from suite import describe

    import kernels
    from conformance.tolerances import tolerance_problem
    from kernels.auto import config_for

    problems = []
    for m, n, k in args.shapes:
        a = torch.randn((m, k), device="cuda", dtype=DTYPES[args.dtype])
        b = torch.randn((k, n), device="cuda", dtype=DTYPES[args.dtype])
        config = config_for(m, n, k, a.dtype, a.device)
        print(f"{m}x{n}x{k} {args.dtype}: auto runs {describe(config)}", flush=True)
        for _ in range(2):
            ours = kernels.run(config, a, b).output
            torch.matmul(a, b)
        problem = tolerance_problem(ours, a, b)
        if problem:
            print(f"{m}x{n}x{k}: {problem}", file=sys.stderr)
            return 1
        problems.append((config, a, b))
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStart()
    for config, a, b in problems:
        kernels.run(config, a, b)
        torch.matmul(a, b)
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
