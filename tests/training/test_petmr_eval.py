"""PET/MR evaluation as in the paper: per-structure uptake agreement (Pearson r) between predicted and reference
masks, the PET noise of the robustness curve (hand-made data, known answers), and both through
``python -m training validate`` with the demo bundle."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
from multimodalseg.metrics import petmr as pm
from multimodalseg.phantoms import make_case
from multimodalseg.phantoms.layouts import write_case
from multimodalseg.tasks import get_task

from training.core.cli import main as training_main

TASK = get_task("petmr-brain")


def test_pearson_known_values():
    assert pm.pearson([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)  # sum(dx dy) 4 / sum(dx^2) 5
    assert pm.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert pm.pearson([1, 2, 3], [10, 20, 30.0]) == pytest.approx(1.0)
    assert math.isnan(pm.pearson([1, 2], [1, 2]))  # too few pairs
    assert math.isnan(pm.pearson([1, 1, 1], [1, 2, 3]))  # constant sample
    with pytest.raises(ValueError, match="differ in length"):
        pm.pearson([1, 2, 3], [1, 2])


def test_uptake_agreement_known_values():
    reference = {"a": 2.0, "b": 4.0, "c": 6.0, "d": 8.0, "absent": None}
    predicted = {"a": 2.0, "b": 4.1, "c": 6.6, "d": 8.0, "absent": 3.0, "extra": 1.0}
    out = pm.uptake_agreement(predicted, reference)
    assert out["n"] == 4  # structures with both values
    assert out["mean_abs_rel_diff"] == pytest.approx((0 + 0.025 + 0.1 + 0) / 4)
    assert out["within_tolerance"] == pytest.approx(3 / 4)  # c is 10 % off
    x, y = [2, 4, 6, 8], [2.0, 4.1, 6.6, 8.0]
    assert out["pearson_r"] == pytest.approx(np.corrcoef(x, y)[0, 1])
    slope, intercept = np.polyfit(x, y, 1)
    assert (out["slope"], out["intercept"]) == (pytest.approx(slope), pytest.approx(intercept))
    identical = pm.uptake_agreement(reference, reference)
    assert identical["pearson_r"] == pytest.approx(1.0) and identical["within_tolerance"] == 1.0


def _grid(array: np.ndarray, spacing, origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def test_mean_uptake_of_predicted_and_reference_masks_on_the_pet_grid():
    """Labels on a 1 mm grid, PET on a 2 mm grid covering the same space: structure means are of the PET voxels
    whose centres fall in each mask; the predicted mask of B leaks into C, so its mean is known."""
    ref = np.zeros((8, 8, 16), np.uint8)  # z, y, x at 1 mm; structures are 4 mm slabs along x
    ref[:, :, 0:4], ref[:, :, 4:8], ref[:, :, 8:12] = 10, 11, 12
    pred = ref.copy()
    pred[:, :, 8:10] = 11  # B grows by 2 mm into C
    # PET voxel centres at x = 0.5, 2.5, ... mm: columns 0-1 in A, 2-3 in B, 4-5 in C, 6-7 background
    # (each centre lies between two label voxels of the same structure, so nearest neighbour is unambiguous).
    pet_values = np.zeros((4, 4, 8), np.float32)
    pet_values[:, :, 0:2], pet_values[:, :, 2:4], pet_values[:, :, 4:6] = 1.0, 3.0, 7.0
    labels_origin, pet_origin = (0.0, 0.0, 0.0), (0.5, 0.5, 0.5)
    pet = _grid(pet_values, (2.0, 2.0, 2.0), pet_origin)
    names = {10: "A", 11: "B", 12: "C", 13: "absent"}
    expected = pm.mean_uptake(pet, _grid(ref, (1.0, 1.0, 1.0), labels_origin), names)
    predicted = pm.mean_uptake(pet, _grid(pred, (1.0, 1.0, 1.0), labels_origin), names)
    assert expected == {"A": 1.0, "B": 3.0, "C": 7.0, "absent": None}
    # PET columns 4 and 5 (x 8.5 and 10.5 mm) now sit in B and C: B has 2 columns of 3 and 1 of 7.
    assert predicted["A"] == 1.0 and predicted["C"] == 7.0
    assert predicted["B"] == pytest.approx((3.0 * 2 + 7.0) / 3)
    assert pm.uptake_agreement(predicted, expected)["n"] == 3


def test_noisy_pet_adds_gaussian_noise_scaled_by_the_robust_scale():
    rng = np.random.default_rng(0)
    values = rng.uniform(0.0, 100.0, (40, 50, 60)).astype(np.float32)
    pet = _grid(values, (2.0, 2.0, 3.0), (1.0, -2.0, 5.0))
    scale = pm.robust_scale(pet)
    assert scale == pytest.approx(99.0, rel=2e-3)  # the 99th percentile of U(0, 100)
    clean = pm.noisy_pet(pet, 0.0)
    assert np.array_equal(sitk.GetArrayFromImage(clean), values)
    noisy = pm.noisy_pet(pet, 0.1, seed=3)
    assert noisy.GetSpacing() == pet.GetSpacing() and noisy.GetOrigin() == pet.GetOrigin()
    noise = sitk.GetArrayFromImage(noisy).astype(np.float64) - values
    assert noise.std() == pytest.approx(0.1 * scale, rel=0.01) and abs(noise.mean()) < 0.05
    assert np.array_equal(sitk.GetArrayFromImage(pm.noisy_pet(pet, 0.1, seed=3)), sitk.GetArrayFromImage(noisy))
    assert not np.array_equal(sitk.GetArrayFromImage(pm.noisy_pet(pet, 0.1, seed=4)), sitk.GetArrayFromImage(noisy))
    with pytest.raises(ValueError, match=">= 0"):
        pm.noisy_pet(pet, -0.1)


def test_robustness_curve_rows():
    rows = pm.robustness_curve([0.0, 0.1, 0.5], [[0.9, 0.8], [0.85, 0.75, math.nan], [0.5, None]])
    assert [r["level"] for r in rows] == [0.0, 0.1, 0.5]
    assert [r["dice_mean"] for r in rows] == pytest.approx([0.85, 0.8, 0.5])
    assert [r["drop"] for r in rows] == pytest.approx([0.0, 0.05, 0.35])
    assert rows[0]["dice_sd"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="2 levels but 1"):
        pm.robustness_curve([0.0, 0.1], [[0.9]])


def test_validate_reports_paper_metrics_uptake_correlation_and_robustness(tmp_path, capsys, untrained_bundle):
    """``python -m training validate`` with an untrained small bundle (no PET/MR demo bundle ships) on one phantom
    (a central 84 mm cube of
    the head, so it runs in few windows): every metric of the paper, the uptake correlation recomputed here from
    the reported means, and Dice at each noise level. (How good the numbers are is the demo accuracy test's
    business: tests/backend/test_petmr_demo.py.)"""
    bundle = untrained_bundle("petmr-brain", spacing=(1.75, 1.75, 1.75))
    case = make_case("petmr-brain", 9200, shape=(48, 48, 48), spacing=(1.75, 1.75, 1.75))
    write_case(case, tmp_path / "data", 1)
    report = tmp_path / "validation.json"
    code = training_main(["validate", "--bundle", str(bundle), "--data", str(tmp_path / "data"), "--device", "cpu",
                          "--noise-levels", "0.3,1.0", "--json", str(report)])
    assert code == 0
    printed = capsys.readouterr()
    assert printed.out.splitlines()[-1].startswith("mean ")  # the Dice table on stdout, the summary on stderr
    assert "Pearson r" in printed.err and "PET noise level 1.000" in printed.err and "jaccard" in printed.err
    result = json.loads(report.read_text())
    row = result["cases"][0]
    for metric in ("dice", "jaccard", "sensitivity", "precision", "hd", "hd95"):
        assert set(row[metric]) == {lab.name for lab in TASK.labels}
        assert result["metrics_mean"][metric] is not None
    assert result["metrics_mean"]["jaccard"] <= result["metrics_mean"]["dice"]
    # The uptake agreement is recomputed here from the reported per-structure means.
    structures = row["uptake"]["structures"]
    assert set(structures) == {lab.name for lab in TASK.labels}
    pairs = np.array([(s["predicted"], s["reference"]) for s in structures.values()
                      if s["predicted"] is not None and s["reference"] is not None])
    assert row["uptake"]["n"] == len(pairs) >= 1
    expected_r = np.corrcoef(pairs.T)[0, 1] if len(pairs) >= 3 else None
    assert row["uptake"]["pearson_r"] == (pytest.approx(expected_r, abs=1e-9) if expected_r is not None else None)
    assert result["uptake"]["pooled"]["n"] == row["uptake"]["n"]
    # Reference means: the mean PET value of the reference mask, recomputed from the files.
    pet = sitk.ReadImage(str(tmp_path / "data" / "sub-001" / "pet.nii.gz"))
    aseg = sitk.ReadImage(str(tmp_path / "data" / "sub-001" / "aseg.nii.gz"))
    on_pet = sitk.GetArrayFromImage(sitk.Resample(aseg, pet, sitk.Transform(), sitk.sitkNearestNeighbor))
    putamen = sitk.GetArrayFromImage(pet)[on_pet == 12]
    assert structures["Left-Putamen"]["reference"] == pytest.approx(float(putamen.mean()), rel=1e-6)
    curve = result["robustness"]
    assert [r["level"] for r in curve] == [0.0, 0.3, 1.0]
    assert curve[0]["dice_mean"] == pytest.approx(row["dice_mean"]) and curve[0]["drop"] == 0.0
    assert all(0.0 <= r["dice_mean"] <= 1.0 for r in curve)


@pytest.mark.parametrize("levels", ["0.1,abc", "-0.1", "nan"])
def test_noise_levels_are_checked_first(tmp_path, capsys, levels):
    code = training_main(["validate", "--bundle", str(tmp_path / "missing.pt"), "--data", str(tmp_path),
                          "--noise-levels", levels])
    assert code == 2
    assert "--noise-levels" in capsys.readouterr().err
