"""Where a cached call's host time goes: ``kernels.matmul`` at 128^3 taken apart, stage by stage.

Each row is the host time of one call of a stage on its own (many calls, no synchronisation;
the problem is small enough that the host, not the GPU, sets the pace), beside
``torch.matmul``: the whole front-end call, ``kernels.run`` with a config in hand, the
prepared call (allocation and launches), its key and lookup, the output's allocation beside
the same allocation through ``torch.empty``, and the launcher with the call's tensors as
addresses against the same launcher given the tensors (for which Triton's launcher calls
``data_ptr()`` and asks the driver to check each pointer).
Then the functions ``kernels.matmul`` spends its time in (cProfile, by own time). With
``--device cpu`` (and ``TRITON_INTERPRET=1``) the launcher is the interpreter and the
tensor row is left out. Writes ``host-path-<gpu>.md`` (``host-path-cpu.md``).
"""

import argparse
import cProfile
import io
import pathlib
import pstats
import re
import sys

import torch
from suite import DEFAULT_OUT_DIR, gpu_slug
from torch_api import host_us

from conformance.report import environment
from conformance.tolerances import tolerance_problem

SIZE = 128
PROFILE_LINES = 12


def stages(device):
    """``(name, call)`` for each stage of a cached ``kernels.matmul(a, a)`` of bf16 SIZE^3,
    and ``a``."""
    import kernels
    from kernels import prepared
    from kernels.auto import config_for

    a = torch.randn((SIZE, SIZE), device=device, dtype=torch.bfloat16)
    config = config_for(SIZE, SIZE, SIZE, a.dtype, a.device)
    problem = tolerance_problem(kernels.matmul(a, a), a, a, None)
    if problem:
        raise RuntimeError(f"kernels.matmul is wrong, nothing timed: {problem}")
    options = (True, None, None)  # kernels.run's defaults: deterministic, no warps or stages
    key = prepared.plan_key(config, a, a, None, None, options)
    plan = prepared.lookup(key)
    if plan is None:
        raise RuntimeError("the call was not prepared: nothing of its cached path to time")
    (launch, *rest) = plan.launches
    stream = plan.stream
    like, contiguous = plan.output_like, torch.contiguous_format
    c = torch.empty_like(like, memory_format=contiguous)
    addresses = (a.data_ptr(), a.data_ptr(), None, c.data_ptr()) if plan.addresses else None
    rows = [
        ("torch.matmul", lambda: torch.matmul(a, a)),
        ("kernels.matmul (auto, cached)", lambda: kernels.matmul(a, a)),
        ("kernels.run (a GemmConfig in hand)", lambda: kernels.run(config, a, a)),
        ("  the prepared call: allocation and launches", lambda: plan(a, a, None, None)),
        (
            "  its key and lookup",
            lambda: prepared.lookup(prepared.plan_key(config, a, a, None, None, options)),
        ),
        ("  the output's allocation", lambda: torch.empty_like(like, memory_format=contiguous)),
        (
            "  the same through torch.empty",
            lambda: torch.empty(c.shape, dtype=c.dtype, device=c.device),
        ),
    ]
    if rest:
        pass  # several launches: one launcher row would not stand for the call
    elif addresses is not None:
        rows += [
            ("  the launcher, tensors as addresses", lambda: launch(stream, addresses, None)),
            ("  the launcher, given the tensors", lambda: launch(stream, (a, a, None, c), None)),
        ]
    else:
        interpreted = (a, a, None, c)
        rows.append(("  the launcher (the interpreter)", lambda: launch(stream, interpreted, None)))
    return rows, a


def profile_lines(a, calls):
    """The top of cProfile's table of ``calls`` cached ``kernels.matmul`` calls, by own time."""
    import kernels

    profile = cProfile.Profile()
    profile.enable()
    for _ in range(calls):
        kernels.matmul(a, a)
    profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(PROFILE_LINES)
    lines = text.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
    here = str(pathlib.Path(__file__).resolve().parent.parent) + "/"
    return [
        re.sub(r"\S*/site-packages/", "", line.replace(here, "")) for line in lines[start:] if line
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--repeats", type=int, default=2000, help="calls per row (default 2000)")
    parser.add_argument("--out-dir", default=DEFAULT_OUT_DIR)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("host_path.py: needs a CUDA or ROCm GPU (or --device cpu)", file=sys.stderr)
        return 2
    env = environment(args.device)
    name = env.get("gpu", "cpu")
    rows, a = stages(args.device)
    timed = [(row, host_us(call, args.repeats, args.device)) for row, call in rows]
    lines = [
        f"# Host time of a cached call, stage by stage: {name}",
        "",
        f"{name}, driver {env.get('driver', '-')}, torch {env['torch']}, Triton {env['triton']}, "
        f"{env['date']}. `benchmarks/host_path.py`: bf16 {SIZE}^3, host time per call over "
        f"{args.repeats} calls without synchronisation (the median of up to 5 batches); "
        "indented rows are parts of `kernels.run`'s cached path, each timed alone.",
        "",
        "| stage | us per call |",
        "|---|---:|",
        *(f"| {row} | {us:.2f} |" for row, us in timed),
        "",
        f"cProfile of {args.repeats} cached `kernels.matmul` calls, by own time:",
        "",
        "```",
        *profile_lines(a, args.repeats),
        "```",
    ]
    slug = gpu_slug(name) if args.device == "cuda" else "cpu"
    out = pathlib.Path(args.out_dir) / f"host-path-{slug}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[: 7 + len(timed)]))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
