"""Failures that are not the kernel's arithmetic: a violated tl.assume, a backend that computes
wrongly, an empty or fully skipped case set, the report's title, followed case names, and work
logs with room for a few extra work items."""

import json

import numpy as np
import pytest
import torch
import triton
import triton.language as tl

from conformance import environment, interpreter, report
from conformance.__main__ import main
from conformance.cases import Case, follow, quick_set
from conformance.checking import check_case
from conformance.diagnosis import CAUSES
from conformance.failures import launch_failure, violated_assumption
from conformance.harness import KernelUnderTest
from conformance.mutants import Mutant, build
from conformance.worklog import ROLE_WS, WorkLog, default_max_items, record_work
from kernels.backend import NVIDIA
from kernels.records import EXTRA_TRACE_ROWS
from kernels.tile import round_to_bf16

# ------------------------------------------------------------------ 1. a violated kernel assumption


@triton.jit
def _row_major_only(a_ptr, out_ptr, stride_am, stride_ak):
    tl.assume(stride_am > 0)
    tl.assume(
        stride_ak == 1  # A row-major: a transposed A breaks it
    )
    tl.store(out_ptr, tl.load(a_ptr + stride_am + stride_ak))


def _assuming_run(config, a, b, bias=None, out=None, trace=False):
    _row_major_only[(1,)](a, out, a.stride(0), a.stride(1))
    return None


def _raising_run(config, a, b, bias=None, out=None, trace=False):
    raise ValueError("no kernel for this shape\nsecond line")


TRANSPOSED = Case("transposed-a", 16, 32, 16, "persistent", transpose_a=True, bias=False)


def test_failed_assume_names_the_assumption_its_line_and_the_case():
    result = check_case(KernelUnderTest("assuming", _assuming_run), TRANSPOSED, "cpu")
    (finding,) = result.findings
    assert finding.cause == "kernel assumption violated" in CAUSES
    line = _row_major_only.fn.__code__.co_firstlineno + 3  # the tl.assume( spanning 3 lines
    (reason,) = finding.reasons
    assert reason.startswith(
        f"tl.assume(stride_ak == 1) failed (test_conformance_robustness.py:{line}) on case "
        "transposed-a: M=16, N=32, K=16, persistent, fp32, no bias, blocks 16x32x16"
    )
    assert reason.endswith("layout transpose_a")
    assert finding.diagnosis["check"] == "check_exact"


def test_another_exception_is_unclassified_with_the_check_and_its_first_line():
    result = check_case(KernelUnderTest("raising", _raising_run), TRANSPOSED, "cpu")
    (finding,) = result.findings
    assert (finding.check, finding.cause) == ("launch", "unclassified")
    assert finding.reasons == ["check_exact raised ValueError: no kernel for this shape"]


def test_an_assertion_that_triton_did_not_raise_is_no_assumption():
    try:
        raise AssertionError("Assume failed")  # the interpreter's message, but raised here
    except AssertionError as exc:
        assert violated_assumption(exc) is None
        finding = launch_failure(exc, TRANSPOSED, TRANSPOSED.config())
    assert finding.cause == "unclassified"
    assert finding.reasons[0].endswith("raised AssertionError: Assume failed")


def raising():
    """A --kernel factory: a kernel whose launch raises at once."""
    return KernelUnderTest("raising", _raising_run)


# ---------------------------------------------------------------------- 2. the backend's own traps


def test_the_repaired_interpreter_computes_bf16_as_a_gpu_and_the_self_tests_run_once():
    # Triton 3.7 to 3.9 multiply bf16 blocks' raw bits in tl.dot and truncate fp32 -> bf16
    # casts; the suite repairs both in its process (conformance.interpreter) before it runs a
    # kernel, so the self-tests, which run after the repair, find no trap.
    assert interpreter.repair() is True
    assert environment.interpreter_bf16_dot_exact() is True
    assert environment.interpreter_casts_truncate("bf16") is False
    assert environment.interpreter_casts_truncate("fp16") is False
    hits = environment.interpreter_bf16_dot_exact.cache_info().hits
    environment.interpreter_bf16_dot_exact()
    assert environment.interpreter_bf16_dot_exact.cache_info().hits == hits + 1


def test_the_repairs_bf16_conversions_are_torchs():
    values = torch.tensor([1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 2.0**-130, 3e38, float("inf")])
    values = torch.cat([values, torch.randn(1000)])
    bits = interpreter._float32_to_bf16_bits(values.numpy())
    assert np.array_equal(bits, values.bfloat16().view(torch.int16).numpy().view(np.uint16))
    back = interpreter._bf16_bits_to_float32(bits)
    assert np.array_equal(back, values.bfloat16().float().numpy())
    nan_bits = interpreter._float32_to_bf16_bits(np.array([np.nan, -np.nan], np.float32))
    assert np.isnan(interpreter._bf16_bits_to_float32(nan_bits)).all()


def test_backend_limitation_names_the_traps_and_the_workaround_for_bf16_only(monkeypatch):
    """Where the repair does not reach (another Triton), the self-tests see the traps."""
    monkeypatch.setattr(environment, "interpreter_bf16_dot_exact", lambda: False)
    monkeypatch.setattr(environment, "interpreter_casts_truncate", lambda dtype: dtype == "bf16")
    line = environment.backend_limitation("bf16", "cpu")
    assert f"Triton {triton.__version__}'s interpreter computes bf16 tl.dot wrongly and " in line
    assert "truncates fp32 -> bf16 casts instead of rounding to nearest even" in line
    assert "upcast bf16 operands to fp32 before tl.dot" in line and "\n" not in line
    assert environment.backend_limitation("fp16", "cpu") is None
    assert environment.backend_limitation("fp32", torch.device("cpu")) is None
    monkeypatch.undo()
    assert environment.backend_limitation("bf16", "cpu") is None  # repaired here
    with pytest.raises(ValueError, match="dtype 'int8': expected one of fp16, bf16, fp32"):
        environment.backend_limitation("int8", "cpu")
    with pytest.raises(ValueError, match="the cast self-test takes bf16, fp16"):
        environment.interpreter_casts_truncate("fp32")


def test_compiled_kernels_have_no_interpreter_limitation(monkeypatch):
    monkeypatch.setattr(environment, "backend_for", lambda device_type: NVIDIA)
    assert environment.backend_limitation("bf16", "cuda") is None


@triton.jit
def _rounded_cast(x_ptr, y_ptr, SIZE: tl.constexpr):
    offsets = tl.arange(0, SIZE)
    x = round_to_bf16(tl.load(x_ptr + offsets))
    tl.store(y_ptr + offsets, x.to(tl.bfloat16))


def test_the_documented_rounding_workaround_gives_a_gpus_casts():
    x = torch.tensor([1.0, -1.0, 3.0, -3.0] * 4) * (1 + 0.75 * 2**-7)
    x[-4:] = torch.tensor([1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), float("inf")])  # ties to even
    y = torch.empty(16, dtype=torch.bfloat16)
    _rounded_cast[(1,)](x, y, 16)
    assert torch.equal(y, x.to(torch.bfloat16))


# ------------------------------------------------------------- 3. nothing to check is an error


def _refused(capsys, argv):
    """``main(argv)``'s exit code and its only line on stderr."""
    code = main(argv)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    return code, lines[0]


def all_invalid():
    """A --kernel factory whose schedule (a Stream-K tail's fixup, no tail) fits no case."""
    return KernelUnderTest(
        "tail-less", _raising_run, follows={"strategy": "work_stealing", "fixup": "last-arriver"}
    )


def test_an_empty_case_file_exits_2(tmp_path, capsys):
    path = tmp_path / "empty.json"
    path.write_text("[]")
    code, line = _refused(capsys, ["--device", "cpu", "--cases", str(path)])
    assert (code, line) == (2, f"conformance: error: --cases {path}: the file lists no case")


def test_a_kernel_whose_schedule_skips_every_case_exits_2(tmp_path, capsys):
    path = tmp_path / "cases.json"
    path.write_text(json.dumps([quick_set()[0].to_dict(), quick_set()[1].to_dict()]))
    spec = f"{__name__}:all_invalid"
    code = main(["--device", "cpu", "--cases", str(path), "--kernel", spec])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.splitlines() == [
        f"conformance: error: --kernel {spec}: its schedule makes every case invalid (each "
        "skipped above), so nothing would be checked"
    ]
    assert captured.out.count("skipped case ") == 2


def test_a_shard_with_no_case_exits_2(tmp_path, capsys):
    path = tmp_path / "cases.json"
    path.write_text(json.dumps([quick_set()[0].to_dict(), quick_set()[1].to_dict()]))
    argv = ["--device", "cpu", "--no-mutants", "--cases", str(path), "--shard", "3/3"]
    code, line = _refused(capsys, argv)
    assert code == 2
    assert line == (
        "conformance: error: --shard 3/3: no case falls in this shard, of 2 in all; "
        "use at most 2 shards"
    )


# ---------------------------------------------------------------------------- 4. the report title


@pytest.mark.parametrize(
    "env, title",
    [
        ({"tier": "interpreter", "gpu": "none (Triton interpreter on the CPU)", "set": "quick",
          "shard": "1/1"}, "interpreter, set quick"),
        ({"tier": "gpu", "gpu": "NVIDIA H200", "set": "full", "shard": "2/4"},
         "gpu NVIDIA H200, set full, shard 2/4"),
        ({"tier": "interpreter", "kernel": "examples.x.adapter:buggy",
          "cases": "examples/x/cases.json"},
         "interpreter, kernel examples.x.adapter:buggy, cases examples/x/cases.json"),
        ({"device": "cpu"}, "cpu"),
    ],
)  # fmt: skip
def test_the_title_says_what_ran(tmp_path, env, title):
    assert report.title(env) == title
    report.write(tmp_path, env, [], [])
    assert (tmp_path / "report.md").read_text().splitlines()[0] == f"# Conformance report: {title}"


def test_a_kernel_run_reports_its_kernel_cases_and_the_launch_failure(tmp_path, capsys):
    path = tmp_path / "cases.json"
    path.write_text(json.dumps([TRANSPOSED.to_dict()]))
    spec = f"{__name__}:raising"
    argv = ["--device", "cpu", "--cases", str(path), "--kernel", spec, "--report", str(tmp_path)]
    assert main(argv) == 1
    title = (tmp_path / "report.md").read_text().splitlines()[0]
    assert title == f"# Conformance report: interpreter, kernel {spec}, cases {path}"
    (case,) = json.loads((tmp_path / "report.json").read_text())["cases"]
    assert case["findings"][0]["reasons"] == [
        "check_exact raised ValueError: no kernel for this shape"
    ]


# ---------------------------------------------------------------------- 5. followed case names

RUN_NAMES = ("data_parallel", "persistent", "owner-waits", "turnstile", "last-arriver", "atomic")
RUN_NAMES += ("work_stealing", "split_k", "streamk")


@pytest.mark.parametrize(
    "options",
    [{"strategy": "work_stealing"}, {"strategy": "streamk", "fixup": "last-arriver"}],
    ids=["work_stealing", "last-arriver"],
)
def test_followed_names_are_unique_short_and_name_each_run_once(options):
    cases, _ = follow(quick_set(), options)
    names = [case.name for case in cases]
    assert len(set(names)) == len(names), names
    for name in names:
        assert not any(name.count(run) > 1 for run in RUN_NAMES), name
        assert not name.endswith(tuple(f"-{n}" for n in range(2, 10))), name
    label = options.get("fixup", options["strategy"])
    assert f"{label}-waves-100x20x64" in names  # the case of that run keeps its own name
    assert f"{label}-waves-100x20x64-from-atomic" in names  # fp32: another case


def test_a_followed_name_drops_the_run_label_it_starts_with_and_following_again_keeps_it():
    mislabelled = Case("owner-waits-odd", 48, 64, 8, fixup=None)  # streamk, default fixup
    followed = mislabelled.following({"fixup": "turnstile"})
    assert followed.name == "turnstile-odd"
    assert followed.following({"fixup": "turnstile"}) == followed
    cases, _ = follow(quick_set(), {"strategy": "work_stealing"})
    assert [case.following({"strategy": "work_stealing"}) for case in cases] == cases


# -------------------------------------------------------- 6. room for a work item too many


@triton.jit
def _record_items(log_ptr, items, max_items):
    pid = tl.program_id(0)
    for step in range(items):
        record_work(log_ptr, pid, step, step, 0, 0, 0, 1, ROLE_WS, step, 0, max_items)


def test_a_work_log_keeps_a_few_extra_items_and_counts_a_runaways():
    config = Case("waves", 100, 20, 64, "persistent", cus=3).config()  # 3 tiles on program 0
    assert default_max_items(config) == 3 + EXTRA_TRACE_ROWS
    fits = WorkLog(config, "cpu")
    _record_items[(config.grid,)](fits.tensor, fits.max_items, fits.max_items)
    assert (fits.overruns, len(fits.records())) == (0, config.grid * fits.max_items)
    runaway = WorkLog(config, "cpu")
    _record_items[(config.grid,)](runaway.tensor, runaway.max_items + 5, runaway.max_items)
    assert runaway.overruns == 5 * config.grid


ONE_TICKET_TOO_MANY = Mutant(
    "ws-one-ticket-too-many",
    "a work-stealing program also computes the tile of the first ticket past its range",
    "work_stealing.py",
    "    while tile < end:\n",
    "    while tile <= end:\n",
    Case("ws-one-ticket-too-many", 32, 64, 16, "work_stealing", cus=2, bias=False),
    "wrong tile order",
)


def test_a_ticket_past_its_range_is_seen_by_the_invariants_not_as_an_overrun():
    kut = build(ONE_TICKET_TOO_MANY)
    result = check_case(kut, ONE_TICKET_TOO_MANY.case, "cpu", determinism_runs=2)
    assert "wrong tile order" in result.causes and "record overrun" not in result.causes
    order = next(f for f in result.findings if f.check == "work-stealing invariants")
    assert any("ticket" in reason for reason in order.reasons), order.reasons
