"""A run's measured timeline beside refsim's prediction of the same config (``refsim compare``).

The two sides are lists of :class:`~refsim.trace.WorkRecord`: the kernel's own trace (times
from the GPU clock, whose origin is arbitrary) and :func:`refsim.simulate`'s records. Both are
shifted to start at 0, then exported as one Chrome/Perfetto trace with a process per side, as
two Gantt charts on one time axis, or as a few lines of text.
"""

import json

from . import trace

MEASURED = (1, "GPU (measured)")
PREDICTED = (2, "refsim (predicted)")
MOST_DIFFERENT = 3  # programs listed by comparison_lines


def makespan_us(records):
    """Last end minus first start; ValueError for no records."""
    if not records:
        raise ValueError("no work records: a makespan needs at least one")
    return max(r.t_end_us for r in records) - min(r.t_start_us for r in records)


def shifted_to_zero(records):
    """The records with their times moved so that the first one starts at 0."""
    if not records:
        return []
    origin = min(r.t_start_us for r in records)
    return [
        r._replace(t_start_us=r.t_start_us - origin, t_end_us=r.t_end_us - origin) for r in records
    ]


def _threads(records):
    """Each record's thread, ``(tid, name)``: tid = program. Split-K's reduction launch numbers
    its programs from 0 again, so they come after the GEMM programs, on threads of their own."""
    first_reduce = 1 + max((r.program for r in records if r.kernel == "gemm"), default=-1)
    return [
        (r.program, f"program {r.program}")
        if r.kernel == "gemm"
        else (first_reduce + r.program, f"reduce program {r.program}")
        for r in records
    ]


def comparison_trace(measured, predicted, metadata=None):
    """One Chrome trace document: process 1 the measured records, process 2 the predicted ones,
    each with one thread per program and its timeline shifted to start at 0; ``metadata``
    under ``otherData``."""
    events = []
    for (pid, process), records in ((MEASURED, measured), (PREDICTED, predicted)):
        records = shifted_to_zero(records)
        threads = _threads(records)
        events.append(trace.metadata_event("process_name", pid, 0, process))
        for tid, name in sorted(set(threads)):
            events.append(trace.metadata_event("thread_name", pid, tid, name))
        for record, (tid, _) in zip(records, threads):
            events.append(trace.complete_event(record, pid, tid))
    return trace.trace_document(events, metadata)


def write_comparison(measured, predicted, path, metadata=None):
    """Write :func:`comparison_trace` as JSON to ``path``."""
    with open(path, "w") as f:
        json.dump(comparison_trace(measured, predicted, metadata), f)


def gantt_pair_paths(stem):
    """The two charts :func:`plot_gantt_pair` writes: ``<stem>-measured.png`` and
    ``<stem>-predicted.png``."""
    return f"{stem}-measured.png", f"{stem}-predicted.png"


def plot_gantt_pair(measured, predicted, stem, title):
    """Each side's Gantt chart (:func:`gantt_pair_paths`), shifted to start at 0, on the same
    time axis (up to the longer makespan) so they compare by eye. Returns the two paths. Needs
    matplotlib."""
    end = max(makespan_us(measured), makespan_us(predicted))
    paths = gantt_pair_paths(stem)
    for path, side, records in zip(paths, ("measured", "predicted"), (measured, predicted)):
        trace.plot_gantt(
            shifted_to_zero(records),
            path,
            title=f"{title}: {side}, {makespan_us(records):.2f} us",
            time_range=(0.0, end),
        )
    return paths


def _program_ends(records):
    """``{(kernel, program): the end of its last record}``, times shifted to start at 0."""
    ends: dict[tuple[str, int], float] = {}
    for r in shifted_to_zero(records):
        key = (r.kernel, r.program)
        ends[key] = max(ends.get(key, r.t_end_us), r.t_end_us)
    return ends


def comparison_lines(measured, predicted, measured_in_steps=False):
    """A one-screen text comparison: each side's makespan, their ratio, and the programs whose
    measured end differs most from the predicted one. ``measured_in_steps``: the measured
    times count the interpreter's steps, not microseconds, so they are shown as steps and no
    ratio is taken."""
    measured_us, predicted_us = makespan_us(measured), makespan_us(predicted)
    unit = "steps" if measured_in_steps else "us"
    ratio = f"{measured_us / predicted_us:.2f}" if predicted_us > 0 else "undefined"
    if measured_in_steps:
        ratio = "not taken (interpreter steps against microseconds)"
    lines = [
        "makespan, first start to last end:",
        f"  measured {measured_us:.2f} {unit}",
        f"  predicted {predicted_us:.2f} us",
        f"  measured / predicted {ratio}",
    ]
    measured_ends, predicted_ends = _program_ends(measured), _program_ends(predicted)
    both = sorted(measured_ends.keys() & predicted_ends.keys())
    most = sorted(both, key=lambda p: -abs(measured_ends[p] - predicted_ends[p]))
    if most:
        lines.append("programs whose measured end differs most from the prediction:")
    for kernel, program in most[:MOST_DIFFERENT]:
        name = f"program {program}" if kernel == "gemm" else f"reduce program {program}"
        got, want = measured_ends[kernel, program], predicted_ends[kernel, program]
        lines.append(
            f"  {name}: ends at {got:.2f} {unit} measured, {want:.2f} us predicted"
            + ("" if measured_in_steps else f" ({got - want:+.2f} us)")
        )
    return lines
