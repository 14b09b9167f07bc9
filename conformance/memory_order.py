"""Memory-order check under Triton's interpreter: no flag is published before its partial.

The interpreter runs one program at a time, so a kernel that sets a flag before storing the
partial it guards still computes the right numbers there; on a GPU the reader can see the flag
first and load a stale partial. This check records, per program, the order of its stores into
the partial workspace and its atomics on the flags, and reports any partial store that comes
after the same program published a flag. It wraps the interpreter's store and atomic
primitives for the duration of one launch (interpreter only).
"""

import contextlib

import numpy as np


class MemoryOrderLog:
    """Per-program events: "store" into ``partials``, "flag" for an exchange (publish) on ``flags``.

    Atomic adds on the flags are waits (reads), not publishes, and are not recorded.
    """

    def __init__(self, partials, flags):
        self.partial_range = (partials.data_ptr(), partials.data_ptr()
                              + partials.numel() * partials.element_size())
        self.flag_range = (flags.data_ptr(), flags.data_ptr() + flags.numel() * flags.element_size())
        self.events = {}

    def _in(self, bounds, addresses):
        addresses = np.asarray(addresses, dtype=np.uint64).ravel()
        return bool(np.any((addresses >= bounds[0]) & (addresses < bounds[1])))

    def record(self, program, kind, addresses):
        bounds = self.partial_range if kind == "store" else self.flag_range
        if self._in(bounds, addresses):
            self.events.setdefault(program, []).append(kind)

    def violations(self):
        """Programs that stored a partial after publishing a flag."""
        found = []
        for program, events in sorted(self.events.items()):
            if "flag" in events and "store" in events[events.index("flag"):]:
                found.append(program)
        return found


@contextlib.contextmanager
def recording(partials, flags):
    """Log partial stores and flag atomics of every program while the block runs."""
    from triton._C.libtriton import ir
    from triton.runtime import interpreter

    builder_type = type(interpreter.interpreter_builder)
    log = MemoryOrderLog(partials, flags)
    original_store = builder_type.create_store
    original_rmw = builder_type.create_atomic_rmw

    def create_store(self, ptr, val, mask, *args, **kwargs):
        log.record(tuple(self.grid_idx), "store", ptr.data[mask.data] if mask is not None else ptr.data)
        return original_store(self, ptr, val, mask, *args, **kwargs)

    def create_atomic_rmw(self, rmw_op, ptr, val, mask, *args, **kwargs):
        if rmw_op == ir.ATOMIC_OP.XCHG:
            log.record(tuple(self.grid_idx), "flag", ptr.data)
        return original_rmw(self, rmw_op, ptr, val, mask, *args, **kwargs)

    builder_type.create_store = create_store
    builder_type.create_atomic_rmw = create_atomic_rmw
    try:
        yield log
    finally:
        builder_type.create_store = original_store
        builder_type.create_atomic_rmw = original_rmw
