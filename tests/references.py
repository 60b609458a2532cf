"""Hand-written PyTorch reference models: the oracle for the compiler's torch backend.

Each network follows the PyTorch code of Dive into Deep Learning (d2l.ai, "Modern Convolutional
Neural Networks", LeNet, and the Vision Transformer of 11.8 with the book's own multi-head attention), with two
deliberate differences that change no computation:

* no Lazy modules: every in_channels / in_features is written out or computed, so a model is
  complete on construction and can be compared before any forward pass;
* submodules are registered in the order the forward pass uses them (d2l registers a residual's
  ``bn1``/``bn2`` last), so ``list(model.state_dict().values())`` lists tensors in forward order
  and the compiler's modules can be checked by copying weights over positionally.

Each factory takes ``in_channels`` and ``classes`` and is meant for the input size given in
``REFERENCES``; the flattened sizes before the first Linear depend on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F


def lenet(in_channels: int = 1, classes: int = 10) -> nn.Sequential:
    """LeNet-5 with sigmoids and average pooling, on 28x28 inputs."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, kernel_size=5, padding=2), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        # 28 -> pool 14 -> conv 10 -> pool 5
        nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.Sigmoid(),
        nn.Linear(84, classes),
    )  # fmt: skip


def _classifier(in_features: int, classes: int) -> list[nn.Module]:
    """The fully connected head shared by AlexNet and VGG."""
    return [
        nn.Flatten(),
        nn.Linear(in_features, 4096), nn.ReLU(), nn.Dropout(p=0.5),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(p=0.5),
        nn.Linear(4096, classes),
    ]  # fmt: skip


def alexnet(in_channels: int = 1, classes: int = 10) -> nn.Sequential:
    """AlexNet as d2l trains it on Fashion-MNIST upsampled to 224x224."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 96, kernel_size=11, stride=4, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(96, 256, kernel_size=5, padding=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        # 224 -> conv 54 -> pool 26 -> pool 12 -> pool 5
        *_classifier(256 * 5 * 5, classes),
    )  # fmt: skip


def vgg_block(num_convs: int, in_channels: int, out_channels: int) -> nn.Sequential:
    """``num_convs`` 3x3 convolutions with ReLU, then a 2x2 max pool halving the resolution."""
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU()]
        in_channels = out_channels
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


def vgg(
    arch: Sequence[tuple[int, int]], in_channels: int = 1, classes: int = 10
) -> nn.Sequential:
    """VGG on 224x224 inputs; ``arch`` lists (num_convs, out_channels) per block."""
    blocks = []
    for num_convs, out_channels in arch:
        blocks.append(vgg_block(num_convs, in_channels, out_channels))
        in_channels = out_channels
    side = 224 // 2 ** len(arch)
    return nn.Sequential(*blocks, *_classifier(in_channels * side * side, classes))


vgg11 = partial(vgg, ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)))
vgg16 = partial(vgg, ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)))
vgg19 = partial(vgg, ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512)))


def nin_block(
    in_channels: int, out_channels: int, kernel_size: int, strides: int, padding: int
) -> nn.Sequential:
    """One spatial convolution followed by two 1x1 convolutions (per-pixel MLPs), all with ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, strides, padding), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
    )  # fmt: skip


def nin(in_channels: int = 1, classes: int = 10) -> nn.Sequential:
    """Network in Network on 224x224 inputs: no Linear, the last block has one channel per class."""
    return nn.Sequential(
        nin_block(in_channels, 96, kernel_size=11, strides=4, padding=0),
        nn.MaxPool2d(3, stride=2),
        nin_block(96, 256, kernel_size=5, strides=1, padding=2),
        nn.MaxPool2d(3, stride=2),
        nin_block(256, 384, kernel_size=3, strides=1, padding=1),
        nn.MaxPool2d(3, stride=2),
        nn.Dropout(0.5),
        nin_block(384, classes, kernel_size=3, strides=1, padding=1),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
    )


class Inception(nn.Module):
    """Four parallel branches concatenated on channels; ``c2`` and ``c3`` are (reduce, out) pairs.

    Branches: 1x1 | 1x1, 3x3 | 1x1, 5x5 | 3x3 max pool, 1x1; every convolution is followed by ReLU.
    """

    def __init__(
        self,
        in_channels: int,
        c1: int,
        c2: tuple[int, int],
        c3: tuple[int, int],
        c4: int,
    ) -> None:
        super().__init__()
        self.b1_1 = nn.Conv2d(in_channels, c1, kernel_size=1)
        self.b2_1 = nn.Conv2d(in_channels, c2[0], kernel_size=1)
        self.b2_2 = nn.Conv2d(c2[0], c2[1], kernel_size=3, padding=1)
        self.b3_1 = nn.Conv2d(in_channels, c3[0], kernel_size=1)
        self.b3_2 = nn.Conv2d(c3[0], c3[1], kernel_size=5, padding=2)
        self.b4_1 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.b4_2 = nn.Conv2d(in_channels, c4, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = F.relu(self.b1_1(x))
        b2 = F.relu(self.b2_2(F.relu(self.b2_1(x))))
        b3 = F.relu(self.b3_2(F.relu(self.b3_1(x))))
        b4 = F.relu(self.b4_2(self.b4_1(x)))
        return torch.cat((b1, b2, b3, b4), dim=1)


def googlenet(in_channels: int = 1, classes: int = 10) -> nn.Sequential:
    """GoogLeNet as d2l's five stages b1..b5 plus a Linear, on 96x96 inputs.

    The Inception input widths are those of Table 1 in Szegedy et al. (2014).
    """
    b1 = nn.Sequential(
        nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    )  # fmt: skip
    b2 = nn.Sequential(
        nn.Conv2d(64, 64, kernel_size=1), nn.ReLU(),
        nn.Conv2d(64, 192, kernel_size=3, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    )  # fmt: skip
    b3 = nn.Sequential(
        Inception(192, 64, (96, 128), (16, 32), 32),
        Inception(256, 128, (128, 192), (32, 96), 64),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    )
    b4 = nn.Sequential(
        Inception(480, 192, (96, 208), (16, 48), 64),
        Inception(512, 160, (112, 224), (24, 64), 64),
        Inception(512, 128, (128, 256), (24, 64), 64),
        Inception(512, 112, (144, 288), (32, 64), 64),
        Inception(528, 256, (160, 320), (32, 128), 128),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    )
    b5 = nn.Sequential(
        Inception(832, 256, (160, 320), (32, 128), 128),
        Inception(832, 384, (192, 384), (48, 128), 128),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
    )
    return nn.Sequential(b1, b2, b3, b4, b5, nn.Linear(1024, classes))


def _stem(in_channels: int) -> nn.Sequential:
    """The first stage of ResNet and DenseNet: 7x7/2 convolution, BN, ReLU, 3x3/2 max pool."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3),
        nn.BatchNorm2d(64), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    )  # fmt: skip


class Residual(nn.Module):
    """Two 3x3 conv-BN layers plus the input; a strided 1x1 convolution (no BN) projects the
    shortcut when ``use_1x1conv`` is set."""

    def __init__(
        self, in_channels: int, num_channels: int, use_1x1conv: bool = False, strides: int = 1
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, num_channels, kernel_size=3, padding=1, stride=strides)
        self.bn1 = nn.BatchNorm2d(num_channels)
        self.conv2 = nn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(num_channels)
        self.conv3 = (
            nn.Conv2d(in_channels, num_channels, kernel_size=1, stride=strides)
            if use_1x1conv
            else None
        )

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3 is not None:
            X = self.conv3(X)
        Y += X
        return F.relu(Y)


def resnet_block(
    in_channels: int, num_residuals: int, num_channels: int, first_block: bool = False
) -> nn.Sequential:
    """A ResNet stage; all but the first stage halve the resolution in their first residual."""
    blk = []
    for i in range(num_residuals):
        if i == 0 and not first_block:
            blk.append(Residual(in_channels, num_channels, use_1x1conv=True, strides=2))
        else:
            blk.append(Residual(in_channels, num_channels))
        in_channels = num_channels
    return nn.Sequential(*blk)


def resnet18(in_channels: int = 1, classes: int = 10) -> nn.Sequential:
    """ResNet-18 on 96x96 inputs: the stem, four stages of two residuals, global pool, Linear."""
    arch = ((2, 64), (2, 128), (2, 256), (2, 512))
    stages = []
    channels = 64
    for i, (num_residuals, num_channels) in enumerate(arch):
        stages.append(resnet_block(channels, num_residuals, num_channels, first_block=i == 0))
        channels = num_channels
    return nn.Sequential(
        _stem(in_channels),
        *stages,
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
        nn.Linear(channels, classes),
    )


class ResNeXtBlock(nn.Module):
    """d2l 8.6.5's ResNeXt block: a 1x1 convolution to ``bot_channels = round(num_channels * bot_mul)``, a
    3x3 convolution grouped ``groups`` channels to a group, a 1x1 convolution back to ``num_channels``, each
    followed by BN (and all but the last by ReLU); a strided 1x1 convolution with BN projects the shortcut
    when ``use_1x1conv`` is set, and ReLU follows the sum."""

    def __init__(
        self,
        in_channels: int,
        num_channels: int,
        groups: int,
        bot_mul: float,
        use_1x1conv: bool = False,
        strides: int = 1,
    ) -> None:
        super().__init__()
        bot_channels = round(num_channels * bot_mul)  # halves to even, as the book's int(round(...))
        self.conv1 = nn.Conv2d(in_channels, bot_channels, kernel_size=1, stride=1)
        self.bn1 = nn.BatchNorm2d(bot_channels)
        self.conv2 = nn.Conv2d(bot_channels, bot_channels, kernel_size=3, stride=strides, padding=1,
                               groups=bot_channels // groups)
        self.bn2 = nn.BatchNorm2d(bot_channels)
        self.conv3 = nn.Conv2d(bot_channels, num_channels, kernel_size=1, stride=1)
        self.bn3 = nn.BatchNorm2d(num_channels)
        if use_1x1conv:
            self.conv4 = nn.Conv2d(in_channels, num_channels, kernel_size=1, stride=strides)
            self.bn4 = nn.BatchNorm2d(num_channels)
        else:
            self.conv4 = None

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = F.relu(self.bn2(self.conv2(Y)))
        Y = self.bn3(self.conv3(Y))
        if self.conv4 is not None:
            X = self.bn4(self.conv4(X))
        return F.relu(Y + X)


def resnext(
    in_channels: int = 1,
    classes: int = 10,
    arch: Sequence[tuple[int, int]] = ((2, 64), (2, 128), (2, 256), (2, 512)),
    groups: int = 16,
    bot_mul: float = 1,
) -> nn.Sequential:
    """d2l's ResNet (8.6) with ResNeXt blocks in its stages, on 96x96 inputs; ``arch`` lists
    (num_blocks, num_channels) per stage, and every stage but the first halves the resolution as the
    book's ``ResNet.block`` does (``first_block`` for the first)."""
    stages = []
    channels = 64
    for i, (num_blocks, num_channels) in enumerate(arch):
        blk = []
        for j in range(num_blocks):
            if j == 0 and i != 0:
                blk.append(ResNeXtBlock(channels, num_channels, groups, bot_mul, use_1x1conv=True, strides=2))
            else:
                blk.append(ResNeXtBlock(channels, num_channels, groups, bot_mul))
            channels = num_channels
        stages.append(nn.Sequential(*blk))
    return nn.Sequential(
        _stem(in_channels),
        *stages,
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
        nn.Linear(channels, classes),
    )


# d2l's RegNetX32: stem_channels, groups, bot_mul = 32, 16, 1; depths, channels = (4, 6), (32, 80).
REGNETX32 = ((4, 32, 16, 1), (6, 80, 16, 1))


def anynet(
    in_channels: int = 1,
    classes: int = 10,
    arch: Sequence[tuple[int, int, int, float]] = REGNETX32,
    stem_channels: int = 32,
) -> nn.Sequential:
    """d2l 8.8's AnyNet on 96x96 inputs, by default its RegNetX32: a 3x3/2 convolution stem with BN and
    ReLU, a stage per entry (depth, num_channels, groups, bot_mul) of ``arch`` whose first ResNeXt block
    halves the resolution with a projected shortcut, then global average pooling and a Linear."""
    stages = []
    channels = stem_channels
    for depth, num_channels, groups, bot_mul in arch:
        blk = []
        for i in range(depth):
            if i == 0:
                blk.append(ResNeXtBlock(channels, num_channels, groups, bot_mul, use_1x1conv=True, strides=2))
            else:
                blk.append(ResNeXtBlock(channels, num_channels, groups, bot_mul))
            channels = num_channels
        stages.append(nn.Sequential(*blk))
    return nn.Sequential(
        nn.Sequential(
            nn.Conv2d(in_channels, stem_channels, kernel_size=3, stride=2, padding=1),
            nn.BatchNorm2d(stem_channels), nn.ReLU(),
        ),
        *stages,
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
        nn.Linear(channels, classes),
    )  # fmt: skip



def conv_block(in_channels: int, num_channels: int) -> nn.Sequential:
    """DenseNet's pre-activation unit: BN, ReLU, 3x3 convolution."""
    return nn.Sequential(
        nn.BatchNorm2d(in_channels), nn.ReLU(),
        nn.Conv2d(in_channels, num_channels, kernel_size=3, padding=1),
    )  # fmt: skip


class DenseBlock(nn.Module):
    """``num_convs`` conv blocks, each fed the input concatenated with all earlier outputs."""

    def __init__(self, num_convs: int, in_channels: int, num_channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            *(conv_block(in_channels + i * num_channels, num_channels) for i in range(num_convs))
        )

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        for blk in self.net:
            Y = blk(X)
            X = torch.cat((X, Y), dim=1)
        return X


def transition_block(in_channels: int, num_channels: int) -> nn.Sequential:
    """BN, ReLU, 1x1 convolution to ``num_channels``, then a 2x2 average pool."""
    return nn.Sequential(
        nn.BatchNorm2d(in_channels), nn.ReLU(),
        nn.Conv2d(in_channels, num_channels, kernel_size=1),
        nn.AvgPool2d(kernel_size=2, stride=2),
    )  # fmt: skip


def densenet(in_channels: int = 1, classes: int = 10) -> nn.Sequential:
    """DenseNet on 96x96 inputs: four dense blocks of four conv blocks, growth rate 32."""
    num_channels, growth_rate, arch = 64, 32, (4, 4, 4, 4)
    layers: list[nn.Module] = [_stem(in_channels)]
    for i, num_convs in enumerate(arch):
        layers.append(DenseBlock(num_convs, num_channels, growth_rate))
        num_channels += num_convs * growth_rate
        if i != len(arch) - 1:
            layers.append(transition_block(num_channels, num_channels // 2))
            num_channels //= 2
    return nn.Sequential(
        *layers,
        nn.BatchNorm2d(num_channels),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
        nn.Linear(num_channels, classes),
    )


def masked_softmax(X: torch.Tensor, valid_lens: torch.Tensor | None) -> torch.Tensor:
    """Softmax over the last axis; the ViT never masks (``valid_lens`` is None), so the book's masking is left out."""
    assert valid_lens is None
    return F.softmax(X, dim=-1)


class DotProductAttention(nn.Module):
    """Scaled dot-product attention with dropout on the attention weights (d2l 11.3)."""

    def __init__(self, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        d = queries.shape[-1]
        scores = torch.bmm(queries, keys.transpose(1, 2)) / math.sqrt(d)
        self.attention_weights = masked_softmax(scores, valid_lens)
        return torch.bmm(self.dropout(self.attention_weights), values)


class MultiHeadAttention(nn.Module):
    """The book's multi-head attention (d2l 11.5): four projections of ``num_hiddens`` (no biases by default), the
    heads as ``num_heads`` slices of the features."""

    def __init__(self, num_hiddens: int, num_heads: int, dropout: float, bias: bool = False) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.attention = DotProductAttention(dropout)
        self.W_q = nn.Linear(num_hiddens, num_hiddens, bias=bias)
        self.W_k = nn.Linear(num_hiddens, num_hiddens, bias=bias)
        self.W_v = nn.Linear(num_hiddens, num_hiddens, bias=bias)
        self.W_o = nn.Linear(num_hiddens, num_hiddens, bias=bias)

    def forward(self, queries, keys, values, valid_lens):
        queries = self.transpose_qkv(self.W_q(queries))
        keys = self.transpose_qkv(self.W_k(keys))
        values = self.transpose_qkv(self.W_v(values))
        output = self.attention(queries, keys, values, valid_lens)
        return self.W_o(self.transpose_output(output))

    def transpose_qkv(self, X):
        X = X.reshape(X.shape[0], X.shape[1], self.num_heads, -1)
        X = X.permute(0, 2, 1, 3)
        return X.reshape(-1, X.shape[2], X.shape[3])

    def transpose_output(self, X):
        X = X.reshape(-1, self.num_heads, X.shape[1], X.shape[2])
        X = X.permute(0, 2, 1, 3)
        return X.reshape(X.shape[0], X.shape[1], -1)


class PatchEmbedding(nn.Module):
    """A convolution with kernel and stride ``patch_size``, its outputs read as tokens (d2l 11.8)."""

    def __init__(self, in_channels: int, img_size: int = 96, patch_size: int = 16, num_hiddens: int = 512) -> None:
        super().__init__()
        self.num_patches = (img_size // patch_size) ** 2
        self.conv = nn.Conv2d(in_channels, num_hiddens, kernel_size=patch_size, stride=patch_size)

    def forward(self, X):
        return self.conv(X).flatten(2).transpose(1, 2)


class ViTEmbedding(nn.Module):
    """The book's ViT holds its class token and position embedding in the model itself; here a module of their own,
    between the patch embedding and the blocks, so that the tensors are registered in the order they are used."""

    def __init__(self, num_steps: int, num_hiddens: int, emb_dropout: float) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, num_hiddens))
        self.pos_embedding = nn.Parameter(torch.randn(1, num_steps, num_hiddens))
        self.dropout = nn.Dropout(emb_dropout)

    def forward(self, X):
        X = torch.cat((self.cls_token.expand(X.shape[0], -1, -1), X), 1)
        return self.dropout(X + self.pos_embedding)


class ViTMLP(nn.Module):
    def __init__(self, num_hiddens: int, mlp_num_hiddens: int, mlp_num_outputs: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.dense1 = nn.Linear(num_hiddens, mlp_num_hiddens)
        self.gelu = nn.GELU()
        self.dropout1 = nn.Dropout(dropout)
        self.dense2 = nn.Linear(mlp_num_hiddens, mlp_num_outputs)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout2(self.dense2(self.dropout1(self.gelu(self.dense1(x)))))


class ViTBlock(nn.Module):
    """Pre-norm: attention of the normalised tokens added to them, then the MLP's (d2l 11.8)."""

    def __init__(self, num_hiddens: int, norm_shape: int, mlp_num_hiddens: int, num_heads: int, dropout: float,
                 use_bias: bool = False) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(norm_shape)
        self.attention = MultiHeadAttention(num_hiddens, num_heads, dropout, use_bias)
        self.ln2 = nn.LayerNorm(norm_shape)
        self.mlp = ViTMLP(num_hiddens, mlp_num_hiddens, num_hiddens, dropout)

    def forward(self, X, valid_lens=None):
        X = X + self.attention(*([self.ln1(X)] * 3), valid_lens)
        return X + self.mlp(self.ln2(X))


class ViTHead(nn.Module):
    """The book's head, on the class token: ``self.head(X[:, 0])``."""

    def __init__(self, num_hiddens: int, num_classes: int) -> None:
        super().__init__()
        self.head = nn.Sequential(nn.LayerNorm(num_hiddens), nn.Linear(num_hiddens, num_classes))

    def forward(self, X):
        return self.head(X[:, 0])


class ViT(nn.Sequential):
    """The book's Vision Transformer (d2l 11.8) at its settings for Fashion-MNIST at 96x96: patches of 16, 512
    features, an MLP of 2048, 8 heads, 2 blocks, dropout 0.1; the head reads the class token. The book's forward
    runs the patch embedding, the embeddings, the blocks and the head one after another: here a Sequential of them."""

    def __init__(self, img_size: int = 96, patch_size: int = 16, num_hiddens: int = 512, mlp_num_hiddens: int = 2048,
                 num_heads: int = 8, num_blks: int = 2, emb_dropout: float = 0.1, blk_dropout: float = 0.1,
                 use_bias: bool = False, num_classes: int = 10, in_channels: int = 1) -> None:
        patch_embedding = PatchEmbedding(in_channels, img_size, patch_size, num_hiddens)
        num_steps = patch_embedding.num_patches + 1  # the class token
        super().__init__(
            patch_embedding,
            ViTEmbedding(num_steps, num_hiddens, emb_dropout),
            *(ViTBlock(num_hiddens, num_hiddens, mlp_num_hiddens, num_heads, blk_dropout, use_bias)
              for _ in range(num_blks)),
            ViTHead(num_hiddens, num_classes),
        )


def d2l_vit(in_channels: int = 1, classes: int = 10) -> nn.Module:
    return ViT(in_channels=in_channels, num_classes=classes)


Factory = Callable[..., nn.Module]

# spec file stem -> (factory, input (C, H, W) at in_channels=1)
REFERENCES: dict[str, tuple[Factory, tuple[int, int, int]]] = {
    "lenet": (lenet, (1, 28, 28)),
    "alexnet": (alexnet, (1, 224, 224)),
    "vgg11": (vgg11, (1, 224, 224)),
    "vgg16": (vgg16, (1, 224, 224)),
    "vgg19": (vgg19, (1, 224, 224)),
    "nin": (nin, (1, 224, 224)),
    "googlenet": (googlenet, (1, 96, 96)),
    "resnet18": (resnet18, (1, 96, 96)),
    "densenet": (densenet, (1, 96, 96)),
    "resnext": (resnext, (1, 96, 96)),
    "anynet": (anynet, (1, 96, 96)),
    "d2l_vit": (d2l_vit, (1, 96, 96)),
}
