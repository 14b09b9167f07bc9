"""Bring your own kernel: a Triton kernel written outside the project, adapted in a few lines
(conformance.adapter.adapt), recording its work with conformance.worklog, checked by the suite;
and the work-stealing checks under refsim's schedule hooks (counter maps, ranges, a tail)."""

import functools
import types

import numpy as np
import pytest
import torch
import triton
import triton.language as tl

import refsim
from conformance.__main__ import main
from conformance.adapter import adapt
from conformance.cases import Case, follow, quick_set
from conformance.checking import check_case
from conformance.checks import check_work_stealing, check_work_stealing_tail
from conformance.harness import POISON, expected_output, ticket_records
from conformance.inputs import integer_inputs
from conformance.worklog import ROLE_DP, WorkLog, record_work
from kernels import contract
from kernels.backend import backend_for, program_order, shuffled_order
from kernels.records import EXTRA_TRACE_ROWS
from kernels.tile import tile_accumulate, tile_epilogue

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


# ------------------------------------------------------------------ the kernel "written elsewhere"


@triton.jit
def contiguous_gemm(
    a_ptr, b_ptr, c_ptr, bias_ptr, M, N, K,
    stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn, stride_bias,
    log_ptr, max_items,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    EVEN_K: tl.constexpr, HAS_BIAS: tl.constexpr, BACKEND: tl.constexpr, RECORD: tl.constexpr,
    STRIDED: tl.constexpr,
):  # fmt: skip
    """Persistent GEMM: program ``pid`` computes one block of consecutive tiles (the first
    ``tiles % grid`` programs one more), in the grouped order; ``STRIDED`` is the bug of taking
    tiles ``pid, pid + grid, ...`` instead (every tile still computed once). The schedule is its
    own; the tile's K-loop and epilogue are the project's shared helpers."""
    pid = tl.program_id(0)
    grid = tl.num_programs(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    tiles = num_pid_m * num_pid_n
    first = pid * (tiles // grid) + tl.minimum(pid, tiles % grid)
    count = tiles // grid + tl.where(pid < tiles % grid, 1, 0)
    iters = tl.cdiv(K, BLOCK_K)
    for step in range(0, count):
        tile = first + step
        if STRIDED:
            tile = pid + step * grid
        pid_m, pid_n = contract.grouped_tile(tile, num_pid_m, num_pid_n, GROUP_M)
        acc = tile_accumulate(
            a_ptr, b_ptr, M, N, K, stride_am, stride_ak, stride_bk, stride_bn, pid_m, pid_n,
            0, iters, BLOCK_M, BLOCK_N, BLOCK_K, EVEN_K, "ieee", BACKEND,
        )  # fmt: skip
        tile_epilogue(
            acc, c_ptr, bias_ptr, M, N, stride_cm, stride_cn, stride_bias, pid_m, pid_n,
            BLOCK_M, BLOCK_N, HAS_BIAS, BACKEND,
        )  # fmt: skip
        if RECORD:
            record_work(
                log_ptr, pid, step, tile, pid_m, pid_n, 0, iters, ROLE_DP, -1, -1, max_items
            )


def launch_contiguous(config, a, b, bias, out, worklog, strided=False, rows_short=0):
    """The kernel's host side: ``config``'s grid and blocks; ``rows_short`` is the bug of telling
    the kernel its log has that many fewer rows per program than it has."""
    log = worklog.tensor if worklog is not None else out
    contiguous_gemm[(config.grid,)](
        a, b, out, bias if bias is not None else out, config.m, config.n, config.k,
        a.stride(0), a.stride(1), b.stride(0), b.stride(1), out.stride(0), out.stride(1),
        bias.stride(0) if bias is not None else 0,
        log, worklog.max_items - rows_short if worklog is not None else 0,
        BLOCK_M=config.block_m, BLOCK_N=config.block_n, BLOCK_K=config.block_k,
        GROUP_M=config.group_m, EVEN_K=config.k % config.block_k == 0,
        HAS_BIAS=bias is not None, BACKEND=backend_for(a.device.type),
        RECORD=worklog is not None, STRIDED=strided,
    )  # fmt: skip


# ------------------------------------------------------------------ the adapter: what a user writes

# The schedule the kernel fixes: persistent, contiguous blocks of tiles, no XCD remap.
FOLLOWS = {"strategy": "persistent", "tile_order": "contiguous", "xcd_remap": False}


def contiguous():
    return adapt("contiguous", launch_contiguous, follows=FOLLOWS, block_dots=True)


def strided_by_mistake():
    buggy = functools.partial(launch_contiguous, strided=True)
    return adapt("strided", buggy, follows=FOLLOWS, block_dots=True)


def short_log_rows():
    """The kernel told a work log one row per program short of its longest program's items."""
    buggy = functools.partial(launch_contiguous, rows_short=EXTRA_TRACE_ROWS + 1)
    return adapt("short-log", buggy, follows=FOLLOWS, block_dots=True)


def not_a_kernel():
    return [contiguous]


@triton.jit
def arrival_kernel(counter_ptr, arrivals_ptr):
    """Each program writes how many programs ran before it."""
    pid = tl.program_id(0)
    tl.store(arrivals_ptr + pid, tl.atomic_add(counter_ptr, 1))


# -------------------------------------------------------------------------------------- the tests

WAVES = Case("contiguous-waves", 100, 20, 64, "persistent", cus=3, dtype="bf16")  # 7 tiles on 3


def test_the_adapted_kernel_passes_the_quick_set_shapes():
    """Every quick-set case as the kernel follows it: distinct ones once, every check passed,
    the tile order among them (read off the work log)."""
    cases, skipped = follow(quick_set(), FOLLOWS)
    assert skipped == []
    assert len({c.name for c in cases}) == len(cases) < len(quick_set())
    kernel = contiguous()
    for case in cases:
        result = check_case(kernel, case, DEVICE, determinism_runs=2)
        checks = {f.check: f for f in result.findings}
        assert result.passed, (case.name, [(f.check, f.reasons) for f in result.findings])
        if case.batch:  # the kernel has no batched path: not run, and said so
            assert [(f.check, f.ran) for f in result.findings] == [("batched calls", False)]
            continue
        assert checks["tile order"].passed and "exact output" in checks


def test_a_wrong_tile_order_is_caught_with_its_cause():
    """The strided bug computes every tile once (the output is right) but not in the order the
    kernel claims to follow: the tile-order check names it."""
    result = check_case(strided_by_mistake(), WAVES, DEVICE, determinism_runs=2)
    checks = {f.check: f for f in result.findings}
    assert checks["exact output"].passed
    assert not checks["tile order"].passed
    assert result.causes == ["wrong tile order"]
    assert "first difference: kernel did ('gemm', 0, 1, 3," in checks["tile order"].reasons[0]


def test_a_work_log_overrun_is_counted_and_nothing_written_past_it():
    """Program 0 of 7 tiles on 3 has 3 work items: in a log of 1 row per program, steps 1 and 2
    of every program overrun (4 in all), and the rows keep only each program's first item."""
    config = WAVES.config().replace(**FOLLOWS, dtype="fp32")
    a, b = (
        torch.ones(config.m, config.k, device=DEVICE),
        torch.ones(config.k, config.n, device=DEVICE),
    )
    log = WorkLog(config, DEVICE, max_items=1)
    launch_contiguous(config, a, b, None, torch.empty(config.m, config.n, device=DEVICE), log)
    assert log.overruns == 4
    assert [(r.program, r.step, r.tile, r.role) for r in log.records()] == [
        (0, 0, 0, "dp"),
        (1, 0, 3, "dp"),
        (2, 0, 5, "dp"),
    ]
    assert WorkLog(config, DEVICE).max_items == 3 + EXTRA_TRACE_ROWS


def test_a_kernel_told_a_short_log_fails_with_record_overrun():
    result = check_case(short_log_rows(), WAVES, DEVICE, determinism_runs=2)
    assert "record overrun" in result.causes
    synchronisation = next(f for f in result.findings if f.check == "synchronisation")
    assert synchronisation.reasons == [
        "1 trace record(s) or event(s) did not fit their buffers and were dropped"
    ]


def test_cases_follow_the_kernels_schedule_or_are_skipped():
    """A case takes the kernel's fixed options and drops those only its own strategy took; one
    those options make invalid is skipped with its reason, identical ones run once."""
    turnstile = next(c for c in quick_set() if c.name == "turnstile-k-small-48x64x8")
    followed = turnstile.following(FOLLOWS)
    assert followed.name == "persistent-k-small-48x64x8"
    assert (followed.strategy, followed.fixup) == ("persistent", None)
    assert dict(followed.options) == {"tile_order": "contiguous", "xcd_remap": False}
    assert followed.following(FOLLOWS) == followed
    tail = {"strategy": "work_stealing", "fixup": "last-arriver"}  # no sk_tiles: nothing to reduce
    cases, skipped = follow(quick_set()[:3], tail)
    assert cases == [] and len(skipped) == 3
    assert "work_stealing splits no tile without sk_tiles" in skipped[0][1]


@pytest.mark.skipif(DEVICE != "cpu", reason="the program order is the interpreter's")
@pytest.mark.parametrize(
    "wait_order, arrivals", [("higher-first", [3, 2, 1, 0]), ("lower-first", [0, 1, 2, 3])]
)
def test_programs_that_wait_run_in_their_order_even_in_shuffled_runs(wait_order, arrivals):
    seen = torch.zeros(4, dtype=torch.int32)

    def launch(config, a, b, bias, out, worklog):
        arrival_kernel[(config.grid,)](torch.zeros(1, dtype=torch.int32), seen)

    kernel = adapt("arrivals", launch, follows={}, wait_order=wait_order)
    config = refsim.GemmConfig(64, 32, 16, strategy="persistent", cus=4, device="h100")
    with program_order(shuffled_order(3)):
        kernel.run(config, torch.zeros(64, 16), torch.zeros(16, 32))
    assert seen.tolist() == arrivals


def test_the_partial_buffer_is_poisoned_before_a_launch_and_copied_after_it():
    buffer = torch.zeros(3, 16, 32, device=DEVICE)
    slot = lambda config, program, tile: program
    kernel = adapt(
        "contiguous",
        launch_contiguous,
        follows=FOLLOWS,
        partials=lambda c: buffer,
        partial_slot=slot,
    )
    config = WAVES.config().replace(**FOLLOWS, dtype="fp32")
    a, b = (
        torch.ones(config.m, config.k, device=DEVICE),
        torch.ones(config.k, config.n, device=DEVICE),
    )
    kernel.poison(torch.device(DEVICE))
    run = kernel.run(config, a, b, trace=True)
    assert (run.partials == POISON).all() and run.partials.data_ptr() != buffer.data_ptr()
    buffer.zero_()
    assert (kernel.run(config, a, b, trace=True).partials == 0).all()  # no poison asked for
    assert run.overruns == 0 and len(run.records) == config.total_tiles
    with pytest.raises(ValueError, match=r"expected float32 \(slots, 16, 32\)"):
        adapt(
            "x", launch_contiguous, follows={}, partials=lambda c: buffer[0], partial_slot=slot
        ).run(config, a, b)


@pytest.mark.parametrize(
    "options, error",
    [
        ({"follows": {"colour": 1}}, "unknown option 'colour'"),
        ({"follows": {"m": 64}}, "unknown option 'm'"),
        ({"follows": {}, "partials": lambda c: None}, "partials and partial_slot together"),
        ({"follows": {}, "wait_order": "random"}, "wait_order='random': accepted values"),
    ],
)
def test_adapt_refuses_what_it_cannot_honour(options, error):
    with pytest.raises((TypeError, ValueError), match=error):
        adapt("x", launch_contiguous, **options)


def _refused(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    return code, lines[0]


BAD_KERNELS = {  # --kernel value -> what the one error line says
    "contiguous": "expected module:function",
    f"{__name__}:contiguous:x": "expected module:function",
    "no_such_module_at_all:contiguous": "cannot import no_such_module_at_all: ModuleNotFoundError",
    f"{__name__}:no_such_factory": f"{__name__} has no function no_such_factory",
    f"{__name__}:not_a_kernel": "not_a_kernel() returned a list, not a KernelUnderTest",
    f"{__name__}:DEVICE": f"{__name__} has no function DEVICE",
}


@pytest.mark.parametrize("spec", sorted(BAD_KERNELS))
def test_a_bad_kernel_option_exits_2_in_one_line(capsys, spec):
    code, line = _refused(capsys, ["--device", "cpu", "--no-mutants", "--kernel", spec])
    assert code == 2
    assert line.startswith(f"conformance: error: --kernel {spec}: "), line
    assert BAD_KERNELS[spec] in line, line


def test_the_cli_checks_a_kernel_in_workers_without_mutants(tmp_path, capsys):
    path = tmp_path / "cases.json"
    path.write_text('[{"name": "w", "m": 100, "n": 20, "k": 64, "cus": 3, "seed": 1}]')
    code = main(
        ["--device", DEVICE, "--cases", str(path), "--kernel", f"{__name__}:strided_by_mistake"]
    )
    printed = capsys.readouterr().out
    assert code == 1
    assert "persistent-w " in printed and "wrong tile order" in printed, printed
    assert "0 of 1 cases passed" in printed and "mutant" not in printed


# ------------------------------------------------------ work stealing under refsim's schedule hooks


def swapped_slots(hw_pid, logical_pid, config):
    """A counter map: the XCD's counters in the opposite slot order to the "hardware" map."""
    xcd = hw_pid % config.counter_xcds
    slot = config.counters_per_xcd - 1 - (hw_pid // config.counter_xcds) % config.counters_per_xcd
    return xcd * config.counters_per_xcd + slot


def _stolen(**options):
    """A work-stealing config (80 x 64 in 16 x 32 tiles: 10) on 4 CUs in 2 XCDs, 2 counters each,
    and refsim's run of it on integer inputs."""
    case = Case("ws", 80, 64, 40, "work_stealing", cus=4, xcds=2, options=tuple(options.items()))
    config = case.config()
    inputs = integer_inputs(case)
    return config, inputs, refsim.simulate(config, a=inputs[0], b=inputs[1], bias=inputs[2])


def test_tickets_replay_through_a_custom_counter_map_and_per_xcd_ranges():
    """Per-XCD ranges are not the even ones here, so replaying a ticket by the even rule would
    put it on another tile; refsim's stolen records pass the invariants and replay to its output,
    and a program drawing from a counter the custom map does not give it is named."""
    config, inputs, sim = _stolen(
        counters_per_xcd=2, ws_counter_map=swapped_slots, ws_counter_ranges="per-xcd"
    )
    ranges = [config.counter_range(c) for c in range(config.num_counters)]
    assert ranges == [(0, 3), (3, 5), (5, 8), (8, 10)]  # even: (0, 2), (2, 5), (5, 7), (7, 10)
    assert [config.counter_of(pid) for pid in range(4)] == [1, 3, 0, 2]
    run = types.SimpleNamespace(records=sim.records)
    assert check_work_stealing(config, run).passed
    assert ticket_records(config, sim.records) == sim.records
    tensors = tuple(None if x is None else torch.from_numpy(x) for x in inputs)
    np.testing.assert_array_equal(expected_output(config, run, tensors)[0], sim.output)
    wrong = sim.records[0]._replace(counter=config.counter_of(1))
    finding = check_work_stealing(config, types.SimpleNamespace(records=[wrong, *sim.records[1:]]))
    assert not finding.passed
    assert f"program {wrong.program} drew from counter {wrong.counter}, not its own" in "".join(
        finding.reasons
    )


def test_a_stream_k_tail_is_held_to_refsims_plan_and_replayed_with_its_fixups():
    """Work stealing with a 3-tile Stream-K tail: the tail's records, after each program's stolen
    ones, are refsim's plan; the output replays the tickets plus the planned tail and fixups.
    A tail segment recorded with another K-range is a wrong tile order."""
    config, inputs, sim = _stolen(sk_tiles=3, fixup="last-arriver", ws_counter_ranges="per-xcd")
    run = types.SimpleNamespace(records=sim.records)
    assert {r.role for r in sim.records} == {"ws", "sk-owner", "sk-contributor"}
    assert check_work_stealing(config, run).passed
    assert check_work_stealing_tail(config, run).passed
    tensors = tuple(torch.from_numpy(x) for x in inputs)
    expected, expected_sim = expected_output(config, run, tensors)
    np.testing.assert_array_equal(expected, sim.output)
    assert len(expected_sim.partials) == len(sim.partials) > 0
    index, first = next((i, r) for i, r in enumerate(sim.records) if r.role == "sk-contributor")
    moved = first._replace(k_begin=first.k_begin + 1)
    faulty = types.SimpleNamespace(records=[*sim.records[:index], moved, *sim.records[index + 1 :]])
    tail = check_work_stealing_tail(config, faulty)
    assert not tail.passed and tail.cause == "wrong tile order"
    assert check_work_stealing(config, faulty).passed  # the stolen tiles are still right
