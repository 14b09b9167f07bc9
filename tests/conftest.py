"""Test-wide switches: GPU tests skip cleanly where no GPU is present, and without a GPU the
kernels run in Triton's interpreter (the flag must be set before the kernels are decorated)."""

import functools
import os

import pytest


@functools.cache
def gpu_available():
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


if not gpu_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if gpu_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA or ROCm GPU (torch.cuda.is_available() is false)")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)
