"""Counting before expanding: the fewest layers and steps a network's body can expand to.

Resolution builds a small network in one walk and sizes a large one first (``resolve``), but sizing
still walks every block instance whose input shape differs from the last, and a tower of blocks that
each call the one below twice, growing a size on the way, has 2**40 of them. So a network too large
for one walk is first counted here, from the program alone, with the values known without an input
(literals, parameters, arithmetic on them): a layer is one layer and one step, a block call or a join
one step, each term of an expression evaluated one step; a ``for`` loop counts its item once per value
of its list, with the name bound; a ``repeat`` whose count is not known, or a loop whose list is not, runs
no time, an ``if`` that is not decided takes neither arm, and a repeated item that makes nothing is
counted once (resolution stops there too). What it finds is a lower bound, so a network over the limits
is refused before any of it is expanded. A block called again with the same values of the parameters
that matter to the count (``relevant_parameters``), at the same depth, is counted once, so the count
costs a few steps per definition:

    block b0 = relu
    block b1 = b0; b0          # 2 layers, 5 steps
    ...
    block b40 = b39; b39       # 2**40 layers: refused at once
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from archdsl import ir
from archdsl.errors import ArchError, LimitError
from archdsl.layers import lookup
from archdsl.program import Program

LIMIT_HINT = "archdsl refuses specs this large before expanding them"


@dataclass(frozen=True)
class Tally:
    """What an item expands to: layers; nodes of the resolved graph (layers, block calls, joins); steps
    (nodes, and the terms of the expressions evaluated)."""

    layers: int = 0
    nodes: int = 0
    steps: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.layers + other.layers, self.nodes + other.nodes, self.steps + other.steps)

    def times(self, count: int) -> Tally:
        return Tally(self.layers * count, self.nodes * count, self.steps * count)


@dataclass(frozen=True)
class Bounds:
    """The most layers and steps a network may expand to (``resolve.Limits``)."""

    layers: int
    steps: int

    def check(self, layers: int, steps: int, span, repeat: int | None = None) -> None:
        """Refuse counts over the bounds, those of the network so far or of one ``repeat`` of that count."""
        if layers > self.layers:
            what = "the network has" if repeat is None else f"repeat {repeat} would expand to"
            raise LimitError(f"{what} more than {self.layers:,} layers", span, hint=LIMIT_HINT)
        if steps > self.steps:
            what = "expanding the network takes" if repeat is None else f"repeat {repeat} would take"
            raise LimitError(f"{what} more than {self.steps:,} steps (layers, block calls, joins and terms of "
                             "expressions)", span, hint=LIMIT_HINT)


def check_expansion(program: Program, body: tuple[ir.Item, ...], env: dict[str, ir.Value], bounds: Bounds,
                    max_depth: int, evaluate: Callable[[ir.Expr, dict[str, ir.Value]], ir.Value]) -> None:
    """Raise a LimitError if ``body`` must expand to more than ``bounds``, counted as the module says.

    ``evaluate(expr, env)`` gives an expression's value at the known names ``env``, or raises an
    ArchError where it reads something unknown (a name not in ``env``, ``in.c``).
    """
    _Counter(program, bounds, max_depth, evaluate).items(body, env, 0)


def arguments(block: ir.BlockDef, call: ir.Call) -> dict[str, ir.Expr]:
    """The expression ``call`` gives each parameter of ``block`` (those it does not give are left out,
    as are arguments that fit none: resolution reports them)."""
    names = [p.name for p in block.params]
    given = dict(zip(names, (arg.value for arg in call.args if arg.name is None)))
    given.update({arg.name: arg.value for arg in call.args if arg.name is not None})
    return given


def relevant_parameters(program: Program) -> dict[str, set[str]]:
    """Each block's parameters that can change what it counts to: those a ``repeat`` count or an ``if``
    test of its body reads, or the argument it gives a relevant parameter of a block it calls, or the
    default of a relevant parameter. A worklist finds them: a block is looked at again when a block it
    calls gains one. The others need not be known, nor tell two calls apart:

        block b0(c) = repeat 0 relu                       # none: b0(1) and b0(2) count the same
        block b1(c, n) = b0(c * 2); repeat n b0(c)        # n
    """
    callers: dict[str, set[str]] = {name: set() for name in program.blocks}
    for block in program.blocks.values():
        for item in ir.walk_items(block.body):
            if isinstance(item, ir.Call) and item.name in program.blocks:
                callers[item.name].add(block.name)
    relevant: dict[str, set[str]] = {name: set() for name in program.blocks}
    pending = list(program.blocks)
    while pending:
        block = program.blocks[pending.pop()]
        read: set[str] = set()
        for item in ir.walk_items(block.body):
            if isinstance(item, ir.Repeat):
                read |= ir.names_read(item.count)
            elif isinstance(item, ir.Loop):
                read |= ir.names_read(item.values)
            elif isinstance(item, ir.Cond):
                read |= ir.names_read(item.test)
            elif isinstance(item, ir.Call) and item.name in program.blocks:
                given = arguments(program.blocks[item.name], item)
                read.update(*(ir.names_read(given[p]) for p in relevant[item.name] if p in given))
        for param in reversed(block.params):  # a default reads the parameters before it
            if param.name in read and param.default is not None:
                read |= ir.names_read(param.default)
        grown = read & {p.name for p in block.params}
        if not grown <= relevant[block.name]:
            relevant[block.name] |= grown
            pending.extend(callers[block.name])
    return relevant


class _Counter:
    def __init__(self, program: Program, bounds: Bounds, max_depth: int, evaluate) -> None:
        self.program = program
        self.bounds = bounds
        self.max_depth = max_depth
        self.evaluate = evaluate
        self.relevant = relevant_parameters(program)
        self.counted: dict[tuple, Tally] = {}  # (block, known relevant arguments, depth) -> its tally
        self.active: set[str] = set()  # blocks being counted: a block that calls itself is the resolver's to report
        self.sizes: dict[int, int] = {}  # id of an expression -> its terms

    def items(self, items: tuple[ir.Item, ...], env: dict, depth: int) -> Tally:
        total = Tally()
        for item in items:
            total += self.item(item, env, depth)
            self.bounds.check(total.layers, total.steps, item.span)
        return total

    def item(self, item: ir.Item, env: dict, depth: int) -> Tally:
        if depth > self.max_depth:
            return Tally()  # the resolver refuses the nesting
        if isinstance(item, ir.Call):
            return self.call(item, env, depth)
        if isinstance(item, ir.Group):
            return self.items(item.items, env, depth + 1)
        if isinstance(item, ir.Repeat):
            return self.repeat(item, env, depth)
        if isinstance(item, ir.Loop):
            return self.loop(item, env, depth)
        if isinstance(item, ir.Cond):
            evaluated = Tally(steps=self.size(item.test))
            test = self.known(item.test, env)
            if not isinstance(test, (bool, int, float)):
                return evaluated  # undecided here: either arm may be taken, and counting both could take long
            return evaluated + self.item(item.then if test else item.otherwise, env, depth + 1)
        assert isinstance(item, ir.Branch)
        total = Tally(nodes=1, steps=1)
        for body in item.branches:
            total += self.items(body, env, depth + 1)
        return total

    def repeat(self, item: ir.Repeat, env: dict, depth: int) -> Tally:
        count = self.known(item.count, env)
        evaluated = Tally(steps=self.size(item.count))
        if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
            return evaluated
        each = self.item(item.item, env, depth + 1)
        if each.nodes == 0:
            return evaluated + each  # the resolver stops after an iteration that makes nothing
        self.bounds.check(each.layers * count, each.steps * count, item.count.span, repeat=count)
        return evaluated + each.times(count)

    def loop(self, item: ir.Loop, env: dict, depth: int) -> Tally:
        """A loop over a known list: its item once per value, with the name bound (unknown: nothing)."""
        over = self.known(item.values, env)
        total = Tally(steps=self.size(item.values))
        if not isinstance(over, tuple):
            return total
        for value in over:
            total += self.item(item.item, {**env, item.name: value}, depth + 1)
            self.bounds.check(total.layers, total.steps, item.span)
        return total

    def call(self, call: ir.Call, env: dict, depth: int) -> Tally:
        called = Tally(nodes=1, steps=1 + sum(self.size(arg.value) for arg in call.args))
        block = self.program.blocks.get(call.name)
        if block is None:
            # A layer; a name that is neither is the resolver's error.
            return called + Tally(layers=1) if lookup(call.name) is not None else Tally()
        if block.name in self.active:
            return Tally()
        inner, defaults = self.bind(block, call, env)
        key = (block.name, tuple((name, type(value), value) for name, value in inner.items()), depth)
        if key not in self.counted:
            self.active.add(block.name)
            try:
                self.counted[key] = self.items(block.body, inner, depth + 1)
            except ArchError as err:
                raise err.with_note(f"{block.name}(...) instantiated here", call.span) from None
            finally:
                self.active.discard(block.name)
        return called + defaults + self.counted[key]

    def bind(self, block: ir.BlockDef, call: ir.Call, env: dict) -> tuple[dict, Tally]:
        """The block's relevant parameters whose values are known here, and the steps its defaults take."""
        given = arguments(block, call)
        relevant = self.relevant[block.name]
        inner: dict = {}
        steps = 0
        for param in block.params:
            if param.name not in given and param.default is not None:
                steps += self.size(param.default)
            if param.name not in relevant:
                continue
            value = self.known(given[param.name], env) if param.name in given else (
                self.known(param.default, inner) if param.default is not None else None)
            if value is not None:
                inner[param.name] = value
        return inner, Tally(steps=steps)

    def known(self, expr: ir.Expr, env: dict) -> ir.Value | None:
        try:
            return self.evaluate(expr, env)
        except ArchError:
            return None

    def size(self, expr: ir.Expr) -> int:
        key = id(expr)
        if key not in self.sizes:
            self.sizes[key] = ir.expression_size(expr)
        return self.sizes[key]
