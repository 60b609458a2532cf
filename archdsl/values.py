"""The values of expressions and every operator on them.

A value is a whole number (``int``), a decimal (``float``), a symbolic size (``Sym``: ``H`` of an input
``[1, H, W]`` and what is computed from it) or a boolean. Each operator is defined here for every pair
of kinds, or refused with an ArchError at the expression that names what it met; ``resolve`` evaluates
expressions with these and nothing else:

    1 + 2.5 -> 3.5      in.h // 2 -> floor(H / 2)      in.h == in.h -> true      in.h * 1.5 -> error
    true + 1 -> error   in.h > 0 -> true (sizes are at least 1)      in.h > 3 -> error (it depends on H)

Every number stays within ``MAGNITUDE`` in absolute value (a symbolic one: each coefficient, and it has
at most ``MAX_TERMS`` terms), checked where values are made: literals, parameters, results. So sizes,
counts and messages never hold an integer too large to compute with or to print.
"""

from __future__ import annotations

import math
import operator
import re
from typing import NoReturn

from archdsl.errors import LimitError, ResolveError
from archdsl.source import Span
from archdsl.symbolic import Sym, SymbolicError

Value = bool | int | float | Sym | tuple  # a tuple is a list of values: [3, 4, 6, 3], a window (1, 7)

# 2**62: far beyond any size, count or setting of a network (a tensor of 2**62 values would not fit in
# any machine), yet products of a few such numbers are still quick to compute and to print.
MAGNITUDE = 2**62
# Terms of a symbolic value: a size has at most eight (flatten of C×H×W, each ``atom + b``).
MAX_TERMS = 64
# Digits of a literal's whole part: more than MAGNITUDE has (19), fewer than Python converts (4,300).
MAX_DIGITS = 30

SYMBOLIC_HINT = "this depends on the symbolic input size; give a concrete one (--input 1x96x96)"
BOOLEAN_HINT = "true and false are switches (bias=false) and the values of tests (if ... then ... else ...), not numbers"

ARITHMETIC = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
              "//": operator.floordiv, "%": operator.mod}
COMPARISONS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
               ">": operator.gt, ">=": operator.ge}
FUNCTIONS = ("min", "max")


def kind(value: Value) -> str:
    """What a value is, in words: ``boolean``, ``whole number``, ``decimal``, ``symbolic size``."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, tuple):
        return "list"
    if isinstance(value, int):
        return "whole number"
    return "decimal" if isinstance(value, float) else "symbolic size"


def show(value: Value) -> str:
    """A value as a spec writes it: ``true``, ``32.0`` (not a whole number here), ``0.5``, ``floor(H / 2)``;
    a whole number too long to print quickly by its length."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value) if value.is_integer() else f"{value:g}"
    if isinstance(value, int) and value.bit_length() > 256:
        return f"a number of about {int(value.bit_length() * math.log10(2)):,} digits"
    return str(value)


def within(value: Value) -> bool:
    """Whether ``value`` lies within ``MAGNITUDE``; a symbolic one: each coefficient, and each offset and
    divisor of its atoms (``floor((H + a) / m)``), in at most ``MAX_TERMS`` terms."""
    if isinstance(value, tuple):
        return all(within(v) for v in value)
    if isinstance(value, Sym):
        numbers = [n for mono, coeff in value.terms.items() for n in (coeff, *(x for _, a, m in mono for x in (a, m)))]
        return len(value.terms) <= MAX_TERMS and all(abs(n) <= MAGNITUDE for n in numbers)
    return isinstance(value, bool) or abs(value) <= MAGNITUDE  # False for inf and nan too


def bounded(value: Value, span: Span | None) -> Value:
    """``value`` itself, if it is ``within`` the bound; else a LimitError at ``span``."""
    if not within(value):
        _too_large(value if not isinstance(value, Sym) or len(value.terms) <= MAX_TERMS
                   else f"a symbolic value of {len(value.terms):,} terms", span)
    return value


def literal(text: str, span: Span | None = None, *, bounded: bool = True) -> int | float:
    """The number a literal spells (``64``, ``0.5``, ``1e-3``). A whole part longer than ``MAX_DIGITS`` is
    refused before Python converts it (it converts 4,300 digits at most); with ``bounded`` (the default) a value
    past ±2**62 is refused too. The parser passes ``bounded=False``: ``fmt`` prints a large literal as written,
    and the resolver bounds every value it uses.

    >>> literal("1e3")
    1000.0
    """
    whole = re.match(r"0*(\d*)", text).group(1)
    if len(whole) > MAX_DIGITS:
        _too_large(f"{whole[:12]}... ({len(whole):,} digits)", span)
    value = float(text) if any(c in text for c in ".eE") else int(whole or "0")
    if bounded and not within(value):
        _too_large(text, span)
    return value


def _too_large(shown: Value | str, span: Span | None) -> NoReturn:
    raise LimitError(f"{shown if isinstance(shown, str) else show(shown)} is too large: numbers in a spec lie within "
                     f"±2**62 ({MAGNITUDE:,})", span, hint="no size, count or setting of a network comes near it")


def binary(op: str, left: Value, right: Value, span: Span) -> Value:
    """``left op right`` for arithmetic and comparisons (``and`` and ``or`` short-circuit in ``resolve``).

    >>> binary("//", Sym.symbol("H"), 2, span)   # floor(H / 2)          # doctest: +SKIP
    """
    if op in COMPARISONS:
        return _compare(op, left, right, span)
    _numbers(f"'{op}'", (left, right), span)
    if op in ("/", "//", "%") and not isinstance(right, Sym) and right == 0:
        raise ResolveError("division by zero", span)
    try:
        return bounded(ARITHMETIC[op](left, right), span)
    except SymbolicError as err:
        raise ResolveError(str(err), span, hint=SYMBOLIC_HINT) from None


def unary(op: str, value: Value, span: Span) -> Value:
    """``-x``, ``+x`` and ``not x``."""
    if op == "not":
        return not truth(value, span)
    _numbers(f"'{op}'", (value,), span)
    return -value if op == "-" else value


def truth(value: Value, span: Span) -> bool:
    """A value as the test of an ``if``: a boolean, or a number that is not zero."""
    if not isinstance(value, Sym):
        return bool(value)
    if value.sign() is None:
        raise ResolveError(f"whether {value} is zero depends on the input size", span, hint=SYMBOLIC_HINT)
    return True


def function(name: str, args: list[Value], span: Span) -> Value:
    """``min(...)`` and ``max(...)`` of numbers; symbolic ones where their order is the same at every input size."""
    if name not in FUNCTIONS:
        raise ResolveError(f"unknown function '{name}'", span, hint="expressions may call min(...) and max(...)")
    _numbers(f"{name}(...)", args, span)
    best = args[0]
    for value in args[1:]:
        order = _order(best, value, f"{name}(...)", span)
        if order is None:
            raise ResolveError(f"{name}({show(best)}, {show(value)}) depends on the input size", span, hint=SYMBOLIC_HINT)
        if order < 0 if name == "max" else order > 0:
            best = value
    return best


def _numbers(what: str, values, span: Span) -> None:
    for value in values:
        if isinstance(value, bool):
            raise ResolveError(f"{what} takes numbers, not the boolean {show(value)}", span, hint=BOOLEAN_HINT)


def _compare(op: str, left: Value, right: Value, span: Span) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        if isinstance(left, bool) and isinstance(right, bool) and op in ("==", "!="):
            return COMPARISONS[op](left, right)
        verb = "compare" if op in ("==", "!=") else "order"
        raise ResolveError(f"'{op}' cannot {verb} the {kind(left)} {show(left)} and the {kind(right)} {show(right)}",
                           span, hint=BOOLEAN_HINT)
    order = _order(left, right, f"'{op}'", span)
    if order is None:
        raise ResolveError(f"whether {show(left)} {op} {show(right)} depends on the input size", span, hint=SYMBOLIC_HINT)
    return COMPARISONS[op](order, 0)


def _order(left: Value, right: Value, what: str, span: Span) -> int | None:
    """Below, at or above zero as ``left`` is below, equal to or above ``right``; None where that depends
    on the input size. Symbolic sizes compare by their difference: ``H + 1 > H``, and ``H > 0`` because
    a size is at least 1."""
    if not isinstance(left, Sym) and not isinstance(right, Sym):
        return (left > right) - (left < right)
    for value in (left, right):
        if isinstance(value, float):
            symbolic = left if isinstance(left, Sym) else right
            raise ResolveError(f"{what} cannot compare the symbolic size {symbolic} with the decimal {show(value)}", span,
                               hint="a size is a whole number: compare it with one (in.h > 2, not in.h > 2.5)")
    difference = left - right
    return difference if not isinstance(difference, Sym) else difference.sign()
