"""A shared machine: nothing another user plants is executed, and nothing but the named output changes.

Three families (docs/reliability.md, "Threat model"): the parser reads no cache from the shared
temporary folder (Lark's ``cache=True`` unpickled whatever it found there); atomic writes cannot be
steered by a link planted at their temporary's name; an output that is a device, a FIFO or standard
output is written into, never replaced (``-o /dev/null`` as root replaced the machine's /dev/null).
"""

from __future__ import annotations

import os
import pickle
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from archdsl import atomic
from archdsl.errors import UsageError
from archdsl.parser import GRAMMAR, TABLES, _LARK_OPTIONS, tables_are_current

REPO = Path(__file__).resolve().parents[1]
LENET = REPO / "specs" / "lenet.arch"
ARCHDSL = [sys.executable, "-c", "from archdsl.cli import main; main()"]


def run(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*ARCHDSL, *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
                          cwd=cwd, timeout=120)


class _Planted:
    """Unpickling this creates the marker file: the stand-in for an attacker's code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_a_planted_lark_cache_is_never_unpickled(tmp_path: Path) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir()
    marker = tmp_path / "code-ran"
    # Where Lark's cache=True, with the options the parser used to pass (in their order: the file's name
    # hashes them), looks for its pickle.
    made = subprocess.run(
        [sys.executable, "-c",
         "import tempfile, sys; from lark import Lark; "
         f"Lark(open({str(GRAMMAR)!r}).read(), **{_LARK_OPTIONS!r}, cache=True)"],
        env={**os.environ, "TMPDIR": str(shared)}, check=True, timeout=120)
    assert made.returncode == 0
    [cache] = shared.glob(".lark_cache_*")
    digest = cache.read_bytes().split(b"\n", 1)[0]
    cache.write_bytes(digest + b"\n" + pickle.dumps(_Planted(marker)))

    for args in (["check", str(LENET)], ["compile", str(LENET)], ["fmt", str(LENET)]):
        result = run(args, env={"TMPDIR": str(shared)})
        assert result.returncode == 0, result.stderr
    assert not marker.exists()


def test_front_end_commands_open_nothing_in_the_temporary_folder(tmp_path: Path) -> None:
    """Audited: not a file under $TMPDIR is opened (Lark's cache, or any other) by check, compile or fmt."""
    shared = tmp_path / "tmp"
    shared.mkdir()
    script = f"""
import sys, tempfile
opened = []
def audit(event, args):
    if event == "open" and isinstance(args[0], str) and args[0].startswith({str(shared)!r}):
        opened.append(args[0])
sys.addaudithook(audit)
from click.testing import CliRunner
from archdsl.cli import app
for args in (["check", {str(LENET)!r}], ["compile", {str(LENET)!r}], ["fmt", {str(LENET)!r}]):
    assert CliRunner().invoke(app, args).exit_code == 0, args
print(opened)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "TMPDIR": str(shared)}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_shipped_parser_tables_are_current_and_parse_like_the_grammar() -> None:
    """The tables shipped in grammar_tables.json were made from this grammar; built afresh from the grammar,
    the parser gives the same trees (or the same error) for every spec and diagnostic case."""
    from lark import Lark

    from archdsl.parser import _lark

    assert tables_are_current(), f"{TABLES} is stale: run python scripts/make_parser_tables.py"
    shipped, fresh = _lark(), Lark(GRAMMAR.read_text(), **_LARK_OPTIONS)
    texts = [p.read_text() for p in sorted((REPO / "specs").rglob("*.arch"))]
    texts += [p.read_text() for p in sorted((REPO / "tests" / "cases").rglob("*.arch"))]
    assert len(texts) > 80

    def outcome(parser, text):
        try:
            return parser.parse(text)
        except Exception as err:  # the same kind of error, at the same place
            return type(err).__name__, getattr(err, "line", None), getattr(err, "column", None)

    for text in texts:
        assert outcome(shipped, text) == outcome(fresh, text)


def test_stale_tables_are_not_used(tmp_path: Path, monkeypatch) -> None:
    from archdsl import parser

    stale = tmp_path / "grammar_tables.json"
    stale.write_text(TABLES.read_text().replace('"grammar_sha256":"', '"grammar_sha256":"0'))
    monkeypatch.setattr(parser, "TABLES", stale)
    assert not parser.tables_are_current()
    stale.write_text("not json")
    assert not parser.tables_are_current()


# Atomic writes


def test_temporaries_have_names_nobody_can_guess(tmp_path: Path, monkeypatch) -> None:
    """A link planted at every name the old scheme used (.NAME.PID.tmp) is neither followed nor touched."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    for pid in {os.getpid(), *range(1, 50)}:
        (out / f".diagram.svg.{pid}.tmp").symlink_to(victim)
    seen: list[Path] = []

    def write(tmp: Path) -> None:
        seen.append(tmp)
        assert not tmp.exists() and stat.S_IMODE(tmp.parent.stat().st_mode) == 0o700
        tmp.write_text("new")

    atomic.write_atomic(out / "diagram.svg", write)
    atomic.write_bytes_atomic(out / "bytes.svg", b"new")
    assert victim.read_text() == "precious"
    assert (out / "diagram.svg").read_text() == "new" and (out / "bytes.svg").read_text() == "new"
    assert seen[0].parent.parent == out and atomic.is_temporary(seen[0].parent.name)
    left = sorted(p.name for p in out.iterdir())
    assert left == sorted(["bytes.svg", "diagram.svg", *(f".diagram.svg.{pid}.tmp" for pid in {os.getpid(), *range(1, 50)})])


def test_a_diagram_never_writes_outside_its_folder(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    for pid in range(1, 4000):  # every small PID the old name could have used
        (out / f".lenet.svg.{pid}.tmp").symlink_to(victim)
    result = run(["graph", str(LENET), "-o", str(out / "lenet.svg"), "--format", "dot"])
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "precious"
    assert (out / "lenet.svg").read_text().startswith("digraph")


def test_a_link_planted_by_another_user_in_a_shared_folder_is_not_followed(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("making a link owned by another user needs root")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = shared / "diagram.svg"
    link.symlink_to(victim)
    os.lchown(link, 65534, 65534)
    with pytest.raises(UsageError, match="a symbolic link that another user made in a shared folder"):
        atomic.write_text_atomic(link, "new")
    result = run(["graph", str(LENET), "-o", str(link)])
    assert result.returncode == 1 and "another user made in a shared folder" in result.stderr
    assert victim.read_text() == "precious" and link.is_symlink()


def test_own_links_are_followed_and_stay_links(tmp_path: Path) -> None:
    target = tmp_path / "real.svg"
    target.write_text("old")
    link = tmp_path / "link.svg"
    link.symlink_to(target.name)
    atomic.write_text_atomic(link, "new")
    assert link.is_symlink() and target.read_text() == "new"


# Outputs that are not regular files


def test_a_device_is_written_into_not_replaced(tmp_path: Path) -> None:
    """Through a link to /dev/null, so that a regression replaces the link, never the machine's /dev/null."""
    null = tmp_path / "null"
    null.symlink_to(os.devnull)
    for args in (["graph", str(LENET), "-o", str(null)], ["export", str(LENET), "--to", "python", "-o", str(null)]):
        result = run(args)
        assert result.returncode == 0, result.stderr
        assert null.is_symlink() and stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_a_fifo_is_written_into(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = run(["graph", str(LENET), "-o", str(fifo), "--format", "dot"])
    reader.join(timeout=60)
    assert result.returncode == 0, result.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert received and received[0].startswith(b"digraph lenet")


def test_dash_is_standard_output_and_the_message_goes_to_stderr() -> None:
    result = subprocess.run([*ARCHDSL, "graph", str(LENET), "-o", "-", "--format", "dot"], capture_output=True,
                            timeout=120)
    assert result.returncode == 0
    assert result.stdout.startswith(b"digraph lenet") and result.stderr == b"wrote -\n"
    svg = subprocess.run([*ARCHDSL, "graph", str(LENET), "-o", "-"], capture_output=True, timeout=120)
    assert svg.returncode == 0 and b"<svg" in svg.stdout
    source = run(["export", str(LENET), "--to", "python", "-o", "-"])
    assert source.returncode == 0 and "class Lenet(" in source.stdout
    assert source.stderr.startswith("wrote -: Python source")


def test_dev_stdout_redirected_to_a_file_is_written_through(tmp_path: Path) -> None:
    out = tmp_path / "out.dot"
    with open(out, "wb") as handle:
        result = subprocess.run([*ARCHDSL, "graph", str(LENET), "-o", "/dev/stdout", "--format", "dot"],
                                stdout=handle, stderr=subprocess.PIPE, timeout=120)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().startswith(b"digraph lenet") and os.path.islink("/dev/stdout")


def test_outputs_that_cannot_be_written_are_one_error(tmp_path: Path) -> None:
    loop = tmp_path / "loop.svg"
    loop.symlink_to("loop2.svg")
    (tmp_path / "loop2.svg").symlink_to("loop.svg")
    long_name = tmp_path / ("x" * 300 + ".svg")
    cases = {
        str(loop): "too many symbolic links",
        str(long_name): "File name too long",
    }
    for out, reason in cases.items():
        for command in (["graph", str(LENET), "-o", out], ["export", str(LENET), "--to", "python", "-o", out]):
            result = run(command)
            assert result.returncode == 1, (command, result.stderr)
            assert reason in result.stderr and "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("step", ["temporary", "rename"])
def test_a_read_only_folder_is_one_error(tmp_path: Path, monkeypatch, step: str) -> None:
    """The folder refuses the temporary or the rename (as a read-only folder does for anyone but root, who
    runs this suite in CI: the refusal is simulated where the file system would make it)."""
    from click.testing import CliRunner

    from archdsl.cli import app

    spec = tmp_path / "lenet.arch"
    spec.write_text(LENET.read_text().replace("  ", "   "))

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path))

    if step == "rename":
        monkeypatch.setattr(os, "replace", refuse)
    else:
        monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
        monkeypatch.setattr(atomic.tempfile, "mkdtemp", refuse)
    for command in (["graph", str(LENET), "-o", str(tmp_path / "x.svg"), "--format", "dot"],
                    ["export", str(LENET), "--to", "python", "-o", str(tmp_path / "x.py")],
                    ["fmt", "--write", str(spec)]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 1, result.output
        assert "Permission denied" in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet.arch"]


def test_a_writer_that_fails_with_oserror_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "keep.txt"
    path.write_text("old")

    def full(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(UsageError, match="cannot write .*keep.txt: No space left on device"):
        atomic.write_atomic(path, full)
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
