"""kernel.py for the conformance suite: ``--kernel examples.streamk_library.adapter:library``."""

import torch

from conformance.adapter import adapt, bind

from . import kernel


def chiplet_chunked(hw_pid, num_programs, xcds):
    """The library's chunked XCD remap, at its chunk size."""
    return kernel.chiplet_transform_chunked.fn(hw_pid, num_programs, xcds, kernel.CHUNK_SIZE)


def xcd_interleave(counter, ticket, config):
    """The tile a ticket of the global counter names: the library's XCD interleave."""
    return kernel.chiplet_transform.fn(ticket, config.dp_tiles, config.xcds)


def schedule(case):
    """The GemmConfig options the library's host code fixes for ``case``."""
    config = case.config()
    sk_tiles = kernel.streamk_tiles(config.total_tiles, config.grid)
    ticket_tile = xcd_interleave if config.global_counter else "in-order"
    return dict(strategy="work_stealing", counters_per_xcd=1, ws_counter_ranges="per-xcd",
                xcd_remap=chiplet_chunked, ws_ticket_tile=ticket_tile,
                sk_tiles=sk_tiles, fixup="owner-waits" if sk_tiles else None)  # fmt: skip


SCRATCH = dict(  # the launch's own buffers: (config, device) -> tensor
    P=lambda c, device: torch.empty(c.grid, c.block_m, c.block_n, device=device),
    locks=lambda c, device: torch.zeros(c.grid, dtype=torch.int32, device=device),
    tile_counter=lambda c, device: torch.zeros(c.xcds, dtype=torch.int32, device=device),
)


def library(**bugs):
    """The library's kernel, with the injected bugs named in ``bugs`` (its constexprs) on."""
    launch = bind(kernel.streamk_gemm, buffers=SCRATCH, CHUNK_SIZE=kernel.CHUNK_SIZE, **bugs)
    return adapt("streamk-library", launch, follows=schedule, block_dots=True)
