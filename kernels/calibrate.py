"""Measure a calibration (:mod:`refsim.calibration`) on the local GPU: ``refsim calibrate``.

For each block shape and dtype auto can choose (``kernels.rule.GPU_BLOCKS`` and the decode-like
blocks), data-parallel runs of one full wave of tiles (every SM one tile) at each of
``refsim.calibration.ITERATION_COUNTS`` K-iterations, traced: every record's duration against
its K-iterations gives, by least squares, the K-iteration time and the per-item time. Then:

* launch overhead: ``do_bench`` of a one-tile, one-iteration GEMM minus its traced in-kernel
  time (what a launch costs before and after its programs);
* gap between dependent launches: in a traced split-K run, the first reduction record's start
  minus the last split record's end -- on a split launch of several hundred microseconds, so
  that the host has enqueued the reduction before the split ends and the gap is the GPU's own;
* HBM bandwidth: ``do_bench`` of a 1 GiB device-to-device copy (bytes read and written);
* atomic latency: one program adding to one counter, each add waiting for the last
  (:func:`atomic_chain`), timed at two chain lengths: the difference over the extra adds.
"""

import datetime
import platform

import torch
import triton
import triton.language as tl

from refsim.calibration import Calibration, block_key, calibration_shapes, fit_block

from .device import device_config, device_profile
from .dtypes import TORCH_DTYPES
from .launch import run
from .rule import GPU_BLOCKS, gpu_blocks
from .workspace import cuda_index

COPY_BYTES = 1 << 30
DTYPES = ("bf16", "fp16")


# The narrow sides auto fits a block to for M or N between the decode-like and a full block.
FITTED_SIDES = (32, 64)


def blocks_to_measure(dtypes=DTYPES):
    """``(dtype, (block_m, block_n, block_k))`` pairs: auto's blocks, its decode-like ones, and
    each of its blocks with one side cut to ``FITTED_SIDES`` (what it runs for M or N of 17 to
    64): every block auto runs with while one side of the problem is a full block. Blocks cut
    on both sides (both M and N small, or a decode-like side with the other under 256) are
    not measured."""
    pairs = []
    for dtype in dtypes:
        skinny = [gpu_blocks(16, 1 << 14, dtype, 1), gpu_blocks(1 << 14, 16, dtype, 1)]
        fitted = [
            cut
            for block_m, block_n, block_k in GPU_BLOCKS[dtype]
            for side in FITTED_SIDES
            for cut in ((side, block_n, block_k), (block_m, side, block_k))
        ]
        blocks = dict.fromkeys([*GPU_BLOCKS[dtype], *skinny, *fitted])
        pairs += [(dtype, block) for block in blocks]
    return pairs


def _operands(m, n, k, dtype, device, seed=0):
    generator = torch.Generator(device=device).manual_seed(seed)
    a = torch.randn((m, k), device=device, dtype=TORCH_DTYPES[dtype], generator=generator)
    b = torch.randn((k, n), device=device, dtype=TORCH_DTYPES[dtype], generator=generator)
    return a, b


def block_samples(dtype, block, device, units, repeats=3):
    """``(iterations, duration_us)`` of every work item of the traced calibration runs on
    ``units`` SMs (under the interpreter the durations count steps: plumbing only)."""
    block_m, block_n, block_k = block
    samples = []
    for m, n, k in calibration_shapes(block_m, block_n, block_k, units):
        config = device_config(
            m, n, k, dtype, device, strategy="data_parallel", cus=units,
            block_m=block_m, block_n=block_n, block_k=block_k,
        )  # fmt: skip
        a, b = _operands(m, n, k, dtype, device)
        run(config, a, b, trace=True)  # compiles
        for _ in range(repeats):
            for record in run(config, a, b, trace=True).records:
                samples.append((record.k_end - record.k_begin, record.t_end_us - record.t_start_us))
    return samples


def launch_overhead_us(device):
    """``do_bench`` of a one-tile, one-iteration GEMM minus its traced in-kernel time."""
    from triton.testing import do_bench

    config = device_config(64, 64, 64, "bf16", device, strategy="data_parallel")
    a, b = _operands(64, 64, 64, "bf16", device)
    out = torch.empty((64, 64), device=device, dtype=a.dtype)
    total_ms = do_bench(lambda: run(config, a, b, out=out), return_mode="median")
    records = run(config, a, b, trace=True).records
    inside_us = max(r.t_end_us for r in records) - min(r.t_start_us for r in records)
    return max(0.0, total_ms * 1e3 - inside_us)


GAP_SIZE = (4096, 4096, 16384)  # its split launch runs several hundred microseconds


def launch_gap_us(device):
    """The first reduction record's start minus the last split record's end, split-K traced."""
    config = device_config(
        *GAP_SIZE, "bf16", device, strategy="split_k", split_k=2,
        block_m=128, block_n=128, block_k=64,
    )  # fmt: skip
    a, b = _operands(*GAP_SIZE, "bf16", device)
    run(config, a, b, trace=True)
    records = run(config, a, b, trace=True).records
    splits = [r.t_end_us for r in records if r.role == "split"]
    reductions = [r.t_start_us for r in records if r.role == "reduce"]
    return max(0.0, min(reductions) - max(splits))


@triton.jit
def atomic_chain(counter_ptr, last_ptr, steps):
    """Add 1 to ``counter_ptr[0]`` ``steps`` times from one program, each add's address
    depending on the value the one before returned (never negative, so always slot 0): the
    adds cannot overlap, and a step takes one atomic's round trip."""
    offset = 0
    old = 0
    for _ in range(steps):
        old = tl.atomic_add(counter_ptr + offset, 1)
        offset = (old < 0).to(tl.int32)
    tl.store(last_ptr, old)


ATOMIC_STEPS = (1000, 3000)


def per_step_us(time_ms, steps=ATOMIC_STEPS):
    """Microseconds per step from ``time_ms(steps)`` at two step counts: the difference over
    the extra steps, so that the launch and the program's start cancel."""
    short, long = steps
    return (time_ms(long) - time_ms(short)) * 1e3 / (long - short)


def atomic_latency_us(device):
    """One atomic's round trip on ``device`` (:func:`atomic_chain`)."""
    from triton.testing import do_bench

    counter = torch.zeros(2, dtype=torch.int32, device=device)
    last = torch.zeros(1, dtype=torch.int32, device=device)

    def time_ms(steps):
        return do_bench(lambda: atomic_chain[(1,)](counter, last, steps), return_mode="median")

    return max(0.0, per_step_us(time_ms))


def copy_gbps(device):
    """HBM bandwidth a device-to-device copy reaches: bytes read and written per second."""
    from triton.testing import do_bench

    source = torch.ones(COPY_BYTES, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    ms = do_bench(lambda: target.copy_(source), return_mode="median")
    return 2 * COPY_BYTES / (ms * 1e-3) / 1e9


def environment(device):
    """What the calibration was measured with."""
    import triton

    properties = torch.cuda.get_device_properties(device)
    seen = {
        "gpu": properties.name,
        "sms": str(properties.multi_processor_count),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
    }
    try:  # clocks and driver through NVML, when torch can reach it
        seen["clock_mhz"] = str(torch.cuda.clock_rate(device))
        import pynvml

        seen["driver"] = str(pynvml.nvmlSystemGetDriverVersion())
    except Exception as error:  # NVML is optional: record why it is missing
        seen.setdefault("clock_mhz", f"unread ({type(error).__name__})")
        seen.setdefault("driver", f"unread ({type(error).__name__})")
    return seen


def measure(device="cuda", dtypes=DTYPES, repeats=3, progress=print):
    """The calibration of the local GPU ``device`` (see the module docstring)."""
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"device {device}: calibration measures a CUDA GPU (cuda or cuda:N)")
    if not torch.cuda.is_available():
        raise ValueError("calibration measures a CUDA GPU: torch.cuda.is_available() is false")
    profile, units = device_profile(cuda_index(device))
    blocks = {}
    for dtype, block in blocks_to_measure(dtypes):
        timing = fit_block(block_samples(dtype, block, device, units, repeats))
        blocks[block_key(dtype, *block)] = timing
        progress(
            f"{block_key(dtype, *block)}: {timing.iteration_us:.3f} us per K-iteration, "
            f"{timing.item_us:.2f} us per item (residual {timing.residual:.1%})"
        )
    overhead, gap, bandwidth = launch_overhead_us(device), launch_gap_us(device), copy_gbps(device)
    atomic = atomic_latency_us(device)
    progress(
        f"launch overhead {overhead:.1f} us, gap {gap:.1f} us, copy {bandwidth:.0f} GB/s, "
        f"atomic {atomic:.2f} us"
    )
    seen = environment(device)
    return Calibration(
        profile=profile.name,
        gpu=seen["gpu"],
        units=units,
        blocks=blocks,
        launch_overhead_us=overhead,
        launch_gap_us=gap,
        atomic_latency_us=atomic,
        hbm_gbps=bandwidth,
        environment=seen,
    )
