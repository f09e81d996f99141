"""Training augmentation: nnU-Net's default steps with their probabilities, and mirrors that swap Left/Right labels
along the patient's left-right axis (taken from the direction matrix), not along a fixed array axis."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.transforms import (
    OneOf,
    Rand3DElasticd,
    RandAdjustContrastd,
    RandAffined,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandScaleIntensityd,
    RandScaleIntensityFixedMeand,
    RandShiftIntensityd,
    RandSimulateLowResolutiond,
    RandZoomd,
)
from multimodalseg.errors import UserError
from multimodalseg.tasks import get_task

from training.core.augment import (
    LATERAL_KEY,
    RandEachChanneld,
    RandLateralFlipd,
    RandThickSlices,
    RandThickSlicesd,
    flip_steps,
)
from training.core.config import AugmentationConfig, TrainingConfig
from training.core.transforms import PrepareCased, train_transforms

TASK = get_task("petmr-brain")
SHAPE = (20, 22, 24)  # (Z, Y, X)
# LPS: +x is the patient's left. Index axis z along LPS x: a sagittal stack, the left-right axis is array axis 0.
SAGITTAL = (0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0)


def _index(name: str) -> int:
    return TASK.label(name).index


def _lateral_case(folder, direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)) -> dict:
    """T1, PET and an aseg with Left-Thalamus on the patient's left, Right-Thalamus on the right (different sizes,
    so a mirror is visible) and the brainstem in the middle; files on a grid with ``direction``."""
    folder.mkdir(parents=True, exist_ok=True)
    values = np.zeros(SHAPE, np.uint16)
    axis = 2 - int(np.argmax(np.abs(np.asarray(direction).reshape(3, 3)[0])))  # array axis along LPS x
    sign = np.sign(np.asarray(direction).reshape(3, 3)[0, 2 - axis])
    n = SHAPE[axis]
    left, right = [slice(None)] * 3, [slice(None)] * 3
    hi, lo = (slice(n - 8, n - 2), slice(3, 7)) if sign > 0 else (slice(3, 9), slice(n - 6, n - 2))
    left[axis], right[axis] = hi, lo
    values[tuple(left)] = TASK.label("Left-Thalamus").value
    values[tuple(right)] = TASK.label("Right-Thalamus").value
    values[8:12, 9:13, 10:14] = TASK.label("Brain-Stem").value
    rng = np.random.default_rng(0)
    paths = {}
    for name, array in (("t1", rng.uniform(50, 150, SHAPE)), ("pet", rng.uniform(1, 9, SHAPE)), ("aseg", values)):
        image = sitk.GetImageFromArray(array.astype(np.uint16 if name == "aseg" else np.float32))
        image.SetSpacing((2.0, 2.0, 2.0))
        image.SetDirection(direction)
        paths[name] = folder / f"{name}.nii.gz"
        sitk.WriteImage(image, str(paths[name]))
    return {"id": folder.name, "images": {"t1": (str(paths["t1"]), None), "pet": (str(paths["pet"]), None)},
            "label": str(paths["aseg"]), "convention": None, "modality": None}


def _only_flips(prob: float = 1.0) -> TrainingConfig:
    off = {k: 0.0 for k in ("rotate_prob", "scale_prob", "noise_prob", "blur_prob", "brightness_prob",
                             "contrast_prob", "lowres_prob", "gamma_prob", "gamma_inverted_prob")}
    return TrainingConfig.from_dict({
        "task": TASK.id, "data": {"spacing": []},
        "augmentation": {"patch_size": list(SHAPE[::-1]), "samples_per_case": 1, "pos_fraction": None,
                         "flip_prob": prob, **off}})


def _swapped(indices: np.ndarray) -> np.ndarray:
    return np.asarray(TASK.lateral_pairs().index_lut(TASK.num_classes))[indices]


@pytest.mark.parametrize(("direction", "axis"), [((1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0), 2), (SAGITTAL, 0)])
def test_prepared_case_knows_its_left_right_axis_from_the_direction_matrix(tmp_path, direction, axis):
    out = PrepareCased(TASK.id, None, None)(_lateral_case(tmp_path / "case", direction))
    assert out[LATERAL_KEY] == axis
    label = np.asarray(out["label"])[0]
    left = np.argwhere(label == _index("Left-Thalamus"))[:, axis].mean()
    right = np.argwhere(label == _index("Right-Thalamus"))[:, axis].mean()
    assert (left > right) == (np.asarray(direction).reshape(3, 3)[0, 2 - axis] > 0)  # +LPS x is left


@pytest.mark.parametrize("direction", [(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0), SAGITTAL])
def test_a_flip_along_left_right_swaps_the_pairs_and_other_flips_do_not(tmp_path, direction):
    sample = PrepareCased(TASK.id, None, None)(_lateral_case(tmp_path / "case", direction))
    lateral = sample[LATERAL_KEY]
    label = np.asarray(sample["label"])
    lut = TASK.lateral_pairs().index_lut(TASK.num_classes)
    for axis in range(3):
        flip = RandLateralFlipd(keys=["image", "label"], axis=axis, prob=1.0, lut=lut)
        out = np.asarray(flip(dict(sample))["label"])
        mirrored = np.flip(label, axis + 1)
        expected = _swapped(mirrored) if axis == lateral else mirrored
        np.testing.assert_array_equal(out, expected)
        # anatomy: after a left-right mirror the structure on the patient's left is still Left-Thalamus
        if axis == lateral:
            np.testing.assert_array_equal(out == _index("Left-Thalamus"), mirrored == _index("Right-Thalamus"))
            assert (out == _index("Brain-Stem")).sum() == (label == _index("Brain-Stem")).sum()
        else:
            np.testing.assert_array_equal(out == _index("Left-Thalamus"), mirrored == _index("Left-Thalamus"))


def test_training_pipeline_mirrors_with_the_swap(tmp_path):
    """The whole training pipeline with mirroring only (p 1 on each axis: all three flips, one of them the
    left-right one): the target is the flipped label with every pair swapped once. The old RandFlipd kept the
    Left-/Right- indices on the wrong side."""
    record = _lateral_case(tmp_path / "case")
    label = np.asarray(PrepareCased(TASK.id, None, None)(record)["label"])[0]
    out = train_transforms(_only_flips(), TASK)(record)[0]
    expected = _swapped(np.flip(label, (0, 1, 2)))
    np.testing.assert_array_equal(out["label"][0].numpy().astype(np.int64), expected)
    assert set(np.unique(expected)) == set(np.unique(label))
    assert not np.array_equal(expected, np.flip(label, (0, 1, 2)))  # the swap changed something


def test_flip_steps_swap_only_for_tasks_with_lateral_labels():
    assert all(step.lut is not None for step in flip_steps(AugmentationConfig(), TASK, ["image", "label"]))
    for task in ("brain-tumor", "whole-heart", "spine"):  # regions / no Left-Right pairs
        assert all(step.lut is None for step in flip_steps(AugmentationConfig(), get_task(task), ["image", "label"]))
    assert flip_steps(AugmentationConfig(flip_prob=0.0), TASK, ["image", "label"]) == []


def _steps(aug: dict, task: str = "brain-tumor") -> list:
    config = TrainingConfig.from_dict({"task": task, "loss": {"name": "dice_ce"}, "augmentation": aug})
    return train_transforms(config, get_task(task)).transforms


def test_defaults_are_nnunets_steps_with_their_probabilities():
    steps = _steps({})
    by_type = {}
    for step in steps:
        by_type.setdefault(type(step), []).append(step)
    rotation, zoom = by_type[RandAffined][0], by_type[RandZoomd][0]
    assert rotation.prob == 0.2
    assert [round(float(np.degrees(r))) for r in rotation.rand_affine.rand_affine_grid.rotate_range] == [30] * 3
    assert zoom.prob == 0.2 and (zoom.rand_zoom.min_zoom, zoom.rand_zoom.max_zoom) == ((0.7,), (1.4,))
    assert RandZoomd in by_type and Rand3DElasticd not in by_type  # nnU-Net v2: no elastic deformation
    assert by_type[RandGaussianNoised][0].prob == 0.1 and by_type[RandGaussianNoised][0].rand_gaussian_noise.std == 0.1
    assert by_type[RandGaussianSmoothd][0].prob == 0.2
    assert by_type[RandScaleIntensityd][0].prob == 0.15 and by_type[RandScaleIntensityd][0].scaler.factors == (-0.25,
                                                                                                                0.25)
    contrast = by_type[RandScaleIntensityFixedMeand][0]
    assert contrast.prob == 0.15 and contrast.scaler.preserve_range and contrast.scaler.fixed_mean
    assert by_type[RandSimulateLowResolutiond][0].prob == 0.25
    inverted, gamma = by_type[RandAdjustContrastd]
    assert (inverted.prob, inverted.adjuster.invert_image, inverted.adjuster.retain_stats) == (0.1, True, True)
    assert (gamma.prob, gamma.adjuster.invert_image, gamma.adjuster.retain_stats) == (0.3, False, True)
    assert gamma.adjuster.gamma == (0.7, 1.5)
    flips = by_type[RandLateralFlipd]
    assert [f.axis for f in flips] == [0, 1, 2] and all(f.prob == 0.5 for f in flips)
    assert RandShiftIntensityd not in by_type  # the papers' shift is opt-in (intensity_prob)
    names = [type(s).__name__ for s in steps]
    assert names.index("RandAffined") < names.index("RandGaussianNoised") < names.index("RandLateralFlipd")


def test_disabled_augmentation_keeps_only_the_crop():
    names = [type(s).__name__ for s in _steps({"enabled": False})]
    assert not [n for n in names if n.startswith("Rand") and not n.startswith("RandCrop")]


def test_paper_style_options():
    steps = _steps({"rotate_degrees": 10.0, "rotate_prob": 1.0, "rotate_mode": "one_plane", "scale_range": 0.1,
                    "scale_per_axis": True, "scale_prob": 0.5, "intensity_prob": 1.0, "elastic_prob": 0.2})
    assert isinstance(steps[next(i for i, s in enumerate(steps) if isinstance(s, OneOf))], OneOf)
    scaling = [s for s in steps if isinstance(s, RandAffined)]
    assert len(scaling) == 1 and scaling[0].prob == 0.5  # per-axis factors in [0.9, 1.1]
    np.testing.assert_allclose(scaling[0].rand_affine.rand_affine_grid.scale_range, [(-0.1, 0.1)] * 3)
    elastic = next(s for s in steps if isinstance(s, Rand3DElasticd))
    assert elastic.prob == 0.2 and elastic.rand_3d_elastic.sigma_range == (9.0, 13.0)
    assert any(isinstance(s, RandShiftIntensityd) for s in steps)


@pytest.mark.parametrize(("aug", "message"), [({"blur_prob": 1.5}, "augmentation.blur_prob must be a probability"),
                                              ({"gamma_range": [1.5, 0.7]}, "augmentation.gamma_range"),
                                              ({"scale_range": [0.0, 1.2]}, "augmentation.scale_range"),
                                              ({"per_channel_prob": -0.1}, "augmentation.per_channel_prob"),
                                              ({"flip_axes": "sagittal"}, "augmentation.flip_axes"),
                                              ({"thick_slice_zoom": [0.0, 0.5]}, "augmentation.thick_slice_zoom"),
                                              ({"thick_slice_prob": 2.0}, "augmentation.thick_slice_prob")])
def test_bad_augmentation_values_name_the_key(aug, message):
    with pytest.raises(UserError, match=message):
        _steps(aug)


def test_default_pipeline_runs_and_keeps_labels_integral(tmp_path):
    """Every default step on a lateral case: the image stays finite, the target keeps valid training indices."""
    record = _lateral_case(tmp_path / "case")
    config = TrainingConfig.from_dict({"task": TASK.id, "data": {"spacing": []}, "augmentation": {
        "patch_size": [16, 16, 16], "samples_per_case": 4, **{k: 1.0 for k in (
            "rotate_prob", "scale_prob", "noise_prob", "blur_prob", "brightness_prob", "contrast_prob",
            "lowres_prob", "gamma_prob")}}})
    pipeline = train_transforms(config, TASK)
    pipeline.set_random_state(3)
    for patch in pipeline(record):
        assert patch["image"].shape == (2, 16, 16, 16) and torch.isfinite(patch["image"]).all()
        values = patch["label"].numpy()
        assert np.array_equal(values, np.round(values)) and values.min() >= 0 and values.max() <= len(TASK.labels)


@pytest.mark.parametrize("direction", [(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0), SAGITTAL])
def test_lateral_only_mirroring_flips_the_left_right_axis_of_each_sample(tmp_path, direction):
    """``flip_axes: lateral``: one mirror, along whichever array axis the sample's left-right axis is, with the swap."""
    sample = PrepareCased(TASK.id, None, None)(_lateral_case(tmp_path / "case", direction))
    (flip,) = flip_steps(AugmentationConfig(flip_prob=1.0, flip_axes="lateral"), TASK, ["image", "label"])
    label = np.asarray(sample["label"])
    out = np.asarray(flip(dict(sample))["label"])
    np.testing.assert_array_equal(out, _swapped(np.flip(label, sample[LATERAL_KEY] + 1)))
    unknown = {k: v for k, v in sample.items() if k != LATERAL_KEY}  # no known left-right axis: no mirror
    np.testing.assert_array_equal(np.asarray(flip(unknown)["label"]), label)


def _channels_changed(aug: dict, seed: int) -> list[bool]:
    steps = [s for s in _steps({"noise_prob": 0.0, "brightness_prob": 0.0, "contrast_prob": 0.0, "gamma_prob": 0.0,
                                "gamma_inverted_prob": 0.0, "rotate_prob": 0.0, "scale_prob": 0.0, **aug})
             if isinstance(s, (RandEachChanneld, RandGaussianSmoothd, RandSimulateLowResolutiond, RandThickSlicesd))]
    image = torch.rand(4, 24, 24, 24, generator=torch.Generator().manual_seed(seed))
    out = {"image": image.clone()}
    for step in steps:
        step.set_random_state(seed)
        out = step(out)
    return [not torch.allclose(out["image"][c], image[c]) for c in range(4)]


def test_thick_slices_average_slabs_along_one_axis_only():
    """A 2-D protocol's thick slices: along the chosen axis each slab of 1/zoom voxels is its mean (a box slice
    profile), and the other two axes keep every detail."""
    image = torch.rand(1, 20, 16, 12, generator=torch.Generator().manual_seed(0))
    step = RandThickSlices(1.0, (0.25, 0.25)).set_random_state(3)
    step.randomize()
    out = step(image, randomize=False)
    axis = step.axis
    assert out.shape == image.shape and out.dtype == image.dtype
    moved, result = image.movedim(axis + 1, 1)[0], out.movedim(axis + 1, 1)[0]
    slabs = moved.reshape(moved.shape[0] // 4, 4, *moved.shape[1:]).mean(1)  # four voxels per slab
    k = 2  # output voxel 4k + 1 sits at slab coordinate k - 1/8 (linear, voxel centres)
    np.testing.assert_allclose(result[4 * k + 1], 0.125 * slabs[k - 1] + 0.875 * slabs[k], rtol=1e-5, atol=1e-6)
    # the in-plane detail is kept: within one output slice the variation is that of the slab mean, not smoothed
    assert float(result.std(dim=(1, 2)).mean()) > 0.6 * float(slabs.std(dim=(1, 2)).mean())
    # and along the chosen axis the high frequencies are gone
    diff_in, diff_out = (t.movedim(axis + 1, 1).diff(dim=1).abs().mean() for t in (image, out))
    assert diff_out < 0.35 * diff_in
    flat = RandThickSlices(1.0, (0.5, 0.5)).set_random_state(0)(image[:, 0])  # a 2-D slice: one of its two axes
    assert flat.shape == image[:, 0].shape and not torch.allclose(flat, image[:, 0])
    untouched = RandThickSlices(0.0)(image.numpy())
    np.testing.assert_array_equal(untouched, image.numpy())


def test_thick_slices_join_the_pipeline_per_channel_or_for_all():
    patterns = [tuple(_channels_changed({"thick_slice_prob": 1.0, "blur_prob": 0.0, "lowres_prob": 0.0,
                                         "per_channel_prob": 0.5}, seed)) for seed in range(12)]
    assert any(0 < sum(p) < 4 for p in patterns) and len(set(patterns)) > 2
    assert all(_channels_changed({"thick_slice_prob": 1.0, "blur_prob": 0.0, "lowres_prob": 0.0}, seed)
               == [True] * 4 for seed in range(3))
    assert not any(isinstance(s, RandThickSlicesd) for s in _steps({}))  # off by default


@pytest.mark.parametrize("kind", ["blur_prob", "lowres_prob"])
def test_per_channel_blur_and_low_resolution_change_some_modalities_and_leave_others(kind):
    """nnU-Net's per-channel rule: with ``per_channel_prob`` 0.5 a fired step reaches each modality on its own, so a
    case has sharp and blurred sequences side by side (re-gridded FLAIR beside a native T1ce); without it, all
    four channels change together."""
    other = "lowres_prob" if kind == "blur_prob" else "blur_prob"
    patterns = [tuple(_channels_changed({kind: 1.0, other: 0.0, "per_channel_prob": 0.5}, seed)) for seed in range(12)]
    assert any(0 < sum(p) < 4 for p in patterns)  # mixed cases happen
    assert len(set(patterns)) > 2  # and which channels change varies
    assert _channels_changed({kind: 1.0, other: 0.0, "per_channel_prob": 0.5}, 5) == list(patterns[5])  # seeded
    assert all(_channels_changed({kind: 1.0, other: 0.0}, seed) == [True] * 4 for seed in range(3))
