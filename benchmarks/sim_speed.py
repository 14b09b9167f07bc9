"""Simulator speed: wall time and work items per second.

8192^3 with 256x256x64 blocks and 32768x32768x8192 with 128x128x64 blocks on the default
MI300X profile (304 CUs), every strategy; then 4096^3 with random input arrays (exact numerics:
a float64 product per K-iteration of the whole output). Each case runs ``--repeat`` times; the
best is kept. Targets on a 2-core machine: under 0.2 s per strategy for 8192^3; at least
100,000 work items per second on the big case.
"""

import argparse
import time

import numpy as np

import refsim

CASES = [((8192, 8192, 8192), (256, 256, 64)), ((32768, 32768, 8192), (128, 128, 64))]


NUMERICS_SHAPE = (4096, 4096, 4096)


def measure(shape, blocks, strategy, repeat, arrays=None):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        result = refsim.simulate(
            *shape,
            cus=304,
            strategy=strategy,
            block_m=blocks[0],
            block_n=blocks[1],
            block_k=blocks[2],
            **(arrays or {}),
        )
        best = min(best, time.perf_counter() - start)
    return best, len(result.records)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        f"{'shape':>20} {'blocks':>11} {'strategy':>14} {'wall s':>8} {'items':>7} {'items/s':>9}"
    )
    for shape, blocks in CASES:
        for strategy in refsim.STRATEGIES:
            seconds, items = measure(shape, blocks, strategy, args.repeat)
            print(
                f"{'x'.join(map(str, shape)):>20} {'x'.join(map(str, blocks)):>11} "
                f"{strategy:>14} {seconds:8.3f} {items:7d} {items / seconds:9.0f}"
            )
    m, n, k = NUMERICS_SHAPE
    rng = np.random.default_rng(0)
    arrays = {"a": rng.standard_normal((m, k)), "b": rng.standard_normal((k, n))}
    seconds, items = measure(NUMERICS_SHAPE, (256, 256, 64), "streamk", args.repeat, arrays)
    print(
        f"{'x'.join(map(str, NUMERICS_SHAPE)):>20} {'256x256x64':>11} {'with arrays':>14} ", end=""
    )
    print(f"{seconds:8.3f} {items:7d} {items / seconds:9.0f}")


if __name__ == "__main__":
    main()
