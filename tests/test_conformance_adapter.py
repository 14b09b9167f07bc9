"""The adapter for kernels written elsewhere, unmodified: records inferred, waits in logical
order, partials the launch returns, follows per case, parameters bound by name
(conformance.adapter.bind), and guard slots around scratch buffers (conformance.scratch,
kernels.workspace). Interpreter tier, small shapes."""

import inspect
import types

import pytest
import torch
import triton
import triton.language as tl

import refsim
from conformance.__main__ import main
from conformance.adapter import adapt, bind, options_for
from conformance.cases import Case, follow
from conformance.checking import check_case
from conformance.checks import check_partial_slots
from conformance.harness import POISON
from conformance.scratch import check_scratch_guards
from conformance.worklog import ROLE_DP, record_work
from kernels import contract
from kernels.tile import tile_accumulate, tile_epilogue
from kernels.workspace import Workspace

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
interpreter_only = pytest.mark.skipif(DEVICE != "cpu", reason="the interpreter's program order")


# ------------------------------------------------------- a library kernel, as its authors wrote it


@triton.jit
def library_persistent_gemm(
    A, B, C, bias_ptr, M, N, K,
    stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn, stride_bias,
    tiles_done,  # int32 per program: how many tiles it computed
    alpha,
    log_ptr, max_items,
    NUM_SMS: tl.constexpr, BLOCK_SIZE_M: tl.constexpr, BLOCK_SIZE_N: tl.constexpr,
    BLOCK_SIZE_K: tl.constexpr, GROUP_SIZE_M: tl.constexpr, EVEN_K: tl.constexpr,
    BIAS: tl.constexpr, BACKEND: tl.constexpr, RECORD: tl.constexpr,
    COUNT_PAST_END: tl.constexpr,
):  # fmt: skip
    """Persistent GEMM: program ``pid`` computes tiles ``pid, pid + NUM_SMS, ...`` in the
    grouped order, scaled by ``alpha``, then stores its tile count in ``tiles_done[pid]``
    (``COUNT_PAST_END``: the bug of ``tiles_done[pid + 1]``)."""
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_SIZE_M)
    num_pid_n = tl.cdiv(N, BLOCK_SIZE_N)
    iters = tl.cdiv(K, BLOCK_SIZE_K)
    step = 0
    for tile in range(pid, num_pid_m * num_pid_n, NUM_SMS):
        pid_m, pid_n = contract.grouped_tile(tile, num_pid_m, num_pid_n, GROUP_SIZE_M)
        acc = tile_accumulate(
            A, B, M, N, K, stride_am, stride_ak, stride_bk, stride_bn, pid_m, pid_n, 0, iters,
            BLOCK_SIZE_M, BLOCK_SIZE_N, BLOCK_SIZE_K, EVEN_K, "ieee", BACKEND,
        )  # fmt: skip
        tile_epilogue(
            acc * alpha, C, bias_ptr, M, N, stride_cm, stride_cn, stride_bias, pid_m, pid_n,
            BLOCK_SIZE_M, BLOCK_SIZE_N, BIAS, BACKEND,
        )  # fmt: skip
        if RECORD:
            record_work(
                log_ptr, pid, step, tile, pid_m, pid_n, 0, iters, ROLE_DP, -1, -1, max_items
            )
        step += 1
    tl.store(tiles_done + pid + COUNT_PAST_END, step)


# The schedule the library kernel fixes: persistent, tiles strided over the grid, no XCD remap.
LIBRARY_FOLLOWS = {"strategy": "persistent", "tile_order": "strided", "xcd_remap": False}


def tile_counts(config, device):
    """The library kernel's ``tiles_done`` buffer, as its host code allocates it."""
    return torch.zeros(config.grid, dtype=torch.int32, device=device)


def library(count_past_end=False, follows=LIBRARY_FOLLOWS, records=None, **arguments):
    """The whole adapter of the 28-parameter library kernel: its names bind themselves."""
    launch = bind(
        library_persistent_gemm,
        buffers={"tiles_done": tile_counts},
        alpha=1.0,
        COUNT_PAST_END=count_past_end,
        **arguments,
    )
    return adapt("library", launch, follows=follows, records=records, block_dots=True)


def two_programs(case):
    """The library kernel's follows as a function of the case: at most 2 programs."""
    return LIBRARY_FOLLOWS | {"grid": min(case.cus, 2)}


def _returning(buffers):
    """A launch that computes nothing and returns ``buffers``."""
    return lambda config, a, b, bias, out, worklog: buffers


def library_with_lambda_follows():
    return adapt("x", _returning({}), follows=lambda case: LIBRARY_FOLLOWS)


WAVES = Case("waves", 100, 20, 64, "persistent", cus=3, bias=True, dtype="bf16")  # 7 tiles on 3


def _checks(result):
    return {finding.check: finding for finding in result.findings}


# ------------------------------------------------------------------------------ bind, and records


def test_bind_adapts_a_28_parameter_kernel_in_a_few_lines_and_it_passes():
    """Only the kernel's own extras (a scale, a bug switch, a scratch buffer) are written out;
    the work log binds by convention, so the tile order is checked too."""
    assert len(library_persistent_gemm.arg_names) == 28
    assert len(inspect.getsource(library).splitlines()) <= 10
    result = check_case(library(), WAVES, DEVICE, determinism_runs=2)
    checks = _checks(result)
    assert result.passed, [(f.check, f.reasons) for f in result.findings]
    assert checks["tile order"].passed
    assert checks["scratch guards"].reasons == ["the guard slots around tiles_done untouched"]


def test_a_kernel_that_never_records_passes_with_its_order_checks_skipped():
    result = check_case(library(RECORD=False), WAVES, DEVICE, determinism_runs=2)
    assert result.passed, [(f.check, f.reasons) for f in result.findings]
    assert "tile order" not in _checks(result) and "exact output" in _checks(result)


def _config(**options):
    return WAVES.config().replace(**LIBRARY_FOLLOWS, dtype="fp32", **options)


def _operands(config):
    return torch.ones(config.m, config.k), torch.ones(config.k, config.n)


@pytest.mark.parametrize(
    "kernel, records",
    [
        (library(), 7),  # inferred: the kernel wrote its log
        (library(RECORD=False), None),  # inferred: an untouched log means it does not record
        (library(records=False), None),  # no log at all
    ],
)
def test_records_are_read_inferred_or_never_asked_for(kernel, records):
    config = _config()
    run = kernel.run(config, *_operands(config), trace=True)
    assert (None if run.records is None else len(run.records)) == records
    assert run.overruns == 0


def test_a_kernel_that_must_record_but_does_not_fails_its_tile_order():
    result = check_case(library(RECORD=False, records=True), WAVES, DEVICE, determinism_runs=2)
    assert _checks(result)["exact output"].passed
    assert result.causes == ["trace misreports the work"]  # the right output, no records of it


@triton.jit
def bias_kernel(C, BIAS, stride_bias, HAS_BIAS: tl.constexpr):
    """``C[0]``: ``BIAS[stride_bias]`` with a bias, else -1."""
    if HAS_BIAS:
        tl.store(C, tl.load(BIAS + stride_bias))
    else:
        tl.store(C, -1.0)


@triton.jit
def flag_kernel(C, bias_ptr, BIAS: tl.constexpr, NUM_PROGRAMS, GROUP_M: tl.constexpr, factor):
    """``C[0..3]``: the bias flag, the grid, the group size, and ``factor``."""
    if BIAS:
        tl.store(C, 1.0)
    else:
        tl.store(C, 0.0)
    tl.store(C + 1, NUM_PROGRAMS * 1.0)
    tl.store(C + 2, GROUP_M * 1.0)
    tl.store(C + 3, factor)


def test_bind_reads_a_runtime_BIAS_as_the_pointer_and_a_constexpr_one_as_the_flag():
    config = _config()
    a, b = _operands(config)
    out = torch.zeros(8)
    bias = torch.arange(6.0)[::2]  # stride 2: element 1 is 2.0
    bind(bias_kernel, grid=1)(config, a, b, bias, out, None)
    assert out[0] == 2.0
    bind(bias_kernel, grid=(1,))(config, a, b, None, out, None)
    assert out[0] == -1.0
    launch = bind(flag_kernel, grid=lambda ctx: 1, factor=lambda ctx: ctx.config.k / 2)
    launch(config, a, b, None, out, None)
    assert out[:4].tolist() == [0.0, config.grid, config.group_m, config.k / 2]
    launch(config, a, b, bias, out, None)
    assert out[0] == 1.0


@pytest.mark.parametrize(
    "arguments, error",
    [
        ({}, r"bind\(library_persistent_gemm\): nothing binds tiles_done, alpha, COUNT_PAST_END: "),
        ({"tiles_done": 0, "alpha": 1, "COUNT_PAST_END": 0, "beta": 2}, "no parameter named beta"),
        ({"buffers": {"tiles_done": 0}}, "buffers tiles_done need a maker"),
    ],
)
def test_bind_refuses_in_one_line_what_it_cannot_bind(arguments, error):
    with pytest.raises(TypeError, match=error):
        bind(library_persistent_gemm, **arguments)


def test_bind_refuses_an_autotuner_and_a_plain_function():
    tuned = triton.autotune([triton.Config({"BLOCK_SIZE_M": 16})], key=["M"])
    with pytest.raises(TypeError, match=r"under triton.autotune \(kernel.fn\)"):
        bind(tuned(library_persistent_gemm))
    with pytest.raises(TypeError, match=r"takes a triton\.jit function, not a function"):
        bind(library_persistent_gemm.fn)


# ------------------------------------------------------------------------------------ wait orders


@triton.jit
def arrival_kernel(counter_ptr, arrivals_ptr):
    """Each program writes how many programs ran before it."""
    pid = tl.program_id(0)
    tl.store(arrivals_ptr + pid, tl.atomic_add(counter_ptr, 1))


def _arrivals(wait_order, config):
    seen = torch.zeros(config.grid, dtype=torch.int32)

    def launch(config, a, b, bias, out, worklog):
        arrival_kernel[(config.grid,)](torch.zeros(1, dtype=torch.int32), seen)

    adapt("arrivals", launch, follows={}, wait_order=wait_order).run(config, *_operands(config))
    return seen.tolist()


# 6 programs on 2 XCDs: logical ids 0, 3, 1, 4, 2, 5 for hardware ids 0..5.
TWO_XCDS = refsim.GemmConfig(64, 64, 16, strategy="streamk", cus=6, xcds=2, block_m=16, block_n=16)


@interpreter_only
@pytest.mark.parametrize(
    "wait_order, arrivals",
    [
        ("higher-logical-first", [5, 2, 4, 1, 3, 0]),  # runs 5, 3, 1, 4, 2, 0
        ("lower-logical-first", [0, 3, 1, 4, 2, 5]),
        ("higher-first", [5, 4, 3, 2, 1, 0]),
        (lambda config: [2, 0, 1, 3, 4, 5], [1, 2, 0, 3, 4, 5]),
    ],
)
def test_programs_run_in_their_logical_or_given_order(wait_order, arrivals):
    assert [TWO_XCDS.logical_program(pid) for pid in range(6)] == [0, 3, 1, 4, 2, 5]
    assert _arrivals(wait_order, TWO_XCDS) == arrivals


@triton.jit
def owner_chain(flags_ptr, logical_ptr, NUM_PROGRAMS):
    """Logical program ``l`` waits (at most 50 spins) for the flag of ``l + 1``, then sets its
    own: 1, or 2 when it gave up waiting -- as a Stream-K owner waits on higher logical ids."""
    lp = tl.load(logical_ptr + tl.program_id(0))
    spins = 0
    if lp + 1 < NUM_PROGRAMS:
        while (tl.load(flags_ptr + lp + 1, volatile=True) == 0) & (spins < 50):
            spins += 1
    tl.store(flags_ptr + lp, 1 + (spins == 50).to(tl.int32))


@interpreter_only
@pytest.mark.parametrize("wait_order, gave_up", [("higher-logical-first", 0), ("higher-first", 1)])
def test_owners_waiting_on_higher_logical_ids_need_the_logical_order(wait_order, gave_up):
    """On 2 XCDs, hardware-id order runs logical 2 before logical 3: it would spin forever."""
    launch = bind(
        owner_chain,
        buffers={"flags": lambda config, device: torch.zeros(6, dtype=torch.int32, device=device)},
        logical_ptr=lambda ctx: torch.tensor([ctx.config.logical_program(p) for p in range(6)]),
    )
    kernel = adapt("chain", launch, follows={}, wait_order=wait_order)
    flags = kernel.run(TWO_XCDS, *_operands(TWO_XCDS)).scratch_guards[0].tensor
    assert (flags == 2).sum() == gave_up


def test_a_wait_order_that_is_no_order_of_the_grid_is_refused():
    with pytest.raises(ValueError, match=r"wait_order gave \[0, 1\]: not an order of the 6"):
        _arrivals(lambda config: [0, 1], TWO_XCDS)


# --------------------------------------------------------------------------------------- partials


@pytest.mark.parametrize(
    "partials",
    ["P", lambda config, device, buffers: buffers["P"]],
)
def test_partials_the_launch_returns_are_copied_after_it(partials):
    config = _config()
    buffer = torch.zeros(3, config.block_m, config.block_n)
    slot = lambda config, program, tile: program
    kernel = adapt(
        "x",
        _returning({"P": buffer}),
        follows={},
        partials=partials,
        partial_slot=slot,
        zero_fills_partials=True,
    )
    run = kernel.run(config, *_operands(config), trace=True)
    assert torch.equal(run.partials, buffer) and run.partials.data_ptr() != buffer.data_ptr()
    assert run.partials_fill == 0.0 and run.records is None


def test_partials_naming_a_buffer_the_launch_did_not_return_is_one_line():
    kernel = adapt("x", _returning(None), follows={}, partials="P", partial_slot=lambda *a: 0)
    with pytest.raises(
        ValueError, match=r"partials='P': the launch returned no such buffer \(none"
    ):
        kernel.run(_config(), *_operands(_config()), trace=True)


def test_unplanned_slots_may_hold_zero_only_when_the_kernel_zero_fills_them():
    config = refsim.GemmConfig(
        32, 32, 64, strategy="streamk", fixup="last-arriver", cus=3, xcds=1, block_m=16, block_n=16
    )
    a, b = (t.numpy() for t in _operands(config))
    sim = refsim.simulate(config, a=a, b=b)
    slot = lambda config, program, tile: program
    planned = {slot(config, p.program, p.tile) for p in sim.partials}
    partials = torch.zeros(config.grid + 1, config.block_m, config.block_n)
    assert len(planned) < len(partials)  # some slots hold no planned partial: still 0 here
    for zero_fills, passed in ((True, True), (False, False)):
        kernel = adapt(
            "x",
            _returning({"P": partials}),
            follows={},
            partials="P",
            partial_slot=slot,
            zero_fills_partials=zero_fills,
        )
        run = kernel.run(config, *_operands(config), trace=True)
        assert run.partials_fill == (0.0 if zero_fills else POISON)
        assert check_partial_slots(kernel, config, run, sim).passed == passed


# ---------------------------------------------------------------------------- follows per case


def test_follows_may_be_a_function_of_the_case():
    assert options_for(two_programs, WAVES)["grid"] == 2
    assert options_for(None, WAVES) == {}
    cases, skipped = follow([WAVES, Case("one", 16, 16, 16, cus=1)], two_programs)
    assert skipped == [] and [dict(c.options)["grid"] for c in cases] == [2, 1]
    result = check_case(library(follows=two_programs), WAVES, DEVICE, determinism_runs=2)
    assert result.passed, [(f.check, f.reasons) for f in result.findings]
    assert dict(result.case.options)["grid"] == 2


@pytest.mark.parametrize(
    "follows, error",
    [
        (lambda case: [("grid", 2)], r"follows\(waves\) returned a list, not a dict of options"),
        (lambda case: {"colour": 1}, "unknown option 'colour'"),
    ],
)
def test_a_follows_function_that_gives_no_options_is_one_line(follows, error):
    with pytest.raises((TypeError, ValueError), match=error):
        options_for(follows, WAVES)


def test_a_follows_function_that_cannot_reach_a_worker_is_refused(capsys):
    spec = f"{__name__}:library_with_lambda_follows"
    assert main(["--device", "cpu", "--no-mutants", "--kernel", spec]) == 2
    assert "its follows cannot be sent to a worker process" in capsys.readouterr().err


@pytest.mark.parametrize(
    "options, error",
    [
        ({"records": "yes"}, "records='yes': accepted values are None"),
        ({"wait_order": "logical"}, "'higher-logical-first', 'lower-logical-first' or a function"),
        ({"follows": ["strategy"]}, "follows must be a dict of GemmConfig options or a function"),
        ({"zero_fills_partials": True}, "zero_fills_partials=True needs partials"),
        ({"partials": 3, "partial_slot": max}, "partials must be a buffer name or a function"),
        ({"partials": lambda c, d: 0, "partial_slot": max}, r"take \(config, device, buffers\)"),
    ],
)
def test_adapt_refuses_in_one_line_what_it_cannot_honour(options, error):
    with pytest.raises((TypeError, ValueError), match=error):
        adapt("x", _returning({}), **{"follows": {}, **options})


# --------------------------------------------------------------------------- scratch guard slots


@triton.jit
def poke(counters_ptr, index):
    """``counters_ptr[index] = 1``."""
    tl.store(counters_ptr + index, 1)


@pytest.mark.parametrize(
    "index, reason",
    [
        (8, "counters[8] written: the buffer has 8 entries"),
        (-1, "counters[-1] written (guard slot before the buffer)"),
    ],
)
def test_a_write_just_outside_a_bound_buffer_is_named(index, reason):
    counters = lambda config, device: torch.zeros(8, dtype=torch.int32, device=device)
    launch = bind(poke, grid=1, buffers={"counters": counters}, index=index)
    kernel = adapt("poke", launch, follows={})
    config = _config()
    run = kernel.run(config, *_operands(config))
    finding = check_scratch_guards(run)
    assert not finding.passed and finding.reasons == [reason]
    assert finding.cause == "write outside the tile or matrix"
    assert run.scratch_guards[0].tensor.count_nonzero() == 0


def test_a_kernel_writing_one_past_its_counters_fails_with_the_cause():
    result = check_case(library(count_past_end=True), WAVES, DEVICE, determinism_runs=2)
    checks = _checks(result)
    assert checks["exact output"].passed
    assert checks["scratch guards"].reasons == ["tiles_done[3] written: the buffer has 3 entries"]
    assert "write outside the tile or matrix" in result.causes


def test_the_workspace_counters_and_flags_lie_inside_guard_slots():
    workspace = Workspace(torch.device(DEVICE))
    counters = workspace.buffer("counters", 4, torch.int32)
    workspace.buffer("flags", 3, torch.int32)
    workspace.buffer("partials", 16, torch.float32)  # not guarded: it has a guard slot of its own
    assert workspace.held("counters").numel() == 4 and counters.count_nonzero() == 0
    poke[(1,)](counters, -1)
    poke[(1,)](counters, 4)
    guards = {guard.name: guard for guard in workspace.guarded_buffers()}
    assert sorted(guards) == ["counters", "flags"]
    assert guards["counters"].written() == [-1, 4] and guards["flags"].written() == []
    assert counters.count_nonzero() == 0
    guards["counters"].rearm()
    assert guards["counters"].written() == []


def test_the_reference_kernels_pass_the_scratch_guard_check():
    from conformance.adapter import reference

    case = Case("ws", 80, 32, 40, "work_stealing", cus=4, xcds=2)
    result = check_case(reference(), case, DEVICE, determinism_runs=2)
    assert result.passed, [(f.check, f.reasons) for f in result.findings]
    assert "counters" in _checks(result)["scratch guards"].reasons[0]


def test_a_guard_finding_lists_at_most_five_writes():
    launch = bind(
        poke, grid=1, buffers={"counters": lambda c, d: torch.zeros(2, device=d)}, index=2
    )
    run = adapt("poke", launch, follows={}).run(_config(), *_operands(_config()))
    guard = run.scratch_guards[0]
    guard.storage[:] = 7  # every guard slot (8 each side of 2 entries) and the buffer written
    finding = check_scratch_guards(types.SimpleNamespace(scratch_guards=[guard]))
    assert len(finding.reasons) == 6 and finding.reasons[-1] == "16 guard slots written in all"
    assert check_scratch_guards(types.SimpleNamespace()) is None
