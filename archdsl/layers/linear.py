"""Fully connected layers and the flattening that feeds them: ``flatten; linear 10``."""

from __future__ import annotations

import math

from archdsl.layers import ArgSpec, LayerKind, positive, register, torch_nn
from archdsl.shapes import LayerError


@register
class Linear(LayerKind):
    key = "linear"
    known_elsewhere = ("dense",)
    aliases = ("fc",)
    family = "linear"
    doc = "fully connected layer: linear N bias=true; takes a flat input"
    args = (
        ArgSpec("out", int, check=positive, doc="output features"),
        ArgSpec("bias", bool, True, doc="learn a bias"),
    )

    def infer(self, args, shape):
        if len(shape) != 1:
            raise LayerError(
                f"linear takes a flat vector, but its input is {'×'.join(map(str, shape))}",
                hint="insert 'flatten' (or 'gap; flatten') before it",
            )
        return (args["out"],)

    def params(self, args, in_shape):
        return in_shape[0] * args["out"] + (args["out"] if args["bias"] else 0)

    def macs(self, args, in_shape, out_shape):
        return in_shape[0] * args["out"]

    def build(self, args, in_shape):
        return torch_nn().Linear(in_shape[0], args["out"], bias=args["bias"])

    def label(self, args):
        return f"linear {args['out']}"


@register
class Flatten(LayerKind):
    key = "flatten"
    family = "reshape"
    doc = "flattens C×H×W to one vector"

    def infer(self, args, shape):
        return (math.prod(shape),)

    def build(self, args, in_shape):
        return torch_nn().Flatten()
