"""Symbolic sizes: exact normal forms, and agreement with concrete inference on random networks."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archdsl
from archdsl import ir
from archdsl.errors import ArchError, ShapeError
from archdsl.minimum import minimum_input
from archdsl.program import load_program
from archdsl.source import Source
from archdsl.symbolic import Sym, SymbolicError, smallest_satisfying

EXAMPLES = int(os.environ.get("ARCHDSL_HYPOTHESIS_EXAMPLES", "60"))
H = Sym.symbol("H")
W = Sym.symbol("W")


def window(size, k, s, p, d):
    """PyTorch's output size, written out independently of archdsl.shapes."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


windows = st.tuples(
    st.integers(1, 7), st.integers(1, 4), st.integers(0, 3), st.integers(1, 3)
)  # k, s, p, d


@settings(max_examples=EXAMPLES * 3, deadline=None)
@given(st.lists(windows, min_size=1, max_size=8), st.integers(1, 600))
def test_chains_of_windows_evaluate_like_integers(chain, h):
    size, concrete = H, h
    for k, s, p, d in chain:
        size = window(size, k, s, p, d)
        concrete = window(concrete, k, s, p, d)
    value = size if isinstance(size, int) else size.evaluate({"H": h})
    assert value == concrete


def test_normal_form_makes_equal_sizes_equal():
    # floor((floor((H + 1) / 2) + 3) / 2) == floor((H + 7) / 4)
    assert ((H + 1) // 2 + 3) // 2 == (H + 7) // 4
    # A 3x3 same-padded convolution keeps H exactly; a 1x1 one with stride 2 matches a 3x3 pool, stride 2, pad 1.
    assert window(H, 3, 1, 1, 1) == H
    assert window(H, 1, 2, 0, 1) == window(H, 3, 2, 1, 1)
    assert window(H, 3, 1, 0, 1) != H
    assert str(window(H, 11, 4, 1, 1)) == "floor((H + 3) / 4) - 2"


def test_operations_without_an_exact_form_are_refused():
    for bad in (lambda: (H + W) // 2, lambda: H / 2, lambda: H < 3, lambda: bool(H), lambda: (2 * H + 1) // 3):
        with pytest.raises(SymbolicError):
            bad()


@pytest.mark.parametrize("other", [1.5, 2.0, True, None])
@pytest.mark.parametrize("op", ["+", "-", "*", "/", "//", "%"])
def test_every_operator_with_what_has_no_exact_form_is_a_symbolic_error(op, other):
    """Never a TypeError: a decimal, a boolean, a symbolic divisor or '/' on either side."""
    import operator

    apply = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
             "//": operator.floordiv, "%": operator.mod}[op]
    other = W if other is None else other
    if isinstance(other, Sym) and op in ("+", "-", "*"):
        return  # defined: H + W, H - W, H·W
    for left, right in ((H, other), (other, H)):
        with pytest.raises(SymbolicError):
            apply(left, right)


atoms = st.builds(lambda name, a, m: (Sym.symbol(name) + a) // m, st.sampled_from("HW"), st.integers(0, 9),
                  st.integers(1, 8))


@settings(max_examples=EXAMPLES * 5, deadline=None)
@given(st.lists(st.tuples(st.integers(-4, 4), atoms, atoms, st.booleans()), min_size=1, max_size=4),
       st.integers(-20, 20))
def test_a_decided_sign_holds_at_every_size(terms, constant):
    """sign() says 1 or -1 only where the value has that sign at every H, W >= 1."""
    value = constant
    for coeff, a, b, product in terms:
        value = value + coeff * (a * b if product else a)
    if not isinstance(value, Sym) or value.sign() is None:
        return
    for h in range(1, 70, 3):
        for w in (1, 2, 3, 7, 50):
            at = value.evaluate({"H": h, "W": w})
            assert at != 0 and (at > 0) == (value.sign() > 0), (value, h, w)


def test_signs_that_are_decided():
    assert (H.sign(), (-H).sign(), (H - 1).sign(), (H + 1 - W).sign()) == (1, -1, None, None)
    assert ((H + 1) // 2).sign() == 1  # at least floor(2 / 2)
    assert (H // 2).sign() is None  # 0 below H = 2
    assert (3 - 2 * ((H + 1) // 2) - 2).sign() == -1


def test_factored_printing():
    flat = 512 * (H // 32) * (W // 32)
    assert str(flat * 4096 + 4096) == "2097152·floor(H / 32)·floor(W / 32) + 4096"
    assert str(256 * (window(H, 3, 2, 0, 1) - 2) * (window(W, 3, 2, 0, 1) - 2)).startswith("256·(floor")


@given(st.integers(-50, 50), st.integers(1, 40), st.integers(-20, 20), st.integers(1, 30))
def test_smallest_satisfying_is_the_boundary(a, m, b, at_least):
    size = (H + a) // m + b
    if isinstance(size, int):
        return
    found = smallest_satisfying(size, "H", at_least)
    assert found is not None
    assert size.evaluate({"H": found}) >= at_least
    if found > 1:
        assert size.evaluate({"H": found - 1}) < at_least


# -- random networks -------------------------------------------------------------------------------


@st.composite
def networks(draw):
    """A random image network over [C, H, W]: windows (per axis too, and pools in ceil mode), same-padded convs
    in add/concat branches, a head (some through tokens and attention, whose counts grow with H·W)."""
    items = []
    channels = draw(st.integers(1, 4))
    for _ in range(draw(st.integers(1, 6))):
        choice = draw(st.sampled_from(["conv", "convaxb", "maxpool", "avgpool", "concat", "add", "bn", "relu"]))
        if choice == "conv":
            (k, s, p, d), (kw, sw, pw, dw) = draw(windows), draw(windows)
            channels = draw(st.integers(1, 8))
            if draw(st.booleans()):
                items.append(f"conv {channels} k={k} s={s} p={p} d={d}")
            else:
                items.append(f"conv {channels} k=({k}, {kw}) s=({s}, {sw}) p=({p}, {pw}) d=({d}, {dw})")
        elif choice == "convaxb":
            channels = draw(st.integers(1, 8))
            items.append(f"{draw(st.sampled_from(['conv1x7', 'conv7x1', 'conv3x5']))} {channels} s={draw(st.integers(1, 3))}")
        elif choice in ("maxpool", "avgpool"):
            k, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
            s, p, pw = draw(st.integers(1, 3)), draw(st.integers(0, k // 2)), draw(st.integers(0, kw // 2))
            ceil = draw(st.booleans())
            window = f"k={k} s={s} p={p}" if draw(st.booleans()) else f"k=({k}, {kw}) s={s} p=({p}, {pw})"
            items.append(f"{choice} {window} ceil={'true' if ceil else 'false'}")
        elif choice == "concat":
            a, b = draw(st.integers(1, 5)), draw(st.integers(1, 5))
            items.append(f"concat [ conv3x3 {a} | conv1x1 {b} | maxpool k=3 s=1 p=1 ]")
            channels = a + b + channels
        elif choice == "add":
            stride = draw(st.integers(1, 2))
            items.append(f"add [ conv3x3 {channels} s={stride}; relu | conv1x1 {channels} s={stride} ]")
        else:
            items.append(choice)
    head = draw(st.sampled_from(["flatten; linear 5", "gap; flatten; linear 5", "adaptiveavgpool 2; flatten",
                                 "tokens; linear 8; attention heads=2; tokenmean; linear 5",
                                 "tokens; ln; patchmerge; clstoken; attention heads=1; token 0",
                                 "tokens; linear 4; untokens; flatten"]))
    return "network n : [3, H, W] = " + "; ".join(items) + "; " + head


def _resolve(text, shape=None):
    program = load_program(Source("<net>", text))
    from archdsl.resolve import resolve_network

    return resolve_network(program, None, None, shape)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks(), st.integers(0, 40), st.integers(0, 40))
def test_symbolic_shapes_evaluate_to_concrete_inference(text, extra_h, extra_w):
    try:
        symbolic = _resolve(text)
    except ArchError:
        return  # a random network whose branches never join; concrete sizes reject it as well
    program = load_program(Source("<net>", text))
    smallest = minimum_input(program)
    h, w = smallest.smallest["H"] + extra_h, smallest.smallest["W"] + extra_w
    concrete = _resolve(text, (3, h, w))
    values = {"H": h, "W": w}

    def at(dim):
        return dim.evaluate(values) if isinstance(dim, Sym) else dim

    for sym_node, node in zip(ir.walk(symbolic.body), ir.walk(concrete.body), strict=True):
        assert sym_node.path == node.path
        assert tuple(at(d) for d in sym_node.out_shape) == tuple(node.out_shape)
        assert type(sym_node.out_shape) is type(node.out_shape)
        assert at(sym_node.params) == node.params
        assert at(sym_node.macs) == node.macs
    assert at(symbolic.params) == concrete.params and at(symbolic.macs) == concrete.macs


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks())
def test_minimum_input_is_accepted_and_one_pixel_less_rejected(text):
    try:
        _resolve(text)
    except ArchError:
        return
    smallest = minimum_input(load_program(Source("<net>", text)))
    c, h, w = smallest.shape()
    _resolve(text, (c, h, w))
    if h > 1:
        with pytest.raises(ShapeError):
            _resolve(text, (c, h - 1, w))
    if w > 1:
        with pytest.raises(ShapeError):
            _resolve(text, (c, h, w - 1))


def test_minimum_inputs_of_the_classic_networks_are_what_torch_accepts():
    torch = pytest.importorskip("torch")
    for name in ("lenet", "alexnet", "vgg11", "nin", "densenet", "googlenet"):
        program = load_program(Source.read(f"specs/{name}.arch"))
        c, h, w = minimum_input(program).shape()
        module = archdsl.load(f"specs/{name}.arch", input_shape=(c, h, w)).build().eval()
        with torch.no_grad():
            assert module(torch.zeros(1, c, h, w)).shape == (1, 10)
            if h > 1:
                with pytest.raises(RuntimeError):
                    module(torch.zeros(1, c, h - 1, w))


def test_symbolic_input_from_the_spec_and_from_the_command_line_agree():
    text = "network g(classes = 10) : [1, H, W] -> [classes] = conv 8 k=3 s=2; relu; gap; flatten; linear classes"
    from_spec = archdsl.loads(text)
    assert from_spec.input_shape == (1, H, W)
    assert from_spec.ir.body[0].out_shape == (8, window(H, 3, 2, 0, 1), window(W, 3, 2, 0, 1))
    from_cli = archdsl.loads(text.replace("[1, H, W]", "[1, 28, 28]"), input_shape=(1, H, W))
    assert from_cli.fingerprint == from_spec.fingerprint  # the same graph; only source columns differ


def test_building_a_symbolic_network_asks_for_a_concrete_input():
    pytest.importorskip("torch")
    net = archdsl.loads("network g : [1, H, W] = conv 8 k=3; gap; flatten")
    with pytest.raises(ArchError, match="concrete"):
        net.build()


def test_branches_that_differ_for_some_inputs_are_reported_with_both_forms():
    text = "network g : [1, H, W] = concat [ conv3x3 4 | conv 4 k=3 ]"
    with pytest.raises(ShapeError) as err:
        archdsl.loads(text)
    assert "H×W" in err.value.message and "(H - 2)" in err.value.message
    assert err.value.hint == "branch 2 is 2 pixels smaller than branch 1: padding 1 more on it fixes it"


def test_a_large_minimum_is_found_at_once_and_one_past_the_search_is_an_error():
    """The minimum of 40 halvings is 2**40 pixels; the flatten report must not count up to it."""
    program = load_program(Source("<net>", "network n : [1, H, W] = repeat 40 maxpool2; flatten; linear 2"))
    result = minimum_input(program)
    assert result.shape() == (1, 2**40, 2**40)
    assert f"it grows at H = {2**41}, {3 * 2**40}" in result.report()
    beyond = load_program(Source("<net>", f"network n : [1, H, W] = avgpool {2**41 + 1}; flatten; linear 2"))
    with pytest.raises(ShapeError, match=f"no input up to {2**40:,} pixels in H is large enough for avgpool_0"):
        minimum_input(beyond)


# -- tokens ------------------------------------------------------------------------------------------


def test_attention_counts_at_a_symbolic_input_are_the_concrete_ones():
    text = "network n : [3, H, W] = conv 64 k=8 s=8; tokens; clstoken; attention heads=4; token 0; linear 10"
    symbolic, concrete = archdsl.loads(text), archdsl.loads(text, input_shape=(3, 40, 24))
    tokens = (H // 8) * (W // 8) + 1
    attention = next(layer for layer in symbolic.layers() if layer.kind == "attention")
    assert attention.out_shape == ir.Tokens((tokens, 64))
    assert attention.macs == 4 * tokens * 64 * 64 + 2 * tokens * tokens * 64  # projections, QKᵀ, weights times V
    at = {"H": 40, "W": 24}
    assert (attention.macs.evaluate(at), symbolic.macs.evaluate(at)) == (
        next(layer for layer in concrete.layers() if layer.kind == "attention").macs, concrete.macs)


def test_the_minimum_input_of_a_token_network_follows_its_grid():
    # patchmerge pads an odd grid, so a 1×1 grid of 8×8 patches (an 8×8 image) is the smallest.
    text = "network n : [3, H, W] = conv 32 k=8 s=8; tokens; patchmerge; linear 32; attention heads=4; tokenmean"
    result = minimum_input(load_program(Source("<net>", text)))
    assert result.shape() == (3, 8, 8)
    assert result.set_by["H"].startswith("conv_0 (conv at <net>:1:25), whose output is floor(H / 8)")


@pytest.mark.parametrize(("layers", "message"), [
    ("clstoken; posembed 17", "posembed 17 needs a number of tokens known before the input size"),
    ("windowattention heads=2 window=2", "windowattention needs a grid known before the input size"),
    ("windowattention2 heads=2 window=2", "windowattention2 needs a grid known before the input size"),
    ("partitionattention heads=2 partition=2", "partitionattention needs a grid known before the input size"),
    ("token 3", "token: whether token 3 exists depends on the input size"),
    ("untokens 4 4", "untokens 4×4 needs a number of tokens known before the input size"),
])  # fmt: skip
def test_token_layers_that_fix_the_input_say_so_at_a_symbolic_input(layers, message):
    text = f"network n : [3, H, W] = conv 16 k=8 s=8; tokens; {layers}"
    with pytest.raises(ShapeError) as err:
        _resolve(text)
    assert err.value.message.startswith(message), err.value.message
    _resolve(text, (3, 32, 32))  # concrete: 4×4 patches, 16 tokens and a class token
    with pytest.raises(ShapeError) as err:
        minimum_input(load_program(Source("<net>", text)))
    assert err.value.notes[-1][0] == "--min-input resolves the network at a symbolic input 3×H×W, which this layer refuses"
