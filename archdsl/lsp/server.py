"""``archdsl lsp``: the Language Server Protocol over standard input and output, built on pygls.

Documents are analysed in one worker thread, so the server keeps reading while it works. A burst of edits is
coalesced: when an analysis ends and the document has changed meanwhile, its result is dropped unpublished and
the newest text is analysed, and one document's diagnostics are published at most once every
``PUBLISH_INTERVAL`` seconds (the first edit after a pause is answered at once, the rest of a burst waits out the
interval), so a hundred keystrokes cost a few analyses however fast the machine, and the diagnostics published
are always those of the newest version (they carry it). Requests (hover, inlay hints, ...) are answered from the
analysis of the current version, made on demand when the last one is stale.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, version

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer

from archdsl.lsp import editing, features
from archdsl.lsp.analysis import Analysis, analyze, file_path

log = logging.getLogger(__name__)

PUBLISH_INTERVAL = 0.05  # seconds between two publications of one document's diagnostics


class ArchServer(LanguageServer):
    """The server, with each open document's latest analysis."""

    def __init__(self) -> None:
        try:
            release = version("archdsl")
        except PackageNotFoundError:
            release = "0+unknown"
        super().__init__("archdsl", release, text_document_sync_kind=lsp.TextDocumentSyncKind.Incremental)
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="archdsl-analysis")
        self.analyses: dict[str, tuple[int | None, str, Analysis]] = {}  # uri -> (version, text, analysis)
        self.running: set[str] = set()  # documents whose diagnostics are being made
        self.published_at: dict[str, float] = {}  # uri -> the event loop's time of its last publication

    def encoding(self) -> str:
        return str(self.workspace.position_encoding or "utf-16")

    async def analysis(self, uri: str) -> Analysis:
        """The analysis of the document's current text (made now when the last one is older)."""
        document = self.workspace.get_text_document(uri)
        text, current = document.source, document.version
        cached = self.analyses.get(uri)
        if cached is not None and cached[0] == current and cached[1] == text:
            return cached[2]
        result = await asyncio.get_running_loop().run_in_executor(self.worker, analyze, file_path(uri), text)
        self.analyses[uri] = (current, text, result)
        return result

    async def context(self, uri: str) -> features.Context:
        return features.Context(await self.analysis(uri), uri, self.encoding())

    async def publish(self, uri: str) -> None:
        """Publish the diagnostics of the newest version; an edit made while analysing restarts the work."""
        if uri in self.running:
            return  # the loop below picks up the newest text
        self.running.add(uri)
        loop = asyncio.get_running_loop()
        try:
            pause = self.published_at.get(uri, float("-inf")) + PUBLISH_INTERVAL - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)  # the edits of a burst that arrive meanwhile are answered together
            while uri in self.workspace.text_documents:
                document = self.workspace.get_text_document(uri)
                current, text = document.version, document.source
                context = await self.context(uri)
                if uri not in self.workspace.text_documents:
                    break
                document = self.workspace.get_text_document(uri)
                if (document.version, document.source) != (current, text):
                    continue  # stale: dropped unpublished
                self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(
                    uri=uri, version=current, diagnostics=features.diagnostics(context)))
                self.published_at[uri] = loop.time()
                if _refreshes_inlay_hints(self):
                    self.workspace_inlay_hint_refresh(None)
                break
        finally:
            self.running.discard(uri)

    def others(self, uri: str) -> list[Analysis]:
        """The latest analyses of the other open documents (for references and rename across files)."""
        return [entry[2] for other, entry in self.analyses.items() if other != uri]


def _refreshes_inlay_hints(server: ArchServer) -> bool:
    workspace = server.client_capabilities.workspace
    hints = workspace.inlay_hint if workspace is not None else None
    return bool(hints is not None and hints.refresh_support)


server = ArchServer()


@server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
async def did_open(ls: ArchServer, params: lsp.DidOpenTextDocumentParams) -> None:
    await ls.publish(params.text_document.uri)


@server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
async def did_change(ls: ArchServer, params: lsp.DidChangeTextDocumentParams) -> None:
    await ls.publish(params.text_document.uri)


@server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
async def did_save(ls: ArchServer, params: lsp.DidSaveTextDocumentParams) -> None:
    ls.analyses.pop(params.text_document.uri, None)  # the files it imports may have changed on disk too
    await ls.publish(params.text_document.uri)


@server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: ArchServer, params: lsp.DidCloseTextDocumentParams) -> None:
    ls.analyses.pop(params.text_document.uri, None)
    ls.published_at.pop(params.text_document.uri, None)
    ls.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[]))


@server.feature(lsp.TEXT_DOCUMENT_INLAY_HINT, lsp.InlayHintOptions(resolve_provider=False))
async def inlay_hint(ls: ArchServer, params: lsp.InlayHintParams) -> list[lsp.InlayHint]:
    return features.inlay_hints(await ls.context(params.text_document.uri), params.range)


@server.feature(lsp.TEXT_DOCUMENT_HOVER)
async def hover(ls: ArchServer, params: lsp.HoverParams) -> lsp.Hover | None:
    return features.hover(await ls.context(params.text_document.uri), params.position)


@server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
async def definition(ls: ArchServer, params: lsp.DefinitionParams) -> lsp.Location | None:
    return features.definition(await ls.context(params.text_document.uri), params.position)


@server.feature(lsp.TEXT_DOCUMENT_REFERENCES)
async def references(ls: ArchServer, params: lsp.ReferenceParams) -> list[lsp.Location] | None:
    uri = params.text_document.uri
    return features.references(await ls.context(uri), params.position, params.context.include_declaration,
                               ls.others(uri))


@server.feature(lsp.TEXT_DOCUMENT_COMPLETION, lsp.CompletionOptions(trigger_characters=[".", " ", "(", "="]))
async def completion(ls: ArchServer, params: lsp.CompletionParams) -> lsp.CompletionList:
    return editing.completion(await ls.context(params.text_document.uri), params.position)


@server.feature(lsp.TEXT_DOCUMENT_SIGNATURE_HELP, lsp.SignatureHelpOptions(trigger_characters=["(", ","]))
async def signature_help(ls: ArchServer, params: lsp.SignatureHelpParams) -> lsp.SignatureHelp | None:
    return editing.signature_help(await ls.context(params.text_document.uri), params.position)


@server.feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
async def document_symbol(ls: ArchServer, params: lsp.DocumentSymbolParams) -> list[lsp.DocumentSymbol]:
    return features.symbols(await ls.context(params.text_document.uri))


@server.feature(lsp.TEXT_DOCUMENT_FORMATTING)
async def formatting(ls: ArchServer, params: lsp.DocumentFormattingParams) -> list[lsp.TextEdit] | None:
    return features.formatting(await ls.context(params.text_document.uri))


@server.feature(lsp.TEXT_DOCUMENT_PREPARE_RENAME)
async def prepare_rename(ls: ArchServer, params: lsp.PrepareRenameParams):
    return features.prepare_rename(await ls.context(params.text_document.uri), params.position)


@server.feature(lsp.TEXT_DOCUMENT_RENAME, lsp.RenameOptions(prepare_provider=True))
async def rename(ls: ArchServer, params: lsp.RenameParams) -> lsp.WorkspaceEdit | None:
    from pygls.exceptions import JsonRpcInvalidParams

    from archdsl.errors import ArchError

    uri = params.text_document.uri
    try:
        return features.rename(await ls.context(uri), params.position, params.new_name, ls.others(uri))
    except ArchError as err:
        raise JsonRpcInvalidParams(err.message) from None


def serve() -> None:
    """Run the server on standard input and output until the client ends it."""
    import os
    import sys

    server.start_io()
    # pygls closes standard output when the session ends; what the command line flushes after it goes nowhere.
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115
