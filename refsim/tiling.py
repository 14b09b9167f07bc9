"""The tiling contract: every index computation shared by the simulator and the kernels.

Each function is plain Python over non-negative integers and uses only ``+ - * // %``,
comparisons, ``min``/``max`` and ``if``, so the same source runs from Python (the simulator,
the planner) and inside a Triton kernel once wrapped by :func:`triton_namespace`.

Conventions
-----------
* ``pid`` is the hardware program id (``tl.program_id(0)``); on AMD, workgroup ``pid`` is
  dispatched to XCD ``pid % NUM_XCDS``.
* Tiles are numbered ``0 .. num_pid_m * num_pid_n - 1`` and mapped to ``(pid_m, pid_n)`` by
  :func:`grouped_tile`.
* K is counted in ``BLOCK_K`` iterations; a tile has ``iters_per_tile = cdiv(K, BLOCK_K)``.
* Stream-K: tiles ``[0, dp_tiles)`` are data-parallel (persistent stride over the grid), tiles
  ``[dp_tiles, total_tiles)`` are split into one contiguous range of K-iterations per program.
* Arguments written in UPPER_CASE are compile-time constants in the kernels; so are the named
  constants in :data:`CONSTANTS` (``tl.constexpr`` in the jitted functions' globals).

Schedule hooks
--------------
Some choices a kernel makes are hooks, so that refsim can describe a kernel written elsewhere:
the Stream-K split ``(total_tiles, num_programs) -> sk_tiles``, the work-stealing counter map
``(hw_pid, logical_pid, config) -> counter``, the counters' tile ranges ``(counter, config) ->
(begin, end)``, the tile each ticket of a counter names ``(counter, ticket, config) -> tile``
and the tile order ``(logical_pid, step, config) -> tile``. The presets below are contract
functions like the rest; ``config`` is a :class:`ScheduleConfig`, the launch's integers, which
a kernel passes to a jit function as a named tuple. The XCD remap is a hook too, ``(hw_pid,
num_programs, xcds) -> logical_pid``, whose presets are :func:`xcd_remap` and
:func:`xcd_remap_chunked` (``GemmConfig.xcd_remap`` and ``xcd_chunk``).
"""

import types
import typing

# XCD remap modes (``logical_program``'s REMAP).
REMAP_NONE = 0
REMAP_PLAIN = 1
REMAP_CHUNKED = 2
CONSTANTS = {"REMAP_NONE": REMAP_NONE, "REMAP_PLAIN": REMAP_PLAIN, "REMAP_CHUNKED": REMAP_CHUNKED}
# The fewest rows of a band of split-K's reduction (:func:`split_k_reduce_bands`).
MIN_REDUCE_BAND_ROWS = 4


class ScheduleConfig(typing.NamedTuple):
    """The integers of a launch that a schedule hook reads as its ``config`` argument.

    ``GemmConfig.schedule_config`` builds it; refsim passes it to every hook, and a kernel can
    pass the same named tuple to the jitted hook (Triton reads a named tuple's fields by name),
    so a hook that runs in refsim runs in a kernel. The counter layout fields describe the
    work-stealing counters: ``counter_xcds`` XCDs with ``counters_per_xcd`` counters each
    (1 and 1 for one global counter, and for the other strategies, which have no counters).
    """

    grid: int  # programs launched
    xcds: int  # XCDs of the device
    num_pid_m: int
    num_pid_n: int
    group_m: int
    total_tiles: int
    iters_per_tile: int
    dp_tiles: int  # tiles computed whole (work stealing: the tiles its counters hand out)
    sk_tiles: int  # tiles split Stream-K style over the grid, after the others
    counter_xcds: int
    counters_per_xcd: int
    num_counters: int  # counter_xcds * counters_per_xcd for work stealing, else 0


def cdiv(a, b):
    """Ceiling division of non-negative ``a`` by positive ``b``."""
    return (a + b - 1) // b


def grouped_tile(tile_id, num_pid_m, num_pid_n, GROUP_M):
    """Tile id -> (pid_m, pid_n), walking GROUP_M rows of tiles column by column (L2 reuse)."""
    group_width = GROUP_M * num_pid_n
    group_id = tile_id // group_width
    first_pid_m = group_id * GROUP_M
    group_rows = min(num_pid_m - first_pid_m, GROUP_M)
    within_group = tile_id % group_width
    pid_m = first_pid_m + within_group % group_rows
    pid_n = within_group // group_rows
    return pid_m, pid_n


def xcd_of_program(pid, NUM_XCDS):
    """XCD a workgroup lands on under AMD's round-robin dispatch."""
    return pid % NUM_XCDS


def xcd_remap(pid, num_programs, NUM_XCDS):
    """Hardware program id -> logical id such that each XCD owns one contiguous block of ids.

    XCD ``x`` receives hardware ids ``x, x + NUM_XCDS, ...``; after the remap they become the
    consecutive logical ids of block ``x``, so neighbouring tiles share an XCD's L2. Blocks differ
    in size by at most one when ``num_programs`` is not a multiple of ``NUM_XCDS``.
    """
    per_xcd = cdiv(num_programs, NUM_XCDS)
    tall_xcds = num_programs - (per_xcd - 1) * NUM_XCDS
    xcd = pid % NUM_XCDS
    local = pid // NUM_XCDS
    return xcd * (per_xcd - 1) + min(xcd, tall_xcds) + local


def xcd_remap_chunked(pid, num_programs, NUM_XCDS, CHUNK):
    """Like :func:`xcd_remap` but in chunks: each XCD gets CHUNK consecutive logical ids in turn.

    Programs past the last whole round of ``NUM_XCDS * CHUNK`` keep their id.
    """
    round_size = NUM_XCDS * CHUNK
    whole_rounds_end = (num_programs // round_size) * round_size
    local = pid // NUM_XCDS
    remapped = (local // CHUNK) * round_size + (pid % NUM_XCDS) * CHUNK + local % CHUNK
    logical = pid
    if pid < whole_rounds_end:
        logical = remapped
    return logical


def logical_program(pid, num_programs, NUM_XCDS, REMAP, CHUNK):
    """Hardware program id -> the program id every other tiling function sees.

    ``REMAP`` is one of ``REMAP_NONE`` (the id itself), ``REMAP_PLAIN`` (:func:`xcd_remap`)
    and ``REMAP_CHUNKED`` (:func:`xcd_remap_chunked` with ``CHUNK``).
    """
    lp = pid
    if REMAP == REMAP_PLAIN:
        lp = xcd_remap(pid, num_programs, NUM_XCDS)
    elif REMAP == REMAP_CHUNKED:
        lp = xcd_remap_chunked(pid, num_programs, NUM_XCDS, CHUNK)
    return lp


def persistent_tile_count(pid, num_tiles, num_programs):
    """How many of tiles ``pid, pid + num_programs, ...`` below ``num_tiles`` a program owns."""
    return cdiv(max(num_tiles - pid, 0), num_programs)


def persistent_tile(pid, step, num_programs):
    """The tile a persistent program processes at its ``step``-th iteration (static stride)."""
    return pid + step * num_programs


def streamk_sk_tiles(total_tiles, num_programs, TWO_TILE):
    """Number of tiles processed Stream-K style (the rest are data-parallel).

    ``TWO_TILE`` true: the Stream-K paper's "two-tile SK + DP" hybrid -- SK covers the partial
    last wave plus one full wave, so every program gets between one and two tiles of SK work
    (less than one when there are fewer tiles than programs: then every tile is SK); no SK at
    all when the tiles divide into whole waves. ``TWO_TILE`` false: "one-wave SK",
    every tile is split over the grid in a single wave.
    """
    sk_tiles = total_tiles
    if TWO_TILE:
        waves = total_tiles // num_programs
        leftover = total_tiles % num_programs
        sk_tiles = leftover + min(waves, 1) * num_programs
        if leftover == 0:
            sk_tiles = leftover  # 0, of the arguments' integer type (a literal would be int32)
    return sk_tiles


def streamk_split_two_tile(total_tiles, num_programs):
    """Split hook ``"two-tile"``: :func:`streamk_sk_tiles` with ``TWO_TILE`` (the default).

    Example: 400 tiles on 304 programs give 96 + 304 = 400 SK tiles; 608 tiles give none.
    """
    return streamk_sk_tiles(total_tiles, num_programs, True)


def streamk_split_one_wave(total_tiles, num_programs):
    """Split hook ``"one-wave"``: every tile goes Stream-K. Example: 400 tiles -> 400."""
    return streamk_sk_tiles(total_tiles, num_programs, False)


def streamk_split_remainder(total_tiles, num_programs):
    """Split hook ``"remainder"``: only the partial last wave goes Stream-K (tritonBLAS).

    Example: 400 tiles on 304 programs give 96 SK tiles after one DP wave of 304; 608 give 0.
    """
    return total_tiles % num_programs


def streamk_iter_range(pid, sk_iters, num_programs):
    """``[start, end)`` of the SK iterations owned by a program; the first ones get one extra."""
    base = sk_iters // num_programs
    extra = sk_iters % num_programs
    start = pid * base + min(pid, extra)
    end = (pid + 1) * base + min(pid + 1, extra)
    return start, end


def streamk_program_of_iter(it, sk_iters, num_programs):
    """Inverse of :func:`streamk_iter_range`: the program that owns SK iteration ``it``."""
    base = sk_iters // num_programs
    extra = sk_iters % num_programs
    threshold = extra * (base + 1)
    return min(it // (base + 1), extra) + max(it - threshold, 0) // max(base, 1)


def streamk_segment(it, end, iters_per_tile, first_sk_tile):
    """The piece of work starting at SK iteration ``it`` of a range ending at ``end``.

    Returns ``(tile, k_begin, k_end)``: the segment never crosses a tile boundary; the next
    segment starts at ``it + k_end - k_begin``.
    """
    tile = first_sk_tile + it // iters_per_tile
    k_begin = it % iters_per_tile
    k_end = min(iters_per_tile, k_begin + end - it)
    return tile, k_begin, k_end


def streamk_segment_back(it_end, start, iters_per_tile, first_sk_tile):
    """The piece of work ending at SK iteration ``it_end`` (exclusive) of a range from ``start``.

    For walking a program's range backwards: returns ``(tile, k_begin, k_end)``; the previous
    segment ends at ``it_end - (k_end - k_begin)``.
    """
    last = it_end - 1
    tile = first_sk_tile + last // iters_per_tile
    k_end = last % iters_per_tile + 1
    k_begin = max(k_end - (it_end - start), 0)
    return tile, k_begin, k_end


def streamk_walk_step(it, start, end, iters_per_tile, first_sk_tile, BACKWARD):
    """One step of a program's walk over its SK range ``[start, end)``.

    The walk starts at ``start`` forwards, or at ``end`` when ``BACKWARD``; returns the segment
    at position ``it`` as ``(tile, k_begin, k_end)`` and the next position. It is done after
    ``end - start`` iterations.
    """
    if BACKWARD:
        tile, k_begin, k_end = streamk_segment_back(it, start, iters_per_tile, first_sk_tile)
        next_it = it - (k_end - k_begin)
    else:
        tile, k_begin, k_end = streamk_segment(it, end, iters_per_tile, first_sk_tile)
        next_it = it + (k_end - k_begin)
    return tile, k_begin, k_end, next_it


def streamk_tile_programs(tile, first_sk_tile, iters_per_tile, sk_iters, num_programs):
    """``(owner, last)``: the programs holding an SK tile's first and last K-iteration.

    The owner holds ``k_begin == 0``; the contributors are ``owner + 1 .. last`` in K order.
    """
    first_iter = (tile - first_sk_tile) * iters_per_tile
    owner = streamk_program_of_iter(first_iter, sk_iters, num_programs)
    last = streamk_program_of_iter(first_iter + iters_per_tile - 1, sk_iters, num_programs)
    return owner, last


def streamk_partial_slot(program, tile, first_sk_tile, iters_per_tile, sk_iters, num_programs):
    """Workspace slot of logical ``program``'s partial of SK ``tile``.

    Two slots per program: ``2 * program`` for the segment at the start of its range,
    ``2 * program + 1`` for one that starts inside it (its last segment).
    """
    range_start, _ = streamk_iter_range(program, sk_iters, num_programs)
    slot = 2 * program
    if (tile - first_sk_tile) * iters_per_tile > range_start:
        slot = 2 * program + 1
    return slot


def streamk_tile_counter(tile, first_sk_tile):
    """Index of SK ``tile``'s arrival counter (last-arriver, atomic): SK tiles count from 0."""
    return tile - first_sk_tile


def max_work_items(dp_tiles, sk_iters, iters_per_tile, num_programs):
    """The most work items (trace rows) a program of a static schedule can have.

    Its persistent tiles of ``[0, dp_tiles)`` plus, when there are SK iterations, the segments
    of the longest SK range (a range of ``L`` iterations touches at most ``cdiv(L,
    iters_per_tile) + 1`` tiles); at least one. Data-parallel and split-K programs have one
    work item each: ``dp_tiles <= num_programs`` and no SK iterations.
    """
    sk_segments = sk_iters * 0
    if sk_iters > 0:
        sk_segments = cdiv(cdiv(sk_iters, num_programs), iters_per_tile) + 1
    return max(cdiv(dp_tiles, num_programs) + sk_segments, 1)


def ws_counter(pid, NUM_XCDS, COUNTERS_PER_XCD):
    """The tile counter a work-stealing program draws tickets from.

    Programs on one XCD share that XCD's ``COUNTERS_PER_XCD`` counters round-robin; pass
    ``NUM_XCDS = COUNTERS_PER_XCD = 1`` for a single global counter.
    """
    xcd = pid % NUM_XCDS
    local = pid // NUM_XCDS
    return xcd * COUNTERS_PER_XCD + local % COUNTERS_PER_XCD


def ws_counter_range(counter, total_tiles, num_counters):
    """``[begin, end)``: the tiles a counter hands out; the counters split the tiles evenly."""
    begin = counter * total_tiles // num_counters
    end = (counter + 1) * total_tiles // num_counters
    return begin, end


def ws_counter_hardware(hw_pid, logical_pid, config):
    """Counter map ``"hardware"`` (the default): :func:`ws_counter` of the hardware id.

    A program draws from a counter of its own XCD. Example: 8 XCDs with 2 counters each,
    hardware program 13 (XCD 5, its second program there) draws from counter 5 * 2 + 1 = 11.
    """
    return ws_counter(hw_pid, config.counter_xcds, config.counters_per_xcd)


def ws_counter_logical(hw_pid, logical_pid, config):
    """Counter map ``"logical"``: :func:`ws_counter` of the logical (XCD-remapped) id.

    Every counter is served when the grid has a program per counter, but a program's counter
    may sit on another XCD. Example: 304 programs, 8 XCDs, 1 counter each: hardware program 1
    is logical program 38, so it draws from counter 38 % 8 = 6.
    """
    return ws_counter(logical_pid, config.counter_xcds, config.counters_per_xcd)


def ws_counter_hardware_xcd_logical_slot(hw_pid, logical_pid, config):
    """Counter map ``"hardware-xcd-logical-slot"``: the XCD from the hardware id, the slot
    within it from the logical id, each as :func:`ws_counter` computes them.

    The mapping of a kernel that mixes the two ids; the remap gives each XCD a block of logical
    ids whose slots need not reach every counter of the XCD. Example: 304 programs, 8 XCDs, 8
    counters each: the programs of XCD 0 (logical ids 0..37) get slots 0..4 only, and counters
    5, 6 and 7 are never served.
    """
    xcd = hw_pid % config.counter_xcds
    slot = (logical_pid // config.counter_xcds) % config.counters_per_xcd
    return xcd * config.counters_per_xcd + slot


def ws_range_even(counter, config):
    """Counter ranges ``"even"`` (the default): :func:`ws_counter_range` over the dealt tiles.

    Example: 400 tiles over 64 counters: counter 0 hands out ``[0, 6)``, counter 1 ``[6, 12)``,
    counter 2 ``[12, 18)``, counter 3 ``[18, 25)``.
    """
    return ws_counter_range(counter, config.dp_tiles, config.num_counters)


def ws_range_per_xcd(counter, config):
    """Counter ranges ``"per-xcd"``: tiles split per XCD, then per counter slot of the XCD.

    Each XCD gets ``cdiv(tiles, counter_xcds)`` consecutive tiles and each of its counters
    ``cdiv`` of that, so trailing ranges may be short or empty. Example: 400 tiles, 8 XCDs, 8
    counters each: XCD 1 owns tiles ``[50, 100)``; its counter slots get 7 tiles each, the last
    only ``[99, 100)``.
    """
    tiles = config.dp_tiles
    per_xcd = cdiv(tiles, config.counter_xcds)
    per_counter = cdiv(per_xcd, config.counters_per_xcd)
    xcd_begin = min((counter // config.counters_per_xcd) * per_xcd, tiles)
    xcd_end = min(xcd_begin + per_xcd, tiles)
    begin = min(xcd_begin + (counter % config.counters_per_xcd) * per_counter, xcd_end)
    end = min(begin + per_counter, xcd_end)
    return begin, end


def ws_ticket_tile(counter, ticket, total_tiles, num_counters):
    """Tile for a counter's ``ticket``; a value ``>= end`` of the counter's range means done."""
    begin = counter * total_tiles // num_counters
    return begin + ticket


def ws_ticket_in_order(begin, ticket):
    """Ticket order ``"in-order"`` (the default): ticket ``t`` of a counter whose range starts
    at ``begin`` names tile ``begin + t``. Example: counter 1 of 400 tiles over 64 even ranges
    (``[6, 12)``) hands out tiles 6, 7, ..., 11 for tickets 0..5.

    The one preset that takes the range's ``begin`` rather than ``(counter, ticket, config)``:
    the range comes from the ``ws_counter_ranges`` hook, which ``config`` does not carry.
    """
    return begin + ticket


def ws_max_work_items(total_tiles, num_counters):
    """The most tiles one work-stealing program can take: all of the largest counter range."""
    return cdiv(total_tiles, num_counters)


def tile_order_strided(logical_pid, step, config):
    """Tile order ``"strided"`` (the default): :func:`persistent_tile`, ``lp, lp + grid, ...``.

    Example: 10 tiles on 4 programs: program 1 computes tiles 1, 5 and 9.
    """
    return persistent_tile(logical_pid, step, config.grid)


def tile_order_contiguous(logical_pid, step, config):
    """Tile order ``"contiguous"``: each program computes one block of consecutive tiles.

    The blocks have the sizes of :func:`persistent_tile_count` (the first ``tiles % grid``
    programs one more). Example: 10 tiles on 4 programs: program 1 computes tiles 3, 4 and 5.
    """
    base = config.total_tiles // config.grid
    extra = config.total_tiles % config.grid
    return logical_pid * base + min(logical_pid, extra) + step


def split_k_work(pid, SPLIT_K):
    """Split-K program -> ``(tile, split)``: the splits of one tile are neighbouring programs."""
    return pid // SPLIT_K, pid % SPLIT_K


def split_k_range(split, iters_per_tile, SPLIT_K):
    """``[k_begin, k_end)`` of a split: the tile's iterations divided as evenly as possible."""
    k_begin = split * iters_per_tile // SPLIT_K
    k_end = (split + 1) * iters_per_tile // SPLIT_K
    return k_begin, k_end


def split_k_partial_slot(tile, split, SPLIT_K):
    """Workspace slot of split ``split``'s partial of ``tile``: a tile's splits are neighbours."""
    return tile * SPLIT_K + split


def split_k_reduce_work(pid, REDUCE_BANDS):
    """Reduction program -> ``(tile, band)``: the bands of one tile are neighbouring programs.

    Band ``band`` of a ``BLOCK_M``-row tile is its rows ``[band * R, (band + 1) * R)`` with
    ``R = BLOCK_M // REDUCE_BANDS``.
    """
    return pid // REDUCE_BANDS, pid % REDUCE_BANDS


def split_k_max_reduce_bands(BLOCK_M):
    """The most row bands a ``BLOCK_M``-row tile's reduction can take: bands of at least
    ``MIN_REDUCE_BAND_ROWS`` rows."""
    return max(1, BLOCK_M // MIN_REDUCE_BAND_ROWS)


def split_k_reduce_bands(total_tiles, cus, BLOCK_M):
    """Row bands per tile of split-K's reduction: the smallest power of two that gives every CU
    a reduction program, at most :func:`split_k_max_reduce_bands`. One program per tile
    leaves most CUs idle when a few tiles are split many ways, and a program's partial
    reads are then bound by one CU's bandwidth."""
    most = split_k_max_reduce_bands(BLOCK_M)
    bands = 1
    while bands < most and total_tiles * bands < cus:
        bands = bands * 2
    return bands


CONTRACT = (
    cdiv,
    grouped_tile,
    xcd_of_program,
    xcd_remap,
    xcd_remap_chunked,
    logical_program,
    persistent_tile_count,
    persistent_tile,
    streamk_sk_tiles,
    streamk_split_two_tile,
    streamk_split_one_wave,
    streamk_split_remainder,
    streamk_iter_range,
    streamk_program_of_iter,
    streamk_segment,
    streamk_segment_back,
    streamk_walk_step,
    streamk_tile_programs,
    streamk_partial_slot,
    streamk_tile_counter,
    max_work_items,
    ws_counter,
    ws_counter_range,
    ws_counter_hardware,
    ws_counter_logical,
    ws_counter_hardware_xcd_logical_slot,
    ws_range_even,
    ws_range_per_xcd,
    ws_ticket_tile,
    ws_ticket_in_order,
    ws_max_work_items,
    tile_order_strided,
    tile_order_contiguous,
    split_k_work,
    split_k_range,
    split_k_partial_slot,
    split_k_reduce_work,
)


def triton_namespace():
    """The contract as ``triton.jit`` functions, calling one another as jit functions.

    Each function is rebuilt over a private globals dict whose names point at the jitted
    versions, so a jitted :func:`streamk_tile_programs` calls the jitted
    :func:`streamk_program_of_iter`, and the named :data:`CONSTANTS` are ``tl.constexpr``.
    Imports triton; call it when building kernels, not at import.
    """
    import triton
    import triton.language

    # The interpreter patches triton.language only if the function's globals can see it.
    scope = {"__builtins__": __builtins__, "__name__": __name__, "tl": triton.language}
    scope.update({name: triton.language.constexpr(value) for name, value in CONSTANTS.items()})
    jitted = {}
    for fn in CONTRACT:
        clone = types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__, fn.__closure__)
        clone.__doc__ = fn.__doc__
        clone.__module__ = fn.__module__
        clone.__qualname__ = fn.__qualname__
        jitted[fn.__name__] = triton.jit(clone)
    scope.update(jitted)
    return types.SimpleNamespace(**jitted)
