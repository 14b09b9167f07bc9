"""The strategy and fixup-protocol registry: each one's facts in one object.

A :class:`Strategy` says how tiles are shared out -- how many programs it launches, which
options it takes, whether a tile's K-range is split over programs, whether it runs a batch in
one launch -- and names its plan builder (:mod:`refsim.plan` registers those); a
:class:`FixupProtocol` says how Stream-K's split tiles are reduced -- whether programs wait on
one another's flags, whether the order of additions is fixed, whether it accumulates into a
zeroed output with fp32 atomics. Code reads these traits instead of comparing names: adding a
strategy is one :func:`register_strategy` call, its plan builder and (for the kernels) its
launches (``kernels.launch.register_launches``). Pure Python: no torch, no Triton.
"""

import dataclasses
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class FixupProtocol:
    """How the programs sharing a Stream-K tile combine their partials.

    * ``waits``: programs wait on flags other programs publish (the launch needs every program
      resident at once, and a CUDA graph, which replays one flag epoch, cannot hold it);
    * ``deterministic``: the partials are added in a fixed order, so the output's bits do not
      depend on the order programs run in;
    * ``atomic``: split tiles are accumulated into C with fp32 atomics, so C is zeroed before
      the launch and must be fp32;
    * ``wait_order``: in a sequential interpreter, the logical program order that lets every
      wait end (``"higher-first"``: a program waits on higher logical ids; None: no waits);
    * ``backward``: each program walks its Stream-K range last K-iteration first, so that the
      partial holding k = 0 comes first (turnstile: a contributor waits for the one before it).
    """

    name: str
    description: str
    waits: bool = False
    deterministic: bool = True
    atomic: bool = False
    wait_order: str | None = None
    backward: bool = False


@dataclasses.dataclass(frozen=True)
class Strategy:
    """How the tiles of a GEMM are shared out among programs.

    * ``grid``: ``"per-cu"`` (one program per CU, looping over tiles), ``"per-tile"`` (one
      program per tile) or ``"per-slice"`` (one per tile and K-slice);
    * ``options``: the strategy options (GemmConfig fields) it takes beyond the general ones;
    * ``splits_tiles``: some tile's K-range may be spread over several programs (partials);
    * ``fixups``: it reduces split tiles with a :class:`FixupProtocol` (the ``fixup`` option);
    * ``dynamic``: tiles are taken at run time (tickets from counters), so there is no static
      tile order to predict, only the rules the tickets follow;
    * ``batched``: a batch of products runs in one launch of it;
    * ``reduction_launch``: a second launch reduces the split tiles' partials (split-K);
    * ``plan``: the name of its plan builder in :data:`PLAN_BUILDERS`.
    """

    name: str
    description: str
    grid: str
    options: tuple[str, ...] = ()
    splits_tiles: bool = False
    fixups: bool = False
    dynamic: bool = False
    batched: bool = False
    reduction_launch: bool = False
    plan: str = ""

    @property
    def persistent(self) -> bool:
        """One program per CU, each looping over tiles (the grid defaults to the CUs)."""
        return self.grid == "per-cu"


GRID_RULES = ("per-cu", "per-tile", "per-slice")
STRATEGY_REGISTRY: dict[str, Strategy] = {}
FIXUP_REGISTRY: dict[str, FixupProtocol] = {}
# plan name -> builder(config) -> (programs, split_tiles, counters); refsim.plan fills it.
PLAN_BUILDERS: dict[str, Callable[..., Any]] = {}


def register_strategy(strategy: Strategy) -> Strategy:
    """Add ``strategy`` to the registry (ValueError for a name taken or a bad grid rule)."""
    if strategy.name in STRATEGY_REGISTRY:
        raise ValueError(f"strategy {strategy.name!r} is already registered")
    if strategy.grid not in GRID_RULES:
        raise ValueError(f"strategy {strategy.name!r}: grid must be one of {GRID_RULES}")
    STRATEGY_REGISTRY[strategy.name] = strategy
    return strategy


def register_fixup(protocol: FixupProtocol) -> FixupProtocol:
    """Add ``protocol`` to the registry (ValueError for a name taken)."""
    if protocol.name in FIXUP_REGISTRY:
        raise ValueError(f"fixup {protocol.name!r} is already registered")
    FIXUP_REGISTRY[protocol.name] = protocol
    return protocol


def register_plan(name: str, builder: Callable[..., Any]) -> None:
    """Name a plan builder ``(config) -> (programs, split_tiles, counters)`` for strategies'
    ``plan`` (see :func:`refsim.plan.build_plan`)."""
    PLAN_BUILDERS[name] = builder


def unregister(name: str) -> None:
    """Remove a strategy registered from outside the package (tests, experiments)."""
    STRATEGY_REGISTRY.pop(name, None)


def strategy(name: str) -> Strategy:
    """The registered strategy called ``name``; ValueError listing the accepted ones."""
    try:
        return STRATEGY_REGISTRY[name]
    except (KeyError, TypeError):
        accepted = ", ".join(map(repr, STRATEGY_REGISTRY))
        raise ValueError(f"strategy={name!r}: accepted values are {accepted}") from None


def fixup(name: str | None) -> FixupProtocol | None:
    """The registered fixup protocol called ``name`` (None for None); ValueError otherwise."""
    if name is None:
        return None
    try:
        return FIXUP_REGISTRY[name]
    except (KeyError, TypeError):
        accepted = ", ".join(map(repr, FIXUP_REGISTRY))
        raise ValueError(f"fixup={name!r}: accepted values are {accepted}") from None


def run_label(strategy_name: str, fixup_name: str | None) -> str:
    """A strategy run's name: ``"streamk/turnstile"`` for a strategy that splits tiles
    statically and reduces them by a fixup protocol, else the strategy's name."""
    scheme = strategy(strategy_name)
    if scheme.fixups and not scheme.dynamic and fixup_name is not None:
        return f"{strategy_name}/{fixup_name}"
    return strategy_name


def strategy_options() -> tuple[str, ...]:
    """Every option some registered strategy takes (the others are general options)."""
    return tuple(dict.fromkeys(o for s in STRATEGY_REGISTRY.values() for o in s.options))


def strategy_names() -> tuple[str, ...]:
    return tuple(STRATEGY_REGISTRY)


def fixup_names() -> tuple[str, ...]:
    return tuple(FIXUP_REGISTRY)


for _protocol in (
    FixupProtocol(
        "owner-waits",
        "the tile's first program waits for the others' partials and finishes the tile",
        waits=True,
        wait_order="higher-first",
    ),
    FixupProtocol(
        "turnstile",
        "each program waits for the one before it, adds its partial, and the last finishes",
        waits=True,
        wait_order="lower-first",
        backward=True,
    ),
    FixupProtocol(
        "last-arriver",
        "every program stores its partial and counts itself in; the last to arrive finishes",
    ),
    FixupProtocol(
        "atomic",
        "every program adds its partial into a zeroed fp32 C with atomics",
        deterministic=False,
        atomic=True,
    ),
):
    register_fixup(_protocol)

_WS_OPTIONS = (
    "sk_tiles",
    "fixup",
    "counters_per_xcd",
    "global_counter",
    "ws_counter_map",
    "ws_counter_ranges",
    "ws_ticket_tile",
)
for _strategy in (
    Strategy(
        "data_parallel",
        "one program per tile",
        "per-tile",
        options=("tile_order",),
        batched=True,
        plan="ordered",
    ),
    Strategy(
        "persistent",
        "one program per CU, each looping over whole tiles",
        "per-cu",
        options=("tile_order",),
        plan="ordered",
    ),
    Strategy(
        "streamk",
        "one program per CU; the last tiles' K-iterations are shared out evenly (Stream-K)",
        "per-cu",
        options=("sk_tiles", "sk_hybrid", "fixup"),
        splits_tiles=True,
        fixups=True,
        plan="streamk",
    ),
    Strategy(
        "work_stealing",
        "one program per CU, taking tiles from counters at run time, then a Stream-K tail",
        "per-cu",
        options=_WS_OPTIONS,
        splits_tiles=True,
        fixups=True,
        dynamic=True,
        plan="work_stealing",
    ),
    Strategy(
        "split_k",
        "one program per tile and K-slice, then a reduction launch",
        "per-slice",
        options=("split_k", "reduce_bands"),
        splits_tiles=True,
        reduction_launch=True,
        plan="split_k",
    ),
):
    register_strategy(_strategy)
