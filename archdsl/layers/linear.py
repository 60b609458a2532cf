"""Fully connected layers and the flattening that feeds them: ``flatten; linear 10``."""

from __future__ import annotations

import math

from archdsl.ir import Tokens
from archdsl.layers import ArgSpec, LayerKind, positive, register, torch_nn
from archdsl.shapes import LayerError, channels, layout


@register
class Linear(LayerKind):
    key = "linear"
    known_elsewhere = ("dense",)
    aliases = ("fc",)
    family = "linear"
    doc = "fully connected layer: linear N bias=true; takes a flat input, or tokens (it acts on each token's features)"
    args = (
        ArgSpec("out", int, check=positive, doc="output features"),
        ArgSpec("bias", bool, True, doc="learn a bias"),
    )

    def infer(self, args, shape):
        if isinstance(shape, Tokens):
            return shape.with_features(args["out"])  # nn.Linear on the last axis: each token on its own
        if layout(shape) != "vector":
            raise LayerError(
                f"linear takes a flat vector, but its input is {'×'.join(map(str, shape))}",
                hint="insert 'flatten' (or 'gap; flatten') before it",
            )
        return (args["out"],)

    def params(self, args, in_shape):
        return channels(in_shape) * args["out"] + (args["out"] if args["bias"] else 0)

    def macs(self, args, in_shape, out_shape):
        tokens = in_shape.length if isinstance(in_shape, Tokens) else 1
        return tokens * channels(in_shape) * args["out"]

    def build(self, args, in_shape):
        return torch_nn().Linear(channels(in_shape), args["out"], bias=args["bias"])

    def label(self, args):
        return f"linear {args['out']}"


@register
class Flatten(LayerKind):
    key = "flatten"
    family = "reshape"
    doc = "flattens C×H×W (or tokens, L×D) to one vector"

    def infer(self, args, shape):
        return (math.prod(shape),)

    def build(self, args, in_shape):
        return torch_nn().Flatten()
