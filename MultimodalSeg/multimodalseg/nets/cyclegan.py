"""The networks of CM-TranCaF's modality transfer (MTN, METHODS §C.2): a 3D ResNet generator, PatchGAN critics.

The generator is junyanz's CycleGAN ``ResnetGenerator`` made 3D [recon]: c7s1-32, d64, d128, 6 residual blocks at
128 channels, u64, u32, c7s1-1, tanh; instance norm (no affine, so the convs keep their bias) and replication
padding. With :data:`GENERATOR_PAPER_CONFIG` it has 5.89 M parameters (METHODS: 5.89 M). The discriminator is
MONAI's ``PatchDiscriminator`` (64 channels, 3 strided layers, instance norm: 11.05 M; a 64³ input gives a 6³
patch map). Images are scaled to [-1, 1] for both (see ``training.cyclegan``).

Example:
    >>> g = ResnetGenerator(3, 1, 1, **GENERATOR_DEMO_CONFIG)
    >>> g(torch.zeros(1, 1, 32, 32, 32)).shape
    torch.Size([1, 1, 32, 32, 32])
"""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.layers.factories import Conv
from monai.networks.layers.utils import get_act_layer, get_norm_layer
from monai.networks.nets import PatchDiscriminator
from torch import nn

GENERATOR_PAPER_CONFIG: dict[str, Any] = {"channels": 32, "num_downsampling": 2, "num_blocks": 6}
GENERATOR_DEMO_CONFIG: dict[str, Any] = {"channels": 8, "num_downsampling": 2, "num_blocks": 3}
DISCRIMINATOR_PAPER_CONFIG: dict[str, Any] = {"channels": 64, "num_layers_d": 3}
DISCRIMINATOR_DEMO_CONFIG: dict[str, Any] = {"channels": 8, "num_layers_d": 2}
_EPS = 1e-3


class _ResidualBlock(nn.Module):
    """x + [conv3 - norm - act - (dropout) - conv3 - norm](x), replication padding."""

    def __init__(self, spatial_dims: int, channels: int, norm: str | tuple, act: str | tuple, dropout: float) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        layers: list[nn.Module] = [
            conv(channels, channels, 3, padding=1, padding_mode="replicate"),
            get_norm_layer(norm, spatial_dims, channels), get_act_layer(act),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [conv(channels, channels, 3, padding=1, padding_mode="replicate"),
                   get_norm_layer(norm, spatial_dims, channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """Image-to-image ResNet generator (Johnson et al. / CycleGAN), any of 2D or 3D.

    Args:
        spatial_dims: number of spatial dimensions (2 or 3).
        in_channels: input image channels (1).
        out_channels: output image channels (1).
        channels: width of the first conv (ngf); doubled at each down-sampling. Default 32.
        num_downsampling: stride-2 convs (and as many up-sampling transposed convs). Default 2.
        num_blocks: residual blocks at the bottom. Default 6.
        norm: MONAI norm name or ``(name, kwargs)``. Default ``"instance"``.
        act: MONAI activation name or ``(name, kwargs)``. Default ``"relu"``.
        dropout: dropout inside the residual blocks. Default 0.
        input_skip: near-identity start [recon, not in junyanz's generator]: the output is
            tanh(atanh(x) + f(x)) with the last conv zero-initialised, so the untrained generator returns its input
            and training learns an intensity correction in tanh's pre-activation space; anatomy is kept from the
            first step, which helps short trainings. Needs ``in_channels == out_channels``. Default False.

    Shapes: (B, in_channels, *S) -> (B, out_channels, *S) in [-1, 1] (tanh); each S divisible by
    2^num_downsampling.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        channels: int = 32,
        num_downsampling: int = 2,
        num_blocks: int = 6,
        norm: str | tuple = "instance",
        act: str | tuple = "relu",
        dropout: float = 0.0,
        input_skip: bool = False,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if input_skip and in_channels != out_channels:
            raise ValueError(f"input_skip needs in_channels == out_channels, got {in_channels} and {out_channels}")
        if min(in_channels, out_channels, channels) < 1 or num_downsampling < 0 or num_blocks < 0:
            raise ValueError("channels must be >= 1, num_downsampling and num_blocks >= 0")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        conv = Conv[Conv.CONV, spatial_dims]
        up = Conv[Conv.CONVTRANS, spatial_dims]
        self.factor = 2**num_downsampling
        layers: list[nn.Module] = [conv(in_channels, channels, 7, padding=3, padding_mode="replicate"),
                                   get_norm_layer(norm, spatial_dims, channels), get_act_layer(act)]
        c = channels
        for _ in range(num_downsampling):
            layers += [conv(c, 2 * c, 3, stride=2, padding=1), get_norm_layer(norm, spatial_dims, 2 * c),
                       get_act_layer(act)]
            c *= 2
        layers += [_ResidualBlock(spatial_dims, c, norm, act, dropout) for _ in range(num_blocks)]
        for _ in range(num_downsampling):
            layers += [up(c, c // 2, 3, stride=2, padding=1, output_padding=1),
                       get_norm_layer(norm, spatial_dims, c // 2), get_act_layer(act)]
            c //= 2
        layers.append(conv(c, out_channels, 7, padding=3, padding_mode="replicate"))
        self.model = nn.Sequential(*layers)
        self.input_skip = input_skip
        if input_skip:
            nn.init.zeros_(layers[-1].weight)
            nn.init.zeros_(layers[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(s % self.factor for s in x.shape[2:]):
            raise ValueError(f"input size {tuple(x.shape[2:])} must be divisible by {self.factor}")
        out = self.model(x)
        if self.input_skip:  # clamp: atanh(±1) is infinite
            out = out + torch.atanh(x.clamp(-1 + _EPS, 1 - _EPS))
        return torch.tanh(out)


def patch_discriminator(spatial_dims: int, in_channels: int, out_channels: int = 1, *, channels: int = 64,
                        num_layers_d: int = 3, norm: str | tuple = "INSTANCE", **kwargs: Any) -> PatchDiscriminator:
    """MONAI's PatchGAN discriminator as CM-TranCaF's D_c / D_m; its forward returns [features..., patch map]."""
    return PatchDiscriminator(spatial_dims=spatial_dims, channels=channels, in_channels=in_channels,
                              out_channels=out_channels, num_layers_d=num_layers_d, norm=norm, **kwargs)
