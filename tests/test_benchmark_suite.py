"""benchmarks/suite.py on the CPU: its shape list, its configs, its refusal without a GPU and its
Markdown/CSV report from fake measurements."""

import contextlib
import csv
import dataclasses
import importlib
import math
import os
import pathlib
import subprocess
import sys

import pytest

from refsim.config import GemmConfig
from refsim.tiling import cdiv

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPT = BENCHMARKS / "suite.py"
REQUIRED_CATEGORIES = (
    "squares",
    "waves-132",
    "waves-304",
    "skinny-m",
    "skinny-n",
    "large-k",
    "small",
    "llm",
)
ENV = {
    "gpu": "NVIDIA H200",
    "sms": 132,
    "driver": "570.86.15",
    "torch": "2.13.0",
    "triton": "3.6.0",
    "date": "2026-01-02",
}


@contextlib.contextmanager
def benchmark_module(name):
    """A script of benchmarks/ imported as a module (the scripts import each other by name)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.fixture(scope="module")
def suite():
    with benchmark_module("suite") as module:
        yield module


def run_script(*args, **env):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def test_list_prints_at_least_40_shapes_in_every_category_and_both_dtypes():
    result = run_script("--list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    headers = [line.split(" (")[0] for line in lines if line.endswith(":")]
    shape_lines = [line for line in lines if line.startswith("  ")]
    assert set(REQUIRED_CATEGORIES) <= set(headers)
    assert len(shape_lines) >= 40
    assert lines[-1] == f"{len(shape_lines)} shapes, dtypes bf16, fp16"


def test_quick_list_takes_one_shape_per_chosen_category():
    result = run_script("--list", "--quick", "--categories", "small", "llm")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "2 shapes, dtypes bf16, fp16"


def test_without_a_gpu_the_script_exits_2_with_one_line():
    result = run_script("--quick", CUDA_VISIBLE_DEVICES="", HIP_VISIBLE_DEVICES="")
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "GPU" in result.stderr


def test_shapes_are_unique_and_fit_their_category(suite):
    shapes = suite.all_shapes()
    assert len({shape.size for shape in shapes}) == len(shapes)
    assert len({(shape.category, shape.label) for shape in shapes}) == len(shapes)
    by_category = {name: [s for s in shapes if s.category == name] for name in REQUIRED_CATEGORIES}
    assert all(by_category.values())
    assert {s.m for s in by_category["squares"] if s.m == s.n == s.k} >= {1024, 8192}
    assert all(s.m <= 16 for s in by_category["skinny-m"])
    assert all(s.n <= 16 for s in by_category["skinny-n"])
    assert all(max(s.size) <= 512 for s in by_category["small"])
    assert all(s.k >= 16384 and s.k >= 4 * max(s.m, s.n) for s in by_category["large-k"])
    assert {label.split()[0] for label in (s.label for s in by_category["llm"])} == {
        "llama3-8b",
        "llama3-70b",
    }


@pytest.mark.parametrize("units", [132, 304])
def test_wave_shapes_sit_at_below_and_above_whole_waves(suite, units):
    offsets = set()
    for shape in suite.all_shapes():
        if shape.category == f"waves-{units}":
            tiles = cdiv(shape.m, 128) * cdiv(shape.n, 128)
            offset = (tiles + units // 2) % units - units // 2
            assert abs(offset) <= 8, (shape, tiles)
            assert str(tiles) in shape.label
            offsets.add((offset > 0) - (offset < 0))
    assert offsets == {-1, 0, 1}


def test_every_shape_is_a_valid_config_for_every_strategy_and_dtype(suite):
    for shape in suite.all_shapes():
        for dtype in suite.DTYPES:
            for strategy in suite.STRATEGIES:
                config = suite.strategy_config(shape, dtype, strategy)
                assert isinstance(config, GemmConfig)
                assert (config.m, config.n, config.k, config.dtype) == (*shape.size, dtype)
                assert config.cus == 132


def fake_measurements(suite):
    square, skinny = suite.all_shapes()[0], suite.Shape("skinny-m", "decode", 16, 4096, 4096)
    measure = suite.Measurement
    return [
        measure(square, "bf16", "torch.matmul", ms=1.0),
        measure(square, "bf16", "auto", "data_parallel 128x128x64", ms=0.5, kernel_us=480.0),
        measure(square, "bf16", "persistent", "persistent 128x256x64", ms=0.25, kernel_us=240.0),
        measure(square, "bf16", "split_k", "split_k x2", problem="output: relative error 1"),
        measure(skinny, "fp16", "torch.matmul", ms=0.1),
        measure(skinny, "fp16", "auto", "split_k x4 16x128x64", ms=0.2, kernel_us=190.0),
    ]


def test_report_has_the_header_the_summary_and_every_measurement(suite, tmp_path):
    host = [("torch.matmul", 5.5, None), ("kernels.matmul (auto, cached)", None, "bad output")]
    markdown, table = suite.write_report(
        fake_measurements(suite), ENV, host, "2 shapes", tmp_path / "out"
    )
    assert (markdown.name, table.name) == ("suite-h200.md", "suite-h200.csv")
    text = markdown.read_text()
    for field in ("NVIDIA H200", "driver 570.86.15", "torch 2.13.0", "Triton 3.6.0", "2026-01-02"):
        assert field in text
    # auto's ratios are 1.0 / 0.5 = 2 and 0.1 / 0.2 = 0.5: geomean 1, worst the skinny shape.
    assert "geomean ratio 1.000 over 2 shape/dtype pairs" in text
    assert "worst shape for auto: skinny-m decode (16x4096x4096) fp16, ratio 0.500" in text
    row = (
        "| squares | 1024x1024x1024 | 1024x1024x1024 | bf16 | persistent | 4.000 | 2.000 | 2.000 |"
    )
    assert row in text
    assert "| skinny-m | decode | 16x4096x4096 | fp16 | auto | 0.500 | 0.500 | 1.000 |" in text
    # regrets 4 / 2 = 2 (persistent beat auto) and 1 (auto the best): geomean sqrt(2)
    assert "geomean 1.414, worst 2.000, auto the best on 1 of 2." in text
    assert "output: relative error 1" in text
    assert "| torch.matmul | 5.5 |" in text
    assert "| kernels.matmul (auto, cached) | wrong, not timed: bad output |" in text

    lines = table.read_text().splitlines()
    assert lines[0] == "# GPU NVIDIA H200, driver 570.86.15, torch 2.13.0, Triton 3.6.0, 2026-01-02"
    rows = list(csv.DictReader(lines[1:]))
    assert len(rows) == 6
    persistent = next(row for row in rows if row["candidate"] == "persistent")
    assert float(persistent["ratio"]) == 4.0
    assert math.isclose(float(persistent["tflops"]), 2 * 1024**3 / 0.25e-3 / 1e12, rel_tol=1e-3)
    assert float(persistent["kernel_us"]) == 240.0
    wrong = next(row for row in rows if row["candidate"] == "split_k")
    assert (wrong["ms"], wrong["ratio"], wrong["problem"]) == ("", "", "output: relative error 1")


def test_summary_without_a_timed_auto_says_so(suite):
    square = suite.all_shapes()[0]
    rows = [suite.Measurement(square, "bf16", "torch.matmul", ms=1.0)]
    lines = suite.summary_lines(rows)
    assert any("no timed result" in line for line in lines)
    assert lines[-1].endswith("| none timed |  |  |  |")


def test_gpu_slug_names_files_by_gpu(suite):
    assert suite.gpu_slug("NVIDIA H200") == "h200"
    assert suite.gpu_slug("NVIDIA H100 80GB HBM3") == "h100-80gb-hbm3"
    assert suite.gpu_slug("AMD Instinct MI300X") == "instinct-mi300x"


def test_resume_reads_back_what_the_report_wrote_for_the_same_gpu_only(suite, tmp_path):
    written = fake_measurements(suite)
    _, table = suite.write_report(written, ENV, [], "2 shapes", tmp_path)
    shapes = [*suite.all_shapes(), written[-1].shape]
    assert suite.read_measurements(table, ENV["gpu"], shapes) == written
    # Shapes no longer in the suite are dropped; another GPU's file or no file gives nothing.
    assert suite.read_measurements(table, ENV["gpu"], suite.all_shapes()) == written[:4]
    assert suite.read_measurements(table, "NVIDIA H100", shapes) == []
    assert suite.read_measurements(tmp_path / "missing.csv", ENV["gpu"], shapes) == []


def test_combine_takes_the_second_runs_other_configs_at_their_own_ratio(suite, tmp_path):
    first = fake_measurements(suite)
    square, skinny = first[0].shape, first[-1].shape
    measure = suite.Measurement
    second = [
        measure(square, "bf16", "torch.matmul", ms=2.0),  # a slower run: scaled back by 1/2
        measure(square, "bf16", "auto", "persistent 128x256x64", ms=0.5, kernel_us=240.0),
        measure(skinny, "fp16", "torch.matmul", ms=0.1),
        measure(skinny, "fp16", "auto", "split_k x4 16x128x64", ms=0.05, kernel_us=50.0),
    ]
    only_second = suite.Shape("small", "64x64x64", 64, 64, 64)
    second += [
        measure(only_second, "bf16", "torch.matmul", ms=0.004),
        measure(only_second, "bf16", "auto", "data_parallel 64x64x64", ms=0.008),
    ]
    combined = suite.combine(first, second)
    assert [m.candidate for m in combined[: len(first)]] == [m.candidate for m in first]
    assert combined[len(first) :] == second[-2:]  # a shape only the second run measured
    auto = combined[1]
    assert (auto.config, auto.ms, auto.kernel_us) == ("persistent 128x256x64", 0.25, 240.0)
    assert combined[len(first) - 1] == first[-1]  # the same config in both runs: the first stays
    markdown, table = suite.write_report(second, ENV, [("torch.matmul", 5.5, None)], "x", tmp_path)
    _, written = suite.write_report(first, ENV, [], "x", tmp_path / "first")
    assert suite.host_rows(markdown.read_text()) == [("torch.matmul", 5.5, None)]
    assert (
        suite.main(["--combine", str(written), str(table), "--out-dir", str(tmp_path / "c")]) == 0
    )
    text = (tmp_path / "c" / "suite-h200.md").read_text()
    assert "auto from a second run" in text and "| torch.matmul | 5.5 |" in text


def test_combine_newer_takes_the_second_run_also_where_the_config_is_the_same(suite, tmp_path):
    first = fake_measurements(suite)
    vendor, auto = first[:2]  # the square shape: torch.matmul and auto
    same = dataclasses.replace(auto, ms=auto.ms / 2)  # newer code, the same config
    second = [vendor, same]
    assert suite.combine(first, second)[1] == auto
    assert suite.combine(first, second, newer=True)[1] == same
    _, written = suite.write_report(first, ENV, [], "x", tmp_path / "first")
    _, table = suite.write_report(second, ENV, [], "x", tmp_path / "second")
    out = tmp_path / "c"
    assert (
        suite.main(["--combine", str(written), str(table), "--newer", "--out-dir", str(out)]) == 0
    )
    assert "from a second run of newer code" in (out / "suite-h200.md").read_text()
    with pytest.raises(SystemExit) as refused:
        suite.parse_args(["--newer"])
    assert refused.value.code == 2


def run_benchmark(name, *args):
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "HIP_VISIBLE_DEVICES": ""},
    )


def test_auto_candidates_names_an_unknown_shape_and_lists_the_suites(suite):
    listed = run_benchmark("auto_candidates.py", "--list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [shape.label for shape in suite.all_shapes()]
    unknown = run_benchmark("auto_candidates.py", "--shapes", "512x512x16384", "9x9x9")
    assert unknown.returncode == 2
    assert "unknown shape '9x9x9'" in unknown.stderr


@pytest.mark.parametrize("text", ["4x4", "0x8x8", "axbxc", "4x4x4x4"])
def test_ncu_targets_refuses_a_shape_that_is_not_mxnxk(text):
    result = run_benchmark("ncu_targets.py", text)
    assert result.returncode == 2
    assert "is not MxNxK with positive sizes" in result.stderr


def test_ncu_targets_without_a_gpu_exits_2_with_one_line():
    result = run_benchmark("ncu_targets.py", "64x64x64")
    assert result.returncode == 2
    assert result.stderr.strip() == "ncu_targets.py: needs a CUDA GPU"


def test_host_path_without_a_gpu_exits_2_with_one_line_and_refuses_no_calls():
    result = run_benchmark("host_path.py")
    assert result.returncode == 2
    assert result.stderr.strip() == "host_path.py: needs a CUDA or ROCm GPU (or --device cpu)"
    result = run_benchmark("host_path.py", "--device", "cpu", "--repeats", "0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith("--repeats must be at least 1, got 0")


@pytest.mark.interpreter
def test_host_path_times_every_stage_of_the_cached_call_under_the_interpreter(tmp_path):
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "host_path.py"), "--device", "cpu", "--repeats", "1"]
        + ["--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""},
    )
    assert result.returncode == 0, result.stderr
    report = (tmp_path / "host-path-cpu.md").read_text()
    rows = dict(
        line.strip("| ").rsplit(" | ", 1) for line in report.splitlines() if line.endswith(" |")
    )
    stages = [
        "torch.matmul",
        "kernels.matmul (auto, cached)",
        "kernels.run (a GemmConfig in hand)",
        "the prepared call: allocation and launches",
        "its key and lookup",
        "the output's allocation",
        "the same through torch.empty",
        "the launcher (the interpreter)",
    ]
    assert [row.strip() for row in rows if row.strip() not in ("stage", "---")] == stages
    assert all(float(us) > 0 for row, us in rows.items() if row.strip() in stages)
    profile = report.split("```")[1].strip().splitlines()
    assert profile[0].split()[:2] == ["ncalls", "tottime"]
    assert len(profile) == 13  # the header and the twelve functions of most own time
    assert "site-packages/" not in report and str(BENCHMARKS.parent) not in report


def test_split_k_reduction_without_a_gpu_exits_2_with_one_line():
    result = run_benchmark("split_k_reduction.py")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == (
        "split_k_reduction.py: needs a CUDA or ROCm GPU (torch.cuda.is_available() is false)"
    )


SPLIT_K_REPORT = """# GPU NVIDIA H200, driver 570.86.15, torch 2.13.0, Triton 3.6.0, 2026-01-02
shape,m,n,k,dtype,variant,config,ms,ratio,reduce_us
256x256x65536,256,256,65536,bf16,torch.matmul,,0.03,1.0,
256x256x65536,256,256,65536,bf16,bands,split_k x16 bands 32 128x128x64,0.04,0.75,1.5
256x256x65536,256,256,65536,bf16,one program per tile,split_k x16 128x128x64,0.05,0.6,12.9
"""


def test_split_k_reduction_predicts_an_earlier_runs_reductions_again(tmp_path):
    """--from-csv reads a run written before the prediction column existed, and predicts each
    timed row's reduction with the config its row describes."""
    earlier = tmp_path / "earlier.csv"
    earlier.write_text(SPLIT_K_REPORT)
    with benchmark_module("split_k_reduction") as module:
        assert module.main(["--from-csv", str(earlier), "--out-dir", str(tmp_path)]) == 0
        with open(tmp_path / "split-k-reduction-h200.csv") as written:
            rows = list(csv.DictReader(line for line in written if not line.startswith("#")))
        blocks = {"block_m": 128, "block_n": 128, "block_k": 64}
        config = GemmConfig(
            256, 256, 65536, strategy="split_k", split_k=16, dtype="bf16", device="h200", **blocks
        )
        banded = module.predicted_reduce_us(config.replace(reduce_bands=32))
        single = module.predicted_reduce_us(config.replace(reduce_bands=1))
    assert [row["predicted_reduce_us"] for row in rows] == ["", str(banded), str(single)]
    assert [row["reduce_us"] for row in rows] == ["", "1.5", "12.9"]
    assert 0 < banded < single
    report = (tmp_path / "split-k-reduction-h200.md").read_text()
    assert f"| 1.5 | {banded:.1f} |" in report and "2026-01-02" in report


def test_split_k_reduction_from_csv_refuses_what_it_cannot_predict_in_one_line(tmp_path):
    not_split_k = tmp_path / "other.csv"
    not_split_k.write_text(SPLIT_K_REPORT.replace("split_k x16 128x128x64", "data_parallel"))
    for path, said in (
        (tmp_path / "missing.csv", "No such file"),
        (not_split_k, "not a split-K config: 'data_parallel'"),
    ):
        result = run_benchmark("split_k_reduction.py", "--from-csv", str(path))
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1
        assert said in result.stderr


def test_split_k_reduction_variants_differ_from_the_default_where_they_claim():
    with benchmark_module("split_k_reduction") as module:
        config = GemmConfig(256, 256, 65536, strategy="split_k", split_k=16, device="h200")
        default = module.VARIANTS["bands"][0]
        single = config.replace(**module.VARIANTS["one program per tile"][0])
        assert config.replace(**default).reduce_bands == config.reduce_bands > 1
        assert single.reduce_bands == 1 and single.split_k == config.split_k
        assert [unrolled for _, unrolled in module.VARIANTS.values()] == [True, False, True]
        shape = dict(shape="s", m=1, n=2, k=3, dtype="bf16")
        unpredicted = dict(reduce_us=None, predicted_reduce_us=None)
        rows = [
            dict(shape, variant="torch.matmul", config="", ms=0.02, ratio=1.0, **unpredicted),
            dict(shape, variant="bands", config="c", ms=0.04, ratio=0.5, reduce_us=3.25)
            | {"predicted_reduce_us": 4.04},
        ]
        lines = module.markdown_lines(rows, ENV)
        assert lines[-2] == "| s | bf16 | torch.matmul |  | 0.0200 | 1.000 |  |  |"
        assert lines[-1] == "| s | bf16 | bands | c | 0.0400 | 0.500 | 3.2 | 4.0 |"
        assert "NVIDIA H200, driver 570.86.15" in lines[2]


def test_split_k_reduction_times_each_variant_as_built_not_a_prepared_earlier_one(monkeypatch):
    """Each timed call builds its own launches: the not-unrolled variant really loads one slice
    a step (unroll 1, where the default unrolls by 3), the per-tile one really has one band,
    and every output is checked before timing."""
    import kernels.split_k
    from conformance.tolerances import tolerance_problem

    with benchmark_module("split_k_reduction") as module:
        built, timed = [], []  # (bands, unroll) of every reduction launch built; per timed call
        real_unroll = kernels.split_k.reduce_unroll

        def spy_unroll(config, num_warps):
            built.append((config.reduce_bands, real_unroll(config, num_warps)))
            return built[-1][1]

        def fake_bench(call, a, b):
            start = len(built)
            output = call()
            timed.append(built[start:])
            return 1.0, tolerance_problem(output, a, b, None)

        monkeypatch.setattr(kernels.split_k, "reduce_unroll", spy_unroll)
        monkeypatch.setattr(module, "bench_if_correct", fake_bench)
        config = GemmConfig(32, 32, 320, strategy="split_k", split_k=4, device="h100", cus=16,
                            xcds=1, dtype="bf16", block_m=16, block_n=16, block_k=16)  # fmt: skip
        rows = module.measure("s", 32, 32, 320, config, "bf16", device="cpu")
        assert [r["variant"] for r in rows] == ["torch.matmul", *module.VARIANTS]
        assert all(r["ms"] == 1.0 and "wrong" not in r["config"] for r in rows)
        assert "bands 4" in rows[1]["config"] and "bands" not in rows[3]["config"]
        assert timed == [[], [(4, 3)], [(4, 1)], [(1, 3)]]  # torch.matmul builds nothing
        assert kernels.split_k.REDUCE_REGISTERS == 64  # restored
