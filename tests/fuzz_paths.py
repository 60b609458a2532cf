"""Hostile file systems for the fuzzers: files of every kind, paths the file system cannot take, and
mutations of the import paths inside specs.

* ``hostile_files(folder)`` makes one entry of each kind a spec, an import or an output may meet: a FIFO,
  a folder, links to /dev/null and /dev/zero, a link loop, a dangling link, an empty file, a file that is
  not UTF-8, names with a line break or bytes that are not UTF-8, and names too long to exist;
* ``path_mutants()`` draws a spec whose import paths are replaced (absolute, ``..``, doubled slashes,
  NUL, surrogates, thousands of characters, the hostile entries above, devices), or whose imported file
  or main file is swapped for a hostile kind at its own name;
* ``within(seconds)`` bounds a case in time, so that a read that blocks (a FIFO opened for reading) is a
  failure rather than a hung test run.

The oracle is ``outcome()`` of tests/test_fuzz.py (a compiled network, or an ArchError with its place in
the text or naming its file), and no file descriptor left open. tests/test_fuzz_cli.py runs the family; scripts/fuzz_campaign.py runs it long.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st
from test_fuzz import MAINS, SPECS, outcome

import archdsl

NET = "network n : [1, 4, 4] = flatten\n"


class Hang(BaseException):
    """A case ran past its time bound. A BaseException, so that no ``except Exception`` in archdsl hides it."""


@contextlib.contextmanager
def within(seconds: float, raise_: type[BaseException] = Hang) -> Iterator[list[bool]]:
    """Raise ``raise_`` in the main thread if the block runs longer than ``seconds`` (SIGALRM: a blocked
    open() or read() is interrupted too). Yields a list whose one element says whether the bound fired."""
    fired = [False]

    def expire(signum, frame):
        fired[0] = True
        raise raise_(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- descriptors left open ------------------------------------------------------------------------------

def open_descriptors() -> dict[int, str]:
    """This process's open file descriptors and what each one is."""
    found = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the descriptor listdir itself used, closed by now
            found[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return found


def leaked_descriptors(before: dict[int, str]) -> list[str]:
    """What was opened since ``before`` and is still open."""
    return [target for fd, target in open_descriptors().items() if before.get(fd) != target]


def no_leak(run: Callable[[], str]) -> str:
    """``run()`` under the oracle that it leaves no file descriptor open."""
    before = open_descriptors()
    result = run()
    leaked = leaked_descriptors(before)
    assert not leaked, f"file descriptors left open: {leaked}"
    return result


# -- entries of every kind ------------------------------------------------------------------------------

LONG_NAME = "n" * 300 + ".arch"  # over NAME_MAX (255): no such file can exist
LONG_PATH = "/".join(["d" * 200] * 25) + ".arch"  # over PATH_MAX (4096)
BYTES_NAME = os.fsdecode(b"name\xff.arch")  # a name that is not UTF-8 (a surrogate escape in Python)


def hostile_files(folder: Path, *, fifo: bool = True) -> dict[str, str]:
    """Make one entry of each hostile kind in ``folder``; return {kind: its path relative to ``folder``}.

    Entries that hold text hold a valid network, so that only their kind or name is hostile. ``fifo=False``
    leaves the FIFO out (the command-line fuzzer makes its own, kept drained)."""
    entries = {
        "folder": "folder.arch",
        "dev-null": "null.arch",
        "dev-zero": "zero.arch",
        "missing": "missing.arch",
        "link-loop": "loop.arch",
        "dangling-link": "dangling.arch",
        "empty": "empty.arch",
        "not-utf8": "latin1.arch",
        "newline-name": "new\nline.arch",
        "bytes-name": BYTES_NAME,
        "long-name": LONG_NAME,
        "long-path": LONG_PATH,
    }
    if fifo:
        entries["fifo"] = "pipe.arch"
        os.mkfifo(folder / "pipe.arch")
    (folder / "folder.arch").mkdir()
    (folder / "null.arch").symlink_to("/dev/null")
    (folder / "zero.arch").symlink_to("/dev/zero")
    (folder / "loop.arch").symlink_to("loop2.arch")
    (folder / "loop2.arch").symlink_to("loop.arch")
    (folder / "dangling.arch").symlink_to("gone/nothing.arch")
    (folder / "empty.arch").write_bytes(b"")
    (folder / "latin1.arch").write_bytes(NET.encode() + b"# caf\xe9\n")
    (folder / "new\nline.arch").write_text(NET)
    (folder / BYTES_NAME).write_text(NET)
    return entries


# -- mutated import paths and swapped file kinds -----------------------------------------------------

IMPORTERS = [m for m in MAINS if 'import "' in (SPECS / m).read_text()]
KINDS = ["fifo", "folder", "dev-null", "dev-zero", "link-loop", "dangling-link", "empty", "not-utf8", "missing",
         "link-outside", "link-to-valid"]
# Devices an import may name when /dev is an allowed folder (never one with side effects on open).
DEVICES = ["/dev/null", "/dev/zero", "/dev/full", "/dev/urandom"]


@dataclass(frozen=True)
class PathCase:
    """A spec to compile: ``main`` (a file of the copy of specs/) with its text replaced (``text``, compiled
    from memory, so that surrogates and NUL survive) or its imported file (or itself) swapped for a hostile
    ``kind`` (``swap``: the file's name in the copy); ``import_dirs`` are extra allowed folders."""

    main: str
    text: str | None = None
    swap: str | None = None
    kind: str | None = None
    import_dirs: tuple[str, ...] = ()  # "parent" (the folder above the copy) or "/dev"


def _import_paths(draw, original: str, folder_name: str) -> str:
    """One hostile spelling of an import path."""
    how = draw(st.sampled_from([
        "absolute", "dot", "double-slash", "dot-dot-inside", "dot-dot-out", "hostile-entry", "nul", "surrogate",
        "long", "deep", "empty-ish", "trailing", "case", "device", "self", "url", "home", "backslash", "random",
    ]))
    if how == "absolute":
        return "{FOLDER}/" + original
    if how == "dot":
        return "./" + original
    if how == "double-slash":
        return original.replace("/", draw(st.sampled_from(["//", "/./", "///"])))
    if how == "dot-dot-inside":
        return f"../{folder_name}/{original}"  # resolves inside the folder again
    if how == "dot-dot-out":
        return "../" * draw(st.integers(1, 12)) + draw(st.sampled_from([original, "guard/victim.arch", "etc/passwd"]))
    if how == "hostile-entry":
        return draw(st.sampled_from(["pipe.arch", "folder.arch", "null.arch", "zero.arch", "missing.arch",
                                     "loop.arch", "dangling.arch", "empty.arch", "latin1.arch", BYTES_NAME,
                                     LONG_NAME, LONG_PATH, "outside.arch"]))
    if how == "nul":
        at = draw(st.integers(0, len(original)))
        return original[:at] + "\0" + original[at:]
    if how == "surrogate":
        at = draw(st.integers(0, len(original)))
        return original[:at] + draw(st.sampled_from(["\ud800", "\udcff", "\udfff"])) + original[at:]
    if how == "long":
        return draw(st.sampled_from(["x" * 300 + ".arch", "x" * 5000, "lib/" + "y" * 256, original + "/" * 4000]))
    if how == "deep":
        return "a/" * draw(st.integers(100, 3000)) + original
    if how == "empty-ish":
        return draw(st.sampled_from(["", ".", "..", "/", "lib", "lib/", " ", "\t"]))
    if how == "trailing":
        return draw(st.sampled_from([original + "/", original + " ", " " + original, original + "/.",
                                     original + "\u200b"]))
    if how == "case":
        return original.upper()
    if how == "device":
        return draw(st.sampled_from(DEVICES))
    if how == "self":
        return "{MAIN}"
    if how == "url":
        return draw(st.sampled_from(["file://{FOLDER}/" + original, "http://example.com/" + original, "~/" + original,
                                     "lib/%2e%2e/" + original]))
    if how == "home":
        return draw(st.sampled_from(["$HOME/" + original, "${PWD}/" + original, "%TEMP%/" + original]))
    if how == "backslash":
        return original.replace("/", "\\")
    return draw(st.text(st.characters(codec="utf-8", exclude_characters='"\n'), max_size=40))


@st.composite
def path_mutants(draw) -> PathCase:
    """A spec with hostile import paths, or with a hostile kind of file at an imported name or its own name."""
    import_dirs = draw(st.sampled_from([(), (), (), ("parent",), ("/dev",)]))
    if draw(st.booleans()):
        main = draw(st.sampled_from([*IMPORTERS, "fuzz.arch"]))
        text = (SPECS / main).read_text() if main != "fuzz.arch" else 'import "lib/heads.arch"\n' + NET
        imports = [line for line in text.splitlines() if line.startswith("import ")]
        for line in draw(st.lists(st.sampled_from(imports), min_size=1, max_size=len(imports), unique=True)):
            original = line.removeprefix('import "').removesuffix('"')
            text = text.replace(line, f'import "{_import_paths(draw, original, "specs")}"')
        return PathCase(main, text=text, import_dirs=import_dirs)
    main = draw(st.sampled_from(IMPORTERS))
    imported = [line.removeprefix('import "').removesuffix('"')
                for line in (SPECS / main).read_text().splitlines() if line.startswith("import ")]
    swap = draw(st.sampled_from([*imported, main]))
    return PathCase(main, swap=swap, kind=draw(st.sampled_from(KINDS)), import_dirs=import_dirs)


def path_folder(root: Path) -> Path:
    """A copy of specs/ with the hostile entries, under ``root`` (beside a guard folder that an import may
    try to reach): root/specs and root/guard."""
    folder = root / "specs"
    shutil.copytree(SPECS, folder)
    hostile_files(folder)
    (root / "guard").mkdir()
    (root / "guard" / "victim.arch").write_text("block victim() = relu\n")
    (folder / "outside.arch").symlink_to(root / "guard" / "victim.arch")
    return folder


def _make_kind(path: Path, kind: str, folder: Path) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "dev-null":
        path.symlink_to("/dev/null")
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "link-loop":
        path.symlink_to(path.name)
    elif kind == "dangling-link":
        path.symlink_to(path.name + ".gone")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "not-utf8":
        path.write_bytes(b"block x() = relu \xff\n")
    elif kind == "link-outside":
        path.symlink_to(folder.parent / "guard" / "victim.arch")
    elif kind == "link-to-valid":
        path.symlink_to(folder / "lib" / "heads.arch")
    # "missing": nothing there


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        path.rmdir()
    else:
        path.unlink(missing_ok=True)


def compile_path_case(folder: Path, case: PathCase, seconds: float = 30.0) -> str:
    """Compile ``case`` in ``folder`` (made by ``path_folder``) under the oracle; a case that blocks longer
    than ``seconds`` raises Hang. The folder is as it was afterwards."""
    dirs = [str(folder.parent) if d == "parent" else d for d in case.import_dirs]
    main = folder / case.main
    if case.text is not None:
        text = case.text.replace("{FOLDER}", str(folder)).replace("{MAIN}", case.main)
        with within(seconds):
            return no_leak(lambda: outcome(lambda: archdsl.loads(text, path=str(main), import_dirs=dirs)))
    target = folder / case.swap
    original = target.read_bytes()
    target.unlink()
    try:
        _make_kind(target, case.kind, folder)
        with within(seconds):
            return no_leak(lambda: outcome(lambda: archdsl.load(main, import_dirs=dirs)))
    finally:
        _remove(target)
        target.write_bytes(original)
