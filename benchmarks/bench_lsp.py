"""The language server's latency: from a didChange to the published diagnostics and the inlay hints' answer,
against a warm `archdsl lsp` over stdio (pygls's own client), beside the cold `archdsl check` of the same file.

    python benchmarks/bench_lsp.py     # googlenet, the zoo's convnext (convnext_tiny) and its largest spec

Each edit changes one number of the spec (a real keystroke's work: the whole text is analysed again), so no
cache of the server's answers a later edit. Medians of 31 edits after 3 warm-up edits.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

from lsprotocol import types as t
from pygls.lsp.client import LanguageClient
from timing import ARCHDSL, command_time

REPO = Path(__file__).resolve().parents[1]
ZOO = REPO / "archdsl" / "zoo"
SPECS = [REPO / "specs" / "googlenet.arch", ZOO / "convnext.arch",  # convnext_tiny: the file's first network
         max(ZOO.glob("*.arch"), key=lambda p: len(p.read_text()))]
EDITS, WARMUP = 31, 3
PAUSE = 0.1  # seconds between two edits


async def latencies(path: Path) -> tuple[list[float], list[float]]:
    """Seconds from each didChange to its diagnostics, and to the inlay hints' answer after them."""
    client = LanguageClient("bench", "1")
    await client.start_io(sys.executable, "-m", "archdsl", "lsp")
    published: asyncio.Queue = asyncio.Queue()

    @client.feature(t.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def diagnostics(params: t.PublishDiagnosticsParams) -> None:
        published.put_nowait(params)

    await client.initialize_async(t.InitializeParams(capabilities=t.ClientCapabilities(), root_uri=path.parent.as_uri()))
    client.initialized(t.InitializedParams())
    uri, text = path.as_uri(), path.read_text()
    client.text_document_did_open(t.DidOpenTextDocumentParams(
        text_document=t.TextDocumentItem(uri=uri, language_id="archdsl", version=1, text=text)))
    await published.get()
    to_diagnostics, to_hints = [], []
    whole = t.Range(start=t.Position(line=0, character=0), end=t.Position(line=text.count("\n") + 1, character=0))
    for version in range(2, 2 + WARMUP + EDITS):
        await asyncio.sleep(PAUSE)  # keystrokes apart, as typing: a burst is throttled (archdsl/lsp/server.py)
        edited = text + f"\n# edit {version}\n"
        start = time.perf_counter()
        client.text_document_did_change(t.DidChangeTextDocumentParams(
            text_document=t.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[t.TextDocumentContentChangeWholeDocument(text=edited)]))
        while (await published.get()).version != version:
            pass
        middle = time.perf_counter()
        await client.text_document_inlay_hint_async(t.InlayHintParams(
            text_document=t.TextDocumentIdentifier(uri=uri), range=whole))
        end = time.perf_counter()
        if version >= 2 + WARMUP:
            to_diagnostics.append(middle - start)
            to_hints.append(end - start)
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return to_diagnostics, to_hints


def main() -> None:
    print("| spec | lines | didChange → diagnostics (ms) | → diagnostics + inlay hints (ms) | cold `archdsl check` (ms) |")
    print("|---|---:|---:|---:|---:|")
    for path in SPECS:
        diagnostics, hints = asyncio.run(latencies(path))
        cold = command_time([ARCHDSL, "check", str(path)], 5)
        print(f"| {path.relative_to(REPO)} | {path.read_text().count(chr(10))} | "
              f"{statistics.median(diagnostics) * 1e3:.1f} | {statistics.median(hints) * 1e3:.1f} | {cold * 1e3:.0f} |")


if __name__ == "__main__":
    main()
