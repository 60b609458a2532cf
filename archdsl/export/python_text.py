"""The last step of the Python export: constructor lines made final, long lines broken, docstrings indented.

Size assignments are written once a class is complete (``Assign``), so that sizes nothing reads are
left out and the file passes a linter's unused-variable checks; the helpers every file may need
(``out_size``, ``Concat``, ``Add``) are fixed text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from archdsl.export import pyexpr
from archdsl.export.pyexpr import Py


@dataclass(frozen=True)
class Assign:
    """Sizes assigned to locals: ``targets = values``, or ``targets = whole`` unpacking a tuple.

    Written once the whole class is known, so that targets nothing reads can be left out (or be
    ``_`` in an unpacking) and the file passes a linter's checks for unused variables.
    """

    indent: str
    targets: tuple[str, ...]
    values: tuple[Py, ...] = ()
    whole: Py | None = None

    def reads(self, live: set[str]) -> str:
        """The text this statement reads, once targets outside ``live`` are dropped."""
        if self.whole is not None:
            return self.whole.src if live.intersection(self.targets) else ""
        return " ".join(v.src for t, v in zip(self.targets, self.values) if t in live)

    def render(self, live: set[str]) -> str | None:
        keep = [t in live for t in self.targets]
        if not any(keep):
            return None
        if self.whole is not None:
            if sum(keep) == 1:
                position = keep.index(True)
                return f"{self.indent}{self.targets[position]} = {pyexpr.index(self.whole, position)}"
            return f"{self.indent}{', '.join(t if k else '_' for t, k in zip(self.targets, keep))} = {self.whole}"
        pairs = [(t, v) for t, v, k in zip(self.targets, self.values, keep) if k]
        if len(pairs) == 1:
            name, expr = pairs[0]
            if expr.prec == pyexpr.SUM and expr.src.startswith(f"{name} + "):
                return f"{self.indent}{name} += {expr.src[len(name) + 3:]}"
            return f"{self.indent}{name} = {expr}"
        return f"{self.indent}{', '.join(t for t, _ in pairs)} = {', '.join(v.src for _, v in pairs)}"


def finish(lines: list) -> list[str]:
    """The constructor's lines with each ``_Assign`` written out, dropping assignments nothing reads.

    A local is live when a line mentions it, or the value of a live assignment does: the least
    fixed point, so a size that only feeds its own update in a loop is dropped too.
    """
    live = _identifiers(line for line in lines if isinstance(line, str))
    deferred = [line for line in lines if not isinstance(line, str)]
    while True:
        wider = live | _identifiers(d.reads(live) for d in deferred)
        if wider == live:
            break
        live = wider
    rendered = (line if isinstance(line, str) else line.render(live) for line in lines)
    return [line for line in rendered if line is not None]


# A name, unless it is an attribute (``.width``), a keyword argument or the target of ``=``.
_NAME_READ = re.compile(r"(?<![.\w])([A-Za-z_]\w*)(?!\w|\s*=(?!=))")


def _identifiers(lines) -> set[str]:
    """The names the lines read (or may read: f-strings count whole), enough to keep every size that is used."""
    found: set[str] = set()
    for line in lines:
        found.update(_NAME_READ.findall(line))
    return found


def wrap_line(line: str, limit: int = 120) -> str:
    """A statement longer than ``limit`` ending in a call or tuple, broken inside its last brackets
    as a formatter would: the arguments on one indented line, or one per line when that is too long."""
    if len(line) <= limit or not line.endswith(")"):
        return line
    depth = 0
    for opening in range(len(line) - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(line[opening], 0)
        if depth == 0:
            break
    indent = line[: len(line) - len(line.lstrip())]
    inner = line[opening + 1 : -1]
    if len(indent) + 4 + len(inner) <= limit:
        return f"{line[: opening + 1]}\n{indent}    {inner}\n{indent})"
    parts, depth, start = [], 0, 0
    for position, char in enumerate(inner):
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(inner[start:position].strip())
            start = position + 1
    parts.append(inner[start:].strip())
    parts = [part for part in parts if part]  # a one-element tuple's trailing comma
    return "\n".join([line[: opening + 1], *(f"{indent}    {part}," for part in parts), f"{indent})"])


def indent_doc(text: str) -> str:
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    lines = text.splitlines()
    if len(lines) == 1:
        return f'    """{lines[0]}"""'
    body = "\n".join(f"    {line}" if line else "" for line in lines[1:])
    return f'    """{lines[0]}\n{body}\n    """'


# -- fixed text -----------------------------------------------------------------------------------

OUT_SIZE = '''
def out_size(size, k, s=1, p=0, d=1):
    """The size along one axis after a window of k, stride s, padding p and dilation d (PyTorch's rule)."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1
'''

JOIN = '''
class Join(nn.ModuleDict):
    """Branches that each run on the same input, named b0, b1, ..."""

    def __init__(self, *branches):
        super().__init__({f"b{i}": branch for i, branch in enumerate(branches)})
'''

CONCAT = '''
class Concat(Join):
    """Concatenates the branches' outputs on channels."""

    def forward(self, x):
        return torch.cat([branch(x) for branch in self.values()], 1)
'''

ADD = '''
class Add(Join):
    """Sums the branches' outputs (a residual connection)."""

    def forward(self, x):
        outputs = [branch(x) for branch in self.values()]
        total = outputs[0]
        for y in outputs[1:]:
            total = total + y
        return total
'''
