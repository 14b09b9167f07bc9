"""The host launcher: check, allocate, launch; decode traces and partial buffers on request."""

import dataclasses
import functools

import torch

from refsim import tiling
from refsim.config import GemmConfig
from refsim.hardware import PROFILES
from refsim.trace import ROLES, WorkRecord

from . import split_k, streamk, work_stealing
from .backend import TICKS_PER_US, backend_for, interpreting
from .data_parallel import data_parallel_kernel
from .persistent import persistent_kernel
from .tile import EVENTS, REMAP_CHUNKED, REMAP_NONE, REMAP_PLAIN, TRACE_FIELDS
from .workspace import cuda_index, workspace_for

TORCH_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
WAITING_FIXUPS = ("owner-waits", "turnstile")


@dataclasses.dataclass
class KernelRun:
    """What :func:`run` returns.

    ``records``: one :class:`refsim.trace.WorkRecord` per work item (``trace=True``), times in
    us from the first start (the step counter under the interpreter). ``partials``: a copy of
    the fp32 partial workspace, ``(slots, BLOCK_M, BLOCK_N)``; the slot of a program's partial
    of a tile is :func:`partial_slot` (Stream-K and split-K only, ``trace=True``). ``events``:
    Stream-K's event log (``trace=True``), ``(program, kind, index)`` in the order they
    happened per program: ``("store", slot)`` for a partial stored, ``("publish", flag)`` and
    ``("arrive", counter)`` for a release.
    """

    output: torch.Tensor
    config: GemmConfig
    records: list = None
    partials: torch.Tensor = None
    events: list = None


def partial_slot(config, program, tile):
    """Slot in ``KernelRun.partials`` of hardware ``program``'s partial of ``tile``."""
    if config.strategy == "streamk":
        return streamk.partial_slot(config, program, tile)
    if config.strategy == "split_k":
        tile_of, split = tiling.split_k_work(config.logical_program(program), config.split_k)
        if tile_of != tile:
            raise ValueError(f"program {program} computes tile {tile_of}, not {tile}")
        return tile * config.split_k + split
    raise ValueError(f"strategy {config.strategy!r} keeps no partials")


def default_config(a, b, **overrides):
    """A GemmConfig for these tensors: device profile by GPU name, SM count from the device.

    NVIDIA GPUs take the H200 or H100 profile (by name), ROCm GPUs the MI300X profile; a device
    with more units than its preset gets a copy of the preset with its own count. On the CPU
    (Triton's interpreter) the default is a small 4-program H100-like grid.
    """
    dtype = next((name for name, dt in TORCH_DTYPES.items() if dt == a.dtype), None)
    if dtype is None:
        raise TypeError(f"a has dtype {a.dtype}; supported: float16, bfloat16, float32")
    return device_config(a.shape[0], b.shape[1], a.shape[1], dtype, a.device, **overrides)


def device_config(m, n, k, dtype, device, **overrides):
    """A GemmConfig for an (m, n, k) GEMM in ``dtype`` ("fp16", ...) on a torch ``device``."""
    options = {"dtype": dtype}
    if device.type == "cuda":
        preset, units = _device_profile(cuda_index(device))
        options.update(device=preset, cus=units)
        if preset.vendor == "nvidia":
            options["xcds"] = 1
    else:
        options.update(device="h100", cus=4, xcds=1, block_m=32, block_n=32, block_k=32)
    options.update(overrides)
    return GemmConfig(m, n, k, **options)


@functools.cache
def _device_profile(index):
    """``(profile, units)`` of CUDA device ``index``, probed once."""
    props = torch.cuda.get_device_properties(index)
    preset = PROFILES[
        "mi300x"
        if getattr(torch.version, "hip", None)
        else ("h200" if "H200" in props.name.upper() else "h100")
    ]
    if props.multi_processor_count > preset.cus:
        # A bigger part than the preset: its numbers, with this device's unit count.
        preset = dataclasses.replace(
            preset, name=props.name, cus=props.multi_processor_count, xcds=1
        )
    return preset, props.multi_processor_count


def _check(config, a, b, bias, out):
    """Every argument error, raised before anything is allocated or launched."""
    for name, t in (("a", a), ("b", b), ("bias", bias), ("out", out)):
        if t is not None and not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(f"a and b must be 2-D, got a {tuple(a.shape)} and b {tuple(b.shape)}")
    expected = TORCH_DTYPES[config.dtype]
    for name, t in (("a", a), ("b", b)):
        if t.dtype not in TORCH_DTYPES.values():
            raise TypeError(f"{name} has dtype {t.dtype}; supported: float16, bfloat16, float32")
        if t.dtype != expected:
            raise TypeError(
                f"{name} has dtype {t.dtype}, but the config says {config.dtype} ({expected})"
            )
    if a.shape != (config.m, config.k) or b.shape != (config.k, config.n):
        raise ValueError(
            f"a {tuple(a.shape)} @ b {tuple(b.shape)} does not match the config's "
            f"M, N, K = {config.m}, {config.n}, {config.k} (a must be (M, K), b (K, N))"
        )
    devices = {("a", a.device), ("b", b.device)}
    if bias is not None:
        if bias.dim() != 1 or bias.shape[0] != config.n:
            raise ValueError(
                f"bias must be 1-D of length N={config.n} (one value per output "
                f"column), got shape {tuple(bias.shape)}"
            )
        if bias.dtype not in TORCH_DTYPES.values():
            raise TypeError(f"bias has dtype {bias.dtype}; supported: float16, bfloat16, float32")
        devices.add(("bias", bias.device))
    if out is not None:
        if out.shape != (config.m, config.n):
            raise ValueError(f"out has shape {tuple(out.shape)}, expected ({config.m}, {config.n})")
        if out.dtype not in TORCH_DTYPES.values():
            raise TypeError(f"out has dtype {out.dtype}; supported: float16, bfloat16, float32")
        devices.add(("out", out.device))
    if len({d for _, d in devices}) > 1:
        listing = ", ".join(f"{name} on {d}" for name, d in sorted(devices, key=str))
        raise ValueError(f"tensors are on different devices: {listing}")
    if a.device.type == "cpu" and not interpreting():
        raise ValueError(
            "CPU tensors need Triton's interpreter: set TRITON_INTERPRET=1 before importing kernels"
        )


def _check_launchable(config, device, deterministic, out_dtype):
    if config.strategy == "streamk" and config.fixup == "atomic":
        if deterministic:
            raise ValueError(
                "fixup='atomic' adds partials with float atomics in arrival order, "
                "so its output is not deterministic: pass deterministic=False, or "
                "pick owner-waits, turnstile or last-arriver"
            )
        if out_dtype != torch.float32:
            raise ValueError(
                "fixup='atomic' accumulates SK tiles with fp32 atomics in the output: "
                f"pass out= a float32 tensor (the output would be {out_dtype})"
            )
    if (
        device.type == "cuda"
        and config.strategy == "streamk"
        and config.fixup in WAITING_FIXUPS
        and config.sk_tiles > 0
    ):
        resident = _device_profile(cuda_index(device))[1]
        if config.grid > resident:
            raise ValueError(
                f"fixup={config.fixup!r} spins on flags of other programs, so all "
                f"{config.grid} programs must be resident at once, but the device "
                f"holds {resident} (one per SM): lower grid= or use last-arriver"
            )


@functools.cache
def _max_steps(config):
    """Trace records per program: the most work items any program can do."""
    if config.strategy == "work_stealing":
        return max(
            e - b
            for b, e in (
                tiling.ws_counter_range(c, config.total_tiles, config.num_counters)
                for c in range(config.num_counters)
            )
        )
    if config.strategy in ("data_parallel", "split_k"):
        return 1
    dp_steps = tiling.cdiv(config.dp_tiles, config.grid)
    sk_segments = 0
    if config.strategy == "streamk" and config.sk_iters:
        longest = tiling.cdiv(config.sk_iters, config.grid)
        sk_segments = tiling.cdiv(longest, config.iters_per_tile) + 1
    return max(1, dp_steps + sk_segments)


def launch_options(config, device):
    """Default ``num_warps``/``num_stages`` per device: what the kernels are tuned with."""
    tile_elems = config.block_m * config.block_n
    num_warps = 8 if tile_elems >= 128 * 256 else 4
    if device.type != "cuda":
        return {"num_warps": num_warps, "num_stages": 1}
    if getattr(torch.version, "hip", None):
        return {"num_warps": num_warps, "num_stages": 2}
    stage_bytes = (config.block_m + config.block_n) * config.block_k * config.elem_bytes
    return {"num_warps": num_warps, "num_stages": max(2, min(4, (160 * 1024) // stage_bytes))}


def run(
    config,
    a,
    b,
    bias=None,
    out=None,
    trace=False,
    deterministic=True,
    num_warps=None,
    num_stages=None,
):
    """C = A @ B (+ bias) with the strategy of ``config``; see :class:`KernelRun`.

    ``config`` is a :class:`refsim.GemmConfig` matching the tensors, or None (or a dict of
    overrides) to derive one with :func:`default_config`. Zero-sized M, N or K behave as
    ``torch.matmul`` (only with a derived config: a GemmConfig cannot hold zero sizes).
    """
    if config is None or isinstance(config, dict):
        for name, t in (("a", a), ("b", b)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
            if t.dim() != 2:
                raise ValueError(f"{name} must be 2-D, got shape {tuple(t.shape)}")
        if a.shape[1] != b.shape[0]:
            raise ValueError(f"a {tuple(a.shape)} @ b {tuple(b.shape)}: inner sizes differ")
        if 0 in (a.shape[0], a.shape[1], b.shape[1]):
            return KernelRun(_empty_product(a, b, bias, out), None, [] if trace else None)
        config = default_config(a, b, **(config or {}))
    _check(config, a, b, bias, out)
    device = a.device
    _check_launchable(config, device, deterministic, a.dtype if out is None else out.dtype)
    c = out if out is not None else torch.empty((config.m, config.n), dtype=a.dtype, device=device)
    backend = backend_for(device.type)
    options = launch_options(config, device)
    options.update(
        {k: v for k, v in (("num_warps", num_warps), ("num_stages", num_stages)) if v is not None}
    )
    workspace = workspace_for(device)
    with workspace.lock:
        traces, partials, events = _launch(
            config, a, b, bias, c, trace, backend, options, workspace
        )
        written = (config.strategy == "streamk" and config.sk_tiles > 0) or (
            config.strategy == "split_k" and config.split_k > 1
        )
        partials = partials.clone() if (trace and written) else None
    records = _decode(config, traces, backend) if trace else None
    return KernelRun(c, config, records, partials, _decode_events(events))


def _empty_product(a, b, bias, out):
    result = torch.matmul(a, b)
    if bias is not None:
        result = result + bias
    if out is not None:
        out.copy_(result)
        return out
    return result


def _launch(config, a, b, bias, c, trace, backend, options, workspace):
    """Enqueue the strategy's launches; returns (trace buffers, partial workspace or None,
    event log or None)."""
    device = a.device
    grid = config.grid
    max_steps = _max_steps(config) if trace else 1
    trace_buf = (
        torch.full((grid, max_steps, len(TRACE_FIELDS)), -1, dtype=torch.int64, device=device)
        if trace
        else workspace.buffer("no-trace", 1, torch.int64)
    )
    dummy_bias = bias if bias is not None else c
    tensors = (a, b, c, dummy_bias, trace_buf)
    sizes = (
        config.m,
        config.n,
        config.k,
        a.stride(0),
        a.stride(1),
        b.stride(0),
        b.stride(1),
        c.stride(0),
        c.stride(1),
        bias.stride(0) if bias is not None else 0,
    )
    remap = (
        REMAP_NONE
        if not config.xcd_remap or config.xcds == 1
        else (REMAP_PLAIN if config.xcd_chunk is None else REMAP_CHUNKED)
    )
    meta = dict(
        BLOCK_M=config.block_m,
        BLOCK_N=config.block_n,
        BLOCK_K=config.block_k,
        GROUP_M=config.group_m,
        NUM_XCDS=config.xcds,
        REMAP=remap,
        CHUNK=config.xcd_chunk or 1,
        EVEN_K=config.k % config.block_k == 0,
        INPUT_PRECISION="ieee",
        HAS_BIAS=bias is not None,
        max_steps=max_steps,
        TRACE=trace,
        BACKEND=backend,
        **options,
    )
    traces = [("gemm", trace_buf)]
    partials = events = None
    if config.strategy == "data_parallel":
        data_parallel_kernel[(grid,)](*tensors, *sizes, **meta)
    elif config.strategy == "persistent":
        persistent_kernel[(grid,)](*tensors, *sizes, **meta)
    elif config.strategy == "work_stealing":
        counters = workspace.buffer(
            "counters", config.num_counters * work_stealing.COUNTER_STRIDE, torch.int32
        )
        counters.zero_()
        ws_xcds, per_xcd = config.counter_layout
        work_stealing.work_stealing_kernel[(grid,)](
            *tensors,
            *sizes,
            counters,
            config.num_counters,
            **meta,
            WS_XCDS=ws_xcds,
            WS_PER_XCD=per_xcd,
            COUNTER_STRIDE=work_stealing.COUNTER_STRIDE,
        )
    elif config.strategy == "streamk":
        partials = workspace.buffer(
            "partials", 2 * grid * config.block_m * config.block_n, torch.float32
        )
        flags = workspace.buffer("flags", grid, torch.int32)
        counters = workspace.buffer("counters", max(config.sk_tiles, 1), torch.int32)
        counters.zero_()
        if config.fixup == "atomic" and config.sk_tiles:
            c.zero_()
        ordered = backend == 0
        order = (
            torch.tensor(streamk.execution_order(config), dtype=torch.int32, device=device)
            if ordered
            else flags
        )
        events = _event_log(4 * grid, device) if trace else trace_buf
        streamk.streamk_kernel[(grid,)](
            *tensors,
            *sizes,
            partials,
            flags,
            counters,
            order,
            config.dp_tiles,
            config.sk_iters,
            workspace.next_epoch(flags),
            events,
            **meta,
            FIXUP=streamk.FIXUP_CODES[config.fixup],
            ORDERED=ordered,
        )
        partials = partials.view(2 * grid, config.block_m, config.block_n)
    else:
        partials = workspace.buffer(
            "partials", grid * config.block_m * config.block_n, torch.float32
        )
        split_k.split_k_kernel[(grid,)](*tensors, *sizes, partials, **meta, SPLIT_K=config.split_k)
        partials = partials.view(grid, config.block_m, config.block_n)
        if config.split_k > 1:
            reduce_trace = (
                torch.full(
                    (config.total_tiles, 1, len(TRACE_FIELDS)), -1, dtype=torch.int64, device=device
                )
                if trace
                else trace_buf
            )
            split_k.split_k_reduce_kernel[(config.total_tiles,)](
                c,
                dummy_bias,
                reduce_trace,
                partials,
                config.m,
                config.n,
                c.stride(0),
                c.stride(1),
                sizes[-1],
                BLOCK_M=config.block_m,
                BLOCK_N=config.block_n,
                GROUP_M=config.group_m,
                HAS_BIAS=bias is not None,
                TRACE=trace,
                BACKEND=backend,
                SPLIT_K=config.split_k,
                num_warps=options["num_warps"],
            )
            traces.append(("reduce", reduce_trace))
    return traces, partials, events if trace else None


def _event_log(capacity, device):
    """An empty event log (layout in ``tile.log_event``): count 0, then ``capacity`` entries."""
    log = torch.full((2 + 3 * capacity,), -1, dtype=torch.int64, device=device)
    log[0], log[1] = 0, capacity
    return log


def _decode_events(log):
    """An event log -> ``[(program, kind, index), ...]`` in log order, or None."""
    if log is None:
        return None
    data = log.cpu().tolist()
    count, capacity = data[0], data[1]
    if count > capacity:
        raise RuntimeError(f"event log overflow: {count} events, room for {capacity}")
    return [
        (program, EVENTS[kind], index)
        for program, kind, index in zip(*[iter(data[2 : 2 + 3 * count])] * 3)
    ]


def _decode(config, traces, backend):
    """Trace buffers -> WorkRecords, by program then step, times in us from the first start."""
    rows = []
    for kernel, buf in traces:
        data = buf.cpu().tolist()
        for program, steps in enumerate(data):
            for step, fields in enumerate(steps):
                record = dict(zip(TRACE_FIELDS, fields))
                if record["role"] < 0:
                    break
                rows.append((kernel, program, step, record))
    if not rows:
        return []
    origin = min(r["t_start"] for *_, r in rows)
    scale = TICKS_PER_US[backend]
    records = []
    for kernel, program, step, r in rows:
        records.append(
            WorkRecord(
                program,
                step,
                r["tile"],
                r["pid_m"],
                r["pid_n"],
                r["k_begin"],
                r["k_end"],
                ROLES[r["role"]],
                r["unit"],
                r["xcd"],
                (r["t_start"] - origin) / scale,
                (r["t_end"] - origin) / scale,
                r["ticket"],
                r["counter"],
                bool(r["finalizes"]),
                kernel,
            )
        )
    return records
