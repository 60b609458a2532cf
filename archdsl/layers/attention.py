"""Attention over tokens: ``attention heads=H`` (multi-head self-attention, ``nn.MultiheadAttention``), Swin's
``windowattention heads=H window=7 shift=3`` (within windows of the grid, with a relative position bias), Swin
V2's ``windowattention2 heads=H window=8 shift=4`` (cosine attention, with a continuous position bias) and MaxViT's
``partitionattention heads=H partition=7 grid=false`` (within windows, or with ``grid=true`` among tokens spread over
the grid).

MACs, as torchvision counts its transformers' GFLOPS: the query, key, value and output projections (4·L·D² over L
tokens of D features) and the two matrix products, QKᵀ and the weighted sum of the values (L²·D each; within
windows of N tokens, L·N·D each). Softmax, the bias table and masks are left out, as normalisation is. Swin V2's
position-bias MLP is counted: it is matrix products (2 → 512 → heads) over the window's offsets, run once per
forward pass whatever the batch, and torchvision's documented GFLOPS include it.
"""

from __future__ import annotations

from archdsl.layers import (
    ArgSpec,
    LayerKind,
    Pair,
    archdsl_modules,
    non_negative,
    pair,
    positive,
    probability,
    register,
    show_step,
)
from archdsl.shapes import LayerError, require_tokens, show


def _check_heads(heads: int, features) -> None:
    if isinstance(features, int) and features % heads:
        divisors = [h for h in range(1, min(features, 4096) + 1) if features % h == 0]
        below = max((h for h in divisors if h < heads), default=None)
        above = min((h for h in divisors if h > heads), default=None)
        options = " or ".join(f"heads={h}" for h in (below, above) if h is not None)
        raise LayerError(f"{heads} heads do not divide the {features} features of each token",
                         hint=f"each head takes features / heads of them: {options} would", arg="heads")


def _projections(features: int, bias: bool) -> int:
    """The parameters of the query, key, value and output projections: 4·D² weights and 4·D biases."""
    return 4 * features * features + (4 * features if bias else 0)


def _check_tiling(key: str, tokens, arg: str, window: tuple[int, int]) -> None:
    """Windows (or partitions) of ``window`` tokens tile the grid of ``tokens``, which is known."""
    for axis, size, side in zip(("height", "width"), tokens.grid, window):
        if not isinstance(size, int):
            raise LayerError(f"{key} needs a grid known before the input size, not {show(tokens.grid)}",
                             hint="compile the network at a concrete input (--input)")
        if size % side:
            fits = [w for w in range(1, size + 1) if size % w == 0]
            closest = min(fits, key=lambda w: (abs(w - side), w))
            raise LayerError(f"{arg}s of {show(window)} do not tile the {show(tokens.grid)} grid: its {axis} "
                             f"{size} is not a multiple of {side}",
                             hint=f"a {arg} divides the grid: {arg}={closest} on this axis would, or an input "
                                  f"whose grid is a multiple of the {arg}", arg=arg)


def _windowed_macs(tokens, window: tuple[int, int]) -> int:
    """The projections over L tokens of D features and the two matrix products within windows of N tokens:
    4·L·D² + 2·L·N·D."""
    length, features = tokens.length, tokens.features
    return 4 * length * features * features + 2 * length * window[0] * window[1] * features


@register
class Attention(LayerKind):
    """Multi-head self-attention over the tokens, ``nn.MultiheadAttention`` (batch first) with the tokens as query,
    key and value: its parameters (``in_proj_weight`` 3D×D, ``out_proj``), its dropout on the attention weights
    and its ``bias``. d2l's attention has no biases: ``attention heads=8 bias=false``."""

    key = "attention"
    known_elsewhere = ("multiheadattention", "multihead_attention", "mha", "selfattention", "self_attention")
    family = "attention"
    doc = "multi-head self-attention over the tokens: attention heads=H dropout=0 bias=true (nn.MultiheadAttention)"
    args = (
        ArgSpec("heads", int, check=positive, doc="attention heads; they divide the features"),
        ArgSpec("dropout", float, 0.0, probability, "dropout on the attention weights"),
        ArgSpec("bias", bool, True, doc="biases of the projections"),
    )

    def infer(self, args, shape):
        tokens = require_tokens(shape, "attention")
        _check_heads(args["heads"], tokens.features)
        return shape

    def params(self, args, in_shape):
        return _projections(in_shape.features, args["bias"])

    def macs(self, args, in_shape, out_shape):
        length, features = in_shape.length, in_shape.features
        return 4 * length * features * features + 2 * length * length * features

    def build(self, args, in_shape):
        return archdsl_modules().SelfAttention(in_shape.features, args["heads"], args["dropout"], args["bias"])

    def label(self, args):
        return f"attention, {args['heads']} heads" + ("" if args["bias"] else ", no bias")


@register
class WindowAttention(LayerKind):
    """Swin's window attention over tokens on a grid (torchvision's ``ShiftedWindowAttention``): multi-head
    self-attention within each window of ``window`` tokens, with a learned bias per head and relative offset
    ((2·wh − 1)(2·ww − 1)·heads parameters); with ``shift`` the grid is first rolled back by it and attention is
    masked between parts that the roll brought together. An axis that one window covers is not shifted."""

    key = "windowattention"
    known_elsewhere = ("shiftedwindowattention", "shifted_window_attention", "window_attention", "swinattention")
    family = "attention"
    doc = ("Swin's (shifted) window attention over tokens on a grid: windowattention heads=H window=7 shift=0 "
           "dropout=0; the window divides the grid")
    args = (
        ArgSpec("heads", int, check=positive, doc="attention heads; they divide the features"),
        ArgSpec("window", Pair, check=positive, doc="window size (height, width)"),
        ArgSpec("shift", Pair, 0, non_negative, "cyclic shift of the windows (height, width)"),
        ArgSpec("dropout", float, 0.0, probability, "dropout on the attention weights"),
    )
    extent = "window"  # the argument that sizes the windows (PartitionAttention's is its partition)
    module_class = "WindowAttention"  # of archdsl.torch_modules; the Python export names it too

    def validate(self, args):
        if any(s >= w for s, w in zip(pair(args["shift"]), pair(args["window"]))):
            raise LayerError(f"a shift of {show(pair(args['shift']))} is not less than the window "
                             f"{show(pair(args['window']))}", hint="Swin shifts by half the window: shift=window // 2",
                             arg="shift")

    def infer(self, args, shape):
        tokens = require_tokens(shape, self.key, grid=True)
        _check_heads(args["heads"], tokens.features)
        _check_tiling(self.key, tokens, self.extent, pair(args[self.extent]))
        return shape

    def params(self, args, in_shape):
        height, width = pair(args[self.extent])
        return _projections(in_shape.features, True) + (2 * height - 1) * (2 * width - 1) * args["heads"]

    def macs(self, args, in_shape, out_shape):
        return _windowed_macs(in_shape, pair(args[self.extent]))

    def build(self, args, in_shape):
        return getattr(archdsl_modules(), self.module_class)(in_shape.features, args["heads"], args["window"],
                                                             args["shift"], in_shape.grid, args["dropout"])

    def label(self, args):
        window = pair(args["window"])
        text = f"window attention {show(window)}, {args['heads']} heads"
        return text + (f", shift {show_step(args['shift'])}" if pair(args["shift"]) != (0, 0) else "")


# The hidden features of Swin V2's continuous position bias (torchvision's cpb_mlp: 2 -> 512 -> heads).
CPB_HIDDEN = 512


@register
class WindowAttention2(WindowAttention):
    """Swin V2's window attention (torchvision's ``ShiftedWindowAttentionV2``): the windows, shift and mask of
    ``windowattention``, with cosine attention (the cosine similarity of each query and key, times a learned factor
    per head, at most 100) and a continuous position bias: an MLP of 2 → 512 → heads features over each relative
    offset (log-spaced), 16·sigmoid of its output. The key's third of the projection bias is held but read as zeros.
    Parameters: the projections, a factor per head and the MLP's 2·512 + 512 + 512·heads."""

    key = "windowattention2"
    known_elsewhere = ("shiftedwindowattentionv2", "shifted_window_attention_v2", "window_attention_v2",
                       "windowattentionv2", "swinv2attention")
    doc = ("Swin V2's (shifted) window attention over tokens on a grid, cosine attention with a continuous position "
           "bias: windowattention2 heads=H window=8 shift=0 dropout=0; the window divides the grid, at least 2×2")
    module_class = "WindowAttention2"

    def validate(self, args):
        super().validate(args)
        window = pair(args["window"])
        if min(window) < 2:
            raise LayerError(f"window must be at least 2 on each axis, but it is {show(window)}",
                             hint="the continuous position bias divides each offset by the window's side less one; "
                                  "windowattention takes windows of one token", arg="window")

    def params(self, args, in_shape):
        # The MLP: 2 -> 512 with biases, 512 -> heads without.
        mlp = 3 * CPB_HIDDEN + CPB_HIDDEN * args["heads"]
        return _projections(in_shape.features, True) + args["heads"] + mlp

    def macs(self, args, in_shape, out_shape):
        height, width = pair(args["window"])
        offsets = (2 * height - 1) * (2 * width - 1)
        return super().macs(args, in_shape, out_shape) + offsets * CPB_HIDDEN * (2 + args["heads"])

    def label(self, args):
        return "cosine " + super().label(args)


@register
class PartitionAttention(WindowAttention):
    """MaxViT's attention within partitions of tokens on a grid (torchvision's ``RelativePositionalMultiHeadAttention``
    in the partitions of its ``PartitionAttentionLayer``): ``partitionattention heads=H partition=7`` attends within
    windows of 7×7 tokens (block attention); with ``grid=true``, among the 7×7 tokens that lie H/7 and W/7 apart
    (grid attention). A learned bias per head and relative offset within the partition, as ``windowattention``'s;
    the keys are scaled by D^−0.5 over D features rather than by the head's features, as torchvision scales them.
    Parameters and MACs are ``windowattention``'s with the partition as its window."""

    key = "partitionattention"
    known_elsewhere = ("relativepositionalmultiheadattention", "partition_attention", "maxvitattention",
                       "gridattention", "grid_attention", "blockattention", "block_attention")
    family = "attention"
    doc = ("MaxViT's attention within partitions of tokens on a grid: partitionattention heads=H partition=7 "
           "grid=false (windows of 7×7 tokens; grid=true: 7×7 tokens spread over the grid); the partition divides "
           "the grid")
    args = (
        ArgSpec("heads", int, check=positive, doc="attention heads; they divide the features"),
        ArgSpec("partition", Pair, check=positive, doc="tokens of a partition (height, width)"),
        ArgSpec("grid", bool, False, doc="partition the grid into strided grids, not windows (grid attention)"),
    )

    extent = "partition"

    def validate(self, args):
        """No shift to check (WindowAttention's check)."""

    def build(self, args, in_shape):
        return archdsl_modules().PartitionAttention(in_shape.features, args["heads"], args["partition"], args["grid"],
                                                    in_shape.grid)

    def label(self, args):
        return f"{'grid' if args['grid'] else 'block'} attention {show(pair(args['partition']))}, {args['heads']} heads"
