"""From a program and parameter values to the resolved graph of one network.

Resolution binds block parameters, evaluates expressions, expands block calls, repeats and
conditions, names every node uniquely, and infers shapes as it goes: a block may read the shape
entering it (``in.c``), so expansion and shape inference are one walk. Sizes are plain integers,
counted against ``Limits`` before anything is built.

    block vgg(n, c) = repeat n <conv3x3 c; relu>; maxpool2
    network v : [1, 32, 32] = vgg(2, 8)     # -> vgg_0.conv_0, vgg_0.relu_0, ..., vgg_0.maxpool_0
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

from archdsl import ir, values
from archdsl.counting import Bounds, check_expansion
from archdsl.errors import ArchError, LimitError, ResolveError, ShapeError, UsageError
from archdsl.layers import REQUIRED, ArgSpec, Default, LayerKind, Pair, lookup, suggest
from archdsl.program import Program
from archdsl.shapes import LayerError, described, join, mismatch_hint, show
from archdsl.source import Span
from archdsl.symbolic import Sym

_TRUTH = {"true": True, "false": False}


def _default_max_params() -> int:
    """Parameters whose fp32 weights would fill the machine's memory."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = 16 * 2**30
    return memory // 4


@dataclass(frozen=True)
class Limits:
    """Bounds that hold before anything is expanded or allocated."""

    max_layers: int = 200_000
    # Every layer, block call, join and term of an expression is a step. The largest network the layer
    # limit admits takes well under a million; a spec that takes more is refused as it is counted.
    max_steps: int = 1_000_000
    # Real networks nest a few levels. 64 keeps every pass well inside Python's stack, and the IR's
    # JSON inside pydantic's serialisation depth (a concat costs three levels, and 85 nested failed).
    max_depth: int = 64
    max_params: int = field(default_factory=_default_max_params)

    def bounds(self) -> Bounds:
        """The bounds on layers and steps, which the counting, sizing and building walks check as they go."""
        return Bounds(self.max_layers, self.max_steps)


@dataclass
class _Scope:
    """What a block body sees: its parameters, the shape entering it, and the names taken so far."""

    env: dict[str, ir.Value]
    in_shape: ir.Shape
    prefix: str
    counts: dict[str, int] = field(default_factory=dict)

    def name(self, base: str) -> tuple[str, str]:
        index = self.counts.get(base, 0)
        self.counts[base] = index + 1
        name = f"{base}_{index}"
        return name, f"{self.prefix}{name}"

    def inner(self, prefix: str, env: dict[str, ir.Value] | None = None, in_shape: ir.Shape | None = None) -> _Scope:
        return _Scope(env if env is not None else self.env, in_shape if in_shape is not None else self.in_shape, prefix)


class _OverBudget(Exception):
    """A building walk went past its layer budget: the network is large enough to be sized first."""


# Networks up to this many layers are built in one walk; larger ones are sized first (see _Resolver).
# Building this many layers takes about 20 ms, so a spec that turns out huge loses little. A walk of
# STEPS_PER_LAYER times as many steps (block calls, terms of expressions) is sized first too.
SIZE_FIRST_ABOVE = 2_000
STEPS_PER_LAYER = 10


@dataclass(frozen=True)
class _Size:
    """What the sizing pass keeps of a node: its output shape and parameter count, nothing built."""

    out_shape: ir.Shape
    params: int


@dataclass(frozen=True)
class _Sized:
    """What the sizing pass remembers of a block instance: its size, and the layers and steps it took."""

    size: _Size
    layers: int
    steps: int


class _Resolver:
    """One walk that binds, expands and infers shapes.

    With ``sizing`` on, it builds no IR: layers, blocks and joins become ``_Size`` records, a block
    instantiated again with the same arguments, input shape and depth reuses its first count, and a
    repeat whose item maps its input shape to itself multiplies instead of looping. Counting layers,
    steps and parameters that way is cheap even for specs that would expand to billions of layers, so
    ``resolve_network`` sizes a network that outgrows ``SIZE_FIRST_ABOVE`` layers first, and refuses what
    is over the limits before building it. (Before it sizes, ``counting`` has refused what must be over
    the limits whatever the shapes.)
    """

    def __init__(self, program: Program, limits: Limits, sizing: bool = False, budget: int | None = None) -> None:
        self.program = program
        self.limits = limits
        self.bounds = limits.bounds()
        self.sizing = sizing
        self.budget = budget  # building stops with _OverBudget past this many layers
        self.layers = 0
        self.steps = 0
        self.params = 0
        self.active: list[str] = []  # blocks being instantiated, for recursion errors
        self.sized: dict[tuple, _Sized] = {}  # (block, arguments, shape, depth) -> what it took
        self.sizes: dict[int, int] = {}  # id of an expression -> its terms
        self.declared: tuple[str, Span] | None = None  # the network's name and input declaration, for its errors
        self.instances: dict[str, dict[str, ir.Value]] | None = None  # block instance path -> its parameters

    # -- expressions --------------------------------------------------------------------------------

    def value(self, expr: ir.Expr, scope: _Scope) -> ir.Value:
        """An expression's value in a walk, which counts each of its terms as a step."""
        if isinstance(expr, (ir.Number, ir.Var, ir.InputDim)):
            size = 1  # most arguments: no need to walk them
        elif id(expr) in self.sizes:
            size = self.sizes[id(expr)]
        else:
            size = self.sizes[id(expr)] = ir.expression_size(expr)
        self.count(0, 0, size, expr.span)
        return self.evaluate(expr, scope)

    def evaluate(self, expr: ir.Expr, scope: _Scope, depth: int = 0) -> ir.Value:
        if depth > self.limits.max_depth:
            raise LimitError(f"expression nested more than {self.limits.max_depth} deep", expr.span)
        if isinstance(expr, ir.Number):
            return values.bounded(expr.value, expr.span)
        if isinstance(expr, ir.Var):
            return self._lookup_var(expr, scope)
        if isinstance(expr, ir.InputDim):
            return self._input_dim(expr, scope)
        if isinstance(expr, ir.UnOp):
            return values.unary(expr.op, self.evaluate(expr.operand, scope, depth + 1), expr.span)
        if isinstance(expr, ir.Func):
            result = values.function(expr.name, [self.evaluate(a, scope, depth + 1) for a in expr.args], expr.span)
            if isinstance(result, tuple):
                self.count(0, 0, len(result), expr.span)  # range(n) makes n items: each is a step
            return result
        if isinstance(expr, ir.ListExpr):
            return tuple(self.evaluate(item, scope, depth + 1) for item in expr.items)
        if isinstance(expr, ir.Index):
            return values.index(self.evaluate(expr.value, scope, depth + 1),
                                self.evaluate(expr.index, scope, depth + 1), expr.span)
        if isinstance(expr, ir.ListFor):
            over = self.evaluate(expr.values, scope, depth + 1)
            if not isinstance(over, tuple):
                raise ResolveError(f"for in a list takes a list, not the {values.kind(over)} {values.show(over)}",
                                   expr.values.span, hint="for i in range(n) counts from 0 to n - 1")
            self.count(0, 0, len(over) * ir.expression_size(expr.item), expr.span)  # each item is evaluated
            return tuple(self.evaluate(expr.item, _Scope({**scope.env, expr.name: value}, scope.in_shape, scope.prefix),
                                       depth + 1) for value in over)
        if isinstance(expr, ir.SliceExpr):
            ends = [None if e is None else self.evaluate(e, scope, depth + 1) for e in (expr.start, expr.end)]
            return values.sliced(self.evaluate(expr.value, scope, depth + 1), *ends, expr.span)
        if isinstance(expr, ir.CondExpr):
            chosen = expr.then if values.truth(self.evaluate(expr.test, scope, depth + 1), expr.test.span) else expr.otherwise
            return self.evaluate(chosen, scope, depth + 1)
        assert isinstance(expr, ir.BinOp)
        left = self.evaluate(expr.left, scope, depth + 1)
        if expr.op in ("and", "or"):
            # Short-circuit: the right side is evaluated only when it decides.
            if values.truth(left, expr.span) == (expr.op == "or"):
                return expr.op == "or"
            return values.truth(self.evaluate(expr.right, scope, depth + 1), expr.span)
        return values.binary(expr.op, left, self.evaluate(expr.right, scope, depth + 1), expr.span)

    def _lookup_var(self, expr: ir.Var, scope: _Scope) -> ir.Value:
        if expr.name in scope.env:
            return scope.env[expr.name]
        if expr.name in _TRUTH:
            return _TRUTH[expr.name]
        raise unknown_name(expr, scope.env, self.program)

    def _input_dim(self, expr: ir.InputDim, scope: _Scope) -> int:
        dims = {"c": 0, "h": 1, "w": 2}
        if expr.dim not in dims:
            raise ResolveError(f"unknown input size 'in.{expr.dim}'", expr.span, hint="the sizes of a block's input are in.c, in.h and in.w")
        index = dims[expr.dim]
        if not scope.in_shape:  # a network's parameters and input shape are bound before any input exists
            raise ResolveError(f"in.{expr.dim} has no value here: nothing flows in yet",
                               expr.span, hint="in.c, in.h and in.w are the sizes entering a body or a block")
        shape = scope.in_shape
        if isinstance(shape, ir.Tokens):
            if expr.dim == "c":
                return shape.features
            if shape.grid is None:
                raise ShapeError(f"in.{expr.dim} is undefined: the input here is {described(shape)}, which lie on no "
                                 "H×W grid", expr.span, hint="in.c is the features of each token")
            return shape.grid[index - 1]
        if index >= len(shape):
            raise ShapeError(f"in.{expr.dim} is undefined: the input here is the vector {show(shape)}", expr.span)
        return shape[index]

    # -- sequences ----------------------------------------------------------------------------------

    def items(self, items: tuple[ir.Item, ...], scope: _Scope, shape: ir.Shape, depth: int) -> tuple[list[ir.Resolved], ir.Shape]:
        """Resolve a sequence, threading the shape through it."""
        if depth > self.limits.max_depth:
            raise LimitError(
                f"nesting deeper than {self.limits.max_depth} levels (groups, repeats, branches and block calls)",
                items[0].span if items else None,
                hint="flatten the spec; no real network nests this deep",
            )
        out: list[ir.Resolved] = []
        for item in items:
            shape = self.item(item, scope, shape, depth, out)
        return out, shape

    def item(self, item: ir.Item, scope: _Scope, shape: ir.Shape, depth: int, out: list[ir.Resolved]) -> ir.Shape:
        if isinstance(item, ir.Call):
            node = self.call(item, scope, shape, depth)
            out.append(node)
            return node.out_shape
        if isinstance(item, ir.Group):
            nodes, shape = self.items(item.items, scope, shape, depth + 1)
            out.extend(nodes)
            return shape
        if isinstance(item, ir.Repeat):
            return self.repeat(item, scope, shape, depth, out)
        if isinstance(item, ir.Loop):
            return self.loop(item, scope, shape, depth, out)
        if isinstance(item, ir.Cond):
            chosen = item.then if values.truth(self.value(item.test, scope), item.test.span) else item.otherwise
            nodes, shape = self.items((chosen,), scope, shape, depth + 1)
            out.extend(nodes)
            return shape
        assert isinstance(item, ir.Branch)
        node = self.branch(item, scope, shape, depth)
        out.append(node)
        return node.out_shape

    def repeat(self, item: ir.Repeat, scope: _Scope, shape: ir.Shape, depth: int, out: list[ir.Resolved]) -> ir.Shape:
        count = self.value(item.count, scope)
        if isinstance(count, Sym):
            raise ResolveError(f"repeat count must be a number known before the input size, not {count}",
                               item.count.span, hint=values.SYMBOLIC_HINT)
        if isinstance(count, bool) or not isinstance(count, int):
            raise ResolveError(f"repeat count must be a whole number, not {values.show(count)}", item.count.span,
                               hint=_division_hint(count))
        if count < 0:
            raise ResolveError(f"repeat count must not be negative, but it is {count}", item.count.span)
        if self.budget is not None and count > self.budget:
            raise _OverBudget  # more iterations than a network built in one walk has layers: count them first
        for index in range(count):
            layers, steps = self.layers, self.steps
            nodes, new_shape = self.items((item.item,), scope, shape, depth + 1)
            out.extend(nodes)
            remaining = count - index - 1
            if not nodes and new_shape == shape:
                return shape  # the iterations left make nothing either
            if self.sizing and new_shape == shape and remaining:
                # The iterations left are this one again: the same input shape and the same names.
                params = sum(n.params for n in nodes)
                self.count((self.layers - layers) * remaining, params * remaining, (self.steps - steps) * remaining,
                           item.count.span)
                out.append(_Size(shape, params * remaining))
                return shape
            shape = new_shape
            self.bounds.check(self.layers + (self.layers - layers) * remaining,
                             self.steps + (self.steps - steps) * remaining, item.count.span, repeat=count)
        return shape

    def loop(self, item: ir.Loop, scope: _Scope, shape: ir.Shape, depth: int, out: list[ir.Resolved]) -> ir.Shape:
        """``for NAME in LIST ITEM``: the item once per value, in a scope where NAME is that value; the
        layers are named on in the enclosing scope, as a repeat's are."""
        over = self.value(item.values, scope)
        if not isinstance(over, tuple):
            raise ResolveError(f"for loops over a list, not the {values.kind(over)} {values.show(over)}",
                               item.values.span, hint=f"to repeat an item n times: for i in range(n) ..., or repeat n ...")
        if item.name in ("true", "false"):
            raise ResolveError(f"'{item.name}' cannot name a loop's values", item.name_span)
        if self.budget is not None and len(over) > self.budget:
            raise _OverBudget
        for value in over:
            inner = _Scope({**scope.env, item.name: value}, scope.in_shape, scope.prefix, scope.counts)
            nodes, shape = self.items((item.item,), inner, shape, depth + 1)
            out.extend(nodes)
        return shape

    def branch(self, item: ir.Branch, scope: _Scope, shape: ir.Shape, depth: int) -> ir.Join:
        name, path = scope.name(item.op)
        branches, shapes = [], []
        for index, body in enumerate(item.branches):
            inner = scope.inner(f"{path}.b{index}.")
            nodes, out_shape = self.items(body, inner, shape, depth + 1)
            branches.append(tuple(nodes))
            shapes.append(out_shape)
        out_shape, problem = join(item.op, shapes)
        if problem:
            notes = tuple(
                (f"branch {i + 1} gives {described(s)}", body[0].span) for i, (s, body) in enumerate(zip(shapes, item.branches))
            )
            raise ShapeError(problem, item.span, hint=mismatch_hint(item.op, shapes), notes=notes)
        _check_sizes(item.op, out_shape, item.span)
        self.count(0, 0, 1, item.span)
        if self.sizing:
            return _Size(out_shape, sum(n.params for b in branches for n in b))
        return ir.Join.make(
            op=item.op, name=name, path=path, in_shape=shape, out_shape=out_shape,
            params=sum(n.params for b in branches for n in b), macs=sum(n.macs for b in branches for n in b),
            span=item.span, branches=tuple(branches),
        )

    # -- calls --------------------------------------------------------------------------------------

    def call(self, call: ir.Call, scope: _Scope, shape: ir.Shape, depth: int) -> ir.Resolved:
        block = self.program.blocks.get(call.name)
        if block is not None:
            return self.instantiate(block, call, scope, shape, depth)
        found = lookup(call.name)
        if found is None:
            raise unknown_call(call, self.program)
        kind, preset = found
        return self.layer(kind, preset, call, scope, shape)

    def layer(self, kind: LayerKind, preset: dict, call: ir.Call, scope: _Scope, shape: ir.Shape) -> ir.Layer:
        args, arg_spans = self.bind_layer_args(kind, preset, call, scope)
        try:
            kind.validate(args)
            out_shape = kind.infer(args, shape)
        except LayerError as err:
            where = arg_spans.get(err.arg, call.span)
            # Say it with the name the user wrote: "maxpool2 window ...", not "maxpool2: maxpool window ...".
            if err.message.startswith(kind.key):
                message = call.name + err.message[len(kind.key):]
            else:
                message = f"{call.name}: {err.message}"
            if err.arg is None and "input" not in message:
                message += f" (input {described(shape)})"
            if (self.declared is not None and self.layers == 0 and isinstance(shape, ir.Tokens)
                    and "C×H×W" in err.message):
                # The network's own input, two sizes where an image has three: the declaration is the likelier
                # culprit than tokens meant as such.
                name, span = self.declared
                raise ShapeError(f"network {name} takes {described(shape)}, but its first layer, {call.name}, takes a "
                                 f"C×H×W image", span, hint=f"declare the channels: [1, {', '.join(map(str, shape))}] "
                                 "for a grey image, [3, ...] for colour (two sizes declare L×D tokens)",
                                 notes=((message, where),)) from None
            raise ShapeError(message, where, hint=err.hint) from None
        _check_sizes(call.name, out_shape, call.span)
        params = kind.params(args, shape)
        self.count(1, params, 1, call.span)
        if self.sizing:
            return _Size(out_shape, params)
        name, path = scope.name(kind.key)
        return ir.Layer.make(
            kind=kind.key, spelling=call.name, args=args, name=name, path=path,
            in_shape=shape, out_shape=out_shape, params=params, macs=kind.macs(args, shape, out_shape), span=call.span,
        )

    def count(self, layers: int, params: ir.Dim, steps: int, span: Span) -> None:
        """Add layers, parameters and steps to the totals, refusing to go past the limits; a budgeted walk
        stops past its budget or the parameter limit (sizing then counts them all, for the message)."""
        self.layers += layers
        self.params += params
        self.steps += steps
        self.bounds.check(self.layers, self.steps, span)
        if self.budget is not None and (
            self.layers > self.budget or self.steps > self.budget * STEPS_PER_LAYER
            or (isinstance(self.params, int) and self.params > self.limits.max_params)
        ):
            raise _OverBudget

    def bind_layer_args(self, kind: LayerKind, preset: dict, call: ir.Call, scope: _Scope) -> tuple[dict, dict[str, Span]]:
        values: dict[str, ir.Value] = {}
        spans: dict[str, Span] = {}
        for spec, arg in match_layer_args(kind, preset, call, scope.env, self.program.blocks):
            values[spec.name] = _coerce(spec, self.value(arg.value, scope), arg.span, call.name)
            spans[spec.name] = arg.span
        values.update(unstated_layer_args(kind, preset, values, call))
        try:
            kind.finish(call.name, values)
        except LayerError as err:
            raise ResolveError(err.message, spans.get(err.arg, call.span), hint=err.hint) from None
        return {spec.name: values[spec.name] for spec in kind.args}, spans

    def instantiate(self, block: ir.BlockDef, call: ir.Call, scope: _Scope, shape: ir.Shape, depth: int) -> ir.Block:
        if block.name in self.active:
            chain = " -> ".join((*self.active[self.active.index(block.name):], block.name))
            raise ResolveError(f"block '{block.name}' calls itself: {chain}", call.name_span,
                               hint="blocks cannot recurse; use repeat N ... for repetition")
        name, path = scope.name(block.name)
        inner = _Scope({}, shape, f"{path}.")
        inner.env = self.bind_block_args(block, call, scope, inner)
        key = (block.name, tuple((name, type(value), value) for name, value in inner.env.items()), shape, depth)
        if self.sizing and key in self.sized:
            sized = self.sized[key]
            self.count(sized.layers, sized.size.params, sized.steps, call.span)
            return sized.size
        self.count(0, 0, 1, call.span)
        layers, steps = self.layers, self.steps
        self.active.append(block.name)
        try:
            nodes, out_shape = self.items(block.body, inner, shape, depth + 1)
        except ArchError as err:
            raise err.with_note(f"{_call_text(block, inner.env)} instantiated here", call.span) from None
        finally:
            self.active.pop()
        if self.sizing:
            sized = _Sized(_Size(out_shape, sum(n.params for n in nodes)), self.layers - layers, self.steps - steps + 1)
            self.sized[key] = sized
            return sized.size
        if self.instances is not None:
            self.instances[path] = inner.env
        return ir.Block.make(
            block=block.name, call=_call_text(block, inner.env), body=tuple(nodes), name=name, path=path,
            in_shape=shape, out_shape=out_shape, params=sum(n.params for n in nodes),
            macs=sum(n.macs for n in nodes), span=call.span,
        )

    def bind_block_args(self, block: ir.BlockDef, call: ir.Call, caller: _Scope, inner: _Scope) -> dict[str, ir.Value]:
        given = {name: self.value(arg.value, caller) for name, arg in match_block_args(block, call)}
        env: dict[str, ir.Value] = {}
        for param in block.params:
            if param.name in given:
                env[param.name] = given[param.name]
            elif param.default is not None:
                inner.env = env
                env[param.name] = self.value(param.default, inner)
            else:
                raise missing_block_param(block, call, param)
        return env


# -- helpers ---------------------------------------------------------------------------------------


def match_block_args(block: ir.BlockDef, call: ir.Call) -> Iterator[tuple[str, ir.Arg]]:
    """Which parameter of ``block`` each argument of ``call`` gives, in order, refusing what does not fit (a
    generator, as ``match_layer_args``). Resolution and the checks of every call bind block arguments alike."""
    names = [p.name for p in block.params]
    given: set[str] = set()
    position = 0
    for arg in call.args:
        if arg.name is None:
            if position >= len(names):
                raise ResolveError(
                    f"block {block.name} takes {_count(len(names), 'argument')}, but more were given",
                    arg.span, hint=f"block {block.name}({', '.join(names)}) is defined at {block.span}",
                )
            name = names[position]
            position += 1
        elif arg.name not in names:
            close = _closest(arg.name, names)
            raise ResolveError(f"block {block.name} has no parameter '{arg.name}'", arg.span,
                               hint=f"did you mean '{close}'?" if close else f"its parameters are ({', '.join(names)})")
        else:
            name = arg.name
        if name in given:
            raise ResolveError(f"block {block.name}: parameter '{name}' given twice", arg.span)
        given.add(name)
        yield name, arg


def missing_block_param(block: ir.BlockDef, call: ir.Call, param: ir.Param) -> ResolveError:
    """The error for a call that leaves out a parameter without a default."""
    names = ", ".join(p.name for p in block.params)
    return ResolveError(f"block {block.name} needs its parameter '{param.name}'", call.span,
                        hint=f"block {block.name}({names}) is defined at {block.span}")


def unknown_name(expr: ir.Var, names: Collection[str], program: Program) -> ResolveError:
    """The error for a name that no parameter or loop binds where ``expr`` reads it (``names`` are those that do)."""
    if lookup(expr.name) is not None or expr.name in program.blocks:
        hint = f"'{expr.name}' is a layer; is a ';' missing before it?"
    else:
        close = _closest(expr.name, names)
        hint = f"did you mean '{close}'?" if close else _known_names(names)
    return ResolveError(f"unknown name '{expr.name}'", expr.span, hint=hint)


def match_layer_args(kind: LayerKind, preset: dict, call: ir.Call, names_in_scope: Collection[str],
                     blocks: Collection[str]) -> Iterator[tuple[ArgSpec, ir.Arg]]:
    """Which argument of ``kind`` each argument of ``call`` gives, in order, refusing what does not fit.

    A generator, so that a caller evaluating each value as it comes reports the first mistake in the
    order they are written. ``preset`` is what the spelling sets (``conv3x3``: k=3 and same padding);
    a bare name that is not in scope but is a block or layer is most likely a missing ';'. Resolution
    and the Python export bind layer arguments alike through this.
    """
    specs = {spec.name: spec for spec in kind.args}
    fixed = {k: v for k, v in preset.items() if not isinstance(v, Default)}
    slots = [spec.name for spec in kind.args if spec.name not in fixed and spec.by_position]
    position = 0
    given: set[str] = set()
    for arg in call.args:
        if arg.name is None and isinstance(arg.value, ir.Var) and arg.value.name not in names_in_scope:
            what = "block" if arg.value.name in blocks else "layer" if lookup(arg.value.name) else None
            if what:
                raise ResolveError(f"'{arg.value.name}' is a {what}, not an argument of {call.name}", arg.span,
                                   hint=f"is a ';' missing before {arg.value.name}?")
        if arg.name is None:
            if position >= len(slots):
                raise ResolveError(
                    f"{call.name} takes {_count(len(slots), 'positional argument')}"
                    f"{' (' + ', '.join(slots) + ')' if slots else ''}, but more were given",
                    arg.span, hint=_signature(call.name, kind, fixed) if len(slots) == len(specs) - len(fixed)
                    else f"give the others by name; {_signature(call.name, kind, fixed)}",
                )
            name = slots[position]
            position += 1
        else:
            name = arg.name
            if name in fixed:
                raise ResolveError(f"{call.name} already sets {name}={fixed[name]}", arg.span,
                                   hint=f"write {kind.key} ... {name}=... to choose it yourself")
            if name not in specs:
                close = _closest(name, specs) or _described(name, kind)
                hint = f"did you mean '{close}' ({specs[close].doc.split(' (')[0]})?" if close else _signature(call.name, kind, fixed)
                raise ResolveError(f"{call.name} has no argument '{name}'", arg.span, hint=hint)
        if name in given:
            raise ResolveError(f"{call.name}: argument '{name}' given twice", arg.span)
        given.add(name)
        yield specs[name], arg


def unstated_layer_args(kind: LayerKind, preset: dict, given: Collection[str], call: ir.Call) -> dict[str, ir.Value]:
    """The values of the arguments ``call`` does not give: what its spelling sets, else the kind's
    defaults (``SAME`` padding stays for ``finish``); a required one missing is an error."""
    values: dict[str, ir.Value] = {}
    for spec in kind.args:
        if spec.name in given:
            continue
        if spec.name in preset:
            setting = preset[spec.name]
            values[spec.name] = setting.value if isinstance(setting, Default) else setting
        elif spec.default is REQUIRED:
            fixed = {k: v for k, v in preset.items() if not isinstance(v, Default)}
            raise ResolveError(f"{call.name} needs its argument '{spec.name}' ({spec.doc})", call.span,
                               hint=_signature(call.name, kind, fixed))
        else:
            values[spec.name] = spec.default
    return values


def unknown_call(call: ir.Call, program: Program) -> ResolveError:
    """The error for a name that is neither a block of the program nor a layer kind."""
    close = suggest(call.name, tuple(program.blocks))
    return ResolveError(
        f"unknown layer or block '{call.name}'",
        call.name_span,
        hint=f"did you mean '{close}'?" if close else "`archdsl layers` lists the layer kinds",
    )


def _coerce(spec: ArgSpec, value: ir.Value, span: Span, layer: str) -> ir.Value:
    name = f"{layer} {spec.name}" + (f" ({spec.doc})" if spec.doc else "")
    if spec.type is bool:
        if isinstance(value, bool) or value in (0, 1):
            return bool(value)
        raise ResolveError(f"{name} must be true or false (1 or 0), not {values.show(value)}", span)
    if isinstance(value, Sym):
        raise ResolveError(f"{name} must be a number known before the input size, not {value}", span,
                           hint=values.SYMBOLIC_HINT)
    if spec.type is Pair:
        if isinstance(value, tuple):
            if len(value) != 2 or any(isinstance(v, (bool, Sym, tuple)) or not isinstance(v, int) for v in value):
                raise ResolveError(f"{name} must be a whole number or a list of two (height, width), "
                                   f"not {values.show(value)}", span)
            problems = [spec.check(v) for v in value] if spec.check is not None else []
            problem = next((p for p in problems if p), None)
            if problem:
                raise ResolveError(f"{name} {problem}, but it is {values.show(value)}", span)
            return value
        spec = dataclasses.replace(spec, type=int)  # one number: as for an int argument
    if isinstance(value, tuple):
        raise ResolveError(f"{name} must be {'a whole number' if spec.type is int else 'a number'}, "
                           f"not the list {values.show(value)}", span)
    if spec.type is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ResolveError(f"{name} must be a whole number, not {values.show(value)}", span, hint=_division_hint(value))
    elif spec.type is float:
        if isinstance(value, bool):
            raise ResolveError(f"{name} must be a number, not {values.show(value)}", span)
        value = float(value)  # finite: values lie within values.MAGNITUDE
    if spec.check is not None:
        problem = spec.check(value)
        if problem:
            raise ResolveError(f"{name} {problem}, but it is {values.show(value)}", span)
    return value


def _division_hint(value: ir.Value) -> str | None:
    """A whole number that came out as a decimal: made by '/', or by arithmetic with a decimal."""
    if isinstance(value, float) and value.is_integer():
        return "'/' gives a decimal, as does any arithmetic with one (7.5 // 2 is 3.0, 1e3 is 1000.0): divide whole numbers with //"
    if isinstance(value, float):
        return "round(x), floor(x) or ceil(x) make a whole number of it (make_divisible(x, 8) a multiple of 8); // divides whole numbers"
    return None


def _described(name: str, kind: LayerKind) -> str | None:
    """The argument whose description uses a word like ``name``: stride -> s, padding -> p, kernel_size -> k."""
    words = {word: spec.name for spec in kind.args for word in re.findall(r"[a-z]+", spec.doc.lower()) if len(word) > 2}
    close = _closest(name.lower().replace("_", ""), words) or _closest(name.lower().split("_")[0], words)
    return words[close] if close else None


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _closest(name: str, names) -> str | None:
    import difflib

    match = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
    return match[0] if match else None


def _known_names(env: Collection[str]) -> str | None:
    return f"the names here are {', '.join(sorted(env))}" if env else "no parameters are in scope here"


def _signature(name: str, kind: LayerKind, fixed: dict) -> str:
    parts = []
    for spec in kind.args:
        if spec.name in fixed:
            continue
        parts.append(spec.name if spec.default is REQUIRED else f"{spec.name}={values.show(spec.default) if spec.default is not None else '…'}")
    return f"usage: {name} {' '.join(parts)}".rstrip()


def parse_value(text: str) -> ir.Value:
    """A value given on the command line: ``3``, ``-2``, ``0.5``, ``true``, a list ``[3,4,6,3]`` or ``(1, 7)``
    (lists may nest: ``[[1,16],[6,24]]``)."""
    tokens = re.findall(r"[\[\](),]|[^\s\[\](),]+", text)
    value, end = _parse_value_tokens(text, tokens, 0, 0)
    if end != len(tokens):
        raise UsageError(f"'{text}' is not a value: '{tokens[end]}' follows a complete one", hint=_VALUE_HINT)
    return value


_VALUE_HINT = "parameter values are integers, decimals, true, false or lists of them: [3,4,6,3]"


def _parse_value_tokens(text: str, tokens: list[str], start: int, depth: int) -> tuple[ir.Value, int]:
    """The value that starts at ``tokens[start]``, and the index after it."""
    if start >= len(tokens):
        raise UsageError(f"'{text}' is not a value: it ends too early", hint=_VALUE_HINT)
    token = tokens[start]
    if token in "[(":
        if depth >= 8:
            raise UsageError(f"'{text[:40]}...' nests lists more than 8 deep", hint=_VALUE_HINT)
        closing = "]" if token == "[" else ")"
        items: list[ir.Value] = []
        position = start + 1
        while position < len(tokens) and tokens[position] != closing:
            item, position = _parse_value_tokens(text, tokens, position, depth + 1)
            items.append(item)
            if len(items) > values.MAX_LIST:
                raise UsageError(f"a list of more than {values.MAX_LIST:,} items", hint="no network needs a list this long")
            if position < len(tokens) and tokens[position] == ",":
                position += 1
            elif position < len(tokens) and tokens[position] != closing:
                raise UsageError(f"'{text}' is not a value: ',' or '{closing}' expected before '{tokens[position]}'",
                                 hint=_VALUE_HINT)
        if position >= len(tokens):
            raise UsageError(f"'{text}' is not a value: '{token}' is not closed", hint=_VALUE_HINT)
        return tuple(items), position + 1
    lowered = token.lower()
    if lowered in _TRUTH:
        return _TRUTH[lowered], start + 1
    number = re.fullmatch(r"([+-]?)((\d+\.\d*|\.\d+|\d+)(e[+-]?\d+)?)", lowered)
    if number is None:
        what = f"'{token}'" + (f" in '{text}'" if token != text.strip() else "")
        raise UsageError(f"{what} is not a number", hint=_VALUE_HINT)
    try:
        value = values.literal(number.group(2))
    except LimitError as err:
        raise UsageError(err.message, hint=err.hint) from None
    return (-value if number.group(1) == "-" else value), start + 1


def resolve_network(
    program: Program,
    network: str | None = None,
    params: dict[str, ir.Value] | None = None,
    input_shape: ir.Shape | None = None,
    limits: Limits | None = None,
    instances: dict[str, dict[str, ir.Value]] | None = None,
) -> ir.Network:
    """Resolve one network of a program at the given parameters (defaults for the rest). ``instances``, when
    given, receives the parameters of each block instance by its path (what an editor shows on hover).

    >>> resolve_network(load_program(Source("x.arch", "network n : [1, 28, 28] = flatten; fc 10")))   # doctest: +SKIP
    """
    definition = choose_network(program, network)
    limits = limits or Limits()
    evaluator = _Resolver(program, limits)  # what is evaluated outside the walk: parameters, shapes
    scope = _Scope({}, (), "")
    env = _bind_network_params(evaluator, definition, dict(params or {}), scope)
    scope.env = env
    if input_shape is None:
        # Names the parameters do not bind are symbolic sizes: [1, H, W].
        scope.env = {**_free_names(definition.input, env), **env}
        input_shape = ir.declared_shape(tuple(_shape_dim(evaluator, e, scope, "input") for e in definition.input))
        scope.env = env
    else:
        input_shape = ir.declared_shape(input_shape)
        for size in input_shape:
            if isinstance(size, bool) or not isinstance(size, (int, Sym)) or (isinstance(size, int) and size <= 0):
                raise UsageError(f"input sizes must be positive whole numbers or size names, not {values.show(size)}")
            values.bounded(size, None)
    scope.in_shape = input_shape
    # A small network is built in one walk. A large one is counted from the program alone (a spec that
    # must expand past the limits, whatever its shapes, stops there), then sized, in plain integers (a
    # spec that would explode with its shapes stops there), before anything is built.
    try:
        resolver = _Resolver(program, limits, budget=SIZE_FIRST_ABOVE)
        resolver.declared = _declaration(definition)
        resolver.instances = instances
        nodes, out_shape = resolver.items(definition.body, scope, input_shape, 0)
    except _OverBudget:
        check_expansion(program, definition.body, env, limits.bounds(), limits.max_depth,
                        lambda expr, known: evaluator.evaluate(expr, _Scope(known, (), "")))
        sizer = _Resolver(program, limits, sizing=True)
        sizer.items(definition.body, _Scope(env, input_shape, ""), input_shape, 0)
        _check_params(definition, sizer.params, limits)
        resolver = _Resolver(program, limits)
        resolver.instances = instances
        scope = _Scope(env, input_shape, "")
        nodes, out_shape = resolver.items(definition.body, scope, input_shape, 0)
    _check_params(definition, resolver.params, limits)
    if definition.output is not None:
        expected = ir.declared_shape(tuple(_shape_dim(evaluator, e, scope, "output") for e in definition.output))
        if expected != out_shape:
            hint = None
            if isinstance(out_shape, ir.Tokens) and len(expected) == 1:
                hint = "end the network with 'token 0' (a class token) or 'tokenmean', then 'linear N'"
            elif len(out_shape) == 3 and len(expected) == 1:
                hint = "end the network with 'gap; flatten' or 'flatten; linear N'"
            raise ShapeError(
                f"network {definition.name} outputs {described(out_shape)}, but its declaration says [{', '.join(map(ir.format_dim, expected))}]",
                definition.output_span, hint=hint,
            )
    return ir.Network.make(
        name=definition.name, params_bound=env, input_shape=input_shape, output_shape=out_shape,
        params=sum(n.params for n in nodes), macs=sum(n.macs for n in nodes), body=tuple(nodes), span=definition.span,
    )


def _declaration(definition: ir.NetworkDef) -> tuple[str, Span]:
    """The network's name and the span of its input shape's sizes, ``[28, 28]``."""
    first, last = definition.input[0].span, definition.input[-1].span
    return definition.name, first.source.span(first.line, first.column, last.end_line, last.end_column)


def _check_params(definition: ir.NetworkDef, params: ir.Dim, limits: Limits) -> None:
    if isinstance(params, int) and params > limits.max_params:
        weights = params * 4  # whole GiB in integers: an absurd spec's count would overflow a float
        size = f"{weights // 2**30:,} GiB" if weights >= 2**30 else f"{weights / 2**20:,.1f} MiB"
        raise LimitError(
            f"network {definition.name} needs {params:,} parameters ({size} of fp32 weights), "
            f"more than the limit of {limits.max_params:,}",
            definition.span,
            hint="if this is intended, raise the limit: archdsl compile or check --max-params N, "
                 "or archdsl.Limits(max_params=N) in Python (building it needs that much memory)",
        )


def input_of(program: Program, network: str | None = None, params: dict[str, ir.Value] | None = None) -> ir.Shape:
    """The declared input shape of a network at the given parameters, without resolving its body."""
    definition = choose_network(program, network)
    resolver = _Resolver(program, Limits())
    scope = _Scope({}, (), "")
    env = _bind_network_params(resolver, definition, dict(params or {}), scope)
    scope.env = {**_free_names(definition.input, env), **env}
    return ir.declared_shape(tuple(_shape_dim(resolver, e, scope, "input") for e in definition.input))


def choose_network(program: Program, network: str | None) -> ir.NetworkDef:
    names = list(program.networks)
    if network is not None:
        if network not in program.networks:
            close = _closest(network, names)
            raise UsageError(
                f"no network '{network}' in the spec",
                file=program.main.path,
                hint=f"did you mean '{close}'?" if close else f"its networks: {', '.join(names) or 'none'}",
            )
        return program.networks[network]
    if len(names) == 1:
        return program.networks[names[0]]
    if not names:
        raise ResolveError("the spec defines no network", file=program.main.path,
                           hint="add one: network NAME : [C, H, W] = ...")
    raise UsageError(f"the spec defines several networks ({', '.join(names)})", file=program.main.path,
                     hint="choose one with --network NAME")


def _bind_network_params(resolver: _Resolver, definition: ir.NetworkDef, given: dict, scope: _Scope) -> dict[str, ir.Value]:
    names = [p.name for p in definition.params]
    for name in given:
        if name not in names:
            close = _closest(name, names)
            raise UsageError(
                f"network {definition.name} has no parameter '{name}'",
                file=definition.span.file,
                hint=f"did you mean '{close}'?" if close else f"its parameters: {', '.join(names) or 'none'}",
            )
    env: dict[str, ir.Value] = {}
    for param in definition.params:
        if param.name in given:
            env[param.name] = _given(definition, param.name, given[param.name])
        elif param.default is not None:
            scope.env = env
            env[param.name] = resolver.evaluate(param.default, scope)
        else:
            raise UsageError(f"network {definition.name} needs a value for its parameter '{param.name}'",
                             file=definition.span.file, hint=f"pass --param {param.name}=VALUE")
    return env


def _call_text(block: ir.BlockDef, env: dict[str, ir.Value]) -> str:
    """``vgg(2, 64)``: a block call with the values of its parameters."""
    return f"{block.name}({', '.join(values.show(env[p.name]) for p in block.params)})"


def _check_sizes(what: str, shape: ir.Shape, span: Span) -> None:
    """Every size of a layer's or join's output within values.MAGNITUDE: its inputs are, but a flatten
    multiplies them and a concat adds them, and a chain of those grows without end."""
    if not all(size <= values.MAGNITUDE if type(size) is int else values.within(size) for size in shape):
        raise LimitError(f"{what} gives {show(shape)}, past what archdsl computes with: numbers within ±2**62 "
                         f"({values.MAGNITUDE:,})", span,
                         hint="no real network comes near it; a size (or a divisor) that doubles at each step passes it after 62 steps")


def _given(definition: ir.NetworkDef, name: str, value: ir.Value) -> ir.Value:
    """A parameter's value from the command line or the API (a Python list is a list), refused if it is too
    large."""
    try:
        return values.bounded(_from_python(value), None)
    except LimitError as err:
        raise UsageError(f"network {definition.name}, parameter '{name}': {err.message}", file=definition.span.file,
                         hint=err.hint) from None


def _from_python(value):
    """Python lists and tuples as the language's lists (tuples), recursively."""
    if isinstance(value, (list, tuple)):
        return tuple(_from_python(v) for v in value)
    return value


def _free_names(exprs: tuple[ir.Expr, ...], env: dict) -> dict[str, Sym]:
    """Symbols for the bare names of an input shape that no parameter binds."""
    return {e.name: Sym.symbol(e.name) for e in exprs if isinstance(e, ir.Var) and e.name not in env and e.name not in _TRUTH}


def _shape_dim(resolver: _Resolver, expr: ir.Expr, scope: _Scope, what: str) -> ir.Dim:
    value = resolver.evaluate(expr, scope)
    if isinstance(value, Sym):
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ShapeError(f"{what} sizes must be positive whole numbers, not {values.show(value)}", expr.span)
    return value

