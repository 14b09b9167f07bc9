"""Trace records (one per work item) and their exports: Chrome trace JSON and a Gantt PNG."""

import json
import typing

ROLES = ("dp", "sk-owner", "sk-contributor", "ws", "split", "reduce")
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
    ``finalizes`` is true when this item wrote the tile's final value (see
    :class:`refsim.simulator.Fixup` for who adds the bias under the atomic fixup protocol).
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
    lane_ends = {}
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
    events = []
    for xcd in sorted({r.xcd for r in records}):
        events.append(
            {
                "name": "process_name",
                "ph": "M",
                "pid": xcd,
                "tid": 0,
                "args": {"name": f"XCD {xcd}"},
            }
        )
    for xcd, unit, lane in threads:
        name = f"CU {unit}" if width == 1 else f"CU {unit} slot {lane}"
        events.append(
            {
                "name": "thread_name",
                "ph": "M",
                "pid": xcd,
                "tid": unit * width + lane,
                "args": {"name": name},
            }
        )
    for i, r in enumerate(records):
        events.append(
            {
                "name": f"{r.role} tile {r.tile} k[{r.k_begin},{r.k_end})",
                "cat": r.role,
                "ph": "X",
                "ts": r.t_start_us,
                "dur": r.t_end_us - r.t_start_us,
                "pid": r.xcd,
                "tid": r.unit * width + lanes[i],
                "args": r._asdict(),
            }
        )
    return {"traceEvents": events, "displayTimeUnit": "ns", "otherData": dict(metadata or {})}


def write_chrome_trace(records, path, metadata=None):
    with open(path, "w") as f:
        json.dump(chrome_trace(records, metadata), f)


def plot_gantt(records, path, title=""):
    """A Gantt chart, one row per CU, one bar per work item coloured by role. Needs matplotlib."""
    try:
        import matplotlib
    except ImportError as exc:
        raise RuntimeError("plot_gantt needs matplotlib: pip install 'refsim[plot]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if not records:
        raise ValueError("no work items to plot (the run recorded none)")
    units = sorted({r.unit for r in records})
    row = {u: i for i, u in enumerate(units)}
    fig, ax = plt.subplots(figsize=(12, max(3.0, min(0.25 * len(units) + 1.5, 12.0))))
    edge = {"edgecolor": "black", "linewidth": 0.2} if len(units) <= 64 else {"linewidth": 0}
    spans = {}
    for r in records:
        spans.setdefault((r.role, r.unit), []).append((r.t_start_us, r.t_end_us - r.t_start_us))
    for (role, unit), bars in spans.items():
        ax.broken_barh(
            bars, (row[unit] - 0.4, 0.8), facecolors=ROLE_COLOURS.get(role, "grey"), **edge
        )
    xcd_of = dict((r.unit, r.xcd) for r in records)
    for i in range(1, len(units)):
        if xcd_of[units[i]] != xcd_of[units[i - 1]]:
            ax.axhline(i - 0.5, color="grey", linewidth=0.6)
    roles_present = {role for role, _ in spans}
    ax.set_xlabel("time (us)")
    ax.set_ylabel("CU (lines separate XCDs)" if len(set(xcd_of.values())) > 1 else "CU")
    ax.set_ylim(len(units) - 0.5, -0.5)
    if len(units) <= 40:
        ax.set_yticks(range(len(units)), [str(u) for u in units])
    ax.set_title(title)
    ax.legend(
        handles=[Patch(color=ROLE_COLOURS[r], label=r) for r in ROLES if r in roles_present],
        loc="upper right",
        fontsize="small",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
