"""Which Triton backend the kernels get: the interpreter for ``cpu``, compiled for ``cuda``.

Triton reads ``TRITON_INTERPRET`` when ``triton.jit`` decorates a kernel, that is when a kernel
module is imported. So the choice is made here, by a module that imports nothing of the
project, before anything loads ``kernels``: by the command line in its own process and by
every worker process it starts.
"""

import os


def select_backend(device):
    """Set ``TRITON_INTERPRET`` for ``device`` ("cpu": interpret; "cuda": compile)."""
    if device == "cpu":
        os.environ["TRITON_INTERPRET"] = "1"
    else:
        os.environ.pop("TRITON_INTERPRET", None)
