"""Atomic file writes: a reader (or a resumed run) sees the old file or the new one, never half of one.

The recipe is the classic one: write a temporary file in the same folder, flush and fsync it,
``os.replace`` it over the target, then fsync the folder so that the rename itself survives a crash.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from archdsl.errors import UsageError


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Have ``write(tmp)`` fill a temporary file, then move it over ``path`` atomically.

    ``write`` receives a path rather than a stream so that libraries that insist on a file name
    (safetensors, matplotlib) fit as well as plain bytes do. An OSError (no space, no permission)
    becomes a UsageError naming the file; the old ``path`` is left as it was.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # what is_temporary recognises
    try:
        write(tmp)
        _set_mode(tmp, path)
        fsync_file(tmp)
        os.replace(tmp, path)
        fsync_folder(path.parent)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise UsageError(
            f"cannot write {path.name}: {err.strerror or err}",
            file=str(path),
            hint="free some space or fix the folder's permissions, or choose another --out",
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _set_mode(tmp: Path, path: Path) -> None:
    """A replaced file keeps its permissions; a new one gets what the umask gives (some writers, such as
    safetensors, create files readable by their owner only)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(tmp, mode)


def check_output(path: Path, inputs: Iterable[Path] = ()) -> None:
    """Refuse, before any work is done, an output path that cannot become a file or would replace one of
    ``inputs`` (the spec and the files it imports).

    >>> check_output(Path("specs/lenet.arch"), [Path("specs/lenet.arch")])   # doctest: +SKIP
    UsageError: refusing to write specs/lenet.arch: it is the spec or a file the spec imports
    """
    if path.name in ("", ".", "..") or path.is_dir():
        raise UsageError(f"cannot write {path}: it is a folder", file=str(path), hint="name a file in it")
    if not path.parent.is_dir():
        raise UsageError(f"cannot write {path}: no folder {path.parent}", file=str(path),
                         hint="create the folder first, or choose another -o")
    if path.resolve() in {source.resolve() for source in inputs}:
        raise UsageError(f"refusing to write {path}: it is the spec or a file the spec imports",
                         file=str(path), hint="choose another -o")


def is_temporary(name: str) -> bool:
    """Whether a file name is one of write_atomic's temporaries (left behind if a write was killed)."""
    return name.startswith(".") and name.endswith(".tmp")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    write_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def fsync_file(path: Path) -> None:
    """Make a file's bytes durable before it is renamed into place."""
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def fsync_folder(folder: Path) -> None:
    """Make a rename or unlink inside ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
