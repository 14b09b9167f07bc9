"""The conformance harness's layouts and guards, and the causes they let the diagnosis name:
strided and transposed operands, guard bands around C, unplanned partial slots, an operand read
with the wrong layout, an accumulator kept in fp16/bf16, and probes of tiles narrower than the
K-iteration count."""

import re
import types

import numpy as np
import pytest
import torch

import refsim
from conformance import Case, KernelUnderTest, check_case
from conformance.adapter import reference
from conformance.checks import check_guard_bands, check_partial_slots
from conformance.diagnosis import decode_layout, decode_precision, decode_probe, diagnose
from conformance.guards import GUARD, OutputLayout
from conformance.harness import POISON, cast_to, launch, to_numpy
from conformance.inputs import (
    A_PADDING,
    B_PADDING,
    BIAS_STRIDE,
    BIAS_UNIT,
    as_tensors,
    integer_inputs,
    probe_inputs,
)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = [pytest.mark.gpu] if DEVICE == "cuda" else [pytest.mark.interpreter]


def _torch_kernel(config, a, b, bias=None, out=None, trace=False):
    """A correct kernel: fp32 products and sums (exact on integer inputs), one cast."""
    out.copy_(a.float() @ b.float() + (0 if bias is None else bias.float()))
    return types.SimpleNamespace(output=out)


def _poke(tensor, i, j, value):
    """Write ``value`` where ``tensor[i, j]`` would lie by its strides, inside or outside it."""
    address = tensor.storage_offset() + i * tensor.stride(0) + j * tensor.stride(1)
    torch.as_strided(tensor, (), (), address).fill_(value)


def test_strided_and_transposed_operands_are_views_with_padded_rows():
    case = Case("layouts", 20, 12, 40, transpose_a=True, strided=True)
    a, b, bias = integer_inputs(case)
    ta, tb, tbias = as_tensors(case, a, b, bias, DEVICE)
    assert ta.stride() == (1, case.m + A_PADDING)
    assert tb.stride() == (case.n + B_PADDING, 1)
    assert tbias.stride() == (BIAS_STRIDE,)
    for tensor, array in ((ta, a), (tb, b), (tbias, bias)):
        np.testing.assert_array_equal(to_numpy(tensor), array)


@pytest.mark.parametrize("transpose_c", [False, True])
def test_the_output_is_a_nan_view_inside_guard_bands(transpose_c):
    case = Case("guarded", 20, 12, 40, transpose_c=transpose_c, strided=True)
    config = case.config()
    layout = OutputLayout.of(config, case)
    storage, out = layout.allocate(torch.float32, DEVICE)
    assert out.shape == (config.m, config.n)
    assert (out.stride(0) == 1) == transpose_c
    assert torch.isnan(out).all()
    assert (storage == GUARD).sum() == storage.numel() - config.m * config.n
    assert layout.storage_of(out).data_ptr() == storage.data_ptr()
    assert layout.storage_of(out.clone()) is None


# (transpose_c, strided, element written, the reason expected); 16 x 32 blocks, so 16 guard
# rows and 32 guard columns on either side, then a strided layout's padding.
GUARD_WRITES = [
    (False, False, (64, 3), "C[64, 3] written: row 64 is outside M = 64 (guard band)"),
    (False, False, (-1, 0), "C[-1, 0] written: row -1 is outside M = 64 (guard band)"),
    (True, False, (5, 40), "C[5, 40] written: column 40 is outside N = 40 (guard band)"),
    (
        True,
        True,
        (64 + 16 + 2, 7),
        "C[82, 7] written: row 82 is outside M = 64 (leading-dimension padding)",
    ),
    (
        False,
        True,
        (5, 40 + 32 + 1),
        "C[5, 73] written: column 73 is outside N = 40 (leading-dimension padding)",
    ),
]


@pytest.mark.parametrize(("transpose_c", "strided", "element", "reason"), GUARD_WRITES)
def test_a_write_outside_the_matrix_is_found_with_its_place(transpose_c, strided, element, reason):
    case = Case("guard", 64, 40, 40, "persistent", transpose_c=transpose_c, strided=strided)

    def writes_outside(config, a, b, bias=None, out=None, trace=False):
        run = _torch_kernel(config, a, b, bias, out)
        _poke(out, *element, 1.0)
        return run

    kernel = KernelUnderTest("writes-outside", writes_outside)
    run, _ = launch(kernel, case.config(), case, integer_inputs(case), DEVICE, trace=True)
    finding = check_guard_bands(case.config(), case, run)
    assert (finding.passed, finding.cause) == (False, "write outside the tile or matrix")
    assert finding.reasons == [reason]
    result = check_case(kernel, case, DEVICE, determinism_runs=2)
    assert result.causes == ["write outside the tile or matrix"], result.findings


def test_a_kernel_that_stays_inside_leaves_the_guards_alone():
    case = Case("inside", 64, 40, 40, transpose_c=True, strided=True)
    run, _ = launch(
        KernelUnderTest("torch", _torch_kernel),
        case.config(),
        case,
        integer_inputs(case),
        DEVICE,
        True,
    )
    assert check_guard_bands(case.config(), case, run).passed


LAYOUT_CASES = [
    Case(
        "layout-persistent",
        40,
        72,
        40,
        "persistent",
        dtype="bf16",
        transpose_a=True,
        strided=True,
        transpose_c=True,
    ),
    Case(
        "layout-split-k",
        64,
        64,
        80,
        "split_k",
        transpose_a=True,
        strided=True,
        transpose_c=True,
        options=(("split_k", 3),),
    ),
    Case(
        "layout-work-stealing",
        64,
        96,
        40,
        "work_stealing",
        dtype="fp16",
        transpose_b=True,
        strided=True,
    ),
    Case(
        "layout-streamk",
        64,
        64,
        80,
        fixup="last-arriver",
        dtype="fp16",
        transpose_b=True,
        strided=True,
        transpose_c=True,
        cus=3,
        options=(("sk_hybrid", "one-wave"),),
    ),
]


@pytest.mark.parametrize("case", LAYOUT_CASES, ids=lambda c: c.name)
def test_strided_and_transposed_cases_pass_with_the_reference_kernels(case):
    result = check_case(reference(), case, DEVICE, determinism_runs=2)
    assert result.passed, [(f.check, f.reasons) for f in result.findings if not f.passed]
    checks = {f.check for f in result.findings}
    assert "guard bands" in checks
    assert ("partial slots" in checks) == (case.strategy in ("split_k", "streamk"))


def _partials_run(config, sim, written):
    """A traced run's partial workspace: refsim's partials in their slots, POISON elsewhere,
    and ``written`` slots overwritten."""
    kernel = reference()
    slots = 2 + max(
        kernel.partial_slot(config, r.program, r.tile) for r in sim.records if r.role != "dp"
    )
    partials = torch.full((slots, config.block_m, config.block_n), POISON)
    for p in sim.partials:
        slot = kernel.partial_slot(config, p.program, p.tile)
        partials[slot, : p.value.shape[0], : p.value.shape[1]] = torch.from_numpy(p.value)
    for slot in written:
        partials[slot] = 1.0
    return types.SimpleNamespace(partials=partials)


def test_a_partial_stored_where_refsim_plans_none_is_found():
    case = Case("slots", 64, 64, 80, cus=3, options=(("sk_hybrid", "one-wave"),))
    config = case.config()
    a, b, bias = integer_inputs(case)
    sim = refsim.simulate(config, a=a, b=b, bias=bias)
    kernel = reference()
    planned = {kernel.partial_slot(config, p.program, p.tile) for p in sim.partials}
    assert check_partial_slots(kernel, config, _partials_run(config, sim, []), sim).passed
    owner = next(
        r for r in sim.records if r.role == "sk-owner" and r.tile in {p.tile for p in sim.partials}
    )
    owner_slot = kernel.partial_slot(config, owner.program, owner.tile)
    assert owner_slot not in planned  # owner-waits: the owner keeps its partial in registers
    run = _partials_run(config, sim, [owner_slot])
    guard_slot = len(run.partials) - 1
    run.partials[guard_slot] = 1.0
    finding = check_partial_slots(kernel, config, run, sim)
    assert (finding.passed, finding.cause) == (False, "write outside the tile or matrix")
    assert finding.reasons[0].startswith(f"slot {owner_slot} was written, but refsim plans no")
    assert re.search(
        rf"program {owner.program}'s slot for tiles? [0-9, ]*\b{owner.tile}\b", finding.reasons[0]
    )
    assert finding.reasons[1].startswith(f"slot {guard_slot} was written: it is past the last")


def _operand_storage(tensor):
    flat = torch.empty(0, dtype=tensor.dtype, device=tensor.device)
    return flat.set_(tensor.untyped_storage())


def _misread_output(tensors, operand, strides):
    """What a kernel computes when it reads operand ``operand`` (0 A, 1 B, 2 bias) of
    ``tensors`` with ``strides``: a float64 product (exact on integer inputs), cast."""
    tensors = list(tensors)
    real = tensors[operand]
    tensors[operand] = torch.as_strided(
        _operand_storage(real), real.shape, strides, real.storage_offset()
    )
    a, b, bias = (t.double() for t in tensors)
    return cast_to((a @ b + bias).cpu().numpy(), real.dtype)


MISREADS = [
    # (case layout, operand, strides the kernel assumes, detail expected)
    (
        {"transpose_a": True},
        0,
        (40, 1),
        "A read as row-major (strides (40, 1)), but it is column-major (strides (1, 64))",
    ),
    (
        {"strided": True},
        0,
        (40, 1),
        "A read as row-major (strides (40, 1)), but it is row-major with leading dimension 43 (strides (43, 1))",
    ),
    (
        {"transpose_b": True, "strided": True},
        1,
        (48, 1),
        "B read as row-major (strides (48, 1)), but it is column-major with leading dimension 48 (strides (1, 48))",
    ),
    ({"strided": True}, 2, (1,), "the bias read as stride 1, but it is stride 2"),
]


@pytest.mark.parametrize(("layout", "operand", "strides", "detail"), MISREADS)
def test_an_operand_read_with_the_wrong_strides_is_named(layout, operand, strides, detail):
    case = Case("misread", 64, 48, 40, "persistent", dtype="fp16", **layout)
    config = case.config()
    tensors = as_tensors(case, *integer_inputs(case), DEVICE)
    got = _misread_output(tensors, operand, strides)
    expected = _misread_output(tensors, 0, tensors[0].stride())
    output_layout = OutputLayout.of(config, case)
    decoded = decode_layout(config, 0, 0, got, expected, tensors, output_layout, torch.float16)
    assert decoded == ("operand layout ignored", detail)
    wrong_bias = expected - to_numpy(tensors[2])[None, :]  # another fault: not a layout
    assert (
        decode_layout(config, 0, 0, wrong_bias, expected, tensors, output_layout, torch.float16)
        is None
    )


@pytest.mark.parametrize("transpose_c", [False, True])
def test_c_written_with_the_wrong_layout_is_named(transpose_c):
    case = Case("c-layout", 40, 48, 40, "persistent", transpose_c=transpose_c)
    config = case.config()
    tensors = as_tensors(case, *integer_inputs(case), DEVICE)
    expected = _misread_output(tensors, 0, tensors[0].stride())
    output_layout = OutputLayout.of(config, case)
    storage, out = output_layout.allocate(torch.float32, DEVICE)
    contiguous = (1, config.m) if not transpose_c else (config.n, 1)  # the other layout's
    torch.as_strided(storage, out.shape, contiguous, out.storage_offset()).copy_(
        torch.from_numpy(expected)
    )
    decoded = decode_layout(
        config, 0, 0, to_numpy(out), expected, tensors, output_layout, torch.float32
    )
    major = "column-major" if not transpose_c else "row-major"
    assert decoded[0] == "operand layout ignored"
    assert decoded[1].startswith(f"C written as {major} (strides {contiguous}), but it is ")


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_an_accumulator_rounded_to_the_input_dtype_is_named(dtype):
    case = Case("precision", 32, 64, 80, "persistent", dtype=dtype)
    config = case.config()
    tensors = as_tensors(case, *integer_inputs(case), DEVICE)
    a, b, bias = (t.float() for t in tensors)
    acc = torch.zeros(config.m, config.n, device=a.device)
    for k in range(0, config.k, config.block_k):
        block = a[:, k : k + config.block_k] @ b[k : k + config.block_k]
        acc = (acc + block).to(tensors[0].dtype).float()
    got = to_numpy((acc + bias).to(tensors[0].dtype))
    expected = cast_to(to_numpy(a @ b + bias), tensors[0].dtype)
    assert (got != expected).any()  # the integer inputs' sums are large enough to show it
    sim = refsim.simulate(config)
    decoded = decode_precision(config, sim, 0, 0, 0, got, tensors, tensors[0].dtype)
    assert decoded == (
        "accumulator precision",
        f"the accumulator is rounded to {dtype} after every K-iteration, not kept in fp32",
    )
    assert decode_precision(config, sim, 0, 0, 0, expected, tensors, tensors[0].dtype) is None


def _without_iteration(config, inputs, iteration):
    """The probe output of a kernel that leaves out one K-iteration (float64, exact)."""
    a, b, bias = inputs
    b = b.copy()
    b[iteration * config.block_k : (iteration + 1) * config.block_k] = 0.0
    return a @ b + bias


@pytest.mark.parametrize(("m", "n"), [(40, 1), (40, 2), (1, 3), (40, 64)])
def test_the_probe_names_every_missing_iteration_of_a_narrow_tile(m, n):
    config = Case("narrow", m, n, 80).config()  # 5 K-iterations
    inputs = probe_inputs(config)
    a, b, bias = inputs
    assert decode_probe(config, a @ b + bias, 0, 0)[0] == "unclassified"
    for iteration in range(3 if m * n < 5 else 5):  # a 1 x 3 tile probes only 3 iterations
        got = _without_iteration(config, inputs, iteration)
        assert decode_probe(config, got, 0, 0) == (
            "missing K-segment",
            f"K-iterations [{iteration}] contributed nothing",
        )


def test_the_probe_values_stay_exact_integers():
    config = Case("probe", 40, 2, 80).config()
    a, b, bias = probe_inputs(config)
    out = a @ b + bias
    assert np.array_equal(out, np.round(out)) and out.max() < 2**14
    assert set(np.unique(np.floor(out / BIAS_UNIT))) <= {1.0, 2.0, 3.0}


def test_a_kernel_skipping_an_iteration_of_a_one_column_output_is_diagnosed():
    def skips_iteration_2(config, a, b, bias=None, out=None, trace=False):
        keep = torch.ones(config.k, dtype=torch.bool, device=a.device)
        keep[2 * config.block_k : 3 * config.block_k] = False
        out.copy_(a.float()[:, keep] @ b.float()[keep] + bias.float())
        return types.SimpleNamespace(output=out)

    case = Case("one-column", 40, 1, 80, "persistent", transpose_b=True, strided=True)
    kernel = KernelUnderTest("skips", skips_iteration_2)
    run, tensors = launch(kernel, case.config(), case, integer_inputs(case), DEVICE, trace=False)
    expected = cast_to(
        to_numpy(tensors[0]) @ to_numpy(tensors[1]) + to_numpy(tensors[2]), torch.float32
    )
    groups, info = diagnose(
        kernel,
        case,
        case.config(),
        to_numpy(run.output),
        expected,
        None,
        DEVICE,
        tensors,
        torch.float32,
    )
    assert (info["cause"], info["detail"]) == (
        "missing K-segment",
        "K-iterations [2] contributed nothing",
    )
    assert [(group.cause, group.tiles, group.elements) for group in groups] == [
        ("missing K-segment", (0, 1, 2), 40)
    ]  # every tile of the one column, each of its elements
