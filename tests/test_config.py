"""Tests of :class:`refsim.config.GemmConfig`: validation messages, documented defaults, derived
quantities, ``replace()`` and value semantics."""

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refsim import FIXUPS, PROFILES, STRATEGIES, GemmConfig, tiling
from refsim.config import (
    FIELD_NAMES,
    OPTION_NAMES,
    SK_HYBRIDS,
    TILE_ORDERS,
    WS_COUNTER_MAPS,
    WS_COUNTER_RANGES,
)

# 512 x 512 x 512 with the default 256 x 256 x 64 blocks: 2 x 2 = 4 tiles, 8 K-iterations each.
BASE = dict(m=512, n=512, k=512)
BASE_TILES = 4
BASE_ITERS = 8

HYPOTHESIS = settings(deadline=None, max_examples=150)


def config(**changes):
    return GemmConfig(**{**BASE, **changes})


# --------------------------------------------------------------------------------------------
# Validation: every invalid value raises ValueError naming the field (and the accepted values).

INVALID = [
    # sizes: non-positive or not an int
    (dict(m=0), ["m=0", "positive integer"]),
    (dict(n=-1), ["n=-1", "positive integer"]),
    (dict(k=1.5), ["k=1.5", "positive integer"]),
    (dict(m=True), ["m=True", "positive integer"]),
    (dict(k="512"), ["k='512'", "positive integer"]),
    (dict(n=512.0), ["n=512.0", "positive integer"]),
    # block sizes: powers of two >= 16
    (dict(block_m=48), ["block_m=48", "powers of two", "16"]),
    (dict(block_n=8), ["block_n=8", "powers of two", "16"]),
    (dict(block_k=24), ["block_k=24", "powers of two"]),
    (dict(block_k=0), ["block_k=0"]),
    (dict(block_m=-64), ["block_m=-64"]),
    (dict(block_n=64.0), ["block_n=64.0"]),
    (dict(block_k=True), ["block_k=True"]),
    # group_m
    (dict(group_m=0), ["group_m=0", "positive integer"]),
    (dict(group_m=-2), ["group_m=-2"]),
    # choices list every accepted value
    (dict(strategy="stream-k"), ["strategy='stream-k'", *STRATEGIES]),
    (dict(fixup="owner_waits"), ["fixup='owner_waits'", *FIXUPS]),
    (dict(sk_hybrid="three-tile"), ["sk_hybrid='three-tile'", *SK_HYBRIDS]),
    (dict(dtype="int8"), ["dtype='int8'", "fp16", "bf16", "fp32"]),
    (dict(device="a100"), ["device='a100'", *PROFILES]),
    # machine shape
    (dict(cus=4), ["cus=4", "8 XCDs"]),
    (dict(cus=8, xcds=16), ["xcds=16", "cus=8"]),
    (dict(cus=300), ["cus=300", "xcds=8"]),
    (dict(cus=30, xcds=4), ["cus=30", "xcds=4"]),
    (dict(cus=0), ["cus=0"]),
    (dict(xcds=0), ["xcds=0"]),
    (dict(cus=16, xcds=1.5), ["xcds=1.5"]),
    # grid
    (dict(grid=0), ["grid=0"]),
    (dict(strategy="persistent", grid=-4), ["grid=-4"]),
    (dict(strategy="data_parallel", grid=5), ["grid=5", "data_parallel", str(BASE_TILES)]),
    (dict(strategy="data_parallel", grid=304), ["grid=304", "data_parallel"]),
    (dict(strategy="split_k", split_k=2, grid=5), ["grid=5", "split_k", str(BASE_TILES * 2)]),
    # sk_tiles
    (dict(sk_tiles=-1), ["sk_tiles=-1", f"0..{BASE_TILES}"]),
    (dict(sk_tiles=BASE_TILES + 1), [f"sk_tiles={BASE_TILES + 1}", f"0..{BASE_TILES}"]),
    (dict(sk_tiles=1.0), ["sk_tiles=1.0"]),
    (dict(sk_tiles=True), ["sk_tiles=True"]),
    (dict(strategy="persistent", sk_tiles=1), ["sk_tiles=1", "streamk"]),
    (dict(strategy="data_parallel", sk_tiles=0), ["sk_tiles=0", "streamk"]),
    (dict(strategy="split_k", sk_tiles=1), ["sk_tiles=1", "streamk", "work_stealing"]),
    (dict(strategy="work_stealing", sk_tiles=BASE_TILES + 1), [f"0..{BASE_TILES}"]),
    # work stealing reduces split tiles only with a Stream-K tail
    (dict(strategy="work_stealing", fixup="turnstile"), ["fixup='turnstile'", "sk_tiles"]),
    (
        dict(strategy="work_stealing", sk_tiles=0, fixup="atomic"),
        ["fixup='atomic'", "sk_tiles"],
    ),
    # schedule hooks: a preset's name or a function; a split rule's result is checked
    (dict(sk_hybrid=2), ["sk_hybrid=2", *SK_HYBRIDS, "(total_tiles, num_programs) -> sk_tiles"]),
    (
        dict(strategy="work_stealing", ws_counter_map="xcd"),
        ["ws_counter_map='xcd'", *WS_COUNTER_MAPS, "(hw_pid, logical_pid, config) -> counter"],
    ),
    (
        dict(strategy="work_stealing", ws_counter_ranges="uneven"),
        ["ws_counter_ranges='uneven'", *WS_COUNTER_RANGES, "(counter, config) -> (begin, end)"],
    ),
    (
        dict(strategy="persistent", tile_order="snake"),
        ["tile_order='snake'", *TILE_ORDERS, "(logical_pid, step, config) -> tile"],
    ),
    (dict(sk_hybrid=lambda tiles, grid: tiles + 1), ["sk_hybrid=<lambda>", "returned 5", "0..4"]),
    (dict(sk_hybrid=lambda tiles, grid: -1), ["sk_hybrid=<lambda>", "returned -1"]),
    (dict(sk_hybrid=lambda tiles, grid: 1.0), ["sk_hybrid=<lambda>", "returned 1.0"]),
    (dict(sk_hybrid=lambda tiles, grid: True), ["sk_hybrid=<lambda>", "returned True"]),
    (dict(strategy="streamk", tile_order="strided"), ["tile_order='strided'", "persistent"]),
    (dict(ws_counter_map="hardware"), ["ws_counter_map='hardware'", "work_stealing"]),
    (dict(strategy="persistent", ws_counter_ranges="even"), ["ws_counter_ranges", "work_stealing"]),
    (dict(strategy="work_stealing", sk_hybrid="remainder"), ["sk_hybrid='remainder'", "streamk"]),
    # split_k
    (
        dict(strategy="split_k", split_k=BASE_ITERS + 1),
        [f"split_k={BASE_ITERS + 1}", str(BASE_ITERS)],
    ),
    (dict(strategy="split_k", split_k=0), ["split_k=0"]),
    (dict(strategy="split_k", split_k=2.0), ["split_k=2.0"]),
    (dict(split_k=2), ["split_k=2", "split_k"]),
    (dict(strategy="persistent", split_k=1), ["split_k=1", "split_k"]),
    (dict(strategy="data_parallel", split_k=2), ["split_k=2", "split_k"]),
    (dict(strategy="split_k", split_k=2, reduce_bands=3), ["reduce_bands=3", "powers of two"]),
    (dict(strategy="split_k", split_k=2, reduce_bands=128), ["reduce_bands=128", "64"]),
    (dict(strategy="split_k", split_k=2, reduce_bands=0), ["reduce_bands=0"]),
    (dict(strategy="split_k", split_k=1, reduce_bands=2), ["reduce_bands=2", "split_k=1"]),
    (dict(strategy="streamk", reduce_bands=2), ["reduce_bands=2", "split_k"]),
    # options of one strategy are refused by the others
    (dict(strategy="persistent", fixup="turnstile"), ["fixup='turnstile'", "streamk"]),
    (dict(strategy="split_k", fixup="owner-waits"), ["fixup='owner-waits'", "streamk"]),
    (dict(strategy="data_parallel", sk_hybrid="one-wave"), ["sk_hybrid='one-wave'", "streamk"]),
    (dict(counters_per_xcd=2), ["counters_per_xcd=2", "work_stealing"]),
    (dict(global_counter=True), ["global_counter=True", "work_stealing"]),
    (dict(strategy="persistent", global_counter=False), ["global_counter=False", "work_stealing"]),
    # work stealing: more counters on an XCD than programs there
    (dict(strategy="work_stealing", counters_per_xcd=39), ["counters_per_xcd=39", "38"]),
    (dict(strategy="work_stealing", grid=16, counters_per_xcd=3), ["counters_per_xcd=3", "grid"]),
    (dict(strategy="work_stealing", grid=4), ["counters_per_xcd=1", "grid"]),
    (dict(strategy="work_stealing", counters_per_xcd=0), ["counters_per_xcd=0"]),
    (dict(strategy="work_stealing", global_counter=1), ["global_counter=1", "True or False"]),
    # xcd_chunk
    (dict(xcd_chunk=0), ["xcd_chunk=0", "positive integer"]),
    (dict(xcd_chunk=-8), ["xcd_chunk=-8"]),
]


def case_id(kwargs):
    """A test id that is the same in every process: functions by name, not by address."""
    return repr({name: getattr(v, "__qualname__", v) for name, v in kwargs.items()})


@pytest.mark.parametrize("kwargs, expected", INVALID, ids=[case_id(kw) for kw, _ in INVALID])
def test_invalid_value_raises_value_error_naming_the_field(kwargs, expected):
    """The message names the offending field and, for a choice, every accepted value."""
    with pytest.raises(ValueError) as excinfo:
        config(**kwargs)
    message = str(excinfo.value)
    missing = [s for s in expected if s not in message]
    assert not missing, f"{message!r} lacks {missing}"


@pytest.mark.parametrize("strategy", ["persistent", "work_stealing"])
def test_persistent_strategies_accept_any_positive_grid(strategy):
    """Only data_parallel and split_k fix the grid; the persistent ones take what is given."""
    assert config(strategy=strategy, grid=16).grid == 16


def test_work_stealing_global_counter_does_not_need_a_program_per_xcd():
    """One global counter is fed by any grid, even one smaller than the XCD count."""
    c = config(strategy="work_stealing", grid=4, global_counter=True)
    assert (c.grid, c.num_counters) == (4, 1)


# --------------------------------------------------------------------------------------------
# Defaults documented in the GemmConfig docstring.


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_cus_and_xcds_default_to_the_profile(name):
    c = config(device=name)
    assert (c.cus, c.xcds) == (PROFILES[name].cus, PROFILES[name].xcds)


@pytest.mark.parametrize("device, cus, xcds", [("mi300x", 304, 8), ("h100", 132, 1)])
def test_cus_and_xcds_of_the_main_presets(device, cus, xcds):
    c = config(device=device)
    assert (c.cus, c.xcds) == (cus, xcds)


def test_default_device_is_mi300x():
    c = config()
    assert c.device == "mi300x" and (c.cus, c.xcds) == (304, 8)


@pytest.mark.parametrize(
    "strategy, expected_grid",
    [
        ("persistent", 304),
        ("streamk", 304),
        ("work_stealing", 304),
        ("data_parallel", BASE_TILES),
    ],
)
def test_default_grid_by_strategy(strategy, expected_grid):
    assert config(strategy=strategy).grid == expected_grid


@pytest.mark.parametrize("split_k", [1, 2, 3, BASE_ITERS])
def test_split_k_grid_is_tiles_times_split(split_k):
    c = config(strategy="split_k", split_k=split_k)
    assert c.grid == BASE_TILES * split_k


def test_reduce_bands_default_fills_the_cus_and_follows_replace():
    few = config(m=256, n=256, k=8192, strategy="split_k", split_k=4)
    assert few.total_tiles == 1 and few.reduce_bands == 256 // tiling.MIN_REDUCE_BAND_ROWS
    many = config(m=8192, n=8192, strategy="split_k", split_k=2)
    assert many.total_tiles >= many.cus and many.reduce_bands == 1
    assert config(strategy="split_k", split_k=1).reduce_bands == 1
    given = config(m=256, n=256, k=8192, strategy="split_k", split_k=4, reduce_bands=2)
    assert given.reduce_bands == 2
    assert given.replace(split_k=8).reduce_bands == 2
    assert few.replace(block_m=64).reduce_bands == 64 // tiling.MIN_REDUCE_BAND_ROWS


def test_fixed_grid_equal_to_the_work_units_is_accepted():
    assert config(strategy="data_parallel", grid=BASE_TILES).grid == BASE_TILES
    assert config(strategy="split_k", split_k=2, grid=2 * BASE_TILES).grid == 2 * BASE_TILES


def expected_two_tile_sk(tiles, grid):
    """The documented "two-tile" rule, written independently of refsim.tiling."""
    if tiles % grid == 0:
        return 0
    if tiles < grid:
        return tiles
    return tiles % grid + grid


@pytest.mark.parametrize(
    "m, n, block, cus, expected_tiles, expected_sk",
    [
        (8192, 8192, 256, 304, 1024, 1024 % 304 + 304),  # 416: the partial wave plus one full wave
        (4096, 4096, 256, 304, 256, 256),  # fewer tiles than CUs: all Stream-K
        (1024, 1024, 256, 16, 16, 0),  # whole waves: no Stream-K
        (2048, 2048, 256, 16, 64, 0),
        (1280, 1024, 256, 16, 20, 20),  # 4 + 16
        (2560, 1024, 256, 16, 40, 24),  # 8 + 16
    ],
)
def test_two_tile_sk_tiles_table(m, n, block, cus, expected_tiles, expected_sk):
    c = GemmConfig(m, n, 64, block_m=block, block_n=block, cus=cus)
    assert (c.total_tiles, c.sk_tiles, c.dp_tiles) == (
        expected_tiles,
        expected_sk,
        expected_tiles - expected_sk,
    )


@HYPOTHESIS
@given(pid_m=st.integers(1, 48), pid_n=st.integers(1, 48), grid=st.integers(1, 700))
def test_two_tile_sk_tiles_follow_the_documented_rule(pid_m, pid_n, grid):
    c = GemmConfig(16 * pid_m, 16 * pid_n, 64, block_m=16, block_n=16, block_k=16, grid=grid)
    assert c.total_tiles == pid_m * pid_n
    assert c.sk_tiles == expected_two_tile_sk(pid_m * pid_n, grid)


@HYPOTHESIS
@given(pid_m=st.integers(1, 48), pid_n=st.integers(1, 48), grid=st.integers(1, 700))
def test_one_wave_makes_every_tile_stream_k(pid_m, pid_n, grid):
    c = GemmConfig(
        16 * pid_m,
        16 * pid_n,
        64,
        block_m=16,
        block_n=16,
        block_k=16,
        grid=grid,
        sk_hybrid="one-wave",
    )
    assert c.sk_tiles == c.total_tiles and c.dp_tiles == 0


@pytest.mark.parametrize("sk_tiles", [0, 1, BASE_TILES])
def test_explicit_sk_tiles_override_the_hybrid(sk_tiles):
    for hybrid in SK_HYBRIDS:
        c = config(sk_tiles=sk_tiles, sk_hybrid=hybrid)
        assert c.sk_tiles == sk_tiles and c.dp_tiles == BASE_TILES - sk_tiles


def test_explicit_grid_drives_the_sk_default():
    """1024 tiles over a grid of 100: 24 leftover + one full wave of 100."""
    c = GemmConfig(8192, 8192, 512, grid=100)
    assert (c.grid, c.sk_tiles) == (100, 124)


@pytest.mark.parametrize(
    "m, n, k, device, expected",
    [
        (512, 512, 512, "mi300x", BASE_ITERS),  # 4 tiles want 76 splits; capped by 8 iterations
        (8192, 8192, 8192, "mi300x", 1),  # 1024 tiles already cover 304 CUs
        (1024, 1024, 8192, "mi300x", 19),  # 16 tiles: ceil(304 / 16)
        (1024, 1024, 8192, "h100", 9),  # 16 tiles: ceil(132 / 16)
        (4096, 4096, 8192, "h100", 1),  # 256 tiles >= 132 SMs
        (64, 64, 64, "mi300x", 1),  # one K-iteration: nothing to split
    ],
)
def test_split_k_default_table(m, n, k, device, expected):
    c = GemmConfig(m, n, k, strategy="split_k", device=device)
    assert c.split_k == expected
    assert c.grid == c.total_tiles * expected


@HYPOTHESIS
@given(
    pid_m=st.integers(1, 40),
    pid_n=st.integers(1, 40),
    iters=st.integers(1, 300),
    cus=st.sampled_from([8, 16, 64, 152, 304]),
)
def test_split_k_default_is_the_smallest_split_giving_every_cu_a_program(pid_m, pid_n, iters, cus):
    c = GemmConfig(
        16 * pid_m,
        16 * pid_n,
        16 * iters,
        block_m=16,
        block_n=16,
        block_k=16,
        strategy="split_k",
        cus=cus,
    )
    tiles, split = c.total_tiles, c.split_k
    assert 1 <= split <= iters
    assert split * tiles >= cus or split == iters  # enough programs, unless capped
    assert split == 1 or (split - 1) * tiles < cus  # and no more than needed


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(), True),  # mi300x: 8 XCDs
        (dict(device="mi355x"), True),
        (dict(device="h100"), False),
        (dict(device="h200"), False),
        (dict(cus=8, xcds=1), False),  # an AMD device with one XCD
        (dict(xcd_remap=False), False),  # an explicit choice wins
        (dict(device="h100", xcd_remap=True), True),
    ],
)
def test_xcd_remap_default(kwargs, expected):
    assert config(**kwargs).xcd_remap is expected


@pytest.mark.parametrize(
    "alias, canonical",
    [
        ("fp16", "fp16"),
        ("float16", "fp16"),
        ("half", "fp16"),
        ("bf16", "bf16"),
        ("bfloat16", "bf16"),
        ("fp32", "fp32"),
        ("float32", "fp32"),
        ("float", "fp32"),
    ],
)
def test_dtype_aliases_are_normalised(alias, canonical):
    c = config(dtype=alias)
    assert c.dtype == canonical
    assert c.elem_bytes == {"fp16": 2, "bf16": 2, "fp32": 4}[canonical]


@pytest.mark.parametrize("spelling", ["mi300x", "MI300X", "Mi300X", "mi-300x", "MI300_X"])
def test_device_name_is_normalised(spelling):
    assert config(device=spelling).device == "mi300x"


# --------------------------------------------------------------------------------------------
# Derived quantities stay consistent with the fields.

BLOCKS = st.sampled_from([16, 32, 64, 128, 256])


@HYPOTHESIS
@given(
    m=st.integers(1, 5000),
    n=st.integers(1, 5000),
    k=st.integers(1, 5000),
    bm=BLOCKS,
    bn=BLOCKS,
    bk=BLOCKS,
    strategy=st.sampled_from(STRATEGIES),
    device=st.sampled_from(sorted(PROFILES)),
    global_counter=st.booleans(),
)
def test_derived_properties_are_consistent(m, n, k, bm, bn, bk, strategy, device, global_counter):
    stealing = strategy == "work_stealing"
    c = GemmConfig(
        m,
        n,
        k,
        block_m=bm,
        block_n=bn,
        block_k=bk,
        strategy=strategy,
        device=device,
        **({"global_counter": global_counter} if stealing else {}),
    )
    assert c.num_pid_m == math.ceil(m / bm) and (c.num_pid_m - 1) * bm < m <= c.num_pid_m * bm
    assert c.num_pid_n == math.ceil(n / bn)
    assert c.total_tiles == c.num_pid_m * c.num_pid_n
    assert c.iters_per_tile == math.ceil(k / bk)
    assert c.flops == 2 * m * n * k
    if strategy in ("streamk", "work_stealing"):
        assert 0 <= c.sk_tiles <= c.total_tiles
        assert c.sk_tiles == 0 or strategy == "streamk"  # work stealing: 0 unless given
        assert c.dp_tiles == c.total_tiles - c.sk_tiles
        assert c.sk_iters == c.sk_tiles * c.iters_per_tile
    else:
        assert c.sk_tiles is None
        split = strategy == "split_k" and c.split_k > 1
        assert c.dp_tiles == (0 if split else c.total_tiles)
        assert c.sk_iters == 0
    if strategy == "split_k":
        assert c.grid == c.total_tiles * c.split_k
    else:
        assert c.split_k is None
    if stealing:
        assert c.num_counters == (1 if global_counter else c.xcds * c.counters_per_xcd)
    else:
        assert c.num_counters == 0
        assert c.global_counter is None and c.counters_per_xcd is None
    if strategy != "streamk":
        assert c.fixup is None and c.sk_hybrid is None
    assert (c.tile_order is None) == (strategy not in ("data_parallel", "persistent"))
    assert (c.ws_counter_map is None) == (c.ws_counter_ranges is None) == (not stealing)
    assert c.profile is PROFILES[device]


# --------------------------------------------------------------------------------------------
# replace(), immutability, equality.


def test_replace_rederives_sk_tiles_for_the_new_size():
    big = GemmConfig(8192, 8192, 8192)
    assert big.sk_tiles == 416
    smaller = big.replace(m=4096, n=4096)  # 256 tiles < 304 CUs: all Stream-K
    assert (smaller.total_tiles, smaller.sk_tiles, smaller.grid) == (256, 256, 304)
    assert big.sk_tiles == 416 and big.m == 8192  # the original is untouched


@pytest.mark.parametrize(
    "strategy, grid, sk_tiles, split_k",
    [
        ("data_parallel", 1024, None, None),
        ("split_k", 1024, None, 1),
        ("persistent", 304, None, None),
        ("work_stealing", 304, 0, None),
    ],
)
def test_replace_strategy_rederives_grid_sk_tiles_and_split_k(strategy, grid, sk_tiles, split_k):
    c = GemmConfig(8192, 8192, 8192).replace(strategy=strategy)
    assert (c.grid, c.sk_tiles, c.split_k) == (grid, sk_tiles, split_k)


def test_replace_cus_rederives_the_grid():
    c = GemmConfig(8192, 8192, 8192).replace(cus=152)
    assert (c.grid, c.sk_tiles) == (152, 1024 % 152 + 152)


def test_replace_keeps_derived_fields_that_are_given():
    c = GemmConfig(8192, 8192, 8192).replace(grid=100)
    assert (c.grid, c.sk_tiles) == (100, 124)
    assert GemmConfig(8192, 8192, 8192).replace(sk_tiles=0).sk_tiles == 0


def test_replace_xcds_rederives_xcd_remap():
    assert config().replace(xcds=1).xcd_remap is False


def test_replace_validates():
    with pytest.raises(ValueError, match="block_m=48"):
        config().replace(block_m=48)


def test_replace_device_rederives_cus_and_xcds():
    c = config().replace(device="h100")  # from mi300x (304 CUs, 8 XCDs)
    assert (c.cus, c.xcds, c.xcd_remap) == (132, 1, False)


def test_config_is_frozen():
    c = config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.m = 1024
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.grid = 16
    assert (c.m, c.grid) == (512, 304)


def test_equal_configs_compare_equal_and_hash_equal():
    """Defaults spelled out, aliases and case variants all give the same config."""
    implicit = config()
    explicit = config(
        dtype="bfloat16",
        device="MI300X",
        cus=304,
        xcds=8,
        grid=304,
        sk_tiles=BASE_TILES,
        xcd_remap=True,
    )
    assert implicit == explicit
    assert hash(implicit) == hash(explicit)
    assert implicit.replace() == implicit


@pytest.mark.parametrize(
    "change",
    [
        dict(m=1024),
        dict(strategy="persistent"),
        dict(block_k=32),
        dict(dtype="fp16"),
        dict(device="mi325x"),
        dict(grid=16),
    ],
)
def test_configs_differing_in_a_field_compare_unequal(change):
    assert config() != config(**change)


def test_more_cus_than_the_device_has_is_rejected():
    with pytest.raises(ValueError, match="cus=608: mi300x has 304"):
        GemmConfig(64, 64, 64, cus=608)


# --------------------------------------------------------------------------------------------
# Strategy options: derived per strategy, refused elsewhere.


@pytest.mark.parametrize(
    "strategy, expected",
    [
        ("streamk", dict(fixup="owner-waits", sk_hybrid="two-tile")),
        (
            "work_stealing",
            dict(
                counters_per_xcd=1,
                global_counter=False,
                ws_counter_map="hardware",
                ws_counter_ranges="even",
            ),
        ),
        ("persistent", dict(tile_order="strided")),
        ("data_parallel", dict(tile_order="strided")),
        ("split_k", dict()),
    ],
)
def test_strategy_options_default_only_where_they_apply(strategy, expected):
    c = config(strategy=strategy)
    options = (
        "fixup",
        "sk_hybrid",
        "counters_per_xcd",
        "global_counter",
        "ws_counter_map",
        "ws_counter_ranges",
        "tile_order",
    )
    assert {name: getattr(c, name) for name in options} == {
        name: expected.get(name) for name in options
    }


def test_replace_strategy_drops_derived_strategy_options_and_refuses_given_ones():
    derived = config().replace(strategy="persistent")
    assert (derived.fixup, derived.sk_hybrid) == (None, None)
    assert derived.replace(strategy="streamk").fixup == "owner-waits"
    with pytest.raises(
        ValueError, match="fixup='turnstile': only strategy='streamk' or 'work_stealing' takes it"
    ):
        config(fixup="turnstile").replace(strategy="persistent")


def test_every_field_is_described_once_in_its_metadata():
    """The API and the command line read help, choices and strategies from the fields."""
    fields = {f.name: f for f in dataclasses.fields(GemmConfig) if f.init}
    assert tuple(fields) == FIELD_NAMES and FIELD_NAMES[3:] == OPTION_NAMES
    for name, field in fields.items():
        assert field.metadata["help"], name
        assert set(field.metadata.get("strategies") or ()) <= set(STRATEGIES), name
    assert fields["fixup"].metadata["choices"] == FIXUPS
    assert fields["strategy"].metadata["choices"] == STRATEGIES


def test_replace_refuses_unknown_names_listing_the_fields():
    with pytest.raises(TypeError) as excinfo:
        config().replace(fixupp="atomic")
    message = str(excinfo.value)
    assert "'fixupp'" in message and all(name in message for name in FIELD_NAMES)


# --------------------------------------------------------------------------------------------
# numpy integers and blocks fitted to small problems.


def test_numpy_integers_are_accepted_and_stored_as_int():
    given = dict(
        block_m=np.int64(64), block_n=np.int32(64), block_k=np.uint16(32), group_m=np.int8(4)
    )
    c = GemmConfig(np.int64(512), np.int32(256), np.int64(128), cus=np.int64(16), **given)
    plain = GemmConfig(512, 256, 128, cus=16, block_m=64, block_n=64, block_k=32, group_m=4)
    assert c == plain and hash(c) == hash(plain)
    assert all(type(getattr(c, name)) is int for name in ("m", "block_k", "cus", "grid"))
    split = config(strategy="split_k", split_k=np.int64(2), grid=np.int64(8))
    assert (split.split_k, split.grid) == (2, 8) and type(split.split_k) is int
    assert type(config(sk_tiles=np.int64(1)).sk_tiles) is int
    ws = config(strategy="work_stealing", counters_per_xcd=np.int64(2))
    assert ws.counters_per_xcd == 2 and type(ws.counters_per_xcd) is int
    with pytest.raises(ValueError, match="must be a positive integer"):
        config(m=np.bool_(True))


@pytest.mark.parametrize(
    "shape, blocks, fit",
    [
        ((8192, 8192, 8192), (256, 256, 64), None),
        ((16, 16, 16), (16, 16, 16), "fitted"),
        ((1, 100, 5), (16, 128, 16), "fitted"),
        ((300, 129, 64), (256, 256, 64), None),
    ],
)
def test_default_blocks_are_fitted_to_a_smaller_problem(shape, blocks, fit):
    c = GemmConfig(*shape)
    assert ((c.block_m, c.block_n, c.block_k), c.block_fit) == (blocks, fit)


def test_given_blocks_are_kept_and_oversized_ones_flagged():
    assert GemmConfig(16, 16, 16, block_m=256).block_m == 256
    assert GemmConfig(16, 16, 16, block_m=256).block_fit == "padded"
    assert GemmConfig(16, 16, 16, block_m=16, block_n=16, block_k=16).block_fit is None
    assert GemmConfig(16, 16, 16).replace(m=8192).block_m == 256  # derived again
