"""IR → Graphviz: a diagram of a resolved network, drawn from its static shapes (no forward pass).

One node per layer, labelled in the papers' notation by the registry (``conv 3×3, 64, /2``) and
coloured by its family; every edge carries the shape that flows along it; every block call is a
cluster labelled with the call, and ``concat``/``add`` fan out from one tensor and meet at a join
node. For a spec such as::

    block residual(c) = add [ conv3x3 c; bn; relu; conv3x3 c; bn | id ]; relu
    network r : [64, 56, 56] = residual(64)

the diagram is ``input → [cluster residual(64): conv → BN + ReLU → conv → BN → (+) ← shortcut] → ReLU → output``.

``depth=N`` draws blocks nested N deep (top-level blocks are depth 1) as one node each, with the call,
the in → out shape and the parameter count; a run of calls of one block, each taking the shape the last gives
(a ViT's twelve encoder blocks, a stage's Swin blocks), is one node: ``encoder(12, 3072, 1e-06) ×12``, or
``swin_block ×6`` where the calls' arguments differ. Depth counts block
calls only: a ``concat`` or ``add`` is always drawn open, since its branches are the structure the diagram is
for; and a network whose body is one block call (the zoo's ``vit(...)``) is that block, drawn open, depth
counting from inside it.
"""

from __future__ import annotations

import html
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from archdsl import ir
from archdsl.errors import BackendError, UsageError
from archdsl.layers import REGISTRY
from archdsl.shapes import show

FORMATS = ("svg", "png", "pdf", "dot")
DIRECTIONS = ("TB", "LR")
INSTALL_HINT = (
    "install Graphviz (apt-get install graphviz on Debian/Ubuntu, brew install graphviz on macOS), "
    "or write a .dot file, which needs no Graphviz"
)

# Pastel fills, one per registry family, dark enough to tell apart on a projector and light enough
# for black text. A family without a colour is a bug that tests/test_graphviz_backend.py catches.
FAMILY_COLOURS = {
    "convolution": "#cfe2f3",
    "pooling": "#d9ead3",
    "normalisation": "#fff2cc",
    "activation": "#fce5cd",
    "linear": "#e4d7f5",
    "reshape": "#eeeeee",
    "regularisation": "#f4cccc",
    "identity": "#ffffff",
    "scale": "#d0e0e3",
    "embedding": "#d9f2e6",
    "attention": "#f8b8d8",
}
BLOCK_COLOUR = "#dde4ee"
FONT = "Helvetica"
EDGE_FONT_COLOUR = "#4d4d4d"
LINE_COLOUR = "#555555"
CLUSTER_FILLS = ("#eaeef4", "#f6f7fa")  # alternate with nesting, so that a block inside a block stands out
_FORK = {"shape": "point", "width": "0.06", "color": LINE_COLOUR}
_IO = {"shape": "box", "style": "rounded", "fillcolor": "#ffffff", "fontcolor": "#333333"}


@dataclass(eq=False)
class _Box:
    """A node of the diagram: a layer (with any activations folded into it), a join, a collapsed block."""

    name: str
    label: str
    attrs: dict[str, str]
    tooltip: list[str]


@dataclass(eq=False)
class _Cluster:
    """A block call drawn open: its nodes and the clusters of the calls inside it, in order."""

    name: str
    label: str
    tooltip: str
    level: int  # how many blocks are open around it, counting itself
    in_branch: bool  # inside a concat's or add's branch, beside the edges of the other branches
    body: list[_Box | _Cluster] = field(default_factory=list)
    aligned: list[list[str]] = field(default_factory=list)  # nodes to draw on one rank: a join's branch heads


@dataclass(frozen=True)
class _Tail:
    """The tensor flowing on: the node it leaves from, its shape, and where an activation may fold.

    ``fold_into`` is the layer node just drawn in the same sequence (None after a block or a join, or
    at the start of a block or branch, so that a folded label never leaves its cluster). ``via``
    names the identity layers the tensor passed since that node; they are drawn as the edge itself.
    Edges out of a fork point go without a label: the edge into the fork carries the shape.
    """

    node: str
    shape: ir.Shape
    fold_into: _Box | None = None
    via: tuple[str, ...] = ()
    labelled: bool = True


def _where(node: ir.GraphNode) -> str:
    return f"{node.path} ({node.span})"


class _Drawing:
    """Lays a network out as boxes in nested clusters plus edges, ready to emit as DOT."""

    def __init__(self, depth: int | None, fold_activations: bool) -> None:
        self.depth = depth
        self.fold = fold_activations
        self.home: dict[str, _Cluster] = {}  # the cluster each node is drawn in
        self.edges: list[tuple[str, str, dict[str, str]]] = []

    def edge(self, tail: _Tail, head: str) -> None:
        home = self.home[head]
        attrs = {}
        if tail.labelled:
            # dot 2.42-2.43 places the label of an edge inside a block that sits in a branch outside
            # that block, bending the edge around it (a DenseNet's conv_block beside its identity
            # edge); an external label (xlabel) is placed after layout, next to the straight edge.
            where = "xlabel" if home.in_branch and self.home[tail.node] is home else "label"
            attrs[where] = show(tail.shape)
        # A shortcut (fork point to join, no layer between) goes without a label for the same
        # reason: a labelled one pushes the edges beside it out of shape. Its tooltip names it.
        if tail.via:
            attrs["tooltip"] = "\\n".join(f"{path} (identity)" for path in tail.via)
        self.edges.append((tail.node, head, attrs))

    def place(self, cluster: _Cluster, box: _Box) -> None:
        cluster.body.append(box)
        self.home[box.name] = cluster

    def box(self, cluster: _Cluster, tail: _Tail, box: _Box, out_shape: ir.Shape) -> _Tail:
        """Draw ``box`` in ``cluster`` with an edge from ``tail``: the tensor now leaves from it."""
        self.place(cluster, box)
        self.edge(tail, box.name)
        return _Tail(box.name, out_shape)

    def sequence(self, nodes: tuple[ir.Resolved, ...], cluster: _Cluster, tail: _Tail, level: int,
                 in_branch: bool) -> Generator:
        """Draw ``nodes`` one after another; a generator that yields the sub-sequences it needs drawn.

        ``_run`` drives it, so block and branch nesting costs heap, not Python stack. ``level`` is the
        number of open blocks around ``nodes``; ``in_branch`` says whether a join's branch is.
        """
        tail = replace(tail, fold_into=None)
        position = 0
        while position < len(nodes):
            node = nodes[position]
            position += 1
            if isinstance(node, ir.Layer):
                tail = self.layer(node, cluster, tail)
            elif isinstance(node, ir.Block):
                if self.depth is not None and level + 1 >= self.depth:
                    run = _alike(nodes, position - 1)
                    position += len(run) - 1
                    tail = self.box(cluster, tail, _collapsed(run), run[-1].out_shape)
                else:
                    inner = _Cluster(f"cluster_{node.path}", node.call, _where(node), level + 1, in_branch)
                    cluster.body.append(inner)
                    tail = yield self.sequence(node.body, inner, tail, level + 1, in_branch)
                    tail = replace(tail, fold_into=None)
            elif isinstance(node, ir.Join):
                # The branches fan out from a fork point inside the block, as the papers draw them, so
                # that the shape is written once and a shortcut stays within its block.
                fork = _Box(f"{node.path}.in", "", _FORK, [f"{node.path}: into {node.op}"])
                tail = replace(self.box(cluster, tail, fork, tail.shape), labelled=False)
                ends, heads = [], []
                for branch in node.branches:
                    start = len(cluster.body)
                    ends.append((yield self.sequence(branch, cluster, tail, level, True)))
                    if start < len(cluster.body) and isinstance(cluster.body[start], _Box):
                        heads.append(cluster.body[start].name)
                if len(heads) > 1:
                    cluster.aligned.append(heads)
                join = _join(node)
                self.place(cluster, join)
                for end in ends:
                    self.edge(end, join.name)
                tail = _Tail(join.name, node.out_shape)
            else:
                raise TypeError(f"no diagram for {type(node).__name__}")
        return tail

    def layer(self, node: ir.Layer, cluster: _Cluster, tail: _Tail) -> _Tail:
        kind = REGISTRY[node.kind]
        colour = FAMILY_COLOURS[kind.family]
        if kind.family == "identity":
            return replace(tail, shape=node.out_shape, via=(*tail.via, node.path))
        if self.fold and kind.family == "activation" and tail.fold_into is not None:
            box = tail.fold_into
            box.label += f" + {kind.label(node.args)}"
            box.tooltip.append(_where(node))
            return replace(tail, shape=node.out_shape)
        box = _Box(node.path, kind.label(node.args), {"fillcolor": colour}, [_where(node)])
        return replace(self.box(cluster, tail, box, node.out_shape), fold_into=box)


def _join(node: ir.Join) -> _Box:
    if node.op in _JOIN_SIGNS:
        # The ⊕ of the ResNet paper's figure (⊗ for a gate): a small circle the branches meet at.
        attrs = {"shape": "circle", "style": "filled", "fillcolor": "#ffffff", "width": "0.3", "fixedsize": "true",
                 "fontsize": "14"}
        return _Box(node.path, _JOIN_SIGNS[node.op], attrs, [_where(node)])
    attrs = {"shape": "box", "style": "filled", "fillcolor": "#ffffff"}
    return _Box(node.path, node.op, attrs, [_where(node)])


_JOIN_SIGNS = {"add": "+", "mul": "×"}


def _alike(nodes: tuple[ir.Resolved, ...], start: int) -> list[ir.Block]:
    """The block call at ``start`` and the calls of the same block that follow it, each with as many parameters and
    taking the shape the one before gives: a repeat's blocks, a stage's (whose arguments may differ from block to
    block, as Swin's shifts and stochastic-depth rates do)."""
    first = nodes[start]
    run = [first]
    for node in nodes[start + 1:]:
        if not (isinstance(node, ir.Block) and node.block == first.block and node.params == first.params
                and node.in_shape == run[-1].out_shape):
            break
        run.append(node)
    return run


def _collapsed(run: list[ir.Block]) -> _Box:
    """One node for a block call, or for a run of calls of one block: ``encoder(12, 3072, 1e-06) ×12`` where the
    calls are the same, ``swin_block ×6`` where their arguments differ (each call is in the tooltip)."""
    first, last = run[0], run[-1]
    params = sum(node.params for node in run)
    sizes = f"{show(first.in_shape)} → {show(last.out_shape)}, {params:,} params"
    call = first.call if all(node.call == first.call for node in run) else first.block
    call += f" ×{len(run)}" if len(run) > 1 else ""
    label = f'<<b>{html.escape(call)}</b><br/><font point-size="9">{html.escape(sizes)}</font>>'
    attrs = {"fillcolor": BLOCK_COLOUR, "penwidth": "1.2"}
    return _Box(first.path, label, attrs, [f"{node.call}: {_where(node)}" if len(run) > 1 else _where(node)
                                           for node in run])


def _run(start: Generator):
    """Drive a generator that yields sub-generators (whose results it receives): recursion on the heap."""
    stack = [start]
    value = None
    while stack:
        try:
            child = stack[-1].send(value)
        except StopIteration as stop:
            stack.pop()
            value = stop.value
        else:
            stack.append(child)
            value = None
    return value


def draw(network: ir.Network, depth: int | None = None, direction: str = "TB", fold_activations: bool = True):
    """The ``graphviz.Digraph`` of a resolved network (see the module's docstring).

    >>> net = archdsl.loads("network n : [1, 28, 28] = conv3x3 8; relu; flatten; linear 10")
    >>> print(draw(net.ir).source)   # conv 3×3, 8 + ReLU → flatten → linear 10, shapes on the edges
    """
    import graphviz

    if direction.upper() not in DIRECTIONS:
        raise UsageError(f"--direction takes TB (top to bottom) or LR (left to right), not '{direction}'")
    if depth is not None and depth < 1:
        raise UsageError(f"--depth must be at least 1, not {depth}", hint="leave it out to draw every layer")

    drawing = _Drawing(depth, fold_activations)
    root = _Cluster(network.name, "", "", 0, False)
    drawing.place(root, _Box("input", "input", _IO, [f"input {show(network.input_shape)}"]))
    sole = len(network.body) == 1 and isinstance(network.body[0], ir.Block)  # the network is that block
    tail = _run(drawing.sequence(network.body, root, _Tail("input", network.input_shape), -1 if sole else 0, False))
    drawing.box(root, tail, _Box("output", "output", _IO, [f"output {show(network.output_shape)}"]),
                network.output_shape)

    call = f"{network.name}({ir.format_args(network.params_bound)})" if network.params_bound else network.name
    title = (f"{call}: {show(network.input_shape)} → {show(network.output_shape)}, "
             f"{network.params:,} params")
    graph = graphviz.Digraph(
        network.name,
        graph_attr={"rankdir": direction.upper(), "label": title, "labelloc": "t", "fontname": FONT, "fontsize": "12",
                    "nodesep": "0.2", "ranksep": "0.25", "newrank": "true"},
        node_attr={"shape": "box", "style": "rounded,filled", "fontname": FONT, "fontsize": "10",
                   "height": "0.3", "margin": "0.1,0.03", "color": LINE_COLOUR, "penwidth": "0.8"},
        edge_attr={"fontname": FONT, "fontsize": "8", "fontcolor": EDGE_FONT_COLOUR, "color": LINE_COLOUR,
                   "arrowsize": "0.6", "penwidth": "0.8"},
    )
    _emit(root, graph)
    # Where an edge is written makes no difference to dot's layout; all of them go last, at the top.
    for start, end, attrs in drawing.edges:
        graph.edge(start, end, **attrs)
    return graph


def _emit(root: _Cluster, graph) -> None:
    """Write the cluster tree into ``graph``, innermost clusters first (a subgraph is copied in when added)."""
    import graphviz

    order, stack = [], [root]
    while stack:
        cluster = stack.pop()
        order.append(cluster)
        stack.extend(item for item in reversed(cluster.body) if isinstance(item, _Cluster))
    built: dict[int, graphviz.Digraph] = {}
    for cluster in reversed(order):
        target = graph if cluster is root else graphviz.Digraph(cluster.name)
        if cluster is not root:
            target.attr(label=cluster.label, tooltip=cluster.tooltip, style="rounded,filled", color="#9a9a9a",
                        fillcolor=CLUSTER_FILLS[cluster.level % 2], fontname=FONT, fontsize="10", labeljust="l")
        for item in cluster.body:
            if isinstance(item, _Cluster):
                target.subgraph(built.pop(id(item)))
            else:
                target.node(item.name, item.label, tooltip="\\n".join(item.tooltip), **item.attrs)
        for names in cluster.aligned:
            rank = graphviz.Digraph(graph_attr={"rank": "same"})
            for name in names:
                rank.node(name)
            target.subgraph(rank)
        built[id(cluster)] = target


def save(graph, path: Path, inputs: Sequence[Path] = (), fmt: str | None = None) -> None:
    """Write ``graph`` to ``path`` in the format ``fmt`` (by default, the one its suffix names; svg for
    standard output or a device such as /dev/null), replacing any old file atomically (but never one of ``inputs``, the files the
    diagram was drawn from).

    A .dot file is the DOT source and needs no Graphviz; .svg, .png and .pdf are rendered by ``dot``.
    """
    from archdsl.atomic import check_output, resolve_output, write_bytes_atomic

    check_output(path, inputs)

    if fmt is None:
        fmt = path.suffix.lower().lstrip(".") or ("svg" if resolve_output(path).direct else "")
    if fmt not in FORMATS:
        raise UsageError(
            f"cannot tell which format to write from the name '{path.name}'",
            hint="end it with .svg, .png, .pdf or .dot, or pass --format",
        )
    data = graph.source.encode("utf-8") if fmt == "dot" else render(graph, fmt)
    write_bytes_atomic(path, data)


def render(graph, fmt: str) -> bytes:
    """The diagram as ``fmt`` (svg, png, pdf) bytes, from Graphviz's ``dot``."""
    import graphviz

    try:
        return graph.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise BackendError(
            f"cannot draw the {fmt.upper()}: Graphviz's 'dot' program is not installed (or not on PATH)",
            hint=INSTALL_HINT,
        ) from None
    except graphviz.CalledProcessError as err:
        detail = (err.stderr or b"").decode("utf-8", "replace").strip().splitlines()
        raise BackendError("Graphviz's dot failed" + (f": {detail[-1]}" if detail else "")) from None


def inline_svg(graph) -> str | None:
    """The diagram as an ``<svg>`` element to place in HTML (without the XML prolog), or None where Graphviz's
    dot is missing or fails: a notebook's display then shows what it has, without a traceback."""
    try:
        svg = render(graph, "svg").decode("utf-8")
    except BackendError:
        return None
    return svg[svg.index("<svg"):]
