"""Source text, spans inside it, and the rendering of a diagnostic with its line and a caret.

A diagnostic reads like a compiler's::

    specs/vgg.arch:3:11: error: unknown layer 'conv3x'
        3 | block b = conv3x 64
          |           ^^^^^^
      hint: did you mean 'conv3x3'?
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import ConfigDict, Field, computed_field

from archdsl.frozen import Frozen


@dataclass(frozen=True, eq=False)
class Source:
    """A file's path (as the user named it) and its whole text."""

    path: str
    text: str

    @classmethod
    def read(cls, path: str | Path) -> Source:
        data = Path(path).read_bytes()
        return cls(str(path), data.decode("utf-8"))

    def position(self, offset: int) -> tuple[int, int]:
        """The 1-based line and column of character ``offset`` of the text."""
        return line_column(self.text, offset)

    def line_text(self, line: int) -> str:
        """Line ``line`` as the parser counts lines (by "\\n" alone), fit to print under a caret: a line
        break of another kind (a lone "\\r", a form feed, U+2028) shows as one space, keeping the columns."""
        lines = self.text.split("\n")
        if not 0 < line <= len(lines):
            return ""
        return lines[line - 1].removesuffix("\r").translate(_OTHER_LINE_BREAKS)

    def span(self, line: int, column: int, end_line: int | None = None, end_column: int | None = None) -> Span:
        return Span.make(
            source=self,
            line=line,
            column=column,
            end_line=end_line if end_line is not None else line,
            end_column=end_column if end_column is not None else column + 1,
        )


# What str.splitlines() takes for a line break besides "\n".
_OTHER_LINE_BREAKS = str.maketrans(dict.fromkeys("\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029", " "))


def line_column(text: str, offset: int) -> tuple[int, int]:
    """The 1-based line and column of character ``offset`` in ``text``."""
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


class Span(Frozen):
    """Where a node came from: 1-based line and column, end exclusive.

    It serialises as ``file``, ``line`` and ``column``; the text stays behind.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    source: Source = Field(exclude=True, repr=False)
    line: int
    column: int
    end_line: int
    end_column: int

    @computed_field
    @property
    def file(self) -> str:
        return printable_path(self.source.path)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


def printable_path(path: str) -> str:
    """A file name fit to write into UTF-8 text: bytes that are not UTF-8 (kept by Python as surrogate
    escapes, so that the file can still be opened) show as U+FFFD."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


# A quoted line longer than this shows a window of it around the caret (a minified or generated spec can
# hold megabytes on one line).
EXCERPT_WIDTH = 100
_ELLIPSIS = "..."


def render_excerpt(span: Span) -> str:
    """The source line under the span, with carets under the culprit; a long line cut to a window."""
    text = span.source.line_text(span.line).expandtabs(1).rstrip("\n")
    number = str(span.line)
    gutter = " " * len(number)
    width = span.end_column - span.column if span.end_line == span.line else len(text) - span.column + 1
    width = max(1, min(width, max(1, len(text) - span.column + 1)))
    start = span.column - 1
    if len(text) > EXCERPT_WIDTH:
        width = min(width, EXCERPT_WIDTH // 2)
        # The caret a quarter into the window (or the line's start, when the culprit is near it).
        first = 0 if start < EXCERPT_WIDTH // 2 else max(0, min(start - EXCERPT_WIDTH // 4, len(text) - EXCERPT_WIDTH))
        head = _ELLIPSIS if first > 0 else ""
        tail = _ELLIPSIS if first + EXCERPT_WIDTH < len(text) else ""
        text = head + text[first:first + EXCERPT_WIDTH] + tail
        start = start - first + len(head)
    return f"    {number} | {text}\n    {gutter} | {' ' * start}{'^' * width}"


def render_diagnostic(
    severity: str,
    message: str,
    span: Span | None,
    hint: str | None = None,
    notes: tuple[tuple[str, Span | None], ...] = (),
    fallback_file: str | None = None,
    code: str | None = None,
) -> str:
    """``FILE:LINE:COL: error: MESSAGE``, the line, a caret, then the hint and any notes; with a ``code``, the
    first line ends with it: ``... error: MESSAGE [A101]``, as mypy shows its codes."""
    headline = f"{severity}: {message}" + (f" [{code}]" if code else "")
    if span is not None:
        parts = [f"{span}: {headline}", render_excerpt(span)]
    elif fallback_file:
        parts = [f"{fallback_file}: {headline}"]
    else:
        parts = [f"archdsl: {headline}"]
    if hint:
        parts.append(f"  hint: {hint}")
    for note, where in notes:
        if where is None:
            parts.append(f"  note: {note}")
        else:
            parts.append(f"{where}: note: {note}\n{render_excerpt(where)}")
    # A lone surrogate (from a file's bytes or a string given to archdsl.loads) cannot be printed: U+FFFD,
    # one for one, so that the caret stays under its column.
    return _SURROGATE.sub("\ufffd", "\n".join(parts))


_SURROGATE = re.compile("[\ud800-\udfff]")
