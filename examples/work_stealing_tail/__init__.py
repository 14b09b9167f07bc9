"""A work-stealing GEMM with a Stream-K tail whose counter map loses tiles, and its fix.

``kernel.py`` is the kernel (as someone else might have written it), ``describe.py`` describes
its schedule to refsim and prints refsim's verdict, ``adapter.py`` hands it to the conformance
suite, ``cases.json`` holds the cases that show the bug in Triton's interpreter.
"""
