"""The arguments every command shares (archdsl/arguments.py): --input against the channels a network declares."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SPECS

from archdsl.cli import app


def run(*args) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_input_channels_that_contradict_a_parameter_name_it(tmp_path: Path) -> None:
    """The issue's case: lenet(in_channels=1) compiled at 3x28x28 printed 'lenet(in_channels=1, ...) : 3x28x28'."""
    spec = tmp_path / "lenet.arch"
    spec.write_text((SPECS / "lenet.arch").read_text())
    expected = (
        f"{spec}:2:49: error: --input 3x28x28 gives 3 channels, but network lenet declares 1 (in_channels=1) [A700]\n"
        "    2 | network lenet(in_channels = 1, classes = 10) : [in_channels, 28, 28] -> [classes] =\n"
        "      |                                                 ^^^^^^^^^^^\n"
        "  hint: pass --param in_channels=3, which sets the input's channels\n"
    )
    for command in (["compile"], ["graph", "-o", tmp_path / "l.dot"], ["export", "-o", tmp_path / "l.py"]):
        assert run(command[0], spec, *command[1:], "--input", "3x28x28") == (1, expected), command
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet.arch"]
    code, output = run("compile", spec, "-p", "in_channels=3", "--input", "3x32x32")
    assert code == 0 and output.startswith("lenet(in_channels=3, classes=10) : 3x32x32\n")


@pytest.mark.parametrize(("declared", "declares", "hint"), [
    ("[1, 8, 8]", 1, "give --input 1 channel, or change the declaration"),
    ("[2 * 2, 8, 8]", 4, "give --input 4 channels, or change the declaration"),
])  # fmt: skip
def test_input_channels_that_contradict_a_number(tmp_path: Path, declared: str, declares: int, hint: str) -> None:
    spec = tmp_path / "n.arch"
    spec.write_text(f"network n : {declared} = flatten; linear 3\n")
    code, output = run("compile", spec, "--input", "3x8x8")
    lines = output.splitlines()
    assert code == 1
    assert lines[0] == f"{spec}:1:14: error: --input 3x8x8 gives 3 channels, but network n declares {declares} [A700]"
    assert lines[-1] == f"  hint: {hint}"


@pytest.mark.parametrize(("declared", "given"), [
    ("[1, 8, 8]", "1x16x16"),   # other sizes, the same channels
    ("[C, H, W]", "3x8x8"),     # channels the declaration leaves to the input
    ("[1, 8, 8]", "CxHxW"),     # symbolic channels: exploring, not contradicting
    ("[64]", "32"),             # not an image
])  # fmt: skip
def test_input_that_agrees_or_binds_free_channels_is_taken(tmp_path: Path, declared: str, given: str) -> None:
    spec = tmp_path / "n.arch"
    spec.write_text(f"network n : {declared} = flatten; linear 3\n")
    code, output = run("compile", spec, "--input", given)
    assert code == 0, output
