"""The repository's pre-commit hooks (.pre-commit-hooks.yaml), run by pre-commit itself with `try-repo` on a
scratch repository: archdsl-check fails on a spec with errors and names them, archdsl-fmt rewrites a spec.

pre-commit installs this repository into a virtual environment of its own (from PyPI, as a user's machine
would), which takes a minute: the test is marked slow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def try_repo(hook: str, scratch: Path, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PRE_COMMIT_HOME": str(home), "GIT_CONFIG_GLOBAL": os.devnull}
    return subprocess.run([sys.executable, "-m", "pre_commit", "try-repo", str(REPO), hook, "--all-files"],
                          cwd=scratch, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pre-commit-home")


def scratch_repository(root: Path, files: dict[str, str]) -> Path:
    root.mkdir()
    git("init", "-q", cwd=root)
    for name, text in files.items():
        (root / name).write_text(text)
    git("add", ".", cwd=root)
    return root


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_archdsl_check_hook_fails_on_errors_and_passes_clean_specs(tmp_path, home):
    scratch = scratch_repository(tmp_path / "bad", {
        "good.arch": "network n : [1, 8, 8] = relu\n",
        "bad.arch": "network n : [1, 8, 8] = rleu; conv3x3 8 2\n",
    })
    done = try_repo("archdsl-check", scratch, home)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "archdsl check" in done.stdout and "Failed" in done.stdout
    assert "bad.arch:1:25: error: unknown layer or block 'rleu' [A101]" in done.stdout
    assert "bad.arch:1:41: error: conv3x3 takes 1 positional argument (out), but more were given [A202]" in done.stdout
    (scratch / "bad.arch").write_text("network n : [1, 8, 8] = relu; conv3x3 8 s=2\n")
    done = try_repo("archdsl-check", scratch, home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Passed" in done.stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_archdsl_fmt_hook_rewrites_a_spec(tmp_path, home):
    scratch = scratch_repository(tmp_path / "fmt", {"net.arch": "network n:[1,8,8]=relu;conv3x3 8;\n"})
    done = try_repo("archdsl-fmt", scratch, home)
    assert done.returncode == 1, done.stdout + done.stderr  # a file changed: pre-commit stops the commit
    assert "reformatted net.arch" in done.stdout
    assert (scratch / "net.arch").read_text() == "network n : [1, 8, 8] = relu; conv3x3 8\n"
    git("add", ".", cwd=scratch)
    done = try_repo("archdsl-fmt", scratch, home)
    assert done.returncode == 0, done.stdout + done.stderr
