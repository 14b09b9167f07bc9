"""Fit a calibration's split-tile terms to a suite run's traced Stream-K times (no GPU needed).

    python benchmarks/fit_split_terms.py docs/gpu/suite-all-run-h200.csv \
        --calibration refsim/calibrations/h200.json [--write]

``refsim calibrate`` measures data-parallel work items only. Stream-K's items of split tiles
run another K-loop and store and load fp32 partials, and on the H200 they took 1.1-4.3x what
that calibration predicts. This script takes every Stream-K row of a ``benchmarks/suite.py``
CSV (fixed candidates, any fixup) whose block the calibration measured and whose problem has
at most ``MAX_WAVES`` waves of tiles (beyond that Stream-K only shares out the last one), and
searches ``split_iteration_factor`` x ``partial_gbps`` (see :mod:`refsim.calibration`) for the
least mean |predicted - traced| / traced, the prediction being refsim's whole makespan, its
launch overhead included (the shipped terms were fitted so), with the calibration's other
fitted terms (the load terms) as the file holds them. It prints the error before and
after; ``--write`` stores the two terms in the calibration file. Split-K rows are left out:
the suite's traced split-K runs were taken before traced launches got their head start
(``kernels.launch.TRACE_HEAD_START_CYCLES``), so they also time the host's launch of the
reduction kernel.
"""

import csv
import dataclasses
import sys

from fitting import fit_main, grid_fit

import refsim
from refsim.config import GemmConfig
from refsim.hardware import PROFILES
from refsim.tiling import cdiv

FACTORS = (1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0)
# None: no partial term; otherwise GB/s of one program's partial traffic
PARTIAL_GBPS = (None, 128.0, 64.0, 48.0, 32.0, 24.0, 16.0, 8.0)
MAX_WAVES = 4


@dataclasses.dataclass(frozen=True)
class Sample:
    """One traced Stream-K run: its config and in-kernel makespan."""

    config: GemmConfig
    traced_us: float


def parse_config(description):
    """``(strategy options, (block_m, block_n, block_k))`` of a suite ``config`` cell such as
    ``"streamk last-arriver 128x256x64"``; None for other strategies."""
    words = description.split()
    if len(words) != 3 or words[0] != "streamk":
        return None
    block = tuple(int(side) for side in words[2].split("x"))
    return {"strategy": "streamk", "fixup": words[1]}, block


def samples_of(path, calibration):
    """The Stream-K samples of a suite CSV that ``calibration`` can time (see the module
    docstring)."""
    profile = PROFILES[calibration.profile]
    samples = []
    with open(path, newline="") as file:
        file.readline()  # the environment line
        for row in csv.DictReader(file):
            parsed = parse_config(row["config"])
            if row["candidate"] == "auto" or parsed is None or not row["kernel_us"]:
                continue
            options, block = parsed
            m, n, k = int(row["m"]), int(row["n"]), int(row["k"])
            if calibration.timing(row["dtype"], *block) is None:
                continue
            if cdiv(m, block[0]) * cdiv(n, block[1]) > MAX_WAVES * calibration.units:
                continue
            config = GemmConfig(
                m, n, k, dtype=row["dtype"], device=profile, cus=calibration.units, xcds=1,
                block_m=block[0], block_n=block[1], block_k=block[2], **options,
            )  # fmt: skip
            samples.append(Sample(config, float(row["kernel_us"])))
    return samples


def errors(samples, calibration):
    """|predicted - traced| / traced of every sample under ``calibration``."""
    return [
        abs(refsim.simulate(s.config, calibration=calibration).makespan_us - s.traced_us)
        / s.traced_us
        for s in samples
    ]


def fit(samples, calibration, factors=FACTORS, partial_gbps=PARTIAL_GBPS):
    """The calibration with the grid's ``(split_iteration_factor, partial_gbps)`` of the least
    mean error over ``samples``, and that error."""
    grid = {"split_iteration_factor": factors, "partial_gbps": partial_gbps}
    return grid_fit(samples, calibration, errors, grid)


def main(argv=None):
    return fit_main(
        argv,
        script="fit_split_terms.py",
        doc=__doc__,
        terms=("split_iteration_factor", "partial_gbps"),
        samples_of=samples_of,
        errors=errors,
        fit=fit,
        what="Stream-K row",
    )


if __name__ == "__main__":
    sys.exit(main())
