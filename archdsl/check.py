"""``archdsl check`` and the language server: every independent error of a spec, not only the first.

Three passes, each going on after a mistake:

* loading (``load_program(recover=True)``): syntax, definition by definition; duplicates; imports;
* the calls of every block and network, on their own: unknown names of layers, blocks, parameters and
  functions, and arguments that no call of that layer or block can take (``archdsl/resolve.py``'s own
  matching, without values);
* each network at its parameters (defaults for the rest): values and shapes. A network stops at its first
  such error, since the layers after it have no input shape to check; an error inside a block instance is
  located in the block, with the call as a note.

A block is only fully checked where a network instantiates it (its shapes depend on its arguments).

    block b(c) = conv3x3 c; rleu                 # error: unknown layer or block 'rleu'
    network n : [1, 8, 8] = b(8, 2); linear 10   # error: block b takes 1 argument; error: linear takes a flat vector
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from archdsl import ir, values
from archdsl.errors import ArchError, ResolveError, UsageError
from archdsl.program import Program, load_program, paused_gc, read_source
from archdsl.resolve import (
    Limits,
    choose_network,
    lookup,
    match_block_args,
    match_layer_args,
    missing_block_param,
    resolve_network,
    unknown_call,
    unknown_name,
    unstated_layer_args,
)
from archdsl.source import Source

_TRUTH = ("true", "false")


@dataclass
class Report:
    """What checking a spec found: its program (None when the file could not be read), every error in the
    order of the files and places, and for each network checked, its resolved graph or why it was not."""

    source: Source | None
    program: Program | None
    errors: list[ArchError] = field(default_factory=list)
    # Each network checked, in order: its resolved graph, or why it was not resolved.
    networks: dict[str, ir.Network | str] = field(default_factory=dict)
    instances: dict[str, dict[str, ir.Value]] = field(default_factory=dict)  # block instance path -> parameters

    @property
    def resolved(self) -> dict[str, ir.Network]:
        return {name: net for name, net in self.networks.items() if isinstance(net, ir.Network)}

    def summary(self) -> str:
        """``lenet 1x28x28 -> 10; b (not instantiated: no value for c)``: the networks as checked."""
        parts = [f"{name} {ir.format_shape(net.input_shape)} -> {ir.format_shape(net.output_shape)}"
                 if isinstance(net, ir.Network) else f"{name} ({net})" for name, net in self.networks.items()]
        if not parts and self.program is not None:
            return f"{len(self.program.blocks)} blocks, no network"
        return "; ".join(parts)


def check_source(source: Source, import_dirs: Sequence[Path] | None = None, networks: Sequence[str] | None = None,
                 params: dict | None = None, limits: Limits | None = None, input_shape: ir.Shape | None = None) -> Report:
    """Every error of ``source``: each network (or those named) at ``params`` and its defaults for the rest (and at
    ``input_shape`` instead of the declared one).

    >>> [e.code for e in check_source(Source("x.arch", "network n : [1, 8, 8] = rleu; conv3x3 8 2")).errors]
    ['A101', 'A202']
    """
    with paused_gc():
        program = load_program(source, import_dirs, recover=True)
        report = Report(source, program, list(program.errors))
        for err in call_errors(program):
            _add(report.errors, err)
        names = list(networks) if networks is not None else list(program.networks)
        if params and not names:
            _add(report.errors, UsageError(f"{source.path} defines no network for --param to set", file=source.path))
        for name in names:
            _check_network(report, program, name, params or {}, limits, input_shape)
        report.errors.sort(key=lambda err: _place(program, err))
        return report


def check_file(path: str | Path, import_dirs: Sequence[Path] | None = None, network: str | None = None,
               params: dict | None = None, limits: Limits | None = None) -> Report:
    """``check_source`` of a file; a file that cannot be read is a report with that one error."""
    try:
        source = read_source(path)
    except ArchError as err:
        return Report(None, None, [err])
    return check_source(source, import_dirs, [network] if network else None, params, limits)


def spec_files(specs: Sequence[str | Path]) -> list[str | Path]:
    """The specs that command-line arguments name: a folder stands for its ``.arch`` files, recursively and in
    order (folders whose names start with '.' left out), anything else for itself ('-', a file, a zoo name).

    A folder without a spec is a UsageError."""
    found: list[str | Path] = []
    for spec in specs:
        path = Path(spec)
        if str(spec) != "-" and path.is_dir():
            files = sorted(p for p in path.rglob("*.arch")
                           if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not files:
                raise UsageError(f"{spec} is a folder without .arch files", hint="name spec files or folders that hold them")
            found.extend(files)
        else:
            found.append(spec)
    return found


def _check_network(report: Report, program: Program, name: str, params: dict, limits: Limits | None,
                   input_shape: ir.Shape | None) -> None:
    try:
        definition = choose_network(program, name)
    except ArchError as err:
        _add(report.errors, err)
        return
    missing = [p.name for p in definition.params if p.default is None and p.name not in params]
    broken = sorted(reached(program, definition.body) & program.broken)
    if missing:
        report.networks[name] = f"not instantiated: no value for {', '.join(missing)}"
    elif broken:
        report.networks[name] = f"not instantiated: {', '.join(broken)} does not parse"
    else:
        try:
            report.networks[name] = resolve_network(program, name, params, input_shape, limits, report.instances)
        except ArchError as err:
            _add(report.errors, err)


def reached(program: Program, body: tuple[ir.Item, ...]) -> set[str]:
    """The names of the blocks a body calls, directly or through other blocks (and names of no block)."""
    seen: set[str] = set()
    stack = [body]
    while stack:
        for item in ir.walk_items(stack.pop()):
            if isinstance(item, ir.Call) and item.name not in seen and lookup(item.name) is None:
                seen.add(item.name)
                if item.name in program.blocks:
                    stack.append(program.blocks[item.name].body)
    return seen


def call_errors(program: Program) -> list[ArchError]:
    """The errors of every call and expression in every block and network of a program that do not depend on
    values: unknown layers, blocks, names and functions, and arguments that do not fit the layer or block."""
    errors: list[ArchError] = []
    for definition in (*program.blocks.values(), *program.networks.values()):
        names: list[str] = []
        for param in definition.params:
            if param.default is not None:
                errors.extend(_expression_errors(param.default, names, program))
            names.append(param.name)
        if isinstance(definition, ir.NetworkDef) and definition.output is not None:
            for expr in definition.output:
                errors.extend(_expression_errors(expr, names, program))
        errors.extend(_body_errors(definition.body, names, program))
    return errors


def _body_errors(body: tuple[ir.Item, ...], names: list[str], program: Program) -> list[ArchError]:
    """Without recursion: a body may nest thousands deep (the resolver then refuses it as too deep)."""
    errors: list[ArchError] = []
    stack: list[tuple[ir.Item, tuple[str, ...]]] = [(item, tuple(names)) for item in reversed(body)]
    while stack:
        item, scope = stack.pop()
        if isinstance(item, ir.Call):
            errors.extend(_call_errors(item, scope, program))
        elif isinstance(item, ir.Group):
            stack.extend((inner, scope) for inner in reversed(item.items))
        elif isinstance(item, ir.Repeat):
            errors.extend(_expression_errors(item.count, scope, program))
            stack.append((item.item, scope))
        elif isinstance(item, ir.Loop):
            errors.extend(_expression_errors(item.values, scope, program))
            stack.append((item.item, (*scope, item.name)))
        elif isinstance(item, ir.Cond):
            errors.extend(_expression_errors(item.test, scope, program))
            stack.extend(((item.otherwise, scope), (item.then, scope)))
        else:
            stack.extend((inner, scope) for branch in reversed(item.branches) for inner in reversed(branch))
    return errors


def _call_errors(call: ir.Call, scope: tuple[str, ...], program: Program) -> list[ArchError]:
    errors: list[ArchError] = []
    try:
        block = program.blocks.get(call.name)
        found = lookup(call.name)
        if block is not None:
            given = {name for name, _ in match_block_args(block, call)}
            missing = [p for p in block.params if p.name not in given and p.default is None]
            if missing:
                raise missing_block_param(block, call, missing[0])
        elif found is not None:
            kind, preset = found
            given = {spec.name for spec, _ in match_layer_args(kind, preset, call, scope, program.blocks)}
            unstated_layer_args(kind, preset, given, call)
        elif call.name not in program.broken:
            raise unknown_call(call, program)
    except ResolveError as err:
        errors.append(err)
    for arg in call.args:
        errors.extend(_expression_errors(arg.value, scope, program))
    return errors


def _expression_errors(expr: ir.Expr, scope: Sequence[str], program: Program) -> list[ArchError]:
    errors: list[ArchError] = []
    for node in ir.free_names(expr):
        if node.name not in scope and node.name not in _TRUTH:
            errors.append(unknown_name(node, scope, program))
    for node in ir.subexpressions(expr):
        if isinstance(node, ir.Func) and node.name not in values.FUNCTIONS:
            errors.append(values.unknown_function(node.name, node.span))
    return errors


def _add(errors: list[ArchError], err: ArchError) -> None:
    """Add an error unless the same message at the same place is there already (a resolution may meet what
    the checks of calls found)."""
    if not any(e.message == err.message and _same_place(e, err) for e in errors):
        errors.append(err)


def _same_place(a: ArchError, b: ArchError) -> bool:
    if a.span is None or b.span is None:
        return a.span is b.span and a.file == b.file
    return (a.span.file, a.span.line, a.span.column) == (b.span.file, b.span.line, b.span.column)


def _place(program: Program, err: ArchError) -> tuple:
    """Errors in the main file first, then by file, line and column; those without a place last."""
    if err.span is None:
        return (2, "", 0, 0)
    main = err.span.source is program.main
    return (0 if main else 1, err.span.file, err.span.line, err.span.column)


def minimum_report(path: Path, import_dirs: Sequence[Path] | None = None, network: str | None = None,
                   params: dict | None = None) -> str:
    """``archdsl check --min-input``: the smallest input each network (or the chosen one) accepts."""
    from archdsl.minimum import minimum_input

    with paused_gc():
        program = load_program(read_source(path), import_dirs)
        # One network (the one named, or the only one; none is an error), else each in turn.
        names = [choose_network(program, network).name] if network or len(program.networks) < 2 else list(program.networks)
        return "\n".join(minimum_input(program, name, params).report() for name in names)
