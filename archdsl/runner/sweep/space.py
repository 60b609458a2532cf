"""A sweep's design space: the choices of each parameter, read from the command line, and the configurations
drawn from them, as a grid or as seeded random samples.

    -p width=16,32,64          three values
    -p depth=1..4              the whole numbers 1 to 4
    -p depths=[1,1],[2,2]      two lists
    -p depths=[1..2,1|3]       lists that vary item by item: [1,1], [1,3], [2,1], [2,3]

At the top, ``,`` and ``|`` both separate choices; inside a list ``,`` separates the items and ``|`` an
item's choices, and ``A..B`` is every whole number from A to B. A value is what ``--param`` takes (a number,
``true``, ``false``, a list), so a configuration's parameters are ``--param`` values again.

Nothing is expanded: each parameter's choices count their values and give the k-th one, so a space of 2**40
configurations samples as fast as one of four. No torch here.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

from archdsl.errors import UsageError

# A grid beyond this is a mistake (a sweep of 100,000 trainings); --samples draws from spaces up to 2**62.
MAX_GRID = 100_000
MAX_SPACE = 2**62
MAX_ALTERNATIVES = 10_000  # one parameter's choices written out: pairwise checked for repeats

SYNTAX_HINT = ("choices are separated by ',' (inside a list by '|'), A..B is a range of whole numbers: "
               "-p width=16,32 -p depth=1..4 -p depths=[1,1],[2,2] -p depths=[1..2,1|3]")

_PUNCTUATION = ("[", "]", "(", ")", ",", "|", "..")

Value = bool | int | float | tuple["Value", ...]


@dataclass(frozen=True)
class One:
    """A single value: ``16``, ``0.5``, ``true``."""

    value: bool | int | float
    text: str

    @property
    def size(self) -> int:
        return 1

    def pick(self, index: int) -> Value:
        return self.value


@dataclass(frozen=True)
class Range:
    """``A..B``: the whole numbers from A to B."""

    low: int
    high: int
    text: str

    @property
    def size(self) -> int:
        return self.high - self.low + 1

    def pick(self, index: int) -> Value:
        return self.low + index


@dataclass(frozen=True)
class Either:
    """Alternatives (``16,32`` or ``1|3``): the values of the first, then of the second, ..."""

    options: tuple[Choices, ...]
    text: str

    @property
    def size(self) -> int:
        return sum(option.size for option in self.options)

    def pick(self, index: int) -> Value:
        for option in self.options:
            if index < option.size:
                return option.pick(index)
            index -= option.size
        raise IndexError(index)


@dataclass(frozen=True)
class ListOf:
    """A list whose items may vary (``[1..2,1|3]``): every combination, the last item varying fastest."""

    items: tuple[Choices, ...]
    text: str

    @property
    def size(self) -> int:
        return math.prod(item.size for item in self.items)

    def pick(self, index: int) -> Value:
        return tuple(_mixed_radix(index, self.items))


Choices = One | Range | Either | ListOf


@dataclass(frozen=True)
class Parameter:
    """One swept parameter: its name and choices, as given on the command line."""

    name: str
    choices: Choices
    given: str  # the option as typed: NAME=CHOICES

    @property
    def size(self) -> int:
        return self.choices.size


@dataclass(frozen=True)
class Space:
    """The product of the parameters' choices, the last parameter varying fastest (as itertools.product)."""

    parameters: tuple[Parameter, ...]

    @property
    def size(self) -> int:
        return math.prod(parameter.size for parameter in self.parameters)

    def configuration(self, index: int) -> dict[str, Value]:
        values = _mixed_radix(index, [parameter.choices for parameter in self.parameters])
        return {parameter.name: value for parameter, value in zip(self.parameters, values)}

    def indices(self, samples: int | None, seed: int) -> list[int]:
        """The configurations to train, by index: all of them in order (a grid), or ``samples`` distinct ones
        drawn uniformly with ``seed``, in the order drawn."""
        size = self.size
        if size > MAX_SPACE:
            raise UsageError(f"the design space has {size:.3g} configurations, more than 2**62",
                             hint="narrow the ranges")
        if samples is None:
            if size > MAX_GRID:
                raise UsageError(f"the grid has {size:,} configurations, more than {MAX_GRID:,}",
                                 hint="draw some of them with --samples N")
            return list(range(size))
        if samples < 1:
            raise UsageError(f"--samples must be at least 1, got {samples}")
        if samples > size:
            raise UsageError(f"--samples {samples} asks for more configurations than the design space has ({size:,})",
                             hint=f"pass --samples {size} or fewer, or drop --samples to train the whole grid")
        return random.Random(seed).sample(range(size), samples)

    def describe(self, samples: int | None) -> str:
        """``12 configurations (a grid of width x lr)``, ``32 configurations sampled from 96 (depths x lr)``."""
        varied = " x ".join(parameter.name.lstrip("-") for parameter in self.parameters if parameter.size > 1)
        if samples is None:
            return f"{self.size:,} configuration{'s' if self.size > 1 else ''}" + (f" (a grid of {varied})" if varied
                                                                                  else "")
        return f"{samples:,} configuration{'s' if samples > 1 else ''} sampled from {self.size:,} ({varied})"


def parse_parameter(item: str, option: str = "--param") -> Parameter:
    """``width=16,32`` to the parameter ``width`` with its two choices; ``option`` names it in errors."""
    name, sep, text = item.partition("=")
    name = name.strip()
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise UsageError(f"{option} takes NAME=CHOICES, not '{_clip(item)}'", hint=SYNTAX_HINT)
    return Parameter(name, parse_choices(text, f"{option} {_clip(item)}"), item)


def parse_choices(text: str, where: str, hint: str = SYNTAX_HINT) -> Choices:
    """The choices written in ``text``; ``where`` starts each error's message (``--param width=16,,32``)."""
    choices = _Reader(text, where, hint).read()
    _check_distinct(choices, where)
    return choices


def parse_numbers(text: str, option: str) -> Choices:
    """A training option's choices, numbers only: ``--lr 0.05,0.1``."""
    where, hint = f"{option} {_clip(text)}", f"for example {option} 0.05,0.1 (',' or '|' between values)"
    choices = parse_choices(text, where, hint)
    if choices.size > MAX_ALTERNATIVES:
        raise UsageError(f"{where}: more than {MAX_ALTERNATIVES:,} values")
    for index in range(choices.size):
        value = choices.pick(index)
        if isinstance(value, (bool, tuple)):
            raise UsageError(f"{where}: {value_text(value)} is not a number", hint=hint)
    return choices


def value_text(value: Value) -> str:
    """A value as ``--param`` reads it back: ``16``, ``0.05``, ``true``, ``[1,2]``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ",".join(value_text(item) for item in value) + "]"
    return repr(value)


def _mixed_radix(index: int, choices) -> list[Value]:
    """The ``index``-th combination of ``choices``, the last varying fastest."""
    picked = []
    for choice in reversed(choices):
        index, digit = divmod(index, choice.size)
        picked.append(choice.pick(digit))
    return picked[::-1]


class _Reader:
    """Recursive descent over the tokens of a choices text:

        top    := either (',' either)*
        either := single ('|' single)*
        single := '[' [either (',' either)*] ']' | '(' ... ')' | ATOM ['..' ATOM]
    """

    def __init__(self, text: str, where: str, hint: str) -> None:
        self.text, self.where, self.hint = text, where, hint
        self.tokens = [token for token in re.split(r"(\.\.|[\[\](),|]|\s+)", text) if token and not token.isspace()]
        self.position = 0

    def read(self) -> Choices:
        if not self.tokens:
            raise self._error("no value given")
        options = self._sequence()
        if self.position < len(self.tokens):
            raise self._error(f"'{self.tokens[self.position]}' where a value or ',' belongs")
        return options[0] if len(options) == 1 else Either(tuple(options), self.text.strip())

    def _sequence(self) -> list[Choices]:
        """Choices separated by ','."""
        items = [self._either()]
        while self._peek() == ",":
            self.position += 1
            items.append(self._either())
            if len(items) > MAX_ALTERNATIVES:
                raise self._error(f"more than {MAX_ALTERNATIVES:,} choices or items")
        return items

    def _either(self) -> Choices:
        start = self.position
        options = [self._single()]
        while self._peek() == "|":
            self.position += 1
            options.append(self._single())
            if len(options) > MAX_ALTERNATIVES:
                raise self._error(f"more than {MAX_ALTERNATIVES:,} choices")
        return options[0] if len(options) == 1 else Either(tuple(options), self._text(start))

    def _single(self) -> Choices:
        start = self.position
        token = self._next("a value")
        if token in ("[", "("):
            closing = "]" if token == "[" else ")"
            if self._peek() == closing:
                self.position += 1
                return ListOf((), self._text(start))
            items = self._sequence()
            if self._peek() != closing:
                found = self._peek()
                raise self._error(f"'{token}' is not closed" if found is None else
                                  f"',' or '{closing}' expected before '{found}'")
            self.position += 1
            return ListOf(tuple(items), self._text(start))
        if token in _PUNCTUATION:
            raise self._error(f"a value expected before '{token}'")
        if self._peek() == "..":
            self.position += 1
            high = self._next("the end of the range")
            return self._range(token, high, self._text(start))
        return One(self._scalar(token), token)

    def _range(self, low_text: str, high_text: str, text: str) -> Range:
        low, high = self._scalar(low_text), self._scalar(high_text)
        if not all(isinstance(bound, int) and not isinstance(bound, bool) for bound in (low, high)):
            raise UsageError(f"{self.where}: the range {text} needs whole numbers at both ends",
                             hint="list other values one by one: 0.05,0.1")
        if low > high:
            raise UsageError(f"{self.where}: the range {text} is empty: it goes from {low} down to {high}",
                             hint=f"write {high}..{low}")
        return Range(low, high, text)

    def _scalar(self, token: str) -> bool | int | float:
        from archdsl.resolve import parse_value

        if token in _PUNCTUATION:
            raise self._error(f"a value expected before '{token}'")
        try:
            return parse_value(token)
        except UsageError as err:
            raise self._error(err.message) from None

    def _peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _next(self, what: str) -> str:
        token = self._peek()
        if token is None:
            raise self._error(f"it ends where {what} belongs")
        self.position += 1
        return token

    def _text(self, start: int) -> str:
        return "".join(self.tokens[start:self.position])

    def _error(self, problem: str) -> UsageError:
        return UsageError(f"{self.where}: {problem}", hint=self.hint)


def _check_distinct(choices: Choices, where: str) -> None:
    """No value may be given twice: a grid would train it twice, and sampling would favour it."""
    if isinstance(choices, (One, Range)):
        return
    children = choices.options if isinstance(choices, Either) else choices.items
    for child in children:
        _check_distinct(child, where)
    if isinstance(choices, ListOf):
        return
    for i, first in enumerate(choices.options):
        for second in choices.options[i + 1:]:
            common = _common(first, second)
            if common is not None:
                value = value_text(common[0])
                by = "" if first.text == second.text == value else f" (by {first.text} and {second.text})"
                raise UsageError(f"{where}: {value} is given twice{by}", hint="give each value once")


def _common(a: Choices, b: Choices) -> tuple[Value] | None:
    """A value that both ``a`` and ``b`` give (in a 1-tuple, since a value may be falsy), or None."""
    if isinstance(a, Either) or isinstance(b, Either):
        for x in a.options if isinstance(a, Either) else (a,):
            for y in b.options if isinstance(b, Either) else (b,):
                if (found := _common(x, y)) is not None:
                    return found
        return None
    if isinstance(a, ListOf) or isinstance(b, ListOf):
        if not (isinstance(a, ListOf) and isinstance(b, ListOf)) or len(a.items) != len(b.items):
            return None
        items = []
        for x, y in zip(a.items, b.items):
            found = _common(x, y)
            if found is None:
                return None
            items.append(found[0])
        return (tuple(items),)
    low_a, high_a = _bounds(a)
    low_b, high_b = _bounds(b)
    if isinstance(a, One) and isinstance(b, One):
        same = isinstance(a.value, bool) == isinstance(b.value, bool) and a.value == b.value
        return (a.value,) if same else None
    if low_a is None or low_b is None:
        return None
    low = max(low_a, low_b)
    return (low,) if low <= min(high_a, high_b) else None


def _bounds(choice: One | Range) -> tuple[int | None, int | None]:
    """The whole numbers a scalar choice covers, as an interval (None for a decimal or a boolean)."""
    if isinstance(choice, Range):
        return choice.low, choice.high
    value = choice.value
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    return None, None


def _clip(text: str, width: int = 60) -> str:
    return text if len(text) <= width else f"{text[:width - 3]}..."
