"""MCF (Mutual Correction Framework, Wang & Li, CVPR 2023) subnets for the spine segmentation (METHODS §E.5).

MCF trains two *different* networks on the same batches; each corrects the other. The spine paper pairs a UNet
with a VNet; here subnet a is MONAI's ``BasicUNet`` (max-pool, concatenated skips) and subnet b the VNet of
UA-MT/MCF (:class:`MCFVNet`: strided-conv down, transposed-conv up, *additive* skips, dropout), which MONAI's
``VNet`` is not (ELU, 5³ residual convs). Both work in 2D (the spine paper, slices) and 3D (MCF's reference).

:class:`MCFNet` holds the pair. ``forward`` returns both subnets' logits for training (``output="pair"``);
for inference :meth:`MCFNet.predict` averages the two softmaxes (MCF's ``test_util.py``) and returns each
subnet's argmax too, so the disagreement map (``multimodalseg.postprocessing.spine.disagreement_map``) can be
written. For engines that expect one tensor, ``set_output("mean")`` (or ``output="mean"`` in a bundle's network
config) makes ``forward`` return log of the averaged probabilities, so that a softmax of it gives exactly the
average; ``set_output("concat")`` returns both logits along the channels (split with :func:`split_concat`).
``multimodalseg.inference`` takes the first element of a tuple output, so a bundle left at ``"pair"`` would run
the UNet alone there.

Example:
    >>> net = MCFNet(2, 1, 3, **DEMO_CONFIG)
    >>> a, b = net(torch.zeros(2, 1, 64, 64))
    >>> a.shape, b.shape
    (torch.Size([2, 3, 64, 64]), torch.Size([2, 3, 64, 64]))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv, Norm
from monai.networks.nets import BasicUNet
from torch import nn

OUTPUTS = ("pair", "mean", "concat")
NORMS = ("batch", "instance", "group", "none")
SUBNETS = ("unet", "vnet")

# MCF's reference VNet (UA-MT): 16 filters, BatchNorm, dropout 0.5; 9,448,866 parameters in 3D with 1 input
# and 2 output channels (METHODS: 9.45 M).
VNET_PAPER_CONFIG: dict[str, Any] = {"features": 16, "norm": "batch", "dropout": 0.5}
# The pair for the spine slices: BasicUNet's default widths and the reference VNet widths.
PAPER_CONFIG: dict[str, Any] = {"unet_features": (32, 32, 64, 128, 256, 32), "vnet_features": 16}
# Demo bundle / CPU tests.
DEMO_CONFIG: dict[str, Any] = {"unet_features": (8, 8, 16, 32, 64, 8), "vnet_features": 8}


def _norm(name: str, spatial_dims: int, channels: int) -> nn.Module:
    if name == "none":
        return nn.Identity()
    if name == "group":
        return nn.GroupNorm(16 if channels % 16 == 0 else 1, channels)  # UA-MT's 16 groups
    if name == "instance":
        return Norm[Norm.INSTANCE, spatial_dims](channels, affine=True)
    return Norm[Norm.BATCH, spatial_dims](channels)


class _ConvStage(nn.Sequential):
    """``n`` × (3^d conv + norm + ReLU)."""

    def __init__(self, n: int, spatial_dims: int, in_ch: int, out_ch: int, norm: str) -> None:
        layers: list[nn.Module] = []
        for i in range(n):
            layers += [Conv[Conv.CONV, spatial_dims](in_ch if i == 0 else out_ch, out_ch, 3, padding=1),
                       _norm(norm, spatial_dims, out_ch), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class _Resample(nn.Sequential):
    """2^d strided conv (down) or transposed conv (up) + norm + ReLU."""

    def __init__(self, spatial_dims: int, in_ch: int, out_ch: int, norm: str, up: bool) -> None:
        conv = Conv[Conv.CONVTRANS if up else Conv.CONV, spatial_dims](in_ch, out_ch, 2, stride=2)
        super().__init__(conv, _norm(norm, spatial_dims, out_ch), nn.ReLU(inplace=True))


class MCFVNet(nn.Module):
    """The VNet of UA-MT and MCF: 5 levels, additive skips, channel dropout at the bottleneck and before the head.

    Levels 1-5 have ``f, 2f, 4f, 8f, 16f`` channels and 1, 2, 3, 3, 3 conv layers (decoder mirrors: 3, 3, 2, 1);
    convs have biases. Inputs must be divisible by 16.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: classes (logits).
        features: f (16 in the reference).
        norm: ``"batch"`` (reference), ``"instance"``, ``"group"`` (16 groups) or ``"none"``.
        dropout: channel-dropout probability (0.5 in the reference; 0 disables it). Only active in training mode.

    Shapes: (B, in_channels, *S) → (B, out_channels, *S), S divisible by 16.

    Raises:
        ValueError: unsupported ``spatial_dims``, non-positive widths, unknown norm, dropout outside [0, 1); in
            ``forward``, spatial sizes not divisible by 16.
    """

    def __init__(self, spatial_dims: int = 3, in_channels: int = 1, out_channels: int = 2, *, features: int = 16,
                 norm: str = "batch", dropout: float = 0.5) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        for name, value in {"in_channels": in_channels, "out_channels": out_channels, "features": features}.items():
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got '{norm}'")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        d, f = spatial_dims, features
        widths = [f, 2 * f, 4 * f, 8 * f, 16 * f]
        self.encoder = nn.ModuleList(
            _ConvStage(n, d, in_channels if i == 0 else w, w, norm) for i, (n, w) in enumerate(zip((1, 2, 3, 3, 3),
                                                                                                   widths)))
        self.down = nn.ModuleList(_Resample(d, widths[i], widths[i + 1], norm, up=False) for i in range(4))
        self.up = nn.ModuleList(_Resample(d, widths[i + 1], widths[i], norm, up=True) for i in (3, 2, 1, 0))
        self.decoder = nn.ModuleList(_ConvStage(n, d, w, w, norm) for n, w in zip((3, 3, 2, 1), widths[3::-1]))
        self.dropout = (nn.Dropout2d if d == 2 else nn.Dropout3d)(dropout) if dropout > 0 else nn.Identity()
        self.head = Conv[Conv.CONV, d](f, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(s % 16 for s in x.shape[2:]):
            raise ValueError(f"MCFVNet needs spatial sizes divisible by 16, got {tuple(x.shape[2:])}")
        skips = []
        for i, stage in enumerate(self.encoder):
            x = stage(x)
            if i < 4:
                skips.append(x)
                x = self.down[i](x)
        x = self.dropout(x)
        for up, stage, skip in zip(self.up, self.decoder, reversed(skips)):
            x = stage(up(x) + skip)
        return self.head(self.dropout(x))


class MCFPrediction(NamedTuple):
    """:meth:`MCFNet.predict`: averaged softmax (B, K, *S), its argmax (B, *S), each subnet's argmax (B, *S)."""

    probabilities: torch.Tensor
    labels: torch.Tensor
    labels_a: torch.Tensor
    labels_b: torch.Tensor

    @property
    def disagreement(self) -> torch.Tensor:
        """Where the two subnets' label maps differ (bool, (B, *S))."""
        return self.labels_a != self.labels_b


class MCFNet(nn.Module):
    """The MCF pair: subnet a = UNet (MONAI ``BasicUNet``), subnet b = :class:`MCFVNet`.

    Args:
        spatial_dims: 2 (spine slices) or 3.
        in_channels: input channels (e.g. 1 for the fused image, 2 for CT and MR).
        out_channels: classes K including background (3 for background, vertebra, disc).
        unet_features: ``BasicUNet`` widths (6 values).
        unet_norm: ``BasicUNet`` norm (MONAI name or (name, kwargs)).
        vnet_features: :class:`MCFVNet` base width.
        vnet_norm: :class:`MCFVNet` norm.
        vnet_dropout: :class:`MCFVNet` dropout.
        output: what ``forward`` returns: ``"pair"`` (both logits, training), ``"mean"`` or ``"concat"``
            (see the module docstring).

    Shapes: (B, in_channels, *S) → ``pair``: two (B, K, *S) logits; ``mean``: (B, K, *S); ``concat``:
    (B, 2K, *S). S divisible by 16 (``predict`` pads).

    Raises:
        ValueError: invalid arguments (also those of the subnets), fewer than 2 classes, unknown ``output``.
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 2, *,
                 unet_features: Sequence[int] = (32, 32, 64, 128, 256, 32),
                 unet_norm: str | tuple = ("instance", {"affine": True}), vnet_features: int = 16,
                 vnet_norm: str = "batch", vnet_dropout: float = 0.5, output: str = "pair") -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if int(out_channels) != out_channels or out_channels < 2:
            raise ValueError(f"MCF needs softmax outputs with background: out_channels >= 2, got {out_channels}")
        if len(unet_features) != 6 or any(int(f) != f or f < 1 for f in unet_features):
            raise ValueError(f"unet_features must be 6 positive integers, got {tuple(unet_features)}")
        if int(in_channels) != in_channels or in_channels < 1:
            raise ValueError(f"in_channels must be a positive integer, got {in_channels}")
        self.unet = BasicUNet(spatial_dims, in_channels, out_channels, features=tuple(unet_features), norm=unet_norm)
        self.vnet = MCFVNet(spatial_dims, in_channels, out_channels, features=vnet_features, norm=vnet_norm,
                            dropout=vnet_dropout)
        self.num_classes = int(out_channels)
        self.output = "pair"
        self.set_output(output)

    @property
    def subnets(self) -> tuple[nn.Module, nn.Module]:
        return self.unet, self.vnet

    def set_output(self, output: str) -> MCFNet:
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got '{output}'")
        self.output = output
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        a, b = self.unet(x), self.vnet(x)
        if self.output == "pair":
            return a, b
        if self.output == "concat":
            return torch.cat((a, b), dim=1)
        return mean_log_probabilities(a, b)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> MCFPrediction:
        """Averaged softmax of both subnets and each one's labels; pads the input to a multiple of 16 and crops back."""
        spatial = x.shape[2:]
        pads: list[int] = []
        for s in reversed(spatial):
            extra = -s % 16
            pads += [extra // 2, extra - extra // 2]
        xp = F.pad(x, pads) if any(pads) else x
        crop = (slice(None), slice(None), *(slice(p, p + s) for p, s in zip(pads[-2::-2], spatial)))
        a, b = self.unet(xp)[crop], self.vnet(xp)[crop]
        pa, pb = a.softmax(1), b.softmax(1)
        probs = (pa + pb) / 2
        return MCFPrediction(probs, probs.argmax(1), pa.argmax(1), pb.argmax(1))


def mean_log_probabilities(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """log((softmax(a) + softmax(b)) / 2), computed stably; ``softmax`` of the result is the averaged probability."""
    stacked = torch.stack((logits_a.log_softmax(1), logits_b.log_softmax(1)))
    return torch.logsumexp(stacked, dim=0) - torch.log(torch.tensor(2.0, dtype=stacked.dtype, device=stacked.device))


def split_concat(logits: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Undo ``output="concat"``: (B, 2K, *S) → two (B, K, *S)."""
    if logits.shape[1] != 2 * num_classes:
        raise ValueError(f"expected {2 * num_classes} channels, got {logits.shape[1]}")
    return logits[:, :num_classes], logits[:, num_classes:]
