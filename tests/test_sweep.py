"""Tests of ``refsim sweep``: the spec, the rows, the Dask runs (embedded and by address), resume."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import pytest

yaml = pytest.importorskip("yaml")
distributed = pytest.importorskip("distributed")
pytest.importorskip("pyarrow")

import refsim  # noqa: E402
from refsim.cli import main  # noqa: E402
from refsim.config import FIELD_NAMES  # noqa: E402
from refsim.sweep import SpecError, expand, read_results  # noqa: E402
from refsim.sweep.results import part_files  # noqa: E402
from refsim.sweep.runner import batch_size, simulate_row  # noqa: E402
from refsim.sweep.spec import config_key  # noqa: E402

RESULT_COLUMNS = [
    "key",
    "error",
    "makespan_us",
    "tflops",
    "xcd_utilisation",
    "longest_fixup_wait_us",
    "deadlock",
    "coverage_errors",
    "calibration",
    "refsim_version",
    "used_grid",
    "used_sk_tiles",
    "used_block_m",
    "used_block_n",
    "used_block_k",
    "used_strategy",
]
# Small shapes on a small device: every simulation takes a few milliseconds.
SMALL_SPEC = {
    "cus": 16,
    "xcds": 1,
    "shapes": [[256, 256, 512], [384, 256, 256]],
    "block_m": 64,
    "block_n": 64,
    "strategy": ["data_parallel", "streamk", "split_k"],
    "fixup": [None, "turnstile"],
}


def write_spec(path, spec):
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def sorted_rows(path):
    return sorted(read_results(path).to_pylist(), key=lambda row: row["key"])


# --------------------------------------------------------------------------------------------
# The spec.


def test_lists_multiply_and_null_means_not_given():
    configs = expand(
        {"shapes": [[64, 64, 64]], "strategy": ["streamk", "split_k"], "grid": [None, 8]}
    )
    assert configs == [
        {"m": 64, "n": 64, "k": 64, "strategy": "streamk"},
        {"m": 64, "n": 64, "k": 64, "strategy": "streamk", "grid": 8},
        {"m": 64, "n": 64, "k": 64, "strategy": "split_k"},
        {"m": 64, "n": 64, "k": 64, "strategy": "split_k", "grid": 8},
    ]


def test_sizes_as_fields_multiply_and_repeats_run_once():
    configs = expand({"m": [64, 128], "n": 32, "k": [16, 16], "dtype": "fp16"})
    assert [(c["m"], c["n"], c["k"]) for c in configs] == [(64, 32, 16), (128, 32, 16)]
    assert expand({"shapes": [[8, 8, 8], [8, 8, 8]]}) == [{"m": 8, "n": 8, "k": 8}]


def test_ranges_add_or_multiply_and_include_the_stop():
    configs = expand({"shapes": [{"m": [256, 2048, "2x"], "n": [100, 300, 100], "k": 64}]})
    shapes = [(c["m"], c["n"], c["k"]) for c in configs]
    assert shapes == [(m, n, 64) for m in (256, 512, 1024, 2048) for n in (100, 200, 300)]


def test_llama_shape_sets_are_the_layer_projections():
    configs = expand(
        {"shapes": [{"set": "llama3-8b", "tokens": [16]}, {"set": "llama3-70b", "tokens": [1]}]}
    )
    assert [(c["m"], c["n"], c["k"]) for c in configs] == [
        (16, 4096, 4096),  # q, o
        (16, 1024, 4096),  # k, v (8 KV heads x 128)
        (16, 14336, 4096),  # gate, up
        (16, 4096, 14336),  # down
        (1, 8192, 8192),
        (1, 1024, 8192),
        (1, 28672, 8192),
        (1, 8192, 28672),
    ]
    by_name = expand({"shapes": ["llama3-8b"]})
    assert sorted({c["m"] for c in by_name}) == [1, 16, 128, 1024, 4096, 16384]


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ({"shapes": [[8, 8, 8]], "stratgy": "streamk"}, "'stratgy'"),
        ({"shapes": [[8, 8, 8]], "grid": "many"}, "'grid'"),
        ({"shapes": [[8, 8, 8]], "grid": True}, "'grid'"),
        ({"shapes": [[8, 8, 8]], "global_counter": 1}, "'global_counter'"),
        ({"shapes": [[8, 8, 8]], "strategy": []}, "'strategy'"),
        ({"shapes": [[8, 8, 8]], "strategy": "stream-k"}, "'strategy'"),
        ({"shapes": [[8, 8, 8]], "device": "a100"}, "'device'"),
        ({"shapes": []}, "'shapes'"),
        ({"shapes": [[8, 8]]}, "'shapes'"),
        ({"shapes": [[8, 0, 8]]}, "'shapes'"),
        ({"shapes": [{"m": [8, 64, "1x"], "n": 8, "k": 8}]}, "'shapes'"),
        ({"shapes": [{"m": [64, 8, 8], "n": 8, "k": 8}]}, "'shapes'"),
        ({"shapes": ["llama3-9b"]}, "'shapes': unknown shape set 'llama3-9b'"),
        ({"shapes": [[8, 8, 8]], "m": 8}, "'m'"),
        ({"m": 8, "n": 8}, "'shapes'"),
        ([1, 2], "mapping"),
    ],
)
def test_bad_specs_name_their_key(spec, named):
    with pytest.raises(SpecError, match=named) as error:
        expand(spec)
    assert "\n" not in str(error.value)


def test_the_key_is_the_given_fields_in_field_order():
    assert (
        config_key({"strategy": "split_k", "k": 3, "m": 1, "n": 2})
        == "m=1,n=2,k=3,strategy=split_k"
    )


def test_batches_stay_within_bounds():
    assert batch_size(10, 2) == 16
    assert batch_size(2000, 2) == 125
    assert batch_size(10**6, 2) == 256


# --------------------------------------------------------------------------------------------
# Rows.


def test_a_refused_combination_is_a_row_with_its_error():
    row = simulate_row(
        {"m": 64, "n": 64, "k": 64, "strategy": "data_parallel", "fixup": "turnstile"}
    )
    assert "only strategy='streamk' or 'work_stealing' takes it" in row["error"]
    assert row["fixup"] == "turnstile" and row["makespan_us"] is None and row["used_grid"] is None


def test_a_deadlock_is_recorded_with_no_tflops():
    requested = dict(
        m=64,
        n=64,
        k=4096,
        cus=1,
        xcds=1,
        grid=2,
        block_m=64,
        block_n=64,
        block_k=64,
        sk_hybrid="one-wave",
    )
    row = simulate_row(requested)
    assert row["error"] is None and row["deadlock"] is True and row["tflops"] is None
    assert row["used_grid"] == 2 and row["used_sk_tiles"] == 1


def test_a_row_holds_the_simulation_and_what_was_derived():
    row = simulate_row({"m": 512, "n": 512, "k": 512, "cus": 16, "xcds": 1, "strategy": "streamk"})
    result = refsim.simulate(512, 512, 512, cus=16, xcds=1, strategy="streamk")
    assert row["makespan_us"] == result.makespan_us and row["tflops"] == result.tflops
    assert row["xcd_utilisation"] == result.xcd_utilisation()
    assert (row["used_grid"], row["used_sk_tiles"]) == (16, result.config.sk_tiles)
    assert (row["used_block_m"], row["used_block_k"]) == (256, 64)
    assert row["block_m"] is None and row["device"] is None and row["deadlock"] is False
    assert row["calibration"] == "datasheet" and row["refsim_version"] == refsim.__version__
    assert row["used_strategy"] == "streamk"


# --------------------------------------------------------------------------------------------
# Runs on Dask.


@pytest.fixture(scope="module")
def embedded_run(tmp_path_factory):
    """The small spec swept by the CLI on an embedded cluster of 2 workers."""
    folder = tmp_path_factory.mktemp("embedded")
    spec = write_spec(folder / "spec.yaml", SMALL_SPEC)
    out = str(folder / "results.parquet")
    assert main(["sweep", spec, "--out", out, "--workers", "2", "--batch-size", "4"]) == 0
    return spec, out


def test_the_embedded_cluster_writes_every_column_once_per_configuration(embedded_run):
    out = embedded_run[1]
    table = read_results(out)
    assert table.column_names == list(FIELD_NAMES) + RESULT_COLUMNS
    rows = table.to_pylist()
    assert len(rows) == len({row["key"] for row in rows}) == 12
    assert len(part_files(out)) == 3
    refused = [row for row in rows if row["error"]]
    assert {(row["strategy"], row["fixup"]) for row in refused} == {
        ("data_parallel", "turnstile"),
        ("split_k", "turnstile"),
    }
    assert all(
        row["tflops"] > 0 and row["coverage_errors"] == [] for row in rows if not row["error"]
    )


def test_a_rerun_adds_nothing(embedded_run, capsys):
    spec, out = embedded_run
    parts = part_files(out)
    assert main(["sweep", spec, "--out", out]) == 0
    assert "12 configurations: 0 simulated (0 refused), 12 already in" in capsys.readouterr().out
    assert part_files(out) == parts


def test_a_cluster_by_address_gives_the_same_rows(embedded_run, tmp_path):
    spec, out = embedded_run
    other = str(tmp_path / "by_address.parquet")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        code = main(["sweep", spec, "--out", other, "--scheduler", cluster.scheduler_address])
    assert code == 0
    assert sorted_rows(other) == sorted_rows(out)


def test_an_interrupted_sweep_resumes_without_loss_or_repeats(tmp_path):
    spec = {
        "cus": 8,
        "xcds": 1,
        "block_m": 32,
        "block_n": 32,
        "block_k": 32,
        "shapes": [{"m": [32, 320, 32], "n": [32, 128, 32], "k": 64}],
        "strategy": ["data_parallel", "streamk", "split_k"],
    }
    spec_path = write_spec(tmp_path / "spec.yaml", spec)
    out = str(tmp_path / "results.parquet")
    command = ["sweep", spec_path, "--out", out, "--workers", "1", "--batch-size", "2"]
    process = subprocess.Popen(
        [sys.executable, "-m", "refsim", *command, "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (os.path.isdir(out) and part_files(out)) and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "run the same command again" in err
    first = read_results(out).column("key").to_pylist()
    assert 0 < len(first) < 120
    assert main(command + ["--no-progress"]) == 0
    keys = read_results(out).column("key").to_pylist()
    assert len(keys) == len(set(keys)) == 120
    assert set(first) <= set(keys)
    assert set(keys) == {config_key(config) for config in expand(spec)}


# --------------------------------------------------------------------------------------------
# The command line's errors.


def test_a_bad_spec_fails_before_running(tmp_path, capsys):
    spec = write_spec(tmp_path / "spec.yaml", {"shapes": [[8, 8, 8]], "block_n": [64, "big"]})
    out = tmp_path / "results.parquet"
    assert main(["sweep", spec, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "key 'block_n'" in err
    assert not out.exists()


@pytest.mark.parametrize("command", [["best"], ["table", "--device", "mi300x", "--out", "t.json"]])
def test_answers_refuse_what_is_not_a_results_dataset(tmp_path, capsys, command):
    (tmp_path / "notes.txt").write_text("not results")
    for path in (tmp_path / "missing.parquet", tmp_path, tmp_path / "notes.txt"):
        assert main([command[0], str(path), *command[1:]]) == 2
        err = capsys.readouterr().err
        assert err.startswith("refsim: error: ") and err.count("\n") == 1


# --------------------------------------------------------------------------------------------
# The calibration each row was simulated with.

# A small problem on a few units of a profile: fast on any profile.
SMALL = {"m": 256, "n": 256, "k": 256, "cus": 8, "xcds": 1, "block_m": 64, "block_n": 64}


def test_a_row_names_the_shipped_calibration_it_was_simulated_with():
    from refsim.calibration import for_profile
    from refsim.sweep.runner import calibration_label

    shipped = for_profile("h200")
    row = simulate_row(dict(SMALL, device="h200"))
    assert row["calibration"] == calibration_label(shipped) != "datasheet"
    assert "h200" in row["calibration"] and shipped.environment["date"] in row["calibration"]
    assert (
        row["makespan_us"] == refsim.simulate(refsim.GemmConfig(**SMALL, device="h200")).makespan_us
    )
    # without a shipped calibration, or with it turned off, the datasheet
    assert simulate_row(dict(SMALL, device="mi300x"))["calibration"] == "datasheet"
    off = simulate_row(dict(SMALL, device="h200"), calibration=False)
    assert off["calibration"] == "datasheet"
    config = refsim.GemmConfig(**SMALL, device="h200")
    assert off["makespan_us"] == refsim.simulate(config, calibration=False).makespan_us


def test_the_spec_chooses_the_calibration_and_the_table_says_which(tmp_path, capsys):
    from refsim.calibration import for_profile, load, save
    from refsim.sweep.runner import calibration_label

    spec = dict(SMALL, strategy=["data_parallel", "streamk"], device=["h200"])
    shipped = for_profile("h200")
    refit = dataclasses.replace(shipped, load_factor=2.0)
    save(refit, tmp_path / "refit.json")
    labels = {}
    for name, value in (
        ("shipped", None),
        ("none", "none"),
        ("off", False),
        ("file", "refit.json"),
    ):
        given = spec if value is None else dict(spec, calibration=value)
        path = write_spec(tmp_path / f"{name}.yaml", given)
        out = str(tmp_path / f"{name}.parquet")
        assert main(["sweep", path, "--out", out, "--workers", "1", "--no-progress"]) == 0
        labels[name] = {row["calibration"] for row in read_results(out).to_pylist()}
        table_path = tmp_path / f"{name}.json"
        assert main(["table", out, "--device", "h200", "--out", str(table_path)]) == 0
        assert json.loads(table_path.read_text())["source"]["calibration"] == labels[name].pop()
        assert not labels[name]
        labels[name] = json.loads(table_path.read_text())["source"]["calibration"]
    assert labels["shipped"] == calibration_label(shipped)
    assert labels["none"] == labels["off"] == "datasheet"
    assert labels["file"] == calibration_label(load(tmp_path / "refit.json"))
    assert labels["file"] != labels["shipped"]
    capsys.readouterr()


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (3, "key 'calibration': 3 is int"),
        ("missing.json", "key 'calibration': missing.json"),
        ("notes.txt", "key 'calibration': notes.txt"),
        ("mi300x.json", "key 'calibration': mi300x.json calibrates profile 'mi300x'"),
    ],
)
def test_a_bad_calibration_is_a_spec_error(tmp_path, capsys, value, named):
    from refsim.calibration import for_profile, save

    (tmp_path / "notes.txt").write_text("not JSON")
    save(dataclasses.replace(for_profile("h200"), profile="mi300x"), tmp_path / "mi300x.json")
    spec = write_spec(tmp_path / "spec.yaml", dict(SMALL, device="h200", calibration=value))
    out = tmp_path / "results.parquet"
    assert main(["sweep", spec, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err, err
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# A spec without a strategy.


def test_a_spec_without_strategy_records_the_default_and_answers_work(tmp_path, capsys):
    spec = write_spec(
        tmp_path / "spec.yaml",
        {"cus": 8, "xcds": 1, "shapes": [[256, 256, 256], [512, 256, 256]], "block_m": [64, 128]},
    )
    out = str(tmp_path / "results.parquet")
    assert main(["sweep", spec, "--out", out, "--workers", "1", "--no-progress"]) == 0
    rows = read_results(out).to_pylist()
    default = refsim.GemmConfig(8, 8, 8).strategy
    assert {row["used_strategy"] for row in rows} == {default}
    assert {row["strategy"] for row in rows} == {None}  # what the spec requested
    capsys.readouterr()
    assert main(["best", out]) == 0
    assert default in capsys.readouterr().out
    table_path = tmp_path / "table.json"
    assert main(["table", out, "--device", "mi300x", "--out", str(table_path)]) == 0
    buckets = json.loads(table_path.read_text())["buckets"]
    assert buckets and all(bucket["strategy"] == default for bucket in buckets)
    pytest.importorskip("matplotlib")
    png = tmp_path / "k256.png"
    assert main(["heatmap", out, "--k", "256", "--out", str(png)]) == 0
    assert png.read_bytes().startswith(b"\x89PNG")


# --------------------------------------------------------------------------------------------
# Heatmap selectors, --out's folder.


def test_heatmap_of_two_dtypes_asks_for_and_takes_dtype(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    spec = write_spec(
        tmp_path / "spec.yaml",
        {"cus": 8, "xcds": 1, "shapes": [[256, 256, 256]], "dtype": ["bf16", "fp32"]},
    )
    out = str(tmp_path / "results.parquet")
    assert main(["sweep", spec, "--out", out, "--workers", "1", "--no-progress"]) == 0
    png = tmp_path / "k.png"
    capsys.readouterr()
    assert main(["heatmap", out, "--k", "256", "--out", str(png)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--dtype" in err and "dtype=" not in err, err
    assert main(["heatmap", out, "--k", "256", "--out", str(png), "--dtype", "fp32"]) == 0
    assert png.read_bytes().startswith(b"\x89PNG")


def test_heatmap_of_two_devices_names_the_device_option(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    spec = write_spec(
        tmp_path / "spec.yaml",
        {"cus": 8, "xcds": 1, "shapes": [[256, 256, 256]], "device": ["mi300x", "h100"]},
    )
    out = str(tmp_path / "results.parquet")
    assert main(["sweep", spec, "--out", out, "--workers", "1", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["heatmap", out, "--k", "256", "--out", str(tmp_path / "k.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--device" in err and "device=" not in err, err


def test_sweep_out_in_a_missing_folder_is_refused_like_simulate(tmp_path, capsys):
    spec = write_spec(tmp_path / "spec.yaml", SMALL_SPEC)
    out = tmp_path / "missing" / "results.parquet"
    assert main(["sweep", spec, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no folder" in err, err
    assert not (tmp_path / "missing").exists()
    trace = tmp_path / "missing" / "t.json"
    assert main(["simulate", "64", "64", "64", "--trace", str(trace)]) == 2
    assert "no folder" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# The graph handed to Dask stays small however many configurations there are.


def test_a_large_sweep_sends_no_large_graph(tmp_path, monkeypatch):
    import dask

    from refsim.sweep import runner

    monkeypatch.setattr(
        runner, "simulate_row", lambda requested, calibration=None: {"key": config_key(requested)}
    )
    written = []
    monkeypatch.setattr(runner.results, "write_part", lambda out, rows: written.extend(rows))
    todo = [{"m": m, "n": 64, "k": 64, "strategy": "streamk"} for m in range(1, 20001)]
    summary = dict(configurations=0, already_done=0, simulated=0, refused=0, parts=0)
    with (
        dask.config.set({"distributed.admin.large-graph-warning-threshold": "100kB"}),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("error", UserWarning)
        runner._run(client, todo, str(tmp_path), None, False, summary)
    keys = [row["key"] for row in written]
    assert len(keys) == len(set(keys)) == len(todo) == summary["simulated"]


def test_resuming_with_another_calibration_is_refused(tmp_path, capsys):
    spec = dict(SMALL, device="h200", strategy=["data_parallel", "streamk"])
    first = write_spec(tmp_path / "first.yaml", spec)
    out = str(tmp_path / "results.parquet")
    assert main(["sweep", first, "--out", out, "--workers", "1", "--no-progress"]) == 0
    other = write_spec(tmp_path / "other.yaml", dict(spec, calibration="none", block_m=32))
    capsys.readouterr()
    assert main(["sweep", other, "--out", out, "--workers", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'datasheet'" in err and "another --out" in err, err
