"""Offline compilation: every kernel variant, compiled for GPUs this machine does not have.

``python -m kernels.offline [--target gfx942] [--target sm_90] [--jobs N]`` builds each
variant's launches -- strategy x fixup x traced or not x dtype -- from small CPU tensors with the
strategy's own ``launches()`` (the code :func:`kernels.run` launches from), and compiles every
kernel with ``triton.compile`` for a :class:`GPUTarget`. No GPU and no driver are needed.

The compiled code is checked for the backend switch's hardware reads: a traced kernel for AMD
must read the XCC id (``s_getreg_b32 ... HW_REG_XCC_ID``), the CU id (``HW_REG_HW_ID``) and the
realtime counter (``s_memrealtime``); one for NVIDIA ``%smid`` and ``%globaltimer``; an untraced
kernel none of them. AMD is compile-checked only: nothing here runs on an AMD GPU.

Run it without ``TRITON_INTERPRET`` (the interpreter replaces jit functions with Python ones).
"""

import argparse
import concurrent.futures
import dataclasses
import os
import re
import sys

TARGETS = {
    # name: (Triton backend, arch, warp size, backend code name, device profile, XCDs)
    "gfx942": ("hip", "gfx942", 64, "AMD", "mi300x", 8),
    "sm_90": ("cuda", 90, 32, "NVIDIA", "h200", 1),
}
# What a traced kernel's code must contain, per Triton backend: (asm kind, pattern, meaning).
HARDWARE_READS = {
    "hip": (
        ("amdgcn", r"s_getreg_b32 \S+, hwreg\(HW_REG_XCC_ID", "XCC id"),
        ("amdgcn", r"s_getreg_b32 \S+, hwreg\(HW_REG_HW_ID", "CU id"),
        ("amdgcn", r"s_memrealtime", "realtime counter"),
    ),
    "cuda": (
        ("ptx", r"%smid", "SM id"),
        ("ptx", r"%globaltimer", "global timer"),
    ),
}
# The binary each backend must produce: a code object for AMD, a cubin for NVIDIA.
BINARY = {"hip": "hsaco", "cuda": "cubin"}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One kernel variant: what :func:`kernels.run` would launch for this choice."""

    strategy: str
    fixup: str | None
    traced: bool
    dtype: str

    @property
    def name(self):
        fixup = f"-{self.fixup}" if self.fixup else ""
        return f"{self.strategy}{fixup}-{self.dtype}-{'traced' if self.traced else 'untraced'}"


def variants():
    """Every built-in strategy (each with every fixup protocol, for one that takes a fixup and
    splits tiles statically) x traced or not x dtype."""
    from refsim import strategies
    from refsim.config import FIXUPS, STRATEGIES

    from .dtypes import TORCH_DTYPES

    runs = []
    for name in STRATEGIES:
        scheme = strategies.strategy(name)
        with_fixups = scheme.fixups and not scheme.dynamic  # the work-stealing kernel has none
        runs += [(name, fixup) for fixup in FIXUPS] if with_fixups else [(name, None)]
    return [
        Variant(s, f, traced, dtype)
        for s, f in runs
        for traced in (False, True)
        for dtype in TORCH_DTYPES
    ]


def _config(variant, target):
    from refsim import GemmConfig, strategies

    _, _, _, _, device, xcds = TARGETS[target]
    options = {
        "strategy": variant.strategy,
        "dtype": variant.dtype,
        "device": device,
        "xcds": xcds,
        "block_m": 128,
        "block_n": 128,
        "block_k": 64,
    }
    if variant.fixup is not None:  # every tile split, so the fixup's code is compiled
        options.update(fixup=variant.fixup, sk_hybrid="one-wave")
    size = 2048
    if strategies.strategy(variant.strategy).reduction_launch:
        # more than one slice: the reduction launch exists too; few tiles, so that it runs in
        # row bands with its loop over slices unrolled
        options["split_k"] = 4
        size = 256
    return GemmConfig(size, size, 1000, **options)  # K not a multiple of BLOCK_K: masked loads


def _signature(launch):
    """Triton's signature and constexprs for a launch, read off its real arguments."""
    import torch

    from .dtypes import DTYPE_NAMES

    pointee = {**DTYPE_NAMES, torch.int32: "i32", torch.int64: "i64"}
    runtime = [p for p in launch.kernel.params if not p.is_constexpr]
    if len(runtime) != len(launch.args):
        raise RuntimeError(
            f"{launch.kernel.__name__}: {len(launch.args)} arguments for "
            f"{len(runtime)} runtime parameters"
        )
    signature, constexprs = {}, {}
    for param, value in zip(runtime, launch.args):
        if isinstance(value, torch.Tensor):
            signature[param.name] = "*" + pointee[value.dtype]
        elif isinstance(value, bool):
            signature[param.name] = "i1"
        elif isinstance(value, int):
            signature[param.name] = "i32" if -(2**31) <= value < 2**31 else "i64"
        else:
            raise TypeError(
                f"{launch.kernel.__name__}: argument {param.name} is "
                f"{type(value).__name__}; no offline signature for it"
            )
    for param in launch.kernel.params:
        if param.is_constexpr:
            signature[param.name] = "constexpr"
            constexprs[param.name] = launch.constexprs[param.name]
    return signature, constexprs


def code_problems(asm, triton_backend, traced):
    """What is wrong with one kernel's compiled code (``asm`` as ``CompiledKernel.asm``): no
    binary, or the backend switch's hardware reads missing from a traced kernel or present in
    an untraced one."""
    problems = []
    if not asm.get(BINARY[triton_backend]):
        problems.append(f"no {BINARY[triton_backend]} produced")
    for kind, pattern, meaning in HARDWARE_READS[triton_backend]:
        found = re.search(pattern, asm.get(kind, "")) is not None
        if found != traced:
            state = "missing from a traced" if traced else "present in an untraced"
            problems.append(f"{meaning} read {state} kernel ({pattern!r} in {kind})")
    return problems


def compile_variant(variant, target):
    """Compile every launch of ``variant`` for ``target``; returns a list of problems."""
    import torch
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from . import backend as backends
    from .dtypes import TORCH_DTYPES
    from .launch import build_launches, launch_options
    from .workspace import workspace_for

    triton_backend, arch, warp_size, backend_name, _, _ = TARGETS[target]
    config = _config(variant, target)
    dtype = TORCH_DTYPES[config.dtype]
    a = torch.ones((config.m, config.k), dtype=dtype)
    b = torch.ones((config.k, config.n), dtype=dtype)
    bias = torch.ones(config.n, dtype=dtype)
    c = torch.empty(
        (config.m, config.n),
        dtype=torch.float32 if config.protocol is not None and config.protocol.atomic else dtype,
    )
    code = getattr(backends, backend_name)
    options = launch_options(config, vendor=triton_backend)
    launch_set = build_launches(
        config,
        a,
        b,
        bias,
        c,
        backend=code,
        workspace=workspace_for(torch.device("cpu")),
        trace=variant.traced,
        options=options,
    )
    problems = []
    for launch in launch_set.launches:
        signature, constexprs = _signature(launch)
        source = ASTSource(fn=launch.kernel, signature=signature, constexprs=constexprs)
        name = f"{variant.name} {launch.kernel.__name__} for {target}"
        try:
            compiled = triton.compile(
                source,
                target=GPUTarget(triton_backend, arch, warp_size),
                options=dict(launch.options),
            )
        except Exception as exc:  # a compiler error is this variant's finding
            problems.append(
                f"{name}: does not compile: {type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[-1][:300]}"
            )
            continue
        problems += [
            f"{name}: {problem}"
            for problem in code_problems(compiled.asm, triton_backend, variant.traced)
        ]
    return problems


def _compile_one(variant, target):
    return variant, target, compile_variant(variant, target)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m kernels.offline",
        description="Compile every kernel variant offline for GPU targets and check the code.",
    )
    parser.add_argument(
        "--target",
        action="append",
        choices=sorted(TARGETS),
        help="a target to compile for (repeatable; default: all)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="compiler processes (default: one per core)",
    )
    parser.add_argument("--only", default="", help="compile only variants whose name contains this")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        parser.error("unset TRITON_INTERPRET: the interpreter replaces the jit functions")
    work = [
        (v, t) for t in (args.target or sorted(TARGETS)) for v in variants() if args.only in v.name
    ]
    if not work:
        parser.error(f"no variant name contains {args.only!r}")
    failed = 0
    with concurrent.futures.ProcessPoolExecutor(args.jobs) as pool:
        for variant, target, problems in pool.map(_compile_one, *zip(*work)):
            failed += bool(problems)
            status = "ok" if not problems else "FAILED"
            print(f"{status:6} {target:7} {variant.name}")
            for problem in problems:
                print(f"       {problem}")
    print(f"{len(work) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
