"""The host launcher: check the arguments, allocate the output, dispatch to the strategy.

Each strategy module (``STRATEGY_MODULES``) builds its launches as data (:mod:`kernels.launch_spec`)
from its own buffers, arguments and partial-slot layout; this module only checks, allocates
and enqueues them (each in the program order it requires, under the interpreter), and decodes
what they wrote (:mod:`kernels.records`).
"""

import contextlib

import torch

from refsim import strategies
from refsim.config import GemmConfig, hook_name

from . import data_parallel, persistent, prepared, split_k, streamk, work_stealing
from .backend import backend_for, interpreting, program_order
from .device import default_config, device_profile
from .dtypes import DTYPE_NAMES, SUPPORTED, TORCH_DTYPES
from .records import (
    KernelRun,
    decode_events,
    decode_trace,
    events_lost,
    in_flight,
    trace_overruns,
)
from .workspace import cuda_index, workspace_for

# A traced launch set on a GPU starts behind a sleep of this many GPU clock cycles (about
# 0.5 ms at the H200's 2 GHz; AMD's counter may tick otherwise, untested), so that the host
# has enqueued every launch of the set before the first one runs: the trace then shows the
# GPU's own gap between dependent launches, not the host's launch time.
TRACE_HEAD_START_CYCLES = 1_000_000

# Each registered strategy's launches (refsim.strategies names the strategies): a module or
# object with ``launches(config, a, b, bias, c, workspace, backend, trace, options)`` and, for
# a strategy that keeps partials, ``partial_slot(config, program, tile)``.
STRATEGY_MODULES = {
    "data_parallel": data_parallel,
    "persistent": persistent,
    "streamk": streamk,
    "work_stealing": work_stealing,
    "split_k": split_k,
}


def register_launches(name, module):
    """Give the strategy ``name`` (registered in :mod:`refsim.strategies`) its launches."""
    strategies.strategy(name)  # ValueError for a strategy refsim does not know
    STRATEGY_MODULES[name] = module


def _launches_of(config):
    try:
        return STRATEGY_MODULES[config.strategy]
    except KeyError:
        raise ValueError(
            f"strategy={config.strategy!r}: refsim describes it, but no kernel launches it "
            "(kernels.launch.register_launches)"
        ) from None


def partial_slot(config, program, tile):
    """Slot in ``KernelRun.partials`` of hardware ``program``'s partial of ``tile``."""
    slot_of = getattr(_launches_of(config), "partial_slot", None)
    if slot_of is None:
        raise ValueError(f"strategy {config.strategy!r} keeps no partials")
    return slot_of(config, program, tile)


def build_launches(config, a, b, bias, c, *, backend, workspace, trace=False, options=None):
    """The launches of ``config`` as data (a :class:`kernels.launch_spec.LaunchSet`), unlaunched.

    ``a``, ``b``, ``bias`` (or None) and the output ``c`` may be CPU tensors with any
    ``backend`` code (``kernels.backend.INTERPRETER``, ``NVIDIA``, ``AMD``): nothing here needs
    a GPU. Buffers come from ``workspace``; ``options`` default to :func:`launch_options`.
    """
    if options is None:
        options = launch_options(config, a.device)
    return _launches_of(config).launches(config, a, b, bias, c, workspace, backend, trace, options)


def _check(config, a, b, bias, out):
    """Every argument error, raised before anything is allocated or launched."""
    for name, t in (("a", a), ("b", b), ("bias", bias), ("out", out)):
        if t is not None and not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(f"a and b must be 2-D, got a {tuple(a.shape)} and b {tuple(b.shape)}")
    expected = TORCH_DTYPES[config.dtype]
    for name, t in (("a", a), ("b", b)):
        if t.dtype not in DTYPE_NAMES:
            raise TypeError(f"{name} has dtype {t.dtype}; supported: {SUPPORTED}")
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
        if bias.dtype not in DTYPE_NAMES:
            raise TypeError(f"bias has dtype {bias.dtype}; supported: {SUPPORTED}")
        devices.add(("bias", bias.device))
    if out is not None:
        if out.shape != (config.m, config.n):
            raise ValueError(f"out has shape {tuple(out.shape)}, expected ({config.m}, {config.n})")
        if out.dtype not in DTYPE_NAMES:
            raise TypeError(f"out has dtype {out.dtype}; supported: {SUPPORTED}")
        devices.add(("out", out.device))
    if len({d for _, d in devices}) > 1:
        listing = ", ".join(f"{name} on {d}" for name, d in sorted(devices, key=str))
        raise ValueError(f"tensors are on different devices: {listing}")
    if a.device.type == "cpu" and not interpreting():
        raise ValueError(
            "CPU tensors need Triton's interpreter: set TRITON_INTERPRET=1 before importing kernels"
        )


# The schedules the kernels implement; refsim describes others (for kernels written elsewhere).
KERNEL_SCHEDULES = {
    "ws_counter_map": "hardware",
    "ws_counter_ranges": "even",
    "ws_ticket_tile": "in-order",
    "tile_order": "strided",
}


def _check_schedule(config):
    """Refuse a config whose schedule hooks the kernels do not follow: they would compute a
    different schedule than the one refsim predicts for it."""
    for name, implemented in KERNEL_SCHEDULES.items():
        value = getattr(config, name)
        if value is not None and value != implemented:
            raise ValueError(
                f"{name}={hook_name(value)!r}: the kernels follow only {implemented!r} "
                "(refsim describes other schedules, for kernels written elsewhere)"
            )
    if callable(config.xcd_remap):
        raise ValueError(
            f"xcd_remap={hook_name(config.xcd_remap)}: the kernels follow only the built-in "
            "remaps (True, False; refsim describes others, for kernels written elsewhere)"
        )
    if config.scheme.dynamic and config.sk_tiles:
        raise ValueError(
            f"sk_tiles={config.sk_tiles}: the work-stealing kernel has no Stream-K tail "
            "(refsim describes one, for kernels written elsewhere)"
        )


def _check_launchable(config, device, deterministic, out_dtype):
    _check_schedule(config)
    if config.protocol is not None and config.protocol.atomic:
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
        and config.protocol is not None
        and config.protocol.waits
        and config.sk_tiles > 0
    ):
        resident = device_profile(cuda_index(device))[1]
        if config.grid > resident:
            raise ValueError(
                f"fixup={config.fixup!r} spins on flags of other programs, so all "
                f"{config.grid} programs must be resident at once, but the device "
                f"holds {resident} (one per SM): lower grid= or use last-arriver"
            )


def launch_options(config, device=None, vendor=None):
    """Default ``num_warps``/``num_stages``: what the kernels are tuned with on a torch
    ``device``, or, compiling offline, for a Triton backend ``vendor`` ("cuda" or "hip")."""
    if vendor is None and device.type == "cuda":
        vendor = "hip" if getattr(torch.version, "hip", None) else "cuda"
    if vendor not in (None, "cuda", "hip"):
        raise ValueError(f"vendor={vendor!r}: accepted values are 'cuda', 'hip'")
    tile_elems = config.block_m * config.block_n
    num_warps = 8 if tile_elems >= 128 * 256 else 4
    if vendor is None:
        return {"num_warps": num_warps, "num_stages": 1}
    if vendor == "hip":
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
    key = None
    if not trace and isinstance(config, GemmConfig):
        options = (deterministic, num_warps, num_stages)
        key = prepared.plan_key(config, a, b, bias, out, options)
        plan = prepared.lookup(key)
        if plan is not None:
            return KernelRun(plan(a, b, bias, out), config)
    if config is None or isinstance(config, dict):
        for name, t in (("a", a), ("b", b)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
            if t.dim() != 2:
                raise ValueError(f"{name} must be 2-D, got shape {tuple(t.shape)}")
        if a.shape[1] != b.shape[0]:
            raise ValueError(f"a {tuple(a.shape)} @ b {tuple(b.shape)}: inner sizes differ")
        if 0 in (a.shape[0], a.shape[1], b.shape[1]):
            return KernelRun(
                output=_empty_product(a, b, bias, out), config=None, records=[] if trace else None
            )
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
    tensors = (a, b, bias, c) if key is None else prepared.stand_ins(a, b, bias, c)
    with workspace.lock:
        launch_set = build_launches(
            config,
            *tensors,
            backend=backend,
            workspace=workspace,
            trace=trace,
            options=options,
        )
        if not trace:
            _enqueue_and_prepare(key, launch_set, tensors, workspace)
            return KernelRun(c, config)
        flags_before = None if launch_set.flags is None else launch_set.flags.cpu().clone()
        with in_flight(launch_set.events):
            if device.type == "cuda":  # the current stream, where Triton launches too
                torch.cuda._sleep(TRACE_HEAD_START_CYCLES)
            _enqueue(launch_set)
            partials = None if launch_set.partials is None else launch_set.partials.clone()
            overruns = events_lost(launch_set.events)
            overruns += sum(trace_overruns(buffer) for _, buffer in launch_set.traces)
            return KernelRun(
                output=c,
                config=config,
                records=decode_trace(launch_set.traces, backend),
                partials=partials,
                events=decode_events(launch_set.events),
                epoch=launch_set.epoch,
                flags_before=flags_before,
                overruns=overruns,
            )


def product(config, a, b, bias=None, out=None, deterministic=True):
    """``run(config, a, b, bias, out=out, deterministic=deterministic).output``: the torch
    front end's call, which needs only the output, straight to a prepared call when there is
    one."""
    key = prepared.plan_key(config, a, b, bias, out, (deterministic, None, None))
    plan = prepared.lookup(key)
    if plan is not None:
        return plan(a, b, bias, out)
    return run(config, a, b, bias, out=out, deterministic=deterministic).output


def run_batched(config, a, b, out=None):
    """``C[i] = A[i] @ B[i]`` for every product of a batch in one data-parallel launch (grid:
    tiles x batch); returns C.

    ``config`` describes one product and must be data-parallel; ``a`` is ``(batch, M, K)``,
    ``b`` ``(batch, K, N)`` and ``out`` ``(batch, M, N)`` or None, with any strides (batch
    stride 0 broadcasts an operand). Not traced: trace one product with :func:`run`.
    """
    key = prepared.plan_key(config, a, b, None, out, ("batched",))
    plan = prepared.lookup(key)
    if plan is not None:
        return plan(a, b, None, out)
    if not config.scheme.batched:
        raise ValueError(
            f"strategy={config.strategy!r}: a batch runs in one data-parallel launch (a "
            "batched strategy); run "
            "other strategies one product at a time"
        )
    for name, t in (("a", a), ("b", b), ("out", out)):
        if t is not None and not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if a.dim() != 3 or b.dim() != 3 or (out is not None and out.dim() != 3):
        raise ValueError("a, b and out must be 3-D (batch, rows, columns)")
    batch = a.shape[0]
    if b.shape[0] != batch or (out is not None and out.shape[0] != batch) or batch == 0:
        raise ValueError(f"a, b and out must hold the same number (> 0) of products, got {batch}")
    _check(config, a[0], b[0], None, None if out is None else out[0])
    _check_launchable(config, a.device, True, a.dtype if out is None else out.dtype)
    shape = (batch, config.m, config.n)
    c = out if out is not None else torch.empty(shape, dtype=a.dtype, device=a.device)
    workspace = workspace_for(a.device)
    tensors = (a, b, None, c) if key is None else prepared.stand_ins(a, b, None, c)
    with workspace.lock:
        launch_set = build_launches(
            config, *tensors, backend=backend_for(a.device.type), workspace=workspace
        )
        _enqueue_and_prepare(key, launch_set, tensors, workspace)
    return c


def _enqueue_and_prepare(key, launch_set, tensors, workspace):
    """Enqueue an untraced launch set built over ``tensors`` (the call's, or stand-ins for them
    when ``key`` is not None) and keep it as the prepared call of ``key`` where it can be."""
    compiled = _enqueue(launch_set)
    if key is not None and prepared.preparable(launch_set, tensors):
        prepared.remember(key, launch_set, compiled, tensors, workspace)


def _enqueue(launch_set):
    """Zero the set's buffers and enqueue its launches, each under the program order it
    requires when the interpreter runs it (outside any order, the caller's applies); returns
    what each launch returned (on a GPU, the compiled kernel)."""
    for buffer in launch_set.zeroed:
        buffer.zero_()
    compiled = []
    for launch in launch_set.launches:
        order = contextlib.nullcontext() if launch.order is None else program_order(launch.order)
        with order:
            compiled.append(
                launch.kernel[launch.grid](*launch.args, **launch.constexprs, **launch.options)
            )
    return compiled


def _empty_product(a, b, bias, out):
    result = torch.matmul(a, b)
    if bias is not None:
        result = result + bias
    if out is not None:
        out.copy_(result)
        return out
    return result
