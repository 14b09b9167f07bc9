"""Adapters: the reference kernels, a mutant package, or your own kernel as a KernelUnderTest.

To check your own kernel, wrap a callable with :class:`conformance.harness.KernelUnderTest`::

    from conformance import KernelUnderTest, check_case, Case

    def my_run(config, a, b, bias=None, out=None, trace=False):
        ...                       # compute a @ b + bias into out, following config's tiling
        return result             # .output; with trace=True also .records (refsim WorkRecords)

    result = check_case(KernelUnderTest("mine", my_run), Case("demo", 64, 64, 80), "cpu")
    print(result.passed, result.cause, [f.reasons for f in result.findings])

Without records the order checks are skipped; without ``partial_slot`` the partial check is.
"""

import importlib

from .harness import POISON, KernelUnderTest


def for_package(module, name):
    """A KernelUnderTest over a package shaped like ``kernels`` (run, partial_slot, workspace)."""
    workspace = importlib.import_module(f"{module.__name__}.workspace")

    def poison(device):
        workspace.workspace_for(device).fill("partials", POISON)

    def run(config, a, b, bias=None, out=None, trace=False):
        atomic = config.strategy == "streamk" and config.fixup == "atomic"
        return module.run(config, a, b, bias, out=out, trace=trace, deterministic=not atomic)

    return KernelUnderTest(name, run, module.partial_slot, poison=poison, block_dots=True)


def reference():
    """The project's own kernels."""
    import kernels

    return for_package(kernels, "kernels")
