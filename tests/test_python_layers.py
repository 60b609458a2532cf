"""The Python export of the layer kinds (archdsl/export/python_layers.py): each new kind and option as a
PyTorch user writes it, archdsl's own modules defined in the file that uses them, and windows per axis and
ceil_mode in the sizes the generated classes compute.

The oracle is archdsl's built module: the generated class loads its state_dict strictly and gives its outputs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from strategies import randomise_normalisation
from test_export import import_source
from test_torch_modules import EVERY_NEW

import archdsl
from archdsl.export.python import network_class_name, python_source
from archdsl.export.python_layers import HELPERS


def reproduces(net: archdsl.CompiledNetwork, generated: torch.nn.Module, training: bool = False) -> None:
    """``generated`` takes the built module's weights strictly and gives its outputs (seeded in training)."""
    ours = net.build(seed=0)
    randomise_normalisation(ours, torch.Generator().manual_seed(0))
    generated.load_state_dict(ours.state_dict(), strict=True)
    ours.train(training)
    generated.train(training)
    x = torch.randn(2, *net.input_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.manual_seed(3)
        expected = ours(x)
        torch.manual_seed(3)
        assert torch.equal(generated(x), expected)
    assert tuple(generated.out_shape) == net.output_shape


def test_every_new_kind_is_written_as_a_pytorch_user_writes_it() -> None:
    source = python_source(archdsl.loads(EVERY_NEW))
    for line in [
        "self.conv_0 = nn.Conv2d(8, 16, (1, 7), padding=(0, 3))",
        "self.conv_1 = nn.Conv2d(16, 16, (7, 1), stride=(2, 1), padding=(3, 0))",
        "self.conv_2 = nn.Conv2d(16, 16, (3, 1), padding=(1, 0), dilation=(2, 1))",
        "self.gn_0 = nn.GroupNorm(4, 16)",
        "self.ln_0 = LayerNorm2d(16, eps=1e-06)",
        "self.bn_0 = nn.BatchNorm2d(16, affine=False)",
        "self.scale_0 = Scale((16, 1, 1))",
        "self.droppath_0 = DropPath(0.2)",
        "self.shuffle_0 = ChannelShuffle(4)",
        "self.relu6_0 = nn.ReLU6()", "self.silu_0 = nn.SiLU()", "self.silu_1 = nn.SiLU()",
        "self.hardswish_0 = nn.Hardswish()", "self.hardsigmoid_0 = nn.Hardsigmoid()", "self.elu_0 = nn.ELU(alpha=0.5)",
        "self.selu_0 = nn.SELU()", "self.mish_0 = nn.Mish()", 'self.gelu_0 = nn.GELU(approximate="tanh")',
        "b0.maxpool_0 = nn.MaxPool2d(3, stride=2, ceil_mode=True)",
        "b1.avgpool_0 = nn.AvgPool2d(3, stride=2, ceil_mode=True, count_include_pad=False)",
        "self.avgpool_0 = nn.AvgPool2d((2, 3), stride=(1, 2), padding=(1, 1))",
        "b1.adaptivemaxpool_0 = nn.AdaptiveMaxPool2d(1)",
        "self.ln_1 = nn.LayerNorm(48)",
        "self.scale_1 = Scale((48,), init=0.5)",
    ]:  # fmt: skip
        assert line in source, line


@pytest.mark.parametrize("training", [False, True])
def test_every_new_kind_exports_to_a_standalone_file_that_reproduces_it(tmp_path: Path, training: bool) -> None:
    net = archdsl.loads(EVERY_NEW)
    source = python_source(net)
    tree = ast.parse(source)
    imports = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imports |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imports == {"torch"}  # standalone: archdsl's modules are defined in the file
    classes = [node.name for node in tree.body if isinstance(node, ast.ClassDef)]
    assert [name for name in classes if name in HELPERS] == ["LayerNorm2d", "Scale", "DropPath", "ChannelShuffle"]
    module = import_source(source, tmp_path)
    reproduces(net, getattr(module, network_class_name(net))(), training)


def test_only_the_modules_a_network_uses_are_defined() -> None:
    source = python_source(archdsl.loads("network n : [4, 6, 6] = ln; shuffle 2; gn 2; flatten; linear 3"))
    assert "class LayerNorm2d(nn.LayerNorm):" in source and "class ChannelShuffle(nn.Module):" in source
    assert "class Scale" not in source and "class DropPath" not in source
    plain = python_source(archdsl.loads("network n : [4, 6, 6] = ln; shuffle 2; gap; flatten; ln; linear 3"))
    assert "nn.LayerNorm(4)" in plain
    vector_only = python_source(archdsl.loads("network n : [12] = ln; linear 3"))
    assert "class " not in vector_only.replace("class N(", "") and "import torch\n" not in vector_only


SIZED = """
block stage(c, ceil) = conv c k=(3, 5) s=(2, 1) p=(1, 2); maxpool 3 s=2 ceil=ceil; avgpool (2, 3) s=(1, 2) p=(1, 1) ceil=true
network g(ceil = true) : [3, H, W] = stage(4, ceil); conv1x7 6; gmp; flatten; linear 5
"""


@pytest.mark.parametrize("ceil", [True, False, 1])
def test_windows_per_axis_and_ceil_mode_size_the_generated_classes(tmp_path: Path, ceil) -> None:
    """The classes compute the sizes themselves (the input's are keyword arguments), ceil_mode taken from a
    parameter included: at each input size they agree with archdsl's."""
    source = python_source(archdsl.loads(SIZED))
    module = import_source(source, tmp_path)
    for h, w in [(12, 12), (13, 17), (9, 24), (15, 10)]:
        net = archdsl.loads(SIZED, input_shape=(3, h, w), ceil=ceil)
        generated = module.G(ceil=ceil, H=h, W=w)
        stage = next(node for node in net.ir.body if node.name == "stage_0")
        assert tuple(generated.stage_0.out_shape) == stage.out_shape
        reproduces(net, generated)


TOKEN_BLOCKS = """
block swin(heads, shift) =
    add [ ln; windowattention heads=heads window=4 shift=shift; droppath 0.1 | id ];
    add [ ln; linear 2 * in.c; gelu; linear in.c | id ]
block encoder(heads) = add [ ln; attention heads=heads dropout=0.1 | id ]; add [ ln; linear in.c; gelu | id ]
network tokens_net(heads = 2) : [8, 16, 16] =
    conv 16 k=2 s=2; tokens; swin(heads, 0); swin(heads, 2); patchmerge; ln; linear 32 bias=false;
    clstoken; posembed 17 std=1; encoder(heads * 2); softmax; token 0; linear 10
"""


@pytest.mark.parametrize("training", [False, True])
def test_the_token_kinds_export_to_a_standalone_file_that_reproduces_them(tmp_path: Path, training: bool) -> None:
    # Blocks on tokens on a grid and on a plain sequence: in.c is the tokens' features; each kind is written as
    # archdsl's module, defined in the file.
    net = archdsl.loads(TOKEN_BLOCKS)
    source = python_source(net)
    for line in [
        "self.tokens_0 = ToTokens()",
        "b0.windowattention_0 = WindowAttention(features, heads, 4, shift, (height, width))",
        "b0.linear_0 = nn.Linear(features, 2 * in_shape[2])",  # in.c of tokens on a grid: their features
        "self.patchmerge_0 = PatchMerge(height % 2, width % 2)",
        "self.clstoken_0 = ClassToken(32)",
        "self.posembed_0 = PositionEmbedding(((height + 1) // 2 * ((width + 1) // 2) + 1, 32), std=1.0)",
        "self.encoder_0 = Encoder(heads * 2, in_shape=((height + 1) // 2 * ((width + 1) // 2) + 1, 32))",
        "b0.attention_0 = SelfAttention(features, heads, dropout=0.1)",
        "self.softmax_0 = nn.Softmax(dim=-1)",
        "self.token_0 = TakeToken(0)",
    ]:  # fmt: skip
        assert line in source, line
    classes = [node.name for node in ast.parse(source).body if isinstance(node, ast.ClassDef)]
    assert [name for name in classes if name in HELPERS] == [
        "DropPath", "ToTokens", "TakeToken", "ClassToken", "PositionEmbedding", "SelfAttention", "WindowAttention",
        "PatchMerge"]
    module = import_source(source, tmp_path)
    reproduces(net, getattr(module, network_class_name(net))(), training)


@pytest.mark.parametrize(("layers", "line", "derived"), [
    # Swin V2's: WindowAttention with cosine attention and a continuous position bias.
    ("windowattention2 heads=4 window=4 shift=2", "self.windowattention2_0 = WindowAttention2(16, 4, 4, 2, (8, 8))",
     "WindowAttention2"),
    # MaxViT's: WindowAttention in its partitions, block attention and grid attention.
    ("partitionattention heads=4 partition=4; partitionattention heads=2 partition=(2, 4) grid=true",
     "self.partitionattention_1 = PartitionAttention(16, 2, (2, 4), True, (8, 8))", "PartitionAttention"),
])
def test_an_attention_is_defined_with_the_class_it_derives_from(tmp_path: Path, layers: str, line: str,
                                                                 derived: str) -> None:
    # The file defines both classes, the base first, and reproduces the built module.
    net = archdsl.loads(f"network n : [8, 16, 16] =\n    conv 16 k=2 s=2; tokens; {layers}; untokens\n")
    source = python_source(net)
    assert line in source
    classes = [node.name for node in ast.parse(source).body if isinstance(node, ast.ClassDef)]
    assert [name for name in classes if name in HELPERS] == ["ToTokens", "ToImage", "WindowAttention", derived]
    module = import_source(source, tmp_path)
    reproduces(net, getattr(module, network_class_name(net))())


@pytest.mark.parametrize("text", ["network n : [2, 3, 3] = tokens; untokens 3", "network n : [9, 4] = untokens 3"])
def test_untokens_with_one_size_is_a_square(tmp_path: Path, text: str) -> None:
    net = archdsl.loads(text + "\n")
    source = python_source(net)
    assert "ToImage(3, 3, " in source
    reproduces(net, getattr(import_source(source, tmp_path), network_class_name(net))())
