"""Calibrations: fitting measured work items, the file format, and how a calibration changes
refsim's clock (exact makespans on a one-wave problem)."""

import dataclasses
import json
import math
import random

import pytest

import refsim
from refsim import cli
from refsim.calibration import (
    FORMAT,
    ITERATION_COUNTS,
    BlockTiming,
    Calibration,
    block_key,
    calibration_shapes,
    fit_block,
    for_profile,
    load,
    save,
    wave_shape,
)
from refsim.tiling import cdiv


def test_a_fit_recovers_the_iteration_and_item_times_from_noisy_items():
    rng = random.Random(3)
    samples = [
        (count, (4.0 + 0.75 * count) * (1 + rng.uniform(-0.01, 0.01)))
        for count in ITERATION_COUNTS
        for _ in range(50)
    ]
    timing = fit_block(samples)
    assert timing.iteration_us == pytest.approx(0.75, rel=0.01)
    assert timing.item_us == pytest.approx(4.0, rel=0.05)
    assert 0 < timing.residual < 0.01 and timing.samples == 200


@pytest.mark.parametrize(
    "samples, message",
    [
        ([(8, 10.0), (8, 11.0)], "two different K-iteration counts"),
        ([(8, 10.0), (16, 9.0)], "not positive"),
    ],
)
def test_a_fit_refuses_samples_that_cannot_separate_the_two_times(samples, message):
    with pytest.raises(ValueError, match=message):
        fit_block(samples)


def test_the_measured_problems_are_one_full_wave_at_each_iteration_count():
    for units in (132, 304, 7):
        m, n = wave_shape(128, 256, units)
        assert cdiv(m, 128) * cdiv(n, 256) == units
        shapes = calibration_shapes(128, 256, 64, units)
        assert [k // 64 for _, _, k in shapes] == list(ITERATION_COUNTS)


def _calibration(profile="h200", **extra):
    blocks = {block_key("bf16", 128, 256, 64): BlockTiming(1.0, 5.0, 0.01, 64)}
    return Calibration(
        profile, "NVIDIA H200", 132, blocks, environment={"date": "2026-12-01"}, **extra
    )


def test_a_calibration_survives_a_round_trip(tmp_path):
    calibration = _calibration(launch_overhead_us=3.0, launch_gap_us=7.5, hbm_gbps=4100.0)
    save(calibration, tmp_path / "h200.json")
    assert load(tmp_path / "h200.json") == calibration
    assert json.loads((tmp_path / "h200.json").read_text())["format"] == FORMAT


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(format=99), "format 99"),
        (lambda d: d.pop("blocks"), "missing blocks"),
        (lambda d: d["blocks"]["bf16 128x256x64"].update(iteration_us=0), "iteration_us=0"),
        (lambda d: d["blocks"]["bf16 128x256x64"].update(speed=1), "speed"),
        (lambda d: d.update(launch_gap_us=-1), "launch_gap_us=-1"),
    ],
)
def test_a_bad_calibration_file_is_one_line(tmp_path, edit, message):
    data = _calibration().to_dict()
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message) as error:
        load(path)
    assert "\n" not in str(error.value)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        load(path)


def _one_wave(k_iterations=32):
    m, n = wave_shape(128, 256, 132)
    return refsim.GemmConfig(
        m, n, 64 * k_iterations, device="h200", strategy="data_parallel",
        block_m=128, block_n=256, block_k=64,
    )  # fmt: skip


def test_a_calibrated_one_wave_run_takes_launch_plus_item_plus_iterations():
    calibration = _calibration(launch_overhead_us=3.0)
    result = refsim.simulate(_one_wave(32), calibration=calibration)
    assert result.makespan_us == pytest.approx(3.0 + 5.0 + 32 * 1.0)
    assert result.clock == "calibrated on NVIDIA H200 (2026-12-01)"
    assert "clock: calibrated on NVIDIA H200" in result.summary()


def test_a_block_the_calibration_did_not_measure_says_its_k_loop_is_the_datasheets():
    calibration = _calibration()
    unmeasured = refsim.simulate(
        _one_wave().replace(block_m=64, block_n=64), calibration=calibration
    )
    assert unmeasured.clock == (
        "calibrated on NVIDIA H200 (2026-12-01), but not block bf16 64x64x64: its K-loop "
        "from the datasheet"
    )
    assert refsim.simulate(_one_wave(), calibration=calibration).clock == (
        "calibrated on NVIDIA H200 (2026-12-01)"
    )


def test_without_a_calibration_the_datasheet_clock_says_so():
    result = refsim.simulate(_one_wave(), calibration=False)
    assert result.calibration is None
    assert result.summary_dict()["clock"] == (
        "datasheet numbers (the calibration for h200 turned off)"  # refsim ships one
    )
    unshipped = refsim.simulate(_one_wave().replace(device="h100"), calibration=False)
    assert unshipped.clock == "datasheet numbers (no calibration for h100)"
    calibrated = refsim.simulate(_one_wave(), calibration=_calibration())
    assert not math.isclose(calibrated.makespan_us, result.makespan_us)


def test_a_block_the_calibration_did_not_measure_keeps_the_datasheet_k_loop():
    config = _one_wave().replace(block_n=128)
    datasheet = refsim.simulate(config, calibration=False)
    launch_only = refsim.simulate(config, calibration=_calibration(launch_overhead_us=0.0))
    overhead = config.profile.launch_overhead_us
    assert launch_only.makespan_us == pytest.approx(datasheet.makespan_us - overhead)


def test_a_split_k_reduction_waits_the_calibrated_gap():
    config = _one_wave(8).replace(strategy="split_k", split_k=2)
    near = refsim.simulate(config, calibration=_calibration(launch_gap_us=1.0))
    far = refsim.simulate(config, calibration=_calibration(launch_gap_us=101.0))
    assert far.makespan_us - near.makespan_us == pytest.approx(100.0)


def test_a_calibration_of_another_profile_is_refused():
    with pytest.raises(ValueError, match=r"profile 'h100'.*given for device 'h200'"):
        refsim.simulate(_one_wave(), calibration=_calibration("h100"))
    with pytest.raises(ValueError, match="pass a Calibration"):
        refsim.simulate(_one_wave(), calibration=3)


def test_profiles_without_a_shipped_calibration_use_the_datasheet(capsys):
    assert all(for_profile(name) is None for name in refsim.PROFILES if name != "h200")
    assert cli.main(["devices"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split()[-1] == "clock"
    assert all(row.endswith("datasheet") for row in rows[1:] if "h200" not in row)


def test_simulate_takes_a_calibration_file_from_the_command_line(tmp_path, capsys):
    save(_calibration(launch_overhead_us=3.0), tmp_path / "h200.json")
    m, n = wave_shape(128, 256, 132)
    argv = ["simulate", str(m), str(n), "2048", "--device", "h200", "--strategy"]
    argv += ["data_parallel", "--block", "128x256x64"]
    assert cli.main([*argv, "--calibration", str(tmp_path / "h200.json")]) == 0
    out = capsys.readouterr().out
    assert "makespan 40.00 us" in out and "clock: calibrated on NVIDIA H200" in out
    assert cli.main([*argv, "--no-calibration"]) == 0
    assert "clock: datasheet numbers" in capsys.readouterr().out


def test_calibrate_without_a_gpu_is_one_line_and_exit_2(capsys):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert cli.main(["calibrate"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("refsim: error: calibrate --device cuda: needs a CUDA GPU")
    assert "\n" not in err
    assert cli.main(["calibrate", "--out", "calibration.txt"]) == 2
    assert "*.json" in capsys.readouterr().err
    assert cli.main(["calibrate", "--device", "cpu"]) == 2
    assert "it measures a CUDA GPU" in capsys.readouterr().err


def test_the_measurement_traces_every_item_of_every_calibration_problem():
    """Plumbing under the interpreter (its clock counts steps, so no fit): every work item of
    the one-wave problems comes back with its K-iterations."""
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("the interpreter tier")
    from kernels.calibrate import block_samples, blocks_to_measure

    samples = block_samples("fp32", (16, 32, 16), torch.device("cpu"), units=4, repeats=2)
    expected = [count for count in ITERATION_COUNTS for _ in range(2 * 4)]
    assert sorted(iterations for iterations, _ in samples) == expected
    assert all(duration >= 0 for _, duration in samples)
    dtypes = {dtype for dtype, _ in blocks_to_measure()}
    assert dtypes == {"bf16", "fp16"}
    assert ("bf16", (128, 256, 64)) in blocks_to_measure()


@pytest.mark.gpu
def test_a_quick_calibration_of_the_local_gpu_fits_every_block(tmp_path):
    from kernels.calibrate import blocks_to_measure, measure

    found = measure("cuda", dtypes=("bf16",), repeats=1, progress=lambda line: None)
    assert set(found.blocks) == {block_key("bf16", *b) for _, b in blocks_to_measure(("bf16",))}
    assert all(t.iteration_us > 0 and t.residual < 0.5 for t in found.blocks.values())
    save(found, tmp_path / "local.json")
    assert load(tmp_path / "local.json") == found


def test_the_split_terms_cost_only_split_tiles_exactly():
    """One tile split between two programs of 20 K-iterations each (1 us apiece): the factor
    scales those iterations; a partial (128x256 fp32, 131072 bytes: 2 us at 65.536 GB/s) is
    paid once when stored and once when the last arriver loads it. A data-parallel run of the
    same tile pays neither."""
    split = refsim.GemmConfig(
        128, 256, 64 * 40, device="h200", cus=2, xcds=1, strategy="streamk",
        fixup="last-arriver", grid=2, block_m=128, block_n=256, block_k=64,
    )  # fmt: skip
    plain = _calibration(launch_overhead_us=0.0)
    base = refsim.simulate(split, calibration=plain).makespan_us
    with_partial = dataclasses.replace(plain, partial_gbps=65.536)
    slower_loop = dataclasses.replace(plain, split_iteration_factor=2.0)
    assert refsim.simulate(split, calibration=with_partial).makespan_us == pytest.approx(base + 4)
    assert refsim.simulate(split, calibration=slower_loop).makespan_us == pytest.approx(base + 20)
    unmeasured = split.replace(block_n=128, n=128)  # a block the calibration did not time
    assert refsim.simulate(unmeasured, calibration=slower_loop).makespan_us == pytest.approx(
        refsim.simulate(unmeasured, calibration=plain).makespan_us
    )
    whole = split.replace(strategy="data_parallel", fixup=None, grid=None)
    both = dataclasses.replace(plain, partial_gbps=65.536, split_iteration_factor=2.0)
    assert refsim.simulate(whole, calibration=both).makespan_us == pytest.approx(
        refsim.simulate(whole, calibration=plain).makespan_us
    )


@pytest.mark.parametrize(
    "terms, refused",
    [
        (
            {"split_iteration_factor": 1.5, "partial_gbps": 48.0},
            [("partial_gbps", -1, "partial_gbps=-1"),
             ("partial_gbps", 0, "partial_gbps=0: must be above 0")],
        ),
        (
            {"load_after_us": 60.0, "load_factor": 1.2},
            [("load_factor", 0, "load_factor=0: must be above 0"),
             ("load_after_us", -5, "load_after_us=-5")],
        ),
    ],
    ids=["split terms", "load terms"],
)  # fmt: skip
def test_fitted_terms_survive_a_round_trip_and_refuse_bad_values(tmp_path, terms, refused):
    calibration = _calibration(**terms)
    save(calibration, tmp_path / "h200.json")
    assert load(tmp_path / "h200.json") == calibration
    for field, value, message in refused:
        data = dict(calibration.to_dict(), **{field: value})
        with pytest.raises(ValueError, match=message):
            Calibration.from_dict(data)


def test_the_load_terms_stretch_only_the_loop_past_their_start_by_the_busy_share_exactly():
    """1 us K-iterations of a measured 128x256 block (5 us per item), 40 a tile, 2 SMs, no
    launch overhead: past 10 us a loop takes 1.5x with both SMs busy, 1.25x with one of two."""
    plain = _calibration(launch_overhead_us=0.0)
    loaded = dataclasses.replace(plain, load_after_us=10.0, load_factor=1.5)
    options = dict(device="h200", cus=2, xcds=1, strategy="data_parallel", block_m=128,
                   block_n=256, block_k=64)  # fmt: skip
    both = refsim.GemmConfig(256, 256, 64 * 40, **options)  # 2 tiles: both SMs busy
    assert refsim.simulate(both, calibration=plain).makespan_us == pytest.approx(45.0)
    assert refsim.simulate(both, calibration=loaded).makespan_us == pytest.approx(
        5.0 + 10.0 + 30.0 * 1.5
    )
    one = refsim.GemmConfig(128, 256, 64 * 40, **options)  # 1 tile on 2 SMs
    assert refsim.simulate(one, calibration=loaded).makespan_us == pytest.approx(
        5.0 + 10.0 + 30.0 * 1.25
    )
    short = refsim.GemmConfig(256, 256, 64 * 8, **options)  # over before 10 us
    assert refsim.simulate(short, calibration=loaded).makespan_us == pytest.approx(5.0 + 8.0)
    later = dataclasses.replace(loaded, load_after_us=0.0)  # the whole loop is past it
    assert refsim.simulate(both, calibration=later).makespan_us == pytest.approx(5.0 + 60.0)
    unmeasured = both.replace(block_n=128)  # a datasheet K-loop keeps its own time
    assert refsim.simulate(unmeasured, calibration=loaded).makespan_us == pytest.approx(
        refsim.simulate(unmeasured, calibration=plain).makespan_us
    )


def test_the_calibration_measures_every_block_auto_runs_with_one_full_side():
    from kernels.calibrate import blocks_to_measure
    from kernels.rule import gpu_blocks

    measured = {block for dtype, block in blocks_to_measure() if dtype == "bf16"}
    sides = [1, 8, 16, 17, 32, 33, 48, 64, 65, 100, 128, 200, 1000, 4096, 16384]
    for m in sides:
        for n in sides:
            if max(m, n) >= 256:
                assert gpu_blocks(m, n, "bf16", 132) in measured, (m, n)


def test_the_atomic_chain_adds_once_per_step_in_order():
    import torch

    from kernels.calibrate import atomic_chain

    counter = torch.zeros(2, dtype=torch.int32)
    last = torch.full((1,), -7, dtype=torch.int32)
    atomic_chain[(1,)](counter, last, 5)
    assert counter.tolist() == [5, 0]  # every add on slot 0
    assert last.tolist() == [4]  # the last add saw the four before it


def test_per_step_time_is_the_difference_over_the_extra_steps():
    from kernels.calibrate import per_step_us

    def time_ms(steps):  # 5 us of launch, then 0.7 us a step
        return 0.005 + steps * 0.0007

    assert per_step_us(time_ms, (1000, 3000)) == pytest.approx(0.7)


@pytest.mark.compile
@pytest.mark.parametrize("target", ["sm_90", "gfx942"])
def test_the_atomic_chain_compiles_offline(target):
    import os
    import subprocess
    import sys

    code = (
        "import triton\n"
        "from triton.backends.compiler import GPUTarget\n"
        "from triton.compiler import ASTSource\n"
        "from kernels.calibrate import atomic_chain\n"
        "from kernels.offline import TARGETS\n"
        f"backend, arch, warp, *_ = TARGETS[{target!r}]\n"
        "signature = {'counter_ptr': '*i32', 'last_ptr': '*i32', 'steps': 'i32'}\n"
        "source = ASTSource(fn=atomic_chain, signature=signature, constexprs={})\n"
        "triton.compile(source, target=GPUTarget(backend, arch, warp))\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.stdout.strip() == "ok", done.stderr[-2000:]
