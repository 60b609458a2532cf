"""``archdsl fmt``: print a spec in one canonical style, keeping its comments.

The formatter works on the tokens the parser itself reads (Lark's interactive parser, so each token
has the type the grammar gave it) and changes only the whitespace between them, plus trailing ``;``
and ``,`` that it drops. The tokens, and so the syntax tree, stay the same: a property test checks it
on every spec and on generated programs. Comments are the text between tokens that is not space.

What is fixed: single spaces between tokens (none inside ``(...)``, ``<...>``, shapes and ``in.c``,
none around a keyword argument's ``=``), a body's continuation lines indented by four, a multi-line
``concat [ ... ]`` with one branch per line, one blank line between definitions (imports stay
together), at most one blank line anywhere, comments trailing with two spaces. What is kept from the
source: where lines break between the items of a sequence (``conv3x3 64; relu`` on one line and the
next stage on the next says something), whether a body starts on the definition's line,
whether a group or branch spans lines at all, where a list or parenthesised arguments spanning lines
break after a ``,`` (a table of stages, one row a line, items indented by four, the closing bracket
under the line that opened it), and whether an ``if``'s ``then`` and ``else`` start lines of their own. A comment inside a construct printed on one line moves
to its own line above it::

    block vgg(n,c)=repeat n < conv3x3 c ; relu > ; maxpool2;     # before
    block vgg(n, c) = repeat n <conv3x3 c; relu>; maxpool2       # after
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lark import Token

from archdsl.parser import _lark, parse
from archdsl.source import Source

_COMMENT = re.compile(r"#[^\n]*")
_DECLS = {"IMPORT", "DEFAULT", "BLOCK", "NETWORK"}
_OPENERS = {"LPAR": "RPAR", "LSQB": "RSQB", "LESSTHAN": "MORETHAN"}
_CLOSERS = set(_OPENERS.values())
_OPERANDS = {"NAME", "NUMBER", "RPAR", "RSQB"}  # after one of these, '+' and '-' are binary
_INDENT = 4


def format_source(source: Source) -> str:
    """The canonical text of a spec; an ArchError when it does not parse.

    >>> format_source(Source("x.arch", "network n:[1,28,28]=flatten;fc 10;"))
    'network n : [1, 28, 28] = flatten; fc 10\\n'
    """
    parse(source)  # the formatter formats specs only; this raises the usual diagnostics
    tokens = list(_lark().parse_interactive(source.text).iter_parse())
    return _Printer(source.text, _without_trailing_separators(tokens)).run()


def _without_trailing_separators(tokens: list[Token]) -> list[Token]:
    """Drop a ``;`` that ends a body and a ``,`` that ends a list: they change nothing. (Not the ``,`` of
    ``(x,)``, which makes a list of one from a parenthesised ``x``.)"""
    kept = []
    parens: list[int] = []  # indices of the '(' still open
    for index, token in enumerate(tokens):
        after = tokens[index + 1].type if index + 1 < len(tokens) else "$END"
        if token.type == "LPAR":
            parens.append(index)
        elif token.type == "RPAR" and parens:
            parens.pop()
        if token.type == "SEMICOLON" and after in {"MORETHAN", "RSQB", "VBAR", "$END", *_DECLS}:
            continue
        if token.type == "COMMA" and (after == "RSQB" or (after == "RPAR" and not _a_list_of_one(tokens, parens[-1], index))):
            continue
        kept.append(token)
    return kept


def _a_list_of_one(tokens: list[Token], opening: int, comma: int) -> bool:
    """Whether the ``,`` at ``comma`` is the only one at the top of the parentheses opened at ``opening``
    that are not a call's or a definition's: ``(x,)``."""
    if tokens[opening - 1].type == "CALLNAME" or (opening >= 2 and tokens[opening - 2].type in {"BLOCK", "NETWORK"}):
        return False
    depth = 0
    for token in tokens[opening + 1:comma]:
        if token.type in _OPENERS:
            depth += 1
        elif token.type in _CLOSERS:
            depth -= 1
        elif token.type == "COMMA" and depth == 0:
            return False
    return True


@dataclass
class _Frame:
    """An open construct: a definition's body, or a bracket (which may span lines)."""

    kind: str  # "body", "group", "branch", "shape", "paren"
    base: int  # indent of the line the construct opened on
    multiline: bool = False  # a group or branch over several lines: one item or branch a line
    kept: bool = False  # a list or parentheses over several lines: the source's breaks after ',' stay

    @property
    def items(self) -> int:
        """The indent of the construct's item lines (a branch's items sit past its '| ')."""
        return self.base + _INDENT + (2 if self.kind == "branch" else 0)


@dataclass
class _Line:
    indent: int
    comment_indent: int  # for comments moved above the line: where one written there would go
    text: str = ""
    trailing: str | None = None
    hoisted: list[str] = field(default_factory=list)


class _Printer:
    """Lays the tokens out line by line; ``run`` returns the text."""

    def __init__(self, text: str, tokens: list[Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.pairs = _brackets(tokens)  # opening bracket's index -> its closing bracket's index
        self.closing = set(self.pairs.values())
        self.out: list[str] = []
        self.line: _Line | None = None
        self.frames: list[_Frame] = []
        self.decl: str | None = None  # the keyword of the definition being printed
        self.header = False  # between a definition's keyword and its body's '='
        self.body_equal = -1  # index of the '=' that opens the current body

    # -- the walk -------------------------------------------------------------------------------------

    def run(self) -> str:
        previous = -1
        for index, token in enumerate(self.tokens):
            start = self.tokens[previous].end_pos if previous >= 0 else 0
            comments = self._comments(start, token.start_pos)
            if previous < 0:
                self._break(-1, comments, index, indent=0, blank=False)
                self.line.text = str(token)
            elif self._breaks(index):
                self._break(previous, comments, index, self._indent_for(index), self._forced_blank(index))
                self.line.text = str(token)
            else:
                self.line.hoisted.extend(text for _, text in comments)
                self.line.text += self._space(index) + str(token)
            self._enter(index)
            previous = index
        end = self.tokens[previous].end_pos if previous >= 0 else 0
        self._break(previous, self._comments(end, len(self.text)), None, indent=0, blank=False)
        return "\n".join(self.out).strip("\n") + "\n" if any(self.out) else ""

    def _breaks(self, index: int) -> bool:
        """Whether the token at ``index`` starts a new line."""
        token, previous = self.tokens[index], self.tokens[index - 1]
        if token.type in _DECLS:
            return True
        if not self.frames:
            return False
        frame = self.frames[-1]
        if frame.multiline and (index - 1 in self.pairs or index in self.closing or token.type == "VBAR"):
            return True
        newline = "\n" in self.text[previous.end_pos:token.start_pos]
        if frame.kept and (index - 1 in self.pairs or index in self.closing or previous.type == "COMMA"):
            return newline
        if token.type in {"THEN", "ELSE"}:
            return newline  # an if over several lines: then and else under the if
        if previous.type == "SEMICOLON" and (frame.kind == "body" or frame.multiline):
            return newline
        if index - 1 == self.body_equal:
            return newline  # a body may start on its definition's line or on the next
        return False

    def _indent_for(self, index: int) -> int:
        if self.tokens[index].type in _DECLS or not self.frames:
            return 0
        frame = self.frames[-1]
        if index in self.closing:
            return frame.base
        if self.tokens[index].type in {"THEN", "ELSE"}:
            return self.line.indent
        if self.tokens[index].type == "VBAR":
            return frame.base + _INDENT
        return frame.items

    def _forced_blank(self, index: int) -> bool:
        """One blank line between definitions, except between two imports."""
        kind = self.tokens[index].type
        return kind in _DECLS and not (kind in {"IMPORT", "DEFAULT"} and self.decl == kind)

    def _enter(self, index: int) -> None:
        """Track definitions and brackets after printing the token at ``index``."""
        kind = self.tokens[index].type
        if kind in _DECLS:
            self.frames = []
            self.decl = kind
            self.header = kind not in {"IMPORT", "DEFAULT"}
        elif self.header and kind == "EQUAL" and not self.frames:
            self.header = False
            self.body_equal = index
            self.frames.append(_Frame("body", 0))
        elif index in self.pairs:
            if kind == "LESSTHAN":
                frame = "group"
            elif kind == "LSQB":
                frame = "branch" if self.tokens[index - 1].type in {"CONCAT", "ADD", "MUL"} else "shape"
            else:
                frame = "paren"
            spans_lines = "\n" in self.text[self.tokens[index].start_pos:self.tokens[self.pairs[index]].end_pos]
            self.frames.append(_Frame(frame, self.line.indent, spans_lines and frame in {"group", "branch"},
                                      spans_lines and frame in {"paren", "shape"}))
        elif index in self.closing:
            self.frames.pop()

    # -- spacing ----------------------------------------------------------------------------------------

    def _space(self, index: int) -> str:
        """The space before a token that continues a line: one, or none where the style glues two."""
        before, kind = self.tokens[index - 1].type, self.tokens[index].type
        inner = self.frames[-1].kind if self.frames else None
        if kind in {"COMMA", "SEMICOLON", "DOT", "RPAR"} or before in {"LPAR", "DOT"}:
            return ""
        if kind == "LPAR" and (before == "CALLNAME" or self.tokens[index - 2].type in {"BLOCK", "NETWORK"}):
            return ""  # a call, or a definition's name: glued to its '('
        if kind == "LSQB" and before in {"NAME", "RPAR", "RSQB"}:
            return ""  # an index, d[i]: a list never starts a space-separated argument
        if (kind == "COLON" or before == "COLON") and inner == "shape":
            return ""  # a slice, d[1:], d[:s]: a network's ':' is outside brackets
        if kind == "EQUAL" or before == "EQUAL":
            # A parameter's default and a body's '=' take spaces; a keyword argument's does not.
            return " " if self.header or index - 1 == self.body_equal else ""
        if before == "SUM_OP" and self.tokens[index - 2].type not in _OPERANDS:
            return ""  # a sign
        if inner in {"shape", "group"} and (index - 1 in self.pairs or index in self.closing):
            return ""
        return " "

    # -- lines and comments -----------------------------------------------------------------------------

    def _comments(self, start: int, end: int) -> list[tuple[int, str]]:
        """The comments between two tokens: (offset, text)."""
        return [(m.start(), m.group().rstrip()) for m in _COMMENT.finditer(self.text, start, end)]

    def _break(self, previous: int, comments, following: int | None, indent: int, blank: bool) -> None:
        """End the current line and start one at ``indent`` for the token ``following``, placing the
        comments between the two: on the same source line as ``previous``, trailing; else on their own."""
        at = self.tokens[previous].end_pos if previous >= 0 else 0
        for offset, text in comments:
            own_line = previous < 0 or "\n" in self.text[at:offset]
            if not own_line and self.line is not None and self.line.trailing is None:
                self.line.trailing = text
            else:
                self._flush()
                self._blank(blank or self._blank_before(at, offset))
                blank = False
                self.out.append(" " * self._comment_indent(indent, following) + text)
            at = offset + len(text)
        self._flush()
        if following is not None:
            self._blank(blank or self._blank_before(at, self.tokens[following].start_pos))
            self.line = _Line(indent, self._comment_indent(indent, following))

    def _comment_indent(self, indent: int, following: int | None) -> int:
        # A comment just before a closing bracket belongs with the items above it.
        if following in self.closing and self.frames[-1].multiline:
            return self.frames[-1].items
        return indent

    def _blank_before(self, end: int, start: int) -> bool:
        """Whether the source has a blank line between two pieces."""
        return any(not line.strip() for line in self.text[end:start].split("\n")[1:-1])

    def _blank(self, wanted: bool) -> None:
        if wanted and self.out and self.out[-1] != "":
            self.out.append("")

    def _flush(self) -> None:
        line, self.line = self.line, None
        if line is None or not line.text:
            return
        self.out.extend(" " * line.comment_indent + text for text in line.hoisted)
        self.out.append(" " * line.indent + line.text + (f"  {line.trailing}" if line.trailing else ""))


def _brackets(tokens: list[Token]) -> dict[int, int]:
    """Each opening bracket's index with its closing bracket's. Between ``if`` and ``then``, '<' and '>'
    compare (Lark lexes them as the group's brackets there too)."""
    stack: list[int] = []
    pairs: dict[int, int] = {}
    tests = 0  # tests open: an if's test may hold a conditional expression with its own if ... then
    for index, token in enumerate(tokens):
        if token.type in {"IF", "THEN"}:
            tests = tests + 1 if token.type == "IF" else max(0, tests - 1)
        elif tests and token.type in {"LESSTHAN", "MORETHAN"}:
            continue
        elif token.type in _OPENERS:
            stack.append(index)
        elif token.type in _CLOSERS:
            pairs[stack.pop()] = index
    return pairs
