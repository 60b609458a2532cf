"""The language server driven as an editor drives it: `archdsl lsp` in a subprocess, over stdio, with
pytest-lsp's client; each request's exact answer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types as t
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

pytestmark = pytest.mark.asyncio(loop_scope="module")

LIB = """\
block vgg(n, c) = repeat n <conv3x3 c; relu>; maxpool2
"""
MAIN = """\
import "lib.arch"

# A small VGG.
network small(width = 8) : [1, 28, 28] -> [10] =
    vgg(1, width);
    vgg(2, 2 * width);
    flatten; linear 10
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lsp")
    (root / "lib.arch").write_text(LIB)
    (root / "main.arch").write_text(MAIN)
    return root


@pytest_lsp.fixture(scope="module", config=ClientServerConfig(server_command=[sys.executable, "-m", "archdsl", "lsp"]))
async def client(lsp_client: LanguageClient, folder: Path):
    capabilities = client_capabilities("visual-studio-code")
    await lsp_client.initialize_session(t.InitializeParams(capabilities=capabilities, root_uri=folder.as_uri()))
    yield
    await lsp_client.shutdown_session()


def uri(folder: Path, name: str) -> str:
    return (folder / name).as_uri()


async def open_document(client: LanguageClient, document: str, text: str, version: int = 1) -> list[t.Diagnostic]:
    """Open (or replace the whole text of) a document; its diagnostics once published."""
    if document in client.diagnostics:
        client.diagnostics.pop(document)
        client.text_document_did_change(t.DidChangeTextDocumentParams(
            text_document=t.VersionedTextDocumentIdentifier(uri=document, version=version),
            content_changes=[t.TextDocumentContentChangeWholeDocument(text=text)]))
    else:
        client.text_document_did_open(t.DidOpenTextDocumentParams(
            text_document=t.TextDocumentItem(uri=document, language_id="archdsl", version=version, text=text)))
    while document not in client.diagnostics:
        await client.wait_for_notification(t.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    return list(client.diagnostics[document])


def at(line: int, character: int) -> t.Position:
    return t.Position(line=line, character=character)


def span(line: int, start: int, end: int, end_line: int | None = None) -> t.Range:
    return t.Range(start=at(line, start), end=at(line if end_line is None else end_line, end))


def brief(diagnostics) -> list[tuple]:
    return [(d.range, d.code, d.message) for d in diagnostics]


async def test_every_independent_error_is_a_diagnostic(client: LanguageClient, folder: Path):
    text = ("block a = < conv3x3 8; relu\n"
            "block b(c) = conv3x3 c; rleu; conv3x3 c 2\n"
            "network n : [1, 8, 8] = b(8, 2); linear 10\n")
    diagnostics = await open_document(client, uri(folder, "errors.arch"), text)
    assert brief(diagnostics) == [
        (span(1, 0, 5), "A004", "unexpected 'block'; expected '>'\nhint: the '<' at line 1, column 11 is never closed "
                                "with '>'"),
        (span(1, 24, 28), "A101", "unknown layer or block 'rleu'\nhint: did you mean 'relu'?"),
        (span(1, 40, 41), "A202", "conv3x3 takes 1 positional argument (out), but more were given\nhint: give the others "
                                  "by name; usage: conv3x3 out s=1 p=0 d=1 groups=1 bias=true"),
        (span(2, 29, 30), "A223", "block b takes 1 argument, but more were given\nhint: block b(c) is defined at "
                                  f"{folder / 'errors.arch'}:2:7"),
    ]
    first = diagnostics[0]
    assert (first.severity, first.source, first.code_description.href) == (
        t.DiagnosticSeverity.Error, "archdsl", "https://github.com/archdsl/archdsl/blob/main/docs/errors.md#a004")


async def test_an_error_inside_a_block_instance_points_at_the_block_with_the_call_as_related(client, folder):
    text = "block head(c) = conv1x1 c; linear 10\nnetwork n : [1, 8, 8] = head(4)\n"
    [diagnostic] = await open_document(client, uri(folder, "inside.arch"), text)
    assert (diagnostic.range, diagnostic.code) == (span(0, 27, 36), "A306")
    assert diagnostic.message == "linear takes a flat vector, but its input is 4×8×8\nhint: insert 'flatten' (or 'gap; " \
                                 "flatten') before it"
    [related] = diagnostic.related_information
    assert (related.location.uri, related.location.range, related.message) == (
        uri(folder, "inside.arch"), span(1, 24, 31), "head(4) instantiated here")


async def test_an_error_in_an_imported_block_is_shown_at_the_call(client, folder):
    (folder / "broken.arch").write_text("block stem = conv3x3 8; flatten; conv3x3 8\n")
    text = 'import "broken.arch"\nnetwork n : [1, 8, 8] = stem\n'
    [diagnostic] = await open_document(client, uri(folder, "user.arch"), text)
    assert (diagnostic.range, diagnostic.code) == (span(1, 24, 28), "A307")
    assert diagnostic.message == ("broken.arch:1:34: conv3x3 takes a C×H×W image, but its input is 512\n"
                                  "hint: conv must come before 'flatten'")
    here, call = diagnostic.related_information
    assert (here.location.uri, here.location.range) == (uri(folder, "broken.arch"), span(0, 33, 42))


async def test_inlay_hints_give_each_calls_shapes_and_a_block_calls_costs(client, folder):
    document = uri(folder, "main.arch")
    assert await open_document(client, document, MAIN) == []
    hints = await client.text_document_inlay_hint_async(t.InlayHintParams(
        text_document=t.TextDocumentIdentifier(uri=document), range=span(0, 0, 0, 10)))
    assert [(h.position, h.label, h.kind, h.padding_left) for h in hints] == [
        (at(4, 17), "→ 8×14×14  (80 params, 56.4K MACs)", t.InlayHintKind.Type, True),
        (at(5, 21), "→ 16×7×7  (3.5K params, 677.4K MACs)", t.InlayHintKind.Type, True),
        (at(6, 11), "→ 784", t.InlayHintKind.Type, True),
        (at(6, 22), "→ 10", t.InlayHintKind.Type, True),
    ]
    lib = await open_document(client, uri(folder, "lib.arch"), LIB)
    assert lib == []


async def test_hover_on_a_layer_a_block_call_and_a_parameter(client, folder):
    document = uri(folder, "main.arch")
    hover = await client.text_document_hover_async(t.HoverParams(
        text_document=t.TextDocumentIdentifier(uri=document), position=at(6, 15)))
    assert hover.range == span(6, 13, 19)
    assert hover.contents.value == (
        "```\nlinear out bias=true\n```\n\nfully connected layer: linear N bias=true; takes a flat input, or tokens (it acts on each token's features) "
        "(linear)\n\n"
        "- `out`: output features\n- `bias`: learn a bias\n\n`linear_0`: out=10, bias=true  \n"
        "784 → 10, 7,850 params, 7,840 MACs")
    hover = await client.text_document_hover_async(t.HoverParams(
        text_document=t.TextDocumentIdentifier(uri=document), position=at(5, 5)))
    assert hover.contents.value == (
        "```\nblock vgg(n, c)\n```\n\ndefined at lib.arch:1:7\n\n"
        "- `vgg(2, 16)`: 8×14×14 → 16×7×7, 3,488 params, 677,376 MACs")
    hover = await client.text_document_hover_async(t.HoverParams(
        text_document=t.TextDocumentIdentifier(uri=document), position=at(5, 16)))
    assert hover.contents.value == "`width`: a parameter of network `small`\n\n= `8`"
    text = "block b(c) = conv3x3 c\nnetwork n : [1, 8, 8] = b(4); b(2 * in.c)\n"
    await open_document(client, uri(folder, "one.arch"), text)
    hover = await client.text_document_hover_async(t.HoverParams(
        text_document=t.TextDocumentIdentifier(uri=uri(folder, "one.arch")), position=at(0, 21)))
    assert hover.contents.value == "`c`: a parameter of block `b`\n\n- `4` in `b_0` (`b(4)`)\n- `2` in `b_1` (`b(2)`)"  # in.c: the network's input


async def test_definition_across_an_import_and_of_an_import(client, folder):
    document = uri(folder, "main.arch")
    found = await client.text_document_definition_async(t.DefinitionParams(
        text_document=t.TextDocumentIdentifier(uri=document), position=at(4, 5)))
    assert (found.uri, found.range) == (uri(folder, "lib.arch"), span(0, 6, 9))
    found = await client.text_document_definition_async(t.DefinitionParams(
        text_document=t.TextDocumentIdentifier(uri=document), position=at(0, 10)))
    assert (found.uri, found.range) == (uri(folder, "lib.arch"), span(0, 0, 0))
    found = await client.text_document_definition_async(t.DefinitionParams(
        text_document=t.TextDocumentIdentifier(uri=document), position=at(5, 15)))
    assert (found.uri, found.range) == (document, span(3, 14, 19))


async def test_references_of_a_block_in_every_open_document(client, folder):
    found = await client.text_document_references_async(t.ReferenceParams(
        text_document=t.TextDocumentIdentifier(uri=uri(folder, "lib.arch")), position=at(0, 7),
        context=t.ReferenceContext(include_declaration=True)))
    assert [(f.uri, f.range) for f in found] == [
        (uri(folder, "lib.arch"), span(0, 6, 9)), (uri(folder, "main.arch"), span(4, 4, 7)),
        (uri(folder, "main.arch"), span(5, 4, 7))]


async def test_rename_a_block_and_a_parameter_with_its_keyword_arguments(client, folder):
    text = "block b(c) = conv3x3 c\nnetwork n : [1, 8, 8] = b(c=4); b(2)\n"
    document = uri(folder, "rename.arch")
    await open_document(client, document, text)
    edit = await client.text_document_rename_async(t.RenameParams(
        text_document=t.TextDocumentIdentifier(uri=document), position=at(0, 8), new_name="width"))
    assert {u: [(e.range, e.new_text) for e in edits] for u, edits in edit.changes.items()} == {
        document: [(span(0, 8, 9), "width"), (span(0, 21, 22), "width"), (span(1, 26, 27), "width")]}
    edit = await client.text_document_rename_async(t.RenameParams(
        text_document=t.TextDocumentIdentifier(uri=document), position=at(1, 24), new_name="stem"))
    assert [(e.range, e.new_text) for e in edit.changes[document]] == [
        (span(0, 6, 7), "stem"), (span(1, 24, 25), "stem"), (span(1, 32, 33), "stem")]
    with pytest.raises(Exception, match="'relu' is already the name of a layer"):
        await client.text_document_rename_async(t.RenameParams(
            text_document=t.TextDocumentIdentifier(uri=document), position=at(1, 24), new_name="relu"))
    prepared = await client.text_document_prepare_rename_async(t.PrepareRenameParams(
        text_document=t.TextDocumentIdentifier(uri=document), position=at(0, 16)))
    assert prepared is None  # conv3x3 is a layer: nothing to rename


async def test_completion_knows_layers_blocks_parameters_functions_and_keywords(client, folder):
    text = "block b(c, k = 3) = for w in [c] conv3x3 w \nnetwork n : [1, 8, 8] = b(4)\n"
    document = uri(folder, "complete.arch")
    await open_document(client, document, text)
    found = await client.text_document_completion_async(t.CompletionParams(
        text_document=t.TextDocumentIdentifier(uri=document), position=at(0, 43)))
    items = {item.label: item for item in found.items}
    assert [item.label for item in found.items[:6]] == ["s=", "d=", "groups=", "bias=", "conv", "maxpool"]
    assert items["s="].detail == "s=1" and items["s="].documentation == "stride"
    assert items["conv3x3"].detail == "conv3x3 out s=1 d=1 groups=1 bias=true"
    assert items["b"].detail == "block b(c, k)"
    assert (items["c"].detail, items["k"].detail, items["w"].detail) == (
        "parameter of block b", "parameter of block b", "loop name")
    assert items["make_divisible"].documentation.startswith("make_divisible(v, d) or make_divisible(v, d, least)")
    assert {"for", "mul", "default", "repeat", "range", "gelu", "fc", "gap"} <= set(items)
    found = await client.text_document_completion_async(t.CompletionParams(
        text_document=t.TextDocumentIdentifier(uri=document), position=at(1, 24)))
    assert "s=" not in {item.label for item in found.items}
    await open_document(client, document, "network n : [1, 8, 8] = conv1x1 in.", version=2)
    found = await client.text_document_completion_async(t.CompletionParams(
        text_document=t.TextDocumentIdentifier(uri=document), position=at(0, 35)))
    assert [(item.label, item.documentation) for item in found.items] == [
        ("c", "the channels entering the block"), ("h", "the height entering the block"),
        ("w", "the width entering the block")]


async def test_signature_help_inside_a_block_call_and_a_function(client, folder):
    document = uri(folder, "main.arch")
    client.text_document_did_change(t.DidChangeTextDocumentParams(
        text_document=t.VersionedTextDocumentIdentifier(uri=document, version=2),
        content_changes=[t.TextDocumentContentChangePartial(range=span(5, 21, 21), text=" vgg(3, max(")]))
    found = await client.text_document_signature_help_async(t.SignatureHelpParams(
        text_document=t.TextDocumentIdentifier(uri=document), position=at(5, 28)))
    [signature] = found.signatures
    assert (signature.label, [p.label for p in signature.parameters], found.active_parameter) == (
        "vgg(n, c)", [(4, 5), (7, 8)], 1)
    found = await client.text_document_signature_help_async(t.SignatureHelpParams(
        text_document=t.TextDocumentIdentifier(uri=document), position=at(5, 33)))
    assert (found.signatures[0].label, found.active_parameter) == ("min(a, b, ...) or min(list)".replace("min", "max"), 0)


async def test_document_symbols_and_formatting(client, folder):
    text = "block b(c)=conv3x3 c;relu\nnetwork n:[1,8,8]=b(4);\n"
    document = uri(folder, "format.arch")
    await open_document(client, document, text)
    found = await client.text_document_document_symbol_async(t.DocumentSymbolParams(
        text_document=t.TextDocumentIdentifier(uri=document)))
    assert [(s.name, s.kind, s.detail, s.range, s.selection_range) for s in found] == [
        ("b", t.SymbolKind.Function, "(c)", span(0, 0, 25), span(0, 6, 7)),
        ("n", t.SymbolKind.Class, ": [1, 8, 8]", span(1, 0, 23), span(1, 8, 9))]
    edits = await client.text_document_formatting_async(t.DocumentFormattingParams(
        text_document=t.TextDocumentIdentifier(uri=document), options=t.FormattingOptions(tab_size=4, insert_spaces=True)))
    assert [(e.range, e.new_text) for e in edits] == [
        (span(0, 0, 0, 2), "block b(c) = conv3x3 c; relu\n\nnetwork n : [1, 8, 8] = b(4)\n")]


async def test_a_directive_chooses_the_network_its_parameters_and_input(client, folder):
    text = ("# archdsl: --network big -p width=16 --input 3x32x32\n"
            "network small : [1, 8, 8] = conv3x3 4\nnetwork big(width = 8) : [1, 8, 8] = conv3x3 width\n")
    document = uri(folder, "directive.arch")
    assert await open_document(client, document, text) == []
    hints = await client.text_document_inlay_hint_async(t.InlayHintParams(
        text_document=t.TextDocumentIdentifier(uri=document), range=span(0, 0, 0, 5)))
    assert [(h.position, h.label) for h in hints] == [(at(2, 50), "→ 16×32×32")]
    diagnostics = await open_document(client, document, "# archdsl: --network huge\n" + text.split("\n", 1)[1], 2)
    assert brief(diagnostics) == [(span(0, 0, 25), "A704", "no network 'huge' in the spec\nhint: its networks: small, big")]
    diagnostics = await open_document(client, document, "# archdsl: --nets big\n" + text.split("\n", 1)[1], 3)
    assert brief(diagnostics) == [(span(0, 0, 21), "A700", "the directive: unknown option '--nets'\nhint: it takes "
                                                            "--network NAME, -p NAME=VALUE and --input CxHxW")]


async def test_a_burst_of_edits_is_answered_for_the_newest_text_only(client, folder):
    document = uri(folder, "burst.arch")
    await open_document(client, document, "network n : [1, 8, 8] = relu\n")
    versions = []  # of each publication for this document
    handlers = client.protocol.fm.features
    keep = handlers[t.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS]

    def record(params: t.PublishDiagnosticsParams):
        if params.uri == document:
            versions.append(params.version)
        return keep(params)

    handlers[t.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS] = record
    for version in range(2, 102):
        client.text_document_did_change(t.DidChangeTextDocumentParams(
            text_document=t.VersionedTextDocumentIdentifier(uri=document, version=version),
            content_changes=[t.TextDocumentContentChangeWholeDocument(
                text=f"network n : [1, 8, 8] = conv3x3 {version}; rleu\n")]))
    while 101 not in versions:
        await client.wait_for_notification(t.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    assert versions[-1] == 101 and len(versions) < 20, versions
    hints = await client.text_document_inlay_hint_async(t.InlayHintParams(
        text_document=t.TextDocumentIdentifier(uri=document), range=span(0, 0, 0, 5)))
    assert not hints  # rleu stops the network: no shapes
    assert [d.message for d in client.diagnostics[document]] == ["unknown layer or block 'rleu'\nhint: did you mean 'relu'?"]
    handlers[t.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS] = keep
