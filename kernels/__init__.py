"""Triton GEMM kernels whose every index comes from :mod:`refsim.tiling` (in progress)."""
