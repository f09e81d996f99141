"""Whole-heart cascade training (issue 7): the stage samples use the inference geometry, ``python -m training fit``
trains the localiser, the MAUNet and the SCN and writes one bundle the Predictor runs, and the CycleGAN stage's
synthetic CT cases are mixed into the supervised stage at the configured fraction with the MR label maps."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from multimodalseg import io
from multimodalseg.bundles import load_bundle
from multimodalseg.inference.predictor import Predictor
from multimodalseg.phantoms import make_case
from multimodalseg.postprocessing import heart as geometry
from multimodalseg.tasks import get_task
from training_helpers import CASCADE_TINY, set_args

from training.core.checkpoint import load_checkpoint
from training.core.cli import main
from training.core.config import load_config
from training.core.recipes import resolve
from training.datasets import find_cases
from training.whole_heart import cascade_data as data
from training.whole_heart.cascade import HeatmapL2Loss
from training.whole_heart.synthetic import mix_synthetic, split_synthetic, synthetic_id

TASK = get_task("whole-heart")
CONFIG = "training/configs/whole-heart-cascade.yaml"
TINY = [*CASCADE_TINY, "train.epochs=1", "data.val_fraction=0.25", "data.val_cases=[]",
        "recipe.config.localization.epochs=3", "recipe.config.refinement.epochs=1"]


def sets(*items: str) -> list[str]:
    return set_args(*TINY, *items)


def fit(*args: str) -> int:
    return main(["fit", "--config", CONFIG, *args])


@pytest.fixture(scope="module")
def heart_root(mmwhs):
    """4 CT + 4 MR phantoms in the MM-WHS layout (different anatomy per modality, as MM-WHS)."""
    return mmwhs(4, 70)


def test_roi_and_localisation_samples_use_the_inference_geometry(heart_root):
    record = next(c for c in find_cases(TASK, heart_root)[1] if c.modality == "mr").to_record()
    loaded = data.LoadHeartCased()(record)
    image, label = io.read_image(record["images"]["image"][0]), io.read_image(record["label"], label=True)
    assert np.allclose(loaded["centre"], geometry.label_centre(label))
    grids = {"ct": geometry.GridSpec(16, 10.0), "mr": geometry.GridSpec(24, 8.0)}
    roi = data.HeartROISamplesd(grids, "zscore", 1, 0.0)(loaded)[0]
    expected, _ = geometry.roi_array(image, loaded["centre"], grids["mr"], "zscore")
    assert roi["image"].shape == (1, 24, 24, 24) and np.allclose(roi["image"][0], expected, atol=1e-5)
    crop = geometry.crop_roi(label, loaded["centre"], size=24, spacing=8.0, label=True)
    lut = TASK.value_to_index()
    assert np.array_equal(roi["label"][0], np.vectorize(lambda v: lut[int(v)])(sitk.GetArrayFromImage(crop)))
    jittered = data.HeartROISamplesd(grids, "zscore", 3, 10.0)
    jittered.set_random_state(0)
    assert len({float(s["image"].sum()) for s in jittered(loaded)}) == 3  # three different centres
    loc = data.HeartLocalizationSamplesd(grids, "zscore", 1, 0.0)(loaded)[0]
    coarse = geometry.localization_input(image, size=24, spacing=8.0)
    assert np.allclose(loc["label"][0], geometry.heatmap_target(coarse, loaded["centre"]))
    assert np.allclose(loc["image"][0], geometry.network_array(coarse, "zscore"), atol=1e-5)


def test_heatmap_l2_is_payers_half_sum_per_sample():
    pred, target = torch.zeros(2, 1, 4, 4, 4), torch.zeros(2, 1, 4, 4, 4)
    target[0, 0, 1, 1, 1], target[1, 0, 2, 2, 2] = 1.0, 2.0
    assert HeatmapL2Loss()(pred, target).item() == pytest.approx((0.5 * 1 + 0.5 * 4) / 2)


@pytest.mark.slow
def test_one_command_trains_the_stages_and_exports_a_cascade_bundle(heart_root, tmp_path):
    out = tmp_path / "run"
    assert fit("--data", str(heart_root), "--out", str(out), *sets()) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recipe"] == "cascade" and list(summary["stages"]) == ["localization", "segmentation", "refinement"]
    bundle = load_bundle(out / summary["bundle"], task=TASK.id)
    meta = bundle.meta
    assert meta["network"]["name"] == "heart_cascade" and meta["conditional_modality"] is True
    assert meta["cascade"]["roi"] == {m: {"size": 16, "spacing": 10.0} for m in ("ct", "mr")}
    assert meta["network"]["config"]["roi"]["refine"] is True and meta["metrics"]["cascade_val"]["cases"]
    # The localiser's L2 loss falls over its 3 epochs.
    with open(out / "localization" / "metrics.csv") as f:
        losses = [float(r["train_loss"]) for r in csv.DictReader(f)]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert summary["stages"]["localization"]["localization_error_mm"]["mean"] >= 0
    # The SCN trained on the frozen MAUNet: the bundle's MAUNet is the segmentation stage's, unchanged.
    maunet = load_checkpoint(out / "segmentation" / "checkpoints" / "best.pt")["model"]
    assert all(torch.equal(bundle.state_dict[f"roi.maunet.{k}"], v) for k, v in maunet.items())
    scn = load_checkpoint(out / "refinement" / "checkpoints" / "best.pt")["model"]
    assert all(torch.equal(bundle.state_dict[f"roi.{k}"], v) for k, v in scn.items() if k.startswith("scn."))
    # The Predictor runs it on a fresh case.
    fresh = make_case(TASK.id, 9000, modality="ct")
    result = Predictor(bundle, "cpu", modality="ct").predict({"image": fresh.images["image"]})
    assert io.same_geometry(result.labels, fresh.images["image"])
    assert result.report["settings"]["cascade"]["centre_from"] in ("localization", "body")
    # A second run into the same folder is refused (resume it instead); a resumed finished run retrains nothing.
    assert fit("--data", str(heart_root), "--out", str(out), *sets()) == 2
    before = (out / "localization" / "metrics.csv").read_text()
    assert fit("--data", str(heart_root), "--out", str(out), "--resume", *sets()) == 0
    assert (out / "localization" / "metrics.csv").read_text() == before
    again = load_bundle(out / summary["bundle"], task=TASK.id)
    assert all(torch.equal(again.state_dict[k], v) for k, v in bundle.state_dict.items())
    # export works on the run: the recipe's bundle under a new id.
    assert main(["export", "--run", str(out), "-o", str(tmp_path / "whc.pt"), "--id", "whc-test"]) == 0
    assert load_bundle(tmp_path / "whc.pt").meta["id"] == "whc-test"


def test_cyclegan_stage_and_the_mixed_training_set(heart_root, tmp_path):
    from training.whole_heart.cyclegan import synthesize_dataset

    synth = tmp_path / "synth"
    config = load_config(CONFIG)
    resolve(config)
    config = config.with_overrides(TINY)
    config.data.root = str(heart_root)
    _, settings = resolve(config)
    synthesize_dataset(config, settings.synthetic, synth)
    written = json.loads((synth / "synthetic.json").read_text())
    from training.core.data import split_cases

    real, synthetic = split_synthetic(find_cases(TASK, heart_root)[1], str(synth), TASK)
    split = split_cases(real, config)
    n_ct = sum(c.modality == "ct" for c in split.train)
    assert len(synthetic) == len(written["cases"]) == int(np.floor(0.5 * n_ct + 0.5))  # half the real CT
    assert (synth / "cyclegan_g_ct.pt").is_file()
    for case in synthetic:  # CT cases carrying their source MR's label map
        source = next(c for c in real if c.id == written["cases"][case.id])
        assert case.modality == "ct" and source.modality == "mr" and source in split.train
        assert np.array_equal(sitk.GetArrayFromImage(io.read_image(case.label, label=True)),
                              sitk.GetArrayFromImage(io.read_image(source.label, label=True)))
    mixed = mix_synthetic(split.train, synthetic, 0.5, seed=0)
    assert len(mixed) == len(split.train) + int(np.floor(0.5 * n_ct + 0.5))
    assert sum(c.id.startswith("ct_synth_") for c in mixed) == int(np.floor(0.5 * n_ct + 0.5))
    assert mix_synthetic(split.train, synthetic, 0.0, seed=0) == list(split.train)
    with pytest.raises(ValueError, match="synthetic CT cases wanted"):
        mix_synthetic(split.train, synthetic, 2.0, seed=0)
    with pytest.raises(ValueError, match="synthetic CT cases wanted"):  # a validation MR's synthetic CT is not used
        mix_synthetic(split.train, synthetic, 0.5, seed=0,
                           excluded_sources=[written["cases"][c.id] for c in synthetic])
    assert synthetic_id("mr_train_1001") == "ct_synth_mrtrain1001"


def test_cyclegan_stage_runs_first_when_configured(heart_root, tmp_path):
    out = tmp_path / "run"
    assert fit("--data", str(heart_root), "--out", str(out),
               *sets("recipe.config.synthetic.train=true", "recipe.config.localization.enabled=false",
                     "recipe.config.refinement.enabled=false", "recipe.config.evaluate=false")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["stages"]) == ["synthetic", "segmentation"]
    written = json.loads((out / "synthetic" / "synthetic.json").read_text())
    assert written["cases"] and set(written["cases"]) <= set(summary["train_cases"])  # mixed into the ROI stage
    assert load_bundle(out / summary["bundle"]).meta["network"]["config"]["localization"] is None


def test_bad_inputs_are_refused_in_one_line(heart_root, tmp_path, capsys):
    base = ["--data", str(heart_root)]
    cases = [
        ([*base, "--out", str(tmp_path / "a"), *sets(f"recipe.config.synthetic.dir={tmp_path / 'none'}")],
         "synthetic CT folder not found"),
        ([*base, "--out", str(tmp_path / "c"),
          *sets("recipe.config.roi={ct: {size: 16, spacing: 10.0}, mr: {size: 24, spacing: 10.0}}")],
         "the same for CT and MR"),
        ([*base, "--out", str(tmp_path / "d"), *sets("recipe.config.jitter=3")],
         "unknown config key 'recipe.config.jitter'"),
        ([*base, "--out", str(tmp_path / "g"), *sets("task=spine")], "trains task whole-heart, not spine"),
        (["--data", str(tmp_path / "empty"), "--out", str(tmp_path / "f"),
          *sets("recipe.config.synthetic.train=true")], "no cases found"),
    ]
    (tmp_path / "empty").mkdir()
    for argv, message in cases:
        assert fit(*argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert main(["fit", "--config", str(tmp_path / "missing.yaml"), "--data", str(heart_root)]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert not (tmp_path / "f" / "synthetic" / "synthetic.json").exists()


def test_heart_cases_load_in_the_training_orientation(tmp_path):
    """LoadHeartCased(orientation=...) permutes image and label as the cascade does at inference; the label centre
    (physical) does not move."""
    from multimodalseg.orientation import orientation_code

    image = sitk.GetImageFromArray(np.random.default_rng(1).random((10, 12, 14)).astype(np.float32))
    label = np.zeros((10, 12, 14), np.uint16)
    label[3:6, 4:9, 5:7] = 500  # LV
    lia_image = sitk.DICOMOrient(image, "LIA")
    lia_label = sitk.DICOMOrient(io.copy_geometry(label, image), "LIA")
    sitk.WriteImage(lia_image, str(tmp_path / "img.nii.gz"))
    sitk.WriteImage(lia_label, str(tmp_path / "lab.nii.gz"))
    record = {"id": "h1", "images": {"image": (str(tmp_path / "img.nii.gz"), None)},
              "label": str(tmp_path / "lab.nii.gz")}
    kept, turned = data.LoadHeartCased()(record), data.LoadHeartCased(orientation="LPS")(record)
    assert orientation_code(kept["geometry"][2]) == "LIA" and orientation_code(turned["geometry"][2]) == "LPS"
    np.testing.assert_array_equal(turned["image"], sitk.GetArrayFromImage(image))
    lv = get_task("whole-heart").label("LV").index
    np.testing.assert_array_equal(turned["label"] == lv, label == 500)
    np.testing.assert_allclose(turned["centre"], kept["centre"], atol=1e-6)


@pytest.mark.slow
def test_fine_tuning_starts_every_stage_from_the_cascade_bundle(heart_root, tmp_path, capsys):
    first = tmp_path / "first"
    assert fit("--data", str(heart_root), "--out", str(first), *sets()) == 0
    bundle = first / json.loads((first / "summary.json").read_text())["bundle"]
    # lr 0 in every stage: the fine-tuned bundle holds exactly the first one's weights, although seed 7 would
    # initialise others (the attention gates' BatchNorm statistics still move: they are not learnt).
    zero = ["seed=7", "optimizer.lr=0.0", "recipe.config.localization.lr=0.0", "recipe.config.refinement.lr=0.0",
            "recipe.config.localization.epochs=1"]
    tuned = tmp_path / "tuned"
    assert fit("--data", str(heart_root), "--out", str(tuned), "--init-from", str(bundle), *sets(*zero)) == 0
    after = load_bundle(tuned / json.loads((tuned / "summary.json").read_text())["bundle"], task=TASK.id)
    before = load_bundle(bundle, task=TASK.id).state_dict
    assert after.state_dict.keys() == before.keys()
    stats = ("running_mean", "running_var", "num_batches_tracked")
    assert [k for k, v in before.items() if not k.endswith(stats) and not torch.equal(after.state_dict[k], v)] == []
    assert "segmentation (MAUNet): starting from" in capsys.readouterr().err
    # A config that builds another MAUNet is refused in one line, before any stage writes its folder.
    wider = tmp_path / "wider"
    assert fit("--data", str(heart_root), "--out", str(wider), "--init-from", str(bundle),
               *sets("model.config.channels=[8,16,32,64]")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "are not the ones the config builds" in err[0] and "size mismatch" in err[0]
    assert not (wider / "localization").exists()


def test_recipes_that_train_from_scratch_refuse_init_from(tmp_path):
    config = load_config("training/configs/spine-mcf.yaml", [])
    config.init_from = str(tmp_path / "any.pt")
    with pytest.raises(Exception, match="recipe mcf cannot start from a bundle"):
        resolve(config)
