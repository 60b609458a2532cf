"""One error root, ``ArchError``, and its kinds.

Every mistake a user can make ends in an ArchError; anything else escaping archdsl is a bug.
Foreign errors (Lark's, torch's, the file system's) are translated at the boundary, with a span
where there is one.
"""

from __future__ import annotations

from archdsl.source import Span, render_diagnostic


class ArchError(Exception):
    """A user-facing error, located in a spec where it has a place.

    >>> archdsl.loads("network n : [1, 8, 8] = conv3x 4")   # doctest: +SKIP
    ArchError: <string>:1:25: error: unknown layer 'conv3x'
    """

    kind = "error"

    def __init__(
        self,
        message: str,
        span: Span | None = None,
        *,
        hint: str | None = None,
        notes: tuple[tuple[str, Span | None], ...] = (),
        file: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
        self.notes = tuple(notes)
        self._file = file

    @property
    def file(self) -> str | None:
        return self.span.file if self.span is not None else self._file

    @property
    def line(self) -> int | None:
        return self.span.line if self.span is not None else None

    @property
    def column(self) -> int | None:
        return self.span.column if self.span is not None else None

    def with_note(self, note: str, span: Span | None) -> ArchError:
        """The same error with one more note (a call site, say), in place."""
        self.notes = (*self.notes, (note, span))
        return self

    @property
    def code(self) -> str:
        """The stable code of this kind of mistake (``A101``: unknown layer or block); `archdsl explain` tells
        more. Codes are assigned by one table, ``archdsl/codes.py``."""
        from archdsl.codes import code_of

        return code_of(self)

    def render(self, with_code: bool = False) -> str:
        """The diagnostic with its line and caret; ``with_code`` ends its first line with ``[A101]``."""
        return render_diagnostic("error", self.message, self.span, self.hint, self.notes, self._file,
                                 self.code if with_code else None)

    def __str__(self) -> str:
        return self.render()

    def _render_traceback_(self) -> list[str]:
        """What IPython and Jupyter show instead of a traceback: the diagnostic with its caret, not archdsl's
        frames."""
        return self.render().splitlines()


def first_line(err: Exception) -> str:
    """The first line of a foreign exception's message (or its type's name), for a one-line diagnostic."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class ParseError(ArchError):
    """The text is not a well-formed spec."""


class ResolveError(ArchError):
    """Names, arguments, calls and imports: unknown layers, wrong arguments, cycles, missing files."""


class ShapeError(ArchError):
    """A tensor shape that a layer cannot take, or a failed output assertion."""


class LimitError(ArchError):
    """A spec that would exceed a resource limit (layers, parameters, nesting) before anything is built."""


class BackendError(ArchError):
    """A failure while building or rendering: torch, Graphviz, exports."""


class UsageError(ArchError):
    """A bad command-line option, data set, checkpoint or run folder."""
