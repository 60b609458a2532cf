"""Loading a spec and everything it imports into one ``Program``: its blocks and networks by name.

``import "blocks/vgg.arch"`` is relative to the importing file. Each file is parsed once, however
many files import it, so shared blocks live once. Import cycles are reported with the whole chain.
An import reaches only into the folders allowed (by default the main spec's own folder and those
below it; ``--allow-import-dir`` adds others), so a spec copied from someone else cannot read
files elsewhere on the machine.
"""

from __future__ import annotations

import codecs
import gc
import os
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from archdsl import ir
from archdsl.errors import ArchError, LimitError, ResolveError
from archdsl.layers import lookup
from archdsl.parser import MAX_SOURCE_SIZE, parse
from archdsl.reading import NotRegularFile, open_regular
from archdsl.source import Source


@dataclass
class Program:
    """A spec with its imports: every block and network by name, and where each came from."""

    main: Source
    blocks: dict[str, ir.BlockDef] = field(default_factory=dict)
    networks: dict[str, ir.NetworkDef] = field(default_factory=dict)
    sources: dict[str, Source] = field(default_factory=dict)
    import_dirs: tuple[Path, ...] = ()
    # Loading that goes on after a mistake (`archdsl check`, the language server) keeps the errors here, and the
    # names of the definitions that do not parse or cannot be defined; None: the first mistake is raised.
    errors: list[ArchError] | None = None
    broken: set[str] = field(default_factory=set)

    def fail(self, err: ArchError) -> None:
        """Raise ``err``, or keep it when loading goes on after mistakes."""
        if self.errors is None:
            raise err
        self.errors.append(err)

    def add_module(self, module: ir.Module, *, own: bool) -> None:
        for block in module.blocks:
            if lookup(block.name) is not None:
                self.fail(ResolveError(f"block '{block.name}' has the name of a built-in layer", block.span,
                                       hint="rename the block; `archdsl layers` lists the layers' names"))
                continue
            self._define(self.blocks, "block", block)
        if own:
            for network in module.networks:
                self._define(self.networks, "network", network)

    def _define(self, table: dict, what: str, node: ir.BlockDef | ir.NetworkDef) -> None:
        seen: dict[str, ir.Param] = {}
        for param in node.params:
            if param.name in seen:
                self.fail(ResolveError(f"{what} {node.name} has two parameters named '{param.name}'", param.span,
                                       hint="rename one of them", notes=(("the first one", seen[param.name].span),)))
                self.broken.add(node.name)
                return
            seen[param.name] = param
        previous = table.get(node.name)
        if previous is not None:
            self.fail(ResolveError(
                f"{what} '{node.name}' is defined twice",
                node.span,
                hint=f"rename one of them; every {what} name must be unique across a spec and its imports",
                notes=(("first defined here", previous.span),),
            ))
            return
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


def load_program(source: Source, import_dirs: Sequence[str | Path] | None = None, *, recover: bool = False) -> Program:
    """Parse ``source`` and, transitively, the files it imports.

    Networks come from the main file only; blocks from every file. Imports may reach files in the
    folder of ``source``, in ``import_dirs``, and below them. With ``recover``, loading goes on after a
    mistake: each file is parsed definition by definition (``recovery``), and ``program.errors`` holds
    every error found, an error in an imported file with the import as a note.
    """
    base = real_path(source.path).parent if is_file(source) else Path.cwd()
    program = Program(main=source, import_dirs=(base, *(real_path(d) for d in import_dirs or ())),
                      errors=[] if recover else None)
    _load(program, source, _parse(program, source), base, chain=(_canonical(source),), own=True)
    return program


def _parse(program: Program, source: Source) -> ir.Module:
    if program.errors is None:
        return parse(source)
    from archdsl.recovery import parse_recovering

    recovered = parse_recovering(source)
    program.errors.extend(recovered.errors)
    program.broken |= recovered.broken
    return recovered.module


def is_file(source: Source) -> bool:
    """Whether a source is a file (not text given as ``<string>`` or the like)."""
    return not (source.path.startswith("<") and source.path.endswith(">"))


def _canonical(source: Source) -> str:
    return str(real_path(source.path)) if is_file(source) else source.path


def real_path(path: str | Path) -> Path:
    """The absolute path with every link resolved, never raising: a loop of links stays as far as it
    resolved (opening it then fails with the file system's own reason)."""
    return Path(os.path.realpath(path))


def _load(program: Program, source: Source, module: ir.Module, base: Path, chain: tuple[str, ...], own: bool) -> None:
    program.sources[chain[-1]] = source
    program.add_module(module, own=own)
    for imp in module.imports:
        try:
            _import(program, imp, base, chain)
        except ArchError as err:
            program.fail(err)


def _import(program: Program, imp: ir.Import, base: Path, chain: tuple[str, ...]) -> None:
    _check_import_path(imp)
    target = real_path(base / imp.path)
    key = str(target)
    if key in chain:
        cycle = " -> ".join(_display(p) for p in (*chain[chain.index(key):], key))
        raise ResolveError(f"import cycle: {cycle}", imp.span, hint="move the shared blocks into a file that both import")
    if key in program.sources:
        return
    if not any(target.is_relative_to(folder) for folder in program.import_dirs):
        folders = ", ".join(_display(str(folder)) for folder in program.import_dirs)
        raise ResolveError(
            f"cannot import \"{imp.path}\": {_display(key)} is outside the folders imports may reach ({folders})",
            imp.span,
            hint=f"if you trust it, allow its folder: --allow-import-dir {_display(str(target.parent))}",
        )
    imported = read_source(target, imp)
    found = len(program.errors or ())
    try:
        module = _parse(program, imported)
    except ArchError as err:
        raise err.with_note("imported here", imp.span) from None
    _load(program, imported, module, target.parent, (*chain, key), own=False)
    for err in (program.errors or [])[found:]:  # kept while loading goes on: each says how this file reaches it
        err.with_note("imported here", imp.span)


def _read_regular(path: str | Path) -> tuple[bytes, int]:
    """A regular file's size and at most ``MAX_SOURCE_SIZE + 1`` of its bytes (only a bounded prefix is ever
    read: a 100 MB file costs no more than a 10 MB one)."""
    with open_regular(path) as file:
        size = os.fstat(file.fileno()).st_size
        return (file.read(MAX_SOURCE_SIZE + 1) if size <= MAX_SOURCE_SIZE else b""), size


def _check_import_path(imp: ir.Import) -> None:
    """An import path must be a name the file system can take: no NUL byte, nothing that cannot be encoded."""
    if "\0" in imp.path:
        raise ResolveError("an import path cannot hold a NUL byte", imp.span, hint="remove it from the path")
    try:
        os.fsencode(imp.path)
    except UnicodeEncodeError as err:
        raise ResolveError(f"an import path cannot hold {imp.path[err.start]!r}, which is not a character",
                           imp.span, hint="write the file's name in UTF-8") from None


def _display(path: str) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return path


def read_source(path: str | Path, imported_by: ir.Import | None = None) -> Source:
    """Read a spec file (the main one, or one that ``imported_by`` names), with the file system's errors,
    sizes over ``MAX_SOURCE_SIZE`` and bytes that are not UTF-8 as ArchErrors."""
    name = str(path) if imported_by is None else _display(str(path))
    span = imported_by.span if imported_by is not None else None
    what = f"cannot import \"{imported_by.path}\": " if imported_by is not None else ""
    try:
        data, size = _read_regular(path)
    except FileNotFoundError:
        if imported_by is None:
            raise ResolveError("no such file", file=name) from None
        raise ResolveError(f"{what}there is no file {name}", span, hint="import paths are relative to the importing file") from None
    except NotRegularFile as err:
        raise ResolveError(f"{what}{name} is {err.kind}, not a spec file", span, file=name,
                           hint="name a spec file in it" if err.is_folder else
                           "a spec is a regular file; save the text to one") from None
    except OSError as err:
        raise ResolveError(f"{what}cannot read {name}: {err.strerror or err}", span, file=name) from None
    except ValueError as err:  # a NUL byte in the name
        raise ResolveError(f"{what}cannot read {name!r}: {err}", span, file=name) from None
    if size > MAX_SOURCE_SIZE or len(data) > MAX_SOURCE_SIZE:
        raise LimitError(
            f"{what}{name} is {max(size, len(data)):,} bytes, more than the limit of {MAX_SOURCE_SIZE:,} bytes (10 MiB)",
            span, hint="a spec that large is almost surely not one; split it into files that import each other",
            file=name,
        )
    data = data.removeprefix(codecs.BOM_UTF8)  # some editors on Windows start files with one
    try:
        return Source(name, data.decode("utf-8"))
    except UnicodeDecodeError as err:
        # Point at the first bad byte: everything before it decodes, so its line and column are known.
        source = Source(name, data.decode("utf-8", errors="replace"))
        error = ResolveError(
            f"the file is not UTF-8 text: it cannot be decoded here ({err.reason} 0x{data[err.start]:02x})",
            source.span(*source.position(len(data[: err.start].decode("utf-8")))),
            hint="save the file as UTF-8 (a spec is plain text)",
        )
        raise (error.with_note("imported here", span) if span is not None else error) from None
