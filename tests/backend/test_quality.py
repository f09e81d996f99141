"""Plausibility checks (multimodalseg.inference.quality): warnings for what a model cannot have seen, none for a
phantom of the task's own anatomy; the shipped whole-heart model through the Predictor."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from multimodalseg.inference.quality import RANGES, QualityChecks
from multimodalseg.phantoms.case import make_case
from multimodalseg.tasks import get_task


def head_ct(spacing: float = 3.0) -> sitk.Image:
    """An adult head in HU: 150 x 190 x 200 mm ellipsoid of brain (35 HU) in a 6 mm skull (1200 HU), in air."""
    n = (96, 96, 84)  # x, y, z voxels: 288 x 288 x 252 mm
    z, y, x = np.meshgrid(*[(np.arange(k) - k / 2 + 0.5) * spacing for k in n[::-1]], indexing="ij")
    r = np.sqrt((x / 75) ** 2 + (y / 95) ** 2 + (z / 100) ** 2)
    hu = np.full(r.shape, -1000.0, np.float32)
    hu[r <= 1.0] = 1200.0
    hu[r <= 1.0 - 6 / 75] = 35.0
    image = sitk.GetImageFromArray(hu + np.random.default_rng(0).normal(0, 5, hu.shape).astype(np.float32))
    image.SetSpacing((spacing,) * 3)
    return image


def test_head_ct_to_whole_heart_warns_on_the_input():
    checks = QualityChecks(get_task("whole-heart"), {"image": head_ct()}, modality="ct")
    report = checks.report()
    assert not report["ok"]
    (finding,) = [f for f in report["findings"] if f["check"] == "body_extent"]
    assert 140 <= finding["extent_mm"] <= 160  # the head's 150 mm breadth, at 3 mm voxels
    assert "too narrow for whole-heart" in finding["message"]


def test_heart_phantom_ct_passes_the_input_checks():
    case = make_case("whole-heart", 3, modality="ct")
    checks = QualityChecks(get_task("whole-heart"), case.images, modality="ct")
    assert checks.report()["ok"], checks.report()["warnings"]
    assert any("body left-right" in c for c in checks.report()["checked"])


def test_mr_given_as_ct_and_zero_stand_in_warn():
    mr = make_case("brain-tumor", 1).images["t1ce"]  # MR intensities, background 0: no fat or air below -50
    task = get_task("whole-heart")
    msgs = QualityChecks(task, {"image": mr}, modality="ct").report()["warnings"]
    assert any("does not look like CT in HU" in m for m in msgs)
    zeros = sitk.Image(mr.GetSize(), sitk.sitkFloat32)
    zeros.CopyInformation(mr)
    msgs = QualityChecks(task, {"image": zeros}, modality="ct").report()["warnings"]
    assert msgs == ["input 'image' is constant (0): no image content"]


def test_ct_torso_given_to_a_brain_task_warns():
    torso = make_case("whole-heart", 3, modality="ct").images["image"]
    task = get_task("brain-tumor")
    msgs = QualityChecks(task, {"t1ce": torso}).report()["warnings"]
    assert any("HU-like negative values" in m for m in msgs)


def test_output_volumes_against_the_table():
    case = make_case("whole-heart", 3, modality="ct")
    emitted: list[dict] = []
    checks = QualityChecks(get_task("whole-heart"), case.images, modality="ct", emit=emitted.append)
    lo, hi = RANGES["whole-heart"]["volumes_ml"]["Myo"]
    label = sitk.Image(case.images["image"].GetSize(), sitk.sitkUInt16)
    label.CopyInformation(case.images["image"])
    checks.after(label, {"Myo": hi + 1, "LV": 100.0})
    (finding,) = checks.report()["findings"]
    assert finding["label"] == "Myo" and finding["range_ml"] == [lo, hi]
    assert emitted == [{"event": "warning", "message": f"quality: {finding['message']}", "check": "volume"}]


def test_heart_labels_on_skull_bone_warn():
    image = head_ct()
    checks = QualityChecks(get_task("whole-heart"), {"image": image}, modality="ct")
    hu = sitk.GetArrayFromImage(image)
    lab = sitk.GetImageFromArray(((hu > 600) * 205).astype(np.uint16))  # "myocardium" painted on the skull
    lab.CopyInformation(image)
    checks.after(lab, {})
    assert any(f["check"] == "on_bone" for f in checks.report()["findings"])


@pytest.fixture(scope="module")
def heart_predictor():
    from multimodalseg.inference.predictor import Predictor, load_model

    events: list[dict] = []
    return Predictor(load_model("whole-heart", None), "cpu", progress=events.append, modality="ct"), events


def test_predictor_head_ct_gets_warning_events_and_quality(heart_predictor):
    predictor, events = heart_predictor
    events.clear()
    result = predictor.predict({"image": head_ct()})
    quality = result.report["quality"]
    assert not quality["ok"]
    warned = [e["message"] for e in events if e.get("event") == "warning" and e["message"].startswith("quality:")]
    assert any("too narrow for whole-heart" in m for m in warned)
    assert len(warned) == len(quality["warnings"])
    assert result.labels.GetSize() == head_ct().GetSize()  # labels still written: a warning, not a refusal


def test_predictor_plausible_heart_ct_has_no_quality_warning(heart_predictor):
    """A synthetic thorax CT of the anatomy held out of the shipped model's training: plausible in and out."""
    from multimodalseg.synthesis import load_anatomy, make_synth_case
    from multimodalseg.synthesis.anatomy import HELD_OUT

    predictor, events = heart_predictor
    events.clear()
    held = tuple(m for m in load_anatomy("whole-heart") if m.name in HELD_OUT["heart"])
    result = predictor.predict(make_synth_case("whole-heart", 9000, anatomy=held, modality="ct").images)
    assert result.report["quality"]["ok"], result.report["quality"]["warnings"]
    assert not [e for e in events if e.get("event") == "warning" and e["message"].startswith("quality:")]


def head_mr(stripped: bool, spacing: float = 2.0) -> sitk.Image:
    """A T1ce-like head: a 150 x 190 x 200 mm ellipsoid (2.98 L) with 12 mm of bright scalp and dark skull around the
    brain (1.93 L) in noisy air; ``stripped``: the brain alone on an exact-zero background, as BraTS gives it."""
    n = (100, 110, 120)
    z, y, x = np.meshgrid(*[(np.arange(k) - k / 2 + 0.5) * spacing for k in n[::-1]], indexing="ij")
    head = (x / 75) ** 2 + (y / 95) ** 2 + (z / 100) ** 2 <= 1.0
    brain = (x / 63) ** 2 + (y / 83) ** 2 + (z / 88) ** 2 <= 1.0
    rng = np.random.default_rng(0)
    mr = np.abs(rng.normal(0, 8, head.shape)).astype(np.float32)  # Rician-like air
    mr[head] = 900.0  # scalp fat, bright on T1
    mr[head & ((x / 69) ** 2 + (y / 89) ** 2 + (z / 94) ** 2 <= 1.0)] = 120.0  # skull, dark
    mr[brain] = rng.normal(500, 40, int(brain.sum()))
    if stripped:
        mr[~brain] = 0.0
    image = sitk.GetImageFromArray(mr)
    image.SetSpacing((spacing,) * 3)
    return image


def test_whole_head_mr_to_brain_tumor_warns_and_a_stripped_brain_does_not():
    task = get_task("brain-tumor")
    head = QualityChecks(task, {"t1ce": head_mr(stripped=False)}).report()
    (finding,) = [f for f in head["findings"] if f["check"] == "skull_stripped"]
    assert 2700 <= finding["volume_ml"] <= 3300 and "strip the skull first" in finding["message"]
    told = QualityChecks(task, {"t1ce": head_mr(stripped=False)}, strips=True).report()  # segment strips it first
    (finding,) = [f for f in told["findings"] if f["check"] == "skull_stripped"]
    assert "the brain-mask model strips it first" in finding["message"] and "strip the skull" not in finding["message"]
    stripped = QualityChecks(task, {"t1ce": head_mr(stripped=True)}).report()
    assert stripped["ok"], stripped["warnings"]
    assert any("skull-stripped" in c for c in stripped["checked"])


def test_synthetic_and_phantom_brains_pass_the_skull_strip_check():
    from multimodalseg.synthesis import make_synth_case

    task = get_task("brain-tumor")
    for images in (make_synth_case("brain-tumor", 9000).images, make_case("brain-tumor", 1).images):
        report = QualityChecks(task, images).report()
        assert not [f for f in report["findings"] if f["check"] == "skull_stripped"], report["warnings"]


def test_thick_slices_warn_for_the_tumour_task_only():
    task = get_task("brain-tumor")
    flair = head_mr(stripped=True)
    thick = sitk.Resample(flair, [flair.GetSize()[0], flair.GetSize()[1], flair.GetSize()[2] // 3], sitk.Transform(),
                          sitk.sitkLinear, flair.GetOrigin(), (*flair.GetSpacing()[:2], 3 * flair.GetSpacing()[2]),
                          flair.GetDirection())
    report = QualityChecks(task, {"t1ce": flair, "flair": thick}).report()
    (finding,) = [f for f in report["findings"] if f["check"] == "thick_slices"]
    assert finding["role"] == "flair" and finding["spacing_mm"] == round(3 * flair.GetSpacing()[2], 2) > 3.0
    assert "flair" in finding["message"] and "mm slices" in finding["message"]
    assert any(c.startswith("t1ce: voxel spacing") for c in report["checked"])
    heart = QualityChecks(get_task("whole-heart"), {"image": head_ct(spacing=5.0)}, modality="ct").report()
    assert not [f for f in heart["findings"] if f["check"] == "thick_slices"]
