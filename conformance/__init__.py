"""The conformance suite: proves the kernels do what refsim predicts, and says where they don't.

``python -m conformance --device cpu|cuda`` runs it; from Python, :func:`check_case` checks one
:class:`Case` against any :class:`KernelUnderTest` (see :mod:`conformance.adapter`).
"""

from .cases import Case, full_set, load_cases, quick_set
from .checks import CAUSES, KernelUnderTest
from .runner import CaseResult, check_case

__all__ = [
    "CAUSES",
    "Case",
    "CaseResult",
    "KernelUnderTest",
    "check_case",
    "full_set",
    "load_cases",
    "quick_set",
]
