"""What installing archdsl gives: a small core that needs no torch, extras for the rest, and a command
that needs a missing extra saying which one to install instead of ending in a traceback.

The commands run in subprocesses whose imports of the extras' packages fail (a ``sys.meta_path`` finder
that refuses them), as in an environment where only ``pip install archdsl`` ran; scripts/ci_packaging.sh
checks the same in a real virtual environment without torch, from the built wheel.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO, SPECS

import archdsl
from archdsl.errors import UsageError
from archdsl.extras import EXTRA_OF, missing_extra, required

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]

# Runs the archdsl command (or, with "-c CODE", CODE) where the packages named in argv[1] cannot be imported.
WITHOUT = """
import importlib.abc, runpy, sys

class Missing(importlib.abc.MetaPathFinder):
    def __init__(self, names):
        self.names = set(names)

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Missing(sys.argv.pop(1).split(",")))
if sys.argv[1] == "-c":
    exec(sys.argv[2])
else:
    runpy.run_module("archdsl", run_name="__main__", alter_sys=True)
"""
EXTRAS_PACKAGES = ",".join(EXTRA_OF)  # torch, numpy, ... onnxscript: every one an extra brings


def without_extras(*args: str, cwd: Path = REPO, missing: str = EXTRAS_PACKAGES) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT, missing, *map(str, args)], check=False, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_a_spec_needs_no_extra(tmp_path: Path) -> None:
    """compile, check, graph, fmt, layers, compare and the Python export run with the core alone."""
    spec, other = SPECS / "resnet18.arch", SPECS / "vgg11.arch"
    for args in (("compile", spec, "--depth", "1"), ("compile", spec, "--emit", "text"), ("check", spec),
                 ("check", "--min-input", SPECS / "lenet.arch"), ("graph", spec, "-o", tmp_path / "r.dot"),
                 ("fmt", spec), ("layers",), ("compare", spec, other), ("export", spec, "--to", "python", "-o",
                 tmp_path / "r.py"), ("--version",)):
        done = without_extras(*args)
        assert (done.returncode, done.stderr) == (0, ""), (args, done.stderr)
        assert done.stdout or args[0] in ("graph", "export"), args
    assert "class Resnet18(nn.Sequential)" in (tmp_path / "r.py").read_text(encoding="utf-8")


@pytest.mark.parametrize(("args", "extra"), [
    (("train", "specs/lenet.arch", "--epochs", "1", "--out", "{tmp}/run"), "train"),
    (("eval", "specs/lenet.arch", "--checkpoint", "{tmp}/run"), "train"),
    (("export", "specs/lenet.arch", "--to", "torchscript", "-o", "{tmp}/l.pt"), "train"),
    (("export", "specs/lenet.arch", "--to", "onnx", "-o", "{tmp}/l.onnx"), "train"),
    (("compare", "specs/lenet.arch", "--reference", "references:lenet", "--reference-path", "tests"), "train"),
])  # fmt: skip
def test_a_command_that_needs_an_extra_names_it(args: tuple[str, ...], extra: str, tmp_path: Path) -> None:
    done = without_extras(*(arg.format(tmp=tmp_path) for arg in args))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    message, hint = done.stderr.splitlines()
    assert message.startswith("archdsl: error: ") and "is not installed" in message, message
    assert hint.startswith(f"  hint: pip install 'archdsl[{extra}]'"), hint
    assert list(tmp_path.iterdir()) == []  # nothing half made


def test_onnx_without_the_export_extra_names_it(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    done = without_extras("export", "specs/lenet.arch", "--to", "onnx", "-o", tmp_path / "l.onnx", missing="onnx")
    assert (done.returncode, done.stderr) == (1, ("archdsl: error: onnx is not installed; it comes with archdsl's "
                                                  "'export' extra\n  hint: pip install 'archdsl[export]'\n"))


def test_build_without_torch_names_the_extra() -> None:
    code = ("import archdsl\nnet = archdsl.load('specs/lenet.arch')\nprint(net.params)\ntry:\n    net.build()\n"
            "except archdsl.ArchError as err:\n    print(type(err).__name__, err.message, err.hint)")
    done = without_extras("-c", code)
    assert done.returncode == 0, done.stderr
    params, error = done.stdout.splitlines()
    assert params == "61706"
    assert error.startswith("UsageError torch is not installed; it comes with archdsl's 'train' extra "
                            "pip install 'archdsl[train]' (for the CPU-only torch wheel, see https://"), error
    assert error.endswith("/docs/install.md)"), error


def test_missing_extra_maps_every_package_of_an_extra_and_nothing_else() -> None:
    error = missing_extra(ModuleNotFoundError("No module named 'torch.nn'", name="torch.nn"))
    assert isinstance(error, UsageError) and error.message.startswith("torch is not installed")
    assert missing_extra(ModuleNotFoundError("No module named 'PIL'", name="PIL")).hint.startswith(
        "pip install 'archdsl[train]' (for the CPU-only torch wheel, see https://")
    onnx = missing_extra(ModuleNotFoundError("No module named 'onnx'", name="onnx"))
    assert onnx.hint == "pip install 'archdsl[export]'"
    assert missing_extra(ModuleNotFoundError("No module named 'sympy'", name="sympy")) is None
    with pytest.raises(ModuleNotFoundError), required():  # a module no extra brings is a bug or a broken install
        raise ModuleNotFoundError("No module named 'sympy'", name="sympy")
    # Each package an extra maps to is one that extra declares (Pillow is imported as PIL).
    extras = PROJECT["optional-dependencies"]
    declared = {extra: {_distribution(req) for req in extras[extra]} for extra in set(EXTRA_OF.values())}
    for module, extra in EXTRA_OF.items():
        assert {"PIL": "pillow"}.get(module, module) in declared[extra], (module, extra)


def _distribution(requirement: str) -> str:
    """``"torch>=2.6"`` -> ``"torch"``: the distribution a requirement names, lower-cased."""
    for i, char in enumerate(requirement):
        if not (char.isalnum() or char in "-_."):
            return requirement[:i].lower()
    return requirement.lower()


def test_the_core_is_small_and_the_extras_name_the_rest() -> None:
    assert sorted(map(_distribution, PROJECT["dependencies"])) == ["click", "graphviz", "interegular", "lark",
                                                                   "pydantic"]
    extras = PROJECT["optional-dependencies"]
    assert {_distribution(req) for req in extras["train"]} == {"torch", "numpy", "safetensors", "matplotlib",
                                                               "rich", "pillow", "tensorboard"}
    assert {_distribution(req) for req in extras["export"]} == {"onnx", "onnxscript"}
    assert {_distribution(req) for req in extras["lsp"]} == {"pygls", "lsprotocol"}
    torch = next(req for req in extras["train"] if _distribution(req) == "torch")
    assert "==" not in torch and ">=" in torch, torch  # a floor, never a pin: the user picks the build
    # The test extra names the others instead of repeating their packages.
    assert "archdsl[train,export,lsp]" in extras["test"]
    brought = {_distribution(req) for req in extras["train"] + extras["export"] + extras["lsp"]}
    repeated = {_distribution(req) for req in extras["test"]} & brought
    assert not repeated, repeated


def test_beside_d2l_the_floors_allow_its_pins() -> None:
    """d2l 1.0.3 pins numpy 1.23.5 and matplotlib 3.7.2: the floors must allow both (CI resolves them together)."""
    floors = {_distribution(req): req for req in PROJECT["optional-dependencies"]["train"]}
    assert _allows(floors["numpy"], (1, 23, 5)) and _allows(floors["matplotlib"], (3, 7, 2)), floors


def _allows(requirement: str, version: tuple[int, ...]) -> bool:
    """Whether ``name>=X.Y[.Z]`` (a plain floor) allows ``version``."""
    _, floor = requirement.split(">=")
    return tuple(int(part) for part in floor.split(".")) <= version


def test_version_is_the_installed_metadata_from_pyproject() -> None:
    assert archdsl.__version__ == PROJECT["version"]
    for command in ([sys.executable, "-m", "archdsl", "--version"], [sys.executable, "-m", "archdsl.cli", "--version"]):
        done = subprocess.run(command, check=False, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout, done.stderr) == (0, f"archdsl {PROJECT['version']}\n", "")


def test_python_dash_m_archdsl_is_the_command() -> None:
    done = subprocess.run([sys.executable, "-m", "archdsl", "compile", "specs/lenet.arch", "--json"], check=False,
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert '"params": 61706' in done.stdout
    done = subprocess.run([sys.executable, "-m", "archdsl", "compiel"], check=False, cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.startswith("archdsl: error: "), done.stderr


def test_shell_completion_offers_the_choices() -> None:
    """click's completion (docs/install.md) completes option values from their choices (--direction takes
    either case)."""
    for words, current, expected in ((["compile", "specs/lenet.arch", "--emit"], "", {"ir", "text"}),
                                     (["export", "specs/lenet.arch", "--to"], "o", {"onnx"}),
                                     (["graph", "specs/lenet.arch", "--direction"], "", {"TB", "LR"})):
        env = {"_ARCHDSL_COMPLETE": "bash_complete", "COMP_WORDS": " ".join(["archdsl", *words, current]),
               "COMP_CWORD": str(len(words) + 1)}
        done = subprocess.run([sys.executable, "-m", "archdsl"], check=False, cwd=REPO, capture_output=True, text=True,
                              timeout=60, env={**os.environ, **env})
        assert done.returncode == 0, done.stderr
        offered = {line.split(",", 1)[1].casefold() for line in done.stdout.splitlines()}
        assert offered == {choice.casefold() for choice in expected}, (words, done.stdout)


def test_the_sdist_holds_what_the_tests_need() -> None:
    """MANIFEST.in grafts the tests (with their cases) and the specs into the sdist; the license goes into
    both distributions (license-files)."""
    manifest = (REPO / "MANIFEST.in").read_text(encoding="utf-8").split()
    assert {"tests", "specs"} <= set(manifest)
    assert PROJECT["license"] == "MIT" and PROJECT["license-files"] == ["LICENSE"]
    assert "the archdsl authors" in (REPO / "LICENSE").read_text(encoding="utf-8")


def test_the_readme_links_work_on_a_package_index() -> None:
    """The README is the package's page on the index, where a relative link leads nowhere."""
    links = re.findall(r"\]\(([^)\s]+)\)", (REPO / "README.md").read_text(encoding="utf-8"))
    assert links and all(link.startswith("https://") for link in links), links
    for link in links:
        path = link.removeprefix("https://github.com/archdsl/archdsl/blob/main/").removeprefix(
            "https://github.com/archdsl/archdsl/raw/main/")
        assert path == link or (REPO / path).is_file(), link
