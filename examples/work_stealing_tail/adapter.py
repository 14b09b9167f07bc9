"""kernel.py for the conformance suite: one factory per counter map, for ``--kernel``::

    python -m conformance --device cpu --cases examples/work_stealing_tail/cases.json \
        --kernel examples.work_stealing_tail.adapter:buggy
"""

import functools

from conformance.adapter import adapt

from . import kernel
from .describe import schedule

# The kernel's own parameters: 2 tile counters per XCD and a Stream-K tail of 1 tile.
PARAMETERS = dict(counters_per_xcd=2, sk_tiles=1)


def buggy():
    """The kernel as the issue found it: the counter slot from the XCD-remapped program id."""
    return adapt(
        "ws-buggy",
        functools.partial(kernel.launch, slot_from_remapped_id=True),
        follows=schedule("buggy") | PARAMETERS,
        block_dots=True,  # one tl.dot per K-iteration: random inputs give refsim's bits
    )


def fixed():
    """The kernel fixed: the counter slot from the hardware program id, like its XCD."""
    return adapt(
        "ws-fixed",
        kernel.launch,
        follows=schedule("fixed") | PARAMETERS,
        block_dots=True,
    )
