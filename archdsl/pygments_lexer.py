"""A Pygments lexer for .arch specs, registered through the ``pygments.lexers`` entry point, so that
``pygmentize spec.arch``, Sphinx and MkDocs code blocks marked ``arch`` and Jupyter highlight archdsl.

Like the VS Code grammar (editors/vscode/syntaxes/), it tells tokens apart by their place, as
archdsl/grammar.lark reads them, never by a list of layer kinds: a name that starts an item is a layer
(``Name.Builtin``), a name glued to ``(`` there is a block call (``Name.Function``) and inside an expression a
function (``Name.Builtin``). For example::

    block vgg(n, c) = repeat n <conv3x3 c; relu>; maxpool2

reads ``block`` as a declaration, ``vgg`` as a function, ``n`` and ``c`` as variables, ``repeat`` as a
keyword, ``conv3x3``, ``relu`` and ``maxpool2`` as built-ins. Pygments imports this module; archdsl never does.
"""

from __future__ import annotations

from typing import ClassVar

from pygments.lexer import RegexLexer, bygroups, include
from pygments.token import Comment, Keyword, Name, Number, Operator, Punctuation, String, Text, Whitespace

__all__ = ["ArchLexer"]

NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# A definition starts with one of these words, and ends every state inside the one before it.
DEFINITION = r"(?=\b(?:import|default|block|network)\b)"


class ArchLexer(RegexLexer):
    """Lexer for archdsl's architecture specs (.arch)."""

    name = "archdsl"
    aliases: ClassVar = ["archdsl", "arch"]
    filenames: ClassVar = ["*.arch"]
    mimetypes: ClassVar = ["text/x-archdsl"]
    url = "https://github.com/archdsl/archdsl"

    tokens: ClassVar = {
        "root": [
            (r"\s+", Whitespace),
            (r"#.*", Comment.Single),
            (r"import\b", Keyword.Namespace),
            (r'"[^"\n]*"', String.Double),
            (rf"(default)(\s+)({NAME})", bygroups(Keyword.Declaration, Whitespace, Name.Builtin), "file-default"),
            (rf"(block)(\s+)({NAME})", bygroups(Keyword.Declaration, Whitespace, Name.Function), "header"),
            (rf"(network)(\s+)({NAME})", bygroups(Keyword.Declaration, Whitespace, Name.Class), "header"),
        ],
        "file-default": [
            (DEFINITION, Text, "#pop"),
            include("arguments"),
        ],
        # What follows a definition's name: its parameters, a network's shapes, then '=' and the body.
        "header": [
            (DEFINITION, Text, "#pop"),
            (r"\s+", Whitespace),
            (r"#.*", Comment.Single),
            (r"\(", Punctuation, "parameters"),
            (r"\[", Punctuation, "list"),
            (r"->", Operator),
            (r":", Punctuation),
            (r"=", Operator, "body"),
        ],
        "parameters": [
            (r"\s+", Whitespace),
            (r"#.*", Comment.Single),
            (r"\)", Punctuation, "#pop"),
            (r"=", Operator, "default-value"),
            (NAME, Name.Variable),
            (r",", Punctuation),
        ],
        "default-value": [
            (r"(?=[,)])", Text, "#pop"),
            include("expression"),
        ],
        "body": [
            (DEFINITION, Text, "#pop:2"),
            include("items"),
        ],
        # Items separated by ';': a layer, a block call, a group, a repeat, a loop, a join or an if.
        "items": [
            (r"\s+", Whitespace),
            (r"#.*", Comment.Single),
            (r"(repeat)(\s*)", bygroups(Keyword, Whitespace), "operand"),
            (rf"(for)(\s+)({NAME})(\s+)(in)(\s*)", bygroups(Keyword, Whitespace, Name, Whitespace, Keyword, Whitespace),
             "operand"),
            (r"if\b", Keyword, "test-then"),
            (r"(?:then|else)\b", Keyword),
            (r"(?:concat|add|mul)\b", Keyword),
            (r"\[", Punctuation, "branches"),
            (r"<", Punctuation, "group"),
            (r";", Punctuation),
            (rf"({NAME})(\()", bygroups(Name.Function, Punctuation), "call-arguments"),
            (NAME, Name.Builtin, "layer"),
        ],
        "branches": [
            (r"\]", Punctuation, "#pop"),
            (r"\|", Punctuation),
            include("items"),
        ],
        "group": [
            (r">", Punctuation, "#pop"),
            include("items"),
        ],
        # The count of a repeat or the list of a for: one expression, which ends where two operands would meet
        # (`repeat n + 1 conv3x3 c`: the item starts at conv3x3).
        "operand": [
            (r"(?<=[\w.)\]])(?<!\belse)(?=\s*[A-Za-z_<])", Text, "#pop"),
            include("expression"),
        ],
        "test-then": [
            (r"(?=\bthen\b)", Text, "#pop"),
            include("test"),
        ],
        "layer": [
            (r"(?=[;|\]>]|\b(?:else|import|default|block|network)\b)", Text, "#pop"),
            include("arguments"),
        ],
        "call-arguments": [
            (r"\)", Punctuation, "#pop"),
            include("arguments"),
        ],
        "arguments": [
            (rf"({NAME})(\s*)(=)(?!=)", bygroups(Name.Attribute, Whitespace, Operator)),
            (r",", Punctuation),
            include("expression"),
        ],
        "test": [
            (r"(?:and|or|not)\b", Operator.Word),
            (r"==|!=|<=|>=|<|>", Operator),
            include("expression"),
        ],
        "expression": [
            (r"\s+", Whitespace),
            (r"#.*", Comment.Single),
            (r"if\b", Keyword, "conditional"),
            (r"(?:true|false)\b", Keyword.Constant),
            (rf"in\s*\.\s*{NAME}", Name.Builtin.Pseudo),
            (rf"({NAME})(\()", bygroups(Name.Builtin, Punctuation), "parentheses"),
            (NAME, Name),
            (r"(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+", Number.Float),
            (r"\d+", Number.Integer),
            (r"\*\*|//|[-+*/%]", Operator),
            (r"\[", Punctuation, "list"),
            (r"\(", Punctuation, "parentheses"),
        ],
        # if TEST then A else B inside an expression: B goes on in the expression around it.
        "conditional": [
            (r"then\b", Keyword),
            (r"else\b", Keyword, "#pop"),
            include("test"),
        ],
        # A list, a list made by a for ([ceil(n * d) for n in xs]), an index, a slice (xs[a:b]).
        "list": [
            (r"\]", Punctuation, "#pop"),
            (r"[,:]", Punctuation),
            (rf"(for)(\s+)({NAME})(\s+)(in)\b", bygroups(Keyword, Whitespace, Name, Whitespace, Keyword)),
            include("expression"),
        ],
        "parentheses": [
            (r"\)", Punctuation, "#pop"),
            (r",", Punctuation),
            include("expression"),
        ],
    }
