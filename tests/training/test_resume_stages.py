"""``--resume`` of a multi-stage recipe (issue 19): a run stopped inside its second stage continues at that stage
and epoch: the finished first stage is not trained again, the interrupted one keeps its finished epochs, and the
bundle equals the bundle of a run that was never stopped."""

from __future__ import annotations

import json

import pytest
import torch
from multimodalseg.bundles import load_bundle
from training_helpers import CASCADE_TINY, set_args

from training.core.cli import main
from training.core.trainer import SupervisedTrainer

CONFIG = "training/configs/whole-heart-cascade.yaml"
TINY = [*CASCADE_TINY, "train.epochs=2", "data.val_fraction=0.25", "data.val_cases=[]",
        "recipe.config.localization.epochs=2", "recipe.config.refinement.epochs=1"]


def fit(data, out, *extra: str) -> int:
    return main(["fit", "--config", CONFIG, "--data", str(data), "--out", str(out), *set_args(*TINY), *extra])


@pytest.fixture(scope="module")
def heart_root(mmwhs):
    """3 CT + 3 MR phantoms in the MM-WHS layout."""
    return mmwhs(3, 40)


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
