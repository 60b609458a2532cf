"""How each layer kind is written in the Python export: its module's constructor call and the shape it gives.

One emitter per kind of the registry (a test checks that none is missing). Sizes are ``Py``
expressions, folded where they are known: ``conv3x3 c`` on ``channels × height × width`` is
``nn.Conv2d(channels, c, 3, padding=1)`` and gives ``c × height × width``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from archdsl import ir
from archdsl.errors import BackendError
from archdsl.export import pyexpr
from archdsl.export.pyexpr import Py
from archdsl.layers import SAME, LayerKind
from archdsl.shapes import pooled_size


class Unsupported(BackendError):
    """A construct the Python export cannot write as a class (the ONNX and TorchScript exports can)."""


class RankChange(Unsupported):
    """A loop body whose output rank is not its input's."""


@dataclass(frozen=True)
class Shape:
    """The shape at a point of a constructor: its sizes as expressions, or one expression for the tuple."""

    rank: int
    dims: tuple[Py, ...] | None = None
    whole: Py | None = None

    def expr(self) -> Py:
        return self.whole if self.whole is not None else pyexpr.tuple_of(list(self.dims))

    def dim(self, position: int) -> Py:
        return self.dims[position] if self.dims is not None else pyexpr.index(self.whole, position)

    @property
    def names(self) -> frozenset[str]:
        return self.expr().names


def window(size: Py, k: Py, s: Py, p: Py, d: Py, same: bool = False) -> Py:
    """The size along one axis after a convolution or pooling window, as simple as it can be written."""
    values = (size, k, s, p, d)
    if all(v.known for v in values):
        return pyexpr.const(pooled_size(size.value, k.value, s.value, p.value, d.value))
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


# -- one emitter per layer kind -------------------------------------------------------------------


@dataclass(frozen=True)
class _Emitter:
    """How a layer kind is written: its module's constructor call and the shape it gives."""

    write: Callable[[LayerKind, dict, Shape, ir.Call], tuple[str, Shape]]
    needs_dims: bool = True  # False: the layer passes its input's shape on untouched


def _nn(cls: str, positional: list[Py], keywords: list[tuple[str, Py, object]] = ()) -> str:
    """``nn.Conv2d(1, 6, 5, padding=2)``: keyword arguments left out where they equal torch's default."""
    parts = [p.src for p in positional]
    for name, value, default in keywords:
        same = default.src == value.src if isinstance(default, Py) else value.is_(default)
        if not same:
            parts.append(f"{name}={value}")
    return f"nn.{cls}({', '.join(parts)})"


def _rank(shape: Shape, ranks: tuple[int, ...], call: ir.Call) -> None:
    if shape.rank not in ranks:
        raise Unsupported(f"{call.name} cannot take a rank-{shape.rank} input here", call.span)


def _conv(kind, args, shape, call):
    _rank(shape, (3,), call)
    c, h, w = shape.dims
    k, s, d = args["k"], args["s"], args["d"]
    same = args["p"] is SAME
    if same and not (k.known and k.value % 2):
        raise Unsupported(f"'{call.name}' has an even kernel", call.span)
    p = pyexpr.binary("//", pyexpr.binary("*", d, pyexpr.const(k.value - 1)), pyexpr.const(2)) if same else args["p"]
    module = _nn("Conv2d", [c, args["out"], k], [
        ("stride", s, 1), ("padding", p, 0), ("dilation", d, 1), ("groups", args["groups"], 1), ("bias", args["bias"], True),
    ])
    out = (args["out"], window(h, k, s, p, d, same), window(w, k, s, p, d, same))
    return module, Shape(3, dims=out)


def _pool(kind, args, shape, call):
    _rank(shape, (3,), call)
    c, h, w = shape.dims
    k, p = args["k"], args["p"]
    s = args["s"] if args["s"] is not None else k
    one = pyexpr.const(1)
    module = _nn(kind.torch_class, [k], [("stride", s, k), ("padding", p, 0)])
    return module, Shape(3, dims=(c, window(h, k, s, p, one), window(w, k, s, p, one)))


def _adaptive(kind, args, shape, call):
    _rank(shape, (3,), call)
    h = args["h"]
    w = args["w"] if args["w"] is not None else h
    size = h if h.src == w.src else pyexpr.tuple_of([h, w])
    return _nn("AdaptiveAvgPool2d", [size]), Shape(3, dims=(shape.dims[0], h, w))


def _linear(kind, args, shape, call):
    _rank(shape, (1,), call)
    module = _nn("Linear", [shape.dims[0], args["out"]], [("bias", args["bias"], True)])
    return module, Shape(1, dims=(args["out"],))


def _flatten(kind, args, shape, call):
    size = shape.dims[0]
    for dim in shape.dims[1:]:
        size = pyexpr.binary("*", size, dim)
    return "nn.Flatten()", Shape(1, dims=(size,))


def _bn(kind, args, shape, call):
    _rank(shape, (1, 3), call)
    cls = "BatchNorm2d" if shape.rank == 3 else "BatchNorm1d"
    return _nn(cls, [shape.dims[0]], [("eps", args["eps"], 1e-5), ("momentum", args["momentum"], 0.1)]), shape


def _lrn(kind, args, shape, call):
    _rank(shape, (3,), call)
    keywords = [("alpha", args["alpha"], 1e-4), ("beta", args["beta"], 0.75), ("k", args["k"], 1.0)]
    return _nn("LocalResponseNorm", [args["size"]], keywords), shape


def _plain(cls: str | None = None) -> _Emitter:
    return _Emitter(lambda kind, args, shape, call: (f"nn.{cls or kind.torch_class}()", shape), needs_dims=False)


EMITTERS: dict[str, _Emitter] = {
    "conv": _Emitter(_conv),
    "maxpool": _Emitter(_pool),
    "avgpool": _Emitter(_pool),
    "adaptiveavgpool": _Emitter(_adaptive),
    "linear": _Emitter(_linear),
    "flatten": _Emitter(_flatten),
    "bn": _Emitter(_bn),
    "dropout": _Emitter(lambda kind, args, shape, call: (_nn("Dropout", [args["p"]]), shape), needs_dims=False),
    "lrn": _Emitter(_lrn, needs_dims=False),
    "id": _plain("Identity"),
    "relu": _plain(),
    "sigmoid": _plain(),
    "tanh": _plain(),
    "gelu": _plain(),
    "leakyrelu": _Emitter(lambda kind, args, shape, call: (_nn("LeakyReLU", [], [("negative_slope", args["slope"], 0.01)]), shape),
                          needs_dims=False),
    "softmax": _Emitter(lambda kind, args, shape, call: ("nn.Softmax(dim=1)", shape), needs_dims=False),
}
