"""Python expressions for generated source: text with its precedence, its free names and, when known, its value.

The Python export writes archdsl expressions (``64 // ratio``, ``in.c``) and shape arithmetic
(``channels * height * width``) as Python source. Building them through these functions puts
parentheses only where Python needs them and folds what is known (``2 * 3`` is written ``6``,
``h + 0`` is written ``h``), so the generated file reads as if a person had written it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from archdsl import values
from archdsl.errors import ArchError

# Python's precedence, loosest first (the language reference's table, the rows archdsl can reach).
CONDITIONAL, OR, AND, NOT, COMPARE, SUM, PRODUCT, UNARY, POWER, ATOM = range(10)

_BINARY = {
    "or": OR, "and": AND,
    "==": COMPARE, "!=": COMPARE, "<": COMPARE, "<=": COMPARE, ">": COMPARE, ">=": COMPARE,
    "+": SUM, "-": SUM,
    "*": PRODUCT, "/": PRODUCT, "//": PRODUCT, "%": PRODUCT,
    "**": POWER,
}  # fmt: skip

_NEGATED = {"==": "!=", "!=": "==", "<": ">=", ">=": "<", ">": "<=", "<=": ">"}

_UNKNOWN = object()


@dataclass(frozen=True)
class Py:
    """One Python expression: ``src`` binds as tightly as ``prec``; ``value`` is its value when known."""

    src: str
    prec: int
    names: frozenset[str] = frozenset()
    value: object = _UNKNOWN
    negated: str | None = None  # for a comparison, the same comparison negated (``not a < b`` is ``a >= b``)
    # A count written ``base + k`` (k a whole number): ``count_sum`` folds the k of its operands together.
    offset: tuple[Py, int] | None = None
    lazy: bool = False  # a ``range(...)``, which Python compares unequal to the list of its items
    # How deep the lists it may hold nest: 0 for a number (made by arithmetic, a comparison, a function of
    # numbers), 1 for a list of numbers, ...; None where that is not known.
    depth: int | None = None

    @property
    def number(self) -> bool:
        """True when this is a number or a boolean, never a list."""
        return self.depth == 0

    @property
    def known(self) -> bool:
        return self.value is not _UNKNOWN

    def is_(self, value: object) -> bool:
        """True when this expression is known to equal ``value`` (of the same type: ``True`` is not ``1``)."""
        return self.known and type(self.value) is type(value) and self.value == value

    def __str__(self) -> str:
        return self.src


def const(value: bool | float | str) -> Py:
    if isinstance(value, str):  # the export's own settings (approximate="tanh"), quoted as ruff quotes them
        return Py(f'"{value}"', ATOM, value=value, depth=0)
    src = repr(value) if not isinstance(value, float) or math.isfinite(value) else f'float("{value}")'
    return Py(src, UNARY if src.startswith("-") else ATOM, value=value, depth=nesting(value))


def nesting(value: object) -> int:
    """How deep the lists of ``value`` nest: 0 for a number, 1 for ``(1, 7)``, 2 for ``((1, 16), (6, 24))``."""
    if not isinstance(value, tuple):
        return 0
    return 1 + max((nesting(item) for item in value), default=0)


def name(identifier: str, depth: int | None = None) -> Py:
    """A variable; ``depth`` as ``Py.depth``: 0 for one that only ever holds a number."""
    return Py(identifier, ATOM, frozenset((identifier,)), depth=depth)


def item_of(values: Py, identifier: str) -> Py:
    """The variable ``identifier`` of a loop over ``values``: an item, one list less deep."""
    return name(identifier, values.depth - 1 if values.depth else None)


def attribute(path: str, root: str) -> Py:
    """``self.vgg_0.out_shape``: a shape (a tuple of sizes) whose only free name is ``root``."""
    return Py(path, ATOM, frozenset((root,)), depth=1)


def index(base: Py, position: int | Py) -> Py:
    """``base[position]``: an item of a shape tuple or of a list, from the end when negative."""
    position = position if isinstance(position, Py) else const(position)
    folded = _fold(lambda items, at: values.index(items, at, None), base, position)
    if folded is not None:
        return folded
    depth = base.depth - 1 if base.depth else None
    return Py(f"{_wrap(base, ATOM)}[{position}]", ATOM, base.names | position.names, depth=depth)


def sliced(base: Py, start: Py | None, end: Py | None) -> Py:
    """``base[start:end]``: the items of a list from ``start`` up to ``end`` (a side left out is None)."""
    given = [side for side in (start, end) if side is not None]
    folded = _fold(lambda items, *sides: values.sliced(items, *_sides(start, end, sides), None), base, *given)
    if folded is not None:
        return folded
    names = base.names.union(*(side.names for side in given))
    text = f"{_wrap(base, ATOM)}[{start.src if start else ''}:{end.src if end else ''}]"
    return Py(text, ATOM, names, depth=base.depth)


def _sides(start: Py | None, end: Py | None, given: tuple) -> tuple:
    """The values of a slice's two sides from those of the sides given (None for a side left out)."""
    found = iter(given)
    return (next(found) if start is not None else None), (next(found) if end is not None else None)


def binary(op: str, left: Py, right: Py) -> Py:
    """``left op right``, folded when both sides are known and simplified around 0 and 1."""
    if op == "**":
        return _power(left, right)
    if op in _FOLDS:
        folded = _fold(lambda a, b: values.binary(op, a, b, None), left, right)
        if folded is not None:
            return folded
    if op == "+" and _is_zero(right) or op == "-" and _is_zero(right) or op == "*" and _is_one(right):
        return left
    if op == "+" and _is_zero(left) or op == "*" and _is_one(left):
        return right
    if op == "+" and right.known and isinstance(right.value, (int, float)) and right.value < 0:
        return binary("-", left, const(-right.value))
    prec = _BINARY[op]
    # Left-associative: the right operand needs parentheses at equal precedence, and comparisons
    # never chain (``(a < b) == c`` is not ``a < b == c``).
    left_src = _wrap(left, prec + 1 if prec == COMPARE else prec)
    right_src = _wrap(right, prec + 1)
    negated = f"{left_src} {_NEGATED[op]} {right_src}" if op in _NEGATED else None
    offset = None
    if op in ("+", "-") and _is_int(right):
        offset = (left, right.value if op == "+" else -right.value)
    return Py(f"{left_src} {op} {right_src}", prec, left.names | right.names, negated=negated, offset=offset,
              depth=0)


def count_sum(left: Py, right: Py, op: str = "+") -> Py:
    """``left + right`` (or ``-``) of whole numbers, their constants gathered last: ``(n + 1) + (k - 1)`` is
    ``n + k``, ``1 + i`` is ``i + 1``. For counts only (the numbers in a loop's module names): with decimals,
    the order of the sums would matter."""
    (a, x), (b, y) = _split(left), _split(right)
    if left.known and right.known or x == y == 0:
        return binary(op, left, right)
    constant = x + y if op == "+" else x - y
    if a is None or b is None:
        rest = a if b is None else b if op == "+" else unary("-", b)
    else:
        rest = binary(op, a, b)
    return binary("+", rest, const(constant))


def _split(expr: Py) -> tuple[Py | None, int]:
    """A count as its part that is not known and its constant: ``n + 1`` is (n, 1), ``3`` is (None, 3)."""
    if _is_int(expr):
        return None, expr.value
    return expr.offset if expr.offset is not None else (expr, 0)


def _power(left: Py, right: Py) -> Py:
    """``left ** right``: right-associative, binding tighter than a sign on its left (``-(a ** b)`` is ``-a ** b``)."""
    folded = _fold(lambda a, b: values.power(a, b, None), left, right)
    if folded is not None:
        return folded
    if _is_one(right):
        return left
    left_src, right_src = _wrap(left, ATOM), _wrap(right, UNARY)
    operator = "**" if _simple(left_src) and _simple(right_src) else " ** "  # ruff hugs simple operands: 2**i
    return Py(f"{left_src}{operator}{right_src}", POWER, left.names | right.names, depth=0)


def _simple(src: str) -> bool:
    """A name, a number or a dotted name, with or without a minus: what ruff writes ``**`` without spaces around."""
    src = src.removeprefix("-")
    try:
        float(src)
        return True
    except ValueError:
        return all(part.isidentifier() for part in src.split("."))


def logical(op: str, left: Py, right: Py) -> Py:
    """``left and right``, ``left or right``, read as truth values as archdsl reads them in an ``if``."""
    for known, other in ((left, right), (right, left)):
        if known.known:
            decided = not known.value if op == "and" else bool(known.value)
            return const(bool(known.value)) if decided else other
    return binary(op, left, right)


def unary(op: str, operand: Py) -> Py:
    if op == "+":
        return operand
    if op == "not":
        if operand.known:
            return const(not operand.value)
        if operand.negated is not None:
            return Py(operand.negated, COMPARE, operand.names, negated=operand.src, depth=0)
        return Py(f"not {_wrap(operand, NOT)}", NOT, operand.names, depth=0)
    if operand.known and isinstance(operand.value, (int, float)) and not isinstance(operand.value, bool):
        return const(-operand.value)
    return Py(f"-{_wrap(operand, UNARY)}", UNARY, operand.names, depth=0)


def call(function: str, args: list[Py], known=None, depth: int = 0) -> Py:
    """``function(args)``, giving a number (or lists ``depth`` deep); ``known`` computes the value when every
    argument is known."""
    if known is not None:
        folded = _fold(known, *args)
        if folded is not None:
            return folded
    names = frozenset().union(*(a.names for a in args)) if args else frozenset()
    return Py(f"{function}({', '.join(a.src for a in args)})", ATOM, names, depth=depth)


def function(name: str, args: list[Py]) -> Py:
    """A call of one of the language's functions (``values.FUNCTIONS``) as Python computes it: the builtins
    ``min``, ``max``, ``round``, ``pow``, ``len``, ``sum`` and ``range``, ``math.floor``, ``math.ceil``, ``math.log``,
    and ``make_divisible``, which the generated file defines. Folded where every argument is known, except
    ``range``, which keeps its text (``for i in range(4)``) beside its value."""
    folded = _fold(lambda *items: values.function(name, list(items), None), *args)
    if folded is not None and name != "range":
        return folded
    if name == "log" and len(args) == 2 and args[1].known and args[1].value in (2, 10):
        # CPython's math.log(x, 2) is math.log(x) / math.log(2) to the last bit; ruff would have math.log2(x),
        # which rounds otherwise.
        base = Py(f"math.log({args[1].src})", ATOM, value=math.log(args[1].value), depth=0)
        return binary("/", function("log", args[:1]), base)
    python = f"math.{name}" if name in ("floor", "ceil", "log") else name
    names = frozenset().union(*(a.names for a in args)) if args else frozenset()
    src = f"{python}({', '.join(a.src for a in args)})"
    if folded is not None:
        return Py(src, ATOM, value=folded.value, lazy=True, depth=1)
    return Py(src, ATOM, names, lazy=name == "range", depth=1 if name == "range" else 0)


def listed(expr: Py) -> Py:
    """``expr`` as a tuple where it may be a list that is not one, to compare as archdsl compares lists: a
    ``range(...)``, or a parameter given a Python list (``[4, 6] == (4, 6)`` is False)."""
    if expr.known and not expr.lazy or expr.number or _is_display(expr):
        return expr
    return Py(f"tuple({expr.src})", ATOM, expr.names, expr.value, depth=expr.depth)


def _is_display(expr: Py) -> bool:
    """Whether ``expr`` is written as a tuple, ``(a, b)``."""
    return expr.prec == ATOM and expr.src.startswith("(") and expr.src.endswith(")")


def conditional(test: Py, then: Py, otherwise: Py) -> Py:
    """``then if test else otherwise``, or one side when the test or the sides make it so."""
    if test.known:
        return then if test.value else otherwise
    if then.src == otherwise.src:
        return then
    src = f"{_wrap(then, OR)} if {_wrap(test, OR)} else {_wrap(otherwise, CONDITIONAL)}"
    return Py(src, CONDITIONAL, test.names | then.names | otherwise.names, depth=_deepest([then, otherwise]))


def tuple_for(item: Py, var: str, over: Py) -> Py:
    """``tuple(item for var in over)``: a list made item by item (the language's ``[item for var in over]``)."""
    names = (item.names - {var}) | over.names
    depth = None if item.depth is None else item.depth + 1
    return Py(f"tuple({item.src} for {var} in {_wrap(over, OR)})", ATOM, frozenset(names), depth=depth)


def tuple_of(items: list[Py]) -> Py:
    if all(item.known for item in items):
        return const(tuple(item.value for item in items))
    names = frozenset().union(*(item.names for item in items)) if items else frozenset()
    deepest = _deepest(items)
    return Py(_tuple_src(items), ATOM, names, depth=None if deepest is None else deepest + 1)


def _deepest(exprs: list[Py]) -> int | None:
    """The largest ``depth`` of ``exprs`` (0 for none), or None where one is not known."""
    depths = [expr.depth for expr in exprs]
    return None if None in depths else max(depths, default=0)


def _tuple_src(items: list[Py]) -> str:
    inner = ", ".join(item.src for item in items)
    return f"({inner},)" if len(items) == 1 else f"({inner})"


def _wrap(expr: Py, at_least: int) -> str:
    return expr.src if expr.prec >= at_least else f"({expr.src})"


def _fold(compute, *args: Py) -> Py | None:
    """The constant ``compute`` gives for the values of ``args``, or None when one is unknown or it fails: an
    arm of an ``if`` never taken may hold ``xs[5]`` of a shorter list, which is written, not evaluated."""
    if not all(a.known for a in args):
        return None
    try:
        value = compute(*(a.value for a in args))
    except (ArchError, ArithmeticError, TypeError, ValueError, IndexError):
        return None
    if isinstance(value, complex) or not values.within(value):
        return None
    return const(value)


def _is_int(expr: Py) -> bool:
    return expr.known and type(expr.value) is int


def _is_zero(expr: Py) -> bool:
    return expr.known and not isinstance(expr.value, bool) and expr.value == 0


def _is_one(expr: Py) -> bool:
    return expr.known and not isinstance(expr.value, bool) and expr.value == 1


# The operators folded where both sides are known, as archdsl computes them (``values.binary``).
_FOLDS = {"+", "-", "*", "/", "//", "%", "==", "!=", "<", "<=", ">", ">="}
