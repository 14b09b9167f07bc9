"""The graph-replay check: a call captured in a CUDA graph gives refsim's output on every replay.

A replay re-runs the captured launches with the captured arguments: the same tensors, whatever
they hold by then. So the check captures the kernel's ``capture(config, a, b, bias, out)`` once
and replays it :data:`REPLAYS` times, each time after copying new integer inputs into the
captured operands and refilling the output with NaN: a replay must compute the new inputs'
product (a capture that copied an operand, or froze a flag epoch or a counter, shows on the
second replay if not the first). CUDA only; elsewhere, and for a kernel without ``capture``
or a config it refuses to capture, the finding says it was not run.
"""

import numpy as np
import torch

from .checks import Finding, grouped_finding
from .diagnosis import SubstitutionDiagnoser, wrong_tiles
from .guards import OutputLayout
from .harness import cast_to, expected_output, to_numpy
from .inputs import as_tensors, integer_inputs
from .repeated import never_written, stale_operands

# The inputs' seed offsets: the capture's call, then one per replay.
CAPTURE_SEED = 301
REPLAYS = 3


def check_graph_replay(kut, case, config, device):
    """See the module docstring. The first wrong replay fails the check: a replay whose wrong
    elements all hold the NaN is ``tile never written``; any other difference is diagnosed tile
    by tile without relaunching (:class:`conformance.diagnosis.SubstitutionDiagnoser`), the
    capture's and earlier replays' operands as ``operand of an earlier call``."""
    if kut.capture is None:
        return _not_run("the kernel has no capture path")
    if torch.device(device).type != "cuda":
        return _not_run("CUDA graphs need a CUDA device")
    inputs = integer_inputs(case, CAPTURE_SEED)
    a, b, bias = as_tensors(case, *inputs, device)
    _, out = OutputLayout.of(config, case).allocate(a.dtype, device)
    try:
        replay = kut.capture(config, a, b, bias, out)
    except ValueError as exc:
        return _not_run(f"the kernel refuses to capture this config: {exc}")
    torch.cuda.synchronize(out.device)
    earlier = [("the captured call", inputs)]
    reasons = []
    for number in range(1, REPLAYS + 1):
        inputs = integer_inputs(case, CAPTURE_SEED + number)
        for tensor, values in zip((a, b, bias), as_tensors(case, *inputs, device)):
            if tensor is not None:
                tensor.copy_(values)
        out.fill_(float("nan"))
        output = replay()
        torch.cuda.synchronize(out.device)
        tensors = (a, b, bias)
        expected32, sim = expected_output(config, _Untraced(output), tensors)
        got = to_numpy(output)
        expected = cast_to(expected32, output.dtype)
        wrong = wrong_tiles(config, got, expected)
        if not wrong:
            reasons.append(f"replay {number} on new inputs: refsim's output")
            earlier.append((f"replay {number}", inputs))
            continue
        if all(np.isnan(got[w.region][w.wrong]).all() for w in wrong):
            groups, info = never_written(config, wrong, got, expected, sim)
        else:
            alternatives = stale_operands(inputs, earlier, output.dtype)
            groups, info = SubstitutionDiagnoser(
                None, case, config, got, expected, sim, device, tensors, output.dtype,
                alternatives,
            ).run()  # fmt: skip
        note = f" (replay {number} of a captured call, on new inputs copied into its operands)"
        return grouped_finding("graph replay", groups, info, note=note)
    return Finding("graph replay", True, reasons)


def graph_capture(run):
    """A :attr:`conformance.harness.KernelUnderTest.capture` for a kernel's ``run`` whose
    untraced launch can be captured as it is: one launch first (compiling it), then the
    capture, both on a side stream; the replay returns the captured call's output."""

    def capture(config, a, b, bias, out):
        current = torch.cuda.current_stream(a.device)
        stream = torch.cuda.Stream(device=a.device)
        stream.wait_stream(current)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.stream(stream):
            run(config, a, b, bias, out=out)
            with torch.cuda.graph(graph, stream=stream):
                captured = run(config, a, b, bias, out=out)
        current.wait_stream(stream)

        def replay():
            graph.replay()
            return captured.output

        return replay

    return capture


class _Untraced:
    """A replay's result as :func:`conformance.harness.expected_output` takes a run: no records."""

    records = None

    def __init__(self, output):
        self.output = output


def _not_run(why):
    return Finding("graph replay", True, [f"not run: {why}"], ran=False)
