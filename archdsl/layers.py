"""The registry of layer kinds: one class per kind, and the only place that says what a name means.

A kind declares its arguments, its shape rule, its parameter and MAC counts, its torch module, its
label and its family. Adding a layer kind is one decorated class here::

    @register
    class Relu6(Activation):
        key = "relu6"
        torch_class = "ReLU6"

Names are looked up with ``lookup``: the key, an alias (``fc`` for ``linear``), or sugar
(``conv3x3``, ``maxpool2``, ``gap``) that presets some arguments. MACs follow torchvision's
convention: multiply-accumulates of convolution and linear weights only.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from archdsl.ir import Shape, Value
from archdsl.shapes import LayerError, require_rank, spatial

REQUIRED = object()


class Pair:
    """The type of an argument that is one whole number or a list of two, height then width: a window
    ``k=3`` or ``k=(1, 7)``. The resolver hands the layer an ``int`` or a ``tuple`` of two ints (``pair``
    makes either a tuple); the argument's ``check`` applies to each number."""


def pair(value: int | tuple[int, int]) -> tuple[int, int]:
    """``3`` -> ``(3, 3)``; ``(1, 7)`` stays."""
    return value if isinstance(value, tuple) else (value, value)


@dataclass(frozen=True)
class Default:
    """A sugar preset the user may override (``maxpool3 s=2``); other presets are fixed."""

    value: Any


@dataclass(frozen=True)
class ArgSpec:
    """One argument of a layer kind: its name, type, default and the check its value must pass.

    ``check`` returns None when the value is fine, else what is wrong ("must be positive"). Required
    arguments may be given by position (``conv 96 11``), the rest only by name (``s=4``) unless
    ``positional`` says otherwise, so that ``conv3x3 16 32`` is an error rather than a stride of 32.
    """

    name: str
    type: type
    default: Any = REQUIRED
    check: Callable[[Any], str | None] | None = None
    doc: str = ""
    positional: bool = False

    @property
    def by_position(self) -> bool:
        return self.positional or self.default is REQUIRED


def positive(value) -> str | None:
    return None if value > 0 else "must be positive"


def non_negative(value) -> str | None:
    return None if value >= 0 else "must not be negative"


def probability(value) -> str | None:
    return None if 0 <= value < 1 else "must be in [0, 1)"


class LayerKind:
    """A kind of layer. Subclasses set the class attributes and override the rules that apply."""

    key: ClassVar[str]
    family: ClassVar[str]
    args: ClassVar[tuple[ArgSpec, ...]] = ()
    aliases: ClassVar[tuple[str, ...]] = ()
    # What PyTorch or Keras calls it, lower-case ("batchnorm2d", "dense"): not names of the language,
    # only what "did you mean" answers when someone writes one.
    known_elsewhere: ClassVar[tuple[str, ...]] = ()
    doc: ClassVar[str] = ""

    def finish(self, name: str, args: dict[str, Value]) -> None:
        """Fill arguments whose defaults depend on others (a pool's stride is its window), in place."""

    def validate(self, args: dict[str, Value]) -> None:
        """Checks across arguments, beyond each one's own ``check``."""

    def infer(self, args: dict[str, Value], shape: Shape) -> Shape:
        return shape

    def params(self, args: dict[str, Value], in_shape: Shape) -> int:
        return 0

    def macs(self, args: dict[str, Value], in_shape: Shape, out_shape: Shape) -> int:
        return 0

    def build(self, args: dict[str, Value], in_shape: Shape):
        """The torch module; torch is imported here, never at package import."""
        raise NotImplementedError(self.key)

    def label(self, args: dict[str, Value]) -> str:
        """The paper's notation for diagrams: ``conv 3×3, 64, /2``."""
        return self.key

    def sugar(self, name: str) -> dict[str, Value] | None:
        """Arguments preset by a sugared name (``conv3x3`` → k=3), or None when ``name`` is not sugar."""
        return None


REGISTRY: dict[str, LayerKind] = {}
_ALIASES: dict[str, str] = {}


def register(cls: type[LayerKind]) -> type[LayerKind]:
    """Add a kind to the registry under its key and aliases."""
    kind = cls()
    for name in (cls.key, *cls.aliases):
        if name in REGISTRY or name in _ALIASES:
            raise ValueError(f"layer name {name!r} registered twice")
    REGISTRY[cls.key] = kind
    for alias in cls.aliases:
        _ALIASES[alias] = cls.key
    lookup.cache_clear()  # a name it did not know may mean the new kind
    return cls


@functools.lru_cache(maxsize=1024)
def lookup(name: str) -> tuple[LayerKind, dict[str, Value]] | None:
    """The kind a layer name means, with the arguments its spelling presets (shared: read, never change).

    Cached: every layer of every spec is looked up, and a sugared name (``conv3x3``) is tried against
    each kind's pattern."""
    if name in REGISTRY:
        return REGISTRY[name], {}
    if name in _ALIASES:
        return REGISTRY[_ALIASES[name]], {}
    for kind in REGISTRY.values():
        preset = kind.sugar(name)
        if preset is not None:
            return kind, preset
    return None


def suggest(name: str, extra: tuple[str, ...] = ()) -> str | None:
    """The closest known name, for "did you mean ...?": ``Linear`` -> linear, ``batchnorm2d`` -> bn, ``cnv3x3`` -> conv3x3."""
    names = [*REGISTRY, *_ALIASES, "conv1x1", "conv3x3", "conv5x5", "conv7x7", "maxpool2", "maxpool3", "avgpool2", "gap", *extra]
    lowered = name.lower()
    if lowered != name and lowered in names:
        return lowered
    for kind in REGISTRY.values():
        if lowered in kind.known_elsewhere:
            return kind.key
    match = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return match[0] if match else None


def _torch():
    import torch.nn

    return torch.nn


# -- convolution ---------------------------------------------------------------------------------


def _kernel_pair(k: int) -> str:
    return f"{k}×{k}"


@register
class Conv(LayerKind):
    key = "conv"
    known_elsewhere = ("conv2d", "convolution2d")
    family = "convolution"
    doc = "2-d convolution: conv C k= s=1 p=0 d=1 groups=1 bias=true; convKxK C is same-padded (odd K)"
    args = (
        ArgSpec("out", int, check=positive, doc="output channels"),
        ArgSpec("k", int, check=positive, doc="kernel size"),
        ArgSpec("s", int, 1, positive, "stride"),
        ArgSpec("p", int, 0, non_negative, "zero padding on each side"),
        ArgSpec("d", int, 1, positive, "dilation"),
        ArgSpec("groups", int, 1, positive, "channel groups"),
        ArgSpec("bias", bool, True, doc="learn a bias"),
    )
    _sugar = re.compile(r"conv(\d+)x(\d+)$")

    def sugar(self, name):
        match = self._sugar.match(name)
        if match is None or match.group(1) != match.group(2):
            return None
        return {"k": int(match.group(1)), "p": Default(SAME)}

    def finish(self, name, args):
        if args["p"] is SAME:
            k = args["k"]
            if k % 2 == 0:
                raise LayerError(
                    f"'{name}' has an even kernel, so no padding keeps the size",
                    hint=f"write conv C k={k} p=... with the padding you want",
                )
            args["p"] = args["d"] * (k - 1) // 2

    def validate(self, args):
        if args["out"] % args["groups"]:
            raise LayerError(f"{args['out']} output channels do not split into {args['groups']} groups", arg="groups")

    def infer(self, args, shape):
        c, h, w = require_rank(shape, 3, "conv", "a C×H×W image")
        if c % args["groups"]:
            raise LayerError(f"{c} input channels do not split into {args['groups']} groups", arg="groups")
        k, s, p, d = args["k"], args["s"], args["p"], args["d"]
        return (args["out"], *spatial("conv", (h, w), k, s, p, d))

    def params(self, args, in_shape):
        weights = args["out"] * (in_shape[0] // args["groups"]) * args["k"] ** 2
        return weights + (args["out"] if args["bias"] else 0)

    def macs(self, args, in_shape, out_shape):
        return math.prod(out_shape) * (in_shape[0] // args["groups"]) * args["k"] ** 2

    def build(self, args, in_shape):
        return _torch().Conv2d(
            in_shape[0], args["out"], args["k"], stride=args["s"], padding=args["p"],
            dilation=args["d"], groups=args["groups"], bias=args["bias"],
        )

    def label(self, args):
        text = f"conv {_kernel_pair(args['k'])}, {args['out']}"
        if args["s"] != 1:
            text += f", /{args['s']}"
        if args["d"] != 1:
            text += f", dil {args['d']}"
        if args["groups"] != 1:
            text += f", g{args['groups']}"
        return text


class _Same:
    """The padding ``convKxK`` presets: what keeps H×W at stride 1, known once the dilation is."""

    def __repr__(self) -> str:
        return "same"


SAME = _Same()


# -- pooling -------------------------------------------------------------------------------------


class _Pool(LayerKind):
    family = "pooling"
    torch_class: ClassVar[str]
    args = (
        ArgSpec("k", int, check=positive, doc="window size"),
        ArgSpec("s", int, None, doc="stride (default: the window size)"),
        ArgSpec("p", int, 0, non_negative, "padding on each side"),
    )

    def sugar(self, name):
        match = re.fullmatch(self.key + r"(\d+)", name)
        return {"k": int(match.group(1)), "s": Default(int(match.group(1)))} if match else None

    def finish(self, name, args):
        if args["s"] is None:
            args["s"] = args["k"]

    def validate(self, args):
        if args["s"] <= 0:
            raise LayerError(f"stride must be positive, but it is {args['s']}", arg="s")
        if args["p"] > args["k"] // 2:
            raise LayerError(
                f"padding {args['p']} is more than half the window {args['k']}",
                hint="torch allows padding of at most k // 2",
                arg="p",
            )

    def infer(self, args, shape):
        c, h, w = require_rank(shape, 3, self.key, "a C×H×W image")
        return (c, *spatial(self.key, (h, w), args["k"], args["s"], args["p"], 1))

    def build(self, args, in_shape):
        return getattr(_torch(), self.torch_class)(args["k"], stride=args["s"], padding=args["p"])

    def label(self, args):
        text = f"{self.key} {_kernel_pair(args['k'])}"
        return text + (f", /{args['s']}" if args["s"] != 1 else "")


@register
class MaxPool(_Pool):
    key = "maxpool"
    known_elsewhere = ("maxpool2d", "maxpooling2d")
    torch_class = "MaxPool2d"
    doc = "max pooling: maxpool k= s=k p=0; maxpoolK is k=K s=K"


@register
class AvgPool(_Pool):
    key = "avgpool"
    known_elsewhere = ("avgpool2d", "averagepooling2d")
    torch_class = "AvgPool2d"
    doc = "average pooling: avgpool k= s=k p=0; avgpoolK is k=K s=K"


@register
class AdaptiveAvgPool(LayerKind):
    key = "adaptiveavgpool"
    family = "pooling"
    doc = "adaptive average pooling to H×W: adaptiveavgpool H W (W defaults to H); gap is 1×1"
    args = (
        ArgSpec("h", int, check=positive, doc="output height"),
        ArgSpec("w", int, None, doc="output width (default: h)", positional=True),
    )

    def sugar(self, name):
        return {"h": 1, "w": 1} if name == "gap" else None

    def finish(self, name, args):
        if args["w"] is None:
            args["w"] = args["h"]

    def validate(self, args):
        if args["w"] <= 0:
            raise LayerError("must be positive", arg="w")

    def infer(self, args, shape):
        c, _, _ = require_rank(shape, 3, "adaptiveavgpool", "a C×H×W image")
        return (c, args["h"], args["w"])

    def build(self, args, in_shape):
        return _torch().AdaptiveAvgPool2d((args["h"], args["w"]))

    def label(self, args):
        if args["h"] == args["w"] == 1:
            return "global avgpool"
        return f"adaptive avgpool {args['h']}×{args['w']}"


# -- linear and reshaping ------------------------------------------------------------------------


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
        return _torch().Linear(in_shape[0], args["out"], bias=args["bias"])

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
        return _torch().Flatten()


@register
class Dropout(LayerKind):
    key = "dropout"
    family = "regularisation"
    doc = "dropout P: zeroes each element with probability P in training"
    args = (ArgSpec("p", float, 0.5, probability, "drop probability", positional=True),)

    def build(self, args, in_shape):
        return _torch().Dropout(args["p"])

    def label(self, args):
        return f"dropout {args['p']:g}"


@register
class Identity(LayerKind):
    key = "id"
    known_elsewhere = ("identity",)
    family = "identity"
    doc = "the identity: passes its input on (a shortcut branch, say)"

    def build(self, args, in_shape):
        return _torch().Identity()


# -- activations ---------------------------------------------------------------------------------


class Activation(LayerKind):
    """An elementwise activation: its torch class names it in diagrams too (``ReLU``, ``Sigmoid``)."""

    family = "activation"
    torch_class: ClassVar[str]

    def build(self, args, in_shape):
        return getattr(_torch(), self.torch_class)()

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
    doc = "Gaussian error linear unit"


@register
class LeakyReLU(Activation):
    key = "leakyrelu"
    torch_class = "LeakyReLU"
    doc = "leakyrelu slope=0.01: x, or slope·x below 0"
    args = (ArgSpec("slope", float, 0.01, doc="slope below zero", positional=True),)

    def build(self, args, in_shape):
        return _torch().LeakyReLU(args["slope"])

    def label(self, args):
        return f"{self.torch_class} {args['slope']:g}"


@register
class Softmax(Activation):
    key = "softmax"
    torch_class = "Softmax"
    doc = "softmax over channels (or features)"

    def build(self, args, in_shape):
        return _torch().Softmax(dim=1)


# -- normalisation -------------------------------------------------------------------------------


@register
class BatchNorm(LayerKind):
    key = "bn"
    known_elsewhere = ("batchnorm", "batchnorm1d", "batchnorm2d", "batch_norm", "batchnormalization")
    family = "normalisation"
    doc = "batch normalisation, 1-d on vectors and 2-d on images: bn eps=1e-5 momentum=0.1"
    args = (
        ArgSpec("eps", float, 1e-5, positive, "added to the variance"),
        ArgSpec("momentum", float, 0.1, probability, "running-statistics momentum"),
    )

    def infer(self, args, shape):
        if len(shape) not in (1, 3):
            raise LayerError(f"bn takes a vector or a C×H×W image, not {'×'.join(map(str, shape))}")
        return shape

    def params(self, args, in_shape):
        return 2 * in_shape[0]

    def build(self, args, in_shape):
        cls = _torch().BatchNorm2d if len(in_shape) == 3 else _torch().BatchNorm1d
        return cls(in_shape[0], eps=args["eps"], momentum=args["momentum"])

    def label(self, args):
        return "BN"


@register
class LocalResponseNorm(LayerKind):
    key = "lrn"
    known_elsewhere = ("localresponsenorm", "localresponsenormalization")
    family = "normalisation"
    doc = "local response normalisation across channels: lrn size=5 alpha=1e-4 beta=0.75 k=1"
    args = (
        ArgSpec("size", int, 5, positive, "neighbouring channels", positional=True),
        ArgSpec("alpha", float, 1e-4, doc="scale"),
        ArgSpec("beta", float, 0.75, doc="exponent"),
        ArgSpec("k", float, 1.0, doc="additive constant"),
    )

    def infer(self, args, shape):
        require_rank(shape, 3, "lrn", "a C×H×W image")
        return shape

    def build(self, args, in_shape):
        return _torch().LocalResponseNorm(args["size"], alpha=args["alpha"], beta=args["beta"], k=args["k"])

    def label(self, args):
        return f"LRN {args['size']}"


def describe_kinds() -> str:
    """The reference of every layer kind: usage, aliases, sugar and what it does (``archdsl layers``)."""
    lines = []
    for key, kind in REGISTRY.items():
        parts = [key]
        for spec in kind.args:
            if spec.default is REQUIRED:
                parts.append(spec.name.upper())
            else:
                default = "…" if spec.default is None else ("true" if spec.default is True else spec.default)
                parts.append(f"{spec.name}={default}")
        aliases = f"  (alias {', '.join(kind.aliases)})" if kind.aliases else ""
        lines.append(f"{' '.join(str(p) for p in parts):44} {kind.family:15} {kind.doc}{aliases}")
    return "\n".join(lines)
