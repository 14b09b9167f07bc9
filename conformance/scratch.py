"""Scratch buffers inside guard slots, and the check that no kernel wrote past one.

A kernel's counters, flags and partial buffers are indexed by numbers it computes: one index
past the end writes other memory, which on a GPU corrupts a neighbour and in Triton's
interpreter its heap. Each such buffer lies inside guard slots holding a sentinel
(:class:`kernels.workspace.GuardedBuffer`): the project's own kernels get theirs from
:mod:`kernels.workspace`, a kernel adapted with :func:`conformance.adapter.bind` from
:func:`guarded_scratch`. A run lists them in ``run.scratch_guards``, and
:func:`check_scratch_guards` names every guard slot that changed.
"""

import torch

from kernels.workspace import GuardedBuffer

from .causes import Cause
from .checks import Finding

# The cause of a write into a guard slot: the same as a write outside C or an unplanned slot.
CAUSE = Cause.WRITE_OUTSIDE_TILE_OR_MATRIX


class Scratch(dict):
    """A launch's scratch buffers by name (the tensors its kernel got), with ``guards``, the
    :class:`~kernels.workspace.GuardedBuffer` around each."""

    def __init__(self, guards):
        super().__init__((guard.name, guard.tensor) for guard in guards)
        self.guards = list(guards)


def guarded_scratch(makers, config, device):
    """A :class:`Scratch` of one buffer per ``name -> maker(config, device)`` in ``makers``: each
    maker's tensor copied into a :class:`~kernels.workspace.GuardedBuffer` of its shape and dtype
    (contiguous). TypeError when a maker returns anything but a tensor, or one of a dtype with
    no guard value (bool, complex)."""
    guards = []
    for name, make in makers.items():
        tensor = make(config, device)
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"buffer {name!r}: its maker returned a {type(tensor).__name__}")
        guard = GuardedBuffer(name, tuple(tensor.shape), tensor.dtype, tensor.device)
        guard.tensor.copy_(tensor)
        guards.append(guard)
    return Scratch(guards)


def check_scratch_guards(run):
    """The "scratch guards" finding of ``run.scratch_guards``: every guard slot around the run's
    counters, flags and other scratch buffers still holds its sentinel. Failed, with cause
    :data:`CAUSE` and one reason per written slot (at most 5), when the kernel wrote one; None
    when the run has no guarded buffer."""
    guards = getattr(run, "scratch_guards", None)
    if not guards:
        return None
    written = [(guard, index) for guard in guards for index in guard.written()]
    if not written:
        names = ", ".join(guard.name for guard in guards)
        return Finding("scratch guards", True, [f"the guard slots around {names} untouched"])
    reasons = [guard.describe(index) for guard, index in written[:5]]
    if len(written) > 5:
        reasons.append(f"{len(written)} guard slots written in all")
    return Finding(
        "scratch guards",
        False,
        reasons,
        CAUSE,
        {"written": [[guard.name, index] for guard, index in written[:5]]},
    )
