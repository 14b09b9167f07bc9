"""Hardware profiles: the numbers the simulator's cost model reads, each with its public source.

Datasheet figures (compute units, clocks, dense peak matrix throughput, HBM bandwidth, L2) come
from the vendors' data sheets and white papers named next to them. Atomic latency, launch
overhead and residency are not published by the vendors; they are model estimates, marked as
such, in the range reported by public microbenchmark studies. Build a custom profile with
:func:`dataclasses.replace` on a preset or by constructing :class:`HardwareProfile` directly.
"""

import dataclasses
import math
from collections.abc import Mapping

DTYPES = ("fp16", "bf16", "fp32")


def _is_real(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class HardwareProfile:
    """What the cost model needs to know about one GPU.

    ``peak_tflops`` is dense (no sparsity) matrix throughput per dtype for the whole device;
    ``fp32`` means IEEE fp32 (no TF32), as the deterministic kernels compute it.
    """

    name: str
    vendor: str  # "amd" (workgroup i -> XCD i % xcds) or "nvidia" (any free SM)
    cus: int
    xcds: int
    clock_mhz: int
    peak_tflops: Mapping[str, float]
    hbm_gbps: float
    l2_mib_per_xcd: float
    atomic_latency_us: float  # issue to result, one atomic
    atomic_interval_us: float  # minimum spacing of atomics on one address (serialisation)
    launch_overhead_us: float
    resident_per_cu: int  # programs of the default 256x256x64 tile resident on one CU at once
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.vendor not in ("amd", "nvidia"):
            raise ValueError(f"vendor={self.vendor!r}: accepted values are 'amd', 'nvidia'")
        for field in ("cus", "xcds", "clock_mhz", "resident_per_cu"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{field}={value!r}: must be a positive integer")
        for field, minimum in (
            ("hbm_gbps", 0),
            ("l2_mib_per_xcd", 0),
            ("atomic_latency_us", 0),
            ("atomic_interval_us", 0),
            ("launch_overhead_us", 0),
        ):
            value = getattr(self, field)
            if not _is_real(value) or value < minimum or (field == "hbm_gbps" and value == 0):
                bound = "> 0" if field == "hbm_gbps" else ">= 0"
                raise ValueError(f"{field}={value!r}: must be a finite number {bound}")
        if self.xcds > self.cus or self.cus % self.xcds:
            raise ValueError(f"cus={self.cus} must be a multiple of xcds={self.xcds}")
        missing = [
            d for d in DTYPES if not (_is_real(self.peak_tflops.get(d)) and self.peak_tflops[d] > 0)
        ]
        if missing:
            raise ValueError(f"peak_tflops lacks a positive value for {', '.join(missing)}")

    def __hash__(self):
        return hash(
            (
                self.name,
                self.vendor,
                self.cus,
                self.xcds,
                self.clock_mhz,
                tuple(sorted(self.peak_tflops.items())),
                self.hbm_gbps,
            )
        )

    @property
    def cus_per_xcd(self):
        return self.cus // self.xcds

    @property
    def dispatch(self):
        """The workgroup dispatch rule, in words."""
        if self.vendor == "amd":
            return f"round-robin: workgroup i -> XCD i % {self.xcds}, then a free CU of that XCD"
        return "any free SM, lowest id first"


_ESTIMATES = (
    "Model estimates (not vendor-published): global-atomic round trip of a few hundred ns to "
    "~1 us and kernel launch overhead of a few us, in the range reported by microbenchmark "
    "studies such as Luo et al., 'Benchmarking and Dissecting the Nvidia Hopper GPU "
    "Architecture' (IPDPS 2024, arXiv:2402.13499) and Chips and Cheese's MI300X article "
    "(chipsandcheese.com, 'Testing AMD's Giant MI300X', 2024). Residency assumes one "
    "256x256x64 bf16 tile program per CU (its double-buffered A/B blocks fill the LDS/shared memory)."
)

_MI300X_SHEET = (
    "AMD Instinct MI300X data sheet, amd.com/content/dam/amd/en/documents/"
    "instinct-tech-docs/data-sheets/amd-instinct-mi300x-data-sheet.pdf"
)
_CDNA3 = (
    "AMD CDNA 3 architecture white paper, amd.com/content/dam/amd/en/documents/"
    "instinct-tech-docs/white-papers/amd-cdna-3-white-paper.pdf"
)
_MI325X_SHEET = (
    "AMD Instinct MI325X data sheet, amd.com/content/dam/amd/en/documents/"
    "instinct-tech-docs/product-briefs/instinct-mi325x-datasheet.pdf"
)
_MI355X_PAGE = (
    "AMD Instinct MI355X product page, amd.com/en/products/accelerators/instinct/mi350/mi355x.html"
)
_CDNA4 = (
    "AMD CDNA 4 architecture white paper, amd.com/content/dam/amd/en/documents/"
    "instinct-tech-docs/white-papers/amd-cdna-4-architecture-whitepaper.pdf"
)
_H100_SHEET = (
    "NVIDIA H100 Tensor Core GPU data sheet (SXM5 column), nvidia.com/en-us/data-center/h100/"
)
_HOPPER_WP = (
    "NVIDIA H100 Tensor Core GPU Architecture white paper (GH100, 132 SMs in the SXM5 "
    "product), resources.nvidia.com/en-us-tensor-core/gtc22-whitepaper-hopper"
)
_H200_SHEET = (
    "NVIDIA H200 Tensor Core GPU data sheet (SXM column), nvidia.com/en-us/data-center/h200/"
)

MI300X = HardwareProfile(
    name="mi300x",
    vendor="amd",
    cus=304,  # 8 XCDs x 38 active CUs [_MI300X_SHEET, _CDNA3]
    xcds=8,  # [_CDNA3]
    clock_mhz=2100,  # peak engine clock [_MI300X_SHEET]
    peak_tflops={"fp16": 1307.4, "bf16": 1307.4, "fp32": 163.4},  # dense matrix [_MI300X_SHEET]
    hbm_gbps=5300.0,  # 5.3 TB/s HBM3 [_MI300X_SHEET]
    l2_mib_per_xcd=4.0,  # 4 MB L2 per XCD [_CDNA3]
    atomic_latency_us=1.0,  # estimate [_ESTIMATES]
    atomic_interval_us=0.02,  # estimate [_ESTIMATES]
    launch_overhead_us=5.0,  # estimate [_ESTIMATES]
    resident_per_cu=1,  # assumption [_ESTIMATES]
    sources={"datasheet": _MI300X_SHEET, "architecture": _CDNA3, "estimates": _ESTIMATES},
)

MI325X = HardwareProfile(
    name="mi325x",
    vendor="amd",
    cus=304,  # [_MI325X_SHEET]
    xcds=8,  # same CDNA 3 XCDs as MI300X [_MI325X_SHEET, _CDNA3]
    clock_mhz=2100,  # [_MI325X_SHEET]
    peak_tflops={"fp16": 1307.4, "bf16": 1307.4, "fp32": 163.4},  # dense matrix [_MI325X_SHEET]
    hbm_gbps=6000.0,  # 6 TB/s HBM3E [_MI325X_SHEET]
    l2_mib_per_xcd=4.0,  # [_CDNA3]
    atomic_latency_us=1.0,  # estimate [_ESTIMATES]
    atomic_interval_us=0.02,  # estimate [_ESTIMATES]
    launch_overhead_us=5.0,  # estimate [_ESTIMATES]
    resident_per_cu=1,  # assumption [_ESTIMATES]
    sources={"datasheet": _MI325X_SHEET, "architecture": _CDNA3, "estimates": _ESTIMATES},
)

MI355X = HardwareProfile(
    name="mi355x",
    vendor="amd",
    cus=256,  # 8 XCDs x 32 active CUs [_MI355X_PAGE, _CDNA4]
    xcds=8,  # [_CDNA4]
    clock_mhz=2400,  # peak engine clock [_MI355X_PAGE]
    peak_tflops={"fp16": 2516.6, "bf16": 2516.6, "fp32": 157.3},  # dense matrix [_MI355X_PAGE]
    hbm_gbps=8000.0,  # 8 TB/s HBM3E [_MI355X_PAGE]
    l2_mib_per_xcd=4.0,  # [_CDNA4]
    atomic_latency_us=1.0,  # estimate [_ESTIMATES]
    atomic_interval_us=0.02,  # estimate [_ESTIMATES]
    launch_overhead_us=5.0,  # estimate [_ESTIMATES]
    resident_per_cu=1,  # assumption [_ESTIMATES]
    sources={"datasheet": _MI355X_PAGE, "architecture": _CDNA4, "estimates": _ESTIMATES},
)

H100_SXM = HardwareProfile(
    name="h100",
    vendor="nvidia",
    cus=132,  # SMs of the SXM5 product [_HOPPER_WP]
    xcds=1,  # one die, one L2 address space [_HOPPER_WP]
    clock_mhz=1980,  # max boost clock [_HOPPER_WP]
    peak_tflops={
        "fp16": 989.4,
        "bf16": 989.4,
        "fp32": 66.9,
    },  # dense; fp32 = non-tensor [_H100_SHEET]
    hbm_gbps=3350.0,  # 3.35 TB/s HBM3 [_H100_SHEET]
    l2_mib_per_xcd=50.0,  # 50 MB L2 [_HOPPER_WP]
    atomic_latency_us=0.5,  # estimate [_ESTIMATES]
    atomic_interval_us=0.01,  # estimate [_ESTIMATES]
    launch_overhead_us=3.0,  # estimate [_ESTIMATES]
    resident_per_cu=1,  # assumption [_ESTIMATES]
    sources={"datasheet": _H100_SHEET, "architecture": _HOPPER_WP, "estimates": _ESTIMATES},
)

H200 = HardwareProfile(
    name="h200",
    vendor="nvidia",
    cus=132,  # same GH100 configuration as H100 SXM [_H200_SHEET]
    xcds=1,  # [_HOPPER_WP]
    clock_mhz=1980,  # [_HOPPER_WP]
    peak_tflops={"fp16": 989.4, "bf16": 989.4, "fp32": 66.9},  # dense [_H200_SHEET]
    hbm_gbps=4800.0,  # 4.8 TB/s HBM3E [_H200_SHEET]
    l2_mib_per_xcd=50.0,  # [_HOPPER_WP]
    atomic_latency_us=0.5,  # estimate [_ESTIMATES]
    atomic_interval_us=0.01,  # estimate [_ESTIMATES]
    launch_overhead_us=3.0,  # estimate [_ESTIMATES]
    resident_per_cu=1,  # assumption [_ESTIMATES]
    sources={"datasheet": _H200_SHEET, "architecture": _HOPPER_WP, "estimates": _ESTIMATES},
)

PROFILES = {p.name: p for p in (MI300X, MI325X, MI355X, H100_SXM, H200)}
DEFAULT_DEVICE = "mi300x"


def get_profile(device):
    """A profile by name (case-insensitive), or the profile itself if one is passed."""
    if isinstance(device, HardwareProfile):
        return device
    key = str(device).lower().replace("-", "").replace("_", "")
    if key == "h100sxm":
        key = "h100"
    if key not in PROFILES:
        raise ValueError(
            f"device={device!r}: accepted values are {', '.join(PROFILES)} or a HardwareProfile"
        )
    return PROFILES[key]
