"""The language server never dies on any text: every spec of specs/ and the zoo, truncated and mutated at random
(seeded), and programs drawn from the grammar, sent through the protocol as edits, with every request at random
places after each; no request may fail and the server may show no error."""

from __future__ import annotations

import random
import sys

import pytest
import pytest_lsp
from conftest import REPO, SPECS
from hypothesis import HealthCheck, given, settings
from lsprotocol import types as t
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

pytestmark = pytest.mark.asyncio(loop_scope="module")

PIECES = ["block", "network", "import", "default", "repeat", "for", "in", "if", "then", "else", "concat", "add", "mul",
          "<", ">", "[", "]", "(", ")", "|", ";", ",", "=", ":", "->", "**", "-", "in.c", "conv3x3", "vgg(", "k=",
          "0", "-1", "99999999999999999999999999999999", "\n", " ", "#", '"', "😋", "\u2028", "\r", "\t", "é"]


def texts(seed: int = 0, count: int = 120) -> list[str]:
    """Truncations and mutations of the shipped specs."""
    rng = random.Random(seed)
    specs = sorted(SPECS.glob("*.arch")) + sorted((REPO / "archdsl" / "zoo").glob("*.arch"))
    sources = [path.read_text(encoding="utf-8") for path in specs]
    out = []
    for _ in range(count):
        text = rng.choice(sources)
        kind = rng.randrange(3)
        if kind == 0:
            text = text[:rng.randrange(len(text) + 1)]
        else:
            for _ in range(rng.randrange(1, 6)):
                at = rng.randrange(len(text) + 1)
                if kind == 1:
                    text = text[:at] + rng.choice(PIECES) + text[at:]
                else:
                    text = text[:at] + text[at + rng.randrange(1, 20):]
        out.append(text)
    return out


@pytest_lsp.fixture(scope="module", config=ClientServerConfig(server_command=[sys.executable, "-m", "archdsl", "lsp"]))
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(t.InitializeParams(capabilities=client_capabilities("visual-studio-code"),
                                                           root_uri=SPECS.as_uri()))
    yield
    await lsp_client.shutdown_session()


async def every_request(client: LanguageClient, uri: str, text: str, rng: random.Random) -> None:
    """Each request once, at a random place of ``text`` (or past its end)."""
    lines = text.split("\n")
    line = rng.randrange(len(lines) + 1)
    character = rng.randrange(len(lines[line]) + 2) if line < len(lines) else 0
    document, position = t.TextDocumentIdentifier(uri=uri), t.Position(line=line, character=character)
    everything = t.Range(start=t.Position(line=0, character=0), end=t.Position(line=len(lines), character=0))
    await client.text_document_inlay_hint_async(t.InlayHintParams(text_document=document, range=everything))
    await client.text_document_hover_async(t.HoverParams(text_document=document, position=position))
    await client.text_document_definition_async(t.DefinitionParams(text_document=document, position=position))
    await client.text_document_references_async(t.ReferenceParams(
        text_document=document, position=position, context=t.ReferenceContext(include_declaration=True)))
    await client.text_document_completion_async(t.CompletionParams(text_document=document, position=position))
    await client.text_document_signature_help_async(t.SignatureHelpParams(text_document=document, position=position))
    await client.text_document_document_symbol_async(t.DocumentSymbolParams(text_document=document))
    await client.text_document_formatting_async(t.DocumentFormattingParams(
        text_document=document, options=t.FormattingOptions(tab_size=4, insert_spaces=True)))
    await client.text_document_prepare_rename_async(t.PrepareRenameParams(text_document=document, position=position))
    try:
        await client.text_document_rename_async(t.RenameParams(text_document=document, position=position,
                                                                new_name="renamed"))
    except Exception as err:  # refusing a rename (a taken name) is an answer; anything else is a bug
        assert "already the name" in str(err), err


async def test_mutated_and_truncated_specs_never_break_the_server(client: LanguageClient):
    uri = (SPECS / "fuzzed.arch").as_uri()
    rng = random.Random(1)
    client.text_document_did_open(t.DidOpenTextDocumentParams(
        text_document=t.TextDocumentItem(uri=uri, language_id="archdsl", version=1, text="")))
    for version, text in enumerate(texts(), start=2):
        client.text_document_did_change(t.DidChangeTextDocumentParams(
            text_document=t.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[t.TextDocumentContentChangeWholeDocument(text=text)]))
        await every_request(client, uri, text, rng)
    assert client.messages == [] and client.error is None


def drawn_programs(count: int = 60) -> list[str]:
    """Programs drawn from the grammar as tests/test_fuzz.py draws them (derandomised: the same each run)."""
    from test_fuzz import grammar_programs

    found: list[str] = []

    @settings(max_examples=count, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(grammar_programs())
    def collect(text: str) -> None:
        found.append(text)

    collect()
    return found


async def test_programs_drawn_from_the_grammar_never_break_the_server(client: LanguageClient):
    uri = (SPECS / "drawn.arch").as_uri()
    rng = random.Random(2)
    client.text_document_did_open(t.DidOpenTextDocumentParams(
        text_document=t.TextDocumentItem(uri=uri, language_id="archdsl", version=1, text="")))
    for version, text in enumerate(drawn_programs(), start=2):
        client.text_document_did_change(t.DidChangeTextDocumentParams(
            text_document=t.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[t.TextDocumentContentChangeWholeDocument(text=text)]))
        await every_request(client, uri, text, rng)
    assert client.messages == [] and client.error is None
