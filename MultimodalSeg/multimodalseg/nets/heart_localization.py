"""Heart localisation network: heatmap regression of the heart centre on a coarse whole-image grid (METHODS §C.3).

Payer's MM-WHS localisation: a U-Net with the same width at every level (64), average-pool down-sampling,
linear up-sampling, ReLU and no normalisation, regressing one Gaussian heatmap (σ = 1.5 voxels) of the heart
centre with an L2 loss, on the whole image resampled to 32³ at 10 mm (CT) / 12 mm (MR). The centre is the heatmap's
arg-max: ``multimodalseg.postprocessing.heart`` turns it into a physical point and crops the ROI around it. With
:data:`PAPER_CONFIG` (1 input, 1 output) it has 1.77 M parameters.

Example:
    >>> net = HeartLocalizationNet(3, 1, 1, **DEMO_CONFIG)
    >>> net(torch.zeros(1, 1, 32, 32, 32)).shape
    torch.Size([1, 1, 32, 32, 32])
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Pool
from torch import nn

PAPER_CONFIG: dict[str, Any] = {"features": 64, "levels": 4}
DEMO_CONFIG: dict[str, Any] = {"features": 16, "levels": 4}


class HeartLocalizationNet(nn.Module):
    """Constant-width U-Net regressing landmark heatmaps (linear output, one channel per landmark).

    Per level: ``convs_per_level`` × [conv 3³, ``features``, act, optional norm]; between levels average pooling ×2
    down and (tri)linear up-sampling ×2 up; the up-sampled feature is concatenated with the level's skip and
    convolved again. Head: 1×1×1 conv to ``out_channels`` heatmaps (no activation: the regression target is a
    Gaussian with peak 1).

    Args:
        spatial_dims: number of spatial dimensions (2 or 3).
        in_channels: image channels (1).
        out_channels: heatmaps (1: the heart centre).
        features: width at every level. Default 64.
        levels: resolution levels. Default 4.
        convs_per_level: convs per level on each side. Default 2.
        act: MONAI activation name or ``(name, kwargs)``. Default ``"relu"``.
        norm: MONAI norm name or ``(name, kwargs)``, None for none (Payer). Default None.

    Shapes: (B, in_channels, *S) -> (B, out_channels, *S); each S divisible by 2^(levels - 1).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int = 1,
        *,
        features: int = 64,
        levels: int = 4,
        convs_per_level: int = 2,
        act: str | tuple = "relu",
        norm: str | tuple | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if min(in_channels, out_channels, features, levels, convs_per_level) < 1:
            raise ValueError("in_channels, out_channels, features, levels and convs_per_level must be >= 1")
        self.levels, self.spatial_dims = levels, spatial_dims

        def block(c_in: int) -> nn.Sequential:
            return nn.Sequential(*(Convolution(spatial_dims, c, features, kernel_size=3, act=act, norm=norm)
                                   for c in [c_in] + [features] * (convs_per_level - 1)))

        self.down = nn.ModuleList(block(in_channels if level == 0 else features) for level in range(levels))
        self.up = nn.ModuleList(block(2 * features) for _ in range(levels - 1))
        self.pool = Pool[Pool.AVG, spatial_dims](kernel_size=2)
        self.head = Convolution(spatial_dims, features, out_channels, kernel_size=1, conv_only=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = 2 ** (self.levels - 1)
        if any(s % factor for s in x.shape[2:]):
            raise ValueError(f"input size {tuple(x.shape[2:])} must be divisible by {factor}")
        skips = []
        for level, block in enumerate(self.down):
            x = block(x if level == 0 else self.pool(x))
            skips.append(x)
        mode = "trilinear" if self.spatial_dims == 3 else "bilinear"
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[2:], mode=mode, align_corners=False)
            x = block(torch.cat([skip, x], dim=1))
        return self.head(x)
