"""On-the-fly synthetic training data (``data.synthetic.on_the_fly``): cases fresh every epoch, reproducible per seed,
never from a held-out anatomy; a tiny run through ``python -m training fit`` trains on them and exports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from multimodalseg.bundles import load_bundle
from multimodalseg.errors import UserError
from multimodalseg.synthesis.anatomy import HELD_OUT, load_anatomy
from multimodalseg.tasks import get_task

from training.core.cli import main
from training.core.config import SyntheticConfig, TrainingConfig
from training.core.data import seed_epoch
from training.core.synthetic_source import SynthesizeCased, SyntheticDataset, case_seed, training_anatomy

TASK = get_task("petmr-brain")
CONFIG = Path(__file__).parents[2] / "training" / "configs" / "petmr-brain.yaml"
FAST = {"on_the_fly": True, "spacing": 4.0, "n_per_epoch": 2, "seed": 11}  # 4 mm: about a second per case


def _config(**synthetic) -> TrainingConfig:
    return TrainingConfig.from_dict({"task": TASK.id, "data": {"spacing": [], "synthetic": {**FAST, **synthetic}}})


def _dataset(config: TrainingConfig) -> SyntheticDataset:
    synthetic = config.data.synthetic
    return SyntheticDataset(config, TASK, SynthesizeCased(TASK.id, synthetic, None, None))


def test_training_anatomy_leaves_out_the_held_out_maps_and_the_excluded_ones():
    everything = {m.name for m in load_anatomy(TASK.id)}
    held = set(HELD_OUT["brain"])
    assert held <= everything
    names = {m.name for m in training_anatomy(TASK.id, SyntheticConfig())}
    assert names == everything - held
    fewer = {m.name for m in training_anatomy(TASK.id, SyntheticConfig(exclude=["fsaverage", "fsaverage_xhemi"]))}
    assert fewer == everything - held - {"fsaverage", "fsaverage_xhemi"}
    with pytest.raises(UserError, match="no petmr-brain anatomy left"):
        training_anatomy(TASK.id, SyntheticConfig(exclude=sorted(everything)))


def test_held_out_anatomies_are_never_drawn(monkeypatch):
    """300 cases' draws (generation stubbed out): every training anatomy is used, no held-out one ever."""
    import multimodalseg.synthesis as synthesis

    drawn = []

    class Drawn(Exception):
        pass

    def fake(task_id, seed, *, anatomy, **_):
        drawn.append(anatomy[0].name)
        raise Drawn

    monkeypatch.setattr(synthesis, "make_synth_case", fake)
    dataset = _dataset(_config(n_per_epoch=100))
    for epoch in (1, 2, 3):
        dataset.set_epoch(epoch)
        for k in range(100):
            with pytest.raises((Drawn, RuntimeError)):  # MONAI wraps a transform's exception
                dataset.transform(dataset.record(k))
    assert len(drawn) == 300
    assert not set(drawn) & set(HELD_OUT["brain"])
    assert set(drawn) == {m.name for m in training_anatomy(TASK.id, SyntheticConfig())}


def test_cases_are_fresh_every_epoch_and_reproducible_per_seed():
    dataset = _dataset(_config())
    seed_epoch(type("Loader", (), {"dataset": dataset})(), seed=0, epoch=1)  # the trainer's per-epoch hook
    assert dataset.epoch == 1
    first = dataset[0]
    again = _dataset(_config())[0]  # a new dataset (another process, a resumed run): the same case
    np.testing.assert_array_equal(first["image"], again["image"])
    np.testing.assert_array_equal(first["label"], again["label"])
    assert first["anatomy"] not in HELD_OUT["brain"]
    assert first["image"].shape[0] == 2 and first["label"].shape == (1, *first["image"].shape[1:])
    assert set(np.unique(first["label"])) - {0}  # labelled structures, as training indices
    assert np.unique(first["label"]).max() <= len(TASK.labels)
    dataset.set_epoch(2)
    assert first["image"].shape != dataset[0]["image"].shape or not np.array_equal(first["image"], dataset[0]["image"])
    other = _dataset(_config(seed=12))[0]
    assert first["image"].shape != other["image"].shape or not np.array_equal(first["image"], other["image"])
    assert case_seed(11, 1, 0) == case_seed(11, 1, 0) != case_seed(11, 2, 0) != case_seed(11, 1, 1)


def test_tiny_fit_on_the_fly_trains_validates_on_data_and_exports(tmp_path, capsys):
    from multimodalseg.cli import main as mmseg

    assert mmseg(["phantom", "--task", TASK.id, "--out", str(tmp_path / "val"), "--n", "1", "--seed", "3"]) == 0
    run = tmp_path / "run"
    sets = ["data.synthetic={on_the_fly: true, spacing: 4.0, n_per_epoch: 2, seed: 5}", "data.spacing=[4.0, 4.0, 4.0]",
            "model.network=basic_unet", "model.config={features: [4, 4, 8, 8, 16, 4]}",
            "augmentation.patch_size=[32, 32, 32]", "augmentation.samples_per_case=1", "train.epochs=1",
            "train.val_interval=1", "validation.overlap=0.0", "logging.progress=never"]
    args = ["fit", "--config", str(CONFIG), "--data", str(tmp_path / "val"), "--out", str(run), "--device", "cpu"]
    for item in sets:
        args += ["--set", item]
    assert main(args) == 0, capsys.readouterr().err
    summary = json.loads((run / "supervised" / "summary.json").read_text())
    assert summary["train_cases"] == [] and len(summary["val_cases"]) == 1  # validation reads --data
    assert summary["synthetic"]["on_the_fly"] and summary["synthetic"]["n_per_epoch"] == 2
    assert summary["best_metrics"]["dice_mean"] is not None
    assert main(["export", "--run", str(run), "-o", str(tmp_path / "model.pt")]) == 0
    bundle = load_bundle(tmp_path / "model.pt", task=TASK.id)
    assert bundle.meta["training"]["data"]["synthetic"]["on_the_fly"] is True
    assert bundle.meta["preprocessing"]["spacing"] == [4.0, 4.0, 4.0]


def test_random_contrast_fraction_reaches_the_generator_and_bad_values_are_refused():
    seen = []
    from multimodalseg import synthesis

    real = synthesis.make_synth_case

    def spy(*args, **kwargs):
        seen.append(kwargs["random_contrast_fraction"])
        return real(*args, **kwargs)

    synthesis.make_synth_case, original = spy, synthesis.make_synth_case
    try:
        _dataset(_config(random_contrast_fraction=0.0))[0]
    finally:
        synthesis.make_synth_case = original
    assert seen == [0.0]
    for bad in (1.5, -0.1):
        with pytest.raises(UserError, match="random_contrast_fraction must be between 0 and 1"):
            SynthesizeCased(TASK.id, _config(random_contrast_fraction=bad).data.synthetic, None, None)
