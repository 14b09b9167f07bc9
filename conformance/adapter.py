"""Adapters: the reference kernels, a mutant package, or a kernel written elsewhere, as a
KernelUnderTest.

A kernel written elsewhere needs only its host launch and the GemmConfig options its schedule
fixes; :func:`adapt` does the rest::

    from conformance.adapter import adapt

    def my_kernel():
        return adapt("mine", my_launch, follows={"strategy": "persistent", "tile_order": "contiguous"})

    # python -m conformance --device cpu --kernel my_module:my_kernel

``my_launch(config, a, b, bias, out, worklog)`` computes ``a @ b + bias`` into ``out`` following
``config``; to have its tile order checked, the kernel records each work item with
:func:`conformance.worklog.record_work` into ``worklog.tensor`` (None when the suite does not
trace: the kernel then records nothing). Any callable with the suite's calling convention can be
wrapped with :class:`conformance.harness.KernelUnderTest` directly, too.
"""

import contextlib
import importlib
import types

import torch

from kernels.backend import program_order
from refsim.config import OPTION_NAMES, check_names

from .harness import POISON, KernelUnderTest
from .worklog import WorkLog

# The interpreter's program order for each wait_order of adapt (None: the caller's).
WAIT_ORDERS = {
    None: None,
    "higher-first": lambda num_programs: range(num_programs - 1, -1, -1),
    "lower-first": lambda num_programs: range(num_programs),
}


def for_package(module, name):
    """A KernelUnderTest over a package shaped like ``kernels`` (run, partial_slot, workspace)."""
    workspace = importlib.import_module(f"{module.__name__}.workspace")

    def poison(device):
        workspace.workspace_for(device).fill("partials", POISON)

    def run(config, a, b, bias=None, out=None, trace=False):
        atomic = config.strategy == "streamk" and config.fixup == "atomic"
        return module.run(config, a, b, bias, out=out, trace=trace, deterministic=not atomic)

    return KernelUnderTest(name, run, module.partial_slot, poison=poison, block_dots=True)


def reference():
    """The project's own kernels."""
    import kernels

    return for_package(kernels, "kernels")


def adapt(
    name,
    launch,
    *,
    follows,
    partials=None,
    partial_slot=None,
    wait_order=None,
    block_dots=False,
):
    """A kernel written elsewhere, from its host launch, as a KernelUnderTest.

    ``launch(config, a, b, bias, out, worklog)`` computes ``a @ b + bias`` into ``out`` following
    ``config`` (a :class:`refsim.GemmConfig`); ``worklog`` is a
    :class:`conformance.worklog.WorkLog` when the suite traces, else None (pass the kernel any
    tensor as its log and a constexpr that turns recording off). ``follows``: the GemmConfig
    options the kernel's schedule fixes (strategy, hooks, fixup, blocks, ...); cases run as they
    follow them (:meth:`conformance.cases.Case.following`). ``partials(config)``: the kernel's
    fp32 partial buffer ``(slots, BLOCK_M, BLOCK_N)``, poisoned before each launch and copied
    right after it, with ``partial_slot(config, program, tile)`` its row of refsim's partial
    (both or neither). ``wait_order``: None when programs never wait on one another (any
    order; the determinism runs shuffle it), ``"higher-first"`` when they wait on higher ids,
    ``"lower-first"`` on lower ones: the order Triton's sequential interpreter runs them in.
    ``block_dots``: as :attr:`KernelUnderTest.block_dots`.
    """
    if not isinstance(follows, dict):
        raise TypeError(
            f"follows must be a dict of GemmConfig options, not {type(follows).__name__}"
        )
    check_names(follows, [option for option in OPTION_NAMES if option not in ("m", "n", "k")])
    if (partials is None) != (partial_slot is None):
        raise ValueError("pass partials and partial_slot together, or neither")
    if wait_order not in WAIT_ORDERS:
        raise ValueError(
            f"wait_order={wait_order!r}: accepted values are None, 'higher-first', 'lower-first'"
        )
    foreign = _ForeignRun(launch, partials, WAIT_ORDERS[wait_order])
    return KernelUnderTest(
        name,
        foreign.run,
        partial_slot,
        poison=None if partials is None else foreign.poison,
        block_dots=block_dots,
        follows=dict(follows),
    )


class _ForeignRun:
    """An adapted kernel's ``run`` and ``poison`` (see :func:`adapt`): its launch with a work
    log when traced, in its interpreter order, and its partial buffer poisoned and copied."""

    def __init__(self, launch, partials, order):
        self.launch = launch
        self.partials = partials
        self.order = order
        # poison() comes before a launch whose config it does not know: run() poisons then.
        self.poison_next = False

    def poison(self, device):
        """Fill the partial buffer with POISON before the next launch."""
        self.poison_next = True

    def run(self, config, a, b, bias=None, out=None, trace=False):
        if out is None:
            out = torch.empty((config.m, config.n), dtype=a.dtype, device=a.device)
        worklog = WorkLog(config, a.device) if trace else None
        buffer = None if self.partials is None else self._partial_buffer(config)
        if buffer is not None and self.poison_next:
            buffer.fill_(POISON)
        self.poison_next = False
        ordered = contextlib.nullcontext() if self.order is None else program_order(self.order)
        with ordered:
            self.launch(config, a, b, bias, out, worklog)
        run = types.SimpleNamespace(output=out)
        if trace:
            run.records = worklog.records()
            run.overruns = worklog.overruns
            run.partials = None if buffer is None else buffer.detach().clone()
        return run

    def _partial_buffer(self, config):
        buffer = self.partials(config)
        shape = (config.block_m, config.block_n)
        if buffer.dtype != torch.float32 or buffer.dim() != 3 or tuple(buffer.shape[1:]) != shape:
            raise ValueError(
                f"partials(config) gave a {buffer.dtype} tensor of shape {tuple(buffer.shape)}; "
                f"expected float32 (slots, {shape[0]}, {shape[1]})"
            )
        return buffer
