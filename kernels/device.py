"""Device -> configuration: which refsim profile and unit count a torch device gets.

Probed once per CUDA device (``torch.cuda.get_device_properties``); the CPU, where Triton's
interpreter runs the kernels, gets a small H100-like grid.
"""

import dataclasses
import functools

import torch

from refsim.config import GemmConfig
from refsim.hardware import PROFILES

from .dtypes import DTYPE_NAMES, SUPPORTED
from .workspace import cuda_index


def default_config(a, b, **overrides):
    """A GemmConfig for these tensors: device profile by GPU name, SM count from the device.

    NVIDIA GPUs take the H200 or H100 profile (by name), ROCm GPUs the MI300X profile; a device
    with more units than its preset gets a copy of the preset with its own count. On the CPU
    (Triton's interpreter) the default is a small 4-program H100-like grid.
    """
    if a.dtype not in DTYPE_NAMES:
        raise TypeError(f"a has dtype {a.dtype}; supported: {SUPPORTED}")
    return device_config(
        a.shape[0], b.shape[1], a.shape[1], DTYPE_NAMES[a.dtype], a.device, **overrides
    )


def device_config(m, n, k, dtype, device, **overrides):
    """A GemmConfig for an (m, n, k) GEMM in ``dtype`` ("fp16", ...) on a torch ``device``."""
    return GemmConfig(m, n, k, **dict(device_options(device), dtype=dtype, **overrides))


def device_options(device):
    """The GemmConfig options a torch ``device`` gives: its refsim profile, units and XCDs (a
    CUDA device's probed once), or on the CPU a small 4-program H100-like grid with 32x32x32
    blocks."""
    if device.type != "cuda":
        return {"device": "h100", "cus": 4, "xcds": 1, "block_m": 32, "block_n": 32, "block_k": 32}
    preset, units = device_profile(cuda_index(device))
    options = {"device": preset, "cus": units}
    if preset.vendor == "nvidia":
        options["xcds"] = 1
    return options


@functools.cache
def device_profile(index):
    """``(profile, units)`` of CUDA device ``index``, probed once."""
    props = torch.cuda.get_device_properties(index)
    preset = PROFILES[
        "mi300x"
        if getattr(torch.version, "hip", None)
        else ("h200" if "H200" in props.name.upper() else "h100")
    ]
    if props.multi_processor_count > preset.cus:
        # A bigger part than the preset: its numbers, with this device's unit count.
        preset = dataclasses.replace(
            preset, name=props.name, cus=props.multi_processor_count, xcds=1
        )
    return preset, props.multi_processor_count
