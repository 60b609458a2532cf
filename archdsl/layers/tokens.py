"""Token sequences: from an image to tokens and back (``tokens``, ``untokens H W``), one token or their mean
(``token I``, ``tokenmean``), the learned class token and position embedding of a Vision Transformer
(``clstoken``, ``posembed L``) and Swin's 2×2 patch merging (``patchmerge``).

    network vit(...) : [3, 224, 224] =
        conv 768 k=16 s=16; tokens; clstoken; posembed 197; ...; token 0; linear 1000

``tokens`` keeps the image's H×W as the tokens' grid (``(14x14)x768``), what Swin's layers need; a class token
makes them a plain sequence (``197x768``). Per-token layers (``linear``, ``ln``, activations, ``dropout``,
``droppath``, ``scale``) act on each token's features and keep the grid.
"""

from __future__ import annotations

from archdsl.ir import Tokens
from archdsl.layers import ArgSpec, LayerKind, archdsl_modules, non_negative, positive, register
from archdsl.shapes import LayerError, described, require_rank, require_tokens, show
from archdsl.symbolic import Sym


@register
class ToTokens(LayerKind):
    """C×H×W to H·W tokens of C features on the H×W grid, row by row (as torchvision's ViT flattens its patch
    embedding, and as Swin permutes its own)."""

    key = "tokens"
    known_elsewhere = ("patchembed", "patch_embed", "to_tokens")
    family = "reshape"
    doc = "an image C×H×W as H·W tokens of C features, row by row, on its H×W grid (channels last)"

    def infer(self, args, shape):
        channels, height, width = require_rank(shape, 3, "tokens", "a C×H×W image")
        return Tokens((height, width, channels))

    def build(self, args, in_shape):
        return archdsl_modules().ToTokens()


@register
class ToImage(LayerKind):
    """L = H·W tokens of D features to the D×H×W image they tile row by row; tokens on a grid know their H×W."""

    key = "untokens"
    family = "reshape"
    doc = "tokens as the D×H×W image they tile row by row: untokens H W (on a grid, its H×W by default)"
    args = (
        ArgSpec("h", int, None, doc="the image's height (default: the grid's)", positional=True),
        ArgSpec("w", int, None, doc="the image's width (default: the height, or the grid's)", positional=True),
    )

    def finish(self, name, args):
        if args["w"] is None:
            args["w"] = args["h"]

    def validate(self, args):
        for name in ("h", "w"):
            if args[name] is not None and args[name] <= 0:
                raise LayerError(f"{name} must be positive, but it is {args[name]}", arg=name)

    def infer(self, args, shape):
        tokens = require_tokens(shape, "untokens")
        if args["h"] is None:
            if tokens.grid is None:
                raise LayerError(f"untokens needs the image's height and width: its input is {described(tokens)}, "
                                 "which lie on no grid", hint="untokens H W, with H·W the number of tokens")
            return (tokens.features, *tokens.grid)
        size = (args["h"], args["w"])
        if not isinstance(tokens.length, int):
            raise LayerError(f"untokens {show(size)} needs a number of tokens known before the input size, not "
                             f"{tokens.length}", hint="on tokens from 'tokens', untokens alone takes their grid's size",
                             arg="h")
        if tokens.grid is not None and size != tokens.grid:
            raise LayerError(f"untokens {show(size)} differs from the tokens' own {show(tokens.grid)} grid",
                             hint="leave the sizes out: untokens takes the grid's", arg="h")
        if args["h"] * args["w"] != tokens.length:
            raise LayerError(f"{show(size)} is {args['h'] * args['w']} positions, but the input is "
                             f"{described(tokens)}", hint="H·W must be the number of tokens", arg="h")
        return (tokens.features, *size)

    def build(self, args, in_shape):
        height, width = (args["h"], args["w"]) if args["h"] is not None else in_shape.grid
        return archdsl_modules().ToImage(height, width, in_shape.features)

    def label(self, args):
        return "untokens" if args["h"] is None else f"untokens {args['h']}×{args['w']}"


@register
class TakeToken(LayerKind):
    """One token, its D features: ``token 0`` is ViT's class token, what its head reads."""

    key = "token"
    known_elsewhere = ("cls", "take_token")
    family = "reshape"
    doc = "token I: the features of token I (from 0; row by row on a grid), a vector; token 0 is a class token"
    args = (ArgSpec("index", int, check=non_negative, doc="which token, from 0"),)

    def infer(self, args, shape):
        tokens = require_tokens(shape, "token")
        length, index = tokens.length, args["index"]
        if not isinstance(length, int) and index > 0 and (length - index).sign() != 1:
            raise LayerError(f"whether token {index} exists depends on the input size: the input is {described(tokens)}",
                             hint="compile the network at a concrete input (--input), or take token 0", arg="index")
        if isinstance(length, int) and index >= length:
            raise LayerError(f"token {index} does not exist: the input is {described(tokens)}, counted from 0",
                             hint="token 0 is the first (a class token)", arg="index")
        return (tokens.features,)

    def build(self, args, in_shape):
        return archdsl_modules().TakeToken(args["index"])

    def label(self, args):
        return f"token {args['index']}"


@register
class TokenMean(LayerKind):
    key = "tokenmean"
    known_elsewhere = ("meanpool", "mean_pool")
    family = "pooling"
    doc = "the mean of the tokens, a vector of their D features (global average pooling of tokens)"

    def infer(self, args, shape):
        return (require_tokens(shape, "tokenmean").features,)

    def build(self, args, in_shape):
        return archdsl_modules().TokenMean()

    def label(self, args):
        return "mean of tokens"


@register
class ClassToken(LayerKind):
    """A learned token put first (torchvision's ViT ``class_token``, d2l's ``cls_token``): D parameters, starting
    at zero. Tokens on a grid become a plain sequence."""

    key = "clstoken"
    known_elsewhere = ("classtoken", "class_token", "cls_token")
    family = "embedding"
    doc = "a learned class token put before the tokens: L×D to (L+1)×D, D parameters"

    def infer(self, args, shape):
        tokens = require_tokens(shape, "clstoken")
        return Tokens((tokens.length + 1, tokens.features))

    def params(self, args, in_shape):
        return in_shape.features

    def build(self, args, in_shape):
        return archdsl_modules().ClassToken(in_shape.features)

    def label(self, args):
        return "class token"


@register
class PositionEmbedding(LayerKind):
    """A learned embedding added to each position, L·D parameters; ``L`` is written out so that the spec says
    which input it is for, and checked against the tokens that arrive."""

    key = "posembed"
    known_elsewhere = ("positionembedding", "pos_embedding", "pos_embed", "positional_embedding")
    family = "embedding"
    doc = ("posembed L std=0.02: a learned position embedding added to L tokens, L·D parameters starting normal "
           "(torchvision's std 0.02; d2l's randn is std=1)")
    args = (
        ArgSpec("length", int, check=positive, doc="the number of tokens"),
        ArgSpec("std", float, 0.02, check=positive, doc="the standard deviation of the initial values"),
    )

    def infer(self, args, shape):
        tokens = require_tokens(shape, "posembed")
        if isinstance(tokens.length, Sym):
            raise LayerError(f"posembed {args['length']} needs a number of tokens known before the input size, not "
                             f"{tokens.length}", hint="a position embedding fixes the input size: compile the "
                             "network at its own input (--input)", arg="length")
        if tokens.length != args["length"]:
            raise LayerError(f"posembed {args['length']} embeds {args['length']} positions, but the input is "
                             f"{described(tokens)}", hint=f"the embedding has a position per token: posembed "
                             f"{tokens.length} here, or give the network the input that makes {args['length']} tokens",
                             arg="length")
        return shape

    def params(self, args, in_shape):
        return in_shape.length * in_shape.features

    def build(self, args, in_shape):
        return archdsl_modules().PositionEmbedding(tuple(in_shape), args["std"])

    def label(self, args):
        return f"position embedding {args['length']}"


@register
class PatchMerge(LayerKind):
    """Swin's 2×2 space-to-depth of tokens on a grid: H×W×C to ⌈H/2⌉×⌈W/2⌉×4C, the four tokens of each 2×2
    patch side by side (an odd grid padded with zeros, as torchvision does). Swin's PatchMerging follows it with
    ``ln; linear 2C bias=false``."""

    key = "patchmerge"
    known_elsewhere = ("patchmerging", "patch_merging", "spacetodepth", "space_to_depth")
    family = "reshape"
    doc = "Swin's 2×2 space-to-depth of tokens on a grid: (H×W)×C to (H/2×W/2)×4C (an odd side padded)"

    def infer(self, args, shape):
        tokens = require_tokens(shape, "patchmerge", grid=True)
        height, width = tokens.grid
        return Tokens(((height + 1) // 2, (width + 1) // 2, 4 * tokens.features))

    def build(self, args, in_shape):
        height, width = in_shape.grid
        return archdsl_modules().PatchMerge(height % 2, width % 2)

    def label(self, args):
        return "patch merge 2×2"
