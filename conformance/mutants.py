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


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    description: str
    file: str
    original: str
    mutated: str
    case: Case
    expected_cause: str


_SK = {"strategy": "streamk", "fixup": "owner-waits", "options": (("sk_hybrid", "one-wave"),)}
# The owner-waits contributor's store and publish, as kernels/streamk.py has them.
_CONTRIBUTOR_RELEASE = (
    "        if k_begin != 0:\n"
    "            store_partial(partials_ptr, my_slot, acc, events_ptr, pid, BLOCK_M, BLOCK_N,"
    " TRACE)\n"
    "            publish(flags_ptr, lp, epoch, events_ptr, pid, TRACE)"
)

MUTANTS = (
    Mutant(
        "bias-every-contributor",
        "every Stream-K contributor adds the bias to its partial",
        "streamk.py",
        _CONTRIBUTOR_RELEASE,
        "        if k_begin != 0:\n"
        "            store_partial(partials_ptr, my_slot, acc + tl.load(bias_ptr + (pid_n * BLOCK_N"
        " + tl.arange(0, BLOCK_N)) * stride_bias, mask=(pid_n * BLOCK_N + tl.arange(0, BLOCK_N))"
        " < N, other=0.0).to(tl.float32)[None, :], events_ptr, pid, BLOCK_M, BLOCK_N, TRACE)\n"
        "            publish(flags_ptr, lp, epoch, events_ptr, pid, TRACE)",
        Case("mutant-bias-every-contributor", 64, 64, 80, cus=3, **_SK),
        "bias applied more than once",
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
        "bias along the wrong axis",
    ),
    Mutant(
        "dropped-partial",
        "the owner skips its last contributor's partial",
        "streamk.py",
        "            for q in range(lp + 1, last + 1):\n"
        "                wait_for(flags_ptr + q, epoch, BACKEND)",
        "            for q in range(lp + 1, last):\n"
        "                wait_for(flags_ptr + q, epoch, BACKEND)",
        Case("mutant-dropped-partial", 64, 64, 80, cus=3, **_SK),
        "missing K-segment",
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
        "missing K-segment",
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
        "wrong tile order",
    ),
    Mutant(
        "flag-before-store",
        "a contributor publishes its flag before storing its partial",
        "streamk.py",
        _CONTRIBUTOR_RELEASE,
        "        if k_begin != 0:\n"
        "            publish(flags_ptr, lp, epoch, events_ptr, pid, TRACE)\n"
        "            store_partial(partials_ptr, my_slot, acc, events_ptr, pid, BLOCK_M, BLOCK_N,"
        " TRACE)",
        Case("mutant-flag-before-store", 64, 64, 80, cus=3, **_SK),
        "flag set before its partial is stored",
    ),
    Mutant(
        "ws-counter-gap",
        "each work-stealing counter stops one tile short of its range",
        "work_stealing.py",
        "    _, end = contract.ws_counter_range(counter, total_tiles, num_counters)",
        "    _, end = contract.ws_counter_range(counter, total_tiles, num_counters)\n"
        "    end = end - 1",
        Case("mutant-ws-counter-gap", 64, 96, 40, strategy="work_stealing"),
        "tile never written",
    ),
    Mutant(
        "split-k-reverse",
        "the split-K reduction adds the slices in reverse order",
        "split_k.py",
        "    total = load_partial(\n"
        "        partials_ptr, contract.split_k_partial_slot(tile, 0, SPLIT_K), BLOCK_M, BLOCK_N\n"
        "    )\n"
        "    for split in range(1, SPLIT_K):\n"
        "        slot = contract.split_k_partial_slot(tile, split, SPLIT_K)",
        "    total = load_partial(\n"
        "        partials_ptr, contract.split_k_partial_slot(tile, SPLIT_K - 1, SPLIT_K), BLOCK_M,"
        " BLOCK_N\n"
        "    )\n"
        "    for split in range(1, SPLIT_K):\n"
        "        slot = contract.split_k_partial_slot(tile, SPLIT_K - 1 - split, SPLIT_K)",
        Case("mutant-split-k-reverse", 64, 64, 80, strategy="split_k", options=(("split_k", 3),)),
        "wrong addition order",
    ),
    Mutant(
        "bias-after-cast",
        "the epilogue casts to the output dtype before adding the bias",
        "tile.py",
        "            acc = acc + bias.to(tl.float32)[None, :]",
        "            acc = acc.to(c_ptr.dtype.element_ty).to(tl.float32) + bias.to(tl.float32)"
        "[None, :]",
        Case("mutant-bias-after-cast", 64, 64, 40, strategy="persistent", dtype="fp16"),
        "bias added after the cast",
    ),
    Mutant(
        "last-arriver-reverse",
        "the last arriver adds the partials in reverse K order",
        "streamk.py",
        "            owner_slot = contract.streamk_partial_slot(\n"
        "                owner, tile, dp_tiles, iters, sk_iters, num_programs\n"
        "            )\n"
        "            total = load_partial(partials_ptr, owner_slot, BLOCK_M, BLOCK_N)\n"
        "            for q in range(owner + 1, last + 1):\n"
        "                q_slot = contract.streamk_partial_slot(\n"
        "                    q, tile, dp_tiles, iters, sk_iters, num_programs",
        "            owner_slot = contract.streamk_partial_slot(\n"
        "                last, tile, dp_tiles, iters, sk_iters, num_programs\n"
        "            )\n"
        "            total = load_partial(partials_ptr, owner_slot, BLOCK_M, BLOCK_N)\n"
        "            for q in range(owner + 1, last + 1):\n"
        "                q_slot = contract.streamk_partial_slot(\n"
        "                    owner + last - q, tile, dp_tiles, iters, sk_iters, num_programs",
        Case(
            "mutant-last-arriver-reverse",
            16,
            32,
            160,
            fixup="last-arriver",
            options=(("sk_hybrid", "one-wave"),),
        ),
        "wrong addition order",
    ),
)

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
