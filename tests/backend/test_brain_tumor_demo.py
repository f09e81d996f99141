"""The shipped brain-tumour demo bundle end to end: Dice on synthetic cases from anatomies held out of its
training and on a real 4-sequence MR (when ../shared is present), missing sequences, the catalog default, volumes in
the report, label conventions, input errors and the demo command."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from multimodalseg import catalog, io
from multimodalseg.inference.predictor import Predictor
from multimodalseg.metrics import evaluate_images
from multimodalseg.synthesis.anatomy import split_anatomy
from multimodalseg.synthesis.generate import make_synth_case
from multimodalseg.tasks import get_task

TASK = get_task("brain-tumor")
MODEL_ID = "brain-tumor-demo"
# The bundle (0.5.1: 0.5.0's weights, fine-tuned from 0.4.0 on the same bank) was trained on synthetic cases (seeds
# 100-219 and 300-379; 0.3.0 and 0.2.0, which it descends from, 100-219 and 100-259) from
# the packaged brain maps except the held-out anatomies (training_seg_17..20), validated on seeds 5000-5007 of those;
# these seeds were never generated for it. One of the four is a whole-head (not skull-stripped) case.
FRESH_SEEDS = (9000, 9001, 9002, 9003)
SYNTH_WT_MIN = 0.42  # measured 0.441 through the predictor (0.4.0: 0.457; 0.3.0: 0.411 before the tumour looks)
# Real aurora MR (RAS): 0.5.1 runs it as LPS, the training orientation; 0.5.0 ran the RAS arrays as given.
REAL_WT_MIN = 0.78  # measured 0.832 (0.5.0: 0.835; 0.4.0: 0.744 with the same resampling, 0.3.0: 0.574)
REAL_WT_T1CE_FLAIR_MIN = 0.75  # measured 0.769 (0.5.0: 0.804; 0.4.0: 0.644, 0.3.0: 0.289, 0.2.0: 0.309)
REAL = Path(os.environ.get("MULTIMODALSEG_SHARED", Path(__file__).resolve().parents[3] / "shared")) / "data" / \
    "real-mr" / "tumour-aurora"


@pytest.fixture(autouse=True)
def own_home(tmp_path, monkeypatch):
    """An empty user catalog: the model must come from the shipped catalog."""
    monkeypatch.setenv("MULTIMODALSEG_HOME", str(tmp_path / "home"))


def write_case(seed: int, folder: Path):
    case = make_synth_case(TASK.id, seed, anatomy=split_anatomy(TASK.id)[1], misregister=False)
    inputs = {role: io.write_image(image, folder / f"{role}.nii.gz") for role, image in case.images.items()}
    return case, inputs


def input_args(inputs: dict) -> list[str]:
    return [arg for role, path in inputs.items() for arg in ("--input", f"{role}={path}")]


def test_shipped_catalog_lists_the_demo_bundle():
    entry = catalog.default_for(TASK.id)
    assert entry.id == MODEL_ID and entry.demo and entry.source == "shipped"
    path = entry.local_path()
    assert path.is_file() and path.stat().st_size <= 8 * 1024 * 1024
    assert Path(f"{path}.sha256").read_text().split()[0] == entry.sha256
    assert entry.inputs == list(TASK.roles) and entry.network == "dmfnet"
    assert set(entry.metrics["dice"]) == {"WT", "TC", "ET"} and entry.seconds["cpu"] > 0



@pytest.mark.slow
def test_demo_bundle_dice_on_held_out_anatomy(tmp_path, one_thread):
    predictor = Predictor.from_model(TASK.id, device="cpu")  # the catalog default: the shipped demo bundle
    assert predictor.bundle.id == MODEL_ID
    network = predictor.meta["network"]["config"]
    assert network["use_mie"] and network["use_sie"]
    assert predictor.meta["training"]["loss"]["name"] == "brats" and predictor.meta["training"]["loss"]["config"][
        "use_bsc"]
    dice = {name: [] for name in ("WT", "TC", "ET")}
    for seed in FRESH_SEEDS:
        case, inputs = write_case(seed, tmp_path / str(seed))
        result = predictor.predict(inputs)
        scores = evaluate_images(result.labels, case.label, task=TASK)["regions"]
        for name in dice:
            dice[name].append(scores[name]["dice"])
    means = {name: float(np.mean(values)) for name, values in dice.items()}
    print(f"held-out synthetic Dice: {means}")
    assert means["WT"] >= SYNTH_WT_MIN, f"WT Dice {means['WT']:.3f} < {SYNTH_WT_MIN} ({means})"


def _wt_dice(labels: sitk.Image, reference: Path) -> float:
    pred = sitk.GetArrayFromImage(labels) > 0
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(reference))) > 0  # 1 oedema + 2 lesion: the whole tumour
    return float(2 * (pred & ref).sum() / (pred.sum() + ref.sum()))


@pytest.mark.slow
@pytest.mark.skipif(not REAL.is_dir(), reason="needs ../shared/data/real-mr (a real 4-sequence tumour MR)")
@pytest.mark.parametrize("roles, minimum", [(("flair", "t1", "t1c", "t2"), REAL_WT_MIN),
                                            (("flair", "t1c"), REAL_WT_T1CE_FLAIR_MIN)])
def test_demo_bundle_on_a_real_tumour_mr(roles, minimum, one_thread):
    """A real metastasis MR (BrainLesion tutorials; its reference is an automatic 2-label segmentation, not expert
    labels): whole tumour, from all four sequences and from T1ce + FLAIR alone."""
    names = {"t1c": "t1ce"}
    predictor = Predictor.from_model(TASK.id, device="cpu")
    result = predictor.predict({names.get(r, r): REAL / f"{r}.nii.gz" for r in roles})
    dice = _wt_dice(result.labels, REAL / "t1c_segmentation.nii.gz")
    print(f"real MR whole-tumour Dice from {roles}: {dice:.3f}")
    assert dice >= minimum


def test_segment_out_of_the_box_report_and_conventions(cli, tmp_path):
    case, inputs = write_case(FRESH_SEEDS[0], tmp_path / "case")
    out, report = tmp_path / "labels.nii.gz", tmp_path / "report.json"
    r = cli("segment", "--task", TASK.id, *input_args(inputs), "-o", out, "--report", report, "--progress", "none")
    assert r.code == 0, r.err
    data = json.loads(report.read_text())
    assert data["model"]["id"] == MODEL_ID and data["model"]["demo"] is True
    labels = sitk.GetArrayFromImage(io.read_image(out, label=True))
    assert io.same_geometry(io.read_image(out, label=True), case.images["t1ce"])
    assert set(np.unique(labels)) <= {0, 1, 2, 4} and (labels == 4).any()  # the task's own values: ET = 4
    voxel_ml = float(np.prod(case.images["t1ce"].GetSpacing())) / 1000.0
    counts = {name: int((labels == value).sum()) for name, value in (("NCR/NET", 1), ("ED", 2), ("ET", 4))}
    assert data["volumes_ml"] == pytest.approx({k: round(v * voxel_ml, 3) for k, v in counts.items()}, abs=1e-3)
    regions = {"WT": counts["NCR/NET"] + counts["ED"] + counts["ET"], "TC": counts["NCR/NET"] + counts["ET"],
               "ET": counts["ET"]}
    assert data["regions_ml"] == pytest.approx({k: v * voxel_ml for k, v in regions.items()}, abs=2e-3)
    assert data["regions_ml"]["WT"] > data["regions_ml"]["TC"] > data["regions_ml"]["ET"] > 0

    out23 = tmp_path / "labels2023.nii.gz"
    r = cli("segment", "--task", TASK.id, *input_args(inputs), "-o", out23, "--convention", "brats2023",
            "--progress", "none")
    assert r.code == 0, r.err
    labels23 = sitk.GetArrayFromImage(io.read_image(out23, label=True))
    assert set(np.unique(labels23)) <= {0, 1, 2, 3} and (labels23 == 3).any()
    np.testing.assert_array_equal(labels23, np.where(labels == 4, 3, labels))


def test_missing_sequences(cli, tmp_path):
    """The bundle was trained with modality dropout: FLAIR, T1, T2 may be missing (named in a warning and the
    report); T1ce, the reference, may not."""
    _, inputs = write_case(FRESH_SEEDS[1], tmp_path / "case")
    out, report = tmp_path / "labels.nii.gz", tmp_path / "r.json"
    only = {r: inputs[r] for r in ("t1ce", "flair")}
    r = cli("segment", "--task", TASK.id, *input_args(only), "-o", out, "--report", report, "--progress", "json")
    assert r.code == 0, r.err
    assert json.loads(report.read_text())["missing_inputs"] == {"t1": "zeros", "t2": "zeros"}
    assert any("missing inputs t1, t2" in line for line in r.out.splitlines())
    del inputs["t1ce"]
    out2 = tmp_path / "labels2.nii.gz"
    r = cli("segment", "--task", TASK.id, *input_args(inputs), "-o", out2)
    assert r.code == 2
    assert "needs input t1ce" in r.err and "Traceback" not in r.err
    assert not out2.exists()


def test_inputs_whose_grids_do_not_overlap_are_a_clear_error(cli, tmp_path):
    case, inputs = write_case(FRESH_SEEDS[1], tmp_path / "case")
    far = sitk.Image(case.images["t2"])
    far.SetOrigin(tuple(o + 500.0 for o in far.GetOrigin()))  # 50 cm away: no overlap with the t1ce grid
    inputs["t2"] = io.write_image(far, tmp_path / "case" / "t2_elsewhere.nii.gz")
    out = tmp_path / "labels.nii.gz"
    r = cli("segment", "--task", TASK.id, *input_args(inputs), "-o", out)
    assert r.code == 2
    assert "t2_elsewhere.nii.gz" in r.err and "does not overlap" in r.err and "Traceback" not in r.err
    assert not out.exists()


def test_demo_command_uses_the_shipped_bundle(cli, tmp_path):
    r = cli("demo", "--task", TASK.id, "--out", tmp_path / "demo", "--device", "cpu", "--json")
    assert r.code == 0, r.err
    row = json.loads(r.out)["tasks"][0]
    assert row["status"] == "ok" and row["model"] == MODEL_ID and row["mean_dice_over"] == "regions"
    assert set(row["region_dice"]) == {"WT", "TC", "ET"}
    assert row["mean_dice"] == pytest.approx(np.mean(list(row["region_dice"].values())))
    assert row["region_dice"]["WT"] >= SYNTH_WT_MIN  # a synth case from a held-out anatomy, not a phantom
    assert Path(row["outputs"]["labels"]).is_file() and Path(row["outputs"]["overlay"]).is_file()
