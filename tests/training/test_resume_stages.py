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


def test_resume_continues_a_spine_fusion_stage_at_the_iteration_where_it_stopped(tmp_path, monkeypatch):
    """The fusion and MCF stages are iteration loops without epochs: they keep a loop checkpoint every
    ``train.checkpoint_interval`` iterations, and a resumed run continues from it to the same weights."""
    from multimodalseg.phantoms import make_case, write_case

    import training.spine.fusion as fusion

    data = tmp_path / "data"
    for i in range(2):
        write_case(make_case("spine", 700 + i, shape=(24, 40, 40)), data, i + 1)
    sets = ["train.threads=1", "train.checkpoint_interval=2", "recipe.config.fusion.iterations=6",
            "recipe.config.fusion.batch=2", "recipe.config.fusion.patch_size=[32, 32]"]

    def fit_fusion(out, *extra):
        args = [a for s in sets for a in ("--set", s)]
        return main(["fit", "--config", "training/configs/spine-fusion.yaml", "--data", str(data), "--out", str(out),
                     *args, *extra])

    assert fit_fusion(tmp_path / "whole") == 0
    original, calls = fusion.fusion_step, []

    def stop_at_iteration_4(*args, **kwargs):
        if len(calls) == 4:
            raise KeyboardInterrupt  # after the loop checkpoint of iteration 3
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(fusion, "fusion_step", stop_at_iteration_4)
    assert fit_fusion(tmp_path / "stopped") == 130
    assert not (tmp_path / "stopped" / "summary.json").exists()
    monkeypatch.setattr(fusion, "fusion_step", original)
    resumed_steps = []
    monkeypatch.setattr(fusion, "fusion_step", lambda *a, **k: resumed_steps.append(1) or original(*a, **k))
    assert fit_fusion(tmp_path / "stopped", "--resume") == 0
    assert len(resumed_steps) == 2  # iterations 4 and 5 only
    whole, stopped = (json.loads((tmp_path / r / "summary.json").read_text()) for r in ("whole", "stopped"))
    assert (tmp_path / "stopped" / "fusion" / "metrics.csv").read_text() == \
        (tmp_path / "whole" / "fusion" / "metrics.csv").read_text()
    a = load_bundle(tmp_path / "whole" / whole["bundle"], task="spine").state_dict
    b = load_bundle(tmp_path / "stopped" / stopped["bundle"], task="spine").state_dict
    assert all(torch.equal(a[k], b[k]) for k in a)
