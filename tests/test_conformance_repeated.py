"""Repeated calls (conformance/repeated.py) and each case's fresh state (conformance/isolation.py's
check_fresh): later calls of a key and another layout of the same shape give refsim's output,
and what a case finds does not depend on the cases checked before it in the same process."""

import dataclasses

import pytest
import torch

from conformance.adapter import reference
from conformance.cases import Case, quick_set
from conformance.checking import check_case
from conformance.inputs import as_tensors, integer_inputs
from conformance.isolation import check_fresh
from conformance.mutants import MUTANTS, build
from conformance.repeated import (
    A_REPADDING,
    OFFSET_BYTES,
    check_repeated_calls,
    misaligned,
    other_strides,
)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
REPEATED_MUTANTS = ("prepared-keeps-output", "prepared-key-without-a-strides")


def _verdicts(result):
    """What a case found, without timings: each finding's check, verdict, reasons and cause."""
    return [(f.check, f.passed, f.reasons, f.cause) for f in result.findings]


@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("strided", [False, True])
def test_other_strides_keeps_a_values_and_alignment_in_new_memory(transpose_a, strided):
    case = Case("layout", 24, 16, 20, transpose_a=transpose_a, strided=strided, dtype="fp16")
    a, b, bias = as_tensors(case, *integer_inputs(case), "cpu")
    moved, same_b, same_bias = other_strides(case)(a, b, bias)
    assert torch.equal(moved, a) and same_b is b and same_bias is bias
    line = 0 if transpose_a else 1  # the dimension along a stored line
    assert moved.stride(line) == 1 and moved.stride(1 - line) == a.stride(1 - line) + A_REPADDING
    assert moved.storage_offset() * moved.element_size() == OFFSET_BYTES
    assert (moved.data_ptr() % 16 == 0) == (a.data_ptr() % 16 == 0)
    assert moved.data_ptr() != a.data_ptr()


@pytest.mark.parametrize("transpose_a", [False, True])
def test_misaligned_keeps_a_values_and_strides_one_element_in(transpose_a):
    case = Case("layout", 24, 16, 20, transpose_a=transpose_a, strided=True, dtype="fp16")
    a, b, bias = as_tensors(case, *integer_inputs(case), "cpu")
    moved, same_b, same_bias = misaligned(case)(a, b, bias)
    assert torch.equal(moved, a) and same_b is b and same_bias is bias
    assert moved.stride() == a.stride() and moved.storage_offset() == 1
    assert moved.data_ptr() % 16 != 0


def test_the_reference_kernels_pass_every_repeated_call():
    case = next(c for c in quick_set() if c.name.startswith("owner-waits-waves"))
    kut = reference()
    kut.reset()
    finding = check_repeated_calls(kut, case, case.config(), DEVICE)
    assert finding.passed, finding.reasons
    assert [reason.split(",")[0] for reason in finding.reasons] == ["call 1", "call 2", "call 3"]


@pytest.mark.parametrize("name", REPEATED_MUTANTS)
def test_only_the_repeated_calls_catch_each_prepared_path_mutant(name):
    """Each mutant of the prepared path passes every check of first calls, and the repeated
    calls name its cause and the call that showed it."""
    mutant = next(m for m in MUTANTS if m.name == name)
    result = check_fresh(build(mutant), mutant.case, DEVICE)
    failed = [f for f in result.findings if not f.passed]
    assert [f.check for f in failed] == ["repeated calls"], [(f.check, f.reasons) for f in failed]
    assert result.cause == mutant.expected_cause
    call = "call 1" if name == "prepared-keeps-output" else "call 2"
    assert f"({call}: " in failed[0].reasons[0]


def test_cases_find_the_same_in_either_order():
    cases = [c for c in quick_set() if c.name.startswith(("split_k-row", "owner-waits-row"))]
    kut = reference()
    forward = [_verdicts(check_fresh(kut, case, DEVICE, 2)) for case in cases]
    backward = [_verdicts(check_fresh(kut, case, DEVICE, 2)) for case in reversed(cases)]
    assert forward == backward[::-1]
    assert all(passed for verdicts in forward for _, passed, _, _ in verdicts)


def test_a_larger_earlier_case_cannot_hide_a_write_past_the_counters():
    """ws-reset-past-end zeroes the counter one past the last. After a case with more
    counters, the workspace's counters are longer than this case's, so that write lands inside
    them and no guard slot sees it -- unless the case starts from fresh workspaces."""
    mutant = next(m for m in MUTANTS if m.name == "ws-reset-past-end")
    kut = build(mutant)
    many_counters = dataclasses.replace(mutant.case, name="many-counters", cus=8, xcds=8)
    assert many_counters.config().num_counters > mutant.case.config().num_counters

    check_fresh(kut, many_counters, DEVICE, 2)
    stale = check_case(kut, mutant.case, DEVICE, 2)
    assert stale.passed  # the order dependence a fresh state removes

    check_fresh(kut, many_counters, DEVICE, 2)
    fresh = check_fresh(kut, mutant.case, DEVICE, 2)
    assert fresh.cause == mutant.expected_cause
    kut.reset()
    assert _verdicts(check_case(kut, mutant.case, DEVICE, 2)) == _verdicts(fresh)
