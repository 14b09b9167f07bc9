"""The prepared host path (:mod:`kernels.prepared`): a repeated GPU call launches the compiled
kernels directly and gives the bits of the ordinary path. GPU only (``pytest -m gpu``)."""

import pytest
import torch
from kernel_checks import exact_output_problems, make_inputs
from test_kernels_gpu import STRATEGIES, gpu_config

pytestmark = pytest.mark.gpu


@pytest.fixture
def plans():
    """The prepared calls, emptied before and after the test."""
    from kernels import prepared

    prepared.forget()
    yield prepared._plans
    prepared.forget()


def _refuse_to_build(*args, **kwargs):
    raise AssertionError("the prepared call built its launches again")


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_a_repeated_call_launches_the_compiled_kernels_and_gives_the_same_bits(
    name, plans, monkeypatch
):
    import kernels

    config = gpu_config(name, (1536, 2176, 1088))
    a, b, bias = make_inputs(config, integer=False, device="cuda", seed=3)
    traced = kernels.run(config, a, b, bias, trace=True).output  # traced runs are never prepared
    assert not plans
    first = kernels.run(config, a, b, bias).output
    assert len(plans) == 1
    monkeypatch.setattr(kernels.launch, "build_launches", _refuse_to_build)
    outputs = [kernels.run(config, a, b, bias).output for _ in range(20)]
    assert all(torch.equal(out, traced) for out in [first, *outputs])


@pytest.mark.parametrize("name", ["data_parallel", "split_k", "owner-waits", "last-arriver"])
def test_new_tensors_go_where_the_first_calls_went(name, plans):
    """Prepared over ``a @ a`` (one tensor in two places), called with two others and a bias."""
    import kernels

    config = gpu_config(name, (1024, 1024, 1024))
    a, _, bias = make_inputs(config, device="cuda", seed=4)
    kernels.run(config, a, a, bias)
    c, d, other_bias = make_inputs(config, device="cuda", seed=5)
    out = torch.full((config.m, config.n), float("nan"), device="cuda", dtype=a.dtype)
    kernels.run(config, c, d, other_bias, out=out)
    run = kernels.run(config, c, d, other_bias)
    assert exact_output_problems(run, c, d, other_bias) == []
    assert torch.equal(run.output, out)
    assert len(plans) == 2  # with and without out=


def test_strides_and_alignment_are_part_of_the_key(plans):
    import kernels

    config = gpu_config("data_parallel", (512, 512, 512))
    a, b, bias = make_inputs(config, device="cuda", seed=6)
    kernels.run(config, a, b, bias)
    shifted = torch.empty(512 * 512 + 1, device="cuda", dtype=a.dtype)[1:].view(512, 512)
    shifted.copy_(a)  # the same values, 2 bytes past a 16-byte boundary
    transposed = b.t().contiguous().t()
    run = kernels.run(config, shifted, transposed, bias)
    assert exact_output_problems(run, shifted, transposed, bias) == []
    assert len(plans) == 2


def test_a_grown_workspace_prepares_the_call_again(plans):
    import kernels

    small = gpu_config("owner-waits", (512, 512, 4096))
    large = gpu_config("owner-waits", (4096, 4096, 4096))
    a, b, bias = make_inputs(small, device="cuda", seed=7)
    kernels.run(small, a, b, bias)
    big_a, big_b, big_bias = make_inputs(large, device="cuda", seed=8)
    kernels.run(large.replace(block_m=256), big_a, big_b, big_bias)  # grows the partials
    run = kernels.run(small, a, b, bias)
    assert exact_output_problems(run, a, b, bias) == []


def test_triton_launch_hooks_see_every_launch(plans):
    import triton

    import kernels

    config = gpu_config("data_parallel", (512, 512, 512))
    a, b, bias = make_inputs(config, device="cuda", seed=9)
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
    assert len(seen) == 1
    assert exact_output_problems(run, a, b, bias) == []


def test_the_atomic_fixup_zeroes_its_output_on_every_prepared_call(plans):
    import kernels

    config = gpu_config("owner-waits", (1024, 1536, 2048)).replace(fixup="atomic")
    a, b, bias = make_inputs(config, device="cuda", seed=10)
    out = torch.empty((config.m, config.n), device="cuda")
    for _ in range(3):
        run = kernels.run(config, a, b, bias, out=out, deterministic=False)
    assert len(plans) == 1
    assert exact_output_problems(run, a, b, bias) == []


@pytest.mark.parametrize(
    "name", ["data_parallel", "persistent", "work_stealing", "split_k", "last-arriver"]
)
def test_a_captured_run_replays_on_new_data_in_place(name):
    import kernels

    config = gpu_config(name, (1536, 2176, 1088))
    a, b, bias = make_inputs(config, device="cuda", seed=11)
    captured = kernels.capture(config, a, b, bias)
    new_a, new_b, new_bias = make_inputs(config, device="cuda", seed=12)
    for _ in range(3):
        a.copy_(new_a)
        b.copy_(new_b)
        bias.copy_(new_bias)
        output = captured.replay()
        torch.cuda.synchronize()
        assert output is captured.output
        run = kernels.KernelRun(output, config)
        assert exact_output_problems(run, new_a, new_b, new_bias) == []
