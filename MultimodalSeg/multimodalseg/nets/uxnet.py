"""3D UX-Net (Lee et al., ICLR 2023): the encoder block, the encoder and the single-branch network.

Written from the specification in METHODS §A.2 (reference MASILab/3DUX-Net @ 14ea46b7, read, not copied):
a ConvNeXt-like block whose 1×1×1 expansion and projection are *grouped* convolutions (groups = C), so the whole
encoder has only 1.31 M parameters at the paper width. The decoder is UNETR-style, built from MONAI blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetrUpBlock
from monai.networks.layers import Conv, DropPath
from torch import nn
from torch.nn import functional as F  # noqa: N812


def check_spatial_dims(spatial_dims: int) -> None:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")


def stage_widths(feature_size: int, depths: Sequence[int]) -> tuple[int, ...]:
    """Channels of the encoder stages: feature_size doubled at each stage (48, 96, 192, 384 in the paper)."""
    if feature_size < 1:
        raise ValueError(f"feature_size must be positive, got {feature_size}")
    if len(depths) < 1 or any(int(d) < 1 for d in depths):
        raise ValueError(f"depths must be positive block counts per stage, got {tuple(depths)}")
    return tuple(feature_size * 2**i for i in range(len(depths)))


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a (B, C, *spatial) tensor, as the reference's ``channels_first`` norm.

    Args:
        channels: C.
        eps: added to the variance (1e-6 in 3D UX-Net).
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Same maths as the reference's hand-written mean/var; F.layer_norm on a channels-last view is fused.
        y = F.layer_norm(x.movedim(1, -1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.movedim(-1, 1)


class UXBlock(nn.Module):
    """The 3D UX-Net block: large-kernel depthwise convolution and grouped pointwise scaling, with a residual.

    ``x + DropPath(γ · PW2(GELU(PW1(LN(DW7(x))))))`` where DW7 is a 7³ depthwise conv, LN a channels-last
    LayerNorm (eps 1e-6), PW1 a 1×1×1 conv C→4C with groups=C, PW2 a 1×1×1 conv 4C→C with groups=C and γ a
    per-channel layer scale.

    Args:
        spatial_dims: 2 or 3.
        channels: C; the shape (B, C, *spatial) is kept.
        kernel_size: of the depthwise convolution (7 in the paper), odd.
        expansion: hidden width factor of the pointwise convolutions (4).
        layer_scale_init: initial γ (1e-6); 0 or less disables the layer scale.
        drop_path: stochastic depth probability of the residual branch.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        *,
        kernel_size: int = 7,
        expansion: int = 4,
        layer_scale_init: float = 1e-6,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        if expansion < 1:
            raise ValueError(f"expansion must be >= 1, got {expansion}")
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {drop_path}")
        conv = Conv[Conv.CONV, spatial_dims]
        self.dwconv = conv(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        self.norm = nn.LayerNorm(channels, eps=1e-6)
        self.pwconv1 = conv(channels, expansion * channels, 1, groups=channels)
        self.act = nn.GELU()
        self.pwconv2 = conv(expansion * channels, channels, 1, groups=channels)
        self.gamma = nn.Parameter(torch.full((channels,), layer_scale_init)) if layer_scale_init > 0 else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x).movedim(1, -1)).movedim(-1, 1)
        y = self.pwconv2(self.act(self.pwconv1(y)))
        if self.gamma is not None:
            y = y * self.gamma.view(-1, *([1] * (y.ndim - 2)))
        return x + self.drop_path(y)


class UXNetEncoder(nn.Module):
    """The 3D UX-Net encoder (``uxnet_conv``): a stride-2 7³ stem, then stages of UX blocks with 2× downsampling.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        widths: channels per stage, e.g. (48, 96, 192, 384).
        depths: UX blocks per stage, e.g. (2, 2, 2, 2).
        kernel_size: depthwise kernel of the blocks (7).
        drop_path_rate: largest stochastic depth; rates grow linearly over all blocks from 0.
        layer_scale_init: initial layer scale γ (1e-6).

    Shapes:
        (B, in_channels, *S) -> list of stage outputs, stage i: (B, widths[i], *S / 2**(i+1)), each passed through
        its own channels-first LayerNorm; the un-normalised tensor continues to the next stage, as in the reference.
        Every spatial size must be divisible by 2**len(depths).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        *,
        widths: Sequence[int],
        depths: Sequence[int],
        kernel_size: int = 7,
        drop_path_rate: float = 0.0,
        layer_scale_init: float = 1e-6,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        if in_channels < 1:
            raise ValueError(f"in_channels must be positive, got {in_channels}")
        if len(widths) != len(depths):
            raise ValueError(f"widths {tuple(widths)} and depths {tuple(depths)} must have the same length")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        conv = Conv[Conv.CONV, spatial_dims]
        self.downsample = nn.ModuleList(
            [nn.Sequential(conv(in_channels, widths[0], 7, stride=2, padding=3), ChannelsFirstLayerNorm(widths[0]))]
        )
        for i in range(1, len(widths)):
            self.downsample.append(
                nn.Sequential(ChannelsFirstLayerNorm(widths[i - 1]), conv(widths[i - 1], widths[i], 2, stride=2))
            )
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.stages = nn.ModuleList()
        start = 0
        for width, depth in zip(widths, depths):
            self.stages.append(
                nn.Sequential(
                    *[
                        UXBlock(spatial_dims, width, kernel_size=kernel_size, layer_scale_init=layer_scale_init,
                                drop_path=rates[start + j])
                        for j in range(depth)
                    ]
                )
            )
            start += depth
        self.norms = nn.ModuleList([ChannelsFirstLayerNorm(w) for w in widths])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for down, stage, norm in zip(self.downsample, self.stages, self.norms):
            x = stage(down(x))
            outs.append(norm(x))
        return outs


class UXNet(nn.Module):
    """Single-branch 3D UX-Net with its UNETR-style residual decoder (53.01 M parameters at feature_size=48).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: classes, background included (46 for the 45 FreeSurfer structures).
        feature_size: width of the first stage; stages double it (48 → 48, 96, 192, 384).
        depths: UX blocks per encoder stage ((2, 2, 2, 2)); the decoder layout needs exactly 4 stages.
        hidden_size: channels of the bottleneck residual block; default ``16 * feature_size`` (768).
        kernel_size: depthwise kernel of the UX blocks (7).
        drop_path_rate: largest stochastic depth in the encoder (0).
        layer_scale_init: initial layer scale γ (1e-6).
        norm_name: norm of the MONAI residual blocks (``"instance"``; ``"batch"`` as in the paper text).

    Shapes:
        (B, in_channels, *S) -> logits (B, out_channels, *S); every spatial size divisible by 16.

    Example:
        >>> net = UXNet(3, 1, 46, feature_size=8)
        >>> net(torch.zeros(1, 1, 32, 32, 32)).shape
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
        kernel_size: int = 7,
        drop_path_rate: float = 0.0,
        layer_scale_init: float = 1e-6,
        norm_name: str | tuple = "instance",
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        depths = four_stages(depths, "depths")
        if out_channels < 1:
            raise ValueError(f"out_channels must be positive, got {out_channels}")
        widths = stage_widths(feature_size, depths)
        hidden_size = 16 * feature_size if hidden_size is None else hidden_size
        if hidden_size < 1:
            raise ValueError(f"hidden_size must be positive, got {hidden_size}")
        self.encoder = UXNetEncoder(spatial_dims, in_channels, widths=widths, depths=depths, kernel_size=kernel_size,
                                    drop_path_rate=drop_path_rate, layer_scale_init=layer_scale_init)

        def basic(cin: int, cout: int) -> UnetrBasicBlock:
            return UnetrBasicBlock(spatial_dims, cin, cout, kernel_size=3, stride=1, norm_name=norm_name,
                                   res_block=True)

        def up(cin: int, cout: int) -> UnetrUpBlock:
            return UnetrUpBlock(spatial_dims, cin, cout, kernel_size=3, upsample_kernel_size=2, norm_name=norm_name,
                                res_block=True)

        # Each residual block doubles the width of the stage that feeds it (48→96, ..., 384→hidden).
        self.enc1 = basic(in_channels, widths[0])
        self.enc2 = basic(widths[0], widths[1])
        self.enc3 = basic(widths[1], widths[2])
        self.enc4 = basic(widths[2], widths[3])
        self.enc5 = basic(widths[3], hidden_size)
        self.dec5 = up(hidden_size, widths[3])
        self.dec4 = up(widths[3], widths[2])
        self.dec3 = up(widths[2], widths[1])
        self.dec2 = up(widths[1], widths[0])
        self.dec1 = basic(widths[0], widths[0])
        # The reference hard-codes 48 input channels here; it is the first stage width.
        self.out = UnetOutBlock(spatial_dims, widths[0], out_channels)
        self.divisor = 2 ** len(depths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_divisible(x, self.divisor)
        outs = self.encoder(x)
        skip1 = self.enc1(x)
        skip2 = self.enc2(outs[0])
        skip3 = self.enc3(outs[1])
        skip4 = self.enc4(outs[2])
        y = self.enc5(outs[3])
        y = self.dec5(y, skip4)
        y = self.dec4(y, skip3)
        y = self.dec3(y, skip2)
        y = self.dec2(y, skip1)
        return self.out(self.dec1(y))


def four_stages(value: Sequence[int] | int, name: str) -> tuple[int, ...]:
    """A per-stage setting for the 4 stages: one int for all, or 4 values."""
    values = (int(value),) * 4 if isinstance(value, int) else tuple(int(v) for v in value)
    if len(values) != 4:
        raise ValueError(f"{name} must give 4 stages, got {values}")
    return values


def check_divisible(x: torch.Tensor, divisor: int) -> None:
    """A clear error instead of a shape mismatch deep in the decoder."""
    if any(s % divisor for s in x.shape[2:]):
        raise ValueError(f"every spatial size must be divisible by {divisor}, got {tuple(x.shape[2:])}")
