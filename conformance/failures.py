"""Launch failures: an exception raised while a case was checked, turned into a Finding.

A kernel's ``tl.assume(cond)`` tells the compiler that ``cond`` holds; on a GPU a false one is
undefined behaviour (wrong numbers, or none), while Triton's interpreter stops the launch with
``AssertionError('Assume failed')`` raised from inside Triton. :func:`launch_failure` finds the
kernel's own source line in that traceback and names the assumption the case violates, with
cause ``kernel assumption violated``; any other exception is ``unclassified``, with the check
that saw it and ``Type: message``.
"""

import dataclasses
import linecache
import os
import re
import traceback

import triton

from refsim import strategies

from .cases import LAYOUTS
from .causes import Cause
from .checks import Finding

# What Triton's interpreter raises for a false tl.assume (triton/runtime/interpreter.py,
# create_assume), wrapped by the launch in an InterpreterError whose __cause__ it is.
ASSUME_FAILED = "Assume failed"
ASSUMPTION_VIOLATED = Cause.KERNEL_ASSUMPTION_VIOLATED
# The longest reason a launch failure gives (an exception's first line can be long).
MAX_REASON = 500
# A failed assumption's call, as the kernel's source spells it, and how many lines it may span.
_ASSUME_CALL = re.compile(r"[\w.]*\bassume\(")
_MAX_STATEMENT_LINES = 20
_TRITON_DIR = os.path.dirname(os.path.abspath(triton.__file__)) + os.sep


@dataclasses.dataclass(frozen=True)
class Assumption:
    """A ``tl.assume`` that failed: its source text, and the file and line holding it."""

    source: str
    filename: str
    line: int

    @property
    def place(self):
        """``kernel.py:123``."""
        return f"{os.path.basename(self.filename)}:{self.line}"


def launch_failure(exc, case, config):
    """The failed Finding of an exception ``exc`` raised while checking ``case`` (whose
    GemmConfig is ``config``), check ``launch``.

    A failed ``tl.assume`` (:func:`violated_assumption`) gives cause ``kernel assumption
    violated`` and one reason, e.g. ``tl.assume(stride_ak == 1) failed (kernel.py:40) on case
    NAME: M=.., N=.., K=.., ...``; its diagnosis holds the assumption, file and line. Anything
    else gives cause ``unclassified`` and ``CHECK raised Type: message`` (the message's first
    line), CHECK being the check function that was running (:func:`raising_check`).
    """
    check = raising_check(exc)
    assumption = violated_assumption(exc)
    if assumption is not None:
        reason = (
            f"{assumption.source} failed ({assumption.place}) on case {case.name}: "
            f"{describe_case(case, config)}"
        )
        diagnosis = dataclasses.asdict(assumption) | {"check": check}
        return Finding("launch", False, [reason], ASSUMPTION_VIOLATED, diagnosis)
    reason = f"{check} raised {one_line(_innermost(exc))}"[:MAX_REASON]
    return Finding("launch", False, [reason], Cause.UNCLASSIFIED, {"check": check})


def violated_assumption(exc):
    """The :class:`Assumption` whose failure raised ``exc`` (or the exception it wraps, such as
    the interpreter's InterpreterError), read off the traceback: Triton raised it, called from
    the kernel's source line (the interpreter runs a jit function's Python source). None when
    ``exc`` is not a failed ``tl.assume``. Its source is ``tl.assume(...)`` when the kernel's
    file cannot be read."""
    for error in _chain(exc):
        if isinstance(error, AssertionError) and str(error) == ASSUME_FAILED:
            frames = traceback.extract_tb(error.__traceback__)
            kernel = [frame for frame in frames if not _in_triton(frame.filename) and frame.lineno]
            if kernel and _in_triton(frames[-1].filename):  # Triton raised it, a kernel called
                caller = kernel[-1]
                return Assumption(_statement(caller), caller.filename, caller.lineno or 0)
    return None


def raising_check(exc):
    """The name of the function ``conformance.checking.check_case`` was in when ``exc`` was
    raised (``check_exact``, ``warm_up``, ...); the outermost function of the traceback when
    check_case is not in it, or ``"unknown check"`` when it has none."""
    frames = traceback.extract_tb(exc.__traceback__)
    names = [frame.name for frame in frames]
    if "check_case" in names[:-1]:
        inner = names[names.index("check_case") + 1 :]
        checks = [name for name in inner if not name.startswith("_step_")]
        return (checks or inner)[0]
    return names[0] if names else "unknown check"


def describe_case(case, config):
    """One line of what a case hands the kernel, e.g. ``M=100, N=20, K=64, streamk/turnstile,
    bf16, bias, blocks 16x32x16, group_m 4, grid 3 of 3 CUs in 1 XCD, layout strided``."""
    run = strategies.run_label(config.strategy, config.fixup)
    layout = ", ".join(name for name in LAYOUTS if getattr(case, name)) or "row-major"
    return (
        f"M={config.m}, N={config.n}, K={config.k}, {run}, {config.dtype}, "
        f"{'bias' if case.bias else 'no bias'}, "
        f"blocks {config.block_m}x{config.block_n}x{config.block_k}, group_m {config.group_m}, "
        f"grid {config.grid} of {config.cus} CUs in {config.xcds} XCD"
        f"{'s' if config.xcds > 1 else ''}, layout {layout}"
    )


def one_line(exc):
    """An exception as ``Type: message``, its message's first line only."""
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__


def _chain(exc):
    """``exc`` and the exceptions it wraps (``raise ... from``), outermost first."""
    chain: list[BaseException] = []
    while exc is not None and not any(exc is other for other in chain):
        chain.append(exc)
        exc = exc.__cause__
    return chain


def _innermost(exc):
    """The exception at the end of ``exc``'s chain: what the interpreter's InterpreterError
    wraps, rather than its repr."""
    return _chain(exc)[-1]


def _in_triton(filename):
    return os.path.abspath(filename).startswith(_TRITON_DIR)


def _statement(frame):
    """The ``tl.assume(...)`` call starting on ``frame``'s line, on one line with its whitespace
    collapsed and comments dropped (it may span several lines); ``tl.assume(...)`` when the
    source is not there (a ``#`` inside a string of the call would cut it short)."""
    text = ""
    for number in range(frame.lineno, frame.lineno + _MAX_STATEMENT_LINES):
        text += linecache.getline(frame.filename, number).split("#", 1)[0] + "\n"  # no comment
        call = _ASSUME_CALL.search(text)
        if call is None:
            break
        depth = 0
        for end in range(call.end() - 1, len(text)):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            if depth == 0:
                statement = " ".join(text[call.start() : end + 1].split())
                return statement.replace("( ", "(").replace(" )", ")")
    return "tl.assume(...)"
