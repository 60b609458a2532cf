"""The registry of layer kinds: one class per kind, and the only place that says what a name means.

A kind declares its arguments, its shape rule, its parameter and MAC counts, its torch module, its
label and its family. Kinds live in one module per family, and adding a layer kind is one decorated
class there::

    @register
    class Relu6(Activation):          # layers/activation.py
        key = "relu6"
        torch_class = "ReLU6"

    conv.py            conv, convKxK and convAxB
    pooling.py         maxpool, avgpool, adaptiveavgpool (gap), adaptivemaxpool (gmp)
    linear.py          linear, flatten
    regularisation.py  dropout, droppath
    identity.py        id
    activation.py      relu, sigmoid, tanh, gelu, leakyrelu, softmax, relu6, silu, hardswish, ...
    norm.py            bn, lrn, ln, gn
    channels.py        shuffle, chunk, slice
    scale.py           scale
    tokens.py          tokens, untokens, token, tokenmean, clstoken, posembed, patchmerge
    attention.py       attention, windowattention, windowattention2, partitionattention

Names are looked up with ``lookup``: the key, an alias (``fc`` for ``linear``), or sugar
(``conv3x3``, ``conv1x7``, ``maxpool2``, ``gap``) that presets some arguments. MACs follow torchvision's
convention: multiply-accumulates of convolution and linear weights, and of attention's projections and its two
matrix products (QKᵀ and the weighted sum of the values).

A shape is an image (C×H×W), a vector or tokens (``ir.Tokens``: L×D, or on an H×W grid); a kind takes the
layouts its rule accepts and says which it needs otherwise (``shapes.require_rank``, ``require_tokens``).
"""

from __future__ import annotations

import difflib
import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from archdsl.ir import Shape, Value
from archdsl.shapes import pair

REQUIRED = object()


class Pair:
    """The type of an argument that is one whole number or a list of two, height then width: a window
    ``k=3`` or ``k=(1, 7)``. The resolver hands the layer an ``int`` or a ``tuple`` of two ints (``pair``
    makes either a tuple: ``shapes.pair``); the argument's ``check`` applies to each number."""


def show_pair(value: int | tuple[int, int]) -> str:
    """``3`` -> ``3×3``; ``(1, 7)`` -> ``1×7``: a window as papers write it."""
    height, width = pair(value)
    return f"{height}×{width}"


def show_step(value: int | tuple[int, int]) -> str:
    """A stride or dilation in a label: ``2``, or ``2×1`` when the axes differ."""
    height, width = pair(value)
    return str(height) if height == width else f"{height}×{width}"


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


def divides_hint(key: str, groups: int, channels) -> str | None:
    """For a group count that does not divide the channels: the nearest that do (``gn 4 or gn 6 would``)."""
    if not isinstance(channels, int):
        return None
    start = min(groups, channels)
    # Bounded scans: a size near 2**62 need not be factorised to say something useful.
    below = next((g for g in range(start, max(start - 4096, 0), -1) if channels % g == 0), None)
    above = next((g for g in range(groups + 1, min(groups + 4096, channels) + 1) if channels % g == 0), None)
    options = [f"{key} {g}" for g in (below, above) if g is not None]
    if not options:
        return f"the number of groups must divide the {channels} channels"
    return f"the number of groups must divide the {channels} channels: {' or '.join(options)} would"


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

    def meant_by(self, lowered: str) -> str | None:
        """The spelling of this kind that another library's name (lower-cased) means, if any."""
        return self.key if lowered in self.known_elsewhere else None


REGISTRY: dict[str, LayerKind] = {}
_ALIASES: dict[str, str] = {}
# Sugar that "did you mean" may answer with, beside the keys and aliases.
_SUGAR_NAMES = ("conv1x1", "conv3x3", "conv5x5", "conv7x7", "conv1x7", "conv7x1", "maxpool2", "maxpool3", "avgpool2",
                "gap", "gmp")


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
    """The closest known name, for "did you mean ...?": ``Linear`` -> linear, ``batchnorm2d`` -> bn,
    ``GlobalAveragePooling2D`` -> gap, ``cnv3x3`` -> conv3x3."""
    names = [*REGISTRY, *_ALIASES, *_SUGAR_NAMES, *extra]
    lowered = name.lower()
    if lowered != name and lowered in names:
        return lowered
    for kind in REGISTRY.values():
        meant = kind.meant_by(lowered)
        if meant is not None:
            return meant
    match = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return match[0] if match else None


def describe_kinds() -> str:
    """The reference of every layer kind: usage, aliases, sugar and what it does (``archdsl layers``)."""
    lines = []
    for key, kind in REGISTRY.items():
        parts = [key]
        for spec in kind.args:
            if spec.default is REQUIRED:
                parts.append(spec.name.upper())
            else:
                default = spec.default
                if default is None:
                    default = "…"
                elif isinstance(default, bool):
                    default = "true" if default else "false"
                parts.append(f"{spec.name}={default}")
        aliases = f"  (alias {', '.join(kind.aliases)})" if kind.aliases else ""
        lines.append(f"{' '.join(str(p) for p in parts):44} {kind.family:15} {kind.doc}{aliases}")
    return "\n".join(lines)


def torch_nn():
    """``torch.nn``, imported when a module is built, never at package import."""
    import torch.nn

    return torch.nn


def archdsl_modules():
    """archdsl's own modules for what torch has no module for (``LayerNorm2d``, ``DropPath``, ...)."""
    from archdsl import torch_modules

    return torch_modules


# The families register their kinds on import, in this order: the registry's, and so the order of
# `archdsl layers` and of compare's family rows.
FAMILY_MODULES = ("conv", "pooling", "linear", "regularisation", "identity", "activation", "norm", "channels", "scale",
                  "tokens", "attention")
for _module in FAMILY_MODULES:
    importlib.import_module(f"archdsl.layers.{_module}")

from archdsl.layers.activation import Activation
from archdsl.layers.conv import SAME

__all__ = [
    "REGISTRY", "REQUIRED", "SAME", "Activation", "ArgSpec", "Default", "LayerKind", "Pair", "describe_kinds",
    "divides_hint", "lookup", "non_negative", "pair", "positive", "probability", "register", "show_pair", "show_step",
    "suggest",
]  # fmt: skip
