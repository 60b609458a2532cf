"""The registry × the backends: every layer kind has every rule, and each rule agrees with torch.

For each kind: its arguments are declared, a valid input gives a shape, and the torch module it builds
takes a real tensor of that shape to the inferred shape, with the declared parameter count and the
declared MACs (counted from the module itself). Every kind has a label, a family the diagrams know,
and a Python-export emitter; every name the language documents resolves. Windows per axis and
ceil_mode give torch's sizes over a grid of sizes, windows, strides and paddings, and symbolically.
"""

from __future__ import annotations

import math

import pytest
import torch
from strategies import count_params, leaf_macs
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

import archdsl
from archdsl.ir import Tokens, declared_shape
from archdsl.layers import REGISTRY, REQUIRED, ArgSpec, LayerKind, lookup, suggest
from archdsl.shapes import LayerError, pooled_size, spatial
from archdsl.symbolic import Sym

KINDS = sorted(REGISTRY)

# Values for required arguments, chosen so that each kind takes a 4×9×9 image, a 12-vector, 16×8 tokens or 4×4×8
# tokens on a grid.
REQUIRED_VALUES = {"out": 6, "k": 3, "h": 2, "p": 0.25, "groups": 2, "parts": 2, "index": 1, "start": 1, "end": 3,
                   "heads": 2, "window": 2, "length": 16, "partition": 2}
INPUTS = ((4, 9, 9), (12,), Tokens((16, 8)), Tokens((4, 4, 8)))


def sample_args(kind: LayerKind, spelling: str | None = None) -> dict:
    """The kind's arguments at their defaults, required ones filled in, finished as resolve does."""
    found = lookup(spelling or kind.key)
    assert found is not None and found[0] is kind
    preset = {k: getattr(v, "value", v) for k, v in found[1].items()}
    args = {}
    for spec in kind.args:
        if spec.name in preset:
            args[spec.name] = preset[spec.name]
        elif spec.default is REQUIRED:
            args[spec.name] = REQUIRED_VALUES[spec.name]
        else:
            args[spec.name] = spec.default
    kind.finish(spelling or kind.key, args)
    kind.validate(args)
    return args


def valid_input(kind: LayerKind, args: dict) -> tuple[int, ...]:
    for shape in INPUTS:
        try:
            kind.infer(args, shape)
        except LayerError:
            continue
        return shape
    raise AssertionError(f"{kind.key} takes neither an image, a vector nor tokens")


@pytest.mark.parametrize("key", KINDS)
def test_kind_declares_everything(key: str) -> None:
    kind = REGISTRY[key]
    assert kind.key == key
    assert isinstance(kind.family, str) and kind.family
    assert kind.doc, f"{key} has no doc for `archdsl layers`"
    assert all(isinstance(spec, ArgSpec) for spec in kind.args)
    assert len({spec.name for spec in kind.args}) == len(kind.args)
    for method in ("infer", "params", "macs", "build", "label"):
        assert callable(getattr(kind, method))
    args = sample_args(kind)
    assert isinstance(kind.label(args), str) and kind.label(args)


@pytest.mark.parametrize("key", KINDS)
def test_torch_module_agrees_with_the_static_rules(key: str) -> None:
    kind = REGISTRY[key]
    args = sample_args(kind)
    shape = valid_input(kind, args)
    out_shape = kind.infer(args, shape)
    module = kind.build(args, shape)
    assert isinstance(module, nn.Module) and not isinstance(module, LazyModuleMixin)
    assert count_params(module) == kind.params(args, shape)
    x = torch.randn(2, *shape)
    y = module.eval()(x)
    assert declared_shape(tuple(y.shape[1:])) == out_shape or isinstance(out_shape, Tokens)
    assert tuple(y.shape[1:]) == tuple(out_shape)
    assert leaf_macs(module, y, (x,)) == kind.macs(args, shape, out_shape)


@pytest.mark.parametrize("key", KINDS)
def test_every_kind_says_which_layouts_it_takes(key: str) -> None:
    # Each kind takes some of image, vector and tokens; where it refuses one, the message names the input as
    # what it is ("197×768 tokens"), and the hint the layer that converts, where there is one.
    kind = REGISTRY[key]
    args = sample_args(kind)
    for shape in INPUTS:
        try:
            kind.infer(args, shape)
        except LayerError as err:
            if isinstance(shape, Tokens) and err.arg is None:
                assert "tokens" in err.message, (key, err.message)


SUGAR = ["conv1x1", "conv3x3", "conv5x5", "conv7x7", "conv11x11", "maxpool2", "maxpool3", "avgpool2", "avgpool5", "gap", "fc"]


@pytest.mark.parametrize("spelling", SUGAR)
def test_sugar_spellings_build_what_they_mean(spelling: str) -> None:
    kind, _ = lookup(spelling)
    args = sample_args(kind, spelling)
    shape = (4, 16, 16) if kind.key != "linear" else (12,)
    out_shape = kind.infer(args, shape)
    module = kind.build(args, shape)
    assert tuple(module.eval()(torch.randn(2, *shape)).shape[1:]) == out_shape
    if spelling.startswith("conv"):
        k = int(spelling[4:].split("x")[0])
        assert (module.kernel_size, module.padding, out_shape) == ((k, k), ((k - 1) // 2,) * 2, (6, 16, 16))
    elif spelling.startswith(("maxpool", "avgpool")):
        k = int(spelling[7:])
        assert (module.kernel_size, module.stride, out_shape) == (k, k, (4, 16 // k, 16 // k))
    elif spelling == "gap":
        assert out_shape == (4, 1, 1)
    else:
        assert out_shape == (6,)


def test_dilated_same_conv_keeps_the_size() -> None:
    kind, preset = lookup("conv3x3")
    args = sample_args(kind, "conv3x3")
    args.update(d=2, p=preset["p"].value)
    kind.finish("conv3x3", args)
    assert args["p"] == 2
    assert kind.infer(args, (4, 9, 9)) == (6, 9, 9)


def test_even_sugar_kernel_has_no_same_padding() -> None:
    kind, preset = lookup("conv2x2")
    args = {"out": 4, "k": 2, "s": 1, "p": preset["p"].value, "d": 1, "groups": 1, "bias": True}
    with pytest.raises(LayerError):
        kind.finish("conv2x2", args)


def test_bn_is_1d_on_vectors_and_2d_on_images() -> None:
    kind = REGISTRY["bn"]
    args = sample_args(kind)
    assert isinstance(kind.build(args, (12,)), nn.BatchNorm1d)
    assert isinstance(kind.build(args, (4, 9, 9)), nn.BatchNorm2d)
    assert kind.params(args, (12,)) == 24 and kind.params(args, (4, 9, 9)) == 8


@pytest.mark.parametrize("groups", [1, 2, 3])
def test_grouped_strided_dilated_conv_counts(groups: int) -> None:
    kind = REGISTRY["conv"]
    args = {"out": 6, "k": 3, "s": 2, "p": 1, "d": 2, "groups": groups, "bias": False}
    shape = (6, 11, 10)
    out_shape = kind.infer(args, shape)
    module = kind.build(args, shape)
    y = module(torch.randn(1, *shape))
    assert tuple(y.shape[1:]) == out_shape
    assert kind.params(args, shape) == count_params(module) == 6 * (6 // groups) * 9
    assert kind.macs(args, shape, out_shape) == leaf_macs(module, y) == math.prod(out_shape) * (6 // groups) * 9


def test_families_have_diagram_colours() -> None:
    from archdsl.graphviz_backend import FAMILY_COLOURS

    assert {REGISTRY[k].family for k in KINDS} <= set(FAMILY_COLOURS)


def test_every_kind_has_a_python_emitter() -> None:
    from archdsl.export.python import EMITTERS

    assert set(EMITTERS) == set(REGISTRY)


def test_every_documented_name_resolves() -> None:
    names = ["conv", "conv3x3", "conv1x7", "conv7x1", "conv3x5", "maxpool", "maxpool3", "avgpool", "avgpool2", "gap",
             "adaptiveavgpool", "adaptivemaxpool", "gmp", "flatten", "linear", "fc", "dropout", "droppath", "relu",
             "sigmoid", "tanh", "gelu", "leakyrelu", "softmax", "relu6", "silu", "swish", "hardswish", "hardsigmoid",
             "elu", "selu", "mish", "bn", "lrn", "ln", "gn", "shuffle", "scale", "id"]
    for name in names:
        assert lookup(name) is not None, name
    assert lookup("conv3x") is None and lookup("convolution") is None and lookup("maxpoolx") is None


def test_close_names_are_suggested() -> None:
    assert suggest("conv3x") == "conv3x3"
    assert suggest("relux") == "relu"
    assert suggest("linaer") == "linear"
    assert suggest("vgg_blok", ("vgg_block",)) == "vgg_block"
    assert suggest("qqqqqq") is None


@pytest.mark.parametrize(
    ("written", "meant"),
    [("batchnorm", "bn"), ("BatchNorm2d", "bn"), ("Dense", "linear"), ("Linear", "linear"), ("MaxPool2d", "maxpool"),
     ("conv2d", "conv"), ("ReLU", "relu"), ("LeakyReLU", "leakyrelu"), ("Identity", "id"), ("cnv3x3", "conv3x3"),
     ("convolution", None)],
)
def test_names_from_other_libraries_suggest_the_kind(written: str, meant: str | None) -> None:
    assert suggest(written) == meant


# -- windows per axis, ceil_mode, the new kinds ----------------------------------------------------------

def torch_size(cls, size: int, k: int, s: int, p: int, ceil: bool) -> int | None:
    """The size torch's pooling gives along one axis, or None when it refuses."""
    try:
        out = cls(k, stride=s, padding=p, ceil_mode=ceil)(torch.empty(1, 1, size, 1, device="meta"))
    except RuntimeError:
        return None
    return out.shape[2]


@pytest.mark.parametrize("cls", [nn.MaxPool2d, nn.AvgPool2d])
@pytest.mark.parametrize("ceil", [False, True])
def test_pooled_sizes_are_torchs_in_both_modes(cls, ceil: bool) -> None:
    for size in range(1, 13):
        for k in range(1, 6):
            for s in range(1, 5):
                for p in range(k // 2 + 1):
                    expected = torch_size(cls, size, k, s, p, ceil)
                    try:
                        got = spatial("maxpool", (size, 1), k, s, p, 1, ceil)[0]
                    except LayerError:
                        got = None
                    assert got == expected, (size, k, s, p, ceil)


def test_ceil_mode_drops_a_last_window_that_would_start_in_the_padding() -> None:
    # 6 + 2·1 padded, window 2, stride 2: ceil gives 5 windows, the last starting at 8, past 6 + 1.
    assert pooled_size(6, 2, 2, 1, 1, ceil=True) == 4 == pooled_size(6, 2, 2, 1, 1)
    assert pooled_size(7, 3, 2, 0, 1, ceil=True) == 3 and pooled_size(8, 3, 2, 0, 1, ceil=True) == 4
    assert spatial("maxpool", (2, 2), 3, 2, 0, 1, ceil=True) == (1, 1)  # torch accepts it: the window starts inside


def test_symbolic_sizes_follow_ceil_mode_and_pairs() -> None:
    H, W = Sym.symbol("H"), Sym.symbol("W")
    for k, s, p in [(3, 2, 0), (3, 2, 1), (2, 2, 1), (5, 3, 2), ((3, 2), (2, 1), (1, 0))]:
        for ceil in (False, True):
            symbolic = spatial("maxpool", (H, W), k, s, p, 1, ceil)
            for h in range(5, 30):
                concrete = spatial("maxpool", (h, h + 1), k, s, p, 1, ceil)
                assert tuple(d.evaluate({"H": h, "W": h + 1}) for d in symbolic) == concrete, (k, s, p, ceil, h)


WINDOWS = [
    "conv 6 k=(1, 7) p=(0, 3)", "conv 6 k=(3, 5) s=(2, 1) d=(1, 2)", "conv1x7 6", "conv7x1 6 s=2", "conv3x5 6 d=(2, 1)",
    "conv 6 k=(1, 3) groups=2 bias=false", "maxpool (3, 2) s=(2, 1)", "avgpool (2, 3) p=(1, 0) ceil=true",
    "avgpool 3 s=2 p=1 ceil=true count_include_pad=false", "maxpool 3 s=2 ceil=true", "maxpool2 ceil=true",
]  # fmt: skip


@pytest.mark.parametrize("text", WINDOWS)
def test_windows_per_axis_build_what_the_rules_say(text: str) -> None:
    net = archdsl.loads(f"network n : [4, 11, 13] = {text}")
    (layer,) = net.layers()
    module = net.build()
    (sub,) = module.children()
    y = module(torch.randn(2, 4, 11, 13))
    assert tuple(y.shape[1:]) == layer.out_shape
    assert (count_params(module), leaf_macs(sub, y)) == (layer.params, layer.macs)


@pytest.mark.parametrize(("text", "label"), [
    ("conv 192 k=(1, 7) p=(0, 3)", "conv 1×7, 192"), ("conv7x1 192 s=(2, 1)", "conv 7×1, 192, /2×1"),
    ("conv1x7 8 d=(1, 2)", "conv 1×7, 8, dil 1×2"), ("conv 8 k=(3, 3) s=(2, 2)", "conv 3×3, 8, /2"),
    ("maxpool (3, 2) s=(2, 1)", "maxpool 3×2, /2×1"), ("avgpool 3 s=2 ceil=true", "avgpool 3×3, /2, ceil"),
    ("gmp", "global maxpool"), ("adaptivemaxpool 2 3", "adaptive maxpool 2×3"), ("gn 4", "GN 4"), ("ln", "LN"),
    ("scale", "scale 1e-06"), ("droppath 0.1", "droppath 0.1"), ("shuffle 2", "shuffle 2"),
    ("gelu approximate=true", "GELU tanh"), ("elu", "ELU"), ("elu 0.5", "ELU 0.5"), ("swish", "SiLU"),
])  # fmt: skip
def test_labels_of_the_new_kinds_and_windows(text: str, label: str) -> None:
    (layer,) = archdsl.loads(f"network n : [8, 16, 16] = {text}").layers()
    assert REGISTRY[layer.kind].label(layer.args) == label


def test_same_padding_of_convaxb_per_axis() -> None:
    kind, preset = lookup("conv1x7")
    assert preset["k"] == (1, 7)
    args = {"out": 4, "k": (1, 7), "s": 1, "p": preset["p"].value, "d": (2, 1), "groups": 1, "bias": True}
    kind.finish("conv1x7", args)
    assert args["p"] == (0, 3)
    args.update(p=preset["p"].value, d=1)
    kind.finish("conv1x7", args)
    assert args["p"] == (0, 3) and kind.infer(args, (3, 9, 9)) == (4, 9, 9)
    with pytest.raises(LayerError, match="even kernel"):
        kind.finish("conv1x4", {**args, "k": (1, 4), "p": preset["p"].value})


@pytest.mark.parametrize(("key", "text"), [("gn", "gn 5"), ("shuffle", "shuffle 5")])
def test_groups_must_divide_the_channels(key: str, text: str) -> None:
    with pytest.raises(archdsl.ArchError) as caught:
        archdsl.loads(f"network n : [12, 4, 4] = {text}")
    assert caught.value.message == f"{key}: 5 groups do not divide the 12 channels"
    assert caught.value.hint == f"the number of groups must divide the 12 channels: {key} 4 or {key} 6 would"
    assert (caught.value.line, caught.value.column) == (1, 26 + len(key) + 1)


@pytest.mark.parametrize(("text", "message"), [
    ("conv 8 k=(1, 3, 3)", "conv k (kernel size) must be a whole number or a list of two (height, width), not [1, 3, 3]"),
    ("conv 8 k=(3, -1)", "conv k (kernel size) must be positive, but it is [3, -1]"),
    ("maxpool k=-2", "maxpool k (window size) must be positive, but it is -2"),
    ("maxpool 3 p=(2, 0)", "maxpool: padding 2×0 is more than half the window 3"),
    ("avgpool 2 s=(0, 1)", "avgpool: stride must be positive, but it is [0, 1]"),
    ("maxpool 2 count_include_pad=false", "maxpool has no argument 'count_include_pad'"),
])  # fmt: skip
def test_windows_that_are_refused(text: str, message: str) -> None:
    with pytest.raises(archdsl.ArchError) as caught:
        archdsl.loads(f"network n : [3, 8, 8] = {text}")
    assert caught.value.message == message


@pytest.mark.parametrize(("written", "meant"), [
    ("GlobalAveragePooling2D", "gap"), ("globalavgpool", "gap"), ("GlobalMaxPooling2D", "gmp"),
    ("globalmaxpool", "gmp"), ("AdaptiveMaxPool2d", "adaptivemaxpool"), ("LayerNorm", "ln"), ("GroupNorm", "gn"),
    ("StochasticDepth", "droppath"), ("ChannelShuffle", "shuffle"), ("Hardswish", "hardswish"), ("ELU", "elu"),
    ("SELU", "selu"), ("SiLU", "silu"), ("ReLU6", "relu6"), ("h_swish", "hardswish"),
])  # fmt: skip
def test_names_from_other_libraries_suggest_the_new_kinds(written: str, meant: str) -> None:
    assert suggest(written) == meant


def test_layers_lists_every_kind_with_its_options() -> None:
    from archdsl.layers import describe_kinds

    listing = describe_kinds()
    for line in ("gelu approximate=false", "maxpool K s=… p=0 ceil=false", "gn GROUPS eps=1e-05 affine=true",
                 "droppath P", "shuffle GROUPS", "scale init=1e-06", "silu", "(alias swish)"):
        assert line in listing, line
    assert len(listing.splitlines()) == len(REGISTRY)
