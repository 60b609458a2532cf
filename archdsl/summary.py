"""The per-layer summary of a resolved network: rows, totals, and their text, HTML and JSON forms.

Rows go down to ``depth`` levels of blocks and branches (all the way when None); a block or branch
at the limit is one row with its call, output shape and the sums of what it holds.
"""

from __future__ import annotations

import html
import math
import textwrap
from dataclasses import dataclass

from archdsl import ir
from archdsl.source import Span

BYTES_PER_VALUE = 4  # fp32

MACS_LEGEND = (
    "MACs: multiply-accumulates of convolution and linear weights for one sample (torchvision's convention; "
    "bias, normalisation, pooling and activations are left out)."
)
LEGEND = MACS_LEGEND + " Memory: fp32; activations are the outputs of every layer in one sample's forward pass."
ATTENTION_LEGEND = (
    "Attention: its query, key, value and output projections and its two matrix products (QKᵀ and the weighted sum "
    "of the values), as torchvision counts its transformers' GFLOPS; softmax, masks and position bias tables are "
    "left out, and Swin V2's position-bias MLP (run once per forward pass) is counted."
)


def legend(network: ir.Network) -> str:
    """The summary's legend, with what attention's MACs count where the network has attention."""
    from archdsl.layers import REGISTRY

    attends = any(REGISTRY[layer.kind].family == "attention" for layer in ir.layers(network.body))
    return f"{LEGEND} {ATTENTION_LEGEND}" if attends else LEGEND


@dataclass(frozen=True)
class Row:
    path: str
    op: str
    what: str
    in_shape: ir.Shape
    out_shape: ir.Shape
    params: int
    macs: int
    span: Span
    header: bool = False  # an expanded block or branch, whose contents follow as rows of their own

    def as_json(self) -> dict:
        return {
            "path": self.path, "op": self.op, "kind": self.what, "in": json_shape(self.in_shape),
            "out": json_shape(self.out_shape), "params": json_dim(self.params), "macs": json_dim(self.macs),
            "location": str(self.span),
        }


def json_dim(dim: ir.Dim):
    """Integers as numbers; symbolic sizes and counts as their formula (a string)."""
    return dim if isinstance(dim, int) else str(dim)


def json_shape(shape: ir.Shape) -> list | dict:
    """A list of sizes for an image or a vector, ``{"tokens": 197, "features": 768}`` for tokens (``ir.shape_json``)."""
    return ir.shape_json(shape)


def describe(node: ir.Resolved) -> str:
    """``conv3x3(out=64)`` for a layer (arguments that differ from the kind's defaults), the call for a block."""
    if isinstance(node, ir.Layer):
        preset, defaults = _implied(node.spelling)
        shown = {k: v for k, v in node.args.items() if k not in preset and defaults.get(k) != v}
        return f"{node.spelling}({ir.format_args(shown)})" if shown else node.spelling
    if isinstance(node, ir.Block):
        return node.call
    return node.op


def _implied(spelling: str) -> tuple[frozenset[str], dict]:
    """The arguments a layer's spelling sets itself (``conv3x3``: k and p) and its kind's defaults."""
    from archdsl.layers import lookup

    found = lookup(spelling)
    if found is None:
        return frozenset(), {}
    kind, preset = found
    return frozenset(preset), {spec.name: spec.default for spec in kind.args}


def rows(network: ir.Network, depth: int | None = None, headers: bool = False) -> list[Row]:
    """One row per node down to ``depth`` (a block or branch at the limit is one row), in execution order; a network
    whose body is one block call (the zoo's ``vit(...)``) is that block, its depth counted from inside it.

    Without ``headers`` the rows partition the network: their params and MACs add up to the totals.
    """
    out: list[Row] = []
    # A network whose body is one block call is that block: depth counts from inside it, as the diagram's does.
    top = 0 if len(network.body) == 1 and isinstance(network.body[0], ir.Block) else 1
    stack: list[tuple[int, ir.Resolved]] = [(top, node) for node in reversed(network.body)]
    while stack:
        level, node = stack.pop()
        inside = ir.children(node)
        expand = bool(inside) and (depth is None or level < depth)
        if headers or not expand:
            out.append(Row(node.path, node.op, describe(node), node.in_shape, node.out_shape,
                           node.params, node.macs, node.span, header=expand))
        if expand:
            stack.extend((level + 1, child) for child in reversed(inside))
    return out


def activation_values(network: ir.Network) -> int:
    return sum(math.prod(layer.out_shape) for layer in ir.layers(network.body))


def as_json(network: ir.Network, depth: int | None = None) -> dict:
    return {
        "network": network.name,
        "parameters": dict(network.params_bound),
        "input": json_shape(network.input_shape),
        "output": json_shape(network.output_shape),
        "params": json_dim(network.params),
        "macs": json_dim(network.macs),
        "param_bytes": json_dim(network.params * BYTES_PER_VALUE),
        "activation_bytes": json_dim(activation_values(network) * BYTES_PER_VALUE),
        "layers": [row.as_json() for row in rows(network, depth)],
        "legend": legend(network),
    }


def _bytes(n) -> str:
    if not isinstance(n, int):
        return f"{n} B"
    if n >= 2**40:
        return f"{n // 2**30:,} GiB"  # whole GiB in integers: an absurd spec's size would overflow a float
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError


def format_table(header: list[str], body: list[list[str]], right: set[int]) -> str:
    """Columns padded to their widest cell, numbers right-aligned, a rule under the header."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *body)]

    def line(cells: list[str]) -> str:
        padded = (c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        return "  ".join(padded).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(cells) for cells in body)])


HEADER = ["layer", "kind", "output", "params", "MACs"]
NUMERIC = {2, 3, 4}  # the columns right-aligned


def title(network: ir.Network) -> str:
    return f"{network.name}({ir.format_args(network.params_bound)}) : {ir.format_shape(network.input_shape)}"


def cells(network: ir.Network, depth: int | None = None) -> list[tuple[Row, list[str]]]:
    """Each row of the table with its cells: a block or branch that is expanded gets a row of its own, without
    sums."""
    return [(row, [row.path, _shortened(row.what), ir.format_shape(row.out_shape),
                   "" if row.header else f"{row.params:,}", "" if row.header else f"{row.macs:,}"])
            for row in rows(network, depth, headers=True)]


# A kind cell longer than this (a block called with a table of stages) is cut, its end shown as "..."; the JSON
# summary keeps the whole call.
KIND_WIDTH = 72


def _shortened(text: str) -> str:
    return text if len(text) <= KIND_WIDTH else text[:KIND_WIDTH - 4] + "...)"


def table(network: ir.Network, depth: int | None = None) -> str:
    """The per-layer table, columns padded as ``archdsl compile`` prints them."""
    body = [row_cells for _, row_cells in cells(network, depth)]
    return title(network) + "\n\n" + format_table(HEADER, body, right=NUMERIC)


def totals_lines(network: ir.Network) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The network's output, parameters and MACs; its memory for parameters and one sample's activations."""
    return (
        (f"output {ir.format_shape(network.output_shape)}", f"params {network.params:,}", f"MACs {network.macs:,}"),
        (f"parameter memory {_bytes(network.params * BYTES_PER_VALUE)}",
         f"activation memory {_bytes(activation_values(network) * BYTES_PER_VALUE)} per sample"),
    )


def totals(network: ir.Network) -> str:
    lines = ("   ".join(parts) for parts in totals_lines(network))
    return "\n".join(lines) + "\n" + textwrap.fill(legend(network), width=100)


def render_text(network: ir.Network, depth: int | None = None) -> str:
    """The table and the totals, as ``archdsl compile`` prints them."""
    return f"{table(network, depth)}\n\n{totals(network)}\n"


def render_html(network: ir.Network, depth: int | None = None) -> str:
    """The table, the totals and the legend as one HTML fragment, for Jupyter: the same cells as the text, an
    expanded block's row in bold, numbers right-aligned."""
    def cell(tag: str, index: int, text: str) -> str:
        align = "right" if index in NUMERIC else "left"
        return f'<{tag} style="text-align: {align}">{html.escape(text)}</{tag}>'

    def line(row: Row, row_cells: list[str]) -> str:
        start = '<tr style="font-weight: bold">' if row.header else "<tr>"
        return start + "".join(cell("td", i, text) for i, text in enumerate(row_cells)) + "</tr>"

    head = "".join(cell("th", i, name) for i, name in enumerate(HEADER))
    body = "\n".join(line(row, row_cells) for row, row_cells in cells(network, depth))
    sums = "<br>".join(" &middot; ".join(map(html.escape, parts)) for parts in totals_lines(network))
    return (f'<div class="archdsl-summary">\n<table>\n<caption style="text-align: left">'
            f"<b>{html.escape(title(network))}</b></caption>\n<thead><tr>{head}</tr></thead>\n"
            f"<tbody>\n{body}\n</tbody>\n</table>\n<p>{sums}</p>\n"
            f'<p style="font-size: smaller; max-width: 50em">{html.escape(legend(network))}</p>\n</div>')


def beside(*parts: str) -> str:
    """HTML fragments side by side, wrapping onto the next line where the page is narrow: how a notebook shows a
    table beside its picture (a network's summary and diagram, a run's metrics and curves)."""
    cells = "\n".join(f"<div>{part}</div>" for part in parts)
    return f'<div style="display: flex; flex-wrap: wrap; gap: 2em; align-items: flex-start">\n{cells}\n</div>'


@dataclass(frozen=True, repr=False)
class Summary:
    """The per-layer table of a network, what ``net.summary(depth)`` returns: it prints (and reads, in a REPL) as
    ``archdsl compile`` prints it, and displays as an HTML table in Jupyter.

    >>> print(archdsl.load("specs/lenet.arch").summary())    # the table, the totals, the legend
    """

    network: ir.Network
    depth: int | None
    text: str  # render_text's, made at once: a summary that cannot be printed fails where it is asked for

    @classmethod
    def of(cls, network: ir.Network, depth: int | None = None) -> Summary:
        return cls(network, depth, render_text(network, depth))

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        return render_html(self.network, self.depth)
