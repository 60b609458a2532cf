"""What the language server knows of one open document: every error, the chosen network resolved, and an index
of the syntax tree by place. Pure Python over archdsl's own front end (``check.check_source``); no protocol here.

Which network gives the shapes: the one a directive comment names, else the file's first. The directive takes
the command line's options::

    # archdsl: --network resnet50 -p classes=100 --input 3x160x160

Other networks of the file get the checks that need no values (names and arguments of every call); their shapes
are not computed, which keeps a keystroke in a file of twenty networks as quick as in a file of one.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from archdsl import ir
from archdsl.arguments import parse_params, parse_shape
from archdsl.check import Report, check_source
from archdsl.errors import ArchError, UsageError
from archdsl.program import Program
from archdsl.recovery import Definition, definitions
from archdsl.source import Source, Span, line_column

DIRECTIVE = re.compile(r"^[ \t]*#[ \t]*archdsl:(.*)$", re.MULTILINE)  # a comment line of its own


@dataclass(frozen=True)
class Choice:
    """The network that gives shapes and its settings, from a directive or by default."""

    network: str | None = None
    params: dict = field(default_factory=dict)
    input_shape: tuple | None = None
    span: Span | None = None  # the directive's place, where its own errors go


@dataclass
class Analysis:
    """One version of a document, analysed."""

    source: Source
    report: Report
    choice: Choice
    definitions: list[Definition]
    nodes: dict[tuple[str, int, int], list[ir.Resolved]] = field(default_factory=dict)  # by (file, line, column)

    @property
    def program(self) -> Program | None:
        return self.report.program

    @property
    def network(self) -> ir.Network | None:
        """The chosen network resolved, when it could be."""
        resolved = self.report.resolved
        return next(iter(resolved.values()), None)

    def at(self, span: Span) -> list[ir.Resolved]:
        """The resolved nodes a call made (several in a block called several times, a repeat or a loop)."""
        return self.nodes.get((span.source.path, span.line, span.column), [])

    def offset(self, line: int, column: int) -> int:
        """The offset of a 1-based line and column."""
        lines = self.source.text.split("\n")
        return sum(len(text) + 1 for text in lines[:line - 1]) + column - 1

    def position(self, offset: int) -> tuple[int, int]:
        return line_column(self.source.text, offset)

    def definition_at(self, offset: int) -> Definition | None:
        """The top-level definition whose text holds ``offset`` (or that the offset ends)."""
        found = None
        for definition in self.definitions:
            if definition.start <= offset:
                found = definition
        return found

    def own(self, node: ir.Node) -> bool:
        """Whether a syntax node is in this document (not in a file it imports)."""
        return node.span.source is self.source


def analyze(path: str, text: str) -> Analysis:
    """Analyse a document's text; ``path`` is its file (imports are relative to it) or a name in brackets."""
    source = Source(path, text)
    choice, errors = directive(source)
    networks = [choice.network] if choice.network else _first_network(text)
    report = check_source(source, networks=networks, params=choice.params, input_shape=choice.input_shape)
    report.errors[:0] = errors
    analysis = Analysis(source, report, choice, definitions(text))
    for network in report.resolved.values():
        for node in ir.walk(network.body):
            if not isinstance(node, ir.Join):
                analysis.nodes.setdefault((node.span.source.path, node.span.line, node.span.column), []).append(node)
    return analysis


def _first_network(text: str) -> list[str] | None:
    """The first network the text defines (by its keyword), as check_source's choice; None: there is none."""
    first = next((d.name for d in definitions(text) if d.keyword == "network" and d.name), None)
    return [first] if first else []


def directive(source: Source) -> tuple[Choice, list[ArchError]]:
    """The ``# archdsl: ...`` comment's choice of network, parameters and input, and its mistakes."""
    for match in DIRECTIVE.finditer(source.text):
        line, column = source.position(match.start() + match.group(0).index("#"))
        span = source.span(line, column, line, column + len(match.group(0).strip()))
        try:
            return _parse_directive(match.group(1), span), []
        except ArchError as err:
            return Choice(span=span), [UsageError(f"the directive: {err.message}", span, hint=err.hint)]
    return Choice(), []


def _parse_directive(text: str, span: Span) -> Choice:
    try:
        words = shlex.split(text)
    except ValueError as err:
        raise UsageError(f"cannot read its options: {err}") from None
    network, params, shape = None, [], None
    index = 0
    while index < len(words):
        word = words[index]
        name, equals, value = word.partition("=")
        if name in ("--network", "-n", "--param", "-p", "--input"):
            if not equals:
                index += 1
                if index >= len(words):
                    raise UsageError(f"{name} needs a value", hint="# archdsl: --network NAME -p NAME=VALUE --input CxHxW")
                value = words[index]
            if name in ("--network", "-n"):
                network = value
            elif name in ("--param", "-p"):
                params.append(value)
            else:
                shape = value
        else:
            raise UsageError(f"unknown option '{word}'", hint="it takes --network NAME, -p NAME=VALUE and --input CxHxW")
        index += 1
    return Choice(network, parse_params(params), parse_shape(shape), span)


def file_path(uri: str) -> str:
    """The path a document's URI names, or the URI in brackets for one that is not a file (an unsaved buffer)."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return f"<{uri}>"
    return str(Path(unquote(parsed.path)))
