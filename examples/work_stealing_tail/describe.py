"""The schedule kernel.py follows, as refsim's GemmConfig options, and refsim's verdict on it.

Run from the repository root::

    python examples/work_stealing_tail/describe.py

For the buggy and the fixed counter map it prints the counters no program draws from and the
tiles never computed, on the issue's launch and on the interpreter-sized one of the conformance
cases (``cases.json``); nothing is launched, refsim predicts it all.
"""

import refsim
from refsim.result import TileCoverage, UnservedCounter

# kernel.py's counter map under refsim's preset names: SLOT_FROM_REMAPPED_ID=True takes the XCD
# from the hardware program id and the slot within it from the XCD-remapped id.
COUNTER_MAPS = {"buggy": "hardware-xcd-logical-slot", "fixed": "hardware"}

# The launch: 5120 x 5120 in 256 x 256 tiles (400) on an MI300X (304 CUs in 8 XCDs), 8
# counters per XCD, and the partial last wave (400 % 304 = 96 tiles) as the Stream-K tail. The
# interpreter-sized one: 80 x 32 in 16 x 32 tiles (5) on 4 CUs in 2 emulated XCDs, 2 counters per
# XCD, 1 tail tile.
LAUNCHES = {
    "the issue's launch": dict(m=5120, n=5120, k=4096, counters_per_xcd=8, sk_tiles=96),
    "interpreter-sized": dict(
        m=80, n=32, k=40, block_m=16, block_n=32, block_k=16, group_m=4,
        cus=4, xcds=2, counters_per_xcd=2, sk_tiles=1,
    ),
}  # fmt: skip


def schedule(counter_map):
    """The GemmConfig options kernel.py's schedule fixes, with the ``"buggy"`` or ``"fixed"``
    counter map: per-XCD counters whose ranges split the tiles per XCD, then a Stream-K tail
    reduced by the last contributor to arrive, logical program ids by the plain XCD remap."""
    return dict(
        strategy="work_stealing",
        ws_counter_map=COUNTER_MAPS[counter_map],
        ws_counter_ranges="per-xcd",
        fixup="last-arriver",
        xcd_remap=True,
        xcd_chunk=None,
    )


def verdict(result):
    """refsim's coverage errors of one run, as lines: what is lost, or that nothing is."""
    config = result.config
    unserved = [e for e in result.coverage_errors if isinstance(e, UnservedCounter)]
    never = {e.tile for e in result.coverage_errors if isinstance(e, TileCoverage)}
    if not result.coverage_errors:
        return [f"every one of {config.num_counters} counters served, every tile computed once"]
    lines = [
        f"{len(unserved)} of {config.num_counters} counters never served, "
        f"{len(never)} of {config.total_tiles} tiles never computed"
    ]
    lines += [f"  {error}" for error in unserved]
    return lines


def main():
    for name, launch in LAUNCHES.items():
        config = refsim.GemmConfig(**launch, **schedule("fixed"))
        print(
            f"{name}: {config.m}x{config.n}x{config.k}, {config.total_tiles} tiles, "
            f"{config.cus} CUs in {config.xcds} XCDs, {config.counters_per_xcd} counters per XCD, "
            f"a Stream-K tail of {config.sk_tiles} tile{'s' * (config.sk_tiles != 1)}"
        )
        for counter_map in COUNTER_MAPS:
            result = refsim.simulate(**launch, **schedule(counter_map))
            lines = verdict(result)
            print(f"  {counter_map}: {lines[0]}")
            for line in lines[1:]:
                print(f"  {line}")


if __name__ == "__main__":
    main()
