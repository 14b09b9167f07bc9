"""The Stream-K library example (examples/streamk_library, docs/bring-your-own-kernel.md): a
third-party style Stream-K + work-stealing kernel described to refsim through schedule hooks
(its own XCD remap, its global counter's ticket -> tile interleave), passing every check clean,
and each injected bug failing with its own cause."""

import dataclasses

import pytest
import torch

import refsim
from conformance.cases import load_cases
from conformance.checking import check_case
from examples.streamk_library import adapter, describe, kernel, variants

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
KERNEL_TIER = pytest.mark.gpu if DEVICE == "cuda" else pytest.mark.interpreter
CASES = {case.name: case for case in load_cases(describe.CASES)}


def described(name):
    """The GemmConfig of case ``name`` as the adapter describes the library's schedule."""
    case = CASES[name]
    return case.following(adapter.schedule(case)).config()


def test_the_cases_reach_what_the_schedule_depends_on():
    """fp32, fp16 and bf16, with and without a bias, M and N off the blocks, both counter
    modes, Stream-K tiles with and without stolen tiles and none at all, and XCDs with a grid
    they do not divide, where the library's remap is not refsim's built-in chunked one."""
    configs = [described(name) for name in CASES]
    assert {c.dtype for c in configs} == {"fp32", "fp16", "bf16"}
    assert {case.bias for case in CASES.values()} == {True, False}
    assert any(c.m % c.block_m for c in configs) and any(c.n % c.block_n for c in configs)
    assert {bool(c.global_counter) for c in configs} == {True, False}
    assert {(c.sk_tiles > 0, c.dp_tiles > 0) for c in configs} == {
        (True, True), (True, False), (False, True)
    }  # fmt: skip
    uneven = [c for c in configs if c.xcds > 1 and c.grid % c.xcds]
    builtin = [c.replace(xcd_remap=True, xcd_chunk=kernel.CHUNK_SIZE) for c in uneven]
    assert any(c.logical_programs != b.logical_programs for c, b in zip(uneven, builtin))


def test_refsim_describes_the_library_and_predicts_the_floor_shares_lost_tile(capsys):
    """No work lost as described; the bug's ranges lose the tile past each XCD's rounded-down
    share, where the stolen tiles (5) do not divide over the 2 XCDs."""
    describe.main()
    out = capsys.readouterr().out
    assert out.count("every tile computed once; floor share: every tile computed once") == 5
    assert "floor share: 1 of 7 tiles never computed: [4]" in out
    assert "(0, 2, 3, 4, 1) (refsim's chunked: (0, 1, 2, 3, 4))" in out
    config = described("per-xcd-fp16-100x20x64-grid5")
    assert refsim.simulate(config).coverage_errors == []


def test_the_library_remap_is_a_permutation_refsim_checks():
    """refsim calls the remap for every program and takes it only as a permutation."""
    config = described("global-fp16-100x60x64-grid5")
    assert sorted(config.logical_programs) == list(range(config.grid))
    broken = config.replace(xcd_remap=lambda hw_pid, num_programs, xcds: hw_pid // 2)
    with pytest.raises(ValueError, match="programs 0 and 1 both got logical id 0"):
        refsim.simulate(broken)


@KERNEL_TIER
def test_the_librarys_own_host_api_computes_the_product():
    a = torch.randint(-2, 3, (70, 40), device=DEVICE).float()
    b = torch.randint(-2, 3, (40, 50), device=DEVICE).float()
    bias = torch.randint(-4, 5, (50,), device=DEVICE).float()
    lp = [kernel.chiplet_transform_chunked.fn(p, 4, 2, kernel.CHUNK_SIZE) for p in range(4)]
    from kernels.backend import program_order  # owners wait on higher logical ids

    with program_order(lambda num_programs: sorted(range(4), key=lp.__getitem__, reverse=True)):
        out = kernel.matmul(a, b, bias, num_sms=4, num_xcds=2)
    assert torch.equal(out, a @ b + bias)


@KERNEL_TIER
@pytest.mark.parametrize("name", CASES)
def test_the_clean_library_passes_every_check(name):
    result = check_case(adapter.library(), CASES[name], DEVICE)
    assert result.passed, [(f.check, f.reasons) for f in result.findings if not f.passed]
    checks = {f.check for f in result.findings}
    assert {"exact output", "work-stealing invariants", "determinism"} <= checks
    if DEVICE == "cpu":
        assert "random bits" in checks
    if described(name).sk_tiles and described(name).dp_tiles:
        assert {"tile order", "addition order"} <= checks


@KERNEL_TIER
def test_the_global_counters_tickets_need_the_interleave_hook():
    """Described with in-order tickets, the global counter's tiles are not the ones its tickets
    name: the invariants fail, so the hook is what makes the clean kernel pass."""
    kut = adapter.library()
    kut = dataclasses.replace(kut, follows=lambda case: {
        **adapter.schedule(case), "ws_ticket_tile": "in-order"
    })  # fmt: skip
    result = check_case(kut, CASES["global-fp16-100x60x64-grid5"], DEVICE)
    invariants = next(f for f in result.findings if f.check == "work-stealing invariants")
    assert not invariants.passed and "which names tile" in invariants.reasons[0]


# The cases whose bottom row of tiles is a Stream-K tile past M: where a wrapped store can land.
WRAPPED_EDGE_EXPOSED = set(CASES) - {"global-fp32-64x64x32-no-stream-k"}
# Each injected bug, the cases that show it (in the interpreter's program order), and the lead
# cause the suite must give it there.
BUGS = [
    ("wrapped_edge", {"per-xcd-fp32-70x40x40", "global-fp16-100x60x64-grid5",
                      "per-xcd-fp16-100x20x64-grid5"}, {"write into another tile"}),
    ("bias_after_cast", {"global-fp16-100x60x64-grid5", "per-xcd-fp16-100x20x64-grid5",
                         "global-bf16-50x70x40"}, {"bias added after the cast"}),
    ("lost_tiles_and_bias", {"per-xcd-fp32-70x40x40", "global-fp16-100x60x64-grid5",
                             "per-xcd-fp16-100x20x64-grid5", "global-bf16-50x70x40"},
     {"tile never written", "bias applied more than once"}),
]  # fmt: skip


@KERNEL_TIER
@pytest.mark.slow
@pytest.mark.parametrize(("variant", "failing", "leads"), BUGS, ids=[bug[0] for bug in BUGS])
def test_each_injected_bug_leads_with_its_own_cause_on_every_case_it_fails(variant, failing, leads):
    """One bug, one lead cause (two for the case that loses a tile *and* doubles the bias):
    never a cause another bug has, on whichever case shows it."""
    kut = getattr(variants, variant)()
    results = {name: check_case(kut, case, DEVICE) for name, case in CASES.items()}
    failed = {name for name, result in results.items() if not result.passed}
    if DEVICE == "cpu" or variant != "wrapped_edge":
        assert failed == failing
    else:  # which of two stores to a row lands last is a race on a GPU
        assert failing & failed and failed <= WRAPPED_EDGE_EXPOSED
    assert {results[name].cause for name in failed} <= leads
    assert not any("unclassified" in results[name].causes for name in failed)


@KERNEL_TIER
def test_lost_tiles_and_the_bias_fault_are_two_causes():
    """The floor share's lost tile and the stolen tiles' doubled bias, each named."""
    result = check_case(
        variants.lost_tiles_and_bias(), CASES["per-xcd-fp16-100x20x64-grid5"], DEVICE
    )
    assert {"tile never written", "bias applied more than once"} <= set(result.causes)
    invariants = next(f for f in result.findings if f.check == "work-stealing invariants")
    assert "tiles never taken: [4]" in invariants.reasons


@KERNEL_TIER
def test_the_wrapped_edge_names_the_tile_and_rows_it_wrote_over():
    result = check_case(variants.wrapped_edge(), CASES["global-fp16-100x60x64-grid5"], DEVICE)
    reasons = " ".join(reason for f in result.findings for reason in f.reasons)
    assert "wrote its rows 100..111 past M = 100 over rows 0..11" in reasons
