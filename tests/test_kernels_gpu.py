"""GPU-only kernel checks: large shapes, wave-quantisation edges, 100-run determinism.

Run with ``pytest -m gpu``; skipped cleanly without a GPU.
"""

import pytest
import torch
from kernel_checks import exact_output_problems, make_inputs, order_problems

import refsim

pytestmark = pytest.mark.gpu

STRATEGIES = {
    "data_parallel": {"strategy": "data_parallel"},
    "persistent": {"strategy": "persistent"},
    "work_stealing": {"strategy": "work_stealing"},
    "split_k": {"strategy": "split_k", "split_k": 2},
    "owner-waits": {"strategy": "streamk", "fixup": "owner-waits"},
    "turnstile": {"strategy": "streamk", "fixup": "turnstile"},
    "last-arriver": {"strategy": "streamk", "fixup": "last-arriver"},
}
BLOCKS = {"block_m": 128, "block_n": 128, "block_k": 64}

# 4096^3 and 8192x8192x4096, and for 132 SMs with 128x128 tiles: 133 tiles (one wave + 1)
# and 263 tiles (two waves - 1).
LARGE = [(4096, 4096, 4096), (8192, 8192, 4096), (7 * 128, 19 * 128, 4096), (128, 263 * 128, 2048)]


def gpu_config(name, shape, dtype="bf16"):
    import kernels

    a = torch.empty((1, 1), device="cuda", dtype=torch.bfloat16)
    base = kernels.default_config(a, torch.empty((1, 1), device="cuda", dtype=torch.bfloat16))
    options = dict(
        BLOCKS, **STRATEGIES[name], dtype=dtype, device=base.device, cus=base.cus, xcds=base.xcds
    )
    return refsim.GemmConfig(*shape, **options)


@pytest.mark.parametrize("shape", LARGE, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_large_shapes_exact_and_in_refsims_order(name, shape):
    import kernels

    config = gpu_config(name, shape)
    a, b, bias = make_inputs(config, device="cuda", seed=1)
    run = kernels.run(config, a, b, bias, trace=True)
    sim = refsim.simulate(config)
    assert exact_output_problems(run, a, b, bias) == []
    assert order_problems(run, sim) == []


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_one_hundred_runs_give_identical_bits(name):
    import kernels

    config = gpu_config(name, (3072, 4224, 4096))
    a, b, bias = make_inputs(config, integer=False, device="cuda", seed=2)
    first = kernels.run(config, a, b, bias).output.clone()
    for _ in range(99):
        assert torch.equal(kernels.run(config, a, b, bias).output, first)


def test_owner_waits_refuses_a_grid_larger_than_the_device_holds():
    import kernels

    config = gpu_config("owner-waits", (4096, 4096, 4096))
    config = config.replace(grid=4 * torch.cuda.get_device_properties(0).multi_processor_count)
    a, b, bias = make_inputs(config, device="cuda")
    with pytest.raises(ValueError, match="resident"):
        kernels.run(config, a, b, bias)


def test_atomic_fixup_runs_outside_deterministic_mode():
    import kernels

    config = gpu_config("owner-waits", (4096, 4096, 4096)).replace(fixup="atomic")
    a, b, bias = make_inputs(config, device="cuda")
    out = torch.empty((config.m, config.n), device="cuda")
    run = kernels.run(config, a, b, bias, out=out, deterministic=False)
    assert exact_output_problems(run, a, b, bias) == []


def test_cuda_and_its_current_index_name_one_workspace():
    """Poison written to the workspace of ``cuda`` reaches the one ``cuda:N`` launches use."""
    from kernels.workspace import workspace_for

    current = torch.device("cuda", torch.cuda.current_device())
    assert workspace_for(torch.device("cuda")) is workspace_for(current)


def test_a_traced_split_k_run_shows_the_gpus_gap_between_its_launches_not_the_hosts():
    """The reduction of a short split launch starts within a few microseconds of the split's
    last item: the traced set runs behind a head start, so the host's launch time (tens of
    microseconds on the H200 for a traced Triton launch) is not in the trace. The smallest gap
    of three runs: another process's kernels on a shared GPU (parallel test workers) can only
    add to one run's gap."""
    import kernels

    config = gpu_config("split_k", (256, 256, 512))
    a, b, bias = make_inputs(config, device="cuda", integer=False)
    kernels.run(config, a, b, bias, trace=True)  # compiles
    gaps = []
    for _ in range(3):
        records = kernels.run(config, a, b, bias, trace=True).records
        split_end = max(r.t_end_us for r in records if r.kernel == "gemm")
        reduce_start = min(r.t_start_us for r in records if r.kernel == "reduce")
        gaps.append(reduce_start - split_end)
    assert min(gaps) >= 0 and min(gaps) < 10.0, gaps
