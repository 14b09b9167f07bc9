"""Schedule hooks in GemmConfig and the simulator, and the work a schedule loses.

The presets themselves are contract functions, tested in Python and jitted in
``tests/test_tiling.py``; here: that configs and runs apply them (and functions given instead),
that a run reports every (tile, K-range) computed zero times or more than once, and work
stealing's Stream-K tail.
"""

import dataclasses
import pickle
import types

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from invariants import all_problems, coverage_problems

import refsim
from refsim import GemmConfig, tiling
from refsim.result import IdlePrograms, TileCoverage, UnservedCounter

# The issue's launch: 5120 x 5120 in 256 x 256 tiles (20 x 20 = 400 tiles) on an MI300X's 304
# CUs and 8 XCDs, 8 counters per XCD, counter ranges split per XCD then per slot.
ISSUE = dict(
    m=5120,
    n=5120,
    k=512,
    strategy="work_stealing",
    counters_per_xcd=8,
    ws_counter_ranges="per-xcd",
    device="mi300x",
)


def issue_counter(hw_pid, logical_pid, config):
    """The issue's kernel: the XCD from the hardware id, the slot within it as ws_counter takes
    it (``(pid // XCDS) % COUNTERS_PER_XCD``) but from the XCD-remapped id."""
    slot = (logical_pid // config.counter_xcds) % config.counters_per_xcd
    return (hw_pid % config.counter_xcds) * config.counters_per_xcd + slot


def test_with_the_real_kernels_stream_k_tail_the_issues_94_tiles_are_lost():
    """The kernel of the issue steals 304 tiles and splits the remaining 400 % 304 = 96
    Stream-K style: each XCD's 38 stolen tiles give its slots 5 each (slot 7: 3), so the 20
    counters never served hold 17 * 5 + 3 * 3 = 94 tiles -- the issue's count."""
    result = refsim.simulate(**ISSUE, ws_counter_map=issue_counter, sk_tiles=400 % 304)
    unserved = [e for e in result.coverage_errors if isinstance(e, UnservedCounter)]
    never = [e for e in result.coverage_errors if isinstance(e, TileCoverage)]
    assert (len(unserved), len(never)) == (20, 94)
    assert sum(e.end - e.begin for e in unserved) == 94


def slot_modulo_counter(hw_pid, logical_pid, config):
    """The same with the slot ``logical_pid % COUNTERS_PER_XCD``."""
    slot = logical_pid % config.counters_per_xcd
    return (hw_pid % config.counter_xcds) * config.counters_per_xcd + slot


def test_the_issues_counter_map_loses_20_counters_and_122_tiles():
    """20 of the 64 counters are never served, as the issue measured, and their 122 tiles are
    never computed.

    The remap gives XCD ``x`` the 38 consecutive logical ids ``38x .. 38x + 37``; their slots
    ``(lp // 8) % 8`` run through only 5 or 6 of the 8 values (XCD 0: ids 0..37 give slots
    0..4), so 3 + 2 + 2 + 3 + 3 + 2 + 2 + 3 = 20 counters get no program. Each XCD owns 50
    tiles, 7 per counter slot and 1 for slot 7: 17 lost counters in slots 0..6 hold 7 tiles and
    3 in slot 7 hold 1, 17 * 7 + 3 = 122 tiles. (The issue's 94 is the real kernel, which
    also splits its last ``400 % 304`` tiles Stream-K: see the next test.) The slot taken as
    ``lp % 8`` instead reaches every residue within each XCD's 38 ids: nothing is lost.
    """
    result = refsim.simulate(**ISSUE, ws_counter_map=issue_counter)
    unserved = [e for e in result.coverage_errors if isinstance(e, UnservedCounter)]
    never = [e for e in result.coverage_errors if isinstance(e, TileCoverage)]
    assert len(unserved) == 20 and result.config.num_counters == 64
    assert [e.counter for e in unserved] == [
        5, 6, 7, 10, 11, 16, 23, 27, 28, 29, 32, 33, 34, 45, 46, 50, 51, 56, 62, 63
    ]  # fmt: skip
    assert sum(e.end - e.begin for e in unserved) == 122
    assert len(never) == 122 and all(e.times == 0 and (e.k_begin, e.k_end) == (0, 8) for e in never)
    assert {e.tile for e in never} == {t for e in unserved for t in range(e.begin, e.end)}
    assert len(result.records) == 400 - 122
    idle = next(e for e in result.coverage_errors if isinstance(e, IdlePrograms))
    drawn = {r.program for r in result.records}
    assert set(idle.programs) == set(range(304)) - drawn
    assert str(unserved[0]) == (
        "counter 5 never served: no program draws from it, so its tiles [35, 42) are never taken"
    )
    assert str(never[0]) == "tile 35 K-iterations [0, 8): never computed"
    assert result.tflops is None and result.summary_dict()["tflops"] is None
    assert "no TFLOP/s: work lost" in result.summary()
    assert "TFLOP/s" not in result.summary().replace("no TFLOP/s", "")
    assert "work lost: 20 counters never served" in result.summary()

    preset = refsim.simulate(**ISSUE, ws_counter_map="hardware-xcd-logical-slot")
    assert preset.coverage_errors == result.coverage_errors
    assert refsim.simulate(**ISSUE, ws_counter_map=slot_modulo_counter).coverage_errors == []


@st.composite
def unserving_maps(draw):
    """A small work-stealing config and a counter map given as a table over hardware ids."""
    xcds = draw(st.sampled_from([1, 2, 4]))
    counters_per_xcd = draw(st.integers(1, 3))
    grid = xcds * draw(st.integers(counters_per_xcd, 6))
    config = GemmConfig(
        16 * draw(st.integers(1, 12)),
        16 * draw(st.integers(1, 12)),
        32,
        block_m=16,
        block_n=16,
        block_k=16,
        strategy="work_stealing",
        cus=grid,
        xcds=xcds,
        device=dataclasses.replace(refsim.PROFILES["mi300x"], cus=64),
        counters_per_xcd=counters_per_xcd,
        ws_counter_ranges=draw(st.sampled_from(["even", "per-xcd"])),
        sk_tiles=draw(st.sampled_from([0, 1])),
    )
    table = draw(st.lists(st.integers(0, config.num_counters - 1), min_size=grid, max_size=grid))
    return config.replace(ws_counter_map=lambda hw_pid, logical_pid, config: table[hw_pid])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(unserving_maps())
def test_a_counter_no_program_draws_from_is_reported_with_its_tiles(config):
    """Any counter map that leaves a counter with tiles unserved yields coverage errors naming
    that counter and its tiles; a map that serves every such counter loses nothing."""
    result = refsim.simulate(config)
    served = set(result.plan.counters)
    lost = [
        (c, begin, end)
        for c, (begin, end) in enumerate(result.plan.counter_ranges)
        if end > begin and c not in served
    ]
    reported = [e for e in result.coverage_errors if isinstance(e, UnservedCounter)]
    assert [(e.counter, e.begin, e.end) for e in reported] == lost
    never = {e.tile for e in result.coverage_errors if isinstance(e, TileCoverage)}
    assert never == {t for _, begin, end in lost for t in range(begin, end)}
    assert bool(result.coverage_errors) == bool(lost) == bool(coverage_problems(result))
    assert result.deadlock is None


DEFAULT_RUNS = [
    dict(m=8192, n=8192, k=8192),
    dict(m=5120, n=5120, k=1024),
    dict(m=1024, n=1024, k=8192),  # fewer tiles than CUs: most programs take nothing
    dict(m=1000, n=700, k=300, device="h100"),
]


@pytest.mark.parametrize("strategy", refsim.STRATEGIES)
@pytest.mark.parametrize("shape", DEFAULT_RUNS, ids=lambda s: f"{s['m']}x{s['n']}x{s['k']}")
def test_the_default_schedules_lose_nothing(strategy, shape):
    result = refsim.simulate(**shape, strategy=strategy)
    assert result.coverage_errors == []
    assert result.tflops > 0 and "work lost" not in result.summary()
    assert result.summary_dict()["coverage_errors"] == []


# --------------------------------------------------------------------------------------------
# The hooks reach the run: presets by name, functions given instead, checked where they apply.


def test_the_remainder_split_leaves_only_the_partial_wave_to_stream_k():
    """400 tiles on 304 programs: one DP wave, 96 SK tiles (two-tile would make all 400 SK)."""
    shape = dict(m=5120, n=5120, k=1024)
    assert GemmConfig(**shape).sk_tiles == 400
    result = refsim.simulate(**shape, sk_hybrid="remainder")
    assert (result.config.dp_tiles, result.config.sk_tiles) == (304, 96)
    assert sorted({r.tile for r in result.records if r.role != "dp"}) == list(range(304, 400))
    assert all_problems(result) == []


def test_a_split_rule_of_ones_own_decides_sk_tiles_and_is_shown_by_name():
    def quarter(total_tiles, num_programs):
        return total_tiles // 4

    config = GemmConfig(5120, 5120, 1024, sk_hybrid=quarter)
    assert (config.sk_tiles, config.dp_tiles) == (100, 300)
    assert config.replace(m=2560).sk_tiles == 50  # derived again for the new size
    result = refsim.simulate(config)
    summary = result.summary_dict()
    assert summary["sk_hybrid"].endswith("quarter") and summary["sk_tiles"] == 100
    assert "sk_hybrid test_a_split_rule_of_ones_own" in result.summary()
    assert all_problems(result) == []


def reversed_order(logical_pid, step, config):
    """Every program walks its strided tiles last one first."""
    count = tiling.persistent_tile_count(logical_pid, config.total_tiles, config.grid)
    return tiling.persistent_tile(logical_pid, count - 1 - step, config.grid)


@pytest.mark.parametrize(
    "tile_order, program_1",
    [("strided", [1, 5, 9]), ("contiguous", [3, 4, 5]), (reversed_order, [9, 5, 1])],
)
def test_tile_order_decides_each_programs_tiles(tile_order, program_1):
    """10 tiles on 4 programs (no XCD remap): program 1's tiles in each order."""
    result = refsim.simulate(
        160, 16, 32, 4, strategy="persistent", xcds=1, tile_order=tile_order,
        block_m=16, block_n=16, block_k=16,
    )  # fmt: skip
    assert [r.tile for r in result.records if r.program == 1] == program_1
    assert all_problems(result) == []


def test_a_tile_order_that_repeats_tiles_is_work_lost_and_duplicated():
    """Every program computing tile 0: tile 0 computed 4 times, the others never."""
    result = refsim.simulate(
        64, 16, 32, 4, strategy="data_parallel", xcds=1,
        tile_order=lambda logical_pid, step, config: 0, block_m=16, block_n=16, block_k=16,
    )  # fmt: skip
    assert [str(e) for e in result.coverage_errors] == [
        "tile 0 K-iterations [0, 2): computed 4 times",
        "tile 1 K-iterations [0, 2): never computed",
        "tile 2 K-iterations [0, 2): never computed",
        "tile 3 K-iterations [0, 2): never computed",
    ]
    assert (
        "work lost: 3 tile K-ranges never computed, 1 tile K-range computed more than once"
    ) in result.summary()


def test_coverage_errors_name_partial_k_ranges():
    """A hook-free way to lose part of a tile: a Stream-K owner that never ran. One CU, two
    programs, owner-waits: the deadlock leaves program 1's K-range of tile 0 uncomputed."""
    result = refsim.simulate(
        16, 16, 48, 1, xcds=1, grid=2, sk_hybrid="one-wave", block_m=16, block_n=16, block_k=16
    )
    assert result.deadlock is not None and result.tflops == 0.0
    assert result.coverage_errors == [
        IdlePrograms((1,)),
        TileCoverage(0, 2, 3, 0),
    ]
    assert "programs that took nothing: 1" in result.summary()


@pytest.mark.parametrize(
    "options, message",
    [
        (
            dict(strategy="work_stealing", ws_counter_map=lambda hw_pid, lp, config: 64),
            "ws_counter_map=<lambda>: program 0 (logical 0) got counter 64; the counters are 0..7",
        ),
        (
            dict(strategy="work_stealing", ws_counter_map=lambda hw_pid, lp, config: -1),
            "got counter -1",
        ),
        (
            dict(strategy="work_stealing", ws_counter_map=lambda hw_pid, lp, config: 1.0),
            "got counter 1.0",
        ),
        (
            dict(strategy="work_stealing", ws_counter_ranges=lambda counter, config: (0, 65)),
            "ws_counter_ranges=<lambda>: counter 0 got (0, 65); a range is (begin, end) with "
            "0 <= begin <= end <= 64",
        ),
        (
            dict(strategy="work_stealing", ws_counter_ranges=lambda counter, config: (3, 2)),
            "counter 0 got (3, 2)",
        ),
        (
            dict(strategy="work_stealing", sk_tiles=4, ws_counter_ranges=lambda c, config: (0, 64)),
            "<= 60",  # the counters hand out only the tiles before the Stream-K tail
        ),
        (
            dict(strategy="persistent", tile_order=lambda lp, step, config: 64),
            "tile_order=<lambda>: program 0 step 0 got tile 64; the tiles are 0..63",
        ),
    ],
)
def test_a_hook_returning_a_value_out_of_range_is_one_line_at_simulate_time(options, message):
    config = GemmConfig(2048, 2048, 64, **options)  # 64 tiles; built without complaint
    with pytest.raises(ValueError) as excinfo:
        refsim.simulate(config)
    assert message in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_hooks_get_the_configs_schedule_integers():
    seen = []

    def spy(hw_pid, logical_pid, config):
        seen.append((hw_pid, logical_pid, config))
        return tiling.ws_counter_hardware(hw_pid, logical_pid, config)

    config = GemmConfig(2048, 2048, 64, strategy="work_stealing", counters_per_xcd=2)
    result = refsim.simulate(config.replace(ws_counter_map=spy))
    assert [(hw, lp) for hw, lp, _ in seen] == [
        (pid, config.logical_program(pid)) for pid in range(304)
    ]
    assert {c for _, _, c in seen} == {config.schedule_config}
    assert config.schedule_config == tiling.ScheduleConfig(
        grid=304, xcds=8, num_pid_m=8, num_pid_n=8, group_m=8, total_tiles=64,
        iters_per_tile=1, dp_tiles=64, sk_tiles=0, counter_xcds=8, counters_per_xcd=2,
        num_counters=16,
    )  # fmt: skip
    assert result.records == refsim.simulate(config).records
    assert GemmConfig(64, 64, 64, strategy="work_stealing", global_counter=True).schedule_config[
        -3:
    ] == (1, 1, 1)


def test_configs_with_hooks_compare_replace_and_summarise():
    def order(logical_pid, step, config):
        return tiling.persistent_tile(logical_pid, step, config.grid)

    config = GemmConfig(2048, 2048, 64, strategy="persistent", tile_order=order)
    assert config == GemmConfig(2048, 2048, 64, strategy="persistent", tile_order=order)
    assert config != GemmConfig(2048, 2048, 64, strategy="persistent")
    assert config.replace(m=4096).tile_order is order
    assert config.replace(strategy="data_parallel").tile_order is order
    result = refsim.simulate(config)
    assert result.summary_dict()["tile_order"] == order.__qualname__
    assert f"tile_order {order.__qualname__}" in result.summary()
    default = refsim.simulate(config.replace(tile_order="strided"))
    assert default.records == result.records
    assert default.summary_dict()["tile_order"] == "strided"
    assert "tile_order" not in default.summary()  # a default is not spelled out


# --------------------------------------------------------------------------------------------
# Work stealing with a Stream-K tail: the last sk_tiles tiles split over the grid.


def tail_run(fixup, **options):
    options = dict(
        dict(
            m=96, n=64, k=160, cus=4, xcds=2, strategy="work_stealing", sk_tiles=5,
            block_m=16, block_n=16, block_k=16, fixup=fixup,
        ),
        **options,
    )  # fmt: skip
    return refsim.simulate(**options)


@pytest.mark.parametrize("fixup", refsim.FIXUPS)
def test_work_stealing_steals_the_first_tiles_then_splits_the_tail(fixup):
    """24 tiles of 10 K-iterations: counters hand out tiles 0..18, then each of the 4
    programs runs its quarter of the 50 SK iterations of tiles 19..23."""
    result = tail_run(fixup)
    config = result.config
    assert (config.dp_tiles, config.sk_tiles, config.fixup) == (19, 5, fixup)
    assert result.plan.counter_ranges == ((0, 9), (9, 19))
    stolen = [r for r in result.records if r.role == "ws"]
    assert sorted(r.tile for r in stolen) == list(range(19))
    tail = [r for r in result.records if r.role != "ws"]
    assert {r.tile for r in tail} == set(range(19, 24))
    assert all(r.ticket == r.counter == -1 for r in tail)
    for program in range(4):
        planned = result.plan.programs[program]
        ran = [r for r in result.records if r.program == program]
        steps = len(ran) - len(planned)
        assert [r.role for r in ran[:steps]] == ["ws"] * steps
        assert [(r.tile, r.k_begin, r.k_end, r.step) for r in ran[steps:]] == [
            (i.tile, i.k_begin, i.k_end, steps + i.step) for i in planned
        ]
    assert sorted(f.tile for f in result.fixups) == sorted(result.plan.split_tiles)
    assert result.plan.split_tiles and all(f.protocol == fixup for f in result.fixups)
    assert result.deadlock is None and all_problems(result) == []


@pytest.mark.parametrize("fixup", refsim.FIXUPS)
def test_the_tails_numerics_are_the_product(fixup):
    rng = np.random.default_rng(1)
    a = rng.integers(-4, 5, (96, 160)).astype(np.float32)
    b = rng.integers(-4, 5, (160, 64)).astype(np.float32)
    bias = rng.integers(-4, 5, 64).astype(np.float32)
    result = tail_run(fixup, a=a, b=b, bias=bias)
    assert np.array_equal(result.output, a.astype(np.float64) @ b + bias)
    assert {p.tile for p in result.partials} <= set(result.plan.split_tiles)


def test_a_tail_owner_waiting_for_a_program_without_a_slot_is_a_deadlock():
    """One CU, two programs: program 0 steals every tile, then owns the split tail tile and
    waits for program 1's partial, which never gets the CU."""
    result = tail_run("owner-waits", cus=1, xcds=1, grid=2, m=32, n=16, sk_tiles=1)
    assert result.deadlock is not None
    assert result.deadlock.waiting == ((0, 0, 1, 1),) and result.deadlock.undispatched == (1,)
    assert tail_run("last-arriver", cus=1, xcds=1, grid=2, m=32, n=16, sk_tiles=1).deadlock is None


# --------------------------------------------------------------------------------------------
# The XCD remap as a hook: a kernel's own (hw_pid, num_programs, xcds) -> logical_pid.


def reversed_ids(hw_pid, num_programs, xcds):
    """A remap of one's own: the ids backwards."""
    return num_programs - 1 - hw_pid


def streamk_tail(**options):
    """Work stealing of 16 tiles on 4 programs, with a Stream-K tail of 3."""
    return GemmConfig(
        64, 64, 64, block_m=16, block_n=16, block_k=16, cus=4, xcds=2,
        strategy="work_stealing", sk_tiles=3, fixup="last-arriver", **options,
    )  # fmt: skip


def test_a_remap_function_decides_the_logical_ids_the_plan_and_the_run_use():
    """Program ``p`` is logical program ``3 - p``: its Stream-K iterations are those the built-in
    remap gives the program it maps to ``3 - p``."""
    config = streamk_tail(xcd_remap=reversed_ids)
    assert config.logical_programs == (3, 2, 1, 0)
    assert [config.logical_program(pid) for pid in range(4)] == [3, 2, 1, 0]
    plain = streamk_tail(xcd_remap=False)
    remapped, identity = refsim.build_plan(config), refsim.build_plan(plain)
    tail = lambda plan, pid: [(i.tile, i.k_begin, i.k_end) for i in plan.programs[pid]]
    assert all(tail(remapped, pid) == tail(identity, 3 - pid) for pid in range(4))
    assert {t: s.programs for t, s in remapped.split_tiles.items()} == {
        t: tuple(3 - p for p in s.programs) for t, s in identity.split_tiles.items()
    }
    result = refsim.simulate(config)
    assert result.coverage_errors == [] and all_problems(result) == []
    assert "xcd_remap reversed_ids" in result.summary().splitlines()[1]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(xcd_remap=lambda hw_pid, n, xcds: hw_pid + 1), "program 3 got logical id 4; the ids are 0..3"),
        (dict(xcd_remap=lambda hw_pid, n, xcds: hw_pid % 2), "programs 0 and 2 both got logical id 0"),
        (dict(xcd_remap=lambda hw_pid, n, xcds: float(hw_pid)), "program 0 got logical id 0.0"),
    ],
)  # fmt: skip
def test_a_remap_that_is_no_permutation_is_one_line_at_simulate_time(options, message):
    config = streamk_tail(**options)  # built without calling it
    with pytest.raises(ValueError) as excinfo:
        refsim.simulate(config)
    assert message in str(excinfo.value) and "\n" not in str(excinfo.value)
    assert str(excinfo.value).startswith("xcd_remap=<lambda>: ")


def test_a_remap_function_takes_no_chunk_and_has_no_remap_code():
    with pytest.raises(ValueError, match=r"^xcd_chunk=2: chunks the built-in remap; the function"):
        streamk_tail(xcd_remap=reversed_ids, xcd_chunk=2)
    with pytest.raises(ValueError, match=r"^xcd_remap='yes': must be True, False or a function"):
        streamk_tail(xcd_remap="yes")
    with pytest.raises(ValueError, match="no REMAP code"):
        _ = streamk_tail(xcd_remap=reversed_ids).remap_mode
    with pytest.raises(ValueError, match="the kernels follow only the built-in remaps"):
        from kernels.launch import _check_schedule

        _check_schedule(GemmConfig(64, 64, 64, strategy="persistent", xcd_remap=reversed_ids))


def test_configs_with_hook_functions_pickle_by_reference():
    config = streamk_tail(xcd_remap=reversed_ids, ws_ticket_tile=backwards_tickets)
    again = pickle.loads(pickle.dumps(config))
    assert again == config and again.xcd_remap is reversed_ids
    assert again.logical_programs == config.logical_programs


# --------------------------------------------------------------------------------------------
# Which tile a ticket names: ws_ticket_tile.


def backwards_tickets(counter, ticket, config):
    """A permutation of each even range: its tickets hand out its tiles last first."""
    return tiling.ws_range_even(counter, config)[1] - 1 - ticket


def test_tickets_name_tiles_in_order_by_default_and_by_the_hook_given():
    config = streamk_tail()
    assert config.ws_ticket_tile == "in-order"
    assert [config.ticket_tile(1, t) for t in range(7)] == list(range(6, 13))
    backwards = config.replace(ws_ticket_tile=backwards_tickets)
    assert [backwards.ticket_tile(1, t) for t in range(7)] == list(range(12, 5, -1))
    result = refsim.simulate(backwards)
    stolen = [r for r in result.records if r.role == "ws"]
    assert all(r.tile == backwards.ticket_tile(r.counter, r.ticket) for r in stolen)
    assert sorted(r.tile for r in stolen) == list(range(13))
    assert result.coverage_errors == [] and all_problems(result) == []
    assert result.summary_dict()["ws_ticket_tile"] == "backwards_tickets"
    assert "ws_ticket_tile backwards_tickets" in result.summary().splitlines()[1]


def test_refsim_predicts_the_work_a_broken_ticket_permutation_loses():
    """Tickets 2t and 2t + 1 of a counter both name tile ``begin + t``: counter 0's range
    [0, 6) has tiles 0..2 computed twice and 3..5 never; counter 1's [6, 13) has 6..8 twice, 9
    once (its odd seventh ticket) and 10..12 never."""

    def halved(counter, ticket, config):
        return tiling.ws_range_even(counter, config)[0] + ticket // 2

    result = refsim.simulate(streamk_tail(ws_ticket_tile=halved))
    twice = sorted(
        e.tile for e in result.coverage_errors if isinstance(e, TileCoverage) and e.times == 2
    )
    never = sorted(
        e.tile for e in result.coverage_errors if isinstance(e, TileCoverage) and e.times == 0
    )
    assert (twice, never) == ([0, 1, 2, 6, 7, 8], [3, 4, 5, 10, 11, 12])
    assert coverage_problems(result)


@pytest.mark.parametrize(
    ("hook", "ticket", "message"),
    [
        (lambda counter, ticket, config: 13, 0, "ws_ticket_tile=<lambda>: ticket 0 of counter 0 got tile 13; the counters hand out tiles 0..12"),
        (lambda counter, ticket, config: -1, 0, "got tile -1"),
        ("in-order", 6, "ticket 6 of counter 0: it hands out tickets 0..5"),
    ],
)  # fmt: skip
def test_a_ticket_naming_no_tile_the_counters_hand_out_is_one_line(hook, ticket, message):
    config = streamk_tail(ws_ticket_tile=hook)
    with pytest.raises(ValueError) as excinfo:
        config.ticket_tile(0, ticket)
    assert message in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_the_suites_replay_and_invariants_follow_the_ticket_hook():
    """The replay rebuilds each stolen tile from (counter, ticket) by the hook; records that
    follow it pass the invariants, the same records described in order do not."""
    from conformance.checks import check_work_stealing
    from conformance.harness import ticket_records

    config = streamk_tail(ws_ticket_tile=backwards_tickets)
    records = refsim.simulate(config).records
    scrambled = [r._replace(tile=0, pid_m=0, pid_n=0) if r.role == "ws" else r for r in records]
    assert ticket_records(config, scrambled) == [r for r in records if r.role == "ws"]
    run = types.SimpleNamespace(records=records)
    assert check_work_stealing(config, run).passed
    in_order = check_work_stealing(config.replace(ws_ticket_tile="in-order"), run)
    assert not in_order.passed and "which names tile" in in_order.reasons[0]
