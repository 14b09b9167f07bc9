"""benchmarks/fit_load_terms.py: it recovers known load terms from runs simulated with them,
leaves out what it cannot time, and refuses bad input in one line."""

import dataclasses

import pytest
from test_benchmark_suite import ENV, benchmark_module

import refsim
from refsim.calibration import BlockTiming, Calibration, block_key, load, save

TRUE_TERMS = {"load_after_us": 40.0, "load_factor": 1.25}
# 64 tiles of 256 K-iterations, 2 waves of 128, 16 tiles of 512: long and short, full and not
SHAPES = [(1024, 1024, 16384), (2048, 2048, 8192), (512, 512, 32768), (1024, 2048, 2048)]


@pytest.fixture(scope="module")
def fitter():
    with benchmark_module("fit_load_terms") as module:
        yield module


def _calibration():
    blocks = {block_key("bf16", 128, 128, 64): BlockTiming(0.3, 1.5, 0.01, 64)}
    return Calibration("h200", "NVIDIA H200", 132, blocks, launch_overhead_us=4.0)


def _span(config, calibration):
    records = refsim.simulate(config, calibration=calibration).records
    return max(r.t_end_us for r in records) - min(r.t_start_us for r in records)


def _suite_csv(path, calibration):
    """A suite CSV whose data-parallel, persistent and work-stealing rows were 'traced' as
    refsim predicts them with TRUE_TERMS, plus rows the fit must leave out (Stream-K, auto,
    an unmeasured block)."""
    with benchmark_module("suite") as suite:
        truth = dataclasses.replace(calibration, **TRUE_TERMS)
        rows = []
        for m, n, k in SHAPES:
            shape = suite.Shape("large-k", f"{m}x{n}x{k}", m, n, k)
            for strategy in ("data_parallel", "persistent", "work_stealing"):
                config = refsim.GemmConfig(
                    m, n, k, dtype="bf16", device="h200", cus=132, xcds=1, strategy=strategy,
                    block_m=128, block_n=128, block_k=64,
                )  # fmt: skip
                traced = _span(config, truth)
                rows.append(
                    suite.Measurement(shape, "bf16", strategy, suite.describe(config), 1.0, traced)
                )
            rows.append(suite.Measurement(shape, "bf16", "auto", "data_parallel 128x128x64", 1, 1))
            rows.append(
                suite.Measurement(
                    shape, "bf16", "streamk last-arriver", "streamk last-arriver 128x128x64", 1, 1
                )
            )
            rows.append(
                suite.Measurement(shape, "bf16", "data_parallel", "data_parallel 128x256x64", 1, 1)
            )
        _, table = suite.write_report(rows, ENV, [], "synthetic", path)  # fmt: skip
    return table


def test_the_fit_recovers_the_terms_the_runs_were_simulated_with(fitter, tmp_path):
    calibration = _calibration()
    table = _suite_csv(tmp_path, calibration)
    samples = fitter.samples_of(table, calibration)
    assert len(samples) == 3 * len(SHAPES)  # auto, Stream-K and 128x256 rows left out
    plain_error = fitter.errors(samples, calibration)
    assert max(plain_error) > 0.05  # the terms matter on these runs
    fitted, mean_error = fitter.fit(samples, calibration)
    assert (fitted.load_after_us, fitted.load_factor) == (40.0, 1.25)
    assert mean_error < 1e-4  # the CSV keeps 3 decimals of each time


def test_write_stores_the_fitted_terms(fitter, tmp_path, capsys):
    path = tmp_path / "h200.json"
    save(_calibration(), path)
    table = _suite_csv(tmp_path, _calibration())
    assert fitter.main([str(table), "--calibration", str(path), "--write"]) == 0
    stored = load(path)
    assert (stored.load_after_us, stored.load_factor) == (40.0, 1.25)
    assert "with them: mean 0.0%" in capsys.readouterr().out


def test_bad_input_is_one_line_and_exit_2(fitter, tmp_path, capsys):
    assert fitter.main([str(tmp_path / "none.csv"), "--calibration", str(tmp_path / "x")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    path = tmp_path / "h200.json"
    save(_calibration(), path)
    empty = tmp_path / "empty.csv"
    empty.write_text("# GPU x\ncategory,shape,m,n,k,dtype,candidate,config,kernel_us\n")
    assert fitter.main([str(empty), "--calibration", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no data_parallel" in err
