"""The command line through its real entry points (``python -m archdsl.cli`` and the ``archdsl``
executable), in subprocesses: what a user types and what they read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SPECS

import archdsl

SPEC_NAMES = sorted(p.stem for p in SPECS.glob("*.arch"))


def archdsl_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "archdsl.cli", *map(str, args)], cwd=cwd, check=False, capture_output=True, text=True, timeout=120
    )


def assert_clean_failure(done: subprocess.CompletedProcess) -> str:
    """Exit status 1, a diagnostic on stderr, no traceback; returns stderr."""
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    assert "error:" in done.stderr
    return done.stderr


def test_compile_prints_a_table_and_totals() -> None:
    done = archdsl_cli("compile", "specs/lenet.arch")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for path in ("conv_0", "sigmoid_0", "avgpool_1", "flatten_0", "linear_2"):
        assert path in out
    assert "params 61,706" in out and "MACs 416,520" in out
    assert "torchvision" in out  # the MAC convention, in the legend


def test_compile_json_has_the_promised_keys_and_partitions_the_totals() -> None:
    done = archdsl_cli("compile", "specs/googlenet.arch", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert {"network", "input", "output", "params", "macs", "layers"} <= set(data)
    net = archdsl.load(SPECS / "googlenet.arch")
    assert (data["network"], data["input"], data["output"]) == ("googlenet", [1, 96, 96], [10])
    assert (data["params"], data["macs"]) == (net.params, net.macs)
    assert sum(row["params"] for row in data["layers"]) == data["params"]
    assert sum(row["macs"] for row in data["layers"]) == data["macs"]
    assert len(data["layers"]) == sum(1 for _ in net.layers())


def test_depth_collapses_blocks_into_rows() -> None:
    data = json.loads(archdsl_cli("compile", "specs/resnet18.arch", "--json", "--depth", "1").stdout)
    assert [row["path"] for row in data["layers"]] == [
        "stem_0", "stage_0", "stage_1", "stage_2", "stage_3", "adaptiveavgpool_0", "flatten_0", "linear_0",
    ]  # fmt: skip
    assert sum(row["params"] for row in data["layers"]) == data["params"]
    text = archdsl_cli("compile", "specs/resnet18.arch", "--depth", "1").stdout
    assert "stage(2, 128, 2)" in text and "stage_1.residual_0" not in text


def test_params_and_input_options() -> None:
    data = json.loads(archdsl_cli("compile", "specs/vgg16.arch", "--json", "-p", "in_channels=3", "--param", "classes=1000").stdout)
    assert (data["params"], data["macs"], data["output"]) == (138_357_544, 15_470_264_320, [1000])
    data = json.loads(archdsl_cli("compile", "specs/vgg11.arch", "--json", "--param", "in_channels=3", "--input", "3x32x32").stdout)
    assert data["input"] == [3, 32, 32]
    assert data["params"] == archdsl.load(SPECS / "vgg11.arch", in_channels=3, input_shape=(3, 32, 32)).params


def test_emit_ir_is_json_of_the_resolved_graph() -> None:
    done = archdsl_cli("compile", "specs/resnet18.arch", "--emit", "ir")
    data = json.loads(done.stdout)
    assert (data["name"], data["input_shape"], data["params"]) == ("resnet18", [1, 96, 96], 11_178_378)
    stem = data["body"][0]
    assert (stem["op"], stem["path"], stem["out_shape"]) == ("block", "stem_0", [64, 24, 24])
    conv = stem["body"][0]
    lines = (SPECS / "lib" / "resnet.arch").read_text().splitlines()
    stem_line = next(n for n, line in enumerate(lines, 1) if line.startswith("block stem("))
    assert (conv["kind"], conv["args"]["k"], conv["span"]["line"]) == ("conv", 7, stem_line)
    assert conv["span"]["file"].endswith("resnet.arch")


def test_network_option_picks_one_of_several(tmp_path: Path) -> None:
    spec = tmp_path / "two.arch"
    spec.write_text("network a : [1, 8, 8] = relu\nnetwork b : [2, 8, 8] = flatten; linear 3\n")
    data = json.loads(archdsl_cli("compile", spec, "--json", "--network", "b").stdout)
    assert (data["network"], data["output"]) == ("b", [3])
    assert "--network" in assert_clean_failure(archdsl_cli("compile", spec))


def test_check_reports_ok_for_every_spec() -> None:
    done = archdsl_cli("check", *(f"specs/{name}.arch" for name in SPEC_NAMES))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == len(SPEC_NAMES) and all(": ok: " in line for line in lines)


def test_check_takes_param_network_and_max_params(tmp_path: Path) -> None:
    spec = tmp_path / "two.arch"
    spec.write_text("network a(classes) : [1, 8, 8] = flatten; linear classes\n"
                    "network b(classes = 3) : [2, 8, 8] = flatten; linear classes\n")
    done = archdsl_cli("check", spec)
    assert done.stdout == f"{spec}: ok: a (not instantiated: no value for classes); b 2x8x8 -> 3\n"
    done = archdsl_cli("check", spec, "-p", "classes=5")
    assert done.stdout == f"{spec}: ok: a 1x8x8 -> 5; b 2x8x8 -> 5\n"
    done = archdsl_cli("check", spec, "-n", "b", "-p", "classes=4")
    assert done.stdout == f"{spec}: ok: b 2x8x8 -> 4\n"
    assert "must be positive, but it is 0" in assert_clean_failure(archdsl_cli("check", spec, "-p", "classes=0"))
    assert "no network 'c' in the spec" in assert_clean_failure(archdsl_cli("check", spec, "-n", "c"))
    assert "has no parameter 'width'" in assert_clean_failure(archdsl_cli("check", spec, "-n", "b", "-p", "width=2"))
    assert "more than the limit of 10" in assert_clean_failure(archdsl_cli("check", spec, "-n", "b", "--max-params", "10"))
    assert "--max-params must be at least 1, not -5" in assert_clean_failure(
        archdsl_cli("check", spec, "--max-params", "-5"))


def test_errors_are_one_diagnostic_and_status_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.arch"
    bad.write_text("network n : [1, 8, 8] =\n    conv3x3 4;\n    add [ id | conv3x3 8 ]\n")
    for command in ("compile", "check"):
        err = assert_clean_failure(archdsl_cli(command, bad))
        first, source, caret = err.splitlines()[:3]
        assert first.startswith(f"{bad}:3:5: error: ")
        assert source.endswith("add [ id | conv3x3 8 ]") and caret.strip(" |").startswith("^^^")
    done = archdsl_cli("check", "specs/lenet.arch", bad)
    assert_clean_failure(done)
    assert "lenet.arch: ok" in done.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("compile", "specs/nothere.arch"),
        ("compile", "specs/lenet.arch", "--param", "classes"),
        ("compile", "specs/lenet.arch", "--param", "clases=3"),
        ("compile", "specs/lenet.arch", "--param", "classes=ten"),
        ("compile", "specs/lenet.arch", "--input", "1x0x28"),
        ("compile", "specs/lenet.arch", "--input", "1x4x4"),
        ("compile", "specs/lenet.arch", "--max-params", "1000"),
    ],
)
def test_usage_mistakes_end_cleanly(args: tuple[str, ...]) -> None:
    assert_clean_failure(archdsl_cli(*args))


@pytest.mark.parametrize(
    ("args", "in_message", "in_hint", "command"),
    [
        (("compile",), ["missing", "SPEC"], [], "archdsl compile"),
        (("compile", "specs/lenet.arch", "--depth", "0"), ["--depth", "0"], [], "archdsl compile"),
        (("compile", "specs/lenet.arch", "--depth", "two"), ["--depth", "two"], [], "archdsl compile"),
        (("compile", "specs/lenet.arch", "--jsn"), ["--jsn"], ["--json"], "archdsl compile"),
        (("compile", "specs/lenet.arch", "--emit", "onnx"), ["--emit", "onnx", "ir", "text"], [], "archdsl compile"),
        (("graph", "specs/lenet.arch", "--no-such-option"), ["--no-such-option"], [], "archdsl graph"),
        (("graph", "specs/lenet.arch", "--direction", "up"), ["--direction", "up", "TB", "LR"], [], "archdsl graph"),
        (("export", "specs/lenet.arch", "-o", "x.py", "--to", "tflite"),
         ["--to", "tflite", "python", "onnx", "torchscript"], [], "archdsl export"),
        (("compiel", "specs/lenet.arch"), ["compiel"], [], "archdsl"),  # later clicks also suggest compile
        (("check",), ["missing", "SPEC..."], [], "archdsl check"),
    ],
)
def test_command_line_mistakes_read_like_every_other_error(args: tuple[str, ...], in_message: list[str],
                                                           in_hint: list[str], command: str) -> None:
    """click's mistakes are one error and one hint pointing at the command's help, like ours; asserted by
    what they say (the option, the bad value, the choices, a suggestion), not by click's wording, which
    changes between its versions."""
    err = assert_clean_failure(archdsl_cli(*args))
    message, hint = err.splitlines()
    assert message.startswith("archdsl: error: ") and message[len("archdsl: error: ")].islower(), message
    assert all(word.casefold() in message.casefold() for word in in_message), message  # --direction: any case
    assert hint.startswith("  hint: ") and hint.endswith(f"see {command} --help"), hint
    assert all(word in hint for word in in_hint), hint


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("command", ["compile", "fmt"])
def test_an_output_that_cannot_be_written_is_one_error(command: str) -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "archdsl.cli", command, "specs/lenet.arch"], cwd=REPO,
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (1, "archdsl: error: cannot write the output: No space left on device\n")


@pytest.mark.skipif(sys.platform != "linux", reason="file names that are not UTF-8 need a Linux file system")
def test_a_file_name_that_is_not_utf8_is_written_as_u_fffd(tmp_path: Path) -> None:
    name = os.fsdecode(b"net\xfe.arch")  # as Python holds it: with a surrogate escape
    (tmp_path / name).write_text((SPECS / "lenet.arch").read_text())
    for args in (("compile", name, "--emit", "ir"), ("graph", name, "-o", "n.dot"), ("export", name, "-o", "n.py")):
        done = archdsl_cli(*args, cwd=tmp_path)
        assert done.returncode == 0, (args, done.stderr)
    assert "net\ufffd.arch:" in (tmp_path / "n.dot").read_text(encoding="utf-8")
    assert "from net\ufffd.arch" in (tmp_path / "n.py").read_text(encoding="utf-8")


def test_no_command_prints_the_help() -> None:
    done = archdsl_cli()
    assert done.returncode == 0
    assert done.stdout.startswith("Usage: archdsl [OPTIONS] COMMAND [ARGS]...")
    assert "compile" in done.stdout


def test_help() -> None:
    done = archdsl_cli("--help")
    assert done.returncode == 0
    assert all(command in done.stdout for command in ("compile", "check", "layers"))
    done = archdsl_cli("compile", "--help")
    assert done.returncode == 0
    for option in ("--param", "--input", "--network", "--depth", "--json", "--emit"):
        assert option in done.stdout


def test_the_installed_executable() -> None:
    exe = shutil.which("archdsl", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("archdsl is not installed as a command next to this Python")
    done = subprocess.run([exe, "layers"], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    listed = {line.split()[0] for line in done.stdout.splitlines() if line.strip()}
    from archdsl.layers import REGISTRY

    assert set(REGISTRY) <= listed
