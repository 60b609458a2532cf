"""Every spec in specs/ against its hand-written d2l reference (tests/references.py), and its IR golden.

The reference is the oracle: the built module must count the same parameters, give the same output
shape, and, with the reference's weights copied in, the same outputs. Static shapes and MACs are
checked against what torch measures on the built module (forward hooks on the meta device), with MACs
counted from the torch modules themselves rather than from archdsl's formulas.

Rewrite the IR goldens in tests/cases/specs/ with ``EXPECTTEST_ACCEPT=1 pytest tests/test_specs.py``.
"""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch
from click.testing import CliRunner
from conftest import CASES, SPECS, check_golden
from references import REFERENCES, anynet, resnext
from strategies import count_params, join_branches, measure, randomise_normalisation

import archdsl
from archdsl import ir, resolve
from archdsl.cli import app

NAMES = sorted(REFERENCES)


def compiled(name: str, **params) -> archdsl.CompiledNetwork:
    return archdsl.load(SPECS / f"{name}.arch", **params)


def on_meta(factory, *args, **kwargs) -> torch.nn.Module:
    with torch.device("meta"):
        return factory(*args, **kwargs).eval()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("in_channels", "classes"), [(1, 10), (3, 7)])
def test_parameter_count_and_output_shape_equal_the_reference(name: str, in_channels: int, classes: int) -> None:
    factory, (_, height, width) = REFERENCES[name]
    net = compiled(name, in_channels=in_channels, classes=classes)
    reference = on_meta(factory, in_channels=in_channels, classes=classes)
    built = on_meta(net.build)
    x = torch.empty(2, in_channels, height, width, device="meta")

    assert net.input_shape == (in_channels, height, width)
    assert net.params == count_params(reference) == count_params(built)
    assert net.output_shape == tuple(reference(x).shape[1:]) == tuple(built(x).shape[1:]) == (classes,)


def assert_computes_the_reference(net: archdsl.CompiledNetwork, reference: torch.nn.Module, shape) -> None:
    """With the reference's weights copied in by position, the built module gives the reference's outputs."""
    generator = torch.Generator().manual_seed(0)
    reference.eval()
    for m in reference.modules():  # d2l's initialisation: deep ReLU stacks keep their signal
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.xavier_uniform_(m.weight, generator=generator)
    randomise_normalisation(reference, generator)
    built = on_meta(net.build)  # weights come from the reference: no need to initialise them

    # Both register their tensors in forward order, so they pair up by position; nn.MultiheadAttention packs the
    # query, key and value projections in one in_proj_weight, which takes the book's W_q, W_k and W_v stacked.
    ours, theirs = built.state_dict(), list(reference.state_dict().items())
    copied = {}
    for key, mine in ours.items():
        ref_key, value = theirs.pop(0)
        if key.endswith("in_proj_weight"):
            value = torch.cat([value, theirs.pop(0)[1], theirs.pop(0)[1]])
        assert mine.shape == value.shape, f"{key} is {tuple(mine.shape)}, the reference's {ref_key} is {tuple(value.shape)}"
        copied[key] = value
    assert not theirs, [key for key, _ in theirs]
    built.load_state_dict(copied, assign=True)
    built.eval()

    x = torch.randn(2, *shape, generator=generator)
    with torch.no_grad():
        expected, actual = reference(x), built(x)
    assert actual.shape == expected.shape
    assert torch.allclose(actual, expected, rtol=1e-4, atol=1e-5), (actual - expected).abs().max()
    # The outputs are not trivially equal (all zeros, say): the inputs of the batch differ.
    assert not torch.allclose(expected[0], expected[1])


@pytest.mark.parametrize("name", NAMES)
def test_outputs_equal_the_reference_with_its_weights(name: str) -> None:
    factory, shape = REFERENCES[name]
    torch.manual_seed(0)
    assert_computes_the_reference(compiled(name), factory(), shape)


# Members of d2l chapter 8's design spaces other than the book's instances (the specs' defaults): other stages,
# bottlenecks, three input channels. round(40 * 0.3125) = round(12.5) is 12 channels in 3 groups of 4, halves
# going to even as in Python (13 channels would not divide into 13 // 4 = 3 groups).
DESIGN_SPACE = {
    "anynet-3-stages": (
        "anynet",
        {"depths": [1, 2, 1], "channels": [24, 40, 64], "groups": [8, 4, 16], "bot_mul": [0.5, 0.3125, 1],
         "stem_channels": 16, "in_channels": 3, "classes": 5},
        partial(anynet, in_channels=3, classes=5, arch=((1, 24, 8, 0.5), (2, 40, 4, 0.3125), (1, 64, 16, 1)),
                stem_channels=16),
    ),
    "resnext-bottleneck": (
        "resnext",
        {"depths": [1, 2], "channels": [64, 96], "groups": 8, "bot_mul": 0.5},
        partial(resnext, arch=((1, 64), (2, 96)), groups=8, bot_mul=0.5),
    ),
}  # fmt: skip


@pytest.mark.parametrize("member", sorted(DESIGN_SPACE))
def test_other_members_of_the_design_spaces_equal_the_reference(member: str) -> None:
    name, params, factory = DESIGN_SPACE[member]
    net = compiled(name, **params)
    torch.manual_seed(0)
    reference = factory()
    assert net.params == count_params(reference)
    assert_computes_the_reference(net, reference, net.input_shape)
    measured = measure(on_meta(net.build), torch.empty(1, *net.input_shape, device="meta"))
    for node in ir.walk(net.ir.body):
        seen = measured[node.path]
        assert (node.in_shape, node.out_shape, node.params, node.macs) == (
            seen.in_shape, seen.out_shape, seen.params, seen.macs), node.path


@pytest.mark.parametrize("name", ["resnext", "anynet"])
def test_the_chapter_8_specs_from_the_command_line(name: str, in_repo) -> None:
    spec = f"specs/{name}.arch"
    runner = CliRunner()
    result = runner.invoke(app, ["check", spec])
    assert result.exit_code == 0 and result.stdout.startswith(f"{spec}: ok: {name} 1x96x96 -> 10"), result.output
    assert runner.invoke(app, ["fmt", "--check", spec, "specs/lib/resnext.arch"]).exit_code == 0
    result = runner.invoke(app, ["compile", spec, "--json", "-p", "depths=[1, 1]", "-p", "classes=7"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["parameters"]["depths"] == [1, 1]
    assert data["params"] == compiled(name, depths=[1, 1], classes=7).params


@pytest.mark.parametrize("name", NAMES)
def test_every_static_shape_param_count_and_mac_count_equals_torch(name: str) -> None:
    net = compiled(name)
    built = on_meta(net.build)
    measured = measure(built, torch.empty(2, *net.input_shape, device="meta"))
    nodes = list(ir.walk(net.ir.body))
    # Every node is a submodule at its path, and every submodule (but a join's branches) a node.
    assert {node.path for node in nodes} == set(measured) - join_branches(nodes)
    for node in nodes:
        seen = measured[node.path]
        assert (tuple(node.in_shape), tuple(node.out_shape)) == (seen.in_shape, seen.out_shape), node.path
        assert node.params == seen.params, node.path
        assert node.macs == seen.macs, node.path
    assert net.macs == sum(measured[node.path].macs for node in net.ir.body)


def test_vgg16_counts_what_torchvision_publishes() -> None:
    net = compiled("vgg16", in_channels=3, classes=1000)
    assert net.input_shape == (3, 224, 224)
    assert net.output_shape == (1000,)
    assert net.params == 138_357_544  # torchvision.models.vgg16
    assert net.macs == 15_470_264_320  # torchvision's "15.47 GFLOPS" (multiply-accumulates)
    built = on_meta(net.build)
    measured = measure(built, torch.empty(1, 3, 224, 224, device="meta"))
    assert sum(measured[node.path].macs for node in net.ir.body) == net.macs
    assert count_params(built) == net.params


@pytest.mark.parametrize("name", NAMES)
def test_resolved_graph_satisfies_its_schema(name: str) -> None:
    ir.validate(compiled(name).ir)


@pytest.mark.parametrize("name", NAMES)
def test_ir_text_golden(name: str, golden, in_repo) -> None:
    text = archdsl.load(f"specs/{name}.arch").text()
    golden(CASES / "specs" / f"{name}.txt", text)


def test_golden_files_compare_or_accept(tmp_path, monkeypatch) -> None:
    path = tmp_path / "g" / "x.txt"
    monkeypatch.setenv("EXPECTTEST_ACCEPT", "1")
    check_golden(path, "one")
    assert path.read_text() == "one\n"
    monkeypatch.setenv("EXPECTTEST_ACCEPT", "0")
    check_golden(path, "one\n")
    with pytest.raises(AssertionError):
        check_golden(path, "two")
    with pytest.raises(pytest.fail.Exception):
        check_golden(tmp_path / "missing.txt", "one")


@pytest.mark.parametrize("name", NAMES)
def test_one_walk_and_size_first_resolve_the_same_graph(name: str, monkeypatch) -> None:
    # Every spec here is small enough for one walk; forcing the size-first path must not change a node.
    one_walk = compiled(name).ir
    monkeypatch.setattr(resolve, "SIZE_FIRST_ABOVE", 0)
    size_first = compiled(name).ir
    assert ir.format_network(size_first) == ir.format_network(one_walk)
    assert size_first == one_walk
