"""strategy="auto" by the model: on a device with a calibration, refsim predicts each candidate
and the fastest wins (kernels.model.model_choice); the rule stays the fallback."""

import time

import pytest
import torch

import refsim
from kernels import auto, model, rule
from refsim.calibration import BlockTiming, Calibration, block_key

CALIBRATION = Calibration(
    "h200",
    "NVIDIA H200",
    132,
    {
        block_key("bf16", 128, 256, 64): BlockTiming(0.75, 4.0),
        block_key("bf16", 128, 128, 64): BlockTiming(0.42, 3.0),
        block_key("bf16", 16, 256, 64): BlockTiming(0.18, 2.0),
    },
    launch_overhead_us=4.0,
    launch_gap_us=6.0,
)
SHAPES = [(4096, 4096, 4096), (1280, 2560, 4096), (512, 512, 16384), (16, 4096, 4096)]


def _predicted(shape, options, calibration=CALIBRATION):
    config = refsim.GemmConfig(*shape, dtype="bf16", device="h200", cus=132, xcds=1, **options)
    return refsim.simulate(config, calibration=calibration).makespan_us


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_the_model_picks_the_fastest_predicted_candidate(shape):
    chosen = model.model_choice(*shape, "bf16", "h200", 132, CALIBRATION, budget_items=10**9)
    measured = [
        options
        for options in model.model_candidates(*shape, "bf16", 132)
        if CALIBRATION.timing("bf16", options["block_m"], options["block_n"], options["block_k"])
    ]
    assert chosen in measured
    assert _predicted(shape, chosen) == min(_predicted(shape, options) for options in measured)


def test_the_rules_choice_is_the_first_candidate_so_a_spent_budget_still_answers():
    for shape in SHAPES:
        first = model.model_candidates(*shape, "bf16", 132)[0]
        blocks = rule.gpu_blocks(shape[0], shape[1], "bf16", 132)
        strategy, options = rule.choose(*shape, 132, *blocks)
        assert first == dict(
            zip(("block_m", "block_n", "block_k"), blocks), strategy=strategy, **options
        )
        assert model.model_choice(*shape, "bf16", "h200", 132, CALIBRATION, budget_items=0) == first


def test_the_budget_counts_simulated_items_so_the_answer_is_the_same_every_time(monkeypatch):
    simulated = []
    real = model.simulate

    def spy(config, calibration):
        simulated.append(model.simulated_items(config))
        return real(config, calibration=calibration)

    monkeypatch.setattr(model, "simulate", spy)
    # 16 to 384 items a candidate (split-K: its slices and its reduction's row bands), 816 in
    # all: the rule's 384 and the two data-parallel ones (16 and 32) fit in 450, the second
    # split-K (384) does not
    shape, budget = (512, 1024, 16384), 450
    answers = [
        model.model_choice(*shape, "bf16", "h200", 132, CALIBRATION, budget_items=budget)
        for _ in range(2)
    ]
    assert answers[0] == answers[1]
    per_call = len(simulated) // 2
    assert simulated[:per_call] == simulated[per_call:]
    assert 1 < per_call < len(model.model_candidates(*shape, "bf16", 132))
    assert sum(simulated[:per_call]) <= budget


def test_a_new_shape_is_chosen_in_about_the_budgets_time():
    model.model_choice(1024, 1024, 1024, "bf16", "h200", 132, CALIBRATION)  # imports, warms up
    for shape in SHAPES:
        start = time.perf_counter()
        model.model_choice(*shape, "bf16", "h200", 132, CALIBRATION)
        slowest_simulation = 0.1  # slack: one simulation on a loaded CI core
        assert time.perf_counter() - start < 0.05 + slowest_simulation


def test_without_a_measured_block_the_model_has_no_answer():
    fp16_only = Calibration(
        "h200", "NVIDIA H200", 132, {block_key("fp16", 128, 256, 64): BlockTiming(1, 1)}
    )
    assert model.model_choice(4096, 4096, 4096, "bf16", "h200", 132, fp16_only) is None


def test_a_batch_is_chosen_among_data_parallel_candidates():
    candidates = model.model_candidates(512, 512, 4096, "bf16", 132, batch=8)
    assert {c["strategy"] for c in candidates} == {"data_parallel"}


def test_an_installed_calibration_wins_over_the_shipped_one_until_removed(tmp_path):
    from refsim.calibration import save

    save(CALIBRATION, tmp_path / "h200.json")
    auto.config_for(64, 64, 64, torch.float32, torch.device("cpu"))
    try:
        auto.use_calibration(tmp_path / "h200.json")
        assert auto.calibration_of("h200") == CALIBRATION
        assert auto.config_for.cache_info().currsize == 0
    finally:
        auto.use_calibration(None)
    assert auto.calibration_of("h200") is refsim.calibration.for_profile("h200")


@pytest.mark.gpu
def test_on_a_calibrated_gpu_auto_runs_the_models_choice():
    import kernels
    from kernels.device import device_profile

    profile, units = device_profile(0)
    calibration = Calibration(profile.name, "test", units, dict(CALIBRATION.blocks))
    auto.use_calibration(calibration)
    try:
        a = torch.randn((1280, 4096), device="cuda", dtype=torch.bfloat16)
        b = torch.randn((4096, 2560), device="cuda", dtype=torch.bfloat16)
        config = auto.config_for(1280, 2560, 4096, a.dtype, a.device)
        chosen = model.model_choice(1280, 2560, 4096, "bf16", profile, units, calibration)
        assert config.strategy == chosen["strategy"] and config.block_n == chosen["block_n"]
        torch.testing.assert_close(kernels.matmul(a, b), a @ b, rtol=2e-2, atol=1e-1)
    finally:
        auto.use_calibration(None)


def test_a_wave_estimate_counts_whole_waves_of_calibrated_items():
    timing = BlockTiming(0.5, 4.0)
    blocks = {"block_m": 128, "block_n": 256, "block_k": 64}
    dp = dict(blocks, strategy="data_parallel")
    # 1664 x 2560: 13 x 10 = 130 tiles, one wave on 132 SMs; 4096 / 64 = 64 iterations
    assert model.wave_estimate_us(1664, 2560, 4096, dp, timing, 132) == 4.0 + 64 * 0.5
    # 133 tiles: two waves
    assert model.wave_estimate_us(1664 + 128, 2560, 4096, dp, timing, 132) == 2 * (4.0 + 32.0)
    sk = dict(blocks, strategy="streamk", fixup="last-arriver", sk_hybrid="two-tile")
    assert model.wave_estimate_us(1664, 2560, 4096, sk, timing, 132) == 64 * 0.5 + 8.0
    # split-K: 1024 x 2048 is 64 tiles, x2 slices of 32 iterations is one wave of 128 items
    split = dict(blocks, strategy="split_k", split_k=2)
    assert model.wave_estimate_us(1024, 2048, 4096, split, timing, 132) == 4.0 + 32 * 0.5
    # x4: 256 items, two waves
    split4 = dict(split, split_k=4)
    assert model.wave_estimate_us(1024, 2048, 4096, split4, timing, 132) == 2 * (4.0 + 16 * 0.5)


def test_each_block_brings_its_own_rule_choice_and_data_parallel():
    # 1024 x 2048 x 4096: the rule's block is 128x128, 128 tiles (rule 4, data-parallel); with
    # 128x256 it is 64 tiles, under half the SMs (rule 3, split-K x2), a candidate of its own
    candidates = model.model_candidates(1024, 2048, 4096, "bf16", 132)
    big = {"block_m": 128, "block_n": 256, "block_k": 64}
    small = {"block_m": 128, "block_n": 128, "block_k": 64}
    assert candidates == [
        dict(small, strategy="data_parallel"),
        dict(big, strategy="data_parallel"),
        dict(big, strategy="split_k", split_k=2),
    ]


def test_after_the_rules_choice_the_model_simulates_the_most_promising_first(monkeypatch):
    simulated = []
    real = model.simulate

    def spy(config, calibration):
        simulated.append(config)
        return real(config, calibration=calibration)

    monkeypatch.setattr(model, "simulate", spy)
    shape = (512, 512, 16384)
    model.model_choice(*shape, "bf16", "h200", 132, CALIBRATION, budget_items=10**9)
    candidates = model.model_candidates(*shape, "bf16", 132)
    assert len(simulated) == len(candidates) > 3
    estimates = []
    for config in simulated[1:]:
        options = next(
            c
            for c in candidates
            if all(getattr(config, field) == value for field, value in c.items())
        )
        timing = CALIBRATION.timing("bf16", config.block_m, config.block_n, config.block_k)
        estimates.append(model.wave_estimate_us(*shape, options, timing, 132))
    assert estimates == sorted(estimates)
    first = candidates[0]
    assert all(getattr(simulated[0], field) == value for field, value in first.items())
