"""SIE, spatial information enhancement (METHODS §B.4): f_out = (f_in ⊗ V) ⊕ f_in.

The paper gives the formula and says V comes from a multi-scale dilated convolution group; the branches,
their fusion and the sigmoid gate are a reconstruction (METHODS §B.4 [recon]).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv
from torch import nn


class SpatialInformationEnhancement(nn.Module):
    """Multi-scale dilated gate V applied residually: ``x * V(x) + x``.

    V = sigmoid(conv1×1×1(concat_d(ReLU(Norm(grouped conv3×3×3 with dilation d)(x))))). The sigmoid keeps
    1 + V in (1, 2), so the block can only amplify features, never suppress them.

    Args:
        spatial_dims: number of spatial dimensions.
        channels: C, unchanged by the block; divisible by ``groups``.
        dilations: dilation of each parallel branch. Default ``(1, 2, 3)``.
        groups: groups of the dilated convs. Default 16.
        norm: MONAI norm name or ``(name, kwargs)``. Default ``"batch"``.
        act: MONAI activation name or ``(name, kwargs)``. Default ``"relu"``.

    Shapes: (B, C, *S) -> (B, C, *S).
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        *,
        dilations: Sequence[int] = (1, 2, 3),
        groups: int = 16,
        norm: tuple | str = "batch",
        act: tuple | str = "relu",
    ) -> None:
        super().__init__()
        if channels % groups:
            raise ValueError(f"SIE channels {channels} must be divisible by groups={groups}")
        if not dilations or any(d < 1 for d in dilations):
            raise ValueError(f"SIE dilations must be positive integers, got {tuple(dilations)}")
        self.branches = nn.ModuleList(
            Convolution(spatial_dims, channels, channels, kernel_size=3, dilation=d, groups=groups, norm=norm,
                        act=act, bias=False)
            for d in dilations
        )
        self.fuse = Conv[Conv.CONV, spatial_dims](channels * len(dilations), channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = torch.sigmoid(self.fuse(torch.cat([branch(x) for branch in self.branches], dim=1)))
        return x * v + x
