"""Running cases and mutants: one CaseResult per (kernel, case), with every check's finding."""

import dataclasses
import time

from .backend import select_backend
from .checks import (
    Finding,
    check_accuracy,
    check_addition_order,
    check_determinism,
    check_epilogue,
    check_exact,
    check_memory_order,
    check_order,
    check_partials,
)


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
        return {
            "kernel": self.kernel,
            "case": self.case.to_dict(),
            "passed": self.passed,
            "cause": self.cause,
            "seconds": round(self.seconds, 3),
            "findings": [dataclasses.asdict(f) for f in self.findings],
        }


def warm_up(kut, case, config, device):
    import torch

    from .inputs import as_tensors, integer_inputs

    a, b, bias = as_tensors(case, *integer_inputs(case), device)
    kut.run(
        config,
        a,
        b,
        bias,
        out=torch.empty((config.m, config.n), dtype=torch.float32, device=device),
    )


def check_case(kut, case, device, determinism_runs=3):
    """Every check of one case against one kernel; a crash is a failed finding, not an abort."""
    start = time.perf_counter()
    config = case.config()
    findings = []
    try:
        if kut.poison is not None:  # create the scratch memory, so that it can be poisoned
            warm_up(kut, case, config, device)
        exact, run, tensors, sim = check_exact(kut, case, config, device)
        findings.append(exact)
        if getattr(run, "records", None) is not None:
            findings.append(check_order(config, run, sim))
        partials = check_partials(kut, config, run, sim, tensors)
        if partials is not None:
            findings.append(partials)
        memory = check_memory_order(run)
        if memory is not None:
            findings.append(memory)
        for extra in (check_addition_order, check_epilogue):
            finding = extra(kut, case, config, device)
            if finding is not None:
                findings.append(finding)
        if not (config.strategy == "streamk" and config.fixup == "atomic"):
            findings.append(check_determinism(kut, case, config, device, determinism_runs))
        findings.append(check_accuracy(kut, case, config, device))
    except Exception as exc:  # a kernel that crashes or hangs up is a finding of its own
        findings.append(
            Finding("launch", False, [f"{type(exc).__name__}: {exc}"[:500]], "unclassified")
        )
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


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def run_parallel(cases, mutants, device, jobs, determinism_runs=3, progress=None):
    """The reference kernels on ``cases`` and the ``mutants``, in ``jobs`` worker processes.

    Each worker compiles its own kernels, so compilation -- most of a GPU case's time -- runs
    on several CPU cores at once; each selects the Triton backend for ``device`` itself (the
    interpreter for "cpu"), whatever this process's environment says. Results come back in the
    order given.
    """
    import concurrent.futures
    import multiprocessing
    import os

    context = multiprocessing.get_context("spawn")  # CUDA cannot follow a fork
    # Workers inherit the environment: share the cores out so that their numpy (BLAS) threads
    # -- refsim's predictions -- do not oversubscribe the machine.
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    saved = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(_THREAD_VARIABLES, threads))
    try:
        # A worker imports kernels only after choosing the backend as this process did.
        pool = concurrent.futures.ProcessPoolExecutor(
            jobs, mp_context=context, initializer=select_backend, initargs=(device,)
        )
        futures = [pool.submit(_reference_case, case, device, determinism_runs) for case in cases]
        futures += [
            pool.submit(_mutant_case, mutant, device, determinism_runs) for mutant in mutants
        ]
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    with pool:
        if progress is not None:
            for future in concurrent.futures.as_completed(futures):
                progress(future.result())
        results = [future.result() for future in futures]
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
        return self.expected_cause in self.result.causes

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


def run_mutants(mutants, device, determinism_runs=3, progress=None):
    from .mutants import build

    results = []
    for mutant in mutants:
        results.append(
            MutantResult(mutant, check_case(build(mutant), mutant.case, device, determinism_runs))
        )
        if progress is not None:
            progress(results[-1].result)
    return results
