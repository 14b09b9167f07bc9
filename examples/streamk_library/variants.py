"""The library's kernel with one injected bug on, one factory per bug, for ``--kernel``::

    python -m conformance --device cpu --cases examples/streamk_library/cases.json \
        --kernel examples.streamk_library.variants:wrapped_edge

Not part of what a user writes to check a kernel: the bugs exist to show what the suite names.
"""

import dataclasses

from .adapter import library


def wrapped_edge():
    """``WRAP_SK_ROWS``: the Stream-K store takes its rows modulo M before masking them."""
    return dataclasses.replace(library(WRAP_SK_ROWS=True), name="sk-wrapped-edge")


def bias_after_cast():
    """``BIAS_AFTER_CAST``: the whole-tile store adds the bias after the cast to fp16/bf16."""
    return dataclasses.replace(library(BIAS_AFTER_CAST=True), name="sk-bias-after-cast")


def lost_tiles_and_bias():
    """``FLOOR_SHARE_AND_BIAS_INIT``: each XCD's share of the stolen tiles rounded down, and a
    stolen tile's accumulator started from the bias, which its store adds again."""
    kut = library(FLOOR_SHARE_AND_BIAS_INIT=True)
    return dataclasses.replace(kut, name="sk-lost-tiles-and-bias")
