"""The shipped whole-heart demo bundle end to end: the cascade (localisation -> ROI -> modality-conditioned MAUNet ->
SCN) with one set of weights for CT and MR, Dice on synthetic CT and MR cases of the anatomy held out of its training,
the conditioning is real, an input without its modality is refused, ``segment`` out of the box with chamber volumes,
WHS score in ``evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from multimodalseg import catalog, io
from multimodalseg.metrics import evaluate_images
from multimodalseg.metrics.heart import WHS_STRUCTURES, whs_scores
from multimodalseg.phantoms import make_case
from multimodalseg.synthesis import load_anatomy, make_synth_case
from multimodalseg.synthesis.anatomy import HELD_OUT
from multimodalseg.tasks import get_task

TASK = get_task("whole-heart")
MODEL_ID = "whole-heart-demo"
# The bundle (0.5.0) was trained on `synth` cases of the two HeartDeformNets maps; these cases come from the
# linflonet mesh anatomy, held out of its training (HELD_OUT["heart"]), with seeds it never saw, drawn by the current
# generator (CT in three contrast phases, 60 % framed as chest scans, a thorax up to the neck).
FRESH_SEEDS = (9100, 9101, 9102)
HELD_OUT_ANATOMY = tuple(m for m in load_anatomy("whole-heart") if m.name in HELD_OUT["heart"])


@pytest.fixture(autouse=True)
def own_home(tmp_path, monkeypatch):
    """An empty user catalog: the model must come from the shipped catalog."""
    monkeypatch.setenv("MULTIMODALSEG_HOME", str(tmp_path / "home"))


def write_case(seed: int, modality: str, folder: Path):
    case = make_synth_case(TASK.id, seed, anatomy=HELD_OUT_ANATOMY, modality=modality)
    return case, io.write_image(case.images["image"], folder / f"{modality}_{seed}.nii.gz")


def mean_dice(labels: sitk.Image, case) -> tuple[float, dict[str, float]]:
    scores = evaluate_images(labels, case.label, task=TASK)["labels"]
    per = {name: float(scores[name]["dice"]) for name in WHS_STRUCTURES}
    return float(np.mean(list(per.values()))), per


def test_shipped_catalog_lists_the_conditional_demo_bundle():
    from multimodalseg.bundles import load_bundle

    entry = catalog.default_for(TASK.id)
    assert entry.id == MODEL_ID and entry.demo and entry.source == "shipped"
    path = entry.local_path()
    assert path.is_file() and path.stat().st_size <= 10 * 1024 * 1024
    assert Path(f"{path}.sha256").read_text().split()[0] == entry.sha256
    assert entry.inputs == list(TASK.roles) and entry.network == "heart_cascade"
    assert entry.modality == ["CT", "MR"]
    meta = load_bundle(path).meta
    config = meta["network"]["config"]
    assert meta["conditional_modality"] is True and config["roi"]["maunet"]["conditional_modality"] is True
    assert config["localization"] and config["roi"]["refine"] is True  # all three stages ship
    assert set(meta["cascade"]["roi"]) == {"ct", "mr"}
    assert meta["training"]["loss"]["name"] == "dice_softmax_focal"


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    """The catalog default (the shipped demo bundle), loaded once with an empty user catalog."""
    from multimodalseg.inference.predictor import Predictor

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MULTIMODALSEG_HOME", str(tmp_path_factory.mktemp("home")))
        return Predictor.from_model(TASK.id, device="cpu")


def test_one_model_segments_ct_and_mr_of_a_held_out_anatomy(predictor, tmp_path):
    assert predictor.bundle.id == MODEL_ID
    means: dict[str, list[float]] = {"ct": [], "mr": []}
    rows: dict[str, list[dict[str, float]]] = {"ct": [], "mr": []}
    for modality in ("ct", "mr"):
        for seed in FRESH_SEEDS:
            case, path = write_case(seed, modality, tmp_path)
            mean, per = mean_dice(predictor.predict({"image": path}, modality=modality).labels, case)
            means[modality].append(mean)
            rows[modality].append(per)
    overall = float(np.mean(means["ct"] + means["mr"]))
    by_structure = {m: {k: round(float(np.mean([p[k] for p in r])), 4) for k in WHS_STRUCTURES}
                    for m, r in rows.items()}
    print(f"held-out anatomy Dice CT {np.mean(means['ct']):.4f} MR {np.mean(means['mr']):.4f} ({by_structure})")
    # 0.5.0 measured 0.586 (CT 0.692, MR 0.480); 0.4.0 0.508 (CT 0.603, MR 0.413) on the previous generator's cases;
    # 0.3.1, trained before the contrast phases and chest framing, 0.360 (CT 0.317, MR 0.403)
    assert overall >= 0.53, f"mean Dice over the 7 structures {overall:.3f} < 0.53 ({by_structure})"


def test_mr_cases_with_the_ct_flag_score_worse(predictor, tmp_path):
    right, wrong = [], []
    for seed in FRESH_SEEDS:
        case, path = write_case(seed, "mr", tmp_path)
        right.append(mean_dice(predictor.predict({"image": path}, modality="mr").labels, case)[0])
        wrong.append(mean_dice(predictor.predict({"image": path}, modality="ct").labels, case)[0])
    right, wrong = float(np.mean(right)), float(np.mean(wrong))
    print(f"MR cases: Dice {right:.4f} with the MR flag, {wrong:.4f} with the CT flag")
    assert wrong < right - 0.05, (wrong, right)  # the same image through the CT norms: the conditioning is real


def test_an_input_without_its_modality_is_refused(cli, tmp_path):
    _, path = write_case(FRESH_SEEDS[0], "mr", tmp_path)
    out = tmp_path / "labels.nii.gz"
    r = cli("segment", "--task", TASK.id, "--input", f"image={path}", "-o", out, "--progress", "none")
    assert r.code == 2
    assert "conditioned on the modality" in r.err and "--modality ct|mr" in r.err and "Traceback" not in r.err
    assert not out.exists()


def test_segment_out_of_the_box_writes_mmwhs_values_and_volumes(cli, tmp_path):
    case, path = write_case(FRESH_SEEDS[1], "ct", tmp_path)
    out, report = tmp_path / "labels.nii.gz", tmp_path / "report.json"
    r = cli("segment", "--task", TASK.id, "--modality", "ct", "--input", f"image={path}", "-o", out,
            "--report", report, "--progress", "none")
    assert r.code == 0, r.err
    data = json.loads(report.read_text())
    assert data["model"]["id"] == MODEL_ID and data["model"]["demo"] is True
    labels_image = io.read_image(out, label=True)
    assert io.same_geometry(labels_image, case.images["image"])
    labels = sitk.GetArrayFromImage(labels_image)
    assert set(np.unique(labels)) <= {0, 205, 420, 500, 550, 600, 820, 850} and (labels == 500).any()
    voxel_ml = float(np.prod(labels_image.GetSpacing())) / 1000.0
    heart = data["heart"]
    for name, value in (("LV", 500), ("RV", 600), ("LA", 420), ("RA", 550), ("Myo", 205)):
        assert heart[f"{name}_ml"] == pytest.approx((labels == value).sum() * voxel_ml, abs=1e-3)
        assert heart[f"{name}_ml"] > 0
    assert heart["myocardial_mass_g"] == pytest.approx(heart["Myo_ml"] * 1.05, abs=2e-3)
    table = (tmp_path / "labels_heart.csv").read_text().splitlines()
    assert table[0] == "quantity,value,unit" and any(row.startswith("myocardial_mass,") for row in table)


def test_evaluate_prints_the_whs_score(cli, tmp_path):
    case = make_case(TASK.id, FRESH_SEEDS[2], modality="mr")
    ref = io.write_image(case.label, tmp_path / "ref.nii.gz")
    arr = sitk.GetArrayFromImage(case.label)
    arr[arr == 850] = 0  # drop the pulmonary artery: Dice 0 for PA, 1 elsewhere
    pred = io.write_image(io.copy_geometry(arr, case.label), tmp_path / "pred.nii.gz")
    r = cli("evaluate", "--pred", pred, "--ref", ref, "--task", TASK.id, "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    expected = whs_scores(evaluate_images(io.read_image(pred, label=True), case.label, task=TASK)["labels"])
    assert data["whs"]["dice"] == pytest.approx(expected["whs"]["dice"])
    assert data["whs_weights"] == pytest.approx(expected["weights"]) and data["whs_weights"]["PA"] < 1 / 7
    # Volume-weighted: the small PA costs less than its 1/7 share of the plain mean.
    assert data["mean"]["dice"] < data["whs"]["dice"] < 1.0
    r = cli("evaluate", "--pred", pred, "--ref", ref, "--task", TASK.id)
    assert r.code == 0 and "WHS score" in r.out


@pytest.mark.slow
def test_cascade_reads_any_orientation_in_its_training_orientation(tmp_path):
    """The held-out CT stored as NIfTI's RAS and as a sagittal PIR stack: the cascade permutes it to LPS (the
    bundle's ``preprocessing.orientation``) before laying its grids, so the labels match the LPS run voxel for voxel
    once brought back, and land on each input's own grid. (Read as given, as 0.3.0 was, the labelled voxels agreed
    with the LPS run on 4 % (RAS: the chambers mirrored) and 19 % (PIR).)"""
    from multimodalseg.inference.predictor import Predictor

    predictor = Predictor.from_model(TASK.id, device="cpu")
    assert predictor.orientation == "LPS"
    case = make_synth_case(TASK.id, FRESH_SEEDS[0], anatomy=HELD_OUT_ANATOMY, modality="ct")
    lps = predictor.predict({"image": case.images["image"]}, modality="ct").labels
    base, _ = mean_dice(lps, case)
    for code in ("RAS", "PIR"):
        image = sitk.DICOMOrient(case.images["image"], code)
        labels = predictor.predict({"image": image}, modality="ct").labels
        assert io.same_geometry(labels, image)
        back = sitk.DICOMOrient(labels, "LPS")
        assert np.mean(sitk.GetArrayFromImage(back) == sitk.GetArrayFromImage(lps)) >= 0.999, code
        back.CopyInformation(case.label)
        assert abs(mean_dice(back, case)[0] - base) <= 0.01, code
