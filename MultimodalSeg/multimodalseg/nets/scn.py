"""Spatial configuration network refinement of CM-TranCaF (METHODS §C.5), and MAUNet + SCN as one ROI network.

The SCN (Payer et al.) multiplies a local-appearance estimate by a spatial-configuration estimate computed at a
coarse resolution with large kernels, so labels that are locally plausible but in an impossible place are
suppressed. CM-TranCaF's variant [recon]: three 3³ convs, then a spatial-configuration branch with 9×9×5
kernels; with :data:`PAPER_CONFIG`, 9 inputs (8 MAUNet probabilities + the image) and 8 outputs it has 3.97 M
parameters (METHODS: ≈ 4.0 M). Tensors are (B, C, Z, Y, X), so the "5" of 9×9×5 is the first (slice) axis.

Example:
    >>> net = MAUNetSCN(3, 1, 8, maunet={"channels": (8, 16, 32, 64)}, scn=DEMO_CONFIG)
    >>> coarse, refined = net.forward_stages(torch.zeros(1, 1, 32, 32, 32))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Pool
from monai.utils import ensure_tuple_rep
from torch import nn

from multimodalseg.nets.cin import ModalityArg
from multimodalseg.nets.maunet import MAUNet

PAPER_CONFIG: dict[str, Any] = {"local_channels": 64, "sc_channels": 64}
DEMO_CONFIG: dict[str, Any] = {"local_channels": 16, "sc_channels": 16}


class SCN(nn.Module):
    """Local appearance × spatial configuration: H = H_LA ⊙ H_SC (logits).

    Local appearance: ``local_layers`` × [conv k³, ``local_channels``, act] -> 1×1×1 conv -> ``out_channels``,
    tanh -> H_LA. Spatial configuration: average pool by ``sc_factor`` -> ``sc_layers`` × [conv
    ``sc_kernel_size``, ``sc_channels``, act] -> conv ``sc_kernel_size`` -> ``out_channels`` (linear) ->
    (tri)linear up-sampling to the input size -> H_SC. As in Payer's MM-WHS network the spatial branch reads H_LA.

    Args:
        spatial_dims: number of spatial dimensions (2 or 3).
        in_channels: input channels, e.g. the first stage's class probabilities, plus the image channels.
        out_channels: classes including background.
        local_channels: width of the local-appearance convs. Default 64.
        local_layers: number of local-appearance convs. Default 3.
        local_kernel_size: their kernel. Default 3.
        sc_channels: width of the spatial-configuration convs. Default 64.
        sc_layers: spatial-configuration convs before the output conv. Default 3.
        sc_kernel_size: their kernel, per axis (Z, Y, X). Default ``(5, 9, 9)`` in 3D, ``(9, 9)`` in 2D.
        sc_factor: down-sampling factor of the spatial branch. Default 4.
        act: MONAI activation name or ``(name, kwargs)``. Default ``"relu"`` (no norm, as Payer's SCN).

    Shapes: (B, in_channels, *S) -> (B, out_channels, *S) logits; each S divisible by ``sc_factor``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        local_channels: int = 64,
        local_layers: int = 3,
        local_kernel_size: int = 3,
        sc_channels: int = 64,
        sc_layers: int = 3,
        sc_kernel_size: Sequence[int] | int | None = None,
        sc_factor: int = 4,
        act: str | tuple = "relu",
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if min(in_channels, out_channels, local_channels, sc_channels, local_layers, sc_factor) < 1 or sc_layers < 0:
            raise ValueError("channels, local_layers and sc_factor must be >= 1 and sc_layers >= 0")
        if sc_kernel_size is None:
            sc_kernel_size = (5, 9, 9) if spatial_dims == 3 else (9, 9)
        kernel = ensure_tuple_rep(sc_kernel_size, spatial_dims)
        if any(k % 2 == 0 for k in kernel) or local_kernel_size % 2 == 0:
            raise ValueError(f"kernel sizes must be odd (same padding), got {kernel} and {local_kernel_size}")
        self.sc_factor, self.spatial_dims = sc_factor, spatial_dims
        self.local = nn.Sequential(*(
            Convolution(spatial_dims, c_in, local_channels, kernel_size=local_kernel_size, act=act, norm=None)
            for c_in in [in_channels] + [local_channels] * (local_layers - 1)
        ))
        self.local_out = Convolution(spatial_dims, local_channels, out_channels, kernel_size=1, conv_only=True)
        self.pool = Pool[Pool.AVG, spatial_dims](kernel_size=sc_factor)
        self.spatial = nn.Sequential(
            *(Convolution(spatial_dims, c_in, sc_channels, kernel_size=kernel, act=act, norm=None)
              for c_in in [out_channels] + [sc_channels] * (sc_layers - 1)),
            Convolution(spatial_dims, sc_channels if sc_layers else out_channels, out_channels, kernel_size=kernel,
                        conv_only=True),
        )

    def stages(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(H_LA, H_SC), both (B, out_channels, *S)."""
        if any(s % self.sc_factor for s in x.shape[2:]):
            raise ValueError(f"input size {tuple(x.shape[2:])} must be divisible by sc_factor={self.sc_factor}")
        local = torch.tanh(self.local_out(self.local(x)))
        mode = "trilinear" if self.spatial_dims == 3 else "bilinear"
        spatial = F.interpolate(self.spatial(self.pool(local)), size=x.shape[2:], mode=mode, align_corners=False)
        return local, spatial

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local, spatial = self.stages(x)
        return local * spatial


class MAUNetSCN(nn.Module):
    """The ROI stage of the whole-heart cascade: MAUNet, optionally refined by an SCN.

    The SCN reads the MAUNet's softmax probabilities, concatenated with the input image when ``scn_with_image``.

    Args:
        spatial_dims, in_channels, out_channels: as for :class:`MAUNet`.
        maunet: further :class:`MAUNet` arguments (``channels``, ``conditional_modality``, ...).
        scn: further :class:`SCN` arguments.
        refine: run the SCN; False gives the MAUNet alone (the ablation). Default True.
        scn_with_image: give the SCN the image too. Default True.
        detach: stop the SCN's gradient at the MAUNet probabilities (two-stage training as Payer's cascade).
            Default False (end-to-end).
        residual: the refined logits are MAUNet's plus the SCN's output, so the cascade starts as the MAUNet
            (an untrained SCN outputs logits near 0: H_LA and H_SC both start small) [recon]. Default False
            (the SCN's output alone, as specified).

    Shapes: ``forward(x (B, in_channels, *S), modality=...)`` -> (B, out_channels, *S) logits of the last stage;
    :meth:`forward_stages` gives (MAUNet logits, SCN logits or None) for a loss on both.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        maunet: dict[str, Any] | None = None,
        scn: dict[str, Any] | None = None,
        refine: bool = True,
        scn_with_image: bool = True,
        detach: bool = False,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.maunet = MAUNet(spatial_dims, in_channels, out_channels, **(maunet or {}))
        scn_in = out_channels + (in_channels if scn_with_image else 0)
        self.scn = SCN(spatial_dims, scn_in, out_channels, **(scn or {})) if refine else None
        self.scn_with_image, self.detach, self.residual = scn_with_image, detach, residual

    def forward_stages(self, x: torch.Tensor, window_slices: Sequence[Sequence[slice]] | None = None, *,
                       modality: ModalityArg = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        coarse = self.maunet(x, window_slices, modality=modality)
        if self.scn is None:
            return coarse, None
        base = coarse.detach() if self.detach else coarse
        probs = torch.softmax(base, dim=1)
        refined = self.scn(torch.cat([probs, x], dim=1) if self.scn_with_image else probs)
        return coarse, base + refined if self.residual else refined

    def forward(self, x: torch.Tensor, window_slices: Sequence[Sequence[slice]] | None = None, *,
                modality: ModalityArg = None) -> torch.Tensor:
        coarse, refined = self.forward_stages(x, window_slices, modality=modality)
        return coarse if refined is None else refined
