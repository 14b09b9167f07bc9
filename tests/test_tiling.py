"""Tests of the tiling contract (:mod:`refsim.tiling`).

* Python vs Triton: every function in ``tiling.CONTRACT`` returns the same values as plain Python
  and as a ``triton.jit`` function called from a kernel that Triton's interpreter runs on CPU.
* Semantics: pure-Python properties of the formulas (bijections, permutations, partitions,
  exact coverage of the Stream-K and split-K work).
"""

import inspect
import itertools
from collections import defaultdict

import pytest
import torch
import triton
import triton.language as tl
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from triton.runtime.interpreter import InterpretedFunction

from refsim import tiling

MAX_TILES = 5_000
MAX_ITERS = 100_000
MAX_PROGRAMS = 1024
MAX_ITERS_PER_TILE = 1024

PROGRAM_COUNTS = st.integers(1, MAX_PROGRAMS)
XCD_COUNTS = st.sampled_from([1, 2, 4, 8])
GROUP_MS = st.integers(1, 16)
CHUNKS = st.integers(1, 8)
SPLIT_KS = st.integers(1, 16)
COUNTERS_PER_XCD = st.integers(1, 8)
ITERS_PER_TILE = st.integers(1, MAX_ITERS_PER_TILE)
REMAP_MODES = st.sampled_from([tiling.REMAP_NONE, tiling.REMAP_PLAIN, tiling.REMAP_CHUNKED])

# The interpreter flag when this module is imported; it must be back to this after decoration.
INTERPRET_AT_IMPORT = triton.knobs.runtime.interpret


# --------------------------------------------------------------------------------------------
# Argument tuples, in signature order, within each function's preconditions.


def below(draw, bound):
    """An integer in ``[0, bound)``."""
    return draw(st.integers(0, bound - 1))


@st.composite
def grouped_tile_args(draw):
    num_pid_m = draw(st.integers(1, MAX_TILES))
    num_pid_n = draw(st.integers(1, MAX_TILES // num_pid_m))
    return below(draw, num_pid_m * num_pid_n), num_pid_m, num_pid_n, draw(GROUP_MS)


@st.composite
def xcd_remap_args(draw):
    num_programs = draw(PROGRAM_COUNTS)
    return below(draw, num_programs), num_programs, draw(XCD_COUNTS)


@st.composite
def xcd_remap_chunked_args(draw):
    num_programs = draw(PROGRAM_COUNTS)
    return below(draw, num_programs), num_programs, draw(XCD_COUNTS), draw(CHUNKS)


@st.composite
def logical_program_args(draw):
    num_programs = draw(PROGRAM_COUNTS)
    pid = below(draw, num_programs)
    return pid, num_programs, draw(XCD_COUNTS), draw(REMAP_MODES), draw(CHUNKS)


@st.composite
def persistent_tile_count_args(draw):
    num_programs = draw(PROGRAM_COUNTS)
    return below(draw, num_programs), draw(st.integers(0, MAX_TILES)), num_programs


@st.composite
def persistent_tile_args(draw):
    num_programs = draw(PROGRAM_COUNTS)
    step = draw(st.integers(0, MAX_TILES // num_programs))
    return below(draw, num_programs), step, num_programs


@st.composite
def streamk_iter_range_args(draw):
    num_programs = draw(PROGRAM_COUNTS)
    return below(draw, num_programs), draw(st.integers(0, MAX_ITERS)), num_programs


@st.composite
def streamk_program_of_iter_args(draw):
    sk_iters = draw(st.integers(1, MAX_ITERS))
    return below(draw, sk_iters), sk_iters, draw(PROGRAM_COUNTS)


@st.composite
def streamk_segment_args(draw):
    end = draw(st.integers(1, MAX_ITERS))
    return below(draw, end), end, draw(ITERS_PER_TILE), draw(st.integers(0, MAX_TILES))


@st.composite
def streamk_segment_back_args(draw):
    it_end = draw(st.integers(1, MAX_ITERS))
    return it_end, below(draw, it_end), draw(ITERS_PER_TILE), draw(st.integers(0, MAX_TILES))


@st.composite
def streamk_walk_step_args(draw):
    end = draw(st.integers(1, MAX_ITERS))
    start = below(draw, end)
    backward = draw(st.booleans())
    it = draw(st.integers(start + 1, end)) if backward else draw(st.integers(start, end - 1))
    return it, start, end, draw(ITERS_PER_TILE), draw(st.integers(0, MAX_TILES)), backward


@st.composite
def streamk_tile_programs_args(draw):
    iters_per_tile = draw(ITERS_PER_TILE)
    sk_tiles = draw(st.integers(1, min(MAX_TILES, MAX_ITERS // iters_per_tile)))
    first_sk_tile = draw(st.integers(0, MAX_TILES - sk_tiles))
    tile = first_sk_tile + below(draw, sk_tiles)
    return tile, first_sk_tile, iters_per_tile, sk_tiles * iters_per_tile, draw(PROGRAM_COUNTS)


@st.composite
def streamk_partial_slot_args(draw):
    tile, first_sk_tile, iters_per_tile, sk_iters, num_programs = draw(streamk_tile_programs_args())
    program = below(draw, num_programs)
    return program, tile, first_sk_tile, iters_per_tile, sk_iters, num_programs


@st.composite
def streamk_tile_counter_args(draw):
    first_sk_tile = draw(st.integers(0, MAX_TILES))
    return draw(st.integers(first_sk_tile, MAX_TILES)), first_sk_tile


@st.composite
def max_work_items_args(draw):
    num_programs = draw(PROGRAM_COUNTS)
    dp_tiles = draw(st.integers(0, MAX_TILES))
    return dp_tiles, draw(st.integers(0, MAX_ITERS)), draw(ITERS_PER_TILE), num_programs


@st.composite
def ws_counter_range_args(draw):
    num_counters = draw(st.integers(1, 64))
    return below(draw, num_counters), draw(st.integers(0, MAX_TILES)), num_counters


@st.composite
def ws_ticket_tile_args(draw):
    num_counters = draw(st.integers(1, 64))
    counter = below(draw, num_counters)
    ticket = draw(st.integers(0, MAX_TILES))
    return counter, ticket, draw(st.integers(0, MAX_TILES)), num_counters


@st.composite
def schedule_configs(draw):
    """A :class:`tiling.ScheduleConfig` as ``GemmConfig.schedule_config`` would build one."""
    num_pid_m = draw(st.integers(1, 64))
    num_pid_n = draw(st.integers(1, MAX_TILES // num_pid_m))
    total_tiles = num_pid_m * num_pid_n
    sk_tiles = draw(st.integers(0, total_tiles))
    xcds = draw(XCD_COUNTS)
    counter_xcds = draw(st.sampled_from([1, xcds]))
    counters_per_xcd = draw(COUNTERS_PER_XCD)
    return tiling.ScheduleConfig(
        grid=draw(PROGRAM_COUNTS),
        xcds=xcds,
        num_pid_m=num_pid_m,
        num_pid_n=num_pid_n,
        group_m=draw(GROUP_MS),
        total_tiles=total_tiles,
        iters_per_tile=draw(ITERS_PER_TILE),
        dp_tiles=total_tiles - sk_tiles,
        sk_tiles=sk_tiles,
        counter_xcds=counter_xcds,
        counters_per_xcd=counters_per_xcd,
        num_counters=counter_xcds * counters_per_xcd,
    )


@st.composite
def counter_map_args(draw):
    config = draw(schedule_configs())
    return below(draw, config.grid), below(draw, config.grid), config


@st.composite
def counter_range_args(draw):
    config = draw(schedule_configs())
    return below(draw, config.num_counters), config


@st.composite
def tile_order_args(draw):
    config = draw(schedule_configs())
    logical_pid = below(draw, config.grid)
    steps = tiling.persistent_tile_count(logical_pid, config.total_tiles, config.grid)
    return logical_pid, below(draw, max(steps, 1)), config


@st.composite
def split_k_range_args(draw):
    split_k = draw(SPLIT_KS)
    return below(draw, split_k), draw(ITERS_PER_TILE), split_k


@st.composite
def split_k_partial_slot_args(draw):
    split_k = draw(SPLIT_KS)
    return draw(st.integers(0, MAX_TILES)), below(draw, split_k), split_k


ARGUMENTS = {
    "cdiv": st.tuples(st.integers(0, MAX_ITERS), st.integers(1, MAX_TILES)),
    "grouped_tile": grouped_tile_args(),
    "xcd_of_program": st.tuples(st.integers(0, MAX_PROGRAMS - 1), XCD_COUNTS),
    "xcd_remap": xcd_remap_args(),
    "xcd_remap_chunked": xcd_remap_chunked_args(),
    "logical_program": logical_program_args(),
    "persistent_tile_count": persistent_tile_count_args(),
    "persistent_tile": persistent_tile_args(),
    "streamk_sk_tiles": st.tuples(st.integers(0, MAX_TILES), PROGRAM_COUNTS, st.booleans()),
    "streamk_split_two_tile": st.tuples(st.integers(0, MAX_TILES), PROGRAM_COUNTS),
    "streamk_split_one_wave": st.tuples(st.integers(0, MAX_TILES), PROGRAM_COUNTS),
    "streamk_split_remainder": st.tuples(st.integers(0, MAX_TILES), PROGRAM_COUNTS),
    "streamk_iter_range": streamk_iter_range_args(),
    "streamk_program_of_iter": streamk_program_of_iter_args(),
    "streamk_segment": streamk_segment_args(),
    "streamk_segment_back": streamk_segment_back_args(),
    "streamk_walk_step": streamk_walk_step_args(),
    "streamk_tile_programs": streamk_tile_programs_args(),
    "streamk_partial_slot": streamk_partial_slot_args(),
    "streamk_tile_counter": streamk_tile_counter_args(),
    "max_work_items": max_work_items_args(),
    "ws_counter": st.tuples(st.integers(0, MAX_PROGRAMS - 1), XCD_COUNTS, COUNTERS_PER_XCD),
    "ws_counter_range": ws_counter_range_args(),
    "ws_counter_hardware": counter_map_args(),
    "ws_counter_logical": counter_map_args(),
    "ws_counter_hardware_xcd_logical_slot": counter_map_args(),
    "ws_range_even": counter_range_args(),
    "ws_range_per_xcd": counter_range_args(),
    "ws_ticket_tile": ws_ticket_tile_args(),
    "ws_ticket_in_order": st.tuples(st.integers(0, MAX_TILES), st.integers(0, MAX_TILES)),
    "ws_max_work_items": st.tuples(st.integers(1, MAX_TILES), st.integers(1, 64)),
    "tile_order_strided": tile_order_args(),
    "tile_order_contiguous": tile_order_args(),
    "split_k_work": st.tuples(st.integers(0, MAX_TILES * 16 - 1), SPLIT_KS),
    "split_k_range": split_k_range_args(),
    "split_k_partial_slot": split_k_partial_slot_args(),
    "split_k_reduce_work": st.tuples(
        st.integers(0, MAX_TILES * 64 - 1), st.sampled_from([1, 2, 4, 8, 16, 32, 64])
    ),
}

CASES_PER_FUNCTION = 200


# --------------------------------------------------------------------------------------------
# Python vs Triton interpreter.
#
# UPPER_CASE parameters are tested as compile-time constants, as the kernels use them: the cases
# of one function are grouped by their constexpr values and each group is one kernel launch,
# one program per case. The harness needs the UPPER_CASE parameters to come last. It is plain
# Triton (it also compiles for a GPU); here it only ever runs in the interpreter.


def contract_kernel(
    args_ptr,
    results_ptr,
    FN: tl.constexpr,
    NUM_RUNTIME_ARGS: tl.constexpr,
    C0: tl.constexpr,
    C1: tl.constexpr,
    C2: tl.constexpr,
    NUM_CONSTEXPR_ARGS: tl.constexpr,
    NUM_RESULTS: tl.constexpr,
):
    """Program ``i`` stores ``FN(*args[i], C0, C1, C2)`` (as many constexprs as FN takes) in
    ``results[i]``.

    Written out per arity, without starred calls, so that it compiles on every Triton version
    the kernels support.
    """
    case = tl.program_id(0)
    row = args_ptr + case * NUM_RUNTIME_ARGS
    a0 = tl.load(row)
    a1 = tl.load(row + min(1, NUM_RUNTIME_ARGS - 1))
    a2 = tl.load(row + min(2, NUM_RUNTIME_ARGS - 1))
    a3 = tl.load(row + min(3, NUM_RUNTIME_ARGS - 1))
    a4 = tl.load(row + min(4, NUM_RUNTIME_ARGS - 1))
    a5 = tl.load(row + min(5, NUM_RUNTIME_ARGS - 1))
    if NUM_CONSTEXPR_ARGS == 0:
        if NUM_RUNTIME_ARGS == 2:
            results = FN(a0, a1)
        elif NUM_RUNTIME_ARGS == 3:
            results = FN(a0, a1, a2)
        elif NUM_RUNTIME_ARGS == 4:
            results = FN(a0, a1, a2, a3)
        elif NUM_RUNTIME_ARGS == 5:
            results = FN(a0, a1, a2, a3, a4)
        else:
            results = FN(a0, a1, a2, a3, a4, a5)
    elif NUM_CONSTEXPR_ARGS == 1:
        if NUM_RUNTIME_ARGS == 1:
            results = FN(a0, C0)
        elif NUM_RUNTIME_ARGS == 2:
            results = FN(a0, a1, C0)
        elif NUM_RUNTIME_ARGS == 3:
            results = FN(a0, a1, a2, C0)
        else:
            results = FN(a0, a1, a2, a3, a4, C0)
    elif NUM_CONSTEXPR_ARGS == 2:
        if NUM_RUNTIME_ARGS == 1:
            results = FN(a0, C0, C1)
        else:
            results = FN(a0, a1, C0, C1)
    else:
        results = FN(a0, a1, C0, C1, C2)
    out = results_ptr + case * NUM_RESULTS
    if NUM_RESULTS == 1:
        tl.store(out, results)
    else:
        tl.store(out, results[0])
        tl.store(out + 1, results[1])
        if NUM_RESULTS >= 3:
            tl.store(out + 2, results[2])
        if NUM_RESULTS == 4:
            tl.store(out + 3, results[3])


def hook_kernel(
    args_ptr,
    results_ptr,
    config,
    FN: tl.constexpr,
    NUM_INT_ARGS: tl.constexpr,
    NUM_RESULTS: tl.constexpr,
):
    """Program ``i`` stores ``FN(*args[i], config)`` in ``results[i]``: a schedule hook, whose
    last argument is a :class:`tiling.ScheduleConfig` passed to the kernel as a named tuple."""
    case = tl.program_id(0)
    row = args_ptr + case * NUM_INT_ARGS
    a0 = tl.load(row)
    a1 = tl.load(row + min(1, NUM_INT_ARGS - 1))
    if NUM_INT_ARGS == 1:
        results = FN(a0, config)
    else:
        results = FN(a0, a1, config)
    out = results_ptr + case * NUM_RESULTS
    if NUM_RESULTS == 1:
        tl.store(out, results)
    else:
        tl.store(out, results[0])
        tl.store(out + 1, results[1])


def takes_config(fn):
    """Whether ``fn`` is a schedule hook: its last parameter is the ScheduleConfig."""
    return list(inspect.signature(fn).parameters)[-1] == "config"


@pytest.fixture(scope="module")
def interpreted():
    """``(jitted contract namespace, jitted contract_kernel, jitted hook_kernel)``, built for
    the interpreter.

    Triton reads TRITON_INTERPRET when ``triton.jit`` decorates a function, so the flag is set
    (through its knob, which also sets the environment variable) only around the decoration and
    restored afterwards: other test modules in the same process are unaffected.
    """
    with triton.knobs.runtime.scope():
        triton.knobs.runtime.interpret = True
        return tiling.triton_namespace(), triton.jit(contract_kernel), triton.jit(hook_kernel)


@pytest.mark.interpreter
def test_interpreter_flag_does_not_leak(interpreted):
    """Building the interpreted kernels leaves TRITON_INTERPRET as this module found it."""
    assert triton.knobs.runtime.interpret == INTERPRET_AT_IMPORT


def test_every_contract_function_has_an_argument_strategy():
    assert sorted(fn.__name__ for fn in tiling.CONTRACT) == sorted(ARGUMENTS)


def runtime_parameter_count(fn):
    """Number of leading lowercase (runtime) parameters; the UPPER_CASE ones must all follow."""
    names = list(inspect.signature(fn).parameters)
    count = sum(not name.isupper() for name in names)
    assert all(name.isupper() for name in names[count:]), f"{fn.__name__}: UPPER_CASE last"
    return count


def as_tuple(value):
    """A function's result as a tuple (single values become 1-tuples)."""
    return value if isinstance(value, tuple) else (value,)


def run_kernel(kernel, jitted_fn, num_runtime, cases, num_results, device="cpu"):
    """Results of ``jitted_fn`` on every case, one launch per distinct set of constexpr values."""
    groups = defaultdict(list)
    for case in cases:
        groups[case[num_runtime:]].append(case)
    results = {}
    for constexpr_args, group in groups.items():
        args = torch.tensor(
            [case[:num_runtime] for case in group], dtype=torch.int32, device=device
        )
        out = torch.full((len(group), num_results), -1, dtype=torch.int32, device=device)
        c0, c1, c2 = (constexpr_args + (0, 0, 0))[:3]
        kernel[(len(group),)](
            args,
            out,
            FN=jitted_fn,
            NUM_RUNTIME_ARGS=num_runtime,
            C0=c0,
            C1=c1,
            C2=c2,
            NUM_CONSTEXPR_ARGS=len(constexpr_args),
            NUM_RESULTS=num_results,
        )
        results.update(zip(group, map(tuple, out.tolist())))
    return results


# One Hypothesis example per function: a batch of CASES_PER_FUNCTION distinct tuples, run in one
# interpreted launch per constexpr group. The list is unique, so Hypothesis's all-minimal first
# example is not a valid batch and the one example run is a random one. No shrinking (each try
# would relaunch): the failure message lists the bad cases instead.
@pytest.mark.interpreter
@pytest.mark.parametrize("fn", tiling.CONTRACT, ids=lambda fn: fn.__name__)
@settings(
    max_examples=1,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_jitted_function_matches_python(fn, interpreted, data):
    """The jitted function, run by Triton's interpreter, returns what the Python one does."""
    namespace, kernel, hooks = interpreted
    assert isinstance(kernel, InterpretedFunction) and isinstance(hooks, InterpretedFunction)
    assert isinstance(getattr(namespace, fn.__name__), InterpretedFunction)
    assert_jitted_matches_python(fn, namespace, kernel, hooks, data, "cpu")


@pytest.fixture(scope="module")
def compiled():
    """The contract and the harness compiled for the GPU (the interpreter switched off)."""
    with triton.knobs.runtime.scope():
        triton.knobs.runtime.interpret = False
        return tiling.triton_namespace(), triton.jit(contract_kernel), triton.jit(hook_kernel)


@pytest.mark.gpu
@pytest.mark.parametrize("fn", tiling.CONTRACT, ids=lambda fn: fn.__name__)
@settings(
    max_examples=1,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_compiled_function_matches_python(fn, compiled, data):
    """The same check with the functions compiled for and run on the GPU."""
    namespace, kernel, hooks = compiled
    assert not isinstance(kernel, InterpretedFunction)
    assert_jitted_matches_python(fn, namespace, kernel, hooks, data, "cuda")


def run_hook_kernel(kernel, jitted_fn, cases, num_results, device="cpu"):
    """Results of the hook ``jitted_fn`` on every case, one launch per distinct config."""
    groups = defaultdict(list)
    for case in cases:
        groups[case[-1]].append(case)
    results = {}
    for config, group in groups.items():
        num_int_args = len(group[0]) - 1
        args = torch.tensor([case[:-1] for case in group], dtype=torch.int32, device=device)
        out = torch.full((len(group), num_results), -1, dtype=torch.int32, device=device)
        kernel[(len(group),)](
            args, out, config, FN=jitted_fn, NUM_INT_ARGS=num_int_args, NUM_RESULTS=num_results
        )
        results.update(zip(group, map(tuple, out.tolist())))
    return results


def assert_jitted_matches_python(fn, namespace, kernel, hooks, data, device):
    cases = data.draw(
        st.lists(
            ARGUMENTS[fn.__name__],
            min_size=CASES_PER_FUNCTION,
            max_size=CASES_PER_FUNCTION,
            unique=True,
        ),
        label="cases",
    )
    expected = {case: as_tuple(fn(*case)) for case in cases}
    num_results = len(expected[cases[0]])

    jitted = getattr(namespace, fn.__name__)
    if takes_config(fn):
        actual = run_hook_kernel(hooks, jitted, cases, num_results, device)
    else:
        actual = run_kernel(kernel, jitted, runtime_parameter_count(fn), cases, num_results, device)

    mismatches = [
        f"args={case} python={expected[case]} triton={actual[case]}"
        for case in cases
        if actual[case] != expected[case]
    ]
    assert not mismatches, (
        f"{fn.__name__}: {len(mismatches)} of {len(cases)} cases differ on "
        f"{device}: " + "; ".join(mismatches[:10])
    )


# --------------------------------------------------------------------------------------------
# Semantics (pure Python; sizes kept small enough to enumerate every tile / iteration).

PROPERTY_SETTINGS = settings(max_examples=100, deadline=None)


def assert_even_partition(ranges, total):
    """``ranges`` are consecutive ``[begin, end)`` covering ``[0, total)``, sizes within one."""
    assert ranges[0][0] == 0 and ranges[-1][1] == total
    assert all(end == next_begin for (_, end), (next_begin, _) in itertools.pairwise(ranges))
    sizes = [end - begin for begin, end in ranges]
    assert min(sizes) >= 0 and max(sizes) - min(sizes) <= 1


@PROPERTY_SETTINGS
@given(a=st.integers(0, MAX_ITERS), b=st.integers(1, MAX_TILES))
def test_cdiv_is_ceiling_division(a, b):
    quotient = tiling.cdiv(a, b)
    assert (quotient - 1) * b < a <= quotient * b


@PROPERTY_SETTINGS
@given(num_pid_m=st.integers(1, 64), num_pid_n=st.integers(1, 64), group_m=GROUP_MS)
def test_grouped_tile_is_a_bijection_onto_the_tile_grid(num_pid_m, num_pid_n, group_m):
    num_tiles = num_pid_m * num_pid_n
    mapped = [tiling.grouped_tile(t, num_pid_m, num_pid_n, group_m) for t in range(num_tiles)]
    assert sorted(mapped) == [(m, n) for m in range(num_pid_m) for n in range(num_pid_n)]


@PROPERTY_SETTINGS
@given(num_programs=PROGRAM_COUNTS, num_xcds=XCD_COUNTS)
def test_xcd_remap_gives_each_xcd_one_contiguous_block(num_programs, num_xcds):
    pids = range(num_programs)
    logical = [tiling.xcd_remap(pid, num_programs, num_xcds) for pid in pids]
    assert sorted(logical) == list(pids)
    for xcd in range(min(num_xcds, num_programs)):
        on_xcd = [logical[pid] for pid in pids if tiling.xcd_of_program(pid, num_xcds) == xcd]
        assert on_xcd == list(range(on_xcd[0], on_xcd[0] + len(on_xcd)))


@PROPERTY_SETTINGS
@given(num_programs=PROGRAM_COUNTS, num_xcds=XCD_COUNTS, chunk=CHUNKS)
def test_xcd_remap_chunked_is_a_permutation_dealing_chunks_to_xcds(num_programs, num_xcds, chunk):
    pids = range(num_programs)
    logical = [tiling.xcd_remap_chunked(pid, num_programs, num_xcds, chunk) for pid in pids]
    assert sorted(logical) == list(pids)
    round_size = num_xcds * chunk
    for pid in range(num_programs // round_size * round_size):
        assert logical[pid] % round_size // chunk == tiling.xcd_of_program(pid, num_xcds)


@PROPERTY_SETTINGS
@given(num_programs=PROGRAM_COUNTS, num_xcds=XCD_COUNTS, chunk=CHUNKS)
def test_logical_program_applies_the_remap_of_its_mode(num_programs, num_xcds, chunk):
    for pid in range(num_programs):
        remapped = {
            mode: tiling.logical_program(pid, num_programs, num_xcds, mode, chunk)
            for mode in (tiling.REMAP_NONE, tiling.REMAP_PLAIN, tiling.REMAP_CHUNKED)
        }
        assert remapped == {
            tiling.REMAP_NONE: pid,
            tiling.REMAP_PLAIN: tiling.xcd_remap(pid, num_programs, num_xcds),
            tiling.REMAP_CHUNKED: tiling.xcd_remap_chunked(pid, num_programs, num_xcds, chunk),
        }


@PROPERTY_SETTINGS
@given(num_tiles=st.integers(0, MAX_TILES), num_programs=PROGRAM_COUNTS)
def test_persistent_programs_cover_every_tile_once(num_tiles, num_programs):
    counts = [
        tiling.persistent_tile_count(pid, num_tiles, num_programs) for pid in range(num_programs)
    ]
    tiles = [
        tiling.persistent_tile(pid, step, num_programs)
        for pid in range(num_programs)
        for step in range(counts[pid])
    ]
    assert sorted(tiles) == list(range(num_tiles))
    assert tiling.max_work_items(num_tiles, 0, 1, num_programs) == max(max(counts), 1)


@PROPERTY_SETTINGS
@given(total_tiles=st.integers(0, MAX_TILES), num_programs=PROGRAM_COUNTS, two_tile=st.booleans())
def test_streamk_sk_tiles(total_tiles, num_programs, two_tile):
    if not two_tile:
        expected = total_tiles
    elif total_tiles % num_programs == 0:
        expected = 0
    elif total_tiles < num_programs:
        expected = total_tiles
    else:
        expected = total_tiles % num_programs + num_programs
    sk_tiles = tiling.streamk_sk_tiles(total_tiles, num_programs, two_tile)
    assert sk_tiles == expected
    assert (total_tiles - sk_tiles) % num_programs == 0


@PROPERTY_SETTINGS
@given(sk_iters=st.integers(0, 4000), num_programs=PROGRAM_COUNTS)
def test_streamk_iter_ranges_partition_the_sk_iterations(sk_iters, num_programs):
    ranges = [tiling.streamk_iter_range(pid, sk_iters, num_programs) for pid in range(num_programs)]
    assert_even_partition(ranges, sk_iters)
    sizes = [end - begin for begin, end in ranges]
    assert sizes == sorted(sizes, reverse=True)
    owners = [tiling.streamk_program_of_iter(it, sk_iters, num_programs) for it in range(sk_iters)]
    assert owners == [pid for pid, (begin, end) in enumerate(ranges) for _ in range(begin, end)]


def segments_forward(start, end, iters_per_tile, first_sk_tile):
    """The ``(tile, k_begin, k_end)`` pieces of ``[start, end)``, walked with streamk_segment."""
    segments = []
    it = start
    while it < end:
        tile, k_begin, k_end = tiling.streamk_segment(it, end, iters_per_tile, first_sk_tile)
        assert 0 <= k_begin < k_end <= iters_per_tile
        segments.append((tile, k_begin, k_end))
        it += k_end - k_begin
    assert it == end
    return segments


def segments_walked(start, end, iters_per_tile, first_sk_tile, backward):
    """The pieces of ``[start, end)`` in the order streamk_walk_step visits them."""
    segments = []
    it = end if backward else start
    remaining = end - start
    while remaining > 0:
        tile, k_begin, k_end, it = tiling.streamk_walk_step(
            it, start, end, iters_per_tile, first_sk_tile, backward
        )
        assert 0 <= k_begin < k_end <= iters_per_tile
        segments.append((tile, k_begin, k_end))
        remaining -= k_end - k_begin
    assert remaining == 0 and it == (start if backward else end)
    return segments


def segments_backward(start, end, iters_per_tile, first_sk_tile):
    """The same pieces walked back with streamk_segment_back, returned in forward order."""
    segments = []
    it_end = end
    while it_end > start:
        tile, k_begin, k_end = tiling.streamk_segment_back(
            it_end, start, iters_per_tile, first_sk_tile
        )
        assert 0 <= k_begin < k_end <= iters_per_tile
        segments.append((tile, k_begin, k_end))
        it_end -= k_end - k_begin
    assert it_end == start
    return segments[::-1]


@PROPERTY_SETTINGS
@given(
    total_tiles=st.integers(1, 200),
    num_programs=st.integers(1, 128),
    two_tile=st.booleans(),
    iters_per_tile=st.integers(1, 32),
)
def test_streamk_segments_cover_the_sk_region_once(
    total_tiles, num_programs, two_tile, iters_per_tile
):
    """Each (tile, k) of the SK region is in exactly one segment; owners and lasts agree; the
    walk visits the segments in order both ways; the trace rows suffice for every program."""
    sk_tiles = tiling.streamk_sk_tiles(total_tiles, num_programs, two_tile)
    first_sk_tile = total_tiles - sk_tiles
    sk_iters = sk_tiles * iters_per_tile
    rows = tiling.max_work_items(first_sk_tile, sk_iters, iters_per_tile, num_programs)
    holder = {}  # (tile, k) -> program
    for pid in range(num_programs):
        start, end = tiling.streamk_iter_range(pid, sk_iters, num_programs)
        segments = segments_forward(start, end, iters_per_tile, first_sk_tile)
        assert segments_backward(start, end, iters_per_tile, first_sk_tile) == segments
        assert segments_walked(start, end, iters_per_tile, first_sk_tile, False) == segments
        walked_back = segments_walked(start, end, iters_per_tile, first_sk_tile, True)
        assert walked_back == segments[::-1]
        dp_items = tiling.persistent_tile_count(pid, first_sk_tile, num_programs)
        assert dp_items + len(segments) <= rows
        for tile, k_begin, k_end in segments:
            for k in range(k_begin, k_end):
                assert (tile, k) not in holder
                holder[tile, k] = pid
    sk_tile_ids = range(first_sk_tile, total_tiles)
    assert sorted(holder) == [(tile, k) for tile in sk_tile_ids for k in range(iters_per_tile)]
    counters = [tiling.streamk_tile_counter(tile, first_sk_tile) for tile in sk_tile_ids]
    assert counters == list(range(sk_tiles))
    for tile in sk_tile_ids:
        owner, last = tiling.streamk_tile_programs(
            tile, first_sk_tile, iters_per_tile, sk_iters, num_programs
        )
        programs_in_k_order = [holder[tile, k] for k in range(iters_per_tile)]
        assert programs_in_k_order == sorted(programs_in_k_order)
        assert sorted(set(programs_in_k_order)) == list(range(owner, last + 1))


@PROPERTY_SETTINGS
@given(
    total_tiles=st.integers(1, 200),
    num_programs=st.integers(1, 128),
    two_tile=st.booleans(),
    iters_per_tile=st.integers(1, 32),
)
def test_streamk_partial_slots_are_distinct_and_start_at_twice_the_program(
    total_tiles, num_programs, two_tile, iters_per_tile
):
    """Every partial of a split tile has a slot of its own among the program's two; the
    segment at the start of a program's range takes the first."""
    sk_tiles = tiling.streamk_sk_tiles(total_tiles, num_programs, two_tile)
    first_sk_tile = total_tiles - sk_tiles
    sk_iters = sk_tiles * iters_per_tile
    owner_of = {}  # slot -> (program, tile)
    for pid in range(num_programs):
        start, end = tiling.streamk_iter_range(pid, sk_iters, num_programs)
        for index, (tile, _, _) in enumerate(
            segments_forward(start, end, iters_per_tile, first_sk_tile)
        ):
            slot = tiling.streamk_partial_slot(
                pid, tile, first_sk_tile, iters_per_tile, sk_iters, num_programs
            )
            assert slot == 2 * pid + (index > 0)
            owner, last = tiling.streamk_tile_programs(
                tile, first_sk_tile, iters_per_tile, sk_iters, num_programs
            )
            if owner != last:
                assert slot not in owner_of, (slot, owner_of.get(slot), (pid, tile))
                owner_of[slot] = (pid, tile)


@PROPERTY_SETTINGS
@given(num_xcds=XCD_COUNTS, counters_per_xcd=COUNTERS_PER_XCD, data=st.data())
def test_ws_counter_serves_every_counter_from_its_own_xcd(num_xcds, counters_per_xcd, data):
    num_counters = num_xcds * counters_per_xcd
    # At least COUNTERS_PER_XCD programs on every XCD.
    num_programs = data.draw(st.integers(num_counters, MAX_PROGRAMS), label="num_programs")
    counters = [tiling.ws_counter(pid, num_xcds, counters_per_xcd) for pid in range(num_programs)]
    assert set(counters) == set(range(num_counters))
    for pid, counter in enumerate(counters):
        assert counter // counters_per_xcd == tiling.xcd_of_program(pid, num_xcds)


@PROPERTY_SETTINGS
@given(num_counters=st.integers(1, 64), total_tiles=st.integers(0, MAX_TILES))
def test_ws_counters_split_the_tiles_and_tickets_count_from_begin(num_counters, total_tiles):
    ranges = [tiling.ws_counter_range(c, total_tiles, num_counters) for c in range(num_counters)]
    assert_even_partition(ranges, total_tiles)
    largest = max(end - begin for begin, end in ranges)
    assert tiling.ws_max_work_items(total_tiles, num_counters) == largest
    for counter, (begin, end) in enumerate(ranges):
        tiles = [
            tiling.ws_ticket_tile(counter, ticket, total_tiles, num_counters)
            for ticket in range(end - begin + 1)
        ]
        assert tiles == list(range(begin, end + 1))


@PROPERTY_SETTINGS
@given(num_tiles=st.integers(1, 64), iters_per_tile=st.integers(1, 256), data=st.data())
def test_split_k_covers_every_tile_iteration_once(num_tiles, iters_per_tile, data):
    split_k = data.draw(st.integers(1, min(16, iters_per_tile)), label="split_k")
    splits = [tiling.split_k_range(split, iters_per_tile, split_k) for split in range(split_k)]
    assert_even_partition(splits, iters_per_tile)
    covered = []
    slots = []
    for pid in range(num_tiles * split_k):
        tile, split = tiling.split_k_work(pid, split_k)
        k_begin, k_end = tiling.split_k_range(split, iters_per_tile, split_k)
        assert k_begin < k_end
        covered += [(tile, k) for k in range(k_begin, k_end)]
        slots.append(tiling.split_k_partial_slot(tile, split, split_k))
    assert sorted(covered) == [(t, k) for t in range(num_tiles) for k in range(iters_per_tile)]
    assert sorted(slots) == list(range(num_tiles * split_k))


@PROPERTY_SETTINGS
@given(
    num_tiles=st.integers(1, 64),
    cus=st.integers(1, 320),
    block_m=st.sampled_from([16, 32, 64, 128, 256]),
)
def test_split_k_reduction_bands_cover_every_row_once_and_fill_the_cus(num_tiles, cus, block_m):
    bands = tiling.split_k_reduce_bands(num_tiles, cus, block_m)
    most = block_m // tiling.MIN_REDUCE_BAND_ROWS
    assert bands & (bands - 1) == 0 and 1 <= bands <= most
    # the smallest such power of two: half as many bands would leave some CU without a program
    assert num_tiles * bands >= cus or bands == most
    assert bands == 1 or num_tiles * bands // 2 < cus
    rows = block_m // bands
    covered = []
    for pid in range(num_tiles * bands):
        tile, band = tiling.split_k_reduce_work(pid, bands)
        covered += [(tile, row) for row in range(band * rows, (band + 1) * rows)]
    assert sorted(covered) == [(t, r) for t in range(num_tiles) for r in range(block_m)]


# --------------------------------------------------------------------------------------------
# Schedule hooks: the presets' semantics, and a hook of one's own run both ways.


def schedule_config(total_tiles, grid, xcds=1, counters_per_xcd=1, sk_tiles=0):
    """A ScheduleConfig with the fields the hooks read set, the others 1."""
    return tiling.ScheduleConfig(
        grid=grid,
        xcds=xcds,
        num_pid_m=1,
        num_pid_n=total_tiles,
        group_m=1,
        total_tiles=total_tiles,
        iters_per_tile=1,
        dp_tiles=total_tiles - sk_tiles,
        sk_tiles=sk_tiles,
        counter_xcds=xcds,
        counters_per_xcd=counters_per_xcd,
        num_counters=xcds * counters_per_xcd,
    )


@PROPERTY_SETTINGS
@given(total_tiles=st.integers(0, MAX_TILES), num_programs=PROGRAM_COUNTS)
def test_streamk_split_presets(total_tiles, num_programs):
    """two-tile and one-wave are streamk_sk_tiles; remainder leaves whole DP waves only."""
    assert tiling.streamk_split_two_tile(total_tiles, num_programs) == tiling.streamk_sk_tiles(
        total_tiles, num_programs, True
    )
    assert tiling.streamk_split_one_wave(total_tiles, num_programs) == total_tiles
    remainder = tiling.streamk_split_remainder(total_tiles, num_programs)
    assert 0 <= remainder < num_programs and remainder <= total_tiles
    assert (total_tiles - remainder) % num_programs == 0


@PROPERTY_SETTINGS
@given(num_xcds=XCD_COUNTS, counters_per_xcd=COUNTERS_PER_XCD, data=st.data())
def test_counter_maps_by_hardware_and_by_logical_id_serve_every_counter(
    num_xcds, counters_per_xcd, data
):
    """With a program per counter on every XCD: "hardware" keeps each program on a counter of
    its own XCD, "logical" is ws_counter of the remapped id, and both serve every counter;
    "hardware-xcd-logical-slot" keeps the XCD but takes the slot from the logical id."""
    num_programs = data.draw(st.integers(num_xcds * counters_per_xcd, MAX_PROGRAMS))
    config = schedule_config(1, num_programs, num_xcds, counters_per_xcd)
    logical = [tiling.xcd_remap(pid, num_programs, num_xcds) for pid in range(num_programs)]
    by_hardware, by_logical = set(), set()
    for pid, lp in enumerate(logical):
        counter = tiling.ws_counter_hardware(pid, lp, config)
        assert counter == tiling.ws_counter(pid, num_xcds, counters_per_xcd)
        by_hardware.add(counter)
        by_logical.add(tiling.ws_counter_logical(pid, lp, config))
        mixed = tiling.ws_counter_hardware_xcd_logical_slot(pid, lp, config)
        assert mixed // counters_per_xcd == tiling.xcd_of_program(pid, num_xcds)
        assert mixed % counters_per_xcd == (lp // num_xcds) % counters_per_xcd
    assert by_hardware == by_logical == set(range(num_xcds * counters_per_xcd))


@PROPERTY_SETTINGS
@given(
    total_tiles=st.integers(0, MAX_TILES),
    num_xcds=XCD_COUNTS,
    counters_per_xcd=COUNTERS_PER_XCD,
    data=st.data(),
)
def test_counter_range_presets_partition_the_dealt_tiles(
    total_tiles, num_xcds, counters_per_xcd, data
):
    """Both presets split tiles [0, dp_tiles) into consecutive ranges in counter order; "even"
    is ws_counter_range, "per-xcd" keeps each XCD's counters inside its cdiv share."""
    sk_tiles = data.draw(st.integers(0, total_tiles))
    config = schedule_config(total_tiles, 1, num_xcds, counters_per_xcd, sk_tiles)
    dealt = total_tiles - sk_tiles
    counters = range(config.num_counters)
    even = [tiling.ws_range_even(c, config) for c in counters]
    assert even == [tiling.ws_counter_range(c, dealt, config.num_counters) for c in counters]
    per_xcd = [tiling.ws_range_per_xcd(c, config) for c in counters]
    for ranges in (even, per_xcd):
        assert ranges[0][0] == 0 and ranges[-1][1] == dealt
        assert all(end == begin for (_, end), (begin, _) in itertools.pairwise(ranges))
        assert all(begin <= end for begin, end in ranges)
    share = tiling.cdiv(dealt, num_xcds)
    for counter, (begin, end) in enumerate(per_xcd):
        xcd = counter // counters_per_xcd
        assert min(xcd * share, dealt) <= begin <= end <= min((xcd + 1) * share, dealt)
        assert end - begin <= tiling.cdiv(share, counters_per_xcd)


@PROPERTY_SETTINGS
@given(total_tiles=st.integers(0, 2000), num_programs=PROGRAM_COUNTS)
def test_tile_order_presets_give_every_tile_once(total_tiles, num_programs):
    """Over persistent_tile_count steps per program both orders are permutations of the tiles;
    "strided" is persistent_tile, "contiguous" gives each program consecutive tiles."""
    config = schedule_config(total_tiles, num_programs)
    strided, contiguous = [], []
    for lp in range(num_programs):
        steps = range(tiling.persistent_tile_count(lp, total_tiles, num_programs))
        strided += [tiling.tile_order_strided(lp, step, config) for step in steps]
        assert strided[len(strided) - len(steps) :] == [
            tiling.persistent_tile(lp, step, num_programs) for step in steps
        ]
        contiguous += [tiling.tile_order_contiguous(lp, step, config) for step in steps]
    assert sorted(strided) == list(range(total_tiles))
    assert contiguous == list(range(total_tiles))  # program by program, each block in order


def mixed_ids_counter(hw_pid, logical_pid, config):
    """A counter map of one's own: the XCD from the hardware id, the slot the remapped id modulo
    the counters per XCD. Plain arithmetic on ``config``, so it jits as it is."""
    xcd = hw_pid % config.counter_xcds
    return xcd * config.counters_per_xcd + logical_pid % config.counters_per_xcd


@pytest.mark.interpreter
@settings(max_examples=1, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_hook_of_ones_own_runs_jitted_as_in_python(interpreted, data):
    """``triton.jit`` of a user's hook, called from a kernel with the ScheduleConfig a host
    passes, returns what refsim gets from the plain function."""
    _, _, hooks = interpreted
    with triton.knobs.runtime.scope():
        triton.knobs.runtime.interpret = True
        jitted = triton.jit(mixed_ids_counter)
    config = schedule_config(400, 304, 8, 8)
    cases = [(pid, tiling.xcd_remap(pid, 304, 8), config) for pid in range(304)]
    expected = {case: (mixed_ids_counter(*case),) for case in cases}
    assert run_hook_kernel(hooks, jitted, cases, 1) == expected
