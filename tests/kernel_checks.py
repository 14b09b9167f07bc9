"""Checks of one kernel run against refsim and float64, returning reasons (empty = pass).

Shared by the interpreter tests and the GPU tests, so both hold the kernels to the same bar.
"""

import numpy as np
import pytest
import torch

import refsim
from conformance.checks import check_work_stealing
from conformance.tolerances import tolerance_problem
from kernels.dtypes import TORCH_DTYPES

# Tests that run the interpreter in a fresh process even where a GPU is present: skipped there,
# since the GPU machine's Triton 3.6 interpreter breaks with numpy >= 2.4 (the CPU tier runs them).
INTERPRETER_TIER_ONLY = pytest.mark.skipif(
    torch.cuda.is_available(), reason="interpreter tier (Triton 3.6's breaks on numpy 2.4)"
)

# The four ways an operand can be laid out: contiguous, a transposed view, a strided slice of a
# wider buffer (non-contiguous rows), and a transposed strided slice.
LAYOUTS = ("contiguous", "transposed", "sliced", "sliced-transposed")


def make_operand(rows, cols, layout, dtype, device, generator, integer):
    """A (rows, cols) tensor with the given memory layout, integer -4..4 or standard normal."""
    shape = (cols, rows) if "transposed" in layout else (rows, cols)
    if "sliced" in layout:
        shape = (shape[0], 2 * shape[1] + 1)
    if integer:
        base = torch.randint(-4, 5, shape, generator=generator, dtype=torch.int64)
    else:
        base = torch.randn(shape, generator=generator, dtype=torch.float64)
    base = base.to(TORCH_DTYPES[dtype]).to(device)
    if "sliced" in layout:
        base = base[:, 1::2]
    return base.t() if "transposed" in layout else base


def make_inputs(
    config, layouts=("contiguous", "contiguous"), with_bias=True, integer=True, device="cpu", seed=0
):
    generator = torch.Generator().manual_seed(seed)
    a = make_operand(config.m, config.k, layouts[0], config.dtype, device, generator, integer)
    b = make_operand(config.k, config.n, layouts[1], config.dtype, device, generator, integer)
    bias = None
    if with_bias:
        bias = make_operand(1, config.n, "contiguous", config.dtype, device, generator, integer)[0]
    return a, b, bias


def reference(a, b, bias):
    """float64 product of the (already dtype-rounded) inputs, plus bias."""
    ref = a.double().cpu() @ b.double().cpu()
    return ref + bias.double().cpu() if bias is not None else ref


def exact_output_problems(run, a, b, bias):
    """Integer inputs: the output is the float64 result rounded once to the output dtype."""
    expected = reference(a, b, bias).to(run.output.dtype)
    got = run.output.cpu()
    bad = (got != expected).nonzero()
    if len(bad):
        i, j = bad[0].tolist()
        return [
            f"{len(bad)} elements differ from the exact result; first at ({i}, {j}): "
            f"{got[i, j].item()} != {expected[i, j].item()}"
        ]
    return []


def tolerance_problems(run, a, b, bias):
    """Random inputs: within the tolerance of the coarser of the inputs' and the output's dtype
    (``conformance.tolerances``)."""
    problem = tolerance_problem(run.output, a, b, bias)
    return [problem] if problem else []


def _key(record, with_final):
    fields = (
        record.kernel,
        record.program,
        record.step,
        record.tile,
        record.pid_m,
        record.pid_n,
        record.k_begin,
        record.k_end,
        record.role,
    )
    return fields + ((record.finalizes,) if with_final else ())


def order_problems(run, sim):
    """Static strategies: each program's (tile, k_begin, k_end, role) sequence equals refsim's.

    Who finalises is compared too, except where it depends on arrival order (last-arriver,
    atomic).
    """
    config = run.config
    if config.strategy == "work_stealing":
        return work_stealing_problems(run)
    with_final = not (config.strategy == "streamk" and config.fixup in ("last-arriver", "atomic"))
    got = sorted(_key(r, with_final) for r in run.records)
    expected = sorted(_key(r, with_final) for r in sim.records)
    if got != expected:
        missing = sorted(set(expected) - set(got))[:3]
        extra = sorted(set(got) - set(expected))[:3]
        return [f"trace differs from refsim's plan: missing {missing}, unexpected {extra}"]
    return []


def work_stealing_problems(run):
    """Every tile once, every ticket of every counter once, each tile from its counter's range."""
    return check_work_stealing(run.config, run).reasons


def partial_problems(run, sim):
    """Integer inputs: every partial refsim predicts is in its slot, bit for bit."""
    import kernels

    problems = []
    for p in sim.partials or []:
        slot = kernels.partial_slot(run.config, p.program, p.tile)
        rows, cols = p.value.shape
        got = run.partials[slot, :rows, :cols].cpu().numpy()
        if not np.array_equal(got, p.value):
            problems.append(
                f"partial of program {p.program} for tile {p.tile} "
                f"(k {p.k_begin}..{p.k_end}, slot {slot}) differs from refsim's"
            )
    return problems


def simulate_like(run, a, b, bias):
    """refsim's prediction for the same config and inputs."""
    to_np = lambda t: None if t is None else t.double().cpu().numpy()
    return refsim.simulate(run.config, a=to_np(a), b=to_np(b), bias=to_np(bias))
