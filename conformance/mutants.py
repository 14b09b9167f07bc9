"""Known-wrong kernels: each is the real ``kernels`` package with one small, local change.

A mutant is data -- the file, the lines as they are, the lines as the mutant has them (one or
two lines changed, swapped or added), the case that
exposes it and the cause the suite must report. :func:`build` writes the patched package to a
private folder under a new package name and imports it, so each mutant is a real Triton kernel
(compiled on a GPU, interpreted on a CPU) that differs from ``kernels`` only where stated.
"""

import dataclasses
import importlib
import pathlib
import shutil
import sys
import tempfile

import kernels

from .adapter import for_package
from .cases import Case
from .causes import Cause


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    description: str
    file: str
    original: str
    mutated: str
    case: Case
    expected_cause: Cause
    gpu_only: bool = False  # its path runs only on a GPU (a CUDA graph's replay)


# The split-K reduction's read of a band's first slice, which the split-k-reverse mutant keeps.
_FIRST_BAND_LOAD = (
    "    total = load_partial_rows(\n"
    "        partials_ptr, slot, row_begin, tile, events, BAND_ROWS, BLOCK_M, BLOCK_N, False\n"
    "    )\n"
)
_SK = {"strategy": "streamk", "fixup": "owner-waits", "options": (("sk_hybrid", "one-wave"),)}
_LA = {"fixup": "last-arriver", "options": (("sk_hybrid", "one-wave"),)}
# The owner-waits contributor's store and publish, as kernels/streamk.py has them.
_STORE_ARGUMENTS = "partials_ptr, my_slot, acc, tile, events, BLOCK_M, BLOCK_N, TRACE"
_CONTRIBUTOR_RELEASE = (
    "        if k_begin != 0:\n"
    f"            store_partial({_STORE_ARGUMENTS})\n"
    "            publish(flags_ptr, lp, epoch, events, TRACE)"
)
# The trailing arguments of the last arriver's partial loads, as kernels/streamk.py has them.
_LOAD_ARGUMENTS = "events, BLOCK_M, BLOCK_N, TRACE"

MUTANTS = (
    Mutant(
        "bias-every-contributor",
        "every Stream-K contributor adds the bias to its partial",
        "streamk.py",
        _CONTRIBUTOR_RELEASE,
        "        if k_begin != 0:\n"
        "            store_partial(partials_ptr, my_slot, acc + tl.load(bias_view[0] + (pid_n"
        " * BLOCK_N + tl.arange(0, BLOCK_N)) * bias_view[1], mask=(pid_n * BLOCK_N"
        " + tl.arange(0, BLOCK_N)) < N, other=0.0).to(tl.float32)[None, :], tile, events,"
        " BLOCK_M, BLOCK_N, TRACE)\n"
        "            publish(flags_ptr, lp, epoch, events, TRACE)",
        Case("mutant-bias-every-contributor", 64, 64, 80, cus=3, **_SK),
        Cause.BIAS_APPLIED_MORE_THAN_ONCE,
    ),
    Mutant(
        "bias-by-row",
        "the epilogue indexes the bias by row instead of column",
        "tile.py",
        "            bias = tl.load(bias_ptr + offs_n * stride_bias, mask=offs_n < N, other=0.0)\n"
        "            acc = acc + bias.to(tl.float32)[None, :]",
        "            bias = tl.load(bias_ptr + offs_m * stride_bias, mask=offs_m < N, other=0.0)\n"
        "            acc = acc + bias.to(tl.float32)[:, None]",
        Case("mutant-bias-by-row", 64, 64, 40, strategy="persistent"),
        Cause.BIAS_ALONG_WRONG_AXIS,
    ),
    Mutant(
        "dropped-partial",
        "the owner skips its last contributor's partial",
        "streamk.py",
        "            for q in range(lp + 1, last + 1):\n"
        "                wait_for(flags_ptr, q, epoch, events, TRACE, BACKEND)",
        "            for q in range(lp + 1, last):\n"
        "                wait_for(flags_ptr, q, epoch, events, TRACE, BACKEND)",
        Case("mutant-dropped-partial", 64, 64, 80, cus=3, **_SK),
        Cause.MISSING_K_SEGMENT,
    ),
    Mutant(
        "sk-split-off-by-one",
        "every Stream-K range but the last ends one iteration early",
        "streamk.py",
        "    start, end = contract.streamk_iter_range(lp, sk_iters, num_programs)\n"
        "    step = dp_steps",
        "    start, end = contract.streamk_iter_range(lp, sk_iters, num_programs)\n"
        "    end = end - (lp < num_programs - 1).to(tl.int32)\n    step = dp_steps",
        Case("mutant-sk-split-off-by-one", 64, 64, 80, cus=3, **_SK),
        Cause.MISSING_K_SEGMENT,
    ),
    Mutant(
        "wrong-group-m",
        "the data-parallel swizzle uses GROUP_M + 1",
        "tile.py",
        "    pid_m, pid_n = contract.grouped_tile(tile, num_pid_m, num_pid_n, GROUP_M)\n"
        "    t_start = trace_begin(step, TRACE, BACKEND)",
        "    pid_m, pid_n = contract.grouped_tile(tile, num_pid_m, num_pid_n, GROUP_M + 1)\n"
        "    t_start = trace_begin(step, TRACE, BACKEND)",
        Case("mutant-wrong-group-m", 96, 96, 40, strategy="persistent", group_m=2),
        Cause.WRONG_TILE_ORDER,
    ),
    Mutant(
        "flag-before-store",
        "a contributor publishes its flag before storing its partial",
        "streamk.py",
        _CONTRIBUTOR_RELEASE,
        "        if k_begin != 0:\n"
        "            publish(flags_ptr, lp, epoch, events, TRACE)\n"
        f"            store_partial({_STORE_ARGUMENTS})",
        Case("mutant-flag-before-store", 64, 64, 80, cus=3, **_SK),
        Cause.FLAG_SET_BEFORE_PARTIAL_STORED,
    ),
    Mutant(
        "ws-counter-gap",
        "each work-stealing counter stops one tile short of its range",
        "work_stealing.py",
        "    _, end = contract.ws_counter_range(counter, total_tiles, num_counters)",
        "    _, end = contract.ws_counter_range(counter, total_tiles, num_counters)\n"
        "    end = end - 1",
        Case("mutant-ws-counter-gap", 64, 96, 40, strategy="work_stealing"),
        Cause.TILE_NEVER_WRITTEN,
    ),
    Mutant(
        "split-k-reverse",
        "the split-K reduction adds the slices in reverse order",
        "split_k.py",
        "    slot = contract.split_k_partial_slot(tile, 0, SPLIT_K)\n"
        f"{_FIRST_BAND_LOAD}"
        "    # unrolled, the slices' loads are all in flight at once; the sum keeps split order\n"
        "    for split in tl.range(1, SPLIT_K, loop_unroll_factor=REDUCE_UNROLL):\n"
        "        slot = contract.split_k_partial_slot(tile, split, SPLIT_K)",
        "    slot = contract.split_k_partial_slot(tile, SPLIT_K - 1, SPLIT_K)\n"
        f"{_FIRST_BAND_LOAD}"
        "    # unrolled, the slices' loads are all in flight at once; the sum keeps split order\n"
        "    for split in tl.range(1, SPLIT_K, loop_unroll_factor=REDUCE_UNROLL):\n"
        "        slot = contract.split_k_partial_slot(tile, SPLIT_K - 1 - split, SPLIT_K)",
        Case("mutant-split-k-reverse", 64, 64, 80, strategy="split_k", options=(("split_k", 3),)),
        Cause.WRONG_ADDITION_ORDER,
    ),
    Mutant(
        "split-k-band-rows",
        "every band of the split-K reduction reads the first band's rows of the partials",
        "split_k.py",
        "    row_begin = band * BAND_ROWS\n",
        "    row_begin = band * 0\n",
        Case(
            "mutant-split-k-band-rows",
            64,
            64,
            80,
            strategy="split_k",
            options=(("split_k", 3), ("reduce_bands", 4)),
        ),
        Cause.TILE_WRITTEN_TO_WRONG_PLACE,
    ),
    Mutant(
        "bias-after-cast",
        "the epilogue casts to the output dtype before adding the bias",
        "tile.py",
        "            acc = acc + bias.to(tl.float32)[None, :]",
        "            acc = acc.to(c_ptr.dtype.element_ty).to(tl.float32) + bias.to(tl.float32)"
        "[None, :]",
        Case("mutant-bias-after-cast", 64, 64, 40, strategy="persistent", dtype="fp16"),
        Cause.BIAS_ADDED_AFTER_CAST,
    ),
    Mutant(
        "last-arriver-reverse",
        "the last arriver adds the partials in reverse K order",
        "streamk.py",
        "            owner_slot = contract.streamk_partial_slot(\n"
        "                owner, tile, dp_tiles, iters, sk_iters, num_programs\n"
        "            )\n"
        f"            total = load_partial(partials_ptr, owner_slot, tile, {_LOAD_ARGUMENTS})\n"
        "            for q in range(owner + 1, last + 1):\n"
        "                q_slot = contract.streamk_partial_slot(\n"
        "                    q, tile, dp_tiles, iters, sk_iters, num_programs",
        "            owner_slot = contract.streamk_partial_slot(\n"
        "                last, tile, dp_tiles, iters, sk_iters, num_programs\n"
        "            )\n"
        f"            total = load_partial(partials_ptr, owner_slot, tile, {_LOAD_ARGUMENTS})\n"
        "            for q in range(owner + 1, last + 1):\n"
        "                q_slot = contract.streamk_partial_slot(\n"
        "                    owner + last - q, tile, dp_tiles, iters, sk_iters, num_programs",
        Case("mutant-last-arriver-reverse", 16, 32, 160, **_LA),
        Cause.WRONG_ADDITION_ORDER,
    ),
    Mutant(
        "turnstile-no-wait",
        "a turnstile contributor adds its predecessor's partial without waiting for its flag",
        "streamk.py",
        "        if lp > owner:\n            wait_for(flags_ptr, lp - 1, epoch, events, TRACE, BACKEND)\n",
        "        if lp > owner:\n",
        Case("mutant-turnstile-no-wait", 64, 64, 80, cus=3, **dict(_SK, fixup="turnstile")),
        Cause.PARTIAL_READ_BEFORE_RELEASE,
    ),
    Mutant(
        "last-arriver-early",
        "the second-to-last arrival at a tile's counter reduces (off by one on the count)",
        "streamk.py",
        "        if arrived == last - owner:\n",
        "        if arrived == last - owner - 1:\n",
        Case("mutant-last-arriver-early", 64, 64, 80, cus=3, **_LA),
        Cause.PARTIAL_READ_BEFORE_RELEASE,
    ),
    Mutant(
        "last-arriver-own-last",
        "the last arriver adds the others' partials in K order, then its own accumulator last",
        "streamk.py",
        f"            total = load_partial(partials_ptr, owner_slot, tile, {_LOAD_ARGUMENTS})\n"
        "            for q in range(owner + 1, last + 1):\n"
        "                q_slot = contract.streamk_partial_slot(\n"
        "                    q, tile, dp_tiles, iters, sk_iters, num_programs\n"
        "                )\n"
        f"                total += load_partial(partials_ptr, q_slot, tile, {_LOAD_ARGUMENTS})",
        "            total = load_partial(partials_ptr, owner_slot, tile, "
        f"{_LOAD_ARGUMENTS}) * (lp != owner).to(tl.float32)\n"
        "            for q in range(owner + 1, last + 1):\n"
        "                q_slot = contract.streamk_partial_slot(\n"
        "                    q, tile, dp_tiles, iters, sk_iters, num_programs\n"
        "                )\n"
        "                total += load_partial(partials_ptr, q_slot, tile, "
        f"{_LOAD_ARGUMENTS}) * (q != lp).to(tl.float32)\n"
        "            total += acc",
        Case("mutant-last-arriver-own-last", 16, 32, 160, **_LA),
        Cause.WRONG_ADDITION_ORDER,
    ),
    Mutant(
        "stale-epoch",
        "the workspace hands every launch the same flag epoch",
        "workspace.py",
        "        self._epoch += 1\n",
        "        self._epoch = 1\n",
        Case("mutant-stale-epoch", 64, 64, 80, cus=3, **_SK),
        Cause.FLAG_HELD_STALE_EPOCH,
    ),
    Mutant(
        "trace-rows-short",
        "the trace is sized one row per program short of the longest schedule",
        "launch_spec.py",
        "    max_steps = max_steps + EXTRA_TRACE_ROWS if trace else 1\n",
        "    max_steps = max_steps - 1 if trace else 1\n",
        Case("mutant-trace-rows-short", 64, 64, 80, cus=3, **_SK),
        Cause.RECORD_OVERRUN,
    ),
    Mutant(
        "arrive-before-store",
        "a last-arriver contributor counts itself in before storing its partial",
        "streamk.py",
        f"        store_partial({_STORE_ARGUMENTS})\n"
        "        arrived = arrive(counters_ptr, counter, events, TRACE)\n",
        "        arrived = arrive(counters_ptr, counter, events, TRACE)\n"
        f"        store_partial({_STORE_ARGUMENTS})\n",
        Case("mutant-arrive-before-store", 64, 64, 80, cus=3, **_LA),
        Cause.FLAG_SET_BEFORE_PARTIAL_STORED,
    ),
    Mutant(
        "ws-reset-past-end",
        "the last work-stealing program to finish resets one counter past the end",
        "work_stealing.py",
        "        for index in range(0, num_counters + 1):",
        "        for index in range(0, num_counters + 2):",
        Case("mutant-ws-reset-past-end", 64, 96, 40, strategy="work_stealing"),
        Cause.WRITE_OUTSIDE_TILE_OR_MATRIX,
    ),
    Mutant(
        "epilogue-mask-row-m",
        "the epilogue's row mask is off by one: the last row tile also stores row M",
        "tile.py",
        "    mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)",
        "    mask = (offs_m[:, None] <= M) & (offs_n[None, :] < N)",
        Case("mutant-epilogue-mask-row-m", 40, 64, 40, strategy="persistent"),
        Cause.WRITE_OUTSIDE_TILE_OR_MATRIX,
    ),
    Mutant(
        "a-row-stride-ignored",
        "the K-loop reads A as row-major with leading dimension K, ignoring its row stride",
        "tile.py",
        "        a_ptrs = a_ptr + offs_m[:, None] * stride_am + k_idx[None, :] * stride_ak",
        "        a_ptrs = a_ptr + offs_m[:, None] * K + k_idx[None, :] * stride_ak",
        Case("mutant-a-row-stride-ignored", 64, 64, 40, strategy="persistent", strided=True),
        Cause.OPERAND_LAYOUT_IGNORED,
    ),
    Mutant(
        "bias-stride-ignored",
        "the epilogue reads the bias with stride 1, ignoring its stride",
        "tile.py",
        "            bias = tl.load(bias_ptr + offs_n * stride_bias, mask=offs_n < N, other=0.0)",
        "            bias = tl.load(bias_ptr + offs_n, mask=offs_n < N, other=0.0)",
        Case("mutant-bias-stride-ignored", 64, 64, 40, strategy="persistent", strided=True),
        Cause.OPERAND_LAYOUT_IGNORED,
    ),
    Mutant(
        "accumulator-in-input-dtype",
        "the K-loop rounds the accumulator to the input dtype after every K-iteration",
        "tile.py",
        "        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)",
        "        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)"
        ".to(a_ptr.dtype.element_ty).to(tl.float32)",
        Case("mutant-accumulator-in-input-dtype", 64, 64, 80, strategy="persistent", dtype="fp16"),
        Cause.ACCUMULATOR_PRECISION,
    ),
    Mutant(
        "partial-slot-off-by-one",
        "partials are stored one slot past their own",
        "tile.py",
        "    tl.store(ws_ptr + slot.to(tl.int64) * (BLOCK_M * BLOCK_N) + offs, acc)",
        "    tl.store(ws_ptr + (slot + 1).to(tl.int64) * (BLOCK_M * BLOCK_N) + offs, acc)",
        Case(
            "mutant-partial-slot-off-by-one",
            64,
            64,
            80,
            cus=3,
            fixup="owner-waits",
            options=(("sk_hybrid", "one-wave"),),
        ),
        Cause.WRITE_OUTSIDE_TILE_OR_MATRIX,
    ),
    Mutant(
        "owner-waits-next-epoch",
        "the owner waits for the epoch after this launch's (an off-by-one in the epoch scheme)",
        "streamk.py",
        "                wait_for(flags_ptr, q, epoch, events, TRACE, BACKEND)",
        "                wait_for(flags_ptr, q, epoch + 1, events, TRACE, BACKEND)",
        Case("mutant-owner-waits-next-epoch", 64, 64, 80, cus=3, **_SK),
        Cause.KERNEL_HUNG,
    ),
    Mutant(
        "atomic-output-not-zeroed",
        "the atomic fixup's output is not zeroed before its segments add into it",
        "streamk.py",
        "    zeroed = (c,) if config.protocol.atomic and config.sk_tiles else ()",
        "    zeroed = ()",
        Case(
            "mutant-atomic-output-not-zeroed",
            64,
            64,
            80,
            cus=3,
            fixup="atomic",
            options=(("sk_hybrid", "one-wave"),),
        ),
        Cause.OUTPUT_NOT_INITIALISED,
    ),
    Mutant(
        "epilogue-cast-toward-zero",
        "the epilogue casts fp32 to the output dtype rounding toward zero",
        "tile.py",
        "        tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=mask)",
        '        tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty, fp_downcast_rounding="rtz"),'
        " mask=mask)",
        Case("mutant-epilogue-cast-toward-zero", 64, 64, 40, strategy="persistent", dtype="fp16"),
        Cause.WRONG_ROUNDING_MODE,
    ),
    Mutant(
        "prepared-keeps-output",
        "a prepared call launches into the first call's output, not the caller's",
        "prepared.py",
        "            if t is not None and value is t\n",
        "            if t is not None and value is t and role != 3  # not the output, c\n",
        # atomic over 4 programs: 8 whole tiles, none split, so the output is not zeroed and
        # no other check compares a second untraced call of the key (no determinism runs)
        Case("mutant-prepared-keeps-output", 64, 64, 80, cus=4, fixup="atomic"),
        Cause.TILE_NEVER_WRITTEN,
    ),
    Mutant(
        "prepared-key-without-a-strides",
        "the prepared-call key leaves out A's strides: another layout of A reuses the first's",
        "prepared.py",
        "        a.shape,\n        a.stride(),\n",
        "        a.shape,\n",
        Case("mutant-prepared-key-without-a-strides", 64, 64, 40, strategy="persistent"),
        Cause.OPERAND_LAYOUT_IGNORED,
    ),
    Mutant(
        "batched-b-batch-stride-ignored",
        "the batched launch reads every product's B from the first product's",
        "data_parallel.py",
        "        b_ptr + pid_batch * stride_bb,\n",
        "        b_ptr,\n",
        Case(
            "mutant-batched-b-batch-stride-ignored",
            40,
            32,
            40,
            "data_parallel",
            bias=False,
            batch=3,
        ),
        Cause.WRONG_BATCH_ENTRY,
    ),
    Mutant(
        "batched-prepared-key-of-first-product",
        "a batched call's prepared key is its first product's: the batch strides are left out",
        "launch.py",
        '    key = prepared.plan_key(config, a, b, None, out, ("batched",))\n',
        "    key = prepared.plan_key(\n"
        '        config, a[0], b[0], None, None if out is None else out[0], ("batched",)\n'
        "    )\n",
        Case(
            "mutant-batched-prepared-key-of-first-product",
            40,
            32,
            40,
            "data_parallel",
            dtype="fp16",
            bias=False,
            batch=2,
        ),
        Cause.OPERAND_LAYOUT_IGNORED,
    ),
    Mutant(
        "graph-captures-a-copy-of-a",
        "capture runs the GEMM on a copy of A taken before the capture: replays read it",
        "graphs.py",
        "    stream = torch.cuda.Stream(device=a.device)\n",
        "    a, stream = a.clone(), torch.cuda.Stream(device=a.device)\n",
        Case("mutant-graph-captures-a-copy-of-a", 64, 64, 40, strategy="persistent"),
        Cause.OPERAND_OF_EARLIER_CALL,
        gpu_only=True,
    ),
)


def mutants_for(device):
    """The mutants a run on ``device`` can check: all on a GPU, else those not ``gpu_only``."""
    gpu = device.startswith("cuda")
    return tuple(mutant for mutant in MUTANTS if gpu or not mutant.gpu_only)


_built = {}


def build(mutant, folder=None):
    """The mutant as a KernelUnderTest (built once per process)."""
    if mutant.name in _built:
        return _built[mutant.name]
    root = pathlib.Path(folder or tempfile.mkdtemp(prefix="refsim-mutants-"))
    package = "mutant_" + mutant.name.replace("-", "_")
    target = root / package
    shutil.copytree(
        pathlib.Path(kernels.__file__).parent, target, ignore=shutil.ignore_patterns("__pycache__")
    )
    path = target / mutant.file
    source = path.read_text()
    if source.count(mutant.original) != 1:
        raise RuntimeError(
            f"mutant {mutant.name}: the original lines occur "
            f"{source.count(mutant.original)} times in {mutant.file}, not once"
        )
    path.write_text(source.replace(mutant.original, mutant.mutated))
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    kut = for_package(importlib.import_module(package), f"mutant:{mutant.name}")
    _built[mutant.name] = kut
    return kut
