"""The synthetic suite run ``benchmarks/fit_split_terms.py`` is tested on
(tests/test_fitting.py): Stream-K rows "traced" as refsim predicts them with known split-tile
terms, and rows the fit must leave out."""

import dataclasses

from test_benchmark_suite import ENV, benchmark_module

import refsim

TRUE_TERMS = {"split_iteration_factor": 2.0, "partial_gbps": 32.0}
SHAPES = [(256, 512, 16384), (512, 512, 8192), (384, 256, 32768)]
# rows per shape the fit takes (auto, data-parallel and 128x256 rows left out)
TIMED_PER_SHAPE = 2


def suite_csv(path, calibration):
    """A suite CSV whose Stream-K rows were 'traced' as refsim predicts them with TRUE_TERMS,
    plus rows the fit must leave out (data-parallel, an unmeasured block, auto)."""
    with benchmark_module("suite") as suite:
        truth = dataclasses.replace(calibration, **TRUE_TERMS)
        rows = []
        for m, n, k in SHAPES:
            shape = suite.Shape("large-k", f"{m}x{n}x{k}", m, n, k)
            for fixup in ("last-arriver", "turnstile"):
                config = refsim.GemmConfig(
                    m, n, k, dtype="bf16", device="h200", cus=132, xcds=1,
                    strategy="streamk", fixup=fixup, block_m=128, block_n=128, block_k=64,
                )  # fmt: skip
                traced = refsim.simulate(config, calibration=truth).makespan_us
                rows.append(
                    suite.Measurement(
                        shape, "bf16", f"streamk {fixup}", suite.describe(config), 1.0, traced
                    )
                )
            rows.append(
                suite.Measurement(
                    shape, "bf16", "auto", "streamk last-arriver 128x128x64", 1.0, 1.0
                )
            )
            rows.append(
                suite.Measurement(
                    shape, "bf16", "data_parallel", "data_parallel 128x128x64", 1.0, 1.0
                )
            )
            rows.append(
                suite.Measurement(
                    shape, "bf16", "streamk owner-waits", "streamk owner-waits 128x256x64", 1.0, 1.0
                )
            )
        _, table = suite.write_report(rows, ENV, [], "synthetic", path)  # fmt: skip
    return table
