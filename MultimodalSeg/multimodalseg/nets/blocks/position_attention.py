"""DANet's position attention module (PAM, Fu et al., CVPR 2019) for 2D or 3D feature maps (METHODS §C.4).

Reference: junfu1115/DANet ``encoding/nn/da_att.py`` (2D); written here for any number of spatial dimensions.
Every position attends to every other one, so use it at the bottom of a network (8³ = 512 tokens at a 64³ input:
a 512 × 512 score matrix per sample).
"""

from __future__ import annotations

import torch
from monai.networks.layers.factories import Conv
from torch import nn


class PositionAttention(nn.Module):
    """Self-attention over positions with a learned residual weight γ, initialised to 0.

    With A the input reshaped to (B, C, N), N the number of positions:
    Q = W_q A, K = W_k A (C -> C/r, 1×1 convs), V = W_v A (C -> C); S = softmax_j(Qᵀ K) (B, N, N);
    E = γ · V Sᵀ + A. Because γ starts at 0 the block is the identity at initialisation and the network learns
    how much long-range context to mix in.

    Args:
        spatial_dims: number of spatial dimensions (2 or 3).
        in_channels: channels C.
        reduction: r, the query/key width is C / r. Default 8 (DANet).

    Shapes: (B, C, *S) -> (B, C, *S).
    """

    def __init__(self, spatial_dims: int, in_channels: int, *, reduction: int = 8) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if reduction < 1 or in_channels % reduction:
            raise ValueError(f"in_channels ({in_channels}) must be divisible by reduction ({reduction})")
        conv = Conv[Conv.CONV, spatial_dims]
        self.query = conv(in_channels, in_channels // reduction, kernel_size=1)
        self.key = conv(in_channels, in_channels // reduction, kernel_size=1)
        self.value = conv(in_channels, in_channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The attention map S (B, N, N): row i is where position i looks (rows sum to 1)."""
        q = self.query(x).flatten(2)  # (B, C/r, N)
        k = self.key(x).flatten(2)
        return torch.softmax(torch.bmm(q.transpose(1, 2), k), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.value(x).flatten(2)  # (B, C, N)
        out = torch.bmm(v, self.attention(x).transpose(1, 2))  # out[:, :, i] = Σ_j S[i, j] v[:, :, j]
        return self.gamma * out.view_as(x) + x
