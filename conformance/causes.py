"""The causes a conformance check names for a failure: :class:`Cause`, in rank order.

A :class:`Cause` is a :class:`enum.StrEnum`, so each member equals (and JSON-encodes as) its
plain string: reports and code comparing with ``"tile never written"`` keep working. This module
imports nothing from the package: every other layer may use it.
"""

import enum
import sys

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # Python 3.10: a str mixin whose str() and format() give the value, as StrEnum's do

    class StrEnum(str, enum.Enum):
        def __str__(self) -> str:
            return str.__str__(self)

        def __format__(self, format_spec: str) -> str:
            return str.__format__(self, format_spec)


# Every cause, in the order a case lists them: the first a case has is its lead cause, what to
# fix first. Faults that stop the run or write out of bounds lead, then work lost or written
# elsewhere, then synchronisation, then wrong sums, then rounding and order, then records;
# values nothing explains come last (a backend trap that may explain them before plain
# "unclassified"). An output not initialised before atomic accumulation comes just before
# "tile never written": it is the more specific reading of the same NaN (proved by relaunching
# over finite fills), so where one check proves it, another's plain NaN does not lead. A flag
# published by several programs ranks with the other flag faults that let a waiter see
# "ready" without its storer's release (after a stale epoch). A trace that misreports right
# work is a records fault that is not the schedule's: just after "record overrun", before
# "wrong tile order". An operand kept from an earlier call (a prepared call or a graph replay
# reading stale memory) and a product computed from another batch entry's operand rank with the
# operand read with the wrong layout: the right sums of the wrong numbers.
class Cause(StrEnum):
    """Why a check failed; members in rank order (the first a case has is its lead cause)."""

    KERNEL_CRASHED = "kernel crashed"
    KERNEL_HUNG = "kernel hung"
    KERNEL_ASSUMPTION_VIOLATED = "kernel assumption violated"
    WRITE_OUTSIDE_TILE_OR_MATRIX = "write outside the tile or matrix"
    OUTPUT_NOT_INITIALISED = "output not initialised before atomic accumulation"
    TILE_NEVER_WRITTEN = "tile never written"
    WRITE_INTO_ANOTHER_TILE = "write into another tile"
    TILE_WRITTEN_TO_WRONG_PLACE = "tile written to the wrong place"
    PARTIAL_READ_BEFORE_WRITTEN = "partial read before it was written"
    PARTIAL_READ_BEFORE_RELEASE = "partial read before its release"
    FLAG_SET_BEFORE_PARTIAL_STORED = "flag set before its partial is stored"
    PARTIAL_NEVER_RELEASED = "partial never released"
    FLAG_HELD_STALE_EPOCH = "flag held a stale epoch"
    FLAG_PUBLISHED_BY_SEVERAL_PROGRAMS = "flag published by several programs"
    MISSING_K_SEGMENT = "missing K-segment"
    DUPLICATED_K_SEGMENT = "duplicated K-segment"
    OPERAND_OF_EARLIER_CALL = "operand of an earlier call"
    WRONG_BATCH_ENTRY = "wrong batch entry"
    OPERAND_LAYOUT_IGNORED = "operand layout ignored"
    BIAS_MISSING = "bias missing"
    BIAS_ALONG_WRONG_AXIS = "bias along the wrong axis"
    BIAS_APPLIED_MORE_THAN_ONCE = "bias applied more than once"
    ACCUMULATOR_PRECISION = "accumulator precision"
    BIAS_ADDED_AFTER_CAST = "bias added after the cast"
    WRONG_ROUNDING_MODE = "wrong rounding mode"
    WRONG_ADDITION_ORDER = "wrong addition order"
    RECORD_OVERRUN = "record overrun"
    TRACE_MISREPORTS_WORK = "trace misreports the work"
    WRONG_TILE_ORDER = "wrong tile order"
    NONDETERMINISM = "nondeterminism"
    INACCURATE = "inaccurate"
    BACKEND_LIMITATION = "backend limitation"
    UNCLASSIFIED = "unclassified"


CAUSES = tuple(Cause)
CAUSE_RANK = {cause: rank for rank, cause in enumerate(CAUSES)}
