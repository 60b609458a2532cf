"""Inputs that are not regular files, import paths the file system cannot take, and oversized lines:
each one error with its place, never a hang or a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import archdsl
from archdsl.errors import ResolveError
from archdsl.source import EXCERPT_WIDTH

ARCHDSL = [sys.executable, "-c", "from archdsl.cli import main; main()"]
NET = "network n : [1, 4, 4] = flatten\n"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    # A hang is the failure these tests look for: the timeout turns it into one.
    return subprocess.run([*ARCHDSL, *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def one_error(result: subprocess.CompletedProcess, *expected: str) -> None:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


def test_a_fifo_as_the_spec_or_an_import_is_refused_without_waiting(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.arch")
    (tmp_path / "main.arch").write_text('import "pipe.arch"\n' + NET)
    one_error(run("check", "pipe.arch", cwd=tmp_path), "pipe.arch: error: pipe.arch is a FIFO (named pipe), not a spec file")
    one_error(run("compile", "main.arch", cwd=tmp_path),
              'main.arch:1:1: error: cannot import "pipe.arch": pipe.arch is a FIFO (named pipe), not a spec file')
    one_error(run("fmt", "pipe.arch", cwd=tmp_path), "is a FIFO")


def test_a_device_as_the_spec_is_refused() -> None:
    one_error(run("check", "/dev/zero"), "/dev/zero is a character device, not a spec file")


@pytest.mark.parametrize(("kind", "named"), [("fifo", "a FIFO (named pipe)"), ("device", "a character device"),
                                             ("folder", "a folder")])
def test_a_spec_and_a_run_file_name_a_kind_the_same_way(tmp_path: Path, kind: str, named: str) -> None:
    """One function refuses what is not a regular file, for specs and for the runner's files alike (they
    were two, one saying "a FIFO (named pipe)", the other "a FIFO")."""
    from archdsl.errors import UsageError
    from archdsl.runner.untrusted import open_regular

    path = tmp_path / "thing.arch"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()
    with pytest.raises(ResolveError) as spec:
        archdsl.load(path)
    with pytest.raises(UsageError) as run_file:
        open_regular(path)
    assert spec.value.message == f"{path} is {named}, not a spec file"
    assert run_file.value.message == f"thing.arch is {named}, not a regular file; refusing to read it"


def test_symbolic_link_loops_are_one_error(tmp_path: Path) -> None:
    (tmp_path / "a.arch").symlink_to("b.arch")
    (tmp_path / "b.arch").symlink_to("a.arch")
    (tmp_path / "main.arch").write_text('import "a.arch"\n' + NET)
    one_error(run("check", "a.arch", cwd=tmp_path), "a.arch: error: cannot read a.arch: Too many levels of symbolic links")
    one_error(run("check", "main.arch", cwd=tmp_path),
              'main.arch:1:1: error: cannot import "a.arch": cannot read a.arch: Too many levels of symbolic links')


@pytest.mark.parametrize(("path", "message"), [
    ("a\0b.arch", "an import path cannot hold a NUL byte"),
    ("\ud800.arch", "an import path cannot hold '\\ud800', which is not a character"),
])  # fmt: skip
def test_import_paths_the_file_system_cannot_take(path: str, message: str) -> None:
    with pytest.raises(ResolveError) as caught:
        archdsl.loads(f'import "{path}"\n' + NET)
    err = caught.value
    assert (err.message, err.line, err.column) == (message, 1, 1)
    rendered = err.render()
    rendered.encode("utf-8")  # printable: the surrogate shows as U+FFFD, one for one
    assert rendered.splitlines()[1].endswith('import "' + path.replace("\ud800", "\ufffd") + '"')


def test_a_file_whose_bytes_decode_to_a_surrogate_path(tmp_path: Path) -> None:
    # A path written as bytes that are not UTF-8 in a file is refused where it is read (not UTF-8 text);
    # one that is valid UTF-8 but names no file is "no file", printable.
    (tmp_path / "main.arch").write_bytes('import "x\u00ff.arch"\n'.encode() + NET.encode())
    one_error(run("check", "main.arch", cwd=tmp_path), 'cannot import "x\u00ff.arch": there is no file x\u00ff.arch')


def test_a_long_line_is_quoted_as_a_window_around_the_caret() -> None:
    text = "network n : [1, 4, 4] = " + "relu; " * 10_000 + "conv3x 3; " + "relu; " * 10_000  # 60 kB, within the token limit
    with pytest.raises(archdsl.ArchError) as caught:
        archdsl.loads(text)
    lines = caught.value.render().splitlines()
    assert lines[0] == f"<string>:1:{text.index('conv3x') + 1}: error: unknown layer or block 'conv3x'"
    quoted, caret = lines[1], lines[2]
    assert len(quoted) < EXCERPT_WIDTH + 20
    assert quoted[caret.index("^"):].startswith("conv3x 3;") and caret.count("^") == 6 and caret.endswith("^")


def test_a_short_line_is_quoted_whole() -> None:
    with pytest.raises(archdsl.ArchError) as caught:
        archdsl.loads("network n : [1, 4, 4] = relu; conv3x 3")
    assert caught.value.render().splitlines()[1:3] == [
        "    1 | network n : [1, 4, 4] = relu; conv3x 3",
        "      |                               ^^^^^^",
    ]


def test_emit_and_json_together_are_refused(tmp_path: Path) -> None:
    (tmp_path / "n.arch").write_text(NET)
    one_error(run("compile", "n.arch", "--emit", "ir", "--json", cwd=tmp_path),
              "--emit and --json each choose the output; give one of them")
