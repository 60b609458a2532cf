"""A learned factor per channel: ``scale init=1e-6`` (ConvNeXt's layer scale)."""

from __future__ import annotations

from archdsl.layers import ArgSpec, LayerKind, archdsl_modules, register
from archdsl.shapes import channels, layout


@register
class Scale(LayerKind):
    """Multiplies each channel by its own learned factor, C parameters starting at ``init``: shape (C, 1, 1)
    on an image, as torchvision's ConvNeXt layer_scale, and (C,) on a vector or on tokens (D, each feature)."""

    key = "scale"
    known_elsewhere = ("layerscale", "layer_scale")
    family = "scale"
    doc = "a learned factor per channel (ConvNeXt's layer scale): scale init=1e-6, C parameters"
    args = (ArgSpec("init", float, 1e-6, doc="the factors' initial value", positional=True),)

    def params(self, args, in_shape):
        return channels(in_shape)

    def build(self, args, in_shape):
        factors = (in_shape[0], 1, 1) if layout(in_shape) == "image" else (channels(in_shape),)
        return archdsl_modules().Scale(factors, args["init"])

    def label(self, args):
        return f"scale {args['init']:g}"
