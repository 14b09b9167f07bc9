"""The torch front end: matmul, addmm, bmm, nn.Linear -- forward, backward, out=, errors,
the auto rule and its cache, torch.compile, threads. Runs in the interpreter without a GPU
(small shapes) and compiled with one (``-m gpu``)."""

import threading

import pytest
import torch

import kernels
from conformance.tolerances import tolerance_problem
from kernels.auto import OVERRIDABLE, config_for
from kernels.dtypes import TORCH_DTYPES
from kernels.rule import choose
from refsim import STRATEGIES

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = [pytest.mark.gpu] if DEVICE == "cuda" else [pytest.mark.interpreter]
DTYPES = sorted(TORCH_DTYPES)


def integers(*shape, dtype="fp32", seed=0, grad=False):
    generator = torch.Generator().manual_seed(seed)
    t = torch.randint(-4, 5, shape, generator=generator).to(TORCH_DTYPES[dtype]).to(DEVICE)
    return t.requires_grad_(grad)


def normals(*shape, dtype="fp32", seed=0, grad=False):
    generator = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=generator).to(TORCH_DTYPES[dtype]).to(DEVICE)
    return t.requires_grad_(grad)


def assert_same(got, expected, what="output"):
    """Bit-equal tensors, or a message naming the first differing index and the count."""
    assert got.shape == expected.shape and got.dtype == expected.dtype, (
        f"{what}: {got.dtype}{tuple(got.shape)} vs {expected.dtype}{tuple(expected.shape)}"
    )
    bad = (got != expected).nonzero()
    if len(bad):
        index = tuple(bad[0].tolist())
        raise AssertionError(
            f"{what}: {len(bad)} elements differ; first at {index}: "
            f"{got[index].item()} != {expected[index].item()}"
        )


def assert_within_tolerance(got, a, b, bias=None, what="output"):
    """``got`` is ``a @ b (+ bias)`` within the random-input tolerance of its dtypes."""
    problem = tolerance_problem(got, a, b, bias, what)
    assert problem is None, problem


def exact(a, b, bias=None):
    """The float64 product (plus bias) rounded once to the inputs' dtype: what torch gives
    on integer inputs when it accumulates exactly."""
    result = a.detach().double() @ b.detach().double()
    if bias is not None:
        result = result + bias.detach().double()
    return result.to(a.dtype)


# Forward cases as data: (name, make inputs, our call, torch's call).
FORWARD = {
    "matmul 2-D": (
        lambda d, s: (integers(37, 70, dtype=d, seed=s), integers(70, 29, dtype=d, seed=s + 1)),
        lambda a, b: kernels.matmul(a, b),
        torch.matmul,
    ),
    "matmul (..., M, K) @ (K, N)": (
        lambda d, s: (
            integers(2, 3, 11, 40, dtype=d, seed=s),
            integers(40, 9, dtype=d, seed=s + 1),
        ),
        lambda a, b: kernels.matmul(a, b),
        torch.matmul,
    ),
    "matmul batched, broadcast": (
        lambda d, s: (
            integers(3, 1, 10, 33, dtype=d, seed=s),
            integers(4, 33, 12, dtype=d, seed=s + 1),
        ),
        lambda a, b: kernels.matmul(a, b),
        torch.matmul,
    ),
    "bmm": (
        lambda d, s: (
            integers(3, 17, 45, dtype=d, seed=s),
            integers(3, 45, 20, dtype=d, seed=s + 1),
        ),
        lambda a, b: kernels.bmm(a, b),
        torch.bmm,
    ),
    "matmul transposed operands": (
        lambda d, s: (
            integers(70, 37, dtype=d, seed=s).t(),
            integers(29, 70, dtype=d, seed=s + 1).t(),
        ),
        lambda a, b: kernels.matmul(a, b),
        torch.matmul,
    ),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(FORWARD))
def test_forward_is_torchs_result_on_integer_inputs(case, dtype):
    make, ours, theirs = FORWARD[case]
    a, b = make(dtype, 3)
    got = ours(a, b)
    assert_same(got, theirs(a, b), case + " vs torch")
    assert_same(got, theirs(a.double(), b.double()).to(a.dtype), case + " vs float64, rounded")


@pytest.mark.parametrize("dtype", DTYPES)
def test_addmm_and_linear_add_the_bias_once(dtype):
    a, b, bias = (
        integers(33, 50, dtype=dtype),
        integers(50, 21, dtype=dtype, seed=1),
        integers(21, dtype=dtype, seed=2),
    )
    assert_same(kernels.addmm(bias, a, b), torch.addmm(bias, a, b), "addmm vs torch")
    assert_same(kernels.addmm(bias, a, b), exact(a, b, bias), "addmm")
    row = bias.reshape(1, -1)
    assert_same(kernels.addmm(row, a, b), exact(a, b, bias), "addmm, (1, N) bias")
    full = integers(33, 21, dtype=dtype, seed=3)
    expected = (3 * full.double() + 2 * (a.double() @ b.double())).to(a.dtype)
    assert_same(kernels.addmm(full, a, b, beta=3, alpha=2), expected, "addmm beta=3 alpha=2")
    linear = kernels.nn.Linear(50, 21, device=DEVICE, dtype=TORCH_DTYPES[dtype])
    with torch.no_grad():
        linear.weight.copy_(b.t())
        linear.bias.copy_(bias)
    with torch.no_grad():
        assert_same(linear(a), torch.nn.functional.linear(a, b.t(), bias), "Linear vs torch")
    assert_same(linear(a).detach(), exact(a, b, bias), "Linear")


def test_the_atomic_fixup_when_determinism_is_waived():
    a, b = integers(70, 150), integers(150, 90, seed=1)
    got = kernels.matmul(
        a, b, strategy="streamk", fixup="atomic", sk_hybrid="one-wave", deterministic=False
    )
    assert_same(got, exact(a, b), "atomic")


def test_addmm_takes_a_scalar_bias_as_torch_does():
    a, b = integers(8, 40), integers(40, 6, seed=1)
    bias = torch.tensor(2.0, device=DEVICE)
    assert_same(kernels.addmm(bias, a, b), torch.addmm(bias, a, b), "0-d bias")


def test_addmm_beta_zero_ignores_nan_in_the_bias():
    a, b = integers(8, 40), integers(40, 8, seed=1)
    bias = torch.full((8, 8), float("nan"), device=DEVICE)
    assert_same(kernels.addmm(bias, a, b, beta=0), exact(a, b), "beta=0")


def test_the_operator_and_the_direct_call_give_the_same_bits():
    """Without autograd the front end calls the kernels directly; with it, refsim::mm."""
    a, b, bias = normals(37, 70), normals(70, 29, seed=1), normals(29, seed=2)
    direct = kernels.addmm(bias, a, b)
    through_operator = kernels.addmm(bias, a.requires_grad_(), b)
    assert direct.grad_fn is None and through_operator.grad_fn is not None
    assert_same(through_operator.detach(), direct, "operator vs direct")
    assert_same(torch.ops.refsim.mm(a.detach(), b, bias, "auto", True, "()"), direct, "refsim::mm")


@pytest.mark.parametrize("strategy", ["auto", *STRATEGIES])
def test_every_strategy_behind_matmul(strategy):
    a, b = integers(70, 150), integers(150, 90, seed=1)
    options = {"fixup": "last-arriver"} if strategy == "streamk" else {}
    assert_same(kernels.matmul(a, b, strategy=strategy, **options), exact(a, b), strategy)


@pytest.mark.parametrize("dtype", DTYPES)
def test_random_inputs_within_the_dtype_tolerance(dtype):
    a, b, bias = (
        normals(65, 130, dtype=dtype),
        normals(130, 47, dtype=dtype, seed=1),
        normals(47, dtype=dtype, seed=2),
    )
    assert_within_tolerance(kernels.addmm(bias, a, b), a, b, bias, "addmm")
    assert_within_tolerance(kernels.matmul(a, b), a, b, what="matmul")


# Gradients: integer inputs and an integer upstream gradient make every fp32 sum exact.
GRADIENTS = {
    "matmul": (
        lambda g: (integers(21, 40, grad=g), integers(40, 19, seed=1, grad=g)),
        kernels.matmul,
        torch.matmul,
    ),
    "matmul batched": (
        lambda g: (integers(2, 21, 40, grad=g), integers(40, 19, seed=1, grad=g)),
        kernels.matmul,
        torch.matmul,
    ),
    "bmm": (
        lambda g: (integers(2, 21, 40, grad=g), integers(2, 40, 19, seed=1, grad=g)),
        kernels.bmm,
        torch.bmm,
    ),
    "addmm": (
        lambda g: (
            integers(19, grad=g, seed=2),
            integers(21, 40, grad=g),
            integers(40, 19, seed=1, grad=g),
        ),
        kernels.addmm,
        torch.addmm,
    ),
    "addmm beta alpha": (
        lambda g: (
            integers(21, 19, grad=g, seed=2),
            integers(21, 40, grad=g),
            integers(40, 19, seed=1, grad=g),
        ),
        lambda *t: kernels.addmm(*t, beta=2, alpha=3),
        lambda *t: torch.addmm(*t, beta=2, alpha=3),
    ),
}


@pytest.mark.parametrize("case", sorted(GRADIENTS))
def test_gradients_equal_torchs(case):
    make, ours, theirs = GRADIENTS[case]
    inputs = make(True)
    reference = [t.detach().double().requires_grad_() for t in inputs]
    out = ours(*inputs)
    upstream = integers(*out.shape, seed=7)
    out.backward(upstream)
    theirs(*reference).backward(upstream.double())
    for i, (mine, ref) in enumerate(zip(inputs, reference)):
        assert_same(mine.grad, ref.grad.to(mine.dtype), f"{case}: gradient of input {i}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_gradients_within_the_dtype_tolerance(dtype):
    """grad W = upstream^T @ x and grad b = the column sums of upstream, as products."""
    ours = kernels.nn.Linear(48, 24, device=DEVICE, dtype=TORCH_DTYPES[dtype])
    x = normals(5, 7, 48, dtype=dtype, seed=4, grad=True)
    upstream = normals(5, 7, 24, dtype=dtype, seed=5)
    ours(x).backward(upstream)
    rows, inputs = upstream.reshape(-1, 24), x.detach().reshape(-1, 48)
    assert_within_tolerance(ours.weight.grad, rows.t(), inputs, what="weight grad")
    ones = torch.ones(len(rows), dtype=rows.dtype, device=DEVICE)
    assert_within_tolerance(ours.bias.grad, ones, rows, what="bias grad")
    assert_within_tolerance(x.grad.reshape(-1, 48), rows, ours.weight.detach(), what="input grad")


def test_linear_is_a_drop_in_for_torch_linear():
    ours = kernels.nn.Linear(16, 8, device=DEVICE)
    theirs = torch.nn.Linear(16, 8, device=DEVICE)
    assert isinstance(ours, torch.nn.Linear)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    theirs.load_state_dict(ours.state_dict())
    x = integers(3, 16)
    with torch.no_grad():
        ours.weight.copy_(integers(8, 16, seed=1))
        ours.bias.copy_(integers(8, seed=2))
        theirs.load_state_dict(ours.state_dict())
    assert_same(ours(x), theirs(x).detach(), "Linear vs torch.nn.Linear")
    assert (
        kernels.nn.Linear(16, 8, bias=False).state_dict().keys()
        == torch.nn.Linear(16, 8, bias=False).state_dict().keys()
        == {"weight"}
    )


def test_linear_takes_a_vector_as_torch_linear_does():
    """(in,) -> (out,), forward and backward."""
    ours = kernels.nn.Linear(16, 8, device=DEVICE)
    theirs = torch.nn.Linear(16, 8, device=DEVICE)
    with torch.no_grad():
        ours.weight.copy_(integers(8, 16, seed=1))
        ours.bias.copy_(integers(8, seed=2))
    theirs.load_state_dict(ours.state_dict())
    x, x_theirs = integers(16, grad=True), integers(16, grad=True)
    got, expected = ours(x), theirs(x_theirs)
    assert got.shape == (8,)
    assert_same(got.detach(), expected.detach(), "Linear of a vector")
    upstream = integers(8, seed=3)
    got.backward(upstream)
    expected.backward(upstream)
    assert_same(x.grad, x_theirs.grad, "input grad of a vector")
    assert_same(ours.weight.grad, theirs.weight.grad, "weight grad of a vector")


def _half_bias(layer):
    with torch.no_grad():
        layer.bias.data = layer.bias.data.half()
    return torch.ones(3, 4, device=DEVICE)


LINEAR_AS_TORCH = {  # an input (after changing the layer, maybe) that torch.nn.Linear refuses
    "float64 input": lambda layer: torch.ones(3, 4, dtype=torch.float64, device=DEVICE),
    "integer input": lambda layer: torch.ones(3, 4, dtype=torch.int64, device=DEVICE),
    "float16 input, float32 weight": lambda layer: torch.ones(3, 4, device=DEVICE).half(),
    "float16 bias, float32 weight": _half_bias,
    "0-D input": lambda layer: torch.tensor(1.0, device=DEVICE),
    "not a tensor": lambda layer: [[1.0] * 4] * 3,
}


@pytest.mark.parametrize("case", sorted(LINEAR_AS_TORCH))
def test_linear_refuses_what_torch_linear_refuses_in_its_words(case):
    torch.manual_seed(0)
    ours = kernels.nn.Linear(4, 2, device=DEVICE)
    theirs = torch.nn.Linear(4, 2, device=DEVICE)
    theirs.load_state_dict(ours.state_dict())
    make = LINEAR_AS_TORCH[case]
    ours_input, their_input = make(ours), make(theirs)
    with pytest.raises((RuntimeError, TypeError)) as theirs_raised:
        theirs(their_input)
    with pytest.raises(type(theirs_raised.value)) as ours_raised:
        ours(ours_input)
    assert type(ours_raised.value) is type(theirs_raised.value)
    assert str(ours_raised.value) == str(theirs_raised.value)


def test_linear_refuses_what_neither_the_kernels_nor_torch_compute():
    complex64 = kernels.nn.Linear(4, 2, device=DEVICE, dtype=torch.complex64)
    with pytest.raises(NotImplementedError, match="not implemented for 'ComplexFloat'; supported"):
        complex64(torch.ones(3, 4, dtype=torch.complex64, device=DEVICE))
    float64 = kernels.nn.Linear(4, 2, device=DEVICE, dtype=torch.float64)  # computed by torch
    x = torch.ones(3, 4, dtype=torch.float64, device=DEVICE)
    torch.testing.assert_close(float64(x), x @ float64.weight.t() + float64.bias)
    elsewhere = torch.ones(3, 4, device="meta")
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        kernels.nn.Linear(4, 2, device=DEVICE)(elsewhere)


# out=
def test_out_gives_the_same_bits_as_out_of_place():
    a, b, bias = normals(37, 70), normals(70, 29, seed=1), normals(29, seed=2)
    for call in (
        lambda out: kernels.matmul(a, b, out=out),
        lambda out: kernels.addmm(bias, a, b, out=out),
    ):
        expected = call(None)
        out = torch.full_like(expected, float("nan"))
        assert call(out) is out
        assert_same(out, expected, "out=")
        strided = torch.full((29, 37), float("nan"), device=DEVICE).t()
        call(strided)
        assert_same(strided, expected, "non-contiguous out=")
    a3, b3 = normals(2, 9, 40), normals(2, 40, 11, seed=1)
    out3 = torch.empty(2, 9, 11, device=DEVICE)
    assert kernels.bmm(a3, b3, out=out3) is out3
    assert_same(out3, kernels.bmm(a3, b3), "bmm out=")


OUT_ERRORS = {  # (out, expected message)
    "wrong dtype": (
        lambda: torch.empty(8, 6, dtype=torch.float16, device=DEVICE),
        "expected out tensor to have dtype torch.float32",
    ),
    "wrong shape": (lambda: torch.empty(6, 8, device=DEVICE), r"out has shape \(6, 8\)"),
    "wrong device": (lambda: torch.empty(8, 6, device="meta"), "expected out tensor on"),
    "not a tensor": (lambda: [[0.0] * 6] * 8, "out must be a Tensor"),
}


@pytest.mark.parametrize("error", sorted(OUT_ERRORS))
def test_a_bad_out_is_refused_like_torch(error):
    make, message = OUT_ERRORS[error]
    with pytest.raises((RuntimeError, TypeError), match=message):
        kernels.matmul(integers(8, 40), integers(40, 6), out=make())


def test_out_with_autograd_raises_the_error_torch_raises():
    a, b = integers(8, 40, grad=True), integers(40, 6)
    out = torch.empty(8, 6, device=DEVICE)
    with pytest.raises(RuntimeError, match="don't support automatic differentiation") as ours:
        kernels.matmul(a, b, out=out)
    with pytest.raises(RuntimeError) as theirs:
        torch.matmul(a, b, out=out)
    assert type(ours.value) is type(theirs.value)
    assert "automatic differentiation" in str(theirs.value)
    with torch.no_grad():
        kernels.matmul(a, b, out=out)
    assert_same(out, exact(a, b), "out= under no_grad")


BAD_CALLS = {  # (call, exception, message)
    "shapes": (
        lambda: kernels.matmul(integers(3, 4), integers(5, 6)),
        RuntimeError,
        r"cannot be multiplied \(3x4 and 5x6\)",
    ),
    "dtypes": (
        lambda: kernels.matmul(integers(3, 4), integers(4, 6, dtype="fp16")),
        RuntimeError,
        "same dtype",
    ),
    "integers": (
        lambda: kernels.matmul(integers(3, 4).long(), integers(4, 6).long()),
        TypeError,
        "int64 is not supported",
    ),
    "0-D": (
        lambda: kernels.matmul(integers(3, 4), torch.tensor(2.0, device=DEVICE)),
        RuntimeError,
        "need to be at least 1D, but they are 2D and 0D",
    ),
    "devices": (
        lambda: kernels.matmul(integers(3, 4), torch.ones(4, 6, device="meta")),
        RuntimeError,
        "same device",
    ),
    "bmm batch": (
        lambda: kernels.bmm(integers(2, 3, 4), integers(3, 4, 5)),
        RuntimeError,
        "cannot be multiplied",
    ),
    "bmm 2-D": (lambda: kernels.bmm(integers(3, 4), integers(4, 5)), RuntimeError, "3-D"),
    "addmm bias": (
        lambda: kernels.addmm(integers(5), integers(3, 4), integers(4, 6)),
        RuntimeError,
        "does not broadcast",
    ),
    "addmm bias dtype": (
        lambda: kernels.addmm(integers(6, dtype="fp16"), integers(3, 4), integers(4, 6)),
        RuntimeError,
        "bias is",
    ),
    "not a tensor": (
        lambda: kernels.matmul([[1.0]], integers(1, 1)),
        TypeError,
        "expected a Tensor",
    ),
    "Linear features": (
        lambda: kernels.nn.Linear(4, 2, device=DEVICE)(integers(3, 5)),
        RuntimeError,
        "expected 4",
    ),
    "bad override": (
        lambda: kernels.matmul(integers(3, 4), integers(4, 6), block_m=-1),
        ValueError,
        "block_m",
    ),
    "atomic, deterministic": (
        lambda: kernels.matmul(
            integers(70, 150), integers(150, 90), strategy="streamk", fixup="atomic"
        ),
        ValueError,
        "deterministic=False",
    ),
}


@pytest.mark.parametrize("call", sorted(BAD_CALLS))
def test_bad_calls_raise_clear_errors(call):
    make, exception, message = BAD_CALLS[call]
    with pytest.raises(exception, match=message):
        make()


def test_zero_sized_products_match_torch():
    for a, b in (
        (integers(0, 4), integers(4, 3)),
        (integers(3, 0), integers(0, 5)),
        (integers(2, 0, 4), integers(2, 4, 3)),
    ):
        assert_same(
            kernels.matmul(a, b), torch.matmul(a, b), f"{tuple(a.shape)} @ {tuple(b.shape)}"
        )
    bias = integers(5)
    assert_same(
        kernels.addmm(bias, integers(3, 0), integers(0, 5)),
        bias.expand(3, 5).clone(),
        "addmm with K = 0",
    )


# The auto rule and its cache.
RULE = [  # (m, n, k, units, blocks, expected strategy and split-K's slices)
    (128, 128, 32, 4, (32, 32, 32), "data_parallel"),  # one K-iteration
    (128, 128, 512, 4, (32, 32, 32), "data_parallel"),  # 16 tiles: whole waves
    (160, 160, 512, 4, (32, 32, 32), "data_parallel"),  # 25 tiles >= 4 waves
    (32, 32, 512, 4, (32, 32, 32), "data_parallel"),  # 1 tile on 4 units, 16 K-iterations
    (32, 32, 2048, 4, (32, 32, 32), "split_k x4"),  # 1 tile on 4 units, 64 K-iterations
    (96, 64, 2048, 4, (32, 32, 32), "data_parallel"),  # 6 tiles: 1.5 waves
    (4096, 4096, 4096, 132, (128, 128, 64), "data_parallel"),  # 1024 tiles
    (1920, 2176, 4096, 132, (128, 128, 64), "data_parallel"),  # 255 tiles: last wave 93% full
    (1792, 2048, 4096, 132, (128, 128, 64), "data_parallel"),  # 224 tiles: last wave 70% full
    (1280, 2560, 4096, 132, (128, 256, 64), "data_parallel"),  # 100 tiles: 76% of a wave
    (1024, 2048, 4096, 132, (128, 256, 64), "split_k x2"),  # 64 tiles: under half a wave
    (1024, 2048, 2048, 132, (128, 256, 64), "data_parallel"),  # the same, 32 K-iterations
    (2560, 2048, 4096, 132, (128, 256, 64), "data_parallel"),  # 160 tiles: a wave + 28
    (256, 256, 8192, 132, (128, 128, 64), "split_k x8"),  # 4 tiles, 128 K-iterations
    (256, 256, 4096, 132, (128, 128, 64), "split_k x4"),  # slices of at least 16 iterations
    (128, 128, 65536, 132, (128, 128, 64), "split_k x16"),  # at most MAX_SPLIT slices
    (16, 14336, 4096, 132, (16, 256, 64), "streamk"),  # decode-like, 56 tiles, 64 iters
    (16, 65536, 4096, 132, (16, 256, 64), "data_parallel"),  # decode-like, 256 tiles
    (4, 4096, 4096, 132, (16, 256, 64), "streamk"),  # decode-like, 16 tiles
]


BLOCKS = [  # (m, n, dtype, batch, expected blocks on 132 SMs)
    (8192, 8192, "bf16", 1, (128, 256, 64)),  # 2048 tiles: 15.5 waves of either
    (1664, 2560, "bf16", 1, (128, 256, 64)),  # 130 tiles: one wave
    (1792, 2432, "bf16", 1, (128, 128, 64)),  # 266 tiles at 128x128, 140 at 128x256 (2 waves)
    (1024, 1024, "fp16", 4, (128, 256, 64)),  # the batch's 128 tiles: one wave
    (1024, 1024, "fp32", 1, (128, 128, 32)),
    (3, 4096, "bf16", 1, (16, 256, 64)),  # decode-like: the skinny side fitted
    (4096, 8, "fp32", 1, (128, 16, 32)),
    (40, 40, "bf16", 1, (64, 64, 64)),  # both sides fitted
]


@pytest.mark.parametrize("m, n, dtype, batch, expected", BLOCKS)
def test_the_auto_blocks(m, n, dtype, batch, expected):
    from kernels.rule import gpu_blocks

    assert gpu_blocks(m, n, dtype, 132, batch) == expected


@pytest.mark.parametrize("m, n, k, units, blocks, expected", RULE)
def test_the_auto_rule(m, n, k, units, blocks, expected):
    strategy, options = choose(m, n, k, units, *blocks)
    slices = f" x{options['split_k']}" if strategy == "split_k" else ""
    assert strategy + slices == expected


def test_the_auto_choice_is_cached_per_shape():
    a, b = integers(96, 64), integers(64, 80, seed=1)
    kernels.matmul(a, b)
    before = config_for.cache_info()
    kernels.matmul(a, b)
    after = config_for.cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)
    assert config_for(96, 80, 64, torch.float32, a.device) is config_for(
        96, 80, 64, torch.float32, a.device
    )


def test_overrides_key_the_cache_as_a_frozen_tuple():
    """Overrides in any order are one key, the (name, value) pairs sorted by name."""
    a, b = integers(96, 64), integers(64, 80, seed=1)
    kernels.matmul(a, b, block_n=16, block_m=64)
    before = config_for.cache_info()
    kernels.matmul(a, b, block_m=64, block_n=16)
    config = config_for(
        96, 80, 64, torch.float32, a.device, "auto", (("block_m", 64), ("block_n", 16))
    )
    after = config_for.cache_info()
    assert (after.hits, after.misses) == (before.hits + 2, before.misses)
    assert (config.block_m, config.block_n) == (64, 16)


@pytest.mark.parametrize(
    ("override", "strategy"),
    [
        (("fixup", "turnstile"), "streamk"),
        (("sk_hybrid", "one-wave"), "streamk"),
        (("split_k", 2), "split_k"),
        (("counters_per_xcd", 1), "work_stealing"),
        (("block_m", 16), None),
    ],
)
def test_an_option_of_one_strategy_selects_it_under_auto(override, strategy):
    """The rule alone picks data_parallel here (two K-iterations, on a GPU as in the
    interpreter); an option only one strategy takes wins over it, and a general option leaves
    the rule's choice."""
    a, b = integers(64, 64), integers(64, 64, seed=1)
    assert config_for(64, 64, 64, a.dtype, a.device).strategy == "data_parallel"
    config = config_for(64, 64, 64, a.dtype, a.device, "auto", (override,))
    assert config.strategy == (strategy or "data_parallel")
    assert getattr(config, override[0]) == override[1]
    got = kernels.matmul(a, b, **dict([override]))
    assert torch.equal(got, exact(a, b))


def test_options_of_two_strategies_are_refused_under_auto():
    a, b = integers(64, 64), integers(64, 64, seed=1)
    with pytest.raises(ValueError, match="fixup, split_k belong to different strategies"):
        kernels.matmul(a, b, fixup="turnstile", split_k=2)


def test_overrides_cross_the_operator_boundary():
    """With autograd the overrides reach the kernels through refsim::mm's string argument:
    the same configuration, so the same bits, as the direct call."""
    a, b = normals(70, 150), normals(150, 90, seed=1)
    options = {"strategy": "split_k", "split_k": 3, "block_m": 16}
    direct = kernels.matmul(a, b, **options)
    assert not torch.equal(direct, kernels.matmul(a, b, strategy="split_k")), "a useless test"
    through_operator = kernels.matmul(a.requires_grad_(), b, **options)
    assert through_operator.grad_fn is not None
    assert_same(through_operator.detach(), direct, "operator vs direct, with overrides")
    on_operator = torch.ops.refsim.mm(
        a.detach(), b, None, "split_k", True, "(('block_m', 16), ('split_k', 3))"
    )
    assert_same(on_operator, direct, "refsim::mm with overrides")


UNKNOWN_OVERRIDE = {
    "matmul": lambda: kernels.matmul(integers(3, 4), integers(4, 6), blockm=16),
    "addmm": lambda: kernels.addmm(integers(6), integers(3, 4), integers(4, 6), blockm=16),
    "Linear": lambda: kernels.nn.Linear(4, 6, blockm=16),
    "refsim::mm": lambda: torch.ops.refsim.mm(
        integers(3, 4), integers(4, 6), None, "auto", True, "(('blockm', 16),)"
    ),
}


@pytest.mark.parametrize("call", sorted(UNKNOWN_OVERRIDE))
def test_an_unknown_override_is_refused_naming_the_accepted_ones(call):
    with pytest.raises(TypeError, match="unknown configuration override blockm") as raised:
        UNKNOWN_OVERRIDE[call]()
    assert f"accepted (GemmConfig's fields): {', '.join(OVERRIDABLE)}" in str(raised.value)
    assert {"block_m", "fixup", "split_k"} <= set(OVERRIDABLE)
    assert not {"m", "n", "k", "dtype", "strategy"} & set(OVERRIDABLE)


def test_a_malformed_options_string_is_refused():
    with pytest.raises(ValueError, match="expected the repr of a tuple of"):
        torch.ops.refsim.mm(integers(3, 4), integers(4, 6), None, "auto", True, "block_m=16")


def test_two_threads_on_one_device_get_their_own_results():
    problems = [
        (integers(40 + i, 70, seed=i), integers(70, 30 + i, seed=100 + i)) for i in range(6)
    ]
    results = {}

    def work(indices):
        for i in indices:
            results[i] = kernels.matmul(*problems[i], strategy="streamk", fixup="last-arriver")

    threads = [threading.Thread(target=work, args=(range(j, 6, 2),)) for j in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (a, b) in enumerate(problems):
        assert_same(results[i], exact(a, b), f"problem {i}")


# torch.compile: on the CPU with the aot_eager backend (dynamo's graph and the autograd
# tracing, no code generation), on a GPU with inductor.
BACKEND = "aot_eager" if DEVICE == "cpu" else "inductor"


def _mlp(dtype=torch.float32, layer=None):
    """A two-layer MLP, 32 -> 64 -> 16, with fixed initial weights."""
    torch.manual_seed(0)
    layer = layer or kernels.nn.Linear
    return torch.nn.Sequential(
        layer(32, 64, device=DEVICE, dtype=dtype),
        torch.nn.ReLU(),
        layer(64, 16, device=DEVICE, dtype=dtype),
    )


COMPILED = {  # name -> a builder of a function of (x (M, 32), w (32, 16), bias (16,)) to a scalar
    "matmul": lambda: lambda x, w, bias: kernels.matmul(x, w).square().sum(),
    "matmul with overrides": lambda: (
        lambda x, w, bias: (
            kernels.matmul(x, w, strategy="streamk", fixup="last-arriver", block_m=16)
            .square()
            .sum()
        )
    ),
    "addmm": lambda: lambda x, w, bias: kernels.addmm(bias, x, w).square().sum(),
    "mlp": lambda: lambda x, w, bias, mlp=_mlp(): mlp(x).square().sum(),  # noqa: B008
}


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("target", sorted(COMPILED))
def test_compiles_without_graph_breaks_or_recompiles(target, dynamic):
    """fullgraph=True (a graph break raises); forward and backward agree with eager; one
    compilation for two calls of one shape, or for three sizes of a dynamic dimension."""
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    counter = CompileCounterWithBackend(BACKEND)
    function = COMPILED[target]()
    compiled = torch.compile(function, backend=counter, fullgraph=True)
    for m in (24, 40, 56) if dynamic else (24, 24):
        x, w, bias = (
            normals(m, 32, seed=m, grad=True),
            normals(32, 16, seed=1, grad=True),
            normals(16, seed=2, grad=True),
        )
        if dynamic:
            torch._dynamo.mark_dynamic(x, 0)
        loss = compiled(x, w, bias)
        loss.backward()
        reference = [t.detach().clone().requires_grad_() for t in (x, w, bias)]
        expected = function(*reference)
        expected.backward()
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-4)
        for mine, ref in zip((x, w, bias), reference):
            if ref.grad is not None:
                torch.testing.assert_close(mine.grad, ref.grad, rtol=1e-5, atol=1e-4)
    assert counter.frame_count == 1, f"compiled {counter.frame_count} times"


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_training_an_mlp_tracks_torch_linear(dtype, compiled):
    """20 SGD steps of the same two-layer MLP, from the same weights and data: kernels.nn.Linear
    against torch.nn.Linear, the losses within a dtype-sized tolerance at every step."""
    torch_dtype = TORCH_DTYPES[dtype]
    ours, theirs = _mlp(torch_dtype), _mlp(torch_dtype, torch.nn.Linear)
    theirs.load_state_dict(ours.state_dict())
    teacher = normals(32, 16, seed=99) / 4
    inputs = [normals(48, 32, dtype=dtype, seed=s) for s in range(20)]
    data = [(x, (x.float() @ teacher).to(torch_dtype)) for x in inputs]
    losses = []
    for model in (ours, theirs):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        step = torch.compile(model, fullgraph=True, backend=BACKEND) if compiled else model
        history = []
        for x, target in data:
            optimizer.zero_grad()
            loss = (step(x).float() - target.float()).square().mean()
            loss.backward()
            optimizer.step()
            history.append(loss.item())
        losses.append(history)
    tolerance = {"fp32": 1e-4, "bf16": 3e-2}[dtype]
    for i, (mine, reference) in enumerate(zip(*losses)):
        assert abs(mine - reference) <= tolerance * abs(reference), (
            f"step {i}: loss {mine} vs torch.nn.Linear's {reference}"
        )
    assert losses[1][-1] < losses[1][0], "the reference loop did not learn: a useless test"


def test_tracing_never_reaches_the_kernels_with_fake_tensors(monkeypatch):
    """Under torch.compile (forward and the AOT-traced backward) the kernels run only on real
    tensors: the direct path must step aside for every tracer."""
    from kernels import ops

    seen = []
    product = ops._product

    def spy(a, *rest):
        seen.append(type(a))
        return product(a, *rest)

    monkeypatch.setattr(ops, "_product", spy)
    torch._dynamo.reset()
    compiled = torch.compile(
        lambda x, w, bias: kernels.addmm(bias, x, w).square().sum(), fullgraph=True, backend=BACKEND
    )
    x, w, bias = (
        normals(24, 32, grad=True),
        normals(32, 16, seed=1, grad=True),
        normals(16, seed=2, grad=True),
    )
    compiled(x, w, bias).backward()
    assert seen and set(seen) == {torch.Tensor}, seen


@pytest.mark.skipif(DEVICE != "cuda", reason="streams need a GPU")
def test_each_stream_gets_its_own_workspace():
    from kernels.workspace import workspace_for

    a, b = integers(70, 150), integers(150, 90, seed=1)
    device = a.device
    side = torch.cuda.Stream(device)
    default_workspace = workspace_for(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        assert workspace_for(device) is not default_workspace
        assert workspace_for(device) is workspace_for(device)
        got = kernels.matmul(a, b, strategy="streamk", fixup="last-arriver")
    torch.cuda.current_stream(device).wait_stream(side)
    assert workspace_for(device) is default_workspace
    assert_same(got, exact(a, b), "on a side stream")


def test_importing_kernels_allocates_and_registers_nothing():
    """No workspace and no operator exists until the first call (checked in a fresh process)."""
    import subprocess
    import sys

    probe = (
        "import torch, kernels, kernels.workspace as w; "
        "assert not w._registry, w._registry; "
        "assert not hasattr(torch.ops.refsim, 'mm'); "
        "kernels.matmul; assert hasattr(torch.ops.refsim, 'mm'); "
        "assert not w._registry; print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300
    )
    assert result.stdout.strip() == "ok", result.stderr[-2000:]


def _count_launch_sets(monkeypatch):
    """The launch sets enqueued the ordinary way (a prepared repeat enqueues none)."""
    import kernels.launch

    enqueued = []
    real = kernels.launch._enqueue

    def spy(launch_set):
        enqueued.append(launch_set)
        return real(launch_set)

    monkeypatch.setattr(kernels.launch, "_enqueue", spy)
    return enqueued


def test_a_batch_runs_in_one_data_parallel_launch(monkeypatch):
    from kernels import prepared

    prepared.forget()
    enqueued = _count_launch_sets(monkeypatch)
    a, b = integers(3, 40, 24, seed=20), integers(3, 24, 48, seed=21)
    assert_same(kernels.bmm(a, b), torch.bmm(a, b))
    (launch,) = enqueued[0].launches
    assert len(enqueued) == 1 and launch.grid[1] == 3
    c, d = integers(3, 40, 24, seed=22), integers(3, 24, 48, seed=23)
    assert_same(kernels.bmm(c, d), torch.bmm(c, d))  # prepared: the new batch's own tensors
    assert len(enqueued) == 1


def test_a_broadcast_batch_operand_is_read_with_batch_stride_zero(monkeypatch):
    enqueued = _count_launch_sets(monkeypatch)
    a, b = integers(4, 40, 24, seed=24), integers(1, 24, 48, seed=25)
    assert_same(kernels.matmul(a, b.expand(4, 24, 48)), torch.matmul(a, b))
    assert enqueued[0].launches[0].args[1].stride(0) == 0


def test_an_explicit_strategy_runs_each_product_of_a_batch(monkeypatch):
    enqueued = _count_launch_sets(monkeypatch)
    a, b = integers(2, 40, 96, seed=26), integers(2, 96, 48, seed=27)
    out = torch.empty(2, 40, 48, device=DEVICE)
    assert kernels.bmm(a, b, out=out, strategy="split_k", split_k=3) is out
    assert_same(out, torch.bmm(a, b))
    # one product's split and reduction launches; the second product repeats them, prepared
    assert [len(s.launches[0].grid) for s in enqueued] == [1]
    assert len(enqueued[0].launches) == 2


def test_run_batched_refuses_what_it_cannot_run():
    from kernels.auto import config_for
    from kernels.launch import run_batched

    a, b = integers(2, 40, 24), integers(2, 24, 48)
    config = config_for(40, 48, 24, a.dtype, a.device)
    with pytest.raises(ValueError, match="one data-parallel launch"):
        run_batched(config.replace(strategy="persistent"), a, b)
    with pytest.raises(ValueError, match="same number"):
        run_batched(config, a, integers(3, 24, 48))
    with pytest.raises(ValueError, match="3-D"):
        run_batched(config, a[0], b[0])
    with pytest.raises(ValueError, match="does not match"):
        run_batched(config, integers(2, 40, 32), integers(2, 32, 48))
