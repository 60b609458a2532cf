"""Fuzzing from outside the text: the command line with every subcommand and option, and hostile paths and
file kinds (imports, specs, outputs, run folders, data).

* ``command_lines()`` draws an argv for ``archdsl``: a subcommand (now and then none, an unknown one or
  ``--help``), its arguments and a handful of its options, all read off the click command tree
  (``archdsl.cli.app``), so that a new option is fuzzed the day it is added. Each value comes from the
  pool its option's type or metavar calls for (specs, outputs, run folders, data, shapes, NAME=VALUE,
  numbers, choices), or now and then from any pool: valid specs, hostile paths (``hostile_files`` of
  tests/fuzz_paths.py: a FIFO, a folder, /dev/null and /dev/zero through links, a missing file, a link
  loop, a dangling link, names of 300 characters, with a line break or bytes that are not UTF-8, an empty
  file, one that is not UTF-8), numbers (0, -1, 2**63, 1e999, nan, 400 digits), symbolic and empty
  shapes (``1xHxW``, ``3x0x0``), ``classes=[1,2]``, ``-`` and random text.
* ``path_mutants()`` (tests/fuzz_paths.py) mutates the import paths inside specs and swaps imported files
  for hostile kinds; its oracle is ``outcome()`` of tests/test_fuzz.py.

The command-line oracle (``Workspace.run``), for each argv run in-process by ``archdsl.cli.main`` in a fresh
scratch folder: the exit status is 0, 1 or 2 (130 only for a run that the time bound interrupted, as a
Ctrl-C would); no exception but SystemExit escapes and no traceback is printed; status 1 comes with a
diagnostic (``... error: ...``, or fmt --check's list) and status 0 without one; nothing changes in a guard
folder beside the scratch folder (which also holds $HOME); no file that existed in the scratch folder is
destroyed or changed unless the argv names it (or a folder or link that holds it); no temporary file of an
atomic write is left behind (beside the output or in $TMPDIR), and no file descriptor is left open.
``train`` and ``eval`` run for real on a tiny network and data set; a run still going after the time bound
is interrupted, any other command is a hang.

CI runs a fixed (derandomized) sample; ``scripts/fuzz_campaign.py --family cli --family paths`` runs the
same generators long (docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import re
import select
import shutil
import stat
import sys
import tempfile
import threading
import traceback
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click
import pytest
from fuzz_paths import (
    BYTES_NAME,
    KINDS,
    LONG_NAME,
    LONG_PATH,
    NET,
    Hang,
    compile_path_case,
    hostile_files,
    leaked_descriptors,
    open_descriptors,
    path_folder,
    path_mutants,
    within,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fuzz import SPECS

import archdsl
from archdsl.atomic import is_temporary
from archdsl.cli import app, main
from archdsl.errors import ArchError

if TYPE_CHECKING:
    import numpy as np

TESTS = Path(__file__).resolve().parent

CI = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# Commands that do real work for as long as they are asked to (epochs); the time bound interrupts them as a
# Ctrl-C would, where for any other command it is a hang.
RUNNING = ("train", "eval")
# Commands that serve a protocol on standard input rather than take a command line's work: `archdsl lsp` is
# fuzzed through the protocol itself (tests/test_lsp_fuzz.py).
SERVERS = ("lsp",)

# -- pools of values ------------------------------------------------------------------------------------

NETWORKS = [f"specs/{p.relative_to(SPECS).as_posix()}" for p in sorted(SPECS.glob("*.arch"))]
SPEC_PATHS = [f"specs/{p.relative_to(SPECS).as_posix()}" for p in sorted(SPECS.rglob("*.arch"))]
SMALL_SPECS = ["tiny.arch", "specs/lenet.arch", "specs/examples/smallvgg.arch"]  # what train and eval mostly get
HOSTILE_PATHS = ["pipe.arch", "folder.arch", "null.arch", "zero.arch", "missing.arch", "loop.arch", "dangling.arch",
                 "empty.arch", "latin1.arch", "new\nline.arch", BYTES_NAME, LONG_NAME, LONG_PATH, "link.arch", "-", "",
                 ".", "..", "/", "/dev/null", "/dev/full", "/dev/zero", "nodir/x.arch", "specs//lenet.arch",
                 "./tiny.arch", "../scratch/tiny.arch", "~/tiny.arch", "tiny.arch/", "specs/lib/vgg.arch"]
NUMBERS = ["0", "-1", "-0", "9223372036854775808", "18446744073709551616", "1e999", "-1e999", "inf", "nan",
           "1e-400", "0.5", "9" * 400, "0x10", "1_000", " 2", "\uff12", "1e3", "2**63"]
STRINGS = ["1xHxW", "3x0x0", "classes=10", "classes=[1,2]", "-", "--", "", " ", "-p", "--help", "=", "\udcff",
           "classes=" + "9" * 400, "classes=9223372036854775808"]


@dataclass(frozen=True)
class Pool:
    """The values an option of one kind takes: plausible ones, and hostile ones of the same kind."""

    valid: tuple[str, ...]
    hostile: tuple[str, ...] = ()

    def draw(self, hostile: bool) -> st.SearchStrategy[str]:
        if not hostile or not self.hostile:
            return st.sampled_from(self.valid)
        return st.one_of(st.sampled_from(self.valid), st.sampled_from(self.hostile))


OUTPUTS = Pool(("out.svg", "out.png", "out.pdf", "out.dot", "out.py", "out.pt", "out.onnx", "-", "old.svg"),
               ("out", "out.txt", "nodir/out.svg", "specs/lenet.arch", "tiny.arch", "run", "run/run.json",
                "new\nline.svg", BYTES_NAME + ".svg", "x" * 300 + ".svg", *HOSTILE_PATHS))
RUN_DIRS = Pool(("run", "newrun"), ("run-broken", "run-flipped", "run-empty", "run/checkpoints", "run/run.json", "missing-run",
                                     *HOSTILE_PATHS))
DATA = Pool(("tiny.npz", "tiny.npz", "mnist", "fashion-mnist"),
            ("bad.npz", "objects.npz", "missing.npz", "images", "cifar10", "data", *HOSTILE_PATHS))
FOLDERS = Pool(("specs", "specs/lib", ".", "data"), ("..", "folder.arch", "missing-dir", "run", "/", "/dev",
                                                      *HOSTILE_PATHS))
INTEGERS = Pool(("1", "1", "2", "3"), NUMBERS)
FLOATS = Pool(("0.1", "0.5", "0", "0.9"), NUMBERS)
SHAPES = Pool(("1x28x28", "1xHxW", "1x96x96", "3x224x224", "1x32x32"),
              ("1xHxW", "3x0x0", "HxW", "1xHx28", "Cx28x28", "1x28", "28", "1x28x28x1", "3,224,224",
               "3\u00d7224\u00d7224", "0x28x28", "-1x28x28", "1xhxw", "1xHxH", "", "x", "1x1x1",
               "1x" + "9" * 30 + "x" + "9" * 30, "1x4611686018427387904x1", "1xH1xW_2"))
ASSIGNMENTS = Pool(("classes=10", "classes=3", "in_channels=1", "width=8", "ratio=4", "growth=16"),
                   tuple(f"{name}={value}" for name in ("classes", "in_channels", "width", "x", "H", "1a", "", "c ")
                         for value in ("[1,2]", "true", "1xHxW", "", "=", "classes", "None", "1.5", "(2)", "2+2",
                                       "0", "-1", "9223372036854775808", "9" * 400, "1e999", "nan"))
                   + ("classes", "=10", "-", "classes=10=10"))
REFERENCES = Pool(("references:lenet",),
                  ("references:nothing", "references:REFERENCES", "nosuch:thing", "references", ":", "a:b:c",
                   "references:", ":lenet", "math:pi", "references:lenet "))
EVERYTHING = Pool((), (*SPEC_PATHS, *OUTPUTS.hostile, *RUN_DIRS.hostile, *DATA.hostile, *FOLDERS.hostile, *NUMBERS,
                       *SHAPES.hostile, *ASSIGNMENTS.hostile, *REFERENCES.hostile, *STRINGS))


def _text() -> st.SearchStrategy[str]:
    # What a shell can pass: anything but NUL (argv is C strings); bytes that are not UTF-8 arrive as
    # surrogate escapes (STRINGS and BYTES_NAME).
    return st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=20)


def _any_value() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(EVERYTHING.hostile), _text())


def _words(metavar: str) -> Pool:
    """``fashion-mnist|mnist|PATH``: the words given (and data where PATH is one), and their near misses."""
    words = tuple(w for w in metavar.split("|") if w.lower() == w)
    near = tuple(w.upper() for w in words) + tuple(w + "x" for w in words) + tuple(w[:-1] for w in words if len(w) > 1)
    if "PATH" in metavar:
        return Pool(words + DATA.valid, near + DATA.hostile)
    return Pool(words, near)


def _pool(command: str, param: click.Parameter) -> Pool:
    """The pool that a parameter's type or metavar calls for."""
    kind, metavar = param.type, (param.metavar or "").strip("[].")
    if isinstance(kind, click.Choice):
        return Pool(tuple(map(str, kind.choices)), ("none", "SVG", ""))
    if isinstance(kind, click.types.IntParamType):
        return INTEGERS
    if isinstance(kind, click.types.FloatParamType):
        return FLOATS
    if "=" in metavar:
        return ASSIGNMENTS
    if metavar.upper() == "CXHXW":
        return SHAPES
    if ":" in metavar:
        return REFERENCES
    if metavar == "RUN_DIR":
        return RUN_DIRS
    if metavar == "DIR":
        return FOLDERS
    if metavar == "FILE":
        return OUTPUTS
    if metavar in ("SPEC", "OTHER"):
        return Pool(tuple(SMALL_SPECS if command in RUNNING else NETWORKS), tuple(HOSTILE_PATHS))
    if "|" in metavar:
        return _words(metavar)
    if isinstance(kind, click.Path):
        return FOLDERS
    return EVERYTHING


def _value(draw, command: str, param: click.Parameter, hostile: bool) -> str:
    """From the parameter's own pool; in a hostile command line, one time in five from any pool."""
    if hostile and not draw(st.integers(0, 4)):
        return draw(_any_value())
    pool = _pool(command, param)
    return draw(pool.draw(hostile) if pool.valid else _any_value())


def _option_tokens(draw, command: str, option: click.Option, hostile: bool) -> list[str]:
    names = [*option.opts, *option.secondary_opts]
    name = draw(st.sampled_from(names))
    if option.is_flag:
        return [f"{name}={_value(draw, command, option, hostile)}"] if hostile and not draw(st.integers(0, 9)) else [name]
    value = _value(draw, command, option, hostile)
    form = draw(st.integers(0, 9))
    if form == 0 and not name.startswith("--"):
        return [name + value]  # -ovalue
    if form == 1 and name.startswith("--"):
        return [f"{name}={value}"]
    if form == 2 and hostile:
        return [name]  # the value missing (or taken from the next token)
    return [name, value]


@st.composite
def command_lines(draw) -> list[str]:
    """An argv for ``archdsl`` (without the program's name): half of them plausible (every value of the kind
    its option takes), half hostile (values of any kind, hostile ones, missing or extra arguments)."""
    commands = app.commands
    if not draw(st.integers(0, 39)):
        return draw(st.sampled_from([[], ["--help"], ["-h"], ["compil"], ["--version"], ["", "tiny.arch"]]))
    hostile = draw(st.booleans())
    # train is drawn three times as often as the others: it has the most options and states to reach, and
    # the sample must see runs that go to their end among the many it refuses.
    name = draw(st.sampled_from(sorted(set(commands) - set(SERVERS)) + ["train", "train"]))
    command = commands[name]
    pieces: list[list[str]] = []
    for argument in (p for p in command.params if isinstance(p, click.Argument)):
        if argument.nargs == 1 and argument.required:
            count = draw(st.sampled_from([1] * 18 + [0, 2])) if hostile else 1  # missing, or one too many
        elif argument.nargs == 1:
            count = draw(st.integers(0, 1))
        else:
            count = draw(st.integers(0 if not argument.required else 1, 3))
        pieces += [[_value(draw, name, argument, hostile)] for _ in range(count)]
    options = [p for p in command.params if isinstance(p, click.Option)]
    if options:
        for _ in range(draw(st.integers(0, 6 if hostile else 3))):
            pieces.append(_option_tokens(draw, name, draw(st.sampled_from(options)), hostile))
    if not hostile and name in RUNNING and any("--epochs" in o.opts for o in options):
        pieces.append(["--epochs", draw(st.sampled_from(INTEGERS.valid))])  # the default, 10, is seconds a case
    if hostile and not draw(st.integers(0, 19)):
        pieces.append([draw(st.sampled_from(["--help", "--", "-", "--no-such-option", "-Z"]))])
    order = draw(st.permutations(range(len(pieces)))) if draw(st.booleans()) else range(len(pieces))
    return [name, *(token for i in order for token in pieces[i])]


# -- the workspace: scratch folder, guard folder, time bound ------------------------------------------------

TINY = "network tiny(classes = 10) : [1, 28, 28] -> [classes] =\n    avgpool 7; flatten; linear classes\n"
TINY_COUNTS = (12, 10)  # training and test examples of the tiny data sets


def _idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes (the MNIST format), gzip-compressed."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(gzip.compress(header + array.astype("uint8").tobytes()))


def _tiny_data(rng: np.random.Generator) -> dict[str, np.ndarray]:
    import numpy as np

    train, test = TINY_COUNTS
    return {"x_train": rng.integers(0, 256, (train, 28, 28), dtype=np.uint8), "y_train": np.arange(train) % 10,
            "x_test": rng.integers(0, 256, (test, 28, 28), dtype=np.uint8), "y_test": np.arange(test) % 10}


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    status: int | None  # None: an exception escaped
    stdout: str
    stderr: str
    interrupted: bool

    @property
    def label(self) -> str:
        """The outcome as the campaign counts it: the command and its status."""
        status = "interrupted" if self.interrupted else self.status
        return f"{self.argv[0] if self.argv else '(none)'} {status}"


class CliFailure(AssertionError):
    """The oracle failed; ``signature`` groups failures of one cause in the campaign's report."""

    def __init__(self, signature: str, result: Result, detail: str = "") -> None:
        self.signature = signature
        output = f"stdout: {result.stdout[-1500:]!r}\nstderr: {result.stderr[-3000:]!r}"
        super().__init__(f"{signature}\nargv: {list(result.argv)!r}\n{detail}\n{output}")


class _Drain:
    """Holds a FIFO open for reading and empties it, so that an output written into it never blocks (a FIFO
    with no reader blocks its writer by design; the fuzzer looks for hangs of archdsl's own making)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._empty, daemon=True)
        self.thread.start()

    def _empty(self) -> None:
        poll = select.poll()  # not select(), which takes no descriptor past 1023
        poll.register(self.fd, select.POLLIN)
        while not self.stop.is_set():
            if poll.poll(50):
                with contextlib.suppress(BlockingIOError):
                    os.read(self.fd, 1 << 16)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        os.close(self.fd)


def _snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder`` (links not followed): its kind and, for files, a digest of the bytes."""
    entries = {}
    for parent, folders, files in os.walk(folder):
        for name in folders + files:
            path = os.path.join(parent, name)
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode):
                with open(path, "rb") as handle:
                    entries[path] = ("file", stat.S_IMODE(info.st_mode), hashlib.sha1(handle.read()).hexdigest())
            elif stat.S_ISLNK(info.st_mode):
                entries[path] = ("link", os.readlink(path))
            else:
                entries[path] = (stat.S_IFMT(info.st_mode),)
    return entries


class Workspace:
    """Runs argvs in-process, each in a fresh copy of a prepared folder, and checks the oracle.

    ROOT/template   specs/ (a copy), tiny.arch, references.py, tiny.npz, bad.npz (not a zip), objects.npz (Python
                    objects), data/{mnist,fashion-mnist} (tiny IDX sets), images/ (an empty image folder), old.svg,
                    a finished run (run/), a run with a damaged run.json (run-broken/), one with a byte of its
                    weights flipped (run-flipped/), an empty folder (run-empty/)
    ROOT/scratch    the working folder of a case: the template, plus hostile_files(), a drained FIFO
                    (pipe.arch) and link.arch -> specs/lenet.arch
    ROOT/guard      $HOME of a case, and a file: nothing here may change
    ROOT/tmp        $TMPDIR: archdsl's staging folders (archdsl-*) must not be left there
    """

    def __init__(self, root: Path, seconds: float = 30.0, running_seconds: float = 5.0) -> None:
        self.root, self.seconds, self.running_seconds = root, seconds, running_seconds
        self.template, self.scratch, self.guard = root / "template", root / "scratch", root / "guard"
        self.capture = root / "capture"
        self.tmp = root / "tmp"
        for folder in (self.template, self.guard / "home", self.tmp, self.capture, root / "torch-cache"):
            folder.mkdir(parents=True)
        (self.guard / "victim.arch").write_text(TINY)
        self._build_template()

    def _build_template(self) -> None:
        t = self.template
        shutil.copytree(SPECS, t / "specs")
        shutil.copy(TESTS / "references.py", t / "references.py")
        (t / "tiny.arch").write_text(TINY)
        (t / "old.svg").write_text("<svg/>\n")
        import numpy as np

        rng = np.random.default_rng(0)
        np.savez(t / "tiny.npz", **_tiny_data(rng))
        (t / "bad.npz").write_bytes(b"not a zip archive\n")
        np.savez(t / "objects.npz", **{**_tiny_data(rng), "y_train": np.array([object()] * TINY_COUNTS[0])})
        for name in ("mnist", "fashion-mnist"):
            folder = t / "data" / name
            folder.mkdir(parents=True)
            data = _tiny_data(rng)
            _idx(folder / "train-images-idx3-ubyte.gz", data["x_train"])
            _idx(folder / "train-labels-idx1-ubyte.gz", data["y_train"])
            _idx(folder / "t10k-images-idx3-ubyte.gz", data["x_test"])
            _idx(folder / "t10k-labels-idx1-ubyte.gz", data["y_test"])
        (t / "images" / "train").mkdir(parents=True)
        (t / "run-empty").mkdir()
        result = self._case(t, ["train", "tiny.arch", "--data", "tiny.npz", "--epochs", "1", "--out", "run"], 300)
        assert result.status == 0, result
        shutil.copytree(t / "run", t / "run-broken")
        (t / "run-broken" / "run.json").write_text('{"format": 1, "spec": [')
        shutil.copytree(t / "run", t / "run-flipped")
        weights = next((t / "run-flipped" / "checkpoints").glob("*.safetensors"))
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0xFF
        weights.write_bytes(bytes(data))

    def _fresh(self) -> _Drain:
        if self.scratch.exists():
            shutil.rmtree(self.scratch)
        shutil.copytree(self.template, self.scratch, symlinks=True)
        hostile_files(self.scratch, fifo=False)
        os.mkfifo(self.scratch / "pipe.arch")
        (self.scratch / "link.arch").symlink_to("specs/lenet.arch")
        return _Drain(self.scratch / "pipe.arch")

    def _case(self, cwd: Path, argv: list[str], seconds: float | None = None) -> Result:
        """Run ``archdsl ARGV`` in ``cwd`` with the guard's $HOME, a private $TMPDIR, no network and captured stdio."""
        saved = (os.getcwd(), sys.argv, sys.stdin, sys.stdout, sys.stderr, list(sys.path), dict(os.environ),
                 tempfile.tempdir, urllib.request.urlopen)
        out_file, err_file = open(self.capture / "stdout", "w+b"), open(self.capture / "stderr", "w+b")  # noqa: SIM115
        status, escaped, fired = None, None, [False]
        try:
            os.chdir(cwd)
            # torch.compile's caches and its C compiler's temporaries are torch's: away from the guard.
            os.environ.update(HOME=str(self.guard / "home"), TMPDIR=str(self.tmp), ARCHDSL_DATA=str(cwd / "data"),
                              TORCHINDUCTOR_CACHE_DIR=str(self.root / "torch-cache"), TORCHINDUCTOR_COMPILE_THREADS="1")
            os.environ.pop("XDG_CACHE_HOME", None)
            tempfile.tempdir = str(self.tmp)
            urllib.request.urlopen = _offline
            sys.argv = ["archdsl", *argv]
            sys.stdin = io.TextIOWrapper(io.BytesIO(b""), encoding="utf-8")
            # As a process's own streams are: stdout strict UTF-8, stderr with backslash escapes.
            sys.stdout = io.TextIOWrapper(out_file, encoding="utf-8", errors="strict", write_through=True)
            sys.stderr = io.TextIOWrapper(err_file, encoding="utf-8", errors="backslashreplace", write_through=True)
            running = bool(argv) and argv[0] in RUNNING
            try:
                bound = seconds or (self.running_seconds if running else self.seconds)
                with within(bound, KeyboardInterrupt if running else Hang) as fired:
                    main()
            except SystemExit as exit_:
                status = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            except BaseException:  # noqa: BLE001 (anything but SystemExit is a finding)
                escaped = traceback.format_exc()
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
        finally:
            cwd_, sys.argv, sys.stdin, sys.stdout, sys.stderr, sys.path[:], environ, tempfile.tempdir, \
                urllib.request.urlopen = saved
            os.environ.clear()
            os.environ.update(environ)
            os.chdir(cwd_)
            out_file.close()
            err_file.close()
        stdout = (self.capture / "stdout").read_bytes().decode("utf-8", "replace")
        stderr = (self.capture / "stderr").read_bytes().decode("utf-8", "replace")
        if escaped is not None:
            stderr += escaped
        return Result(tuple(argv), status, stdout, stderr, fired[0])

    def run(self, argv: list[str]) -> Result:
        """Run one argv in a fresh scratch folder; raise CliFailure where the oracle fails."""
        drain = self._fresh()
        guard_before, before = _snapshot(self.guard), _snapshot(self.scratch)
        descriptors = open_descriptors()
        temporaries = set(os.listdir(self.tmp))
        try:
            result = self._case(self.scratch, argv)
        finally:
            drain.close()
        leaked = leaked_descriptors(descriptors)
        if leaked:
            raise CliFailure("a file descriptor left open", result, f"open: {leaked}")
        self._check(result, guard_before, before, temporaries)
        return result

    def _check(self, result: Result, guard_before: dict, before: dict, temporaries: set[str]) -> None:
        if result.status is None:
            last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "?"
            if "fuzz_paths.Hang" in result.stderr:
                raise CliFailure(f"still running after {self.seconds} s (a hang?)", result)
            raise CliFailure(f"exception: {last[:200]} at {_last_frame(result.stderr)}", result)
        if "Traceback (most recent call last)" in result.stdout + _without_our_interrupt(result.stderr):
            raise CliFailure("a traceback in the output", result)
        if not (result.status in (0, 1, 2) or (result.status == 130 and result.interrupted)):
            raise CliFailure(f"exit status {result.status}", result)
        # check --format json|sarif|github reports its diagnostics on standard output, in that format.
        diagnostic = re.search(r"\berror: ", result.stderr) or re.search(r'"severity": "error"|"level": "error"|^::error ',
                                                                         result.stdout, re.MULTILINE)
        if result.status == 1 and not (diagnostic or "would reformat" in result.stdout):
            raise CliFailure("exit status 1 without a diagnostic", result)
        if result.status == 0 and diagnostic:
            raise CliFailure("a diagnostic, yet exit status 0", result)
        guard_after = _snapshot(self.guard)
        if guard_after != guard_before:
            changed = sorted(set(guard_after.items()) ^ set(guard_before.items()))
            raise CliFailure("a file outside the scratch folder changed", result, f"changed: {changed[:5]}")
        after = _snapshot(self.scratch)
        named = _named_paths(self.scratch, result.argv)
        for path, entry in before.items():
            if after.get(path) != entry and not _covered(path, named):
                what = "destroyed" if path not in after else "changed"
                raise CliFailure(f"a file the argv does not name was {what}", result, f"{what}: {path}")
        if not result.interrupted:
            left = [p for p in after if p not in before and is_temporary(os.path.basename(p))]
            left += [name for name in set(os.listdir(self.tmp)) - temporaries if name.startswith("archdsl-")]
            if left:
                raise CliFailure("a temporary file left behind", result, f"left: {left[:5]}")


def _without_our_interrupt(stderr: str) -> str:
    """stderr less what Python prints when the time bound's KeyboardInterrupt lands in a weakref callback or a
    finaliser ("Exception ignored in: ..."): the interpreter's report of an interrupt it could not raise."""
    return re.sub(r"Exception ignored in: .*?KeyboardInterrupt: still running after [0-9.]+ s\n", "", stderr,
                  flags=re.DOTALL)


def _offline(*args, **kwargs):
    raise urllib.error.URLError("no network while fuzzing")


def _last_frame(text: str) -> str:
    frames = [line.strip() for line in text.splitlines() if line.strip().startswith("File ")]
    return frames[-1] if frames else "?"


def _named_paths(folder: Path, argv: tuple[str, ...]) -> set[str]:
    """Every path an argv token could name (a token, the value of --opt=value or -oVALUE), as written and
    with links resolved."""
    named = set()
    for token in argv:
        candidates = [token]
        if token.startswith("-"):
            candidates += [token.partition("=")[2], token[2:]]
        for candidate in filter(None, candidates):
            with contextlib.suppress(ValueError, OSError):
                path = os.path.normpath(os.path.join(folder, candidate))
                named |= {path, os.path.realpath(path)}
    return named


def _covered(path: str, named: set[str]) -> bool:
    """Whether the argv names ``path``, a folder above it, or a link that leads to it."""
    real = os.path.realpath(path)
    return any(path == n or path.startswith(n + os.sep) or real == n for n in named)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    torch = pytest.importorskip("torch")  # train and eval run for real (numpy comes with it)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the campaign runs (OMP_NUM_THREADS=1): cases stay small and comparable
    yield Workspace(tmp_path_factory.mktemp("cli"))
    torch.set_num_threads(threads)


# -- the tests -----------------------------------------------------------------------------------------------

CLI_SAMPLE = 200


def test_command_lines_exit_cleanly_and_touch_only_their_outputs(workspace):
    labels: Counter[str] = Counter()

    @settings(CI, max_examples=CLI_SAMPLE)
    @given(command_lines())
    def case(argv):
        labels[workspace.run(argv).label] += 1

    case()
    # Not vacuous: commands succeed as well as fail, and training runs to its end.
    assert sum(n for label, n in labels.items() if label.endswith(" 0")) >= CLI_SAMPLE / 10, labels
    assert sum(n for label, n in labels.items() if label.endswith(" 1")) >= CLI_SAMPLE / 3, labels
    assert {"compile 0", "graph 0", "train 0"} <= set(labels), labels


def test_the_generator_reaches_every_command_option_and_pool():
    """Every subcommand and every option of the click tree is drawn, with symbolic inputs and huge numbers."""
    seen: set[tuple[str, str]] = set()
    tokens: set[str] = set()

    @settings(CI, max_examples=8000)
    @given(command_lines())
    def collect(argv):
        tokens.update(argv)
        if argv and argv[0] in app.commands:
            command = app.commands[argv[0]]
            for token in argv[1:]:
                for option in (p for p in command.params if isinstance(p, click.Option)):
                    if any(token == name or token.startswith(name + "=") or (len(name) == 2 and token.startswith(name))
                           for name in (*option.opts, *option.secondary_opts)):
                        seen.add((argv[0], option.name))
            seen.add((argv[0], ""))

    collect()
    commands = {name: c for name, c in app.commands.items() if name not in SERVERS}
    wanted = {(name, "") for name in commands}
    wanted |= {(name, p.name) for name, c in commands.items() for p in c.params if isinstance(p, click.Option)}
    assert wanted <= seen, sorted(wanted - seen)
    for needed in ("1xHxW", "3x0x0", "-", "pipe.arch", "loop.arch", "dangling.arch", "null.arch", LONG_NAME,
                   "new\nline.arch", BYTES_NAME, "latin1.arch", "empty.arch", "folder.arch", "missing.arch"):
        assert needed in tokens, needed
    assert any(t.endswith("=" + "9" * 400) for t in tokens)  # a huge -p value
    assert any(t.endswith("=9223372036854775808") for t in tokens)


# -- open bugs the fuzzers found (strict: each fails once its bug is fixed; then drop it and its tolerance) --


def test_a_folder_read_as_a_spec_or_an_import_leaves_no_descriptor_open(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "main.arch").write_text('import "lib"\n' + NET)
    before = open_descriptors()
    try:
        for spec in (tmp_path, tmp_path / "main.arch"):
            with pytest.raises(ArchError, match="is a folder, not a spec file"):
                archdsl.load(spec)
        assert [target for fd, target in open_descriptors().items() if before.get(fd) != target] == []
    finally:
        leaked_descriptors(before)  # closes them, so that the rest of the session is not short of descriptors


@pytest.fixture(scope="module")
def hostile_copy(tmp_path_factory) -> Path:
    return path_folder(tmp_path_factory.mktemp("paths"))


@settings(CI, max_examples=600)
@given(path_mutants())
def test_path_mutants_compile_or_fail_with_a_place(hostile_copy, case):
    compile_path_case(hostile_copy, case)


def test_the_path_mutants_reach_every_kind(hostile_copy):
    """Not vacuous: some mutants compile (absolute and dotted paths to the right file) and the errors
    include the file kinds, the refused folders and the names the file system cannot take."""
    outcomes: Counter[str] = Counter()
    kinds: set[str] = set()

    @settings(CI, max_examples=300)
    @given(path_mutants())
    def collect(case):
        outcomes[compile_path_case(hostile_copy, case)] += 1
        kinds.add(case.kind)

    collect()
    assert outcomes["ok"] >= 10 and outcomes["ResolveError"] >= 100, outcomes
    assert set(KINDS) <= kinds, kinds


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("ARCHDSL_FUZZ_CLI_CASES"), reason="set ARCHDSL_FUZZ_CLI_CASES=N to run N more")
def test_more_command_lines(workspace):
    """``ARCHDSL_FUZZ_CLI_CASES=2000 pytest tests/test_fuzz_cli.py``: random (not derandomized) cases."""
    @settings(CI, max_examples=int(os.environ["ARCHDSL_FUZZ_CLI_CASES"]), derandomize=False)
    @given(command_lines())
    def case(argv):
        workspace.run(argv)

    case()
