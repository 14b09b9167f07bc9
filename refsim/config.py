"""GemmConfig: the one description of a GEMM launch, shared by the simulator and the kernels."""

import dataclasses
import functools

from . import tiling
from .hardware import DEFAULT_DEVICE, PROFILES, HardwareProfile, get_profile

STRATEGIES = ("data_parallel", "persistent", "streamk", "work_stealing", "split_k")
FIXUPS = ("owner-waits", "turnstile", "last-arriver", "atomic")
SK_HYBRIDS = ("two-tile", "one-wave")
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
PERSISTENT_STRATEGIES = ("persistent", "streamk", "work_stealing")
DERIVED_FIELDS = ("cus", "xcds", "grid", "sk_tiles", "split_k", "xcd_remap")


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r}: must be a positive integer")


def _choice(name, value, accepted):
    if value not in accepted:
        raise ValueError(f"{name}={value!r}: accepted values are {', '.join(map(repr, accepted))}")


@dataclasses.dataclass(frozen=True)
class GemmConfig:
    """C[M, N] = A[M, K] @ B[K, N] (+ bias[N]) tiled by one strategy on one device.

    Fields left as ``None`` are derived from the hardware profile when the object is built, so
    a constructed config is always complete:

    * ``cus``/``xcds``: the profile's CU and XCD counts.
    * ``grid``: CUs for the persistent strategies (persistent, streamk, work_stealing); the tile
      count for data_parallel; tiles x ``split_k`` for split_k.
    * ``sk_tiles`` (streamk): by ``sk_hybrid`` -- ``"two-tile"`` (default): the partial last
      wave plus one full wave go Stream-K, none when tiles divide into whole waves;
      ``"one-wave"``: every tile goes Stream-K.
    * ``split_k`` (split_k): the smallest split that gives every CU a program, at most the
      number of K-iterations of a tile.
    * ``xcd_remap``: true on multi-XCD devices; logical program ids are made contiguous per XCD
      (``xcd_chunk`` consecutive ids at a time when set, else one block per XCD).
    """

    m: int
    n: int
    k: int
    strategy: str = "streamk"
    block_m: int = 256
    block_n: int = 256
    block_k: int = 64
    group_m: int = 8
    cus: int | None = None
    xcds: int | None = None
    grid: int | None = None
    sk_tiles: int | None = None
    sk_hybrid: str = "two-tile"
    fixup: str = "owner-waits"
    counters_per_xcd: int = 1
    global_counter: bool = False
    split_k: int | None = None
    dtype: str = "bf16"
    device: str | HardwareProfile = DEFAULT_DEVICE
    xcd_remap: bool | None = None
    xcd_chunk: int | None = None

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)
        # Which derivable fields were left to the defaults, so replace() can derive them again.
        set_("_derived", frozenset(name for name in DERIVED_FIELDS if getattr(self, name) is None))
        for name in ("global_counter",) + (("xcd_remap",) if self.xcd_remap is not None else ()):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r}: must be True or False")
        for name in ("m", "n", "k", "block_m", "block_n", "block_k", "group_m", "counters_per_xcd"):
            _positive_int(name, getattr(self, name))
        for name in ("block_m", "block_n", "block_k"):
            value = getattr(self, name)
            if value < 16 or value & (value - 1):
                raise ValueError(
                    f"{name}={value}: accepted values are powers of two >= 16 "
                    "(the smallest tl.dot shape)"
                )
        _choice("strategy", self.strategy, STRATEGIES)
        _choice("fixup", self.fixup, FIXUPS)
        _choice("sk_hybrid", self.sk_hybrid, SK_HYBRIDS)
        if self.dtype not in DTYPE_ALIASES:
            _choice("dtype", self.dtype, tuple(DTYPE_ALIASES))
        set_("dtype", DTYPE_ALIASES[self.dtype])
        profile = get_profile(self.device)
        preset = isinstance(self.device, str) or PROFILES.get(profile.name) == profile
        set_("device", profile.name if preset else profile)
        self._fill_machine(profile)
        self._fill_grid()
        self._check_work_stealing()

    def _fill_machine(self, profile):
        cus = profile.cus if self.cus is None else self.cus
        xcds = profile.xcds if self.xcds is None else self.xcds
        _positive_int("cus", cus)
        _positive_int("xcds", xcds)
        if cus > profile.cus:
            raise ValueError(
                f"cus={cus}: {profile.name} has {profile.cus}; for a bigger device "
                "build a HardwareProfile (dataclasses.replace on a preset)"
            )
        if xcds > cus:
            raise ValueError(f"xcds={xcds}: more XCDs than cus={cus}")
        if cus % xcds:
            raise ValueError(
                f"cus={cus} does not divide over xcds={xcds}: pass a CU count that "
                f"is a multiple of {xcds}, or xcds= to match"
            )
        object.__setattr__(self, "cus", cus)
        object.__setattr__(self, "xcds", xcds)
        remap = xcds > 1 if self.xcd_remap is None else self.xcd_remap
        object.__setattr__(self, "xcd_remap", remap)
        if self.xcd_chunk is not None:
            _positive_int("xcd_chunk", self.xcd_chunk)

    def _fill_grid(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)
        tiles = self.total_tiles
        if self.strategy == "split_k":
            split = self.split_k
            if split is None:
                split = max(1, min(self.iters_per_tile, tiling.cdiv(self.cus, tiles)))
            _positive_int("split_k", split)
            if split > self.iters_per_tile:
                raise ValueError(
                    f"split_k={split}: at most {self.iters_per_tile}, the K-iterations "
                    f"of a tile (K={self.k}, block_k={self.block_k})"
                )
            set_("split_k", split)
        elif self.split_k is not None:
            raise ValueError(f"split_k={self.split_k!r}: only strategy='split_k' takes it")
        fixed_grid = {"data_parallel": tiles, "split_k": tiles * (self.split_k or 1)}
        if self.strategy in fixed_grid:
            if self.grid is not None and self.grid != fixed_grid[self.strategy]:
                raise ValueError(
                    f"grid={self.grid}: strategy={self.strategy!r} launches one program "
                    f"per work unit, {fixed_grid[self.strategy]} here"
                )
            set_("grid", fixed_grid[self.strategy])
        else:
            set_("grid", self.cus if self.grid is None else self.grid)
            _positive_int("grid", self.grid)
        if self.strategy == "streamk":
            sk = self.sk_tiles
            if sk is None:
                sk = tiling.streamk_sk_tiles(tiles, self.grid, self.sk_hybrid == "two-tile")
            if isinstance(sk, bool) or not isinstance(sk, int) or not 0 <= sk <= tiles:
                raise ValueError(
                    f"sk_tiles={sk!r}: must be an integer in 0..{tiles} (the tile count)"
                )
            set_("sk_tiles", sk)
        elif self.sk_tiles is not None:
            raise ValueError(f"sk_tiles={self.sk_tiles!r}: only strategy='streamk' takes it")

    def _check_work_stealing(self):
        if self.strategy != "work_stealing" or self.global_counter:
            return
        if self.grid // self.xcds < self.counters_per_xcd:
            raise ValueError(
                f"counters_per_xcd={self.counters_per_xcd}: the grid of {self.grid} puts only "
                f"{self.grid // self.xcds} programs on some XCD, so some counter's tiles would never "
                "be taken; lower counters_per_xcd or raise grid"
            )

    # Derived quantities -------------------------------------------------------------------
    @functools.cached_property
    def profile(self) -> HardwareProfile:
        return get_profile(self.device)

    @functools.cached_property
    def num_pid_m(self):
        return tiling.cdiv(self.m, self.block_m)

    @functools.cached_property
    def num_pid_n(self):
        return tiling.cdiv(self.n, self.block_n)

    @functools.cached_property
    def total_tiles(self):
        return self.num_pid_m * self.num_pid_n

    @functools.cached_property
    def iters_per_tile(self):
        return tiling.cdiv(self.k, self.block_k)

    @property
    def dp_tiles(self):
        """Tiles computed whole by one program (all but Stream-K's SK tiles and split-K's splits)."""
        if self.strategy == "split_k" and self.split_k > 1:
            return 0
        return self.total_tiles - (self.sk_tiles if self.strategy == "streamk" else 0)

    @property
    def sk_iters(self):
        return (self.sk_tiles or 0) * self.iters_per_tile if self.strategy == "streamk" else 0

    @property
    def num_counters(self):
        """Work-stealing tile counters (0 for other strategies)."""
        if self.strategy != "work_stealing":
            return 0
        return 1 if self.global_counter else self.xcds * self.counters_per_xcd

    @property
    def counter_layout(self):
        """``(NUM_XCDS, COUNTERS_PER_XCD)`` as :func:`refsim.tiling.ws_counter` takes them."""
        return (1, 1) if self.global_counter else (self.xcds, self.counters_per_xcd)

    @property
    def elem_bytes(self):
        return DTYPE_BYTES[self.dtype]

    @property
    def flops(self):
        return 2 * self.m * self.n * self.k

    def logical_program(self, pid):
        """The program id the tiling functions see for hardware program ``pid``."""
        if not self.xcd_remap or self.xcds == 1:
            return pid
        if self.xcd_chunk is None:
            return tiling.xcd_remap(pid, self.grid, self.xcds)
        return tiling.xcd_remap_chunked(pid, self.grid, self.xcds, self.xcd_chunk)

    def replace(self, **changes):
        """A copy with some fields changed.

        Fields that were derived (left as None) are derived again for the new values; fields
        that were given keep their value unless changed.
        """
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in self._derived:
            fields[name] = None
        fields.update(changes)
        return GemmConfig(**fields)
