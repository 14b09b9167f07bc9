"""The calibration-term fits (benchmarks/fitting.py and each fit script): each recovers the
terms its synthetic suite run was simulated with and leaves out the rows it cannot time,
``--write`` stores them, and bad input is one line and exit status 2."""

import importlib

import pytest
from test_benchmark_suite import benchmark_module

from refsim.calibration import BlockTiming, Calibration, block_key, load, save

# script, the helper module of its synthetic run (TRUE_TERMS, SHAPES, TIMED_PER_SHAPE,
# suite_csv), and the words its refusal of a CSV without usable rows says
FITS = [
    ("fit_load_terms", "fit_load_cases", "no data_parallel"),
    ("fit_split_terms", "fit_split_cases", "no Stream-K row"),
]


def synthetic_calibration():
    """One measured block, 128x128x64 bf16, and a launch overhead: what the fits start from."""
    blocks = {block_key("bf16", 128, 128, 64): BlockTiming(0.3, 1.5, 0.01, 64)}
    return Calibration("h200", "NVIDIA H200", 132, blocks, launch_overhead_us=4.0)


@pytest.fixture(params=FITS, ids=[script for script, _, _ in FITS])
def fit(request):
    script, cases, refusal = request.param
    with benchmark_module(script) as module:
        yield module, importlib.import_module(cases), refusal


def test_the_fit_recovers_the_terms_the_runs_were_simulated_with(fit, tmp_path):
    fitter, cases, _ = fit
    calibration = synthetic_calibration()
    table = cases.suite_csv(tmp_path, calibration)
    samples = fitter.samples_of(table, calibration)
    assert len(samples) == cases.TIMED_PER_SHAPE * len(cases.SHAPES)
    assert max(fitter.errors(samples, calibration)) > 0.05  # the terms matter on these runs
    fitted, mean_error = fitter.fit(samples, calibration)
    assert {term: getattr(fitted, term) for term in cases.TRUE_TERMS} == cases.TRUE_TERMS
    assert mean_error < 1e-4  # the CSV keeps 3 decimals of each time


def test_write_stores_the_fitted_terms(fit, tmp_path, capsys):
    fitter, cases, _ = fit
    path = tmp_path / "h200.json"
    save(synthetic_calibration(), path)
    table = cases.suite_csv(tmp_path, synthetic_calibration())
    assert fitter.main([str(table), "--calibration", str(path), "--write"]) == 0
    stored = load(path)
    assert {term: getattr(stored, term) for term in cases.TRUE_TERMS} == cases.TRUE_TERMS
    assert "with them: mean 0.0%" in capsys.readouterr().out


def test_bad_input_is_one_line_and_exit_2(fit, tmp_path, capsys):
    fitter, _, refusal = fit
    assert fitter.main([str(tmp_path / "none.csv"), "--calibration", str(tmp_path / "x")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    path = tmp_path / "h200.json"
    save(synthetic_calibration(), path)
    empty = tmp_path / "empty.csv"
    empty.write_text("# GPU x\ncategory,shape,m,n,k,dtype,candidate,config,kernel_us\n")
    assert fitter.main([str(empty), "--calibration", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and refusal in err
