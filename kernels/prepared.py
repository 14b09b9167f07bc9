"""Prepared launches: the host work of a repeated call, done once.

An untraced :func:`kernels.run` on a GPU is keyed by everything its launches depend on except
the data: the config and options, each tensor's dtype, device, shape, strides and 16-byte
alignment (what Triton specialises a kernel on) and the current stream. The first call of a key
builds its launches (:mod:`kernels.launch_spec`), enqueues them with ``kernel[grid](...)`` and
keeps what Triton returns, the compiled kernel, with the launch's full parameter list. A later
call of the key copies those lists, puts its own tensors' addresses (and a new flag epoch) in,
and calls each compiled kernel's launcher directly: no argument binding or specialisation, no
Triton cache lookup, no allocation besides the output, no zeroing launch.

On a GPU every tensor goes to the launcher as its address, an int: the workspace buffers'
once, when the call is prepared (the workspace keeps them, and a call prepared over buffers it
has since replaced is dropped), the call's own tensors on each call. Triton's launcher takes
an int as the pointer itself, where for a tensor it calls ``data_ptr()`` and asks the driver
to check the address, per pointer and per launch.

A launch set is prepared only when each of its kernels takes its runtime arguments first and
its constexprs after them (every kernel here does), Triton has no launch hooks installed (a
profiler's hooks see every launch through the ordinary path), and the workspace buffers the
launches use are still the ones it was built over (``Workspace.generation``).

Under Triton's interpreter (CPU tensors) calls are prepared the same way, and a prepared
launch calls ``kernel[grid](...)`` with the substituted parameters: the interpreter compiles
nothing, but every CPU test of a repeated call then runs the substitution a GPU call runs.
"""

import contextlib

import torch
from triton import knobs

from .backend import interpreting, program_order

# Prepared calls kept at most; beyond it the cache starts again (a shape-churning caller pays
# the ordinary path, never unbounded memory).
CAPACITY = 4096

_plans = {}


def hooks_installed():
    """True when Triton has a launch enter or exit hook installed (Triton 3.6 keeps each as a
    chain of hooks, empty when nothing is installed)."""
    for hook in (knobs.runtime.launch_enter_hook, knobs.runtime.launch_exit_hook):
        if hook is not None and getattr(hook, "calls", True):
            return True
    return False


def _tensor_key(t):
    if t is None:
        return None
    return (t.dtype, t.get_device(), t.shape, t.stride(), t.data_ptr() % 16 == 0)


def plan_key(config, a, b, bias, out, options):
    """The key of a call with ``options`` (a tuple of whatever else its launches depend on), or
    None when it cannot be prepared (not a torch tensor, or CPU tensors without the
    interpreter: the ordinary path says what is wrong). Written out flat: it runs on every
    call."""
    tensor = torch.Tensor
    if not (isinstance(a, tensor) and isinstance(b, tensor)):
        return None
    if not (bias is None or isinstance(bias, tensor)) or not (
        out is None or isinstance(out, tensor)
    ):
        return None
    if a.is_cuda:
        device = a.get_device()
        stream = torch._C._cuda_getCurrentRawStream(device)
    elif interpreting():
        device, stream = -1, 0
    else:
        return None
    return (
        config,
        options,
        stream,
        device,
        a.dtype,
        a.shape,
        a.stride(),
        a.data_ptr() % 16 == 0,
        b.dtype,
        b.get_device(),
        b.shape,
        b.stride(),
        b.data_ptr() % 16 == 0,
        _tensor_key(bias),
        _tensor_key(out),
    )


def lookup(key):
    """The prepared call of ``key`` if it is still valid (its workspace buffers unchanged, no
    launch hook installed since), else None."""
    plan = _plans.get(key)
    if plan is None:
        return None
    if plan.generation != plan.workspace.generation:
        del _plans[key]  # built over buffers the workspace has replaced: let them go
        return None
    if hooks_installed():
        return None
    return plan


def stand_ins(a, b, bias, out):
    """Distinct tensor objects over the same memory, so that a tensor's places in a launch's
    arguments can be found by identity even when the caller passes one tensor twice."""
    return tuple(
        None if t is None else t.as_strided(t.shape, t.stride()) for t in (a, b, bias, out)
    )


class PreparedLaunch:
    """One launch with its parameter list and where the call's tensors and epoch go in it: on a
    GPU, a call of the compiled kernel's launcher with every tensor as its address; under the
    interpreter (which compiles nothing), ``kernel[grid](...)`` with the tensors themselves,
    in the launch's program order."""

    __slots__ = ("buffers", "call", "epoch_place", "params", "places")

    def __init__(self, launch, compiled, tensors):
        names = launch.kernel.arg_names
        params = list(launch.args)
        for name in names[len(params) :]:
            params.append(launch.constexprs[name])
        self.places = tuple(
            (i, role)
            for i, value in enumerate(params)
            for role, t in enumerate(tensors)
            if t is not None and value is t
        )
        for i, _ in self.places:
            params[i] = None  # the call's own tensors go here; keep none of the first call's
        # the launch's workspace buffers, held while their addresses are in use
        self.buffers = tuple(value for value in params if isinstance(value, torch.Tensor))
        if compiled is not None:
            params = [v.data_ptr() if isinstance(v, torch.Tensor) else v for v in params]
        self.params = params
        self.epoch_place = launch.epoch_arg
        self.call = _interpreted(launch) if compiled is None else _compiled(launch, compiled)

    def __call__(self, stream, tensors, epoch):
        params = self.params.copy()
        for i, role in self.places:
            params[i] = tensors[role]
        if self.epoch_place is not None:
            params[self.epoch_place] = epoch
        self.call(stream, params)


def _compiled(launch, compiled):
    """Call ``compiled``'s launcher as Triton does, without hooks (there are none installed)."""
    grid = tuple(launch.grid) + (1,) * (3 - len(launch.grid))
    run, function, metadata = compiled.run, compiled.function, compiled.packed_metadata

    def call(stream, params):
        run(*grid, stream, function, metadata, None, None, None, *params)

    return call


def _interpreted(launch):
    """Launch through the interpreter with the parameters by name, in the launch's order."""
    names = launch.kernel.arg_names
    runtime = len(launch.args)

    def call(stream, params):
        constexprs = dict(zip(names[runtime:], params[runtime:]))
        order = contextlib.nullcontext() if launch.order is None else program_order(launch.order)
        with order:
            launch.kernel[launch.grid](*params[:runtime], **constexprs, **launch.options)

    return call


class PreparedCall:
    """Every launch of one key, ready to enqueue with new tensors."""

    __slots__ = (
        "addresses",
        "flags",
        "generation",
        "launches",
        "output_like",
        "serial",
        "stream",
        "workspace",
        "zero_output",
    )

    def __init__(self, launches, workspace, launch_set, output, addresses, stream):
        self.launches = launches
        self.stream = stream  # the key's: a call of the key runs on this stream
        self.workspace = workspace
        self.generation = workspace.generation
        self.flags = launch_set.flags
        self.zero_output = len(launch_set.zeroed) > 0
        # One element seen with the output's shape: ``empty_like`` of it allocates an output
        # (contiguous) with a third of ``torch.empty``'s argument parsing, holding no memory.
        self.output_like = output.new_empty(1).expand(output.shape)
        self.addresses = addresses
        # Calls that share a workspace take its lock when they publish an epoch or enqueue
        # several launches (another thread's launches must not come between them); one launch
        # without flags is ordered by its stream alone.
        self.serial = self.flags is not None or len(launches) > 1

    def __call__(self, a, b, bias, out):
        """Enqueue the launches on the key's stream (the current stream of its device when the
        key was made) with these tensors; returns the output, ``out`` or a new tensor."""
        stream = self.stream
        if out is None:
            c = torch.empty_like(self.output_like, memory_format=torch.contiguous_format)
        else:
            c = out
        if self.addresses:
            bias_address = None if bias is None else bias.data_ptr()
            tensors = (a.data_ptr(), b.data_ptr(), bias_address, c.data_ptr())
        else:
            tensors = (a, b, bias, c)
        if not self.serial:
            if self.zero_output:
                c.zero_()
            self.launches[0](stream, tensors, None)
            return c
        with self.workspace.lock:
            epoch = None if self.flags is None else self.workspace.next_epoch(self.flags)
            if self.zero_output:
                c.zero_()
            for launch in self.launches:
                launch(stream, tensors, epoch)
        return c


def preparable(launch_set, tensors):
    """True when every launch can be called through its compiled kernel: runtime arguments
    first, constexprs after, and the only zeroed buffer the output."""
    *_, output = tensors
    if launch_set.zeroed and not all(z is output for z in launch_set.zeroed):
        return False
    if hooks_installed():
        return False
    for launch in launch_set.launches:
        after_args = launch.kernel.arg_names[len(launch.args) :]
        if sorted(after_args) != sorted(launch.constexprs):
            return False
    return True


def remember(key, launch_set, compiled, tensors, workspace):
    """Keep the prepared call of ``key``: ``compiled`` are the compiled kernels Triton returned
    for ``launch_set``'s launches, ``tensors`` the stand-ins they were built over."""
    addresses = not interpreting()
    if not addresses:
        compiled = [None] * len(launch_set.launches)
    launches = tuple(
        PreparedLaunch(launch, kernel, tensors)
        for launch, kernel in zip(launch_set.launches, compiled)
    )
    if len(_plans) >= CAPACITY:
        _plans.clear()
    *_, output = tensors
    _, _, stream, *_ = key
    _plans[key] = PreparedCall(launches, workspace, launch_set, output, addresses, stream)


def forget():
    """Drop every prepared call (tests; a caller that changed Triton's launch hooks)."""
    _plans.clear()
