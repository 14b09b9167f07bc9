"""Every kernel strategy side by side with torch.matmul, on the GPU, in one process.

``triton.testing.do_bench`` median with the L2 flushed between runs (do_bench's default),
random bf16 inputs, TFLOP/s and the ratio to torch.matmul (cuBLAS/hipBLASLt) measured in the
same process. Every candidate's output is first checked against the float64 product with
:func:`conformance.tolerances.tolerance_problem`; a wrong one is reported, not timed. Writes a
Markdown table (GPU, driver, versions, date) with ``--markdown PATH``.
"""

import argparse

import torch
import triton
from triton.testing import do_bench

import kernels
from conformance.report import environment
from conformance.tolerances import tolerance_problem

SHAPES = [
    (4096, 4096, 4096),
    (8192, 8192, 8192),
    (3072, 4224, 8192),
    (1920, 2176, 4096),
    (32, 32, 28672),
]
STRATEGIES = {
    "data_parallel": {"strategy": "data_parallel"},
    "persistent": {"strategy": "persistent"},
    "streamk owner-waits": {"strategy": "streamk", "fixup": "owner-waits"},
    "streamk turnstile": {"strategy": "streamk", "fixup": "turnstile"},
    "streamk last-arriver": {"strategy": "streamk", "fixup": "last-arriver"},
    "work_stealing": {"strategy": "work_stealing"},
    "split_k": {"strategy": "split_k"},
}
NVIDIA_BLOCKS = {"block_m": 128, "block_n": 256, "block_k": 64}
AMD_BLOCKS = {"block_m": 256, "block_n": 256, "block_k": 64}


def publish(lines, path):
    """Print the Markdown lines, and write them to ``path`` when given."""
    text = "\n".join(lines) + "\n"
    print(text)
    if path:
        with open(path, "w") as f:
            f.write(text)


def blocks_for(shape):
    blocks = AMD_BLOCKS if getattr(torch.version, "hip", None) else NVIDIA_BLOCKS
    m, n, _ = shape
    # Skinny problems: shrink the tile so that there are tiles to spread.
    return {
        **blocks,
        "block_m": min(blocks["block_m"], max(16, triton.next_power_of_2(m))),
        "block_n": min(blocks["block_n"], max(16, triton.next_power_of_2(n))),
    }


def bench_if_correct(call, a, b, bias=None):
    """``(ms, None)``: do_bench's median of ``call``, whose output is ``a @ b (+ bias)`` within
    tolerance; or ``(None, problem)`` when the output is wrong, without timing it."""
    problem = tolerance_problem(call(), a, b, bias)
    if problem:
        return None, problem
    return do_bench(call, return_mode="median"), None


def measure(shape):
    """``(candidate, cells)`` rows: ms, TFLOP/s and ratio, or why the candidate was not timed."""
    m, n, k = shape
    a = torch.randn((m, k), device="cuda", dtype=torch.bfloat16)
    b = torch.randn((k, n), device="cuda", dtype=torch.bfloat16)
    flops = 2 * m * n * k
    vendor_ms, vendor_problem = bench_if_correct(lambda: torch.matmul(a, b), a, b)

    def row(name, ms, problem):
        if problem:
            return name, f"wrong, not timed: {problem} | | "
        ratio = f"{vendor_ms / ms:.2f}" if vendor_ms else "-"
        return name, f"{ms:.4f} | {flops / ms / 1e9:.1f} | {ratio}"

    rows = [row("torch.matmul", vendor_ms, vendor_problem)]
    for name, options in STRATEGIES.items():
        config = kernels.default_config(a, b, **blocks_for(shape), **options)
        out = torch.empty((m, n), device="cuda", dtype=torch.bfloat16)
        ms, problem = bench_if_correct(lambda: kernels.run(config, a, b, out=out).output, a, b)
        rows.append(row(name, ms, problem))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", help="also write the table to this Markdown file")
    args = parser.parse_args()
    env = environment("cuda")
    lines = [
        f"# Kernels vs torch.matmul on {env['gpu']}",
        "",
        f"GPU {env['gpu']} ({env['sms']} SMs), driver {env['driver']}, torch {env['torch']}, "
        f"Triton {env['triton']}, {env['date']}. bf16 inputs (random normal), "
        "do_bench median, L2 flushed; ratio = torch.matmul time / kernel time.",
        "",
        "| M x N x K | kernel | ms | TFLOP/s | ratio to torch.matmul |",
        "|---|---|---:|---:|---:|",
    ]
    for shape in SHAPES:
        for name, cells in measure(shape):
            lines.append(f"| {'x'.join(map(str, shape))} | {name} | {cells} |")
    publish(lines, args.markdown)


if __name__ == "__main__":
    main()
