"""Layers that rearrange channels: ``shuffle G`` (ShuffleNet's channel shuffle)."""

from __future__ import annotations

from archdsl.layers import ArgSpec, LayerKind, archdsl_modules, divides_hint, positive, register
from archdsl.shapes import LayerError, require_rank


@register
class Shuffle(LayerKind):
    """ShuffleNet's channel shuffle: C channels as G groups of C/G, read out group-interleaved."""

    key = "shuffle"
    known_elsewhere = ("channelshuffle", "channel_shuffle")
    family = "reshape"
    doc = "channel shuffle: shuffle G interleaves G groups of channels (ShuffleNetV2's channel_shuffle); G divides C"
    args = (ArgSpec("groups", int, check=positive, doc="channel groups"),)

    def infer(self, args, shape):
        channels, _, _ = require_rank(shape, 3, "shuffle", "a C×H×W image")
        if channels % args["groups"]:
            raise LayerError(f"{args['groups']} groups do not divide the {channels} channels",
                             hint=divides_hint("shuffle", args["groups"], channels), arg="groups")
        return shape

    def build(self, args, in_shape):
        return archdsl_modules().ChannelShuffle(args["groups"])

    def label(self, args):
        return f"shuffle {args['groups']}"
