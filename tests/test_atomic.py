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


def half_then(error: Exception):
    """A writer that fails midway with ``error``, as a library's writer does on a full disk."""

    def write(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise error

    return write


def safetensor_error(message: str) -> Exception:
    from safetensors import SafetensorError

    return SafetensorError(message)


# The messages as the libraries word them: safetensors 0.8, Rust's debug form of the same error, and
# torch's zip writer, which has lost the reason.
@pytest.mark.parametrize(("error", "reason"), [
    (lambda: safetensor_error('Error while serializing: I/O error: No space left on device (os error 28) at path '
                              '"/data/.tmpQe3Zk1"'), "No space left on device"),
    (lambda: safetensor_error('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: '
                              '"No space left on device" })'), "No space left on device"),
    (lambda: RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 832 vs 726"),
     "the write stopped midway, most likely on a full disk (torch: unexpected pos 832 vs 726)"),
    (lambda: RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file "
                          "data/0: file write failed"),
     "the write stopped midway, most likely on a full disk (torch: file write failed)"),
], ids=["safetensors", "safetensors-debug", "torch-pos", "torch-write"])  # fmt: skip
def test_a_writers_own_error_for_a_full_disk_is_one_message(tmp_path: Path, error, reason: str) -> None:
    """safetensors and torch wrap a full disk in exceptions of their own: they were tracebacks."""
    pytest.importorskip("safetensors")
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"old")
    with pytest.raises(UsageError) as caught:
        write_atomic(path, half_then(error()))
    assert caught.value.message == f"cannot write {path}: {reason}"
    assert caught.value.file == str(path)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_the_writers_themselves_on_a_full_disk(tmp_path: Path) -> None:
    """The real libraries, on a file system that refuses to grow a file past 1 kB."""
    torch = pytest.importorskip("torch")
    from conftest import file_size_limit
    from safetensors.torch import save_file

    tensors = {"w": torch.zeros(1000)}
    writers = {"a.safetensors": (lambda tmp: save_file(tensors, str(tmp)), "File too large"),
               "b.pt": (lambda tmp: torch.save(tensors, str(tmp)), "the write stopped midway, most likely on a full disk")}
    for name, (writer, reason) in writers.items():
        with file_size_limit(1000), pytest.raises(UsageError) as caught:
            write_atomic(tmp_path / name, writer)
        assert caught.value.message.startswith(f"cannot write {tmp_path / name}: {reason}")
    assert list(tmp_path.iterdir()) == []


def test_any_other_error_of_a_writer_stays_a_bug(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="a bug"):
        write_atomic(tmp_path / "x.bin", half_then(ValueError("a bug, not the disk")))
    assert list(tmp_path.iterdir()) == []
