"""The simulator: exact event logs on tiny cases, invariants on random ones, determinism, deadlocks."""

import dataclasses
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from invariants import all_problems

import refsim
from refsim import simulator, tiling
from refsim.config import OPTION_NAMES, SK_HYBRIDS, TILE_ORDERS, WS_COUNTER_RANGES
from refsim.hardware import H100_SXM

# A 2-SM toy GPU whose numbers are powers of two, so every simulated time is exact in binary:
# a 16x16x16 bf16 K-iteration computes in 1 us, HBM moves 2048 bytes/us.
TOY = dataclasses.replace(
    H100_SXM,
    name="toy",
    cus=2,
    xcds=1,
    hbm_gbps=2.048,
    peak_tflops={"fp16": 0.016384, "bf16": 0.016384, "fp32": 0.016384},
    atomic_latency_us=0.25,
    atomic_interval_us=0.125,
    launch_overhead_us=1.0,
    sources={},
)
TOY_BLOCKS = {"block_m": 16, "block_n": 16, "block_k": 16}

# 3 tiles of 3 K-iterations over 2 programs, one wave of Stream-K: program 0 holds iterations
# 0..4 (tile 0 whole, tile 1 k[0,2)), program 1 holds 5..8 (tile 1 k[2,3), tile 2 whole).
STREAMK_TOY = {"m": 48, "n": 16, "k": 48, "grid": 2, "sk_hybrid": "one-wave"}

# Each row: program, step, tile, k_begin, k_end, role, unit, t_start_us, t_end_us, finalizes,
# ticket, counter, kernel.
GOLDEN = {
    # Worked by hand: launch 1 us. Program 0, tile 0: 3 iterations at 1 us (compute-bound)
    # + tile store 512 B at 2048 B/us = 4.25. Program 1, tile 1 k[2,3): 1 iteration, partial
    # store 1024 B shared with program 0 (1 us), flag 0.25 -> 3.25; tile 2: 3 + 0.5 -> 6.75.
    # Program 0, tile 1 k[0,2): 2 -> 6.25, flag poll 0.25, partial load shared 1 -> 7.5,
    # tile store alone 0.25 -> 7.75.
    "owner-waits": (
        dict(STREAMK_TOY, fixup="owner-waits"),
        [
            (0, 0, 0, 0, 3, "sk-owner", 0, 1.0, 4.25, True, -1, -1, "gemm"),
            (0, 1, 1, 0, 2, "sk-owner", 0, 4.25, 7.75, True, -1, -1, "gemm"),
            (1, 0, 1, 2, 3, "sk-contributor", 1, 1.0, 3.25, False, -1, -1, "gemm"),
            (1, 1, 2, 0, 3, "sk-owner", 1, 3.25, 6.75, True, -1, -1, "gemm"),
        ],
        [(1, 0, (0, 1), (0, 1))],
        7.75,
    ),
    # Turnstile walks ranges backwards: the k = 0 holder publishes first, the last one finalises.
    "turnstile": (
        dict(STREAMK_TOY, fixup="turnstile"),
        [
            (0, 0, 1, 0, 2, "sk-owner", 0, 1.0, 4.25, False, -1, -1, "gemm"),
            (0, 1, 0, 0, 3, "sk-owner", 0, 4.25, 7.75, True, -1, -1, "gemm"),
            (1, 0, 2, 0, 3, "sk-owner", 1, 1.0, 4.5, True, -1, -1, "gemm"),
            (1, 1, 1, 2, 3, "sk-contributor", 1, 4.5, 7.25, True, -1, -1, "gemm"),
        ],
        [(1, 1, (0, 1), (0, 1))],
        7.75,
    ),
    "last-arriver": (
        dict(STREAMK_TOY, fixup="last-arriver"),
        [
            (0, 0, 0, 0, 3, "sk-owner", 0, 1.0, 4.25, True, -1, -1, "gemm"),
            (0, 1, 1, 0, 2, "sk-owner", 0, 4.25, 8.25, True, -1, -1, "gemm"),
            (1, 0, 1, 2, 3, "sk-contributor", 1, 1.0, 3.25, False, -1, -1, "gemm"),
            (1, 1, 2, 0, 3, "sk-owner", 1, 3.25, 6.75, True, -1, -1, "gemm"),
        ],
        [(1, 0, (0, 1), (0, 1))],
        8.25,
    ),
    # A memset launch (1 us + 3072 B) zeroes the output first; program 1 adds first.
    "atomic": (
        dict(STREAMK_TOY, fixup="atomic"),
        [
            (0, 0, 0, 0, 3, "sk-owner", 0, 3.5, 6.75, True, -1, -1, "gemm"),
            (0, 1, 1, 0, 2, "sk-owner", 0, 6.75, 10.0, True, -1, -1, "gemm"),
            (1, 0, 1, 2, 3, "sk-contributor", 1, 3.5, 5.75, False, -1, -1, "gemm"),
            (1, 1, 2, 0, 3, "sk-owner", 1, 5.75, 9.25, True, -1, -1, "gemm"),
        ],
        [(1, 0, (0, 1), (1, 0))],
        10.0,
    ),
    # One global counter: tickets go in atomic order; each program's last draw finds it empty.
    "work_stealing": (
        {"m": 48, "n": 16, "k": 48, "strategy": "work_stealing", "global_counter": True},
        [
            (0, 0, 0, 0, 3, "ws", 0, 1.0, 4.5, True, 0, 0, "gemm"),
            (0, 1, 2, 0, 3, "ws", 0, 4.5, 8.25, True, 2, 0, "gemm"),
            (1, 0, 1, 0, 3, "ws", 1, 1.0, 4.875, True, 1, 0, "gemm"),
        ],
        [],
        8.5,
    ),
    # Two splits per tile, then a reduction launch that sums them in split order.
    "split_k": (
        {"m": 32, "n": 16, "k": 48, "strategy": "split_k", "split_k": 2},
        [
            (0, 0, 0, 0, 1, "split", 0, 1.0, 3.0, False, -1, -1, "gemm"),
            (1, 0, 0, 1, 3, "split", 1, 1.0, 4.0, False, -1, -1, "gemm"),
            (2, 0, 1, 0, 1, "split", 0, 3.0, 5.0, False, -1, -1, "gemm"),
            (3, 0, 1, 1, 3, "split", 1, 4.0, 6.5, False, -1, -1, "gemm"),
            (0, 0, 0, 0, 0, "reduce", 0, 7.5, 8.75, True, -1, -1, "reduce"),
            (1, 0, 1, 0, 0, "reduce", 1, 7.5, 10.0, True, -1, -1, "reduce"),
        ],
        [(0, 0, (0, 1), (0, 1)), (1, 1, (2, 3), (2, 3))],
        10.0,
    ),
    # One tile on 2 SMs: the reduction runs in 2 row bands of 8 rows, one program each. A band
    # moves half of the 2 partials and the tile, (2*1024 + 512) / 2 = 1280 B: 0.625 us alone,
    # 1.25 us for the second band, which starts while the first streams.
    "split_k-bands": (
        {"m": 16, "n": 16, "k": 48, "strategy": "split_k", "split_k": 2},
        [
            (0, 0, 0, 0, 1, "split", 0, 1.0, 3.0, False, -1, -1, "gemm"),
            (1, 0, 0, 1, 3, "split", 1, 1.0, 4.0, False, -1, -1, "gemm"),
            (0, 0, 0, 0, 0, "reduce", 0, 5.0, 5.625, True, -1, -1, "reduce"),
            (1, 0, 0, 0, 0, "reduce", 1, 5.0, 6.25, True, -1, -1, "reduce"),
        ],
        [(0, 0, (0, 1), (0, 1))],
        6.25,
    ),
}


def _rows(result):
    return [
        (
            r.program,
            r.step,
            r.tile,
            r.k_begin,
            r.k_end,
            r.role,
            r.unit,
            r.t_start_us,
            r.t_end_us,
            r.finalizes,
            r.ticket,
            r.counter,
            r.kernel,
        )
        for r in result.records
    ]


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_golden_event_log(case):
    kwargs, records, fixups, makespan = GOLDEN[case]
    result = refsim.simulate(device=TOY, **TOY_BLOCKS, **kwargs)
    assert _rows(result) == records
    assert [(f.tile, f.reducer, f.contributors, f.order) for f in result.fixups] == fixups
    assert result.makespan_us == makespan
    assert result.deadlock is None
    assert all_problems(result) == []


def test_owner_waits_deadlock_is_reported_not_hung():
    """One CU, two programs: program 0 owns the only tile and waits for program 1, never started."""
    result = refsim.simulate(
        16, 16, 48, device=TOY, cus=1, grid=2, sk_hybrid="one-wave", **TOY_BLOCKS
    )
    deadlock = result.deadlock
    assert deadlock is not None
    assert deadlock.waiting == ((0, 0, 0, 1),)
    assert deadlock.undispatched == (1,)
    assert "program 0 on CU 0 waits for program 1's partial of tile 0 (never started)" in str(
        deadlock
    )
    assert result.tflops == 0.0
    assert "deadlock" in result.summary()


def test_last_arriver_never_deadlocks_where_owner_waits_does():
    result = refsim.simulate(
        16,
        16,
        48,
        device=TOY,
        cus=1,
        grid=2,
        sk_hybrid="one-wave",
        fixup="last-arriver",
        **TOY_BLOCKS,
    )
    assert result.deadlock is None
    assert all_problems(result) == []


def test_turnstile_walks_ranges_backwards_so_no_chain_forms():
    """Forwards, each program would wait for its predecessor's whole range: a serial chain."""
    chained = refsim.simulate(8192, 8192, 8192, fixup="turnstile")
    reference = refsim.simulate(8192, 8192, 8192, fixup="owner-waits")
    assert chained.makespan_us < 1.05 * reference.makespan_us


@pytest.mark.parametrize("strategy", refsim.STRATEGIES)
def test_same_call_same_result(strategy):
    first = refsim.simulate(2048, 1536, 1000, strategy=strategy, block_m=128, block_n=128)
    second = refsim.simulate(2048, 1536, 1000, strategy=strategy, block_m=128, block_n=128)
    assert first.records == second.records
    assert first.fixups == second.fixups
    assert first.makespan_us == second.makespan_us


def test_jitter_is_reproducible_and_changes_the_ticket_order():
    kwargs = {"strategy": "work_stealing", "block_m": 128, "block_n": 128, "global_counter": True}
    base = refsim.simulate(4096, 4096, 1024, **kwargs)
    again = refsim.simulate(4096, 4096, 1024, jitter=0.5, seed=7, **kwargs)
    same = refsim.simulate(4096, 4096, 1024, jitter=0.5, seed=7, **kwargs)
    other = refsim.simulate(4096, 4096, 1024, jitter=0.5, seed=8, **kwargs)
    assert again.records == same.records
    order = lambda res: [(r.ticket, r.program) for r in sorted(res.records, key=lambda r: r.ticket)]
    assert order(again) != order(base)
    assert order(again) != order(other)
    for result in (base, again, other):
        assert all_problems(result) == []


@pytest.mark.parametrize(
    "bad",
    [{"jitter": -0.1}, {"jitter": 1.0}, {"jitter": float("nan")}, {"seed": 1.5}, {"seed": True}],
)
def test_bad_run_options_are_rejected(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        refsim.simulate(64, 64, 64, **bad)


def test_stream_k_beats_data_parallel_on_a_quantised_wave():
    """1024 tiles on 304 CUs is 3.4 waves: DP pays for 4, Stream-K balances the last one."""
    dp = refsim.simulate(8192, 8192, 8192, strategy="data_parallel")
    sk = refsim.simulate(8192, 8192, 8192, strategy="streamk")
    assert sk.makespan_us < 0.92 * dp.makespan_us


SHAPES = st.integers(1, 5000)
BLOCKS = st.sampled_from([64, 128, 256])
# 512-CU versions of the presets, so that any CU count in 1..512 is part of a device.
BIG = {
    name: dataclasses.replace(refsim.PROFILES[name], name=f"{name}-512", cus=512)
    for name in ("mi300x", "h100", "mi355x")
}
MACHINES = st.one_of(
    st.tuples(st.just(BIG["mi300x"]), st.integers(1, 64).map(lambda c: 8 * c), st.just(8)),
    st.tuples(st.just(BIG["mi300x"]), st.integers(1, 512), st.just(1)),
    st.tuples(st.just(BIG["h100"]), st.integers(1, 512), st.just(1)),
    st.tuples(st.just(BIG["mi355x"]), st.integers(1, 128).map(lambda c: 4 * c), st.just(4)),
)


@st.composite
def configs(draw):
    device, cus, xcds = draw(MACHINES)
    strategy = draw(st.sampled_from(refsim.STRATEGIES))
    kwargs = {
        "device": device,
        "cus": cus,
        "xcds": xcds,
        "strategy": strategy,
        "block_m": draw(BLOCKS),
        "block_n": draw(BLOCKS),
        "block_k": draw(BLOCKS),
        "group_m": draw(st.integers(1, 12)),
    }
    m, n, k = draw(SHAPES), draw(SHAPES), draw(SHAPES)
    iters = tiling.cdiv(k, kwargs["block_k"])
    tiles = tiling.cdiv(m, kwargs["block_m"]) * tiling.cdiv(n, kwargs["block_n"])
    if strategy == "streamk":
        kwargs["fixup"] = draw(st.sampled_from(refsim.FIXUPS))
        kwargs["sk_hybrid"] = draw(st.sampled_from(list(SK_HYBRIDS)))
        kwargs["grid"] = draw(st.one_of(st.none(), st.integers(1, cus)))
    elif strategy == "split_k":
        kwargs["split_k"] = draw(st.integers(1, min(iters, 16)))
    elif strategy == "work_stealing":
        kwargs["global_counter"] = draw(st.booleans())
        kwargs["counters_per_xcd"] = draw(st.integers(1, max(1, min(4, cus // xcds))))
        # "hardware-xcd-logical-slot" may leave counters unserved: tests/test_schedule_hooks.py
        kwargs["ws_counter_map"] = draw(st.sampled_from(["hardware", "logical"]))
        kwargs["ws_counter_ranges"] = draw(st.sampled_from(list(WS_COUNTER_RANGES)))
        kwargs["sk_tiles"] = draw(st.sampled_from([0, 0, 1, tiles // 3, tiles]))
        if kwargs["sk_tiles"]:
            kwargs["fixup"] = draw(st.sampled_from(refsim.FIXUPS))
    else:
        kwargs["tile_order"] = draw(st.sampled_from(list(TILE_ORDERS)))
    return refsim.GemmConfig(m, n, k, **kwargs)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_every_random_run_keeps_the_invariants(config):
    """Each (tile, iteration) once, each tile finalised once, records consistent, plan followed."""
    result = refsim.simulate(config)
    assert result.deadlock is None
    assert all_problems(result) == []
    assert result.makespan_us >= max(r.t_end_us for r in result.records)
    assert result.tflops > 0
    assert len(result.records) + config.grid + config.cus <= refsim.api.work_items_bound(config)


def test_records_extend_plan_items_field_for_field():
    """The simulator builds a WorkRecord from a WorkItem positionally: the fields must line up."""
    assert (
        refsim.WorkRecord._fields[: len(refsim.plan.WorkItem._fields)]
        == refsim.plan.WorkItem._fields
    )


# --------------------------------------------------------------------------------------------
# Structure: the fixup protocols as a table, the result types beside SimResult.


def test_every_fixup_protocol_has_one_entry_in_the_table():
    assert tuple(simulator.Simulation.FIXUP_PROTOCOLS) == refsim.FIXUPS


def test_fixup_and_deadlock_live_beside_sim_result():
    assert refsim.Fixup is refsim.result.Fixup and refsim.Deadlock is refsim.result.Deadlock
    run = refsim.simulate(device=TOY, **TOY_BLOCKS, **STREAMK_TOY)
    assert all(isinstance(f, refsim.result.Fixup) for f in run.fixups)


# --------------------------------------------------------------------------------------------
# simulate(): options read from GemmConfig, unknown ones named.


def test_unknown_option_is_named_with_the_accepted_ones():
    with pytest.raises(TypeError) as excinfo:
        refsim.simulate(64, 64, 64, fixupp="x")
    message = str(excinfo.value)
    assert "'fixupp'" in message
    assert all(name in message for name in OPTION_NAMES + ("jitter", "seed"))


def test_options_go_to_the_config_as_given():
    run = refsim.simulate(512, 512, 512, 16, strategy="split_k", split_k=2, dtype="fp16")
    assert run.config == refsim.GemmConfig(
        512, 512, 512, cus=16, strategy="split_k", split_k=2, dtype="fp16"
    )


@pytest.mark.parametrize(
    "extra", [{"strategy": "streamk"}, {"cus": 16}, {"fixup": "owner-waits"}, {"n": 64}]
)
def test_a_config_takes_no_options_even_at_their_default(extra):
    with pytest.raises(ValueError, match="not both"):
        refsim.simulate(refsim.GemmConfig(64, 64, 64), **extra)


def test_numpy_integers_and_floats_are_accepted():
    blocks = {"block_m": np.int64(64), "block_n": np.int64(64), "block_k": np.int64(64)}
    numpy_run = refsim.simulate(
        np.int64(512), np.int32(512), np.int64(512), np.int64(16),
        jitter=np.float32(0.5), seed=np.int64(3), grid=np.int64(12), **blocks,
    )  # fmt: skip
    plain = refsim.simulate(
        512, 512, 512, 16, jitter=0.5, seed=3, grid=12, block_m=64, block_n=64, block_k=64
    )
    assert numpy_run.records == plain.records


# --------------------------------------------------------------------------------------------
# Bounds: absurd sizes are refused at once, with the way to lift the limit.


def test_absurd_sizes_are_refused_in_under_a_second():
    began = time.perf_counter()
    with pytest.raises(ValueError) as excinfo:
        refsim.simulate(10**10, 10**10, 10**10)
    assert time.perf_counter() - began < 1.0
    message = str(excinfo.value)
    assert "2,000,000" in message and "REFSIM_MAX_WORK_ITEMS" in message


def test_the_work_limit_is_lifted_by_its_environment_variable(monkeypatch):
    shape = (1024, 1024, 64)  # 16 tiles, 304 programs on 304 CUs: at most 928
    monkeypatch.setenv("REFSIM_MAX_WORK_ITEMS", "900")
    with pytest.raises(ValueError, match="over the limit of 900"):
        refsim.simulate(*shape)
    monkeypatch.setenv("REFSIM_MAX_WORK_ITEMS", "1_000")
    assert refsim.simulate(*shape).deadlock is None


def test_the_bound_covers_every_run():
    """The bound the limit checks holds for records, programs and CUs of real runs."""
    for strategy in refsim.STRATEGIES:
        run = refsim.simulate(2048, 1536, 1000, strategy=strategy, block_m=128, block_n=128)
        c = run.config
        assert len(run.records) + c.grid + c.cus <= refsim.api.work_items_bound(c)


def test_the_numerics_limit_counts_array_elements(monkeypatch):
    a, b = np.ones((64, 32)), np.ones((32, 16))  # 2048 + 512 + 1024 elements
    monkeypatch.setenv("REFSIM_MAX_ELEMENTS", "3000")
    with pytest.raises(ValueError, match="REFSIM_MAX_ELEMENTS"):
        refsim.simulate(64, 16, 32, a=a, b=b)
    assert refsim.simulate(64, 16, 32).deadlock is None  # no arrays, no numerics bound
    monkeypatch.setenv("REFSIM_MAX_ELEMENTS", "4000")
    assert (refsim.simulate(64, 16, 32, a=a, b=b).output == 32).all()


@pytest.mark.parametrize("value", ["many", "0", "-5"])
def test_a_bad_limit_is_named(monkeypatch, value):
    monkeypatch.setenv("REFSIM_MAX_WORK_ITEMS", value)
    with pytest.raises(ValueError, match=f"REFSIM_MAX_WORK_ITEMS='{value}'"):
        refsim.simulate(64, 64, 64)


# --------------------------------------------------------------------------------------------
# Blocks against the problem: said in the summary.


def test_fitted_and_padded_blocks_are_said_in_the_summary():
    fitted = refsim.simulate(16, 16, 16)
    assert fitted.summary_dict()["block_fit"] == "fitted"
    assert "blocks 16x16x16 (fitted to the problem)" in fitted.summary()
    padded = refsim.simulate(16, 16, 16, block_m=256)
    assert padded.summary_dict()["block_fit"] == "padded"
    assert "the makespan includes the padding" in padded.summary()
    assert padded.makespan_us > fitted.makespan_us
    assert refsim.simulate(8192, 8192, 8192).summary_dict()["block_fit"] is None
