"""refsim: a reference simulator of tiled GEMM on GPUs.

``refsim.simulate(M, N, K)`` predicts which program computes which tile and K-range when, how
Stream-K partial sums are reduced, how long it takes, and (given input arrays) the exact value
of every partial buffer and of the output.

The simulator (and SimPy) load on first use, so ``from refsim import tiling`` -- what the
kernels import -- stays free of them.
"""

import importlib
import importlib.metadata

from .config import FIXUPS, STRATEGIES, GemmConfig
from .hardware import DEFAULT_DEVICE, PROFILES, HardwareProfile, get_profile
from .trace import WorkRecord

try:
    __version__ = importlib.metadata.version("refsim")
except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "unknown"

__all__ = [
    "DEFAULT_DEVICE",
    "FIXUPS",
    "PROFILES",
    "STRATEGIES",
    "Calibration",
    "Deadlock",
    "Fixup",
    "GemmConfig",
    "HardwareProfile",
    "SimResult",
    "WorkRecord",
    "__version__",
    "build_plan",
    "get_profile",
    "simulate",
]

_LAZY = {
    "simulate": "api",
    "Calibration": "calibration",
    "SimResult": "result",
    "Deadlock": "result",
    "Fixup": "result",
    "Simulation": "simulator",
    "build_plan": "plan",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError:
        raise AttributeError(f"module 'refsim' has no attribute {name!r}") from None
