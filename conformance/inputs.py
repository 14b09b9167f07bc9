"""Inputs for conformance: exact integers, random values, and decodable probes.

Probe inputs make every output element say where it came from (all values exact in fp32):

* ``a[m, k] = 1 + m % 3`` -- a row code;
* ``b[k, n] = 1`` where ``k`` lies in K-iteration ``n % I`` (``I`` iterations), else 0 -- so
  column ``n`` sums exactly one K-iteration;
* ``bias[n] = 4096 * (1 + n % 3)`` -- a column code far above any product.

So ``out[m, n] = 4096 * q + p`` with ``q`` the bias sum in units of 4096 and
``p = (1 + m % 3) * |iteration n % I| * multiplicity``: a missing K-segment gives
multiplicity 0, a duplicated one 2, a missing bias ``q = 0``, a bias added twice
``q = 2 (1 + n % 3)``, a bias taken by row ``q = 1 + m % 3``.
"""

import numpy as np
import torch

from kernels.dtypes import TORCH_DTYPES

BIAS_UNIT = 4096.0


def _layout(array, transposed, dtype, device):
    tensor = torch.from_numpy(np.ascontiguousarray(array.T if transposed else array))
    tensor = tensor.to(TORCH_DTYPES[dtype]).to(device)
    return tensor.t() if transposed else tensor


def as_tensors(case, a, b, bias, device):
    """numpy inputs -> torch tensors in the case's dtype and layouts (transposed views)."""
    return (
        _layout(a, case.transpose_a, case.dtype, device),
        _layout(b, case.transpose_b, case.dtype, device),
        None if bias is None else _layout(bias, False, case.dtype, device),
    )


def integer_inputs(case, seed_offset=0):
    """Integers in -4..4 (never all zero): every fp32 sum is exact."""
    rng = np.random.default_rng(case.seed + seed_offset)
    a = rng.integers(-4, 5, (case.m, case.k)).astype(np.float64)
    b = rng.integers(-4, 5, (case.k, case.n)).astype(np.float64)
    bias = rng.integers(-4, 5, case.n).astype(np.float64) if case.bias else None
    return a, b, bias


def random_inputs(case, seed_offset=0):
    rng = np.random.default_rng(case.seed + 1000 + seed_offset)
    a = rng.standard_normal((case.m, case.k))
    b = rng.standard_normal((case.k, case.n))
    bias = rng.standard_normal(case.n) if case.bias else None
    return a, b, bias


def probe_inputs(config):
    """Decodable inputs (module docstring); always with a bias."""
    iters = config.iters_per_tile
    a = np.repeat((1 + np.arange(config.m) % 3)[:, None], config.k, axis=1).astype(np.float64)
    iteration_of_k = np.arange(config.k) // config.block_k
    b = (iteration_of_k[:, None] == (np.arange(config.n) % iters)[None, :]).astype(np.float64)
    bias = BIAS_UNIT * (1 + np.arange(config.n) % 3)
    return a, b, bias


def probe_expected(config):
    """What a correct kernel writes for the probe inputs."""
    iters = config.iters_per_tile
    counts = np.minimum(config.block_k, config.k - np.arange(iters) * config.block_k)
    rows = (1 + np.arange(config.m) % 3)[:, None]
    cols = np.arange(config.n)
    return rows * counts[cols % iters][None, :] + BIAS_UNIT * (1 + cols % 3)[None, :]
