"""Checks of the reference models against facts known independently of them.

The references are the oracle for the torch backend, so they are held here to numbers from
elsewhere: the shapes d2l prints for each network, torchvision's parameter counts, Table 1 of the
GoogLeNet paper, the book's small examples of residual and dense blocks, and for ResNeXt and AnyNet
the book's own code, run as it is written. Shape and order checks run on the meta device, where a
forward pass costs nothing.
"""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from references import (
    REFERENCES,
    DenseBlock,
    Inception,
    Residual,
    ResNeXtBlock,
    anynet,
    d2l_vit,
    lenet,
    resnet18,
    resnext,
    transition_block,
    vgg16,
)
from strategies import randomise_normalisation
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.lazy import LazyModuleMixin

NAMES = sorted(REFERENCES)

VGG_SHAPES = [
    (64, 112, 112), (128, 56, 56), (256, 28, 28), (512, 14, 14), (512, 7, 7),
    (25088,), (4096,), (10,),
]  # fmt: skip

RESNET_SHAPES = [(64, 24, 24), (128, 12, 12), (256, 6, 6), (512, 3, 3), (512, 1, 1), (512,), (10,)]

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
    "resnet18": RESNET_SHAPES,
    "resnext": RESNET_SHAPES,
    # d2l 8.8 prints RegNetX32's stem, two stages and head: 32x48x48, 32x24x24, 80x12x12, 10.
    "anynet": [(32, 48, 48), (32, 24, 24), (80, 12, 12), (80, 1, 1), (80,), (10,)],
    # d2l 11.8: the patch embedding gives (img_size // patch_size)**2 = 36 tokens of num_hiddens = 512, the class
    # token makes 37, "the Vision Transformer encoder block does not change the input shape", the head 10 logits.
    "d2l_vit": [(36, 512), (37, 512), (10,)],
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


def test_book_examples_of_resnext_blocks() -> None:
    x = torch.randn(4, 32, 8, 8)
    assert ResNeXtBlock(32, 32, 16, 1)(x).shape == (4, 32, 8, 8)
    assert ResNeXtBlock(32, 64, 16, 1, use_1x1conv=True, strides=2)(x).shape == (4, 64, 4, 4)


# -- the book's own code --------------------------------------------------------------------------------
# d2l's ResNeXtBlock (d2l 1.0.3, d2l/torch.py), AnyNet and RegNetX32 (8.8) as the book writes them, with
# its Lazy modules and its registration order; only d2l.Classifier's training machinery is left out.
# BookResNeXt is the book's ResNet (8.6) with ResNeXtBlock in its ``block``: a network the book does not
# print, built as it builds ResNet.


class BookResNeXtBlock(nn.Module):
    def __init__(self, num_channels, groups, bot_mul, use_1x1conv=False, strides=1):
        super().__init__()
        bot_channels = int(round(num_channels * bot_mul))  # noqa: RUF046 (the book's line)
        self.conv1 = nn.LazyConv2d(bot_channels, kernel_size=1, stride=1)
        self.conv2 = nn.LazyConv2d(bot_channels, kernel_size=3,
                                   stride=strides, padding=1,
                                   groups=bot_channels//groups)
        self.conv3 = nn.LazyConv2d(num_channels, kernel_size=1, stride=1)
        self.bn1 = nn.LazyBatchNorm2d()
        self.bn2 = nn.LazyBatchNorm2d()
        self.bn3 = nn.LazyBatchNorm2d()
        if use_1x1conv:
            self.conv4 = nn.LazyConv2d(num_channels, kernel_size=1,
                                       stride=strides)
            self.bn4 = nn.LazyBatchNorm2d()
        else:
            self.conv4 = None

    def forward(self, X):
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = F.relu(self.bn2(self.conv2(Y)))
        Y = self.bn3(self.conv3(Y))
        if self.conv4:
            X = self.bn4(self.conv4(X))
        return F.relu(Y + X)


class BookAnyNet(nn.Module):
    def stem(self, num_channels):
        return nn.Sequential(
            nn.LazyConv2d(num_channels, kernel_size=3, stride=2, padding=1),
            nn.LazyBatchNorm2d(), nn.ReLU())

    def stage(self, depth, num_channels, groups, bot_mul):
        blk = []
        for i in range(depth):
            if i == 0:
                blk.append(BookResNeXtBlock(num_channels, groups, bot_mul,
                    use_1x1conv=True, strides=2))
            else:
                blk.append(BookResNeXtBlock(num_channels, groups, bot_mul))
        return nn.Sequential(*blk)

    def __init__(self, arch, stem_channels, lr=0.1, num_classes=10):
        super().__init__()
        self.net = nn.Sequential(self.stem(stem_channels))
        for i, s in enumerate(arch):
            self.net.add_module(f'stage{i+1}', self.stage(*s))
        self.net.add_module('head', nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
            nn.LazyLinear(num_classes)))

    def forward(self, X):
        return self.net(X)


class BookRegNetX32(BookAnyNet):
    def __init__(self, lr=0.1, num_classes=10):
        stem_channels, groups, bot_mul = 32, 16, 1
        depths, channels = (4, 6), (32, 80)
        super().__init__(
            ((depths[0], channels[0], groups, bot_mul),
             (depths[1], channels[1], groups, bot_mul)),
            stem_channels, lr, num_classes)


class BookResNeXt(nn.Module):
    def b1(self):
        return nn.Sequential(
            nn.LazyConv2d(64, kernel_size=7, stride=2, padding=3),
            nn.LazyBatchNorm2d(), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1))

    def block(self, num_residuals, num_channels, first_block=False):
        blk = []
        for i in range(num_residuals):
            if i == 0 and not first_block:
                blk.append(BookResNeXtBlock(num_channels, self.groups, self.bot_mul,
                                            use_1x1conv=True, strides=2))
            else:
                blk.append(BookResNeXtBlock(num_channels, self.groups, self.bot_mul))
        return nn.Sequential(*blk)

    def __init__(self, arch, groups, bot_mul, lr=0.1, num_classes=10):
        super().__init__()
        self.groups, self.bot_mul = groups, bot_mul
        self.net = nn.Sequential(self.b1())
        for i, b in enumerate(arch):
            self.net.add_module(f'b{i+2}', self.block(*b, first_block=(i==0)))
        self.net.add_module('last', nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
            nn.LazyLinear(num_classes)))

    def forward(self, X):
        return self.net(X)


SMALL_ANYNET = ((1, 24, 8, 0.5), (2, 40, 4, 0.25), (1, 64, 16, 1))  # three stages, bottlenecks that round
SMALL_RESNEXT = ((1, 64), (2, 96))


def tensors_in_call_order(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Every parameter and buffer of ``model``, module by module in the order a forward pass calls them."""
    called: list[nn.Module] = []
    hooks = [m.register_forward_pre_hook(lambda module, _args: called.append(module)) for m in model.modules()
             if owns_tensors(m)]
    model(x)
    for hook in hooks:
        hook.remove()
    return [t for m in called for t in m.state_dict().values()]


@pytest.mark.parametrize(("book", "reference"), [
    (BookRegNetX32, anynet),
    (partial(BookAnyNet, SMALL_ANYNET, 16), partial(anynet, arch=SMALL_ANYNET, stem_channels=16)),
    (partial(BookResNeXt, ((2, 64), (2, 128), (2, 256), (2, 512)), 16, 1), resnext),
    (partial(BookResNeXt, SMALL_RESNEXT, 8, 0.5), partial(resnext, arch=SMALL_RESNEXT, groups=8, bot_mul=0.5)),
], ids=["regnetx32", "anynet-3-stages", "resnext", "resnext-bottleneck"])  # fmt: skip
def test_the_written_out_references_compute_the_books_code(book, reference) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 96, 96, generator=generator)
    theirs = book()
    theirs(x)  # the dry run that gives the Lazy modules their shapes
    randomise_normalisation(theirs, generator)
    theirs.eval()
    ours = reference().eval()
    tensors = tensors_in_call_order(theirs, x)
    assert len(tensors) == len(ours.state_dict())
    assert count_params(ours) == count_params(theirs)
    with torch.no_grad():
        for mine, value in zip(ours.state_dict().values(), tensors):
            assert mine.shape == value.shape
            mine.copy_(value)
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-5)


# The book's Vision Transformer (d2l 11.8) as the book writes it, with its MultiHeadAttention (11.5) and
# DotProductAttention (11.3): Lazy modules, the class token and the position embedding held in the model itself.

class BookDotProductAttention(nn.Module):
    def __init__(self, dropout):
        super().__init__()
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        d = queries.shape[-1]
        scores = torch.bmm(queries, keys.transpose(1, 2)) / math.sqrt(d)
        self.attention_weights = F.softmax(scores, dim=-1)  # masked_softmax with valid_lens None
        return torch.bmm(self.dropout(self.attention_weights), values)


class BookMultiHeadAttention(nn.Module):
    def __init__(self, num_hiddens, num_heads, dropout, bias=False, **kwargs):
        super().__init__()
        self.num_heads = num_heads
        self.attention = BookDotProductAttention(dropout)
        self.W_q = nn.LazyLinear(num_hiddens, bias=bias)
        self.W_k = nn.LazyLinear(num_hiddens, bias=bias)
        self.W_v = nn.LazyLinear(num_hiddens, bias=bias)
        self.W_o = nn.LazyLinear(num_hiddens, bias=bias)

    def forward(self, queries, keys, values, valid_lens):
        queries = self.transpose_qkv(self.W_q(queries))
        keys = self.transpose_qkv(self.W_k(keys))
        values = self.transpose_qkv(self.W_v(values))
        output = self.attention(queries, keys, values, valid_lens)
        output_concat = self.transpose_output(output)
        return self.W_o(output_concat)

    def transpose_qkv(self, X):
        X = X.reshape(X.shape[0], X.shape[1], self.num_heads, -1)
        X = X.permute(0, 2, 1, 3)
        return X.reshape(-1, X.shape[2], X.shape[3])

    def transpose_output(self, X):
        X = X.reshape(-1, self.num_heads, X.shape[1], X.shape[2])
        X = X.permute(0, 2, 1, 3)
        return X.reshape(X.shape[0], X.shape[1], -1)


class BookPatchEmbedding(nn.Module):
    def __init__(self, img_size=96, patch_size=16, num_hiddens=512):
        super().__init__()
        def _make_tuple(x):
            if not isinstance(x, (list, tuple)):
                return (x, x)
            return x
        img_size, patch_size = _make_tuple(img_size), _make_tuple(patch_size)
        self.num_patches = (img_size[0] // patch_size[0]) * (
            img_size[1] // patch_size[1])
        self.conv = nn.LazyConv2d(num_hiddens, kernel_size=patch_size,
                                  stride=patch_size)

    def forward(self, X):
        # Output shape: (batch size, no. of patches, no. of channels)
        return self.conv(X).flatten(2).transpose(1, 2)


class BookViTMLP(nn.Module):
    def __init__(self, mlp_num_hiddens, mlp_num_outputs, dropout=0.5):
        super().__init__()
        self.dense1 = nn.LazyLinear(mlp_num_hiddens)
        self.gelu = nn.GELU()
        self.dropout1 = nn.Dropout(dropout)
        self.dense2 = nn.LazyLinear(mlp_num_outputs)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout2(self.dense2(self.dropout1(self.gelu(
            self.dense1(x)))))


class BookViTBlock(nn.Module):
    def __init__(self, num_hiddens, norm_shape, mlp_num_hiddens,
                 num_heads, dropout, use_bias=False):
        super().__init__()
        self.ln1 = nn.LayerNorm(norm_shape)
        self.attention = BookMultiHeadAttention(num_hiddens, num_heads,
                                                dropout, use_bias)
        self.ln2 = nn.LayerNorm(norm_shape)
        self.mlp = BookViTMLP(mlp_num_hiddens, num_hiddens, dropout)

    def forward(self, X, valid_lens=None):
        X = X + self.attention(*([self.ln1(X)] * 3), valid_lens)
        return X + self.mlp(self.ln2(X))


class BookViT(nn.Module):
    """Vision Transformer."""
    def __init__(self, img_size, patch_size, num_hiddens, mlp_num_hiddens,
                 num_heads, num_blks, emb_dropout, blk_dropout, lr=0.1,
                 use_bias=False, num_classes=10):
        super().__init__()
        self.patch_embedding = BookPatchEmbedding(
            img_size, patch_size, num_hiddens)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, num_hiddens))
        num_steps = self.patch_embedding.num_patches + 1  # Add the cls token
        # Positional embeddings are learnable
        self.pos_embedding = nn.Parameter(
            torch.randn(1, num_steps, num_hiddens))
        self.dropout = nn.Dropout(emb_dropout)
        self.blks = nn.Sequential()
        for i in range(num_blks):
            self.blks.add_module(f"{i}", BookViTBlock(
                num_hiddens, num_hiddens, mlp_num_hiddens,
                num_heads, blk_dropout, use_bias))
        self.head = nn.Sequential(nn.LayerNorm(num_hiddens),
                                  nn.Linear(num_hiddens, num_classes))

    def forward(self, X):
        X = self.patch_embedding(X)
        X = torch.cat((self.cls_token.expand(X.shape[0], -1, -1), X), 1)
        X = self.dropout(X + self.pos_embedding)
        for blk in self.blks:
            X = blk(X)
        return self.head(X[:, 0])


@pytest.mark.parametrize("training", [False, True])
def test_the_written_out_vit_computes_the_books_code(training: bool) -> None:
    # The book's settings (img_size, patch_size, num_hiddens, mlp_num_hiddens, num_heads, num_blks, emb_dropout,
    # blk_dropout, lr = 96, 16, 512, 2048, 8, 2, 0.1, 0.1, 0.1). The tensors pair by name, the class token and the
    # position embedding under the written-out model's embedding module; in training, the same seed draws the
    # same dropout masks in the same order.
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 96, 96, generator=generator)
    theirs = BookViT(96, 16, 512, 2048, 8, 2, 0.1, 0.1, 0.1)
    theirs(x)  # the dry run that gives the Lazy modules their shapes
    ours = d2l_vit()
    names = {"cls_token": "1.cls_token", "pos_embedding": "1.pos_embedding", "patch_embedding.": "0.",
             "blks.0.": "2.", "blks.1.": "3.", "head.": "4.head."}
    state = {}
    for key, value in theirs.state_dict().items():
        prefix = next(p for p in names if key.startswith(p))
        state[names[prefix] + key[len(prefix):]] = value
    ours.load_state_dict(state, strict=True)
    assert count_params(ours) == count_params(theirs) == 6_457_866
    ours.train(training)
    theirs.train(training)
    torch.manual_seed(1)
    expected = theirs(x)
    torch.manual_seed(1)
    torch.testing.assert_close(ours(x), expected, rtol=0, atol=0)
