"""kernels.matmul, addmm, bmm and nn.Linear as torch users check a custom operator: on PyTorch's
own OpInfo samples, under torch.func's transforms (vmap, grad, vjp, jvp, jacrev, jacfwd,
hessian), forward-mode AD, gradcheck and gradgradcheck in float64 (which torch computes for
them: BY_TORCH), and torch.jit.trace refused in one clear line. Interpreter tier: small shapes."""

import os

import pytest
import torch
from torch.autograd import forward_ad

import kernels
from kernels.ops import BY_TORCH

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available(),
    reason="runs the kernels: the interpreter or a GPU",
)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOLERANCE = {"atol": 1e-4, "rtol": 1e-4}  # float32 inputs of unit size, K of at most 16


def _op_db():
    common = pytest.importorskip("torch.testing._internal.common_methods_invocations")
    return common.op_db


def _linear(x, weight, bias=None):
    """``torch.nn.functional.linear`` as a kernels.nn.Linear with these parameters."""
    layer = kernels.nn.Linear(
        weight.shape[1], weight.shape[0], bias=bias is not None, device="meta", dtype=x.dtype
    )
    parameters = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
    return torch.func.functional_call(layer, parameters, (x,))


OURS = {
    "matmul": kernels.matmul,
    "mm": kernels.matmul,
    "bmm": kernels.bmm,
    "addmm": kernels.addmm,
    "nn.functional.linear": _linear,
}


def _samples(dtype, requires_grad=False):
    """``(id, ours, theirs, sample)`` for every OpInfo sample of the operators in OURS."""
    found = []
    for op in _op_db():
        if op.name not in OURS or op.variant_test_name not in ("", "decomposed"):
            continue
        for index, sample in enumerate(op.sample_inputs(DEVICE, dtype, requires_grad)):
            name = f"{op.name}{'-' + op.variant_test_name if op.variant_test_name else ''}-{index}"
            found.append((name, OURS[op.name], op.op, sample))
    return found


def test_every_opinfo_sample_gives_torchs_result():
    samples = _samples(torch.float32)
    assert len(samples) >= 40
    for name, ours, theirs, sample in samples:
        args = (sample.input, *sample.args)
        got = ours(*args, **sample.kwargs)
        expected = theirs(*args, **sample.kwargs)
        torch.testing.assert_close(got, expected, **TOLERANCE, msg=name)


def test_gradcheck_and_gradgradcheck_on_the_opinfo_samples_in_float64():
    assert torch.float64 in BY_TORCH
    for name, ours, _, sample in _samples(torch.float64, requires_grad=True):
        args = (sample.input, *sample.args)
        if not any(isinstance(t, torch.Tensor) and t.numel() for t in args):
            continue
        call = lambda *tensors: ours(*tensors, **sample.kwargs)  # noqa: B023
        # fast mode: a random projection of the Jacobian, as torch's own OpInfo tests use it
        assert torch.autograd.gradcheck(call, args, check_forward_ad=True, fast_mode=True), name
        assert torch.autograd.gradgradcheck(call, args, fast_mode=True), name


A = torch.randn(6, 5, device=DEVICE)
B = torch.randn(5, 4, device=DEVICE)
BIAS = torch.randn(4, device=DEVICE)
A3 = torch.randn(3, 6, 5, device=DEVICE)  # three of A, batched along dimension 0


def _ours(a, b):
    return kernels.addmm(BIAS, a, b)


def _theirs(a, b):
    return torch.addmm(BIAS, a, b)


@pytest.mark.parametrize(
    "transform",
    [
        lambda f: torch.func.grad(lambda a, b: f(a, b).pow(2).sum(), argnums=(0, 1))(A, B),
        lambda f: torch.func.vjp(f, A, B)[1](torch.ones(6, 4, device=DEVICE)),
        lambda f: torch.func.jvp(f, (A, B), (torch.ones_like(A), torch.ones_like(B))),
        lambda f: torch.func.jacrev(f, argnums=(0, 1))(A, B),
        lambda f: torch.func.jacfwd(f, argnums=(0, 1))(A, B),
        lambda f: torch.func.hessian(lambda a: f(a, B).pow(2).sum())(A),
        lambda f: torch.func.vmap(f)(A3, B.expand(3, 5, 4)),
        lambda f: torch.func.vmap(f, in_dims=(1, None))(A3.transpose(0, 1), B),
        lambda f: torch.func.vmap(torch.func.grad(lambda a: f(a, B).sum()))(A.expand(2, 6, 5)),
    ],
    ids=["grad", "vjp", "jvp", "jacrev", "jacfwd", "hessian", "vmap", "vmap-in_dims", "vmap-grad"],
)
def test_torch_func_transforms_give_torchs_result(transform):
    torch.testing.assert_close(transform(_ours), transform(_theirs), **TOLERANCE)


def test_vmap_of_matmul_bmm_and_linear():
    x, y = torch.randn(3, 2, 6, 5, device=DEVICE), torch.randn(3, 2, 5, 4, device=DEVICE)
    torch.testing.assert_close(torch.func.vmap(kernels.bmm)(x, y), x @ y, **TOLERANCE)
    torch.testing.assert_close(torch.func.vmap(kernels.matmul)(x, y), x @ y, **TOLERANCE)
    layer = kernels.nn.Linear(5, 4, device=DEVICE)
    reference = torch.nn.Linear(5, 4, device=DEVICE)
    reference.load_state_dict(layer.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(torch.func.vmap(layer)(x), reference(x), **TOLERANCE)


def test_forward_mode_ad_carries_the_tangent():
    """The bilinear rule: d(a @ b + bias) = da @ b + a @ db + dbias (before this, the tangent
    came back None without an error)."""
    tangents = [torch.randn_like(t) for t in (A, B, BIAS)]
    with forward_ad.dual_level():
        duals = [forward_ad.make_dual(t, d) for t, d in zip((A, B, BIAS), tangents)]
        out = kernels.addmm(duals[2], duals[0], duals[1])
        tangent = forward_ad.unpack_dual(out).tangent
    da, db, dbias = tangents
    torch.testing.assert_close(tangent, da @ B + A @ db + dbias, **TOLERANCE)


def test_jit_trace_is_refused_in_one_line():
    with pytest.raises(RuntimeError, match=r"^matmul\(\): torch.jit.trace cannot record it"):
        torch.jit.trace(lambda a: kernels.matmul(a, B), (A,))


def test_float64_is_computed_by_torch():
    a, b = A.double(), B.double()
    torch.testing.assert_close(kernels.matmul(a, b), a @ b)
    torch.testing.assert_close(kernels.bmm(a[None], b[None]), (a @ b)[None])
