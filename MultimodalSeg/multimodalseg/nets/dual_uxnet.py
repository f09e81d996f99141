"""Dual-branch PET/MR 3D UX-Net with a cross-fusion block at each of the four stages (METHODS §A.3, §A.4).

The PET and MR encoders are separate 3D UX-Net encoders (no weight sharing), each followed by its own residual
blocks; the two feature maps of each stage are fused by a :class:`CrossFusionBlock`, and the fused maps feed the
skips and the bottleneck of one UNETR-style decoder. The layout follows the paper's description; the block details
are a reconstruction (METHODS §F.4) and every open point of METHODS §A.6 is a constructor switch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetrUpBlock
from torch import nn

from multimodalseg.nets.blocks.cross_fusion import CrossFusionBlock, ResidualKind
from multimodalseg.nets.uxnet import UXNetEncoder, check_divisible, check_spatial_dims, four_stages, stage_widths

FusionMode = Literal["channel", "spatial"]
Level0Input = Literal["both", "pet", "mr"]

# A small width of the same class for the demo bundle: 1.62 M parameters, 6.5 MB of float32 weights.
DEMO_CONFIG: dict = {"feature_size": 6}


class DualUXNet(nn.Module):
    """Dual 3D UX-Net encoders (PET, MR) with cross-fusion and a UNETR-style residual decoder.

    For a 96³ patch at ``feature_size=48``: the PET and MR encoders give 48@48³, 96@24³, 192@12³, 384@6³ each; a
    residual block per branch and stage doubles the width (96, 192, 384, 768); CF_i fuses the two maps of stage i
    into e_i. e0 = residual block on the raw input (48@96³). The decoder goes up from e4 with skips e3, e2, e1, e0,
    then a residual block and a 1×1×1 output conv. 94.5 M parameters at the paper width.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels; the first ``pet_channels`` are PET, the rest MR (the task's input order:
            pet, t1). 2 for the PET/MR brain task.
        out_channels: classes with background (46 for the 45 FreeSurfer structures).
        feature_size: width of the first encoder stage (48); the stages double it.
        depths: UX blocks per encoder stage ((2, 2, 2, 2)); exactly 4 stages.
        hidden_size: channels of e4, the bottleneck; default ``16 * feature_size`` (768).
        fusion: ``"channel"`` (default): channel-wise cross-attention at every stage, memory-bounded at 96³;
            ``"spatial"``: attention over positions at the stages in ``spatial_stages``, channel-wise elsewhere.
        spatial_stages: 1-based stages that use spatial attention when ``fusion="spatial"`` ((3, 4): 12³ and 6³
            tokens for a 96³ patch).
        fusion_heads: attention heads per stage ((1, 2, 4, 8)); each stage's fused width must be divisible.
        fusion_residual: ``"sum"`` (e = F + P + M) or ``"mean"`` (e = F + (P + M)/2).
        level0_input: what e0 sees: ``"both"`` modalities (default), only ``"pet"`` or only ``"mr"``.
        shared_bottleneck: the lighter variant: stage 4 residual blocks stay at 8·feature_size, CF4 runs there,
            and one shared residual block widens the fused map to ``hidden_size`` (81.8 M at the paper width).
        pet_channels: how many leading input channels are PET (1).
        kernel_size: depthwise kernel of the UX blocks (7).
        drop_path_rate: largest stochastic depth in the encoders (0).
        layer_scale_init: initial layer scale γ (1e-6).
        norm_name: norm of the residual blocks and of the fusion convolutions (``"instance"``).

    Shapes:
        (B, in_channels, *S) -> logits (B, out_channels, *S); every spatial size divisible by 16.

    Example:
        >>> net = DualUXNet(3, 2, 46, feature_size=6)
        >>> net(torch.zeros(1, 2, 32, 32, 32)).shape
        torch.Size([1, 46, 32, 32, 32])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        feature_size: int = 48,
        depths: Sequence[int] = (2, 2, 2, 2),
        hidden_size: int | None = None,
        fusion: FusionMode = "channel",
        spatial_stages: Sequence[int] = (3, 4),
        fusion_heads: Sequence[int] = (1, 2, 4, 8),
        fusion_residual: ResidualKind = "sum",
        level0_input: Level0Input = "both",
        shared_bottleneck: bool = False,
        pet_channels: int = 1,
        kernel_size: int = 7,
        drop_path_rate: float = 0.0,
        layer_scale_init: float = 1e-6,
        norm_name: str | tuple = "instance",
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        depths = four_stages(depths, "depths")
        heads = four_stages(fusion_heads, "fusion_heads")
        if not 1 <= pet_channels < in_channels:
            raise ValueError(f"in_channels ({in_channels}) must hold pet_channels ({pet_channels}) and >= 1 MR channel")
        if out_channels < 1:
            raise ValueError(f"out_channels must be positive, got {out_channels}")
        if fusion not in ("channel", "spatial"):
            raise ValueError(f"fusion must be 'channel' or 'spatial', got {fusion!r}")
        if any(s not in (1, 2, 3, 4) for s in spatial_stages):
            raise ValueError(f"spatial_stages must be stages 1..4, got {tuple(spatial_stages)}")
        if level0_input not in ("both", "pet", "mr"):
            raise ValueError(f"level0_input must be 'both', 'pet' or 'mr', got {level0_input!r}")
        widths = stage_widths(feature_size, depths)
        hidden_size = 16 * feature_size if hidden_size is None else hidden_size
        if hidden_size < 1:
            raise ValueError(f"hidden_size must be positive, got {hidden_size}")
        self.pet_channels = pet_channels
        self.level0_input = level0_input
        self.fusion = fusion
        self.divisor = 2 ** len(depths)

        def basic(cin: int, cout: int) -> UnetrBasicBlock:
            return UnetrBasicBlock(spatial_dims, cin, cout, kernel_size=3, stride=1, norm_name=norm_name,
                                   res_block=True)

        def up(cin: int, cout: int) -> UnetrUpBlock:
            return UnetrUpBlock(spatial_dims, cin, cout, kernel_size=3, upsample_kernel_size=2, norm_name=norm_name,
                                res_block=True)

        def encoder(cin: int) -> UXNetEncoder:
            return UXNetEncoder(spatial_dims, cin, widths=widths, depths=depths, kernel_size=kernel_size,
                                drop_path_rate=drop_path_rate, layer_scale_init=layer_scale_init)

        # Fused width per stage: twice the stage width, the bottleneck at hidden_size (or 8·fs when shared).
        fused = [2 * w for w in widths[:3]] + [widths[3] if shared_bottleneck else hidden_size]
        self.pet_encoder = encoder(pet_channels)
        self.mr_encoder = encoder(in_channels - pet_channels)
        self.pet_res = nn.ModuleList([basic(w, f) for w, f in zip(widths, fused)])
        self.mr_res = nn.ModuleList([basic(w, f) for w, f in zip(widths, fused)])
        self.fusions = nn.ModuleList(
            [
                CrossFusionBlock(
                    spatial_dims, f, h,
                    attention="spatial" if fusion == "spatial" and stage in spatial_stages else "channel",
                    residual=fusion_residual, norm_name=norm_name,
                )
                for stage, (f, h) in enumerate(zip(fused, heads), start=1)
            ]
        )
        self.bottleneck = basic(widths[3], hidden_size) if shared_bottleneck else nn.Identity()
        level0_channels = {"both": in_channels, "pet": pet_channels, "mr": in_channels - pet_channels}[level0_input]
        self.level0 = basic(level0_channels, widths[0])
        self.up4 = up(hidden_size, fused[2])
        self.up3 = up(fused[2], fused[1])
        self.up2 = up(fused[1], fused[0])
        self.up1 = up(fused[0], widths[0])
        self.head = basic(widths[0], widths[0])
        self.out = UnetOutBlock(spatial_dims, widths[0], out_channels)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The fused features [e0, e1, e2, e3, e4] (e4 is the bottleneck)."""
        check_divisible(x, self.divisor)
        pet, mr = x[:, : self.pet_channels], x[:, self.pet_channels :]
        level0 = {"both": x, "pet": pet, "mr": mr}[self.level0_input]
        feats = [self.level0(level0)]
        for p, m, pet_res, mr_res, fuse in zip(
            self.pet_encoder(pet), self.mr_encoder(mr), self.pet_res, self.mr_res, self.fusions
        ):
            feats.append(fuse(pet_res(p), mr_res(m)))
        feats[4] = self.bottleneck(feats[4])
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e0, e1, e2, e3, e4 = self.encode(x)
        y = self.up4(e4, e3)
        y = self.up3(y, e2)
        y = self.up2(y, e1)
        y = self.up1(y, e0)
        return self.out(self.head(y))
