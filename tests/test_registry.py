"""The strategy and fixup-protocol registry (refsim.strategies): every registered strategy and
protocol has what it needs -- plan builder, kernel launches, conformance cases, a mutant,
required features, a docs entry -- and a strategy registered from outside the package runs
through refsim, the kernels and the conformance checks with no other change."""

import dataclasses
import os
import pathlib

import numpy as np
import pytest
import torch

import refsim
from refsim import strategies
from refsim.strategies import PLAN_BUILDERS, Strategy

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ("docs/refsim.md", "docs/kernels.md", "docs/conformance.md")


def missing_pieces(name):
    """What the strategy ``name`` lacks of what every strategy must have (empty: nothing)."""
    from conformance.cases import REQUIRED_FEATURES, full_set, quick_set
    from conformance.mutants import MUTANTS
    from kernels.launch import STRATEGY_MODULES

    scheme = strategies.strategy(name)
    missing = []
    if scheme.plan not in PLAN_BUILDERS:
        missing.append("no plan builder")
    if name not in STRATEGY_MODULES:
        missing.append("no kernel launches")
    for set_name, cases in (("quick", quick_set()), ("full", full_set(132))):
        if not any(case.strategy == name for case in cases):
            missing.append(f"no case in the {set_name} set")
    if not any(m.case.strategy == name for m in MUTANTS):
        missing.append("no mutant")
    if not any(f"/{name}" in feature for feature in REQUIRED_FEATURES):
        missing.append("no required feature")
    if not any(f"`{name}`" in (ROOT / doc).read_text() for doc in DOCS):
        missing.append("no docs entry")
    return missing


def missing_protocol_pieces(name):
    """What the fixup protocol ``name`` lacks: cases in both sets, a mutant, features, docs."""
    from conformance.cases import REQUIRED_FEATURES, full_set, quick_set
    from conformance.mutants import MUTANTS

    missing = []
    for set_name, cases in (("quick", quick_set()), ("full", full_set(132))):
        if not any(case.fixup == name or case.config().fixup == name for case in cases):
            missing.append(f"no case in the {set_name} set")
    if not any(m.case.config().fixup == name for m in MUTANTS):
        missing.append("no mutant")
    if not any(f"streamk/{name}" in feature for feature in REQUIRED_FEATURES):
        missing.append("no required feature")
    if not any(f"`{name}`" in (ROOT / doc).read_text() for doc in DOCS):
        missing.append("no docs entry")
    return missing


@pytest.mark.parametrize("name", strategies.strategy_names())
def test_every_strategy_has_everything_it_needs(name):
    assert missing_pieces(name) == []


@pytest.mark.parametrize("name", strategies.fixup_names())
def test_every_fixup_protocol_has_everything_it_needs(name):
    assert missing_protocol_pieces(name) == []


def test_unknown_names_are_refused_listing_the_registered_ones():
    with pytest.raises(ValueError, match="strategy='nope': accepted values are 'data_parallel'"):
        refsim.GemmConfig(64, 64, 64, strategy="nope")
    with pytest.raises(ValueError, match="fixup='nope': accepted values are 'owner-waits'"):
        refsim.GemmConfig(64, 64, 64, fixup="nope")
    with pytest.raises(ValueError, match="already registered"):
        strategies.register_strategy(strategies.strategy("persistent"))


def test_options_follow_the_registry():
    from refsim.config import option_strategies

    assert option_strategies("split_k") == ("split_k",)
    assert option_strategies("fixup") == ("streamk", "work_stealing")
    assert option_strategies("group_m") == strategies.strategy_names()


# ---------------------------------------------------------------- a strategy from outside


def _reversed_plan(config):
    """One program per tile, program p on tile ``tiles - 1 - p``."""
    from refsim.plan import _item

    tiles = config.total_tiles
    programs = [
        [_item(config, pid, 0, tiles - 1 - pid, 0, config.iters_per_tile, "dp")]
        for pid in range(config.grid)
    ]
    return programs, {}, []


TOY = Strategy(
    "toy_reversed",
    "one program per tile, the last tile first",
    "per-tile",
    plan="toy_reversed",
)


@pytest.fixture
def toy():
    strategies.register_strategy(TOY)
    strategies.register_plan("toy_reversed", _reversed_plan)
    yield TOY
    strategies.unregister(TOY.name)
    PLAN_BUILDERS.pop("toy_reversed", None)


def test_a_toy_strategy_is_one_registry_entry_and_a_plan_builder(toy):
    config = refsim.GemmConfig(64, 96, 48, strategy=toy.name, block_m=32, block_n=32, block_k=16)
    assert config.grid == config.total_tiles == 6  # the per-tile grid rule
    plan = refsim.build_plan(config)
    assert [program[0].tile for program in plan.programs] == [5, 4, 3, 2, 1, 0]
    rng = np.random.default_rng(0)
    a, b = rng.integers(-3, 4, (64, 48)), rng.integers(-3, 4, (48, 96))
    sim = refsim.simulate(config, a=a.astype(float), b=b.astype(float))
    assert np.array_equal(sim.output, a @ b)
    with pytest.raises(ValueError, match="sk_tiles=1: only strategy="):
        refsim.GemmConfig(64, 96, 48, strategy=toy.name, sk_tiles=1)
    assert "no mutant" in missing_pieces(toy.name)  # the checklist is a check: it fails here
    assert "no kernel launches" in missing_pieces(toy.name)


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="runs the interpreter")
def test_a_toy_strategy_runs_on_the_kernels_and_conformance_checks_its_order(toy):
    """Launched with the data-parallel kernel (the same whole tiles, in data-parallel order),
    the toy's output is right and the conformance suite sees that its order is not the plan's."""
    import kernels
    from conformance.adapter import reference
    from conformance.cases import Case
    from conformance.isolation import check_fresh
    from kernels import data_parallel
    from kernels.launch import STRATEGY_MODULES, register_launches

    shape = {"block_m": 32, "block_n": 32, "block_k": 16, "dtype": "fp32"}
    config = refsim.GemmConfig(64, 96, 48, strategy=toy.name, **shape)
    a, b = torch.randn(64, 48), torch.randn(48, 96)
    with pytest.raises(ValueError, match="no kernel launches it"):
        kernels.run(config, a, b)
    with pytest.raises(ValueError, match="accepted values"):
        register_launches("not-registered", data_parallel)
    register_launches(toy.name, data_parallel)
    try:
        torch.testing.assert_close(kernels.run(config, a, b).output, a @ b)
        case = Case("toy", 64, 96, 48, toy.name, bias=False, **shape)
        result = check_fresh(reference(), case, "cpu")
    finally:
        STRATEGY_MODULES.pop(toy.name)
    checks = {f.check: f for f in result.findings}
    assert checks["exact output"].passed
    assert result.causes == ["wrong tile order"]
    assert dataclasses.replace(TOY, name="x").persistent is False
