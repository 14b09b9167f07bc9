"""Per-device, per-stream scratch buffers: partials, flags and counters.

Created lazily on first use (never at import), grown when a launch needs more, and kept per
(device, stream) so launches on different streams never share one. Flags hold the epoch of the
launch that set them: a new launch takes a new epoch instead of clearing them. Counters start
zeroed and every launch leaves them zeroed (the last program to use one resets it), so no launch
needs a zeroing launch before it.

The counters and flags lie inside guard slots (:class:`GuardedBuffer`): an index just outside
them lands in a slot that holds a sentinel instead of in other memory, and
:meth:`Workspace.guarded_buffers` lets a check name any slot that changed.
"""

import math
import threading

import torch

_EPOCH_LIMIT = 2**31 - 1
# The buffers that lie inside guard slots: those a kernel indexes by a computed counter or flag.
GUARDED = ("counters", "flags")
# At least this many elements of guard slots on either side of a guarded buffer.
GUARD_ELEMENTS = 8


def guard_value(dtype):
    """The sentinel guard slots of ``dtype`` hold: a value no counter, flag or exact partial
    takes (the most negative integer, the largest unsigned one, or -0.3125, not an integer).
    TypeError for bool and complex, which have no such value."""
    if dtype == torch.bool or dtype.is_complex:
        raise TypeError(f"a {dtype} buffer has no guard value: use an integer or float dtype")
    if dtype.is_floating_point:
        return -0.3125
    info = torch.iinfo(dtype)
    return info.min if info.min < 0 else info.max


class GuardedBuffer:
    """A zeroed tensor of ``shape`` with guard slots on either side of its first dimension.

    ``tensor`` is the buffer a kernel gets, a view into a larger storage whose first ``guard``
    entries (indices -guard..-1) and last ``guard`` entries (indices ``entries``..) hold
    :func:`guard_value`; an entry is one element of a 1-D buffer, one ``shape[1:]`` slab of a
    larger one, and the guard is at least :data:`GUARD_ELEMENTS` elements. :meth:`written`
    names the guard entries that changed.
    """

    def __init__(self, name, shape, dtype, device):
        if len(shape) == 0:
            raise ValueError(f"buffer {name!r} has no first dimension to guard")
        self.name = name
        self.value = guard_value(dtype)
        self.entries = shape[0]
        self.guard = max(1, -(-GUARD_ELEMENTS // max(math.prod(shape[1:]), 1)))
        storage = torch.full(
            (self.entries + 2 * self.guard, *shape[1:]), self.value, dtype=dtype, device=device
        )
        self.storage = storage
        self.tensor = storage[self.guard : self.guard + self.entries]
        self.tensor.zero_()

    def written(self):
        """The first-dimension indices of the guard entries that no longer hold the sentinel,
        ascending: negative ones before the buffer, ``entries`` and above after it."""
        changed = (self.storage != self.value).reshape(len(self.storage), -1).any(dim=1)
        changed[self.guard : self.guard + self.entries] = False
        return [int(i) - self.guard for i in changed.nonzero().flatten().tolist()]

    def describe(self, index):
        """One line for a written guard entry, e.g. ``"counters[8] written: the buffer has 8
        entries"`` or ``"counters[-1] written (guard slot before the buffer)"``."""
        if index < 0:
            return f"{self.name}[{index}] written (guard slot before the buffer)"
        return f"{self.name}[{index}] written: the buffer has {self.entries} entries"

    def rearm(self):
        """Put the sentinel back into every guard slot."""
        self.storage[: self.guard].fill_(self.value)
        self.storage[self.guard + self.entries :].fill_(self.value)


class Workspace:
    """Scratch buffers of one (device, stream)."""

    def __init__(self, device):
        self.device = device
        self._buffers = {}
        self._guarded = {}
        self._epoch = 0
        self.lock = threading.Lock()
        # Counts buffer (re)allocations: a launch prepared over older buffers must be rebuilt.
        self.generation = 0

    def buffer(self, name, numel, dtype):
        """A 1-D view of at least ``numel`` elements, zeroed when allocated; the
        :data:`GUARDED` ones inside guard slots."""
        current = self._buffers.get(name)
        if current is None or current.numel() < numel or current.dtype != dtype:
            if name in GUARDED:
                guarded = GuardedBuffer(name, (max(numel, 1),), dtype, self.device)
                self._guarded[name] = guarded
                current = guarded.tensor
            else:
                current = torch.zeros(max(numel, 1), dtype=dtype, device=self.device)
            self._buffers[name] = current
            self.generation += 1
        return current if current.numel() == max(numel, 1) else current[: max(numel, 1)]

    def held(self, name):
        """The whole buffer ``name`` as allocated, without its guard slots (None before its first
        use)."""
        return self._buffers.get(name)

    def guarded_buffers(self):
        """The :class:`GuardedBuffer` of each guarded buffer allocated so far."""
        return list(self._guarded.values())

    def fill(self, name, value):
        """Set every element of buffer ``name`` to ``value``, if this workspace holds one."""
        current = self._buffers.get(name)
        if current is not None:
            current.fill_(value)

    @property
    def epoch(self):
        """The epoch of the latest launch (0 before the first)."""
        return self._epoch

    def next_epoch(self, flags):
        """The epoch of a new launch; restarts (clearing ``flags``) before int32 overflows."""
        self._epoch += 1
        if self._epoch >= _EPOCH_LIMIT:
            flags.zero_()
            self._epoch = 1
        return self._epoch


_registry = {}
_registry_lock = threading.Lock()


def cuda_index(device):
    """The index of a CUDA ``device``, the current device's for a bare ``"cuda"``."""
    return device.index if device.index is not None else torch.cuda.current_device()


def _normalized(device):
    """``device`` with its index made explicit: ``cuda`` is the current CUDA device, and the CPU
    has no index (``cpu`` and ``cpu:0`` are one device)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.device("cuda", cuda_index(device))
    return torch.device(device.type)


def _stream_key(device):
    if device.type == "cuda":
        # the raw handle of torch.cuda.current_stream(device), without building a Stream object
        return torch._C._cuda_getCurrentRawStream(device.index)
    return 0


def workspace_for(device):
    """The workspace of ``device`` and its current stream (``cuda`` and ``cuda:0`` are one
    device when device 0 is current)."""
    device = _normalized(device)
    key = (device.type, device.index, _stream_key(device))
    with _registry_lock:
        if key not in _registry:
            _registry[key] = Workspace(device)
        return _registry[key]


def forget():
    """Drop every workspace: the next launch on each (device, stream) allocates fresh zeroed
    buffers (counters zero, flags zero, epochs from 1), as in a new process. A prepared call
    keeps the workspace it was built over, so forget those too (:func:`kernels.prepared.forget`)
    for a state that no earlier launch can reach (the conformance suite does, between cases)."""
    with _registry_lock:
        _registry.clear()
