"""Trace records (one per work item) and their exports: Chrome trace JSON and a Gantt PNG."""

import json
import os
import typing

ROLES = ("dp", "sk-owner", "sk-contributor", "ws", "split", "reduce")
GANTT_FORMATS = ("png", "svg", "pdf")
MATPLOTLIB_INSTALL = "pip install 'refsim[plot]'"
ROLE_COLOURS = {
    "dp": "#4c72b0",
    "sk-owner": "#dd8452",
    "sk-contributor": "#55a868",
    "ws": "#8172b3",
    "split": "#937860",
    "reduce": "#c44e52",
}


class WorkRecord(typing.NamedTuple):
    """What one program did in one work item, and when.

    ``k_begin``/``k_end`` count BLOCK_K iterations. ``unit`` is the CU/SM the program ran on and
    ``xcd`` its chiplet. ``ticket``/``counter`` are set (else -1) for work stealing.
    ``finalizes`` is true when this item wrote the tile's final value (split-K's reduction
    programs write a row band each; see
    :class:`refsim.result.Fixup` for who adds the bias under the atomic fixup protocol).
    ``kernel`` is ``"gemm"``, or ``"reduce"`` for split-K's reduction launch.
    """

    program: int
    step: int
    tile: int
    pid_m: int
    pid_n: int
    k_begin: int
    k_end: int
    role: str
    unit: int
    xcd: int
    t_start_us: float
    t_end_us: float
    ticket: int = -1
    counter: int = -1
    finalizes: bool = False
    kernel: str = "gemm"


def _lanes(records):
    """A lane per record so that slices on one CU never overlap (several resident programs)."""
    lane_ends: dict[int, list[float]] = {}
    lanes = {}
    for i in sorted(range(len(records)), key=lambda i: (records[i].t_start_us, i)):
        r = records[i]
        ends = lane_ends.setdefault(r.unit, [])
        lane = next((j for j, end in enumerate(ends) if end <= r.t_start_us), len(ends))
        if lane == len(ends):
            ends.append(r.t_end_us)
        ends[lane] = r.t_end_us
        lanes[i] = lane
    return lanes


def chrome_trace(records, metadata=None):
    """The records as a Chrome trace event document (Perfetto and chrome://tracing open it).

    One complete event (``ph: "X"``) per record; process = XCD, thread = CU (a CU running
    several programs at once gets one thread per concurrent program), times in us.
    """
    lanes = _lanes(records)
    threads = sorted({(r.xcd, r.unit, lanes[i]) for i, r in enumerate(records)})
    width = 1 + max((lane for _, _, lane in threads), default=0)
    events = [
        metadata_event("process_name", xcd, 0, f"XCD {xcd}")
        for xcd in sorted({r.xcd for r in records})
    ]
    for xcd, unit, lane in threads:
        name = f"CU {unit}" if width == 1 else f"CU {unit} slot {lane}"
        events.append(metadata_event("thread_name", xcd, unit * width + lane, name))
    for i, r in enumerate(records):
        events.append(complete_event(r, r.xcd, r.unit * width + lanes[i]))
    return trace_document(events, metadata)


def metadata_event(kind, pid, tid, name):
    """A ``process_name`` or ``thread_name`` (``kind``) event naming process ``pid`` or its
    thread ``tid``."""
    return {"name": kind, "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}}


def complete_event(record, pid, tid):
    """The complete event (``ph: "X"``) of one record on thread ``tid`` of process ``pid``: named
    by role, tile and K-range, the role as category, times in us, the whole record in args."""
    return {
        "name": f"{record.role} tile {record.tile} k[{record.k_begin},{record.k_end})",
        "cat": record.role,
        "ph": "X",
        "ts": record.t_start_us,
        "dur": record.t_end_us - record.t_start_us,
        "pid": pid,
        "tid": tid,
        "args": record._asdict(),
    }


def trace_document(events, metadata=None):
    """A Chrome trace event document of ``events``, with ``metadata`` under ``otherData``."""
    return {"traceEvents": events, "displayTimeUnit": "ns", "otherData": dict(metadata or {})}


def write_chrome_trace(records, path, metadata=None):
    with open(path, "w") as f:
        json.dump(chrome_trace(records, metadata), f)


def check_gantt_format(path):
    """ValueError unless ``path`` names a format :func:`plot_gantt` writes."""
    suffix = os.path.splitext(str(path))[1].lower().lstrip(".")
    if suffix not in GANTT_FORMATS:
        raise ValueError(
            f"{path}: a Gantt chart is written as {', '.join(GANTT_FORMATS)}, named by its suffix"
        )


def plot_gantt(records, path, title="", waits=(), stalled_at=None, time_range=None):
    """A Gantt chart, one row per CU, one bar per work item coloured by role. Needs matplotlib.

    A thin white line separates back-to-back items of one CU; the legend sits right of the
    bars. For a deadlocked run, ``waits`` holds ``(program, awaited)`` pairs: an arrow goes
    from where each waiting program stalled to the row of the program it waits for (a note
    when that one never started), and ``stalled_at`` marks the time of the stall.
    ``time_range``, ``(start, end)`` in us, fixes the time axis (charts to compare share one);
    by default it fits the bars.
    """
    check_gantt_format(path)
    try:
        import matplotlib
    except ImportError as exc:
        raise RuntimeError(f"plot_gantt needs matplotlib: {MATPLOTLIB_INSTALL}") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if not records:
        raise ValueError("no work items to plot (the run recorded none)")
    units = sorted({r.unit for r in records})
    row = {u: i for i, u in enumerate(units)}
    fig, ax = plt.subplots(figsize=(12, max(3.0, min(0.25 * len(units) + 1.5, 12.0))))
    spans: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for r in records:
        spans.setdefault((r.role, r.unit), []).append((r.t_start_us, r.t_end_us - r.t_start_us))
    for (role, unit), bars in spans.items():
        ax.broken_barh(
            bars, (row[unit] - 0.4, 0.8), facecolors=ROLE_COLOURS.get(role, "grey"), linewidth=0
        )
    ends = {(r.unit, r.t_end_us) for r in records}
    joins = [r for r in records if (r.unit, r.t_start_us) in ends]
    ax.vlines(
        [r.t_start_us for r in joins],
        [row[r.unit] - 0.4 for r in joins],
        [row[r.unit] + 0.4 for r in joins],
        colors="white",
        linewidth=0.8 if len(units) <= 64 else 0.4,
    )
    xcd_of = dict((r.unit, r.xcd) for r in records)
    for i in range(1, len(units)):
        if xcd_of[units[i]] != xcd_of[units[i - 1]]:
            ax.axhline(i - 0.5, color="grey", linewidth=0.6)
    _draw_waits(ax, records, row, waits, stalled_at)
    roles_present = {role for role, _ in spans}
    ax.set_xlabel("time (us)")
    if time_range is not None:
        ax.set_xlim(*time_range)
    ax.set_ylabel("CU (lines separate XCDs)" if len(set(xcd_of.values())) > 1 else "CU")
    ax.set_ylim(len(units) - 0.5, -0.5)
    if len(units) <= 40:
        ax.set_yticks(range(len(units)), [str(u) for u in units])
    ax.set_title(title)
    ax.legend(
        handles=[Patch(color=ROLE_COLOURS[r], label=r) for r in ROLES if r in roles_present],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0.0,
        fontsize="small",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


WAITS_ANNOTATED = 16  # more arrows than this would hide the bars


def _draw_waits(ax, records, row, waits, stalled_at):
    """Arrows from each waiting program to the program it waits for (see :func:`plot_gantt`)."""
    if stalled_at is not None:
        ax.axvline(stalled_at, color="red", linestyle="--", linewidth=1.0)
        ax.annotate(
            f"deadlock at {stalled_at:.2f} us",
            (stalled_at, -0.5),
            xytext=(-3, -3),
            textcoords="offset points",
            ha="right",
            va="top",
            color="red",
            fontsize="small",
        )
    last = {}
    for r in records:
        if r.kernel == "gemm":
            last[r.program] = r
    for program, awaited in list(waits)[:WAITS_ANNOTATED]:
        waiter = last[program]
        start = (waiter.t_end_us, row[waiter.unit])
        if awaited in last:
            target = last[awaited]
            ax.annotate(
                "",
                xy=(target.t_end_us, row[target.unit]),
                xytext=start,
                arrowprops={"arrowstyle": "->", "color": "red", "linewidth": 1.2},
            )
            note = f"P{program} waits for P{awaited}"
        else:
            note = f"P{program} waits for P{awaited} (never started)"
        ax.annotate(
            note,
            start,
            xytext=(-4, 0),
            textcoords="offset points",
            ha="right",
            va="center",
            color="red",
            fontsize="small",
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "red"},
        )
