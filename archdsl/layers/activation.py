"""Elementwise activations: each is its torch module, named in diagrams as torch names it (``ReLU``, ``SiLU``)."""

from __future__ import annotations

from typing import ClassVar

from archdsl.ir import Tokens
from archdsl.layers import ArgSpec, LayerKind, register, torch_nn


class Activation(LayerKind):
    """An elementwise activation: its torch class names it in diagrams too (``ReLU``, ``Sigmoid``)."""

    family = "activation"
    torch_class: ClassVar[str]

    def build(self, args, in_shape):
        return getattr(torch_nn(), self.torch_class)()

    def label(self, args):
        return self.torch_class


@register
class ReLU(Activation):
    key = "relu"
    torch_class = "ReLU"
    doc = "max(x, 0)"


@register
class Sigmoid(Activation):
    key = "sigmoid"
    torch_class = "Sigmoid"
    doc = "1 / (1 + exp(-x))"


@register
class Tanh(Activation):
    key = "tanh"
    torch_class = "Tanh"
    doc = "tanh(x)"


@register
class GELU(Activation):
    key = "gelu"
    torch_class = "GELU"
    doc = "Gaussian error linear unit: gelu approximate=false; approximate=true is torch's approximate='tanh'"
    args = (ArgSpec("approximate", bool, False, doc="the tanh approximation (torch's approximate='tanh')"),)

    def build(self, args, in_shape):
        return torch_nn().GELU(approximate="tanh" if args["approximate"] else "none")

    def label(self, args):
        return "GELU tanh" if args["approximate"] else "GELU"


@register
class LeakyReLU(Activation):
    key = "leakyrelu"
    torch_class = "LeakyReLU"
    doc = "leakyrelu slope=0.01: x, or slope·x below 0"
    args = (ArgSpec("slope", float, 0.01, doc="slope below zero", positional=True),)

    def build(self, args, in_shape):
        return torch_nn().LeakyReLU(args["slope"])

    def label(self, args):
        return f"{self.torch_class} {args['slope']:g}"


@register
class Softmax(Activation):
    key = "softmax"
    torch_class = "Softmax"
    doc = "softmax over channels (or features, of a vector or of each token)"

    def build(self, args, in_shape):
        return torch_nn().Softmax(dim=-1 if isinstance(in_shape, Tokens) else 1)


@register
class ReLU6(Activation):
    key = "relu6"
    torch_class = "ReLU6"
    doc = "min(max(x, 0), 6) (MobileNetV2)"


@register
class SiLU(Activation):
    key = "silu"
    aliases = ("swish",)
    torch_class = "SiLU"
    doc = "x · sigmoid(x) (EfficientNet)"


@register
class Hardswish(Activation):
    key = "hardswish"
    known_elsewhere = ("hswish", "h_swish", "hard_swish")
    torch_class = "Hardswish"
    doc = "x · relu6(x + 3) / 6 (MobileNetV3)"


@register
class Hardsigmoid(Activation):
    key = "hardsigmoid"
    known_elsewhere = ("hsigmoid", "h_sigmoid", "hard_sigmoid")
    torch_class = "Hardsigmoid"
    doc = "relu6(x + 3) / 6 (MobileNetV3's squeeze-and-excitation gate)"


@register
class ELU(Activation):
    key = "elu"
    torch_class = "ELU"
    doc = "elu alpha=1.0: x, or alpha·(exp(x) - 1) below 0"
    args = (ArgSpec("alpha", float, 1.0, doc="the value it tends to below zero, negated", positional=True),)

    def build(self, args, in_shape):
        return torch_nn().ELU(args["alpha"])

    def label(self, args):
        return self.torch_class if args["alpha"] == 1 else f"{self.torch_class} {args['alpha']:g}"


@register
class SELU(Activation):
    key = "selu"
    torch_class = "SELU"
    doc = "scaled ELU with the self-normalising constants"


@register
class Mish(Activation):
    key = "mish"
    torch_class = "Mish"
    doc = "x · tanh(softplus(x))"
