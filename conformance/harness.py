"""The harness: launching a kernel under test on a case's inputs, and what refsim expects of it.

A kernel under test is any callable ``run(config, a, b, bias=None, out=None, trace=False)``
returning an object with ``output`` (and, when traced, ``records`` -- refsim WorkRecords --
and optionally ``partials``); see :class:`KernelUnderTest`. Its inputs come in the case's layouts
(transposed, strided) and its output is a view inside guard bands (:mod:`conformance.guards`).
"""

import dataclasses
import time

import numpy as np
import torch

import refsim
from kernels.dtypes import TORCH_DTYPES
from refsim import numerics, tiling

from .guards import OutputLayout
from .inputs import as_tensors
from .interpreter import repair as repair_interpreter

# What the harness fills scratch memory with before a run: a stale read shows up as this value.
POISON = 2.0**40
# The roles of a split tile's work items in Stream-K, and in a work-stealing kernel's tail.
STREAM_K_ROLES = ("sk-owner", "sk-contributor")


@dataclasses.dataclass
class KernelUnderTest:
    """A kernel and what the suite may know about it.

    ``run(config, a, b, bias=None, out=None, trace=False)`` must compute ``a @ b + bias`` into
    ``out`` following ``config``. ``partial_slot(config, program, tile)`` (optional) maps refsim's
    partials to rows of the returned ``partials``; ``poison(device)`` (optional) fills its scratch
    memory with :data:`POISON` before the next launch. A traced run may also return ``events``,
    the order in which each program stored partials and released them (see
    :func:`conformance.synchronisation.check_synchronisation`). ``follows`` (optional): the
    GemmConfig options the kernel's schedule fixes, a dict; a case runs against the kernel as
    :meth:`conformance.cases.Case.following` them (see :func:`conformance.adapter.adapt`).
    ``reset()`` (optional) returns the kernel to the state of a new process -- no cached calls,
    no scratch memory -- so that what a case finds does not depend on the cases checked before
    it in the same worker (:func:`conformance.isolation.check_fresh` calls it before each case).

    Two more call paths, each optional (a case on a path the kernel lacks is not run, and its
    finding says so): ``run_batched(config, a, b, out)`` computes every product of a batch,
    ``out[i] = a[i] @ b[i]`` (3-D tensors, any strides, batch stride 0 broadcasting an
    operand), and returns the output; ``capture(config, a, b, bias, out)`` captures a call in
    a CUDA graph and returns a function that replays it (ValueError for a config it cannot
    capture).
    """

    name: str
    run: object
    partial_slot: object = None
    poison: object = None
    # Whether, in Triton's interpreter, the kernel multiplies the config's blocks with one
    # tl.dot per K-iteration (the interpreter's float32 matmul), so that random inputs must
    # give refsim's bits too (see conformance.checks.check_random_bits).
    block_dots: bool = False
    follows: dict = None
    reset: object = None
    run_batched: object = None
    capture: object = None


def to_numpy(tensor):
    """A tensor as a float64 numpy array on the host (None stays None)."""
    return None if tensor is None else tensor.detach().double().cpu().numpy()


def launch(kut, config, case, inputs, device, trace, out_dtype=None, relayout=None):
    """Run ``kut`` on numpy ``inputs`` laid out as ``case`` says, after poisoning its scratch
    memory, into a NaN-filled output inside guard bands (:class:`conformance.guards.OutputLayout`,
    which finds them again from ``run.output``); returns the run and the input tensors.

    ``relayout(a, b, bias) -> (a, b, bias)``, if given, hands the kernel the same values in
    other memory (other strides, a storage offset) instead of the case's layout."""
    if torch.device(device).type == "cpu":
        repair_interpreter()  # bf16 as a GPU computes it (conformance.interpreter)
    a, b, bias = as_tensors(case, *inputs, device)
    if relayout is not None:
        a, b, bias = relayout(a, b, bias)
    dtype = out_dtype or TORCH_DTYPES[case.dtype]
    _, out = OutputLayout.of(config, case).allocate(dtype, device)
    if kut.poison is not None:
        kut.poison(torch.device(device))
    _kernel_clock.started = time.monotonic()
    try:
        run = kut.run(config, a, b, bias, out=out, trace=trace)
        if out.is_cuda:
            torch.cuda.synchronize(out.device)
    finally:
        _kernel_clock.started = None
    return run, (a, b, bias)


class _KernelClock:
    """When the launch in progress began (None between launches), for a hang watchdog."""

    started = None


_kernel_clock = _KernelClock()


def seconds_in_kernel():
    """How long this process has been inside one kernel launch (the kernel's own call and the
    wait for its device to finish), or None when it is not in one: a hang is a launch that does
    not end, while refsim's predictions on the CPU may take long without hanging anything."""
    started = _kernel_clock.started
    return None if started is None else time.monotonic() - started


def expected_output(config, run, tensors):
    """refsim's output for these inputs and the refsim run it comes from: its plan, or for work
    stealing the observed tickets (:func:`replayed_schedule`; no run without a Stream-K tail).

    An untraced work-stealing run has no tickets: every stolen tile is whole, so its value does
    not depend on who took it, and refsim's own run gives the output with a tail; without one,
    the float64 product (exact on integer inputs).
    """
    a, b, bias = map(to_numpy, tensors)
    if config.scheme.dynamic:
        if getattr(run, "records", None) is not None:
            records, fixups, sim = replayed_schedule(config, run.records)
            output, partials = numerics.compute(config, records, fixups, a, b, bias)
            if sim is not None:
                sim = dataclasses.replace(sim, output=output, partials=partials)
            return output, sim
        if not config.sk_tiles:
            return a @ b + (0.0 if bias is None else bias), None
    sim = refsim.simulate(config, a=a, b=b, bias=bias)
    return sim.output, sim


def replayed_schedule(config, records):
    """Work stealing: ``(records, fixups, sim)`` to compute the output from -- the kernel's
    tickets replayed by the tiling rules (:func:`ticket_records`), then refsim's plan for the
    Stream-K tail (roles in :data:`STREAM_K_ROLES`) and the tail's fixups, from ``sim``, refsim's
    run of ``config`` (None without a tail). The tail is static, so its plan is the prediction."""
    replayed = ticket_records(config, records)
    if not config.sk_tiles:
        return replayed, [], None
    sim = refsim.simulate(config)
    tail = [r for r in sim.records if r.role in STREAM_K_ROLES]
    return replayed + tail, sim.fixups, sim


def ticket_records(config, records):
    """Work-stealing records rebuilt from their (counter, ticket) alone, by the config's rules.

    The replay trusts nothing else a kernel recorded: ticket ``t`` of counter ``c`` is the tile
    the config's ``ws_ticket_tile`` names (:meth:`refsim.GemmConfig.ticket_tile`; by default
    ``begin + t`` of the counter's range ``[begin, end)``), at the ``(pid_m, pid_n)`` of
    :func:`refsim.tiling.grouped_tile`, over its whole K-range. A ticket past its counter's
    ``end - begin`` tickets, or a counter that does not exist, names no tile and is left out
    (the invariants check reports it); so are the Stream-K tail's records (counter -1).
    """
    rebuilt = []
    for r in records:
        if not 0 <= r.counter < config.num_counters or r.ticket < 0:
            continue
        begin, end = config.counter_range(r.counter)
        if r.ticket >= end - begin:
            continue
        tile = config.ticket_tile(r.counter, r.ticket)
        pid_m, pid_n = tiling.grouped_tile(tile, config.num_pid_m, config.num_pid_n, config.group_m)
        rebuilt.append(
            r._replace(
                tile=tile,
                pid_m=pid_m,
                pid_n=pid_n,
                k_begin=0,
                k_end=config.iters_per_tile,
                finalizes=True,
            )
        )
    return rebuilt


def cast_to(values, dtype):
    """fp32 ``values`` after one round-to-nearest cast to the torch ``dtype``, as float64."""
    return torch.from_numpy(np.asarray(values, dtype=np.float32)).to(dtype).double().numpy()
