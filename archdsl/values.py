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

import difflib
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
              "//": operator.floordiv, "%": operator.mod, "**": operator.pow}
COMPARISONS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
               ">": operator.gt, ">=": operator.ge}
# Items of one list: range(n) and list literals (a list of layers' worth of settings has dozens).
MAX_LIST = 10_000
# The functions expressions may call, with what each takes (for the hint of a misspelt one).
FUNCTIONS = {
    "min": "min(a, b, ...) or min(list)",
    "max": "max(a, b, ...) or max(list)",
    "round": "round(x): the nearest whole number (halves to even, as Python and torchvision round)",
    "floor": "floor(x)",
    "ceil": "ceil(x)",
    "log": "log(x) (natural) or log(x, base)",
    "pow": "pow(x, y), as x ** y",
    "len": "len(list)",
    "sum": "sum(list)",
    "range": "range(n), range(a, b) or range(a, b, step): a list of whole numbers",
    "make_divisible": "make_divisible(v, d) or make_divisible(v, d, least): v rounded to a multiple of d, "
                      "at least least (default d) and not below 90% of v (torchvision's _make_divisible)",
}


def unknown_function(name: str, span: Span | None) -> ResolveError:
    """The error for a call of a function that expressions do not have."""
    close = difflib.get_close_matches(name, FUNCTIONS, n=1, cutoff=0.6)
    return ResolveError(f"unknown function '{name}'", span,
                        hint=f"did you mean '{close[0]}'? {FUNCTIONS[close[0]]}" if close
                        else "expressions may call " + ", ".join(f"{f}(...)" for f in FUNCTIONS))


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
    if op == "**":
        return power(left, right, span)
    try:
        return bounded(ARITHMETIC[op](left, right), span)
    except SymbolicError as err:
        raise ResolveError(str(err), span, hint=SYMBOLIC_HINT) from None


def power(base: Value, exponent: Value, span: Span) -> Value:
    """``base ** exponent`` of numbers, refused before it is computed when it would pass the bound."""
    for value in (base, exponent):
        if isinstance(value, Sym):
            raise ResolveError(f"'**' of the symbolic size {value}", span, hint=SYMBOLIC_HINT)
    if base == 0 and exponent < 0:
        raise ResolveError("division by zero (0 raised to a negative power)", span)
    if base < 0 and isinstance(exponent, float) and not exponent.is_integer():
        raise ResolveError(f"{show(base)} ** {show(exponent)} is not a real number", span)
    if abs(base) > 1 and exponent > 0 and exponent * math.log2(abs(base)) > 63:
        _too_large(f"{show(base)} ** {show(exponent)}", span)
    return bounded(base ** exponent, span)


def unary(op: str, value: Value, span: Span) -> Value:
    """``-x``, ``+x`` and ``not x``."""
    if op == "not":
        return not truth(value, span)
    _numbers(f"'{op}'", (value,), span)
    return -value if op == "-" else value


def truth(value: Value, span: Span) -> bool:
    """A value as the test of an ``if``: a boolean, or a number that is not zero."""
    if isinstance(value, tuple):
        raise ResolveError(f"the list {show(value)} is not a test", span,
                           hint="compare its length instead: len(xs) > 0")
    if not isinstance(value, Sym):
        return bool(value)
    if value.sign() is None:
        raise ResolveError(f"whether {value} is zero depends on the input size", span, hint=SYMBOLIC_HINT)
    return True


def function(name: str, args: list[Value], span: Span) -> Value:
    """A call of one of ``FUNCTIONS``: ``min``/``max`` of numbers (symbolic ones where their order is the
    same at every input size), the rounding functions, ``log``, ``pow``, ``len``, ``sum``, ``range``,
    ``make_divisible``."""
    if name not in FUNCTIONS:
        raise unknown_function(name, span)
    if name in ("len", "sum") or (name in ("min", "max") and len(args) == 1 and isinstance(args[0], tuple)):
        _arity(name, args, 1, 1, span)
        items = _list(args[0], name, span)
        if name == "len":
            return len(items)
        if name == "sum":
            _numbers("sum(...)", items, span)
            return bounded(sum(items, 0), span)
        if not items:
            raise ResolveError(f"{name}() of an empty list", span)
        args = list(items)
    _numbers(f"{name}(...)", args, span)
    if name in ("min", "max"):
        return _extreme(name, args, span)
    if name in ("round", "floor", "ceil"):
        _arity(name, args, 1, 1, span)
        value = args[0]
        if isinstance(value, (int, Sym)):
            return value  # already whole
        return {"round": round, "floor": math.floor, "ceil": math.ceil}[name](value)
    _concrete(name, args, span)
    if name == "log":
        _arity(name, args, 1, 2, span)
        if args[0] <= 0 or (len(args) == 2 and (args[1] <= 0 or args[1] == 1)):
            raise ResolveError(f"log({', '.join(map(show, args))}) is not defined", span,
                               hint="log takes a positive number, and a positive base other than 1")
        return math.log(*args)
    if name == "pow":
        _arity(name, args, 2, 2, span)
        return power(args[0], args[1], span)
    if name == "range":
        _arity(name, args, 1, 3, span)
        for value in args:
            if not isinstance(value, int):
                raise ResolveError(f"range takes whole numbers, not {show(value)}", span)
        if len(args) == 3 and args[2] == 0:
            raise ResolveError("range(...) with a step of 0", span)
        numbers = range(*args)
        if len(numbers) > MAX_LIST:
            raise LimitError(f"range({', '.join(map(show, args))}) has {len(numbers):,} items, more than the limit "
                             f"of {MAX_LIST:,} of a list", span, hint="no network needs a list this long")
        return tuple(numbers)
    assert name == "make_divisible"
    _arity(name, args, 2, 3, span)
    value, divisor = args[0], args[1]
    least = args[2] if len(args) == 3 else divisor
    if not isinstance(divisor, int) or divisor <= 0:
        raise ResolveError(f"make_divisible's divisor must be a positive whole number, not {show(divisor)}", span)
    result = max(least, int(value + divisor / 2) // divisor * divisor)
    if result < 0.9 * value:
        result += divisor
    return bounded(result, span)


def index(items: Value, position: Value, span: Span) -> Value:
    """``items[position]``: counted from 0, from the end when negative, as in Python."""
    items = _list(items, "indexing", span)
    if isinstance(position, bool) or not isinstance(position, int):
        raise ResolveError(f"a list index must be a whole number, not {show(position)}", span)
    if not -len(items) <= position < len(items):
        raise ResolveError(f"index {position} is out of range: the list {_shown_list(items)} has "
                           f"{len(items)} item{'s' if len(items) != 1 else ''}", span,
                           hint=f"indices run from 0 to {len(items) - 1}" if items else "the list is empty")
    return items[position]


def sliced(items: Value, start: Value | None, end: Value | None, span: Span) -> tuple:
    """``items[start:end]``, as Python slices it: a side left out (None) is the list's start or end, a negative
    one counts from the end, and sides past the ends stop there."""
    items = _list(items, "slicing", span)
    for side in (start, end):
        if side is not None and (isinstance(side, bool) or not isinstance(side, int)):
            raise ResolveError(f"a slice's ends must be whole numbers, not {show(side)}", span)
    return items[start:end]


def _list(value: Value, what: str, span: Span) -> tuple:
    if not isinstance(value, tuple):
        raise ResolveError(f"{what} takes a list, not the {kind(value)} {show(value)}", span)
    return value


def _shown_list(items: tuple) -> str:
    text = show(items)
    return text if len(text) <= 60 else text[:57] + "...]"


def _arity(name: str, args: list, least: int, most: int, span: Span) -> None:
    if not least <= len(args) <= most:
        raise ResolveError(f"{name}(...) takes {least if least == most else f'{least} to {most}'} argument"
                           f"{'s' if most != 1 else ''}, not {len(args)}", span, hint=f"usage: {FUNCTIONS[name]}")


def _concrete(name: str, args: list, span: Span) -> None:
    for value in args:
        if isinstance(value, Sym):
            raise ResolveError(f"{name}(...) of the symbolic size {value}", span, hint=SYMBOLIC_HINT)


def _extreme(name: str, args: list, span: Span) -> Value:
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
        if isinstance(value, tuple):
            raise ResolveError(f"{what} takes numbers, not the list {_shown_list(value)}", span,
                               hint="take an item (xs[i]), or loop over the list: for x in xs ...")


def _compare(op: str, left: Value, right: Value, span: Span) -> bool:
    if isinstance(left, tuple) or isinstance(right, tuple):
        if isinstance(left, tuple) and isinstance(right, tuple) and op in ("==", "!="):
            return COMPARISONS[op](left, right)
        raise ResolveError(f"'{op}' cannot compare the {kind(left)} {show(left)} and the {kind(right)} {show(right)}",
                           span, hint="lists compare with == and != only, with lists")
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
