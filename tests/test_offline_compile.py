"""The compile tier: every kernel variant compiles offline for MI300X (gfx942) and Hopper
(sm_90) with the installed Triton, and the code holds the backend switch's hardware reads.

No GPU is needed; the compiler runs in a subprocess without TRITON_INTERPRET, since the
interpreter (which the rest of the CPU suite uses) replaces the jit functions.
"""

import os
import subprocess
import sys

import pytest

from kernels.offline import TARGETS, code_problems, variants

pytestmark = pytest.mark.compile


@pytest.mark.slow
def test_every_variant_compiles_for_every_target():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, "-m", "kernels.offline"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    lines = done.stdout.strip().splitlines()
    expected = len(variants()) * len(TARGETS)
    assert done.returncode == 0, "\n".join(line for line in lines if not line.startswith("ok"))
    assert lines[-1] == f"{expected} passed, 0 failed"
    assert {line.split()[1] for line in lines[:-1]} == set(TARGETS)


def test_variants_cover_every_strategy_fixup_trace_and_dtype():
    from kernels.dtypes import TORCH_DTYPES
    from refsim.config import FIXUPS, STRATEGIES

    names = {v.name for v in variants()}
    assert len(names) == (len(STRATEGIES) - 1 + len(FIXUPS)) * 2 * len(TORCH_DTYPES)
    assert {v.fixup for v in variants() if v.strategy == "streamk"} == set(FIXUPS)


AMD_READS = (
    "\ts_getreg_b32 s5, hwreg(HW_REG_XCC_ID, 0, 4)\n"
    "\ts_getreg_b32 s6, hwreg(HW_REG_HW_ID, 8, 4)\n"
    "\ts_memrealtime s[2:3]\n"
)


@pytest.mark.parametrize(
    ("asm", "backend", "traced", "expected"),
    [
        ({"amdgcn": AMD_READS, "hsaco": b"elf"}, "hip", True, []),
        ({"amdgcn": "\ts_endpgm\n", "hsaco": b"elf"}, "hip", False, []),
        (
            {"ptx": "mov.u32 %r1, %smid;\nmov.u64 %rd1, %globaltimer;", "cubin": b"elf"},
            "cuda",
            True,
            [],
        ),
        (
            {"amdgcn": AMD_READS.replace("XCC_ID", "XNACK_MASK"), "hsaco": b"elf"},
            "hip",
            True,
            ["XCC id read missing"],
        ),
        (
            {"amdgcn": AMD_READS, "hsaco": b"elf"},
            "hip",
            False,
            ["XCC id read present", "CU id read present", "realtime counter read present"],
        ),
        ({"amdgcn": AMD_READS, "hsaco": b""}, "hip", True, ["no hsaco produced"]),
        (
            {"ptx": "mov.u32 %r1, %smid;", "cubin": b"elf"},
            "cuda",
            True,
            ["global timer read missing"],
        ),
    ],
    ids=[
        "amd-traced",
        "amd-untraced",
        "nvidia-traced",
        "amd-no-xcc",
        "amd-reads-untraced",
        "amd-no-code-object",
        "nvidia-no-timer",
    ],
)
def test_code_check_names_what_is_wrong(asm, backend, traced, expected):
    problems = code_problems(asm, backend, traced)
    assert len(problems) == len(expected)
    for problem, start in zip(problems, expected):
        assert problem.startswith(start), problem
