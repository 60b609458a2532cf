"""The highlighters' oracle: each token of a spec with the class an editor should colour it as, read from
archdsl's own grammar, so that the VS Code grammar and the Pygments lexer are checked against the parser
rather than against themselves.

Lark parses the spec with every token kept (keywords and punctuation too) and comments collected; a walk over
the tree names each token by the rule it sits in: the name of a ``call`` is a layer, the CALLNAME of a ``call``
a block, of a ``func`` a function, and so on. Punctuation and operators are not classified.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token

from archdsl.parser import GRAMMAR

REPO = Path(__file__).resolve().parents[1]
# Every spec shipped: the classic networks, their libraries and examples, the zoo, and a file that uses each
# form of the language once (tests/cases/highlighting.arch).
SPEC_FILES = sorted([*(REPO / "specs").rglob("*.arch"), *(REPO / "archdsl" / "zoo").glob("*.arch"),
                     REPO / "tests" / "cases" / "highlighting.arch"])

# The keywords' terminals (Lark names a keyword's anonymous terminal after it) and their classes.
KEYWORDS = {
    "IMPORT": "keyword.import", "DEFAULT": "keyword.default", "BLOCK": "keyword.block", "NETWORK": "keyword.network",
    "REPEAT": "keyword.control", "FOR": "keyword.control", "IN": "keyword.control", "IF": "keyword.control",
    "THEN": "keyword.control", "ELSE": "keyword.control",
    "CONCAT": "keyword.join", "ADD": "keyword.join", "MUL": "keyword.join",
    "AND": "keyword.logical", "OR": "keyword.logical", "NOT": "keyword.logical",
}
CLASSES = (*sorted(set(KEYWORDS.values())), "boolean", "layer", "block", "network", "function", "parameter",
           "argument", "variable", "input", "integer", "float", "string", "comment")


@dataclass(frozen=True)
class Expected:
    start: int  # character offsets into the text, end exclusive
    end: int
    cls: str
    text: str


@lru_cache(maxsize=1)
def _parser() -> tuple[Lark, list[Token]]:
    comments: list[Token] = []
    parser = Lark(GRAMMAR.read_text(), parser="lalr", strict=True, keep_all_tokens=True, maybe_placeholders=True,
                  lexer_callbacks={"COMMENT": comments.append})
    return parser, comments


def expected_tokens(text: str) -> list[Expected]:
    """Every keyword, name, number, string and comment of ``text`` with its class, in order of place."""
    parser, comments = _parser()
    comments.clear()
    tree = parser.parse(text)
    found: list[Expected] = [_at(token, "comment") for token in comments]

    def add(token: Token, cls: str) -> None:
        found.append(_at(token, cls))

    named: set[int] = set()  # tokens classified by their rule, not by their terminal
    for node in tree.iter_subtrees():
        children = node.children
        if node.data == "call":
            add(children[0], "layer" if children[0].type == "NAME" else "block")
            named.add(id(children[0]))
        elif node.data in ("block", "network", "default"):
            add(children[1], {"block": "block", "network": "network", "default": "layer"}[node.data])
            named.add(id(children[1]))
        elif node.data in ("param", "kwarg"):
            add(children[0], "parameter" if node.data == "param" else "argument")
        elif node.data == "var":
            add(children[0], "boolean" if children[0] in ("true", "false") else "variable")
        elif node.data == "func":
            add(children[0], "function")
        elif node.data == "loop":
            add(children[1], "variable")
        elif node.data == "list_for":  # [ITEM for NAME in LIST]
            add(children[3], "variable")
        elif node.data == "input_dim":
            start, end = children[0], children[-1]
            found.append(Expected(start.start_pos, end.end_pos, "input", text[start.start_pos:end.end_pos]))
            named.add(id(start))
        elif node.data == "number":
            number = children[0]
            add(number, "float" if any(c in number for c in ".eE") else "integer")
    for token in tree.scan_values(lambda value: isinstance(value, Token)):
        if token.type in KEYWORDS and id(token) not in named:
            add(token, KEYWORDS[token.type])
        elif token.type == "STRING":
            add(token, "string")
    return sorted(found, key=lambda expected: expected.start)


def _at(token: Token, cls: str) -> Expected:
    return Expected(token.start_pos, token.end_pos, cls, str(token))
