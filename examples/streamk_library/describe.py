"""refsim's verdict on kernel.py's schedule as adapter.py describes it, on every case of cases.json.

Run from the repository root::

    python -m examples.streamk_library.describe

Per case: the tiles, the grid and its XCDs, the library's Stream-K split and counters, its logical
program ids (and refsim's built-in chunked remap where that differs), and the work lost. Then the
same for the ``FLOOR_SHARE_AND_BIAS_INIT`` bug's counter ranges, given to refsim as a range hook.
Nothing is launched: refsim predicts it all.
"""

import pathlib

import refsim
from conformance.cases import load_cases
from refsim.result import TileCoverage

from . import kernel
from .adapter import schedule

CASES = pathlib.Path(__file__).parent / "cases.json"


def floor_share(counter, config):
    """The bug's counter ranges: each XCD's share of the stolen tiles rounded down, so the last
    ``dp_tiles % counter_xcds`` tiles belong to no counter."""
    per_xcd = config.dp_tiles // config.counter_xcds
    return counter * per_xcd, (counter + 1) * per_xcd


def lost(config):
    """refsim's verdict on ``config``: the tiles its schedule never computes, in words."""
    errors = refsim.simulate(config).coverage_errors
    never = sorted({e.tile for e in errors if isinstance(e, TileCoverage) and e.times == 0})
    if not never:
        return "every tile computed once"
    return f"{len(never)} of {config.total_tiles} tiles never computed: {never}"


def main():
    for case in load_cases(CASES):
        config = case.following(schedule(case)).config()
        counters = "a global counter" if config.global_counter else "a counter per XCD"
        print(
            f"{case.name}: {config.total_tiles} tiles on {config.grid} programs in {config.xcds} "
            f"XCDs, {config.sk_tiles} Stream-K, {counters}"
        )
        builtin = config.replace(xcd_remap=True, xcd_chunk=kernel.CHUNK_SIZE).logical_programs
        differs = "" if builtin == config.logical_programs else f" (refsim's chunked: {builtin})"
        print(f"  logical ids {config.logical_programs}{differs}")
        print(
            f"  {lost(config)}; floor share: {lost(config.replace(ws_counter_ranges=floor_share))}"
        )


if __name__ == "__main__":
    main()
