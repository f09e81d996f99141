"""nnU-Net's default augmentation for the spine recipes' 2-D slices (``training.spine.mcf.SliceSampler``).

:func:`slice_augmentation` turns the config's :class:`~training.core.config.AugmentationConfig` into MONAI
dictionary transforms for one cropped slice (image ``(C, H, W)``, label ``(1, H, W)``), in nnU-Net v2's order for
2-D data: in-plane rotation (``RandAffined``, one angle), scaling (``RandZoomd``, or ``RandAffined`` per axis),
Gaussian noise, blur, brightness, contrast, low resolution, inverted gamma, gamma (``training.core.augment``'s
intensity steps), mirroring along both slice axes (``RandFlipd``). Labels are resampled nearest. Spine labels have no
left/right pairs, so a mirror swaps nothing. Elastic deformation is a 3-D step here (``Rand3DElasticd``); nnU-Net
v2 leaves it off, and so does this module (a config that asks for it gets an error).

Determinism: :class:`SliceAugmenter` reseeds every transform from the loop's numpy generator before each slice, so
a generator restored from a checkpoint draws the same augmentations again.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from monai.transforms import (
    Compose,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandSimulateLowResolutiond,
    RandZoomd,
)
from multimodalseg.errors import UserError

from training.core.augment import _pair, check_augmentation, intensity_steps, zoom_range
from training.core.config import AugmentationConfig


def spatial_steps_2d(aug: AugmentationConfig, keys: list[str]) -> list:
    """In-plane rotation and scaling of a 2-D slice; ``keys[0]`` is the image (bilinear), the rest nearest."""
    modes = ["bilinear"] + ["nearest"] * (len(keys) - 1)
    steps: list = []
    if aug.rotate_degrees > 0 and aug.rotate_prob > 0:  # one angle in the slice plane (nnU-Net's 2-D rotation)
        steps.append(RandAffined(keys=keys, prob=aug.rotate_prob, rotate_range=[float(np.deg2rad(aug.rotate_degrees))],
                                 mode=modes, padding_mode="zeros", allow_missing_keys=True))
    low, high = zoom_range(aug.scale_range)
    if (low, high) != (1.0, 1.0) and aug.scale_prob > 0:
        if aug.scale_per_axis:
            steps.append(RandAffined(keys=keys, prob=aug.scale_prob, scale_range=[(low - 1.0, high - 1.0)] * 2,
                                     mode=modes, padding_mode="zeros", allow_missing_keys=True))
        else:
            steps.append(RandZoomd(keys=keys, prob=aug.scale_prob, min_zoom=low, max_zoom=high, mode=modes,
                                   padding_mode="constant", keep_size=True, allow_missing_keys=True))
    return steps


def intensity_steps_2d(aug: AugmentationConfig) -> list:
    """``training.core.augment.intensity_steps`` with the low-resolution step upsampling bilinearly (2-D)."""
    steps = intensity_steps(replace(aug, lowres_prob=0.0))
    if aug.lowres_prob > 0:  # nnU-Net's place: after contrast, before the gammas
        at = next((i for i, s in enumerate(steps) if isinstance(s, RandAdjustContrastd)), len(steps))
        steps.insert(at, RandSimulateLowResolutiond(keys="image", prob=aug.lowres_prob, upsample_mode="bilinear",
                                                    zoom_range=_pair(aug.lowres_zoom, "lowres_zoom")))
    return steps


def slice_augmentation(aug: AugmentationConfig | None) -> list:
    """Every random step for one cropped slice; none when ``aug`` is None or ``aug.enabled`` is False."""
    if aug is None or not aug.enabled:
        return []
    check_augmentation(aug)
    if aug.elastic_prob > 0:
        raise UserError("augmentation.elastic_prob must be 0 for the spine recipes' 2-D slices (nnU-Net's default)")
    if aug.intensity_prob > 0:
        raise UserError("augmentation.intensity_prob (the 3-D papers' scale/shift) is not used by the spine recipes")
    keys = ["image", "label"]
    flips = [RandFlipd(keys=keys, prob=aug.flip_prob, spatial_axis=axis, allow_missing_keys=True)
             for axis in (0, 1)] if aug.flip_prob > 0 else []
    return spatial_steps_2d(aug, keys) + intensity_steps_2d(aug) + flips


class SliceAugmenter:
    """Applies :func:`slice_augmentation` to one slice, its random state drawn from ``rng`` each call.

    Args:
        aug: the config's augmentation settings; None or disabled: the slice passes unchanged and ``rng`` is
            not used.
        rng: the training loop's generator (saved and restored by its checkpoints).
    """

    def __init__(self, aug: AugmentationConfig | None, rng: np.random.Generator) -> None:
        steps = slice_augmentation(aug)
        self.transform = Compose(steps) if steps else None
        self.rng = rng

    def __call__(self, image: np.ndarray, label: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """``image`` (C, H, W) float32, ``label`` (H, W) int64 or None -> the same shapes and dtypes."""
        if self.transform is None:
            return image, label
        self.transform.set_random_state(seed=int(self.rng.integers(2**31)))
        data = {"image": image} if label is None else {"image": image, "label": label[None]}
        out = self.transform(data)
        new_image = np.asarray(out["image"], dtype=np.float32)
        new_label = None if label is None else np.rint(np.asarray(out["label"])[0]).astype(label.dtype)
        return new_image, new_label
