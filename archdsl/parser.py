"""Text to syntax tree: Lark (LALR, positions on) with a transformer that builds ``ir`` nodes.

The transformer runs inside the LALR parser (no parse tree, no recursion), so deeply nested input
costs no Python stack. Lark's exceptions become ``ParseError`` with the place and a readable list
of what was expected.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

import lark
from lark import Lark, Token, Transformer_NonRecursive, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.grammar import Rule
from lark.lexer import TerminalDef
from lark.parse_tree_builder import PropagatePositions

from archdsl import ir, layers, values
from archdsl.errors import ArchError, LimitError, ParseError, ResolveError
from archdsl.source import Source, Span, line_column

GRAMMAR = Path(__file__).with_name("grammar.lark")

# Specs larger than this are refused before they are read or parsed (parsing runs at about
# 0.1 MB/s, and the largest network the layer limit admits fits in 2 MB).
MAX_SOURCE_SIZE = 10 * 2**20

# A spec holds at most this many tokens (names, numbers and symbols; a quoted path counts as one, comments are
# free: the lexer skips them at about 50 MB/s).
# Parsing costs 10 to 30 µs a token, so the largest spec admitted parses in about a second, and a flat
# expression of a mebibyte is refused by a scan before the parser starts. The largest spec shipped holds a few
# thousand tokens.
MAX_TOKENS = 50_000
_TOKEN = re.compile(r'#[^\n]*|"[^"\n]*"|[\w.]+|\S')

# How terminals read in "expected ..." lists.
_TERMINAL_WORDS = {
    "NAME": "a name",
    "CALLNAME": "a block call",
    "NUMBER": "a number",
    "STRING": 'a "quoted path"',
    "SEMICOLON": "';'",
    "COMMA": "','",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "LESSTHAN": "'<'",
    "MORETHAN": "'>'",
    "VBAR": "'|'",
    "EQUAL": "'='",
    "COLON": "':'",
    "DOT": "'.'",
    "__ANON_0": "'->'",
    "SUM_OP": "'+' or '-'",
    "PROD_OP": "an operator",
    "POW_OP": "'**'",
    "CMP_OP": "a comparison",
    "$END": "the end of the file",
}


# The parser's LALR tables, computed from grammar.lark when the grammar changes and shipped beside it
# as JSON (``python scripts/make_parser_tables.py``): building them from the grammar takes 150-300 ms,
# loading them 5 ms. JSON, not Lark's own cache: that cache is a pickle in the shared temporary folder,
# which anyone who can write there could plant; archdsl unpickles nothing, wherever it lies.
TABLES = GRAMMAR.with_name("grammar_tables.json")
_LARK_OPTIONS = {"parser": "lalr", "strict": True, "propagate_positions": True, "maybe_placeholders": True}


@lru_cache(maxsize=1)
def _lark() -> Lark:
    """The parser: from the shipped tables when they were made from this grammar by this Lark, else
    built from the grammar (slower, never wrong)."""
    grammar = GRAMMAR.read_text()
    tables = _shipped_tables(grammar)
    if tables is not None:
        parser = Lark._load_from_dict(tables["data"], tables["memo"])
    else:
        parser = Lark(grammar, **_LARK_OPTIONS)
    _skip_unit_rule_positions(parser)
    return parser


def _skip_unit_rule_positions(parser: Lark) -> None:
    """Drop Lark's position bookkeeping from the unit rules of the expression ladder (``?sum: product``).

    Such a reduction returns its one child unchanged, and the bookkeeping would set that child's container
    positions to the child's own: it changes nothing, yet a number in a call's argument climbs a dozen of these
    rungs, and they were a fifth of the time of parsing a zoo family (``tests/test_parser.py`` checks that every
    position stays as Lark sets it). Where Lark's internals are not as expected, nothing is changed.
    """
    callbacks = getattr(getattr(getattr(parser.parser, "parser", None), "parser", None), "callbacks", None)
    if not isinstance(callbacks, dict):
        return
    for rule, callback in callbacks.items():
        options = getattr(rule, "options", None)
        unit = (options is not None and options.expand1 and not rule.alias and len(rule.expansion) == 1
                and not rule.expansion[0].name.startswith("_"))  # an inlined rule would make a new node
        if unit and isinstance(callback, PropagatePositions):
            callbacks[rule] = callback.node_builder


def _shipped_tables(grammar: str) -> dict | None:
    try:
        tables = json.loads(TABLES.read_bytes(), object_hook=_decode)
    except (OSError, ValueError):
        return None
    valid = (isinstance(tables, dict) and tables.get("grammar_sha256") == _digest(grammar)
             and tables.get("lark") == lark.__version__)
    return tables if valid else None


def tables_are_current() -> bool:
    """Whether the shipped tables were made from this grammar by this version of Lark."""
    return _shipped_tables(GRAMMAR.read_text()) is not None


def tables_json(grammar: str) -> str:
    """The LALR tables of ``grammar`` as JSON, with the grammar's digest and Lark's version that they
    are valid for (Lark's ``memo_serialize``, the form its standalone parser generator writes)."""
    data, memo = Lark(grammar, **_LARK_OPTIONS).memo_serialize([TerminalDef, Rule])
    tables = {"grammar_sha256": _digest(grammar), "lark": lark.__version__, "data": data, "memo": memo}
    return json.dumps(_encode(tables), separators=(",", ":"), sort_keys=True) + "\n"


def _digest(grammar: str) -> str:
    return hashlib.sha256(grammar.encode("utf-8")).hexdigest()


# Lark's serialised tables hold dicts keyed by state numbers and tuples, which JSON has not: they are
# written as {"#pairs": [[key, value], ...]} and {"#tuple": [...]}.
def _encode(value):
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value):
            return {key: _encode(item) for key, item in value.items()}
        return {"#pairs": [[_encode(key), _encode(item)] for key, item in value.items()]}
    if isinstance(value, tuple):
        return {"#tuple": [_encode(item) for item in value]}
    if isinstance(value, list):
        return [_encode(item) for item in value]
    return value


def _decode(obj: dict):
    if "#pairs" in obj:
        return {(tuple(key) if isinstance(key, list) else key): item for key, item in obj["#pairs"]}
    if "#tuple" in obj:
        return tuple(obj["#tuple"])
    return obj


# Syntax trees of recently parsed texts, by (path, text): what Python's bytecode cache is to a model
# written in Python. Loading a spec again (a parameter sweep, `compare` at two settings, a notebook
# re-running a cell) resolves again but does not parse again; its imports, which every spec of a
# family shares, are parsed once. Trees are immutable, so sharing them is safe. Bounded: texts up
# to CACHE_TEXT_LIMIT characters, the CACHE_ENTRIES most recently used.
CACHE_ENTRIES = 64
CACHE_TEXT_LIMIT = 256 * 2**10
_cache: OrderedDict[tuple[str, str], ir.Module] = OrderedDict()
_cache_lock = threading.Lock()  # programs may be loaded from several threads


def clear_cache() -> None:
    """Forget every cached syntax tree (the benchmarks use this to time cold parses)."""
    with _cache_lock:
        _cache.clear()


def parse(source: Source) -> ir.Module:
    """Parse one file's text into its syntax tree (a cached one when the same path had the same text).

    >>> parse(Source("x.arch", "network n : [1, 28, 28] = flatten; linear 10"))   # doctest: +SKIP
    """
    key = (source.path, source.text)
    with _cache_lock:
        module = _cache.get(key)
        if module is not None:
            _cache.move_to_end(key)
            return module
    module = _parse(source)
    if len(source.text) <= CACHE_TEXT_LIMIT:
        with _cache_lock:
            _cache[key] = module
            if len(_cache) > CACHE_ENTRIES:
                _cache.popitem(last=False)
    return module


def _parse(source: Source) -> ir.Module:
    if len(source.text) > MAX_SOURCE_SIZE:
        raise LimitError(f"the spec is {len(source.text):,} characters long, more than the limit of {MAX_SOURCE_SIZE:,}",
                         file=source.path, hint="split it into files that import each other")
    _count_tokens(source)
    try:
        tree = _lark().parse(source.text)
    except UnexpectedInput as err:
        raise _parse_error(source, err) from None
    try:
        return _ToIR(source).transform(tree)
    except VisitError as err:
        if isinstance(err.orig_exc, ArchError):
            raise err.orig_exc from None
        raise


def _count_tokens(source: Source) -> None:
    """Refuse a spec of more than ``MAX_TOKENS`` tokens at the first token past the limit, before parsing."""
    tokens = (match for match in _TOKEN.finditer(source.text) if match.group()[0] != "#")
    for count, match in enumerate(tokens, 1):
        if count > MAX_TOKENS:
            line, column = line_column(source.text, match.start())
            raise LimitError(f"the spec holds more than {MAX_TOKENS:,} tokens (names, numbers and symbols)",
                             source.span(line, column),
                             hint="split it into files that import each other, or use repeat and blocks "
                                  "instead of writing each layer or term out")


def _defaults_by_kind(defaults: tuple[ir.LayerDefault, ...]) -> dict[str, dict[str, ir.Arg]]:
    """The arguments each ``default`` statement of a file sets, by layer kind, checked: a layer kind by its
    own name (``conv``, not the spelling ``conv3x3``), arguments it has, each set once."""
    by_kind: dict[str, dict[str, ir.Arg]] = {}
    for default in defaults:
        found = layers.lookup(default.kind)
        if found is None or found[1]:
            close = layers.suggest(default.kind)
            hint = (f"a default names a layer kind, not a spelling that presets arguments: default {found[0].key} ..."
                    if found else f"did you mean '{close}'?" if close else "`archdsl layers` lists the layer kinds")
            raise ResolveError(f"'{default.kind}' is not a layer kind", default.kind_span, hint=hint)
        kind = found[0]
        names = {spec.name for spec in kind.args}
        for arg in default.args:
            if arg.name not in names:
                raise ResolveError(f"{kind.key} has no argument '{arg.name}'", arg.span,
                                   hint=f"its arguments are {', '.join(sorted(names))}" if names else f"{kind.key} takes no arguments")
            if arg.name in by_kind.get(kind.key, {}):
                raise ResolveError(f"a default for {kind.key} {arg.name} is already set in this file", arg.span,
                                   hint=f"first set at {by_kind[kind.key][arg.name].span}")
            by_kind.setdefault(kind.key, {})[arg.name] = arg
    return by_kind


# Deeper than this, items are left as written: the resolver refuses nesting this deep anyway.
_DEFAULTS_DEPTH = 256


def _with_defaults(items: tuple[ir.Item, ...], given: dict[str, dict[str, ir.Arg]], depth: int = 0) -> tuple[ir.Item, ...]:
    """``items`` with each layer call given the file's defaults for the arguments it does not give itself,
    by name or by position, and its spelling does not fix (``conv3x3`` fixes k)."""
    if depth > _DEFAULTS_DEPTH:
        return items
    out = []
    for item in items:
        if isinstance(item, ir.Call):
            item = _call_with_defaults(item, given)
        elif isinstance(item, ir.Group):
            item = item.model_copy(update={"items": _with_defaults(item.items, given, depth + 1)})
        elif isinstance(item, (ir.Repeat, ir.Loop)):
            item = item.model_copy(update={"item": _with_defaults((item.item,), given, depth + 1)[0]})
        elif isinstance(item, ir.Cond):
            then, otherwise = _with_defaults((item.then, item.otherwise), given, depth + 1)
            item = item.model_copy(update={"then": then, "otherwise": otherwise})
        elif isinstance(item, ir.Branch):
            item = item.model_copy(update={"branches": tuple(_with_defaults(b, given, depth + 1) for b in item.branches)})
        out.append(item)
    return tuple(out)


def _call_with_defaults(call: ir.Call, given: dict[str, dict[str, ir.Arg]]) -> ir.Call:
    found = layers.lookup(call.name)
    if found is None or found[0].key not in given:
        return call  # a block call, or a kind without defaults
    kind, preset = found
    fixed = {name for name, value in preset.items() if not isinstance(value, layers.Default)}
    slots = [spec.name for spec in kind.args if spec.name not in fixed and spec.by_position]
    positional = sum(1 for arg in call.args if arg.name is None)
    stated = {arg.name for arg in call.args if arg.name is not None} | set(slots[:positional]) | fixed
    added = tuple(arg for name, arg in given[kind.key].items() if name not in stated)
    return call.model_copy(update={"args": call.args + added}) if added else call


def assemble(span: Span, decls) -> ir.Module:
    """One file's module from its top-level definitions, in the order written: the file's ``default``
    statements are applied to every block and network of it (the parser's last step, and the recovering
    parser's, which parses the definitions one by one)."""
    defaults = tuple(d for d in decls if isinstance(d, ir.LayerDefault))
    blocks = tuple(d for d in decls if isinstance(d, ir.BlockDef))
    networks = tuple(d for d in decls if isinstance(d, ir.NetworkDef))
    if defaults:
        given = _defaults_by_kind(defaults)
        blocks = tuple(b.model_copy(update={"body": _with_defaults(b.body, given)}) for b in blocks)
        networks = tuple(n.model_copy(update={"body": _with_defaults(n.body, given)}) for n in networks)
    return ir.Module.make(span=span, imports=tuple(d for d in decls if isinstance(d, ir.Import)),
                          defaults=defaults, blocks=blocks, networks=networks)


def _words(expected: set[str]) -> str:
    names = sorted({_TERMINAL_WORDS.get(t, f"'{t.lower()}'") for t in expected if not t.startswith("_")})
    if len(names) > 6:
        names = names[:6] + ["..."]
    return ", ".join(names)


def _parse_error(source: Source, err: UnexpectedInput) -> ParseError:
    line, column = err.line, err.column
    if isinstance(err, UnexpectedEOF) or (isinstance(err, UnexpectedToken) and err.token.type == "$END"):
        # Point just past the last non-blank character: that is where something is missing.
        line, column = source.position(len(source.text.rstrip()))
        expected = getattr(err, "expected", None) or getattr(err, "accepts", None) or set()
        return ParseError(
            f"unexpected end of file; expected {_words(set(expected))}",
            source.span(line, column),
            hint=_unclosed(source.text),
        )
    if isinstance(err, UnexpectedCharacters):
        char = source.text[err.pos_in_stream] if err.pos_in_stream < len(source.text) else "?"
        hint = None
        if char in "{}":
            hint = "groups are written < ... >, branches [ A | B ]"
        elif char == "'":
            hint = 'import paths take double quotes: import "blocks.arch"'
        return ParseError(f"unexpected character {char!r}", source.span(line, column), hint=hint)
    assert isinstance(err, UnexpectedToken)
    token = err.token
    expected = set(err.accepts or err.expected)
    found = f"'{token}'" if token.type != "NAME" else f"name '{token}'"
    message = f"unexpected {found}; expected {_words(expected)}"
    hint = None
    if token.type == "SUM_OP" and "SUM_OP" not in expected and "SEMICOLON" in expected:
        written = re.match(r"[-+]\s*[\w.]*", source.text[err.pos_in_stream:]).group()
        hint = (f"a space-separated argument cannot start with a sign: give it by name (name={written}) or in "
                f"parentheses ({written})")
    elif token.type == "LSQB" and "LSQB" not in expected and "SEMICOLON" in expected:
        hint = "a list cannot start a space-separated argument: write it in parentheses, (1, 7), or by name, k=[1, 7]"
    elif "SEMICOLON" in expected and token.type in {"NAME", "CALLNAME", "LESSTHAN", "REPEAT", "FOR", "CONCAT", "ADD",
                                                    "MUL", "IF"}:
        message = f"expected ';' before {found}"
        hint = "items of a sequence are separated by ';'"
    elif expected & {"MORETHAN", "RSQB", "RPAR"} and token.type in {"BLOCK", "NETWORK", "IMPORT"}:
        hint = _unclosed(source.text[: err.pos_in_stream])
    elif "COLON" in expected:
        hint = "a network declares its input shape: network NAME : [C, H, W] = ..."
    elif token.type in {"RSQB", "VBAR"} and "CALLNAME" in expected:
        hint = "a branch needs at least one item; 'id' passes the input through unchanged"
    elif token.type == "MORETHAN" and "MORETHAN" not in expected:
        after = source.text[err.pos_in_stream + 1:].lstrip()[:1]
        if after and (after.isalnum() or after in "(_."):
            hint = "a comparison belongs in the test of an if: if A > B then X else Y"
        else:
            hint = "'>' closes a group, but no '<' is open here"
    elif token.type == "EQUAL" and "EQUAL" not in expected:
        hint = "keyword arguments are written name=value after the layer's name"
    end_column = getattr(token, "end_column", None) or column + max(1, len(str(token)))
    return ParseError(message, source.span(line, column, line, end_column), hint=hint)


_BRACKET_SCAN = re.compile(r'#[^\n]*|"[^"\n]*"|[A-Za-z_]\w*|[<>]=|[<>\[\]()]')
_CLOSING = {"<": ">", "[": "]", "(": ")"}


def _unclosed(text: str) -> str | None:
    """Where the innermost bracket that is still open at the end of ``text`` was opened, as a hint.

    A rough scan (it skips comments, strings, and comparisons between ``if`` and ``then``), good
    enough to point at the culprit after a parse error.
    """
    stack: list[tuple[str, int]] = []
    tests = 0  # an if's test may hold a conditional expression with its own if ... then
    for match in _BRACKET_SCAN.finditer(text):
        word = match.group()
        if word in ("if", "then"):
            tests = tests + 1 if word == "if" else max(0, tests - 1)
        elif word in _CLOSING and not (tests and word == "<"):
            stack.append((word, match.start()))
        elif word in _CLOSING.values() and not (tests and word == ">"):
            if stack and _CLOSING[stack[-1][0]] == word:
                stack.pop()
    if not stack:
        return None
    char, offset = stack[-1]
    line, column = line_column(text, offset)
    return f"the '{char}' at line {line}, column {column} is never closed with '{_CLOSING[char]}'"


@v_args(inline=True, meta=True)
class _ToIR(Transformer_NonRecursive):
    """One method per grammar rule or alias, named as the rule is.

    Lark builds the parse tree without recursion and this transformer walks it without recursion,
    so ten thousand nested groups cost no Python stack.
    """

    def __init__(self, source: Source) -> None:
        super().__init__()
        self.source = source

    def _span(self, meta_or_token) -> Span:
        m = meta_or_token
        return self.source.span(m.line, m.column, m.end_line, m.end_column)

    def start(self, meta, *decls):
        return assemble(self._span(meta) if not meta.empty else self.source.span(1, 1), decls)

    def default(self, meta, kind: Token, *args):
        return ir.LayerDefault.make(span=self._span(meta), kind=str(kind), kind_span=self._span(kind), args=args)

    def import_(self, meta, path: Token):
        return ir.Import.make(span=self._span(meta), path=str(path)[1:-1])

    def block(self, meta, name: Token, params, body):
        return ir.BlockDef.make(span=self._span(name), name=str(name), params=params or (), body=body)

    def network(self, meta, name: Token, params, input_shape, output_shape, body):
        return ir.NetworkDef.make(
            span=self._span(name),
            name=str(name),
            params=params or (),
            input=input_shape[0],
            output=output_shape[0] if output_shape else None,
            output_span=output_shape[1] if output_shape else None,
            body=body,
        )

    def params(self, meta, *params):
        return params

    def param(self, meta, name: Token, default):
        return ir.Param.make(span=self._span(name), name=str(name), default=default)

    def shape(self, meta, *dims):
        return (dims, self._span(meta))

    def body(self, meta, *items):
        return items

    def call(self, meta, name: Token, *args):
        args = tuple(a if isinstance(a, ir.Arg) else ir.Arg.make(span=a.span, name=None, value=a) for a in args if a is not None)
        return ir.Call.make(span=self._span(meta), name=str(name), name_span=self._span(name), args=args)

    def kwarg(self, meta, name: Token, value):
        return ir.Arg.make(span=self._span(meta), name=str(name), value=value)

    def group(self, meta, items):
        return ir.Group.make(span=self._span(meta), items=items)

    def repeat(self, meta, count, item):
        return ir.Repeat.make(span=self._span(meta), count=count, item=item)

    def loop(self, meta, name: Token, values, item):
        return ir.Loop.make(span=self._span(meta), name=str(name), name_span=self._span(name), values=values, item=item)

    def branch(self, meta, op: Token, *bodies):
        return ir.Branch.make(span=self._span(op), op=str(op), branches=bodies)

    def cond(self, meta, test, then, otherwise):
        return ir.Cond.make(span=self._span(meta), test=test, then=then, otherwise=otherwise)

    def number(self, meta, token: Token):
        span = self._span(token)
        return ir.Number.make(span=span, value=values.literal(str(token), span, bounded=False))

    def var(self, meta, token: Token):
        return ir.Var.make(span=self._span(token), name=str(token))

    def input_dim(self, meta, dim: Token):
        return ir.InputDim.make(span=self._span(meta), dim=str(dim))

    def func(self, meta, name: Token, *args):
        return ir.Func.make(span=self._span(meta), name=str(name), args=args)

    def list_(self, meta, *items):
        return ir.ListExpr.make(span=self._span(meta), items=tuple(i for i in items if i is not None))

    def list_for(self, meta, item, name: Token, values):
        return ir.ListFor.make(span=self._span(meta), item=item, name=str(name), values=values)

    def index(self, meta, value, index):
        return ir.Index.make(span=self._span(meta), value=value, index=index)

    def slice_(self, meta, value, start, end):
        return ir.SliceExpr.make(span=self._span(meta), value=value, start=start, end=end)

    def cond_expr(self, meta, test, then, otherwise):
        return ir.CondExpr.make(span=self._span(meta), test=test, then=then, otherwise=otherwise)

    def binop(self, meta, left, op: Token, right):
        return ir.BinOp.make(span=self._span(meta), op=str(op), left=left, right=right)

    compare = binop
    boolop = binop

    def unop(self, meta, op: Token, operand):
        return ir.UnOp.make(span=self._span(meta), op=str(op), operand=operand)

    def not_(self, meta, operand):
        return ir.UnOp.make(span=self._span(meta), op="not", operand=operand)
