"""DMFNet (Chen et al., MICCAI 2019) with the MIE and SIE modules of the BraTS paper (METHODS §B).

The backbone follows the reference ``models/DMFNet_16x.py`` (METHODS §B.2): with ``use_mie=False,
use_sie=False, out_channels=4, norm="batch"`` it is DMFNet's paper configuration, 3,875,890 parameters
(README: 3.88 M). MIE replaces the raw input by learned modality features (§B.3); SIE gates the encoder stage
outputs before each downsampling (§B.4). Both are switches so the paper's ablation can be run. The forward
returns logits: apply sigmoid for overlapping regions (WT, TC, ET) or softmax for exclusive labels.

Example:
    >>> net = DMFNet(3, 4, 3, **DEMO_CONFIG)
    >>> net(torch.zeros(1, 4, 64, 64, 64)).shape
    torch.Size([1, 3, 64, 64, 64])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv
from torch import nn

from multimodalseg.nets.blocks.mfunit import MFUnit
from multimodalseg.nets.blocks.mie import ModalityInformationExtraction
from multimodalseg.nets.blocks.sie import SpatialInformationEnhancement

# The reference DMFNet: n = 32, channels = 128, groups = 16 (BatchNorm instead of SyncBatchNorm).
PAPER_CONFIG: dict[str, Any] = {"stem_channels": 32, "channels": 128, "groups": 16, "norm": "batch"}
# A small width for the phantom demo bundle and CPU tests: 0.449 M parameters (1.8 MB in fp32) and 6.9 G
# multiply-adds per 128³ window with MIE and SIE (paper config: 55.8 G). MIE runs at full resolution, so its
# width is the main cost at this size: C_m = 8 would give 11.0 G.
DEMO_CONFIG: dict[str, Any] = {
    "stem_channels": 16, "channels": 32, "groups": 8, "mie_channels": 4, "norm": "instance",
}


class DMFNet(nn.Module):
    """Dilated multi-fibre network with optional MIE (input) and SIE (encoder) modules.

    Encoder (input S³, S divisible by 16): conv 3×3×3 stride 2 -> n@S/2 (x1); 3 DMF units -> c@S/4 (x2);
    3 DMF units -> 2c@S/8 (x3); 3 MF units -> 2c@S/16 (x4, widest 3c inside). Decoder: trilinear ×2, concat skip,
    one MF unit, three times; a bias-free 1×1×1 conv to the outputs and trilinear ×2 (the two commute). SIE, when
    on, gates x1, x2 and x3 (the stage outputs before each stride-2 unit); the gated tensors feed both the next stage
    and the skip.

    Args:
        spatial_dims: number of spatial dimensions; only 3 is supported.
        in_channels: input channels (modalities stacked), e.g. 4 for FLAIR, T1, T1ce, T2.
        out_channels: output channels, e.g. 3 for the WT, TC, ET regions (sigmoid) or 4 for softmax labels.
        stem_channels: n, the width of the first conv and the last decoder unit. Default 32.
        channels: c, the width of the second stage (then 2c, 3c). Default 128.
        groups: groups of the fibre convs; n and c must be divisible by it. Default 16.
        dilations: dilations of the DMF units' parallel branches. Default ``(1, 2, 3)``.
        plane_kernel_size: kernel of each unit's second grouped conv; ``(1, 3, 3)`` is the reference's in-plane
            3×3×1 for (Z, Y, X) tensors. Default ``(1, 3, 3)``.
        norm: MONAI norm name or ``(name, kwargs)``, e.g. ``"batch"`` (paper), ``"instance"``,
            ``("group", {"num_groups": 4})``. Default ``"batch"``.
        act: MONAI activation name or ``(name, kwargs)``. Default ``("relu", {"inplace": True})``.
        use_mie: put the MIE block in front of the backbone. Default True.
        mie_channels: C_m, MIE's output width (the first backbone conv then takes C_m channels). Default 16.
        mie_reduction: channel-SE reduction ratio in MIE's scSE. Default 2.
        mie_combine: how scSE joins its branches, ``"max"`` (reference) or ``"add"``. Default ``"max"``.
        use_sie: gate x1, x2, x3 with SIE blocks. Default True.
        sie_dilations: dilations of SIE's parallel branches. Default ``(1, 2, 3)``.

    Shapes: (B, in_channels, Z, Y, X) -> (B, out_channels, Z, Y, X) logits; Z, Y, X divisible by 16.

    Raises:
        ValueError: on unsupported ``spatial_dims``, non-positive widths, widths not divisible by ``groups``, and
            (in ``forward``) on inputs whose spatial size is not divisible by 16.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 4,
        out_channels: int = 3,
        *,
        stem_channels: int = 32,
        channels: int = 128,
        groups: int = 16,
        dilations: Sequence[int] = (1, 2, 3),
        plane_kernel_size: Sequence[int] | int = (1, 3, 3),
        norm: tuple | str = "batch",
        act: tuple | str = ("relu", {"inplace": True}),
        use_mie: bool = True,
        mie_channels: int = 16,
        mie_reduction: int = 2,
        mie_combine: Literal["max", "add"] = "max",
        use_sie: bool = True,
        sie_dilations: Sequence[int] = (1, 2, 3),
    ) -> None:
        super().__init__()
        if spatial_dims != 3:
            raise ValueError(f"DMFNet is 3D only, got spatial_dims={spatial_dims}")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("stem_channels", stem_channels), ("channels", channels), ("groups", groups)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if stem_channels % groups or channels % groups:
            raise ValueError(f"stem_channels={stem_channels} and channels={channels} must be divisible by "
                             f"groups={groups}")
        if stem_channels < 4:
            raise ValueError(f"stem_channels must be at least 4, got {stem_channels}")
        if use_mie and mie_channels < 2:
            raise ValueError(f"mie_channels must be at least 2, got {mie_channels}")
        self.use_mie, self.use_sie = use_mie, use_sie
        n, c = stem_channels, channels
        unit = {"groups": groups, "plane_kernel_size": plane_kernel_size, "norm": norm, "act": act}
        dmf = {**unit, "dilations": tuple(dilations)}

        self.mie = (
            ModalityInformationExtraction(3, in_channels, mie_channels, r=mie_reduction, combine=mie_combine,
                                          norm=norm, act=act)
            if use_mie else None
        )
        # No norm on the first conv (reference): it sees the raw, z-scored modalities or MIE's output.
        self.encoder1 = Conv[Conv.CONV, 3](mie_channels if use_mie else in_channels, n, 3, stride=2, padding=1,
                                            bias=False)
        self.encoder2 = nn.Sequential(
            MFUnit(3, n, c, stride=2, **dmf), MFUnit(3, c, c, **dmf), MFUnit(3, c, c, **dmf)
        )
        self.encoder3 = nn.Sequential(
            MFUnit(3, c, 2 * c, stride=2, **dmf), MFUnit(3, 2 * c, 2 * c, **dmf), MFUnit(3, 2 * c, 2 * c, **dmf)
        )
        self.encoder4 = nn.Sequential(
            MFUnit(3, 2 * c, 3 * c, stride=2, **unit), MFUnit(3, 3 * c, 3 * c, **unit),
            MFUnit(3, 3 * c, 2 * c, **unit),
        )
        sie = {"dilations": tuple(sie_dilations), "groups": groups, "norm": norm, "act": act}
        self.sie = (
            nn.ModuleList(SpatialInformationEnhancement(3, width, **sie) for width in (n, c, 2 * c))
            if use_sie else None
        )
        self.decoder1 = MFUnit(3, 4 * c, 2 * c, **unit)
        self.decoder2 = MFUnit(3, 3 * c, c, **unit)
        self.decoder3 = MFUnit(3, c + n, n, **unit)
        self.head = Conv[Conv.CONV, 3](n, out_channels, 1, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        # As the reference: Kaiming-normal convs, norm scale 1 and shift 0 (SE linears keep PyTorch's default).
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _gate(self, stage: int, x: torch.Tensor) -> torch.Tensor:
        return self.sie[stage](x) if self.sie is not None else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or any(s % 16 for s in x.shape[2:]):
            raise ValueError(f"DMFNet expects (B, C, Z, Y, X) with Z, Y, X divisible by 16, got {tuple(x.shape)}")
        if self.mie is not None:
            x = self.mie(x)
        x1 = self._gate(0, self.encoder1(x))
        x2 = self._gate(1, self.encoder2(x1))
        x3 = self._gate(2, self.encoder3(x2))
        y = self.encoder4(x3)
        y = self.decoder1(torch.cat([x3, _up(y)], dim=1))
        y = self.decoder2(torch.cat([x2, _up(y)], dim=1))
        y = self.decoder3(torch.cat([x1, _up(y)], dim=1))
        # head(up(y)) computed as up(head(y)): the bias-free 1×1×1 head and trilinear upsampling are both linear
        # (one over channels, one over space), so they commute exactly; this order upsamples out_channels maps
        # instead of stem_channels ones and runs the head at half resolution (about 10 % of a window at demo width).
        return _up(self.head(y))


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="trilinear", align_corners=False)
