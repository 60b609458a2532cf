"""``archdsl compare`` (archdsl/compare.py): networks side by side, and a spec against a Python model.

The costs per family are held to the torch modules archdsl builds, classified here by their torch
class (not by the registry) with parameters counted by torch and MACs measured by forward hooks on
the meta device. The reference comparison is held to the hand-written d2l models of
tests/references.py, which test_references.py checks against published numbers.

Rewrite the text golden in tests/cases/compare/ with ``EXPECTTEST_ACCEPT=1 pytest tests/test_compare.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import CASES, REPO, SPECS
from hypothesis import given
from hypothesis import strategies as st
from references import REFERENCES
from strategies import is_attention, leaf_macs
from torch import nn
from click.testing import CliRunner

import archdsl
from archdsl.cli import app
from archdsl.compare import map_tensors

NAMES = sorted(REFERENCES)
PACKED = {"d2l_vit"}  # the book's attention projects queries, keys and values with three Linear layers

# Families by torch class: written from the torch side, independently of the registry's ``family``.
TORCH_FAMILY = {
    nn.Conv2d: "convolution", nn.Linear: "linear", nn.BatchNorm1d: "normalisation", nn.BatchNorm2d: "normalisation",
    nn.LocalResponseNorm: "normalisation", nn.MaxPool2d: "pooling", nn.AvgPool2d: "pooling",
    nn.AdaptiveAvgPool2d: "pooling", nn.Flatten: "reshape", nn.Dropout: "regularisation", nn.Identity: "identity",
    nn.ReLU: "activation", nn.Sigmoid: "activation", nn.Tanh: "activation", nn.GELU: "activation",
    nn.LeakyReLU: "activation", nn.Softmax: "activation", nn.LayerNorm: "normalisation",
    nn.MultiheadAttention: "attention",
}  # fmt: skip
# archdsl's own modules, by their class names (tokens and their embeddings).
ARCHDSL_FAMILY = {"ToTokens": "reshape", "TakeToken": "reshape", "ClassToken": "embedding",
                  "PositionEmbedding": "embedding"}


def torch_family(module: nn.Module) -> str | None:
    """The family of a torch module: its class's or a base class's (archdsl's SelfAttention is a
    MultiheadAttention)."""
    for cls in type(module).__mro__:
        if cls in TORCH_FAMILY:
            return TORCH_FAMILY[cls]
    return ARCHDSL_FAMILY.get(type(module).__name__)


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def run_json(*args: str) -> dict:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def measured_families(net: archdsl.CompiledNetwork) -> dict[str, dict[str, int]]:
    """Layers, parameters and MACs per family of the built module, measured by torch on the meta device."""
    with torch.device("meta"):
        module = net.build().eval()
    found: dict[str, dict[str, int]] = {}
    hooks = []
    for sub in module.modules():
        if (list(sub.children()) and not is_attention(sub)) or torch_family(sub) is None:
            continue

        def hook(m, args, out):
            costs = found.setdefault(torch_family(m), {"layers": 0, "params": 0, "macs": 0})
            costs["layers"] += 1
            costs["params"] += sum(p.numel() for p in m.parameters())
            costs["macs"] += leaf_macs(m, out, args)

        hooks.append(sub.register_forward_hook(hook))
    module(torch.empty(1, *net.input_shape, device="meta"))
    for h in hooks:
        h.remove()
    return found


# -- side by side ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_costs_per_family_are_what_torch_measures(name: str) -> None:
    net = archdsl.load(SPECS / f"{name}.arch")
    data = run_json("compare", str(SPECS / f"{name}.arch"), "--param-b", "classes=7")
    assert {row["family"]: row["a"] for row in data["families"]} == measured_families(net)
    assert data["total"]["a"]["params"] == sum(p.numel() for p in REFERENCES[name][0]().parameters())


def test_alexnet_against_vgg11_answers_the_book_question() -> None:
    # d2l 8.2's exercise: VGG-11 has far more parameters than AlexNet, and nearly all its MACs
    # are in the convolutions while nearly all its parameters are in the fully connected layers.
    a, b = (archdsl.load(SPECS / f"{n}.arch") for n in ("alexnet", "vgg11"))
    data = run_json("compare", str(SPECS / "alexnet.arch"), str(SPECS / "vgg11.arch"))
    fa, fb = measured_families(a), measured_families(b)
    rows = {row["family"]: row for row in data["families"]}
    for family in ("convolution", "linear"):
        assert rows[family]["ratio"]["params"] == fb[family]["params"] / fa[family]["params"]
        assert rows[family]["ratio"]["macs"] == fb[family]["macs"] / fa[family]["macs"]
    assert data["total"]["ratio"] == {"params": b.params / a.params, "macs": b.macs / a.macs}
    assert fb["linear"]["params"] / b.params > 0.9 and fb["convolution"]["macs"] / b.macs > 0.98
    assert data["a"]["label"] == "alexnet(in_channels=1, classes=10) : 1x224x224 -> 10"


def test_one_spec_at_two_settings() -> None:
    data = run_json("compare", str(SPECS / "vgg11.arch"), "--param-b", "ratio=4", "--param", "classes=100")
    assert data["a"]["parameters"] == {"in_channels": 1, "classes": 100, "ratio": 1}
    assert data["b"]["parameters"] == {"in_channels": 1, "classes": 100, "ratio": 4}
    b = archdsl.load(SPECS / "vgg11.arch", ratio=4, classes=100)
    assert {row["family"]: row["b"] for row in data["families"]} == measured_families(b)


def test_inputs_of_each_side() -> None:
    data = run_json("compare", str(SPECS / "nin.arch"), "--input-b", "1x96x96")
    assert data["a"]["input"] == [1, 224, 224] and data["b"]["input"] == [1, 96, 96]
    assert data["families"][0]["ratio"]["params"] == 1.0  # NiN has no linear layer: sizes leave weights alone


def test_side_by_side_text(golden) -> None:
    result = run("compare", "specs/alexnet.arch", "specs/vgg11.arch")
    assert result.exit_code == 0, result.output
    golden(CASES / "compare" / "alexnet-vgg11.txt", result.output)


# -- against a reference --------------------------------------------------------------------------


def against(name: str, *args: str, spec: str | None = None) -> dict:
    return run_json("compare", spec or str(SPECS / f"{name}.arch"), "--reference", f"references:{name}",
                    "--reference-path", str(REPO / "tests"), *args)


@pytest.mark.parametrize("name", NAMES)
def test_every_spec_matches_its_reference(name: str) -> None:
    data = against(name)
    reference = REFERENCES[name][0]()
    assert data["params"] == {"spec": archdsl.load(SPECS / f"{name}.arch").params,
                              "reference": sum(p.numel() for p in reference.parameters()), "same": True}
    assert data["output"]["same"] and data["output"]["reference"] == [10]
    if name in PACKED:
        # nn.MultiheadAttention packs the query, key and value projections in one in_proj_weight [3D, D]: where the
        # book's W_q [D, D] is, the shapes differ, and its W_k and W_v are left over. Nothing else differs.
        packed = [d["spec"] for d in data["differences"] if d["status"] == "shape differs"]
        assert packed and all(key.endswith("attention_0.in_proj_weight") for key in packed)
        assert sorted(d["reference"].rsplit(".", 2)[-2] for d in data["differences"]) == \
            sorted(["W_q", "W_k", "W_v"] * len(packed))
    else:
        assert data["differences"] == []
    assert [m["reference"] for m in data["mapping"]] == list(reference.state_dict())


@pytest.mark.parametrize("name", ["lenet", "resnet18", "densenet"])
def test_load_weights_gives_the_reference_outputs(name: str) -> None:
    outputs = against(name, "--load-weights")["outputs"]
    assert outputs["equal"] and outputs["max_abs_difference"] == 0.0


def against_module(tmp_path: Path, spec: str, module: str, source: str, factory: str, *args: str) -> dict:
    """``compare SPEC --reference MODULE:FACTORY`` with the module's source written to ``tmp_path``."""
    (tmp_path / f"{module}.py").write_text(source, encoding="utf-8")
    return run_json("compare", str(SPECS / f"{spec}.arch"), "--reference", f"{module}:{factory}", *args,
                    "--reference-path", str(tmp_path), "--reference-path", str(REPO / "tests"))


def test_a_missing_tensor_is_one_difference(tmp_path: Path) -> None:
    data = against_module(tmp_path, "lenet", "mymodels",
                          "from torch import nn\n"
                          "from references import lenet\n\n"
                          "def unbiased():\n"
                          "    model = lenet()\n"
                          "    model[0] = nn.Conv2d(1, 6, 5, padding=2, bias=False)\n"
                          "    return model\n", "unbiased")
    assert data["differences"] == [{"spec": "conv_0.bias", "spec_shape": [6], "reference": None,
                                    "reference_shape": None, "status": "only in the spec"}]
    assert data["params"] == {"spec": 61_706, "reference": 61_700, "same": False}
    assert len(data["mapping"]) == 10  # every other tensor still paired


def test_shapes_that_differ_are_listed_and_refuse_loading() -> None:
    data = against("lenet", "--reference-arg", "classes=7")
    assert [(d["spec"], d["reference"], d["status"]) for d in data["differences"]] == [
        ("linear_2.weight", "11.weight", "shape differs"), ("linear_2.bias", "11.bias", "shape differs")]  # 12th module
    result = run("compare", str(SPECS / "lenet.arch"), "--reference", "references:lenet", "--reference-path",
                 str(REPO / "tests"), "--reference-arg", "classes=7", "--load-weights")
    assert result.exit_code == 1
    assert result.output == (
        "archdsl: error: cannot copy the reference's weights: shape differs at linear_2.weight "
        "(10x84 in the spec, 7x84 in the reference)\n"
        "  hint: every tensor must match by shape and order; see the mapping without --load-weights\n")


def test_reference_text(in_repo) -> None:
    result = run("compare", "specs/lenet.arch", "--reference", "references:lenet", "--reference-path", "tests",
                 "--load-weights")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:2] == ["spec       lenet(in_channels=1, classes=10) : 1x28x28 -> 10", "reference  references:lenet()"]
    assert ["conv_0.weight", "6x1x5x5", "0.weight", "6x1x5x5"] in [line.split() for line in lines]
    assert ["parameters", "61,706", "61,706", "same"] in [line.split() for line in lines]
    assert lines[-2:] == [
        "differences: none",
        "outputs with the reference's weights copied in (a batch of 2): max |difference| 0, equal",
    ]


@pytest.mark.parametrize(("args", "message"), [
    (["--reference", "nosuchmodule:f"],
     "archdsl: error: no module named 'nosuchmodule'\n  hint: pass the folder that holds it with --reference-path DIR\n"),
    (["--reference", "references:lenett", "--reference-path", "tests"],
     "archdsl: error: references has no 'lenett'\n  hint: did you mean 'lenet'?\n"),
    (["--reference", "references"],
     ("archdsl: error: --reference takes MODULE:FACTORY, not 'references'\n"
      "  hint: for example --reference torchvision.models:vgg11 or --reference mymodels:Net\n")),
    (["--reference", "references:REFERENCES", "--reference-path", "tests"],
     "archdsl: error: references:REFERENCES is a dict, not a model class or factory\n"),
    (["--reference", "references:lenet", "--reference-path", "tests", "--reference-arg", "clases=7"],
     "archdsl: error: references:lenet(clases=7) failed: TypeError: lenet() got an unexpected keyword argument 'clases'\n"),
    (["specs/alexnet.arch", "--reference", "references:lenet"],
     ("archdsl: error: --reference compares one spec with a Python model; it takes no OTHER, --param-a/-b or "
      "--input-a/-b\n  hint: use --param and --input to set the spec\n")),
    (["--load-weights"], "archdsl: error: --load-weights, --reference-path and --reference-arg go with --reference\n"),
    ([], ("archdsl: error: compare needs a second spec, or --param-b / --input-b to compare SPEC with itself\n"
          "  hint: for example: archdsl compare specs/vgg11.arch --param-b ratio=4\n")),
])  # fmt: skip
def test_mistakes_are_one_clear_error(args: list[str], message: str, in_repo) -> None:
    result = run("compare", "specs/lenet.arch", *args)
    assert result.exit_code == 1
    assert result.output == message


def test_a_reference_that_refuses_the_input_is_reported(in_repo) -> None:
    result = run("compare", "specs/lenet.arch", "--reference", "references:alexnet", "--reference-path", "tests")
    assert result.exit_code == 1
    first, hint = result.output.splitlines()
    assert first.startswith("archdsl: error: the reference fails on a 1x1x28x28 input: RuntimeError: ")
    assert hint == "  hint: make both take the same input: --param or --input for the spec, --reference-arg for the reference"


def test_a_module_that_fails_to_import_is_reported(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import torch\nraise ValueError('half written')\n", encoding="utf-8")
    result = run("compare", str(SPECS / "lenet.arch"), "--reference", "broken:net", "--reference-path", str(tmp_path))
    assert result.exit_code == 1
    assert result.output == "archdsl: error: importing broken failed: ValueError: half written\n"


shapes = st.lists(st.sampled_from([(1,), (2,), (3,), (2, 2)]), max_size=8)


@given(shapes, shapes)
def test_the_mapping_keeps_both_sides_in_order(ours: list, theirs: list) -> None:
    left = [(f"a{i}", s) for i, s in enumerate(ours)]
    right = [(f"b{i}", s) for i, s in enumerate(theirs)]
    entries = map_tensors(left, right)
    assert [(e.ours, e.our_shape) for e in entries if e.ours is not None] == left
    assert [(e.theirs, e.their_shape) for e in entries if e.theirs is not None] == right
    if ours == theirs:
        assert all(e.status == "same shape" for e in entries) and len(entries) == len(left)


BOOK_RESIDUAL = '''
import torch
from torch import nn
from torch.nn import functional as F
import references


class Residual(nn.Module):
    """Dive into Deep Learning's own Residual: its modules registered conv1, conv2, conv3, bn1, bn2."""

    def __init__(self, input_channels, num_channels, use_1x1conv=False, strides=1):
        super().__init__()
        self.conv1 = nn.Conv2d(input_channels, num_channels, kernel_size=3, padding=1, stride=strides)
        self.conv2 = nn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(input_channels, num_channels, kernel_size=1, stride=strides) if use_1x1conv else None
        self.bn1 = nn.BatchNorm2d(num_channels)
        self.bn2 = nn.BatchNorm2d(num_channels)

    def forward(self, X):
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3:
            X = self.conv3(X)
        Y += X
        return F.relu(Y)


def resnet18():
    references.Residual = Residual  # the book's block, in the reference's otherwise identical network
    try:
        return references.resnet18()
    finally:
        references.Residual = REFERENCE_RESIDUAL


REFERENCE_RESIDUAL = references.Residual
'''


def test_tensors_pair_in_the_order_the_forward_uses_them(tmp_path: Path) -> None:
    """The book's ResNet registers conv1, conv2, conv3, bn1, bn2: paired by registration, 180 false differences."""
    data = against_module(tmp_path, "resnet18", "book", BOOK_RESIDUAL, "resnet18", "--load-weights")
    assert data["differences"] == [] and data["unused"] == []
    assert data["outputs"]["equal"]
    first = [m["reference"] for m in data["mapping"] if m["reference"].startswith("2.0.")]
    assert first[:6] == ["2.0.conv1.weight", "2.0.conv1.bias", "2.0.bn1.weight", "2.0.bn1.bias",
                         "2.0.bn1.running_mean", "2.0.bn1.running_var"]


def test_tensors_of_modules_never_called_come_last(tmp_path: Path) -> None:
    data = against_module(tmp_path, "lenet", "spare",
                          "from torch import nn\nfrom references import lenet\n\n"
                          "def spare():\n"
                          "    model = nn.Sequential()\n"
                          "    model.spare = nn.Linear(3, 3)\n"
                          "    model.net = lenet()\n"
                          "    model.forward = model.net.forward\n"
                          "    return model\n", "spare")
    assert data["unused"] == ["spare.weight", "spare.bias"]
    assert [m["reference"] for m in data["mapping"]][-2:] == ["spare.weight", "spare.bias"]
    assert data["differences"] == [{"spec": None, "spec_shape": None, "reference": name, "reference_shape": shape,
                                    "status": "only in the reference"}
                                   for name, shape in (("spare.weight", [3, 3]), ("spare.bias", [3]))]
