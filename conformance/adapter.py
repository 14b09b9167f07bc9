"""Adapters: the reference kernels, a mutant package, or a kernel written elsewhere, as a
KernelUnderTest.

A kernel written elsewhere needs only its host launch and the GemmConfig options its schedule
fixes; :func:`adapt` does the rest, and :func:`bind` writes the host launch of a ``triton.jit``
kernel from its parameter names::

    from conformance.adapter import adapt, bind

    def my_kernel():
        launch = bind(matmul_kernel, NUM_SMS=lambda ctx: ctx.config.grid)
        return adapt("mine", launch, follows={"strategy": "persistent"})

    # python -m conformance --device cpu --kernel my_module:my_kernel

``launch(config, a, b, bias, out, worklog)`` computes ``a @ b + bias`` into ``out`` following
``config``; a kernel that records each work item with :func:`conformance.worklog.record_work`
into ``worklog.tensor`` has its tile order checked too. Any callable with the suite's calling
convention can be wrapped with :class:`conformance.harness.KernelUnderTest` directly, too.
"""

import collections.abc
import contextlib
import importlib
import inspect
import types

import torch

from kernels.backend import program_order
from refsim.config import OPTION_NAMES, check_names

from .binding import LaunchContext, bind
from .graph import graph_capture
from .harness import POISON, KernelUnderTest
from .scratch import Scratch
from .worklog import WorkLog

__all__ = ["LaunchContext", "adapt", "bind", "for_package", "options_for", "reference"]

# The GemmConfig options a kernel's schedule may fix: all but the shape, which is the case's.
FOLLOWABLE = [option for option in OPTION_NAMES if option not in ("m", "n", "k")]
# adapt's wait_order names. Hardware orders apply to every launch: a function of its number of
# programs. Logical ones are functions of the config giving its grid's hardware program ids in
# the order they run, by GemmConfig.logical_program (the XCD remap).
HARDWARE_ORDERS = {
    "higher-first": lambda num_programs: range(num_programs - 1, -1, -1),
    "lower-first": lambda num_programs: range(num_programs),
}
LOGICAL_ORDERS = {
    "higher-logical-first": lambda config: sorted(
        range(config.grid), key=config.logical_program, reverse=True
    ),
    "lower-logical-first": lambda config: sorted(range(config.grid), key=config.logical_program),
}
# The logical order a waiting fixup protocol needs in the sequential interpreter, by its
# ``wait_order`` (refsim.strategies.FixupProtocol): an owner-waits owner waits for the later
# programs of its tile (higher-first), a turnstile contributor for the one before it
# (lower-first). The other protocols never wait (no wait_order).
PROTOCOL_ORDERS = {"higher-first": "higher-logical-first", "lower-first": "lower-logical-first"}


def for_package(module, name):
    """A KernelUnderTest over a package shaped like ``kernels`` (run, partial_slot, capture,
    and the modules workspace, prepared and launch); its ``reset`` forgets the package's
    prepared calls and workspaces, and its batched path is the package's ``run_batched``."""
    workspace = importlib.import_module(f"{module.__name__}.workspace")
    prepared = importlib.import_module(f"{module.__name__}.prepared")
    launcher = importlib.import_module(f"{module.__name__}.launch")

    def reset():
        prepared.forget()  # first: a prepared call holds the workspace it was built over
        workspace.forget()

    def poison(device):
        workspace.workspace_for(device).fill("partials", POISON)

    def run(config, a, b, bias=None, out=None, trace=False):
        atomic = config.protocol is not None and config.protocol.atomic
        guards = workspace.workspace_for(a.device).guarded_buffers
        for guard in guards():  # a write seen is this launch's, not an earlier one's
            guard.rearm()
        result = module.run(config, a, b, bias, out=out, trace=trace, deterministic=not atomic)
        result.scratch_guards = guards()  # for conformance.scratch.check_scratch_guards
        return result

    def capture(config, a, b, bias, out):
        atomic = config.protocol is not None and config.protocol.atomic
        return module.capture(config, a, b, bias, out=out, deterministic=not atomic).replay

    return KernelUnderTest(
        name,
        run,
        module.partial_slot,
        poison=poison,
        block_dots=True,
        reset=reset,
        run_batched=launcher.run_batched,
        capture=capture,
    )


def reference():
    """The project's own kernels."""
    import kernels

    return for_package(kernels, "kernels")


def options_for(follows, case):
    """The GemmConfig options a kernel's ``follows`` fixes for ``case``: ``follows`` itself (a
    dict; None is none), or what ``follows(case)`` returns for a function of the case. TypeError
    when that is not a dict, or names an option that is unknown or the shape's (m, n, k).
    """
    options = follows(case) if callable(follows) else follows or {}
    if not isinstance(options, dict):
        raise TypeError(
            f"follows({case.name}) returned a {type(options).__name__}, not a dict of options"
        )
    check_names(options, FOLLOWABLE)
    return options


def adapt(
    name,
    launch,
    *,
    follows,
    records=None,
    wait_order="protocol",
    partials=None,
    partial_slot=None,
    zero_fills_partials=False,
    block_dots=False,
    batched=None,
    graphs=False,
):
    """A kernel written elsewhere, from its host launch, as a KernelUnderTest.

    ``launch(config, a, b, bias, out, worklog)`` computes ``a @ b + bias`` into ``out`` following
    ``config`` (a :class:`refsim.GemmConfig`); it may return a mapping of the scratch buffers it
    used by name (``{"partials": ..., "counters": ...}``; :func:`bind`'s launches return theirs,
    inside guard slots that :func:`conformance.scratch.check_scratch_guards` checks). Arguments:

    * ``follows``: the GemmConfig options the kernel's schedule fixes (strategy, hooks, fixup,
      blocks, grid, ...), a dict; or a module-level function ``(case) -> dict`` when they depend
      on the case's shape or machine (the XCD remap's chunk, a grid of its own, counters per
      XCD). Cases run as they follow them (:meth:`conformance.cases.Case.following`,
      :func:`options_for`).
    * ``records``: whether the kernel records its work with
      :func:`conformance.worklog.record_work`. None (default) infers it per traced launch: a
      work log left untouched (no row, no overrun) means it does not record, and the checks of
      its tile order are skipped. True: it must record, and an untouched log fails the tile
      order. False: it never gets a log (``worklog`` is None).
    * ``wait_order``: ``"protocol"`` (default): the order the config's Stream-K fixup protocol
      needs -- higher logical ids first for owner-waits, lower first for turnstile, any order
      for the protocols that never wait (the protocol's ``wait_order``, :data:`PROTOCOL_ORDERS`). None when programs never
      wait on one another (any order; the determinism runs shuffle it). Else the order
      Triton's sequential interpreter runs them in:
      ``"higher-first"`` / ``"lower-first"`` when they wait on higher / lower hardware ids (every
      launch); ``"higher-logical-first"`` / ``"lower-logical-first"`` on higher / lower logical
      ids, after the XCD remap (:meth:`refsim.GemmConfig.logical_program`; Stream-K owners wait
      on higher logical ids); or a function ``(config) -> hardware program ids`` in the order
      they run. The last three order the launches of ``config.grid`` programs; others run in the
      interpreter's own order.
    * ``partials``: the kernel's fp32 partial buffer ``(slots, BLOCK_M, BLOCK_N)``, copied
      right after each traced launch and compared with refsim's partials through
      ``partial_slot(config, program, tile)``, its row of refsim's partial (pass both or
      neither). The name of a buffer the launch returns; a function ``(config, device,
      buffers)`` called after the launch with the buffers it returned; or a function
      ``(config)`` of a buffer that outlives launches, called before each and poisoned with
      :data:`conformance.harness.POISON` first. Slots without a planned partial must still
      hold POISON, or 0 with ``zero_fills_partials=True``: the kernel, or its buffer's maker,
      zero-fills its slots for each launch.
    * ``block_dots``: as :attr:`KernelUnderTest.block_dots`.
    * ``batched``: the kernel's batched path, ``(config, a, b, out) -> out`` (as
      :attr:`KernelUnderTest.run_batched`), for the batched cases; None: they are not run.
    * ``graphs``: True when a launch can be captured in a CUDA graph as it is (no host sync, no
      allocation): the graph-replay check captures it (:func:`conformance.graph.graph_capture`).

    TypeError or ValueError, in one line, for an argument it cannot honour.
    """
    if not (isinstance(follows, dict) or callable(follows)):
        raise TypeError(
            "follows must be a dict of GemmConfig options or a function of the case, not "
            f"{type(follows).__name__}"
        )
    if isinstance(follows, dict):
        check_names(follows, FOLLOWABLE)
        follows = dict(follows)
    if not (records is None or isinstance(records, bool)):
        raise ValueError(f"records={records!r}: accepted values are None (inferred), True, False")
    names = ["protocol", *HARDWARE_ORDERS, *LOGICAL_ORDERS]
    if not (wait_order is None or callable(wait_order)) and wait_order not in names:
        accepted = ", ".join(repr(name) for name in names)
        raise ValueError(
            f"wait_order={wait_order!r}: accepted values are None, {accepted} or a function "
            "(config) -> program ids"
        )
    if (partials is None) != (partial_slot is None):
        raise ValueError("pass partials and partial_slot together, or neither")
    if zero_fills_partials and partials is None:
        raise ValueError("zero_fills_partials=True needs partials and partial_slot")
    if not (batched is None or callable(batched)):
        raise TypeError(f"batched must be a function (config, a, b, out), not {batched!r}")
    if not isinstance(graphs, bool):
        raise TypeError(f"graphs must be True or False, not {graphs!r}")
    foreign = _ForeignRun(
        launch, records, wait_order, _partial_source(partials), zero_fills_partials
    )
    return KernelUnderTest(
        name,
        foreign.run,
        partial_slot,
        poison=None if partials is None else foreign.poison,
        block_dots=block_dots,
        follows=follows,
        run_batched=batched,
        capture=graph_capture(foreign.run) if graphs else None,
    )


def _partial_source(partials):
    """``partials`` as ``(before_launch, function)``: whether the function takes the config
    alone (a buffer that outlives launches, poisoned before each) or ``(config, device,
    buffers)`` after the launch; a buffer name is the latter. None stays None."""
    if partials is None:
        return None
    if isinstance(partials, str):
        return False, lambda config, device, buffers: _returned(buffers, partials)
    if not callable(partials):
        raise TypeError(
            f"partials must be a buffer name or a function, not {type(partials).__name__}"
        )
    for before_launch, arguments in ((False, 3), (True, 1)):
        try:
            inspect.signature(partials).bind(*[None] * arguments)
        except TypeError:
            continue
        except ValueError:  # no signature to read (a builtin): take it as the documented one
            return False, partials
        return before_launch, partials
    raise TypeError("partials must take (config, device, buffers), or (config) alone")


def _returned(buffers, name):
    """The buffer ``name`` that the launch returned; ValueError naming those it did return."""
    if name not in buffers:
        returned = ", ".join(sorted(buffers)) or "none"
        raise ValueError(f"partials={name!r}: the launch returned no such buffer ({returned})")
    return buffers[name]


class _ForeignRun:
    """An adapted kernel's ``run`` and ``poison`` (see :func:`adapt`): its launch with a work
    log when traced, in its interpreter order, its partial buffer poisoned and copied, and its
    scratch buffers' guard slots passed on."""

    def __init__(self, launch, records, wait_order, partials, zero_fills_partials):
        self.launch = launch
        self.records = records
        self.wait_order = wait_order
        self.partials = partials
        self.partials_fill = 0.0 if zero_fills_partials else POISON
        # poison() comes before a launch whose config it does not know: run() poisons then.
        self.poison_next = False

    def poison(self, device):
        """Fill a partial buffer that outlives launches with POISON before the next launch."""
        self.poison_next = True

    def run(self, config, a, b, bias=None, out=None, trace=False):
        if out is None:
            out = torch.empty((config.m, config.n), dtype=a.dtype, device=a.device)
        worklog = WorkLog(config, a.device) if trace and self.records is not False else None
        before_launch, partials = self.partials or (False, None)
        buffer = _checked_partials(partials(config), config) if before_launch else None
        if buffer is not None and self.poison_next:
            buffer.fill_(POISON)
        self.poison_next = False
        order = self._program_order(config)
        with contextlib.nullcontext() if order is None else program_order(order):
            returned = self.launch(config, a, b, bias, out, worklog)
        buffers = dict(returned) if isinstance(returned, collections.abc.Mapping) else {}
        guards = returned.guards if isinstance(returned, Scratch) else []
        run = types.SimpleNamespace(output=out, scratch_guards=guards)
        if not trace:
            return run
        if partials is not None and not before_launch:
            buffer = _checked_partials(partials(config, a.device, buffers), config)
        run.partials = None if buffer is None else buffer.detach().clone()
        run.partials_fill = self.partials_fill
        recorded = worklog is not None and (self.records or worklog.written)
        run.records = worklog.records() if recorded else None
        run.overruns = worklog.overruns if recorded else 0
        return run

    def _program_order(self, config):
        """The interpreter's program order for a launch of ``config`` (None: its own)."""
        wait_order = self.wait_order
        if wait_order == "protocol":
            # the fixup of the config's Stream-K tiles; none without any (sk_tiles 0 or None)
            protocol = config.protocol if config.sk_tiles else None
            wait_order = PROTOCOL_ORDERS.get(protocol.wait_order) if protocol else None
        if wait_order is None:
            return None
        if wait_order in HARDWARE_ORDERS:
            return HARDWARE_ORDERS[wait_order]
        ids = list(LOGICAL_ORDERS.get(wait_order, wait_order)(config))
        if sorted(ids) != list(range(config.grid)):
            raise ValueError(
                f"wait_order gave {ids[:8]}{'...' if len(ids) > 8 else ''}: not an order of the "
                f"{config.grid} programs 0..{config.grid - 1}"
            )
        return lambda num_programs: ids if num_programs == len(ids) else range(num_programs)


def _checked_partials(buffer, config):
    """``buffer`` if it is a float32 ``(slots, BLOCK_M, BLOCK_N)`` tensor, else ValueError."""
    shape = (config.block_m, config.block_n)
    if (
        not isinstance(buffer, torch.Tensor)
        or buffer.dtype != torch.float32
        or buffer.dim() != 3
        or tuple(buffer.shape[1:]) != shape
    ):
        got = (
            f"a {buffer.dtype} tensor of shape {tuple(buffer.shape)}"
            if isinstance(buffer, torch.Tensor)
            else f"a {type(buffer).__name__}"
        )
        raise ValueError(f"partials gave {got}; expected float32 (slots, {shape[0]}, {shape[1]})")
    return buffer
