"""WHS score, chamber volumes and myocardial mass (METHODS §C.7) on hand-made MM-WHS label maps."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from multimodalseg.io import make_image
from multimodalseg.metrics.evaluate import evaluate_images
from multimodalseg.metrics.heart import cardiac_volumes, evaluate_heart, whs_scores
from multimodalseg.tasks import get_task

# name -> (value, reference box (z, y, x) size, voxels the prediction drops from the box's x end)
STRUCTURES = {
    "LV": (500, (10, 10, 10), 1), "RV": (600, (8, 10, 10), 1), "LA": (420, (6, 6, 6), 0),
    "RA": (550, (6, 8, 6), 3), "Myo": (205, (4, 10, 10), 4), "AA": (820, (4, 4, 6), 3), "PA": (850, (4, 4, 4), 2),
}


def hand_made_maps() -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Reference boxes side by side along x; each prediction is the box with its last ``cut`` x-slabs removed,
    so Dice_k = 2 (n - cut) / (2 n - cut) in slab units, n the box's x size."""
    ref = np.zeros((12, 12, 80), np.uint16)
    pred = np.zeros_like(ref)
    dice, x = {}, 0
    for name, (value, (dz, dy, dx), cut) in STRUCTURES.items():
        ref[:dz, :dy, x:x + dx] = value
        pred[:dz, :dy, x:x + dx - cut] = value
        dice[name] = 2 * (dx - cut) / (2 * dx - cut)
        x += dx + 1
    return ref, pred, dice


def test_whs_score_is_the_reference_volume_weighted_mean():
    ref, pred, dice = hand_made_maps()
    spacing = (0.7, 0.9, 1.5)  # (x, y, z)
    result = evaluate_images(make_image(pred, spacing), make_image(ref, spacing), task=get_task("whole-heart"))
    for name, expected in dice.items():
        assert result["labels"][name]["dice"] == pytest.approx(expected)
    voxels = {name: np.prod(box) for name, (_, box, _) in STRUCTURES.items()}
    total = sum(voxels.values())
    scores = whs_scores(result["labels"])
    assert scores["whs"]["dice"] == pytest.approx(sum(voxels[n] / total * dice[n] for n in dice))
    assert scores["mean"]["dice"] == pytest.approx(np.mean(list(dice.values())))
    assert scores["weights"]["LV"] == pytest.approx(1000 / total)
    # The big, well-segmented LV and RV (Dice 0.947) outweigh the small AA and PA (0.667): WHS > plain mean.
    assert scores["whs"]["dice"] > scores["mean"]["dice"] + 0.01
    # Jaccard and distances are weighted the same way.
    jaccard = {n: d / (2 - d) for n, d in dice.items()}
    assert scores["whs"]["jaccard"] == pytest.approx(sum(voxels[n] / total * jaccard[n] for n in dice))


def test_whs_leaves_out_structures_absent_from_the_reference():
    ref, pred, dice = hand_made_maps()
    ref[ref == 850] = 0  # PA absent from the reference, still predicted: weight 0, but Dice 0 in the plain mean
    result = evaluate_images(make_image(pred), make_image(ref), task=get_task("whole-heart"))
    scores = whs_scores(result["labels"])
    assert scores["weights"]["PA"] == 0
    voxels = {name: np.prod(box) for name, (_, box, _) in STRUCTURES.items() if name != "PA"}
    total = sum(voxels.values())
    assert scores["whs"]["dice"] == pytest.approx(sum(voxels[n] / total * dice[n] for n in voxels))
    assert scores["mean"]["dice"] == pytest.approx((sum(dice[n] for n in voxels) + 0.0) / 7)


def test_evaluate_heart_adds_whs_and_volumes():
    ref, pred, dice = hand_made_maps()
    spacing = (0.5, 0.8, 2.0)
    result = evaluate_heart(make_image(pred, spacing), make_image(ref, spacing))
    assert result["whs"]["dice"] == pytest.approx(whs_scores(result["labels"])["whs"]["dice"])
    assert result["whs_mean"]["dice"] == pytest.approx(np.mean(list(dice.values())))
    lv_voxels = 10 * 10 * (10 - 1)
    assert result["volumes"]["LV_ml"] == pytest.approx(lv_voxels * 0.5 * 0.8 * 2.0 / 1000)


def test_chamber_volumes_and_myocardial_mass_on_an_anisotropic_grid():
    counts = {500: 1234, 600: 987, 420: 400, 421: 56, 550: 611, 205: 777, 820: 50, 850: 60}
    flat = np.zeros(20 * 30 * 40, np.uint16)
    start = 0
    for value, n in counts.items():
        flat[start:start + n] = value
        start += n
    labels = np.random.default_rng(0).permutation(flat).reshape(20, 30, 40)
    spacing = (0.6, 0.75, 2.5)  # (x, y, z) mm: 1.125 mm³ per voxel
    image = make_image(labels, spacing, direction=np.diag([1.0, -1.0, -1.0]))
    volumes = cardiac_volumes(image)
    voxel_ml = 0.6 * 0.75 * 2.5 / 1000
    assert volumes["LV_ml"] == pytest.approx(1234 * voxel_ml)
    assert volumes["RV_ml"] == pytest.approx(987 * voxel_ml)
    assert volumes["LA_ml"] == pytest.approx((400 + 56) * voxel_ml)  # the MR label bug 421 counts as LA
    assert volumes["RA_ml"] == pytest.approx(611 * voxel_ml)
    assert volumes["Myo_ml"] == pytest.approx(777 * voxel_ml)
    assert volumes["myocardial_mass_g"] == pytest.approx(777 * voxel_ml * 1.05)
    assert cardiac_volumes(labels, spacing) == volumes  # array + spacing gives the same
    # Training indices (LV 1, RV 2, LA 3, RA 4, Myo 5) through an explicit table.
    indices = np.zeros_like(labels)
    for value, index in {500: 1, 600: 2, 420: 3, 550: 4, 205: 5}.items():
        indices[labels == value] = index
    by_index = cardiac_volumes(indices, spacing, values={"LV": 1, "RV": 2, "LA": 3, "RA": 4, "Myo": 5})
    assert by_index["LA_ml"] == pytest.approx(400 * voxel_ml) and by_index["LV_ml"] == volumes["LV_ml"]


def test_cardiac_volumes_bad_input():
    with pytest.raises(ValueError, match="spacing"):
        cardiac_volumes(np.zeros((4, 4, 4), np.uint16))
    with pytest.raises(ValueError, match="spacing"):
        cardiac_volumes(np.zeros((4, 4, 4), np.uint16), (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="only with an array"):
        cardiac_volumes(sitk.Image(4, 4, 4, sitk.sitkUInt16), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="negative"):
        cardiac_volumes(-np.ones((4, 4, 4), np.int16), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="Myo"):
        cardiac_volumes(np.zeros((4, 4, 4), np.uint16), (1.0, 1.0, 1.0), values={"LV": 1, "RV": 2, "LA": 3, "RA": 4})
