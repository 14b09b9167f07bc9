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


@pytest.fixture(autouse=True)
def _keep_the_backend_choice():
    """Restore TRITON_INTERPRET after each test: the conformance CLI, driven in-process, sets it
    for its device, and a kernel function jitted later in this process (the lazily built
    contract) would otherwise become an interpreted one beside compiled kernels."""
    saved = os.environ.get("TRITON_INTERPRET")
    yield
    if saved is None:
        os.environ.pop("TRITON_INTERPRET", None)
    else:
        os.environ["TRITON_INTERPRET"] = saved
