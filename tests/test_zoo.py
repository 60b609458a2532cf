"""The zoo (archdsl/zoo/): networks by name in every command and in ``archdsl.load``, ``archdsl zoo``, and every
builder against torchvision, the oracle (tests/torchvision_oracle.py).

Against torchvision, each builder's parameter count equals ``sum(p.numel())`` of ``torchvision.models.get_model``
(built on the meta device), its output is [1000], and its MACs are within 1% of the GFLOPS torchvision documents
(``get_model_weights(name).DEFAULT.meta["_ops"]``, multiply-accumulates in torchvision's convention, as archdsl
counts them). One member of each family (more in the slow tests) is the same function as torchvision's model:
its weights copied in by order and shape (``archdsl compare --reference --load-weights``), the outputs on a random
batch within 1e-4 in fp32; a copy that cannot be made fails the test. The built modules also trace with
torch.fx and run in channels_last.

Building torchvision's models stays small in the fast tests: one model per family; the rest are marked slow.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SPECS

import archdsl
from archdsl import zoo
from archdsl.errors import UsageError

TESTS = Path(__file__).resolve().parent

# Every builder of the zoo by family spec: torchvision's names.
FAMILIES = {
    "alexnet": ["alexnet"],
    "convnext": ["convnext_tiny", "convnext_small", "convnext_base", "convnext_large"],
    "densenet": ["densenet121", "densenet161", "densenet169", "densenet201"],
    "efficientnet": ["efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4",
                     "efficientnet_b5", "efficientnet_b6", "efficientnet_b7", "efficientnet_v2_s", "efficientnet_v2_m",
                     "efficientnet_v2_l"],
    "googlenet": ["googlenet"],
    "inception_v3": ["inception_v3"],
    "maxvit": ["maxvit_t"],
    "mnasnet": ["mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3"],
    "mobilenet_v2": ["mobilenet_v2"],
    "mobilenet_v3": ["mobilenet_v3_large", "mobilenet_v3_small"],
    "regnet": ["regnet_x_400mf", "regnet_x_800mf", "regnet_x_1_6gf", "regnet_x_3_2gf", "regnet_x_8gf", "regnet_x_16gf",
               "regnet_x_32gf", "regnet_y_400mf", "regnet_y_800mf", "regnet_y_1_6gf", "regnet_y_3_2gf", "regnet_y_8gf",
               "regnet_y_16gf", "regnet_y_32gf", "regnet_y_128gf"],
    "resnet": ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d",
               "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2"],
    "shufflenet_v2": ["shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0"],
    "squeezenet": ["squeezenet1_0", "squeezenet1_1"],
    "swin": ["swin_t", "swin_s", "swin_b"],
    "swin_v2": ["swin_v2_t", "swin_v2_s", "swin_v2_b"],
    "vgg": ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"],
    "vit": ["vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14"],
}
BUILDERS = [name for names in FAMILIES.values() for name in names]
# The member of each family that the fast tests build beside torchvision's model (the others are slow tests).
FAST = {"alexnet", "convnext_tiny", "densenet121", "efficientnet_b0", "googlenet", "inception_v3", "maxvit_t", "mnasnet0_5",
        "mobilenet_v2",
        "mobilenet_v3_small", "regnet_y_400mf", "resnet18", "shufflenet_v2_x0_5", "squeezenet1_1", "swin_t", "swin_v2_t",
        "vgg11", "vit_b_32"}
# Torchvision's weights copied in: where that is quick, the fast member of each family; in the slow tests the
# rest of each family's kinds (a bottleneck, groups, a wide bottleneck, batch normalisation after VGG's
# convolutions, the other stems and widths, Fused-MBConv) and the two families whose copy takes seconds.
# ConvNeXt through a key map, MaxViT in the order of torchvision's state: below.
COPIED_FAST = FAST - {"vgg11", "inception_v3", "convnext_tiny", "maxvit_t"}
COPIED_SLOW = {"vgg11_bn", "resnet50", "resnext50_32x4d", "wide_resnet50_2", "squeezenet1_0", "mnasnet1_3",
               "mobilenet_v3_large", "inception_v3", "shufflenet_v2_x1_0", "efficientnet_v2_s", "regnet_x_400mf"}
# torchvision documents Inception-v3's parameters with its auxiliary classifier (27,161,264); the model its
# builder returns with weights, and the zoo's, have none (23,834,568).
DOCUMENTED_WITH_AUX = {"inception_v3"}
# The zoo's networks are at their builders' defaults; torchvision documents ViT-H/14 with its published weights, at
# 518 (its position embedding is 37² + 1 long there).
AT_WEIGHTS = {"vit_h_14": {"image_size": 518}}
# An input smaller than 224 for the built-module tests: a ViT's position embedding fixes its size, which a
# parameter sets; Swin's windows tile its grids at 224 (and 448, ...) only, Swin V2's at 256 (and 512, ...), and
# MaxViT's partitions of 7x7 its grids at 224 (and 448, ...).
SMALL = {"vit_b_32": {"image_size": 96}, "swin_t": {}, "swin_v2_t": {}, "maxvit_t": {}}
ATOL = 1e-4


def each(names, fast: set[str]) -> list:
    return [pytest.param(name, marks=() if name in fast else pytest.mark.slow) for name in names]


def archdsl_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archdsl.cli", *map(str, args)], cwd=cwd, check=False,
                          capture_output=True, text=True, timeout=120)


def assert_clean_failure(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.startswith("archdsl: error: ")
    return done.stderr


# Names and lookup: no torch.

def test_the_index_holds_every_builder_once_in_its_family_spec() -> None:
    index = zoo.index()
    assert sorted(index) == sorted(BUILDERS)
    assert {name: path.stem for name, path in index.items()} == {
        name: family for family, names in FAMILIES.items() for name in names}
    assert all(path.parent == zoo.ZOO for path in index.values())


@pytest.mark.parametrize("name", BUILDERS)
def test_every_builder_takes_3_channels_and_gives_1000_classes(name: str) -> None:
    net = archdsl.load(name)
    (channels, height, width), output = net.input_shape, net.output_shape
    assert (net.name, channels, height, output) == (name, 3, width, (1000,))


def test_a_name_loads_from_any_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    net = archdsl.load("resnet50", classes=10)
    assert (net.output_shape, net.source_path) == ((10,), str(zoo.ZOO / "resnet.arch"))


def test_an_existing_file_is_that_file_whatever_its_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "resnet18").write_text((SPECS / "resnet18.arch").read_text())
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "resnet.arch").write_text((SPECS / "lib" / "resnet.arch").read_text())
    assert archdsl.load("resnet18").params == archdsl.load(SPECS / "resnet18.arch").params == 11_178_378
    assert archdsl.load("resnet34").params == 21_797_672  # not a file here: the zoo's


def test_a_path_that_is_no_file_stays_a_missing_file(tmp_path: Path) -> None:
    for missing in (tmp_path / "resnet50", "specs/resnet50.arch", "resnet50.arch"):
        with pytest.raises(archdsl.ArchError, match="no such file"):
            archdsl.load(missing)


def test_an_unknown_name_is_one_error_with_the_closest_name() -> None:
    with pytest.raises(UsageError) as info:
        archdsl.load("resnet05")
    assert info.value.message == "'resnet05' is neither a file nor a network of the zoo"
    assert info.value.hint == "did you mean 'resnet50'? `archdsl zoo` lists them"
    with pytest.raises(UsageError) as info:
        archdsl.load("transformer")
    assert "archdsl zoo" in info.value.hint and "did you mean" not in info.value.hint


def test_a_name_chooses_its_network() -> None:
    assert archdsl.load("vgg16", network="vgg16").params == 138_357_544
    with pytest.raises(UsageError, match="--network vgg19 chooses among a spec file's networks"):
        archdsl.load("vgg16", network="vgg19")


@pytest.mark.parametrize("spec", [*(f"{family}.arch" for family in FAMILIES), "lib/transformer.arch"])
def test_the_family_specs_are_formatted(spec: str) -> None:
    from archdsl.formatter import format_source
    from archdsl.program import read_source

    source = read_source(zoo.ZOO / spec)
    assert format_source(source) == source.text, f"archdsl fmt --write archdsl/zoo/{spec}"


def test_the_worked_example_of_the_docs_is_se_resnet_50() -> None:
    # docs/zoo.md copies the ResNet family and adds squeeze-and-excitation: its two snippets, applied to the
    # zoo's spec, give SE-ResNet-50 with timm's seresnet50's parameter count, as the page says.
    page = (REPO / "docs" / "zoo.md").read_text()
    block, bottleneck = (re.search(f"<!-- se-example: {what} -->\n```\n(.*?)```", page, re.DOTALL).group(1)
                         for what in ("block", "bottleneck"))
    spec = (zoo.ZOO / "resnet.arch").read_text()
    original = re.search(r"^block bottleneck\(.*?\n    relu\n", spec, re.DOTALL | re.MULTILINE).group(0)
    net = archdsl.loads(spec.replace(original, block + "\n" + bottleneck), network="resnet50")
    assert (net.params, net.macs) == (28_088_024, 4_091_699_200)
    assert "28,088,024 parameters" in page and "4,091,699,200 MACs" in page


# The command line.

def test_every_command_that_takes_a_spec_takes_a_name(tmp_path: Path) -> None:
    done = archdsl_cli("compile", "resnet18", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (json.loads(done.stdout)["params"], json.loads(done.stdout)["network"]) == (11_689_512, "resnet18")
    done = archdsl_cli("check", "resnet50", "densenet121", cwd=tmp_path)
    assert done.returncode == 0 and "ok: resnet50 3x224x224 -> 1000" in done.stdout, done.stderr
    assert archdsl_cli("check", "--min-input", "vgg11", cwd=tmp_path).returncode == 0
    done = archdsl_cli("graph", "densenet121", "--depth", "2", "-o", "densenet121.dot", cwd=tmp_path)
    assert done.returncode == 0 and "transition" in (tmp_path / "densenet121.dot").read_text(), done.stderr
    done = archdsl_cli("export", "alexnet", "--to", "python", "-o", "alexnet.py", cwd=tmp_path)
    assert done.returncode == 0 and "class" in (tmp_path / "alexnet.py").read_text(), done.stderr
    done = archdsl_cli("compare", "resnet50", "resnext50_32x4d", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["a"]["params"] == 25_557_032
    done = archdsl_cli("fmt", "vgg16", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == (zoo.ZOO / "vgg.arch").read_text(), done.stderr


def test_a_name_on_the_command_line_is_an_error_in_the_commands_own_words(tmp_path: Path) -> None:
    stderr = assert_clean_failure(archdsl_cli("compile", "resnet05", cwd=tmp_path))
    assert "did you mean 'resnet50'?" in stderr
    stderr = assert_clean_failure(archdsl_cli("compile", "vgg16", "--network", "vgg19", cwd=tmp_path))
    assert "--network vgg19" in stderr
    stderr = assert_clean_failure(archdsl_cli("fmt", "--write", "vgg16", cwd=tmp_path))
    assert "archdsl fmt vgg16 > FILE.arch" in stderr
    assert_clean_failure(archdsl_cli("train", "resnet05", "--epochs", "1", cwd=tmp_path))


def test_zoo_lists_every_builder_with_its_costs(tmp_path: Path) -> None:
    done = archdsl_cli("zoo", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.split()}
    assert lines["resnet50"] == ["resnet50", "resnet.arch", "3x224x224", "25,557,032", "4,089,184,256"]
    assert set(BUILDERS) <= set(lines)
    data = json.loads(archdsl_cli("zoo", "--json", cwd=tmp_path).stdout)
    assert [entry["network"] for entry in data["networks"]] == list(zoo.index())
    assert data["networks"][0] == {"network": "alexnet", "family": "alexnet", "input": [3, 224, 224],
                                   "params": 61_100_840, "macs": 714_188_480}


# Against torchvision.

@pytest.mark.slow
def test_the_tables_of_the_docs_are_current(torchvision) -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    import zoo_table

    assert zoo_table.page(zoo_table.PAGE.read_text()) == zoo_table.PAGE.read_text(), "python scripts/zoo_table.py"


def test_the_zoo_names_only_torchvision_builders(torchvision) -> None:
    assert set(BUILDERS) <= set(torchvision.models.list_models(module=torchvision.models))


@pytest.mark.parametrize("name", BUILDERS)
def test_macs_within_one_percent_of_torchvision_gflops_at_its_crop_size(torchvision, name: str) -> None:
    # torchvision's "GFLOPS" are giga multiply-accumulates, given to three decimals: resnet50's 4.089 is archdsl's
    # 4,089,184,256 MACs, and shufflenet_v2_x0_5's 40,476,448 are 0.04 there (1.2% apart by the rounding alone).
    weights = torchvision.models.get_model_weights(name).DEFAULT
    net = archdsl.load(name, **AT_WEIGHTS.get(name, {}))
    documented = weights.meta["_ops"] * 1e9
    assert abs(net.macs - documented) <= max(0.01 * documented, 0.0005e9), (net.macs, weights.meta["_ops"])
    assert weights.transforms().crop_size == [net.input_shape[1]]
    if name not in DOCUMENTED_WITH_AUX:
        assert net.params == weights.meta["num_params"]


@pytest.mark.parametrize("name", each(BUILDERS, FAST))
def test_params_output_and_macs_equal_torchvision_model(torchvision, name: str) -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from torchvision_oracle import on_meta

    net = archdsl.load(name)
    model = on_meta(name)
    with torch.device("meta"), FlopCounterMode(display=False) as counter:
        output = model(torch.zeros(1, *net.input_shape))
    assert net.params == sum(p.numel() for p in model.parameters())
    assert tuple(output.shape[1:]) == net.output_shape == (1000,)
    assert 2 * net.macs == counter.get_total_flops()  # torch counts a multiply-accumulate as two operations


@pytest.mark.parametrize("name", each(sorted(COPIED_FAST | COPIED_SLOW), COPIED_FAST))
def test_same_function_as_torchvision_with_its_weights(torchvision, name: str) -> None:
    from archdsl.compare import against_reference

    # Tensors paired by shape in the order torchvision's forward uses them; the reference's batch-norm
    # statistics are random (torchvision_oracle.model). A pairing that fails is an error, not a skip.
    result = against_reference(archdsl.load(name), "torchvision_oracle:model", [TESTS], {"name": name},
                               load_weights=True)
    assert result["params"]["same"] and result["output"]["same"] and not result["differences"]
    assert result["outputs"]["max_abs_difference"] <= ATOL, result["outputs"]


@pytest.mark.parametrize("name", sorted(FAST))
def test_built_modules_trace_with_fx_and_run_channels_last(name: str) -> None:
    torch = pytest.importorskip("torch")
    # The adaptive pools take 96×96 and the weights are the same; a ViT is built for it.
    net = archdsl.load(name, **SMALL.get(name, {"input_shape": (3, 96, 96)}))
    module = net.build(seed=0).eval()
    x = torch.randn(2, *net.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = module(x)
        traced = torch.fx.symbolic_trace(module)
        assert torch.equal(traced(x), expected)
        module.to(memory_format=torch.channels_last)
        assert torch.allclose(module(x.to(memory_format=torch.channels_last)), expected, atol=ATOL)


@pytest.mark.slow
def test_a_built_module_compiles_with_torch_compile() -> None:
    torch = pytest.importorskip("torch")
    module = archdsl.load("resnet18", input_shape=(3, 32, 32)).build(seed=0).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(torch.compile(module)(x), module(x), atol=ATOL)


@pytest.mark.parametrize("name", each(FAMILIES["convnext"], {"convnext_tiny"}))
def test_convnext_is_torchvisions_function_through_a_key_map(torchvision, name: str) -> None:
    # ConvNeXt's tensors pair by order with two documented differences (torchvision_oracle.tensors_by_use): a
    # block's layer_scale comes after its layers, and its Linear weights [out, in] are 1x1 convolutions'
    # [out, in, 1, 1], the same numbers. Linear and a 1x1 convolution sum in different orders, hence allclose.
    import torch
    from torchvision_oracle import model, tensors_by_use

    reference = model(name)
    net = archdsl.load(name)
    ours = net.build().eval()
    theirs = tensors_by_use(reference)
    mine = list(ours.state_dict().items())
    assert len(mine) == len(theirs)
    state = {}
    for (key, target), (their_key, tensor) in zip(mine, theirs):
        assert tuple(target.shape) == (*tensor.shape, *[1] * (target.dim() - tensor.dim())), (key, their_key)
        state[key] = tensor.reshape(target.shape)
    ours.load_state_dict(state, strict=True)
    x = torch.randn(2, *net.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(ours(x), reference(x), atol=ATOL)


@pytest.mark.parametrize("name", ["convnext_tiny", "convnext_base", "efficientnet_b0", "efficientnet_b3",
                                  "efficientnet_v2_s"])
def test_stochastic_depth_rates_are_torchvisions(torchvision, name: str) -> None:
    """Each residual block drops its branch with torchvision's rate, which grows with the block's index across
    all stages (a prefix sum of the stages' block counts in the spec)."""
    import torch

    with torch.device("meta"):
        reference = torchvision.models.get_model(name)
    blocks = [m for m in reference.modules() if hasattr(m, "stochastic_depth")]
    expected = [m.stochastic_depth.p for m in blocks if getattr(m, "use_res_connect", True)]
    rates = [layer.args["p"] for layer in archdsl.load(name).layers() if layer.kind == "droppath"]
    assert rates == pytest.approx(expected, abs=1e-12) and len(rates) == len(expected) > 0


@pytest.mark.parametrize("name", FAMILIES["swin"] + FAMILIES["swin_v2"])
def test_swin_drops_both_branches_of_a_block_at_torchvisions_rate(torchvision, name: str) -> None:
    # A Swin block applies its one StochasticDepth to the attention's branch and the MLP's: two droppath layers.
    import torch

    with torch.device("meta"):
        reference = torchvision.models.get_model(name)
    blocks = ("SwinTransformerBlock", "SwinTransformerBlockV2")
    expected = [m.stochastic_depth.p for m in reference.modules() if type(m).__name__ in blocks]
    rates = [layer.args["p"] for layer in archdsl.load(name).layers() if layer.kind == "droppath"]
    assert rates == pytest.approx([p for p in expected for _ in range(2)], abs=1e-12) and rates[-1] > 0


def test_maxvit_drops_its_layers_branches_at_torchvisions_rate(torchvision) -> None:
    # A MaxViT layer drops its MBConv's branch and the attention's and the MLP's branches of its two partition
    # layers (each applies its one StochasticDepth twice) at one rate: five droppath layers; torchvision's MBConv
    # holds an Identity where the rate is 0.
    import torch

    with torch.device("meta"):
        reference = torchvision.models.get_model("maxvit_t")
    expected = [layer.layers.window_attention.stochastic_dropout.p for layer in reference.modules()
                if type(layer).__name__ == "MaxVitLayer"]
    rates = [layer.args["p"] for layer in archdsl.load("maxvit_t").layers() if layer.kind == "droppath"]
    assert rates == pytest.approx([p for p in expected for _ in range(5)], abs=1e-12) and rates[-1] == 0.2


def test_maxvit_is_torchvisions_function_in_the_order_of_its_state(torchvision) -> None:
    # torchvision's attention uses its to_qkv projection before its own bias table, so the pairing by order of use
    # (test_same_function_as_torchvision_with_its_weights) would want the table after the projection; archdsl's
    # PartitionAttention holds the table first, as torchvision's state_dict does, and so does every other tensor:
    # the two states pair one to one, in order and by shape.
    import torch
    from torchvision_oracle import model

    reference = model("maxvit_t")
    net = archdsl.load("maxvit_t")
    ours = net.build().eval()
    mine, theirs = list(ours.state_dict().items()), list(reference.state_dict().items())
    assert [tuple(t.shape) for _, t in mine] == [tuple(t.shape) for _, t in theirs]
    ours.load_state_dict({key: tensor for (key, _), (_, tensor) in zip(mine, theirs)}, strict=True)
    x = torch.randn(2, *net.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(ours(x), reference(x), atol=ATOL)
