"""MAUNet of CM-TranCaF (METHODS §C.4): residual encoder, attention-gated skips, position attention at the bottom.

No reference code exists; the layout and widths are METHODS' reconstruction from the paper's description. With
:data:`PAPER_CONFIG` and 1 input, 8 outputs the network has 7.73 M parameters (METHODS: ≈ 7.7 M). Attention gates
(AGs) are MONAI's ``attentionunet.AttentionBlock``: it gates the skip at the skip's own resolution, the gating
signal being the up-sampled decoder feature, with batch norm after each 1×1×1 conv (Oktay's original strides x
to g's coarser grid instead). The position attention block (PAB) is DANet's PAM (``blocks/position_attention``).
With ``conditional_modality=True`` the instance norms become modality-conditioned (METHODS §D), so one network
serves CT and MR: ``forward(x, modality=...)``.

Example:
    >>> net = MAUNet(3, 1, 8, **DEMO_CONFIG)
    >>> net(torch.zeros(1, 1, 32, 32, 32)).shape
    torch.Size([1, 8, 32, 32, 32])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from monai.networks.blocks import Convolution, ResidualUnit, UnetOutBlock, UnetResBlock
from monai.networks.nets.attentionunet import AttentionBlock
from torch import nn

from multimodalseg.nets.blocks.position_attention import PositionAttention
from multimodalseg.nets.cin import ModalityArg, ModalityContext, run_with_modality, swap_norms

# METHODS §C.4's table: 32-64-128-256 channels, 2 subunits per residual unit.
PAPER_CONFIG: dict[str, Any] = {"channels": (32, 64, 128, 256)}
# A narrow width for the phantom demo bundle and CPU tests (0.48 M parameters with 8 outputs).
DEMO_CONFIG: dict[str, Any] = {"channels": (8, 16, 32, 64)}


class MAUNet(nn.Module):
    """Residual U-Net with attention gates on the skips and DANet position attention at the bottom.

    Encoder: level 0 is a ``ResidualUnit`` (stride 1), each further level a ``ResidualUnit`` with stride 2 (its
    residual path is a strided conv); the last level is the bottom, followed by the PAB. Decoder, from the bottom
    up, per level l: g = transposed conv (stride 2) + norm + act of the coarser feature, to ``channels[l]``;
    x̂ = AG(g, skip_l) (the skip itself without AGs); ``UnetResBlock`` on cat[x̂, g] -> ``channels[l]``.
    Head: 1×1×1 conv to ``out_channels`` logits.

    Args:
        spatial_dims: number of spatial dimensions (2 or 3).
        in_channels: input channels (1 for a CT or MR ROI).
        out_channels: classes including background (8 for MM-WHS).
        channels: width of each level, finest first; at least 2 levels. Default ``(32, 64, 128, 256)``.
        subunits: conv-norm-act subunits per encoder ``ResidualUnit``. Default 2.
        kernel_size: encoder/decoder conv kernel. Default 3.
        up_kernel_size: kernel of the stride-2 transposed convs. Default 3 (as MONAI's UNet).
        norm: MONAI norm name or ``(name, kwargs)``; ``"instance"`` is needed for ``conditional_modality``.
            Default ``"instance"``.
        act: MONAI activation name or ``(name, kwargs)``. Default ``"relu"``.
        dropout: dropout rate in the encoder units. Default 0.
        attention_gates: gate the skips with AGs (F_int = C/2). Default True.
        position_attention: PAB at the bottom. Default True.
        pam_reduction: PAB query/key reduction. Default 8.
        conditional_modality: replace the instance norms by conditional instance norms keyed by modality; the
            forward then needs ``modality``. Default False.
        num_modalities: modalities of the conditional norms (CT 0, MR 1). Default 2.
        conditional_scope: only the ``"encoder"`` norms (default: MI-Seg conditions the encoder's normalisation),
            or ``"all"`` (decoder, up-convolutions and attention gates too; the default before 0.3, which
            bundles without the key keep: :func:`multimodalseg.nets.cin.pin_legacy_scope`).
            Default ``"encoder"``.

    Shapes: (B, in_channels, *S) -> (B, out_channels, *S) logits; each S divisible by 2^(levels - 1).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        channels: Sequence[int] = (32, 64, 128, 256),
        subunits: int = 2,
        kernel_size: int = 3,
        up_kernel_size: int = 3,
        norm: str | tuple = "instance",
        act: str | tuple = "relu",
        dropout: float = 0.0,
        attention_gates: bool = True,
        position_attention: bool = True,
        pam_reduction: int = 8,
        conditional_modality: bool = False,
        num_modalities: int = 2,
        conditional_scope: Literal["encoder", "all"] = "encoder",
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must be >= 1")
        if len(channels) < 2 or min(channels) < 2:
            raise ValueError(f"channels needs at least 2 levels of at least 2 channels, got {channels}")
        if subunits < 1:
            raise ValueError(f"subunits must be >= 1, got {subunits}")
        if conditional_scope not in ("encoder", "all"):
            raise ValueError(f"conditional_scope must be 'encoder' or 'all', got {conditional_scope!r}")
        self.spatial_dims, self.channels = spatial_dims, channels
        self.conditional_modality, self.num_modalities = conditional_modality, num_modalities

        self.encoders = nn.ModuleList(
            ResidualUnit(spatial_dims, c_in, c_out, strides=1 if level == 0 else 2, kernel_size=kernel_size,
                         subunits=subunits, act=act, norm=norm, dropout=dropout)
            for level, (c_in, c_out) in enumerate(zip((in_channels, *channels[:-1]), channels))
        )
        self.bottom_attention = (PositionAttention(spatial_dims, channels[-1], reduction=pam_reduction)
                                 if position_attention else None)
        self.ups, self.gates, self.decoders = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for level in reversed(range(len(channels) - 1)):
            c = channels[level]
            self.ups.append(Convolution(spatial_dims, channels[level + 1], c, strides=2, kernel_size=up_kernel_size,
                                        act=act, norm=norm, is_transposed=True))
            self.gates.append(AttentionBlock(spatial_dims, f_int=max(c // 2, 1), f_g=c, f_l=c)
                              if attention_gates else nn.Identity())
            self.decoders.append(UnetResBlock(spatial_dims, 2 * c, c, kernel_size=kernel_size, stride=1,
                                              norm_name=norm, act_name=act))
        self.head = UnetOutBlock(spatial_dims, channels[0], out_channels)
        self.attention_gates = attention_gates

        self.context: ModalityContext | None = None
        if conditional_modality:
            self.context = ModalityContext()
            encoder_only = conditional_scope == "encoder"
            replaced = swap_norms(self, self.context, num_modalities,
                                  include=lambda n: not encoder_only or n.startswith("encoders."))
            if not replaced:
                raise ValueError(f"conditional_modality needs instance norms (norm='instance'), got norm={norm!r}")

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = 2 ** (len(self.channels) - 1)
        if any(s % factor for s in x.shape[2:]):
            raise ValueError(f"input size {tuple(x.shape[2:])} must be divisible by {factor}")
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        if self.bottom_attention is not None:
            x = self.bottom_attention(x)
        for up, gate, decoder, skip in zip(self.ups, self.gates, self.decoders, reversed(skips[:-1])):
            g = up(x)
            gated = gate(g, skip) if self.attention_gates else skip
            x = decoder(torch.cat([gated, g], dim=1))
        return self.head(x)

    def forward(self, x: torch.Tensor, window_slices: Sequence[Sequence[slice]] | None = None, *,
                modality: ModalityArg = None) -> torch.Tensor:
        """Logits; ``modality`` (and ``window_slices`` from sliding windows) only for a conditional network."""
        if self.context is None:
            if modality is not None:
                raise ValueError("this MAUNet is not conditioned on the modality (conditional_modality=False)")
            return self._forward(x)
        return run_with_modality(self.context, lambda: self._forward(x), modality, x.shape[0], self.num_modalities,
                                 x.device, window_slices)
