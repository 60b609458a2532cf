"""The Pygments lexer (archdsl/pygments_lexer.py): found through its entry point by name and file name, and every
token of every shipped spec and of programs drawn from the grammar typed as archdsl's parser reads it."""

from __future__ import annotations

import subprocess
import sys

import lark
import pytest
from hypothesis import HealthCheck, assume, given, settings

pytest.importorskip("pygments", reason="the lexer runs inside Pygments (pip install pygments)")
from highlighting import REPO, SPEC_FILES, expected_tokens
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, String
from test_fuzz import grammar_programs

from archdsl.pygments_lexer import ArchLexer

TYPES = {
    "keyword.import": Keyword.Namespace, "keyword.default": Keyword.Declaration,
    "keyword.block": Keyword.Declaration, "keyword.network": Keyword.Declaration, "keyword.control": Keyword,
    "keyword.join": Keyword, "keyword.logical": Operator.Word, "boolean": Keyword.Constant, "layer": Name.Builtin,
    "block": Name.Function, "network": Name.Class, "function": Name.Builtin, "parameter": Name.Variable,
    "argument": Name.Attribute, "variable": Name, "input": Name.Builtin.Pseudo, "integer": Number.Integer,
    "float": Number.Float, "string": String.Double, "comment": Comment.Single,
}
CLASSIFIED = set(TYPES.values())


def mismatches(name: str, text: str) -> list[str]:
    """Where the lexer's token types differ from the parser's classes (or the lexer gave up: an Error token)."""
    expected = {offset: TYPES[token.cls] for token in expected_tokens(text)
                for offset in range(token.start, token.end)}
    actual = {}
    wrong = []
    for start, kind, value in ArchLexer().get_tokens_unprocessed(text):
        if kind in Error:
            wrong.append(f"{name}: an error token {value!r} at {start}")
        if kind in CLASSIFIED:
            actual.update(dict.fromkeys(range(start, start + len(value)), kind))
    for offset in sorted(expected.keys() | actual.keys()):
        if expected.get(offset) != actual.get(offset):
            line = text.count("\n", 0, offset) + 1
            column = offset - text.rfind("\n", 0, offset)
            wrong.append(f"{name}:{line}:{column}: {text[offset]!r} expected {expected.get(offset)}, "
                         f"got {actual.get(offset)}")
    return wrong


def test_pygments_finds_the_lexer_by_its_names_and_files():
    assert type(get_lexer_by_name("arch")) is ArchLexer
    assert type(get_lexer_by_name("archdsl")) is ArchLexer
    assert type(get_lexer_for_filename("specs/vgg16.arch")) is ArchLexer


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda path: path.name)
def test_every_token_of_every_spec_has_the_parsers_type(path):
    text = path.read_text(encoding="utf-8")
    wrong = mismatches(path.name, text)
    assert not wrong, "\n".join(wrong[:40])


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(grammar_programs())
def test_programs_drawn_from_the_grammar_have_the_parsers_types(text):
    try:
        expected_tokens(text)
    except lark.exceptions.LarkError:
        assume(False)  # a drawn name that is a keyword
    wrong = mismatches("drawn.arch", text)
    assert not wrong, text + "\n" + "\n".join(wrong[:40])


def test_html_of_a_spec():
    html = highlight("block vgg(n, c) = repeat n <conv3x3 c; relu>; maxpool2  # d2l 8.2\n", ArchLexer(),
                     HtmlFormatter(nowrap=True))
    assert html == (
        '<span class="kd">block</span><span class="w"> </span><span class="nf">vgg</span><span class="p">(</span>'
        '<span class="nv">n</span><span class="p">,</span><span class="w"> </span><span class="nv">c</span>'
        '<span class="p">)</span><span class="w"> </span><span class="o">=</span><span class="w"> </span>'
        '<span class="k">repeat</span><span class="w"> </span><span class="n">n</span><span class="w"> </span>'
        '<span class="p">&lt;</span><span class="nb">conv3x3</span><span class="w"> </span><span class="n">c</span>'
        '<span class="p">;</span><span class="w"> </span><span class="nb">relu</span><span class="p">&gt;;</span>'
        '<span class="w"> </span><span class="nb">maxpool2</span><span class="w">  </span>'
        '<span class="c1"># d2l 8.2</span>\n')


def test_pygmentize_highlights_a_spec_file():
    """The command line finds the lexer from the file's suffix, as ``pygmentize specs/lenet.arch`` does."""
    done = subprocess.run([sys.executable, "-m", "pygments", "-f", "html", "-O", "nowrap",
                           str(REPO / "specs" / "lenet.arch")], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[2] == (
        '<span class="w">    </span><span class="nb">conv</span><span class="w"> </span><span class="mi">6</span>'
        '<span class="w"> </span><span class="na">k</span><span class="o">=</span><span class="mi">5</span>'
        '<span class="w"> </span><span class="na">p</span><span class="o">=</span><span class="mi">2</span>'
        '<span class="p">;</span><span class="w"> </span><span class="nb">sigmoid</span><span class="p">;</span>'
        '<span class="w"> </span><span class="nb">avgpool2</span><span class="p">;</span>')


def test_importing_archdsl_leaves_pygments_out():
    done = subprocess.run([sys.executable, "-c", "import sys, archdsl; print('pygments' in sys.modules)"],
                          capture_output=True, text=True, check=True)
    assert done.stdout == "False\n"
