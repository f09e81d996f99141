"""The whole-heart cascade's networks as one module, so one bundle holds them (METHODS §C.3-§C.6).

``localizer`` (:class:`HeartLocalizationNet`, optional) regresses the heart-centre heatmap on the coarse
whole-image grid; ``roi`` (:class:`MAUNetSCN`: MAUNet, modality-conditioned or not, plus the optional SCN
refinement) segments the ROI cropped around that centre. The geometry between them (coarse grid, centre, ROI crop,
paste-back) is torch-free and lives in ``multimodalseg.postprocessing.heart``; ``multimodalseg.inference.
heart_cascade`` runs the stages. ``forward`` is the ROI network, so the generic tools (bundle loading, the
training probe, parameter counts) see an ordinary segmentation network.

Example:
    >>> net = HeartCascade(3, 1, 8, localization={"features": 8}, roi={"maunet": {"channels": (8, 16, 32, 64)}})
    >>> net.localize(torch.zeros(1, 1, 32, 32, 32)).shape, net(torch.zeros(1, 1, 32, 32, 32)).shape
    (torch.Size([1, 1, 32, 32, 32]), torch.Size([1, 8, 32, 32, 32]))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from multimodalseg.nets.cin import ModalityArg
from multimodalseg.nets.heart_localization import HeartLocalizationNet
from multimodalseg.nets.scn import MAUNetSCN


class HeartCascade(nn.Module):
    """Localisation network (optional) + ROI network (MAUNet, optional SCN).

    Args:
        spatial_dims: 3 (2 works for tests of the plumbing).
        in_channels: image channels (1).
        out_channels: classes including background (8 for MM-WHS).
        localization: :class:`HeartLocalizationNet` arguments (one heatmap out); None: no localisation stage
            (the cascade then centres the ROI on the body).
        roi: :class:`MAUNetSCN` arguments (``maunet``, ``scn``, ``refine``, ``scn_with_image``, ``residual``...).

    Shapes: ``localize`` (B, in_channels, *G) -> (B, 1, *G) heatmap; ``forward`` (B, in_channels, *S) ->
    (B, out_channels, *S) logits of the last ROI stage; ``forward_stages`` -> (MAUNet logits, SCN logits or None).
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, *,
                 localization: dict[str, Any] | None = None, roi: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.localizer = (HeartLocalizationNet(spatial_dims, in_channels, 1, **localization)
                          if localization is not None else None)
        self.roi = MAUNetSCN(spatial_dims, in_channels, out_channels, **(roi or {}))

    @property
    def has_refinement(self) -> bool:
        return self.roi.scn is not None

    @property
    def conditional(self) -> bool:
        return self.roi.maunet.conditional_modality

    def localize(self, x: torch.Tensor) -> torch.Tensor:
        if self.localizer is None:
            raise ValueError("this cascade has no localisation network")
        return self.localizer(x)

    def forward_stages(self, x: torch.Tensor, window_slices: Sequence[Sequence[slice]] | None = None, *,
                       modality: ModalityArg = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.roi.forward_stages(x, window_slices, modality=modality)

    def forward(self, x: torch.Tensor, window_slices: Sequence[Sequence[slice]] | None = None, *,
                modality: ModalityArg = None) -> torch.Tensor:
        return self.roi(x, window_slices, modality=modality)
