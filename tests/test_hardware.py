"""Tests of :mod:`refsim.hardware`: the presets, their cited sources, validation of custom
profiles, :func:`get_profile`, and custom profiles driving :func:`refsim.simulate`."""

import ast
import dataclasses
import inspect
import io
import math
import re
import tokenize

import pytest

import refsim
from refsim import PROFILES, HardwareProfile, get_profile, hardware
from refsim.hardware import DEFAULT_DEVICE

MI300X = PROFILES["mi300x"]
H100 = PROFILES["h100"]
ALL_PROFILES = sorted(PROFILES)

# A citation names where a number comes from: a web address or an arXiv id.
CITATION = re.compile(
    r"\b[a-z0-9-]+(\.[a-z0-9-]+)*\.(com|org|net|io|edu|gov)\b|arXiv:\d{4}\.\d{4,5}", re.IGNORECASE
)


def fields_of(profile):
    return {f.name: getattr(profile, f.name) for f in dataclasses.fields(profile)}


# --------------------------------------------------------------------------------------------
# The presets.


@pytest.mark.parametrize("name", ALL_PROFILES)
def test_preset_passes_validation_when_rebuilt(name):
    profile = PROFILES[name]
    assert HardwareProfile(**fields_of(profile)) == profile


@pytest.mark.parametrize("name", ALL_PROFILES)
def test_preset_is_registered_under_its_own_name(name):
    assert PROFILES[name].name == name
    assert get_profile(name) is PROFILES[name]


@pytest.mark.parametrize("name", ALL_PROFILES)
def test_preset_cus_divide_over_xcds(name):
    p = PROFILES[name]
    assert p.cus >= p.xcds >= 1
    assert p.cus % p.xcds == 0
    assert p.cus_per_xcd * p.xcds == p.cus


@pytest.mark.parametrize("name", ALL_PROFILES)
def test_preset_has_positive_peak_for_every_dtype(name):
    peaks = PROFILES[name].peak_tflops
    for dtype in ("fp16", "bf16", "fp32"):
        assert isinstance(peaks[dtype], (int, float)) and math.isfinite(peaks[dtype])
        assert peaks[dtype] > 0
    assert peaks["fp32"] < peaks["bf16"]  # no preset computes IEEE fp32 faster than bf16


@pytest.mark.parametrize("name", ALL_PROFILES)
def test_preset_sources_look_like_citations(name):
    sources = PROFILES[name].sources
    assert len(sources) > 0
    for key, text in sources.items():
        assert isinstance(key, str) and key
        assert isinstance(text, str) and len(text) >= 20, (key, text)
        assert CITATION.search(text), f"{name}.sources[{key!r}] cites no address: {text!r}"


def test_mi300x_is_the_default_with_304_cus_on_8_xcds():
    assert DEFAULT_DEVICE == "mi300x"
    assert (MI300X.vendor, MI300X.cus, MI300X.xcds, MI300X.cus_per_xcd) == ("amd", 304, 8, 38)
    assert refsim.GemmConfig(64, 64, 64).profile is MI300X


@pytest.mark.parametrize("name", [n for n in ALL_PROFILES if PROFILES[n].vendor == "nvidia"])
def test_nvidia_profiles_have_one_xcd(name):
    assert PROFILES[name].xcds == 1


def test_both_vendors_are_represented():
    assert {p.vendor for p in PROFILES.values()} == {"amd", "nvidia"}


# --------------------------------------------------------------------------------------------
# Project rule: every number cites its public source in the code.


def _preset_calls():
    """``(variable name, ast.Call)`` for every ``X = HardwareProfile(...)`` in hardware.py."""
    tree = ast.parse(inspect.getsource(hardware))
    calls = []
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
            and node.value.func.id == "HardwareProfile"
        ):
            calls.append((node.targets[0].id, node.value))
    return calls


def _comments_by_line():
    source = inspect.getsource(hardware)
    return {
        tok.start[0]: tok.string
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    }


def _has_number(node):
    return any(
        isinstance(n, ast.Constant)
        and isinstance(n.value, (int, float))
        and not isinstance(n.value, bool)
        for n in ast.walk(node)
    )


def test_every_registered_profile_is_a_literal_preset_in_hardware_py():
    """The source check below sees every profile the package offers."""
    presets = [getattr(hardware, name) for name, _ in _preset_calls()]
    assert sorted(p.name for p in presets) == sorted(PROFILES)
    for preset in presets:
        assert PROFILES[preset.name] is preset


@pytest.mark.parametrize("variable, call", _preset_calls(), ids=[n for n, _ in _preset_calls()])
def test_every_number_in_a_preset_cites_a_source(variable, call):
    """Each numeric keyword line carries ``# ... [_SOURCE, ...]`` naming strings in ``sources``."""
    comments = _comments_by_line()
    profile = getattr(hardware, variable)
    numeric = [kw for kw in call.keywords if _has_number(kw.value)]
    assert {kw.arg for kw in numeric} >= {"cus", "xcds", "clock_mhz", "peak_tflops", "hbm_gbps"}
    for kw in numeric:
        lines = range(kw.lineno, kw.end_lineno + 1)
        comment = " ".join(comments[line] for line in lines if line in comments)
        assert comment, f"{variable}.{kw.arg} (line {kw.lineno}) has a number but no comment"
        cited = re.findall(r"\[([^\]]+)\]", comment)
        assert cited, f"{variable}.{kw.arg}: comment {comment!r} names no [source]"
        for name in (n.strip() for group in cited for n in group.split(",")):
            text = getattr(hardware, name, None)
            assert isinstance(text, str), f"{variable}.{kw.arg} cites unknown source {name!r}"
            assert text in profile.sources.values(), (
                f"{variable}.{kw.arg} cites {name}, which is not in {variable}.sources"
            )


# --------------------------------------------------------------------------------------------
# get_profile.


@pytest.mark.parametrize(
    "spelling, name",
    [
        ("mi300x", "mi300x"),
        ("MI300X", "mi300x"),
        ("Mi325X", "mi325x"),
        ("MI355X", "mi355x"),
        ("H100", "h100"),
        ("h100-sxm", "h100"),
        ("H100_SXM", "h100"),
        ("H200", "h200"),
    ],
)
def test_get_profile_is_case_insensitive(spelling, name):
    assert get_profile(spelling) is PROFILES[name]


def test_get_profile_returns_a_given_profile_unchanged():
    custom = dataclasses.replace(MI300X, name="not-registered")
    assert get_profile(custom) is custom
    assert get_profile(MI300X) is MI300X


@pytest.mark.parametrize("name", ["a100", "mi250x", "", "mi300", "h100x"])
def test_get_profile_rejects_unknown_names_listing_accepted_ones(name):
    with pytest.raises(ValueError) as excinfo:
        get_profile(name)
    message = str(excinfo.value)
    assert repr(name) in message
    for accepted in PROFILES:
        assert accepted in message


# --------------------------------------------------------------------------------------------
# Custom profiles: validation.

INVALID_PROFILES = [
    (dict(vendor="intel"), ["vendor='intel'", "amd", "nvidia"]),
    (dict(vendor="AMD"), ["vendor='AMD'"]),
    (dict(cus=300), ["cus=300", "xcds=8"]),
    (dict(cus=4), ["cus=4", "xcds=8"]),
    (dict(cus=0), ["cus=0"]),
    (dict(cus=1.5), ["cus=1.5"]),
    (dict(xcds=0), ["xcds=0"]),
    (dict(clock_mhz=0), ["clock_mhz=0"]),
    (dict(resident_per_cu=0), ["resident_per_cu=0"]),
    (dict(peak_tflops={"fp16": 1307.4, "bf16": 1307.4}), ["peak_tflops", "fp32"]),
    (dict(peak_tflops={"fp32": 163.4}), ["peak_tflops", "fp16", "bf16"]),
    (dict(peak_tflops={"fp16": 0.0, "bf16": 1307.4, "fp32": 163.4}), ["peak_tflops", "fp16"]),
    (dict(peak_tflops={"fp16": 1.0, "bf16": -1.0, "fp32": 1.0}), ["peak_tflops", "bf16"]),
    (dict(hbm_gbps=-1.0), ["hbm_gbps=-1.0", "> 0"]),
    (dict(hbm_gbps=float("nan")), ["hbm_gbps=nan"]),
    (dict(l2_mib_per_xcd=-4.0), ["l2_mib_per_xcd=-4.0"]),
    (dict(atomic_latency_us=-0.5), ["atomic_latency_us=-0.5"]),
    (dict(atomic_interval_us=-0.01), ["atomic_interval_us=-0.01"]),
    (dict(launch_overhead_us=-5.0), ["launch_overhead_us=-5.0"]),
]


@pytest.mark.parametrize(
    "changes, expected", INVALID_PROFILES, ids=[repr(c) for c, _ in INVALID_PROFILES]
)
def test_invalid_custom_profile_raises_value_error(changes, expected):
    with pytest.raises(ValueError) as excinfo:
        dataclasses.replace(MI300X, **changes)
    message = str(excinfo.value)
    missing = [s for s in expected if s not in message]
    assert not missing, f"{message!r} lacks {missing}"


def test_zero_bandwidth_profile_is_rejected_at_construction():
    with pytest.raises(ValueError, match="hbm_gbps"):
        dataclasses.replace(MI300X, hbm_gbps=0.0)


def test_custom_profile_built_from_scratch_validates():
    p = HardwareProfile(
        name="toy",
        vendor="amd",
        cus=16,
        xcds=4,
        clock_mhz=1000,
        peak_tflops={"fp16": 100.0, "bf16": 100.0, "fp32": 10.0},
        hbm_gbps=1000.0,
        l2_mib_per_xcd=1.0,
        atomic_latency_us=0.0,
        atomic_interval_us=0.0,
        launch_overhead_us=0.0,
        resident_per_cu=2,
    )
    assert (p.cus_per_xcd, dict(p.sources)) == (4, {})
    result = refsim.simulate(512, 512, 512, device=p, block_m=64, block_n=64, block_k=64)
    assert result.deadlock is None and result.config.cus == 16 and result.makespan_us > 0


# --------------------------------------------------------------------------------------------
# Custom profiles end to end.


def scaled_peak(profile, factor):
    return dataclasses.replace(
        profile,
        name=profile.name + "-fast",
        peak_tflops={d: v * factor for d, v in profile.peak_tflops.items()},
    )


def scaled_bandwidth(profile, factor):
    return dataclasses.replace(
        profile, name=profile.name + "-slowmem", hbm_gbps=profile.hbm_gbps * factor
    )


def test_custom_profile_runs_end_to_end_and_reports_its_name():
    custom = dataclasses.replace(MI300X, name="mi300x-half", cus=152)
    result = refsim.simulate(512, 512, 512, device=custom, block_m=64, block_n=64, block_k=64)
    assert result.config.profile is custom
    assert (result.config.cus, result.config.grid) == (152, 152)
    summary = result.summary_dict()
    assert summary["device"] == "mi300x-half" and summary["cus"] == 152
    assert "mi300x-half" in result.summary()
    assert result.deadlock is None and result.makespan_us > 0


B64 = dict(block_m=64, block_n=64, block_k=64)

# Compute-bound: few tiles and a long K loop, so each CU's matrix throughput sets the pace.
COMPUTE_BOUND = [
    ("mi300x", "data_parallel", (512, 512, 4096), {}),
    ("h100", "data_parallel", (512, 512, 4096), {}),
    ("mi300x", "persistent", (64, 64, 8192), B64),
    ("mi300x", "streamk", (512, 512, 512), {}),
    ("h100", "split_k", (512, 512, 4096), {}),
    ("mi300x", "work_stealing", (512, 512, 4096), {}),
]

# Memory-bound: many small tiles streaming at once share each XCD's slice of HBM bandwidth.
MEMORY_BOUND = [
    ("mi300x", "data_parallel", (2048, 2048, 512), B64),
    ("h100", "data_parallel", (2048, 2048, 512), B64),
    ("mi300x", "streamk", (1024, 1024, 1024), B64),
    ("h100", "persistent", (64, 2048, 1024), B64),
    ("mi300x", "split_k", (512, 512, 4096), {}),
    ("mi300x", "work_stealing", (1024, 1024, 1024), B64),
]


def makespan(device, strategy, shape, blocks):
    result = refsim.simulate(*shape, device=device, strategy=strategy, **blocks)
    assert result.deadlock is None
    return result.makespan_us


@pytest.mark.parametrize("device, strategy, shape, blocks", COMPUTE_BOUND)
def test_doubling_peak_tflops_speeds_up_a_compute_bound_shape(device, strategy, shape, blocks):
    base = makespan(PROFILES[device], strategy, shape, blocks)
    fast = makespan(scaled_peak(PROFILES[device], 2.0), strategy, shape, blocks)
    assert base / 2 <= fast < base  # faster, but at most twice as fast


@pytest.mark.parametrize("device, strategy, shape, blocks", MEMORY_BOUND + COMPUTE_BOUND)
def test_halving_hbm_bandwidth_never_speeds_up(device, strategy, shape, blocks):
    base = makespan(PROFILES[device], strategy, shape, blocks)
    slow = makespan(scaled_bandwidth(PROFILES[device], 0.5), strategy, shape, blocks)
    assert base <= slow <= 2 * base


@pytest.mark.parametrize("device, strategy, shape, blocks", MEMORY_BOUND)
def test_halving_hbm_bandwidth_slows_a_memory_bound_shape(device, strategy, shape, blocks):
    base = makespan(PROFILES[device], strategy, shape, blocks)
    slow = makespan(scaled_bandwidth(PROFILES[device], 0.5), strategy, shape, blocks)
    assert slow > 1.05 * base
