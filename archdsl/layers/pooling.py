"""Pooling: windows (``maxpool``, ``avgpool``, sugar ``maxpool2``) and adaptive pools (``gap``, ``gmp``)."""

from __future__ import annotations

import re
from typing import ClassVar

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


class _Pool(LayerKind):
    family = "pooling"
    torch_class: ClassVar[str]
    args = (
        ArgSpec("k", Pair, check=positive, doc="window size"),
        ArgSpec("s", Pair, None, doc="stride (default: the window size)"),
        ArgSpec("p", Pair, 0, non_negative, "padding on each side"),
        ArgSpec("ceil", bool, False, doc="ceil_mode: a last, partial window where one starts inside the input"),
    )

    def sugar(self, name):
        match = re.fullmatch(self.key + r"(\d+)", name)
        return {"k": int(match.group(1)), "s": Default(int(match.group(1)))} if match else None

    def finish(self, name, args):
        if args["s"] is None:
            args["s"] = args["k"]

    def validate(self, args):
        if any(s <= 0 for s in pair(args["s"])):
            raise LayerError(f"stride must be positive, but it is {values.show(args['s'])}", arg="s")
        if any(p > k // 2 for p, k in zip(pair(args["p"]), pair(args["k"]))):
            raise LayerError(
                f"padding {show_step(args['p'])} is more than half the window {show_step(args['k'])}",
                hint="torch allows padding of at most k // 2",
                arg="p",
            )

    def infer(self, args, shape):
        c, h, w = require_rank(shape, 3, self.key, "a C×H×W image")
        return (c, *spatial(self.key, (h, w), args["k"], args["s"], args["p"], 1, args["ceil"]))

    def build(self, args, in_shape):
        return getattr(torch_nn(), self.torch_class)(args["k"], stride=args["s"], padding=args["p"], ceil_mode=args["ceil"])

    def label(self, args):
        text = f"{self.key} {show_pair(args['k'])}"
        text += f", /{show_step(args['s'])}" if pair(args["s"]) != (1, 1) else ""
        return text + (", ceil" if args["ceil"] else "")


@register
class MaxPool(_Pool):
    key = "maxpool"
    known_elsewhere = ("maxpool2d", "maxpooling2d")
    torch_class = "MaxPool2d"
    doc = "max pooling: maxpool k= s=k p=0 ceil=false; k, s, p take (height, width) too; maxpoolK is k=K s=K"


@register
class AvgPool(_Pool):
    key = "avgpool"
    known_elsewhere = ("avgpool2d", "averagepooling2d")
    torch_class = "AvgPool2d"
    doc = ("average pooling: avgpool k= s=k p=0 ceil=false count_include_pad=true; k, s, p take (height, width) "
           "too; avgpoolK is k=K s=K")
    args = (
        *_Pool.args,
        ArgSpec("count_include_pad", bool, True, doc="count the zero padding in each average"),
    )

    def build(self, args, in_shape):
        return torch_nn().AvgPool2d(args["k"], stride=args["s"], padding=args["p"], ceil_mode=args["ceil"],
                                    count_include_pad=args["count_include_pad"])


class _AdaptivePool(LayerKind):
    """Pools to a fixed H×W whatever the input's; the global spelling (``gap``) pools to 1×1."""

    family = "pooling"
    torch_class: ClassVar[str]
    global_name: ClassVar[str]
    # What other libraries call the global pool, lower-case: "did you mean" answers with global_name.
    known_globally: ClassVar[tuple[str, ...]]
    args = (
        ArgSpec("h", int, check=positive, doc="output height"),
        ArgSpec("w", int, None, doc="output width (default: h)", positional=True),
    )

    def sugar(self, name):
        return {"h": 1, "w": 1} if name == self.global_name else None

    def meant_by(self, lowered):
        return self.global_name if lowered in self.known_globally else super().meant_by(lowered)

    def finish(self, name, args):
        if args["w"] is None:
            args["w"] = args["h"]

    def validate(self, args):
        if args["w"] <= 0:
            raise LayerError("must be positive", arg="w")

    def infer(self, args, shape):
        c, _, _ = require_rank(shape, 3, self.key, "a C×H×W image")
        return (c, args["h"], args["w"])

    def build(self, args, in_shape):
        return getattr(torch_nn(), self.torch_class)((args["h"], args["w"]))

    def label(self, args):
        pool = self.key.removeprefix("adaptive")
        if args["h"] == args["w"] == 1:
            return f"global {pool}"
        return f"adaptive {pool} {args['h']}×{args['w']}"


@register
class AdaptiveAvgPool(_AdaptivePool):
    key = "adaptiveavgpool"
    known_elsewhere = ("adaptiveavgpool2d", "adaptiveaveragepooling2d")
    known_globally = ("globalavgpool", "globalavgpool2d", "globalaveragepool", "globalaveragepooling2d",
                      "globalaveragepooling", "global_avg_pool")
    torch_class = "AdaptiveAvgPool2d"
    global_name = "gap"
    doc = "adaptive average pooling to H×W: adaptiveavgpool H W (W defaults to H); gap is 1×1"


@register
class AdaptiveMaxPool(_AdaptivePool):
    key = "adaptivemaxpool"
    known_elsewhere = ("adaptivemaxpool2d", "adaptivemaxpooling2d")
    known_globally = ("globalmaxpool", "globalmaxpool2d", "globalmaxpooling2d", "globalmaxpooling", "global_max_pool")
    torch_class = "AdaptiveMaxPool2d"
    global_name = "gmp"
    doc = "adaptive max pooling to H×W: adaptivemaxpool H W (W defaults to H); gmp (global max pool) is 1×1"
