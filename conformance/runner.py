"""Running cases and mutants: one CaseResult per (kernel, case), with every check's finding.

:func:`check_case` checks one case in this process. :func:`run_cases`, :func:`run_mutants` and
:func:`run_parallel` check each case in a worker process (:mod:`conformance.isolation`), so that
a kernel that crashes or hangs fails its case and the run goes on.
"""

import dataclasses
import functools
import importlib
import time

import torch

from .adapter import options_for
from .batched import check_batched
from .checks import (
    check_accuracy,
    check_addition_order,
    check_determinism,
    check_epilogue,
    check_exact,
    check_order,
    check_partials,
    check_random_bits,
    check_stray_writes,
    check_work_stealing_tail,
)
from .diagnosis import CAUSE_RANK
from .failures import launch_failure, one_line
from .graph import check_graph_replay
from .harness import KernelUnderTest, launch
from .inputs import integer_inputs
from .isolation import Task, WorkerPool
from .repeated import check_repeated_calls
from .scratch import check_scratch_guards
from .synchronisation import check_synchronisation

# The factory of the project's own kernels (see :func:`run_cases`).
REFERENCE = "conformance.adapter:reference"


@dataclasses.dataclass
class CaseResult:
    kernel: str
    case: object
    findings: list
    seconds: float

    @property
    def passed(self):
        return all(f.passed for f in self.findings)

    @property
    def causes(self):
        """Every distinct cause the findings name, lead cause first (:data:`CAUSES` order)."""
        named = {cause for finding in self.findings for cause in finding.causes}
        return sorted(named, key=CAUSE_RANK.__getitem__)

    @property
    def cause(self):
        """The lead cause, or None when everything passed."""
        return next(iter(self.causes), None)

    def to_dict(self):
        return {
            "kernel": self.kernel,
            "case": self.case.to_dict(),
            "passed": self.passed,
            "cause": self.cause,
            "causes": self.causes,
            "seconds": round(self.seconds, 3),
            "findings": [dataclasses.asdict(f) for f in self.findings],
        }


def warm_up(kut, case, config, device):
    """One launch, so that the kernel's scratch memory exists and can be poisoned (inside the
    harness's guard bands: a kernel writing outside the matrix must not corrupt memory). Traced,
    so that if it hangs, its event log says who waits on whom."""
    launch(kut, config, case, integer_inputs(case), device, trace=True, out_dtype=torch.float32)


class _Findings(list):
    """A case's findings, each announced as it is added: a check finished."""

    def __init__(self, announce):
        super().__init__()
        self._announce = announce

    def append(self, finding):
        super().append(finding)
        self._announce(finding)

    def extend(self, findings):
        for finding in findings:
            self.append(finding)

    def __iadd__(self, findings):
        self.extend(findings)
        return self


def check_case(kut, case, device, determinism_runs=3, on_finding=None):
    """Every check of one case against one kernel; an exception is a failed finding, not an abort.

    ``on_finding(finding)``, if given, is called as each check finishes (a worker's progress).
    A kernel that fixes some options (``kut.follows``) runs the case as it follows them
    (:meth:`conformance.cases.Case.following`), and the result holds that case.
    """
    start = time.perf_counter()
    if kut.follows:
        case = case.following(options_for(kut.follows, case))
    config = case.config()
    findings = _Findings(on_finding or (lambda finding: None))
    if case.batch:  # the batched path alone: the one-product paths have cases of their own
        try:
            findings.append(check_batched(kut, case, config, device))
        except Exception as exc:
            findings.append(launch_failure(exc, case, config))
        return CaseResult(kut.name, case, list(findings), time.perf_counter() - start)
    try:
        if kut.poison is not None:  # create the scratch memory, so that it can be poisoned
            warm_up(kut, case, config, device)
        exact, run, tensors, sim = check_exact(kut, case, config, device)
        findings.append(exact)
        for stray in check_stray_writes(kut, case, config, run, sim):
            findings.append(stray)
        scratch_guards = check_scratch_guards(run)  # counters, flags, scratch: conformance.scratch
        if scratch_guards is not None:
            findings.append(scratch_guards)
        partials = check_partials(kut, config, run, sim, tensors)
        # records are judged against the work when the output and partials are right
        work_right = exact.passed and (partials is None or partials.passed)
        if getattr(run, "records", None) is not None:
            findings.append(check_order(config, run, sim, work_right))
            tail = check_work_stealing_tail(config, run, work_right)
            if tail is not None:
                findings.append(tail)
        if partials is not None:
            findings.append(partials)
        synchronisation = check_synchronisation(config, run)
        if synchronisation is not None:
            findings.append(synchronisation)
        exact_wrong = [tile for group in exact.groups or () for tile in group.tiles]
        for finding in (
            check_addition_order(kut, case, config, device, exact_wrong),
            check_epilogue(kut, case, config, device, exact_wrong),
        ):
            if finding is not None:
                findings.append(finding)
        random_bits = check_random_bits(kut, case, config, device, exact_wrong)
        if random_bits is not None:
            findings.append(random_bits)
        if not (config.strategy == "streamk" and config.fixup == "atomic"):
            determinism = check_determinism(
                kut, case, config, device, determinism_runs, exact_wrong
            )
            findings.append(determinism)
        findings.append(check_accuracy(kut, case, config, device))
        # later calls of a key (the prepared path), and another key of the same shape
        findings.append(check_repeated_calls(kut, case, config, device))
        findings.append(check_graph_replay(kut, case, config, device))
    except Exception as exc:  # a kernel that raises is a finding of its own
        findings.append(launch_failure(exc, case, config))
    return CaseResult(kut.name, case, list(findings), time.perf_counter() - start)


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
