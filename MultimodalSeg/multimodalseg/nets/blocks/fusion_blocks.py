"""2D blocks of CDDFuse (Zhao et al., CVPR 2023) for the spine CT-MR fusion network (METHODS §E.2).

MONAI provides the Restormer pieces: ``CABlock`` is MDTA (transposed, channel-wise attention) and
``cablock.FeedForward`` is GDFN. Written here: the per-pixel channel LayerNorm CDDFuse uses (MONAI's
``MDTATransformerBlock`` normalises with InstanceNorm instead), the Lite-Transformer base block, its grouped gated
MLP, the inverted-residual unit and the invertible (INN) detail node, and the plain CNN detail branch the spine
paper describes.

All tensors are (B, C, H, W).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.blocks.cablock import CABlock, FeedForward
from torch import nn


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of every pixel, with weight and bias (CDDFuse's ``WithBias`` LayerNorm).

    Args:
        channels: C.
        eps: added to the (biased) variance. Default 1e-5.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.movedim(1, -1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.movedim(-1, 1)


class ChannelAttention(CABlock):
    """Multi-head transposed attention: a (C/h × C/h) attention map per head over all pixels.

    MONAI's ``CABlock`` with its parameters and attention function, and a forward written with plain reshapes
    (``CABlock.forward`` needs einops, which is not a dependency here). With ``full_qkv_conv=False`` this is
    Restormer's MDTA (1×1 conv, depthwise 3×3). With ``full_qkv_conv=True`` the 3×3 mixing conv is a full
    (dense) conv: CDDFuse's ``AttentionBase`` in the Lite-Transformer base encoder.

    Args:
        dim: channels C, divisible by ``num_heads``.
        num_heads: h.
        bias: biases in the convs.
        full_qkv_conv: dense instead of depthwise 3×3 conv on q, k, v.
    """

    def __init__(self, dim: int, num_heads: int, bias: bool = False, full_qkv_conv: bool = False) -> None:
        if dim % num_heads:
            raise ValueError(f"channels ({dim}) must be divisible by num_heads ({num_heads})")
        super().__init__(2, dim, num_heads, bias)
        if full_qkv_conv:
            self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv_dwconv(self.qkv(x))
        # "b (head c) h w -> b head c (h w)": the channel index is head * (C/h) + c
        q, k, v = (t.reshape(b, self.num_heads, c // self.num_heads, h * w) for t in qkv.chunk(3, dim=1))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        out = self._attention_fn(q, k, v)
        return self.project_out(out.reshape(b, c, h, w))


class RestormerBlock(nn.Module):
    """x + MDTA(LN(x)), then x + GDFN(LN(x)) (Restormer's transformer block with channel LayerNorm).

    Args:
        dim: channels.
        num_heads: attention heads.
        ffn_expansion: GDFN hidden width factor (2 in CDDFuse).
        bias: conv biases (False in CDDFuse).
    """

    def __init__(self, dim: int, num_heads: int, ffn_expansion: float = 2.0, bias: bool = False) -> None:
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim)
        self.attn = ChannelAttention(dim, num_heads, bias)
        self.norm2 = ChannelLayerNorm(dim)
        self.ffn = FeedForward(2, dim, ffn_expansion, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class GroupedGatedMlp(nn.Module):
    """CDDFuse's "flattened" FFN: 1×1 C→2h, grouped 3×3 (h groups of 2 channels), GELU(x1)·x2, 1×1 h→C.

    Unlike GDFN (depthwise, 2h groups) each group of the 3×3 conv mixes two channels.

    Args:
        dim: channels C.
        expansion: h = C · expansion (1 in CDDFuse).
        bias: conv biases.
    """

    def __init__(self, dim: int, expansion: float = 1.0, bias: bool = False) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        if hidden < 1:
            raise ValueError(f"MLP expansion {expansion} leaves no hidden channels")
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class LiteTransformerBlock(nn.Module):
    """The base (low-frequency) encoder: x + Attention(LN(x)), then x + MLP(LN(x)) (CDDFuse ``BaseFeatureExtraction``).

    The attention is :class:`ChannelAttention` with a dense 3×3 qkv conv and a learnable scale per head; the MLP is
    :class:`GroupedGatedMlp`. About 0.36 M parameters at 64 channels.

    Args:
        dim: channels.
        num_heads: attention heads.
        mlp_expansion: MLP hidden width factor. Default 1.
        bias: conv biases. Default False.
    """

    def __init__(self, dim: int, num_heads: int, mlp_expansion: float = 1.0, bias: bool = False) -> None:
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim)
        self.attn = ChannelAttention(dim, num_heads, bias, full_qkv_conv=True)
        self.norm2 = ChannelLayerNorm(dim)
        self.mlp = GroupedGatedMlp(dim, mlp_expansion, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class InvertedResidual(nn.Sequential):
    """MobileNetV2 unit without norms: 1×1 in→h, ReLU6, reflect-padded depthwise 3×3, ReLU6, 1×1 h→out (no biases).

    Args:
        in_channels, out_channels: widths.
        expansion: h = in_channels · expansion. Default 2.
    """

    def __init__(self, in_channels: int, out_channels: int, expansion: float = 2.0) -> None:
        hidden = int(in_channels * expansion)
        super().__init__(
            nn.Conv2d(in_channels, hidden, 1, bias=False),
            nn.ReLU6(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(hidden, hidden, 3, groups=hidden, bias=False),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
        )


class DetailNode(nn.Module):
    """One invertible coupling step on the two channel halves (z1, z2) of the detail features.

    [z1, z2] ← split(1×1 conv(cat(z1, z2))); z2 ← z2 + φ(z1); z1 ← z1 ⊙ exp(ρ(z2)) + η(z2), with φ, ρ, η
    :class:`InvertedResidual` units (C/2 → C → C/2).

    Args:
        dim: C, even.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        half = dim // 2
        self.phi = InvertedResidual(half, half)
        self.rho = InvertedResidual(half, half)
        self.eta = InvertedResidual(half, half)
        self.shuffle = nn.Conv2d(dim, dim, kernel_size=1, bias=True)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z1, z2 = self.shuffle(torch.cat((z1, z2), dim=1)).chunk(2, dim=1)
        z2 = z2 + self.phi(z1)
        z1 = z1 * torch.exp(self.rho(z2)) + self.eta(z2)
        return z1, z2


class INNDetailExtractor(nn.Module):
    """CDDFuse's detail (high-frequency) encoder: ``num_layers`` :class:`DetailNode` steps on the channel halves.

    Args:
        dim: channels, even.
        num_layers: coupling steps (3 in the encoder, 1 in the stage-II detail fusion layer).
    """

    def __init__(self, dim: int, num_layers: int = 3) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"the INN detail branch splits the channels in halves: {dim} is odd")
        self.nodes = nn.ModuleList(DetailNode(dim) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z1, z2 = x.chunk(2, dim=1)
        for node in self.nodes:
            z1, z2 = node(z1, z2)
        return torch.cat((z1, z2), dim=1)


class CNNDetailExtractor(nn.Module):
    """The spine paper's detail encoder, a plain CNN: ``num_layers`` residual units x + IR(x).

    The IR units are CDDFuse's :class:`InvertedResidual` (C → 2C → C), so the branch has about as many parameters
    as the INN one and keeps its reflect padding.

    Args:
        dim: channels.
        num_layers: residual units.
    """

    def __init__(self, dim: int, num_layers: int = 3) -> None:
        super().__init__()
        self.units = nn.ModuleList(InvertedResidual(dim, dim) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for unit in self.units:
            x = x + unit(x)
        return x
