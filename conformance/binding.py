"""Binding a Triton GEMM kernel's parameters by name: the host launch :func:`adapt` needs, from
the kernel and what its names do not say.

:func:`bind` reads the kernel's parameter names and gives each a value by the convention table
below, by a keyword of its own, or from a scratch buffer it allocates per launch; what is left
is a one-line TypeError. The conventions (a name binds the value on its right; ``ctx`` is the
:class:`LaunchContext` of the launch):

=====================================================  =============================================
parameter names                                        value
=====================================================  =============================================
``a`` ``A`` ``a_ptr`` ``A_ptr``                        ``ctx.a``
``b`` ``B`` ``b_ptr`` ``B_ptr``                        ``ctx.b``
``c`` ``C`` ``c_ptr`` ``C_ptr`` ``out`` ``out_ptr``    ``ctx.out``
``bias`` ``bias_ptr`` ``Bias``, and ``BIAS`` when it   ``ctx.bias``, or the output as a dummy pointer
is not a constexpr                                     without a bias (never read: the flag is False)
``M`` ``N`` ``K``                                      ``config.m``, ``config.n``, ``config.k``
``stride_am`` ``stride_ak``                            ``a.stride(0)``, ``a.stride(1)``
``stride_bk`` ``stride_bn``                            ``b.stride(0)``, ``b.stride(1)``
``stride_cm`` ``stride_cn``                            ``out.stride(0)``, ``out.stride(1)``
``stride_bias``                                        ``bias.stride(0)``, 0 without a bias
``BLOCK_SIZE_M`` ``BLOCK_M`` (and ``_N``, ``_K``)      ``config.block_m`` (``block_n``, ``block_k``)
``GROUP_SIZE_M`` ``GROUP_M``                           ``config.group_m``
``NUM_SMS`` ``NUM_CUS`` ``NUM_PROGRAMS`` ``GRID_SIZE``  ``config.grid``, the number of programs
``NUM_XCDS``                                           ``config.xcds``
``STREAMK_TILES`` ``SK_TILES`` ``NUM_SK_TILES``        ``config.sk_tiles``, the Stream-K tiles (0: none)
``GLOBAL_COUNTER``                                     ``config.global_counter``: one work-stealing
                                                       counter for the whole grid
``EVEN_K``                                             ``config.k % config.block_k == 0``
``HAS_BIAS`` ``USE_BIAS`` ``ADD_BIAS``, and ``BIAS``    ``bias is not None``
when it is a constexpr
``log_ptr`` ``worklog_ptr`` ``work_log_ptr``           ``worklog.tensor``; without a work log, a
                                                       dummy log in which every record overruns
``max_items`` ``log_max_items`` ``MAX_ITEMS``          ``worklog.max_items``; 0 without a work log
``RECORD`` ``RECORD_WORK``                             ``worklog is not None``
``BACKEND``                                            :func:`kernels.backend.backend_for` the
                                                       device (kernels built on :mod:`kernels.tile`)
=====================================================  =============================================

A scratch buffer named ``x`` binds the parameter ``x`` or ``x_ptr``; a keyword binds the
parameter it names, and beats a buffer and a convention. A parameter with a default in the
kernel's signature, or one a ``triton.heuristics`` computes, may stay unbound.
"""

import dataclasses
import inspect

import torch
import triton.language as tl
from triton.runtime.autotuner import Autotuner, Heuristics
from triton.runtime.jit import KernelInterface

from kernels.backend import backend_for

from .scratch import guarded_scratch

# Keywords of a Triton launch that are no kernel parameter: passed through as they are.
LAUNCH_OPTIONS = frozenset(
    ("num_warps", "num_stages", "num_ctas", "maxnreg", "waves_per_eu", "matrix_instr_nonkdim")
)


@dataclasses.dataclass(frozen=True)
class LaunchContext:
    """What a binding sees of one launch: the suite's ``config`` (a :class:`refsim.GemmConfig`),
    the tensors it passed (``bias`` and ``worklog`` may be None), their ``device``, and the
    launch's scratch ``buffers`` by name (see :func:`bind`)."""

    config: object
    a: torch.Tensor
    b: torch.Tensor
    bias: object
    out: torch.Tensor
    worklog: object
    device: torch.device
    buffers: dict


def _bias_pointer(ctx):
    return ctx.out if ctx.bias is None else ctx.bias


def _dummy_log(ctx):
    """A log header with no program rows: every record_work into it counts an overrun."""
    return torch.zeros(2, dtype=torch.int64, device=ctx.device)


# Parameter name -> its value in a launch, for every parameter kind (see the module docstring).
CONVENTIONS = {
    **dict.fromkeys(("a", "A", "a_ptr", "A_ptr"), lambda ctx: ctx.a),
    **dict.fromkeys(("b", "B", "b_ptr", "B_ptr"), lambda ctx: ctx.b),
    **dict.fromkeys(("c", "C", "c_ptr", "C_ptr", "out", "out_ptr"), lambda ctx: ctx.out),
    **dict.fromkeys(("bias", "bias_ptr", "Bias", "BIAS"), _bias_pointer),
    "M": lambda ctx: ctx.config.m,
    "N": lambda ctx: ctx.config.n,
    "K": lambda ctx: ctx.config.k,
    "stride_am": lambda ctx: ctx.a.stride(0),
    "stride_ak": lambda ctx: ctx.a.stride(1),
    "stride_bk": lambda ctx: ctx.b.stride(0),
    "stride_bn": lambda ctx: ctx.b.stride(1),
    "stride_cm": lambda ctx: ctx.out.stride(0),
    "stride_cn": lambda ctx: ctx.out.stride(1),
    "stride_bias": lambda ctx: 0 if ctx.bias is None else ctx.bias.stride(0),
    **dict.fromkeys(("BLOCK_SIZE_M", "BLOCK_M"), lambda ctx: ctx.config.block_m),
    **dict.fromkeys(("BLOCK_SIZE_N", "BLOCK_N"), lambda ctx: ctx.config.block_n),
    **dict.fromkeys(("BLOCK_SIZE_K", "BLOCK_K"), lambda ctx: ctx.config.block_k),
    **dict.fromkeys(("GROUP_SIZE_M", "GROUP_M"), lambda ctx: ctx.config.group_m),
    **dict.fromkeys(
        ("NUM_SMS", "NUM_CUS", "NUM_PROGRAMS", "GRID_SIZE"), lambda ctx: ctx.config.grid
    ),
    "NUM_XCDS": lambda ctx: ctx.config.xcds,
    **dict.fromkeys(
        ("STREAMK_TILES", "SK_TILES", "NUM_SK_TILES"), lambda ctx: ctx.config.sk_tiles or 0
    ),
    "GLOBAL_COUNTER": lambda ctx: bool(ctx.config.global_counter),
    "EVEN_K": lambda ctx: ctx.config.k % ctx.config.block_k == 0,
    **dict.fromkeys(("HAS_BIAS", "USE_BIAS", "ADD_BIAS"), lambda ctx: ctx.bias is not None),
    **dict.fromkeys(
        ("log_ptr", "worklog_ptr", "work_log_ptr"),
        lambda ctx: _dummy_log(ctx) if ctx.worklog is None else ctx.worklog.tensor,
    ),
    **dict.fromkeys(
        ("max_items", "log_max_items", "MAX_ITEMS"),
        lambda ctx: 0 if ctx.worklog is None else ctx.worklog.max_items,
    ),
    **dict.fromkeys(("RECORD", "RECORD_WORK"), lambda ctx: ctx.worklog is not None),
    "BACKEND": lambda ctx: backend_for(ctx.device.type),
}
# Where a constexpr parameter's name means something else than the same runtime parameter's.
CONSTEXPR_CONVENTIONS = {"BIAS": lambda ctx: ctx.bias is not None}


@dataclasses.dataclass(frozen=True)
class _Parameter:
    name: str
    constexpr: bool
    optional: bool  # has a default, or a triton.heuristics computes it


def _parameters(kernel):
    """The kernel's parameters, in order; TypeError for anything but a ``triton.jit`` function
    (possibly under ``triton.heuristics``), and for an autotuner, which would pick other
    blocks than the config's."""
    computed, wrapped = set(), kernel
    while isinstance(wrapped, KernelInterface):
        if isinstance(wrapped, Autotuner):
            raise TypeError(
                "bind takes the triton.jit function under triton.autotune (kernel.fn): the "
                "suite runs the config's blocks"
            )
        if isinstance(wrapped, Heuristics):
            computed.update(wrapped.values)
        wrapped = wrapped.fn
    if wrapped is kernel or not callable(wrapped):
        raise TypeError(f"bind takes a triton.jit function, not a {type(kernel).__name__}")
    return [
        _Parameter(
            p.name,
            p.annotation is tl.constexpr or str(p.annotation).endswith("constexpr"),
            p.default is not inspect.Parameter.empty or p.name in computed,
        )
        for p in inspect.signature(wrapped).parameters.values()
    ]


def _is_function_of_context(value):
    """Whether a keyword's value is a function of the LaunchContext (else a constant): a
    constexpr, a jit function and a class are constants though callable."""
    return callable(value) and not isinstance(value, (tl.constexpr, KernelInterface, type))


def _resolve(value, ctx):
    return value(ctx) if _is_function_of_context(value) else value


class BoundLaunch:
    """A launch ``(config, a, b, bias, out, worklog)`` of a kernel whose parameters are bound by
    name (see :func:`bind`); it returns the launch's scratch buffers
    (:class:`conformance.scratch.Scratch`), which :func:`conformance.adapter.adapt` checks."""

    def __init__(self, kernel, grid, buffers, sources, options):
        self.kernel = kernel
        self.grid = grid
        self.buffers = buffers
        self.sources = sources  # parameter name -> constant or function of the LaunchContext
        self.options = options

    def __call__(self, config, a, b, bias, out, worklog):
        scratch = guarded_scratch(self.buffers, config, a.device)
        ctx = LaunchContext(config, a, b, bias, out, worklog, a.device, scratch)
        grid = config.grid if self.grid is None else _resolve(self.grid, ctx)
        arguments = {name: _resolve(source, ctx) for name, source in self.sources.items()}
        options = {name: _resolve(value, ctx) for name, value in self.options.items()}
        self.kernel[grid if isinstance(grid, tuple) else (grid,)](**arguments, **options)
        return scratch

    def __repr__(self):
        return f"bind({_name(self.kernel)})"


def _name(kernel):
    return getattr(kernel, "__name__", None) or getattr(kernel.fn, "__name__", "kernel")


def bind(kernel, *, grid=None, buffers=None, **arguments):
    """The host launch :func:`conformance.adapter.adapt` takes, for a ``triton.jit`` ``kernel``,
    with each parameter bound by its name.

    A parameter binds, first match wins: the keyword of its name in ``arguments``; the scratch
    buffer ``x`` of ``buffers`` for a parameter ``x`` or ``x_ptr``; the convention of its name
    (the table in :mod:`conformance.binding`: pointers, sizes, strides, blocks, the grid, the
    XCDs, EVEN_K, the bias flag, the work log). A keyword's value is a constant, or a function
    of the launch's :class:`LaunchContext` (``config, a, b, bias, out, worklog, device,
    buffers``), e.g. ``schedule=lambda ctx: ctx.config.schedule_config``; a constexpr, a jit
    function or a class passed as a keyword is a constant. Launch options (``num_warps``,
    ``num_stages``, ...) pass through. ``grid``: the launch grid, an int, a tuple or a function
    of the context (default ``config.grid`` programs). ``buffers``: ``name -> maker(config,
    device)``, each maker's tensor allocated again for every launch inside guard slots
    (:func:`conformance.scratch.guarded_scratch`: the kernel gets a contiguous copy; zero-fill
    counters and flags, and fill partials with :data:`conformance.harness.POISON` or zeros); the
    launch returns them by name, for ``adapt(partials="name")`` and the guard check.

    TypeError, in one line, for a kernel that is no jit function, a keyword that names no
    parameter nor launch option, a buffer maker that is not callable, and parameters that
    nothing binds (named).
    """
    buffers = dict(buffers or {})
    parameters = _parameters(kernel)
    names = {p.name for p in parameters}
    unknown = sorted(set(arguments) - names - LAUNCH_OPTIONS)
    if unknown:
        raise TypeError(f"bind({_name(kernel)}): no parameter named {', '.join(unknown)}")
    not_callable = sorted(name for name, make in buffers.items() if not callable(make))
    if not_callable:
        raise TypeError(
            f"bind({_name(kernel)}): buffers {', '.join(not_callable)} need a maker "
            "(config, device) -> tensor"
        )
    buffer_of = {f"{name}{suffix}": name for name in buffers for suffix in ("", "_ptr")}
    sources, unbound = {}, []
    for p in parameters:
        if p.name in arguments:
            sources[p.name] = arguments[p.name]
        elif p.name in buffer_of:
            sources[p.name] = lambda ctx, buffer=buffer_of[p.name]: ctx.buffers[buffer]
        elif p.constexpr and p.name in CONSTEXPR_CONVENTIONS:
            sources[p.name] = CONSTEXPR_CONVENTIONS[p.name]
        elif p.name in CONVENTIONS:
            sources[p.name] = CONVENTIONS[p.name]
        elif not p.optional:
            unbound.append(p.name)
    if unbound:
        raise TypeError(
            f"bind({_name(kernel)}): nothing binds {', '.join(unbound)}: pass "
            f"{'it' if len(unbound) == 1 else 'them'} as keyword arguments"
        )
    options = {name: value for name, value in arguments.items() if name not in names}
    return BoundLaunch(kernel, grid, buffers, sources, options)
