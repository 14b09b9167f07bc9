"""Answers from sweep results (refsim.sweep.answers): the best configuration per shape and its
margins, the per-device lookup table and its buckets, the table consumed by ``kernels.auto``,
and the heatmap. Results are hand-built Parquet datasets in the sweep's schema."""

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import kernels
from kernels import auto
from kernels.auto import config_for, use_table
from refsim import GemmConfig
from refsim.sweep.answers import best, bucket_bounds, bucket_of, format_best, heatmap, table
from refsim.sweep.results import SCHEMA

CPU = torch.device("cpu")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def row(m, n, k, strategy, makespan_us, *, device="h100", cus=4, **options):
    """One valid result row (the interpreter's 4-unit H100 unless told), ``options`` requested."""
    fields = dict(options, device=device, cus=cus)
    key = f"{strategy} {m}x{n}x{k} " + " ".join(f"{f}={v}" for f, v in sorted(fields.items()))
    return {
        "m": m,
        "n": n,
        "k": k,
        "strategy": strategy,
        "dtype": "fp32",
        **fields,
        "key": key,
        "makespan_us": makespan_us,
        "tflops": 2 * m * n * k / makespan_us / 1e6,
        "deadlock": False,
        "coverage_errors": [],
        "calibration": "datasheet",
        "refsim_version": "0.test",
        "used_block_m": options.get("block_m", 32),
    }


def write_results(path, *parts):
    """A results directory with one Parquet part per list of rows."""
    path.mkdir()
    for i, rows in enumerate(parts):
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path / f"part-{i}.parquet")
    return path


@pytest.fixture
def results(tmp_path):
    """Shape 64x64x256: streamk best (8 us), split_k next (9), data_parallel (10); a refused
    and a deadlocked row are faster but must not count. 128x128x32: data_parallel only.
    32x32x512: split_k only. Two configurations tie on 32x32x512 by makespan."""
    refused = row(64, 64, 256, "streamk", 1.0, sk_tiles=99)
    refused.update(error="sk_tiles=99: must be an integer in 0..4", makespan_us=None, tflops=None)
    deadlocked = row(64, 64, 256, "streamk", 2.0, fixup="owner-waits")
    deadlocked.update(deadlock=True, tflops=None)
    return write_results(
        tmp_path / "results",
        [
            row(64, 64, 256, "data_parallel", 10.0),
            row(64, 64, 256, "split_k", 9.0, split_k=2),
            refused,
            deadlocked,
        ],
        [
            row(64, 64, 256, "streamk", 8.0, fixup="last-arriver"),
            row(128, 128, 32, "data_parallel", 5.0),
            row(32, 32, 512, "split_k", 3.0, split_k=4),
            row(32, 32, 512, "split_k", 3.0, split_k=2),
            row(64, 64, 256, "data_parallel", 1.0, device="mi300x", cus=304),
        ],
    )


def one_line_error(excinfo):
    message = str(excinfo.value)
    assert message and "\n" not in message, message
    return message


# best and format_best.
def test_best_picks_the_fastest_valid_configuration_with_its_margins(results):
    answers = {(r["device"], r["m"], r["n"], r["k"]): r for r in best(results)}
    assert set(answers) == {
        ("h100", 64, 64, 256),
        ("h100", 128, 128, 32),
        ("h100", 32, 32, 512),
        ("mi300x", 64, 64, 256),
    }
    streamk = answers["h100", 64, 64, 256]
    assert (streamk["strategy"], streamk["makespan_us"]) == ("streamk", 8.0)
    assert streamk["options"] == {"fixup": "last-arriver", "cus": 4, "used_block_m": 32}
    assert streamk["margin_runner_up"] == pytest.approx(9.0 / 8.0 - 1)
    assert streamk["margin_over_dp"] == pytest.approx(10.0 / 8.0 - 1)
    assert streamk["candidates"] == 3  # the refused and deadlocked rows do not compete
    alone = answers["h100", 128, 128, 32]
    assert (alone["margin_runner_up"], alone["margin_over_dp"]) == (None, 0.0)
    tie = answers["h100", 32, 32, 512]
    assert tie["options"]["split_k"] == 2, "a tie goes to the smaller key"
    assert (tie["margin_runner_up"], tie["margin_over_dp"]) == (0.0, None)


def test_best_by_strategy_gives_each_strategy_its_best(results):
    per_strategy = [
        r for r in best(results, by="strategy") if (r["m"], r["device"]) == (64, "h100")
    ]
    assert [r["strategy"] for r in per_strategy] == ["data_parallel", "split_k", "streamk"]
    assert [r["margin_over_dp"] for r in per_strategy] == pytest.approx([0.0, 1 / 9, 0.25])


def test_best_refuses_an_unknown_grouping(results):
    with pytest.raises(ValueError, match="by='tile': accepted values are 'shape', 'strategy'") as e:
        best(results, by="tile")
    one_line_error(e)


def test_best_refuses_a_path_that_holds_no_results(tmp_path):
    with pytest.raises(ValueError) as e:
        best(tmp_path / "missing")
    one_line_error(e)


def test_format_best_lines_up_one_row_per_shape(results):
    text = format_best(best(results))
    lines = text.splitlines()
    assert lines[0].split()[:6] == ["device", "dtype", "M", "N", "K", "strategy"]
    assert len(lines) == 5
    streamk = next(line for line in lines if "streamk" in line)
    assert "+12.5%" in streamk and "+25.0%" in streamk and "fixup=last-arriver" in streamk


# Buckets and the table.
def test_buckets_round_to_the_nearest_power_of_two_in_log2():
    for size in range(1, 5000):
        power = bucket_of(size)
        assert power == 2 ** round(math.log2(size)), size
        low, high = bucket_bounds(power)
        assert low <= size < high, (size, power, low, high)
    assert [bucket_bounds(p) for p in (1, 2, 4, 64)] == [(1, 2), (2, 3), (3, 6), (46, 91)]


def test_the_table_answers_each_bucket_by_geometric_mean_ratio(tmp_path):
    """Two shapes of one bucket: A wins the first, B the second; B's geometric-mean ratio to
    each shape's best is lower. D wins the first but was not run on the second, so it does not
    compete (and C is never close)."""
    configs = {"A": 8, "B": 4, "C": 2, "D": 1}  # split_k values naming the configurations
    makespans = {(60, 64, 256): dict(A=10, B=11, C=20, D=9), (70, 64, 256): dict(A=30, B=20, C=21)}
    path = write_results(
        tmp_path / "results",
        [
            row(*shape, "split_k", float(time), split_k=configs[name])
            for shape, times in makespans.items()
            for name, time in times.items()
        ],
        [row(64, 64, 256, "data_parallel", 1.0, device="mi300x", cus=304)],
    )
    answer = table(path, "h100")
    json.dumps(answer)  # JSON-serialisable
    assert answer["device"] == "h100" and answer["dtypes"] == ["fp32"]
    assert answer["source"]["rows"] == 7 and answer["source"]["refsim_version"] == "0.test"
    (bucket,) = answer["buckets"]
    assert (bucket["m"], bucket["n"], bucket["k"]) == ([46, 91], [46, 91], [182, 363])
    assert (bucket["dtype"], bucket["cus"], bucket["strategy"]) == ("fp32", 4, "split_k")
    assert bucket["options"] == {"split_k": configs["B"]}
    assert bucket["geomean_ratio"] == pytest.approx(math.sqrt(11 / 9 * 1.0))
    assert bucket["worst_ratio"] == pytest.approx(11 / 9)
    assert (bucket["shapes"], bucket["covered"]) == (2, 2)


def test_the_table_refuses_a_device_without_rows(results):
    with pytest.raises(ValueError, match=r"no rows for device 'h200'.*h100, mi300x") as e:
        table(results, "h200")
    one_line_error(e)


# The table consumed by kernels.auto.
@pytest.fixture
def installed():
    """Leaves no table installed (and no stale configuration cached) behind."""
    yield use_table
    use_table(None)


def split_k_table(cus=4):
    """The interpreter's device: split_k for the bucket of 64x64x256, where the rule (4 tiles
    on 4 units: whole waves) runs data_parallel."""
    bounds = [list(bucket_bounds(64)), list(bucket_bounds(64)), list(bucket_bounds(256))]
    bucket = dict(zip("mnk", bounds), dtype="fp32", cus=cus, strategy="split_k")
    return {"device": "h100", "buckets": [dict(bucket, options={"split_k": 2, "block_k": 32})]}


def test_auto_uses_the_table_in_its_bucket_and_the_rule_outside(installed):
    assert config_for(64, 64, 256, torch.float32, CPU).strategy == "data_parallel"
    installed(split_k_table())
    tuned = config_for(64, 64, 256, torch.float32, CPU)
    assert (tuned.strategy, tuned.split_k, tuned.block_k) == ("split_k", 2, 32)
    assert config_for(70, 50, 300, torch.float32, CPU).strategy == "split_k"  # same bucket
    assert config_for(128, 128, 256, torch.float32, CPU).strategy == "data_parallel"
    assert config_for(64, 64, 256, torch.float16, CPU).strategy == "data_parallel"  # dtype
    overridden = config_for(64, 64, 256, torch.float32, CPU, "auto", (("block_m", 16),))
    assert (overridden.strategy, overridden.block_m) == ("split_k", 16), "overrides win"
    installed(None)
    assert config_for(64, 64, 256, torch.float32, CPU).strategy == "data_parallel", "stale cache"


def test_auto_ignores_a_table_of_another_unit_count(installed):
    installed(split_k_table(cus=8))
    assert config_for(64, 64, 256, torch.float32, CPU).strategy == "data_parallel"


def test_auto_adapts_the_answer_to_what_the_kernels_run(installed):
    """A waiting fixup becomes last-arriver, sk_tiles is capped to the tiles, a block to the
    problem; a tile order the kernels do not follow is replaced by theirs, and data_parallel's
    grid (one program per tile) is not taken from the table."""
    streamk, data_parallel = split_k_table()["buckets"][0], split_k_table()["buckets"][0]
    streamk = dict(streamk, strategy="streamk")
    streamk["options"] = {"fixup": "owner-waits", "sk_tiles": 99, "block_m": 128, "grid": 4}
    data_parallel = dict(data_parallel, strategy="data_parallel", k=[1, 100])
    data_parallel["options"] = {"tile_order": "contiguous", "grid": 7}
    installed({"device": "h100", "buckets": [streamk, data_parallel]})
    config = config_for(64, 64, 256, torch.float32, CPU)
    assert (config.strategy, config.fixup, config.sk_tiles) == ("streamk", "last-arriver", 2)
    assert (config.block_m, config.grid) == (64, 4)
    config = config_for(64, 64, 64, torch.float32, CPU)
    assert (config.strategy, config.tile_order, config.grid) == ("data_parallel", "strided", 4)


def test_auto_reads_a_built_table_from_json_and_from_refsim_table(
    results, tmp_path, installed, monkeypatch
):
    """The whole path: sweep results -> table() -> JSON file -> auto, installed by use_table and
    by REFSIM_TABLE."""
    rows = best(results)
    assert next(r for r in rows if r["m"] == 32)["strategy"] == "split_k"
    path = tmp_path / "h100.json"
    path.write_text(json.dumps(table(results, "h100")))
    installed(str(path))
    config = config_for(32, 32, 512, torch.float32, CPU)
    assert (config.strategy, config.split_k) == ("split_k", 2)
    assert config_for(64, 64, 256, torch.float32, CPU).strategy == "streamk"
    monkeypatch.setenv("REFSIM_TABLE", str(path))
    monkeypatch.setattr(auto, "_tables", None)
    config_for.cache_clear()
    assert config_for(64, 64, 256, torch.float32, CPU).fixup == "last-arriver"


def test_use_table_refuses_what_is_not_a_table(installed):
    with pytest.raises(ValueError, match="not a lookup table") as e:
        installed({"device": "h100"})
    one_line_error(e)
    bucket = dict(split_k_table()["buckets"][0])
    del bucket["cus"]
    with pytest.raises(ValueError, match="bucket lacks cus") as e:
        installed({"device": "h100", "buckets": [bucket]})
    one_line_error(e)


@pytest.mark.interpreter
@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU tensors run in the interpreter only")
def test_a_tabled_choice_computes_the_product(installed):
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randint(-4, 5, s, generator=generator).float() for s in ((64, 256), (256, 64)))
    installed(split_k_table())
    assert torch.equal(kernels.matmul(a, b), a @ b)
    assert config_for(64, 64, 256, torch.float32, CPU).strategy == "split_k"


# The heatmap.
def test_heatmap_writes_a_png_of_both_panels(tmp_path):
    out = tmp_path / "k256.png"
    extra = write_results(
        tmp_path / "grid",
        [
            row(m, n, 256, strategy, time * m * n / 4096)
            for m in (64, 128)
            for n in (64, 128, 256)
            for strategy, time in (("data_parallel", 10.0), ("streamk", 9.0 if m == 64 else 11.0))
        ],
    )
    heatmap(extra, 256, out)
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000


def test_heatmap_refuses_a_k_without_rows_and_mixed_devices(results, tmp_path):
    with pytest.raises(ValueError, match="no valid rows with K=999") as e:
        heatmap(results, 999, tmp_path / "x.png")
    one_line_error(e)
    with pytest.raises(ValueError, match="pass device=") as e:
        heatmap(results, 256, tmp_path / "x.png")
    one_line_error(e)
    heatmap(results, 256, tmp_path / "h100.png", device="h100")
    assert (tmp_path / "h100.png").read_bytes().startswith(PNG_SIGNATURE)


# Rows of a spec without a strategy.
def test_rows_without_a_requested_strategy_answer_with_the_one_used(tmp_path):
    """New rows carry ``used_strategy``; older ones (null strategy, no used_strategy) mean
    GemmConfig's default. Neither gives a null strategy anywhere."""
    default = GemmConfig(8, 8, 8).strategy
    sizes = [(m, n) for m in (64, 128) for n in (64, 128)]
    new = [dict(row(m, n, 256, None, float(m)), used_strategy=default) for m, n in sizes]
    old = [row(m, n, 256, None, float(m) + 1, block_m=64) for m, n in sizes]
    results = write_results(tmp_path / "results", new, old)
    answers = best(results)
    assert answers and {answer["strategy"] for answer in answers} == {default}
    assert "None" not in format_best(answers)
    built = table(results, "h100")
    assert built["buckets"] and {b["strategy"] for b in built["buckets"]} == {default}
    out = tmp_path / "k256.png"
    heatmap(results, 256, out)
    assert out.read_bytes().startswith(PNG_SIGNATURE)
