"""The synthetic suite run ``benchmarks/fit_load_terms.py`` is tested on (tests/test_fitting.py):
data-parallel, persistent and work-stealing rows "traced" as refsim predicts them with known
load terms, and rows the fit must leave out."""

import dataclasses

from test_benchmark_suite import ENV, benchmark_module

import refsim
from refsim.compare import makespan_us

TRUE_TERMS = {"load_after_us": 40.0, "load_factor": 1.25}
# 64 tiles of 256 K-iterations, 2 waves of 128, 16 tiles of 512: long and short, full and not
SHAPES = [(1024, 1024, 16384), (2048, 2048, 8192), (512, 512, 32768), (1024, 2048, 2048)]
# rows per shape the fit takes (auto, Stream-K and 128x256 rows left out)
TIMED_PER_SHAPE = 3


def suite_csv(path, calibration):
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
                traced = makespan_us(refsim.simulate(config, calibration=truth).records)
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
