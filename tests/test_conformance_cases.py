"""The named case sets: valid, uniquely named, within the interpreter's budget, resident where
programs wait, and reaching every required feature, with the features read off the plan."""

import dataclasses
import json

import pytest

import refsim
from conformance.cases import (
    REQUIRED_FEATURES,
    Case,
    case_features,
    coverage,
    full_set,
    gpu_device,
    load_cases,
    quick_set,
)

# An H100 or H200 (132 SMs) and an MI300X (304 CUs): the GPUs the full set is sized for.
SM_COUNTS = (132, 304)
SETS = {"quick": quick_set, **{f"full-{s}": lambda s=s: full_set(s) for s in SM_COUNTS}}


@pytest.fixture(params=list(SETS), scope="module")
def named_set(request):
    return request.param, SETS[request.param]()


def test_every_case_is_a_valid_config_refsim_runs_without_deadlock(named_set):
    _, cases = named_set
    for case in cases:
        sim = refsim.simulate(case.config())
        assert sim.deadlock is None, f"{case.name}: {sim.deadlock}"


def test_case_names_are_unique(named_set):
    _, cases = named_set
    names = [case.name for case in cases]
    assert len(set(names)) == len(names), sorted(n for n in names if names.count(n) > 1)


def test_every_required_feature_is_reached(named_set):
    name, cases = named_set
    covered = coverage(cases)
    missing = [f for f in REQUIRED_FEATURES if f not in covered]
    assert not missing, f"the {name} set misses {missing}"


@pytest.mark.parametrize("sm_count", (108, 114, 256))
def test_the_full_set_reaches_every_feature_on_other_gpus(sm_count):
    """A100 (108), H100 PCIe (114), MI355X (256): no feature depends on 132 or 304 SMs."""
    covered = coverage(full_set(sm_count))
    assert [f for f in REQUIRED_FEATURES if f not in covered] == []


@pytest.mark.parametrize("sm_count", SM_COUNTS)
def test_waiting_fixups_never_launch_more_programs_than_the_gpu_holds(sm_count):
    """Owner-waits and turnstile programs spin on each other: all must be resident at once."""
    waiting = [
        case.config()
        for case in full_set(sm_count)
        if case.config().protocol is not None and case.config().protocol.waits
    ]
    assert len(waiting) >= 12
    assert max(config.grid for config in waiting) <= sm_count


def test_quick_cases_stay_within_the_interpreters_budget():
    """The interpreter's time grows with programs and block products: each quick case keeps
    both small, so that the set runs in about a minute on two cores."""
    for case in quick_set():
        config = case.config()
        assert config.grid <= 21, case.name
        assert config.total_tiles * config.iters_per_tile <= 32, case.name


def test_sets_round_trip_through_json(tmp_path, named_set):
    _, cases = named_set
    path = tmp_path / "cases.json"
    path.write_text(json.dumps([case.to_dict() for case in cases]))
    assert load_cases(path) == cases
    assert {"transpose_c", "strided"} <= set(cases[0].to_dict())


def test_dropping_the_cases_of_a_feature_loses_it():
    """Every required feature comes from some quick case, and the set without those cases
    misses it: the coverage test fails when a case that alone gives a feature is dropped."""
    cases = quick_set()
    features = {case.name: case_features(case) for case in cases}
    for feature in REQUIRED_FEATURES:
        rest = [case for case in cases if feature not in features[case.name]]
        assert len(rest) < len(cases), feature
        assert feature not in coverage(rest)


def test_features_come_from_the_config_and_plan_not_the_name():
    base = Case("owner-waits-hybrid-xcds=2", 80, 32, 40, fixup="owner-waits", cus=4)
    plain = case_features(base)
    assert "streamk/owner-waits/hybrid" not in plain  # 5 tiles on 4 programs: all Stream-K
    assert "streamk/owner-waits/sk-only" in plain
    assert not any(f.startswith("xcds=") for f in plain)
    renamed = dataclasses.replace(base, name="anything")
    assert case_features(renamed) == plain


@pytest.mark.parametrize(
    ("changes", "gained", "absent"),
    [
        # 7 tiles on 3 programs: the two-tile rule keeps 3 whole tiles data-parallel
        (
            {"m": 100, "n": 20, "k": 64, "cus": 3},
            {"streamk/owner-waits/hybrid", "streamk/owner-waits/program-in-2-split-tiles"},
            {"streamk/owner-waits/sk-only"},
        ),
        # 2 XCDs: a grid of 3 is not divisible by them, a grid of 4 is
        (
            {"xcds": 2, "options": (("grid", 3),)},
            {"xcds=2/grid%xcds!=0/streamk/owner-waits"},
            set(),
        ),
        ({"xcds": 2}, set(), {"xcds=2/grid%xcds!=0/streamk/owner-waits"}),
        # one tile of 6 K-iterations on 4 programs, in fp32 and in fp16
        (
            {"m": 1, "n": 32, "k": 88, "fixup": "turnstile"},
            {"3+programs/turnstile/fp32", "M=1", "grid>tiles/streamk/turnstile"},
            set(),
        ),
        (
            {"m": 1, "n": 32, "k": 88, "fixup": "turnstile", "dtype": "fp16"},
            {"fp16/bias", "fp16/streamk/turnstile"},
            {"3+programs/turnstile/fp32"},
        ),
        # K below, across and at a multiple of BLOCK_K
        ({"k": 8}, {"K<BLOCK_K/streamk/owner-waits", "streamk/owner-waits/whole-sk-tile"}, set()),
        ({"k": 48}, {"EVEN_K/streamk/owner-waits"}, {"K%BLOCK_K!=0/streamk/owner-waits"}),
        # a strided case counts for the bias only with one
        ({"strided": True}, {"strided+bias/streamk"}, set()),
        (
            {"strided": True, "bias": False},
            {"no-bias/streamk/owner-waits"},
            {"strided+bias/streamk"},
        ),
        (
            {"strategy": "split_k", "fixup": None, "k": 8, "options": (("split_k", 1),)},
            {"split_k/split_k=1", "K<BLOCK_K/split_k"},
            set(),
        ),
        (
            {
                "strategy": "work_stealing",
                "fixup": None,
                "xcds": 2,
                "options": (("counters_per_xcd", 2),),
            },
            {
                "work_stealing/counters_per_xcd>1",
                "work_stealing/xcds>1",
                "work_stealing/tiles%counters!=0",
            },
            {"work_stealing/global-counter"},
        ),
    ],
)
def test_case_features(changes, gained, absent):
    case = dataclasses.replace(Case("case", 80, 32, 40, fixup="owner-waits", cus=4), **changes)
    features = case_features(case)
    assert gained <= features
    assert not absent & features


def test_gpu_device_is_the_smallest_profile_that_holds_the_sms():
    assert gpu_device(132) == "h100"
    assert gpu_device(304) == "mi300x"
    assert gpu_device(256) == "mi355x"
    with pytest.raises(ValueError, match="sm_count=1000"):
        gpu_device(1000)
