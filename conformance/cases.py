"""Conformance cases as data: every case is a seeded GEMM configuration plus how to feed it.

Two named sets: ``quick`` (Triton's interpreter on the CPU, small shapes and blocks) and
``full`` (a GPU: large shapes, every strategy and fixup, wave-quantisation edges for the GPU's
SM count and for 304 CUs / 8 XCDs emulated by the grid, K < BLOCK_K, M = 1, N = 1, bias on and
off, fp16/bf16/fp32). ``load_cases`` reads a JSON list of the same fields.
"""

import dataclasses
import json

from refsim import GemmConfig, tiling

FIXUP_RUNS = ("owner-waits", "turnstile", "last-arriver")


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
        data = dataclasses.asdict(self)
        data["options"] = dict(self.options)
        return data

    @classmethod
    def from_dict(cls, data):
        data = dict(data)
        data["options"] = tuple(sorted(dict(data.get("options", {})).items()))
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown case fields {sorted(unknown)}")
        return cls(**data)


def _strategy_runs():
    """(label, strategy, fixup, options) for every strategy and fixup."""
    runs = [(s, s, None, ()) for s in ("data_parallel", "persistent", "work_stealing")]
    runs += [("work_stealing-global", "work_stealing", None, (("global_counter", True),))]
    runs += [("split_k", "split_k", None, (("split_k", 3),))]
    runs += [(f, "streamk", f, (("sk_hybrid", "one-wave"),)) for f in FIXUP_RUNS]
    runs += [("owner-waits-hybrid", "streamk", "owner-waits", ())]
    return runs


def _fit_split(options, k, block_k):
    """Cap a split_k option at the tile's K-iterations (K < BLOCK_K leaves one)."""
    iters = tiling.cdiv(k, block_k)
    return tuple(
        (name, min(value, iters)) if name == "split_k" else (name, value) for name, value in options
    )


def quick_set():
    """Small shapes for the interpreter: every strategy x (odd shapes, dtypes, layouts, bias),
    plus the atomic fixup (fp32 only: it adds with fp32 atomics)."""
    shapes = [
        (1, 1, 1),
        (17, 33, 5),
        (130, 70, 300),
        (1, 64, 40),
        (40, 1, 40),
        (64, 32, 40),
        (80, 32, 40),
    ]
    dtypes = ("fp32", "fp16", "bf16")
    cases = []
    for label, strategy, fixup, options in _strategy_runs():
        for i, (m, n, k) in enumerate(shapes):
            cases.append(
                Case(
                    f"{label}-{m}x{n}x{k}",
                    m,
                    n,
                    k,
                    strategy,
                    fixup,
                    dtype=dtypes[i % 3],
                    bias=i % 3 != 2,
                    transpose_a=i % 2 == 1,
                    transpose_b=i % 4 >= 2,
                    seed=i,
                    options=_fit_split(options, k, 16),
                )
            )
    cases += [
        Case(
            f"atomic-{m}x{n}x{k}",
            m,
            n,
            k,
            "streamk",
            "atomic",
            dtype="fp32",
            seed=i,
            options=(("sk_hybrid", "one-wave"),),
        )
        for i, (m, n, k) in enumerate([(17, 33, 5), (130, 70, 300)])
    ]
    return cases


def full_set(sm_count):
    """GPU cases: large shapes and wave edges for ``sm_count`` SMs and for 304 CUs / 8 XCDs."""
    blocks = {"block_m": 128, "block_n": 128, "block_k": 64, "group_m": 8, "cus": sm_count}
    # 4096^3, M = 1, N = 1, K < BLOCK_K, and one wave + 1 / two waves - 1 of 128x128 tiles.
    shapes = [
        (4096, 4096, 4096),
        (1, 4096, 4096),
        (4096, 1, 4096),
        (3072, 4224, 32),
        (128, 128 * (sm_count + 1), 2048),
        (128, 128 * (2 * sm_count - 1), 2048),
    ]
    cases = []
    for label, strategy, fixup, options in _strategy_runs():
        big = [(8192, 8192, 4096)] if label in ("owner-waits-hybrid", "work_stealing") else []
        for i, (m, n, k) in enumerate(shapes + big):
            cases.append(
                Case(
                    f"{label}-{m}x{n}x{k}",
                    m,
                    n,
                    k,
                    strategy,
                    fixup,
                    dtype=("bf16", "fp16", "fp32")[i % 3],
                    bias=i % 2 == 0,
                    transpose_a=i % 3 == 1,
                    transpose_b=i % 4 == 3,
                    seed=i,
                    options=_fit_split(
                        tuple(o for o in options if o[0] != "sk_hybrid"), k, blocks["block_k"]
                    ),
                    **blocks,
                )
            )
    # The atomic fixup (nondeterministic by design: no determinism check; fp32 output).
    cases.append(
        Case("atomic-4096x4096x4096", 4096, 4096, 4096, "streamk", "atomic", dtype="fp32", **blocks)
    )
    # 304 CUs in 8 XCDs, emulated by the grid: the XCD remap and per-XCD counters as on MI300X.
    mi300x = dict(blocks, cus=304, xcds=8, device="mi300x")
    for strategy, fixup, options in (
        ("persistent", None, ()),
        ("work_stealing", None, (("counters_per_xcd", 2),)),
        ("streamk", "last-arriver", ()),
    ):
        label = strategy if fixup is None else f"{strategy}-{fixup}"
        for tiles in (303, 305):
            cases.append(
                Case(
                    f"{label}-xcd8-{tiles}tiles",
                    128,
                    128 * tiles,
                    1024,
                    strategy,
                    fixup,
                    dtype="bf16",
                    seed=tiles,
                    options=options,
                    **mi300x,
                )
            )
    return cases


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
