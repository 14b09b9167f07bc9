"""GemmConfig: the one description of a GEMM launch, shared by the simulator and the kernels.

Every option is a dataclass field whose metadata says what it means (``help``), which
strategies take it (``strategies``; others refuse it) and, for strategy options, what it is
when not given (``strategy_default``). :func:`refsim.simulate` and the ``refsim simulate`` command line
read their options from these fields.
"""

import dataclasses
import functools
import numbers
from collections.abc import Callable, Iterable
from typing import Any

from . import strategies, tiling
from .hardware import DEFAULT_DEVICE, PROFILES, HardwareProfile, get_profile

# The built-in strategies and fixup protocols (refsim.strategies registers them, and more).
STRATEGIES = strategies.strategy_names()
FIXUPS = strategies.fixup_names()
# Schedule hooks (refsim.tiling's module docstring): each preset's name and contract function.
SK_HYBRIDS = {
    "two-tile": tiling.streamk_split_two_tile,
    "one-wave": tiling.streamk_split_one_wave,
    "remainder": tiling.streamk_split_remainder,
}
WS_COUNTER_MAPS = {
    "hardware": tiling.ws_counter_hardware,
    "logical": tiling.ws_counter_logical,
    "hardware-xcd-logical-slot": tiling.ws_counter_hardware_xcd_logical_slot,
}
WS_COUNTER_RANGES = {"even": tiling.ws_range_even, "per-xcd": tiling.ws_range_per_xcd}
# The one preset is applied by GemmConfig.ticket_tile, which knows the counter's range.
WS_TICKET_TILES = {"in-order": tiling.ws_ticket_in_order}
TILE_ORDERS = {"strided": tiling.tile_order_strided, "contiguous": tiling.tile_order_contiguous}
# Per hook field: its presets and the signature a function given instead must have.
HOOKS: dict[str, tuple[dict[str, Callable[..., Any]], str]] = {
    "sk_hybrid": (SK_HYBRIDS, "(total_tiles, num_programs) -> sk_tiles"),
    "ws_counter_map": (WS_COUNTER_MAPS, "(hw_pid, logical_pid, config) -> counter"),
    "ws_counter_ranges": (WS_COUNTER_RANGES, "(counter, config) -> (begin, end)"),
    "ws_ticket_tile": (WS_TICKET_TILES, "(counter, ticket, config) -> tile"),
    "tile_order": (TILE_ORDERS, "(logical_pid, step, config) -> tile"),
}
Hook = str | Callable[..., Any]
# What a function given as xcd_remap takes and returns (its presets are True and False).
XCD_REMAP_SIGNATURE = "(hw_pid, num_programs, xcds) -> logical_pid"
DTYPE_ALIASES = {
    "fp16": "fp16",
    "float16": "fp16",
    "half": "fp16",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "fp32": "fp32",
    "float32": "fp32",
    "float": "fp32",
}
DTYPE_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4}
DEFAULT_BLOCKS = {"block_m": 256, "block_n": 256, "block_k": 64}
BLOCK_DIMENSIONS = {"block_m": "m", "block_n": "n", "block_k": "k"}
SMALLEST_BLOCK = 16  # the smallest tl.dot shape


def _option(
    help: str,
    default: Any = None,
    *,
    strategy_default: Any = None,
    choices: Iterable[str] = (),
) -> Any:
    """A GemmConfig field: its default and the metadata the API and the command line read.

    ``strategy_default``: its value, under the strategies that take the option (their
    ``options``, :mod:`refsim.strategies`), when not given (None: derived later).
    """
    metadata = {"help": help, "choices": tuple(choices)}
    if strategy_default is not None:
        metadata["strategy_default"] = strategy_default
    return dataclasses.field(default=default, metadata=metadata)


def _integer(name: str, value: object) -> int:
    """A positive ``value`` as a plain int (numpy integers included), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}={value!r}: must be a positive integer")
    return int(value)


def _choice(name: str, value: object, accepted: Iterable[str]) -> None:
    accepted = tuple(accepted)
    if value not in accepted:
        raise ValueError(f"{name}={value!r}: accepted values are {', '.join(map(repr, accepted))}")


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def hook_name(value: object) -> str | None:
    """A hook field as the summary shows it: a preset's name, a function's qualified name."""
    if value is None or isinstance(value, str):
        return value
    return getattr(value, "__qualname__", repr(value))


def fitting_block(size: int) -> int:
    """The next power of two of ``size``, at least the smallest tl.dot shape."""
    return max(SMALLEST_BLOCK, 1 << (size - 1).bit_length())


@dataclasses.dataclass(frozen=True)
class GemmConfig:
    """C[M, N] = A[M, K] @ B[K, N] (+ bias[N]) tiled by one strategy on one device.

    Fields left as ``None`` are derived when the object is built, so a constructed config is
    complete (the annotations give the types of a built config; the strategy options stay None
    under the strategies that do not take them):

    * ``block_m``/``block_n``/``block_k``: 256/256/64, each lowered to the next power of two of
      its dimension (at least 16) when the problem is smaller, so that a small problem is not
      charged for a block it does not fill (see :attr:`block_fit`).
    * ``cus``/``xcds``: the profile's CU and XCD counts.
    * ``grid``: CUs for the persistent strategies (persistent, streamk, work_stealing); the tile
      count for data_parallel; tiles x ``split_k`` for split_k.
    * ``sk_tiles`` (streamk): by ``sk_hybrid`` -- ``"two-tile"`` (default): the partial last
      wave plus one full wave go Stream-K, none when tiles divide into whole waves;
      ``"one-wave"``: every tile goes Stream-K; ``"remainder"``: the partial last wave only;
      or a function ``(total_tiles, num_programs) -> sk_tiles``. Work stealing: 0 (its last
      ``sk_tiles`` tiles, when given, are split Stream-K style after the stolen ones).
    * ``split_k`` (split_k): the smallest split that gives every CU a program, at most the
      number of K-iterations of a tile.
    * ``reduce_bands`` (split_k): the row bands each tile's reduction launch is cut into, one
      program each; by :func:`refsim.tiling.split_k_reduce_bands` (1 when ``split_k`` is 1).
    * ``fixup``, ``sk_hybrid`` (streamk), ``counters_per_xcd``, ``global_counter``,
      ``ws_counter_map``, ``ws_counter_ranges``, ``ws_ticket_tile`` (work_stealing),
      ``tile_order`` (data_parallel, persistent): the documented defaults for their strategy;
      they stay None for the other strategies, which refuse them. Work stealing takes ``fixup``
      only with ``sk_tiles``.
    * The hooks (``sk_hybrid``, ``ws_counter_map``, ``ws_counter_ranges``, ``ws_ticket_tile``,
      ``tile_order``) take a preset's name or a function under the tiling contract's rules
      (see :mod:`refsim.tiling`); :meth:`counter_of`, :meth:`counter_range`,
      :meth:`ticket_tile` and :meth:`tile_of` apply them and check what they return.
    * ``xcd_remap``: true on multi-XCD devices; logical program ids are made contiguous per XCD
      (``xcd_chunk`` consecutive ids at a time when set, else one block per XCD). A function
      ``(hw_pid, num_programs, xcds) -> logical_pid`` given instead is the remap itself (a
      kernel's own); :meth:`logical_programs` applies it and checks that it is a permutation.
    """

    m: int = dataclasses.field(metadata={"help": "rows of A and C"})
    n: int = dataclasses.field(metadata={"help": "columns of B and C"})
    k: int = dataclasses.field(metadata={"help": "columns of A, rows of B"})
    strategy: str = _option("how tiles are shared out", "streamk", choices=STRATEGIES)
    block_m: int = _option("tile rows (default 256, fitted to a smaller M)")
    block_n: int = _option("tile columns (default 256, fitted to a smaller N)")
    block_k: int = _option("K per iteration (default 64, fitted to a smaller K)")
    group_m: int = _option("tile rows per group of the grouped tile order", 8)
    cus: int = _option("CUs/SMs to use (default: the device's)")
    xcds: int = _option("XCDs (default: the device's)")
    grid: int = _option("programs to launch (default: by strategy)")
    sk_tiles: int | None = _option(
        "Stream-K tiles (default: by the hybrid rule; 0 for work_stealing)",
    )
    sk_hybrid: Hook | None = _option(  # noqa: RUF009 (_option returns a field)
        "how many tiles go Stream-K (Python also takes a function)",
        strategy_default="two-tile",
        choices=SK_HYBRIDS,
    )
    fixup: str | None = _option(
        "how split tiles are reduced",
        strategy_default="owner-waits",
        choices=FIXUPS,
    )
    counters_per_xcd: int | None = _option("tile counters per XCD", strategy_default=1)
    global_counter: bool | None = _option(
        "one counter for the whole device",
        strategy_default=False,
    )
    ws_counter_map: Hook | None = _option(  # noqa: RUF009 (_option returns a field)
        "which counter each program draws from (Python also takes a function)",
        strategy_default="hardware",
        choices=WS_COUNTER_MAPS,
    )
    ws_counter_ranges: Hook | None = _option(  # noqa: RUF009 (_option returns a field)
        "which tiles each counter hands out (Python also takes a function)",
        strategy_default="even",
        choices=WS_COUNTER_RANGES,
    )
    ws_ticket_tile: Hook | None = _option(  # noqa: RUF009 (_option returns a field)
        "which tile each ticket of a counter names (Python also takes a function)",
        strategy_default="in-order",
        choices=WS_TICKET_TILES,
    )
    tile_order: Hook | None = _option(  # noqa: RUF009 (_option returns a field)
        "which tile each program computes at each step (Python also takes a function)",
        strategy_default="strided",
        choices=TILE_ORDERS,
    )
    split_k: int | None = _option(
        "splits of each tile's K-range (default: enough to fill the CUs)",
    )
    reduce_bands: int | None = _option(
        "row bands each tile's reduction is cut into (default: enough to fill the CUs)",
    )
    dtype: str = _option("input dtype", "bf16", choices=("fp16", "bf16", "fp32"))
    device: str | HardwareProfile = _option(  # noqa: RUF009 (_option returns a field)
        "hardware profile (Python also takes a HardwareProfile)", DEFAULT_DEVICE, choices=PROFILES
    )
    xcd_remap: bool | Callable[..., Any] = _option(  # noqa: RUF009 (_option returns a field)
        "make logical program ids contiguous per XCD (default: on multi-XCD devices; "
        "Python also takes a function)"
    )
    xcd_chunk: int | None = _option("remap in chunks of this many consecutive ids")
    # The fields left to their derivation, so that replace() derives them again.
    _derived: frozenset[str] = dataclasses.field(
        default=frozenset(), init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self._set(
            "_derived",
            frozenset(f.name for f in dataclasses.fields(self) if getattr(self, f.name) is None),
        )
        strategies.strategy(self.strategy)  # ValueError naming the registered ones
        for name in ("m", "n", "k", "group_m"):
            self._set(name, _integer(name, getattr(self, name)))
        self._fill_strategy_options()
        self._fill_blocks()
        if self.global_counter is not None and not isinstance(self.global_counter, bool):
            raise ValueError(f"global_counter={self.global_counter!r}: must be True or False")
        remap = self.xcd_remap
        if not (remap is None or isinstance(remap, bool) or callable(remap)):
            raise ValueError(
                f"xcd_remap={self.xcd_remap!r}: must be True, False or a function "
                f"{XCD_REMAP_SIGNATURE}"
            )
        if self.counters_per_xcd is not None:
            self._set("counters_per_xcd", _integer("counters_per_xcd", self.counters_per_xcd))
        for name in HOOKS:
            self._check_hook(name)
        strategies.fixup(self.fixup)  # ValueError naming the registered ones
        if self.dtype not in DTYPE_ALIASES:
            _choice("dtype", self.dtype, tuple(DTYPE_ALIASES))
        self._set("dtype", DTYPE_ALIASES[self.dtype])
        profile = get_profile(self.device)
        preset = isinstance(self.device, str) or PROFILES.get(profile.name) == profile
        self._set("device", profile.name if preset else profile)
        cus, xcds = self._fill_machine(profile)
        grid = self._fill_grid(cus)
        self._check_work_stealing(grid, xcds)

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)

    def __hash__(self) -> int:
        """The compared fields' hash, computed once: configs key the kernels' launch caches,
        where hashing every field on every call would cost more than the rest of the lookup."""
        cached = self.__dict__.get("_hash_value")
        if cached is None:
            fields = dataclasses.fields(self)
            cached = hash(tuple(getattr(self, f.name) for f in fields if f.compare))
            self._set("_hash_value", cached)
        return cached

    def __getstate__(self) -> dict[str, object]:
        """Pickled without the cached hash: string hashes differ between processes."""
        state = dict(self.__dict__)
        state.pop("_hash_value", None)
        return state

    def _check_hook(self, name: str) -> None:
        """A hook field holds a preset's name or a function (None: not this strategy's)."""
        value = getattr(self, name)
        presets, signature = HOOKS[name]
        if value is None or callable(value) or (isinstance(value, str) and value in presets):
            return
        raise ValueError(
            f"{name}={value!r}: accepted values are {', '.join(map(repr, presets))} "
            f"or a function {signature}"
        )

    def _hook(self, name: str) -> Callable[..., Any]:
        """The function of hook field ``name``: the preset it names, or the function given."""
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"{name}: strategy={self.strategy!r} does not take it")
        return HOOKS[name][0][value] if isinstance(value, str) else value

    def _fill_strategy_options(self) -> None:
        """Refuse options the strategy does not take; give the ones it takes their default."""
        taken = self.scheme.options
        for name in strategies.strategy_options():
            value = getattr(self, name)
            if name not in taken:
                if value is not None:
                    raise ValueError(
                        f"{name}={value!r}: only strategy="
                        f"{' or '.join(map(repr, option_strategies(name)))} takes it"
                    )
            elif value is None and "strategy_default" in FIELDS[name].metadata:
                self._set(name, FIELDS[name].metadata["strategy_default"])

    def _fill_blocks(self) -> None:
        for name, dimension in BLOCK_DIMENSIONS.items():
            value = getattr(self, name)
            if value is None:
                value = min(DEFAULT_BLOCKS[name], fitting_block(getattr(self, dimension)))
            value = _integer(name, value)
            if value < SMALLEST_BLOCK or value & (value - 1):
                raise ValueError(
                    f"{name}={value}: accepted values are powers of two >= {SMALLEST_BLOCK} "
                    "(the smallest tl.dot shape)"
                )
            self._set(name, value)

    def _fill_machine(self, profile: HardwareProfile) -> tuple[int, int]:
        cus = _integer("cus", profile.cus if self.cus is None else self.cus)
        xcds = _integer("xcds", profile.xcds if self.xcds is None else self.xcds)
        if cus > profile.cus:
            raise ValueError(
                f"cus={cus}: {profile.name} has {profile.cus}; for a bigger device "
                "build a HardwareProfile (dataclasses.replace on a preset)"
            )
        if xcds > cus and self.xcds is None:
            raise ValueError(
                f"cus={cus}: fewer CUs than {profile.name}'s {xcds} XCDs (its default xcds); "
                "give xcds too"
            )
        if xcds > cus:
            raise ValueError(f"xcds={xcds}: more XCDs than cus={cus}")
        if cus % xcds:
            raise ValueError(
                f"cus={cus} does not divide over xcds={xcds}: pass a CU count that "
                f"is a multiple of {xcds}, or xcds= to match"
            )
        self._set("cus", cus)
        self._set("xcds", xcds)
        self._set("xcd_remap", xcds > 1 if self.xcd_remap is None else self.xcd_remap)
        if self.xcd_chunk is not None:
            self._set("xcd_chunk", _integer("xcd_chunk", self.xcd_chunk))
            if callable(self.xcd_remap):
                raise ValueError(
                    f"xcd_chunk={self.xcd_chunk}: chunks the built-in remap; the function given "
                    f"as xcd_remap ({hook_name(self.xcd_remap)}) takes none"
                )
        return cus, xcds

    def _fill_grid(self, cus: int) -> int:
        tiles = self.total_tiles
        split = 1
        rule = self.scheme.grid
        if rule == "per-slice":
            if self.split_k is None:
                split = max(1, min(self.iters_per_tile, tiling.cdiv(cus, tiles)))
            else:
                split = _integer("split_k", self.split_k)
            if split > self.iters_per_tile:
                raise ValueError(
                    f"split_k={split}: at most {self.iters_per_tile}, the K-iterations "
                    f"of a tile (K={self.k}, block_k={self.block_k})"
                )
            self._set("split_k", split)
            self._fill_reduce_bands(tiles, cus, split)
        fixed_grid = {"per-tile": tiles, "per-slice": tiles * split}
        if rule in fixed_grid:
            if self.grid is not None and self.grid != fixed_grid[rule]:
                raise ValueError(
                    f"grid={self.grid}: strategy={self.strategy!r} launches one program "
                    f"per work unit, {fixed_grid[rule]} here"
                )
            grid = fixed_grid[rule]
        else:
            grid = _integer("grid", cus if self.grid is None else self.grid)
        self._set("grid", grid)
        if "sk_tiles" in self.scheme.options:
            self._fill_sk_tiles(tiles, grid)
        return grid

    def _fill_reduce_bands(self, tiles: int, cus: int, split: int) -> None:
        bands = self.reduce_bands
        if bands is None:
            bands = tiling.split_k_reduce_bands(tiles, cus, self.block_m) if split > 1 else 1
        bands = _integer("reduce_bands", bands)
        most = tiling.split_k_max_reduce_bands(self.block_m)
        if bands & (bands - 1) or bands > most:
            raise ValueError(
                f"reduce_bands={bands}: accepted values are powers of two up to {most} "
                f"(block_m={self.block_m} in bands of at least {tiling.MIN_REDUCE_BAND_ROWS} rows)"
            )
        if bands > 1 and split == 1:
            raise ValueError(
                f"reduce_bands={bands}: split_k=1 stores each tile directly, with no reduction"
            )
        self._set("reduce_bands", bands)

    def _fill_sk_tiles(self, tiles: int, grid: int) -> None:
        sk = self.sk_tiles
        if sk is None and "sk_hybrid" in self.scheme.options:
            sk = self._hook("sk_hybrid")(tiles, grid)
            if not _is_int(sk) or not 0 <= sk <= tiles:
                raise ValueError(
                    f"sk_hybrid={hook_name(self.sk_hybrid)}: returned {sk!r} for {tiles} tiles "
                    f"on a grid of {grid}; a split rule returns an integer in 0..{tiles}"
                )
        elif sk is None:
            sk = 0
        if not _is_int(sk) or not 0 <= sk <= tiles:
            raise ValueError(f"sk_tiles={sk!r}: must be an integer in 0..{tiles} (the tile count)")
        self._set("sk_tiles", int(sk))
        if self.scheme.dynamic and not sk:
            if "fixup" not in self._derived:
                raise ValueError(
                    f"fixup={self.fixup!r}: work_stealing splits no tile without sk_tiles, "
                    "so it has nothing to reduce"
                )
            self._set("fixup", None)

    def _check_work_stealing(self, grid: int, xcds: int) -> None:
        if not self.scheme.dynamic or self.global_counter:
            return
        per_xcd = grid // xcds
        if per_xcd < (self.counters_per_xcd or 1):
            raise ValueError(
                f"counters_per_xcd={self.counters_per_xcd}: the grid of {grid} puts only "
                f"{per_xcd} programs on some XCD, so some counter's tiles would never "
                "be taken; lower counters_per_xcd or raise grid"
            )

    # Derived quantities -------------------------------------------------------------------
    @property
    def scheme(self) -> strategies.Strategy:
        """The registered :class:`refsim.strategies.Strategy` called ``strategy``: its traits."""
        return strategies.strategy(self.strategy)

    @property
    def protocol(self) -> strategies.FixupProtocol | None:
        """The registered :class:`refsim.strategies.FixupProtocol` called ``fixup`` (None
        without one): its traits."""
        return strategies.fixup(self.fixup)

    @functools.cached_property
    def profile(self) -> HardwareProfile:
        return get_profile(self.device)

    @functools.cached_property
    def num_pid_m(self) -> int:
        return tiling.cdiv(self.m, self.block_m)

    @functools.cached_property
    def num_pid_n(self) -> int:
        return tiling.cdiv(self.n, self.block_n)

    @functools.cached_property
    def total_tiles(self) -> int:
        return self.num_pid_m * self.num_pid_n

    @functools.cached_property
    def iters_per_tile(self) -> int:
        return tiling.cdiv(self.k, self.block_k)

    @property
    def dp_tiles(self) -> int:
        """Tiles computed whole by one program (all but Stream-K's SK tiles and split-K's splits)."""
        if (self.split_k or 1) > 1:
            return 0
        return self.total_tiles - (self.sk_tiles or 0)

    @property
    def sk_iters(self) -> int:
        return (self.sk_tiles or 0) * self.iters_per_tile

    @property
    def num_counters(self) -> int:
        """Work-stealing tile counters (0 for other strategies)."""
        if not self.scheme.dynamic:
            return 0
        xcds, per_xcd = self.counter_layout
        return xcds * per_xcd

    @property
    def counter_layout(self) -> tuple[int, int]:
        """``(NUM_XCDS, COUNTERS_PER_XCD)`` as :func:`refsim.tiling.ws_counter` takes them
        (work stealing; ``(1, 1)``, one counter, for the other strategies)."""
        if self.global_counter or self.counters_per_xcd is None:
            return (1, 1)
        return (self.xcds, self.counters_per_xcd)

    @property
    def elem_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def flops(self) -> int:
        return 2 * self.m * self.n * self.k

    @property
    def block_fit(self) -> str | None:
        """How the blocks compare with the problem, for the summary.

        ``"fitted"``: a default block was lowered to a smaller dimension; ``"padded"``: a given
        block is larger than its dimension needs (the next power of two, at least 16), so the
        simulated work includes padding, as a kernel with that block would compute it;
        None: neither.
        """
        if any(
            getattr(self, name) > fitting_block(getattr(self, dimension))
            for name, dimension in BLOCK_DIMENSIONS.items()
        ):
            return "padded"
        if any(getattr(self, name) < DEFAULT_BLOCKS[name] for name in self._derived_blocks):
            return "fitted"
        return None

    @property
    def _derived_blocks(self) -> tuple[str, ...]:
        return tuple(name for name in DEFAULT_BLOCKS if name in self._derived)

    @property
    def remap_mode(self) -> int:
        """``logical_program``'s REMAP: ``tiling.REMAP_NONE``, ``REMAP_PLAIN`` or ``REMAP_CHUNKED``.

        ValueError for a function given as ``xcd_remap``, which no REMAP code names.
        """
        if callable(self.xcd_remap):
            raise ValueError(
                f"xcd_remap={hook_name(self.xcd_remap)}: a remap function has no REMAP code "
                "(only the built-in remaps have one)"
            )
        if not self.xcd_remap or self.xcds == 1:
            return tiling.REMAP_NONE
        return tiling.REMAP_PLAIN if self.xcd_chunk is None else tiling.REMAP_CHUNKED

    def logical_program(self, pid: int) -> int:
        """The program id the tiling functions see for hardware program ``pid``."""
        if callable(self.xcd_remap):
            return self.logical_programs[pid]
        return tiling.logical_program(
            pid, self.grid, self.xcds, self.remap_mode, self.xcd_chunk or 1
        )

    @functools.cached_property
    def logical_programs(self) -> tuple[int, ...]:
        """Every hardware program's logical id, in hardware id order.

        A function given as ``xcd_remap`` is called once per program as ``(hw_pid, grid,
        xcds)``; ValueError unless it returns each of ``0 .. grid - 1`` exactly once.
        """
        if not callable(self.xcd_remap):
            return tuple(self.logical_program(pid) for pid in range(self.grid))
        logical: dict[int, int] = {}
        for pid in range(self.grid):
            lp = self.xcd_remap(pid, self.grid, self.xcds)
            if not _is_int(lp) or not 0 <= lp < self.grid:
                raise ValueError(
                    f"xcd_remap={hook_name(self.xcd_remap)}: program {pid} got logical id "
                    f"{lp!r}; the ids are 0..{self.grid - 1}"
                )
            if lp in logical:
                raise ValueError(
                    f"xcd_remap={hook_name(self.xcd_remap)}: programs {logical[lp]} and {pid} "
                    f"both got logical id {lp}; a remap gives each program its own id"
                )
            logical[int(lp)] = pid
        return tuple(sorted(logical, key=logical.__getitem__))

    @functools.cached_property
    def schedule_config(self) -> tiling.ScheduleConfig:
        """The integers the schedule hooks read (their ``config`` argument)."""
        counter_xcds, counters_per_xcd = self.counter_layout
        return tiling.ScheduleConfig(
            grid=self.grid,
            xcds=self.xcds,
            num_pid_m=self.num_pid_m,
            num_pid_n=self.num_pid_n,
            group_m=self.group_m,
            total_tiles=self.total_tiles,
            iters_per_tile=self.iters_per_tile,
            dp_tiles=self.dp_tiles,
            sk_tiles=self.sk_tiles or 0,
            counter_xcds=counter_xcds,
            counters_per_xcd=counters_per_xcd,
            num_counters=self.num_counters,
        )

    def counter_of(self, pid: int) -> int:
        """The counter hardware program ``pid`` draws from (work stealing), by ``ws_counter_map``.

        ValueError when the map returns anything but a counter ``0 .. num_counters - 1``.
        """
        logical = self.logical_program(pid)
        counter = self._hook("ws_counter_map")(pid, logical, self.schedule_config)
        if not _is_int(counter) or not 0 <= counter < self.num_counters:
            raise ValueError(
                f"ws_counter_map={hook_name(self.ws_counter_map)}: program {pid} (logical "
                f"{logical}) got counter {counter!r}; the counters are 0..{self.num_counters - 1}"
            )
        return int(counter)

    def counter_range(self, counter: int) -> tuple[int, int]:
        """``[begin, end)``: the tiles ``counter`` hands out, by ``ws_counter_ranges``.

        ValueError unless ``0 <= begin <= end <= dp_tiles`` (the counters hand out only the
        tiles before the Stream-K ones).
        """
        span = self._hook("ws_counter_ranges")(counter, self.schedule_config)
        if not (
            isinstance(span, tuple)
            and len(span) == 2
            and all(map(_is_int, span))
            and 0 <= span[0] <= span[1] <= self.dp_tiles
        ):
            raise ValueError(
                f"ws_counter_ranges={hook_name(self.ws_counter_ranges)}: counter {counter} got "
                f"{span!r}; a range is (begin, end) with 0 <= begin <= end <= {self.dp_tiles}"
            )
        return int(span[0]), int(span[1])

    def ticket_tile(self, counter: int, ticket: int) -> int:
        """The tile ticket ``ticket`` of ``counter`` names (work stealing), by ``ws_ticket_tile``.

        A counter with range ``[begin, end)`` (:meth:`counter_range`) hands out tickets ``0 ..
        end - begin - 1``: ``"in-order"`` (the default) gives ticket ``t`` tile ``begin + t``,
        a function ``(counter, ticket, config) -> tile`` any of the tiles the counters hand out.
        ValueError for a ticket the counter does not hand out, or a tile outside ``0 ..
        dp_tiles - 1``. A function that gives two tickets one tile, or a tile outside the
        counter's range, is valid: the run then reports the work lost (``coverage_errors``).
        """
        begin, end = self.counter_range(counter)
        if not _is_int(ticket) or not 0 <= ticket < end - begin:
            raise ValueError(
                f"ticket {ticket!r} of counter {counter}: it hands out tickets 0..{end - begin - 1}"
            )
        if self.ws_ticket_tile == "in-order":
            tile = tiling.ws_ticket_in_order(begin, ticket)
        else:
            tile = self._hook("ws_ticket_tile")(counter, ticket, self.schedule_config)
        if not _is_int(tile) or not 0 <= tile < self.dp_tiles:
            raise ValueError(
                f"ws_ticket_tile={hook_name(self.ws_ticket_tile)}: ticket {ticket} of counter "
                f"{counter} got tile {tile!r}; the counters hand out tiles 0..{self.dp_tiles - 1}"
            )
        return int(tile)

    def tile_of(self, logical_pid: int, step: int) -> int:
        """The tile logical program ``logical_pid`` computes at ``step``, by ``tile_order``.

        A program of data_parallel or persistent has ``tiling.persistent_tile_count`` steps.
        ValueError when the order returns anything but a tile ``0 .. total_tiles - 1``.
        """
        tile = self._hook("tile_order")(logical_pid, step, self.schedule_config)
        if not _is_int(tile) or not 0 <= tile < self.total_tiles:
            raise ValueError(
                f"tile_order={hook_name(self.tile_order)}: program {logical_pid} step {step} got "
                f"tile {tile!r}; the tiles are 0..{self.total_tiles - 1}"
            )
        return int(tile)

    def replace(self, **changes):
        """A copy with some fields changed.

        Fields that were derived (left as None) are derived again for the new values; fields
        that were given keep their value unless changed.
        """
        check_names(changes, FIELD_NAMES)
        fields = {name: getattr(self, name) for name in FIELD_NAMES}
        for name in self._derived:
            fields[name] = None
        fields.update(changes)
        return GemmConfig(**fields)


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(GemmConfig) if f.init)
OPTION_NAMES = FIELD_NAMES[3:]  # all but the sizes M, N, K


FIELDS = {f.name: f for f in dataclasses.fields(GemmConfig)}


def option_strategies(name: str) -> tuple[str, ...]:
    """The registered strategies that take option ``name`` (every one for a general option)."""
    if name not in strategies.strategy_options():
        return strategies.strategy_names()
    return tuple(s.name for s in strategies.STRATEGY_REGISTRY.values() if name in s.options)


def check_names(given: Iterable[str], accepted: Iterable[str]) -> None:
    """TypeError naming the unknown options among ``given`` and listing the ``accepted`` ones."""
    accepted = tuple(accepted)
    unknown = [name for name in given if name not in accepted]
    if unknown:
        raise TypeError(
            f"unknown option {', '.join(map(repr, unknown))}: accepted options are "
            f"{', '.join(accepted)}"
        )
