"""Atomic writes: permissions of new and replaced files, and the outputs that are refused up front."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from archdsl.atomic import check_output, write_atomic
from archdsl.errors import UsageError


def private_writer(data: bytes):
    """A writer that creates its file readable by its owner only, as safetensors does."""

    def write(tmp: Path) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)

    return write


def test_a_new_file_gets_the_mode_the_umask_gives(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "w.bin", private_writer(b"weights"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "w.bin").stat().st_mode) == 0o640
    assert (tmp_path / "w.bin").read_bytes() == b"weights"


def test_a_replaced_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(b"old")
    path.chmod(0o604)
    write_atomic(path, private_writer(b"new"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o604 and path.read_bytes() == b"new"


@pytest.mark.parametrize(("name", "message"), [
    (".", "it is a folder"),
    ("..", "it is a folder"),
    ("sub", "it is a folder"),
    ("missing/x.svg", "no folder"),
    ("spec.arch", "it is the spec or a file the spec imports"),
    ("link.arch", "it is the spec or a file the spec imports"),
])  # fmt: skip
def test_outputs_refused_before_any_work(tmp_path: Path, monkeypatch, name: str, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "spec.arch").write_text("network n : [1, 2, 2] = flatten\n")
    (tmp_path / "link.arch").symlink_to("spec.arch")
    with pytest.raises(UsageError, match=message):
        check_output(Path(name), [tmp_path / "spec.arch"])
    check_output(Path("fine.svg"), [tmp_path / "spec.arch"])
