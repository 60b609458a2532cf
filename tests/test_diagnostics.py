"""Golden diagnostics: the mistakes people make, each with the exact message archdsl prints.

Each ``tests/cases/errors/NN_name.arch`` is a spec with one mistake; ``NN_name.expected`` is what
``archdsl compile`` prints on stderr for it, run from the repository's root (so paths read
``tests/cases/errors/...``). A first line ``# args: ...`` gives the case extra options. Rewrite the
expected files after a deliberate change with ``EXPECTTEST_ACCEPT=1 pytest tests/test_diagnostics.py``
and review the diff.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest
from click.testing import CliRunner

from archdsl.cli import app
from conftest import CASES, REPO

ERRORS = CASES / "errors"
SPECS = sorted(ERRORS.glob("[0-9][0-9]*_*.arch"), key=lambda spec: int(spec.name.split("_")[0]))


def arguments(spec) -> list[str]:
    """``compile SPEC`` with the case's own options, the spec named relative to the repository."""
    first = spec.read_text(encoding="utf-8").splitlines()[0]
    extra = shlex.split(first.removeprefix("# args:")) if first.startswith("# args:") else []
    return ["compile", spec.relative_to(REPO).as_posix(), *extra]


def compile_case(spec) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, arguments(spec))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("spec", SPECS, ids=[s.stem for s in SPECS])
def test_diagnostic(spec, golden, in_repo):
    code, out, err = compile_case(spec)
    assert (code, out) == (1, ""), err
    golden(spec.with_suffix(".expected"), err)


def test_there_are_forty_distinct_mistakes(in_repo):
    """No two cases say the same thing: the message or its hint differs."""
    said = set()
    for spec in SPECS:
        lines = compile_case(spec)[2].splitlines()
        said.add((lines[0].split(" error: ", 1)[1], *(line for line in lines if line.startswith("  hint: "))))
    assert len(SPECS) >= 40 and len(said) == len(SPECS)


@pytest.mark.parametrize("spec", SPECS, ids=[s.stem for s in SPECS])
def test_every_message_names_its_place(spec, in_repo):
    """FILE:LINE:COL with the line and a caret, unless the mistake is on the command line or the spec
    as a whole (a missing network); then the file alone."""
    err = compile_case(spec)[2]
    place = re.match(r"(\S+?)(:(\d+):(\d+))?: error: ", err)
    assert place, err
    if place.group(2):
        assert re.search(rf"^\s+{place.group(3)} \| .*\n\s+\| *\^+$", err, re.M), err
    else:
        assert "# args:" in spec.read_text() or "network" in err.splitlines()[0], err


def test_the_installed_command_prints_the_same(in_repo):
    spec = ERRORS / "01_unknown_layer_typo.arch"
    done = subprocess.run([sys.executable, "-m", "archdsl.cli", *arguments(spec)], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == spec.with_suffix(".expected").read_text(encoding="utf-8")


@pytest.mark.parametrize("other_break", ["\u2028", "\x0c", "\x85", "\r"])
def test_the_quoted_line_is_the_line_the_position_counts(other_break):
    """Positions count lines by "\\n" alone (as Lark does); the quoted line must be that same line,
    whatever other line-break characters a comment holds, with the caret under the culprit."""
    import archdsl
    from archdsl.errors import ArchError

    text = f"# a{other_break}b comment\nnetwork n : [1, 8, 8] = flatten; linearr 2\n"
    with pytest.raises(ArchError) as caught:
        archdsl.loads(text)
    lines = caught.value.render().splitlines()
    assert lines[0] == "<string>:2:34: error: unknown layer or block 'linearr'"
    assert lines[1:3] == ["    2 | network n : [1, 8, 8] = flatten; linearr 2",
                          "      |                                  ^^^^^^^"]
