"""Exact symbolic sizes: polynomials over floor atoms ``floor((H + a) / m)``.

A spatial size after any chain of convolutions and pools stays in the normal form
``floor((H + a) / m) + b`` with ``0 <= a < m``, because for integers m, n > 0

    floor((floor(y / m) + b) / n) = floor((y + b·m) / (m·n)).

So equal sizes have equal forms, and ``concat``/``add`` compare shapes exactly. Flattening multiplies
sizes and the counts of parameters and MACs that follow are polynomials in the atoms. Arithmetic
with only constants returns plain ``int``, so concrete inference never sees a ``Sym``.

    network g(classes = 10) : [1, H, W] = conv 96 k=11 s=4 p=1; ...   # H: floor((H + 3) / 4) - 2
"""

from __future__ import annotations

import math
from typing import Union

# An atom is (symbol, a, m): floor((symbol + a) / m), with 0 <= a < m; m == 1 is the symbol itself.
Atom = tuple[str, int, int]
Monomial = tuple[Atom, ...]


class SymbolicError(ArithmeticError):
    """An operation whose result has no exact form here (``(H + W) // 2``, ``H / 2``, ``H < 5``)."""


class Sym:
    """An integer polynomial over floor atoms; immutable, hashable, compared by normal form."""

    __slots__ = ("terms",)

    def __init__(self, terms: dict[Monomial, int]) -> None:
        object.__setattr__(self, "terms", {m: c for m, c in terms.items() if c})

    def __setattr__(self, name, value):
        raise AttributeError("Sym is immutable")

    @staticmethod
    def symbol(name: str) -> Sym:
        return Sym({((name, 0, 1),): 1})

    # -- arithmetic --------------------------------------------------------------------------------

    def __add__(self, other) -> Dim:
        _whole(self, "+", other)
        terms = dict(self.terms)
        for mono, coeff in _terms(other).items():
            terms[mono] = terms.get(mono, 0) + coeff
        return _result(terms)

    __radd__ = __add__

    def __neg__(self) -> Dim:
        return _result({m: -c for m, c in self.terms.items()})

    def __sub__(self, other) -> Dim:
        _whole(self, "-", other)
        return self + (-other)

    def __rsub__(self, other) -> Dim:
        _whole(self, "-", other)
        return (-self) + other

    def __mul__(self, other) -> Dim:
        _whole(self, "*", other)
        terms: dict[Monomial, int] = {}
        for m1, c1 in self.terms.items():
            for m2, c2 in _terms(other).items():
                mono = tuple(sorted(m1 + m2))
                terms[mono] = terms.get(mono, 0) + c1 * c2
        return _result(terms)

    __rmul__ = __mul__

    def __floordiv__(self, other) -> Dim:
        _whole(self, "//", other)
        if isinstance(other, Sym):
            _by_symbol(other)
        if other <= 0:
            raise SymbolicError(f"cannot divide the symbolic size {self} by {other}: only by a positive whole number")
        if other == 1:
            return self
        constant = self.terms.get((), 0)
        rest = {m: c for m, c in self.terms.items() if m}
        if all(c % other == 0 for c in rest.values()):
            # floor((k·other·x + c) / other) = k·x + floor(c / other) for integer x.
            return _result({**{m: c // other for m, c in rest.items()}, (): constant // other})
        if len(rest) == 1:
            ((mono, coeff),) = rest.items()
            if coeff == 1 and len(mono) == 1:
                name, a, m = mono[0]
                return _floor_atom(name, a + constant * m, m * other)
        raise SymbolicError(f"the symbolic size {self} divided by {other} has no exact form: archdsl divides a size "
                            "of one input axis, floor((H + a) / m) + b, or one whose every coefficient divides")

    def __rfloordiv__(self, other):
        _by_symbol(self)

    __rmod__ = __rfloordiv__

    def __truediv__(self, other):
        raise SymbolicError(f"'/' gives a decimal, and the symbolic size {self} has no exact one; divide with //")

    __rtruediv__ = __truediv__

    def __mod__(self, other):
        return self - (self // other) * other

    def _undecided(self, other):
        raise SymbolicError(f"the order of {self} and {other} depends on the input size")

    __lt__ = __le__ = __gt__ = __ge__ = _undecided

    def __bool__(self) -> bool:
        raise SymbolicError(f"{self} depends on the input size")

    def __eq__(self, other) -> bool:
        return isinstance(other, Sym) and self.terms == other.terms

    def __hash__(self) -> int:
        return hash(frozenset(self.terms.items()))

    # -- use ---------------------------------------------------------------------------------------

    def sign(self) -> int | None:
        """1 or -1 where the value has that sign at every input size, else None.

        Every symbol is a size, at least 1, so an atom ``floor((S + a) / m)`` is at least
        ``floor((1 + a) / m)``: with coefficients all of one sign, the constant and those smallest
        atoms bound the value on one side (``H > 0``, ``3 - 2·floor((H + 1) / 2) < 2``).
        """
        signs = {c > 0 for mono, c in self.terms.items() if mono}
        if len(signs) != 1:
            return None
        bound = sum(coeff * math.prod((1 + a) // m for _, a, m in mono) for mono, coeff in self.terms.items())
        positive = signs.pop()
        if positive and bound >= 1:
            return 1
        if not positive and bound <= -1:
            return -1
        return None

    def symbols(self) -> set[str]:
        return {atom[0] for mono in self.terms for atom in mono}

    def evaluate(self, values: dict[str, int]) -> int:
        """The integer at concrete values of the symbols."""
        total = 0
        for mono, coeff in self.terms.items():
            product = coeff
            for name, a, m in mono:
                product *= (values[name] + a) // m
            total += product
        return total

    def __str__(self) -> str:
        return _factored(self) or self._expanded()

    def _expanded(self) -> str:
        parts = []
        for mono, coeff in sorted(self.terms.items(), key=lambda t: (-len(t[0]), t[0])):
            factors = [_show_atom(atom) for atom in mono]
            if not factors:
                parts.append(str(coeff))
            elif coeff == 1:
                parts.append("·".join(factors))
            elif coeff == -1:
                parts.append("-" + "·".join(factors))
            else:
                parts.append(f"{coeff}·" + "·".join(factors))
        text = " + ".join(parts)
        return text.replace("+ -", "- ")

    def __repr__(self) -> str:
        return f"Sym({self})"

    def __format__(self, spec: str) -> str:
        return str(self)

    @classmethod
    def __get_pydantic_core_schema__(cls, source, handler):
        from pydantic_core import core_schema

        return core_schema.is_instance_schema(cls, serialization=core_schema.plain_serializer_function_ser_schema(str))


Dim = Union[int, Sym]


def _whole(value: Sym, op: str, other) -> None:
    """Symbolic sizes combine with whole numbers and each other only: a decimal has no exact form."""
    if isinstance(other, bool) or not isinstance(other, (int, Sym)):
        raise SymbolicError(f"'{op}' of the symbolic size {value} and {other!r} has no exact form: "
                            "symbolic sizes combine with whole numbers only")


def _by_symbol(divisor: Sym):
    raise SymbolicError(f"cannot divide by the symbolic size {divisor}: '//' and '%' need a number on their right")


def _terms(value: Dim) -> dict[Monomial, int]:
    return value.terms if isinstance(value, Sym) else {(): value}


def _result(terms: dict[Monomial, int]) -> Dim:
    terms = {m: c for m, c in terms.items() if c}
    if not terms:
        return 0
    if set(terms) == {()}:
        return terms[()]
    return Sym(terms)


def _floor_atom(name: str, a: int, m: int) -> Dim:
    """floor((name + a) / m) in normal form: the atom with 0 <= a < m, plus a constant."""
    q, r = divmod(a, m)
    return _result({((name, r, m),): 1, (): q})


def _factored(value: Sym) -> str | None:
    """``c·(A + a)·(B + b) + r`` for polynomials in two axes' atoms (how H and W sizes multiply after
    flatten), ``c·(A + a) + r`` for one; None when the polynomial has another form."""
    atoms = sorted({atom for mono in value.terms for atom in mono})
    if not 1 <= len(atoms) <= 2 or any(len(set(m)) != len(m) for m in value.terms):
        return None
    terms = value.terms
    if len(atoms) == 1:
        (a,) = atoms
        c = terms.get((a,), 0)
        return None if c == 0 else _join_terms(c, [(a, 0)], terms.get((), 0))
    a, b = atoms
    c = terms.get((a, b), 0)
    d, e, f = terms.get((a,), 0), terms.get((b,), 0), terms.get((), 0)
    if c == 0 or d % c or e % c:
        return None
    # c·A·B + d·A + e·B + f = c·(A + e/c)·(B + d/c) + (f - d·e/c)
    return _join_terms(c, [(a, e // c), (b, d // c)], f - d * e // c)


def _join_terms(coeff: int, factors: list[tuple[Atom, int]], rest: int) -> str:
    shown = []
    for atom, offset in factors:
        text = _show_atom(atom)
        if offset:
            text = f"({text} {'+' if offset > 0 else '-'} {abs(offset)})"
        shown.append(text)
    head = "·".join(shown)
    if coeff == -1:
        head = "-" + head
    elif coeff != 1:
        head = f"{coeff}·{head}"
    if rest:
        head += f" {'+' if rest > 0 else '-'} {abs(rest)}"
    return head


def _show_atom(atom: Atom) -> str:
    name, a, m = atom
    if m == 1:
        return name
    inner = f"{name} + {a}" if a else name
    return f"floor(({inner}) / {m})" if a else f"floor({name} / {m})"


def single_atom(value: Sym) -> Atom | None:
    """The one atom a spatial size depends on (sizes of one axis are ``atom + c``), else None."""
    atoms = {atom for mono in value.terms for atom in mono}
    return next(iter(atoms)) if len(atoms) == 1 else None


SEARCH_LIMIT = 1 << 40  # sizes searched for a minimum: beyond any image, and still exact in integer arithmetic


def smallest_satisfying(size: Sym, symbol: str, at_least: int, start: int = 1, limit: int = SEARCH_LIMIT) -> int | None:
    """The smallest value of ``symbol`` >= start at which ``size`` >= at_least.

    Spatial sizes are non-decreasing in their symbol, so a doubling search and bisection find it.
    """
    def ok(v: int) -> bool:
        return size.evaluate({symbol: v}) >= at_least

    high = max(start, 1)
    while not ok(high):
        high *= 2
        if high > limit:
            return None
    low = start - 1
    while high - low > 1:
        mid = (low + high) // 2
        if ok(mid):
            high = mid
        else:
            low = mid
    return high
