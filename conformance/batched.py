"""The batched check: one call computing every product of a batch gives refsim's output for each.

A batched case (``Case.batch`` products, no bias) runs the kernel's ``run_batched(config, a, b,
out)`` -- for the project's kernels the one-launch data-parallel path behind ``kernels.bmm``
and batched ``kernels.matmul`` -- three times: on the case's layout, again with new inputs in
new tensors (for the project's kernels, the prepared call of the first call's key), and with
every batch stride longer and the per-product strides unchanged (another key). Each product's
operands are in the case's per-product layouts (transposed, strided); ``broadcast`` gives one
operand batch stride 0; a ``strided`` case also leaves a gap between products. The output lies in
guard bands per product (:class:`conformance.guards.OutputLayout`), so a write outside a
product's matrix shows.
"""

import dataclasses

import numpy as np
import torch

import refsim
from kernels.dtypes import TORCH_DTYPES

from .causes import CAUSE_RANK, Cause
from .checks import Finding, grouped_finding
from .diagnosis import CauseGroup, SubstitutionDiagnoser, wrong_tiles
from .guards import GUARD, OutputLayout
from .harness import cast_to, to_numpy
from .inputs import A_PADDING, B_PADDING, integer_inputs, padding_values
from .repeated import stale_operands

# Each product's integer inputs are the case's with this seed offset times its index added.
PRODUCT_SEED_STRIDE = 7919
# The calls' seed offsets (as in conformance.repeated: values no other check uses).
FIRST_SEED, SAME_KEY_SEED, OTHER_STRIDES_SEED = 201, 202, 203
# Stored lines left between two products of an operand: in a strided case, and (more) in the
# third call, whose batch strides differ from the case's and nothing else does.
STRIDED_GAP = 1
OTHER_GAP = 3


@dataclasses.dataclass(frozen=True)
class BatchedCall:
    """One call of the check: its inputs' seed offset, the lines left between products, and
    what the reasons call it."""

    seed_offset: int
    gap: int
    description: str


def batched_calls(case):
    gap = STRIDED_GAP if case.strided else 0
    return (
        BatchedCall(FIRST_SEED, gap, "the first batched call"),
        BatchedCall(
            SAME_KEY_SEED,
            gap,
            "a repeated batched call with the same shapes and strides (the same key: the "
            "prepared path), new inputs in new tensors",
        ),
        BatchedCall(
            OTHER_STRIDES_SEED,
            gap + OTHER_GAP,
            f"a batched call whose operands leave {gap + OTHER_GAP} more lines between products "
            "(other batch strides, another key), after calls with the case's",
        ),
    )


def batch_inputs(case, seed_offset):
    """``(a, b)``: float64 integer arrays ``(count, M, K)`` and ``(count, K, N)``, one entry per
    product (a single one for the broadcast operand), from :func:`integer_inputs`."""
    products = [
        integer_inputs(case, seed_offset + i * PRODUCT_SEED_STRIDE) for i in range(case.batch)
    ]
    a = np.stack([p[0] for p in products[: 1 if case.broadcast == "a" else None]])
    b = np.stack([p[1] for p in products[: 1 if case.broadcast == "b" else None]])
    return a, b


def batched_operand(values, transposed, padding, gap, batch, dtype, device):
    """A ``(batch, rows, cols)`` tensor holding ``values`` (``(count, rows, cols)``, count 1 for
    a broadcast operand, expanded with batch stride 0): each product stored row-major, or
    column-major when ``transposed``, with ``padding`` more elements per stored line and
    ``gap`` more stored lines after each product, which hold :func:`padding_values`."""
    stored = values.transpose(0, 2, 1) if transposed else values
    count, lines, width = stored.shape
    storage = padding_values((count, lines + gap, width + padding))
    storage[:, :lines, :width] = stored
    tensor = torch.from_numpy(storage).to(TORCH_DTYPES[dtype]).to(device)[:, :lines, :width]
    if transposed:
        tensor = tensor.transpose(1, 2)
    return tensor.expand(batch, *tensor.shape[1:])


def batched_output(config, case, dtype, device):
    """``(storage, out)``: each product's output inside its own guard bands
    (:class:`OutputLayout`), the products one after another, the views NaN-filled."""
    layout = OutputLayout.of(config, case)
    storage = torch.full((case.batch, *layout.shape), GUARD, dtype=dtype, device=device)
    out = storage.as_strided(
        (case.batch, config.m, config.n),
        (storage.stride(0), *layout.strides),
        layout.offset,
    )
    out.fill_(float("nan"))
    return storage, out


def check_batched(kut, case, config, device):
    """Each of :func:`batched_calls` computes every product as refsim does, bit for bit
    (integer inputs), and writes nothing outside the products' matrices. A kernel without
    ``run_batched`` is not run, and the finding says so.

    The first wrong call fails the check, each reason naming the call. A wrong product is
    diagnosed tile by tile (:class:`conformance.diagnosis.SubstitutionDiagnoser`, no
    relaunch): a tile holding what another batch entry's A or B, or another product's output,
    gives is ``wrong batch entry``; what an earlier call's operands give is ``operand of an
    earlier call``; then the value decoders (NaN, layouts, rounding, precision)."""
    if kut.run_batched is None:
        return Finding(
            "batched calls", True, ["not run: the kernel has no batched path"], ran=False
        )
    dtype = TORCH_DTYPES[case.dtype]
    reasons, earlier = [], []
    for number, call in enumerate(batched_calls(case), start=1):
        values = batch_inputs(case, call.seed_offset)
        operands = [
            batched_operand(v, transposed, padding if case.strided else 0, call.gap,
                            case.batch, case.dtype, device)
            for v, transposed, padding in zip(
                values, (case.transpose_a, case.transpose_b), (A_PADDING, B_PADDING)
            )
        ]  # fmt: skip
        storage, out = batched_output(config, case, dtype, device)
        result = kut.run_batched(config, *operands, out)
        if out.is_cuda:
            torch.cuda.synchronize(out.device)
        note = f" (call {number}: {call.description})"
        strays = _stray_writes(config, case, storage)
        if strays:
            return Finding("batched calls", False, [s + note for s in strays], _OUTSIDE)
        finding = _compare(case, config, values, operands, result, earlier, device, note)
        if finding is not None:
            return finding
        reasons.append(f"call {number}, {call.description}: refsim's output for all {case.batch}")
        earlier.append((f"call {number}", values, [t.stride(0) for t in operands]))
    return Finding("batched calls", True, reasons)


_OUTSIDE = Cause.WRITE_OUTSIDE_TILE_OR_MATRIX


def _stray_writes(config, case, storage):
    """One line per product with a guard element written, naming the first."""
    layout = OutputLayout.of(config, case)
    lines = []
    for i in range(case.batch):
        written = layout.written(storage[i])
        if written:
            lines.append(
                f"{_OUTSIDE}: product {i}, {len(written)} guard elements, first "
                f"{layout.describe(*written[0])}"
            )
    return lines


def _entry(values, i):
    """Product ``i``'s operand of ``values`` (entry 0 of a broadcast one)."""
    return values[i if len(values) > 1 else 0]


def _compare(case, config, values, operands, result, earlier, device, note):
    """None when every product of ``result`` is refsim's; else the failed finding."""
    a, b = values
    out_dtype = result.dtype
    got = [to_numpy(result[i]) for i in range(case.batch)]
    expected = []
    for i in range(case.batch):
        sim = refsim.simulate(config, a=_entry(a, i), b=_entry(b, i))
        expected.append((cast_to(sim.output, out_dtype), sim))
    wrong = {
        i: wrong_tiles(config, got[i], expected[i][0])
        for i in range(case.batch)
        if not np.array_equal(got[i], expected[i][0])
    }
    if not wrong:
        return None
    groups, first_info = [], None
    for i, tiles in wrong.items():
        alternatives = _other_entries(case, values, i, out_dtype)
        for call, old, strides in earlier:
            alternatives += _misread_batch(operands, values, i, call, strides, out_dtype)
            old_inputs = (_entry(old[0], i), _entry(old[1], i), None)
            alternatives += stale_operands((_entry(a, i), _entry(b, i), None), [(call, old_inputs)],
                                           out_dtype)  # fmt: skip
        tensors = (operands[0][i], operands[1][i], None)
        product, sim = expected[i]
        diagnoser = SubstitutionDiagnoser(
            None, case, config, got[i], product, sim, device, tensors, out_dtype, alternatives
        )
        product_groups, info = diagnoser.run(wrong=tiles)
        groups += [_in_product(group, i) for group in product_groups]
        first_info = first_info or dict(info, tile=f"{i}:{info['tile']}")
    merged = _merge(groups)
    return grouped_finding("batched calls", merged, first_info, note=note)


def _other_entries(case, values, i, dtype):
    """Alternatives for product ``i``: another product's output, and the product with another
    entry's A or B (entry 0 is what a batch stride taken as 0 reads)."""
    a, b = values
    alternatives = []
    for j in range(case.batch):
        if j == i:
            continue
        for what, pair in (
            (f"product {j}'s output", (_entry(a, j), _entry(b, j))),
            (f"A of product {j} times its own B", (_entry(a, j), _entry(b, i))),
            (f"its own A times B of product {j}", (_entry(a, i), _entry(b, j))),
        ):
            if np.array_equal(pair[0], _entry(a, i)) and np.array_equal(pair[1], _entry(b, i)):
                continue  # a broadcast operand: the same product
            alternatives.append(
                (Cause.WRONG_BATCH_ENTRY, f"it holds {what}", _product(*pair, dtype))
            )
    return alternatives


def _misread_batch(operands, values, i, call, strides, dtype):
    """Alternatives for product ``i``: its operands read at an earlier ``call``'s batch strides
    (``strides``, A's and B's) where this call's differ -- what a launch built for that call
    reads -- each such operand alone and all of them, when the reads stay inside the operands'
    storage."""
    misreads = {}
    for index, (tensor, old_stride) in enumerate(zip(operands, strides)):
        if old_stride == tensor.stride(0):
            continue
        per_product = tensor.stride()[1:]
        offset = tensor.storage_offset() + i * old_stride
        last = offset + sum((size - 1) * st for size, st in zip(tensor.shape[1:], per_product))
        if last < tensor.untyped_storage().nbytes() // tensor.element_size():
            misreads[index] = to_numpy(tensor.as_strided(tensor.shape[1:], per_product, offset))
    choices = [(index,) for index in misreads] + ([tuple(misreads)] if len(misreads) > 1 else [])
    alternatives = []
    for chosen in choices:
        pair = [_entry(values[0], i), _entry(values[1], i)]
        for index in chosen:
            pair[index] = misreads[index]
        read = ", and ".join(
            f"{'AB'[index]} with batch stride {strides[index]}, not {operands[index].stride(0)}"
            for index in chosen
        )
        alternatives.append(
            (Cause.OPERAND_LAYOUT_IGNORED, f"it read {read} ({call}'s)", _product(*pair, dtype))
        )
    return alternatives


def _product(a, b, dtype):
    return lambda: cast_to(a @ b, dtype)


def _in_product(group, i):
    """A product's CauseGroup with its tiles named ``"i:tile"`` and its detail prefixed."""
    return CauseGroup(
        group.cause,
        tuple(f"{i}:{tile}" for tile in group.tiles),
        group.elements,
        f"product {i}: {group.detail}",
    )


def _merge(groups):
    """The products' groups as one group per cause, lead cause first (the first detail kept)."""
    merged = {}
    for group in groups:
        if group.cause in merged:
            first = merged[group.cause]
            group = CauseGroup(
                group.cause, first.tiles + group.tiles, first.elements + group.elements,
                first.detail,
            )  # fmt: skip
        merged[group.cause] = group
    return sorted(merged.values(), key=lambda g: CAUSE_RANK[g.cause])
