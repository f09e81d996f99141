"""Random augmentation of training patches: nnU-Net's default steps through MONAI transforms, and mirroring that
swaps the Left/Right labels.

:func:`augmentation_steps` turns an :class:`~training.core.config.AugmentationConfig` into MONAI dictionary
transforms, in nnU-Net v2's order (``nnUNetTrainer.get_training_transforms``): rotation, scaling, [elastic],
Gaussian noise, Gaussian blur, brightness, contrast, low resolution, inverted gamma, gamma, mirroring; the papers'
intensity scale/shift (DMFNet, 3D UX-Net) last when configured. Steps whose probability is 0 are left out.

Departures from nnU-Net, all for speed on the CPU: the patch is cropped first and then transformed (nnU-Net samples
the rotated/scaled patch from the whole case, so its corners are never empty; here they are zero-padded); rotation
and scaling are two resamplings when both fire (4 % of the patches at the defaults); images are resampled linearly
(nnU-Net: cubic); blur and low-resolution act on all channels of a patch together unless ``per_channel_prob`` is
set (nnU-Net: each channel with p 0.5, :class:`RandEachChanneld`), gamma on the whole patch (nnU-Net: per channel).

Mirroring: :class:`RandLateralFlipd` flips one array axis; when that axis is the sample's left-right axis
(``LATERAL_KEY``, set by the preparation from the grid's direction matrix through
``multimodalseg.tasks.lateral_axis``), it also exchanges each Left/Right pair of the training-index label map
(``TaskSpec.lateral_pairs().index_lut``), so that a flipped Left-Thalamus is still called Left-Thalamus on its new
(the patient's left) side. The same rule as flip test-time augmentation (``multimodalseg.inference.engine``) and the
synthetic-data generator.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import (
    Flip,
    MapTransform,
    OneOf,
    Rand3DElasticd,
    RandAdjustContrastd,
    RandAffined,
    RandGaussianNoised,
    RandGaussianSmooth,
    RandGaussianSmoothd,
    RandomizableTransform,
    RandRotated,
    RandScaleIntensityd,
    RandScaleIntensityFixedMeand,
    RandShiftIntensityd,
    RandSimulateLowResolution,
    RandSimulateLowResolutiond,
    RandZoomd,
    Transform,
)
from multimodalseg.errors import UserError
from multimodalseg.tasks.spec import TaskSpec

from training.core.config import AugmentationConfig

# Sample key holding the array axis (0..2 of a (Z, Y, X) volume) that runs along the patient's left-right axis.
LATERAL_KEY = "lateral_axis"


class RandEachChanneld(RandomizableTransform, MapTransform):
    """With probability ``prob``, apply the array transform ``step`` to each channel of ``keys`` on its own, each
    channel with probability ``channel_prob`` (nnU-Net's per-channel blur and low resolution): the modalities of a
    multi-sequence case then differ in sharpness, as scans of one patient from different protocols and grids do.

    Args:
        keys: channel-first images.
        step: a randomizable array transform that always fires (``prob=1.0``), called on ``(1, *spatial)`` slices.
        prob: probability that the step is considered for the sample at all.
        channel_prob: probability, per channel, that it then applies.
    """

    def __init__(self, keys: KeysCollection, step: Transform, prob: float, channel_prob: float,
                 allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.step = step
        self.channel_prob = float(channel_prob)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.step.set_random_state(seed, self.R if seed is None and state is None else state)
        return self

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            image = d[key]
            chosen = [c for c in range(image.shape[0]) if self.R.rand() < self.channel_prob]
            if not chosen:
                continue
            out = image.clone() if isinstance(image, torch.Tensor) else np.array(image, copy=True)
            for c in chosen:
                out[c:c + 1] = torch.as_tensor(self.step(image[c:c + 1])) if isinstance(out, torch.Tensor) \
                    else np.asarray(self.step(image[c:c + 1]))
            d[key] = out
        return d


class RandThickSlices(RandomizableTransform):
    """With probability ``prob``, the image as a 2-D acquisition with thick slices along one random spatial axis:
    each slab of ``1 / zoom`` voxels is averaged (a box slice profile, ``area`` interpolation) and the result is
    interpolated back to the grid linearly, as a scan with 5 mm slices is resampled onto a 2 mm network grid.
    Unlike MONAI's ``RandSimulateLowResolution`` (one zoom for every axis, nearest-neighbour down), only one axis
    loses resolution, and the slice profile integrates rather than samples.

    Args:
        prob: probability of the transform.
        zoom_range: ``[low, high]`` of the kept fraction of voxels along the chosen axis (0.4: 2 mm -> 5 mm).
    """

    def __init__(self, prob: float, zoom_range: Sequence[float] = (0.25, 0.5)) -> None:
        RandomizableTransform.__init__(self, prob)
        self.zoom_range = (float(zoom_range[0]), float(zoom_range[1]))
        self.axis, self.zoom, self._axis_draw = 0, 1.0, 0.0

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self._axis_draw = float(self.R.uniform())  # the axis among however many spatial axes the image has
        self.zoom = float(self.R.uniform(*self.zoom_range))

    def __call__(self, img: Any, randomize: bool = True) -> Any:
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        x = torch.as_tensor(img, dtype=torch.float32)[None]  # (1, C, *spatial), 1 to 3 spatial axes
        size = list(x.shape[2:])
        self.axis = min(int(self._axis_draw * len(size)), len(size) - 1)
        thick = list(size)
        thick[self.axis] = max(1, int(round(size[self.axis] * self.zoom)))
        linear = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
        out = F.interpolate(F.interpolate(x, size=thick, mode="area"), size=size, mode=linear,
                            align_corners=False)[0]
        if isinstance(img, torch.Tensor):
            result = img.clone()
            result[...] = out.to(img.dtype)
            return result
        return out.numpy().astype(np.asarray(img).dtype, copy=False)


class RandThickSlicesd(RandEachChanneld):
    """:class:`RandThickSlices` with one axis and zoom for all channels of ``keys`` (one 2-D protocol)."""

    def __init__(self, keys: KeysCollection, prob: float, zoom_range: Sequence[float] = (0.25, 0.5),
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, RandThickSlices(1.0, zoom_range), prob, 1.0, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        self.step.randomize()
        for key in self.key_iterator(d):
            d[key] = self.step(d[key], randomize=False)
        return d


class RandLateralFlipd(RandomizableTransform, MapTransform):
    """Flip ``keys`` along one spatial axis with probability ``prob``; along the sample's left-right axis also swap
    the Left/Right pairs of ``label_keys``.

    Args:
        keys: channel-first arrays to flip (image, label, per-case extras).
        axis: spatial axis of ``(C, Z, Y, X)`` arrays (0..2), or None: the sample's own left-right axis
            (``LATERAL_KEY``; no flip when the sample has none).
        prob: probability of the flip.
        label_keys: training-index maps whose pairs are exchanged (a subset of ``keys``).
        lut: ``lut[index]`` = the mirrored index (``LateralPairs.index_lut``); None: the task has no pairs.
    """

    def __init__(self, keys: KeysCollection, axis: int | None, prob: float, label_keys: Sequence[str] = ("label",),
                 lut: Sequence[int] | None = None, allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.axis = None if axis is None else int(axis)
        self.label_keys = tuple(label_keys)
        self.lut = None if lut is None else torch.as_tensor(np.asarray(lut, np.int64))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        lateral = None if d.get(LATERAL_KEY) is None else int(d[LATERAL_KEY])
        axis = lateral if self.axis is None else self.axis
        if not self._do_transform or axis is None:
            return d
        flipper = Flip(spatial_axis=axis)
        for key in self.key_iterator(d):
            d[key] = flipper(d[key])
        if self.lut is not None and lateral == axis:
            for key in self.label_keys:
                if key in d:
                    d[key] = swap_pairs(d[key], self.lut)
        return d


def swap_pairs(label: Any, lut: torch.Tensor) -> Any:
    """``lut[label]`` with ``label``'s type and dtype kept (numpy array, tensor or MetaTensor)."""
    if isinstance(label, np.ndarray):
        return lut.numpy()[label.astype(np.int64)].astype(label.dtype)
    out = label.clone()
    out[...] = lut.to(label.device)[label.long()].to(label.dtype)
    return out


def zoom_range(scale_range: float | Sequence[float]) -> tuple[float, float]:
    """``[low, high]`` zoom factors of ``augmentation.scale_range`` (a number ``s``: ``[1 - s, 1 + s]``)."""
    if isinstance(scale_range, (int, float)):
        return 1.0 - float(scale_range), 1.0 + float(scale_range)
    low, high = (float(v) for v in scale_range)
    return low, high


def _pair(values: Sequence[float], name: str) -> tuple[float, float]:
    if len(values) != 2 or float(values[0]) > float(values[1]):
        raise UserError(f"augmentation.{name} must be [low, high], got {list(values)}")
    return float(values[0]), float(values[1])


def check_augmentation(aug: AugmentationConfig) -> None:
    """UserError naming the field for a probability outside [0, 1] or a malformed range."""
    for name in ("rotate_prob", "scale_prob", "elastic_prob", "noise_prob", "blur_prob", "brightness_prob",
                 "contrast_prob", "lowres_prob", "thick_slice_prob", "gamma_prob", "gamma_inverted_prob", "flip_prob",
                 "intensity_prob"):
        value = getattr(aug, name)
        if not 0.0 <= value <= 1.0:
            raise UserError(f"augmentation.{name} must be a probability in [0, 1], got {value}")
    if not 0.0 <= aug.per_channel_prob <= 1.0:
        raise UserError(f"augmentation.per_channel_prob must be a probability in [0, 1], got {aug.per_channel_prob}")
    if aug.flip_axes not in ("all", "lateral"):
        raise UserError(f"augmentation.flip_axes must be 'all' or 'lateral', got {aug.flip_axes!r}")
    for name in ("elastic_sigma", "elastic_magnitude", "blur_sigma", "brightness_range", "contrast_range",
                 "lowres_zoom", "thick_slice_zoom", "gamma_range"):
        _pair(getattr(aug, name), name)
    if not (aug.thick_slice_zoom[0] > 0.0 and aug.thick_slice_zoom[1] <= 1.0):
        raise UserError(f"augmentation.thick_slice_zoom must be within (0, 1], got {list(aug.thick_slice_zoom)}")
    low, high = zoom_range(aug.scale_range)
    if not 0.0 < low <= high:
        raise UserError(f"augmentation.scale_range must give zoom factors 0 < low <= high, got {aug.scale_range}")


def _rotation(aug: AugmentationConfig, keys: list[str], modes: list[str]) -> Any:
    limit = float(np.deg2rad(aug.rotate_degrees))
    if aug.rotate_mode == "one_plane":  # DMFNet's RandomRotion: a random angle in one random plane
        return OneOf([RandRotated(keys=keys, prob=aug.rotate_prob, mode=modes, padding_mode="zeros",
                                  **{f"range_{axis}": limit}) for axis in "xyz"])
    return RandAffined(keys=keys, prob=aug.rotate_prob, rotate_range=[limit] * 3, mode=modes, padding_mode="zeros")


def _scaling(aug: AugmentationConfig, keys: list[str], modes: list[str]) -> Any:
    low, high = zoom_range(aug.scale_range)
    if aug.scale_per_axis:  # an independent factor per axis (MONAI's scale_range is added to 1)
        return RandAffined(keys=keys, prob=aug.scale_prob, scale_range=[(low - 1.0, high - 1.0)] * 3, mode=modes,
                           padding_mode="zeros")
    zoom_modes = ["trilinear" if m == "bilinear" else m for m in modes]
    return RandZoomd(keys=keys, prob=aug.scale_prob, min_zoom=low, max_zoom=high, mode=zoom_modes,
                     padding_mode="constant", keep_size=True)


def spatial_steps(aug: AugmentationConfig, keys: list[str]) -> list:
    """Rotation, scaling, elastic deformation; ``keys[0]`` is the image (linear), the rest labels (nearest)."""
    modes = ["bilinear"] + ["nearest"] * (len(keys) - 1)
    steps: list = []
    if aug.rotate_degrees > 0 and aug.rotate_prob > 0:
        steps.append(_rotation(aug, keys, modes))
    low, high = zoom_range(aug.scale_range)
    if (low, high) != (1.0, 1.0) and aug.scale_prob > 0:
        steps.append(_scaling(aug, keys, modes))
    if aug.elastic_prob > 0:
        steps.append(Rand3DElasticd(keys=keys, prob=aug.elastic_prob,
                                    sigma_range=_pair(aug.elastic_sigma, "elastic_sigma"),
                                    magnitude_range=_pair(aug.elastic_magnitude, "elastic_magnitude"), mode=modes,
                                    padding_mode="zeros"))
    return steps


def intensity_steps(aug: AugmentationConfig) -> list:
    """nnU-Net's intensity steps on ``image``, each only when its probability is above 0."""
    steps: list = []
    if aug.noise_prob > 0:
        steps.append(RandGaussianNoised(keys="image", prob=aug.noise_prob, std=aug.noise_std, sample_std=True))
    if aug.blur_prob > 0:
        sigma = _pair(aug.blur_sigma, "blur_sigma")
        if aug.per_channel_prob > 0:
            steps.append(RandEachChanneld("image", RandGaussianSmooth(sigma, sigma, sigma, prob=1.0), aug.blur_prob,
                                          aug.per_channel_prob))
        else:
            steps.append(RandGaussianSmoothd(keys="image", prob=aug.blur_prob, sigma_x=sigma, sigma_y=sigma,
                                             sigma_z=sigma))
    if aug.brightness_prob > 0:  # v * (1 + f), f drawn per channel
        low, high = _pair(aug.brightness_range, "brightness_range")
        steps.append(RandScaleIntensityd(keys="image", prob=aug.brightness_prob, factors=(low - 1.0, high - 1.0),
                                         channel_wise=True))
    if aug.contrast_prob > 0:  # (v - mean) * c + mean, clipped to the channel's range (nnU-Net's preserve_range)
        low, high = _pair(aug.contrast_range, "contrast_range")
        steps.append(RandScaleIntensityFixedMeand(keys="image", prob=aug.contrast_prob,
                                                  factors=(low - 1.0, high - 1.0), fixed_mean=True,
                                                  preserve_range=True, channel_wise=True))
    if aug.lowres_prob > 0:
        zoom = _pair(aug.lowres_zoom, "lowres_zoom")
        if aug.per_channel_prob > 0:
            steps.append(RandEachChanneld("image", RandSimulateLowResolution(prob=1.0, zoom_range=zoom),
                                          aug.lowres_prob, aug.per_channel_prob))
        else:
            steps.append(RandSimulateLowResolutiond(keys="image", prob=aug.lowres_prob, zoom_range=zoom))
    if aug.thick_slice_prob > 0:
        zoom = _pair(aug.thick_slice_zoom, "thick_slice_zoom")
        if aug.per_channel_prob > 0:
            steps.append(RandEachChanneld("image", RandThickSlices(1.0, zoom), aug.thick_slice_prob,
                                          aug.per_channel_prob))
        else:  # every channel the same slices, as one 2-D protocol
            steps.append(RandThickSlicesd("image", aug.thick_slice_prob, zoom))
    gamma = _pair(aug.gamma_range, "gamma_range")
    if aug.gamma_inverted_prob > 0:
        steps.append(RandAdjustContrastd(keys="image", prob=aug.gamma_inverted_prob, gamma=gamma, invert_image=True,
                                         retain_stats=True))
    if aug.gamma_prob > 0:
        steps.append(RandAdjustContrastd(keys="image", prob=aug.gamma_prob, gamma=gamma, invert_image=False,
                                         retain_stats=True))
    return steps


def flip_steps(aug: AugmentationConfig, task: TaskSpec, keys: list[str]) -> list:
    """A :class:`RandLateralFlipd` per axis (``flip_axes: all``) or along the left-right axis only (``lateral``); the
    label swap only for tasks with exclusive Left/Right labels."""
    if aug.flip_prob <= 0:
        return []
    pairs = task.lateral_pairs()
    lut = pairs.index_lut(task.num_classes) if pairs and task.output_kind == "labels" and "label" in keys else None
    axes = [None] if aug.flip_axes == "lateral" else range(3)
    return [RandLateralFlipd(keys=keys, axis=axis, prob=aug.flip_prob, lut=lut) for axis in axes]


def augmentation_steps(aug: AugmentationConfig, task: TaskSpec, keys: list[str]) -> list:
    """Every random step after the patch crop (before modality dropout and the loss target); none when
    ``aug.enabled`` is False. ``keys``: ``image`` first, then the label and per-case extras."""
    if not aug.enabled:
        return []
    check_augmentation(aug)
    steps = spatial_steps(aug, keys) + intensity_steps(aug) + flip_steps(aug, task, keys)
    if aug.intensity_prob > 0:  # the papers' own intensity augmentation (DMFNet, 3D UX-Net)
        steps += [RandScaleIntensityd(keys="image", factors=aug.intensity_scale, prob=aug.intensity_prob,
                                      channel_wise=aug.channel_wise),
                  RandShiftIntensityd(keys="image", offsets=aug.intensity_shift, prob=aug.intensity_prob,
                                      channel_wise=aug.channel_wise)]
    return steps
