"""How each layer kind is written in the Python export: its module's constructor call and the shape it gives.

One emitter per kind of the registry (a test checks that none is missing). Sizes are ``Py``
expressions, folded where they are known: ``conv3x3 c`` on ``channels × height × width`` is
``nn.Conv2d(channels, c, 3, padding=1)`` and gives ``c × height × width``.

Kinds that torch has no module for (``ln`` on an image, ``scale``, ``droppath``, ``shuffle``, the token layers
and attention) are built from ``archdsl/torch_modules.py``; ``helper_sources`` gives the classes a generated file uses, which the
file then defines itself, so that it never imports archdsl.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

from archdsl import ir
from archdsl.errors import BackendError
from archdsl.export import pyexpr
from archdsl.export.pyexpr import Py
from archdsl.layers import SAME, LayerKind
from archdsl.shapes import pair, pooled_size


class Unsupported(BackendError):
    """A construct the Python export cannot write as a class (the ONNX and TorchScript exports can)."""


class RankChange(Unsupported):
    """A loop body whose output rank is not its input's."""


class Layout(NamedTuple):
    """What a shape holds, as the generated classes are keyed: its rank, and whether it is tokens (L×D, or H×W×D
    on a grid: ``ir.Tokens``) rather than an image or a vector."""

    rank: int
    tokens: bool = False


@dataclass(frozen=True)
class Shape:
    """The shape at a point of a constructor: its sizes as expressions, or one expression for the tuple;
    ``tokens`` for token sequences (L×D, or H×W×D on a grid)."""

    rank: int
    dims: tuple[Py, ...] | None = None
    whole: Py | None = None
    tokens: bool = False

    @property
    def layout(self) -> Layout:
        return Layout(self.rank, self.tokens)

    def of(self, dims: tuple[Py, ...] | None = None, whole: Py | None = None) -> Shape:
        """The same layout with other sizes."""
        return replace(self, dims=dims, whole=whole)

    def expr(self) -> Py:
        return self.whole if self.whole is not None else pyexpr.tuple_of(list(self.dims))

    def dim(self, position: int) -> Py:
        return self.dims[position] if self.dims is not None else pyexpr.index(self.whole, position)

    @property
    def names(self) -> frozenset[str]:
        return self.expr().names


def window(size: Py, k: Py, s: Py, p: Py, d: Py, same: bool = False, ceil: bool | Py = False) -> Py:
    """The size along one axis after a convolution or pooling window, as simple as it can be written;
    ``ceil`` is torch's ceil_mode (known or an expression)."""
    values = (size, k, s, p, d)
    if isinstance(ceil, Py):
        if not ceil.known:
            return pyexpr.conditional(ceil, window(size, k, s, p, d, same, True), window(size, k, s, p, d, same, False))
        ceil = bool(ceil.value)
    if all(v.known for v in values):
        return pyexpr.const(pooled_size(size.value, k.value, s.value, p.value, d.value, ceil))
    if ceil:
        # shapes.pooled_size's rule: floor((size + p - 1 + min(p + s - reach, 0)) / s) + 1
        reach = pyexpr.binary("+", pyexpr.binary("*", d, pyexpr.binary("-", k, pyexpr.const(1))), pyexpr.const(1))
        short = pyexpr.call("min", [pyexpr.binary("-", pyexpr.binary("+", p, s), reach), pyexpr.const(0)], known=min)
        offset = pyexpr.binary("+", pyexpr.binary("-", p, pyexpr.const(1)), short)
        if s.is_(1):
            return pyexpr.binary("+", size, pyexpr.binary("+", offset, pyexpr.const(1)))
        return pyexpr.binary("+", pyexpr.binary("//", pyexpr.binary("+", size, offset), s), pyexpr.const(1))
    if s.is_(1) and (same or all(v.known for v in (k, p, d))):
        change = 0 if same else 2 * p.value - d.value * (k.value - 1)
        return pyexpr.binary("+", size, pyexpr.const(change))
    if p.is_(0) and d.is_(1) and s.src == k.src:
        return pyexpr.binary("//", size, k)
    args = [size, k, s, p, d]
    defaults = [None, None, 1, 0, 1]
    while len(args) > 2 and args[-1].is_(defaults[len(args) - 1]):
        args.pop()
    return pyexpr.call("out_size", args)


def axis(value: Py, position: int) -> Py:
    """One axis (0: height, 1: width) of a window argument, a whole number or a pair (height, width).

    A value known only when the network is built (a block's parameter) that may be a pair is read
    through ``pair``, which the generated file defines: ``pair(k)[1]``."""
    if value.known and isinstance(value.value, tuple):
        return pyexpr.const(value.value[position])
    if value.known or value.number:
        return value
    return pyexpr.index(pyexpr.call("pair", [value], depth=1), position)


def _windowed(size: tuple[Py, Py], k: Py, s: Py, p: Py, d: Py, same: bool = False, ceil: bool | Py = False) -> tuple[Py, Py]:
    """Height and width after a window whose arguments may be pairs."""
    return tuple(window(size[i], axis(k, i), axis(s, i), axis(p, i), axis(d, i), same, ceil) for i in (0, 1))


# -- one emitter per layer kind -------------------------------------------------------------------


@dataclass(frozen=True)
class _Emitter:
    """How a layer kind is written: its module's constructor call and the shape it gives."""

    write: Callable[[LayerKind, dict, Shape, ir.Call], tuple[str, Shape]]
    needs_dims: bool = True  # False: the layer passes its input's shape on untouched


def _nn(cls: str, positional: list[Py], keywords: list[tuple[str, Py, object]] = ()) -> str:
    """``nn.Conv2d(1, 6, 5, padding=2)``: keyword arguments left out where they equal torch's default."""
    return _constructor(f"nn.{cls}", positional, keywords)


def _constructor(cls: str, positional: list[Py], keywords: list[tuple[str, Py, object]] = ()) -> str:
    """A module's constructor call, keyword arguments left out where they equal the default."""
    parts = [p.src for p in positional]
    for name, value, default in keywords:
        same = default.src == value.src if isinstance(default, Py) else value.is_(default)
        if not same:
            parts.append(f"{name}={value}")
    return f"{cls}({', '.join(parts)})"


def _rank(shape: Shape, ranks: tuple[int, ...], call: ir.Call) -> None:
    """An image (rank 3) or a vector (rank 1) as ``ranks`` allow: never tokens."""
    if shape.rank not in ranks or shape.tokens:
        raise Unsupported(f"{call.name} cannot take a rank-{shape.rank} input here", call.span)


def _tokens(shape: Shape, call: ir.Call, grid: bool = False) -> None:
    if not shape.tokens or (grid and shape.rank != 3):
        raise Unsupported(f"{call.name} takes tokens{' on a grid' if grid else ''} here", call.span)


def _conv(kind, args, shape, call):
    _rank(shape, (3,), call)
    c, h, w = shape.dims
    k, s, d = args["k"], args["s"], args["d"]
    same = args["p"] is SAME
    if same and not (k.known and all(size % 2 for size in pair(k.value))):
        raise Unsupported(f"'{call.name}' has an even kernel", call.span)
    p = _same_padding(k, d) if same else args["p"]
    module = _nn("Conv2d", [c, args["out"], k], [
        ("stride", s, 1), ("padding", p, 0), ("dilation", d, 1), ("groups", args["groups"], 1), ("bias", args["bias"], True),
    ])
    return module, Shape(3, dims=(args["out"], *_windowed((h, w), k, s, p, d, same)))


def _flag(value: Py) -> Py:
    """A true-or-false argument as the bool torch's pooling functions insist on (``ceil=n`` may hold 1)."""
    return value if value.known else pyexpr.call("bool", [value])


def _same_padding(k: Py, d: Py) -> Py:
    """``d * (k - 1) // 2`` on each axis: one number when the axes agree, else (height, width)."""
    per_axis = [pyexpr.binary("//", pyexpr.binary("*", axis(d, i), pyexpr.const(pair(k.value)[i] - 1)), pyexpr.const(2))
                for i in (0, 1)]
    return per_axis[0] if per_axis[0].src == per_axis[1].src else pyexpr.tuple_of(per_axis)


def _pool(kind, args, shape, call):
    _rank(shape, (3,), call)
    c, h, w = shape.dims
    k, p, ceil = args["k"], args["p"], args["ceil"]
    s = args["s"] if args["s"] is not None else k
    keywords = [("stride", s, k), ("padding", p, 0), ("ceil_mode", _flag(ceil), False)]
    if "count_include_pad" in args:
        keywords.append(("count_include_pad", _flag(args["count_include_pad"]), True))
    module = _nn(kind.torch_class, [k], keywords)
    return module, Shape(3, dims=(c, *_windowed((h, w), k, s, p, pyexpr.const(1), ceil=ceil)))


def _adaptive(kind, args, shape, call):
    _rank(shape, (3,), call)
    h = args["h"]
    w = args["w"] if args["w"] is not None else h
    size = h if h.src == w.src else pyexpr.tuple_of([h, w])
    return _nn(kind.torch_class, [size]), Shape(3, dims=(shape.dims[0], h, w))


def _linear(kind, args, shape, call):
    if not shape.tokens:
        _rank(shape, (1,), call)
    module = _nn("Linear", [shape.dims[-1], args["out"]], [("bias", args["bias"], True)])
    return module, shape.of(dims=(*shape.dims[:-1], args["out"]))


def _flatten(kind, args, shape, call):
    size = shape.dims[0]
    for dim in shape.dims[1:]:
        size = pyexpr.binary("*", size, dim)
    return "nn.Flatten()", Shape(1, dims=(size,))


def _bn(kind, args, shape, call):
    _rank(shape, (1, 3), call)
    cls = "BatchNorm2d" if shape.rank == 3 else "BatchNorm1d"
    keywords = [("eps", args["eps"], 1e-5), ("momentum", args["momentum"], 0.1), ("affine", args["affine"], True)]
    return _nn(cls, [shape.dims[0]], keywords), shape


def _ln(kind, args, shape, call):
    if not shape.tokens:
        _rank(shape, (1, 3), call)
    cls = "LayerNorm2d" if shape.rank == 3 and not shape.tokens else "nn.LayerNorm"
    keywords = [("eps", args["eps"], 1e-5), ("elementwise_affine", args["affine"], True)]
    return _constructor(cls, [shape.dims[-1] if shape.tokens else shape.dims[0]], keywords), shape


def _gn(kind, args, shape, call):
    _rank(shape, (1, 3), call)
    keywords = [("eps", args["eps"], 1e-5), ("affine", args["affine"], True)]
    return _nn("GroupNorm", [args["groups"], shape.dims[0]], keywords), shape


def _lrn(kind, args, shape, call):
    _rank(shape, (3,), call)
    keywords = [("alpha", args["alpha"], 1e-4), ("beta", args["beta"], 0.75), ("k", args["k"], 1.0)]
    return _nn("LocalResponseNorm", [args["size"]], keywords), shape


def _scale(kind, args, shape, call):
    if shape.tokens:
        factors = pyexpr.tuple_of([shape.dims[-1]])
        return _constructor("Scale", [factors], [("init", args["init"], 1e-6)]), shape
    _rank(shape, (1, 3), call)
    one = pyexpr.const(1)
    factors = pyexpr.tuple_of([shape.dims[0], one, one] if shape.rank == 3 else [shape.dims[0]])
    return _constructor("Scale", [factors], [("init", args["init"], 1e-6)]), shape


def _gelu(kind, args, shape, call):
    approximate = pyexpr.conditional(args["approximate"], pyexpr.const("tanh"), pyexpr.const("none"))
    return _nn("GELU", [], [("approximate", approximate, "none")]), shape


def _chunk(kind, args, shape, call):
    _rank(shape, (1, 3), call)
    size = pyexpr.binary("//", shape.dims[0], args["parts"])
    start = pyexpr.binary("*", args["index"], size)
    end = pyexpr.binary("*", pyexpr.binary("+", args["index"], pyexpr.const(1)), size)
    return _constructor("ChannelSlice", [start, end]), Shape(shape.rank, dims=(size, *shape.dims[1:]))


def _slice(kind, args, shape, call):
    _rank(shape, (1, 3), call)
    size = pyexpr.binary("-", args["end"], args["start"])
    return _constructor("ChannelSlice", [args["start"], args["end"]]), Shape(shape.rank, dims=(size, *shape.dims[1:]))


def _softmax(kind, args, shape, call):
    return f"nn.Softmax(dim={-1 if shape.tokens else 1})", shape


def _to_tokens(kind, args, shape, call):
    _rank(shape, (3,), call)
    c, h, w = shape.dims
    return "ToTokens()", Shape(3, dims=(h, w, c), tokens=True)


def _to_image(kind, args, shape, call):
    _tokens(shape, call)
    h, w = args["h"], args["w"]
    if h is None:
        h, w = shape.dims[0], shape.dims[1]
    elif w is None:  # untokens H: a square, as the kind's finish() makes it
        w = h
    features = shape.dims[-1]
    return _constructor("ToImage", [h, w, features]), Shape(3, dims=(features, h, w))


def _length(shape: Shape) -> Py:
    """The number of tokens: L, or H·W on a grid."""
    return shape.dims[0] if shape.rank == 2 else pyexpr.binary("*", shape.dims[0], shape.dims[1])


def _take_token(kind, args, shape, call):
    _tokens(shape, call)
    return _constructor("TakeToken", [args["index"]]), Shape(1, dims=(shape.dims[-1],))


def _token_mean(kind, args, shape, call):
    _tokens(shape, call)
    return "TokenMean()", Shape(1, dims=(shape.dims[-1],))


def _class_token(kind, args, shape, call):
    _tokens(shape, call)
    length = pyexpr.binary("+", _length(shape), pyexpr.const(1))
    return _constructor("ClassToken", [shape.dims[-1]]), Shape(2, dims=(length, shape.dims[-1]), tokens=True)


def _position_embedding(kind, args, shape, call):
    _tokens(shape, call)
    return _constructor("PositionEmbedding", [pyexpr.tuple_of(list(shape.dims))], [("std", args["std"], 0.02)]), shape


def _patch_merge(kind, args, shape, call):
    _tokens(shape, call, grid=True)
    h, w, c = shape.dims
    two, one = pyexpr.const(2), pyexpr.const(1)
    pads = [pyexpr.binary("%", size, two) for size in (h, w)]
    halves = tuple(pyexpr.binary("//", pyexpr.binary("+", size, one), two) for size in (h, w))
    return _constructor("PatchMerge", pads), Shape(3, dims=(*halves, pyexpr.binary("*", pyexpr.const(4), c)), tokens=True)


def _attention(kind, args, shape, call):
    _tokens(shape, call)
    module = _constructor("SelfAttention", [shape.dims[-1], args["heads"]],
                          [("dropout", args["dropout"], 0.0), ("bias", args["bias"], True)])
    return module, shape


def _window_attention(kind, args, shape, call):
    _tokens(shape, call, grid=True)
    h, w, c = shape.dims
    module = _constructor(kind.module_class, [c, args["heads"], args["window"], args["shift"], pyexpr.tuple_of([h, w])],
                          [("dropout", args["dropout"], 0.0)])
    return module, shape


def _partition_attention(kind, args, shape, call):
    _tokens(shape, call, grid=True)
    h, w, c = shape.dims
    module = _constructor("PartitionAttention", [c, args["heads"], args["partition"], args["grid"],
                                                 pyexpr.tuple_of([h, w])])
    return module, shape


def _plain(cls: str | None = None) -> _Emitter:
    return _Emitter(lambda kind, args, shape, call: (f"nn.{cls or kind.torch_class}()", shape), needs_dims=False)


def _passing(write: Callable[[LayerKind, dict], str]) -> _Emitter:
    """A layer whose module needs only its arguments, and which passes its input's shape on."""
    return _Emitter(lambda kind, args, shape, call: (write(kind, args), shape), needs_dims=False)


EMITTERS: dict[str, _Emitter] = {
    "conv": _Emitter(_conv),
    "maxpool": _Emitter(_pool),
    "avgpool": _Emitter(_pool),
    "adaptiveavgpool": _Emitter(_adaptive),
    "adaptivemaxpool": _Emitter(_adaptive),
    "linear": _Emitter(_linear),
    "flatten": _Emitter(_flatten),
    "dropout": _passing(lambda kind, args: _nn("Dropout", [args["p"]])),
    "droppath": _passing(lambda kind, args: _constructor("DropPath", [args["p"]])),
    "id": _plain("Identity"),
    "relu": _plain(),
    "sigmoid": _plain(),
    "tanh": _plain(),
    "gelu": _Emitter(_gelu, needs_dims=False),
    "leakyrelu": _passing(lambda kind, args: _nn("LeakyReLU", [], [("negative_slope", args["slope"], 0.01)])),
    "softmax": _Emitter(_softmax, needs_dims=False),
    "relu6": _plain(),
    "silu": _plain(),
    "hardswish": _plain(),
    "hardsigmoid": _plain(),
    "elu": _passing(lambda kind, args: _nn("ELU", [], [("alpha", args["alpha"], 1.0)])),
    "selu": _plain(),
    "mish": _plain(),
    "bn": _Emitter(_bn),
    "lrn": _Emitter(_lrn, needs_dims=False),
    "ln": _Emitter(_ln),
    "gn": _Emitter(_gn),
    "shuffle": _passing(lambda kind, args: _constructor("ChannelShuffle", [args["groups"]])),
    "chunk": _Emitter(_chunk),
    "slice": _Emitter(_slice),
    "scale": _Emitter(_scale),
    "tokens": _Emitter(_to_tokens),
    "untokens": _Emitter(_to_image),
    "token": _Emitter(_take_token),
    "tokenmean": _Emitter(_token_mean),
    "clstoken": _Emitter(_class_token),
    "posembed": _Emitter(_position_embedding),
    "patchmerge": _Emitter(_patch_merge),
    "attention": _Emitter(_attention),
    "windowattention": _Emitter(_window_attention),
    "windowattention2": _Emitter(_window_attention),
    "partitionattention": _Emitter(_partition_attention),
}


# -- archdsl's own modules, copied into the files that use them ----------------------------------------


def _module_sources(path: Path) -> dict[str, str]:
    """The source of each class of the file at ``path``, read as text: torch is not imported to export."""
    text = path.read_text(encoding="utf-8")
    return {node.name: ast.get_source_segment(text, node) for node in ast.parse(text).body if isinstance(node, ast.ClassDef)}


def _module_bases(path: Path) -> dict[str, list[str]]:
    """The classes of the file at ``path`` that each of its classes derives from (``WindowAttention2`` from
    ``WindowAttention``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name: [base.id for base in node.bases if isinstance(base, ast.Name)] for node in tree.body
            if isinstance(node, ast.ClassDef)}


_MODULES = Path(__file__).parent.parent / "torch_modules.py"
# The layers' modules, and the normalisation that a trained network's export puts first.
HELPERS: dict[str, str] = {**_module_sources(_MODULES), **_module_sources(Path(__file__).parent / "normalize.py")}
_BASES = {name: [base for base in bases if base in HELPERS] for name, bases in _module_bases(_MODULES).items()}


def helper_sources(texts: Iterable[str]) -> list[str]:
    """The classes of ``HELPERS`` that the generated ``texts`` construct, and those they derive from, in ``HELPERS``'
    order (a base class is defined before the classes that derive from it)."""
    text = "\n".join(texts)
    used = {name for name in HELPERS if re.search(rf"(?<![\w.]){name}\(", text)}
    pending = list(used)
    while pending:
        for base in _BASES.get(pending.pop(), []):
            if base not in used:
                used.add(base)
                pending.append(base)
    return [source for name, source in HELPERS.items() if name in used]
