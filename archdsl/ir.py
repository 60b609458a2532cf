"""The typed IR: frozen pydantic nodes, each with the span it came from.

Two layers of nodes:

* the syntax tree (``Module`` and below), what the parser makes of one file: block and network
  definitions whose bodies still hold expressions, calls, repeats and conditions;
* the resolved graph (``Network`` and below), what ``resolve`` makes of a network at given
  parameters: every call expanded, every layer named uniquely, with validated arguments, input and
  output shapes, parameter and MAC counts.

Backends (torch, Graphviz, summaries) read the resolved graph only. Nodes never change; a pass
returns new ones.

Passes create nodes with ``Frozen.make``: their values come from the parser and from the rules
of ``resolve`` and ``layers``, which already guarantee the types, and validating them again would
double the front end's time and its start-up (schemas are built on first use, ``defer_build``).
``validate`` checks a whole resolved graph against the schema; the tests run it on every spec.

``format_network`` prints a resolved graph one node per line, the stable text form of golden tests::

    %vgg_0.conv_0 : conv3x3(out=64) -> 64x224x224  # specs/vgg11.arch:4:20
"""

from __future__ import annotations

from typing import Annotated, Literal, Self, Union

from pydantic import WrapSerializer
from typing_extensions import TypeAliasType

from archdsl.frozen import Frozen
from archdsl.source import Span
from archdsl.symbolic import Dim, Sym


class Tokens(tuple):
    """A sequence of tokens: ``Tokens((197, 768))`` is L = 197 tokens of D = 768 features, and
    ``Tokens((56, 56, 96))`` is 56·56 tokens of 96 features that lie on a 56×56 grid (Swin's), held as the
    tensor holds them, channels last (N×H×W×D).

    Images (C, H, W) and vectors (N,) are plain tuples, so a rule tells the layouts apart by type, never by
    guessing from the rank: a Tokens equals only another Tokens of the same sizes, never the image or tuple
    with the same numbers.
    """

    __slots__ = ()

    def __new__(cls, sizes=()) -> Self:
        return super().__new__(cls, sizes)

    @property
    def features(self) -> Dim:
        """D, the size of each token."""
        return self[-1]

    @property
    def grid(self) -> tuple[Dim, Dim] | None:
        """The H×W the tokens lie on, or None for a plain sequence."""
        return (self[0], self[1]) if len(self) == 3 else None

    @property
    def length(self) -> Dim:
        """L, the number of tokens (H·W on a grid)."""
        return self[0] * self[1] if len(self) == 3 else self[0]

    def with_features(self, features: Dim) -> Tokens:
        """The same tokens (and grid) with ``features`` each: what a per-token ``linear`` gives."""
        return Tokens((*self[:-1], features))

    def __eq__(self, other) -> bool:
        return isinstance(other, Tokens) and tuple.__eq__(self, other)

    def __ne__(self, other) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash((Tokens, tuple(self)))

    def __repr__(self) -> str:
        return f"Tokens({tuple(self)!r})"

    def __reduce__(self):
        return (Tokens, (tuple(self),))


def declared_shape(sizes: tuple[Dim, ...]) -> tuple[Dim, ...]:
    """A shape written as a list of sizes (a network's input or output, ``--input``): two sizes are L×D tokens,
    one a vector, three a C×H×W image (and a Tokens stays as it is)."""
    if isinstance(sizes, Tokens):
        return sizes
    return Tokens(sizes) if len(sizes) == 2 else tuple(sizes)


def shape_json(shape: tuple[Dim, ...]) -> list | dict:
    """A shape in JSON: an image or vector as its list of sizes, tokens as ``{"tokens": 197, "features": 768}``
    (with ``"grid": [56, 56]`` where they lie on one); a symbolic size is its formula, a string."""
    sizes = [dim if isinstance(dim, int) else str(dim) for dim in shape]
    if not isinstance(shape, Tokens):
        return sizes
    length = shape.length
    described = {"tokens": length if isinstance(length, int) else str(length), "features": sizes[-1]}
    return {**described, "grid": sizes[:2]} if shape.grid is not None else described


def _serialise_shape(shape, handler):
    return shape_json(shape) if isinstance(shape, Tokens) else handler(shape)


# A size is an int, or a Sym where the network's input names its spatial sizes ([1, H, W]). A shape is a plain
# tuple for images and vectors, a Tokens for token sequences.
Shape = Annotated[tuple[Dim, ...], WrapSerializer(_serialise_shape)]
# A value of an expression: a list (``[3, 4, 6, 3]``, a window ``(1, 7)``) is a tuple of values.
Value = TypeAliasType("Value", Union[bool, int, float, tuple["Value", ...]])


class Node(Frozen):
    span: Span


# -- expressions ---------------------------------------------------------------------------------


class Number(Node):
    value: int | float


class Var(Node):
    name: str


class InputDim(Node):
    """``in.c``, ``in.h``, ``in.w``: a size of the tensor entering the current block."""

    dim: str


class UnOp(Node):
    op: Literal["-", "+", "not"]
    operand: Expr


class BinOp(Node):
    op: Literal["+", "-", "*", "/", "//", "%", "**", "==", "!=", "<", "<=", ">", ">=", "and", "or"]
    left: Expr
    right: Expr


class Func(Node):
    """``min(a, b)``, ``max(a, b)``."""

    name: str
    args: tuple[Expr, ...]


class ListExpr(Node):
    """``[3, 4, 6, 3]``, or ``(1, 7)`` (the same list)."""

    items: tuple[Expr, ...]


class ListFor(Node):
    """``[ceil(n * depth) for n in blocks]``: ``item`` once per value of ``values``, ``name`` bound to it."""

    item: Expr
    name: str
    values: Expr


class Index(Node):
    """``depths[i]``: an item of a list, counted from 0 (from the end when negative)."""

    value: Expr
    index: Expr


class SliceExpr(Node):
    """``depths[:i]``, ``xs[1:]``, ``xs[a:b]``: the items from ``start`` up to ``end``, as Python slices (a side
    left out is the list's start or end; negative ones count from the end)."""

    value: Expr
    start: Expr | None
    end: Expr | None


class CondExpr(Node):
    """``if TEST then A else B`` as an expression: only the arm chosen is evaluated."""

    test: Expr
    then: Expr
    otherwise: Expr


Expr = Union[Number, Var, InputDim, UnOp, BinOp, Func, ListExpr, ListFor, Index, SliceExpr, CondExpr]


# -- items ---------------------------------------------------------------------------------------


class Arg(Node):
    """One argument of a call: positional when ``name`` is None."""

    name: str | None
    value: Expr


class Call(Node):
    """A layer (``conv3x3 64``) or block call (``vgg(2, 64)``); resolution decides which by name."""

    name: str
    name_span: Span
    args: tuple[Arg, ...]


class Group(Node):
    """``< a; b >``: a sequence used as one item."""

    items: tuple[Item, ...]


class Repeat(Node):
    count: Expr
    item: Item


class Branch(Node):
    """``concat [ A | B ]``, ``add [ A | B ]`` or ``mul [ A | B ]``: each branch is a sequence of items."""

    op: Literal["concat", "add", "mul"]
    branches: tuple[tuple[Item, ...], ...]


class Loop(Node):
    """``for NAME in LIST ITEM``: the item once per value of the list, ``NAME`` bound to it."""

    name: str
    name_span: Span
    values: Expr
    item: Item


class Cond(Node):
    """``if TEST then A else B``, decided when the block is instantiated."""

    test: Expr
    then: Item
    otherwise: Item


Item = Union[Call, Group, Repeat, Loop, Branch, Cond]


# -- definitions ---------------------------------------------------------------------------------


class Param(Node):
    name: str
    default: Expr | None


class BlockDef(Node):
    name: str
    params: tuple[Param, ...]
    body: tuple[Item, ...]


class NetworkDef(Node):
    name: str
    params: tuple[Param, ...]
    input: tuple[Expr, ...]
    output: tuple[Expr, ...] | None
    output_span: Span | None
    body: tuple[Item, ...]


class Import(Node):
    path: str


class LayerDefault(Node):
    """``default conv bias=false``: what the layer kind ``kind`` takes for these arguments in the calls of
    its file that do not give them (the parser adds them to those calls as keyword arguments)."""

    kind: str
    kind_span: Span
    args: tuple[Arg, ...]


class Module(Node):
    """One parsed file."""

    imports: tuple[Import, ...]
    defaults: tuple[LayerDefault, ...] = ()
    blocks: tuple[BlockDef, ...]
    networks: tuple[NetworkDef, ...]


# -- the resolved graph --------------------------------------------------------------------------


class GraphNode(Frozen):
    """What every resolved node has: a unique dotted path (the torch submodule path), shapes, costs."""

    name: str
    path: str
    in_shape: Shape
    out_shape: Shape
    params: Dim
    macs: Dim
    span: Span


class Layer(GraphNode):
    op: Literal["layer"] = "layer"
    kind: str
    spelling: str
    args: dict[str, Value]


class Block(GraphNode):
    op: Literal["block"] = "block"
    block: str
    call: str
    body: tuple[Resolved, ...]


class Join(GraphNode):
    """A resolved ``concat``, ``add`` or ``mul``: branches run on the same input, then join."""

    op: Literal["concat", "add", "mul"]
    branches: tuple[tuple[Resolved, ...], ...]


Resolved = Union[Layer, Block, Join]


class Network(Frozen):
    """A network resolved at concrete parameters and input shape."""

    name: str
    params_bound: dict[str, Value]
    input_shape: Shape
    output_shape: Shape
    params: Dim
    macs: Dim
    body: tuple[Resolved, ...]
    span: Span


def walk_items(items: tuple[Item, ...]):
    """Every syntax item in ``items`` and inside them (groups, repeats, branches, both arms of an if),
    without recursion; the order is unspecified."""
    stack: list[Item] = list(items)
    while stack:
        item = stack.pop()
        yield item
        if isinstance(item, Group):
            stack.extend(item.items)
        elif isinstance(item, (Repeat, Loop)):
            stack.append(item.item)
        elif isinstance(item, Cond):
            stack.extend((item.then, item.otherwise))
        elif isinstance(item, Branch):
            stack.extend(i for branch in item.branches for i in branch)


def children(node: Resolved) -> tuple[Resolved, ...]:
    """The nodes directly inside a block or join (in order); a layer has none."""
    if isinstance(node, Block):
        return node.body
    if isinstance(node, Join):
        return tuple(child for branch in node.branches for child in branch)
    return ()


def walk(nodes: tuple[Resolved, ...]):
    """Every resolved node, depth first in execution order, without recursion."""
    stack = list(reversed(nodes))
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(children(node)))


def layers(nodes: tuple[Resolved, ...]):
    """Every layer, in execution order."""
    return (node for node in walk(nodes) if isinstance(node, Layer))


def validate(network: Network) -> None:
    """Check every node of a resolved graph against its pydantic schema (raises ValidationError)."""
    Network.model_validate(dict(network))
    for node in walk(network.body):
        type(node).model_validate(dict(node))


def subexpressions(expr: Expr):
    """``expr`` and every expression inside it, without recursion; the order is unspecified."""
    stack = [expr]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(_children(node))


def expression_size(expr: Expr) -> int:
    """The terms of an expression, its nodes: ``c * 2 + 1`` has five."""
    return sum(1 for _ in subexpressions(expr))


def free_names(expr: Expr):
    """The names (``Var`` nodes) an expression reads from its scope, without recursion: those a list
    comprehension binds (``r`` of ``[r[6] for r in stages]``) are left out within it."""
    stack: list[tuple[Expr, frozenset[str]]] = [(expr, frozenset())]
    while stack:
        node, bound = stack.pop()
        if isinstance(node, Var):
            if node.name not in bound:
                yield node
        elif isinstance(node, ListFor):
            stack.extend(((node.values, bound), (node.item, bound | {node.name})))
        else:
            stack.extend((child, bound) for child in _children(node))


def _children(node: Expr) -> tuple[Expr, ...]:
    if isinstance(node, UnOp):
        return (node.operand,)
    if isinstance(node, BinOp):
        return (node.left, node.right)
    if isinstance(node, Func):
        return node.args
    if isinstance(node, ListExpr):
        return node.items
    if isinstance(node, ListFor):
        return (node.item, node.values)
    if isinstance(node, Index):
        return (node.value, node.index)
    if isinstance(node, SliceExpr):
        return tuple(e for e in (node.value, node.start, node.end) if e is not None)
    if isinstance(node, CondExpr):
        return (node.test, node.then, node.otherwise)
    return ()


def names_read(expr: Expr) -> set[str]:
    """The names an expression reads from its scope: ``c * k + 1`` reads c and k."""
    return {node.name for node in free_names(expr)}


def format_dim(dim: Dim) -> str:
    """``64``, ``H``, or ``(floor((H + 3) / 4) - 2)`` where a symbolic size needs parentheses."""
    text = str(dim)
    return f"({text})" if isinstance(dim, Sym) and " " in text else text


def format_shape(shape: Shape, sep: str = "x") -> str:
    """``64x56x56`` (an image), ``197x768`` (tokens), ``(56x56)x96`` (tokens on a 56×56 grid)."""
    if isinstance(shape, Tokens) and shape.grid is not None:
        return f"({sep.join(format_dim(d) for d in shape.grid)}){sep}{format_dim(shape.features)}"
    return sep.join(format_dim(d) for d in shape)


def is_concrete(shape: Shape) -> bool:
    """Whether every size of ``shape`` is a number (none is a symbol such as H of 1xHxW)."""
    return not any(isinstance(d, Sym) for d in shape)


def format_args(args: dict[str, Value]) -> str:
    return ", ".join(f"{k}={_format_value(v)}" for k, v in args.items())


def _format_value(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    return repr(value)


def format_network(network: Network) -> str:
    """The stable text form: one node per line, blocks and branches indented."""
    lines = [f"network {network.name}({format_args(network.params_bound)}) : {format_shape(network.input_shape)}"]
    # Entries are (indent, node) or (indent, "| bN") headers; an explicit stack keeps deep graphs safe.
    stack: list[tuple[int, Resolved | str]] = [(1, node) for node in reversed(network.body)]
    while stack:
        indent, node = stack.pop()
        pad = "  " * indent
        if isinstance(node, str):
            lines.append(pad + node)
            continue
        where = f"  # {node.span}"
        if isinstance(node, Layer):
            lines.append(f"{pad}%{node.path} : {node.spelling}({format_args(node.args)}) -> {format_shape(node.out_shape)}{where}")
        elif isinstance(node, Block):
            lines.append(f"{pad}%{node.path} = {node.call} -> {format_shape(node.out_shape)}{where}")
            stack.extend((indent + 1, child) for child in reversed(node.body))
        else:
            lines.append(f"{pad}%{node.path} = {node.op} -> {format_shape(node.out_shape)}{where}")
            for index in reversed(range(len(node.branches))):
                stack.extend((indent + 2, child) for child in reversed(node.branches[index]))
                stack.append((indent + 1, f"| b{index}"))
    lines.append(f"  -> {format_shape(network.output_shape)}  params={network.params} macs={network.macs}")
    return "\n".join(lines)
