"""Checks of the reference models against facts known independently of them.

The references are the oracle for the torch backend, so they are held here to numbers from
elsewhere: the shapes d2l prints for each network, torchvision's parameter counts, Table 1 of the
GoogLeNet paper, and the book's small examples of residual and dense blocks. Shape and order
checks run on the meta device, where a forward pass costs nothing.
"""

from __future__ import annotations

import pytest
import torch
from references import (
    REFERENCES,
    DenseBlock,
    Inception,
    Residual,
    lenet,
    resnet18,
    transition_block,
    vgg16,
)
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

NAMES = sorted(REFERENCES)

VGG_SHAPES = [
    (64, 112, 112), (128, 56, 56), (256, 28, 28), (512, 14, 14), (512, 7, 7),
    (25088,), (4096,), (10,),
]  # fmt: skip

# Output shapes of the top-level layers at batch 1, in_channels=1, classes=10, with repeats
# dropped (an activation keeps its input's shape), as d2l's layer summaries print them.
BOOK_SHAPES = {
    "lenet": [
        (6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5), (400,), (120,), (84,), (10,),
    ],
    "alexnet": [
        (96, 54, 54), (96, 26, 26), (256, 26, 26), (256, 12, 12), (384, 12, 12),
        (256, 12, 12), (256, 5, 5), (6400,), (4096,), (10,),
    ],
    "vgg11": VGG_SHAPES,
    "vgg16": VGG_SHAPES,
    "vgg19": VGG_SHAPES,
    "nin": [
        (96, 54, 54), (96, 26, 26), (256, 26, 26), (256, 12, 12), (384, 12, 12),
        (384, 5, 5), (10, 5, 5), (10, 1, 1), (10,),
    ],
    "googlenet": [(64, 24, 24), (192, 12, 12), (480, 6, 6), (832, 3, 3), (1024,), (10,)],
    "resnet18": [
        (64, 24, 24), (128, 12, 12), (256, 6, 6), (512, 3, 3), (512, 1, 1), (512,), (10,),
    ],
    # 64 + 4*32 = 192, halved to 96; 96 + 128 = 224 -> 112; 112 + 128 = 240 -> 120; 120 + 128 = 248
    "densenet": [
        (64, 24, 24), (192, 24, 24), (96, 12, 12), (224, 12, 12), (112, 6, 6), (240, 6, 6),
        (120, 3, 3), (248, 3, 3), (248, 1, 1), (248,), (10,),
    ],
}  # fmt: skip


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def owns_tensors(module: nn.Module) -> bool:
    return bool(list(module.parameters(recurse=False)) or list(module.buffers(recurse=False)))


def on_meta(name: str) -> tuple[nn.Module, torch.Tensor]:
    """The reference model ``name`` (in eval mode) and a batch-1 input, both on the meta device."""
    factory, shape = REFERENCES[name]
    with torch.device("meta"):
        return factory().eval(), torch.empty(1, *shape)


@pytest.mark.parametrize("name", NAMES)
def test_output_is_one_row_of_logits_per_image(name: str) -> None:
    factory, (_, height, width) = REFERENCES[name]
    model = factory(in_channels=3, classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, height, width))
    assert out.shape == (2, 7)
    assert out.isfinite().all()


@pytest.mark.parametrize("name", NAMES)
def test_layer_shapes_match_the_book(name: str) -> None:
    model, x = on_meta(name)
    shapes: list[tuple[int, ...]] = []
    for layer in model:
        x = layer(x)
        if not shapes or shapes[-1] != x.shape[1:]:
            shapes.append(tuple(x.shape[1:]))
    assert shapes == BOOK_SHAPES[name]


@pytest.mark.parametrize("name", NAMES)
def test_no_lazy_modules(name: str) -> None:
    model, _ = on_meta(name)
    assert not any(isinstance(m, LazyModuleMixin) for m in model.modules())


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_lists_tensors_in_forward_order(name: str) -> None:
    # Each module with its own tensors runs exactly once, so registration order equals call
    # order exactly when state_dict() lists tensors in the order the forward pass uses them.
    model, x = on_meta(name)
    owners = [m for m in model.modules() if owns_tensors(m)]
    called: list[nn.Module] = []
    for m in owners:
        m.register_forward_pre_hook(lambda module, _args: called.append(module))
    model(x)
    assert called == owners


def test_vgg16_has_torchvision_parameter_count() -> None:
    with torch.device("meta"):
        model = vgg16(in_channels=3, classes=1000)
    assert count_params(model) == 138_357_544


def test_resnet18_differs_from_torchvision_by_conv_biases_and_shortcut_bn() -> None:
    # torchvision's resnet18 has 11,689,512 parameters. d2l's has the same layers except that
    # every convolution has a bias (stem 64; stage 1: 4 x 64; stages 2-4: 5 convolutions each,
    # counting the 1x1 projection, of 128, 256, 512 channels: 4,800 in all) and the projection
    # has no BatchNorm (2 x (128 + 256 + 512) = 1,792 fewer).
    with torch.device("meta"):
        model = resnet18(in_channels=3, classes=1000)
    assert count_params(model) == 11_689_512 + 4_800 - 1_792


def test_lenet_has_the_classic_parameter_count() -> None:
    # 6*(25+1) + 16*(6*25+1) + 120*(400+1) + 84*(120+1) + 10*(84+1)
    assert count_params(lenet()) == 156 + 2_416 + 48_120 + 10_164 + 850 == 61_706


def test_inception_widths_match_the_googlenet_paper() -> None:
    # Table 1 of Szegedy et al. (2014): output depths of inception (3a) to (5b).
    model, x = on_meta("googlenet")
    widths: list[int] = []
    for m in model.modules():
        if isinstance(m, Inception):
            m.register_forward_hook(lambda _m, _args, out: widths.append(out.shape[1]))
    model(x)
    assert widths == [256, 480, 512, 512, 512, 528, 832, 832, 1024]


def test_book_examples_of_residual_and_dense_blocks() -> None:
    x = torch.randn(4, 3, 6, 6)
    assert Residual(3, 3)(x).shape == (4, 3, 6, 6)
    assert Residual(3, 6, use_1x1conv=True, strides=2)(x).shape == (4, 6, 3, 3)
    y = DenseBlock(2, 3, 10)(torch.randn(4, 3, 8, 8))
    assert y.shape == (4, 23, 8, 8)
    assert transition_block(23, 10)(y).shape == (4, 10, 4, 4)
