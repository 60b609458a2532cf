"""The registry × the backends: every layer kind has every rule, and each rule agrees with torch.

For each kind: its arguments are declared, a valid input gives a shape, and the torch module it builds
takes a real tensor of that shape to the inferred shape, with the declared parameter count and the
declared MACs (counted from the module itself). Every kind has a label, a family the diagrams know,
and a Python-export emitter; every name the language documents resolves.
"""

from __future__ import annotations

import math

import pytest
import torch
from strategies import count_params, leaf_macs
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from archdsl.layers import REGISTRY, REQUIRED, ArgSpec, LayerKind, lookup, suggest
from archdsl.shapes import LayerError

KINDS = sorted(REGISTRY)

# Values for required arguments, chosen so that each kind takes a 4×9×9 image or a 12-vector.
REQUIRED_VALUES = {"out": 6, "k": 3, "h": 2, "p": 0.25, "groups": 2, "parts": 2, "index": 1, "start": 1, "end": 3}


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
    for shape in ((4, 9, 9), (12,)):
        try:
            kind.infer(args, shape)
        except LayerError:
            continue
        return shape
    raise AssertionError(f"{kind.key} takes neither an image nor a vector")


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
    assert tuple(y.shape[1:]) == out_shape
    assert leaf_macs(module, y) == kind.macs(args, shape, out_shape)


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
