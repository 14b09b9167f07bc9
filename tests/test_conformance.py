"""The conformance suite itself: decoding, the mutants, the adapter, the quick set, the CLI."""

import json
import os
import pathlib
import re
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from kernel_checks import INTERPRETER_TIER_ONLY

import kernels
import refsim
from conformance import Case, KernelUnderTest, check_case, load_cases, quick_set
from conformance.__main__ import _parser, main
from conformance.adapter import reference
from conformance.checks import (
    check_addition_order,
    check_epilogue,
    check_partials,
    check_work_stealing,
)
from conformance.diagnosis import decode_epilogue, decode_order, decode_probe, misplaced_lines
from conformance.harness import POISON, cast_to, expected_output, launch, ticket_records
from conformance.inputs import (
    BIAS_UNIT,
    epilogue_inputs,
    equivalent_orders,
    integer_inputs,
    order_inputs,
    probe_expected,
    reduce_in_order,
)
from conformance.mutants import MUTANTS, build, mutants_for
from conformance.runner import run_mutants, run_parallel
from conformance.synchronisation import check_synchronisation
from refsim import numerics

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = [pytest.mark.gpu] if DEVICE == "cuda" else [pytest.mark.interpreter]

CONFIG = Case("probe", 40, 64, 80).config()  # 16x32 tiles, 5 K-iterations of 16


def _decoded(change):
    """decode_probe of tile (1, 1) of a correct probe output changed by ``change``."""
    out = probe_expected(CONFIG).astype(np.float64)
    change(out, np.arange(CONFIG.m)[:, None], np.arange(CONFIG.n)[None, :])
    return decode_probe(CONFIG, out, 1, 1)


def _drop_iteration(out, m, n):
    out[:, (n[0] % 5) == 3] -= ((1 + m % 3) * 16).repeat((n[0] % 5 == 3).sum(), axis=1)


DECODING = {
    "missing K-segment": _drop_iteration,
    "duplicated K-segment": lambda out, m, n: out.__iadd__(((1 + m % 3) * 16) * (n % 5 == 1)),
    "bias missing": lambda out, m, n: out.__isub__(BIAS_UNIT * (1 + n % 3)),
    "bias applied more than once": lambda out, m, n: out.__iadd__(BIAS_UNIT * (1 + n % 3)),
    "bias along the wrong axis": lambda out, m, n: out.__iadd__(
        BIAS_UNIT * (np.where(m < CONFIG.n, 1 + m % 3, 0) - (1 + n % 3))
    ),
    "tile never written": lambda out, m, n: out.fill(np.nan),
    "partial read before it was written": lambda out, m, n: out.__iadd__(POISON),
}


@pytest.mark.parametrize("cause", sorted(DECODING))
def test_probe_values_decode_to_their_cause(cause):
    assert _decoded(DECODING[cause])[0] == cause


def test_a_correct_probe_tile_is_not_blamed():
    assert _decoded(lambda out, m, n: None)[0] == "unclassified"


def test_rows_or_columns_holding_other_lines_values_are_named_and_nothing_else_is():
    """Tile (1, 1) is rows 16..31, columns 32..63 of CONFIG (16x32 tiles), on distinct
    integer values: its rows shifted by 8 (a band offset gone wrong), its columns shifted by
    4, or one value off."""
    expected = np.arange(CONFIG.m * CONFIG.n, dtype=np.float64).reshape(CONFIG.m, CONFIG.n) % 97
    expected += np.arange(CONFIG.m)[:, None] * 1000 + np.arange(CONFIG.n)[None, :] * 0.5
    rows = expected.copy()
    rows[24:32, 32:64] = expected[16:24, 32:64]
    assert misplaced_lines(CONFIG, rows, expected, 1, 1) == (0, {r: r - 8 for r in range(24, 32)})
    cols = expected.copy()
    cols[16:32, 36:64] = expected[16:32, 32:60]
    assert misplaced_lines(CONFIG, cols, expected, 1, 1) == (1, {c: c - 4 for c in range(36, 64)})
    off = expected.copy()
    off[20, 40] += 1
    assert misplaced_lines(CONFIG, off, expected, 1, 1) is None
    assert misplaced_lines(CONFIG, expected.copy(), expected, 1, 1) is None
    never = expected.copy()
    never[16:32, 32:64] = np.nan
    assert misplaced_lines(CONFIG, never, expected, 1, 1) is None


@pytest.mark.slow
@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_every_mutant_is_caught_with_its_cause(mutant):
    if mutant not in mutants_for(DEVICE):
        pytest.skip(f"{mutant.name} needs a GPU: its path runs only there")
    if DEVICE == "cuda":  # a mutant's kernel may spin forever there: check it in a worker
        result = run_mutants([mutant], DEVICE)[0].result
    else:
        result = check_case(build(mutant), mutant.case, DEVICE)
    assert not result.passed
    assert mutant.expected_cause in result.causes, result.causes


ORDER_CASES = [
    Case("order-split-k", 64, 64, 80, strategy="split_k", options=(("split_k", 3),)),
    Case(
        "order-last-arriver",
        16,
        32,
        160,
        fixup="last-arriver",
        options=(("sk_hybrid", "one-wave"),),
    ),
    Case("order-owner-waits", 130, 70, 300, fixup="owner-waits", dtype="bf16"),
    Case(
        "order-turnstile",
        1,
        64,
        40,
        fixup="turnstile",
        dtype="fp16",
        options=(("sk_hybrid", "one-wave"),),
    ),
]


def _tile_math(config, inputs, tile):
    math = numerics.TileMath(config, inputs.a, inputs.b, inputs.bias)
    return math, *refsim.tiling.grouped_tile(
        tile, config.num_pid_m, config.num_pid_n, config.group_m
    )


@pytest.mark.parametrize("case", ORDER_CASES, ids=lambda c: c.name)
def test_order_inputs_accumulate_every_segment_exactly(case):
    """Each program's own fp32 accumulation (refsim's, K-iteration by K-iteration) is the exact
    float64 sum, so neither the MMA unit's order nor its rounding can matter."""
    config = case.config()
    inputs = order_inputs(config, case.seed)
    assert inputs.tiles
    for tile in inputs.tiles:
        math, pid_m, pid_n = _tile_math(config, inputs, tile)
        rows, cols = math.region(pid_m, pid_n)
        for k_begin, k_end in inputs.segments[tile]:
            k0, k1 = k_begin * config.block_k, min(config.k, k_end * config.block_k)
            exact = math.a[rows, k0:k1].astype(np.float64) @ math.b[k0:k1, cols].astype(np.float64)
            assert np.array_equal(math.accumulate(pid_m, pid_n, k_begin, k_end), exact)


@pytest.mark.parametrize("case", ORDER_CASES[:2], ids=lambda c: c.name)
def test_order_inputs_tell_every_order_apart(case):
    """Only K order and its commuted first pair give refsim's bits; every other order differs."""
    config = case.config()
    inputs = order_inputs(config, case.seed)
    for tile in inputs.tiles:
        n = len(inputs.segments[tile])
        assert n >= 3
        swapped = (1, 0, *range(2, n))
        assert equivalent_orders(config, inputs, tile) == [tuple(range(n)), swapped]


def test_a_wrong_addition_order_is_decoded_from_the_output():
    config = ORDER_CASES[0].config()
    inputs = order_inputs(config)
    sim = refsim.simulate(config, a=inputs.a, b=inputs.b, bias=inputs.bias)
    got = sim.output.astype(np.float64)
    tile = inputs.tiles[2]
    math, pid_m, pid_n = _tile_math(config, inputs, tile)
    got[math.region(pid_m, pid_n)] = reduce_in_order(
        math, pid_m, pid_n, inputs.segments[tile], (2, 0, 1)
    )
    numpy_inputs = (inputs.a, inputs.b, inputs.bias)
    cause, info = decode_order(config, got, numpy_inputs, inputs.tiles, inputs.segments)
    assert (cause, info["tile"], info["orders"]) == (
        "wrong addition order",
        tile,
        [(0, 2, 1), (2, 0, 1)],
    )
    assert info["detail"].endswith("refsim predicts (0, 1, 2)")
    assert [(k_begin, k_end) for _, k_begin, k_end, _ in info["plan"]] == inputs.segments[tile]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_bias_added_after_the_cast_is_decoded(dtype):
    case = Case("epilogue", 16, 32, 40, dtype="fp16" if dtype == torch.float16 else "bf16")
    a, b, bias = epilogue_inputs(case)
    unbiased = (a @ b).astype(np.float32)
    once = cast_to(unbiased + bias.astype(np.float32), dtype)
    twice = cast_to(cast_to(unbiased, dtype) + bias, dtype)
    assert not np.array_equal(once, twice)  # the inputs tell the two apart
    assert decode_epilogue(twice, unbiased, bias, dtype)[0] == "bias added after the cast"
    assert decode_epilogue(once + 1, unbiased, bias, dtype)[0] == "unclassified"


@pytest.mark.parametrize(
    "case",
    [
        *ORDER_CASES[1:],
        Case(
            "order-split-k-bf16",
            40,
            32,
            40,
            strategy="split_k",
            dtype="bf16",
            options=(("split_k", 3),),
        ),
    ],
    ids=lambda c: c.name,
)
def test_the_reference_kernels_add_in_refsims_order(case):
    kut, config = reference(), case.config()
    order = check_addition_order(kut, case, config, DEVICE)
    assert order.passed, order.reasons
    epilogue = check_epilogue(kut, case, config, DEVICE)
    assert epilogue is None if case.dtype == "fp32" else epilogue.passed


EVENT_LOGS = [  # (events, passes, cause): the store-then-release rule on hand-made logs
    (
        [(0, "store", 0, 2), (0, "publish", 0, 1), (1, "store", 2, 5), (1, "arrive", 5, 0)],
        True,
        None,
    ),
    ([(3, "publish", 3, 1), (3, "store", 6, 2)], False, "flag set before its partial is stored"),
    ([(0, "store", 0, 2), (1, "publish", 1, 1)], False, "partial never released"),
    (
        [(2, "store", 4, 5), (2, "publish", 2, 1), (2, "store", 5, 5)],
        False,
        "flag set before its partial is stored",
    ),
    ([], True, None),
]


@pytest.mark.parametrize("events, passes, cause", EVENT_LOGS)
def test_memory_order_rule_on_event_logs(events, passes, cause):
    finding = check_synchronisation(CONFIG, types.SimpleNamespace(events=events))
    assert (finding.passed, finding.cause) == (passes, cause), finding.reasons


@pytest.mark.parametrize(
    "fixup, release",
    [("owner-waits", "publish"), ("turnstile", "publish"), ("last-arriver", "arrive")],
)
def test_streamk_logs_each_store_before_its_release(fixup, release):
    config = Case(
        "events", 64, 64, 80, fixup=fixup, options=(("sk_hybrid", "one-wave"),), cus=3
    ).config()
    a, b = (
        torch.randint(-4, 5, shape, dtype=torch.float32, device=DEVICE)
        for shape in ((64, 80), (80, 64))
    )
    run = kernels.run(config, a, b, trace=True)
    stores = sorted(index for _, kind, index, _ in run.events if kind == "store")
    assert stores == sorted(
        kernels.partial_slot(config, p.program, p.tile)
        for p in refsim.simulate(config, a=a.cpu().numpy(), b=b.cpu().numpy()).partials
    )
    loads = {index for _, kind, index, _ in run.events if kind == "load"}
    assert loads and loads <= set(stores), run.events
    kinds = {kind for _, kind, _, _ in run.events}
    assert kinds & {"publish", "arrive"} == {release}, run.events
    flag_values = {
        value for _, kind, _, value in run.events if kind in ("publish", "wait", "acquire")
    }
    assert flag_values <= {run.epoch}, run.events
    arrivals = {}
    for _, kind, counter, count in run.events:
        if kind == "arrive":
            arrivals.setdefault(counter, []).append(count)
    assert all(sorted(counts) == list(range(len(counts))) for counts in arrivals.values())
    assert check_synchronisation(config, run).passed


PARTIAL_FAULTS = {  # a wrong partial, made from the right one, and what it must decode to
    "never stored": (lambda value, product, bias: value * 0 + POISON, "missing K-segment"),
    "one K-iteration short": (lambda value, product, bias: value - product, "missing K-segment"),
    "one K-iteration twice": (lambda value, product, bias: value + product, "duplicated K-segment"),
    "holds the bias": (lambda value, product, bias: value + bias, "bias applied more than once"),
    "off by one": (lambda value, product, bias: value + 1, "unclassified"),
}


@pytest.mark.parametrize("fault", sorted(PARTIAL_FAULTS))
def test_partials_check_decodes_what_is_wrong_with_a_partial(fault):
    case = Case("partials", 64, 64, 80, options=(("sk_hybrid", "one-wave"),), cus=3)
    config = case.config()
    a, b, bias = (torch.from_numpy(x).float() for x in integer_inputs(case))
    run = kernels.run(config, a.to(DEVICE), b.to(DEVICE), bias.to(DEVICE), trace=True)
    sim = refsim.simulate(config, a=a.numpy(), b=b.numpy(), bias=bias.numpy())
    partial = sim.partials[0]
    slot = kernels.partial_slot(config, partial.program, partial.tile)
    rows, cols = partial.value.shape
    math = numerics.TileMath(config, a.numpy(), b.numpy(), bias.numpy())
    pid_m, pid_n = refsim.tiling.grouped_tile(
        partial.tile, config.num_pid_m, config.num_pid_n, config.group_m
    )
    product = math.accumulate(pid_m, pid_n, partial.k_begin, partial.k_begin + 1)
    change, cause = PARTIAL_FAULTS[fault]
    wrong = change(partial.value, product, math.with_bias(np.zeros_like(product), pid_n))
    run.partials[slot, :rows, :cols] = torch.from_numpy(wrong.astype(np.float32))
    finding = check_partials(reference(), config, run, sim, (a, b, bias))
    assert (finding.passed, finding.cause) == (False, cause), finding.reasons
    assert f"slot {slot}" in finding.reasons[0]


def _stolen_run(config):
    """A traced work-stealing run of the reference kernels on integer inputs."""
    case = Case(
        "ws",
        config.m,
        config.n,
        config.k,
        "work_stealing",
        block_m=config.block_m,
        block_n=config.block_n,
        block_k=config.block_k,
        group_m=config.group_m,
    )
    run, tensors = launch(reference(), config, case, integer_inputs(case), DEVICE, trace=True)
    return run, tensors


WS_RECORD_FAULTS = {
    # what a kernel wrongly records -> the cause the invariants check must give
    "pid_m": ("tile written to the wrong place", lambda r: r._replace(pid_m=r.pid_m + 1)),
    "pid_n": ("tile written to the wrong place", lambda r: r._replace(pid_n=r.pid_n + 1)),
    "k_begin": ("missing K-segment", lambda r: r._replace(k_begin=1)),
    "k_end": ("duplicated K-segment", lambda r: r._replace(k_end=r.k_end + 1)),
}


@pytest.mark.parametrize("fault", sorted(WS_RECORD_FAULTS))
def test_work_stealing_records_are_held_to_the_tiling_rules(fault):
    """A record whose place or K-range is not its tile's, by the tiling rules, is a finding;
    and the replay that predicts the output ignores what the records say besides tickets."""
    config = Case("ws", 64, 96, 40, "work_stealing").config()
    run, tensors = _stolen_run(config)
    assert check_work_stealing(config, run).passed
    cause, change = WS_RECORD_FAULTS[fault]
    faulty = types.SimpleNamespace(records=[change(run.records[0]), *run.records[1:]])
    finding = check_work_stealing(config, faulty)
    assert not finding.passed
    assert finding.cause == cause
    assert f"tile {run.records[0].tile} recorded at" in finding.reasons[0]
    expected, _ = expected_output(config, run, tensors)
    replayed, _ = expected_output(config, faulty, tensors)
    np.testing.assert_array_equal(replayed, expected)


def test_a_ticket_outside_its_counters_range_is_not_replayed():
    config = Case("ws", 64, 96, 40, "work_stealing").config()
    run, _ = _stolen_run(config)
    bogus = run.records[0]._replace(ticket=config.total_tiles)
    assert len(ticket_records(config, [bogus, *run.records[1:]])) == len(run.records) - 1
    assert not check_work_stealing(config, types.SimpleNamespace(records=[bogus])).passed


def test_the_diagnosis_names_the_tile_plan_and_cause():
    mutant = next(m for m in MUTANTS if m.name == "bias-every-contributor")
    result = check_case(build(mutant), mutant.case, DEVICE)
    exact = next(f for f in result.findings if f.check == "exact output")
    assert exact.cause == "bias applied more than once"
    diagnosis = exact.diagnosis
    assert {"tile", "pid_m", "pid_n", "element", "plan", "detail"} <= set(diagnosis)
    roles = {role for _, _, _, role in diagnosis["plan"]}
    assert roles == {"sk-owner", "sk-contributor"}, diagnosis["plan"]


def test_a_users_kernel_is_checked_through_the_adapter():
    """A plain callable, no traces: the output checks still catch the row-indexed bias."""
    mutant_run = build(next(m for m in MUTANTS if m.name == "bias-by-row")).run

    def my_kernel(config, a, b, bias=None, out=None, trace=False):
        return mutant_run(config, a, b, bias, out=out, trace=False)

    result = check_case(
        KernelUnderTest("mine", my_kernel),
        Case("adapter", 64, 64, 40, strategy="persistent"),
        DEVICE,
    )
    assert result.cause == "bias along the wrong axis"
    assert "tile order" not in [f.check for f in result.findings]


def test_cases_round_trip_through_json(tmp_path):
    cases = quick_set()[:5]
    path = tmp_path / "cases.json"
    path.write_text(json.dumps([c.to_dict() for c in cases]))
    assert load_cases(path) == cases
    path.write_text(json.dumps([{"name": "x", "m": 1, "n": 1, "k": 1, "colour": "red"}]))
    with pytest.raises(ValueError, match="colour"):
        load_cases(path)


@pytest.mark.slow
def test_quick_set_passes_and_every_mutant_is_caught(tmp_path, capsys):
    """The CI run of the suite: `python -m conformance --device cpu --set quick --report DIR`."""
    jobs = "8" if DEVICE == "cuda" else "1"  # on a GPU, compiling dominates: use the cores
    code = main(
        ["--device", DEVICE, "--set", "quick", "--report", str(tmp_path)]
        + ["--determinism-runs", "2", "--jobs", jobs]
    )
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["totals"]["failed"] == 0, printed
    missed = {m["mutant"] for m in report["mutants"] if not (m["caught"] and m["right_cause"])}
    assert not missed, printed
    assert code == 0
    assert (tmp_path / "report.md").read_text().startswith("# Conformance report")


def test_worker_processes_give_the_same_verdicts_in_order(tmp_path, capsys):
    """--jobs N runs cases in N processes (each compiles its own kernels) and keeps their order."""
    cases = [quick_set()[i] for i in (1, 9, 30)]
    path = tmp_path / "cases.json"
    path.write_text(json.dumps([c.to_dict() for c in cases]))
    code = main(
        [
            "--device",
            DEVICE,
            "--cases",
            str(path),
            "--no-mutants",
            "--jobs",
            "2",
            "--report",
            str(tmp_path / "report"),
        ]
    )
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert code == 0, capsys.readouterr().out
    assert [r["case"]["name"] for r in report["cases"]] == [c.name for c in cases]
    assert all(r["passed"] for r in report["cases"])


ROOT = pathlib.Path(__file__).resolve().parent.parent
TINY = {"name": "tiny", "m": 8, "n": 8, "k": 8}  # one tile, one K-iteration


def _case_file(folder, cases=(TINY,)):
    path = folder / "cases.json"
    path.write_text(json.dumps(list(cases)))
    return path


@INTERPRETER_TIER_ONLY
def test_the_cli_picks_the_interpreter_itself(tmp_path):
    """`python -m conformance --device cpu` needs no TRITON_INTERPRET from the user."""
    env = {name: value for name, value in os.environ.items() if name != "TRITON_INTERPRET"}
    command = [sys.executable, "-m", "conformance", "--device", "cpu", "--no-mutants"]
    done = subprocess.run(
        [*command, "--cases", str(_case_file(tmp_path))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 of 1 cases passed" in done.stdout


@INTERPRETER_TIER_ONLY
def test_worker_processes_choose_the_backend_of_the_device(monkeypatch):
    """Workers interpret the kernels for device "cpu" even when this process's environment
    does not ask for it (as when the suite is driven from Python)."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    cases = [Case.from_dict(TINY)]
    results, mutants = run_parallel(cases, (), "cpu", jobs=1, determinism_runs=2)
    assert mutants == []
    assert [r.passed for r in results] == [True], [f.reasons for f in results[0].findings]


def _refused(capsys, argv):
    """Exit code and the one stderr line of a run that must stop before running anything."""
    code = main(argv)
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    return code, lines[0]


@pytest.mark.parametrize("where", ["a file", "below a file"])
def test_an_unwritable_report_folder_is_refused_before_running(tmp_path, capsys, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    report = blocker if where == "a file" else blocker / "report"
    code, line = _refused(
        capsys,
        ["--device", "cpu", "--cases", str(_case_file(tmp_path)), "--report", str(report)],
    )
    assert code == 2
    assert line.startswith(f"conformance: error: --report {report}: cannot write there"), line


CASE_FILE_FAULTS = {  # how the case file is made, and what the error line must say
    "missing": (lambda path: None, "cannot read it: No such file or directory"),
    "a folder": (lambda path: path.mkdir(), "cannot read it: Is a directory"),
    "not JSON": (lambda path: path.write_text("[{'name': 'x'}]"), "not valid JSON"),
    "not UTF-8": (lambda path: path.write_bytes(b"\xff\xfe[]"), "not valid JSON"),
    "not a list": (lambda path: path.write_text('{"name": "x"}'), "expected a JSON list"),
    "a case not an object": (lambda path: path.write_text("[1]"), "case 0 is not a JSON object"),
    "a case without m": (
        lambda path: path.write_text('[{"name": "x", "n": 1, "k": 1}]'),
        "case 0: ",
    ),
}


@pytest.mark.parametrize("fault", sorted(CASE_FILE_FAULTS))
def test_a_bad_case_file_is_named_in_one_line(tmp_path, capsys, fault):
    make, message = CASE_FILE_FAULTS[fault]
    path = tmp_path / "cases.json"
    make(path)
    code, line = _refused(capsys, ["--device", "cpu", "--cases", str(path)])
    assert code == 2
    assert line.startswith("conformance: error: ") and str(path) in line, line
    assert message in line, line


def test_a_case_with_an_invalid_value_is_named_in_one_line(tmp_path, capsys):
    path = _case_file(tmp_path, [dict(TINY, name="bad-xcds", xcds=9)])
    code, line = _refused(capsys, ["--device", "cpu", "--cases", str(path)])
    assert code == 2
    assert line.startswith("conformance: error: case bad-xcds: xcds=9"), line


@pytest.mark.parametrize("shard", ["abc", "1", "0/2", "3/2", "1/2/3", "x/2"])
def test_a_malformed_shard_gets_a_usage_message(capsys, shard):
    with pytest.raises(SystemExit) as exit_:
        main(["--device", "cpu", "--shard", shard])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.startswith("usage: python -m conformance")
    assert f"argument --shard: expected I/N with 1 <= I <= N, not {shard!r}" in err


def test_the_documented_usage_is_the_clis(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    docs = (ROOT / "docs" / "conformance.md").read_text()
    documented = re.search(r"## 1\. Running it\n\n```text\n(.*?)```", docs, re.S).group(1)
    assert documented == _parser().format_usage()


def test_the_cli_driven_from_python_gives_the_backend_choice_back(monkeypatch, capsys):
    """main() sets TRITON_INTERPRET for its device, then restores the caller's value: a kernel
    the caller jits later (the lazily built contract) keeps the caller's backend."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    code = main(["--device", "cuda", "--set", "full", "--cases", "no-such-file.json"])
    assert code == 2 and capsys.readouterr().err.count("\n") == 1
    assert os.environ["TRITON_INTERPRET"] == "1"
    monkeypatch.delenv("TRITON_INTERPRET")
    assert main(["--device", "cpu", "--set", "full"]) == 2
    assert "TRITON_INTERPRET" not in os.environ
