"""A Stream-K + work-stealing GEMM library kernel with three injected bugs, described in refsim
through schedule hooks and checked by the conformance suite.

``kernel.py`` is the kernel with its own host API (as a third-party library has it),
``adapter.py`` describes its schedule and hands it to the suite (everything the user writes, with
the kernel's lines marked ``# suite shim``), ``describe.py`` prints refsim's verdict on the
schedule, ``cases.json`` holds the interpreter-sized cases.
"""
