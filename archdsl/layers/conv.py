"""Convolution: ``conv C k=...`` and its same-padded sugar ``conv3x3 C``, ``conv1x7 C``."""

from __future__ import annotations

import math
import re

from archdsl import values
from archdsl.layers import (
    ArgSpec,
    Default,
    LayerKind,
    Pair,
    non_negative,
    pair,
    positive,
    register,
    show_pair,
    show_step,
    torch_nn,
)
from archdsl.shapes import LayerError, require_rank, spatial


class _Same:
    """The padding ``convKxK`` presets: what keeps H×W at stride 1, known once the dilation is."""

    def __repr__(self) -> str:
        return "same"


SAME = _Same()


@register
class Conv(LayerKind):
    key = "conv"
    known_elsewhere = ("conv2d", "convolution2d")
    family = "convolution"
    doc = ("2-d convolution: conv C k= s=1 p=0 d=1 groups=1 bias=true; k, s, p, d take (height, width) too; "
           "convKxK C and convAxB C are same-padded (odd K, A, B)")
    args = (
        ArgSpec("out", int, check=positive, doc="output channels"),
        ArgSpec("k", Pair, check=positive, doc="kernel size"),
        ArgSpec("s", Pair, 1, positive, "stride"),
        ArgSpec("p", Pair, 0, non_negative, "zero padding on each side"),
        ArgSpec("d", Pair, 1, positive, "dilation"),
        ArgSpec("groups", int, 1, positive, "channel groups"),
        ArgSpec("bias", bool, True, doc="learn a bias"),
    )
    _sugar = re.compile(r"conv(\d+)x(\d+)$")

    def sugar(self, name):
        match = self._sugar.match(name)
        if match is None:
            return None
        height, width = int(match.group(1)), int(match.group(2))
        return {"k": height if height == width else (height, width), "p": Default(SAME)}

    def finish(self, name, args):
        if args["p"] is SAME:
            k, d = args["k"], args["d"]
            if any(size % 2 == 0 for size in pair(k)):
                raise LayerError(
                    f"'{name}' has an even kernel, so no padding keeps the size",
                    hint=f"write conv C k={values.show(k)} p=... with the padding you want",
                )
            padding = tuple(dilation * (size - 1) // 2 for size, dilation in zip(pair(k), pair(d)))
            args["p"] = padding[0] if isinstance(k, int) and isinstance(d, int) else padding

    def validate(self, args):
        if args["out"] % args["groups"]:
            raise LayerError(f"{args['out']} output channels do not split into {args['groups']} groups", arg="groups")

    def infer(self, args, shape):
        c, h, w = require_rank(shape, 3, "conv", "a C×H×W image")
        if c % args["groups"]:
            raise LayerError(f"{c} input channels do not split into {args['groups']} groups", arg="groups")
        return (args["out"], *spatial("conv", (h, w), args["k"], args["s"], args["p"], args["d"]))

    def params(self, args, in_shape):
        weights = args["out"] * (in_shape[0] // args["groups"]) * math.prod(pair(args["k"]))
        return weights + (args["out"] if args["bias"] else 0)

    def macs(self, args, in_shape, out_shape):
        return math.prod(out_shape) * (in_shape[0] // args["groups"]) * math.prod(pair(args["k"]))

    def build(self, args, in_shape):
        return torch_nn().Conv2d(
            in_shape[0], args["out"], args["k"], stride=args["s"], padding=args["p"],
            dilation=args["d"], groups=args["groups"], bias=args["bias"],
        )

    def label(self, args):
        text = f"conv {show_pair(args['k'])}, {args['out']}"
        if pair(args["s"]) != (1, 1):
            text += f", /{show_step(args['s'])}"
        if pair(args["d"]) != (1, 1):
            text += f", dil {show_step(args['d'])}"
        if args["groups"] != 1:
            text += f", g{args['groups']}"
        return text
