"""Writing outputs safely: a reader (or a resumed run) sees the old file or the new one, never half of one,
and nothing but the named output changes, even in a folder that other users can write to.

The recipe for a regular file is the classic one: a temporary file with an unpredictable name, made
with ``O_EXCL | O_NOFOLLOW`` in the destination's folder (``tempfile.mkstemp``), is filled, flushed and
fsynced, then ``os.replace``-d over the target, and the folder is fsynced so that the rename survives a
crash. An output that exists and is not a regular file (``/dev/null``, a FIFO, a terminal,
``/dev/stdout``) is written to directly, never replaced, and ``-`` is standard output.

A symbolic link at the output's name is followed, as the kernel's ``protected_symlinks`` would allow:
only when the link is ours, or its folder's owner's, or its folder is not a shared sticky one (``/tmp``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from archdsl.errors import UsageError

STDOUT = Path("-")

# Symbolic links followed in a row before a chain is taken for a loop (Linux's own limit).
_MAX_LINKS = 40


@dataclass(frozen=True)
class Target:
    """Where an output really goes: a regular file to replace (or create), or a file to write into."""

    path: Path  # the file itself, links followed; STDOUT for standard output
    direct: bool  # write into it (a device, FIFO, descriptor or standard output), never replace it


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Have ``write(tmp)`` fill a temporary file, then put it at ``path`` (see the module's docstring).

    ``write`` receives a path rather than a stream so that libraries that insist on a file name
    (safetensors, matplotlib) fit as well as plain bytes do. An OSError (no space, no permission), or
    a writer's own exception that wraps one, becomes a UsageError naming the file; the old ``path`` is
    left as it was, and the temporary is removed.
    """
    target = resolve_output(path)
    with _translated(path):
        if target.direct:
            with tempfile.TemporaryDirectory(prefix="archdsl-") as private:  # mode 0700: ours alone
                tmp = Path(private) / "output"
                with _writer_failures():
                    write(tmp)
                with open(tmp, "rb") as staged:
                    _copy_into(target, staged)
            return
        # The writer opens the file by name, so it gets a folder that only we can enter (mkdtemp: mode
        # 0700, a name nobody can guess): nothing can be planted at the name it writes.
        with _staging(target.path) as folder:
            tmp = folder / target.path.name
            with _writer_failures():
                write(tmp)
            install_file(tmp, target.path)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """``data`` at ``path``, as ``write_atomic`` puts it there, without a writer opening the file by name."""
    target = resolve_output(path)
    with _translated(path):
        if target.direct:
            _copy_into(target, data)
            return
        with _temporary(target.path) as (fd, tmp):
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            _install(fd, tmp, target.path)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def install_file(staged: Path, path: Path) -> None:
    """Put a finished file (written by a library into a private staging folder) at ``path``: a rename for
    a regular file, a copy into a device, FIFO or standard output."""
    target = resolve_output(path)
    with _translated(path):
        if target.direct:
            with open(staged, "rb") as handle:
                _copy_into(target, handle)
            return
        fsync_file(staged)
        _set_mode(staged, target.path)
        os.replace(staged, target.path)
        fsync_folder(target.path.parent)


def resolve_output(path: Path) -> Target:
    """Where writing ``path`` goes, links followed one by one (a loop, a link in a shared folder that
    someone else planted, or a folder are UsageErrors)."""
    if path == STDOUT:
        return Target(STDOUT, True)
    current = Path(os.path.abspath(path))
    with _translated(path):
        for _ in range(_MAX_LINKS):
            try:
                info = os.lstat(current)
            except FileNotFoundError:
                return Target(current, False)
            if stat.S_ISLNK(info.st_mode):
                _check_link_owner(current, info, path)
                link = os.readlink(current)
                if link.startswith("/proc/"):  # /dev/stdout and kin name an open descriptor: write into it
                    return Target(current, True)
                current = Path(os.path.join(os.path.dirname(current), link))
                continue
            if stat.S_ISDIR(info.st_mode):
                raise UsageError(f"cannot write {path}: it is a folder", file=str(path), hint="name a file in it")
            return Target(current, not stat.S_ISREG(info.st_mode))
    raise UsageError(f"cannot write {path}: too many symbolic links (a loop?)", file=str(path),
                     hint="fix the links, or choose another output")


def writes_to_stdout(path: Path) -> bool:
    """Whether an output is standard output (``-``, ``/dev/stdout`` or the file it is redirected to), so
    that messages go to stderr instead of into the output."""
    if path == STDOUT:
        return True
    try:
        return os.path.samestat(os.stat(path), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError, AttributeError):
        return False


def check_output(path: Path, inputs: Iterable[Path] = ()) -> None:
    """Refuse, before any work is done, an output path that cannot become a file or would replace one of
    ``inputs`` (the spec and the files it imports).

    >>> check_output(Path("specs/lenet.arch"), [Path("specs/lenet.arch")])   # doctest: +SKIP
    UsageError: refusing to write specs/lenet.arch: it is the spec or a file the spec imports
    """
    if path == STDOUT:
        return
    if path.name in ("", ".", ".."):
        raise UsageError(f"cannot write {path}: it is a folder", file=str(path), hint="name a file in it")
    target = resolve_output(path)
    with _translated(path):
        if not target.path.parent.is_dir():
            followed = Path(os.path.abspath(path)) != target.path  # a link: name the folder it leads to
            folder = target.path.parent if followed else path.parent
            raise UsageError(f"cannot write {path}: no folder {folder}", file=str(path),
                             hint="create the folder first, or choose another -o")
        if not target.direct and target.path.resolve() in {source.resolve() for source in inputs}:
            raise UsageError(f"refusing to write {path}: it is the spec or a file the spec imports",
                             file=str(path), hint="choose another -o")


def is_temporary(name: str) -> bool:
    """Whether a name is one of write_atomic's temporaries, a file or a staging folder (left behind if a
    write was killed; remove_temporary removes either)."""
    return name.startswith(".") and name.endswith(".tmp")


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


@contextlib.contextmanager
def _temporary(target: Path) -> Iterator[tuple[int, Path]]:
    """A new, empty temporary file beside ``target`` (what is_temporary recognises), removed unless it was
    renamed into place."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name[:200]}.", suffix=".tmp", dir=target.parent)
    tmp = Path(name)
    try:
        yield fd, tmp
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def _staging(target: Path) -> Iterator[Path]:
    """A private folder beside ``target`` (what is_temporary recognises), removed with what it holds."""
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name[:200]}.", suffix=".tmp", dir=target.parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _install(fd: int, tmp: Path, target: Path) -> None:
    _set_mode(fd, target)
    os.fsync(fd)
    os.replace(tmp, target)
    fsync_folder(target.parent)


def remove_temporary(path: Path) -> None:
    """Remove a temporary that a killed write left behind: a file, or a writer's staging folder."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _copy_into(target: Target, data) -> None:
    """Write bytes (or a binary file's contents) into standard output or an existing non-regular file."""
    if target.path == STDOUT:
        sys.stdout.flush()
        out = sys.stdout.buffer
        if isinstance(data, bytes):
            out.write(data)
        else:
            shutil.copyfileobj(data, out)
        out.flush()
        return
    # O_TRUNC matters only for /dev/stdout redirected to a file, where it does what the shell's '>' does.
    fd = os.open(target.path, os.O_WRONLY | os.O_NOCTTY | os.O_TRUNC)
    with os.fdopen(fd, "wb") as out:
        if isinstance(data, bytes):
            out.write(data)
        else:
            shutil.copyfileobj(data, out)


def _check_link_owner(link: Path, info: os.stat_result, named: Path) -> None:
    folder = os.stat(link.parent)
    shared = folder.st_mode & stat.S_ISVTX and folder.st_mode & stat.S_IWOTH
    if shared and info.st_uid not in (os.geteuid(), folder.st_uid):
        raise UsageError(
            f"refusing to write {named}: {link} is a symbolic link that another user made in a shared folder",
            file=str(named), hint="remove the link, or write somewhere private",
        )


def _set_mode(fd_or_path: int | Path, path: Path) -> None:
    """A replaced file keeps its permissions; a new one gets what the umask gives (mkstemp, and some
    writers such as safetensors, create files readable by their owner only)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(fd_or_path, mode)


# Writers that wrap the file system's failures in exceptions of their own, told apart by their messages
# (importing them here would load torch): safetensors' SafetensorError ("I/O error: No space left on
# device (os error 28)", or Rust's debug form "Os { code: 28, ... }"), and torch's zip writer, whose
# RuntimeError ("unexpected pos 832 vs 726", "file write failed") has lost the reason.
_OS_ERROR_CODE = re.compile(r"\(os error (\d+)\)|\bOs \{ code: (\d+)")
_TORCH_WRITE_FAILED = re.compile(r"unexpected pos \d+ vs \d+|file write failed")


@contextlib.contextmanager
def _writer_failures() -> Iterator[None]:
    """A writer's own exception that wraps a failure of the file system, as the OSError it stands for
    (``_translated`` words it); any other exception is a bug, and stays one."""
    try:
        yield
    except Exception as err:
        message = str(err)
        if code := _OS_ERROR_CODE.search(message):
            number = int(code.group(1) or code.group(2))
            raise OSError(number, os.strerror(number)) from None
        if isinstance(err, RuntimeError) and (failed := _TORCH_WRITE_FAILED.search(message)):
            raise OSError(f"the write stopped midway, most likely on a full disk (torch: {failed.group()})") from None
        raise


@contextlib.contextmanager
def _translated(path: Path) -> Iterator[None]:
    """The file system's errors (no space, no permission, a name too long, a read-only folder) as one
    UsageError naming the output."""
    try:
        yield
    except OSError as err:
        raise UsageError(
            f"cannot write {path}: {err.strerror or err}",
            file=str(path),
            hint="free some space or fix the folder's permissions, or choose another output",
        ) from None
