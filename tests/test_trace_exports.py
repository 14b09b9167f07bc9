"""Tests of the trace exports: the Chrome trace JSON that Perfetto reads, the Gantt PNG, and the
:class:`refsim.WorkRecord` they are built from."""

import collections
import dataclasses
import itertools
import json
import re

import pytest

import refsim
from refsim import PROFILES, WorkRecord, trace
from refsim.trace import ROLES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WORK_RECORD_FIELDS = (
    "program",
    "step",
    "tile",
    "pid_m",
    "pid_n",
    "k_begin",
    "k_end",
    "role",
    "unit",
    "xcd",
    "t_start_us",
    "t_end_us",
    "ticket",
    "counter",
    "finalizes",
    "kernel",
)
B64 = dict(block_m=64, block_n=64, block_k=64)

# Small runs covering every role: 576 x 512 = 9 x 8 = 72 tiles of 64 x 64, 8 K-iterations each.
RUNS = {
    "streamk-mi300x": dict(strategy="streamk", cus=16),  # 72 % 16 = 8: 24 SK tiles
    "streamk-turnstile": dict(strategy="streamk", cus=16, fixup="turnstile"),
    "data_parallel-mi300x": dict(strategy="data_parallel", cus=16),
    "split_k-mi300x": dict(strategy="split_k", cus=16, split_k=2),  # a reduce launch too
    "work_stealing-mi300x": dict(strategy="work_stealing", cus=16, counters_per_xcd=2),
    "persistent-h100": dict(strategy="persistent", device="h100", cus=16),
}


@pytest.fixture(scope="module")
def results():
    return {name: refsim.simulate(576, 512, 512, **B64, **kwargs) for name, kwargs in RUNS.items()}


def _no_nan(constant):
    raise AssertionError(f"{constant} is not valid JSON (Perfetto rejects it)")


def load_trace(result, path):
    result.to_chrome_trace(path)
    with open(path) as f:
        return json.load(f, parse_constant=_no_nan)


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def test_runs_cover_every_role(results):
    roles = {r.role for result in results.values() for r in result.records}
    assert roles == set(ROLES)
    assert all(result.deadlock is None for result in results.values())


# --------------------------------------------------------------------------------------------
# Chrome trace JSON.


@pytest.mark.parametrize("run", sorted(RUNS))
def test_chrome_trace_top_level_is_an_object_with_trace_events(results, run, tmp_path):
    doc = load_trace(results[run], tmp_path / "trace.json")
    assert isinstance(doc, dict)
    assert isinstance(doc["traceEvents"], list) and doc["traceEvents"]
    assert doc.get("displayTimeUnit", "ms") in ("ms", "ns")
    assert {e["ph"] for e in doc["traceEvents"]} == {"X", "M"}


@pytest.mark.parametrize("run", sorted(RUNS))
def test_complete_events_are_well_formed(results, run, tmp_path):
    doc = load_trace(results[run], tmp_path / "trace.json")
    complete = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    for event in complete:
        assert isinstance(event["name"], str) and event["name"]
        assert is_number(event["ts"]) and event["ts"] >= 0
        assert is_number(event["dur"]) and event["dur"] >= 0
        assert is_int(event["pid"]) and is_int(event["tid"])
        assert set(event["args"]) >= set(WORK_RECORD_FIELDS)


@pytest.mark.parametrize("run", sorted(RUNS))
def test_one_complete_event_per_record_with_its_times_and_fields(results, run, tmp_path):
    result = results[run]
    doc = load_trace(result, tmp_path / "trace.json")
    complete = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert len(complete) == len(result.records)
    for event, record in zip(complete, result.records):
        assert event["ts"] == record.t_start_us
        assert event["dur"] == record.t_end_us - record.t_start_us
        assert (event["pid"], event["tid"]) == (record.xcd, record.unit)
        assert event["args"] == record._asdict()


@pytest.mark.parametrize("run", sorted(RUNS))
def test_metadata_names_every_process_and_thread_used(results, run, tmp_path):
    doc = load_trace(results[run], tmp_path / "trace.json")
    events = doc["traceEvents"]
    used_pids = {e["pid"] for e in events if e["ph"] == "X"}
    used_threads = {(e["pid"], e["tid"]) for e in events if e["ph"] == "X"}
    process_names = {
        e["pid"]: e["args"]["name"]
        for e in events
        if e["ph"] == "M" and e["name"] == "process_name"
    }
    thread_names = {
        (e["pid"], e["tid"]): e["args"]["name"]
        for e in events
        if e["ph"] == "M" and e["name"] == "thread_name"
    }
    assert used_pids <= set(process_names)
    assert used_threads <= set(thread_names)
    names = list(process_names.values()) + list(thread_names.values())
    assert all(isinstance(n, str) and n for n in names)
    assert len(set(thread_names.values())) == len(thread_names)  # distinguishable tracks
    assert {e["name"] for e in events if e["ph"] == "M"} <= {"process_name", "thread_name"}


@pytest.mark.parametrize("run", sorted(RUNS))
def test_other_data_carries_the_summary(results, run, tmp_path):
    result = results[run]
    doc = load_trace(result, tmp_path / "trace.json")
    assert doc["otherData"] == json.loads(json.dumps(result.summary_dict()))


def partial_overlaps(records):
    """Pairs of slices on one (pid, tid) track of the Chrome trace that overlap without nesting."""
    tracks = collections.defaultdict(list)
    for e in trace.chrome_trace(records)["traceEvents"]:
        if e["ph"] == "X":
            tracks[(e["pid"], e["tid"])].append((e["ts"], e["ts"] + e["dur"]))
    bad = []
    for spans in tracks.values():
        spans.sort(key=lambda s: (s[0], -s[1]))
        for (s1, e1), (s2, e2) in itertools.pairwise(spans):
            if s2 < e1 < e2:
                bad.append(((s1, e1), (s2, e2)))
    return bad


@pytest.mark.parametrize("run", sorted(RUNS))
def test_slices_on_one_track_nest_or_follow_each_other(results, run):
    """Complete events on one thread must nest (Perfetto's rule); one slot per CU never overlaps."""
    assert partial_overlaps(results[run].records) == []


def test_slices_nest_when_several_programs_share_a_cu():
    """Programs resident together on a CU get a thread each, named by slot."""
    profile = dataclasses.replace(PROFILES["mi300x"], name="two-per-cu", resident_per_cu=2)
    result = refsim.simulate(512, 512, 512, device=profile, cus=16, strategy="data_parallel", **B64)
    assert partial_overlaps(result.records) == []
    names = [
        e["args"]["name"]
        for e in trace.chrome_trace(result.records)["traceEvents"]
        if e["name"] == "thread_name"
    ]
    assert "CU 0 slot 1" in names


def test_chrome_trace_with_a_custom_profile_is_valid_json(tmp_path):
    custom = dataclasses.replace(PROFILES["h100"], name="h100-custom")
    result = refsim.simulate(256, 256, 256, device=custom, **B64)
    doc = load_trace(result, tmp_path / "trace.json")
    assert doc["otherData"]["device"] == "h100-custom"
    assert sum(e["ph"] == "X" for e in doc["traceEvents"]) == len(result.records)


# --------------------------------------------------------------------------------------------
# Gantt PNG.


def read_png(path):
    import matplotlib.image

    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    return matplotlib.image.imread(path)


def colour_pixels(image, hex_colour, tolerance=2 / 255):
    import numpy as np

    rgb = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((abs(image[..., :3] - rgb) <= tolerance).all(axis=-1).sum())


def test_gantt_is_a_png_of_plausible_size_with_bars(results, tmp_path):
    result = results["streamk-mi300x"]
    path = tmp_path / "gantt.png"
    result.plot_gantt(path)
    image = read_png(path)
    height, width = image.shape[:2]
    assert width == 1200  # 12 in at 100 dpi
    assert 300 <= height <= 4000
    for role in ("dp", "sk-owner", "sk-contributor"):
        assert colour_pixels(image, refsim.trace.ROLE_COLOURS[role]) > 100, role


def bar_rows(image):
    """Pixel rows holding any role colour: where the chart has bars."""
    import numpy as np

    rows = np.zeros(image.shape[0], dtype=bool)
    for hex_colour in refsim.trace.ROLE_COLOURS.values():
        rgb = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
        rows |= (abs(image[..., :3] - rgb) <= 2 / 255).all(axis=-1).any(axis=1)
    return np.flatnonzero(rows)


def test_gantt_of_a_304_cu_run(results, tmp_path):
    """All 304 CUs get a row: bars fill the plot from top to bottom, in a bounded image."""
    small = tmp_path / "small.png"
    results["streamk-mi300x"].plot_gantt(small)
    big_result = refsim.simulate(8192, 8192, 256)  # default mi300x: 304 CUs, 1024 tiles
    assert big_result.config.cus == 304 and len({r.unit for r in big_result.records}) == 304
    big = tmp_path / "big.png"
    big_result.plot_gantt(big)
    small_image, big_image = read_png(small), read_png(big)
    height, width = big_image.shape[:2]
    assert width == 1200
    assert small_image.shape[0] <= height <= 4000
    rows = bar_rows(big_image)
    assert rows.size > 0.5 * height  # bars on most pixel rows
    assert rows.max() - rows.min() > 0.6 * height  # from near the top to near the bottom
    assert colour_pixels(big_image, refsim.trace.ROLE_COLOURS["dp"]) > 10_000


# --------------------------------------------------------------------------------------------
# WorkRecord.


def test_work_record_has_exactly_the_documented_fields():
    assert WorkRecord._fields == WORK_RECORD_FIELDS
    assert WorkRecord._field_defaults == {
        "ticket": -1,
        "counter": -1,
        "finalizes": False,
        "kernel": "gemm",
    }
    documented = set(re.findall(r"``([a-z_]+)``", WorkRecord.__doc__))
    assert documented and documented <= set(WORK_RECORD_FIELDS)


def test_work_record_is_immutable(results):
    record = results["streamk-mi300x"].records[0]
    with pytest.raises(AttributeError):
        record.tile = 99
    with pytest.raises(TypeError):
        record[2] = 99
    assert record.tile == results["streamk-mi300x"].records[0].tile
    assert hash(record) == hash(WorkRecord(*record))


def test_work_record_values_are_plain_json_types(results):
    for result in results.values():
        for record in result.records:
            for name, value in record._asdict().items():
                assert isinstance(value, (int, float, str, bool)), (name, value)
            assert record.role in ROLES and record.kernel in ("gemm", "reduce")


def spine_columns(image):
    """Pixel columns holding a long vertical run of dark pixels: the axes frame."""
    import numpy as np

    dark = (image[..., :3] < 0.2).all(axis=-1)
    return np.flatnonzero(dark.sum(axis=0) > 0.5 * image.shape[0])


def test_gantt_legend_sits_right_of_the_bars(results, tmp_path):
    path = tmp_path / "gantt.png"
    results["streamk-mi300x"].plot_gantt(path)
    image = read_png(path)
    right_spine = spine_columns(image).max()
    outside = image[:, right_spine + 2 :]
    for role in ("dp", "sk-owner", "sk-contributor"):
        assert colour_pixels(outside, refsim.trace.ROLE_COLOURS[role]) > 20, role


def test_gantt_separates_back_to_back_items(results, tmp_path):
    """A CU running items back to back shows a thin light line between the bars."""
    import numpy as np

    path = tmp_path / "gantt.png"
    results["persistent-h100"].plot_gantt(path)
    image = read_png(path)
    rgb = np.array([int(ROLE_COLOURS_DP[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    rows_with_separators = 0
    for line in (abs(image[..., :3] - rgb) <= 2 / 255).all(axis=-1):
        columns = np.flatnonzero(line)
        gaps = np.diff(columns)
        rows_with_separators += bool(((gaps > 1) & (gaps <= 4)).any())
    assert rows_with_separators > 50


ROLE_COLOURS_DP = refsim.trace.ROLE_COLOURS["dp"]


def test_gantt_title_names_the_fixup_and_the_deadlock(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(trace, "plot_gantt", lambda *args, **kwargs: calls.append(kwargs))
    refsim.simulate(576, 512, 512, cus=16, fixup="turnstile", **B64).plot_gantt("x.png")
    deadlocked = refsim.simulate(64, 64, 4096, 1, xcds=1, grid=2, sk_hybrid="one-wave", **B64)
    deadlocked.plot_gantt("y.png")
    assert calls[0]["title"].startswith("streamk (turnstile) 576x512x512 on mi300x")
    assert (calls[0]["waits"], calls[0]["stalled_at"]) == ((), None)
    assert "deadlock at" in calls[1]["title"]
    assert calls[1]["waits"] == [(0, 1)]
    assert calls[1]["stalled_at"] == deadlocked.deadlock.at_us


def test_gantt_of_a_deadlock_marks_who_waits_on_whom():
    """An arrow from each waiting program to the awaited one, or a note that it never started."""
    import matplotlib.pyplot as plt

    record = WorkRecord(0, 0, 0, 0, 0, 0, 2, "sk-owner", 0, 0, 1.0, 4.0)
    other = record._replace(program=1, k_begin=2, k_end=4, role="sk-contributor", unit=1)
    fig, ax = plt.subplots()
    trace._draw_waits(ax, [record, other], {0: 0, 1: 1}, [(0, 1), (1, 2)], stalled_at=4.0)
    arrows = [t for t in ax.texts if getattr(t, "arrow_patch", None) is not None]
    notes = sorted(t.get_text() for t in ax.texts if t.get_text())
    plt.close(fig)
    assert len(arrows) == 1
    assert notes == ["P0 waits for P1", "P1 waits for P2 (never started)", "deadlock at 4.00 us"]


def test_gantt_png_of_a_deadlocked_run(tmp_path):
    deadlocked = refsim.simulate(64, 64, 4096, 1, xcds=1, grid=2, sk_hybrid="one-wave", **B64)
    path = tmp_path / "deadlock.png"
    deadlocked.plot_gantt(path)
    image = read_png(path)
    red = (image[..., 0] > 0.8) & (image[..., 1] < 0.2) & (image[..., 2] < 0.2)
    assert red.sum() > 100  # the stall line and the note


def test_gantt_refuses_an_unknown_format(results, tmp_path):
    with pytest.raises(ValueError, match="png, svg, pdf"):
        results["streamk-mi300x"].plot_gantt(tmp_path / "gantt.jpg")
    assert not (tmp_path / "gantt.jpg").exists()
