"""Completion and signature help: what may be written where the cursor is, read from the text before it (which
is mid-edit and rarely parses) and from the last analysis.

    block b(c) = conv3x3 c; ma|      # layer kinds (maxpool, maxpool2, ...), blocks, keywords
    ... conv3x3 c |                  # conv3x3's arguments by name (s=, p=, ...), then names in scope and functions
    ... conv1x1 in.|                 # c, h, w
    ... vgg(2, |                     # signature help: vgg(n, c), the second parameter active
"""

from __future__ import annotations

import re

from lsprotocol import types as lsp

from archdsl import values
from archdsl.layers import _SUGAR_NAMES, REGISTRY, REQUIRED, lookup
from archdsl.lsp.analysis import Analysis
from archdsl.lsp.features import Context, _params, _value, where
from archdsl.lsp.places import own_definitions

KEYWORDS = ("block", "network", "import", "default", "repeat", "for", "in", "if", "then", "else", "concat", "add",
            "mul", "and", "or", "not", "true", "false")


def completion(context: Context, position: lsp.Position) -> lsp.CompletionList:
    analysis = context.analysis
    offset = context.offset(position)
    line_start = analysis.source.text.rfind("\n", 0, offset) + 1
    before = analysis.source.text[line_start:offset]
    if re.search(r"\bin\.[A-Za-z]*$", before):
        items = [lsp.CompletionItem(label=dim, kind=lsp.CompletionItemKind.Property, detail=f"in.{dim}",
                                    documentation=what) for dim, what in
                 (("c", "the channels entering the block"), ("h", "the height entering the block"),
                  ("w", "the width entering the block"))]
        return lsp.CompletionList(is_incomplete=False, items=items)
    if re.search(r"^\s*default\s+[A-Za-z0-9_]*$", before):
        return lsp.CompletionList(is_incomplete=False, items=[_layer_item(key, with_spellings=False)
                                                              for key in REGISTRY])
    items: list[lsp.CompletionItem] = []
    layer = _layer_before(before)
    if layer is not None:
        kind, preset = layer
        written = set(re.findall(r"([A-Za-z_]\w*)=", before))
        items += [lsp.CompletionItem(label=f"{spec.name}=", kind=lsp.CompletionItemKind.Field,
                                     detail=f"{spec.name}={_value(spec.default)}", documentation=spec.doc,
                                     sort_text=f"0{index:02d}")
                  for index, spec in enumerate(kind.args)
                  if spec.name not in preset and spec.name not in written and spec.default is not REQUIRED]
    items += [_layer_item(name) for name in (*REGISTRY, *_aliases(), *_SUGAR_NAMES)]
    program = analysis.program
    for block in (program.blocks.values() if program is not None else ()):
        items.append(lsp.CompletionItem(label=block.name, kind=lsp.CompletionItemKind.Function,
                                        detail=f"block {block.name}{_params(block)}", sort_text=f"1{block.name}",
                                        documentation=f"defined at {where(block.span)}"))
    for name, what in _names_in_scope(analysis, offset):
        items.append(lsp.CompletionItem(label=name, kind=lsp.CompletionItemKind.Variable, detail=what,
                                        sort_text=f"0{name}"))
    items += [lsp.CompletionItem(label=name, kind=lsp.CompletionItemKind.Function, detail=f"{name}(...)",
                                 documentation=doc, sort_text=f"3{name}") for name, doc in values.FUNCTIONS.items()]
    items += [lsp.CompletionItem(label="in.c", kind=lsp.CompletionItemKind.Property, sort_text="3in.c",
                                 documentation="the channels entering the block")]
    items += [lsp.CompletionItem(label=word, kind=lsp.CompletionItemKind.Keyword, sort_text=f"4{word}")
              for word in KEYWORDS]
    return lsp.CompletionList(is_incomplete=False, items=items)


def _aliases() -> list[str]:
    from archdsl.layers import _ALIASES

    return list(_ALIASES)


def _layer_item(name: str, with_spellings: bool = True) -> lsp.CompletionItem:
    kind, preset = lookup(name)
    usage = " ".join([name, *(spec.name if spec.default is REQUIRED else f"{spec.name}={_value(spec.default)}"
                              for spec in kind.args if spec.name not in preset)])
    arguments = "\n".join(f"- {spec.name}: {spec.doc}" for spec in kind.args if spec.doc and spec.name not in preset)
    documentation = kind.doc + (f"\n\n{arguments}" if arguments else "")
    return lsp.CompletionItem(label=name, kind=lsp.CompletionItemKind.Class, detail=usage, sort_text=f"2{name}",
                              documentation=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=documentation))


def _layer_before(before: str):
    """The layer kind whose arguments are being written: the name that starts the current item."""
    item = re.split(r"[;<\[|]|\bthen\b|\belse\b|\bin\b\s+\S+\s", before)[-1]
    match = re.match(r"\s*(?:repeat\s+\S+\s+)?([A-Za-z_][A-Za-z0-9_]*)\s", item)
    return lookup(match.group(1)) if match is not None else None


def _names_in_scope(analysis: Analysis, offset: int) -> list[tuple[str, str]]:
    """The parameters of the definition holding ``offset`` and the loop names written before it in it."""
    part = analysis.definition_at(offset)
    if part is None or part.name is None:
        return []
    names: list[tuple[str, str]] = []
    parsed = next((d for d in own_definitions(analysis) if d.name == part.name), None)
    if parsed is not None:
        names += [(p.name, f"parameter of {part.keyword} {part.name}") for p in parsed.params]
    else:
        header = re.match(r"\w+\s+\w+\s*\(([^)]*)\)", analysis.source.text[part.start:offset])
        if header is not None:
            names += [(name, f"parameter of {part.keyword} {part.name}")
                      for name in re.findall(r"(?:^|,)\s*([A-Za-z_]\w*)", header.group(1))]
    names += [(name, "loop name") for name in re.findall(r"\bfor\s+([A-Za-z_]\w*)\s+in\b",
                                                         analysis.source.text[part.start:offset])]
    return list(dict.fromkeys(names))


# -- signature help ------------------------------------------------------------------------------------------


def signature_help(context: Context, position: lsp.Position) -> lsp.SignatureHelp | None:
    """Inside ``vgg(2, |``: the block's parameters, the one being written active; inside ``min(|``, the
    function's usage."""
    analysis = context.analysis
    offset = context.offset(position)
    part = analysis.definition_at(offset)
    start = part.start if part is not None else 0
    call = _open_call(analysis.source.text[start:offset])
    if call is None:
        return None
    name, arguments = call
    program = analysis.program
    block = program.blocks.get(name) if program is not None else None
    if block is not None:
        names = [p.name for p in block.params]
        label = f"{name}({', '.join(names)})"
        parameters, at = [], len(name) + 1
        for param in names:
            parameters.append(lsp.ParameterInformation(label=(at, at + len(param))))
            at += len(param) + 2
        current = arguments[-1].strip()
        keyword = re.match(r"([A-Za-z_]\w*)\s*=", current)
        active = names.index(keyword.group(1)) if keyword and keyword.group(1) in names else len(arguments) - 1
        signature = lsp.SignatureInformation(label=label, parameters=parameters, documentation=f"defined at {where(block.span)}")
        return lsp.SignatureHelp(signatures=[signature], active_signature=0, active_parameter=min(active, len(names)))
    if name in values.FUNCTIONS:
        signature = lsp.SignatureInformation(label=values.FUNCTIONS[name].split(":")[0],
                                             documentation=values.FUNCTIONS[name])
        return lsp.SignatureHelp(signatures=[signature], active_signature=0, active_parameter=len(arguments) - 1)
    return None


def _open_call(text: str) -> tuple[str, list[str]] | None:
    """The innermost ``NAME(`` still open at the end of ``text``, and the arguments written in it so far."""
    depth = 0
    arguments = [""]
    for index in range(len(text) - 1, -1, -1):
        char = text[index]
        if char in ")]":
            depth += 1
        elif char in "([":
            if depth == 0:
                if char == "[":
                    return None
                name = re.search(r"([A-Za-z_][A-Za-z0-9_]*)$", text[:index])
                return (name.group(1), list(reversed(arguments))) if name else None
            depth -= 1
        elif char == "," and depth == 0:
            arguments.append("")
        elif depth == 0:
            arguments[-1] = char + arguments[-1]
        if char == ";" and depth == 0:
            return None
    return None
