"""Each case runs in a worker process: a kernel that crashes or hangs fails its own case, with the
cause named, and the run goes on with the other cases in order."""

import faulty_kernels
import pytest
import torch

import kernels
import refsim
from conformance import Case
from conformance.__main__ import main
from conformance.adapter import reference
from conformance.checks import Finding
from conformance.harness import POISON
from conformance.isolation import WORD_GRACE_S
from conformance.mutants import MUTANTS
from conformance.runner import run_cases, run_mutants
from kernels.workspace import workspace_for

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# The faulty kernels misbehave on the case FAULTY_N wide only; torch computes the others exactly.
CASES = [
    Case("before", 16, 32, 16, strategy="persistent"),
    Case("faulty", 16, faulty_kernels.FAULTY_N, 16, strategy="persistent"),
    Case("after", 32, 32, 32, strategy="persistent"),
    Case("last", 16, 64, 16, strategy="persistent"),
]


def _run(kernel, jobs=1, hang_timeout=60.0):
    """The results of CASES, and the cases in the order their results were reported."""
    reported = []
    results = run_cases(
        CASES,
        DEVICE,
        kernel,
        determinism_runs=2,
        progress=lambda result: reported.append(result.case.name),
        jobs=jobs,
        hang_timeout=hang_timeout,
    )
    return results, reported


def _only_the_faulty_case_failed(results, reported, kernel):
    assert [r.case.name for r in results] == [c.name for c in CASES]
    assert sorted(reported) == sorted(c.name for c in CASES)
    assert [r.passed for r in results] == [c.n != faulty_kernels.FAULTY_N for c in CASES], [
        r.findings for r in results
    ]
    assert {r.kernel for r in results} == {kernel}
    return results[1]


@pytest.mark.parametrize(
    ("factory", "jobs", "signal_name"),
    [(faulty_kernels.aborting, 1, "6 (SIGABRT)"), (faulty_kernels.segfaulting, 2, "11 (SIGSEGV)")],
)
def test_a_crashing_kernel_fails_its_case_and_the_others_pass(factory, jobs, signal_name):
    results, reported = _run(factory, jobs=jobs)
    faulty = _only_the_faulty_case_failed(results, reported, factory.__name__)
    assert faulty.cause == "kernel crashed"
    assert faulty.findings == [
        Finding("isolation", False, [f"the kernel crashed: signal {signal_name}"], "kernel crashed")
    ]


@pytest.mark.parametrize(
    ("factory", "name", "detail"),
    [
        ("faulty_kernels:sleeping", "sleeping", " in check exact"),
        ("faulty_kernels:stuck_on_a_flag", "stuck-on-a-flag", f": {faulty_kernels.STUCK_WAITS}"),
    ],
)
def test_a_hung_kernel_fails_its_case_with_what_it_waits_on(factory, name, detail):
    """The worker's watchdog reports the hang with who waits on whom, when the kernel package
    can say, else the check it is stuck in."""
    results, reported = _run(factory, hang_timeout=3)
    faulty = _only_the_faulty_case_failed(results, reported, name)
    assert faulty.cause == "kernel hung"
    assert faulty.findings[-1].check == "isolation"
    assert faulty.findings[-1].reasons == [f"no progress for 3 s{detail}"]


@pytest.mark.slow
def test_a_worker_that_cannot_report_its_hang_is_killed():
    """Native code holding the GIL stops the watchdog too: the parent kills the silent worker."""
    results, reported = _run(faulty_kernels.gil_holding, hang_timeout=2)
    faulty = _only_the_faulty_case_failed(results, reported, "gil-holding")
    assert faulty.cause == "kernel hung"
    assert faulty.findings[-1].reasons == ["no progress for 2 s, and no word from the worker"]
    assert 2 + WORD_GRACE_S <= faulty.seconds < 2 + WORD_GRACE_S + 10


def test_a_mutant_is_built_and_caught_in_a_worker():
    mutant = next(m for m in MUTANTS if m.name == "bias-by-row")
    [result] = run_mutants([mutant], DEVICE, determinism_runs=2)
    assert result.result.kernel == "mutant:bias-by-row"
    assert result.caught and result.right_cause, result.result.findings


def test_a_kernel_is_given_as_a_factory_that_a_worker_can_import():
    """A KernelUnderTest itself cannot be sent to a worker; a factory is named "module:function"."""
    with pytest.raises(TypeError, match="factory"):
        run_cases(CASES, DEVICE, reference())
    with pytest.raises(ValueError, match="module:function"):
        run_cases(CASES, DEVICE, "faulty_kernels.aborting")


@pytest.mark.parametrize("timeout", ["0", "-1", "nan"])
def test_the_cli_refuses_a_hang_timeout_not_above_zero(capsys, timeout):
    code = main(["--device", "cpu", "--hang-timeout", timeout])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "conformance: error: --hang-timeout must be above 0 seconds"
    ]


def test_the_cli_refuses_a_hang_timeout_that_is_not_a_number(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--device", "cpu", "--hang-timeout", "soon"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert "argument --hang-timeout: invalid float value: 'soon'" in err


@pytest.mark.gpu
def test_cuda_and_cuda0_name_one_workspace():
    """Poisoning "cuda" poisons the workspace a launch on cuda:0 tensors uses: a partial slot
    that the launch leaves unused still holds POISON."""
    config = Case(
        "unused-slots", 64, 64, 80, cus=3, fixup="owner-waits", options=(("sk_hybrid", "one-wave"),)
    ).config()
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(64, 80, generator=generator).to("cuda:0")
    b = torch.randn(80, 64, generator=generator).to("cuda:0")
    assert workspace_for("cuda") is workspace_for("cuda:0") is workspace_for(a.device)
    kernels.run(config, a, b, trace=True)  # creates the workspace's partials
    reference().poison("cuda")
    run = kernels.run(config, a, b, trace=True)
    sim = refsim.simulate(config, a=a.double().cpu().numpy(), b=b.double().cpu().numpy())
    used = {kernels.partial_slot(config, p.program, p.tile) for p in sim.partials}
    unused = sorted(set(range(run.partials.shape[0])) - used)
    assert used and unused
    assert all(bool((run.partials[slot] == POISON).all()) for slot in unused), unused
