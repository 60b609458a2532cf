"""Loading a spec and everything it imports into one ``Program``: its blocks and networks by name.

``import "blocks/vgg.arch"`` is relative to the importing file. Each file is parsed once, however
many files import it, so shared blocks live once. Import cycles are reported with the whole chain.
"""

from __future__ import annotations

import gc
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from archdsl import ir
from archdsl.errors import ResolveError
from archdsl.parser import parse
from archdsl.source import Source, Span


@dataclass
class Program:
    """A spec with its imports: every block and network by name, and where each came from."""

    main: Source
    blocks: dict[str, ir.BlockDef] = field(default_factory=dict)
    networks: dict[str, ir.NetworkDef] = field(default_factory=dict)
    sources: dict[str, Source] = field(default_factory=dict)

    def add_module(self, module: ir.Module, *, own: bool) -> None:
        for block in module.blocks:
            self._define(self.blocks, "block", block)
        if own:
            for network in module.networks:
                self._define(self.networks, "network", network)

    @staticmethod
    def _define(table: dict, what: str, node: ir.BlockDef | ir.NetworkDef) -> None:
        previous = table.get(node.name)
        if previous is not None:
            raise ResolveError(
                f"{what} '{node.name}' is defined twice",
                node.span,
                hint=f"rename one of them; every {what} name must be unique across a spec and its imports",
                notes=(("first defined here", previous.span),),
            )
        table[node.name] = node


@contextmanager
def paused_gc():
    """Compilation allocates many small objects and frees none of them before it ends: pausing the
    cyclic collector keeps the time per layer flat (its passes grow with the heap) instead of
    doubling at 10,000 layers. The limits in ``resolve.Limits`` bound what is allocated."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_program(source: Source) -> Program:
    """Parse ``source`` and, transitively, the files it imports.

    Networks come from the main file only; blocks from every file.
    """
    program = Program(main=source)
    base = Path(source.path).resolve().parent if _is_file(source) else Path.cwd()
    _load(program, source, parse(source), base, chain=(_canonical(source),), own=True)
    return program


def _is_file(source: Source) -> bool:
    return not (source.path.startswith("<") and source.path.endswith(">"))


def _canonical(source: Source) -> str:
    return str(Path(source.path).resolve()) if _is_file(source) else source.path


def _load(program: Program, source: Source, module: ir.Module, base: Path, chain: tuple[str, ...], own: bool) -> None:
    program.sources[chain[-1]] = source
    program.add_module(module, own=own)
    for imp in module.imports:
        target = (base / imp.path).resolve()
        key = str(target)
        if key in chain:
            cycle = " -> ".join(_display(p) for p in (*chain[chain.index(key):], key))
            raise ResolveError(f"import cycle: {cycle}", imp.span, hint="move the shared blocks into a file that both import")
        if key in program.sources:
            continue
        imported = _read(target, imp.span, imp.path)
        _load(program, imported, parse(imported), target.parent, (*chain, key), own=False)


def _display(path: str) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return path


def _read(target: Path, span: Span, written: str) -> Source:
    try:
        return Source(_display(str(target)), target.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResolveError(f"cannot import \"{written}\": no file {_display(str(target))}", span,
                           hint="import paths are relative to the importing file") from None
    except IsADirectoryError:
        raise ResolveError(f"cannot import \"{written}\": it is a directory", span) from None
    except UnicodeDecodeError as err:
        raise ResolveError(f"cannot import \"{written}\": not UTF-8 text ({err.reason} at byte {err.start})", span) from None
    except OSError as err:
        raise ResolveError(f"cannot import \"{written}\": {err.strerror}", span) from None


def read_source(path: str | Path) -> Source:
    """Read a spec file, with the file-system's errors as ArchErrors."""
    try:
        return Source.read(path)
    except FileNotFoundError:
        raise ResolveError(f"no such file: {path}", file=str(path)) from None
    except IsADirectoryError:
        raise ResolveError(f"{path} is a directory, not a spec", file=str(path)) from None
    except UnicodeDecodeError as err:
        raise ResolveError(f"not UTF-8 text ({err.reason} at byte {err.start})", file=str(path)) from None
    except OSError as err:
        raise ResolveError(f"cannot read: {err.strerror}", file=str(path)) from None
