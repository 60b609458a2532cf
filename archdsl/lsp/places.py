"""Places in a document and what is written there: the syntax tree indexed for hover, go to definition, find
references and rename, and the conversion between archdsl's places and the protocol's.

archdsl counts 1-based lines and columns in characters; the protocol counts from 0, in the client's code units
(UTF-16 unless the client chose otherwise), so a line with an emoji before the culprit moves its caret.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from lsprotocol import types as lsp

from archdsl import ir
from archdsl.lsp.analysis import Analysis
from archdsl.source import Span

_UNITS = {
    "utf-8": lambda text: len(text.encode("utf-8", "surrogatepass")),
    "utf-16": lambda text: len(text.encode("utf-16-le", "surrogatepass")) // 2,
    "utf-32": len,
}


class Positions:
    """Conversions for one text, in one position encoding."""

    def __init__(self, text: str, encoding: str = "utf-16") -> None:
        self.lines = text.split("\n")
        self.units = _UNITS.get(str(encoding), _UNITS["utf-16"])

    def position(self, line: int, column: int) -> lsp.Position:
        """The protocol's position of a 1-based line and column (clamped to the text)."""
        line = max(1, min(line, len(self.lines)))
        text = self.lines[line - 1]
        return lsp.Position(line=line - 1, character=self.units(text[:max(0, column - 1)]))

    def range(self, span: Span) -> lsp.Range:
        return lsp.Range(start=self.position(span.line, span.column), end=self.position(span.end_line, span.end_column))

    def offset(self, position: lsp.Position) -> int:
        """The character offset of a protocol position (clamped to its line and to the text)."""
        line = min(max(position.line, 0), len(self.lines) - 1)
        text = self.lines[line]
        column, units = 0, 0
        while column < len(text) and units < position.character:
            units += self.units(text[column])
            column += 1
        return sum(len(previous) + 1 for previous in self.lines[:line]) + column


@dataclass(frozen=True)
class Found:
    """Something written at a place: its kind, its name, the span of the name, and the definition it is in.

    Kinds: ``call`` (a layer or block call's name), ``kwarg`` (``c=`` in a call), ``var`` (a name read),
    ``param`` (a parameter where it is defined), ``loop`` (a loop's name), ``block`` and ``network`` (a
    definition's name), ``func`` (a function's name), ``input`` (``in.c``)."""

    kind: str
    name: str
    span: Span
    definition: ir.BlockDef | ir.NetworkDef
    node: object
    scope: tuple[str, ...] = ()  # loop names bound where it is written


def own_definitions(analysis: Analysis) -> list[ir.BlockDef | ir.NetworkDef]:
    """The blocks and networks that the document itself defines, in the order written."""
    program = analysis.program
    if program is None:
        return []
    found = [d for d in (*program.blocks.values(), *program.networks.values()) if analysis.own(d)]
    return sorted(found, key=lambda d: (d.span.line, d.span.column))


def everything(definition: ir.BlockDef | ir.NetworkDef) -> Iterator[Found]:
    """Every named thing in a definition, without recursion."""
    kind = "block" if isinstance(definition, ir.BlockDef) else "network"
    yield Found(kind, definition.name, definition.span, definition, definition)
    for param in definition.params:
        yield Found("param", param.name, param.span, definition, param)
        if param.default is not None:
            yield from _in_expression(param.default, definition, ())
    if isinstance(definition, ir.NetworkDef):
        for expr in (*definition.input, *(definition.output or ())):
            yield from _in_expression(expr, definition, ())
    stack: list[tuple[ir.Item, tuple[str, ...]]] = [(item, ()) for item in reversed(definition.body)]
    while stack:
        item, scope = stack.pop()
        if isinstance(item, ir.Call):
            yield Found("call", item.name, item.name_span, definition, item, scope)
            for arg in item.args:
                if arg.name is not None:
                    start = arg.span
                    name_span = start.source.span(start.line, start.column, start.line, start.column + len(arg.name))
                    yield Found("kwarg", arg.name, name_span, definition, (item, arg), scope)
                yield from _in_expression(arg.value, definition, scope)
        elif isinstance(item, ir.Group):
            stack.extend((inner, scope) for inner in reversed(item.items))
        elif isinstance(item, ir.Repeat):
            yield from _in_expression(item.count, definition, scope)
            stack.append((item.item, scope))
        elif isinstance(item, ir.Loop):
            yield Found("loop", item.name, item.name_span, definition, item, scope)
            yield from _in_expression(item.values, definition, scope)
            stack.append((item.item, (*scope, item.name)))
        elif isinstance(item, ir.Cond):
            yield from _in_expression(item.test, definition, scope)
            stack.extend(((item.otherwise, scope), (item.then, scope)))
        else:
            stack.extend((inner, scope) for branch in reversed(item.branches) for inner in reversed(branch))


def _in_expression(expr: ir.Expr, definition, scope: tuple[str, ...]) -> Iterator[Found]:
    for node in ir.subexpressions(expr):
        if isinstance(node, ir.Var):
            yield Found("var", node.name, node.span, definition, node, scope)
        elif isinstance(node, ir.Func):
            start = node.span
            yield Found("func", node.name, start.source.span(start.line, start.column, start.line,
                                                              start.column + len(node.name)), definition, node, scope)
        elif isinstance(node, ir.InputDim):
            yield Found("input", node.dim, node.span, definition, node, scope)


def found_at(analysis: Analysis, offset: int) -> Found | None:
    """The named thing at a character offset of the document (the innermost, where spans nest)."""
    line, column = analysis.position(offset)
    best: Found | None = None
    for definition in own_definitions(analysis):
        for found in everything(definition):
            if _contains(found.span, line, column) and (best is None or _size(found.span) <= _size(best.span)):
                best = found
    return best


def _contains(span: Span, line: int, column: int) -> bool:
    return (span.line, span.column) <= (line, column) <= (span.end_line, span.end_column)


def _size(span: Span) -> tuple[int, int]:
    return span.end_line - span.line, span.end_column - span.column


_IMPORT_PATH = re.compile(r'import\s+"([^"\n]*)"')


def import_at(analysis: Analysis, offset: int) -> tuple[str, Span] | None:
    """The path of the import statement at ``offset``, and the span of its string."""
    for definition in analysis.definitions:
        if definition.keyword == "import" and definition.start <= offset <= definition.end:
            match = _IMPORT_PATH.match(analysis.source.text, definition.start, definition.end)
            if match is not None:
                line, column = analysis.position(match.start(1) - 1)
                return match.group(1), analysis.source.span(line, column, line, column + len(match.group(1)) + 2)
    return None


def binding(found: Found) -> Span | None:
    """Where a name read (or a keyword argument's name) is bound: a parameter or a loop of its definition."""
    if found.kind == "var" and found.name in found.scope:
        return _loop_span(found.definition, found.name, found.span)
    for param in found.definition.params:
        if param.name == found.name:
            return param.span
    return None


def _loop_span(definition, name: str, at: Span) -> Span | None:
    """The innermost loop binding ``name`` that encloses ``at`` (the nearest before it, being enclosing)."""
    loops = [f.span for f in everything(definition) if f.kind == "loop" and f.name == name
             and (f.span.line, f.span.column) <= (at.line, at.column)]
    return loops[-1] if loops else None
