"""refsim's interpreter block products: random inputs give the interpreter's output bit for bit.

The default float64 block products match the kernels bit for bit only on exact inputs; the
``"interpreter"`` products make the same numpy call as Triton's interpreter, so every strategy,
fixup and dtype must agree on random data too -- and the float64 model must not (else this test
proves nothing).
"""

import numpy as np
import pytest
import torch
from kernel_checks import INTERPRETER_TIER_ONLY

import kernels
import refsim
from kernels.dtypes import TORCH_DTYPES
from refsim import numerics

pytestmark = [pytest.mark.interpreter, INTERPRETER_TIER_ONLY]

SCHEDULES = [
    ("streamk", {"fixup": "last-arriver"}),
    ("streamk", {"fixup": "turnstile", "sk_hybrid": "one-wave"}),
    ("split_k", {"split_k": 3}),
    ("persistent", {}),
]


@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize(("strategy", "options"), SCHEDULES, ids=lambda s: str(s))
def test_interpreter_products_reproduce_the_kernels_on_random_inputs(dtype, strategy, options):
    config = refsim.GemmConfig(
        40, 70, 90, strategy=strategy, block_m=16, block_n=32, block_k=16, cus=4, device="h100", dtype=dtype,
        **options,
    )  # fmt: skip
    rng = np.random.default_rng(7)
    tensors = [
        torch.from_numpy(x).to(TORCH_DTYPES[dtype])
        for x in (
            rng.standard_normal((40, 90)),
            rng.standard_normal((90, 70)),
            rng.standard_normal(70),
        )
    ]
    out = torch.empty((40, 70), dtype=torch.float32)
    kernels.run(config, *tensors, out=out)
    sim = refsim.simulate(config)
    a, b, bias = (t.double().numpy() for t in tensors)
    modelled, _ = numerics.compute(
        config, sim.records, sim.fixups, a, b, bias, products="interpreter"
    )
    assert np.array_equal(out.numpy(), modelled)
    float64_model, _ = numerics.compute(config, sim.records, sim.fixups, a, b, bias)
    assert not np.array_equal(out.numpy(), float64_model)


def test_an_unknown_block_product_model_is_refused():
    config = refsim.GemmConfig(16, 16, 16, block_m=16, block_n=16, block_k=16, device="h100")
    a, b = np.ones((16, 16)), np.ones((16, 16))
    with pytest.raises(ValueError, match="products='fp8'"):
        numerics.compute(config, [], [], a, b, products="fp8")
