"""The torch front end beside torch: ``kernels.matmul`` (strategy "auto") against
``torch.matmul``, and a ``kernels.nn.Linear`` forward + backward against ``torch.nn.Linear``.

``triton.testing.do_bench`` median with the L2 flushed between runs, random bf16 inputs,
TFLOP/s and the ratio to torch in the same process; then the host time of one call on a
small problem (launch-bound). Every candidate's results (outputs and, for Linear, gradients)
are first checked with :func:`conformance.tolerances.tolerance_problem`; a wrong one is
reported, not timed. Writes a Markdown table with ``--markdown PATH``.
"""

import argparse
import gc
import statistics
import time

import torch
from kernels_vs_vendor import bench_if_correct, publish
from triton.testing import do_bench

import kernels
from conformance.report import environment
from conformance.tolerances import tolerance_problem
from kernels.auto import config_for

SHAPES = [
    (4096, 4096, 4096),
    (8192, 8192, 8192),
    (1920, 2176, 4096),
    (256, 256, 8192),
    (1, 4096, 4096),
    (16384, 1024, 1024),
]


def ratio_cells(flops, theirs_ms, ours_ms):
    """TFLOP/s of both and the ratio, or "-" for a candidate that was not timed."""
    return (
        "-" if theirs_ms is None else f"{flops / theirs_ms:.1f}",
        "-" if ours_ms is None else f"{flops / ours_ms:.1f}",
        "-" if None in (theirs_ms, ours_ms) else f"{theirs_ms / ours_ms:.2f}",
    )


def matmul_rows():
    rows = []
    for m, n, k in SHAPES:
        a = torch.randn((m, k), device="cuda", dtype=torch.bfloat16)
        b = torch.randn((k, n), device="cuda", dtype=torch.bfloat16)
        config = config_for(m, n, k, a.dtype, a.device)
        theirs, their_problem = bench_if_correct(lambda: torch.matmul(a, b), a, b)
        ours, our_problem = bench_if_correct(lambda: kernels.matmul(a, b), a, b)
        gflop = 2 * m * n * k / 1e9
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
                *ratio_cells(gflop, theirs, ours),
                "; ".join(filter(None, (their_problem, our_problem))) or "ok",
            )
        )
    return rows


def linear_problem(layer, x, grad):
    """None when one forward + backward of ``layer`` gives its output and its three gradients
    within tolerance; else what is wrong (the GEMMs as products, the bias gradient as a sum)."""
    x.grad = None
    layer.zero_grad(set_to_none=True)
    y = layer(x)
    y.backward(grad)
    weight, ones = (
        layer.weight.detach(),
        torch.ones(len(grad), dtype=grad.dtype, device=grad.device),
    )
    checks = (
        (y, x.detach(), weight.t(), layer.bias.detach(), "output"),
        (x.grad, grad, weight, None, "input grad"),
        (layer.weight.grad, grad.t(), x.detach(), None, "weight grad"),
        (layer.bias.grad, ones, grad, None, "bias grad"),
    )
    return "; ".join(filter(None, (tolerance_problem(*check) for check in checks))) or None


def linear_rows():
    rows = []
    for batch, features in ((8192, 4096), (2048, 1024)):
        ours = kernels.nn.Linear(features, features, device="cuda", dtype=torch.bfloat16)
        theirs = torch.nn.Linear(features, features, device="cuda", dtype=torch.bfloat16)
        theirs.load_state_dict(ours.state_dict())
        x = torch.randn((batch, features), device="cuda", dtype=torch.bfloat16, requires_grad=True)
        grad = torch.randn((batch, features), device="cuda", dtype=torch.bfloat16)
        times, problems = [], []
        for layer in (theirs, ours):
            problem = linear_problem(layer, x, grad)
            problems.append(problem)
            times.append(
                None
                if problem
                else do_bench(lambda layer=layer: layer(x).backward(grad), return_mode="median")
            )
        gflop = 3 * 2 * batch * features * features / 1e9  # forward, grad x, grad W
        rows.append(
            (
                f"Linear {features}->{features}, batch {batch}, fwd+bwd",
                "auto",
                "",
                *ratio_cells(gflop, *times),
                "; ".join(filter(None, problems)) or "ok",
            )
        )
    return rows


def host_us(call, repeats=2000, device="cuda", batches=5):
    """Host time of one call of ``call``, in microseconds: the median over ``batches`` runs of
    ``repeats / batches`` calls each, without synchronising. It starts after a garbage
    collection, so that a collection of earlier work's objects lands in one batch at most."""
    synchronize = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    call()
    synchronize()
    gc.collect()
    batches = min(batches, repeats)
    calls = repeats // batches
    times = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        times.append((time.perf_counter() - start) / calls * 1e6)
    synchronize()
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", help="write the tables here")
    args = parser.parse_args()
    env = environment("cuda")
    rows = matmul_rows() + linear_rows()
    a = torch.randn((128, 128), device="cuda", dtype=torch.bfloat16)
    host = []
    for name, call in (
        ("torch.matmul", lambda: torch.matmul(a, a)),
        ("kernels.matmul (auto, cached)", lambda: kernels.matmul(a, a)),
        (
            "kernels.run (a GemmConfig in hand)",
            lambda: kernels.run(config_for(128, 128, 128, a.dtype, a.device), a, a).output,
        ),
    ):
        problem = tolerance_problem(call(), a, a)
        host.append((name, f"wrong, not timed: {problem}" if problem else f"{host_us(call):.1f}"))
    lines = [
        f"# The torch front end beside torch: {env['gpu']}",
        "",
        f"{env['gpu']} ({env['sms']} SMs), driver {env['driver']}, torch {env['torch']}, "
        f"Triton {env['triton']}, {env['date']}. bf16, `do_bench` median, L2 flushed; "
        "ratio = torch time / our time (above 1: ours is faster); check: results against the "
        "float64 product (a wrong candidate is not timed).",
        "",
        "| problem | auto's choice | blocks | torch TFLOP/s | ours TFLOP/s | ratio | check |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += [
        "",
        "Host time of one call, 128x128x128 (launch-bound, no synchronisation):",
        "",
        "| call | us per call |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {us} |" for name, us in host]
    publish(lines, args.markdown)


if __name__ == "__main__":
    main()
