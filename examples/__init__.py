"""Worked examples: kernels written outside this project, described in refsim and checked by the
conformance suite (see docs/bring-your-own-kernel.md). A package, so that
``python -m conformance --kernel examples.<example>.adapter:<factory>`` finds them from the
repository root."""
