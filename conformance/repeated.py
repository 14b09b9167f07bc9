"""The repeated-call check: later calls of a key, with new tensors, give refsim's output too.

The project's kernels prepare an untraced call on its first launch and serve every later call of
the same key -- config, dtypes, shapes, strides, 16-byte alignment -- from the prepared call
(:mod:`kernels.prepared`), which substitutes only the call's tensors and the flag epoch. Every
other check makes a case's first call of a key or repeats its inputs, so a prepared call that
keeps something of an earlier call (a tensor, a stride) shows only here.
"""

import dataclasses

import numpy as np
import torch

from .causes import Cause
from .checks import Finding, grouped_finding
from .diagnosis import (
    CauseGroup,
    SubstitutionDiagnoser,
    first_wrong_tile,
    plan_segments,
    wrong_tiles,
)
from .harness import cast_to, expected_output, launch, to_numpy
from .inputs import integer_inputs

# The seed offsets of the check's integer inputs: values no earlier check used.
SAME_LAYOUT_SEED = 101
OTHER_STRIDES_SEED = 102
MISALIGNED_SEED = 103
# The other layout of A: this many more elements per stored line than the case has, starting
# 16 bytes into its storage (so that its 16-byte alignment, part of the key, is the case's).
A_REPADDING = 5
OFFSET_BYTES = 16
# What A's storage holds outside its view: an integer, so a kernel that reads it still sums
# exactly, and the layout decoder can model the misread.
A_PADDING_VALUE = 3


@dataclasses.dataclass(frozen=True)
class RepeatedCall:
    """One call of the check: its integer inputs' seed offset, how its A is laid out
    (``relayout`` as :func:`conformance.harness.launch` takes it, None for the case's layout)
    and what the reasons call it."""

    seed_offset: int
    relayout: object
    description: str


def other_strides(case):
    """A ``relayout`` for ``launch``: A with the case's values and orientation (row- or
    column-major) in new memory, :data:`A_REPADDING` more elements per stored line and
    :data:`OFFSET_BYTES` into its storage; B, the bias and C as the case lays them out."""

    def relayout(a, b, bias):
        lines = a.t() if case.transpose_a else a  # A's stored lines as rows
        rows, cols = lines.shape
        width = lines.stride(0) + A_REPADDING if rows > 1 else cols + A_REPADDING
        offset = OFFSET_BYTES // a.element_size()
        storage = torch.full(
            (offset + rows * width,), A_PADDING_VALUE, dtype=a.dtype, device=a.device
        )
        moved = storage[offset:].view(rows, width)[:, :cols]
        moved.copy_(lines)
        return (moved.t() if case.transpose_a else moved), b, bias

    return relayout


def misaligned(case):
    """A ``relayout`` for ``launch``: A with the case's shape and strides, one element into a
    storage of its own (so not 16-byte aligned: another key for a kernel that specialises on
    alignment); B, the bias and C as the case lays them out."""

    def relayout(a, b, bias):
        span = 1 + sum((size - 1) * stride for size, stride in zip(a.shape, a.stride()))
        storage = torch.full((1 + span,), A_PADDING_VALUE, dtype=a.dtype, device=a.device)
        moved = storage.as_strided(a.shape, a.stride(), 1)
        moved.copy_(a)
        return moved, b, bias

    return relayout


def repeated_calls(case):
    """The check's calls, in order: the case's layout with new inputs in new tensors -- for the
    project's kernels a repeated call of the key the accuracy check's call prepared -- then the
    same shape with A in other strides (:func:`other_strides`), which must not be served from
    a call prepared for the case's strides."""
    return (
        RepeatedCall(
            SAME_LAYOUT_SEED,
            None,
            "a repeated call with the case's shapes, strides and alignment (the same key: the "
            "prepared path), new inputs in new tensors",
        ),
        RepeatedCall(
            OTHER_STRIDES_SEED,
            other_strides(case),
            f"a call of the same shape with A's leading dimension {A_REPADDING} elements longer "
            f"and {OFFSET_BYTES} bytes into its storage (another key), after calls with the "
            "case's strides",
        ),
        RepeatedCall(
            MISALIGNED_SEED,
            misaligned(case),
            "a call with the case's strides and A one element into its storage (not 16-byte "
            "aligned: another key), after aligned calls",
        ),
    )


def check_repeated_calls(kut, case, config, device):
    """Each of :func:`repeated_calls`, untraced, equals refsim's output for its own inputs bit
    for bit (integer inputs: every fp32 sum is exact, so the atomic fixup's too).

    The first wrong call fails the check, and each reason says which call it was. An output
    whose every wrong element still holds the harness's NaN is ``tile never written``, decided
    here: the diagnosis's relaunches could take the same faulty path. Any other difference is
    diagnosed tile by tile (:class:`conformance.diagnosis.SubstitutionDiagnoser`: an operand of
    an earlier call is ``operand of an earlier call``, an operand read with another
    call's strides is ``operand layout ignored``). Traced calls are never prepared; the exact
    and random-bits checks already compare traced calls made after others.
    """
    reasons = []
    earlier = [("the exact check's call", integer_inputs(case))]
    for number, call in enumerate(repeated_calls(case), start=1):
        inputs = integer_inputs(case, call.seed_offset)
        run, tensors = launch(
            kut, config, case, inputs, device, trace=False, relayout=call.relayout
        )
        expected32, sim = expected_output(config, run, tensors)
        got = to_numpy(run.output)
        expected = cast_to(expected32, run.output.dtype)
        if first_wrong_tile(config, got, expected) is None:
            reasons.append(f"call {number}, {call.description}: refsim's output")
            earlier.append((f"call {number}", inputs))
            continue
        wrong = wrong_tiles(config, got, expected)
        if all(np.isnan(got[w.region][w.wrong]).all() for w in wrong):
            groups, info = never_written(config, wrong, got, expected, sim)
        else:
            alternatives = stale_operands(inputs, earlier, run.output.dtype)
            groups, info = SubstitutionDiagnoser(
                kut,
                case,
                config,
                got,
                expected,
                sim,
                device,
                tensors,
                run.output.dtype,
                alternatives,
            ).run()
        return grouped_finding(
            "repeated calls", groups, info, note=f" (call {number}: {call.description})"
        )
    return Finding("repeated calls", True, reasons)


def stale_operands(inputs, earlier, dtype):
    """:class:`conformance.diagnosis.SubstitutionDiagnoser` alternatives for a call on integer
    ``inputs`` (a, b, bias) that kept some of an ``earlier`` call's: ``[(name, inputs)]``, each
    operand in turn and all of them (a call served every operand of the earlier one). The
    integer sums are exact, so the float64 product is what any order of additions gives."""
    names = ("A", "B", "the bias")
    alternatives = []
    for call, old in earlier:
        for kept in [(0,), (1,), (2,), (0, 1, 2)]:
            if kept == (2,) and old[2] is None:
                continue  # no bias to keep
            mixed = [old[i] if i in kept else inputs[i] for i in range(3)]
            what = "every operand" if len(kept) == 3 else names[kept[0]]
            alternatives.append(
                (
                    Cause.OPERAND_OF_EARLIER_CALL,
                    f"the output is the product with {what} of {call}, not this call's",
                    _product_of(mixed, dtype),
                )
            )
    return alternatives


def _product_of(inputs, dtype):
    """A function giving ``a @ b + bias`` of integer ``inputs`` cast to ``dtype`` as float64."""
    a, b, bias = inputs
    return lambda: cast_to(a @ b + (0.0 if bias is None else bias), dtype)


def never_written(config, wrong, got, expected, sim):
    """``(groups, info)`` as :meth:`conformance.diagnosis.Diagnoser.run` gives them, for an
    output whose ``wrong`` tiles (:class:`conformance.diagnosis.WrongTile`) all still hold NaN
    where they are wrong: one ``tile never written`` group."""
    detail = "the call left the NaN the output was filled with"
    group = CauseGroup(
        Cause.TILE_NEVER_WRITTEN, tuple(w.tile for w in wrong), sum(w.count for w in wrong), detail
    )
    first = wrong[0]
    info = {
        "tile": first.tile,
        "pid_m": first.pid_m,
        "pid_n": first.pid_n,
        "element": list(first.element),
        "got": float(got[first.element]),
        "expected": float(expected[first.element]),
        "plan": plan_segments(config, sim, first.tile),
        "detail": detail,
        "cause": str(group.cause),
    }
    return [group], info
