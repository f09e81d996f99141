"""Spatial and concurrent spatial-channel squeeze-and-excitation (Roy et al., MICCAI 2018).

MONAI provides the channel SE (``ChannelSELayer``); the spatial SE and the scSE combination are written here,
following the ai-med/squeeze_and_excitation 3D reference as METHODS §B.3 describes it.
"""

from __future__ import annotations

from typing import Literal

import torch
from monai.networks.blocks import ChannelSELayer
from monai.networks.layers.factories import Conv
from torch import nn


class SpatialSELayer(nn.Module):
    """Spatial squeeze-and-excitation: a 1×1×1 conv to one channel, sigmoid, voxel-wise rescaling.

    Args:
        spatial_dims: number of spatial dimensions.
        in_channels: channels C.

    Shapes: (B, C, *S) -> (B, C, *S).
    """

    def __init__(self, spatial_dims: int, in_channels: int) -> None:
        super().__init__()
        self.conv = Conv[Conv.CONV, spatial_dims](in_channels, 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(x))


class ChannelSpatialSELayer(nn.Module):
    """Concurrent spatial and channel squeeze-and-excitation (scSE).

    Args:
        spatial_dims: number of spatial dimensions.
        in_channels: channels C.
        r: reduction ratio of the channel SE's hidden layer. Default 2.
        combine: ``"max"`` (element-wise maximum of the two recalibrated tensors, as the reference code) or
            ``"add"`` (their sum, the alternative the scSE paper discusses). Default ``"max"``.

    Shapes: (B, C, *S) -> (B, C, *S).
    """

    def __init__(self, spatial_dims: int, in_channels: int, *, r: int = 2, combine: Literal["max", "add"] = "max"):
        super().__init__()
        if combine not in ("max", "add"):
            raise ValueError(f"combine must be 'max' or 'add', got {combine!r}")
        self.combine = combine
        self.cse = ChannelSELayer(spatial_dims, in_channels, r=r)
        self.sse = SpatialSELayer(spatial_dims, in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, s = self.cse(x), self.sse(x)
        return torch.maximum(c, s) if self.combine == "max" else c + s
