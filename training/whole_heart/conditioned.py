"""Whole-heart trainer: one modality-conditioned network for CT and MR (METHODS §D), cases interleaved.

The supervised loop as is; only the forward passes change: each training batch and each validation case carries
its ``modality`` (``ct``/``mr``, from the MM-WHS file names), mapped to the index of ``task.modalities`` that the
conditional instance norms select. The exported bundle gets ``conditional_modality: true``, so the predictor
passes ``--modality`` on (and refuses an input without one).

The supervised recipe uses it with ``recipe: {name: supervised, config: {trainer: modality_conditioned}}``
(``training/configs/whole-heart.yaml``); the cascade's MAUNet stages too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from multimodalseg.preprocessing import zyx

from training.core.evaluation import sliding_window
from training.core.trainer import SupervisedTrainer
from training.core.transforms import roi_size


class ModalityConditionedTrainer(SupervisedTrainer):
    """Supervised trainer that passes each case's modality index to a ``conditional_modality`` network."""

    def modality_ids(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """``batch["modality"]`` (a string or a list of strings) -> LongTensor (B,) of ``task.modalities`` ids."""
        names = batch.get("modality")
        names = [names] if isinstance(names, str) else list(names or [])
        known = self.task.modalities
        bad = [n for n in names if str(n).lower() not in known]
        if not names or bad:
            raise ValueError(f"cases need a modality in {known} for a modality-conditioned network, got {names}")
        return torch.tensor([known.index(str(n).lower()) for n in names], dtype=torch.long, device=self.device)

    def forward(self, images: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        ids = self.modality_ids(batch)
        if ids.numel() != images.shape[0]:  # several patches per case: the case's id repeated per patch
            ids = ids.repeat_interleave(images.shape[0] // ids.numel())
        return self.network(images, modality=ids)

    def infer(self, images: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        ids = self.modality_ids(batch)
        if ids.numel() != 1:
            raise ValueError("validation runs one case at a time")
        v = self.config.validation
        model = self.model

        def net(x: torch.Tensor) -> torch.Tensor:
            return model(x, modality=ids[:1])

        with self.autocast():
            return sliding_window(net, images, zyx(roi_size(self.config, self.task)), overlap=v.overlap,
                                  sw_batch_size=v.sw_batch_size, mode=v.mode)

    def extra_state(self) -> dict[str, Any]:
        return {"bundle_meta": {"conditional_modality": True}}
