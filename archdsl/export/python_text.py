"""The last step of the Python export: constructor lines made final, long lines broken, docstrings indented.

Size assignments are written once a class is complete (``Assign``), so that sizes nothing reads are
left out and the file passes a linter's unused-variable checks; the helpers every file may need
(``out_size``, ``pair``, ``make_divisible``, ``Concat``, ``Add``, ``Mul``) are fixed text.
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
    """A statement longer than ``limit`` broken as ruff formats it, for the statements the export writes. At
    its last brackets (a call, a tuple, a ``def``'s parameters): a call's or a ``def``'s contents on one
    indented line where they fit, else one per line with a trailing comma, as a tuple's always are; each of
    those broken again where it is still too long, a sum before its ``+`` and ``-``."""
    if len(line) <= limit:
        return line
    indent = line[: len(line) - len(line.lstrip())]
    trailer = line[-1] if line[-1] in ":," else ""
    core = line[: len(line) - len(trailer)]
    opening = _opening(core) if core.endswith(")") else None
    if opening is None:
        terms = _split_at(core.lstrip(), " + ", " - ")
        if trailer != "," or len(terms) < 2:
            return line
        lines = [terms[0], *(f"{op}{term}" for op, term in zip(_operators(core.lstrip(), terms), terms[1:]))]
        return "\n".join(f"{indent}{text}" for text in lines) + trailer
    inner = core[opening + 1 : -1]
    head, tail = core[: opening + 1], f"{indent}){trailer}"
    parts = _split_at(inner, ",")
    is_tuple = opening == 0 or not (core[opening - 1].isidentifier() or core[opening - 1] in ")]")
    if len(indent) + 4 + len(inner) <= limit and not (is_tuple and len(parts) > 1):
        return f"{head}\n{indent}    {inner}\n{tail}"
    parts = [part for part in parts if part]  # a one-element tuple's trailing comma
    return "\n".join([head, *(wrap_line(f"{indent}    {part},", limit) for part in parts), tail])


def _opening(text: str) -> int | None:
    """The position of the bracket that the last character of ``text``, a ``)``, closes."""
    depth = 0
    for position in range(len(text) - 1, -1, -1):
        depth += {")": 1, "]": 1, "(": -1, "[": -1}.get(text[position], 0) if not _quoted(text, position) else 0
        if depth == 0:
            return position
    return None


def _quoted(text: str, position: int) -> bool:
    """Whether ``text[position]`` lies inside a string (the export's strings hold no quotes of their own)."""
    return text.count('"', 0, position) % 2 == 1


def _split_at(text: str, *separators: str) -> list[str]:
    """``text`` split at the ``separators`` outside brackets and strings, each piece stripped."""
    pieces, depth, start, position = [], 0, 0, 0
    while position < len(text):
        char = text[position]
        if not _quoted(text, position):
            depth += {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}.get(char, 0)
            found = next((sep for sep in separators if depth == 0 and text.startswith(sep, position)), None)
            if found is not None:
                pieces.append(text[start:position].strip())
                start = position = position + len(found)
                continue
        position += 1
    pieces.append(text[start:].strip())
    return pieces


def _operators(text: str, terms: list[str]) -> list[str]:
    """The operators (``"+ "`` or ``"- "``) between the ``terms`` of a sum ``text``."""
    found, position = [], len(terms[0])
    for term in terms[1:]:
        at = text.index(term, position)
        found.append(text[position:at].strip() + " ")
        position = at + len(term)
    return found


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

PAIR = '''
def pair(value):
    """A window argument as (height, width): a whole number is the same on both axes."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)
'''

MAKE_DIVISIBLE = '''
def make_divisible(v, d, least=None):
    """v rounded to a multiple of d, at least least (d by default) and not below 90% of v: torchvision's rule."""
    least = d if least is None else least
    rounded = max(least, int(v + d / 2) // d * d)
    return rounded + d if rounded < 0.9 * v else rounded
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

MUL = '''
class Mul(Join):
    """Multiplies the branches' outputs elementwise, a (C, 1, 1) gate broadcast over (C, H, W)."""

    def forward(self, x):
        outputs = [branch(x) for branch in self.values()]
        product = outputs[0]
        for y in outputs[1:]:
            product = product * y
        return product
'''

# The helper functions, defined in a file whose classes call them (in this order).
HELPER_FUNCTIONS = {"out_size": OUT_SIZE, "pair": PAIR, "make_divisible": MAKE_DIVISIBLE}
# Each join's class (on the base class JOIN) and its text.
JOIN_CLASSES = {"concat": ("Concat", CONCAT), "add": ("Add", ADD), "mul": ("Mul", MUL)}
