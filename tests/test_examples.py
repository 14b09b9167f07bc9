"""The bring-your-own-kernel example (examples/work_stealing_tail, docs/bring-your-own-kernel.md):
refsim predicts the buggy counter map's lost tiles, the conformance suite catches them on the
real kernel, the fix passes both, and the page's Python blocks print what the page says."""

import contextlib
import io
import pathlib
import re

import pytest
import torch

import refsim
from conformance.cases import load_cases
from conformance.checking import check_case
from examples.streamk_library import describe as streamk_describe
from examples.work_stealing_tail import adapter, describe
from refsim.result import TileCoverage, UnservedCounter

EXAMPLE = pathlib.Path(describe.__file__).parent
STREAMK_EXAMPLE = pathlib.Path(streamk_describe.__file__).parent
DOC = pathlib.Path(__file__).parents[1] / "docs" / "bring-your-own-kernel.md"
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
KERNEL_TIER = pytest.mark.gpu if DEVICE == "cuda" else pytest.mark.interpreter


def lost_work(counter_map, launch):
    """The unserved counters and the tiles never computed that refsim predicts."""
    result = refsim.simulate(**describe.LAUNCHES[launch], **describe.schedule(counter_map))
    unserved = [e.counter for e in result.coverage_errors if isinstance(e, UnservedCounter)]
    never = sorted({e.tile for e in result.coverage_errors if isinstance(e, TileCoverage)})
    return unserved, never


def test_refsim_predicts_the_issues_20_unserved_counters_and_94_lost_tiles():
    """The issue measured 20 of 64 counters never served and 94 tiles never computed: refsim
    gives both numbers for the buggy map with the 96-tile Stream-K tail, nothing for the fix."""
    unserved, never = lost_work("buggy", "the issue's launch")
    assert unserved == [
        5, 6, 7, 10, 11, 16, 23, 27, 28, 29, 32, 33, 34, 45, 46, 50, 51, 56, 62, 63
    ]  # fmt: skip
    assert len(never) == 94 and never[:6] == [25, 26, 27, 28, 29, 30]
    assert lost_work("fixed", "the issue's launch") == ([], [])


def test_refsim_predicts_the_interpreter_sized_launchs_lost_tiles():
    """2 XCDs of 2 programs each: the remapped ids 0, 1 (XCD 0) and 2, 3 (XCD 1) give slot
    ``(lp // 2) % 2`` = 0, 0 and 1, 1, so counters 1 and 2 and their tiles 1 and 2 are lost."""
    assert lost_work("buggy", "interpreter-sized") == ([1, 2], [1, 2])
    assert lost_work("fixed", "interpreter-sized") == ([], [])


CASES = load_cases(EXAMPLE / "cases.json")


@KERNEL_TIER
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_conformance_fails_the_buggy_kernel_with_tiles_never_written(case):
    result = check_case(adapter.buggy(), case, DEVICE)
    assert not result.passed and result.cause == "tile never written"
    invariants = next(f for f in result.findings if f.check == "work-stealing invariants")
    config = result.case.config()
    lost = [
        c for c in range(config.num_counters)
        if config.counter_range(c)[1] > config.counter_range(c)[0]
        and c not in {config.counter_of(pid) for pid in range(config.grid)}
    ]  # fmt: skip
    assert lost and invariants.cause == "tile never written"
    assert any(f"counter {lost[0]}: 0 tickets used" in reason for reason in invariants.reasons)


@KERNEL_TIER
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_conformance_passes_the_fixed_kernel(case):
    result = check_case(adapter.fixed(), case, DEVICE)
    assert result.passed, [(f.check, f.reasons) for f in result.findings if not f.passed]
    checks = {f.check for f in result.findings}
    assert {"exact output", "work-stealing invariants", "tile order", "addition order"} <= checks


def test_the_adapter_is_at_most_40_lines():
    lines = (EXAMPLE / "adapter.py").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 40
    assert f"\n{len(lines)} examples/work_stealing_tail/adapter.py\n" in DOC.read_text("utf-8")


def test_everything_written_for_the_streamk_library_is_at_most_40_lines():
    """Its adapter is all a user writes for the suite: the schedule's description, the hooks,
    the launch. The kernel has no line of its own for the suite but its work records (optional),
    and no interpreter shim (conformance.interpreter repairs the interpreter's bf16)."""
    adapter_lines = (STREAMK_EXAMPLE / "adapter.py").read_text("utf-8").splitlines()
    assert len(adapter_lines) <= 40
    assert max(map(len, adapter_lines)) <= 100  # no line packed past the project's width
    kernel_source = (STREAMK_EXAMPLE / "kernel.py").read_text("utf-8")
    assert "TRITON_INTERPRET" not in kernel_source and "INTERPRET" not in kernel_source
    page = DOC.read_text("utf-8")
    assert f"\n{len(adapter_lines)} examples/streamk_library/adapter.py\n" in page


def doc_blocks():
    """The page's fenced blocks as ``(language, text)``, in order."""
    return re.findall(r"^```(\w+)\n(.*?)^```$", DOC.read_text("utf-8"), re.M | re.S)


def is_excerpt(code):
    """Whether ``code``'s lines appear together in one of the examples' Python files."""
    lines = [line.strip() for line in code.strip().splitlines()]
    for path in [*EXAMPLE.glob("*.py"), *STREAMK_EXAMPLE.glob("*.py")]:
        source = [line.strip() for line in path.read_text("utf-8").splitlines()]
        if any(source[i : i + len(lines)] == lines for i in range(len(source))):
            return True
    return False


def test_the_docs_python_blocks_print_what_the_page_says():
    """Each Python block is an excerpt of the example's files, or runs from the repository root
    and prints the text block after it."""
    blocks = doc_blocks()
    ran = 0
    for (language, code), (next_language, shown) in zip(blocks, blocks[1:] + [("", "")]):
        if language != "python" or is_excerpt(code):
            continue
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, str(DOC), "exec"), {"__name__": "__doc_block__"})
        assert next_language == "text" and printed.getvalue() == shown, code
        ran += 1
    assert ran == 3


def test_describe_prints_the_verdict_the_page_shows(capsys):
    describe.main()
    out = capsys.readouterr().out
    blocks = doc_blocks()
    command = ("bash", "python examples/work_stealing_tail/describe.py\n")
    assert blocks[blocks.index(command) + 1] == ("text", out)
    assert "buggy: 20 of 64 counters never served, 94 of 400 tiles never computed" in out
    assert "buggy: 2 of 4 counters never served, 2 of 5 tiles never computed" in out
    assert out.count("fixed: every one of") == 2
