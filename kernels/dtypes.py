"""The element types the kernels take, named once: refsim's dtype names and torch's dtypes.

A leaf module (torch only), so conformance, tests and benchmarks can name dtypes without
loading a kernel.
"""

import torch

TORCH_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
DTYPE_NAMES = {dtype: name for name, dtype in TORCH_DTYPES.items()}
SUPPORTED = ", ".join(str(dtype).removeprefix("torch.") for dtype in DTYPE_NAMES)


def dtype_name(dtype):
    """refsim's name ("fp16", "bf16", "fp32") of a torch dtype; TypeError for any other."""
    try:
        return DTYPE_NAMES[dtype]
    except KeyError:
        raise TypeError(f"dtype {dtype} is not supported; supported: {SUPPORTED}") from None
