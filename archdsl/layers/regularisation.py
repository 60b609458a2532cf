"""Regularisation that acts in training only: ``dropout P`` (per element) and ``droppath P`` (per sample)."""

from __future__ import annotations

from archdsl.layers import ArgSpec, LayerKind, archdsl_modules, probability, register, torch_nn


@register
class Dropout(LayerKind):
    key = "dropout"
    family = "regularisation"
    doc = "dropout P: zeroes each element with probability P in training"
    args = (ArgSpec("p", float, 0.5, probability, "drop probability", positional=True),)

    def build(self, args, in_shape):
        return torch_nn().Dropout(args["p"])

    def label(self, args):
        return f"dropout {args['p']:g}"


@register
class DropPath(LayerKind):
    """Stochastic depth on a residual branch: ``add [ ...; droppath 0.1 | id ]``."""

    key = "droppath"
    known_elsewhere = ("stochasticdepth", "drop_path", "stochastic_depth")
    family = "regularisation"
    doc = ("droppath P: stochastic depth, zeroes a whole sample with probability P in training and scales the "
           "rest by 1/(1-P) (torchvision's StochasticDepth, mode row); the identity in eval mode")
    args = (ArgSpec("p", float, check=probability, doc="drop probability"),)

    def build(self, args, in_shape):
        return archdsl_modules().DropPath(args["p"])

    def label(self, args):
        return f"droppath {args['p']:g}"
