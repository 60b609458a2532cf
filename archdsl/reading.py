"""Opening a file to read only when it is a regular file: specs, imports, run folders, checkpoints, data.

A FIFO would block forever, ``/dev/zero`` or a file in ``/proc`` never ends, a folder has no bytes: each
is refused by its kind, named the same way wherever it is met ("a FIFO (named pipe)"), before a byte is
read. The callers turn the refusal into their own ArchError, since what the file was meant to be (a
spec, a data file) belongs in the message.

No torch here: specs are read on the way to ``archdsl check``, run.json before anything heavy.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class NotRegularFile(Exception):
    """The file is not a regular one; ``kind`` names what it is ("a FIFO (named pipe)")."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind

    @property
    def is_folder(self) -> bool:
        return self.kind == KINDS[stat.S_IFDIR]


def open_regular(path: str | Path) -> BinaryIO:
    """``path`` (links followed) opened for reading, or NotRegularFile; the file system's own errors are
    OSErrors, and a NUL byte in the name a ValueError, for the caller to word.

    >>> open_regular("pipe.arch")   # doctest: +SKIP
    NotRegularFile: a FIFO (named pipe)
    """
    # O_NONBLOCK: opening a FIFO would otherwise wait for a writer before fstat could refuse it.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(KINDS.get(stat.S_IFMT(mode), "not a regular file"))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)  # fdopen owns it once it returned; a refused file must not leak its descriptor
        raise
