"""Checking one case: every check of one case against one kernel, in this process.

:func:`check_case` runs the checks in order and gathers their findings in a
:class:`CaseResult`; :mod:`conformance.isolation` calls it in worker processes and
:mod:`conformance.runner` hands it cases and mutants.
"""

import dataclasses
import time

import torch

from .adapter import options_for
from .batched import check_batched
from .causes import CAUSE_RANK
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
from .failures import launch_failure
from .graph import check_graph_replay
from .harness import launch
from .inputs import integer_inputs
from .repeated import check_repeated_calls
from .scratch import check_scratch_guards
from .synchronisation import check_synchronisation


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


@dataclasses.dataclass
class CaseRun:
    """What the checks of one case share: the kernel, the case, its config and device, and
    what the exact check's traced run left for the checks after it (its run, input tensors,
    refsim's run and finding, and the partials' finding)."""

    kut: object
    case: object
    config: object
    device: str
    determinism_runs: int
    run: object = None
    tensors: tuple = ()
    sim: object = None
    exact: object = None
    partials: object = None

    @property
    def exact_wrong(self):
        """The tiles the exact check found wrong (the later checks leave them to it)."""
        return [tile for group in self.exact.groups or () for tile in group.tiles]


# Each step of a one-product case: ``(CaseRun) -> [Finding]``, in this order (the findings'
# order in a result). A step's name starts with "_step_" (conformance.failures skips it when it
# names the check that raised).
def _step_exact(c):
    if c.kut.poison is not None:  # create the scratch memory, so that it can be poisoned
        warm_up(c.kut, c.case, c.config, c.device)
    c.exact, c.run, c.tensors, c.sim = check_exact(c.kut, c.case, c.config, c.device)
    return [c.exact, *check_stray_writes(c.kut, c.case, c.config, c.run, c.sim)]


def _step_scratch_guards(c):
    return [check_scratch_guards(c.run)]  # counters, flags, scratch: conformance.scratch


def _step_records(c):
    c.partials = check_partials(c.kut, c.config, c.run, c.sim, c.tensors)
    if getattr(c.run, "records", None) is None:
        return []
    # records are judged against the work when the output and partials are right
    work_right = c.exact.passed and (c.partials is None or c.partials.passed)
    return [
        check_order(c.config, c.run, c.sim, work_right),
        check_work_stealing_tail(c.config, c.run, work_right),
    ]


def _step_partials(c):
    return [c.partials]


def _step_synchronisation(c):
    return [check_synchronisation(c.config, c.run)]


def _step_order_and_bits(c):
    arguments = (c.kut, c.case, c.config, c.device, c.exact_wrong)
    return [check_addition_order(*arguments), check_epilogue(*arguments)] + [
        check_random_bits(*arguments)
    ]


def _step_determinism(c):
    if c.config.protocol is not None and not c.config.protocol.deterministic:
        return []
    return [check_determinism(c.kut, c.case, c.config, c.device, c.determinism_runs, c.exact_wrong)]


def _step_accuracy(c):
    return [check_accuracy(c.kut, c.case, c.config, c.device)]


def _step_later_calls(c):
    """Later calls of a key (the prepared path), other keys of the same shape, graph replays."""
    return [
        check_repeated_calls(c.kut, c.case, c.config, c.device),
        check_graph_replay(c.kut, c.case, c.config, c.device),
    ]


def _step_batched(c):
    return [check_batched(c.kut, c.case, c.config, c.device)]


ONE_PRODUCT_STEPS = (
    _step_exact,
    _step_scratch_guards,
    _step_records,
    _step_partials,
    _step_synchronisation,
    _step_order_and_bits,
    _step_determinism,
    _step_accuracy,
    _step_later_calls,
)
# A batched case runs the batched path alone: the one-product paths have cases of their own.
BATCHED_STEPS = (_step_batched,)


def check_case(kut, case, device, determinism_runs=3, on_finding=None):
    """Every check of one case against one kernel (:data:`ONE_PRODUCT_STEPS`, or
    :data:`BATCHED_STEPS` for a batched case); an exception is a failed finding, not an abort.

    ``on_finding(finding)``, if given, is called as each check finishes (a worker's progress).
    A kernel that fixes some options (``kut.follows``) runs the case as it follows them
    (:meth:`conformance.cases.Case.following`), and the result holds that case.
    """
    start = time.perf_counter()
    if kut.follows:
        case = case.following(options_for(kut.follows, case))
    config = case.config()
    findings = []
    announce = on_finding or (lambda finding: None)
    shared = CaseRun(kut, case, config, device, determinism_runs)
    try:
        for step in BATCHED_STEPS if case.batch else ONE_PRODUCT_STEPS:
            for finding in step(shared):
                if finding is not None:  # a check that does not apply gives None
                    findings.append(finding)
                    announce(finding)
    except Exception as exc:  # a kernel that raises is a finding of its own
        failure = launch_failure(exc, case, config)
        findings.append(failure)
        announce(failure)
    return CaseResult(kut.name, case, findings, time.perf_counter() - start)
