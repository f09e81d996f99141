"""Samples of the whole-heart cascade's stages (METHODS §C.3, §C.6), with the inference code's geometry.

Every sample comes from ``multimodalseg.postprocessing.heart``, the functions the predictor's cascade runs, so a
network sees in training exactly what it gets in use:

- :class:`LoadHeartCased` (deterministic, cached): the case's image on its own grid and its label map as training
  indices on that grid (``preprocessing.load_label``: the MM-WHS values, 421 read as 420), plus the heart centre
  (``label_centre``, the centre of the labels' bounding box, in LPS mm) and the modality.
- :class:`HeartLocalizationSamplesd`: the whole image on the coarse grid of its modality, centred on the image
  centre shifted by up to ``shift_mm`` per axis, normalised; target: the Gaussian heatmap of the heart centre
  (``heatmap_target``, σ = 1.5 voxels).
- :class:`HeartROISamplesd`: the ROI around the heart centre jittered by up to ``jitter_mm`` per axis (the
  localiser's error, Payer's ±20 mm translation) on the ROI grid of its modality, normalised, with the labels
  cropped by nearest neighbour; ``jitter_mm=0`` for validation.

Augmentation follows as MONAI transforms (:func:`augmentations`): the ROI's rotation/scaling about its centre
(``recipe.config``: the cascade samples its ROIs in physical space, so nnU-Net's patch rotation/scaling is not
used), then nnU-Net's intensity and resolution steps of ``config.augmentation`` (noise, blur, brightness, contrast,
low resolution, inverted gamma, gamma: :func:`training.core.augment.intensity_steps`, each with its probability),
then the papers' intensity scale/shift when ``intensity_prob`` > 0. The localiser gets the intensity steps only.
No mirroring (``flip_prob`` is not read): a mirrored heart swaps the left and right chambers, which no Left/Right
label swap can undo (LV/RV, LA/RA differ in shape and wall).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from monai.transforms import (
    Compose,
    EnsureTyped,
    MapTransform,
    RandAffined,
    Randomizable,
    RandScaleIntensityd,
    RandShiftIntensityd,
    SelectItemsd,
)
from multimodalseg import io
from multimodalseg.postprocessing import heart as geometry
from multimodalseg.preprocessing import load_label
from multimodalseg.tasks import get_task

from training.core.augment import check_augmentation, intensity_steps
from training.core.config import AugmentationConfig
from training.datasets.base import Case, CaseImage

KEEP = ("id", "modality", "image", "label")


class LoadHeartCased(MapTransform):
    """Case record (``Case.to_record``) -> ``image``/``label`` arrays on the image grid, ``geometry``, ``centre``;
    with ``orientation``, the image first permuted and flipped to it (as the cascade does at inference)."""

    def __init__(self, task_id: str = "whole-heart", orientation: str | None = None) -> None:
        super().__init__(keys=("images",))
        self.task_id = task_id
        self.orientation = orientation

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        task = get_task(self.task_id)
        case = Case(str(data["id"]), {r: CaseImage(Path(p), c) for r, (p, c) in data["images"].items()})
        image = case.read_inputs()[task.inputs[0].role]
        if self.orientation:
            image = sitk.DICOMOrient(image, self.orientation)
        if data.get("label") is None:
            raise ValueError(f"case {data['id']} has no label map; the cascade stages train on labelled cases")
        label = load_label(task, data["label"], image, data.get("convention"))
        label_image = io.copy_geometry(label, image)
        return {"id": data["id"], "modality": str(data.get("modality") or "").lower(),
                "image": sitk.GetArrayFromImage(image).astype(np.float32), "label": label,
                "geometry": (image.GetSpacing(), image.GetOrigin(), image.GetDirection()),
                "centre": geometry.label_centre(label_image)}


def _image(array: np.ndarray, geom: Sequence[Sequence[float]]) -> sitk.Image:
    return io.make_image(array, *geom)


def _grid(table: Mapping[str, geometry.GridSpec], modality: str, case_id: Any) -> geometry.GridSpec:
    if modality not in table:
        raise ValueError(f"case {case_id}: modality '{modality}' has no grid (known: {', '.join(table)})")
    return table[modality]


class _Sampler(Randomizable, MapTransform):
    """Draws ``num_samples`` samples per case with its own random state (seeded by MONAI's ``set_rnd``)."""

    def __init__(self, grids: Mapping[str, geometry.GridSpec], scheme: str, num_samples: int, shift_mm: float
                 ) -> None:
        MapTransform.__init__(self, keys=("image",))
        self.grids, self.scheme = dict(grids), scheme
        self.num_samples, self.shift_mm = int(num_samples), float(shift_mm)
        if self.num_samples < 1 or self.shift_mm < 0:
            raise ValueError("num_samples must be >= 1 and the shift >= 0")

    def randomize(self, data: Any = None) -> None:
        self._shifts = self.R.uniform(-self.shift_mm, self.shift_mm, (self.num_samples, 3))

    def __call__(self, data: Mapping[Hashable, Any]) -> list[dict[Hashable, Any]]:
        self.randomize()
        image = _image(data["image"], data["geometry"])
        spec = _grid(self.grids, data["modality"], data["id"])
        return [self.sample(data, image, spec, np.asarray(data["centre"]) + shift) for shift in self._shifts]

    def sample(self, data: Mapping[Hashable, Any], image: sitk.Image, spec: geometry.GridSpec,
               centre: np.ndarray) -> dict[Hashable, Any]:
        raise NotImplementedError


class HeartLocalizationSamplesd(_Sampler):
    """Coarse whole-image grids (1, G, G, G) and heart-centre heatmaps (1, G, G, G) (``shift_mm`` moves the grid)."""

    def sample(self, data, image, spec, centre):
        grid_centre = geometry.image_centre(image) + (centre - np.asarray(data["centre"]))
        array, coarse = geometry.localization_array(image, spec, self.scheme, centre=grid_centre)
        target = geometry.heatmap_target(coarse, data["centre"])
        return {"id": data["id"], "modality": data["modality"], "image": array[None], "label": target[None]}


class HeartROISamplesd(_Sampler):
    """ROIs (1, R, R, R) around the jittered heart centre and their labels (1, R, R, R) (training indices)."""

    def sample(self, data, image, spec, centre):
        array, roi = geometry.roi_array(image, centre, spec, self.scheme)
        labels = geometry.crop_roi(_image(data["label"], data["geometry"]), centre, size=spec.size,
                                   spacing=spec.spacing, label=True)
        return {"id": data["id"], "modality": data["modality"], "image": array[None],
                "label": sitk.GetArrayFromImage(labels)[None].astype(np.int64)}


def augmentations(aug: AugmentationConfig, rotate_degrees: float = 0.0, scale_range: float = 0.0,
                  prob: float = 0.0) -> list:
    """The random steps after a stage's sampler, for ``(1, R, R, R)`` samples; none when ``aug.enabled`` is False.

    Args:
        aug: ``config.augmentation``: nnU-Net's intensity/resolution steps and their probabilities, and the papers'
            intensity scale/shift (``intensity_prob``); its spatial and mirroring fields are not read here.
        rotate_degrees, scale_range, prob: the ROI's rotation (±degrees per axis) and scaling (±fraction) about
            its centre in one ``RandAffined`` with probability ``prob`` (``recipe.config``; 0: none, the
            localiser), nearest for the labels, edge values for the image.
    """
    if not aug.enabled:
        return []
    check_augmentation(aug)
    steps: list = []
    if prob > 0 and (rotate_degrees > 0 or scale_range > 0):
        angle = float(np.deg2rad(rotate_degrees))
        steps.append(RandAffined(keys=("image", "label"), prob=prob, rotate_range=(angle,) * 3,
                                 scale_range=(scale_range,) * 3, mode=("bilinear", "nearest"),
                                 padding_mode=("border", "zeros")))
    steps += intensity_steps(aug)
    if aug.intensity_prob > 0:  # the papers' own (Payer: CT intensity ±0.2), after nnU-Net's as in the core recipe
        steps += [RandScaleIntensityd(keys="image", factors=aug.intensity_scale, prob=aug.intensity_prob),
                  RandShiftIntensityd(keys="image", offsets=aug.intensity_shift, prob=aug.intensity_prob)]
    return steps


def stage_transforms(sampler: _Sampler, augment: Sequence[Any] = (), orientation: str | None = None) -> Compose:
    """Loading (cacheable; images in ``orientation``), then the stage's sampler, augmentation, tensors."""
    return Compose([LoadHeartCased(orientation=orientation), sampler, *augment, SelectItemsd(keys=KEEP),
                    EnsureTyped(keys=("image", "label"), track_meta=False)])
