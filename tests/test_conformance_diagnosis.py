"""The per-tile diagnosis: every wrong tile gets a cause, causes are grouped with their tiles,
the lead cause comes first, and a write into another tile names its writer. Kernels here are
torch functions that compute the right product and then break it in one known way."""

import functools
import types

import numpy as np
import pytest
import torch

from conformance.cases import Case
from conformance.checking import check_case
from conformance.checks import check_epilogue
from conformance.diagnosis import (
    CAUSES,
    WrongTile,
    decode_precision,
    decode_probe,
    group_causes,
    misplaced_lines,
    rounded_accumulator,
)
from conformance.harness import KernelUnderTest, to_numpy
from conformance.inputs import as_tensors, integer_inputs, probe_inputs
from refsim import numerics, tiling

DEVICE = "cpu"


def tile_regions(config):
    """``{tile: (rows, cols)}`` of every tile."""
    regions = {}
    for tile in range(config.total_tiles):
        pid_m, pid_n = tiling.grouped_tile(tile, config.num_pid_m, config.num_pid_n, config.group_m)
        rows = slice(pid_m * config.block_m, min(config.m, (pid_m + 1) * config.block_m))
        cols = slice(pid_n * config.block_n, min(config.n, (pid_n + 1) * config.block_n))
        regions[tile] = (pid_m, pid_n, rows, cols)
    return regions


def broken_kernel(name, damage):
    """A kernel computing ``a @ b + bias`` in float64, rounded once to the output, then
    ``damage(config, out, a, b, bias)`` (float64 tensors, ``out`` the output to write)."""

    def run(config, a, b, bias=None, out=None, trace=False):
        a64, b64 = a.double(), b.double()
        bias64 = None if bias is None else bias.double()
        total = a64 @ b64 + (0 if bias64 is None else bias64)
        out.copy_(total)
        damage(config, out, a64, b64, bias64)
        return types.SimpleNamespace(output=out)

    return KernelUnderTest(name, run)


def finding(result, check):
    return next(f for f in result.findings if f.check == check)


def test_causes_are_listed_lead_first():
    assert CAUSES.index("tile never written") < CAUSES.index("bias added after the cast")
    assert CAUSES.index("write into another tile") < CAUSES.index("wrong addition order")
    assert CAUSES[-1] == "unclassified"


def test_groups_count_tiles_and_elements_per_cause_lead_first():
    def wrong(tile, count):
        mask = np.zeros((2, 2), dtype=bool)
        mask.flat[:count] = True
        return WrongTile(tile, 0, tile, slice(0, 2), slice(0, 2), mask)

    groups = group_causes(
        [
            (wrong(0, 2), "bias added after the cast", "twice"),
            (wrong(1, 4), "tile never written", "NaN"),
            (wrong(2, 1), "bias added after the cast", "again"),
        ]
    )
    assert [(g.cause, g.tiles, g.elements, g.detail) for g in groups] == [
        ("tile never written", (1,), 4, "NaN"),
        ("bias added after the cast", (0, 2), 3, "twice"),
    ]
    assert groups[1].line() == "bias added after the cast: tiles 0, 2 (3 wrong): twice"


def test_an_edge_tile_wrapping_its_rows_into_the_top_of_the_matrix_is_named_as_the_writer():
    """M = 40 in 16-row tiles: the bottom tile's rows 40..47 wrap to rows 0..7, and a store
    whose mask is computed after the wrap writes them there; rows read past M as zero leave
    the bias alone."""

    def wrap_bottom_rows(config, out, a, b, bias):
        out[0:8] = bias.expand(8, config.n).to(out.dtype)

    case = Case("wrap", 40, 64, 32, "persistent")
    result = check_case(broken_kernel("wrap", wrap_bottom_rows), case, DEVICE)
    exact = finding(result, "exact output")
    regions = tile_regions(case.config())
    top = tuple(sorted(t for t, (pid_m, *_) in regions.items() if pid_m == 0))
    assert result.cause == "write into another tile"
    assert [(g.cause, g.tiles, g.elements) for g in exact.groups] == [
        ("write into another tile", top, 8 * 64)
    ]
    writer = next(t for t, (pid_m, pid_n, *_) in regions.items() if (pid_m, pid_n) == (2, 0))
    assert exact.groups[0].detail.startswith(
        f"tile {writer} (pid_m 2, pid_n 0; programs [2]) wrote its rows 40..47 past M = 40 over "
        "rows 0..7 here"
    )


def test_mixed_epilogues_are_classified_tile_by_tile():
    """Tiles of one row block round twice (bias after the cast), the others once."""

    def twice_in_row_block_0(config, out, a, b, bias):
        rows = slice(0, config.block_m)
        once = (a[rows] @ b).to(out.dtype).double()
        out[rows] = (once + bias).to(out.dtype)

    case = Case("mixed", 64, 64, 40, "persistent", dtype="fp16")
    kernel = broken_kernel("mixed", twice_in_row_block_0)
    result = check_case(kernel, case, DEVICE)
    regions = tile_regions(case.config())
    first_row = tuple(sorted(t for t, (pid_m, *_) in regions.items() if pid_m == 0))
    exact = finding(result, "exact output")
    assert [(g.cause, g.tiles) for g in exact.groups] == [("bias added after the cast", first_row)]
    assert result.causes == ["bias added after the cast"]
    assert finding(result, "epilogue rounding").cause is None  # the exact check named them
    epilogue = check_epilogue(kernel, case, case.config(), DEVICE)  # on its own
    assert [(g.cause, g.tiles) for g in epilogue.groups] == [
        ("bias added after the cast", first_row)
    ]


def test_lost_tiles_and_a_bias_fault_are_both_reported_with_their_tiles():
    def lose_tile_1_and_double_bias(config, out, a, b, bias):
        out.add_(bias.to(out.dtype))
        _, _, rows, cols = tile_regions(config)[1]
        out[rows, cols] = float("nan")

    case = Case("lost", 64, 64, 40, "persistent")
    result = check_case(broken_kernel("lost", lose_tile_1_and_double_bias), case, DEVICE)
    groups = finding(result, "exact output").groups
    tiles = case.config().total_tiles
    assert [(g.cause, g.tiles) for g in groups] == [
        ("tile never written", (1,)),
        ("bias applied more than once", tuple(t for t in range(tiles) if t != 1)),
    ]
    assert result.causes[:2] == ["tile never written", "bias applied more than once"]


def test_a_one_column_tile_never_matches_another_rows_values_by_coincidence():
    config = Case("n1", 32, 1, 32, "persistent").config()
    expected = np.arange(32.0)[:, None]
    got = expected.copy()
    got[3, 0] = expected[7, 0]  # one value, equal to another row's: not a moved row
    assert misplaced_lines(config, got, expected, 0, 0) is None


def test_an_implausible_bias_count_is_not_read_as_the_bias_applied_more_than_once():
    config = Case("probe", 32, 32, 32, "persistent").config()
    a, b, bias = probe_inputs(config)
    out = a @ b + bias * (config.grid + 5)  # more additions than there are programs
    assert decode_probe(config, out, 0, 0)[0] == "unclassified"
    twice = a @ b + 2 * bias
    assert decode_probe(config, twice, 0, 0)[0] == "bias applied more than once"


@pytest.mark.parametrize("rounding", ["to nearest", "toward zero"])
def test_an_accumulator_rounded_as_the_backend_rounds_is_named(rounding):
    case = Case("precision", 32, 32, 80, "persistent", dtype="bf16", bias=False)
    config = case.config()
    tensors = as_tensors(case, *integer_inputs(case), DEVICE)
    tile_math = numerics.TileMath(config, *map(to_numpy, tensors))
    segments = [(0, config.iters_per_tile)]
    model = rounded_accumulator(config, tile_math, segments, 0, 0, rounding)
    got = np.full((config.m, config.n), np.nan)
    got[: config.block_m, : config.block_n] = torch.from_numpy(model).bfloat16().double().numpy()
    cause, detail = decode_precision(
        config, None, 0, 0, 0, got, tensors, torch.bfloat16, tile_math, segments
    )
    assert cause == "accumulator precision"
    assert ("rounded toward zero" in detail) == (rounding == "toward zero")


@pytest.mark.interpreter
@pytest.mark.slow
def test_one_bug_leads_with_one_cause_on_every_quick_case_that_exposes_it():
    """The accumulator kept in the input dtype, on the whole quick set: every case it fails
    leads with "accumulator precision" -- one-iteration K, split partials, banded reductions,
    Triton's interpreter truncating bf16 casts, and whole tiles alike."""
    from conformance.cases import quick_set
    from conformance.runner import mutant_kernel, run_cases

    kernel = functools.partial(mutant_kernel, "accumulator-in-input-dtype")
    results = run_cases(quick_set(), DEVICE, kernel, jobs=2)
    failed = [r for r in results if not r.passed]
    assert len(failed) >= 25  # every fp16/bf16 case, whatever its strategy
    assert {r.case.name: r.cause for r in failed} == {
        r.case.name: "accumulator precision" for r in failed
    }
