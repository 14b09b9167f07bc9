"""The tiling contract as ``triton.jit`` functions, built on first use.

Kernels call ``contract.grouped_tile(...)`` and so on: Triton resolves an attribute of a module
global when it compiles (or interprets) the kernel, and this module builds
:func:`refsim.tiling.triton_namespace` then, once, instead of when it is imported. So importing
the kernels does no work, and ``triton.jit`` sees ``TRITON_INTERPRET`` as it is at first launch.
"""

import functools

from refsim import tiling


@functools.cache
def _namespace():
    return tiling.triton_namespace()


def __getattr__(name):
    """A jitted contract function, building the namespace on first access."""
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        return getattr(_namespace(), name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
