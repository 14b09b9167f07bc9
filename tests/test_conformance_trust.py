"""Checks that trust nothing the kernel says about itself: determinism compares every run with
refsim, one program publishes each flag per launch, trace records are judged against the
kernel's own output, an output added into without being initialised and a cast in the wrong
rounding mode are named, and no unexplained finding is bare. Kernels here are torch functions
that compute the product and break it in one known way, or refsim's plan edited by hand."""

import types

import numpy as np
import pytest
import torch

import refsim
from conformance.cases import Case
from conformance.checks import (
    check_determinism,
    check_epilogue,
    check_exact,
    check_order,
    check_work_stealing,
    misdescribed_work,
)
from conformance.diagnosis import CAUSES, round_directed
from conformance.harness import KernelUnderTest
from conformance.synchronisation import check_synchronisation
from kernels.dtypes import dtype_name

DEVICE = "cpu"


def torch_kernel(name, compute):
    """A kernel whose ``compute(config, out, a, b, bias, call)`` (float64 inputs, ``call`` the
    launch's number from 0) fills the output; returns nothing but ``output``."""
    calls = []

    def run(config, a, b, bias=None, out=None, trace=False):
        bias64 = None if bias is None else bias.double()
        compute(config, out, a.double(), b.double(), bias64, len(calls))
        calls.append(None)
        return types.SimpleNamespace(output=out)

    return KernelUnderTest(name, run)


def product(a, b, bias):
    return a @ b + (0 if bias is None else bias)


# -- 1. determinism compares with refsim ---------------------------------------------------


def test_runs_that_never_write_fail_determinism_as_tiles_never_written():
    case = Case("silent", 32, 32, 32, "persistent")
    kernel = torch_kernel("silent", lambda config, out, a, b, bias, call: None)
    finding = check_determinism(kernel, case, case.config(), DEVICE, 3)
    assert not finding.passed
    assert finding.cause == "tile never written"
    assert "nondeterminism" not in finding.causes


def test_runs_that_write_nothing_after_the_first_are_caught_on_the_later_run():
    def first_call_only(config, out, a, b, bias, call):
        if call == 0:
            out.copy_(product(a, b, bias))

    case = Case("first-only", 32, 32, 32, "persistent")
    finding = check_determinism(
        torch_kernel("first", first_call_only), case, case.config(), DEVICE, 3
    )
    assert finding.cause == "tile never written"
    assert "(run 1, programs in a shuffled order)" in finding.reasons[0]


def test_a_wrong_run_is_diagnosed_tile_by_tile_not_called_nondeterministic():
    def bias_twice(config, out, a, b, bias, call):
        out.copy_(product(a, b, bias) + bias)

    case = Case("bias-twice", 32, 32, 32, "persistent")
    finding = check_determinism(torch_kernel("bias", bias_twice), case, case.config(), DEVICE, 2)
    assert finding.cause == "bias applied more than once"


def test_runs_right_but_unequal_are_nondeterministic():
    def last_bit_varies(config, out, a, b, bias, call):
        value = product(a, b, bias).float()
        if call % 2:
            value = torch.nextafter(value, torch.full_like(value, np.inf))
        out.copy_(value)

    case = Case("wobble", 32, 32, 32, "persistent")
    finding = check_determinism(
        torch_kernel("wobble", last_bit_varies), case, case.config(), DEVICE, 2
    )
    assert (finding.passed, finding.cause) == (False, "nondeterminism")


def test_tiles_the_exact_check_found_wrong_keep_its_cause():
    case = Case("silent", 32, 32, 32, "persistent")
    config = case.config()
    kernel = torch_kernel("silent", lambda config, out, a, b, bias, call: None)
    finding = check_determinism(kernel, case, config, DEVICE, 2, range(config.total_tiles))
    assert (finding.passed, finding.cause) == (True, None)


@pytest.mark.interpreter
def test_the_project_kernel_gives_refsims_bits_on_every_run():
    from conformance.adapter import reference

    case = Case("sk", 64, 64, 80, cus=3, fixup="owner-waits", options=(("sk_hybrid", "one-wave"),))
    finding = check_determinism(reference(), case, case.config(), DEVICE, 2)
    assert finding.passed, finding.reasons
    assert finding.reasons == ["2 runs identical, each refsim's bits"]


# -- 2. one publisher per flag per launch --------------------------------------------------


def test_a_flag_published_by_two_programs_is_a_violation_naming_flag_and_programs():
    events = [
        (1, "store", 1, 0),
        (1, "publish", 1, 7),
        (2, "publish", 1, 7),  # program 2 sets program 1's flag too
        (0, "wait", 1, 7),
        (0, "acquire", 1, 7),
        (0, "load", 1, 0),
    ]
    config = Case("sync", 64, 64, 80, cus=3).config()
    run = types.SimpleNamespace(events=events, epoch=7, flags_before=torch.zeros(3), overruns=0)
    finding = check_synchronisation(config, run)
    assert finding.cause == "flag published by several programs"
    assert finding.reasons[0].startswith("flag 1 was published with 7 by programs 1, 2")
    assert any(
        "partial read before" not in r and "programs 1, 2 all published" in r
        for r in finding.reasons[1:]
    )


def test_one_publisher_per_flag_with_a_new_value_each_time_is_fine():
    events = [
        (1, "store", 1, 0),
        (1, "publish", 1, 7),
        (0, "wait", 1, 7),
        (0, "acquire", 1, 7),
        (0, "load", 1, 0),
        (0, "publish", 0, 7),
    ]
    config = Case("sync", 64, 64, 80, cus=3).config()
    run = types.SimpleNamespace(events=events, epoch=7, flags_before=torch.zeros(3), overruns=0)
    assert check_synchronisation(config, run).passed


def test_the_new_causes_sit_at_their_ranks():
    rank = CAUSES.index
    assert rank("output not initialised before atomic accumulation") + 1 == rank(
        "tile never written"
    )
    assert rank("flag held a stale epoch") + 1 == rank("flag published by several programs")
    assert rank("bias added after the cast") + 1 == rank("wrong rounding mode")
    assert rank("record overrun") + 1 == rank("trace misreports the work")
    assert rank("trace misreports the work") + 1 == rank("wrong tile order")


# -- 3. trace records judged against the output --------------------------------------------


def planned_run(config):
    """A run whose records are refsim's plan (a list to edit)."""
    return types.SimpleNamespace(records=list(refsim.simulate(config).records))


@pytest.mark.parametrize(
    "case",
    [
        Case("p", 96, 96, 40, "persistent", group_m=2),
        Case("sk", 64, 64, 80, cus=3, fixup="owner-waits", options=(("sk_hybrid", "one-wave"),)),
        Case("sk2", 64, 96, 160, cus=5, fixup="last-arriver"),
        Case("splitk", 64, 64, 80, "split_k", options=(("split_k", 3),)),
        Case("ws", 64, 96, 40, "work_stealing"),
    ],
    ids=lambda case: case.name,
)
def test_refsims_own_plan_describes_a_right_output(case):
    config = case.config()
    assert misdescribed_work(config, refsim.simulate(config).records) == []


def test_a_record_misreporting_its_k_range_is_named_when_the_output_is_right():
    config = Case("p", 64, 64, 80, "persistent").config()
    sim = refsim.simulate(config)
    run = planned_run(config)
    run.records[3] = run.records[3]._replace(k_end=run.records[3].k_end - 1)
    misreport = check_order(config, run, sim, work_right=True)
    assert misreport.cause == "trace misreports the work"
    assert misreport.reasons[0].startswith(
        "the output and partials equal refsim's bit for bit, but the trace records say otherwise"
    )
    assert "over K-iterations [0, 4)" in misreport.reasons[0]
    assert check_order(config, run, sim, work_right=False).cause == "wrong tile order"


def test_records_that_describe_the_right_output_in_another_schedule_are_a_wrong_tile_order():
    """Two tiles swapped between their programs: every tile still computed once, whole."""
    config = Case("p", 64, 64, 40, "persistent").config()
    sim = refsim.simulate(config)
    run = planned_run(config)
    first, second = run.records[0], run.records[1]
    run.records[0] = first._replace(pid_m=second.pid_m, pid_n=second.pid_n, tile=second.tile)
    run.records[1] = second._replace(pid_m=first.pid_m, pid_n=first.pid_n, tile=first.tile)
    assert check_order(config, run, sim, work_right=True).cause == "wrong tile order"


def test_work_stealing_records_that_a_right_output_contradicts_misreport_the_work():
    config = Case("ws", 64, 96, 40, "work_stealing").config()
    run = planned_run(config)
    run.records[2] = run.records[2]._replace(k_begin=1)
    assert check_work_stealing(config, run, work_right=False).cause == "missing K-segment"
    judged = check_work_stealing(config, run, work_right=True)
    assert judged.cause == "trace misreports the work"


def test_work_stealing_tickets_misreported_are_a_trace_fault_when_the_output_is_right():
    config = Case("ws", 64, 96, 40, "work_stealing").config()
    run = planned_run(config)
    run.records[0] = run.records[0]._replace(ticket=run.records[0].ticket + 1)
    judged = check_work_stealing(config, run, work_right=True)
    assert judged.cause == "trace misreports the work"
    assert "replayed tickets" in judged.reasons[0]


def test_a_work_stealing_tile_taken_twice_with_a_right_output_is_a_wrong_tile_order():
    config = Case("ws", 64, 96, 40, "work_stealing").config()
    run = planned_run(config)
    run.records.append(run.records[0]._replace(step=99))
    assert check_work_stealing(config, run, work_right=False).cause == "duplicated K-segment"
    assert check_work_stealing(config, run, work_right=True).cause == "wrong tile order"


# -- 4. an output not initialised before atomic accumulation --------------------------------


def test_an_output_added_into_without_zeroing_is_told_from_a_tile_never_written():
    def add_into_output(config, out, a, b, bias, call):
        out.add_(product(a, b, bias))  # NaN + the sum stays NaN

    case = Case("no-zero", 32, 32, 32, "persistent")
    config = case.config()
    finding, *_ = check_exact(torch_kernel("no-zero", add_into_output), case, config, DEVICE)
    assert finding.cause == "output not initialised before atomic accumulation"

    def skip_first_tile(config, out, a, b, bias, call):
        value = product(a, b, bias)
        value[: config.block_m, : config.block_n] = float("nan")
        out.copy_(value)

    finding, *_ = check_exact(torch_kernel("skip", skip_first_tile), case, config, DEVICE)
    assert finding.cause == "tile never written"


# -- 5. the rounding mode of the epilogue's cast --------------------------------------------


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
@pytest.mark.parametrize("rounding", ["toward zero", "up", "down"])
def test_an_epilogue_cast_in_a_directed_rounding_is_named(dtype, rounding):
    def cast_directed(config, out, a, b, bias, call):
        value = product(a, b, bias).float().numpy()
        rounded = round_directed(value, dtype_name(out.dtype), rounding)
        out.copy_(torch.from_numpy(rounded))

    case = Case("rtz", 64, 64, 40, "persistent", dtype=dtype)
    kernel = torch_kernel("rtz", cast_directed)
    finding, *_ = check_exact(kernel, case, case.config(), DEVICE)
    assert finding.cause == "wrong rounding mode"
    # the exact inputs' sums are positive: there rounding down is rounding toward zero
    named = {rounding, "toward zero"} if rounding == "down" else {rounding}
    assert any(f"rounding {r}, not to nearest even" in finding.reasons[0] for r in named)
    epilogue = check_epilogue(kernel, case, case.config(), DEVICE)
    assert epilogue.cause == "wrong rounding mode"


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_directed_roundings_bracket_the_value(dtype):
    values = np.array([2049.5, -2049.5, 3.0, -3.3, 1e-3], dtype=np.float32)
    up, down = (round_directed(values, dtype, r) for r in ("up", "down"))
    zero = round_directed(values, dtype, "toward zero")
    assert np.all(down <= values) and np.all(values <= up)
    assert np.array_equal(zero, np.where(values > 0, down, up))
    assert np.array_equal(up[2], values[2])  # exact values stay


# -- 6. no bare "unclassified" ------------------------------------------------------------


def test_an_unexplained_tile_says_which_check_saw_what():
    def off_by_half(config, out, a, b, bias, call):
        value = product(a, b, bias)
        value[0, 0] += 0.5
        out.copy_(value)

    case = Case("half", 32, 32, 32, "persistent")
    finding, *_ = check_exact(torch_kernel("half", off_by_half), case, case.config(), DEVICE)
    assert finding.cause == "unclassified"
    assert finding.reasons[0].endswith("[seen by the exact output check]")
    assert "C[0, 0] = " in finding.reasons[0]
