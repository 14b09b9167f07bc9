"""Per-device, per-stream scratch buffers: partials, flags and counters.

Created lazily on first use (never at import), grown when a launch needs more, and kept per
(device, stream) so launches on different streams never share one. Flags hold the epoch of the
launch that set them: a new launch takes a new epoch instead of clearing them. Counters start
zeroed and every launch leaves them zeroed (the last program to use one resets it), so no launch
needs a zeroing launch before it.
"""

import threading

import torch

_EPOCH_LIMIT = 2**31 - 1


class Workspace:
    """Scratch buffers of one (device, stream)."""

    def __init__(self, device):
        self.device = device
        self._buffers = {}
        self._epoch = 0
        self.lock = threading.Lock()
        # Counts buffer (re)allocations: a launch prepared over older buffers must be rebuilt.
        self.generation = 0

    def buffer(self, name, numel, dtype):
        """A 1-D view of at least ``numel`` elements; flag buffers start zeroed."""
        current = self._buffers.get(name)
        if current is None or current.numel() < numel or current.dtype != dtype:
            current = torch.zeros(max(numel, 1), dtype=dtype, device=self.device)
            self._buffers[name] = current
            self.generation += 1
        return current if current.numel() == max(numel, 1) else current[: max(numel, 1)]

    def held(self, name):
        """The whole buffer ``name`` as allocated (None before its first use)."""
        return self._buffers.get(name)

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
