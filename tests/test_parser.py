"""The parser: text to the syntax tree, with spans, precedence, and syntax errors at their place.

Exact diagnostic texts live in tests/cases/errors/ (tests/test_diagnostics.py); here the errors are
checked for their kind and location only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from archdsl import ir
from archdsl.errors import ArchError, ParseError
from archdsl.parser import parse
from archdsl.source import Source, Span


def module(text: str) -> ir.Module:
    return parse(Source("t.arch", text))


def body(text: str) -> tuple[ir.Item, ...]:
    """The items of a network's body."""
    return module(f"network n : [1, 8, 8] = {text}").networks[0].body


def expr(text: str) -> ir.Expr:
    """An expression, parsed as a keyword argument's value."""
    (call,) = body(f"conv 1 k={text}")
    return call.args[-1].value


def show(e: ir.Expr) -> str:
    """An expression fully parenthesised, to read its structure."""
    if isinstance(e, ir.Number):
        return repr(e.value)
    if isinstance(e, ir.Var):
        return e.name
    if isinstance(e, ir.InputDim):
        return f"in.{e.dim}"
    if isinstance(e, ir.UnOp):
        return f"({e.op} {show(e.operand)})"
    if isinstance(e, ir.Func):
        return f"{e.name}({', '.join(show(a) for a in e.args)})"
    return f"({show(e.left)} {e.op} {show(e.right)})"


def test_definitions_params_defaults_and_shapes() -> None:
    m = module(
        'import "lib/x.arch"\n'
        "block b(c, k = 3,) = conv c k=k\n"
        "block plain = relu\n"
        "network n(classes = 10) : [1, 28, 28] -> [classes] = b(4); flatten; linear classes\n"
        "network m : [3, 8, 8,] = id\n"
    )
    assert [i.path for i in m.imports] == ["lib/x.arch"]
    b, plain = m.blocks
    assert (b.name, [p.name for p in b.params], [show(p.default) if p.default else None for p in b.params]) == (
        "b", ["c", "k"], [None, "3"],
    )  # fmt: skip
    assert plain.params == ()
    n, second = m.networks
    assert [show(e) for e in n.input] == ["1", "28", "28"]
    assert [show(e) for e in n.output] == ["classes"]
    assert (n.output_span.line, n.output_span.column) == (4, 42)  # the "["
    assert second.output is None and len(second.input) == 3


def test_spans_are_one_based_line_and_column() -> None:
    m = module("# a comment\nblock b(c) =\n    conv3x3 c;  relu\nnetwork n : [1, 8, 8] = b(2)")
    conv, relu = m.blocks[0].body
    assert (conv.span.line, conv.span.column, conv.name_span.end_column) == (3, 5, 12)
    assert (relu.span.line, relu.span.column) == (3, 17)
    assert (m.blocks[0].span.line, m.blocks[0].span.column) == (2, 7)  # the block's name
    call = m.networks[0].body[0]
    assert (call.name, call.span.column, call.args[0].span.column) == ("b", 25, 27)


@pytest.mark.parametrize(
    ("text", "structure"),
    [
        ("a + b * c", "(a + (b * c))"),
        ("(a + b) * c", "((a + b) * c)"),
        ("a - b - c", "((a - b) - c)"),
        ("a // 2 % 3", "((a // 2) % 3)"),
        ("a / 2", "(a / 2)"),
        ("-a * 2", "((- a) * 2)"),
        ("max(in.c // 2, 1)", "max((in.c // 2), 1)"),
        ("min(a, b, 3)", "min(a, b, 3)"),
        ("1e-4", "0.0001"),
        (".5", "0.5"),
        ("7", "7"),
    ],
)
def test_expression_precedence(text: str, structure: str) -> None:
    assert show(expr(text)) == structure


def test_spaced_arguments_group_operators_and_split_at_spaces() -> None:
    (conv,) = body("conv c - 1 k=3")
    assert [show(a.value) for a in conv.args] == ["(c - 1)", "3"]
    (conv,) = body("conv c (1)")  # a space before '(' starts a new argument
    assert [show(a.value) for a in conv.args] == ["c", "1"]
    (pool,) = body("adaptiveavgpool 3 4")
    assert [show(a.value) for a in pool.args] == ["3", "4"]
    (act,) = body("leakyrelu slope=-0.2")
    assert (act.args[0].name, show(act.args[0].value)) == ("slope", "(- 0.2)")


def test_block_calls_take_commas_and_keywords() -> None:
    (call,) = body("vgg(2, c=64,)")
    assert call.name == "vgg"
    assert [(a.name, show(a.value)) for a in call.args] == [(None, "2"), ("c", "64")]
    (bare,) = body("vgg()")
    assert bare.args == ()


def test_groups_repeats_branches_and_conditions() -> None:
    group, rep, cat, res, cond = body(
        "<relu; id;>; repeat n - 1 <conv3x3 8; relu>; concat [ id | conv1x1 4; relu | maxpool3 ];"
        " add [ <conv3x3 8; bn> | id ]; if n > 1 then relu else id"
    )
    assert [c.name for c in group.items] == ["relu", "id"]
    assert show(rep.count) == "(n - 1)" and isinstance(rep.item, ir.Group)
    assert cat.op == "concat" and [[c.name for c in b] for b in cat.branches] == [["id"], ["conv1x1", "relu"], ["maxpool3"]]
    assert res.op == "add" and len(res.branches) == 2
    assert show(cond.test) == "(n > 1)" and (cond.then.name, cond.otherwise.name) == ("relu", "id")


@pytest.mark.parametrize(
    ("test", "structure"),
    [
        ("a > 1", "(a > 1)"),
        ("a < 1", "(a < 1)"),
        ("in.c >= c", "(in.c >= c)"),
        ("a <= 1", "(a <= 1)"),
        ("a != 1 or b == 2 and not c < 3", "((a != 1) or ((b == 2) and (not (c < 3))))"),
        ("not not a", "(not (not a))"),
        ("a + 1 > b * 2", "((a + 1) > (b * 2))"),
    ],
)
def test_condition_comparisons_and_boolean_precedence(test: str, structure: str) -> None:
    # Regression: '<' and '>' lexed as group brackets inside a test, so `if a > 1` did not parse.
    (cond,) = body(f"if {test} then relu else <id; relu>")
    assert show(cond.test) == structure


def test_comments_and_free_whitespace() -> None:
    text = "network n :\n  [1,\n 8, 8]   # input\n  =  relu ;  # first\n\n  id  # last\n"
    assert [c.name for c in module(text).networks[0].body] == ["relu", "id"]


def test_empty_file_parses_to_nothing() -> None:
    m = module("# nothing here\n")
    assert (m.imports, m.blocks, m.networks) == ((), (), ())


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("network n : [1, 8, 8] = relu <id>", 1, 30),  # a missing ';'
        ("network n : [1, 8, 8] =\n  relu;\n  <conv3x3 4", 3, 13),  # unclosed group: just past the end
        ("network n : [1, 8, 8] = { relu }", 1, 25),
        ("network n : [1, 8, 8] = relu $", 1, 30),
        ("block = relu", 1, 7),
        ("network n [1, 8, 8] = relu", 1, 11),
        ("import 'x.arch'", 1, 8),
        ("network n : [1, 8, 8] = concat [ relu | ]", 1, 41),
    ],
)
def test_syntax_errors_are_located(text: str, line: int, column: int) -> None:
    with pytest.raises(ParseError) as info:
        module(text)
    err = info.value
    assert isinstance(err, ArchError)
    assert (err.file, err.line, err.column) == ("t.arch", line, column), err.render()


def test_deep_nesting_costs_no_python_stack() -> None:
    depth = 2000
    (group,) = body("<" * depth + "relu" + ">" * depth)
    for _ in range(depth - 1):
        (group,) = group.items
    assert group.items[0].name == "relu"


def test_a_text_parsed_again_comes_from_the_cache_and_a_changed_one_does_not():
    from archdsl import parser

    text = "network n : [1, 8, 8] = relu"
    first = parse(Source("cached.arch", text))
    assert parse(Source("cached.arch", text)) is first
    assert parse(Source("other.arch", text)) is not first  # spans name their file
    changed = parse(Source("cached.arch", text + "; relu"))
    assert len(changed.networks[0].body) == 2
    parser.clear_cache()
    assert parse(Source("cached.arch", text)) is not first
    assert parse(Source("cached.arch", text)).model_dump() == first.model_dump()


def test_the_cache_keeps_only_the_most_recent_texts():
    from archdsl import parser

    parser.clear_cache()
    sources = [Source("many.arch", f"network n : [1, 8, 8] = repeat {i} relu") for i in range(parser.CACHE_ENTRIES + 1)]
    trees = [parse(s) for s in sources]
    assert len(parser._cache) == parser.CACHE_ENTRIES
    assert parse(sources[-1]) is trees[-1]
    assert parse(sources[0]) is not trees[0]  # the oldest was dropped


def test_a_syntax_error_is_raised_every_time_not_cached():
    for _ in range(2):
        with pytest.raises(ParseError):
            parse(Source("bad.arch", "network n : [1, 8, 8] = relu;;"))


def test_the_cache_holds_up_under_threads():
    from concurrent.futures import ThreadPoolExecutor

    from archdsl import parser

    texts = [f"network n : [1, 8, 8] = repeat {i % (parser.CACHE_ENTRIES * 2)} relu" for i in range(2000)]

    def count(text: str) -> int:
        return parse(Source("threads.arch", text)).networks[0].body[0].count.value

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(count, texts)) == [i % (parser.CACHE_ENTRIES * 2) for i in range(2000)]
    assert len(parser._cache) <= parser.CACHE_ENTRIES


def _spans(node) -> list[tuple]:
    """Every span in a syntax tree, with the field that holds it, in order."""
    found = []
    if isinstance(node, ir.Frozen):
        for name in type(node).model_fields:
            value = getattr(node, name)
            if isinstance(value, Span):
                found.append((type(node).__name__, name, value.line, value.column, value.end_line, value.end_column))
            else:
                found += _spans(value)
    elif isinstance(node, tuple):
        for item in node:
            found += _spans(item)
    return found


def test_unit_rules_without_position_bookkeeping_keep_every_span() -> None:
    """The parser skips Lark's position propagation on unit rules (``?sum: product``) for speed; every span of
    every shipped spec, and of expressions in parentheses, is what Lark's full propagation gives."""
    from lark import Lark

    from archdsl import parser

    full = Lark(parser.GRAMMAR.read_text(), **parser._LARK_OPTIONS)
    root = Path(__file__).resolve().parents[1]
    texts = [path.read_text() for folder in ("specs", "archdsl/zoo") for path in sorted((root / folder).rglob("*.arch"))]
    texts.append("network n(a = 2) : [1, 8, 8] = conv ((a + 1) * (2)) k=(3); repeat (a) <relu>; "
                 "for w in [(a), a * (1 + 1)] conv3x3 (-(-w)); linear (range((a))[-(1)]) k=[x for x in range(a)[:(1)]]")
    assert len(texts) > 30
    for text in texts:
        source = Source("x.arch", text)
        expected = parser._ToIR(source).transform(full.parse(text))
        assert _spans(parse(source)) == _spans(expected)
