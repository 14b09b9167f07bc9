"""What the calibration-term fits share (``fit_split_terms.py``, ``fit_load_terms.py``): the
grid search, the error summary line and the command line, fit and ``--write``."""

import argparse
import dataclasses
import itertools
import pathlib
import statistics
import sys

from refsim.calibration import load, save


def describe(name, values):
    return (
        f"{name}: mean {statistics.fmean(values):.1%}, median {statistics.median(values):.1%}, "
        f"p90 {sorted(values)[int(0.9 * (len(values) - 1))]:.1%} over {len(values)} runs"
    )


def grid_fit(samples, calibration, errors, grid):
    """``calibration`` with the combination of ``grid``'s values (term -> candidates, the first
    term varying slowest) of the least mean ``errors`` over ``samples``, and that error."""
    best = None
    for values in itertools.product(*grid.values()):
        candidate = dataclasses.replace(calibration, **dict(zip(grid, values)))
        mean = statistics.fmean(errors(samples, candidate))
        if best is None or mean < best[1]:
            best = (candidate, mean)
    return best


def fit_main(argv, *, script, doc, terms, samples_of, errors, fit, what):
    """Fit calibration ``terms`` to a suite CSV's ``samples_of`` (``what`` names them when there
    are none) by ``fit``, print ``errors`` before and after, and with ``--write`` store them;
    the exit status (2 with one line on bad input)."""
    parser = argparse.ArgumentParser(prog=script, description=doc.splitlines()[0])
    parser.add_argument("suite_csv", help=f"a benchmarks/suite.py CSV with traced {what}")
    parser.add_argument(
        "--calibration", required=True, help="the calibration to start from (and to --write)"
    )
    parser.add_argument("--write", action="store_true", help="store the fitted terms in it")
    args = parser.parse_args(argv)
    try:
        calibration = load(args.calibration)
        samples = samples_of(args.suite_csv, calibration)
    except (OSError, ValueError, KeyError) as error:
        print(f"{script}: {error}", file=sys.stderr)
        return 2
    if not samples:
        print(f"{script}: {args.suite_csv}: no {what} the calibration can time", file=sys.stderr)
        return 2
    plain = dataclasses.replace(calibration, **dict.fromkeys(terms))
    print(describe("without the fitted terms", errors(samples, plain)))
    fitted, _ = fit(samples, plain)
    print("fitted " + ", ".join(f"{term}={getattr(fitted, term)}" for term in terms))
    print(describe("with them", errors(samples, fitted)))
    if args.write:
        save(fitted, pathlib.Path(args.calibration))
        print(f"written to {args.calibration}")
    return 0
