"""Tests of the ``refsim`` command line (:func:`refsim.cli.main` and the installed entry points)."""

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import refsim
from refsim import PROFILES
from refsim.cli import FLAGS, main
from refsim.config import FIELD_NAMES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SMALL = ["simulate", "512", "512", "512", "--block", "64x64x64", "--cus", "16"]
DEADLOCK = [
    "simulate",
    "64",
    "64",
    "4096",
    "--cus",
    "1",
    "--xcds",
    "1",
    "--grid",
    "2",
    "--block",
    "64x64x64",
    "--sk-hybrid",
    "one-wave",
]
SUMMARY_KEYS = {
    "tiles",
    "dp_tiles",
    "sk_tiles",
    "makespan_us",
    "tflops",
    "xcd_utilisation",
    "fixups",
    "longest_wait_us",
    "deadlock",
}


def run_main(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def console_script():
    script = Path(sys.executable).with_name("refsim")
    found = str(script) if script.exists() else shutil.which("refsim")
    assert found, "the refsim console script is not installed (pip install -e .)"
    return found


def run_process(args):
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


# --------------------------------------------------------------------------------------------
# refsim simulate: the summary.


@pytest.fixture(scope="module")
def big_expected():
    """What the library predicts for the 8192^3 launch the CLI is asked about."""
    return refsim.simulate(8192, 8192, 8192, 304).summary_dict()


def test_simulate_prints_the_summary(capsys, big_expected):
    code, out, err = run_main(capsys, ["simulate", "8192", "8192", "8192", "--cus", "304"])
    assert (code, err) == (0, "")
    assert "8192x8192x8192" in out and "304 CUs" in out
    assert re.search(r"\btiles 1024\b", out)
    assert "608 DP, 416 SK" in out  # 1024 % 304 = 112 leftover + one wave of 304
    assert f"makespan {big_expected['makespan_us']:.2f} us" in out
    assert f"{big_expected['tflops']:.1f} TFLOP/s" in out
    utilisation = re.search(r"^XCD utilisation((?: \d+%)+)$", out, re.MULTILINE)
    assert utilisation and len(utilisation.group(1).split()) == 8
    assert f"fixups {big_expected['fixups']}" in out
    assert f"longest wait {big_expected['longest_wait_us']:.2f} us" in out
    assert "deadlock" not in out


def test_the_default_launch_simulates_well_under_a_second(capsys, big_expected):
    """The coverage check runs on every launch; the 8192^3 one on 304 CUs stays interactive."""
    began = time.perf_counter()
    assert run_main(capsys, ["simulate", "8192", "8192", "8192", "--cus", "304"])[0] == 0
    assert time.perf_counter() - began < 0.5


def test_simulate_json_prints_the_summary_keys(capsys, big_expected):
    code, out, err = run_main(
        capsys, ["simulate", "8192", "8192", "8192", "--cus", "304", "--json"]
    )
    assert (code, err) == (0, "")
    summary = json.loads(out)
    assert set(summary) >= SUMMARY_KEYS
    assert (summary["tiles"], summary["dp_tiles"], summary["sk_tiles"]) == (1024, 608, 416)
    assert len(summary["xcd_utilisation"]) == 8
    assert all(0 <= u <= 1 for u in summary["xcd_utilisation"])
    assert summary == json.loads(json.dumps(big_expected))
    assert summary["deadlock"] is None


@pytest.mark.parametrize(
    "options, expected",
    [
        (
            ["--strategy", "split_k", "--split-k", "2"],
            {"strategy": "split_k", "split_k": 2, "grid": 128},
        ),
        (["--strategy", "data_parallel"], {"strategy": "data_parallel", "grid": 64, "fixup": None}),
        (
            ["--device", "h100", "--cus", "132", "--xcds", "1"],
            {"device": "h100", "cus": 132, "xcds": 1},
        ),
        (["--device", "H200", "--cus", "132", "--xcds", "1"], {"device": "h200"}),
        (["--block", "128x64x32"], {"blocks": [128, 64, 32], "tiles": 32}),
        (["--block", "64X64X64"], {"blocks": [64, 64, 64]}),
        (["--dtype", "float16"], {"problem": {"m": 512, "n": 512, "k": 512, "dtype": "fp16"}}),
        (["--fixup", "turnstile"], {"fixup": "turnstile"}),
        (["--grid", "12", "--sk-tiles", "0"], {"grid": 12, "sk_tiles": 0, "dp_tiles": 64}),
        (["--sk-hybrid", "one-wave"], {"sk_tiles": 64, "dp_tiles": 0}),
        (["--group-m", "4"], {"group_m": 4}),
        (["--strategy", "work_stealing", "--global-counter"], {"strategy": "work_stealing"}),
    ],
)
def test_simulate_options_reach_the_config(capsys, options, expected):
    code, out, _ = run_main(capsys, SMALL + options + ["--json"])
    assert code == 0
    summary = json.loads(out)
    assert {key: summary[key] for key in expected} == expected


def test_jitter_and_seed_reach_the_simulation(capsys):
    code, out, _ = run_main(capsys, SMALL + ["--jitter", "0.5", "--seed", "3", "--json"])
    assert code == 0
    expected = refsim.simulate(
        512, 512, 512, 16, block_m=64, block_n=64, block_k=64, jitter=0.5, seed=3
    )
    steady = refsim.simulate(512, 512, 512, 16, block_m=64, block_n=64, block_k=64)
    assert json.loads(out)["makespan_us"] == expected.makespan_us != steady.makespan_us


def test_simulate_writes_trace_and_gantt(capsys, tmp_path):
    trace, gantt = tmp_path / "run.json", tmp_path / "run.png"
    code, out, err = run_main(
        capsys, SMALL + ["--json", "--trace", str(trace), "--gantt", str(gantt)]
    )
    assert code == 0
    work_items = json.loads(out)["work_items"]  # stdout stays pure JSON
    doc = json.loads(trace.read_text())
    assert sum(e["ph"] == "X" for e in doc["traceEvents"]) == work_items > 0
    assert gantt.read_bytes()[:8] == PNG_SIGNATURE
    assert str(trace) in err and str(gantt) in err


# --------------------------------------------------------------------------------------------
# refsim devices.


def test_devices_lists_every_profile(capsys):
    code, out, err = run_main(capsys, ["devices"])
    assert (code, err) == (0, "")
    lines = out.splitlines()
    for name, profile in PROFILES.items():
        row = [line for line in lines if line.split()[0] == name]
        assert len(row) == 1, name
        cells = row[0].split()
        assert str(profile.cus) in cells and profile.vendor in cells
    assert any(line.startswith("mi300x") and "(default)" in line for line in lines)
    assert len(lines) == len(PROFILES) + 1  # a header and one row per profile


# --------------------------------------------------------------------------------------------
# Installed entry points.


def test_console_script_runs_simulate_json():
    proc = run_process([console_script(), "simulate", "256", "256", "256", "--json"])
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["tiles"] == 1 and summary["problem"] == {
        "m": 256,
        "n": 256,
        "k": 256,
        "dtype": "bf16",
    }
    assert "Traceback" not in proc.stderr


def test_python_dash_m_refsim_devices():
    proc = run_process([sys.executable, "-m", "refsim", "devices"])
    assert proc.returncode == 0, proc.stderr
    assert all(name in proc.stdout for name in PROFILES)


# --------------------------------------------------------------------------------------------
# Bad input: exit 2, one line "refsim: error: ..." on stderr, no traceback.

BAD_INPUT = [
    (["simulate", "0", "8", "8"], "M=0"),
    (["simulate", "-1", "8", "8"], "M=-1"),
    (["simulate", "8", "-8", "8"], "N=-8"),
    (["simulate", "8", "8", "1.5"], "'1.5'"),
    (["simulate", "8", "eight", "8"], "'eight'"),
    (["simulate", "8", "8", "8", "--strategy", "stream-k"], "streamk"),
    (["simulate", "8", "8", "8", "--device", "a100"], "mi300x"),
    (["simulate", "8", "8", "8", "--fixup", "owner"], "owner-waits"),
    (["simulate", "8", "8", "8", "--sk-hybrid", "two"], "two-tile"),
    (["simulate", "8", "8", "8", "--dtype", "int8"], "bf16"),
    (["simulate", "8", "8", "8", "--block", "256x256"], "256x256"),
    (["simulate", "8", "8", "8", "--block", "256x256x64x1"], "256x256x64x1"),
    (["simulate", "8", "8", "8", "--block", "axbxc"], "axbxc"),
    (["simulate", "8", "8", "8", "--block", "48x48x48"], "--block=48"),
    (["simulate", "8", "8", "8", "--cus", "300"], "cus=300"),
    (["simulate", "8", "8", "8", "--cus", "4"], "--cus=4: fewer CUs than mi300x's 8 XCDs"),
    (["simulate", "8", "8", "8", "--grid", "0"], "grid=0"),
    (["simulate", "8", "8", "8", "--split-k", "2"], "split_k"),
    (
        ["simulate", "8", "8", "8", "--strategy", "persistent", "--fixup", "turnstile"],
        "--fixup='turnstile': only --strategy='streamk' or 'work_stealing' takes it",
    ),
    (
        ["simulate", "8", "8", "8", "--strategy", "work_stealing", "--ws-counter-map", "xcd"],
        "--ws-counter-map='xcd': accepted values are 'hardware', 'logical', "
        "'hardware-xcd-logical-slot' or a function",
    ),
    (["simulate", "8", "8", "8", "--tile-order", "strided"], "--tile-order='strided': only"),
    (["simulate", "8", "8", "8", "--counters-per-xcd", "2"], "only --strategy='work_stealing'"),
    (["simulate", "8", "8", "8", "--global-counter"], "--global-counter=True: only"),
    (["simulate", "8", "8", "8", "--xcd-chunk", "0"], "--xcd-chunk=0"),
    (["simulate", "8", "8", "8", "--trace", "out.txt"], "*.json"),
    (["simulate", "8", "8", "8", "--gantt", "out.jpg"], "*.png"),
    (["simulate", "8", "8", "8", "--jitter", "1.5"], "jitter"),
    (["simulate", "8", "8", "8", "--cus"], "--cus"),
    (["simulate", "8", "8"], "K"),
    (["simulate"], "M, N, K"),
    ([], "command"),
    (["simulate", "8", "8", "8", "--bogus"], "--bogus"),
    (["bogus"], "bogus"),
    (["devices", "extra"], "extra"),
]


@pytest.mark.parametrize(
    "argv, expected", BAD_INPUT, ids=[" ".join(a) or "(none)" for a, _ in BAD_INPUT]
)
def test_bad_input_exits_2_with_one_error_line(capsys, argv, expected):
    code, out, err = run_main(capsys, argv)
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("refsim: error: ")
    assert expected in lines[0]
    assert "Traceback" not in err


def test_unwritable_trace_path_exits_2_with_one_error_line(capsys, tmp_path):
    missing = tmp_path / "no-such-dir" / "run.json"
    code, _, err = run_main(capsys, SMALL + ["--trace", str(missing)])
    assert code == 2
    assert err.splitlines() == [err.strip()] and err.startswith("refsim: error: ")
    assert str(missing) in err


@pytest.mark.parametrize(
    "args",
    [
        ["simulate", "0", "8", "8"],
        ["simulate", "8", "8", "8", "--block", "256x256"],
        ["simulate", "8", "8", "8", "--bogus"],
    ],
    ids=["zero-size", "malformed-block", "unknown-option"],
)
def test_bad_input_through_the_console_script(args):
    """The real process, usage text and all: one line on stderr, exit 2, no traceback."""
    proc = run_process([console_script(), *args])
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("refsim: error: ")
    assert "Traceback" not in proc.stderr


def test_bad_input_through_python_dash_m():
    proc = run_process([sys.executable, "-m", "refsim", "simulate", "8", "8", "8", "--device", "x"])
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("refsim: error: ")


def test_main_help_returns_0(capsys):
    assert main(["--help"]) == 0
    assert "simulate" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# A predicted deadlock: exit 1 and who waits on whom.


def test_deadlock_case_really_deadlocks():
    """One CU: program 0 owns the split tile and waits for program 1, which never gets the CU."""
    result = refsim.simulate(
        64, 64, 4096, 1, xcds=1, grid=2, block_m=64, block_n=64, block_k=64, sk_hybrid="one-wave"
    )
    assert result.deadlock is not None
    assert result.deadlock.waiting == ((0, 0, 0, 1),)  # (program, CU, tile, awaited program)
    assert result.deadlock.undispatched == (1,)


def test_deadlock_exits_1_and_describes_the_wait(capsys):
    code, out, err = run_main(capsys, DEADLOCK)
    assert code == 1
    assert err == ""
    assert "deadlock at t=" in out
    assert "program 0 on CU 0 waits for program 1's partial of tile 0 (never started)" in out
    assert "queued for a slot that never frees: 1" in out


def test_deadlock_json_exits_1_and_carries_the_description(capsys):
    code, out, _ = run_main(capsys, DEADLOCK + ["--json"])
    assert code == 1
    summary = json.loads(out)
    assert "program 0 on CU 0 waits for program 1" in summary["deadlock"]
    assert summary["tflops"] == 0.0


def test_no_deadlock_with_a_second_cu(capsys):
    """The same launch on two CUs runs both programs at once and finishes."""
    argv = [
        "simulate",
        "64",
        "64",
        "4096",
        "--cus",
        "2",
        "--xcds",
        "1",
        "--grid",
        "2",
        "--block",
        "64x64x64",
        "--sk-hybrid",
        "one-wave",
    ]
    code, out, _ = run_main(capsys, argv)
    assert code == 0 and "deadlock" not in out


# --------------------------------------------------------------------------------------------
# Lost work: exit 1, the coverage errors instead of a throughput.

# The work-stealing launch (tests/test_schedule_hooks.py explains its 20 lost counters).
LOST_WORK = [
    "simulate",
    "5120",
    "5120",
    "512",
    "--strategy",
    "work_stealing",
    "--counters-per-xcd",
    "8",
    "--ws-counter-map",
    "hardware-xcd-logical-slot",
    "--ws-counter-ranges",
    "per-xcd",
]


def test_lost_work_exits_1_and_lists_what_was_lost(capsys):
    code, out, err = run_main(capsys, LOST_WORK)
    assert (code, err) == (1, "")
    assert "TFLOP/s" not in out.replace("no TFLOP/s", "")
    assert "makespan" in out and "no TFLOP/s: work lost (below)" in out
    assert (
        "work lost: 20 counters never served, 56 programs took nothing, 122 tile K-ranges "
        "never computed\n"
    ) in out
    assert "  counter 5 never served: no program draws from it, so its tiles [35, 42)" in out
    assert "  ... 119 more (all of them in SimResult.coverage_errors" in out


def test_lost_work_json_has_no_throughput_and_every_error(capsys):
    code, out, _ = run_main(capsys, LOST_WORK + ["--json"])
    assert code == 1
    summary = json.loads(out)
    assert summary["tflops"] is None and summary["deadlock"] is None
    assert len(summary["coverage_errors"]) == 20 + 1 + 122
    assert summary["ws_counter_map"] == "hardware-xcd-logical-slot"
    assert summary["ws_counter_ranges"] == "per-xcd"


def test_a_reader_that_leaves_early_ends_the_output_quietly():
    """``refsim simulate ... | head``: the long summary meets a closed pipe, and the command
    still exits with its status, without an error line."""
    with subprocess.Popen(
        [console_script(), *LOST_WORK], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdout.readline().startswith(b"GEMM 5120x5120x512")
        proc.stdout.close()
        assert proc.wait(timeout=60) == 1
        assert proc.stderr.read() == b""


def test_the_schedule_presets_reach_the_config(capsys):
    code, out, _ = run_main(capsys, ["simulate", "5120", "5120", "512", "--sk-hybrid", "remainder"])
    assert code == 0 and "304 DP, 96 SK" in out and "sk_hybrid remainder" in out
    code, out, _ = run_main(
        capsys, SMALL + ["--strategy", "persistent", "--tile-order", "contiguous", "--json"]
    )
    assert code == 0 and json.loads(out)["tile_order"] == "contiguous"


# --------------------------------------------------------------------------------------------
# Options read from GemmConfig; version; devices as JSON.


def test_every_config_field_has_its_flag_in_the_help(capsys):
    assert main(["simulate", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for name in FIELD_NAMES:
        assert FLAGS[name] in text, name
    assert "one of owner-waits, turnstile, last-arriver, atomic (default owner-waits)" in text
    assert "(default off); work_stealing only" in text
    assert "one of two-tile, one-wave, remainder (default two-tile); streamk only" in text
    assert "one of hardware, logical, hardware-" in text  # argparse may wrap at the hyphen
    assert "(default hardware); work_stealing only" in text
    assert "one of strided, contiguous (default strided); data_parallel and persistent" in text


def test_xcd_remap_reaches_the_config(capsys):
    code, out, _ = run_main(capsys, SMALL + ["--no-xcd-remap", "--json"])
    assert code == 0
    expected = refsim.simulate(
        512, 512, 512, 16, block_m=64, block_n=64, block_k=64, xcd_remap=False
    )
    assert json.loads(out)["makespan_us"] == expected.makespan_us


def test_version_prints_the_package_version(capsys):
    code, out, _ = run_main(capsys, ["--version"])
    assert code == 0 and out.strip() == f"refsim {refsim.__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", refsim.__version__)


def test_devices_json_lists_every_profile_field(capsys):
    code, out, err = run_main(capsys, ["devices", "--json"])
    assert (code, err) == (0, "")
    profiles = json.loads(out)
    assert [p["name"] for p in profiles] == list(PROFILES)
    for p in profiles:
        profile = PROFILES[p.pop("name")]
        assert p.pop("default") == (profile.name == refsim.DEFAULT_DEVICE)
        calibration = refsim.calibration.for_profile(profile.name)
        assert p.pop("calibration") == (calibration and calibration.to_dict())
        assert p["cus"] == profile.cus and p["peak_tflops"] == dict(profile.peak_tflops)
        assert set(p) | {"name"} == {f for f in profile.__dataclass_fields__}


# --------------------------------------------------------------------------------------------
# Rough edges: absurd sizes, output formats, missing matplotlib, fitted blocks.


def test_absurd_sizes_exit_2_at_once_naming_the_limit(capsys):
    began = time.perf_counter()
    code, out, err = run_main(capsys, ["simulate", "10000000000", "10000000000", "10000000000"])
    assert time.perf_counter() - began < 1.0
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and "REFSIM_MAX_WORK_ITEMS" in err


def test_absurd_sizes_through_the_console_script():
    proc = run_process([console_script(), "simulate", "10000000000", "10000000000", "1"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "REFSIM_MAX_WORK_ITEMS" in proc.stderr


@pytest.mark.parametrize("name", ["run.png", "run.svg", "run.pdf"])
def test_gantt_formats_by_suffix(capsys, tmp_path, name):
    code, _, _ = run_main(capsys, SMALL + ["--gantt", str(tmp_path / name)])
    assert code == 0 and (tmp_path / name).stat().st_size > 0


@pytest.mark.parametrize("flag, name", [("--trace", "run.csv"), ("--gantt", "run.json")])
def test_wrong_output_format_exits_2_before_simulating(capsys, tmp_path, flag, name):
    code, out, err = run_main(capsys, SMALL + [flag, str(tmp_path / name)])
    assert (code, out) == (2, "") and len(err.splitlines()) == 1
    assert not (tmp_path / name).exists()


def test_missing_matplotlib_exits_2_before_simulating(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes the import fail
    code, out, err = run_main(capsys, SMALL + ["--gantt", str(tmp_path / "run.png")])
    assert (code, out) == (2, "")
    assert err.strip() == "refsim: error: --gantt needs matplotlib: pip install 'refsim[plot]'"


def test_fitted_blocks_are_said_in_the_summary(capsys):
    code, out, _ = run_main(capsys, ["simulate", "100", "100", "100"])
    assert code == 0 and "blocks 128x128x128 (fitted to the problem)" not in out
    assert "blocks 128x128x64 (fitted to the problem)" in out
    code, out, _ = run_main(capsys, ["simulate", "100", "100", "100", "--json"])
    assert json.loads(out)["block_fit"] == "fitted"
