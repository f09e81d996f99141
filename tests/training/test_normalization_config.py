"""``data.normalization``: the config's scheme per input reaches the training arrays, the exported bundle and the
predictor; the paper configs default to their papers' schemes (BraTS: 0.2/99.8 clip + z-score, PET/MR: min-max)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from multimodalseg import preprocessing as prep
from multimodalseg.bundles import load_bundle, save_bundle
from multimodalseg.errors import UserError
from multimodalseg.inference import Predictor
from multimodalseg.nets import build_network
from multimodalseg.tasks import get_task

from training.core.config import TrainingConfig, load_config
from training.core.export import bundle_meta
from training.core.transforms import PrepareCased, normalization_schemes, train_transforms, val_transforms

CONFIGS = Path(__file__).parents[2] / "training" / "configs"
TASK = get_task("petmr-brain")
SHAPE = (16, 18, 20)
MIN_MAX = {"pet": "min_max", "t1": "min_max"}


def _case(folder: Path) -> tuple[dict, dict[str, np.ndarray]]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    arrays = {"t1": rng.uniform(20, 400, SHAPE).astype(np.float32), "pet": rng.uniform(500, 9000, SHAPE).astype(
        np.float32)}
    label = np.zeros(SHAPE, np.uint16)
    label[4:10, 5:11, 6:12] = TASK.label("Left-Thalamus").value
    paths = {}
    for name, array in (*arrays.items(), ("aseg", label)):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((2.0, 2.0, 2.0))
        paths[name] = folder / f"{name}.nii.gz"
        sitk.WriteImage(image, str(paths[name]))
    record = {"id": "case", "images": {r: (str(paths[r]), None) for r in ("pet", "t1")}, "label": str(paths["aseg"]),
              "convention": None, "modality": None}
    return record, arrays


def _config(normalization: dict | None = None) -> TrainingConfig:
    return TrainingConfig.from_dict({
        "task": TASK.id, "data": {"spacing": [], "normalization": normalization or {}},
        "model": {"network": "basic_unet", "config": {"features": [4, 4, 8, 8, 16, 4]}},
        "augmentation": {"patch_size": list(SHAPE[::-1]), "samples_per_case": 1, "pos_fraction": None,
                         "enabled": False}})


def test_the_configs_scheme_reaches_the_training_and_validation_arrays(tmp_path):
    record, raw = _case(tmp_path / "case")
    config = _config(MIN_MAX)
    train = train_transforms(config, TASK)(record)[0]["image"].numpy()
    val = val_transforms(config, TASK)(record)["image"].numpy()
    for c, role in enumerate(TASK.roles):
        expected = prep.normalize(raw[role], "min_max")
        np.testing.assert_allclose(train[c], expected, atol=1e-6)
        np.testing.assert_allclose(val[c], expected, atol=1e-6)
        assert train[c].min() == pytest.approx(0.0) and train[c].max() == pytest.approx(1.0)
    # without the override: the task's schemes (PET / p99, T1 z-score), as before
    default = val_transforms(_config(), TASK)(record)["image"].numpy()
    np.testing.assert_allclose(default[TASK.roles.index("t1")], prep.normalize(raw["t1"], "zscore"), atol=1e-5)
    assert default[TASK.roles.index("t1")].min() < 0


def test_one_role_overridden_keeps_the_others(tmp_path):
    record, raw = _case(tmp_path / "case")
    assert normalization_schemes(_config({"t1": "zscore_clip"}), TASK) == {"pet": "pet", "t1": "zscore_clip"}
    out = PrepareCased(TASK.id, None, None, {"t1": "zscore_clip"})(record)["image"]
    np.testing.assert_allclose(out[1], prep.normalize(raw["t1"], "zscore_clip"), atol=1e-5)
    np.testing.assert_allclose(out[0], prep.normalize(raw["pet"], "pet"), atol=1e-6)


def test_the_scheme_is_written_into_the_bundle_and_the_predictor_applies_it(tmp_path, monkeypatch):
    record, raw = _case(tmp_path / "case")
    config = _config(MIN_MAX)
    config.augmentation.patch_size = [32, 32, 32]  # the window (padded): deep enough for the 4-level UNet
    network = {"name": "basic_unet", "config": {"spatial_dims": 3, "in_channels": 2, "out_channels": 46,
                                                "features": [4, 4, 8, 8, 16, 4]}}
    meta = bundle_meta(config, TASK, network, {})
    assert meta["preprocessing"]["normalization"] == MIN_MAX
    model = build_network(network["name"], **network["config"])
    path = tmp_path / "model.pt"
    save_bundle(path, model.state_dict(), meta)
    predictor = Predictor(load_bundle(path, task=TASK.id), device="cpu", crop=False)
    assert predictor.schemes == MIN_MAX
    seen = []
    original = prep.normalize_channels

    def spy(task, array, schemes=None):
        out = original(task, array, schemes)
        seen.append((dict(schemes or {}), out))
        return out

    monkeypatch.setattr(prep, "normalize_channels", spy)
    predictor.predict({r: Path(record["images"][r][0]) for r in ("pet", "t1")})
    schemes, normalized = seen[-1]
    assert schemes == MIN_MAX
    for c, role in enumerate(TASK.roles):  # the predictor's network input equals training's
        np.testing.assert_allclose(normalized[c], prep.normalize(raw[role], "min_max"), atol=1e-6)


def test_the_paper_configs_use_their_papers_normalisation_and_the_demos_the_tasks():
    tumour = load_config(CONFIGS / "brain-tumor-paper.yaml")
    assert normalization_schemes(tumour, get_task("brain-tumor")) == {r: "zscore_clip"
                                                                      for r in ("flair", "t1", "t1ce", "t2")}
    petmr = load_config(CONFIGS / "petmr-brain-paper.yaml")
    assert normalization_schemes(petmr, TASK) == MIN_MAX
    for name, task in (("brain-tumor.yaml", "brain-tumor"), ("petmr-brain.yaml", "petmr-brain")):
        demo = load_config(CONFIGS / name)
        assert demo.data.normalization == {}
        assert normalization_schemes(demo, get_task(task)) == {s.role: s.normalization for s in get_task(task).inputs}


@pytest.mark.parametrize(("normalization", "message"), [
    ({"ct": "min_max"}, "data.normalization: task petmr-brain has no input 'ct'"),
    ({"t1": "zscore2"}, "data.normalization.t1: unknown scheme 'zscore2'"),
])
def test_bad_normalization_names_the_key(normalization, message):
    with pytest.raises(UserError, match=message):
        normalization_schemes(_config(normalization), TASK)
