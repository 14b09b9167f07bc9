"""The docs say what the code does.

Every fenced code block in README.md and docs/*.md is run here, so the docs cannot go stale:

* ```python blocks: each page's blocks run in order in one namespace, in a subprocess per page
  (tests/docs_runner.py) with TRITON_INTERPRET=1, so the kernel examples run on the CPU.
* ```bash blocks: one test per block; the block runs as one `bash -e` script.
* A code block followed (past blank lines only) by a ```text, ```json, ```yaml, ```toml or
  ```markdown block must print exactly that on stdout; otherwise it must just run without error.
  Data blocks are not run: they are only checked as a code block's output.

Markers, each an HTML comment on the line(s) just before a fence:

* `<!-- docs-test: skip: REASON -->` — not run here (a reason is required), e.g. a CUDA GPU.
* `<!-- docs-test: slow -->` — takes more than ~20 s: runs only under `pytest -m slow`. On a page
  with slow python blocks the default run leaves them out (so a block using a slow block's names
  must be slow too) and a second test, `PAGE[slow]`, runs the whole page.
* `<!-- docs-test: file: NAME -->` — before a data block: it is written as NAME into the page's
  working directory before anything on the page runs ("save this as my_cases.json").
* `<!-- docs-test: exit: N -->` — before a bash block that the page says exits with status N
  (a failing verdict, lost work): the status is checked, as 0 is for every other bash block.
* `<!-- docs-test: setup -->` — a python block that defines names which earlier sections of
  its page already use ("`TOY` is defined in section 8"): it runs before the page's others.
* `<!-- docs-test: fresh -->` — a self-contained python block that prints per-process state
  (a launch's epoch counts the launches before it in the process): it runs in a process of its
  own, as a reader running just that block would.

Every page runs in its own temporary working directory that holds a symlink to each top-level
entry of the repository, so relative paths in the docs resolve as from the repository root
while the files a doc writes (trace.json, reports/...) land in the temporary directory. A block
of any other language (```diff, ...) must be marked skip.

Outputs are compared exactly, after the substitutions in NORMALISE (parts of an output that vary
from run to run by nature, each documented there), applied to both sides.

The two tests at the end check prose against code: the simulate synopsis and the mutant count.
"""

import dataclasses
import difflib
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from refsim.cli import _parser as build_parser

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNER = pathlib.Path(__file__).with_name("docs_runner.py")

CODE = {"python", "bash"}
DATA = {"text", "json", "yaml", "toml", "markdown"}
MARKER_KINDS = {"skip", "slow", "file", "exit", "setup", "fresh"}
TIMEOUT_S = 600

# (pattern, replacement, why): applied to expected and actual output alike.
# Every bash output shown today is deterministic (the suite's tables print no wall time, the
# reports' paths are relative), so the table is empty; add a row only for a part that varies by
# nature, e.g. (r"in \d+\.\d s", "in <T> s", "a wall time").
NORMALISE: list[tuple[str, str, str]] = []

FENCE = re.compile(r"^```([\w+-]*)\s*$")
MARKER = re.compile(r"^<!--\s*docs-test:\s*([a-z-]+)\s*(?::\s*(.*?))?\s*-->\s*$")


@dataclasses.dataclass
class Block:
    page: pathlib.Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    markers: list  # (kind, argument or None)
    output: "Block | None" = None  # the data block that follows, if any

    @property
    def where(self):
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def id(self):
        return f"{self.page.name}:{self.line}"

    def has(self, kind):
        return any(k == kind for k, _ in self.markers)

    def marker(self, kind):
        return next((arg for k, arg in self.markers if k == kind), None)

    @property
    def skip(self):
        return self.has("skip")

    @property
    def slow(self):
        return self.has("slow")


def parse(page):
    """The page's fenced blocks, each with the markers just above it and its output block."""
    lines = page.read_text().splitlines()
    blocks = []
    previous_end = -1  # the closing fence of the block before
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start = i
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            i += 1
        assert i < len(lines), f"{page.name}:{start + 1}: unclosed code fence"
        markers = []
        j = start - 1
        while j >= 0 and MARKER.match(lines[j]):
            markers.insert(0, MARKER.match(lines[j]).groups())
            j -= 1
        block = Block(page, start + 1, m.group(1), "\n".join(lines[start + 1 : i]) + "\n", markers)
        previous = blocks[-1] if blocks else None
        between = lines[previous_end + 1 : start]
        if (
            previous is not None
            and previous.lang not in DATA
            and block.lang in DATA
            and block.marker("file") is None
            and not block.markers
            and all(not line.strip() for line in between)
        ):
            previous.output = block
        blocks.append(block)
        previous_end = i
        i += 1
    return blocks


BLOCKS = [block for page in PAGES for block in parse(page)]


def _normalise(text):
    for pattern, replacement, _why in NORMALISE:
        text = re.sub(pattern, replacement, text)
    return text


def _sandbox(page, directory):
    """A working directory for the page: the repository's top-level entries, linked, and the
    page's `file:` data blocks, written."""
    for entry in ROOT.iterdir():
        if entry.name not in {".git", ".venv"}:
            (directory / entry.name).symlink_to(entry)
    for block in BLOCKS:
        if block.page == page and block.marker("file"):
            (directory / block.marker("file")).write_text(block.code)
    return directory


def _env():
    env = dict(os.environ, TRITON_INTERPRET="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PATH"] = os.pathsep.join([str(pathlib.Path(sys.executable).parent), env["PATH"]])
    return env


def _slow_selected(config):
    expression = config.getoption("markexpr") or ""
    return "slow" in expression and "not slow" not in expression


def _check_output(block, stdout):
    if block.output is None:
        return
    expected = _normalise(block.output.code)
    actual = _normalise(stdout)
    diff = "".join(
        difflib.unified_diff(
            expected.splitlines(True), actual.splitlines(True), "the page", "the code now"
        )
    )
    assert actual == expected, (
        f"{block.where}: the output differs from the {block.output.lang} block at line "
        f"{block.output.line}:\n{diff}"
    )


# --- python: one test per page ------------------------------------------------------------


def _python_params():
    params = []
    for page in PAGES:
        blocks = [b for b in BLOCKS if b.page == page and b.lang == "python" and not b.skip]
        if any(not b.slow for b in blocks):
            params.append(pytest.param(page, False, id=page.name))
        if any(b.slow for b in blocks):
            params.append(pytest.param(page, True, id=f"{page.name}[slow]", marks=pytest.mark.slow))
    return params


def _run_python(blocks, cwd, directory):
    """Run ``blocks`` in one namespace in one new process: their results, as far as they got."""
    blocks_file = directory / "blocks.json"
    results_file = directory / "results.json"
    blocks_file.write_text(json.dumps([{"where": b.where, "code": b.code} for b in blocks]))
    proc = subprocess.run(
        [sys.executable, str(RUNNER), str(blocks_file), str(results_file)],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    results = json.loads(results_file.read_text()) if results_file.exists() else []
    assert proc.returncode == 0 and results, f"{blocks[0].where}...: {proc.stderr[-4000:]}"
    return results


@pytest.mark.parametrize(("page", "with_slow"), _python_params())
def test_python_blocks_run_and_print_what_the_page_shows(page, with_slow, tmp_path, request):
    if with_slow and not _slow_selected(request.config):
        pytest.skip("slow: run with -m slow")
    blocks = [
        b
        for b in BLOCKS
        if b.page == page and b.lang == "python" and not b.skip and (with_slow or not b.slow)
    ]
    blocks.sort(key=lambda b: not b.has("setup"))  # stable: the rest keep their order
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    _sandbox(page, cwd)
    # The page's blocks share one process; each `fresh` block gets one of its own.
    runs = [[b for b in blocks if not b.has("fresh")]] + [[b] for b in blocks if b.has("fresh")]
    for number, run in enumerate(r for r in runs if r):
        directory = tmp_path / f"run{number}"
        directory.mkdir()
        results = _run_python(run, cwd, directory)
        timings = ", ".join(f"{b.line}: {r['seconds']:.1f}s" for b, r in zip(run, results))
        print(f"{page.name} block times: {timings}")
        for block, result in zip(run, results):
            assert result["error"] is None, f"{block.where} raised:\n{result['error']}"
            _check_output(block, result["stdout"])
        assert len(results) == len(run)


# --- bash: one test per block ---------------------------------------------------------------


def _bash_params():
    params = []
    for block in BLOCKS:
        if block.lang != "bash":
            continue
        marks = []
        if block.skip:
            marks.append(pytest.mark.skip(reason=block.marker("skip") or "no reason"))
        if block.slow:
            marks.append(pytest.mark.slow)
        params.append(pytest.param(block, id=block.id, marks=marks))
    return params


@pytest.mark.parametrize("block", _bash_params())
def test_bash_block_runs_and_prints_what_the_page_shows(block, tmp_path, request):
    if block.slow and not _slow_selected(request.config):
        pytest.skip("slow: run with -m slow")
    proc = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", block.code],
        cwd=_sandbox(block.page, tmp_path),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    status = int(block.marker("exit") or 0)
    assert proc.returncode == status, (
        f"{block.where} exited {proc.returncode}, not {status}:\n{proc.stderr[-4000:]}"
    )
    _check_output(block, proc.stdout)


# --- markers and languages ------------------------------------------------------------------


def test_every_block_is_run_or_skipped_with_a_reason():
    problems = []
    for block in BLOCKS:
        for kind, argument in block.markers:
            if kind not in MARKER_KINDS:
                problems.append(f"{block.where}: unknown marker {kind!r}")
            if kind == "skip" and not (argument or "").strip():
                problems.append(f"{block.where}: a skip marker needs a reason")
            if kind == "exit" and not (block.lang == "bash" and (argument or "").isdigit()):
                problems.append(f"{block.where}: an exit marker gives a bash block's status")
            if kind in ("setup", "fresh") and block.lang != "python":
                problems.append(f"{block.where}: a {kind} marker is for a python block")
            if kind == "file" and (not argument or block.lang not in DATA):
                problems.append(f"{block.where}: a file marker names a file, before a data block")
        if block.lang not in CODE | DATA and not block.skip:
            problems.append(f"{block.where}: ```{block.lang} is not run: mark it skip, with why")
    for page in PAGES:
        lines = page.read_text().splitlines()
        for number, line in enumerate(lines):
            if MARKER.match(line) is None and "docs-test" in line:
                problems.append(f"{page.name}:{number + 1}: malformed marker {line!r}")
    assert not problems, "\n".join(problems)


def test_markers_sit_just_above_a_fence():
    problems = []
    for page in PAGES:
        lines = page.read_text().splitlines() + [""]
        for number, line in enumerate(lines):
            if MARKER.match(line) and not (
                MARKER.match(lines[number + 1]) or FENCE.match(lines[number + 1])
            ):
                problems.append(f"{page.name}:{number + 1}: a marker not just above a fence")
    assert not problems, "\n".join(problems)


# --- prose against code ---------------------------------------------------------------------


def _simulate_parser():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    return commands.choices["simulate"]


def test_the_documented_simulate_synopsis_lists_every_option():
    text = (ROOT / "docs" / "refsim.md").read_text()
    synopsis = re.search(r"^refsim simulate M N K (.*?)```", text, re.M | re.S).group(1)
    documented = set(re.findall(r"--[a-z][a-z0-9-]*", synopsis))
    options = {
        option
        for action in _simulate_parser()._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }
    assert documented == options


def test_the_readme_counts_the_mutants_there_are():
    from conformance.mutants import MUTANTS

    readme = (ROOT / "README.md").read_text()
    gpu_only = sum(m.gpu_only for m in MUTANTS)
    on_cpu = len(MUTANTS) - gpu_only
    assert f"catches {len(MUTANTS)}\n  known-wrong kernels ({on_cpu} on the CPU" in readme
