"""The torch front end beside torch: ``kernels.matmul`` (strategy "auto") against
``torch.matmul``, and a ``kernels.nn.Linear`` forward + backward against ``torch.nn.Linear``.

``triton.testing.do_bench`` median with the L2 flushed between runs, random bf16 inputs,
TFLOP/s and the ratio to torch in the same process; then the host time of one call on a
small problem (launch-bound). Writes a Markdown table with ``--markdown PATH``.
"""

import argparse
import time

import torch
from kernels_vs_vendor import environment, publish
from triton.testing import do_bench

import kernels
from kernels.auto import config_for

SHAPES = [
    (4096, 4096, 4096),
    (8192, 8192, 8192),
    (1920, 2176, 4096),
    (256, 256, 8192),
    (1, 4096, 4096),
    (16384, 1024, 1024),
]


def matmul_rows():
    rows = []
    for m, n, k in SHAPES:
        a = torch.randn((m, k), device="cuda", dtype=torch.bfloat16)
        b = torch.randn((k, n), device="cuda", dtype=torch.bfloat16)
        config = config_for(m, n, k, a.dtype, a.device)
        torch.testing.assert_close(kernels.matmul(a, b), torch.matmul(a, b), rtol=2e-2, atol=2e-1)
        theirs = do_bench(lambda: torch.matmul(a, b), return_mode="median")
        ours = do_bench(lambda: kernels.matmul(a, b), return_mode="median")
        tflops = 2 * m * n * k / 1e9
        choice = (
            config.strategy
            + (f" {config.fixup}" if config.strategy == "streamk" else "")
            + (f" x{config.split_k}" if config.strategy == "split_k" else "")
        )
        rows.append(
            (
                f"{m}x{n}x{k}",
                choice,
                f"{config.block_m}x{config.block_n}x{config.block_k}",
                tflops / theirs,
                tflops / ours,
                theirs / ours,
            )
        )
    return rows


def linear_rows():
    rows = []
    for batch, features in ((8192, 4096), (2048, 1024)):
        ours = kernels.nn.Linear(features, features, device="cuda", dtype=torch.bfloat16)
        theirs = torch.nn.Linear(features, features, device="cuda", dtype=torch.bfloat16)
        theirs.load_state_dict(ours.state_dict())
        x = torch.randn((batch, features), device="cuda", dtype=torch.bfloat16, requires_grad=True)
        grad = torch.randn((batch, features), device="cuda", dtype=torch.bfloat16)
        times = [
            do_bench(lambda: layer(x).backward(grad), return_mode="median")
            for layer in (theirs, ours)
        ]
        tflops = 3 * 2 * batch * features * features / 1e9  # forward, grad x, grad W
        rows.append(
            (
                f"Linear {features}->{features}, batch {batch}, fwd+bwd",
                "auto",
                "",
                tflops / times[0],
                tflops / times[1],
                times[0] / times[1],
            )
        )
    return rows


def host_us(call, repeats=2000):
    call()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    elapsed = time.perf_counter() - start
    torch.cuda.synchronize()
    return elapsed / repeats * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", help="write the tables here")
    args = parser.parse_args()
    env = environment()
    rows = matmul_rows() + linear_rows()
    a = torch.randn((128, 128), device="cuda", dtype=torch.bfloat16)
    host = [
        ("torch.matmul", host_us(lambda: torch.matmul(a, a))),
        ("kernels.matmul (auto, cached)", host_us(lambda: kernels.matmul(a, a))),
        (
            "kernels.run (a GemmConfig in hand)",
            host_us(lambda: kernels.run(config_for(128, 128, 128, a.dtype, a.device), a, a)),
        ),
    ]
    lines = [
        f"# The torch front end beside torch: {env['gpu']}",
        "",
        f"{env['gpu']} ({env['sms']} SMs), driver {env['driver']}, torch {env['torch']}, "
        f"Triton {env['triton']}, {env['date']}. bf16, `do_bench` median, L2 flushed; "
        "ratio = torch time / our time (above 1: ours is faster).",
        "",
        "| problem | auto's choice | blocks | torch TFLOP/s | ours TFLOP/s | ratio |",
        "|---|---|---|---:|---:|---:|",
    ]
    lines += [f"| {p} | {c} | {b} | {t:.1f} | {o:.1f} | {r:.2f} |" for p, c, b, t, o, r in rows]
    lines += [
        "",
        "Host time of one call, 128x128x128 (launch-bound, no synchronisation):",
        "",
        "| call | us per call |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {us:.1f} |" for name, us in host]
    publish(lines, args.markdown)


if __name__ == "__main__":
    main()
