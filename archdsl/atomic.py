"""Atomic file writes: a reader (or a resumed run) sees the old file or the new one, never half of one.

The recipe is the classic one: write a temporary file in the same folder, flush and fsync it,
``os.replace`` it over the target, then fsync the folder so that the rename itself survives a crash.
"""

from __future__ import annotations

import os
from collections.abc import Callable
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
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
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


def is_temporary(name: str) -> bool:
    """Whether a file name is one of write_atomic's temporaries (left behind if a write was killed)."""
    return name.startswith(".") and name.endswith(".tmp")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    write_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


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
