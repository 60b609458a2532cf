"""The answers of the language server, from an ``Analysis``: diagnostics, inlay hints, hover, definitions,
references, rename, document symbols and formatting. Completion and signature help are in ``editing``.

Every answer is a plain function of the analysis and a place, so the tests and the benchmark can call it
without a client; ``server`` only wires them to the protocol.
"""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types as lsp

from archdsl import ir
from archdsl.errors import ArchError
from archdsl.lsp.analysis import Analysis
from archdsl.lsp.places import Found, Positions, binding, everything, found_at, import_at, own_definitions
from archdsl.program import is_file, real_path
from archdsl.source import Span

DOCS = "https://github.com/archdsl/archdsl/blob/main/docs/errors.md"


class Context:
    """An analysis with its document's URI and the client's position encoding: what every answer needs."""

    def __init__(self, analysis: Analysis, uri: str, encoding: str = "utf-16") -> None:
        self.analysis = analysis
        self.uri = uri
        self.encoding = encoding
        self.positions = Positions(analysis.source.text, encoding)
        self._others: dict[int, Positions] = {}

    def location(self, span: Span) -> lsp.Location:
        """A span anywhere (this document or a file it imports) as a protocol location."""
        return lsp.Location(uri=self.uri_of(span), range=self.range(span))

    def range(self, span: Span) -> lsp.Range:
        if span.source is self.analysis.source:
            return self.positions.range(span)
        positions = self._others.setdefault(id(span.source), Positions(span.source.text, self.encoding))
        return positions.range(span)

    def uri_of(self, span: Span) -> str:
        if span.source is self.analysis.source or not is_file(span.source):
            return self.uri
        return real_path(span.source.path).as_uri()

    def offset(self, position: lsp.Position) -> int:
        return self.positions.offset(position)


# -- diagnostics ---------------------------------------------------------------------------------------------


def diagnostics(context: Context) -> list[lsp.Diagnostic]:
    """Every error of the document, each once, at its place in this document: an error in an imported file
    where this file reaches it (the call or the import in its notes), the real place as related information."""
    out = []
    seen = set()
    for err in context.analysis.report.errors:
        diagnostic = _diagnostic(context, err)
        key = (diagnostic.range.start.line, diagnostic.range.start.character, diagnostic.message)
        if key not in seen:
            seen.add(key)
            out.append(diagnostic)
    return out


def _diagnostic(context: Context, err: ArchError) -> lsp.Diagnostic:
    source = context.analysis.source
    here = err.span if err.span is not None and err.span.source is source else None
    related = [lsp.DiagnosticRelatedInformation(location=context.location(where), message=note)
               for note, where in err.notes if where is not None and where is not here]
    message = err.message
    if here is None:
        here = next((where for _, where in err.notes if where is not None and where.source is source), None)
        if err.span is not None:
            related.insert(0, lsp.DiagnosticRelatedInformation(location=context.location(err.span),
                                                               message=f"{err.message} (here)"))
            message = f"{Path(err.span.file).name}:{err.span.line}:{err.span.column}: {err.message}"
        if here is None:
            here = _import_of(context, err.span) or context.analysis.choice.span or source.span(1, 1, 1, 1)
    if err.hint:
        message += f"\nhint: {err.hint}"
    code = err.code
    return lsp.Diagnostic(
        range=context.range(here), message=message, severity=lsp.DiagnosticSeverity.Error, code=code,
        code_description=lsp.CodeDescription(href=f"{DOCS}#{code.lower()}"), source="archdsl",
        related_information=related or None,
    )


def _import_of(context: Context, span: Span | None) -> Span | None:
    """The import of this document that brings ``span``'s file (the first import, for one it brings through
    others)."""
    analysis = context.analysis
    imports = [d for d in analysis.definitions if d.keyword == "import"]
    if span is None or not imports:
        return None
    chosen = imports[0]
    for definition in imports:
        found = import_at(analysis, definition.start)
        if found is not None and is_file(analysis.source) and \
                real_path(Path(analysis.source.path).parent / found[0]) == real_path(span.source.path):
            chosen = definition
    line, column = analysis.position(chosen.start)
    end_line, end_column = analysis.position(chosen.end)
    return analysis.source.span(line, column, end_line, end_column)


# -- inlay hints ---------------------------------------------------------------------------------------------


def inlay_hints(context: Context, within: lsp.Range | None = None) -> list[lsp.InlayHint]:
    """The output shape after each layer and block call of this document (every shape a call takes, in a block
    called several times), and a block call's parameters and MACs."""
    analysis = context.analysis
    hints = []
    for definition in own_definitions(analysis):
        for found in everything(definition):
            if found.kind != "call":
                continue
            nodes = analysis.at(found.node.span)
            if not nodes:
                continue
            position = context.positions.position(found.node.span.end_line, found.node.span.end_column)
            if within is not None and not _inside(position, within):
                continue
            hints.append(lsp.InlayHint(position=position, label=hint_label(nodes), kind=lsp.InlayHintKind.Type,
                                       padding_left=True))
    return sorted(hints, key=lambda h: (h.position.line, h.position.character))


def hint_label(nodes: list[ir.Resolved]) -> str:
    """``→ 64×56×56``; ``→ 64×56×56 | 128×28×28`` where the shapes differ; a block call's costs after it."""
    shapes = list(dict.fromkeys(ir.format_shape(node.out_shape, "×") for node in nodes))
    label = "→ " + " | ".join(shapes[:4]) + (" | …" if len(shapes) > 4 else "")
    if isinstance(nodes[0], ir.Block):
        params, macs = sum(n.params for n in nodes), sum(n.macs for n in nodes)
        times = f"{len(nodes)} calls, " if len(nodes) > 1 else ""
        label += f"  ({times}{short(params)} params, {short(macs)} MACs)"
    return label


def short(number) -> str:
    """``74112`` -> ``74.1K``, ``115605504`` -> ``115.6M``; a symbolic count as it is."""
    if not isinstance(number, int):
        return str(number)
    for size, suffix in ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K")):
        if abs(number) >= size:
            return f"{number / size:.1f}{suffix}"
    return str(number)


def _inside(position: lsp.Position, within: lsp.Range) -> bool:
    return (within.start.line, within.start.character) <= (position.line, position.character) <= \
        (within.end.line, within.end.character)


# -- hover ---------------------------------------------------------------------------------------------------


def hover(context: Context, position: lsp.Position) -> lsp.Hover | None:
    """What a layer, block call, parameter, function or input size at ``position`` is, with its shapes and
    costs in the chosen network."""
    analysis = context.analysis
    found = found_at(analysis, context.offset(position))
    if found is None:
        return None
    text = _hover_text(analysis, found)
    if text is None:
        return None
    return lsp.Hover(contents=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=text),
                     range=context.range(found.span))


def _hover_text(analysis: Analysis, found: Found) -> str | None:
    from archdsl import values
    from archdsl.layers import lookup

    program = analysis.program
    if found.kind == "call":
        nodes = analysis.at(found.node.span)
        block = program.blocks.get(found.name)
        if block is not None:
            return _block_hover(block, nodes)
        kind = lookup(found.name)
        return _layer_hover(found.name, kind, nodes) if kind is not None else None
    if found.kind in ("block", "network"):
        if found.kind == "block":
            return _block_hover(found.node, _instances_of(analysis, found.name))
        net = analysis.report.resolved.get(found.name)
        text = f"```\nnetwork {found.name}{_params(found.node)}\n```"
        if net is not None:
            text += (f"\n\n{ir.format_shape(net.input_shape, '×')} → {ir.format_shape(net.output_shape, '×')}, "
                     f"{net.params:,} params, {net.macs:,} MACs")
        return text
    if found.kind in ("var", "param", "kwarg"):
        return _parameter_hover(analysis, found)
    if found.kind == "loop":
        return f"`{found.name}`: a loop's name, bound to each item of its list in turn"
    if found.kind == "func":
        return f"```\n{found.name}(...)\n```\n\n{values.FUNCTIONS.get(found.name, 'an unknown function')}"
    if found.kind == "input":
        what = {"c": "channels", "h": "height", "w": "width"}.get(found.name, "?")
        return f"`in.{found.name}`: the {what} of the tensor entering this {'block' if isinstance(found.definition, ir.BlockDef) else 'network'}"
    return None


def where(span: Span) -> str:
    """``lib.arch:1:7``: a place by its file's name, as an editor's reader knows it."""
    return f"{Path(span.file).name}:{span.line}:{span.column}"


def _params(definition) -> str:
    return f"({', '.join(p.name for p in definition.params)})" if definition.params else ""


def _block_hover(block: ir.BlockDef, nodes: list[ir.Resolved]) -> str:
    text = f"```\nblock {block.name}{_params(block)}\n```\n\ndefined at {where(block.span)}"
    if nodes:
        rows = [f"- `{n.call}`: {ir.format_shape(n.in_shape, '×')} → {ir.format_shape(n.out_shape, '×')}, "
                f"{n.params:,} params, {n.macs:,} MACs" for n in nodes[:8]]
        more = [f"- … {len(nodes) - 8} more"] if len(nodes) > 8 else []
        text += "\n\n" + "\n".join(rows + more)
    return text


def _layer_hover(name: str, found, nodes: list[ir.Resolved]) -> str:
    from archdsl.layers import REQUIRED, describe_kinds  # noqa: F401  (the registry is loaded with lookup)

    kind, _ = found
    usage = " ".join([name, *(spec.name if spec.default is REQUIRED else f"{spec.name}={_value(spec.default)}"
                               for spec in kind.args)])
    text = f"```\n{usage}\n```\n\n{kind.doc}" + (f" (`{kind.key}`, {kind.family})" if kind.key != name else f" ({kind.family})")
    if kind.args:
        text += "\n\n" + "\n".join(f"- `{spec.name}`: {spec.doc}" for spec in kind.args if spec.doc)
    for node in nodes[:4]:
        text += (f"\n\n`{node.path}`: {ir.format_args(node.args)}  \n{ir.format_shape(node.in_shape, '×')} → "
                 f"{ir.format_shape(node.out_shape, '×')}, {node.params:,} params, {node.macs:,} MACs")
    if len(nodes) > 4:
        text += f"\n\n… {len(nodes) - 4} more"
    return text


def _value(value) -> str:
    from archdsl import values

    return "…" if value is None else values.show(value)


def _instances_of(analysis: Analysis, block: str) -> list[ir.Block]:
    return [node for net in analysis.report.resolved.values() for node in ir.walk(net.body)
            if isinstance(node, ir.Block) and node.block == block]


def _parameter_hover(analysis: Analysis, found: Found) -> str | None:
    from archdsl import values

    definition = found.definition
    if found.kind == "kwarg":
        call, _ = found.node
        definition = analysis.program.blocks.get(call.name)
        if definition is None:
            return None  # a layer's argument: the layer's hover says it
    elif found.kind == "var" and found.name in found.scope:
        return f"`{found.name}`: a loop's name, bound to each item of its list in turn"
    param = next((p for p in definition.params if p.name == found.name), None)
    if param is None:
        return None
    what = "block" if isinstance(definition, ir.BlockDef) else "network"
    text = f"`{param.name}`: a parameter of {what} `{definition.name}`"
    if isinstance(definition, ir.NetworkDef):
        net = analysis.report.resolved.get(definition.name)
        if net is not None:
            text += f"\n\n= `{values.show(net.params_bound[param.name])}`"
        return text
    shown = [f"- `{values.show(analysis.report.instances[node.path][param.name])}` in `{node.path}` (`{node.call}`)"
             for node in _instances_of(analysis, definition.name) if node.path in analysis.report.instances]
    if shown:
        text += "\n\n" + "\n".join(shown[:8]) + (f"\n- … {len(shown) - 8} more" if len(shown) > 8 else "")
    return text


# -- definitions, references, rename -------------------------------------------------------------------------


def definition(context: Context, position: lsp.Position) -> lsp.Location | None:
    """A block's definition (in whichever file), a parameter's or loop name's binding, an import's file."""
    analysis = context.analysis
    offset = context.offset(position)
    imported = import_at(analysis, offset)
    if imported is not None and is_file(analysis.source):
        target = real_path(Path(analysis.source.path).parent / imported[0])
        if target.is_file():
            start = lsp.Position(line=0, character=0)
            return lsp.Location(uri=target.as_uri(), range=lsp.Range(start=start, end=start))
        return None
    found = found_at(analysis, offset)
    if found is None:
        return None
    if found.kind == "call":
        block = analysis.program.blocks.get(found.name)
        return context.location(block.span) if block is not None else None
    if found.kind == "kwarg":
        call, _ = found.node
        block = analysis.program.blocks.get(call.name)
        param = next((p for p in block.params if p.name == found.name), None) if block is not None else None
        return context.location(param.span) if param is not None else None
    if found.kind == "var":
        bound = binding(found)
        return context.location(bound) if bound is not None else None
    return None


def references(context: Context, position: lsp.Position, include_declaration: bool,
               others: list[Analysis] = ()) -> list[lsp.Location] | None:
    """Every place that names the same block (in this document, the files it imports, and ``others``: the other
    open documents) or the same parameter."""
    spans = _same(context, position, others)
    if spans is None:
        return None
    declaration, uses = spans
    chosen = ([declaration] if include_declaration and declaration is not None else []) + uses
    return [context.location(span) for span in _unique(chosen)]


def rename(context: Context, position: lsp.Position, new_name: str,
           others: list[Analysis] = ()) -> lsp.WorkspaceEdit | None:
    """Rename a block or a parameter everywhere it is named; refuse a name that is not one or is taken."""
    import re

    from archdsl.errors import UsageError
    from archdsl.layers import lookup

    found = found_at(context.analysis, context.offset(position))
    spans = _same(context, position, others)
    if found is None or spans is None:
        return None
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", new_name) or new_name in _KEYWORDS:
        raise UsageError(f"'{new_name}' is not a name")
    program = context.analysis.program
    if _is_block(context.analysis, found):
        if lookup(new_name) is not None or new_name in program.blocks:
            raise UsageError(f"'{new_name}' is already the name of a {'layer' if lookup(new_name) else 'block'}")
    declaration, uses = spans
    changes: dict[str, list[lsp.TextEdit]] = {}
    for span in _unique([*([declaration] if declaration else []), *uses]):
        location = context.location(span)
        changes.setdefault(location.uri, []).append(lsp.TextEdit(range=location.range, new_text=new_name))
    return lsp.WorkspaceEdit(changes=changes)


def prepare_rename(context: Context, position: lsp.Position) -> lsp.PrepareRenameResult | None:
    found = found_at(context.analysis, context.offset(position))
    if found is None or _same(context, position, ()) is None:
        return None
    return lsp.PrepareRenamePlaceholder(range=context.range(found.span), placeholder=found.name)


_KEYWORDS = {"import", "default", "block", "network", "repeat", "for", "in", "if", "then", "else", "concat", "add",
             "mul", "and", "or", "not", "true", "false"}


def _is_block(analysis: Analysis, found: Found) -> bool:
    return found.kind == "block" or (found.kind == "call" and found.name in analysis.program.blocks)


def _same(context: Context, position: lsp.Position, others) -> tuple[Span | None, list[Span]] | None:
    """The declaration and the uses of the block or parameter at ``position``; None for anything else."""
    analysis = context.analysis
    found = found_at(analysis, context.offset(position))
    if found is None:
        return None
    if _is_block(analysis, found):
        block = analysis.program.blocks.get(found.name)
        if block is None:
            return None
        uses = []
        for other in _programs(analysis, others):
            for definition in (*other.blocks.values(), *other.networks.values()):
                for f in everything(definition):
                    if f.kind == "call" and f.name == block.name and _same_block(other, block):
                        uses.append(f.span)
        return block.span, uses
    if found.kind in ("param", "var", "kwarg"):
        return _parameter_places(analysis, found, others)
    return None


def _programs(analysis: Analysis, others):
    """The programs to search: this document's (with its imports) and the other open documents'."""
    seen = []
    for program in (analysis.program, *(other.program for other in others)):
        if program is not None and all(program is not p for p in seen):
            seen.append(program)
    return seen


def _same_block(program, block: ir.BlockDef) -> bool:
    """Whether ``program``'s block of that name is the same definition (the same file and place)."""
    mine = program.blocks.get(block.name)
    return mine is not None and (mine.span.line, mine.span.column) == (block.span.line, block.span.column) \
        and real_path(mine.span.source.path) == real_path(block.span.source.path)


def _parameter_places(analysis: Analysis, found: Found, others) -> tuple[Span, list[Span]] | None:
    definition = found.definition
    if found.kind == "kwarg":
        call, _ = found.node
        definition = analysis.program.blocks.get(call.name)
        if definition is None:
            return None
    elif found.kind == "var" and found.name in found.scope:
        return None  # a loop's name: not a parameter
    param = next((p for p in definition.params if p.name == found.name), None)
    if param is None:
        return None
    uses = [f.span for f in everything(definition) if f.kind == "var" and f.name == param.name
            and param.name not in f.scope]
    if isinstance(definition, ir.BlockDef):
        for program in _programs(analysis, others):
            for caller in (*program.blocks.values(), *program.networks.values()):
                uses += [f.span for f in everything(caller) if f.kind == "kwarg" and f.name == param.name
                         and f.node[0].name == definition.name and _same_block(program, definition)]
    return param.span, uses


def _unique(spans: list[Span]) -> list[Span]:
    seen, out = set(), []
    for span in spans:
        key = (str(real_path(span.source.path)) if is_file(span.source) else span.source.path, span.line, span.column)
        if key not in seen:
            seen.add(key)
            out.append(span)
    return out


# -- symbols and formatting ----------------------------------------------------------------------------------


def symbols(context: Context) -> list[lsp.DocumentSymbol]:
    """The blocks and networks of the document, whether or not they parse, each with its extent."""
    analysis = context.analysis
    parsed = {(isinstance(d, ir.NetworkDef), d.name): d for d in own_definitions(analysis)}
    out = []
    for part in analysis.definitions:
        if part.keyword not in ("block", "network") or not part.name:
            continue
        start, end = analysis.position(part.start), analysis.position(part.end)
        name_start = analysis.source.text.index(part.name, part.start + len(part.keyword))
        name_line, name_column = analysis.position(name_start)
        node = parsed.get((part.keyword == "network", part.name))
        detail = _params(node) if node is not None else ""
        if part.keyword == "network" and node is not None:
            detail += " : [" + ", ".join(_expression_text(analysis, e) for e in node.input) + "]"
        out.append(lsp.DocumentSymbol(
            name=part.name, detail=detail.strip() or None,
            kind=lsp.SymbolKind.Function if part.keyword == "block" else lsp.SymbolKind.Class,
            range=lsp.Range(start=context.positions.position(*start), end=context.positions.position(*end)),
            selection_range=lsp.Range(start=context.positions.position(name_line, name_column),
                                      end=context.positions.position(name_line, name_column + len(part.name))),
        ))
    return out


def _expression_text(analysis: Analysis, expr: ir.Expr) -> str:
    span = expr.span
    return analysis.source.text[analysis.offset(span.line, span.column):analysis.offset(span.end_line, span.end_column)]


def formatting(context: Context) -> list[lsp.TextEdit] | None:
    """The whole document as `archdsl fmt` prints it; None (no edit) when it does not parse."""
    from archdsl.formatter import format_source

    source = context.analysis.source
    try:
        formatted = format_source(source)
    except ArchError:
        return None
    if formatted == source.text:
        return []
    end = context.positions.position(len(context.positions.lines), len(context.positions.lines[-1]) + 1)
    return [lsp.TextEdit(range=lsp.Range(start=lsp.Position(line=0, character=0), end=end), new_text=formatted)]
