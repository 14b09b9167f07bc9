"""Every call path a user's call can take is under conformance: the batched one-launch path,
repeated calls of a key and of new keys, graph replays (on a GPU), each with cases, coverage
features and a check that says so when it cannot run."""

import dataclasses
import os

import pytest
import torch

import kernels
from conformance.adapter import adapt, reference
from conformance.batched import batch_inputs, batched_operand, check_batched
from conformance.cases import (
    GPU_REQUIRED_FEATURES,
    PATH_CHECKS,
    REQUIRED_FEATURES,
    Case,
    case_paths,
    coverage,
    full_set,
    quick_set,
)
from conformance.harness import KernelUnderTest, launch
from conformance.inputs import integer_inputs
from conformance.isolation import check_fresh
from conformance.mutants import MUTANTS, mutants_for
from conformance.repeated import check_repeated_calls
from conformance.report import not_run

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="runs the kernels in the interpreter"
)
BATCHED = Case("batched", 40, 32, 40, "data_parallel", bias=False, batch=3)


def test_every_call_path_has_a_check_and_required_features():
    assert set(PATH_CHECKS) == set(kernels.CALL_PATHS)
    required = REQUIRED_FEATURES + GPU_REQUIRED_FEATURES
    for path in PATH_CHECKS:
        assert any(f.startswith(f"path:{path}/") for f in required), path


def test_the_full_set_reaches_the_gpu_paths_and_the_quick_set_claims_none():
    assert set(GPU_REQUIRED_FEATURES) <= coverage(full_set(132), gpu=True)
    assert not set(GPU_REQUIRED_FEATURES) & coverage(quick_set())


def test_without_its_cases_a_path_misses_its_features():
    one_product = [case for case in quick_set() if not case.batch]
    missing = set(REQUIRED_FEATURES) - coverage(one_product)
    assert "path:batched/data_parallel/no-bias/bands=1" in missing
    assert "path:batched-prepared/data_parallel/no-bias/bands=1" in missing


def test_case_paths():
    assert case_paths(BATCHED) == ("batched", "batched-prepared")
    persistent = Case("p", 64, 64, 40, "persistent")
    assert case_paths(persistent) == ("first", "traced", "prepared")
    assert case_paths(persistent, gpu=True)[-1] == "graph"
    waits = Case("w", 64, 64, 80, fixup="owner-waits", cus=3)
    assert "graph" not in case_paths(waits, gpu=True)  # a graph replays one flag epoch


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"bias": True}, "takes no bias"),
        ({"batch": 0, "broadcast": "a"}, "broadcast needs a batch"),
        ({"broadcast": "c"}, "broadcast must be"),
        ({"batch": -1}, "batch must be"),
    ],
)
def test_bad_batched_cases_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(BATCHED, **fields)


def test_batched_operands_keep_layouts_and_broadcast():
    case = dataclasses.replace(BATCHED, broadcast="b", transpose_a=True, strided=True)
    a, b = batch_inputs(case, 0)
    assert a.shape == (3, 40, 40) and b.shape == (1, 40, 32)
    ta = batched_operand(a, True, 3, 1, 3, "fp32", "cpu")
    tb = batched_operand(b, False, 8, 1, 3, "fp32", "cpu")
    assert ta.shape == (3, 40, 40) and ta.stride()[1] == 1  # each product column-major
    assert ta.stride(0) == 41 * 43  # a line gap and padding between products
    assert tb.stride(0) == 0 and torch.equal(tb[2], torch.from_numpy(b[0]).float())
    assert torch.equal(ta[1], torch.from_numpy(a[1]).float())


def test_batched_cases_pass_on_the_project_kernels():
    for case in [c for c in quick_set() if c.batch]:
        result = check_fresh(reference(), case, "cpu")
        assert result.passed, result.findings
        assert [f.check for f in result.findings] == ["batched calls"]
        assert len(result.findings[0].reasons) == 3  # first, same key, other batch strides


def test_a_kernel_without_a_batched_path_is_not_run_and_says_so():
    kut = dataclasses.replace(reference(), run_batched=None)
    finding = check_batched(kut, BATCHED, BATCHED.config(), "cpu")
    assert (finding.passed, finding.ran) == (True, False)
    assert finding.reasons == ["not run: the kernel has no batched path"]


def test_graph_replay_is_not_run_off_a_gpu_and_the_report_says_so():
    case = Case("p", 64, 64, 40, "persistent")
    result = check_fresh(reference(), case, "cpu")
    graph = [f for f in result.findings if f.check == "graph replay"]
    assert [(f.passed, f.ran) for f in graph] == [(True, False)]
    assert not_run([result]) == ["graph replay on 1 case: not run: CUDA graphs need a CUDA device"]
    assert {f.check for f in result.findings} >= {
        PATH_CHECKS[path] for path in case_paths(case, gpu=True)
    }


def test_gpu_only_mutants_are_left_out_off_a_gpu():
    gpu_only = [m for m in MUTANTS if m.gpu_only]
    assert gpu_only and not set(gpu_only) & set(mutants_for("cpu"))
    assert set(mutants_for("cuda")) == set(MUTANTS)


def test_a_repeated_call_that_keeps_an_earlier_operand_is_named():
    kept = {}

    def run(config, a, b, bias=None, out=None, trace=False):
        if not trace:  # an untraced call of a key serves the first call's A
            a = kept.setdefault((a.shape, a.stride()), a.clone())
        return kernels.run(config, a, b, bias, out=out, trace=trace)

    kut = KernelUnderTest("keeps-a", run)
    case = Case("p", 64, 64, 40, "persistent")
    config = case.config()
    launch(kut, config, case, integer_inputs(case), "cpu", trace=False)  # the first call
    finding = check_repeated_calls(kut, case, config, "cpu")
    assert finding.cause == "operand of an earlier call"
    assert "with A of the exact check's call" in finding.reasons[0]
    assert "(call 1:" in finding.reasons[0]


def test_an_adapted_kernel_brings_its_batched_path():
    from kernels.launch import run_batched

    def launch(config, a, b, bias, out, worklog):
        kernels.run(config, a, b, bias, out=out)

    kut = adapt("mine", launch, follows={"strategy": "data_parallel"}, batched=run_batched)
    finding = check_batched(kut, BATCHED, BATCHED.config(), "cpu")
    assert (finding.passed, finding.ran) == (True, True), finding.reasons
    assert adapt("mine", launch, follows={}).run_batched is None
    assert adapt("mine", launch, follows={}, graphs=True).capture is not None


@pytest.mark.parametrize(
    "arguments, message",
    [({"batched": 3}, "batched must be a function"), ({"graphs": "yes"}, "graphs must be")],
)
def test_adapt_refuses_a_batched_path_or_graphs_it_cannot_use(arguments, message):
    with pytest.raises(TypeError, match=message):
        adapt("mine", lambda *args: None, follows={}, **arguments)
