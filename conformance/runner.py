"""Running cases and mutants: one CaseResult per (kernel, case), with every check's finding.

:func:`conformance.checking.check_case` checks one case in this process. :func:`run_cases`,
:func:`run_mutants` and
:func:`run_parallel` check each case in a worker process (:mod:`conformance.isolation`), so that
a kernel that crashes or hangs fails its case and the run goes on.
"""

import dataclasses
import functools
import importlib

from .checking import CaseResult
from .failures import one_line
from .harness import KernelUnderTest
from .isolation import Task, WorkerPool

# The factory of the project's own kernels (see :func:`run_cases`).
REFERENCE = "conformance.adapter:reference"


def load_kernel(factory):
    """The :class:`~conformance.harness.KernelUnderTest` that ``factory``, a ``"module:function"``
    string, builds; ValueError with one line when it is not such a string, its module cannot be
    imported, the function is missing or fails, or it returns anything else."""
    module_name, _, function = factory.partition(":")
    if not module_name or not function.isidentifier():
        raise ValueError("expected module:function")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module may fail in any way while it loads
        raise ValueError(f"cannot import {module_name}: {one_line(exc)}") from None
    build = getattr(module, function, None)
    if not callable(build):
        raise ValueError(f"{module_name} has no function {function}")
    try:
        kut = build()
    except Exception as exc:
        raise ValueError(f"{function}() failed: {one_line(exc)}") from None
    if not isinstance(kut, KernelUnderTest):
        raise ValueError(f"{function}() returned a {type(kut).__name__}, not a KernelUnderTest")
    return kut


def mutant_kernel(name):
    """The KernelUnderTest of the mutant called ``name`` (a worker builds its own)."""
    from .mutants import MUTANTS, build

    for mutant in MUTANTS:
        if mutant.name == name:
            return build(mutant)
    raise ValueError(f"no mutant is called {name!r}")


def _run_isolated(tasks, device, jobs, determinism_runs, progress, hang_timeout):
    """The CaseResults of ``tasks``, in order, from ``jobs`` worker processes."""
    if jobs < 1 or not hang_timeout > 0:
        raise ValueError(f"need jobs >= 1 and hang_timeout > 0, not {jobs} and {hang_timeout}")
    with WorkerPool(device, jobs, determinism_runs, hang_timeout) as pool:
        return pool.run(tasks, progress)


def run_cases(
    cases, device, kernel=REFERENCE, determinism_runs=3, progress=None, jobs=1, hang_timeout=60.0
):
    """``cases`` against the kernel that ``kernel`` builds, each in a worker process.

    ``kernel`` is a factory of a :class:`~conformance.harness.KernelUnderTest`, called in each
    worker: a ``"module:function"`` string or a picklable (top-level) function. A kernel that
    fixes some options (``follows``) runs each case as it follows them (:func:`check_case`);
    :func:`conformance.cases.follow` drops the cases they make invalid, and repeats, beforehand.
    A case whose kernel crashes or makes no progress for ``hang_timeout`` seconds fails with an
    ``isolation`` finding; ``progress(result)`` is called as each case finishes.
    """
    if isinstance(kernel, str) and kernel.count(":") != 1:
        raise ValueError(f"kernel {kernel!r}: expected 'module:function'")
    if not (isinstance(kernel, str) or callable(kernel)):
        raise TypeError(f"kernel must be a factory of the kernel, not a {type(kernel).__name__}")
    tasks = [Task(kernel, case) for case in cases]
    return _run_isolated(tasks, device, jobs, determinism_runs, progress, hang_timeout)


def run_mutants(mutants, device, determinism_runs=3, progress=None, jobs=1, hang_timeout=60.0):
    """Each mutant on its case, built and checked in a worker process (see :func:`run_cases`)."""
    _, results = run_parallel((), mutants, device, jobs, determinism_runs, progress, hang_timeout)
    return results


def run_parallel(
    cases, mutants, device, jobs, determinism_runs=3, progress=None, hang_timeout=60.0
):
    """The reference kernels on ``cases`` and the ``mutants``, in ``jobs`` worker processes.

    Each worker compiles its own kernels, so compilation -- most of a GPU case's time -- runs
    on several CPU cores at once; each selects the Triton backend for ``device`` itself (the
    interpreter for "cpu"), whatever this process's environment says. A worker whose kernel
    crashes or hangs fails that case and is replaced. Results come back in the order given.
    """
    tasks = [Task(REFERENCE, case) for case in cases]
    tasks += [Task(functools.partial(mutant_kernel, m.name), m.case) for m in mutants]
    results = _run_isolated(tasks, device, jobs, determinism_runs, progress, hang_timeout)
    return results[: len(cases)], [
        MutantResult(m, r) for m, r in zip(mutants, results[len(cases) :])
    ]


@dataclasses.dataclass
class MutantResult:
    mutant: object
    result: CaseResult

    @property
    def caught(self):
        return not self.result.passed

    @property
    def expected_cause(self):
        return self.mutant.expected_cause

    @property
    def right_cause(self):
        """Whether the case's lead cause is the one the mutant's bug must be named by."""
        return self.result.cause == self.expected_cause

    def to_dict(self):
        return {
            "mutant": self.mutant.name,
            "description": self.mutant.description,
            "expected_cause": self.expected_cause,
            "caught": self.caught,
            "right_cause": self.right_cause,
            "causes": self.result.causes,
            "result": self.result.to_dict(),
        }
