"""Metrics against MONAI's metric functions, analytic cases, empty-mask conventions, grids and task labels."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.metrics import (
    compute_average_surface_distance,
    compute_confusion_matrix_metric,
    compute_dice,
    compute_hausdorff_distance,
    compute_iou,
    get_confusion_matrix,
)
from monai.networks.utils import one_hot
from multimodalseg.errors import UserError
from multimodalseg.io import make_image
from multimodalseg.metrics import evaluate_images, mean_over_labels, segmentation_metrics, surface
from multimodalseg.tasks import get_task
from scipy import ndimage as ndi

SPACING = (2.5, 0.7, 1.1)  # (z, y, x) array order, anisotropic


def blob(rng: np.random.Generator, shape=(22, 36, 30), threshold=0.52) -> np.ndarray:
    """A random smooth blob mask (several components, irregular surfaces)."""
    return ndi.gaussian_filter(rng.random(shape), 2.0) > threshold


def monai_metrics(pred: np.ndarray, ref: np.ndarray, spacing) -> dict[str, float]:
    """MONAI's values for one binary pair, given as (B=1, C=1, ...) tensors."""
    p = torch.from_numpy(pred)[None, None].float()
    r = torch.from_numpy(ref)[None, None].float()
    cm = get_confusion_matrix(p, r, include_background=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # MONAI's own deprecated argument in get_mask_edges
        return {
            "dice": compute_dice(p, r, include_background=True).item(),
            "jaccard": compute_iou(p, r, include_background=True).item(),
            "sensitivity": compute_confusion_matrix_metric("sensitivity", cm).item(),
            "precision": compute_confusion_matrix_metric("precision", cm).item(),
            "hd": compute_hausdorff_distance(p, r, include_background=True, spacing=spacing).item(),
            "hd95": compute_hausdorff_distance(p, r, include_background=True, percentile=95, spacing=spacing).item(),
            "assd": compute_average_surface_distance(p, r, include_background=True, symmetric=True,
                                                     spacing=spacing).item(),
        }


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_binary_metrics_agree_with_monai_on_random_blobs(seed):
    rng = np.random.default_rng(seed)
    pred, ref = blob(rng), blob(rng)
    assert pred.any() and ref.any() and (pred & ref).any() and (pred != ref).any()
    ours = segmentation_metrics(pred, ref, SPACING)
    theirs = monai_metrics(pred, ref, SPACING)
    assert ours["hd"] > ours["hd95"] > ours["assd"] > 0  # a case where the three differ
    for key, value in theirs.items():
        # MONAI works in float32; the distances are the same exact Euclidean ones (KD-tree over surface voxels).
        assert ours[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_label_map_metrics_agree_with_monai_one_hot():
    """Image level: per-label bounding-box crops and the (x, y, z) -> (z, y, x) spacing order are right."""
    rng = np.random.default_rng(7)
    shape = (20, 40, 34)
    ref = np.zeros(shape, np.uint8)
    for value, threshold in ((1, 0.53), (2, 0.535), (5, 0.54)):
        ref[blob(rng, shape, threshold) & (ref == 0)] = value
    pred = np.roll(ref, 1, axis=2)
    pred[blob(rng, shape, 0.55)] = 0  # holes and clipped borders
    spacing_xyz = SPACING[::-1]
    result = evaluate_images(make_image(pred, spacing_xyz), make_image(ref, spacing_xyz))
    assert list(result["labels"]) == ["1", "2", "5"]
    p = one_hot(torch.from_numpy(pred.astype(np.int64))[None, None], num_classes=6)
    r = one_hot(torch.from_numpy(ref.astype(np.int64))[None, None], num_classes=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns about the empty channels 3 and 4
        hd95 = compute_hausdorff_distance(p, r, include_background=False, percentile=95, spacing=SPACING)[0]
        assd = compute_average_surface_distance(p, r, include_background=False, symmetric=True, spacing=SPACING)[0]
    dice = compute_dice(p, r, include_background=False)[0]  # channels 1..5
    for value in (1, 2, 5):
        ours = result["labels"][str(value)]
        assert 0.3 < ours["dice"] < 0.95 and ours["hd95"] > 0
        assert ours["dice"] == pytest.approx(dice[value - 1].item(), rel=1e-5)
        assert ours["hd95"] == pytest.approx(hd95[value - 1].item(), rel=1e-5)
        assert ours["assd"] == pytest.approx(assd[value - 1].item(), rel=1e-5)


def test_surface_is_monais_erosion_edge():
    rng = np.random.default_rng(3)
    for shape in ((9, 10, 11), (2, 12, 12), (1, 7, 5), (30, 6, 8)):
        mask = rng.random(shape) > 0.35  # many voxels on the array border
        assert np.array_equal(surface(mask), mask ^ ndi.binary_erosion(mask)), shape


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 3])
def test_shifted_cubes(axis, k):
    """Two cubes of side n shifted by k voxels: Dice (n-k)/n, Jaccard (n-k)/(n+k), HD = k * spacing[axis]."""
    n, spacing = 8, (3.0, 0.5, 1.25)
    ref = np.zeros((20, 20, 20), bool)
    ref[4:4 + n, 4:4 + n, 4:4 + n] = True
    pred = np.roll(ref, k, axis=axis)
    m = segmentation_metrics(pred, ref, spacing)
    assert m["dice"] == pytest.approx((n - k) / n)
    assert m["jaccard"] == pytest.approx((n - k) / (n + k))
    assert m["sensitivity"] == pytest.approx((n - k) / n) and m["precision"] == pytest.approx((n - k) / n)
    assert m["hd"] == pytest.approx(k * spacing[axis])
    assert m["volume_pred_ml"] == m["volume_ref_ml"] == pytest.approx(n**3 * math.prod(spacing) / 1000)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_parallel_plates_all_distances_equal_the_gap(axis):
    """One-voxel-thick plates k voxels apart: every surface voxel is k * spacing from the other plate."""
    spacing, k = (2.0, 0.6, 1.3), 4
    ref = np.zeros((12, 12, 12), bool)
    index = [slice(2, 10)] * 3
    index[axis] = 3
    ref[tuple(index)] = True
    pred = np.roll(ref, k, axis=axis)
    m = segmentation_metrics(pred, ref, spacing)
    assert m["dice"] == 0 and m["empty"] is None
    for key in ("hd", "hd95", "assd"):
        assert m[key] == pytest.approx(k * spacing[axis]), key


def test_single_voxels_use_euclidean_distance_with_anisotropic_spacing():
    spacing = (2.0, 0.5, 0.8)
    ref = np.zeros((6, 8, 9), bool)
    pred = np.zeros_like(ref)
    ref[1, 1, 1] = True
    pred[2, 3, 4] = True
    expected = math.dist((0, 0, 0), (1 * 2.0, 2 * 0.5, 3 * 0.8))
    m = segmentation_metrics(pred, ref, spacing)
    assert (m["hd"], m["hd95"], m["assd"]) == pytest.approx((expected,) * 3)


def test_hd95_ignores_one_outlier_voxel_that_hd_sees():
    ref = np.zeros((30, 30, 30), bool)
    ref[5:15, 5:15, 5:15] = True
    pred = ref.copy()
    pred[27, 27, 27] = True
    m = segmentation_metrics(pred, ref, (1.0, 1.0, 1.0))
    assert m["hd"] == pytest.approx(math.dist((27,) * 3, (14,) * 3))
    assert m["hd95"] == 0.0  # all other surface voxels coincide
    assert 0 < m["assd"] < 0.1


def test_empty_mask_conventions():
    full = np.zeros((6, 6, 6), bool)
    full[1:4, 1:4, 1:4] = True
    empty = np.zeros_like(full)
    both = segmentation_metrics(empty, empty, (1.0, 2.0, 3.0))
    assert both["empty"] == "both"
    assert [both[k] for k in ("dice", "jaccard", "sensitivity", "precision", "hd", "hd95", "assd")] == [
        1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    missed = segmentation_metrics(empty, full)
    assert missed["empty"] == "pred" and missed["dice"] == missed["jaccard"] == missed["sensitivity"] == 0.0
    assert all(math.isnan(missed[k]) for k in ("precision", "hd", "hd95", "assd"))
    spurious = segmentation_metrics(full, empty)
    assert spurious["empty"] == "ref" and spurious["dice"] == spurious["precision"] == 0.0
    assert all(math.isnan(spurious[k]) for k in ("sensitivity", "hd", "hd95", "assd"))
    assert spurious["volume_pred_ml"] == pytest.approx(27 / 1000) and spurious["volume_ref_ml"] == 0


def test_means_leave_out_both_empty_labels_and_undefined_values():
    a = np.zeros((10, 10, 10), bool)
    a[2:6, 2:6, 2:6] = True
    empty = np.zeros_like(a)
    per_label = {
        "same": segmentation_metrics(a, a),
        "shifted": segmentation_metrics(np.roll(a, 2, 0), a),
        "missed": segmentation_metrics(empty, a),
        "absent": segmentation_metrics(empty, empty),
    }
    mean, count = mean_over_labels(per_label)
    assert count == {"dice": 3, "jaccard": 3, "sensitivity": 3, "precision": 2, "hd": 2, "hd95": 2, "assd": 2}
    assert mean["dice"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert mean["hd"] == pytest.approx((0.0 + 2.0) / 2)
    only_absent, none = mean_over_labels({"absent": per_label["absent"]})
    assert only_absent["dice"] == 1.0 and only_absent["hd"] == 0.0 and none["dice"] == 0


def _image(arr, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None):
    return make_image(arr.astype(np.uint16), spacing, origin, direction)


def test_image_spacing_is_applied_per_axis():
    ref = np.zeros((10, 12, 14), np.uint16)
    ref[3:7, 3:8, 3:9] = 1
    spacing_xyz = (0.5, 1.0, 3.0)
    for axis, mm in ((0, 3.0), (1, 1.0), (2, 0.5)):  # array axes z, y, x
        result = evaluate_images(_image(np.roll(ref, 1, axis), spacing_xyz), _image(ref, spacing_xyz))
        assert result["labels"]["1"]["hd"] == pytest.approx(mm)


@pytest.mark.parametrize("change, message", [
    ({"arr": np.zeros((8, 8, 9))}, "size 9x8x8 vs 8x8x8"),
    ({"spacing": (1.0, 1.0, 1.5)}, "spacing (1, 1, 1.5) vs (1, 1, 1) mm"),
    ({"origin": (0.0, 0.5, 0.0)}, "origin (0, 0.5, 0) vs (0, 0, 0) mm"),
    ({"direction": (0, 1, 0, 1, 0, 0, 0, 0, 1)}, "direction (0, 1, 0, 1, 0, 0, 0, 0, 1) vs"),
])
def test_grid_mismatch_is_a_user_error_naming_the_prediction(change, message):
    ref = _image(np.zeros((8, 8, 8)))
    pred = _image(**{"arr": np.zeros((8, 8, 8)), **change})
    with pytest.raises(UserError) as err:
        evaluate_images(pred, ref, pred_path="case_pred.nii.gz")
    assert str(err.value).startswith("case_pred.nii.gz: grid differs from the reference: ")
    assert message in str(err.value)


def test_float32_rounding_of_the_grid_is_accepted():
    ref = _image(np.ones((4, 4, 4)), (0.9, 0.9, 1.2), (-120.123456, 80.5, 33.3))
    pred = _image(np.ones((4, 4, 4)), [float(np.float32(s)) for s in (0.9, 0.9, 1.2)],
                  [float(np.float32(o)) for o in (-120.123456, 80.5, 33.3)])
    assert evaluate_images(pred, ref)["mean"]["dice"] == 1.0


def _tumour(ncr, ed, et):
    """A tumour label map: ED shell, NCR core, ET rim, with the given values."""
    arr = np.zeros((16, 16, 16), np.uint16)
    arr[2:14, 2:14, 2:14] = ed
    arr[4:12, 4:12, 4:12] = et
    arr[6:10, 6:10, 6:10] = ncr
    return arr


def test_tumour_regions_and_conventions():
    task = get_task("brain-tumor")
    ref21, ref_msd = _tumour(1, 2, 4), _tumour(2, 1, 3)
    pred21 = np.roll(ref21, 1, axis=2)
    pred21[pred21 == 1] = 4  # NCR predicted as ET: TC and WT unaffected, ET too large
    pred_msd = np.choose(pred21, [0, 2, 1, 0, 3]).astype(np.uint16)  # the same prediction in MSD values
    r21 = evaluate_images(_image(pred21), _image(ref21), task=task)
    rmsd = evaluate_images(_image(pred_msd), _image(ref_msd), task=task, convention="msd")
    assert list(r21["labels"]) == ["NCR/NET", "ED", "ET"] and list(r21["regions"]) == ["WT", "TC", "ET"]
    for group in ("labels", "regions"):
        for name, metrics in r21[group].items():
            assert rmsd[group][name] == pytest.approx(metrics, nan_ok=True), (group, name)
    wt = segmentation_metrics(pred21 > 0, ref21 > 0)
    tc = segmentation_metrics(np.isin(pred21, (1, 4)), np.isin(ref21, (1, 4)))
    assert r21["regions"]["WT"] == pytest.approx(wt) and r21["regions"]["TC"] == pytest.approx(tc)
    assert r21["labels"]["NCR/NET"]["empty"] == "pred" and r21["empty"]["pred"] == ["NCR/NET"]
    assert r21["regions"]["ET"]["dice"] < r21["regions"]["TC"]["dice"]
    with pytest.raises(UserError, match="ref.nii.gz: label values 4 are not in the brain-tumor"):
        evaluate_images(_image(pred_msd), _image(ref21), task=task, convention="brats2023", ref_path="ref.nii.gz")


def test_task_lists_every_label_and_reads_aliases():
    heart = get_task("whole-heart")
    ref = np.zeros((12, 12, 12), np.uint16)
    ref[2:6, 2:6, 2:6] = 420
    ref[6:10, 6:10, 6:10] = 500
    pred = ref.copy()
    pred[pred == 420] = 421  # MM-WHS's stray LA value
    result = evaluate_images(_image(pred), _image(ref), task=heart)
    assert list(result["labels"]) == [lab.name for lab in heart.labels]
    assert result["labels"]["LA"]["dice"] == 1.0 and result["labels"]["LV"]["hd"] == 0.0
    assert sorted(result["empty"]["both"]) == ["AA", "Myo", "PA", "RA", "RV"]
    assert result["mean_count"]["dice"] == 2 and "regions" not in result
    pred[0, 0, 0] = 7
    with pytest.raises(UserError, match="pred.nrrd: label values 7 are not in the whole-heart"):
        evaluate_images(_image(pred), _image(ref), task=heart, pred_path="pred.nrrd")


def test_label_maps_of_other_integer_types_and_float_are_read():
    ref = np.zeros((6, 6, 6), np.int32)
    ref[1:4, 1:4, 1:4] = 3
    pred = sitk.GetImageFromArray(ref.astype(np.float32))
    result = evaluate_images(pred, sitk.GetImageFromArray(ref))
    assert result["labels"]["3"]["dice"] == 1.0
    bad = sitk.GetImageFromArray(ref.astype(np.float32) + 0.5)
    with pytest.raises(UserError, match="p.mha: label map holds non-integer values"):
        evaluate_images(bad, sitk.GetImageFromArray(ref), pred_path="p.mha")


def test_explicit_labels_without_a_task():
    ref = np.zeros((6, 6, 6), np.uint16)
    ref[1:3, 1:3, 1:3], ref[3:5, 3:5, 3:5] = 2, 7
    result = evaluate_images(_image(ref), _image(ref), labels=[7, 9])
    assert list(result["labels"]) == ["7", "9"]
    assert result["labels"]["9"]["empty"] == "both" and result["mean_count"]["dice"] == 1
    with pytest.raises(UserError, match="0 is the background"):
        evaluate_images(_image(ref), _image(ref), labels=[0, 2])
