"""Tests of :mod:`refsim.compare` and ``refsim compare``: a measured timeline beside refsim's
prediction, as one Chrome trace, a pair of Gantt charts and a text summary."""

import json
import subprocess
import sys

import pytest

import refsim
from refsim import WorkRecord, cli, compare, trace
from refsim.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PROCESSES = {1: "GPU (measured)", 2: "refsim (predicted)"}
SMALL = [
    "compare",
    "96",
    "64",
    "64",
    "--strategy",
    "streamk",
    "--fixup",
    "last-arriver",
    "--cus",
    "4",
    "--xcds",
    "1",
    "--block",
    "32x32x32",
    "--device",
    "h100",
]


def work(program, step, tile, role, start, end, kernel="gemm"):
    return WorkRecord(
        program, step, tile, tile // 2, tile % 2, 0, 4, role, program, 0, start, end, kernel=kernel
    )


# The measured clock starts at 1000, the prediction at 5 (launch latency). Shifted to 0, the
# programs end at 30, 12, 25, 8 measured and at 20, 15, 8, 7 predicted.
MEASURED = [
    work(0, 0, 0, "dp", 1000.0, 1010.0),
    work(0, 1, 4, "sk-owner", 1010.0, 1030.0),
    work(1, 0, 1, "dp", 1002.0, 1012.0),
    work(2, 0, 2, "dp", 1001.0, 1025.0),
    work(3, 0, 3, "dp", 1000.0, 1008.0),
]
PREDICTED = [
    work(0, 0, 0, "dp", 5.0, 15.0),
    work(0, 1, 4, "sk-owner", 15.0, 25.0),
    work(1, 0, 1, "dp", 5.0, 20.0),
    work(2, 0, 2, "dp", 5.0, 13.0),
    work(3, 0, 3, "dp", 5.0, 12.0),
]


def complete_events(document, pid):
    return [e for e in document["traceEvents"] if e["ph"] == "X" and e["pid"] == pid]


def names(document, kind):
    return {
        (e["pid"], e["tid"]): e["args"]["name"]
        for e in document["traceEvents"]
        if e["ph"] == "M" and e["name"] == kind
    }


# --------------------------------------------------------------------------------------------
# The Chrome trace.


def test_one_process_per_side_named():
    document = compare.comparison_trace(MEASURED, PREDICTED)
    assert names(document, "process_name") == {(1, 0): PROCESSES[1], (2, 0): PROCESSES[2]}
    assert {e["ph"] for e in document["traceEvents"]} == {"M", "X"}


def test_one_thread_per_program_on_each_side():
    document = compare.comparison_trace(MEASURED, PREDICTED)
    expected = {(pid, p): f"program {p}" for pid in PROCESSES for p in range(4)}
    assert names(document, "thread_name") == expected
    for pid in PROCESSES:
        assert all(e["tid"] == e["args"]["program"] for e in complete_events(document, pid))


@pytest.mark.parametrize("pid, records", [(1, MEASURED), (2, PREDICTED)])
def test_one_event_per_record_shifted_to_start_at_0(pid, records):
    events = complete_events(compare.comparison_trace(MEASURED, PREDICTED), pid)
    assert len(events) == len(records)
    origin = records[0].t_start_us if pid == 2 else 1000.0
    for event, record in zip(events, records):
        start, end = record.t_start_us - origin, record.t_end_us - origin
        assert event["name"] == f"{record.role} tile {record.tile} k[0,4)"
        assert event["cat"] == record.role
        assert (event["ts"], event["dur"]) == (start, end - start)
        assert event["args"] == record._replace(t_start_us=start, t_end_us=end)._asdict()
    assert min(e["ts"] for e in events) == 0.0


def test_metadata_goes_to_other_data_and_the_file_holds_the_same_document(tmp_path):
    metadata = {"measured_makespan_us": 30.0, "refsim": {"strategy": "streamk"}}
    document = compare.comparison_trace(MEASURED, PREDICTED, metadata)
    assert document["otherData"] == metadata
    path = tmp_path / "both.json"
    compare.write_comparison(MEASURED, PREDICTED, path, metadata)
    assert json.loads(path.read_text()) == json.loads(json.dumps(document))


def test_reduce_programs_get_threads_after_the_gemm_programs():
    """Split-K's reduction launch numbers its programs from 0 again: its own threads."""
    records = [
        work(0, 0, 0, "split", 0.0, 4.0),
        work(1, 0, 0, "split", 0.0, 5.0),
        work(0, 0, 0, "reduce", 6.0, 7.0, kernel="reduce"),
        work(1, 0, 1, "reduce", 6.0, 8.0, kernel="reduce"),
    ]
    document = compare.comparison_trace(records, records)
    assert names(document, "thread_name") == {
        (pid, tid): name
        for pid in PROCESSES
        for tid, name in enumerate(
            ["program 0", "program 1", "reduce program 0", "reduce program 1"]
        )
    }
    assert [e["tid"] for e in complete_events(document, 1)] == [0, 1, 2, 3]


# --------------------------------------------------------------------------------------------
# Makespans and the text summary.


def test_makespan_is_last_end_minus_first_start():
    assert compare.makespan_us(MEASURED) == 30.0
    assert compare.makespan_us(PREDICTED) == 20.0
    with pytest.raises(ValueError, match="no work records"):
        compare.makespan_us([])


def test_comparison_lines_give_makespans_ratio_and_the_three_most_different_programs():
    assert compare.comparison_lines(MEASURED, PREDICTED) == [
        "makespan, first start to last end:",
        "  measured 30.00 us",
        "  predicted 20.00 us",
        "  measured / predicted 1.50",
        "programs whose measured end differs most from the prediction:",
        "  program 2: ends at 25.00 us measured, 8.00 us predicted (+17.00 us)",
        "  program 0: ends at 30.00 us measured, 20.00 us predicted (+10.00 us)",
        "  program 1: ends at 12.00 us measured, 15.00 us predicted (-3.00 us)",
    ]


# --------------------------------------------------------------------------------------------
# The Gantt pair.


def test_gantt_pair_shares_one_time_axis_from_0(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(
        trace, "plot_gantt", lambda records, path, **kwargs: calls.append((records, path, kwargs))
    )
    stem = str(tmp_path / "run")
    paths = compare.plot_gantt_pair(MEASURED, PREDICTED, stem, "streamk 96x64x64")
    assert paths == (f"{stem}-measured.png", f"{stem}-predicted.png")
    assert [path for _, path, _ in calls] == list(paths)
    assert [kwargs["time_range"] for *_, kwargs in calls] == [(0.0, 30.0), (0.0, 30.0)]
    assert [kwargs["title"] for *_, kwargs in calls] == [
        "streamk 96x64x64: measured, 30.00 us",
        "streamk 96x64x64: predicted, 20.00 us",
    ]
    for records, _, _ in calls:
        assert min(r.t_start_us for r in records) == 0.0


def test_gantt_pair_writes_two_pngs_with_the_given_time_axis(monkeypatch, tmp_path):
    figure = pytest.importorskip("matplotlib.figure")
    limits = []
    save = figure.Figure.savefig

    def recording_save(chart, *args, **kwargs):
        limits.append(chart.axes[0].get_xlim())
        return save(chart, *args, **kwargs)

    monkeypatch.setattr(figure.Figure, "savefig", recording_save)
    paths = compare.plot_gantt_pair(MEASURED, PREDICTED, str(tmp_path / "run"), "title")
    assert limits == [(0.0, 30.0), (0.0, 30.0)]
    for path in paths:
        with open(path, "rb") as f:
            assert f.read(8) == PNG_SIGNATURE


# --------------------------------------------------------------------------------------------
# refsim compare.


def interpreting():
    return pytest.importorskip("kernels.backend").interpreting()


def test_compare_runs_the_kernel_and_writes_both_timelines(capsys, monkeypatch, tmp_path):
    """End to end on the local device (Triton's interpreter without a GPU): one event per
    record of each side, and the two charts."""
    measured_runs = []
    measure = cli._measured_records

    def recording_measure(*args):
        measured_runs.append(measure(*args))
        return measured_runs[-1]

    monkeypatch.setattr(cli, "_measured_records", recording_measure)
    path, stem = tmp_path / "both.json", tmp_path / "run"
    on = "cpu" if interpreting() else "cuda"
    code = main(SMALL + ["--on", on, "--trace", str(path), "--gantt", str(stem)])
    out, err = capsys.readouterr()
    assert code == 0, err
    predicted = refsim.simulate(
        96,
        64,
        64,
        4,
        xcds=1,
        strategy="streamk",
        fixup="last-arriver",
        device="h100",
        block_m=32,
        block_n=32,
        block_k=32,
    ).records
    (measured,) = measured_runs
    in_steps = on == "cpu"
    assert out.splitlines()[1:] == compare.comparison_lines(measured, predicted, in_steps)
    if in_steps:  # the interpreter's times are steps: shown as such, no ratio taken
        assert "steps" in out and "measured / predicted not taken" in out
    document = json.loads(path.read_text())
    assert names(document, "process_name") == {(1, 0): PROCESSES[1], (2, 0): PROCESSES[2]}
    assert len(complete_events(document, 1)) == len(measured) > 0
    assert len(complete_events(document, 2)) == len(predicted)
    assert document["otherData"]["measured_makespan_us"] == compare.makespan_us(measured)
    assert document["otherData"]["refsim"]["device"] == "h100"
    for side in ("measured", "predicted"):
        assert (tmp_path / f"run-{side}.png").read_bytes()[:8] == PNG_SIGNATURE
    assert f"trace written to {path}" in err


def refuse_to_run(*args):
    raise AssertionError("the kernel ran")


@pytest.mark.parametrize(
    "options, expected",
    [
        (["--trace", "both.txt"], "--trace both.txt: name the file *.json"),
        (["--trace", "no-such-dir/both.json"], "cannot write no-such-dir/both.json: no folder"),
        (["--trace", "both.json", "--gantt", "no-such-dir/run"], "no-such-dir/run-measured.png"),
        (["--trace", "both.json", "--on", "tpu"], "invalid choice: 'tpu'"),
        ([], "the following arguments are required: --trace"),
        (["--trace", "both.json", "--cus", "300"], "cus=300"),
    ],
)
def test_bad_input_exits_2_with_one_line_before_running(
    capsys, monkeypatch, tmp_path, options, expected
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_measured_records", refuse_to_run)
    code, (out, err) = main(SMALL + ["--on", "cpu"] + options), capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.splitlines() == [err.strip()] and err.startswith("refsim: error: ")
    assert expected in err
    assert not (tmp_path / "both.txt").exists()


def test_cpu_without_the_interpreter_exits_2_saying_how_to_turn_it_on(
    capsys, monkeypatch, tmp_path
):
    interpreting()  # skips without the kernels
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(cli, "_measured_records", refuse_to_run)
    monkeypatch.setattr(cli, "_kernels_torch", refuse_to_run)  # asked before torch loads
    code = main(SMALL + ["--on", "cpu", "--trace", str(tmp_path / "both.json")])
    assert (code, capsys.readouterr().err) == (
        2,
        "refsim: error: compare --on cpu runs Triton's interpreter: set TRITON_INTERPRET=1\n",
    )


def test_cuda_without_a_gpu_exits_2(capsys, monkeypatch, tmp_path):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(cli, "_measured_records", refuse_to_run)
    code = main(SMALL + ["--on", "cuda", "--trace", str(tmp_path / "both.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.splitlines() == [err.strip()]
    assert "compare --on cuda: needs a CUDA GPU" in err


def test_refsim_imports_no_torch():
    """The compare module and command import torch only when the command runs."""
    code = "import sys, refsim.compare, refsim.cli; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "False", proc.stderr
