"""Numerics: outputs and partial buffers, exact on integer inputs, within tolerance on random ones."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import refsim
from conformance.tolerances import TOLERANCE
from refsim import numerics, tiling

SMALL = {"block_m": 16, "block_n": 32, "block_k": 16, "cus": 8, "xcds": 4}

# (M, N, K) including 1x1x1, K < BLOCK_K, K not a multiple of BLOCK_K, M or N = 1, and tile
# counts at the grid +/- 1 (8 programs: 7, 8 and 9 tiles of 16x32).
SHAPES = [
    (1, 1, 1),
    (17, 33, 5),
    (130, 70, 300),
    (1, 200, 64),
    (100, 1, 50),
    (112, 32, 80),
    (128, 32, 47),
    (144, 32, 33),
]

RUNS = (
    [{"strategy": "streamk", "fixup": f} for f in refsim.FIXUPS]
    + [{"strategy": "streamk", "fixup": f, "sk_hybrid": "one-wave"} for f in refsim.FIXUPS]
    + [{"strategy": s} for s in ("data_parallel", "persistent", "work_stealing")]
    + [{"strategy": "work_stealing", "counters_per_xcd": 2}]
    + [{"strategy": "split_k", "split_k": s} for s in (1, 2, 3)]
)


def integer_inputs(m, n, k, seed):
    """Integer values in -4..4 (never all zero): every fp32 sum of products is exact."""
    rng = np.random.default_rng(seed)
    return (
        rng.integers(-4, 5, (m, k)).astype(np.float64),
        rng.integers(-4, 5, (k, n)).astype(np.float64),
        rng.integers(-4, 5, n).astype(np.float64),
    )


def _run_kwargs(run, k):
    kwargs = dict(SMALL, **run)
    if run.get("split_k", 1) > tiling.cdiv(k, SMALL["block_k"]):
        pytest.skip("more splits than K-iterations")
    return kwargs


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("run", RUNS, ids=lambda r: "-".join(str(v) for v in r.values()))
@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
def test_integer_inputs_give_the_float64_product_bit_for_bit(shape, run, with_bias):
    m, n, k = shape
    a, b, bias = integer_inputs(m, n, k, seed=m * 7919 + n * 31 + k)
    bias = bias if with_bias else None
    result = refsim.simulate(m, n, k, a=a, b=b, bias=bias, **_run_kwargs(run, k))
    expected = a @ b + (0.0 if bias is None else bias)
    assert result.output.dtype == np.float32
    mismatch = np.argwhere(result.output.astype(np.float64) != expected)
    assert mismatch.size == 0, f"first mismatches at {mismatch[:5].tolist()}"


@pytest.mark.parametrize("fixup", refsim.FIXUPS)
def test_partial_buffers_hold_the_documented_sums(fixup):
    m, n, k = 130, 70, 300
    a, b, bias = integer_inputs(m, n, k, seed=3)
    result = refsim.simulate(
        m, n, k, a=a, b=b, bias=bias, fixup=fixup, sk_hybrid="one-wave", **SMALL
    )
    config = result.config
    assert result.fixups, "the case must split tiles"
    expected_writers = 0
    for f in result.fixups:
        expected_writers += {
            "owner-waits": len(f.contributors) - 1,
            "turnstile": len(f.contributors) - 1,
            "last-arriver": len(f.contributors),
            "atomic": 0,
        }[fixup]
    assert len(result.partials) == expected_writers
    for p in result.partials:
        pid_m, pid_n = next((r.pid_m, r.pid_n) for r in result.records if r.tile == p.tile)
        rows = slice(pid_m * config.block_m, (pid_m + 1) * config.block_m)
        cols = slice(pid_n * config.block_n, (pid_n + 1) * config.block_n)
        ks = slice(p.k_begin * config.block_k, p.k_end * config.block_k)
        assert p.value.dtype == np.float32
        np.testing.assert_array_equal(p.value, a[rows, ks] @ b[ks, cols])
        assert p.kind == ("running" if fixup == "turnstile" else "own")
        if fixup == "turnstile":
            assert p.k_begin == 0


def test_split_k_partials_are_each_splits_own_sum():
    m, n, k = 40, 40, 200
    a, b, _ = integer_inputs(m, n, k, seed=5)
    result = refsim.simulate(m, n, k, a=a, b=b, strategy="split_k", split_k=3, **SMALL)
    assert len(result.partials) == 3 * result.config.total_tiles
    assert sorted({(p.k_begin, p.k_end) for p in result.partials}) == [(0, 4), (4, 8), (8, 13)]


def test_atomic_fixup_sums_in_arrival_order():
    """The output of an atomic tile is (0 + first arrival) + second arrival ..., bias with the owner."""
    m, n, k = 64, 32, 160
    rng = np.random.default_rng(11)
    a, b, bias = rng.standard_normal((m, k)), rng.standard_normal((k, n)), rng.standard_normal(n)
    result = refsim.simulate(
        m,
        n,
        k,
        a=a,
        b=b,
        bias=bias,
        fixup="atomic",
        sk_hybrid="one-wave",
        block_m=16,
        block_n=16,
        block_k=16,
        cus=3,
        xcds=1,
        device="h100",
    )
    math = numerics.TileMath(result.config, a, b, bias)
    split = [f for f in result.fixups if len(f.contributors) > 1]
    assert split
    for f in split:
        record = {r.program: r for r in result.records if r.tile == f.tile}
        total = np.zeros((16, 16), np.float32)
        for program in f.order:
            r = record[program]
            acc = math.accumulate(r.pid_m, r.pid_n, r.k_begin, r.k_end)
            total = total + (math.with_bias(acc, r.pid_n) if program == f.contributors[0] else acc)
        rows, cols = math.region(r.pid_m, r.pid_n)
        np.testing.assert_array_equal(result.output[rows, cols], total)


@pytest.mark.parametrize("dtype", sorted(TOLERANCE))
@pytest.mark.parametrize("strategy", refsim.STRATEGIES)
def test_random_inputs_within_the_fp32_accumulation_tolerance(dtype, strategy):
    """refsim's output is the fp32 accumulator plus bias (the cast to ``dtype`` comes after),
    so every input dtype is held to the fp32 bound against a float64 product of the rounded
    inputs."""
    m, n, k = 97, 61, 333
    rng = np.random.default_rng(2024)
    a, b, bias = rng.standard_normal((m, k)), rng.standard_normal((k, n)), rng.standard_normal(n)
    result = refsim.simulate(m, n, k, a=a, b=b, bias=bias, strategy=strategy, dtype=dtype, **SMALL)
    a64 = numerics.round_to_dtype(a, dtype).astype(np.float64)
    b64 = numerics.round_to_dtype(b, dtype).astype(np.float64)
    expected = a64 @ b64 + numerics.round_to_dtype(bias, dtype)
    scale = np.abs(a64) @ np.abs(b64) + 1.0
    error = np.abs(result.output - expected) / scale
    worst = np.unravel_index(np.argmax(error), error.shape)
    bound = TOLERANCE["fp32"]
    assert error.max() <= bound, f"worst relative error {error.max():.3g} at {worst} > {bound}"


def test_bf16_and_fp16_rounding_match_torch():
    rng = np.random.default_rng(1)
    values = np.concatenate(
        [
            rng.standard_normal(10_000) * 10.0 ** rng.integers(-6, 6, 10_000),
            [1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, -(1.0 + 2.0**-8), 0.0, -0.0],
        ]
    )
    values = values.astype(np.float32)
    for dtype, torch_dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        expected = torch.from_numpy(values).to(torch_dtype).to(torch.float32).numpy()
        np.testing.assert_array_equal(numerics.round_to_dtype(values, dtype), expected)


def test_deadlocked_run_leaves_unfinalised_tiles_nan():
    a, b, _ = integer_inputs(16, 16, 64, seed=0)
    result = refsim.simulate(
        16,
        16,
        64,
        a=a,
        b=b,
        cus=1,
        xcds=1,
        grid=2,
        sk_hybrid="one-wave",
        block_m=16,
        block_n=16,
        block_k=16,
    )
    assert result.deadlock is not None
    assert np.isnan(result.output).all()


@pytest.mark.parametrize(
    "inputs, message",
    [
        ({"a": np.ones((3, 4)), "b": np.ones((5, 6))}, "a has shape"),
        ({"a": np.ones((4, 5)), "b": np.ones((4, 6))}, "b has shape"),
        ({"a": np.ones((4, 5)), "b": np.ones((5, 6)), "bias": np.ones(4)}, "bias has shape"),
        ({"a": np.ones((4, 5)), "b": np.ones((5, 6)), "bias": np.ones((1, 6))}, "bias has shape"),
        ({"a": np.full((4, 5), np.nan), "b": np.ones((5, 6))}, "NaN"),
        ({"a": np.full((4, 5), "x"), "b": np.ones((5, 6))}, "dtype"),
        ({"a": np.ones((4, 5))}, "both a and b"),
        ({"bias": np.ones(6)}, "bias needs a and b"),
    ],
)
def test_bad_arrays_are_rejected_before_simulating(inputs, message):
    with pytest.raises(ValueError, match=message):
        refsim.simulate(4, 6, 5, block_m=16, block_n=16, block_k=16, **inputs)


@st.composite
def small_runs(draw):
    """Random small problems on small machines, every strategy and fixup, bias or not."""
    m, n, k = draw(st.integers(1, 150)), draw(st.integers(1, 150)), draw(st.integers(1, 200))
    blocks = st.sampled_from([16, 32, 64])
    kwargs = {
        "block_m": draw(blocks),
        "block_n": draw(blocks),
        "block_k": draw(blocks),
        "cus": draw(st.integers(1, 24)),
        "xcds": 1,
        "device": draw(st.sampled_from(["mi300x", "h100"])),
        "strategy": draw(st.sampled_from(refsim.STRATEGIES)),
        "group_m": draw(st.integers(1, 4)),
    }
    iters = tiling.cdiv(k, kwargs["block_k"])
    if kwargs["strategy"] == "streamk":
        kwargs["fixup"] = draw(st.sampled_from(refsim.FIXUPS))
        kwargs["sk_hybrid"] = draw(st.sampled_from(["two-tile", "one-wave"]))
    if kwargs["strategy"] == "split_k":
        kwargs["split_k"] = draw(st.integers(1, min(iters, 5)))
    return (m, n, k), kwargs, draw(st.booleans()), draw(st.integers(0, 2**32 - 1))


@settings(max_examples=120, deadline=None)
@given(small_runs())
def test_random_small_runs_are_exact_with_bias_added_once(run):
    (m, n, k), kwargs, with_bias, seed = run
    a, b, bias = integer_inputs(m, n, k, seed)
    bias = bias if with_bias else None
    result = refsim.simulate(m, n, k, a=a, b=b, bias=bias, **kwargs)
    expected = a @ b + (0.0 if bias is None else bias)
    mismatch = np.argwhere(result.output.astype(np.float64) != expected)
    assert mismatch.size == 0, f"first mismatches at {mismatch[:5].tolist()}"


@pytest.mark.parametrize("overlap", [False, True])
def test_accumulating_all_records_equals_one_at_a_time(overlap):
    """The K-sweep (records disjoint in K) and its fallback (overlapping records) agree with
    per-record accumulation, bit for bit, on integer inputs."""
    m, n, k = 70, 50, 200
    rng = np.random.default_rng(5)
    a, b = rng.integers(-4, 5, (m, k)), rng.integers(-4, 5, (k, n))
    result = refsim.simulate(
        m,
        n,
        k,
        strategy="streamk",
        sk_hybrid="one-wave",
        block_m=16,
        block_n=16,
        block_k=16,
        cus=3,
        xcds=1,
        device="h100",
    )
    records = [r for r in result.records if r.kernel == "gemm"]
    if overlap:
        records.append(records[0]._replace(k_begin=0, k_end=records[0].k_end + 1))
    math = numerics.TileMath(result.config, a, b, None)
    swept = math.accumulate_all(records)
    assert len(swept) == len(records)
    for r, acc in zip(records, swept):
        np.testing.assert_array_equal(acc, math.accumulate(r.pid_m, r.pid_n, r.k_begin, r.k_end))


def test_block_products_do_not_depend_on_the_matmul_shape():
    """Random inputs: per-tile batched products and whole-output products agree bit for bit,
    and each equals float32 sums, in K order, of float64 block products rounded once."""
    m, n, k = 70, 50, 200
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    result = refsim.simulate(m, n, k, sk_hybrid="one-wave", block_m=16, block_n=16, block_k=16)
    records = [r for r in result.records if r.kernel == "gemm"]
    math = numerics.TileMath(result.config, a, b, None)
    a64 = numerics.round_to_dtype(a, "bf16").astype(np.float64)
    b64 = numerics.round_to_dtype(b, "bf16").astype(np.float64)
    for r, swept in zip(records, math.accumulate_all(records)):
        rows, cols = math.region(r.pid_m, r.pid_n)
        expected = np.zeros((rows.stop - rows.start, cols.stop - cols.start), np.float32)
        for kk in range(r.k_begin, r.k_end):
            ks = slice(16 * kk, 16 * (kk + 1))
            expected = expected + (a64[rows, ks] @ b64[ks, cols]).astype(np.float32)
        np.testing.assert_array_equal(swept, expected)
        np.testing.assert_array_equal(
            math.accumulate(r.pid_m, r.pid_n, r.k_begin, r.k_end), expected
        )
