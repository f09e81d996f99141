"""The whole-heart cascade at inference (issue 7): one bundle holding the localisation and ROI networks, run by the
Predictor as localise -> ROI -> MAUNet -> SCN -> paste-back, each stage switchable, the Predictor's features kept.

The geometry glue is checked end to end with oracle stages (the localiser answers the true heatmap, the ROI
network the true labels of its ROI): whatever the pipeline loses between them is the glue's fault."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from multimodalseg import io
from multimodalseg.bundles import load_bundle, save_bundle
from multimodalseg.errors import UserError
from multimodalseg.inference.heart_cascade import cascade_grids
from multimodalseg.inference.predictor import Predictor
from multimodalseg.metrics import evaluate_images
from multimodalseg.metrics.heart import WHS_STRUCTURES
from multimodalseg.nets.heart_cascade import HeartCascade
from multimodalseg.phantoms import make_case
from multimodalseg.postprocessing import heart as geometry
from multimodalseg.tasks import get_task

TASK = get_task("whole-heart")
LOC = {"features": 4, "levels": 3}
ROI = {"maunet": {"channels": [4, 8], "conditional_modality": True}, "scn": {"local_channels": 4, "sc_channels": 4,
                                                                             "sc_factor": 4}}
GRIDS = {"localization": {"ct": {"size": 16, "spacing": 16.0}, "mr": {"size": 16, "spacing": 18.0}},
         "roi": {"ct": {"size": 32, "spacing": 5.0}, "mr": {"size": 32, "spacing": 6.0}}}


def write_bundle(path, *, localization=LOC, roi=ROI, cascade=GRIDS, conditional=True, seed=0):
    config = {"spatial_dims": 3, "in_channels": 1, "out_channels": TASK.num_classes,
              "localization": localization, "roi": roi}
    torch.manual_seed(seed)
    net = HeartCascade(**config)
    meta = {"id": "whole-heart-cascade-test", "version": "0.0.1", "task": TASK.id,
            "labels": [{"index": lab.index, "value": lab.value, "name": lab.name} for lab in TASK.labels],
            "network": {"name": "heart_cascade", "config": config},
            "preprocessing": {"normalization": {"image": "zscore"}, "roles": ["image"]},
            "conditional_modality": conditional, "cascade": cascade, "demo": True}
    save_bundle(path, net.state_dict(), meta)
    return path


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory):
    return write_bundle(tmp_path_factory.mktemp("cascade") / "cascade.pt")


@pytest.fixture(scope="module")
def mr_case():
    return make_case(TASK.id, 7, modality="mr", oblique=True)


def predictor(path, **options) -> Predictor:
    return Predictor(load_bundle(path, task=TASK.id), "cpu", **options)


def mean_dice(labels: sitk.Image, truth: sitk.Image) -> float:
    scores = evaluate_images(labels, truth, task=TASK)["labels"]
    return float(np.mean([scores[name]["dice"] for name in WHS_STRUCTURES]))


def install_oracles(pred: Predictor, case, roi_spacing: float, roi_size: int, peak: float = 1.0) -> np.ndarray:
    """Replace the stages by oracles: the localiser returns the true-centre heatmap (scaled to ``peak``) on the
    coarse grid the runner built, the ROI network one-hot logits of the true labels on the ROI around it."""
    truth = geometry.label_centre(case.label)
    image = case.images["image"]
    coarse = geometry.localization_input(image, size=16, spacing=18.0)
    table = TASK.value_to_index()
    index_label = io.copy_geometry(np.vectorize(lambda v: table.get(int(v), 0))(
        sitk.GetArrayFromImage(case.label)).astype(np.uint8), case.label)

    def localize(x):
        assert tuple(x.shape[2:]) == (16, 16, 16)
        return peak * torch.from_numpy(geometry.heatmap_target(coarse, truth))[None, None]

    def forward_stages(x, window_slices=None, *, modality=None):
        assert tuple(x.shape[2:]) == (roi_size,) * 3 and modality.tolist() == [1]
        crop = geometry.crop_roi(index_label, truth, size=roi_size, spacing=roi_spacing, label=True)
        onehot = torch.nn.functional.one_hot(torch.from_numpy(sitk.GetArrayFromImage(crop)).long(), 8)
        logits = 20.0 * onehot.permute(3, 0, 1, 2)[None].float()
        return logits, logits

    pred.model.localize = localize
    pred.model.forward_stages = forward_stages
    return truth


def test_cascade_glue_with_oracle_stages_reproduces_the_labels(tmp_path, mr_case):
    """Coarse grid -> heatmap -> centre -> ROI -> probabilities -> paste-back -> MM-WHS values on an oblique,
    anisotropic MR phantom: the oracles' labels come back on the input grid (a 3 mm ROI costs a few % of Dice)."""
    grids = {**GRIDS, "roi": {"size": 64, "spacing": 3.0}}
    path = write_bundle(tmp_path / "fine.pt", cascade=grids)
    pred = predictor(path, modality="mr", keep_probabilities=True)
    truth = install_oracles(pred, mr_case, 3.0, 64)
    result = pred.predict({"image": mr_case.images["image"]})
    assert io.same_geometry(result.labels, mr_case.images["image"])
    fine = mean_dice(result.labels, mr_case.label)
    assert fine > 0.93
    cascade = result.report["settings"]["cascade"]
    assert cascade["centre_from"] == "localization" and 0.5 < cascade["heatmap_peak"] <= 1.0  # off-voxel peak
    assert np.linalg.norm(np.asarray(cascade["centre_lps"]) - truth) < 0.01
    assert result.probabilities.shape == (8, 64, 64, 64) and result.probability_grid.GetSpacing() == (3.0,) * 3
    assert set(np.unique(sitk.GetArrayViewFromImage(result.labels))) <= {0, 205, 420, 500, 550, 600, 820, 850}

    # The bundle's MR grid (32³ at 6 mm) is the one used, and the same oracle loses detail at that spacing.
    coarse = predictor(write_bundle(tmp_path / "coarse.pt"), modality="mr")
    install_oracles(coarse, mr_case, 6.0, 32)
    result = coarse.predict({"image": mr_case.images["image"]})
    assert result.report["settings"]["network_spacing"] == [6.0, 6.0, 6.0]
    assert result.report["settings"]["roi_zyx"] == [32, 32, 32]
    assert 0.6 < mean_dice(result.labels, mr_case.label) < fine - 0.02


def bundle_path_of(tmp_path):
    return write_bundle(tmp_path / "cascade.pt")


def test_a_weak_heatmap_falls_back_to_the_body_centre_with_a_warning(tmp_path, mr_case):
    events = []
    pred = predictor(bundle_path_of(tmp_path), modality="mr", progress=events.append)
    install_oracles(pred, mr_case, 6.0, 32, peak=0.05)
    result = pred.predict({"image": mr_case.images["image"]})
    cascade = result.report["settings"]["cascade"]
    assert cascade["centre_from"] == "body" and 0.025 < cascade["heatmap_peak"] <= 0.05
    assert np.allclose(cascade["centre_lps"], geometry.body_centre(mr_case.images["image"]), atol=1e-3)
    assert any(e["event"] == "warning" and "localisation unsure" in e["message"] for e in events)


@pytest.mark.parametrize("fallback", ["body", "image"])
def test_without_localisation_the_roi_is_centred_on_the_body_or_image(bundle_path, mr_case, fallback):
    pred = predictor(bundle_path, modality="mr", cascade={"localize": False, "fallback": fallback})
    result = pred.predict({"image": mr_case.images["image"]})
    cascade = result.report["settings"]["cascade"]
    image = mr_case.images["image"]
    expected = geometry.body_centre(image) if fallback == "body" else geometry.image_centre(image)
    assert cascade["centre_from"] == fallback and cascade["heatmap_peak"] is None
    assert np.allclose(cascade["centre_lps"], expected, atol=1e-3)


def test_a_bundle_without_a_localiser_centres_on_the_body(tmp_path, mr_case):
    path = write_bundle(tmp_path / "noloc.pt", localization=None)
    result = predictor(path, modality="mr").predict({"image": mr_case.images["image"]})
    assert result.report["settings"]["cascade"]["centre_from"] == "body"


def test_stage_switches_and_the_modality_change_the_probabilities(bundle_path, mr_case):
    image = mr_case.images["image"]
    full = predictor(bundle_path, modality="mr", keep_probabilities=True).predict({"image": image})
    plain = predictor(bundle_path, modality="mr", keep_probabilities=True, cascade={"refine": False}).predict(
        {"image": image})
    as_ct = predictor(bundle_path, modality="ct", keep_probabilities=True).predict({"image": image})
    assert full.report["settings"]["cascade"]["refinement"] is True
    assert plain.report["settings"]["cascade"]["refinement"] is False
    assert np.abs(full.probabilities - plain.probabilities).max() > 1e-4  # the SCN really ran
    assert as_ct.report["settings"]["network_spacing"] == [5.0, 5.0, 5.0]  # the CT ROI grid
    for r in (full, plain, as_ct):
        assert np.allclose(r.probabilities.sum(0), 1.0, atol=1e-4)


def test_modality_is_required_by_a_conditional_or_per_modality_cascade(tmp_path, mr_case):
    image = mr_case.images["image"]
    with pytest.raises(UserError, match="conditioned on the modality"):
        predictor(write_bundle(tmp_path / "c.pt")).predict({"image": image})
    plain_roi = {"maunet": {"channels": [4, 8]}, "refine": False}
    with pytest.raises(UserError, match="grid per modality: pass --modality ct|mr"):
        predictor(write_bundle(tmp_path / "p.pt", roi=plain_roi, conditional=False)).predict({"image": image})
    same = {"localization": {"size": 16, "spacing": 16.0}, "roi": {"size": 32, "spacing": 5.0}}
    result = predictor(write_bundle(tmp_path / "s.pt", roi=plain_roi, conditional=False, cascade=same)).predict(
        {"image": image})  # one grid for both modalities: no modality needed
    assert result.report["settings"]["cascade"]["roi_spacing_mm"] == 5.0


def test_bad_cascade_sections_are_refused(tmp_path):
    with pytest.raises(UserError, match="cascade section"):
        predictor(write_bundle(tmp_path / "a.pt", cascade={"roi": {"pet": {"size": 32, "spacing": 3.0}}}))
    with pytest.raises(UserError, match="cascade section"):
        predictor(write_bundle(tmp_path / "b.pt", cascade={"roi": {"size": 0, "spacing": 3.0}}))
    with pytest.raises(UserError, match="fallback must be"):
        predictor(write_bundle(tmp_path / "c.pt"), cascade={"fallback": "heart"})
    assert cascade_grids(None, geometry.ROI_GRID, ("ct", "mr")) == geometry.ROI_GRID  # METHODS' defaults


def test_segment_cli_runs_a_cascade_bundle_with_progress_and_heart_volumes(cli, bundle_path, tmp_path, mr_case):
    source = io.write_image(mr_case.images["image"], tmp_path / "mr.nii.gz")
    out, report = tmp_path / "labels.nii.gz", tmp_path / "report.json"
    r = cli("segment", "--task", TASK.id, "--model", bundle_path, "--input", f"image={source}", "-o", out,
            "--report", report, "--progress", "none")
    assert r.code == 2 and "conditioned on the modality" in r.err and not out.exists()
    r = cli("segment", "--task", TASK.id, "--model", bundle_path, "--modality", "mr", "--input", f"image={source}",
            "-o", out, "--report", report, "--progress", "json")
    assert r.code == 0, r.err
    data = json.loads(report.read_text())
    labels = sitk.GetArrayFromImage(io.read_image(out, label=True))
    voxel_ml = float(np.prod(mr_case.images["image"].GetSpacing())) / 1000.0
    assert data["model"]["network"] == "heart_cascade" and data["settings"]["cascade"]["refinement"] is True
    assert data["heart"]["LV_ml"] == pytest.approx((labels == 500).sum() * voxel_ml, abs=1e-3)
    assert data["volumes_ml"]["LV"] == pytest.approx(data["heart"]["LV_ml"], abs=1e-3)
    events = [json.loads(line) for line in r.err.splitlines() + r.out.splitlines() if line.startswith("{")]
    fractions = [e["fraction"] for e in events if e.get("event") == "progress"]
    assert fractions and fractions == sorted(fractions) and fractions[-1] == 1.0


def test_segment_cli_stage_switches(cli, bundle_path, tmp_path, mr_case):
    """``--no-localization`` / ``--no-refinement`` reach the cascade (the report says which stages ran); they are
    refused, naming the model file, for a bundle without stages."""
    source = io.write_image(mr_case.images["image"], tmp_path / "mr.nii.gz")
    out, report = tmp_path / "labels.nii.gz", tmp_path / "report.json"
    r = cli("segment", "--task", TASK.id, "--model", bundle_path, "--modality", "mr", "--input", f"image={source}",
            "-o", out, "--report", report, "--progress", "none", "--no-localization", "--no-refinement")
    assert r.code == 0, r.err
    cascade = json.loads(report.read_text())["settings"]["cascade"]
    assert cascade["refinement"] is False and cascade["centre_from"] != "localization"
    plain = tmp_path / "plain.pt"
    meta = {k: v for k, v in load_bundle(bundle_path).meta.items() if k not in ("cascade", "format")}
    save_bundle(plain, {}, meta)
    r = cli("segment", "--task", TASK.id, "--model", plain, "--modality", "mr", "--input", f"image={source}",
            "-o", tmp_path / "x.nii.gz", "--progress", "none", "--no-refinement")
    assert r.code == 2 and "--no-refinement" in r.err and "not a cascade" in r.err and str(plain) in r.err
    assert not (tmp_path / "x.nii.gz").exists()
