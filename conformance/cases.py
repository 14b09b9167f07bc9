"""Conformance cases as data: every case is a seeded GEMM configuration plus how to feed it.

Two named sets run every strategy run (a strategy, or Stream-K with one fixup) in every role
(:data:`ROLES`: a dtype, a bias and a layout, and per set a shape and a machine): ``quick``
(Triton's interpreter on the CPU, small shapes and blocks) and ``full`` (a GPU with
``sm_count`` SMs: large shapes, wave edges, 304 CUs in 8 XCDs emulated by the grid).
:func:`coverage` names the features cases reach, read off their configs and refsim's plans;
each set reaches all of :data:`REQUIRED_FEATURES`. ``load_cases`` reads a JSON list of cases.
"""

import collections
import dataclasses
import json

from refsim import PROFILES, STRATEGIES, GemmConfig, build_plan, strategies, tiling
from refsim.config import OPTION_NAMES, check_names, hook_name, option_strategies

# The GemmConfig options a Case keeps as fields of its own; any other goes to Case.options.
CASE_FIELDS = (
    "strategy",
    "fixup",
    "block_m",
    "block_n",
    "block_k",
    "group_m",
    "cus",
    "xcds",
    "device",
    "dtype",
)


@dataclasses.dataclass(frozen=True)
class Case:
    """One conformance case; ``options`` are extra GemmConfig fields (grid, split_k, ...)."""

    name: str
    m: int
    n: int
    k: int
    strategy: str = "streamk"
    fixup: str | None = None  # Stream-K only; None: GemmConfig's default
    block_m: int = 16
    block_n: int = 32
    block_k: int = 16
    group_m: int = 4
    cus: int = 4
    xcds: int = 1
    device: str = "h100"
    dtype: str = "fp32"
    bias: bool = True
    transpose_a: bool = False
    transpose_b: bool = False
    transpose_c: bool = False  # the output a transposed view (column-major)
    strided: bool = False  # A, B and C with padded leading dimensions, the bias with stride 2
    seed: int = 0
    options: tuple = ()
    # The batched path (conformance.batched): ``batch`` products in one call (0: one product,
    # the other paths), ``broadcast`` "a" or "b" for an operand every product shares (batch
    # stride 0). A batched case takes no bias: the batched path has none.
    batch: int = 0
    broadcast: str = ""

    def __post_init__(self):
        if not isinstance(self.batch, int) or self.batch < 0:
            raise ValueError(f"case {self.name}: batch must be an int >= 0, got {self.batch!r}")
        if self.broadcast not in ("", "a", "b"):
            raise ValueError(
                f"case {self.name}: broadcast must be 'a', 'b' or '', got {self.broadcast!r}"
            )
        if self.batch == 0 and self.broadcast:
            raise ValueError(f"case {self.name}: broadcast needs a batch")
        if self.batch and self.bias:
            raise ValueError(f"case {self.name}: a batched case takes no bias (bias=False)")

    def config(self):
        """The case's GemmConfig (which refuses a fixup for any strategy but streamk)."""
        return GemmConfig(
            self.m,
            self.n,
            self.k,
            strategy=self.strategy,
            **({"fixup": self.fixup} if self.fixup is not None else {}),
            block_m=self.block_m,
            block_n=self.block_n,
            block_k=self.block_k,
            group_m=self.group_m,
            cus=self.cus,
            xcds=self.xcds,
            device=self.device,
            dtype=self.dtype,
            **dict(self.options),
        )

    def to_dict(self):
        """The case as JSON-ready data; a schedule hook given as a function shows its name."""
        data = dataclasses.asdict(self)
        data["options"] = {name: hook_name(v) if callable(v) else v for name, v in self.options}
        return data

    @property
    def label(self):
        """The strategy run the case names first: the fixup for Stream-K, else the strategy."""
        return strategies.run_label(self.strategy, self.fixup).rpartition("/")[2]

    def following(self, options):
        """This case as a kernel whose schedule fixes the GemmConfig ``options`` runs it.

        The shape, dtype, bias, layouts and seed stay the case's; ``options`` replace the case's
        own. Where they change the strategy, the options only the case's strategy takes (its
        fixup, split, counters, hooks) are dropped, since they were chosen for it; the general
        ones (grid, XCD remap) stay. Where the strategy run (:attr:`label`) changes, the name is
        the new run's label, then the case's name without the run label it starts with (its
        own, or any other run's): ``owner-waits-waves-100x20x64`` followed by a persistent
        kernel is ``persistent-waves-100x20x64``, and following again keeps that name. The
        result may be an invalid config (``config()`` raises); see :func:`follow`. TypeError
        for an option GemmConfig does not have.
        """
        check_names(options, [name for name in OPTION_NAMES if name not in ("m", "n", "k")])
        fields = {name: options[name] for name in CASE_FIELDS if name in options}
        kept = dict(self.options)
        if fields.get("strategy", self.strategy) != self.strategy:
            kept = {name: v for name, v in kept.items() if option_strategies(name) == STRATEGIES}
            fields.setdefault("fixup", None)
        kept.update((name, v) for name, v in options.items() if name not in CASE_FIELDS)
        followed = dataclasses.replace(self, **fields, options=_options(**kept))
        if followed.label == self.label:
            return followed
        runs = {label.rpartition("/")[2] for label in LABELS} | set(STRATEGIES)
        prefix = max((run for run in runs if self.name.startswith(f"{run}-")), key=len, default="")
        rest = self.name.removeprefix(f"{prefix}-") if prefix else self.name
        return dataclasses.replace(followed, name=f"{followed.label}-{rest}")

    @classmethod
    def from_dict(cls, data):
        data = dict(data)
        data["options"] = tuple(sorted(dict(data.get("options", {})).items()))
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown case fields {sorted(unknown)}")
        return cls(**data)


# Every strategy run: a strategy, or Stream-K with one fixup protocol.
LABELS = (
    "data_parallel",
    "persistent",
    "streamk/owner-waits",
    "streamk/turnstile",
    "streamk/last-arriver",
    "streamk/atomic",
    "work_stealing",
    "split_k",
)
LAYOUTS = ("transpose_a", "transpose_b", "transpose_c", "strided")
# Each run gets one case per role. A role fixes the dtype, the bias and a layout, so that every
# run sees fp16 and bf16 each with and without a bias (the atomic fixup adds with fp32 atomics:
# fp32 only) and every strategy each layout; the sets give each role a shape and a machine:
# * waves: several waves of tiles, K a multiple of BLOCK_K, tiles not divisible by the grid:
#   Stream-K's two-tile rule gives data-parallel tiles plus SK tiles that programs straddle;
# * k-small: K < BLOCK_K, one K-iteration: every Stream-K tile lies whole in one program
#   (one-wave), split-K cannot split;
# * row: M = 1, more programs than tiles, K not a multiple of BLOCK_K: each Stream-K tile
#   split over three or more programs, split-K in three, with an fp32 output;
# * col: N = 1; work stealing with one global counter;
# * xcd2, xcd8: 2 and 8 XCDs with a grid that they do not divide (one program fewer than CUs,
#   so that the waiting fixups' programs stay resident); work stealing with per-XCD counters,
#   two per XCD on 2.
ROLES = {
    "waves": ("bf16", True, "strided"),
    "k-small": ("fp16", False, "transpose_a"),
    "row": ("fp32", True, "transpose_c"),
    "col": ("bf16", False, "transpose_b"),
    "xcd2": ("fp16", True, "transpose_b"),
    "xcd8": ("fp32", False, "transpose_a"),
}
SPLIT_K = 3  # split-K's split (capped at a tile's K-iterations)
GPU_BLOCKS = {"block_m": 128, "block_n": 128, "block_k": 64, "group_m": 8}


def _options(**options):
    """Case options as Case keeps them: sorted (name, value) pairs, so that JSON round-trips."""
    return tuple(sorted(options.items()))


def _run_options(label, role, k, block_k):
    """The GemmConfig options a strategy run takes in a role (beyond the machine's grid)."""
    strategy = label.partition("/")[0]
    options = {}
    if strategy == "split_k":
        options["split_k"] = min(SPLIT_K, tiling.cdiv(k, block_k))
    elif strategy == "streamk" and role == "k-small":
        options["sk_hybrid"] = "one-wave"
    elif strategy == "work_stealing" and role == "col":
        options["global_counter"] = True
    elif strategy == "work_stealing" and role == "xcd2":
        options["counters_per_xcd"] = 2
    return options


def _role_cases(roles, blocks):
    """One case per strategy run and role; ``roles``: role -> ``((m, n, k), machine)``, the
    machine giving ``cus``, ``xcds`` and a ``grid`` that only persistent and Stream-K take."""
    cases = []
    for label in LABELS:
        strategy, _, fixup = label.partition("/")
        for role, ((m, n, k), machine) in roles.items():
            dtype, bias, layout = ROLES[role]
            options = _run_options(label, role, k, blocks["block_k"])
            scheme = strategies.strategy(strategy)
            if "grid" in machine and scheme.persistent and not scheme.dynamic:
                options["grid"] = machine["grid"]
            cases.append(
                Case(
                    f"{fixup or strategy}-{role}-{m}x{n}x{k}",
                    m,
                    n,
                    k,
                    strategy,
                    fixup or None,
                    cus=machine["cus"],
                    xcds=machine.get("xcds", 1),
                    dtype="fp32" if fixup and strategies.fixup(fixup).atomic else dtype,
                    bias=bias,
                    options=_options(**options),
                    **{layout: True},
                    **blocks,
                )
            )
    return cases


def quick_set():
    """Small shapes and 16x32x16 blocks for the interpreter: every strategy run in every role,
    plus the chunked XCD remap and Stream-K with no SK tile."""
    roles = {
        "waves": ((100, 20, 64), {"cus": 3}),  # 7 tiles on 3 programs: 4 SK, 3 DP
        "k-small": ((48, 64, 8), {"cus": 4}),
        "row": ((1, 32, 88), {"cus": 4}),  # 1 tile of 6 K-iterations on 4 programs
        "col": ((40, 1, 40), {"cus": 4}),
        "xcd2": ((80, 32, 40), {"cus": 4, "xcds": 2, "grid": 3}),
        "xcd8": ((80, 32, 40), {"cus": 8, "xcds": 8, "grid": 7}),
    }
    cases = _role_cases(roles, {"block_m": 16, "block_n": 32, "block_k": 16, "group_m": 4})
    chunked = {"cus": 6, "xcds": 2, "options": _options(xcd_chunk=2)}  # 6 ids: 1.5 rounds of 4
    cases += [
        Case("persistent-xcd-chunk-80x32x32", 80, 32, 32, "persistent", dtype="bf16", **chunked),
        Case("turnstile-xcd-chunk-80x32x32", 80, 32, 32, fixup="turnstile", bias=False, **chunked),
        # 2 tiles on 2 programs: one whole wave, so the two-tile rule leaves no SK tile
        Case("owner-waits-no-sk-32x32x16", 32, 32, 16, fixup="owner-waits", cus=2, dtype="fp16"),
        # split-K with a bias where the roles have none: one slice, and 4 bands of 4 rows each
        Case("split_k-x1-bias-48x32x40", 48, 32, 40, "split_k", dtype="bf16",
             options=_options(split_k=1)),
        Case("split_k-bands-bias-64x32x64", 64, 32, 64, "split_k", cus=8, dtype="fp16",
             options=_options(split_k=2, reduce_bands=4)),
    ]  # fmt: skip
    cases += _batched_cases(
        (40, 32, 40),
        (32, 64, 32),
        {"block_m": 16, "block_n": 32, "block_k": 16, "group_m": 4, "cus": 4},
    )
    return _seeded(cases)


def _batched_cases(shape, even_shape, machine):
    """The batched path's cases: each dtype, each operand broadcast, every layout, a padded
    batch stride, edge tiles and K not a multiple of BLOCK_K (``shape``), and every tile whole
    (``even_shape``)."""
    batched = dict(machine, strategy="data_parallel", bias=False)
    return [
        Case("batched-broadcast-b", *shape, dtype="fp16", batch=3, broadcast="b",
             transpose_a=True, strided=True, **batched),
        Case("batched-broadcast-a", *shape, dtype="bf16", batch=2, broadcast="a",
             transpose_b=True, transpose_c=True, **batched),
        Case("batched-even", *even_shape, dtype="fp32", batch=3, strided=True, **batched),
    ]  # fmt: skip


def gpu_device(sm_count):
    """The smallest hardware profile with at least ``sm_count`` CUs: the device the full set
    describes a GPU with ``sm_count`` SMs as (h100 for an H100 or H200, mi300x for 304 CUs)."""
    fitting = [p for p in PROFILES.values() if p.cus >= sm_count]
    if not fitting:
        largest = max(p.cus for p in PROFILES.values())
        raise ValueError(
            f"sm_count={sm_count}: no hardware profile has that many (at most {largest})"
        )
    return min(fitting, key=lambda p: p.cus).name


def full_set(sm_count):
    """GPU cases for ``sm_count`` SMs, 128x128x64 blocks: every strategy run in every role, wave
    edges, 8192x8192x4096, the chunked XCD remap, and 304 CUs in 8 XCDs emulated by the grid.

    The waiting fixups (owner-waits, turnstile) never launch more programs than ``sm_count``:
    they need every program resident at once.
    """
    blocks = dict(GPU_BLOCKS, device=gpu_device(sm_count))
    two, eight = 2 * (sm_count // 2), 8 * (sm_count // 8)
    xcd_shape = (1152, 1408, 1000)  # 99 tiles: not divisible by 2 or 8
    roles = {
        "waves": ((4096, 3968, 4096), {"cus": sm_count}),  # 992 tiles: few SM counts divide it
        "k-small": ((3072, 4224, 32), {"cus": sm_count}),
        "row": ((1, 4096, 4000), {"cus": sm_count}),
        "col": ((4096, 1, 4000), {"cus": sm_count}),
        "xcd2": (xcd_shape, {"cus": two, "xcds": 2, "grid": two - 1}),
        "xcd8": (xcd_shape, {"cus": eight, "xcds": 8, "grid": eight - 1}),
    }
    cases = _role_cases(roles, blocks)
    machine = dict(blocks, cus=sm_count)
    # One wave + 1 and two waves - 1 of tiles.
    for label, strategy, fixup in (
        ("persistent", "persistent", None),
        ("owner-waits", "streamk", "owner-waits"),
    ):
        for tiles, dtype in ((sm_count + 1, "bf16"), (2 * sm_count - 1, "fp16")):
            cases.append(
                Case(
                    f"{label}-{tiles}tiles",
                    128,
                    128 * tiles,
                    2048,
                    strategy,
                    fixup,
                    dtype=dtype,
                    **machine,
                )
            )
    cases += [
        Case(
            "work_stealing-8192x8192x4096",
            8192,
            8192,
            4096,
            "work_stealing",
            dtype="bf16",
            **machine,
        ),
        Case(
            "owner-waits-8192x8192x4096",
            8192,
            8192,
            4096,
            fixup="owner-waits",
            dtype="fp16",
            bias=False,
            **machine,
        ),
        # two whole waves of tiles: the two-tile rule leaves no SK tile
        Case(
            "turnstile-no-sk", 256, 128 * sm_count, 256, fixup="turnstile", dtype="bf16", **machine
        ),
    ]
    chunked = dict(blocks, cus=eight, xcds=8, options=_options(grid=eight - 1, xcd_chunk=4))
    cases += [
        Case("persistent-xcd-chunk", *xcd_shape, "persistent", dtype="fp16", **chunked),
        Case(
            "turnstile-xcd-chunk",
            *xcd_shape,
            fixup="turnstile",
            dtype="bf16",
            bias=False,
            **chunked,
        ),
    ]
    # split-K with a bias where the roles have none: one slice, and 8 bands of 16 rows each
    cases += [
        Case("split_k-x1-bias", 1024, 1024, 1000, "split_k", dtype="bf16",
             options=_options(split_k=1), **machine),
        Case("split_k-bands-bias", 1024, 768, 4096, "split_k", dtype="fp16",
             options=_options(split_k=4, reduce_bands=8), **machine),
    ]  # fmt: skip
    cases += _batched_cases((1000, 768, 1000), (1024, 1024, 512), dict(machine))
    # 304 CUs in 8 XCDs, emulated by the grid: the XCD remap and per-XCD counters as on MI300X.
    mi300x = dict(GPU_BLOCKS, cus=304, xcds=8, device="mi300x")
    for strategy, fixup, options in (
        ("persistent", None, ()),
        ("work_stealing", None, _options(counters_per_xcd=2)),
        ("streamk", "last-arriver", ()),
    ):
        for tiles in (303, 305):
            cases.append(
                Case(
                    f"{fixup or strategy}-xcd8-{tiles}tiles",
                    128,
                    128 * tiles,
                    1024,
                    strategy,
                    fixup,
                    dtype="bf16",
                    options=options,
                    **mi300x,
                )
            )
    return _seeded(cases)


def _label(config):
    """A config's strategy run, as in LABELS."""
    return strategies.run_label(config.strategy, config.fixup)


# The checks that take each of the kernels' call paths (kernels.CALL_PATHS): the repeated-call
# check's calls of new keys and of the key it prepared, the exact check's traced call, the
# batched check's first and repeated calls, and the graph-replay check (CUDA only).
PATH_CHECKS = {
    "first": "repeated calls",
    "traced": "exact output",
    "prepared": "repeated calls",
    "batched": "batched calls",
    "batched-prepared": "batched calls",
    "graph": "graph replay",
}
# Paths only a GPU runs.
GPU_PATHS = ("graph",)


def case_paths(case, gpu=False):
    """The call paths (:data:`PATH_CHECKS`) the checks of ``case`` take, on a GPU if ``gpu``."""
    if case.batch:
        return ("batched", "batched-prepared")
    paths = ("first", "traced", "prepared")
    config = case.config()
    waits = config.protocol is not None and config.protocol.waits and config.sk_tiles
    if gpu and not waits:
        paths += ("graph",)
    return paths


def _path_features(case, config, label, bias):
    """One feature per call path the case takes x its strategy run x bias x band layout."""
    bands = "bands>1" if (config.reduce_bands or 1) > 1 else "bands=1"
    return {f"path:{path}/{label}/{bias}/{bands}" for path in case_paths(case, gpu=True)}


def _batched_features(case, config):
    """The batched path's own features: dtype, broadcast operand, layouts, K and edge tiles."""
    features = {f"batched/{config.dtype}"}
    if case.broadcast:
        features.add(f"batched/broadcast-{case.broadcast}")
    features |= {f"batched/{layout}" for layout in LAYOUTS if getattr(case, layout)}
    features.add("batched/K%BLOCK_K!=0" if config.k % config.block_k else "batched/EVEN_K")
    edges = config.m % config.block_m or config.n % config.block_n
    features.add("batched/edge-tiles" if edges else "batched/whole-tiles")
    return features


def case_features(case, gpu=False):
    """The named features one case reaches (see REQUIRED_FEATURES and GPU_REQUIRED_FEATURES;
    the paths only a GPU runs when ``gpu``), read off its GemmConfig and refsim's plan of it:
    never off its name."""
    config = case.config()
    label, strategy = _label(config), config.strategy
    bias = "bias" if case.bias else "no-bias"
    paths = _path_features(case, config, label, bias)
    if not gpu:
        paths = {f for f in paths if f.partition("/")[0][len("path:") :] not in GPU_PATHS}
    if case.batch:
        return paths | _batched_features(case, config)
    plan = build_plan(config)
    features = paths | {f"{config.dtype}/{bias}", f"{config.dtype}/{label}", f"{bias}/{label}"}
    if config.k < config.block_k:
        features.add(f"K<BLOCK_K/{label}")
    elif config.k % config.block_k:
        features.add(f"K%BLOCK_K!=0/{label}")
    else:
        features.add(f"EVEN_K/{label}")
    features |= {f"{side}=1" for side, size in (("M", config.m), ("N", config.n)) if size == 1}
    if config.xcds > 1 and config.grid % config.xcds:
        features.add(f"xcds={config.xcds}/grid%xcds!=0/{label}")
    if config.remap_mode == tiling.REMAP_CHUNKED and config.grid % (config.xcds * config.xcd_chunk):
        features.add(f"xcd_chunk/grid%(xcds*chunk)!=0/{label}")
    for layout in LAYOUTS:
        if getattr(case, layout) and (layout != "strided" or case.bias):
            features.add(f"{'strided+bias' if layout == 'strided' else layout}/{strategy}")
    if config.scheme.persistent and config.grid > config.total_tiles:
        features.add(f"grid>tiles/{label}")
    waves, last_wave = divmod(config.total_tiles, config.grid)
    static_persistent = config.scheme.persistent and not config.scheme.dynamic
    if static_persistent and waves and last_wave:  # a partial last wave
        features.add(f"tiles%grid!=0/{label}")
    split_programs = [tile.programs for tile in plan.split_tiles.values()]
    if config.dtype == "fp32" and any(len(programs) >= 3 for programs in split_programs):
        features.add(f"3+programs/{label.rpartition('/')[2]}/fp32")
    if strategy == "streamk":
        features |= _streamk_features(config, label, split_programs)
    elif strategy == "work_stealing":
        xcds, per_xcd = config.counter_layout
        if config.global_counter:
            features.add("work_stealing/global-counter")
        if per_xcd > 1:
            features.add("work_stealing/counters_per_xcd>1")
        if xcds > 1:
            features.add("work_stealing/xcds>1")
        if config.total_tiles % config.num_counters:
            features.add("work_stealing/tiles%counters!=0")
    elif strategy == "split_k" and config.split_k == 1:
        features |= {"split_k/split_k=1", f"split_k/split_k=1/{bias}"}
    elif strategy == "split_k":
        features.add(f"split_k/reduce_bands{'>1' if config.reduce_bands > 1 else '=1'}")
        if config.reduce_bands > 1 and case.bias and config.m >= config.block_m:
            features.add("split_k/reduce_bands>1/bias/rows-in-every-band")
        last_rows = config.m % config.block_m  # rows of the last tile row, when it is partial
        if last_rows and last_rows <= config.block_m - config.block_m // config.reduce_bands:
            features.add("split_k/band-past-M")  # a reduction band with every row masked
    return features


def _streamk_features(config, label, split_programs):
    """Stream-K's paths: no SK tile, SK tiles with or without data-parallel ones, an SK tile
    whole in one program, a program in two split tiles (both its partial slots)."""
    features = set()
    if config.sk_tiles == 0:
        features.add("streamk/sk_tiles=0")
    if split_programs:
        features.add(f"{label}/{'hybrid' if config.dp_tiles else 'sk-only'}")
    if config.sk_tiles > len(split_programs):
        features.add(f"{label}/whole-sk-tile")
    tiles_per_program = collections.Counter(p for programs in split_programs for p in programs)
    if any(count >= 2 for count in tiles_per_program.values()):
        features.add(f"{label}/program-in-2-split-tiles")
    return features


def coverage(cases, gpu=False):
    """The named features the cases reach together (see case_features), on a GPU if ``gpu``."""
    return set().union(*(case_features(case, gpu) for case in cases))


def _required_features():
    """REQUIRED_FEATURES, run by run, then the layouts and the work-stealing counters."""
    features = [f"{d}/{b}" for d in ("fp16", "bf16", "fp32") for b in ("bias", "no-bias")]
    features += ["M=1", "N=1", "streamk/sk_tiles=0"]
    for label in LABELS:
        strategy, _, fixup = label.partition("/")
        features += [f"bias/{label}", f"no-bias/{label}"]
        features += [f"K<BLOCK_K/{label}", f"K%BLOCK_K!=0/{label}", f"EVEN_K/{label}"]
        scheme, protocol = strategies.strategy(strategy), strategies.fixup(fixup or None)
        if not (protocol and protocol.atomic):
            features += [f"fp16/{label}", f"bf16/{label}"]
        if not scheme.dynamic:
            features += [f"xcds={x}/grid%xcds!=0/{label}" for x in (2, 8)]
        if scheme.persistent and not scheme.dynamic:
            features += [f"grid>tiles/{label}", f"tiles%grid!=0/{label}"]
        if scheme.splits_tiles and not scheme.dynamic:
            features.append(f"3+programs/{fixup or strategy}/fp32")
        if strategy == "streamk":
            features += [
                f"{label}/{path}"
                for path in ("hybrid", "sk-only", "whole-sk-tile", "program-in-2-split-tiles")
            ]
    features += [
        f"{'strided+bias' if layout == 'strided' else layout}/{strategy}"
        for strategy in STRATEGIES
        for layout in LAYOUTS
    ]
    features += [
        f"xcd_chunk/grid%(xcds*chunk)!=0/{label}" for label in ("persistent", "streamk/turnstile")
    ]
    features += ["split_k/split_k=1", "split_k/reduce_bands=1", "split_k/reduce_bands>1"]
    # a bias on the paths that add it elsewhere: split-K x1 (the slice stores the tile) and a
    # banded reduction whose every band holds rows (each band adds its rows' bias)
    features += ["split_k/split_k=1/bias", "split_k/reduce_bands>1/bias/rows-in-every-band"]
    features.append("split_k/band-past-M")
    features += ["grid>tiles/work_stealing"]
    features += [
        f"work_stealing/{path}"
        for path in ("global-counter", "counters_per_xcd>1", "xcds>1", "tiles%counters!=0")
    ]
    features += _required_path_features([p for p in PATH_CHECKS if p not in GPU_PATHS])
    features += [f"batched/{dtype}" for dtype in ("fp16", "bf16", "fp32")]
    features += [f"batched/broadcast-{operand}" for operand in ("a", "b")]
    features += [f"batched/{layout}" for layout in LAYOUTS]
    features += ["batched/K%BLOCK_K!=0", "batched/EVEN_K", "batched/edge-tiles"]
    features += ["batched/whole-tiles"]
    return features


def _required_path_features(paths):
    """Each path's features: every strategy run with and without a bias, split-K's banded
    reduction too, on the one-product paths; data-parallel without a bias on the batched ones.
    A graph replays no waiting fixup (see :func:`case_paths`)."""
    features = []
    for path in paths:
        if path.startswith("batched"):
            features.append(f"path:{path}/data_parallel/no-bias/bands=1")
            continue
        for label in LABELS:
            fixup = label.partition("/")[2]
            if path in GPU_PATHS and fixup and strategies.fixup(fixup).waits:
                continue
            features += [f"path:{path}/{label}/{bias}/bands=1" for bias in ("bias", "no-bias")]
        features.append(f"path:{path}/split_k/bias/bands>1")
    return features


# Every feature both named sets must reach: each strategy run's dtypes, bias, K shapes and XCD
# remaps (2 and 8 XCDs, a grid they do not divide), Stream-K's hybrid, split and whole tiles,
# tiles over three or more programs in fp32, every layout per strategy, the work-stealing
# counter layouts, grids above and not dividing the tile count, split-K's reduction whole and
# in row bands (one of them wholly past M), M = 1 and N = 1.
REQUIRED_FEATURES = _required_features()
# What the full set must reach on a GPU besides: the paths only a GPU runs.
GPU_REQUIRED_FEATURES = _required_path_features(GPU_PATHS)


def _seeded(cases):
    """The cases with seeds 0, 1, 2, ... in order: each case its own inputs."""
    return [dataclasses.replace(case, seed=seed) for seed, case in enumerate(cases)]


def follow(cases, options):
    """``(followed, skipped)``: the ``cases`` as a kernel that fixes the GemmConfig ``options``
    runs them (:meth:`Case.following`), each distinct case once, and ``(name, reason)`` for each
    case those options make an invalid config (skipped, not failed).

    Cases alike but for their name and seed are one case: the one whose strategy run the options
    keep (its name and seed unchanged), else the first. Where distinct cases would share a
    name, the one whose strategy run the options keep keeps it, and each other one gets
    ``-from-<its source's strategy run>``, e.g. ``work_stealing-col-40x1x40`` and
    ``work_stealing-col-40x1x40-from-data_parallel``. A name still taken gets ``-2``, ``-3``,
    ... in order.
    """
    kept, skipped = {}, []  # a case alike but for its name and seed -> (source run, case)
    from .adapter import options_for  # options may be a function of the case (adapt's follows)

    for case in cases:
        candidate = case.following(options_for(options, case))
        try:
            candidate.config()
        except (ValueError, TypeError) as exc:
            skipped.append((case.name, str(exc)))
            continue
        alike = dataclasses.replace(candidate, name="", seed=0)
        if alike not in kept or case.label == candidate.label != kept[alike][0]:
            kept[alike] = (case.label, candidate)
    sharing = collections.Counter(candidate.name for _, candidate in kept.values())
    followed, names = [], set()
    for source, candidate in kept.values():
        name = candidate.name
        if sharing[name] > 1 and source != candidate.label:
            name = f"{name}-from-{source}"
        unique, count = name, 1
        while unique in names:
            count += 1
            unique = f"{name}-{count}"
        names.add(unique)
        followed.append(dataclasses.replace(candidate, name=unique))
    return followed, skipped


def load_cases(path):
    """Cases from a JSON file: a list of objects with Case's fields.

    OSError when the file cannot be read; ValueError, naming the file, when its content is not
    such a list.
    """
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of cases")
    cases = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise ValueError(f"{path}: case {i} is not a JSON object")
        try:
            cases.append(Case.from_dict(item))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: case {i}: {exc}") from None
    return cases
