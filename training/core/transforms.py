"""MONAI transform pipelines: case preparation (the inference code), patch sampling, augmentation, targets.

The deterministic prefix (:class:`PrepareCased`, padding, foreground indices) is what ``CacheDataset`` caches;
the random part runs every epoch. :class:`PrepareCased` calls ``multimodalseg.preprocessing.prepare_case``,
the function inference uses, so a model sees the same arrays in training and in use. With on-the-fly synthetic
data (``data.synthetic.on_the_fly``) the prefix starts from ``training.core.synthetic_source.SynthesizeCased``
instead, and nothing is cached.

Samples are dicts: ``image`` ``(C, Z, Y, X)`` float32, ``label`` ``(1, Z, Y, X)`` training indices (labelled
cases), ``id``, ``modality``, and until the target is made ``lateral_axis`` (the array axis along the patient's
left-right axis, for mirroring with the Left/Right swap, :mod:`training.core.augment`). :class:`MakeTargetd`
turns ``label`` into the loss target: unchanged for exclusive labels (softmax), ``(R, Z, Y, X)`` float region
masks for region tasks (sigmoid, ``task.regions`` order). A loss that needs more per-case data (the BSC key points
of the BraTS loss) declares it through its factory's ``target_transforms`` (``training.core.losses.loss_factory``):
those keys are cached, cropped and flipped with the label, and their channels appended to the target.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.transforms import (
    ClassesToIndicesd,
    Compose,
    EnsureTyped,
    FgBgToIndicesd,
    MapTransform,
    RandCropByLabelClassesd,
    RandCropByPosNegLabeld,
    RandSpatialCropSamplesd,
    SelectItemsd,
    SpatialPadd,
)
from multimodalseg.errors import UserError
from multimodalseg.inference.postprocess import labels_to_regions
from multimodalseg.orientation import check_code
from multimodalseg.preprocessing import normalize, prepare_case, zyx
from multimodalseg.tasks import get_task
from multimodalseg.tasks.spec import TaskSpec, lateral_axis

from training.core.augment import LATERAL_KEY, augmentation_steps
from training.core.config import TrainingConfig
from training.core.modality_dropout import RandModalityDropoutd, droppable_roles
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


def network_orientation(config: TrainingConfig, task: TaskSpec) -> str | None:
    """Orientation code the network arrays are brought to (``multimodalseg.orientation``): the config's, else the
    task's; ``""`` keeps each case's own."""
    code = task.orientation if config.data.orientation is None else config.data.orientation
    try:
        return check_code(code) if code else None
    except ValueError as error:
        raise UserError(f"data.orientation: {error}") from None


def patch_size(config: TrainingConfig, task: TaskSpec) -> list[int]:
    """Training patch, ITK (x, y, z) order."""
    return list(config.augmentation.patch_size or task.patch_size)


# The schemes of ``multimodalseg.preprocessing.normalize`` (for the message of an unknown one).
SCHEMES = ("zscore", "zscore_clip", "min_max", "ct", "pet", "none")


def normalization_schemes(config: TrainingConfig, task: TaskSpec) -> dict[str, str]:
    """Role -> normalisation scheme: the task's, overridden by ``data.normalization`` (checked: known roles and
    schemes). What training applies and the bundle records."""
    schemes = {spec.role: spec.normalization for spec in task.inputs}
    for role, scheme in dict(config.data.normalization).items():
        if role not in schemes:
            raise UserError(f"data.normalization: task {task.id} has no input '{role}' "
                            f"(inputs: {', '.join(task.roles)})")
        try:
            normalize(np.zeros((2, 2, 2), np.float32), str(scheme))
        except ValueError:
            raise UserError(f"data.normalization.{role}: unknown scheme '{scheme}' "
                            f"(known: {', '.join(SCHEMES)})") from None
        schemes[role] = str(scheme)
    return schemes


def roi_size(config: TrainingConfig, task: TaskSpec) -> list[int]:
    """Sliding-window size, ITK order (the patch size unless configured)."""
    return list(config.validation.roi_size or patch_size(config, task))


class PrepareCased(MapTransform):
    """Read a case record (``Case.to_record``) and prepare it with ``multimodalseg.preprocessing.prepare_case``.

    Args:
        task_id: the task (its inputs, normalisation and label table).
        spacing: network spacing, ITK order, mm; None: the reference input's.
        crop_margin: crop to the foreground box grown by this many voxels; None: no crop.
        schemes: role -> normalisation scheme (:func:`normalization_schemes`); None: the task's.
        orientation: orientation code of the network arrays (:func:`network_orientation`); None: each case's.
    """

    def __init__(self, task_id: str, spacing: Sequence[float] | None, crop_margin: int | None,
                 schemes: Mapping[str, str] | None = None, orientation: str | None = None) -> None:
        super().__init__(keys=("images",))
        self.task_id = task_id
        self.spacing = None if spacing is None else list(spacing)
        self.crop_margin = crop_margin
        self.schemes = dict(schemes or {})
        self.orientation = orientation

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        task = get_task(self.task_id)
        case = Case(str(data["id"]), {r: CaseImage(Path(p), c) for r, (p, c) in data["images"].items()})
        prepared = prepare_case(task, case.read_inputs(), spacing=self.spacing, label=data.get("label"),
                                convention=data.get("convention"), crop_margin=self.crop_margin,
                                schemes=self.schemes, orientation=self.orientation)
        out: dict[Hashable, Any] = {"id": data["id"], "modality": data.get("modality") or "",
                                    "image": prepared.image, LATERAL_KEY: lateral_axis(prepared.grid.GetDirection())}
        if prepared.label is not None:
            out["label"] = prepared.label[None]
        return out


class MakeTargetd(MapTransform):
    """``label`` (1, Z, Y, X) indices -> the loss target: kept for ``labels`` tasks, (R, Z, Y, X) float masks for
    ``regions`` tasks (``multimodalseg.inference.postprocess.labels_to_regions``, the inverse of inference).
    The channels of ``extra_keys`` (e.g. BSC key-point images) are appended to the target, in that order."""

    def __init__(self, task_id: str, extra_keys: Sequence[str] = ()) -> None:
        super().__init__(keys=("label",), allow_missing_keys=True)
        self.task_id = task_id
        self.extra_keys = tuple(extra_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        out = dict(data)
        task = get_task(self.task_id)
        if "label" in out and task.output_kind == "regions":
            label = np.asarray(out["label"])[0]
            out["label"] = labels_to_regions(label, task).astype(np.float32)
        if "label" in out and self.extra_keys:
            parts = [np.asarray(out["label"], dtype=np.float32)] + [np.asarray(out[k], dtype=np.float32)
                                                                     for k in self.extra_keys]
            out["label"] = np.concatenate(parts, axis=0)
        return out


def loss_target_transforms(config: TrainingConfig, task: TaskSpec) -> tuple[list, list[str]]:
    """The loss's extra per-case steps and keys (its factory's ``target_transforms``); none for most losses."""
    from training.core.losses import loss_factory

    try:
        hook = getattr(loss_factory(config.loss.name), "target_transforms", None)
    except ValueError:  # an unknown loss name is reported when the loss is built
        return [], []
    if hook is None:
        return [], []
    steps, keys = hook(config, task)
    return list(steps), list(keys)


def prepare_case_transform(config: TrainingConfig, task: TaskSpec) -> MapTransform:
    """The first step: read and prepare a case record (bank mode), or generate one (on-the-fly synthesis)."""
    if config.data.synthetic.on_the_fly:
        from training.core.synthetic_source import SynthesizeCased

        return SynthesizeCased(task.id, config.data.synthetic, network_spacing(config, task), config.data.crop_margin,
                               normalization_schemes(config, task), network_orientation(config, task))
    return PrepareCased(task.id, network_spacing(config, task), config.data.crop_margin,
                        normalization_schemes(config, task), network_orientation(config, task))


def prepare_transforms(config: TrainingConfig, task: TaskSpec, *, labelled: bool = True) -> list:
    """The deterministic prefix: preparation, padding to the patch, foreground/background voxel indices."""
    roi = zyx(patch_size(config, task))
    keys = ["image", "label"] if labelled else ["image"]
    out = [prepare_case_transform(config, task), SpatialPadd(keys=keys, spatial_size=roi)]
    if labelled and config.augmentation.balance_classes:
        out.append(ClassesToIndicesd(keys="label", num_classes=len(task.labels) + 1, indices_postfix="_classes"))
    elif labelled:
        out.append(FgBgToIndicesd(keys="label", fg_postfix="_fg", bg_postfix="_bg"))
    return out


def train_transforms(config: TrainingConfig, task: TaskSpec, *, labelled: bool = True) -> Compose:
    """Preparation, then per epoch: patches (foreground-biased for labelled cases) and the random augmentation of
    :func:`training.core.augment.augmentation_steps` (nnU-Net's steps by default; mirroring swaps Left/Right)."""
    aug = config.augmentation
    roi = zyx(patch_size(config, task))
    keys = ["image", "label"] if labelled else ["image"]
    steps = prepare_transforms(config, task, labelled=labelled)
    extra_steps, extra_keys = loss_target_transforms(config, task) if labelled else ([], [])
    steps += extra_steps  # deterministic, so cached with the preparation
    keys += extra_keys
    if labelled and aug.pos_fraction is not None and aug.balance_classes:
        classes = len(task.labels)  # background + each class an equal part of the foreground share
        steps.append(RandCropByLabelClassesd(
            keys=keys, label_key="label", spatial_size=roi, num_classes=classes + 1,
            ratios=[1.0 - aug.pos_fraction] + [aug.pos_fraction / classes] * classes,
            num_samples=aug.samples_per_case, indices_key="label_classes", warn=False))
    elif labelled and aug.pos_fraction is not None:
        pos = aug.pos_fraction
        steps.append(RandCropByPosNegLabeld(
            keys=keys, label_key="label", spatial_size=roi, pos=pos, neg=1.0 - pos,
            num_samples=aug.samples_per_case, fg_indices_key="label_fg", bg_indices_key="label_bg"))
    else:
        steps.append(RandSpatialCropSamplesd(keys=keys, roi_size=roi, num_samples=aug.samples_per_case,
                                             random_size=False))
    steps += augmentation_steps(aug, task, keys)
    if aug.modality_dropout:  # last among the image steps: a dropped input is exactly zero, as at inference
        drop = dict(aug.modality_dropout)
        steps.append(RandModalityDropoutd("image", task.roles, droppable_roles(task, drop.get("roles")),
                                          prob=float(drop.get("prob", 0.5)),
                                          drop_prob=float(drop.get("drop_prob", 0.5)),
                                          keep_sets=drop.get("keep_sets") or (),
                                          keep_set_prob=float(drop.get("keep_set_prob", 0.0))))
    steps += [MakeTargetd(task.id, extra_keys), SelectItemsd(keys=KEEP, allow_missing_keys=True),
              EnsureTyped(keys=keys[:2], track_meta=False)]  # the extras now ride in the target
    return Compose(steps)


def val_transforms(config: TrainingConfig, task: TaskSpec) -> Compose:
    """Whole prepared volumes for sliding-window validation (no padding: the window pads itself)."""
    steps = [PrepareCased(task.id, network_spacing(config, task), config.data.crop_margin,
                          normalization_schemes(config, task), network_orientation(config, task)),
             MakeTargetd(task.id),
             SelectItemsd(keys=KEEP, allow_missing_keys=True), EnsureTyped(keys=["image", "label"], track_meta=False)]
    return Compose(steps)
