"""The Triton kernels against refsim and float64: Triton's interpreter on the CPU, or the GPU.

Without a GPU, conftest turns the interpreter on before the kernels are decorated and these
tests run on CPU tensors with small blocks; with a GPU the same tests run compiled.
"""

import inspect
import itertools
import os
import re
import subprocess
import sys

import pytest
import torch
import triton
import triton.language as tl
from kernel_checks import (
    INTERPRETER_TIER_ONLY,
    LAYOUTS,
    exact_output_problems,
    make_inputs,
    order_problems,
    partial_problems,
    simulate_like,
    tolerance_problems,
)

import kernels
import kernels.streamk
import refsim
from kernels.backend import NVIDIA, program_order, shuffled_order
from kernels.dtypes import TORCH_DTYPES
from kernels.launch import build_launches, launch_options
from kernels.records import describe_waits, event_log, in_flight, pending_waits
from kernels.workspace import Workspace, workspace_for
from refsim.tiling import cdiv

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# The same tests are the interpreter tier on a CPU machine and part of `pytest -m gpu` on a GPU.
pytestmark = [pytest.mark.gpu] if DEVICE == "cuda" else [pytest.mark.interpreter]
SMALL = {"block_m": 16, "block_n": 32, "block_k": 16, "cus": 4, "xcds": 1, "device": "h100"}

# Every strategy and fixup; Stream-K in both hybrids' worth of splitting (one-wave splits
# every tile; the default two-tile hybrid mixes DP and SK tiles).
RUNS = {
    "data_parallel": {"strategy": "data_parallel"},
    "persistent": {"strategy": "persistent"},
    "persistent-remap": {"strategy": "persistent", "xcds": 2},
    "work_stealing": {"strategy": "work_stealing"},
    "work_stealing-2-per-xcd": {"strategy": "work_stealing", "xcds": 2, "counters_per_xcd": 2},
    "work_stealing-global": {"strategy": "work_stealing", "global_counter": True},
    "split_k": {"strategy": "split_k", "split_k": 3},
    "owner-waits": {"strategy": "streamk", "fixup": "owner-waits", "sk_hybrid": "one-wave"},
    "owner-waits-hybrid": {"strategy": "streamk", "fixup": "owner-waits", "cus": 3},
    "turnstile": {"strategy": "streamk", "fixup": "turnstile", "sk_hybrid": "one-wave"},
    "turnstile-remap": {
        "strategy": "streamk",
        "fixup": "turnstile",
        "sk_hybrid": "one-wave",
        "xcds": 2,
    },
    "last-arriver": {"strategy": "streamk", "fixup": "last-arriver", "sk_hybrid": "one-wave"},
    "atomic": {"strategy": "streamk", "fixup": "atomic", "sk_hybrid": "one-wave"},
}

# 1x1x1, K < BLOCK_K, K not a multiple of BLOCK_K, M = 1, N = 1, and tile counts at the
# 4-program grid -1, +0 and +1 (16x32 tiles).
SHAPES = [
    (1, 1, 1),
    (17, 33, 5),
    (130, 70, 300),
    (1, 100, 40),
    (40, 1, 40),
    (48, 32, 40),
    (64, 32, 40),
    (80, 32, 40),
]
DTYPES = ("fp32", "fp16", "bf16")


def config_for(run, shape, dtype="fp32"):
    options = dict(SMALL, **RUNS[run], dtype=dtype)
    if "split_k" in options:  # at most the tile's K-iterations
        options["split_k"] = min(options["split_k"], cdiv(shape[2], options["block_k"]))
    return refsim.GemmConfig(*shape, **options)


def launch(config, a, b, bias, **kwargs):
    """Traced run; the atomic fixup (nondeterministic, fp32 atomics) gets a float32 out=."""
    if config.strategy == "streamk" and config.fixup == "atomic":
        kwargs.setdefault("out", torch.empty((config.m, config.n), device=a.device))
        kwargs["deterministic"] = False
    return kernels.run(config, a, b, bias, trace=True, **kwargs)


def all_problems(config, run, a, b, bias, exact=True):
    sim = simulate_like(run, a, b, bias)
    problems = order_problems(run, sim)
    if exact:
        problems += exact_output_problems(run, a, b, bias)
        problems += partial_problems(run, sim)
    else:
        problems += tolerance_problems(run, a, b, bias)
    return problems


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("run_name", sorted(RUNS))
def test_integer_inputs_exact_with_refsim_order_and_partials(run_name, shape):
    """Bias on, layouts and dtypes rotating with the shape so that every pair occurs."""
    index = SHAPES.index(shape)
    dtype = DTYPES[index % len(DTYPES)]
    layouts = (LAYOUTS[index % 4], LAYOUTS[(index // 2) % 4])
    config = config_for(run_name, shape, dtype)
    a, b, bias = make_inputs(config, layouts, with_bias=index % 3 != 2, device=DEVICE, seed=index)
    run = launch(config, a, b, bias)
    assert all_problems(config, run, a, b, bias) == []


@pytest.mark.parametrize(
    "layouts", list(itertools.product(LAYOUTS[:2], LAYOUTS)), ids=lambda p: "-".join(p)
)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("run_name", ["owner-waits", "split_k", "work_stealing", "persistent"])
def test_every_dtype_and_layout_is_exact(run_name, dtype, layouts):
    config = config_for(run_name, (50, 70, 45), dtype)
    a, b, bias = make_inputs(config, layouts, device=DEVICE, seed=7)
    run = launch(config, a, b, bias)
    assert run.output.dtype == TORCH_DTYPES[dtype]
    assert exact_output_problems(run, a, b, bias) == []


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("run_name", sorted(RUNS))
def test_random_inputs_within_the_dtype_tolerance(run_name, dtype):
    config = config_for(run_name, (70, 90, 100), dtype)
    a, b, bias = make_inputs(config, integer=False, device=DEVICE, seed=3)
    run = launch(config, a, b, bias)
    assert all_problems(config, run, a, b, bias, exact=False) == []


@pytest.mark.parametrize("dtype", DTYPES)
def test_split_k_reduction_in_row_bands_gives_the_bits_of_one_program_per_tile(dtype):
    """Random inputs, whose rounding shows the order of the additions: 1, 2 and 4 bands of the
    16-row tiles sum every element in the same order, and each run follows refsim's plan
    (one traced reduction record per tile and band); 46 rows leave the last tile row with
    14, so its fourth band is wholly past M."""
    shape = (46, 70, 300)
    runs = []
    for bands in (1, 2, 4):
        config = config_for("split_k", shape, dtype).replace(reduce_bands=bands)
        a, b, bias = make_inputs(config, integer=False, device=DEVICE, seed=11)
        run = launch(config, a, b, bias)
        reduce = [r for r in run.records if r.kernel == "reduce"]
        assert len(reduce) == config.total_tiles * bands
        assert order_problems(run, simulate_like(run, a, b, bias)) == []
        runs.append(run.output)
    assert all(torch.equal(output, runs[0]) for output in runs[1:])


@pytest.mark.parametrize("run_name", ["owner-waits", "turnstile", "last-arriver", "split_k"])
def test_repeated_runs_reuse_workspaces_and_give_identical_bits(run_name):
    """Flags (epochs) and counters are reset by the launch path itself, not by the caller."""
    config = config_for(run_name, (130, 70, 300))
    a, b, bias = make_inputs(config, integer=False, device=DEVICE, seed=5)
    first = launch(config, a, b, bias).output.clone()
    for _ in range(3):
        assert torch.equal(launch(config, a, b, bias).output, first)


def test_out_is_written_and_returned():
    config = config_for("persistent", (33, 17, 20))
    a, b, bias = make_inputs(config, device=DEVICE)
    out = torch.full((33, 17), float("nan"), device=DEVICE)
    run = kernels.run(config, a, b, bias, out=out)
    assert run.output is out
    assert exact_output_problems(run, a, b, bias) == []


def test_out_may_have_another_dtype():
    config = config_for("data_parallel", (33, 17, 20), "bf16")
    a, b, bias = make_inputs(config, device=DEVICE)
    out = torch.empty((33, 17), dtype=torch.float32, device=DEVICE)
    run = kernels.run(config, a, b, bias, out=out)
    assert run.output.dtype == torch.float32
    assert exact_output_problems(run, a, b, bias) == []


@pytest.mark.parametrize("shape", [(0, 5, 3), (4, 0, 3), (4, 5, 0)])
def test_zero_sizes_behave_like_torch_matmul(shape):
    m, n, k = shape
    a = torch.ones((m, k), device=DEVICE)
    b = torch.ones((k, n), device=DEVICE)
    bias = torch.arange(n, dtype=torch.float32, device=DEVICE)
    run = kernels.run(None, a, b, bias)
    assert run.output.shape == (m, n)
    assert torch.equal(run.output, torch.matmul(a, b) + bias)


def test_default_config_derives_sizes_from_the_tensors():
    a = torch.randint(-4, 5, (40, 24), device=DEVICE).float()
    b = torch.randint(-4, 5, (24, 56), device=DEVICE).float()
    run = kernels.run({"strategy": "persistent"}, a, b)
    assert (run.config.m, run.config.n, run.config.k) == (40, 56, 24)
    assert torch.equal(run.output.cpu().double(), a.cpu().double() @ b.cpu().double())


def test_atomic_fixup_is_refused_in_deterministic_mode_and_without_fp32_output():
    config = config_for("atomic", (64, 32, 40), "bf16")
    a, b, bias = make_inputs(config, device=DEVICE)
    with pytest.raises(ValueError, match="not deterministic"):
        kernels.run(config, a, b, bias)
    with pytest.raises(ValueError, match="float32"):
        kernels.run(config, a, b, bias, deterministic=False)


def _bad(config, **changes):
    a, b, bias = make_inputs(config, device=DEVICE)
    args = {"a": a, "b": b, "bias": bias, "out": None}
    args.update(changes)
    return args


BAD_INPUTS = [
    (
        "a has shape",
        lambda c: _bad(c, a=torch.ones((5, 5), device=DEVICE)),
        ValueError,
        "does not match",
    ),
    (
        "b has shape",
        lambda c: _bad(c, b=torch.ones((3, 17), device=DEVICE)),
        ValueError,
        "does not match",
    ),
    ("a is 3-D", lambda c: _bad(c, a=torch.ones((1, 33, 20), device=DEVICE)), ValueError, "2-D"),
    (
        "dtypes differ",
        lambda c: _bad(c, b=_bad(c)["b"].half()),
        TypeError,
        "b has dtype torch.float16",
    ),
    (
        "int dtype",
        lambda c: _bad(c, a=torch.ones((33, 20), dtype=torch.int32, device=DEVICE)),
        TypeError,
        "supported",
    ),
    (
        "bias length",
        lambda c: _bad(c, bias=torch.ones(16, device=DEVICE)),
        ValueError,
        "length N=17",
    ),
    ("bias rank", lambda c: _bad(c, bias=torch.ones((1, 17), device=DEVICE)), ValueError, "1-D"),
    (
        "out shape",
        lambda c: _bad(c, out=torch.empty((17, 33), device=DEVICE)),
        ValueError,
        "out has shape",
    ),
    (
        "out dtype",
        lambda c: _bad(c, out=torch.empty((33, 17), dtype=torch.int64, device=DEVICE)),
        TypeError,
        "out has dtype",
    ),
    ("not a tensor", lambda c: _bad(c, bias=[1.0] * 17), TypeError, "bias must be a torch.Tensor"),
]


@pytest.mark.parametrize(
    "make, error, message", [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS]
)
def test_bad_input_is_rejected_before_launch(make, error, message):
    config = config_for("persistent", (33, 17, 20))
    with pytest.raises(error, match=message):
        kernels.run(config, **make(config))


@pytest.mark.skipif(DEVICE == "cpu", reason="needs a second device")
def test_tensors_on_different_devices_are_rejected():
    config = config_for("persistent", (33, 17, 20))
    a, b, bias = make_inputs(config, device="cuda")
    with pytest.raises(ValueError, match="different devices"):
        kernels.run(config, a, b.cpu(), bias)


def run_python(code, **environment):
    """Run ``code`` in a fresh interpreter; its stdout, stripped (stderr in the failure)."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **environment},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_kernels_allocates_no_workspace():
    """Workspaces appear on first launch only (checked in a fresh interpreter)."""
    code = (
        "import kernels, kernels.workspace as w; assert w._registry == {}, w._registry; print('ok')"
    )
    assert run_python(code) == "ok"


@INTERPRETER_TIER_ONLY
def test_kernels_dtypes_is_a_leaf_and_the_interpreter_can_be_chosen_after_it():
    """``import kernels.dtypes`` decorates no kernel, so TRITON_INTERPRET set afterwards holds."""
    code = (
        "import os, sys, torch, kernels.dtypes\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('kernels.'))\n"
        "assert loaded == ['kernels.dtypes'], loaded\n"
        "os.environ['TRITON_INTERPRET'] = '1'\n"
        "import kernels\n"
        "a = torch.ones((8, 8))\n"
        "print(kernels.run({'strategy': 'persistent'}, a, a).output.sum().item())"
    )
    environment = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment
    )
    assert result.stdout.strip() == "512.0", result.stderr


def test_the_contract_is_jitted_at_the_first_launch_not_at_import():
    """Importing every kernel module builds no jitted contract; the first launch builds it once."""
    code = (
        "import torch\n"
        "from refsim import tiling\n"
        "built = []\n"
        "build = tiling.triton_namespace\n"
        "tiling.triton_namespace = lambda: built.append(1) or build()\n"
        "import kernels.launch\n"
        "assert built == [], 'built at import'\n"
        f"a = torch.ones((8, 8), device={DEVICE!r})\n"
        "for strategy in ('persistent', 'streamk', 'split_k'):\n"
        "    kernels.launch.run({'strategy': strategy}, a, a)\n"
        "print(len(built))"
    )
    assert run_python(code) == "1"


def kernel_parameters(kernel):
    """``(runtime parameter names in order, constexpr parameter names)`` of a jitted kernel."""
    parameters = inspect.signature(kernel.fn).parameters.values()
    constexpr = {p.name for p in parameters if "constexpr" in str(p.annotation)}
    return [p.name for p in parameters if p.name not in constexpr], constexpr


@pytest.mark.parametrize("run_name", sorted(RUNS))
def test_launches_are_built_as_data_for_another_backend_without_launching(run_name):
    """What a compile-only check gets: CPU tensors, the NVIDIA backend, nothing launched."""
    config = config_for(run_name, (80, 32, 40))
    a, b, bias = make_inputs(config)
    c = torch.full((config.m, config.n), float("nan"))
    launch_set = build_launches(
        config, a, b, bias, c, backend=NVIDIA, workspace=Workspace(a.device), trace=True
    )
    assert launch_set.launches
    for launch in launch_set.launches:
        runtime, constexpr = kernel_parameters(launch.kernel)
        assert len(launch.args) == len(runtime), runtime
        assert set(launch.constexprs) == constexpr
        assert launch.constexprs["BACKEND"] == NVIDIA
        assert set(launch.options) <= {"num_warps", "num_stages"}
        if config.fixup in ("owner-waits", "turnstile"):  # waiting programs need an order
            assert launch.order == tuple(kernels.streamk.execution_order(config))
        else:
            assert launch.order is None
    assert torch.isnan(c).all()
    assert launch_set.traces[0][0] == "gemm"


def test_cpu_and_cpu_0_share_one_workspace_and_fill_reaches_its_buffer():
    workspace = workspace_for(torch.device("cpu"))
    assert workspace_for(torch.device("cpu:0")) is workspace
    assert workspace_for("cpu") is workspace
    buffer = workspace.buffer("fill-test", 4, torch.float32)
    workspace.fill("fill-test", 7.0)
    assert buffer.tolist() == [7.0] * 4
    workspace.fill("never-allocated", 7.0)
    assert workspace.buffer("never-allocated", 2, torch.float32).tolist() == [0.0, 0.0]


@pytest.mark.parametrize(
    "run_name", ["last-arriver", "atomic", "work_stealing", "work_stealing-2-per-xcd"]
)
def test_counters_are_left_zeroed_so_no_launch_needs_a_zeroing_launch(run_name):
    """No launch zeroes the counters first: each leaves them zeroed for the next, which
    therefore computes the same work (the same tiles and K ranges; on a GPU, which program
    steals which tile varies from launch to launch)."""
    config = config_for(run_name, (80, 48, 40))
    a, b, bias = make_inputs(config, device=DEVICE)
    first = launch(config, a, b, bias)
    counters = workspace_for(a.device).held("counters")
    assert counters.numel() > 1 and counters.count_nonzero().item() == 0
    second = launch(config, a, b, bias)
    assert counters.count_nonzero().item() == 0
    assert _work_key(second.records) == _work_key(first.records)
    assert torch.equal(second.output, first.output) or config.fixup == "atomic"
    assert not exact_output_problems(second, a, b, bias)


def test_launch_options_for_an_offline_vendor_match_those_of_its_device():
    config = refsim.GemmConfig(256, 256, 256, block_m=128, block_n=128, block_k=64, dtype="bf16")
    assert launch_options(config, torch.device("cpu")) == {"num_warps": 4, "num_stages": 1}
    assert launch_options(config, vendor="hip") == {"num_warps": 4, "num_stages": 2}
    assert launch_options(config, vendor="cuda") == {"num_warps": 4, "num_stages": 4}
    with pytest.raises(ValueError, match="vendor='rocm'"):
        launch_options(config, vendor="rocm")


def test_partial_slot_refuses_a_strategy_without_partials():
    config = config_for("persistent", (33, 17, 20))
    with pytest.raises(ValueError, match="keeps no partials"):
        kernels.partial_slot(config, 0, 0)


# What a traced run records: bounded buffers, the partials' guard slot, the flags' epochs, the log
# of a launch in flight; and the interpreter's program order.

POISON = 2.0**40


def _records_key(records):
    return sorted((r.program, r.step, r.tile, r.k_begin, r.k_end, r.role) for r in records)


def _work_key(records):
    return sorted((r.tile, r.k_begin, r.k_end, r.role) for r in records)


def test_trace_rows_past_max_steps_are_counted_and_touch_no_other_row(monkeypatch):
    config = config_for("owner-waits", (80, 32, 40))
    a, b, bias = make_inputs(config, device=DEVICE)
    planned = refsim.simulate(config).records
    rows = max(r.step for r in planned)  # the longest program's last record does not fit
    monkeypatch.setattr(kernels.streamk, "static_max_steps", lambda config: rows)
    monkeypatch.setattr(kernels.launch_spec, "EXTRA_TRACE_ROWS", 0)  # the trace: `rows` rows
    run = launch(config, a, b, bias)
    assert run.overruns == sum(r.step >= rows for r in planned) > 0
    assert _records_key(run.records) == _records_key(r for r in planned if r.step < rows)


def test_events_past_the_log_capacity_are_counted_not_written(monkeypatch):
    config = config_for("owner-waits", (80, 32, 40))
    a, b, bias = make_inputs(config, device=DEVICE)
    complete = launch(config, a, b, bias).events
    monkeypatch.setattr(kernels.streamk, "event_capacity", lambda config: 3)
    run = launch(config, a, b, bias)
    assert (len(run.events), run.overruns) == (3, len(complete) - 3)


@pytest.mark.parametrize(
    "run_name, slots",
    [("owner-waits", lambda grid: 2 * grid + 1), ("split_k", lambda grid: grid + 1)],
)
def test_partials_end_with_a_guard_slot_no_kernel_writes(run_name, slots):
    config = config_for(run_name, (80, 32, 40))
    a, b, bias = make_inputs(config, device=DEVICE)
    launch(config, a, b, bias)  # creates the workspace's partials
    workspace_for(a.device).fill("partials", POISON)
    partials = launch(config, a, b, bias).partials
    assert partials.shape[0] == slots(config.grid)
    assert (partials[-1] == POISON).all()
    assert not (partials[:-1] == POISON).all()


def test_a_traced_streamk_run_carries_its_epoch_and_the_flags_before_it():
    config = config_for("owner-waits", (80, 32, 40))
    a, b, bias = make_inputs(config, device=DEVICE)
    first = launch(config, a, b, bias)
    second = launch(config, a, b, bias)
    assert second.epoch == first.epoch + 1
    published = {flag for _, kind, flag, _ in first.events if kind == "publish"}
    assert published
    before = second.flags_before.tolist()
    assert second.flags_before.device.type == "cpu" and len(before) == config.grid
    assert {before[flag] for flag in published} == {first.epoch}
    assert second.epoch not in before


def test_describe_waits_names_the_programs_of_the_launch_in_flight_that_never_acquired():
    log = event_log(4, "cpu")
    entries = [(12, 3, 13, 5), (3, 3, 2, 5), (3, 4, 2, 5)]  # wait, wait, acquire
    log[0] = len(entries)
    log[2 : 2 + 4 * len(entries)] = torch.tensor(entries).flatten()
    assert describe_waits() is None
    with in_flight(log):
        assert describe_waits() == "program 12 waits on flag 13 (epoch 5)"
        log[0] = 1  # only the first wait logged so far
        assert describe_waits() == "program 12 waits on flag 13 (epoch 5)"
        log[0] = 0
        assert describe_waits() is None
    assert describe_waits() is None


def test_pending_waits_pairs_each_wait_with_its_own_programs_acquire():
    events = [
        (1, "wait", 4, 7),
        (2, "wait", 4, 7),
        (1, "acquire", 4, 7),
        (2, "acquire", 5, 7),  # another flag: program 2 still waits on flag 4
        (3, "wait", 6, 7),
        (3, "acquire", 6, 2),  # read a wrong value, but the wait ended
    ]
    assert pending_waits(events) == [(2, 4, 7)]


@triton.jit
def _log_program_order(count_ptr, order_ptr):
    position = tl.atomic_add(count_ptr, 1)
    tl.store(order_ptr + position, tl.program_id(0))


def _programs_in_run_order(grid):
    count = torch.zeros(1, dtype=torch.int32, device=DEVICE)
    order = torch.full((grid,), -1, dtype=torch.int32, device=DEVICE)
    _log_program_order[(grid,)](count, order)
    return order.tolist()


INTERPRETER_ONLY = pytest.mark.skipif(
    DEVICE == "cuda", reason="compiled programs run concurrently: the order is the interpreter's"
)


@INTERPRETER_ONLY
def test_program_order_runs_the_programs_in_the_order_given():
    assert _programs_in_run_order(5) == [0, 1, 2, 3, 4]
    with program_order([3, 1, 4, 0, 2]):
        assert _programs_in_run_order(5) == [3, 1, 4, 0, 2]
    with program_order(lambda n: range(n - 1, -1, -1)):
        assert _programs_in_run_order(4) == [3, 2, 1, 0]
    assert _programs_in_run_order(5) == [0, 1, 2, 3, 4]


@INTERPRETER_ONLY
def test_program_order_innermost_wins_and_shuffles_are_seeded():
    shuffled = shuffled_order(7)(6)
    assert sorted(shuffled) == list(range(6)) and shuffled != list(range(6))
    with program_order(shuffled_order(7)):
        assert _programs_in_run_order(6) == shuffled
        with program_order(None):
            assert _programs_in_run_order(6) == list(range(6))
        assert _programs_in_run_order(6) == shuffled


@INTERPRETER_ONLY
def test_program_order_refuses_an_order_that_is_not_a_permutation():
    with program_order([0, 0, 1]), pytest.raises(Exception, match=r"not a permutation of 0\.\.2"):
        _programs_in_run_order(3)


@INTERPRETER_ONLY
def test_a_waiting_protocol_keeps_its_own_order_inside_a_shuffled_one():
    config = config_for("owner-waits", (80, 32, 40))
    a, b, bias = make_inputs(config, device=DEVICE)
    with program_order(shuffled_order(3)):
        run = launch(config, a, b, bias)
    assert exact_output_problems(run, a, b, bias) == []
    acquired = {value for _, kind, _, value in run.events if kind == "acquire"}
    assert acquired == {run.epoch}  # every flag waited on was already published


@pytest.mark.parametrize(
    ("strategy", "options", "refused"),
    [
        ("persistent", {"tile_order": "contiguous"}, "tile_order='contiguous'"),
        ("work_stealing", {"ws_counter_map": "logical"}, "ws_counter_map='logical'"),
        ("work_stealing", {"ws_counter_ranges": "per-xcd"}, "ws_counter_ranges='per-xcd'"),
        ("work_stealing", {"sk_tiles": 1}, "sk_tiles=1: the work-stealing kernel has no"),
    ],
)
def test_a_schedule_the_kernels_do_not_follow_is_refused(strategy, options, refused):
    config = refsim.GemmConfig(
        64, 64, 32, strategy=strategy, block_m=16, block_n=32, block_k=16, cus=4, device="h100",
        dtype="fp32", **options,
    )  # fmt: skip
    a = torch.ones((64, 32), device=DEVICE)
    b = torch.ones((32, 64), device=DEVICE)
    with pytest.raises(ValueError, match=re.escape(refused)):
        kernels.run(config, a, b)
