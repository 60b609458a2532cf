"""archdsl/torch_modules.py and the layer kinds new with the modern CNNs, against torchvision's and torch's own.

The oracle is torchvision (tests/torchvision_oracle.py), where the kind comes from a torchvision model:
``ln`` is ConvNeXt's LayerNorm2d, ``droppath`` torchvision.ops.StochasticDepth (in eval mode and, with a
fixed seed, in training), ``shuffle`` ShuffleNetV2's channel_shuffle, ``scale`` ConvNeXt's layer_scale (a
whole ConvNeXt block, torchvision's CNBlock, is compared with its spec). The rest are torch modules. Then
one network holding every new kind and option goes through torch.fx, TorchScript, channels-last modules and
tensors, ONNX (onnxruntime) and (marked slow) torch.compile to the same outputs.

The token layers likewise: ``windowattention`` is torchvision's ShiftedWindowAttention (Swin), ``windowattention2``
its ShiftedWindowAttentionV2 (Swin V2), ``partitionattention`` MaxViT's attention in its partitions, ``patchmerge``
its patch merging, ``tokens`` its ViT's patch flattening, ``attention`` nn.MultiheadAttention; a network of every
token kind goes through torch.fx, TorchScript and ONNX.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from strategies import randomise_normalisation
from torch import nn

import archdsl
from archdsl import torch_modules
from archdsl.layers import REGISTRY


@pytest.fixture(scope="module")
def torchvision():
    """torchvision with its set-up for a CPU-only torch, or a skip naming the package to install."""
    import torchvision_oracle

    if not torchvision_oracle.available():
        pytest.skip(f"torchvision is not installed: {torchvision_oracle.INSTALL_HINT}")
    return torchvision_oracle.import_torchvision()


def built(text: str, seed: int = 0) -> nn.Module:
    """The network of ``text`` with random factors in its normalisations and scales."""
    module = archdsl.loads(text).build(seed=seed)
    randomise_normalisation(module, torch.Generator().manual_seed(seed))
    return module


def copy_by_order(source: nn.Module, target: nn.Module, source_order: list[str] | None = None) -> None:
    """Tensors paired by position (``source_order``: the source's keys in the order the forward pass uses
    them, where registration differs), each the other's shape up to 1-sized axes (a conv1x1's weight and a
    Linear's)."""
    mine, theirs = source.state_dict(), target.state_dict()
    if source_order is not None:
        assert sorted(source_order) == sorted(mine)
        mine = {key: mine[key] for key in source_order}
    assert len(mine) == len(theirs), (list(mine), list(theirs))
    pairs = {}
    for (key, value), (their_key, their_value) in zip(mine.items(), theirs.items()):
        assert value.squeeze().shape == their_value.squeeze().shape, (key, their_key)
        pairs[their_key] = value.reshape(their_value.shape)
    target.load_state_dict(pairs)


def images(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# -- each kind against torchvision ---------------------------------------------------------------------


@pytest.mark.parametrize("eps", [1e-5, 1e-6])
def test_ln_on_an_image_is_convnexts_layernorm2d(torchvision, eps: float) -> None:
    ours = built(f"network n : [8, 5, 6] = ln eps={eps}").eval()
    theirs = torchvision.models.convnext.LayerNorm2d(8, eps=eps).eval()
    assert [tuple(p.shape) for p in ours.parameters()] == [(8,), (8,)]
    copy_by_order(ours, theirs)
    x = images(3, 8, 5, 6)
    assert torch.equal(ours(x), theirs(x))


def test_ln_on_a_vector_is_layernorm_over_its_features() -> None:
    ours = built("network n : [12] = ln affine=false").eval()
    assert isinstance(ours.ln_0, nn.LayerNorm) and not list(ours.parameters())
    x = images(3, 12)
    assert torch.equal(ours(x), nn.functional.layer_norm(x, (12,)))


@pytest.mark.parametrize("shape", [(6, 4, 5), (10,)])
@pytest.mark.parametrize("p", [0.0, 0.2, 0.5])
def test_droppath_is_torchvisions_stochastic_depth(torchvision, shape: tuple, p: float) -> None:
    ours = built(f"network n : [{', '.join(map(str, shape))}] = droppath {p}")
    theirs = torchvision.ops.StochasticDepth(p, "row")
    x = images(16, *shape)
    assert torch.equal(ours.eval()(x), theirs.eval()(x)) and torch.equal(ours(x), x)
    ours.train()
    theirs.train()
    for seed in range(3):
        torch.manual_seed(seed)
        expected = theirs(x)
        torch.manual_seed(seed)
        assert torch.equal(ours(x), expected)
    if p:
        dropped = (ours(x) == 0).flatten(1).all(1)
        assert dropped.any() and not dropped.all()  # whole samples, some of them


@pytest.mark.parametrize(("channels", "groups"), [(6, 2), (6, 3), (12, 4), (5, 1)])
def test_shuffle_is_shufflenets_channel_shuffle(torchvision, channels: int, groups: int) -> None:
    ours = built(f"network n : [{channels}, 3, 4] = shuffle {groups}").eval()
    x = images(2, channels, 3, 4)
    assert torch.equal(ours(x), torchvision.models.shufflenetv2.channel_shuffle(x, groups))


CONVNEXT_BLOCK = """
block cnblock(p = 0.0) = add [ conv7x7 in.c groups=in.c; ln eps=1e-6; conv1x1 4 * in.c; gelu; conv1x1 in.c; scale;
                               droppath p | id ]
network n(p = 0.0) : [16, 7, 7] = cnblock(p)
"""


@pytest.mark.parametrize("p", [0.0, 0.5])
def test_a_convnext_block_is_torchvisions_cnblock(torchvision, p: float) -> None:
    theirs = torchvision.models.convnext.CNBlock(16, layer_scale=1e-6, stochastic_depth_prob=p)
    net = archdsl.loads(CONVNEXT_BLOCK, p=p)
    ours = net.build(seed=0)
    assert net.params == sum(t.numel() for t in theirs.parameters())
    assert tuple(ours.cnblock_0.add_0.b0.scale_0.weight.shape) == tuple(theirs.layer_scale.shape) == (16, 1, 1)
    with torch.no_grad():
        for tensor in theirs.parameters():
            tensor.normal_(0, 0.5)  # a layer scale of 1e-6 would hide the branch
    # CNBlock registers layer_scale before the block that it scales.
    order = [key for key in theirs.state_dict() if key != "layer_scale"] + ["layer_scale"]
    copy_by_order(theirs, ours, order)
    x = images(4, 16, 7, 7)
    with torch.no_grad():
        assert torch.allclose(ours.eval()(x), theirs.eval()(x), atol=1e-5)
        torch.manual_seed(1)
        expected = theirs.train()(x)
        torch.manual_seed(1)
        assert torch.allclose(ours.train()(x), expected, atol=1e-5)


def test_scale_starts_at_init_with_one_factor_per_channel() -> None:
    image = archdsl.loads("network n : [5, 3, 3] = scale 0.25").build()
    vector = archdsl.loads("network n : [7] = scale").build()
    assert torch.equal(image.scale_0.weight, torch.full((5, 1, 1), 0.25))
    assert torch.equal(vector.scale_0.weight, torch.full((7,), 1e-6))
    x = images(2, 5, 3, 3)
    assert torch.equal(image(x), 0.25 * x)


# -- each kind against torch -------------------------------------------------------------------------

ACTIVATIONS = [
    ("relu6", nn.ReLU6()), ("silu", nn.SiLU()), ("swish", nn.SiLU()), ("hardswish", nn.Hardswish()),
    ("hardsigmoid", nn.Hardsigmoid()), ("elu", nn.ELU()), ("elu 0.5", nn.ELU(0.5)), ("elu alpha=2", nn.ELU(2.0)),
    ("selu", nn.SELU()), ("mish", nn.Mish()), ("gelu", nn.GELU()), ("gelu approximate=true", nn.GELU("tanh")),
]  # fmt: skip


@pytest.mark.parametrize(("layer", "module"), ACTIVATIONS, ids=[a for a, _ in ACTIVATIONS])
def test_activations_are_torchs(layer: str, module: nn.Module) -> None:
    ours = archdsl.loads(f"network n : [3, 4, 4] = {layer}").build()
    (sub,) = ours.children()
    assert type(sub) is type(module) and repr(sub) == repr(module)
    x = images(2, 3, 4, 4) * 4
    assert torch.equal(ours(x), module(x))


@pytest.mark.parametrize("shape", [(6, 4, 4), (6,)])
def test_gn_is_torchs_groupnorm(shape: tuple) -> None:
    ours = built(f"network n : [{', '.join(map(str, shape))}] = gn 3 eps=1e-3").eval()
    theirs = nn.GroupNorm(3, 6, eps=1e-3)
    theirs.load_state_dict(ours.gn_0.state_dict())
    x = images(4, *shape)
    assert torch.equal(ours(x), theirs(x))


def test_bn_without_affine_has_no_parameters() -> None:
    net = archdsl.loads("network n : [6, 4, 4] = bn affine=false momentum=0.5")
    module = net.build()
    assert net.params == 0 and not list(module.parameters())
    assert repr(module.bn_0) == repr(nn.BatchNorm2d(6, momentum=0.5, affine=False))


# -- every new kind in one network ---------------------------------------------------------------------

EVERY_NEW = """
network every_new : [8, 16, 16] =
    conv1x7 16; conv7x1 16 s=(2, 1); conv 16 k=(3, 1) p=(1, 0) d=(2, 1);
    gn 4; ln eps=1e-6; bn affine=false; scale; droppath 0.2; shuffle 4;
    relu6; silu; swish; hardswish; hardsigmoid; elu alpha=0.5; selu; mish; gelu approximate=true;
    add [ maxpool 3 s=2 ceil=true | avgpool 3 s=2 ceil=true count_include_pad=false ];
    avgpool (2, 3) s=(1, 2) p=(1, 1);
    concat [ gap | gmp | adaptivemaxpool 1 ]; flatten; ln; scale init=0.5; linear 10
"""


def test_every_new_kind_is_in_the_network() -> None:
    net = archdsl.loads(EVERY_NEW)
    new = {"droppath", "adaptivemaxpool", "relu6", "silu", "hardswish", "hardsigmoid", "elu", "selu", "mish", "ln",
           "gn", "shuffle", "scale"}
    assert new <= {layer.kind for layer in net.layers()} <= set(REGISTRY)
    assert net.output_shape == (10,)


def test_every_new_kind_traces_scripts_and_takes_channels_last() -> None:
    module = built(EVERY_NEW)
    x = images(3, 8, 16, 16)
    for training in (False, True):
        module.train(training)
        torch.manual_seed(5)
        expected = module(x)
        traced = torch.fx.symbolic_trace(module)
        torch.manual_seed(5)
        assert torch.equal(traced(x), expected), f"fx, training={training}"
        scripted = torch.jit.script(module)
        torch.manual_seed(5)
        assert torch.equal(scripted(x), expected), f"TorchScript, training={training}"
        channels_last = copy.deepcopy(module).to(memory_format=torch.channels_last)
        torch.manual_seed(5)
        y = channels_last(x.contiguous(memory_format=torch.channels_last))
        assert torch.allclose(y, expected, atol=1e-5), f"channels_last, training={training}"


@pytest.mark.slow
def test_every_new_kind_compiles_with_torch_compile() -> None:
    module = built(EVERY_NEW).eval()
    x = images(2, 8, 16, 16)
    with torch.no_grad():
        assert torch.allclose(torch.compile(module)(x), module(x), atol=1e-5)


def test_every_new_kind_exports_to_torchscript_and_onnx(tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    from archdsl.export.onnx import write_onnx
    from archdsl.export.torchscript import write_torchscript

    net = archdsl.loads(EVERY_NEW)
    module = built(EVERY_NEW).eval()
    x = images(3, 8, 16, 16)  # not the traced batch of 2
    with torch.no_grad():
        expected = module(x)
    assert write_torchscript(module, net.input_shape, tmp_path / "every.pt") == "scripted"
    with torch.no_grad():
        assert torch.equal(torch.jit.load(str(tmp_path / "every.pt"))(x), expected)
    write_onnx(module, net.input_shape, tmp_path / "every.onnx", net.params)
    onnx.checker.check_model(str(tmp_path / "every.onnx"))
    session = ort.InferenceSession(str(tmp_path / "every.onnx"), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"input": x.numpy()})
    np.testing.assert_allclose(y, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_archdsls_modules_stand_alone() -> None:
    """Each class reads only torch and nn (the Python export copies its source into the files it writes)."""
    import ast
    import inspect

    for name in ("LayerNorm2d", "Scale", "DropPath", "ChannelShuffle"):
        source = inspect.getsource(getattr(torch_modules, name))
        names = {node.id for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Name)}
        assert names <= {"torch", "nn", "x", "super", "self", "shape", "init", "p", "groups", "survival", "noise",
                         "batch", "channels", "height", "width", "float", "int", "tuple"}, (name, names)


# -- tokens and attention ------------------------------------------------------------------------------------

EVERY_TOKEN = """
network every_token : [8, 16, 16] =
    conv 16 k=2 s=2; tokens; ln; windowattention heads=2 window=4 shift=2;
    windowattention2 heads=4 window=(4, 2) shift=(2, 1);
    partitionattention heads=4 partition=(2, 4) grid=true; partitionattention heads=2 partition=4;
    linear 32; gelu; linear 16; scale; droppath 0.1;
    patchmerge; ln; linear 32 bias=false; untokens; tokens; clstoken; posembed 17;
    add [ ln; attention heads=4 dropout=0.1 | id ]; softmax;
    concat [ token 0 | tokenmean ]; linear 10
"""
TOKEN_KINDS = {"tokens", "untokens", "token", "tokenmean", "clstoken", "posembed", "patchmerge", "attention",
               "windowattention", "windowattention2", "partitionattention"}


@pytest.mark.parametrize(("grid", "window", "shift"), [
    ((8, 8), (4, 4), (2, 2)), ((8, 8), (4, 4), (0, 0)), ((7, 7), (7, 7), (3, 3)), ((14, 7), (7, 7), (3, 3)),
    ((6, 12), (3, 4), (1, 2)), ((4, 6), (2, 3), (0, 1)),
])  # fmt: skip
@pytest.mark.parametrize("v2", [False, True])
def test_window_attention_is_torchvisions(torchvision, grid, window, shift, v2: bool) -> None:
    # torchvision's ShiftedWindowAttention with its own weights (a random bias table): the same names and outputs.
    # A grid that one window covers along an axis is not shifted along it (14x7 with 7x7 windows: rows only);
    # windows of (2, 3) shifted by (0, 1) mask along the width alone. Swin V2's ShiftedWindowAttentionV2 likewise,
    # with a random bias of the keys (read as zeros) and logit scales on both sides of log(100), where they stop.
    from torchvision.models.swin_transformer import ShiftedWindowAttention, ShiftedWindowAttentionV2

    torch.manual_seed(0)
    theirs = (ShiftedWindowAttentionV2 if v2 else ShiftedWindowAttention)(12, list(window), list(shift), num_heads=3)
    if v2:
        with torch.no_grad():
            theirs.qkv.bias.normal_()
            theirs.logit_scale.copy_(torch.tensor([1.0, 4.0, 6.0]).view(3, 1, 1))
    ours = (torch_modules.WindowAttention2 if v2 else torch_modules.WindowAttention)(12, 3, window, shift, grid)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = images(2, *grid, 12)
    for training in (False, True):
        ours.train(training)
        theirs.train(training)
        assert torch.allclose(ours(x), theirs(x), atol=1e-6)


@pytest.mark.parametrize(("size", "partition"), [(28, 7), (14, 7), (7, 7), (8, 4), (8, 2)])
@pytest.mark.parametrize("grid", [False, True])
def test_partition_attention_is_torchvisions(torchvision, size: int, partition: int, grid: bool) -> None:
    # MaxViT's attention in torchvision's partitions (its PartitionAttentionLayer's partition and swap around its
    # RelativePositionalMultiHeadAttention, random bias table) with the same state, in the same order and shapes.
    from torchvision.models.maxvit import PartitionAttentionLayer

    torch.manual_seed(0)
    layer = PartitionAttentionLayer(64, 16, partition, "grid" if grid else "window", (size, size), 4, nn.GELU,
                                    nn.LayerNorm, 0.0, 0.0, 0.0)
    theirs = layer.attn_layer[1]
    ours = torch_modules.PartitionAttention(64, 4, partition, grid, (size, size))
    assert [tuple(t.shape) for t in ours.state_dict().values()] == [tuple(t.shape) for t in theirs.state_dict().values()]
    ours.load_state_dict(dict(zip(ours.state_dict(), theirs.state_dict().values())), strict=True)
    x = images(2, 64, size, size)
    groups = size // layer.p
    with torch.no_grad():
        expected = layer.departition_swap(theirs(layer.partition_swap(layer.partition_op(x, layer.p))))
        expected = layer.departition_op(expected, layer.p, groups, groups)
        assert torch.allclose(ours(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), expected, atol=1e-6)


@pytest.mark.parametrize("bias", [True, False])
def test_self_attention_is_nn_multihead_attention(bias: bool) -> None:
    # The tokens as query, key and value of nn.MultiheadAttention (batch first), in eval and in seeded training
    # with dropout on the attention weights; on a grid, the tokens attend as one sequence and keep the grid.
    torch.manual_seed(0)
    ours = torch_modules.SelfAttention(16, 4, dropout=0.2, bias=bias)
    theirs = nn.MultiheadAttention(16, 4, dropout=0.2, bias=bias, batch_first=True)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = images(2, 9, 16)
    for training in (False, True):
        ours.train(training)
        theirs.train(training)
        torch.manual_seed(1)
        expected = theirs(x, x, x, need_weights=False)[0]
        torch.manual_seed(1)
        assert torch.allclose(ours(x), expected, atol=1e-6)
    ours.eval()
    grid = images(2, 3, 3, 16)
    assert torch.allclose(ours(grid), ours(grid.reshape(2, 9, 16)).reshape(2, 3, 3, 16), atol=1e-6)


@pytest.mark.parametrize("grid", [(4, 6), (5, 7), (7, 4)])
def test_patch_merge_is_torchvisions(torchvision, grid) -> None:
    # Swin's space-to-depth, odd sides padded with zeros, and the shape patchmerge's rule gives.
    from torchvision.models.swin_transformer import _patch_merging_pad

    x = images(2, *grid, 3)
    ours = torch_modules.PatchMerge(grid[0] % 2, grid[1] % 2)(x)
    assert torch.equal(ours, _patch_merging_pad(x))
    net = archdsl.loads(f"network n : [3, {grid[0]}, {grid[1]}] = tokens; patchmerge")
    assert tuple(ours.shape[1:]) == tuple(net.output_shape)


def test_tokens_and_back_are_torchvisions_patch_embedding(torchvision) -> None:
    # tokens reads the image's positions row by row, as torchvision's ViT flattens its patch embedding; untokens
    # undoes it, from the grid or from L×D with H and W given; token 0 and tokenmean read the sequence as theirs.
    x = images(2, 8, 3, 5)
    reference = x.reshape(2, 8, 15).permute(0, 2, 1)
    tokens = torch_modules.ToTokens()(x)
    assert torch.equal(tokens.flatten(1, 2), reference)
    assert torch.equal(torch_modules.ToImage(3, 5, 8)(tokens), x)
    assert torch.equal(torch_modules.ToImage(3, 5, 8)(reference), x)
    assert torch.equal(torch_modules.TakeToken(4)(tokens), reference[:, 4])
    assert torch.allclose(torch_modules.TokenMean()(tokens), x.mean((2, 3)), atol=1e-6)


def test_every_token_kind_is_in_the_network() -> None:
    net = archdsl.loads(EVERY_TOKEN)
    assert TOKEN_KINDS <= {layer.kind for layer in net.layers()}
    assert net.output_shape == (10,)


def test_every_token_kind_traces_scripts_and_exports_to_onnx(tmp_path) -> None:
    # TorchScript in eval mode only: after its first runs, its executor fuses the dropouts of a training graph,
    # which then draw their random numbers in another order; and its fused kernels may sum in another order, hence
    # ONNX's tolerance.
    module = built(EVERY_TOKEN)
    x = images(3, 8, 16, 16)
    for training in (False, True):
        module.train(training)
        torch.manual_seed(5)
        expected = module(x)
        traced = torch.fx.symbolic_trace(module)
        torch.manual_seed(5)
        assert torch.equal(traced(x), expected), f"fx, training={training}"
    module.eval()
    scripted = torch.jit.script(module)
    with torch.no_grad():
        expected = module(x)
        for _ in range(3):  # the profiling runs and the optimised one
            assert torch.allclose(scripted(x), expected, rtol=1e-4, atol=1e-5)
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    from archdsl.export.onnx import write_onnx

    net = archdsl.loads(EVERY_TOKEN)
    module.eval()
    with torch.no_grad():
        expected = module(x)
    write_onnx(module, net.input_shape, tmp_path / "tokens.onnx", net.params)
    onnx.checker.check_model(str(tmp_path / "tokens.onnx"))
    session = ort.InferenceSession(str(tmp_path / "tokens.onnx"), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"input": x.numpy()})
    np.testing.assert_allclose(y, expected.numpy(), rtol=1e-4, atol=1e-5)
