"""Parsing a spec that has mistakes: each top-level definition on its own, so that one error does not hide the
next (what `archdsl check` and the language server report).

A spec is a sequence of definitions, each starting with one of the keywords ``import``, ``default``, ``block`` and
``network``, which can appear nowhere else (outside comments and strings). When the whole text does not parse,
the parser's first error stands, and the definitions are parsed one by one: those that parse are kept, and the
errors of those that do not are added unless the first error already explains them. A definition that does not
parse is *broken*: its name is known (calls to it are no unknown names), its body is not::

    block a = < conv3x3 8; relu        # error: unexpected 'block'; expected '>'   (the parser's own)
    block b(c) = conv3x3 c; rleu       # still checked: unknown layer or block 'rleu'
    network n : [1, 8, 8] = a; b(4)    # a is broken, so n is not resolved; b is
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lark.exceptions import UnexpectedInput, VisitError

from archdsl import ir
from archdsl.errors import ArchError, LimitError, ParseError
from archdsl.parser import _count_tokens, _lark, _parse_error, _ToIR, assemble, parse
from archdsl.source import Source

KEYWORDS = ("import", "default", "block", "network")
# Comments and strings are skipped whole, so that a keyword in them starts nothing.
_SCAN = re.compile(r'#[^\n]*|"[^"\n]*"|\b(import|default|block|network)\b(?:\s+([A-Za-z_]\w*))?')
_TOKEN = re.compile(r'#[^\n]*|"[^"\n]*"|[^\s#"]+|"')


@dataclass(frozen=True)
class Definition:
    """Where one top-level definition lies in a text: its keyword ("" for text before the first), the name it
    defines (None for an import or a default), and its extent from the keyword to its last token."""

    keyword: str
    name: str | None
    start: int
    end: int


def definitions(text: str) -> list[Definition]:
    """The top-level definitions of ``text`` by its keywords, whether or not they parse.

    >>> [d.name for d in definitions("block a = relu\\nnetwork n : [1, 8, 8] = a")]
    ['a', 'n']
    """
    starts = [(m.start(), m.group(1), m.group(2)) for m in _SCAN.finditer(text) if m.group(1)]
    if _has_tokens(text[:starts[0][0]] if starts else text):
        starts.insert(0, (0, "", None))
    found = []
    for index, (start, keyword, name) in enumerate(starts):
        stop = starts[index + 1][0] if index + 1 < len(starts) else len(text)
        found.append(Definition(keyword, name if keyword in ("block", "network") else None, start,
                                _last_token_end(text, start, stop)))
    return found


def _has_tokens(text: str) -> bool:
    return any(not match.group().startswith("#") for match in _TOKEN.finditer(text))


def _last_token_end(text: str, start: int, stop: int) -> int:
    end = start
    for match in _TOKEN.finditer(text, start, stop):
        if not match.group().startswith("#"):
            end = match.end()
    return end


@dataclass(frozen=True)
class Recovered:
    """What the recovering parser makes of a text: the definitions that parse, the errors, and the names of the
    definitions that do not parse (whose calls are not to be reported as unknown)."""

    module: ir.Module
    errors: tuple[ArchError, ...]
    broken: frozenset[str]


def parse_recovering(source: Source) -> Recovered:
    """Parse ``source``, recovering after an error at the next definition.

    A text too large or of too many tokens is refused whole, as ``parse`` refuses it.
    """
    try:
        return Recovered(parse(source), (), frozenset())
    except LimitError as err:
        if err.span is None or "tokens" in err.message:
            return Recovered(_empty(source), (err,), frozenset())
        first = err
    except ArchError as err:
        first = err
    first_offset = _offset(source, first)
    errors: list[ArchError] = [first]
    decls: list = []
    broken: set[str] = set()
    parts = definitions(source.text)
    for index, part in enumerate(parts):
        following = parts[index + 1] if index + 1 < len(parts) else None
        try:
            decls.extend(_parse_definition(source, part, following))
        except ArchError as err:
            if part.name is not None:
                broken.add(part.name)
            if part.start >= first_offset and _offset(source, err) > first_offset:
                errors.append(err)
    try:
        module = assemble(source.span(1, 1), decls)
    except ArchError as err:  # the defaults of several definitions together: one set twice
        _add(errors, err)
        module = assemble(source.span(1, 1), [d for d in decls if not isinstance(d, ir.LayerDefault)])
    return Recovered(module, tuple(errors), frozenset(broken))


def _parse_definition(source: Source, part: Definition, following: Definition | None) -> tuple:
    """The definitions (one) that the text of ``part`` holds, parsed in place: the text before it is blanked,
    so that lines, columns and offsets are those of the whole file."""
    text = source.text[:part.start].translate(_BLANK) + source.text[part.start:part.end]
    _count_tokens(Source(source.path, text))
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as err:
        raise _located(source, text, err, following) from None
    try:
        module = _ToIR(source).transform(tree)
    except VisitError as err:
        if isinstance(err.orig_exc, ArchError):
            raise err.orig_exc from None
        raise
    return (*module.imports, *module.defaults, *module.blocks, *module.networks)


class _Blank(dict):
    """str.translate's table: every character but a newline to a space."""

    def __missing__(self, char: int) -> int:
        return char if char == 10 else 32


_BLANK = _Blank()


def _located(source: Source, text: str, err: UnexpectedInput, following: Definition | None) -> ParseError:
    """The parse error of a definition parsed alone, in the whole file's terms: a definition cut short says that
    the next one's keyword was unexpected, at that keyword, as the parser says of the whole file."""
    error = _parse_error(Source(source.path, text), err)
    span = error.span
    if following is not None and error.message.startswith("unexpected end of file"):
        line, column = source.position(following.start)
        message = f"unexpected '{following.keyword}'" + error.message.removeprefix("unexpected end of file")
        return ParseError(message, source.span(line, column, line, column + len(following.keyword)), hint=error.hint)
    return ParseError(error.message, source.span(span.line, span.column, span.end_line, span.end_column),
                      hint=error.hint)


def _offset(source: Source, err: ArchError) -> int:
    """The offset in ``source`` where an error points (its end, when it has no place)."""
    if err.span is None or err.span.source.path != source.path:
        return len(source.text)
    lines = source.text.split("\n")
    return sum(len(line) + 1 for line in lines[:err.span.line - 1]) + err.span.column - 1


def _add(errors: list[ArchError], err: ArchError) -> None:
    if not any(e.message == err.message and e.span == err.span for e in errors):
        errors.append(err)


def _empty(source: Source) -> ir.Module:
    return ir.Module.make(span=source.span(1, 1), imports=(), defaults=(), blocks=(), networks=())
