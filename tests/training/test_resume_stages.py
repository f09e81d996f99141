"""``--resume`` of a multi-stage recipe (issue 19): a run stopped inside its second stage continues at that stage
and epoch: the finished first stage is not trained again, the interrupted one keeps its finished epochs, and the
bundle equals the bundle of a run that was never stopped."""

from __future__ import annotations

import json

import pytest
import torch
from multimodalseg import io
from multimodalseg.bundles import load_bundle
from multimodalseg.phantoms import make_case

from training.core.cli import main
from training.core.trainer import SupervisedTrainer

CONFIG = "training/configs/whole-heart-cascade.yaml"
TINY = ["train.epochs=2", "train.val_interval=1", "data.val_fraction=0.25", "data.val_cases=[]",
        "logging.progress=never", "model.config.channels=[4, 8]", "recipe.config.roi={size: 16, spacing: 10.0}",
        "recipe.config.localization.grid={size: 16, spacing: 20.0}",
        "recipe.config.localization.network={features: 4, levels: 3}",
        "recipe.config.localization.epochs=2", "recipe.config.refinement.epochs=1",
        "recipe.config.refinement.network={local_channels: 4, sc_channels: 4}"]


def fit(data, out, *extra: str) -> int:
    sets = [arg for item in TINY for arg in ("--set", item)]
    return main(["fit", "--config", CONFIG, "--data", str(data), "--out", str(out), *sets, *extra])


@pytest.fixture(scope="module")
def heart_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mmwhs")
    for modality in ("ct", "mr"):
        for i in range(3):
            case = make_case("whole-heart", 40 + i, modality=modality)
            io.write_image(case.images["image"], root / f"{modality}_train_{1001 + i}_image.nii.gz")
            io.write_image(case.label, root / f"{modality}_train_{1001 + i}_label.nii.gz")
    return root


def test_resume_continues_a_cascade_at_the_stage_and_epoch_where_it_stopped(heart_root, tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    assert fit(heart_root, whole) == 0

    stopped = tmp_path / "stopped"
    original = SupervisedTrainer.on_epoch_end

    def stop_in_segmentation(self, epoch, record):
        original(self, epoch, record)
        if self.out_dir.name == "segmentation" and epoch == 1:
            raise KeyboardInterrupt  # as a user's Ctrl-C after the stage's first epoch was saved

    monkeypatch.setattr(SupervisedTrainer, "on_epoch_end", stop_in_segmentation)
    assert fit(heart_root, stopped) == 130  # the CLI's exit code for an interrupted run
    monkeypatch.setattr(SupervisedTrainer, "on_epoch_end", original)
    summary = json.loads((stopped / "summary.json").read_text())
    assert summary["stages"]["localization"]["status"] == "done" and "segmentation" not in summary["stages"]
    localization_log = (stopped / "localization" / "metrics.csv").read_text()
    first_epoch = (stopped / "segmentation" / "metrics.csv").read_text().splitlines()
    assert len(first_epoch) == 2  # header + epoch 1

    assert fit(heart_root, stopped, "--resume") == 0
    assert (stopped / "localization" / "metrics.csv").read_text() == localization_log  # not trained again
    rows = (stopped / "segmentation" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[:2] == first_epoch  # epoch 1 kept, epoch 2 trained
    summary = json.loads((stopped / "summary.json").read_text())
    assert summary["status"] == "done" and list(summary["stages"]) == ["localization", "segmentation", "refinement"]
    resumed = load_bundle(stopped / summary["bundle"], task="whole-heart").state_dict
    reference = load_bundle(whole / summary["bundle"], task="whole-heart").state_dict
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)
