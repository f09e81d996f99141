"""BraTS label conventions, regions, the ET threshold and the brain-tumor post-processing hook (METHODS §B.7-B.8)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import ConvertToMultiChannelBasedOnBratsClasses
from multimodalseg.errors import UserError
from multimodalseg.inference import postprocess as engine_postprocess
from multimodalseg.postprocessing import brats
from multimodalseg.tasks import get_task
from multimodalseg.tasks.brain_tumor import ED, ET, NCR

TASK = get_task("brain-tumor")


def sphere(shape, center, radius):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, center)) <= radius**2


def tumour(values: dict[str, int], shape=(24, 24, 24)) -> np.ndarray:
    """Nested tumour: ED shell, NCR core, ET rim between them, with the values of a convention."""
    c = tuple(s // 2 for s in shape)
    out = np.zeros(shape, np.uint8)
    out[sphere(shape, c, 10)] = values[ED]
    out[sphere(shape, c, 6)] = values[ET]
    out[sphere(shape, c, 4)] = values[NCR]
    return out


@pytest.mark.parametrize("convention", ["brats2021", "brats2023", "msd"])
def test_round_trip_through_regions(convention):
    values = TASK.values(convention)
    label = tumour(values)
    regions = brats.values_to_regions(label, TASK, convention)
    assert regions.shape == (3, *label.shape) and regions.dtype == bool
    wt, tc, et = regions
    assert np.array_equal(wt, label > 0)
    assert np.array_equal(tc, np.isin(label, [values[NCR], values[ET]]))
    assert np.array_equal(et, label == values[ET])
    assert np.array_equal(brats.regions_to_values(regions, TASK, convention), label)


@pytest.mark.parametrize(("convention", "et_label"), [("brats2021", 4), ("brats2023", 3)])
def test_regions_agree_with_monai(convention, et_label):
    label = tumour(TASK.values(convention))
    tc, wt, et = ConvertToMultiChannelBasedOnBratsClasses(et_label=et_label)(torch.as_tensor(label[None]))
    ours = brats.values_to_regions(label, TASK, convention)
    for mine, theirs in zip(ours, (wt, tc, et)):
        assert np.array_equal(mine, np.asarray(theirs))


@pytest.mark.parametrize("source", ["brats2021", "brats2023", "msd"])
@pytest.mark.parametrize("target", ["brats2021", "brats2023", "msd"])
def test_convention_conversion(source, target):
    label = tumour(TASK.values(source))
    converted = brats.convert_labels(label, TASK, source, target)
    assert np.array_equal(converted, tumour(TASK.values(target)))
    assert np.array_equal(brats.convert_labels(converted, TASK, target, source), label)


def test_task_values_are_brats2021_and_msd_swaps_ncr_and_ed():
    label = np.array([0, 1, 2, 4])
    assert np.array_equal(brats.convert_labels(label, TASK, None, "brats2021"), label)
    assert brats.convert_labels(label, TASK, None, "msd").tolist() == [0, 2, 1, 3]
    assert brats.values_to_indices(np.array([0, 1, 2, 3]), TASK, "msd").tolist() == [0, 2, 1, 3]


def test_unknown_values_name_the_file():
    with pytest.raises(UserError, match="case_seg.nii.gz: label values 3 are not in"):
        brats.values_to_indices(np.array([0, 1, 3]), TASK, "brats2021", path="case_seg.nii.gz")


@pytest.mark.parametrize(
    ("values", "expected"),
    [({0, 1, 2, 4}, "brats2021"), ({0, 1, 2, 3}, "brats2023"), ({0, 4}, "brats2021"), ({0, 1, 2}, None), ({0}, None)],
)
def test_detect_convention(values, expected):
    assert brats.detect_convention(values) == expected


@pytest.mark.parametrize(("values", "match"), [({0, 3, 4}, "both 3 and 4"), ({0, 1, 5}, "not BraTS labels")])
def test_detect_convention_rejects(values, match):
    with pytest.raises(UserError, match=match):
        brats.detect_convention(values)


def et_blob(n_voxels: int, shape=(20, 20, 20)) -> np.ndarray:
    """Index map: an ED block with ``n_voxels`` ET voxels in one 6-connected run inside it."""
    out = np.zeros(shape, np.uint8)
    out[2:18, 2:18, 2:18] = 2
    flat = np.zeros(16 * 16 * 16, bool)
    flat[:n_voxels] = True
    out[2:18, 2:18, 2:18][flat.reshape(16, 16, 16)] = 3
    return out


@pytest.mark.parametrize(("n", "relabelled"), [(499, True), (500, False)])
def test_et_threshold_total(n, relabelled):
    indices = et_blob(n)
    out = brats.et_threshold(indices, TASK, 500, "total")
    is_et = indices == 3
    assert np.all(out[is_et] == (1 if relabelled else 3))
    assert np.array_equal(out[~is_et], indices[~is_et])
    assert np.array_equal(indices, et_blob(n))  # the input is not modified


def test_et_threshold_components_and_connectivity():
    indices = np.zeros((30, 30, 30), np.uint8)
    indices[2:12, 2:12, 2:12] = 3  # 1000 voxels: kept
    indices[20:23, 20:23, 20:23] = 3  # 27 voxels: relabelled
    indices[25, 25, 25] = indices[26, 26, 26] = 3  # two voxels touching at a corner
    out = brats.et_threshold(indices, TASK, 30, "components")
    assert (out[2:12, 2:12, 2:12] == 3).all() and (out[20:23, 20:23, 20:23] == 1).all()
    assert out[25, 25, 25] == out[26, 26, 26] == 1
    assert np.array_equal(out == 0, indices == 0)
    out26 = brats.et_threshold(indices, TASK, 2, "components", connectivity=3)
    assert out26[25, 25, 25] == out26[26, 26, 26] == 3  # one component of 2 with 26-connectivity
    out6 = brats.et_threshold(indices, TASK, 2, "components", connectivity=1)
    assert out6[25, 25, 25] == out6[26, 26, 26] == 1  # two components of 1 with 6-connectivity
    # In "total" mode the same map keeps every ET voxel (1029 >= 500).
    assert np.array_equal(brats.et_threshold(indices, TASK, 500, "total"), indices)


def test_min_et_voxels_from_options():
    assert brats.min_et_voxels({}) == 500
    assert brats.min_et_voxels({"voxel_ml": 0.001}) == 500
    assert brats.min_et_voxels({"voxel_ml": 0.008}) == 63  # 2 mm voxels: ceil(0.5 mL / 0.008 mL)
    assert brats.min_et_voxels({"et_min_ml": 0.0}) == 0
    assert brats.min_et_voxels({"et_min_voxels": 42, "voxel_ml": 0.008}) == 42
    assert brats.min_et_voxels({"et_min_ml": np.float32(0.25), "voxel_ml": np.float32(0.001)}) == 250
    with pytest.raises(UserError, match="et_min_voxels"):
        brats.min_et_voxels({"et_min_voxels": -1})


def region_probabilities(shape=(32, 32, 32), et_radius=5) -> np.ndarray:
    """Smooth WT ⊇ TC ⊇ ET probability maps (R, Z, Y, X) around one centre."""
    grid = np.indices(shape)
    r = np.sqrt(sum((g - s // 2) ** 2 for g, s in zip(grid, shape)))
    return np.stack([1 / (1 + np.exp(r - rad)) for rad in (12.5, 8.5, et_radius + 0.5)]).astype(np.float32)


def test_hook_turns_regions_into_training_indices():
    probs = region_probabilities(et_radius=5)  # ET ball of 515 voxels: above 500, kept
    out = brats.postprocess(probs, TASK, {"threshold": 0.5, "voxel_ml": 0.001})
    assert out.dtype == np.uint8 and out.shape == probs.shape[1:]
    wt, tc, et = probs > 0.5
    assert np.array_equal(out == 3, et)
    assert np.array_equal(out == 1, tc & ~et)
    assert np.array_equal(out == 2, wt & ~tc)
    assert np.array_equal(out == 0, ~wt)


def test_hook_relabels_small_et_and_can_be_switched_off():
    probs = region_probabilities(et_radius=3)  # ET ball of 123 voxels
    et = probs[2] > 0.5
    out = brats.postprocess(probs, TASK, {"voxel_ml": 0.001})
    assert (out[et] == 1).all() and not (out == 3).any()
    off = brats.postprocess(probs, TASK, {"voxel_ml": 0.001, "et_min_ml": 0})
    assert np.array_equal(off == 3, et)
    # An index map (e.g. from another decoding) gets the ET rule only.
    assert np.array_equal(brats.postprocess(off, TASK, {"voxel_ml": 0.001}), out)


def test_hook_through_the_inference_engine():
    assert TASK.postprocess == "multimodalseg.postprocessing.brats:postprocess"
    probs = region_probabilities(et_radius=3)
    options = {"threshold": 0.5, "spacing": (1.0, 1.0, 1.0), "voxel_ml": 0.001, "modality": None}
    out = engine_postprocess.apply(probs, TASK, options)
    assert np.array_equal(out, brats.postprocess(probs, TASK, options))
    labels_ml, regions_ml = engine_postprocess.volumes_ml(out, TASK, 0.001)
    assert regions_ml["WT"] == pytest.approx((probs[0] > 0.5).sum() * 0.001)
    assert regions_ml["ET"] == 0.0 and labels_ml[NCR] == pytest.approx((probs[1] > 0.5).sum() * 0.001)


def test_hook_rejects_bad_input():
    probs = region_probabilities()
    with pytest.raises(UserError, match="threshold"):
        brats.postprocess(probs, TASK, {"threshold": 1.5})
    with pytest.raises(UserError, match="mode"):
        brats.postprocess(probs, TASK, {"et_mode": "largest"})
    with pytest.raises(ValueError, match="expects"):
        brats.postprocess(probs[0, 0], TASK, {})


def test_default_et_rule_is_dmfnets_whole_map_rule():
    indices = np.zeros((30, 30, 30), np.uint8)
    indices[2:12, 2:12, 2:12] = 3  # 1000 voxels
    indices[20:23, 20:23, 20:23] = 3  # a 27-voxel speck: kept by the whole-map rule (1027 >= 500)
    assert brats.ET_MODE == "total"
    assert np.array_equal(brats.postprocess(indices, TASK, {"voxel_ml": 0.001}), indices)
    per_component = brats.postprocess(indices, TASK, {"voxel_ml": 0.001, "et_mode": "components"})
    assert (per_component[20:23, 20:23, 20:23] == 1).all() and (per_component[2:12, 2:12, 2:12] == 3).all()
