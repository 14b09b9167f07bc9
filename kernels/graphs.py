"""CUDA-graph mode: capture one GEMM's launches once, replay them for a fixed-shape caller.

A replay re-runs exactly the captured launches with the captured arguments: the same tensors
(whatever they hold by then), the same workspace and the same flag epoch. That is safe for
every strategy except the fixups whose programs wait on flags (owner-waits and turnstile with
Stream-K tiles): they wait for this launch's epoch, and after the first replay every flag
already holds it, so a waiting program would not wait. Those are refused. Counters need no
zeroing between replays (each launch leaves them zeroed), and the atomic fixup's zeroing of
its output is captured with it.
"""

import dataclasses

import torch

from .launch import run


@dataclasses.dataclass
class CapturedRun:
    """A captured GEMM: :meth:`replay` recomputes ``output`` from the captured tensors."""

    config: object
    output: torch.Tensor
    graph: torch.cuda.CUDAGraph

    def replay(self):
        """Enqueue the captured launches on the current stream; returns ``output``."""
        self.graph.replay()
        return self.output


def capture(config, a, b, bias=None, out=None, deterministic=True):
    """Capture ``kernels.run(config, a, b, bias, out=out)`` in a CUDA graph.

    The launch is run once first (compiling the kernels and sizing the workspace of the
    capture's own stream), then captured. ValueError for a fixup that waits on flags, for
    CPU tensors, and for everything :func:`kernels.run` refuses.
    """
    if config.protocol is not None and config.protocol.waits and config.sk_tiles:
        raise ValueError(
            f"fixup={config.fixup!r} waits on flags that hold each launch's epoch, and a "
            "graph replays one epoch: capture last-arriver or another strategy"
        )
    if not (isinstance(a, torch.Tensor) and a.is_cuda):
        raise ValueError("CUDA graphs need CUDA tensors")
    output = out
    if output is None:
        output = torch.empty((config.m, config.n), dtype=a.dtype, device=a.device)
    stream = torch.cuda.Stream(device=a.device)
    stream.wait_stream(torch.cuda.current_stream(a.device))
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(stream):
        run(config, a, b, bias, out=output, deterministic=deterministic)
        with torch.cuda.graph(graph, stream=stream):
            run(config, a, b, bias, out=output, deterministic=deterministic)
    torch.cuda.current_stream(a.device).wait_stream(stream)
    return CapturedRun(config, output, graph)
