"""refsim.simulate: the simulator's front door."""

import inspect
import math

from . import numerics
from .config import GemmConfig
from .hardware import DEFAULT_DEVICE
from .plan import build_plan
from .result import SimResult
from .simulator import Simulation


def simulate(
    m,
    n=None,
    k=None,
    cus=None,
    *,
    device=DEFAULT_DEVICE,
    strategy="streamk",
    block_m=256,
    block_n=256,
    block_k=64,
    group_m=8,
    xcds=None,
    grid=None,
    sk_tiles=None,
    sk_hybrid="two-tile",
    fixup="owner-waits",
    counters_per_xcd=1,
    global_counter=False,
    split_k=None,
    dtype="bf16",
    xcd_remap=None,
    xcd_chunk=None,
    a=None,
    b=None,
    bias=None,
    jitter=0.0,
    seed=0,
):
    """Simulate one GEMM launch; pass sizes and options, or a ready :class:`GemmConfig` as ``m``.

    ``a`` (M x K) and ``b`` (K x N), with optional ``bias`` (N), make the result carry the exact
    partial buffers and output. ``jitter`` in [0, 1) slows each CU by a factor drawn from
    ``1 + jitter * U[0, 1)`` with ``random.Random(seed)``: the same seed, the same run.
    """
    if isinstance(m, GemmConfig):
        given = {
            name: value
            for name, value in locals().items()
            if name in _CONFIG_OPTIONS
            and value is not _CONFIG_OPTIONS[name]
            and value != _CONFIG_OPTIONS[name]
        }
        if n is not None or k is not None or given:
            raise ValueError(
                "pass either a GemmConfig or sizes and options, not both (got "
                f"{', '.join(sorted(given)) or 'N, K'} with a GemmConfig); use "
                "config.replace(...) to change a config"
            )
        config = m
    else:
        if n is None or k is None:
            raise ValueError("simulate needs M, N and K (or a GemmConfig)")
        config = GemmConfig(
            m,
            n,
            k,
            strategy=strategy,
            block_m=block_m,
            block_n=block_n,
            block_k=block_k,
            group_m=group_m,
            cus=cus,
            xcds=xcds,
            grid=grid,
            sk_tiles=sk_tiles,
            sk_hybrid=sk_hybrid,
            fixup=fixup,
            counters_per_xcd=counters_per_xcd,
            global_counter=global_counter,
            split_k=split_k,
            dtype=dtype,
            device=device,
            xcd_remap=xcd_remap,
            xcd_chunk=xcd_chunk,
        )
    if not (isinstance(jitter, (int, float)) and math.isfinite(jitter) and 0 <= jitter < 1):
        raise ValueError(f"jitter={jitter!r}: must be a number in [0, 1)")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed={seed!r}: must be an integer")
    if (a is None) != (b is None):
        raise ValueError("pass both a and b for numerics, or neither")
    if bias is not None and a is None:
        raise ValueError("bias needs a and b")
    if a is not None:
        numerics.check_inputs(config, a, b, bias)
    plan = build_plan(config)
    sim = Simulation(config, plan, with_bias=bias is not None, jitter=float(jitter), seed=seed)
    records, fixups, deadlock, makespan = sim.run()
    output = partials = None
    if a is not None:
        output, partials = numerics.compute(config, records, fixups, a, b, bias)
    return SimResult(
        config, plan, records, fixups, deadlock, makespan, sim.busy_us, output, partials
    )


# The configuration options of simulate() and their defaults: with a GemmConfig they must stay unset.
_CONFIG_OPTIONS = {
    name: p.default
    for name, p in inspect.signature(simulate).parameters.items()
    if name not in ("m", "n", "k", "a", "b", "bias", "jitter", "seed")
}
