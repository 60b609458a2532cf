"""The formatter (``archdsl fmt``): exact output on small cases, and the round trip on every spec and
on generated programs: formatting is idempotent, the formatted text parses to the same syntax tree
(spans aside), and every comment survives, in order."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from click.testing import CliRunner

from archdsl.cli import app
from archdsl.errors import ArchError, ParseError
from archdsl.formatter import format_source
from archdsl.parser import parse
from archdsl.source import Source
from test_fuzz import CI, SPEC_FILES, SPECS, grammar_programs, spec_mutants

# -- exact output ----------------------------------------------------------------------------------

CASES = [
    ("spacing", "block vgg(n,c)=repeat n < conv3x3 c ; relu > ; maxpool2;",
     "block vgg(n, c) = repeat n <conv3x3 c; relu>; maxpool2\n"),
    ("header", "network n:[1,28,28]->[10]=flatten;fc 10;",
     "network n : [1, 28, 28] -> [10] = flatten; fc 10\n"),
    ("expressions", "block t(c = in.c // 2,) = conv (-c) k=(1+2)*3 p=- -1; leakyrelu slope=-0.2",
     "block t(c = in.c // 2) = conv (-c) k=(1 + 2) * 3 p=--1; leakyrelu slope=-0.2\n"),
    ("comparisons are not groups", "network n(a=1):[1,8,8]=if a<2 and in.c>0 then <relu> else id",
     "network n(a = 1) : [1, 8, 8] = if a < 2 and in.c > 0 then <relu> else id\n"),
    ("imports stay together", 'import "a.arch"\n\n\nimport "b.arch"\nblock x = relu\nblock y = id',
     'import "a.arch"\n\nimport "b.arch"\n\nblock x = relu\n\nblock y = id\n'),
    ("line breaks between items are kept",
     "network n : [1, 28, 28] =\n  conv 6 k=5 p=2; sigmoid;  avgpool2;\n      flatten;\nlinear 10",
     "network n : [1, 28, 28] =\n    conv 6 k=5 p=2; sigmoid; avgpool2;\n    flatten;\n    linear 10\n"),
    ("a branch over several lines: one per line",
     "block r(c) =\n    add [ conv3x3 c; bn\n        | id ];\n    relu",
     "block r(c) =\n    add [\n          conv3x3 c; bn\n        | id\n    ];\n    relu\n"),
    ("a group over several lines", "block b = repeat 2 <relu;\nbn>",
     "block b = repeat 2 <\n    relu;\n    bn\n>\n"),
    ("comments: trailing, own line, moved out of a call",
     "# a header\n\n\nblock a = relu   # why\nblock b = conv 8 k=3   # inside\n    s=2; relu   \n# the end\n",
     "# a header\n\nblock a = relu  # why\n\n# inside\nblock b = conv 8 k=3 s=2; relu\n# the end\n"),
    ("comments in a branch",
     "block i = concat [  # two paths\n  relu  # one\n  | id\n  # last\n]",
     "block i = concat [  # two paths\n      relu  # one\n    | id\n      # last\n]\n"),
    ("only comments", "\n# nothing here\n\n", "# nothing here\n"),
    ("empty", "  \n\n", ""),
]


@pytest.mark.parametrize("text, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_formats_exactly(text, expected):
    assert format_source(Source("x.arch", text)) == expected
    assert format_source(Source("x.arch", expected)) == expected


def test_a_spec_that_does_not_parse_is_an_error_not_a_guess():
    with pytest.raises(ParseError) as info:
        format_source(Source("x.arch", "block b = relu;; bn"))
    assert (info.value.line, info.value.column) == (1, 16)


# -- the round trip ----------------------------------------------------------------------------------

_COMMENT_OR_STRING = re.compile(r'"[^"\n]*"|#[^\n]*')


def comments(text: str) -> list[str]:
    """The comments of a spec, in order (a '#' inside an import's path is not one)."""
    return [m.group().rstrip() for m in _COMMENT_OR_STRING.finditer(text) if m.group().startswith("#")]


def without_spans(node):
    """A syntax tree as plain data, with every span left out, to compare two parses."""
    if isinstance(node, tuple):
        return tuple(without_spans(n) for n in node)
    if isinstance(node, BaseModel):
        return (type(node).__name__, *((k, without_spans(getattr(node, k))) for k in type(node).model_fields
                                       if not k.endswith("span")))
    return node


def check_round_trip(text: str) -> bool:
    """For text that parses: format it, and check the three properties. False when it does not parse."""
    try:
        before = parse(Source("x.arch", text))
    except ArchError:
        return False
    formatted = format_source(Source("x.arch", text))
    assert without_spans(parse(Source("x.arch", formatted))) == without_spans(before), formatted
    assert format_source(Source("x.arch", formatted)) == formatted
    assert comments(formatted) == comments(text)
    return True


@pytest.mark.parametrize("name", SPEC_FILES)
def test_every_spec_round_trips(name):
    assert check_round_trip((SPECS / name).read_text())


@pytest.mark.parametrize("text", [c[1] for c in CASES])
def test_every_case_round_trips(text):
    assert check_round_trip(text)


@CI
@given(grammar_programs())
def test_generated_programs_round_trip(text):
    check_round_trip(text)


@st.composite
def commented_programs(draw) -> str:
    """A grammar program with comments and line breaks dropped between random tokens (the generator
    pads every token with spaces, so any space is a boundary between two tokens)."""
    pieces = draw(grammar_programs()).split(" ")
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(pieces)))
        pieces.insert(at, draw(st.sampled_from(["# note\n", "\n", "\n\n", "#\n", "  # two  \n"])))
    return " ".join(pieces)


@settings(CI, max_examples=300)
@given(commented_programs())
def test_comments_anywhere_survive_the_round_trip(text):
    check_round_trip(text)


@settings(CI, max_examples=300)
@given(spec_mutants())
def test_mutated_specs_that_parse_round_trip(mutant):
    name, data = mutant
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    check_round_trip(text)


# -- the command ---------------------------------------------------------------------------------


@pytest.fixture
def messy(tmp_path) -> Path:
    path = tmp_path / "messy.arch"
    path.write_text("network n:[1,28,28]=flatten;fc 10;  # head\n")
    path.chmod(0o640)
    return path


def test_fmt_prints_the_canonical_text(messy):
    result = CliRunner().invoke(app, ["fmt", str(messy)])
    assert result.exit_code == 0
    assert result.stdout == "network n : [1, 28, 28] = flatten; fc 10  # head\n"
    assert messy.read_text() == "network n:[1,28,28]=flatten;fc 10;  # head\n"


def test_fmt_check_lists_what_would_change_and_fails(messy):
    tidy = messy.with_name("tidy.arch")
    tidy.write_text("network n : [1, 28, 28] = flatten; fc 10\n")
    result = CliRunner().invoke(app, ["fmt", "--check", str(messy), str(tidy)])
    assert result.exit_code == 1
    assert result.stdout == f"would reformat {messy}\n"
    assert CliRunner().invoke(app, ["fmt", "--check", str(tidy)]).exit_code == 0


def test_fmt_check_passes_on_the_specs():
    """Every spec in specs/ is in the canonical style."""
    names = [str(SPECS / n) for n in SPEC_FILES]
    result = CliRunner().invoke(app, ["fmt", "--check", *names])
    assert (result.exit_code, result.stdout) == (0, "")


def test_fmt_write_rewrites_in_place_keeping_the_mode(messy):
    result = CliRunner().invoke(app, ["fmt", "--write", str(messy)])
    assert result.exit_code == 0 and result.stdout == f"reformatted {messy}\n"
    assert messy.read_text() == "network n : [1, 28, 28] = flatten; fc 10  # head\n"
    assert stat.S_IMODE(messy.stat().st_mode) == 0o640
    assert sorted(p.name for p in messy.parent.iterdir()) == ["messy.arch"]  # no temporary file left


def test_fmt_write_through_a_link_rewrites_the_file_it_points_to(messy):
    link = messy.with_name("link.arch")
    link.symlink_to(messy.name)
    result = CliRunner().invoke(app, ["fmt", "--write", str(link)])
    assert result.exit_code == 0 and result.stdout == f"reformatted {link}\n"
    assert link.is_symlink() and link.readlink() == Path(messy.name)
    assert messy.read_text() == "network n : [1, 28, 28] = flatten; fc 10  # head\n"
    assert stat.S_IMODE(messy.stat().st_mode) == 0o640


def test_fmt_write_never_loses_the_file_when_the_rename_fails(messy, monkeypatch):
    original = messy.read_text()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    result = CliRunner().invoke(app, ["fmt", "--write", str(messy)])
    assert result.exit_code == 1
    assert "No space left on device" in result.stderr
    assert messy.read_text() == original
    assert sorted(p.name for p in messy.parent.iterdir()) == ["messy.arch"]


def test_fmt_leaves_a_broken_spec_alone_and_reports_it(tmp_path, messy):
    broken = tmp_path / "broken.arch"
    broken.write_text("network n : [1, 8, 8] = relu;; bn\n")
    result = CliRunner().invoke(app, ["fmt", "--write", str(broken), str(messy)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{broken}:1:30: error: unexpected ';'")
    assert broken.read_text() == "network n : [1, 8, 8] = relu;; bn\n"
    assert messy.read_text() == "network n : [1, 28, 28] = flatten; fc 10  # head\n"


def test_fmt_check_and_write_exclude_each_other(messy):
    result = CliRunner().invoke(app, ["fmt", "--check", "--write", str(messy)])
    assert result.exit_code == 1
    assert result.stderr == "archdsl: error: --check and --write exclude each other\n"


def test_fmt_through_the_installed_command(messy):
    done = subprocess.run([sys.executable, "-m", "archdsl.cli", "fmt", "--check", str(messy)],
                          capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (1, f"would reformat {messy}\n", "")


def test_a_table_over_several_lines_keeps_its_rows_and_an_if_its_arms():
    text = ("network n(\n  classes=10,\n     stages=[ [1,16] ,[6,24],\n [6,32]  ]\n) : [3, 8, 8] =\n"
            "    if classes>5\n        then conv3x3 stages[0][1]\n  else relu;\n    gap\n")
    assert format_source(Source("x.arch", text)) == (
        "network n(\n    classes = 10,\n    stages = [[1, 16], [6, 24],\n        [6, 32]]\n) : [3, 8, 8] =\n"
        "    if classes > 5\n    then conv3x3 stages[0][1]\n    else relu;\n    gap\n")


def test_a_minus_after_an_index_is_binary():
    text = "network n(xs = [4, 5]) : [1, 8, 8] = conv3x3 (xs[0]-1); conv3x3 (-xs[1])\n"
    assert format_source(Source("x.arch", text)) == (
        "network n(xs = [4, 5]) : [1, 8, 8] = conv3x3 (xs[0] - 1); conv3x3 (-xs[1])\n")
