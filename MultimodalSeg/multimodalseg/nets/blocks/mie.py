"""MIE, modality information extraction at the network input (METHODS §B.3; details are a reconstruction)."""

from __future__ import annotations

from typing import Literal

import torch
from monai.networks.blocks import Convolution
from torch import nn

from multimodalseg.nets.blocks.attention import ChannelSpatialSELayer


class ModalityInformationExtraction(nn.Module):
    """Two conv-norm-activation groups over the stacked modalities, then scSE.

    The modalities are stacked on the channel axis; the two 3×3×3 convs mix them, and the concurrent
    spatial/channel SE reweights the mixed features per voxel and per channel before the backbone.

    Args:
        spatial_dims: number of spatial dimensions.
        in_channels: number of modalities M.
        out_channels: C_m, the width handed to the backbone. Default 16.
        r: channel-SE reduction ratio. Default 2.
        combine: how scSE joins its two branches, ``"max"`` or ``"add"``. Default ``"max"``.
        norm: MONAI norm name or ``(name, kwargs)``. Default ``"batch"``.
        act: MONAI activation name or ``(name, kwargs)``. Default ``"relu"``.

    Shapes: (B, M, *S) -> (B, C_m, *S).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int = 16,
        *,
        r: int = 2,
        combine: Literal["max", "add"] = "max",
        norm: tuple | str = "batch",
        act: tuple | str = "relu",
    ) -> None:
        super().__init__()
        # Bias-free: each conv is followed by a norm that removes a constant offset anyway.
        cna = {"kernel_size": 3, "norm": norm, "act": act, "bias": False}
        self.conv1 = Convolution(spatial_dims, in_channels, out_channels, **cna)
        self.conv2 = Convolution(spatial_dims, out_channels, out_channels, **cna)
        self.scse = ChannelSpatialSELayer(spatial_dims, out_channels, r=r, combine=combine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scse(self.conv2(self.conv1(x)))
