"""The whole-heart cascade's augmentation (issue 14 item 5): its ROI and localiser samples get nnU-Net's intensity and
resolution steps of ``config.augmentation``, each with its probability, beside the cascade's own ROI rotation,
scaling and jitter; no mirroring; and ``data.normalization`` reaches the samples, the bundle and the predictor."""

from __future__ import annotations

import json

import numpy as np
import pytest
from monai.transforms import Compose
from multimodalseg.bundles import load_bundle
from multimodalseg.inference.predictor import Predictor
from multimodalseg.postprocessing import heart as geometry
from multimodalseg.tasks import get_task
from training_helpers import CASCADE_TINY, set_args

from training.core.cli import main
from training.core.config import AugmentationConfig, load_config
from training.datasets import find_cases
from training.whole_heart import cascade_data as data
from training.whole_heart.cascade import image_scheme

TASK = get_task("whole-heart")
CONFIG = "training/configs/whole-heart-cascade.yaml"
PAPER = "training/configs/whole-heart-cascade-paper.yaml"
STEPS = {"noise": "RandGaussianNoised", "blur": "RandGaussianSmoothd", "brightness": "RandScaleIntensityd",
         "contrast": "RandScaleIntensityFixedMeand", "lowres": "RandSimulateLowResolutiond",
         "gamma_inverted": "RandAdjustContrastd", "gamma": "RandAdjustContrastd"}
GRIDS = {"ct": geometry.GridSpec(16, 10.0), "mr": geometry.GridSpec(16, 10.0)}


def only(step: str | None, prob: float = 1.0, **extra) -> AugmentationConfig:
    """nnU-Net's intensity steps all off but ``step`` at ``prob``; no papers' intensity scale/shift."""
    probs = {f"{name}_prob": 0.0 for name in STEPS}
    if step is not None:
        probs[f"{step}_prob"] = prob
    return AugmentationConfig(**probs, **extra)


@pytest.fixture(scope="module")
def loaded(mmwhs):
    """One MR phantom loaded as the cascade's stages read it."""
    record = next(c for c in find_cases(TASK, mmwhs(4, 70))[1] if c.modality == "mr").to_record()
    return data.LoadHeartCased()(record)


@pytest.fixture(scope="module")
def roi(loaded):
    return data.HeartROISamplesd(GRIDS, "zscore", 1, 0.0)(loaded)[0]


@pytest.mark.parametrize("step", list(STEPS))
def test_each_step_changes_the_roi_image_at_prob_1_and_never_the_labels(roi, step):
    steps = data.augmentations(only(step))
    assert [type(t).__name__ for t in steps] == [STEPS[step]]
    pipeline = Compose(steps)
    pipeline.set_random_state(0)
    out = pipeline(dict(roi))
    assert not np.allclose(np.asarray(out["image"]), roi["image"])
    assert np.array_equal(np.asarray(out["label"]), roi["label"])


def test_prob_0_and_mirroring_add_no_step(loaded):
    # All probabilities 0: no step, so a stage's sample is exactly its sampler's; flip_prob is never read (a
    # mirrored heart swaps its chambers); augmentation.enabled false drops the ROI rotation/scaling too.
    assert data.augmentations(only(None, flip_prob=1.0, rotate_prob=1.0, scale_prob=1.0)) == []
    assert data.augmentations(AugmentationConfig(enabled=False), 10.0, 0.1, 1.0) == []
    assert [type(t).__name__ for t in data.augmentations(only(None), 10.0, 0.1, 0.5)] == ["RandAffined"]
    plain = data.HeartROISamplesd(GRIDS, "zscore", 1, 10.0)
    plain.set_random_state(3)
    expected = plain(loaded)[0]
    sampler = data.HeartROISamplesd(GRIDS, "zscore", 1, 10.0)
    pipeline = Compose([sampler, *data.augmentations(only(None))])
    sampler.set_random_state(3)  # after Compose(), which reseeds its steps
    got = pipeline(loaded)[0]
    assert np.array_equal(got["image"], expected["image"]) and np.array_equal(got["label"], expected["label"])


@pytest.mark.parametrize("step", ["noise", "brightness", "gamma", "lowres"])
def test_a_step_fires_at_its_probability(step):
    pipeline = Compose(data.augmentations(only(step, prob=0.4)))
    pipeline.set_random_state(1)
    image = np.random.default_rng(0).normal(size=(1, 16, 16, 16)).astype(np.float32)
    fired = [not np.allclose(np.asarray(pipeline({"image": image.copy()})["image"]), image) for _ in range(300)]
    assert 0.3 <= np.mean(fired) <= 0.5


def test_the_shipped_configs_give_each_step_its_probability():
    aug = load_config(CONFIG).augmentation
    steps = data.augmentations(aug, 10.0, 0.1, 0.5)
    names = [type(t).__name__ for t in steps]
    assert names == ["RandAffined", *STEPS.values()]  # the ROI's own rotation/scale, then nnU-Net's order
    assert [t.prob for t in steps[1:]] == [getattr(aug, f"{s}_prob") for s in STEPS] == [
        0.1, 0.2, 0.15, 0.15, 0.25, 0.1, 0.3]
    # The paper's recipe keeps Payer's intensity scale/shift only.
    paper = [type(t).__name__ for t in data.augmentations(load_config(PAPER).augmentation, 20.0, 0.2, 0.5)]
    assert paper == ["RandAffined", "RandScaleIntensityd", "RandShiftIntensityd"]


def test_localiser_samples_get_the_intensity_steps_and_keep_their_heatmap(loaded):
    sample = data.HeartLocalizationSamplesd(GRIDS, "zscore", 1, 0.0)(loaded)[0]
    pipeline = Compose(data.augmentations(only("contrast")))
    pipeline.set_random_state(0)
    out = pipeline(dict(sample))
    assert not np.allclose(np.asarray(out["image"]), sample["image"])
    assert np.array_equal(np.asarray(out["label"]), sample["label"])


def test_dry_run_lists_the_steps_and_the_normalisation(mmwhs, tmp_path, capsys):
    args = ["fit", "--config", CONFIG, "--data", str(mmwhs(4, 70)), "--out", str(tmp_path / "r"), "--dry-run",
            "--set", "data.val_cases=[]"]
    assert main([*args, "--set", "data.normalization={image: min_max}"]) == 0
    text = capsys.readouterr().out
    for line in ("RandGaussianNoised (prob 0.1)", "RandSimulateLowResolutiond (prob 0.25)",
                 "RandAffined (prob 0.5)", "no mirroring", "normalisation: min_max"):
        assert line in text, text
    assert main([*args, "--set", "data.normalization={image: cubic}"]) == 2
    err = capsys.readouterr().err
    assert "data.normalization.image: unknown scheme 'cubic'" in err and len(err.strip().splitlines()) == 1


def test_data_normalization_reaches_the_samples_the_bundle_and_the_predictor(mmwhs, loaded, tmp_path, monkeypatch):
    config = load_config(CONFIG).with_overrides(["data.normalization={image: min_max}"])
    assert image_scheme(config, TASK) == "min_max" and image_scheme(load_config(CONFIG), TASK) == "zscore"
    roi = data.HeartROISamplesd(GRIDS, "min_max", 1, 0.0)(loaded)[0]["image"]
    assert roi.min() >= 0.0 and roi.max() <= 1.0 and roi.max() > 0.5  # min-max, not z-scores
    schemes = []  # what the fit's samplers normalise with (before: always the task's zscore)
    init = data._Sampler.__init__

    def record(self, grids, scheme, *args):
        schemes.append(scheme)
        init(self, grids, scheme, *args)

    monkeypatch.setattr(data._Sampler, "__init__", record)
    out = tmp_path / "run"
    items = [*CASCADE_TINY, "train.epochs=1", "data.val_cases=[]", "data.val_fraction=0.25",
             "data.normalization={image: min_max}", "recipe.config.localization.enabled=false",
             "recipe.config.refinement.enabled=false", "recipe.config.evaluate=false"]
    assert main(["fit", "--config", CONFIG, "--data", str(mmwhs(4, 70)), "--out", str(out), *set_args(*items)]) == 0
    assert schemes and set(schemes) == {"min_max"}
    summary = json.loads((out / "summary.json").read_text())
    bundle = load_bundle(out / summary["bundle"], task=TASK.id)
    assert bundle.meta["preprocessing"]["normalization"] == {"image": "min_max"}
    assert Predictor(bundle, "cpu", modality="ct").cascade.scheme == "min_max"
