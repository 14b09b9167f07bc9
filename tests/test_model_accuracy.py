"""benchmarks/model_accuracy.py on the CPU: its held-out shapes, its statistics and its
Markdown/CSV report from hand-made rows, ``--list`` and its refusal without a GPU."""

import csv
import math
import os
import subprocess
import sys

import pytest
import torch
from test_benchmark_suite import BENCHMARKS, ENV, benchmark_module

import refsim
from kernels.calibrate import blocks_to_measure
from refsim.calibration import calibration_shapes
from refsim.config import GemmConfig
from refsim.hardware import PROFILES

SCRIPT = BENCHMARKS / "model_accuracy.py"
REQUIRED_CATEGORIES = {"squares", "waves-132", "skinny-m", "skinny-n", "large-k", "small", "llm"}


@pytest.fixture(scope="module")
def accuracy():
    with benchmark_module("model_accuracy") as module:
        yield module


def test_held_out_shapes_are_no_calibration_shape_on_132_sms(accuracy):
    calibrated = {
        size for _, block in blocks_to_measure() for size in calibration_shapes(*block, 132)
    }
    assert calibrated
    assert not {shape.size for shape in accuracy.HELD_OUT} & calibrated
    assert accuracy.select_shapes() == list(accuracy.HELD_OUT)


def test_held_out_shapes_are_at_least_30_unique_over_every_category(accuracy):
    shapes = accuracy.HELD_OUT
    assert len(shapes) >= 30
    assert len({shape.size for shape in shapes}) == len(shapes)
    assert {shape.category for shape in shapes} == REQUIRED_CATEGORIES
    quick = accuracy.select_shapes(quick=True)
    assert [shape.category for shape in quick] == list(dict.fromkeys(s.category for s in shapes))


def test_wave_shapes_sit_below_at_and_above_whole_waves_of_the_candidates_tiles(accuracy):
    offsets = set()
    for shape in accuracy.HELD_OUT:
        if shape.category == "waves-132":
            tiles = math.ceil(shape.m / 128) * math.ceil(shape.n / 256)
            offset = (tiles + 66) % 132 - 66
            assert abs(offset) <= 8 and str(tiles) in shape.label, (shape, tiles)
            offsets.add((offset > 0) - (offset < 0))
    assert offsets == {-1, 0, 1}


def test_every_candidate_runs_every_held_out_shape_on_an_h200(accuracy):
    assert set(accuracy.CANDIDATES) == {
        "data_parallel",
        "persistent",
        "work_stealing",
        "split_k",
        "streamk owner-waits",
        "streamk turnstile",
        "streamk last-arriver",
    }
    for shape in accuracy.HELD_OUT:
        for candidate, options in accuracy.CANDIDATES.items():
            config = GemmConfig(
                *shape.size,
                dtype="bf16",
                device=PROFILES["h200"],
                cus=132,
                **accuracy.candidate_blocks(shape, "bf16"),
                **options,
            )
            assert config.strategy == options["strategy"], (shape, candidate)


def test_candidate_config_takes_the_candidates_blocks_and_options(accuracy):
    skinny = accuracy.Shape("skinny-m", "decode", 8, 4096, 4096)
    config = accuracy.candidate_config(skinny, "fp16", "streamk turnstile", torch.device("cpu"))
    assert (config.m, config.n, config.k, config.dtype) == (8, 4096, 4096, "fp16")
    assert (config.block_m, config.block_n, config.block_k) == (16, 256, 64)  # auto's decode block
    assert (config.strategy, config.fixup) == ("streamk", "turnstile")


def test_roofline_is_compute_bound_for_squares_and_memory_bound_for_decode(accuracy):
    square = GemmConfig(4096, 4096, 4096, dtype="bf16", device="h200")
    assert accuracy.roofline_us(square) == pytest.approx(2 * 4096**3 / 989.4e6)
    decode = GemmConfig(1, 4096, 4096, dtype="fp16", device="h200")
    assert accuracy.roofline_us(decode) == pytest.approx((4096 + 4096**2 + 4096) * 2 / 4.8e6)


def test_percentile_interpolates_between_ranks(accuracy):
    assert accuracy.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert accuracy.percentile([0.0, 0.0, 0.25, 0.5], 50) == 0.125
    assert accuracy.percentile([0.0, 0.0, 0.25, 0.5], 90) == pytest.approx(0.425)
    assert accuracy.percentile([7.0], 90) == 7.0
    with pytest.raises(ValueError, match="no values"):
        accuracy.percentile([], 50)


def fake_rows(accuracy):
    """Four shapes, two candidates each: (predicted, datasheet, roofline, traced, do_bench)."""
    shapes = [accuracy.Shape("squares", f"s{i}", 256 * i, 256, 256) for i in range(1, 5)]
    dp, sk = "data_parallel", "streamk last-arriver"
    table = [
        (shapes[0], dp, 125.0, 90.0, 50.0, 100.0, 100.0),
        (shapes[0], sk, 90.0, 100.0, 50.0, 80.0, 80.0),
        (shapes[1], dp, 150.0, 150.0, 60.0, 100.0, 102.0),
        (shapes[1], sk, 200.0, 160.0, 60.0, 100.0, 100.0),
        (shapes[2], dp, 100.0, 100.0, 70.0, 100.0, 125.0),
        (shapes[2], sk, 150.0, 200.0, 70.0, 100.0, 100.0),
        (shapes[3], dp, 50.0, 50.0, 40.0, 50.0, 50.0),
    ]
    rows = [  # no launch overhead: the in-kernel predictions are the makespans
        accuracy.Row(
            shape, "bf16", candidate, f"{candidate} 128x256x64", *values,
            predicted_kernel_us=values[0], datasheet_kernel_us=values[1],
        )
        for shape, candidate, *values in table
    ]  # fmt: skip
    return [
        *rows,
        accuracy.Row(
            shapes[3], "bf16", sk, "streamk last-arriver 128x256x64", 60.0, 60.0, 40.0,
            problem="output: relative error 1",
        ),
        accuracy.Row(shapes[3], "bf16", "split_k", problem="refused: split_k=9 > iterations"),
    ]  # fmt: skip


def test_error_stats_per_candidate_and_over_all(accuracy):
    stats = accuracy.error_stats(fake_rows(accuracy), "predicted_us", "kernel_us")
    # Traced errors: data_parallel 0.25, 0.5, 0, 0; streamk 0.125, 1, 0.5 (the wrong and
    # refused rows have no measurement).
    assert list(stats) == ["data_parallel", "streamk last-arriver", accuracy.ALL]
    assert stats["data_parallel"].count == 4
    assert stats["data_parallel"].median == 0.125
    assert stats["data_parallel"].p90 == pytest.approx(0.425)
    assert stats["streamk last-arriver"].count == 3
    assert stats["streamk last-arriver"].median == 0.5
    assert stats["streamk last-arriver"].p90 == pytest.approx(0.9)
    assert stats[accuracy.ALL].count == 7
    assert stats[accuracy.ALL].median == 0.25
    assert stats[accuracy.ALL].p90 == pytest.approx(0.7)

    against_bench = accuracy.error_stats(fake_rows(accuracy), "predicted_us", "do_bench_us")
    # data_parallel against do_bench: 0.25, 48/102, 0.2, 0.
    assert against_bench["data_parallel"].median == pytest.approx(0.225)
    assert against_bench["data_parallel"].p90 == pytest.approx(0.25 + 0.7 * (48 / 102 - 0.25))


def test_the_traced_time_is_set_beside_the_prediction_without_its_launch_overhead(accuracy):
    shape = accuracy.Shape("small", "s", 192, 192, 192)
    row = accuracy.Row(
        shape, "bf16", "data_parallel", "data_parallel 128x128x64",
        predicted_us=6.0, datasheet_us=5.0, roofline_us=1.0, kernel_us=2.5, do_bench_us=7.5,
        predicted_kernel_us=2.0, datasheet_kernel_us=1.0,
    )  # fmt: skip
    against = {
        (predictor, measure): accuracy.error_stats([row], predictor, measure)["data_parallel"]
        for predictor in accuracy.PREDICTORS
        for measure in accuracy.MEASURES
    }
    assert against["predicted_us", "kernel_us"].median == pytest.approx(0.2)  # 2.0 vs 2.5
    assert against["predicted_us", "do_bench_us"].median == pytest.approx(0.2)  # 6.0 vs 7.5
    assert against["datasheet_us", "kernel_us"].median == pytest.approx(0.6)  # 1.0 vs 2.5
    assert against["roofline_us", "kernel_us"].median == pytest.approx(0.6)  # no launch in it


def test_error_stats_without_rows_is_empty(accuracy):
    stats = accuracy.error_stats([], "roofline_us", "do_bench_us")
    assert stats == {accuracy.ALL: accuracy.ErrorStats(0, None, None)}


def test_pick_stats_hit_rate_and_regret(accuracy):
    rows = fake_rows(accuracy)
    # refsim picks streamk on s1 (the fastest), data_parallel on s2 (2% slower: a hit) and on
    # s3 (25% slower: a miss); s4 has one timed candidate and is not counted.
    model = accuracy.pick_stats(rows, "predicted_us")
    assert (model.shapes, model.hits) == (3, 2)
    assert model.geomean_regret == pytest.approx((1.0 * 1.02 * 1.25) ** (1 / 3))
    # The datasheet picks data_parallel everywhere; the roofline ties, so the first row wins.
    for predictor in ("datasheet_us", "roofline_us"):
        picks = accuracy.pick_stats(rows, predictor)
        assert (picks.shapes, picks.hits) == (3, 1)
        assert picks.geomean_regret == pytest.approx((1.25 * 1.02 * 1.25) ** (1 / 3))
    assert accuracy.pick_stats(rows, "predicted_us", tolerance=0.01).hits == 1
    assert accuracy.pick_stats(rows[-3:], "predicted_us") == accuracy.PickStats(0, 0, None)


def test_report_has_the_header_the_statistics_and_one_csv_row_per_measurement(accuracy, tmp_path):
    rows = fake_rows(accuracy)
    markdown, table = accuracy.write_report(rows, ENV, "4 held-out shapes", tmp_path / "out")
    assert (markdown.name, table.name) == ("model-accuracy-h200.md", "model-accuracy-h200.csv")
    text = markdown.read_text()
    for field in ("NVIDIA H200", "driver 570.86.15", "torch 2.13.0", "Triton 3.6.0", "2026-01-02"):
        assert field in text
    assert "4 held-out shapes" in text
    assert "| data_parallel | refsim | 4 | 12.5% | 42.5% | 4 | 22.5% |" in text
    assert "| all candidates | refsim | 7 | 25.0% | 70.0% |" in text
    regret = (1.02 * 1.25) ** (1 / 3)
    assert f"| refsim | 3 | 2 (67%) | {regret:.3f} |" in text
    assert "## What transfers to other GPUs" in text
    assert "datasheet" in text.split("## What transfers to other GPUs")[1]
    assert "| s2 | 512x256x256 | bf16 | data_parallel | data_parallel 128x256x64 | 150.00 |" in text
    assert "refused: split_k=9 > iterations" in text

    lines = table.read_text().splitlines()
    assert lines[0] == "# GPU NVIDIA H200, driver 570.86.15, torch 2.13.0, Triton 3.6.0, 2026-01-02"
    written = list(csv.DictReader(lines[1:]))
    assert len(written) == len(rows)
    assert tuple(written[0]) == accuracy.CSV_FIELDS
    first = written[0]
    assert (first["m"], first["candidate"], first["predicted_us"]) == (
        "256",
        "data_parallel",
        "125.000",
    )
    assert (first["kernel_us"], first["do_bench_us"], first["problem"]) == (
        "100.000",
        "100.000",
        "",
    )
    refused = written[-1]
    assert (refused["predicted_us"], refused["do_bench_us"]) == ("", "")
    assert refused["problem"] == "refused: split_k=9 > iterations"


def test_list_prints_the_held_out_shapes_without_a_gpu(accuracy):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--list"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "HIP_VISIBLE_DEVICES": ""},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    headers = {line.split(" (")[0] for line in lines if line.endswith(":")}
    shape_lines = [line for line in lines if line.startswith("  ")]
    assert headers == REQUIRED_CATEGORIES
    assert len(shape_lines) == len(accuracy.HELD_OUT)
    assert lines[-1] == f"{len(accuracy.HELD_OUT)} shapes, dtypes bf16"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_without_a_gpu_main_returns_2_with_one_line(accuracy, capsys):
    assert accuracy.main([]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
    assert "GPU" in captured.err


def test_from_csv_predicts_what_an_earlier_run_measured(accuracy, tmp_path):
    shape = accuracy.HELD_OUT[0]
    config = GemmConfig(
        *shape.size,
        dtype="bf16",
        device=PROFILES["h200"],
        cus=132,
        xcds=1,
        **accuracy.candidate_blocks(shape, "bf16"),
        strategy="data_parallel",
    )
    measured = [
        accuracy.Row(shape, "bf16", "data_parallel", accuracy.describe(config), None, None, None,
                     kernel_us=210.0, do_bench_us=220.0),
        accuracy.Row(shape, "bf16", "split_k", "", problem="refused: split_k=9 > iterations"),
    ]  # fmt: skip
    _, table = accuracy.write_report(measured, ENV, "measured only", tmp_path / "gpu")
    assert accuracy.main(["--from-csv", str(table), "--out-dir", str(tmp_path / "out")]) == 0
    written = list(csv.DictReader((tmp_path / "out" / table.name).read_text().splitlines()[1:]))
    predicted = refsim.simulate(config)
    assert float(written[0]["predicted_us"]) == pytest.approx(predicted.makespan_us, abs=1e-3)
    records = predicted.records  # the in-kernel span: first start to last end, as traced
    in_kernel = max(r.t_end_us for r in records) - min(r.t_start_us for r in records)
    assert float(written[0]["predicted_kernel_us"]) == pytest.approx(in_kernel, abs=1e-3)
    assert in_kernel < predicted.makespan_us  # the launch overhead before the first program
    assert float(written[0]["datasheet_us"]) == pytest.approx(
        refsim.simulate(config, calibration=False).makespan_us, abs=1e-3
    )
    assert (written[0]["kernel_us"], written[0]["do_bench_us"]) == ("210.000", "220.000")
    assert written[1]["problem"] == "refused: split_k=9 > iterations"


def test_from_csv_predicts_split_k_with_the_reduction_the_run_measured(accuracy, tmp_path):
    """A split-K row measured before the reduction had row bands (its config names no bands)
    is predicted with one reduction program per tile; a row naming its bands, with them."""

    def config_of(shape):
        return GemmConfig(
            *shape.size,
            dtype="bf16",
            device=PROFILES["h200"],
            cus=132,
            xcds=1,
            **accuracy.candidate_blocks(shape, "bf16"),
            **accuracy.CANDIDATES["split_k"],
        )

    shape = next(s for s in accuracy.HELD_OUT if config_of(s).reduce_bands >= 8)
    banded = config_of(shape)
    single = banded.replace(reduce_bands=1)
    assert "bands" in accuracy.describe(banded) and "bands" not in accuracy.describe(single)
    measured = [
        accuracy.Row(shape, "bf16", "split_k", accuracy.describe(c), kernel_us=50.0,
                     do_bench_us=60.0)
        for c in (single, banded)
    ]  # fmt: skip
    _, table = accuracy.write_report(measured, ENV, "measured only", tmp_path / "gpu")
    assert accuracy.main(["--from-csv", str(table), "--out-dir", str(tmp_path / "out")]) == 0
    written = list(csv.DictReader((tmp_path / "out" / table.name).read_text().splitlines()[1:]))
    expected = [refsim.simulate(c).makespan_us for c in (single, banded)]
    assert expected[0] != expected[1]
    assert [float(row["predicted_us"]) for row in written] == pytest.approx(expected, abs=1e-3)


def test_from_csv_refuses_a_file_that_is_not_a_report_in_one_line(accuracy, tmp_path, capsys):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    assert accuracy.main(["--from-csv", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "not a report CSV" in err


def test_held_out_shapes_are_no_suite_shape_the_split_terms_were_fitted_to(accuracy, monkeypatch):
    with benchmark_module("suite") as suite:
        suite_shape = suite.all_shapes()[3]
        suite_sizes = {shape.size for shape in suite.all_shapes()}
    assert not {shape.size for shape in accuracy.HELD_OUT} & suite_sizes
    monkeypatch.setattr(accuracy, "HELD_OUT", (*accuracy.HELD_OUT, suite_shape))
    assert suite_shape not in accuracy.select_shapes()
