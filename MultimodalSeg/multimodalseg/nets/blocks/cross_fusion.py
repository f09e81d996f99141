"""Cross-fusion of PET and MR features: two cross-attention blocks, concatenation and a residual (METHODS §A.4).

No reference code exists for this block (METHODS §F.4); it is reconstructed from the paper's description:
CA1 (PET queries MR) and CA2 (MR queries PET), each followed by a projection, concatenated, fused by a 1×1×1
convolution with norm and activation, plus a residual. Two attention kinds:

- ``"channel"`` (default): transposed ("multichannel") attention as in Restormer's MDTA, with the query from one
  modality and keys/values from the other. The score matrix is (C/h)×(C/h) per head, so memory does not grow
  with the number of voxels; this is what keeps 96³ patches trainable.
- ``"spatial"``: token attention over positions (multi-head SDPA), N×N scores with N voxels of the
  stage. Only sensible at the deep stages (12³ and 6³ for a 96³ patch, METHODS §A.4 table).
"""

from __future__ import annotations

from typing import Literal

import torch
from monai.networks.layers import Conv, get_act_layer, get_norm_layer
from torch import nn
from torch.nn import functional as F  # noqa: N812

AttentionKind = Literal["channel", "spatial"]
ResidualKind = Literal["sum", "mean"]


class ChannelCrossAttention(nn.Module):
    """Transposed cross-attention: the query's channels attend to the context's channels.

    Q = DW3(PW(GN(query))); K, V = split(DW3(PW(GN(context)))); per head, with Q and K L2-normalised over the
    positions, A = softmax(τ · Q Kᵀ) ∈ R^{(C/h)×(C/h)}, out = PW(A V). Each output position mixes the context's
    value channels *at that position*; positions interact only through the global channel correlation A.

    Args:
        spatial_dims: 2 or 3.
        channels: C of both inputs and of the output.
        num_heads: h; C must be divisible by h.

    Shapes:
        query, context (B, C, *S) -> (B, C, *S). Score memory: B·h·(C/h)² whatever S is.
    """

    def __init__(self, spatial_dims: int, channels: int, num_heads: int) -> None:
        super().__init__()
        check_heads(channels, num_heads)
        conv = Conv[Conv.CONV, spatial_dims]
        self.num_heads = num_heads
        self.norm_q = nn.GroupNorm(1, channels)
        self.norm_kv = nn.GroupNorm(1, channels)
        self.to_q = nn.Sequential(conv(channels, channels, 1, bias=False),
                                  conv(channels, channels, 3, padding=1, groups=channels, bias=False))
        self.to_kv = nn.Sequential(conv(channels, 2 * channels, 1, bias=False),
                                   conv(2 * channels, 2 * channels, 3, padding=1, groups=2 * channels, bias=False))
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.proj = conv(channels, channels, 1, bias=False)

    def attention(self, query: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The attention matrix (B, h, C/h, C/h) and the values (B, h, C/h, N)."""
        b, c = query.shape[:2]
        q = self.to_q(self.norm_q(query)).reshape(b, self.num_heads, c // self.num_heads, -1)
        k, v = self.to_kv(self.norm_kv(context)).chunk(2, dim=1)
        k = k.reshape(b, self.num_heads, c // self.num_heads, -1)
        v = v.reshape(b, self.num_heads, c // self.num_heads, -1)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        return ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1), v

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        attn, v = self.attention(query, context)
        return self.proj((attn @ v).reshape(query.shape))


class SpatialCrossAttention(nn.Module):
    """Token cross-attention over positions: every query voxel attends to every context voxel.

    Pre-norm (LayerNorm on tokens) of both inputs, linear Q from the query, K and V from the context, multi-head
    scaled dot-product attention, output projection: the layout of MONAI's ``CrossAttentionBlock``, written on
    PyTorch's SDPA here because that block needs ``einops``, which is not a dependency of the backend. SDPA picks a
    memory-efficient kernel, so the N×N scores are not all stored at once.

    Args:
        channels: C of both inputs and of the output.
        num_heads: h; C must be divisible by h.

    Shapes:
        query, context (B, C, *S) -> (B, C, *S); N = prod(S) tokens, compute ∝ N².
    """

    def __init__(self, channels: int, num_heads: int) -> None:
        super().__init__()
        check_heads(channels, num_heads)
        self.num_heads = num_heads
        self.norm_q = nn.LayerNorm(channels)
        self.norm_kv = nn.LayerNorm(channels)
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_kv = nn.Linear(channels, 2 * channels, bias=False)
        self.proj = nn.Linear(channels, channels)

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c = query.shape[:2]

        def heads(t: torch.Tensor) -> torch.Tensor:  # (B, N, C) -> (B, h, N, C/h)
            return t.unflatten(-1, (self.num_heads, c // self.num_heads)).transpose(1, 2)

        q = self.to_q(self.norm_q(query.flatten(2).transpose(1, 2)))
        k, v = self.to_kv(self.norm_kv(context.flatten(2).transpose(1, 2))).chunk(2, dim=-1)
        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))
        out = self.proj(out.transpose(1, 2).flatten(2))
        return out.transpose(1, 2).reshape(query.shape)


class CrossFusionBlock(nn.Module):
    """Cross-fusion (CF) of one stage: CA1(PET→MR) and CA2(MR→PET), concatenated, fused, plus a residual.

    ``F = Act(Norm(PW(cat[CA1(P, M), CA2(M, P)])))``; output ``F + P + M`` (``residual="sum"``, METHODS §A.4
    step 4) or ``F + (P + M) / 2`` (``"mean"``).

    Args:
        spatial_dims: 2 or 3.
        channels: C of both inputs and of the output.
        num_heads: attention heads h.
        attention: ``"channel"`` (memory-bounded) or ``"spatial"`` (over positions).
        residual: ``"sum"`` or ``"mean"``.
        norm_name: norm after the fusion convolution (MONAI name, ``"instance"``).
        act_name: activation after it (MONAI name, LeakyReLU 0.01).

    Shapes:
        pet, mr (B, C, *S) -> (B, C, *S).
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        num_heads: int,
        *,
        attention: AttentionKind = "channel",
        residual: ResidualKind = "sum",
        norm_name: str | tuple = "instance",
        act_name: str | tuple = ("leakyrelu", {"negative_slope": 0.01, "inplace": True}),
    ) -> None:
        super().__init__()
        if attention == "channel":
            self.ca1 = ChannelCrossAttention(spatial_dims, channels, num_heads)
            self.ca2 = ChannelCrossAttention(spatial_dims, channels, num_heads)
        elif attention == "spatial":
            self.ca1 = SpatialCrossAttention(channels, num_heads)
            self.ca2 = SpatialCrossAttention(channels, num_heads)
        else:
            raise ValueError(f"attention must be 'channel' or 'spatial', got {attention!r}")
        if residual not in ("sum", "mean"):
            raise ValueError(f"residual must be 'sum' or 'mean', got {residual!r}")
        self.attention = attention
        self.residual = residual
        self.fuse = nn.Sequential(
            Conv[Conv.CONV, spatial_dims](2 * channels, channels, 1, bias=False),
            get_norm_layer(norm_name, spatial_dims=spatial_dims, channels=channels),
            get_act_layer(act_name),
        )

    def forward(self, pet: torch.Tensor, mr: torch.Tensor) -> torch.Tensor:
        if pet.shape != mr.shape:
            raise ValueError(f"PET and MR features differ in shape: {tuple(pet.shape)} vs {tuple(mr.shape)}")
        fused = self.fuse(torch.cat([self.ca1(pet, mr), self.ca2(mr, pet)], dim=1))
        skip = pet + mr
        return fused + (skip if self.residual == "sum" else 0.5 * skip)


def check_heads(channels: int, num_heads: int) -> None:
    if num_heads < 1 or channels % num_heads:
        raise ValueError(f"channels ({channels}) must be divisible by a positive num_heads ({num_heads})")
