"""The conformance suite: proves the kernels do what refsim predicts, and says where they don't.

``python -m conformance --device cpu|cuda`` runs it; from Python, :func:`check_case` checks one
:class:`Case` against any :class:`KernelUnderTest` (see :mod:`conformance.adapter`). A kernel
written elsewhere is adapted with :func:`adapt` and records its work with
:mod:`conformance.worklog`; ``python -m conformance --kernel module:factory`` checks it.

Layers, each importing only those before it: :mod:`~conformance.causes` (the
:class:`Cause` enum, importing nothing), :mod:`~conformance.inputs` and
:mod:`~conformance.cases` (data), :mod:`~conformance.harness` (launching a kernel under test,
expected outputs), :mod:`~conformance.diagnosis` (causes), :mod:`~conformance.checks`,
:mod:`~conformance.runner` (cases and mutants), :mod:`~conformance.report`.

The names below are imported on first use, so that importing the package loads no kernel:
``python -m conformance`` picks the Triton backend (:mod:`conformance.backend`) first.
"""

import importlib

_HOMES = {
    "CAUSES": "causes",
    "Cause": "causes",
    "Case": "cases",
    "CaseResult": "checking",
    "KernelUnderTest": "harness",
    "WorkLog": "worklog",
    "adapt": "adapter",
    "check_case": "checking",
    "full_set": "cases",
    "load_cases": "cases",
    "quick_set": "cases",
}

__all__ = sorted(_HOMES)


def __getattr__(name):
    if name not in _HOMES:
        raise AttributeError(f"module 'conformance' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value
    return value
