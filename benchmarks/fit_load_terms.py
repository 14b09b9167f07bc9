"""Fit a calibration's load terms to a suite run's traced data-parallel times (no GPU needed).

    python benchmarks/fit_load_terms.py docs/gpu/suite-all-run-h200.csv \
        --calibration refsim/calibrations/h200.json [--write]

``refsim calibrate`` times each block on one wave of at most 64 K-iterations. On the H200,
runs that kept every SM busy for longer were 9-31% slower than that calibration predicts,
while long runs on a few SMs were on time or faster. This script takes the rows of a
``benchmarks/suite.py`` CSV whose strategy splits no tile (data-parallel, persistent, work
stealing; ``STRATEGIES``) and whose block the calibration measured, and searches
``load_after_us`` x ``load_factor`` (see :mod:`refsim.calibration`) for the least mean
|predicted - traced| / traced, the prediction being the span of refsim's records (first
start to last end), as a traced run is timed. It prints the error before and after;
``--write`` stores the two terms in the calibration file.
"""

import csv
import dataclasses
import sys

from fitting import fit_main, grid_fit

import refsim
from refsim.compare import makespan_us
from refsim.config import GemmConfig
from refsim.hardware import PROFILES

STRATEGIES = ("data_parallel", "persistent", "work_stealing")
AFTER_US = (20.0, 40.0, 60.0, 80.0, 100.0, 150.0, 200.0)
FACTORS = (1.0, 1.05, 1.1, 1.15, 1.2, 1.25, 1.3, 1.35)


@dataclasses.dataclass(frozen=True)
class Sample:
    """One traced run: its config and in-kernel time."""

    config: GemmConfig
    traced_us: float


def samples_of(path, calibration, strategies=STRATEGIES):
    """The rows of a suite CSV run by ``strategies`` that ``calibration`` can time."""
    profile = PROFILES[calibration.profile]
    samples = []
    with open(path, newline="") as file:
        file.readline()  # the environment line
        for row in csv.DictReader(file):
            words = row["config"].split()
            if row["candidate"] not in strategies or len(words) != 2 or not row["kernel_us"]:
                continue
            block = tuple(int(side) for side in words[1].split("x"))
            if words[0] != row["candidate"] or calibration.timing(row["dtype"], *block) is None:
                continue
            config = GemmConfig(
                int(row["m"]), int(row["n"]), int(row["k"]), dtype=row["dtype"], device=profile,
                cus=calibration.units, xcds=1, strategy=words[0],
                block_m=block[0], block_n=block[1], block_k=block[2],
            )  # fmt: skip
            samples.append(Sample(config, float(row["kernel_us"])))
    return samples


def in_kernel_us(config, calibration):
    """refsim's span of ``config``'s records: first start to last end."""
    return makespan_us(refsim.simulate(config, calibration=calibration).records)


def errors(samples, calibration):
    """|predicted - traced| / traced of every sample under ``calibration``."""
    return [abs(in_kernel_us(s.config, calibration) - s.traced_us) / s.traced_us for s in samples]


def fit(samples, calibration, after_us=AFTER_US, factors=FACTORS):
    """The calibration with the grid's ``(load_after_us, load_factor)`` of the least mean
    error over ``samples``, and that error."""
    grid = {"load_after_us": after_us, "load_factor": factors}
    return grid_fit(samples, calibration, errors, grid)


def main(argv=None):
    return fit_main(
        argv,
        script="fit_load_terms.py",
        doc=__doc__,
        terms=("load_after_us", "load_factor"),
        samples_of=samples_of,
        errors=errors,
        fit=fit,
        what=f"{', '.join(STRATEGIES)} row",
    )


if __name__ == "__main__":
    sys.exit(main())
