"""Shared fixtures: where the repository is, golden files with one-command accept, and a disk that fills up.

Golden files hold expected output (IR text, diagnostics). A test compares with ``golden(path, text)``;
``EXPECTTEST_ACCEPT=1 pytest ...`` rewrites the files instead (PyTorch's convention), so a deliberate
change of output is one command and a diff to review.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "specs"
CASES = Path(__file__).resolve().parent / "cases"


def accepting() -> bool:
    """True when golden files should be rewritten rather than compared."""
    return os.environ.get("EXPECTTEST_ACCEPT", "") not in ("", "0")


def check_golden(path: Path, actual: str) -> None:
    """Compare ``actual`` with the file at ``path`` (or write it, when accepting)."""
    if not actual.endswith("\n"):
        actual += "\n"
    if accepting():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != actual:
            path.write_text(actual, encoding="utf-8")
        return
    name = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    if not path.exists():
        pytest.fail(f"no golden file {name}; create it with EXPECTTEST_ACCEPT=1 pytest ...")
    expected = path.read_text(encoding="utf-8")
    # A plain assert lets pytest show the difference line by line.
    assert actual == expected, f"{name} differs; if the change is intended, rerun with EXPECTTEST_ACCEPT=1"


@pytest.fixture
def golden():
    """``golden(path, text)``: compare with a golden file, or rewrite it under EXPECTTEST_ACCEPT=1."""
    return check_golden


@pytest.fixture
def in_repo(monkeypatch):
    """Run in the repository's root, so that paths in messages read ``specs/lenet.arch:3:5``."""
    monkeypatch.chdir(REPO)
    return REPO


@contextlib.contextmanager
def file_size_limit(limit: int):
    """Writes beyond ``limit`` bytes fail as on a full disk (EFBIG rather than ENOSPC), without root:
    RLIMIT_FSIZE, with SIGXFSZ ignored so that the write fails instead of killing the process. A process
    started meanwhile inherits both."""
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


@pytest.fixture(scope="session")
def torchvision():
    """torchvision with its set-up for a CPU-only torch (tests/torchvision_oracle.py), or a skip naming the
    package to install."""
    pytest.importorskip("torch")
    import torchvision_oracle

    if not torchvision_oracle.available():
        pytest.skip(f"torchvision is not installed: {torchvision_oracle.INSTALL_HINT}")
    return torchvision_oracle.import_torchvision()
