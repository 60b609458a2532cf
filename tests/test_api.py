"""The Python API: ``load``/``loads``, the compiled network's attributes, input overrides, ArchError's
attributes, and that importing and compiling never import torch.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SPECS

import archdsl
from archdsl.errors import ShapeError, UsageError

LENET_PARAMS = 61_706  # 6*(25+1) + 16*(6*25+1) + 120*(400+1) + 84*(120+1) + 10*(84+1)


def test_load_gives_a_compiled_network() -> None:
    net = archdsl.load(SPECS / "lenet.arch")
    assert isinstance(net, archdsl.CompiledNetwork)
    assert (net.name, net.input_shape, net.output_shape, net.params) == ("lenet", (1, 28, 28), (10,), LENET_PARAMS)
    # conv 28x28x6 from 1x5x5; conv 10x10x16 from 6x5x5; then 400x120, 120x84, 84x10
    assert net.macs == 28 * 28 * 6 * 25 + 10 * 10 * 16 * 6 * 25 + 400 * 120 + 120 * 84 + 84 * 10
    assert net.param_values == {"in_channels": 1, "classes": 10}
    assert repr(net) == "<CompiledNetwork lenet: 1x28x28 -> 10, 61,706 params, 416,520 MACs>"


def test_loads_takes_text_and_parameters() -> None:
    text = "network n(classes = 10) : [1, 28, 28] = flatten; linear classes"
    net = archdsl.loads(text, classes=3)
    assert (net.output_shape, net.params) == ((3,), 784 * 3 + 3)
    assert net.source_path is None and net.source_text == text


def test_summary_lists_layers_and_totals() -> None:
    """The summary prints as archdsl compile does (str() and repr() are that text; in Jupyter it is an HTML
    table, tests/test_notebook.py)."""
    summary = archdsl.load(SPECS / "lenet.arch").summary()
    text = str(summary)
    assert repr(summary) == text
    assert "conv_0" in text and "linear_2" in text
    assert "params 61,706" in text and "MACs 416,520" in text
    assert "torchvision" in text  # the legend says which convention the MACs follow
    collapsed = str(archdsl.load(SPECS / "resnet18.arch").summary(depth=1))
    assert "stage_0 " in collapsed and "stage_0.residual_0" not in collapsed


def test_build_returns_the_module() -> None:
    import torch

    module = archdsl.loads("network n : [1, 4, 4] = flatten; linear 3").build()
    assert isinstance(module, torch.nn.Module)
    assert module(torch.zeros(2, 1, 4, 4)).shape == (2, 3)


def test_input_shape_overrides_the_declaration() -> None:
    net = archdsl.load(SPECS / "vgg11.arch", input_shape=(3, 32, 32), in_channels=3)
    assert net.input_shape == (3, 32, 32)
    assert net.ir.body[-1].in_shape == (512, 1, 1)  # five halvings of 32
    declared = archdsl.load(SPECS / "vgg11.arch", in_channels=3)
    # Only the first Linear depends on the input size: 512*7*7 inputs at 224, 512 at 32.
    assert declared.params - net.params == (512 * 7 * 7 - 512) * 4096
    with pytest.raises(UsageError):
        archdsl.load(SPECS / "lenet.arch", input_shape=(1, 0, 28))
    with pytest.raises(ShapeError) as info:
        archdsl.load(SPECS / "lenet.arch", input_shape=(1, 4, 4))
    assert info.value.file == str(SPECS / "lenet.arch")


def test_arch_error_carries_file_line_and_column(tmp_path: Path) -> None:
    spec = tmp_path / "bad.arch"
    spec.write_text("network n : [1, 8, 8] =\n    conv3x3 4;\n    conv3x 4\n")
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.load(spec)
    err = info.value
    assert (err.file, err.line, err.column) == (str(spec), 3, 5)
    assert "conv3x" in err.message and err.hint and "conv3x3" in err.hint
    assert str(err).startswith(f"{spec}:3:5: error: ")
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.loads("network n : [1, 8, 8] = relu;;")
    assert (info.value.file, info.value.line, info.value.column) == ("<string>", 1, 30)


def test_missing_file_is_an_arch_error(tmp_path: Path) -> None:
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.load(tmp_path / "nothere.arch")
    assert info.value.file == str(tmp_path / "nothere.arch") and info.value.line is None


def test_several_networks_need_a_name() -> None:
    text = "network a : [1, 8, 8] = relu\nnetwork b : [2, 8, 8] = relu"
    assert archdsl.loads(text, network="b").input_shape == (2, 8, 8)
    with pytest.raises(UsageError):
        archdsl.loads(text)
    with pytest.raises(UsageError):
        archdsl.loads(text, network="c")


def test_public_names() -> None:
    assert {"ArchError", "CompiledNetwork", "Limits", "load", "loads"} <= set(archdsl.__all__)


def test_import_and_compile_leave_torch_out() -> None:
    code = (
        "import sys, archdsl\n"
        "net = archdsl.load('specs/densenet.arch')\n"
        "net.summary(); net.text(); net.ir.model_dump_json()\n"
        "try:\n    archdsl.loads('network n : [1, 8, 8] = conv3x 3')\nexcept archdsl.ArchError as err:\n    err.render()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'graphviz', 'numpy')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
