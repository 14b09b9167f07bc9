"""The torch front end: ``matmul``, ``addmm``, ``bmm`` as PyTorch operators with autograd.

Two operators carry the work, registered with ``torch.library.custom_op`` (so that
``torch.compile`` sees one opaque node each, with a fake implementation for shapes):

* ``refsim::mm(a, b, bias, strategy, deterministic, options)``: ``a @ b (+ bias)`` for 2-D
  ``a``, ``b`` and an optional 1-D ``bias``; ``refsim::mm_out`` writes into ``out``.
* ``refsim::bmm(a, b, strategy, deterministic, options)``: one product per batch entry;
  ``refsim::bmm_out`` writes into ``out``.

The front end carries configuration overrides as the frozen tuple of
:func:`kernels.auto.freeze_overrides`, the key of the configuration cache. Operator arguments
must be plain types, so ``options`` is that tuple's ``repr``: :func:`_options` writes it on the
way into an operator and :func:`_overrides` reads it back inside, nowhere else.

When neither autograd nor ``torch.compile`` is involved (no input requires grad, or grad mode
is off), the public functions skip the dispatcher and call the kernels directly (:func:`mm`,
:func:`batched_mm`): the same launches, tens of microseconds less host time per call.
Backward runs our own kernels too: ``grad_a = grad @ b^T`` and ``grad_b = a^T @ grad`` on
transposed views (the kernels take any strides, so nothing is copied), ``grad_bias`` a sum.
"""

import ast
import functools
from typing import Optional

import torch
from torch.autograd import forward_ad
from torch.utils._python_dispatch import _get_current_dispatch_mode

from .auto import config_for, freeze_overrides
from .dtypes import DTYPE_NAMES, SUPPORTED
from .launch import product, run_batched

# Dtypes the kernels do not run, computed by torch instead: float64, so that
# torch.autograd.gradcheck (which needs it) checks these operators' derivative formulas.
BY_TORCH = (torch.float64,)


def _by_torch(a, b, bias, out):
    result = torch.matmul(a, b) if bias is None else torch.addmm(bias, a, b)
    if out is None:
        return result
    out.copy_(result)
    return out


def _options(overrides):
    """Frozen overrides as an operator argument: their ``repr`` (dynamo builds it while
    tracing, and it reads back exactly)."""
    return repr(overrides)


@functools.lru_cache(maxsize=256)
def _overrides(options):
    """The frozen overrides an operator's ``options`` string stands for (checked again: the
    operator can be called directly)."""
    try:
        pairs = dict(ast.literal_eval(options))
    except (ValueError, SyntaxError, TypeError):
        raise ValueError(
            f"options={options!r}: expected the repr of a tuple of (name, value) pairs"
        ) from None
    return freeze_overrides(pairs)


def _product(a, b, bias, out, strategy, deterministic, overrides):
    """One 2-D GEMM into ``out`` (allocated when None) with the cached configuration; float64,
    which the kernels do not run, by torch (:data:`BY_TORCH`)."""
    if a.dtype in BY_TORCH:
        return _by_torch(a, b, bias, out)
    m, k = a.shape
    n = b.shape[1]
    if 0 in (m, n, k):
        if out is None:
            out = torch.empty((m, n), dtype=a.dtype, device=a.device)
        out.zero_()
        if bias is not None and m and n:
            out.copy_(bias.expand(m, n))
        return out
    config = config_for(m, n, k, a.dtype, a.device, strategy, overrides)
    return product(config, a, b, bias, out, deterministic)


@torch.library.custom_op("refsim::mm", mutates_args=())
def _mm(
    a: torch.Tensor,
    b: torch.Tensor,
    bias: Optional[torch.Tensor],
    strategy: str,
    deterministic: bool,
    options: str,
) -> torch.Tensor:
    return _product(a, b, bias, None, strategy, deterministic, _overrides(options))


@_mm.register_fake
def _mm_fake(a, b, bias, strategy, deterministic, options):
    return a.new_empty((a.shape[0], b.shape[1]))


@torch.library.custom_op("refsim::mm_out", mutates_args=("out",))
def _mm_out(
    a: torch.Tensor,
    b: torch.Tensor,
    bias: Optional[torch.Tensor],
    out: torch.Tensor,
    strategy: str,
    deterministic: bool,
    options: str,
) -> None:
    _product(a, b, bias, out, strategy, deterministic, _overrides(options))


@_mm_out.register_fake
def _mm_out_fake(a, b, bias, out, strategy, deterministic, options):
    return None


def _batched(a, b, out, strategy, deterministic, overrides):
    """Every product of a batch: one data-parallel launch for the batch (auto's choice), or one
    launch per product for an explicitly chosen strategy that is not data-parallel; float64 by
    torch (:data:`BY_TORCH`)."""
    if a.dtype in BY_TORCH:
        return _by_torch(a, b, None, out)
    batch, m, k = a.shape
    n = b.shape[2]
    if 0 in (batch, m, n, k):
        if out is None:
            out = torch.empty((batch, m, n), dtype=a.dtype, device=a.device)
        return out.zero_()
    config = config_for(m, n, k, a.dtype, a.device, strategy, overrides, batch)
    if config.scheme.batched:
        return run_batched(config, a, b, out)
    if out is None:
        out = torch.empty((batch, m, n), dtype=a.dtype, device=a.device)
    for i in range(batch):
        product(config, a[i], b[i], None, out[i], deterministic)
    return out


@torch.library.custom_op("refsim::bmm", mutates_args=())
def _bmm(
    a: torch.Tensor, b: torch.Tensor, strategy: str, deterministic: bool, options: str
) -> torch.Tensor:
    return _batched(a, b, None, strategy, deterministic, _overrides(options))


@_bmm.register_fake
def _bmm_fake(a, b, strategy, deterministic, options):
    return a.new_empty((a.shape[0], a.shape[1], b.shape[2]))


@torch.library.custom_op("refsim::bmm_out", mutates_args=("out",))
def _bmm_out(
    a: torch.Tensor,
    b: torch.Tensor,
    out: torch.Tensor,
    strategy: str,
    deterministic: bool,
    options: str,
) -> None:
    _batched(a, b, out, strategy, deterministic, _overrides(options))


@_bmm_out.register_fake
def _bmm_out_fake(a, b, out, strategy, deterministic, options):
    return None


# Tensor types that are data and nothing more (a Linear's weight and bias are Parameters).
_PLAIN = (torch.Tensor, torch.nn.Parameter)


def _direct(a, b, bias=None):
    """True when neither autograd nor a tracer needs the operator, so the kernels can be called
    without the dispatcher's cost (tens of microseconds a call).

    Tracers show as a compiling dynamo, an active dispatch mode (AOTAutograd tracing a
    backward runs with grad off) or tensor subclasses (fake and functional tensors). Written
    out, not looped: this runs on every call.
    """
    if torch.compiler.is_compiling() or _get_current_dispatch_mode() is not None:
        return False
    plain = _PLAIN
    if type(a) not in plain or type(b) not in plain:
        return False
    if bias is not None and type(bias) not in plain:
        return False
    if not torch.is_grad_enabled():
        return True
    return not (a.requires_grad or b.requires_grad or (bias is not None and bias.requires_grad))


def _transformed():
    """True under one of torch's function transforms (``torch.func.vmap``, ``grad``, ``jvp``,
    ...) or forward-mode AD: the operands may be wrapped or carry tangents, which only an
    autograd.Function with ``setup_context``, ``jvp`` and ``vmap`` (:class:`_Product`) serves."""
    return torch._C._are_functorch_transforms_active() or forward_ad._current_level >= 0


class _Product(torch.autograd.Function):
    """``a @ b (+ bias)`` (2-D, or a batch of 3-D products without a bias) for torch's function
    transforms and forward-mode AD. The derivatives call the public functions again, so a
    transform of a transform (``hessian``, ``jacfwd(jacrev(...))``) runs them through this too.
    """

    @staticmethod
    def forward(a, b, bias, flags):
        if a.dim() == 3:
            return _batched(a, b, None, *flags)
        return _product(a, b, bias, None, *flags)

    @staticmethod
    def setup_context(ctx, inputs, output):
        a, b, bias, flags = inputs
        ctx.save_for_backward(a, b)
        ctx.save_for_forward(a, b)
        ctx.has_bias = bias is not None
        ctx.auto = ("auto", flags[1], ())

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        grad_a = grad_b = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_a = _Product.apply(grad, b.mT, None, ctx.auto)
        if ctx.needs_input_grad[1]:
            grad_b = _Product.apply(a.mT, grad, None, ctx.auto)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum(0)
        return grad_a, grad_b, grad_bias, None

    @staticmethod
    def jvp(ctx, tangent_a, tangent_b, tangent_bias, _):
        """The product is bilinear: d(a @ b + bias) = da @ b + a @ db + dbias."""
        a, b = ctx.saved_tensors
        terms = []
        if tangent_a is not None:
            terms.append(_Product.apply(tangent_a, b, None, ctx.auto))
        if tangent_b is not None:
            terms.append(_Product.apply(a, tangent_b, None, ctx.auto))
        if tangent_bias is not None:
            terms.append(tangent_bias.expand_as(terms[0]) if terms else tangent_bias)
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        return total

    @staticmethod
    def vmap(info, in_dims, a, b, bias, flags):
        """A vmapped product is a batch of products: the batch dimension first on each operand
        (expanded where only one operand has it), then one batched call."""
        size = info.batch_size
        a_dim, b_dim, bias_dim, _ = in_dims

        def batched(t, dim):
            return t.movedim(dim, 0) if dim is not None else t.expand(size, *t.shape)

        a3, b3 = batched(a, a_dim), batched(b, b_dim)
        if a3.dim() == 4:  # already a batch of batches: one flat batch
            out = _Product.apply(a3.flatten(0, 1), b3.flatten(0, 1), None, flags)
            out = out.unflatten(0, (size, a3.shape[1]))
        else:
            out = _Product.apply(a3, b3, None, flags)
        if bias is not None:
            out = out + (batched(bias, bias_dim).unsqueeze(1))
        return out, 0


def mm(a, b, bias, flags, out=None):
    """``a @ b (+ bias)`` into ``out`` or a new tensor: the operator, or the kernels directly.

    ``flags``: ``(strategy, deterministic, overrides)``, overrides frozen by
    :func:`kernels.auto.freeze_overrides`.
    """
    if out is None and _transformed():
        return _Product.apply(a, b, bias, flags)
    if _direct(a, b, bias):
        return _product(a, b, bias, out, *flags)
    strategy, deterministic, overrides = flags
    options = _options(overrides)
    if out is None:
        return _mm(a, b, bias, strategy, deterministic, options)
    _mm_out(a, b, bias, out, strategy, deterministic, options)
    return out


def batched_mm(a, b, flags, out=None):
    """The batched :func:`mm`, without bias."""
    if out is None and _transformed():
        return _Product.apply(a, b, None, flags)
    if _direct(a, b):
        return _batched(a, b, out, *flags)
    strategy, deterministic, overrides = flags
    options = _options(overrides)
    if out is None:
        return _bmm(a, b, strategy, deterministic, options)
    _bmm_out(a, b, out, strategy, deterministic, options)
    return out


def _setup_mm(ctx, inputs, output):
    a, b, bias, _, deterministic, _ = inputs
    ctx.save_for_backward(a, b)
    ctx.has_bias = bias is not None
    ctx.bias_dtype = None if bias is None else bias.dtype
    ctx.deterministic = deterministic


def _backward_mm(ctx, grad):
    a, b = ctx.saved_tensors
    grad_a = grad_b = grad_bias = None
    auto = ("auto", ctx.deterministic, ())
    if ctx.needs_input_grad[0]:
        grad_a = mm(grad, b.t(), None, auto)
    if ctx.needs_input_grad[1]:
        grad_b = mm(a.t(), grad, None, auto)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        # 16-bit gradients summed in fp32; fp32 and float64 in their own precision
        wide = torch.float32 if grad.element_size() < 4 else grad.dtype
        grad_bias = grad.sum(0, dtype=wide).to(ctx.bias_dtype)
    return grad_a, grad_b, grad_bias, None, None, None


def _setup_bmm(ctx, inputs, output):
    a, b, _, deterministic, _ = inputs
    ctx.save_for_backward(a, b)
    ctx.deterministic = deterministic


def _backward_bmm(ctx, grad):
    a, b = ctx.saved_tensors
    auto = ("auto", ctx.deterministic, ())
    grad_a = batched_mm(grad, b.transpose(1, 2), auto) if ctx.needs_input_grad[0] else None
    grad_b = batched_mm(a.transpose(1, 2), grad, auto) if ctx.needs_input_grad[1] else None
    return grad_a, grad_b, None, None, None


torch.library.register_autograd("refsim::mm", _backward_mm, setup_context=_setup_mm)
torch.library.register_autograd("refsim::bmm", _backward_bmm, setup_context=_setup_bmm)


# ---------------------------------------------------------------------------------------------
# Checks: the errors torch raises, in the same words where there is an equivalent.


def _check_operands(name, a, b):
    for t in (a, b):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}(): expected a Tensor, got {type(t).__name__}")
    if a.dtype != b.dtype:
        raise RuntimeError(
            f"{name}(): expected both operands to have the same dtype, but got "
            f"{a.dtype} and {b.dtype}"
        )
    if a.dtype not in DTYPE_NAMES and a.dtype not in BY_TORCH:
        raise TypeError(
            f"{name}(): dtype {a.dtype} is not supported; supported: {SUPPORTED}, and float64 "
            "(computed by torch)"
        )
    if torch.jit.is_tracing():
        raise RuntimeError(
            f"{name}(): torch.jit.trace cannot record it (its launch is chosen from the shape "
            "as Python ints, which tracing turns into tensors); use torch.compile or "
            "torch.export, which see it as one operator"
        )
    if a.device != b.device:
        raise RuntimeError(
            f"{name}(): expected both operands on the same device, but got "
            f"{a.device} and {b.device}"
        )


def _check_out(name, out, shape, dtype, device, *inputs):
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"{name}(): out must be a Tensor, got {type(out).__name__}")
    if torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in (*inputs, out)
    ):
        raise RuntimeError(
            f"{name}(): functions with out=... arguments don't support automatic "
            "differentiation, but one of the arguments requires grad."
        )
    if out.dtype != dtype:
        raise RuntimeError(
            f"{name}(): expected out tensor to have dtype {dtype}, but got {out.dtype} instead"
        )
    if out.device != device:
        raise RuntimeError(f"{name}(): expected out tensor on {device}, but got {out.device}")
    if tuple(out.shape) != tuple(shape):
        raise RuntimeError(
            f"{name}(): out has shape {tuple(out.shape)}, expected {tuple(shape)} "
            "(torch would resize it; kernels does not)"
        )


def _mat_shapes_error(a, b):
    return RuntimeError(
        f"mat1 and mat2 shapes cannot be multiplied "
        f"({'x'.join(map(str, a.shape))} and {'x'.join(map(str, b.shape))})"
    )


# ---------------------------------------------------------------------------------------------
# The public functions.


def matmul(a, b, *, out=None, strategy="auto", deterministic=True, **config_overrides):
    """``torch.matmul(a, b)`` on our kernels: 2-D, ``(..., M, K) @ (K, N)`` and batched
    ``(..., M, K) @ (..., K, N)`` (batch dimensions broadcast as in torch); a 1-D operand is a
    row (``a``) or column (``b``) vector, its dimension removed from the result, as in torch.

    ``strategy``: ``"auto"`` (see :mod:`kernels.auto`) or a refsim strategy name;
    ``config_overrides``: :class:`refsim.GemmConfig` fields (``block_m=64``,
    ``fixup="turnstile"``, ...; :data:`kernels.auto.OVERRIDABLE` lists them, any other name
    is a TypeError). ``deterministic=False`` allows the atomic fixup.
    """
    _check_operands("matmul", a, b)
    if a.dim() == 0 or b.dim() == 0:
        raise RuntimeError(
            f"matmul(): both arguments to matmul need to be at least 1D, but they are "
            f"{a.dim()}D and {b.dim()}D"
        )
    if a.dim() == 1 or b.dim() == 1:  # a vector: a matrix of one row or column, then dropped
        rows, columns = (
            a.unsqueeze(0) if a.dim() == 1 else a,
            b.unsqueeze(-1) if b.dim() == 1 else b,
        )
        options = dict(strategy=strategy, deterministic=deterministic, **config_overrides)
        result = matmul(rows, columns, **options)
        result = result.squeeze(-2) if a.dim() == 1 else result
        result = result.squeeze(-1) if b.dim() == 1 else result
        if out is None:
            return result
        _check_out("matmul", out, result.shape, a.dtype, a.device, a, b)
        return out.copy_(result)
    if a.shape[-1] != b.shape[-2]:
        raise _mat_shapes_error(a.flatten(0, -2), b)
    flags = (strategy, deterministic, freeze_overrides(config_overrides))
    if a.dim() == 2 and b.dim() == 2 and out is None:
        return mm(a, b, None, flags)
    if b.dim() == 2:
        lead = a.shape[:-1]
        shape = (*lead, b.shape[1])
        a2 = a.flatten(0, -2)
        if out is not None:
            _check_out("matmul", out, shape, a.dtype, a.device, a, b)
            if out.is_contiguous():
                mm(a2, b, None, flags, out.flatten(0, -2))
            else:
                out.copy_(mm(a2, b, None, flags).view(shape))
            return out
        return mm(a2, b, None, flags).view(shape)
    m, n, k = a.shape[-2], b.shape[-1], a.shape[-1]
    if a.dim() == 3 and a.shape[:-2] == b.shape[:-2]:  # bmm's case: nothing to broadcast
        batch, a3, b3 = a.shape[:-2], a, b
    else:
        batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        a3 = a.expand(*batch, m, k).flatten(0, -3)
        b3 = b.expand(*batch, k, n).flatten(0, -3)
    shape = (*batch, m, n)
    if out is not None:
        _check_out("matmul", out, shape, a.dtype, a.device, a, b)
        if out.is_contiguous():
            batched_mm(a3, b3, flags, out.flatten(0, -3))
        else:
            out.copy_(batched_mm(a3, b3, flags).view(shape))
        return out
    result = batched_mm(a3, b3, flags)
    return result if len(shape) == 3 else result.view(shape)


def bmm(a, b, *, out=None, strategy="auto", deterministic=True, **config_overrides):
    """``torch.bmm(a, b)``: ``(B, M, K) @ (B, K, N)``, the same B on both sides."""
    _check_operands("bmm", a, b)
    if a.dim() != 3 or b.dim() != 3:
        raise RuntimeError(
            f"bmm(): batch1 and batch2 must be 3-D tensors, got {a.dim()}-D and {b.dim()}-D"
        )
    if a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        raise RuntimeError(
            f"bmm(): shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be "
            "multiplied (need (B, M, K) and (B, K, N))"
        )
    if out is None:  # matmul's 3-D case without its checks again
        return batched_mm(a, b, (strategy, deterministic, freeze_overrides(config_overrides)))
    return matmul(a, b, out=out, strategy=strategy, deterministic=deterministic, **config_overrides)


def addmm(
    bias,
    a,
    b,
    *,
    beta=1,
    alpha=1,
    out=None,
    strategy="auto",
    deterministic=True,
    **config_overrides,
):
    """``torch.addmm(bias, a, b, beta=beta, alpha=alpha)`` = ``beta * bias + alpha * (a @ b)``.

    With ``beta == alpha == 1`` and a bias of shape ``(N,)`` or ``(1, N)`` the bias is added in
    the kernel's fp32 epilogue (one rounding, as refsim predicts); otherwise the product is
    scaled and the bias added by torch afterwards.
    """
    _check_operands("addmm", a, b)
    if not isinstance(bias, torch.Tensor):
        raise TypeError(f"addmm(): expected a Tensor bias, got {type(bias).__name__}")
    if a.dim() != 2 or b.dim() != 2:
        raise RuntimeError(
            f"addmm(): mat1 and mat2 must be matrices, got {a.dim()}-D and {b.dim()}-D"
        )
    if a.shape[1] != b.shape[0]:
        raise _mat_shapes_error(a, b)
    shape = (a.shape[0], b.shape[1])
    if bias.dtype != a.dtype or bias.device != a.device:
        raise RuntimeError(
            f"addmm(): bias is {bias.dtype} on {bias.device}, the matrices {a.dtype} on {a.device}"
        )
    try:
        if bias.shape != shape[-bias.dim() :] or bias.dim() > 2:  # else it broadcasts as it is
            torch.broadcast_shapes(bias.shape, shape)
    except RuntimeError:
        raise RuntimeError(
            f"addmm(): bias of shape {tuple(bias.shape)} does not broadcast to {shape}"
        ) from None
    flags = (strategy, deterministic, freeze_overrides(config_overrides))
    fused = (
        beta == 1
        and alpha == 1
        and bias.dim() >= 1
        and bias.shape[-1] == shape[1]
        and bias.numel() == shape[1]
    )
    if out is not None:
        _check_out("addmm", out, shape, a.dtype, a.device, bias, a, b)
    if fused:
        vector = bias.reshape(shape[1])
        if out is not None and out.is_contiguous():
            mm(a, b, vector, flags, out)
            return out
        result = mm(a, b, vector, flags)
    else:
        product = mm(a, b, None, flags)
        scaled = product if alpha == 1 else alpha * product
        # as torch: beta = 0 ignores the bias, NaN and inf included
        result = scaled if beta == 0 else scaled + (bias if beta == 1 else beta * bias)
    if out is not None:
        out.copy_(result)
        return out
    return result
