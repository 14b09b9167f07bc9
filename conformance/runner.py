"""Running cases and mutants: one CaseResult per (kernel, case), with every check's finding."""

import dataclasses
import time

from .checks import (Finding, check_accuracy, check_determinism, check_exact, check_order,
                     check_partials)
from .memory_order import recording


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
        return [f.cause for f in self.findings if not f.passed and f.cause]

    @property
    def cause(self):
        """The first classified cause, or None when everything passed."""
        return next(iter(self.causes), None)

    def to_dict(self):
        return {"kernel": self.kernel, "case": self.case.to_dict(), "passed": self.passed,
                "cause": self.cause, "seconds": round(self.seconds, 3),
                "findings": [dataclasses.asdict(f) for f in self.findings]}


def _memory_order(kut, case, config, device):
    """Interpreter only: re-run traced while logging partial stores and flag publishes."""
    import torch

    from .inputs import as_tensors, integer_inputs

    if device != "cpu" or kut.scratch is None or config.strategy != "streamk":
        return None
    partials, flags = kut.scratch(torch.device(device))
    if partials is None or flags is None:
        return None
    a, b, bias = as_tensors(case, *integer_inputs(case), device)
    with recording(partials, flags) as log:
        kut.run(config, a, b, bias)
    bad = log.violations()
    if bad:
        return Finding("memory order", False,
                       [f"the programs at interpreter grid index {[i[0] for i in bad[:5]]} stored a "
                        "partial after publishing their flag"],
                       "flag set before its partial is stored")
    return Finding("memory order", True, [])


def warm_up(kut, case, config, device):
    import torch

    from .inputs import as_tensors, integer_inputs

    a, b, bias = as_tensors(case, *integer_inputs(case), device)
    kut.run(config, a, b, bias, out=torch.empty((config.m, config.n), dtype=torch.float32,
                                                device=device))


def check_case(kut, case, device, determinism_runs=3):
    """Every check of one case against one kernel; a crash is a failed finding, not an abort."""
    start = time.perf_counter()
    config = case.config()
    findings = []
    try:
        if kut.poison is not None:  # create the scratch memory, so that it can be poisoned
            warm_up(kut, case, config, device)
        exact, run, _, sim = check_exact(kut, case, config, device)
        findings.append(exact)
        if getattr(run, "records", None) is not None:
            findings.append(check_order(config, run, sim))
        partials = check_partials(kut, config, run, sim)
        if partials is not None:
            findings.append(partials)
        memory = _memory_order(kut, case, config, device)
        if memory is not None:
            findings.append(memory)
        if not (config.strategy == "streamk" and config.fixup == "atomic"):
            findings.append(check_determinism(kut, case, config, device, determinism_runs))
        findings.append(check_accuracy(kut, case, config, device))
    except Exception as exc:  # a kernel that crashes or hangs up is a finding of its own
        findings.append(Finding("launch", False, [f"{type(exc).__name__}: {exc}"[:500]],
                                "unclassified"))
    return CaseResult(kut.name, case, findings, time.perf_counter() - start)


def run_cases(kut, cases, device, determinism_runs=3, progress=None):
    results = []
    for case in cases:
        results.append(check_case(kut, case, device, determinism_runs))
        if progress is not None:
            progress(results[-1])
    return results


def _reference_case(case, device, determinism_runs):
    from .adapter import reference

    return check_case(reference(), case, device, determinism_runs)


def _mutant_case(mutant, device, determinism_runs):
    from .mutants import build

    return check_case(build(mutant), mutant.case, device, determinism_runs)


def run_parallel(cases, mutants, device, jobs, determinism_runs=3, progress=None):
    """The reference kernels on ``cases`` and the ``mutants``, in ``jobs`` worker processes.

    Each worker compiles its own kernels, so compilation -- most of a GPU case's time -- runs
    on several CPU cores at once. Results come back in the order given.
    """
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # CUDA cannot follow a fork
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        futures = [pool.submit(_reference_case, case, device, determinism_runs)
                   for case in cases]
        futures += [pool.submit(_mutant_case, mutant, device, determinism_runs)
                    for mutant in mutants]
        if progress is not None:
            for future in concurrent.futures.as_completed(futures):
                progress(future.result())
        results = [future.result() for future in futures]
    return results[:len(cases)], [MutantResult(m, r) for m, r in zip(mutants, results[len(cases):])]


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
        return self.expected_cause in self.result.causes

    def to_dict(self):
        return {"mutant": self.mutant.name, "description": self.mutant.description,
                "expected_cause": self.expected_cause, "caught": self.caught,
                "right_cause": self.right_cause, "causes": self.result.causes,
                "result": self.result.to_dict()}


def run_mutants(mutants, device, determinism_runs=3, progress=None):
    from .mutants import build

    results = []
    for mutant in mutants:
        results.append(MutantResult(mutant, check_case(build(mutant), mutant.case, device,
                                                       determinism_runs)))
        if progress is not None:
            progress(results[-1].result)
    return results
