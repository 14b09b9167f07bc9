"""Every strategy and Stream-K fixup once on an odd-sized problem, for compute-sanitizer:

    compute-sanitizer --tool memcheck python benchmarks/sanitizer_runs.py
    compute-sanitizer --tool racecheck python benchmarks/sanitizer_runs.py

Each configuration runs traced once, then untraced twice (the second call takes the prepared
path), plus one batched launch; every output is checked against the float64 product, and the
script exits 1 naming the runs that were wrong (the sanitizer reports its own findings). With
``--device cpu`` (and ``TRITON_INTERPRET=1``) it runs the same list through the interpreter on
a smaller problem, which is how the CPU tier checks the script itself.
"""

import argparse
import sys

import torch

RUNS = {
    "data_parallel": {"strategy": "data_parallel"},
    "persistent": {"strategy": "persistent"},
    "work_stealing": {"strategy": "work_stealing"},
    "split_k": {"strategy": "split_k", "split_k": 3},
    "owner-waits": {"strategy": "streamk", "fixup": "owner-waits"},
    "turnstile": {"strategy": "streamk", "fixup": "turnstile"},
    "last-arriver": {"strategy": "streamk", "fixup": "last-arriver"},
    "atomic": {"strategy": "streamk", "fixup": "atomic"},
}
SIZES = {"cuda": (1000, 700, 900), "cpu": (80, 48, 72)}
# the blocks auto uses for a square bf16 problem on a GPU; the interpreter's own on the CPU
BLOCKS = {"cuda": {"block_m": 128, "block_n": 128, "block_k": 64}, "cpu": {}}


def problems(config, device, seed=0):
    """Random operands and bias of ``config``'s sizes and dtype on ``device``."""
    from kernels.dtypes import TORCH_DTYPES

    generator = torch.Generator().manual_seed(seed)
    dtype = TORCH_DTYPES[config.dtype]
    a, b, bias = (
        torch.randn(shape, generator=generator).to(device=device, dtype=dtype)
        for shape in ((config.m, config.k), (config.k, config.n), (config.n,))
    )
    return a, b, bias


def check_runs(device, size=None):
    """``[(run name, problem or None)]`` for every run of the list on ``device``, on a problem
    of ``size`` (M, N, K; the device kind's default when None)."""
    import kernels
    from conformance.tolerances import tolerance_problem
    from kernels.device import device_config

    kind = torch.device(device).type
    m, n, k = size or SIZES[kind]
    results = []
    for name, options in RUNS.items():
        config = device_config(m, n, k, "bf16", torch.device(device), **options, **BLOCKS[kind])
        a, b, bias = problems(config, device)
        extra = {}
        if config.fixup == "atomic":
            extra = {"deterministic": False, "out": torch.empty((m, n), device=device)}
        outputs = [kernels.run(config, a, b, bias, trace=True, **extra).output.clone()]
        outputs += [kernels.run(config, a, b, bias, **extra).output.clone() for _ in range(2)]
        problem = next(filter(None, (tolerance_problem(o, a, b, bias) for o in outputs)), None)
        results.append((name, problem))
    config = device_config(
        m, n, k, "bf16", torch.device(device), strategy="data_parallel", **BLOCKS[kind]
    )
    a, b, _ = problems(config, device, seed=1)
    batch_a, batch_b = torch.stack([a, a.flip(0)]), torch.stack([b, b.flip(1)])
    batch = kernels.launch.run_batched(config, batch_a, batch_b)
    problem = tolerance_problem(batch[1], batch_a[1], batch_b[1])
    results.append(("batched data_parallel", problem))
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=sorted(SIZES))
    parser.add_argument(
        "--size",
        nargs=3,
        type=int,
        metavar=("M", "N", "K"),
        help="the problem (default: 1000 700 900 on a GPU; racecheck is slow, try 300 200 256)",
    )
    args = parser.parse_args(argv)
    if args.size and min(args.size) < 1:
        parser.error("--size: M, N and K must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("sanitizer_runs.py: --device cuda needs a CUDA GPU", file=sys.stderr)
        return 2
    try:
        results = check_runs(args.device, args.size)
    except ValueError as error:
        if not args.size:
            raise  # the default problem suits every run: a refusal there is a bug to see
        size = " ".join(map(str, args.size))
        print(f"sanitizer_runs.py: error: --size {size}: {error}", file=sys.stderr)
        return 2
    for name, problem in results:
        print(f"{name:<24} {problem or 'ok'}")
    if args.device == "cuda":
        torch.cuda.synchronize()
    return 1 if any(problem for _, problem in results) else 0


if __name__ == "__main__":
    sys.exit(main())
