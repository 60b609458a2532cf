"""Normalisation: ``bn``, ``ln``, ``gn`` (on vectors and images) and ``lrn`` (across channels)."""

from __future__ import annotations

from archdsl.ir import Tokens
from archdsl.layers import (
    ArgSpec,
    LayerKind,
    archdsl_modules,
    divides_hint,
    positive,
    probability,
    register,
    torch_nn,
)
from archdsl.shapes import LayerError, channels, described, layout, require_image_or_vector, require_rank

_EPS = ArgSpec("eps", float, 1e-5, positive, "added to the variance")
_AFFINE = ArgSpec("affine", bool, True, doc="learn a weight and a bias per channel")


def _affine_params(args, in_shape) -> int:
    return 2 * channels(in_shape) if args["affine"] else 0


@register
class BatchNorm(LayerKind):
    key = "bn"
    known_elsewhere = ("batchnorm", "batchnorm1d", "batchnorm2d", "batch_norm", "batchnormalization")
    family = "normalisation"
    doc = "batch normalisation, 1-d on vectors and 2-d on images: bn eps=1e-5 momentum=0.1 affine=true"
    args = (
        _EPS,
        ArgSpec("momentum", float, 0.1, probability, "running-statistics momentum"),
        _AFFINE,
    )

    def infer(self, args, shape):
        if isinstance(shape, Tokens):
            raise LayerError(f"bn takes a vector or a C×H×W image, but its input is {described(shape)}",
                             hint="ln normalises each token's features, as transformers do")
        return require_image_or_vector(shape, "bn")

    def params(self, args, in_shape):
        return _affine_params(args, in_shape)

    def build(self, args, in_shape):
        cls = torch_nn().BatchNorm2d if layout(in_shape) == "image" else torch_nn().BatchNorm1d
        return cls(in_shape[0], eps=args["eps"], momentum=args["momentum"], affine=args["affine"])

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
        return torch_nn().LocalResponseNorm(args["size"], alpha=args["alpha"], beta=args["beta"], k=args["k"])

    def label(self, args):
        return f"LRN {args['size']}"


@register
class LayerNorm(LayerKind):
    """On an image, each position's C channels are normalised (ConvNeXt's LayerNorm2d), with a weight and
    a bias of C values; on a vector its features, on tokens each token's D features (nn.LayerNorm)."""

    key = "ln"
    known_elsewhere = ("layernorm", "layernorm2d", "layer_norm", "layernormalization")
    family = "normalisation"
    doc = ("layer normalisation over the channels at each position of an image (ConvNeXt's LayerNorm2d), "
           "over the features of a vector or of each token: ln eps=1e-5 affine=true")
    args = (_EPS, _AFFINE)

    def params(self, args, in_shape):
        return _affine_params(args, in_shape)

    def build(self, args, in_shape):
        cls = archdsl_modules().LayerNorm2d if layout(in_shape) == "image" else torch_nn().LayerNorm
        return cls(channels(in_shape), eps=args["eps"], elementwise_affine=args["affine"])

    def label(self, args):
        return "LN"


@register
class GroupNorm(LayerKind):
    key = "gn"
    known_elsewhere = ("groupnorm", "group_norm", "groupnormalization")
    family = "normalisation"
    doc = "group normalisation: gn G eps=1e-5 affine=true; G groups of channels, G must divide C"
    args = (
        ArgSpec("groups", int, check=positive, doc="channel groups"),
        _EPS,
        _AFFINE,
    )

    def infer(self, args, shape):
        size, groups = require_image_or_vector(shape, "gn")[0], args["groups"]
        if not isinstance(size, int):  # a flattened symbolic image: H·W·C
            raise LayerError(f"whether {groups} groups divide the {size} features depends on the input size",
                             hint="compile the network at a concrete input (--input), or normalise before 'flatten'",
                             arg="groups")
        if size % groups:
            raise LayerError(f"{groups} groups do not divide the {size} channels", hint=divides_hint("gn", groups, size),
                             arg="groups")
        return shape

    def params(self, args, in_shape):
        return _affine_params(args, in_shape)

    def build(self, args, in_shape):
        return torch_nn().GroupNorm(args["groups"], in_shape[0], eps=args["eps"], affine=args["affine"])

    def label(self, args):
        return f"GN {args['groups']}"

