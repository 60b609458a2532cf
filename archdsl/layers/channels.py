"""Layers that rearrange or select channels: ``shuffle G`` (ShuffleNet's channel shuffle), ``chunk N I`` (one of N
equal parts, as ``x.chunk(N, 1)[I]``) and ``slice A B`` (channels A to B − 1, as ``x[:, A:B]``). In a branch, a
selection makes the branch's input: ShuffleNetV2's unit is ``concat [ chunk 2 0 | chunk 2 1; ... ]; shuffle 2``."""

from __future__ import annotations

from archdsl.layers import ArgSpec, LayerKind, archdsl_modules, divides_hint, non_negative, positive, register
from archdsl.shapes import LayerError, require_image_or_vector, require_rank


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


def _channels(key: str, shape) -> int:
    """The channels of an image or the features of a vector, which a selection takes from."""
    return require_image_or_vector(shape, key)[0]


@register
class Chunk(LayerKind):
    """One of N equal parts of the channels: ``torch.chunk(x, N, 1)[I]`` where N divides C."""

    key = "chunk"
    known_elsewhere = ("split", "channel_split", "channelsplit")
    family = "reshape"
    doc = "chunk N I: part I (from 0) of the channels cut in N equal parts (ShuffleNetV2's channel split); N divides C"
    args = (
        ArgSpec("parts", int, check=positive, doc="equal parts"),
        ArgSpec("index", int, check=non_negative, doc="which part, from 0"),
    )

    def validate(self, args):
        if args["index"] >= args["parts"]:
            raise LayerError(f"part {args['index']} of {args['parts']} does not exist: parts count from 0",
                             hint=f"chunk {args['parts']} {args['parts'] - 1} is the last part", arg="index")

    def infer(self, args, shape):
        channels = _channels("chunk", shape)
        if isinstance(channels, int) and channels % args["parts"]:
            raise LayerError(f"{args['parts']} equal parts do not divide the {channels} channels",
                             hint=f"slice A B takes any run of channels; here {channels} channels make "
                                  f"{channels // args['parts']} and a remainder", arg="parts")
        return (channels // args["parts"], *shape[1:])

    def build(self, args, in_shape):
        size = in_shape[0] // args["parts"]
        return archdsl_modules().ChannelSlice(args["index"] * size, (args["index"] + 1) * size)

    def label(self, args):
        return f"chunk {args['index']} of {args['parts']}"


@register
class Slice(LayerKind):
    """Channels A to B − 1: ``x[:, A:B]``."""

    key = "slice"
    known_elsewhere = ("narrow",)
    family = "reshape"
    doc = "slice A B: the channels from A to B - 1, as x[:, A:B]"
    args = (
        ArgSpec("start", int, check=non_negative, doc="first channel"),
        ArgSpec("end", int, check=positive, doc="one past the last channel"),
    )

    def validate(self, args):
        if args["end"] <= args["start"]:
            raise LayerError(f"slice {args['start']} {args['end']} takes no channel: the end must be past the start",
                             arg="end")

    def infer(self, args, shape):
        channels = _channels("slice", shape)
        if isinstance(channels, int) and args["end"] > channels:
            raise LayerError(f"slice {args['start']} {args['end']} goes past the {channels} channels",
                             hint=f"the channels run from 0 to {channels}: slice {min(args['start'], channels - 1)} {channels}",
                             arg="end")
        return (args["end"] - args["start"], *shape[1:])

    def build(self, args, in_shape):
        return archdsl_modules().ChannelSlice(args["start"], args["end"])

    def label(self, args):
        return f"channels {args['start']}:{args['end']}"
