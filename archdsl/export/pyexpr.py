"""Python expressions for generated source: text with its precedence, its free names and, when known, its value.

The Python export writes archdsl expressions (``64 // ratio``, ``in.c``) and shape arithmetic
(``channels * height * width``) as Python source. Building them through these functions puts
parentheses only where Python needs them and folds what is known (``2 * 3`` is written ``6``,
``h + 0`` is written ``h``), so the generated file reads as if a person had written it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Python's precedence, loosest first (the language reference's table, the rows archdsl can reach).
CONDITIONAL, OR, AND, NOT, COMPARE, SUM, PRODUCT, UNARY, ATOM = range(9)

_BINARY = {
    "or": OR, "and": AND,
    "==": COMPARE, "!=": COMPARE, "<": COMPARE, "<=": COMPARE, ">": COMPARE, ">=": COMPARE,
    "+": SUM, "-": SUM,
    "*": PRODUCT, "/": PRODUCT, "//": PRODUCT, "%": PRODUCT,
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

    @property
    def known(self) -> bool:
        return self.value is not _UNKNOWN

    def is_(self, value: object) -> bool:
        """True when this expression is known to equal ``value`` (of the same type: ``True`` is not ``1``)."""
        return self.known and type(self.value) is type(value) and self.value == value

    def __str__(self) -> str:
        return self.src


def const(value: bool | float) -> Py:
    src = repr(value) if not isinstance(value, float) or math.isfinite(value) else f'float("{value}")'
    return Py(src, UNARY if src.startswith("-") else ATOM, value=value)


def name(identifier: str) -> Py:
    return Py(identifier, ATOM, frozenset((identifier,)))


def attribute(path: str, root: str) -> Py:
    """``self.vgg_0.out_shape``: an atom whose only free name is ``root``."""
    return Py(path, ATOM, frozenset((root,)))


def index(base: Py, position: int) -> Py:
    if isinstance(base.value, tuple):
        return const(base.value[position])
    return Py(f"{_wrap(base, ATOM)}[{position}]", ATOM, base.names)


def binary(op: str, left: Py, right: Py) -> Py:
    """``left op right``, folded when both sides are known and simplified around 0 and 1."""
    if left.known and right.known and op in _FOLDS:
        try:
            return const(_FOLDS[op](left.value, right.value))
        except (ZeroDivisionError, OverflowError, TypeError):
            pass
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
    return Py(f"{left_src} {op} {right_src}", prec, left.names | right.names, negated=negated)


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
            return Py(operand.negated, COMPARE, operand.names, negated=operand.src)
        return Py(f"not {_wrap(operand, NOT)}", NOT, operand.names)
    if operand.known and not isinstance(operand.value, bool):
        return const(-operand.value)
    return Py(f"-{_wrap(operand, UNARY)}", UNARY, operand.names)


def call(function: str, args: list[Py], known=None) -> Py:
    """``function(args)``; ``known`` computes the value when every argument is known."""
    if known is not None and all(a.known for a in args):
        return const(known(*(a.value for a in args)))
    names = frozenset().union(*(a.names for a in args)) if args else frozenset()
    return Py(f"{function}({', '.join(a.src for a in args)})", ATOM, names)


def conditional(test: Py, then: Py, otherwise: Py) -> Py:
    """``then if test else otherwise``, or one side when the test or the sides make it so."""
    if test.known:
        return then if test.value else otherwise
    if then.src == otherwise.src:
        return then
    src = f"{_wrap(then, OR)} if {_wrap(test, OR)} else {_wrap(otherwise, CONDITIONAL)}"
    return Py(src, CONDITIONAL, test.names | then.names | otherwise.names)


def tuple_of(items: list[Py]) -> Py:
    if all(item.known for item in items):
        return Py(_tuple_src(items), ATOM, value=tuple(item.value for item in items))
    names = frozenset().union(*(item.names for item in items)) if items else frozenset()
    return Py(_tuple_src(items), ATOM, names)


def _tuple_src(items: list[Py]) -> str:
    inner = ", ".join(item.src for item in items)
    return f"({inner},)" if len(items) == 1 else f"({inner})"


def _wrap(expr: Py, at_least: int) -> str:
    return expr.src if expr.prec >= at_least else f"({expr.src})"


def _is_zero(expr: Py) -> bool:
    return expr.known and not isinstance(expr.value, bool) and expr.value == 0


def _is_one(expr: Py) -> bool:
    return expr.known and not isinstance(expr.value, bool) and expr.value == 1


_FOLDS = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "//": lambda a, b: a // b,
    "%": lambda a, b: a % b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
