"""The modules archdsl builds where torch has none that fits: LayerNorm over the channels of an image,
a learned factor per channel, stochastic depth, the channel shuffle and selection, and the token layers (image to
tokens and back, one token or their mean, a class token, a position embedding, self-attention over the tokens,
Swin's shifted-window attention, Swin V2's, MaxViT's block and grid attention, and patch merging).

Each is written as torchvision writes it, so that its weights copy over and its outputs match
bit for bit, and so that ``torch.fx.symbolic_trace``, ``torch.jit.script``, the ONNX export and
channels-last tensors all take it. Each class stands alone (it reads only ``torch`` and ``nn``):
the Python export copies the source of those a network uses into the file it writes.
"""

from __future__ import annotations

import torch
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the C channels at each position of an N×C×H×W tensor, with a weight and a bias of
    C values (torchvision's ConvNeXt LayerNorm2d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Scale(nn.Module):
    """A learned factor per channel, starting at ``init`` (ConvNeXt's layer scale): ``shape`` is
    (C, 1, 1) for N×C×H×W input, (C,) for N×C."""

    def __init__(self, shape: tuple[int, ...], init: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full(shape, init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * x


class DropPath(nn.Module):
    """Stochastic depth per sample (torchvision.ops.StochasticDepth, mode "row"): in training, each
    sample's input is zeroed with probability p and the rest scaled by 1 / (1 - p); in eval mode, the
    identity."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        noise = torch.empty([x.shape[0]] + [1] * (x.dim() - 1), dtype=x.dtype, device=x.device)
        noise = noise.bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        return x * noise


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle (torchvision's channel_shuffle): the C channels, read as ``groups``
    groups of C / groups, are interleaved group by group."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.size()
        x = x.view(batch, self.groups, channels // self.groups, height, width)
        x = torch.transpose(x, 1, 2).contiguous()
        return x.view(batch, channels, height, width)


class ChannelSlice(nn.Module):
    """Channels ``start`` to ``end`` − 1 of the input, ``x[:, start:end]`` (``chunk N I`` is the slice of its part)."""

    def __init__(self, start: int, end: int) -> None:
        super().__init__()
        self.start = start
        self.end = end

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.start : self.end]


class ToTokens(nn.Module):
    """An N×C×H×W image as N×H×W×C tokens on its grid (``tokens``): channels last, the position's C values one
    token. A view; the layers after it read each token's last axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


class ToImage(nn.Module):
    """Tokens, N×L×D with L = H·W or N×H×W×D, as the N×D×H×W image they tile row by row (``untokens H W``)."""

    def __init__(self, height: int, width: int, features: int) -> None:
        super().__init__()
        self.height = height
        self.width = width
        self.features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, self.height, self.width, self.features).permute(0, 3, 1, 2)


class TakeToken(nn.Module):
    """Token ``index`` of N×L×D tokens (of N×H×W×D, counted row by row), N×D: ViT's ``x[:, 0]``, the class token."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1, -2)[:, self.index]


class TokenMean(nn.Module):
    """The mean of the tokens, N×D (on a grid, global average pooling)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1, -2).mean(1)


class ClassToken(nn.Module):
    """A learned token of ``features`` values, starting at zero, put before the tokens (torchvision's ViT
    ``class_token``); tokens on a grid become a plain sequence, read row by row."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 1, features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1, -2)
        return torch.cat([self.token.expand(x.shape[0], -1, -1), x], dim=1)


class PositionEmbedding(nn.Module):
    """A learned embedding of each position added to the tokens (torchvision's ViT ``pos_embedding``): ``shape`` is
    the tokens' (L, D), or (H, W, D) on a grid, and the values start normal with standard deviation ``std``."""

    def __init__(self, shape: tuple[int, ...], std: float = 0.02) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.empty(1, *shape).normal_(std=std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.embedding


class SelfAttention(nn.MultiheadAttention):
    """Multi-head self-attention over the tokens: ``nn.MultiheadAttention`` with ``batch_first`` and the tokens
    as query, key and value, as torchvision's ViT calls it (its parameters, their names and its computation, with
    ``F.scaled_dot_product_attention`` inside). Tokens on a grid attend as one sequence and keep their grid."""

    def __init__(self, features: int, heads: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__(features, heads, dropout=dropout, bias=bias, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        tokens = x.flatten(1, -2).transpose(0, 1)
        out, _ = nn.functional.multi_head_attention_forward(
            tokens,
            tokens,
            tokens,
            self.embed_dim,
            self.num_heads,
            self.in_proj_weight,
            self.in_proj_bias,
            self.bias_k,
            self.bias_v,
            self.add_zero_attn,
            self.dropout,
            self.out_proj.weight,
            self.out_proj.bias,
            training=self.training,
            need_weights=False,
        )
        return out.transpose(0, 1).reshape(x.shape)


class WindowAttention(nn.Module):
    """Swin's shifted-window attention (torchvision's ``ShiftedWindowAttention``) over N×H×W×C tokens on a grid that
    the windows tile: multi-head attention within each window of ``window`` (height, width) tokens with a learned
    relative position bias, the grid first rolled back by ``shift`` and masked where a window joins parts that the
    roll brought together. Where one window covers an axis, that axis is not shifted (torchvision's rule)."""

    def __init__(
        self,
        features: int,
        heads: int,
        window: int | tuple[int, int],
        shift: int | tuple[int, int],
        grid: tuple[int, int],
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        window = (window, window) if isinstance(window, int) else tuple(window)
        shift = (shift, shift) if isinstance(shift, int) else tuple(shift)
        self.heads = heads
        self.window = window
        self.grid = grid
        self.shift = [0 if window[i] >= grid[i] else shift[i] for i in range(2)]
        self.dropout = dropout
        self._define_position_bias()
        self.qkv = nn.Linear(features, 3 * features)
        self.proj = nn.Linear(features, features)
        # The index of each pair of a window's positions into the table, by their offset (torchvision's).
        coords = torch.stack(torch.meshgrid(torch.arange(window[0]), torch.arange(window[1]), indexing="ij")).flatten(1)
        relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
        relative[:, :, 0] += window[0] - 1
        relative[:, :, 1] += window[1] - 1
        relative[:, :, 0] *= 2 * window[1] - 1
        self.register_buffer("relative_position_index", relative.sum(-1).flatten())

    def _define_position_bias(self) -> None:
        """A learned bias per head and relative offset, (2·wh − 1)(2·ww − 1) × heads (before the projections, as
        ``WindowAttention2`` defines its own)."""
        (wh, ww), heads = self.window, self.heads
        self.relative_position_bias_table = nn.Parameter(
            nn.init.trunc_normal_(torch.zeros((2 * wh - 1) * (2 * ww - 1), heads), std=0.02)
        )

    def _bias_table(self) -> torch.Tensor:
        """The bias of each relative offset and head."""
        return self.relative_position_bias_table

    def _position_bias(self) -> torch.Tensor:
        """The bias of each head between each pair of a window's positions: (1, heads, window size, window size)."""
        size = self.window[0] * self.window[1]
        bias = self._bias_table()[self.relative_position_index]
        return bias.view(size, size, -1).permute(2, 0, 1).contiguous().unsqueeze(0)

    def _qkv_bias(self) -> torch.Tensor:
        return self.qkv.bias

    def _scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Scaled dot products of the queries and keys."""
        q = q * q.shape[-1] ** -0.5
        return q.matmul(k.transpose(-2, -1))

    def _split(self, x: torch.Tensor, wh: int, ww: int) -> torch.Tensor:
        """N×H×W×C tokens as N×windows×(wh·ww)×C: the grid's windows of wh×ww row by row, each one's tokens row by
        row."""
        (height, width), channels = self.grid, x.shape[-1]
        x = x.reshape(-1, height // wh, wh, width // ww, ww, channels).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(-1, (height // wh) * (width // ww), wh * ww, channels)

    def _merge(self, x: torch.Tensor, wh: int, ww: int) -> torch.Tensor:
        """The inverse of ``_split``: windows of wh×ww tokens (N×windows×(wh·ww)×C, or any shape that holds those
        values in that order) as N×H×W×C tokens."""
        (height, width), channels = self.grid, x.shape[-1]
        x = x.reshape(-1, height // wh, width // ww, wh, ww, channels).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(-1, height, width, channels)

    def _partition(self, x: torch.Tensor) -> torch.Tensor:
        """N×H×W×C tokens as the sequences that attention runs within: (N·windows)×(wh·ww)×C."""
        (wh, ww), channels = self.window, x.shape[-1]
        return self._split(x, wh, ww).reshape(-1, wh * ww, channels)

    def _departition(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of ``_partition``."""
        return self._merge(x, self.window[0], self.window[1])

    def _mask(self, x: torch.Tensor) -> torch.Tensor:
        """0 between positions of a window that were neighbours before the roll, −100 between the others:
        (windows, window size, window size). torchvision labels three regions along a shifted axis (before the last
        window, the last window but the shift, the shift) and one along an axis without a shift; here the labels
        are computed rather than assigned, so that torch.fx traces it. Made at each call, as torchvision makes it,
        so that the module holds no tensor that its state_dict leaves out."""
        (height, width), (wh, ww), (sh, sw) = self.grid, self.window, self.shift
        rows = torch.arange(height, device=x.device)
        columns = torch.arange(width, device=x.device)
        row_regions = (rows >= height - wh).long() + (rows >= height - sh).long() if sh else rows * 0
        column_regions = (columns >= width - ww).long() + (columns >= width - sw).long() if sw else columns * 0
        regions = (3 * row_regions[:, None] + column_regions[None, :]).to(x.dtype)
        regions = regions.view(height // wh, wh, width // ww, ww).permute(0, 2, 1, 3).reshape(-1, wh * ww)
        differ = regions.unsqueeze(1) - regions.unsqueeze(2)
        return differ.masked_fill(differ != 0, -100.0).masked_fill(differ == 0, 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (height, width), (wh, ww) = self.grid, self.window
        channels = x.shape[-1]
        windows, size = (height // wh) * (width // ww), wh * ww
        shifted = self.shift[0] + self.shift[1] > 0
        bias = self._position_bias()
        if shifted:
            x = torch.roll(x, shifts=(-self.shift[0], -self.shift[1]), dims=(1, 2))
        x = self._partition(x)
        # The projections' weights are read as torchvision reads them (F.linear), not by calling the submodules.
        qkv = nn.functional.linear(x, self.qkv.weight, self._qkv_bias())
        qkv = qkv.reshape(-1, size, 3, self.heads, channels // self.heads).permute(2, 0, 3, 1, 4)
        attention = self._scores(qkv[0], qkv[1]) + bias
        if shifted:
            attention = attention.view(-1, windows, self.heads, size, size) + self._mask(x).unsqueeze(1).unsqueeze(0)
            attention = attention.view(-1, self.heads, size, size)
        attention = nn.functional.softmax(attention, dim=-1)
        attention = nn.functional.dropout(attention, p=self.dropout, training=self.training)
        x = attention.matmul(qkv[2]).transpose(1, 2).reshape(-1, size, channels)
        x = nn.functional.linear(x, self.proj.weight, self.proj.bias)
        x = self._departition(x)
        if shifted:
            x = torch.roll(x, shifts=(self.shift[0], self.shift[1]), dims=(1, 2))
        return x


class WindowAttention2(WindowAttention):
    """Swin V2's shifted-window attention (torchvision's ``ShiftedWindowAttentionV2``): the windows, shift and mask
    of ``WindowAttention``, with cosine attention (the cosine similarity of each query and key, times a learned
    factor per head of at most 100, kept as its logarithm ``logit_scale``) and a continuous position bias: an MLP
    (``cpb_mlp``: 2 → 512, ReLU, 512 → heads) of each relative offset, scaled to [−8, 8] per axis and taken as
    sign · log2(1 + |offset|) / 3, then 16 · sigmoid. The keys' third of the ``qkv`` bias is read as zeros.
    A window has at least 2 positions along each axis (the offsets are divided by its side less one)."""

    def _define_position_bias(self) -> None:
        (wh, ww), heads = self.window, self.heads
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones((heads, 1, 1))))
        rows = torch.arange(-(wh - 1), wh, dtype=torch.float32) / (wh - 1)
        columns = torch.arange(-(ww - 1), ww, dtype=torch.float32) / (ww - 1)
        offsets = torch.stack(torch.meshgrid([rows, columns], indexing="ij")).permute(1, 2, 0).unsqueeze(0) * 8
        self.register_buffer("relative_coords_table", torch.sign(offsets) * torch.log2(offsets.abs() + 1.0) / 3.0)
        self.cpb_mlp = nn.Sequential(nn.Linear(2, 512), nn.ReLU(inplace=True), nn.Linear(512, heads, bias=False))

    def _bias_table(self) -> torch.Tensor:
        # The MLP's weights are read as the projections' are (F.linear), not by calling the submodules. 16·sigmoid
        # applies to each value, here before the table is read rather than after, as torchvision does: the same numbers.
        hidden = nn.functional.linear(self.relative_coords_table, self.cpb_mlp[0].weight, self.cpb_mlp[0].bias)
        table = nn.functional.linear(nn.functional.relu(hidden), self.cpb_mlp[2].weight).view(-1, self.heads)
        return 16 * torch.sigmoid(table)

    def _qkv_bias(self) -> torch.Tensor:
        third = self.qkv.bias.shape[0] // 3
        return torch.cat(
            [self.qkv.bias[:third], torch.zeros_like(self.qkv.bias[third : 2 * third]), self.qkv.bias[2 * third :]]
        )

    def _scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Cosine similarities, times the factor of each head (log(100) = 4.605170185988092 bounds its logarithm)."""
        attention = nn.functional.normalize(q, dim=-1) @ nn.functional.normalize(k, dim=-1).transpose(-2, -1)
        return attention * torch.clamp(self.logit_scale, max=4.605170185988092).exp()


class PartitionAttention(WindowAttention):
    """MaxViT's attention within partitions of N×H×W×C tokens on a grid (torchvision's ``PartitionAttentionLayer``'s
    partitioning around its ``RelativePositionalMultiHeadAttention``): with ``grid_partition`` false, within windows
    of ``partition`` tokens (block attention); with it true, among the ph×pw tokens that lie H/ph and W/pw apart
    (grid attention: torchvision's windows of (H/ph)×(W/pw) with their two axes swapped). A learned bias per head
    and relative offset within the partition, as ``WindowAttention``'s, its index held as a (ph·pw)×(ph·pw) matrix
    as torchvision holds it; the keys are scaled by features^−0.5 (not the head's), as torchvision scales them."""

    def __init__(
        self,
        features: int,
        heads: int,
        partition: int | tuple[int, int],
        grid_partition: bool,
        grid: tuple[int, int],
    ) -> None:
        super().__init__(features, heads, partition, 0, grid)
        self.grid_partition = grid_partition
        size = self.window[0] * self.window[1]
        self.relative_position_index = self.relative_position_index.view(size, size)

    def _scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        k = k * (q.shape[-1] * self.heads) ** -0.5
        return q.matmul(k.transpose(-2, -1))

    def _partition(self, x: torch.Tensor) -> torch.Tensor:
        (height, width), (ph, pw), channels = self.grid, self.window, x.shape[-1]
        if self.grid_partition:
            x = self._split(x, height // ph, width // pw).transpose(1, 2)
        else:
            x = self._split(x, ph, pw)
        return x.reshape(-1, ph * pw, channels)

    def _departition(self, x: torch.Tensor) -> torch.Tensor:
        (height, width), (ph, pw), channels = self.grid, self.window, x.shape[-1]
        if self.grid_partition:
            x = x.reshape(-1, (height // ph) * (width // pw), ph * pw, channels).transpose(1, 2)
            return self._merge(x, height // ph, width // pw)
        return self._merge(x, ph, pw)


class PatchMerge(nn.Module):
    """Swin's 2×2 space-to-depth of N×H×W×C tokens on a grid (the first step of torchvision's PatchMerging): each
    2×2 patch's four tokens side by side, N×H/2×W/2×4C, a grid of odd size padded with zeros first."""

    def __init__(self, pad_height: int, pad_width: int) -> None:
        super().__init__()
        self.pad_height = pad_height
        self.pad_width = pad_width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_height or self.pad_width:
            x = nn.functional.pad(x, (0, 0, 0, self.pad_width, 0, self.pad_height))
        x0 = x[..., 0::2, 0::2, :]
        x1 = x[..., 1::2, 0::2, :]
        x2 = x[..., 0::2, 1::2, :]
        x3 = x[..., 1::2, 1::2, :]
        return torch.cat([x0, x1, x2, x3], -1)
