"""Kernels under test that crash or hang on one shape, built in worker processes by the isolation
tests (tests/test_conformance_isolation.py) through these factories.

Each computes ``a @ b + bias`` in fp32 with torch (exact on the suite's integer inputs) and
misbehaves only when the output is :data:`FAULTY_N` columns wide, so one case fails among others.
"""

import ctypes
import os
import signal
import sys
import threading
import types

from conformance import KernelUnderTest

FAULTY_N = 24

# What the stuck kernel's package says about its waits, as kernels.records.describe_waits would.
STUCK_WAITS = "program 12 waits on flag 13 (epoch 5)"


def _faulty(name, fault):
    def run(config, a, b, bias=None, out=None, trace=False):
        if config.n == FAULTY_N:
            fault()
        out.copy_(a.float() @ b.float() + (0 if bias is None else bias.float()))
        return types.SimpleNamespace(output=out)

    return KernelUnderTest(name, run)


def aborting():
    return _faulty("aborting", os.abort)


def segfaulting():
    return _faulty("segfaulting", lambda: os.kill(os.getpid(), signal.SIGSEGV))


def sleeping():
    """Waits forever, releasing the GIL: the worker's watchdog can report it."""
    return _faulty("sleeping", lambda: threading.Event().wait())


def stuck_on_a_flag():
    """Waits forever, inside a kernel package whose ``records.describe_waits`` names the wait."""
    records = types.ModuleType("stuck_kernels.records")
    records.describe_waits = lambda: STUCK_WAITS
    sys.modules[records.__name__] = records
    return _faulty("stuck-on-a-flag", lambda: threading.Event().wait())


def gil_holding():
    """Blocks forever in C with the GIL held (libc's pause() through a ctypes.PyDLL): the
    watchdog thread cannot run, so only the parent can tell."""
    return _faulty("gil-holding", lambda: ctypes.PyDLL(None).pause())
