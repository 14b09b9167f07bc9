"""The static plan: which program computes which tile and K-range, in which order.

Built only from :mod:`refsim.tiling` and a :class:`~refsim.config.GemmConfig` (whose schedule
hooks it applies, the XCD remap among them), so the kernels, which call the same functions,
follow the same plan. Work stealing has no static tile order (tickets are a race); its plan
fixes each program's counter, each counter's tile range and, with ``sk_tiles``, each program's
Stream-K tail; which tile a ticket names is ``GemmConfig.ticket_tile``.
"""

import dataclasses
import typing

from . import strategies, tiling


class WorkItem(typing.NamedTuple):
    """One piece of work of one program: tile ``tile`` over K-iterations ``[k_begin, k_end)``.

    Roles: ``dp`` (whole tile, data-parallel or persistent), ``sk-owner`` (holds the tile's first
    K-iteration, whole tile included), ``sk-contributor`` (a later K-range of an SK tile),
    ``split`` (one split-K slice).
    """

    program: int
    step: int
    tile: int
    pid_m: int
    pid_n: int
    k_begin: int
    k_end: int
    role: str


@dataclasses.dataclass(frozen=True)
class SplitTile:
    """A tile whose K-range is spread over several programs (Stream-K SK tile or split-K)."""

    tile: int
    programs: tuple  # hardware program ids in K order; the first holds k_begin == 0


@dataclasses.dataclass(frozen=True)
class Plan:
    """What every program does, as far as it is known before the launch.

    ``programs[pid]``: hardware program ``pid``'s work items in execution order; for work
    stealing only its Stream-K tail, whose steps count from 0 here and follow the program's
    stolen tiles at run time. ``counters[pid]``: the work-stealing counter it draws from, and
    ``counter_ranges[c]``: counter ``c``'s ``(begin, end)`` tile range (both empty for the other
    strategies).
    """

    config: object
    programs: tuple  # per hardware program id: tuple of WorkItem in execution order
    split_tiles: dict  # tile -> SplitTile, for tiles computed by more than one program
    counters: tuple  # per hardware program id: work-stealing counter (empty otherwise)
    counter_ranges: tuple = ()  # per work-stealing counter: (begin, end)

    def items(self):
        """Every planned work item, program by program."""
        return [item for program in self.programs for item in program]


def build_plan(config):
    """The plan for ``config``: its strategy's plan builder (``Strategy.plan``, registered in
    :data:`refsim.strategies.PLAN_BUILDERS`); see the module docstring."""
    builder = strategies.PLAN_BUILDERS[config.scheme.plan]
    programs, split_tiles, counters = builder(config)
    counter_ranges = tuple(config.counter_range(c) for c in range(config.num_counters))
    return Plan(config, tuple(map(tuple, programs)), split_tiles, tuple(counters), counter_ranges)


def _item(config, program, step, tile, k_begin, k_end, role):
    pid_m, pid_n = tiling.grouped_tile(tile, config.num_pid_m, config.num_pid_n, config.group_m)
    return WorkItem(program, step, tile, pid_m, pid_n, k_begin, k_end, role)


def _logical_ids(config):
    """``(logical, hardware)``: each hardware program's logical id (by the config's XCD remap,
    built-in or a function of the kernel's) and each logical id's hardware program."""
    logical = config.logical_programs
    hardware = [0] * config.grid
    for pid, lp in enumerate(logical):
        hardware[lp] = pid
    return logical, hardware


def _ordered(config):
    """data_parallel and persistent: ``persistent_tile_count`` steps each, tiles by ``tile_order``
    (one step per program for data_parallel, whose grid is the tile count)."""
    logical, _ = _logical_ids(config)
    iters, tiles, grid = config.iters_per_tile, config.total_tiles, config.grid
    programs = []
    for pid in range(grid):
        lp = logical[pid]
        count = tiling.persistent_tile_count(lp, tiles, grid)
        programs.append(
            [
                _item(config, pid, step, config.tile_of(lp, step), 0, iters, "dp")
                for step in range(count)
            ]
        )
    return programs, {}, ()


def _persistent_steps(config, pid, lp, num_tiles):
    iters = config.iters_per_tile
    count = tiling.persistent_tile_count(lp, num_tiles, config.grid)
    return [
        _item(config, pid, step, tiling.persistent_tile(lp, step, config.grid), 0, iters, "dp")
        for step in range(count)
    ]


def _streamk(config):
    logical, hardware = _logical_ids(config)
    programs = [
        _persistent_steps(config, pid, logical[pid], config.dp_tiles) for pid in range(config.grid)
    ]
    return *_with_sk_tail(config, programs, logical, hardware), ()


def _with_sk_tail(config, programs, logical, hardware):
    """Append each program's Stream-K segments of tiles ``[dp_tiles, total_tiles)`` to its
    items; returns ``(programs, split_tiles)``."""
    grid, iters, first_sk = config.grid, config.iters_per_tile, config.dp_tiles
    sk_iters = config.sk_iters
    for pid, items in enumerate(programs):
        start, end = tiling.streamk_iter_range(logical[pid], sk_iters, grid)
        for tile, k_begin, k_end in _sk_segments(start, end, iters, first_sk, config.fixup):
            role = "sk-owner" if k_begin == 0 else "sk-contributor"
            items.append(_item(config, pid, len(items), tile, k_begin, k_end, role))
    split_tiles = {}
    for tile in range(first_sk, config.total_tiles):
        owner, last = tiling.streamk_tile_programs(tile, first_sk, iters, sk_iters, grid)
        if last > owner:
            split_tiles[tile] = SplitTile(
                tile, tuple(hardware[lp] for lp in range(owner, last + 1))
            )
    return programs, split_tiles


def _sk_segments(start, end, iters, first_sk, fixup):
    """A program's SK segments in execution order.

    Forwards, except for a protocol that walks ``backward`` (turnstile): there the partial
    holding k = 0 must be produced first,
    so each program walks its range backwards and starts with the tile it owns; walking forwards
    would chain every program behind the end of its predecessor's whole range.
    """
    protocol = strategies.fixup(fixup)
    backward = protocol is not None and protocol.backward
    segments = []
    it = end if backward else start
    remaining = end - start
    while remaining > 0:
        tile, k_begin, k_end, it = tiling.streamk_walk_step(
            it, start, end, iters, first_sk, backward
        )
        segments.append((tile, k_begin, k_end))
        remaining -= k_end - k_begin
    return segments


def _split_k(config):
    logical, hardware = _logical_ids(config)
    splits, iters = config.split_k, config.iters_per_tile
    programs = []
    for pid in range(config.grid):
        tile, split = tiling.split_k_work(logical[pid], splits)
        k_begin, k_end = tiling.split_k_range(split, iters, splits)
        programs.append([_item(config, pid, 0, tile, k_begin, k_end, "split")])
    split_tiles = {}
    if splits > 1:
        split_tiles = {
            tile: SplitTile(tile, tuple(hardware[tile * splits + s] for s in range(splits)))
            for tile in range(config.total_tiles)
        }
    return programs, split_tiles, ()


def _work_stealing(config):
    logical, hardware = _logical_ids(config)
    counters = [config.counter_of(pid) for pid in range(config.grid)]
    programs: list[list[WorkItem]] = [[] for _ in range(config.grid)]
    return *_with_sk_tail(config, programs, logical, hardware), counters


for _name, _builder in (
    ("ordered", _ordered),
    ("streamk", _streamk),
    ("work_stealing", _work_stealing),
    ("split_k", _split_k),
):
    strategies.register_plan(_name, _builder)
