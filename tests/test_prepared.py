"""The prepared host path (:mod:`kernels.prepared`): a repeated call launches the compiled
kernels directly (under the interpreter, ``kernel[grid]`` with the same substituted
parameters) and gives the bits of the ordinary path; and CUDA-graph capture (GPU only)."""

import pytest
import torch
from kernel_checks import exact_output_problems, make_inputs
from test_kernels_gpu import STRATEGIES, gpu_config

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = [pytest.mark.gpu] if DEVICE == "cuda" else [pytest.mark.interpreter]
needs_gpu = pytest.mark.skipif(DEVICE != "cuda", reason="CUDA graphs need a GPU")


def config_of(name, gpu_shape, cpu_shape=(80, 48, 72)):
    """``name``'s config (a key of test_kernels_gpu.STRATEGIES): GPU blocks on a GPU, the
    interpreter tier's small ones on the CPU."""
    if DEVICE == "cuda":
        return gpu_config(name, gpu_shape)
    from test_kernels import config_for

    return config_for(name, cpu_shape, dtype="bf16")


@pytest.fixture
def plans():
    """The prepared calls, emptied before and after the test."""
    from kernels import prepared

    prepared.forget()
    yield prepared._plans
    prepared.forget()


def _refuse_to_build(*args, **kwargs):
    raise AssertionError("the prepared call built its launches again")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_a_repeated_call_launches_the_compiled_kernels_and_gives_the_same_bits(
    name, plans, monkeypatch
):
    import kernels

    config = config_of(name, (1536, 2176, 1088))
    a, b, bias = make_inputs(config, integer=False, device=DEVICE, seed=3)
    traced = kernels.run(config, a, b, bias, trace=True).output  # traced runs are never prepared
    assert not plans
    first = kernels.run(config, a, b, bias).output
    assert len(plans) == 1
    monkeypatch.setattr(kernels.launch, "build_launches", _refuse_to_build)
    outputs = [kernels.run(config, a, b, bias).output for _ in range(20)]
    assert all(torch.equal(out, traced) for out in [first, *outputs])
    # each call allocates its own contiguous output, as the ordinary path does
    assert len({out.data_ptr() for out in [first, *outputs]}) == 21
    assert all(out.is_contiguous() and out.stride() == traced.stride() for out in outputs)


@pytest.mark.parametrize("name", ["data_parallel", "split_k", "owner-waits", "last-arriver"])
def test_new_tensors_go_where_the_first_calls_went(name, plans):
    """Prepared over ``a @ a`` (one tensor in two places), called with two others and a bias."""
    import kernels

    config = config_of(name, (1024, 1024, 1024), (64, 64, 64))
    a, _, bias = make_inputs(config, device=DEVICE, seed=4)
    kernels.run(config, a, a, bias)
    c, d, other_bias = make_inputs(config, device=DEVICE, seed=5)
    out = torch.full((config.m, config.n), float("nan"), device=DEVICE, dtype=a.dtype)
    kernels.run(config, c, d, other_bias, out=out)
    run = kernels.run(config, c, d, other_bias)
    assert exact_output_problems(run, c, d, other_bias) == []
    assert torch.equal(run.output, out)
    assert len(plans) == 2  # with and without out=


def test_each_prepared_call_publishes_a_new_epoch(plans):
    import kernels
    from kernels.workspace import workspace_for

    config = config_of("owner-waits", (1536, 2176, 1088))
    a, b, bias = make_inputs(config, device=DEVICE, seed=15)
    workspace = workspace_for(a.device)
    published = []
    for _ in range(3):
        kernels.run(config, a, b, bias)
        flags = workspace.held("flags")[: config.grid]
        published.append((int(flags.max()), workspace.epoch))
    assert len(plans) == 1
    assert [flag for flag, _ in published] == [epoch for _, epoch in published]
    assert published[0][1] < published[1][1] < published[2][1]


def test_strides_and_alignment_are_part_of_the_key(plans):
    import kernels

    config = config_of("data_parallel", (512, 512, 512), (64, 64, 64))
    a, b, bias = make_inputs(config, device=DEVICE, seed=6)
    kernels.run(config, a, b, bias)
    m, k = a.shape
    shifted = torch.empty(m * k + 1, device=DEVICE, dtype=a.dtype)[1:].view(m, k)
    shifted.copy_(a)  # the same values, 2 bytes past a 16-byte boundary
    transposed = b.t().contiguous().t()
    run = kernels.run(config, shifted, transposed, bias)
    assert exact_output_problems(run, shifted, transposed, bias) == []
    assert len(plans) == 2


def _partials_of(plan):
    """The data pointers of the workspace buffers a prepared call's launches keep."""
    return {value.data_ptr() for launch in plan.launches for value in launch.buffers}


def test_a_grown_workspace_prepares_the_call_again(plans):
    """A call prepared over partials the workspace has since replaced is prepared again, over
    the new ones (the old ones are let go), and still right."""
    import kernels
    from kernels.workspace import workspace_for

    small = config_of("owner-waits", (512, 512, 4096))
    a, b, bias = make_inputs(small, device=DEVICE, seed=7)
    kernels.run(small, a, b, bias)
    workspace = workspace_for(a.device)
    first_partials = workspace.held("partials").data_ptr()
    assert first_partials in _partials_of(next(iter(plans.values())))
    # a launch that needs more partials than any before makes the workspace replace them
    workspace.buffer("partials", workspace.held("partials").numel() + 1, torch.float32)
    grown_partials = workspace.held("partials").data_ptr()
    assert grown_partials != first_partials
    run = kernels.run(small, a, b, bias)
    assert exact_output_problems(run, a, b, bias) == []
    (plan,) = [plan for key, plan in plans.items() if key[0] == small]
    assert grown_partials in _partials_of(plan)
    assert first_partials not in _partials_of(plan)


def test_triton_launch_hooks_see_every_launch(plans, monkeypatch):
    """With a launch hook installed, calls go the ordinary way (which calls the hooks)."""
    import triton

    import kernels

    enqueued = []
    real = kernels.launch._enqueue
    monkeypatch.setattr(kernels.launch, "_enqueue", lambda s: enqueued.append(s) or real(s))

    config = config_of("data_parallel", (512, 512, 512), (64, 64, 64))
    a, b, bias = make_inputs(config, device=DEVICE, seed=9)
    kernels.run(config, a, b, bias)
    seen = []
    chain = triton.knobs.runtime.launch_enter_hook
    if chain is None:  # a plain hook attribute, not a chain of them
        triton.knobs.runtime.launch_enter_hook = seen.append
    else:
        chain.add(seen.append)
    try:
        assert kernels.prepared.hooks_installed()
        run = kernels.run(config, a, b, bias)
    finally:
        if chain is None:
            triton.knobs.runtime.launch_enter_hook = None
        else:
            chain.remove(seen.append)
    assert not kernels.prepared.hooks_installed()
    assert len(enqueued) == 2
    assert len(seen) == (1 if DEVICE == "cuda" else 0)  # the interpreter calls no hooks
    assert exact_output_problems(run, a, b, bias) == []


def test_the_atomic_fixup_zeroes_its_output_on_every_prepared_call(plans):
    import kernels

    config = config_of("owner-waits", (1024, 1536, 2048)).replace(fixup="atomic")
    a, b, bias = make_inputs(config, device=DEVICE, seed=10)
    out = torch.empty((config.m, config.n), device=DEVICE)
    for _ in range(3):
        run = kernels.run(config, a, b, bias, out=out, deterministic=False)
    assert len(plans) == 1
    assert exact_output_problems(run, a, b, bias) == []


@needs_gpu
@pytest.mark.parametrize(
    "name", ["data_parallel", "persistent", "work_stealing", "split_k", "last-arriver"]
)
def test_a_captured_run_replays_on_new_data_in_place(name):
    import kernels

    config = config_of(name, (1536, 2176, 1088))
    a, b, bias = make_inputs(config, device=DEVICE, seed=11)
    captured = kernels.capture(config, a, b, bias)
    new_a, new_b, new_bias = make_inputs(config, device=DEVICE, seed=12)
    for _ in range(3):
        a.copy_(new_a)
        b.copy_(new_b)
        bias.copy_(new_bias)
        output = captured.replay()
        torch.cuda.synchronize()
        assert output is captured.output
        run = kernels.KernelRun(output, config)
        assert exact_output_problems(run, new_a, new_b, new_bias) == []


@pytest.mark.parametrize("name", ["owner-waits", "turnstile"])
def test_capture_refuses_the_fixups_that_wait_on_flags(name):
    import kernels

    config = config_of(name, (1536, 2176, 1088))
    a, b, bias = make_inputs(config, device=DEVICE, seed=13)
    with pytest.raises(ValueError, match="graph replays one epoch"):
        kernels.capture(config, a, b, bias)


def test_capture_refuses_cpu_tensors():
    import kernels

    config = config_of("data_parallel", (512, 512, 512), (64, 64, 64))
    a, b, bias = make_inputs(config, device="cpu", seed=14)
    with pytest.raises(ValueError, match="CUDA tensors"):
        kernels.capture(config, a, b, bias)


def test_the_sanitizer_script_runs_every_strategy_right():
    """benchmarks/sanitizer_runs.py, which compute-sanitizer wraps on a GPU: every strategy,
    traced, ordinary and prepared, and a batch, each output checked."""
    from test_benchmark_suite import benchmark_module

    with benchmark_module("sanitizer_runs") as script:
        assert script.main(["--device", DEVICE]) == 0
        assert set(script.RUNS) >= {"data_parallel", "persistent", "work_stealing", "split_k"}
