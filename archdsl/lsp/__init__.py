"""archdsl's language server (``archdsl lsp``): the compiler's front end behind the Language Server Protocol.

    analysis.py   one document analysed: every error, the chosen network resolved, the directive comment
    places.py     the syntax tree by place; archdsl's places and the protocol's positions
    features.py   diagnostics, inlay hints, hover, definition, references, rename, symbols, formatting
    editing.py    completion and signature help, from the text before the cursor
    server.py     pygls wiring, the worker thread and the dropping of stale work

It needs the ``lsp`` extra (pygls, lsprotocol); nothing else in archdsl imports this package.
"""
