"""``archdsl check``: every network of a spec at its defaults, and every block's names.

A block is only fully checked where a network instantiates it (its shapes depend on its
arguments); on its own, each name it calls must still be a block or a layer kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from archdsl import ir
from archdsl.errors import UsageError
from archdsl.program import Program, load_program, paused_gc, read_source
from archdsl.resolve import Limits, choose_network, lookup, resolve_network, unknown_call


def check_block_names(program: Program) -> None:
    """Raise for the first call, in any block, of a name that is neither a block nor a layer."""
    for block in program.blocks.values():
        for item in ir.walk_items(block.body):
            if isinstance(item, ir.Call) and item.name not in program.blocks and lookup(item.name) is None:
                raise unknown_call(item, program)


def check_file(path: Path, import_dirs: Sequence[Path] | None = None, network: str | None = None,
               params: dict | None = None, limits: Limits | None = None) -> str:
    """Check one spec: each network (or the one named) at ``params`` and its defaults for the rest.
    The one-line report when it is fine, an ArchError when it is not."""
    with paused_gc():
        program = load_program(read_source(path), import_dirs)
        check_block_names(program)
        return _check_networks(path, program, network, params or {}, limits)


def _check_networks(path: Path, program: Program, network: str | None, params: dict, limits: Limits | None) -> str:
    reports = []
    definitions = [choose_network(program, network)] if network else list(program.networks.values())
    for definition in definitions:
        name = definition.name
        missing = [p.name for p in definition.params if p.default is None and p.name not in params]
        if missing:
            reports.append(f"{name} (not instantiated: no value for {', '.join(missing)})")
            continue
        resolved = resolve_network(program, name, params, limits=limits)
        reports.append(f"{name} {ir.format_shape(resolved.input_shape)} -> {ir.format_shape(resolved.output_shape)}")
    if params and not definitions:
        raise UsageError(f"{path} defines no network for --param to set", file=str(path))
    what = "; ".join(reports) if reports else f"{len(program.blocks)} blocks, no network"
    return f"{path}: ok: {what}"


def minimum_report(path: Path, import_dirs: Sequence[Path] | None = None, network: str | None = None,
                   params: dict | None = None) -> str:
    """``archdsl check --min-input``: the smallest input each network (or the chosen one) accepts."""
    from archdsl.minimum import minimum_input

    with paused_gc():
        program = load_program(read_source(path), import_dirs)
        # One network (the one named, or the only one; none is an error), else each in turn.
        names = [choose_network(program, network).name] if network or len(program.networks) < 2 else list(program.networks)
        return "\n".join(minimum_input(program, name, params).report() for name in names)
