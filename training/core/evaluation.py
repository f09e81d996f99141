"""Validation during training: sliding-window inference on whole prepared cases and Dice per class.

The same conventions as inference: softmax + argmax for exclusive labels, sigmoid > 0.5 per region for region
tasks. Dice is computed on the network grid (the prepared arrays). A class empty in both prediction and reference
is left out of the means (as ``multimodalseg.metrics`` does), so absent structures do not inflate the score.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from multimodalseg.tasks.spec import TaskSpec

Infer = Callable[[torch.Tensor, Mapping[str, Any]], torch.Tensor]


def class_names(task: TaskSpec) -> list[str]:
    """Names of the scored channels: regions for region tasks, labels (index order) otherwise."""
    if task.output_kind == "regions":
        return [r.name for r in task.regions]
    return [lab.name for lab in sorted(task.labels, key=lambda lab: lab.index)]


def out_channels(task: TaskSpec) -> int:
    return len(task.regions) if task.output_kind == "regions" else task.num_classes


@dataclass
class ValidationResult:
    """Dice per class averaged over cases (``dice``), their mean (``mean``), and per-case values."""

    mean: float
    dice: dict[str, float]
    cases: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"dice_mean": _finite(self.mean), "dice": {k: _finite(v) for k, v in self.dice.items()},
                "cases": [{k: _finite(v) if isinstance(v, float) else v for k, v in c.items()} for c in self.cases]}


def sliding_window(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, roi_zyx: tuple[int, ...],
                   *, overlap: float, sw_batch_size: int, mode: str) -> torch.Tensor:
    """MONAI ``sliding_window_inference`` with the configured window, overlap and blending."""
    return sliding_window_inference(images, roi_zyx, sw_batch_size, model, overlap=overlap, mode=mode)


def predict_masks(logits: torch.Tensor, task: TaskSpec) -> torch.Tensor:
    """Logits ``(B, K, ...)`` -> binary masks ``(B, N, ...)`` of the scored classes (background dropped)."""
    if task.output_kind == "regions":
        return logits.sigmoid() > 0.5
    return F.one_hot(logits.argmax(1), logits.shape[1]).movedim(-1, 1)[:, 1:].bool()


def target_masks(target: torch.Tensor, task: TaskSpec) -> torch.Tensor:
    """Loss target -> binary masks ``(B, N, ...)`` matching :func:`predict_masks`."""
    if task.output_kind == "regions":
        return target > 0.5
    return F.one_hot(target[:, 0].long(), task.num_classes).movedim(-1, 1)[:, 1:].bool()


def dice_per_class(pred: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Dice ``(B, N)`` of binary masks; NaN where both masks are empty."""
    dims = tuple(range(2, pred.ndim))
    inter = (pred & ref).sum(dims).double()
    total = pred.sum(dims).double() + ref.sum(dims).double()
    return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.full_like(total, float("nan")))


def validate(infer: Infer, batches: Iterable[Mapping[str, Any]], task: TaskSpec, device: torch.device
             ) -> ValidationResult:
    """Run ``infer(images, batch) -> logits`` on each whole case and score it."""
    names = class_names(task)
    rows: list[dict[str, Any]] = []
    with torch.no_grad():
        for batch in batches:
            images = batch["image"].to(device)
            logits = infer(images, batch).float()
            dice = dice_per_class(predict_masks(logits, task), target_masks(batch["label"].to(device), task)).cpu()
            ids = batch.get("id") or [f"case{len(rows) + i}" for i in range(images.shape[0])]
            for b in range(images.shape[0]):
                rows.append({"id": str(ids[b]), **{n: float(dice[b, i]) for i, n in enumerate(names)}})
    per_class = {n: _nanmean([r[n] for r in rows]) for n in names}
    return ValidationResult(_nanmean(list(per_class.values())), per_class, rows)


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
