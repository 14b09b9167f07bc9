"""Where the data-parallel kernel's time goes on Hopper: one K-loop changed at a time.

A tile kernel (the data-parallel work item: the contract's grouped tile order, an fp32
accumulator, the kernels' epilogue ``kernels.tile.tile_epilogue``) in four ways of feeding
``tl.dot``:

* ``wrap``: the kernels' own K-loop, ``kernels.tile.tile_accumulate`` (every K-iteration
  recomputes its pointers and wraps rows and columns past M and N);
* ``incr``: pointers computed once and advanced by BLOCK_K, with contiguity hints;
* ``tma``: A and B through host-built tensor descriptors (the copy engine, zero-filled edges);
* ``tma-store``: ``tma`` plus the C tile stored through a descriptor.

For each block shape, ``num_warps`` and ``num_stages`` it times every form beside
``torch.matmul`` (``do_bench`` median, L2 flushed, same process), after checking the output.
Then the host time of one launch three ways: ``kernel[grid](...)``, the compiled kernel's
launcher called directly, and a CUDA graph replay. Prints Markdown; GPU only.
"""

import argparse

import torch
import triton
import triton.language as tl
from torch_api import host_us
from triton.testing import do_bench
from triton.tools.tensor_descriptor import TensorDescriptor

from conformance.report import environment
from conformance.tolerances import tolerance_problem
from kernels import contract
from kernels.backend import backend_for
from kernels.tile import tile_accumulate, tile_epilogue

WRAP, INCR, TMA, TMA_STORE = (tl.constexpr(i) for i in range(4))
MODES = {"wrap": WRAP, "incr": INCR, "tma": TMA, "tma-store": TMA_STORE}
SHAPES = ((4096, 4096, 4096), (8192, 8192, 8192), (2048, 2048, 2048), (1664, 1536, 4096))
BLOCKS = (
    # BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages
    (128, 128, 64, 4, 4),
    (128, 128, 64, 8, 4),
    (128, 256, 64, 8, 3),
    (128, 256, 64, 8, 4),
    (256, 128, 64, 8, 3),
)


@triton.jit
def variant_kernel(
    # tensors
    a_ptr,
    b_ptr,
    c_ptr,
    a_desc,
    b_desc,
    c_desc,
    # sizes and strides
    M,
    N,
    K,
    stride_am,
    stride_ak,
    stride_bk,
    stride_bn,
    stride_cm,
    stride_cn,
    # tiling
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    MODE: tl.constexpr,
    EVEN_K: tl.constexpr,
    BACKEND: tl.constexpr,
):
    pid = tl.program_id(0)
    pid_m, pid_n = contract.grouped_tile(pid, tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N), GROUP_M)
    iters = tl.cdiv(K, BLOCK_K)
    if MODE == WRAP:
        acc = tile_accumulate(
            a_ptr, b_ptr, M, N, K, stride_am, stride_ak, stride_bk, stride_bn, pid_m, pid_n,
            0, iters, BLOCK_M, BLOCK_N, BLOCK_K, EVEN_K, "ieee", BACKEND,
        )  # fmt: skip
    elif MODE == INCR:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        offs_m = tl.max_contiguous(
            tl.multiple_of((pid_m * BLOCK_M + tl.arange(0, BLOCK_M)) % M, BLOCK_M), BLOCK_M
        )
        offs_n = tl.max_contiguous(
            tl.multiple_of((pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % N, BLOCK_N), BLOCK_N
        )
        offs_k = tl.arange(0, BLOCK_K)
        a_ptrs = a_ptr + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak
        b_ptrs = b_ptr + offs_k[:, None] * stride_bk + offs_n[None, :] * stride_bn
        for _ in range(0, iters):
            acc = tl.dot(tl.load(a_ptrs), tl.load(b_ptrs), acc)
            a_ptrs += BLOCK_K * stride_ak
            b_ptrs += BLOCK_K * stride_bk
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for kk in range(0, iters):
            a = a_desc.load([pid_m * BLOCK_M, kk * BLOCK_K])
            b = b_desc.load([kk * BLOCK_K, pid_n * BLOCK_N])
            acc = tl.dot(a, b, acc)
    if MODE == TMA_STORE:
        c_desc.store([pid_m * BLOCK_M, pid_n * BLOCK_N], acc.to(c_desc.dtype))
    else:
        tile_epilogue(
            acc, c_ptr, c_ptr, M, N, stride_cm, stride_cn, 0, pid_m, pid_n,
            BLOCK_M, BLOCK_N, False, BACKEND,
        )  # fmt: skip


def launch(mode, a, b, c, block):
    """One launch of ``variant_kernel``; returns the compiled kernel."""
    block_m, block_n, block_k, warps, stages = block
    (m, k), n = a.shape, b.shape[1]
    descs = (None, None, None)
    if mode in (TMA, TMA_STORE):
        descs = (
            TensorDescriptor(a, [m, k], [a.stride(0), 1], [block_m, block_k]),
            TensorDescriptor(b, [k, n], [b.stride(0), 1], [block_k, block_n]),
            TensorDescriptor(c, [m, n], [c.stride(0), 1], [block_m, block_n]),
        )
    grid = (triton.cdiv(m, block_m) * triton.cdiv(n, block_n),)
    return variant_kernel[grid](
        a, b, c, *descs, m, n, k, *a.stride(), *b.stride(), *c.stride(),
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, GROUP_M=8, MODE=mode,
        EVEN_K=k % block_k == 0, BACKEND=backend_for(a.device.type),
        num_warps=warps, num_stages=stages,
    )  # fmt: skip


def loop_rows(shapes):
    rows = []
    for m, n, k in shapes:
        a = torch.randn((m, k), device="cuda", dtype=torch.bfloat16)
        b = torch.randn((k, n), device="cuda", dtype=torch.bfloat16)
        c = torch.empty((m, n), device="cuda", dtype=torch.bfloat16)
        flop = 2 * m * n * k
        theirs = do_bench(lambda: torch.matmul(a, b), return_mode="median")
        rows.append((f"{m}x{n}x{k}", "torch.matmul", "", f"{flop / theirs / 1e9:.0f}", "1.000"))
        for block in BLOCKS:
            for name, mode in MODES.items():
                label = "{}x{}x{} w{} s{}".format(*block)
                try:
                    c.normal_()
                    launch(mode, a, b, c, block)
                    problem = tolerance_problem(c, a, b)
                except Exception as error:  # a variant Triton cannot build is a row, not a stop
                    problem = f"{type(error).__name__}: {str(error).splitlines()[0][:80]}"
                if problem:
                    rows.append((f"{m}x{n}x{k}", name, label, "-", problem))
                    continue
                ours = do_bench(lambda: launch(mode, a, b, c, block), return_mode="median")
                rows.append(
                    (
                        f"{m}x{n}x{k}",
                        name,
                        label,
                        f"{flop / ours / 1e9:.0f}",
                        f"{theirs / ours:.3f}",
                    )
                )
        print("\n".join("| " + " | ".join(r) + " |" for r in rows[-1 - len(BLOCKS) * 4 :]))
    return rows


def host_rows():
    """Host time per launch at 128^3 (launch-bound): the ways of calling one compiled kernel."""
    a = torch.randn((128, 128), device="cuda", dtype=torch.bfloat16)
    c = torch.empty_like(a)
    block = (64, 64, 64, 4, 3)
    compiled = launch(INCR, a, a, c, block)
    params = (
        a, a, c, None, None, None, 128, 128, 128, *a.stride(), *a.stride(), *c.stride(),
        64, 64, 64, 8, INCR, True, backend_for(a.device.type),
    )  # fmt: skip
    grid = (4, 1, 1)
    rows = [("torch.matmul", host_us(lambda: torch.matmul(a, a)))]
    rows.append(("kernel[grid](...)", host_us(lambda: launch(INCR, a, a, c, block))))
    try:
        runner = compiled[grid]
        rows.append(("compiled[grid](*params)", host_us(lambda: runner(*params))))
        stream = torch.cuda.current_stream().cuda_stream
        function, packed = compiled.function, compiled.packed_metadata

        def direct():
            compiled.run(4, 1, 1, stream, function, packed, None, None, None, *params)

        c.zero_()
        direct()
        rows.append(("compiled.run(...) direct", host_us(direct)))
        rows.append(("  (its output checked)", 0.0 if not tolerance_problem(c, a, a) else -1.0))
    except Exception as error:
        rows.append((f"direct launcher failed: {type(error).__name__}: {error}"[:150], -1.0))
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        launch(INCR, a, a, c, block)
        with torch.cuda.graph(graph, stream=stream):
            launch(INCR, a, a, c, block)
    rows.append(("CUDA graph replay", host_us(graph.replay)))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the first two shapes only")
    args = parser.parse_args()
    env = environment("cuda")
    print(
        f"{env['gpu']}, driver {env['driver']}, torch {env['torch']}, Triton {env['triton']}, "
        f"{env['date']}; bf16, do_bench median, L2 flushed; ratio = torch time / ours\n"
    )
    print("| call | host us |\n|---|---:|")
    for name, us in host_rows():
        print(f"| {name} | {us:.1f} |")
    print("\n| shape | K-loop | block, warps, stages | TFLOP/s | ratio or problem |")
    print("|---|---|---|---:|---|")
    loop_rows(SHAPES[:2] if args.quick else SHAPES)


if __name__ == "__main__":
    main()
