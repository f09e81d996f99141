"""MONAI transform pipelines: case preparation (the inference code), patch sampling, augmentation, targets.

The deterministic prefix (:class:`PrepareCased`, padding, foreground indices) is what ``CacheDataset`` caches;
the random part runs every epoch. :class:`PrepareCased` calls ``multimodalseg.preprocessing.prepare_case``,
the function inference uses, so a model sees the same arrays in training and in use.

Samples are dicts: ``image`` ``(C, Z, Y, X)`` float32, ``label`` ``(1, Z, Y, X)`` training indices (labelled
cases), ``id``, ``modality``. :class:`MakeTargetd` turns ``label`` into the loss target: unchanged for exclusive
labels (softmax), ``(R, Z, Y, X)`` float region masks for region tasks (sigmoid, ``task.regions`` order).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.transforms import (
    Compose,
    EnsureTyped,
    FgBgToIndicesd,
    MapTransform,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandSpatialCropSamplesd,
    SelectItemsd,
    SpatialPadd,
)
from multimodalseg.inference.postprocess import labels_to_regions
from multimodalseg.preprocessing import prepare_case, zyx
from multimodalseg.tasks import get_task
from multimodalseg.tasks.spec import TaskSpec

from training.config import TrainingConfig
from training.datasets.base import Case, CaseImage

# Keys a sample keeps after the transforms (the cached foreground indices differ in length between cases and
# cannot be collated).
KEEP = ("id", "modality", "image", "label")


def network_spacing(config: TrainingConfig, task: TaskSpec) -> list[float] | None:
    """Spacing the network works at (ITK order, mm): the config's, else the task's; ``[]`` keeps the reference's."""
    spacing = config.data.spacing
    if spacing is None:
        return [float(s) for s in task.spacing]
    return [float(s) for s in spacing] or None


def patch_size(config: TrainingConfig, task: TaskSpec) -> list[int]:
    """Training patch, ITK (x, y, z) order."""
    return list(config.augmentation.patch_size or task.patch_size)


def roi_size(config: TrainingConfig, task: TaskSpec) -> list[int]:
    """Sliding-window size, ITK order (the patch size unless configured)."""
    return list(config.validation.roi_size or patch_size(config, task))


class PrepareCased(MapTransform):
    """Read a case record (``Case.to_record``) and prepare it with ``multimodalseg.preprocessing.prepare_case``.

    Args:
        task_id: the task (its inputs, normalisation and label table).
        spacing: network spacing, ITK order, mm; None: the reference input's.
        crop_margin: crop to the foreground box grown by this many voxels; None: no crop.
    """

    def __init__(self, task_id: str, spacing: Sequence[float] | None, crop_margin: int | None) -> None:
        super().__init__(keys=("images",))
        self.task_id = task_id
        self.spacing = None if spacing is None else list(spacing)
        self.crop_margin = crop_margin

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        task = get_task(self.task_id)
        case = Case(str(data["id"]), {r: CaseImage(Path(p), c) for r, (p, c) in data["images"].items()})
        prepared = prepare_case(task, case.read_inputs(), spacing=self.spacing, label=data.get("label"),
                                convention=data.get("convention"), crop_margin=self.crop_margin)
        out: dict[Hashable, Any] = {"id": data["id"], "modality": data.get("modality") or "",
                                    "image": prepared.image}
        if prepared.label is not None:
            out["label"] = prepared.label[None]
        return out


class MakeTargetd(MapTransform):
    """``label`` (1, Z, Y, X) indices -> the loss target: kept for ``labels`` tasks, (R, Z, Y, X) float masks for
    ``regions`` tasks (``multimodalseg.inference.postprocess.labels_to_regions``, the inverse of inference)."""

    def __init__(self, task_id: str) -> None:
        super().__init__(keys=("label",), allow_missing_keys=True)
        self.task_id = task_id

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        out = dict(data)
        task = get_task(self.task_id)
        if "label" in out and task.output_kind == "regions":
            label = np.asarray(out["label"])[0]
            out["label"] = labels_to_regions(label, task).astype(np.float32)
        return out


def prepare_transforms(config: TrainingConfig, task: TaskSpec, *, labelled: bool = True) -> list:
    """The deterministic prefix: preparation, padding to the patch, foreground/background voxel indices."""
    roi = zyx(patch_size(config, task))
    keys = ["image", "label"] if labelled else ["image"]
    out = [PrepareCased(task.id, network_spacing(config, task), config.data.crop_margin),
           SpatialPadd(keys=keys, spatial_size=roi)]
    if labelled:
        out.append(FgBgToIndicesd(keys="label", fg_postfix="_fg", bg_postfix="_bg"))
    return out


def train_transforms(config: TrainingConfig, task: TaskSpec, *, labelled: bool = True) -> Compose:
    """Preparation, then per epoch: patches (foreground-biased for labelled cases), flips, intensity changes."""
    aug = config.augmentation
    roi = zyx(patch_size(config, task))
    keys = ["image", "label"] if labelled else ["image"]
    steps = prepare_transforms(config, task, labelled=labelled)
    if labelled:
        pos = aug.pos_fraction
        steps.append(RandCropByPosNegLabeld(
            keys=keys, label_key="label", spatial_size=roi, pos=pos, neg=1.0 - pos,
            num_samples=aug.samples_per_case, fg_indices_key="label_fg", bg_indices_key="label_bg"))
    else:
        steps.append(RandSpatialCropSamplesd(keys=keys, roi_size=roi, num_samples=aug.samples_per_case,
                                             random_size=False))
    if aug.enabled:
        steps += [RandFlipd(keys=keys, prob=aug.flip_prob, spatial_axis=axis) for axis in range(3)]
        steps += [RandScaleIntensityd(keys="image", factors=aug.intensity_scale, prob=aug.intensity_prob),
                  RandShiftIntensityd(keys="image", offsets=aug.intensity_shift, prob=aug.intensity_prob)]
    steps += [MakeTargetd(task.id), SelectItemsd(keys=KEEP, allow_missing_keys=True),
              EnsureTyped(keys=keys, track_meta=False)]
    return Compose(steps)


def val_transforms(config: TrainingConfig, task: TaskSpec) -> Compose:
    """Whole prepared volumes for sliding-window validation (no padding: the window pads itself)."""
    steps = [PrepareCased(task.id, network_spacing(config, task), config.data.crop_margin), MakeTargetd(task.id),
             SelectItemsd(keys=KEEP, allow_missing_keys=True), EnsureTyped(keys=["image", "label"], track_meta=False)]
    return Compose(steps)
