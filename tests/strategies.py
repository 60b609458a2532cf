"""Random archdsl programs for property tests, and the torch oracle they are checked against.

``programs()`` draws a whole program (a network, blocks with parameters and defaults, imports split
over files) as a small tree of its own (``Layer``, ``Group``, ``Repeat``, ``Branch``, ``Cond``,
``Call``) that renders to .arch text. The same tree runs through ``Oracle``, a torch model written
by hand from the language's description: each layer becomes the torch module a person would write
(``conv3x3 c`` is ``nn.Conv2d(in, c, 3, padding=1)``), with its input size read off the tensor that
really arrives. So the oracle's shapes, parameters and verdicts come from torch, never from archdsl.

Programs use the whole language: every layer kind and spelling with random hyperparameters (tokens too: a quarter
of the networks turn their input into tokens first, and the oracle's token tensors are a ``Tokens`` subclass, so
that what a tensor holds travels with it as archdsl's shape says it; Swin's window attention is torchvision's),
block
parameters used through expressions (``c * 2``, ``max(in.c // 2, 1)``, ``in.h % 5``, ``in.c``), defaults,
keyword arguments, nested repeats, groups, ``if`` with comparisons and ``and``/``or``/``not`` (of
numbers, decimals and booleans), ``concat`` and ``add`` with ``id`` branches, and imports across files;
``valid=False`` programs also spell numbers with decimals and booleans (``4 * 1.0``, ``4 + false``).
``expressions()`` and ``cond_tests()`` draw expressions alone, every operator on every kind of operand, and
``evaluate`` is their reference: the language's arithmetic written out independently of archdsl.

Generation is steered by torch itself: with ``valid=True`` each item is tried on a meta tensor and
replaced by ``relu`` when torch refuses it, so the program is valid by construction; with
``valid=False`` hyperparameters, branch shapes and layer order are drawn without regard to the
shape, and the test compares verdicts.

    >>> programs().example().files()["main.arch"]   # doctest: +SKIP
    'import "lib.arch"\\nnetwork net(ch = 3) : [ch, 17, 12] = blk0(4); maxpool2; flatten; fc 5'
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field, fields, is_dataclass

import torch
from hypothesis import strategies as st
from torch import nn

from archdsl import ir

# -- expressions -----------------------------------------------------------------------------------


@dataclass
class Lit:
    value: int | float | bool


@dataclass
class Ref:
    name: str


@dataclass
class InDim:
    dim: str  # c, h or w


@dataclass
class Bin:
    op: str
    left: object
    right: object


@dataclass
class Fn:
    name: str  # min or max
    args: list


@dataclass
class Neg:
    operand: object


Expr = Lit | Ref | InDim | Bin | Fn | Neg


def expr_text(e: Expr) -> str:
    """Compound expressions are parenthesised, so the text reads the same in every argument position."""
    if isinstance(e, Lit):
        if isinstance(e.value, bool):
            return "true" if e.value else "false"
        return repr(e.value)
    if isinstance(e, Ref):
        return e.name
    if isinstance(e, InDim):
        return f"in.{e.dim}"
    if isinstance(e, Bin):
        return f"({expr_text(e.left)} {e.op} {expr_text(e.right)})"
    if isinstance(e, Fn):
        return f"{e.name}({', '.join(expr_text(a) for a in e.args)})"
    assert isinstance(e, Neg)
    return f"(-{expr_text(e.operand)})"


class Reject(Exception):
    """The oracle refuses a program where torch itself would let a different computation through."""


class Tokens(torch.Tensor):
    """The oracle's tokens: N×L×D, or N×H×W×D on a grid. A tensor subclass, so that what the tensor holds travels
    with it through torch's operations, as the language's shape says it; images and vectors are plain tensors."""


def plain(x: torch.Tensor) -> torch.Tensor:
    return x.as_subclass(torch.Tensor)


def shape_of(x: torch.Tensor) -> tuple:
    """What a block's in.c, in.h and in.w read: the tensor's sizes, as ``ir.Tokens`` for tokens."""
    sizes = tuple(x.shape[1:])
    return ir.Tokens(sizes) if isinstance(x, Tokens) else sizes


def input_sizes(shape: tuple) -> list[tuple[str, int]]:
    """in.c, in.h and in.w of a block's input, as the language defines them: an image's C, H, W; a vector's
    length; the features of tokens and the H, W of their grid."""
    if isinstance(shape, ir.Tokens):
        return [("c", shape[-1]), *(zip("hw", shape[:2]) if len(shape) == 3 else [])]
    return list(zip("chw", shape))


TORCH_REJECTS = (RuntimeError, ValueError, IndexError, Reject)

_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "//": lambda a, b: a // b,
        "%": lambda a, b: a % b, "/": lambda a, b: a / b}
_CMP = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
MAGNITUDE = 2**62  # the language's bound on every number, written out here


def evaluate(e: Expr, env: dict, block_in: tuple[int, ...]):
    """An expression's value, as the language describes it: Python's arithmetic on whole numbers and
    decimals, none on booleans, and every number within ±2**62. ``in.c`` and friends read the shape
    entering the current block."""
    if isinstance(e, Lit):
        return e.value
    if isinstance(e, Ref):
        return env[e.name]
    if isinstance(e, InDim):
        sizes = dict(input_sizes(block_in))
        if e.dim not in sizes:
            raise Reject(f"in.{e.dim} of {block_in}")
        return sizes[e.dim]
    if isinstance(e, Bin):
        left, right = numbers(evaluate(e.left, env, block_in), evaluate(e.right, env, block_in))
        if e.op in ("/", "//", "%") and right == 0:
            raise Reject("division by zero")
        return bounded(_OPS[e.op](left, right))
    if isinstance(e, Fn):
        return {"min": min, "max": max}[e.name](numbers(*(evaluate(a, env, block_in) for a in e.args)))
    assert isinstance(e, Neg)
    return -numbers(evaluate(e.operand, env, block_in))[0]


def numbers(*operands) -> tuple:
    """The operands of arithmetic, which are never booleans (true is not 1)."""
    if any(isinstance(v, bool) for v in operands):
        raise Reject("arithmetic on a boolean")
    return operands


def bounded(value):
    if not abs(value) <= MAGNITUDE:
        raise Reject(f"{value} is past 2**62")
    return value


def compare(op: str, left, right) -> bool:
    """Comparisons: booleans only with booleans, and only for (in)equality."""
    booleans = [isinstance(v, bool) for v in (left, right)]
    if any(booleans) and not (all(booleans) and op in ("==", "!=")):
        raise Reject(f"{left} {op} {right}")
    return _CMP[op](left, right)


# -- items -----------------------------------------------------------------------------------------


@dataclass
class Layer:
    spelling: str
    pos: list = field(default_factory=list)
    kw: dict = field(default_factory=dict)


@dataclass
class Group:
    items: list


@dataclass
class Repeat:
    count: Expr
    item: object


@dataclass
class Branch:
    op: str  # concat or add
    branches: list  # of lists of items


@dataclass
class Atom:
    """One term of an ``if`` test: ``[not] left [op right]``."""

    negated: bool
    left: Expr
    op: str | None = None
    right: Expr | None = None


@dataclass
class Cond:
    test: list  # or of ands of Atoms
    then: object
    otherwise: object


@dataclass
class Call:
    name: str
    pos: list = field(default_factory=list)
    kw: dict = field(default_factory=dict)
    bare: bool = False  # ``blk`` rather than ``blk()``, for blocks without arguments


@dataclass
class BlockDef:
    name: str
    params: list  # of (name, default Expr or None)
    body: list
    file: str = "main.arch"


@dataclass
class Program:
    input: list  # of Exprs
    body: list
    params: list = field(default_factory=list)  # of (name, default Expr)
    output: list | None = None
    blocks: dict = field(default_factory=dict)  # name -> BlockDef, in definition order
    sep: str = "; "

    def input_shape(self) -> tuple[int, ...]:
        env: dict = {}
        for name, default in self.params:
            env[name] = evaluate(default, env, ())
        return tuple(evaluate(e, env, ()) for e in self.input)

    def files(self) -> dict[str, str]:
        """The .arch files by relative path: main.arch imports lib.arch, which imports sub/deep.arch."""
        texts: dict[str, list[str]] = {"main.arch": [], "lib.arch": [], "sub/deep.arch": []}
        for block in self.blocks.values():
            texts[block.file].append(self.block_text(block))
        if texts["sub/deep.arch"]:
            texts["lib.arch"].insert(0, 'import "sub/deep.arch"')
        if texts["lib.arch"]:
            texts["main.arch"].insert(0, '# generated\nimport "lib.arch"')
        params = ", ".join(f"{name} = {expr_text(d)}" for name, d in self.params)
        head = f"network net({params})" if self.params else "network net"
        head += f" : [{', '.join(expr_text(e) for e in self.input)}]"
        if self.output is not None:
            head += f" -> [{', '.join(expr_text(e) for e in self.output)}]"
        texts["main.arch"].append(f"{head} =\n    {self.body_text(self.body)}")
        return {path: "\n".join(lines) + "\n" for path, lines in texts.items() if lines}

    def block_text(self, block: BlockDef) -> str:
        params = ", ".join(name if d is None else f"{name} = {expr_text(d)}" for name, d in block.params)
        head = f"block {block.name}({params})" if block.params else f"block {block.name}"
        return f"{head} = {self.body_text(block.body)}"

    def body_text(self, items: list) -> str:
        return self.sep.join(item_text(item) for item in items)


def _args_text(pos: list, kw: dict, spaced: bool) -> str:
    parts = [expr_text(e) for e in pos] + [f"{k}={expr_text(v)}" for k, v in kw.items()]
    return (" " + " ".join(parts) if parts else "") if spaced else ", ".join(parts)


def item_text(item) -> str:
    if isinstance(item, Layer):
        return item.spelling + _args_text(item.pos, item.kw, spaced=True)
    if isinstance(item, Group):
        return "<" + "; ".join(item_text(i) for i in item.items) + ">"
    if isinstance(item, Repeat):
        return f"repeat {expr_text(item.count)} {item_text(item.item)}"
    if isinstance(item, Branch):
        return f"{item.op} [ " + " | ".join("; ".join(item_text(i) for i in b) for b in item.branches) + " ]"
    if isinstance(item, Cond):
        return f"if {cond_text(item.test)} then {item_text(item.then)} else {item_text(item.otherwise)}"
    assert isinstance(item, Call)
    if item.bare:
        return item.name
    return f"{item.name}({_args_text(item.pos, item.kw, spaced=False)})"


def cond_text(test: list) -> str:
    def atom(a: Atom) -> str:
        text = expr_text(a.left) if a.op is None else f"{expr_text(a.left)} {a.op} {expr_text(a.right)}"
        return "not " + text if a.negated else text

    return " or ".join(" and ".join(atom(a) for a in conj) for conj in test)


def cond_value(test: list, env: dict, block_in: tuple[int, ...]) -> bool:
    def atom(a: Atom) -> bool:
        left = evaluate(a.left, env, block_in)
        value = bool(left) if a.op is None else compare(a.op, left, evaluate(a.right, env, block_in))
        return not value if a.negated else value

    return any(all(atom(a) for a in conj) for conj in test)


# -- expressions alone: every operator on every kind of operand -----------------------------------------

ARITHMETIC = list(_OPS)


def expressions() -> st.SearchStrategy:
    """Arithmetic over whole numbers, decimals, booleans and ``in.c``/``in.h``/``in.w``: every operator and
    function, operands of every kind against each other. At most eight leaves, so that no value comes
    near 2**62 at the sizes the tests draw (up to 40)."""
    leaves = st.one_of(st.integers(-6, 6).map(Lit), st.sampled_from([0.5, 1.5, -2.5, 3.0, 0.0]).map(Lit),
                       st.booleans().map(Lit), st.sampled_from("chw").map(InDim))
    return st.recursive(leaves, lambda inner: st.one_of(
        st.builds(Bin, st.sampled_from(ARITHMETIC), inner, inner),
        st.builds(Fn, st.sampled_from(["min", "max"]), st.lists(inner, min_size=1, max_size=3)),
        st.builds(Neg, inner),
    ), max_leaves=8)


def cond_tests() -> st.SearchStrategy:
    """The test of an ``if``: ``or`` of ``and`` of atoms ``[not] A [op B]`` over ``expressions()``."""
    atoms = st.builds(Atom, st.booleans(), expressions(), st.sampled_from([None, *_CMP]), expressions())
    return st.lists(st.lists(atoms, min_size=1, max_size=2), min_size=1, max_size=2)


# -- the oracle: the same program, written by hand in torch ---------------------------------------------

# Positional slots of each spelling, as the language describes them (``conv C k= s= ...``).
_SUGAR = re.compile(r"(conv)(\d+)x(\d+)$|(maxpool|avgpool)(\d+)$")
_SLOTS = {
    "conv": ["out", "k", "s", "p", "d", "groups", "bias"],
    "convKxK": ["out", "s", "p", "d", "groups", "bias"],
    "maxpool": ["k", "s", "p"], "avgpool": ["k", "s", "p"], "poolK": ["s", "p"],
    "adaptiveavgpool": ["h", "w"], "adaptivemaxpool": ["h", "w"], "linear": ["out", "bias"], "fc": ["out", "bias"],
    "dropout": ["p"], "droppath": ["p"], "leakyrelu": ["slope"], "elu": ["alpha"], "bn": ["eps", "momentum"],
    "lrn": ["size", "alpha", "beta", "k"], "gn": ["groups"], "shuffle": ["groups"], "scale": ["init"],
    "untokens": ["h", "w"], "token": ["index"], "posembed": ["length"],
}  # fmt: skip


def _slots(spelling: str) -> list[str]:
    match = _SUGAR.match(spelling)
    if match:
        return _SLOTS["convKxK"] if match.group(1) else _SLOTS["poolK"]
    return _SLOTS.get(spelling, [])


def _image(x: torch.Tensor, what: str) -> None:
    # torch's 2-d layers also take unbatched C×H×W input, and adaptive pooling even takes a
    # (batch, features) matrix as one H×W image: an accident no hand-written model means; nor are N×H×W×D
    # tokens an image.
    if x.dim() != 4 or isinstance(x, Tokens):
        raise Reject(f"{what} on a {x.dim()}-d tensor")


def _tokens(x: torch.Tensor, what: str, grid: bool = False) -> None:
    if not isinstance(x, Tokens) or (grid and x.dim() != 4):
        raise Reject(f"{what} on a {x.dim()}-d {type(x).__name__}")


# The arguments' domains, as the language defines them ("channels ≤ 0, dropout outside [0, 1)" are
# errors). torch checks less or oddly: nn.Linear(n, 0) and bias=5 pass, Conv2d(out=0) raises an
# AttributeError, and the meta kernels divide by a zero stride. Shapes are torch's alone.
_POSITIVE = {"out", "k", "s", "d", "groups", "h", "w", "size", "eps", "heads", "window", "length", "partition"}
_DECIMAL = {("dropout", "p"), ("droppath", "p"), ("lrn", "k"), ("lrn", "alpha"), ("lrn", "beta"), ("bn", "eps"),
            ("bn", "momentum"), ("ln", "eps"), ("gn", "eps"), ("leakyrelu", "slope"), ("elu", "alpha"),
            ("scale", "init"), ("attention", "dropout"), ("windowattention", "dropout"), ("windowattention2", "dropout"),
            ("posembed", "std")}
_BOOLEAN = {"bias", "ceil", "count_include_pad", "affine", "approximate", "grid"}
_PROBABILITY = {("dropout", "p"), ("droppath", "p"), ("bn", "momentum"), ("attention", "dropout"),
                ("windowattention", "dropout"), ("windowattention2", "dropout")}
_WINDOW_ATTENTION = ("windowattention", "windowattention2")
# The attention kinds on tokens on a grid.
_GRID_ATTENTION = (*_WINDOW_ATTENTION, "partitionattention")


def _windowed(spelling: str) -> bool:
    """Convolutions, pools and window attention: their k, s, p (a convolution's d, an attention's window, shift and
    partition) take a pair (height, width) too."""
    return bool(_SUGAR.match(spelling)) or spelling in ("conv", "maxpool", "avgpool", *_GRID_ATTENTION)


def check_domains(spelling: str, a: dict) -> None:
    for name, value in a.items():
        if name in _BOOLEAN:
            if value not in (True, False):  # 0 and 1 compare equal to them
                raise Reject(f"{name}={value}")
            continue
        numbers = [value]
        if isinstance(value, tuple):
            if not (_windowed(spelling) and name in ("k", "s", "p", "d", "window", "shift", "partition")
                    and len(value) == 2):
                raise Reject(f"{spelling} {name}={value}")
            numbers = list(value)
        for number in numbers:
            if isinstance(number, (bool, tuple)):
                raise Reject(f"{spelling} {name}={value}")
            if (spelling, name) not in _DECIMAL and not isinstance(number, int):
                raise Reject(f"{spelling} {name}={value} is not a whole number")
            if (spelling, name) in _PROBABILITY and not 0 <= number < 1:
                raise Reject(f"{spelling} {name}={value}")
            positive = name in _POSITIVE and not (spelling == "lrn" and name == "k")  # lrn's k is a float constant
            if (positive and number <= 0 or name in ("p", "shift", "index") and (spelling, name) not in _PROBABILITY
                    and number < 0 or (spelling, name) == ("posembed", "std") and number <= 0):
                raise Reject(f"{spelling} {name}={value}")


def _per_axis(value) -> tuple:
    return value if isinstance(value, tuple) else (value, value)


class ChannelsLayerNorm(nn.Module):
    """LayerNorm over the channels at each position, as a person writes it: channels moved last."""

    def __init__(self, channels: int, eps: float, affine: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps, elementwise_affine=affine)

    def forward(self, x):
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class LayerScale(nn.Module):
    def __init__(self, shape: tuple, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init * torch.ones(shape))

    def forward(self, x):
        return x * self.gamma


class StochasticDepth(nn.Module):
    """Drops whole samples in training, the identity in eval mode."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training:
            return x
        keep = torch.rand(x.shape[0], *[1] * (x.dim() - 1), device=x.device) >= self.p
        return x * keep / (1 - self.p)


class Shuffle(nn.Module):
    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x):
        n, c, h, w = x.shape
        return x.reshape(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ToTokens(nn.Module):
    """An image's positions as tokens on its grid, channels last."""

    def forward(self, x):
        return x.permute(0, 2, 3, 1).as_subclass(Tokens)


class ToImage(nn.Module):
    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        self.height, self.width = height, width

    def forward(self, x):
        return plain(x).reshape(x.shape[0], self.height, self.width, x.shape[-1]).permute(0, 3, 1, 2)


class Sequence(nn.Module):
    """Tokens on a grid read as one sequence, row by row (a plain sequence stays)."""

    def forward(self, x):
        return x.reshape(x.shape[0], -1, x.shape[-1])


class TakeToken(nn.Module):
    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, x):
        return plain(Sequence()(x))[:, self.index]


class MeanOfTokens(nn.Module):
    def forward(self, x):
        return plain(Sequence()(x)).mean(1)


class ClassToken(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 1, features))

    def forward(self, x):
        x = Sequence()(x)
        return torch.cat([self.token.expand(x.shape[0], -1, -1).as_subclass(Tokens), x], 1)


class PositionEmbedding(nn.Module):
    def __init__(self, shape: tuple) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, *shape))

    def forward(self, x):
        return x + self.weight


class SelfAttention(nn.Module):
    """nn.MultiheadAttention with the tokens (read as a sequence) as query, key and value."""

    def __init__(self, features: int, heads: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(features, heads, dropout=dropout, bias=bias, batch_first=True)

    def forward(self, x):
        tokens = plain(Sequence()(x))
        return self.attention(tokens, tokens, tokens, need_weights=False)[0].reshape(x.shape).as_subclass(Tokens)


class ShiftedWindows(nn.Module):
    """torchvision's ShiftedWindowAttention (Swin) on tokens on a grid, or with ``v2`` its ShiftedWindowAttentionV2
    (Swin V2)."""

    def __init__(self, features: int, heads: int, window, shift, dropout: float, v2: bool = False) -> None:
        super().__init__()
        import torchvision_oracle

        if not torchvision_oracle.available():
            raise Reject("windowattention needs torchvision as its oracle")
        swin = torchvision_oracle.import_torchvision().models.swin_transformer
        kind = swin.ShiftedWindowAttentionV2 if v2 else swin.ShiftedWindowAttention
        attention = kind(features, list(_per_axis(window)), list(_per_axis(shift)), heads, attention_dropout=dropout)
        if v2:
            # torchvision registers the position-bias MLP after the projections but runs it before them; weights
            # copy by order of use (copy_weights), so the MLP goes first, as archdsl's WindowAttention2 holds it.
            attention._modules = {"cpb_mlp": attention._modules.pop("cpb_mlp"), **attention._modules}
        self.attention = attention

    def forward(self, x):
        return self.attention(plain(x)).as_subclass(Tokens)


class MaxVitPartitions(nn.Module):
    """torchvision's MaxViT attention (RelativePositionalMultiHeadAttention) in its PartitionAttentionLayer's
    partitions of tokens on a grid: windows, or with ``grid`` the partitions spread over the grid. torchvision's
    partitions are square, and its grid partitions need a square grid."""

    def __init__(self, features: int, heads: int, partition, grid: bool, size: tuple[int, int]) -> None:
        super().__init__()
        import torchvision_oracle

        if not torchvision_oracle.available():
            raise Reject("partitionattention needs torchvision as its oracle")
        side, other = _per_axis(partition)
        if side != other or (grid and size[0] != size[1]):
            raise Reject(f"partitionattention partition={partition} grid={grid} on a {size} grid")
        if side == 1 or features == heads:
            # torchvision's einsum makes a product over one position or one feature an elementwise one, which torch's
            # flop counter leaves out (archdsl counts it, as a matrix product of that size).
            raise Reject(f"partitionattention partition={partition} with {features // heads} features a head")
        maxvit = torchvision_oracle.import_torchvision().models.maxvit
        layer = maxvit.PartitionAttentionLayer(features, features // heads, side, "grid" if grid else "window", size,
                                               1, nn.GELU, nn.LayerNorm, 0.0, 0.0, 0.0)
        # Only the attention and the partitioning (no tensors): the layer's norm and MLP are other layers here.
        self.attention = layer.attn_layer[1]
        self.p, self.groups = layer.p, (size[0] // layer.p, size[1] // layer.p)
        self.partition, self.departition = layer.partition_op, layer.departition_op
        self.swap, self.unswap = layer.partition_swap, layer.departition_swap

    def forward(self, x):
        x = self.swap(self.partition(plain(x).permute(0, 3, 1, 2), self.p))
        x = self.departition(self.unswap(self.attention(x)), self.p, *self.groups)
        return x.permute(0, 2, 3, 1).as_subclass(Tokens)


class PatchMerge(nn.Module):
    """Swin's 2×2 space-to-depth, an odd side padded with zeros."""

    def forward(self, x):
        x = nn.functional.pad(plain(x), (0, 0, 0, x.shape[2] % 2, 0, x.shape[1] % 2))
        parts = [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]]
        return torch.cat(parts, -1).as_subclass(Tokens)


class Flatten(nn.Module):
    def forward(self, x):
        return plain(x).flatten(1)


_IMAGE_ONLY = ("conv", "maxpool", "avgpool", "gap", "gmp", "adaptiveavgpool", "adaptivemaxpool", "bn", "gn", "lrn",
               "shuffle")


def token_layer(spelling: str, a: dict, x: torch.Tensor) -> nn.Module | None:
    """The module for a token layer, or a layer on tokens; None for a layer that is no token layer."""
    if spelling == "tokens":
        _image(x, spelling)
        return ToTokens()
    if spelling in ("untokens", "token", "tokenmean", "clstoken", "posembed", "attention", *_GRID_ATTENTION,
                    "patchmerge"):
        _tokens(x, spelling, grid=spelling in (*_GRID_ATTENTION, "patchmerge"))
    elif isinstance(x, Tokens) and (spelling in _IMAGE_ONLY or _SUGAR.match(spelling)):
        raise Reject(f"{spelling} on tokens")
    length = math.prod(x.shape[1:-1])
    if spelling == "untokens":
        h = a.get("h")
        if h is None:
            if x.dim() != 4:
                raise Reject("untokens without sizes on a plain sequence")
            return ToImage(x.shape[1], x.shape[2])
        w = a.get("w", h)
        if h * w != length or (x.dim() == 4 and (h, w) != tuple(x.shape[1:3])):
            raise Reject(f"untokens {h} {w} of {tuple(x.shape[1:])}")
        return ToImage(h, w)
    if spelling == "token":
        if a["index"] >= length:
            raise Reject(f"token {a['index']} of {length}")
        return TakeToken(a["index"])
    if spelling == "tokenmean":
        return MeanOfTokens()
    if spelling == "clstoken":
        return ClassToken(x.shape[-1])
    if spelling == "posembed":
        if a["length"] != length:
            raise Reject(f"posembed {a['length']} of {length} tokens")
        return PositionEmbedding(tuple(x.shape[1:]))
    if spelling == "attention":
        if x.shape[-1] % a["heads"]:
            raise Reject("heads that do not divide the features")
        return SelfAttention(x.shape[-1], a["heads"], a.get("dropout", 0.0), bool(a.get("bias", True)))
    if spelling in _WINDOW_ATTENTION:
        window, shift = _per_axis(a["window"]), _per_axis(a.get("shift", 0))
        if x.shape[-1] % a["heads"] or any(x.shape[1 + i] % window[i] or shift[i] >= window[i] for i in (0, 1)):
            raise Reject(f"{spelling} {a} on {tuple(x.shape[1:])}")
        v2 = spelling == "windowattention2"
        if v2 and min(window) < 2:  # torchvision's continuous position bias divides by the side less one: NaN
            raise Reject(f"windowattention2 window={window}")
        return ShiftedWindows(x.shape[-1], a["heads"], window, shift, a.get("dropout", 0.0), v2)
    if spelling == "partitionattention":
        partition = _per_axis(a["partition"])
        if x.shape[-1] % a["heads"] or any(x.shape[1 + i] % partition[i] for i in (0, 1)):
            raise Reject(f"{spelling} {a} on {tuple(x.shape[1:])}")
        return MaxVitPartitions(x.shape[-1], a["heads"], a["partition"], bool(a.get("grid", False)),
                                tuple(x.shape[1:3]))
    if spelling == "patchmerge":
        return PatchMerge()
    if not isinstance(x, Tokens):
        return None
    if spelling in ("linear", "fc"):
        return nn.Linear(x.shape[-1], a["out"], bias=bool(a.get("bias", True)))
    if spelling == "ln":
        return nn.LayerNorm(x.shape[-1], eps=a.get("eps", 1e-5), elementwise_affine=bool(a.get("affine", True)))
    if spelling == "scale":
        return LayerScale((x.shape[-1],), a.get("init", 1e-6))
    if spelling == "softmax":
        return nn.Softmax(dim=-1)
    if spelling == "flatten":
        return Flatten()
    return None


def torch_layer(spelling: str, a: dict, x: torch.Tensor) -> nn.Module:
    """The torch module a person writes for one layer of the language, given its input tensor."""
    module = token_layer(spelling, a, x)
    if module is not None:
        return module
    match = _SUGAR.match(spelling)
    if match and match.group(1):  # convAxB: same padding, odd A and B
        kernel = (int(match.group(2)), int(match.group(3)))
        if "p" not in a and (kernel[0] % 2 == 0 or kernel[1] % 2 == 0):
            raise Reject(f"{spelling} has an even kernel and no padding of its own")
        d = _per_axis(a.get("d", 1))
        same = (d[0] * (kernel[0] - 1) // 2, d[1] * (kernel[1] - 1) // 2)
        return nn.Conv2d(x.shape[1], a["out"], kernel, stride=a.get("s", 1), padding=a.get("p", same),
                         dilation=a.get("d", 1), groups=a.get("groups", 1), bias=bool(a.get("bias", True)))
    if spelling == "conv":
        return nn.Conv2d(x.shape[1], a["out"], a["k"], stride=a.get("s", 1), padding=a.get("p", 0),
                         dilation=a.get("d", 1), groups=a.get("groups", 1), bias=bool(a.get("bias", True)))
    if match or spelling in ("maxpool", "avgpool"):  # maxpoolK, avgpoolK: window K, stride K
        kind = match.group(4) if match else spelling
        k = int(match.group(5)) if match else a["k"]
        kw = {"stride": a.get("s", k), "padding": a.get("p", 0), "ceil_mode": bool(a.get("ceil", False))}
        if kind == "avgpool":
            return nn.AvgPool2d(k, **kw, count_include_pad=bool(a.get("count_include_pad", True)))
        if "count_include_pad" in a:
            raise Reject("maxpool has no count_include_pad")
        return nn.MaxPool2d(k, **kw)
    if spelling in ("gap", "adaptiveavgpool", "gmp", "adaptivemaxpool"):
        _image(x, spelling)
        h = a.get("h", 1)
        cls = nn.AdaptiveAvgPool2d if spelling in ("gap", "adaptiveavgpool") else nn.AdaptiveMaxPool2d
        return cls((h, a.get("w", h)))
    if spelling in ("linear", "fc"):
        # nn.Linear on an image multiplies its last axis: not the layer the language means.
        if x.dim() != 2:
            raise Reject("linear on an unflattened tensor")
        return nn.Linear(x.shape[1], a["out"], bias=bool(a.get("bias", True)))
    if spelling == "bn":
        cls = nn.BatchNorm2d if x.dim() == 4 else nn.BatchNorm1d
        return cls(x.shape[1], eps=a.get("eps", 1e-5), momentum=a.get("momentum", 0.1), affine=bool(a.get("affine", True)))
    if spelling == "ln":
        if x.dim() == 4:
            return ChannelsLayerNorm(x.shape[1], a.get("eps", 1e-5), bool(a.get("affine", True)))
        return nn.LayerNorm(x.shape[1], eps=a.get("eps", 1e-5), elementwise_affine=bool(a.get("affine", True)))
    if spelling == "gn":
        return nn.GroupNorm(a["groups"], x.shape[1], eps=a.get("eps", 1e-5), affine=bool(a.get("affine", True)))
    if spelling == "lrn":
        return nn.LocalResponseNorm(a.get("size", 5), alpha=a.get("alpha", 1e-4), beta=a.get("beta", 0.75),
                                    k=a.get("k", 1.0))
    if spelling == "scale":
        shape = (x.shape[1], 1, 1) if x.dim() == 4 else (x.shape[1],)
        return LayerScale(shape, a.get("init", 1e-6))
    if spelling == "shuffle":
        _image(x, spelling)
        return Shuffle(a["groups"])
    if spelling == "dropout":
        return nn.Dropout(a.get("p", 0.5))
    if spelling == "droppath":
        return StochasticDepth(a["p"])
    if spelling == "leakyrelu":
        return nn.LeakyReLU(a.get("slope", 0.01))
    if spelling == "elu":
        return nn.ELU(a.get("alpha", 1.0))
    if spelling == "gelu":
        return nn.GELU(approximate="tanh" if a.get("approximate", False) else "none")
    if spelling == "softmax":
        return nn.Softmax(dim=1)
    if spelling == "flatten":
        return nn.Flatten()
    if spelling == "id":
        return nn.Identity()
    simple = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu6": nn.ReLU6, "silu": nn.SiLU,
              "swish": nn.SiLU, "hardswish": nn.Hardswish, "hardsigmoid": nn.Hardsigmoid, "selu": nn.SELU,
              "mish": nn.Mish}
    return simple[spelling]()


class Oracle(nn.Module):
    """Runs a ``Program`` with torch modules made on first use, registered in the order they run.

    The first call builds the model for that input; later calls reuse the modules in the same order.
    """

    def __init__(self, program: Program) -> None:
        super().__init__()
        self.program = program
        self.layers = nn.ModuleList()
        self._cursor = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._cursor = 0
        env: dict = {}
        for name, default in self.program.params:
            env[name] = evaluate(default, env, ())
        shape = tuple(evaluate(e, env, ()) for e in self.program.input)
        if tuple(x.shape[1:]) != shape:
            raise Reject(f"input {tuple(x.shape[1:])} is not the declared {shape}")
        y = self.run(self.program.body, x, env, shape)
        if self.program.output is not None:
            declared = tuple(evaluate(e, env, shape) for e in self.program.output)
            if tuple(y.shape[1:]) != declared or isinstance(y, Tokens) != (len(declared) == 2):
                raise Reject(f"output {tuple(y.shape[1:])} is not the declared {declared}")
        return y

    def run(self, items: list, x: torch.Tensor, env: dict, block_in: tuple) -> torch.Tensor:
        for item in items:
            x = self.item(item, x, env, block_in)
        return x

    def item(self, item, x: torch.Tensor, env: dict, block_in: tuple) -> torch.Tensor:
        if isinstance(item, Layer):
            args = bind(_slots(item.spelling), item.pos, item.kw, env, block_in)
            check_domains(item.spelling, args)
            return self.module(lambda: torch_layer(item.spelling, args, x), x.device)(x)
        if isinstance(item, Group):
            return self.run(item.items, x, env, block_in)
        if isinstance(item, Repeat):
            count = evaluate(item.count, env, block_in)
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise Reject(f"repeat {count}")
            for _ in range(count):
                x = self.item(item.item, x, env, block_in)
            return x
        if isinstance(item, Cond):
            chosen = item.then if cond_value(item.test, env, block_in) else item.otherwise
            return self.item(chosen, x, env, block_in)
        if isinstance(item, Branch):
            outputs = [self.run(branch, x, env, block_in) for branch in item.branches]
            if item.op == "concat":
                if any(isinstance(y, Tokens) for y in outputs):
                    raise Reject("concat of tokens")
                return torch.cat(outputs, 1)
            # A residual sums equal shapes; torch would broadcast a 1-channel or 1×1 branch.
            if any(y.shape != outputs[0].shape or isinstance(y, Tokens) != isinstance(outputs[0], Tokens) for y in outputs):
                raise Reject("add of unequal shapes")
            total = outputs[0]
            for y in outputs[1:]:
                total = total + y
            return total
        assert isinstance(item, Call)
        block = self.program.blocks[item.name]
        inner = call_env(block, item, env, block_in, shape_of(x))
        return self.run(block.body, x, inner, shape_of(x))

    def module(self, make, device) -> nn.Module:
        if self._cursor == len(self.layers):
            with torch.device(device):
                self.layers.append(make())
        self._cursor += 1
        return self.layers[self._cursor - 1]


def bind(slots: list[str], pos: list, kw: dict, env: dict, block_in: tuple) -> dict:
    args = {name: evaluate(e, env, block_in) for name, e in zip(slots, pos)}
    args.update({name: evaluate(e, env, block_in) for name, e in kw.items()})
    return args


def call_env(block: BlockDef, call: Call, env: dict, block_in: tuple, callee_in: tuple) -> dict:
    """Arguments are evaluated where the call is; defaults inside the block, on the block's input."""
    given = {name: evaluate(e, env, block_in) for (name, _), e in zip(block.params, call.pos)}
    given.update({name: evaluate(e, env, block_in) for name, e in call.kw.items()})
    inner: dict = {}
    for name, default in block.params:
        inner[name] = given[name] if name in given else evaluate(default, inner, callee_in)
    return inner


def probe(program: Program, items: list, x: torch.Tensor | None, block_in: tuple) -> torch.Tensor | None:
    """What torch makes of ``items`` on ``x`` (meta tensors, nothing allocated), or None if it refuses."""
    if x is None:
        return None
    try:
        return Oracle(program).run(items, x, {}, block_in)
    except TORCH_REJECTS:
        return None


# -- measuring a torch module ------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """What one submodule did in a forward pass (per sample: batch left out)."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    params: int
    macs: int


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def is_attention(module: nn.Module) -> bool:
    """Attention modules, whose projections are read as weights (F.linear) rather than run as submodules: their
    MACs are counted as a whole."""
    return isinstance(module, nn.MultiheadAttention) or type(module).__name__ in (
        "WindowAttention", "WindowAttention2", "ShiftedWindowAttention", "ShiftedWindowAttentionV2",
        "PartitionAttention", "MaxVitPartitions")


def attention_macs(module: nn.Module, args: tuple) -> int:
    """Multiply-accumulates of one sample through an attention module, as torch's own FlopCounterMode counts its
    matrix products (projections, QKᵀ and the weighted sum of the values; a MAC is two of its operations)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    # The counter knows the products of scaled_dot_product_attention's math kernel, not the CPU's fused one.
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        module.forward(*(arg[:1] for arg in args))  # not through its hooks: measure() calls this from one
    return counter.get_total_flops() // 2


def leaf_macs(module: nn.Module, out: torch.Tensor, args: tuple = ()) -> int:
    """Multiply-accumulates of one sample through a conv or linear weight, or an attention module given its
    inputs ``args``, from the module itself."""
    if is_attention(module):
        return attention_macs(module, args)
    per_sample = out[0].numel()
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return per_sample * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return per_sample * module.in_features
    return 0


def measure(module: nn.Module, x: torch.Tensor) -> dict[str, Seen]:
    """Every submodule that runs, by its dotted name: shapes, parameters, and MACs summed over leaves."""
    shapes: dict[str, tuple] = {}
    leaf: dict[str, int] = {}
    hooks = []
    # An attention module's MACs are counted as a whole, with those of any submodule it calls (torchvision's Swin
    # V2 calls its position-bias MLP).
    attentions = [name for name, sub in module.named_modules() if name and is_attention(sub)]
    for name, sub in module.named_modules():
        if not name:
            continue
        counted = (is_attention(sub) or not list(sub.children())) and not any(
            name.startswith(outer + ".") for outer in attentions)

        def hook(m, args, out, name=name, counted=counted):
            out = out[0] if isinstance(out, tuple) else out  # nn.MultiheadAttention's (outputs, weights)
            shapes[name] = (tuple(args[0].shape[1:]), tuple(out.shape[1:]))
            leaf[name] = leaf_macs(m, out, args) if counted else 0

        hooks.append(sub.register_forward_hook(hook))
    try:
        module(x)
    finally:
        for h in hooks:
            h.remove()
    subs = dict(module.named_modules())
    return {
        name: Seen(
            *shapes[name],
            count_params(subs[name]),
            sum(m for n, m in leaf.items() if n == name or n.startswith(name + ".")),
        )
        for name in shapes
    }


def join_branches(nodes) -> set[str]:
    """The branch containers of ``concat``/``add`` nodes (``add_0.b1``): modules without a node of their own."""
    return {f"{n.path}.b{i}" for n in nodes if isinstance(n, ir.Join) for i in range(len(n.branches))}


def total_macs(module: nn.Module, x: torch.Tensor) -> int:
    """MACs of one sample through every conv and linear weight of ``module``."""
    leaves = {name for name, m in module.named_modules() if name and (is_attention(m) or not list(m.children()))}
    return sum(seen.macs for name, seen in measure(module, x).items() if name in leaves)


def randomise_normalisation(model: nn.Module, generator: torch.Generator | None = None) -> None:
    """Normalisation at its initial state is the identity in eval mode, and a layer scale near zero: random
    statistics and factors make them show in outputs."""
    for m in model.modules():
        with torch.no_grad():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            if isinstance(m, (nn.Conv2d, nn.Linear)) or list(m.children()):
                continue
            for name, parameter in m.named_parameters(recurse=False):
                noise = torch.rand(parameter.shape, generator=generator) + 0.5 if name != "bias" else \
                    torch.randn(parameter.shape, generator=generator) * 0.1
                parameter.copy_(noise)


def copy_weights(source: nn.Module, target: nn.Module) -> None:
    """Copy tensors by position: both modules register them in the order the forward pass uses them."""
    mine, theirs = source.state_dict(), target.state_dict()
    assert len(mine) == len(theirs), (list(mine), list(theirs))
    pairs = {}
    for (key, value), (their_key, their_value) in zip(mine.items(), theirs.items()):
        assert value.shape == their_value.shape, f"{key} {tuple(value.shape)} vs {their_key} {tuple(their_value.shape)}"
        pairs[their_key] = value
    target.load_state_dict(pairs)


# -- generation --------------------------------------------------------------------------------------

_ACTIVATIONS = ["relu", "sigmoid", "tanh", "gelu", "leakyrelu", "softmax", "relu6", "silu", "swish", "hardswish",
                "hardsigmoid", "elu", "selu", "mish"]
_IMAGE_KINDS = ["conv", "convKxK", "convKxK", "convAxB", "pool", "poolK", "gap", "adaptiveavgpool", "gmp",
                "adaptivemaxpool", "bn", "lrn", "shuffle", "flatten", "tokens"]
# On tokens: besides the layers of any shape, per-token linear layers and the token kinds; on a grid, Swin's too.
_TOKEN_KINDS = ["linear", "linear", "attention", "attention", "clstoken", "posembed", "token", "tokenmean", "untokens",
                "flatten"]
_GRID_KINDS = ["windowattention", "windowattention", "windowattention2", "partitionattention", "patchmerge"]
_ANY_KINDS = ["dropout", "droppath", "act", "act", "id", "bn", "ln", "gn", "scale"]
_VECTOR_KINDS = ["linear", "linear", "flatten"]
_PARAM_NAMES = ["c", "n", "k", "s", "width", "q"]


class _Gen:
    """Draws one program; ``x`` is the meta tensor torch makes at the current point (None once torch
    has refused something, in ``valid=False`` programs)."""

    def __init__(self, draw, valid: bool, big: bool) -> None:
        self.draw = draw
        self.valid = valid
        self.big = big
        self.program = Program(input=[], body=[])
        self.budget = 24  # layers drawn, before repeats; keeps every example small
        self.first_args: dict[str, dict] = {}

    # small helpers
    def int(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, max(lo, hi)))

    def pick(self, options):
        return self.draw(st.sampled_from(list(options)))

    def chance(self) -> bool:
        return self.draw(st.booleans())

    def wild(self, x) -> bool:
        """Draw this layer's sizes without looking at the shape (``valid=False`` programs only)."""
        return x is None or (not self.valid and self.pick([False, False, True]))

    # programs
    def build(self) -> Program:
        p = self.program
        c = self.int(1, 64 if self.big else 5)
        h = self.int(1, 160 if self.big else 40)
        w = h if self.chance() else self.int(1, 160 if self.big else 40)
        if self.valid:
            h, w = max(h, 3), max(w, 3)
        p.sep = self.pick(["; ", ";\n    ", " ;  "])
        if self.chance():
            p.params.append(("ch", Lit(c)))
            p.input = [Ref("ch"), Lit(h), Lit(w)]
        else:
            p.input = [Lit(c), Lit(h), Lit(w)]
        x = torch.empty(2, c, h, w, device="meta")
        # A quarter of the networks work on tokens from the start, so that the token layers meet each other.
        prefix = [Layer("tokens")] if self.pick([False, False, False, True]) else []
        p.body, y = self.sequence(probe(p, prefix, x, (c, h, w)), (c, h, w), depth=0, n=self.int(1, 6))
        p.body = prefix + p.body
        if self.chance():
            # Network parameters: their defaults cannot read in.c (there is no enclosing block).
            earlier = [("ch", c)] if p.params else []
            p.params += [(name, d) for name, _, d in self.lift(p.body, (c, h, w), (), earlier, all_defaults=True)]
        if self.chance() and not (isinstance(y, Tokens) and y.dim() == 4):  # tokens on a grid have no declaration
            if y is not None and (self.valid or self.chance()):
                p.output = [Lit(d) for d in y.shape[1:]]
            else:
                p.output = [Lit(self.int(1, 20)) for _ in range(self.pick([1, 3]))]
        return p

    def sequence(self, x, block_in, depth, n):
        items = []
        for _ in range(n):
            item, x = self.item(x, block_in, depth)
            items.append(item)
        return items, x

    def item(self, x, block_in, depth):
        choices = ["layer"] * 5
        if depth < 3 and self.budget > 0:
            choices += ["group", "repeat", "branch", "branch", "cond", "call", "call"]
        what = self.pick(choices)
        self.budget -= 1
        item = getattr(self, what)(x, block_in, depth)
        y = probe(self.program, [item], x, block_in)
        if y is None and self.valid:
            item, y = Layer("relu"), x  # torch refused it: keep the program valid
        return item, y

    def group(self, x, block_in, depth):
        items, _ = self.sequence(x, block_in, depth + 1, self.int(1, 3))
        return Group(items)

    def repeat(self, x, block_in, depth):
        inner, y = self.item(x, block_in, depth + 1)
        if depth < 2 and self.pick([False, False, True]):  # nested: repeat n <repeat m ...; ...>
            rest, _ = self.sequence(y, block_in, depth + 2, self.int(0, 1))
            inner = Group([Repeat(Lit(self.int(0, 2)), inner), *rest])
        return Repeat(Lit(self.int(0, 3)), inner)

    def cond(self, x, block_in, depth):
        atoms = []
        for _ in range(self.int(1, 3)):
            left = self.pick([InDim("c"), Lit(self.int(0, 6)), Lit(self.pick([True, False, 2.5]))]
                             + ([InDim("h"), InDim("w")] if len(block_in) == 3 else []))
            if self.chance():
                atoms.append(Atom(self.chance(), left))
            else:
                right = Lit(self.int(0, 8)) if self.pick([True, True, False]) else Lit(self.pick([True, 0.5]))
                atoms.append(Atom(self.chance(), left, self.pick(list(_CMP)), right))
        test, conj = [], []
        for a in atoms:
            conj.append(a)
            if self.chance():
                test.append(conj)
                conj = []
        if conj:
            test.append(conj)
        then, _ = self.item(x, block_in, depth + 1)
        otherwise, _ = self.item(x, block_in, depth + 1)
        return Cond(test, then, otherwise)

    def branch(self, x, block_in, depth):
        op = self.pick(["concat", "add"])
        first, y = self.sequence(x, block_in, depth + 1, self.int(1, 3))
        branches = [first]
        for _ in range(self.int(1, 2)):
            branches.append(self.other_branch(op, first, x, y, block_in, depth))
        if self.chance():
            index = self.int(0, len(branches) - 1)
            branches.insert(index, branches.pop())
        return Branch(op, branches)

    def other_branch(self, op, first, x, y, block_in, depth):
        """A branch that joins with ``first`` (output ``y``) where it can; any branch when ``wild``."""
        if self.wild(x) or y is None:
            items, _ = self.sequence(x, block_in, depth + 1, self.int(1, 2))
            return self.pick([items, [Layer("id")]])
        options = [copy.deepcopy(first)]
        same = y.shape == x.shape if op == "add" else (y.dim() == x.dim() and y.shape[2:] == x.shape[2:])
        if same:
            options += [[Layer("id")]] * 2
        features = y.shape[1] if op == "add" else self.int(1, 8)
        if y.dim() == 2 and math.prod(x.shape[1:]) * features <= 2_000_000:  # a projection of modest size
            options.append([Layer("flatten"), Layer(self.pick(["linear", "fc"]), [Lit(features)])])
        elif x.dim() == 4 and not isinstance(x, Tokens):
            for s in range(1, 5):
                if ((x.shape[2] - 1) // s + 1, (x.shape[3] - 1) // s + 1) == tuple(y.shape[2:]):
                    c = y.shape[1] if op == "add" else self.int(1, 8)
                    options.append([Layer("conv1x1", [Lit(c)], {"s": Lit(s)} if s != 1 or self.chance() else {})])
        items, z = self.sequence(x, block_in, depth + 1, self.int(1, 2))
        if z is not None and (z.shape == y.shape if op == "add" else (z.dim() == y.dim() and z.shape[2:] == y.shape[2:])):
            options.append(items)
        return self.pick(options)

    # layers
    def layer(self, x, block_in, depth):
        rank = None if x is None else x.dim()
        tokens = isinstance(x, Tokens)
        kinds = list(_ANY_KINDS)
        if (rank == 4 and not tokens) or not self.valid:
            kinds += _IMAGE_KINDS * 2
        if rank == 2 or not self.valid:
            kinds += _VECTOR_KINDS * (2 if rank == 2 else 1)
        if tokens or not self.valid:
            kinds += _TOKEN_KINDS * (2 if tokens else 1) + (_GRID_KINDS * 2 if rank == 4 or not self.valid else [])
        kind = self.pick(kinds)
        return getattr(self, "layer_" + kind.lower())(x)

    def sizes(self, x):
        """(C, H, W) to draw sizes against; made up when the shape is unknown or not an image."""
        if self.wild(x) or x.dim() != 4 or isinstance(x, Tokens):
            return self.int(1, 8), self.int(1, 12), self.int(1, 12), True
        return x.shape[1], x.shape[2], x.shape[3], False

    def token_sizes(self, x):
        """(L, D, grid) of tokens to draw sizes against (grid None off a grid); made up when unknown."""
        if self.wild(x) or not isinstance(x, Tokens):
            grid = (self.int(1, 6), self.int(1, 6)) if self.chance() else None
            return (math.prod(grid) if grid else self.int(1, 20)), self.int(1, 16), grid, True
        grid = tuple(x.shape[1:3]) if x.dim() == 4 else None
        return math.prod(x.shape[1:-1]), x.shape[-1], grid, False

    def heads(self, features: int, wild: bool) -> int:
        return self.int(1, 4) if wild else self.pick([h for h in range(1, min(features, 4) + 1) if features % h == 0])

    def channels(self) -> int:
        return self.int(1, 96 if self.big else 12)

    def kwargs(self, values: dict, defaults: dict) -> dict:
        """Keyword arguments: those that differ from the default, and some that do not."""
        return {k: Lit(v) for k, v in values.items() if v != defaults.get(k) or self.chance()}

    def groups(self, c: int, wild: bool) -> int:
        if wild:
            return self.pick([1, 1, 2, 3])
        return self.pick([g for g in range(1, c + 1) if c % g == 0 and g <= 4])

    def pairs(self) -> bool:
        """Whether this layer's window arguments are drawn per axis, (height, width)."""
        return self.pick([False, False, False, True])

    def per_axis(self, draw, pairs: bool):
        """``draw(axis)`` for each axis as a pair, or once as a whole number."""
        return (draw(0), draw(1)) if pairs else draw(0)

    def layer_conv(self, x):
        c, h, w, wild = self.sizes(x)
        g = self.groups(c, wild)
        out = g * self.int(1, max(1, self.channels() // g))
        pairs = self.pairs()
        d = self.per_axis(lambda _: self.int(1, 3), pairs and self.chance())
        p = self.per_axis(lambda _: self.int(0, 3), pairs and self.chance())
        s = self.per_axis(lambda _: self.int(1, 3), pairs and self.chance())

        def kernel(axis):
            if wild:
                return self.int(1, 9)
            size, pad, dilation = (h, w)[axis], _per_axis(p)[axis], _per_axis(d)[axis]
            return self.int(1, min(7, (size + 2 * pad - 1) // dilation + 1))

        k = self.per_axis(kernel, pairs)
        if wild and self.pick([False] * 9 + [True]):  # what the language refuses: a list of three, a negative window
            k = self.pick([(1, 3, 3), -1, (3, -1), (0, 3)])
        kw = self.kwargs({"s": s, "p": p, "d": d, "groups": g, "bias": self.chance()},
                         {"s": 1, "p": 0, "d": 1, "groups": 1, "bias": True})
        if self.chance():
            return Layer("conv", [Lit(out), Lit(k)], kw)
        return Layer("conv", [Lit(out)], {"k": Lit(k), **kw})

    def layer_convaxb(self, x):
        c, _, _, wild = self.sizes(x)
        a, b = self.pick([(1, 7), (7, 1), (1, 3), (3, 1), (3, 5), (5, 3), (1, 5)])
        g = self.groups(c, wild)
        out = g * self.int(1, max(1, self.channels() // g))
        values = {"s": self.per_axis(lambda _: self.int(1, 3), self.pairs()), "groups": g, "bias": self.chance()}
        kw = self.kwargs(values, {"s": 1, "groups": 1, "bias": True})
        if self.pick([False, False, True]):  # override the same padding
            kw["p"] = Lit(self.per_axis(lambda _: self.int(0, 3), self.pairs()))
        return Layer(f"conv{a}x{b}", [Lit(out)], kw)

    def layer_convkxk(self, x):
        c, _, _, wild = self.sizes(x)
        k = self.pick([1, 3, 3, 5, 7])
        g = self.groups(c, wild)
        out = g * self.int(1, max(1, self.channels() // g))
        values = {"s": self.int(1, 3), "d": self.int(1, 2), "groups": g, "bias": self.chance()}
        kw = self.kwargs(values, {"s": 1, "d": 1, "groups": 1, "bias": True})
        if self.pick([False, False, True]):  # override the same padding
            kw["p"] = Lit(self.int(0, 3))
        return Layer(f"conv{k}x{k}", [Lit(out)], kw)

    def window(self, h, w, wild, pairs: bool = False):
        """A pool's window and padding, each a whole number or (with ``pairs``) a pair per axis."""
        if wild:
            k = self.per_axis(lambda _: self.int(1, 6), pairs)
            return k, self.per_axis(lambda axis: self.int(0, _per_axis(k)[axis]), pairs)
        k = self.per_axis(lambda axis: self.int(1, min(5, (h, w)[axis] if pairs else min(h, w))), pairs)
        return k, self.per_axis(lambda axis: self.int(0, _per_axis(k)[axis] // 2), pairs)

    def pool_options(self, kind: str) -> dict:
        """ceil=, and count_include_pad= on avgpool, sometimes."""
        kw = {}
        if self.chance():
            kw["ceil"] = Lit(self.pick([True, False, 1]))
        if kind == "avgpool" and self.chance():
            kw["count_include_pad"] = Lit(self.chance())
        return kw

    def layer_pool(self, x):
        _, h, w, wild = self.sizes(x)
        pairs = self.pairs()
        k, p = self.window(h, w, wild, pairs)
        kind = self.pick(["maxpool", "avgpool"])
        s = self.pick([None, 1, 2, 3, (2, 1), (1, 2)] if pairs else [None, 1, 2, 3])
        kw = self.kwargs({"p": p}, {"p": 0})
        if s is not None:
            kw = {"s": Lit(s), **kw}
        kw.update(self.pool_options(kind))
        return Layer(kind, [Lit(k)], kw) if self.chance() else Layer(kind, [], {"k": Lit(k), **kw})

    def layer_poolk(self, x):
        _, h, w, wild = self.sizes(x)
        k, p = self.window(h, w, wild)
        kind = self.pick(["maxpool", "avgpool"])
        kw = self.kwargs({"p": p}, {"p": 0})
        if self.chance():
            kw["s"] = Lit(self.int(1, 3))
        kw.update(self.pool_options(kind))
        return Layer(f"{kind}{k}", [], kw)

    def layer_gap(self, x):
        return Layer("gap")

    def layer_gmp(self, x):
        return Layer("gmp")

    def adaptive(self, kind: str) -> Layer:
        h = self.int(1, 5)
        if self.chance():
            return Layer(kind, [Lit(h)])
        w = self.int(1, 5)
        return Layer(kind, [Lit(h), Lit(w)]) if self.chance() else Layer(kind, [Lit(h)], {"w": Lit(w)})

    def layer_adaptiveavgpool(self, x):
        return self.adaptive("adaptiveavgpool")

    def layer_adaptivemaxpool(self, x):
        return self.adaptive("adaptivemaxpool")

    def affine(self) -> dict:
        return {"affine": Lit(self.pick([True, False, 0]))} if self.pick([False, False, True]) else {}

    def layer_bn(self, x):
        kw = self.kwargs({"eps": self.pick([1e-5, 1e-3]), "momentum": self.pick([0.1, 0.5])}, {"eps": 1e-5, "momentum": 0.1})
        return Layer("bn", [], {**kw, **self.affine()})

    def layer_ln(self, x):
        return Layer("ln", [], {**self.kwargs({"eps": self.pick([1e-5, 1e-6])}, {"eps": 1e-5}), **self.affine()})

    def layer_gn(self, x):
        wild = self.wild(x)
        c = self.int(1, 8) if wild else x.shape[1]
        groups = self.int(1, 4) if wild else self.pick([g for g in range(1, min(c, 8) + 1) if c % g == 0])
        kw = {**self.kwargs({"eps": self.pick([1e-5, 1e-3])}, {"eps": 1e-5}), **self.affine()}
        return Layer("gn", [Lit(groups)], kw) if self.chance() else Layer("gn", [], {"groups": Lit(groups), **kw})

    def layer_shuffle(self, x):
        c, _, _, wild = self.sizes(x)
        groups = self.int(1, 4) if wild else self.pick([g for g in range(1, min(c, 8) + 1) if c % g == 0])
        return Layer("shuffle", [Lit(groups)])

    def layer_scale(self, x):
        init = self.pick([None, 1e-6, 0.5, 2.0])
        if init is None:
            return Layer("scale")
        return Layer("scale", [Lit(init)]) if self.chance() else Layer("scale", [], {"init": Lit(init)})

    def layer_droppath(self, x):
        p = self.pick([0.0, 0.1, 0.5])
        return Layer("droppath", [Lit(p)]) if self.chance() else Layer("droppath", [], {"p": Lit(p)})

    def layer_lrn(self, x):
        kw = self.kwargs({"alpha": self.pick([1e-4, 0.01]), "beta": self.pick([0.75, 0.5]), "k": self.pick([1.0, 2.0])},
                         {"alpha": 1e-4, "beta": 0.75, "k": 1.0})
        size = self.int(1, 6)
        return Layer("lrn", [Lit(size)], kw) if self.chance() else Layer("lrn", [], {"size": Lit(size), **kw})

    def layer_flatten(self, x):
        return Layer("flatten")

    def layer_dropout(self, x):
        p = self.pick([0.0, 0.1, 0.25, 0.5, 0.75])
        quarters = Bin("/", Lit(int(p * 4)), Lit(4))  # a float from whole numbers
        return self.pick([Layer("dropout", [Lit(p)]), Layer("dropout", [], {"p": Lit(p)}), Layer("dropout"),
                          Layer("dropout", [quarters])])

    def layer_act(self, x):
        kind = self.pick(_ACTIVATIONS)
        if kind == "leakyrelu" and self.chance():
            slope = self.pick([0.1, 0.2])
            return Layer(kind, [Lit(slope)]) if self.chance() else Layer(kind, [], {"slope": Neg(Lit(slope))})
        if kind == "elu" and self.chance():
            alpha = self.pick([0.5, 2.0, 1])
            return Layer(kind, [Lit(alpha)]) if self.chance() else Layer(kind, [], {"alpha": Lit(alpha)})
        if kind == "gelu" and self.chance():
            return Layer(kind, [], {"approximate": Lit(self.pick([True, False]))})
        return Layer(kind)

    def layer_id(self, x):
        return Layer("id")

    def layer_tokens(self, x):
        return Layer("tokens")

    def layer_attention(self, x):
        _, features, _, wild = self.token_sizes(x)
        kw = {"heads": Lit(self.heads(features, wild))}
        if self.chance():
            kw["dropout"] = Lit(self.pick([0.0, 0.1]))
        if self.chance():
            kw["bias"] = Lit(self.chance())
        return Layer("attention", [], kw)

    def layer_windowattention(self, x, key: str = "windowattention"):
        _, features, grid, wild = self.token_sizes(x)
        fits = None
        if grid is not None and not wild:
            fits = [[w for w in range(1, min(size, 4) + 1) if size % w == 0] for size in grid]
            # Swin V2's windows have at least 2 positions along each axis; where none tiles the grid, Swin's do.
            if key == "windowattention2" and all(options[-1] > 1 for options in fits):
                fits = [[w for w in options if w > 1] for options in fits]
            else:
                key = "windowattention"
        if fits is None:
            window = self.int(1, 4)
            shift = self.int(0, 2)
        else:
            sides = [self.pick(options) for options in fits]
            window = sides[0] if sides[0] == sides[1] and self.chance() else tuple(sides)
            shift = tuple(self.int(0, side - 1) for side in sides)
            shift = shift[0] if shift[0] == shift[1] and self.chance() else shift
        kw = {"heads": Lit(self.heads(features, wild)), "window": Lit(window)}
        if shift != 0 or self.chance():
            kw["shift"] = Lit(shift)
        return Layer(key, [], kw)

    def layer_windowattention2(self, x):
        return self.layer_windowattention(x, "windowattention2")

    def layer_partitionattention(self, x):
        # Square partitions (torchvision's), of a side that divides both sides of the grid; grid partitions on a
        # square grid.
        _, features, grid, wild = self.token_sizes(x)
        if grid is None or wild:
            partition, spread = self.int(1, 4), self.chance()
        else:
            partition = self.pick([p for p in range(1, min(min(grid), 4) + 1) if grid[0] % p == grid[1] % p == 0])
            spread = grid[0] == grid[1] and self.chance()
        kw = {"heads": Lit(self.heads(features, wild)), "partition": Lit(partition)}
        if spread or self.chance():
            kw["grid"] = Lit(spread)
        return Layer("partitionattention", [], kw)

    def layer_patchmerge(self, x):
        return Layer("patchmerge")

    def layer_clstoken(self, x):
        return Layer("clstoken")

    def layer_posembed(self, x):
        length, _, _, wild = self.token_sizes(x)
        kw = {"std": Lit(self.pick([1.0, 0.5]))} if self.chance() else {}
        return Layer("posembed", [Lit(self.int(1, 20) if wild else length)], kw)

    def layer_token(self, x):
        length, _, _, wild = self.token_sizes(x)
        return Layer("token", [Lit(self.int(0, 5) if wild else self.int(0, min(length - 1, 5)))])

    def layer_tokenmean(self, x):
        return Layer("tokenmean")

    def layer_untokens(self, x):
        length, _, grid, wild = self.token_sizes(x)
        if grid is not None and self.chance():
            return Layer("untokens")
        if wild:
            return Layer("untokens", [Lit(self.int(1, 6)), Lit(self.int(1, 6))])
        h = self.pick([d for d in range(1, length + 1) if length % d == 0]) if grid is None else grid[0]
        w = length // h
        return Layer("untokens", [Lit(h)] if h == w and self.chance() else [Lit(h), Lit(w)])

    def layer_linear(self, x):
        out = self.int(1, 64 if self.big else 16)
        kw = {"bias": Lit(self.pick([True, False, 0, 1]))} if self.chance() else {}
        return Layer(self.pick(["linear", "fc"]), [Lit(out)], kw)

    # blocks
    def call(self, x, block_in, depth):
        existing = list(self.program.blocks)
        if existing and self.chance():
            name = self.pick(existing)
            block = self.program.blocks[name]
            values = {pname: self.int(0, 8) if self.wild(x) or self.chance() else v
                      for (pname, _), v in zip(block.params, self.first_args[name].values())}
            call = self.call_of(block, values)
            if self.valid and probe(self.program, [call], x, block_in) is None:
                call = self.call_of(block, self.first_args[name])  # what it was made for
            return call
        return self.new_block(x, depth)

    def new_block(self, x, depth):
        block_in = shape_of(x) if x is not None else ()
        body, _ = self.sequence(x, block_in, depth + 1, self.int(1, 4))
        name = f"blk{len(self.program.blocks)}"  # after the body, which may define blocks of its own
        lifted = self.lift(body, block_in, block_in, [], all_defaults=False)
        block = BlockDef(name, [(pname, d) for pname, _, d in lifted], body,
                         self.pick(["main.arch", "lib.arch", "sub/deep.arch"]))
        values = {pname: value for pname, value, _ in lifted}
        self.program.blocks[name] = block
        self.first_args[name] = values
        return self.call_of(block, values)

    def lift(self, body: list, block_in: tuple, default_in: tuple, earlier: list, all_defaults: bool) -> list:
        """Turn some whole numbers of ``body`` into parameters, keeping their values where it is made.

        Returns ``(name, value, default)`` for each new parameter; ``earlier`` parameters (name, value)
        may appear in the expressions too. Defaults are evaluated on ``default_in``.
        """
        found = sorted({lit.value for lit in _lits(body)})
        chosen = self.draw(st.lists(st.sampled_from(found), unique=True, max_size=3)) if found else []
        names = self.draw(st.permutations(_PARAM_NAMES))[: len(chosen)]
        params = list(zip(names, chosen))
        for holder, key, lit in list(_lit_slots(body)):
            if lit.value in chosen and self.pick([True, True, True, False]):
                holder[key] = self.expr_for(lit.value, [*earlier, *params], block_in)
        n_defaults = len(params) if all_defaults else self.int(0, len(params))
        lifted = []
        for index, (pname, value) in enumerate(params):
            default = None
            if index >= len(params) - n_defaults:
                default = self.expr_for(value, [*earlier, *params[:index]], default_in)
            lifted.append((pname, value, default))
        return lifted

    def expr_for(self, v: int, params: list, block_in: tuple) -> Expr:
        """An expression worth ``v`` here: a parameter, arithmetic on one, min/max, or ``in.c``."""
        options: list = [Lit(v), Neg(Neg(Lit(v))), Bin("-", Lit(v + 1), Lit(1))]
        for name, u in params:
            if u == v:
                options += [Ref(name), Ref(name), Fn("max", [Ref(name), Lit(0)]), Fn("min", [Ref(name), Lit(v + 2)])]
            if v > u:
                options.append(Bin("+", Ref(name), Lit(v - u)))
            if u and v % u == 0 and v:
                options.append(Bin("*", Ref(name), Lit(v // u)))
            for d in (2, 3):
                if u // d == v:
                    options.append(Bin("//", Ref(name), Lit(d)))
            if u > v:
                options += [Bin("-", Ref(name), Lit(u - v)), Bin("%", Bin("+", Ref(name), Lit(v)), Ref(name))]
        for dim, size in input_sizes(block_in):
            if size == v:
                options += [InDim(dim), Fn("max", [InDim(dim), Lit(1)])]
            if size // 2 == v:
                options.append(Bin("//", InDim(dim), Lit(2)))
            if size > 2 * v:
                options.append(Bin("%", InDim(dim), Lit(size - v)))  # size is (size - v) + v
        options.append(Bin("%", Lit(v + 3 * (v + 1)), Lit(v + 1)))
        if not self.valid:
            # The same number with a decimal or a boolean in it: whole-number arguments take neither.
            options += [Bin("*", Lit(v), Lit(1.0)), Bin("+", Lit(v), Lit(False)), Bin("//", Lit(v + 0.5), Lit(1))]
        return self.pick(options)

    def call_of(self, block: BlockDef, values: dict) -> Call:
        if not block.params and self.chance():
            return Call(block.name, bare=True)
        pos, kw = [], {}
        keyword = False
        for pname, default in block.params:
            if default is not None and self.chance():
                keyword = True  # left to its default: later ones go by keyword
                if values[pname] == self.first_args.get(block.name, values).get(pname) and self.chance():
                    continue
            keyword = keyword or self.pick([False, False, True])
            if keyword:
                kw[pname] = Lit(values[pname])
            else:
                pos.append(Lit(values[pname]))
        return Call(block.name, pos, kw)


def _lit_slots(node):
    """(container, key, Lit) for every whole-number literal under ``node``, not entering other blocks."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, list):
            entries = enumerate(current)
        elif isinstance(current, dict):
            entries = current.items()
        elif is_dataclass(current):
            for f in fields(current):
                value = getattr(current, f.name)
                if _is_int_lit(value):
                    yield _AttrSlot(current), f.name, value
                else:
                    stack.append(value)
            continue
        else:
            continue
        for key, value in list(entries):
            if _is_int_lit(value):
                yield current, key, value
            else:
                stack.append(value)


class _AttrSlot:
    """Lets ``slot[name] = value`` set an attribute, so lists, dicts and nodes are rewritten alike."""

    def __init__(self, obj) -> None:
        self.obj = obj

    def __setitem__(self, name, value) -> None:
        setattr(self.obj, name, value)


def _is_int_lit(value) -> bool:
    return isinstance(value, Lit) and isinstance(value.value, int) and not isinstance(value.value, bool)


def _lits(node):
    return [lit for _, _, lit in _lit_slots(node)]


@st.composite
def programs(draw, valid: bool = True, big: bool = False) -> Program:
    """A random program; ``valid=True`` ones are accepted by torch by construction, ``big`` ones have
    wide layers and large inputs (for the meta device only)."""
    return _Gen(draw, valid, big).build()
