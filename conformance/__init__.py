"""The conformance suite joining :mod:`refsim` and :mod:`kernels` (in progress)."""
